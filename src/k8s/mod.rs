//! Everything that talks to the Kubernetes API. No other module calls `kube::Api`.
//!
//! [`Session`] is built once per invocation and borrowed by every hook: the client, the
//! namespace, the configuration, the runner pod's name and the undo log of what this command
//! created. The submodules are the verbs: [`objects`] (create, get, list, delete), [`rbac`]
//! (pre-flight), [`retry`] (the one policy for transient API errors), [`wait`] (a pod reaching a
//! goal), [`exec`] (commands in a container), [`logs`] (following a container's log) and
//! [`build`] (the image build engine's pod executor), [`registry`] (what the hook needs to
//! talk to the push registry itself); [`check`] holds the calls of `runner-k8s-hook check`.
//!
//! Owns every API call and the policies around them (retry, wait, undo). May use `spec` for the
//! objects it creates, `transfer` for the copy seam it implements, `image` for the executor
//! contract and `config`; must not decide what a hook command does (that is `hooks`).

pub mod build;
pub mod check;
pub mod exec;
pub mod logs;
pub mod objects;
pub mod rbac;
pub mod registry;
pub mod retry;
pub mod wait;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::{info, warn};

use crate::config::Config;
use exec::{Heartbeat, PodExec};

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

/// Something to undo if the command is cancelled (SIGINT/SIGTERM) before it finishes: objects
/// created for this command, and a step process running in a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Undo {
    /// Delete this pod.
    DeletePod(String),
    /// Delete this secret.
    DeleteSecret(String),
    /// Stop the process tree whose pid is in `pid_file` inside `container` of `pod`.
    StopProcess {
        /// Pod.
        pod: String,
        /// Container.
        container: String,
        /// File holding the root pid (written by our step wrapper).
        pid_file: String,
    },
}

/// The list of [`Undo`] actions of one invocation, shared with the signal path.
#[derive(Debug, Clone, Default)]
pub struct UndoLog(Arc<Mutex<Vec<Undo>>>);

impl UndoLog {
    /// Remember `undo` until [`UndoLog::forget`].
    pub fn push(&self, undo: Undo) {
        self.lock().push(undo);
    }

    /// The action is no longer needed (the object is meant to outlive the command, or is gone).
    pub fn forget(&self, undo: &Undo) {
        self.lock().retain(|u| u != undo);
    }

    fn take(&self) -> Vec<Undo> {
        std::mem::take(&mut *self.lock())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Undo>> {
        // A panic while holding this lock cannot leave the Vec inconsistent; keep going.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// What every hook command works with.
#[derive(Clone)]
pub struct Session {
    /// The API client.
    pub client: kube::Client,
    /// Namespace of everything we create.
    pub namespace: String,
    /// The configuration read at start-up.
    pub config: Config,
    /// The runner pod's name ([`crate::config::RUNNER_POD_NAME`]).
    pub runner_pod: String,
    /// What to undo on cancellation.
    pub undo: UndoLog,
    /// Whether the service account may watch pods (how [`wait::until`] waits).
    pub watch: wait::WatchPermission,
}

impl Session {
    /// Find the cluster (kubeconfig, then in-cluster service account, as `kubectl` does) and
    /// build the client.
    ///
    /// # Errors
    /// [`K8sError::NoClusterConfig`] when there is no cluster configuration at all,
    /// [`K8sError::CreateClient`] when it is unusable.
    pub async fn connect(
        config: &Config,
        runner_pod: &str,
        undo: UndoLog,
    ) -> Result<Session, K8sError> {
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
        Ok(Session {
            client,
            namespace,
            config: config.clone(),
            runner_pod: runner_pod.to_owned(),
            undo,
            watch: wait::WatchPermission::default(),
        })
    }

    /// Exec into `container` of `pod` with the configured heartbeat.
    pub fn exec_in(&self, pod: &str, container: &str) -> PodExec {
        PodExec::new(
            self.client.clone(),
            &self.namespace,
            pod,
            container,
            Heartbeat {
                period: self.config.heartbeat_period,
                deadline: self.config.heartbeat_deadline,
            },
        )
    }

    /// Carry out every pending [`Undo`], newest first, within `grace`. Used after a signal or a
    /// failed command; never fails (what cannot be undone is logged, and `cleanup_job` deletes by label later).
    pub async fn undo_all(&self, grace: Duration) {
        let actions = self.undo.take();
        if actions.is_empty() {
            return;
        }
        let work = async {
            for action in actions.into_iter().rev() {
                let result = match &action {
                    Undo::DeletePod(name) => {
                        self.delete_pod(name).await.map_err(anyhow::Error::from)
                    }
                    Undo::DeleteSecret(name) => {
                        self.delete_secret(name).await.map_err(anyhow::Error::from)
                    }
                    Undo::StopProcess {
                        pod,
                        container,
                        pid_file,
                    } => self.stop_process(pod, container, pid_file).await,
                };
                match result {
                    Ok(()) => info!(?action, "cleaned up"),
                    Err(error) => warn!(?action, %error, "could not clean up"),
                }
            }
        };
        if tokio::time::timeout(grace, work).await.is_err() {
            warn!("clean-up ran out of time; `cleanup_job` deletes the rest by label");
        }
    }

    /// Create the (empty) file `path` in the `stage` init container `container` of `pod`: the
    /// marker that releases it (it waits for the file, then ends, and the pod's own container
    /// starts).
    ///
    /// The container may end as soon as the file exists, and the runtime then kills what is
    /// still running in it, our exec'd `touch` included, before the exec reports its exit: exit
    /// 137 (SIGKILL) therefore counts as released. If the file was not made after all, the
    /// caller's next wait (the pod's own container starting) fails with the pod's state.
    ///
    /// # Errors
    /// When the exec fails or `touch` exits with another code (with its stderr).
    pub async fn create_file(&self, pod: &str, container: &str, path: &str) -> anyhow::Result<()> {
        let argv = vec![
            "sh".to_owned(),
            "-c".to_owned(),
            "exec touch \"$1\"".to_owned(),
            "sh".to_owned(),
            path.to_owned(),
        ];
        let mut out = tokio::io::sink();
        let mut err = Vec::new();
        let code = self
            .exec_in(pod, container)
            .exec(argv, None, &mut out, &mut err)
            .await?;
        anyhow::ensure!(
            code == 0 || code == KILLED_AS_THE_CONTAINER_ENDED,
            "could not create `{path}` in pod `{pod}` container `{container}` (exit {code}): {}",
            String::from_utf8_lossy(&err).trim()
        );
        Ok(())
    }

    /// Stop a step's process tree in a container: TERM to the root pid read from `pid_file`
    /// and all its descendants (found through `/proc`, which every Linux container has), then
    /// KILL whatever is left a moment later.
    async fn stop_process(&self, pod: &str, container: &str, pid_file: &str) -> anyhow::Result<()> {
        let exec = self.exec_in(pod, container);
        let mut sink = tokio::io::sink();
        let mut sink2 = tokio::io::sink();
        let argv = vec![
            "sh".to_owned(),
            "-c".to_owned(),
            STOP_PROCESS_TREE.to_owned(),
            "sh".to_owned(),
            pid_file.to_owned(),
        ];
        exec.exec(argv, None, &mut sink, &mut sink2).await?;
        Ok(())
    }
}

/// POSIX sh: collect the process tree under the pid in `$1` by walking `/proc/*/status`
/// `PPid:` lines, TERM it, and KILL the survivors after a second.
pub const STOP_PROCESS_TREE: &str = r#"root=$(cat "$1" 2>/dev/null) || exit 0
[ -n "$root" ] || exit 0
all=$root; frontier=$root
while [ -n "$frontier" ]; do
  next=
  for st in /proc/[0-9]*/status; do
    pid=${st#/proc/}; pid=${pid%/status}
    ppid=$(sed -n 's/^PPid:[[:space:]]*//p' "$st" 2>/dev/null)
    for f in $frontier; do [ "$ppid" = "$f" ] && next="$next $pid"; done
  done
  all="$all $next"; frontier=$next
done
kill -TERM $all 2>/dev/null
sleep 1
kill -KILL $all 2>/dev/null
rm -f "$1"
exit 0"#;

/// The exit code of a process killed by SIGKILL (128 + 9): what an exec into a container that
/// ends reports.
const KILLED_AS_THE_CONTAINER_ENDED: i32 = 137;

/// How long to wait for a TCP/TLS connection to the API server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
