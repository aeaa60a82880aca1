//! Create/update validation of the resources the fake serves, producing the API server's field
//! errors verbatim. Copies `pkg/apis/core/validation/validation.go` (`ValidatePodCreate`,
//! `ValidateSecret`, `ValidatePersistentVolumeClaim`, `ValidateConfigMap`) and the name/label
//! checks of `staging/src/k8s.io/apimachinery/pkg/util/validation/validation.go`. Only the rules
//! a hook can trip are here; see `mod.rs` for what is left out.

use std::collections::{BTreeMap, HashSet};

use k8s_openapi::api::core::v1::{Container, Pod, Secret};
use serde_json::Value;

use super::status::FieldError;

const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
const QUALIFIED_NAME_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const CONFIG_KEY_MSG: &str = "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')";
const ENV_NAME_MSG: &str = "a valid environment variable name must consist only of printable ASCII characters other than '='";

/// `IsDNS1123Label`: the error details (empty when valid).
pub fn dns1123_label(value: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if value.len() > 63 {
        errors.push("must be no more than 63 characters".to_string());
    }
    let bytes = value.as_bytes();
    let ok = !bytes.is_empty()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-';
    if !ok {
        errors.push(DNS1123_LABEL_MSG.to_string());
    }
    errors
}

/// `IsDNS1123Subdomain`: the error details (empty when valid).
pub fn dns1123_subdomain(value: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if value.len() > 253 {
        errors.push("must be no more than 253 characters".to_string());
    }
    let ok = !value.is_empty()
        && value.split('.').all(|part| {
            let b = part.as_bytes();
            !b.is_empty()
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
                && b[0] != b'-'
                && b[b.len() - 1] != b'-'
        });
    if !ok {
        errors.push(DNS1123_SUBDOMAIN_MSG.to_string());
    }
    errors
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`
fn is_qualified_name_part(value: &str) -> bool {
    let b = value.as_bytes();
    !b.is_empty()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// `ValidateObjectMeta` name rule for resources named as DNS subdomains (pods, secrets, ...).
pub fn name(name: &str) -> Vec<FieldError> {
    if name.is_empty() {
        return vec![FieldError::required(
            "metadata.name",
            "name or generateName is required",
        )];
    }
    dns1123_subdomain(name)
        .into_iter()
        .map(|detail| FieldError::invalid("metadata.name", name, detail))
        .collect()
}

/// `ValidateLabels`: qualified keys (optional DNS-subdomain prefix), values ≤63 characters.
pub fn labels(labels: &BTreeMap<String, String>, path: &str) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for (key, value) in labels {
        let (prefix, name) = match key.split_once('/') {
            Some((p, n)) => (Some(p), n),
            None => (None, key.as_str()),
        };
        if let Some(prefix) = prefix {
            for detail in dns1123_subdomain(prefix) {
                errors.push(FieldError::invalid(
                    path,
                    key,
                    format!("prefix part {detail}"),
                ));
            }
        }
        if name.len() > 63 {
            errors.push(FieldError::invalid(
                path,
                key,
                "name part must be no more than 63 characters",
            ));
        }
        if !is_qualified_name_part(name) {
            errors.push(FieldError::invalid(path, key, QUALIFIED_NAME_MSG));
        }
        if value.len() > 63 {
            errors.push(FieldError::invalid(
                path,
                value,
                "must be no more than 63 characters",
            ));
        }
        if !value.is_empty() && !is_qualified_name_part(value) {
            errors.push(FieldError::invalid(path, value, LABEL_VALUE_MSG));
        }
    }
    errors
}

fn metadata_labels(object: &Value) -> BTreeMap<String, String> {
    super::selectors::object_labels(object)
}

/// `ValidatePodCreate` (the parts that matter to a hook): name, labels, containers (names,
/// images, env names, volume mounts), volumes, restart policy.
pub fn pod(object: &Value, pod: &Pod) -> Vec<FieldError> {
    let mut errors = name(pod.metadata.name.as_deref().unwrap_or_default());
    errors.extend(labels(&metadata_labels(object), "metadata.labels"));
    let Some(spec) = pod.spec.as_ref() else {
        errors.push(FieldError::required("spec", ""));
        return errors;
    };

    let mut volume_names = HashSet::new();
    for (i, volume) in spec.volumes.iter().flatten().enumerate() {
        let path = format!("spec.volumes[{i}]");
        for detail in dns1123_label(&volume.name) {
            errors.push(FieldError::invalid(
                format!("{path}.name"),
                &volume.name,
                detail,
            ));
        }
        if !volume_names.insert(volume.name.clone()) {
            errors.push(FieldError::duplicate(format!("{path}.name"), &volume.name));
        }
        let sources = [
            volume.empty_dir.is_some(),
            volume.secret.is_some(),
            volume.config_map.is_some(),
            volume.persistent_volume_claim.is_some(),
            volume.host_path.is_some(),
            volume.projected.is_some(),
            volume.downward_api.is_some(),
            volume.ephemeral.is_some(),
            volume.csi.is_some(),
            volume.nfs.is_some(),
            volume.image.is_some(),
        ];
        if !sources.iter().any(|s| *s) {
            errors.push(FieldError::required(
                path.clone(),
                "must specify a volume type",
            ));
        }
    }

    if spec.containers.is_empty() {
        errors.push(FieldError::required("spec.containers", ""));
    }
    let mut container_names = HashSet::new();
    let groups: [(&str, &[Container]); 2] = [
        (
            "spec.initContainers",
            spec.init_containers.as_deref().unwrap_or_default(),
        ),
        ("spec.containers", &spec.containers),
    ];
    for (group, containers) in groups {
        for (i, container) in containers.iter().enumerate() {
            let path = format!("{group}[{i}]");
            errors.extend(self::container(
                &path,
                container,
                &volume_names,
                &mut container_names,
            ));
        }
    }

    if let Some(policy) = spec.restart_policy.as_deref()
        && !matches!(policy, "Always" | "OnFailure" | "Never")
    {
        errors.push(FieldError::not_supported(
            "spec.restartPolicy",
            policy,
            &["Always", "OnFailure", "Never"],
        ));
    }
    errors
}

fn container(
    path: &str,
    container: &Container,
    volume_names: &HashSet<String>,
    seen_names: &mut HashSet<String>,
) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let name_path = format!("{path}.name");
    if container.name.is_empty() {
        errors.push(FieldError::required(name_path, ""));
    } else {
        for detail in dns1123_label(&container.name) {
            errors.push(FieldError::invalid(&name_path, &container.name, detail));
        }
        if !seen_names.insert(container.name.clone()) {
            errors.push(FieldError::duplicate(name_path, &container.name));
        }
    }
    if container
        .image
        .as_deref()
        .unwrap_or_default()
        .trim()
        .is_empty()
    {
        errors.push(FieldError::required(format!("{path}.image"), ""));
    }
    for (i, env) in container.env.iter().flatten().enumerate() {
        let env_path = format!("{path}.env[{i}].name");
        if env.name.is_empty() {
            errors.push(FieldError::required(env_path, ""));
        } else if env
            .name
            .chars()
            .any(|c| !(' '..='~').contains(&c) || c == '=')
        {
            // RelaxedEnvironmentVariableValidation, on by default since 1.32.
            errors.push(FieldError::invalid(env_path, &env.name, ENV_NAME_MSG));
        }
    }
    let mut mount_paths = HashSet::new();
    for (i, mount) in container.volume_mounts.iter().flatten().enumerate() {
        let mount_path = format!("{path}.volumeMounts[{i}]");
        if mount.name.is_empty() {
            errors.push(FieldError::required(format!("{mount_path}.name"), ""));
        } else if !volume_names.contains(&mount.name) {
            errors.push(FieldError::not_found(
                format!("{mount_path}.name"),
                &mount.name,
            ));
        }
        if mount.mount_path.is_empty() {
            errors.push(FieldError::required(format!("{mount_path}.mountPath"), ""));
        } else if !mount_paths.insert(mount.mount_path.clone()) {
            errors.push(FieldError::invalid(
                format!("{mount_path}.mountPath"),
                &mount.mount_path,
                "must be unique",
            ));
        }
        if let Some(sub_path) = mount.sub_path.as_deref().filter(|s| !s.is_empty()) {
            let field = format!("{mount_path}.subPath");
            if sub_path.starts_with('/') {
                errors.push(FieldError::invalid(
                    field,
                    sub_path,
                    "must be a relative path",
                ));
            } else if sub_path.split('/').any(|part| part == "..") {
                errors.push(FieldError::invalid(
                    field,
                    sub_path,
                    "must not contain '..'",
                ));
            }
        }
    }
    errors
}

/// `ValidateSecret`: name, labels, data keys, and the keys a typed secret must carry
/// (`kubernetes.io/dockerconfigjson` needs a `.dockerconfigjson` that is JSON).
pub fn secret(object: &Value, secret: &Secret) -> Vec<FieldError> {
    let mut errors = name(secret.metadata.name.as_deref().unwrap_or_default());
    errors.extend(labels(&metadata_labels(object), "metadata.labels"));
    let data = secret.data.clone().unwrap_or_default();
    for key in data.keys() {
        if !is_config_key(key) {
            errors.push(FieldError::invalid(
                format!("data[{key}]"),
                key,
                CONFIG_KEY_MSG,
            ));
        }
    }
    let typed_key = match secret.type_.as_deref() {
        Some("kubernetes.io/dockerconfigjson") => Some(".dockerconfigjson"),
        Some("kubernetes.io/dockercfg") => Some(".dockercfg"),
        _ => None,
    };
    if let Some(key) = typed_key {
        match data.get(key) {
            None => errors.push(FieldError::required(format!("data[{key}]"), "")),
            Some(bytes) => {
                if let Err(err) = serde_json::from_slice::<Value>(&bytes.0) {
                    errors.push(FieldError::invalid(
                        format!("data[{key}]"),
                        "<secret contents redacted>",
                        err.to_string(),
                    ));
                }
            }
        }
    }
    errors
}

/// `ValidateSecretUpdate`: an immutable secret keeps its data and stays immutable; the type
/// never changes.
pub fn secret_update(old: &Secret, new: &Secret) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if old.type_.as_deref().unwrap_or("Opaque") != new.type_.as_deref().unwrap_or("Opaque") {
        errors.push(FieldError::invalid(
            "type",
            new.type_.as_deref().unwrap_or_default(),
            "field is immutable",
        ));
    }
    if old.immutable == Some(true) {
        if new.immutable != Some(true) {
            errors.push(FieldError::forbidden(
                "immutable",
                "field is immutable when `immutable` is set",
            ));
        }
        if old.data != new.data {
            errors.push(FieldError::forbidden(
                "data",
                "field is immutable when `immutable` is set",
            ));
        }
    }
    errors
}

/// `[-._a-zA-Z0-9]+`
fn is_config_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && key != "."
        && key != ".."
}

/// `ValidatePersistentVolumeClaim`: name, access modes and a storage request.
pub fn pvc(object: &Value) -> Vec<FieldError> {
    let mut errors = name(object["metadata"]["name"].as_str().unwrap_or_default());
    errors.extend(labels(&metadata_labels(object), "metadata.labels"));
    let modes = object["spec"]["accessModes"].as_array();
    if modes.is_none_or(|m| m.is_empty()) {
        errors.push(FieldError::required(
            "spec.accessModes",
            "at least 1 access mode is required",
        ));
    }
    if object["spec"]["resources"]["requests"]["storage"].is_null() {
        errors.push(FieldError::required("spec.resources[storage]", ""));
    }
    errors
}

/// `ValidateConfigMap` and the generic rule for other named objects: name, labels, keys.
pub fn generic(object: &Value, check_data_keys: bool) -> Vec<FieldError> {
    let mut errors = name(object["metadata"]["name"].as_str().unwrap_or_default());
    errors.extend(labels(&metadata_labels(object), "metadata.labels"));
    if check_data_keys {
        for field in ["data", "binaryData"] {
            for key in object[field].as_object().into_iter().flat_map(|m| m.keys()) {
                if !is_config_key(key) {
                    errors.push(FieldError::invalid(
                        format!("{field}[{key}]"),
                        key,
                        CONFIG_KEY_MSG,
                    ));
                }
            }
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_rfc1123() {
        assert!(dns1123_subdomain("runner-abc.x").is_empty());
        assert!(!dns1123_subdomain("Runner").is_empty());
        assert!(!dns1123_label("a.b").is_empty());
        assert_eq!(dns1123_label(&"a".repeat(64)).len(), 1);
    }
}
