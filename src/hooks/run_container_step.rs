//! `run_container_step`: a Docker container action as a pod of its own, the way the runner's
//! Docker implementation runs it: the image's own ENTRYPOINT/CMD (or the action's `entrypoint`),
//! the runner's `/github/*` layout, the live log in the step log, the container's exit code, and
//! its results (outputs, env, summary, workspace files) where the next steps find them.
//!
//! In volume mode the step pod mounts the work volume and everything is in place. In copy mode
//! the workspace is brought up to date from the job pod, copied into the step pod with `_temp`
//! while its `stage` init container holds it, and after the step the file commands and the
//! workspace come back to the runner and into the job pod (the TypeScript hook lost them,
//! RCH #302). Workspace copies mirror ([`CopyOptions::mirror`]): what a step deleted stays
//! deleted. Each workspace copy into a pod carries the modes and owners the copy out of the
//! previous pod received ([`CopyOptions::recorded`]): the runner cannot chown, the pods' copy
//! helpers run as root and can, so a step's `0600` file of uid 4242 reaches the next pod as such.
//!
//! [`run_image`] reads as the step's phases; the step pod's shape is [`crate::spec`]'s.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context as _;
use tracing::{debug, info, warn};

use super::Outcome;
use super::step::{self, FILE_COMMANDS, Surroundings, WORK_MOUNT};
use crate::k8s::wait::{self, Goal, Reached};
use crate::k8s::{Session, Undo, logs};
use crate::protocol::{ContainerDefinition, State};
use crate::spec::names::{self, JOB_CONTAINER, STEP_CONTAINER};
use crate::spec::{
    self, FILES_CONTAINER, STAGE_CONTAINER, STAGED_MARKER, StepPodInput, WorkVolume,
};
use crate::transfer::{self, CopyOptions};

/// The step itself runs as long as it needs: the runner's `timeout-minutes` cancels it with a
/// signal. This only bounds a wait that nothing else would end.
const STEP_RUNS_UNTIL_CANCELLED: std::time::Duration =
    std::time::Duration::from_secs(7 * 24 * 3600);

/// Where the runner mounts the workspace in a container step.
const WORKSPACE_TARGET: &str = "/github/workspace";

/// Run `run_container_step`.
///
/// # Errors
/// A step pod that cannot start (with the kubelet's reason), a copy that cannot be verified,
/// a lost connection. A step that ran and exited non-zero is [`Outcome::StepExited`]. The step
/// pod and its pull secret are deleted in every case.
pub async fn run(
    args: ContainerDefinition,
    state: Option<State>,
    session: &Session,
) -> anyhow::Result<Outcome> {
    let result = match args.dockerfile.as_deref().filter(|d| !d.is_empty()) {
        Some(dockerfile) => {
            match super::build_action::build(&args, Path::new(dockerfile), state.as_ref(), session)
                .await
            {
                Ok(built) => {
                    run_image(
                        &args,
                        &built.pull_ref,
                        state.as_ref(),
                        session,
                        built.pull_secret.as_deref(),
                    )
                    .await
                }
                Err(e) => Err(e),
            }
        }
        None => {
            let image = args
                .image
                .as_deref()
                .filter(|i| !i.is_empty())
                .context("the `run_container_step` request has neither `image` nor `dockerfile`")?
                .to_owned();
            run_image(&args, &image, state.as_ref(), session, None).await
        }
    };
    // Whatever happened, the step pod and its secret go (a signal is handled by the caller's
    // undo of the same entries).
    session.undo_all(crate::cancel::CANCEL_GRACE).await;
    result
}

/// Run the step from `image` (a pulled image, or the pinned reference of a built one, pulled
/// with `registry_secret`), phase by phase.
///
/// # Errors
/// As [`run`]; leaves the undo entries of what it created for the caller.
pub async fn run_image(
    args: &ContainerDefinition,
    image: &str,
    state: Option<&State>,
    session: &Session,
    registry_secret: Option<&str>,
) -> anyhow::Result<Outcome> {
    let step = ContainerStep::plan(args, state, session).await?;
    let pull_secret = step.pull_secret(registry_secret).await?;
    let recorded = step.refresh_workspace().await?;
    let pod = step.create_pod(image, pull_secret.as_deref()).await?;
    step.stage_files(&pod, recorded).await?;
    let exit_code = step.run(&pod).await?;
    step.collect_files(&pod).await?;
    Ok(step::outcome(exit_code))
}

/// What every phase of one container step needs, found out once.
struct ContainerStep<'a> {
    args: &'a ContainerDefinition,
    session: &'a Session,
    started: Instant,
    /// The runner's `_work` directory.
    work_dir: PathBuf,
    /// Template, runner pod, owner and work volume.
    around: Surroundings,
    /// The job pod, when the job has one (copy mode keeps its workspace in step).
    job_pod: Option<&'a str>,
    /// The workspace on the runner host and its path relative to `_work`.
    workspace: Option<(PathBuf, String)>,
}

/// The step pod once it exists.
struct StepPod {
    name: String,
    /// Copy mode: where the `stage` and `files` containers mount the work volume.
    work_mount: Option<String>,
}

impl<'a> ContainerStep<'a> {
    /// Read what the step depends on: the work directory, the hook template, the runner pod
    /// (owner, tolerations, node) and the data plane.
    async fn plan(
        args: &'a ContainerDefinition,
        state: Option<&'a State>,
        session: &'a Session,
    ) -> anyhow::Result<ContainerStep<'a>> {
        let started = Instant::now();
        let work_dir = super::runner_work_dir(session)?;
        let around = Surroundings::read(session, state).await?;
        let job_pod = state.map(|s| s.job_pod.as_str()).filter(|p| !p.is_empty());
        let workspace = workspace_dir(args, &work_dir)?;
        Ok(ContainerStep {
            args,
            session,
            started,
            work_dir,
            around,
            job_pod,
            workspace,
        })
    }

    fn copy_mode(&self) -> bool {
        matches!(self.around.work_volume, WorkVolume::EmptyDir)
    }

    /// The image pull secret: the registry Secret for a built image, or a new Secret from the
    /// request's `registry` credentials.
    async fn pull_secret(&self, registry_secret: Option<&str>) -> anyhow::Result<Option<String>> {
        let session = self.session;
        match self.args.registry.as_ref() {
            _ if registry_secret.is_some() => Ok(registry_secret.map(str::to_owned)),
            Some(registry) if registry.username.as_deref().is_some_and(|u| !u.is_empty()) => {
                let name = names::secret(&session.runner_pod, &names::random_suffix());
                let secret = spec::pull_secret(
                    &name,
                    &session.runner_pod,
                    self.around.owner.as_ref(),
                    &[registry],
                );
                session.create_secret(&secret).await?;
                session.undo.push(Undo::DeleteSecret(name.clone()));
                Ok(Some(name))
            }
            _ => Ok(None),
        }
    }

    /// Copy mode: the job pod has the current workspace; bring the runner's copy up to date so
    /// the step sees what earlier steps did. Returns the modes and owners the copy received.
    async fn refresh_workspace(&self) -> anyhow::Result<Option<transfer::Recorded>> {
        let (true, Some(job_pod), Some((local_ws, rel))) =
            (self.copy_mode(), self.job_pod, &self.workspace)
        else {
            return Ok(None);
        };
        let exec = self.session.exec_in(job_pod, JOB_CONTAINER);
        let (report, recorded) = transfer::copy_out_recording(
            &exec,
            &format!("{WORK_MOUNT}/{rel}"),
            local_ws,
            &CopyOptions::default().mirror(),
        )
        .await
        .with_context(|| format!("failed to copy the workspace out of the job pod `{job_pod}`"))?;
        debug!(%report, "workspace copied from the job pod");
        Ok(Some(recorded))
    }

    /// Create the Secret with the step's environment (tokens and secret inputs stay out of the
    /// pod spec) and the step pod.
    async fn create_pod(&self, image: &str, pull_secret: Option<&str>) -> anyhow::Result<StepPod> {
        let session = self.session;
        let env_secret = names::secret(&session.runner_pod, &names::random_suffix());
        session
            .create_secret(&spec::env_secret(
                &env_secret,
                &session.runner_pod,
                self.around.owner.as_ref(),
                &self.args.environment_variables,
            ))
            .await?;
        session.undo.push(Undo::DeleteSecret(env_secret.clone()));

        let plan = spec::step_pod(&StepPodInput {
            runner_pod: &session.runner_pod,
            suffix: &names::random_suffix(),
            owner: self.around.owner.as_ref(),
            work_dir: &self.work_dir,
            work_volume: &self.around.work_volume,
            runner_image: &session.config.runner_image,
            image,
            pull_secret,
            env_secret: Some(&env_secret),
            args: self.args,
            template: self.around.template.as_ref(),
            tolerations: self.around.tolerations(),
        })
        .context("cannot build the step pod")?;
        let name = plan.pod.metadata.name.clone().unwrap_or_default();
        session.create_pod(&plan.pod).await?;
        session.undo.push(Undo::DeletePod(name.clone()));
        Ok(StepPod {
            name,
            work_mount: plan.work_mount,
        })
    }

    /// Copy mode: fill the step pod's work volume through its `stage` init container (`_temp`,
    /// then the workspace with the modes and owners `recorded` from the job pod), then release
    /// it.
    async fn stage_files(
        &self,
        pod: &StepPod,
        recorded: Option<transfer::Recorded>,
    ) -> anyhow::Result<()> {
        let Some(work_mount) = pod.work_mount.as_deref() else {
            return Ok(());
        };
        let (session, name) = (self.session, pod.name.as_str());
        wait::until(
            session,
            name,
            &Goal::InitRunning {
                container: STAGE_CONTAINER.to_owned(),
            },
            session.config.prepare_job_timeout,
        )
        .await
        .with_context(|| format!("the step pod `{name}` did not start"))?;
        let stage = session.exec_in(name, STAGE_CONTAINER);
        transfer::copy_in(
            &stage,
            &self.work_dir.join("_temp"),
            &format!("{work_mount}/_temp"),
            &CopyOptions::default(),
        )
        .await
        .with_context(|| {
            format!("failed to copy the runner's `_temp` into the step pod `{name}`")
        })?;
        if let Some((local_ws, rel)) = &self.workspace {
            let mut options = CopyOptions::default();
            if let Some(recorded) = recorded {
                options = options.recorded(recorded);
            }
            transfer::copy_in(&stage, local_ws, &format!("{work_mount}/{rel}"), &options)
                .await
                .with_context(|| {
                    format!("failed to copy the workspace into the step pod `{name}`")
                })?;
        }
        // The `stage` init container ends when the marker exists; then the step starts.
        session
            .create_file(
                name,
                STAGE_CONTAINER,
                &format!("{work_mount}/{STAGED_MARKER}"),
            )
            .await
            .with_context(|| format!("failed to release the step pod `{name}`"))
    }

    /// Wait for the step container to start, stream its log to the step log until it ends, and
    /// return its exit code.
    async fn run(&self, pod: &StepPod) -> anyhow::Result<i32> {
        let (session, name) = (self.session, pod.name.as_str());
        wait::until(
            session,
            name,
            &Goal::Started {
                container: STEP_CONTAINER.to_owned(),
            },
            session.config.prepare_job_timeout,
        )
        .await
        .with_context(|| format!("the step pod `{name}` did not start"))?;
        debug!(pod = %name, elapsed = ?self.started.elapsed(), "step container started");
        let log = follow_log(session, name);
        let terminated = Goal::Terminated {
            container: STEP_CONTAINER.to_owned(),
        };
        let end = wait::until(session, name, &terminated, STEP_RUNS_UNTIL_CANCELLED);
        let (log, end) = logs::follow_until(log, end).await;
        match log {
            Some(Ok(())) => {}
            Some(Err(e)) => {
                warn!(error = %format!("{e:#}"), "the step's log could not be followed to the end");
            }
            None => {
                warn!(
                    "the step's log did not end with the container; its last lines may be missing"
                )
            }
        }
        let (_, reached) = end.with_context(|| format!("the step pod `{name}` failed"))?;
        let Reached::Terminated {
            exit_code, reason, ..
        } = reached
        else {
            unreachable!("a Terminated goal ends terminated");
        };
        info!(pod = %name, exit_code, reason = reason.as_deref().unwrap_or(""), elapsed = ?self.started.elapsed(), "container step ended");
        Ok(exit_code)
    }

    /// Copy mode: bring the step's file commands and the workspace back to the runner through
    /// the `files` container, and the workspace on into the job pod.
    async fn collect_files(&self, pod: &StepPod) -> anyhow::Result<()> {
        let Some(work_mount) = pod.work_mount.as_deref() else {
            return Ok(());
        };
        let (session, name) = (self.session, pod.name.as_str());
        let files = session.exec_in(name, FILES_CONTAINER);
        transfer::copy_out(
            &files,
            &format!("{work_mount}/_temp/{FILE_COMMANDS}"),
            &self.work_dir.join("_temp").join(FILE_COMMANDS),
            &CopyOptions::default(),
        )
        .await
        .with_context(|| {
            format!("failed to copy `{FILE_COMMANDS}` back from the step pod `{name}`")
        })?;
        let Some((local_ws, rel)) = &self.workspace else {
            return Ok(());
        };
        let (_, recorded) = transfer::copy_out_recording(
            &files,
            &format!("{work_mount}/{rel}"),
            local_ws,
            &CopyOptions::default().mirror(),
        )
        .await
        .with_context(|| format!("failed to copy the workspace back from the step pod `{name}`"))?;
        if let Some(job_pod) = self.job_pod {
            let exec = session.exec_in(job_pod, JOB_CONTAINER);
            transfer::copy_in(
                &exec,
                local_ws,
                &format!("{WORK_MOUNT}/{rel}"),
                &CopyOptions::default().mirror().recorded(recorded),
            )
            .await
            .with_context(|| {
                format!("failed to copy the workspace into the job pod `{job_pod}`")
            })?;
        }
        Ok(())
    }
}

/// The workspace on the runner host and its path relative to `_work`, from the request's
/// `/github/workspace` mount.
fn workspace_dir(
    args: &ContainerDefinition,
    work_dir: &Path,
) -> anyhow::Result<Option<(PathBuf, String)>> {
    let Some(mount) = args
        .system_mount_volumes
        .iter()
        .find(|m| m.target_volume_path == WORKSPACE_TARGET)
    else {
        return Ok(None);
    };
    let source = PathBuf::from(mount.source_volume_path.as_deref().unwrap_or_default());
    let rel = source
        .strip_prefix(work_dir)
        .ok()
        .and_then(Path::to_str)
        .filter(|r| !r.is_empty())
        .with_context(|| {
            format!(
                "the workspace `{}` is not inside the runner's work directory `{}`",
                source.display(),
                work_dir.display()
            )
        })?;
    Ok(Some((source.clone(), rel.to_owned())))
}

/// Copy the step container's log to our stdout as it arrives, unmodified, until the container
/// ends (the API server closes a followed log then), resuming after a broken stream.
async fn follow_log(session: &Session, pod: &str) -> anyhow::Result<()> {
    let mut stdout = tokio::io::stdout();
    logs::follow(session, pod, STEP_CONTAINER, &mut stdout, &mut |_| {}).await?;
    Ok(())
}
