//! The API calls of `runner-k8s-hook check` (docs/user/check.md): reads that a Role may refuse
//! (the namespace's labels, the work claim, the registry Secret and CA), a server-side dry run
//! of a pod (`dryRun=All`, which admission evaluates), and short-lived pods run to a goal and
//! deleted.
//!
//! Owns these calls and how their answers are reported ([`Lookup`], [`Refusal`]): kube's errors
//! stay here, the check's policy gets words. It decides nothing about what the answers mean (that
//! is `cli::check`), and every pod it creates is in the undo log until it is deleted again.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, PersistentVolumeClaim, Pod, Secret};
use kube::Api;
use kube::api::PostParams;

use super::wait::{self, Goal, Reached, WaitError};
use super::{Session, Undo, retry};
use crate::spec::build_pod::RegistryCa;

/// The answer to a read that may be refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup<T> {
    /// The object, or what we need of it.
    Found(T),
    /// It does not exist (404).
    NotFound,
    /// The service account may not read it (403): the API server's message.
    Forbidden(String),
    /// Any other failure, in words.
    Failed(String),
}

/// What the check needs of a PersistentVolumeClaim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimFacts {
    /// `status.phase` (`Bound`, `Pending`, `Lost`).
    pub phase: String,
    /// `spec.accessModes` (`ReadWriteOnce`, `ReadWriteMany`, ...).
    pub access_modes: Vec<String>,
    /// `spec.storageClassName`.
    pub storage_class: Option<String>,
}

/// What the check needs of the registry Secret: never a credential, only where it applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretFacts {
    /// The Secret's `type`.
    pub type_: String,
    /// The keys of `auths` in its `.dockerconfigjson` (registry hosts, maybe with a scheme or a
    /// path), sorted; empty when the key is missing or not a docker config.
    pub hosts: Vec<String>,
}

/// The API server refused a pod (create or dry run).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The HTTP status (403 for admission, 422 for validation), when there was one.
    pub code: Option<u16>,
    /// The API server's message.
    pub message: String,
}

/// Why a short-lived pod did not reach its goal.
#[derive(Debug, thiserror::Error)]
pub enum CheckPodError {
    /// The API server refused to create it.
    #[error("the cluster refused the pod: {}", .0.message)]
    Refused(Refusal),
    /// It was created but did not get there.
    #[error(transparent)]
    Wait(#[from] WaitError),
}

fn lookup<T, U>(result: Result<T, kube::Error>, facts: impl FnOnce(T) -> U) -> Lookup<U> {
    match result {
        Ok(object) => Lookup::Found(facts(object)),
        Err(kube::Error::Api(status)) if status.code == 404 => Lookup::NotFound,
        Err(kube::Error::Api(status)) if status.code == 403 => Lookup::Forbidden(status.message),
        Err(other) => Lookup::Failed(other.to_string()),
    }
}

impl Session {
    /// Our namespace's labels (`get` on `namespaces`, which ARC's chart Role does not grant).
    pub async fn namespace_labels(&self) -> Lookup<BTreeMap<String, String>> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        let result = retry::call("read the namespace", || api.get(&self.namespace)).await;
        lookup(result, |ns| ns.metadata.labels.unwrap_or_default())
    }

    /// The claim `name` (`get` on `persistentvolumeclaims`, which ARC's chart Role does not
    /// grant).
    pub async fn claim(&self, name: &str) -> Lookup<ClaimFacts> {
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), &self.namespace);
        let result = retry::call("read the work claim", || api.get(name)).await;
        lookup(result, |pvc| {
            let spec = pvc.spec.unwrap_or_default();
            ClaimFacts {
                phase: pvc
                    .status
                    .and_then(|s| s.phase)
                    .unwrap_or_else(|| "Pending".to_owned()),
                access_modes: spec.access_modes.unwrap_or_default(),
                storage_class: spec.storage_class_name,
            }
        })
    }

    /// The registry Secret `name`: its type and the registry hosts it has credentials for.
    pub async fn registry_secret(&self, name: &str) -> Lookup<SecretFacts> {
        let api: Api<Secret> = self.secrets();
        let result = retry::call("read the registry Secret", || api.get(name)).await;
        lookup(result, |secret| {
            let hosts = secret
                .data
                .as_ref()
                .and_then(|data| data.get(crate::spec::build_pod::DOCKERCONFIGJSON_KEY))
                .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes.0).ok())
                .and_then(|config| {
                    config["auths"]
                        .as_object()
                        .map(|auths| auths.keys().cloned().collect::<Vec<_>>())
                })
                .unwrap_or_default();
            SecretFacts {
                type_: secret.type_.unwrap_or_else(|| "Opaque".to_owned()),
                hosts,
            }
        })
    }

    /// Whether the registry CA's object exists and has the key `ca.crt` (`Found(false)` when
    /// it exists without it). A ConfigMap needs `get` on `configmaps`, which ARC's chart Role
    /// does not grant.
    pub async fn registry_ca(&self, ca: &RegistryCa) -> Lookup<bool> {
        let key = crate::spec::build_pod::CA_KEY;
        match ca {
            RegistryCa::Secret(name) => {
                let api = self.secrets();
                let result = retry::call("read the registry CA", || api.get(name)).await;
                lookup(result, |s| {
                    s.data.is_some_and(|d| d.contains_key(key))
                        || s.string_data.is_some_and(|d| d.contains_key(key))
                })
            }
            RegistryCa::ConfigMap(name) => {
                let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.namespace);
                let result = retry::call("read the registry CA", || api.get(name)).await;
                lookup(result, |c| c.data.is_some_and(|d| d.contains_key(key)))
            }
        }
    }

    /// Create `pod` with `dryRun=All`: validation and admission (Pod Security among them) run,
    /// nothing is stored. Needs `create` on pods.
    ///
    /// # Errors
    /// The API server's refusal.
    pub async fn dry_run_pod(&self, pod: &Pod) -> Result<(), Refusal> {
        let api = self.pods();
        let params = PostParams {
            dry_run: true,
            ..PostParams::default()
        };
        retry::call("dry-run a pod", || api.create(&params, pod))
            .await
            .map(|_| ())
            .map_err(refusal)
    }

    /// Create `pod`, wait until it reaches `goal` (failing fast where [`wait::until`] does) or
    /// `timeout` passes, and delete it again, in every case. While it exists it is in the undo
    /// log, so a signal deletes it too. Returns the pod as the API server created it (fields it
    /// does not serve are gone) and what it reached.
    ///
    /// # Errors
    /// [`CheckPodError`]: the create was refused, or the pod did not reach the goal.
    pub async fn run_check_pod(
        &self,
        pod: &Pod,
        goal: &Goal,
        timeout: Duration,
    ) -> Result<(Pod, Reached), CheckPodError> {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let created = self.create_pod(pod).await.map_err(|error| match error {
            super::objects::ObjectError::Create { source, .. } => {
                CheckPodError::Refused(refusal(source))
            }
            other => CheckPodError::Refused(Refusal {
                code: None,
                message: other.to_string(),
            }),
        });
        let created = created?;
        let undo = Undo::DeletePod(name.clone());
        self.undo.push(undo.clone());
        let result = wait::until(self, &name, goal, timeout)
            .await
            .map(|(_, reached)| reached);
        if self.delete_pod(&name).await.is_ok() {
            self.undo.forget(&undo);
        }
        Ok((created, result?))
    }
}

fn refusal(error: kube::Error) -> Refusal {
    match error {
        kube::Error::Api(status) => Refusal {
            code: Some(status.code),
            message: status.message,
        },
        other => Refusal {
            code: None,
            message: other.to_string(),
        },
    }
}
