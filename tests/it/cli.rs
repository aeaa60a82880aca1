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
