//! The build context of a Dockerfile action: which files the build sees, with the runner's and
//! Docker's rules, decided on the runner before any pod exists.
//!
//! Owns: the Dockerfile name check, finding and reading the ignore file, the walk that selects
//! the context's entries, the size limit, and packing the selection for copy mode. The ignore
//! file's syntax and matching are [`super::dockerignore`]'s. It must not talk to the cluster or
//! choose how the context travels; `build` and `hooks` do.
//!
//! **Context.** The runner builds `docker build -f <Dockerfile> <the Dockerfile's directory>`
//! (actions/runner `src/Runner.Worker/Handlers/ContainerActionHandler.cs` builds with the
//! Dockerfile's directory as context), so the context is the Dockerfile's directory, never the
//! action's root. Accepted names are the runner's `IsDockerfile`: `Dockerfile`, `Dockerfile.*` and
//! anything ending in `Dockerfile`.
//!
//! **Ignore file.** `<Dockerfile name>.dockerignore` beside the Dockerfile if it exists (BuildKit,
//! the builder of `docker build` since Docker 23, prefers it), else `.dockerignore`, parsed and
//! matched with Docker's rules ([`IgnorePatterns`]). An excluded directory is not walked unless
//! an exception could re-include something below it (BuildKit's `fsutil` rule: an exception with
//! a wildcard, or one that lies under the directory); a directory holding re-included entries is
//! sent with them. The Dockerfile and the ignore file are always sent, even when a pattern matches
//! them, as the Docker CLI does (`TrimBuildFilesFromExcludes`): Buildah needs both in the context
//! directory, and applies the ignore file itself to `COPY`/`ADD`, so what an ignored Dockerfile's
//! `COPY .` sees is unchanged.
//!
//! **Symlinks** are never followed: a symlink in the context is sent as a symlink, whatever its
//! target, and nothing is read through it (Docker sends links as links too). Buildah resolves
//! `COPY` sources inside the context root, so a link that points out of the context cannot
//! expose runner files; in the pod it resolves against the context copy. The Dockerfile and the
//! ignore file may be symlinks only to files inside the context.
//!
//! **Size.** The regular files selected are summed before anything is packed or created; over the
//! limit, [`ContextError::ContextTooLarge`] names the largest top-level entries.
//!
//! **Transport.** Copy mode ships [`BuildContext::pack`]'s archive (exactly the selected entries).
//! Volume mode mounts the context directory read-only ([`BuildContext::volume_sub_path`]) even when
//! the ignore file excludes something: Buildah reads the ignore file from the context directory
//! and applies it itself, so the build sees the same files; the script should pass it as
//! `--ignorefile` (see [`BuildContext::ignore_file`]) so that a `.containerignore`, which Docker
//! does not know, never takes precedence.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use tracing::debug;

use super::dockerignore::IgnorePatterns;
use crate::paths::normalize;
use crate::transfer::{self, PackedDir};

/// The ignore file Docker reads from the context's root.
pub const DOCKERIGNORE: &str = ".dockerignore";
/// Suffix of a Dockerfile-specific ignore file (`Dockerfile.alpine.dockerignore`).
pub const DOCKERIGNORE_SUFFIX: &str = ".dockerignore";
/// How many of the largest entries a [`ContextError::ContextTooLarge`] names.
pub const LARGEST_SHOWN: usize = 5;

/// Whether the runner treats `name` (a file name, no directory) as a Dockerfile: the runner's
/// `IsDockerfile` (`ActionManifestManager`), which accepts `Dockerfile`, `Dockerfile.<anything>`
/// and names ending in `Dockerfile`.
pub fn is_dockerfile_name(name: &str) -> bool {
    name.starts_with("Dockerfile.") || name.ends_with("Dockerfile")
}

/// Why the context cannot be used. Nothing has been sent or created when one is returned.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    /// The file name is not one the runner builds.
    #[error(
        "`{}` is not a Dockerfile: the runner builds files named `Dockerfile`, `Dockerfile.<suffix>` or `<prefix>Dockerfile`",
        path.display()
    )]
    NotADockerfile {
        /// The path given.
        path: PathBuf,
    },
    /// The Dockerfile does not exist.
    #[error("the Dockerfile `{}` does not exist", path.display())]
    DockerfileMissing {
        /// The path given.
        path: PathBuf,
    },
    /// The Dockerfile is a directory or a special file.
    #[error("the Dockerfile `{}` is not a regular file", path.display())]
    DockerfileNotAFile {
        /// The path given.
        path: PathBuf,
    },
    /// The Dockerfile or the ignore file is a symlink to a file outside the context.
    #[error(
        "`{}` is a symlink to a file outside the build context `{}`: the build pod only sees the context",
        path.display(),
        dir.display()
    )]
    LinkOutsideContext {
        /// The symlink.
        path: PathBuf,
        /// The context directory.
        dir: PathBuf,
    },
    /// A line of the ignore file is not a valid pattern (Docker refuses the build too).
    #[error("`{}` line {line}: invalid pattern `{pattern}`: {reason}", path.display())]
    InvalidIgnorePattern {
        /// The ignore file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The line, trimmed.
        pattern: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A file or directory of the context could not be read.
    #[error("cannot read `{}` in the build context", path.display())]
    ReadContext {
        /// The file or directory.
        path: PathBuf,
        /// The failure.
        #[source]
        source: io::Error,
    },
    /// The selected files add up to more than the limit.
    #[error(
        "the build context `{}` holds {} of files, more than the limit of {}; largest entries: {}",
        dir.display(),
        human_bytes(*size),
        human_bytes(*limit),
        list_largest(largest)
    )]
    ContextTooLarge {
        /// The context directory.
        dir: PathBuf,
        /// Sum of the selected regular files' sizes.
        size: u64,
        /// The limit.
        limit: u64,
        /// The largest top-level entries (relative path, bytes), largest first, at most
        /// [`LARGEST_SHOWN`].
        largest: Vec<(PathBuf, u64)>,
        /// The ignore file in use, if any (for the hint).
        ignore_file: Option<String>,
    },
    /// Packing the selection into an archive failed.
    #[error("cannot pack the build context `{}`", dir.display())]
    Pack {
        /// The context directory.
        dir: PathBuf,
        /// The packing failure (names the entry).
        #[source]
        source: transfer::CopyError,
    },
}

impl ContextError {
    /// What the user can do about it, if we know.
    pub fn hint(&self) -> Option<String> {
        match self {
            ContextError::NotADockerfile { .. } | ContextError::DockerfileMissing { .. } => Some(
                "`runs.image` in the action's `action.yml` names the Dockerfile relative to the action's directory (`runner-k8s-hook build`: `--file` is relative to `--context`); check its spelling and that the file is committed".to_owned(),
            ),
            ContextError::ContextTooLarge {
                largest,
                ignore_file,
                ..
            } => {
                let file = ignore_file.as_deref().unwrap_or(DOCKERIGNORE);
                let example = largest
                    .first()
                    .map(|(path, _)| format!(" (for example a line `{}`)", path.display()))
                    .unwrap_or_default();
                Some(format!(
                    "list what the image does not need in `{file}` beside the Dockerfile{example}, or raise the build context size limit (see docs/user/configuration.md)"
                ))
            }
            ContextError::InvalidIgnorePattern { .. } => Some(
                "patterns follow Docker's `.dockerignore` syntax: `*`, `?`, `**`, `[a-z]`, `\\` to escape, `!` for exceptions".to_owned(),
            ),
            _ => None,
        }
    }
}

/// What an entry of the context is (as `lstat` sees it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory (its contents are separate entries).
    Directory,
    /// A symlink, sent as a link.
    Symlink,
}

/// One selected entry of the context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextEntry {
    /// Path relative to the context directory.
    pub path: PathBuf,
    /// What it is.
    pub kind: EntryKind,
    /// Size in bytes (regular files; 0 otherwise).
    pub size: u64,
}

/// A Dockerfile's build context, selected and checked (see the module docs).
#[derive(Debug, Clone)]
pub struct BuildContext {
    /// The context directory on the runner (the Dockerfile's directory).
    pub dir: PathBuf,
    /// The Dockerfile's path relative to [`BuildContext::dir`] (for `--file <context>/<path>`):
    /// its name for an action, whose context is the Dockerfile's directory.
    pub dockerfile: String,
    /// The ignore file in use (its path relative to [`BuildContext::dir`]), if any: pass it to Buildah
    /// as `--ignorefile <context>/<name>` so it applies exactly this file, whatever else the
    /// directory holds.
    pub ignore_file: Option<String>,
    /// The selected entries, each directory after its contents (the archive order).
    pub entries: Vec<ContextEntry>,
    /// Sum of the selected regular files' sizes.
    pub size: u64,
    /// How many entries the ignore file left out (an excluded directory that was not walked
    /// counts once).
    pub excluded: usize,
}

impl BuildContext {
    /// Select the build context of the Dockerfile at `dockerfile` (a runner-host path) and check
    /// it against `size_limit` bytes. Reads the directory; sends and creates nothing. Blocking:
    /// call it from `tokio::task::spawn_blocking` in async code.
    ///
    /// # Errors
    /// [`ContextError::NotADockerfile`], [`ContextError::DockerfileMissing`],
    /// [`ContextError::DockerfileNotAFile`], [`ContextError::LinkOutsideContext`],
    /// [`ContextError::InvalidIgnorePattern`], [`ContextError::ReadContext`], or
    /// [`ContextError::ContextTooLarge`] when the selected files exceed `size_limit`.
    pub fn scan(dockerfile: &Path, size_limit: u64) -> Result<BuildContext, ContextError> {
        let name = dockerfile
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|n| is_dockerfile_name(n))
            .ok_or_else(|| ContextError::NotADockerfile {
                path: dockerfile.to_path_buf(),
            })?
            .to_owned();
        let dir = match dockerfile.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        };
        BuildContext::scan_dir(&dir, &name, size_limit)
    }

    /// Select the context `dir` for the Dockerfile at `dockerfile`, a path relative to `dir`
    /// without `..` (`Dockerfile`, `docker/Containerfile`): the `runner-k8s-hook build` door,
    /// where the context and the file are chosen separately, as with `buildah build --file`. Any
    /// file name is accepted. A Dockerfile-specific ignore file lies beside the Dockerfile
    /// (`docker/Containerfile.dockerignore`); `.dockerignore` at the context's root otherwise. The
    /// Dockerfile and its ignore file are sent even inside an excluded directory.
    ///
    /// # Errors
    /// As [`BuildContext::scan`], except [`ContextError::NotADockerfile`].
    pub fn scan_dir(
        dir: &Path,
        dockerfile: &str,
        size_limit: u64,
    ) -> Result<BuildContext, ContextError> {
        let dir = dir.to_path_buf();
        let name = dockerfile.to_owned();
        let dockerfile = &dir.join(&name);
        match fs::metadata(dockerfile) {
            Ok(meta) if meta.is_file() => {}
            Ok(_) => {
                return Err(ContextError::DockerfileNotAFile {
                    path: dockerfile.to_path_buf(),
                });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(ContextError::DockerfileMissing {
                    path: dockerfile.to_path_buf(),
                });
            }
            Err(source) => {
                return Err(ContextError::ReadContext {
                    path: dockerfile.to_path_buf(),
                    source,
                });
            }
        }
        check_link_inside(&dir, dockerfile)?;

        let (ignore_file, patterns) = read_ignore_file(&dir, &name)?;
        let mut always = vec![name.clone()];
        always.extend(ignore_file.clone());
        let mut walk = Walk {
            patterns: &patterns,
            always: &always,
            entries: Vec::new(),
            size: 0,
            excluded: 0,
            top_sizes: BTreeMap::new(),
        };
        walk.dir(&dir, "", false)?;
        let Walk {
            entries,
            size,
            excluded,
            top_sizes,
            ..
        } = walk;
        debug!(
            dir = %dir.display(),
            entries = entries.len(),
            size,
            excluded,
            ignore_file = ignore_file.as_deref().unwrap_or("none"),
            "build context selected"
        );
        if size > size_limit {
            let mut largest: Vec<(PathBuf, u64)> = top_sizes
                .into_iter()
                .map(|(path, size)| (PathBuf::from(path), size))
                .collect();
            largest.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            largest.truncate(LARGEST_SHOWN);
            return Err(ContextError::ContextTooLarge {
                dir,
                size,
                limit: size_limit,
                largest,
                ignore_file,
            });
        }
        Ok(BuildContext {
            dir,
            dockerfile: name,
            ignore_file,
            entries,
            size,
            excluded,
        })
    }

    /// Pack the selected entries into a temporary archive for copy mode (send it with
    /// [`transfer::copy_in_packed`]). Blocking, like [`BuildContext::scan`].
    ///
    /// # Errors
    /// [`ContextError::Pack`] when an entry cannot be read (it changed since the scan).
    pub fn pack(&self) -> Result<PackedDir, ContextError> {
        let paths: Vec<PathBuf> = self.entries.iter().map(|e| e.path.clone()).collect();
        transfer::pack_selection(&self.dir, &paths).map_err(|source| ContextError::Pack {
            dir: self.dir.clone(),
            source,
        })
    }

    /// Where the context lies in the runner's work volume: its path relative to `work_dir`
    /// (`_work`), for a read-only `subPath` mount in volume mode; `""` when the context is
    /// `_work` itself; `None` when it is not under `_work` (or not valid UTF-8), so only copy
    /// mode can ship it. Both paths are compared lexically (`.` and `..` resolved).
    pub fn volume_sub_path(&self, work_dir: &Path) -> Option<String> {
        let dir = normalize(&self.dir)?;
        let work = normalize(work_dir)?;
        let relative = dir.strip_prefix(&work).ok()?;
        relative.to_str().map(str::to_owned)
    }
}

/// The regular files of `dir/<dockerfile>` and the ignore file may be symlinks only to files
/// inside the context.
fn check_link_inside(dir: &Path, path: &Path) -> Result<(), ContextError> {
    let read = |source| ContextError::ReadContext {
        path: path.to_path_buf(),
        source,
    };
    if !fs::symlink_metadata(path).map_err(read)?.is_symlink() {
        return Ok(());
    }
    let target = fs::canonicalize(path).map_err(read)?;
    let root = fs::canonicalize(dir).map_err(|source| ContextError::ReadContext {
        path: dir.to_path_buf(),
        source,
    })?;
    if target.starts_with(&root) {
        Ok(())
    } else {
        Err(ContextError::LinkOutsideContext {
            path: path.to_path_buf(),
            dir: dir.to_path_buf(),
        })
    }
}

/// The ignore file that applies (`<dockerfile>.dockerignore`, else `.dockerignore`) and its
/// patterns; no file, no patterns.
fn read_ignore_file(
    dir: &Path,
    dockerfile: &str,
) -> Result<(Option<String>, IgnorePatterns), ContextError> {
    for name in [
        format!("{dockerfile}{DOCKERIGNORE_SUFFIX}"),
        DOCKERIGNORE.to_owned(),
    ] {
        let path = dir.join(&name);
        match fs::symlink_metadata(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => return Err(ContextError::ReadContext { path, source }),
            Ok(_) => {}
        }
        check_link_inside(dir, &path)?;
        let text = fs::read(&path).map_err(|source| ContextError::ReadContext {
            path: path.clone(),
            source,
        })?;
        let patterns =
            IgnorePatterns::parse(&text).map_err(|e| ContextError::InvalidIgnorePattern {
                path: path.clone(),
                line: e.line,
                pattern: e.pattern,
                reason: e.reason,
            })?;
        return Ok((Some(name), patterns));
    }
    Ok((None, IgnorePatterns::default()))
}

/// The selection walk (module docs).
struct Walk<'a> {
    patterns: &'a IgnorePatterns,
    /// Paths (relative to the context) that are always sent: the Dockerfile and its ignore file.
    always: &'a [String],
    entries: Vec<ContextEntry>,
    size: u64,
    excluded: usize,
    /// Bytes selected under each top-level entry.
    top_sizes: BTreeMap<String, u64>,
}

impl Walk<'_> {
    /// Walk `abs` (relative path `rel`, `""` for the root) and select its entries; `tolerant`:
    /// the directory itself is excluded and only walked for exceptions, so unreadable entries are
    /// skipped (as `fsutil` skips permission errors on excluded paths). Returns whether anything
    /// below was selected.
    fn dir(&mut self, abs: &Path, rel: &str, tolerant: bool) -> Result<bool, ContextError> {
        let read = |path: &Path| {
            let path = path.to_path_buf();
            move |source| ContextError::ReadContext { path, source }
        };
        let listing = match fs::read_dir(abs) {
            Ok(listing) => listing,
            Err(e) if tolerant && e.kind() == io::ErrorKind::PermissionDenied => return Ok(false),
            Err(e) => return Err(read(abs)(e)),
        };
        let mut names = listing
            .map(|entry| entry.map(|e| e.file_name()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(read(abs))?;
        names.sort();
        let mut selected_any = false;
        for name in names {
            let path = abs.join(&name);
            let child_rel = if rel.is_empty() {
                PathBuf::from(&name)
            } else {
                Path::new(rel).join(&name)
            };
            // Patterns are strings; a name that is not UTF-8 is matched in its lossy form.
            let child = child_rel.to_string_lossy().into_owned();
            let meta = match fs::symlink_metadata(&path) {
                Ok(meta) => meta,
                Err(e) if tolerant && e.kind() == io::ErrorKind::PermissionDenied => continue,
                Err(e) => return Err(read(&path)(e)),
            };
            let excluded = self.patterns.matches(&child) && !self.always.contains(&child);
            let kind = meta.file_type();
            if kind.is_dir() {
                let holds_always = self
                    .always
                    .iter()
                    .any(|a| a.strip_prefix(&child).is_some_and(|r| r.starts_with('/')));
                if excluded && !self.patterns.may_reinclude_below(&child) && !holds_always {
                    self.excluded += 1;
                    continue;
                }
                let below = self.dir(&path, &child, tolerant || excluded)?;
                if excluded && !below {
                    self.excluded += 1;
                    continue;
                }
                self.entries.push(ContextEntry {
                    path: child_rel,
                    kind: EntryKind::Directory,
                    size: 0,
                });
                selected_any = true;
            } else if excluded {
                self.excluded += 1;
            } else {
                let (kind, size) = if kind.is_file() {
                    (EntryKind::File, meta.len())
                } else if kind.is_symlink() {
                    (EntryKind::Symlink, 0)
                } else {
                    debug!(path = %path.display(), "not sending a socket, FIFO or device in the build context");
                    continue;
                };
                self.size += size;
                let top = child.split('/').next().unwrap_or_default().to_owned();
                *self.top_sizes.entry(top).or_default() += size;
                self.entries.push(ContextEntry {
                    path: child_rel,
                    kind,
                    size,
                });
                selected_any = true;
            }
        }
        Ok(selected_any)
    }
}

/// `1.5 MiB`-style sizes for messages.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn list_largest(largest: &[(PathBuf, u64)]) -> String {
    if largest.is_empty() {
        return "none".to_owned();
    }
    largest
        .iter()
        .map(|(path, size)| format!("`{}` ({})", path.display(), human_bytes(*size)))
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for EntryKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EntryKind::File => "file",
            EntryKind::Directory => "directory",
            EntryKind::Symlink => "symlink",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn dockerfile_names_are_the_runners() {
        for ok in [
            "Dockerfile",
            "Dockerfile.alpine",
            "Dockerfile.",
            "prod.Dockerfile",
            "myDockerfile",
        ] {
            assert!(is_dockerfile_name(ok), "{ok}");
        }
        for bad in [
            "dockerfile",
            "Containerfile",
            "Dockerfile-dev",
            "action.yml",
        ] {
            assert!(!is_dockerfile_name(bad), "{bad}");
        }
    }

    fn write(root: &Path, rel: &str, bytes: usize) {
        let path = root.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, vec![b'x'; bytes]).unwrap();
    }

    fn selected(context: &BuildContext) -> Vec<String> {
        context
            .entries
            .iter()
            .map(|e| {
                let path = e.path.to_string_lossy().into_owned();
                match e.kind {
                    EntryKind::Directory => format!("{path}/"),
                    EntryKind::Symlink => format!("{path}@"),
                    EntryKind::File => path,
                }
            })
            .collect()
    }

    #[test]
    fn scan_selects_with_the_ignore_file_and_keeps_the_build_files() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "Dockerfile", 10);
        write(root, ".dockerignore", 0);
        fs::write(
            root.join(".dockerignore"),
            "# everything but the sources\n*\n!src\n!entrypoint.sh\nsrc/**/*.tmp\n",
        )
        .unwrap();
        write(root, "entrypoint.sh", 5);
        write(root, "src/main.sh", 7);
        write(root, "src/deep/x.tmp", 100);
        write(root, "node_modules/big", 1000);
        write(root, "README.md", 3);
        let context = BuildContext::scan(&root.join("Dockerfile"), 1 << 20).unwrap();
        assert_eq!(
            selected(&context),
            [
                ".dockerignore",
                "Dockerfile",
                "entrypoint.sh",
                "src/deep/",
                "src/main.sh",
                "src/"
            ]
        );
        let ignore_len = fs::metadata(root.join(".dockerignore")).unwrap().len();
        assert_eq!(context.size, 10 + 5 + 7 + ignore_len);
        assert_eq!(context.dockerfile, "Dockerfile");
        assert_eq!(context.ignore_file.as_deref(), Some(".dockerignore"));
        // README.md, node_modules (not walked) and src/deep/x.tmp; `src/deep` itself is not
        // excluded, so it is sent empty, as Docker sends it.
        assert_eq!(context.excluded, 3);
    }

    #[test]
    fn a_nested_dockerfile_is_sent_even_from_an_excluded_directory() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "docker/Containerfile", 4);
        write(root, "docker/notes.txt", 1);
        write(root, "app.sh", 2);
        fs::write(root.join(".dockerignore"), "docker\n").unwrap();
        let context = BuildContext::scan_dir(root, "docker/Containerfile", 1 << 20).unwrap();
        assert_eq!(
            selected(&context),
            [".dockerignore", "app.sh", "docker/Containerfile", "docker/"]
        );
        assert_eq!(context.dockerfile, "docker/Containerfile");
        assert_eq!(context.ignore_file.as_deref(), Some(".dockerignore"));

        // A Dockerfile-specific ignore file beside it wins over the root's.
        fs::write(root.join("docker/Containerfile.dockerignore"), "app.sh\n").unwrap();
        let context = BuildContext::scan_dir(root, "docker/Containerfile", 1 << 20).unwrap();
        assert_eq!(
            context.ignore_file.as_deref(),
            Some("docker/Containerfile.dockerignore")
        );
        assert_eq!(
            selected(&context),
            [
                ".dockerignore",
                "docker/Containerfile",
                "docker/Containerfile.dockerignore",
                "docker/notes.txt",
                "docker/"
            ]
        );
        assert!(matches!(
            BuildContext::scan_dir(root, "docker/Missingfile", 100),
            Err(ContextError::DockerfileMissing { .. })
        ));
    }

    #[test]
    fn an_excluded_directory_with_a_reincluded_file_is_sent_with_it_alone() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "Dockerfile", 1);
        fs::write(root.join(".dockerignore"), "vendor\n!vendor/keep/me.txt\n").unwrap();
        write(root, "vendor/keep/me.txt", 1);
        write(root, "vendor/keep/not.txt", 1);
        write(root, "vendor/drop.txt", 1);
        let context = BuildContext::scan(&root.join("Dockerfile"), 100).unwrap();
        assert_eq!(
            selected(&context),
            [
                ".dockerignore",
                "Dockerfile",
                "vendor/keep/me.txt",
                "vendor/keep/",
                "vendor/"
            ]
        );
    }

    #[test]
    fn a_dockerfile_specific_ignore_file_wins() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "Dockerfile.alpine", 1);
        fs::write(root.join(".dockerignore"), "a\n").unwrap();
        fs::write(root.join("Dockerfile.alpine.dockerignore"), "b\n").unwrap();
        write(root, "a", 1);
        write(root, "b", 1);
        let context = BuildContext::scan(&root.join("Dockerfile.alpine"), 100).unwrap();
        assert_eq!(
            context.ignore_file.as_deref(),
            Some("Dockerfile.alpine.dockerignore")
        );
        assert_eq!(
            selected(&context),
            [
                ".dockerignore",
                "Dockerfile.alpine",
                "Dockerfile.alpine.dockerignore",
                "a"
            ]
        );
    }

    #[test]
    fn ignored_dockerfile_and_ignore_file_are_still_sent() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "Dockerfile", 1);
        fs::write(
            root.join(".dockerignore"),
            "Dockerfile\n.dockerignore\n*.log\n",
        )
        .unwrap();
        write(root, "x.log", 1);
        let context = BuildContext::scan(&root.join("Dockerfile"), 100).unwrap();
        assert_eq!(selected(&context), [".dockerignore", "Dockerfile"]);
    }

    #[test]
    fn symlinks_are_sent_as_links_and_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        write(outside.path(), "secret/key", 4096);
        let root = dir.path();
        write(root, "Dockerfile", 1);
        symlink(outside.path().join("secret"), root.join("escape")).unwrap();
        symlink("/etc/passwd", root.join("passwd")).unwrap();
        symlink("Dockerfile", root.join("inside")).unwrap();
        symlink("missing", root.join("dangling")).unwrap();
        let context = BuildContext::scan(&root.join("Dockerfile"), 100).unwrap();
        assert_eq!(
            selected(&context),
            ["Dockerfile", "dangling@", "escape@", "inside@", "passwd@"]
        );
        assert_eq!(context.size, 1, "nothing is read through a link");

        let packed = context.pack().unwrap();
        let names: Vec<String> = packed
            .files()
            .iter()
            .map(|(name, _)| String::from_utf8_lossy(name).into_owned())
            .collect();
        assert_eq!(names, ["Dockerfile"]);
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut packed.open().unwrap(), &mut bytes).unwrap();
        assert_eq!(bytes.len() as u64, packed.archive_len());
        let mut archive = tar::Archive::new(bytes.as_slice());
        let links: Vec<(String, String)> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.header().entry_type().is_symlink())
            .map(|e| {
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    e.link_name()
                        .unwrap()
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                )
            })
            .collect();
        assert!(
            links.contains(&("./passwd".into(), "/etc/passwd".into())),
            "{links:?}"
        );
        assert!(
            links.contains(&("./inside".into(), "Dockerfile".into())),
            "{links:?}"
        );
    }

    #[test]
    fn the_packed_archive_extracts_to_exactly_the_selection() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "Dockerfile", 20);
        fs::write(root.join(".dockerignore"), "**/*.log\nbuild\n!build/keep\n").unwrap();
        write(root, "app/main.sh", 30);
        write(root, "app/debug.log", 30);
        write(root, "build/keep", 5);
        write(root, "build/out.bin", 50);
        symlink("app/main.sh", root.join("entry")).unwrap();
        let context = BuildContext::scan(&root.join("Dockerfile"), 1 << 20).unwrap();
        let packed = context.pack().unwrap();
        assert_eq!(packed.bytes(), context.size);

        let target = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("tar")
            .arg("-x")
            .arg("-f")
            .arg("-")
            .arg("-C")
            .arg(target.path())
            .stdin(packed.open().unwrap())
            .status()
            .expect("run tar");
        assert!(status.success());
        let mut found = Vec::new();
        let mut stack = vec![PathBuf::new()];
        while let Some(rel) = stack.pop() {
            for entry in fs::read_dir(target.path().join(&rel)).unwrap() {
                let entry = entry.unwrap();
                let path = rel.join(entry.file_name());
                let kind = entry.file_type().unwrap();
                if kind.is_dir() {
                    stack.push(path.clone());
                    found.push(format!("{}/", path.display()));
                } else if kind.is_symlink() {
                    found.push(format!("{}@", path.display()));
                } else {
                    found.push(path.display().to_string());
                }
            }
        }
        found.sort();
        let mut expected = selected(&context);
        expected.sort();
        assert_eq!(found, expected);
        assert_eq!(
            expected,
            [
                ".dockerignore",
                "Dockerfile",
                "app/",
                "app/main.sh",
                "build/",
                "build/keep",
                "entry@"
            ]
        );
        assert_eq!(
            fs::read_link(target.path().join("entry")).unwrap(),
            Path::new("app/main.sh")
        );
    }

    #[test]
    fn a_dockerfile_linking_out_of_the_context_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        write(outside.path(), "Dockerfile", 1);
        symlink(
            outside.path().join("Dockerfile"),
            dir.path().join("Dockerfile"),
        )
        .unwrap();
        let err = BuildContext::scan(&dir.path().join("Dockerfile"), 100).unwrap_err();
        assert!(
            matches!(err, ContextError::LinkOutsideContext { .. }),
            "{err}"
        );
    }

    #[test]
    fn missing_or_misnamed_dockerfiles_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let err = BuildContext::scan(&dir.path().join("Dockerfile"), 100).unwrap_err();
        assert!(matches!(err, ContextError::DockerfileMissing { .. }));
        assert_eq!(
            err.to_string(),
            format!(
                "the Dockerfile `{}/Dockerfile` does not exist",
                dir.path().display()
            )
        );
        assert!(err.hint().unwrap().contains("runs.image"));
        let err = BuildContext::scan(&dir.path().join("build.sh"), 100).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "`{}/build.sh` is not a Dockerfile: the runner builds files named `Dockerfile`, `Dockerfile.<suffix>` or `<prefix>Dockerfile`",
                dir.path().display()
            )
        );
        fs::create_dir(dir.path().join("Dockerfile")).unwrap();
        let err = BuildContext::scan(&dir.path().join("Dockerfile"), 100).unwrap_err();
        assert!(matches!(err, ContextError::DockerfileNotAFile { .. }));
    }

    #[test]
    fn an_invalid_ignore_file_names_its_line() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "Dockerfile", 1);
        fs::write(dir.path().join(".dockerignore"), "ok\n[unclosed\n").unwrap();
        let err = BuildContext::scan(&dir.path().join("Dockerfile"), 100).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "`{}/.dockerignore` line 2: invalid pattern `[unclosed`: a `[...]` class is malformed (unclosed, empty, or with a bad range)",
                dir.path().display()
            )
        );
    }

    #[test]
    fn too_large_contexts_name_the_largest_entries_before_anything_is_packed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "Dockerfile", 100);
        write(root, "node_modules/a/b", 3 * 1024 * 1024);
        write(root, "node_modules/c", 1024 * 1024);
        write(root, "dist/bundle.js", 512 * 1024);
        write(root, "src/x", 10);
        fs::write(root.join(".dockerignore"), "src\n").unwrap();
        let err = BuildContext::scan(&root.join("Dockerfile"), 2 * 1024 * 1024).unwrap_err();
        let ContextError::ContextTooLarge {
            size,
            limit,
            largest,
            ..
        } = &err
        else {
            panic!("{err}");
        };
        assert_eq!(*size, 4 * 1024 * 1024 + 512 * 1024 + 100 + 4);
        assert_eq!(*limit, 2 * 1024 * 1024);
        assert_eq!(
            largest,
            &[
                (PathBuf::from("node_modules"), 4 * 1024 * 1024),
                (PathBuf::from("dist"), 512 * 1024),
                (PathBuf::from("Dockerfile"), 100),
                (PathBuf::from(".dockerignore"), 4),
            ]
        );
        assert_eq!(
            err.to_string(),
            format!(
                "the build context `{}` holds 4.5 MiB of files, more than the limit of 2.0 MiB; largest entries: `node_modules` (4.0 MiB), `dist` (512.0 KiB), `Dockerfile` (100 bytes), `.dockerignore` (4 bytes)",
                root.display()
            )
        );
        assert_eq!(
            err.hint().unwrap(),
            "list what the image does not need in `.dockerignore` beside the Dockerfile (for example a line `node_modules`), or raise the build context size limit (see docs/user/configuration.md)"
        );
    }

    #[test]
    fn unreadable_excluded_directories_are_skipped() {
        use std::os::unix::fs::PermissionsExt as _;
        if rustix::process::geteuid().is_root() {
            return; // root reads everything: nothing to test
        }
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "Dockerfile", 1);
        write(root, "data/private/x", 1);
        fs::write(root.join(".dockerignore"), "data\n!**/keep\n").unwrap();
        fs::set_permissions(root.join("data/private"), fs::Permissions::from_mode(0o300)).unwrap();
        let context = BuildContext::scan(&root.join("Dockerfile"), 100);
        fs::set_permissions(root.join("data/private"), fs::Permissions::from_mode(0o700)).unwrap();
        assert_eq!(selected(&context.unwrap()), [".dockerignore", "Dockerfile"]);
    }

    #[test]
    fn volume_sub_path_is_relative_to_work() {
        let context = BuildContext {
            dir: PathBuf::from("/home/runner/_work/_actions/o/r/v1/./docker"),
            dockerfile: "Dockerfile".into(),
            ignore_file: None,
            entries: Vec::new(),
            size: 0,
            excluded: 0,
        };
        let work = Path::new("/home/runner/_work");
        assert_eq!(
            context.volume_sub_path(work).as_deref(),
            Some("_actions/o/r/v1/docker")
        );
        assert_eq!(context.volume_sub_path(Path::new("/elsewhere")), None);
        let at_root = BuildContext {
            dir: work.to_path_buf(),
            ..context
        };
        assert_eq!(at_root.volume_sub_path(work).as_deref(), Some(""));
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human_bytes(0), "0 bytes");
        assert_eq!(human_bytes(1023), "1023 bytes");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(100 * 1024 * 1024), "100.0 MiB");
    }
}
