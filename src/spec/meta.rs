//! The metadata every object of the hook carries: the labels that tie it to its runner pod and
//! say what it is for, and the ownerReference that lets Kubernetes garbage-collect it with the
//! runner pod.
//!
//! Owns the label keys and the `component` values of the job pod, step pods, pull secrets and
//! step environment secrets (build pods: [`super::build_pod::COMPONENT_BUILD`]). It must not
//! build pods or Secrets itself, call the API, read files or draw random numbers.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

/// Label put on every object we create, with the runner pod's name as value. The TypeScript hook
/// uses the same key, so `cleanup_job` of either hook finds the other's leftovers.
pub const RUNNER_POD_LABEL: &str = "runner-pod";

/// `app.kubernetes.io/managed-by` (Kubernetes recommended labels).
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";

/// Our value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY: &str = "runner-k8s-hook";

/// `app.kubernetes.io/component`: what the object is for (`job`, `pull-secret`...).
pub const COMPONENT_LABEL: &str = "app.kubernetes.io/component";

/// [`COMPONENT_LABEL`] of the job pod.
pub const COMPONENT_JOB: &str = "job";

/// Label value of step pods.
pub const COMPONENT_STEP: &str = "step";

/// [`COMPONENT_LABEL`] of pull secrets.
pub const COMPONENT_PULL_SECRET: &str = "pull-secret";

/// Label value of step environment secrets.
pub const COMPONENT_STEP_ENV: &str = "step-env";

/// The runner pod, as owner of what we create: Kubernetes then garbage-collects our objects when
/// the runner pod goes away, even if `cleanup_job` never runs (RCH #255).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// The runner pod's name.
    pub name: String,
    /// The runner pod's `metadata.uid`.
    pub uid: String,
}

/// The labels every object of one runner carries: `runner-pod=<runner pod>` (how `cleanup_job`
/// finds them) and the recommended `managed-by` / `component` labels.
pub fn object_labels(runner_pod: &str, component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (RUNNER_POD_LABEL.to_owned(), runner_pod.to_owned()),
        (MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned()),
        (COMPONENT_LABEL.to_owned(), component.to_owned()),
    ])
}

/// The ownerReference to the runner pod. Neither `controller` (the runner pod does not manage
/// our pods) nor `blockOwnerDeletion` (deleting the runner pod must not wait for ours).
pub fn owner_reference(owner: &Owner) -> OwnerReference {
    OwnerReference {
        api_version: "v1".into(),
        kind: "Pod".into(),
        name: owner.name.clone(),
        uid: owner.uid.clone(),
        block_owner_deletion: Some(false),
        controller: Some(false),
    }
}
