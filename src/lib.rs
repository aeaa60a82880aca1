//! runner-k8s-hook: a GitHub Actions runner container hook for Kubernetes.
//!
//! Data flows one way (docs/developer/architecture.md): stdin JSON → [`protocol`] (typed
//! request) → [`config`] (environment, validated once) → [`hooks`] (one module per command),
//! which plan objects with [`spec`] (pure), create and watch them with [`k8s`] (the only module
//! that calls the API), move files with [`transfer`] and build images with [`image`] → response
//! file + exit code. [`cli`] wires this to a process; `main.rs` only reads stdin, turns signals
//! into a [`Cancel`], and prints the outcome ([`error`]).
#![warn(missing_docs)]

pub mod cancel;
pub mod cli;
pub mod config;
pub mod error;
pub mod hooks;
pub mod image;
pub mod k8s;
pub mod logging;
pub mod paths;
pub mod protocol;
pub mod shell;
pub mod spec;
pub mod transfer;

pub use cancel::{CANCEL_GRACE, Cancel, Cancelled, Signal, signalled};
pub use cli::hook::run;
pub use hooks::Outcome;
