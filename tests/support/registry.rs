//! A real OCI registry for the build tests: Debian's `docker-registry` (distribution 2.8) on
//! 127.0.0.1 with a port chosen at run time, plain HTTP or TLS (a server certificate signed by a private CA, made
//! with `openssl`) with basic auth (`htpasswd -B`: distribution accepts only bcrypt). Each
//! [`Registry`] is stopped (killed by PID) when dropped, also when a test panics.
//!
//! Also here: the unprivileged build user with subordinate id ranges ([`build_user`]), the
//! busybox base image built from `busybox-static` without internet ([`busybox_context`],
//! docs/developer/testing.md), and the registry's own answer for a tag's digest ([`Registry::digest`]).
//! The recipe and its pitfalls are in docs/developer/testing.md (Real build tests).

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use base64::Engine as _;

/// The unprivileged user the build tests run Buildah as.
pub const BUILD_USER: &str = "rk8sbuild";

/// Basic-auth user and password of the TLS registry.
pub const REGISTRY_USER: &str = "ciuser";
/// See [`REGISTRY_USER`].
pub const REGISTRY_PASSWORD: &str = "cipass";

/// Every manifest type buildah may push. Without it the registry answers 404 for OCI
/// manifests and converts Docker v2s2 ones to schema1 with another digest (distribution's manifest negotiation).
pub const MANIFEST_ACCEPT: &str = "Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

/// Tools the build tests need, with the package that provides each.
const TOOLS: &[(&str, &str)] = &[
    ("buildah", "buildah"),
    ("docker-registry", "docker-registry"),
    ("newuidmap", "uidmap"),
    ("htpasswd", "apache2-utils"),
    ("openssl", "openssl"),
    ("curl", "curl"),
    ("runuser", "util-linux"),
];

/// Fail with the install command when a tool is missing: `make test` installs them
/// (`scripts/install-deps.sh test`), so a missing one is a setup error, not a skip.
pub fn require_tools() {
    let missing: Vec<&str> = TOOLS
        .iter()
        .filter(|(tool, _)| {
            !Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .map(|(_, package)| *package)
        .collect();
    assert!(
        missing.is_empty(),
        "the build tests need these packages: {missing:?}; run `scripts/install-deps.sh test` (as root)"
    );
}

/// A running registry.
pub struct Registry {
    child: Child,
    /// `127.0.0.1:<port>`.
    pub host: String,
    /// TLS and basic auth, when on.
    pub tls: Option<Tls>,
    dir: tempfile::TempDir,
}

/// The client side of the TLS registry.
pub struct Tls {
    /// A directory holding only `ca.crt` (Buildah's `--cert-dir`).
    pub cert_dir: PathBuf,
    /// A docker `config.json` with the right credentials for the registry.
    pub auth_file: PathBuf,
    /// The same with a wrong password.
    pub bad_auth_file: PathBuf,
}

impl Registry {
    /// A registry on plain HTTP.
    pub fn plain() -> Registry {
        Registry::start(false, None)
    }

    /// A registry on HTTPS with a certificate from a private CA and basic auth.
    pub fn tls() -> Registry {
        Registry::start(true, None)
    }

    /// A second registry (plain HTTP) serving this one's images read-only, as a registry in
    /// maintenance mode does: reads work, every write is refused (`405 UNSUPPORTED`).
    pub fn read_only_view(&self) -> Registry {
        assert!(
            self.tls.is_none(),
            "read-only views are of plain registries"
        );
        Registry::start(false, Some(self.dir.path().join("data")))
    }

    /// `data`: serve this directory read-only instead of a new one.
    fn start(tls: bool, data: Option<PathBuf>) -> Registry {
        require_tools();
        let dir = tempfile::tempdir().expect("temporary directory");
        let root = dir.path();
        // Readable by the build user (the CA and auth files are copied for it by the CLI, but
        // tests hand paths under here to the executor too).
        set_mode(root, 0o755);
        std::fs::create_dir_all(root.join("data")).unwrap();
        let mut extra = String::new();
        let tls_files = if tls {
            let pki = root.join("pki");
            let certs = root.join("certs");
            std::fs::create_dir_all(&pki).unwrap();
            std::fs::create_dir_all(&certs).unwrap();
            // A private CA and a server certificate it signed, as a real private registry has:
            // rustls (the hook's registry client) refuses a self-signed CA certificate used as
            // the server's own, where Buildah's Go TLS accepts it.
            run(Command::new("openssl")
                .args([
                    "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                ])
                .args(["-subj", "/CN=runner-k8s-hook test CA"])
                .arg("-keyout")
                .arg(pki.join("ca.key"))
                .arg("-out")
                .arg(pki.join("ca.crt")));
            run(Command::new("openssl")
                .args([
                    "req",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-subj",
                    "/CN=127.0.0.1",
                ])
                .arg("-keyout")
                .arg(pki.join("tls.key"))
                .arg("-out")
                .arg(pki.join("tls.csr")));
            std::fs::write(
                pki.join("server.ext"),
                "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
            )
            .unwrap();
            run(Command::new("openssl")
                .args(["x509", "-req", "-days", "2", "-CAcreateserial"])
                .arg("-in")
                .arg(pki.join("tls.csr"))
                .arg("-CA")
                .arg(pki.join("ca.crt"))
                .arg("-CAkey")
                .arg(pki.join("ca.key"))
                .arg("-extfile")
                .arg(pki.join("server.ext"))
                .arg("-out")
                .arg(pki.join("tls.crt")));
            // Only `ca.crt` in the cert dir: Buildah reads any `*.key` there as a client key.
            std::fs::copy(pki.join("ca.crt"), certs.join("ca.crt")).unwrap();
            set_mode(&certs, 0o755);
            set_mode(&certs.join("ca.crt"), 0o644);
            let htpasswd =
                run(Command::new("htpasswd").args(["-Bbn", REGISTRY_USER, REGISTRY_PASSWORD]));
            std::fs::write(pki.join("htpasswd"), htpasswd).unwrap();
            extra = format!(
                "  tls: {{certificate: {crt}, key: {key}}}\nauth:\n  htpasswd: {{realm: ci-registry, path: {htpasswd}}}\n",
                crt = pki.join("tls.crt").display(),
                key = pki.join("tls.key").display(),
                htpasswd = pki.join("htpasswd").display(),
            );
            Some(certs)
        } else {
            None
        };

        // The port is found free by binding port 0; another process could take it before the
        // registry binds it, so a registry that does not come up is retried on a new port.
        for _attempt in 0..5 {
            let port = free_port();
            let host = format!("127.0.0.1:{port}");
            let config = root.join("config.yml");
            let read_only = if data.is_some() {
                "  maintenance: {readonly: {enabled: true}}\n"
            } else {
                ""
            };
            std::fs::write(
                &config,
                format!(
                    "version: 0.1\nlog: {{level: warn, accesslog: {{disabled: true}}}}\nstorage:\n  filesystem: {{rootdirectory: {data}}}\n  delete: {{enabled: true}}\n{read_only}http:\n  addr: {host}\n  secret: build-tests-only\n{extra}",
                    data = data.as_deref().unwrap_or(&root.join("data")).display(),
                ),
            )
            .unwrap();
            let log = std::fs::File::create(root.join("registry.log")).unwrap();
            let mut child = Command::new("docker-registry")
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("docker-registry starts");
            if wait_listening(&host, &mut child) {
                let tls = tls_files.map(|cert_dir| {
                    let auth_file = root.join("auth.json");
                    let bad_auth_file = root.join("bad-auth.json");
                    std::fs::write(
                        &auth_file,
                        auth_json(&host, REGISTRY_USER, REGISTRY_PASSWORD),
                    )
                    .unwrap();
                    std::fs::write(&bad_auth_file, auth_json(&host, REGISTRY_USER, "wrong"))
                        .unwrap();
                    Tls {
                        cert_dir,
                        auth_file,
                        bad_auth_file,
                    }
                });
                return Registry {
                    child,
                    host,
                    tls,
                    dir,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!(
            "docker-registry did not start; its log:\n{}",
            std::fs::read_to_string(root.join("registry.log")).unwrap_or_default()
        );
    }

    /// The registry's `Docker-Content-Digest` for `repository:tag`, asked over its HTTP API
    /// with the manifest Accept list (and the CA and credentials for the TLS registry).
    pub fn digest(&self, repository: &str, tag: &str) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://{}/v2/{repository}/manifests/{tag}", self.host);
        let mut curl = Command::new("curl");
        curl.args(["-fsS", "-o", "/dev/null", "-D", "-", "-H", MANIFEST_ACCEPT]);
        if let Some(tls) = &self.tls {
            curl.arg("--cacert")
                .arg(tls.cert_dir.join("ca.crt"))
                .args(["-u", &format!("{REGISTRY_USER}:{REGISTRY_PASSWORD}")]);
        }
        let headers = run(curl.arg(&url));
        headers
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("docker-content-digest")
                    .then(|| value.trim().to_owned())
            })
            .unwrap_or_else(|| panic!("no Docker-Content-Digest from {url}:\n{headers}"))
    }

    /// Push a minimal image (an OCI manifest whose config names `marker`, no layers) as
    /// `repository:tag` over the HTTP API, and return its digest: enough for tests of tags and
    /// manifests, where building with Buildah would only cost time.
    pub fn put_image(&self, repository: &str, tag: &str, marker: &str) -> String {
        use sha2::Digest as _;
        let config = format!(
            "{{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{{\"Labels\":{{\"marker\":\"{marker}\"}}}},\"rootfs\":{{\"type\":\"layers\",\"diff_ids\":[]}}}}"
        );
        let hex = |bytes: &[u8]| -> String {
            sha2::Sha256::digest(bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect()
        };
        let config_digest = format!("sha256:{}", hex(config.as_bytes()));
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let base = format!("{scheme}://{}/v2/{repository}", self.host);
        let curl = |args: &[&str]| {
            let mut command = Command::new("curl");
            command.args(["-fsS"]);
            if let Some(tls) = &self.tls {
                command
                    .arg("--cacert")
                    .arg(tls.cert_dir.join("ca.crt"))
                    .args(["-u", &format!("{REGISTRY_USER}:{REGISTRY_PASSWORD}")]);
            }
            run(command.args(args))
        };
        // Monolithic blob upload: POST, then PUT to the returned location with the digest.
        let headers = curl(&[
            "-X",
            "POST",
            "-D",
            "-",
            "-o",
            "/dev/null",
            &format!("{base}/blobs/uploads/"),
        ]);
        let location = headers
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("location")
                    .then(|| value.trim().to_owned())
            })
            .expect("the registry answers an upload with a Location");
        let location = if location.starts_with("http") {
            location
        } else {
            format!("{scheme}://{}{location}", self.host)
        };
        let separator = if location.contains('?') { '&' } else { '?' };
        curl(&[
            "-X",
            "PUT",
            "-H",
            "Content-Type: application/octet-stream",
            "--data-binary",
            &config,
            &format!("{location}{separator}digest={config_digest}"),
        ]);
        let manifest = format!(
            "{{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"config\":{{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"{config_digest}\",\"size\":{}}},\"layers\":[]}}",
            config.len()
        );
        curl(&[
            "-X",
            "PUT",
            "-H",
            "Content-Type: application/vnd.oci.image.manifest.v1+json",
            "--data-binary",
            &manifest,
            &format!("{base}/manifests/{tag}"),
        ]);
        format!("sha256:{}", hex(manifest.as_bytes()))
    }

    /// A directory next to the registry's files, for the test's own use.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A docker `config.json` with basic-auth credentials for `host`.
pub fn auth_json(host: &str, user: &str, password: &str) -> String {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("{{\"auths\":{{\"{host}\":{{\"auth\":\"{auth}\"}}}}}}\n")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port on 127.0.0.1")
        .port()
}

/// Wait until `host` accepts connections (the registry answers within about 50 ms,
/// docs/developer/testing.md), or the process exits.
fn wait_listening(host: &str, child: &mut Child) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if TcpStream::connect(host).is_ok() {
            return true;
        }
        if child.try_wait().ok().flatten().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Run a command, panic with its stderr on failure, return its stdout.
pub fn run(command: &mut Command) -> String {
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Set a file's mode bits.
pub fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

/// The build user, created once per machine (idempotent) with subordinate uid and gid ranges:
/// without them `RUN` steps fail under chroot isolation (Buildah's single-uid mode).
/// Needs root, as CI has.
pub fn build_user() -> &'static str {
    static USER: OnceLock<()> = OnceLock::new();
    USER.get_or_init(|| {
        let exists = Command::new("id")
            .args(["-u", BUILD_USER])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !exists {
            run(Command::new("useradd").args(["--create-home", "--shell", "/bin/sh", BUILD_USER]));
        }
        // `useradd` gives new users ranges where /etc/login.defs says so; add them otherwise
        // (a range of 65536 ids above the ones `useradd` hands out by default).
        for (file, flag) in [
            ("/etc/subuid", "--add-subuids"),
            ("/etc/subgid", "--add-subgids"),
        ] {
            let has_range = std::fs::read_to_string(file)
                .unwrap_or_default()
                .lines()
                .any(|line| line.starts_with(&format!("{BUILD_USER}:")));
            if !has_range {
                run(Command::new("usermod").args([flag, "700000-765535", BUILD_USER]));
            }
        }
    });
    BUILD_USER
}

/// Lay out a busybox base image's context in `dir`: a rootfs with the static busybox and its
/// applet links, and a `Containerfile` (`FROM scratch`, `COPY rootfs/ /`). No `RUN` step, so
/// it builds in any mode, without internet.
pub fn busybox_context(dir: &Path) {
    let rootfs = dir.join("rootfs");
    for sub in ["bin", "etc", "tmp", "root", "proc", "sys", "dev"] {
        std::fs::create_dir_all(rootfs.join(sub)).unwrap();
    }
    set_mode(&rootfs.join("tmp"), 0o1777);
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("busybox-static is installed (`scripts/install-deps.sh test`)");
    std::fs::copy(busybox, rootfs.join("bin/busybox")).unwrap();
    let applets = run(Command::new(busybox).arg("--list"));
    for applet in applets.lines().filter(|a| !a.is_empty() && *a != "busybox") {
        let _ = std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet));
    }
    std::fs::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
    )
    .unwrap();
    std::fs::write(rootfs.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").unwrap();
    std::fs::write(
        dir.join("Containerfile"),
        "FROM scratch\nCOPY rootfs/ /\nENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\nCMD [\"/bin/sh\"]\n",
    )
    .unwrap();
}

/// Copy a directory tree (regular files, directories and symlinks).
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            copy_tree(&entry.path(), &target);
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(entry.path()).unwrap(), &target).unwrap();
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}
