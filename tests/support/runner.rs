//! The runner side of an end-to-end test: a runner home directory laid out as the GitHub Actions
//! runner lays it out (`_work/{_temp,_actions,_tool,<repo>/<repo>}`, `externals`), a runner pod
//! in the fake cluster, the runner image (BusyBox plus `externals`, for the `fs-init` init
//! container), and a way to call the hook binary exactly as the runner does: one JSON line on
//! stdin, a pre-created empty response file, the runner's environment.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret};
use kube::Api;
use kube::api::PostParams;
use kube::runtime::watcher;
use serde_json::{Value, json};

use super::fake_api::{FakeCluster, ImageSpec};

/// The hook binary under test.
pub const HOOK: &str = env!("CARGO_BIN_EXE_runner-k8s-hook");

/// The runner image the hook uses for `fs-init` (its default `ACTIONS_RUNNER_IMAGE`).
pub const RUNNER_IMAGE: &str = "ghcr.io/actions/actions-runner:latest";

/// Name of the repository directory (`_work/<repo>/<repo>`).
pub const REPO: &str = "repo";

/// Which data plane the test runner is set up for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The runner pod mounts the `<pod>-work` claim: volume mode.
    Volume,
    /// No work claim: copy mode.
    Copy,
}

/// A runner, its directories and its pod.
pub struct Runner {
    /// The runner pod's name (`ACTIONS_RUNNER_POD_NAME`).
    pub pod: String,
    /// `<home>/_work`.
    pub work: PathBuf,
    /// `<home>/externals`.
    pub externals: PathBuf,
    /// Keeps the temporary directories alive.
    _dirs: Vec<tempfile::TempDir>,
    kubeconfig: PathBuf,
    home: PathBuf,
}

impl Runner {
    /// Set up a runner called `pod` in the fake `cluster`, for `mode`: its directories, the
    /// runner image, the runner pod (and in volume mode its work claim, whose backing directory
    /// is the runner's `_work`).
    pub async fn start(cluster: &FakeCluster, pod: &str, mode: Mode) -> Runner {
        Runner::start_tolerating(cluster, pod, mode, json!([])).await
    }

    /// As [`Runner::start`], with these `tolerations` on the runner pod (as an ARC pod template
    /// gives them, for a tainted runner node pool). Returns once the runner pod is on the node,
    /// so the hook sees its `spec.nodeName`.
    pub async fn start_tolerating(
        cluster: &FakeCluster,
        pod: &str,
        mode: Mode,
        tolerations: Value,
    ) -> Runner {
        let runner = Runner::start_pod(cluster, pod, mode, tolerations.clone()).await;
        if tolerations.as_array().is_some_and(|t| !t.is_empty()) {
            let pods: Api<Pod> = Api::namespaced(cluster.client().await, cluster.namespace());
            for _ in 0..200 {
                let current = pods.get(pod).await.expect("the runner pod exists");
                if current.spec.and_then(|s| s.node_name).is_some() {
                    return runner;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            panic!("the runner pod {pod} was not scheduled within 10 s");
        }
        runner
    }

    async fn start_pod(cluster: &FakeCluster, pod: &str, mode: Mode, tolerations: Value) -> Runner {
        let home = tempfile::tempdir().expect("temp dir");
        let ns = cluster.namespace().to_owned();
        let client = cluster.client().await;
        let claim = format!("{pod}-work");

        // The runner's _work: in volume mode it *is* the work volume.
        let work = match mode {
            Mode::Volume => {
                let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
                let pvc: PersistentVolumeClaim = serde_json::from_value(json!({
                    "metadata": {"name": claim},
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
                }))
                .unwrap();
                pvcs.create(&PostParams::default(), &pvc)
                    .await
                    .expect("create work claim");
                cluster.pvc_dir(&ns, &claim)
            }
            Mode::Copy => home.path().join("_work"),
        };
        let runner = Runner::layout(home, work, pod, cluster.kubeconfig_path());

        // The runner image: BusyBox as its shell and tools, and the runner's externals.
        let rootfs = runner.home.join("runner-image");
        busybox_rootfs(&rootfs);
        copy_dir(&runner.externals, &rootfs.join("home/runner/externals"));
        cluster.images().register(
            RUNNER_IMAGE,
            ImageSpec::host(&["sleep", "3600"]).with_rootfs(&rootfs),
        );

        // The runner pod itself, as ARC creates it.
        let volume = match mode {
            Mode::Volume => json!({"name": "work", "persistentVolumeClaim": {"claimName": claim}}),
            Mode::Copy => json!({"name": "work", "emptyDir": {}}),
        };
        let pods: Api<Pod> = Api::namespaced(client, &ns);
        let mut object = runner_pod(pod, RUNNER_IMAGE, volume);
        if let Some(spec) = object.spec.as_mut() {
            spec.tolerations = serde_json::from_value(tolerations).expect("tolerations");
            spec.tolerations = spec.tolerations.take().filter(|t| !t.is_empty());
        }
        pods.create(&PostParams::default(), &object)
            .await
            .expect("create runner pod");
        runner
    }

    /// The runner's directories under `home`, with `work` as `_work`, as the runner lays them
    /// out before a job: `_temp` with `_github_home`, `_github_workflow/event.json`,
    /// `_runner_file_commands`; a downloaded action under `_actions`; the checked-out
    /// repository; `externals` with node.
    pub fn layout(home: tempfile::TempDir, work: PathBuf, pod: &str, kubeconfig: &Path) -> Runner {
        let temp = work.join("_temp");
        for dir in [
            temp.join("_github_home"),
            temp.join("_github_workflow"),
            temp.join("_runner_file_commands"),
            temp.join("_runner_hook_responses"),
            work.join("_actions/octo-org/hello/v1"),
            work.join("_tool"),
            work.join(REPO).join(REPO),
        ] {
            std::fs::create_dir_all(&dir).unwrap();
        }
        std::fs::write(
            temp.join("_github_workflow/event.json"),
            r#"{"ref":"refs/heads/main","repository":{"full_name":"octo-org/repo"}}"#,
        )
        .unwrap();
        std::fs::write(work.join(REPO).join(REPO).join("README.md"), "# repo\n").unwrap();
        std::fs::write(
            work.join("_actions/octo-org/hello/v1/action.yml"),
            "name: hello\n",
        )
        .unwrap();
        let externals = home.path().join("externals");
        std::fs::create_dir_all(externals.join("node20/bin")).unwrap();
        std::fs::write(
            externals.join("node20/bin/node"),
            "#!/bin/sh\necho node20\n",
        )
        .unwrap();
        let home_path = home.path().to_owned();
        Runner {
            pod: pod.to_owned(),
            work,
            externals,
            _dirs: vec![home],
            kubeconfig: kubeconfig.to_owned(),
            home: home_path,
        }
    }

    /// `_work/_temp`.
    pub fn temp(&self) -> PathBuf {
        self.work.join("_temp")
    }

    /// `_work/<repo>/<repo>`.
    pub fn workspace(&self) -> PathBuf {
        self.work.join(REPO).join(REPO)
    }

    /// A fixture request with the runner's paths (`/home/runner/_work`, `/home/runner/externals`)
    /// replaced by this runner's, and `responseFile` pointing at a fresh empty file.
    pub fn request(&self, fixture: &str) -> (Value, PathBuf) {
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join(format!("tests/fixtures/requests/{fixture}.json")),
        )
        .expect("fixture");
        let text = text
            .replace("/home/runner/_work", self.work.to_str().unwrap())
            .replace("/home/runner/externals", self.externals.to_str().unwrap());
        let mut request: Value = serde_json::from_str(&text).unwrap();
        let response = self.new_response_file();
        request["responseFile"] = response.to_string_lossy().into_owned().into();
        (request, response)
    }

    /// An empty response file, as the runner creates before each hook call.
    pub fn new_response_file(&self) -> PathBuf {
        let dir = self.temp().join("_runner_hook_responses");
        let path = dir.join(format!("{}.json", random_hex()));
        std::fs::write(&path, "").unwrap();
        path
    }

    /// The environment the runner gives the hook.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("ACTIONS_RUNNER_POD_NAME".into(), self.pod.clone()),
            (
                "KUBECONFIG".into(),
                self.kubeconfig.to_string_lossy().into_owned(),
            ),
            ("HOME".into(), self.home.to_string_lossy().into_owned()),
            (
                "RUNNER_WORKSPACE".into(),
                self.work.join(REPO).to_string_lossy().into_owned(),
            ),
            (
                "RUNNER_TEMP".into(),
                self.temp().to_string_lossy().into_owned(),
            ),
            (
                "GITHUB_WORKSPACE".into(),
                self.workspace().to_string_lossy().into_owned(),
            ),
            (
                "ACTIONS_RUNNER_PREPARE_JOB_TIMEOUT_SECONDS".into(),
                "60".into(),
            ),
        ]
    }

    /// Run the hook with `request` on stdin and the runner's environment plus `extra`, waiting
    /// on a blocking thread (the fake API server lives on the caller's runtime).
    pub async fn run(&self, request: &Value, extra: &[(&str, &str)]) -> Output {
        let child = self.spawn_hook(request, extra);
        tokio::task::spawn_blocking(move || child.wait_with_output().expect("hook exits"))
            .await
            .expect("the waiting thread ends")
    }

    /// Run `prepare_job` (the request and response file from [`Runner::request`]), insist that
    /// it succeeds, and return the job's state for the next commands.
    pub async fn prepare(&self, request: &Value, response: &Path, extra: &[(&str, &str)]) -> Value {
        let output = self.run(request, extra).await;
        assert!(
            output.status.success(),
            "prepare_job:\n{}",
            text(&output.stderr)
        );
        let response: Value =
            serde_json::from_str(&std::fs::read_to_string(response).expect("the response file"))
                .expect("a JSON response");
        response["state"].clone()
    }

    /// Start the hook without waiting for it (for signal tests).
    pub fn spawn_hook(&self, request: &Value, extra: &[(&str, &str)]) -> std::process::Child {
        let mut child = Command::new(HOOK)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(self.env())
            .envs(extra.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("hook starts");
        let mut line = serde_json::to_string(request).unwrap();
        line.push('\n');
        // A hook that fails on its configuration exits before reading stdin: a broken pipe
        // then is its answer, not the harness's failure (its exit status and stderr tell).
        match child.stdin.take().unwrap().write_all(line.as_bytes()) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            Err(e) => panic!("the hook's stdin refused the request: {e}"),
        }
        child
    }

    /// Write a step script into `_temp` as the runner does, and return the `run_script_step`
    /// request that runs it with `sh -e`.
    pub fn script_step(&self, script: &str, env: Value, state: &Value) -> (Value, PathBuf) {
        let name = format!("{}.sh", random_hex());
        std::fs::write(self.temp().join(&name), script).unwrap();
        let response = self.new_response_file();
        let request = json!({
            "command": "run_script_step",
            "responseFile": response,
            "args": {
                "entryPointArgs": ["-e", format!("/__w/_temp/{name}")],
                "entryPoint": "sh",
                "environmentVariables": env,
                "prependPath": [],
                "workingDirectory": format!("/__w/{REPO}/{REPO}"),
            },
            "state": state,
        });
        (request, response)
    }
}

/// A runner pod as ARC makes one: `image` running `sleep`, the `work` volume at `_work`.
pub fn runner_pod(name: &str, image: &str, work_volume: Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": "runner-k8s-hook-test-runner"}},
        "spec": {
            "containers": [{"name": "runner", "image": image,
                "command": ["sleep", "3600"],
                "volumeMounts": [{"name": "work", "mountPath": "/home/runner/_work"}]}],
            "volumes": [work_volume],
            "terminationGracePeriodSeconds": 0
        }
    }))
    .expect("valid pod")
}

/// Output as text, for assertions.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn random_hex() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{:08x}{:04x}", std::process::id(), n)
}

/// A root filesystem with BusyBox as every tool (`/bin/sh`, `cp`, `tar`...).
pub fn busybox_rootfs(root: &Path) {
    let busybox = Path::new("/bin/busybox");
    assert!(
        busybox.exists(),
        "/bin/busybox is missing: run scripts/install-deps.sh (package busybox-static)"
    );
    for dir in ["bin", "etc", "tmp", "home/runner", "usr/bin"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    std::fs::copy(busybox, root.join("bin/busybox")).unwrap();
    let list = Command::new(busybox)
        .arg("--list")
        .output()
        .expect("busybox --list");
    for applet in text(&list.stdout).lines() {
        if applet != "busybox" {
            let _ = std::os::unix::fs::symlink("busybox", root.join("bin").join(applet));
        }
    }
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nrunner:x:1001:1001::/home/runner:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(root.join("etc/group"), "root:x:0:\nrunner:x:1001:\n").unwrap();
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    let status = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", from.display()))
        .arg(to)
        .status()
        .expect("cp runs");
    assert!(
        status.success(),
        "copy {} to {}",
        from.display(),
        to.display()
    );
}

/// Whether any process on this machine runs `sleep <arg>` (the fake node runs containers as
/// local processes).
pub fn sleeping_processes(arg: &str) -> bool {
    std::fs::read_dir("/proc").unwrap().flatten().any(|entry| {
        std::fs::read(entry.path().join("cmdline")).is_ok_and(|cmdline| {
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            args.len() >= 2 && args[0].ends_with(b"sleep") && args[1] == arg.as_bytes()
        })
    })
}

/// Every pod of one component that appears, as first seen (in order).
pub type SeenPods = Arc<Mutex<Vec<Pod>>>;

/// Records every pod labelled `app.kubernetes.io/component=<component>` that appears, from now
/// on (they are deleted by the time the hook exits).
pub fn record_pods(cluster: &FakeCluster, client: kube::Client, component: &str) -> SeenPods {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let pods: Api<Pod> = Api::namespaced(client, cluster.namespace());
    let config =
        watcher::Config::default().labels(&format!("app.kubernetes.io/component={component}"));
    let sink = seen.clone();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(watcher::watcher(pods, config));
        while let Some(Ok(event)) = stream.next().await {
            if let watcher::Event::Apply(pod) | watcher::Event::InitApply(pod) = event {
                let mut seen = sink.lock().unwrap();
                if !seen
                    .iter()
                    .any(|p: &Pod| p.metadata.name == pod.metadata.name)
                {
                    seen.push(pod);
                }
            }
        }
    });
    seen
}

/// The registry Secret `regcred`, as an operator creates it, with credentials for the pull host
/// `localhost:30500` (the Dockerfile-action tests).
pub async fn create_registry_secret(cluster: &FakeCluster) {
    let secrets: Api<Secret> = Api::namespaced(cluster.client().await, cluster.namespace());
    let auth = json!({"auths": {"localhost:30500": {"auth": "dXNlcjpwYXNz"}}}).to_string();
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "regcred"},
        "type": "kubernetes.io/dockerconfigjson",
        "stringData": {".dockerconfigjson": auth}
    }))
    .unwrap();
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
}

/// Make `path` executable by everyone (mode 0755).
pub fn set_executable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}
