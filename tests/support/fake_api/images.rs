//! The node's image store: what a reference resolves to (entrypoint, cmd, env, working dir and a
//! root filesystem), and how a reference is normalised the way containerd does
//! (`docker.io/library/` and `:latest` defaults, `github.com/distribution/reference`
//! `ParseNormalizedNamed`). An image that is not registered fails to pull.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

/// What an image provides to a container, as its OCI config would.
#[derive(Clone, Debug, Default)]
pub struct ImageSpec {
    /// `Entrypoint` of the image config.
    pub entrypoint: Vec<String>,
    /// `Cmd` of the image config.
    pub cmd: Vec<String>,
    /// `Env` of the image config, applied before the container's own env.
    pub env: Vec<(String, String)>,
    /// `WorkingDir` of the image config (`/` when unset).
    pub working_dir: Option<String>,
    /// Root filesystem; `None` is the host's `/`, read-only.
    pub rootfs: Option<PathBuf>,
    /// The pull needs an `imagePullSecrets` entry whose docker config has credentials for the
    /// image's registry host (the hook's registry secret); otherwise the pull is denied.
    pub requires_auth: bool,
}

impl ImageSpec {
    /// The host's root filesystem with a `Cmd`, no entrypoint.
    pub fn host(cmd: &[&str]) -> Self {
        Self {
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            env: vec![(
                "PATH".to_string(),
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
            )],
            ..Self::default()
        }
    }

    pub fn with_entrypoint(mut self, entrypoint: &[&str]) -> Self {
        self.entrypoint = entrypoint.iter().map(|s| s.to_string()).collect();
        self
    }

    pub fn with_env(mut self, key: &str, value: &str) -> Self {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    pub fn with_working_dir(mut self, dir: &str) -> Self {
        self.working_dir = Some(dir.to_string());
        self
    }

    pub fn with_rootfs(mut self, rootfs: impl Into<PathBuf>) -> Self {
        self.rootfs = Some(rootfs.into());
        self
    }

    pub fn requiring_auth(mut self) -> Self {
        self.requires_auth = true;
        self
    }
}

/// Registered images and scripted pull failures. Reached through `FakeCluster::images()`.
#[derive(Default)]
pub struct Images {
    images: Mutex<HashMap<String, ImageSpec>>,
    /// Pull hosts backed by a real registry: `(pull host, registry address, what every image
    /// there runs as)`.
    registries: Mutex<Vec<(String, String, ImageSpec)>>,
}

impl Images {
    /// Make `reference` pullable. Any spelling that normalises the same (`busybox`,
    /// `busybox:latest`, `docker.io/library/busybox:latest`) then resolves to it.
    pub fn register(&self, reference: &str, spec: ImageSpec) {
        self.images
            .lock()
            .expect("images lock")
            .insert(normalize(reference), spec);
    }

    /// Register `reference` as the host root filesystem with `cmd` as its `Cmd`.
    pub fn register_host(&self, reference: &str, cmd: &[&str]) {
        self.register(reference, ImageSpec::host(cmd));
    }

    /// Register the images tests commonly name, all backed by the host root (Debian): their
    /// entrypoint/cmd mirror the real images' configs.
    pub fn register_common(&self) {
        for reference in ["busybox", "busybox:1.36", "alpine", "alpine:3.20"] {
            self.register_host(reference, &["sh"]);
        }
        for reference in [
            "ubuntu:22.04",
            "ubuntu:24.04",
            "debian:bookworm",
            "debian:12",
        ] {
            self.register_host(reference, &["bash"]);
        }
        self.register_host("node:20", &["node"]);
        self.register(
            "ghcr.io/actions/actions-runner:latest",
            ImageSpec::host(&["bash"]).with_working_dir("/home/runner"),
        );
    }

    pub fn unregister(&self, reference: &str) {
        self.images
            .lock()
            .expect("images lock")
            .remove(&normalize(reference));
    }

    /// Serve `pull_host` from the real registry at `registry` (`127.0.0.1:<port>`, plain HTTP),
    /// as a kubelet pulling from it would: `<pull_host>/<repository>[:tag]@<digest>` resolves to
    /// `spec` exactly when the registry has that manifest; a digest it does not have does not
    /// pull. A build pushed to the registry is then runnable by digest, and only then.
    pub fn serve_from_registry(&self, pull_host: &str, registry: &str, spec: ImageSpec) {
        self.registries.lock().expect("registries lock").push((
            pull_host.to_owned(),
            registry.to_owned(),
            spec,
        ));
    }

    /// Resolve a reference: exact (with digest), then the same repository:tag without the
    /// digest, then repository@digest without the tag, then a registry-backed pull host.
    pub fn lookup(&self, reference: &str) -> Option<ImageSpec> {
        if let Some(spec) = self.lookup_registered(reference) {
            return Some(spec);
        }
        let registries = self.registries.lock().expect("registries lock").clone();
        registries
            .into_iter()
            .find_map(|(pull_host, registry, spec)| {
                let rest = reference.strip_prefix(&format!("{pull_host}/"))?;
                let (name_tag, digest) = rest.split_once('@')?;
                let (repository, _) = split_tag(name_tag);
                let repository = match pull_host.split_once('/') {
                    Some((_, path)) => format!("{path}/{repository}"),
                    None => repository.to_owned(),
                };
                has_manifest(&registry, &repository, digest).then_some(spec)
            })
    }

    fn lookup_registered(&self, reference: &str) -> Option<ImageSpec> {
        let images = self.images.lock().expect("images lock");
        let normalized = normalize(reference);
        if let Some(spec) = images.get(&normalized) {
            return Some(spec.clone());
        }
        if let Some((name_tag, digest)) = normalized.split_once('@') {
            if let Some(spec) = images.get(name_tag) {
                return Some(spec.clone());
            }
            let (name, _) = split_tag(name_tag);
            return images.get(&format!("{name}@{digest}")).cloned();
        }
        None
    }
}

/// Whether the registry at `registry` has the manifest `repository@digest`: one HEAD request over
/// plain HTTP/1.0, blocking (a pull is a blocking step of the kubelet too).
fn has_manifest(registry: &str, repository: &str, digest: &str) -> bool {
    use std::io::{Read as _, Write as _};
    let Ok(mut stream) = std::net::TcpStream::connect(registry) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(10)));
    let request = format!(
        "HEAD /v2/{repository}/manifests/{digest} HTTP/1.0\r\nHost: {registry}\r\nAccept: application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json\r\n\r\n"
    );
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200")
}

/// Split `name:tag` at the tag's colon (not a registry port's).
fn split_tag(reference: &str) -> (&str, Option<&str>) {
    let last_slash = reference.rfind('/').map_or(0, |i| i + 1);
    match reference[last_slash..].rfind(':') {
        Some(i) => (
            &reference[..last_slash + i],
            Some(&reference[last_slash + i + 1..]),
        ),
        None => (reference, None),
    }
}

/// `docker.io/library/` for bare names, `:latest` when there is neither tag nor digest.
pub fn normalize(reference: &str) -> String {
    let (without_digest, digest) = match reference.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (reference, None),
    };
    let (name, tag) = split_tag(without_digest);
    let first = name.split('/').next().unwrap_or_default();
    let has_registry =
        name.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    let mut full = if has_registry {
        name.to_string()
    } else if name.contains('/') {
        format!("docker.io/{name}")
    } else {
        format!("docker.io/library/{name}")
    };
    match (tag, digest) {
        (Some(tag), _) => {
            full.push(':');
            full.push_str(tag);
        }
        (None, None) => full.push_str(":latest"),
        (None, Some(_)) => {}
    }
    if let Some(digest) = digest {
        full.push('@');
        full.push_str(digest);
    }
    full
}

/// The registry host of a normalised reference (`docker.io`, `localhost:5000`, ...).
pub fn registry_host(reference: &str) -> String {
    normalize(reference)
        .split('/')
        .next()
        .unwrap_or_default()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_like_containerd() {
        assert_eq!(normalize("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(normalize("org/app:1"), "docker.io/org/app:1");
        assert_eq!(
            normalize("localhost:5000/a/b@sha256:00"),
            "localhost:5000/a/b@sha256:00"
        );
        assert_eq!(registry_host("ghcr.io/o/r:t"), "ghcr.io");
    }
}
