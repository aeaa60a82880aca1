//! An in-process fake Kubernetes API server and node that the real `kube::Client` talks to over
//! HTTP on 127.0.0.1, through a generated kubeconfig, so the code under test takes its
//! production path. Its fidelity is its whole value: every behaviour cites the Kubernetes
//! source it copies. It owns the public test API; the parts live in:
//!
//! - `server.rs`: HTTP/1 accept loop, routing, auth, RBAC enforcement, faults, request log;
//! - `resources.rs`: create/get/list/watch/update/patch/delete semantics, GC, SSAR;
//! - `store.rs`: objects, the resourceVersion counter, watch history and fan-out;
//! - `scheduler.rs`: binding, or `Unschedulable` with the scheduler's message; taints,
//!   tolerations and cordon; `spec.nodeName` bypasses it;
//! - `kubelet.rs`: per-pod worker: volumes, containers, deletion, scripts;
//! - `pod_status.rs`: phase, conditions, container statuses, publishing; `events.rs`: Events;
//! - `containers.rs`: image pull, volumes, env, command resolution for one container;
//! - `sandbox.rs`: bubblewrap container processes and nsenter execs;
//! - `exec.rs`: `pods/exec` over WebSocket (channel protocol v4/v5);
//! - `logs.rs`: container logs and `pods/log`;
//! - `admission.rs`: Pod Security admission from a namespace's `enforce` label;
//! - `images.rs`, `selectors.rs`, `validation.rs`, `status.rs`.
//!
//! # Use
//! ```ignore
//! let cluster = FakeCluster::start().await;          // or start_with(FakeClusterOptions { .. })
//! cluster.images().register_common();               // busybox, alpine, ubuntu:22.04, ... = host /
//! let client = cluster.client().await;              // the test's own client: an admin
//! let hook = cluster.hook_client().await;           // the hook's service account (kubeconfig_path())
//! let pods: Api<Pod> = Api::namespaced(client, cluster.namespace());
//! cluster.kubelet().hold("job-*");                   // scripting (see KubeletScript)
//! cluster.kubelet().taint("dedicated", "runners", "NoSchedule"); // kubectl taint; untaint(key)
//! cluster.kubelet().cordon();                        // kubectl cordon; uncordon()
//! cluster.faults().fail_next(1, "GET", "/pods/x", 500, "etcd timeout");
//! cluster.faults().api_down(Duration::from_secs(10)); // an API server restart: port closed, all cut
//! cluster.faults().cut_execs();                       // or cut_log_streams(): mid-stream drops
//! cluster.rbac().deny("pods/exec", "create");        // the hook's Role: ARC's chart Role by default
//! cluster.label_namespace("pod-security.kubernetes.io/enforce", "restricted"); // Pod Security
//! cluster.requests();                                // what the clients asked, in order
//! cluster.refused_hook_requests();                   // what the Role refused the hook
//! ```
//!
//! # Faithful
//! Status bodies (404/409/422 with field paths/410/403/401), resourceVersion semantics, watch
//! replay/410/selector transitions/initial-events bookmark, graceful pod deletion with
//! SIGTERM→SIGKILL and PID-1 signal semantics, GC of dependents, kubelet state machine and
//! messages (ErrImagePull/ImagePullBackOff/CreateContainerConfigError/StartError/Unschedulable),
//! scheduler messages byte for byte (`FitError` with its double period, NodeUnschedulable,
//! TaintToleration with `Toleration.ToleratesTaint` matching, NodeAffinity, a missing PVC), a
//! pod with `spec.nodeName` skipping the scheduler (no `Scheduled` Event, runs despite taints and
//! cordon), waiting pods scheduled at once when the node's taints or cordon change,
//! pod phase rules (`getPhase`), pods/log errors and `timestamps`/`sinceTime`, exec protocol (v5
//! close, v4 whole-socket close, Status frames, the different error paths of v5 (apiserver
//! translator) and v4 (kubelet)), an exec's command running on when its client goes away; RBAC
//! as the authorizer does it: the hook's service account is checked per resource, subresource
//! and verb against a Role (ARC's chart Role unless a test changes it), the verb taken from the
//! request as `requestinfo.go` does (a WebSocket exec GET is `get` on `pods/exec`, as on 1.28),
//! with the authorizer's exact message (named when a field selector names the object); an API
//! server that goes away (refused connections, every watch, log stream and exec cut at once);
//! Pod Security admission from a namespace's `pod-security.kubernetes.io/enforce` label, with the
//! API server's refusal text (the checks the hook's pods can trip, `admission.rs`).
//!
//! # Simplified (and why)
//! One node, without a Node object in the API (taints and cordon are set through
//! `KubeletScript`; the hook never reads nodes); `NoExecute` taints neither evict running pods
//! nor make the kubelet reject a pod bound by `spec.nodeName`, and resources are not counted
//! (no `Insufficient cpu`, no `OutOfcpu`; scripts stand in: `unschedulable`); no restarts
//! (containers run as with `restartPolicy: Never`, init "sidecars" with `restartPolicy: Always`
//! are plain init containers; enough for a hook); no probes (ready =
//! running); the rootfs is read-only (writes outside volumes, `/tmp` and new directories fail
//! with EROFS where a real container has a writable layer: bubblewrap 0.8 has no overlay);
//! processes run as the container's `runAsUser`/`runAsGroup` (else root: test images set no
//! `USER`) with `fsGroup`/`supplementalGroups` as supplementary groups, the capability bounding
//! set (containerd's defaults, `drop`/`add`, `privileged`) and `no_new_privs`, but only when the
//! tests run as root (otherwise as the test's user; no LSM or seccomp profile either); emptyDirs
//! and claims get the `fsGroup` (group, setgid) as the kubelet gives them; pods share the host
//! network (podIP = node IP); no service-account token is injected and projected/downwardAPI
//! volumes are empty; PVCs bind at once; strategic-merge and apply patches are applied as JSON
//! merge patches, JSON patch is 415; `continue` tokens page the current state, not a snapshot;
//! Foreground deletion is treated as Background; exec with `tty=true` gets no pty; only the
//! WebSocket exec protocols v4/v5 are spoken (no SPDY, no v1-v3).

mod admission;
mod containers;
mod events;
mod exec;
mod images;
mod kubelet;
mod logs;
mod pod_status;
mod resources;
mod sandbox;
mod scheduler;
mod selectors;
mod server;
mod status;
mod store;
mod validation;

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use images::{ImageSpec, Images};
pub use kubelet::KubeletScript;
pub use server::RequestRecord;

use kubelet::Kubelet;
use sandbox::Tools;
use store::Store;

/// How a fake cluster behaves. `Default` is a 1.28 cluster as ARC users run it (v4 exec, the chart Role), with short delays.
#[derive(Clone, Debug)]
pub struct FakeClusterOptions {
    /// The namespace of the kubeconfig context (it exists, as does `default`).
    pub namespace: String,
    /// Serve `v5.channel.k8s.io` (API server ≥1.30 stream translator). `false` (the default)
    /// is a 1.28 cluster: only `v4.channel.k8s.io`, negotiated by the kubelet, and a bare 403 for
    /// a handshake that offers nothing it serves.
    pub exec_v5: bool,
    /// Delay between a container's terminated state and the pod's terminal phase (a real node
    /// shows ~1.1 s, docs/user/build-pod-security.md).
    pub phase_lag: Duration,
    /// First image-pull back-off (doubles, capped at 8×).
    pub pull_backoff: Duration,
    /// Changes kept for watch resumption; older resourceVersions get 410 Expired.
    pub watch_history: usize,
    pub node_name: String,
    /// The node's IP, also used as pod IP (pods share the host network).
    pub node_ip: String,
    /// Labels of the node, for nodeSelector / required node affinity.
    pub node_labels: BTreeMap<String, String>,
    /// Bearer token of the hook's service account, in [`FakeCluster::kubeconfig_path`]; its
    /// requests are authorized by the Role in `FakeCluster::rbac` (ARC's chart Role unless a
    /// test changes it). Other tokens than these two get 401.
    pub token: String,
    /// The service account that `token` belongs to (named as in the authorizer's messages).
    pub service_account: String,
    /// Bearer token of the test's own client ([`FakeCluster::client`]): may do anything, like a
    /// cluster admin setting up what a test needs.
    pub admin_token: String,
}

impl Default for FakeClusterOptions {
    fn default() -> Self {
        let node_name = "fake-node".to_string();
        let node_labels = [
            ("kubernetes.io/hostname", node_name.as_str()),
            ("kubernetes.io/os", "linux"),
            ("kubernetes.io/arch", "amd64"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        Self {
            namespace: "fake-ns".to_string(),
            exec_v5: false,
            phase_lag: Duration::from_millis(150),
            pull_backoff: Duration::from_millis(100),
            watch_history: 1000,
            node_name,
            node_ip: "127.0.0.1".to_string(),
            node_labels,
            token: "fake-token".to_string(),
            service_account: "arc-runner-set-gha-rs-kube-mode".to_string(),
            admin_token: "fake-admin-token".to_string(),
        }
    }
}

/// A scripted failure of the next matching requests.
#[derive(Clone, Debug)]
pub struct Fault {
    pub remaining: usize,
    pub method: String,
    pub path_contains: String,
    pub code: u16,
    pub message: String,
}

/// State shared by the server, the kubelet and the test handles.
pub struct Shared {
    pub options: FakeClusterOptions,
    pub store: Store,
    pub images: Images,
    pub kubelet: Kubelet,
    pub rbac: Mutex<Policy>,
    /// Labels of each namespace (`kubectl label namespace`), read by Pod Security admission.
    pub namespace_labels: Mutex<BTreeMap<String, BTreeMap<String, String>>>,
    pub faults: Mutex<Vec<Fault>>,
    /// Connections to cut (an API server restart, a dropped exec or log stream).
    pub cuts: tokio::sync::broadcast::Sender<Cut>,
    /// While set and in the future, the API server is gone: its port refuses connections.
    pub down_until: Mutex<Option<std::time::Instant>>,
    /// Followed log streams stop delivering but stay open (a half-open connection).
    pub stall_logs: std::sync::atomic::AtomicBool,
    pub requests: Mutex<Vec<RequestRecord>>,
    pub tools: Tools,
    /// Root of everything on disk (pod dirs, PVC dirs, kubeconfig).
    pub root: PathBuf,
    tasks: Mutex<Vec<tokio::task::AbortHandle>>,
    /// Host pids of live sandboxes and execs, killed when the cluster is dropped.
    pids: Mutex<HashSet<i32>>,
}

impl Shared {
    /// Spawn a task that dies with the cluster.
    pub fn spawn(&self, future: impl Future<Output = ()> + Send + 'static) {
        let handle = tokio::spawn(future);
        let mut tasks = self.tasks.lock().expect("tasks lock");
        tasks.retain(|t| !t.is_finished());
        tasks.push(handle.abort_handle());
    }

    pub fn track_pid(&self, pid: i32) {
        self.pids.lock().expect("pids lock").insert(pid);
    }

    pub fn untrack_pid(&self, pid: i32) {
        self.pids.lock().expect("pids lock").remove(&pid);
    }

    pub fn pvc_dir(&self, namespace: &str, claim: &str) -> PathBuf {
        self.root.join("pvcs").join(namespace).join(claim)
    }

    pub fn pod_dir(&self, uid: &str) -> PathBuf {
        self.root.join("pods").join(uid)
    }
}

/// A running fake cluster. Dropping it kills every container and exec process and removes its
/// files.
pub struct FakeCluster {
    shared: Arc<Shared>,
    addr: SocketAddr,
    kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
}

impl FakeCluster {
    /// Start with default options.
    pub async fn start() -> Self {
        Self::start_with(FakeClusterOptions::default()).await
    }

    pub async fn start_with(options: FakeClusterOptions) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("fake-k8s-")
            .tempdir()
            .expect("a temporary directory for the fake cluster");
        let root = dir.path().to_path_buf();
        let tools = Tools::find().expect("bubblewrap and nsenter are installed");
        let shared = Arc::new(Shared {
            store: Store::new(&["default", &options.namespace], options.watch_history),
            images: Images::default(),
            kubelet: Kubelet::default(),
            rbac: Mutex::new(Policy::chart_role()),
            namespace_labels: Mutex::new(BTreeMap::new()),
            faults: Mutex::new(Vec::new()),
            cuts: tokio::sync::broadcast::channel(16).0,
            down_until: Mutex::new(None),
            stall_logs: std::sync::atomic::AtomicBool::new(false),
            requests: Mutex::new(Vec::new()),
            tools,
            root: root.clone(),
            tasks: Mutex::new(Vec::new()),
            pids: Mutex::new(HashSet::new()),
            options,
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("listener address");
        shared.spawn(server::serve(shared.clone(), listener));

        let kubeconfig = root.join("kubeconfig");
        let write_kubeconfig = |path: &Path, token: &str| {
            std::fs::write(
                path,
                format!(
                    "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://{addr}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: {ns}\ncurrent-context: fake\nusers:\n- name: fake\n  user:\n    token: {token}\n",
                    ns = shared.options.namespace,
                ),
            )
            .expect("write a kubeconfig");
        };
        write_kubeconfig(&kubeconfig, &shared.options.token);
        write_kubeconfig(&root.join("admin-kubeconfig"), &shared.options.admin_token);
        Self {
            shared,
            addr,
            kubeconfig,
            _dir: dir,
        }
    }

    /// A kubeconfig whose current context points at this server and namespace, with the hook's
    /// service-account token (authorized by the Role in [`FakeCluster::rbac`]).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    fn admin_kubeconfig_path(&self) -> PathBuf {
        self.kubeconfig.with_file_name("admin-kubeconfig")
    }

    pub fn server_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A `kube::Client` for the test itself, allowed everything (a cluster admin), built from a
    /// generated kubeconfig exactly as production builds one.
    pub async fn client(&self) -> kube::Client {
        Self::client_from(&self.admin_kubeconfig_path()).await
    }

    /// A `kube::Client` with the hook's service-account token: what the hook may do.
    pub async fn hook_client(&self) -> kube::Client {
        Self::client_from(&self.kubeconfig).await
    }

    async fn client_from(path: &Path) -> kube::Client {
        let kubeconfig = kube::config::Kubeconfig::read_from(path).expect("read the kubeconfig");
        let config = kube::Config::from_custom_kubeconfig(
            kubeconfig,
            &kube::config::KubeConfigOptions::default(),
        )
        .await
        .expect("a client config from the kubeconfig");
        kube::Client::try_from(config).expect("a kube client")
    }

    pub fn namespace(&self) -> &str {
        &self.shared.options.namespace
    }

    pub fn options(&self) -> &FakeClusterOptions {
        &self.shared.options
    }

    /// The node's image store: register what pods may pull.
    pub fn images(&self) -> &Images {
        &self.shared.images
    }

    /// Script the scheduler and kubelet.
    pub fn kubelet(&self) -> KubeletScript<'_> {
        KubeletScript::new(&self.shared)
    }

    /// Inject faults.
    pub fn faults(&self) -> Faults<'_> {
        Faults(&self.shared)
    }

    /// Deny (resource[/subresource], verb) pairs: SSARs answer `allowed: false` and requests
    /// get 403 with the RBAC authorizer's message.
    pub fn rbac(&self) -> Rbac<'_> {
        Rbac(&self.shared)
    }

    /// `kubectl label namespace <the test namespace> key=value --overwrite`: a
    /// `pod-security.kubernetes.io/enforce` label makes pod creation (and dry runs) pass Pod
    /// Security admission at that level.
    pub fn label_namespace(&self, key: &str, value: &str) {
        self.shared
            .namespace_labels
            .lock()
            .expect("namespace labels lock")
            .entry(self.namespace().to_string())
            .or_default()
            .insert(key.to_string(), value.to_string());
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.requests.lock().expect("requests lock").clone()
    }

    /// The hook's requests that the authorizer refused (403), except watches: a hook that may
    /// not watch pods learns it from one refused watch and polls instead. Empty when the Role
    /// the hook runs under was enough.
    pub fn refused_hook_requests(&self) -> Vec<RequestRecord> {
        self.requests()
            .into_iter()
            .filter(|r| !r.admin && r.status == 403 && !r.is_watch())
            .collect()
    }

    /// The hook's watch requests that were answered (not refused).
    pub fn hook_watches(&self) -> Vec<RequestRecord> {
        self.requests()
            .into_iter()
            .filter(|r| !r.admin && r.is_watch() && r.status != 403)
            .collect()
    }

    /// The host directory backing PVC `claim` (one node: shared by every pod that mounts it).
    pub fn pvc_dir(&self, namespace: &str, claim: &str) -> PathBuf {
        let dir = self.shared.pvc_dir(namespace, claim);
        std::fs::create_dir_all(&dir).expect("create the PVC directory");
        dir
    }

    /// The host directory of a pod's volume (its emptyDir, secret files, or its PVC's dir).
    ///
    /// # Panics
    /// When the pod or volume does not exist.
    pub fn pod_volume_dir(&self, namespace: &str, pod: &str, volume: &str) -> PathBuf {
        let object = self
            .shared
            .store
            .get("pods", namespace, pod)
            .unwrap_or_else(|| panic!("pod {namespace}/{pod} does not exist"));
        let spec_volume = object["spec"]["volumes"]
            .as_array()
            .and_then(|vs| vs.iter().find(|v| v["name"] == volume))
            .unwrap_or_else(|| panic!("pod {pod} has no volume {volume}"));
        if let Some(claim) = spec_volume["persistentVolumeClaim"]["claimName"].as_str() {
            return self.pvc_dir(namespace, claim);
        }
        let uid = object["metadata"]["uid"].as_str().unwrap_or_default();
        self.shared.pod_dir(uid).join("volumes").join(volume)
    }

    /// How many sandbox and exec processes are alive.
    pub fn live_processes(&self) -> usize {
        let pids = self.shared.pids.lock().expect("pids lock");
        pids.iter().filter(|pid| !sandbox::is_gone(**pid)).count()
    }
}

impl Drop for FakeCluster {
    fn drop(&mut self) {
        for task in self.shared.tasks.lock().expect("tasks lock").drain(..) {
            task.abort();
        }
        let pids: Vec<i32> = self
            .shared
            .pids
            .lock()
            .expect("pids lock")
            .drain()
            .collect();
        for pid in &pids {
            sandbox::signal(*pid, rustix::process::Signal::KILL);
        }
        // Let them die before the temporary directory goes (bounded: 2 s).
        for _ in 0..200 {
            if pids.iter().all(|pid| sandbox::is_gone(*pid)) {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Which open connections a fault cuts. A cut drops the TCP connection, as a restarting API
/// server or a broken network does: the client sees an error, never a clean end of stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cut {
    /// Every connection (the API server went away).
    All,
    /// Every exec WebSocket; the commands go on running in their containers, as on a real node.
    Execs,
    /// Every followed log stream.
    Logs,
}

/// Fault injection (`FakeCluster::faults`).
pub struct Faults<'a>(&'a Shared);

impl Faults<'_> {
    /// The API server goes away for `duration`, as in a restart or a control-plane upgrade:
    /// every open connection (watches, log streams, exec WebSockets) is cut at once and new
    /// connections are refused until the time is up. Containers and their processes go on.
    pub fn api_down(&self, duration: Duration) {
        *self.0.down_until.lock().expect("down lock") = Some(std::time::Instant::now() + duration);
        let _ = self.0.cuts.send(Cut::All);
    }

    /// Cut every exec connection now (the commands keep running).
    pub fn cut_execs(&self) {
        let _ = self.0.cuts.send(Cut::Execs);
    }

    /// Followed log streams go silent from now on without ending, as on a half-open TCP
    /// connection: nothing arrives, and nothing says so.
    pub fn stall_log_streams(&self) {
        self.0
            .stall_logs
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Cut every followed log stream now, mid-stream.
    pub fn cut_log_streams(&self) {
        let _ = self.0.cuts.send(Cut::Logs);
    }

    /// End every open watch stream now (as an API server restart would). Clients resume from
    /// their last resourceVersion.
    pub fn drop_watches(&self) {
        self.0.store.drop_watches();
    }

    /// Forget the watch history: resuming from an older resourceVersion gets 410 Expired.
    pub fn compact_history(&self) {
        self.0.store.compact();
    }

    /// Fail the next `count` requests whose method is `method` and whose path (with query)
    /// contains `path_contains`, with a `Status` of `code` (500 InternalError, 503
    /// ServiceUnavailable, 504 Timeout, 429 TooManyRequests + Retry-After).
    ///
    /// # Caveats
    /// kube's client retries 429/503/504 by itself (up to 15 times): such a fault is only seen
    /// by the caller when `count` exceeds that.
    pub fn fail_next(
        &self,
        count: usize,
        method: &str,
        path_contains: &str,
        code: u16,
        message: &str,
    ) {
        self.0.faults.lock().expect("faults lock").push(Fault {
            remaining: count,
            method: method.to_uppercase(),
            path_contains: path_contains.to_string(),
            code,
            message: message.to_string(),
        });
    }
}

/// Who a request comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Identity {
    /// The test's own client: allowed everything.
    Admin,
    /// The hook's service account: authorized by the [`Policy`].
    ServiceAccount,
}

/// The RBAC authorizer's view of the hook's service account: the (resource[/subresource],
/// verb) pairs its Role grants, as `rbac.authorization.k8s.io` rules resolve them (no
/// wildcards needed here). `None` grants everything.
#[derive(Clone, Debug)]
pub struct Policy {
    granted: Option<HashSet<(String, String)>>,
}

/// ARC's `gha-runner-scale-set` Role for `containerMode: kubernetes`, the default of every test.
pub const CHART_ROLE_YAML: &str = include_str!("../../fixtures/rbac/arc-kube-mode-role.yaml");

impl Policy {
    /// The Role in `yaml` (the first document of the file).
    pub fn from_role(yaml: &str) -> Policy {
        use serde::Deserialize as _;
        let first = serde_yaml_ng::Deserializer::from_str(yaml)
            .next()
            .expect("a YAML document");
        let role = serde_yaml_ng::Value::deserialize(first).expect("a valid Role");
        let mut granted = HashSet::new();
        for rule in role["rules"].as_sequence().expect("rules") {
            let list = |key: &str| -> Vec<String> {
                rule[key]
                    .as_sequence()
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            };
            for resource in list("resources") {
                for verb in list("verbs") {
                    granted.insert((resource.clone(), verb));
                }
            }
        }
        Policy {
            granted: Some(granted),
        }
    }

    pub fn chart_role() -> Policy {
        Policy::from_role(CHART_ROLE_YAML)
    }

    /// The (resource[/subresource], verb) pairs granted, sorted; `None` when everything is.
    pub fn rules(&self) -> Option<Vec<(String, String)>> {
        let mut rules: Vec<_> = self.granted.as_ref()?.iter().cloned().collect();
        rules.sort();
        Some(rules)
    }

    pub fn allows(&self, resource: &str, verb: &str) -> bool {
        self.granted
            .as_ref()
            .is_none_or(|g| g.contains(&(resource.to_string(), verb.to_string())))
    }
}

/// RBAC scripting (`FakeCluster::rbac`). The hook's service account starts with ARC's chart
/// Role ([`CHART_ROLE_YAML`]).
pub struct Rbac<'a>(&'a Shared);

impl Rbac<'_> {
    fn edit(&self, change: impl FnOnce(&mut Policy)) {
        change(&mut self.0.rbac.lock().expect("rbac lock"));
    }

    /// Authorize the hook with the Role in `yaml` instead.
    pub fn use_role(&self, yaml: &str) {
        self.edit(|p| *p = Policy::from_role(yaml));
    }

    /// Grant the hook everything (no Role).
    pub fn allow_all(&self) {
        self.edit(|p| p.granted = None);
    }

    /// Take `verb` on `resource` (`pods`, `pods/exec`, `secrets`, ...) away from the hook.
    pub fn deny(&self, resource: &str, verb: &str) {
        self.edit(|p| {
            if let Some(granted) = &mut p.granted {
                granted.remove(&(resource.to_string(), verb.to_string()));
            } else {
                panic!("deny() needs a Role; call use_role() first");
            }
        });
    }

    /// Grant the hook `verb` on `resource`.
    pub fn allow(&self, resource: &str, verb: &str) {
        self.edit(|p| {
            if let Some(granted) = &mut p.granted {
                granted.insert((resource.to_string(), verb.to_string()));
            }
        });
    }

    pub fn is_allowed(&self, resource: &str, verb: &str) -> bool {
        self.0
            .rbac
            .lock()
            .expect("rbac lock")
            .allows(resource, verb)
    }
}
