//! The Role documents against what the hook asks for: `docs/user/rbac-role.yaml` is ARC's chart
//! Role (`tests/fixtures/rbac/arc-kube-mode-role.yaml`, the Role the fake API server authorizes
//! the hook with), and both grant every permission of `k8s::rbac::REQUIRED`. The Roles are read
//! by the fake's own authorizer, so the tests and the authorizer cannot disagree on a Role.

use runner_k8s_hook::k8s::rbac::{CHART_ROLE, REQUIRED};

use crate::support::fake_api::{CHART_ROLE_YAML, Policy};

const DOCS_ROLE: &str = include_str!("../../docs/user/rbac-role.yaml");

/// `pods/exec`-style resource name of a permission.
fn resource(perm: &runner_k8s_hook::k8s::rbac::Permission) -> String {
    if perm.subresource.is_empty() {
        perm.resource.to_owned()
    } else {
        format!("{}/{}", perm.resource, perm.subresource)
    }
}

#[test]
fn the_documented_role_is_the_chart_role_and_grants_what_jobs_need() {
    let docs = Policy::from_role(DOCS_ROLE).rules().expect("a Role");
    let chart = Policy::from_role(CHART_ROLE_YAML).rules().expect("a Role");
    let core = |pairs: &[(String, String)]| {
        let mut v: Vec<_> = pairs.iter().filter(|(r, _)| r != "jobs").cloned().collect();
        v.sort();
        v
    };
    assert_eq!(
        core(&docs),
        core(&chart),
        "docs/user/rbac-role.yaml is not ARC's Role"
    );
    let mut line = String::new();
    for (resource, verbs) in [
        (
            "pods",
            vec!["get", "list", "create", "delete", "update", "patch"],
        ),
        ("pods/exec", vec!["get", "create"]),
        ("pods/log", vec!["get", "list", "watch"]),
        ("secrets", vec!["get", "list", "create", "delete"]),
    ] {
        for verb in &verbs {
            assert!(chart.contains(&(resource.to_owned(), (*verb).to_owned())));
        }
        if !line.is_empty() {
            line.push_str("; ");
        }
        line.push_str(&format!("{resource}: {}", verbs.join(", ")));
    }
    assert_eq!(CHART_ROLE, line);
    for perm in REQUIRED {
        assert!(
            chart.contains(&(resource(perm), perm.verb.to_owned())),
            "ARC's Role does not grant {perm}"
        );
    }
    assert!(!chart.contains(&("pods".to_owned(), "watch".to_owned())));
}

#[test]
fn the_documented_role_grants_every_required_permission() {
    let docs = Policy::from_role(DOCS_ROLE);
    for perm in REQUIRED {
        assert!(
            docs.allows(&resource(perm), perm.verb),
            "docs/user/rbac-role.yaml does not grant {perm}"
        );
    }
}
