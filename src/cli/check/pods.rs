//! The checks of `runner-k8s-hook check` that run pods (docs/user/check.md): `job-image` (the
//! job image starts as a job container would) and `builder` (the build pod of the configured
//! profile runs the [`crate::image::probe`], whose report also answers `registry`).
//!
//! Owns what these pods must show and what their failures mean; the pods are
//! `spec::check_pod`'s, creating, waiting and deleting them is `k8s::check`'s.

use std::time::Duration;

use super::checks::pod_fix;
use super::registry::{RegistryPlan, registry_plan, registry_verdict};
use super::report::{Finding, Status};
use crate::config;
use crate::image::probe::{self, ProbeSpec, Report as ProbeReport, Stage};
use crate::image::{Storage, StorageDriver};
use crate::k8s::Session;
use crate::k8s::build::{explain_rejection, verify_created};
use crate::k8s::check::CheckPodError;
use crate::k8s::objects::RunnerPod;
use crate::k8s::wait::{Goal, Reached};
use crate::spec::Placement;
use crate::spec::build_pod::{self, BuildPodInput, ContextSource, profile_name};
use crate::spec::check_pod::{self, JobImagePodInput};
use crate::spec::names::{self, BUILD_CONTAINER, JOB_CONTAINER};

/// How long the builder probe may run once its pod has started (a registry that does not
/// answer makes `buildah pull` wait for its connection timeouts).
const PROBE_TIMEOUT: Duration = Duration::from_secs(120);

/// The checks that run pods, and what they share.
pub(super) struct Pods<'a> {
    pub(super) session: &'a Session,
    pub(super) runner: Option<&'a RunnerPod>,
    pub(super) placement: &'a Placement,
    pub(super) allowed: bool,
}

impl Pods<'_> {
    /// `job-image`: the image starts as a job container would (pulled on the node where job
    /// pods go, `tail -f /dev/null` running).
    pub(super) async fn job_image(&self, image: Option<&str>) -> Finding {
        const CHECK: &str = "job-image";
        let Some(image) = image else {
            return Finding::new(
                CHECK,
                Status::Skip,
                "no `--job-image` given (e.g. `--job-image node:22`)",
            );
        };
        if !self.allowed {
            return Finding::new(CHECK, Status::Skip, "needs create, get and delete on pods");
        }
        let session = self.session;
        let owner = session.owner(self.runner);
        let pod = check_pod::job_image_pod(&JobImagePodInput {
            runner_pod: &session.runner_pod,
            suffix: &names::random_suffix(),
            owner: owner.as_ref(),
            image,
            placement: self.placement,
            tolerations: self
                .runner
                .map(|r| r.tolerations.as_slice())
                .unwrap_or_default(),
        });
        let pod = match pod {
            Ok(pod) => pod,
            Err(error) => return Finding::new(CHECK, Status::Fail, error.to_string()),
        };
        let goal = Goal::Running {
            container: JOB_CONTAINER.to_owned(),
        };
        match session
            .run_check_pod(&pod, &goal, session.config.prepare_job_timeout)
            .await
        {
            Ok(_) => Finding::new(
                CHECK,
                Status::Pass,
                format!("`{image}` was pulled and runs as a job container would"),
            ),
            Err(error) => {
                let fix = pod_fix(
                    &error,
                    "check the image name and tag, and that nodes can pull it: a private image needs `credentials:` on the job's `container:` (the hook turns them into a pull secret)",
                );
                Finding::new(
                    CHECK,
                    Status::Fail,
                    format!("`{image}` did not start: {}", why(&error)),
                )
                .fix(fix)
            }
        }
    }

    /// The builder pod: the build pod of the configured profile (Secret, CA, template), running
    /// the probe; and the plan of the registry check.
    pub(super) async fn builder_pod(
        &self,
    ) -> (Option<k8s_openapi::api::core::v1::Pod>, RegistryPlan) {
        let session = self.session;
        let build = &session.config.build;
        let (plan, secret_usable, ca_usable) = registry_plan(session).await;
        let reference = match &plan {
            RegistryPlan::Probe { reference, .. } => Some(reference.clone()),
            RegistryPlan::Decided(_) => None,
        };
        let profile = build.profile;
        let probe = ProbeSpec {
            storage: Storage {
                root: build_pod::storage_root(profile).to_owned(),
                runroot: build_pod::RUNROOT.to_owned(),
                driver: StorageDriver::Vfs,
            },
            auth_source: (secret_usable && build.registry_secret_name.is_some())
                .then(|| build_pod::AUTH_SOURCE.to_owned()),
            cert_dir: (ca_usable && build.registry_ca.is_some())
                .then(|| build_pod::CERT_DIR.to_owned()),
            work_dir: build_pod::WORK_DIR.to_owned(),
            result_path: build_pod::RESULT_PATH.to_owned(),
            reference,
            tls_verify: !build.push_options.iter().any(|o| o == "--tls-verify=false"),
        };
        let command = probe::argv(&probe);
        let template = session.hook_template().ok().flatten();
        let owner = session.owner(self.runner);
        let pod = check_pod::builder_pod(
            &BuildPodInput {
                runner_pod: &session.runner_pod,
                suffix: &names::random_suffix(),
                owner: owner.as_ref(),
                profile,
                seccomp_localhost: build.seccomp_profile.as_deref(),
                builder_image: &build.builder_image,
                builder_pull_secret: None,
                registry_secret: build
                    .registry_secret_name
                    .as_deref()
                    .filter(|_| secret_usable),
                ca: build.registry_ca.as_ref().filter(|_| ca_usable),
                resources: &build.resources,
                command: &command,
                context: ContextSource::None,
                template: template.as_ref(),
                tolerations: self
                    .runner
                    .map(|r| r.tolerations.as_slice())
                    .unwrap_or_default(),
            },
            self.placement,
        )
        .ok();
        (pod, plan)
    }

    /// `builder` and `registry`: run the builder pod to its end and read the probe's report.
    pub(super) async fn builder(
        &self,
        pod: Option<k8s_openapi::api::core::v1::Pod>,
        plan: RegistryPlan,
    ) -> (Finding, Finding) {
        const CHECK: &str = "builder";
        let session = self.session;
        let build = &session.config.build;
        let image = &build.builder_image;
        let profile = build.profile;
        let name = profile_name(profile);
        let registry_skipped = |why: &str| match &plan {
            RegistryPlan::Decided(finding) => finding.clone(),
            RegistryPlan::Probe { .. } => Finding::new("registry", Status::Skip, why.to_owned()),
        };
        if !self.allowed {
            return (
                Finding::new(CHECK, Status::Skip, "needs create, get and delete on pods"),
                registry_skipped("needs the builder pod"),
            );
        }
        let Some(pod) = pod else {
            let error = match session.hook_template() {
                Err(error) => format!("the hook template is unusable: {error}"),
                Ok(_) => "the builder pod cannot be built from the configuration".to_owned(),
            };
            return (
                Finding::new(CHECK, Status::Fail, error),
                registry_skipped("needs the builder pod"),
            );
        };
        let goal = Goal::Terminated {
            container: BUILD_CONTAINER.to_owned(),
        };
        let timeout = session.config.prepare_job_timeout + PROBE_TIMEOUT;
        let (created, reached) = match session.run_check_pod(&pod, &goal, timeout).await {
            Ok(pair) => pair,
            Err(CheckPodError::Refused(refusal)) => {
                return (
                    Finding::new(
                        CHECK,
                        Status::Fail,
                        format!(
                            "the cluster refused the `{name}` builder pod: {}",
                            refusal.message
                        ),
                    )
                    .fix(explain_rejection(profile, &refusal.message)),
                    registry_skipped("the builder pod did not run"),
                );
            }
            Err(error) => {
                let fix = pod_fix(
                    &error,
                    &format!(
                        "check `{}` and that nodes can pull it (the default is `{}`)",
                        config::BUILDER_IMAGE,
                        config::DEFAULT_BUILDER_IMAGE
                    ),
                );
                return (
                    Finding::new(
                        CHECK,
                        Status::Fail,
                        format!("the builder image `{image}` did not run: {}", why(&error)),
                    )
                    .fix(fix),
                    registry_skipped("the builder pod did not run"),
                );
            }
        };
        // A `userns` pod whose `hostUsers: false` the API server dropped ran as root on the
        // node: the hook refuses to build with it, and so does the check.
        if let Err(error) = verify_created(profile, &created) {
            return (
                Finding::new(CHECK, Status::Fail, error.to_string()).fix(format!(
                    "set `{}=rootless`, or use Kubernetes 1.33 or later with user namespaces for `userns`",
                    config::BUILDER_PROFILE
                )),
                registry_skipped("the builder pod cannot run as configured"),
            );
        }
        let Reached::Terminated {
            exit_code, message, ..
        } = reached
        else {
            unreachable!("a Terminated goal ends terminated");
        };
        let Some(report) = message.as_deref().and_then(ProbeReport::parse) else {
            return (
                Finding::new(
                    CHECK,
                    Status::Fail,
                    format!("the probe in `{image}` ended with exit code {exit_code} without a report: the image needs `sh` and `buildah`"),
                )
                .fix(format!("use a builder image with `sh` and `buildah`, such as `{}`", config::DEFAULT_BUILDER_IMAGE)),
                registry_skipped("the probe did not report"),
            );
        };
        match report.stage {
            Stage::Buildah => (
                Finding::new(CHECK, Status::Fail, format!("Buildah does not run in `{image}`: {}", report.summary()))
                    .fix(format!("use a builder image with `buildah` on its PATH, such as `{}`", config::DEFAULT_BUILDER_IMAGE)),
                registry_skipped("Buildah does not run"),
            ),
            Stage::Storage => (
                Finding::new(
                    CHECK,
                    Status::Fail,
                    format!("Buildah cannot set up its user namespace and storage as `{name}` in `{image}`: {}", report.summary()),
                )
                .fix(explain_rejection(profile, &report.output)),
                registry_skipped("Buildah does not run"),
            ),
            Stage::Ready | Stage::Registry => {
                let builder = Finding::new(
                    CHECK,
                    Status::Pass,
                    format!("`{image}` runs Buildah as `{name}` ({})", report.version.trim()),
                );
                let registry = match (&plan, report.stage) {
                    (RegistryPlan::Probe { host, .. }, Stage::Registry) => {
                        registry_verdict(session, host, &report)
                    }
                    (RegistryPlan::Decided(finding), _) => finding.clone(),
                    (RegistryPlan::Probe { .. }, _) => {
                        Finding::new("registry", Status::Warn, "the probe did not ask the registry")
                    }
                };
                (builder, registry)
            }
        }
    }
}

/// What kept a pod from its goal: the kubelet's or scheduler's words when it could not start
/// (the pod's name says nothing to the reader), else the whole error.
fn why(error: &CheckPodError) -> String {
    match error {
        CheckPodError::Wait(crate::k8s::wait::WaitError::Failed { failure, .. }) => {
            failure.to_string()
        }
        other => other.to_string(),
    }
}
