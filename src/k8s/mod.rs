//! Everything that talks to the Kubernetes API. No other module calls `kube::Api`.
//!
//! [`Context`] is built once per invocation and borrowed by every hook: the client, the
//! namespace, the configuration and the runner pod's name. Pure spec builders live beside it and
//! are tested without a cluster.

use std::time::Duration;

use crate::config::Config;

/// Label put on every object we create, with the runner pod's name as value. The TypeScript hook
/// uses the same key, so `cleanup_job` of either hook finds the other's leftovers.
pub const RUNNER_POD_LABEL: &str = "runner-pod";

/// Failures of the Kubernetes layer, each named after the operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum K8sError {
    /// Neither a kubeconfig nor an in-cluster service account was found.
    #[error("no Kubernetes cluster configuration found")]
    NoClusterConfig(#[source] kube::config::InferConfigError),
    /// The cluster configuration was found but is unusable (bad certificate, unknown auth...).
    #[error("failed to create a Kubernetes client from the cluster configuration")]
    CreateClient(#[source] kube::Error),
}

impl K8sError {
    /// What the user can do about it, if we know.
    pub fn hint(&self) -> Option<String> {
        match self {
            K8sError::NoClusterConfig(_) => Some(
                "run the hook in a pod with a service account (ARC does this), or point `KUBECONFIG` at a kubeconfig for the cluster".to_owned(),
            ),
            K8sError::CreateClient(_) => Some(
                "check the kubeconfig's server address, certificate authority and credentials".to_owned(),
            ),
        }
    }
}

/// What every hook command works with.
#[derive(Clone)]
pub struct Context {
    /// The API client.
    pub client: kube::Client,
    /// Namespace of everything we create.
    pub namespace: String,
    /// The configuration read at start-up.
    pub config: Config,
    /// The runner pod's name ([`crate::config::RUNNER_POD_NAME`]).
    pub runner_pod: String,
}

impl Context {
    /// Find the cluster (kubeconfig, then in-cluster service account, as `kubectl` does) and
    /// build the client.
    ///
    /// # Errors
    /// [`K8sError::NoClusterConfig`] when there is no cluster configuration at all,
    /// [`K8sError::CreateClient`] when it is unusable.
    pub async fn connect(config: &Config, runner_pod: &str) -> Result<Context, K8sError> {
        let mut kube_config = kube::Config::infer()
            .await
            .map_err(K8sError::NoClusterConfig)?;
        // Bound the time a dead API server can hold us; long operations (watch, exec, logs)
        // are streams and set their own limits.
        kube_config.connect_timeout = Some(CONNECT_TIMEOUT);
        let namespace = config
            .namespace
            .clone()
            .unwrap_or_else(|| kube_config.default_namespace.clone());
        let client = kube::Client::try_from(kube_config).map_err(K8sError::CreateClient)?;
        Ok(Context {
            client,
            namespace,
            config: config.clone(),
            runner_pod: runner_pod.to_owned(),
        })
    }
}

/// How long to wait for a TCP/TLS connection to the API server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
