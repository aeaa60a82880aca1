//! The build pod: a pure function from the build's inputs to the pod that runs the build script
//! (docs/user/dockerfile-actions.md, docs/user/build-pod-security.md), and the words that explain why a cluster refused one.
//!
//! Owns the pod layout (the paths below are the contract with [`crate::image::BuildSpec`]: the pod
//! executor fills the spec with them) and the security profiles. It must not call the API, read
//! files or draw random numbers: the same input always gives the same pod (golden files in
//! `src/spec/snapshots/`).
//!
//! Layout, in every profile:
//! - container [`BUILD_CONTAINER`] runs the script argv given as input, with
//!   `BUILDAH_ISOLATION=chroot`, writes `<ref>@<digest>` to [`RESULT_PATH`] (the
//!   `terminationMessagePath`, policy `File`);
//! - emptyDirs: the image store at [`storage_mount`] (native overlay cannot be stacked on the
//!   container's own overlayfs, an emptyDir is a plain directory on the node), [`TMP_DIR`]
//!   (Buildah's temporary files and [`RUNROOT`]), and [`WORK_DIR`] (the script's auth file,
//!   `storage.conf`, digest: Buildah needs the auth file in a writable directory);
//! - the registry Secret's `.dockerconfigjson` alone, read-only, as [`AUTH_SOURCE`]; the CA's
//!   `ca.crt` alone, read-only, in [`CERT_DIR`] (Buildah takes any `*.key` there for a client key);
//! - the context at [`CONTEXT_DIR`]: a read-only `subPath` of the runner's work volume, with the
//!   same node placement as step pods (volume mode), or an emptyDir the hook fills over exec
//!   through the init container [`STAGE_CONTAINER`] (the runner image, so the builder image needs
//!   no `tar`/`find`), which ends when the hook creates [`READY_MARKER`] (copy mode);
//! - no service account token (a Dockerfile's `RUN` steps must not reach the API with the
//!   runner's identity), no service links, `restartPolicy: Never`; the hook template's `$build`
//!   entry merges last and may override any of it (sidecars are not added).
//!
//! Profiles ([`BuilderProfile`], measured on a real node and explained for users in
//! `docs/user/build-pod-security.md`): never `privileged`.
//! - `rootless`: uid 1000 (the `build` user of `quay.io/buildah/stable`), `runAsNonRoot`,
//!   `allowPrivilegeEscalation: true` (newuidmap/newgidmap gain their file capabilities on exec),
//!   `capabilities: {drop: [ALL], add: [SETUID, SETGID]}`; Pod Security `baseline`.
//! - `root`: uid 0, the runtime's default capabilities plus SETUID, SETGID and SETFCAP (CRI-O's
//!   default set lacks SETFCAP); `RUN` steps run as host root: the caller warns.
//! - `userns`: as `root`, in a user namespace of its own (`hostUsers: false`), so the
//!   container's root is an unprivileged id on the node.
//!
//! In every profile `seccompProfile` is left unset (the kubelet's default, Unconfined unless it
//! runs with `--seccomp-default`), or set to a `Localhost` profile when configured: the runtime's
//! default profile blocks `unshare(CLONE_NEWUSER)`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, EmptyDirVolumeSource, EnvVar, KeyToPath,
    LocalObjectReference, PersistentVolumeClaimVolumeSource, Pod, PodSpec, ResourceRequirements,
    SeccompProfile, SecretVolumeSource, SecurityContext, Toleration, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use tracing::warn;

use super::names::{self, BUILD_CONTAINER, STAGE_CONTAINER};
use super::template::{self, PodKind, Template, TemplateError};
use super::{
    Owner, Placement, WORK_VOLUME, node_affinity, node_name, object_labels, owner_reference,
};

/// [`crate::spec::COMPONENT_LABEL`] of build pods.
pub const COMPONENT_BUILD: &str = "build";

/// Where the build context is, in every mode (the script's `BuildSpec::context_dir`).
pub const CONTEXT_DIR: &str = "/build/context";
/// Copy mode: the directory of [`READY_MARKER`], an emptyDir outside the context (so the
/// marker is never part of it).
pub const CONTROL_DIR: &str = "/build/control";
/// Copy mode: the hook creates this file once the context is in [`CONTEXT_DIR`]; the script waits
/// for it (`BuildSpec::wait_for`).
pub const READY_MARKER: &str = "/build/control/ready";
/// A writable directory for the script's own files (`BuildSpec::work_dir`).
pub const WORK_DIR: &str = "/build/work";
/// Where the registry Secret is mounted, read-only.
pub const SECRET_DIR: &str = "/build/secret";
/// The registry Secret's `.dockerconfigjson`, as a docker `config.json` (`BuildSpec::auth_source`
/// when a Secret is configured).
pub const AUTH_SOURCE: &str = "/build/secret/config.json";
/// The registry CA's directory, holding `ca.crt` only (`BuildSpec::cert_dir` when a CA is
/// configured).
pub const CERT_DIR: &str = "/build/certs";
/// Buildah's temporary directory (its default `TMPDIR`), an emptyDir.
pub const TMP_DIR: &str = "/var/tmp";
/// Buildah's `--runroot` (`Storage::runroot`), on the [`TMP_DIR`] emptyDir: rootless Buildah
/// falls back to `/var/tmp/containers-user-<uid>` there anyway.
pub const RUNROOT: &str = "/var/tmp/containers-runroot";
/// The termination message file the script writes its result to (`BuildSpec::result_path`).
pub const RESULT_PATH: &str = "/dev/termination-log";
/// Home of the `build` user in `quay.io/buildah/stable`.
pub const BUILD_HOME: &str = "/home/build";
/// uid and gid of the `build` user in `quay.io/buildah/stable` (`useradd build` in a Fedora base).
pub const BUILD_UID: i64 = 1000;

/// Key of a `kubernetes.io/dockerconfigjson` Secret.
pub const DOCKERCONFIGJSON_KEY: &str = ".dockerconfigjson";
/// Key of the CA certificate in the CA's Secret or ConfigMap, and its name in [`CERT_DIR`].
pub const CA_KEY: &str = "ca.crt";

/// How the build pod runs Buildah (docs/user/build-pod-security.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuilderProfile {
    /// uid 1000 with subordinate ids, `allowPrivilegeEscalation: true`, only SETUID and SETGID.
    Rootless,
    /// uid 0 in the container with the runtime's default capabilities, never `privileged`.
    Root,
    /// `hostUsers: false`: root in a user namespace of its own.
    Userns,
}

/// Where the CA certificate of a private registry comes from. The object's key `ca.crt` is
/// mounted alone as the cert dir: Buildah takes any `*.key` there for a client key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryCa {
    /// A Secret with the key `ca.crt`.
    Secret(String),
    /// A ConfigMap with the key `ca.crt`.
    ConfigMap(String),
}

/// Requests and limits of the build container: resource name (`cpu`, `memory`,
/// `ephemeral-storage`) to a Kubernetes quantity, as given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuilderResources {
    /// `requests.<name>=<quantity>`.
    pub requests: BTreeMap<String, String>,
    /// `limits.<name>=<quantity>`.
    pub limits: BTreeMap<String, String>,
}

/// Volume names of the build pod (a hook template volume with the same name replaces ours).
pub mod volumes {
    /// The image store.
    pub const STORAGE: &str = "storage";
    /// [`super::TMP_DIR`].
    pub const TMP: &str = "tmp";
    /// [`super::WORK_DIR`].
    pub const WORK: &str = "build-work";
    /// Copy mode: [`super::CONTEXT_DIR`].
    pub const CONTEXT: &str = "context";
    /// Copy mode: [`super::CONTROL_DIR`], shared by `stage` and the hook.
    pub const CONTROL: &str = "control";
    /// The registry Secret.
    pub const REGISTRY_AUTH: &str = "registry-auth";
    /// The registry CA.
    pub const REGISTRY_CA: &str = "registry-ca";
}

/// Where the image store's emptyDir is mounted: the rootless graph root's parent for the `build`
/// user (`~/.local/share/containers`), `/var/lib/containers` for root.
pub fn storage_mount(profile: BuilderProfile) -> &'static str {
    match profile {
        BuilderProfile::Rootless => "/home/build/.local/share/containers",
        BuilderProfile::Root | BuilderProfile::Userns => "/var/lib/containers",
    }
}

/// Buildah's `--root` (`Storage::root`) for `profile`: `storage` under [`storage_mount`], the
/// default graph root of that user.
pub fn storage_root(profile: BuilderProfile) -> &'static str {
    match profile {
        BuilderProfile::Rootless => "/home/build/.local/share/containers/storage",
        BuilderProfile::Root | BuilderProfile::Userns => "/var/lib/containers/storage",
    }
}

/// The profile's name as configured (`rootless`, `root`, `userns`).
pub fn profile_name(profile: BuilderProfile) -> &'static str {
    match profile {
        BuilderProfile::Rootless => "rootless",
        BuilderProfile::Root => "root",
        BuilderProfile::Userns => "userns",
    }
}

/// How the context reaches the pod.
#[derive(Debug, Clone, Copy)]
pub enum ContextSource<'a> {
    /// Volume mode: the runner's work volume claim, mounted read-only at [`CONTEXT_DIR`] with this
    /// `subPath` (the context relative to `_work`, `BuildContext::volume_sub_path`; `""` for
    /// `_work` itself), and the step pods' placement.
    Volume {
        /// The PersistentVolumeClaim.
        claim_name: &'a str,
        /// Relative path of the context in the volume.
        sub_path: &'a str,
        /// Node placement (`nodeName` or preferred affinity), as for step pods.
        placement: &'a Placement,
    },
    /// Copy mode: an emptyDir at [`CONTEXT_DIR`] that the hook fills through the init container
    /// [`STAGE_CONTAINER`] (this image: the runner's, which has `sh`, `tar`, `find` and
    /// `sha256sum`; the builder image need not), which ends when the hook creates
    /// [`READY_MARKER`]. The build container starts only then.
    Copy {
        /// Image of the `stage` init container (`ACTIONS_RUNNER_IMAGE`).
        stage_image: &'a str,
    },
    /// No context: a pod that runs the builder image with the build pod's profile, volumes,
    /// Secret and CA, for a command that builds nothing (`runner-k8s-hook check`).
    None,
}

/// Everything [`build_pod`] needs.
#[derive(Debug, Clone, Copy)]
pub struct BuildPodInput<'a> {
    /// The runner pod's name.
    pub runner_pod: &'a str,
    /// Random suffix of the pod name (`<runner-pod>-build-<suffix>`).
    pub suffix: &'a str,
    /// The runner pod as owner, when known.
    pub owner: Option<&'a Owner>,
    /// The security profile.
    pub profile: BuilderProfile,
    /// A `Localhost` seccomp profile (relative to the kubelet's seccomp directory); `None` leaves
    /// `seccompProfile` unset.
    pub seccomp_localhost: Option<&'a str>,
    /// The builder image.
    pub builder_image: &'a str,
    /// Pull secret for the builder image (not the registry Secret, unless the caller passes it).
    pub builder_pull_secret: Option<&'a str>,
    /// The `kubernetes.io/dockerconfigjson` Secret with the registry's credentials.
    pub registry_secret: Option<&'a str>,
    /// The registry CA.
    pub ca: Option<&'a RegistryCa>,
    /// Requests and limits of the build container.
    pub resources: &'a BuilderResources,
    /// The build script's argv (`image::script::argv`), the container's whole command.
    pub command: &'a [String],
    /// Where the context comes from.
    pub context: ContextSource<'a>,
    /// The hook template (its `$build` entry, labels, annotations and `spec` fields apply).
    pub template: Option<&'a Template>,
    /// The runner pod's tolerations: the build pod carries them, as job and step pods do, so it
    /// may run where the runner runs (a tainted runner node pool).
    pub tolerations: &'a [Toleration],
}

/// Why the build pod cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildPodError {
    /// The runner pod's name cannot be the value of the `runner-pod` label.
    #[error(
        "the runner pod name `{0}` cannot be used as the value of the `runner-pod` label: at most 63 letters, digits, `-`, `_` or `.`, starting and ending with a letter or digit"
    )]
    InvalidRunnerPodName(String),
    /// No script to run.
    #[error("the build pod has no command to run")]
    EmptyCommand,
    /// The context's path in the work volume is not a relative path inside it.
    #[error("the build context path `{0}` is not a relative path inside the work volume")]
    InvalidSubPath(String),
    /// The hook template could not be merged into the pod.
    #[error("failed to apply the hook template to the build pod")]
    ApplyTemplate(#[source] TemplateError),
}

/// Build the pod of one build (module docs describe it).
///
/// # Errors
/// [`BuildPodError`]: an invalid runner pod name, an empty command, a `subPath` that is absolute
/// or climbs out with `..`, or a hook template that does not merge.
pub fn build_pod(input: &BuildPodInput<'_>) -> Result<Pod, BuildPodError> {
    let runner_pod = input.runner_pod;
    if runner_pod.is_empty() || !names::is_label_value(runner_pod) {
        return Err(BuildPodError::InvalidRunnerPodName(runner_pod.to_owned()));
    }
    if input.command.is_empty() {
        return Err(BuildPodError::EmptyCommand);
    }
    let profile = input.profile;

    let mut volumes = vec![
        empty_dir(volumes::STORAGE),
        empty_dir(volumes::TMP),
        empty_dir(volumes::WORK),
    ];
    let mut mounts = vec![
        mount(volumes::STORAGE, storage_mount(profile), false),
        mount(volumes::TMP, TMP_DIR, false),
        mount(volumes::WORK, WORK_DIR, false),
    ];
    let mut placement = &Placement::Anywhere;
    let mut init_containers = Vec::new();
    match input.context {
        ContextSource::Volume {
            claim_name,
            sub_path,
            placement: context_placement,
        } => {
            let sub_path = valid_sub_path(sub_path)?;
            volumes.push(Volume {
                name: WORK_VOLUME.into(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: claim_name.to_owned(),
                    // Read-only on the mount only: a read-only claim reference could ask the
                    // CSI driver for a read-only attachment of a volume the runner has
                    // attached read-write on the same node.
                    read_only: None,
                }),
                ..Default::default()
            });
            mounts.push(VolumeMount {
                sub_path,
                ..mount(WORK_VOLUME, CONTEXT_DIR, true)
            });
            placement = context_placement;
        }
        ContextSource::Copy { stage_image } => {
            volumes.push(empty_dir(volumes::CONTEXT));
            volumes.push(empty_dir(volumes::CONTROL));
            // The build container reads the context (read-only: nothing to write there).
            mounts.push(mount(volumes::CONTEXT, CONTEXT_DIR, true));
            init_containers.push(Container {
                name: STAGE_CONTAINER.into(),
                image: Some(stage_image.to_owned()),
                command: Some(vec![
                    "sh".to_owned(),
                    "-c".to_owned(),
                    format!("while [ ! -e {READY_MARKER} ]; do sleep 0.2; done"),
                ]),
                volume_mounts: Some(vec![
                    mount(volumes::CONTEXT, CONTEXT_DIR, false),
                    mount(volumes::CONTROL, CONTROL_DIR, false),
                ]),
                ..Default::default()
            });
        }
        ContextSource::None => {}
    }
    if let Some(secret) = input.registry_secret {
        volumes.push(Volume {
            name: volumes::REGISTRY_AUTH.into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret.to_owned()),
                items: Some(vec![KeyToPath {
                    key: DOCKERCONFIGJSON_KEY.into(),
                    path: "config.json".into(),
                    mode: None,
                }]),
                ..Default::default()
            }),
            ..Default::default()
        });
        mounts.push(mount(volumes::REGISTRY_AUTH, SECRET_DIR, true));
    }
    if let Some(ca) = input.ca {
        let items = Some(vec![KeyToPath {
            key: CA_KEY.into(),
            path: CA_KEY.into(),
            mode: None,
        }]);
        volumes.push(match ca {
            RegistryCa::Secret(name) => Volume {
                name: volumes::REGISTRY_CA.into(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some(name.clone()),
                    items,
                    ..Default::default()
                }),
                ..Default::default()
            },
            RegistryCa::ConfigMap(name) => Volume {
                name: volumes::REGISTRY_CA.into(),
                config_map: Some(ConfigMapVolumeSource {
                    name: name.clone(),
                    items,
                    ..Default::default()
                }),
                ..Default::default()
            },
        });
        mounts.push(mount(volumes::REGISTRY_CA, CERT_DIR, true));
    }

    let home = match profile {
        BuilderProfile::Rootless => BUILD_HOME,
        BuilderProfile::Root | BuilderProfile::Userns => "/root",
    };
    let container = Container {
        name: BUILD_CONTAINER.into(),
        image: Some(input.builder_image.to_owned()),
        command: Some(input.command.to_vec()),
        env: Some(vec![env("BUILDAH_ISOLATION", "chroot"), env("HOME", home)]),
        resources: resources(input.resources),
        security_context: Some(security_context(profile, input.seccomp_localhost)),
        termination_message_path: Some(RESULT_PATH.into()),
        termination_message_policy: Some("File".into()),
        volume_mounts: Some(mounts),
        ..Default::default()
    };

    let mut pod = Pod {
        metadata: ObjectMeta {
            name: Some(names::build_pod(runner_pod, input.suffix)),
            labels: Some(object_labels(runner_pod, COMPONENT_BUILD)),
            owner_references: input.owner.map(|o| vec![owner_reference(o)]),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![container],
            init_containers: (!init_containers.is_empty()).then_some(init_containers),
            volumes: Some(volumes),
            restart_policy: Some("Never".into()),
            host_users: (profile == BuilderProfile::Userns).then_some(false),
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            image_pull_secrets: input.builder_pull_secret.map(|name| {
                vec![LocalObjectReference {
                    name: name.to_owned(),
                }]
            }),
            node_name: node_name(placement),
            affinity: node_affinity(placement),
            tolerations: (!input.tolerations.is_empty()).then(|| input.tolerations.to_vec()),
            ..Default::default()
        }),
        ..Default::default()
    };
    if let Some(template) = input.template {
        template::apply(&mut pod, template, PodKind::Build)
            .map_err(BuildPodError::ApplyTemplate)?;
        warn_if_privileged(&pod, template);
    }
    Ok(pod)
}

/// The container security context of a profile (module docs; docs/user/build-pod-security.md).
fn security_context(profile: BuilderProfile, seccomp_localhost: Option<&str>) -> SecurityContext {
    let capabilities = |drop_all: bool, add: &[&str]| Capabilities {
        drop: drop_all.then(|| vec!["ALL".to_owned()]),
        add: Some(add.iter().map(|c| (*c).to_owned()).collect()),
    };
    let seccomp_profile = seccomp_localhost.map(|path| SeccompProfile {
        type_: "Localhost".into(),
        localhost_profile: Some(path.to_owned()),
    });
    match profile {
        // Removing SETUID or SETGID, or allowPrivilegeEscalation, leaves Buildah a single-id
        // user namespace in which `RUN` fails (`error setting supplemental groups list`).
        BuilderProfile::Rootless => SecurityContext {
            run_as_user: Some(BUILD_UID),
            run_as_group: Some(BUILD_UID),
            run_as_non_root: Some(true),
            allow_privilege_escalation: Some(true),
            capabilities: Some(capabilities(true, &["SETUID", "SETGID"])),
            seccomp_profile,
            ..Default::default()
        },
        // Root without CAP_SYS_ADMIN: Buildah creates a user namespace from the container's own
        // id map and runs `RUN` steps in it with chroot isolation. SETFCAP lets it write the
        // file capabilities images carry; CRI-O's default set lacks it.
        BuilderProfile::Root | BuilderProfile::Userns => SecurityContext {
            run_as_user: Some(0),
            run_as_group: Some(0),
            capabilities: Some(capabilities(false, &["SETUID", "SETGID", "SETFCAP"])),
            seccomp_profile,
            ..Default::default()
        },
    }
}

/// The build container's requests and limits, `None` when there are none.
fn resources(resources: &BuilderResources) -> Option<ResourceRequirements> {
    let quantities = |map: &BTreeMap<String, String>| {
        (!map.is_empty()).then(|| {
            map.iter()
                .map(|(name, value)| (name.clone(), Quantity(value.clone())))
                .collect::<BTreeMap<_, _>>()
        })
    };
    let requests = quantities(&resources.requests);
    let limits = quantities(&resources.limits);
    (requests.is_some() || limits.is_some()).then(|| ResourceRequirements {
        requests,
        limits,
        ..Default::default()
    })
}

/// A `subPath` must be relative and stay inside the volume; `""` means no `subPath`.
fn valid_sub_path(sub_path: &str) -> Result<Option<String>, BuildPodError> {
    let trimmed = sub_path.trim_end_matches('/');
    if trimmed.is_empty() {
        return Ok(None);
    }
    if trimmed.starts_with('/') || trimmed.split('/').any(|part| part == "..") {
        return Err(BuildPodError::InvalidSubPath(sub_path.to_owned()));
    }
    Ok(Some(trimmed.to_owned()))
}

/// The hook template may override anything, `privileged` included; say so loudly, because the
/// profiles exist so that it is never needed.
fn warn_if_privileged(pod: &Pod, template: &Template) {
    let privileged = pod.spec.iter().flat_map(|s| s.containers.iter()).any(|c| {
        c.security_context
            .as_ref()
            .and_then(|s| s.privileged)
            .unwrap_or(false)
    });
    if privileged {
        warn!(
            template = %template.path().display(),
            "the hook template makes the build container privileged: every Dockerfile built here gets full control of the node; the `rootless` profile does not need it (docs/user/build-pod-security.md)"
        );
    }
}

fn empty_dir(name: &str) -> Volume {
    Volume {
        name: name.to_owned(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Default::default()
    }
}

fn mount(volume: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: volume.to_owned(),
        mount_path: path.to_owned(),
        read_only: read_only.then_some(true),
        ..Default::default()
    }
}

fn env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.to_owned()),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUNNER_POD: &str = "arc-runner-set-abcde-runner-x7k2p";
    const NODE: &str = "aks-nodepool1-12345678-vmss000003";
    const IMAGE: &str = "quay.io/buildah/stable:v1.41.4";
    const SUB_PATH: &str = "_actions/octo-org/hello-action/v1";

    fn owner() -> Owner {
        Owner {
            name: RUNNER_POD.into(),
            uid: "6f1c9a2e-0d1b-4c7e-9a55-1f3e2d4c5b6a".into(),
        }
    }

    /// A stand-in for `image::script::argv`: the pod treats it as opaque.
    fn command() -> Vec<String> {
        ["sh", "-c", "set -eu\n# the build script\n", "build"]
            .map(str::to_owned)
            .to_vec()
    }

    fn resources() -> BuilderResources {
        BuilderResources {
            requests: BTreeMap::from([
                ("cpu".into(), "500m".into()),
                ("memory".into(), "1Gi".into()),
            ]),
            limits: BTreeMap::from([
                ("memory".into(), "4Gi".into()),
                ("ephemeral-storage".into(), "20Gi".into()),
            ]),
        }
    }

    struct Case {
        profile: BuilderProfile,
        volume: bool,
        seccomp: Option<&'static str>,
        ca: Option<RegistryCa>,
        resources: BuilderResources,
        registry_secret: Option<&'static str>,
        builder_pull_secret: Option<&'static str>,
        template: Option<Template>,
    }

    impl Default for Case {
        fn default() -> Self {
            Case {
                profile: BuilderProfile::Rootless,
                volume: false,
                seccomp: None,
                ca: None,
                resources: BuilderResources::default(),
                registry_secret: Some("registry-push-credentials"),
                builder_pull_secret: None,
                template: None,
            }
        }
    }

    fn build(case: &Case) -> Result<Pod, BuildPodError> {
        let owner = owner();
        let placement = Placement::PinToNode(NODE.into());
        let claim = format!("{RUNNER_POD}-work");
        let command = command();
        build_pod(&BuildPodInput {
            runner_pod: RUNNER_POD,
            suffix: "q7w8e9r0",
            owner: Some(&owner),
            profile: case.profile,
            seccomp_localhost: case.seccomp,
            builder_image: IMAGE,
            builder_pull_secret: case.builder_pull_secret,
            registry_secret: case.registry_secret,
            ca: case.ca.as_ref(),
            resources: &case.resources,
            command: &command,
            context: if case.volume {
                ContextSource::Volume {
                    claim_name: &claim,
                    sub_path: SUB_PATH,
                    placement: &placement,
                }
            } else {
                ContextSource::Copy {
                    stage_image: "ghcr.io/actions/actions-runner:latest",
                }
            },
            template: case.template.as_ref(),
            tolerations: &runner_tolerations(),
        })
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

    macro_rules! assert_pod_snapshot {
        ($name:expr, $value:expr) => {
            insta::assert_yaml_snapshot!($name, $value, {
                ".metadata.ownerReferences[].uid" => "[runner-pod-uid]",
            })
        };
    }

    fn container(pod: &Pod) -> &Container {
        &pod.spec.as_ref().unwrap().containers[0]
    }

    fn mount_paths(pod: &Pod) -> BTreeMap<String, (String, bool)> {
        container(pod)
            .volume_mounts
            .iter()
            .flatten()
            .map(|m| {
                (
                    m.mount_path.clone(),
                    (m.name.clone(), m.read_only == Some(true)),
                )
            })
            .collect()
    }

    #[test]
    fn golden_rootless_volume() {
        let pod = build(&Case {
            volume: true,
            ..Case::default()
        })
        .unwrap();
        assert_pod_snapshot!("build_pod_rootless_volume", &pod);
    }

    #[test]
    fn golden_rootless_copy() {
        let pod = build(&Case::default()).unwrap();
        assert_pod_snapshot!("build_pod_rootless_copy", &pod);
    }

    #[test]
    fn golden_root_copy() {
        let pod = build(&Case {
            profile: BuilderProfile::Root,
            ..Case::default()
        })
        .unwrap();
        assert_pod_snapshot!("build_pod_root_copy", &pod);
    }

    #[test]
    fn golden_userns_volume() {
        let pod = build(&Case {
            profile: BuilderProfile::Userns,
            volume: true,
            ..Case::default()
        })
        .unwrap();
        assert_pod_snapshot!("build_pod_userns_volume", &pod);
    }

    const TEMPLATE: &str = r#"
metadata:
  labels:
    team: platform
  annotations:
    cluster-autoscaler.kubernetes.io/safe-to-evict: "false"
spec:
  nodeSelector:
    node-role/builds: "true"
  tolerations:
  - key: builds
    operator: Exists
    effect: NoSchedule
  containers:
  - name: $build
    resources:
      requests:
        cpu: "2"
        memory: 2Gi
      limits:
        memory: 8Gi
    env:
    - name: BUILDAH_LAYERS
      value: "true"
  - name: $job
    workingDir: /not/for/build/pods
  - name: log-shipper
    image: fluent/fluent-bit:3.0
"#;

    #[test]
    fn golden_template_build_entry() {
        let template = Template::from_yaml(TEMPLATE, "/home/runner/pod-templates/default.yaml")
            .expect("template parses");
        let pod = build(&Case {
            volume: true,
            resources: resources(),
            template: Some(template),
            ..Case::default()
        })
        .unwrap();
        assert_pod_snapshot!("build_pod_template", &pod);
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(spec.containers.len(), 1, "no sidecars in build pods");
        let build = container(&pod);
        assert_eq!(build.working_dir, None, "`$job` is not for build pods");
        let limits = build.resources.as_ref().unwrap().limits.as_ref().unwrap();
        assert_eq!(limits["memory"].0, "8Gi", "the template's `$build` wins");
    }

    #[test]
    fn golden_ca_from_config_map() {
        let pod = build(&Case {
            ca: Some(RegistryCa::ConfigMap("registry-ca".into())),
            resources: resources(),
            builder_pull_secret: Some("builder-pull"),
            ..Case::default()
        })
        .unwrap();
        assert_pod_snapshot!("build_pod_ca_config_map", &pod);
    }

    #[test]
    fn golden_localhost_seccomp() {
        let pod = build(&Case {
            seccomp: Some("profiles/buildah.json"),
            volume: true,
            ..Case::default()
        })
        .unwrap();
        assert_pod_snapshot!("build_pod_localhost_seccomp", &pod);
    }

    #[test]
    fn no_profile_is_privileged_and_rootless_matches_design() {
        for profile in [
            BuilderProfile::Rootless,
            BuilderProfile::Root,
            BuilderProfile::Userns,
        ] {
            let pod = build(&Case {
                profile,
                ..Case::default()
            })
            .unwrap();
            let sc = container(&pod).security_context.clone().unwrap();
            assert_eq!(sc.privileged, None, "{profile:?}");
            assert_eq!(sc.seccomp_profile, None, "{profile:?}: left unset");
            let spec = pod.spec.as_ref().unwrap();
            assert_eq!(spec.automount_service_account_token, Some(false));
            assert_eq!(
                spec.host_users,
                (profile == BuilderProfile::Userns).then_some(false)
            );
            assert_eq!(
                mount_paths(&pod)[storage_mount(profile)],
                (volumes::STORAGE.to_owned(), false)
            );
            assert!(storage_root(profile).starts_with(storage_mount(profile)));
        }
        let pod = build(&Case::default()).unwrap();
        let sc = container(&pod).security_context.clone().unwrap();
        assert_eq!(sc.run_as_user, Some(1000));
        assert_eq!(sc.run_as_non_root, Some(true));
        assert_eq!(sc.allow_privilege_escalation, Some(true));
        let caps = sc.capabilities.unwrap();
        assert_eq!(caps.drop, Some(vec!["ALL".to_owned()]));
        assert_eq!(
            caps.add,
            Some(vec!["SETUID".to_owned(), "SETGID".to_owned()])
        );
        let env: Vec<(String, String)> = container(&pod)
            .env
            .iter()
            .flatten()
            .map(|e| (e.name.clone(), e.value.clone().unwrap()))
            .collect();
        assert!(env.contains(&("BUILDAH_ISOLATION".into(), "chroot".into())));
        assert!(env.contains(&("HOME".into(), "/home/build".into())));
    }

    #[test]
    fn the_paths_of_the_script_contract_are_mounted() {
        let copy = build(&Case {
            ca: Some(RegistryCa::Secret("ca".into())),
            ..Case::default()
        })
        .unwrap();
        let mounts = mount_paths(&copy);
        // The build container only reads the context; the `stage` init container fills it and
        // waits for the marker on the control volume.
        assert_eq!(mounts[CONTEXT_DIR], (volumes::CONTEXT.into(), true));
        let stage = &copy
            .spec
            .as_ref()
            .unwrap()
            .init_containers
            .as_ref()
            .unwrap()[0];
        assert_eq!(stage.name, STAGE_CONTAINER);
        let stage_mounts: Vec<(&str, bool)> = stage
            .volume_mounts
            .iter()
            .flatten()
            .map(|m| (m.mount_path.as_str(), m.read_only.unwrap_or(false)))
            .collect();
        assert_eq!(stage_mounts, [(CONTEXT_DIR, false), (CONTROL_DIR, false)]);
        assert!(READY_MARKER.starts_with(&format!("{CONTROL_DIR}/")));
        assert!(!READY_MARKER.starts_with(CONTEXT_DIR));
        assert_eq!(mounts[WORK_DIR], (volumes::WORK.into(), false));
        assert_eq!(mounts[SECRET_DIR], (volumes::REGISTRY_AUTH.into(), true));
        assert!(AUTH_SOURCE.starts_with(&format!("{SECRET_DIR}/")));
        assert_eq!(mounts[CERT_DIR], (volumes::REGISTRY_CA.into(), true));
        assert_eq!(mounts[TMP_DIR], (volumes::TMP.into(), false));
        assert!(RUNROOT.starts_with(&format!("{TMP_DIR}/")));
        let c = container(&copy);
        assert_eq!(c.termination_message_path.as_deref(), Some(RESULT_PATH));
        assert_eq!(c.termination_message_policy.as_deref(), Some("File"));
        assert_eq!(c.command.as_ref().unwrap(), &command());

        let volume = build(&Case {
            volume: true,
            registry_secret: None,
            ..Case::default()
        })
        .unwrap();
        let context = container(&volume)
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| m.mount_path == CONTEXT_DIR)
            .unwrap();
        assert_eq!(context.name, WORK_VOLUME);
        assert_eq!(context.read_only, Some(true));
        assert_eq!(context.sub_path.as_deref(), Some(SUB_PATH));
        assert!(!mount_paths(&volume).contains_key(SECRET_DIR));
        assert!(!mount_paths(&volume).contains_key(CONTROL_DIR));
        let spec = volume.spec.as_ref().unwrap();
        assert_eq!(
            (spec.node_name.as_deref(), spec.affinity.as_ref()),
            (Some(NODE), None),
            "volume mode runs where step pods run: bound to the runner's node"
        );
    }

    /// The build pod carries the runner pod's tolerations in both modes, so a Dockerfile action
    /// builds on a tainted runner node pool; a template's tolerations are added to them.
    #[test]
    fn build_pod_carries_the_runner_tolerations() {
        for volume in [false, true] {
            let pod = build(&Case {
                volume,
                ..Case::default()
            })
            .unwrap();
            assert_eq!(
                pod.spec.as_ref().unwrap().tolerations,
                Some(runner_tolerations()),
                "volume: {volume}"
            );
        }
        let template = Template::from_yaml(TEMPLATE, "t.yaml").unwrap();
        let pod = build(&Case {
            template: Some(template),
            ..Case::default()
        })
        .unwrap();
        let keys: Vec<&str> = pod
            .spec
            .as_ref()
            .unwrap()
            .tolerations
            .iter()
            .flatten()
            .filter_map(|t| t.key.as_deref())
            .collect();
        assert_eq!(keys, ["dedicated", "builds"]);
    }

    #[test]
    fn invalid_inputs_are_refused() {
        let owner = owner();
        let resources = BuilderResources::default();
        let command = command();
        let placement = Placement::Anywhere;
        let input = |runner_pod, command: &'static [String], sub_path| BuildPodInput {
            runner_pod,
            suffix: "x",
            owner: Some(&owner),
            profile: BuilderProfile::Rootless,
            seccomp_localhost: None,
            builder_image: IMAGE,
            builder_pull_secret: None,
            registry_secret: None,
            ca: None,
            resources: &resources,
            command,
            context: ContextSource::Volume {
                claim_name: "c",
                sub_path,
                placement: &placement,
            },
            template: None,
            tolerations: &[],
        };
        let leaked: &'static [String] = Box::leak(command.into_boxed_slice());
        assert!(matches!(
            build_pod(&input("bad name!", leaked, "x")),
            Err(BuildPodError::InvalidRunnerPodName(_))
        ));
        assert!(matches!(
            build_pod(&input(RUNNER_POD, &[], "x")),
            Err(BuildPodError::EmptyCommand)
        ));
        for bad in ["/abs", "a/../../b", ".."] {
            assert!(
                matches!(
                    build_pod(&input(RUNNER_POD, leaked, bad)),
                    Err(BuildPodError::InvalidSubPath(_))
                ),
                "{bad}"
            );
        }
        let root = build_pod(&input(RUNNER_POD, leaked, "")).unwrap();
        let context = container(&root)
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| m.mount_path == CONTEXT_DIR)
            .cloned()
            .unwrap();
        assert_eq!(context.sub_path, None, "the whole work volume");
    }
}
