//! The build key: one SHA-256 over everything that decides which image a build makes, so that a
//! build whose key is already in the registry need not run again (docs/user/dockerfile-actions.md,
//! "Reuse by content").
//!
//! What goes in, in this order, each field length-prefixed so no two inputs can run together:
//! - a version string ([`KEY_VERSION`]), changed whenever this list changes;
//! - the Dockerfile's path relative to the context, and its content;
//! - every entry of the context after `.dockerignore` ([`BuildContext::entries`]), sorted by
//!   its path's bytes: the path, the kind (file, directory, symlink), the permission bits
//!   (`mode & 0o7777`; none for symlinks, whose mode means nothing), and a file's content
//!   (its SHA-256) or a symlink's target;
//! - the build arguments, sorted by name (their order does not change the image);
//! - the target platform (`linux/amd64`, `linux/arm64`);
//! - the builder image reference, as configured;
//! - whether the build makes one layer per instruction (the layer cache's `--layers`);
//! - the extra build and push options, in their order, except those that only change how the
//!   build talks to registries ([`OUTPUT_NEUTRAL_OPTIONS`]).
//!
//! What does not: modification and access times, owners and groups (Buildah's `COPY` gives
//! files root ownership unless `--chown` says otherwise, which is in the Dockerfile), what
//! `.dockerignore` excludes, the order the directory walk found entries in, the context's
//! absolute path, and the registry the image is pushed to.
//!
//! Owns the key's definition and its computation. Reads the context's files (blocking) and
//! nothing else; talks to no registry and knows nothing about Kubernetes.

use std::fmt;
use std::io::Read as _;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use sha2::{Digest as _, Sha256};

use super::context::{BuildContext, EntryKind};

/// Names the key's definition; a new definition gets a new string, so old key tags are never
/// mistaken for new ones.
pub const KEY_VERSION: &str = "runner-k8s-hook build key v1";

/// Options that change how the build reaches registries, never what it produces.
pub const OUTPUT_NEUTRAL_OPTIONS: &[&str] = &[
    "--tls-verify",
    "--retry",
    "--retry-delay",
    "--cache-from",
    "--cache-to",
    "--cache-ttl",
    "--quiet",
];

/// Prefix of the tag under which a build is found by its key: `key-<64 hex digits>`.
pub const KEY_TAG_PREFIX: &str = "key-";

/// Everything besides the context that decides the image.
#[derive(Debug, Clone, Copy)]
pub struct KeyInputs<'a> {
    /// `--build-arg` pairs.
    pub build_args: &'a [(String, String)],
    /// The platform the image is built for (`linux/amd64`): [`platform`] of the builder's node.
    pub platform: &'a str,
    /// The builder image reference.
    pub builder_image: &'a str,
    /// One layer per instruction (`--layers`, on with the layer cache).
    pub layers: bool,
    /// Extra `buildah build` options, canonical (`--name[=value]`).
    pub build_options: &'a [String],
    /// Extra `buildah push` options, canonical.
    pub push_options: &'a [String],
}

/// A build key: 32 bytes of SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BuildKey([u8; 32]);

impl BuildKey {
    /// The tag the image of this key is pushed under: `key-<64 lowercase hex digits>`, a valid
    /// tag (at most 128 characters of `[A-Za-z0-9_.-]`).
    pub fn tag(&self) -> String {
        format!("{KEY_TAG_PREFIX}{self}")
    }
}

impl fmt::Display for BuildKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

/// The platform of this machine as an image platform (`linux/amd64`, `linux/arm64`): the hook
/// runs in the runner pod, and in volume mode the build pod runs on the same node.
pub fn platform() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        other => other,
    };
    format!("linux/{arch}")
}

/// Why the key could not be computed.
#[derive(Debug, thiserror::Error)]
#[error("cannot read `{}` to compute the build key", path.display())]
pub struct KeyError {
    /// The file or link that could not be read (it changed since the scan, or is unreadable).
    pub path: std::path::PathBuf,
    /// The I/O error.
    #[source]
    pub source: std::io::Error,
}

/// The key of building `context` with `inputs`. Reads every selected file once. Blocking: call it
/// from `tokio::task::spawn_blocking` in async code.
///
/// # Errors
/// [`KeyError`] when an entry cannot be read.
pub fn build_key(context: &BuildContext, inputs: &KeyInputs<'_>) -> Result<BuildKey, KeyError> {
    let mut key = Framed(Sha256::new());
    key.field(KEY_VERSION.as_bytes());

    let dockerfile = context.dir.join(&context.dockerfile);
    key.field(context.dockerfile.as_bytes());
    key.field(&hash_file(&dockerfile)?);

    let mut entries: Vec<_> = context.entries.iter().collect();
    entries.sort_by(|a, b| {
        a.path
            .as_os_str()
            .as_bytes()
            .cmp(b.path.as_os_str().as_bytes())
    });
    key.count(entries.len());
    for entry in entries {
        let path = context.dir.join(&entry.path);
        let read_error = |source| KeyError {
            path: path.clone(),
            source,
        };
        key.field(entry.path.as_os_str().as_bytes());
        match entry.kind {
            EntryKind::File => {
                key.field(b"file");
                key.field(&mode(&path).map_err(read_error)?);
                key.field(&hash_file(&path)?);
            }
            EntryKind::Directory => {
                key.field(b"dir");
                key.field(&mode(&path).map_err(read_error)?);
            }
            EntryKind::Symlink => {
                key.field(b"symlink");
                let target = std::fs::read_link(&path).map_err(read_error)?;
                key.field(target.as_os_str().as_bytes());
            }
        }
    }

    let mut args: Vec<_> = inputs.build_args.iter().collect();
    args.sort();
    key.count(args.len());
    for (name, value) in args {
        key.field(name.as_bytes());
        key.field(value.as_bytes());
    }
    key.field(inputs.platform.as_bytes());
    key.field(inputs.builder_image.as_bytes());
    key.field(if inputs.layers { b"layers" } else { b"squash" });
    for options in [inputs.build_options, inputs.push_options] {
        let kept: Vec<_> = options.iter().filter(|o| affects_output(o)).collect();
        key.count(kept.len());
        for option in kept {
            key.field(option.as_bytes());
        }
    }
    Ok(BuildKey(key.0.finalize().into()))
}

/// Whether a canonical option (`--name[=value]`) can change the image.
fn affects_output(option: &str) -> bool {
    let name = option.split_once('=').map_or(option, |(name, _)| name);
    !OUTPUT_NEUTRAL_OPTIONS.contains(&name)
}

/// The permission bits of `path` (not following a symlink), as 4 bytes.
fn mode(path: &Path) -> std::io::Result<[u8; 4]> {
    let mode = std::fs::symlink_metadata(path)?.permissions().mode() & 0o7777;
    Ok(mode.to_be_bytes())
}

/// The SHA-256 of a file's content, read in blocks.
fn hash_file(path: &Path) -> Result<[u8; 32], KeyError> {
    let error = |source| KeyError {
        path: path.to_owned(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(error)?;
    let mut hash = Sha256::new();
    let mut buffer = vec![0; 64 * 1024];
    loop {
        let n = file.read(&mut buffer).map_err(error)?;
        if n == 0 {
            break;
        }
        hash.update(&buffer[..n]);
    }
    Ok(hash.finalize().into())
}

/// A hash fed with length-prefixed fields.
struct Framed(Sha256);

impl Framed {
    fn field(&mut self, bytes: &[u8]) {
        self.count(bytes.len());
        self.0.update(bytes);
    }

    fn count(&mut self, n: usize) {
        self.0.update((n as u64).to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    const LIMIT: u64 = 1 << 30;

    fn inputs<'a>() -> KeyInputs<'a> {
        KeyInputs {
            build_args: &[],
            platform: "linux/amd64",
            builder_image: "quay.io/buildah/stable:v1.41.4",
            layers: true,
            build_options: &[],
            push_options: &[],
        }
    }

    /// An action: Dockerfile, a script, a nested file, a symlink, an ignored directory. Every
    /// mode is set, so the key does not depend on the umask.
    fn action(dir: &Path) {
        std::fs::write(dir.join("Dockerfile"), "FROM busybox\nCOPY . /a\n").unwrap();
        std::fs::write(dir.join("entrypoint.sh"), "#!/bin/sh\necho hi\n").unwrap();
        std::fs::set_permissions(
            dir.join("entrypoint.sh"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        std::fs::create_dir(dir.join("lib")).unwrap();
        std::fs::write(dir.join("lib/data.txt"), "data").unwrap();
        symlink("lib/data.txt", dir.join("link")).unwrap();
        std::fs::write(dir.join(".dockerignore"), "ignored/\n").unwrap();
        std::fs::create_dir(dir.join("ignored")).unwrap();
        std::fs::write(dir.join("ignored/big"), "ignored").unwrap();
        for (path, mode) in [
            ("Dockerfile", 0o644),
            ("lib", 0o755),
            ("lib/data.txt", 0o644),
            (".dockerignore", 0o644),
        ] {
            std::fs::set_permissions(dir.join(path), std::fs::Permissions::from_mode(mode))
                .unwrap();
        }
    }

    fn key_of(dir: &Path, inputs: &KeyInputs<'_>) -> BuildKey {
        let context = BuildContext::scan(&dir.join("Dockerfile"), LIMIT).unwrap();
        build_key(&context, inputs).unwrap()
    }

    #[test]
    fn the_key_is_a_known_value_for_a_known_action() {
        // The same bytes must give the same key on every machine and run: this pins the
        // definition. A change here means every key tag in every registry changes too; bump
        // KEY_VERSION with it.
        let dir = tempfile::tempdir().unwrap();
        action(dir.path());
        let key = key_of(dir.path(), &inputs());
        assert_eq!(key.tag().len(), 68);
        assert!(key.tag().starts_with("key-"));
        assert!(crate::image::reference::is_tag(&key.tag()));
        let again = tempfile::tempdir().unwrap();
        action(again.path());
        assert_eq!(
            key_of(again.path(), &inputs()),
            key,
            "another directory, same key"
        );
        assert_eq!(
            key.to_string(),
            "52dddcfb6c9853cce627e34751d0be7691a77a12769670b5bd6da8be0c6a90e9"
        );
    }

    #[test]
    fn times_owners_and_walk_order_do_not_change_the_key() {
        let dir = tempfile::tempdir().unwrap();
        action(dir.path());
        let before = key_of(dir.path(), &inputs());
        // New times on every file.
        for name in ["Dockerfile", "entrypoint.sh", "lib/data.txt"] {
            let file = std::fs::File::options()
                .write(true)
                .open(dir.path().join(name))
                .unwrap();
            file.set_modified(
                std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(42),
            )
            .unwrap();
        }
        // Another owner, where the test may change it.
        if rustix::process::geteuid().is_root() {
            std::os::unix::fs::chown(dir.path().join("lib/data.txt"), Some(4242), Some(4242))
                .unwrap();
        }
        assert_eq!(key_of(dir.path(), &inputs()), before);
        // The same entries in another order.
        let mut context = BuildContext::scan(&dir.path().join("Dockerfile"), LIMIT).unwrap();
        context.entries.reverse();
        assert_eq!(build_key(&context, &inputs()).unwrap(), before);
    }

    #[test]
    fn what_dockerignore_excludes_does_not_change_the_key() {
        let dir = tempfile::tempdir().unwrap();
        action(dir.path());
        let before = key_of(dir.path(), &inputs());
        std::fs::write(dir.path().join("ignored/big"), "changed").unwrap();
        std::fs::write(dir.path().join("ignored/new"), "new").unwrap();
        assert_eq!(key_of(dir.path(), &inputs()), before);
    }

    #[test]
    fn every_input_changes_the_key() {
        let dir = tempfile::tempdir().unwrap();
        action(dir.path());
        let base = key_of(dir.path(), &inputs());
        let mut seen = vec![base.clone()];
        let mut differs = |what: &str, key: BuildKey| {
            assert!(!seen.contains(&key), "{what} did not change the key");
            seen.push(key);
        };

        // Each change is made on a fresh copy of the action.
        let changed = |change: &dyn Fn(&Path)| {
            let dir = tempfile::tempdir().unwrap();
            action(dir.path());
            change(dir.path());
            key_of(dir.path(), &inputs())
        };
        differs(
            "the Dockerfile's content",
            changed(&|d| std::fs::write(d.join("Dockerfile"), "FROM busybox\n").unwrap()),
        );
        differs(
            "a file's content",
            changed(&|d| std::fs::write(d.join("lib/data.txt"), "datA").unwrap()),
        );
        differs(
            "a file's mode",
            changed(&|d| {
                std::fs::set_permissions(
                    d.join("entrypoint.sh"),
                    std::fs::Permissions::from_mode(0o644),
                )
                .unwrap()
            }),
        );
        differs(
            "a directory's mode",
            changed(&|d| {
                std::fs::set_permissions(d.join("lib"), std::fs::Permissions::from_mode(0o700))
                    .unwrap()
            }),
        );
        differs(
            "a symlink's target",
            changed(&|d| {
                std::fs::remove_file(d.join("link")).unwrap();
                symlink("entrypoint.sh", d.join("link")).unwrap();
            }),
        );
        differs(
            "a file's name",
            changed(&|d| std::fs::rename(d.join("lib/data.txt"), d.join("lib/date.txt")).unwrap()),
        );
        differs(
            "a new empty file",
            changed(&|d| std::fs::write(d.join("empty"), "").unwrap()),
        );
        differs(
            "a new empty directory",
            changed(&|d| std::fs::create_dir(d.join("empty")).unwrap()),
        );
        differs(
            "a file becoming a symlink to the same bytes",
            changed(&|d| {
                std::fs::remove_file(d.join("lib/data.txt")).unwrap();
                std::fs::write(d.join("data"), "data").unwrap();
                symlink("../data", d.join("lib/data.txt")).unwrap();
            }),
        );
        differs("the Dockerfile's name", {
            let dir = tempfile::tempdir().unwrap();
            action(dir.path());
            std::fs::rename(
                dir.path().join("Dockerfile"),
                dir.path().join("Dockerfile.alpine"),
            )
            .unwrap();
            let context = BuildContext::scan(&dir.path().join("Dockerfile.alpine"), LIMIT).unwrap();
            build_key(&context, &inputs()).unwrap()
        });

        let args = [("A".to_owned(), "1".to_owned())];
        let other_args = [("A".to_owned(), "2".to_owned())];
        let options = ["--format=docker".to_owned()];
        let push = ["--compression-format=zstd".to_owned()];
        let with = |i: KeyInputs<'_>| key_of(dir.path(), &i);
        differs(
            "a build argument",
            with(KeyInputs {
                build_args: &args,
                ..inputs()
            }),
        );
        differs(
            "a build argument's value",
            with(KeyInputs {
                build_args: &other_args,
                ..inputs()
            }),
        );
        differs(
            "the platform",
            with(KeyInputs {
                platform: "linux/arm64",
                ..inputs()
            }),
        );
        differs(
            "the builder image",
            with(KeyInputs {
                builder_image: "quay.io/buildah/stable:v1.42.0",
                ..inputs()
            }),
        );
        differs(
            "layers",
            with(KeyInputs {
                layers: false,
                ..inputs()
            }),
        );
        differs(
            "a build option",
            with(KeyInputs {
                build_options: &options,
                ..inputs()
            }),
        );
        differs(
            "a push option",
            with(KeyInputs {
                push_options: &push,
                ..inputs()
            }),
        );
    }

    #[test]
    fn build_argument_order_and_registry_options_do_not_change_the_key() {
        let dir = tempfile::tempdir().unwrap();
        action(dir.path());
        let ab = [
            ("A".to_owned(), "1".to_owned()),
            ("B".to_owned(), "2".to_owned()),
        ];
        let ba = [
            ("B".to_owned(), "2".to_owned()),
            ("A".to_owned(), "1".to_owned()),
        ];
        let neutral = [
            "--tls-verify=false".to_owned(),
            "--retry=5".to_owned(),
            "--cache-to=r:5000/c".to_owned(),
        ];
        let key = |args, options| {
            key_of(
                dir.path(),
                &KeyInputs {
                    build_args: args,
                    build_options: options,
                    push_options: options,
                    ..inputs()
                },
            )
        };
        assert_eq!(key(&ab, &[]), key(&ba, &[]));
        assert_eq!(key(&ab, &neutral), key(&ab, &[]));
    }

    #[test]
    fn an_unreadable_file_names_itself() {
        let dir = tempfile::tempdir().unwrap();
        action(dir.path());
        let context = BuildContext::scan(&dir.path().join("Dockerfile"), LIMIT).unwrap();
        std::fs::remove_file(dir.path().join("lib/data.txt")).unwrap();
        let err = build_key(&context, &inputs()).unwrap_err();
        assert!(err.to_string().contains("lib/data.txt"), "{err}");
    }

    #[test]
    fn platform_names_the_architecture_as_images_do() {
        let p = platform();
        assert!(p.starts_with("linux/"), "{p}");
        if cfg!(target_arch = "x86_64") {
            assert_eq!(p, "linux/amd64");
        }
    }
}
