//! `prepare_job`: start the job pod (job container + service containers), fill it in copy mode,
//! and tell the runner about it.
//!
//! Order matters for what a user sees when something is wrong: permissions and configuration
//! are checked before anything is created; a pod that cannot start fails at once with the
//! kubelet's reason; whatever this command created is deleted again when it fails (and by
//! `cleanup_job` in any case, which finds everything by label). The job pod's shape is
//! [`crate::spec`]'s; this module decides only what goes into it and what happens around it.

use std::time::Instant;

use anyhow::Context as _;
use tracing::{info, warn};

use super::Outcome;
use crate::k8s::wait::{self, Goal};
use crate::k8s::{Session, Undo};
use crate::protocol::{
    ContainerContext, PrepareJobArgs, PrepareJobResponse, Registry, Response, ResponseContext,
    State,
};
use crate::spec::names::{self, JOB_CONTAINER};
use crate::spec::{self, JobPodInput, WorkVolume};
use crate::transfer::{self, CopyOptions};

/// Why a job without a job container is refused: on Kubernetes its steps would run in the runner
/// pod, which cannot reach service containers at `localhost` as a Docker host can.
pub const SERVICES_WITHOUT_CONTAINER: &str = "this job has `services:` but no `container:`: on Kubernetes its steps would run in the runner pod, which cannot reach the service containers at `localhost`";

/// Run `prepare_job`.
///
/// # Errors
/// Missing permissions, configuration or runner paths; a pod that cannot start; a copy that
/// cannot be verified. Whatever this command created is deleted before the error returns.
pub async fn run(args: PrepareJobArgs, session: &Session) -> anyhow::Result<Outcome> {
    let result = prepare(args, session).await;
    if result.is_err() {
        session.undo_all(crate::cancel::CANCEL_GRACE).await;
    }
    result
}

async fn prepare(args: PrepareJobArgs, session: &Session) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let Some(job) = args.container.as_ref() else {
        anyhow::bail!(
            "{SERVICES_WITHOUT_CONTAINER}; add a `container:` to the job (any image with `sh`, e.g. `container: ubuntu:24.04`) so steps and services share one pod"
        );
    };
    let config = &session.config;

    session
        .check_permissions()
        .await
        .context("cannot start the job: the pre-flight permission check failed")?;
    let template = session
        .hook_template()
        .context("cannot start the job: the hook template is unusable")?;
    let work_dir = super::runner_work_dir(session)?;

    // Pods and secrets left by an earlier job of this runner (a crashed runner, a skipped
    // cleanup) are stale now.
    let (pods, secrets) = session
        .delete_ours(true, true)
        .await
        .context("failed to delete the previous job's pods and secrets")?;
    if pods + secrets > 0 {
        info!(pods, secrets, "deleted leftovers of an earlier job");
    }

    let runner = session.runner_pod().await;
    let owner = session.owner(runner.as_ref());
    let work_volume = super::choose_work_volume(session, runner.as_ref());

    let registries: Vec<&Registry> = std::iter::once(job)
        .chain(args.services.iter())
        .filter_map(|c| c.registry.as_ref())
        .filter(|r| r.username.as_deref().is_some_and(|u| !u.is_empty()))
        .collect();
    let mut secret_names = Vec::new();
    if !registries.is_empty() {
        let name = names::secret(&session.runner_pod, &names::random_suffix());
        let secret = spec::pull_secret(&name, &session.runner_pod, owner.as_ref(), &registries);
        session.create_secret(&secret).await?;
        session.undo.push(Undo::DeleteSecret(name.clone()));
        secret_names.push(name);
    }

    let plan = spec::job_pod(&JobPodInput {
        runner_pod: &session.runner_pod,
        owner: owner.as_ref(),
        work_dir: &work_dir,
        work_volume: &work_volume,
        runner_image: &config.runner_image,
        pull_secret: secret_names.first().map(String::as_str),
        args: &args,
        template: template.as_ref(),
        tolerations: super::runner_tolerations(runner.as_ref()),
    })
    .context("cannot build the job pod")?;
    let pod_name = plan.pod.metadata.name.clone().unwrap_or_default();

    session.create_pod(&plan.pod).await?;
    session.undo.push(Undo::DeletePod(pod_name.clone()));
    wait::until(
        session,
        &pod_name,
        &Goal::Running {
            container: JOB_CONTAINER.to_owned(),
        },
        config.prepare_job_timeout,
    )
    .await
    .with_context(|| format!("the job pod `{pod_name}` did not start"))?;
    info!(pod = %pod_name, elapsed = ?started.elapsed(), "job pod running");

    let exec = session.exec_in(&pod_name, JOB_CONTAINER);
    if let (WorkVolume::EmptyDir, Some(work_mount)) = (&work_volume, plan.work_mount.as_deref()) {
        let report = transfer::copy_in(&exec, &work_dir, work_mount, &CopyOptions::default())
            .await
            .with_context(|| {
                format!(
                    "failed to copy the runner's work directory `{}` into pod `{pod_name}`",
                    work_dir.display()
                )
            })?;
        info!(%report, "work directory copied into the job pod");
    }
    for copy in &plan.user_volume_copies {
        if !copy.source.is_dir() {
            warn!(source = %copy.source.display(), target = %copy.path, "volume source is not a directory on the runner; the volume starts empty");
            continue;
        }
        let target = session.exec_in(&pod_name, &copy.container);
        transfer::copy_in(&target, &copy.source, &copy.path, &CopyOptions::default())
            .await
            .with_context(|| {
                format!(
                    "failed to copy the volume `{}` into `{}` of pod `{pod_name}`",
                    copy.source.display(),
                    copy.path
                )
            })?;
    }

    let is_alpine = is_alpine(&exec).await;

    // The job pod and its secret now belong to the job: `cleanup_job` deletes them.
    session.undo.forget(&Undo::DeletePod(pod_name.clone()));
    for name in &secret_names {
        session.undo.forget(&Undo::DeleteSecret(name.clone()));
    }
    info!(pod = %pod_name, data_plane = %work_volume.data_plane(), is_alpine, elapsed = ?started.elapsed(), "job ready");

    let container_context = |c: &spec::PlannedContainer| ContainerContext {
        image: c.image.clone(),
        ports: c.ports.clone(),
    };
    Ok(Outcome::Success(Some(Response::PrepareJob(
        PrepareJobResponse {
            state: State {
                version: State::VERSION,
                job_pod: pod_name,
                data_plane: Some(work_volume.data_plane()),
                secrets: secret_names,
                is_alpine,
            },
            context: ResponseContext {
                container: plan.job_container.as_ref().map(container_context),
                services: plan.services.iter().map(container_context).collect(),
            },
            is_alpine,
        },
    ))))
}

/// Whether the job image is Alpine, the way the TypeScript hook checks it: an `ID=alpine` line in
/// `/etc/*release*`. Any failure (no `sh`, no such file) means no: the runner then uses the glibc
/// node, which is right for every other image.
async fn is_alpine(exec: &crate::k8s::exec::PodExec) -> bool {
    let argv = vec![
        "sh".to_owned(),
        "-c".to_owned(),
        "grep -qi '^ID=\"\\{0,1\\}alpine' /etc/*release* 2>/dev/null".to_owned(),
    ];
    let mut out = tokio::io::sink();
    let mut err = tokio::io::sink();
    matches!(exec.exec(argv, None, &mut out, &mut err).await, Ok(0))
}
