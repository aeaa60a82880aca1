//! The local executor: runs the build script ([`super::script::argv`]) on this machine with the
//! host's `buildah`, optionally as another, unprivileged user, which is how the demo, the real
//! build tests and the `build` subcommand build rootless.
//!
//! Running as another user (`runuser -u <user> --`) needs root. The environment is replaced, not
//! inherited: `HOME`, `USER`, `LOGNAME` and a fixed `PATH` for the build user, and no
//! `XDG_RUNTIME_DIR`, because root's (`/run/user/0`) is not the build user's and rootless
//! Buildah falls back to `/var/tmp/containers-user-<uid>` without one (containers/storage `docs/containers-storage.conf.5.md`, `rootless_storage_path`). The
//! user needs `/etc/subuid` and `/etc/subgid` ranges, or `RUN` steps fail (docs/user/build-pod-security.md,
//! single-uid mode).
//!
//! The script runs in a process group of its own, so a timeout or a cancelled future stops
//! `runuser`, the shell and Buildah together. [`Scratch`] is a temporary directory owned by
//! the build user for the script's work files and image store.
//!
//! This module must not decide anything about the build itself: that is the script's job.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::io::{AsyncBufReadExt as _, AsyncRead, AsyncWrite, AsyncWriteExt as _, BufReader};
use tokio::process::Command;

use super::{BuildError, BuildOutcome, BuildSpec, Executor, LastLines};

/// `PATH` given to the build user: where Debian and Fedora install `buildah`, `newuidmap`
/// (`/usr/bin`) and `runuser` (`/usr/sbin`).
pub const USER_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A local account to run builds as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Login name.
    pub name: String,
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Home directory.
    pub home: String,
}

impl User {
    /// Look `name` up with `getent passwd` (so NSS sources other than `/etc/passwd` count).
    ///
    /// # Errors
    /// [`BuildError::Start`] when `getent` cannot run, [`BuildError::Io`] when the user does
    /// not exist.
    pub async fn lookup(name: &str) -> Result<User, BuildError> {
        let output = Command::new("getent")
            .args(["passwd", name])
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|source| BuildError::Start {
                program: "getent".to_owned(),
                source,
            })?;
        let text = String::from_utf8_lossy(&output.stdout);
        parse_passwd_line(text.lines().next().unwrap_or("")).ok_or_else(|| BuildError::Io {
            action: format!("find the build user `{name}`"),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no such user (create it with `useradd --create-home` and give it subordinate ids with `usermod --add-subuids/--add-subgids`)",
            ),
        })
    }
}

/// One `passwd` line: `name:x:uid:gid:gecos:home:shell`.
fn parse_passwd_line(line: &str) -> Option<User> {
    let fields: Vec<&str> = line.split(':').collect();
    if fields.len() < 7 || fields[0].is_empty() {
        return None;
    }
    Some(User {
        name: fields[0].to_owned(),
        uid: fields[2].parse().ok()?,
        gid: fields[3].parse().ok()?,
        home: fields[5].to_owned(),
    })
}

/// Runs builds with the host's `buildah`.
#[derive(Debug, Clone, Default)]
pub struct LocalExecutor {
    /// Run the script as this user (through `runuser`, which needs root); `None`: as the
    /// current user, with the current environment.
    pub user: Option<User>,
    /// Stop the build after this long ([`BuildError::Timeout`]); `None`: no limit.
    pub timeout: Option<Duration>,
}

impl Executor for LocalExecutor {
    fn run<'a>(
        &'a self,
        spec: &'a BuildSpec,
        log: &'a mut (dyn AsyncWrite + Send + Unpin),
    ) -> BoxFuture<'a, Result<BuildOutcome, BuildError>> {
        Box::pin(self.run_script(spec, log))
    }
}

impl LocalExecutor {
    fn command(&self, spec: &BuildSpec) -> Command {
        let argv = super::script::argv(spec);
        let mut command = match &self.user {
            Some(user) => {
                let mut command = Command::new("runuser");
                command
                    .args(["-u", &user.name, "--"])
                    .args(&argv)
                    .env_clear()
                    .env("HOME", &user.home)
                    .env("USER", &user.name)
                    .env("LOGNAME", &user.name)
                    .env("PATH", USER_PATH)
                    .env("LANG", "C.UTF-8");
                command
            }
            None => {
                let mut command = Command::new(&argv[0]);
                command.args(&argv[1..]);
                command
            }
        };
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // A group of its own, so that stopping the build stops every process in it.
            .process_group(0)
            .kill_on_drop(true);
        command
    }

    async fn run_script(
        &self,
        spec: &BuildSpec,
        log: &mut (dyn AsyncWrite + Send + Unpin),
    ) -> Result<BuildOutcome, BuildError> {
        let program = if self.user.is_some() { "runuser" } else { "sh" };
        let mut child = self
            .command(spec)
            .spawn()
            .map_err(|source| BuildError::Start {
                program: program.to_owned(),
                source,
            })?;
        let mut group = GroupGuard(child.id());
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let mut last = LastLines::default();

        let work = async {
            copy_lines(stdout, stderr, log, &mut last).await;
            child.wait().await
        };
        let status = match self.timeout {
            Some(limit) => match tokio::time::timeout(limit, work).await {
                Ok(status) => status,
                Err(_) => {
                    group.kill();
                    return Err(BuildError::Timeout {
                        image: spec.image.clone(),
                        after: limit,
                    });
                }
            },
            None => work.await,
        }
        .map_err(|source| BuildError::Io {
            action: format!("wait for the build of `{}`", spec.image),
            source,
        })?;
        // The script is done; anything left in its group (nothing, normally) is not ours to keep.
        group.kill();
        let _ = log.flush().await;

        if !status.success() {
            return Err(super::failure(spec, status.code(), last.into_vec()));
        }
        let text = tokio::fs::read_to_string(&spec.result_path)
            .await
            .map_err(|e| BuildError::Result {
                path: spec.result_path.clone(),
                detail: e.to_string(),
            })?;
        super::parse_result(spec, &text, &last)
    }
}

/// Copy both streams to `log` line by line as they come (the script merges its own stderr into
/// stdout; stderr carries only `runuser`'s complaints), keeping the last lines.
async fn copy_lines(
    stdout: impl AsyncRead + Unpin,
    stderr: impl AsyncRead + Unpin,
    log: &mut (dyn AsyncWrite + Send + Unpin),
    last: &mut LastLines,
) {
    let mut out = BufReader::new(stdout);
    let mut err = BufReader::new(stderr);
    let (mut out_line, mut err_line) = (Vec::new(), Vec::new());
    let (mut out_open, mut err_open) = (true, true);
    while out_open || err_open {
        let (from_stdout, read) = tokio::select! {
            n = out.read_until(b'\n', &mut out_line), if out_open => (true, n),
            n = err.read_until(b'\n', &mut err_line), if err_open => (false, n),
        };
        let (line, open) = if from_stdout {
            (&mut out_line, &mut out_open)
        } else {
            (&mut err_line, &mut err_open)
        };
        if matches!(read, Ok(0) | Err(_)) {
            *open = false;
        }
        if !line.is_empty() {
            if !line.ends_with(b"\n") {
                line.push(b'\n');
            }
            // A log that cannot be written (a closed stderr) must not stop the build.
            let _ = log.write_all(line).await;
            last.push(&String::from_utf8_lossy(line));
            line.clear();
        }
    }
}

/// Kills the script's process group when the build ends, times out, or its future is dropped
/// (cancellation), so no `buildah` outlives the build.
struct GroupGuard(Option<u32>);

impl GroupGuard {
    fn kill(&mut self) {
        if let Some(pid) = self.0.take() {
            // `kill` is a separate program because this crate forbids `unsafe` (no libc call).
            // The group may already be gone; that is the normal case.
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A temporary directory for one local build, owned by the build user: `work/` for the
/// script's files, `storage/root` and `storage/run` for a fresh image store, and `result`.
/// Removed when dropped, image store included (its files belong to the user's subordinate ids,
/// so a user that is not root removes them inside `buildah unshare`).
#[derive(Debug)]
pub struct Scratch {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
    rootless_cleanup: bool,
}

impl Scratch {
    /// Create the directory, readable and writable by `user` (or the current user).
    ///
    /// # Errors
    /// [`BuildError::Io`] when it cannot be created or given to `user` (that needs root).
    pub fn new(user: Option<&User>) -> Result<Scratch, BuildError> {
        let io = |action: String| move |source| BuildError::Io { action, source };
        let dir = tempfile::Builder::new()
            .prefix("runner-k8s-hook-build-")
            .tempdir()
            .map_err(io("create a temporary directory for the build".to_owned()))?;
        let path = dir.path().to_path_buf();
        if let Some(user) = user {
            std::os::unix::fs::chown(&path, Some(user.uid), Some(user.gid)).map_err(io(
                format!(
                    "give `{}` to the build user `{}`",
                    path.display(),
                    user.name
                ),
            ))?;
        }
        Ok(Scratch {
            dir: Some(dir),
            path,
            rootless_cleanup: !running_as_root(),
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `<dir>/<name>` as a string for a [`BuildSpec`] path.
    ///
    /// # Errors
    /// [`BuildError::Io`] when the temporary directory's path is not UTF-8 (`TMPDIR`).
    pub fn join(&self, name: &str) -> Result<String, BuildError> {
        let path = self.path.join(name);
        path.to_str()
            .map(str::to_owned)
            .ok_or_else(|| BuildError::Io {
                action: format!("use `{}` in the build script", path.display()),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "the path is not UTF-8",
                ),
            })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.rootless_cleanup && self.path.join("storage").exists() {
            let _ = std::process::Command::new("buildah")
                .args(["unshare", "rm", "-rf"])
                .arg(self.path.join("storage"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        if let Some(dir) = self.dir.take() {
            let _ = dir.close();
        }
    }
}

/// Whether this process runs as root: `/proc/self` belongs to the effective user.
pub fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwd_lines() {
        assert_eq!(
            parse_passwd_line("rk8sbuild:x:1001:1001::/home/rk8sbuild:/bin/sh"),
            Some(User {
                name: "rk8sbuild".into(),
                uid: 1001,
                gid: 1001,
                home: "/home/rk8sbuild".into()
            })
        );
        assert_eq!(parse_passwd_line(""), None);
        assert_eq!(parse_passwd_line("x:x:notanumber:1::/:/bin/sh"), None);
    }

    #[tokio::test]
    async fn the_log_keeps_both_streams_and_the_last_lines() {
        let stdout: &[u8] = b"STEP 1/2: FROM scratch\nSTEP 2/2: COPY x /x\nno newline at end";
        let stderr: &[u8] = b"runuser: warning\n";
        let mut log = Vec::new();
        let mut last = LastLines::default();
        copy_lines(stdout, stderr, &mut log, &mut last).await;
        let log = String::from_utf8(log).unwrap();
        for line in [
            "STEP 1/2: FROM scratch\n",
            "STEP 2/2: COPY x /x\n",
            "no newline at end\n",
            "runuser: warning\n",
        ] {
            assert!(log.contains(line), "{log}");
        }
        assert_eq!(last.into_vec().len(), 4);
    }

    /// A vfs build of `<dir>/<context>` whose every path lies in `dir`, waiting for
    /// `<dir>/<wait_for>` when given.
    fn spec_in(dir: &std::path::Path, context: &str, wait_for: Option<&str>) -> BuildSpec {
        let d = |n: &str| dir.join(n).display().to_string();
        BuildSpec {
            context_dir: d(context),
            dockerfile: "Dockerfile".into(),
            image: "registry:5000/o/r:t".into(),
            push: true,
            build_args: vec![],
            storage: super::super::Storage {
                root: d("root"),
                runroot: d("run"),
                driver: super::super::StorageDriver::Vfs,
            },
            build_options: vec![],
            push_options: vec![],
            auth_source: None,
            cert_dir: None,
            work_dir: d("work"),
            result_path: d("result"),
            wait_for: wait_for.map(d),
            extra_tags: Vec::new(),
            cache: None,
        }
    }

    #[tokio::test]
    async fn a_failing_script_reports_its_exit_code_and_last_lines() {
        let tmp = tempfile::tempdir().unwrap();
        let spec = spec_in(tmp.path(), "missing-context", None);
        let mut log = Vec::new();
        let err = LocalExecutor::default()
            .run(&spec, &mut log)
            .await
            .unwrap_err();
        // Without buildah on PATH the script stops at its own check (setup), with it at the
        // missing context: either way a typed error, never a hang.
        assert!(
            matches!(
                err,
                BuildError::DockerfileMissing { .. } | BuildError::Setup { .. }
            ),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_timeout_stops_the_whole_process_group() {
        let tmp = tempfile::tempdir().unwrap();
        // Waits forever for a file that never appears.
        let spec = spec_in(tmp.path(), "ctx", Some("never"));
        let executor = LocalExecutor {
            user: None,
            timeout: Some(Duration::from_millis(300)),
        };
        let mut log = Vec::new();
        let started = std::time::Instant::now();
        let err = executor.run(&spec, &mut log).await.unwrap_err();
        assert!(matches!(err, BuildError::Timeout { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(String::from_utf8_lossy(&log).contains("waiting for the build context"));
    }
}
