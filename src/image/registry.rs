//! Asking a registry for an image by tag and giving it another tag, with the OCI distribution
//! API (`oci-client`): what reuse by content needs from the push host
//! (docs/user/dockerfile-actions.md, "Reuse by content").
//!
//! [`Registry::find`] reads a manifest by tag (`GET /v2/<name>/manifests/<tag>`), and
//! [`Registry::retag`] writes the same bytes under a new tag (`PUT`), so the new tag has the same
//! digest and no blob moves. Basic auth and token auth (a `Bearer` challenge answered with the
//! same credentials) both work, as does a private CA or plain HTTP.
//!
//! Owns these two calls and what their failures mean. Knows nothing about Kubernetes: the caller
//! reads the credentials and the CA and decides what to do when the registry says no.

use std::time::Duration;

use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use secrecy::{ExposeSecret as _, SecretString};
use sha2::{Digest as _, Sha256};

use super::reference::Digest;

/// How long to wait for a connection to the registry.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for any answer once connected.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The manifest types a built image may have: a single image (OCI, or Docker's with `--format
/// docker`/`v2s2`) or an index of them.
const MANIFEST_TYPES: &[&str] = &[
    oci_client::manifest::OCI_IMAGE_MEDIA_TYPE,
    oci_client::manifest::IMAGE_MANIFEST_MEDIA_TYPE,
    oci_client::manifest::OCI_IMAGE_INDEX_MEDIA_TYPE,
    oci_client::manifest::IMAGE_MANIFEST_LIST_MEDIA_TYPE,
];

/// How to reach a registry host.
#[derive(Clone)]
pub struct Access {
    /// `host[:port]`.
    pub host: String,
    /// User name and password (or token), when the registry needs them.
    pub credentials: Option<(String, SecretString)>,
    /// PEM certificates of a private CA to trust besides the system's.
    pub ca_pem: Option<Vec<u8>>,
    /// Plain HTTP (the operator turned TLS verification off for this registry).
    pub plain_http: bool,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("host", &self.host)
            .field("user", &self.credentials.as_ref().map(|(user, _)| user))
            .field("ca", &self.ca_pem.is_some())
            .field("plain_http", &self.plain_http)
            .finish()
    }
}

/// What a registry call could not do.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The registry refused the credentials, or has none for this repository (401/403).
    #[error("the registry refused access to `{reference}`: {detail}")]
    Denied {
        /// The image reference.
        reference: String,
        /// The registry's answer.
        detail: String,
    },
    /// Any other failure: the registry could not be reached, answered with an error, or sent
    /// something that is not a manifest.
    #[error("the registry could not {action} `{reference}`: {detail}")]
    Failed {
        /// `read the manifest of`, `tag`.
        action: &'static str,
        /// The image reference.
        reference: String,
        /// What went wrong.
        detail: String,
    },
}

/// A manifest found by [`Registry::find`].
#[derive(Debug, Clone)]
pub struct Found {
    /// Its digest (`sha256:<hex>` of the bytes).
    pub digest: Digest,
    /// The bytes, exactly as the registry sent them.
    manifest: bytes::Bytes,
    /// Its media type.
    media_type: String,
}

/// One registry host, with its credentials.
pub struct Registry {
    client: Client,
    auth: RegistryAuth,
    host: String,
}

impl Registry {
    /// A client for `access`.
    ///
    /// # Errors
    /// [`RegistryError::Failed`] when the CA is not usable PEM.
    pub fn new(access: &Access) -> Result<Registry, RegistryError> {
        // reqwest's rustls needs a process-wide crypto provider; we use ring, as kube does. A
        // provider installed before (by an earlier client) stays.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let extra_root_certificates = access
            .ca_pem
            .iter()
            .map(|pem| Certificate {
                encoding: CertificateEncoding::Pem,
                data: pem.clone(),
            })
            .collect();
        let config = ClientConfig {
            protocol: if access.plain_http {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            extra_root_certificates,
            connect_timeout: Some(CONNECT_TIMEOUT),
            read_timeout: Some(READ_TIMEOUT),
            platform_resolver: None,
            ..ClientConfig::default()
        };
        let client = Client::try_from(config).map_err(|e| RegistryError::Failed {
            action: "connect to",
            reference: access.host.clone(),
            detail: format!("{e} (check the CA certificate)"),
        })?;
        let auth = match &access.credentials {
            Some((user, password)) => {
                RegistryAuth::Basic(user.clone(), password.expose_secret().to_owned())
            }
            None => RegistryAuth::Anonymous,
        };
        Ok(Registry {
            client,
            auth,
            host: access.host.clone(),
        })
    }

    /// The manifest `<repository>:<tag>`, or `None` when the registry has no such tag.
    ///
    /// # Errors
    /// [`RegistryError`] when the registry refuses, cannot be reached, or answers with
    /// something else than a manifest or "not found".
    pub async fn find(&self, repository: &str, tag: &str) -> Result<Option<Found>, RegistryError> {
        let reference = self.reference(repository, tag);
        let result = self
            .client
            .pull_manifest_raw(&reference, &self.auth, MANIFEST_TYPES)
            .await;
        let (manifest, digest) = match result {
            Ok(found) => found,
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(self.error("read the manifest of", &reference, e)),
        };
        let failed = |detail: String| RegistryError::Failed {
            action: "read the manifest of",
            reference: reference.whole(),
            detail,
        };
        let computed = format!("sha256:{}", hex(&Sha256::digest(&manifest)));
        if digest.starts_with("sha256:") && digest != computed {
            return Err(failed(format!(
                "the registry says its digest is {digest}, but its bytes hash to {computed}"
            )));
        }
        let digest = Digest::parse(&computed).map_err(|e| failed(e.to_string()))?;
        let media_type = media_type(&manifest).map_err(failed)?;
        Ok(Some(Found {
            digest,
            manifest,
            media_type,
        }))
    }

    /// Put `found`'s manifest, byte for byte, under `<repository>:<tag>`: the same image, the same
    /// digest, a new tag.
    ///
    /// # Errors
    /// [`RegistryError`] when the registry refuses the write (read-only credentials, a registry
    /// that forbids tag writes) or cannot be reached.
    pub async fn retag(
        &self,
        repository: &str,
        found: &Found,
        tag: &str,
    ) -> Result<(), RegistryError> {
        let reference = self.reference(repository, tag);
        let content_type =
            http::HeaderValue::from_str(&found.media_type).map_err(|e| RegistryError::Failed {
                action: "tag",
                reference: reference.whole(),
                detail: e.to_string(),
            })?;
        self.client
            .store_auth_if_needed(reference.resolve_registry(), &self.auth)
            .await;
        // A token for pulling is not one for pushing: ask for the push scope first.
        if let Err(e) = self
            .client
            .auth(&reference, &self.auth, RegistryOperation::Push)
            .await
        {
            return Err(self.error("tag", &reference, e));
        }
        self.client
            .push_manifest_raw(&reference, found.manifest.clone(), content_type)
            .await
            .map_err(|e| self.error("tag", &reference, e))?;
        Ok(())
    }

    fn reference(&self, repository: &str, tag: &str) -> Reference {
        Reference::with_tag(self.host.clone(), repository.to_owned(), tag.to_owned())
    }

    fn error(
        &self,
        action: &'static str,
        reference: &Reference,
        error: OciDistributionError,
    ) -> RegistryError {
        let reference = reference.whole();
        let detail = describe(&error);
        match status(&error) {
            Some(401 | 403) => RegistryError::Denied { reference, detail },
            _ => RegistryError::Failed {
                action,
                reference,
                detail,
            },
        }
    }
}

/// The credentials for `host` in a docker `config.json` (a `kubernetes.io/dockerconfigjson`
/// Secret's `.dockerconfigjson`): the entry whose key is the host, with or without a scheme and
/// a path (`registry.example:5000`, `https://registry.example:5000/v1/`), giving `auth` (base64
/// of `user:password`) or `username` and `password`. `None` when there is no entry for the host.
///
/// # Errors
/// A description of what is malformed (never the secret values).
pub fn credentials_for(
    docker_config: &[u8],
    host: &str,
) -> Result<Option<(String, SecretString)>, String> {
    use base64::Engine as _;

    #[derive(serde::Deserialize)]
    struct Config {
        #[serde(default)]
        auths: std::collections::BTreeMap<String, Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        auth: Option<String>,
        username: Option<String>,
        password: Option<SecretString>,
    }
    let config: Config = serde_json::from_slice(docker_config)
        .map_err(|e| format!("it is not a docker config.json (`auths`): {e}"))?;
    let entry = config
        .auths
        .iter()
        .find_map(|(key, entry)| auth_key_matches(key, host).then_some(entry));
    let Some(entry) = entry else {
        return Ok(None);
    };
    if let (Some(user), Some(password)) = (&entry.username, &entry.password) {
        return Ok(Some((user.clone(), password.clone())));
    }
    let Some(auth) = &entry.auth else {
        return Ok(None);
    };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(auth.trim())
        .map_err(|_| format!("the `auth` of `{host}` is not base64"))?;
    let decoded =
        String::from_utf8(decoded).map_err(|_| format!("the `auth` of `{host}` is not text"))?;
    let (user, password) = decoded
        .split_once(':')
        .ok_or_else(|| format!("the `auth` of `{host}` is not `user:password`"))?;
    Ok(Some((
        user.to_owned(),
        SecretString::from(password.to_owned()),
    )))
}

/// Whether a key of a docker config's `auths` applies to `host` (`host`, `https://host`,
/// `host/path`, `https://host/v1/`), as containers/image matches them by host.
pub fn auth_key_matches(key: &str, host: &str) -> bool {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    key.split('/').next() == Some(host)
}

/// `mediaType` of a manifest; an OCI image manifest when it has none (the field is optional in
/// OCI manifests).
fn media_type(manifest: &[u8]) -> Result<String, String> {
    #[derive(serde::Deserialize)]
    struct Typed {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
    }
    let typed: Typed =
        serde_json::from_slice(manifest).map_err(|e| format!("the manifest is not JSON: {e}"))?;
    Ok(typed
        .media_type
        .unwrap_or_else(|| oci_client::manifest::OCI_IMAGE_MEDIA_TYPE.to_owned()))
}

/// The registry has no such tag (404, `MANIFEST_UNKNOWN`, `NAME_UNKNOWN`).
fn is_not_found(error: &OciDistributionError) -> bool {
    match error {
        OciDistributionError::ImageManifestNotFoundError(_) => true,
        OciDistributionError::RegistryError { envelope, .. } => envelope.errors.iter().any(|e| {
            matches!(
                e.code,
                oci_client::errors::OciErrorCode::ManifestUnknown
                    | oci_client::errors::OciErrorCode::NameUnknown
            )
        }),
        other => status(other) == Some(404),
    }
}

/// The HTTP status behind an error, when there is one.
fn status(error: &OciDistributionError) -> Option<u16> {
    match error {
        OciDistributionError::ServerError { code, .. } => Some(*code),
        OciDistributionError::UnauthorizedError { .. } => Some(401),
        OciDistributionError::AuthenticationFailure(_) => Some(401),
        OciDistributionError::RegistryError { envelope, .. } => {
            envelope.errors.iter().find_map(|e| match e.code {
                oci_client::errors::OciErrorCode::Unauthorized => Some(401),
                oci_client::errors::OciErrorCode::Denied => Some(403),
                oci_client::errors::OciErrorCode::Unsupported => Some(405),
                oci_client::errors::OciErrorCode::ManifestUnknown
                | oci_client::errors::OciErrorCode::NameUnknown => Some(404),
                _ => None,
            })
        }
        OciDistributionError::RequestError(e) => e.status().map(|s| s.as_u16()),
        _ => None,
    }
}

/// One line for the log: the error and its causes (a connection error's cause names the
/// address and the reason).
fn describe(error: &OciDistributionError) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let line = cause.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        source = cause.source();
    }
    // Registry bodies end with newlines; a log line must stay one line.
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types_come_from_the_manifest_or_default_to_oci() {
        assert_eq!(
            media_type(br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json"}"#)
                .unwrap(),
            "application/vnd.docker.distribution.manifest.v2+json"
        );
        assert_eq!(
            media_type(br#"{"schemaVersion":2,"config":{}}"#).unwrap(),
            "application/vnd.oci.image.manifest.v1+json"
        );
        assert!(media_type(b"<html>").unwrap_err().contains("not JSON"));
    }

    #[test]
    fn auth_keys_match_by_host() {
        assert!(auth_key_matches(
            "registry.ns.svc:5000",
            "registry.ns.svc:5000"
        ));
        assert!(auth_key_matches("https://ghcr.io", "ghcr.io"));
        assert!(auth_key_matches("ghcr.io/owner", "ghcr.io"));
        assert!(!auth_key_matches("localhost:30500", "registry.ns.svc:5000"));
    }

    #[test]
    fn credentials_are_found_by_host_in_a_docker_config() {
        let config = br#"{"auths":{
            "https://other.example/v1/":{"auth":"eDp5"},
            "registry.example:5000":{"auth":"dXNlcjpwYTpzcw=="},
            "plain.example":{"username":"u2","password":"p2"}}}"#;
        let (user, password) = credentials_for(config, "registry.example:5000")
            .unwrap()
            .unwrap();
        assert_eq!(user, "user");
        assert_eq!(
            password.expose_secret(),
            "pa:ss",
            "only the first `:` splits"
        );
        let (user, password) = credentials_for(config, "plain.example").unwrap().unwrap();
        assert_eq!((user.as_str(), password.expose_secret()), ("u2", "p2"));
        let (user, _) = credentials_for(config, "other.example").unwrap().unwrap();
        assert_eq!(user, "x", "scheme and path are ignored");
        assert!(
            credentials_for(config, "missing.example")
                .unwrap()
                .is_none()
        );
        let err = credentials_for(br#"{"auths":{"h":{"auth":"!!"}}}"#, "h").unwrap_err();
        assert!(err.contains("not base64") && !err.contains("!!"), "{err}");
        assert!(credentials_for(b"not json", "h").is_err());
    }

    #[test]
    fn credentials_never_show_in_debug_output() {
        let access = Access {
            host: "r:5000".to_owned(),
            credentials: Some(("user".to_owned(), SecretString::from("hunter2"))),
            ca_pem: None,
            plain_http: false,
        };
        let text = format!("{access:?}");
        assert!(text.contains("user") && !text.contains("hunter2"), "{text}");
    }

    #[test]
    fn statuses_are_read_from_every_kind_of_error() {
        let server = |code| OciDistributionError::ServerError {
            code,
            url: "u".to_owned(),
            message: String::new(),
        };
        assert!(is_not_found(&server(404)));
        assert!(!is_not_found(&server(500)));
        assert_eq!(status(&server(403)), Some(403));
        assert_eq!(
            status(&OciDistributionError::UnauthorizedError {
                url: "u".to_owned()
            }),
            Some(401)
        );
    }
}
