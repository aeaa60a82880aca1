//! The pod executor of the build engine: runs [`crate::build::script`] in a build pod.
//!
//! It creates the pod ([`crate::build::pod::build_pod`]), fills the context in copy mode through
//! the `stage` init container, streams the build log live, waits for the build container's end
//! by watch (failing fast on image-pull and scheduling errors), reads `<ref>@<digest>` from the
//! termination message, and deletes the pod in every case.

use std::time::Instant;

use futures::future::BoxFuture;
use tokio::io::AsyncWrite;
use tracing::{debug, info, warn};

use super::names::BUILD_CONTAINER;
use super::wait::{self, Goal, Reached};
use super::{Context, Undo};
use crate::build::pod::{self, BuildPodInput, READY_MARKER, STAGE_CONTAINER};
use crate::build::{self, BuildError, BuildOutcome, BuildSpec, Executor, LastLines};
use crate::config::BuilderProfile;
use crate::workspace::{self, CopyOptions, PackedDir};

/// Where the context comes from.
pub enum PodContext<'a> {
    /// Volume mode: this read-only `subPath` of the work volume claim.
    Volume {
        /// The claim.
        claim_name: &'a str,
        /// The context relative to `_work`.
        sub_path: &'a str,
        /// Node placement, as for step pods.
        placement: &'a crate::k8s::spec::Placement,
    },
    /// Copy mode: this archive, streamed into the `stage` init container.
    Copy(&'a PackedDir),
}

/// Runs builds as pods.
pub struct PodExecutor<'a> {
    /// The hook's context (client, namespace, configuration, undo log).
    pub context: &'a Context,
    /// The runner pod as owner, when known.
    pub owner: Option<&'a crate::k8s::spec::Owner>,
    /// The build context's source.
    pub source: PodContext<'a>,
    /// The hook template (`$build` applies).
    pub template: Option<&'a crate::k8s::template::Template>,
    /// The runner pod's tolerations, which the build pod carries.
    pub tolerations: &'a [k8s_openapi::api::core::v1::Toleration],
}

impl Executor for PodExecutor<'_> {
    fn run<'a>(
        &'a self,
        spec: &'a BuildSpec,
        log: &'a mut (dyn AsyncWrite + Send + Unpin),
    ) -> BoxFuture<'a, Result<BuildOutcome, BuildError>> {
        Box::pin(async move {
            let result = self.run_pod(spec, log).await;
            // The build pod is deleted in every case: success, failure, timeout.
            self.context.undo_all(crate::CANCEL_GRACE).await;
            result
        })
    }
}

impl PodExecutor<'_> {
    async fn run_pod(
        &self,
        spec: &BuildSpec,
        log: &mut (dyn AsyncWrite + Send + Unpin),
    ) -> Result<BuildOutcome, BuildError> {
        let context = self.context;
        let config = &context.config.build;
        let started = Instant::now();
        let command = build::script::argv(spec);
        let source = match &self.source {
            PodContext::Volume {
                claim_name,
                sub_path,
                placement,
            } => pod::ContextSource::Volume {
                claim_name,
                sub_path,
                placement,
            },
            PodContext::Copy(_) => pod::ContextSource::Copy {
                stage_image: &context.config.runner_image,
            },
        };
        let pod_spec = pod::build_pod(&BuildPodInput {
            runner_pod: &context.runner_pod,
            suffix: &super::names::random_suffix(),
            owner: self.owner,
            profile: config.profile,
            seccomp_localhost: config.seccomp_profile.as_deref(),
            builder_image: &config.builder_image,
            builder_pull_secret: None,
            registry_secret: config.registry_secret_name.as_deref(),
            ca: config.registry_ca.as_ref(),
            resources: &config.resources,
            command: &command,
            context: source,
            template: self.template,
            tolerations: self.tolerations,
        })
        .map_err(|e| setup_error(format!("cannot build the build pod: {e}")))?;
        let name = pod_spec.metadata.name.clone().unwrap_or_default();
        if config.profile == BuilderProfile::Root {
            warn!(pod = %name, "builder profile `root`: the Dockerfile's RUN steps run as root on the node (no user namespace)");
        }
        let created = match context.create_pod(&pod_spec).await {
            Ok(created) => created,
            Err(crate::k8s::objects::ObjectError::Create { source, .. }) => {
                let message = match &source {
                    kube::Error::Api(status) => status.message.clone(),
                    other => other.to_string(),
                };
                return Err(setup_error(format!(
                    "the cluster refused the build pod: {}",
                    pod::explain_rejection(config.profile, &message)
                )));
            }
            Err(other) => return Err(setup_error(format!("{other}"))),
        };
        context.undo.push(Undo::DeletePod(name.clone()));
        pod::verify_created(config.profile, &created).map_err(|e| setup_error(e.to_string()))?;

        let start_timeout = context.config.prepare_job_timeout;
        if let PodContext::Copy(packed) = &self.source {
            wait::until(
                context,
                &name,
                &Goal::InitRunning {
                    container: STAGE_CONTAINER.to_owned(),
                },
                start_timeout,
            )
            .await
            .map_err(|e| setup_error(format!("the build pod did not start: {e}")))?;
            let stage = context.exec_in(&name, STAGE_CONTAINER);
            let report = workspace::copy_in_packed(
                &stage,
                packed,
                pod::CONTEXT_DIR,
                &CopyOptions::default(),
            )
            .await
            .map_err(|e| {
                setup_error(format!(
                    "failed to copy the build context into `{name}`: {e}"
                ))
            })?;
            debug!(%report, "build context copied");
            context
                .create_file(&name, STAGE_CONTAINER, READY_MARKER)
                .await
                .map_err(|e| setup_error(format!("could not release the build pod: {e:#}")))?;
        }

        wait::until(
            context,
            &name,
            &Goal::Started {
                container: BUILD_CONTAINER.to_owned(),
            },
            start_timeout,
        )
        .await
        .map_err(|e| setup_error(format!("the build pod did not start: {e}")))?;
        info!(pod = %name, elapsed = ?started.elapsed(), "build started");

        let mut last = LastLines::default();
        let follow = follow_log(context, &name, log, &mut last);
        let terminated = Goal::Terminated {
            container: BUILD_CONTAINER.to_owned(),
        };
        let end = wait::until(context, &name, &terminated, config.timeout);
        let (followed, end) = crate::k8s::logs::follow_until(follow, end).await;
        if let Some(Err(e)) = followed {
            warn!(error = %e, "the build log could not be followed to the end");
        }
        let reached = match end {
            Ok((_, reached)) => reached,
            Err(wait::WaitError::Timeout { .. }) => {
                return Err(BuildError::Timeout {
                    image: spec.image.clone(),
                    after: config.timeout,
                });
            }
            Err(e) => {
                let mut lines = last.into_vec();
                lines.push(e.to_string());
                return Err(BuildError::Exited {
                    code: None,
                    last_lines: lines,
                });
            }
        };
        let Reached::Terminated {
            exit_code, message, ..
        } = reached
        else {
            unreachable!("a Terminated goal ends terminated");
        };
        info!(pod = %name, exit_code, elapsed = ?started.elapsed(), "build ended");
        if exit_code != 0 {
            return Err(build::failure(spec, Some(exit_code), last.into_vec()));
        }
        build::parse_result(spec, message.as_deref().unwrap_or_default())
    }
}

/// A failure of the pod around the build, reported like the script's own setup failures.
fn setup_error(line: String) -> BuildError {
    BuildError::Setup {
        last_lines: vec![line],
    }
}

/// Copy the build container's log to `log` as it comes, keeping the last lines.
async fn follow_log(
    context: &Context,
    pod: &str,
    log: &mut (dyn AsyncWrite + Send + Unpin),
    last: &mut LastLines,
) -> anyhow::Result<()> {
    let mut keep = |line: &[u8]| {
        let text = String::from_utf8_lossy(line);
        last.push(text.strip_suffix('\n').unwrap_or(&text));
    };
    crate::k8s::logs::follow(context, pod, BUILD_CONTAINER, log, &mut keep).await?;
    Ok(())
}
