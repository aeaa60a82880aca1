//! The runner image (`images/runner/Containerfile`, docs/user/install-arc.md) built for real with
//! the host's Buildah, on a stand-in for `ghcr.io/actions/actions-runner` (no registry is
//! reachable): a scratch image with busybox-static, the C library the binary links against,
//! a `runner` user (uid 1001) owning `/home/runner`, and `USER 1001`, as the real base has.
//!
//! The image is built for this machine's platform with the test's binary, and for the other
//! platform (amd64 or arm64) with a marker file in place of the other asset, which shows that
//! each platform picks `runner-k8s-hook-<x86_64|aarch64>-linux` (the Containerfile has no RUN,
//! so the foreign build needs no emulation). Then, in the native image:
//! - the shims and the binary at `/home/runner/k8s/` and `/home/runner/k8s-novolume/`, regular
//!   files, mode 0755, owned by root, the binary byte for byte the one built;
//! - the base untouched: `/home/runner` still uid 1001's, the image still runs as uid 1001;
//! - `index.js` at both paths, run by the host's node on the image's files (the stand-in base
//!   has no node), starts the binary beside it: empty stdin gets the binary's own error;
//! - `index.sh` at both paths, run with the image's BusyBox `sh -e` inside the image as uid 1001
//!   (`buildah run`), the same.
//!
//! Buildah runs rootful with a store of its own (vfs, in a temporary directory), removed at the
//! end. Needs root and `buildah` (`scripts/install-deps.sh test`); anywhere else the test fails
//! with the reason, as the real build tests do (docs/developer/testing.md).

use std::fs;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use runner_k8s_hook::image::local::running_as_root;
use tempfile::TempDir;

use crate::support::registry::{busybox_context, run, set_mode};

const HOOK: &str = env!("CARGO_BIN_EXE_runner-k8s-hook");
const RUNNER_UID: u32 = 1001;
/// The shims and the binary, at both paths the chart launches.
const FILES: &[&str] = &[
    "/home/runner/k8s/index.js",
    "/home/runner/k8s/index.sh",
    "/home/runner/k8s/runner-k8s-hook",
    "/home/runner/k8s-novolume/index.js",
    "/home/runner/k8s-novolume/index.sh",
    "/home/runner/k8s-novolume/runner-k8s-hook",
];
/// The binary's answer to an empty stdin (tests/it/cli.rs): it ran.
const EMPTY_STDIN: &str =
    "::error::no request on stdin: the runner writes one JSON line and closes stdin";

fn repo_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(name)
}

/// A platform: Docker's architecture name (`TARGETARCH`) and the release asset's.
struct Platform {
    docker: &'static str,
    asset: &'static str,
}

const AMD64: Platform = Platform {
    docker: "amd64",
    asset: "x86_64",
};
const ARM64: Platform = Platform {
    docker: "arm64",
    asset: "aarch64",
};

/// This machine's platform and the other one.
fn platforms() -> (Platform, Platform) {
    match std::env::consts::ARCH {
        "x86_64" => (AMD64, ARM64),
        "aarch64" => (ARM64, AMD64),
        other => panic!("the runner image is built for x86_64 and aarch64, not {other}"),
    }
}

/// Rootful Buildah with a store of its own. Dropping it removes its containers and images, then
/// the directory.
struct Buildah {
    dir: TempDir,
}

impl Buildah {
    fn new() -> Buildah {
        assert!(
            running_as_root(),
            "the runner image test needs root (rootful buildah with a store of its own); run it as root, as `make test` in CI does"
        );
        let found = Command::new("sh")
            .args(["-c", "command -v buildah"])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            found,
            "the runner image test needs buildah; run `scripts/install-deps.sh test` (as root)"
        );
        Buildah {
            dir: tempfile::tempdir().expect("temporary directory"),
        }
    }

    fn command(&self) -> Command {
        let mut command = Command::new("buildah");
        command
            .arg("--root")
            .arg(self.dir.path().join("root"))
            .arg("--runroot")
            .arg(self.dir.path().join("runroot"))
            .args(["--storage-driver", "vfs"])
            .env("BUILDAH_ISOLATION", "chroot");
        command
    }

    fn run(&self, args: &[&str]) -> String {
        run(self.command().args(args))
    }

    /// `buildah build --platform linux/<arch> --pull=never` of `containerfile` in `context`.
    fn build(&self, context: &Path, containerfile: &Path, arch: &str, tag: &str, args: &[String]) {
        let mut command = self.command();
        command
            .args(["build", "--quiet", "--pull=never"])
            .arg(format!("--platform=linux/{arch}"))
            .arg("--file")
            .arg(containerfile)
            .args(["--tag", tag]);
        for arg in args {
            command.args(["--build-arg", arg]);
        }
        command.arg(context);
        run(&mut command);
    }

    /// A working container of `image` and its root filesystem on this machine.
    fn mount(&self, image: &str) -> (String, PathBuf) {
        let container = self
            .run(&["from", "--pull=never", "--quiet", image])
            .trim()
            .to_owned();
        let root = PathBuf::from(self.run(&["mount", &container]).trim());
        (container, root)
    }
}

impl Drop for Buildah {
    fn drop(&mut self) {
        for args in [
            &["umount", "--all"][..],
            &["rm", "--all"],
            &["rmi", "--all", "--force"],
        ] {
            let _ = self
                .command()
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// The stand-in base: busybox-static (`support::registry::busybox_context`), the shared libraries
/// the test's binary needs (the real base is Ubuntu), a `runner` user and `/home/runner` of uid
/// 1001, `USER 1001`.
fn standin_base(dir: &Path) {
    busybox_context(dir);
    let rootfs = dir.join("rootfs");
    let ldd = run(Command::new("ldd").arg(HOOK));
    for line in ldd.lines() {
        // `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)` or `/lib64/ld-linux-x86-64.so.2 (0x...)`
        let path = line
            .split("=>")
            .last()
            .and_then(|rest| rest.split_whitespace().next())
            .filter(|p| p.starts_with('/'));
        if let Some(path) = path {
            let target = rootfs.join(path.trim_start_matches('/'));
            fs::create_dir_all(target.parent().unwrap()).unwrap();
            fs::copy(path, &target).unwrap_or_else(|e| panic!("copy {path}: {e}"));
        }
    }
    let passwd = fs::read_to_string(rootfs.join("etc/passwd")).unwrap();
    fs::write(
        rootfs.join("etc/passwd"),
        format!("{passwd}runner:x:{RUNNER_UID}:{RUNNER_UID}:runner:/home/runner:/bin/sh\n"),
    )
    .unwrap();
    let group = fs::read_to_string(rootfs.join("etc/group")).unwrap();
    fs::write(
        rootfs.join("etc/group"),
        format!("{group}runner:x:{RUNNER_UID}:\n"),
    )
    .unwrap();
    fs::create_dir_all(dir.join("home")).unwrap();
    fs::write(
        dir.join("Containerfile"),
        format!(
            "FROM scratch\nCOPY rootfs/ /\nCOPY --chown={RUNNER_UID}:{RUNNER_UID} home/ /home/runner/\nENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\nUSER {RUNNER_UID}\nWORKDIR /home/runner\n"
        ),
    )
    .unwrap();
}

/// The build context as the Containerfile expects it: `dist/` as in the repository, the
/// binaries in `bin/` under their release names (`--build-arg BINARIES=bin`).
fn image_context(dir: &Path, native: &Platform, foreign: &Platform) -> Vec<u8> {
    fs::create_dir_all(dir.join("dist")).unwrap();
    for shim in ["index.js", "index.sh"] {
        fs::copy(
            repo_file(&format!("dist/{shim}")),
            dir.join("dist").join(shim),
        )
        .unwrap();
    }
    // As git checks them out (0644 and 0755): the Containerfile sets the modes itself.
    set_mode(&dir.join("dist/index.js"), 0o644);
    fs::create_dir_all(dir.join("bin")).unwrap();
    // Stripped: the debug binary is 200 MB, its code alone about 35.
    let native_binary = dir.join(format!("bin/runner-k8s-hook-{}-linux", native.asset));
    run(Command::new("strip")
        .arg("-o")
        .arg(&native_binary)
        .arg(HOOK));
    set_mode(&native_binary, 0o644);
    fs::write(
        dir.join(format!("bin/runner-k8s-hook-{}-linux", foreign.asset)),
        foreign_marker(foreign),
    )
    .unwrap();
    fs::read(&native_binary).unwrap()
}

fn foreign_marker(platform: &Platform) -> String {
    format!("the {} release asset\n", platform.asset)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// What the hook prints when a shim started it with an empty stdin: exit 1, its own error first.
fn assert_reached_the_binary(what: &str, out: &Output) {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{what}: {stderr}");
    assert!(stderr.starts_with(EMPTY_STDIN), "{what}: {stderr}");
}

#[test]
fn runner_image_carries_the_hook_at_both_chart_paths() {
    let buildah = Buildah::new();
    let (native, foreign) = platforms();
    let work = tempfile::tempdir().unwrap();
    let base = work.path().join("base");
    standin_base(&base);
    for platform in [&native, &foreign] {
        buildah.build(
            &base,
            &base.join("Containerfile"),
            platform.docker,
            &format!("localhost/standin-runner:{}", platform.docker),
            &[],
        );
    }
    let context = work.path().join("context");
    let binary = image_context(&context, &native, &foreign);
    for platform in [&native, &foreign] {
        buildah.build(
            &context,
            &repo_file("images/runner/Containerfile"),
            platform.docker,
            &format!("localhost/runner-k8s-hook-runner:{}", platform.docker),
            &[
                format!("BASE=localhost/standin-runner:{}", platform.docker),
                "BINARIES=bin".to_owned(),
            ],
        );
    }

    // The foreign image: its own architecture, its own asset.
    let image = format!("localhost/runner-k8s-hook-runner:{}", foreign.docker);
    let arch = buildah.run(&["inspect", "--format", "{{.OCIv1.Architecture}}", &image]);
    assert_eq!(arch.trim(), foreign.docker);
    let (_, root) = buildah.mount(&image);
    for file in FILES.iter().filter(|f| f.ends_with("/runner-k8s-hook")) {
        assert_eq!(
            fs::read_to_string(root.join(&file[1..])).unwrap(),
            foreign_marker(&foreign),
            "{file} in the {} image",
            foreign.docker
        );
    }

    // The native image: files, modes, owners, the base untouched.
    let image = format!("localhost/runner-k8s-hook-runner:{}", native.docker);
    let user = buildah.run(&["inspect", "--format", "{{.OCIv1.Config.User}}", &image]);
    assert_eq!(user.trim(), RUNNER_UID.to_string(), "the image's user");
    let (container, root) = buildah.mount(&image);
    for file in FILES {
        let path = root.join(&file[1..]);
        let meta = fs::symlink_metadata(&path).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(meta.file_type().is_file(), "{file} is a regular file");
        assert_eq!(meta.mode() & 0o7777, 0o755, "{file}: mode");
        assert_eq!((meta.uid(), meta.gid()), (0, 0), "{file}: owner");
    }
    for dir in ["/home/runner/k8s", "/home/runner/k8s-novolume"] {
        let meta = fs::metadata(root.join(&dir[1..])).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o755, "{dir}: mode");
    }
    assert_eq!(
        fs::metadata(root.join("home/runner")).unwrap().uid(),
        RUNNER_UID,
        "/home/runner stays the runner's"
    );
    for dir in ["k8s", "k8s-novolume"] {
        let dist = root.join("home/runner").join(dir);
        assert_eq!(
            fs::read(dist.join("runner-k8s-hook")).unwrap(),
            binary,
            "{dir}: the binary"
        );
        for shim in ["index.js", "index.sh"] {
            assert_eq!(
                fs::read(dist.join(shim)).unwrap(),
                fs::read(repo_file(&format!("dist/{shim}"))).unwrap(),
                "{dir}/{shim}"
            );
        }

        // index.js: the host's node on the image's files finds the binary beside the shim.
        let out = Command::new(crate::action_js::node())
            .arg(dist.join("index.js"))
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .stdin(Stdio::null())
            .output()
            .expect("run node");
        assert_reached_the_binary(&format!("node {dir}/index.js"), &out);

        // index.sh: the image's BusyBox sh, inside the image, as the runner user.
        let script = format!("/home/runner/{dir}/index.sh");
        let out = buildah
            .command()
            .args(["run", "--isolation", "chroot", "--user"])
            .arg(format!("{RUNNER_UID}:{RUNNER_UID}"))
            .args([container.as_str(), "--", "sh", "-e", &script])
            .stdin(Stdio::null())
            .output()
            .expect("buildah run");
        assert_reached_the_binary(&format!("sh -e {script} in the image"), &out);
    }
}
