//! Where a job or step pod may run relative to the runner's node: pinned to it, preferring it,
//! or anywhere, as the work volume's access mode requires.
//!
//! Owns [`Placement`] and its translation to `spec.nodeName` and node affinity. It must not
//! decide the placement (the caller does, from the work volume claim), build pods, call the API,
//! read files or draw random numbers. Tolerations are not placed here: pods carry the runner
//! pod's, as given ([`super::pod`]).

use k8s_openapi::api::core::v1::{
    Affinity, NodeAffinity, NodeSelectorRequirement, NodeSelectorTerm, PreferredSchedulingTerm,
};

/// Where the job pod may run relative to the runner's node (volume mode).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// `spec.nodeName` set to this node, as the TypeScript hook does: a ReadWriteOnce work volume
    /// can only be attached there. The scheduler is bypassed, so the node's taints and a cordon
    /// (`spec.unschedulable`) do not keep the pod away: the kubelet does not enforce `NoSchedule`
    /// taints, while required node affinity would leave the pod `Unschedulable` on a tainted
    /// runner node it does not tolerate. The price: the kubelet admits or rejects the pod at
    /// once, so a pod that does not fit the node's free resources fails with `OutOfcpu` /
    /// `OutOfmemory` instead of waiting for room (`pkg/kubelet/lifecycle/predicate.go`).
    PinToNode(String),
    /// Preferred node affinity (weight 100) to this node: a ReadWriteMany work volume works
    /// anywhere, so the scheduler decides (`ACTIONS_RUNNER_USE_KUBE_SCHEDULER=true`), but the
    /// runner's node avoids a second attachment.
    PreferNode(String),
    /// No node affinity.
    Anywhere,
}

/// `spec.nodeName` for a [`Placement`]: the runner's node for [`Placement::PinToNode`] (the
/// pod is bound by its creator, without the scheduler), else none.
pub fn node_name(placement: &Placement) -> Option<String> {
    match placement {
        Placement::PinToNode(node) => Some(node.clone()),
        Placement::PreferNode(_) | Placement::Anywhere => None,
    }
}

/// Node affinity for a [`Placement`]: preferred affinity to the runner's node for
/// [`Placement::PreferNode`], none otherwise ([`Placement::PinToNode`] sets `spec.nodeName`
/// instead, [`node_name`]). It matches the node by `metadata.name` (`matchFields`), which is
/// exact, unlike the `kubernetes.io/hostname` label the TypeScript hook 0.7 used: that label may
/// differ from the node name (cloud providers set it to the hostname).
pub fn node_affinity(placement: &Placement) -> Option<Affinity> {
    let term = |node: &str| NodeSelectorTerm {
        match_fields: Some(vec![NodeSelectorRequirement {
            key: "metadata.name".into(),
            operator: "In".into(),
            values: Some(vec![node.to_owned()]),
        }]),
        ..Default::default()
    };
    let node_affinity = match placement {
        Placement::Anywhere | Placement::PinToNode(_) => return None,
        Placement::PreferNode(node) => NodeAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![
                PreferredSchedulingTerm {
                    weight: 100,
                    preference: term(node),
                },
            ]),
            ..Default::default()
        },
    };
    Some(Affinity {
        node_affinity: Some(node_affinity),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::DataPlane;
    use crate::spec::WorkVolume;
    use crate::spec::tests::{NODE, RUNNER_POD, build, claim, copy_plan, fixture};

    /// A ReadWriteOnce work volume pins the pod with `spec.nodeName`, which bypasses the
    /// scheduler: required node affinity would leave it `Unschedulable` on a tainted or cordoned
    /// runner node.
    #[test]
    fn pinned_placement_sets_node_name_not_required_affinity() {
        let args = fixture("prepare_job");
        let pinned = build(&args, &claim(Placement::PinToNode(NODE.into())), None).unwrap();
        let spec = pinned.pod.spec.as_ref().unwrap();
        assert_eq!(spec.node_name.as_deref(), Some(NODE));
        assert!(spec.affinity.is_none(), "{:?}", spec.affinity);
        let work = &spec.volumes.as_ref().unwrap()[0];
        assert_eq!(
            work.persistent_volume_claim.as_ref().unwrap().claim_name,
            format!("{RUNNER_POD}-work")
        );
        assert!(work.empty_dir.is_none());

        let preferred = build(&args, &claim(Placement::PreferNode(NODE.into())), None).unwrap();
        let terms = preferred
            .pod
            .spec
            .as_ref()
            .unwrap()
            .affinity
            .as_ref()
            .unwrap()
            .node_affinity
            .as_ref()
            .unwrap()
            .preferred_during_scheduling_ignored_during_execution
            .as_ref()
            .unwrap();
        assert_eq!(terms[0].weight, 100);
        let field = &terms[0].preference.match_fields.as_ref().unwrap()[0];
        assert_eq!(
            (
                field.key.as_str(),
                field.operator.as_str(),
                field.values.as_deref().unwrap()
            ),
            ("metadata.name", "In", [NODE.to_owned()].as_slice())
        );
        assert_eq!(preferred.pod.spec.as_ref().unwrap().node_name, None);

        let anywhere = build(&args, &claim(Placement::Anywhere), None).unwrap();
        assert!(anywhere.pod.spec.as_ref().unwrap().affinity.is_none());
        assert_eq!(anywhere.pod.spec.as_ref().unwrap().node_name, None);
        let copy = copy_plan(&args);
        assert!(copy.pod.spec.as_ref().unwrap().affinity.is_none());
        assert_eq!(copy.pod.spec.as_ref().unwrap().node_name, None);
        assert_eq!(claim(Placement::Anywhere).data_plane(), DataPlane::Volume);
        assert_eq!(WorkVolume::EmptyDir.data_plane(), DataPlane::Copy);
    }
}
