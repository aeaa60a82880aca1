//! One module per runner command, named exactly after it, and the single `match` that
//! dispatches a request to it.
//!
//! Owns what each command does and in which order: the policy. The mechanics are below it:
//! objects are planned by `spec`, created and awaited through `k8s`, files moved by `transfer`,
//! images built by `image`. A hook module never calls the API client itself, and no hook module
//! borrows from a sibling: what steps share is in [`step`].

pub mod build_action;
pub mod cleanup_job;
pub mod prepare_job;
pub mod run_container_step;
pub mod run_script_step;
pub mod step;

use std::path::PathBuf;

use anyhow::Context as _;
use k8s_openapi::api::core::v1::Toleration;
use tracing::{info, warn};

use crate::config::{CLAIM_NAME, Config, DATA_PLANE, DataPlaneSetting};
use crate::k8s::Session;
use crate::k8s::objects::RunnerPod;
use crate::protocol::{Args, Request, Response, State};
use crate::spec::{Placement, WorkVolume};

/// How a command ended, when it did not fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Done; write this response (if any) to the runner's response file.
    Success(Option<Response>),
    /// The step's own process ran and exited non-zero; the hook fails with the same code.
    StepExited(u8),
}

/// Run one request against the cluster.
///
/// # Errors
/// Anything that stops the command, with context naming what failed.
pub async fn dispatch(request: Request, session: &Session) -> anyhow::Result<Outcome> {
    let state = request.state;
    match request.args {
        Args::PrepareJob(args) => prepare_job::run(args, session).await,
        Args::CleanupJob => cleanup_job::run(state, session).await,
        Args::RunScriptStep(args) => run_script_step::run(args, require_job(state)?, session).await,
        Args::RunContainerStep(args) => run_container_step::run(args, state, session).await,
    }
}

/// The state of a job that has a job pod; steps in it need one.
fn require_job(state: Option<State>) -> anyhow::Result<State> {
    match state {
        Some(state) if !state.job_pod.is_empty() => Ok(state),
        _ => anyhow::bail!(
            "no job pod in the hook state: `prepare_job` did not run for this job or failed (a script step needs the job container)"
        ),
    }
}

/// The runner's `_work` directory: the parent of `RUNNER_WORKSPACE` (`<_work>/<repo>`), as the
/// TypeScript hook derives it.
pub(crate) fn runner_work_dir(session: &Session) -> anyhow::Result<PathBuf> {
    let workspace = session.config.runner_workspace.as_deref().context(
        "environment variable `RUNNER_WORKSPACE` is not set: the hook must be started by the runner",
    )?;
    workspace
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(PathBuf::from)
        .with_context(|| {
            format!(
                "`RUNNER_WORKSPACE` is `{}`, expected `<_work>/<repository>`",
                workspace.display()
            )
        })
}

/// Volume mode when configured, or when the runner pod mounts its work claim; copy mode
/// otherwise (docs/user/install-arc.md). The choice and its reason are logged.
pub(crate) fn choose_work_volume(session: &Session, runner: Option<&RunnerPod>) -> WorkVolume {
    let choice = decide_work_volume(&session.config, &session.runner_pod, runner);
    match &choice.volume {
        WorkVolume::EmptyDir => info!("data plane: copy ({})", choice.reason),
        WorkVolume::Claim {
            claim_name,
            placement,
        } => {
            if matches!(placement, Placement::Anywhere) {
                warn!(
                    "the runner's node is unknown: job pods are not pinned to it; a ReadWriteOnce work volume may fail to attach elsewhere"
                );
            }
            info!(claim = %claim_name, placement = ?placement, "data plane: volume ({})", choice.reason);
        }
    }
    choice.volume
}

/// The data plane and why: [`decide_work_volume`]'s answer.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkVolumeChoice {
    /// The work volume of the job's pods (a claim: volume mode; an emptyDir: copy mode).
    pub volume: WorkVolume,
    /// Why, in words (which variable or what about the runner pod decided it).
    pub reason: String,
}

/// The one decision between volume and copy mode, for the hook (`choose_work_volume`) and
/// `runner-k8s-hook check` alike: `ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_DATA_PLANE` when it is
/// `volume` or `copy`; otherwise volume mode when `ACTIONS_RUNNER_CLAIM_NAME` is set or the
/// runner pod (`runner`, when it could be read) mounts `<runner_pod>-work`. In volume mode the
/// pods are pinned to the runner's node, or prefer it with `ACTIONS_RUNNER_USE_KUBE_SCHEDULER`.
pub fn decide_work_volume(
    config: &Config,
    runner_pod: &str,
    runner: Option<&RunnerPod>,
) -> WorkVolumeChoice {
    let default_claim = format!("{runner_pod}-work");
    let copy = |reason: String| WorkVolumeChoice {
        volume: WorkVolume::EmptyDir,
        reason,
    };
    let (claim, reason) = match config.data_plane {
        DataPlaneSetting::Copy => {
            return copy(format!("{DATA_PLANE}=copy"));
        }
        DataPlaneSetting::Volume => match &config.claim_name {
            Some(claim) => (claim.clone(), format!("{DATA_PLANE}=volume, {CLAIM_NAME}")),
            None => (default_claim, format!("{DATA_PLANE}=volume")),
        },
        DataPlaneSetting::Auto => {
            if let Some(claim) = &config.claim_name {
                (claim.clone(), format!("{CLAIM_NAME} is set"))
            } else if runner.is_some_and(|r| r.claims.contains(&default_claim)) {
                (
                    default_claim,
                    "the runner pod mounts its work claim".to_owned(),
                )
            } else if runner.is_none() {
                return copy(format!(
                    "the runner pod `{runner_pod}` could not be read and {CLAIM_NAME} is not set"
                ));
            } else {
                return copy(format!(
                    "the runner pod mounts no `{default_claim}` claim and {CLAIM_NAME} is not set"
                ));
            }
        }
    };
    let node = runner.and_then(|r| r.node_name.clone());
    let placement = match node {
        Some(node) if config.use_kube_scheduler => Placement::PreferNode(node),
        Some(node) => Placement::PinToNode(node),
        None => Placement::Anywhere,
    };
    WorkVolumeChoice {
        volume: WorkVolume::Claim {
            claim_name: claim,
            placement,
        },
        reason,
    }
}

/// The tolerations our pods inherit from the runner pod (none when it could not be read).
pub(crate) fn runner_tolerations(runner: Option<&RunnerPod>) -> &[Toleration] {
    runner.map(|r| r.tolerations.as_slice()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> Config {
        Config::from_vars(vars.iter().map(|(k, v)| (k.to_string(), v.to_string()))).unwrap()
    }

    fn runner(claims: &[&str]) -> RunnerPod {
        RunnerPod {
            node_name: Some("node-1".into()),
            claims: claims.iter().map(|c| c.to_string()).collect(),
            ..RunnerPod::default()
        }
    }

    #[test]
    fn the_data_plane_is_decided_once_with_its_reason() {
        let volume = decide_work_volume(&config(&[]), "r", Some(&runner(&["r-work"])));
        assert_eq!(
            volume.volume,
            WorkVolume::Claim {
                claim_name: "r-work".into(),
                placement: Placement::PinToNode("node-1".into())
            }
        );
        assert_eq!(volume.reason, "the runner pod mounts its work claim");

        let copy = decide_work_volume(&config(&[]), "r", Some(&runner(&[])));
        assert_eq!(copy.volume, WorkVolume::EmptyDir);
        assert_eq!(
            copy.reason,
            "the runner pod mounts no `r-work` claim and ACTIONS_RUNNER_CLAIM_NAME is not set"
        );

        let forced = decide_work_volume(
            &config(&[(DATA_PLANE, "copy")]),
            "r",
            Some(&runner(&["r-work"])),
        );
        assert_eq!(forced.volume, WorkVolume::EmptyDir);
        assert_eq!(forced.reason, format!("{DATA_PLANE}=copy"));

        let named = decide_work_volume(
            &config(&[
                (CLAIM_NAME, "shared"),
                ("ACTIONS_RUNNER_USE_KUBE_SCHEDULER", "true"),
            ]),
            "r",
            Some(&runner(&[])),
        );
        assert_eq!(
            named.volume,
            WorkVolume::Claim {
                claim_name: "shared".into(),
                placement: Placement::PreferNode("node-1".into())
            }
        );
        assert_eq!(named.reason, format!("{CLAIM_NAME} is set"));

        let unknown_node = decide_work_volume(&config(&[(DATA_PLANE, "volume")]), "r", None);
        assert_eq!(
            unknown_node.volume,
            WorkVolume::Claim {
                claim_name: "r-work".into(),
                placement: Placement::Anywhere
            }
        );
    }
}
