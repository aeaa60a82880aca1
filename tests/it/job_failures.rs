//! How a job fails, through the binary against the fake API server: fast and with the reason,
//! leaving nothing behind.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::Api;
use kube::api::ListParams;
use serde_json::{Value, json};

use crate::support::fake_api::FakeCluster;
use crate::support::runner::{Mode, Runner, sleeping_processes, text};

const POD: &str = "runner-xyz";

async fn setup(mode: Mode) -> (FakeCluster, Runner) {
    let cluster = FakeCluster::start().await;
    cluster.images().register_common();
    for image in ["node:22", "redis:7"] {
        cluster.images().register_host(image, &["sleep", "3600"]);
    }
    let runner = Runner::start(&cluster, POD, mode).await;
    (cluster, runner)
}

/// A prepare_job request for `image` with one `redis:7` service, in this runner's paths.
fn prepare_request(runner: &Runner, image: &str) -> (Value, std::path::PathBuf) {
    let (mut request, response) = runner.request("prepare_job");
    request["args"]["container"]["image"] = image.into();
    request["args"]["container"]["registry"] = Value::Null;
    request["args"]["services"] = json!([request["args"]["services"][0].clone()]);
    (request, response)
}

async fn nothing_of_ours_left(cluster: &FakeCluster) {
    let client = cluster.client().await;
    let ours = ListParams::default().labels(&format!("runner-pod={POD}"));
    let pods: Api<Pod> = Api::namespaced(client.clone(), cluster.namespace());
    let secrets: Api<Secret> = Api::namespaced(client, cluster.namespace());
    assert_eq!(pods.list(&ours).await.unwrap().items.len(), 0, "pods left");
    assert_eq!(
        secrets.list(&ours).await.unwrap().items.len(),
        0,
        "secrets left"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpullable_image_fails_within_seconds_with_image_and_reason() {
    let (cluster, runner) = setup(Mode::Copy).await;
    let (request, response) = prepare_request(&runner, "ghcr.io/octo-org/missing:1.0");
    let started = Instant::now();
    let output = runner.run(&request, &[]).await;
    let elapsed = started.elapsed();
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    // The timeout is 60 s in these tests (600 s by default): failing fast means the reason, not
    // the clock, ended the wait.
    assert!(elapsed < Duration::from_secs(15), "took {elapsed:?}");
    assert!(
        stderr
            .lines()
            .any(|l| l == "::error::the job pod `runner-xyz-workflow` did not start"),
        "{stderr}"
    );
    assert!(stderr.contains("ghcr.io/octo-org/missing:1.0"), "{stderr}");
    assert!(
        stderr.contains("ErrImagePull") || stderr.contains("ImagePullBackOff"),
        "{stderr}"
    );
    assert!(
        stderr.contains("hint: check the image name and tag"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(response).unwrap(),
        "",
        "no response on failure"
    );
    nothing_of_ours_left(&cluster).await;
}

/// The lines of `stderr` that contain `needle`.
fn count(stderr: &str, needle: &str) -> usize {
    stderr.lines().filter(|l| l.contains(needle)).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unschedulable_pod_is_waited_for_until_the_timeout_and_fails_with_the_scheduler_message()
{
    let (cluster, runner) = setup(Mode::Copy).await;
    cluster.kubelet().unschedulable(
        "runner-xyz-workflow",
        "0/3 nodes are available: 3 Insufficient memory.",
    );
    let (request, _) = prepare_request(&runner, "node:22");
    let started = Instant::now();
    let output = runner
        .run(
            &request,
            &[("ACTIONS_RUNNER_PREPARE_JOB_TIMEOUT_SECONDS", "4")],
        )
        .await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "waited for the timeout, not less: {:?}",
        started.elapsed()
    );
    assert_eq!(
        count(
            &stderr,
            "pod `runner-xyz-workflow` is waiting for a node: 0/3 nodes are available: 3 Insufficient memory."
        ),
        1,
        "the scheduler's message is printed once: {stderr}"
    );
    assert!(
        stderr.contains("did not get there within 4s; last seen: Unschedulable: 0/3 nodes are available: 3 Insufficient memory."),
        "{stderr}"
    );
    assert!(
        stderr.contains("hint: no node could run the pod in time"),
        "{stderr}"
    );
    nothing_of_ours_left(&cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_that_becomes_schedulable_after_8_seconds_starts_the_job() {
    let (cluster, runner) = setup(Mode::Copy).await;
    let message = "0/1 nodes are available: 1 node(s) were unschedulable. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling..";
    cluster
        .kubelet()
        .unschedulable("runner-xyz-workflow", message);
    let (request, response) = prepare_request(&runner, "node:22");
    let hook = runner.run(&request, &[]);
    let uncordon = async {
        tokio::time::sleep(Duration::from_secs(8)).await;
        cluster.kubelet().release("runner-xyz-workflow");
    };
    let (output, ()) = tokio::join!(hook, uncordon);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert_eq!(
        count(&stderr, &format!("is waiting for a node: {message}")),
        1,
        "{stderr}"
    );
    let response: Value =
        serde_json::from_str(&std::fs::read_to_string(response).unwrap()).expect("a response");
    assert_eq!(response["state"]["jobPod"], "runner-xyz-workflow");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_pull_that_fails_twice_is_retried_by_the_kubelet_and_the_job_starts() {
    let (cluster, runner) = setup(Mode::Copy).await;
    let message = "rpc error: code = Unknown desc = failed to pull and unpack image \"docker.io/library/node:22\": failed to resolve reference \"docker.io/library/node:22\": unexpected status from HEAD request to https://registry-1.docker.io/v2/library/node/manifests/22: 503 Service Unavailable";
    cluster.kubelet().fail_pulls_times("node:22", 2, message);
    let (request, _) = prepare_request(&runner, "node:22");
    let output = runner.run(&request, &[]).await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(
        count(&stderr, "the image pull failed; the kubelet retries it") >= 1,
        "progress is printed: {stderr}"
    );
    assert!(stderr.contains("503 Service Unavailable"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_pull_that_keeps_failing_ends_at_the_bound_with_the_kubelets_message() {
    let (cluster, runner) = setup(Mode::Copy).await;
    let message = "rpc error: code = Unknown desc = failed to pull and unpack image \"docker.io/library/node:22\": failed to do request: Head \"https://registry-1.docker.io/v2/library/node/manifests/22\": dial tcp 1.2.3.4:443: i/o timeout";
    cluster.kubelet().fail_pulls("node:22", message);
    let (request, _) = prepare_request(&runner, "node:22");
    let started = Instant::now();
    let output = runner
        .run(
            &request,
            &[(
                "ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_IMAGE_PULL_TIMEOUT_SECONDS",
                "3",
            )],
        )
        .await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    assert!(
        stderr.contains(&format!(
            "ErrImagePull: {message} (the kubelet kept retrying for 3s)"
        )),
        "{stderr}"
    );
    nothing_of_ours_left(&cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_permissions_are_all_named_before_anything_is_created() {
    let (cluster, runner) = setup(Mode::Copy).await;
    cluster.rbac().deny("pods/exec", "create");
    cluster.rbac().deny("secrets", "delete");
    let (request, _) = prepare_request(&runner, "node:22");
    let before = cluster.requests().len();
    let output = runner.run(&request, &[]).await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "caused by: the service account may not create pods/exec, delete secrets in namespace"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("hint: the runner's service account needs the Role ARC's gha-runner-scale-set chart creates for `containerMode: kubernetes` (pods: get, list, create, delete, update, patch; pods/exec: get, create; pods/log: get, list, watch; secrets: get, list, create, delete)"),
        "{stderr}"
    );
    let hook_requests = &cluster.requests()[before..];
    assert!(
        !hook_requests
            .iter()
            .any(|r| r.method == "POST"
                && (r.path.ends_with("/pods") || r.path.ends_with("/secrets"))),
        "something was created before the permission check failed: {hook_requests:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_without_a_job_container_are_refused_with_what_to_do() {
    let (cluster, runner) = setup(Mode::Copy).await;
    let (request, _) = runner.request("prepare_job_services_only");
    let output = runner.run(&request, &[]).await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("has `services:` but no `container:`"),
        "{stderr}"
    );
    assert!(stderr.contains("add a `container:` to the job"), "{stderr}");
    nothing_of_ours_left(&cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signal_during_a_long_step_stops_it_and_exits_within_7_seconds() {
    let (cluster, runner) = setup(Mode::Volume).await;
    let (request, response) = prepare_request(&runner, "node:22");
    let output = runner.run(&request, &[]).await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    let state: Value = serde_json::from_str::<Value>(&std::fs::read_to_string(response).unwrap())
        .unwrap()["state"]
        .clone();

    // A step that announces itself, then sleeps far longer than the test.
    let marker = runner.work.join("step-started");
    let finished = runner.work.join("step-finished");
    let (step, _) = runner.script_step(
        "touch /__w/step-started\nsleep 287\ntouch /__w/step-finished\n",
        json!({}),
        &state,
    );
    let child = runner.spawn_hook(&step, &[]);
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !marker.exists() {
        assert!(Instant::now() < deadline, "the step never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let signalled = Instant::now();
    assert!(
        std::process::Command::new("kill")
            .args(["-INT", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
    let output = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let elapsed = signalled.elapsed();
    let stderr = text(&output.stderr);
    assert!(
        elapsed < Duration::from_secs(7),
        "exited {elapsed:?} after SIGINT"
    );
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("::error::the hook was cancelled by SIGINT"),
        "{stderr}"
    );
    assert_eq!(
        cluster.refused_hook_requests().len(),
        0,
        "ARC's Role is enough: {:?}",
        cluster.refused_hook_requests()
    );
    // The remote process is gone, not left running in the job pod.
    assert!(
        !sleeping_processes("287"),
        "the step's `sleep 287` is still running"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!finished.exists(), "the step went on after the signal");
    drop(cluster);
}
