//! `runner-k8s-hook check` through the binary against the fake API server, under ARC's chart
//! Role unless a test changes it: every finding (permissions, data plane, work claim, Pod
//! Security by label and by dry run, job image, builder, registry), the human and JSON reports,
//! exit codes, and that no pod is left behind, also after SIGINT.
//!
//! The builder image is BusyBox with a stand-in `buildah` ([`FAKE_BUILDAH`]) that answers the
//! probe's `buildah pull` the way containers/image words a registry's answers, chosen by the
//! registry host's first label (`ok.`, `refused.`, `unreachable.`, `tls.`): the real Buildah is
//! exercised in `build_real.rs`, the classification of its words in `image::probe`'s tests.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::Api;
use kube::api::{ListParams, PostParams};
use serde_json::{Value, json};

use crate::support::fake_api::{FakeCluster, ImageSpec};
use crate::support::runner::{HOOK, Mode, Runner, busybox_rootfs, text};

const POD: &str = "runner-ck";
const BUILDER: &str = "quay.io/buildah/stable:fake";
const BROKEN_BUILDER: &str = "quay.io/buildah/stable:no-userns";
const ENFORCE: &str = "pod-security.kubernetes.io/enforce";
/// The password in the registry Secret: it must never reach the output.
const PASSWORD: &str = "s3cr3t-passw0rd";

/// A stand-in `buildah` for the probe: `--version`, `info` (failing as a node's seccomp profile
/// makes it fail when `/etc/no-userns` exists), and `pull`, whose answer depends on the
/// registry host and on the auth file having an entry for it.
const FAKE_BUILDAH: &str = r#"#!/bin/sh
while [ $# -gt 0 ]; do case "$1" in --root|--runroot|--storage-driver) shift 2;; *) break;; esac; done
cmd=$1; shift
case "$cmd" in
  --version) echo "buildah version 1.41.4 (image-spec 1.1.1, runtime-spec 1.2.1)";;
  info)
    if [ -e /etc/no-userns ]; then echo "Error during unshare(CLONE_NEWUSER): Operation not permitted"; exit 1; fi
    echo '{"store": {}}';;
  pull)
    authfile=; certdir=; ref=
    while [ $# -gt 0 ]; do case "$1" in
      --authfile) authfile=$2; shift 2;; --cert-dir) certdir=$2; shift 2;; --retry) shift 2;;
      --*) shift;; *) ref=$1; shift;; esac; done
    image=${ref#docker://}; host=${image%%/*}; tag=${image##*:}; repo=${image%:*}
    case "$host" in
      unreachable.*)
        echo "Error: initializing source $ref: pinging container registry $host: Get \"https://$host/v2/\": dial tcp: lookup ${host%%:*} on 10.96.0.10:53: no such host"
        exit 125;;
      tls.*)
        if [ ! -f "$certdir/ca.crt" ]; then
          echo "Error: initializing source $ref: pinging container registry $host: Get \"https://$host/v2/\": tls: failed to verify certificate: x509: certificate signed by unknown authority"
          exit 125
        fi;;
    esac
    case "$host" in refused.*) ok=no;; *) if grep -q "\"$host\"" "$authfile"; then ok=yes; else ok=no; fi;; esac
    if [ "$ok" = no ]; then
      echo "Error: initializing source $ref: reading manifest $tag in $repo: unauthorized: authentication required"
      exit 125
    fi
    echo "Error: initializing source $ref: reading manifest $tag in $repo: manifest unknown"
    exit 125;;
  *) echo "fake buildah: unknown command $cmd"; exit 2;;
esac
"#;

/// A fake cluster with a runner pod in `mode`, the common images, the builder images, and the
/// registry Secret `regcred` with credentials for `ok.fake:5000`, `refused.fake:5000`,
/// `tls.fake:5000` and `unreachable.fake:5000`.
async fn setup(mode: Mode) -> (FakeCluster, Runner) {
    let cluster = FakeCluster::start().await;
    cluster.images().register_common();
    let runner = Runner::start(&cluster, POD, mode).await;
    for (image, broken) in [(BUILDER, false), (BROKEN_BUILDER, true)] {
        let rootfs = runner.work.join(format!("builder-rootfs-{broken}"));
        busybox_rootfs(&rootfs);
        std::fs::write(rootfs.join("bin/buildah"), FAKE_BUILDAH).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(
            rootfs.join("bin/buildah"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        if broken {
            std::fs::write(rootfs.join("etc/no-userns"), "").unwrap();
        }
        cluster
            .images()
            .register(image, ImageSpec::host(&[]).with_rootfs(&rootfs));
    }
    create_secret(
        &cluster,
        "regcred",
        &[
            "ok.fake:5000",
            "refused.fake:5000",
            "tls.fake:5000",
            "unreachable.fake:5000",
        ],
    )
    .await;
    (cluster, runner)
}

/// A `kubernetes.io/dockerconfigjson` Secret with credentials for `hosts`.
async fn create_secret(cluster: &FakeCluster, name: &str, hosts: &[&str]) {
    let secrets: Api<Secret> = Api::namespaced(cluster.client().await, cluster.namespace());
    let auth = base64_encode(&format!("ci-bot:{PASSWORD}"));
    let auths: serde_json::Map<String, Value> = hosts
        .iter()
        .map(|h| ((*h).to_owned(), json!({"auth": auth})))
        .collect();
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": name},
        "type": "kubernetes.io/dockerconfigjson",
        "stringData": {".dockerconfigjson": json!({"auths": auths}).to_string()}
    }))
    .unwrap();
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
}

fn base64_encode(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// The environment of a runner with the stand-in builder image and no registry.
fn builder_env() -> Vec<(&'static str, String)> {
    vec![(
        "ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_BUILDER_IMAGE",
        BUILDER.to_owned(),
    )]
}

/// The environment of a runner configured for Dockerfile actions pushing to `host`.
fn registry_env(host: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            "ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_REGISTRY_HOST",
            format!("{host}/actions"),
        ),
        (
            "ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_REGISTRY_SECRET_NAME",
            "regcred".to_owned(),
        ),
        (
            "ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_BUILDER_IMAGE",
            BUILDER.to_owned(),
        ),
    ]
}

/// `runner-k8s-hook check <args>` with the runner's environment plus `env`.
fn spawn_check(runner: &Runner, env: &[(&str, String)], args: &[&str]) -> std::process::Child {
    Command::new(HOOK)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(runner.env())
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .arg("check")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the hook starts")
}

async fn check(runner: &Runner, env: &[(&str, String)], args: &[&str]) -> Output {
    let child = spawn_check(runner, env, args);
    tokio::task::spawn_blocking(move || child.wait_with_output().expect("the hook exits"))
        .await
        .expect("the waiting thread ends")
}

/// `check --json`: the report, after checking that stderr is empty and no pod is left.
async fn check_json(
    cluster: &FakeCluster,
    runner: &Runner,
    env: &[(&str, String)],
    args: &[&str],
) -> (Option<i32>, Value) {
    let output = check(runner, env, &[args, &["--json"]].concat()).await;
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert_eq!(stderr, "", "nothing on stderr; stdout:\n{stdout}");
    assert_nothing_left(cluster).await;
    assert!(
        !stdout.contains(PASSWORD)
            && !stdout.contains(&base64_encode(&format!("ci-bot:{PASSWORD}"))),
        "a credential reached the output: {stdout}"
    );
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    (output.status.code(), report)
}

/// The finding of `name` in a JSON report.
fn finding<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check"] == name)
        .unwrap_or_else(|| panic!("no `{name}` finding in {report:#}"))
}

fn statuses(report: &Value) -> Vec<(String, String)> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["check"].as_str().unwrap().to_owned(),
                f["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn message(report: &Value, name: &str) -> String {
    finding(report, name)["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn fix(report: &Value, name: &str) -> String {
    finding(report, name)["fix"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

async fn assert_nothing_left(cluster: &FakeCluster) {
    let pods: Api<Pod> = Api::namespaced(cluster.client().await, cluster.namespace());
    let left = pods
        .list(&ListParams::default().labels("app.kubernetes.io/component=check"))
        .await
        .unwrap()
        .items;
    let names: Vec<_> = left
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    assert!(names.is_empty(), "pods left behind: {names:?}");
}

fn with(
    mut env: Vec<(&'static str, String)>,
    extra: &[(&'static str, &str)],
) -> Vec<(&'static str, String)> {
    env.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    env
}

/// Everything passes where the Role may also read claims and namespaces, the namespace
/// enforces `baseline`, and the registry takes the Secret's credentials. The human report is
/// one line per check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_checks_pass() {
    let (cluster, runner) = setup(Mode::Volume).await;
    cluster.rbac().allow("persistentvolumeclaims", "get");
    cluster.rbac().allow("namespaces", "get");
    cluster.label_namespace(ENFORCE, "baseline");
    let env = registry_env("ok.fake:5000");
    let output = check(&runner, &env, &["--job-image", "busybox:1.36"]).await;
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    println!("{stdout}");
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    assert_eq!(stderr, "");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines[0],
        "runner-k8s-hook check: namespace `fake-ns`, runner pod `runner-ck`"
    );
    for (line, check) in lines[1..8].iter().zip([
        "permissions",
        "data-plane",
        "work-claim",
        "pod-security",
        "job-image",
        "builder",
        "registry",
    ]) {
        assert!(
            line.starts_with(&format!("  pass  {check} ")),
            "{line}\n{stdout}"
        );
    }
    assert!(lines[2].contains("volume mode with claim `runner-ck-work` (the runner pod mounts its work claim); pods go to the runner's node `fake-node`"), "{stdout}");
    assert!(
        lines[3].contains("claim `runner-ck-work` is Bound, ReadWriteOnce"),
        "{stdout}"
    );
    assert!(
        lines[4].contains("enforces Pod Security `baseline` (read from its `pod-security.kubernetes.io/enforce` label)"),
        "{stdout}"
    );
    assert!(lines[5].contains("`busybox:1.36` was pulled"), "{stdout}");
    assert!(
        lines[6].contains("runs Buildah as `rootless` (buildah version 1.41.4"),
        "{stdout}"
    );
    assert!(lines[7].contains("`ok.fake:5000/actions` is reachable from a pod and accepts the credentials of Secret `regcred`"), "{stdout}");
    assert_eq!(lines[8..], ["", "All checks passed: jobs will work."]);
    assert_nothing_left(&cluster).await;
}

/// Under exactly ARC's chart Role: claims and namespaces cannot be read. The claim is a
/// warning with the Role lines that would let the check read it; Pod Security is learnt from a
/// server-side dry run of the build pod; the check still passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chart_role_is_enough_and_what_it_cannot_read_is_a_warning() {
    let (cluster, runner) = setup(Mode::Volume).await;
    let (code, report) = check_json(&cluster, &runner, &registry_env("ok.fake:5000"), &[]).await;
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(report["passed"], true);
    assert_eq!(
        statuses(&report),
        [
            ("permissions", "pass"),
            ("data-plane", "pass"),
            ("work-claim", "warn"),
            ("pod-security", "pass"),
            ("job-image", "skip"),
            ("builder", "pass"),
            ("registry", "pass"),
        ]
        .map(|(c, s)| (c.to_owned(), s.to_owned()))
    );
    assert!(
        message(&report, "permissions").contains("no `watch` on pods: the hook polls"),
        "{report:#}"
    );
    assert!(
        message(&report, "work-claim")
            .contains("cannot read claim `runner-ck-work` (no `get` on persistentvolumeclaims")
            && message(&report, "work-claim").contains("the runner pod mounts it, so it exists"),
        "{report:#}"
    );
    assert!(
        fix(&report, "work-claim")
            .contains("resources: [\"persistentvolumeclaims\"]\n  verbs: [\"get\"]"),
        "{report:#}"
    );
    assert!(
        message(&report, "pod-security")
            .contains("a server-side dry run of the `rootless` build pod was admitted")
            && message(&report, "pod-security").contains("no `get` on namespaces"),
        "{report:#}"
    );
    // The dry run reached the API server as one (nothing stored).
    assert!(
        cluster.requests().iter().any(|r| r.method == "POST"
            && r.path.ends_with("/pods")
            && r.param("dryRun") == Some("All")),
        "no dry run"
    );
    let refused: Vec<String> = cluster
        .refused_hook_requests()
        .iter()
        .map(|r| r.path.clone())
        .collect();
    assert_eq!(
        refused,
        [
            "/api/v1/namespaces/fake-ns/persistentvolumeclaims/runner-ck-work",
            "/api/v1/namespaces/fake-ns"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_verb_names_the_commands_and_the_role_lines_to_add() {
    let (cluster, runner) = setup(Mode::Copy).await;
    cluster.rbac().deny("pods/exec", "create");
    cluster.rbac().deny("secrets", "delete");
    let (code, report) = check_json(&cluster, &runner, &builder_env(), &[]).await;
    assert_eq!(code, Some(1), "{report:#}");
    assert_eq!(report["passed"], false);
    assert_eq!(finding(&report, "permissions")["status"], "fail");
    assert_eq!(
        message(&report, "permissions"),
        "the service account may not create pods/exec (prepare_job, run_script_step, run_container_step), delete secrets (prepare_job, cleanup_job) in namespace `fake-ns`"
    );
    assert!(
        fix(&report, "permissions").ends_with(
            "- apiGroups: [\"\"]\n  resources: [\"pods/exec\"]\n  verbs: [\"create\"]\n- apiGroups: [\"\"]\n  resources: [\"secrets\"]\n  verbs: [\"delete\"]"
        ),
        "{report:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_mode_says_why() {
    let (cluster, runner) = setup(Mode::Copy).await;
    let (code, report) = check_json(&cluster, &runner, &builder_env(), &[]).await;
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(
        message(&report, "data-plane"),
        "copy mode: the runner pod mounts no `runner-ck-work` claim and ACTIONS_RUNNER_CLAIM_NAME is not set; files move over `pods/exec`"
    );
    assert_eq!(finding(&report, "work-claim")["status"], "skip");
    assert_eq!(finding(&report, "registry")["status"], "skip");
    assert!(
        message(&report, "registry").contains("no registry configured"),
        "{report:#}"
    );

    // Forced by the variable, in a runner pod that has a claim.
    let (cluster, runner) = setup(Mode::Volume).await;
    let env = with(
        builder_env(),
        &[("ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_DATA_PLANE", "copy")],
    );
    let (_, report) = check_json(&cluster, &runner, &env, &[]).await;
    assert_eq!(
        message(&report, "data-plane"),
        "copy mode: ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_DATA_PLANE=copy; files move over `pods/exec`"
    );
}

/// A ReadWriteOnce claim with `ACTIONS_RUNNER_USE_KUBE_SCHEDULER=true`: pods may land where the
/// claim cannot attach.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_write_once_claim_with_the_scheduler_fails() {
    let (cluster, runner) = setup(Mode::Volume).await;
    cluster.rbac().allow("persistentvolumeclaims", "get");
    let env = with(
        builder_env(),
        &[("ACTIONS_RUNNER_USE_KUBE_SCHEDULER", "true")],
    );
    let (code, report) = check_json(&cluster, &runner, &env, &[]).await;
    assert_eq!(code, Some(1), "{report:#}");
    assert!(
        message(&report, "data-plane").contains("pods prefer the runner's node `fake-node`"),
        "{report:#}"
    );
    assert_eq!(finding(&report, "work-claim")["status"], "fail");
    assert_eq!(
        message(&report, "work-claim"),
        "claim `runner-ck-work` is ReadWriteOnce, but `ACTIONS_RUNNER_USE_KUBE_SCHEDULER=true` lets the scheduler put pods on other nodes, where it cannot attach"
    );
    assert!(fix(&report, "work-claim").starts_with("unset `ACTIONS_RUNNER_USE_KUBE_SCHEDULER`"));

    // A claim that does not exist.
    let env = with(
        builder_env(),
        &[("ACTIONS_RUNNER_CLAIM_NAME", "no-such-claim")],
    );
    let (code, report) = check_json(&cluster, &runner, &env, &[]).await;
    assert_eq!(code, Some(1), "{report:#}");
    assert!(
        message(&report, "work-claim").starts_with("claim `no-such-claim` does not exist"),
        "{report:#}"
    );
}

/// A namespace enforcing `restricted` refuses the rootless build pod: seen from the label when
/// it may be read, from a dry run when it may not; the builder pod is refused with the API
/// server's own words.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_security_restricted_refuses_the_build_pod() {
    let (cluster, runner) = setup(Mode::Copy).await;
    cluster.label_namespace(ENFORCE, "restricted");
    let (code, report) = check_json(&cluster, &runner, &builder_env(), &[]).await;
    assert_eq!(code, Some(1), "{report:#}");
    assert_eq!(finding(&report, "pod-security")["status"], "fail");
    let by_dry_run = message(&report, "pod-security");
    assert!(
        by_dry_run.starts_with("a server-side dry run of the `rootless` build pod was refused (a dry run, since its label cannot be read: no `get` on namespaces")
            && by_dry_run.contains("the namespace enforces Pod Security `restricted`"),
        "{report:#}"
    );
    assert!(
        fix(&report, "pod-security").contains("kubectl label namespace fake-ns pod-security.kubernetes.io/enforce=baseline --overwrite"),
        "{report:#}"
    );
    assert_eq!(finding(&report, "builder")["status"], "fail");
    let builder = message(&report, "builder");
    assert!(
        builder.starts_with("the cluster refused the `rootless` builder pod: pods \"runner-ck-check-")
            && builder.contains("\" is forbidden: violates PodSecurity \"restricted:latest\": allowPrivilegeEscalation != false (container \"build\" must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container \"build\" must not include \"SETGID\", \"SETUID\" in securityContext.capabilities.add), seccompProfile (pod or container \"build\" must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")"),
        "{report:#}"
    );

    cluster.rbac().allow("namespaces", "get");
    let (_, report) = check_json(&cluster, &runner, &builder_env(), &[]).await;
    assert_eq!(
        message(&report, "pod-security"),
        "namespace `fake-ns` enforces Pod Security `restricted` (its `pod-security.kubernetes.io/enforce` label), which refuses the `rootless` build pod and copy-mode step pods"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_image_that_cannot_be_pulled_fails_fast_with_the_kubelets_message() {
    let (cluster, runner) = setup(Mode::Copy).await;
    let started = Instant::now();
    let (code, report) = check_json(
        &cluster,
        &runner,
        &builder_env(),
        &["--job-image", "ghcr.io/octo-org/missing:1"],
    )
    .await;
    assert_eq!(code, Some(1), "{report:#}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(finding(&report, "job-image")["status"], "fail");
    let message = message(&report, "job-image");
    assert!(
        message.starts_with("`ghcr.io/octo-org/missing:1` did not start: container `job` (image `ghcr.io/octo-org/missing:1`): ErrImagePull: ")
            && message.contains("ErrImagePull: rpc error: code = NotFound desc = failed to pull and unpack image \"ghcr.io/octo-org/missing:1\""),
        "{message}"
    );
    assert!(
        fix(&report, "job-image").contains("`credentials:`"),
        "{report:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_builder_pod_says_why() {
    let (cluster, runner) = setup(Mode::Copy).await;
    // The builder image cannot be pulled.
    let message_text = "rpc error: code = Unknown desc = failed to pull and unpack image \"quay.io/buildah/stable:fake\": unexpected status from HEAD request: 401 Unauthorized";
    cluster.kubelet().fail_pulls(BUILDER, message_text);
    let (code, report) = check_json(&cluster, &runner, &registry_env("ok.fake:5000"), &[]).await;
    assert_eq!(code, Some(1), "{report:#}");
    assert_eq!(finding(&report, "builder")["status"], "fail");
    assert!(
        message(&report, "builder").contains(message_text),
        "{report:#}"
    );
    assert!(fix(&report, "builder").contains("ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_BUILDER_IMAGE"));
    assert_eq!(finding(&report, "registry")["status"], "skip");
    cluster.kubelet().clear_pull_failure(BUILDER);

    // Buildah cannot make its user namespace (a node's seccomp profile).
    let env = with(
        registry_env("ok.fake:5000"),
        &[(
            "ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_BUILDER_IMAGE",
            BROKEN_BUILDER,
        )],
    );
    let (code, report) = check_json(&cluster, &runner, &env, &[]).await;
    assert_eq!(code, Some(1), "{report:#}");
    assert_eq!(
        message(&report, "builder"),
        "Buildah cannot set up its user namespace and storage as `rootless` in `quay.io/buildah/stable:no-userns`: Error during unshare(CLONE_NEWUSER): Operation not permitted"
    );
    assert!(
        fix(&report, "builder")
            .contains("ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_BUILDER_SECCOMP_PROFILE"),
        "{report:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_answers_are_told_apart() {
    let (cluster, runner) = setup(Mode::Copy).await;
    let cases = [
        (
            "refused.fake:5000",
            "`refused.fake:5000/actions` refused the credentials of Secret `regcred`: Error: initializing source docker://refused.fake:5000/actions/runner-k8s-hook-check:absent-",
            "update Secret `regcred`",
        ),
        (
            "unreachable.fake:5000",
            "`unreachable.fake:5000/actions` cannot be reached from a pod: Error: initializing source",
            "pods must resolve and reach the push host",
        ),
        (
            "tls.fake:5000",
            "`tls.fake:5000/actions` has a certificate the builder does not trust: ",
            "set `ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_REGISTRY_CA`",
        ),
    ];
    for (host, expected, fix_text) in cases {
        let (code, report) = check_json(&cluster, &runner, &registry_env(host), &[]).await;
        assert_eq!(code, Some(1), "{host}: {report:#}");
        assert_eq!(finding(&report, "builder")["status"], "pass", "{report:#}");
        assert_eq!(finding(&report, "registry")["status"], "fail", "{report:#}");
        assert!(
            message(&report, "registry").starts_with(expected),
            "{host}: {report:#}"
        );
        assert!(
            fix(&report, "registry").contains(fix_text),
            "{host}: {report:#}"
        );
    }
    let unreachable = check_json(
        &cluster,
        &runner,
        &registry_env("unreachable.fake:5000"),
        &[],
    )
    .await
    .1;
    assert!(
        message(&unreachable, "registry").ends_with("no such host"),
        "{unreachable:#}"
    );
}

/// The Secret is read first: a missing one, or one without an entry for the push host, is a
/// finding without asking the registry (and the builder pod still runs, without it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_registry_secret_is_named() {
    let (cluster, runner) = setup(Mode::Copy).await;
    let env = with(registry_env("other.fake:5000"), &[]);
    let (code, report) = check_json(&cluster, &runner, &env, &[]).await;
    assert_eq!(code, Some(1), "{report:#}");
    assert_eq!(
        message(&report, "registry"),
        "Secret `regcred` has no credentials for the push host `other.fake:5000` (it has: `ok.fake:5000`, `refused.fake:5000`, `tls.fake:5000`, `unreachable.fake:5000`)"
    );
    assert_eq!(finding(&report, "builder")["status"], "pass");

    let env = with(
        registry_env("ok.fake:5000"),
        &[(
            "ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_REGISTRY_SECRET_NAME",
            "nope",
        )],
    );
    let (code, report) = check_json(&cluster, &runner, &env, &[]).await;
    assert_eq!(code, Some(1), "{report:#}");
    assert_eq!(
        message(&report, "registry"),
        "Secret `nope` (`ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_REGISTRY_SECRET_NAME`) does not exist in namespace `fake-ns`"
    );
    assert!(fix(&report, "registry").starts_with("create it: kubectl create secret docker-registry nope -n fake-ns --docker-server=ok.fake:5000"));
    assert_eq!(
        finding(&report, "builder")["status"],
        "pass",
        "the builder pod runs without the Secret"
    );
}

/// The JSON document: schema 1, the namespace and runner pod, `passed`, and one object per
/// finding with exactly `check`, `status`, `message` and `fix`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_output_follows_the_documented_schema() {
    let (cluster, runner) = setup(Mode::Copy).await;
    let (code, report) =
        check_json(&cluster, &runner, &registry_env("refused.fake:5000"), &[]).await;
    assert_eq!(code, Some(1));
    let mut keys: Vec<&String> = report.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(
        keys,
        ["findings", "namespace", "passed", "runnerPod", "schema"]
    );
    assert_eq!(report["schema"], 1);
    assert_eq!(report["namespace"], "fake-ns");
    assert_eq!(report["runnerPod"], POD);
    assert_eq!(report["passed"], false);
    let findings = report["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 7);
    for finding in findings {
        let mut keys: Vec<&String> = finding.as_object().unwrap().keys().collect();
        keys.sort();
        assert_eq!(keys, ["check", "fix", "message", "status"], "{finding}");
        assert!(
            ["pass", "fail", "warn", "skip"].contains(&finding["status"].as_str().unwrap()),
            "{finding}"
        );
        assert!(
            finding["fix"].is_null() || finding["fix"].is_string(),
            "{finding}"
        );
    }
}

/// SIGINT while a check pod is starting: the pod is deleted and the check exits 130.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_deletes_the_check_pods() {
    let (cluster, runner) = setup(Mode::Copy).await;
    cluster.kubelet().hold("runner-ck-check-*");
    let child = spawn_check(&runner, &[], &["--job-image", "busybox:1.36"]);
    let pods: Api<Pod> = Api::namespaced(cluster.client().await, cluster.namespace());
    let selector = ListParams::default().labels("app.kubernetes.io/component=check");
    let deadline = Instant::now() + Duration::from_secs(30);
    while pods.list(&selector).await.unwrap().items.len() < 2 {
        assert!(Instant::now() < deadline, "the check pods never appeared");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let signalled = Instant::now();
    assert!(
        Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let output = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(
        signalled.elapsed() < Duration::from_secs(7),
        "{:?}",
        signalled.elapsed()
    );
    assert_eq!(output.status.code(), Some(130), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("cancelled by SIGINT"),
        "{}",
        text(&output.stderr)
    );
    assert_nothing_left(&cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_errors_exit_1_and_help_exits_0() {
    let (_cluster, runner) = setup(Mode::Copy).await;
    let output = check(&runner, &[], &["--fix-it"]).await;
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr).contains("unknown argument `--fix-it` for `check`"),
        "{}",
        text(&output.stderr)
    );
    let output = check(&runner, &[], &["--help"]).await;
    assert_eq!(output.status.code(), Some(0));
    assert!(text(&output.stdout).starts_with("usage: runner-k8s-hook check"));
}

/// The human report of a failing run: one line per check, then what to change, then the
/// summary; exit code 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_run_reads_as_one_screen() {
    let (cluster, runner) = setup(Mode::Volume).await;
    cluster.rbac().deny("pods/log", "get");
    let env = registry_env("refused.fake:5000");
    let output = check(
        &runner,
        &env,
        &["--job-image", "ghcr.io/octo-org/missing:1"],
    )
    .await;
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    println!("{stdout}");
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert_eq!(stderr, "");
    let lines: Vec<&str> = stdout.lines().collect();
    let statuses: Vec<&str> = lines[1..8]
        .iter()
        .map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
        .map(|s| Box::leak(s.into_boxed_str()) as &str)
        .collect();
    assert_eq!(
        statuses,
        [
            "FAIL permissions",
            "pass data-plane",
            "warn work-claim",
            "pass pod-security",
            "FAIL job-image",
            "pass builder",
            "FAIL registry",
        ]
    );
    assert_eq!(lines[8], "");
    assert_eq!(lines[9], "What to change:");
    assert!(
        lines[10].starts_with("  permissions: add these rules"),
        "{stdout}"
    );
    assert_eq!(
        lines.last(),
        Some(&"3 checks failed, 1 warning: jobs will not work until it is fixed.")
    );
    assert!(lines.len() <= 40, "more than one screen:\n{stdout}");
    assert_nothing_left(&cluster).await;
}
