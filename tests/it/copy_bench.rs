//! Copy-mode throughput: 10,000 files / 200 MB into a pod and back, through the production path
//! (`k8s::exec::PodExec` over WebSocket to the fake API server, which runs the remote `sh`/`tar`
//! in the pod's sandbox), checked by content. A benchmark, not a test: `bench/copy.sh` runs it in
//! release mode and records the figures in `bench/README.md`.

use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::PostParams;
use runner_k8s_hook::k8s::exec::{Heartbeat, PodExec};
use runner_k8s_hook::transfer::{self, CopyOptions};
use serde_json::json;

use crate::support::fake_api::FakeCluster;

const FILES: usize = 10_000;
const TOTAL_BYTES: usize = 200 * 1024 * 1024;

/// Deterministic, incompressible-ish content: xorshift bytes seeded by the file index.
fn write_tree(root: &Path) -> usize {
    let mut total = 0;
    let per_file = TOTAL_BYTES / FILES;
    for i in 0..FILES {
        let dir = root.join(format!("d{:02}/e{:02}", i % 50, (i / 50) % 20));
        std::fs::create_dir_all(&dir).unwrap();
        let size = per_file / 2 + (i * 7919) % per_file;
        let mut state = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let bytes: Vec<u8> = (0..size)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        std::fs::write(dir.join(format!("f{i:05}.bin")), &bytes).unwrap();
        total += size;
    }
    total
}

fn same_tree(a: &Path, b: &Path) {
    let mut count = 0;
    for i in 0..FILES {
        let rel = format!("d{:02}/e{:02}/f{i:05}.bin", i % 50, (i / 50) % 20);
        assert_eq!(
            std::fs::read(a.join(&rel)).unwrap(),
            std::fs::read(b.join(&rel)).unwrap(),
            "{rel} differs"
        );
        count += 1;
    }
    assert_eq!(count, FILES);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run by bench/copy.sh in release mode"]
async fn copy_mode_throughput() {
    let cluster = FakeCluster::start().await;
    cluster
        .images()
        .register_host("busybox:1.36", &["sleep", "3600"]);
    let client = cluster.client().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), cluster.namespace());
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "copy-bench"},
        "spec": {
            "containers": [{"name": "job", "image": "busybox:1.36",
                "volumeMounts": [{"name": "work", "mountPath": "/__w"}]}],
            "volumes": [{"name": "work", "emptyDir": {}}],
            "terminationGracePeriodSeconds": 0
        }
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    tokio::time::timeout(
        Duration::from_secs(30),
        kube::runtime::wait::await_condition(
            pods.clone(),
            "copy-bench",
            kube::runtime::wait::conditions::is_pod_running(),
        ),
    )
    .await
    .expect("the pod runs within 30 s")
    .unwrap();
    let exec = PodExec::new(
        client,
        cluster.namespace(),
        "copy-bench",
        "job",
        Heartbeat {
            period: Duration::from_secs(5),
            deadline: Duration::from_secs(61),
        },
    );

    let source = tempfile::tempdir().unwrap();
    let back = tempfile::tempdir().unwrap();
    let bytes = write_tree(source.path());

    let started = Instant::now();
    let report_in = transfer::copy_in(&exec, source.path(), "/__w/ws", &CopyOptions::default())
        .await
        .unwrap();
    let copy_in = started.elapsed();
    let started = Instant::now();
    let report_out = transfer::copy_out(&exec, "/__w/ws", back.path(), &CopyOptions::default())
        .await
        .unwrap();
    let copy_out = started.elapsed();
    same_tree(source.path(), back.path());

    assert_eq!(report_in.files, FILES);
    assert_eq!(report_out.files, FILES);
    let mb = bytes as f64 / (1024.0 * 1024.0);
    println!(
        "COPY-BENCH files={FILES} mib={mb:.1} copy_in_s={:.2} copy_out_s={:.2} in_mib_s={:.0} out_mib_s={:.0} attempts_in={} attempts_out={}",
        copy_in.as_secs_f64(),
        copy_out.as_secs_f64(),
        mb / copy_in.as_secs_f64(),
        mb / copy_out.as_secs_f64(),
        report_in.attempts,
        report_out.attempts,
    );
}
