//! What waiting by polling costs against waiting by watch: `prepare_job` (create the job pod,
//! wait until it runs, exec into it) through the release binary against the fake API server,
//! alternating between ARC's chart Role (no `watch` on pods: the hook polls) and the same Role
//! plus `watch`. Run by `bench/wait.sh`; prints one `WAIT-BENCH` line per run.

use std::time::Instant;

use serde_json::{Value, json};

use crate::support::fake_api::FakeCluster;
use crate::support::runner::{Mode, Runner, text};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run by bench/wait.sh in release mode"]
async fn waiting_by_polling_against_waiting_by_watch() {
    let runs: usize = std::env::var("WAIT_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let cluster = FakeCluster::start().await;
    cluster.images().register_common();
    cluster
        .images()
        .register_host("node:22", &["sleep", "3600"]);
    let runner = Runner::start(&cluster, "runner-bench", Mode::Volume).await;
    for run in 0..runs * 2 {
        let watch = run % 2 == 1;
        if watch {
            cluster.rbac().allow("pods", "watch");
        } else {
            cluster.rbac().deny("pods", "watch");
        }
        let (mut request, response) = runner.request("prepare_job");
        request["args"]["container"]["registry"] = Value::Null;
        request["args"]["services"] = json!([]);
        let started = Instant::now();
        let output = runner.run(&request, &[]).await;
        let elapsed = started.elapsed();
        assert!(output.status.success(), "{}", text(&output.stderr));
        let state = serde_json::from_str::<Value>(&std::fs::read_to_string(response).unwrap())
            .unwrap()["state"]
            .clone();
        println!(
            "WAIT-BENCH mode={} prepare_job_ms={:.1}",
            if watch { "watch" } else { "poll" },
            elapsed.as_secs_f64() * 1000.0
        );
        let (mut cleanup, _) = runner.request("cleanup_job");
        cleanup["state"] = state;
        let output = runner.run(&cleanup, &[]).await;
        assert!(output.status.success(), "{}", text(&output.stderr));
    }
}
