//! Our exec channel loop (`k8s::exec::PodExec`) against the fake API server: what the WebSocket
//! does when the remote command and the connection misbehave.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::PostParams;
use runner_k8s_hook::k8s::exec::{Heartbeat, PodExec};
use runner_k8s_hook::transfer::Stdin;
use serde_json::json;

use crate::support::fake_api::FakeCluster;

async fn running_pod(cluster: &FakeCluster, name: &str) -> PodExec {
    cluster
        .images()
        .register_host("busybox:1.36", &["sleep", "3600"]);
    let client = cluster.client().await;
    let pods: Api<Pod> = Api::namespaced(client, cluster.namespace());
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "job", "image": "busybox:1.36"}],
                 "terminationGracePeriodSeconds": 0}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    tokio::time::timeout(
        Duration::from_secs(30),
        kube::runtime::wait::await_condition(
            pods.clone(),
            name,
            kube::runtime::wait::conditions::is_pod_running(),
        ),
    )
    .await
    .expect("the pod runs within 30 s")
    .unwrap();
    PodExec::new(
        cluster.hook_client().await,
        cluster.namespace(),
        name,
        "job",
        Heartbeat {
            period: Duration::from_secs(1),
            deadline: Duration::from_secs(30),
        },
    )
}

/// A command that writes 16 MiB to stderr before it reads its 8 MiB of stdin: the exec loop must
/// keep reading output while stdin frames wait for the socket, or both sides wait forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_is_read_while_stdin_waits() {
    let cluster = FakeCluster::start().await;
    let exec = running_pod(&cluster, "chatty").await;
    let input = vec![7u8; 8 << 20];
    let stdin = Stdin {
        len: input.len() as u64,
        reader: Box::new(input.as_slice()),
    };
    let argv = [
        "sh",
        "-c",
        "head -c 16777216 /dev/zero >&2; head -c 8388608 | wc -c",
    ]
    .map(str::to_owned)
    .to_vec();
    let mut out = Vec::new();
    let mut err = Vec::new();
    let code = tokio::time::timeout(
        Duration::from_secs(90),
        exec.exec(argv, Some(stdin), &mut out, &mut err),
    )
    .await
    .expect("no deadlock")
    .expect("the exec ends with a status");
    assert_eq!(code, 0);
    assert_eq!(err.len(), 16 << 20);
    assert_eq!(String::from_utf8_lossy(&out).trim(), "8388608");
}
