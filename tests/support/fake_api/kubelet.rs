//! The kubelet of the one fake node: one worker per pod takes it from scheduled to deleted.
//!
//! - Volumes (`FailedMount` until they can be set up), init containers in order, then every
//!   container; per container (`pkg/kubelet/kuberuntime/kuberuntime_container.go`): image pull
//!   (`ErrImagePull` → `ImagePullBackOff`, retried with back-off,
//!   `pkg/kubelet/images/image_manager.go`), `CreateContainerConfigError`, `StartError`,
//!   running, terminated (exit code, reason, termination message with
//!   `FallbackToLogsOnError`).
//! - Deletion: SIGTERM to each container's PID 1, SIGKILL after the grace period
//!   (`killContainer`), the final status, then the kubelet's own delete
//!   (`pkg/kubelet/status/status_manager.go` `canBeDeleted`).
//! - Scripts (`KubeletScript`), matched by pod name; `prefix*` matches a prefix.
//!
//! Scheduling is in `scheduler.rs`, status in `pod_status.rs`, Events in `events.rs`.

use std::collections::HashMap;
use std::os::unix::process::ExitStatusExt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use k8s_openapi::api::core::v1::{Container, Pod, Taint};
use k8s_openapi::jiff::Timestamp;
use serde_json::Value;
use tokio::io::AsyncReadExt;
use tokio::sync::watch;

use super::Shared;
use super::containers::{self, PullError, VolumeDir};
use super::events::event;
use super::images::normalize;
use super::logs::LogBuffer;
use super::pod_status::{Model, Scheduling, State, digest_of, publish, random_hex64};
use super::resources;
use super::sandbox;
use super::scheduler::schedule;

pub(super) fn pattern_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

#[derive(Default)]
pub(super) struct Scripts {
    pub(super) holds: Vec<String>,
    pub(super) unschedulable: Vec<(String, String)>,
    /// Image → (runtime message, how many more pulls fail; `None`: all).
    pub(super) pull_failures: HashMap<String, (String, Option<usize>)>,
    pub(super) config_errors: Vec<(String, String, String)>,
    /// The node's `spec.taints` (`kubectl taint`).
    pub(super) taints: Vec<Taint>,
    /// The node's `spec.unschedulable` (`kubectl cordon`).
    pub(super) cordoned: bool,
}

/// Scripting of the scheduler and kubelet (`FakeCluster::kubelet()`). Pod patterns are a name,
/// or `prefix*`.
pub struct KubeletScript<'a> {
    shared: &'a Shared,
}

impl<'a> KubeletScript<'a> {
    pub(super) fn new(shared: &'a Shared) -> Self {
        Self { shared }
    }

    fn edit(&self, change: impl FnOnce(&mut Scripts)) {
        change(&mut self.shared.kubelet.scripts.lock().expect("scripts lock"));
        self.shared.kubelet.poke.notify_waiters();
    }

    /// Keep matching pods Pending with no status at all (not yet looked at by the scheduler).
    pub fn hold(&self, pod: &str) {
        self.edit(|s| s.holds.push(pod.to_string()));
    }

    /// Keep matching pods unschedulable: `PodScheduled=False`, reason `Unschedulable`, this
    /// message, and a `FailedScheduling` Event.
    pub fn unschedulable(&self, pod: &str, message: &str) {
        self.edit(|s| s.unschedulable.push((pod.to_string(), message.to_string())));
    }

    /// Fail pulls of `image` (even if registered) with this runtime message.
    pub fn fail_pulls(&self, image: &str, message: &str) {
        self.edit(|s| {
            s.pull_failures
                .insert(normalize(image), (message.to_string(), None));
        });
    }

    /// Fail the next `times` pulls of `image` with this runtime message (a registry that
    /// answers 503 or 429 for a while); later pulls succeed.
    pub fn fail_pulls_times(&self, image: &str, times: usize, message: &str) {
        self.edit(|s| {
            s.pull_failures
                .insert(normalize(image), (message.to_string(), Some(times)));
        });
    }

    pub fn clear_pull_failure(&self, image: &str) {
        self.edit(|s| {
            s.pull_failures.remove(&normalize(image));
        });
    }

    /// Hold `container` of matching pods in `CreateContainerConfigError` with this message.
    pub fn config_error(&self, pod: &str, container: &str, message: &str) {
        self.edit(|s| {
            s.config_errors
                .push((pod.to_string(), container.to_string(), message.to_string()))
        });
    }

    /// Taint the node as `kubectl taint node <node> key=value:effect` does (`value` may be
    /// empty; effect `NoSchedule`, `PreferNoSchedule` or `NoExecute`). A taint with the same key
    /// and effect is replaced. Pods already on the node keep running (`NoExecute` eviction is not
    /// modelled).
    pub fn taint(&self, key: &str, value: &str, effect: &str) {
        self.edit(|s| {
            s.taints.retain(|t| !(t.key == key && t.effect == effect));
            s.taints.push(Taint {
                key: key.to_string(),
                value: (!value.is_empty()).then(|| value.to_string()),
                effect: effect.to_string(),
                time_added: None,
            });
        });
    }

    /// Remove every taint with this key (`kubectl taint node <node> key-`); waiting pods are
    /// scheduled again at once.
    pub fn untaint(&self, key: &str) {
        self.edit(|s| s.taints.retain(|t| t.key != key));
    }

    /// `kubectl cordon`: new pods are not scheduled to the node (pods with `spec.nodeName` still
    /// run there).
    pub fn cordon(&self) {
        self.edit(|s| s.cordoned = true);
    }

    /// `kubectl uncordon`: waiting pods are scheduled again at once.
    pub fn uncordon(&self) {
        self.edit(|s| s.cordoned = false);
    }

    /// Drop every hold, unschedulable and config-error script whose pattern is `pod` or matches
    /// it; the pods then proceed.
    pub fn release(&self, pod: &str) {
        self.edit(|s| {
            let keep = |pattern: &String| pattern != pod && !pattern_matches(pattern, pod);
            s.holds.retain(keep);
            s.unschedulable.retain(|(p, _)| keep(p));
            s.config_errors.retain(|(p, _, _)| keep(p));
        });
    }
}

/// A container that is running: what `pods/exec` needs to join it.
#[derive(Clone, Debug)]
pub struct Running {
    /// Host pid of the container's PID 1.
    pub ns_pid: i32,
    pub env: Vec<(String, String)>,
    pub workdir: String,
    /// Who execs run as: the container's own identity, as `runc exec` uses the container's.
    pub identity: super::sandbox::Identity,
}

#[derive(Default)]
pub struct ContainerHandle {
    pub logs: Arc<LogBuffer>,
    running: Mutex<Option<Running>>,
}

pub struct PodHandle {
    pub(super) namespace: String,
    pub(super) name: String,
    pub(super) uid: String,
    pub(super) pod: Pod,
    pub(super) model: Mutex<Model>,
    pub(super) containers: Mutex<HashMap<String, Arc<ContainerHandle>>>,
    /// `Some(grace)` once deletion was requested.
    pub(super) terminate: watch::Sender<Option<i64>>,
}

impl PodHandle {
    pub(super) fn spec_containers(&self, init: bool) -> Vec<Container> {
        let spec = self.pod.spec.clone().unwrap_or_default();
        if init {
            spec.init_containers.unwrap_or_default()
        } else {
            spec.containers
        }
    }

    pub(super) fn restart_policy(&self) -> String {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.clone())
            .unwrap_or_else(|| "Always".to_string())
    }

    pub(super) fn container(&self, name: &str) -> Arc<ContainerHandle> {
        self.containers
            .lock()
            .expect("containers lock")
            .entry(name.to_string())
            .or_default()
            .clone()
    }
}

/// The node: pod workers and scripts.
#[derive(Default)]
pub struct Kubelet {
    pub(super) scripts: Mutex<Scripts>,
    pods: Mutex<HashMap<String, Arc<PodHandle>>>,
    poke: tokio::sync::Notify,
}

impl Kubelet {
    /// A pod was created: start its worker.
    pub fn pod_added(&self, shared: &Arc<Shared>, object: &Value) {
        let Ok(pod) = serde_json::from_value::<Pod>(object.clone()) else {
            return;
        };
        let spec = pod.spec.clone().unwrap_or_default();
        let has_init = spec.init_containers.as_ref().is_some_and(|i| !i.is_empty());
        let waiting = |reason: &str| State::Waiting {
            reason: reason.to_string(),
            message: None,
        };
        let model = Model {
            scheduling: Scheduling::Waiting,
            start_time: None,
            sandbox_ready: false,
            init: spec
                .init_containers
                .iter()
                .flatten()
                .map(|_| waiting("PodInitializing"))
                .collect(),
            main: spec
                .containers
                .iter()
                .map(|_| {
                    waiting(if has_init {
                        "PodInitializing"
                    } else {
                        "ContainerCreating"
                    })
                })
                .collect(),
            image_ids: HashMap::new(),
            terminal_allowed: false,
            lag_started: false,
            shown_phase: "Pending",
            transitions: HashMap::new(),
        };
        let handle = Arc::new(PodHandle {
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            pod,
            model: Mutex::new(model),
            containers: Mutex::new(HashMap::new()),
            terminate: watch::channel(None).0,
        });
        self.pods
            .lock()
            .expect("pods lock")
            .insert(handle.uid.clone(), handle.clone());
        shared.spawn(run_pod(shared.clone(), handle));
    }

    /// Deletion was requested (grace 0: the object is already gone; kill now).
    pub fn terminate(&self, uid: &str, grace: i64) {
        if let Some(handle) = self.pods.lock().expect("pods lock").get(uid) {
            handle
                .terminate
                .send_modify(|g| *g = Some(g.map_or(grace, |old| old.min(grace))));
        }
    }

    pub fn log_buffer(&self, uid: &str, container: &str) -> Option<Arc<LogBuffer>> {
        let pods = self.pods.lock().expect("pods lock");
        let handle = pods.get(uid)?;
        let containers = handle.containers.lock().expect("containers lock");
        containers.get(container).map(|c| c.logs.clone())
    }

    pub fn running(&self, uid: &str, container: &str) -> Option<Running> {
        let pods = self.pods.lock().expect("pods lock");
        let handle = pods.get(uid)?;
        let containers = handle.containers.lock().expect("containers lock");
        let running = containers
            .get(container)?
            .running
            .lock()
            .expect("running lock");
        running.clone()
    }

    /// The scripted failure of this pull attempt, if any (counting it down).
    pub fn scripted_pull_failure(&self, reference: &str) -> Option<String> {
        let mut scripts = self.scripts.lock().expect("scripts lock");
        let (message, remaining) = scripts.pull_failures.get_mut(reference)?;
        let message = message.clone();
        match remaining {
            None => {}
            Some(0) => {
                scripts.pull_failures.remove(reference);
                return None;
            }
            Some(n) => *n -= 1,
        }
        Some(message)
    }

    /// Wait `delay` (or until scripts change). True when deletion was requested.
    pub(super) async fn pause(
        &self,
        terminate: &mut watch::Receiver<Option<i64>>,
        delay: Duration,
    ) -> bool {
        if terminate.borrow().is_some() {
            return true;
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = self.poke.notified() => {}
            _ = terminate.changed() => {}
        }
        terminate.borrow().is_some()
    }
}

async fn run_pod(shared: Arc<Shared>, handle: Arc<PodHandle>) {
    let mut terminate = handle.terminate.subscribe();
    if schedule(&shared, &handle, &mut terminate).await {
        run_containers(&shared, &handle, &terminate).await;
    }
    // A finished pod stays until it is deleted.
    let _ = terminate.wait_for(|g| g.is_some()).await;
    handle.model.lock().expect("model lock").terminal_allowed = true;
    publish(&shared, &handle);
    let still_ours = shared
        .store
        .get("pods", &handle.namespace, &handle.name)
        .is_some_and(|p| p["metadata"]["uid"] == handle.uid.as_str());
    if still_ours {
        resources::remove_object(&shared, "pods", &handle.namespace, &handle.name, false);
    }
    shared
        .kubelet
        .pods
        .lock()
        .expect("pods lock")
        .remove(&handle.uid);
    let _ = std::fs::remove_dir_all(shared.pod_dir(&handle.uid).join("volumes"));
}

/// Volumes, init containers in order, then every container at once.
async fn run_containers(
    shared: &Arc<Shared>,
    handle: &Arc<PodHandle>,
    terminate: &watch::Receiver<Option<i64>>,
) {
    let mut waiting = terminate.clone();
    let pod_dir = shared.pod_dir(&handle.uid);
    let volumes = loop {
        match containers::setup_volumes(shared, &handle.pod, &pod_dir) {
            Ok(volumes) => break volumes,
            Err(message) => {
                event(
                    shared,
                    handle,
                    true,
                    "FailedMount",
                    &message,
                    "kubelet",
                    None,
                );
                if shared
                    .kubelet
                    .pause(&mut waiting, shared.options.pull_backoff)
                    .await
                {
                    return;
                }
            }
        }
    };
    handle.model.lock().expect("model lock").sandbox_ready = true;
    publish(shared, handle);

    for index in 0..handle.spec_containers(true).len() {
        let code = run_container(shared, handle, true, index, &volumes, terminate.clone()).await;
        if code != Some(0) {
            return; // failed (pod Failed with restartPolicy Never) or deleted
        }
    }
    if !handle.spec_containers(true).is_empty() {
        let mut model = handle.model.lock().expect("model lock");
        for state in &mut model.main {
            *state = State::Waiting {
                reason: "ContainerCreating".to_string(),
                message: None,
            };
        }
    }
    publish(shared, handle);
    let runs = (0..handle.spec_containers(false).len())
        .map(|index| run_container(shared, handle, false, index, &volumes, terminate.clone()));
    futures::future::join_all(runs).await;
}

fn set_state(handle: &PodHandle, init: bool, index: usize, state: State) {
    let mut model = handle.model.lock().expect("model lock");
    let states = if init {
        &mut model.init
    } else {
        &mut model.main
    };
    states[index] = state;
}

/// One container from pull to exit. `Some(exit code)`, or `None` when deleted before it ran.
async fn run_container(
    shared: &Arc<Shared>,
    handle: &Arc<PodHandle>,
    init: bool,
    index: usize,
    volumes: &HashMap<String, VolumeDir>,
    mut terminate: watch::Receiver<Option<i64>>,
) -> Option<i32> {
    let spec = handle.spec_containers(init)[index].clone();
    let name = spec.name.clone();
    let group = if init { "initContainers" } else { "containers" };
    let field_path = format!("spec.{group}{{{name}}}");
    let field_path = Some(field_path.as_str());
    let image_ref = spec.image.clone().unwrap_or_default();
    let policy = spec.image_pull_policy.clone().unwrap_or_default();
    let container = handle.container(&name);

    // Image pull, with back-off (pkg/kubelet/images/image_manager.go).
    let mut backoff = shared.options.pull_backoff;
    let image = loop {
        if terminate.borrow().is_some() {
            return None;
        }
        if policy == "Always" {
            event(
                shared,
                handle,
                false,
                "Pulling",
                &format!("Pulling image \"{image_ref}\""),
                "kubelet",
                field_path,
            );
        }
        match containers::pull(shared, &handle.pod, &image_ref, &policy) {
            Ok(image) => {
                let message = if policy == "Always" {
                    format!(
                        "Successfully pulled image \"{image_ref}\" in 1ms (1ms including waiting). Image size: 1024 bytes."
                    )
                } else {
                    format!("Container image \"{image_ref}\" already present on machine")
                };
                event(
                    shared, handle, false, "Pulled", &message, "kubelet", field_path,
                );
                let reference = normalize(&image_ref);
                let repository = reference.split('@').next().unwrap_or_default();
                let repository = repository
                    .rsplit_once(':')
                    .filter(|(_, tag)| !tag.contains('/'))
                    .map_or(repository, |(r, _)| r);
                handle.model.lock().expect("model lock").image_ids.insert(
                    name.clone(),
                    format!("{repository}@sha256:{}", digest_of(&reference)),
                );
                break image;
            }
            Err(PullError::NeverPull(message)) => {
                event(
                    shared,
                    handle,
                    true,
                    "ErrImageNeverPull",
                    &message,
                    "kubelet",
                    field_path,
                );
                set_state(
                    handle,
                    init,
                    index,
                    State::Waiting {
                        reason: "ErrImageNeverPull".into(),
                        message: Some(message),
                    },
                );
                publish(shared, handle);
                if shared.kubelet.pause(&mut terminate, backoff).await {
                    return None;
                }
            }
            Err(PullError::Failed(message)) => {
                event(
                    shared,
                    handle,
                    true,
                    "Failed",
                    &format!("Failed to pull image \"{image_ref}\": {message}"),
                    "kubelet",
                    field_path,
                );
                event(
                    shared,
                    handle,
                    true,
                    "Failed",
                    "Error: ErrImagePull",
                    "kubelet",
                    field_path,
                );
                set_state(
                    handle,
                    init,
                    index,
                    State::Waiting {
                        reason: "ErrImagePull".into(),
                        message: Some(message.clone()),
                    },
                );
                publish(shared, handle);
                if shared.kubelet.pause(&mut terminate, backoff).await {
                    return None;
                }
                event(
                    shared,
                    handle,
                    false,
                    "BackOff",
                    &format!("Back-off pulling image \"{image_ref}\""),
                    "kubelet",
                    field_path,
                );
                event(
                    shared,
                    handle,
                    true,
                    "Failed",
                    "Error: ImagePullBackOff",
                    "kubelet",
                    field_path,
                );
                set_state(
                    handle,
                    init,
                    index,
                    State::Waiting {
                        reason: "ImagePullBackOff".into(),
                        message: Some(format!(
                            "Back-off pulling image \"{image_ref}\": ErrImagePull: {message}"
                        )),
                    },
                );
                publish(shared, handle);
                if shared.kubelet.pause(&mut terminate, backoff).await {
                    return None;
                }
                backoff = (backoff * 2).min(shared.options.pull_backoff * 8);
            }
        }
    };

    // Container config (env from secrets and config maps, mounts).
    let container_dir = shared.pod_dir(&handle.uid).join("containers").join(&name);
    let termination_log = container_dir.join("termination-log");
    let _ = std::fs::create_dir_all(&container_dir);
    let _ = std::fs::write(&termination_log, b"");
    let _ = std::fs::set_permissions(
        &termination_log,
        std::os::unix::fs::PermissionsExt::from_mode(0o666),
    );
    let config = loop {
        let scripted = {
            let scripts = shared.kubelet.scripts.lock().expect("scripts lock");
            scripts
                .config_errors
                .iter()
                .find(|(p, c, _)| pattern_matches(p, &handle.name) && *c == name)
                .map(|(_, _, m)| m.clone())
        };
        let built = match scripted {
            Some(message) => Err(message),
            None => containers::sandbox_config(
                shared,
                &handle.pod,
                &spec,
                &image,
                volumes,
                &termination_log,
                &shared.options.node_ip,
            ),
        };
        match built {
            Ok(config) => break config,
            Err(message) => {
                event(
                    shared,
                    handle,
                    true,
                    "Failed",
                    &format!("Error: {message}"),
                    "kubelet",
                    field_path,
                );
                set_state(
                    handle,
                    init,
                    index,
                    State::Waiting {
                        reason: "CreateContainerConfigError".into(),
                        message: Some(message),
                    },
                );
                publish(shared, handle);
                if shared
                    .kubelet
                    .pause(&mut terminate, shared.options.pull_backoff)
                    .await
                {
                    return None;
                }
            }
        }
    };

    let id = random_hex64();
    let start_error = |why: String| {
        // containerd: the task could not start; runc's error, exit code 128.
        let message = format!(
            "failed to create containerd task: failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: error during container init: {why}: unknown"
        );
        event(
            shared,
            handle,
            true,
            "Failed",
            &format!("Error: {message}"),
            "kubelet",
            field_path,
        );
        set_state(
            handle,
            init,
            index,
            State::Terminated {
                code: 128,
                reason: "StartError".into(),
                message: Some(message),
                started: Timestamp::UNIX_EPOCH,
                finished: Timestamp::now(),
                id: id.clone(),
            },
        );
        container.logs.close();
        publish(shared, handle);
        Some(128)
    };
    if let Err(why) = sandbox::check_executable(&config) {
        return start_error(why);
    }
    event(
        shared,
        handle,
        false,
        "Created",
        &format!("Created container: {name}"),
        "kubelet",
        field_path,
    );
    let mut child = match shared.tools.container_command(&config).spawn() {
        Ok(child) => child,
        Err(e) => return start_error(e.to_string()),
    };
    let pid = child.id().map_or(0, |p| p as i32);
    shared.track_pid(pid);
    let ns_pid = sandbox::namespace_pid(pid as u32).await;
    if let Some(ns_pid) = ns_pid {
        shared.track_pid(ns_pid);
        *container.running.lock().expect("running lock") = Some(Running {
            ns_pid,
            env: config.env.clone(),
            workdir: config.workdir.clone(),
            identity: config.identity.clone(),
        });
    }
    let started = Timestamp::now();
    set_state(
        handle,
        init,
        index,
        State::Running {
            started,
            id: id.clone(),
        },
    );
    event(
        shared,
        handle,
        false,
        "Started",
        &format!("Started container {name}"),
        "kubelet",
        field_path,
    );
    publish(shared, handle);

    // stdout and stderr interleave into one log, in arrival order.
    let pumps: Vec<_> = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
    ]
    .into_iter()
    .flatten()
    .map(|mut reader| {
        let logs = container.logs.clone();
        tokio::spawn(async move {
            let mut buffer = vec![0u8; 16 * 1024];
            while let Ok(n) = reader.read(&mut buffer).await {
                if n == 0 {
                    break;
                }
                logs.push(Bytes::copy_from_slice(&buffer[..n]));
            }
        })
    })
    .collect();

    // Wait for the exit; on deletion SIGTERM to PID 1, SIGKILL after the grace period
    // (pkg/kubelet/kuberuntime/kuberuntime_container.go killContainer).
    let target = ns_pid.unwrap_or(pid);
    let mut deadline: Option<tokio::time::Instant> = None;
    let mut stopping = false;
    let status = loop {
        let grace = *terminate.borrow();
        if let Some(grace) = grace
            && !stopping
        {
            stopping = true;
            event(
                shared,
                handle,
                false,
                "Killing",
                &format!("Stopping container {name}"),
                "kubelet",
                field_path,
            );
            if grace > 0 {
                sandbox::signal(target, rustix::process::Signal::TERM);
            }
            deadline = Some(tokio::time::Instant::now() + Duration::from_secs(grace as u64));
        }
        let until_deadline = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            status = child.wait() => break status,
            changed = terminate.changed() => {
                if changed.is_err() {
                    deadline = Some(tokio::time::Instant::now());
                } else if let Some(grace) = *terminate.borrow()
                    && stopping
                {
                    let at = tokio::time::Instant::now() + Duration::from_secs(grace as u64);
                    deadline = Some(deadline.map_or(at, |d| d.min(at)));
                }
            }
            _ = until_deadline => {
                // SIGKILL to PID 1 ends the whole PID namespace; bubblewrap then exits with 137.
                sandbox::signal(target, rustix::process::Signal::KILL);
                deadline = None;
            }
        }
    };
    // The container is stopped when its PID 1 is: the kernel tears down the PID namespace
    // (every exec'd process) before PID 1 becomes a zombie.
    if let Some(ns_pid) = ns_pid {
        for _ in 0..1000 {
            if sandbox::is_gone(ns_pid) {
                break;
            }
            sandbox::signal(ns_pid, rustix::process::Signal::KILL);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    *container.running.lock().expect("running lock") = None;
    let code = status
        .ok()
        .and_then(|s| s.code().or_else(|| s.signal().map(|sig| 128 + sig)))
        .unwrap_or(137);
    let finished = Timestamp::now();
    for pump in pumps {
        let _ = tokio::time::timeout(Duration::from_secs(2), pump).await;
    }
    container.logs.close();
    shared.untrack_pid(pid);
    if let Some(ns_pid) = ns_pid {
        shared.untrack_pid(ns_pid);
    }

    // The termination message: the file (at most 4096 bytes), or with FallbackToLogsOnError
    // and a failure, the log's last 80 lines (at most 2048 bytes).
    let mut message = std::fs::read(&termination_log).unwrap_or_default();
    message.truncate(4096);
    if message.is_empty()
        && code != 0
        && spec.termination_message_policy.as_deref() == Some("FallbackToLogsOnError")
    {
        let log = container.logs.contents();
        let text = String::from_utf8_lossy(&log);
        let lines: Vec<&str> = text.lines().collect();
        let mut tail = lines[lines.len().saturating_sub(80)..]
            .join("\n")
            .into_bytes();
        if tail.len() > 2048 {
            tail = tail[tail.len() - 2048..].to_vec();
        }
        message = tail;
    }
    set_state(
        handle,
        init,
        index,
        State::Terminated {
            code,
            reason: if code == 0 { "Completed" } else { "Error" }.to_string(),
            message: Some(String::from_utf8_lossy(&message).into_owned()),
            started,
            finished,
            id,
        },
    );
    publish(shared, handle);
    Some(code)
}
