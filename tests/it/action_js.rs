//! The JavaScript action (`action.yml`, `dist/action.js`), run the way the runner runs it: `node
//! dist/action.js` with the inputs as `INPUT_<NAME>` variables (upper-cased, hyphens kept) and
//! `GITHUB_OUTPUT` naming the file-command file for outputs.
//!
//! The binary is replaced by a stand-in shell script that records its argv (NUL-separated) and
//! behaves as `$STANDIN_MODE` says, so each test sees exactly what reached `runner-k8s-hook build`
//! and what the action made of its answer. Where the action finds it (the `binary` input,
//! `RUNNER_K8S_HOOK_BINARY`, beside `dist/action.js`, `PATH`) is tested here; the download of the
//! release asset is in `action_download`.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

const DEADLINE: Duration = Duration::from_secs(20);
pub(crate) const DIGEST: &str =
    "sha256:4f2a9c0e5b7d8e1f3a6c9b2d5e8f1a4c7b0d3e6f9a2c5b8e1d4f7a0c3b6e9d2f";
pub(crate) const REF: &str = "registry.example:5000/octo-org/hello:k3x9q2m7v8p1w4zt";

/// `$STANDIN_MODE`:
/// - `ok`: a log line on stderr, a stray line then `REF@DIGEST` on stdout, exit 0;
/// - `nopush`: `REF` on stdout;
/// - `nodigest`: `REF` on stdout (wrong when pushing);
/// - `fail`: an error report on stderr, exit 3;
/// - `trap`: write `ready`, wait; on SIGTERM/SIGINT write its name to `signal` and exit 128+N.
pub(crate) const STANDIN: &str = r#"#!/bin/sh
out=${STANDIN_OUT:?}
printf '%s\0' "$@" >"$out/argv"
case $STANDIN_MODE in
ok)
  echo 'STEP 1/3: FROM busybox' >&2
  echo 'a line that is not the result'
  printf '%s@%s\n' "$STANDIN_REF" "$STANDIN_DIGEST" ;;
nopush|nodigest)
  printf '%s\n' "$STANDIN_REF" ;;
fail)
  echo '::error::building `x` failed' >&2
  exit 3 ;;
trap)
  sleep 60 </dev/null >/dev/null 2>&1 &
  pid=$!
  trap 'echo INT >"$out/signal"; kill $pid; exit 130' INT
  trap 'echo TERM >"$out/signal"; kill $pid; exit 143' TERM
  echo "$$ $pid" >"$out/ready.tmp" && mv "$out/ready.tmp" "$out/ready"
  wait $pid
  exit 99 ;;
esac
"#;

pub(crate) fn repo_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(name)
}

/// `node` as this test process finds it on its PATH: the action's own PATH is [`SYSTEM_PATH`], and
/// node may be installed elsewhere (`scripts/install-deps.sh` accepts any node >= 20 on PATH).
pub(crate) fn node() -> PathBuf {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|dir| dir.join("node"))
        .find(|p| p.is_file())
        .expect("node >= 20 on PATH (`scripts/install-deps.sh test` installs it)")
}

/// Only the system directories, so no `runner-k8s-hook` installed on this machine is found (the
/// stand-in needs `sh`, `mv`, `sleep` and `kill` from them).
pub(crate) const SYSTEM_PATH: &str = "/usr/bin:/bin";

pub(crate) struct Action {
    pub(crate) dir: TempDir,
    pub(crate) command: Command,
}

impl Action {
    /// `node dist/action.js` with a clean environment, the stand-in as the binary (through
    /// `RUNNER_K8S_HOOK_BINARY`) and a fresh `GITHUB_OUTPUT` file.
    pub(crate) fn new(mode: &str) -> Action {
        let mut action = Action::at(mode, &repo_file("dist/action.js"));
        action
            .command
            .env("RUNNER_K8S_HOOK_BINARY", action.standin());
        action
    }

    /// A copy of the action as the runner checks it out (`<dir>/action/dist/action.js` and
    /// `<dir>/action/Cargo.toml`) with no binary anywhere it looks: each test puts the stand-in
    /// where it wants it found ([`Action::standin`] is at `<dir>/runner-k8s-hook`).
    pub(crate) fn checkout(mode: &str) -> Action {
        let mut action = Action::at(mode, &repo_file("dist/action.js"));
        let root = action.checkout_root();
        fs::create_dir_all(root.join("dist")).unwrap();
        fs::copy(repo_file("dist/action.js"), root.join("dist/action.js")).unwrap();
        fs::copy(repo_file("Cargo.toml"), root.join("Cargo.toml")).unwrap();
        action.command = Action::command(&action.dir, mode, &root.join("dist/action.js"));
        action
    }

    fn at(mode: &str, script: &Path) -> Action {
        let dir = tempfile::tempdir().expect("tempdir");
        let binary = dir.path().join("runner-k8s-hook");
        fs::write(&binary, STANDIN).unwrap();
        fs::set_permissions(&binary, fs::Permissions::from_mode(0o755)).unwrap();
        fs::create_dir(dir.path().join("out")).unwrap();
        fs::write(dir.path().join("github_output"), "").unwrap();
        let command = Action::command(&dir, mode, script);
        Action { dir, command }
    }

    fn command(dir: &TempDir, mode: &str, script: &Path) -> Command {
        let mut command = Command::new(node());
        command
            .arg(script)
            .env_clear()
            .env("PATH", SYSTEM_PATH)
            .env("GITHUB_OUTPUT", dir.path().join("github_output"))
            .env("STANDIN_OUT", dir.path().join("out"))
            .env("STANDIN_MODE", mode)
            .env("STANDIN_REF", REF)
            .env("STANDIN_DIGEST", DIGEST)
            .env("INPUT_IMAGE", REF)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    /// The stand-in binary, `<dir>/runner-k8s-hook` (found by no lookup unless a test says so).
    pub(crate) fn standin(&self) -> PathBuf {
        self.dir.path().join("runner-k8s-hook")
    }

    /// The checked-out action's root ([`Action::checkout`]): `dist/` and `Cargo.toml`.
    pub(crate) fn checkout_root(&self) -> PathBuf {
        self.dir.path().join("action")
    }

    pub(crate) fn input(mut self, name: &str, value: &str) -> Action {
        self.command
            .env(format!("INPUT_{}", name.to_uppercase()), value);
        self
    }

    pub(crate) fn spawn(&mut self) -> Child {
        self.command.spawn().expect("spawn node")
    }

    pub(crate) fn run(&mut self) -> Output {
        wait(self.spawn())
    }

    pub(crate) fn argv(&self) -> Option<Vec<String>> {
        let bytes = fs::read(self.dir.path().join("out/argv")).ok()?;
        Some(
            bytes
                .split(|&b| b == 0)
                .filter(|s| !s.is_empty())
                .map(|s| String::from_utf8(s.to_vec()).unwrap())
                .collect(),
        )
    }

    pub(crate) fn github_output(&self) -> String {
        fs::read_to_string(self.dir.path().join("github_output")).unwrap()
    }
}

pub(crate) fn wait(mut child: Child) -> Output {
    let start = Instant::now();
    while child.try_wait().expect("try_wait").is_none() {
        if start.elapsed() > DEADLINE {
            child.kill().ok();
            child.wait().ok();
            panic!("action still running after {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().expect("wait_with_output")
}

pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Parse the runner's file-command format, heredoc form only (`name<<DELIM\nvalue\nDELIM\n`),
/// checking each delimiter is random-looking and closes its own value.
pub(crate) fn parse_outputs(file: &str) -> BTreeMap<String, String> {
    let mut outputs = BTreeMap::new();
    let mut lines = file.split('\n');
    while let Some(line) = lines.next() {
        if line.is_empty() {
            continue;
        }
        let (name, delimiter) = line
            .split_once("<<")
            .unwrap_or_else(|| panic!("not the heredoc form: {line:?}"));
        assert!(
            delimiter.starts_with("ghadelimiter_") && delimiter.len() > 20,
            "{delimiter}"
        );
        let mut value = Vec::new();
        loop {
            let next = lines.next().expect("unterminated heredoc");
            if next == delimiter {
                break;
            }
            value.push(next);
        }
        outputs.insert(name.to_owned(), value.join("\n"));
    }
    outputs
}

#[test]
fn builds_and_pushes_with_the_inputs_and_sets_the_outputs() {
    let mut action = Action::new("ok")
        .input("context", "actions/hello")
        .input("dockerfile", "Dockerfile.alpine")
        .input(
            "build-args",
            "VERSION=1.2.3\r\n\n  GREETING=hello world  \nEQUATION=a=b+c\nEMPTY=\n",
        );
    let out = action.run();
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert_eq!(
        action.argv().unwrap(),
        [
            "build",
            "--context",
            "actions/hello",
            "--file",
            "Dockerfile.alpine",
            "--image",
            REF,
            "--build-arg",
            "VERSION=1.2.3",
            "--build-arg",
            "GREETING=hello world",
            "--build-arg",
            "EQUATION=a=b+c",
            "--build-arg",
            "EMPTY=",
        ]
    );
    let outputs = parse_outputs(&action.github_output());
    assert_eq!(
        outputs,
        BTreeMap::from([
            ("image".to_owned(), format!("{REF}@{DIGEST}")),
            ("digest".to_owned(), DIGEST.to_owned()),
        ])
    );
    // The child's stdout and stderr reach the step log.
    assert!(text(&out.stdout).contains(&format!("{REF}@{DIGEST}")));
    assert!(text(&out.stderr).contains("STEP 1/3: FROM busybox"));
}

#[test]
fn defaults_apply_when_inputs_are_absent() {
    let mut action = Action::new("ok");
    let out = action.run();
    assert!(out.status.success(), "{}", text(&out.stdout));
    assert_eq!(
        action.argv().unwrap(),
        [
            "build",
            "--context",
            ".",
            "--file",
            "Dockerfile",
            "--image",
            REF
        ]
    );
}

#[test]
fn push_false_builds_only() {
    let mut action = Action::new("nopush").input("push", "false");
    let out = action.run();
    assert!(out.status.success(), "{}", text(&out.stdout));
    assert_eq!(action.argv().unwrap().last().unwrap(), "--no-push");
    assert_eq!(
        parse_outputs(&action.github_output()),
        BTreeMap::from([
            ("image".to_owned(), REF.to_owned()),
            ("digest".to_owned(), String::new()),
        ])
    );
}

#[test]
fn executor_pod_builds_in_the_cluster() {
    let mut action = Action::new("ok").input("executor", "pod");
    let out = action.run();
    assert!(out.status.success(), "{}", text(&out.stdout));
    let argv = action.argv().unwrap();
    assert_eq!(argv[argv.len() - 2..], ["--executor", "pod"], "{argv:?}");
    assert_eq!(
        parse_outputs(&action.github_output())["image"],
        format!("{REF}@{DIGEST}")
    );
}

#[test]
fn invalid_inputs_fail_before_the_binary_runs() {
    for (name, value, message) in [
        (
            "executor",
            "docker",
            "::error::Input executor must be `local` or `pod`, not: docker",
        ),
        (
            "push",
            "yes",
            "::error::Input does not meet YAML 1.2 \"Core Schema\" specification: push",
        ),
        (
            "build-args",
            "A=1\nnot an assignment",
            "::error::build-args line 2 is not NAME=value: not an assignment",
        ),
        (
            "image",
            "  ",
            "::error::Input required and not supplied: image",
        ),
    ] {
        let mut action = Action::new("ok").input(name, value);
        let out = action.run();
        assert_eq!(out.status.code(), Some(1), "{name}={value:?}");
        assert!(
            text(&out.stdout).contains(message),
            "{name}: {}",
            text(&out.stdout)
        );
        assert_eq!(action.argv(), None, "the binary must not run");
        assert_eq!(action.github_output(), "");
    }
}

#[test]
fn a_failing_build_fails_the_step_with_an_annotation() {
    let mut action = Action::new("fail");
    let out = action.run();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("::error::runner-k8s-hook build failed with exit code 3"),
        "{}",
        text(&out.stdout)
    );
    assert!(text(&out.stderr).contains("::error::building `x` failed"));
    assert_eq!(action.github_output(), "", "no outputs on failure");
}

#[test]
fn a_pushed_build_without_a_digest_is_an_error() {
    let mut action = Action::new("nodigest");
    let out = action.run();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("::error::runner-k8s-hook build printed an unexpected result"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn a_missing_binary_is_named() {
    let mut action = Action::new("ok");
    action
        .command
        .env("RUNNER_K8S_HOOK_BINARY", "/nonexistent/runner-k8s-hook");
    let out = action.run();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains(
            "::error::runner-k8s-hook binary not found (tried: /nonexistent/runner-k8s-hook, from RUNNER_K8S_HOOK_BINARY): set RUNNER_K8S_HOOK_BINARY to the binary's path, or unset it to find or download the binary"
        ),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn sigterm_is_forwarded_to_the_build() {
    let mut action = Action::new("trap");
    let child = action.spawn();
    let ready = action.dir.path().join("out/ready");
    let start = Instant::now();
    while !ready.exists() {
        assert!(start.elapsed() < DEADLINE, "the stand-in never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let out = wait(child);
    assert_eq!(
        fs::read_to_string(action.dir.path().join("out/signal"))
            .unwrap()
            .trim(),
        "TERM"
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("::error::runner-k8s-hook build failed with exit code 143"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn action_yml_declares_what_action_js_reads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("action.yml");
    let yaml: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(yaml["runs"]["main"].as_str(), Some("dist/action.js"));
    let inputs = yaml["inputs"].as_mapping().unwrap();
    let names: Vec<&str> = inputs.keys().map(|k| k.as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "context",
            "dockerfile",
            "image",
            "build-args",
            "push",
            "executor",
            "binary"
        ]
    );
    let default = |name: &str| yaml["inputs"][name]["default"].as_str().map(str::to_owned);
    assert_eq!(default("context").as_deref(), Some("."));
    assert_eq!(default("dockerfile").as_deref(), Some("Dockerfile"));
    assert_eq!(default("push").as_deref(), Some("true"));
    assert_eq!(default("executor").as_deref(), Some("local"));
    assert_eq!(default("binary").as_deref(), Some(""));
    assert_eq!(yaml["inputs"]["image"]["required"].as_bool(), Some(true));
    let outputs: Vec<&str> = yaml["outputs"]
        .as_mapping()
        .unwrap()
        .keys()
        .map(|k| k.as_str().unwrap())
        .collect();
    assert_eq!(outputs, ["image", "digest"]);
}

fn action_yml() -> serde_yaml_ng::Value {
    serde_yaml_ng::from_str(&fs::read_to_string(repo_file("action.yml")).unwrap()).unwrap()
}

#[test]
fn action_yml_runs_on_node24() {
    assert_eq!(action_yml()["runs"]["using"].as_str(), Some("node24"));
}

/// Like `config`'s `every_variable_is_documented`: each input and output of `action.yml` has its
/// row in docs/user/action.md.
#[test]
fn every_input_and_output_is_documented() {
    let docs = fs::read_to_string(repo_file("docs/user/action.md")).unwrap();
    let yaml = action_yml();
    let mut missing = Vec::new();
    for section in ["inputs", "outputs"] {
        for name in yaml[section].as_mapping().unwrap().keys() {
            let name = name.as_str().unwrap();
            if !docs.contains(&format!("\n| `{name}` |")) {
                missing.push(format!("{section}.{name}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "docs/user/action.md has no table row (| `name` | ...) for: {missing:?}"
    );
}

/// A `runner-k8s-hook` that must not be the one that runs: it fails the step with its own code.
fn decoy(path: &Path) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, "#!/bin/sh\necho 'the decoy ran' >&2\nexit 42\n").unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

/// The step succeeded through the stand-in: argv recorded and the outputs set.
fn assert_ran_the_standin(action: &Action, out: &Output) {
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert_eq!(action.argv().unwrap()[0], "build");
    assert_eq!(
        parse_outputs(&action.github_output())["image"],
        format!("{REF}@{DIGEST}")
    );
}

/// Decoys at every later place of the lookup: the variable, beside the script, on PATH.
fn decoys_after(action: &mut Action, first: &str) {
    let root = action.checkout_root();
    let order = ["binary", "variable", "beside", "path"];
    let later = &order[order.iter().position(|p| *p == first).unwrap() + 1..];
    for place in later {
        match *place {
            "variable" => {
                let path = action.dir.path().join("decoys/variable/runner-k8s-hook");
                decoy(&path);
                action.command.env("RUNNER_K8S_HOOK_BINARY", path);
            }
            "beside" => decoy(&root.join("dist/runner-k8s-hook")),
            "path" => {
                let dir = action.dir.path().join("decoys/path");
                decoy(&dir.join("runner-k8s-hook"));
                action
                    .command
                    .env("PATH", format!("{}:{SYSTEM_PATH}", dir.display()));
            }
            _ => unreachable!(),
        }
    }
}

#[test]
fn the_binary_input_comes_first_and_is_relative_to_the_working_directory() {
    let mut action = Action::checkout("ok").input("binary", "./runner-k8s-hook");
    decoys_after(&mut action, "binary");
    let out = action.run();
    assert_ran_the_standin(&action, &out);
}

#[test]
fn the_variable_comes_before_the_binary_beside_the_script_and_path() {
    let mut action = Action::checkout("ok");
    decoys_after(&mut action, "variable");
    let standin = action.standin();
    action.command.env("RUNNER_K8S_HOOK_BINARY", standin);
    let out = action.run();
    assert_ran_the_standin(&action, &out);
}

#[test]
fn a_binary_beside_the_script_comes_before_path() {
    for place in ["dist/runner-k8s-hook", "dist/bin/runner-k8s-hook"] {
        let mut action = Action::checkout("ok");
        decoys_after(&mut action, "beside");
        let target = action.checkout_root().join(place);
        fs::create_dir_all(target.parent().unwrap()).unwrap();
        fs::copy(action.standin(), &target).unwrap();
        let out = action.run();
        assert_ran_the_standin(&action, &out);
    }
}

#[test]
fn path_is_searched_for_an_executable_binary() {
    let mut action = Action::checkout("ok");
    let dir = action.dir.path();
    // Earlier in PATH: a file that is not executable (skipped, as a shell skips it), an empty
    // entry and a relative one (never the working directory, which holds the stand-in).
    let not_executable = dir.join("not-executable/runner-k8s-hook");
    fs::create_dir_all(not_executable.parent().unwrap()).unwrap();
    fs::write(&not_executable, "#!/bin/sh\nexit 42\n").unwrap();
    let bin = dir.join("bin");
    fs::create_dir(&bin).unwrap();
    fs::copy(action.standin(), bin.join("runner-k8s-hook")).unwrap();
    let path = format!(
        "{}::.:{}:{SYSTEM_PATH}",
        not_executable.parent().unwrap().display(),
        bin.display()
    );
    action.command.env("PATH", path);
    let out = action.run();
    assert_ran_the_standin(&action, &out);
}

#[test]
fn a_binary_input_that_is_not_a_file_is_named() {
    let mut action = Action::checkout("ok").input("binary", "/nonexistent/runner-k8s-hook");
    decoys_after(&mut action, "binary");
    let out = action.run();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains(
            "::error::runner-k8s-hook binary not found (tried: /nonexistent/runner-k8s-hook, from the `binary` input): give the path of the binary, or leave the input empty to find or download it"
        ),
        "{}",
        text(&out.stdout)
    );
    assert!(!text(&out.stderr).contains("the decoy ran"));
    assert_eq!(action.github_output(), "");
}
