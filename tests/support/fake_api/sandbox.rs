//! The container runtime of the fake node: runs a container's process in a bubblewrap sandbox
//! and `pods/exec` commands inside that same sandbox (nsenter into its namespaces), the way
//! runc starts a container's init and `runc exec` joins it.
//!
//! Filesystem view: a tmpfs root holding the image rootfs read-only (bind per top-level entry;
//! a directory is split into per-entry binds only where a mount point must be created), then
//! `/proc`, `/dev`, a tmpfs `/tmp`, read-only `/sys`, then the pod's volumes at their mount
//! paths (parents before children, as the kubelet orders mounts), then the working directory
//! (created if missing, as containerd's `WithProcessCwd`/runc's `mkdir` of `cwd` does).
//! The process is PID 1 of its own PID namespace (`--as-pid-1`), so, as in a real container,
//! SIGTERM is ignored unless it installs a handler, and its exit takes every exec'd process
//! with it. Must not: decide pod state (kubelet.rs) or speak HTTP.
//!
//! Identity: as root, the process (and every exec) runs as the container's [`Identity`]: uid,
//! gid, supplementary groups, capability bounding set and `no_new_privs`, as runc sets them
//! from the OCI spec the kubelet built. Bubblewrap can only change the uid inside a user
//! namespace, which would show every other owner as `nobody`; so the sandbox keeps the host's
//! ids and the command is started through the host's util-linux `setpriv`, bound with its
//! libraries and dynamic loader into `/.fake-kubelet` (the image may have no `setpriv`, or no
//! libc at all). Not as root, the identity is ignored (there is nothing to switch to).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use rustix::process::{Pid, Signal};

/// A bind mount into the sandbox.
#[derive(Clone, Debug)]
pub struct Mount {
    pub host: PathBuf,
    pub target: String,
    pub read_only: bool,
}

/// Everything needed to start one container process.
#[derive(Clone, Debug)]
pub struct SandboxConfig {
    pub rootfs: PathBuf,
    pub mounts: Vec<Mount>,
    pub env: Vec<(String, String)>,
    pub workdir: String,
    pub argv: Vec<String>,
    pub hostname: String,
    pub identity: Identity,
}

/// Who a container's processes run as (the OCI `process.user` and capabilities runc applies).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (`fsGroup`, `supplementalGroups`).
    pub groups: Vec<u32>,
    /// The capability bounding set (lowercase names without `cap_`); `None`: all (privileged).
    pub capabilities: Option<Vec<String>>,
    /// `allowPrivilegeEscalation: false`.
    pub no_new_privs: bool,
}

/// Where the identity switcher is bound inside the sandbox.
const HELPER_DIR: &str = "/.fake-kubelet";

/// The host's `setpriv` and what it needs to run in any rootfs: the dynamic loader and the
/// libraries `ldd` names.
#[derive(Clone, Debug)]
struct Switcher {
    setpriv: PathBuf,
    loader: PathBuf,
    libraries: Vec<PathBuf>,
}

impl Switcher {
    fn find(setpriv: PathBuf) -> Result<Self, String> {
        let out = std::process::Command::new("ldd")
            .arg(&setpriv)
            .output()
            .map_err(|e| format!("ldd {}: {e}", setpriv.display()))?;
        let text = String::from_utf8_lossy(&out.stdout);
        let mut loader = None;
        let mut libraries = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if let Some((_, rest)) = line.split_once("=> ") {
                if let Some(path) = rest
                    .split_whitespace()
                    .next()
                    .filter(|p| p.starts_with('/'))
                {
                    libraries.push(PathBuf::from(path));
                }
            } else if line.starts_with('/') {
                loader = line.split_whitespace().next().map(PathBuf::from);
            }
        }
        let loader =
            loader.ok_or_else(|| format!("no dynamic loader for {}", setpriv.display()))?;
        Ok(Self {
            setpriv,
            loader,
            libraries,
        })
    }

    /// The argv prefix that runs the rest as `identity`.
    fn prefix(identity: &Identity) -> Vec<String> {
        let mut argv = vec![
            format!("{HELPER_DIR}/ld.so"),
            "--library-path".to_owned(),
            HELPER_DIR.to_owned(),
            format!("{HELPER_DIR}/setpriv"),
            format!("--reuid={}", identity.uid),
            format!("--regid={}", identity.gid),
        ];
        if identity.groups.is_empty() {
            argv.push("--clear-groups".to_owned());
        } else {
            let groups: Vec<String> = identity.groups.iter().map(u32::to_string).collect();
            argv.push(format!("--groups={}", groups.join(",")));
        }
        if let Some(caps) = &identity.capabilities {
            let mut set = "-all".to_owned();
            for cap in caps {
                set.push_str(",+");
                set.push_str(cap);
            }
            argv.push(format!("--bounding-set={set}"));
        }
        argv.push("--inh-caps=-all".to_owned());
        if identity.no_new_privs {
            argv.push("--no-new-privs".to_owned());
        }
        argv.push("--".to_owned());
        argv
    }

    /// The binds of the helper directory, as rootfs nodes.
    fn nodes(&self) -> BTreeMap<OsString, Node> {
        let mut dir = BTreeMap::new();
        dir.insert(OsString::from("ld.so"), Node::Bind(self.loader.clone()));
        dir.insert(OsString::from("setpriv"), Node::Bind(self.setpriv.clone()));
        for library in &self.libraries {
            if let Some(name) = library.file_name() {
                dir.insert(name.to_owned(), Node::Bind(library.clone()));
            }
        }
        dir
    }
}

/// Absolute paths of the tools, found once (the container's PATH must not decide which host
/// binary runs).
#[derive(Clone, Debug)]
pub struct Tools {
    bwrap: PathBuf,
    nsenter: PathBuf,
    /// Not root: bubblewrap needs a user namespace, and nsenter must join it.
    rootless: bool,
    /// As root: runs processes as the container's identity.
    switcher: Option<Switcher>,
}

impl Tools {
    pub fn find() -> Result<Self, String> {
        let search = |name: &str| -> Result<PathBuf, String> {
            let path = std::env::var_os("PATH").unwrap_or_default();
            std::env::split_paths(&path)
                .chain([PathBuf::from("/usr/bin"), PathBuf::from("/bin")])
                .map(|dir| dir.join(name))
                .find(|p| p.is_file())
                .ok_or_else(|| {
                    format!("{name} not found: install it (scripts/install-deps.sh lists bubblewrap and util-linux)")
                })
        };
        let rootless = std::fs::metadata("/proc/self").map_or(true, |m| m.uid() != 0);
        let switcher = if rootless {
            None
        } else {
            Some(Switcher::find(search("setpriv")?)?)
        };
        Ok(Self {
            bwrap: search("bwrap")?,
            nsenter: search("nsenter")?,
            rootless,
            switcher,
        })
    }

    /// The `bwrap` command for a container (stdin `/dev/null`, stdout/stderr piped, killed with
    /// its handle).
    pub fn container_command(&self, config: &SandboxConfig) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(&self.bwrap);
        command
            .args(bwrap_args(config, self.switcher.as_ref()))
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    }

    /// The command that runs `argv` inside the running container whose PID-namespace init is
    /// `ns_pid` (host pid), with the container's env and working directory, like `runc exec`.
    pub fn exec_command(
        &self,
        ns_pid: i32,
        workdir: &str,
        env: &[(String, String)],
        identity: &Identity,
        argv: &[String],
        stdin: bool,
    ) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(&self.nsenter);
        command.arg(format!("--target={ns_pid}"));
        if self.rootless {
            command.args(["--user", "--preserve-credentials"]);
        }
        command
            .args(["--mount", "--uts", "--ipc", "--pid", "--root"])
            // Opened through the target's root, so it names the directory in the container.
            .arg(format!("--wd=/proc/{ns_pid}/root{workdir}"))
            .arg("--")
            .args(
                self.switcher
                    .as_ref()
                    .map(|_| Switcher::prefix(identity))
                    .unwrap_or_default(),
            )
            .args(argv)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(if stdin { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    }
}

enum Node {
    /// A read-only bind of this host path (file or directory).
    Bind(PathBuf),
    Symlink(PathBuf),
    /// A directory made on the sandbox's tmpfs root; its entries are bound one by one.
    Dir(BTreeMap<OsString, Node>),
    /// Something else is mounted here (a volume, /proc, /dev, /tmp): do not look inside.
    Mounted,
}

/// The entries of a rootfs directory as nodes.
fn list(host_dir: &Path) -> BTreeMap<OsString, Node> {
    let mut entries = BTreeMap::new();
    let Ok(read) = std::fs::read_dir(host_dir) else {
        return entries;
    };
    for entry in read.flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        let node = if kind.is_symlink() {
            match std::fs::read_link(&path) {
                Ok(target) => Node::Symlink(target),
                Err(_) => continue,
            }
        } else if kind.is_dir() || kind.is_file() {
            Node::Bind(path)
        } else {
            continue; // sockets, fifos and devices are not part of an image
        };
        entries.insert(entry.file_name(), node);
    }
    entries
}

fn components(path: &str) -> Vec<OsString> {
    path.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .map(OsString::from)
        .collect()
}

/// Make the parent of `target` creatable: every read-only bind on the way whose host side lacks
/// the rest of the path becomes a tmpfs directory of per-entry binds.
fn make_room(root: &mut BTreeMap<OsString, Node>, target: &str) {
    let parts = components(target);
    let mut dir = root;
    for (i, part) in parts.iter().enumerate() {
        if i + 1 == parts.len() {
            return;
        }
        let node = dir
            .entry(part.clone())
            .or_insert_with(|| Node::Dir(BTreeMap::new()));
        if let Node::Bind(host) = node {
            let rest: PathBuf = parts[i + 1..].iter().collect();
            if host.join(rest).exists() || !host.is_dir() {
                return;
            }
            let entries = list(host);
            *node = Node::Dir(entries);
        }
        match node {
            Node::Dir(children) => dir = children,
            _ => return,
        }
    }
}

fn mark_mounted(root: &mut BTreeMap<OsString, Node>, target: &str) {
    make_room(root, target);
    let parts = components(target);
    let mut dir = root;
    for (i, part) in parts.iter().enumerate() {
        if i + 1 == parts.len() {
            dir.insert(part.clone(), Node::Mounted);
            return;
        }
        match dir.get_mut(part) {
            Some(Node::Dir(children)) => dir = children,
            _ => return,
        }
    }
}

fn emit(dir: &BTreeMap<OsString, Node>, prefix: &Path, args: &mut Vec<OsString>) {
    for (name, node) in dir {
        let path = prefix.join(name);
        match node {
            Node::Bind(host) => {
                args.push("--ro-bind".into());
                args.push(host.clone().into());
                args.push(path.into());
            }
            Node::Symlink(target) => {
                args.push("--symlink".into());
                args.push(target.clone().into());
                args.push(path.into());
            }
            Node::Dir(children) => {
                args.push("--dir".into());
                args.push(path.clone().into());
                emit(children, &path, args);
            }
            Node::Mounted => {}
        }
    }
}

/// The mount whose target is the longest prefix of `path`, and the rest of the path under it.
fn mount_for<'a>(mounts: &'a [Mount], path: &str) -> Option<(&'a Mount, String)> {
    mounts
        .iter()
        .filter_map(|m| {
            let target = m.target.trim_end_matches('/');
            let rest = path.strip_prefix(target)?;
            (rest.is_empty() || rest.starts_with('/')).then(|| (m, rest.to_string()))
        })
        .max_by_key(|(m, _)| m.target.len())
}

/// Where a container path lives on the host, ignoring the tmpfs parts (/tmp, new directories).
pub fn host_path(config: &SandboxConfig, path: &str) -> PathBuf {
    match mount_for(&config.mounts, path) {
        Some((mount, rest)) => mount.host.join(rest.trim_start_matches('/')),
        None => config.rootfs.join(path.trim_start_matches('/')),
    }
}

/// The bubblewrap arguments for a container.
fn bwrap_args(config: &SandboxConfig, switcher: Option<&Switcher>) -> Vec<OsString> {
    let rootless = switcher.is_none();
    let mut root = list(&config.rootfs);
    for special in ["proc", "dev", "sys", "tmp"] {
        root.remove(&OsString::from(special));
    }
    if let Some(switcher) = switcher {
        root.insert(
            OsString::from(HELPER_DIR.trim_start_matches('/')),
            Node::Dir(switcher.nodes()),
        );
    }
    let mut mounts = config.mounts.clone();
    // Parents before children (the kubelet sorts mounts so; bwrap needs it).
    mounts.sort_by_key(|m| components(&m.target).len());
    for special in ["/proc", "/dev", "/tmp", "/sys"] {
        mark_mounted(&mut root, special);
    }
    for mount in &mounts {
        mark_mounted(&mut root, &mount.target);
    }
    // The working directory is created where it is missing.
    let mut create_workdir = false;
    match mount_for(&mounts, &config.workdir) {
        Some((mount, rest)) => {
            let _ = std::fs::create_dir_all(mount.host.join(rest.trim_start_matches('/')));
        }
        None if config.workdir.starts_with("/tmp/") => create_workdir = true,
        None => {
            if !config
                .rootfs
                .join(config.workdir.trim_start_matches('/'))
                .is_dir()
            {
                make_room(&mut root, &config.workdir);
                create_workdir = true;
            }
        }
    }

    let mut args: Vec<OsString> = Vec::new();
    emit(&root, Path::new("/"), &mut args);
    for special in [
        &["--proc", "/proc"][..],
        &["--dev", "/dev"],
        &["--tmpfs", "/tmp"],
        &["--ro-bind-try", "/sys", "/sys"],
    ] {
        args.extend(special.iter().map(OsString::from));
    }
    for mount in &mounts {
        args.push(
            if mount.read_only {
                "--ro-bind"
            } else {
                "--bind"
            }
            .into(),
        );
        args.push(mount.host.clone().into());
        args.push(mount.target.clone().into());
    }
    if create_workdir {
        args.push("--dir".into());
        args.push(config.workdir.clone().into());
    }
    args.push("--chdir".into());
    args.push(config.workdir.clone().into());
    if rootless {
        args.push("--unshare-user".into());
    }
    for flag in [
        "--unshare-pid",
        "--as-pid-1",
        "--unshare-ipc",
        "--unshare-uts",
        "--die-with-parent",
        "--new-session",
        "--clearenv",
    ] {
        args.push(flag.into());
    }
    args.push("--hostname".into());
    args.push(config.hostname.clone().into());
    for (key, value) in &config.env {
        args.push("--setenv".into());
        args.push(key.into());
        args.push(value.into());
    }
    args.push("--".into());
    if switcher.is_some() {
        args.extend(
            Switcher::prefix(&config.identity)
                .into_iter()
                .map(OsString::from),
        );
    }
    args.extend(config.argv.iter().map(OsString::from));
    args
}

/// Check that `argv[0]` can be executed in the container, before starting it, and give runc's
/// error when not (what containerd reports as `StartError`).
pub fn check_executable(config: &SandboxConfig) -> Result<(), String> {
    let Some(program) = config.argv.first() else {
        return Err("no command specified".to_string());
    };
    let executable = |p: &Path| {
        std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink())
            || std::fs::metadata(p)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        let absolute = if program.starts_with('/') {
            program.clone()
        } else {
            format!("{}/{}", config.workdir.trim_end_matches('/'), program)
        };
        if absolute.starts_with("/tmp/") || executable(&host_path(config, &absolute)) {
            return Ok(());
        }
        return Err(format!(
            "exec: \"{program}\": stat {program}: no such file or directory"
        ));
    }
    let path = config.env.iter().find(|(k, _)| k == "PATH").map_or(
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        |(_, v)| v.as_str(),
    );
    if path
        .split(':')
        .filter(|d| !d.is_empty())
        .any(|dir| executable(&host_path(config, &format!("{dir}/{program}"))))
    {
        return Ok(());
    }
    Err(format!(
        "exec: \"{program}\": executable file not found in $PATH"
    ))
}

/// Whether `program` resolves to an executable inside a running container (through
/// `/proc/<pid>/root`, which shows the container's own mounts).
pub fn executable_in(ns_pid: i32, env: &[(String, String)], workdir: &str, program: &str) -> bool {
    let root = PathBuf::from(format!("/proc/{ns_pid}/root"));
    let ok = |p: &str| {
        let path = root.join(p.trim_start_matches('/'));
        // An absolute symlink would resolve against the host's root here: accept links.
        std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink())
            || std::fs::metadata(&path)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        return if program.starts_with('/') {
            ok(program)
        } else {
            ok(&format!("{workdir}/{program}"))
        };
    }
    let path = env.iter().find(|(k, _)| k == "PATH").map_or(
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        |(_, v)| v.as_str(),
    );
    path.split(':')
        .filter(|d| !d.is_empty())
        .any(|dir| ok(&format!("{dir}/{program}")))
}

/// The host pid of the sandboxed process (bubblewrap's child), once it runs the container's
/// command: like containerd's task Start, "running" means the sandbox is set up and the
/// process exec'd (until then its root and mounts are still being built).
pub async fn namespace_pid(bwrap_pid: u32) -> Option<i32> {
    let children = format!("/proc/{bwrap_pid}/task/{bwrap_pid}/children");
    let bwrap = std::fs::read_link(format!("/proc/{bwrap_pid}/exe")).ok()?;
    let mut child = None;
    // Bounded only against a wedged bubblewrap; a loaded machine can take seconds.
    for _ in 0..6000 {
        if child.is_none() {
            match std::fs::read_to_string(&children) {
                Ok(text) => child = text.split_whitespace().next().and_then(|p| p.parse().ok()),
                Err(_) => return None,
            }
            if child.is_none() && is_gone(bwrap_pid as i32) {
                return None; // bubblewrap already exited (a zombie lists no children)
            }
        }
        if let Some(pid) = child {
            // Still bubblewrap (a clone of its parent) until it execs the command.
            match std::fs::read_link(format!("/proc/{pid}/exe")) {
                Ok(exe) if exe == bwrap => {}
                Ok(_) => return Some(pid),
                Err(_) if is_gone(pid) => return Some(pid),
                Err(_) => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child
}

/// Send a signal; a process that is already gone is not an error.
pub fn signal(pid: i32, signal: Signal) {
    if let Some(pid) = Pid::from_raw(pid) {
        let _ = rustix::process::kill_process(pid, signal);
    }
}

/// Whether a process is gone (or only a zombie waiting to be reaped).
pub fn is_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => true,
    }
}
