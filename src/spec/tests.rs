//! The golden tests of the job pod, step pods and the pull secret (`insta` snapshots in
//! `src/spec/snapshots/`, named after this module's path `spec::tests`), and the fixtures that
//! every test module of `spec` builds its pods with.
//!
//! A golden file changes only with a deliberate change of the pods: review it with
//! `cargo insta review`. This module must not be renamed or moved, or the snapshots lose their
//! names.

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::api::core::v1::{Container, Pod, Toleration};

use super::template::Template;
use super::*;
use crate::protocol::{Args, ContainerDefinition, Mount, PrepareJobArgs, parse_request};

pub(super) const RUNNER_POD: &str = "arc-runner-set-abcde-runner-x7k2p";
pub(super) const WORK_DIR: &str = "/home/runner/_work";
pub(super) const RUNNER_IMAGE: &str = "ghcr.io/actions/actions-runner:latest";
pub(super) const NODE: &str = "aks-nodepool1-12345678-vmss000003";

pub(super) fn fixture(name: &str) -> PrepareJobArgs {
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

pub(super) fn owner() -> Owner {
    Owner {
        name: RUNNER_POD.into(),
        uid: "6f1c9a2e-0d1b-4c7e-9a55-1f3e2d4c5b6a".into(),
    }
}

/// The runner pod's tolerations in every fixture: a runner node pool tainted
/// `dedicated=runners:NoSchedule`.
pub(super) fn runner_tolerations() -> Vec<Toleration> {
    vec![Toleration {
        key: Some("dedicated".into()),
        operator: Some("Equal".into()),
        value: Some("runners".into()),
        effect: Some("NoSchedule".into()),
        toleration_seconds: None,
    }]
}

pub(super) fn build(
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

pub(super) fn copy_plan(args: &PrepareJobArgs) -> JobPodPlan {
    build(args, &WorkVolume::EmptyDir, None).expect("job pod builds")
}

pub(super) fn claim(placement: Placement) -> WorkVolume {
    WorkVolume::Claim {
        claim_name: format!("{RUNNER_POD}-work"),
        placement,
    }
}

pub(super) fn container<'a>(pod: &'a Pod, name: &str) -> &'a Container {
    pod.spec
        .as_ref()
        .unwrap()
        .containers
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no container `{name}`"))
}

/// `(mountPath, volume, subPath, readOnly)` of each mount.
pub(super) fn mounts(c: &Container) -> Vec<(String, String, Option<String>, bool)> {
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

pub(super) fn env(c: &Container) -> BTreeMap<String, String> {
    c.env
        .iter()
        .flatten()
        .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
        .collect()
}

pub(super) fn volume_names(pod: &Pod) -> Vec<String> {
    pod.spec
        .as_ref()
        .unwrap()
        .volumes
        .iter()
        .flatten()
        .map(|v| v.name.clone())
        .collect()
}

pub(super) fn mount(source: &str, target: &str, read_only: bool) -> Mount {
    Mount {
        user_provided_value: None,
        source_volume_path: Some(source.into()),
        target_volume_path: target.into(),
        read_only,
    }
}

pub(super) fn job_only(definition: ContainerDefinition) -> PrepareJobArgs {
    PrepareJobArgs {
        container: Some(definition),
        services: Vec::new(),
    }
}

pub(super) fn definition(image: &str) -> ContainerDefinition {
    ContainerDefinition {
        image: Some(image.into()),
        ..Default::default()
    }
}

pub(super) fn env_of(plan: &JobPodPlan, name: &str) -> BTreeMap<String, String> {
    env(container(&plan.pod, name))
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

pub(super) fn template() -> Template {
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

pub(super) fn step_fixture(name: &str) -> ContainerDefinition {
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

pub(super) fn step(
    name: &str,
    work_volume: &WorkVolume,
    template: Option<&Template>,
) -> StepPodPlan {
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
