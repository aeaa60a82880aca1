//! Cluster tests: the same job sequences as the fake-API tests, against a real cluster.
//!
//! ```sh
//! KUBECONFIG=~/.kube/config cargo test --test it cluster -- --ignored --test-threads 1
//! ```
//! They need a cluster that can pull `busybox`, `redis` and the runner image from their public
//! registries, and the permissions of docs/user/rbac-role.yaml (plus creating the stand-in
//! runner pod). Optional: `RUNNER_K8S_HOOK_TEST_NAMESPACE` (default `default`). Each test uses
//! unique names, labels what it creates, and deletes it at the end, also when it fails.
//!
//! The hook runs on this machine, outside the cluster, so these tests use copy mode (a volume
//! mode test would need this machine to see the runner's work volume); the one volume-mode test
//! only starts and cleans up a job pod. No cluster can be installed on the project's CI machine:
//! these are the tests a user runs.
//!
//! The chart-Role test also needs to create a ServiceAccount, a Role, a RoleBinding and a token in
//! the test namespace. The taint and cordon tests also need `get` and `patch` on `nodes` (cluster-wide). They taint
//! one node with a unique key (`runner-k8s-hook.test/<random>`, so no taint of yours is touched)
//! and remove it, and uncordon the node, when they end, also when they fail.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Node, PersistentVolumeClaim, Pod, Secret};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};

use crate::support::runner::{REPO, Runner, runner_pod, text};

const JOB_IMAGE: &str = "busybox:1.36";
const SERVICE_IMAGE: &str = "redis:7-alpine";

struct Cluster {
    client: Client,
    namespace: String,
    kubeconfig: std::path::PathBuf,
}

async fn cluster() -> Cluster {
    let kubeconfig = std::env::var_os("KUBECONFIG")
        .map(std::path::PathBuf::from)
        .expect("cluster tests need KUBECONFIG to name a cluster");
    let client = Client::try_default()
        .await
        .expect("a client for KUBECONFIG");
    let namespace =
        std::env::var("RUNNER_K8S_HOOK_TEST_NAMESPACE").unwrap_or_else(|_| "default".to_owned());
    Cluster {
        client,
        namespace,
        kubeconfig,
    }
}

/// A stand-in runner pod with a unique name, deleted on drop of the guard.
struct RunnerPodGuard {
    pods: Api<Pod>,
    name: String,
}

impl Drop for RunnerPodGuard {
    fn drop(&mut self) {
        let pods = self.pods.clone();
        let name = self.name.clone();
        // Deleting the runner pod also garbage-collects anything the hook left, through the
        // ownerReferences it sets.
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

async fn start_runner(cluster: &Cluster) -> (Runner, RunnerPodGuard) {
    let name = format!(
        "rk8s-test-{}",
        runner_k8s_hook::spec::names::random_suffix()
    );
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    pods.create(
        &PostParams::default(),
        &runner_pod(&name, JOB_IMAGE, json!({"name": "work", "emptyDir": {}})),
    )
    .await
    .expect("create the stand-in runner pod");
    let guard = RunnerPodGuard {
        pods,
        name: name.clone(),
    };
    let home = tempfile::tempdir().unwrap();
    let work = home.path().join("_work");
    (
        Runner::layout(home, work, &name, &cluster.kubeconfig),
        guard,
    )
}

fn prepare_request(runner: &Runner) -> (Value, std::path::PathBuf) {
    let (mut request, response) = runner.request("prepare_job");
    let job = &mut request["args"]["container"];
    job["image"] = JOB_IMAGE.into();
    job["registry"] = Value::Null;
    job["portMappings"] = json!([]);
    request["args"]["services"] = json!([{
        "image": SERVICE_IMAGE, "dockerfile": null, "entryPointArgs": [], "entryPoint": null,
        "workingDirectory": null, "createOptions": null, "registry": null,
        "environmentVariables": {}, "portMappings": ["6379:6379"],
        "systemMountVolumes": [], "userMountVolumes": []
    }]);
    (request, response)
}

fn hook_env(cluster: &Cluster) -> Vec<(&'static str, String)> {
    vec![
        (
            "ACTIONS_RUNNER_KUBERNETES_NAMESPACE",
            cluster.namespace.clone(),
        ),
        (
            "ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_DATA_PLANE",
            "copy".to_owned(),
        ),
        (
            "ACTIONS_RUNNER_PREPARE_JOB_TIMEOUT_SECONDS",
            "300".to_owned(),
        ),
    ]
}

async fn run_hook(
    runner: &Runner,
    request: &Value,
    env: &[(&str, String)],
) -> std::process::Output {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    runner.run(request, &env).await
}

/// `cleanup_job` for the job in `state`; it must succeed.
async fn cleanup(runner: &Runner, state: Value, env: &[(&str, String)]) {
    let (mut request, _) = runner.request("cleanup_job");
    request["state"] = state;
    let output = run_hook(runner, &request, env).await;
    assert!(
        output.status.success(),
        "cleanup:\n{}",
        text(&output.stderr)
    );
}

#[tokio::test]
#[ignore = "needs a cluster: KUBECONFIG must name one"]
async fn cluster_job_lifecycle_in_copy_mode() {
    let cluster = cluster().await;
    let (runner, _guard) = start_runner(&cluster).await;
    let env = hook_env(&cluster);

    let (request, response) = prepare_request(&runner);
    let output = run_hook(&runner, &request, &env).await;
    assert!(
        output.status.success(),
        "prepare_job:\n{}",
        text(&output.stderr)
    );
    let response: Value =
        serde_json::from_str(&std::fs::read_to_string(response).unwrap()).unwrap();
    assert_eq!(response["context"]["services"][0]["ports"]["6379"], "6379");
    assert_eq!(response["isAlpine"], false);
    let state = response["state"].clone();

    std::fs::write(runner.temp().join("_runner_file_commands/set_output_1"), "").unwrap();
    let (step, _) = runner.script_step(
        r#"echo "result=42" >> "$GITHUB_OUTPUT"
grep -q refs/heads/main /github/workflow/event.json
test -f README.md
# The service shares the pod's network, as a Docker job container shares the job network.
for i in $(seq 1 30); do nc -z localhost 6379 && break; sleep 1; done
nc -z localhost 6379
echo "::notice::in $(pwd) with $MY_VAR"
"#,
        json!({
            "GITHUB_OUTPUT": "/__w/_temp/_runner_file_commands/set_output_1",
            "MY_VAR": "a $secret `value`",
        }),
        &state,
    );
    let output = run_hook(&runner, &step, &env).await;
    assert!(
        output.status.success(),
        "step:\n{}{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    assert_eq!(
        text(&output.stdout),
        format!("::notice::in /__w/{REPO}/{REPO} with a $secret `value`\n")
    );
    assert_eq!(
        std::fs::read_to_string(runner.temp().join("_runner_file_commands/set_output_1")).unwrap(),
        "result=42\n"
    );

    let (step, _) = runner.script_step("exit 3\n", json!({}), &state);
    let output = run_hook(&runner, &step, &env).await;
    assert_eq!(output.status.code(), Some(3), "{}", text(&output.stderr));

    cleanup(&runner, state, &env).await;
    let ours = ListParams::default().labels(&format!("runner-pod={}", runner.pod));
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let secrets: Api<Secret> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    // Deletion with grace 0 is immediate in the API, but give a slow API server a moment.
    for _ in 0..20 {
        if pods.list(&ours).await.unwrap().items.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        pods.list(&ours).await.unwrap().items.is_empty(),
        "pods left"
    );
    assert!(
        secrets.list(&ours).await.unwrap().items.is_empty(),
        "secrets left"
    );
    pods.get(&runner.pod)
        .await
        .expect("the runner pod was not touched");
}

#[tokio::test]
#[ignore = "needs a cluster: KUBECONFIG must name one"]
async fn cluster_unpullable_image_fails_fast() {
    let cluster = cluster().await;
    let (runner, _guard) = start_runner(&cluster).await;
    let (mut request, _) = prepare_request(&runner);
    // A tag that does not exist: the registry answers "not found", which cannot heal.
    request["args"]["container"]["image"] = "docker.io/library/busybox:rk8s-no-such-tag".into();
    let started = std::time::Instant::now();
    let output = run_hook(&runner, &request, &hook_env(&cluster)).await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "waited for the timeout"
    );
    assert!(
        stderr.contains("docker.io/library/busybox:rk8s-no-such-tag"),
        "{stderr}"
    );
    assert!(stderr.contains("ErrImagePull"), "{stderr}");
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let ours = ListParams::default().labels(&format!("runner-pod={}", runner.pod));
    assert!(
        pods.list(&ours).await.unwrap().items.is_empty(),
        "the failed pod was not deleted"
    );
}

#[tokio::test]
#[ignore = "needs a cluster: KUBECONFIG must name one"]
async fn cluster_container_step_keeps_results_and_exit_code() {
    let cluster = cluster().await;
    let (runner, _guard) = start_runner(&cluster).await;
    let env = hook_env(&cluster);
    let (request, response) = prepare_request(&runner);
    let output = run_hook(&runner, &request, &env).await;
    assert!(
        output.status.success(),
        "prepare_job:\n{}",
        text(&output.stderr)
    );
    let state: Value = serde_json::from_str::<Value>(&std::fs::read_to_string(response).unwrap())
        .unwrap()["state"]
        .clone();

    std::fs::write(
        runner.temp().join("_runner_file_commands/set_output_cs"),
        "",
    )
    .unwrap();
    let step = |exit: &str| {
        let (mut request, _) = runner.request("run_container_step");
        request["state"] = state.clone();
        let args = &mut request["args"];
        // busybox's own ENTRYPOINT is empty and its CMD is `sh`: run a script through `sh -c`
        // given as the action's args, as `docker run busybox sh -c ...` would.
        args["image"] = JOB_IMAGE.into();
        args["entryPoint"] = Value::Null;
        args["entryPointArgs"] = json!([
            "sh",
            "-c",
            "\"echo",
            "greeting=hi",
            ">>",
            "$GITHUB_OUTPUT;",
            "echo",
            "made",
            ">",
            "/github/workspace/from-step.txt;",
            "echo",
            "in",
            "$PWD;",
            "exit",
            &format!("{exit}\"")
        ]);
        args["environmentVariables"]["GITHUB_OUTPUT"] =
            "/github/file_commands/set_output_cs".into();
        request
    };
    let output = run_hook(&runner, &step("0"), &env).await;
    assert!(
        output.status.success(),
        "container step:\n{}{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    assert!(
        text(&output.stdout).contains("in /github/workspace"),
        "{}",
        text(&output.stdout)
    );
    assert_eq!(
        std::fs::read_to_string(runner.temp().join("_runner_file_commands/set_output_cs")).unwrap(),
        "greeting=hi\n"
    );
    assert_eq!(
        std::fs::read_to_string(runner.workspace().join("from-step.txt")).unwrap(),
        "made\n"
    );
    // The next script step in the job pod sees the file.
    let (script, _) = runner.script_step("cat from-step.txt\n", json!({}), &state);
    let output = run_hook(&runner, &script, &env).await;
    assert_eq!(text(&output.stdout), "made\n", "{}", text(&output.stderr));

    let output = run_hook(&runner, &step("3"), &env).await;
    assert_eq!(output.status.code(), Some(3), "{}", text(&output.stderr));
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let steps = ListParams::default().labels(&format!(
        "runner-pod={},app.kubernetes.io/component=step",
        runner.pod
    ));
    assert!(
        pods.list(&steps).await.unwrap().items.is_empty(),
        "step pods left"
    );

    cleanup(&runner, state, &env).await;
}

/// The registry variables a user sets for Dockerfile actions, passed through to the hook.
fn registry_env() -> Vec<(&'static str, String)> {
    let vars = [
        "ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_REGISTRY_HOST",
        "ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_REGISTRY_HOST_PUSH",
        "ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_REGISTRY_HOST_PULL",
        "ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_REGISTRY_SECRET_NAME",
        "ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_REGISTRY_CA",
        "ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_BUILDER_IMAGE",
        "ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_BUILDER_PROFILE",
        "ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_BUILD_OPTIONS",
        "ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_PUSH_OPTIONS",
    ];
    let env: Vec<(&'static str, String)> = vars
        .iter()
        .filter_map(|v| std::env::var(v).ok().map(|value| (*v, value)))
        .collect();
    assert!(
        env.iter()
            .any(|(k, _)| k.ends_with("_REGISTRY_HOST") || k.ends_with("_REGISTRY_HOST_PUSH")),
        "set ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_REGISTRY_HOST (and, for a private registry, _REGISTRY_SECRET_NAME; \
         for an in-cluster registry, _REGISTRY_HOST_PUSH / _REGISTRY_HOST_PULL) as for the hook itself"
    );
    env
}

#[tokio::test]
#[ignore = "needs a cluster: KUBECONFIG must name one, and a registry (ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_REGISTRY_HOST...)"]
async fn cluster_dockerfile_action_is_built_in_the_cluster_and_run_from_the_pull_host() {
    let cluster = cluster().await;
    let (runner, _guard) = start_runner(&cluster).await;
    let mut env = hook_env(&cluster);
    env.extend(registry_env());
    let (request, response) = prepare_request(&runner);
    let output = run_hook(&runner, &request, &env).await;
    assert!(
        output.status.success(),
        "prepare_job:\n{}",
        text(&output.stderr)
    );
    let state: Value = serde_json::from_str::<Value>(&std::fs::read_to_string(response).unwrap())
        .unwrap()["state"]
        .clone();

    // The example action, as the runner downloads it into `_actions`.
    let action = runner.work.join("_actions/octo-org/hello-action/v1");
    std::fs::create_dir_all(&action).unwrap();
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hello-action");
    for file in ["Dockerfile", "entrypoint.sh", "action.yml"] {
        std::fs::copy(example.join(file), action.join(file)).unwrap();
    }
    std::fs::write(
        runner.temp().join("_runner_file_commands/set_output_5678"),
        "",
    )
    .unwrap();
    let (mut request, _) = runner.request("run_container_step_dockerfile");
    request["state"] = state.clone();
    let output = run_hook(&runner, &request, &env).await;
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("::group::Building "), "{stdout}");
    assert!(stdout.contains("Hello, world!"), "{stdout}");
    assert!(
        std::fs::read_to_string(runner.temp().join("_runner_file_commands/set_output_5678"))
            .unwrap()
            .starts_with("greeting=Hello, world!"),
        "the action's output came back"
    );
    // The step ran from the pull host, pinned by digest (the log names the image it built).
    assert!(
        stderr.contains("action image built") && stderr.contains("@sha256:"),
        "{stderr}"
    );

    cleanup(&runner, state, &env).await;
}

/// `runner-k8s-hook build --executor pod` (what `make demo` runs with a cluster): the example
/// action built in a build pod outside any runner, pushed under a random tag, the reference
/// pinned by digest on stdout, and no build pod left.
#[tokio::test]
#[ignore = "needs a cluster: KUBECONFIG must name one, and a registry (ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_REGISTRY_HOST...)"]
async fn cluster_command_line_build_runs_in_a_build_pod() {
    let cluster = cluster().await;
    let env = registry_env();
    let push_host = env
        .iter()
        .find(|(k, _)| k.ends_with("_REGISTRY_HOST_PUSH"))
        .or_else(|| env.iter().find(|(k, _)| k.ends_with("_REGISTRY_HOST")))
        .map(|(_, v)| v.clone())
        .expect("registry_env checked it");
    let image = format!("{push_host}/octo-org/hello-action-cli");
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hello-action");
    let hook = crate::support::runner::HOOK;
    let output = tokio::process::Command::new(hook)
        .env("KUBECONFIG", &cluster.kubeconfig)
        .env_remove("ACTIONS_RUNNER_POD_NAME")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .args([
            "build",
            "--executor",
            "pod",
            "--namespace",
            &cluster.namespace,
        ])
        .arg("--context")
        .arg(&example)
        .args(["--image", &image])
        .output()
        .await
        .expect("the hook runs");
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let reference = stdout.trim_end();
    assert!(
        reference.starts_with(&format!("{image}:")) && reference.contains("@sha256:"),
        "{stdout}"
    );
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(stderr.contains("COPY entrypoint.sh"), "{stderr}");

    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let left = pods
        .list(
            &ListParams::default()
                .labels("runner-pod=runner-k8s-hook,app.kubernetes.io/component=build"),
        )
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .count();
    assert_eq!(left, 0, "build pods left in {}", cluster.namespace);
}

/// A node this test tainted and/or cordoned; the taint is removed and the node uncordoned when
/// the guard is dropped (the test's end, or its panic).
struct NodeGuard {
    nodes: Api<Node>,
    name: String,
    /// Its `kubernetes.io/hostname` label, for node selectors.
    hostname: String,
    taint_key: String,
}

impl NodeGuard {
    /// Add `<taint_key>=runners:NoSchedule` to the node, keeping its other taints.
    async fn taint(&self) {
        let node = self.nodes.get(&self.name).await.expect("get the node");
        let mut taints = node.spec.and_then(|s| s.taints).unwrap_or_default();
        taints.retain(|t| t.key != self.taint_key);
        taints.push(
            serde_json::from_value(json!({
                "key": self.taint_key, "value": "runners", "effect": "NoSchedule"
            }))
            .unwrap(),
        );
        self.nodes
            .patch(
                &self.name,
                &PatchParams::default(),
                &Patch::Merge(json!({
                    "metadata": {"resourceVersion": node.metadata.resource_version},
                    "spec": {"taints": taints},
                })),
            )
            .await
            .expect("taint the node");
    }

    /// `kubectl cordon` / `kubectl uncordon`.
    async fn cordon(&self, on: bool) {
        self.nodes
            .patch(
                &self.name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"unschedulable": on}})),
            )
            .await
            .expect("cordon the node");
    }

    /// The toleration of the test's taint.
    fn toleration(&self) -> Value {
        json!({"key": self.taint_key, "operator": "Equal", "value": "runners", "effect": "NoSchedule"})
    }
}

async fn untaint_and_uncordon(nodes: &Api<Node>, name: &str, key: &str) -> kube::Result<()> {
    // Retried: the node object changes often (status heartbeats), and the resourceVersion
    // guards the read-modify-write of the taint list.
    for _ in 0..10 {
        let node = nodes.get(name).await?;
        let taints: Vec<_> = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default()
            .into_iter()
            .filter(|t| t.key != key)
            .collect();
        let patch = json!({
            "metadata": {"resourceVersion": node.metadata.resource_version},
            "spec": {"taints": taints, "unschedulable": null},
        });
        match nodes
            .patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(status)) if status.code == 409 => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

impl Drop for NodeGuard {
    fn drop(&mut self) {
        let (nodes, name, key) = (
            self.nodes.clone(),
            self.name.clone(),
            self.taint_key.clone(),
        );
        let result = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(untaint_and_uncordon(&nodes, &name, &key))
        })
        .join();
        if !matches!(result, Ok(Ok(()))) {
            eprintln!(
                "could not clean up node {}: run `kubectl taint node {} {}- ; kubectl uncordon {}`",
                self.name, self.name, self.taint_key, self.name
            );
        }
    }
}

/// A schedulable node to taint, and the guard that cleans it up.
async fn pick_node(cluster: &Cluster) -> NodeGuard {
    let nodes: Api<Node> = Api::all(cluster.client.clone());
    let node = nodes
        .list(&ListParams::default())
        .await
        .expect("list nodes (the taint tests need get/list/patch on nodes)")
        .items
        .into_iter()
        .find(|n| n.spec.as_ref().and_then(|s| s.unschedulable) != Some(true))
        .expect("a schedulable node");
    let name = node.metadata.name.unwrap_or_default();
    NodeGuard {
        nodes,
        hostname: node
            .metadata
            .labels
            .unwrap_or_default()
            .get("kubernetes.io/hostname")
            .cloned()
            .unwrap_or_else(|| name.clone()),
        name,
        taint_key: format!(
            "runner-k8s-hook.test/{}",
            runner_k8s_hook::spec::names::random_suffix()
        ),
    }
}

/// A stand-in runner pod with `tolerations`, scheduled to `node` (a `nodeSelector`, so the
/// scheduler also provisions a `WaitForFirstConsumer` claim), and (volume mode) its work claim.
async fn start_runner_on(
    cluster: &Cluster,
    node: &NodeGuard,
    tolerations: Value,
    claim: bool,
) -> (Runner, RunnerPodGuard) {
    let name = format!(
        "rk8s-test-{}",
        runner_k8s_hook::spec::names::random_suffix()
    );
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let volume = if claim {
        json!({"name": "work", "persistentVolumeClaim": {"claimName": format!("{name}-work")}})
    } else {
        json!({"name": "work", "emptyDir": {}})
    };
    let mut pod = serde_json::to_value(runner_pod(&name, JOB_IMAGE, volume)).unwrap();
    pod["spec"]["nodeSelector"] = json!({"kubernetes.io/hostname": node.hostname});
    pod["spec"]["tolerations"] = tolerations;
    let created = pods
        .create(
            &PostParams::default(),
            &serde_json::from_value(pod).unwrap(),
        )
        .await
        .expect("create the stand-in runner pod");
    let guard = RunnerPodGuard {
        pods: pods.clone(),
        name: name.clone(),
    };
    if claim {
        // Owned by the runner pod: garbage-collected with it.
        let pvcs: Api<PersistentVolumeClaim> =
            Api::namespaced(cluster.client.clone(), &cluster.namespace);
        let pvc = serde_json::from_value(json!({
            "metadata": {"name": format!("{name}-work"), "ownerReferences": [{
                "apiVersion": "v1", "kind": "Pod", "name": name,
                "uid": created.metadata.uid, "blockOwnerDeletion": false}]},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        }))
        .unwrap();
        pvcs.create(&PostParams::default(), &pvc)
            .await
            .expect("create the work claim");
    }
    for _ in 0..300 {
        let pod = pods.get(&name).await.unwrap();
        if pod.status.and_then(|s| s.phase).as_deref() == Some("Running") {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let home = tempfile::tempdir().unwrap();
    let work = home.path().join("_work");
    (
        Runner::layout(home, work, &name, &cluster.kubeconfig),
        guard,
    )
}

/// Copy mode on a node tainted `<key>=runners:NoSchedule` that only the runner pod tolerates:
/// the job and step pods inherit the toleration. A hook template puts them on that node (a
/// `nodeSelector` on its hostname label, no `tolerations`), so on a many-node cluster they
/// cannot dodge the taint.
#[tokio::test]
#[ignore = "needs a cluster: KUBECONFIG must name one"]
async fn cluster_job_on_a_tainted_node_inherits_the_runner_toleration() {
    let cluster = cluster().await;
    let node = pick_node(&cluster).await;
    node.taint().await;
    let (runner, _guard) =
        start_runner_on(&cluster, &node, json!([node.toleration()]), false).await;
    let hostname = &node.hostname;
    let template = runner.work.join("hook-template.yaml");
    std::fs::write(
        &template,
        format!("spec:\n  nodeSelector:\n    kubernetes.io/hostname: \"{hostname}\"\n"),
    )
    .unwrap();
    let mut env = hook_env(&cluster);
    env.push((
        "ACTIONS_RUNNER_CONTAINER_HOOK_TEMPLATE",
        template.to_string_lossy().into_owned(),
    ));

    let (request, response) = prepare_request(&runner);
    let output = run_hook(&runner, &request, &env).await;
    assert!(
        output.status.success(),
        "prepare_job:\n{}",
        text(&output.stderr)
    );
    let state: Value = serde_json::from_str::<Value>(&std::fs::read_to_string(response).unwrap())
        .unwrap()["state"]
        .clone();
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let job = pods.get(state["jobPod"].as_str().unwrap()).await.unwrap();
    let spec = job.spec.unwrap();
    assert_eq!(spec.node_name.as_deref(), Some(node.name.as_str()));
    assert!(
        serde_json::to_value(&spec.tolerations)
            .unwrap()
            .as_array()
            .is_some_and(|t| t.contains(&node.toleration())),
        "{:?}",
        spec.tolerations
    );

    let (step, _) = runner.script_step("echo on the tainted node\n", json!({}), &state);
    let output = run_hook(&runner, &step, &env).await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), "on the tainted node\n");

    let (mut request, _) = runner.request("run_container_step");
    request["state"] = state.clone();
    let args = &mut request["args"];
    args["image"] = JOB_IMAGE.into();
    args["entryPoint"] = Value::Null;
    args["entryPointArgs"] = json!(["sh", "-c", "\"echo", "step", "on", "the", "node\""]);
    let output = run_hook(&runner, &request, &env).await;
    assert!(
        output.status.success(),
        "container step:\n{}{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    assert!(text(&output.stdout).contains("step on the node"));

    cleanup(&runner, state, &env).await;
}

/// Volume mode (a ReadWriteOnce work claim): the job pod is bound to the runner's node with
/// `spec.nodeName`, so it starts although the node is tainted and cordoned, without a
/// `Scheduled` Event. (The hook runs outside the cluster, so no step runs: the runner's files
/// are not in the claim.) Needs a default StorageClass.
#[tokio::test]
#[ignore = "needs a cluster: KUBECONFIG must name one"]
async fn cluster_volume_mode_job_pod_is_bound_to_the_cordoned_runner_node() {
    let cluster = cluster().await;
    let node = pick_node(&cluster).await;
    node.taint().await;
    let (runner, _guard) = start_runner_on(&cluster, &node, json!([node.toleration()]), true).await;
    node.cordon(true).await;
    let mut env = hook_env(&cluster);
    env.retain(|(k, _)| *k != "ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_DATA_PLANE");
    env.push((
        "ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_DATA_PLANE",
        "volume".to_owned(),
    ));

    let (mut request, response) = prepare_request(&runner);
    request["args"]["services"] = json!([]);
    let output = run_hook(&runner, &request, &env).await;
    assert!(
        output.status.success(),
        "prepare_job:\n{}",
        text(&output.stderr)
    );
    let state: Value = serde_json::from_str::<Value>(&std::fs::read_to_string(response).unwrap())
        .unwrap()["state"]
        .clone();
    assert_eq!(state["dataPlane"], "volume");
    let job_pod = state["jobPod"].as_str().unwrap().to_owned();
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let job = pods.get(&job_pod).await.unwrap();
    let spec = job.spec.unwrap();
    assert_eq!(spec.node_name.as_deref(), Some(node.name.as_str()));
    assert!(spec.affinity.is_none(), "{:?}", spec.affinity);
    let events: Api<Event> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let reasons: Vec<String> = events
        .list(&ListParams::default().fields(&format!("involvedObject.name={job_pod}")))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|e| e.reason)
        .collect();
    assert!(
        !reasons
            .iter()
            .any(|r| r == "Scheduled" || r == "FailedScheduling"),
        "the scheduler was bypassed: {reasons:?}"
    );

    node.cordon(false).await;
    cleanup(&runner, state, &env).await;
}

/// A service account bound to exactly ARC's chart Role (`tests/fixtures/rbac/arc-kube-mode-role.yaml`)
/// and a kubeconfig that uses its token; everything is deleted when the guard is dropped.
struct ChartRoleAccount {
    client: Client,
    namespace: String,
    name: String,
    kubeconfig: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl ChartRoleAccount {
    async fn create(cluster: &Cluster) -> ChartRoleAccount {
        use k8s_openapi::api::authentication::v1::TokenRequest;
        use k8s_openapi::api::core::v1::ServiceAccount;
        use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
        let name = format!(
            "rk8s-test-{}-gha-rs-kube-mode",
            runner_k8s_hook::spec::names::random_suffix()
        );
        let ns = &cluster.namespace;
        let accounts: Api<ServiceAccount> = Api::namespaced(cluster.client.clone(), ns);
        accounts
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": name}})).unwrap(),
            )
            .await
            .expect("create a service account (the test needs to manage RBAC in the namespace)");
        let mut role: Value =
            serde_yaml_ng::from_str(include_str!("../fixtures/rbac/arc-kube-mode-role.yaml"))
                .unwrap();
        role["metadata"]["name"] = name.clone().into();
        let roles: Api<Role> = Api::namespaced(cluster.client.clone(), ns);
        roles
            .create(
                &PostParams::default(),
                &serde_json::from_value(role).unwrap(),
            )
            .await
            .expect("create the chart's Role");
        let bindings: Api<RoleBinding> = Api::namespaced(cluster.client.clone(), ns);
        bindings
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({
                    "metadata": {"name": name},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
                    "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}],
                }))
                .unwrap(),
            )
            .await
            .expect("bind the chart's Role");
        let token = accounts
            .create_token_request(
                &name,
                &PostParams::default(),
                &serde_json::from_value::<TokenRequest>(
                    json!({"spec": {"audiences": [], "expirationSeconds": 3600}}),
                )
                .unwrap(),
            )
            .await
            .expect("a token for the service account")
            .status
            .expect("a token")
            .token;

        // The same cluster (server, CA) as KUBECONFIG, with the service account's token.
        let source = std::fs::read_to_string(&cluster.kubeconfig).expect("read KUBECONFIG");
        let config: serde_yaml_ng::Value = serde_yaml_ng::from_str(&source).unwrap();
        let current = config["current-context"]
            .as_str()
            .expect("a current context");
        let context = config["contexts"]
            .as_sequence()
            .and_then(|cs| cs.iter().find(|c| c["name"].as_str() == Some(current)))
            .expect("the current context");
        let cluster_name = context["context"]["cluster"].as_str().unwrap();
        let mut entry = config["clusters"]
            .as_sequence()
            .and_then(|cs| cs.iter().find(|c| c["name"].as_str() == Some(cluster_name)))
            .expect("the current cluster")
            .clone();
        if let Some(ca) = entry["cluster"]["certificate-authority"].as_str()
            && std::path::Path::new(ca).is_relative()
        {
            let base = cluster
                .kubeconfig
                .parent()
                .unwrap_or(std::path::Path::new("."));
            entry["cluster"]["certificate-authority"] =
                base.join(ca).to_string_lossy().into_owned().into();
        }
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        let document = json!({
            "apiVersion": "v1", "kind": "Config",
            "clusters": [serde_json::to_value(&entry).unwrap()],
            "users": [{"name": name, "user": {"token": token}}],
            "contexts": [{"name": name, "context": {"cluster": cluster_name, "user": name, "namespace": ns}}],
            "current-context": name,
        });
        std::fs::write(&kubeconfig, serde_yaml_ng::to_string(&document).unwrap()).unwrap();
        ChartRoleAccount {
            client: cluster.client.clone(),
            namespace: ns.clone(),
            name,
            kubeconfig,
            _dir: dir,
        }
    }
}

impl Drop for ChartRoleAccount {
    fn drop(&mut self) {
        use k8s_openapi::api::core::v1::ServiceAccount;
        use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
        let (client, ns, name) = (
            self.client.clone(),
            self.namespace.clone(),
            self.name.clone(),
        );
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async {
                    let dp = DeleteParams::default();
                    let _ = Api::<RoleBinding>::namespaced(client.clone(), &ns)
                        .delete(&name, &dp)
                        .await;
                    let _ = Api::<Role>::namespaced(client.clone(), &ns)
                        .delete(&name, &dp)
                        .await;
                    let _ = Api::<ServiceAccount>::namespaced(client, &ns)
                        .delete(&name, &dp)
                        .await;
                })
        })
        .join();
    }
}

/// With exactly ARC's chart Role (no `watch` on pods), a job runs: prepare_job, a script step,
/// a container step, cleanup_job. Also needs RBAC rights to create a ServiceAccount, a Role, a
/// RoleBinding and a token in the test namespace.
#[tokio::test]
#[ignore = "needs a cluster: KUBECONFIG must name one"]
async fn cluster_job_runs_with_exactly_the_chart_role() {
    let cluster = cluster().await;
    let account = ChartRoleAccount::create(&cluster).await;
    let (runner, _guard) = start_runner(&cluster).await;
    let env = hook_env(&cluster);
    let mut env: Vec<(&str, String)> = env;
    env.push((
        "KUBECONFIG",
        account.kubeconfig.to_string_lossy().into_owned(),
    ));

    let (request, response) = prepare_request(&runner);
    let output = run_hook(&runner, &request, &env).await;
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "prepare_job:\n{stderr}");
    let state = serde_json::from_str::<Value>(&std::fs::read_to_string(response).unwrap()).unwrap()
        ["state"]
        .clone();

    let (step, _) = runner.script_step("echo with the chart role\n", json!({}), &state);
    let output = run_hook(&runner, &step, &env).await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), "with the chart role\n");

    let (mut request, _) = runner.request("run_container_step");
    request["state"] = state.clone();
    let args = &mut request["args"];
    args["image"] = JOB_IMAGE.into();
    args["entryPoint"] = Value::Null;
    args["entryPointArgs"] = json!(["sh", "-c", "\"echo", "step", "ran;", "exit", "5\""]);
    let output = run_hook(&runner, &request, &env).await;
    assert_eq!(output.status.code(), Some(5), "{}", text(&output.stderr));
    assert!(text(&output.stdout).contains("step ran"));

    cleanup(&runner, state, &env).await;
}

/// A job pod on a cordoned node waits (`Unschedulable`, printed once) and starts when the node
/// is uncordoned 8 s later. A hook template pins the pods to the node with a `nodeSelector`.
#[tokio::test]
#[ignore = "needs a cluster: KUBECONFIG must name one"]
async fn cluster_job_pod_starts_when_its_node_is_uncordoned() {
    let cluster = cluster().await;
    let node = pick_node(&cluster).await;
    let (runner, _guard) = start_runner_on(&cluster, &node, json!([]), false).await;
    node.cordon(true).await;
    let template = runner.work.join("hook-template.yaml");
    std::fs::write(
        &template,
        format!(
            "spec:\n  nodeSelector:\n    kubernetes.io/hostname: \"{}\"\n",
            node.hostname
        ),
    )
    .unwrap();
    let mut env = hook_env(&cluster);
    env.push((
        "ACTIONS_RUNNER_CONTAINER_HOOK_TEMPLATE",
        template.to_string_lossy().into_owned(),
    ));
    let (request, _) = prepare_request(&runner);
    let hook = run_hook(&runner, &request, &env);
    let uncordon = async {
        tokio::time::sleep(Duration::from_secs(8)).await;
        node.cordon(false).await;
    };
    let (output, ()) = tokio::join!(hook, uncordon);
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "prepare_job:\n{stderr}");
    assert_eq!(
        stderr
            .lines()
            .filter(|l| l.contains("is waiting for a node: ") && l.contains("unschedulable"))
            .count(),
        1,
        "{stderr}"
    );
}

/// A registry that cannot be reached is retried by the kubelet until the pull bound, then the
/// job fails with the kubelet's message.
#[tokio::test]
#[ignore = "needs a cluster: KUBECONFIG must name one"]
async fn cluster_unreachable_registry_fails_at_the_pull_bound() {
    let cluster = cluster().await;
    let (runner, _guard) = start_runner(&cluster).await;
    let (mut request, _) = prepare_request(&runner);
    request["args"]["container"]["image"] = "registry.invalid/nothing/here:1".into();
    let mut env = hook_env(&cluster);
    env.push((
        "ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_IMAGE_PULL_TIMEOUT_SECONDS",
        "20".to_owned(),
    ));
    let started = std::time::Instant::now();
    let output = run_hook(&runner, &request, &env).await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(started.elapsed() >= Duration::from_secs(20), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(120), "{stderr}");
    assert!(
        stderr.contains("(the kubelet kept retrying for 20s)"),
        "{stderr}"
    );
}
