//! Pod Security admission (the `PodSecurity` validating admission plugin,
//! `staging/src/k8s.io/pod-security-admission`), enforced from a namespace's
//! `pod-security.kubernetes.io/enforce` label on pod creation (dry runs included), with the real
//! API server's refusal: `pods "x" is forbidden: violates PodSecurity "restricted:latest":
//! <reason> (<detail>), ...` (`admission/admission.go` `forbiddenResponse`, the aggregated
//! `ForbiddenDetail` of `policy/checks.go`).
//!
//! Checks are run as `policy/registry.go` orders them (baseline checks by ID, then restricted
//! checks by ID; a restricted check replaces the baseline check it overrides), each with its
//! `ForbiddenReason` and `ForbiddenDetail` text from `policy/check_*.go`.
//!
//! # Simplified (and why)
//! Only the checks that the hook's pods can trip: `hostNamespaces`, `hostPathVolumes`,
//! `privileged`, `capabilities_baseline`, `seccompProfile_baseline` (baseline) and
//! `allowPrivilegeEscalation`, `capabilities_restricted`, `restrictedVolumes`, `runAsNonRoot`,
//! `runAsUser`, `seccompProfile_restricted` (restricted). No AppArmor, SELinux, procMount,
//! sysctls, hostPorts or Windows checks; `enforce-version` is always `latest`; `warn` and
//! `audit` labels are ignored; no exemptions; an unknown level admits everything.

use std::collections::BTreeMap;

use serde_json::Value;

/// The namespace label that sets the enforced level.
pub const ENFORCE_LABEL: &str = "pod-security.kubernetes.io/enforce";

/// `check_capabilities_baseline.go`: capabilities a baseline pod may add.
const BASELINE_CAPABILITIES: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// `check_restrictedVolumes.go`: volume types a restricted pod may use.
const RESTRICTED_VOLUME_TYPES: &[&str] = &[
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

/// The refusal detail (`violates PodSecurity "<level>:latest": ...`) when the namespace's
/// enforced level refuses `pod`; `None` when it is admitted.
pub fn evaluate(labels: &BTreeMap<String, String>, pod: &Value) -> Option<String> {
    let level = labels.get(ENFORCE_LABEL)?.as_str();
    let restricted = match level {
        "restricted" => true,
        "baseline" => false,
        _ => return None,
    };
    let pod = Pod::new(pod);
    let mut found: Vec<(&str, String)> = Vec::new();
    // Baseline checks, by ID (capabilities_baseline and seccompProfile_baseline are overridden
    // by their restricted versions at the restricted level).
    if !restricted {
        push(
            &mut found,
            "non-default capabilities",
            pod.non_default_capabilities(),
        );
    }
    push(&mut found, "host namespaces", pod.host_namespaces());
    push(&mut found, "hostPath volumes", pod.host_path_volumes());
    push(&mut found, "privileged", pod.privileged());
    if !restricted {
        push(&mut found, "seccompProfile", pod.seccomp_baseline());
    }
    if restricted {
        push(
            &mut found,
            "allowPrivilegeEscalation != false",
            pod.allow_privilege_escalation(),
        );
        push(
            &mut found,
            "unrestricted capabilities",
            pod.unrestricted_capabilities(),
        );
        push(
            &mut found,
            "restricted volume types",
            pod.restricted_volumes(),
        );
        push(&mut found, "runAsNonRoot != true", pod.run_as_non_root());
        push(&mut found, "runAsUser=0", pod.run_as_user());
        push(&mut found, "seccompProfile", pod.seccomp_restricted());
    }
    if found.is_empty() {
        return None;
    }
    let detail: Vec<String> = found
        .into_iter()
        .map(|(reason, detail)| {
            if detail.is_empty() {
                reason.to_string()
            } else {
                format!("{reason} ({detail})")
            }
        })
        .collect();
    Some(format!(
        "violates PodSecurity \"{level}:latest\": {}",
        detail.join(", ")
    ))
}

fn push(found: &mut Vec<(&'static str, String)>, reason: &'static str, detail: Option<String>) {
    if let Some(detail) = detail {
        found.push((reason, detail));
    }
}

/// `pluralize` and `joinQuote` of `policy/helpers.go`.
fn containers(names: &[String]) -> String {
    let word = if names.len() == 1 {
        "container"
    } else {
        "containers"
    };
    format!("{word} {}", join_quote(names))
}

fn join_quote(items: &[String]) -> String {
    items
        .iter()
        .map(|i| format!("\"{i}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The parts of a pod the checks read.
struct Pod<'a> {
    spec: &'a Value,
    /// initContainers, containers, ephemeralContainers, in that order (`visitContainers`).
    containers: Vec<&'a Value>,
}

impl<'a> Pod<'a> {
    fn new(pod: &'a Value) -> Self {
        let spec = &pod["spec"];
        let containers = ["initContainers", "containers", "ephemeralContainers"]
            .iter()
            .filter_map(|group| spec[group].as_array())
            .flatten()
            .collect();
        Pod { spec, containers }
    }

    fn name(container: &Value) -> String {
        container["name"].as_str().unwrap_or_default().to_string()
    }

    /// Names of the containers for which `bad` holds.
    fn where_(&self, bad: impl Fn(&Value) -> bool) -> Vec<String> {
        self.containers
            .iter()
            .filter(|c| bad(c))
            .map(|c| Self::name(c))
            .collect()
    }

    fn host_namespaces(&self) -> Option<String> {
        let set: Vec<&str> = ["hostNetwork", "hostPID", "hostIPC"]
            .into_iter()
            .filter(|f| self.spec[f].as_bool() == Some(true))
            .collect();
        (!set.is_empty()).then(|| {
            set.iter()
                .map(|f| format!("{f}=true"))
                .collect::<Vec<_>>()
                .join(", ")
        })
    }

    fn volumes_where(&self, bad: impl Fn(&Value) -> Option<String>) -> Vec<(String, String)> {
        self.spec["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| Some((v["name"].as_str()?.to_string(), bad(v)?)))
            .collect()
    }

    fn host_path_volumes(&self) -> Option<String> {
        let names: Vec<String> = self
            .volumes_where(|v| v["hostPath"].is_object().then(String::new))
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        (!names.is_empty()).then(|| {
            let word = if names.len() == 1 {
                "volume"
            } else {
                "volumes"
            };
            format!("{word} {}", join_quote(&names))
        })
    }

    fn restricted_volumes(&self) -> Option<String> {
        let bad = self.volumes_where(|v| {
            let kind = v
                .as_object()?
                .keys()
                .find(|k| k.as_str() != "name")?
                .clone();
            (!RESTRICTED_VOLUME_TYPES.contains(&kind.as_str())).then_some(kind)
        });
        (!bad.is_empty()).then(|| {
            bad.iter()
                .map(|(name, kind)| {
                    format!("volume \"{name}\" uses restricted volume type \"{kind}\"")
                })
                .collect::<Vec<_>>()
                .join(", ")
        })
    }

    fn privileged(&self) -> Option<String> {
        let names = self.where_(|c| c["securityContext"]["privileged"].as_bool() == Some(true));
        (!names.is_empty()).then(|| {
            format!(
                "{} must not set securityContext.privileged=true",
                containers(&names)
            )
        })
    }

    fn added(container: &Value) -> Vec<String> {
        container["securityContext"]["capabilities"]["add"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c.as_str().map(str::to_string))
            .collect()
    }

    fn non_default_capabilities(&self) -> Option<String> {
        let mut forbidden = std::collections::BTreeSet::new();
        let names = self.where_(|c| {
            let bad: Vec<String> = Self::added(c)
                .into_iter()
                .filter(|cap| !BASELINE_CAPABILITIES.contains(&cap.as_str()))
                .collect();
            !bad.is_empty()
        });
        for c in &self.containers {
            for cap in Self::added(c) {
                if !BASELINE_CAPABILITIES.contains(&cap.as_str()) {
                    forbidden.insert(cap);
                }
            }
        }
        (!names.is_empty()).then(|| {
            format!(
                "{} must not include {} in securityContext.capabilities.add",
                containers(&names),
                join_quote(&forbidden.into_iter().collect::<Vec<_>>())
            )
        })
    }

    fn unrestricted_capabilities(&self) -> Option<String> {
        let missing_drop = self.where_(|c| {
            !c["securityContext"]["capabilities"]["drop"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|d| d.as_str() == Some("ALL"))
        });
        let mut forbidden = std::collections::BTreeSet::new();
        for c in &self.containers {
            for cap in Self::added(c) {
                if cap != "NET_BIND_SERVICE" {
                    forbidden.insert(cap);
                }
            }
        }
        let adding = self.where_(|c| Self::added(c).iter().any(|cap| cap != "NET_BIND_SERVICE"));
        let mut details = Vec::new();
        if !missing_drop.is_empty() {
            details.push(format!(
                "{} must set securityContext.capabilities.drop=[\"ALL\"]",
                containers(&missing_drop)
            ));
        }
        if !adding.is_empty() {
            details.push(format!(
                "{} must not include {} in securityContext.capabilities.add",
                containers(&adding),
                join_quote(&forbidden.into_iter().collect::<Vec<_>>())
            ));
        }
        (!details.is_empty()).then(|| details.join("; "))
    }

    fn allow_privilege_escalation(&self) -> Option<String> {
        let names = self
            .where_(|c| c["securityContext"]["allowPrivilegeEscalation"].as_bool() != Some(false));
        (!names.is_empty()).then(|| {
            format!(
                "{} must set securityContext.allowPrivilegeEscalation=false",
                containers(&names)
            )
        })
    }

    fn run_as_non_root(&self) -> Option<String> {
        let pod = self.spec["securityContext"]["runAsNonRoot"].as_bool();
        let explicit_false =
            self.where_(|c| c["securityContext"]["runAsNonRoot"].as_bool() == Some(false));
        let unset =
            self.where_(|c| c["securityContext"]["runAsNonRoot"].is_null() && pod != Some(true));
        let mut details = Vec::new();
        if pod == Some(false) {
            details.push("pod must not set securityContext.runAsNonRoot=false".to_string());
        }
        if !explicit_false.is_empty() {
            details.push(format!(
                "{} must not set securityContext.runAsNonRoot=false",
                containers(&explicit_false)
            ));
        }
        if !unset.is_empty() && pod.is_none() {
            details.push(format!(
                "pod or {} must set securityContext.runAsNonRoot=true",
                containers(&unset)
            ));
        }
        (!details.is_empty()).then(|| details.join("; "))
    }

    fn run_as_user(&self) -> Option<String> {
        let mut details = Vec::new();
        if self.spec["securityContext"]["runAsUser"].as_i64() == Some(0) {
            details.push("pod must not set runAsUser=0".to_string());
        }
        let names = self.where_(|c| c["securityContext"]["runAsUser"].as_i64() == Some(0));
        if !names.is_empty() {
            details.push(format!("{} must not set runAsUser=0", containers(&names)));
        }
        (!details.is_empty()).then(|| details.join("; "))
    }

    fn seccomp_type(value: &Value) -> Option<&str> {
        value["securityContext"]["seccompProfile"]["type"].as_str()
    }

    fn seccomp_baseline(&self) -> Option<String> {
        let mut details = Vec::new();
        if Self::seccomp_type(self.spec) == Some("Unconfined") {
            details.push(
                "pod must not set securityContext.seccompProfile.type to \"Unconfined\""
                    .to_string(),
            );
        }
        let names = self.where_(|c| Self::seccomp_type(c) == Some("Unconfined"));
        if !names.is_empty() {
            details.push(format!(
                "{} must not set securityContext.seccompProfile.type to \"Unconfined\"",
                containers(&names)
            ));
        }
        (!details.is_empty()).then(|| details.join("; "))
    }

    fn seccomp_restricted(&self) -> Option<String> {
        let allowed = |t: Option<&str>| matches!(t, Some("RuntimeDefault" | "Localhost"));
        let pod = Self::seccomp_type(self.spec);
        let mut details = Vec::new();
        if pod.is_some() && !allowed(pod) {
            details.push(format!(
                "pod must not set securityContext.seccompProfile.type to \"{}\"",
                pod.unwrap_or_default()
            ));
        }
        let bad = self.where_(|c| {
            let own = Self::seccomp_type(c);
            own.is_some() && !allowed(own)
        });
        if !bad.is_empty() {
            let kind = bad
                .first()
                .and_then(|n| {
                    self.containers
                        .iter()
                        .find(|c| &Self::name(c) == n)
                        .and_then(|c| Self::seccomp_type(c))
                })
                .unwrap_or_default();
            details.push(format!(
                "{} must not set securityContext.seccompProfile.type to \"{kind}\"",
                containers(&bad)
            ));
        }
        if !allowed(pod) {
            let unset = self.where_(|c| Self::seccomp_type(c).is_none());
            if !unset.is_empty() && pod.is_none() {
                details.push(format!(
                    "pod or {} must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\"",
                    containers(&unset)
                ));
            }
        }
        (!details.is_empty()).then(|| details.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(level: &str) -> BTreeMap<String, String> {
        BTreeMap::from([(ENFORCE_LABEL.to_string(), level.to_string())])
    }

    /// The `rootless` build pod's security context (docs/user/build-pod-security.md).
    fn rootless() -> Value {
        json!({"spec": {"containers": [{"name": "build", "securityContext": {
            "runAsUser": 1000, "runAsGroup": 1000, "runAsNonRoot": true,
            "allowPrivilegeEscalation": true,
            "capabilities": {"drop": ["ALL"], "add": ["SETUID", "SETGID"]}}}],
            "volumes": [{"name": "storage", "emptyDir": {}}]}})
    }

    #[test]
    fn restricted_refuses_the_rootless_build_pod_with_the_api_servers_words() {
        assert_eq!(
            evaluate(&labels("restricted"), &rootless()).unwrap(),
            r#"violates PodSecurity "restricted:latest": allowPrivilegeEscalation != false (container "build" must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container "build" must not include "SETGID", "SETUID" in securityContext.capabilities.add), seccompProfile (pod or container "build" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")"#
        );
        assert_eq!(evaluate(&labels("baseline"), &rootless()), None);
        assert_eq!(evaluate(&labels("privileged"), &rootless()), None);
        assert_eq!(evaluate(&BTreeMap::new(), &rootless()), None);
    }

    #[test]
    fn a_plain_pod_under_restricted_gets_the_common_message() {
        let pod = json!({"spec": {"containers": [{"name": "nginx"}]}});
        assert_eq!(
            evaluate(&labels("restricted"), &pod).unwrap(),
            r#"violates PodSecurity "restricted:latest": allowPrivilegeEscalation != false (container "nginx" must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container "nginx" must set securityContext.capabilities.drop=["ALL"]), runAsNonRoot != true (pod or container "nginx" must set securityContext.runAsNonRoot=true), seccompProfile (pod or container "nginx" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")"#
        );
    }

    #[test]
    fn baseline_refuses_privileged_and_host_paths() {
        let pod = json!({"spec": {"hostNetwork": true, "containers": [{"name": "build",
            "securityContext": {"privileged": true, "capabilities": {"add": ["SYS_ADMIN"]}}}],
            "volumes": [{"name": "docker", "hostPath": {"path": "/var/run/docker.sock"}}]}});
        assert_eq!(
            evaluate(&labels("baseline"), &pod).unwrap(),
            r#"violates PodSecurity "baseline:latest": non-default capabilities (container "build" must not include "SYS_ADMIN" in securityContext.capabilities.add), host namespaces (hostNetwork=true), hostPath volumes (volume "docker"), privileged (container "build" must not set securityContext.privileged=true)"#
        );
    }
}
