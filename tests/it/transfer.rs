//! `transfer` (copy mode) copy-in/copy-out against real shells and real tools: [`LocalRemote`] runs the
//! exact remote scripts as local processes, once with GNU coreutils/findutils/tar and once with
//! BusyBox (what Alpine job images have), with stdin held open the way the v4 exec protocol
//! holds it (the scripts must never wait for end-of-file).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _, symlink};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use runner_k8s_hook::transfer::{
    AttemptFailure, CopyError, CopyOptions, Problem, Remote, Stdin, copy_in, copy_out,
};
use tokio::io::{AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

/// Every test ends within this, so a script that waits for stdin EOF fails instead of hanging.
const TEST_TIMEOUT: Duration = Duration::from_secs(120);

/// The tools the scripts use, linked to BusyBox for the BusyBox runs. Nothing else is on PATH.
const APPLETS: &[&str] = &["sh", "mkdir", "head", "tar", "find", "sha256sum"];

/// Read size for the local process's pipes (the exec protocol moves 64 KiB frames or more).
const PIPE_BUFFER: usize = 256 * 1024;

/// Runs the remote argv as a local process. `path` replaces `PATH` (for BusyBox).
struct LocalRemote {
    path: Option<OsString>,
}

impl LocalRemote {
    fn gnu() -> LocalRemote {
        LocalRemote { path: None }
    }

    fn with_path(dir: &Path) -> LocalRemote {
        LocalRemote {
            path: Some(dir.as_os_str().to_owned()),
        }
    }
}

impl Remote for LocalRemote {
    async fn run(
        &self,
        argv: Vec<String>,
        stdin: Option<Stdin<'_>>,
        stdout: &mut (dyn AsyncWrite + Unpin + Send),
        stderr: &mut (dyn AsyncWrite + Unpin + Send),
    ) -> anyhow::Result<i32> {
        let mut command = tokio::process::Command::new(&argv[0]);
        command
            .args(&argv[1..])
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(path) = &self.path {
            command.env("PATH", path);
        }
        let mut child = command.spawn()?;
        let mut child_stdin = child.stdin.take();
        let child_stdout = child.stdout.take().expect("piped");
        let mut child_stderr = child.stderr.take().expect("piped");
        let feed = async {
            if let (Some(source), Some(pipe)) = (stdin, child_stdin.as_mut()) {
                let mut reader = tokio::io::BufReader::with_capacity(
                    PIPE_BUFFER,
                    source.reader.take(source.len),
                );
                match tokio::io::copy_buf(&mut reader, pipe).await {
                    Ok(n) => assert_eq!(n, source.len, "stdin shorter than announced"),
                    // The script ended (or failed) before reading everything.
                    Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
                    Err(e) => return Err(e),
                }
                pipe.flush().await.or_else(ignore_broken_pipe)?;
            }
            // Like exec v4: stdin stays open until the command has ended.
            Ok(())
        };
        let mut child_stdout = tokio::io::BufReader::with_capacity(PIPE_BUFFER, child_stdout);
        let (fed, out, err) = tokio::join!(
            feed,
            tokio::io::copy_buf(&mut child_stdout, stdout),
            tokio::io::copy(&mut child_stderr, stderr),
        );
        fed?;
        out?;
        err?;
        let status = child.wait().await?;
        drop(child_stdin);
        Ok(status.code().unwrap_or(128))
    }
}

fn ignore_broken_pipe(e: std::io::Error) -> std::io::Result<()> {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        Ok(())
    } else {
        Err(e)
    }
}

/// On its first `corrupt` runs, flips one byte of the first `CORRUPT-ME` in the stream (stdin
/// for copy-in, stdout for copy-out). Buffers the stream: small trees only.
struct Corrupting {
    inner: LocalRemote,
    corrupt: AtomicU32,
    runs: AtomicU32,
}

const NEEDLE: &[u8] = b"CORRUPT-ME";

fn corrupt(data: &mut [u8]) {
    let at = data
        .windows(NEEDLE.len())
        .position(|w| w == NEEDLE)
        .expect("the stream carries the needle");
    data[at] ^= 0x01;
}

impl Remote for Corrupting {
    async fn run(
        &self,
        argv: Vec<String>,
        stdin: Option<Stdin<'_>>,
        stdout: &mut (dyn AsyncWrite + Unpin + Send),
        stderr: &mut (dyn AsyncWrite + Unpin + Send),
    ) -> anyhow::Result<i32> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        let now = self
            .corrupt
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if !now {
            return self.inner.run(argv, stdin, stdout, stderr).await;
        }
        match stdin {
            Some(mut source) => {
                let mut data = Vec::new();
                (&mut source.reader)
                    .take(source.len)
                    .read_to_end(&mut data)
                    .await?;
                corrupt(&mut data);
                let stdin = Stdin {
                    len: data.len() as u64,
                    reader: Box::new(std::io::Cursor::new(data)),
                };
                self.inner.run(argv, Some(stdin), stdout, stderr).await
            }
            None => {
                let mut data = Vec::new();
                let code = self.inner.run(argv, None, &mut data, stderr).await?;
                corrupt(&mut data);
                stdout.write_all(&data).await?;
                Ok(code)
            }
        }
    }
}

/// Fails like a dropped connection on the first run, then works.
struct DropsFirst {
    inner: LocalRemote,
    runs: AtomicU32,
}

impl Remote for DropsFirst {
    async fn run(
        &self,
        argv: Vec<String>,
        stdin: Option<Stdin<'_>>,
        stdout: &mut (dyn AsyncWrite + Unpin + Send),
        stderr: &mut (dyn AsyncWrite + Unpin + Send),
    ) -> anyhow::Result<i32> {
        if self.runs.fetch_add(1, Ordering::SeqCst) == 0 {
            anyhow::bail!("the exec connection broke before the command ended");
        }
        self.inner.run(argv, stdin, stdout, stderr).await
    }
}

/// Runs a different script, ignoring the copy script.
struct Script(&'static str);

impl Remote for Script {
    async fn run(
        &self,
        _argv: Vec<String>,
        stdin: Option<Stdin<'_>>,
        stdout: &mut (dyn AsyncWrite + Unpin + Send),
        stderr: &mut (dyn AsyncWrite + Unpin + Send),
    ) -> anyhow::Result<i32> {
        let argv = vec!["sh".to_owned(), "-c".to_owned(), self.0.to_owned()];
        LocalRemote::gnu().run(argv, stdin, stdout, stderr).await
    }
}

fn fast_retries() -> CopyOptions {
    CopyOptions {
        backoff: Duration::from_millis(10),
        ..CopyOptions::default()
    }
}

/// A directory of BusyBox applet links, or a failed test telling how to get BusyBox.
fn busybox_dir() -> tempfile::TempDir {
    let busybox = ["/usr/bin/busybox", "/bin/busybox"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("BusyBox is not installed: run `scripts/install-deps.sh test` (busybox-static)");
    let dir = tempfile::tempdir().expect("tempdir");
    for applet in APPLETS {
        symlink(&busybox, dir.path().join(applet)).expect("applet link");
    }
    dir
}

fn is_root() -> bool {
    let probe = tempfile::tempfile().expect("tempfile");
    probe.metadata().expect("meta").uid() == 0
}

/// The awkward tree: nested and empty directories, empty and 1 MB files, an executable, file
/// names with spaces, unicode, newline, backslash and carriage return, names and paths over 100
/// bytes, symlinks (to a file, to a directory, dangling), a file for the corruption tests, and
/// the runner's hook responses (never copied).
fn awkward_tree(root: &Path) {
    let write = |rel: &str, data: &[u8]| {
        let path = root.join(rel);
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        fs::write(path, data).expect("write");
    };
    write("a/b/c/deep.txt", b"deep\n");
    fs::create_dir_all(root.join("empty-dir")).expect("mkdir");
    fs::create_dir_all(root.join("a/b/empty-nested")).expect("mkdir");
    write("empty-file", b"");
    write("name with spaces.txt", b"spaces\n");
    write("ünïcødé 名前.txt", "unicode ✓\n".as_bytes());
    write("new\nline.txt", b"newline\n");
    write("trailing-newline\n", b"trailing\n");
    write("back\\slash.txt", b"backslash\n");
    write("carriage\rreturn.txt", b"cr\n");
    write(&"x".repeat(150), b"long name\n");
    write(
        &format!(
            "{}/{}/{}.txt",
            "l".repeat(60),
            "m".repeat(60),
            "n".repeat(60)
        ),
        b"long path\n",
    );
    write("run.sh", b"#!/bin/sh\necho hi\n");
    fs::set_permissions(root.join("run.sh"), fs::Permissions::from_mode(0o755)).expect("chmod");
    write("private.txt", b"private\n");
    fs::set_permissions(root.join("private.txt"), fs::Permissions::from_mode(0o600))
        .expect("chmod");
    let mut big = vec![0u8; 1024 * 1024];
    fill(&mut big, 42);
    write("big.bin", &big);
    write("corrupt-me.txt", b"this line says CORRUPT-ME once\n");
    write("_temp/_runner_hook_responses/response.json", b"{}");
    write("_temp/_runner_file_commands/set_output_1", b"answer=42\n");
    symlink("a/b/c/deep.txt", root.join("link-to-file")).expect("symlink");
    symlink("a", root.join("link-to-dir")).expect("symlink");
    symlink("does/not/exist", root.join("dangling")).expect("symlink");
    symlink("/etc/passwd", root.join("absolute-link")).expect("symlink");
    // Give everything the old mtimes a checkout has, so a copy that drops them is seen.
    let old = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_500_000_000);
    for (path, node) in snapshot(root) {
        if let Node::File { .. } = node {
            let file = fs::File::options()
                .write(true)
                .open(root.join(path))
                .expect("open");
            file.set_modified(old).expect("mtime");
        }
    }
}

/// Deterministic bytes, fast enough for hundreds of megabytes (xorshift64*).
fn fill(buffer: &mut [u8], seed: u64) {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for chunk in buffer.chunks_mut(8) {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let value = state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
        chunk.copy_from_slice(&value[..chunk.len()]);
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Node {
    Dir {
        mode: u32,
    },
    File {
        mode: u32,
        mtime: i64,
        data: Vec<u8>,
    },
    Link {
        target: PathBuf,
    },
}

/// Every entry under `root` (relative path → what it is), without following symlinks.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, Node> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Node>) {
        for entry in fs::read_dir(dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            let rel = path.strip_prefix(root).expect("inside").to_path_buf();
            let meta = fs::symlink_metadata(&path).expect("lstat");
            let mode = meta.mode() & 0o7777;
            if meta.is_dir() {
                out.insert(rel, Node::Dir { mode });
                walk(root, &path, out);
            } else if meta.is_symlink() {
                let target = fs::read_link(&path).expect("readlink");
                out.insert(rel, Node::Link { target });
            } else {
                let data = fs::read(&path).expect("read");
                let mtime = meta.mtime();
                out.insert(rel, Node::File { mode, mtime, data });
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// The tree as a copy should reproduce it: without what was excluded.
fn expected(root: &Path, excluded: &[&str]) -> BTreeMap<PathBuf, Node> {
    let mut tree = snapshot(root);
    tree.retain(|path, _| {
        !excluded.iter().any(|e| path.starts_with(e))
            && !path
                .components()
                .any(|c| c.as_os_str() == "_runner_hook_responses")
    });
    tree
}

fn assert_same_tree(expected: &BTreeMap<PathBuf, Node>, actual: &BTreeMap<PathBuf, Node>) {
    let names = |tree: &BTreeMap<PathBuf, Node>| tree.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(expected), names(actual), "different entries");
    for (path, node) in expected {
        let got = &actual[path];
        // Directory modes: copy-out keeps the owner's rwx so the next copy can write.
        if let (Node::Dir { mode: a }, Node::Dir { mode: b }) = (node, got) {
            assert_eq!(a | 0o700, b | 0o700, "mode of {}", path.display());
            continue;
        }
        assert!(
            node == got,
            "`{}` differs: {node:?} vs {got:?}",
            path.display()
        );
    }
}

async fn with_timeout<F: Future>(test: F) -> F::Output {
    tokio::time::timeout(TEST_TIMEOUT, test)
        .await
        .expect("the copy did not finish: does a script wait for stdin EOF?")
}

/// Copy in, compare; copy out, compare; and the owner survives extraction as root.
async fn round_trip(remote: &LocalRemote) {
    let src = tempfile::tempdir().expect("tempdir");
    let pod = tempfile::tempdir().expect("tempdir");
    let back = tempfile::tempdir().expect("tempdir");
    awkward_tree(src.path());
    let root = is_root();
    if root {
        // The runner's uid/gid, as on an ARC runner pod.
        for path in snapshot(src.path()).keys() {
            std::os::unix::fs::lchown(src.path().join(path), Some(1001), Some(1001))
                .expect("chown");
        }
    }
    let remote_dir = pod.path().join("__w");
    let remote_dir = remote_dir.to_str().expect("utf-8 temp dir");
    let options = CopyOptions::default().exclude("_temp/_runner_file_commands");

    let report = copy_in(remote, src.path(), remote_dir, &options)
        .await
        .expect("copy in");
    let want = expected(src.path(), &["_temp/_runner_file_commands"]);
    let files = want
        .values()
        .filter(|n| matches!(n, Node::File { .. }))
        .count();
    assert_eq!(report.files, files);
    assert_eq!(report.attempts, 1);
    assert_same_tree(&want, &snapshot(Path::new(remote_dir)));
    if root {
        let meta = fs::symlink_metadata(Path::new(remote_dir).join("a/b/c/deep.txt"))
            .expect("copied file");
        assert_eq!((meta.uid(), meta.gid()), (1001, 1001), "owner restored");
        let meta = fs::symlink_metadata(Path::new(remote_dir).join("a/b")).expect("copied dir");
        assert_eq!(
            (meta.uid(), meta.gid()),
            (1001, 1001),
            "directory owner restored"
        );
        // Symlink owners are not checked: BusyBox 1.35 does not lchown them, and Linux ignores
        // a symlink's owner except in sticky directories.
    }
    // Directory mtimes survive too (directories are archived after their contents).
    let mtime = |p: &Path| fs::symlink_metadata(p).expect("lstat").mtime();
    assert_eq!(
        mtime(&Path::new(remote_dir).join("a/b")),
        mtime(&src.path().join("a/b"))
    );

    let report = copy_out(remote, remote_dir, back.path(), &CopyOptions::default())
        .await
        .expect("copy out");
    assert_eq!(report.files, files);
    assert_same_tree(&want, &snapshot(back.path()));

    // A second copy over the first overwrites in place and still verifies.
    fs::write(src.path().join("a/b/c/deep.txt"), b"changed\n").expect("write");
    copy_in(remote, src.path(), remote_dir, &options)
        .await
        .expect("copy in again");
    assert_eq!(
        fs::read(Path::new(remote_dir).join("a/b/c/deep.txt")).expect("read"),
        b"changed\n"
    );
    copy_out(remote, remote_dir, back.path(), &CopyOptions::default())
        .await
        .expect("copy out again");
}

#[tokio::test]
async fn round_trip_with_gnu_tools() {
    with_timeout(round_trip(&LocalRemote::gnu())).await;
}

#[tokio::test]
async fn round_trip_with_busybox() {
    let applets = busybox_dir();
    let remote = LocalRemote::with_path(applets.path());
    // The scripts really run BusyBox: GNU tar would print "GNU".
    let mut out = Vec::new();
    let argv = ["sh", "-c", "tar --version 2>&1 || true"].map(str::to_owned);
    remote
        .run(argv.to_vec(), None, &mut out, &mut Vec::new())
        .await
        .expect("run");
    assert!(!String::from_utf8_lossy(&out).contains("GNU"), "{out:?}");
    with_timeout(round_trip(&remote)).await;
}

/// `_runner_file_commands` alone, from the pod's `_temp` back into the runner's `_temp`.
/// Mirror copies delete what the source no longer has, in both directions; plain copies only
/// add. Excluded paths are never deleted.
async fn mirror_deletes_what_the_source_no_longer_has(remote: &LocalRemote) {
    let runner = tempfile::tempdir().expect("tempdir");
    let pod = tempfile::tempdir().expect("tempdir");
    let ws = runner.path().join("ws");
    let remote_dir = pod.path().join("ws");
    let remote_dir = remote_dir.to_str().expect("utf-8 temp dir");
    for (path, text) in [
        ("keep.txt", "kept\n"),
        ("gone.txt", "deleted by a step\n"),
        ("build/out/a.o", "object\n"),
        ("src/main.c", "int main;\n"),
    ] {
        fs::create_dir_all(ws.join(path).parent().unwrap()).expect("mkdir");
        fs::write(ws.join(path), text).expect("write");
    }
    std::os::unix::fs::symlink("src/main.c", ws.join("link")).expect("symlink");
    copy_in(remote, &ws, remote_dir, &CopyOptions::default())
        .await
        .expect("copy in");

    // A step in the pod deletes a file, a directory tree and a symlink.
    let pod_ws = Path::new(remote_dir);
    fs::remove_file(pod_ws.join("gone.txt")).expect("rm");
    fs::remove_dir_all(pod_ws.join("build")).expect("rm -r");
    fs::remove_file(pod_ws.join("link")).expect("rm link");
    fs::create_dir_all(ws.join("_excluded")).expect("mkdir");
    fs::write(ws.join("_excluded/state"), "local only\n").expect("write");

    // A plain copy-out leaves the runner's copies of them.
    copy_out(remote, remote_dir, &ws, &CopyOptions::default())
        .await
        .expect("copy out");
    assert!(ws.join("gone.txt").exists() && ws.join("build/out/a.o").exists());

    // A mirror copy-out removes them, and keeps what is excluded.
    let mirror = CopyOptions::default().mirror().exclude("_excluded");
    copy_out(remote, remote_dir, &ws, &mirror)
        .await
        .expect("mirror copy out");
    assert_eq!(
        snapshot(&ws).keys().cloned().collect::<Vec<_>>(),
        [
            "_excluded",
            "_excluded/state",
            "keep.txt",
            "src",
            "src/main.c"
        ]
        .map(PathBuf::from)
    );

    // The other way: the runner deletes, a mirror copy-in makes the pod's copy the same.
    fs::remove_dir_all(ws.join("src")).expect("rm -r");
    fs::remove_dir_all(ws.join("_excluded")).expect("rm -r");
    fs::write(pod_ws.join("pod-only.txt"), "stale\n").expect("write");
    copy_in(remote, &ws, remote_dir, &CopyOptions::default().mirror())
        .await
        .expect("mirror copy in");
    assert_same_tree(&snapshot(&ws), &snapshot(pod_ws));
    assert_eq!(
        fs::read_to_string(pod_ws.join("keep.txt")).expect("read"),
        "kept\n"
    );
}

#[tokio::test]
async fn mirror_with_gnu_tools() {
    with_timeout(mirror_deletes_what_the_source_no_longer_has(
        &LocalRemote::gnu(),
    ))
    .await;
}

#[tokio::test]
async fn mirror_with_busybox() {
    let tools = busybox_dir();
    with_timeout(mirror_deletes_what_the_source_no_longer_has(
        &LocalRemote::with_path(tools.path()),
    ))
    .await;
}

#[tokio::test]
async fn copy_out_of_one_subdirectory() {
    with_timeout(async {
        let pod = tempfile::tempdir().expect("tempdir");
        let runner_temp = tempfile::tempdir().expect("tempdir");
        fs::create_dir_all(pod.path().join("_temp/_runner_file_commands")).expect("mkdir");
        fs::write(
            pod.path().join("_temp/_runner_file_commands/set_output_1"),
            b"answer=42\n",
        )
        .expect("write");
        fs::write(pod.path().join("_temp/other"), b"not copied").expect("write");
        let remote_dir = pod.path().join("_temp/_runner_file_commands");
        let report = copy_out(
            &LocalRemote::gnu(),
            remote_dir.to_str().expect("utf-8"),
            &runner_temp.path().join("_runner_file_commands"),
            &CopyOptions::default(),
        )
        .await
        .expect("copy out");
        assert_eq!(report.files, 1);
        assert_eq!(
            fs::read(
                runner_temp
                    .path()
                    .join("_runner_file_commands/set_output_1")
            )
            .expect("read"),
            b"answer=42\n"
        );
        assert!(!runner_temp.path().join("other").exists());
    })
    .await;
}

#[tokio::test]
async fn corruption_on_the_first_attempt_is_retried() {
    with_timeout(async {
        let src = tempfile::tempdir().expect("tempdir");
        let pod = tempfile::tempdir().expect("tempdir");
        let back = tempfile::tempdir().expect("tempdir");
        awkward_tree(src.path());
        let remote = Corrupting {
            inner: LocalRemote::gnu(),
            corrupt: AtomicU32::new(1),
            runs: AtomicU32::new(0),
        };
        let remote_dir = pod.path().to_str().expect("utf-8");
        let report = copy_in(&remote, src.path(), remote_dir, &fast_retries())
            .await
            .expect("second attempt succeeds");
        assert_eq!(report.attempts, 2);
        let copied = fs::read(pod.path().join("corrupt-me.txt")).expect("read");
        assert!(copied.windows(NEEDLE.len()).any(|w| w == NEEDLE));

        remote.corrupt.store(1, Ordering::SeqCst);
        let report = copy_out(&remote, remote_dir, back.path(), &fast_retries())
            .await
            .expect("second attempt succeeds");
        assert_eq!(report.attempts, 2);
        let copied = fs::read(back.path().join("corrupt-me.txt")).expect("read");
        assert!(copied.windows(NEEDLE.len()).any(|w| w == NEEDLE));
    })
    .await;
}

#[tokio::test]
async fn persistent_corruption_fails_naming_the_file() {
    with_timeout(async {
        let src = tempfile::tempdir().expect("tempdir");
        let pod = tempfile::tempdir().expect("tempdir");
        fs::write(src.path().join("fine.txt"), b"fine").expect("write");
        fs::write(src.path().join("corrupt-me.txt"), b"CORRUPT-ME").expect("write");
        let remote = Corrupting {
            inner: LocalRemote::gnu(),
            corrupt: AtomicU32::new(u32::MAX),
            runs: AtomicU32::new(0),
        };
        let remote_dir = pod.path().to_str().expect("utf-8");
        let error = copy_in(&remote, src.path(), remote_dir, &fast_retries())
            .await
            .expect_err("always corrupt");
        assert_eq!(remote.runs.load(Ordering::SeqCst), 3);
        let CopyError::CopyIn {
            attempts: 3,
            failure: AttemptFailure::Mismatch { checked, problems },
            ..
        } = &error
        else {
            panic!("unexpected error: {error:?}");
        };
        assert_eq!(*checked, 2);
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].path, Path::new("corrupt-me.txt"));
        assert!(matches!(problems[0].problem, Problem::Differs { .. }));
        let message = format!("{:#}", anyhow::Error::from(error));
        assert!(
            message.starts_with(&format!(
                "copying `{}` into the pod at `{remote_dir}` failed after 3 attempt(s): 1 of 2 \
                 files did not arrive intact: `corrupt-me.txt` differs (sent sha256 ",
                src.path().display()
            )),
            "{message}"
        );

        // The failed copies left the corrupted file in the pod; put the original back.
        fs::write(pod.path().join("corrupt-me.txt"), b"CORRUPT-ME").expect("write");
        let back = tempfile::tempdir().expect("tempdir");
        let error = copy_out(&remote, remote_dir, back.path(), &fast_retries())
            .await
            .expect_err("always corrupt");
        let message = format!("{:#}", anyhow::Error::from(error));
        assert!(
            message.contains("failed after 3 attempt(s): 1 of 2 files did not arrive intact: `corrupt-me.txt` differs"),
            "{message}"
        );
    })
    .await;
}

#[tokio::test]
async fn a_failing_script_reports_its_exit_code_and_stderr() {
    with_timeout(async {
        let src = tempfile::tempdir().expect("tempdir");
        fs::write(src.path().join("file"), b"data").expect("write");
        let remote = Script("echo 'tar: /__w: Cannot open: No space left on device' >&2; exit 2");
        let error = copy_in(&remote, src.path(), "/__w", &fast_retries())
            .await
            .expect_err("exit 2");
        assert_eq!(
            format!("{:#}", anyhow::Error::from(error)),
            format!(
                "copying `{}` into the pod at `/__w` failed after 3 attempt(s): the copy script \
                 in the pod exited with code 2: tar: /__w: Cannot open: No space left on device",
                src.path().display()
            )
        );
        let back = tempfile::tempdir().expect("tempdir");
        let error = copy_out(&remote, "/__w", back.path(), &fast_retries())
            .await
            .expect_err("exit 2");
        assert!(
            matches!(
                error,
                CopyError::CopyOut {
                    failure: AttemptFailure::RemoteExit { code: 2, .. },
                    ..
                }
            ),
            "{error:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn a_missing_remote_directory_fails_copy_out_with_the_shell_message() {
    with_timeout(async {
        let back = tempfile::tempdir().expect("tempdir");
        let error = copy_out(
            &LocalRemote::gnu(),
            "/nonexistent/_runner_file_commands",
            back.path(),
            &fast_retries(),
        )
        .await
        .expect_err("no such directory");
        let message = format!("{:#}", anyhow::Error::from(error));
        assert!(
            message.contains("/nonexistent/_runner_file_commands"),
            "{message}"
        );
        assert!(message.contains("exited with code 2"), "{message}");
    })
    .await;
}

#[tokio::test]
async fn a_broken_connection_is_retried() {
    with_timeout(async {
        let src = tempfile::tempdir().expect("tempdir");
        let pod = tempfile::tempdir().expect("tempdir");
        fs::write(src.path().join("file"), b"data").expect("write");
        let remote = DropsFirst {
            inner: LocalRemote::gnu(),
            runs: AtomicU32::new(0),
        };
        let report = copy_in(
            &remote,
            src.path(),
            pod.path().to_str().expect("utf-8"),
            &fast_retries(),
        )
        .await
        .expect("retried");
        assert_eq!(report.attempts, 2);
    })
    .await;
}

#[tokio::test]
async fn copy_out_never_writes_through_a_local_symlink() {
    with_timeout(async {
        let pod = tempfile::tempdir().expect("tempdir");
        let local = tempfile::tempdir().expect("tempdir");
        let outside = tempfile::tempdir().expect("tempdir");
        fs::create_dir_all(pod.path().join("dir")).expect("mkdir");
        fs::write(pod.path().join("dir/file"), b"from the pod").expect("write");
        fs::write(pod.path().join("file"), b"from the pod").expect("write");
        // The local destination already has symlinks to outside where the pod has a directory
        // and a file.
        symlink(outside.path(), local.path().join("dir")).expect("symlink");
        symlink(outside.path().join("file"), local.path().join("file")).expect("symlink");
        copy_out(
            &LocalRemote::gnu(),
            pod.path().to_str().expect("utf-8"),
            local.path(),
            &CopyOptions::default(),
        )
        .await
        .expect("copy out");
        assert_eq!(fs::read_dir(outside.path()).expect("ls").count(), 0);
        assert!(
            fs::symlink_metadata(local.path().join("dir"))
                .expect("lstat")
                .is_dir()
        );
        assert_eq!(
            fs::read(local.path().join("dir/file")).expect("read"),
            b"from the pod"
        );
        assert!(
            fs::symlink_metadata(local.path().join("file"))
                .expect("lstat")
                .is_file()
        );
    })
    .await;
}

#[tokio::test]
async fn a_relative_remote_directory_is_refused() {
    let src = tempfile::tempdir().expect("tempdir");
    let error = copy_in(
        &LocalRemote::gnu(),
        src.path(),
        "__w",
        &CopyOptions::default(),
    )
    .await
    .expect_err("relative");
    assert!(matches!(error, CopyError::RemoteDirNotAbsolute { .. }));
}

/// A temporary directory in memory when the machine has `/dev/shm`: creating 10,000 files on
/// this machine class's disk costs ~10 s of kernel time per pass, which would measure the disk
/// rather than the copy.
fn scratch_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(dir) = tempfile::tempdir_in(shm)
    {
        return dir;
    }
    tempfile::tempdir().expect("tempdir")
}

/// 10,000 files, 200 MB, in 100 directories: in, out, and checked byte for byte.
async fn many_files(remote: &LocalRemote) {
    const FILES: usize = 10_000;
    const SIZE: usize = 20_000;
    let src = scratch_dir();
    let pod = scratch_dir();
    let back = scratch_dir();
    let started = Instant::now();
    let mut pool = vec![0u8; 4 * 1024 * 1024];
    fill(&mut pool, 7);
    for dir in 0..FILES / 100 {
        fs::create_dir(src.path().join(format!("d{dir:03}"))).expect("mkdir");
    }
    for i in 0..FILES {
        let start = (i * 7919) % (pool.len() - SIZE);
        let mut data = pool[start..start + SIZE].to_vec();
        data[..8].copy_from_slice(&(i as u64).to_le_bytes());
        fs::write(src.path().join(format!("d{:03}/f{i:05}", i / 100)), data).expect("write");
    }
    eprintln!("generated in {:?}", started.elapsed());
    let remote_dir = pod.path().to_str().expect("utf-8");

    let report = copy_in(remote, src.path(), remote_dir, &CopyOptions::default())
        .await
        .expect("copy in");
    eprintln!("copy in: {report}");
    assert_eq!((report.files, report.bytes), (FILES, (FILES * SIZE) as u64));

    let report = copy_out(remote, remote_dir, back.path(), &CopyOptions::default())
        .await
        .expect("copy out");
    eprintln!("copy out: {report}");
    assert_eq!((report.files, report.bytes), (FILES, (FILES * SIZE) as u64));

    let started = Instant::now();
    for i in 0..FILES {
        let rel = format!("d{:03}/f{i:05}", i / 100);
        let original = fs::read(src.path().join(&rel)).expect("read");
        assert!(
            original == fs::read(pod.path().join(&rel)).expect("read"),
            "{rel} in"
        );
        assert!(
            original == fs::read(back.path().join(&rel)).expect("read"),
            "{rel} out"
        );
    }
    eprintln!("compared in {:?}", started.elapsed());
}

#[tokio::test]
async fn ten_thousand_files_200_mb_with_gnu_tools() {
    with_timeout(many_files(&LocalRemote::gnu())).await;
}

#[tokio::test]
async fn ten_thousand_files_200_mb_with_busybox() {
    let applets = busybox_dir();
    with_timeout(many_files(&LocalRemote::with_path(applets.path()))).await;
}

/// A directory whose `sha256sum` fails with "Permission denied" for names containing
/// `unreadable` (as for a root-owned 0600 file when the container runs as a user), ahead of the
/// system's tools on PATH.
fn path_with_picky_sha256sum() -> (tempfile::TempDir, OsString) {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("sha256sum");
    fs::write(
        &script,
        "#!/bin/sh\nstatus=0\nfor f in \"$@\"; do\n  case $f in\n    *unreadable*) echo \"sha256sum: $f: Permission denied\" >&2; status=1 ;;\n    *) /usr/bin/sha256sum \"$f\" ;;\n  esac\ndone\nexit $status\n",
    )
    .expect("write");
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).expect("chmod");
    let mut path = dir.path().as_os_str().to_owned();
    path.push(":/usr/bin:/bin");
    (dir, path)
}

#[tokio::test]
async fn an_unreadable_file_already_in_the_destination_does_not_fail_copy_in() {
    with_timeout(async {
        let (_tools, path) = path_with_picky_sha256sum();
        let remote = LocalRemote { path: Some(path) };
        let src = tempfile::tempdir().expect("tempdir");
        let pod = tempfile::tempdir().expect("tempdir");
        fs::create_dir_all(src.path().join("_temp")).expect("mkdir");
        fs::write(src.path().join("_temp/script.sh"), b"echo hi").expect("write");
        fs::create_dir_all(pod.path().join("_temp")).expect("mkdir");
        fs::write(pod.path().join("_temp/unreadable"), b"root only").expect("write");
        let remote_dir = pod.path().to_str().expect("utf-8");
        let report = copy_in(&remote, src.path(), remote_dir, &fast_retries())
            .await
            .expect("the extra file is not ours to check");
        assert_eq!((report.files, report.attempts), (1, 1));

        // When the unreadable file is one we sent, the copy fails with the reason.
        fs::write(src.path().join("_temp/unreadable"), b"ours").expect("write");
        let error = copy_in(&remote, src.path(), remote_dir, &fast_retries())
            .await
            .expect_err("cannot verify");
        let message = format!("{:#}", anyhow::Error::from(error));
        assert!(
            message
                .contains("exited with code 3: sha256sum: ./_temp/unreadable: Permission denied"),
            "{message}"
        );
    })
    .await;
}

#[tokio::test]
async fn a_container_without_sha256sum_fails_with_a_clear_message() {
    with_timeout(async {
        // GNU tools without `sha256sum`. (BusyBox cannot show this: its `find` runs its own
        // `sha256sum` applet even when no link to it is on PATH.)
        let tools = tempfile::tempdir().expect("tempdir");
        for tool in APPLETS.iter().filter(|t| **t != "sha256sum") {
            let real = ["/usr/bin", "/bin"]
                .iter()
                .map(|d| Path::new(d).join(tool))
                .find(|p| p.exists())
                .expect("GNU tool");
            symlink(real, tools.path().join(tool)).expect("link");
        }
        let src = tempfile::tempdir().expect("tempdir");
        let pod = tempfile::tempdir().expect("tempdir");
        fs::write(src.path().join("file"), b"data").expect("write");
        let error = copy_in(
            &LocalRemote::with_path(tools.path()),
            src.path(),
            pod.path().to_str().expect("utf-8"),
            &fast_retries(),
        )
        .await
        .expect_err("no sha256sum");
        let message = format!("{:#}", anyhow::Error::from(error));
        assert!(message.contains("sha256sum"), "{message}");
    })
    .await;
}
