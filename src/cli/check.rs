//! `runner-k8s-hook check`: before the first job, tell in one screen whether jobs will work with
//! this service account, namespace and configuration, and what to change for each problem
//! (docs/user/check.md).
//!
//! ```text
//! runner-k8s-hook check [--namespace NS] [--job-image IMAGE] [--json]
//! ```
//! Exit code 0 when no check fails (warnings and skipped checks included), 1 otherwise, 130/143
//! on a signal (after deleting what the check created).
//!
//! This module parses arguments, connects, runs [`checks`] and prints the [`report`]; the
//! checks are the policy, the API calls are `k8s::check`'s, the pods `spec::check_pod`'s.

pub mod checks;
mod pods;
mod registry;
pub mod report;

use std::ffi::OsString;

use anyhow::Context as _;
use tokio::io::AsyncWriteExt as _;

use crate::cancel::{CANCEL_GRACE, Cancel, Cancelled};
use crate::config::{self, Config};
use crate::k8s;
use report::Report;

/// The usage text, also printed by `--help`.
pub const USAGE: &str = "\
usage: runner-k8s-hook check [--namespace NS] [--job-image IMAGE] [--json]

Check, with the runner's service account (in a runner pod) or a kubeconfig, whether jobs will
work in the namespace, and say what to change: permissions, volume or copy mode, the work claim,
the namespace's Pod Security level, the job image and the builder image (short-lived pods,
deleted at once), and the push registry (reachable from a pod, credentials accepted).

  --namespace NS     namespace of the job pods (default: ACTIONS_RUNNER_KUBERNETES_NAMESPACE,
                     else the kubeconfig's or the service account's)
  --job-image IMAGE  also start IMAGE as a job container would (e.g. node:22)
  --json             one JSON document instead of text (schema in docs/user/check.md)

Exit code: 0 when no check failed, 1 otherwise. The hook's variables apply
(docs/user/configuration.md); run it where the runner runs, with the same environment.
";

/// Arguments the `check` subcommand does not accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsageError {
    /// An argument that is not one of the options.
    #[error("unknown argument `{0}` for `check`")]
    Unknown(String),
    /// An option without its value.
    #[error("`{0}` needs a value")]
    MissingValue(&'static str),
    /// An option's value is not usable.
    #[error("`{option}` has an invalid value `{value}`: {reason}")]
    Invalid {
        /// The option.
        option: &'static str,
        /// What was given.
        value: String,
        /// Why it cannot be used.
        reason: &'static str,
    },
}

/// What to do, parsed from the arguments after `check`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Args {
    /// `--namespace`.
    pub namespace: Option<String>,
    /// `--job-image`.
    pub job_image: Option<String>,
    /// `--json`.
    pub json: bool,
    /// `--help`.
    pub help: bool,
}

impl Args {
    /// Parse the arguments after `check` (`lexopt` reads the command line; the messages are
    /// ours).
    ///
    /// # Errors
    /// [`UsageError`] for an unknown or incomplete argument.
    pub fn parse(args: &[OsString]) -> Result<Args, UsageError> {
        use lexopt::prelude::*;

        let mut parsed = Args::default();
        let mut parser = lexopt::Parser::from_args(args.iter().cloned());
        while let Some(arg) = parser.next().map_err(unknown)? {
            match arg {
                Short('n') | Long("namespace") => {
                    let namespace = value(&mut parser, "--namespace")?;
                    if !crate::spec::names::is_dns1123_label(&namespace) {
                        return Err(UsageError::Invalid {
                            option: "--namespace",
                            value: namespace,
                            reason: config::NAMESPACE_EXPECTED,
                        });
                    }
                    parsed.namespace = Some(namespace);
                }
                Long("job-image") => {
                    let image = value(&mut parser, "--job-image")?;
                    if image.trim().is_empty() || image.chars().any(char::is_whitespace) {
                        return Err(UsageError::Invalid {
                            option: "--job-image",
                            value: image,
                            reason: "an image reference, e.g. `node:22`",
                        });
                    }
                    parsed.job_image = Some(image);
                }
                Long("json") => parsed.json = true,
                Short('h') | Long("help") => parsed.help = true,
                Short(c) => return Err(UsageError::Unknown(format!("-{c}"))),
                Long(name) => return Err(UsageError::Unknown(format!("--{name}"))),
                Value(v) => return Err(UsageError::Unknown(v.to_string_lossy().into_owned())),
            }
        }
        Ok(parsed)
    }
}

fn value(parser: &mut lexopt::Parser, option: &'static str) -> Result<String, UsageError> {
    match parser.value() {
        Ok(value) => value.into_string().map_err(|value| UsageError::Invalid {
            option,
            value: value.to_string_lossy().into_owned(),
            reason: "not valid UTF-8",
        }),
        Err(_) => Err(UsageError::MissingValue(option)),
    }
}

fn unknown(error: lexopt::Error) -> UsageError {
    UsageError::Unknown(super::unknown_argument(error))
}

/// Run `runner-k8s-hook check` with the arguments after `check`, writing the report to
/// `stdout`. Returns whether every check passed (no `fail`). A signal on `cancel` deletes the
/// pods the check created (within [`CANCEL_GRACE`]) and returns [`Cancelled`].
///
/// # Errors
/// A [`UsageError`], no cluster configuration, [`Cancelled`], or a failure to write the report.
pub async fn run(
    args: &[OsString],
    config: &Config,
    stdout: &mut (dyn tokio::io::AsyncWrite + Send + Unpin),
    mut cancel: Cancel,
) -> anyhow::Result<bool> {
    let args = Args::parse(args)?;
    if args.help {
        stdout.write_all(USAGE.as_bytes()).await?;
        return Ok(true);
    }
    let mut config = config.clone();
    if let Some(namespace) = &args.namespace {
        config.namespace = Some(namespace.clone());
    }
    // Outside a runner pod, the check's pods are labelled as command-line build pods are.
    let label = config
        .runner_pod_name
        .clone()
        .unwrap_or_else(|| super::build::CLI_POD_PREFIX.to_owned());
    let session = k8s::Session::connect(&config, &label, k8s::UndoLog::default())
        .await
        .context("cannot check the cluster")?;
    let input = checks::Input {
        session: &session,
        job_image: args.job_image.as_deref(),
    };
    let findings = tokio::select! {
        findings = checks::run(&input) => findings,
        signal = crate::cancel::signalled(&mut cancel) => {
            session.undo_all(CANCEL_GRACE).await;
            return Err(Cancelled(signal).into());
        }
    };
    // Every pod is deleted as its check ends; this catches one whose delete failed.
    session.undo_all(CANCEL_GRACE).await;
    let report = Report::new(
        &session.namespace,
        config.runner_pod_name.as_deref(),
        findings,
    );
    let text = if args.json {
        report.json()
    } else {
        report.human()
    };
    stdout.write_all(text.as_bytes()).await?;
    stdout.flush().await?;
    Ok(report.passed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, UsageError> {
        Args::parse(&args.iter().map(OsString::from).collect::<Vec<_>>())
    }

    #[test]
    fn arguments_parse_in_both_forms() {
        let args = parse(&[
            "--namespace",
            "arc-runners",
            "--job-image=node:22",
            "--json",
        ])
        .unwrap();
        assert_eq!(args.namespace.as_deref(), Some("arc-runners"));
        assert_eq!(args.job_image.as_deref(), Some("node:22"));
        assert!(args.json);
        assert_eq!(
            parse(&["-n", "ns"]).unwrap().namespace.as_deref(),
            Some("ns")
        );
        assert!(parse(&["-h"]).unwrap().help);
        assert_eq!(parse(&[]).unwrap(), Args::default());
    }

    #[test]
    fn bad_arguments_say_what_is_wrong() {
        let error = |args: &[&str]| parse(args).unwrap_err().to_string();
        assert_eq!(error(&["--fix"]), "unknown argument `--fix` for `check`");
        assert_eq!(
            error(&["node:22"]),
            "unknown argument `node:22` for `check`"
        );
        assert_eq!(
            error(&["--json=yes"]),
            "unknown argument `--json=yes` for `check`"
        );
        assert_eq!(error(&["--job-image"]), "`--job-image` needs a value");
        assert!(error(&["--namespace", "Not_A_Namespace"]).contains("a namespace name"));
        assert!(error(&["--job-image", "a b"]).contains("an image reference"));
    }
}
