//! `runner-k8s-hook check` against a real cluster (the style of `cluster.rs`):
//!
//! ```sh
//! KUBECONFIG=~/.kube/config cargo test --test it cluster_check -- --ignored --test-threads 1
//! ```
//! They need a cluster that can pull `busybox:1.36` and the builder image
//! (`quay.io/buildah/stable`), and the permissions of docs/user/rbac-role.yaml plus creating the
//! stand-in runner pod. Optional: `RUNNER_K8S_HOOK_TEST_NAMESPACE` (default `default`). Each test
//! starts a stand-in runner pod with a unique name (copy mode: an emptyDir work volume), runs the
//! check as that runner, and deletes the runner pod at the end, also when it fails; the check's
//! own pods are owned by the runner pod, so they would go with it if the check left one.

use std::process::Command;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};

use crate::support::runner::{HOOK, runner_pod, text};

/// A stand-in runner pod, deleted when dropped.
struct RunnerPod {
    pods: Api<Pod>,
    name: String,
    namespace: String,
}

impl Drop for RunnerPod {
    fn drop(&mut self) {
        let pods = self.pods.clone();
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async { pods.delete(&name, &DeleteParams::default()).await })
        })
        .join();
    }
}

async fn start_runner() -> RunnerPod {
    let client = Client::try_default()
        .await
        .expect("cluster tests need KUBECONFIG to name a cluster");
    let namespace =
        std::env::var("RUNNER_K8S_HOOK_TEST_NAMESPACE").unwrap_or_else(|_| "default".to_owned());
    let name = format!(
        "rk8s-check-{}",
        runner_k8s_hook::spec::names::random_suffix()
    );
    let pods: Api<Pod> = Api::namespaced(client, &namespace);
    pods.create(
        &PostParams::default(),
        &runner_pod(
            &name,
            "busybox:1.36",
            json!({"name": "work", "emptyDir": {}}),
        ),
    )
    .await
    .expect("create the stand-in runner pod");
    RunnerPod {
        pods,
        name,
        namespace,
    }
}

/// `runner-k8s-hook check --json <args>` as the runner `runner`, with `env`.
fn check(runner: &RunnerPod, env: &[(&str, &str)], args: &[&str]) -> (Option<i32>, Value) {
    let kubeconfig = std::env::var_os("KUBECONFIG").expect("KUBECONFIG names a cluster");
    let output = Command::new(HOOK)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("KUBECONFIG", kubeconfig)
        .env("ACTIONS_RUNNER_POD_NAME", &runner.name)
        .env("ACTIONS_RUNNER_PREPARE_JOB_TIMEOUT_SECONDS", "300")
        .envs(env.iter().copied())
        .args(["check", "--json", "--namespace", &runner.namespace])
        .args(args)
        .output()
        .expect("the hook runs");
    let stdout = text(&output.stdout);
    let report = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!("{e}: {stdout}\n{}", text(&output.stderr));
    });
    (output.status.code(), report)
}

fn finding<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check"] == name)
        .unwrap_or_else(|| panic!("no `{name}` finding in {report:#}"))
}

async fn check_pods_left(runner: &RunnerPod) -> Vec<String> {
    runner
        .pods
        .list(&ListParams::default().labels(&format!(
            "runner-pod={},app.kubernetes.io/component=check",
            runner.name
        )))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect()
}

/// The job image starts, the permissions and the data plane are right, every finding has the
/// schema's four fields, and no check pod is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a cluster: KUBECONFIG must name one"]
async fn cluster_check_passes_what_the_cluster_allows_and_leaves_nothing() {
    let runner = start_runner().await;
    let (code, report) = check(&runner, &[], &["--job-image", "busybox:1.36"]);
    assert_eq!(report["runnerPod"], runner.name.as_str(), "{report:#}");
    assert_eq!(
        finding(&report, "permissions")["status"],
        "pass",
        "{report:#}"
    );
    assert_eq!(
        finding(&report, "job-image")["status"],
        "pass",
        "{report:#}"
    );
    assert_eq!(
        finding(&report, "data-plane")["message"]
            .as_str()
            .unwrap()
            .split(':')
            .next(),
        Some("copy mode"),
        "{report:#}"
    );
    assert_eq!(finding(&report, "work-claim")["status"], "skip");
    for finding in report["findings"].as_array().unwrap() {
        assert!(
            ["pass", "fail", "warn", "skip"].contains(&finding["status"].as_str().unwrap()),
            "{finding}"
        );
    }
    let failed = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["status"] == "fail");
    assert_eq!(code, Some(if failed { 1 } else { 0 }), "{report:#}");
    assert_eq!(check_pods_left(&runner).await, Vec::<String>::new());
}

/// A push host that does not resolve is reported as unreachable from a pod (when the builder
/// image runs on this cluster at all).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a cluster: KUBECONFIG must name one"]
async fn cluster_check_reports_an_unreachable_registry() {
    let runner = start_runner().await;
    let (code, report) = check(
        &runner,
        &[(
            "ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_REGISTRY_HOST",
            "runner-k8s-hook-test.invalid:5000/actions",
        )],
        &[],
    );
    assert_eq!(code, Some(1), "{report:#}");
    let registry = finding(&report, "registry");
    if finding(&report, "builder")["status"] == "pass" {
        assert_eq!(registry["status"], "fail", "{report:#}");
        assert!(
            registry["message"]
                .as_str()
                .unwrap()
                .contains("cannot be reached from a pod"),
            "{report:#}"
        );
    } else {
        assert_eq!(registry["status"], "skip", "{report:#}");
    }
    assert_eq!(check_pods_left(&runner).await, Vec::<String>::new());
}
