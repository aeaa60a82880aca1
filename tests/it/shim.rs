//! The launch shims `dist/index.js` and `dist/index.sh` (docs/developer/architecture.md), run the way
//! the runner runs them (actions/runner `src/Runner.Worker/Container/ContainerHooks/ContainerHookManager.cs`): `node index.js` or `sh -e index.sh`,
//! one JSON line on stdin then EOF, SIGINT/SIGTERM sent to the shim's PID only.
//!
//! The real binary is replaced by a stand-in shell script, written into a tempdir, that records
//! its argv, stdin and the signal it got into files, so each test can see what reached the child.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tempfile::TempDir;

const ENV: &str = "RUNNER_K8S_HOOK_BINARY";
const DEADLINE: Duration = Duration::from_secs(20);

/// `$STANDIN_OUT` is where it records; `$1` picks the behaviour:
/// - `exit N`: copy stdin to `stdin`, exit N;
/// - `kill-self`: die of SIGKILL;
/// - `trap`: trap INT/TERM/HUP, write its PID and its `sleep`'s to `ready`, wait; on a signal
///   write its name to `signal` and exit 128+N as a shell would.
const STANDIN: &str = r#"#!/bin/sh
out=${STANDIN_OUT:?}
printf '%s\n' "$@" >"$out/argv"
case $1 in
exit)
  cat >"$out/stdin"
  exit "$2" ;;
kill-self)
  kill -KILL $$ ;;
trap)
  sleep 60 </dev/null >/dev/null 2>&1 &
  pid=$!
  trap 'echo INT >"$out/signal"; kill $pid; exit 130' INT
  trap 'echo TERM >"$out/signal"; kill $pid; exit 143' TERM
  trap 'echo HUP >"$out/signal"; kill $pid; exit 129' HUP
  echo "$$ $pid" >"$out/ready.tmp" && mv "$out/ready.tmp" "$out/ready"
  wait $pid
  echo none >"$out/signal"
  exit 99 ;;
esac
exit 98
"#;

fn dist(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("dist")
        .join(name)
}

/// `node` is required (`scripts/install-deps.sh test` installs it): fail loudly, never skip.
fn node() -> &'static str {
    static CHECKED: OnceLock<()> = OnceLock::new();
    CHECKED.get_or_init(|| {
        let ok = Command::new("node")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            ok,
            "`node` is not on PATH: the shim tests need node >= 20 (run `scripts/install-deps.sh test`)"
        );
    });
    "node"
}

/// A tempdir holding the stand-in binary at `path` (relative) and the `out/` directory it
/// records into.
struct Standin {
    dir: TempDir,
    binary: PathBuf,
}

impl Standin {
    fn new() -> Self {
        Self::at("standin/runner-k8s-hook")
    }

    fn at(rel: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let binary = dir.path().join(rel);
        fs::create_dir_all(binary.parent().unwrap()).unwrap();
        fs::write(&binary, STANDIN).unwrap();
        fs::set_permissions(&binary, fs::Permissions::from_mode(0o755)).unwrap();
        fs::create_dir(dir.path().join("out")).unwrap();
        Self { dir, binary }
    }

    fn out(&self, name: &str) -> PathBuf {
        self.dir.path().join("out").join(name)
    }

    fn read(&self, name: &str) -> String {
        fs::read_to_string(self.out(name))
            .unwrap_or_else(|e| panic!("stand-in did not write {name}: {e}"))
    }

    /// The shim command, with the env override pointing at the stand-in (or removed).
    fn command(&self, shim: Shim, script: &Path, override_env: bool) -> Command {
        let mut cmd = match shim {
            Shim::Node => Command::new(node()),
            Shim::Sh => {
                let mut c = Command::new("sh");
                c.arg("-e");
                c
            }
        };
        cmd.arg(script)
            .env("STANDIN_OUT", self.dir.path().join("out"))
            .env_remove(ENV)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if override_env {
            cmd.env(ENV, &self.binary);
        }
        cmd
    }

    fn shim(&self, shim: Shim) -> Command {
        self.command(shim, &shim.path(), true)
    }
}

#[derive(Clone, Copy, Debug)]
enum Shim {
    Node,
    Sh,
}

impl Shim {
    const ALL: [Shim; 2] = [Shim::Node, Shim::Sh];

    fn path(self) -> PathBuf {
        match self {
            Shim::Node => dist("index.js"),
            Shim::Sh => dist("index.sh"),
        }
    }
}

/// Waits for `child` up to [`DEADLINE`], killing it on timeout.
fn wait(mut child: Child) -> Output {
    let start = Instant::now();
    while child.try_wait().expect("try_wait").is_none() {
        if start.elapsed() > DEADLINE {
            // Not wait_with_output: a stand-in the shim left behind would hold the pipes open.
            child.kill().ok();
            child.wait().ok();
            panic!("shim still running after {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().expect("wait_with_output")
}

fn run(mut cmd: Command) -> Output {
    wait(cmd.spawn().expect("spawn shim"))
}

/// Feeds `input` on stdin (from a thread, so a full pipe cannot deadlock us) and closes it.
fn run_with_stdin(mut cmd: Command, input: Vec<u8>) -> Output {
    let mut child = cmd.stdin(Stdio::piped()).spawn().expect("spawn shim");
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = wait(child);
    writer.join().unwrap().expect("write stdin");
    out
}

fn poll_for(path: &Path) {
    let start = Instant::now();
    while !path.exists() {
        assert!(
            start.elapsed() < DEADLINE,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn kill(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {pid} failed");
}

/// Kills the PIDs listed in a `ready` file when dropped (they are gone already if all went well).
struct Reap(String);

impl Drop for Reap {
    fn drop(&mut self) {
        for pid in self.0.split_whitespace() {
            Command::new("kill")
                .args(["-KILL", pid])
                .stderr(Stdio::null())
                .status()
                .ok();
        }
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn code(status: ExitStatus, shim: Shim) -> i32 {
    status
        .code()
        .unwrap_or_else(|| panic!("{shim:?} shim died of signal {:?}", status.signal()))
}

#[test]
fn exit_codes_pass_through() {
    for shim in Shim::ALL {
        for expected in [0, 3, 255] {
            let s = Standin::new();
            let mut cmd = s.shim(shim);
            cmd.args(["exit", &expected.to_string(), "a b", ""]);
            let out = run(cmd);
            assert_eq!(
                code(out.status, shim),
                expected,
                "{shim:?}: {}",
                stderr(&out)
            );
            // The argv tail arrives unchanged, spaces and empty arguments included.
            assert_eq!(
                s.read("argv"),
                format!("exit\n{expected}\na b\n\n"),
                "{shim:?}"
            );
        }
    }
}

#[test]
fn node_shim_reports_child_killed_by_sigkill_as_137() {
    let s = Standin::new();
    let mut cmd = s.shim(Shim::Node);
    cmd.arg("kill-self");
    let out = run(cmd);
    assert_eq!(out.status.code(), Some(137), "{}", stderr(&out));
}

#[test]
fn sh_shim_execs_so_the_binary_death_is_its_own() {
    let s = Standin::new();
    let mut cmd = s.shim(Shim::Sh);
    cmd.arg("kill-self");
    let out = run(cmd);
    // After `exec` the runner's child *is* the binary: it sees the signal itself, no 128+N.
    assert_eq!(out.status.signal(), Some(9), "{:?}", out.status);
}

/// Sends `signal` to the shim's PID only, as the runner does, once the stand-in has its traps set.
fn signal_reaches_child(shim: Shim, signal: &str, expected_code: i32) {
    let s = Standin::new();
    let mut cmd = s.shim(shim);
    cmd.arg("trap");
    let child = cmd.spawn().expect("spawn shim");
    poll_for(&s.out("ready"));
    // If the signal never reaches it, the stand-in must not outlive the test.
    let _reap = Reap(s.read("ready"));
    kill(child.id(), signal);
    let out = wait(child);
    assert_eq!(
        s.read("signal").trim(),
        signal,
        "{shim:?}: {}",
        stderr(&out)
    );
    assert_eq!(
        code(out.status, shim),
        expected_code,
        "{shim:?}: {}",
        stderr(&out)
    );
}

#[test]
fn sigint_reaches_child_and_its_code_comes_back() {
    for shim in Shim::ALL {
        signal_reaches_child(shim, "INT", 130);
    }
}

#[test]
fn sigterm_reaches_child_and_its_code_comes_back() {
    for shim in Shim::ALL {
        signal_reaches_child(shim, "TERM", 143);
    }
}

#[test]
fn sighup_reaches_child_and_its_code_comes_back() {
    for shim in Shim::ALL {
        signal_reaches_child(shim, "HUP", 129);
    }
}

/// About 1 MB of JSON on one line, with non-ASCII text, plus the runner's final newline.
fn big_request() -> Vec<u8> {
    let chunk = "ünïcödé ✓ 日本語 🚀 \"quoted\" \\ tab\t ";
    let text = chunk.repeat((1 << 20) / chunk.len() + 1);
    let request = serde_json::json!({
        "command": "run_script_step",
        "responseFile": "/runner/_work/_temp/_runner_hook_responses/x.json",
        "args": { "entryPointArgs": ["-e", text], "environmentVariables": {} },
        "state": null,
    });
    let mut bytes = serde_json::to_vec(&request).unwrap();
    assert!(bytes.len() >= 1 << 20 && !bytes.contains(&b'\n'));
    bytes.push(b'\n');
    bytes
}

#[test]
fn stdin_reaches_child_byte_for_byte() {
    let multi = b"{\"first\":1}\n\n{\"second\":\"\xc3\xa9\"}\r\nno newline at end".to_vec();
    for shim in Shim::ALL {
        for input in [big_request(), multi.clone(), Vec::new()] {
            let s = Standin::new();
            let mut cmd = s.shim(shim);
            cmd.args(["exit", "0"]);
            let out = run_with_stdin(cmd, input.clone());
            assert_eq!(code(out.status, shim), 0, "{shim:?}: {}", stderr(&out));
            let got = fs::read(s.out("stdin")).unwrap();
            assert!(
                got == input,
                "{shim:?}: stdin differs ({} bytes sent, {} received)",
                input.len(),
                got.len()
            );
        }
    }
}

#[test]
fn missing_override_binary_is_an_error_line_and_exit_1() {
    for shim in Shim::ALL {
        let s = Standin::new();
        let missing = s.dir.path().join("nope/runner-k8s-hook");
        let mut cmd = s.shim(shim);
        cmd.env(ENV, &missing).args(["exit", "0"]);
        let out = run(cmd);
        let err = stderr(&out);
        assert_eq!(code(out.status, shim), 1, "{shim:?}: {err}");
        assert!(err.starts_with("::error::"), "{shim:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{shim:?}: one line: {err}");
        assert!(err.contains(&*missing.to_string_lossy()), "{shim:?}: {err}");
        assert!(err.contains(ENV), "{shim:?}: {err}");
        assert!(!s.out("argv").exists(), "{shim:?}: nothing else may run");
    }
}

/// The shim copied somewhere with nothing beside it (as /home/runner/k8s/index.js without the
/// binary) names both places it looked and how to fix it.
#[test]
fn missing_binary_beside_shim_names_both_paths() {
    for shim in Shim::ALL {
        let s = Standin::new();
        let home = s.dir.path().join("k8s");
        fs::create_dir(&home).unwrap();
        let script = home.join(shim.path().file_name().unwrap());
        fs::copy(shim.path(), &script).unwrap();
        let out = run(s.command(shim, &script, false));
        let err = stderr(&out);
        assert_eq!(code(out.status, shim), 1, "{shim:?}: {err}");
        assert!(err.starts_with("::error::"), "{shim:?}: {err}");
        for tried in ["k8s/runner-k8s-hook", "k8s/bin/runner-k8s-hook", ENV] {
            assert!(err.contains(tried), "{shim:?}: no {tried} in {err}");
        }
    }
}

#[test]
fn binary_that_cannot_start_is_an_error_line_and_exit_1() {
    for shim in Shim::ALL {
        let s = Standin::new();
        fs::set_permissions(&s.binary, fs::Permissions::from_mode(0o644)).unwrap();
        let out = run(s.shim(shim));
        let err = stderr(&out);
        assert_eq!(code(out.status, shim), 1, "{shim:?}: {err}");
        assert!(err.starts_with("::error::"), "{shim:?}: {err}");
        assert!(
            err.contains(&*s.binary.to_string_lossy()),
            "{shim:?}: {err}"
        );
    }
}

/// ARC launches /home/runner/k8s/index.js and /home/runner/k8s-novolume/index.js: the shim finds
/// the binary beside itself (the documented place) or in `bin/`, with no env override.
#[test]
fn shim_copied_elsewhere_finds_binary_beside_it() {
    for shim in Shim::ALL {
        for (home, rel) in [
            ("k8s", "k8s/runner-k8s-hook"),
            ("k8s-novolume", "k8s-novolume/bin/runner-k8s-hook"),
        ] {
            let s = Standin::at(rel);
            let script = s
                .dir
                .path()
                .join(home)
                .join(shim.path().file_name().unwrap());
            fs::copy(shim.path(), &script).unwrap();
            let mut cmd = s.command(shim, &script, false);
            cmd.args(["exit", "7"]);
            let out = run(cmd);
            assert_eq!(
                code(out.status, shim),
                7,
                "{shim:?} {rel}: {}",
                stderr(&out)
            );
            assert_eq!(s.read("argv"), "exit\n7\n", "{shim:?} {rel}");
        }
    }
}

/// Beside the shim wins over `bin/` when both exist.
#[test]
fn binary_beside_shim_is_preferred_over_bin() {
    for shim in Shim::ALL {
        let s = Standin::at("k8s/bin/runner-k8s-hook");
        let beside = s.dir.path().join("k8s/runner-k8s-hook");
        fs::write(&beside, STANDIN.replace("exit \"$2\"", "exit 42")).unwrap();
        fs::set_permissions(&beside, fs::Permissions::from_mode(0o755)).unwrap();
        let script = s
            .dir
            .path()
            .join("k8s")
            .join(shim.path().file_name().unwrap());
        fs::copy(shim.path(), &script).unwrap();
        let mut cmd = s.command(shim, &script, false);
        cmd.args(["exit", "0"]);
        let out = run(cmd);
        assert_eq!(code(out.status, shim), 42, "{shim:?}: {}", stderr(&out));
    }
}
