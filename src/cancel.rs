//! Cancellation: the runner's signals as a value every long operation can wait on.
//!
//! Owns [`Signal`], [`Cancel`] and [`Cancelled`]. Imports nothing from the crate: every layer may
//! use it.

use std::time::Duration;

use tokio::sync::watch;

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

/// The first [`Signal`] sent on `cancel`. A closed channel means no signal can come: this then
/// never returns.
pub async fn signalled(cancel: &mut Cancel) -> Signal {
    match cancel.wait_for(Option::is_some).await {
        Ok(signal) => signal.expect("waited for Some"),
        Err(_) => std::future::pending().await,
    }
}
