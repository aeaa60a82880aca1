//! The shell scripts copy mode runs in the pod, and how their arguments are laid out.
//!
//! Owns the script texts ([`COPY_IN_SCRIPT`], [`COPY_OUT_SCRIPT`]), their positional
//! parameters and exit codes, and the `sh -c` argv that carries them ([`copy_in_argv`],
//! [`copy_out_argv`]); what the scripts require of the container is listed in the `transfer`
//! module docs. It must not run anything, read the scripts' output or decide whether a copy
//! worked: `transfer` sends the argv over a [`Remote`](super::Remote), verifies and retries, and
//! the archive format belongs to `archive`.

use super::Sha256;

/// Copy-in script. `$1`: destination directory, `$2`: archive length, `$3`: `mirror` to empty
/// the destination first (else `add`), then the top-level entries of the archive that hold
/// regular files (`./name`, or `.`). Stdin: the archive.
/// Stdout: `sha256sum` of every regular file under those entries. Exit code 3: hashing failed
/// for some file.
///
/// `head -c` is the only reader of stdin and nothing follows the archive: BusyBox `head` reads a
/// pipe with a full buffer and drops what it read past its count, so two readers in a row would
/// lose bytes and then wait forever on an exec stdin that is never closed.
pub const COPY_IN_SCRIPT: &str = r#"set -e
dst=$1
len=$2
mode=$3
shift 3
mkdir -p "$dst"
if [ "$mode" = mirror ]; then find "$dst" -mindepth 1 -maxdepth 1 -exec rm -rf {} +; fi
head -c "$len" | tar -x -p -f - -C "$dst"
cd "$dst"
if [ "$#" -gt 0 ]; then find "$@" -type f -exec sha256sum {} + || exit 3; fi
"#;

/// [`COPY_IN_SCRIPT`]'s exit code when extraction worked but some file could not be hashed (an
/// unreadable file that was already in the destination, or `sha256sum` missing). The listing
/// decides then: if every file sent verified, the copy succeeded.
pub(super) const HASH_INCOMPLETE: i32 = 3;

/// Copy-out script. `$1`: source directory. Stdout: a tar archive of `.`, then `sha256sum` of
/// every regular file under `.`.
pub const COPY_OUT_SCRIPT: &str = r#"set -e
cd "$1"
tar -c -f - .
find . -type f -exec sha256sum {} +
"#;

/// Past this many top-level entries, or this many bytes of their names, copy-in hashes the whole
/// destination (`.`) instead of naming them: arguments travel in the exec URL.
const TOP_LEVEL_ARGS: usize = 64;
const TOP_LEVEL_ARGS_BYTES: usize = 8 * 1024;

/// The argv of [`COPY_IN_SCRIPT`] for an archive of `archive_len` bytes holding `files`, into
/// `remote_dir`, emptied first when `mirror`.
pub(super) fn copy_in_argv(
    remote_dir: &str,
    archive_len: u64,
    mirror: bool,
    files: &[(Vec<u8>, Sha256)],
) -> Vec<String> {
    script_argv(
        COPY_IN_SCRIPT,
        [
            remote_dir.to_owned(),
            archive_len.to_string(),
            if mirror { "mirror" } else { "add" }.to_owned(),
        ]
        .into_iter()
        .chain(hash_roots(files)),
    )
}

/// The argv of [`COPY_OUT_SCRIPT`] for `remote_dir`.
pub(super) fn copy_out_argv(remote_dir: &str) -> Vec<String> {
    script_argv(COPY_OUT_SCRIPT, [remote_dir.to_owned()])
}

/// `sh -c SCRIPT sh ARGS...`: arguments travel as positional parameters, never spliced into the
/// script, so no quoting is needed.
fn script_argv(script: &str, args: impl IntoIterator<Item = String>) -> Vec<String> {
    ["sh", "-c", script, "sh"]
        .into_iter()
        .map(str::to_owned)
        .chain(args)
        .collect()
}

/// Where copy-in's `find` starts: the distinct top-level entries that hold the files sent
/// (`./name`), or `.` when there are too many to pass as arguments, or nothing when no file was
/// sent. Names that are not UTF-8 cannot travel in the exec URL's arguments: then `.` as well.
fn hash_roots(files: &[(Vec<u8>, Sha256)]) -> Vec<String> {
    let mut roots: Vec<&[u8]> = Vec::new();
    for (rel, _) in files {
        let top = rel.split(|&b| b == b'/').next().unwrap_or_default();
        if roots.last() != Some(&top) {
            roots.push(top);
        }
    }
    roots.dedup();
    let named: Option<Vec<String>> = roots
        .iter()
        .map(|r| std::str::from_utf8(r).ok().map(|r| format!("./{r}")))
        .collect();
    match named {
        _ if roots.is_empty() => Vec::new(),
        Some(named)
            if named.len() <= TOP_LEVEL_ARGS
                && named.iter().map(String::len).sum::<usize>() <= TOP_LEVEL_ARGS_BYTES =>
        {
            named
        }
        _ => vec![".".to_owned()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_take_their_arguments_as_positional_parameters() {
        let argv = script_argv(COPY_OUT_SCRIPT, ["/__w/a b".to_owned()]);
        assert_eq!(argv[..2], ["sh", "-c"]);
        assert_eq!(argv[3..], ["sh", "/__w/a b"]);
    }

    #[test]
    fn copy_in_hashes_under_the_top_level_entries_it_sent() {
        let digest = Sha256([0; 32]);
        let files = |names: &[&[u8]]| -> Vec<(Vec<u8>, Sha256)> {
            names.iter().map(|n| (n.to_vec(), digest)).collect()
        };
        assert_eq!(
            hash_roots(&files(&[b"_temp/a", b"_temp/b/c", b"repo/x", b"top file"])),
            ["./_temp", "./repo", "./top file"]
        );
        assert!(hash_roots(&[]).is_empty());
        assert_eq!(hash_roots(&files(&[b"a\nb/c"])), ["./a\nb"]);
        assert_eq!(hash_roots(&files(&[b"\xff/a"])), ["."]);
        let many: Vec<Vec<u8>> = (0..=TOP_LEVEL_ARGS)
            .map(|i| format!("f{i}").into_bytes())
            .collect();
        let many: Vec<&[u8]> = many.iter().map(Vec::as_slice).collect();
        assert_eq!(hash_roots(&files(&many)), ["."]);
    }

    #[test]
    fn copy_in_and_copy_out_argv_follow_their_scripts_parameters() {
        let files = [(b"repo/x".to_vec(), Sha256([0; 32]))];
        assert_eq!(
            copy_in_argv("/__w", 2048, true, &files)[3..],
            ["sh", "/__w", "2048", "mirror", "./repo"]
        );
        assert_eq!(
            copy_in_argv("/__w", 0, false, &[])[4..],
            ["/__w", "0", "add"]
        );
        assert_eq!(
            copy_out_argv("/__w"),
            script_argv(COPY_OUT_SCRIPT, ["/__w".to_owned()])
        );
    }
}
