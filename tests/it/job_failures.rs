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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unschedulable_pod_fails_with_the_scheduler_message() {
    let (cluster, runner) = setup(Mode::Copy).await;
    cluster.kubelet().unschedulable(
        "runner-xyz-workflow",
        "0/3 nodes are available: 3 Insufficient memory.",
    );
    let (request, _) = prepare_request(&runner, "node:22");
    let output = runner.run(&request, &[]).await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("Unschedulable: 0/3 nodes are available: 3 Insufficient memory."),
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
        stderr.contains("hint: grant the Role in docs/user/rbac-role.yaml"),
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
    // The remote process is gone, not left running in the job pod.
    assert!(
        !sleeping_processes("287"),
        "the step's `sleep 287` is still running"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!finished.exists(), "the step went on after the signal");
    drop(cluster);
}
