//! Real builds (docs/developer/testing.md): the exact script a build pod runs ([`build::script`]), run on this
//! machine by the local executor as an unprivileged user with subordinate ids (rootless), with
//! the host's Buildah, against a real registry on 127.0.0.1, plain and with TLS + basic auth.
//! Each test checks the digest the build reports against the registry's own
//! `Docker-Content-Digest`, and runs what it built.
//!
//! Needs root (to create the build user and switch to it, and to mount an overlayfs) and the
//! packages of `scripts/install-deps.sh test`; `make test` provides both, and CI runs as root.
//! Anywhere else these tests fail with the reason: a build test never reports `ok` without
//! having built (docs/developer/testing.md).

use std::path::{Path, PathBuf};
use std::process::Command;

use runner_k8s_hook::image::local::{LocalExecutor, Scratch, User, running_as_root};
use runner_k8s_hook::image::options::{self, Stage};
use runner_k8s_hook::image::reference::{self, Digest, ImageRef, RegistryHost};
use runner_k8s_hook::image::{
    BuildError, BuildOutcome, BuildSpec, Executor as _, Storage, StorageDriver,
};

use crate::support::registry::{
    self, Registry, build_user, busybox_context, copy_tree, run, set_mode,
};

const HOOK: &str = env!("CARGO_BIN_EXE_runner-k8s-hook");

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hello-action")
}

/// Fail with the reason where these tests cannot run (not root, a tool missing), so that they
/// never pass without building.
fn require_build_env() {
    assert!(
        running_as_root(),
        "the real build tests need root (to create `{}` and switch to it with runuser); run them as root, as `make test` in CI does",
        registry::BUILD_USER
    );
    registry::require_tools();
}

/// A registry with the busybox base image in it, and the build user.
struct Lab {
    registry: Registry,
    user: User,
    /// `<registry>/busybox:latest`.
    base: String,
}

impl Lab {
    async fn new(tls: bool) -> Lab {
        let registry = if tls {
            Registry::tls()
        } else {
            Registry::plain()
        };
        let user = User::lookup(build_user())
            .await
            .expect("the build user exists");
        let lab = Lab {
            base: format!("{}/busybox:latest", registry.host),
            registry,
            user,
        };
        let context = lab.context_dir("busybox");
        busybox_context(&context);
        let base = lab.base.clone();
        let (result, log) = lab
            .build(
                &context,
                "Containerfile",
                &base,
                &[],
                StorageDriver::Overlay,
                Auth::Good,
            )
            .await;
        result.unwrap_or_else(|e| panic!("the busybox base does not build: {e}\n{log}"));
        lab
    }

    /// A fresh directory the build user can read, under the registry's temporary directory.
    fn context_dir(&self, name: &str) -> PathBuf {
        let dir = self
            .registry
            .dir()
            .join("contexts")
            .join(format!("{name}-{}", reference::random_tag()));
        std::fs::create_dir_all(&dir).unwrap();
        set_mode(dir.parent().unwrap(), 0o755);
        set_mode(&dir, 0o755);
        dir
    }

    /// The example action, copied where the build user can read it (`/root` is 0700).
    fn example_context(&self) -> PathBuf {
        let dir = self.context_dir("hello-action");
        copy_tree(&example(), &dir);
        dir
    }

    /// Options as an operator would configure them, through the same allow-list.
    fn options(&self, stage: Stage) -> Vec<String> {
        let text = if self.registry.tls.is_some() {
            "--retry=1"
        } else {
            "--tls-verify=false --retry=1"
        };
        options::parse(stage, text).expect("allowed options")
    }

    async fn build(
        &self,
        context: &Path,
        dockerfile: &str,
        image: &str,
        build_args: &[(&str, &str)],
        driver: StorageDriver,
        auth: Auth,
    ) -> (Result<BuildOutcome, BuildError>, String) {
        self.build_tweaked(
            context,
            dockerfile,
            image,
            build_args,
            driver,
            auth,
            &|_| {},
        )
        .await
    }

    /// [`Lab::build`] with the spec changed by `tweak` before it runs (the layer cache, more
    /// tags).
    #[allow(clippy::too_many_arguments)]
    async fn build_tweaked(
        &self,
        context: &Path,
        dockerfile: &str,
        image: &str,
        build_args: &[(&str, &str)],
        driver: StorageDriver,
        auth: Auth,
        tweak: &(dyn Fn(&mut BuildSpec) + Sync),
    ) -> (Result<BuildOutcome, BuildError>, String) {
        let scratch = Scratch::new(Some(&self.user)).expect("scratch directory");
        let tls = self.registry.tls.as_ref();
        let spec = BuildSpec {
            context_dir: context.to_str().unwrap().to_owned(),
            dockerfile: dockerfile.to_owned(),
            image: image.to_owned(),
            push: true,
            build_args: build_args
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            storage: Storage {
                root: scratch.join("storage/root").unwrap(),
                runroot: scratch.join("storage/run").unwrap(),
                driver,
            },
            build_options: self.options(Stage::Build),
            push_options: self.options(Stage::Push),
            auth_source: tls.map(|t| {
                let file = match auth {
                    Auth::Good => &t.auth_file,
                    Auth::Wrong => &t.bad_auth_file,
                };
                file.to_str().unwrap().to_owned()
            }),
            cert_dir: tls.map(|t| t.cert_dir.to_str().unwrap().to_owned()),
            work_dir: scratch.join("work").unwrap(),
            result_path: scratch.join("result").unwrap(),
            wait_for: None,
            extra_tags: Vec::new(),
            cache: None,
        };
        let mut spec = spec;
        tweak(&mut spec);
        let executor = LocalExecutor {
            user: Some(self.user.clone()),
            timeout: Some(std::time::Duration::from_secs(300)),
        };
        let mut log = Vec::new();
        let result = executor.run(&spec, &mut log).await;
        (result, String::from_utf8_lossy(&log).into_owned())
    }

    /// Pull `reference` into a fresh store as the build user and run the action's entrypoint in
    /// it (rootless `buildah from` + `buildah run`), with `GITHUB_OUTPUT` set as the
    /// runner sets it. Returns the output: the greeting, then the output file.
    fn run_action(&self, reference: &str, who: &str) -> String {
        let scratch = Scratch::new(Some(&self.user)).expect("scratch directory");
        let root = scratch.join("storage/root").unwrap();
        let runroot = scratch.join("storage/run").unwrap();
        let mut access: Vec<String> = Vec::new();
        match &self.registry.tls {
            Some(tls) => {
                access.extend(["--cert-dir".into(), tls.cert_dir.to_str().unwrap().into()]);
                access.extend(["--authfile".into(), tls.auth_file.to_str().unwrap().into()]);
            }
            None => access.push("--tls-verify=false".into()),
        }
        let buildah = |args: &[&str]| {
            let mut command = Command::new("runuser");
            command
                .args([
                    "-u",
                    &self.user.name,
                    "--",
                    "buildah",
                    "--root",
                    &root,
                    "--runroot",
                    &runroot,
                ])
                .args(["--storage-driver", "overlay"])
                .args(args)
                .env_clear()
                .env("HOME", &self.user.home)
                .env("PATH", runner_k8s_hook::image::local::USER_PATH)
                .env("BUILDAH_ISOLATION", "chroot");
            run(&mut command)
        };
        let mut from = vec!["from", "-q"];
        from.extend(access.iter().map(String::as_str));
        from.push(reference);
        let container = buildah(&from).trim().to_owned();
        let output = buildah(&[
            "run",
            &container,
            "--",
            "sh",
            "-c",
            "GITHUB_OUTPUT=/tmp/github_output /entrypoint.sh \"$1\" && cat /tmp/github_output",
            "sh",
            who,
        ]);
        buildah(&["rm", &container]);
        output
    }
}

#[derive(Clone, Copy)]
enum Auth {
    Good,
    Wrong,
}

/// Build the example, check the digest with the registry, run it: the acceptance path.
async fn build_push_and_run(tls: bool, driver: StorageDriver) {
    let lab = Lab::new(tls).await;
    let host = RegistryHost::parse(&lab.registry.host).unwrap();
    let name = reference::action_name(
        Path::new("/runner/_work/_actions/octo-org/hello-action/v1/Dockerfile"),
        Path::new("/runner/_work"),
        Some("octo-org/workflow"),
    );
    let image = ImageRef::new(&host, &host, &name);
    let context = lab.example_context();
    let (result, log) = lab
        .build(
            &context,
            "Dockerfile",
            &image.push_ref(),
            &[("BASE_IMAGE", &lab.base)],
            driver,
            Auth::Good,
        )
        .await;
    let outcome = result.unwrap_or_else(|e| panic!("the example does not build: {e}\n{log}"));

    // The log reads like a build log.
    assert!(log.contains("STEP 1/4: FROM"), "{log}");
    assert!(
        log.contains("STEP 3/4: RUN chmod +x /entrypoint.sh"),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "[runner-k8s-hook] pushed {}@sha256:",
            image.push_ref()
        )),
        "{log}"
    );
    let expected_driver = match driver {
        StorageDriver::Overlay => "storage driver: overlay",
        StorageDriver::Vfs => "storage driver: vfs",
    };
    assert!(log.contains(expected_driver), "{log}");

    // The digest is the registry's.
    assert_eq!(outcome.image, image.push_ref());
    let digest = outcome.digest.clone().expect("pushed");
    let served = lab.registry.digest(&name, image.tag());
    assert_eq!(Digest::parse(&served).unwrap(), digest, "build log:\n{log}");

    // And it runs, from the pull reference pinned by digest.
    let output = lab.run_action(&image.pull_ref(&digest), "Mona Lisa");
    let greeting = output.lines().next().unwrap_or_default();
    assert!(
        greeting.starts_with("Hello, Mona Lisa! (built "),
        "{output}"
    );
    assert!(
        output.contains("greeting=Hello, Mona Lisa! (built "),
        "{output}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_action_builds_rootless_and_runs_from_a_plain_registry() {
    require_build_env();
    build_push_and_run(false, StorageDriver::Overlay).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_action_builds_rootless_and_runs_from_a_tls_registry_with_basic_auth() {
    require_build_env();
    build_push_and_run(true, StorageDriver::Vfs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_run_step_fails_the_build_with_the_last_lines_of_the_log() {
    require_build_env();
    let lab = Lab::new(false).await;
    let context = lab.context_dir("failing");
    std::fs::write(
        context.join("Dockerfile"),
        format!("FROM {}\nRUN echo 'about to fail' && exit 3\n", lab.base),
    )
    .unwrap();
    let image = format!(
        "{}/octo/failing:{}",
        lab.registry.host,
        reference::random_tag()
    );
    let (result, log) = lab
        .build(
            &context,
            "Dockerfile",
            &image,
            &[],
            StorageDriver::Overlay,
            Auth::Good,
        )
        .await;
    let err = result.expect_err("a RUN step that exits 3 fails the build");
    let BuildError::BuildFailed { last_lines, .. } = &err else {
        panic!("expected BuildFailed, got {err}\n{log}");
    };
    assert!(
        last_lines.iter().any(|l| l.contains("about to fail")),
        "{err}"
    );
    assert!(
        err.to_string().starts_with(&format!(
            "building `{image}` failed; last lines of the build log:\n"
        )),
        "{err}"
    );
    assert!(!err.is_auth_failure());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_a_refused_push() {
    require_build_env();
    let lab = Lab::new(true).await;
    // No base image to pull, so the build itself needs no registry; only the push does.
    let context = lab.example_context();
    std::fs::write(
        context.join("Dockerfile"),
        "FROM scratch\nCOPY entrypoint.sh /entrypoint.sh\n",
    )
    .unwrap();
    let image = format!(
        "{}/octo/refused:{}",
        lab.registry.host,
        reference::random_tag()
    );
    let (result, log) = lab
        .build(
            &context,
            "Dockerfile",
            &image,
            &[],
            StorageDriver::Overlay,
            Auth::Wrong,
        )
        .await;
    let err = result.expect_err("a wrong password fails the push");
    assert!(
        matches!(err, BuildError::PushRefused { .. }),
        "expected PushRefused, got {err}\n{log}"
    );
    assert!(err.is_auth_failure());
    let report = runner_k8s_hook::error::report(&anyhow::Error::new(err));
    assert!(
        report.starts_with(&format!(
            "::error::the registry refused the push of `{image}`"
        )),
        "{report}"
    );
    assert!(report.contains("\nhint: "), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_dockerfile_is_reported_before_buildah_builds() {
    require_build_env();
    let lab = Lab::new(false).await;
    let context = lab.context_dir("empty");
    let image = format!(
        "{}/octo/missing:{}",
        lab.registry.host,
        reference::random_tag()
    );
    let (result, _log) = lab
        .build(
            &context,
            "Dockerfile.missing",
            &image,
            &[],
            StorageDriver::Overlay,
            Auth::Good,
        )
        .await;
    assert!(
        matches!(result, Err(BuildError::DockerfileMissing { ref dockerfile, .. }) if dockerfile == "Dockerfile.missing")
    );
}

/// What the build user's overlay does on a storage root that is an overlayfs, where native
/// overlay cannot work: without `fuse-overlayfs` on the build user's `PATH`, c/storage refuses
/// overlay outright; with it, c/storage makes it overlay's mount program, and the mount works only
/// where the build user can open `/dev/fuse` (mode 0600 on a machine without udev). `Some`: the
/// reason the fallback line names; `None`: overlay works (through fuse-overlayfs).
fn overlay_on_overlayfs_fails_with(user: &User) -> Option<&'static str> {
    let has = |command: &str| {
        Command::new("runuser")
            .args(["-u", &user.name, "--", "sh", "-c", command])
            .env_clear()
            .env("PATH", runner_k8s_hook::image::local::USER_PATH)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !has("command -v fuse-overlayfs") {
        Some("Error: 'overlay' is not supported over overlayfs")
    } else if !std::path::Path::new("/dev/fuse").exists() {
        Some("fuse: device not found")
    } else if !has(": <>/dev/fuse") {
        Some("fuse: failed to open /dev/fuse: Permission denied")
    } else {
        None
    }
}

/// Storage on an overlayfs (as in a container's own filesystem): native overlay cannot work
/// there. The script probes what the build would really mount (fuse-overlayfs, when installed,
/// needs `/dev/fuse`), says why in one line and builds with vfs. Passes with and without
/// fuse-overlayfs installed; `make test` leaves that to the machine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlay_storage_on_an_overlayfs_falls_back_to_vfs() {
    require_build_env();
    let lab = Lab::new(false).await;
    let base = lab.context_dir("overlayfs");
    for sub in ["lower", "upper", "work", "merged"] {
        std::fs::create_dir_all(base.join(sub)).unwrap();
    }
    let mounted = Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o"])
        .arg(format!(
            "lowerdir={},upperdir={},workdir={}",
            base.join("lower").display(),
            base.join("upper").display(),
            base.join("work").display()
        ))
        .arg(base.join("merged"))
        .status()
        .unwrap_or_else(|e| panic!("cannot run `mount`: {e}"));
    assert!(
        mounted.success(),
        "cannot mount an overlayfs for the storage (`mount -t overlay` failed: {mounted}); this test needs root with CAP_SYS_ADMIN"
    );
    let _unmount = Unmount(base.join("merged"));
    let storage = base.join("merged/storage");
    std::fs::create_dir_all(&storage).unwrap();
    std::os::unix::fs::chown(&storage, Some(lab.user.uid), Some(lab.user.gid)).unwrap();

    let context = lab.example_context();
    let image = format!(
        "{}/octo/fallback:{}",
        lab.registry.host,
        reference::random_tag()
    );
    let scratch = Scratch::new(Some(&lab.user)).unwrap();
    let spec = BuildSpec {
        context_dir: context.to_str().unwrap().into(),
        dockerfile: "Dockerfile".into(),
        image: image.clone(),
        push: true,
        build_args: vec![("BASE_IMAGE".into(), lab.base.clone())],
        storage: Storage {
            root: format!("{}/root", storage.display()),
            runroot: scratch.join("run").unwrap(),
            driver: StorageDriver::Overlay,
        },
        build_options: lab.options(Stage::Build),
        push_options: lab.options(Stage::Push),
        auth_source: None,
        cert_dir: None,
        work_dir: scratch.join("work").unwrap(),
        result_path: scratch.join("result").unwrap(),
        wait_for: None,
        extra_tags: Vec::new(),
        cache: None,
    };
    let executor = LocalExecutor {
        user: Some(lab.user.clone()),
        timeout: None,
    };
    let mut log = Vec::new();
    let result = executor.run(&spec, &mut log).await;
    let log = String::from_utf8_lossy(&log);
    let outcome = result.unwrap_or_else(|e| panic!("{e}\n{log}"));
    let fallback: Vec<&str> = log.lines().filter(|l| l.contains("falling back")).collect();
    eprintln!("fallback: {fallback:?}");
    match overlay_on_overlayfs_fails_with(&lab.user) {
        Some(why) => {
            assert!(
                fallback.len() == 1
                    && fallback[0].starts_with(&format!(
                        "[runner-k8s-hook] overlay storage does not work here, falling back to vfs: {why}"
                    )),
                "one fallback line naming `{why}`:\n{log}"
            );
            assert!(log.contains("storage driver: vfs"), "{log}");
        }
        None => {
            assert!(fallback.is_empty(), "{log}");
            assert!(log.contains("storage driver: overlay"), "{log}");
        }
    }
    let tag = image.rsplit_once(':').unwrap().1;
    assert_eq!(
        lab.registry.digest("octo/fallback", tag),
        outcome.digest.unwrap().to_string()
    );
}

struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// The `build` subcommand end to end: one line on stdout, the pinned reference; the log on
/// stderr; options from the hook's variables.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_builds_pushes_and_prints_the_pinned_reference() {
    require_build_env();
    let lab = Lab::new(false).await;
    let context = lab.example_context();
    let repository = format!("{}/octo/cli-hello", lab.registry.host);
    let output = Command::new(HOOK)
        .args(["build", "--context"])
        .arg(&context)
        .args([
            "--image",
            &repository,
            "--build-arg",
            &format!("BASE_IMAGE={}", lab.base),
        ])
        .args(["--user", &lab.user.name, "--executor", "local"])
        .env(
            "ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_BUILD_OPTIONS",
            "--tls-verify=false",
        )
        .env(
            "ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_PUSH_OPTIONS",
            "--tls-verify=false",
        )
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let line = stdout.trim();
    let (image, digest) = line.split_once('@').expect("reference@digest");
    let tag = image
        .strip_prefix(&format!("{repository}:"))
        .expect("the repository with a tag");
    assert!(
        reference::is_tag(tag) && tag.len() == reference::TAG_LEN,
        "random tag: {tag}"
    );
    assert_eq!(lab.registry.digest("octo/cli-hello", tag), digest);
    assert!(stderr.contains("STEP 1/4: FROM"), "{stderr}");
}

/// A forbidden option fails in the configuration, before anything runs, without echoing it.
#[test]
fn cli_refuses_a_forbidden_option_before_building() {
    let output = Command::new(HOOK)
        .args([
            "build",
            "--context",
            "/nonexistent",
            "--image",
            "127.0.0.1:1/x",
        ])
        .env(
            "ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_PUSH_OPTIONS",
            "--creds=ci:s3cret",
        )
        // In a workflow (the JavaScript action), errors are annotations.
        .env("GITHUB_ACTIONS", "true")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(output.stdout.is_empty());
    assert!(
        stderr.starts_with("::error::environment variable `ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_PUSH_OPTIONS` has options that cannot be used\ncaused by: `--creds` is not an allowed push option; allowed: "),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "\nhint: registry credentials and certificates come from the registry Secret"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("s3cret"), "{stderr}");
}

/// Usage errors name the problem and show the usage.
#[test]
fn cli_usage_errors() {
    let output = Command::new(HOOK)
        .args(["build", "--image", "127.0.0.1:1/x"])
        .env_remove("GITHUB_ACTIONS")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    // On a terminal, plain text.
    assert!(
        stderr.starts_with("error: `--context` is required\n"),
        "{stderr}"
    );
    assert!(
        stderr.contains("hint: usage: runner-k8s-hook build --context DIR"),
        "{stderr}"
    );
    let output = Command::new(HOOK)
        .args(["build", "--help"])
        .output()
        .unwrap();
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("usage: runner-k8s-hook build"));
}

/// Two jobs building the same content at once (the same build key) both succeed, each with its
/// own image under its random tag, and the key's tag names one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_builds_of_one_key_both_succeed() {
    require_build_env();
    let lab = Lab::new(false).await;
    let context = lab.example_context();
    let repository = format!("{}/octo/hello-action", lab.registry.host);
    let key_tag = format!("key-{}", "7".repeat(64));
    let key_ref = format!("{repository}:{key_tag}");
    let tags = [reference::random_tag(), reference::random_tag()];
    let images: Vec<String> = tags.iter().map(|t| format!("{repository}:{t}")).collect();
    let with_key = |spec: &mut BuildSpec| spec.extra_tags = vec![key_ref.clone()];
    let base = [("BASE_IMAGE", lab.base.as_str())];
    let (one, two) = tokio::join!(
        lab.build_tweaked(
            &context,
            "Dockerfile",
            &images[0],
            &base,
            StorageDriver::Overlay,
            Auth::Good,
            &with_key
        ),
        lab.build_tweaked(
            &context,
            "Dockerfile",
            &images[1],
            &base,
            StorageDriver::Overlay,
            Auth::Good,
            &with_key
        ),
    );
    let mut digests = Vec::new();
    for ((result, log), tag) in [one, two].into_iter().zip(&tags) {
        let outcome = result.unwrap_or_else(|e| panic!("{e}\n{log}"));
        let digest = outcome.digest.unwrap().to_string();
        assert_eq!(lab.registry.digest("octo/hello-action", tag), digest);
        assert!(log.contains(&format!("also pushed {key_ref}")), "{log}");
        digests.push(digest);
    }
    let key_digest = lab.registry.digest("octo/hello-action", &key_tag);
    assert!(
        digests.contains(&key_digest),
        "{key_digest} is one of {digests:?}"
    );
    let output = lab.run_action(&key_ref, "both");
    assert!(output.contains("Hello, both!"), "{output}");
}

/// A change in the last layer, built in a fresh store (as a new build pod is) with the registry
/// cache, takes the earlier layers from the cache; without the cache every step runs again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_layer_change_rebuilds_fewer_steps_with_the_registry_cache() {
    require_build_env();
    let lab = Lab::new(false).await;
    let context = lab.context_dir("cached");
    std::fs::write(
        context.join("Dockerfile"),
        format!(
            "FROM {}\nRUN mkdir -p /data && for i in 1 2 3 4; do head -c 200000 /dev/urandom > /data/f$i; done\nCOPY early.txt /early.txt\nCOPY late.txt /late.txt\n",
            lab.base
        ),
    )
    .unwrap();
    std::fs::write(context.join("early.txt"), "early\n").unwrap();
    std::fs::write(context.join("late.txt"), "one\n").unwrap();
    for name in ["Dockerfile", "early.txt", "late.txt"] {
        set_mode(&context.join(name), 0o644);
    }
    let cache = format!("{}/octo/cached/cache", lab.registry.host);
    let with_cache = |spec: &mut BuildSpec| spec.cache = Some(cache.clone());
    let image = || {
        format!(
            "{}/octo/cached:{}",
            lab.registry.host,
            reference::random_tag()
        )
    };
    let build = |tweak: &'static str| {
        let image = image();
        let context = context.clone();
        let lab = &lab;
        let with_cache = &with_cache;
        async move {
            let no_tweak = |_: &mut BuildSpec| {};
            let tweak: &(dyn Fn(&mut BuildSpec) + Sync) = if tweak == "cache" {
                with_cache
            } else {
                &no_tweak
            };
            let (result, log) = lab
                .build_tweaked(
                    &context,
                    "Dockerfile",
                    &image,
                    &[],
                    StorageDriver::Overlay,
                    Auth::Good,
                    tweak,
                )
                .await;
            let outcome = result.unwrap_or_else(|e| panic!("{e}\n{log}"));
            (outcome, log)
        }
    };

    let (cold, log) = build("cache").await;
    assert_eq!(
        cold.cache,
        Some(runner_k8s_hook::image::CacheUse {
            reused: 0,
            steps: 4
        }),
        "{log}"
    );
    assert!(log.contains("Pushing cache"), "the cache is filled: {log}");

    std::fs::write(context.join("late.txt"), "two\n").unwrap();
    let (warm, log) = build("cache").await;
    let warm_use = warm.cache.unwrap();
    assert_eq!(warm_use.steps, 4);
    assert!(
        warm_use.reused >= 2,
        "the RUN and the early COPY come from the cache: {warm_use:?}\n{log}"
    );
    assert_eq!(
        log.matches("--> Using cache").count(),
        warm_use.reused,
        "{log}"
    );

    std::fs::write(context.join("late.txt"), "three\n").unwrap();
    let (uncached, log) = build("none").await;
    let uncached_use = uncached.cache.unwrap();
    assert_eq!(
        uncached_use.reused, 0,
        "without the cache every step runs: {log}"
    );
    assert!(warm_use.reused > uncached_use.reused);
}
