//! What the job pod and step pods share: the pod around their containers (labels, owner,
//! `restartPolicy: Never`, the runner's `fsGroup`, placement, tolerations, pull secret, no
//! service links) and a container built from the runner's `ContainerDefinition` (image,
//! environment, ports, mounts, arguments).
//!
//! It must not decide what is in a particular pod (that is
//! [`job_pod`](mod@super::job_pod) and [`step_pod`](mod@super::step_pod)), call the API, read
//! files or draw random numbers.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, EnvVar, LocalObjectReference, Pod, PodSecurityContext, PodSpec, Toleration, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use tracing::debug;

use super::mounts::MountPlanner;
use super::ports::container_ports;
use super::{
    Owner, Placement, RUNNER_UID, SpecError, node_affinity, node_name, object_labels,
    owner_reference,
};
use crate::protocol::ContainerDefinition;
use crate::shell;

/// What differs between the hook's job and step pods.
pub(super) struct PodParts<'a> {
    pub(super) name: String,
    pub(super) runner_pod: &'a str,
    pub(super) component: &'a str,
    pub(super) owner: Option<&'a Owner>,
    pub(super) containers: Vec<Container>,
    pub(super) init_containers: Vec<Container>,
    pub(super) volumes: Vec<Volume>,
    pub(super) placement: &'a Placement,
    pub(super) tolerations: &'a [Toleration],
    pub(super) pull_secret: Option<&'a str>,
}

/// A pod of this runner: labels, ownerReference, `restartPolicy: Never`, the runner's
/// `fsGroup`, no service links, the runner's node ([`node_name`]) or preferred affinity
/// ([`node_affinity`]), and the runner pod's tolerations.
pub(super) fn runner_pod_object(parts: PodParts<'_>) -> Pod {
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

/// The parts of a job or service container that are built the same way.
pub(super) fn base_container(
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

pub(super) fn environment_without_defaults(variables: &BTreeMap<String, String>) -> Vec<EnvVar> {
    variables
        .iter()
        .map(|(name, value)| EnvVar {
            name: name.clone(),
            value: Some(value.clone()),
            ..Default::default()
        })
        .collect()
}

/// `entryPointArgs` re-joined and split ([`shell::rejoin`]); `None` when there are none.
pub(super) fn rejoin_args(
    container: &str,
    args: &[String],
) -> Result<Option<Vec<String>>, SpecError> {
    let words = shell::rejoin(args).map_err(|source| SpecError::InvalidArgs {
        container: container.to_owned(),
        source,
    })?;
    Ok((!words.is_empty()).then_some(words))
}

pub(super) fn non_empty(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|v| !v.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    use crate::spec::template::Template;
    use crate::spec::tests::{
        NODE, RUNNER_IMAGE, RUNNER_POD, WORK_DIR, build, claim, container, copy_plan, definition,
        env, env_of, fixture, job_only, owner, runner_tolerations, step, template,
    };
    use crate::spec::{
        COMPONENT_JOB, COMPONENT_LABEL, JobPodInput, MANAGED_BY, MANAGED_BY_LABEL,
        RUNNER_POD_LABEL, WorkVolume, job_pod, names,
    };

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
}
