//! The image build engine: from a Dockerfile and its context to an image pushed to a registry,
//! with Buildah, through one generated script.
//!
//! One engine, several doors (docs/user/dockerfile-actions.md): the hook's `run_container_step`
//! for `runs.image: Dockerfile` actions (through a build pod), the `runner-k8s-hook build`
//! subcommand and the JavaScript action (`action.yml`, through the host's `buildah`). Every door
//! describes the build as a [`BuildSpec`], turns it into one shell script with [`script::argv`],
//! and hands both to an [`Executor`], which runs the script somewhere and reports a
//! [`BuildOutcome`] or a typed [`BuildError`].
//!
//! - [`context`]: the build context (ignore file, symlinks, size limit, tar).
//! - [`dockerignore`]: Docker's `.dockerignore` syntax and matching (pure).
//! - [`key`]: the build key, a SHA-256 over everything that decides the image.
//! - [`mod@reference`]: image names, random tags, digests (pure).
//! - [`registry`]: finding an image by tag in a registry and tagging it again.
//! - [`options`]: the allow-list of extra Buildah options (pure).
//! - [`script`]: the build script every executor runs (pure).
//! - [`probe`]: the builder and registry probe of `runner-k8s-hook check` (pure).
//! - [`local`]: the executor that runs the script on this machine, optionally as another
//!   (unprivileged) user.
//!
//! The build pod's spec is `crate::spec::build_pod`'s and the executor that runs it is
//! `crate::k8s::build`'s: this module knows nothing about Kubernetes (tests/it/layering.rs checks
//! it), so a new builder is a new [`Executor`] (beside [`local`], or in `k8s` when it needs the
//! API) that runs [`script::argv`].
//!
//! # What a pod executor must provide
//! The script is the contract, so a pod executor only has to set the stage and read the result:
//! 1. put the context at [`BuildSpec::context_dir`] (a read-only subPath of the work volume, or
//!    a tar stream into an emptyDir, followed by creating [`BuildSpec::wait_for`]);
//! 2. make [`BuildSpec::work_dir`], [`Storage::root`] and [`Storage::runroot`] writable by the
//!    build user (emptyDirs), mount the registry Secret's `.dockerconfigjson` read-only at
//!    [`BuildSpec::auth_source`] and the CA's `ca.crt`, alone, in [`BuildSpec::cert_dir`];
//! 3. run [`script::argv`] as the container's command with [`BuildSpec::result_path`] as its
//!    `terminationMessagePath`;
//! 4. copy the log to the step log while keeping the last lines ([`LastLines`]), bounded by the
//!    build timeout ([`BuildError::Timeout`]);
//! 5. when the container terminates: exit code 0 → [`parse_result`] of the termination message;
//!    anything else → [`failure`] with the exit code and the last lines.

pub mod context;
pub mod dockerignore;
pub mod key;
pub mod local;
pub mod options;
pub mod probe;
pub mod reference;
pub mod registry;
pub mod script;

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::io::AsyncWrite;

use reference::Digest;

/// Exit codes of the build script, so an executor can tell what failed without reading the log.
/// They avoid 1 and 2 (any shell error), and 125 and above (shells and runtimes use those for
/// "cannot run" and signals).
pub mod exit {
    /// The context directory or the Dockerfile is missing (or unreadable by the build user).
    pub const DOCKERFILE_MISSING: i32 = 10;
    /// `buildah build` failed: a `RUN` step, a `COPY` of a missing file, a base image pull.
    pub const BUILD_FAILED: i32 = 11;
    /// `buildah push` failed: the registry refused it or could not be reached.
    pub const PUSH_FAILED: i32 = 12;
    /// The script could not prepare the auth file, storage or result (before or after Buildah).
    pub const SETUP_FAILED: i32 = 13;
}

/// Prefix of every line the build script itself writes to the log, e.g.
/// `[runner-k8s-hook] storage driver: overlay`. Buildah's own lines (`STEP 1/4: FROM ...`) are
/// unchanged. Never `::`, which the runner would read as a workflow command.
pub const LOG_PREFIX: &str = "[runner-k8s-hook]";

/// How many log lines a failure carries.
pub const LAST_LINES: usize = 20;

/// Everything the build script needs. Paths are absolute, as the script sees them (inside the
/// build pod, or on this machine for the local executor), and must be valid UTF-8 because they
/// are written into a shell script (quoted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildSpec {
    /// The build context directory.
    pub context_dir: String,
    /// The Dockerfile, relative to [`BuildSpec::context_dir`] (`Dockerfile`,
    /// `docker/Dockerfile.alpine`).
    pub dockerfile: String,
    /// The reference to build and push: `<push-host>/<name>:<tag>`, without a digest.
    pub image: String,
    /// Push after building. Without it the script stops after the build and the result is the
    /// image reference alone (the CLI's `--no-push`).
    pub push: bool,
    /// `--build-arg` pairs (the CLI's; the hook passes none, like the runner).
    pub build_args: Vec<(String, String)>,
    /// Where Buildah keeps images and which driver it uses.
    pub storage: Storage,
    /// Extra `buildah build` options, already allow-listed ([`options::parse`]).
    pub build_options: Vec<String>,
    /// Extra `buildah push` options, already allow-listed.
    pub push_options: Vec<String>,
    /// A registry auth file (docker `config.json` format, e.g. a mounted
    /// `kubernetes.io/dockerconfigjson` Secret) to read; it may be read-only. The script copies
    /// it to `<work_dir>/auth.json`, because Buildah needs an auth file that exists in a
    /// writable directory. `None`: an empty auth file (`{"auths":{}}`).
    pub auth_source: Option<String>,
    /// A directory holding only the registry CA as `ca.crt` (Buildah's `--cert-dir`), used for
    /// the base image pull and the push.
    pub cert_dir: Option<String>,
    /// A writable directory for the script's own files: `auth.json`, `storage.conf`, `digest`.
    pub work_dir: String,
    /// Where the script writes the result: `<image>@sha256:<digest>` (pushed) or `<image>` (not
    /// pushed). In a pod, the container's `terminationMessagePath`.
    pub result_path: String,
    /// Wait until this file exists before starting (copy mode: the executor streams the
    /// context in first, then creates it).
    pub wait_for: Option<String>,
    /// More references to push the built image to after [`BuildSpec::image`] (the build key's
    /// tag). A failed push here is logged and does not fail the build: the image is built and
    /// pushed, only a later reuse will not find it.
    pub extra_tags: Vec<String>,
    /// A repository for Buildah's layer cache: the build runs with `--layers --cache-from
    /// <repository> --cache-to <repository>` where the builder's Buildah has them (1.27 and
    /// later; an older one builds without, saying so once in the log).
    pub cache: Option<String>,
}

/// Buildah's storage driver (`ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_STORAGE_DRIVER`, [`crate::config::STORAGE_DRIVER`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageDriver {
    /// Native overlay, falling back to vfs (with a log line) where the build script's probe
    /// finds overlay unusable.
    Overlay,
    /// vfs only: slower and more disk, but works on any filesystem.
    Vfs,
}

/// Buildah's image store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Storage {
    /// `--root`: the image store; an emptyDir in a pod (overlay does not work on the container's
    /// own overlayfs).
    pub root: String,
    /// `--runroot`: Buildah's run-time state.
    pub runroot: String,
    /// Which driver; [`StorageDriver::Overlay`] falls back to vfs inside the script.
    pub driver: StorageDriver,
}

/// What a successful build produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildOutcome {
    /// The image as built, `<push-host>/<name>:<tag>`.
    pub image: String,
    /// The pushed manifest's digest; `None` when the build was not pushed.
    pub digest: Option<Digest>,
    /// How many of the Dockerfile's steps came from the layer cache, when the log says.
    pub cache: Option<CacheUse>,
}

/// How many steps of a build came from the layer cache, read from Buildah's log: `STEP n/M:`
/// gives the number of steps, each `--> Using cache <id>` is one step not run again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheUse {
    /// Steps taken from the cache.
    pub reused: usize,
    /// Steps in the Dockerfile (`M` of `STEP n/M`).
    pub steps: usize,
}

impl BuildOutcome {
    /// `<image>@<digest>`, or the image alone when not pushed: what the CLI prints.
    pub fn reference(&self) -> String {
        match &self.digest {
            Some(digest) => format!("{}@{digest}", self.image),
            None => self.image.clone(),
        }
    }
}

/// Why a build did not produce an image. Messages name the image and carry the last lines of
/// the build log, so the step's error says what happened without opening the log.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The Dockerfile is not in the context (exit [`exit::DOCKERFILE_MISSING`]).
    #[error("the Dockerfile `{dockerfile}` was not found in the build context `{context}`")]
    DockerfileMissing {
        /// Relative to the context.
        dockerfile: String,
        /// The context directory.
        context: String,
    },
    /// A build step failed (exit [`exit::BUILD_FAILED`]).
    #[error("building `{image}` failed; last lines of the build log:\n{}", Lines(.last_lines))]
    BuildFailed {
        /// The image being built.
        image: String,
        /// The end of the log.
        last_lines: Vec<String>,
    },
    /// The registry refused the push: authentication or permission (exit
    /// [`exit::PUSH_FAILED`] with an auth error in the log).
    #[error("the registry refused the push of `{image}` (authentication or permission); last lines of the build log:\n{}", Lines(.last_lines))]
    PushRefused {
        /// The image being pushed.
        image: String,
        /// The end of the log.
        last_lines: Vec<String>,
    },
    /// The push failed for another reason: registry unreachable, TLS, disk full.
    #[error("pushing `{image}` failed; last lines of the build log:\n{}", Lines(.last_lines))]
    PushFailed {
        /// The image being pushed.
        image: String,
        /// The end of the log.
        last_lines: Vec<String>,
    },
    /// The script could not prepare its files (exit [`exit::SETUP_FAILED`]).
    #[error("the build could not be prepared; last lines of the build log:\n{}", Lines(.last_lines))]
    Setup {
        /// The end of the log.
        last_lines: Vec<String>,
    },
    /// The script ended with an exit code it does not use, or by a signal (`None`).
    #[error("the build script ended unexpectedly ({}); last lines of the build log:\n{}", ExitText(*.code), Lines(.last_lines))]
    Exited {
        /// The exit code, `None` for a signal.
        code: Option<i32>,
        /// The end of the log.
        last_lines: Vec<String>,
    },
    /// The build did not finish in time; it was stopped.
    #[error("building `{image}` did not finish within {} s and was stopped", .after.as_secs())]
    Timeout {
        /// The image being built.
        image: String,
        /// The limit.
        after: Duration,
    },
    /// The script succeeded but its result is missing or malformed.
    #[error("the build finished but its result `{path}` is not usable: {detail}")]
    Result {
        /// Where the result was read.
        path: String,
        /// What is wrong.
        detail: String,
    },
    /// A program could not be started (local executor).
    #[error("could not start `{program}`")]
    Start {
        /// The program.
        program: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A local file operation failed (local executor).
    #[error("could not {action}")]
    Io {
        /// What was being done, e.g. "create the build's work directory `/tmp/x`".
        action: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

struct Lines<'a>(&'a [String]);

impl fmt::Display for Lines<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("  (the log is empty)");
        }
        for (i, line) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "  {line}")?;
        }
        Ok(())
    }
}

struct ExitText(Option<i32>);

impl fmt::Display for ExitText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(code) => write!(f, "exit code {code}"),
            None => f.write_str("killed by a signal"),
        }
    }
}

impl BuildError {
    /// The last lines of the build log this error carries (empty for errors without a log).
    pub fn last_lines(&self) -> &[String] {
        match self {
            BuildError::BuildFailed { last_lines, .. }
            | BuildError::PushRefused { last_lines, .. }
            | BuildError::PushFailed { last_lines, .. }
            | BuildError::Setup { last_lines }
            | BuildError::Exited { last_lines, .. } => last_lines,
            _ => &[],
        }
    }

    /// Whether the log shows a registry refusing credentials (for a failed base image pull as
    /// well as a refused push).
    pub fn is_auth_failure(&self) -> bool {
        matches!(self, BuildError::PushRefused { .. }) || mentions_auth_failure(self.last_lines())
    }
}

/// Runs a [`BuildSpec`]'s script somewhere and reports its outcome. Both executors run exactly
/// [`script::argv`]; see the module docs for what a pod executor must provide.
pub trait Executor {
    /// Run the build, copying its log (Buildah's `STEP n/m` lines, the script's
    /// [`LOG_PREFIX`] lines, merged in order) to `log` as it comes.
    ///
    /// # Errors
    /// A [`BuildError`] saying what failed, with the last lines of the log.
    fn run<'a>(
        &'a self,
        spec: &'a BuildSpec,
        log: &'a mut (dyn AsyncWrite + Send + Unpin),
    ) -> BoxFuture<'a, Result<BuildOutcome, BuildError>>;
}

/// The end of a log, kept while it streams: at most [`LAST_LINES`] lines. The script's own
/// error lines are left out, since the error says the same. On the way it counts the steps that
/// came from the layer cache ([`CacheUse`]).
#[derive(Debug, Clone, Default)]
pub struct LastLines {
    lines: VecDeque<String>,
    steps: usize,
    reused: usize,
}

impl LastLines {
    /// Record one line of the log (without its newline).
    pub fn push(&mut self, line: &str) {
        let line = line.trim_end_matches(['\r', '\n']);
        if let Some(total) = line
            .strip_prefix("STEP ")
            .and_then(|rest| rest.split_once(':'))
            .and_then(|(counter, _)| counter.split_once('/'))
            .and_then(|(_, total)| total.parse::<usize>().ok())
        {
            self.steps = self.steps.max(total);
        } else if line.starts_with("--> Using cache ") {
            self.reused += 1;
        }
        if line.trim().is_empty() || line.starts_with(&format!("{LOG_PREFIX} error:")) {
            return;
        }
        if self.lines.len() == LAST_LINES {
            self.lines.pop_front();
        }
        self.lines.push_back(line.to_owned());
    }

    /// The recorded lines, oldest first.
    pub fn into_vec(self) -> Vec<String> {
        self.lines.into()
    }

    /// The layer cache's share of the build, when the log had Buildah's step lines.
    pub fn cache_use(&self) -> Option<CacheUse> {
        (self.steps > 0).then_some(CacheUse {
            reused: self.reused.min(self.steps),
            steps: self.steps,
        })
    }
}

/// The error for a build script that ended with `code` (`None`: killed by a signal).
pub fn failure(spec: &BuildSpec, code: Option<i32>, last_lines: Vec<String>) -> BuildError {
    let image = spec.image.clone();
    match code {
        Some(exit::DOCKERFILE_MISSING) => BuildError::DockerfileMissing {
            dockerfile: spec.dockerfile.clone(),
            context: spec.context_dir.clone(),
        },
        Some(exit::BUILD_FAILED) => BuildError::BuildFailed { image, last_lines },
        Some(exit::PUSH_FAILED) if mentions_auth_failure(&last_lines) => {
            BuildError::PushRefused { image, last_lines }
        }
        Some(exit::PUSH_FAILED) => BuildError::PushFailed { image, last_lines },
        Some(exit::SETUP_FAILED) => BuildError::Setup { last_lines },
        code => BuildError::Exited { code, last_lines },
    }
}

/// Parse the script's result (the termination message): `<image>@sha256:<hex>` after a push,
/// `<image>` without one. The image must be the one the spec asked for. `log` is the build's
/// log, for the layer cache's share.
///
/// # Errors
/// [`BuildError::Result`] when the text is not that.
pub fn parse_result(
    spec: &BuildSpec,
    text: &str,
    log: &LastLines,
) -> Result<BuildOutcome, BuildError> {
    let err = |detail: String| BuildError::Result {
        path: spec.result_path.clone(),
        detail,
    };
    let text = text.trim();
    let (image, digest) = match text.rsplit_once('@') {
        Some((image, digest)) => (
            image,
            Some(Digest::parse(digest).map_err(|e| err(e.to_string()))?),
        ),
        None => (text, None),
    };
    if image != spec.image {
        return Err(err(format!(
            "expected `{}` with a digest, found `{text}`",
            spec.image
        )));
    }
    if spec.push && digest.is_none() {
        return Err(err(format!("no digest after `{image}`")));
    }
    Ok(BuildOutcome {
        image: image.to_owned(),
        digest,
        cache: log.cache_use(),
    })
}

/// Registry answers that mean "who are you" or "not you" (distribution's `UNAUTHORIZED`,
/// `DENIED`, and containers/image's wording of HTTP 401 and 403).
fn mentions_auth_failure(lines: &[String]) -> bool {
    const MARKERS: &[&str] = &[
        "unauthorized",
        "authentication required",
        "requested access to the resource is denied",
        "denied:",
        "status code 401",
        "status code 403",
        "invalid username/password",
        "insufficient_scope",
    ];
    lines.iter().any(|line| {
        let line = line.to_ascii_lowercase();
        MARKERS.iter().any(|m| line.contains(m))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> BuildSpec {
        BuildSpec {
            context_dir: "/ctx".into(),
            dockerfile: "Dockerfile".into(),
            image: "registry.example:5000/o/r:abc".into(),
            push: true,
            build_args: vec![],
            storage: Storage {
                root: "/s/root".into(),
                runroot: "/s/run".into(),
                driver: StorageDriver::Overlay,
            },
            build_options: vec![],
            push_options: vec![],
            auth_source: None,
            cert_dir: None,
            work_dir: "/work".into(),
            result_path: "/dev/termination-log".into(),
            wait_for: None,
            extra_tags: Vec::new(),
            cache: None,
        }
    }

    #[test]
    fn the_layer_cache_share_is_read_from_buildah_s_step_lines() {
        let mut log = LastLines::default();
        assert_eq!(log.cache_use(), None, "no step lines, nothing to say");
        for line in [
            "STEP 1/4: FROM 127.0.0.1:5000/bb:latest",
            "STEP 2/4: RUN make",
            "--> Cache pulled from remote 127.0.0.1:5000/cache:01c4",
            "--> Using cache 9388843c88c32904216e46850843cc53b1a8509bcf96ea038792a9517e02483a",
            "--> 9388843c88c",
            "STEP 3/4: COPY a /a",
            "--> Using cache de3fde125b6116f3fe87f2509b670370aaee8a7205fc5ef69bbf8db540607ada",
            "STEP 4/4: COPY b /b",
            "COMMIT 127.0.0.1:5000/x:2",
            "--> Pushing cache 127.0.0.1:5000/cache:1cd8",
        ] {
            log.push(line);
        }
        assert_eq!(
            log.cache_use(),
            Some(CacheUse {
                reused: 2,
                steps: 4
            })
        );
        let out = parse_result(
            &spec(),
            &format!("registry.example:5000/o/r:abc@sha256:{}", "ab".repeat(32)),
            &log,
        )
        .unwrap();
        assert_eq!(
            out.cache,
            Some(CacheUse {
                reused: 2,
                steps: 4
            })
        );
    }

    #[test]
    fn results_parse_and_must_match_the_image() {
        let hex = "ab".repeat(32);
        let out = parse_result(
            &spec(),
            &format!(
                "registry.example:5000/o/r:abc@sha256:{hex}
"
            ),
            &LastLines::default(),
        )
        .unwrap();
        assert_eq!(out.image, "registry.example:5000/o/r:abc");
        assert_eq!(
            out.digest.as_ref().unwrap().as_str(),
            format!("sha256:{hex}")
        );
        assert_eq!(
            out.reference(),
            format!("registry.example:5000/o/r:abc@sha256:{hex}")
        );
        assert!(
            parse_result(
                &spec(),
                "registry.example:5000/o/r:abc",
                &LastLines::default()
            )
            .is_err()
        );
        assert!(
            parse_result(
                &spec(),
                &format!("other:5000/x:y@sha256:{hex}"),
                &LastLines::default()
            )
            .is_err()
        );
        assert!(
            parse_result(
                &spec(),
                "registry.example:5000/o/r:abc@sha256:short",
                &LastLines::default()
            )
            .is_err()
        );
        let err = parse_result(&spec(), "", &LastLines::default()).unwrap_err();
        assert!(
            err.to_string().starts_with(
                "the build finished but its result `/dev/termination-log` is not usable"
            ),
            "{err}"
        );
        let mut no_push = spec();
        no_push.push = false;
        let out = parse_result(
            &no_push,
            "registry.example:5000/o/r:abc",
            &LastLines::default(),
        )
        .unwrap();
        assert_eq!(out.digest, None);
        assert_eq!(out.reference(), "registry.example:5000/o/r:abc");
    }

    #[test]
    fn exit_codes_map_to_errors() {
        let lines = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(matches!(
            failure(&spec(), Some(10), vec![]),
            BuildError::DockerfileMissing { .. }
        ));
        let err = failure(
            &spec(),
            Some(11),
            lines(&[
                "STEP 3/4: RUN false",
                "error building at STEP \"RUN false\": exit status 1",
            ]),
        );
        assert_eq!(
            err.to_string(),
            "building `registry.example:5000/o/r:abc` failed; last lines of the build log:\n  STEP 3/4: RUN false\n  error building at STEP \"RUN false\": exit status 1"
        );
        let refused = failure(
            &spec(),
            Some(12),
            lines(&[
                "Error: pushing image ... initializing source ...: reading manifest: unauthorized: authentication required",
            ]),
        );
        assert!(matches!(refused, BuildError::PushRefused { .. }));
        assert!(refused.is_auth_failure());
        let other = failure(
            &spec(),
            Some(12),
            lines(&["dial tcp 10.0.0.1:5000: connect: connection refused"]),
        );
        assert!(matches!(other, BuildError::PushFailed { .. }));
        assert!(!other.is_auth_failure());
        assert!(matches!(
            failure(&spec(), Some(13), vec![]),
            BuildError::Setup { .. }
        ));
        let killed = failure(&spec(), None, vec![]);
        assert_eq!(
            killed.to_string(),
            "the build script ended unexpectedly (killed by a signal); last lines of the build log:\n  (the log is empty)"
        );
        assert!(matches!(
            failure(&spec(), Some(1), vec![]),
            BuildError::Exited { code: Some(1), .. }
        ));
    }

    #[test]
    fn last_lines_keep_the_end_without_the_scripts_error_lines() {
        let mut last = LastLines::default();
        for i in 0..30 {
            last.push(&format!("line {i}\n"));
        }
        last.push("");
        last.push("[runner-k8s-hook] error: build failed (exit 1)");
        let lines = last.into_vec();
        assert_eq!(lines.len(), LAST_LINES);
        assert_eq!(lines[0], "line 10");
        assert_eq!(lines[LAST_LINES - 1], "line 29");
    }
}
