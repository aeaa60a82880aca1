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
    RUNNER_IMAGE,
    CLAIM_NAME,
    USE_KUBE_SCHEDULER,
    HEARTBEAT_PERIOD_MS,
    HEARTBEAT_DEADLINE_MS,
    DATA_PLANE,
    RUNNER_WORKSPACE,
    RUNNER_TEMP,
    GITHUB_WORKSPACE,
    RUNNER_DEBUG,
    LOG,
];

/// Default of [`PREPARE_JOB_TIMEOUT_SECONDS`].
pub const DEFAULT_PREPARE_JOB_TIMEOUT: Duration = Duration::from_secs(600);
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

        let prepare_job_timeout = match get(PREPARE_JOB_TIMEOUT_SECONDS) {
            None => DEFAULT_PREPARE_JOB_TIMEOUT,
            Some(v) => match v.parse::<u64>() {
                Ok(secs) if secs > 0 => Duration::from_secs(secs),
                _ => {
                    return Err(ConfigError::Invalid {
                        var: PREPARE_JOB_TIMEOUT_SECONDS,
                        value: v,
                        expected: "a positive whole number of seconds, e.g. `600`",
                    });
                }
            },
        };
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
            && !is_dns_label(ns)
        {
            return Err(ConfigError::Invalid {
                var: KUBERNETES_NAMESPACE,
                value: ns.clone(),
                expected: "a namespace name: lowercase letters, digits and `-`, at most 63 characters",
            });
        }

        Ok(Config {
            runner_pod_name: get(RUNNER_POD_NAME),
            namespace,
            hook_template: get(HOOK_TEMPLATE).map(PathBuf::from),
            prepare_job_timeout,
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

/// RFC 1123 label: what Kubernetes requires of a namespace name.
fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

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
        let docs = include_str!("../docs/user/configuration.md");
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
