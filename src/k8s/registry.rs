//! What the hook needs to talk to the push registry itself, for reuse by content
//! (docs/user/dockerfile-actions.md): the registry Secret's credentials for the push host and the
//! registry CA, read from the cluster, and whether the registry speaks plain HTTP.
//!
//! Owns reading those objects; the registry calls are [`crate::image::registry`]'s and the
//! decision to reuse is the Dockerfile-action hook's.

use anyhow::Context as _;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;

use super::{Session, retry};
use crate::config::BuildConfig;
use crate::image::reference::RegistryHost;
use crate::image::registry::{Access, credentials_for};
use crate::spec::build_pod::{CA_KEY, DOCKERCONFIGJSON_KEY, RegistryCa};

impl Session {
    /// How to reach `host` as the build pod does: with the registry Secret's credentials for it,
    /// the configured CA, and plain HTTP when the operator turned TLS verification off
    /// (`--tls-verify=false` in the build or push options).
    ///
    /// # Errors
    /// The Secret or the CA object cannot be read (missing, or not allowed: a CA in a ConfigMap
    /// needs `configmaps get`, which ARC's chart Role does not grant), or is malformed.
    pub async fn registry_access(
        &self,
        build: &BuildConfig,
        host: &RegistryHost,
    ) -> anyhow::Result<Access> {
        let secrets = self.secrets();
        let credentials = match &build.registry_secret_name {
            Some(name) => {
                let secret = retry::call("get the registry Secret", || secrets.get(name))
                    .await
                    .with_context(|| format!("cannot read the registry Secret `{name}`"))?;
                let config = secret
                    .data
                    .as_ref()
                    .and_then(|data| data.get(DOCKERCONFIGJSON_KEY))
                    .with_context(|| {
                        format!("the registry Secret `{name}` has no `{DOCKERCONFIGJSON_KEY}`")
                    })?;
                credentials_for(&config.0, host.host()).map_err(|detail| {
                    anyhow::anyhow!(
                        "the `{DOCKERCONFIGJSON_KEY}` of the registry Secret `{name}` is not usable: {detail}"
                    )
                })?
            }
            None => None,
        };
        let ca_pem = match &build.registry_ca {
            Some(RegistryCa::Secret(name)) => {
                let secret = retry::call("get the registry CA Secret", || secrets.get(name))
                    .await
                    .with_context(|| format!("cannot read the registry CA Secret `{name}`"))?;
                let ca = secret
                    .data
                    .and_then(|mut data| data.remove(CA_KEY))
                    .with_context(|| {
                        format!("the registry CA Secret `{name}` has no `{CA_KEY}`")
                    })?;
                Some(ca.0)
            }
            Some(RegistryCa::ConfigMap(name)) => {
                let config_maps: Api<ConfigMap> =
                    Api::namespaced(self.client.clone(), &self.namespace);
                let map = retry::call("get the registry CA ConfigMap", || config_maps.get(name))
                    .await
                    .with_context(|| {
                        format!(
                            "cannot read the registry CA ConfigMap `{name}` (the hook needs `get` on `configmaps` for that, which ARC's chart Role does not grant; a CA in a Secret needs no more than the Role has)"
                        )
                    })?;
                let ca = map
                    .data
                    .and_then(|mut data| data.remove(CA_KEY))
                    .with_context(|| {
                        format!("the registry CA ConfigMap `{name}` has no `{CA_KEY}`")
                    })?;
                Some(ca.into_bytes())
            }
            None => None,
        };
        let plain_http = build
            .build_options
            .iter()
            .chain(&build.push_options)
            .any(|option| option == "--tls-verify=false");
        Ok(Access {
            host: host.host().to_owned(),
            credentials,
            ca_pem,
            plain_http,
        })
    }
}
