//! `cleanup_job`: delete the job's pods and secrets, found by the `runner-pod` label and nothing
//! else. Idempotent: safe to run twice, after a failed `prepare_job`, or with no state at all.
//! Touches nothing without our label.

use anyhow::Context as _;
use tracing::info;

use super::Outcome;
use crate::k8s::Session;
use crate::protocol::State;

/// Run `cleanup_job`.
///
/// # Errors
/// When listing or deleting fails for another reason than "already gone".
pub async fn run(state: Option<State>, session: &Session) -> anyhow::Result<Outcome> {
    let (pods, secrets) = session.delete_ours(true, true).await.with_context(|| {
        format!(
            "failed to clean up the job of runner pod `{}`",
            session.runner_pod
        )
    })?;
    info!(
        job_pod = state.as_ref().map(|s| s.job_pod.as_str()).unwrap_or(""),
        pods, secrets, "job cleaned up"
    );
    Ok(Outcome::Success(None))
}
