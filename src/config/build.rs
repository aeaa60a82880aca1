//! The variables of Dockerfile builds: registry, builder pod, Buildah options, limits.
//!
//! Owns [`BuildConfig`] and how each build variable is parsed; the hook's own variables are in
//! the parent module, which re-exports everything here. Like the parent, it reads no process
//! environment itself (it gets [`Vars`]) and checks values against the types of the layers that
//! use them (`image` for options and registry hosts, `spec` for the build pod's profile,
//! resources and CA).

use std::time::Duration;

use super::{ConfigError, Vars};
use crate::image::StorageDriver;
use crate::image::options::{self, Stage};
use crate::image::reference::RegistryHost;
use crate::spec::build_pod::{BuilderProfile, BuilderResources, RegistryCa};
use crate::spec::names::is_dns1123_subdomain;

/// Registry that built Dockerfile actions are pushed to and pulled from: a host with an optional
/// repository path prefix, e.g. `ghcr.io/owner` or `registry.ns.svc:5000/actions`. **Required**
/// for Dockerfile actions unless [`REGISTRY_HOST_PUSH`] is set. Default: none.
pub const REGISTRY_HOST: &str = "ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_REGISTRY_HOST";

/// Registry host (and path) the build pod pushes to, when it differs from the one nodes pull
/// from (pods resolve `registry.ns.svc:5000`, the kubelet pulls `localhost:30500`). Preferred
/// over [`REGISTRY_HOST`] for pushing. Default: [`REGISTRY_HOST`].
pub const REGISTRY_HOST_PUSH: &str = "ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_REGISTRY_HOST_PUSH";

/// Registry host (and path) the step pod's image is pulled from. Preferred over
/// [`REGISTRY_HOST`] for pulling. Default: [`REGISTRY_HOST`], else [`REGISTRY_HOST_PUSH`].
pub const REGISTRY_HOST_PULL: &str = "ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_REGISTRY_HOST_PULL";

/// Name of a `kubernetes.io/dockerconfigjson` Secret in the job's namespace with the registry's
/// credentials: mounted as the build pod's auth file and used as the step pod's image pull
/// secret. Default: none (a registry without authentication).
pub const REGISTRY_SECRET_NAME: &str = "ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_REGISTRY_SECRET_NAME";

/// CA certificate of a registry with a private CA: `secret/<name>` or `configmap/<name>`, whose
/// key `ca.crt` is mounted as Buildah's `--cert-dir`. Default: none (system CAs).
pub const REGISTRY_CA: &str = "ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_REGISTRY_CA";

/// Image of the build pod. Default [`DEFAULT_BUILDER_IMAGE`]. It must have the rootless setup
/// described in docs/user/dockerfile-actions.md; pin it by digest (`image@sha256:...`) for
/// reproducible builders.
pub const BUILDER_IMAGE: &str = "ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_BUILDER_IMAGE";

/// How the build pod runs Buildah: `rootless` (default: uid 1000 with subordinate ids),
/// `root` (uid 0 in the container, no `privileged`), or `userns` (`hostUsers: false`).
pub const BUILDER_PROFILE: &str = "ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_BUILDER_PROFILE";

/// A `Localhost` seccomp profile for the build container, relative to the kubelet's seccomp
/// directory (e.g. `profiles/buildah.json`), for nodes whose kubelet defaults to RuntimeDefault
/// (which blocks the user namespaces Buildah needs). Default: none (the field is left unset).
pub const BUILDER_SECCOMP_PROFILE: &str =
    "ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_BUILDER_SECCOMP_PROFILE";

/// Resources of the build container: comma-separated `requests.<r>=<quantity>` and
/// `limits.<r>=<quantity>` with `<r>` one of `cpu`, `memory`, `ephemeral-storage`, e.g.
/// `requests.cpu=500m,requests.memory=1Gi,limits.memory=4Gi`. Default: none.
pub const BUILDER_RESOURCES: &str = "ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_BUILDER_RESOURCES";

/// Seconds a build (pod start, build and push) may take. Default `1800`. A positive whole number.
pub const BUILD_TIMEOUT_SECONDS: &str = "ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_BUILD_TIMEOUT_SECONDS";

/// Extra `buildah build` options, split like a shell, from an allow-list (see
/// docs/user/dockerfile-actions.md), e.g. `--tls-verify=false --retry=5`. Default: none.
pub const BUILD_OPTIONS: &str = "ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_BUILD_OPTIONS";

/// Extra `buildah push` options, split like a shell, from an allow-list, e.g.
/// `--format=v2s2 --compression-format=zstd`. Default: none.
pub const PUSH_OPTIONS: &str = "ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_PUSH_OPTIONS";

/// Largest build context, in MiB, after `.dockerignore`. Default `100`. A positive whole number.
pub const BUILD_CONTEXT_LIMIT_MB: &str =
    "ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_BUILD_CONTEXT_LIMIT_MB";

/// Reuse by content: `true` (default) looks up a Dockerfile action's build key in the push
/// registry and runs the step from an earlier build of the same content when there is one, and
/// tags every new build with its key; `false` always builds (docs/user/dockerfile-actions.md).
pub const REUSE: &str = "ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_REUSE";

/// The layer cache in the registry: unset for `<push-host>/<name>/cache` (one cache repository
/// per action), `off` for no cache, or a repository (`registry.ns.svc:5000/buildcache`) that every
/// action's build shares. With a cache, builds run with `--layers --cache-from --cache-to`.
pub const BUILD_CACHE: &str = "ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_BUILD_CACHE";

/// Buildah storage driver: `overlay` (default: native overlay, falling back to `vfs` with a log
/// line where overlay cannot work) or `vfs` (always).
pub const STORAGE_DRIVER: &str = "ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_STORAGE_DRIVER";

/// Default of [`BUILDER_IMAGE`]: the official Buildah image (Fedora-based: a `build` user with
/// uid 1000, subordinate id ranges, and `newuidmap`/`newgidmap` with file capabilities), pinned
/// to a release tag so a new Buildah never arrives unannounced.
pub const DEFAULT_BUILDER_IMAGE: &str = "quay.io/buildah/stable:v1.41.4";
/// Default of [`BUILD_TIMEOUT_SECONDS`].
pub const DEFAULT_BUILD_TIMEOUT: Duration = Duration::from_secs(1800);
/// Default of [`BUILD_CONTEXT_LIMIT_MB`], in MiB.
pub const DEFAULT_BUILD_CONTEXT_LIMIT_MB: u64 = 100;

/// Configuration of Dockerfile builds (docs/user/dockerfile-actions.md), read by
/// `BuildConfig::from_vars`.
#[derive(Debug, Clone)]
pub struct BuildConfig {
    /// [`REGISTRY_HOST`].
    pub registry_host: Option<RegistryHost>,
    /// [`REGISTRY_HOST_PUSH`].
    pub registry_host_push: Option<RegistryHost>,
    /// [`REGISTRY_HOST_PULL`].
    pub registry_host_pull: Option<RegistryHost>,
    /// [`REGISTRY_SECRET_NAME`].
    pub registry_secret_name: Option<String>,
    /// [`REGISTRY_CA`].
    pub registry_ca: Option<RegistryCa>,
    /// [`BUILDER_IMAGE`].
    pub builder_image: String,
    /// [`BUILDER_PROFILE`].
    pub profile: BuilderProfile,
    /// [`BUILDER_SECCOMP_PROFILE`].
    pub seccomp_profile: Option<String>,
    /// [`BUILDER_RESOURCES`].
    pub resources: BuilderResources,
    /// [`BUILD_TIMEOUT_SECONDS`].
    pub timeout: Duration,
    /// [`BUILD_OPTIONS`], allow-listed, one canonical word per option (`--name[=value]`).
    pub build_options: Vec<String>,
    /// [`PUSH_OPTIONS`], allow-listed, one canonical word per option.
    pub push_options: Vec<String>,
    /// [`BUILD_CONTEXT_LIMIT_MB`] in bytes (MiB × 2^20).
    pub context_limit_bytes: u64,
    /// [`STORAGE_DRIVER`].
    pub storage_driver: StorageDriver,
    /// [`REUSE`].
    pub reuse: bool,
    /// [`BUILD_CACHE`].
    pub cache: BuildCache,
}

/// Where builds keep their layer cache ([`BUILD_CACHE`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildCache {
    /// `<push-host>/<name>/cache`, beside each action's images.
    PerAction,
    /// No layer cache.
    Off,
    /// This repository, shared by every action (Buildah's cache tags are content-addressed).
    Shared(RegistryHost),
}

impl BuildCache {
    /// The cache repository for the image `<push-host>/<name>` (`push_repository`), if any.
    pub fn repository(&self, push_repository: &str) -> Option<String> {
        match self {
            BuildCache::PerAction => Some(format!("{push_repository}/cache")),
            BuildCache::Off => None,
            BuildCache::Shared(repository) => Some(repository.to_string()),
        }
    }
}

impl BuildConfig {
    /// The registry host to push to: [`REGISTRY_HOST_PUSH`], else [`REGISTRY_HOST`].
    ///
    /// # Errors
    /// [`ConfigError::Missing`] naming [`REGISTRY_HOST`] when neither is set.
    pub fn push_host(&self) -> Result<&RegistryHost, ConfigError> {
        self.registry_host_push
            .as_ref()
            .or(self.registry_host.as_ref())
            .ok_or(ConfigError::Missing { var: REGISTRY_HOST })
    }

    /// The registry host to pull from: [`REGISTRY_HOST_PULL`], else [`REGISTRY_HOST`], else
    /// [`REGISTRY_HOST_PUSH`].
    ///
    /// # Errors
    /// [`ConfigError::Missing`] naming [`REGISTRY_HOST`] when none is set.
    pub fn pull_host(&self) -> Result<&RegistryHost, ConfigError> {
        self.registry_host_pull
            .as_ref()
            .or(self.registry_host.as_ref())
            .or(self.registry_host_push.as_ref())
            .ok_or(ConfigError::Missing { var: REGISTRY_HOST })
    }
}

impl BuildConfig {
    /// Read the build variables.
    ///
    /// # Errors
    /// [`ConfigError`] naming the first variable whose value is unusable.
    pub(super) fn from_vars(vars: &Vars) -> Result<BuildConfig, ConfigError> {
        let timeout = vars
            .positive(
                BUILD_TIMEOUT_SECONDS,
                "a positive whole number of seconds, e.g. `1800`",
            )?
            .map_or(DEFAULT_BUILD_TIMEOUT, Duration::from_secs);
        Ok(BuildConfig {
            registry_host: registry(vars, REGISTRY_HOST)?,
            registry_host_push: registry(vars, REGISTRY_HOST_PUSH)?,
            registry_host_pull: registry(vars, REGISTRY_HOST_PULL)?,
            registry_secret_name: registry_secret_name(vars)?,
            registry_ca: registry_ca(vars)?,
            builder_image: builder_image(vars)?,
            profile: vars.choice(
                BUILDER_PROFILE,
                &[
                    ("rootless", BuilderProfile::Rootless),
                    ("root", BuilderProfile::Root),
                    ("userns", BuilderProfile::Userns),
                ],
                "one of `rootless`, `root`, `userns`",
            )?,
            seccomp_profile: seccomp_profile(vars)?,
            resources: resources(vars)?,
            timeout,
            build_options: option_list(vars, BUILD_OPTIONS, Stage::Build)?,
            push_options: option_list(vars, PUSH_OPTIONS, Stage::Push)?,
            context_limit_bytes: context_limit_bytes(vars)?,
            reuse: vars.bool(REUSE, true)?,
            cache: build_cache(vars)?,
            storage_driver: vars.choice(
                STORAGE_DRIVER,
                &[
                    ("overlay", StorageDriver::Overlay),
                    ("vfs", StorageDriver::Vfs),
                ],
                "`overlay` (falls back to `vfs` where overlay cannot work) or `vfs`",
            )?,
        })
    }
}

/// [`REGISTRY_HOST`], [`REGISTRY_HOST_PUSH`] or [`REGISTRY_HOST_PULL`].
fn registry(vars: &Vars, var: &'static str) -> Result<Option<RegistryHost>, ConfigError> {
    vars.get(var)
        .map(|v| {
            RegistryHost::parse(&v).map_err(|_| ConfigError::Invalid {
                var,
                value: v,
                expected: "a registry host with an optional path, e.g. `ghcr.io/owner` or `registry.ns.svc:5000/actions` (no scheme; lowercase path)",
            })
        })
        .transpose()
}

/// [`REGISTRY_SECRET_NAME`]: a Secret's name.
fn registry_secret_name(vars: &Vars) -> Result<Option<String>, ConfigError> {
    let name = vars.get(REGISTRY_SECRET_NAME);
    if let Some(name) = &name
        && !is_dns1123_subdomain(name)
    {
        return Err(ConfigError::Invalid {
            var: REGISTRY_SECRET_NAME,
            value: name.clone(),
            expected: "a Secret name: lowercase letters, digits, `-` and `.`, at most 253 characters",
        });
    }
    Ok(name)
}

/// [`REGISTRY_CA`]: `secret/<name>` or `configmap/<name>`.
fn registry_ca(vars: &Vars) -> Result<Option<RegistryCa>, ConfigError> {
    let Some(v) = vars.get(REGISTRY_CA) else {
        return Ok(None);
    };
    let parsed = match v.split_once('/') {
        Some(("secret", name)) if is_dns1123_subdomain(name) => {
            Some(RegistryCa::Secret(name.to_owned()))
        }
        Some(("configmap", name)) if is_dns1123_subdomain(name) => {
            Some(RegistryCa::ConfigMap(name.to_owned()))
        }
        _ => None,
    };
    parsed.map(Some).ok_or(ConfigError::Invalid {
        var: REGISTRY_CA,
        value: v,
        expected: "`secret/<name>` or `configmap/<name>` of an object with the key `ca.crt`",
    })
}

/// [`BUILDER_IMAGE`]: any reference without spaces (the kubelet judges the rest).
fn builder_image(vars: &Vars) -> Result<String, ConfigError> {
    let image = vars
        .get(BUILDER_IMAGE)
        .unwrap_or_else(|| DEFAULT_BUILDER_IMAGE.to_owned());
    if image.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ConfigError::Invalid {
            var: BUILDER_IMAGE,
            value: image,
            expected: "an image reference without spaces, e.g. `quay.io/buildah/stable:v1.41.4`",
        });
    }
    Ok(image)
}

/// [`BUILDER_SECCOMP_PROFILE`]: a relative path that stays inside the kubelet's directory.
fn seccomp_profile(vars: &Vars) -> Result<Option<String>, ConfigError> {
    let path = vars.get(BUILDER_SECCOMP_PROFILE);
    if let Some(path) = &path
        && (path.starts_with('/')
            || path.split('/').any(|c| c.is_empty() || c == "..")
            || path.chars().any(|c| c.is_whitespace() || c.is_control()))
    {
        return Err(ConfigError::Invalid {
            var: BUILDER_SECCOMP_PROFILE,
            value: path.clone(),
            expected: "a path relative to the kubelet's seccomp directory, e.g. `profiles/buildah.json`",
        });
    }
    Ok(path)
}

/// [`BUILDER_RESOURCES`].
fn resources(vars: &Vars) -> Result<BuilderResources, ConfigError> {
    match vars.get(BUILDER_RESOURCES) {
        None => Ok(BuilderResources::default()),
        Some(v) => parse_resources(&v).ok_or(ConfigError::Invalid {
            var: BUILDER_RESOURCES,
            value: v,
            expected: "comma-separated `requests.<r>=<quantity>` or `limits.<r>=<quantity>` with `<r>` one of `cpu`, `memory`, `ephemeral-storage`, e.g. `requests.cpu=500m,limits.memory=4Gi`",
        }),
    }
}

/// [`BUILD_CONTEXT_LIMIT_MB`], in bytes.
fn context_limit_bytes(vars: &Vars) -> Result<u64, ConfigError> {
    let expected = "a positive whole number of MiB, e.g. `100`";
    let mb = vars
        .positive(BUILD_CONTEXT_LIMIT_MB, expected)?
        .unwrap_or(DEFAULT_BUILD_CONTEXT_LIMIT_MB);
    mb.checked_mul(1 << 20).ok_or(ConfigError::Invalid {
        var: BUILD_CONTEXT_LIMIT_MB,
        value: mb.to_string(),
        expected,
    })
}

/// [`BUILD_CACHE`]: `off`, a repository, or unset.
fn build_cache(vars: &Vars) -> Result<BuildCache, ConfigError> {
    match vars.get(BUILD_CACHE) {
        None => Ok(BuildCache::PerAction),
        Some(v) if v.eq_ignore_ascii_case("off") || v.eq_ignore_ascii_case("false") => {
            Ok(BuildCache::Off)
        }
        Some(v) => match RegistryHost::parse(&v) {
            Ok(repository) if repository.path().is_some() => Ok(BuildCache::Shared(repository)),
            _ => Err(ConfigError::Invalid {
                var: BUILD_CACHE,
                value: v,
                expected: "`off`, or a repository with a path, e.g. `registry.ns.svc:5000/buildcache` (unset: `<push-host>/<name>/cache`)",
            }),
        },
    }
}

/// [`BUILD_OPTIONS`] or [`PUSH_OPTIONS`], allow-listed for `stage`.
fn option_list(vars: &Vars, var: &'static str, stage: Stage) -> Result<Vec<String>, ConfigError> {
    match vars.get(var) {
        None => Ok(Vec::new()),
        Some(v) => options::parse(stage, &v).map_err(|source| ConfigError::Options { var, source }),
    }
}

/// `requests.cpu=500m,limits.memory=4Gi`: every key `requests.<r>` or `limits.<r>` with a known
/// resource, every value a Kubernetes quantity, no key twice.
fn parse_resources(text: &str) -> Option<BuilderResources> {
    let mut resources = BuilderResources::default();
    for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (key, quantity) = item.split_once('=')?;
        let (bound, resource) = key.trim().split_once('.')?;
        if !matches!(resource, "cpu" | "memory" | "ephemeral-storage") {
            return None;
        }
        let quantity = quantity.trim();
        if !is_quantity(quantity) {
            return None;
        }
        let map = match bound {
            "requests" => &mut resources.requests,
            "limits" => &mut resources.limits,
            _ => return None,
        };
        if map
            .insert(resource.to_owned(), quantity.to_owned())
            .is_some()
        {
            return None;
        }
    }
    Some(resources)
}

/// A non-negative Kubernetes quantity (`apimachinery` `resource.Quantity`): a decimal number
/// with an optional binary (`Ki`…`Ei`), decimal (`n`, `u`, `m`, `k`, `M`…`E`) or exponent
/// (`e3`) suffix.
fn is_quantity(text: &str) -> bool {
    let text = text.strip_prefix('+').unwrap_or(text);
    let number_end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(number_end);
    let valid_number = !number.is_empty() && number != "." && number.matches('.').count() <= 1;
    let valid_suffix = matches!(
        suffix,
        "" | "Ki"
            | "Mi"
            | "Gi"
            | "Ti"
            | "Pi"
            | "Ei"
            | "n"
            | "u"
            | "m"
            | "k"
            | "M"
            | "G"
            | "T"
            | "P"
            | "E"
    ) || suffix
        .strip_prefix(['e', 'E'])
        .map(|exp| exp.strip_prefix(['+', '-']).unwrap_or(exp))
        .is_some_and(|exp| !exp.is_empty() && exp.bytes().all(|b| b.is_ascii_digit()));
    valid_number && valid_suffix
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_vars(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn reuse_and_the_layer_cache_default_on_and_can_be_turned_off() {
        let c = config(&[]).unwrap().build;
        assert!(c.reuse);
        assert_eq!(c.cache, BuildCache::PerAction);
        assert_eq!(
            c.cache.repository("r:5000/actions/octo-org/hello"),
            Some("r:5000/actions/octo-org/hello/cache".to_owned())
        );
        let c = config(&[(REUSE, "false"), (BUILD_CACHE, "off")])
            .unwrap()
            .build;
        assert!(!c.reuse);
        assert_eq!(c.cache.repository("r:5000/a"), None);
        let c = config(&[(BUILD_CACHE, "registry.ns.svc:5000/buildcache")])
            .unwrap()
            .build;
        assert_eq!(
            c.cache.repository("r:5000/a"),
            Some("registry.ns.svc:5000/buildcache".to_owned())
        );
        for (var, value) in [
            (REUSE, "sometimes"),
            (BUILD_CACHE, "registry.ns.svc:5000"),
            (BUILD_CACHE, "https://r/x"),
        ] {
            let err = config(&[(var, value)]).unwrap_err().to_string();
            assert!(err.contains(var) && err.contains(value), "{err}");
        }
    }

    #[test]
    fn build_defaults() {
        let b = config(&[]).unwrap().build;
        assert_eq!(b.builder_image, "quay.io/buildah/stable:v1.41.4");
        assert_eq!(b.timeout, Duration::from_secs(1800));
        assert_eq!(b.profile, BuilderProfile::Rootless);
        assert_eq!(b.storage_driver, StorageDriver::Overlay);
        assert_eq!(b.context_limit_bytes, 100 * 1024 * 1024);
        assert!(b.build_options.is_empty() && b.push_options.is_empty());
        assert_eq!(b.resources, BuilderResources::default());
        assert_eq!(b.registry_ca, None);
        let err = b.push_host().unwrap_err();
        assert_eq!(
            err.to_string(),
            "environment variable `ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_REGISTRY_HOST` is required but not set"
        );
        assert!(b.pull_host().is_err());
    }

    #[test]
    fn push_and_pull_hosts_prefer_their_own_variables() {
        let b = config(&[(REGISTRY_HOST, "ghcr.io/owner")]).unwrap().build;
        assert_eq!(b.push_host().unwrap().to_string(), "ghcr.io/owner");
        assert_eq!(b.pull_host().unwrap().to_string(), "ghcr.io/owner");
        let b = config(&[
            (REGISTRY_HOST, "ghcr.io/owner"),
            (REGISTRY_HOST_PUSH, "registry.ns.svc:5000/actions"),
            (REGISTRY_HOST_PULL, "localhost:30500/actions"),
        ])
        .unwrap()
        .build;
        assert_eq!(
            b.push_host().unwrap().to_string(),
            "registry.ns.svc:5000/actions"
        );
        assert_eq!(
            b.pull_host().unwrap().to_string(),
            "localhost:30500/actions"
        );
        // Only a push host: nodes pull from the same place.
        let b = config(&[(REGISTRY_HOST_PUSH, "registry.ns.svc:5000")])
            .unwrap()
            .build;
        assert_eq!(b.pull_host().unwrap().to_string(), "registry.ns.svc:5000");
        let err = config(&[(REGISTRY_HOST_PULL, "https://x.io")]).unwrap_err();
        assert!(
            err.to_string()
                .contains("`ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_REGISTRY_HOST_PULL`"),
            "{err}"
        );
    }

    #[test]
    fn build_values_parse() {
        let b = config(&[
            (REGISTRY_SECRET_NAME, "registry-creds"),
            (REGISTRY_CA, "configmap/registry-ca"),
            (BUILDER_IMAGE, "registry.example/buildah@sha256:abc"),
            (BUILDER_PROFILE, "userns"),
            (BUILDER_SECCOMP_PROFILE, "profiles/buildah.json"),
            (
                BUILDER_RESOURCES,
                "requests.cpu=500m, requests.memory=1Gi,limits.memory=4Gi,limits.ephemeral-storage=10Gi",
            ),
            (BUILD_TIMEOUT_SECONDS, "600"),
            (BUILD_OPTIONS, "--tls-verify=false --retry 5"),
            (PUSH_OPTIONS, "--format=v2s2"),
            (BUILD_CONTEXT_LIMIT_MB, "5"),
            (STORAGE_DRIVER, "vfs"),
        ])
        .unwrap()
        .build;
        assert_eq!(b.registry_secret_name.as_deref(), Some("registry-creds"));
        assert_eq!(
            b.registry_ca,
            Some(RegistryCa::ConfigMap("registry-ca".into()))
        );
        assert_eq!(b.builder_image, "registry.example/buildah@sha256:abc");
        assert_eq!(b.profile, BuilderProfile::Userns);
        assert_eq!(b.seccomp_profile.as_deref(), Some("profiles/buildah.json"));
        assert_eq!(b.resources.requests["cpu"], "500m");
        assert_eq!(b.resources.requests["memory"], "1Gi");
        assert_eq!(b.resources.limits["memory"], "4Gi");
        assert_eq!(b.resources.limits["ephemeral-storage"], "10Gi");
        assert_eq!(b.timeout, Duration::from_secs(600));
        assert_eq!(b.build_options, ["--tls-verify=false", "--retry=5"]);
        assert_eq!(b.push_options, ["--format=v2s2"]);
        assert_eq!(b.context_limit_bytes, 5 << 20);
        assert_eq!(b.storage_driver, StorageDriver::Vfs);
        let b = config(&[(REGISTRY_CA, "secret/ca"), (BUILDER_PROFILE, "root")])
            .unwrap()
            .build;
        assert_eq!(b.registry_ca, Some(RegistryCa::Secret("ca".into())));
        assert_eq!(b.profile, BuilderProfile::Root);
    }

    #[test]
    fn invalid_build_values_name_the_variable() {
        for (var, value) in [
            (REGISTRY_HOST, "myorg"),
            (REGISTRY_HOST_PUSH, "ghcr.io/Owner"),
            (REGISTRY_SECRET_NAME, "Registry_Creds"),
            (REGISTRY_CA, "ca.crt"),
            (REGISTRY_CA, "secret/"),
            (REGISTRY_CA, "pvc/ca"),
            (BUILDER_IMAGE, "quay.io/x y"),
            (BUILDER_PROFILE, "privileged"),
            (BUILDER_SECCOMP_PROFILE, "/var/lib/kubelet/seccomp/x.json"),
            (BUILDER_SECCOMP_PROFILE, "../x.json"),
            (BUILDER_RESOURCES, "cpu=1"),
            (BUILDER_RESOURCES, "requests.gpu=1"),
            (BUILDER_RESOURCES, "limits.memory=4GB"),
            (BUILDER_RESOURCES, "limits.memory=-1Gi"),
            (BUILDER_RESOURCES, "limits.memory=1Gi,limits.memory=2Gi"),
            (BUILD_TIMEOUT_SECONDS, "30m"),
            (BUILD_TIMEOUT_SECONDS, "0"),
            (BUILD_CONTEXT_LIMIT_MB, "1.5"),
            (STORAGE_DRIVER, "btrfs"),
        ] {
            let err = config(&[(var, value)]).unwrap_err();
            assert!(
                err.to_string().contains(&format!("`{var}`")),
                "{var}={value}: {err}"
            );
        }
        let err = config(&[(STORAGE_DRIVER, "btrfs")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "environment variable `ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_STORAGE_DRIVER` has an invalid value `btrfs`: expected `overlay` (falls back to `vfs` where overlay cannot work) or `vfs`"
        );
    }

    #[test]
    fn forbidden_options_fail_at_parse_time_without_echoing_credentials() {
        let err = config(&[(PUSH_OPTIONS, "--retry=3 --creds=ci:s3cret")]).unwrap_err();
        assert!(matches!(
            err,
            ConfigError::Options {
                var: PUSH_OPTIONS,
                ..
            }
        ));
        let report = crate::error::report(&anyhow::Error::new(err));
        assert!(!report.contains("s3cret"), "{report}");
        assert!(
            report.starts_with(
                "::error::environment variable `ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_PUSH_OPTIONS` has options that cannot be used\ncaused by: `--creds` is not an allowed push option; allowed: `--tls-verify[=true|false]`"
            ),
            "{report}"
        );
        let err = config(&[(BUILD_OPTIONS, "--storage-driver=vfs")]).unwrap_err();
        assert!(matches!(
            err,
            ConfigError::Options {
                var: BUILD_OPTIONS,
                ..
            }
        ));
    }

    #[test]
    fn quantities() {
        for good in [
            "1", "500m", "1.5", "1Gi", "10Gi", "100M", "1e3", "0.5", "+1",
        ] {
            assert!(is_quantity(good), "{good}");
        }
        for bad in ["", "1GB", "Gi", "-1", "1.2.3", "1 Gi", "1e", "."] {
            assert!(!is_quantity(bad), "{bad}");
        }
    }
}
