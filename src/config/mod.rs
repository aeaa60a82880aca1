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
//!
//! Owns the hook's variables and their parsing; the build variables are in `config/build.rs` (re-exported
//! here). It calls nothing: other modules get a [`Config`].

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::image::options::OptionError;
use crate::spec::names::is_dns1123_label;

mod build;

pub use build::*;

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
    REUSE,
    BUILD_CACHE,
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
        let vars = Vars(vars.into_iter().collect());
        let seconds = |var: &'static str, default: Duration, expected: &'static str| {
            Ok::<_, ConfigError>(
                vars.positive(var, expected)?
                    .map_or(default, Duration::from_secs),
            )
        };
        let (heartbeat_period, heartbeat_deadline) = heartbeat(&vars)?;
        Ok(Config {
            runner_pod_name: vars.get(RUNNER_POD_NAME),
            namespace: namespace(&vars)?,
            hook_template: vars.get(HOOK_TEMPLATE).map(PathBuf::from),
            prepare_job_timeout: seconds(
                PREPARE_JOB_TIMEOUT_SECONDS,
                DEFAULT_PREPARE_JOB_TIMEOUT,
                "a positive whole number of seconds, e.g. `600`",
            )?,
            image_pull_timeout: seconds(
                IMAGE_PULL_TIMEOUT_SECONDS,
                DEFAULT_IMAGE_PULL_TIMEOUT,
                "a positive whole number of seconds, e.g. `180`",
            )?,
            runner_image: vars
                .get(RUNNER_IMAGE)
                .unwrap_or_else(|| DEFAULT_RUNNER_IMAGE.to_owned()),
            claim_name: vars.get(CLAIM_NAME),
            use_kube_scheduler: vars.bool(USE_KUBE_SCHEDULER, false)?,
            heartbeat_period,
            heartbeat_deadline,
            data_plane: vars.choice(
                DATA_PLANE,
                &[
                    ("auto", DataPlaneSetting::Auto),
                    ("volume", DataPlaneSetting::Volume),
                    ("copy", DataPlaneSetting::Copy),
                ],
                "one of `auto`, `volume`, `copy`",
            )?,
            runner_workspace: vars.get(RUNNER_WORKSPACE).map(PathBuf::from),
            runner_temp: vars.get(RUNNER_TEMP).map(PathBuf::from),
            github_workspace: vars.get(GITHUB_WORKSPACE).map(PathBuf::from),
            debug: vars.get(RUNNER_DEBUG).as_deref() == Some("1"),
            log_filter: vars.get(LOG),
            build: BuildConfig::from_vars(&vars)?,
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

/// [`KUBERNETES_NAMESPACE`]: a namespace name.
fn namespace(vars: &Vars) -> Result<Option<String>, ConfigError> {
    let namespace = vars.get(KUBERNETES_NAMESPACE);
    if let Some(ns) = &namespace
        && !is_dns1123_label(ns)
    {
        return Err(ConfigError::Invalid {
            var: KUBERNETES_NAMESPACE,
            value: ns.clone(),
            expected: NAMESPACE_EXPECTED,
        });
    }
    Ok(namespace)
}

/// [`HEARTBEAT_PERIOD_MS`] and [`HEARTBEAT_DEADLINE_MS`]: the deadline defaults to period × 12
/// + 1 s and must be longer than the period.
fn heartbeat(vars: &Vars) -> Result<(Duration, Duration), ConfigError> {
    let expected = "a positive whole number of milliseconds, e.g. `5000`";
    let period = vars
        .positive(HEARTBEAT_PERIOD_MS, expected)?
        .map_or(DEFAULT_HEARTBEAT_PERIOD, Duration::from_millis);
    let deadline = vars
        .positive(HEARTBEAT_DEADLINE_MS, expected)?
        .map_or(period * 12 + Duration::from_secs(1), Duration::from_millis);
    if deadline <= period {
        return Err(ConfigError::Invalid {
            var: HEARTBEAT_DEADLINE_MS,
            value: deadline.as_millis().to_string(),
            expected: "more milliseconds than `ACTIONS_RUNNER_HEARTBEAT_PERIOD_MS`",
        });
    }
    Ok((period, deadline))
}

/// The variables as given, read the way the TypeScript hook reads them: trimmed, and an empty
/// value means unset (`process.env.X || default`).
pub(crate) struct Vars(BTreeMap<String, String>);

impl Vars {
    /// The trimmed value, `None` when unset or empty.
    fn get(&self, name: &str) -> Option<String> {
        self.0
            .get(name)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    }

    /// A positive whole number; `expected` describes the accepted form in the error.
    fn positive(
        &self,
        var: &'static str,
        expected: &'static str,
    ) -> Result<Option<u64>, ConfigError> {
        match self.get(var) {
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
    }

    /// `true`/`1` or `false`/`0` in any case; `default` when unset.
    fn bool(&self, var: &'static str, default: bool) -> Result<bool, ConfigError> {
        let Some(value) = self.get(var) else {
            return Ok(default);
        };
        match value.to_ascii_lowercase().as_str() {
            "true" | "1" => Ok(true),
            "false" | "0" => Ok(false),
            _ => Err(ConfigError::Invalid {
                var,
                value,
                expected: "`true` or `false`",
            }),
        }
    }

    /// One of the named `choices`; the first is the default when unset.
    fn choice<T: Copy>(
        &self,
        var: &'static str,
        choices: &[(&str, T)],
        expected: &'static str,
    ) -> Result<T, ConfigError> {
        let Some(value) = self.get(var) else {
            return Ok(choices[0].1);
        };
        choices
            .iter()
            .find(|(name, _)| *name == value)
            .map(|(_, choice)| *choice)
            .ok_or(ConfigError::Invalid {
                var,
                value,
                expected,
            })
    }
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
