//! A whole job through the hook binary, as the runner drives it, against the fake API server:
//! `prepare_job` → a script step that writes outputs and env → a script step that exits 3 →
//! `cleanup_job`, in both data planes. Checks what a user would: the response the runner reads,
//! the outputs on the runner side, the exit code, and that nothing of ours is left and nothing
//! else was touched.

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret};
use kube::Api;
use kube::api::ListParams;
use serde_json::{Value, json};

use crate::support::fake_api::FakeCluster;
use crate::support::runner::{Mode, Runner, text};

const POD: &str = "runner-abc";

/// Images of the fixtures, runnable on the fake node.
fn register_images(cluster: &FakeCluster) {
    cluster.images().register_common();
    for image in [
        "node:22",
        "redis:7",
        "postgres@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    ] {
        cluster.images().register_host(image, &["sleep", "3600"]);
    }
}

async fn job_lifecycle(mode: Mode) {
    let cluster = FakeCluster::start().await;
    register_images(&cluster);
    let runner = Runner::start(&cluster, POD, mode).await;
    let client = cluster.client().await;
    let ns = cluster.namespace().to_owned();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let runner_uid = pods.get(POD).await.unwrap().metadata.uid.unwrap();

    // prepare_job
    let (request, response_file) = runner.request("prepare_job");
    let output = runner.run(&request, &[]).await;
    assert!(
        output.status.success(),
        "prepare_job failed:\n{}",
        text(&output.stderr)
    );
    let response: Value =
        serde_json::from_str(&std::fs::read_to_string(&response_file).unwrap()).unwrap();
    assert_eq!(response["state"]["jobPod"], "runner-abc-workflow");
    assert_eq!(
        response["state"]["dataPlane"],
        match mode {
            Mode::Volume => "volume",
            Mode::Copy => "copy",
        }
    );
    assert_eq!(response["isAlpine"], false);
    assert_eq!(response["context"]["container"]["image"], "node:22");
    assert_eq!(
        response["context"]["services"],
        json!([
            {"image": "redis:7", "ports": {"6379": "6379"}},
            {"image": "postgres@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "ports": {"5432": "5432"}}
        ])
    );
    let job_pod = pods.get("runner-abc-workflow").await.unwrap();
    let owner = &job_pod.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.name.as_str(), owner.uid.as_str()),
        (POD, runner_uid.as_str())
    );
    let ours = ListParams::default().labels("runner-pod=runner-abc");
    assert_eq!(
        secrets.list(&ours).await.unwrap().items.len(),
        1,
        "pull secret"
    );
    let state = response["state"].clone();

    // A step that writes an output, an env var and a workflow command, and reads the event.
    std::fs::write(runner.temp().join("_runner_file_commands/set_output_1"), "").unwrap();
    std::fs::write(runner.temp().join("_runner_file_commands/set_env_1"), "").unwrap();
    let (request, _) = runner.script_step(
        r#"echo "result=42" >> "$GITHUB_OUTPUT"
echo "FROM_STEP=yes" >> "$GITHUB_ENV"
echo "::notice::hello from $(pwd) as $MY_VAR"
grep -q refs/heads/main /github/workflow/event.json
test -f README.md
"#,
        json!({
            "GITHUB_OUTPUT": "/__w/_temp/_runner_file_commands/set_output_1",
            "GITHUB_ENV": "/__w/_temp/_runner_file_commands/set_env_1",
            "MY_VAR": "a $secret `value`",
        }),
        &state,
    );
    let output = runner.run(&request, &[]).await;
    assert!(
        output.status.success(),
        "step failed:\n{}{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    assert_eq!(
        text(&output.stdout),
        "::notice::hello from /__w/repo/repo as a $secret `value`\n"
    );
    assert_eq!(
        std::fs::read_to_string(runner.temp().join("_runner_file_commands/set_output_1")).unwrap(),
        "result=42\n"
    );
    assert_eq!(
        std::fs::read_to_string(runner.temp().join("_runner_file_commands/set_env_1")).unwrap(),
        "FROM_STEP=yes\n"
    );

    // A step that fails with exit code 3.
    let (request, _) = runner.script_step("echo going down >&2\nexit 3\n", json!({}), &state);
    let output = runner.run(&request, &[]).await;
    assert_eq!(output.status.code(), Some(3), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("going down"), "{stderr}");
    assert!(
        stderr.contains("::error::") && stderr.contains("code 3"),
        "{stderr}"
    );

    // cleanup_job, twice: idempotent.
    for _ in 0..2 {
        let (request, _) = runner.request("cleanup_job");
        let mut request = request;
        request["state"] = state.clone();
        let output = runner.run(&request, &[]).await;
        assert!(
            output.status.success(),
            "cleanup failed:\n{}",
            text(&output.stderr)
        );
    }
    assert!(
        pods.list(&ours).await.unwrap().items.is_empty(),
        "our pods are gone"
    );
    assert!(
        secrets.list(&ours).await.unwrap().items.is_empty(),
        "our secrets are gone"
    );
    // Nothing else was touched: the runner pod and its claim are still there, and every
    // deletion the hook made was of its own objects.
    pods.get(POD).await.expect("the runner pod survives");
    if mode == Mode::Volume {
        let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
        pvcs.get("runner-abc-work")
            .await
            .expect("the work claim survives");
    }
    // ARC's chart Role, which the fake gives the hook, was enough; without `watch` on pods the
    // hook (told so by its pre-flight check) polled the job pod instead of watching it.
    assert_eq!(
        cluster.refused_hook_requests().len(),
        0,
        "{:?}",
        cluster.refused_hook_requests()
    );
    assert_eq!(
        cluster.hook_watches().len(),
        0,
        "{:?}",
        cluster.hook_watches()
    );
    assert!(
        cluster.requests().iter().any(|r| !r.admin
            && r.method == "GET"
            && r.path.ends_with("/pods/runner-abc-workflow"))
    );
    for record in cluster.requests() {
        if record.method == "DELETE" {
            let name = record.path.rsplit('/').next().unwrap_or_default();
            assert!(
                name.starts_with("runner-abc-workflow") || name.starts_with("runner-abc-secret-"),
                "deleted something not ours: {} {}",
                record.method,
                record.path
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alpine_job_image_is_detected() {
    let cluster = FakeCluster::start().await;
    register_images(&cluster);
    let runner = Runner::start(&cluster, POD, Mode::Copy).await;
    let rootfs = runner.work.join("alpine-rootfs");
    crate::support::runner::busybox_rootfs(&rootfs);
    std::fs::write(
        rootfs.join("etc/os-release"),
        "NAME=\"Alpine Linux\"\nID=alpine\nVERSION_ID=3.20.3\n",
    )
    .unwrap();
    cluster.images().register(
        "alpine:3.20",
        crate::support::fake_api::ImageSpec::host(&["sleep", "3600"]).with_rootfs(&rootfs),
    );
    let (mut request, response_file) = runner.request("prepare_job");
    request["args"]["container"]["image"] = "alpine:3.20".into();
    request["args"]["container"]["registry"] = Value::Null;
    request["args"]["services"] = json!([]);
    let output = runner.run(&request, &[]).await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    let response: Value =
        serde_json::from_str(&std::fs::read_to_string(&response_file).unwrap()).unwrap();
    assert_eq!(response["isAlpine"], true);
    assert_eq!(response["state"]["isAlpine"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_silent_steps_are_kept_alive() {
    let cluster = FakeCluster::start().await;
    register_images(&cluster);
    let runner = Runner::start(&cluster, POD, Mode::Volume).await;
    let (mut request, response_file) = runner.request("prepare_job");
    request["args"]["container"]["registry"] = Value::Null;
    request["args"]["services"] = json!([]);
    let output = runner.run(&request, &[]).await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    let state = serde_json::from_str::<Value>(&std::fs::read_to_string(&response_file).unwrap())
        .unwrap()["state"]
        .clone();
    // Silent for three times the heartbeat deadline: only pings and pongs cross the connection.
    let (step, _) = runner.script_step("sleep 3\necho done\n", json!({}), &state);
    let output = runner
        .run(
            &step,
            &[
                ("ACTIONS_RUNNER_HEARTBEAT_PERIOD_MS", "200"),
                ("ACTIONS_RUNNER_HEARTBEAT_DEADLINE_MS", "1000"),
            ],
        )
        .await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), "done\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_in_volume_mode() {
    job_lifecycle(Mode::Volume).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_in_copy_mode() {
    job_lifecycle(Mode::Copy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_watch_granted_the_job_pod_is_watched_not_polled() {
    let cluster = FakeCluster::start().await;
    register_images(&cluster);
    cluster.rbac().allow("pods", "watch");
    let runner = Runner::start(&cluster, POD, Mode::Copy).await;
    let (request, _) = runner.request("prepare_job");
    let output = runner.run(&request, &[]).await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    let watches = cluster.hook_watches();
    assert!(
        watches
            .iter()
            .any(|r| r.param("fieldSelector") == Some("metadata.name=runner-abc-workflow")),
        "{watches:?}"
    );
    let polls = cluster
        .requests()
        .into_iter()
        .filter(|r| !r.admin && r.method == "GET" && r.path.ends_with("/pods/runner-abc-workflow"))
        .count();
    assert_eq!(polls, 0, "watched, not polled");
}
