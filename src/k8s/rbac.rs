//! Pre-flight permission check: ask the API server (`SelfSubjectAccessReview`) whether our
//! service account may do everything the hook does, and name every missing verb at once, with
//! the Role that grants them (docs/user/rbac.md), instead of failing half-way through a job.

use std::fmt;

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use kube::Api;
use kube::api::PostParams;

use super::Context;

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

/// What the hook needs: the TypeScript hook's Role (pods get/list/create/delete, pods/exec
/// get/create, pods/log get/list/watch, secrets get/list/create/delete) plus `watch` on pods,
/// because we wait by watch instead of polling.
pub const REQUIRED: &[Permission] = &[
    p("pods", "", "get"),
    p("pods", "", "list"),
    p("pods", "", "watch"),
    p("pods", "", "create"),
    p("pods", "", "delete"),
    p("pods", "exec", "get"),
    p("pods", "exec", "create"),
    p("pods", "log", "get"),
    p("pods", "log", "list"),
    p("pods", "log", "watch"),
    p("secrets", "", "get"),
    p("secrets", "", "list"),
    p("secrets", "", "create"),
    p("secrets", "", "delete"),
];

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

impl Context {
    /// Check every permission in [`REQUIRED`], concurrently.
    ///
    /// # Errors
    /// [`RbacError::Missing`] listing every denied verb; [`RbacError::Review`] when the API
    /// cannot answer.
    pub async fn check_permissions(&self) -> Result<(), RbacError> {
        let api: Api<SelfSubjectAccessReview> = Api::all(self.client.clone());
        let reviews = REQUIRED.iter().map(|perm| {
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
                let answer = api.create(&PostParams::default(), &review).await?;
                Ok::<_, kube::Error>((*perm, answer.status.is_some_and(|s| s.allowed)))
            }
        });
        let mut missing = Vec::new();
        for result in futures::future::join_all(reviews).await {
            let (perm, allowed) = result.map_err(|source| RbacError::Review {
                namespace: self.namespace.clone(),
                source,
            })?;
            if !allowed {
                missing.push(perm);
            }
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(RbacError::Missing {
                namespace: self.namespace.clone(),
                missing,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

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
    fn the_documented_role_grants_every_required_permission() {
        let role = include_str!("../../docs/user/rbac-role.yaml");
        // The file holds the Role, then its RoleBinding.
        let first = serde_yaml_ng::Deserializer::from_str(role)
            .next()
            .expect("a document");
        let role = serde_yaml_ng::Value::deserialize(first).expect("valid YAML");
        let rules = role["rules"].as_sequence().expect("rules");
        for perm in REQUIRED {
            let resource = if perm.subresource.is_empty() {
                perm.resource.to_owned()
            } else {
                format!("{}/{}", perm.resource, perm.subresource)
            };
            let granted = rules.iter().any(|rule| {
                let has = |key: &str, want: &str| {
                    rule[key]
                        .as_sequence()
                        .is_some_and(|v| v.iter().any(|x| x.as_str() == Some(want)))
                };
                has("resources", &resource) && has("verbs", perm.verb)
            });
            assert!(granted, "docs/user/rbac-role.yaml does not grant {perm}");
        }
    }
}
