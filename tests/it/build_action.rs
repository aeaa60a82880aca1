//! Dockerfile actions through the binary against the fake API server: the build pod runs the
//! generated script with a stand-in `buildah` (the real one is exercised in `build_real.rs`),
//! the build log streams into the step log, the step runs from the pull-host reference pinned
//! by digest with the registry Secret as pull secret, and failures say what happened.

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::ListParams;
use serde_json::{Value, json};

use crate::support::fake_api::{FakeCluster, ImageSpec};
use crate::support::runner::{
    HOOK, Mode, Runner, busybox_rootfs, create_registry_secret, record_pods, set_executable,
    sleeping_processes, text,
};

const POD: &str = "runner-bd";
const BUILDER: &str = "quay.io/buildah/stable:fake";
const PUSH: &str = "registry.fake.svc:5000/actions";
const PULL: &str = "localhost:30500/actions";
const DIGEST: &str = "sha256:5c1a6f3e9b2d4a7c8e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f";

/// A stand-in `buildah`: prints `STEP n/m` per Dockerfile line and each `--build-arg`, checks
/// that `COPY` sources are in the context and that `# not in the context: P` is not, fails at
/// `RUN false`, sleeps at `RUN sleep N`, refuses the push when the
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
      --file) file=$2; shift 2;; --tag) tag=$2; shift 2;; --build-arg) echo "build arg $2"; shift 2;;
      --cert-dir|--retry|--retry-delay|--format) shift 2;; --*) shift;; *) ctx=$1; shift;; esac; done
    n=$(grep -c . "$file"); i=0
    while IFS= read -r line; do
      [ -n "$line" ] || continue
      case "$line" in '# not in the context: '*) p=${line#'# not in the context: '}; [ ! -e "$ctx/$p" ] || { echo "$p was sent"; exit 1; };; esac
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

    register_builder(&cluster, &runner.work.join("builder-rootfs"));

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
    create_registry_secret(&cluster).await;

    let (mut request, response) = runner.request("prepare_job");
    request["args"]["container"]["registry"] = Value::Null;
    request["args"]["services"] = json!([]);
    let state = runner.prepare(&request, &response, &REGISTRY_ENV).await;
    (cluster, runner, state)
}

/// The builder image: BusyBox with [`FAKE_BUILDAH`] as `/bin/buildah`, its rootfs at `rootfs`.
fn register_builder(cluster: &FakeCluster, rootfs: &Path) {
    busybox_rootfs(rootfs);
    std::fs::write(
        rootfs.join("bin/buildah"),
        FAKE_BUILDAH.replace("@DIGEST@", DIGEST),
    )
    .unwrap();
    set_executable(&rootfs.join("bin/buildah"));
    cluster
        .images()
        .register(BUILDER, ImageSpec::host(&[]).with_rootfs(rootfs));
}

fn dockerfile_step(runner: &Runner, state: &Value) -> Value {
    let (mut request, _) = runner.request("run_container_step_dockerfile");
    request["state"] = state.clone();
    request
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
    let seen = record_pods(&cluster, cluster.client().await, "step");
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
    let spec = seen[0].spec.clone().unwrap_or_default();
    let image = spec.containers[0].image.clone().unwrap_or_default();
    let pull_secrets: Vec<String> = spec
        .image_pull_secrets
        .unwrap_or_default()
        .into_iter()
        .map(|s| s.name)
        .collect();
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
    assert_eq!(
        cluster.refused_hook_requests().len(),
        0,
        "ARC's Role is enough: {:?}",
        cluster.refused_hook_requests()
    );
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

// `runner-k8s-hook build --executor pod`: the same build pod from the command line, outside a
// runner (the path `make demo` takes when a cluster is reachable).

/// The stage image of command-line builds (`ACTIONS_RUNNER_IMAGE`): BusyBox is enough.
const STAGE: &str = "registry.fake.svc:5000/tools/busybox:stable";

/// A fake cluster with the builder and stage images and the registry Secret, and a context
/// directory `action/` whose Dockerfile is `docker/Containerfile`, with a `.dockerignore` that
/// leaves out `secrets/`.
async fn cli_setup(dockerfile: &str) -> (FakeCluster, tempfile::TempDir) {
    let cluster = FakeCluster::start().await;
    let dir = tempfile::tempdir().unwrap();
    register_builder(&cluster, &dir.path().join("builder-rootfs"));
    let stage = dir.path().join("stage-rootfs");
    busybox_rootfs(&stage);
    cluster
        .images()
        .register(STAGE, ImageSpec::host(&[]).with_rootfs(&stage));
    create_registry_secret(&cluster).await;
    let action = dir.path().join("action");
    std::fs::create_dir_all(action.join("docker")).unwrap();
    std::fs::create_dir_all(action.join("secrets")).unwrap();
    std::fs::write(action.join("docker/Containerfile"), dockerfile).unwrap();
    std::fs::write(action.join("entrypoint.sh"), "#!/bin/sh\necho hello\n").unwrap();
    std::fs::write(action.join(".dockerignore"), "secrets/\n").unwrap();
    std::fs::write(action.join("secrets/key"), "never sent").unwrap();
    (cluster, dir)
}

/// `runner-k8s-hook build --executor pod --context <dir>/action --file docker/Containerfile
/// <args>`, with only what a user outside a runner has: a kubeconfig and the hook's variables.
fn cli_build(cluster: &FakeCluster, dir: &Path, args: &[&str]) -> std::process::Child {
    std::process::Command::new(HOOK)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("KUBECONFIG", cluster.kubeconfig_path())
        .env("ACTIONS_RUNNER_IMAGE", STAGE)
        .envs(REGISTRY_ENV)
        .arg("build")
        .args(["--executor", "pod", "--context"])
        .arg(dir.join("action"))
        .args(["--file", "docker/Containerfile"])
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the hook starts")
}

async fn wait_output(child: std::process::Child) -> std::process::Output {
    tokio::task::spawn_blocking(move || child.wait_with_output().expect("the hook exits"))
        .await
        .expect("the waiting thread ends")
}

const CLI_GOOD: &str = "# not in the context: secrets\nFROM busybox\nCOPY entrypoint.sh /entrypoint.sh\nENTRYPOINT [\"/entrypoint.sh\"]\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_line_build_runs_in_a_build_pod_without_a_runner() {
    let (cluster, dir) = cli_setup(CLI_GOOD).await;
    let seen = record_pods(&cluster, cluster.client().await, "build");
    let image = format!("{PUSH}/octo-org/cli-built");
    let child = cli_build(
        &cluster,
        dir.path(),
        &[
            "--image",
            &image,
            "--build-arg",
            "GREETING=hi there",
            "--namespace",
            cluster.namespace(),
        ],
    );
    let output = wait_output(child).await;
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "{stdout}\n{stderr}");

    // stdout is the pushed reference with a random tag, pinned by digest; nothing else.
    let line = stdout
        .strip_suffix('\n')
        .unwrap_or_else(|| panic!("{stdout:?}"));
    let tag = line
        .strip_prefix(&format!("{image}:"))
        .and_then(|rest| rest.strip_suffix(&format!("@{DIGEST}")))
        .unwrap_or_else(|| panic!("stdout: {stdout:?}"));
    assert!(
        tag.len() >= 16 && tag.bytes().all(|b| b.is_ascii_alphanumeric()),
        "{tag}"
    );
    // The build log, live on stderr: the nested Dockerfile, the build argument, the context
    // without what .dockerignore leaves out (the stand-in fails otherwise).
    assert!(
        stderr.contains("COPY entrypoint.sh /entrypoint.sh"),
        "{stderr}"
    );
    assert!(stderr.contains("build arg GREETING=hi there"), "{stderr}");
    assert!(stderr.contains("Writing manifest"), "{stderr}");

    // One build pod, named and labelled for the command line, owned by nothing, with the
    // registry Secret as its auth file; deleted afterwards.
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:#?}");
    let pod = &seen[0];
    let name = pod.metadata.name.clone().unwrap_or_default();
    assert!(name.starts_with("runner-k8s-hook-build-"), "{name}");
    assert_eq!(
        pod.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("runner-pod"))
            .map(String::as_str),
        Some("runner-k8s-hook")
    );
    assert!(
        pod.metadata.owner_references.is_none(),
        "{:?}",
        pod.metadata.owner_references
    );
    let secrets: Vec<String> = pod
        .spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| v.secret.as_ref()?.secret_name.clone())
        .collect();
    assert_eq!(secrets, ["regcred"]);
    assert_eq!(pods_left(&cluster, "build").await, 0, "build pod deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_line_build_failure_shows_the_log_and_deletes_the_pod() {
    let (cluster, dir) = cli_setup("FROM busybox\nRUN false\n").await;
    let output = wait_output(cli_build(
        &cluster,
        dir.path(),
        &["--image", &format!("{PUSH}/octo-org/cli-built:v1")],
    ))
    .await;
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(stdout, "", "no reference on failure");
    assert!(
        stderr.contains("\nerror: building `")
            && stderr.contains("\n  error building at STEP \"RUN false\": exit status 1\n"),
        "{stderr}"
    );
    assert_eq!(pods_left(&cluster, "build").await, 0, "build pod deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_line_build_in_a_pod_stops_on_sigint_and_deletes_the_pod() {
    let (cluster, dir) = cli_setup("FROM busybox\nRUN sleep 173\n").await;
    let child = cli_build(
        &cluster,
        dir.path(),
        &["--image", &format!("{PUSH}/octo-org/cli-built:v1")],
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !sleeping_processes("173") {
        assert!(
            std::time::Instant::now() < deadline,
            "the build never reached its RUN step"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let signalled = std::time::Instant::now();
    assert!(
        std::process::Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let output = wait_output(child).await;
    let stderr = text(&output.stderr);
    assert!(
        signalled.elapsed() < Duration::from_secs(7),
        "exited {:?} after SIGINT",
        signalled.elapsed()
    );
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("cancelled by SIGINT"), "{stderr}");
    assert_eq!(pods_left(&cluster, "build").await, 0, "build pod deleted");
    assert_eq!(
        cluster.refused_hook_requests().len(),
        0,
        "ARC's Role is enough: {:?}",
        cluster.refused_hook_requests()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !sleeping_processes("173"),
        "the build's RUN step still runs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_line_build_in_a_pod_without_a_cluster_says_where_to_look() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Dockerfile"), "FROM busybox\n").unwrap();
    let output = std::process::Command::new(HOOK)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir.path())
        .args([
            "build",
            "--executor",
            "pod",
            "--image",
            "r.example:5000/x",
            "--context",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot build in the cluster"), "{stderr}");
    assert!(stderr.contains("KUBECONFIG"), "{stderr}");
}
