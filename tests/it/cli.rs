//! The binary as the runner runs it, with no cluster: a request on stdin, the environment
//! cleared, and the exit code, stdout and stderr checked (uv's `tests/it` style).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::protocol::fixtures;

pub const BIN: &str = env!("CARGO_BIN_EXE_runner-k8s-hook");

/// Run the hook with `stdin` and only the given variables (plus PATH, and HOME pointing at an
/// empty directory so no `~/.kube/config` of the machine is found).
pub fn run_hook(stdin: &str, home: &Path, vars: &[(&str, &str)]) -> Output {
    let mut child = Command::new(BIN)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .envs(vars.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the hook binary starts");
    // A hook that refuses its configuration exits before it reads stdin: a broken pipe here is
    // its answer, not a failure of the test (the exit status and stderr are what is checked).
    match child.stdin.take().unwrap().write_all(stdin.as_bytes()) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        Err(e) => panic!("writing the hook's stdin: {e}"),
    }
    child.wait_with_output().expect("the hook exits")
}

/// A fixture with its `responseFile` pointed at a real, empty file (as the runner creates it).
pub fn with_response_file(fixture: &str, response_file: &Path) -> String {
    let mut value: serde_json::Value = serde_json::from_str(fixture).expect("fixture is JSON");
    value["responseFile"] = response_file.to_string_lossy().into_owned().into();
    serde_json::to_string(&value).unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Common checks for a failure: exit 1, nothing on stdout (it carries step output only), one
/// `::error::` annotation first, and no panic or backtrace.
fn assert_clean_failure(output: &Output) -> String {
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "stderr:\n{stderr}");
    assert_eq!(text(&output.stdout), "", "stdout must stay empty");
    assert!(stderr.starts_with("::error::"), "stderr:\n{stderr}");
    assert_eq!(stderr.matches("::error::").count(), 1, "stderr:\n{stderr}");
    assert!(!stderr.contains("panicked"), "stderr:\n{stderr}");
    assert!(!stderr.contains("RUST_BACKTRACE"), "stderr:\n{stderr}");
    stderr
}

#[test]
fn every_fixture_without_pod_name_says_the_variable_is_required() {
    let dir = tempfile::tempdir().unwrap();
    let response = dir.path().join("response.json");
    std::fs::write(&response, "").unwrap();
    for (name, fixture) in fixtures() {
        let output = run_hook(&with_response_file(&fixture, &response), dir.path(), &[]);
        let stderr = assert_clean_failure(&output);
        let command = serde_json::from_str::<serde_json::Value>(&fixture).unwrap()["command"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(
            stderr.lines().next().unwrap(),
            format!("::error::cannot run `{command}`"),
            "{name}"
        );
        assert!(
            stderr.contains(
                "caused by: environment variable `ACTIONS_RUNNER_POD_NAME` is required but not set"
            ),
            "{name}: {stderr}"
        );
        assert!(stderr.contains("hint: "), "{name}: {stderr}");
    }
}

#[test]
fn every_fixture_without_cluster_config_says_no_cluster_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let response = dir.path().join("response.json");
    std::fs::write(&response, "").unwrap();
    for (name, fixture) in fixtures() {
        let output = run_hook(
            &with_response_file(&fixture, &response),
            dir.path(),
            &[("ACTIONS_RUNNER_POD_NAME", "runner-abc")],
        );
        let stderr = assert_clean_failure(&output);
        assert!(
            stderr.contains("caused by: no Kubernetes cluster configuration found"),
            "{name}: {stderr}"
        );
        assert!(
            stderr.contains("point `KUBECONFIG` at a kubeconfig"),
            "{name}: {stderr}"
        );
        assert_eq!(
            std::fs::read_to_string(&response).unwrap(),
            "",
            "{name}: no response"
        );
    }
}

#[test]
fn bad_input_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let vars = [("ACTIONS_RUNNER_POD_NAME", "runner-abc")];
    let cases: &[(&str, &str, &str)] = &[
        (
            "empty stdin",
            "",
            "::error::no request on stdin: the runner writes one JSON line and closes stdin",
        ),
        (
            "white space only",
            "\n  \n",
            "::error::no request on stdin: the runner writes one JSON line and closes stdin",
        ),
        (
            "invalid JSON",
            "{\"command\": \"prepare_job\",",
            "::error::the request on stdin is not valid JSON",
        ),
        (
            "not an object",
            "[1,2,3]",
            "::error::the request on stdin is not a JSON object with `command`, `responseFile`, `args` and `state`",
        ),
        (
            "unknown command",
            r#"{"command":"run_job","responseFile":null,"args":{},"state":null}"#,
            "::error::unknown command `run_job`: expected one of prepare_job, cleanup_job, run_script_step, run_container_step",
        ),
        (
            "missing command",
            r#"{"responseFile":null,"args":{},"state":null}"#,
            "::error::invalid `request` request: field `command`: missing field",
        ),
        (
            "wrong field type",
            r#"{"command":"run_script_step","responseFile":null,"args":{"entryPoint":"sh","entryPointArgs":"-e x.sh"},"state":null}"#,
            "::error::invalid `run_script_step` request: field `args.entryPointArgs`: invalid type: string \"-e x.sh\", expected a sequence",
        ),
        (
            "wrong state type",
            r#"{"command":"cleanup_job","responseFile":null,"args":{},"state":{"jobPod":42}}"#,
            "::error::invalid `cleanup_job` request: field `state.jobPod`: invalid type: integer `42`, expected a string",
        ),
    ];
    for (what, stdin, first_line) in cases {
        let output = run_hook(stdin, dir.path(), &vars);
        let stderr = assert_clean_failure(&output);
        assert_eq!(
            stderr.lines().next().unwrap(),
            *first_line,
            "{what}:\n{stderr}"
        );
        assert!(
            stderr.contains("hint: this program is a container hook"),
            "{what}:\n{stderr}"
        );
    }
}

#[test]
fn unwritable_response_file_fails_before_touching_the_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = fixtures()
        .into_iter()
        .find(|(n, _)| n == "cleanup_job")
        .unwrap()
        .1;
    let missing_dir = dir.path().join("no-such-dir/response.json");
    let output = run_hook(
        &with_response_file(&fixture, &missing_dir),
        dir.path(),
        // A kubeconfig that would work is not needed: the check comes first.
        &[("ACTIONS_RUNNER_POD_NAME", "runner-abc")],
    );
    let stderr = assert_clean_failure(&output);
    assert_eq!(
        stderr.lines().next().unwrap(),
        format!(
            "::error::failed to write the response file `{}`",
            missing_dir.display()
        )
    );
    assert!(
        stderr.contains("caused by: No such file or directory"),
        "{stderr}"
    );
    assert!(
        stderr.contains("hint: the runner creates the response file"),
        "{stderr}"
    );
}

#[test]
fn invalid_configuration_names_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let output = run_hook(
        "{}",
        dir.path(),
        &[("ACTIONS_RUNNER_PREPARE_JOB_TIMEOUT_SECONDS", "10m")],
    );
    let stderr = assert_clean_failure(&output);
    assert_eq!(
        stderr.lines().next().unwrap(),
        "::error::environment variable `ACTIONS_RUNNER_PREPARE_JOB_TIMEOUT_SECONDS` has an invalid value `10m`: expected a positive whole number of seconds, e.g. `600`"
    );
}

/// Run the binary with `args`, no environment at all and a stdin that stays open: a command
/// that read stdin would block, so it fails the test after 10 s instead of passing by luck.
fn run_without_environment(args: &[&str]) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the hook binary starts");
    let stdin = child.stdin.take();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("`runner-k8s-hook {}` waited for stdin", args.join(" "));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    drop(stdin);
    child.wait_with_output().unwrap()
}

/// The commit `build.rs` reads: the first 7 hex digits of HEAD, when the crate is its own git
/// checkout (None outside one, e.g. a source archive).
fn git_head() -> Option<String> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let git = |args: &[&str]| {
        let output = Command::new("git")
            .arg("-C")
            .arg(manifest)
            .args(args)
            .output()
            .ok()?;
        output
            .status
            .success()
            .then(|| text(&output.stdout).trim().to_owned())
    };
    let top = git(&["rev-parse", "--show-toplevel"])?;
    if Path::new(&top).canonicalize().ok()? != manifest.canonicalize().ok()? {
        return None;
    }
    Some(git(&["rev-parse", "--verify", "HEAD^{commit}"])?[..7].to_owned())
}

#[test]
fn version_prints_version_commit_and_target_on_one_line() {
    // The triple, built without asking the build: this crate targets Linux, gnu or musl.
    let libc = if cfg!(target_env = "musl") {
        "musl"
    } else {
        "gnu"
    };
    let target = format!("{}-unknown-linux-{libc}", std::env::consts::ARCH);
    for flag in ["--version", "-V"] {
        let output = run_without_environment(&[flag]);
        let stdout = text(&output.stdout);
        assert_eq!(output.status.code(), Some(0), "{flag}: {output:?}");
        assert_eq!(text(&output.stderr), "", "{flag}");
        match git_head() {
            Some(commit) => assert_eq!(
                stdout,
                format!(
                    "runner-k8s-hook {} (commit {commit}, {target})\n",
                    env!("CARGO_PKG_VERSION")
                ),
                "{flag}"
            ),
            // Outside a git checkout: RUNNER_K8S_HOOK_COMMIT's digits, or `unknown`.
            None => {
                let prefix = format!("runner-k8s-hook {} (commit ", env!("CARGO_PKG_VERSION"));
                let commit = stdout
                    .strip_prefix(&prefix)
                    .and_then(|rest| rest.strip_suffix(&format!(", {target})\n")))
                    .unwrap_or_else(|| panic!("{flag}: {stdout}"));
                assert!(
                    commit == "unknown" || commit.bytes().all(|b| b.is_ascii_hexdigit()),
                    "{flag}: {stdout}"
                );
            }
        }
    }
}

#[test]
fn help_names_the_hook_and_the_build_subcommand() {
    for flag in ["--help", "-h"] {
        let output = run_without_environment(&[flag]);
        let stdout = text(&output.stdout);
        assert_eq!(output.status.code(), Some(0), "{flag}: {output:?}");
        assert_eq!(text(&output.stderr), "", "{flag}");
        assert!(stdout.starts_with("runner-k8s-hook: "), "{stdout}");
        assert!(
            stdout.contains("usage: runner-k8s-hook              run a hook command"),
            "{stdout}"
        );
        assert!(stdout.contains("runner-k8s-hook build ..."), "{stdout}");
        assert!(stdout.contains("runner-k8s-hook --version"), "{stdout}");
    }
}

/// The hook takes no arguments: a mistyped flag is refused at once, not taken for a hook run
/// that waits for a request on stdin.
#[test]
fn an_unknown_argument_is_refused_without_reading_stdin() {
    for arg in ["--verison", "-v", "prepare_job"] {
        let output = run_without_environment(&[arg]);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{arg}: {stderr}");
        assert_eq!(text(&output.stdout), "", "{arg}");
        assert_eq!(
            stderr,
            format!(
                "error: unknown argument `{arg}`\nhint: the hook takes no arguments (the runner starts it with its request on stdin); see `runner-k8s-hook --help`\n"
            )
        );
    }
}
