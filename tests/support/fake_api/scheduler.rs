//! The default scheduler for the one fake node: bind (`pods/binding` sets `spec.nodeName`, a
//! `Scheduled` Event), or leave the pod `PodScheduled=False` `Unschedulable` with the
//! scheduler's message and a `FailedScheduling` Event, retrying until it fits. Copies the
//! messages of `pkg/scheduler/framework` (`FitError`, VolumeBinding PreFilter, and the filter
//! plugins in their default order: NodeUnschedulable, TaintToleration, NodeAffinity).
//!
//! A pod created with `spec.nodeName` is not scheduled at all (no `Scheduled` Event): it runs on
//! that node whatever its taints and even when it is cordoned, as on a real cluster (the kubelet
//! does not enforce `NoSchedule` taints). A node change (taint removed, uncordon) pokes the
//! loop, so a waiting pod is scheduled at once, as the real scheduler re-queues unschedulable
//! pods on node events.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Taint, Toleration};
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

/// The PostFilter (preemption) message of a one-node cluster where preemption cannot help.
const NO_PREEMPTION: &str =
    "preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.";

/// `FitError.Error()` (`pkg/scheduler/framework/types.go`) for one node: every part is followed
/// by `.` (`SeparatorFormat = " %v."`), so the preemption message, which ends with its own
/// period, ends in `..` on a real cluster too.
fn fit_error(reason: &str) -> String {
    format!("0/1 nodes are available: {reason}. {NO_PREEMPTION}.")
}

/// The taint a cordon stands for: `NodeUnschedulable` lets a pod that tolerates it through
/// (`pkg/scheduler/framework/plugins/nodeunschedulable`).
const UNSCHEDULABLE_TAINT_KEY: &str = "node.kubernetes.io/unschedulable";

/// `Toleration.ToleratesTaint` (`k8s.io/api/core/v1/toleration.go`): an empty effect matches
/// every effect, an empty key (with `Exists`) every key; the operator defaults to `Equal`.
pub(super) fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    let effect = toleration.effect.as_deref().unwrap_or_default();
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or_default();
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or_default() {
        "" | "Equal" => {
            toleration.value.as_deref().unwrap_or_default()
                == taint.value.as_deref().unwrap_or_default()
        }
        "Exists" => true,
        _ => false,
    }
}

/// The first `NoSchedule`/`NoExecute` taint no toleration tolerates (`v1helper.
/// FindMatchingUntoleratedTaint` as the TaintToleration filter calls it; `PreferNoSchedule` is
/// only a score).
fn untolerated<'t>(taints: &'t [Taint], tolerations: &[Toleration]) -> Option<&'t Taint> {
    taints.iter().find(|taint| {
        matches!(taint.effect.as_str(), "NoSchedule" | "NoExecute")
            && !tolerations.iter().any(|t| tolerates(t, taint))
    })
}

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
            return Decision::Unschedulable(fit_error(&format!(
                "persistentvolumeclaim \"{}\" not found",
                claim.claim_name
            )));
        }
    }
    let tolerations = spec.tolerations.clone().unwrap_or_default();
    let (cordoned, taints) = {
        let scripts = shared.kubelet.scripts.lock().expect("scripts lock");
        (scripts.cordoned, scripts.taints.clone())
    };
    // NodeUnschedulable (`pkg/scheduler/framework/plugins/nodeunschedulable`).
    let cordon_taint = Taint {
        key: UNSCHEDULABLE_TAINT_KEY.to_string(),
        effect: "NoSchedule".to_string(),
        ..Taint::default()
    };
    if cordoned && !tolerations.iter().any(|t| tolerates(t, &cordon_taint)) {
        return Decision::Unschedulable(fit_error("1 node(s) were unschedulable"));
    }
    // TaintToleration (`pkg/scheduler/framework/plugins/tainttoleration`).
    if let Some(taint) = untolerated(&taints, &tolerations) {
        return Decision::Unschedulable(fit_error(&format!(
            "1 node(s) had untolerated taint {{{}: {}}}",
            taint.key,
            taint.value.as_deref().unwrap_or_default()
        )));
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
        return Decision::Unschedulable(fit_error(
            "1 node(s) didn't match Pod's node affinity/selector",
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

#[cfg(test)]
mod tests {
    use super::*;

    fn taint(key: &str, value: &str, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            value: (!value.is_empty()).then(|| value.into()),
            effect: effect.into(),
            time_added: None,
        }
    }

    fn toleration(key: &str, operator: &str, value: &str, effect: &str) -> Toleration {
        let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
        Toleration {
            key: some(key),
            operator: some(operator),
            value: some(value),
            effect: some(effect),
            toleration_seconds: None,
        }
    }

    /// `Toleration.ToleratesTaint`, case by case.
    #[test]
    fn tolerations_match_taints_as_kubernetes_does() {
        let runners = taint("dedicated", "runners", "NoSchedule");
        let cases = [
            (
                toleration("dedicated", "Equal", "runners", "NoSchedule"),
                true,
            ),
            (toleration("dedicated", "", "runners", "NoSchedule"), true), // "" is Equal
            (toleration("dedicated", "Equal", "runners", ""), true),      // every effect
            (toleration("dedicated", "Exists", "", "NoSchedule"), true),
            (toleration("", "Exists", "", ""), true), // tolerates everything
            (toleration("", "Exists", "", "NoExecute"), false),
            (
                toleration("dedicated", "Equal", "builds", "NoSchedule"),
                false,
            ),
            (toleration("dedicated", "Equal", "", "NoSchedule"), false),
            (toleration("other", "Exists", "", ""), false),
            (
                toleration("dedicated", "Gt", "runners", "NoSchedule"),
                false,
            ),
        ];
        for (toleration, expected) in cases {
            assert_eq!(tolerates(&toleration, &runners), expected, "{toleration:?}");
        }
        let soft = taint("spot", "", "PreferNoSchedule");
        assert_eq!(
            untolerated(std::slice::from_ref(&soft), &[]),
            None,
            "only a score"
        );
        let hard = [soft, runners.clone()];
        assert_eq!(untolerated(&hard, &[]), Some(&runners));
        assert_eq!(
            fit_error("1 node(s) were unschedulable"),
            "0/1 nodes are available: 1 node(s) were unschedulable. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.."
        );
    }
}
