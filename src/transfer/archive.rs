//! Tar archives on the runner's side: packing a local directory into one archive while hashing
//! its files, and unpacking a received archive into a local directory while hashing.
//!
//! Owns the archive format we write and the path-safety rules for what we unpack. It must not
//! talk to the remote side; the copy module (`transfer`) feeds it readers and files.
//!
//! Packing writes what GNU tar and BusyBox tar both extract: GNU-format headers, names `./rel`
//! (`./rel/` for directories), numeric owner only (empty user and group names, so the container
//! maps nothing by name and root restores the runner's uid/gid), symlinks as symlinks, no entry
//! for the root itself (extracting must not touch the metadata of the destination directory,
//! which may belong to someone else), and each directory *after* its contents, so that
//! extractors which set a directory's mtime when they meet its entry (BusyBox) leave it as it
//! was.
//!
//! **Long names.** A name or link target of at most 100 bytes goes into its header field as it
//! is (with no terminating NUL at exactly 100, as POSIX allows). Longer ones are left to the tar
//! crate ([`tar::Builder::append_data`], [`tar::Builder::append_link`]), which writes GNU
//! long-name (`L`) and long-link (`K`) records: `././@LongLink` entries whose data is the whole
//! name or target and a NUL (GNU tar manual, "Basic Tar Format"). The crate first tries the name
//! without its `./` (`Header::set_path` drops `.` components), so a `./rel` of 101 or 102 bytes,
//! and the name of a symlink whose target needs a long-link record, are written as `rel` when
//! that fits in the header: GNU tar and BusyBox extract `rel` and `./rel` to the same place. The
//! crate would likewise store a link target of over 100 bytes shortened (doubled slashes and `.`
//! components dropped) when that makes it fit; such a target gets a long-link record of our own,
//! the same bytes the crate writes, so every symlink keeps its target as `readlink` gave it.
//!
//! **Modes and owners.** Unpacking keeps the mode of files (`rwx` bits) and of directories (plus
//! `u+rwx`, so the next copy can replace their contents), but never the owner: the runner runs as
//! an ordinary user and owns what it unpacks, so it can always read it back (packing opens a
//! file of its own that it may not read, such as mode `0200`, by lending itself `u+r` for the
//! moment). What the archive said about each entry (full mode, uid, gid) is returned as
//! [`Recorded`]; packing the same directory again with it writes those values back for every
//! entry that is still as unpacking left it, so a file that a step running as root made `0600`
//! and gave to uid 4242 reaches the next pod as such, though the runner could not chown it.
//!
//! Unpacking never writes outside the destination: names with `..` or a leading `/` are
//! rejected, every directory on the way to an entry must be a real directory (a symlink or file
//! in its place is replaced by a directory, as GNU tar does without `--keep-directory-symlink`),
//! files are created with `O_EXCL` after removing what was there (never opened through a
//! symlink), and directory metadata is applied last, again only through real directories.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek as _, Write};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use sha2::Digest as _;
use tar::{EntryType, Header};
use tracing::debug;

use super::checksum::{Sha256, display_bytes};

/// The header's name and link-name fields: longer names and link targets need a GNU long-name
/// or long-link record.
const NAME_FIELD: usize = 100;
/// Copy buffer for file contents when unpacking.
const CHUNK: usize = 256 * 1024;
/// Buffer for writing the archive file.
const WRITE_BUFFER: usize = 1024 * 1024;

/// Paths that are not copied, relative to the copied directory.
#[derive(Debug, Clone, Default)]
pub(crate) struct Exclude {
    prefixes: Vec<Vec<u8>>,
    names: Vec<Vec<u8>>,
}

impl Exclude {
    /// Exclude each of `paths` (relative; a directory excludes everything below it) and every
    /// entry, at any depth, whose own name is one of `names`.
    pub(crate) fn new(paths: &[PathBuf], names: &[&str]) -> Exclude {
        let prefixes = paths
            .iter()
            .map(|p| {
                let mut bytes = p.as_os_str().as_bytes();
                while let Some(rest) = bytes.strip_prefix(b"./") {
                    bytes = rest;
                }
                bytes.strip_suffix(b"/").unwrap_or(bytes).to_vec()
            })
            .filter(|p| !p.is_empty())
            .collect();
        let names = names.iter().map(|n| n.as_bytes().to_vec()).collect();
        Exclude { prefixes, names }
    }

    /// Whether `rel` (no `./`, no trailing `/`) is excluded.
    pub(crate) fn matches(&self, rel: &[u8]) -> bool {
        self.prefixes
            .iter()
            .any(|p| rel.starts_with(p) && (rel.len() == p.len() || rel[p.len()] == b'/'))
            || rel
                .split(|&b| b == b'/')
                .any(|component| self.names.iter().any(|n| n == component))
    }
}

/// What an archive's header said about one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryMeta {
    /// Whether the entry is a directory.
    pub dir: bool,
    /// Permission bits, setuid/setgid/sticky included (`0o7777`).
    pub mode: u32,
    /// Numeric owner.
    pub uid: u64,
    /// Numeric group.
    pub gid: u64,
}

/// The headers of the directories and regular files of an unpacked archive, by relative path:
/// what the runner could not keep itself (owners, and directory modes without `u+rwx`).
#[derive(Debug, Clone, Default)]
pub struct Recorded(pub(crate) HashMap<Vec<u8>, EntryMeta>);

impl Recorded {
    /// How many entries are recorded.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The mode an entry has after [`unpack`] wrote it with header mode `mode`.
fn unpacked_mode(dir: bool, mode: u32) -> u32 {
    if dir {
        (mode & 0o777) | 0o700
    } else {
        mode & 0o777
    }
}

/// The (mode, uid, gid) to write in the header of a local entry (`dir`, with its local `mode`,
/// `uid`, `gid`): the recorded header when there is one for the same kind of entry and the
/// local mode is still what unpacking it produced (nobody changed it since), else the local
/// values.
fn header_fields(
    dir: bool,
    mode: u32,
    uid: u64,
    gid: u64,
    recorded: Option<&EntryMeta>,
) -> (u32, u64, u64) {
    match recorded {
        Some(r) if r.dir == dir && unpacked_mode(dir, r.mode) == mode & 0o7777 => {
            (r.mode & 0o7777, r.uid, r.gid)
        }
        _ => (mode & 0o7777, uid, gid),
    }
}

/// Open a regular file of `meta` for reading. A file the runner owns but may not read (mode
/// `0200`, `0000`) is opened by adding `u+r` for the moment and restoring its mode.
fn open_for_packing(path: &Path, meta: &fs::Metadata) -> io::Result<File> {
    match File::open(path) {
        // Only the owner (or root) may chmod: for anyone else the first error stands.
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            let mode = meta.mode() & 0o7777;
            if fs::set_permissions(path, fs::Permissions::from_mode(mode | 0o400)).is_err() {
                return Err(e);
            }
            let opened = File::open(path);
            fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
            opened
        }
        other => other,
    }
}

/// A local directory packed into an archive file.
pub(crate) struct Packed {
    /// The archive (an unnamed temporary file).
    pub file: File,
    /// Its length in bytes.
    pub len: u64,
    /// Every regular file in it, in archive order, with its digest.
    pub files: Vec<(Vec<u8>, Sha256)>,
    /// Sum of the regular files' sizes.
    pub bytes: u64,
}

/// Packing failed at `path`.
#[derive(Debug, thiserror::Error)]
#[error("cannot pack `{}`", path.display())]
pub(crate) struct PackError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

/// Pack `root` (its contents, not itself) into a temporary file, hashing every regular file as
/// it is written. Sockets, FIFOs and devices are skipped. Entries `recorded` by the unpacking of
/// an earlier archive into `root` get that archive's mode and owner back ([`header_fields`]).
pub(crate) fn pack(
    root: &Path,
    exclude: &Exclude,
    recorded: &Recorded,
) -> Result<Packed, PackError> {
    let mut packer = Packer::new()?;
    let at = |source| PackError {
        path: root.to_path_buf(),
        source,
    };
    if !fs::metadata(root).map_err(at)?.is_dir() {
        let source = io::Error::new(io::ErrorKind::NotADirectory, "not a directory");
        return Err(at(source));
    }
    pack_dir(root, &[], exclude, recorded, &mut packer)?;
    packer.finish(root)
}

fn pack_dir(
    dir: &Path,
    rel: &[u8],
    exclude: &Exclude,
    recorded: &Recorded,
    packer: &mut Packer,
) -> Result<(), PackError> {
    let at = |path: &Path| {
        let path = path.to_path_buf();
        move |source| PackError { path, source }
    };
    let mut names = fs::read_dir(dir)
        .map_err(at(dir))?
        .map(|entry| entry.map(|e| e.file_name()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(at(dir))?;
    names.sort();
    for name in names {
        let path = dir.join(&name);
        let mut child = rel.to_vec();
        if !child.is_empty() {
            child.push(b'/');
        }
        child.extend_from_slice(name.as_bytes());
        if exclude.matches(&child) {
            continue;
        }
        let meta = fs::symlink_metadata(&path).map_err(at(&path))?;
        if meta.is_dir() {
            pack_dir(&path, &child, exclude, recorded, packer)?;
        }
        let record = recorded.0.get(&child);
        packer.entry(&path, child, &meta, record)?;
    }
    Ok(())
}

/// Pack exactly `entries` of `root`: relative paths (no `./`, no trailing `/`), written in the
/// order given, each as what it is now (`lstat`): a directory entry alone, a regular file, or a
/// symlink as a symlink (never followed). For the archive layout described in the module docs,
/// list each directory after its contents. Used when the caller selects the files itself (the
/// build context and its `.dockerignore`).
pub(crate) fn pack_entries(root: &Path, entries: &[Vec<u8>]) -> Result<Packed, PackError> {
    let mut packer = Packer::new()?;
    for rel in entries {
        let path = root.join(os(rel));
        let meta = fs::symlink_metadata(&path).map_err(|source| PackError {
            path: path.clone(),
            source,
        })?;
        packer.entry(&path, rel.clone(), &meta, None)?;
    }
    packer.finish(root)
}

/// An archive being written by the tar crate's [`tar::Builder`], with what [`Packed`] reports.
struct Packer {
    builder: tar::Builder<BufWriter<File>>,
    files: Vec<(Vec<u8>, Sha256)>,
    bytes: u64,
}

impl Packer {
    /// A packer writing to a new unnamed temporary file.
    fn new() -> Result<Packer, PackError> {
        let file = tempfile::tempfile().map_err(|source| PackError {
            path: std::env::temp_dir(),
            source,
        })?;
        Ok(Packer {
            builder: tar::Builder::new(BufWriter::with_capacity(WRITE_BUFFER, file)),
            files: Vec::new(),
            bytes: 0,
        })
    }

    /// Write the one entry for `path` (named `./rel`, with its `lstat` metadata `meta`): a
    /// directory entry alone (its contents are separate entries), a regular file with its
    /// contents, hashed on the way, or a symlink as a symlink. Sockets, FIFOs and devices are
    /// skipped. Mode and owner come from `meta`, or from `recorded` ([`header_fields`]).
    fn entry(
        &mut self,
        path: &Path,
        rel: Vec<u8>,
        meta: &fs::Metadata,
        recorded: Option<&EntryMeta>,
    ) -> Result<(), PackError> {
        let at = |source| PackError {
            path: path.to_path_buf(),
            source,
        };
        let kind = meta.file_type();
        let mut header = Header::new_gnu();
        let (mode, uid, gid) = header_fields(
            kind.is_dir(),
            meta.mode(),
            u64::from(meta.uid()),
            u64::from(meta.gid()),
            recorded.filter(|_| !kind.is_symlink()),
        );
        header.set_mode(mode);
        header.set_uid(uid);
        header.set_gid(gid);
        header.set_mtime(u64::try_from(meta.mtime()).unwrap_or(0));
        header.set_size(0);
        let mut name = [b"./", &rel[..]].concat();
        if kind.is_dir() {
            name.push(b'/');
            header.set_entry_type(EntryType::Directory);
            self.append(header, &name, io::empty()).map_err(at)?;
        } else if kind.is_file() {
            header.set_entry_type(EntryType::Regular);
            header.set_size(meta.len());
            let mut file = open_for_packing(path, meta).map_err(at)?;
            let mut data = HashingReader {
                file: &mut file,
                remaining: meta.len(),
                hasher: Sha256::hasher(),
            };
            self.append(header, &name, &mut data).map_err(at)?;
            self.bytes += meta.len();
            self.files.push((rel, Sha256::finish(data.hasher)));
        } else if kind.is_symlink() {
            let target = fs::read_link(path).map_err(at)?;
            header.set_entry_type(EntryType::Symlink);
            self.append_symlink(header, &name, target.as_os_str().as_bytes())
                .map_err(at)?;
        } else {
            debug!(path = %path.display(), "not copying a socket, FIFO or device");
        }
        Ok(())
    }

    /// Append `header` under `name` (`./rel`, or `./rel/` for a directory) followed by `data`.
    /// A name that fits in the header's 100-byte field is written there as it is; a longer one
    /// is left to [`tar::Builder::append_data`], which writes a GNU long-name (`L`) record
    /// carrying it in full when it does not fit without its leading `./` either, and otherwise
    /// puts it in the header without the `./` (see the module docs).
    fn append(&mut self, mut header: Header, name: &[u8], data: impl Read) -> io::Result<()> {
        if name.len() <= NAME_FIELD {
            header.as_old_mut().name[..name.len()].copy_from_slice(name);
            header.set_cksum();
            self.builder.append(&header, data)
        } else {
            self.builder.append_data(&mut header, os(name), data)
        }
    }

    /// Append the symlink `header` under `name`, pointing to `target` exactly as `readlink`
    /// gave it. A target that fits in the header's 100-byte field is written there as it is; a
    /// longer one goes into a GNU long-link (`K`) record written by
    /// [`tar::Builder::append_link`], unless the crate would shorten it to fit (see
    /// [`Packer::long_link`]).
    fn append_symlink(&mut self, mut header: Header, name: &[u8], target: &[u8]) -> io::Result<()> {
        if target.len() <= NAME_FIELD {
            header.set_link_name_literal(target)?;
        } else if Header::new_gnu().set_link_name(os(target)).is_err() {
            // Too long even as the crate normalizes it: it writes the `K` record with the
            // target as it is.
            return self.builder.append_link(&mut header, os(name), os(target));
        } else {
            self.long_link(target)?;
            header.as_old_mut().linkname[..].copy_from_slice(&target[..NAME_FIELD]);
        }
        self.append(header, name, io::empty())
    }

    /// A GNU long-link (`K`) record carrying `target`, for the one case the tar crate does not
    /// write as it is: [`tar::Builder::append_link`] first tries `Header::set_link_name`, which
    /// drops `.` components and doubled slashes, and writes no record when the result fits, so
    /// `a//b/./c/…` (over 100 bytes, under 100 once shortened) would be stored as `a/b/c/…` and
    /// a trailing `/.` would be lost. This record is byte for byte what the crate writes
    /// (`prepare_header` in its `src/builder.rs`): name `././@LongLink`, mode `0644`, uid, gid
    /// and mtime 0, and the target with a terminating NUL as its data.
    fn long_link(&mut self, target: &[u8]) -> io::Result<()> {
        const LONG_LINK: &[u8] = b"././@LongLink";
        let mut header = Header::new_gnu();
        header.as_old_mut().name[..LONG_LINK.len()].copy_from_slice(LONG_LINK);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_size(target.len() as u64 + 1);
        header.set_entry_type(EntryType::GNULongLink);
        header.set_cksum();
        self.builder.append(&header, target.chain(&[0][..]))
    }

    /// End the archive (two zero blocks) of `root` and measure it.
    fn finish(self, root: &Path) -> Result<Packed, PackError> {
        let at = |source| PackError {
            path: root.to_path_buf(),
            source,
        };
        let Packer {
            builder,
            files,
            bytes,
        } = self;
        let mut file = builder
            .into_inner()
            .map_err(at)?
            .into_inner()
            .map_err(|e| at(e.into_error()))?;
        let len = file.stream_position().map_err(at)?;
        Ok(Packed {
            file,
            len,
            files,
            bytes,
        })
    }
}

/// Exactly `remaining` bytes of a regular file being packed, hashed as they are read. A file
/// that shrank since its `lstat` is an error; one that grew is cut at its `lstat` size (the
/// header already said how long it is).
struct HashingReader<'a> {
    file: &'a mut File,
    remaining: u64,
    hasher: sha2::Sha256,
}

impl Read for HashingReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let want = usize::try_from(self.remaining).map_or(buf.len(), |r| r.min(buf.len()));
        let n = self.file.read(&mut buf[..want])?;
        if n == 0 && want > 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file shrank while it was being packed",
            ));
        }
        self.hasher.update(&buf[..n]);
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// What unpacking produced.
#[derive(Debug, Default)]
pub(crate) struct Unpacked {
    /// Digest of every regular file written (hard links included), by relative path.
    pub files: HashMap<Vec<u8>, Sha256>,
    /// Sum of the regular files' sizes.
    pub bytes: u64,
    /// Everything after the archive's end-of-archive block, padding included.
    pub trailer: Vec<u8>,
    /// Every entry the archive named (not excluded), by relative path: what a mirror keeps.
    pub entries: HashSet<Vec<u8>>,
    /// The header of every directory and regular file unpacked.
    pub recorded: Recorded,
}

/// Make `root` a mirror of an unpacked archive: remove every file, symlink and directory below
/// it whose relative path is not in `keep`, except excluded paths (and directories that still
/// hold one). Symlinks are removed, never followed. Returns how many entries were removed.
pub(crate) fn remove_unlisted(
    root: &Path,
    keep: &HashSet<Vec<u8>>,
    exclude: &Exclude,
) -> Result<usize, UnpackError> {
    fn walk(
        dir: &Path,
        prefix: &[u8],
        keep: &HashSet<Vec<u8>>,
        exclude: &Exclude,
        removed: &mut usize,
    ) -> Result<(), UnpackError> {
        let write = |path: &Path| {
            let path = path.to_path_buf();
            move |source| UnpackError::Write { path, source }
        };
        for entry in fs::read_dir(dir).map_err(write(dir))? {
            let entry = entry.map_err(write(dir))?;
            let path = entry.path();
            let name = entry.file_name();
            let rel = if prefix.is_empty() {
                name.as_bytes().to_vec()
            } else {
                [prefix, b"/", name.as_bytes()].concat()
            };
            if exclude.matches(&rel) {
                continue;
            }
            let is_dir = entry.file_type().map_err(write(&path))?.is_dir();
            let listed = keep.contains(&rel);
            if is_dir {
                walk(&path, &rel, keep, exclude, removed)?;
                if !listed {
                    match fs::remove_dir(&path) {
                        Ok(()) => *removed += 1,
                        // It still holds an excluded entry: keep it.
                        Err(e) if e.kind() == io::ErrorKind::DirectoryNotEmpty => {}
                        Err(e) => return Err(write(&path)(e)),
                    }
                }
            } else if !listed {
                fs::remove_file(&path).map_err(write(&path))?;
                *removed += 1;
            }
        }
        Ok(())
    }
    let mut removed = 0;
    walk(root, b"", keep, exclude, &mut removed)?;
    Ok(removed)
}

/// Why unpacking stopped.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// An entry's name is absolute or climbs out with `..`.
    #[error("the archive names an unsafe path `{path}` (absolute or with `..`)")]
    UnsafePath {
        /// The name, escaped.
        path: String,
    },
    /// The stream is not a readable tar archive.
    #[error("the archive is malformed or truncated")]
    Malformed(#[source] io::Error),
    /// Writing to the local directory failed.
    #[error("cannot write `{}`", path.display())]
    Write {
        /// The local path.
        path: PathBuf,
        /// The failure.
        #[source]
        source: io::Error,
    },
}

/// Unpack the tar stream `reader` into `root` (which must exist), hashing regular files as they
/// are written, then read what follows the archive into [`Unpacked::trailer`]. Entries that are
/// excluded, or are devices, FIFOs or unknown types, are skipped. The root entry (`./`) is
/// skipped: the destination's own metadata is left alone.
pub(crate) fn unpack(
    reader: impl Read,
    root: &Path,
    exclude: &Exclude,
) -> Result<Unpacked, UnpackError> {
    let mut archive = tar::Archive::new(reader);
    let mut unpacked = Unpacked::default();
    let mut directories: Vec<(Vec<Vec<u8>>, u32, u64)> = Vec::new();
    let mut buffer = vec![0u8; CHUNK];
    for entry in archive.entries().map_err(UnpackError::Malformed)? {
        let mut entry = entry.map_err(UnpackError::Malformed)?;
        let raw = entry.path_bytes().into_owned();
        let Some(components) = safe_components(&raw)? else {
            continue;
        };
        let rel = components.join(&b'/');
        if exclude.matches(&rel) {
            continue;
        }
        unpacked.entries.insert(rel.clone());
        let header = entry.header();
        let kind = header.entry_type();
        let mode = header.mode().map_err(UnpackError::Malformed)?;
        let mtime = header.mtime().map_err(UnpackError::Malformed)?;
        // A header without a readable owner is not recorded: packing uses the local owner.
        let record = header
            .uid()
            .and_then(|uid| Ok((uid, header.gid()?)))
            .ok()
            .map(|(uid, gid)| EntryMeta {
                dir: kind == EntryType::Directory,
                mode: mode & 0o7777,
                uid,
                gid,
            });
        let (parents, name) = components.split_at(components.len() - 1);
        match kind {
            EntryType::Directory => {
                real_directories(root, &components)?;
                unpacked.recorded.0.extend(record.map(|r| (rel.clone(), r)));
                directories.push((components, mode, mtime));
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                let path = real_directories(root, parents)?.join(os(&name[0]));
                let write = |source| UnpackError::Write {
                    path: path.clone(),
                    source,
                };
                remove_existing(&path).map_err(write)?;
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .map_err(write)?;
                let mut hasher = Sha256::hasher();
                let mut size = 0;
                loop {
                    let n = entry.read(&mut buffer).map_err(UnpackError::Malformed)?;
                    if n == 0 {
                        break;
                    }
                    hasher.update(&buffer[..n]);
                    file.write_all(&buffer[..n]).map_err(write)?;
                    size += n as u64;
                }
                if kind != EntryType::GNUSparse && size != entry.size() {
                    return Err(UnpackError::Malformed(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("`{}` ends after {size} of its bytes", display_bytes(&rel)),
                    )));
                }
                file.set_permissions(fs::Permissions::from_mode(unpacked_mode(false, mode)))
                    .map_err(write)?;
                unpacked.recorded.0.extend(record.map(|r| (rel.clone(), r)));
                file.set_modified(time(mtime)).map_err(write)?;
                unpacked.bytes += size;
                unpacked.files.insert(rel, Sha256::finish(hasher));
            }
            EntryType::Symlink => {
                let target = entry.link_name_bytes().unwrap_or_default().into_owned();
                let path = real_directories(root, parents)?.join(os(&name[0]));
                let write = |source| UnpackError::Write {
                    path: path.clone(),
                    source,
                };
                remove_existing(&path).map_err(write)?;
                std::os::unix::fs::symlink(os(&target), &path).map_err(write)?;
            }
            EntryType::Link => {
                let target = entry.link_name_bytes().unwrap_or_default().into_owned();
                let Some(target_components) = safe_components(&target)? else {
                    return Err(unsafe_path(&target));
                };
                let target_rel = target_components.join(&b'/');
                let (target_parents, target_name) =
                    target_components.split_at(target_components.len() - 1);
                let source = existing_directories(root, target_parents)?.join(os(&target_name[0]));
                let path = real_directories(root, parents)?.join(os(&name[0]));
                let write = |source| UnpackError::Write {
                    path: path.clone(),
                    source,
                };
                let meta = fs::symlink_metadata(&source).map_err(write)?;
                if !meta.is_file() {
                    return Err(write(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "hard link target is not a regular file",
                    )));
                }
                if source == path {
                    continue;
                }
                remove_existing(&path).map_err(write)?;
                fs::hard_link(&source, &path).map_err(write)?;
                let digest = match unpacked.files.get(&target_rel) {
                    Some(digest) => *digest,
                    None => hash_file(&path, &mut buffer).map_err(write)?,
                };
                unpacked.bytes += meta.len();
                unpacked.files.insert(rel, digest);
            }
            other => {
                debug!(path = %display_bytes(&raw), kind = ?other, "skipping an entry we do not unpack");
            }
        }
    }
    let mut rest = archive.into_inner();
    rest.read_to_end(&mut unpacked.trailer)
        .map_err(UnpackError::Malformed)?;
    // Deepest first, so setting a parent's mtime comes after its children changed it.
    directories.sort_by_key(|(components, ..)| std::cmp::Reverse(components.len()));
    for (components, mode, mtime) in directories {
        let Ok(path) = existing_directories(root, &components) else {
            continue; // replaced by a later entry
        };
        let write = |source| UnpackError::Write {
            path: path.clone(),
            source,
        };
        // Keep the owner able to write, so the next copy can replace the contents.
        fs::set_permissions(&path, fs::Permissions::from_mode(unpacked_mode(true, mode)))
            .map_err(write)?;
        File::open(&path)
            .and_then(|dir| dir.set_modified(time(mtime)))
            .map_err(write)?;
    }
    Ok(unpacked)
}

/// The normal components of a name from an archive; `None` for the root itself.
fn safe_components(raw: &[u8]) -> Result<Option<Vec<Vec<u8>>>, UnpackError> {
    if raw.starts_with(b"/") {
        return Err(unsafe_path(raw));
    }
    let mut components = Vec::new();
    for component in raw.split(|&b| b == b'/') {
        match component {
            b"" | b"." => {}
            b".." => return Err(unsafe_path(raw)),
            normal => components.push(normal.to_vec()),
        }
    }
    Ok((!components.is_empty()).then_some(components))
}

fn unsafe_path(raw: &[u8]) -> UnpackError {
    UnpackError::UnsafePath {
        path: display_bytes(raw),
    }
}

fn os(bytes: &[u8]) -> &std::ffi::OsStr {
    std::ffi::OsStr::from_bytes(bytes)
}

fn time(mtime: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(mtime)
}

/// Make `root/c1/.../cn` a chain of real directories, replacing any symlink or file in the way,
/// and return its path.
fn real_directories(root: &Path, components: &[Vec<u8>]) -> Result<PathBuf, UnpackError> {
    let mut path = root.to_path_buf();
    for component in components {
        path.push(os(component));
        let write = |source| UnpackError::Write {
            path: path.clone(),
            source,
        };
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => continue,
            Ok(_) => fs::remove_file(&path).map_err(write)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(write(e)),
        }
        fs::create_dir(&path).map_err(write)?;
    }
    Ok(path)
}

/// `root/c1/.../cn` if every component is a real directory (no symlinks); changes nothing.
fn existing_directories(root: &Path, components: &[Vec<u8>]) -> Result<PathBuf, UnpackError> {
    let mut path = root.to_path_buf();
    for component in components {
        path.push(os(component));
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(UnpackError::Write {
                    path,
                    source: io::Error::new(io::ErrorKind::NotADirectory, "not a real directory"),
                });
            }
            Err(source) => return Err(UnpackError::Write { path, source }),
        }
    }
    Ok(path)
}

/// Remove whatever is at `path` (a directory with its contents); never follows a symlink.
fn remove_existing(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn hash_file(path: &Path, buffer: &mut [u8]) -> io::Result<Sha256> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::hasher();
    loop {
        let n = file.read(buffer)?;
        if n == 0 {
            return Ok(Sha256::finish(hasher));
        }
        hasher.update(&buffer[..n]);
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    /// (path, type, link target, content) of one hand-made tar entry.
    type RawEntry<'a> = (&'a [u8], EntryType, &'a [u8], &'a [u8]);

    fn tar_with(entries: &[RawEntry<'_>]) -> Vec<u8> {
        // (name, kind, link target, data); names are written raw, bypassing the tar crate's
        // own path checks, to build hostile archives.
        let mut out = Vec::new();
        for (name, kind, link, data) in entries {
            let mut header = Header::new_gnu();
            header.set_entry_type(*kind);
            header.set_mode(0o644);
            header.set_size(data.len() as u64);
            header.set_mtime(1_600_000_000);
            copy_truncated(&mut header.as_old_mut().name, name);
            copy_truncated(&mut header.as_old_mut().linkname, link);
            header.set_cksum();
            out.extend_from_slice(header.as_bytes());
            out.extend_from_slice(data);
            out.resize(out.len().div_ceil(512) * 512, 0);
        }
        out.resize(out.len() + 1024, 0);
        out
    }

    fn copy_truncated(field: &mut [u8], value: &[u8]) {
        let n = value.len().min(field.len());
        field[..n].copy_from_slice(&value[..n]);
    }

    fn sha(data: &[u8]) -> Sha256 {
        let mut h = Sha256::hasher();
        h.update(data);
        Sha256::finish(h)
    }

    #[test]
    fn exclude_matches_prefixes_on_component_boundaries_and_names_anywhere() {
        let exclude = Exclude::new(
            &[PathBuf::from("./_temp/_runner_file_commands/")],
            &["_runner_hook_responses"],
        );
        assert!(exclude.matches(b"_temp/_runner_file_commands"));
        assert!(exclude.matches(b"_temp/_runner_file_commands/set_output_1"));
        assert!(!exclude.matches(b"_temp/_runner_file_commands2"));
        assert!(exclude.matches(b"_temp/_runner_hook_responses/abc"));
        assert!(exclude.matches(b"x/_runner_hook_responses"));
        assert!(!exclude.matches(b"x/_runner_hook_responses.txt"));
    }

    #[test]
    fn pack_then_unpack_round_trips_content_modes_links_and_long_names() {
        let src = tempfile::tempdir().expect("tempdir");
        let s = src.path();
        let long = "d".repeat(120);
        fs::create_dir_all(s.join("a/empty")).expect("mkdir");
        fs::create_dir_all(s.join(&long)).expect("mkdir");
        fs::write(s.join("a/file.txt"), b"hello").expect("write");
        fs::write(s.join(&long).join("f".repeat(150)), b"long").expect("write");
        fs::write(s.join("run.sh"), b"#!/bin/sh\n").expect("write");
        fs::set_permissions(s.join("run.sh"), fs::Permissions::from_mode(0o755)).expect("chmod");
        fs::write(s.join("empty"), b"").expect("write");
        symlink("a/file.txt", s.join("link")).expect("symlink");
        symlink("x".repeat(200), s.join("dangling")).expect("symlink");
        fs::create_dir_all(s.join("_runner_hook_responses")).expect("mkdir");
        fs::write(s.join("_runner_hook_responses/r"), b"secret").expect("write");

        let exclude = Exclude::new(&[], &["_runner_hook_responses"]);
        let mut packed = pack(s, &exclude, &Recorded::default()).expect("pack");
        assert_eq!(packed.len % 512, 0);
        let names: Vec<String> = packed
            .files
            .iter()
            .map(|(n, _)| String::from_utf8_lossy(n).into_owned())
            .collect();
        assert_eq!(
            names,
            vec![
                "a/file.txt".to_owned(),
                format!("{long}/{}", "f".repeat(150)),
                "empty".to_owned(),
                "run.sh".to_owned()
            ]
        );
        assert_eq!(packed.files[0].1, sha(b"hello"));
        assert_eq!(packed.bytes, 5 + 4 + 10);

        let mut archive = Vec::new();
        io::Seek::rewind(&mut packed.file).expect("rewind");
        packed.file.read_to_end(&mut archive).expect("read");
        assert_eq!(archive.len() as u64, packed.len);
        // GNU tar's own reader agrees with the names (when GNU tar is installed).
        if let Ok(mut child) = std::process::Command::new("tar")
            .args(["-t", "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
        {
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(&archive)
                .expect("feed tar");
            let listing = child.wait_with_output().expect("tar -t");
            let listing = String::from_utf8_lossy(&listing.stdout);
            assert!(
                listing.contains(&format!("./{long}/{}\n", "f".repeat(150))),
                "{listing}"
            );
            assert!(
                listing.starts_with("./a/empty/\n./a/file.txt\n./a/\n"),
                "{listing}"
            );
        }

        let dst = tempfile::tempdir().expect("tempdir");
        let d = dst.path();
        let mut input = archive.clone();
        input.extend_from_slice(b"trailer");
        let unpacked = unpack(&input[..], d, &Exclude::default()).expect("unpack");
        let sent: HashMap<_, _> = packed.files.iter().cloned().collect();
        assert_eq!(unpacked.files, sent);
        assert!(unpacked.trailer.ends_with(b"trailer"));
        assert_eq!(fs::read(d.join("a/file.txt")).expect("read"), b"hello");
        assert!(d.join("a/empty").is_dir());
        assert_eq!(
            fs::read_link(d.join("dangling")).expect("link"),
            PathBuf::from("x".repeat(200))
        );
        let mode = fs::metadata(d.join("run.sh")).expect("meta").mode();
        assert_eq!(mode & 0o777, 0o755);
        let mtime = |p: &Path| fs::symlink_metadata(p).expect("meta").mtime();
        assert_eq!(mtime(&d.join("run.sh")), mtime(&s.join("run.sh")));
        assert_eq!(mtime(&d.join("a")), mtime(&s.join("a")));
        assert!(!d.join("_runner_hook_responses").exists());
    }

    #[test]
    fn header_fields_take_the_recorded_mode_and_owner_only_while_the_entry_is_unchanged() {
        let file = EntryMeta {
            dir: false,
            mode: 0o4750,
            uid: 4242,
            gid: 42,
        };
        // Unpacking left 0750 (no setuid, the runner's owner): the recorded header goes out.
        assert_eq!(
            header_fields(false, 0o100750, 1001, 1001, Some(&file)),
            (0o4750, 4242, 42)
        );
        // Changed since (chmod), or a directory now: the local values.
        assert_eq!(
            header_fields(false, 0o100644, 1001, 1001, Some(&file)),
            (0o644, 1001, 1001)
        );
        assert_eq!(
            header_fields(true, 0o40750, 1001, 1001, Some(&file)),
            (0o750, 1001, 1001)
        );
        assert_eq!(header_fields(false, 0o600, 7, 8, None), (0o600, 7, 8));
        // A directory got u+rwx when unpacked: 0555 came back as 0755 and goes out as 0555.
        let dir = EntryMeta {
            dir: true,
            mode: 0o555,
            uid: 0,
            gid: 0,
        };
        assert_eq!(
            header_fields(true, 0o40755, 1001, 1001, Some(&dir)),
            (0o555, 0, 0)
        );
    }

    #[test]
    fn unpack_records_modes_and_owners_and_pack_writes_them_back() {
        let dst = tempfile::tempdir().expect("tempdir");
        let d = dst.path();
        let mut out = Vec::new();
        for (name, kind, mode, uid, data) in [
            (
                &b"./private/inside"[..],
                EntryType::Regular,
                0o600,
                4242,
                &b"x"[..],
            ),
            (b"./private/", EntryType::Directory, 0o500, 4242, b""),
            (b"./secret", EntryType::Regular, 0o600, 0, b"s"),
        ] {
            let mut header = Header::new_gnu();
            header.set_entry_type(kind);
            header.set_mode(mode);
            header.set_uid(uid);
            header.set_gid(uid + 1);
            header.set_size(data.len() as u64);
            copy_truncated(&mut header.as_old_mut().name, name);
            header.set_cksum();
            out.extend_from_slice(header.as_bytes());
            out.extend_from_slice(data);
            out.resize(out.len().div_ceil(512) * 512, 0);
        }
        out.resize(out.len() + 1024, 0);
        let unpacked = unpack(&out[..], d, &Exclude::default()).expect("unpack");
        let mode = |p: &str| fs::metadata(d.join(p)).expect("meta").mode() & 0o7777;
        assert_eq!((mode("secret"), mode("private/inside")), (0o600, 0o600));
        assert_eq!(mode("private"), 0o700, "the owner keeps u+rwx");
        assert_eq!(unpacked.recorded.len(), 3);
        assert_eq!(
            unpacked.recorded.0.get(&b"private"[..]),
            Some(&EntryMeta {
                dir: true,
                mode: 0o500,
                uid: 4242,
                gid: 4243
            })
        );

        fs::write(d.join("new"), b"n").expect("write");
        let mut packed = pack(d, &Exclude::default(), &unpacked.recorded).expect("pack");
        let mut archive = Vec::new();
        io::Seek::rewind(&mut packed.file).expect("rewind");
        packed.file.read_to_end(&mut archive).expect("read");
        let mut headers = HashMap::new();
        for entry in tar::Archive::new(&archive[..]).entries().expect("entries") {
            let entry = entry.expect("entry");
            let h = entry.header();
            headers.insert(
                String::from_utf8_lossy(&entry.path_bytes()).into_owned(),
                (
                    h.mode().expect("mode"),
                    h.uid().expect("uid"),
                    h.gid().expect("gid"),
                ),
            );
        }
        let me = fs::metadata(d.join("new")).expect("meta");
        assert_eq!(headers["./private/"], (0o500, 4242, 4243));
        assert_eq!(headers["./private/inside"], (0o600, 4242, 4243));
        assert_eq!(headers["./secret"], (0o600, 0, 1));
        assert_eq!(
            headers["./new"],
            (me.mode() & 0o7777, u64::from(me.uid()), u64::from(me.gid())),
            "what was not received goes out as it is"
        );
    }

    #[test]
    fn unpack_rejects_parent_and_absolute_names() {
        let dst = tempfile::tempdir().expect("tempdir");
        for name in [&b"../x"[..], b"./a/../../x", b"/etc/x"] {
            let archive = tar_with(&[(name, EntryType::Regular, b"", b"evil")]);
            let err = unpack(&archive[..], dst.path(), &Exclude::default()).expect_err("unsafe");
            assert!(matches!(err, UnpackError::UnsafePath { .. }), "{err}");
        }
        let archive = tar_with(&[(b"./h", EntryType::Link, b"../../etc/passwd", b"")]);
        let err = unpack(&archive[..], dst.path(), &Exclude::default()).expect_err("unsafe link");
        assert!(matches!(err, UnpackError::UnsafePath { .. }), "{err}");
        assert_eq!(fs::read_dir(dst.path()).expect("ls").count(), 0);
    }

    /// A symlink to outside followed by a file written "through" it: the symlink is replaced by
    /// a real directory and nothing lands outside.
    #[test]
    fn unpack_never_writes_through_symlinks() {
        let outside = tempfile::tempdir().expect("tempdir");
        let dst = tempfile::tempdir().expect("tempdir");
        let target = outside.path().as_os_str().as_bytes();
        let archive = tar_with(&[
            (b"./escape", EntryType::Symlink, target, b""),
            (b"./escape/file", EntryType::Regular, b"", b"evil"),
            (b"./same", EntryType::Symlink, target, b""),
            (b"./same", EntryType::Regular, b"", b"ok"),
        ]);
        // A symlink already in the destination, pointing outside, is not followed either.
        symlink(outside.path(), dst.path().join("pre")).expect("symlink");
        symlink(outside.path().join("victim"), dst.path().join("victim")).expect("symlink");
        let more = tar_with(&[
            (b"./pre/file", EntryType::Regular, b"", b"evil"),
            (b"./victim", EntryType::Regular, b"", b"ok"),
        ]);
        let unpacked = unpack(&archive[..], dst.path(), &Exclude::default()).expect("unpack");
        assert_eq!(unpacked.files.len(), 2);
        unpack(&more[..], dst.path(), &Exclude::default()).expect("unpack");
        assert_eq!(fs::read_dir(outside.path()).expect("ls").count(), 0);
        assert!(
            fs::symlink_metadata(dst.path().join("escape"))
                .expect("meta")
                .is_dir()
        );
        assert_eq!(
            fs::read(dst.path().join("escape/file")).expect("read"),
            b"evil"
        );
        assert_eq!(fs::read(dst.path().join("victim")).expect("read"), b"ok");
        assert!(
            fs::symlink_metadata(dst.path().join("pre"))
                .expect("meta")
                .is_dir()
        );
    }

    #[test]
    fn unpack_hard_links_take_the_target_digest() {
        let dst = tempfile::tempdir().expect("tempdir");
        let archive = tar_with(&[
            (b"./a", EntryType::Regular, b"", b"shared"),
            (b"./b", EntryType::Link, b"./a", b""),
        ]);
        let unpacked = unpack(&archive[..], dst.path(), &Exclude::default()).expect("unpack");
        assert_eq!(unpacked.files.get(&b"b"[..]), Some(&sha(b"shared")));
        assert_eq!(fs::read(dst.path().join("b")).expect("read"), b"shared");
    }

    #[test]
    fn unpack_reports_a_truncated_archive() {
        let dst = tempfile::tempdir().expect("tempdir");
        let archive = tar_with(&[(b"./a", EntryType::Regular, b"", &[7; 2000])]);
        let err = unpack(&archive[..1000], dst.path(), &Exclude::default()).expect_err("short");
        assert!(matches!(err, UnpackError::Malformed(_)), "{err}");
    }

    /// What a tree holds, by relative path: directories, file contents, symlink targets.
    #[derive(Debug, PartialEq, Eq)]
    enum Node {
        Dir,
        File(Vec<u8>),
        Symlink(Vec<u8>),
    }

    fn tree(root: &Path) -> std::collections::BTreeMap<Vec<u8>, Node> {
        fn walk(dir: &Path, prefix: &[u8], out: &mut std::collections::BTreeMap<Vec<u8>, Node>) {
            for entry in fs::read_dir(dir).expect("ls") {
                let entry = entry.expect("entry");
                let rel = [prefix, entry.file_name().as_bytes()].concat();
                let path = entry.path();
                let meta = fs::symlink_metadata(&path).expect("meta");
                if meta.is_dir() {
                    walk(&path, &[&rel[..], b"/"].concat(), out);
                    out.insert(rel, Node::Dir);
                } else if meta.is_symlink() {
                    let target = fs::read_link(&path).expect("readlink");
                    out.insert(rel, Node::Symlink(target.as_os_str().as_bytes().to_vec()));
                } else {
                    out.insert(rel, Node::File(fs::read(&path).expect("read")));
                }
            }
        }
        let mut out = std::collections::BTreeMap::new();
        walk(root, b"", &mut out);
        out
    }

    fn archive_bytes(packed: &mut Packed) -> Vec<u8> {
        let mut archive = Vec::new();
        io::Seek::rewind(&mut packed.file).expect("rewind");
        packed.file.read_to_end(&mut archive).expect("read");
        assert_eq!(archive.len() as u64, packed.len);
        archive
    }

    /// A link target over 100 bytes that `Header::set_link_name` would shorten to fit (doubled
    /// slashes and `.` components dropped), and one it would shorten by its trailing `/.`.
    fn shortenable_targets() -> [Vec<u8>; 2] {
        [
            [&b"a//b/./c/"[..], &[b'q'; 92]].concat(),
            [&[b'q'; 99][..], b"/."].concat(),
        ]
    }

    /// Names whose `./rel` (or `./rel/`) is 99 to 103 bytes, a multi-byte character across the
    /// 100th byte, names that are not UTF-8 (short and long), link targets of 99 to 150 bytes,
    /// not UTF-8, or shortenable by the tar crate, and a long-named symlink with a long target.
    fn boundary_tree(root: &Path) {
        let write = |rel: &[u8]| {
            let path = root.join(os(rel));
            fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            fs::write(path, rel).expect("write");
        };
        for len in 97..=101 {
            write(format!("{len:03}{}", "f".repeat(len - 3)).as_bytes());
            write(format!("d{len:03}{}/x", "d".repeat(len - 5)).as_bytes());
        }
        write(b"bad\xff\xfename");
        write(&[0xff; 120]);
        write(&[&"\u{e9}".repeat(49).into_bytes()[..], b"x"].concat());
        // `./u/x` and 47.5 characters: the 100th byte is the first half of an `é`.
        write(&[&b"u/x"[..], &"\u{e9}".repeat(60).into_bytes()].concat());
        let link = |name: &[u8], target: &[u8]| {
            symlink(os(target), root.join(os(name))).expect("symlink");
        };
        for len in [99, 100, 101, 150] {
            link(format!("t{len}").as_bytes(), &b"t".repeat(len));
        }
        link(b"t-bad", &[0xfe; 130]);
        let [doubled, dot] = shortenable_targets();
        link(b"t-doubled", &doubled);
        link(b"t-dot", &dot);
        link(&b"l".repeat(110), &[&b"/abs/"[..], &[b'p'; 120]].concat());
    }

    #[test]
    fn names_and_link_targets_around_100_bytes_come_back_exactly_from_every_extractor() {
        let src = tempfile::tempdir().expect("tempdir");
        let s = src.path();
        boundary_tree(s);
        let mut packed = pack(s, &Exclude::default(), &Recorded::default()).expect("pack");
        let archive = archive_bytes(&mut packed);
        let source = tree(s);

        // The names in the archive: `./rel` whenever it fits in the header or needs a long-name
        // record; `rel` when only that fits, or when the tar crate names a long-target symlink.
        let shortenable = shortenable_targets();
        let mut named = 0;
        for entry in tar::Archive::new(&archive[..]).entries().expect("entries") {
            let entry = entry.expect("entry");
            let name = entry.path_bytes().into_owned();
            let rel = name.strip_prefix(b"./").unwrap_or(&name);
            let rel = rel.strip_suffix(b"/").unwrap_or(rel);
            let node = &source[rel];
            let slash: &[u8] = if *node == Node::Dir { b"/" } else { b"" };
            let dotted = [&b"./"[..], rel, slash].concat();
            let crate_named = matches!(node, Node::Symlink(t) if t.len() > 100
                && !shortenable.contains(t));
            let expected = if (dotted.len() > 100 || crate_named) && dotted.len() <= 102 {
                &dotted[2..]
            } else {
                &dotted[..]
            };
            assert_eq!(display_bytes(&name), display_bytes(expected));
            if let Node::Symlink(target) = node {
                let stored = entry.link_name_bytes().expect("link name");
                assert_eq!(display_bytes(&stored), display_bytes(target));
            }
            named += 1;
        }
        assert_eq!(named, source.len());

        let ours = tempfile::tempdir().expect("tempdir");
        unpack(&archive[..], ours.path(), &Exclude::default()).expect("unpack");
        assert_eq!(tree(ours.path()), source, "unpacked by us");

        // GNU tar and BusyBox tar (when installed), as in the pod.
        for (program, args) in [("tar", &[][..]), ("busybox", &["tar"][..])] {
            let dst = tempfile::tempdir().expect("tempdir");
            let Ok(mut child) = std::process::Command::new(program)
                .args(args)
                .args(["-x", "-f", "-", "-C"])
                .arg(dst.path())
                .stdin(std::process::Stdio::piped())
                .spawn()
            else {
                eprintln!("{program} is not installed: not extracting with it");
                continue;
            };
            let mut stdin = child.stdin.take().expect("stdin");
            stdin.write_all(&archive).expect("feed tar");
            drop(stdin);
            assert!(child.wait().expect("wait").success(), "{program} failed");
            assert_eq!(tree(dst.path()), source, "extracted by {program}");
        }
    }

    #[test]
    fn long_name_and_long_link_records_are_the_gnu_ones_and_ours_matches_the_crates() {
        let src = tempfile::tempdir().expect("tempdir");
        let s = src.path();
        let long_name = "n".repeat(120);
        fs::write(s.join(&long_name), b"x").expect("write");
        let [doubled, _] = shortenable_targets();
        symlink(os(&doubled), s.join("ours")).expect("symlink");
        symlink("t".repeat(doubled.len()), s.join("theirs")).expect("symlink");
        let mut packed = pack(s, &Exclude::default(), &Recorded::default()).expect("pack");
        let archive = archive_bytes(&mut packed);

        let mut records = Vec::new();
        let mut archive = tar::Archive::new(&archive[..]);
        for entry in archive.entries().expect("entries").raw(true) {
            let mut entry = entry.expect("entry");
            let kind = entry.header().entry_type();
            if matches!(kind, EntryType::GNULongName | EntryType::GNULongLink) {
                let header = entry.header().clone();
                let mut data = Vec::new();
                entry.read_to_end(&mut data).expect("read");
                records.push((header, data));
            }
        }
        let expected = [
            (
                EntryType::GNULongName,
                format!("./{long_name}\0").into_bytes(),
            ),
            (EntryType::GNULongLink, [&doubled[..], b"\0"].concat()),
            (
                EntryType::GNULongLink,
                [&b"t".repeat(doubled.len())[..], b"\0"].concat(),
            ),
        ];
        assert_eq!(records.len(), expected.len());
        for ((header, data), (kind, content)) in records.iter().zip(&expected) {
            assert_eq!(header.entry_type(), *kind);
            assert_eq!(data, content);
            let gnu = header.as_gnu().expect("a GNU header");
            assert_eq!(&gnu.name[..14], b"././@LongLink\0");
            assert_eq!(header.size().expect("size"), content.len() as u64);
            assert_eq!(
                (&gnu.mode, &gnu.uid, &gnu.gid, &gnu.mtime),
                (b"0000644\0", b"0000000\0", b"0000000\0", b"00000000000\0")
            );
            assert_eq!((gnu.uname, gnu.gname), ([0; 32], [0; 32]));
        }
        // Our long-link record (for a target the crate would shorten) and the crate's, for a
        // target of the same length: the same header, byte for byte.
        assert_eq!(records[1].0.as_bytes(), records[2].0.as_bytes());
    }
}
