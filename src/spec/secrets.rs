//! The Secrets of a job: the registry credentials pods are pulled with (`pull_secret`) and the
//! environment of a container step (`env_secret`), so tokens and secret inputs are not in a pod
//! spec that whoever may `get` pods can read.
//!
//! Owns the `.dockerconfigjson` format and which variables a Secret can carry. It must not build
//! pods (they only name the Secret), log a Secret's content, call the API, read files or draw
//! random numbers (the caller names the Secret).

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;
use tracing::warn;

use super::{COMPONENT_PULL_SECRET, COMPONENT_STEP_ENV, Owner, object_labels, owner_reference};
use crate::protocol::Registry;

/// The `auths` key for Docker Hub (the runner sends an empty `serverUrl` for it; the TypeScript
/// hook and `docker login` use this URL, and the kubelet matches it for Docker Hub images).
pub const DOCKER_HUB_AUTH_URL: &str = "https://index.docker.io/v1/";

/// The `kubernetes.io/dockerconfigjson` Secret for the job's registries (the TypeScript hook's
/// format): `{"auths": {"<server>": {"username", "password", "auth": base64("user:pass")}}}`,
/// Docker Hub (an empty `serverUrl`) as `https://index.docker.io/v1/`. Several registries share
/// one `auths` map; when two give the same server the first wins. Immutable: it is created once
/// per job and never updated. Its content is never logged.
pub fn pull_secret(
    name: &str,
    runner_pod: &str,
    owner: Option<&Owner>,
    registries: &[&Registry],
) -> Secret {
    #[derive(Serialize)]
    struct Auth<'a> {
        username: &'a str,
        password: &'a str,
        auth: String,
    }
    #[derive(Serialize)]
    struct DockerConfig<'a> {
        auths: BTreeMap<String, Auth<'a>>,
    }
    let mut auths = BTreeMap::new();
    for registry in registries {
        let server = registry
            .server_url
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .unwrap_or(DOCKER_HUB_AUTH_URL)
            .to_owned();
        if auths.contains_key(&server) {
            warn!(registry = %server, "two containers give credentials for one registry; the first are used");
            continue;
        }
        let username = registry.username.as_deref().unwrap_or_default();
        let password = registry.password_plain();
        auths.insert(
            server,
            Auth {
                username,
                password,
                auth: BASE64.encode(format!("{username}:{password}")),
            },
        );
    }
    let config =
        serde_json::to_vec(&DockerConfig { auths }).expect("a map of strings serialises to JSON");
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(object_labels(runner_pod, COMPONENT_PULL_SECRET)),
            owner_references: owner.map(|o| vec![owner_reference(o)]),
            ..Default::default()
        },
        type_: Some("kubernetes.io/dockerconfigjson".into()),
        immutable: Some(true),
        data: Some(BTreeMap::from([(
            ".dockerconfigjson".to_owned(),
            ByteString(config),
        )])),
        ..Default::default()
    }
}

/// A Secret key may hold `[-._a-zA-Z0-9]+` (Kubernetes `IsConfigMapKey`); a variable whose name
/// cannot be a key stays in the container spec.
fn is_secret_key(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
}

/// The step's variables split into those a Secret can hold (with `GITHUB_ACTIONS`/`CI` added as
/// for every container) and the rest.
pub(super) fn split_env(
    variables: &BTreeMap<String, String>,
) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let mut all = variables.clone();
    all.insert("GITHUB_ACTIONS".into(), "true".into());
    all.entry("CI".into()).or_insert_with(|| "true".into());
    all.into_iter().partition(|(k, _)| is_secret_key(k))
}

/// The Secret that carries a container step's environment (tokens like
/// `ACTIONS_RUNTIME_TOKEN`, and secret inputs), consumed by the step pod with `envFrom`. The
/// TypeScript hook 0.7 did the same; 0.8 wrote them into the pod spec.
pub fn env_secret(
    name: &str,
    runner_pod: &str,
    owner: Option<&Owner>,
    variables: &BTreeMap<String, String>,
) -> Secret {
    let (from_secret, _) = split_env(variables);
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(object_labels(runner_pod, COMPONENT_STEP_ENV)),
            owner_references: owner.map(|o| vec![owner_reference(o)]),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        immutable: Some(true),
        data: Some(
            from_secret
                .into_iter()
                .map(|(k, v)| (k, ByteString(v.into_bytes())))
                .collect(),
        ),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::tests::{RUNNER_POD, owner, step, step_fixture};
    use crate::spec::{COMPONENT_LABEL, WorkVolume};

    #[test]
    fn step_environment_lives_in_a_secret_not_in_the_pod_spec() {
        let args = step_fixture("run_container_step");
        let plan = step("run_container_step", &WorkVolume::EmptyDir, None);
        let pod_yaml = serde_json::to_string(&plan.pod).unwrap();
        assert!(!pod_yaml.contains("ACTIONS_RUNTIME_TOKEN"), "{pod_yaml}");
        let secret = env_secret("s", RUNNER_POD, Some(&owner()), &args.environment_variables);
        let data = secret.data.unwrap();
        assert_eq!(data["ACTIONS_RUNTIME_TOKEN"].0, b"***");
        assert_eq!(data["GITHUB_ACTIONS"].0, b"true");
        assert_eq!(data["CI"].0, b"true");
        assert_eq!(secret.immutable, Some(true));
        // A name a Secret key cannot hold stays in the container spec.
        let odd = BTreeMap::from([
            ("A B".to_owned(), "1".to_owned()),
            ("OK".to_owned(), "2".to_owned()),
        ]);
        let (in_secret, plain) = split_env(&odd);
        assert!(in_secret.contains_key("OK") && plain.contains_key("A B"));
    }

    #[test]
    fn pull_secret_is_the_docker_config_format() {
        let registry = |user: &str, password: &str, server: Option<&str>| -> Registry {
            serde_json::from_value(serde_json::json!({
                "username": user, "password": password, "serverUrl": server,
            }))
            .unwrap()
        };
        let ghcr = registry("octocat", "token-1", Some("ghcr.io"));
        let hub = registry("me", "pa:ss", Some(""));
        let ghcr_again = registry("other", "token-2", Some("ghcr.io"));
        let secret = pull_secret("s", RUNNER_POD, None, &[&ghcr, &hub, &ghcr_again]);
        assert_eq!(
            secret.type_.as_deref(),
            Some("kubernetes.io/dockerconfigjson")
        );
        assert_eq!(secret.immutable, Some(true));
        assert!(secret.metadata.owner_references.is_none());
        assert_eq!(
            secret.metadata.labels.as_ref().unwrap()[COMPONENT_LABEL],
            COMPONENT_PULL_SECRET
        );
        let data = &secret.data.as_ref().unwrap()[".dockerconfigjson"].0;
        let config: serde_json::Value = serde_json::from_slice(data).unwrap();
        assert_eq!(
            config,
            serde_json::json!({"auths": {
                "ghcr.io": {"username": "octocat", "password": "token-1", "auth": BASE64.encode("octocat:token-1")},
                "https://index.docker.io/v1/": {"username": "me", "password": "pa:ss", "auth": BASE64.encode("me:pa:ss")},
            }})
        );
    }
}
