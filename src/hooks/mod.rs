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

use crate::config::DataPlaneSetting;
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
    let config = &session.config;
    let default_claim = format!("{}-work", session.runner_pod);
    let claim = match config.data_plane {
        DataPlaneSetting::Copy => {
            info!("data plane: copy (ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_DATA_PLANE=copy)");
            return WorkVolume::EmptyDir;
        }
        DataPlaneSetting::Volume => config.claim_name.clone().unwrap_or(default_claim),
        DataPlaneSetting::Auto => {
            if let Some(claim) = &config.claim_name {
                claim.clone()
            } else if runner.is_some_and(|r| r.claims.contains(&default_claim)) {
                default_claim
            } else {
                info!(
                    "data plane: copy (the runner pod mounts no `{default_claim}` claim and ACTIONS_RUNNER_CLAIM_NAME is not set)"
                );
                return WorkVolume::EmptyDir;
            }
        }
    };
    let node = runner.and_then(|r| r.node_name.clone());
    let placement = match node {
        Some(node) if config.use_kube_scheduler => Placement::PreferNode(node),
        Some(node) => Placement::PinToNode(node),
        None => {
            warn!(
                "the runner's node is unknown: job pods are not pinned to it; a ReadWriteOnce work volume may fail to attach elsewhere"
            );
            Placement::Anywhere
        }
    };
    info!(claim = %claim, placement = ?placement, "data plane: volume");
    WorkVolume::Claim {
        claim_name: claim,
        placement,
    }
}

/// The tolerations our pods inherit from the runner pod (none when it could not be read).
pub(crate) fn runner_tolerations(runner: Option<&RunnerPod>) -> &[Toleration] {
    runner.map(|r| r.tolerations.as_slice()).unwrap_or_default()
}
