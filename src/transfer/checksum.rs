//! sha256 digests and the `sha256sum` listings the remote scripts print.
//!
//! Owns parsing a listing into `(path, digest)` pairs and comparing two sets of digests. Does no
//! I/O. Paths are raw bytes relative to the copied directory, without the `./` prefix, because
//! file names on Linux are bytes and may hold anything but `/` and NUL.
//!
//! Two output forms exist for one file, and both must parse:
//! - `HEX  ./name\n`: BusyBox always, GNU coreutils for plain names. BusyBox prints the name raw,
//!   so a newline in a name appears as a newline in the listing.
//! - `\HEX  ./na\\me\n`: GNU coreutils when the name holds `\`, a newline or (since 9.0) a
//!   carriage return: the line starts with `\` and those bytes are escaped as `\\`, `\n`, `\r`
//!   (coreutils `src/digest.c`, `output_file`/`print_filename`).

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;

/// A sha256 digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sha256(pub [u8; 32]);

impl Sha256 {
    /// Start a streaming hash.
    pub(crate) fn hasher() -> sha2::Sha256 {
        <sha2::Sha256 as sha2::Digest>::new()
    }

    /// Finish a streaming hash.
    pub(crate) fn finish(hasher: sha2::Sha256) -> Sha256 {
        Sha256(<sha2::Sha256 as sha2::Digest>::finalize(hasher).into())
    }
}

impl fmt::Display for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A listing that is not `sha256sum` output.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line} of the checksum listing is not `sha256sum` output: `{excerpt}`")]
pub struct ListingError {
    /// 1-based line number where parsing stopped.
    pub line: usize,
    /// The start of that line, escaped.
    pub excerpt: String,
}

/// At most this many line ends are tried as the end of one raw name (see [`parse_listing`]).
const MAX_NAME_CANDIDATES: usize = 16;

/// Parse `sha256sum` output into `(path, digest)` pairs, with `./` stripped from each path.
///
/// A raw (BusyBox) name ends at a newline that is followed by the start of another record or
/// by the end of the listing. Only a name that itself contains a newline followed by text that
/// looks like a record (`HEX  ./`) is ambiguous; then the first candidate for which `known`
/// returns true wins, else the shortest. `known` is the set of names the caller expects.
///
/// # Errors
/// When a record does not start with a 64-digit lowercase hex digest and two separator bytes.
pub fn parse_listing(
    text: &[u8],
    known: &dyn Fn(&[u8]) -> bool,
) -> Result<Vec<(Vec<u8>, Sha256)>, ListingError> {
    let mut records = Vec::new();
    let mut pos = 0;
    while pos < text.len() {
        let Some(record) = record_start(&text[pos..]) else {
            let line = text[..pos].iter().filter(|&&b| b == b'\n').count() + 1;
            let excerpt = &text[pos..text.len().min(pos + 80)];
            let excerpt = excerpt.split(|&b| b == b'\n').next().unwrap_or_default();
            return Err(ListingError {
                line,
                excerpt: display_bytes(excerpt),
            });
        };
        let name_start = pos + record.name_offset;
        let (name, next) = if record.escaped {
            // An escaped name holds no raw newline.
            let end = find_newline(text, name_start).unwrap_or(text.len());
            (unescape(&text[name_start..end]), end + 1)
        } else {
            let end = raw_name_end(text, name_start, known);
            (text[name_start..end].to_vec(), end + 1)
        };
        records.push((strip_dot_slash(name), record.digest));
        pos = next;
    }
    Ok(records)
}

struct RecordStart {
    escaped: bool,
    digest: Sha256,
    name_offset: usize,
}

/// `\`? + 64 lowercase hex + `  ` (text mode) or ` *` (binary mode).
fn record_start(text: &[u8]) -> Option<RecordStart> {
    let escaped = text.first() == Some(&b'\\');
    let hex_start = usize::from(escaped);
    let hex = text.get(hex_start..hex_start + 64)?;
    let mut digest = [0u8; 32];
    for (i, pair) in hex.chunks_exact(2).enumerate() {
        digest[i] = (hex_digit(pair[0])? << 4) | hex_digit(pair[1])?;
    }
    let separator = text.get(hex_start + 64..hex_start + 66)?;
    if separator != b"  " && separator != b" *" {
        return None;
    }
    Some(RecordStart {
        escaped,
        digest: Sha256(digest),
        name_offset: hex_start + 66,
    })
}

fn hex_digit(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        _ => None,
    }
}

/// Whether `text` starts a record for a path the scripts list (`./...`).
fn starts_record(text: &[u8]) -> bool {
    record_start(text).is_some_and(|r| text[r.name_offset..].starts_with(b"./"))
}

fn find_newline(text: &[u8], from: usize) -> Option<usize> {
    text[from..]
        .iter()
        .position(|&b| b == b'\n')
        .map(|i| from + i)
}

/// Where a raw name starting at `start` ends (the index of its terminating newline, or the end
/// of the text).
fn raw_name_end(text: &[u8], start: usize, known: &dyn Fn(&[u8]) -> bool) -> usize {
    let mut first = None;
    let mut from = start;
    let mut candidates = 0;
    loop {
        let end = find_newline(text, from).unwrap_or(text.len());
        let at_end = end + 1 >= text.len();
        if at_end || starts_record(&text[end + 1..]) {
            first.get_or_insert(end);
            candidates += 1;
            if known(strip_dot_slash_ref(&text[start..end])) {
                return end;
            }
        }
        if at_end || candidates >= MAX_NAME_CANDIDATES {
            break;
        }
        from = end + 1;
    }
    first.unwrap_or(text.len())
}

/// Undo GNU's escaping: `\\` → `\`, `\n` → newline, `\r` → carriage return.
fn unescape(name: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len());
    let mut bytes = name.iter().copied();
    while let Some(b) = bytes.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match bytes.next() {
            Some(b'\\') => out.push(b'\\'),
            Some(b'n') => out.push(b'\n'),
            Some(b'r') => out.push(b'\r'),
            Some(other) => out.extend_from_slice(&[b'\\', other]),
            None => out.push(b'\\'),
        }
    }
    out
}

fn strip_dot_slash(name: Vec<u8>) -> Vec<u8> {
    match name.strip_prefix(b"./") {
        Some(rest) => rest.to_vec(),
        None => name,
    }
}

fn strip_dot_slash_ref(name: &[u8]) -> &[u8] {
    name.strip_prefix(b"./").unwrap_or(name)
}

/// What went wrong with one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The sender has it; the receiving side does not.
    Missing,
    /// Both have it, with different content.
    Differs {
        /// Digest on the sending side.
        sent: Sha256,
        /// Digest on the receiving side.
        received: Sha256,
    },
    /// Received, but the sender did not list it (it vanished on the sender during the copy).
    NotListed,
}

/// One file that did not arrive intact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileProblem {
    /// Path relative to the copied directory.
    pub path: PathBuf,
    /// What is wrong.
    pub problem: Problem,
}

impl fmt::Display for FileProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = display_bytes(self.path.as_os_str().as_encoded_bytes());
        match &self.problem {
            Problem::Missing => write!(f, "`{path}` is missing"),
            Problem::Differs { sent, received } => write!(
                f,
                "`{path}` differs (sent sha256 {sent}, received {received})"
            ),
            Problem::NotListed => write!(f, "`{path}` arrived but the sender did not list it"),
        }
    }
}

/// Compare what was sent with what was received. `sent` is complete: every entry must be in
/// `received` with the same digest. With `strict`, every entry of `received` must also be in
/// `sent`. Problems come sorted by path.
pub fn compare(
    sent: &HashMap<Vec<u8>, Sha256>,
    received: &HashMap<Vec<u8>, Sha256>,
    strict: bool,
) -> Vec<FileProblem> {
    let mut problems: Vec<(Vec<u8>, Problem)> = Vec::new();
    for (path, &digest) in sent {
        match received.get(path) {
            None => problems.push((path.clone(), Problem::Missing)),
            Some(&got) if got != digest => problems.push((
                path.clone(),
                Problem::Differs {
                    sent: digest,
                    received: got,
                },
            )),
            Some(_) => {}
        }
    }
    if strict {
        for path in received.keys() {
            if !sent.contains_key(path) {
                problems.push((path.clone(), Problem::NotListed));
            }
        }
    }
    problems.sort_by(|a, b| a.0.cmp(&b.0));
    problems
        .into_iter()
        .map(|(path, problem)| FileProblem {
            path: path_from_bytes(path),
            problem,
        })
        .collect()
}

/// A relative path from its raw bytes.
pub(crate) fn path_from_bytes(bytes: Vec<u8>) -> PathBuf {
    use std::os::unix::ffi::OsStringExt as _;
    PathBuf::from(std::ffi::OsString::from_vec(bytes))
}

/// Bytes for a message: lossy UTF-8 with control characters escaped, so one name stays on one
/// line.
pub(crate) fn display_bytes(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881";
    const B: &str = "594e519ae499312b29433b7dd8a97ff068defcba9755b6d5d00e84c524d67b06";

    fn digest(hex: &str) -> Sha256 {
        record_start(format!("{hex}  ./x").as_bytes())
            .expect("valid")
            .digest
    }

    fn parse(text: &[u8], known: &[&[u8]]) -> Vec<(Vec<u8>, Sha256)> {
        parse_listing(text, &|name| known.contains(&name)).expect("parses")
    }

    #[test]
    fn sha256_of_empty_input() {
        let hash = Sha256::finish(Sha256::hasher());
        assert_eq!(
            hash.to_string(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn plain_records() {
        let text = format!("{A}  ./a\n{B}  ./dir/b c\n");
        assert_eq!(
            parse(text.as_bytes(), &[]),
            vec![(b"a".to_vec(), digest(A)), (b"dir/b c".to_vec(), digest(B))]
        );
    }

    #[test]
    fn binary_mode_marker_and_missing_final_newline() {
        let text = format!("{A} *./a\n{B}  ./b");
        let parsed = parse(text.as_bytes(), &[]);
        assert_eq!(parsed[0].0, b"a");
        assert_eq!(parsed[1], (b"b".to_vec(), digest(B)));
    }

    /// Exact bytes GNU coreutils 9.1 prints for `a\b`, `c<CR>r` and `n<LF>l`.
    #[test]
    fn gnu_escaped_names() {
        let text = format!("\\{A}  ./a\\\\b\n\\{B}  ./c\\rr\n\\{A}  ./n\\nl\n");
        let names: Vec<Vec<u8>> = parse(text.as_bytes(), &[])
            .into_iter()
            .map(|r| r.0)
            .collect();
        assert_eq!(
            names,
            vec![b"a\\b".to_vec(), b"c\rr".to_vec(), b"n\nl".to_vec()]
        );
    }

    /// BusyBox prints names raw: a newline inside a name is a newline in the listing.
    #[test]
    fn busybox_raw_newline_in_name() {
        let text = format!("{A}  ./n\nl\n{B}  ./a\\b\n{A}  ./trailing\n\n");
        let names: Vec<Vec<u8>> = parse(text.as_bytes(), &[])
            .into_iter()
            .map(|r| r.0)
            .collect();
        assert_eq!(
            names,
            vec![b"n\nl".to_vec(), b"a\\b".to_vec(), b"trailing\n".to_vec()]
        );
    }

    /// A name whose second line looks like a record: the known names decide.
    #[test]
    fn ambiguous_raw_name_resolved_by_known_names() {
        let text = format!("{A}  ./x\n{B}  ./y\n");
        let as_one = parse(text.as_bytes(), &[format!("x\n{B}  ./y").as_bytes()]);
        assert_eq!(as_one.len(), 1);
        let as_two = parse(text.as_bytes(), &[b"x", b"y"]);
        assert_eq!(as_two.len(), 2);
    }

    /// Garbage after a raw name reads as the rest of that name (BusyBox names may hold
    /// newlines), so it surfaces as an unknown name; anywhere else it is an error.
    #[test]
    fn garbage_is_an_error_with_its_line() {
        let text = format!("\\{A}  ./a\\b\nsha256sum: ./b: No such file or directory\n");
        let err = parse_listing(text.as_bytes(), &|_| false).expect_err("garbage");
        assert_eq!(err.line, 2);
        assert!(err.excerpt.starts_with("sha256sum: ./b"), "{err}");
        let upper = format!("{}  ./a\n", A.to_uppercase());
        assert!(parse_listing(upper.as_bytes(), &|_| false).is_err());
        let absorbed = format!("{A}  ./a\ngarbage\n");
        assert_eq!(parse(absorbed.as_bytes(), &[b"a"])[0].0, b"a\ngarbage");
    }

    #[test]
    fn compare_reports_missing_differing_and_unlisted() {
        let sent: HashMap<Vec<u8>, Sha256> = [
            (b"same".to_vec(), digest(A)),
            (b"changed".to_vec(), digest(A)),
            (b"gone".to_vec(), digest(A)),
        ]
        .into();
        let received: HashMap<Vec<u8>, Sha256> = [
            (b"same".to_vec(), digest(A)),
            (b"changed".to_vec(), digest(B)),
            (b"extra".to_vec(), digest(A)),
        ]
        .into();
        let lenient = compare(&sent, &received, false);
        assert_eq!(
            lenient.iter().map(ToString::to_string).collect::<Vec<_>>(),
            vec![
                format!("`changed` differs (sent sha256 {A}, received {B})"),
                "`gone` is missing".to_owned(),
            ]
        );
        let strict = compare(&sent, &received, true);
        assert_eq!(strict.len(), 3);
        assert_eq!(strict[1].problem, Problem::NotListed);
    }

    #[test]
    fn display_escapes_control_characters() {
        assert_eq!(display_bytes(b"a\nb\xff"), "a\\nb\u{fffd}");
    }
}
