//! The short-lived pods of `runner-k8s-hook check` (docs/user/check.md): one that starts the
//! job image as the job pod's `job` container would start, and one that runs a command in the
//! builder image with everything a build pod has (profile, Secret, CA, template), but no context.
//!
//! Owns their names (`<runner-pod>-check-<suffix>`) and their `app.kubernetes.io/component:
//! check` label; everything else comes from the builders the hook uses ([`super::pod`] for the
//! job pod's surroundings, [`super::build_pod`] for the build pod). Pure, like the rest of
//! `spec`: no API, no files, no randomness.

use k8s_openapi::api::core::v1::{Container, Pod, Toleration};

use super::build_pod::{BuildPodError, BuildPodInput, ContextSource, build_pod};
use super::names::{self, JOB_CONTAINER};
use super::pod::{PodParts, runner_pod_object};
use super::{COMPONENT_LABEL, Owner, Placement, SpecError, node_affinity, node_name};

/// [`COMPONENT_LABEL`] of the check's pods.
pub const COMPONENT_CHECK: &str = "check";

/// The job image pod: what [`job_image_pod`] needs.
#[derive(Debug, Clone, Copy)]
pub struct JobImagePodInput<'a> {
    /// The runner pod's name (the `runner-pod` label).
    pub runner_pod: &'a str,
    /// Random suffix of the pod name.
    pub suffix: &'a str,
    /// The runner pod as owner, when known.
    pub owner: Option<&'a Owner>,
    /// The image to start.
    pub image: &'a str,
    /// Where job pods go (the runner's node in volume mode).
    pub placement: &'a Placement,
    /// The runner pod's tolerations, which job pods carry.
    pub tolerations: &'a [Toleration],
}

/// A pod with one container named `job`, running `image` with the job container's default
/// command (`tail -f /dev/null`, which keeps it running as a job container does), in the pod
/// the job pod gets (labels, owner, `fsGroup`, placement, tolerations), labelled
/// [`COMPONENT_CHECK`].
///
/// # Errors
/// [`SpecError::InvalidRunnerPodName`] for a runner pod name that cannot be a label value.
pub fn job_image_pod(input: &JobImagePodInput<'_>) -> Result<Pod, SpecError> {
    if input.runner_pod.is_empty() || !names::is_label_value(input.runner_pod) {
        return Err(SpecError::InvalidRunnerPodName(input.runner_pod.to_owned()));
    }
    let container = Container {
        name: JOB_CONTAINER.to_owned(),
        image: Some(input.image.to_owned()),
        command: Some(vec!["tail".to_owned()]),
        args: Some(vec!["-f".to_owned(), "/dev/null".to_owned()]),
        ..Default::default()
    };
    Ok(runner_pod_object(PodParts {
        name: names::check_pod(input.runner_pod, input.suffix),
        runner_pod: input.runner_pod,
        component: COMPONENT_CHECK,
        owner: input.owner,
        containers: vec![container],
        init_containers: Vec::new(),
        volumes: Vec::new(),
        placement: input.placement,
        tolerations: input.tolerations,
        pull_secret: None,
    }))
}

/// The build pod of `input` ([`build_pod`], with [`ContextSource::None`]: `input.context` is
/// ignored), named `<runner-pod>-check-<suffix>`, labelled [`COMPONENT_CHECK`], and placed as
/// build pods are in this data plane (`placement`).
///
/// # Errors
/// What [`build_pod`] refuses.
pub fn builder_pod(input: &BuildPodInput<'_>, placement: &Placement) -> Result<Pod, BuildPodError> {
    let mut pod = build_pod(&BuildPodInput {
        context: ContextSource::None,
        ..*input
    })?;
    pod.metadata.name = Some(names::check_pod(input.runner_pod, input.suffix));
    if let Some(labels) = pod.metadata.labels.as_mut() {
        labels.insert(COMPONENT_LABEL.to_owned(), COMPONENT_CHECK.to_owned());
    }
    if let Some(spec) = pod.spec.as_mut() {
        if spec.node_name.is_none() {
            spec.node_name = node_name(placement);
        }
        if spec.affinity.is_none() {
            spec.affinity = node_affinity(placement);
        }
    }
    Ok(pod)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::build_pod::{BuilderProfile, BuilderResources, RegistryCa};
    use crate::spec::{RUNNER_POD_LABEL, names::BUILD_CONTAINER};

    #[test]
    fn the_job_image_pod_starts_the_image_as_a_job_container() {
        let placement = Placement::PinToNode("node-1".into());
        let pod = job_image_pod(&JobImagePodInput {
            runner_pod: "runner-x",
            suffix: "abcd1234",
            owner: None,
            image: "node:22",
            placement: &placement,
            tolerations: &[],
        })
        .unwrap();
        assert_eq!(
            pod.metadata.name.as_deref(),
            Some("runner-x-check-abcd1234")
        );
        let labels = pod.metadata.labels.clone().unwrap();
        assert_eq!(labels[COMPONENT_LABEL], COMPONENT_CHECK);
        assert_eq!(labels[RUNNER_POD_LABEL], "runner-x");
        let spec = pod.spec.unwrap();
        assert_eq!(spec.node_name.as_deref(), Some("node-1"));
        assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
        assert_eq!(spec.containers[0].name, "job");
        assert_eq!(spec.containers[0].image.as_deref(), Some("node:22"));
        assert_eq!(
            spec.containers[0].command.as_deref(),
            Some(&["tail".to_owned()][..])
        );
    }

    #[test]
    fn the_builder_pod_is_the_build_pod_without_a_context() {
        let command = vec![
            "sh".to_owned(),
            "-c".to_owned(),
            "buildah --version".to_owned(),
        ];
        let ca = RegistryCa::ConfigMap("registry-ca".into());
        let resources = BuilderResources::default();
        let input = BuildPodInput {
            runner_pod: "runner-x",
            suffix: "abcd1234",
            owner: None,
            profile: BuilderProfile::Rootless,
            seccomp_localhost: None,
            builder_image: "quay.io/buildah/stable:v1.41.4",
            builder_pull_secret: None,
            registry_secret: Some("regcred"),
            ca: Some(&ca),
            resources: &resources,
            command: &command,
            context: ContextSource::Copy {
                stage_image: "ignored",
            },
            template: None,
            tolerations: &[],
        };
        let pod = builder_pod(&input, &Placement::PinToNode("node-1".into())).unwrap();
        assert_eq!(
            pod.metadata.name.as_deref(),
            Some("runner-x-check-abcd1234")
        );
        assert_eq!(
            pod.metadata.labels.as_ref().unwrap()[COMPONENT_LABEL],
            COMPONENT_CHECK
        );
        let spec = pod.spec.unwrap();
        assert!(spec.init_containers.is_none(), "no stage container");
        assert_eq!(spec.node_name.as_deref(), Some("node-1"));
        let volumes: Vec<&str> = spec
            .volumes
            .iter()
            .flatten()
            .map(|v| v.name.as_str())
            .collect();
        assert_eq!(
            volumes,
            [
                "storage",
                "tmp",
                "build-work",
                "registry-auth",
                "registry-ca"
            ]
        );
        let build = &spec.containers[0];
        assert_eq!(build.name, BUILD_CONTAINER);
        assert_eq!(build.command.as_deref(), Some(&command[..]));
        let security = build.security_context.clone().unwrap();
        assert_eq!(security.run_as_user, Some(1000));
        assert_eq!(security.allow_privilege_escalation, Some(true));
    }
}
