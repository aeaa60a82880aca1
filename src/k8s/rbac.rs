//! Pre-flight permission check: ask the API server (`SelfSubjectAccessReview`) whether our
//! service account may do everything the hook does, and name every missing verb at once, with
//! the Role that grants them (docs/user/rbac.md), instead of failing half-way through a job.
//! Owns the list of what the hook needs ([`REQUIRED`]); changes nothing in the cluster.

use std::fmt;

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use kube::Api;
use kube::api::PostParams;

use super::Session;

/// One permission: a verb on a resource (with subresource) in our namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Permission {
    /// Resource, e.g. `pods`.
    pub resource: &'static str,
    /// Subresource, e.g. `exec`, or empty.
    pub subresource: &'static str,
    /// Verb, e.g. `create`.
    pub verb: &'static str,
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.subresource.is_empty() {
            write!(f, "{} {}", self.verb, self.resource)
        } else {
            write!(f, "{} {}/{}", self.verb, self.resource, self.subresource)
        }
    }
}

const fn p(resource: &'static str, subresource: &'static str, verb: &'static str) -> Permission {
    Permission {
        resource,
        subresource,
        verb,
    }
}

/// What the commands of a job use, and nothing more: `get` on pods (the runner pod; waiting by
/// polling), `list` and `delete` (clean-up by label), `create` (job, step and build pods);
/// `pods/exec` `get` and `create` (a WebSocket exec is a GET: API servers up to 1.34 authorize
/// it as `get`, 1.35 and later also as `create`); `pods/log` `get` (container-step and build
/// logs, followed); `secrets` `get`, `list`, `create`, `delete` (pull and step-environment
/// secrets; `get` reads one back when a create's answer was lost).
/// `prepare_job` checks them all, so a job fails before it starts rather than at its first
/// container step. ARC's `gha-runner-scale-set` chart grants all of them to the runner's
/// service account in `containerMode: kubernetes` (see [`CHART_ROLE`]).
///
/// `watch` on pods is not needed: it is used when granted ([`WATCH_PODS`]), and pods are
/// polled otherwise.
pub const REQUIRED: &[Permission] = &[
    p("pods", "", "get"),
    p("pods", "", "list"),
    p("pods", "", "create"),
    p("pods", "", "delete"),
    p("pods", "exec", "get"),
    p("pods", "exec", "create"),
    p("pods", "log", "get"),
    p("secrets", "", "get"),
    p("secrets", "", "list"),
    p("secrets", "", "create"),
    p("secrets", "", "delete"),
];

/// Watching pods: faster and lighter than polling, used when granted.
pub const WATCH_PODS: Permission = p("pods", "", "watch");

/// The rules of the Role that ARC's `gha-runner-scale-set` chart gives the runner's service
/// account in both Kubernetes container modes (`templates/kube_mode_role.yaml`), as one line
/// for error hints. `docs/user/rbac-role.yaml` holds the same Role.
pub const CHART_ROLE: &str = "pods: get, list, create, delete, update, patch; pods/exec: get, create; pods/log: get, list, watch; secrets: get, list, create, delete";

/// The pre-flight check failed.
#[derive(Debug, thiserror::Error)]
pub enum RbacError {
    /// Some permissions are denied.
    #[error(
        "the service account may not {} in namespace `{namespace}`",
        missing.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
    )]
    Missing {
        /// Namespace checked.
        namespace: String,
        /// What is denied.
        missing: Vec<Permission>,
    },
    /// The review itself failed.
    #[error("failed to check the service account's permissions in namespace `{namespace}`")]
    Review {
        /// Namespace checked.
        namespace: String,
        /// kube's error.
        #[source]
        source: kube::Error,
    },
}

/// The hook commands that use `permission` (the runner's names), for a check that says which
/// command a missing verb would break. Every entry of [`REQUIRED`] has at least one.
pub fn needed_by(permission: &Permission) -> &'static [&'static str] {
    const PREPARE: &str = "prepare_job";
    const SCRIPT: &str = "run_script_step";
    const CONTAINER: &str = "run_container_step";
    const CLEANUP: &str = "cleanup_job";
    match (permission.resource, permission.subresource, permission.verb) {
        // The runner pod, and waiting for job, step and build pods by polling.
        ("pods", "", "get") => &[PREPARE, CONTAINER],
        // Leftovers of an earlier job, and clean-up by label.
        ("pods", "", "list" | "delete") | ("secrets", "", "list" | "delete") => &[PREPARE, CLEANUP],
        // Job pod; step and build pods.
        ("pods", "", "create") => &[PREPARE, CONTAINER],
        // Copy mode fills the job pod; every script step; copy-mode step and build pods.
        ("pods", "exec", _) => &[PREPARE, SCRIPT, CONTAINER],
        // Container-step and build logs.
        ("pods", "log", "get") => &[CONTAINER],
        // Pull secrets and step environments (`get` reads one back after a lost answer).
        ("secrets", "", "create" | "get") => &[PREPARE, CONTAINER],
        _ => &[],
    }
}

/// The rules a Role needs so that `missing` is granted, as YAML lines to add under `rules:`
/// (one rule per resource, in the order of `missing`).
pub fn role_rules(missing: &[Permission]) -> String {
    let mut rules: Vec<(String, Vec<&str>)> = Vec::new();
    for perm in missing {
        let resource = if perm.subresource.is_empty() {
            perm.resource.to_owned()
        } else {
            format!("{}/{}", perm.resource, perm.subresource)
        };
        match rules.iter_mut().find(|(r, _)| *r == resource) {
            Some((_, verbs)) => verbs.push(perm.verb),
            None => rules.push((resource, vec![perm.verb])),
        }
    }
    rules
        .iter()
        .map(|(resource, verbs)| {
            let verbs = verbs
                .iter()
                .map(|v| format!("\"{v}\""))
                .collect::<Vec<_>>()
                .join(", ");
            format!("- apiGroups: [\"\"]\n  resources: [\"{resource}\"]\n  verbs: [{verbs}]\n")
        })
        .collect()
}

impl Session {
    /// Check every permission in [`REQUIRED`], and whether pods may be watched (remembered in
    /// [`Session::watch`]), with concurrent reviews.
    ///
    /// # Errors
    /// [`RbacError::Missing`] listing every denied verb; [`RbacError::Review`] when the API
    /// cannot answer.
    pub async fn check_permissions(&self) -> Result<(), RbacError> {
        let wanted: Vec<Permission> = REQUIRED.iter().copied().chain([WATCH_PODS]).collect();
        let answers = self.review(&wanted).await?;
        let missing: Vec<Permission> = answers
            .into_iter()
            .filter(|(perm, allowed)| *perm != WATCH_PODS && !allowed)
            .map(|(perm, _)| perm)
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(RbacError::Missing {
                namespace: self.namespace.clone(),
                missing,
            })
        }
    }

    /// Ask whether each of `wanted` is granted in our namespace (one `SelfSubjectAccessReview`
    /// each, sent together), in the order given. What it learns about [`WATCH_PODS`] is
    /// remembered in [`Session::watch`].
    ///
    /// # Errors
    /// [`RbacError::Review`] when the API cannot answer.
    pub async fn review(
        &self,
        wanted: &[Permission],
    ) -> Result<Vec<(Permission, bool)>, RbacError> {
        let api: Api<SelfSubjectAccessReview> = Api::all(self.client.clone());
        let reviews = wanted.iter().map(|perm| {
            let api = api.clone();
            let review = SelfSubjectAccessReview {
                spec: SelfSubjectAccessReviewSpec {
                    resource_attributes: Some(ResourceAttributes {
                        namespace: Some(self.namespace.clone()),
                        resource: Some(perm.resource.to_owned()),
                        subresource: (!perm.subresource.is_empty())
                            .then(|| perm.subresource.to_owned()),
                        verb: Some(perm.verb.to_owned()),
                        ..ResourceAttributes::default()
                    }),
                    ..SelfSubjectAccessReviewSpec::default()
                },
                ..SelfSubjectAccessReview::default()
            };
            async move {
                let params = PostParams::default();
                let answer =
                    super::retry::call("review permissions", || api.create(&params, &review))
                        .await?;
                Ok::<_, kube::Error>((*perm, answer.status.is_some_and(|s| s.allowed)))
            }
        });
        let mut answers = Vec::new();
        for result in futures::future::join_all(reviews).await {
            let (perm, allowed) = result.map_err(|source| RbacError::Review {
                namespace: self.namespace.clone(),
                source,
            })?;
            if perm == WATCH_PODS {
                self.watch.learn(allowed);
            }
            answers.push((perm, allowed));
        }
        Ok(answers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_permissions_are_listed_in_one_sentence() {
        let err = RbacError::Missing {
            namespace: "arc-runners".into(),
            missing: vec![p("pods", "exec", "create"), p("secrets", "", "delete")],
        };
        assert_eq!(
            err.to_string(),
            "the service account may not create pods/exec, delete secrets in namespace `arc-runners`"
        );
    }

    #[test]
    fn every_required_permission_names_the_commands_that_use_it() {
        for perm in REQUIRED {
            assert!(!needed_by(perm).is_empty(), "{perm}");
        }
        assert!(needed_by(&WATCH_PODS).is_empty());
    }

    #[test]
    fn missing_permissions_become_role_rules() {
        let rules = role_rules(&[
            p("pods", "exec", "create"),
            p("secrets", "", "delete"),
            p("pods", "exec", "get"),
        ]);
        assert_eq!(
            rules,
            "- apiGroups: [\"\"]\n  resources: [\"pods/exec\"]\n  verbs: [\"create\", \"get\"]\n- apiGroups: [\"\"]\n  resources: [\"secrets\"]\n  verbs: [\"delete\"]\n"
        );
    }
}
