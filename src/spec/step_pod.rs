//! The pod of a container step (`run_container_step`): the step image with the runner's
//! container-step layout and, in copy mode, the `stage` and `files` helpers that let the hook
//! copy the step's files in and its results out.
//!
//! Owns the step pod's containers and the copy helpers' privileges; the parts it shares with the
//! job pod are in [`super::pod`], the mount view in [`super::mounts`], its environment Secret in
//! [`super::secrets`]. It must not call the API, copy files, read files or draw random numbers
//! (the caller gives the name suffix).

use std::path::Path;

use k8s_openapi::api::core::v1::{
    Capabilities, Container, EnvFromSource, Pod, SecretEnvSource, SecurityContext, Toleration,
    VolumeMount,
};
use tracing::debug;

use super::mounts::{MountPlanner, empty_dir_volume, fs_init, work_volume};
use super::names::{self, FILES_CONTAINER, STAGE_CONTAINER, STEP_CONTAINER};
use super::pod::{
    PodParts, base_container, environment_without_defaults, non_empty, rejoin_args,
    runner_pod_object,
};
use super::secrets::split_env;
use super::template::{self, PodKind, Template};
use super::{
    COMPONENT_STEP, EXTERNALS_VOLUME, Owner, Placement, RUNNER_UID, SpecError, WORK_VOLUME,
    WorkVolume,
};
use crate::protocol::ContainerDefinition;

/// Where `stage` and `files` mount the work volume.
pub const STEP_WORK_MOUNT: &str = "/__w";

/// The file whose creation ends `stage` (relative to [`STEP_WORK_MOUNT`]).
pub const STAGED_MARKER: &str = ".runner-k8s-hook-staged";

/// Everything [`step_pod`] needs.
#[derive(Debug, Clone, Copy)]
pub struct StepPodInput<'a> {
    /// The runner pod's name.
    pub runner_pod: &'a str,
    /// Random suffix of the pod name (`<runner-pod>-step-<suffix>`).
    pub suffix: &'a str,
    /// The runner pod as owner, when known.
    pub owner: Option<&'a Owner>,
    /// The runner's `_work` directory on the runner host.
    pub work_dir: &'a Path,
    /// Volume mode (the claim and placement) or copy mode.
    pub work_volume: &'a WorkVolume,
    /// Image of the `stage` and `files` containers in copy mode (`ACTIONS_RUNNER_IMAGE`): they
    /// need `sh`, `tar`, `find`, `sha256sum`, which the step's own image may lack.
    pub runner_image: &'a str,
    /// The image the step runs (the request's `image`, or the pinned reference of a built
    /// Dockerfile action).
    pub image: &'a str,
    /// Pull secret for the step image.
    pub pull_secret: Option<&'a str>,
    /// The Secret holding the step's environment ([`env_secret`](super::env_secret)): when
    /// given, the step container takes its variables from it (`envFrom`) instead of from its own
    /// spec, so tokens and secret inputs are not readable by whoever may `get` pods.
    pub env_secret: Option<&'a str>,
    /// The step's container as the runner asked for it.
    pub args: &'a ContainerDefinition,
    /// The hook template (`$job` applies to the step container, sidecars are added).
    pub template: Option<&'a Template>,
    /// The runner pod's tolerations, as for
    /// [`JobPodInput::tolerations`](super::JobPodInput::tolerations).
    pub tolerations: &'a [Toleration],
}

/// The step pod and where its files are reached in copy mode.
#[derive(Debug, Clone)]
pub struct StepPodPlan {
    /// The pod to create.
    pub pod: Pod,
    /// Copy mode: the `stage`/`files` containers see the work volume here.
    pub work_mount: Option<String>,
}

/// The pod of a container step (`run_container_step`): the step image as container `job`
/// ([`STEP_CONTAINER`]) running its own ENTRYPOINT/CMD (or the action's `entrypoint`), with the
/// runner's container-step layout (`/github/workspace`, `/github/home`, `/github/workflow`,
/// `/github/file_commands`, `/github/runner_temp`) mapped onto the work volume exactly as for the
/// job pod.
///
/// The step image needs nothing but its own entrypoint: no `sh`, `env` or `tail` (the TypeScript
/// hook required all three, RCH #270). In copy mode the runner image does the file work: the init
/// container `stage` holds the pod until the hook has copied the step's files in, and the sidecar
/// `files` keeps the volume reachable after the step has ended so its results can be copied out.
///
/// # Errors
/// [`SpecError`] for an invalid runner pod name, arguments that cannot be split, mounts or the
/// template.
pub fn step_pod(input: &StepPodInput<'_>) -> Result<StepPodPlan, SpecError> {
    let runner_pod = input.runner_pod;
    if runner_pod.is_empty() || !names::is_label_value(runner_pod) {
        return Err(SpecError::InvalidRunnerPodName(runner_pod.to_owned()));
    }
    let mut definition = input.args.clone();
    definition.image = Some(input.image.to_owned());
    let mut mounts = MountPlanner::new(input.work_dir);
    let mut step = base_container(STEP_CONTAINER, &definition, &mut mounts, 0)?;
    if let Some(secret) = input.env_secret {
        let (from_secret, plain) = split_env(&definition.environment_variables);
        debug!(
            in_secret = from_secret.len(),
            plain = plain.len(),
            "step environment"
        );
        step.env = Some(environment_without_defaults(&plain)).filter(|e| !e.is_empty());
        step.env_from = Some(vec![EnvFromSource {
            secret_ref: Some(SecretEnvSource {
                name: secret.to_owned(),
                optional: Some(false),
            }),
            ..Default::default()
        }]);
    }
    // `docker run [--entrypoint e] image [args]`: without an entrypoint the image's own
    // ENTRYPOINT runs; args replace its CMD (Kubernetes `command`/`args` have the same rules).
    step.command = non_empty(&definition.entry_point).map(|e| vec![e.to_owned()]);
    step.args = rejoin_args(STEP_CONTAINER, &definition.entry_point_args)?;
    let mut containers = vec![step];
    let layout = mounts.finish(&mut containers);

    let copy_mode = matches!(input.work_volume, WorkVolume::EmptyDir);
    let mut volumes = Vec::new();
    if layout.uses_work || copy_mode {
        volumes.push(work_volume(input.work_volume));
    }
    if layout.uses_externals {
        volumes.push(empty_dir_volume(EXTERNALS_VOLUME));
    }
    volumes.extend(layout.extra_volumes.iter().map(|v| empty_dir_volume(v)));

    let mut init_containers = Vec::new();
    if copy_mode {
        let work_mount = VolumeMount {
            name: WORK_VOLUME.into(),
            mount_path: STEP_WORK_MOUNT.into(),
            ..Default::default()
        };
        let helper = Some(copy_helper_security_context());
        // The directories the step mounts by subPath exist before it starts, owned by the
        // runner user as `fs_init` would make them (`stage` runs as root: chown), then `stage`
        // waits for the hook's copy.
        let mut command = vec![
            "sh".to_owned(),
            "-c".to_owned(),
            format!(
                "set -e\nfor dir in \"$@\"; do [ -e \"$dir\" ] || mkdir -p -- \"$dir\"; done\nfind {STEP_WORK_MOUNT} -mindepth 1 -exec chown {RUNNER_UID}:{RUNNER_UID} {{}} +\nwhile [ ! -e {STEP_WORK_MOUNT}/{STAGED_MARKER} ]; do sleep 0.2; done\nrm -f {STEP_WORK_MOUNT}/{STAGED_MARKER}"
            ),
            STAGE_CONTAINER.to_owned(),
        ];
        command.extend(
            layout
                .work_dirs
                .iter()
                .map(|sub| format!("{STEP_WORK_MOUNT}/{sub}")),
        );
        init_containers.push(Container {
            name: STAGE_CONTAINER.into(),
            image: Some(input.runner_image.to_owned()),
            command: Some(command),
            security_context: helper.clone(),
            volume_mounts: Some(vec![work_mount.clone()]),
            ..Default::default()
        });
        containers.push(Container {
            name: FILES_CONTAINER.into(),
            image: Some(input.runner_image.to_owned()),
            command: Some(vec![
                "sh".to_owned(),
                "-c".to_owned(),
                "trap 'exit 0' TERM INT\nwhile :; do sleep 5 & wait $!; done".to_owned(),
            ]),
            security_context: helper,
            volume_mounts: Some(vec![work_mount]),
            ..Default::default()
        });
    } else {
        init_containers.extend(fs_init(input.runner_image, &layout));
    }
    let placement = match input.work_volume {
        WorkVolume::Claim { placement, .. } => placement,
        WorkVolume::EmptyDir => &Placement::Anywhere,
    };

    let mut pod = runner_pod_object(PodParts {
        name: names::step_pod(runner_pod, input.suffix),
        runner_pod,
        component: COMPONENT_STEP,
        owner: input.owner,
        containers,
        init_containers,
        volumes,
        placement,
        tolerations: input.tolerations,
        pull_secret: input.pull_secret,
    });
    if let Some(template) = input.template {
        template::apply(&mut pod, template, PodKind::Step).map_err(SpecError::ApplyTemplate)?;
    }
    Ok(StepPodPlan {
        pod,
        work_mount: copy_mode.then(|| STEP_WORK_MOUNT.to_owned()),
    })
}

/// Capabilities of the copy helpers ([`STAGE_CONTAINER`], [`FILES_CONTAINER`]): read and write
/// any file in the work volume whatever its owner and mode (`DAC_OVERRIDE`), restore owners
/// (`CHOWN`), modes and times of files they do not own (`FOWNER`) and setgid bits (`FSETID`).
/// All four are in the container runtimes' default set, so Pod Security `baseline` admits them.
pub const COPY_HELPER_CAPABILITIES: &[&str] = &["CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID"];

/// The copy helpers run as root so that what a step (usually root) created — a `0600` file, a
/// `0700` directory, a file of another user — can be copied out and back in with its mode and
/// owner; every other capability is dropped and privilege escalation is off. See
/// `docs/user/copy-mode-security.md`.
fn copy_helper_security_context() -> SecurityContext {
    SecurityContext {
        run_as_user: Some(0),
        run_as_group: Some(0),
        run_as_non_root: Some(false),
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            add: Some(
                COPY_HELPER_CAPABILITIES
                    .iter()
                    .map(|c| (*c).to_owned())
                    .collect(),
            ),
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::tests::step;

    #[test]
    fn step_pod_undoes_the_runner_split_of_quoted_args() {
        let plan = step("run_container_step", &WorkVolume::EmptyDir, None);
        let step = &plan.pod.spec.as_ref().unwrap().containers[0];
        assert_eq!(
            step.command.as_deref(),
            Some(&["/entrypoint.sh".to_owned()][..])
        );
        assert_eq!(
            step.args.as_deref(),
            Some(&["hello".to_owned(), "big world".to_owned()][..])
        );
        assert_eq!(step.working_dir.as_deref(), Some("/github/workspace"));
    }
}
