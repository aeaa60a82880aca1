//! Dockerfile actions through the binary against the fake API server: the build pod runs the
//! generated script with a stand-in `buildah` (the real one is exercised in `build_real.rs`),
//! the build log streams into the step log, the step runs from the pull-host reference pinned
//! by digest with the registry Secret as pull secret, and failures say what happened.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::Api;
use kube::api::{ListParams, PostParams};
use kube::runtime::watcher;
use serde_json::{Value, json};

use crate::support::fake_api::{FakeCluster, ImageSpec};
use crate::support::runner::{Mode, Runner, busybox_rootfs, text};

const POD: &str = "runner-bd";
const BUILDER: &str = "quay.io/buildah/stable:fake";
const PUSH: &str = "registry.fake.svc:5000/actions";
const PULL: &str = "localhost:30500/actions";
const DIGEST: &str = "sha256:5c1a6f3e9b2d4a7c8e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f";

/// A stand-in `buildah`: prints `STEP n/m` per Dockerfile line, checks that `COPY` sources are
/// in the context, fails at `RUN false`, sleeps at `RUN sleep N`, refuses the push when the
/// Dockerfile says `# push-refused`, and writes a fixed digest.
const FAKE_BUILDAH: &str = r#"#!/bin/sh
while [ $# -gt 0 ]; do case "$1" in --root|--runroot|--storage-driver) shift 2;; *) break;; esac; done
cmd=$1; shift
case "$cmd" in
  --version) echo "buildah version 1.41.4 (fake)";;
  info) exit 0;;
  build)
    file=; tag=; ctx=
    while [ $# -gt 0 ]; do case "$1" in
      --file) file=$2; shift 2;; --tag) tag=$2; shift 2;;
      --cert-dir|--retry|--retry-delay|--format) shift 2;; --*) shift;; *) ctx=$1; shift;; esac; done
    n=$(grep -c . "$file"); i=0
    while IFS= read -r line; do
      [ -n "$line" ] || continue
      case "$line" in \#*) continue;; esac
      i=$((i+1)); echo "STEP $i/$n: $line"
      case "$line" in
        "RUN false"*) echo "error building at STEP \"$line\": exit status 1"; exit 1;;
        "RUN sleep "*) sleep "${line#RUN sleep }";;
        COPY*) src=$(echo "$line" | cut -d' ' -f2); [ -e "$ctx/$src" ] || { echo "COPY failed: $src is not in the context"; exit 1; };;
      esac
    done < "$file"
    echo "COMMIT $tag";;
  push)
    digestfile=; ref=
    while [ $# -gt 0 ]; do case "$1" in
      --digestfile) digestfile=$2; shift 2;; --cert-dir|--format) shift 2;; --*) shift;; *) ref=$1; shift;; esac; done
    if grep -q push-refused /build/context/Dockerfile; then
      echo "Error: pushing image \"$ref\": writing blob: initiating layer upload: unauthorized: authentication required"
      exit 125
    fi
    echo "Writing manifest to image destination"
    printf '%s' "@DIGEST@" > "$digestfile";;
  *) echo "fake buildah: unknown command $cmd"; exit 2;;
esac
"#;

const REGISTRY_ENV: [(&str, &str); 4] = [
    (
        "ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_REGISTRY_HOST_PUSH",
        PUSH,
    ),
    (
        "ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_REGISTRY_HOST_PULL",
        PULL,
    ),
    (
        "ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_REGISTRY_SECRET_NAME",
        "regcred",
    ),
    ("ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_BUILDER_IMAGE", BUILDER),
];

/// A fake cluster with a runner whose `_actions` holds `octo-org/hello-action` with this
/// Dockerfile, the builder image, the registry Secret, and the image the "registry" serves.
async fn setup(mode: Mode, dockerfile: &str) -> (FakeCluster, Runner, Value) {
    let cluster = FakeCluster::start().await;
    cluster.images().register_common();
    cluster
        .images()
        .register_host("node:22", &["sleep", "3600"]);
    let runner = Runner::start(&cluster, POD, mode).await;

    let action = runner.work.join("_actions/octo-org/hello-action/v1");
    std::fs::create_dir_all(&action).unwrap();
    std::fs::write(action.join("Dockerfile"), dockerfile).unwrap();
    std::fs::write(
        action.join("entrypoint.sh"),
        "#!/bin/sh\necho \"hello $1\"\n",
    )
    .unwrap();
    std::fs::write(action.join(".dockerignore"), "secrets/\n").unwrap();
    std::fs::create_dir_all(action.join("secrets")).unwrap();
    std::fs::write(action.join("secrets/key"), "never sent").unwrap();

    let builder = runner.work.join("builder-rootfs");
    busybox_rootfs(&builder);
    std::fs::write(
        builder.join("bin/buildah"),
        FAKE_BUILDAH.replace("@DIGEST@", DIGEST),
    )
    .unwrap();
    set_executable(&builder.join("bin/buildah"));
    cluster
        .images()
        .register(BUILDER, ImageSpec::host(&[]).with_rootfs(&builder));

    // What the registry serves at the pull host: the built action, pinned by digest, which only
    // a pod with the registry Secret may pull.
    let action_rootfs = runner.work.join("action-rootfs");
    std::fs::create_dir_all(&action_rootfs).unwrap();
    std::fs::copy("/bin/busybox", action_rootfs.join("busybox")).unwrap();
    cluster.images().register(
        &format!("{PULL}/octo-org/hello-action@{DIGEST}"),
        ImageSpec::host(&[])
            .with_entrypoint(&[
                "/busybox",
                "sh",
                "-c",
                "echo \"hello from the built action: $1\"",
                "action",
            ])
            .with_rootfs(&action_rootfs)
            .requiring_auth(),
    );
    let secrets: Api<Secret> = Api::namespaced(cluster.client().await, cluster.namespace());
    let auth = json!({"auths": {"localhost:30500": {"auth": "dXNlcjpwYXNz"}}}).to_string();
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "regcred"},
        "type": "kubernetes.io/dockerconfigjson",
        "stringData": {".dockerconfigjson": auth}
    }))
    .unwrap();
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();

    let (mut request, response) = runner.request("prepare_job");
    request["args"]["container"]["registry"] = Value::Null;
    request["args"]["services"] = json!([]);
    let output = runner.run(&request, &REGISTRY_ENV).await;
    assert!(
        output.status.success(),
        "prepare_job:\n{}",
        text(&output.stderr)
    );
    let state = serde_json::from_str::<Value>(&std::fs::read_to_string(response).unwrap()).unwrap()
        ["state"]
        .clone();
    (cluster, runner, state)
}

fn set_executable(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn dockerfile_step(runner: &Runner, state: &Value) -> Value {
    let (mut request, _) = runner.request("run_container_step_dockerfile");
    request["state"] = state.clone();
    request
}

/// (image, pull secrets) of each step pod seen.
type SeenPods = Arc<Mutex<Vec<(String, Vec<String>)>>>;

/// Records the image and pull secrets of every step pod that appears.
fn record_step_pods(cluster: &FakeCluster, client: kube::Client) -> SeenPods {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let pods: Api<Pod> = Api::namespaced(client, cluster.namespace());
    let config = watcher::Config::default().labels("app.kubernetes.io/component=step");
    let sink = seen.clone();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(watcher::watcher(pods, config));
        while let Some(Ok(event)) = stream.next().await {
            if let watcher::Event::Apply(pod) | watcher::Event::InitApply(pod) = event {
                let spec = pod.spec.unwrap_or_default();
                let image = spec.containers[0].image.clone().unwrap_or_default();
                let secrets = spec
                    .image_pull_secrets
                    .unwrap_or_default()
                    .into_iter()
                    .map(|s| s.name)
                    .collect();
                let mut seen = sink.lock().unwrap();
                if !seen.iter().any(|(i, _)| i == &image) {
                    seen.push((image, secrets));
                }
            }
        }
    });
    seen
}

async fn pods_left(cluster: &FakeCluster, component: &str) -> usize {
    let pods: Api<Pod> = Api::namespaced(cluster.client().await, cluster.namespace());
    pods.list(&ListParams::default().labels(&format!("app.kubernetes.io/component={component}")))
        .await
        .unwrap()
        .items
        .len()
}

const GOOD: &str = "FROM busybox\nCOPY entrypoint.sh /entrypoint.sh\nRUN chmod +x /entrypoint.sh\nENTRYPOINT [\"/entrypoint.sh\"]\n";

async fn builds_and_runs_from_the_pull_host(mode: Mode) {
    let (cluster, runner, state) = setup(mode, GOOD).await;
    let seen = record_step_pods(&cluster, cluster.client().await);
    let output = runner
        .run(&dockerfile_step(&runner, &state), &REGISTRY_ENV)
        .await;
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "{stdout}\n{stderr}");
    // The build log is in the step log, folded in a group.
    let group = format!("::group::Building {PUSH}/octo-org/hello-action:");
    let start = stdout
        .find(&group)
        .unwrap_or_else(|| panic!("no group in:\n{stdout}"));
    let end = stdout.find("::endgroup::").expect("group closed");
    let build_log = &stdout[start..end];
    assert!(
        build_log.contains("STEP 2/4: COPY entrypoint.sh /entrypoint.sh"),
        "{build_log}"
    );
    assert!(build_log.contains("Writing manifest"), "{build_log}");
    // Then the action's own output, from the image pulled at the pull host by digest.
    assert!(
        stdout[end..].contains("hello from the built action: world"),
        "{stdout}"
    );
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let (image, pull_secrets) = &seen[0];
    let tag = image
        .strip_prefix(&format!("{PULL}/octo-org/hello-action:"))
        .and_then(|rest| rest.strip_suffix(&format!("@{DIGEST}")))
        .unwrap_or_else(|| panic!("step image {image}"));
    assert!(
        tag.len() >= 16
            && tag
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()),
        "{tag}"
    );
    assert!(
        pull_secrets.contains(&"regcred".to_owned()),
        "{pull_secrets:?}"
    );
    assert_eq!(pods_left(&cluster, "build").await, 0, "build pod deleted");
    assert_eq!(pods_left(&cluster, "step").await, 0, "step pod deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dockerfile_action_in_copy_mode() {
    builds_and_runs_from_the_pull_host(Mode::Copy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dockerfile_action_in_volume_mode() {
    builds_and_runs_from_the_pull_host(Mode::Volume).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_run_step_fails_with_the_last_log_lines() {
    let dockerfile = "FROM busybox\nCOPY entrypoint.sh /entrypoint.sh\nRUN false\nENTRYPOINT [\"/entrypoint.sh\"]\n";
    let (cluster, runner, state) = setup(Mode::Copy, dockerfile).await;
    let output = runner
        .run(&dockerfile_step(&runner, &state), &REGISTRY_ENV)
        .await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("failed to build the Dockerfile action"),
        "{stderr}"
    );
    assert!(
        stderr.contains("error building at STEP \"RUN false\": exit status 1"),
        "{stderr}"
    );
    assert_eq!(pods_left(&cluster, "build").await, 0, "build pod deleted");
    assert_eq!(pods_left(&cluster, "step").await, 0, "no step pod");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_push_gives_the_auth_hint() {
    let (cluster, runner, state) = setup(Mode::Copy, &format!("# push-refused\n{GOOD}")).await;
    let output = runner
        .run(&dockerfile_step(&runner, &state), &REGISTRY_ENV)
        .await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("refused the push"), "{stderr}");
    assert!(
        stderr.contains("unauthorized: authentication required"),
        "{stderr}"
    );
    assert!(
        stderr.contains("hint: ")
            && stderr.contains("ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_REGISTRY_SECRET_NAME"),
        "{stderr}"
    );
    assert_eq!(pods_left(&cluster, "build").await, 0, "build pod deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_timeout_stops_and_deletes_the_build_pod() {
    let dockerfile = "FROM busybox\nRUN sleep 60\n";
    let (cluster, runner, state) = setup(Mode::Copy, dockerfile).await;
    let mut env = REGISTRY_ENV.to_vec();
    env.push((
        "ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_BUILD_TIMEOUT_SECONDS",
        "2",
    ));
    let started = std::time::Instant::now();
    let output = runner.run(&dockerfile_step(&runner, &state), &env).await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    assert!(stderr.contains("did not finish within 2 s"), "{stderr}");
    assert_eq!(pods_left(&cluster, "build").await, 0, "build pod deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbidden_build_option_is_rejected_before_any_pod_exists() {
    let (cluster, runner, state) = setup(Mode::Copy, GOOD).await;
    let mut env = REGISTRY_ENV.to_vec();
    env.push((
        "ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_BUILD_OPTIONS",
        "--storage-driver vfs",
    ));
    let before = cluster.requests().len();
    let output = runner.run(&dockerfile_step(&runner, &state), &env).await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_BUILD_OPTIONS"),
        "{stderr}"
    );
    assert!(stderr.contains("--storage-driver"), "{stderr}");
    assert!(
        !cluster.requests()[before..]
            .iter()
            .any(|r| r.method == "POST"),
        "something was created: {:?}",
        &cluster.requests()[before..]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_registry_configured_names_the_variable_to_set() {
    let (cluster, runner, state) = setup(Mode::Copy, GOOD).await;
    let before = cluster.requests().len();
    let output = runner.run(&dockerfile_step(&runner, &state), &[]).await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("no registry to push its image to is configured: set `ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_REGISTRY_HOST`"),
        "{stderr}"
    );
    assert!(
        !cluster.requests()[before..]
            .iter()
            .any(|r| r.method == "POST")
    );
}
