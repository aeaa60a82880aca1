//! Steps through an unfriendly control plane, through the binary against the fake API server:
//! an API server that goes away for 10 s (a restart, a control-plane upgrade), exec and log
//! connections cut mid-stream, and requests answered 429/500/503 for a while. Every step must
//! end as it would have without the fault: its output complete, each line once, in order, and
//! its own exit code.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::fake_api::{FakeCluster, ImageSpec};
use crate::support::runner::{Mode, Runner, text};

const POD: &str = "runner-flaky";
/// A step image that prints 40 numbered lines (stdout and stderr) over about 4 s, then exits 4.
const SLOW_IMAGE: &str = "ghcr.io/octo-org/slow-action:v1";
const SLOW: &str =
    "for i in $(seq 1 40); do echo \"line $i\"; echo \"err $i\" >&2; sleep 0.1; done; exit 4";

async fn setup(mode: Mode) -> (FakeCluster, Runner, Value) {
    let cluster = FakeCluster::start().await;
    cluster.images().register_common();
    cluster
        .images()
        .register_host("node:22", &["sleep", "3600"]);
    cluster.images().register(
        SLOW_IMAGE,
        ImageSpec::host(&[]).with_entrypoint(&["sh", "-c", SLOW]),
    );
    let runner = Runner::start(&cluster, POD, mode).await;
    let (mut request, response) = runner.request("prepare_job");
    request["args"]["container"]["registry"] = Value::Null;
    request["args"]["services"] = json!([]);
    let state = runner.prepare(&request, &response, &[]).await;
    (cluster, runner, state)
}

/// `prefix 1` .. `prefix 40`, one per line.
fn numbered(prefix: &str) -> String {
    (1..=40).map(|i| format!("{prefix} {i}\n")).collect()
}

/// The step's own lines of the hook's stderr (the hook's log lines are interleaved there).
fn step_lines(stderr: &str, prefix: &str) -> String {
    stderr
        .lines()
        .filter(|l| l.starts_with(&format!("{prefix} ")))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Run `request` and, `after` into it, inject `fault`.
async fn run_with_fault(
    runner: &Runner,
    request: &Value,
    after: Duration,
    fault: impl FnOnce(),
) -> std::process::Output {
    let hook = runner.run(request, &[]);
    let inject = async {
        tokio::time::sleep(after).await;
        fault();
    };
    let (output, ()) = tokio::join!(hook, inject);
    output
}

async fn script_step_through(mode: Mode, fault: impl Fn(&FakeCluster)) {
    script_step_through_at(mode, &[1500], fault).await;
}

/// A script step with `fault` injected at each of `at` (milliseconds into the step).
async fn script_step_through_at(mode: Mode, at: &[u64], fault: impl Fn(&FakeCluster)) {
    let (cluster, runner, state) = setup(mode).await;
    std::fs::write(runner.temp().join("_runner_file_commands/set_output_f"), "").unwrap();
    let (request, _) = runner.script_step(
        &format!("{SLOW}\n"),
        json!({"GITHUB_OUTPUT": "/__w/_temp/_runner_file_commands/set_output_f"}),
        &state,
    );
    // The step writes its output file at the end, after the fault.
    let mut request = request;
    let script = request["args"]["entryPointArgs"][1]
        .as_str()
        .unwrap()
        .to_owned();
    let name = script.rsplit('/').next().unwrap();
    std::fs::write(
        runner.temp().join(name),
        format!(
            "{}\necho after=yes >> \"$GITHUB_OUTPUT\"\nexit 4\n",
            SLOW.trim_end_matches("; exit 4")
        ),
    )
    .unwrap();
    request["args"]["entryPointArgs"][1] = script.clone().into();
    let hook = runner.run(&request, &[]);
    let inject = async {
        let mut elapsed = 0;
        for ms in at {
            tokio::time::sleep(Duration::from_millis(ms - elapsed)).await;
            elapsed = *ms;
            fault(&cluster);
        }
    };
    let (output, ()) = tokio::join!(hook, inject);
    let stderr = text(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(4),
        "the step's own exit code:\n{stderr}"
    );
    assert_eq!(
        text(&output.stdout),
        numbered("line"),
        "stdout complete, each line once"
    );
    assert_eq!(
        step_lines(&stderr, "err"),
        numbered("err"),
        "stderr complete:\n{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(runner.temp().join("_runner_file_commands/set_output_f")).unwrap(),
        "after=yes\n",
        "file commands written after the fault come back"
    );
    assert_eq!(cluster.refused_hook_requests().len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_step_outlives_an_api_server_that_is_gone_for_10_seconds() {
    script_step_through(Mode::Copy, |cluster| {
        cluster.faults().api_down(Duration::from_secs(10));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_step_outlives_its_connection_cut_again_and_again() {
    script_step_through_at(Mode::Copy, &[1000, 2000, 3000], |cluster| {
        cluster.faults().cut_execs()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_step_outlives_a_cut_exec_connection() {
    script_step_through(Mode::Volume, |cluster| cluster.faults().cut_execs()).await;
}

async fn container_step_through(fault: impl FnOnce(&FakeCluster)) {
    let (cluster, runner, state) = setup(Mode::Copy).await;
    let (mut request, _) = runner.request("run_container_step");
    request["state"] = state;
    request["args"]["image"] = SLOW_IMAGE.into();
    request["args"]["entryPoint"] = Value::Null;
    let output = run_with_fault(&runner, &request, Duration::from_millis(2500), || {
        fault(&cluster)
    })
    .await;
    let stderr = text(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(4),
        "the step's own exit code:\n{stderr}"
    );
    // A container's log merges stdout and stderr; the hook passes it on as stdout.
    let stdout = text(&output.stdout);
    assert_eq!(step_lines(&stdout, "line"), numbered("line"), "{stdout}");
    assert_eq!(step_lines(&stdout, "err"), numbered("err"), "{stdout}");
    assert_eq!(cluster.refused_hook_requests().len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_step_outlives_an_api_server_that_is_gone_for_10_seconds() {
    container_step_through(|cluster| cluster.faults().api_down(Duration::from_secs(10))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_step_log_that_breaks_off_resumes_without_losing_or_repeating_lines() {
    container_step_through(|cluster| cluster.faults().cut_log_streams()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_and_failing_requests_are_retried() {
    let (cluster, runner, state) = setup(Mode::Copy).await;
    // API Priority and Fairness throttles pod creation, the proxy to the kubelet fails an exec
    // with `error dialing backend`, and reads of the pod fail with 503, each for a while.
    cluster.faults().fail_next(
        3,
        "POST",
        "/pods",
        429,
        "Too many requests, please try again later.",
    );
    cluster.faults().fail_next(
        2,
        "GET",
        "/exec",
        500,
        "error dialing backend: dial tcp 10.0.0.5:10250: connect: connection refused",
    );
    cluster.faults().fail_next(
        5,
        "GET",
        "/pods/runner-flaky-",
        503,
        "etcdserver: leader changed",
    );
    let (request, _) = runner.script_step("echo through\n", json!({}), &state);
    let output = runner.run(&request, &[]).await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), "through\n");
    let (mut step, _) = runner.request("run_container_step");
    step["state"] = state;
    step["args"]["image"] = SLOW_IMAGE.into();
    step["args"]["entryPoint"] = Value::Null;
    let output = runner.run(&step, &[]).await;
    assert_eq!(output.status.code(), Some(4), "{}", text(&output.stderr));
    assert_eq!(step_lines(&text(&output.stdout), "line"), numbered("line"));
    let throttled = cluster
        .requests()
        .iter()
        .filter(|r| !r.admin && r.status == 429)
        .count();
    assert_eq!(throttled, 3, "every throttled create was retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_stream_that_goes_silent_does_not_hold_the_step_or_lose_its_exit_code() {
    let (cluster, runner, state) = setup(Mode::Copy).await;
    let (mut request, _) = runner.request("run_container_step");
    request["state"] = state;
    request["args"]["image"] = SLOW_IMAGE.into();
    request["args"]["entryPoint"] = Value::Null;
    let started = std::time::Instant::now();
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        run_with_fault(&runner, &request, Duration::from_millis(2000), || {
            cluster.faults().stall_log_streams()
        }),
    )
    .await
    .expect("the hook does not wait for a log that never ends");
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(4), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the step ended {:?} after it started",
        started.elapsed()
    );
    assert!(
        stderr.contains("the step's log did not end with the container"),
        "{stderr}"
    );
}

/// A step pod deleted (a node drain, an eviction) while the hook's watch was down: the new watch
/// lists no pod and reports no deletion, yet the step must end with the reason, not hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_pod_deleted_while_the_watch_was_down_ends_the_step() {
    use k8s_openapi::api::core::v1::Pod;
    use kube::Api;
    use kube::api::{DeleteParams, ListParams};
    let (cluster, runner, state) = setup(Mode::Copy).await;
    cluster.rbac().allow("pods", "watch");
    let (mut request, _) = runner.request("run_container_step");
    request["state"] = state;
    request["args"]["image"] = SLOW_IMAGE.into();
    request["args"]["entryPoint"] = Value::Null;
    let pods: Api<Pod> = Api::namespaced(cluster.client().await, cluster.namespace());
    let hook = runner.run(&request, &[]);
    let evict = async {
        tokio::time::sleep(Duration::from_millis(2000)).await;
        let steps = pods
            .list(&ListParams::default().labels("app.kubernetes.io/component=step"))
            .await
            .unwrap();
        // The hook's watch breaks and cannot come back for a while; meanwhile the pod goes and
        // the history it would resume from is compacted.
        cluster
            .faults()
            .fail_next(6, "GET", "watch=true", 500, "etcdserver: request timed out");
        cluster.faults().drop_watches();
        for pod in steps.items {
            let name = pod.metadata.name.unwrap();
            pods.delete(&name, &DeleteParams::default().grace_period(0))
                .await
                .unwrap();
        }
        cluster.faults().compact_history();
    };
    let (output, ()) =
        tokio::time::timeout(Duration::from_secs(90), async { tokio::join!(hook, evict) })
            .await
            .expect("the step ends instead of waiting for a pod that is gone");
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("was deleted while the hook waited for it"),
        "{stderr}"
    );
}
