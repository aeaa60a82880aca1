//! Creating, reading and deleting the objects we own: pods and secrets, found by the
//! `runner-pod` label. Expected API statuses are handled on purpose: 409 on create, 404 on
//! delete (kube `examples/pod_api.rs`). Owns these calls and the runner pod's facts
//! ([`RunnerPod`]); the objects' content comes from `spec`.

use k8s_openapi::api::core::v1::{Pod, Secret, Toleration};
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};
use serde::de::DeserializeOwned;
use tracing::{debug, info, warn};

use super::{Session, retry};
use crate::spec::RUNNER_POD_LABEL;

/// Failures of object operations, named after the operation.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    /// Create was refused.
    #[error("failed to create {kind} `{name}` in namespace `{namespace}`")]
    Create {
        /// `pod` or `secret`.
        kind: &'static str,
        /// Object name.
        name: String,
        /// Namespace.
        namespace: String,
        /// kube's error.
        #[source]
        source: kube::Error,
    },
    /// Delete failed (other than "already gone").
    #[error("failed to delete {kind} `{name}` in namespace `{namespace}`")]
    Delete {
        /// `pod` or `secret`.
        kind: &'static str,
        /// Object name.
        name: String,
        /// Namespace.
        namespace: String,
        /// kube's error.
        #[source]
        source: kube::Error,
    },
    /// Listing by label failed.
    #[error("failed to list {kind}s labelled `{selector}` in namespace `{namespace}`")]
    List {
        /// `pod` or `secret`.
        kind: &'static str,
        /// The label selector.
        selector: String,
        /// Namespace.
        namespace: String,
        /// kube's error.
        #[source]
        source: kube::Error,
    },
}

/// What we know about the runner pod, when we may read it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunnerPod {
    /// Its uid, for ownerReferences (garbage collection when the runner pod goes).
    pub uid: String,
    /// The node it runs on (for RWO volume placement).
    pub node_name: Option<String>,
    /// Names of the persistent volume claims it mounts (including ephemeral volumes, whose
    /// claim is `<pod>-<volume>`).
    pub claims: Vec<String>,
    /// Its tolerations, without the ones every pod gets by default ([`inherited_tolerations`]):
    /// job, step and build pods carry them, so they can run where the runner runs (a tainted
    /// runner node pool).
    pub tolerations: Vec<Toleration>,
}

/// The taints the `DefaultTolerationSeconds` admission plugin tolerates for 300 s on every pod
/// that does not tolerate them already (`plugin/pkg/admission/defaulttolerationseconds`).
const DEFAULT_TOLERATION_KEYS: [&str; 2] = [
    "node.kubernetes.io/not-ready",
    "node.kubernetes.io/unreachable",
];
/// Their `tolerationSeconds` (`--default-not-ready-toleration-seconds`,
/// `--default-unreachable-toleration-seconds`).
const DEFAULT_TOLERATION_SECONDS: i64 = 300;

/// The runner pod's tolerations that our pods inherit: all of them except the two that the
/// `DefaultTolerationSeconds` admission plugin adds to every pod (`node.kubernetes.io/not-ready`
/// and `node.kubernetes.io/unreachable`, `Exists`, `NoExecute`, 300 s). Our pods get those from
/// the API server anyway; copying them would only make our specs differ from what we build
/// and show them twice in a template's view. A runner pod that sets one of these keys with
/// another duration or operator chose it on purpose, and that one is kept.
pub fn inherited_tolerations(tolerations: &[Toleration]) -> Vec<Toleration> {
    tolerations
        .iter()
        .filter(|t| {
            let added_by_admission = t
                .key
                .as_deref()
                .is_some_and(|k| DEFAULT_TOLERATION_KEYS.contains(&k))
                && t.operator.as_deref() == Some("Exists")
                && t.effect.as_deref() == Some("NoExecute")
                && t.toleration_seconds == Some(DEFAULT_TOLERATION_SECONDS)
                && t.value.as_deref().unwrap_or_default().is_empty();
            !added_by_admission
        })
        .cloned()
        .collect()
}

impl Session {
    /// Pods API in our namespace.
    pub fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Secrets API in our namespace.
    pub fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// `runner-pod=<name>`: the selector of everything we created for this runner.
    pub fn selector(&self) -> String {
        format!("{RUNNER_POD_LABEL}={}", self.runner_pod)
    }

    /// Read the runner pod. `None` when it cannot be read (not running in a pod, or no `get`
    /// permission on it): ownerReferences and node placement are then left out, with a warning.
    pub async fn runner_pod(&self) -> Option<RunnerPod> {
        let pods = self.pods();
        match retry::call("get the runner pod", || pods.get(&self.runner_pod)).await {
            Ok(pod) => {
                let spec = pod.spec.unwrap_or_default();
                let claims = spec
                    .volumes
                    .iter()
                    .flatten()
                    .filter_map(|v| {
                        if let Some(pvc) = &v.persistent_volume_claim {
                            Some(pvc.claim_name.clone())
                        } else {
                            // Generic ephemeral volume: the claim is named `<pod>-<volume>`
                            // (Kubernetes `ephemeral.VolumeClaimName`).
                            v.ephemeral
                                .as_ref()
                                .map(|_| format!("{}-{}", self.runner_pod, v.name))
                        }
                    })
                    .collect();
                Some(RunnerPod {
                    uid: pod.metadata.uid.unwrap_or_default(),
                    node_name: spec.node_name,
                    claims,
                    tolerations: inherited_tolerations(
                        spec.tolerations.as_deref().unwrap_or_default(),
                    ),
                })
            }
            Err(err) => {
                warn!(
                    pod = %self.runner_pod,
                    error = %err,
                    "cannot read the runner pod: created objects get no ownerReference and no node placement"
                );
                None
            }
        }
    }

    /// The runner pod as owner of what we create (for ownerReferences), when it could be read.
    pub fn owner(&self, runner: Option<&RunnerPod>) -> Option<crate::spec::Owner> {
        runner.map(|r| crate::spec::Owner {
            name: self.runner_pod.clone(),
            uid: r.uid.clone(),
        })
    }

    /// The hook template named by `ACTIONS_RUNNER_CONTAINER_HOOK_TEMPLATE`, loaded; `None`
    /// when none is configured.
    ///
    /// # Errors
    /// The template file is unreadable or not a pod template.
    pub fn hook_template(
        &self,
    ) -> Result<Option<crate::spec::template::Template>, crate::spec::template::TemplateError> {
        self.config
            .hook_template
            .as_deref()
            .map(crate::spec::template::Template::load)
            .transpose()
    }

    /// Create a pod.
    ///
    /// # Errors
    /// [`ObjectError::Create`] with the API's reason.
    pub async fn create_pod(&self, pod: &Pod) -> Result<Pod, ObjectError> {
        let name = pod.metadata.name.clone().unwrap_or_default();
        debug!(pod = %name, "creating pod");
        create(&self.pods(), pod, &name)
            .await
            .map_err(|source| ObjectError::Create {
                kind: "pod",
                name,
                namespace: self.namespace.clone(),
                source,
            })
    }

    /// Create a secret.
    ///
    /// # Errors
    /// [`ObjectError::Create`] with the API's reason.
    pub async fn create_secret(&self, secret: &Secret) -> Result<Secret, ObjectError> {
        let name = secret.metadata.name.clone().unwrap_or_default();
        debug!(secret = %name, "creating secret");
        create(&self.secrets(), secret, &name)
            .await
            .map_err(|source| ObjectError::Create {
                kind: "secret",
                name,
                namespace: self.namespace.clone(),
                source,
            })
    }

    /// Delete a pod now (grace period 0, as the TypeScript hook does: nothing in a job pod needs
    /// a graceful stop once the runner is done with it). Already gone is fine.
    ///
    /// # Errors
    /// [`ObjectError::Delete`] for anything but 404.
    pub async fn delete_pod(&self, name: &str) -> Result<(), ObjectError> {
        delete(&self.pods(), "pod", name, &self.namespace).await
    }

    /// Delete a secret. Already gone is fine.
    ///
    /// # Errors
    /// [`ObjectError::Delete`] for anything but 404.
    pub async fn delete_secret(&self, name: &str) -> Result<(), ObjectError> {
        delete(&self.secrets(), "secret", name, &self.namespace).await
    }

    /// Delete every pod and secret labelled `runner-pod=<runner pod>`, and nothing else.
    /// Returns how many of each were deleted.
    ///
    /// # Errors
    /// The first list or delete failure (all deletions are attempted first).
    pub async fn delete_ours(
        &self,
        pods: bool,
        secrets: bool,
    ) -> Result<(usize, usize), ObjectError> {
        let mut first_error = None;
        let mut counts = (0, 0);
        if pods {
            match self.delete_labelled(&self.pods(), "pod").await {
                Ok(n) => counts.0 = n,
                Err(e) => first_error = first_error.or(Some(e)),
            }
        }
        if secrets {
            match self.delete_labelled(&self.secrets(), "secret").await {
                Ok(n) => counts.1 = n,
                Err(e) => first_error = first_error.or(Some(e)),
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(counts),
        }
    }

    async fn delete_labelled<K>(
        &self,
        api: &Api<K>,
        kind: &'static str,
    ) -> Result<usize, ObjectError>
    where
        K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug,
    {
        let selector = self.selector();
        let params = ListParams::default().labels(&selector);
        let list = retry::call("list our objects", || api.list_metadata(&params))
            .await
            .map_err(|source| ObjectError::List {
                kind,
                selector: selector.clone(),
                namespace: self.namespace.clone(),
                source,
            })?;
        let names: Vec<String> = list
            .items
            .into_iter()
            .filter_map(|o| o.metadata.name)
            .collect();
        let results = futures::future::join_all(
            names
                .iter()
                .map(|name| delete(api, kind, name, &self.namespace)),
        )
        .await;
        let mut first_error = None;
        for result in results {
            if let Err(e) = result {
                first_error = first_error.or(Some(e));
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        if !names.is_empty() {
            info!(kind, count = names.len(), "deleted {}", names.join(", "));
        }
        Ok(names.len())
    }
}

async fn delete<K>(
    api: &Api<K>,
    kind: &'static str,
    name: &str,
    namespace: &str,
) -> Result<(), ObjectError>
where
    K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let params = DeleteParams::default().grace_period(0);
    match retry::call("delete", || api.delete(name, &params)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(source) => Err(ObjectError::Delete {
            kind,
            name: name.to_owned(),
            namespace: namespace.to_owned(),
            source,
        }),
    }
}

/// Create `object`, retrying passing failures. A retry that finds the object already there
/// (409) means an earlier attempt reached the API server although its answer was lost: the
/// object is ours, so read it back.
async fn create<K>(api: &Api<K>, object: &K, name: &str) -> Result<K, kube::Error>
where
    K: kube::Resource + Clone + DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let params = PostParams::default();
    let mut attempts = 0;
    let result = retry::call("create", || {
        attempts += 1;
        api.create(&params, object)
    })
    .await;
    match result {
        Err(kube::Error::Api(status)) if status.code == 409 && attempts > 1 => {
            retry::call("read back", || api.get(name)).await
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toleration(key: &str, operator: &str, effect: &str, seconds: Option<i64>) -> Toleration {
        Toleration {
            key: Some(key.into()),
            operator: Some(operator.into()),
            value: None,
            effect: Some(effect.into()),
            toleration_seconds: seconds,
        }
    }

    /// The two tolerations the `DefaultTolerationSeconds` admission plugin adds to every pod are
    /// not copied; everything else the runner pod tolerates is.
    #[test]
    fn inherited_tolerations_leave_out_the_admission_defaults() {
        let runner = [
            Toleration {
                value: Some("runners".into()),
                ..toleration("dedicated", "Equal", "NoSchedule", None)
            },
            toleration(
                "node.kubernetes.io/not-ready",
                "Exists",
                "NoExecute",
                Some(300),
            ),
            toleration(
                "node.kubernetes.io/unreachable",
                "Exists",
                "NoExecute",
                Some(300),
            ),
            // Chosen on purpose: another duration.
            toleration(
                "node.kubernetes.io/unreachable",
                "Exists",
                "NoExecute",
                Some(30),
            ),
        ];
        assert_eq!(
            inherited_tolerations(&runner),
            vec![runner[0].clone(), runner[3].clone()]
        );
        assert!(inherited_tolerations(&[]).is_empty());
    }
}
