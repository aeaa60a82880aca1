//! How a failure is reported to the runner: one `::error::` workflow command (an annotation on
//! the job), then one `caused by:` line per cause and `hint:` lines, all on stderr.
//!
//! Hints are chosen by downcasting the error chain to the typed errors of `config`, `protocol`
//! and `k8s` (uv's `diagnostics.rs`), so the text that tells a user what to do lives here, in one
//! place, and is tested against the exact output.
//!
//! The top of the flow: it may name the error types of every layer, and nothing in the library
//! imports it (`main.rs` renders with it).

use crate::cli::build::UsageError;
use crate::config::{self, ConfigError};
use crate::image::BuildError;
use crate::k8s::K8sError;
use crate::k8s::exec::ExecError;
use crate::k8s::rbac::RbacError;
use crate::k8s::wait::WaitError;
use crate::protocol::ProtocolError;

/// What to grant when the API server refuses: ARC's stock Role, which is enough.
fn rbac_hint() -> String {
    format!(
        "the runner's service account needs the Role ARC's gha-runner-scale-set chart creates for `containerMode: kubernetes` ({}); with ARC, check that the runner pod runs as the chart's `<scale set name>-gha-rs-kube-mode` service account; without ARC, apply docs/user/rbac-role.yaml (see docs/user/rbac.md)",
        crate::k8s::rbac::CHART_ROLE
    )
}

/// The exit code for a failure of the hook itself (not of a step).
pub const EXIT_FAILURE: u8 = 1;

/// Render `error` as the lines the runner shows: `::error::<message>`, `caused by: <cause>`...,
/// `hint: <hint>`....
pub fn report(error: &anyhow::Error) -> String {
    render(error, true)
}

/// Render `error` for a terminal (`runner-k8s-hook build` outside a workflow): `error:
/// <message>` with its own line breaks, then the same `caused by:` and `hint:` lines as
/// [`report`].
pub fn report_plain(error: &anyhow::Error) -> String {
    render(error, false)
}

fn render(error: &anyhow::Error, workflow_command: bool) -> String {
    let top = error.to_string();
    let mut out = if workflow_command {
        format!("::error::{}\n", escape_data(&top))
    } else {
        format!("error: {top}\n")
    };
    // Some errors (kube's, io's) repeat their source in their own message; a cause already
    // said in full by an earlier line adds nothing.
    let mut said = vec![top];
    for cause in error.chain().skip(1) {
        let text = cause.to_string();
        if said.iter().any(|earlier| earlier.contains(&text)) {
            continue;
        }
        out.push_str(&format!("caused by: {}\n", text.replace('\n', " ")));
        said.push(text);
    }
    for hint in hints(error) {
        out.push_str(&format!("hint: {hint}\n"));
    }
    out
}

/// Escape a workflow-command message (`@actions/core` `escapeData`): `%`, CR and LF would
/// otherwise end or corrupt the command.
pub fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

fn hints(error: &anyhow::Error) -> Vec<String> {
    let mut hints = Vec::new();
    for cause in error.chain() {
        if let Some(e) = cause.downcast_ref::<ConfigError>() {
            match e {
                ConfigError::Missing {
                    var: config::RUNNER_POD_NAME,
                } => hints.push(format!(
                    "the hook names everything it creates after the runner pod: ARC sets `{}` from the pod's `metadata.name`; elsewhere, set it in the runner's environment (see docs/user/configuration.md)",
                    config::RUNNER_POD_NAME
                )),
                ConfigError::Missing {
                    var: config::REGISTRY_HOST,
                } => hints.push(format!(
                    "Dockerfile actions are built and pushed to a registry that the cluster's nodes can pull from: set `{}` (e.g. `ghcr.io/owner`), or `{}` and `{}` when pods and nodes reach it under different names, and `{}` for its credentials (see docs/user/dockerfile-actions.md)",
                    config::REGISTRY_HOST,
                    config::REGISTRY_HOST_PUSH,
                    config::REGISTRY_HOST_PULL,
                    config::REGISTRY_SECRET_NAME
                )),
                ConfigError::Options { .. } => hints.push(
                    "registry credentials and certificates come from the registry Secret and the CA setting, never from options; see docs/user/dockerfile-actions.md for the allowed options and why".to_owned(),
                ),
                ConfigError::Missing { .. } | ConfigError::Invalid { .. } => hints.push(
                    "see docs/user/configuration.md for every variable and its accepted values"
                        .to_owned(),
                ),
            }
        } else if let Some(e) = cause.downcast_ref::<ProtocolError>() {
            match e {
                ProtocolError::WriteResponse { .. } => hints.push(
                    "the runner creates the response file under `_work/_temp/_runner_hook_responses`; check that the runner's work directory is writable by the hook's user".to_owned(),
                ),
                _ => hints.push(
                    "this program is a container hook: the GitHub Actions runner starts it with one JSON request on stdin (set `ACTIONS_RUNNER_CONTAINER_HOOKS` to `dist/index.js`)".to_owned(),
                ),
            }
        } else if let Some(e) = cause.downcast_ref::<K8sError>()
            && let Some(hint) = e.hint()
        {
            hints.push(hint);
        } else if let Some(RbacError::Missing { .. }) = cause.downcast_ref::<RbacError>() {
            hints.push(rbac_hint());
        } else if let Some(kube::Error::Api(status)) = cause.downcast_ref::<kube::Error>() {
            if status.code == 403 {
                hints.push(rbac_hint());
            }
        } else if let Some(e) = cause.downcast_ref::<WaitError>() {
            match e {
                WaitError::Failed { failure, .. } if failure.is_image_pull() => hints.push(
                    "check the image name and tag, and that the cluster can pull it: private images need `credentials:` on the container in the workflow (the hook turns them into an image pull secret)".to_owned(),
                ),
                WaitError::Timeout {
                    stalled: Some(failure),
                    ..
                } if failure.is_unschedulable() => hints.push(format!(
                    "no node could run the pod in time: check its resource requests, node selectors and tolerations in the hook template, whether the cluster autoscaler can add a node of that shape, and, in volume mode with a ReadWriteOnce claim, that the runner's node has room (the pod must run where the work volume is); raise `{}` if new nodes take longer to arrive",
                    config::PREPARE_JOB_TIMEOUT_SECONDS
                )),
                WaitError::Timeout { .. } => hints.push(format!(
                    "raise `{}` if pods legitimately take longer to start (large images, node scale-up)",
                    config::PREPARE_JOB_TIMEOUT_SECONDS
                )),
                _ => {}
            }
        } else if let Some(e) = cause.downcast_ref::<BuildError>() {
            if let Some(hint) = build_hint(e) {
                hints.push(hint);
            }
        } else if let Some(e) = cause.downcast_ref::<crate::transfer::AttemptFailure>() {
            match e {
                crate::transfer::AttemptFailure::RemoteExit { code, stderr }
                    if *code == 127 || stderr.contains("not found") =>
                {
                    hints.push(
                        "copy mode runs `sh`, `mkdir`, `head -c`, `tar`, `find` and `sha256sum` in the container: use a job image that has them (any BusyBox, Alpine, Debian, Ubuntu or UBI image), or use volume mode".to_owned(),
                    )
                }
                crate::transfer::AttemptFailure::Mismatch { .. } => hints.push(
                    "something in the pod changed the files while they were copied; if a service or sidecar writes into the workspace, make it write elsewhere".to_owned(),
                ),
                _ => {}
            }
        } else if let Some(e) = cause.downcast_ref::<crate::image::context::ContextError>() {
            if let Some(hint) = e.hint() {
                hints.push(hint);
            }
        } else if cause.downcast_ref::<UsageError>().is_some() {
            hints.push(
                "usage: runner-k8s-hook build --context DIR [--file F] --image REF [--build-arg K=V]... [--no-push] [--user USER] (see `runner-k8s-hook build --help`)".to_owned(),
            );
        } else if let Some(e) = cause.downcast_ref::<ExecError>() {
            match e {
                ExecError::HeartbeatTimeout { .. } | ExecError::Connection { .. } | ExecError::ClosedWithoutStatus { .. } => hints.push(format!(
                    "the connection to the API server was lost; if a proxy or load balancer drops idle connections, lower `{}`",
                    config::HEARTBEAT_PERIOD_MS
                )),
                ExecError::Connect { .. } => hints.push(
                    "the pod or its container may have stopped (evicted, OOM-killed, deleted); `kubectl describe pod` shows why".to_owned(),
                ),
                _ => {}
            }
        }
    }
    hints.dedup();
    hints
}

/// What to do about a failed build.
fn build_hint(error: &BuildError) -> Option<String> {
    let not_installed =
        |lines: &[String]| lines.iter().any(|l| l.contains("buildah is not installed"));
    match error {
        BuildError::PushRefused { .. } => Some(format!(
            "the registry refused the credentials: check the `kubernetes.io/dockerconfigjson` Secret named by `{}` (its `auths` key must be the registry host, e.g. `ghcr.io` or `registry.ns.svc:5000`) and that its account may push to this repository (the `build` command reads `--authfile`)",
            config::REGISTRY_SECRET_NAME
        )),
        BuildError::BuildFailed { .. } if error.is_auth_failure() => Some(format!(
            "a registry refused a pull during the build (a private `FROM` image): put credentials for that registry in the Secret named by `{}` too",
            config::REGISTRY_SECRET_NAME
        )),
        BuildError::BuildFailed { .. } => Some(
            "a step of the Dockerfile failed: the whole build log is above, in the build's log group".to_owned(),
        ),
        BuildError::PushFailed { .. } => Some(format!(
            "check that the build pod reaches the push host (`{}` or `{}`); for a registry with a private CA set `{}`, for one on plain HTTP add `--tls-verify=false` to `{}` and `{}`",
            config::REGISTRY_HOST_PUSH,
            config::REGISTRY_HOST,
            config::REGISTRY_CA,
            config::BUILD_OPTIONS,
            config::PUSH_OPTIONS
        )),
        BuildError::DockerfileMissing { .. } => Some(
            "`runs.image` in action.yml names the Dockerfile relative to the action's directory; the build context is the Dockerfile's directory, and `.dockerignore` must not exclude the Dockerfile".to_owned(),
        ),
        BuildError::Timeout { .. } => Some(format!(
            "raise `{}` for builds that legitimately take longer; the pod's resources are set by `{}`",
            config::BUILD_TIMEOUT_SECONDS,
            config::BUILDER_RESOURCES
        )),
        BuildError::Start { program, .. } if program == "runuser" => Some(
            "`--user` needs root and `runuser` (util-linux); without `--user` the build runs as the current user".to_owned(),
        ),
        BuildError::Setup { last_lines } if not_installed(last_lines) => Some(
            "install Buildah (`apt-get install buildah uidmap`, or `scripts/install-deps.sh demo`)".to_owned(),
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context as _;

    #[test]
    fn escapes_workflow_command_data() {
        assert_eq!(escape_data("50% done\r\nnext"), "50%25 done%0D%0Anext");
    }

    #[test]
    fn plain_report_keeps_line_breaks_for_a_terminal() {
        let err = anyhow::anyhow!("the build failed; last lines:\n  STEP 2/2: RUN false (100%)")
            .context("cannot build `r:5000/x`");
        assert_eq!(
            report_plain(&err),
            "error: cannot build `r:5000/x`\ncaused by: the build failed; last lines:   STEP 2/2: RUN false (100%)\n"
        );
        let err = anyhow::anyhow!("line one\nline two (100%)");
        assert_eq!(report_plain(&err), "error: line one\nline two (100%)\n");
        assert_eq!(report(&err), "::error::line one%0Aline two (100%25)\n");
    }

    #[test]
    fn report_has_annotation_causes_and_hint() {
        let err = Err::<(), _>(ConfigError::Missing {
            var: config::RUNNER_POD_NAME,
        })
        .context("cannot run `prepare_job`")
        .unwrap_err();
        let text = report(&err);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "::error::cannot run `prepare_job`");
        assert_eq!(
            lines[1],
            "caused by: environment variable `ACTIONS_RUNNER_POD_NAME` is required but not set"
        );
        assert!(
            lines[2].starts_with("hint: the hook names everything"),
            "{text}"
        );
        assert_eq!(lines.len(), 3);
    }

    #[test]
    fn causes_repeated_by_an_earlier_line_are_left_out() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let err = anyhow::Error::new(io)
            .context("failed to read `x`: no such file")
            .context("cannot start");
        assert_eq!(
            report(&err),
            "::error::cannot start\ncaused by: failed to read `x`: no such file\n"
        );
    }

    #[test]
    fn a_copy_that_finds_no_tar_says_which_tools_copy_mode_needs() {
        let err = anyhow::Error::new(crate::transfer::CopyError::CopyIn {
            local_dir: "/home/runner/_work".into(),
            remote_dir: "/__w".into(),
            attempts: 3,
            failure: crate::transfer::AttemptFailure::RemoteExit {
                code: 127,
                stderr: "sh: tar: not found".into(),
            },
        });
        let text = report(&err);
        assert!(
            text.contains("caused by: the copy script in the pod exited with code 127"),
            "{text}"
        );
        assert!(
            text.contains("hint: copy mode runs `sh`, `mkdir`, `head -c`, `tar`"),
            "{text}"
        );
    }

    #[test]
    fn build_failures_get_hints_that_name_the_variable_to_change() {
        let lines = |l: &str| vec![l.to_owned()];
        let refused = BuildError::PushRefused {
            image: "r:5000/o/a:t".into(),
            last_lines: lines("unauthorized: authentication required"),
        };
        let text = report(&anyhow::Error::new(refused).context("cannot build the action"));
        assert!(
            text.contains("hint: the registry refused the credentials: check the `kubernetes.io/dockerconfigjson` Secret named by `ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_REGISTRY_SECRET_NAME`"),
            "{text}"
        );
        let base_pull = BuildError::BuildFailed {
            image: "r:5000/o/a:t".into(),
            last_lines: lines(
                "Error: creating build container: initializing source docker://private/base: reading manifest latest: unauthorized",
            ),
        };
        assert!(
            report(&anyhow::Error::new(base_pull))
                .contains("hint: a registry refused a pull during the build")
        );
        let timeout = BuildError::Timeout {
            image: "r:5000/o/a:t".into(),
            after: std::time::Duration::from_secs(1800),
        };
        let text = report(&anyhow::Error::new(timeout));
        assert_eq!(
            text,
            "::error::building `r:5000/o/a:t` did not finish within 1800 s and was stopped\nhint: raise `ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_BUILD_TIMEOUT_SECONDS` for builds that legitimately take longer; the pod's resources are set by `ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_BUILDER_RESOURCES`\n"
        );
        let missing = ConfigError::Missing {
            var: config::REGISTRY_HOST,
        };
        assert!(
            report(&anyhow::Error::new(missing))
                .contains("hint: Dockerfile actions are built and pushed to a registry")
        );
    }

    #[test]
    fn multi_line_messages_stay_one_annotation() {
        let err = anyhow::anyhow!("first line\nsecond line");
        assert_eq!(report(&err), "::error::first line%0Asecond line\n");
    }
}
