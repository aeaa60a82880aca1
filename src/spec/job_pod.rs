//! The job pod of `prepare_job`: the job container and the services as containers of one pod,
//! and what the caller needs to finish the request ([`JobPodPlan`]).
//!
//! The job pod reproduces what Docker would give the job (the mounts actions/runner passes to
//! `docker create` in `src/Runner.Worker/Container/DockerCommandManager.cs`):
//! the runner's `systemMountVolumes` become mounts of one `work` volume (the runner's work
//! volume in volume mode, an emptyDir filled by copying `_work` in copy mode) with `subPath`s, so
//! `/__w`, `/__w/_temp`, `/github/home` and `/github/workflow` show the same directories a bind
//! mount would; `externals` (`/__e`, node for JavaScript actions) is an emptyDir filled by the
//! `fs-init` init container from the runner image in both modes. Services run as containers of
//! the same pod and are reachable at `localhost:<containerPort>`.
//!
//! Owns the job pod's containers and volumes; the parts it shares with step pods are in
//! [`super::pod`], the mount view in [`super::mounts`]. It must not call the API, read files or
//! draw random numbers: the same input always gives the same pod (the golden files in
//! `src/spec/snapshots/`).

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::api::core::v1::{Container, Pod, Toleration};
use serde::Serialize;

use super::mounts::{MountPlanner, empty_dir_volume, fs_init, work_volume};
use super::names::{self, JOB_CONTAINER};
use super::pod::{PodParts, base_container, non_empty, rejoin_args, runner_pod_object};
use super::ports::warn_shared_ports;
use super::template::{self, PodKind, Template};
use super::{
    COMPONENT_JOB, EXTERNALS_VOLUME, Owner, Placement, PortMapping, PortProtocol, SpecError,
    VolumeCopy, WorkVolume, response_ports,
};
use crate::protocol::PrepareJobArgs;

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
    /// Name of the pull secret the caller creates with [`pull_secret`](super::pull_secret), if
    /// any registry has credentials.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ContainerDefinition;
    use crate::spec::RUNNER_POD_LABEL;
    use crate::spec::tests::{
        RUNNER_IMAGE, RUNNER_POD, WORK_DIR, build, container, copy_plan, definition, env_of,
        fixture, job_only, mounts, template,
    };

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
}
