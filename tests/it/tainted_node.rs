//! A runner node pool tainted `dedicated=runners:NoSchedule`, whose runner pod tolerates the
//! taint (as an ARC pod template gives it), through the hook binary against the fake API
//! server: `prepare_job`, a script step, a container step and `cleanup_job` succeed without any
//! hook template, in both data planes.
//!
//! - Volume mode (ReadWriteOnce work volume): the job and step pods are bound to the runner's
//!   node with `spec.nodeName`, so neither the taint nor a cordon stops them (required node
//!   affinity would leave them `Unschedulable` on a cordoned node).
//! - Copy mode: the pods are scheduled, carrying the runner pod's toleration.

use k8s_openapi::api::core::v1::{Event, Pod, Toleration};
use kube::Api;
use kube::api::ListParams;
use serde_json::{Value, json};

use crate::support::fake_api::FakeCluster;
use crate::support::runner::{Mode, Runner, text};

const POD: &str = "runner-tnt";
const JOB_POD: &str = "runner-tnt-workflow";

fn runner_toleration() -> Value {
    json!({"key": "dedicated", "operator": "Equal", "value": "runners", "effect": "NoSchedule"})
}

async fn start(mode: Mode, tolerating: bool) -> (FakeCluster, Runner) {
    let cluster = FakeCluster::start().await;
    cluster.images().register_common();
    cluster
        .images()
        .register_host("node:22", &["sleep", "3600"]);
    cluster
        .kubelet()
        .taint("dedicated", "runners", "NoSchedule");
    let tolerations = if tolerating {
        json!([runner_toleration()])
    } else {
        json!([])
    };
    let runner = if tolerating {
        Runner::start_tolerating(&cluster, POD, mode, tolerations).await
    } else {
        // A runner pod that was on the node before it was tainted (the taint does not evict it).
        cluster.kubelet().untaint("dedicated");
        let runner = Runner::start_tolerating(&cluster, POD, mode, json!([])).await;
        let pods: Api<Pod> = Api::namespaced(cluster.client().await, cluster.namespace());
        for _ in 0..200 {
            if pods
                .get(POD)
                .await
                .unwrap()
                .spec
                .and_then(|s| s.node_name)
                .is_some()
            {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        cluster
            .kubelet()
            .taint("dedicated", "runners", "NoSchedule");
        runner
    };
    (cluster, runner)
}

fn prepare_request(runner: &Runner) -> (Value, std::path::PathBuf) {
    let (mut request, response) = runner.request("prepare_job");
    request["args"]["container"]["registry"] = Value::Null;
    request["args"]["services"] = json!([]);
    (request, response)
}

async fn events_of(cluster: &FakeCluster, pod: &str) -> Vec<String> {
    let events: Api<Event> = Api::namespaced(cluster.client().await, cluster.namespace());
    events
        .list(&ListParams::default().fields(&format!("involvedObject.name={pod}")))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|e| e.reason)
        .collect()
}

async fn job_on_a_tainted_runner_node(mode: Mode) {
    let (cluster, runner) = start(mode, true).await;
    let pods: Api<Pod> = Api::namespaced(cluster.client().await, cluster.namespace());
    if mode == Mode::Volume {
        // The node is also cordoned (being drained while the runner finishes its job): a pod
        // bound by nodeName still starts there, a scheduled one could not.
        cluster.kubelet().cordon();
    }

    let (request, response) = prepare_request(&runner);
    let state = runner.prepare(&request, &response, &[]).await;

    let job = pods.get(JOB_POD).await.unwrap();
    let spec = job.spec.as_ref().unwrap();
    let expected: Toleration = serde_json::from_value(runner_toleration()).unwrap();
    assert_eq!(
        spec.tolerations.as_deref(),
        Some(&[expected][..]),
        "the job pod carries the runner pod's toleration"
    );
    let events = events_of(&cluster, JOB_POD).await;
    match mode {
        Mode::Volume => {
            assert!(spec.affinity.is_none(), "{:?}", spec.affinity);
            assert!(
                !events
                    .iter()
                    .any(|r| r == "Scheduled" || r == "FailedScheduling"),
                "bound by nodeName, never scheduled: {events:?}"
            );
        }
        Mode::Copy => assert!(events.iter().any(|r| r == "Scheduled"), "{events:?}"),
    }
    assert_eq!(spec.node_name.as_deref(), Some("fake-node"));

    // A script step in the job pod.
    let (step, _) = runner.script_step(
        "echo from-script > from-script.txt\necho script ran\n",
        json!({}),
        &state,
    );
    let output = runner.run(&step, &[]).await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), "script ran\n");

    // A container step: its own pod, on the same tainted (and, in volume mode, cordoned) node.
    let (mut request, _) = runner.request("run_container_step");
    request["state"] = state.clone();
    let args = &mut request["args"];
    args["image"] = "busybox".into();
    args["entryPoint"] = "sh".into();
    args["entryPointArgs"] = json!([
        "-c",
        "\"cat",
        "from-script.txt",
        "&&",
        "echo",
        "from-step",
        ">",
        "/github/workspace/from-step.txt\""
    ]);
    let output = runner.run(&request, &[]).await;
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "container step:\n{stdout}{stderr}");
    assert!(stdout.contains("from-script"), "{stdout}");
    assert_eq!(
        std::fs::read_to_string(runner.workspace().join("from-step.txt")).unwrap(),
        "from-step\n"
    );

    let (mut request, _) = runner.request("cleanup_job");
    request["state"] = state;
    let output = runner.run(&request, &[]).await;
    assert!(
        output.status.success(),
        "cleanup:\n{}",
        text(&output.stderr)
    );
    let ours = ListParams::default().labels(&format!("runner-pod={POD}"));
    assert!(pods.list(&ours).await.unwrap().items.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tainted_and_cordoned_runner_node_in_volume_mode() {
    job_on_a_tainted_runner_node(Mode::Volume).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tainted_runner_node_in_copy_mode() {
    job_on_a_tainted_runner_node(Mode::Copy).await;
}

/// The taint is real: a runner pod that does not tolerate it (it was on the node before the
/// taint) gets a job pod the scheduler will not place, and the hook says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untolerated_taint_keeps_the_job_pod_off_the_node_in_copy_mode() {
    let (cluster, runner) = start(Mode::Copy, false).await;
    let (request, _) = prepare_request(&runner);
    let output = runner
        .run(
            &request,
            &[("ACTIONS_RUNNER_PREPARE_JOB_TIMEOUT_SECONDS", "3")],
        )
        .await;
    let stderr = text(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("untolerated taint {dedicated: runners}"),
        "{stderr}"
    );
    let pods: Api<Pod> = Api::namespaced(cluster.client().await, cluster.namespace());
    pods.get(POD).await.expect("the runner pod is untouched");
}
