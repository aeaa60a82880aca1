//! The default scheduler for the one fake node: bind (`pods/binding` sets `spec.nodeName`, a
//! `Scheduled` Event), or leave the pod `PodScheduled=False` `Unschedulable` with the
//! scheduler's message and a `FailedScheduling` Event, retrying until it fits. Copies the
//! messages of `pkg/scheduler/framework` (`FitError`, VolumeBinding PreFilter, NodeAffinity).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use serde_json::json;
use tokio::sync::watch;

use super::Shared;
use super::events::event;
use super::kubelet::{PodHandle, pattern_matches};
use super::pod_status::{Scheduling, publish};

enum Decision {
    Hold,
    Unschedulable(String),
    Bind,
}

const NO_PREEMPTION: &str =
    "preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.";

/// One scheduling attempt (`pkg/scheduler/framework`: VolumeBinding PreFilter, NodeAffinity).
fn decide(shared: &Shared, handle: &PodHandle) -> Decision {
    {
        let scripts = shared.kubelet.scripts.lock().expect("scripts lock");
        if scripts
            .holds
            .iter()
            .any(|p| pattern_matches(p, &handle.name))
        {
            return Decision::Hold;
        }
        if let Some((_, message)) = scripts
            .unschedulable
            .iter()
            .find(|(p, _)| pattern_matches(p, &handle.name))
        {
            return Decision::Unschedulable(message.clone());
        }
    }
    let spec = handle.pod.spec.clone().unwrap_or_default();
    if let Some(node) = spec.node_name.as_deref().filter(|n| !n.is_empty()) {
        // Bound by its creator: no scheduler. A node that does not exist never runs it.
        return if node == shared.options.node_name {
            Decision::Bind
        } else {
            Decision::Hold
        };
    }
    for volume in spec.volumes.iter().flatten() {
        if let Some(claim) = &volume.persistent_volume_claim
            && shared
                .store
                .get(
                    "persistentvolumeclaims",
                    &handle.namespace,
                    &claim.claim_name,
                )
                .is_none()
        {
            return Decision::Unschedulable(format!(
                "0/1 nodes are available: persistentvolumeclaim \"{}\" not found. {NO_PREEMPTION}",
                claim.claim_name
            ));
        }
    }
    let labels = &shared.options.node_labels;
    let selector_ok = spec
        .node_selector
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let affinity_ok = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .is_none_or(|required| {
            // Terms are ORed, expressions within a term ANDed.
            required.node_selector_terms.iter().any(|term| {
                term.match_expressions.iter().flatten().all(|e| {
                    let value = labels.get(&e.key);
                    let values = e.values.clone().unwrap_or_default();
                    match e.operator.as_str() {
                        "In" => value.is_some_and(|v| values.contains(v)),
                        "NotIn" => value.is_none_or(|v| !values.contains(v)),
                        "Exists" => value.is_some(),
                        "DoesNotExist" => value.is_none(),
                        _ => false,
                    }
                })
            })
        });
    if !selector_ok || !affinity_ok {
        return Decision::Unschedulable(format!(
            "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector. {NO_PREEMPTION}"
        ));
    }
    Decision::Bind
}

/// Scheduling loop; false when the pod was deleted first.
pub(super) async fn schedule(
    shared: &Arc<Shared>,
    handle: &Arc<PodHandle>,
    terminate: &mut watch::Receiver<Option<i64>>,
) -> bool {
    let mut last_message = None;
    loop {
        if terminate.borrow().is_some() {
            return false;
        }
        match decide(shared, handle) {
            Decision::Hold => {}
            Decision::Unschedulable(message) => {
                if last_message.as_ref() != Some(&message) {
                    handle.model.lock().expect("model lock").scheduling =
                        Scheduling::Unschedulable(message.clone());
                    publish(shared, handle);
                    event(
                        shared,
                        handle,
                        true,
                        "FailedScheduling",
                        &message,
                        "default-scheduler",
                        None,
                    );
                    last_message = Some(message);
                }
            }
            Decision::Bind => {
                let node = shared.options.node_name.clone();
                let preset = handle
                    .pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.node_name.as_deref())
                    .is_some_and(|n| !n.is_empty());
                // pods/binding sets nodeName (and the PodScheduled condition, below).
                let bound = shared
                    .store
                    .update("pods", &handle.namespace, &handle.name, |pod| {
                        if pod["metadata"]["uid"] != handle.uid.as_str() {
                            return Err(super::status::ApiError::not_found("pods", &handle.name));
                        }
                        pod["spec"]["nodeName"] = json!(node);
                        Ok(())
                    });
                if bound.is_err() {
                    return false;
                }
                {
                    let mut model = handle.model.lock().expect("model lock");
                    model.scheduling = Scheduling::Scheduled;
                    model.start_time = Some(Timestamp::now());
                }
                if !preset {
                    let message = format!(
                        "Successfully assigned {}/{} to {node}",
                        handle.namespace, handle.name
                    );
                    event(
                        shared,
                        handle,
                        false,
                        "Scheduled",
                        &message,
                        "default-scheduler",
                        None,
                    );
                }
                publish(shared, handle);
                return true;
            }
        }
        if shared
            .kubelet
            .pause(terminate, Duration::from_millis(100))
            .await
        {
            return false;
        }
    }
}
