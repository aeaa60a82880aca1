//! One module per runner command, named exactly after it, and the single `match` that
//! dispatches a request to it.

pub mod cleanup_job;
pub mod run_container_step;

use crate::k8s::Context;
use crate::protocol::{Args, Request, Response, State};

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
pub async fn dispatch(request: Request, context: &Context) -> anyhow::Result<Outcome> {
    let state = request.state;
    match request.args {
        Args::PrepareJob(_) => anyhow::bail!("`prepare_job` is not built yet"),
        Args::CleanupJob => cleanup_job::run(state, context).await,
        Args::RunScriptStep(_) => {
            require_job(state)?;
            anyhow::bail!("`run_script_step` is not built yet")
        }
        Args::RunContainerStep(args) => run_container_step::run(args, state, context).await,
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
