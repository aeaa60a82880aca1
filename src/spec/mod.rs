//! Pure builders for the objects the hook creates: the job pod and its pull secret
//! (`prepare_job`), step pods and their environment Secrets (`run_container_step`), and build
//! pods (Dockerfile actions).
//!
//! Given the runner's request and what the caller found out about the cluster (owner, data
//! plane, node), these functions return typed objects; they never call the API, read files or
//! draw random numbers (the caller draws name suffixes with [`names::random_suffix`]), so the same
//! input always gives the same object (see the golden files in `src/spec/snapshots/`). Below
//! `config`, `k8s` and `hooks` in the flow, `spec` may use only `paths`, `protocol`, `shell`,
//! `transfer`, `image` and `cancel` (`tests/it/layering.rs`).
//!
//! One concern per file:
//! - [`job_pod`](mod@job_pod): the job pod (job container and services in one pod);
//! - [`step_pod`](mod@step_pod): the pod of a container step and its copy-mode helpers;
//! - [`build_pod`](mod@build_pod): the pod that builds a Dockerfile action;
//! - [`check_pod`]: the short-lived pods of `runner-k8s-hook check`;
//! - [`pod`]: what job and step pods share (the pod around the containers, a container from the
//!   runner's definition);
//! - [`mounts`]: the work and externals volumes, the runner's mounts mapped onto them, `fs-init`;
//! - [`ports`]: `portMappings` and the response's ports;
//! - [`placement`]: node pinning and affinity;
//! - [`secrets`]: the pull secret and the step environment Secret;
//! - [`meta`]: labels and the ownerReference every object carries;
//! - [`names`]: object and container names; [`template`]: the hook template merge.
//!
//! The items callers use are re-exported here (`spec::job_pod`, `spec::WorkVolume`...).

pub mod build_pod;
pub mod check_pod;
pub mod job_pod;
pub mod meta;
pub mod mounts;
pub mod names;
pub mod placement;
pub mod pod;
pub mod ports;
pub mod secrets;
pub mod step_pod;
pub mod template;

#[cfg(test)]
mod tests;

pub use job_pod::{JobPodInput, JobPodPlan, PlannedContainer, job_pod};
pub use meta::{
    COMPONENT_JOB, COMPONENT_LABEL, COMPONENT_PULL_SECRET, COMPONENT_STEP, COMPONENT_STEP_ENV,
    MANAGED_BY, MANAGED_BY_LABEL, Owner, RUNNER_POD_LABEL, object_labels, owner_reference,
};
pub use mounts::{
    EXTERNALS_VOLUME, FS_INIT_CONTAINER, RUNNER_UID, VolumeCopy, WORK_VOLUME, WorkVolume,
};
pub use names::{FILES_CONTAINER, STAGE_CONTAINER};
pub use placement::{Placement, node_affinity, node_name};
pub use ports::{PortError, PortMapping, PortProtocol, parse_port_mapping, response_ports};
pub use secrets::{DOCKER_HUB_AUTH_URL, env_secret, pull_secret};
pub use step_pod::{
    COPY_HELPER_CAPABILITIES, STAGED_MARKER, STEP_WORK_MOUNT, StepPodInput, StepPodPlan, step_pod,
};

use crate::shell::ShellError;
use template::TemplateError;

/// Why a job or step pod cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The request has neither `container` nor `services`.
    #[error("the job has neither a job container nor services")]
    NoContainers,
    /// The runner pod's name cannot be the value of the `runner-pod` label.
    #[error(
        "the runner pod name `{0}` cannot be used as the value of the `runner-pod` label: at most 63 letters, digits, `-`, `_` or `.`, starting and ending with a letter or digit"
    )]
    InvalidRunnerPodName(String),
    /// A container has no image (a Dockerfile cannot be the job container or a service).
    #[error("container `{container}` has no image")]
    MissingImage {
        /// The container's name in the pod.
        container: String,
    },
    /// A `portMappings` entry is not valid.
    #[error("invalid port mapping `{entry}` for container `{container}`")]
    InvalidPort {
        /// The container's name in the pod.
        container: String,
        /// The entry as given.
        entry: String,
        /// What is wrong with it.
        #[source]
        source: PortError,
    },
    /// `entryPointArgs` cannot be re-joined into words.
    #[error("cannot read the arguments of container `{container}`")]
    InvalidArgs {
        /// The container's name in the pod.
        container: String,
        /// The splitting failure.
        #[source]
        source: ShellError,
    },
    /// A mount's target is not usable.
    #[error("invalid mount target `{target}` for container `{container}`: {reason}")]
    InvalidMount {
        /// The container's name in the pod.
        container: String,
        /// The target as given.
        target: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The hook template could not be merged into the pod.
    #[error("failed to apply the hook template to the job pod")]
    ApplyTemplate(#[source] TemplateError),
}
