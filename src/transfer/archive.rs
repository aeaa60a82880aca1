//! Tar archives on the runner's side: packing a local directory into one archive while hashing
//! its files, and unpacking a received archive into a local directory while hashing.
//!
//! Owns the archive format we write and the path-safety rules for what we unpack. It must not
//! talk to the remote side; the copy module (`transfer`) feeds it readers and files.
//!
//! Packing writes what GNU tar and BusyBox tar both extract: GNU-format headers, names `./rel`
//! (`./rel/` for directories), GNU long-name (`L`) and long-link (`K`) records for names of 100
//! bytes or more, numeric owner only (empty user and group names, so the container maps nothing
//! by name and root restores the runner's uid/gid), symlinks as symlinks, no entry for the root
//! itself (extracting must not touch the metadata of the destination directory, which may belong
//! to someone else), and each directory *after* its contents, so that extractors which set a
//! directory's mtime when they meet its entry (BusyBox) leave it as it was.
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
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use sha2::Digest as _;
use tar::{EntryType, Header};
use tracing::debug;

use super::checksum::{Sha256, display_bytes};

const BLOCK: u64 = 512;
/// Names of this length or more go into a GNU long-name record (the header field is 100 bytes).
const NAME_FIELD: usize = 100;
/// Copy buffer for file contents.
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
    let at = |path: &Path| {
        let path = path.to_path_buf();
        move |source| PackError { path, source }
    };
    let file = tempfile::tempfile().map_err(at(&std::env::temp_dir()))?;
    let mut writer = TarWriter {
        out: BufWriter::with_capacity(WRITE_BUFFER, file),
        len: 0,
        buffer: vec![0; CHUNK],
    };
    let mut files = Vec::new();
    let mut bytes = 0;
    if !fs::metadata(root).map_err(at(root))?.is_dir() {
        return Err(PackError {
            path: root.to_path_buf(),
            source: io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
        });
    }
    pack_dir(
        root,
        &[],
        exclude,
        recorded,
        &mut writer,
        &mut files,
        &mut bytes,
    )?;
    writer.finish().map_err(at(root))?;
    let TarWriter { out, len, .. } = writer;
    let file = out.into_inner().map_err(|e| PackError {
        path: root.to_path_buf(),
        source: e.into_error(),
    })?;
    Ok(Packed {
        file,
        len,
        files,
        bytes,
    })
}

fn pack_dir(
    dir: &Path,
    rel: &[u8],
    exclude: &Exclude,
    recorded: &Recorded,
    writer: &mut TarWriter<BufWriter<File>>,
    files: &mut Vec<(Vec<u8>, Sha256)>,
    bytes: &mut u64,
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
            pack_dir(&path, &child, exclude, recorded, writer, files, bytes)?;
        }
        let record = recorded.0.get(&child);
        pack_entry(&path, child, &meta, record, writer, files, bytes)?;
    }
    Ok(())
}

/// Write the one entry for `path` (named `rel`, with its `lstat` metadata `meta`): a directory
/// entry alone (its contents are separate entries), a regular file with its contents, or a
/// symlink as a symlink. Sockets, FIFOs and devices are skipped.
fn pack_entry(
    path: &Path,
    rel: Vec<u8>,
    meta: &fs::Metadata,
    recorded: Option<&EntryMeta>,
    writer: &mut TarWriter<BufWriter<File>>,
    files: &mut Vec<(Vec<u8>, Sha256)>,
    bytes: &mut u64,
) -> Result<(), PackError> {
    let at = |source| PackError {
        path: path.to_path_buf(),
        source,
    };
    let kind = meta.file_type();
    if kind.is_dir() {
        let mut name = rel;
        name.push(b'/');
        writer
            .entry(EntryType::Directory, &name, None, meta, recorded, None)
            .map_err(at)?;
    } else if kind.is_file() {
        let mut file = open_for_packing(path, meta).map_err(at)?;
        let digest = writer
            .entry(
                EntryType::Regular,
                &rel,
                None,
                meta,
                recorded,
                Some(&mut file),
            )
            .map_err(at)?;
        *bytes += meta.len();
        files.push((rel, digest));
    } else if kind.is_symlink() {
        let target = fs::read_link(path).map_err(at)?;
        writer
            .entry(
                EntryType::Symlink,
                &rel,
                Some(target.as_os_str().as_bytes()),
                meta,
                None,
                None,
            )
            .map_err(at)?;
    } else {
        debug!(path = %path.display(), "not copying a socket, FIFO or device");
    }
    Ok(())
}

/// Pack exactly `entries` of `root`: relative paths (no `./`, no trailing `/`), written in the
/// order given, each as what it is now (`lstat`): a directory entry alone, a regular file, or a
/// symlink as a symlink (never followed). For the archive layout described in the module docs,
/// list each directory after its contents. Used when the caller selects the files itself (the
/// build context and its `.dockerignore`).
pub(crate) fn pack_entries(root: &Path, entries: &[Vec<u8>]) -> Result<Packed, PackError> {
    let at = |path: &Path| {
        let path = path.to_path_buf();
        move |source| PackError { path, source }
    };
    let file = tempfile::tempfile().map_err(at(&std::env::temp_dir()))?;
    let mut writer = TarWriter {
        out: BufWriter::with_capacity(WRITE_BUFFER, file),
        len: 0,
        buffer: vec![0; CHUNK],
    };
    let mut files = Vec::new();
    let mut bytes = 0;
    for rel in entries {
        let path = root.join(std::ffi::OsStr::from_bytes(rel));
        let meta = fs::symlink_metadata(&path).map_err(at(&path))?;
        pack_entry(
            &path,
            rel.clone(),
            &meta,
            None,
            &mut writer,
            &mut files,
            &mut bytes,
        )?;
    }
    writer.finish().map_err(at(root))?;
    let TarWriter { out, len, .. } = writer;
    let file = out.into_inner().map_err(|e| PackError {
        path: root.to_path_buf(),
        source: e.into_error(),
    })?;
    Ok(Packed {
        file,
        len,
        files,
        bytes,
    })
}

struct TarWriter<W: Write> {
    out: W,
    len: u64,
    buffer: Vec<u8>,
}

impl<W: Write> TarWriter<W> {
    /// Write one entry named `./rel`; for a regular file, copy exactly `meta.len()` bytes of
    /// `data` and return their digest. Mode and owner come from `meta`, or from `recorded`
    /// ([`header_fields`]).
    fn entry(
        &mut self,
        kind: EntryType,
        rel: &[u8],
        link: Option<&[u8]>,
        meta: &fs::Metadata,
        recorded: Option<&EntryMeta>,
        data: Option<&mut File>,
    ) -> io::Result<Sha256> {
        let mut name = b"./".to_vec();
        name.extend_from_slice(rel);
        let size = if kind == EntryType::Regular {
            meta.len()
        } else {
            0
        };
        if name.len() >= NAME_FIELD {
            self.long_record(EntryType::GNULongName, &name)?;
        }
        if let Some(link) = link
            && link.len() >= NAME_FIELD
        {
            self.long_record(EntryType::GNULongLink, link)?;
        }
        let mut header = Header::new_gnu();
        header.set_entry_type(kind);
        let (mode, uid, gid) = header_fields(
            kind == EntryType::Directory,
            meta.mode(),
            u64::from(meta.uid()),
            u64::from(meta.gid()),
            recorded.filter(|_| kind != EntryType::Symlink),
        );
        header.set_mode(mode);
        header.set_uid(uid);
        header.set_gid(gid);
        header.set_mtime(u64::try_from(meta.mtime()).unwrap_or(0));
        header.set_size(size);
        copy_truncated(&mut header.as_old_mut().name, &name);
        if let Some(link) = link {
            copy_truncated(&mut header.as_old_mut().linkname, link);
        }
        header.set_cksum();
        self.write(header.as_bytes())?;
        let mut hasher = Sha256::hasher();
        if let Some(file) = data {
            let mut remaining = size;
            while remaining > 0 {
                let want = remaining.min(self.buffer.len() as u64) as usize;
                let n = file.read(&mut self.buffer[..want])?;
                if n == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the file shrank while it was being packed",
                    ));
                }
                hasher.update(&self.buffer[..n]);
                self.out.write_all(&self.buffer[..n])?;
                self.len += n as u64;
                remaining -= n as u64;
            }
            self.pad()?;
        }
        Ok(Sha256::finish(hasher))
    }

    /// A GNU `././@LongLink` record carrying a name that does not fit in a header.
    fn long_record(&mut self, kind: EntryType, name: &[u8]) -> io::Result<()> {
        let mut header = Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_size(name.len() as u64 + 1);
        copy_truncated(&mut header.as_old_mut().name, b"././@LongLink");
        header.set_cksum();
        self.write(header.as_bytes())?;
        self.write(name)?;
        self.write(&[0])?;
        self.pad()
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.len += bytes.len() as u64;
        Ok(())
    }

    fn pad(&mut self) -> io::Result<()> {
        let rest = (BLOCK - self.len % BLOCK) % BLOCK;
        self.write(&[0; BLOCK as usize][..rest as usize])
    }

    /// The end-of-archive marker: two zero blocks.
    fn finish(&mut self) -> io::Result<()> {
        self.write(&[0; 2 * BLOCK as usize])?;
        self.out.flush()
    }
}

fn copy_truncated(field: &mut [u8], value: &[u8]) {
    let n = value.len().min(field.len());
    field[..n].copy_from_slice(&value[..n]);
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
}
