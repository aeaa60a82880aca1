//! One module per runner command, named exactly after it, and the single `match` that
//! dispatches a request to it.

use anyhow::Context as _;

use crate::config::Config;
use crate::k8s::Context;
use crate::protocol::{Args, Request, Response};

/// How a command ended, when it did not fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Done; write this response (if any) to the runner's response file.
    Success(Option<Response>),
    /// The step's own process ran and exited non-zero; the hook fails with the same code.
    StepExited(u8),
}

/// Run one request.
///
/// # Errors
/// Anything that stops the command, with context naming what failed.
pub async fn run(request: Request, config: &Config, runner_pod: &str) -> anyhow::Result<Outcome> {
    let command = request.command;
    let context = Context::connect(config, runner_pod)
        .await
        .with_context(|| format!("cannot run `{command}`"))?;
    dispatch(request, &context).await
}

async fn dispatch(request: Request, context: &Context) -> anyhow::Result<Outcome> {
    let command = request.command;
    match request.args {
        Args::PrepareJob(_)
        | Args::CleanupJob
        | Args::RunScriptStep(_)
        | Args::RunContainerStep(_) => {
            let _ = context;
            anyhow::bail!("`{command}` is not implemented in this build yet")
        }
    }
}
