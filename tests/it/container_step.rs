//! Container steps (`run_container_step` from an image) through the binary against the fake API
//! server, in both data planes: the image's own ENTRYPOINT runs (in an image without a shell),
//! the step's output and workspace file reach the runner and the next script step, the exit code
//! decides, and the step pod is gone afterwards.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::ListParams;
use serde_json::{Value, json};

use crate::support::fake_api::{FakeCluster, ImageSpec};
use crate::support::runner::{Mode, Runner, text};

const POD: &str = "runner-cs";
/// An action image with no shell at all: its only file is its entrypoint, a static binary.
const ACTION_IMAGE: &str = "ghcr.io/octo-org/no-shell-action:v1";

/// Register the action image: its only file is `/busybox` (a static binary), so there is no
/// `/bin/sh`, `env` or `tail` for a hook to lean on.
fn register_action_image(cluster: &FakeCluster, dir: &std::path::Path) {
    let rootfs = dir.join("action-rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    std::fs::copy("/bin/busybox", rootfs.join("busybox")).unwrap();
    // The entrypoint writes an output, a workspace file and its arguments, and exits with the
    // code in $EXIT (default 0). BusyBox runs its `sh` applet when called with `sh` first: the
    // image itself has no /bin/sh, so the hook cannot be relying on one.
    let script = r#"echo "greeting=hello $1" >> "$GITHUB_OUTPUT"
echo "made by the step in $PWD" > /github/workspace/from-step.txt
/busybox rm -f /github/workspace/deleted-by-the-container-step.txt
echo "args: [$1] [$2]"
echo "to stderr" >&2
exit "${EXIT:-0}""#;
    cluster.images().register(
        ACTION_IMAGE,
        ImageSpec::host(&[])
            .with_entrypoint(&["/busybox", "sh", "-c", script, "action"])
            .with_rootfs(&rootfs),
    );
}

async fn setup(mode: Mode) -> (FakeCluster, Runner, Value) {
    let cluster = FakeCluster::start().await;
    cluster.images().register_common();
    for image in ["node:22", "redis:7"] {
        cluster.images().register_host(image, &["sleep", "3600"]);
    }
    let runner = Runner::start(&cluster, POD, mode).await;
    register_action_image(&cluster, &runner.work);
    let (mut request, response) = runner.request("prepare_job");
    request["args"]["container"]["registry"] = Value::Null;
    request["args"]["services"] = json!([]);
    let state = runner.prepare(&request, &response, &[]).await;
    (cluster, runner, state)
}

fn container_step(runner: &Runner, state: &Value, image: &str, exit: &str) -> Value {
    let (mut request, _) = runner.request("run_container_step");
    request["state"] = state.clone();
    let args = &mut request["args"];
    args["image"] = image.into();
    // No `entrypoint:` in the action: the image's own ENTRYPOINT runs with these args.
    args["entryPoint"] = Value::Null;
    args["environmentVariables"]["EXIT"] = exit.into();
    args["environmentVariables"]["GITHUB_OUTPUT"] = "/github/file_commands/set_output_cs".into();
    request
}

async fn step_pods_left(cluster: &FakeCluster) -> usize {
    let pods: Api<Pod> = Api::namespaced(cluster.client().await, cluster.namespace());
    pods.list(&ListParams::default().labels("app.kubernetes.io/component=step"))
        .await
        .unwrap()
        .items
        .len()
}

async fn container_step_results_reach_the_next_step(mode: Mode) {
    let (cluster, runner, state) = setup(mode).await;
    std::fs::write(
        runner.temp().join("_runner_file_commands/set_output_cs"),
        "",
    )
    .unwrap();
    // Files a script step and the container step delete stay deleted: copy mode mirrors the
    // workspace, it does not only add.
    let (step, _) = runner.script_step(
        "echo x > deleted-by-the-container-step.txt\nrm README.md\n",
        json!({}),
        &state,
    );
    let output = runner.run(&step, &[]).await;
    assert!(output.status.success(), "{}", text(&output.stderr));

    let request = container_step(&runner, &state, ACTION_IMAGE, "0");
    let output = runner.run(&request, &[]).await;
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "container step:\n{stdout}{stderr}");
    // The runner's split of `"hello" "big world"` is undone: two arguments, as docker run gives.
    assert!(stdout.contains("args: [hello] [big world]\n"), "{stdout}");
    assert!(
        stdout.contains("to stderr\n"),
        "the container's stderr is in the step log: {stdout}"
    );
    assert_eq!(
        std::fs::read_to_string(runner.temp().join("_runner_file_commands/set_output_cs")).unwrap(),
        "greeting=hello hello\n"
    );
    assert_eq!(
        std::fs::read_to_string(runner.workspace().join("from-step.txt")).unwrap(),
        "made by the step in /github/workspace\n",
        "the workspace file is on the runner side"
    );

    assert!(!runner.workspace().join("README.md").exists());
    assert!(
        !runner
            .workspace()
            .join("deleted-by-the-container-step.txt")
            .exists()
    );

    // The next script step, in the job pod, sees the file the container step wrote, and not
    // the ones deleted.
    let (step, _) = runner.script_step(
        "cat from-step.txt\nls README.md deleted-by-the-container-step.txt 2>/dev/null || echo none left\n",
        json!({}),
        &state,
    );
    let output = runner.run(&step, &[]).await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stdout),
        "made by the step in /github/workspace\nnone left\n"
    );

    // A container step that exits 3 fails the hook with 3.
    let request = container_step(&runner, &state, ACTION_IMAGE, "3");
    let output = runner.run(&request, &[]).await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("exited with code 3"), "{stderr}");
    assert_eq!(step_pods_left(&cluster).await, 0, "step pods are deleted");
    assert_eq!(
        cluster.refused_hook_requests().len(),
        0,
        "ARC's Role is enough: {:?}",
        cluster.refused_hook_requests()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_step_in_volume_mode() {
    container_step_results_reach_the_next_step(Mode::Volume).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_step_in_copy_mode() {
    container_step_results_reach_the_next_step(Mode::Copy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpullable_step_image_fails_within_seconds_and_leaves_no_pod() {
    let (cluster, runner, state) = setup(Mode::Copy).await;
    let request = container_step(&runner, &state, "ghcr.io/octo-org/gone:v9", "0");
    let started = Instant::now();
    let output = runner.run(&request, &[]).await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
    assert!(stderr.contains("ghcr.io/octo-org/gone:v9"), "{stderr}");
    assert!(
        stderr.contains("ErrImagePull") || stderr.contains("ImagePullBackOff"),
        "{stderr}"
    );
    assert_eq!(step_pods_left(&cluster).await, 0, "the step pod is deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn step_registry_credentials_become_the_pull_secret() {
    let (cluster, runner, state) = setup(Mode::Copy).await;
    let private = "registry.example.com/octo-org/private-action:v1";
    let rootfs = runner.work.join("action-rootfs");
    cluster.images().register(
        private,
        ImageSpec::host(&[])
            .with_entrypoint(&["/busybox", "sh", "-c", "echo pulled with credentials"])
            .with_rootfs(&rootfs)
            .requiring_auth(),
    );
    // Without credentials the kubelet is refused, and the hook says so at once.
    let request = container_step(&runner, &state, private, "0");
    let output = runner.run(&request, &[]).await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("may require authorization"), "{stderr}");

    // With the action's registry credentials the image is pulled through a pull secret.
    let mut request = container_step(&runner, &state, private, "0");
    request["args"]["registry"] = json!({
        "username": "octocat", "password": "s3cret-token", "serverUrl": "registry.example.com"
    });
    let output = runner.run(&request, &[]).await;
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("pulled with credentials"), "{stdout}");
    assert!(!stderr.contains("s3cret-token") && !stdout.contains("s3cret-token"));
    // The step's secrets (pull secret, environment) are gone with the step.
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(cluster.client().await, cluster.namespace());
    let left = secrets
        .list(&ListParams::default().labels("runner-pod=runner-cs"))
        .await
        .unwrap()
        .items;
    // (The job itself has no registry credentials in this setup, so nothing may remain.)
    assert!(left.is_empty(), "step secrets left behind: {left:?}");
}

/// An action image that makes restrictive files in the workspace, as a root step does: a `0600`
/// file, a `0700` directory with a `0600` file in it, and a file given to uid 4242.
const MAKER_IMAGE: &str = "ghcr.io/octo-org/restrictive-maker:v1";
/// An action image that reports what it finds of them.
const READER_IMAGE: &str = "ghcr.io/octo-org/restrictive-reader:v1";

/// `stat` of the restrictive files (mode, owner), then their contents.
const REPORT: &str = "cd \"$1\" && stat -c '%n %a %u' secret.txt private private/inside.txt theirs.txt && cat secret.txt private/inside.txt theirs.txt";

/// Copy mode used to lose a step's restrictive files: the copy helpers ran as uid 1001 and could
/// not read what a root step kept to itself (the copy back failed), and owners were lost on the
/// way through the runner. Now the next container step and the next script step see them with
/// their modes and owners.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restrictive_files_of_a_root_container_step_reach_the_next_steps_in_copy_mode() {
    let (cluster, runner, state) = setup(Mode::Copy).await;
    let rootfs = runner.work.join("action-rootfs");
    let make = r#"set -e
cd /github/workspace
umask 022
/busybox id -u
echo secret > secret.txt
/busybox chmod 600 secret.txt
/busybox mkdir private
echo inside > private/inside.txt
/busybox chmod 600 private/inside.txt
/busybox chmod 700 private
echo theirs > theirs.txt
/busybox chmod 640 theirs.txt
/busybox chown 4242:4242 theirs.txt"#;
    cluster.images().register(
        MAKER_IMAGE,
        ImageSpec::host(&[])
            .with_entrypoint(&["/busybox", "sh", "-c", make, "maker"])
            .with_rootfs(&rootfs),
    );
    let read = format!(
        "PATH=/; {}",
        REPORT
            .replace("stat ", "/busybox stat ")
            .replace("cat ", "/busybox cat ")
    );
    cluster.images().register(
        READER_IMAGE,
        ImageSpec::host(&[])
            .with_entrypoint(&["/busybox", "sh", "-c", &read, "reader", "/github/workspace"])
            .with_rootfs(&rootfs),
    );
    let expected = "secret.txt 600 0\nprivate 700 0\nprivate/inside.txt 600 0\ntheirs.txt 640 4242\nsecret\ninside\ntheirs\n";

    let output = runner
        .run(&container_step(&runner, &state, MAKER_IMAGE, "0"), &[])
        .await;
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "the maker step:\n{stdout}{stderr}");
    assert!(stdout.starts_with("0\n"), "the step runs as root: {stdout}");
    // The runner keeps the modes (not the owners: it cannot chown) and can read everything.
    let ws = runner.workspace();
    for (file, mode) in [
        ("secret.txt", 0o600),
        ("private", 0o700),
        ("private/inside.txt", 0o600),
        ("theirs.txt", 0o640),
    ] {
        let meta = std::fs::metadata(ws.join(file)).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o7777,
            mode,
            "{file} on the runner side"
        );
    }
    assert_eq!(
        std::fs::read_to_string(ws.join("private/inside.txt")).unwrap(),
        "inside\n"
    );

    // The next step is another container step: it gets modes and owners from the job pod.
    let output = runner
        .run(&container_step(&runner, &state, READER_IMAGE, "0"), &[])
        .await;
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(
        output.status.success(),
        "the reader step:\n{stdout}{stderr}"
    );
    assert_eq!(stdout, expected, "in the next container step");

    // Then a script step in the job container (root).
    let (step, _) = runner.script_step(&format!("set -- \"$PWD\"\n{REPORT}\n"), json!({}), &state);
    let output = runner.run(&step, &[]).await;
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(
        output.status.success(),
        "the script step:\n{stdout}{stderr}"
    );
    assert_eq!(stdout, expected, "in the job container");
    assert_eq!(step_pods_left(&cluster).await, 0, "step pods are deleted");
}
