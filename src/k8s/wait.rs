//! Waiting for a pod, by watch, with fail-fast on states it cannot leave.
//!
//! [`evaluate`] is a pure function from a pod to where it stands relative to a [`Goal`]; the
//! watch loop in [`until`] only feeds it. A pod that cannot start fails at once with the kubelet's
//! or the scheduler's reason instead of sitting until the timeout (the TypeScript hook polled the
//! phase, so an `ImagePullBackOff` stayed `Pending` for ten minutes).

use std::fmt;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use kube::Api;
use kube::runtime::watcher::{self, Event};
use tracing::debug;

/// What we wait for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Goal {
    /// The pod runs and this container is running (the job pod's `job` container).
    Running {
        /// The container that must run.
        container: String,
    },
    /// This init container is running (a step pod's `stage`, waiting for the hook's copy).
    InitRunning {
        /// The init container.
        container: String,
    },
    /// This container has started: it runs, or has already ended (when to follow its log).
    Started {
        /// The container.
        container: String,
    },
    /// This container has ended (step and build pods): its exit code is the result.
    Terminated {
        /// The container whose end we wait for.
        container: String,
    },
}

/// Where a pod stands relative to a goal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Not there yet; the text says what it waits for (for the timeout message).
    Waiting(String),
    /// The goal is reached.
    Reached(Reached),
    /// The pod cannot reach the goal.
    Failed(PodFailure),
}

/// A reached goal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reached {
    /// The container runs.
    Running,
    /// The container started (it may have ended already).
    Started,
    /// The container ended.
    Terminated {
        /// Its exit code.
        exit_code: i32,
        /// Its termination message (`terminationMessagePath`), if any.
        message: Option<String>,
        /// The kubelet's reason (`Completed`, `Error`, `OOMKilled`...).
        reason: Option<String>,
    },
}

/// Why a pod cannot reach its goal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodFailure {
    /// The container concerned, if one is.
    pub container: Option<String>,
    /// Its image, when the failure is about the image.
    pub image: Option<String>,
    /// The machine-readable reason (`ErrImagePull`, `Unschedulable`...).
    pub reason: String,
    /// The kubelet's or scheduler's message.
    pub message: String,
}

impl fmt::Display for PodFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.container, &self.image) {
            (Some(c), Some(i)) => write!(f, "container `{c}` (image `{i}`): ")?,
            (Some(c), None) => write!(f, "container `{c}`: ")?,
            _ => {}
        }
        write!(f, "{}", self.reason)?;
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        Ok(())
    }
}

impl PodFailure {
    /// Whether this is an image-pull problem (the error then hints at credentials).
    pub fn is_image_pull(&self) -> bool {
        matches!(
            self.reason.as_str(),
            "ErrImagePull" | "ImagePullBackOff" | "InvalidImageName" | "ErrImageNeverPull"
        )
    }
}

/// Waiting reasons a container does not recover from without a change of spec or
/// credentials (kubelet `images.ErrImagePull`, `ErrImagePullBackOff`, `ErrInvalidImageName`,
/// `kuberuntime.ErrCreateContainerConfig`, `ErrCreateContainer`, `ErrRunContainer`).
/// `ErrImagePull` can be a passing registry hiccup, but the kubelet then retries with growing
/// back-off: failing with the reason now is more useful than a ten-minute wait.
const FATAL_WAITING: &[&str] = &[
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

/// Where `pod` stands relative to `goal`.
pub fn evaluate(pod: &Pod, goal: &Goal) -> Progress {
    let Some(status) = pod.status.as_ref() else {
        return Progress::Waiting("the pod has no status yet".to_owned());
    };
    let image_of = |name: &str| {
        pod.spec.as_ref().and_then(|s| {
            s.init_containers
                .iter()
                .flatten()
                .chain(s.containers.iter())
                .find(|c| c.name == name)
                .and_then(|c| c.image.clone())
        })
    };

    // Scheduling: `PodScheduled` False with reason `Unschedulable` (scheduler `FailedScheduling`).
    if let Some(condition) = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False")
        && condition.reason.as_deref() == Some("Unschedulable")
    {
        return Progress::Failed(PodFailure {
            container: None,
            image: None,
            reason: "Unschedulable".to_owned(),
            message: condition.message.clone().unwrap_or_default(),
        });
    }

    // Init containers: one that ended non-zero fails the pod (restartPolicy Never).
    for c in status.init_container_statuses.iter().flatten() {
        if let Some(failure) = fatal_waiting(c, image_of(&c.name)) {
            return Progress::Failed(failure);
        }
        if let Some(t) = c.state.as_ref().and_then(|s| s.terminated.as_ref())
            && t.exit_code != 0
        {
            return Progress::Failed(PodFailure {
                container: Some(c.name.clone()),
                image: image_of(&c.name),
                reason: format!("init container exited with code {}", t.exit_code),
                message: t.message.clone().or(t.reason.clone()).unwrap_or_default(),
            });
        }
    }

    let statuses: Vec<&ContainerStatus> = status.container_statuses.iter().flatten().collect();
    for c in &statuses {
        if let Some(failure) = fatal_waiting(c, image_of(&c.name)) {
            return Progress::Failed(failure);
        }
    }

    let phase = status.phase.as_deref().unwrap_or("Pending");
    match goal {
        Goal::InitRunning { container } => {
            let init = status
                .init_container_statuses
                .iter()
                .flatten()
                .find(|c| &c.name == container);
            let state = init.and_then(|c| c.state.as_ref());
            if state.is_some_and(|s| s.running.is_some()) {
                Progress::Reached(Reached::Running)
            } else if state.is_some_and(|s| s.terminated.is_some()) {
                Progress::Failed(PodFailure {
                    container: Some(container.clone()),
                    image: image_of(container),
                    reason: "init container ended before the hook was ready".to_owned(),
                    message: String::new(),
                })
            } else if matches!(phase, "Failed" | "Succeeded") {
                Progress::Failed(PodFailure {
                    container: None,
                    image: None,
                    reason: format!("pod {phase}"),
                    message: status.message.clone().unwrap_or_default(),
                })
            } else {
                Progress::Waiting(describe(phase, &statuses))
            }
        }
        Goal::Started { container } => {
            let state = statuses
                .iter()
                .find(|c| &c.name == container)
                .and_then(|c| c.state.as_ref());
            if state.is_some_and(|s| s.running.is_some() || s.terminated.is_some()) {
                Progress::Reached(Reached::Started)
            } else if phase == "Failed" {
                Progress::Failed(PodFailure {
                    container: Some(container.clone()),
                    image: image_of(container),
                    reason: "pod Failed".to_owned(),
                    message: status.message.clone().unwrap_or_default(),
                })
            } else {
                Progress::Waiting(describe(phase, &statuses))
            }
        }
        Goal::Running { container } => {
            let target = statuses.iter().find(|c| &c.name == container);
            if let Some(t) = target.and_then(|c| c.state.as_ref()?.terminated.as_ref()) {
                return Progress::Failed(PodFailure {
                    container: Some(container.clone()),
                    image: image_of(container),
                    reason: format!("exited with code {} before the job started", t.exit_code),
                    message: t.message.clone().or(t.reason.clone()).unwrap_or_default(),
                });
            }
            // Any other container ending while we wait: a service that crashed at start.
            if let Some((name, t)) = statuses
                .iter()
                .find_map(|c| Some((&c.name, c.state.as_ref()?.terminated.as_ref()?)))
                && t.exit_code != 0
            {
                return Progress::Failed(PodFailure {
                    container: Some(name.clone()),
                    image: image_of(name),
                    reason: format!("exited with code {}", t.exit_code),
                    message: t.message.clone().or(t.reason.clone()).unwrap_or_default(),
                });
            }
            if matches!(phase, "Failed" | "Succeeded") {
                return Progress::Failed(PodFailure {
                    container: None,
                    image: None,
                    reason: format!("pod {phase}"),
                    message: status.message.clone().unwrap_or_default(),
                });
            }
            let running =
                target.is_some_and(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()));
            if phase == "Running" && running {
                Progress::Reached(Reached::Running)
            } else {
                Progress::Waiting(describe(phase, &statuses))
            }
        }
        Goal::Terminated { container } => {
            // Wait for the container's state, not the phase: the phase turns about a second
            // later (DESIGN §5, measured on a real node).
            let target = statuses.iter().find(|c| &c.name == container);
            if let Some(t) = target.and_then(|c| c.state.as_ref()?.terminated.as_ref()) {
                return Progress::Reached(Reached::Terminated {
                    exit_code: t.exit_code,
                    message: t.message.clone().filter(|m| !m.is_empty()),
                    reason: t.reason.clone(),
                });
            }
            if phase == "Failed" {
                return Progress::Failed(PodFailure {
                    container: Some(container.clone()),
                    image: image_of(container),
                    reason: "pod Failed".to_owned(),
                    message: status.message.clone().unwrap_or_default(),
                });
            }
            Progress::Waiting(describe(phase, &statuses))
        }
    }
}

fn fatal_waiting(c: &ContainerStatus, image: Option<String>) -> Option<PodFailure> {
    let waiting = c.state.as_ref()?.waiting.as_ref()?;
    let reason = waiting.reason.as_deref()?;
    FATAL_WAITING.contains(&reason).then(|| PodFailure {
        container: Some(c.name.clone()),
        image: image.or_else(|| Some(c.image.clone()).filter(|i| !i.is_empty())),
        reason: reason.to_owned(),
        message: waiting.message.clone().unwrap_or_default(),
    })
}

fn describe(phase: &str, statuses: &[&ContainerStatus]) -> String {
    let waiting: Vec<String> = statuses
        .iter()
        .filter_map(|c| {
            let w = c.state.as_ref()?.waiting.as_ref()?;
            Some(format!(
                "`{}` waiting ({})",
                c.name,
                w.reason.as_deref().unwrap_or("no reason")
            ))
        })
        .collect();
    if waiting.is_empty() {
        format!("pod phase {phase}")
    } else {
        format!("pod phase {phase}, {}", waiting.join(", "))
    }
}

/// Why waiting ended without the goal.
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    /// The pod cannot reach the goal.
    #[error("pod `{pod}` cannot start: {failure}")]
    Failed {
        /// The pod.
        pod: String,
        /// What is wrong.
        failure: PodFailure,
    },
    /// The time ran out.
    #[error("pod `{pod}` did not get there within {}s; last seen: {last}", timeout.as_secs())]
    Timeout {
        /// The pod.
        pod: String,
        /// The limit.
        timeout: Duration,
        /// The last state seen.
        last: String,
    },
    /// The pod was deleted while we waited.
    #[error("pod `{pod}` was deleted while the hook waited for it")]
    Deleted {
        /// The pod.
        pod: String,
    },
    /// The watch failed for good.
    #[error("failed to watch pod `{pod}`")]
    Watch {
        /// The pod.
        pod: String,
        /// The watcher's error.
        #[source]
        source: watcher::Error,
    },
}

/// Watch `name` until [`evaluate`] says the goal is reached or cannot be, or `timeout` passes.
///
/// Transient watch errors (a dropped connection, `410 Gone`) are retried by kube's watcher
/// with back-off, resuming from the last resource version.
///
/// # Errors
/// [`WaitError`]: failure with the reason, timeout with the last state, deletion.
#[tracing::instrument(skip_all, fields(pod = %name))]
pub async fn until(
    api: &Api<Pod>,
    name: &str,
    goal: &Goal,
    timeout: Duration,
) -> Result<(Pod, Reached), WaitError> {
    let mut last = "no answer from the API server yet".to_owned();
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let stream = watcher::watcher(api.clone(), config);
    let watch = async {
        let mut stream = std::pin::pin!(stream);
        let mut failures = 0u32;
        while let Some(event) = stream.next().await {
            let pod = match event {
                Ok(Event::Apply(pod) | Event::InitApply(pod)) => pod,
                Ok(Event::Delete(_)) => {
                    return Err(WaitError::Deleted {
                        pod: name.to_owned(),
                    });
                }
                Ok(Event::Init | Event::InitDone) => continue,
                Err(source) => {
                    // The watcher resumes by itself after an error; give up only when the API
                    // keeps failing.
                    failures += 1;
                    debug!(error = %source, failures, "watch error");
                    if failures >= MAX_WATCH_FAILURES {
                        return Err(WaitError::Watch {
                            pod: name.to_owned(),
                            source,
                        });
                    }
                    tokio::time::sleep(WATCH_RETRY_DELAY).await;
                    continue;
                }
            };
            failures = 0;
            match evaluate(&pod, goal) {
                Progress::Reached(reached) => return Ok((pod, reached)),
                Progress::Failed(failure) => {
                    return Err(WaitError::Failed {
                        pod: name.to_owned(),
                        failure,
                    });
                }
                Progress::Waiting(state) => {
                    debug!(%state, "waiting");
                    last = state;
                }
            }
        }
        Err(WaitError::Deleted {
            pod: name.to_owned(),
        })
    };
    match tokio::time::timeout(timeout, watch).await {
        Ok(result) => result,
        Err(_) => Err(WaitError::Timeout {
            pod: name.to_owned(),
            timeout,
            last,
        }),
    }
}

/// How many watch errors in a row end the wait.
const MAX_WATCH_FAILURES: u32 = 5;
/// Pause between watch retries.
const WATCH_RETRY_DELAY: Duration = Duration::from_millis(500);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [
                {"name": "job", "image": "node:22"},
                {"name": "redis", "image": "redis:7"}
            ], "initContainers": [{"name": "fs-init", "image": "runner:1"}]},
            "status": status
        }))
        .unwrap()
    }

    fn running_goal() -> Goal {
        Goal::Running {
            container: "job".into(),
        }
    }

    #[test]
    fn running_pod_reaches_running() {
        let p = pod(json!({"phase": "Running", "containerStatuses": [
            {"name": "job", "image": "node:22", "imageID": "", "ready": true, "restartCount": 0, "state": {"running": {}}},
            {"name": "redis", "image": "redis:7", "imageID": "", "ready": true, "restartCount": 0, "state": {"running": {}}}
        ]}));
        assert_eq!(
            evaluate(&p, &running_goal()),
            Progress::Reached(Reached::Running)
        );
    }

    #[test]
    fn image_pull_failure_of_a_service_fails_fast_with_image_and_message() {
        let p = pod(json!({"phase": "Pending", "containerStatuses": [
            {"name": "job", "image": "node:22", "imageID": "", "ready": false, "restartCount": 0, "state": {"running": {}}},
            {"name": "redis", "image": "redis:7", "imageID": "", "ready": false, "restartCount": 0,
             "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image \"redis:7\""}}}
        ]}));
        let Progress::Failed(f) = evaluate(&p, &running_goal()) else {
            panic!("should fail")
        };
        assert!(f.is_image_pull());
        assert_eq!(
            f.to_string(),
            "container `redis` (image `redis:7`): ImagePullBackOff: Back-off pulling image \"redis:7\""
        );
    }

    #[test]
    fn unschedulable_fails_with_the_scheduler_message() {
        let p = pod(json!({"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
             "message": "0/3 nodes are available: 3 Insufficient cpu."}
        ]}));
        let Progress::Failed(f) = evaluate(&p, &running_goal()) else {
            panic!("should fail")
        };
        assert_eq!(
            f.to_string(),
            "Unschedulable: 0/3 nodes are available: 3 Insufficient cpu."
        );
    }

    #[test]
    fn failed_init_container_fails() {
        let p = pod(json!({"phase": "Failed", "initContainerStatuses": [
            {"name": "fs-init", "image": "runner:1", "imageID": "", "ready": false, "restartCount": 0,
             "state": {"terminated": {"exitCode": 1, "reason": "Error"}}}
        ]}));
        let Progress::Failed(f) = evaluate(&p, &running_goal()) else {
            panic!("should fail")
        };
        assert_eq!(f.container.as_deref(), Some("fs-init"));
        assert!(f.reason.contains("code 1"), "{f}");
    }

    #[test]
    fn pending_without_reason_keeps_waiting_and_says_why() {
        let p = pod(json!({"phase": "Pending", "containerStatuses": [
            {"name": "job", "image": "node:22", "imageID": "", "ready": false, "restartCount": 0,
             "state": {"waiting": {"reason": "ContainerCreating"}}}
        ]}));
        assert_eq!(
            evaluate(&p, &running_goal()),
            Progress::Waiting("pod phase Pending, `job` waiting (ContainerCreating)".into())
        );
    }

    #[test]
    fn terminated_goal_reads_the_container_state_before_the_phase() {
        let p = pod(json!({"phase": "Running", "containerStatuses": [
            {"name": "job", "image": "node:22", "imageID": "", "ready": false, "restartCount": 0,
             "state": {"terminated": {"exitCode": 3, "reason": "Error", "message": "127.0.0.1/a@sha256:x"}}}
        ]}));
        let goal = Goal::Terminated {
            container: "job".into(),
        };
        assert_eq!(
            evaluate(&p, &goal),
            Progress::Reached(Reached::Terminated {
                exit_code: 3,
                message: Some("127.0.0.1/a@sha256:x".into()),
                reason: Some("Error".into()),
            })
        );
    }
}
