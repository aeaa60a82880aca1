//! `run_container_step`: a Docker container action as a pod of its own.

use super::Outcome;
use crate::k8s::Context;
use crate::protocol::{ContainerDefinition, State};

/// Run `run_container_step`.
///
/// # Errors
/// Always, until container steps are built (issue 4).
pub async fn run(
    _args: ContainerDefinition,
    _state: Option<State>,
    _context: &Context,
) -> anyhow::Result<Outcome> {
    anyhow::bail!("container steps (`run_container_step`) are not supported by this build yet")
}
