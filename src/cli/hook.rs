//! The hook entry: one request from stdin to a response file and an exit code.
//!
//! Owns the order of a hook invocation: parse the request, check the response file, connect
//! ([`k8s::Session`]), dispatch to [`crate::hooks`], write the response, and on a signal undo
//! what the command started. May use every layer below it; nothing but `main.rs` and the crate
//! root calls it.

use std::fs::OpenOptions;
use std::sync::{Arc, OnceLock};

use anyhow::Context as _;

use crate::cancel::{CANCEL_GRACE, Cancel, Cancelled, signalled};
use crate::hooks::{self, Outcome};
use crate::{config, k8s, protocol};

/// Run the hook for one request read from stdin: parse, check the response file, dispatch,
/// write the response. A signal arriving on `cancel` stops the command, undoes what it started
/// (within [`CANCEL_GRACE`]) and returns [`Cancelled`].
///
/// # Errors
/// Any failure of the command, with its cause chain.
pub async fn run(
    input: &str,
    config: &config::Config,
    mut cancel: Cancel,
) -> anyhow::Result<Outcome> {
    let session = Arc::new(OnceLock::new());
    let work = run_request(input, config, session.clone());
    tokio::select! {
        result = work => result,
        signal = signalled(&mut cancel) => {
            if let Some(session) = session.get() {
                k8s::Session::undo_all(session, CANCEL_GRACE).await;
            }
            Err(Cancelled(signal).into())
        }
    }
}

async fn run_request(
    input: &str,
    config: &config::Config,
    slot: Arc<OnceLock<k8s::Session>>,
) -> anyhow::Result<Outcome> {
    let request = protocol::parse_request(input)?;
    let command = request.command;
    let runner_pod = config
        .runner_pod_name()
        .with_context(|| format!("cannot run `{command}`"))?;
    // The runner creates the response file before starting us. Fail before creating anything in
    // the cluster if we would not be able to answer.
    if let Some(path) = &request.response_file {
        OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|source| protocol::ProtocolError::WriteResponse {
                path: path.clone(),
                source,
            })?;
    }
    let session = k8s::Session::connect(config, runner_pod, k8s::UndoLog::default())
        .await
        .with_context(|| format!("cannot run `{command}`"))?;
    let session = slot.get_or_init(|| session);
    let response_file = request.response_file.clone();
    let outcome = hooks::dispatch(request, session).await?;
    if let (Outcome::Success(Some(response)), Some(path)) = (&outcome, &response_file) {
        protocol::write_response(path, response).with_context(|| {
            format!("`{command}` finished but its response could not be written")
        })?;
    }
    Ok(outcome)
}
