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

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context as _;
use tracing::{debug, info, warn};

use super::Outcome;
use super::step::{self, FILE_COMMANDS, WORK_MOUNT};
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
/// with `registry_secret`).
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
    let started = Instant::now();
    let config = &session.config;
    let work_dir = super::runner_work_dir(session)?;
    let template = session
        .hook_template()
        .context("the hook template is unusable")?;
    let runner = session.runner_pod().await;
    let owner = session.owner(runner.as_ref());
    let work_volume = super::step_work_volume(state, session, runner.as_ref());
    let job_pod = state.map(|s| s.job_pod.as_str()).filter(|p| !p.is_empty());
    let workspace = workspace_dir(args, &work_dir)?;

    let pull_secret = match args.registry.as_ref() {
        // A built image is pulled with the configured registry Secret.
        _ if registry_secret.is_some() => registry_secret.map(str::to_owned),
        Some(registry) if registry.username.as_deref().is_some_and(|u| !u.is_empty()) => {
            let name = names::secret(&session.runner_pod, &names::random_suffix());
            let secret = spec::pull_secret(&name, &session.runner_pod, owner.as_ref(), &[registry]);
            session.create_secret(&secret).await?;
            session.undo.push(Undo::DeleteSecret(name.clone()));
            Some(name)
        }
        _ => None,
    };

    let copy_mode = matches!(work_volume, WorkVolume::EmptyDir);
    // Copy mode: the job pod has the current workspace; bring the runner's copy up to date so
    // the step sees what earlier steps did.
    let mut job_pod_recorded = None;
    if let (true, Some(job_pod), Some((local_ws, rel))) = (copy_mode, job_pod, &workspace) {
        let exec = session.exec_in(job_pod, JOB_CONTAINER);
        let (report, recorded) = transfer::copy_out_recording(
            &exec,
            &format!("{WORK_MOUNT}/{rel}"),
            local_ws,
            &CopyOptions::default().mirror(),
        )
        .await
        .with_context(|| format!("failed to copy the workspace out of the job pod `{job_pod}`"))?;
        debug!(%report, "workspace copied from the job pod");
        job_pod_recorded = Some(recorded);
    }

    // The step's environment (tokens, secret inputs) goes into a Secret, not the pod spec.
    let env_secret = names::secret(&session.runner_pod, &names::random_suffix());
    session
        .create_secret(&spec::env_secret(
            &env_secret,
            &session.runner_pod,
            owner.as_ref(),
            &args.environment_variables,
        ))
        .await?;
    session.undo.push(Undo::DeleteSecret(env_secret.clone()));

    let plan = spec::step_pod(&StepPodInput {
        runner_pod: &session.runner_pod,
        suffix: &names::random_suffix(),
        owner: owner.as_ref(),
        work_dir: &work_dir,
        work_volume: &work_volume,
        runner_image: &config.runner_image,
        image,
        pull_secret: pull_secret.as_deref(),
        env_secret: Some(&env_secret),
        args,
        template: template.as_ref(),
        tolerations: super::runner_tolerations(runner.as_ref()),
    })
    .context("cannot build the step pod")?;
    let pod = plan.pod.metadata.name.clone().unwrap_or_default();
    session.create_pod(&plan.pod).await?;
    session.undo.push(Undo::DeletePod(pod.clone()));
    let timeout = config.prepare_job_timeout;

    if let Some(work_mount) = plan.work_mount.as_deref() {
        wait::until(
            session,
            &pod,
            &Goal::InitRunning {
                container: STAGE_CONTAINER.to_owned(),
            },
            timeout,
        )
        .await
        .with_context(|| format!("the step pod `{pod}` did not start"))?;
        let stage = session.exec_in(&pod, STAGE_CONTAINER);
        let temp = work_dir.join("_temp");
        transfer::copy_in(
            &stage,
            &temp,
            &format!("{work_mount}/_temp"),
            &CopyOptions::default(),
        )
        .await
        .with_context(|| {
            format!("failed to copy the runner's `_temp` into the step pod `{pod}`")
        })?;
        if let Some((local_ws, rel)) = &workspace {
            let mut options = CopyOptions::default();
            if let Some(recorded) = job_pod_recorded.take() {
                options = options.recorded(recorded);
            }
            transfer::copy_in(&stage, local_ws, &format!("{work_mount}/{rel}"), &options)
                .await
                .with_context(|| {
                    format!("failed to copy the workspace into the step pod `{pod}`")
                })?;
        }
        // The `stage` init container ends when the marker exists; then the step starts.
        session
            .create_file(
                &pod,
                STAGE_CONTAINER,
                &format!("{work_mount}/{STAGED_MARKER}"),
            )
            .await
            .with_context(|| format!("failed to release the step pod `{pod}`"))?;
    }

    wait::until(
        session,
        &pod,
        &Goal::Started {
            container: STEP_CONTAINER.to_owned(),
        },
        timeout,
    )
    .await
    .with_context(|| format!("the step pod `{pod}` did not start"))?;
    debug!(pod = %pod, elapsed = ?started.elapsed(), "step container started");
    let log = follow_log(session, &pod);
    let terminated = Goal::Terminated {
        container: STEP_CONTAINER.to_owned(),
    };
    let end = wait::until(session, &pod, &terminated, STEP_RUNS_UNTIL_CANCELLED);
    let (log, end) = logs::follow_until(log, end).await;
    match log {
        Some(Ok(())) => {}
        Some(Err(e)) => {
            warn!(error = %format!("{e:#}"), "the step's log could not be followed to the end");
        }
        None => {
            warn!("the step's log did not end with the container; its last lines may be missing")
        }
    }
    let (_, reached) = end.with_context(|| format!("the step pod `{pod}` failed"))?;
    let Reached::Terminated {
        exit_code, reason, ..
    } = reached
    else {
        unreachable!("a Terminated goal ends terminated");
    };
    info!(pod = %pod, exit_code, reason = reason.as_deref().unwrap_or(""), elapsed = ?started.elapsed(), "container step ended");

    if let Some(work_mount) = plan.work_mount.as_deref() {
        let files = session.exec_in(&pod, FILES_CONTAINER);
        let temp = work_dir.join("_temp");
        transfer::copy_out(
            &files,
            &format!("{work_mount}/_temp/{FILE_COMMANDS}"),
            &temp.join(FILE_COMMANDS),
            &CopyOptions::default(),
        )
        .await
        .with_context(|| {
            format!("failed to copy `{FILE_COMMANDS}` back from the step pod `{pod}`")
        })?;
        if let Some((local_ws, rel)) = &workspace {
            let (_, recorded) = transfer::copy_out_recording(
                &files,
                &format!("{work_mount}/{rel}"),
                local_ws,
                &CopyOptions::default().mirror(),
            )
            .await
            .with_context(|| {
                format!("failed to copy the workspace back from the step pod `{pod}`")
            })?;
            if let Some(job_pod) = job_pod {
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
        }
    }

    Ok(step::outcome(exit_code))
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
