//! The kubelet's status manager for one pod: the container states it tracks, the pod phase
//! (`getPhase`, `pkg/kubelet/kubelet_pods.go`), the conditions as
//! `pkg/kubelet/status/generate.go` words them, the container statuses, and publishing them to
//! the API, with a terminal phase shown `phase_lag` after the container state that caused it.
//! Must not: run containers or schedule.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Container;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

use super::Shared;
use super::images::normalize;
use super::kubelet::PodHandle;

#[derive(Clone, Debug)]
pub(super) enum State {
    Waiting {
        reason: String,
        message: Option<String>,
    },
    Running {
        started: Timestamp,
        id: String,
    },
    Terminated {
        code: i32,
        reason: String,
        message: Option<String>,
        started: Timestamp,
        finished: Timestamp,
        id: String,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub(super) enum Scheduling {
    Waiting,
    Unschedulable(String),
    Scheduled,
}

pub(super) struct Model {
    pub(super) scheduling: Scheduling,
    pub(super) start_time: Option<Timestamp>,
    pub(super) sandbox_ready: bool,
    pub(super) init: Vec<State>,
    pub(super) main: Vec<State>,
    pub(super) image_ids: HashMap<String, String>,
    /// The terminal phase may be shown (after `phase_lag`, or at deletion).
    pub(super) terminal_allowed: bool,
    pub(super) lag_started: bool,
    pub(super) shown_phase: &'static str,
    pub(super) transitions: HashMap<&'static str, (bool, Timestamp)>,
}

fn format_time(at: Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

pub(super) fn random_hex64() -> String {
    format!(
        "{:032x}{:032x}",
        rand::random::<u128>(),
        rand::random::<u128>()
    )
}

/// A stable fake digest for an image name.
pub(super) fn digest_of(name: &str) -> String {
    (0..4u8)
        .map(|i| {
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            (name, i).hash(&mut hasher);
            format!("{:016x}", hasher.finish())
        })
        .collect()
}

/// `getPhase` of `pkg/kubelet/kubelet_pods.go`.
fn compute_phase(model: &Model, restart_policy: &str) -> &'static str {
    if model.scheduling != Scheduling::Scheduled {
        return "Pending";
    }
    let init_failed = model
        .init
        .iter()
        .any(|s| matches!(s, State::Terminated { code, .. } if *code != 0));
    if init_failed && restart_policy == "Never" {
        return "Failed";
    }
    let init_pending = model
        .init
        .iter()
        .any(|s| !matches!(s, State::Terminated { code: 0, .. }));
    if init_pending {
        return "Pending";
    }
    let waiting = model
        .main
        .iter()
        .filter(|s| matches!(s, State::Waiting { .. }))
        .count();
    let running = model
        .main
        .iter()
        .filter(|s| matches!(s, State::Running { .. }))
        .count();
    let stopped = model
        .main
        .iter()
        .filter(|s| matches!(s, State::Terminated { .. }))
        .count();
    let succeeded = model
        .main
        .iter()
        .filter(|s| matches!(s, State::Terminated { code: 0, .. }))
        .count();
    if waiting > 0 {
        "Pending"
    } else if running > 0 {
        "Running"
    } else if stopped > 0 {
        if restart_policy == "Always" {
            "Running"
        } else if stopped == succeeded {
            "Succeeded"
        } else if restart_policy == "Never" {
            "Failed"
        } else {
            "Running"
        }
    } else {
        "Pending"
    }
}

fn state_json(state: &State) -> Value {
    match state {
        State::Waiting { reason, message } => {
            let mut waiting = json!({"reason": reason});
            if let Some(message) = message {
                waiting["message"] = json!(message);
            }
            json!({"waiting": waiting})
        }
        State::Running { started, .. } => json!({"running": {"startedAt": format_time(*started)}}),
        State::Terminated {
            code,
            reason,
            message,
            started,
            finished,
            id,
        } => {
            let mut terminated = json!({
                "exitCode": code,
                "reason": reason,
                "startedAt": format_time(*started),
                "finishedAt": format_time(*finished),
                "containerID": format!("containerd://{id}"),
            });
            if let Some(message) = message.as_ref().filter(|m| !m.is_empty()) {
                terminated["message"] = json!(message);
            }
            json!({"terminated": terminated})
        }
    }
}

fn container_status(
    container: &Container,
    state: &State,
    image_ids: &HashMap<String, String>,
) -> Value {
    let image = normalize(container.image.as_deref().unwrap_or_default());
    let mut status = json!({
        "name": container.name,
        "image": image,
        "imageID": image_ids.get(&container.name).cloned().unwrap_or_default(),
        "ready": matches!(state, State::Running { .. }),
        "restartCount": 0,
        "started": matches!(state, State::Running { .. }),
        "state": state_json(state),
        "lastState": {},
    });
    if let State::Running { id, .. } | State::Terminated { id, .. } = state {
        status["containerID"] = json!(format!("containerd://{id}"));
    }
    status
}

/// The pod status the kubelet would write now.
fn build_status(
    shared: &Shared,
    handle: &PodHandle,
    model: &mut Model,
    phase: &'static str,
) -> Value {
    let now = Timestamp::now();
    let mut condition =
        |kind: &'static str, ok: bool, reason: Option<&str>, message: Option<String>| {
            let entry = model.transitions.entry(kind).or_insert((ok, now));
            if entry.0 != ok {
                *entry = (ok, now);
            }
            let mut c = json!({
                "type": kind,
                "status": if ok { "True" } else { "False" },
                "lastProbeTime": null,
                "lastTransitionTime": format_time(entry.1),
            });
            if let Some(reason) = reason {
                c["reason"] = json!(reason);
            }
            if let Some(message) = message {
                c["message"] = json!(message);
            }
            c
        };
    let mut status = json!({"phase": phase});
    match &model.scheduling {
        Scheduling::Waiting => return status,
        Scheduling::Unschedulable(message) => {
            let c = condition(
                "PodScheduled",
                false,
                Some("Unschedulable"),
                Some(message.clone()),
            );
            status["conditions"] = json!([c]);
            return status;
        }
        Scheduling::Scheduled => {}
    }
    let init_specs = handle.spec_containers(true);
    let main_specs = handle.spec_containers(false);
    let incomplete: Vec<&str> = init_specs
        .iter()
        .zip(&model.init)
        .filter(|(_, s)| !matches!(s, State::Terminated { code: 0, .. }))
        .map(|(c, _)| c.name.as_str())
        .collect();
    let unready: Vec<&str> = main_specs
        .iter()
        .zip(&model.main)
        .filter(|(_, s)| !matches!(s, State::Running { .. }))
        .map(|(c, _)| c.name.as_str())
        .collect();
    let sandbox_ready = model.sandbox_ready;
    let mut conditions = vec![condition(
        "PodReadyToStartContainers",
        sandbox_ready,
        None,
        None,
    )];
    conditions.push(if incomplete.is_empty() {
        condition("Initialized", true, None, None)
    } else {
        condition(
            "Initialized",
            false,
            Some("ContainersNotInitialized"),
            Some(format!(
                "containers with incomplete status: [{}]",
                incomplete.join(" ")
            )),
        )
    });
    for kind in ["Ready", "ContainersReady"] {
        conditions.push(if unready.is_empty() {
            condition(kind, true, None, None)
        } else if phase == "Succeeded" {
            condition(kind, false, Some("PodCompleted"), None)
        } else {
            condition(
                kind,
                false,
                Some("ContainersNotReady"),
                Some(format!(
                    "containers with unready status: [{}]",
                    unready.join(" ")
                )),
            )
        });
    }
    conditions.push(condition("PodScheduled", true, None, None));
    status["conditions"] = json!(conditions);
    let ip = &shared.options.node_ip;
    status["hostIP"] = json!(ip);
    status["hostIPs"] = json!([{"ip": ip}]);
    if sandbox_ready {
        status["podIP"] = json!(ip);
        status["podIPs"] = json!([{"ip": ip}]);
    }
    if let Some(start) = model.start_time {
        status["startTime"] = json!(format_time(start));
    }
    if !init_specs.is_empty() {
        status["initContainerStatuses"] = json!(
            init_specs
                .iter()
                .zip(&model.init)
                .map(|(c, s)| container_status(c, s, &model.image_ids))
                .collect::<Vec<_>>()
        );
    }
    status["containerStatuses"] = json!(
        main_specs
            .iter()
            .zip(&model.main)
            .map(|(c, s)| container_status(c, s, &model.image_ids))
            .collect::<Vec<_>>()
    );
    status
}

/// Write the pod's status to the API (a no-op once the object is gone or replaced).
pub(super) fn publish(shared: &Arc<Shared>, handle: &Arc<PodHandle>) {
    let status = {
        let mut model = handle.model.lock().expect("model lock");
        let target = compute_phase(&model, &handle.restart_policy());
        let terminal = matches!(target, "Succeeded" | "Failed");
        let phase = if terminal && !model.terminal_allowed {
            if !model.lag_started {
                model.lag_started = true;
                let (lag_shared, lag_handle) = (shared.clone(), handle.clone());
                let lag = shared.options.phase_lag;
                shared.spawn(async move {
                    tokio::time::sleep(lag).await;
                    lag_handle
                        .model
                        .lock()
                        .expect("model lock")
                        .terminal_allowed = true;
                    publish(&lag_shared, &lag_handle);
                });
            }
            model.shown_phase
        } else {
            target
        };
        model.shown_phase = phase;
        build_status(shared, handle, &mut model, phase)
    };
    let _ = shared
        .store
        .update("pods", &handle.namespace, &handle.name, |pod| {
            if pod["metadata"]["uid"] != handle.uid.as_str() {
                return Err(super::status::ApiError::not_found("pods", &handle.name));
            }
            let qos = pod["status"]["qosClass"].clone();
            pod["status"] = status;
            pod["status"]["qosClass"] = qos;
            Ok(())
        });
}
