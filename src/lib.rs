//! runner-k8s-hook: a GitHub Actions runner container hook for Kubernetes.
//!
//! Data flows one way: stdin JSON → [`protocol`] (typed request) → [`config`] (environment,
//! validated once) → [`hooks`] (one module per command) → [`k8s`] (the only module that calls the
//! API) → response file + exit code. `main.rs` only wires this to the process: it reads stdin,
//! races the command against signals and prints the outcome.
#![warn(missing_docs)]

pub mod config;
pub mod error;
pub mod hooks;
pub mod k8s;
pub mod logging;
pub mod protocol;

use std::fs::OpenOptions;

use anyhow::Context as _;

pub use hooks::Outcome;

/// Run the hook for one request read from stdin: parse, check the response file, dispatch,
/// write the response.
///
/// # Errors
/// Any failure of the command, with its cause chain.
pub async fn run(input: &str, config: &config::Config) -> anyhow::Result<Outcome> {
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
    let response_file = request.response_file.clone();
    let outcome = hooks::run(request, config, runner_pod).await?;
    if let (Outcome::Success(Some(response)), Some(path)) = (&outcome, &response_file) {
        protocol::write_response(path, response).with_context(|| {
            format!("`{command}` finished but its response could not be written")
        })?;
    }
    Ok(outcome)
}
