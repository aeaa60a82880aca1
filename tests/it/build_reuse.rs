//! Reuse by content through the binary against the fake API server and a real registry
//! (Debian's `docker-registry`): the second run of an unchanged Dockerfile action creates no build
//! pod and runs from the pinned pull reference of the first build; a changed file builds again;
//! a registry that refuses the new tag, or a CA the hook may not read, costs one log line and a
//! build. The build pod runs a stand-in `buildah` that builds nothing but pushes a real image
//! (its config names a checksum of the context) over the registry API, so the registry holds
//! what a real build would have pushed, under the random tag and the key's tag.

use kube::Api;
use kube::api::PostParams;
use serde_json::{Value, json};

use crate::support::fake_api::{FakeCluster, ImageSpec};
use crate::support::registry::Registry;
use crate::support::runner::{
    Mode, Runner, create_registry_secret, record_pods, set_executable, text,
};

const POD: &str = "runner-reuse";
const BUILDER: &str = "quay.io/buildah/stable:stand-in";
/// The pull host, which the fake kubelet serves from the real registry.
const PULL: &str = "localhost:30500/actions";

/// A stand-in `buildah` run from the host's root (sh, curl, sha256sum): `build` prints the
/// Dockerfile's steps and records a checksum of the context in the store; `push` uploads an image
/// whose config names that checksum to the registry of the destination reference (or to
/// `$STANDIN_REGISTRY`), and writes the manifest's digest for `--digestfile`.
const STANDIN_BUILDAH: &str = r#"#!/bin/sh
set -eu
root=
while [ $# -gt 0 ]; do case "$1" in --root) root=$2; shift 2;; --runroot|--storage-driver) shift 2;; *) break;; esac; done
cmd=$1; shift
case "$cmd" in
  --version) echo "buildah version 1.41.4 (stand-in)";;
  build)
    case " $* " in *" --help "*) echo "      --cache-to strings"; exit 0;; esac
    file=; ctx=
    while [ $# -gt 0 ]; do case "$1" in
      --file) file=$2; shift 2;;
      --tag|--cert-dir|--cache-from|--cache-to|--build-arg) shift 2;;
      --*) shift;;
      *) ctx=$1; shift;;
    esac; done
    n=$(grep -c . "$file"); i=0
    while IFS= read -r line; do [ -n "$line" ] || continue; i=$((i+1)); echo "STEP $i/$n: $line"; done < "$file"
    (cd "$ctx" && find . -type f | LC_ALL=C sort | xargs sha256sum) | sha256sum | cut -c1-64 > "$root/content"
    echo "COMMIT";;
  push)
    digestfile=; set_refs=
    while [ $# -gt 0 ]; do case "$1" in
      --digestfile) digestfile=$2; shift 2;;
      --cert-dir) shift 2;;
      --*) shift;;
      *) set_refs="$set_refs $1"; shift;;
    esac; done
    dest=${set_refs##* }
    host=${dest%%/*}; rest=${dest#*/}; repo=${rest%:*}; tag=${rest##*:}
    registry=${STANDIN_REGISTRY:-$host}
    content=$(cat "$root/content")
    config="{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{\"Labels\":{\"content\":\"$content\"}},\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[]}}"
    cdigest=sha256:$(printf '%s' "$config" | sha256sum | cut -c1-64)
    location=$(curl -fsS -X POST -D - -o /dev/null "http://$registry/v2/$repo/blobs/uploads/" | tr -d '\r' | sed -n 's/^[Ll]ocation: *//p')
    case $location in http*) ;; *) location=http://$registry$location;; esac
    case $location in *\?*) sep='&';; *) sep='?';; esac
    curl -fsS -X PUT -H 'Content-Type: application/octet-stream' --data-binary "$config" "$location${sep}digest=$cdigest" >/dev/null
    manifest="{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"$cdigest\",\"size\":${#config}},\"layers\":[]}"
    curl -fsS -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' --data-binary "$manifest" "http://$registry/v2/$repo/manifests/$tag" >/dev/null
    echo "Writing manifest to image destination"
    [ -z "$digestfile" ] || printf 'sha256:%s' "$(printf '%s' "$manifest" | sha256sum | cut -c1-64)" > "$digestfile";;
  *) echo "stand-in buildah: unknown command $cmd"; exit 2;;
esac
"#;

const DOCKERFILE: &str =
    "FROM busybox\nCOPY entrypoint.sh /entrypoint.sh\nRUN true\nENTRYPOINT [\"/entrypoint.sh\"]\n";

struct Setup {
    cluster: FakeCluster,
    runner: Runner,
    state: Value,
    registry: Registry,
    /// Where the build pod pushes and the hook looks: `<registry>/actions`.
    push: String,
    /// The stand-in's directory ([`stand_in_dir`]).
    bin: tempfile::TempDir,
}

/// A fake cluster whose builder image is the stand-in, a registry, a runner whose `_actions`
/// holds `octo-org/hello-action`, and the pull host served from the registry.
async fn setup(mode: Mode) -> Setup {
    let registry = Registry::plain();
    let cluster = FakeCluster::start().await;
    cluster.images().register_common();
    cluster
        .images()
        .register_host("node:22", &["sleep", "3600"]);
    let runner = Runner::start(&cluster, POD, mode).await;

    let action = runner.work.join("_actions/octo-org/hello-action/v1");
    std::fs::create_dir_all(&action).unwrap();
    std::fs::write(action.join("Dockerfile"), DOCKERFILE).unwrap();
    std::fs::write(
        action.join("entrypoint.sh"),
        "#!/bin/sh\necho \"hello $1\"\n",
    )
    .unwrap();

    let bin = stand_in_dir();
    std::fs::write(bin.path().join("buildah"), STANDIN_BUILDAH).unwrap();
    set_executable(&bin.path().join("buildah"));
    set_executable(bin.path());
    let mut builder = ImageSpec::host(&[]);
    builder.env = vec![(
        "PATH".to_owned(),
        format!("{}:/usr/bin:/bin", bin.path().display()),
    )];
    cluster.images().register(BUILDER, builder);
    cluster.images().serve_from_registry(
        PULL,
        &registry.host,
        ImageSpec::host(&[])
            .with_entrypoint(&[
                "sh",
                "-c",
                "echo \"hello from the built action: $1\"",
                "action",
            ])
            .requiring_auth(),
    );
    create_registry_secret(&cluster).await;

    let push = format!("{}/actions", registry.host);
    let (mut request, response) = runner.request("prepare_job");
    request["args"]["container"]["registry"] = Value::Null;
    request["args"]["services"] = json!([]);
    let env = env(&push, &[]);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let state = runner.prepare(&request, &response, &env).await;
    Setup {
        cluster,
        runner,
        state,
        registry,
        push,
        bin,
    }
}

/// A directory for the stand-in that the build container sees: not under `/tmp` (containers
/// get a tmpfs there, and the clone may live there) nor `/var/tmp` (the build pod's emptyDir).
fn stand_in_dir() -> tempfile::TempDir {
    let base = std::path::Path::new("/var/lib/runner-k8s-hook-tests");
    std::fs::create_dir_all(base).unwrap();
    set_executable(base);
    tempfile::tempdir_in(base).unwrap()
}

fn env(push: &str, extra: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    let mut env = vec![
        (
            "ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_REGISTRY_HOST_PUSH",
            push.to_owned(),
        ),
        (
            "ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_REGISTRY_HOST_PULL",
            PULL.to_owned(),
        ),
        (
            "ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_REGISTRY_SECRET_NAME",
            "regcred".to_owned(),
        ),
        (
            "ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_BUILDER_IMAGE",
            BUILDER.to_owned(),
        ),
        (
            "ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_BUILD_OPTIONS",
            "--tls-verify=false".to_owned(),
        ),
        (
            "ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_PUSH_OPTIONS",
            "--tls-verify=false".to_owned(),
        ),
    ];
    env.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    env
}

/// Run the Dockerfile step once; its stdout, stderr and the step pod's image.
async fn run_step(
    setup: &Setup,
    extra: &[(&'static str, &str)],
) -> (String, String, Option<String>) {
    let steps = record_pods(&setup.cluster, setup.cluster.client().await, "step");
    let (mut request, _) = setup.runner.request("run_container_step_dockerfile");
    request["state"] = setup.state.clone();
    let env = env(&setup.push, extra);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let output = setup.runner.run(&request, &env).await;
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("hello from the built action: world"),
        "the step ran from the registry's image:\n{stdout}\n{stderr}"
    );
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let image = steps.lock().unwrap().first().and_then(|pod| {
        pod.spec
            .as_ref()
            .and_then(|s| s.containers.first())
            .and_then(|c| c.image.clone())
    });
    (stdout, stderr, image)
}

/// `<PULL>/octo-org/hello-action:<tag>@<digest>` → (tag, digest).
fn tag_and_digest(image: &str) -> (String, String) {
    let rest = image
        .strip_prefix(&format!("{PULL}/octo-org/hello-action:"))
        .unwrap_or_else(|| panic!("step image {image}"));
    let (tag, digest) = rest.split_once('@').unwrap();
    (tag.to_owned(), digest.to_owned())
}

async fn unchanged_action_is_reused(mode: Mode) {
    let setup = setup(mode).await;
    let builds = record_pods(&setup.cluster, setup.cluster.client().await, "build");

    let (stdout, _, image) = run_step(&setup, &[]).await;
    let (first_tag, digest) = tag_and_digest(&image.expect("a step pod"));
    assert!(
        stdout.contains(&format!(
            "built {}/octo-org/hello-action@{digest} (cache: 0 of 4 steps reused)",
            setup.push
        )),
        "{stdout}"
    );
    assert_eq!(builds.lock().unwrap().len(), 1, "the first run builds");
    assert_eq!(
        setup
            .registry
            .digest("actions/octo-org/hello-action", &first_tag),
        digest
    );

    let (stdout, stderr, image) = run_step(&setup, &[]).await;
    let (second_tag, second_digest) = tag_and_digest(&image.expect("a step pod"));
    assert_eq!(
        builds.lock().unwrap().len(),
        1,
        "no build pod the second time:\n{stderr}"
    );
    assert_eq!(second_digest, digest, "the same image");
    assert_ne!(second_tag, first_tag, "under a fresh random tag");
    assert_eq!(
        setup
            .registry
            .digest("actions/octo-org/hello-action", &second_tag),
        digest,
        "the new tag is in the registry"
    );
    assert!(
        stdout.contains(&format!(
            "reused {}/octo-org/hello-action@{digest} (built earlier from the same content)",
            setup.push
        )),
        "{stdout}"
    );
    assert!(!stdout.contains("::group::Building"), "{stdout}");
    assert_eq!(
        setup.cluster.refused_hook_requests().len(),
        0,
        "ARC's Role is enough: {:?}",
        setup.cluster.refused_hook_requests()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_action_runs_without_a_build_pod_the_second_time_in_copy_mode() {
    unchanged_action_is_reused(Mode::Copy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_action_runs_without_a_build_pod_the_second_time_in_volume_mode() {
    unchanged_action_is_reused(Mode::Volume).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_file_builds_again() {
    let setup = setup(Mode::Copy).await;
    let builds = record_pods(&setup.cluster, setup.cluster.client().await, "build");
    let (_, _, image) = run_step(&setup, &[]).await;
    let (_, first) = tag_and_digest(&image.unwrap());
    let action = setup.runner.work.join("_actions/octo-org/hello-action/v1");
    std::fs::write(action.join("entrypoint.sh"), "#!/bin/sh\necho \"hi $1\"\n").unwrap();
    let (stdout, _, image) = run_step(&setup, &[]).await;
    let (_, second) = tag_and_digest(&image.unwrap());
    assert_eq!(builds.lock().unwrap().len(), 2, "built again");
    assert_ne!(second, first, "another image");
    assert!(
        stdout.contains(&format!(
            "built {}/octo-org/hello-action@{second}",
            setup.push
        )),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reuse_off_always_builds() {
    let setup = setup(Mode::Copy).await;
    let builds = record_pods(&setup.cluster, setup.cluster.client().await, "build");
    let off = [("ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_REUSE", "false")];
    run_step(&setup, &off).await;
    let (stdout, _, _) = run_step(&setup, &off).await;
    assert_eq!(builds.lock().unwrap().len(), 2);
    assert!(!stdout.contains("reused "), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_that_refuses_the_new_tag_costs_one_line_and_a_build() {
    let setup = setup(Mode::Copy).await;
    let builds = record_pods(&setup.cluster, setup.cluster.client().await, "build");
    run_step(&setup, &[]).await;

    // The hook now reaches the registry through a read-only view (reads work, writes are
    // refused), while the build pod still pushes through the writable one, as when only the
    // build pod's credentials may push.
    let read_only = setup.registry.read_only_view();
    let mut builder = ImageSpec::host(&[]);
    builder.env = vec![
        (
            "PATH".to_owned(),
            format!("{}:/usr/bin:/bin", setup.bin.path().display()),
        ),
        ("STANDIN_REGISTRY".to_owned(), setup.registry.host.clone()),
    ];
    setup.cluster.images().register(BUILDER, builder);
    let (mut request, _) = setup.runner.request("run_container_step_dockerfile");
    request["state"] = setup.state.clone();
    let env = env(&format!("{}/actions", read_only.host), &[]);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let output = setup.runner.run(&request, &env).await;
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("hello from the built action: world"),
        "{stdout}"
    );
    assert_eq!(builds.lock().unwrap().len(), 2, "fell back to building");
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("not reusing an earlier build"))
        .collect();
    assert_eq!(warnings.len(), 1, "one line:\n{stderr}");
    assert!(
        warnings[0].contains("could not tag") && warnings[0].contains("REUSE=false"),
        "{}",
        warnings[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_the_hook_may_not_read_costs_one_line_and_a_build() {
    let setup = setup(Mode::Copy).await;
    // A CA in a ConfigMap, which the build pod mounts but ARC's chart Role does not let the hook
    // read (no `configmaps get`).
    let config_maps: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(setup.cluster.client().await, setup.cluster.namespace());
    let map = serde_json::from_value(json!({
        "metadata": {"name": "registry-ca"},
        "data": {"ca.crt": "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"}
    }))
    .unwrap();
    config_maps
        .create(&PostParams::default(), &map)
        .await
        .unwrap();
    let builds = record_pods(&setup.cluster, setup.cluster.client().await, "build");
    let ca = [(
        "ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_REGISTRY_CA",
        "configmap/registry-ca",
    )];
    run_step(&setup, &ca).await;
    let (_, stderr, _) = run_step(&setup, &ca).await;
    assert_eq!(builds.lock().unwrap().len(), 2, "no reuse without the CA");
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("not reusing an earlier build"))
        .collect();
    assert_eq!(warnings.len(), 1, "one line:\n{stderr}");
    assert!(
        warnings[0].contains("registry CA ConfigMap `registry-ca`")
            && warnings[0].contains("`configmaps`"),
        "{}",
        warnings[0]
    );
}
