//! Moving files between the runner and a pod in copy mode: one tar stream per direction over a
//! [`Remote`], verified by content, retried as a whole.
//!
//! Owns the copy procedure, the verification and the retry policy; the scripts run in the pod
//! and their arguments belong to `scripts`, the archive format to `archive`, the checksum
//! listings to `checksum`. It must not know about pods, hooks or which directories a step needs;
//! `hooks` chooses the paths, `k8s::exec` implements [`Remote`]. Nothing here needs the remote
//! side to see the end of stdin, so the same code works on the v4 exec protocol, which cannot
//! half-close stdin (`wsstream/conn.go` in k8s.io/apimachinery: only `v5.channel.k8s.io` has the
//! close channel).
//!
//! **Copy in** ([`copy_in`]): the local directory is packed once into a temporary archive while
//! each regular file is hashed (sha256). The remote script ([`COPY_IN_SCRIPT`]) reads exactly the
//! archive's length with `head -c`, extracts it, then prints the `sha256sum` of the regular files
//! under the top-level entries it was sent (one `find -exec {} +`). Every file sent must come back
//! with its digest; other files already in the destination are left alone (and, when they sit
//! beside the copied entries rather than inside them, not even hashed). Extraction overwrites,
//! so a retry resends the same archive.
//!
//! **Copy out** ([`copy_out`]): the remote script ([`COPY_OUT_SCRIPT`]) writes `tar -c .` to
//! stdout and then, on the same stdout after the archive's end, the `sha256sum` of every regular
//! file. The archive is unpacked locally as it streams (never through a symlink, never outside
//! the destination) and hashed on the way; the listing after it must match what was unpacked,
//! both ways. Stderr stays free for error messages.
//!
//! **Mirror** ([`CopyOptions::mirror`]): by default copies add and overwrite; with `mirror`, what
//! the source no longer has is deleted at the destination too (after verification on copy-out;
//! by emptying the destination before extraction on copy-in), so a file a step deleted does not
//! come back with the next copy. The hooks mirror the workspace, never `_temp`.
//!
//! The TypeScript hook compared names and sizes only, retried 15 times and then went on silently
//! (RCH #269, #275); here a copy either verifies or fails with the files that differ.
//!
//! # Remote requirements
//! The container must have `sh`, `mkdir`, `head` (with `-c`), `tar`, `find` (with
//! `-exec ... {} +`) and `sha256sum`: GNU coreutils/findutils/tar and BusyBox (Alpine) both
//! qualify. Extraction keeps modes (`tar -x -p`) and, when the container extracts as root,
//! numeric owners: the runner's own uid/gid, or those a previous copy-out received for the
//! same entries ([`copy_out_recording`], [`CopyOptions::recorded`]), so what a step running as
//! root made `0600` for uid 4242 stays so in the next pod. The runner side keeps modes, never
//! owners (it runs as an ordinary user and owns what it unpacks).

mod archive;
mod checksum;
pub mod remote;
mod scripts;

use std::collections::HashMap;
use std::fmt;
use std::io::{self, SeekFrom};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _, AsyncWrite, AsyncWriteExt as _};
use tracing::{debug, warn};

pub use archive::{EntryMeta, Recorded, UnpackError};
pub use checksum::{FileProblem, ListingError, Problem, Sha256};
pub use remote::{Remote, Stdin};
pub use scripts::{COPY_IN_SCRIPT, COPY_OUT_SCRIPT};

use archive::Exclude;

/// Attempts per direction before giving up.
pub const ATTEMPTS: u32 = 3;

/// Wait before the second attempt; it grows linearly (0.5 s, 1 s, ...).
pub const BACKOFF: Duration = Duration::from_millis(500);

/// Entries with these names are never copied, at any depth, in either direction: the runner
/// keeps the response files of its hook calls there (the TypeScript hook excluded them too).
pub const NEVER_COPIED: &[&str] = &["_runner_hook_responses"];

/// At most this much of the remote's stderr is kept for error messages.
const STDERR_LIMIT: usize = 16 * 1024;
/// Read-ahead when streaming the archive file to the remote.
const READ_BUFFER: usize = 1024 * 1024;
/// In-memory pipe between the exec stream and the unpacking thread.
const PIPE_CAPACITY: usize = 1024 * 1024;
/// Files named in a mismatch error.
const PROBLEMS_SHOWN: usize = 5;

/// How to copy.
#[derive(Debug, Clone)]
pub struct CopyOptions {
    /// Paths relative to the copied directory that are not copied (a directory excludes its
    /// contents), e.g. `_temp/_runner_hook_responses` when copying `_work`. On copy-out they are
    /// still transferred but not unpacked or checked. [`NEVER_COPIED`] applies in addition.
    pub exclude: Vec<PathBuf>,
    /// Attempts before giving up ([`ATTEMPTS`]).
    pub attempts: u32,
    /// Wait before the second attempt ([`BACKOFF`]), multiplied by the attempt number after.
    pub backoff: Duration,
    /// Make the destination an exact copy: what the source no longer has is deleted there too
    /// (a step's `rm` must not be undone by the next copy). Copy-out deletes local entries that
    /// the verified archive did not name (excluded paths are kept); copy-in empties the remote
    /// destination before extracting ([`COPY_IN_SCRIPT`]'s `mirror`), so use it only for a
    /// directory the source holds in full, such as the workspace.
    pub mirror: bool,
    /// Copy-in: what a copy-out into the same local directory received ([`copy_out_recording`]):
    /// entries still as it left them are sent with the pod's mode and numeric owner instead of
    /// the runner's (who cannot chown).
    pub recorded: Option<Arc<Recorded>>,
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            exclude: Vec::new(),
            attempts: ATTEMPTS,
            backoff: BACKOFF,
            mirror: false,
            recorded: None,
        }
    }
}

impl CopyOptions {
    /// These options, also excluding `path` (relative to the copied directory).
    pub fn exclude(mut self, path: impl Into<PathBuf>) -> Self {
        self.exclude.push(path.into());
        self
    }

    /// These options, mirroring ([`CopyOptions::mirror`]).
    pub fn mirror(mut self) -> Self {
        self.mirror = true;
        self
    }

    /// These options, sending modes and owners `recorded` by a copy-out
    /// ([`CopyOptions::recorded`]).
    pub fn recorded(mut self, recorded: Recorded) -> Self {
        self.recorded = Some(Arc::new(recorded));
        self
    }

    fn matcher(&self) -> Exclude {
        Exclude::new(&self.exclude, NEVER_COPIED)
    }
}

/// What a finished copy moved, for `::debug::` timings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyReport {
    /// Regular files copied and verified.
    pub files: usize,
    /// Their total size.
    pub bytes: u64,
    /// Wall time, packing and retries included.
    pub duration: Duration,
    /// Attempts it took (1 when nothing had to be retried).
    pub attempts: u32,
}

impl fmt::Display for CopyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} files, {} bytes in {:.2}s",
            self.files,
            self.bytes,
            self.duration.as_secs_f64()
        )?;
        if self.attempts > 1 {
            write!(f, " ({} attempts)", self.attempts)?;
        }
        Ok(())
    }
}

/// A copy that did not happen or could not be verified.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// The remote directory is not an absolute path.
    #[error("the pod directory `{remote_dir}` is not an absolute path")]
    RemoteDirNotAbsolute {
        /// The directory given.
        remote_dir: String,
    },
    /// The local directory could not be read into an archive (nothing was sent).
    #[error("cannot pack `{}` for copying into the pod", path.display())]
    Pack {
        /// The directory being copied.
        local_dir: PathBuf,
        /// The file or directory that failed.
        path: PathBuf,
        /// The failure.
        #[source]
        source: io::Error,
    },
    /// Copying into the pod failed on every attempt; `failure` is the last one.
    #[error(
        "copying `{}` into the pod at `{remote_dir}` failed after {attempts} attempt(s)",
        local_dir.display()
    )]
    CopyIn {
        /// Runner-side source.
        local_dir: PathBuf,
        /// Pod-side destination.
        remote_dir: String,
        /// Attempts made.
        attempts: u32,
        /// Why the last attempt failed.
        #[source]
        failure: AttemptFailure,
    },
    /// Copying out of the pod failed on every attempt; `failure` is the last one.
    #[error(
        "copying `{remote_dir}` from the pod to `{}` failed after {attempts} attempt(s)",
        local_dir.display()
    )]
    CopyOut {
        /// Pod-side source.
        remote_dir: String,
        /// Runner-side destination.
        local_dir: PathBuf,
        /// Attempts made.
        attempts: u32,
        /// Why the last attempt failed.
        #[source]
        failure: AttemptFailure,
    },
}

/// Why one attempt failed. Every kind is retried.
#[derive(Debug, thiserror::Error)]
pub enum AttemptFailure {
    /// The exec connection could not be made or broke (the [`Remote`]'s error).
    #[error("the exec connection failed")]
    Connection(#[source] anyhow::Error),
    /// The remote script exited non-zero (a tool missing, no space left, a corrupt stream).
    #[error(
        "the copy script in the pod exited with code {code}{}",
        stderr_suffix(stderr)
    )]
    RemoteExit {
        /// Exit code.
        code: i32,
        /// The start of its stderr.
        stderr: String,
    },
    /// The remote's checksum listing could not be read.
    #[error("the checksum listing from the pod is unreadable")]
    Listing(#[source] ListingError),
    /// Files did not arrive intact.
    #[error("{} of {checked} files did not arrive intact: {}", problems.len(), list_problems(problems))]
    Mismatch {
        /// Files checked.
        checked: usize,
        /// Every file that differs, sorted by path.
        problems: Vec<FileProblem>,
    },
    /// The received stream could not be unpacked locally (copy-out).
    #[error("the archive from the pod could not be unpacked")]
    Unpack(#[source] UnpackError),
    /// The local archive could not be read back (copy-in).
    #[error("the local archive could not be read")]
    LocalArchive(#[source] io::Error),
}

fn stderr_suffix(stderr: &str) -> String {
    if stderr.is_empty() {
        String::new()
    } else {
        format!(": {stderr}")
    }
}

fn list_problems(problems: &[FileProblem]) -> String {
    let mut text = problems
        .iter()
        .take(PROBLEMS_SHOWN)
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    if problems.len() > PROBLEMS_SHOWN {
        text.push_str(&format!(" and {} more", problems.len() - PROBLEMS_SHOWN));
    }
    text
}

/// Copy the contents of `local_dir` into `remote_dir` (absolute; created if missing) in the
/// container behind `remote`, then verify every regular file by its sha256 in the same exec.
/// Existing files are overwritten; other files in `remote_dir` are left alone. To copy one
/// subdirectory, name it on both sides.
///
/// # Errors
/// [`CopyError::Pack`] when the local side cannot be read (not retried);
/// [`CopyError::CopyIn`] when every attempt failed.
#[tracing::instrument(skip_all, fields(local_dir = %local_dir.display(), remote_dir))]
pub async fn copy_in<R: Remote>(
    remote: &R,
    local_dir: &Path,
    remote_dir: &str,
    options: &CopyOptions,
) -> Result<CopyReport, CopyError> {
    let started = Instant::now();
    check_remote_dir(remote_dir)?;
    let exclude = options.matcher();
    let root = local_dir.to_path_buf();
    let recorded = options.recorded.clone().unwrap_or_default();
    let packed = tokio::task::spawn_blocking(move || archive::pack(&root, &exclude, &recorded))
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
        .map_err(|e| CopyError::Pack {
            local_dir: local_dir.to_path_buf(),
            path: e.path,
            source: e.source,
        })?;
    let packed = PackedDir {
        local_dir: local_dir.to_path_buf(),
        packed,
    };
    send_packed(remote, &packed, remote_dir, options, started).await
}

/// A selection of a local directory packed into a temporary archive by [`pack_selection`], ready
/// to be copied into a pod with [`copy_in_packed`] (once or several times).
pub struct PackedDir {
    local_dir: PathBuf,
    packed: archive::Packed,
}

impl fmt::Debug for PackedDir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PackedDir")
            .field("local_dir", &self.local_dir)
            .field("archive_len", &self.packed.len)
            .field("files", &self.packed.files.len())
            .field("bytes", &self.packed.bytes)
            .finish()
    }
}

impl PackedDir {
    /// The directory the entries were packed from.
    pub fn local_dir(&self) -> &Path {
        &self.local_dir
    }

    /// Length of the archive in bytes.
    pub fn archive_len(&self) -> u64 {
        self.packed.len
    }

    /// Sum of the regular files' sizes.
    pub fn bytes(&self) -> u64 {
        self.packed.bytes
    }

    /// Every regular file in the archive (relative path, as bytes), in archive order, with the
    /// sha256 it was packed with.
    pub fn files(&self) -> &[(Vec<u8>, Sha256)] {
        &self.packed.files
    }

    /// The archive, read from its start (a new handle on the same temporary file, which shares
    /// its position with every other handle: read one at a time).
    ///
    /// # Errors
    /// When the file handle cannot be duplicated or rewound.
    pub fn open(&self) -> io::Result<std::fs::File> {
        use std::io::Seek as _;
        let mut file = self.packed.file.try_clone()?;
        file.seek(SeekFrom::Start(0))?;
        Ok(file)
    }
}

/// Pack exactly `entries` of `local_dir` (relative paths, each directory listed after its
/// contents) into a temporary archive, hashing every regular file. Symlinks are packed as
/// symlinks, never followed; a listed directory is packed as an entry alone (list its contents
/// too); sockets, FIFOs and devices are skipped. Blocking: call it from
/// `tokio::task::spawn_blocking` in async code.
///
/// # Errors
/// [`CopyError::Pack`] naming the entry that could not be read.
pub fn pack_selection(local_dir: &Path, entries: &[PathBuf]) -> Result<PackedDir, CopyError> {
    let entries: Vec<Vec<u8>> = entries
        .iter()
        .map(|e| e.as_os_str().as_encoded_bytes().to_vec())
        .collect();
    let packed = archive::pack_entries(local_dir, &entries).map_err(|e| CopyError::Pack {
        local_dir: local_dir.to_path_buf(),
        path: e.path,
        source: e.source,
    })?;
    Ok(PackedDir {
        local_dir: local_dir.to_path_buf(),
        packed,
    })
}

/// Copy an archive made by [`pack_selection`] into `remote_dir` (absolute; created if missing),
/// verified and retried exactly like [`copy_in`]. `options.exclude` does not apply: the
/// selection was made when packing.
///
/// # Errors
/// [`CopyError::CopyIn`] when every attempt failed.
#[tracing::instrument(skip_all, fields(local_dir = %packed.local_dir.display(), remote_dir))]
pub async fn copy_in_packed<R: Remote>(
    remote: &R,
    packed: &PackedDir,
    remote_dir: &str,
    options: &CopyOptions,
) -> Result<CopyReport, CopyError> {
    check_remote_dir(remote_dir)?;
    send_packed(remote, packed, remote_dir, options, Instant::now()).await
}

async fn send_packed<R: Remote>(
    remote: &R,
    packed: &PackedDir,
    remote_dir: &str,
    options: &CopyOptions,
    started: Instant,
) -> Result<CopyReport, CopyError> {
    let PackedDir { local_dir, packed } = packed;
    debug!(
        files = packed.files.len(),
        archive = packed.len,
        elapsed = ?started.elapsed(),
        "packed"
    );
    let sent: HashMap<Vec<u8>, Sha256> = packed.files.iter().cloned().collect();
    let argv = scripts::copy_in_argv(remote_dir, packed.len, options.mirror, &packed.files);
    let attempt = |_| copy_in_attempt(remote, packed, &sent, argv.clone());
    match retry(options, attempt).await {
        Ok(((), attempts)) => Ok(CopyReport {
            files: packed.files.len(),
            bytes: packed.bytes,
            duration: started.elapsed(),
            attempts,
        }),
        Err((failure, attempts)) => Err(CopyError::CopyIn {
            local_dir: local_dir.clone(),
            remote_dir: remote_dir.to_owned(),
            attempts,
            failure,
        }),
    }
}

async fn copy_in_attempt<R: Remote>(
    remote: &R,
    packed: &archive::Packed,
    sent: &HashMap<Vec<u8>, Sha256>,
    argv: Vec<String>,
) -> Result<(), AttemptFailure> {
    let file = packed
        .file
        .try_clone()
        .map_err(AttemptFailure::LocalArchive)?;
    let mut file = tokio::fs::File::from_std(file);
    file.seek(SeekFrom::Start(0))
        .await
        .map_err(AttemptFailure::LocalArchive)?;
    let reader = tokio::io::BufReader::with_capacity(READ_BUFFER, file).take(packed.len);
    let stdin = Stdin {
        len: packed.len,
        reader: Box::new(reader),
    };
    let mut stdout = Vec::new();
    let mut stderr = CappedBuffer::default();
    let code = remote
        .run(argv, Some(stdin), &mut stdout, &mut stderr)
        .await
        .map_err(AttemptFailure::Connection)?;
    let remote_exit = || AttemptFailure::RemoteExit {
        code,
        stderr: stderr.text(),
    };
    if code != 0 && code != scripts::HASH_INCOMPLETE {
        return Err(remote_exit());
    }
    let verified = checksum::parse_listing(&stdout, &|name| sent.contains_key(name))
        .map_err(AttemptFailure::Listing)
        .and_then(|listing| {
            let received: HashMap<Vec<u8>, Sha256> = listing.into_iter().collect();
            let problems = checksum::compare(sent, &received, false);
            if problems.is_empty() {
                Ok(())
            } else {
                Err(AttemptFailure::Mismatch {
                    checked: sent.len(),
                    problems,
                })
            }
        });
    match verified {
        // Hashing stumbled on something, and it mattered: its stderr says why.
        Err(_) if code == scripts::HASH_INCOMPLETE => Err(remote_exit()),
        Err(failure) => Err(failure),
        Ok(()) => {
            stderr.log_if_any();
            Ok(())
        }
    }
}

/// Copy the contents of `remote_dir` (absolute) in the container behind `remote` into
/// `local_dir` (created if missing), verifying every regular file by its sha256. Existing local
/// files are overwritten (a symlink or file where the pod has a directory is replaced by a
/// directory); other local files are left alone. To copy one subdirectory, name it on both sides,
/// e.g. `/__w/_temp/_runner_file_commands` into `<runner temp>/_runner_file_commands`.
///
/// # Errors
/// [`CopyError::CopyOut`] when every attempt failed.
pub async fn copy_out<R: Remote>(
    remote: &R,
    remote_dir: &str,
    local_dir: &Path,
    options: &CopyOptions,
) -> Result<CopyReport, CopyError> {
    copy_out_recording(remote, remote_dir, local_dir, options)
        .await
        .map(|(report, _)| report)
}

/// [`copy_out`], also returning what the archive said about the mode and owner of each file and
/// directory: give it to the next [`copy_in`] of `local_dir` ([`CopyOptions::recorded`]) so
/// modes and owners the runner could not keep reach the next pod.
///
/// # Errors
/// [`CopyError::CopyOut`] when every attempt failed.
#[tracing::instrument(skip_all, fields(remote_dir, local_dir = %local_dir.display()))]
pub async fn copy_out_recording<R: Remote>(
    remote: &R,
    remote_dir: &str,
    local_dir: &Path,
    options: &CopyOptions,
) -> Result<(CopyReport, Recorded), CopyError> {
    let started = Instant::now();
    check_remote_dir(remote_dir)?;
    let exclude = options.matcher();
    let argv = scripts::copy_out_argv(remote_dir);
    let attempt = |_| copy_out_attempt(remote, local_dir, &exclude, options.mirror, argv.clone());
    match retry(options, attempt).await {
        Ok(((files, bytes, recorded), attempts)) => Ok((
            CopyReport {
                files,
                bytes,
                duration: started.elapsed(),
                attempts,
            },
            recorded,
        )),
        Err((failure, attempts)) => Err(CopyError::CopyOut {
            remote_dir: remote_dir.to_owned(),
            local_dir: local_dir.to_path_buf(),
            attempts,
            failure,
        }),
    }
}

async fn copy_out_attempt<R: Remote>(
    remote: &R,
    local_dir: &Path,
    exclude: &Exclude,
    mirror: bool,
    argv: Vec<String>,
) -> Result<(usize, u64, Recorded), AttemptFailure> {
    tokio::fs::create_dir_all(local_dir)
        .await
        .map_err(|source| {
            AttemptFailure::Unpack(UnpackError::Write {
                path: local_dir.to_path_buf(),
                source,
            })
        })?;
    let (mut writer, reader) = tokio::io::duplex(PIPE_CAPACITY);
    let bridge = tokio_util::io::SyncIoBridge::new(reader);
    let root = local_dir.to_path_buf();
    let matcher = exclude.clone();
    let unpacking = tokio::task::spawn_blocking(move || {
        let mut reader = io::BufReader::with_capacity(READ_BUFFER, bridge);
        let result = archive::unpack(&mut reader, &root, &matcher);
        if result.is_err() {
            // Keep reading so the remote's output never blocks on a full pipe.
            let _ = io::copy(&mut reader, &mut io::sink());
        }
        result
    });
    let mut stderr = CappedBuffer::default();
    let ran = remote.run(argv, None, &mut writer, &mut stderr).await;
    // End of stream for the unpacking thread, whatever happened.
    let _ = writer.shutdown().await;
    drop(writer);
    let unpacked = unpacking
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    let code = ran.map_err(AttemptFailure::Connection)?;
    if code != 0 {
        return Err(AttemptFailure::RemoteExit {
            code,
            stderr: stderr.text(),
        });
    }
    stderr.log_if_any();
    let unpacked = unpacked.map_err(AttemptFailure::Unpack)?;
    let text = unpacked
        .trailer
        .iter()
        .position(|&b| b != 0)
        .map_or(&[][..], |start| &unpacked.trailer[start..]);
    let listing = checksum::parse_listing(text, &|name| unpacked.files.contains_key(name))
        .map_err(AttemptFailure::Listing)?;
    let listed: HashMap<Vec<u8>, Sha256> = listing
        .into_iter()
        .filter(|(name, _)| !exclude.matches(name))
        .collect();
    let problems = checksum::compare(&listed, &unpacked.files, true);
    if problems.is_empty() {
        // Only a verified copy may delete: what is local but not in the archive is gone there.
        if mirror {
            let root = local_dir.to_path_buf();
            let matcher = exclude.clone();
            let keep = unpacked.entries;
            let removed = tokio::task::spawn_blocking(move || {
                archive::remove_unlisted(&root, &keep, &matcher)
            })
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
            .map_err(AttemptFailure::Unpack)?;
            debug!(removed, "mirrored: removed what the source no longer has");
        }
        Ok((unpacked.files.len(), unpacked.bytes, unpacked.recorded))
    } else {
        Err(AttemptFailure::Mismatch {
            checked: listed.len(),
            problems,
        })
    }
}

fn check_remote_dir(remote_dir: &str) -> Result<(), CopyError> {
    if remote_dir.starts_with('/') {
        Ok(())
    } else {
        Err(CopyError::RemoteDirNotAbsolute {
            remote_dir: remote_dir.to_owned(),
        })
    }
}

/// Run `attempt` until it succeeds or `options.attempts` attempts failed, waiting
/// `options.backoff * n` after the n-th failure. Returns the value or the last failure, with the
/// number of attempts made.
async fn retry<T, F, Fut>(
    options: &CopyOptions,
    mut attempt: F,
) -> Result<(T, u32), (AttemptFailure, u32)>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, AttemptFailure>>,
{
    let attempts = options.attempts.max(1);
    let mut n = 1;
    loop {
        match attempt(n).await {
            Ok(value) => return Ok((value, n)),
            Err(failure) if n >= attempts => return Err((failure, n)),
            Err(failure) => {
                warn!(
                    attempt = n,
                    of = attempts,
                    "copy attempt failed, retrying: {}",
                    anyhow::Error::from(failure)
                );
                tokio::time::sleep(options.backoff * n).await;
                n += 1;
            }
        }
    }
}

/// Keeps the first [`STDERR_LIMIT`] bytes written to it and counts the rest.
#[derive(Default)]
struct CappedBuffer {
    kept: Vec<u8>,
    dropped: usize,
}

impl CappedBuffer {
    fn text(&self) -> String {
        let mut text = String::from_utf8_lossy(&self.kept).trim().to_owned();
        if self.dropped > 0 {
            text.push_str(&format!(" … ({} more bytes)", self.dropped));
        }
        text
    }

    fn log_if_any(&self) {
        if !self.kept.is_empty() {
            debug!(stderr = %self.text(), "the copy script succeeded with messages");
        }
    }
}

impl AsyncWrite for CappedBuffer {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let room = STDERR_LIMIT.saturating_sub(self.kept.len()).min(buf.len());
        self.kept.extend_from_slice(&buf[..room]);
        self.dropped += buf.len() - room;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mismatch_error_names_the_first_files_and_counts_the_rest() {
        let problems = (0..7)
            .map(|i| FileProblem {
                path: PathBuf::from(format!("f{i}")),
                problem: Problem::Missing,
            })
            .collect();
        let error = CopyError::CopyIn {
            local_dir: PathBuf::from("/runner/_work/_temp"),
            remote_dir: "/__w/_temp".to_owned(),
            attempts: 3,
            failure: AttemptFailure::Mismatch {
                checked: 10,
                problems,
            },
        };
        let report = format!("{:#}", anyhow::Error::from(error));
        assert_eq!(
            report,
            "copying `/runner/_work/_temp` into the pod at `/__w/_temp` failed after 3 \
             attempt(s): 7 of 10 files did not arrive intact: `f0` is missing, `f1` is missing, \
             `f2` is missing, `f3` is missing, `f4` is missing and 2 more"
        );
    }

    #[test]
    fn capped_buffer_keeps_the_start() {
        let mut buffer = CappedBuffer::default();
        let data = vec![b'x'; STDERR_LIMIT + 10];
        let _ = Pin::new(&mut buffer)
            .poll_write(&mut Context::from_waker(std::task::Waker::noop()), &data);
        assert!(buffer.text().ends_with("… (10 more bytes)"));
    }

    #[test]
    fn report_display() {
        let report = CopyReport {
            files: 3,
            bytes: 2048,
            duration: Duration::from_millis(1500),
            attempts: 2,
        };
        assert_eq!(
            report.to_string(),
            "3 files, 2048 bytes in 1.50s (2 attempts)"
        );
    }
}
