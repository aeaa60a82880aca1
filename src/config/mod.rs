//! Every environment variable the hook reads, parsed and validated once at start-up.
//!
//! Each variable is one documented `pub const` below; [`ALL`] lists them, and a test checks that
//! `docs/user/configuration.md` documents each one. Nothing outside this module reads the
//! process environment (kube reads `KUBECONFIG` and the in-cluster variables itself).
//!
//! The runner-side names and defaults are those of the TypeScript hook
//! (`actions/runner-container-hooks` `packages/k8s`), so an ARC deployment configured for it keeps
//! working. Where that hook warned and fell back on an invalid value, we fail with an error that
//! names the variable and the accepted form: a typo in a timeout should not silently become 600 s.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::image::StorageDriver;
use crate::image::options::{self, OptionError, Stage};
use crate::image::reference::RegistryHost;
use crate::spec::build_pod::{BuilderProfile, BuilderResources, RegistryCa};
use crate::spec::names::{is_dns1123_label, is_dns1123_subdomain};

/// Name of the runner pod. **Required** for the hook commands. Every object we create is named
/// after it and labelled `runner-pod=<name>`. ARC sets it from the downward API
/// (`metadata.name`). Example: `arc-runner-set-abcde-runner-x7k2p`.
pub const RUNNER_POD_NAME: &str = "ACTIONS_RUNNER_POD_NAME";

/// Namespace for the job's pods and secrets. Default: the namespace of the kubeconfig context,
/// or, in a pod, the service account's namespace.
pub const KUBERNETES_NAMESPACE: &str = "ACTIONS_RUNNER_KUBERNETES_NAMESPACE";

/// Path of a YAML pod template merged into the job pod and step pods (ADR 0134), e.g.
/// `/home/runner/pod-templates/default.yaml`. Default: none.
pub const HOOK_TEMPLATE: &str = "ACTIONS_RUNNER_CONTAINER_HOOK_TEMPLATE";

/// Seconds to wait for the job pod (and step pods) to be running. Default `600`. A positive
/// whole number.
pub const PREPARE_JOB_TIMEOUT_SECONDS: &str = "ACTIONS_RUNNER_PREPARE_JOB_TIMEOUT_SECONDS";

/// Seconds the hook lets the kubelet retry an image pull that failed for a reason that can heal
/// by itself (a registry answering 5xx or 429, a network error) before the pod fails. Default
/// `180`. A positive whole number. Pulls that cannot heal (no such image, unauthorized, invalid
/// name) fail at once.
pub const IMAGE_PULL_TIMEOUT_SECONDS: &str =
    "ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_IMAGE_PULL_TIMEOUT_SECONDS";

/// Image of the init container that copies the runner's `externals` (node for JavaScript
/// actions) into the job pod in copy mode. Default `ghcr.io/actions/actions-runner:latest`; ARC
/// sets it to the runner's own image.
pub const RUNNER_IMAGE: &str = "ACTIONS_RUNNER_IMAGE";

/// Name of the runner's work volume claim (volume mode). Default `<runner-pod>-work`, the name
/// ARC gives the ephemeral volume in `containerMode: kubernetes`.
pub const CLAIM_NAME: &str = "ACTIONS_RUNNER_CLAIM_NAME";

/// `true` lets the scheduler place job and step pods (RWX work volume) with a preferred affinity
/// to the runner's node; `false` (default) pins them to the runner's node, which an RWO volume
/// requires.
pub const USE_KUBE_SCHEDULER: &str = "ACTIONS_RUNNER_USE_KUBE_SCHEDULER";

/// Milliseconds between WebSocket pings on an exec connection (keeps idle steps alive through
/// load balancers and detects dead connections). Default `5000`. A positive whole number.
pub const HEARTBEAT_PERIOD_MS: &str = "ACTIONS_RUNNER_HEARTBEAT_PERIOD_MS";

/// Milliseconds without any answer on an exec connection after which the step fails as
/// disconnected. Default: period × 12 + 1000 (the TypeScript hook's rule). A positive whole number
/// larger than the period.
pub const HEARTBEAT_DEADLINE_MS: &str = "ACTIONS_RUNNER_HEARTBEAT_DEADLINE_MS";

/// Data plane: `auto` (default: volume mode when the work claim exists, copy mode otherwise),
/// `volume` (mount the runner's work volume) or `copy` (emptyDirs, files copied over exec).
pub const DATA_PLANE: &str = "ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_DATA_PLANE";

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

/// Buildah storage driver: `overlay` (default: native overlay, falling back to `vfs` with a log
/// line where overlay cannot work) or `vfs` (always).
pub const STORAGE_DRIVER: &str = "ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_STORAGE_DRIVER";

/// Set by the runner: `<_work>/<repo>`. The hook derives the runner's `_work` directory from it.
pub const RUNNER_WORKSPACE: &str = "RUNNER_WORKSPACE";

/// Set by the runner: `<_work>/_temp`, where it writes step scripts and file-command files.
pub const RUNNER_TEMP: &str = "RUNNER_TEMP";

/// Set by the runner: the workspace on the runner host, `<_work>/<repo>/<repo>`.
pub const GITHUB_WORKSPACE: &str = "GITHUB_WORKSPACE";

/// Set by the runner to `1` when debug logging is on (re-run with debug logging, or the
/// `ACTIONS_RUNNER_DEBUG` secret); the hook then logs at debug level.
pub const RUNNER_DEBUG: &str = "RUNNER_DEBUG";

/// Log filter in `tracing` env-filter syntax, overriding the default (`info` for the hook, `warn`
/// for its libraries, `debug` in runner debug mode). Example: `runner_k8s_hook=trace,kube=debug`.
pub const LOG: &str = "RUNNER_K8S_HOOK_LOG";

/// Every variable above, for documentation checks and `--help`-style listings.
pub const ALL: &[&str] = &[
    RUNNER_POD_NAME,
    KUBERNETES_NAMESPACE,
    HOOK_TEMPLATE,
    PREPARE_JOB_TIMEOUT_SECONDS,
    IMAGE_PULL_TIMEOUT_SECONDS,
    RUNNER_IMAGE,
    CLAIM_NAME,
    USE_KUBE_SCHEDULER,
    HEARTBEAT_PERIOD_MS,
    HEARTBEAT_DEADLINE_MS,
    DATA_PLANE,
    REGISTRY_HOST,
    REGISTRY_HOST_PUSH,
    REGISTRY_HOST_PULL,
    REGISTRY_SECRET_NAME,
    REGISTRY_CA,
    BUILDER_IMAGE,
    BUILDER_PROFILE,
    BUILDER_SECCOMP_PROFILE,
    BUILDER_RESOURCES,
    BUILD_TIMEOUT_SECONDS,
    BUILD_OPTIONS,
    PUSH_OPTIONS,
    BUILD_CONTEXT_LIMIT_MB,
    STORAGE_DRIVER,
    RUNNER_WORKSPACE,
    RUNNER_TEMP,
    GITHUB_WORKSPACE,
    RUNNER_DEBUG,
    LOG,
];

/// Default of [`PREPARE_JOB_TIMEOUT_SECONDS`].
pub const DEFAULT_PREPARE_JOB_TIMEOUT: Duration = Duration::from_secs(600);
/// Default of [`IMAGE_PULL_TIMEOUT_SECONDS`]: the kubelet retries a failed pull after 10, 20,
/// 40 and 80 s (plus up to a sync period each), so three minutes cover four retries.
pub const DEFAULT_IMAGE_PULL_TIMEOUT: Duration = Duration::from_secs(180);
/// Default of [`HEARTBEAT_PERIOD_MS`].
pub const DEFAULT_HEARTBEAT_PERIOD: Duration = Duration::from_secs(5);
/// Default of [`RUNNER_IMAGE`].
pub const DEFAULT_RUNNER_IMAGE: &str = "ghcr.io/actions/actions-runner:latest";

/// Default of [`BUILDER_IMAGE`]: the official Buildah image (Fedora-based: a `build` user with
/// uid 1000, subordinate id ranges, and `newuidmap`/`newgidmap` with file capabilities), pinned
/// to a release tag so a new Buildah never arrives unannounced.
pub const DEFAULT_BUILDER_IMAGE: &str = "quay.io/buildah/stable:v1.41.4";
/// Default of [`BUILD_TIMEOUT_SECONDS`].
pub const DEFAULT_BUILD_TIMEOUT: Duration = Duration::from_secs(1800);
/// Default of [`BUILD_CONTEXT_LIMIT_MB`], in MiB.
pub const DEFAULT_BUILD_CONTEXT_LIMIT_MB: u64 = 100;

/// Configuration of Dockerfile builds (docs/user/dockerfile-actions.md).
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

/// How the data plane is chosen ([`DATA_PLANE`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataPlaneSetting {
    /// Volume mode when the work claim is configured or exists, copy mode otherwise.
    Auto,
    /// Always mount the runner's work volume.
    Volume,
    /// Always copy files over exec.
    Copy,
}

/// The hook's configuration, read once from the environment.
#[derive(Debug, Clone)]
pub struct Config {
    /// [`RUNNER_POD_NAME`]; checked where it is needed, see [`Config::runner_pod_name`].
    pub runner_pod_name: Option<String>,
    /// [`KUBERNETES_NAMESPACE`].
    pub namespace: Option<String>,
    /// [`HOOK_TEMPLATE`].
    pub hook_template: Option<PathBuf>,
    /// [`PREPARE_JOB_TIMEOUT_SECONDS`].
    pub prepare_job_timeout: Duration,
    /// [`IMAGE_PULL_TIMEOUT_SECONDS`].
    pub image_pull_timeout: Duration,
    /// [`RUNNER_IMAGE`].
    pub runner_image: String,
    /// [`CLAIM_NAME`] as given (the default is derived from the pod name where needed).
    pub claim_name: Option<String>,
    /// [`USE_KUBE_SCHEDULER`].
    pub use_kube_scheduler: bool,
    /// [`HEARTBEAT_PERIOD_MS`].
    pub heartbeat_period: Duration,
    /// [`HEARTBEAT_DEADLINE_MS`].
    pub heartbeat_deadline: Duration,
    /// [`DATA_PLANE`].
    pub data_plane: DataPlaneSetting,
    /// [`RUNNER_WORKSPACE`].
    pub runner_workspace: Option<PathBuf>,
    /// [`RUNNER_TEMP`].
    pub runner_temp: Option<PathBuf>,
    /// [`GITHUB_WORKSPACE`].
    pub github_workspace: Option<PathBuf>,
    /// [`RUNNER_DEBUG`] is `1`.
    pub debug: bool,
    /// [`LOG`].
    pub log_filter: Option<String>,
    /// Dockerfile builds: registry, builder pod, options.
    pub build: BuildConfig,
}

/// A variable is missing or has a value we cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A required variable is unset or empty.
    #[error("environment variable `{var}` is required but not set")]
    Missing {
        /// The variable.
        var: &'static str,
    },
    /// A variable's value does not have the accepted form.
    #[error("environment variable `{var}` has an invalid value `{value}`: expected {expected}")]
    Invalid {
        /// The variable.
        var: &'static str,
        /// What was given.
        value: String,
        /// The accepted form.
        expected: &'static str,
    },
    /// A list of extra Buildah options ([`BUILD_OPTIONS`], [`PUSH_OPTIONS`]) with an option
    /// that is not allowed or not valid. The source says which; the value is not repeated, as it
    /// may hold a credential.
    #[error("environment variable `{var}` has options that cannot be used")]
    Options {
        /// The variable.
        var: &'static str,
        /// Which option and why.
        #[source]
        source: OptionError,
    },
}

impl Config {
    /// Read the configuration from the process environment.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the first variable whose value is unusable.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_vars(std::env::vars_os().filter_map(|(k, v)| {
            // A variable whose name or value is not UTF-8 cannot be one of ours.
            Some((k.into_string().ok()?, v.into_string().ok()?))
        }))
    }

    /// Read the configuration from the given variables (tests pass a map; no global state).
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the first variable whose value is unusable.
    pub fn from_vars(
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let vars: BTreeMap<String, String> = vars.into_iter().collect();
        // An empty value means "unset", as in the TypeScript hook (`process.env.X || default`).
        let get = |name: &str| {
            vars.get(name)
                .map(|v| v.trim())
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };

        let seconds = |var: &'static str, default: Duration, example: &'static str| match get(var) {
            None => Ok(default),
            Some(v) => match v.parse::<u64>() {
                Ok(secs) if secs > 0 => Ok(Duration::from_secs(secs)),
                _ => Err(ConfigError::Invalid {
                    var,
                    value: v,
                    expected: example,
                }),
            },
        };
        let prepare_job_timeout = seconds(
            PREPARE_JOB_TIMEOUT_SECONDS,
            DEFAULT_PREPARE_JOB_TIMEOUT,
            "a positive whole number of seconds, e.g. `600`",
        )?;
        let image_pull_timeout = seconds(
            IMAGE_PULL_TIMEOUT_SECONDS,
            DEFAULT_IMAGE_PULL_TIMEOUT,
            "a positive whole number of seconds, e.g. `180`",
        )?;
        let use_kube_scheduler = match get(USE_KUBE_SCHEDULER) {
            None => false,
            Some(v) => parse_bool(USE_KUBE_SCHEDULER, &v)?,
        };
        let positive_ms = |var: &'static str| -> Result<Option<Duration>, ConfigError> {
            match get(var) {
                None => Ok(None),
                Some(v) => match v.parse::<u64>() {
                    Ok(ms) if ms > 0 => Ok(Some(Duration::from_millis(ms))),
                    _ => Err(ConfigError::Invalid {
                        var,
                        value: v,
                        expected: "a positive whole number of milliseconds, e.g. `5000`",
                    }),
                },
            }
        };
        let heartbeat_period =
            positive_ms(HEARTBEAT_PERIOD_MS)?.unwrap_or(DEFAULT_HEARTBEAT_PERIOD);
        let heartbeat_deadline = positive_ms(HEARTBEAT_DEADLINE_MS)?
            .unwrap_or(heartbeat_period * 12 + Duration::from_secs(1));
        if heartbeat_deadline <= heartbeat_period {
            return Err(ConfigError::Invalid {
                var: HEARTBEAT_DEADLINE_MS,
                value: heartbeat_deadline.as_millis().to_string(),
                expected: "more milliseconds than `ACTIONS_RUNNER_HEARTBEAT_PERIOD_MS`",
            });
        }
        let data_plane = match get(DATA_PLANE).as_deref() {
            None | Some("auto") => DataPlaneSetting::Auto,
            Some("volume") => DataPlaneSetting::Volume,
            Some("copy") => DataPlaneSetting::Copy,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    var: DATA_PLANE,
                    value: other.to_owned(),
                    expected: "one of `auto`, `volume`, `copy`",
                });
            }
        };
        let namespace = get(KUBERNETES_NAMESPACE);
        if let Some(ns) = &namespace
            && !is_dns1123_label(ns)
        {
            return Err(ConfigError::Invalid {
                var: KUBERNETES_NAMESPACE,
                value: ns.clone(),
                expected: NAMESPACE_EXPECTED,
            });
        }

        let build = build_config(&get)?;

        Ok(Config {
            runner_pod_name: get(RUNNER_POD_NAME),
            namespace,
            hook_template: get(HOOK_TEMPLATE).map(PathBuf::from),
            prepare_job_timeout,
            image_pull_timeout,
            runner_image: get(RUNNER_IMAGE).unwrap_or_else(|| DEFAULT_RUNNER_IMAGE.to_owned()),
            claim_name: get(CLAIM_NAME),
            use_kube_scheduler,
            heartbeat_period,
            heartbeat_deadline,
            data_plane,
            runner_workspace: get(RUNNER_WORKSPACE).map(PathBuf::from),
            runner_temp: get(RUNNER_TEMP).map(PathBuf::from),
            github_workspace: get(GITHUB_WORKSPACE).map(PathBuf::from),
            debug: get(RUNNER_DEBUG).as_deref() == Some("1"),
            log_filter: get(LOG),
            build,
        })
    }

    /// The runner pod's name, which every hook command needs.
    ///
    /// # Errors
    /// [`ConfigError::Missing`] for [`RUNNER_POD_NAME`].
    pub fn runner_pod_name(&self) -> Result<&str, ConfigError> {
        self.runner_pod_name.as_deref().ok_or(ConfigError::Missing {
            var: RUNNER_POD_NAME,
        })
    }
}

impl fmt::Display for DataPlaneSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DataPlaneSetting::Auto => "auto",
            DataPlaneSetting::Volume => "volume",
            DataPlaneSetting::Copy => "copy",
        })
    }
}

fn parse_bool(var: &'static str, value: &str) -> Result<bool, ConfigError> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(ConfigError::Invalid {
            var,
            value: value.to_owned(),
            expected: "`true` or `false`",
        }),
    }
}

/// The [`BuildConfig`] from the variables (`get` treats empty as unset).
fn build_config(get: &dyn Fn(&str) -> Option<String>) -> Result<BuildConfig, ConfigError> {
    let registry = |var: &'static str| -> Result<Option<RegistryHost>, ConfigError> {
        get(var)
            .map(|v| {
                RegistryHost::parse(&v).map_err(|_| ConfigError::Invalid {
                    var,
                    value: v,
                    expected: "a registry host with an optional path, e.g. `ghcr.io/owner` or `registry.ns.svc:5000/actions` (no scheme; lowercase path)",
                })
            })
            .transpose()
    };
    let positive =
        |var: &'static str, expected: &'static str| -> Result<Option<u64>, ConfigError> {
            match get(var) {
                None => Ok(None),
                Some(v) => match v.parse::<u64>() {
                    Ok(n) if n > 0 => Ok(Some(n)),
                    _ => Err(ConfigError::Invalid {
                        var,
                        value: v,
                        expected,
                    }),
                },
            }
        };
    let option_list = |var: &'static str, stage: Stage| -> Result<Vec<String>, ConfigError> {
        match get(var) {
            None => Ok(Vec::new()),
            Some(v) => {
                options::parse(stage, &v).map_err(|source| ConfigError::Options { var, source })
            }
        }
    };

    let registry_secret_name = get(REGISTRY_SECRET_NAME);
    if let Some(name) = &registry_secret_name
        && !is_dns1123_subdomain(name)
    {
        return Err(ConfigError::Invalid {
            var: REGISTRY_SECRET_NAME,
            value: name.clone(),
            expected: "a Secret name: lowercase letters, digits, `-` and `.`, at most 253 characters",
        });
    }
    let registry_ca = match get(REGISTRY_CA) {
        None => None,
        Some(v) => {
            let parsed = match v.split_once('/') {
                Some(("secret", name)) if is_dns1123_subdomain(name) => {
                    Some(RegistryCa::Secret(name.to_owned()))
                }
                Some(("configmap", name)) if is_dns1123_subdomain(name) => {
                    Some(RegistryCa::ConfigMap(name.to_owned()))
                }
                _ => None,
            };
            Some(parsed.ok_or(ConfigError::Invalid {
                var: REGISTRY_CA,
                value: v,
                expected: "`secret/<name>` or `configmap/<name>` of an object with the key `ca.crt`",
            })?)
        }
    };
    let builder_image = get(BUILDER_IMAGE).unwrap_or_else(|| DEFAULT_BUILDER_IMAGE.to_owned());
    if builder_image
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(ConfigError::Invalid {
            var: BUILDER_IMAGE,
            value: builder_image,
            expected: "an image reference without spaces, e.g. `quay.io/buildah/stable:v1.41.4`",
        });
    }
    let profile = match get(BUILDER_PROFILE).as_deref() {
        None | Some("rootless") => BuilderProfile::Rootless,
        Some("root") => BuilderProfile::Root,
        Some("userns") => BuilderProfile::Userns,
        Some(other) => {
            return Err(ConfigError::Invalid {
                var: BUILDER_PROFILE,
                value: other.to_owned(),
                expected: "one of `rootless`, `root`, `userns`",
            });
        }
    };
    let seccomp_profile = get(BUILDER_SECCOMP_PROFILE);
    if let Some(path) = &seccomp_profile
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
    let resources = match get(BUILDER_RESOURCES) {
        None => BuilderResources::default(),
        Some(v) => parse_resources(&v).ok_or(ConfigError::Invalid {
            var: BUILDER_RESOURCES,
            value: v,
            expected: "comma-separated `requests.<r>=<quantity>` or `limits.<r>=<quantity>` with `<r>` one of `cpu`, `memory`, `ephemeral-storage`, e.g. `requests.cpu=500m,limits.memory=4Gi`",
        })?,
    };
    let timeout = positive(
        BUILD_TIMEOUT_SECONDS,
        "a positive whole number of seconds, e.g. `1800`",
    )?
    .map_or(DEFAULT_BUILD_TIMEOUT, Duration::from_secs);
    let context_limit_mb = positive(
        BUILD_CONTEXT_LIMIT_MB,
        "a positive whole number of MiB, e.g. `100`",
    )?
    .unwrap_or(DEFAULT_BUILD_CONTEXT_LIMIT_MB);
    let context_limit_bytes =
        context_limit_mb
            .checked_mul(1 << 20)
            .ok_or(ConfigError::Invalid {
                var: BUILD_CONTEXT_LIMIT_MB,
                value: context_limit_mb.to_string(),
                expected: "a positive whole number of MiB, e.g. `100`",
            })?;
    let storage_driver = match get(STORAGE_DRIVER).as_deref() {
        None | Some("overlay") => StorageDriver::Overlay,
        Some("vfs") => StorageDriver::Vfs,
        Some(other) => {
            return Err(ConfigError::Invalid {
                var: STORAGE_DRIVER,
                value: other.to_owned(),
                expected: "`overlay` (falls back to `vfs` where overlay cannot work) or `vfs`",
            });
        }
    };

    Ok(BuildConfig {
        registry_host: registry(REGISTRY_HOST)?,
        registry_host_push: registry(REGISTRY_HOST_PUSH)?,
        registry_host_pull: registry(REGISTRY_HOST_PULL)?,
        registry_secret_name,
        registry_ca,
        builder_image,
        profile,
        seccomp_profile,
        resources,
        timeout,
        build_options: option_list(BUILD_OPTIONS, Stage::Build)?,
        push_options: option_list(PUSH_OPTIONS, Stage::Push)?,
        context_limit_bytes,
        storage_driver,
    })
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

/// What a namespace name may be ([`is_dns1123_label`]), in words, for error messages.
pub const NAMESPACE_EXPECTED: &str =
    "a namespace name: lowercase letters, digits and `-`, at most 63 characters";

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_vars(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn defaults_match_the_typescript_hook() {
        let c = config(&[]).unwrap();
        assert_eq!(c.prepare_job_timeout, Duration::from_secs(600));
        assert_eq!(c.runner_image, "ghcr.io/actions/actions-runner:latest");
        assert!(!c.use_kube_scheduler);
        assert_eq!(c.data_plane, DataPlaneSetting::Auto);
        assert!(!c.debug);
        assert_eq!(c.heartbeat_period, Duration::from_secs(5));
        assert_eq!(c.heartbeat_deadline, Duration::from_secs(61));
    }

    #[test]
    fn heartbeat_deadline_must_exceed_the_period() {
        let err = config(&[
            (HEARTBEAT_PERIOD_MS, "5000"),
            (HEARTBEAT_DEADLINE_MS, "1000"),
        ])
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("ACTIONS_RUNNER_HEARTBEAT_DEADLINE_MS"),
            "{err}"
        );
        let c = config(&[(HEARTBEAT_PERIOD_MS, "1000")]).unwrap();
        assert_eq!(c.heartbeat_deadline, Duration::from_millis(13_000));
    }

    #[test]
    fn missing_pod_name_names_the_variable() {
        let err = config(&[(RUNNER_POD_NAME, "  ")])
            .unwrap()
            .runner_pod_name()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "environment variable `ACTIONS_RUNNER_POD_NAME` is required but not set"
        );
    }

    #[test]
    fn invalid_values_name_the_variable_and_the_accepted_form() {
        let err = config(&[(PREPARE_JOB_TIMEOUT_SECONDS, "ten")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "environment variable `ACTIONS_RUNNER_PREPARE_JOB_TIMEOUT_SECONDS` has an invalid value `ten`: expected a positive whole number of seconds, e.g. `600`"
        );
        assert!(config(&[(PREPARE_JOB_TIMEOUT_SECONDS, "0")]).is_err());
        assert!(config(&[(USE_KUBE_SCHEDULER, "yes")]).is_err());
        assert!(config(&[(DATA_PLANE, "nfs")]).is_err());
        assert!(config(&[(KUBERNETES_NAMESPACE, "Bad_NS")]).is_err());
    }

    #[test]
    fn valid_values_parse() {
        let c = config(&[
            (PREPARE_JOB_TIMEOUT_SECONDS, "30"),
            (USE_KUBE_SCHEDULER, "TRUE"),
            (DATA_PLANE, "copy"),
            (RUNNER_DEBUG, "1"),
            (KUBERNETES_NAMESPACE, "arc-runners"),
        ])
        .unwrap();
        assert_eq!(c.prepare_job_timeout, Duration::from_secs(30));
        assert!(c.use_kube_scheduler);
        assert_eq!(c.data_plane, DataPlaneSetting::Copy);
        assert!(c.debug);
        assert_eq!(c.namespace.as_deref(), Some("arc-runners"));
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

    #[test]
    fn every_variable_is_documented() {
        let docs = include_str!("../../docs/user/configuration.md");
        let missing: Vec<&str> = ALL
            .iter()
            .copied()
            .filter(|var| !docs.contains(&format!("`{var}`")))
            .collect();
        assert!(
            missing.is_empty(),
            "docs/user/configuration.md does not document: {missing:?}"
        );
    }
}
