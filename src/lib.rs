//! runner-k8s-hook: a GitHub Actions runner container hook for Kubernetes.
//!
//! Data flows one way: stdin JSON → [`protocol`] (typed request) → [`config`] (environment,
//! validated once) → [`hooks`] (one module per command) → [`k8s`] (the only module that calls the
//! API) / [`workspace`] (moves files) → response file + exit code. `main.rs` only wires this to
//! the process: it reads stdin, turns signals into a [`Cancel`], and prints the outcome.
#![warn(missing_docs)]

pub mod build;
pub mod config;
pub mod error;
pub mod hooks;
pub mod k8s;
pub mod logging;
pub mod paths;
pub mod protocol;
pub mod shell;
pub mod workspace;

use std::fs::OpenOptions;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::watch;

pub use hooks::Outcome;

/// How long the clean-up after a signal may take. The runner sends SIGINT, waits 7.5 s, then
/// SIGTERM, then kills the process tree 2.5 s later (`ProcessInvoker.cs`); stopping the remote
/// step and deleting what this command created must fit well inside the first window.
pub const CANCEL_GRACE: Duration = Duration::from_secs(5);

/// A signal that cancels the command in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGINT: the runner's first cancellation signal.
    Interrupt,
    /// SIGTERM: the runner's second.
    Terminate,
}

impl Signal {
    /// `SIGINT` / `SIGTERM`.
    pub fn name(self) -> &'static str {
        match self {
            Signal::Interrupt => "SIGINT",
            Signal::Terminate => "SIGTERM",
        }
    }

    /// 128 + the signal number, as a shell reports a process killed by it.
    pub fn exit_code(self) -> u8 {
        match self {
            Signal::Interrupt => 130,
            Signal::Terminate => 143,
        }
    }
}

/// The command was cancelled by a signal; what it had started was stopped and deleted.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the hook was cancelled by {}", .0.name())]
pub struct Cancelled(pub Signal);

/// Where cancellation comes from: the first [`Signal`] sent into the channel.
pub type Cancel = watch::Receiver<Option<Signal>>;

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
    let context = Arc::new(OnceLock::new());
    let work = run_request(input, config, context.clone());
    tokio::select! {
        result = work => result,
        signal = signalled(&mut cancel) => {
            if let Some(context) = context.get() {
                k8s::Context::undo_all(context, CANCEL_GRACE).await;
            }
            Err(Cancelled(signal).into())
        }
    }
}

/// The first [`Signal`] sent on `cancel`. A closed channel means no signal can come: this then
/// never returns.
pub async fn signalled(cancel: &mut Cancel) -> Signal {
    match cancel.wait_for(Option::is_some).await {
        Ok(signal) => signal.expect("waited for Some"),
        Err(_) => std::future::pending().await,
    }
}

async fn run_request(
    input: &str,
    config: &config::Config,
    slot: Arc<OnceLock<k8s::Context>>,
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
    let context = k8s::Context::connect(config, runner_pod, k8s::UndoLog::default())
        .await
        .with_context(|| format!("cannot run `{command}`"))?;
    let context = slot.get_or_init(|| context);
    let response_file = request.response_file.clone();
    let outcome = hooks::dispatch(request, context).await?;
    if let (Outcome::Success(Some(response)), Some(path)) = (&outcome, &response_file) {
        protocol::write_response(path, response).with_context(|| {
            format!("`{command}` finished but its response could not be written")
        })?;
    }
    Ok(outcome)
}
