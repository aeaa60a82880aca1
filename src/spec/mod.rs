//! Pure builders for the objects `prepare_job` creates: the job pod and its pull secret.
//!
//! Given the runner's request and what the caller found out about the cluster (owner, data
//! plane, node), these functions return typed objects; they never call the API, read files or
//! draw random numbers, so the same input always gives the same pod (see the golden files in
//! `src/spec/snapshots/`).
//!
//! The job pod reproduces what Docker would give the job (the mounts actions/runner passes to
//! `docker create` in `src/Runner.Worker/Container/DockerCommandManager.cs`):
//! the runner's `systemMountVolumes` become mounts of one `work` volume (the runner's work
//! volume in volume mode, an emptyDir filled by copying `_work` in copy mode) with `subPath`s, so
//! `/__w`, `/__w/_temp`, `/github/home` and `/github/workflow` show the same directories a bind
//! mount would; `externals` (`/__e`, node for JavaScript actions) is an emptyDir filled by the
//! `fs-init` init container from the runner image in both modes. Services run as containers of
//! the same pod and are reachable at `localhost:<containerPort>`.

pub mod build_pod;
pub mod names;
pub mod template;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::paths::normalize;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvFromSource, EnvVar,
    LocalObjectReference, NodeAffinity, NodeSelectorRequirement, NodeSelectorTerm,
    PersistentVolumeClaimVolumeSource, Pod, PodSecurityContext, PodSpec, PreferredSchedulingTerm,
    Secret, SecretEnvSource, SecurityContext, Toleration, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use serde::Serialize;
use tracing::{debug, warn};

use crate::protocol::{ContainerDefinition, DataPlane, Mount, PrepareJobArgs, Registry};
use crate::shell::{self, ShellError};
use names::JOB_CONTAINER;
use template::{PodKind, Template, TemplateError};

/// Label put on every object we create, with the runner pod's name as value. The TypeScript hook
/// uses the same key, so `cleanup_job` of either hook finds the other's leftovers.
pub const RUNNER_POD_LABEL: &str = "runner-pod";
/// `app.kubernetes.io/managed-by` (Kubernetes recommended labels).
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Our value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY: &str = "runner-k8s-hook";
/// `app.kubernetes.io/component`: what the object is for (`job`, `pull-secret`...).
pub const COMPONENT_LABEL: &str = "app.kubernetes.io/component";
/// [`COMPONENT_LABEL`] of the job pod.
pub const COMPONENT_JOB: &str = "job";
/// [`COMPONENT_LABEL`] of pull secrets.
pub const COMPONENT_PULL_SECRET: &str = "pull-secret";

/// The volume holding the runner's `_work` directory.
pub const WORK_VOLUME: &str = "work";
/// The volume holding the runner's `externals` (mounted at `/__e`).
pub const EXTERNALS_VOLUME: &str = "externals";
/// The init container that fills [`EXTERNALS_VOLUME`] (the TypeScript hook's name).
pub const FS_INIT_CONTAINER: &str = "fs-init";
/// User and group id of the runner in the runner image (`ghcr.io/actions/actions-runner`); the
/// TypeScript hook's `fsGroup` and `fs-init` user.
pub const RUNNER_UID: i64 = 1001;
/// Where the runner image keeps `externals`.
const RUNNER_IMAGE_EXTERNALS: &str = "/home/runner/externals";
/// Mount points in `fs-init`.
const INIT_EXTERNALS_MOUNT: &str = "/mnt/externals";
const INIT_WORK_MOUNT: &str = "/mnt/work";
/// Where a user volume that every container mounts read-only is also mounted writable, so the
/// caller can copy its content in (`VolumeCopy::path`).
const STAGING_ROOT: &str = "/__hook";
/// The runner mounts the Docker socket into every container; there is no Docker in the pod.
const DOCKER_SOCKET: &str = "/var/run/docker.sock";
/// The `auths` key for Docker Hub (the runner sends an empty `serverUrl` for it; the TypeScript
/// hook and `docker login` use this URL, and the kubelet matches it for Docker Hub images).
pub const DOCKER_HUB_AUTH_URL: &str = "https://index.docker.io/v1/";

/// The runner pod, as owner of what we create: Kubernetes then garbage-collects our objects when
/// the runner pod goes away, even if `cleanup_job` never runs (RCH #255).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// The runner pod's name.
    pub name: String,
    /// The runner pod's `metadata.uid`.
    pub uid: String,
}

/// Where the job pod may run relative to the runner's node (volume mode).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// `spec.nodeName` set to this node, as the TypeScript hook does: a ReadWriteOnce work volume
    /// can only be attached there. The scheduler is bypassed, so the node's taints and a cordon
    /// (`spec.unschedulable`) do not keep the pod away: the kubelet does not enforce `NoSchedule`
    /// taints, while required node affinity would leave the pod `Unschedulable` on a tainted
    /// runner node it does not tolerate. The price: the kubelet admits or rejects the pod at
    /// once, so a pod that does not fit the node's free resources fails with `OutOfcpu` /
    /// `OutOfmemory` instead of waiting for room (`pkg/kubelet/lifecycle/predicate.go`).
    PinToNode(String),
    /// Preferred node affinity (weight 100) to this node: a ReadWriteMany work volume works
    /// anywhere, so the scheduler decides (`ACTIONS_RUNNER_USE_KUBE_SCHEDULER=true`), but the
    /// runner's node avoids a second attachment.
    PreferNode(String),
    /// No node affinity.
    Anywhere,
}

/// Where the job's `work` volume comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkVolume {
    /// Volume mode: the runner's work volume claim, and where the pod may run.
    Claim {
        /// The PersistentVolumeClaim's name (`ACTIONS_RUNNER_CLAIM_NAME`, default
        /// `<runner-pod>-work`).
        claim_name: String,
        /// Node affinity for the pod.
        placement: Placement,
    },
    /// Copy mode: an emptyDir the caller fills by copying the runner's `_work` into the job
    /// container at [`JobPodPlan::work_mount`].
    EmptyDir,
}

impl WorkVolume {
    /// The data plane this work volume belongs to.
    pub fn data_plane(&self) -> DataPlane {
        match self {
            WorkVolume::Claim { .. } => DataPlane::Volume,
            WorkVolume::EmptyDir => DataPlane::Copy,
        }
    }
}

/// Everything [`job_pod`] needs.
#[derive(Debug, Clone, Copy)]
pub struct JobPodInput<'a> {
    /// The runner pod's name (`ACTIONS_RUNNER_POD_NAME`).
    pub runner_pod: &'a str,
    /// The runner pod as owner; `None` when it could not be read (no ownerReference then).
    pub owner: Option<&'a Owner>,
    /// The runner's `_work` directory on the runner host: the parent of `RUNNER_WORKSPACE`
    /// (`<_work>/<repo>`). Mount sources under it become `subPath`s of the work volume; its
    /// sibling `externals` is the runner's externals.
    pub work_dir: &'a Path,
    /// The work volume and, in volume mode, the pod's placement.
    pub work_volume: &'a WorkVolume,
    /// Image of `fs-init` (`ACTIONS_RUNNER_IMAGE`), which must hold the runner's externals at
    /// `/home/runner/externals`.
    pub runner_image: &'a str,
    /// Name of the pull secret the caller creates with [`pull_secret`], if any registry has
    /// credentials.
    pub pull_secret: Option<&'a str>,
    /// The request.
    pub args: &'a PrepareJobArgs,
    /// The hook template (`ACTIONS_RUNNER_CONTAINER_HOOK_TEMPLATE`), if configured.
    pub template: Option<&'a Template>,
    /// The runner pod's tolerations ([`crate::k8s::objects::inherited_tolerations`]): the pod
    /// carries them, so it may run where the runner runs; a template's `tolerations` are added
    /// ([`template`] module docs).
    pub tolerations: &'a [Toleration],
}

/// The job pod and what the caller needs to finish `prepare_job`.
#[derive(Debug, Clone)]
pub struct JobPodPlan {
    /// The pod to create.
    pub pod: Pod,
    /// The job container (`job`), when the job has one.
    pub job_container: Option<PlannedContainer>,
    /// One entry per requested service, in request order (the order of the response's
    /// `context.services`).
    pub services: Vec<PlannedContainer>,
    /// Where the job container mounts the root of the work volume (`/__w`): in copy mode the
    /// caller copies the runner's `_work` there, which also fills every `subPath` mount
    /// (`/github/home`, `/github/workflow`, user volumes under `_work`).
    pub work_mount: Option<String>,
    /// User volumes from host paths outside `_work`: emptyDirs whose content the caller copies
    /// in after the pod runs (when the source exists on the runner).
    pub user_volume_copies: Vec<VolumeCopy>,
}

/// A container of the job pod, for the `prepare_job` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedContainer {
    /// Container name in the pod (`job`, or the service's derived name, which the hook template
    /// addresses as `$<name>`).
    pub name: String,
    /// The image it runs.
    pub image: String,
    /// `{containerPort: port}` for the response: see [`response_ports`].
    pub ports: BTreeMap<String, String>,
}

/// A user volume whose content must be copied from the runner into the pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VolumeCopy {
    /// The host path on the runner (the workflow's `volumes:` source).
    pub source: PathBuf,
    /// The container to exec into.
    pub container: String,
    /// A writable path in that container where the volume is mounted: the user's target, or a
    /// staging mount under `/__hook/` when every mount of the volume is read-only.
    pub path: String,
    /// The pod volume (`user-volume-<n>`).
    pub volume: String,
}

/// A Docker-style port mapping from `portMappings`: `[hostIP:][hostPort:]containerPort[/proto]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMapping {
    /// The host IP, if given (not used: the pod has no host ports).
    pub host_ip: Option<String>,
    /// The host port, if given (not used: the pod has no host ports).
    pub host_port: Option<u16>,
    /// The port the container listens on.
    pub container_port: u16,
    /// `TCP` (default), `UDP` or `SCTP`.
    pub protocol: PortProtocol,
}

/// Protocol of a [`PortMapping`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PortProtocol {
    /// `/tcp` or no suffix.
    Tcp,
    /// `/udp`.
    Udp,
    /// `/sctp`.
    Sctp,
}

impl PortProtocol {
    /// The Kubernetes spelling (`TCP`, `UDP`, `SCTP`).
    pub fn as_kubernetes(self) -> &'static str {
        match self {
            PortProtocol::Tcp => "TCP",
            PortProtocol::Udp => "UDP",
            PortProtocol::Sctp => "SCTP",
        }
    }
}

/// Why a port mapping cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    /// The string is empty.
    #[error("the mapping is empty")]
    Empty,
    /// The form is not `[hostIP:][hostPort:]containerPort[/protocol]`.
    #[error(
        "expected `[hostIP:][hostPort:]containerPort[/protocol]`, e.g. `8080`, `80:8080` or `53:53/udp`"
    )]
    Malformed,
    /// A port range such as `8000-8010`.
    #[error("port ranges (`{0}`) are not supported: list each port separately")]
    Range(String),
    /// Not a number from 1 to 65535.
    #[error("`{0}` is not a port number from 1 to 65535")]
    InvalidNumber(String),
    /// A protocol other than tcp, udp or sctp.
    #[error("unknown protocol `{0}`: expected `tcp`, `udp` or `sctp`")]
    Protocol(String),
}

/// Why the job pod cannot be built.
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

/// The labels every object of one runner carries: `runner-pod=<runner pod>` (how `cleanup_job`
/// finds them) and the recommended `managed-by` / `component` labels.
pub fn object_labels(runner_pod: &str, component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (RUNNER_POD_LABEL.to_owned(), runner_pod.to_owned()),
        (MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned()),
        (COMPONENT_LABEL.to_owned(), component.to_owned()),
    ])
}

/// The ownerReference to the runner pod. Neither `controller` (the runner pod does not manage
/// our pods) nor `blockOwnerDeletion` (deleting the runner pod must not wait for ours).
pub fn owner_reference(owner: &Owner) -> OwnerReference {
    OwnerReference {
        api_version: "v1".into(),
        kind: "Pod".into(),
        name: owner.name.clone(),
        uid: owner.uid.clone(),
        block_owner_deletion: Some(false),
        controller: Some(false),
    }
}

/// `spec.nodeName` for a [`Placement`]: the runner's node for [`Placement::PinToNode`] (the
/// pod is bound by its creator, without the scheduler), else none.
pub fn node_name(placement: &Placement) -> Option<String> {
    match placement {
        Placement::PinToNode(node) => Some(node.clone()),
        Placement::PreferNode(_) | Placement::Anywhere => None,
    }
}

/// Node affinity for a [`Placement`]: preferred affinity to the runner's node for
/// [`Placement::PreferNode`], none otherwise ([`Placement::PinToNode`] sets `spec.nodeName`
/// instead, [`node_name`]). It matches the node by `metadata.name` (`matchFields`), which is
/// exact, unlike the `kubernetes.io/hostname` label the TypeScript hook 0.7 used: that label may
/// differ from the node name (cloud providers set it to the hostname).
pub fn node_affinity(placement: &Placement) -> Option<Affinity> {
    let term = |node: &str| NodeSelectorTerm {
        match_fields: Some(vec![NodeSelectorRequirement {
            key: "metadata.name".into(),
            operator: "In".into(),
            values: Some(vec![node.to_owned()]),
        }]),
        ..Default::default()
    };
    let node_affinity = match placement {
        Placement::Anywhere | Placement::PinToNode(_) => return None,
        Placement::PreferNode(node) => NodeAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![
                PreferredSchedulingTerm {
                    weight: 100,
                    preference: term(node),
                },
            ]),
            ..Default::default()
        },
    };
    Some(Affinity {
        node_affinity: Some(node_affinity),
        ..Default::default()
    })
}

/// Parse one `portMappings` entry: `[hostIP:][hostPort:]containerPort[/tcp|/udp|/sctp]`
/// (Docker's `-p` syntax; an IPv6 host IP goes in brackets). Ports are 1 to 65535; ranges are
/// refused.
///
/// # Errors
/// [`PortError`] saying what is wrong.
pub fn parse_port_mapping(text: &str) -> Result<PortMapping, PortError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(PortError::Empty);
    }
    let (rest, protocol) = match text.split_once('/') {
        None => (text, PortProtocol::Tcp),
        Some((rest, proto)) => {
            let protocol = match proto.to_ascii_lowercase().as_str() {
                "tcp" => PortProtocol::Tcp,
                "udp" => PortProtocol::Udp,
                "sctp" => PortProtocol::Sctp,
                _ => return Err(PortError::Protocol(proto.to_owned())),
            };
            (rest, protocol)
        }
    };
    let (bracketed_ip, rest) = match rest.strip_prefix('[') {
        Some(inner) => {
            let (ip, after) = inner.split_once(']').ok_or(PortError::Malformed)?;
            let after = after.strip_prefix(':').ok_or(PortError::Malformed)?;
            (Some(ip.to_owned()), after)
        }
        None => (None, rest),
    };
    let parts: Vec<&str> = rest.split(':').collect();
    let (host_ip, host_port, container_port) = match (bracketed_ip, parts.as_slice()) {
        (None, [container]) => (None, "", *container),
        (None, [host, container]) => (None, *host, *container),
        (None, [ip, host, container]) => (Some((*ip).to_owned()), *host, *container),
        (Some(ip), [host, container]) => (Some(ip), *host, *container),
        _ => return Err(PortError::Malformed),
    };
    let host_ip = host_ip.filter(|ip| !ip.is_empty());
    let host_port = match host_port {
        "" => None,
        port => Some(parse_port(port)?),
    };
    Ok(PortMapping {
        host_ip,
        host_port,
        container_port: parse_port(container_port)?,
        protocol,
    })
}

fn parse_port(text: &str) -> Result<u16, PortError> {
    if text.contains('-') {
        return Err(PortError::Range(text.to_owned()));
    }
    match text.parse::<u16>() {
        Ok(port) if port > 0 && text.bytes().all(|b| b.is_ascii_digit()) => Ok(port),
        _ => Err(PortError::InvalidNumber(text.to_owned())),
    }
}

/// The `ports` map of a container in the `prepare_job` response: `{containerPort:
/// containerPort}`.
///
/// The runner exposes it as `job.services.<id>.ports[<containerPort>]`, the port a step uses to
/// reach the service. Docker publishes services on host ports; here every container of the pod
/// shares one network namespace, so from the job container the service listens on
/// `localhost:<containerPort>`, and that is the value to hand out. (The TypeScript hook returns
/// the requested host port, which nothing listens on in a pod.)
pub fn response_ports(mappings: &[PortMapping]) -> BTreeMap<String, String> {
    mappings
        .iter()
        .map(|m| {
            let port = m.container_port.to_string();
            (port.clone(), port)
        })
        .collect()
}

/// Build the job pod for `prepare_job` (module docs describe the layout).
///
/// # Errors
/// [`SpecError`] naming the container and the entry at fault: no containers, a runner pod name
/// that cannot be a label value, a missing image, an invalid port mapping, unbalanced quotes in
/// `entryPointArgs`, a relative mount target, or a hook template that does not merge.
pub fn job_pod(input: &JobPodInput<'_>) -> Result<JobPodPlan, SpecError> {
    let runner_pod = input.runner_pod;
    if runner_pod.is_empty() || !names::is_label_value(runner_pod) {
        return Err(SpecError::InvalidRunnerPodName(runner_pod.to_owned()));
    }
    let args = input.args;
    if args.container.is_none() && args.services.is_empty() {
        return Err(SpecError::NoContainers);
    }

    let mut mounts = MountPlanner::new(input.work_dir);
    let mut containers: Vec<Container> = Vec::new();

    if let Some(definition) = &args.container {
        let (command, container_args) = match non_empty(&definition.entry_point) {
            Some(entry_point) => (
                vec![entry_point.to_owned()],
                rejoin_args(JOB_CONTAINER, &definition.entry_point_args)?,
            ),
            // Keep the container alive: the runner execs every step into it (the TypeScript
            // hook's `DEFAULT_CONTAINER_ENTRY_POINT`).
            None => (
                vec!["tail".to_owned()],
                Some(vec!["-f".to_owned(), "/dev/null".to_owned()]),
            ),
        };
        let mut container = base_container(JOB_CONTAINER, definition, &mut mounts, 0)?;
        container.command = Some(command);
        container.args = container_args;
        containers.push(container);
    }

    let images: Vec<&str> = args
        .services
        .iter()
        .map(|s| s.image.as_deref().unwrap_or_default())
        .collect();
    let service_names = names::service_container_names(&images);
    for (definition, name) in args.services.iter().zip(&service_names) {
        let index = containers.len();
        let mut container = base_container(name, definition, &mut mounts, index)?;
        // A service runs its image's own entrypoint and command unless the workflow overrides
        // them (`docker create [--entrypoint e] image [args]`).
        container.command = non_empty(&definition.entry_point).map(|e| vec![e.to_owned()]);
        container.args = rejoin_args(name, &definition.entry_point_args)?;
        containers.push(container);
    }

    warn_shared_ports(&containers);
    let layout = mounts.finish(&mut containers);

    let mut volumes = Vec::new();
    if layout.uses_work {
        volumes.push(work_volume(input.work_volume));
    }
    if layout.uses_externals {
        volumes.push(empty_dir_volume(EXTERNALS_VOLUME));
    }
    volumes.extend(layout.extra_volumes.iter().map(|v| empty_dir_volume(v)));

    let init_containers = fs_init(input.runner_image, &layout);
    // Placement only matters for the work volume claim; a pod that does not mount it can run
    // anywhere.
    let placement = match input.work_volume {
        WorkVolume::Claim { placement, .. } if layout.uses_work => placement,
        _ => &Placement::Anywhere,
    };

    let mut pod = runner_pod_object(PodParts {
        name: names::job_pod(runner_pod),
        runner_pod,
        component: COMPONENT_JOB,
        owner: input.owner,
        containers,
        init_containers,
        volumes,
        placement,
        tolerations: input.tolerations,
        pull_secret: input.pull_secret,
    });

    if let Some(template) = input.template {
        template::apply(&mut pod, template, PodKind::Job).map_err(SpecError::ApplyTemplate)?;
    }

    // Read names, images and ports back from the final pod, so ports a template added to a
    // container are in the response too.
    let spec = pod.spec.as_ref().expect("the job pod has a spec");
    let plan_of = |name: &str| {
        spec.containers.iter().find(|c| c.name == name).map(|c| {
            let mappings: Vec<PortMapping> = c
                .ports
                .iter()
                .flatten()
                .filter_map(|p| {
                    Some(PortMapping {
                        host_ip: None,
                        host_port: None,
                        container_port: u16::try_from(p.container_port).ok()?,
                        protocol: PortProtocol::Tcp,
                    })
                })
                .collect();
            PlannedContainer {
                name: c.name.clone(),
                image: c.image.clone().unwrap_or_default(),
                ports: response_ports(&mappings),
            }
        })
    };
    let job_container = args.container.as_ref().and_then(|_| plan_of(JOB_CONTAINER));
    let services = service_names
        .iter()
        .filter_map(|name| plan_of(name))
        .collect();

    Ok(JobPodPlan {
        job_container,
        services,
        work_mount: layout.work_mount,
        user_volume_copies: layout.copies,
        pod,
    })
}

/// Label value of step pods.
pub const COMPONENT_STEP: &str = "step";
/// Init container of a copy-mode step pod: waits until the hook has copied the step's files in.
pub const STAGE_CONTAINER: &str = "stage";
/// Sidecar of a copy-mode step pod: outlives the step so the hook can copy its results out.
pub const FILES_CONTAINER: &str = "files";
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
    /// The Secret holding the step's environment ([`env_secret`]): when given, the step
    /// container takes its variables from it (`envFrom`) instead of from its own spec, so
    /// tokens and secret inputs are not readable by whoever may `get` pods.
    pub env_secret: Option<&'a str>,
    /// The step's container as the runner asked for it.
    pub args: &'a ContainerDefinition,
    /// The hook template (`$job` applies to the step container, sidecars are added).
    pub template: Option<&'a Template>,
    /// The runner pod's tolerations, as for [`JobPodInput::tolerations`].
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

/// The pod of a container step (`run_container_step`): the step image as container `job` running
/// its own ENTRYPOINT/CMD (or the action's `entrypoint`), with the runner's container-step
/// layout (`/github/workspace`, `/github/home`, `/github/workflow`, `/github/file_commands`,
/// `/github/runner_temp`) mapped onto the work volume exactly as for the job pod.
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
    let mut step = base_container(JOB_CONTAINER, &definition, &mut mounts, 0)?;
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
    step.args = rejoin_args(JOB_CONTAINER, &definition.entry_point_args)?;
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

/// What differs between the hook's job and step pods.
struct PodParts<'a> {
    name: String,
    runner_pod: &'a str,
    component: &'a str,
    owner: Option<&'a Owner>,
    containers: Vec<Container>,
    init_containers: Vec<Container>,
    volumes: Vec<Volume>,
    placement: &'a Placement,
    tolerations: &'a [Toleration],
    pull_secret: Option<&'a str>,
}

/// A pod of this runner: labels, ownerReference, `restartPolicy: Never`, the runner's
/// `fsGroup`, no service links, the runner's node ([`node_name`]) or preferred affinity
/// ([`node_affinity`]), and the runner pod's tolerations.
fn runner_pod_object(parts: PodParts<'_>) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(parts.name),
            labels: Some(object_labels(parts.runner_pod, parts.component)),
            owner_references: parts.owner.map(|o| vec![owner_reference(o)]),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: parts.containers,
            init_containers: (!parts.init_containers.is_empty()).then_some(parts.init_containers),
            volumes: (!parts.volumes.is_empty()).then_some(parts.volumes),
            restart_policy: Some("Never".into()),
            security_context: Some(pod_security_context()),
            image_pull_secrets: parts.pull_secret.map(|name| {
                vec![LocalObjectReference {
                    name: name.to_owned(),
                }]
            }),
            node_name: node_name(parts.placement),
            affinity: node_affinity(parts.placement),
            tolerations: (!parts.tolerations.is_empty()).then(|| parts.tolerations.to_vec()),
            // Docker gives a job container no variables about other services; Kubernetes
            // service links would add `<SERVICE>_PORT=tcp://...` for every Service in the
            // namespace, which clobbers variables like `REDIS_PORT` that images and tests read.
            enable_service_links: Some(false),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Label value of step environment secrets.
pub const COMPONENT_STEP_ENV: &str = "step-env";

/// A Secret key may hold `[-._a-zA-Z0-9]+` (Kubernetes `IsConfigMapKey`); a variable whose name
/// cannot be a key stays in the container spec.
fn is_secret_key(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
}

/// The step's variables split into those a Secret can hold (with `GITHUB_ACTIONS`/`CI` added as
/// for every container) and the rest.
fn split_env(
    variables: &BTreeMap<String, String>,
) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let mut all = variables.clone();
    all.insert("GITHUB_ACTIONS".into(), "true".into());
    all.entry("CI".into()).or_insert_with(|| "true".into());
    all.into_iter().partition(|(k, _)| is_secret_key(k))
}

fn environment_without_defaults(variables: &BTreeMap<String, String>) -> Vec<EnvVar> {
    variables
        .iter()
        .map(|(name, value)| EnvVar {
            name: name.clone(),
            value: Some(value.clone()),
            ..Default::default()
        })
        .collect()
}

/// The Secret that carries a container step's environment (tokens like
/// `ACTIONS_RUNTIME_TOKEN`, and secret inputs), consumed by the step pod with `envFrom`. The
/// TypeScript hook 0.7 did the same; 0.8 wrote them into the pod spec.
pub fn env_secret(
    name: &str,
    runner_pod: &str,
    owner: Option<&Owner>,
    variables: &BTreeMap<String, String>,
) -> Secret {
    let (from_secret, _) = split_env(variables);
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(object_labels(runner_pod, COMPONENT_STEP_ENV)),
            owner_references: owner.map(|o| vec![owner_reference(o)]),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        immutable: Some(true),
        data: Some(
            from_secret
                .into_iter()
                .map(|(k, v)| (k, ByteString(v.into_bytes())))
                .collect(),
        ),
        ..Default::default()
    }
}

/// The parts of a job or service container that are built the same way.
fn base_container(
    name: &str,
    definition: &ContainerDefinition,
    mounts: &mut MountPlanner,
    index: usize,
) -> Result<Container, SpecError> {
    let image = non_empty(&definition.image).ok_or_else(|| SpecError::MissingImage {
        container: name.to_owned(),
    })?;
    if let Some(options) = non_empty(&definition.create_options) {
        debug!(
            container = name,
            options, "`options` (docker create options) are not mapped to the pod and are ignored"
        );
    }
    let ports = container_ports(name, &definition.port_mappings)?;
    let volume_mounts = mounts.container(
        index,
        name,
        &definition.system_mount_volumes,
        &definition.user_mount_volumes,
    )?;
    Ok(Container {
        name: name.to_owned(),
        image: Some(image.to_owned()),
        working_dir: non_empty(&definition.working_directory).map(str::to_owned),
        env: Some(environment(&definition.environment_variables)),
        ports: (!ports.is_empty()).then_some(ports),
        volume_mounts: (!volume_mounts.is_empty()).then_some(volume_mounts),
        ..Default::default()
    })
}

/// The container's environment, sorted by name.
///
/// Every variable of the request is kept, `HOME` and empty values included. The TypeScript hook
/// dropped both (`if (value && key !== 'HOME')`), but Docker passes them: `HOME=/github/home` is
/// where the runner points tools (and `/github/home` is mounted in this pod), and an empty
/// variable is different from an unset one for many programs. `GITHUB_ACTIONS=true` is always
/// set and `CI=true` unless the request sets `CI`, as the runner does for Docker containers.
fn environment(variables: &BTreeMap<String, String>) -> Vec<EnvVar> {
    let mut env = variables.clone();
    env.insert("GITHUB_ACTIONS".into(), "true".into());
    env.entry("CI".into()).or_insert_with(|| "true".into());
    env.into_iter()
        .map(|(name, value)| EnvVar {
            name,
            value: Some(value),
            ..Default::default()
        })
        .collect()
}

/// Container ports from `portMappings`, without host ports: all containers of the pod share its
/// network, so a step reaches a service at `localhost:<containerPort>`, and a `hostPort` would
/// only make two jobs on one node clash (ARC #2890).
fn container_ports(container: &str, mappings: &[String]) -> Result<Vec<ContainerPort>, SpecError> {
    let mut ports: Vec<ContainerPort> = Vec::new();
    for entry in mappings {
        let mapping = parse_port_mapping(entry).map_err(|source| SpecError::InvalidPort {
            container: container.to_owned(),
            entry: entry.clone(),
            source,
        })?;
        if mapping
            .host_port
            .is_some_and(|h| h != mapping.container_port)
        {
            debug!(
                container,
                entry,
                "the host port is not used: the service is reachable from the job container at localhost:{}",
                mapping.container_port
            );
        }
        let protocol = mapping.protocol.as_kubernetes();
        let port = i32::from(mapping.container_port);
        // `80:8080` and `81:8080` publish one container port twice; the pod needs it once.
        if !ports
            .iter()
            .any(|p| p.container_port == port && p.protocol.as_deref() == Some(protocol))
        {
            ports.push(ContainerPort {
                container_port: port,
                protocol: Some(protocol.to_owned()),
                ..Default::default()
            });
        }
    }
    Ok(ports)
}

/// Warn when two containers of the pod declare one port: they share the network namespace, so
/// only one of them can listen on it (with Docker each had its own).
fn warn_shared_ports(containers: &[Container]) {
    let mut seen: BTreeMap<(i32, String), &str> = BTreeMap::new();
    for container in containers {
        for port in container.ports.iter().flatten() {
            let key = (
                port.container_port,
                port.protocol.clone().unwrap_or_default(),
            );
            match seen.get(&key) {
                Some(first) if *first != container.name => warn!(
                    "containers `{first}` and `{}` both declare port {}: they share the pod's network, so only one of them can listen on it",
                    container.name, port.container_port
                ),
                _ => {
                    seen.insert(key, &container.name);
                }
            }
        }
    }
}

/// `entryPointArgs` re-joined and split ([`shell::rejoin`]); `None` when there are none.
fn rejoin_args(container: &str, args: &[String]) -> Result<Option<Vec<String>>, SpecError> {
    let words = shell::rejoin(args).map_err(|source| SpecError::InvalidArgs {
        container: container.to_owned(),
        source,
    })?;
    Ok((!words.is_empty()).then_some(words))
}

fn non_empty(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|v| !v.trim().is_empty())
}

/// The runner's uid/gid as `fsGroup`: makes emptyDirs group-writable for it (TypeScript
/// default).
fn pod_security_context() -> PodSecurityContext {
    PodSecurityContext {
        fs_group: Some(RUNNER_UID),
        // Without it the kubelet changes the group of every file on the work volume claim at
        // each mount, which takes minutes on a large `_work`; the runner pod already gave the
        // volume's root this group.
        fs_group_change_policy: Some("OnRootMismatch".into()),
        ..Default::default()
    }
}

/// The `work` volume: the runner's claim in volume mode, an emptyDir in copy mode.
fn work_volume(source: &WorkVolume) -> Volume {
    Volume {
        name: WORK_VOLUME.into(),
        persistent_volume_claim: match source {
            WorkVolume::Claim { claim_name, .. } => Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim_name.clone(),
                read_only: None,
            }),
            WorkVolume::EmptyDir => None,
        },
        empty_dir: matches!(source, WorkVolume::EmptyDir).then(EmptyDirVolumeSource::default),
        ..Default::default()
    }
}

fn empty_dir_volume(name: &str) -> Volume {
    Volume {
        name: name.to_owned(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Default::default()
    }
}

/// `fs-init`: copies the runner's externals into the `externals` volume, and creates the
/// work-volume directories that containers mount by `subPath`.
///
/// The kubelet creates a missing `subPath` directory itself, owned by root; in copy mode the
/// emptyDir starts empty, so `/github/home` would be root-owned and unwritable for a non-root
/// job image. Created here first, as the runner user, they carry its ownership (and the pod's
/// `fsGroup`). Paths go to the script as arguments (`"$@"`), never through shell quoting; an
/// existing path (a file mounted from the work volume in volume mode) is left alone.
fn fs_init(runner_image: &str, layout: &Layout) -> Vec<Container> {
    let mut script = vec!["set -e".to_owned()];
    let mut volume_mounts = Vec::new();
    let mut dirs = Vec::new();
    if layout.uses_externals {
        script.push(format!(
            "cp -R {RUNNER_IMAGE_EXTERNALS}/. {INIT_EXTERNALS_MOUNT}"
        ));
        volume_mounts.push(VolumeMount {
            name: EXTERNALS_VOLUME.into(),
            mount_path: INIT_EXTERNALS_MOUNT.into(),
            ..Default::default()
        });
    }
    if !layout.work_dirs.is_empty() {
        script.push(r#"for dir in "$@"; do [ -e "$dir" ] || mkdir -p -- "$dir"; done"#.to_owned());
        volume_mounts.push(VolumeMount {
            name: WORK_VOLUME.into(),
            mount_path: INIT_WORK_MOUNT.into(),
            ..Default::default()
        });
        dirs.extend(
            layout
                .work_dirs
                .iter()
                .map(|sub| format!("{INIT_WORK_MOUNT}/{sub}")),
        );
    }
    if volume_mounts.is_empty() {
        return Vec::new();
    }
    let mut command = vec![
        "sh".to_owned(),
        "-c".to_owned(),
        script.join("\n"),
        FS_INIT_CONTAINER.to_owned(), // `$0` of the script
    ];
    command.extend(dirs);
    vec![Container {
        name: FS_INIT_CONTAINER.into(),
        image: Some(runner_image.to_owned()),
        command: Some(command),
        security_context: Some(SecurityContext {
            run_as_user: Some(RUNNER_UID),
            run_as_group: Some(RUNNER_UID),
            ..Default::default()
        }),
        volume_mounts: Some(volume_mounts),
        ..Default::default()
    }]
}

/// Where a mount's source lives, seen from the pod.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    /// Under the runner's `_work`: the work volume, at this `subPath` (`None`: its root).
    Work(Option<String>),
    /// Under the runner's `externals`: the externals volume.
    Externals(Option<String>),
    /// The Docker socket.
    DockerSocket,
    /// Another absolute host path.
    Host(PathBuf),
    /// A Docker named volume (no leading `/`).
    Named(String),
    /// No source given.
    Missing,
}

/// The pod-level result of mapping every container's mounts.
#[derive(Debug, Default)]
struct Layout {
    uses_work: bool,
    uses_externals: bool,
    work_dirs: BTreeSet<String>,
    extra_volumes: Vec<String>,
    copies: Vec<VolumeCopy>,
    work_mount: Option<String>,
}

/// An emptyDir for a user volume outside `_work`, shared by every container that mounts the same
/// source (as a Docker bind mount or named volume would be).
#[derive(Debug)]
struct ExtraVolume {
    name: String,
    source: Source,
    /// (container index, container name, target, read-only) of each mount.
    mounts: Vec<(usize, String, String, bool)>,
}

/// Maps the runner's Docker mounts to volume mounts, one container at a time.
struct MountPlanner {
    work_dir: Option<PathBuf>,
    externals_dir: Option<PathBuf>,
    extra: Vec<ExtraVolume>,
}

impl MountPlanner {
    fn new(work_dir: &Path) -> MountPlanner {
        let work_dir = normalize(work_dir);
        // The runner's layout: `<root>/_work` beside `<root>/externals` (reference §1.5).
        let externals_dir = work_dir
            .as_deref()
            .and_then(Path::parent)
            .map(|root| root.join("externals"));
        MountPlanner {
            work_dir,
            externals_dir,
            extra: Vec::new(),
        }
    }

    fn classify(&self, source: Option<&str>) -> Source {
        let Some(source) = source.filter(|s| !s.is_empty()) else {
            return Source::Missing;
        };
        if !source.starts_with('/') {
            return Source::Named(source.to_owned());
        }
        let Some(path) = normalize(Path::new(source)) else {
            return Source::Host(PathBuf::from(source));
        };
        if path == Path::new(DOCKER_SOCKET) {
            return Source::DockerSocket;
        }
        let relative = |base: &Option<PathBuf>| {
            let rest = path.strip_prefix(base.as_ref()?).ok()?;
            let rest = rest.to_str()?;
            Some((!rest.is_empty()).then(|| rest.to_owned()))
        };
        if let Some(sub) = relative(&self.work_dir) {
            return Source::Work(sub);
        }
        if let Some(sub) = relative(&self.externals_dir) {
            return Source::Externals(sub);
        }
        Source::Host(path)
    }

    /// The volume mounts of one container: system mounts first, then user mounts; a user mount
    /// with the target of a system mount replaces it, and a repeated target keeps the first.
    fn container(
        &mut self,
        index: usize,
        container: &str,
        system: &[Mount],
        user: &[Mount],
    ) -> Result<Vec<VolumeMount>, SpecError> {
        let mut mounts: Vec<(VolumeMount, bool)> = Vec::new();
        for (mount, is_user) in system
            .iter()
            .map(|m| (m, false))
            .chain(user.iter().map(|m| (m, true)))
        {
            let target = mount_target(container, &mount.target_volume_path)?;
            let source = self.classify(mount.source_volume_path.as_deref());
            let volume = match &source {
                Source::Work(sub) => Some((WORK_VOLUME.to_owned(), sub.clone())),
                Source::Externals(sub) => Some((EXTERNALS_VOLUME.to_owned(), sub.clone())),
                Source::DockerSocket => {
                    if is_user {
                        warn!(
                            container,
                            "the Docker socket mount at `{target}` is skipped: there is no Docker daemon in the job pod"
                        );
                    } else {
                        debug!(
                            container,
                            "skipping the Docker socket mount: there is no Docker daemon in the job pod"
                        );
                    }
                    None
                }
                Source::Missing => {
                    warn!(
                        container,
                        "the mount at `{target}` has no source and is skipped"
                    );
                    None
                }
                Source::Host(path) if !is_user => {
                    // E.g. a tool cache outside `_work` (`/__t`): nothing in the pod holds it.
                    warn!(
                        container,
                        "the runner's mount of `{}` at `{target}` is skipped: only directories under the runner's `_work` and `externals` are available in the pod",
                        path.display()
                    );
                    None
                }
                Source::Named(name) if !is_user => {
                    warn!(
                        container,
                        "the runner's mount of volume `{name}` at `{target}` is skipped"
                    );
                    None
                }
                Source::Host(_) | Source::Named(_) => {
                    if let Source::Named(name) = &source {
                        warn!(
                            container,
                            "Docker volume `{name}` is mounted at `{target}` as an empty directory that lasts as long as the job pod, not a persistent volume"
                        );
                    }
                    let name =
                        self.extra_volume(&source, index, container, &target, mount.read_only);
                    Some((name, None))
                }
            };
            let Some((volume, sub_path)) = volume else {
                continue;
            };
            let volume_mount = VolumeMount {
                name: volume,
                mount_path: target.clone(),
                sub_path,
                read_only: mount.read_only.then_some(true),
                ..Default::default()
            };
            match mounts.iter().position(|(m, _)| m.mount_path == target) {
                None => mounts.push((volume_mount, is_user)),
                Some(i) if is_user && !mounts[i].1 => {
                    warn!(
                        container,
                        "the workflow's volume at `{target}` replaces the runner's mount there"
                    );
                    mounts[i] = (volume_mount, true);
                }
                Some(_) => {
                    warn!(
                        container,
                        "a second mount at `{target}` is skipped: a target can be mounted once"
                    );
                }
            }
        }
        Ok(mounts.into_iter().map(|(m, _)| m).collect())
    }

    fn extra_volume(
        &mut self,
        source: &Source,
        index: usize,
        container: &str,
        target: &str,
        read_only: bool,
    ) -> String {
        let position = match self.extra.iter().position(|v| &v.source == source) {
            Some(position) => position,
            None => {
                self.extra.push(ExtraVolume {
                    name: format!("user-volume-{}", self.extra.len()),
                    source: source.clone(),
                    mounts: Vec::new(),
                });
                self.extra.len() - 1
            }
        };
        let volume = &mut self.extra[position];
        volume
            .mounts
            .push((index, container.to_owned(), target.to_owned(), read_only));
        volume.name.clone()
    }

    /// Record which volumes the containers use and plan the user-volume copies. A volume every
    /// container mounts read-only gets a writable staging mount in the first one, so it can be
    /// filled.
    fn finish(self, containers: &mut [Container]) -> Layout {
        let mut layout = Layout::default();
        for container in containers.iter() {
            for mount in container.volume_mounts.iter().flatten() {
                match mount.name.as_str() {
                    WORK_VOLUME => {
                        layout.uses_work = true;
                        match &mount.sub_path {
                            Some(sub) => {
                                layout.work_dirs.insert(sub.clone());
                            }
                            None if container.name == JOB_CONTAINER
                                && layout.work_mount.is_none() =>
                            {
                                layout.work_mount = Some(mount.mount_path.clone());
                            }
                            None => {}
                        }
                    }
                    EXTERNALS_VOLUME => layout.uses_externals = true,
                    _ => {}
                }
            }
            if let Some(dir) = container
                .working_dir
                .as_deref()
                .and_then(|wd| work_relative(container, wd))
            {
                layout.work_dirs.insert(dir);
            }
        }
        for volume in &self.extra {
            // A mount replaced by a later one at the same target is not in the pod.
            let live: Vec<&(usize, String, String, bool)> = volume
                .mounts
                .iter()
                .filter(|(index, _, target, _)| {
                    containers[*index]
                        .volume_mounts
                        .iter()
                        .flatten()
                        .any(|m| m.name == volume.name && &m.mount_path == target)
                })
                .collect();
            let Some(first) = live.first() else {
                continue;
            };
            layout.extra_volumes.push(volume.name.clone());
            let Source::Host(source) = &volume.source else {
                continue; // A named volume starts empty, as a new Docker volume does.
            };
            let (container, path) = match live.iter().find(|(_, _, _, read_only)| !read_only) {
                Some((_, container, target, _)) => (container.clone(), target.clone()),
                None => {
                    let (index, container, _, _) = first;
                    let staging = format!("{STAGING_ROOT}/{}", volume.name);
                    containers[*index]
                        .volume_mounts
                        .get_or_insert_with(Vec::new)
                        .push(VolumeMount {
                            name: volume.name.clone(),
                            mount_path: staging.clone(),
                            ..Default::default()
                        });
                    (container.clone(), staging)
                }
            };
            layout.copies.push(VolumeCopy {
                source: source.clone(),
                container,
                path,
                volume: volume.name.clone(),
            });
        }
        layout
    }
}

/// Where `path` (in `container`) lies in the work volume, through the deepest work-volume mount
/// that contains it; `None` outside the work volume or at its root.
///
/// Used for the working directory: in copy mode it does not exist until `_work` is copied in,
/// but the container starts before that, so the runtime would create it as root (the TypeScript
/// hook's `fs-init` also created the workspace directory).
fn work_relative(container: &Container, path: &str) -> Option<String> {
    let path = normalize(Path::new(path))?;
    let (mount, rest) = container
        .volume_mounts
        .iter()
        .flatten()
        .filter(|m| m.name == WORK_VOLUME)
        .filter_map(|m| Some((m, path.strip_prefix(&m.mount_path).ok()?)))
        .max_by_key(|(m, _)| m.mount_path.len())?;
    let relative = Path::new(mount.sub_path.as_deref().unwrap_or_default()).join(rest);
    let relative = relative.to_str()?.trim_end_matches('/');
    (!relative.is_empty()).then(|| relative.to_owned())
}

/// The mount target, normalized (`/a//b/` → `/a/b`); it must be absolute, as Docker requires.
fn mount_target(container: &str, target: &str) -> Result<String, SpecError> {
    let invalid = |reason| SpecError::InvalidMount {
        container: container.to_owned(),
        target: target.to_owned(),
        reason,
    };
    if !target.starts_with('/') {
        return Err(invalid("the target must be an absolute path"));
    }
    let normalized =
        normalize(Path::new(target)).ok_or_else(|| invalid("the target is not a path"))?;
    normalized
        .to_str()
        .map(str::to_owned)
        .ok_or_else(|| invalid("the target is not valid UTF-8"))
}

/// The `kubernetes.io/dockerconfigjson` Secret for the job's registries (the TypeScript hook's
/// format): `{"auths": {"<server>": {"username", "password", "auth": base64("user:pass")}}}`,
/// Docker Hub (an empty `serverUrl`) as `https://index.docker.io/v1/`. Several registries share
/// one `auths` map; when two give the same server the first wins. Immutable: it is created once
/// per job and never updated. Its content is never logged.
pub fn pull_secret(
    name: &str,
    runner_pod: &str,
    owner: Option<&Owner>,
    registries: &[&Registry],
) -> Secret {
    #[derive(Serialize)]
    struct Auth<'a> {
        username: &'a str,
        password: &'a str,
        auth: String,
    }
    #[derive(Serialize)]
    struct DockerConfig<'a> {
        auths: BTreeMap<String, Auth<'a>>,
    }
    let mut auths = BTreeMap::new();
    for registry in registries {
        let server = registry
            .server_url
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .unwrap_or(DOCKER_HUB_AUTH_URL)
            .to_owned();
        if auths.contains_key(&server) {
            warn!(registry = %server, "two containers give credentials for one registry; the first are used");
            continue;
        }
        let username = registry.username.as_deref().unwrap_or_default();
        let password = registry.password_plain();
        auths.insert(
            server,
            Auth {
                username,
                password,
                auth: BASE64.encode(format!("{username}:{password}")),
            },
        );
    }
    let config =
        serde_json::to_vec(&DockerConfig { auths }).expect("a map of strings serialises to JSON");
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(object_labels(runner_pod, COMPONENT_PULL_SECRET)),
            owner_references: owner.map(|o| vec![owner_reference(o)]),
            ..Default::default()
        },
        type_: Some("kubernetes.io/dockerconfigjson".into()),
        immutable: Some(true),
        data: Some(BTreeMap::from([(
            ".dockerconfigjson".to_owned(),
            ByteString(config),
        )])),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Args, parse_request};

    const RUNNER_POD: &str = "arc-runner-set-abcde-runner-x7k2p";
    const WORK_DIR: &str = "/home/runner/_work";
    const RUNNER_IMAGE: &str = "ghcr.io/actions/actions-runner:latest";
    const NODE: &str = "aks-nodepool1-12345678-vmss000003";

    fn fixture(name: &str) -> PrepareJobArgs {
        let text = match name {
            "prepare_job" => include_str!("../../tests/fixtures/requests/prepare_job.json"),
            "prepare_job_services_only" => {
                include_str!("../../tests/fixtures/requests/prepare_job_services_only.json")
            }
            other => panic!("no fixture {other}"),
        };
        match parse_request(text).expect("fixture parses").args {
            Args::PrepareJob(args) => args,
            other => panic!("not prepare_job: {other:?}"),
        }
    }

    fn owner() -> Owner {
        Owner {
            name: RUNNER_POD.into(),
            uid: "6f1c9a2e-0d1b-4c7e-9a55-1f3e2d4c5b6a".into(),
        }
    }

    /// The runner pod's tolerations in every fixture: a runner node pool tainted
    /// `dedicated=runners:NoSchedule`.
    fn runner_tolerations() -> Vec<Toleration> {
        vec![Toleration {
            key: Some("dedicated".into()),
            operator: Some("Equal".into()),
            value: Some("runners".into()),
            effect: Some("NoSchedule".into()),
            toleration_seconds: None,
        }]
    }

    fn build(
        args: &PrepareJobArgs,
        work_volume: &WorkVolume,
        template: Option<&Template>,
    ) -> Result<JobPodPlan, SpecError> {
        let owner = owner();
        let secret = names::secret(RUNNER_POD, "a1b2c3d4");
        job_pod(&JobPodInput {
            runner_pod: RUNNER_POD,
            owner: Some(&owner),
            work_dir: Path::new(WORK_DIR),
            work_volume,
            runner_image: RUNNER_IMAGE,
            pull_secret: Some(&secret),
            args,
            template,
            tolerations: &runner_tolerations(),
        })
    }

    fn copy_plan(args: &PrepareJobArgs) -> JobPodPlan {
        build(args, &WorkVolume::EmptyDir, None).expect("job pod builds")
    }

    fn claim(placement: Placement) -> WorkVolume {
        WorkVolume::Claim {
            claim_name: format!("{RUNNER_POD}-work"),
            placement,
        }
    }

    fn container<'a>(pod: &'a Pod, name: &str) -> &'a Container {
        pod.spec
            .as_ref()
            .unwrap()
            .containers
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no container `{name}`"))
    }

    /// `(mountPath, volume, subPath, readOnly)` of each mount.
    fn mounts(c: &Container) -> Vec<(String, String, Option<String>, bool)> {
        c.volume_mounts
            .iter()
            .flatten()
            .map(|m| {
                (
                    m.mount_path.clone(),
                    m.name.clone(),
                    m.sub_path.clone(),
                    m.read_only == Some(true),
                )
            })
            .collect()
    }

    fn env(c: &Container) -> BTreeMap<String, String> {
        c.env
            .iter()
            .flatten()
            .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
            .collect()
    }

    fn volume_names(pod: &Pod) -> Vec<String> {
        pod.spec
            .as_ref()
            .unwrap()
            .volumes
            .iter()
            .flatten()
            .map(|v| v.name.clone())
            .collect()
    }

    fn mount(source: &str, target: &str, read_only: bool) -> Mount {
        Mount {
            user_provided_value: None,
            source_volume_path: Some(source.into()),
            target_volume_path: target.into(),
            read_only,
        }
    }

    fn job_only(definition: ContainerDefinition) -> PrepareJobArgs {
        PrepareJobArgs {
            container: Some(definition),
            services: Vec::new(),
        }
    }

    fn definition(image: &str) -> ContainerDefinition {
        ContainerDefinition {
            image: Some(image.into()),
            ..Default::default()
        }
    }

    const TEMPLATE: &str = r#"
metadata:
  labels:
    team: platform
    runner-pod: not-allowed
  annotations:
    cluster-autoscaler.kubernetes.io/safe-to-evict: "false"
spec:
  nodeSelector:
    kubernetes.io/arch: amd64
  tolerations:
  - key: nvidia.com/gpu
    operator: Exists
    effect: NoSchedule
  - key: dedicated
    operator: Equal
    value: runners
    effect: NoSchedule
  initContainers:
  - name: warm-cache
    image: busybox:1.36
    command: [sh, -c, "mkdir -p /cache/npm"]
    volumeMounts:
    - name: cache
      mountPath: /cache
  containers:
  - name: $job
    image: ignored:latest
    command: [sleep]
    args: [infinity]
    env:
    - name: NODE_OPTIONS
      value: --max-old-space-size=4096
    resources:
      requests:
        cpu: 500m
        memory: 1Gi
      limits:
        memory: 2Gi
    volumeMounts:
    - name: cache
      mountPath: /cache
  - name: $redis
    env:
    - name: REDIS_ARGS
      value: --maxmemory 256mb
    resources:
      limits:
        cpu: 1
        memory: 512Mi
  - name: log-shipper
    image: fluent/fluent-bit:3.0
    volumeMounts:
    - name: cache
      mountPath: /cache
      readOnly: true
  volumes:
  - name: cache
    emptyDir:
      sizeLimit: 10Gi
"#;

    fn template() -> Template {
        Template::from_yaml(TEMPLATE, "/home/runner/pod-templates/default.yaml")
            .expect("template parses")
    }

    macro_rules! assert_pod_snapshot {
        ($name:expr, $value:expr) => {
            insta::assert_yaml_snapshot!($name, $value, {
                ".metadata.ownerReferences[].uid" => "[runner-pod-uid]",
            })
        };
    }

    #[test]
    fn golden_job_pod_copy_mode() {
        let plan = copy_plan(&fixture("prepare_job"));
        assert_pod_snapshot!("job_pod_copy", &plan.pod);
    }

    #[test]
    fn golden_job_pod_volume_mode_pinned() {
        let plan = build(
            &fixture("prepare_job"),
            &claim(Placement::PinToNode(NODE.into())),
            None,
        )
        .unwrap();
        assert_pod_snapshot!("job_pod_volume_pinned", &plan.pod);
    }

    #[test]
    fn golden_job_pod_volume_mode_prefer_node() {
        let plan = build(
            &fixture("prepare_job"),
            &claim(Placement::PreferNode(NODE.into())),
            None,
        )
        .unwrap();
        assert_pod_snapshot!("job_pod_volume_prefer_node", &plan.pod);
    }

    #[test]
    fn golden_job_pod_copy_mode_with_template() {
        let template = template();
        let plan = build(
            &fixture("prepare_job"),
            &WorkVolume::EmptyDir,
            Some(&template),
        )
        .unwrap();
        assert_pod_snapshot!("job_pod_copy_template", &plan.pod);
    }

    #[test]
    fn golden_job_pod_services_only() {
        let plan = copy_plan(&fixture("prepare_job_services_only"));
        assert_pod_snapshot!("job_pod_services_only", &plan.pod);
    }

    #[test]
    fn golden_job_pod_volume_mode_with_template() {
        let template = template();
        let plan = build(
            &fixture("prepare_job"),
            &claim(Placement::PinToNode(NODE.into())),
            Some(&template),
        )
        .unwrap();
        assert_pod_snapshot!("job_pod_volume_template", &plan.pod);
    }

    fn step_fixture(name: &str) -> ContainerDefinition {
        let text = match name {
            "run_container_step" => {
                include_str!("../../tests/fixtures/requests/run_container_step.json")
            }
            "run_container_step_no_entrypoint" => {
                include_str!("../../tests/fixtures/requests/run_container_step_no_entrypoint.json")
            }
            other => panic!("no fixture {other}"),
        };
        match parse_request(text).expect("fixture parses").args {
            Args::RunContainerStep(args) => args,
            other => panic!("not run_container_step: {other:?}"),
        }
    }

    fn step(name: &str, work_volume: &WorkVolume, template: Option<&Template>) -> StepPodPlan {
        let args = step_fixture(name);
        let owner = owner();
        step_pod(&StepPodInput {
            runner_pod: RUNNER_POD,
            suffix: "k3x9q2zt",
            owner: Some(&owner),
            work_dir: Path::new(WORK_DIR),
            work_volume,
            runner_image: RUNNER_IMAGE,
            image: args.image.as_deref().unwrap(),
            pull_secret: None,
            env_secret: Some("arc-runner-set-abcde-runner-x7k2p-secret-e5v7w9y1"),
            args: &args,
            template,
            tolerations: &runner_tolerations(),
        })
        .expect("step pod builds")
    }

    #[test]
    fn golden_step_pod_copy_mode_with_entrypoint() {
        let plan = step("run_container_step", &WorkVolume::EmptyDir, None);
        assert_eq!(plan.work_mount.as_deref(), Some(STEP_WORK_MOUNT));
        assert_pod_snapshot!("step_pod_copy_entrypoint", &plan.pod);
    }

    #[test]
    fn golden_step_pod_volume_mode_without_entrypoint() {
        let plan = step(
            "run_container_step_no_entrypoint",
            &claim(Placement::PinToNode(NODE.into())),
            None,
        );
        assert_eq!(plan.work_mount, None);
        let step = &plan.pod.spec.as_ref().unwrap().containers[0];
        // The image's own ENTRYPOINT runs; the runner's args replace its CMD.
        assert_eq!(step.command, None);
        assert_eq!(
            step.args.as_deref(),
            Some(&["--format".to_owned(), "json".to_owned()][..])
        );
        assert_pod_snapshot!("step_pod_volume_no_entrypoint", &plan.pod);
    }

    #[test]
    fn golden_step_pod_copy_mode_with_template() {
        let template = template();
        let plan = step("run_container_step", &WorkVolume::EmptyDir, Some(&template));
        assert_pod_snapshot!("step_pod_copy_template", &plan.pod);
    }

    #[test]
    fn golden_step_pod_volume_mode_with_template() {
        let template = template();
        let plan = step(
            "run_container_step_no_entrypoint",
            &claim(Placement::PreferNode(NODE.into())),
            Some(&template),
        );
        assert_pod_snapshot!("step_pod_volume_template", &plan.pod);
    }

    #[test]
    fn step_environment_lives_in_a_secret_not_in_the_pod_spec() {
        let args = step_fixture("run_container_step");
        let plan = step("run_container_step", &WorkVolume::EmptyDir, None);
        let pod_yaml = serde_json::to_string(&plan.pod).unwrap();
        assert!(!pod_yaml.contains("ACTIONS_RUNTIME_TOKEN"), "{pod_yaml}");
        let secret = env_secret("s", RUNNER_POD, Some(&owner()), &args.environment_variables);
        let data = secret.data.unwrap();
        assert_eq!(data["ACTIONS_RUNTIME_TOKEN"].0, b"***");
        assert_eq!(data["GITHUB_ACTIONS"].0, b"true");
        assert_eq!(data["CI"].0, b"true");
        assert_eq!(secret.immutable, Some(true));
        // A name a Secret key cannot hold stays in the container spec.
        let odd = BTreeMap::from([
            ("A B".to_owned(), "1".to_owned()),
            ("OK".to_owned(), "2".to_owned()),
        ]);
        let (in_secret, plain) = split_env(&odd);
        assert!(in_secret.contains_key("OK") && plain.contains_key("A B"));
    }

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

    #[test]
    fn golden_pull_secret() {
        let args = fixture("prepare_job");
        let registry = args.container.as_ref().unwrap().registry.as_ref().unwrap();
        let secret = pull_secret(
            &names::secret(RUNNER_POD, "a1b2c3d4"),
            RUNNER_POD,
            Some(&owner()),
            &[registry],
        );
        assert_pod_snapshot!("pull_secret", &secret);
    }

    #[test]
    fn plan_reports_names_ports_and_work_mount() {
        let plan = copy_plan(&fixture("prepare_job"));
        let job = plan.job_container.as_ref().unwrap();
        assert_eq!(job.name, "job");
        assert_eq!(job.image, "node:22");
        assert_eq!(job.ports, BTreeMap::from([("8080".into(), "8080".into())]));
        let services: Vec<(&str, &str)> = plan
            .services
            .iter()
            .map(|s| (s.name.as_str(), s.image.as_str()))
            .collect();
        assert_eq!(services[0], ("redis", "redis:7"));
        assert_eq!(services[1].0, "postgres");
        assert_eq!(plan.services[0].ports["6379"], "6379");
        assert_eq!(plan.services[1].ports["5432"], "5432");
        assert_eq!(plan.work_mount.as_deref(), Some("/__w"));
        // The fixture's user volume is under `_work`: it is a subPath, nothing to copy.
        assert!(plan.user_volume_copies.is_empty());
        assert_eq!(
            plan.pod.metadata.name.as_deref(),
            Some(format!("{RUNNER_POD}-workflow").as_str())
        );
    }

    #[test]
    fn system_mounts_reproduce_the_docker_view() {
        let plan = copy_plan(&fixture("prepare_job"));
        let job = container(&plan.pod, "job");
        let work = |sub: Option<&str>| (WORK_VOLUME.to_owned(), sub.map(str::to_owned));
        let expected = vec![
            ("/__w", work(None), false),
            ("/__e", (EXTERNALS_VOLUME.to_owned(), None), true),
            ("/__w/_temp", work(Some("_temp")), false),
            ("/__w/_actions", work(Some("_actions")), false),
            ("/__w/_tool", work(Some("_tool")), false),
            ("/github/home", work(Some("_temp/_github_home")), false),
            (
                "/github/workflow",
                work(Some("_temp/_github_workflow")),
                false,
            ),
            ("/data", work(Some("repo/repo/data")), false),
        ];
        let expected: Vec<_> = expected
            .into_iter()
            .map(|(target, (volume, sub), ro)| (target.to_owned(), volume, sub, ro))
            .collect();
        assert_eq!(mounts(job), expected, "docker.sock is skipped");
        // Services mount only what the runner asked for them: nothing.
        assert!(container(&plan.pod, "redis").volume_mounts.is_none());
    }

    #[test]
    fn fs_init_fills_externals_and_creates_sub_paths_as_the_runner() {
        let plan = copy_plan(&fixture("prepare_job"));
        let init = &plan
            .pod
            .spec
            .as_ref()
            .unwrap()
            .init_containers
            .as_ref()
            .unwrap()[0];
        assert_eq!(init.name, FS_INIT_CONTAINER);
        assert_eq!(init.image.as_deref(), Some(RUNNER_IMAGE));
        let sc = init.security_context.as_ref().unwrap();
        assert_eq!((sc.run_as_user, sc.run_as_group), (Some(1001), Some(1001)));
        let command = init.command.as_ref().unwrap();
        assert_eq!(&command[..2], ["sh", "-c"]);
        assert!(command[2].contains("cp -R /home/runner/externals/. /mnt/externals"));
        assert_eq!(
            &command[4..],
            [
                "/mnt/work/_actions",
                "/mnt/work/_temp",
                "/mnt/work/_temp/_github_home",
                "/mnt/work/_temp/_github_workflow",
                "/mnt/work/_tool",
                // The working directory, which only the copy would create otherwise.
                "/mnt/work/repo/repo",
                "/mnt/work/repo/repo/data",
            ]
        );
    }

    #[test]
    fn environment_keeps_home_and_empty_values_and_adds_ci() {
        let mut def = definition("node:22");
        def.environment_variables = BTreeMap::from([
            ("HOME".into(), "/github/home".into()),
            ("EMPTY".into(), String::new()),
            ("GITHUB_ACTIONS".into(), "false".into()),
        ]);
        let plan = copy_plan(&job_only(def));
        let env = env(container(&plan.pod, "job"));
        assert_eq!(env["HOME"], "/github/home");
        assert_eq!(env["EMPTY"], "");
        assert_eq!(env["GITHUB_ACTIONS"], "true");
        assert_eq!(env["CI"], "true");
        let names: Vec<&String> = env.keys().collect();
        assert!(names.is_sorted(), "stable order: {names:?}");

        let mut def = definition("node:22");
        def.environment_variables = BTreeMap::from([("CI".into(), "false".into())]);
        let plan = copy_plan(&job_only(def));
        assert_eq!(env_of(&plan, "job")["CI"], "false", "a given CI is kept");
    }

    fn env_of(plan: &JobPodPlan, name: &str) -> BTreeMap<String, String> {
        env(container(&plan.pod, name))
    }

    #[test]
    fn job_container_command_defaults_to_tail_and_rejoins_args() {
        let plan = copy_plan(&job_only(definition("node:22")));
        let job = container(&plan.pod, "job");
        assert_eq!(job.command.as_deref().unwrap(), ["tail"]);
        assert_eq!(job.args.as_deref().unwrap(), ["-f", "/dev/null"]);

        let mut def = definition("node:22");
        def.entry_point = Some("/entrypoint.sh".into());
        def.entry_point_args = vec!["\"hello\"".into(), "\"big".into(), "world\"".into()];
        let plan = copy_plan(&job_only(def));
        let job = container(&plan.pod, "job");
        assert_eq!(job.command.as_deref().unwrap(), ["/entrypoint.sh"]);
        assert_eq!(job.args.as_deref().unwrap(), ["hello", "big world"]);
    }

    #[test]
    fn services_keep_their_image_entrypoint_unless_given() {
        let mut args = fixture("prepare_job");
        args.services[1].entry_point_args = vec!["-c".into(), "\"max_connections=200\"".into()];
        let plan = copy_plan(&args);
        let redis = container(&plan.pod, "redis");
        assert_eq!((&redis.command, &redis.args), (&None, &None));
        let postgres = container(&plan.pod, "postgres");
        assert_eq!(postgres.command, None);
        assert_eq!(
            postgres.args.as_deref().unwrap(),
            ["-c", "max_connections=200"]
        );
        assert_eq!(env_of(&plan, "postgres")["POSTGRES_PASSWORD"], "postgres");
        assert_eq!(env_of(&plan, "redis")["CI"], "true");

        args.services[0].entry_point = Some("redis-server".into());
        let plan = copy_plan(&args);
        assert_eq!(
            container(&plan.pod, "redis").command.as_deref().unwrap(),
            ["redis-server"]
        );
    }

    #[test]
    fn unbalanced_quotes_in_args_name_the_container() {
        let mut def = definition("node:22");
        def.entry_point = Some("sh".into());
        def.entry_point_args = vec!["\"oops".into()];
        let err = build(&job_only(def), &WorkVolume::EmptyDir, None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot read the arguments of container `job`"
        );
        assert_eq!(
            std::error::Error::source(&err).unwrap().to_string(),
            "unterminated double quote in `\"oops`"
        );
    }

    #[test]
    fn port_mappings_parse_like_docker() {
        let ok =
            |text: &str, host_ip: Option<&str>, host: Option<u16>, container: u16, protocol| {
                assert_eq!(
                    parse_port_mapping(text),
                    Ok(PortMapping {
                        host_ip: host_ip.map(str::to_owned),
                        host_port: host,
                        container_port: container,
                        protocol,
                    }),
                    "{text}"
                );
            };
        use PortProtocol::*;
        ok("8080", None, None, 8080, Tcp);
        ok("80:8080", None, Some(80), 8080, Tcp);
        ok("53:53/udp", None, Some(53), 53, Udp);
        ok("53/UDP", None, None, 53, Udp);
        ok("9/sctp", None, None, 9, Sctp);
        ok("127.0.0.1:80:8080", Some("127.0.0.1"), Some(80), 8080, Tcp);
        ok("127.0.0.1::8080/tcp", Some("127.0.0.1"), None, 8080, Tcp);
        ok("[::1]:80:8080", Some("::1"), Some(80), 8080, Tcp);
        ok("[::1]::8080", Some("::1"), None, 8080, Tcp);
        ok(" 65535 ", None, None, 65535, Tcp);

        let err = |text: &str, expected: PortError| {
            assert_eq!(parse_port_mapping(text), Err(expected), "{text}");
        };
        err("", PortError::Empty);
        err("0", PortError::InvalidNumber("0".into()));
        err("65536", PortError::InvalidNumber("65536".into()));
        err("http", PortError::InvalidNumber("http".into()));
        err("+80", PortError::InvalidNumber("+80".into()));
        err("80:", PortError::InvalidNumber(String::new()));
        err("8000-8010", PortError::Range("8000-8010".into()));
        err("8000-8010:8000-8010", PortError::Range("8000-8010".into()));
        err("80/http", PortError::Protocol("http".into()));
        err("1:2:3:4", PortError::Malformed);
        err("[::1]:8080", PortError::Malformed);
        err("[::1", PortError::Malformed);
        err("80/tcp/udp", PortError::Protocol("tcp/udp".into()));
    }

    #[test]
    fn response_ports_map_container_port_to_itself() {
        let mappings: Vec<PortMapping> = ["80:8080", "6379", "53:53/udp"]
            .iter()
            .map(|m| parse_port_mapping(m).unwrap())
            .collect();
        assert_eq!(
            response_ports(&mappings),
            BTreeMap::from([
                ("53".into(), "53".into()),
                ("6379".into(), "6379".into()),
                ("8080".into(), "8080".into()),
            ])
        );
    }

    #[test]
    fn ports_have_no_host_port_and_are_deduplicated() {
        let mut def = definition("node:22");
        def.port_mappings = vec!["80:8080".into(), "81:8080".into(), "53:53/udp".into()];
        let plan = copy_plan(&job_only(def));
        let ports = container(&plan.pod, "job").ports.clone().unwrap();
        assert_eq!(ports.len(), 2);
        assert!(
            ports
                .iter()
                .all(|p| p.host_port.is_none() && p.host_ip.is_none())
        );
        assert_eq!(ports[1].protocol.as_deref(), Some("UDP"));
    }

    #[test]
    fn invalid_port_names_the_entry_and_the_container() {
        let mut args = fixture("prepare_job");
        args.services[0].port_mappings = vec!["6379-6380".into()];
        let err = build(&args, &WorkVolume::EmptyDir, None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid port mapping `6379-6380` for container `redis`"
        );
        assert_eq!(
            std::error::Error::source(&err).unwrap().to_string(),
            "port ranges (`6379-6380`) are not supported: list each port separately"
        );
    }

    #[test]
    fn user_volumes_outside_work_become_copied_empty_dirs() {
        let mut args = fixture("prepare_job");
        let job = args.container.as_mut().unwrap();
        job.user_mount_volumes = vec![
            mount("/opt/certs", "/etc/ssl/private", true),
            mount("/srv/data", "/data", false),
            mount("/srv/data", "/data-again", true),
            mount("cache", "/cache", false),
        ];
        args.services[0].user_mount_volumes = vec![
            mount("/opt/certs", "/certs", true),
            mount("cache", "/cache", false),
        ];
        let plan = copy_plan(&args);
        let job = container(&plan.pod, "job");
        let user: Vec<_> = mounts(job).into_iter().skip(7).collect();
        assert_eq!(
            user,
            [
                (
                    "/etc/ssl/private".into(),
                    "user-volume-0".into(),
                    None,
                    true
                ),
                ("/data".into(), "user-volume-1".into(), None, false),
                ("/data-again".into(), "user-volume-1".into(), None, true),
                ("/cache".into(), "user-volume-2".into(), None, false),
                // Every mount of /opt/certs is read-only: a writable staging mount to fill it.
                (
                    "/__hook/user-volume-0".into(),
                    "user-volume-0".into(),
                    None,
                    false
                ),
            ]
        );
        let redis = container(&plan.pod, "redis");
        assert_eq!(
            mounts(redis),
            [
                ("/certs".into(), "user-volume-0".into(), None, true),
                ("/cache".into(), "user-volume-2".into(), None, false),
            ],
            "one source, one shared volume"
        );
        assert_eq!(
            plan.user_volume_copies,
            [
                VolumeCopy {
                    source: "/opt/certs".into(),
                    container: "job".into(),
                    path: "/__hook/user-volume-0".into(),
                    volume: "user-volume-0".into(),
                },
                VolumeCopy {
                    source: "/srv/data".into(),
                    container: "job".into(),
                    path: "/data".into(),
                    volume: "user-volume-1".into(),
                },
            ],
            "a named volume starts empty: nothing to copy"
        );
        let volumes = volume_names(&plan.pod);
        assert_eq!(
            volumes,
            [
                "work",
                "externals",
                "user-volume-0",
                "user-volume-1",
                "user-volume-2"
            ]
        );
    }

    #[test]
    fn unusable_sources_are_skipped_and_targets_are_unique() {
        let mut def = definition("node:22");
        def.system_mount_volumes = vec![
            mount("/var/run/docker.sock", "/var/run/docker.sock", false),
            mount("/home/runner/_work", "/__w", false),
            mount("/opt/hostedtoolcache", "/__t", false),
            mount(
                "/home/runner/_work/_temp/_github_home",
                "/github/home/",
                false,
            ),
            mount("/home/runner/externals/node20", "/node", true),
        ];
        def.user_mount_volumes = vec![
            mount("/home/runner/_work/repo/repo/home", "/github/home", false),
            mount("/home/runner/_work/repo/./repo/../other", "/other", false),
            mount("/home/runner/_work/a", "/other", false),
        ];
        let plan = copy_plan(&job_only(def));
        assert_eq!(
            mounts(container(&plan.pod, "job")),
            [
                ("/__w".into(), "work".into(), None, false),
                (
                    "/github/home".into(),
                    "work".into(),
                    Some("repo/repo/home".into()),
                    false
                ),
                (
                    "/node".into(),
                    "externals".into(),
                    Some("node20".into()),
                    true
                ),
                (
                    "/other".into(),
                    "work".into(),
                    Some("repo/other".into()),
                    false
                ),
            ]
        );
    }

    #[test]
    fn a_relative_mount_target_is_an_error() {
        let mut def = definition("node:22");
        def.user_mount_volumes = vec![mount("/srv", "data", false)];
        let err = build(&job_only(def), &WorkVolume::EmptyDir, None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid mount target `data` for container `job`: the target must be an absolute path"
        );
    }

    /// A ReadWriteOnce work volume pins the pod with `spec.nodeName`, which bypasses the
    /// scheduler: required node affinity would leave it `Unschedulable` on a tainted or cordoned
    /// runner node.
    #[test]
    fn pinned_placement_sets_node_name_not_required_affinity() {
        let args = fixture("prepare_job");
        let pinned = build(&args, &claim(Placement::PinToNode(NODE.into())), None).unwrap();
        let spec = pinned.pod.spec.as_ref().unwrap();
        assert_eq!(spec.node_name.as_deref(), Some(NODE));
        assert!(spec.affinity.is_none(), "{:?}", spec.affinity);
        let work = &spec.volumes.as_ref().unwrap()[0];
        assert_eq!(
            work.persistent_volume_claim.as_ref().unwrap().claim_name,
            format!("{RUNNER_POD}-work")
        );
        assert!(work.empty_dir.is_none());

        let preferred = build(&args, &claim(Placement::PreferNode(NODE.into())), None).unwrap();
        let terms = preferred
            .pod
            .spec
            .as_ref()
            .unwrap()
            .affinity
            .as_ref()
            .unwrap()
            .node_affinity
            .as_ref()
            .unwrap()
            .preferred_during_scheduling_ignored_during_execution
            .as_ref()
            .unwrap();
        assert_eq!(terms[0].weight, 100);
        let field = &terms[0].preference.match_fields.as_ref().unwrap()[0];
        assert_eq!(
            (
                field.key.as_str(),
                field.operator.as_str(),
                field.values.as_deref().unwrap()
            ),
            ("metadata.name", "In", [NODE.to_owned()].as_slice())
        );
        assert_eq!(preferred.pod.spec.as_ref().unwrap().node_name, None);

        let anywhere = build(&args, &claim(Placement::Anywhere), None).unwrap();
        assert!(anywhere.pod.spec.as_ref().unwrap().affinity.is_none());
        assert_eq!(anywhere.pod.spec.as_ref().unwrap().node_name, None);
        let copy = copy_plan(&args);
        assert!(copy.pod.spec.as_ref().unwrap().affinity.is_none());
        assert_eq!(copy.pod.spec.as_ref().unwrap().node_name, None);
        assert_eq!(claim(Placement::Anywhere).data_plane(), DataPlane::Volume);
        assert_eq!(WorkVolume::EmptyDir.data_plane(), DataPlane::Copy);
    }

    /// Job and step pods carry the runner pod's tolerations in both data planes, so they can
    /// start on a tainted runner node pool without a hook template.
    #[test]
    fn job_and_step_pods_carry_the_runner_tolerations() {
        let args = fixture("prepare_job");
        for work_volume in [
            WorkVolume::EmptyDir,
            claim(Placement::PinToNode(NODE.into())),
            claim(Placement::PreferNode(NODE.into())),
        ] {
            let job = build(&args, &work_volume, None).unwrap();
            let step = step("run_container_step", &work_volume, None);
            for pod in [&job.pod, &step.pod] {
                assert_eq!(
                    pod.spec.as_ref().unwrap().tolerations,
                    Some(runner_tolerations()),
                    "{work_volume:?}"
                );
            }
        }
    }

    /// The template's tolerations are added to the inherited ones without duplicates; an empty
    /// list removes them.
    #[test]
    fn template_tolerations_are_added_and_an_empty_list_removes_them() {
        let args = fixture("prepare_job");
        let template = template();
        let plan = build(&args, &WorkVolume::EmptyDir, Some(&template)).unwrap();
        let keys: Vec<Option<String>> = plan
            .pod
            .spec
            .as_ref()
            .unwrap()
            .tolerations
            .iter()
            .flatten()
            .map(|t| t.key.clone())
            .collect();
        assert_eq!(
            keys,
            [
                Some("dedicated".to_owned()),
                Some("nvidia.com/gpu".to_owned())
            ]
        );

        for none in ["[]", "null"] {
            let template =
                Template::from_yaml(&format!("spec:\n  tolerations: {none}\n"), "t.yaml").unwrap();
            let plan = build(&args, &WorkVolume::EmptyDir, Some(&template)).unwrap();
            assert_eq!(plan.pod.spec.as_ref().unwrap().tolerations, None, "{none}");
            let step = step("run_container_step", &WorkVolume::EmptyDir, Some(&template));
            assert_eq!(step.pod.spec.as_ref().unwrap().tolerations, None, "{none}");
        }
    }

    #[test]
    fn labels_owner_and_pull_secret_reference() {
        let plan = copy_plan(&fixture("prepare_job"));
        let meta = &plan.pod.metadata;
        let labels = meta.labels.as_ref().unwrap();
        assert_eq!(labels[RUNNER_POD_LABEL], RUNNER_POD);
        assert_eq!(labels[MANAGED_BY_LABEL], MANAGED_BY);
        assert_eq!(labels[COMPONENT_LABEL], COMPONENT_JOB);
        let owner_ref = &meta.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner_ref.kind.as_str(), owner_ref.uid.as_str()),
            ("Pod", owner().uid.as_str())
        );
        assert_eq!(
            (owner_ref.controller, owner_ref.block_owner_deletion),
            (Some(false), Some(false))
        );
        let spec = plan.pod.spec.as_ref().unwrap();
        assert_eq!(
            spec.image_pull_secrets.as_ref().unwrap()[0].name,
            names::secret(RUNNER_POD, "a1b2c3d4")
        );
        assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
        assert_eq!(spec.security_context.as_ref().unwrap().fs_group, Some(1001));

        // Without an owner (runner pod unreadable) and without a secret.
        let args = fixture("prepare_job");
        let plan = job_pod(&JobPodInput {
            runner_pod: RUNNER_POD,
            owner: None,
            work_dir: Path::new(WORK_DIR),
            work_volume: &WorkVolume::EmptyDir,
            runner_image: RUNNER_IMAGE,
            pull_secret: None,
            args: &args,
            template: None,
            tolerations: &[],
        })
        .unwrap();
        assert!(plan.pod.metadata.owner_references.is_none());
        assert!(plan.pod.spec.as_ref().unwrap().image_pull_secrets.is_none());
    }

    #[test]
    fn services_only_jobs_have_no_job_container_or_fs_init() {
        let plan = copy_plan(&fixture("prepare_job_services_only"));
        assert!(plan.job_container.is_none());
        assert_eq!(plan.services.len(), 1);
        assert!(plan.work_mount.is_none());
        let spec = plan.pod.spec.as_ref().unwrap();
        assert!(spec.init_containers.is_none());
        assert!(spec.volumes.is_none());
    }

    #[test]
    fn requests_that_cannot_make_a_pod_are_errors() {
        let err = build(&PrepareJobArgs::default(), &WorkVolume::EmptyDir, None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the job has neither a job container nor services"
        );

        let dockerfile = ContainerDefinition {
            dockerfile: Some("/home/runner/_work/repo/repo/Dockerfile".into()),
            ..Default::default()
        };
        let err = build(&job_only(dockerfile), &WorkVolume::EmptyDir, None).unwrap_err();
        assert_eq!(err.to_string(), "container `job` has no image");

        let args = job_only(definition("node:22"));
        let err = job_pod(&JobPodInput {
            runner_pod: &"r".repeat(64),
            owner: None,
            work_dir: Path::new(WORK_DIR),
            work_volume: &WorkVolume::EmptyDir,
            runner_image: RUNNER_IMAGE,
            pull_secret: None,
            args: &args,
            template: None,
            tolerations: &[],
        })
        .unwrap_err();
        assert!(matches!(err, SpecError::InvalidRunnerPodName(_)));
    }

    #[test]
    fn service_names_are_deduplicated_and_digests_handled() {
        let mut args = fixture("prepare_job");
        args.services.push(definition("bitnami/redis:7"));
        let plan = copy_plan(&args);
        let names: Vec<&str> = plan.services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["redis-0", "postgres", "redis-1"]);
        let pod_names: Vec<&str> = plan
            .pod
            .spec
            .as_ref()
            .unwrap()
            .containers
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(pod_names, ["job", "redis-0", "postgres", "redis-1"]);
    }

    #[test]
    fn template_is_applied_and_cannot_take_the_runner_pod_label() {
        let template = template();
        let plan = build(
            &fixture("prepare_job"),
            &WorkVolume::EmptyDir,
            Some(&template),
        )
        .unwrap();
        let labels = plan.pod.metadata.labels.as_ref().unwrap();
        assert_eq!(labels[RUNNER_POD_LABEL], RUNNER_POD);
        assert_eq!(labels["team"], "platform");
        let job = container(&plan.pod, "job");
        assert_eq!(job.command.as_deref().unwrap(), ["sleep"]);
        assert_eq!(job.image.as_deref(), Some("node:22"));
        assert_eq!(env_of(&plan, "redis")["REDIS_ARGS"], "--maxmemory 256mb");
        // TypeScript's shared CONTAINER_VOLUMES array leaked `$job` mounts into services.
        for service in ["redis", "postgres"] {
            assert!(
                mounts(container(&plan.pod, service))
                    .iter()
                    .all(|m| m.0 != "/cache"),
                "{service} must not get the `$job` mount"
            );
        }
        let inits: Vec<&str> = plan
            .pod
            .spec
            .as_ref()
            .unwrap()
            .init_containers
            .iter()
            .flatten()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(inits, ["fs-init", "warm-cache"]);
        let containers: Vec<&str> = plan
            .pod
            .spec
            .as_ref()
            .unwrap()
            .containers
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(containers, ["job", "redis", "postgres", "log-shipper"]);
    }

    #[test]
    fn pull_secret_is_the_docker_config_format() {
        let registry = |user: &str, password: &str, server: Option<&str>| -> Registry {
            serde_json::from_value(serde_json::json!({
                "username": user, "password": password, "serverUrl": server,
            }))
            .unwrap()
        };
        let ghcr = registry("octocat", "token-1", Some("ghcr.io"));
        let hub = registry("me", "pa:ss", Some(""));
        let ghcr_again = registry("other", "token-2", Some("ghcr.io"));
        let secret = pull_secret("s", RUNNER_POD, None, &[&ghcr, &hub, &ghcr_again]);
        assert_eq!(
            secret.type_.as_deref(),
            Some("kubernetes.io/dockerconfigjson")
        );
        assert_eq!(secret.immutable, Some(true));
        assert!(secret.metadata.owner_references.is_none());
        assert_eq!(
            secret.metadata.labels.as_ref().unwrap()[COMPONENT_LABEL],
            COMPONENT_PULL_SECRET
        );
        let data = &secret.data.as_ref().unwrap()[".dockerconfigjson"].0;
        let config: serde_json::Value = serde_json::from_slice(data).unwrap();
        assert_eq!(
            config,
            serde_json::json!({"auths": {
                "ghcr.io": {"username": "octocat", "password": "token-1", "auth": BASE64.encode("octocat:token-1")},
                "https://index.docker.io/v1/": {"username": "me", "password": "pa:ss", "auth": BASE64.encode("me:pa:ss")},
            }})
        );
    }
}
