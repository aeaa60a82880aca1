//! The checks of `runner-k8s-hook check` and what they conclude (docs/user/check.md): the
//! policy. Each check asks the cluster through [`crate::k8s`] (the only module that calls the
//! API), builds its pods with [`crate::spec::check_pod`], and turns the answers into one
//! [`Finding`] with a fix for each problem.
//!
//! Owns which checks run, in which order, what each answer means and what to do about it.
//! Objects: at most two short-lived pods (job image, builder), labelled `runner-pod=<name>` and
//! `app.kubernetes.io/component=check`, deleted at once (and by the undo log on a signal).

use super::pods::Pods;
use super::report::{Finding, Status};
use crate::config::{self, Config};
use crate::hooks::decide_work_volume;
use crate::k8s::Session;
use crate::k8s::build::explain_rejection;
use crate::k8s::check::{CheckPodError, Lookup};
use crate::k8s::objects::RunnerPod;
use crate::k8s::rbac::{self, Permission, REQUIRED, WATCH_PODS};
use crate::k8s::wait::WaitError;
use crate::spec::build_pod::profile_name;
use crate::spec::{Placement, WorkVolume};

/// The label that sets a namespace's enforced Pod Security level (Kubernetes docs, "Enforce Pod
/// Security Standards with Namespace Labels").
pub const ENFORCE_LABEL: &str = "pod-security.kubernetes.io/enforce";

/// What the checks know before they start.
pub struct Input<'a> {
    /// The session (namespace, configuration, undo log).
    pub session: &'a Session,
    /// `--job-image`.
    pub job_image: Option<&'a str>,
}

/// What the permission check learnt, for the checks after it.
struct Granted {
    /// `create`, `get` and `delete` on pods: the check may run its pods.
    pods: bool,
}

/// Run every check, in order, and return one finding each.
pub async fn run(input: &Input<'_>) -> Vec<Finding> {
    let session = input.session;
    let config = &session.config;
    let (permissions, granted) = permissions(session).await;
    let runner = match &config.runner_pod_name {
        Some(_) => session.runner_pod().await,
        None => None,
    };
    let choice = decide_work_volume(config, &session.runner_pod, runner.as_ref());
    let data_plane = data_plane(config, &session.runner_pod, &choice.volume, &choice.reason);
    let claim = work_claim(session, &choice.volume, runner.as_ref()).await;
    let placement = match &choice.volume {
        WorkVolume::Claim { placement, .. } => placement.clone(),
        WorkVolume::EmptyDir => Placement::Anywhere,
    };
    let pods = Pods {
        session,
        runner: runner.as_ref(),
        placement: &placement,
        allowed: granted.pods,
    };
    let (builder_pod, registry_plan) = pods.builder_pod().await;
    let pod_security = pod_security(session, builder_pod.as_ref(), granted.pods).await;
    let (job_image, (builder, registry)) = tokio::join!(
        pods.job_image(input.job_image),
        pods.builder(builder_pod, registry_plan)
    );
    vec![
        permissions,
        data_plane,
        claim,
        pod_security,
        job_image,
        builder,
        registry,
    ]
}

/// `permissions`: every verb of [`REQUIRED`], with the commands that need it and the Role
/// lines that grant what is missing; `watch` on pods only says how the hook will wait.
async fn permissions(session: &Session) -> (Finding, Granted) {
    let wanted: Vec<Permission> = REQUIRED.iter().copied().chain([WATCH_PODS]).collect();
    let answers = match session.review(&wanted).await {
        Ok(answers) => answers,
        Err(error) => {
            let finding = Finding::new(
                "permissions",
                Status::Fail,
                [error.to_string(), error_chain(&error)]
                    .into_iter()
                    .filter(|s| !s.is_empty())
                    .collect::<Vec<_>>()
                    .join(": "),
            )
            .fix("check that the API server is reachable from here and that the kubeconfig or service account token is valid");
            return (finding, Granted { pods: true });
        }
    };
    let allowed = |perm: Permission| answers.iter().any(|(p, ok)| *p == perm && *ok);
    let granted = Granted {
        pods: ["create", "get", "delete"].iter().all(|verb| {
            allowed(Permission {
                resource: "pods",
                subresource: "",
                verb,
            })
        }),
    };
    let missing: Vec<Permission> = answers
        .iter()
        .filter(|(perm, ok)| !ok && *perm != WATCH_PODS)
        .map(|(perm, _)| *perm)
        .collect();
    let waiting = if allowed(WATCH_PODS) {
        "pods are watched"
    } else {
        "no `watch` on pods: the hook polls, as under ARC's chart Role"
    };
    if missing.is_empty() {
        let message = format!(
            "the service account may do everything the hook's commands do in namespace `{}` ({waiting})",
            session.namespace
        );
        return (Finding::new("permissions", Status::Pass, message), granted);
    }
    let listed: Vec<String> = missing
        .iter()
        .map(|perm| format!("{perm} ({})", rbac::needed_by(perm).join(", ")))
        .collect();
    let message = format!(
        "the service account may not {} in namespace `{}`",
        listed.join(", "),
        session.namespace
    );
    let fix = format!(
        "add these rules to the Role bound to the runner's service account (with ARC the chart's Role, `<scale set>-gha-rs-kube-mode`; without ARC docs/user/rbac-role.yaml has the whole Role, see docs/user/rbac.md):\n{}",
        rbac::role_rules(&missing).trim_end()
    );
    (
        Finding::new("permissions", Status::Fail, message).fix(fix),
        granted,
    )
}

/// `data-plane`: volume or copy mode, and why ([`decide_work_volume`], the hook's own decision).
fn data_plane(config: &Config, runner_pod: &str, volume: &WorkVolume, reason: &str) -> Finding {
    let outside = config.runner_pod_name.is_none();
    match volume {
        WorkVolume::EmptyDir if outside && config.data_plane == config::DataPlaneSetting::Auto => {
            Finding::new(
                "data-plane",
                Status::Warn,
                format!(
                    "copy, but only because `{}` is not set: in a runner pod the hook chooses volume mode when the pod mounts its work claim",
                    config::RUNNER_POD_NAME
                ),
            )
            .fix(format!(
                "run the check in the runner pod, or set `{}` to a runner pod's name",
                config::RUNNER_POD_NAME
            ))
        }
        WorkVolume::EmptyDir => Finding::new(
            "data-plane",
            Status::Pass,
            format!("copy mode: {reason}; files move over `pods/exec`"),
        ),
        WorkVolume::Claim {
            claim_name,
            placement,
        } => {
            let placed = match placement {
                Placement::PinToNode(node) => format!("pods go to the runner's node `{node}`"),
                Placement::PreferNode(node) => {
                    format!("pods prefer the runner's node `{node}`")
                }
                Placement::Anywhere => String::new(),
            };
            if matches!(placement, Placement::Anywhere) {
                return Finding::new(
                    "data-plane",
                    Status::Warn,
                    format!(
                        "volume mode with claim `{claim_name}` ({reason}), but the runner pod `{runner_pod}` could not be read, so pods are not kept on its node and a ReadWriteOnce claim may not attach"
                    ),
                )
                .fix(format!(
                    "run the check (and the hook) where `{}` names the runner pod and `get` on pods is granted",
                    config::RUNNER_POD_NAME
                ));
            }
            Finding::new(
                "data-plane",
                Status::Pass,
                format!("volume mode with claim `{claim_name}` ({reason}); {placed}"),
            )
        }
    }
}

/// `work-claim`: in volume mode, whether the claim exists, is bound, and has an access mode
/// that fits the placement. ARC's chart Role cannot read claims: that is a warning, not a
/// failure.
async fn work_claim(session: &Session, volume: &WorkVolume, runner: Option<&RunnerPod>) -> Finding {
    const CHECK: &str = "work-claim";
    let WorkVolume::Claim { claim_name, .. } = volume else {
        return Finding::new(CHECK, Status::Skip, "copy mode has no work claim");
    };
    let scheduler = session.config.use_kube_scheduler;
    let mounted = runner.is_some_and(|r| r.claims.contains(claim_name));
    match session.claim(claim_name).await {
        Lookup::Found(claim) => {
            let modes = claim.access_modes.join(", ");
            let many = claim.access_modes.iter().any(|m| m == "ReadWriteMany");
            let class = claim
                .storage_class
                .as_deref()
                .map(|c| format!(", storage class `{c}`"))
                .unwrap_or_default();
            if claim.phase == "Lost" {
                return Finding::new(
                    CHECK,
                    Status::Fail,
                    format!("claim `{claim_name}` is Lost: its volume is gone"),
                )
                .fix("recreate the runner (ARC recreates its ephemeral work claim with the pod)");
            }
            if scheduler && !many {
                return Finding::new(
                    CHECK,
                    Status::Fail,
                    format!(
                        "claim `{claim_name}` is {modes}{class}, but `{}=true` lets the scheduler put pods on other nodes, where it cannot attach",
                        config::USE_KUBE_SCHEDULER
                    ),
                )
                .fix(format!(
                    "unset `{}` (pods then go to the runner's node), or use a ReadWriteMany storage class for the work volume",
                    config::USE_KUBE_SCHEDULER
                ));
            }
            if claim.phase != "Bound" {
                return Finding::new(
                    CHECK,
                    Status::Warn,
                    format!(
                        "claim `{claim_name}` is {} ({modes}{class}): pods wait for it to bind",
                        claim.phase
                    ),
                )
                .fix("check the storage class's provisioner (`kubectl describe pvc`)");
            }
            let note = if many && !scheduler {
                format!(
                    "; pods stay on the runner's node (`{}=true` would let them go elsewhere)",
                    config::USE_KUBE_SCHEDULER
                )
            } else {
                String::new()
            };
            Finding::new(
                CHECK,
                Status::Pass,
                format!("claim `{claim_name}` is Bound, {modes}{class}{note}"),
            )
        }
        Lookup::NotFound => Finding::new(
            CHECK,
            Status::Fail,
            format!(
                "claim `{claim_name}` does not exist in namespace `{}`: job pods would wait for it until they time out",
                session.namespace
            ),
        )
        .fix(format!(
            "with ARC, `containerMode.kubernetesModeWorkVolumeClaim` creates `<runner pod>-work`; check `{}`, or use copy mode (`{}=copy`)",
            config::CLAIM_NAME,
            config::DATA_PLANE
        )),
        Lookup::Forbidden(_) => {
            let known = if mounted {
                "the runner pod mounts it, so it exists"
            } else {
                "whether it exists is unknown"
            };
            Finding::new(
                CHECK,
                Status::Warn,
                format!(
                    "cannot read claim `{claim_name}` (no `get` on persistentvolumeclaims, which ARC's chart Role does not grant): {known}, its access mode is unknown"
                ),
            )
            .fix(format!(
                "the hook does not need it; to let the check read the claim, add to the Role:\n{}",
                rbac::role_rules(&[Permission {
                    resource: "persistentvolumeclaims",
                    subresource: "",
                    verb: "get",
                }])
                .trim_end()
            ))
        }
        Lookup::Failed(error) => Finding::new(
            CHECK,
            Status::Warn,
            format!("cannot read claim `{claim_name}`: {error}"),
        ),
    }
}

/// `pod-security`: the namespace's enforced level against what the build pod of the configured
/// profile needs (`baseline`), from the namespace's label, or, where the Role may not read
/// namespaces, from a server-side dry run of the build pod (admission evaluates it).
async fn pod_security(
    session: &Session,
    build_pod: Option<&k8s_openapi::api::core::v1::Pod>,
    may_create: bool,
) -> Finding {
    const CHECK: &str = "pod-security";
    let profile = session.config.build.profile;
    let name = profile_name(profile);
    let namespace = &session.namespace;
    let relabel = format!(
        "label the namespace `kubectl label namespace {namespace} {ENFORCE_LABEL}=baseline --overwrite`, or run jobs in a namespace that enforces `baseline` (docs/user/build-pod-security.md)"
    );
    let unread = match session.namespace_labels().await {
        Lookup::Found(labels) => match labels.get(ENFORCE_LABEL).map(String::as_str) {
            Some("restricted") => {
                return Finding::new(
                    CHECK,
                    Status::Fail,
                    format!(
                        "namespace `{namespace}` enforces Pod Security `restricted` (its `{ENFORCE_LABEL}` label), which refuses the `{name}` build pod and copy-mode step pods"
                    ),
                )
                .fix(relabel);
            }
            Some(level @ ("baseline" | "privileged")) => {
                return Finding::new(
                    CHECK,
                    Status::Pass,
                    format!(
                        "namespace `{namespace}` enforces Pod Security `{level}` (read from its `{ENFORCE_LABEL}` label), which admits the `{name}` build pod"
                    ),
                );
            }
            Some(other) => {
                return Finding::new(
                    CHECK,
                    Status::Warn,
                    format!("namespace `{namespace}` has `{ENFORCE_LABEL}={other}`, which is not a Pod Security level"),
                )
                .fix(relabel);
            }
            None => "it has no enforce label, so the API server's default level applies".to_owned(),
        },
        Lookup::Forbidden(_) => {
            "its label cannot be read: no `get` on namespaces, which ARC's chart Role does not grant"
                .to_owned()
        }
        Lookup::NotFound => {
            return Finding::new(
                CHECK,
                Status::Fail,
                format!("namespace `{namespace}` does not exist"),
            )
            .fix(format!(
                "set `{}` (or `--namespace`) to the namespace where job pods run",
                config::KUBERNETES_NAMESPACE
            ));
        }
        Lookup::Failed(error) => format!("its label could not be read: {error}"),
    };
    let Some(pod) = build_pod.filter(|_| may_create) else {
        return Finding::new(
            CHECK,
            Status::Warn,
            format!(
                "cannot tell the Pod Security level of namespace `{namespace}`: {unread}, and no build pod could be dry-run"
            ),
        );
    };
    match session.dry_run_pod(pod).await {
        Ok(()) => Finding::new(
            CHECK,
            Status::Pass,
            format!(
                "a server-side dry run of the `{name}` build pod was admitted in namespace `{namespace}` (a dry run, since {unread})"
            ),
        ),
        Err(refusal) if refusal.message.contains("violates PodSecurity") => Finding::new(
            CHECK,
            Status::Fail,
            format!(
                "a server-side dry run of the `{name}` build pod was refused (a dry run, since {unread}): {}",
                explain_rejection(profile, &refusal.message)
            ),
        )
        .fix(relabel),
        Err(refusal) => Finding::new(
            CHECK,
            Status::Warn,
            format!(
                "cannot tell the Pod Security level of namespace `{namespace}`: {unread}, and the dry run of the build pod failed: {}",
                refusal.message
            ),
        ),
    }
}
/// A fix for a pod that did not start: the scheduler's or kubelet's problem, else `pull`.
pub(super) fn pod_fix(error: &CheckPodError, pull: &str) -> String {
    match error {
        CheckPodError::Wait(WaitError::Failed { failure, .. }) if failure.is_image_pull() => {
            pull.to_owned()
        }
        CheckPodError::Wait(WaitError::Timeout {
            stalled: Some(failure),
            ..
        }) if failure.is_unschedulable() => format!(
            "no node could run the pod: check node selectors, tolerations and requests in the hook template, and that the runner's node has room in volume mode; or raise `{}`",
            config::PREPARE_JOB_TIMEOUT_SECONDS
        ),
        CheckPodError::Wait(WaitError::Timeout { .. }) => format!(
            "raise `{}` if pods take longer to start here (large images, node scale-up)",
            config::PREPARE_JOB_TIMEOUT_SECONDS
        ),
        _ => pull.to_owned(),
    }
}

pub(super) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut causes = Vec::new();
    let mut source = error.source();
    while let Some(cause) = source {
        causes.push(cause.to_string());
        source = cause.source();
    }
    causes.join(": ")
}
