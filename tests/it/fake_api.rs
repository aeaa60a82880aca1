//! The fake Kubernetes API server (`tests/support/fake_api`) proven through the real
//! `kube::Client` built from its generated kubeconfig: the exec round trip on both channel
//! protocols, and one test per behaviour whose fidelity the hook's tests rely on.

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt, TryStreamExt};
use k8s_openapi::api::authorization::v1::SelfSubjectAccessReview;
use k8s_openapi::api::core::v1::{Event, PersistentVolumeClaim, Pod, Secret};
use kube::api::{
    Api, AttachParams, DeleteParams, ListParams, LogParams, Patch, PatchParams, PostParams,
    WatchEvent, WatchParams,
};
use kube::runtime::wait::{Condition, await_condition, conditions};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::fake_api::{FakeCluster, FakeClusterOptions, ImageSpec};

const WAIT: Duration = Duration::from_secs(10);

async fn cluster_with(options: FakeClusterOptions) -> (FakeCluster, Api<Pod>) {
    let cluster = FakeCluster::start_with(options).await;
    cluster.images().register_common();
    let pods = Api::namespaced(cluster.client().await, cluster.namespace());
    (cluster, pods)
}

async fn cluster() -> (FakeCluster, Api<Pod>) {
    cluster_with(FakeClusterOptions::default()).await
}

/// A cluster whose API server has the v5 stream translator (1.30 and later).
async fn v5_cluster() -> (FakeCluster, Api<Pod>) {
    cluster_with(FakeClusterOptions {
        exec_v5: true,
        ..FakeClusterOptions::default()
    })
    .await
}

fn pod_from(spec: Value) -> Pod {
    serde_json::from_value(spec).expect("a pod")
}

/// A one-container pod (`restartPolicy: Never`) running `script` with `sh -c`.
fn shell_pod(name: &str, image: &str, script: &str) -> Pod {
    pod_from(json!({
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "app", "image": image, "command": ["sh", "-c", script]}],
        },
    }))
}

async fn wait_for<K>(api: &Api<K>, name: &str, condition: impl Condition<K>) -> K
where
    K: Clone + std::fmt::Debug + Send + serde::de::DeserializeOwned + kube::Resource + 'static,
{
    let waited = tokio::time::timeout(WAIT, await_condition(api.clone(), name, condition)).await;
    if waited.is_err() {
        let last = api.get(name).await;
        panic!("{name} did not reach the condition in time; last seen: {last:#?}");
    }
    waited
        .expect("in time")
        .expect("the watch works")
        .unwrap_or_else(|| panic!("{name} is gone"))
}

fn container_state(pod: &Pod) -> Value {
    serde_json::to_value(
        pod.status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .and_then(|s| s.first())
            .map(|s| s.state.clone()),
    )
    .expect("JSON")
}

fn waiting_reason(pod: &Pod) -> Option<String> {
    container_state(pod)["waiting"]["reason"]
        .as_str()
        .map(str::to_string)
}

fn phase(pod: &Pod) -> String {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default()
}

fn api_error(result: Result<impl std::fmt::Debug, kube::Error>) -> Box<kube::core::Status> {
    match result {
        Err(kube::Error::Api(status)) => status,
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// Create a pod, wait for Running, exec a command that reads stdin and exits 3, read its log,
/// delete it and see it go: on the protocol the options select.
async fn exec_round_trip(exec_v5: bool) {
    let (_cluster, pods) = cluster_with(FakeClusterOptions {
        exec_v5,
        ..FakeClusterOptions::default()
    })
    .await;
    // PID 1 ignores SIGTERM unless it traps it (as in a real container).
    let script = "trap 'exit 0' TERM; echo started; while :; do sleep 0.1; done";
    pods.create(
        &PostParams::default(),
        &shell_pod("job", "busybox:1.36", script),
    )
    .await
    .expect("create the pod");
    let running = wait_for(&pods, "job", conditions::is_pod_running()).await;
    let uid = running.metadata.uid.clone().expect("a uid");

    // On v5 the command also waits for stdin's EOF, which only the close signal delivers.
    let command = if exec_v5 {
        r#"read line; cat >/dev/null; echo "got $line"; echo oops >&2; exit 3"#
    } else {
        r#"read line; echo "got $line"; echo oops >&2; exit 3"#
    };
    let mut attached = pods
        .exec(
            "job",
            ["sh", "-c", command],
            &AttachParams::default().stdin(true).stderr(true),
        )
        .await
        .expect("exec starts");
    let mut stdin = attached.stdin().expect("stdin");
    let mut stdout = attached.stdout().expect("stdout");
    let mut stderr = attached.stderr().expect("stderr");
    let status = attached.take_status().expect("a status future");
    stdin.write_all(b"hello\n").await.expect("write stdin");
    // v5 signals the end of stdin with a close frame ([255, 0]); on v4 kube can only close the
    // whole socket (and lose the status), so there the command must not need EOF. Dropping
    // kube's stdin writer is not enough: only `shutdown` ends the stream.
    let stdin = if exec_v5 {
        stdin.shutdown().await.expect("close stdin");
        None
    } else {
        Some(stdin)
    };
    let (mut out, mut err) = (String::new(), String::new());
    let (read_out, read_err, status) = tokio::time::timeout(WAIT, async {
        tokio::join!(
            stdout.read_to_string(&mut out),
            stderr.read_to_string(&mut err),
            status
        )
    })
    .await
    .expect("the exec ends");
    read_out.expect("stdout");
    read_err.expect("stderr");
    drop(stdin);
    assert_eq!(out, "got hello\n");
    assert_eq!(err, "oops\n");
    let status = status.expect("a status frame");
    assert_eq!(status.status.as_deref(), Some("Failure"));
    assert_eq!(status.reason.as_deref(), Some("NonZeroExitCode"));
    let causes = status.details.and_then(|d| d.causes).expect("causes");
    assert_eq!(causes[0].reason.as_deref(), Some("ExitCode"));
    assert_eq!(causes[0].message.as_deref(), Some("3"));
    let expected = if exec_v5 {
        "command terminated with non-zero exit code: command terminated with exit code 3"
            .to_string()
    } else {
        format!(
            "command terminated with non-zero exit code: error executing command [sh -c {command}], exit code 3"
        )
    };
    assert_eq!(status.message.as_deref(), Some(expected.as_str()));
    attached.join().await.expect("the exec task ends cleanly");

    let log = pods.logs("job", &LogParams::default()).await.expect("logs");
    assert_eq!(log, "started\n");

    pods.delete("job", &DeleteParams::default())
        .await
        .expect("delete");
    tokio::time::timeout(
        WAIT,
        await_condition(pods.clone(), "job", conditions::is_deleted(&uid)),
    )
    .await
    .expect("the pod goes away")
    .expect("the watch works");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_round_trip_v5() {
    exec_round_trip(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_round_trip_v4() {
    exec_round_trip(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_v4_closing_stdin_closes_the_socket_and_loses_the_status() {
    let (cluster, pods) = cluster_with(FakeClusterOptions {
        exec_v5: false,
        ..FakeClusterOptions::default()
    })
    .await;
    pods.create(
        &PostParams::default(),
        &shell_pod("job", "busybox", "exec sleep 600"),
    )
    .await
    .expect("create");
    wait_for(&pods, "job", conditions::is_pod_running()).await;
    let mut attached = pods
        .exec("job", ["cat"], &AttachParams::default().stdin(true))
        .await
        .expect("exec starts");
    let status = attached.take_status().expect("a status future");
    let mut stdin = attached.stdin().expect("stdin");
    stdin.write_all(b"data").await.expect("write");
    stdin.shutdown().await.expect("close stdin");
    let status = tokio::time::timeout(WAIT, status)
        .await
        .expect("the socket ends");
    assert!(
        status.is_none(),
        "no status can arrive after v4 closed the socket: {status:?}"
    );
    // The command itself got EOF and ended: only the container's two processes remain.
    let deadline = Instant::now() + WAIT;
    while cluster.live_processes() > 2 {
        assert!(Instant::now() < deadline, "cat never saw EOF");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_errors_match_the_api_server() {
    let (cluster, pods) = cluster_with(FakeClusterOptions {
        exec_v5: false,
        ..FakeClusterOptions::default()
    })
    .await;
    cluster.kubelet().hold("pending");
    pods.create(
        &PostParams::default(),
        &shell_pod("pending", "busybox", "true"),
    )
    .await
    .expect("create");
    let error = api_error(
        pods.exec("pending", ["true"], &AttachParams::default())
            .await
            .map(|_| ()),
    );
    assert_eq!(error.code, 400);
    assert_eq!(error.message, "pod pending does not have a host assigned");

    pods.create(
        &PostParams::default(),
        &shell_pod("done", "busybox", "true"),
    )
    .await
    .expect("create");
    wait_for(&pods, "done", |p: Option<&Pod>| {
        p.is_some_and(|p| phase(p) == "Succeeded")
    })
    .await;
    // The kubelet answers before any upgrade: 500 with its plain-text error.
    let error = api_error(
        pods.exec("done", ["true"], &AttachParams::default())
            .await
            .map(|_| ()),
    );
    assert_eq!(error.code, 500, "{error:?}");
    assert_eq!(error.message, "container not found (\"app\")");
    let ap = AttachParams::default().container("nosuch");
    let error = api_error(pods.exec("done", ["true"], &ap).await.map(|_| ()));
    assert_eq!(error.message, "container nosuch is not valid for pod done");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_into_a_stopped_container_on_v5_upgrades_then_fails() {
    let (_cluster, pods) = v5_cluster().await;
    pods.create(
        &PostParams::default(),
        &shell_pod("done", "busybox", "true"),
    )
    .await
    .expect("create");
    wait_for(&pods, "done", |p: Option<&Pod>| {
        p.is_some_and(|p| phase(p) == "Succeeded")
    })
    .await;
    let mut attached = pods
        .exec("done", ["true"], &AttachParams::default())
        .await
        .expect("the v5 translator upgrades first");
    let status = attached
        .take_status()
        .expect("status")
        .await
        .expect("a status frame");
    assert_eq!(status.reason.as_deref(), Some("InternalError"));
    assert_eq!(
        status.message.as_deref(),
        Some(
            "Internal error occurred: unable to upgrade connection: container not found (\"app\")"
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unregistered_image_fails_to_pull_then_backs_off() {
    let (cluster, pods) = cluster().await;
    let mut pod = shell_pod("pull", "nosuch:1.0", "true");
    pod.metadata.labels = Some([("runner-pod".to_string(), "r".to_string())].into());
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("create");
    let failed = wait_for(&pods, "pull", |p: Option<&Pod>| {
        p.and_then(waiting_reason).as_deref() == Some("ErrImagePull")
    })
    .await;
    assert_eq!(phase(&failed), "Pending");
    assert_eq!(
        container_state(&failed)["waiting"]["message"],
        "rpc error: code = NotFound desc = failed to pull and unpack image \"docker.io/library/nosuch:1.0\": failed to resolve reference \"docker.io/library/nosuch:1.0\": docker.io/library/nosuch:1.0: not found"
    );
    let backoff = wait_for(&pods, "pull", |p: Option<&Pod>| {
        p.and_then(waiting_reason).as_deref() == Some("ImagePullBackOff")
    })
    .await;
    let message = container_state(&backoff)["waiting"]["message"].clone();
    assert!(
        message.as_str().is_some_and(
            |m| m.starts_with("Back-off pulling image \"nosuch:1.0\": ErrImagePull: rpc error")
        ),
        "{message}"
    );
    let error = api_error(pods.logs("pull", &LogParams::default()).await);
    assert_eq!(error.code, 400);
    assert!(
        error
            .message
            .starts_with("container \"app\" in pod \"pull\" is waiting to start: "),
        "{}",
        error.message
    );

    let events: Api<Event> = Api::namespaced(cluster.client().await, cluster.namespace());
    let listed = events
        .list(&ListParams::default().fields("involvedObject.name=pull"))
        .await
        .expect("events");
    assert!(listed.items.iter().any(|e| {
        e.reason.as_deref() == Some("Failed")
            && e.message
                .as_deref()
                .is_some_and(|m| m.starts_with("Failed to pull image \"nosuch:1.0\": "))
    }));

    // The kubelet keeps retrying: once the image exists, the pod starts.
    cluster
        .images()
        .register("nosuch:1.0", ImageSpec::host(&["sh"]));
    wait_for(&pods, "pull", |p: Option<&Pod>| {
        p.is_some_and(|p| phase(p) == "Succeeded")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unschedulable_pods_get_the_condition_and_an_event() {
    let (cluster, pods) = cluster().await;
    let client = cluster.client().await;
    let mut pod = shell_pod("claims", "busybox", "true");
    let spec = pod.spec.as_mut().expect("spec");
    spec.volumes = Some(vec![
        serde_json::from_value(
            json!({"name": "work", "persistentVolumeClaim": {"claimName": "missing"}}),
        )
        .expect("volume"),
    ]);
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("create");
    let pending = wait_for(&pods, "claims", |p: Option<&Pod>| {
        p.and_then(|p| p.status.as_ref()?.conditions.clone())
            .is_some_and(|c| {
                c.iter()
                    .any(|c| c.reason.as_deref() == Some("Unschedulable"))
            })
    })
    .await;
    let condition = pending
        .status
        .and_then(|s| s.conditions)
        .expect("conditions")[0]
        .clone();
    assert_eq!(condition.type_, "PodScheduled");
    assert_eq!(condition.status, "False");
    let expected = "0/1 nodes are available: persistentvolumeclaim \"missing\" not found. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling..";
    assert_eq!(condition.message.as_deref(), Some(expected));
    let events: Api<Event> = Api::namespaced(client.clone(), cluster.namespace());
    let listed = events
        .list(&ListParams::default().fields("involvedObject.name=claims"))
        .await
        .expect("events");
    let failed = listed
        .items
        .iter()
        .find(|e| e.reason.as_deref() == Some("FailedScheduling"))
        .expect("a FailedScheduling event");
    assert_eq!(failed.message.as_deref(), Some(expected));
    assert_eq!(failed.type_.as_deref(), Some("Warning"));

    // Creating the claim lets the scheduler place the pod.
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client, cluster.namespace());
    let claim = serde_json::from_value(json!({
        "metadata": {"name": "missing"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }))
    .expect("pvc");
    pvcs.create(&PostParams::default(), &claim)
        .await
        .expect("create the PVC");
    wait_for(&pods, "claims", |p: Option<&Pod>| {
        p.is_some_and(|p| phase(p) == "Succeeded")
    })
    .await;

    // A scripted scheduler message, until released.
    cluster
        .kubelet()
        .unschedulable("big", "0/3 nodes are available: 3 Insufficient cpu.");
    pods.create(&PostParams::default(), &shell_pod("big", "busybox", "true"))
        .await
        .expect("create");
    wait_for(&pods, "big", |p: Option<&Pod>| {
        p.and_then(|p| p.status.as_ref()?.conditions.clone())
            .is_some_and(|c| {
                c.iter().any(|c| {
                    c.message.as_deref() == Some("0/3 nodes are available: 3 Insufficient cpu.")
                })
            })
    })
    .await;
    cluster.kubelet().release("big");
    wait_for(&pods, "big", |p: Option<&Pod>| {
        p.is_some_and(|p| phase(p) == "Succeeded")
    })
    .await;
}

/// The condition message of an `Unschedulable` pod, once it has one.
async fn unschedulable_message(pods: &Api<Pod>, name: &str) -> String {
    let pending = wait_for(pods, name, |p: Option<&Pod>| {
        p.and_then(|p| p.status.as_ref()?.conditions.clone())
            .is_some_and(|c| {
                c.iter()
                    .any(|c| c.reason.as_deref() == Some("Unschedulable"))
            })
    })
    .await;
    let condition = pending
        .status
        .and_then(|s| s.conditions)
        .expect("conditions")[0]
        .clone();
    assert_eq!(
        (condition.type_.as_str(), condition.status.as_str()),
        ("PodScheduled", "False")
    );
    condition.message.unwrap_or_default()
}

/// Reasons of the Events about pod `name`, in order.
async fn event_reasons(cluster: &FakeCluster, name: &str) -> Vec<String> {
    let events: Api<Event> = Api::namespaced(cluster.client().await, cluster.namespace());
    events
        .list(&ListParams::default().fields(&format!("involvedObject.name={name}")))
        .await
        .expect("events")
        .items
        .into_iter()
        .filter_map(|e| e.reason)
        .collect()
}

/// Taints, cordon and `spec.nodeName` as a real 1.28 scheduler and kubelet treat them: an
/// untolerated `NoSchedule` taint or a cordon leaves a pod `Unschedulable` with the scheduler's
/// exact message (double period included) until the node changes; a toleration lets it through;
/// `spec.nodeName` bypasses the scheduler (no `Scheduled` Event) and runs despite both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taints_cordon_and_node_name_are_honoured_like_a_real_scheduler() {
    let (cluster, pods) = cluster().await;
    let node = cluster.options().node_name.clone();
    let running = |p: Option<&Pod>| p.is_some_and(|p| phase(p) == "Running");
    let sleeper = |name: &str, spec: Value| {
        let mut pod = shell_pod(name, "busybox", "sleep 30");
        let mut value = serde_json::to_value(&pod).unwrap();
        for (k, v) in spec.as_object().unwrap() {
            value["spec"][k] = v.clone();
        }
        pod = pod_from(value);
        pod
    };
    cluster
        .kubelet()
        .taint("dedicated", "runners", "NoSchedule");

    // No toleration: Unschedulable, one FailedScheduling Event with the same message.
    pods.create(&PostParams::default(), &sleeper("plain", json!({})))
        .await
        .expect("create");
    let message = unschedulable_message(&pods, "plain").await;
    let expected = "0/1 nodes are available: 1 node(s) had untolerated taint {dedicated: runners}. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling..";
    assert_eq!(message, expected);
    assert_eq!(event_reasons(&cluster, "plain").await, ["FailedScheduling"]);

    // Tolerated (Equal), tolerated by a key-less Exists, or bound by nodeName: all run.
    let tolerating = json!({"tolerations": [
        {"key": "dedicated", "operator": "Equal", "value": "runners", "effect": "NoSchedule"}]});
    let everything = json!({"tolerations": [{"operator": "Exists"}]});
    let bound = json!({"nodeName": node});
    for (name, spec) in [
        ("tolerating", tolerating.clone()),
        ("everything", everything),
        ("bound", bound.clone()),
    ] {
        pods.create(&PostParams::default(), &sleeper(name, spec))
            .await
            .expect("create");
        wait_for(&pods, name, running).await;
    }
    assert!(
        event_reasons(&cluster, "tolerating")
            .await
            .contains(&"Scheduled".to_owned())
    );
    let bound_events = event_reasons(&cluster, "bound").await;
    assert!(
        !bound_events
            .iter()
            .any(|r| r == "Scheduled" || r == "FailedScheduling"),
        "the scheduler never saw it: {bound_events:?}"
    );
    // A toleration for another value or effect does not match.
    let other = json!({"tolerations": [
        {"key": "dedicated", "operator": "Equal", "value": "builds", "effect": "NoSchedule"},
        {"key": "dedicated", "operator": "Exists", "effect": "NoExecute"}]});
    pods.create(&PostParams::default(), &sleeper("other", other))
        .await
        .expect("create");
    assert_eq!(unschedulable_message(&pods, "other").await, expected);

    // Removing the taint schedules the waiting pods soon after.
    let untainted = Instant::now();
    cluster.kubelet().untaint("dedicated");
    for name in ["plain", "other"] {
        wait_for(&pods, name, running).await;
    }
    assert!(untainted.elapsed() < Duration::from_secs(5));

    // Cordoned: the same for new pods, but a toleration of the taint does not help; nodeName
    // still runs.
    cluster.kubelet().cordon();
    pods.create(&PostParams::default(), &sleeper("cordoned", tolerating))
        .await
        .expect("create");
    let mut bound_again = sleeper("bound-cordoned", bound);
    bound_again.metadata.name = Some("bound-cordoned".into());
    pods.create(&PostParams::default(), &bound_again)
        .await
        .expect("create");
    wait_for(&pods, "bound-cordoned", running).await;
    assert_eq!(
        unschedulable_message(&pods, "cordoned").await,
        "0/1 nodes are available: 1 node(s) were unschedulable. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.."
    );
    cluster.kubelet().uncordon();
    wait_for(&pods, "cordoned", running).await;
    for name in [
        "plain",
        "tolerating",
        "everything",
        "bound",
        "other",
        "cordoned",
        "bound-cordoned",
    ] {
        pods.delete(name, &DeleteParams::default().grace_period(0))
            .await
            .expect("delete");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_code_and_termination_message_then_the_phase() {
    let (_cluster, pods) = cluster().await;
    // Watch from before the pod exists, so every status change is seen in order.
    let mut watch = pods
        .watch(&WatchParams::default().fields("metadata.name=exit"), "0")
        .await
        .expect("watch")
        .boxed();
    let script = "echo partial; printf 'sha256:abc' > /dev/termination-log; exit 3";
    pods.create(
        &PostParams::default(),
        &shell_pod("exit", "busybox", script),
    )
    .await
    .expect("create");
    let mut next_pod = async || match tokio::time::timeout(WAIT, watch.try_next()).await {
        Ok(Ok(Some(WatchEvent::Added(pod) | WatchEvent::Modified(pod)))) => pod,
        other => panic!("expected a pod, got {other:?}"),
    };
    let terminated = loop {
        let pod = next_pod().await;
        if container_state(&pod)["terminated"].is_object() {
            break pod;
        }
    };
    let state = container_state(&terminated)["terminated"].clone();
    assert_eq!(state["exitCode"], 3);
    assert_eq!(state["reason"], "Error");
    assert_eq!(state["message"], "sha256:abc");
    assert!(state["startedAt"].is_string() && state["finishedAt"].is_string());
    assert_ne!(
        phase(&terminated),
        "Failed",
        "the phase follows the container state"
    );
    let failed = loop {
        let pod = next_pod().await;
        if phase(&pod) == "Failed" {
            break pod;
        }
    };
    let ready = failed
        .status
        .and_then(|s| s.conditions)
        .expect("conditions")
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .expect("Ready");
    assert_eq!(ready.status, "False");

    // A command that does not exist is runc's StartError, exit code 128.
    let mut missing = shell_pod("missing", "busybox", "true");
    missing.spec.as_mut().expect("spec").containers[0].command =
        Some(vec!["no-such-binary".into()]);
    pods.create(&PostParams::default(), &missing)
        .await
        .expect("create");
    let failed = wait_for(&pods, "missing", |p: Option<&Pod>| {
        p.is_some_and(|p| phase(p) == "Failed")
    })
    .await;
    let state = container_state(&failed)["terminated"].clone();
    assert_eq!(state["exitCode"], 128);
    assert_eq!(state["reason"], "StartError");
    assert!(
        state["message"].as_str().is_some_and(
            |m| m.contains("exec: \"no-such-binary\": executable file not found in $PATH")
        ),
        "{state}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_secret_key_is_create_container_config_error() {
    let (cluster, pods) = cluster().await;
    let pod = pod_from(json!({
        "metadata": {"name": "env"},
        "spec": {"restartPolicy": "Never", "containers": [{
            "name": "app", "image": "busybox", "command": ["sh", "-c", "echo $TOKEN"],
            "env": [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}}],
        }]},
    }));
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("create");
    let blocked = wait_for(&pods, "env", |p: Option<&Pod>| {
        p.and_then(waiting_reason).as_deref() == Some("CreateContainerConfigError")
    })
    .await;
    assert_eq!(
        container_state(&blocked)["waiting"]["message"],
        "secret \"creds\" not found"
    );
    let secrets: Api<Secret> = Api::namespaced(cluster.client().await, cluster.namespace());
    let secret = serde_json::from_value(
        json!({"metadata": {"name": "creds"}, "stringData": {"other": "x"}}),
    )
    .expect("secret");
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("create");
    wait_for(&pods, "env", |p: Option<&Pod>| {
        p.is_some_and(|p| {
            container_state(p)["waiting"]["message"]
                == "couldn't find key token in Secret fake-ns/creds"
        })
    })
    .await;
    secrets
        .patch(
            "creds",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"token": "t0k"}})),
        )
        .await
        .expect("patch");
    wait_for(&pods, "env", |p: Option<&Pod>| {
        p.is_some_and(|p| phase(p) == "Succeeded")
    })
    .await;
    assert_eq!(
        pods.logs("env", &LogParams::default()).await.expect("logs"),
        "t0k\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_resume_after_a_drop_and_expire_after_compaction() {
    let (cluster, pods) = cluster().await;
    cluster.kubelet().hold("w-*"); // no kubelet status updates in the way
    pods.create(&PostParams::default(), &shell_pod("w-a", "busybox", "true"))
        .await
        .expect("create");
    let start = pods.list(&ListParams::default()).await.expect("list");
    let start_rv = start.metadata.resource_version.expect("list rv");

    let watch = pods
        .watch(&WatchParams::default(), &start_rv)
        .await
        .expect("watch");
    let mut watch = watch.boxed();
    pods.create(&PostParams::default(), &shell_pod("w-b", "busybox", "true"))
        .await
        .expect("create");
    let last_rv = match watch.try_next().await.expect("an event") {
        Some(WatchEvent::Added(pod)) => {
            assert_eq!(pod.metadata.name.as_deref(), Some("w-b"));
            pod.metadata.resource_version.expect("rv")
        }
        other => panic!("expected ADDED w-b, got {other:?}"),
    };
    cluster.faults().drop_watches();
    assert!(watch.try_next().await.expect("a clean end").is_none());

    // Missed while disconnected, replayed on resume.
    pods.create(&PostParams::default(), &shell_pod("w-c", "busybox", "true"))
        .await
        .expect("create");
    let mut resumed = pods
        .watch(&WatchParams::default(), &last_rv)
        .await
        .expect("watch")
        .boxed();
    match resumed.try_next().await.expect("an event") {
        Some(WatchEvent::Added(pod)) => assert_eq!(pod.metadata.name.as_deref(), Some("w-c")),
        other => panic!("expected ADDED w-c, got {other:?}"),
    }

    cluster.faults().compact_history();
    let mut expired = pods
        .watch(&WatchParams::default(), &last_rv)
        .await
        .expect("a watch answers 200")
        .boxed();
    match expired.try_next().await.expect("an event") {
        Some(WatchEvent::Error(status)) => {
            assert_eq!(status.code, 410);
            assert_eq!(status.reason, "Expired");
            assert!(
                status.message.starts_with("too old resource version: "),
                "{}",
                status.message
            );
        }
        other => panic!("expected 410, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_injected_and_retried_by_kube() {
    let (cluster, pods) = cluster().await;
    cluster
        .faults()
        .fail_next(1, "GET", "/pods/x", 500, "etcdserver: request timed out");
    let error = api_error(pods.get("x").await);
    assert_eq!(error.code, 500);
    assert_eq!(error.reason, "InternalError");
    assert_eq!(
        error.message,
        "Internal error occurred: etcdserver: request timed out"
    );

    // 503 is retried by kube's default policy; the caller sees the real answer.
    cluster
        .faults()
        .fail_next(2, "GET", "/pods/x", 503, "the server is shutting down");
    let error = api_error(pods.get("x").await);
    assert_eq!(error.code, 404);
    let statuses: Vec<u16> = cluster
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path.ends_with("/pods/x"))
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, [500, 503, 503, 404]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_errors_are_statuses_with_the_real_codes() {
    let (cluster, pods) = cluster().await;
    cluster.kubelet().hold("dup");
    pods.create(&PostParams::default(), &shell_pod("dup", "busybox", "true"))
        .await
        .expect("create");
    let error = api_error(
        pods.create(&PostParams::default(), &shell_pod("dup", "busybox", "true"))
            .await,
    );
    assert_eq!((error.code, error.reason.as_str()), (409, "AlreadyExists"));
    assert_eq!(error.message, "pods \"dup\" already exists");

    let error = api_error(pods.get("nope").await);
    assert_eq!((error.code, error.reason.as_str()), (404, "NotFound"));
    assert_eq!(error.message, "pods \"nope\" not found");
    let error = api_error(pods.delete("nope", &DeleteParams::default()).await);
    assert_eq!(error.code, 404);

    let invalid = pod_from(json!({
        "metadata": {"name": "Bad_Name"},
        "spec": {"containers": [
            {"name": "app", "image": "busybox", "volumeMounts": [{"name": "work", "mountPath": "/w"}]},
            {"name": "app"},
        ]},
    }));
    let error = api_error(pods.create(&PostParams::default(), &invalid).await);
    assert_eq!((error.code, error.reason.as_str()), (422, "Invalid"));
    assert!(error.message.starts_with("Pod \"Bad_Name\" is invalid: [metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain"), "{}", error.message);
    let fields: Vec<String> = error
        .details
        .expect("details")
        .causes
        .into_iter()
        .map(|c| format!("{} {}", c.field, c.message))
        .collect();
    assert!(
        fields.contains(&"spec.containers[0].volumeMounts[0].name Not found: \"work\"".to_string()),
        "{fields:?}"
    );
    assert!(
        fields.contains(&"spec.containers[1].name Duplicate value: \"app\"".to_string()),
        "{fields:?}"
    );
    assert!(
        fields.contains(&"spec.containers[1].image Required value".to_string()),
        "{fields:?}"
    );

    let secrets: Api<Secret> = Api::namespaced(cluster.client().await, cluster.namespace());
    let registry = serde_json::from_value(json!({
        "metadata": {"name": "reg"}, "type": "kubernetes.io/dockerconfigjson", "data": {},
    }))
    .expect("secret");
    let error = api_error(secrets.create(&PostParams::default(), &registry).await);
    assert_eq!(
        error.message,
        "Secret \"reg\" is invalid: data[.dockerconfigjson]: Required value"
    );
    let immutable = serde_json::from_value(json!({
        "metadata": {"name": "frozen"}, "immutable": true, "stringData": {"a": "1"},
    }))
    .expect("secret");
    secrets
        .create(&PostParams::default(), &immutable)
        .await
        .expect("create");
    let error = api_error(
        secrets
            .patch(
                "frozen",
                &PatchParams::default(),
                &Patch::Merge(json!({"stringData": {"a": "2"}})),
            )
            .await,
    );
    assert_eq!(error.code, 422);
    assert_eq!(
        error.message,
        "Secret \"frozen\" is invalid: data: Forbidden: field is immutable when `immutable` is set"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn label_and_field_selectors_list_and_delete_collections() {
    let (cluster, pods) = cluster().await;
    cluster.kubelet().hold("sel-*");
    for (name, labels) in [
        ("sel-1", json!({"app": "web", "tier": "a"})),
        ("sel-2", json!({"app": "web", "tier": "b"})),
        ("sel-3", json!({"app": "db"})),
    ] {
        let mut pod = shell_pod(name, "busybox", "true");
        pod.metadata.labels = Some(serde_json::from_value(labels).expect("labels"));
        pods.create(&PostParams::default(), &pod)
            .await
            .expect("create");
    }
    let names = |selector: &str| {
        let pods = pods.clone();
        let selector = selector.to_string();
        async move {
            let list = pods
                .list(&ListParams::default().labels(&selector))
                .await
                .expect("list");
            list.items
                .into_iter()
                .filter_map(|p| p.metadata.name)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(names("app=web").await, ["sel-1", "sel-2"]);
    assert_eq!(names("app=web,tier!=a").await, ["sel-2"]);
    assert_eq!(names("tier in (a, b)").await, ["sel-1", "sel-2"]);
    assert_eq!(names("app notin (web)").await, ["sel-3"]);
    assert_eq!(names("!tier").await, ["sel-3"]);
    let by_name = pods
        .list(&ListParams::default().fields("metadata.name=sel-2"))
        .await
        .expect("list");
    assert_eq!(by_name.items.len(), 1);
    let error = api_error(
        pods.list(&ListParams::default().fields("spec.bogus=1"))
            .await,
    );
    assert_eq!(error.message, "field label not supported: spec.bogus");

    let paged = pods
        .list(&ListParams::default().limit(2))
        .await
        .expect("page 1");
    assert_eq!(paged.items.len(), 2);
    let token = paged.metadata.continue_.expect("a continue token");
    let rest = pods
        .list(&ListParams::default().limit(2).continue_token(&token))
        .await
        .expect("page 2");
    assert_eq!(rest.items.len(), 1);

    pods.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels("app=web"),
    )
    .await
    .expect("deletecollection");
    assert_eq!(names("").await, ["sel-3"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_subject_access_reviews_and_forbidden_requests() {
    let (cluster, _pods) = cluster().await;
    let client = cluster.hook_client().await;
    cluster.rbac().deny("pods/exec", "create");
    cluster.rbac().deny("secrets", "list");
    let reviews: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let review = |resource: &str, subresource: &str, verb: &str| {
        serde_json::from_value::<SelfSubjectAccessReview>(json!({
            "spec": {"resourceAttributes": {
                "namespace": "fake-ns", "resource": resource, "subresource": subresource, "verb": verb,
            }},
        }))
        .expect("review")
    };
    for (resource, subresource, verb, allowed) in [
        ("pods", "", "get", true),
        ("pods", "", "watch", false),
        ("pods", "exec", "create", false),
        ("pods", "exec", "get", true),
        ("pods", "log", "get", true),
        ("secrets", "", "list", false),
        ("configmaps", "", "get", false),
    ] {
        let answer = reviews
            .create(&PostParams::default(), &review(resource, subresource, verb))
            .await
            .expect("a review");
        assert_eq!(
            answer.status.expect("status").allowed,
            allowed,
            "{resource}/{subresource} {verb}"
        );
    }
    let secrets: Api<Secret> = Api::namespaced(client.clone(), cluster.namespace());
    let error = api_error(secrets.list(&ListParams::default()).await);
    assert_eq!(error.code, 403);
    assert_eq!(
        error.message,
        "secrets is forbidden: User \"system:serviceaccount:fake-ns:arc-runner-set-gha-rs-kube-mode\" cannot list resource \"secrets\" in API group \"\" in the namespace \"fake-ns\""
    );
    // ARC's Role has no `watch` on pods: the API server's answer, byte for byte as a 1.28
    // server writes it.
    let pods: Api<Pod> = Api::namespaced(client.clone(), cluster.namespace());
    let error = api_error(
        pods.watch(&WatchParams::default().fields("metadata.name=x"), "0")
            .await
            .map(|_| ()),
    );
    assert_eq!(error.code, 403);
    assert_eq!(
        error.message,
        "pods \"x\" is forbidden: User \"system:serviceaccount:fake-ns:arc-runner-set-gha-rs-kube-mode\" cannot watch resource \"pods\" in API group \"\" in the namespace \"fake-ns\""
    );
    // The test's own (admin) client may do anything.
    let admin: Api<Secret> = Api::namespaced(cluster.client().await, cluster.namespace());
    admin
        .list(&ListParams::default())
        .await
        .expect("admin lists secrets");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pvc_is_shared_between_pods() {
    let (cluster, pods) = cluster().await;
    let pvcs: Api<PersistentVolumeClaim> =
        Api::namespaced(cluster.client().await, cluster.namespace());
    let claim = serde_json::from_value(json!({
        "metadata": {"name": "work"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }))
    .expect("pvc");
    pvcs.create(&PostParams::default(), &claim)
        .await
        .expect("create");
    std::fs::write(
        cluster.pvc_dir("fake-ns", "work").join("from-host"),
        "host\n",
    )
    .expect("seed");
    let with_claim = |name: &str, script: &str| {
        let mut pod = shell_pod(name, "busybox", script);
        let spec = pod.spec.as_mut().expect("spec");
        spec.volumes = Some(vec![
            serde_json::from_value(
                json!({"name": "work", "persistentVolumeClaim": {"claimName": "work"}}),
            )
            .expect("volume"),
        ]);
        spec.containers[0].volume_mounts = Some(vec![
            serde_json::from_value(json!({"name": "work", "mountPath": "/home/runner/_work"}))
                .expect("mount"),
        ]);
        pod
    };
    pods.create(
        &PostParams::default(),
        &with_claim("writer", "echo shared > /home/runner/_work/from-a"),
    )
    .await
    .expect("create");
    wait_for(&pods, "writer", |p: Option<&Pod>| {
        p.is_some_and(|p| phase(p) == "Succeeded")
    })
    .await;
    pods.create(
        &PostParams::default(),
        &with_claim(
            "reader",
            "cat /home/runner/_work/from-a /home/runner/_work/from-host",
        ),
    )
    .await
    .expect("create");
    wait_for(&pods, "reader", |p: Option<&Pod>| {
        p.is_some_and(|p| phase(p) == "Succeeded")
    })
    .await;
    assert_eq!(
        pods.logs("reader", &LogParams::default())
            .await
            .expect("logs"),
        "shared\nhost\n"
    );
    assert_eq!(
        std::fs::read_to_string(
            cluster
                .pod_volume_dir("fake-ns", "reader", "work")
                .join("from-a")
        )
        .expect("the host sees it"),
        "shared\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_volumes_hold_the_secret_files_read_only() {
    let (cluster, pods) = cluster().await;
    let secrets: Api<Secret> = Api::namespaced(cluster.client().await, cluster.namespace());
    let secret = serde_json::from_value(json!({
        "metadata": {"name": "creds"}, "stringData": {"user": "alice", "token": "t0k"},
    }))
    .expect("secret");
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("create");
    let pod = pod_from(json!({
        "metadata": {"name": "files"},
        "spec": {
            "restartPolicy": "Never",
            "volumes": [
                {"name": "all", "secret": {"secretName": "creds"}},
                {"name": "some", "secret": {"secretName": "creds", "items": [{"key": "token", "path": "nested/tok", "mode": 256}]}},
            ],
            "containers": [{
                "name": "app", "image": "busybox",
                "command": ["sh", "-c", "cat /s/user; echo; cat /i/nested/tok; echo; ls /i; stat -c %a /i/nested/tok; touch /s/x 2>/dev/null || echo read-only"],
                "volumeMounts": [{"name": "all", "mountPath": "/s"}, {"name": "some", "mountPath": "/i"}],
            }],
        },
    }));
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("create");
    wait_for(&pods, "files", |p: Option<&Pod>| {
        p.is_some_and(|p| phase(p) == "Succeeded")
    })
    .await;
    assert_eq!(
        pods.logs("files", &LogParams::default())
            .await
            .expect("logs"),
        "alice\nt0k\nnested\n400\nread-only\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_pod_kills_every_process_after_the_grace_period() {
    let (cluster, pods) = cluster().await;
    // Unique durations mark this test's processes in /proc.
    let (main, background) = (unique_seconds(), unique_seconds());
    // `sleep` as PID 1 has no SIGTERM handler: only the SIGKILL after the grace period ends it.
    pods.create(
        &PostParams::default(),
        &shell_pod("sleeper", "busybox", &format!("exec sleep {main}")),
    )
    .await
    .expect("create");
    let running = wait_for(&pods, "sleeper", conditions::is_pod_running()).await;
    let uid = running.metadata.uid.clone().expect("uid");
    let mut attached = pods
        .exec(
            "sleeper",
            [
                "sh".to_string(),
                "-c".to_string(),
                format!("sleep {background} >/dev/null 2>&1 & echo $!"),
            ],
            &AttachParams::default(),
        )
        .await
        .expect("exec");
    let mut out = String::new();
    attached
        .stdout()
        .expect("stdout")
        .read_to_string(&mut out)
        .await
        .expect("read");
    assert!(!out.trim().is_empty());
    assert!(cluster.live_processes() >= 1);

    let watch = pods
        .watch(&WatchParams::default().fields("metadata.name=sleeper"), "0")
        .await
        .expect("watch");
    let started = Instant::now();
    pods.delete(
        "sleeper",
        &DeleteParams {
            grace_period_seconds: Some(1),
            ..DeleteParams::default()
        },
    )
    .await
    .expect("delete");
    let deleted = tokio::time::timeout(WAIT, async {
        let mut watch = watch.boxed();
        loop {
            match watch.try_next().await.expect("watch") {
                Some(WatchEvent::Deleted(pod)) => return pod,
                Some(_) => {}
                None => panic!("the watch ended"),
            }
        }
    })
    .await
    .expect("deleted in time");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "SIGTERM was ignored by PID 1"
    );
    let state = container_state(&deleted)["terminated"].clone();
    assert_eq!(state["exitCode"], 137, "{state}");
    assert_eq!(phase(&deleted), "Failed");
    wait_for_gone(&pods, "sleeper", &uid).await;
    assert_eq!(cluster.live_processes(), 0);
    let leftovers: Vec<String> = std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter(|e| {
            std::fs::read(e.path().join("cmdline")).is_ok_and(|cmdline| {
                cmdline == sleep_cmdline(main) || cmdline == sleep_cmdline(background)
            })
        })
        .map(|e| std::fs::read_to_string(e.path().join("stat")).unwrap_or_default())
        .collect();
    assert!(
        leftovers.is_empty(),
        "no container or exec process survives: {leftovers:?}"
    );
}

/// A `sleep` duration no other test (or test process) uses.
fn unique_seconds() -> u64 {
    rand::random_range(100_000_000..999_999_999)
}

fn sleep_cmdline(seconds: u64) -> Vec<u8> {
    format!("sleep\0{seconds}\0").into_bytes()
}

async fn wait_for_gone(pods: &Api<Pod>, name: &str, uid: &str) {
    tokio::time::timeout(
        WAIT,
        await_condition(pods.clone(), name, conditions::is_deleted(uid)),
    )
    .await
    .expect("gone in time")
    .expect("watch");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dependents_are_garbage_collected_with_their_owner() {
    let (cluster, pods) = cluster().await;
    cluster.kubelet().hold("owner");
    let owner = pods
        .create(
            &PostParams::default(),
            &shell_pod("owner", "busybox", "true"),
        )
        .await
        .expect("create");
    let secrets: Api<Secret> = Api::namespaced(cluster.client().await, cluster.namespace());
    let secret = serde_json::from_value(json!({
        "metadata": {"name": "owned", "ownerReferences": [{
            "apiVersion": "v1", "kind": "Pod", "name": "owner", "uid": owner.metadata.uid,
        }]},
        "stringData": {"k": "v"},
    }))
    .expect("secret");
    let created = secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("create");
    pods.delete("owner", &DeleteParams::default())
        .await
        .expect("delete");
    let uid = created.metadata.uid.expect("uid");
    tokio::time::timeout(
        WAIT,
        await_condition(secrets.clone(), "owned", conditions::is_deleted(&uid)),
    )
    .await
    .expect("collected in time")
    .expect("watch");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_containers_run_in_order_and_share_volumes() {
    let (_cluster, pods) = cluster().await;
    let pod = pod_from(json!({
        "metadata": {"name": "init"},
        "spec": {
            "restartPolicy": "Never",
            "volumes": [{"name": "work", "emptyDir": {}}],
            "initContainers": [
                {"name": "first", "image": "busybox", "command": ["sh", "-c", "echo one > /w/order"],
                 "volumeMounts": [{"name": "work", "mountPath": "/w"}]},
                {"name": "second", "image": "busybox", "command": ["sh", "-c", "echo two >> /w/order"],
                 "volumeMounts": [{"name": "work", "mountPath": "/w"}]},
            ],
            "containers": [{
                "name": "app", "image": "busybox",
                "command": ["sh", "-c", "cat /w/order; ls /sub; touch /ro/x 2>/dev/null || echo read-only"],
                "volumeMounts": [
                    {"name": "work", "mountPath": "/w"},
                    {"name": "work", "mountPath": "/sub", "subPath": "nested/dir"},
                    {"name": "work", "mountPath": "/ro", "readOnly": true},
                ],
            }],
        },
    }));
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("create");
    let done = wait_for(&pods, "init", |p: Option<&Pod>| {
        p.is_some_and(|p| phase(p) == "Succeeded")
    })
    .await;
    let status = done.status.expect("status");
    let inits = status.init_container_statuses.expect("init statuses");
    assert!(inits.iter().all(|s| {
        s.state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .is_some_and(|t| t.exit_code == 0 && t.reason.as_deref() == Some("Completed"))
    }));
    assert_eq!(
        pods.logs("init", &LogParams::default())
            .await
            .expect("logs"),
        "one\ntwo\nread-only\n"
    );

    // A failing init container fails the pod (restartPolicy Never); the app never starts.
    let mut failing = pod_from(json!({
        "metadata": {"name": "init-fails"},
        "spec": {
            "restartPolicy": "Never",
            "initContainers": [{"name": "setup", "image": "busybox", "command": ["sh", "-c", "exit 7"]}],
            "containers": [{"name": "app", "image": "busybox", "command": ["true"]}],
        },
    }));
    failing.metadata.labels = None;
    pods.create(&PostParams::default(), &failing)
        .await
        .expect("create");
    let failed = wait_for(&pods, "init-fails", |p: Option<&Pod>| {
        p.is_some_and(|p| phase(p) == "Failed")
    })
    .await;
    assert_eq!(waiting_reason(&failed).as_deref(), Some("PodInitializing"));
    let initialized = failed
        .status
        .and_then(|s| s.conditions)
        .expect("conditions")
        .into_iter()
        .find(|c| c.type_ == "Initialized")
        .expect("Initialized");
    assert_eq!(
        initialized.message.as_deref(),
        Some("containers with incomplete status: [setup]")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_args_env_and_working_dir_resolve_like_kubernetes() {
    let (cluster, pods) = cluster().await;
    cluster.images().register(
        "tool:1",
        ImageSpec::host(&["echo from-cmd"])
            .with_entrypoint(&["/bin/sh", "-c"])
            .with_env("FROM_IMAGE", "i")
            .with_working_dir("/opt/fake-tool/work"),
    );
    let pod = pod_from(json!({
        "metadata": {"name": "table"},
        "spec": {"restartPolicy": "Never", "containers": [
            {"name": "image-defaults", "image": "tool:1"},
            {"name": "args-only", "image": "tool:1", "args": ["echo from-args $FROM_IMAGE $(POD_VAR) '$$(KEPT)'"],
             "env": [{"name": "POD_VAR", "value": "p"}]},
            {"name": "command-only", "image": "tool:1", "command": ["sh", "-c", "pwd; echo $HOSTNAME"]},
            {"name": "both", "image": "tool:1", "command": ["sh", "-c"], "args": ["echo $0 $FROM_IMAGE", "zero"],
             "workingDir": "/var/lib/fake-missing/dir"},
        ]},
    }));
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("create");
    wait_for(&pods, "table", |p: Option<&Pod>| {
        p.is_some_and(|p| phase(p) == "Succeeded")
    })
    .await;
    let log = |container: &str| {
        let pods = pods.clone();
        let params = LogParams {
            container: Some(container.to_string()),
            ..LogParams::default()
        };
        async move { pods.logs("table", &params).await.expect("logs") }
    };
    assert_eq!(log("image-defaults").await, "from-cmd\n");
    // `$$(KEPT)` is the escape for a literal `$(KEPT)`.
    assert_eq!(log("args-only").await, "from-args i p $(KEPT)\n");
    assert_eq!(log("command-only").await, "/opt/fake-tool/work\ntable\n");
    assert_eq!(log("both").await, "zero i\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_wire_protocol_v5_frames_pings_and_close() {
    use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};

    let (cluster, pods) = v5_cluster().await;
    pods.create(
        &PostParams::default(),
        &shell_pod("job", "busybox", "exec sleep 600"),
    )
    .await
    .expect("create");
    wait_for(&pods, "job", conditions::is_pod_running()).await;
    let url = format!(
        "{}/api/v1/namespaces/fake-ns/pods/job/exec?command=cat&stdin=true&stdout=true&stderr=true",
        cluster.server_url().replacen("http", "ws", 1)
    );
    let mut request = url.into_client_request().expect("a request");
    let headers = request.headers_mut();
    headers.insert(
        "Authorization",
        "Bearer fake-token".parse().expect("header"),
    );
    headers.insert(
        "Sec-WebSocket-Protocol",
        "v5.channel.k8s.io, v4.channel.k8s.io"
            .parse()
            .expect("header"),
    );
    let (mut socket, response) = tokio_tungstenite::connect_async(request)
        .await
        .expect("upgrade");
    assert_eq!(
        response.headers()["Sec-WebSocket-Protocol"],
        "v5.channel.k8s.io"
    );
    let ready = tokio::time::timeout(WAIT, socket.next())
        .await
        .expect("a message in time");
    assert!(
        matches!(ready, Some(Ok(Message::Binary(ref b))) if b.as_ref() == [1u8]),
        "the ready frame: {ready:?}"
    );
    socket
        .send(Message::Ping(b"hb".to_vec().into()))
        .await
        .expect("ping");
    let pong = tokio::time::timeout(WAIT, socket.next())
        .await
        .expect("in time");
    assert!(
        matches!(pong, Some(Ok(Message::Pong(ref p))) if p.as_ref() == b"hb"),
        "{pong:?}"
    );
    socket
        .send(Message::binary(b"\x00hi\n".to_vec()))
        .await
        .expect("stdin");
    socket
        .send(Message::binary(vec![255u8, 0]))
        .await
        .expect("close stdin");
    let mut frames = Vec::new();
    while let Some(Ok(message)) = tokio::time::timeout(WAIT, socket.next())
        .await
        .expect("in time")
    {
        match message {
            Message::Binary(data) => frames.push(data.to_vec()),
            Message::Close(_) => break,
            _ => {}
        }
    }
    assert_eq!(frames[0], b"\x01hi\n");
    let (channel, status) = frames.last().expect("a status").split_at(1);
    assert_eq!(channel, [3]);
    assert_eq!(
        serde_json::from_slice::<Value>(status).expect("JSON"),
        json!({"metadata": {}, "status": "Success"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_follow_tail_and_timestamps() {
    let (_cluster, pods) = cluster().await;
    let script = "for i in 1 2 3 4 5; do echo line $i; sleep 0.05; done; echo err >&2";
    pods.create(
        &PostParams::default(),
        &shell_pod("logs", "busybox", script),
    )
    .await
    .expect("create");
    wait_for(&pods, "logs", conditions::is_pod_running()).await;
    let follow = LogParams {
        follow: true,
        ..LogParams::default()
    };
    let mut stream = pods.log_stream("logs", &follow).await.expect("follow");
    let mut followed = String::new();
    tokio::time::timeout(
        WAIT,
        futures::AsyncReadExt::read_to_string(&mut stream, &mut followed),
    )
    .await
    .expect("the follow ends with the container")
    .expect("read");
    assert_eq!(followed, "line 1\nline 2\nline 3\nline 4\nline 5\nerr\n");
    let tail = LogParams {
        tail_lines: Some(2),
        ..LogParams::default()
    };
    assert_eq!(
        pods.logs("logs", &tail).await.expect("tail"),
        "line 5\nerr\n"
    );
    let stamped = LogParams {
        timestamps: true,
        tail_lines: Some(1),
        ..LogParams::default()
    };
    let line = pods.logs("logs", &stamped).await.expect("timestamps");
    let (stamp, text) = line.split_once(' ').expect("a timestamp");
    assert_eq!(text, "err\n");
    assert!(
        stamp.len() == 30 && stamp.ends_with('Z') && stamp.as_bytes()[19] == b'.',
        "{stamp}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripted_pull_failures_and_config_errors() {
    let (cluster, pods) = cluster().await;
    cluster.kubelet().fail_pulls(
        "busybox:1.36",
        "rpc error: code = Unknown desc = failed to pull and unpack image: 429 Too Many Requests",
    );
    pods.create(
        &PostParams::default(),
        &shell_pod("limited", "busybox:1.36", "true"),
    )
    .await
    .expect("create");
    let failed = wait_for(&pods, "limited", |p: Option<&Pod>| {
        p.and_then(waiting_reason).as_deref() == Some("ErrImagePull")
    })
    .await;
    assert!(
        container_state(&failed)["waiting"]["message"]
            .as_str()
            .is_some_and(|m| m.ends_with("429 Too Many Requests"))
    );
    cluster.kubelet().clear_pull_failure("busybox:1.36");
    wait_for(&pods, "limited", |p: Option<&Pod>| {
        p.is_some_and(|p| phase(p) == "Succeeded")
    })
    .await;

    cluster
        .kubelet()
        .config_error("configured", "app", "secret \"scripted\" not found");
    pods.create(
        &PostParams::default(),
        &shell_pod("configured", "busybox", "true"),
    )
    .await
    .expect("create");
    wait_for(&pods, "configured", |p: Option<&Pod>| {
        p.and_then(waiting_reason).as_deref() == Some("CreateContainerConfigError")
    })
    .await;
    cluster.kubelet().release("configured");
    wait_for(&pods, "configured", |p: Option<&Pod>| {
        p.is_some_and(|p| phase(p) == "Succeeded")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_list_watchers_get_the_initial_events_bookmark() {
    use kube::runtime::watcher;

    let (cluster, pods) = cluster().await;
    cluster.kubelet().hold("s-*");
    pods.create(&PostParams::default(), &shell_pod("s-a", "busybox", "true"))
        .await
        .expect("create");
    let mut events =
        watcher::watcher(pods.clone(), watcher::Config::default().streaming_lists()).boxed();
    let mut seen = Vec::new();
    while let Some(event) = tokio::time::timeout(WAIT, events.try_next())
        .await
        .expect("in time")
        .expect("no watcher error")
    {
        match event {
            watcher::Event::Init => seen.push("init".to_string()),
            watcher::Event::InitApply(pod) => seen.push(pod.metadata.name.unwrap_or_default()),
            watcher::Event::InitDone => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(seen, ["init", "s-a"]);
    let watch = cluster
        .requests()
        .into_iter()
        .find(|r| r.is_watch())
        .expect("a watch");
    assert_eq!(watch.param("sendInitialEvents"), Some("true"));
    assert_eq!(watch.param("resourceVersionMatch"), Some("NotOlderThan"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_cluster_kills_processes_and_removes_files() {
    let (cluster, pods) = cluster().await;
    let marker = unique_seconds();
    pods.create(
        &PostParams::default(),
        &shell_pod("left", "busybox", &format!("exec sleep {marker}")),
    )
    .await
    .expect("create");
    wait_for(&pods, "left", conditions::is_pod_running()).await;
    let root = cluster
        .kubeconfig_path()
        .parent()
        .expect("a root")
        .to_path_buf();
    assert!(root.exists());
    drop(cluster);
    assert!(!root.exists(), "the cluster's directory is removed");
    let leftovers = std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .filter(|cmdline| *cmdline == sleep_cmdline(marker))
        .count();
    assert_eq!(leftovers, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_can_bring_its_own_root_filesystem() {
    let (cluster, pods) = cluster().await;
    let rootfs = tempfile::tempdir().expect("a rootfs");
    std::fs::create_dir(rootfs.path().join("bin")).expect("bin");
    std::fs::copy("/bin/busybox", rootfs.path().join("bin/busybox")).expect("busybox-static");
    std::os::unix::fs::symlink("busybox", rootfs.path().join("bin/sh")).expect("sh");
    cluster.images().register(
        "scratch-busybox:1",
        ImageSpec::default()
            .with_rootfs(rootfs.path())
            .with_env("PATH", "/bin")
            .with_entrypoint(&["/bin/busybox"]),
    );
    let pod = pod_from(json!({
        "metadata": {"name": "scratch"},
        "spec": {"restartPolicy": "Never", "containers": [{
            "name": "app", "image": "scratch-busybox:1",
            "args": ["sh", "-c", "ls / | tr '\\n' ' '; test -e /etc/os-release || echo no-etc"],
        }]},
    }));
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("create");
    wait_for(&pods, "scratch", |p: Option<&Pod>| {
        p.is_some_and(|p| phase(p) == "Succeeded")
    })
    .await;
    assert_eq!(
        pods.logs("scratch", &LogParams::default())
            .await
            .expect("logs"),
        "bin dev proc sys tmp no-etc\n"
    );
}

/// Containers and execs run as their `securityContext` says, so file permissions are real:
/// `runAsUser`/`runAsGroup` (container over pod), `fsGroup` as a supplementary group and the
/// group (setgid) of emptyDirs, root when nothing is set, and the capability bounding set
/// (containerd's defaults, minus `drop`, plus `add`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_run_as_their_security_context_and_permissions_are_real() {
    if !nix_like_root() {
        eprintln!("skipped: identities are only switched when the tests run as root");
        return;
    }
    let (_cluster, pods) = cluster().await;
    let keep = "trap 'exit 0' TERM; while :; do sleep 0.1; done";
    let pod = pod_from(json!({
        "metadata": {"name": "ids"},
        "spec": {
            "restartPolicy": "Never",
            "securityContext": {"runAsUser": 2000, "runAsGroup": 2000, "fsGroup": 3000},
            "volumes": [{"name": "data", "emptyDir": {}}],
            "containers": [
                {"name": "user", "image": "busybox", "command": ["sh", "-c", keep],
                 "volumeMounts": [{"name": "data", "mountPath": "/data"}]},
                {"name": "root", "image": "busybox", "command": ["sh", "-c", keep],
                 "securityContext": {"runAsUser": 0, "runAsGroup": 0},
                 "volumeMounts": [{"name": "data", "mountPath": "/data"}]},
                {"name": "nocaps", "image": "busybox", "command": ["sh", "-c", keep],
                 "securityContext": {"runAsUser": 0, "runAsGroup": 0,
                    "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}},
                 "volumeMounts": [{"name": "data", "mountPath": "/data"}]},
                {"name": "some", "image": "busybox", "command": ["sh", "-c", keep],
                 "securityContext": {"runAsUser": 0, "runAsGroup": 0,
                    "allowPrivilegeEscalation": false,
                    "capabilities": {"drop": ["ALL"], "add": ["DAC_OVERRIDE"]}},
                 "volumeMounts": [{"name": "data", "mountPath": "/data"}]},
            ],
        },
    }));
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("create");
    wait_for(&pods, "ids", conditions::is_pod_running()).await;
    let run = async |container: &str, script: &str| -> (String, i32) {
        let mut attached = pods
            .exec(
                "ids",
                ["sh", "-c", script],
                &AttachParams::default()
                    .container(container)
                    .stdin(false)
                    .stderr(false),
            )
            .await
            .expect("exec");
        let mut out = String::new();
        attached
            .stdout()
            .expect("stdout")
            .read_to_string(&mut out)
            .await
            .expect("read");
        let status = attached
            .take_status()
            .expect("status")
            .await
            .expect("a status");
        let code = if status.status.as_deref() == Some("Success") {
            0
        } else {
            1
        };
        (out, code)
    };
    // The container's own process too, not only execs.
    let (out, _) = run(
        "user",
        "id -u; id -g; id -G; stat -c '%u %g %a' /proc/1 /data",
    )
    .await;
    assert_eq!(out, "2000\n2000\n2000 3000\n2000 2000 555\n0 3000 2777\n");
    let (out, code) = run(
        "user",
        "umask 077; echo s > /data/secret; mkdir /data/private; stat -c '%u %g %a' /data/secret /data/private",
    )
    .await;
    assert_eq!((out.as_str(), code), ("2000 3000 600\n2000 3000 2700\n", 0));
    // Root reads what another user keeps private (CAP_DAC_OVERRIDE is a default capability);
    // without capabilities root is just another user.
    let (out, code) = run("root", "id -u; cat /data/secret; ls /data/private").await;
    assert_eq!((out.as_str(), code), ("0\ns\n", 0));
    let (out, code) = run("some", "id -u; cat /data/secret").await;
    assert_eq!(
        (out.as_str(), code),
        ("0\ns\n", 0),
        "with only the one capability needed"
    );
    let (out, code) = run("nocaps", "id -u; cat /data/secret").await;
    assert_eq!((out.as_str(), code), ("0\n", 1));
    let (_, code) = run("user", "touch /data/private/x && chown 0 /data/private/x").await;
    assert_eq!(code, 1, "a non-root user cannot give files away");
}

fn nix_like_root() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// A 1.28 API server (the default) chooses v4 from a client's list, and answers a handshake
/// that offers only protocols it does not serve (v5 alone) with a bare 403.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_handshake_on_a_1_28_server() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    let (cluster, pods) = cluster().await;
    pods.create(
        &PostParams::default(),
        &shell_pod("job", "busybox", "exec sleep 600"),
    )
    .await
    .expect("create");
    wait_for(&pods, "job", conditions::is_pod_running()).await;
    let handshake = |protocols: &'static str| {
        let url = format!(
            "{}/api/v1/namespaces/fake-ns/pods/job/exec?command=true&stdout=true",
            cluster.server_url().replacen("http", "ws", 1)
        );
        let mut request = url.into_client_request().expect("a request");
        let headers = request.headers_mut();
        headers.insert("Authorization", "Bearer fake-token".parse().unwrap());
        headers.insert("Sec-WebSocket-Protocol", protocols.parse().unwrap());
        tokio_tungstenite::connect_async(request)
    };
    let (_socket, response) = handshake("v5.channel.k8s.io, v4.channel.k8s.io")
        .await
        .expect("upgrade");
    assert_eq!(
        response.headers()["Sec-WebSocket-Protocol"],
        "v4.channel.k8s.io"
    );
    match handshake("v5.channel.k8s.io").await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 403);
            assert!(response.body().as_ref().is_none_or(|b| b.is_empty()));
        }
        other => panic!("expected a bare 403, got {other:?}"),
    }
}
