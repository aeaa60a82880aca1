//! Docker's `.dockerignore` semantics, as a pure parser and matcher: which context paths an
//! ignore file excludes.
//!
//! Owns: reading the text of an ignore file into patterns (`moby/patternmatcher`'s
//! `ignorefile.ReadAll`, then `patternmatcher.New`), the syntax check that refuses what Docker
//! refuses, matching a relative path against the patterns (`MatchesOrParentMatches`), and telling
//! the walk whether an exception could re-include something below an excluded directory. It must
//! not touch the file system or do any I/O: the caller reads the file and walks the directory
//! (`context`), and hands this module bytes and `/`-separated relative paths.
//!
//! **Reading.** A UTF-8 BOM is dropped, lines starting with `#` are comments, whitespace is
//! trimmed, each pattern is cleaned like Go's `filepath.Clean` and loses a leading `/`, `!` makes
//! an exception.
//!
//! **Matching.** The last pattern that matches a path or one of its parent directories decides;
//! `*` and `?` never cross `/`, `**` crosses any number of directories, `[...]` is a class as in
//! `filepath.Match`, `\` makes the next character literal.
//!
//! Upstream: github.com/moby/patternmatcher, `patternmatcher.go` and `ignorefile/ignorefile.go`;
//! Buildah applies the same rules to `COPY`/`ADD` sources.

/// A `.dockerignore` file, parsed: `moby/patternmatcher/ignorefile.ReadAll` then
/// `patternmatcher.New` (module docs).
#[derive(Debug, Clone, Default)]
pub struct IgnorePatterns {
    patterns: Vec<Pattern>,
}

/// A line of an ignore file that is not a valid pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: invalid pattern `{pattern}`: {reason}")]
pub struct IgnorePatternError {
    /// 1-based line number.
    pub line: usize,
    /// The line, trimmed.
    pub pattern: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl IgnorePatterns {
    /// Parse the bytes of an ignore file.
    ///
    /// # Errors
    /// [`IgnorePatternError`] for a lone `!` or a malformed pattern (an unclosed `[`, an empty
    /// class, a trailing `\`), which Docker refuses as well.
    pub fn parse(text: &[u8]) -> Result<IgnorePatterns, IgnorePatternError> {
        let text = text.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(text);
        let text = String::from_utf8_lossy(text);
        let mut patterns = Vec::new();
        for (index, raw) in text.split('\n').enumerate() {
            // bufio.ScanLines drops a trailing CR.
            let raw = raw.strip_suffix('\r').unwrap_or(raw);
            // A comment only when `#` is in column 1: ` #x` is the pattern `#x`.
            if raw.starts_with('#') {
                continue;
            }
            let line = raw.trim();
            if line.is_empty() {
                continue;
            }
            let error = |reason| IgnorePatternError {
                line: index + 1,
                pattern: line.to_owned(),
                reason,
            };
            // ReadAll: strip `!`, clean, drop a leading `/`, put `!` back.
            let (exception, body) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            let mut body = if body.is_empty() {
                String::new()
            } else {
                clean(body)
            };
            if body.len() > 1 && body.starts_with('/') {
                body.remove(0);
            }
            if exception && body.is_empty() {
                return Err(error(
                    "`!` alone is not a pattern (Docker: illegal exclusion pattern)",
                ));
            }
            // patternmatcher.New cleans again; idempotent for what ReadAll produced.
            let body = clean(&body);
            let pattern = Pattern::compile(&body, exception).map_err(error)?;
            patterns.push(pattern);
        }
        Ok(IgnorePatterns { patterns })
    }

    /// Whether the file had no patterns.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether `path` (relative to the context, `/`-separated, clean) is excluded:
    /// `patternmatcher`'s `MatchesOrParentMatches`. Patterns are read in order; an exclusion is
    /// only tried while the path is not excluded, an exception only while it is; a pattern
    /// applies when it matches the path or one of its parent directories.
    pub fn matches(&self, path: &str) -> bool {
        let parents: Vec<&str> = path
            .match_indices('/')
            .map(|(index, _)| &path[..index])
            .collect();
        let mut matched = false;
        for pattern in &self.patterns {
            if pattern.exception != matched {
                continue;
            }
            let hit = pattern.matches(path) || parents.iter().any(|p| pattern.matches(p));
            if hit {
                matched = !pattern.exception;
            }
        }
        matched
    }

    /// Whether an exception could re-include something below the excluded directory `dir`
    /// (BuildKit `fsutil`): yes when any exception, without a trailing `/**` or `/*`, still has a
    /// wildcard, or when one lies under `dir`.
    pub fn may_reinclude_below(&self, dir: &str) -> bool {
        let dir_slash = format!("{dir}/");
        self.patterns.iter().filter(|p| p.exception).any(|p| {
            let stem = p.text.strip_suffix("/**").unwrap_or(&p.text);
            let stem = stem.strip_suffix("/*").unwrap_or(stem);
            stem.contains(['*', '[', ']', '?', '^', '\\'])
                || format!("{stem}/").starts_with(&dir_slash)
        })
    }
}

/// Go's `filepath.Clean` on a `/`-separated path: one `/` between names, no `.`, `..` resolved
/// lexically (kept at the start of a relative path, dropped at the root), no trailing `/`.
fn clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => match parts.last() {
                Some(&last) if last != ".." => {
                    parts.pop();
                }
                _ if rooted => {}
                _ => parts.push(".."),
            },
            name => parts.push(name),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_owned(),
        (false, false) => joined,
    }
}

/// How a pattern is matched: `patternmatcher`'s `matchType`, kept because its shortcuts differ
/// from the regular expression in corner cases (`**foo` matches `xfoo`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    /// The path equals the pattern.
    Exact,
    /// `<prefix>**`: the path starts with the prefix.
    Prefix(String),
    /// `**<suffix>`: the path ends with the suffix, or equals it without its leading `/`.
    Suffix(String),
    /// Anything else: the tokens must match the whole path.
    Tokens,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(char),
    /// `*`: any run of characters other than `/`.
    Star,
    /// `?`: one character other than `/`.
    Question,
    /// `**` (or `**/`) before more pattern: `(.*/)?`, nothing or anything ending in `/`.
    AnyDirs,
    /// `**` at the end of a pattern that already has wildcards: `.*`.
    AnyTail,
    /// `[...]`: one character in (or, negated, not in) the ranges.
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

#[derive(Debug, Clone)]
struct Pattern {
    /// The cleaned pattern without `!`.
    text: String,
    exception: bool,
    kind: Kind,
    tokens: Vec<Token>,
}

impl Pattern {
    /// `patternmatcher`'s `Pattern.compile`, with `filepath.Match`'s syntax check first.
    fn compile(text: &str, exception: bool) -> Result<Pattern, &'static str> {
        let chars: Vec<char> = text.chars().collect();
        let mut kind = Kind::Exact;
        let mut tokens = Vec::new();
        let mut i = 0;
        let mut first = true;
        while i < chars.len() {
            let ch = chars[i];
            i += 1;
            match ch {
                '*' if chars.get(i) == Some(&'*') => {
                    i += 1;
                    if chars.get(i) == Some(&'/') {
                        i += 1;
                    }
                    if i == chars.len() {
                        if kind == Kind::Exact {
                            kind = Kind::Prefix(String::new());
                        } else {
                            tokens.push(Token::AnyTail);
                            kind = Kind::Tokens;
                        }
                    } else {
                        tokens.push(Token::AnyDirs);
                        kind = Kind::Tokens;
                    }
                    if first {
                        kind = Kind::Suffix(String::new());
                    }
                }
                '*' => {
                    tokens.push(Token::Star);
                    kind = Kind::Tokens;
                }
                '?' => {
                    tokens.push(Token::Question);
                    kind = Kind::Tokens;
                }
                '\\' => match chars.get(i) {
                    Some(&next) => {
                        i += 1;
                        tokens.push(Token::Literal(next));
                        kind = Kind::Tokens;
                    }
                    None => return Err("a trailing `\\` escapes nothing"),
                },
                '[' => {
                    let (class, next) = parse_class(&chars, i)?;
                    tokens.push(class);
                    i = next;
                    kind = Kind::Tokens;
                }
                ']' => {
                    tokens.push(Token::Literal(']'));
                    kind = Kind::Tokens;
                }
                other => tokens.push(Token::Literal(other)),
            }
            first = false;
        }
        // Fill in the shortcut's text from the cleaned pattern, as `match` does.
        let kind = match kind {
            Kind::Prefix(_) => Kind::Prefix(text[..text.len() - 2].to_owned()),
            Kind::Suffix(_) => Kind::Suffix(text[2..].to_owned()),
            other => other,
        };
        Ok(Pattern {
            text: text.to_owned(),
            exception,
            kind,
            tokens,
        })
    }

    fn matches(&self, path: &str) -> bool {
        match &self.kind {
            Kind::Exact => path == self.text,
            Kind::Prefix(prefix) => path.starts_with(prefix.as_str()),
            Kind::Suffix(suffix) => {
                path.ends_with(suffix.as_str())
                    || suffix.strip_prefix('/').is_some_and(|bare| path == bare)
            }
            Kind::Tokens => match_tokens(&self.tokens, &path.chars().collect::<Vec<_>>()),
        }
    }
}

/// Parse a class after its `[` at `chars[start]`, with `filepath.Match`'s rules: an optional `^`,
/// then at least one `c` or `lo-hi` (`\` escapes; an unescaped `-` or `]` cannot start a range),
/// then `]`. Returns the token and the index after `]`. A range whose ends are reversed (`z-a`)
/// passes `filepath.Match`'s check but not the regular expression `patternmatcher` compiles the
/// pattern to, so Docker fails on it; it is refused here too.
fn parse_class(chars: &[char], start: usize) -> Result<(Token, usize), &'static str> {
    const BAD: &str = "a `[...]` class is malformed (unclosed, empty, or with a bad range)";
    const REVERSED: &str =
        "a `[...]` range ends before it starts; write it low to high (`a-z`, not `z-a`)";
    let mut i = start;
    let negated = chars.get(i) == Some(&'^');
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    let read = |i: &mut usize| -> Result<char, &'static str> {
        let c = *chars.get(*i).ok_or(BAD)?;
        if c == '-' || c == ']' {
            return Err(BAD);
        }
        *i += 1;
        if c == '\\' {
            let escaped = *chars.get(*i).ok_or(BAD)?;
            *i += 1;
            return Ok(escaped);
        }
        Ok(c)
    };
    loop {
        if chars.get(i) == Some(&']') && !ranges.is_empty() {
            return Ok((Token::Class { negated, ranges }, i + 1));
        }
        let lo = read(&mut i)?;
        let hi = if chars.get(i) == Some(&'-') {
            i += 1;
            read(&mut i)?
        } else {
            lo
        };
        if lo > hi {
            return Err(REVERSED);
        }
        ranges.push((lo, hi));
    }
}

/// Whether `tokens` match all of `path`: dynamic programming from the end, `reach[j]` meaning the
/// tokens after the current one match `path[j..]`.
fn match_tokens(tokens: &[Token], path: &[char]) -> bool {
    let n = path.len();
    let mut next = vec![false; n + 1];
    next[n] = true;
    for token in tokens.iter().rev() {
        let mut current = vec![false; n + 1];
        for j in (0..=n).rev() {
            current[j] = match token {
                Token::Literal(c) => j < n && path[j] == *c && next[j + 1],
                Token::Question => j < n && path[j] != '/' && next[j + 1],
                Token::Class { negated, ranges } => {
                    j < n
                        && ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&path[j])) != *negated
                        && next[j + 1]
                }
                Token::Star => next[j] || (j < n && path[j] != '/' && current[j + 1]),
                Token::AnyTail => next[j] || (j < n && current[j + 1]),
                Token::AnyDirs => next[j] || (j..n).any(|k| path[k] == '/' && next[k + 1]),
            };
        }
        next = current;
    }
    next[0]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patterns(text: &str) -> IgnorePatterns {
        IgnorePatterns::parse(text.as_bytes()).expect("patterns parse")
    }

    /// `(ignore file, path, excluded)`: each row checked on its own.
    #[test]
    fn dockerignore_matching_follows_patternmatcher() {
        let table: &[(&str, &str, bool)] = &[
            // Plain names match the path or a parent directory.
            ("foo", "foo", true),
            ("foo", "foo/bar", true),
            ("foo", "a/foo", false),
            ("foo/bar", "foo/bar/baz", true),
            ("foo/bar", "foo", false),
            // `dir/` and `dir` are the same pattern after cleaning; `/abs` is relative.
            ("dir/", "dir", true),
            ("dir/", "dir/file", true),
            ("dir", "dir/file", true),
            ("/abs", "abs", true),
            ("/abs/x", "abs/x", true),
            ("./a/../b", "b", true),
            ("./a/../b", "a", false),
            // `*` and `?` stay within one name.
            ("*.txt", "a.txt", true),
            ("*.txt", "d/a.txt", false),
            ("*/*.txt", "d/a.txt", true),
            ("?.go", "a.go", true),
            ("?.go", "ab.go", false),
            ("*", "anything/below", true),
            // `**` crosses directories, including none.
            ("**/*.go", "main.go", true),
            ("**/*.go", "a/b/c.go", true),
            ("**/*.go", "a/b/c.rs", false),
            ("a/**/b", "a/b", true),
            ("a/**/b", "a/x/y/b", true),
            ("a/**/b", "a/x/y/c", false),
            ("a/**/b", "ab", false),
            ("a/**", "a/x", true),
            ("a/**", "a", false),
            ("**", "x/y", true),
            ("**/node_modules", "node_modules", true),
            ("**/node_modules", "web/node_modules/react/index.js", true),
            // patternmatcher's suffix shortcut: `**foo` matches any path ending in `foo`.
            ("**foo", "xfoo", true),
            // Classes.
            ("[a-c].txt", "b.txt", true),
            ("[a-c].txt", "d.txt", false),
            ("[^a-c].txt", "d.txt", true),
            ("[^a-c].txt", "a.txt", false),
            ("[!a].txt", "!.txt", true),
            // Regex metacharacters are literal.
            ("a.b", "axb", false),
            ("a.b", "a.b", true),
            ("a+(b)", "a+(b)", true),
            ("*.c++", "x.c++", true),
            // Comments only in column 1; `\#` escapes.
            ("#comment", "#comment", false),
            (" #notcomment", "#notcomment", true),
            ("\\#hash", "#hash", true),
            ("\\*", "*", true),
            ("\\*", "x", false),
            // Whitespace trimmed, CRLF, BOM.
            ("  spaced  \r\n", "spaced", true),
            ("\u{feff}bom", "bom", true),
            // Exceptions: later lines win.
            ("*.txt\n!important.txt", "important.txt", false),
            ("*.txt\n!important.txt", "other.txt", true),
            ("!important.txt\n*.txt", "important.txt", true),
            ("dir\n!dir/keep", "dir/keep", false),
            ("dir\n!dir/keep", "dir/other", true),
            ("dir\n!dir/sub", "dir/sub/deep", false),
            ("**/*.md\n!README.md", "README.md", false),
            ("**/*.md\n!README.md", "docs/README.md", true),
            ("*\n!src\nsrc/*.tmp", "src/a.tmp", true),
            ("*\n!src\nsrc/*.tmp", "src/a.rs", false),
            ("! spaced", "spaced", false),
            ("! /abs\nabs", "abs", true),
        ];
        for (file, path, expected) in table {
            assert_eq!(
                patterns(file).matches(path),
                *expected,
                "{file:?} on {path:?}"
            );
        }
    }

    #[test]
    fn malformed_patterns_are_refused_with_their_line() {
        for (text, line) in [
            ("ok\n!", 2),
            ("[a", 1),
            ("a\n\n[]", 3),
            ("x\\", 1),
            ("[a-]", 1),
            ("[^]", 1),
            ("ok\n[z-a]", 2),
        ] {
            let err = IgnorePatterns::parse(text.as_bytes()).unwrap_err();
            assert_eq!(err.line, line, "{text:?}: {err}");
        }
        assert!(
            IgnorePatterns::parse(b"# only a comment\n\n")
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn clean_is_go_filepath_clean() {
        for (input, expected) in [
            ("a//b", "a/b"),
            ("a/./b/", "a/b"),
            ("a/../..", ".."),
            ("../a", "../a"),
            ("/..", "/"),
            ("/a/../../b", "/b"),
            ("", "."),
            ("./", "."),
        ] {
            assert_eq!(clean(input), expected, "{input:?}");
        }
    }

    #[test]
    fn exceptions_decide_which_excluded_directories_are_walked() {
        let p = patterns("vendor\n!vendor/keep.txt\ncache");
        assert!(p.may_reinclude_below("vendor"));
        assert!(!p.may_reinclude_below("cache"));
        let wild = patterns("vendor\n!**/keep.txt");
        assert!(wild.may_reinclude_below("anything"));
        let trailing = patterns("vendor\n!vendor/sub/**");
        assert!(trailing.may_reinclude_below("vendor"));
        assert!(!trailing.may_reinclude_below("other"));
        assert!(!patterns("vendor").may_reinclude_below("vendor"));
    }

    // ---------------------------------------------------------------------------------------
    // Upstream's tests, translated (not copied) into Rust tables. Unless a table says otherwise
    // the source is github.com/moby/patternmatcher, file `patternmatcher_test.go`; the Go test
    // each table comes from is named on it. Upstream builds its matcher with `New` from pattern
    // strings; here every pattern goes through `IgnorePatterns::parse`, which is `ReadAll` then
    // `New`, so a row's patterns are the lines of an ignore file. `ReadAll` changes a pattern
    // beyond `New`'s own cleaning only for a leading `/` or `#`, a space after `!`, or a BOM;
    // the tables whose patterns have one say so. Windows-only rows and subtests (`\` as the separator) are skipped: the
    // build runs on Linux.
    // ---------------------------------------------------------------------------------------

    /// How a `TestMatches` row matches: the path itself (`MatchesExact`), only through one of
    /// its parent directories (`MatchesOrParentMatches` but not `MatchesExact`), or not at all.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Pass {
        Exact,
        Inexact,
        Fail,
    }

    /// `TestMatches`, its single-pattern `tests` (with the non-Windows rows appended as upstream
    /// does; its Windows-only row `a\\` on `a\`, inexact there, is skipped).
    const MATCHES: &[(&str, &str, Pass)] = &[
        ("**", "file", Pass::Exact),
        ("**", "file/", Pass::Exact),
        ("**/", "file", Pass::Exact),
        ("**/", "file/", Pass::Exact),
        ("**", "/", Pass::Exact),
        ("**/", "/", Pass::Exact),
        ("**", "dir/file", Pass::Exact),
        ("**/", "dir/file", Pass::Exact),
        ("**", "dir/file/", Pass::Exact),
        ("**/", "dir/file/", Pass::Exact),
        ("**/**", "dir/file", Pass::Exact),
        ("**/**", "dir/file/", Pass::Exact),
        ("dir/**", "dir/file", Pass::Exact),
        ("dir/**", "dir/file/", Pass::Exact),
        ("dir/**", "dir/dir2/file", Pass::Exact),
        ("dir/**", "dir/dir2/file/", Pass::Exact),
        ("**/dir", "dir", Pass::Exact),
        ("**/dir", "dir/file", Pass::Inexact),
        ("**/dir2/*", "dir/dir2/file", Pass::Exact),
        ("**/dir2/*", "dir/dir2/file/", Pass::Inexact),
        ("**/dir2/**", "dir/dir2/dir3/file", Pass::Exact),
        ("**/dir2/**", "dir/dir2/dir3/file/", Pass::Exact),
        ("**file", "file", Pass::Exact),
        ("**file", "dir/file", Pass::Exact),
        ("**/file", "dir/file", Pass::Exact),
        ("**file", "dir/dir/file", Pass::Exact),
        ("**/file", "dir/dir/file", Pass::Exact),
        ("**/file*", "dir/dir/file", Pass::Exact),
        ("**/file*", "dir/dir/file.txt", Pass::Exact),
        ("**/file*txt", "dir/dir/file.txt", Pass::Exact),
        ("**/file*.txt", "dir/dir/file.txt", Pass::Exact),
        ("**/file*.txt*", "dir/dir/file.txt", Pass::Exact),
        ("**/**/*.txt", "dir/dir/file.txt", Pass::Exact),
        ("**/**/*.txt2", "dir/dir/file.txt", Pass::Fail),
        ("**/*.txt", "file.txt", Pass::Exact),
        ("**/**/*.txt", "file.txt", Pass::Exact),
        ("a**/*.txt", "a/file.txt", Pass::Exact),
        ("a**/*.txt", "a/dir/file.txt", Pass::Exact),
        ("a**/*.txt", "a/dir/dir/file.txt", Pass::Exact),
        ("a/*.txt", "a/dir/file.txt", Pass::Fail),
        ("a/*.txt", "a/file.txt", Pass::Exact),
        ("a/*.txt**", "a/file.txt", Pass::Exact),
        ("a[b-d]e", "ae", Pass::Fail),
        ("a[b-d]e", "ace", Pass::Exact),
        ("a[b-d]e", "aae", Pass::Fail),
        ("a[^b-d]e", "aze", Pass::Exact),
        (".*", ".foo", Pass::Exact),
        (".*", "foo", Pass::Fail),
        ("abc.def", "abcdef", Pass::Fail),
        ("abc.def", "abc.def", Pass::Exact),
        ("abc.def", "abcZdef", Pass::Fail),
        ("abc?def", "abcZdef", Pass::Exact),
        ("abc?def", "abcdef", Pass::Fail),
        ("**/foo/bar", "foo/bar", Pass::Exact),
        ("**/foo/bar", "dir/foo/bar", Pass::Exact),
        ("**/foo/bar", "dir/dir2/foo/bar", Pass::Exact),
        ("abc/**", "abc", Pass::Fail),
        ("abc/**", "abc/def", Pass::Exact),
        ("abc/**", "abc/def/ghi", Pass::Exact),
        ("**/.foo", ".foo", Pass::Exact),
        ("**/.foo", "bar.foo", Pass::Fail),
        ("a(b)c/def", "a(b)c/def", Pass::Exact),
        ("a(b)c/def", "a(b)c/xyz", Pass::Fail),
        ("a.|)$(}+{bc", "a.|)$(}+{bc", Pass::Exact),
        (
            "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
            "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
            Pass::Exact,
        ),
        (
            "dist/*.whl",
            "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
            Pass::Exact,
        ),
        // Not on Windows: `\` escapes.
        ("a\\\\", "a\\", Pass::Exact),
        ("a\\*b", "a*b", Pass::Exact),
    ];

    /// `TestMatches`, its `multiPatternTests`: the patterns are the lines of one file, in order.
    const MATCHES_MULTI: &[(&[&str], &str, Pass)] = &[
        (
            &["**", "!util/docker/web"],
            "util/docker/web/foo",
            Pass::Fail,
        ),
        (
            &["**", "!util/docker/web", "util/docker/web/foo"],
            "util/docker/web/foo",
            Pass::Exact,
        ),
        (
            &[
                "**",
                "!dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
            ],
            "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
            Pass::Fail,
        ),
        (
            &["**", "!dist/*.whl"],
            "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
            Pass::Fail,
        ),
    ];

    /// `MatchesExact`: the patterns in order, each tried on the path alone, never on a parent.
    fn matches_exact(patterns: &IgnorePatterns, path: &str) -> bool {
        let mut matched = false;
        for pattern in &patterns.patterns {
            if pattern.exception == matched && pattern.matches(path) {
                matched = !pattern.exception;
            }
        }
        matched
    }

    /// `TestMatches`' subtests `MatchesExact` (single patterns only, as upstream) and
    /// `MatchesOrParentMatches` (what the walk asks). Its `MatchesUsingParentResult(s)` subtests
    /// expect the same answers as `MatchesOrParentMatches` from an incremental walk; there is one
    /// matcher here.
    #[test]
    fn upstream_matches_table() {
        let single = MATCHES
            .iter()
            .map(|(p, text, pass)| (vec![*p], *text, *pass, true));
        let multi = MATCHES_MULTI
            .iter()
            .map(|(ps, text, pass)| (ps.to_vec(), *text, *pass, false));
        let mut failures = Vec::new();
        for (lines, text, pass, check_exact) in single.chain(multi) {
            let parsed = patterns(&lines.join("\n"));
            let or_parent = parsed.matches(text);
            let exact = matches_exact(&parsed, text);
            if or_parent != (pass != Pass::Fail) || (check_exact && exact != (pass == Pass::Exact))
            {
                failures.push(format!(
                    "{lines:?} on {text:?}: expected {pass:?}, got or-parent {or_parent}, exact {exact}"
                ));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        assert_eq!(MATCHES.len() + MATCHES_MULTI.len(), 72);
    }

    /// A `TestMatch` row's expectation: `filepath.ErrBadPattern` is [`Bad`](Match::Bad).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Match {
        Yes,
        No,
        Bad,
    }

    /// `TestMatch`'s `matchTests`, which upstream took from Go's `filepath.Match` tests and runs
    /// through the package-level `Matches` (one pattern, its parents tried too).
    const FILEPATH_MATCH: &[(&str, &str, Match)] = &[
        ("abc", "abc", Match::Yes),
        ("*", "abc", Match::Yes),
        ("*c", "abc", Match::Yes),
        ("a*", "a", Match::Yes),
        ("a*", "abc", Match::Yes),
        ("a*", "ab/c", Match::Yes),
        ("a*/b", "abc/b", Match::Yes),
        ("a*/b", "a/c/b", Match::No),
        ("a*b*c*d*e*/f", "axbxcxdxe/f", Match::Yes),
        ("a*b*c*d*e*/f", "axbxcxdxexxx/f", Match::Yes),
        ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", Match::No),
        ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", Match::No),
        ("a*b?c*x", "abxbbxdbxebxczzx", Match::Yes),
        ("a*b?c*x", "abxbbxdbxebxczzy", Match::No),
        ("ab[c]", "abc", Match::Yes),
        ("ab[b-d]", "abc", Match::Yes),
        ("ab[e-g]", "abc", Match::No),
        ("ab[^c]", "abc", Match::No),
        ("ab[^b-d]", "abc", Match::No),
        ("ab[^e-g]", "abc", Match::Yes),
        ("a\\*b", "a*b", Match::Yes),
        ("a\\*b", "ab", Match::No),
        ("a?b", "a\u{263a}b", Match::Yes),
        ("a[^a]b", "a\u{263a}b", Match::Yes),
        ("a???b", "a\u{263a}b", Match::No),
        ("a[^a][^a][^a]b", "a\u{263a}b", Match::No),
        ("[a-\u{3b6}]*", "\u{3b1}", Match::Yes),
        ("*[a-\u{3b6}]", "A", Match::No),
        ("a?b", "a/b", Match::No),
        ("a*b", "a/b", Match::No),
        ("[\\]a]", "]", Match::Yes),
        ("[\\-]", "-", Match::Yes),
        ("[x\\-]", "x", Match::Yes),
        ("[x\\-]", "-", Match::Yes),
        ("[x\\-]", "z", Match::No),
        ("[\\-x]", "x", Match::Yes),
        ("[\\-x]", "-", Match::Yes),
        ("[\\-x]", "a", Match::No),
        ("[]a]", "]", Match::Bad),
        ("[-]", "-", Match::Bad),
        ("[x-]", "x", Match::Bad),
        ("[x-]", "-", Match::Bad),
        ("[x-]", "z", Match::Bad),
        ("[-x]", "x", Match::Bad),
        ("[-x]", "-", Match::Bad),
        ("[-x]", "a", Match::Bad),
        ("\\", "a", Match::Bad),
        ("[a-b-c]", "a", Match::Bad),
        ("[", "a", Match::Bad),
        ("[^", "a", Match::Bad),
        ("[^bc", "a", Match::Bad),
        ("a[", "a", Match::Bad),
        ("a[", "ab", Match::Bad),
        ("*x", "xxx", Match::Yes),
    ];

    /// `TestMatch`. A bad pattern is refused when the file is parsed, with its line; upstream
    /// refuses it in `New` (through `filepath.Match`'s syntax check), before any path is tried.
    #[test]
    fn upstream_filepath_match_table() {
        let mut failures = Vec::new();
        for (pattern, text, expected) in FILEPATH_MATCH {
            let got = match IgnorePatterns::parse(pattern.as_bytes()) {
                Ok(parsed) if parsed.matches(text) => Match::Yes,
                Ok(_) => Match::No,
                Err(e) => {
                    assert_eq!(e.line, 1, "{pattern:?}: {e}");
                    Match::Bad
                }
            };
            if got != *expected {
                failures.push(format!(
                    "{pattern:?} on {text:?}: expected {expected:?}, got {got:?}"
                ));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        assert_eq!(FILEPATH_MATCH.len(), 54);
    }

    /// The one-assertion tests at the top of the file, each `(patterns, path, matched)`:
    /// `TestWildcardMatches`, `TestPatternMatches`, `TestExclusionPatternMatchesPatternBefore`,
    /// `TestPatternMatchesFolderExclusions`, `TestPatternMatchesFolderWithSlashExclusions`,
    /// `TestPatternMatchesFolderWildcardExclusions`, `TestExclusionPatternMatchesPatternAfter`,
    /// `TestExclusionPatternMatchesWholeDirectory`, `TestMatchesWithNoPatterns`.
    const SINGLE_TESTS: &[(&[&str], &str, bool)] = &[
        (&["*"], "fileutils.go", true),
        (&["*.go"], "fileutils.go", true),
        (&["!fileutils.go", "*.go"], "fileutils.go", true),
        (&["docs", "!docs/README.md"], "docs/README.md", false),
        (&["docs/", "!docs/README.md"], "docs/README.md", false),
        (&["docs/*", "!docs/README.md"], "docs/README.md", false),
        (&["*.go", "!fileutils.go"], "fileutils.go", false),
        // Upstream's `Matches` never excludes `.` itself; `*.go` does not match it either.
        (&["*.go"], ".", false),
        (&[], "/any/path/there", false),
    ];

    #[test]
    fn upstream_single_tests() {
        for (lines, text, expected) in SINGLE_TESTS {
            assert_eq!(
                patterns(&lines.join("\n")).matches(text),
                *expected,
                "{lines:?} on {text:?}"
            );
        }
    }

    /// `TestSingleExclamationError`, `TestCleanPatternsErrorSingleException` (a lone `!`),
    /// `TestMatchesWithMalformedPatterns` (`[`) and
    /// `TestMatchesOrParentMatchesMalformedPatternDoesNotPanicOnRepeatedCall` (moby/moby#52203):
    /// `[Local-Only]/` passes `filepath.Match`'s syntax check in `New` (a range `l-O` whose ends
    /// are reversed is accepted there) but its regular expression does not compile, so upstream
    /// fails every match with `ErrBadPattern`, and Docker the build; here the file is refused.
    #[test]
    fn upstream_malformed_patterns_are_errors() {
        for text in ["!", "[", "[Local-Only]/"] {
            let err = IgnorePatterns::parse(text.as_bytes())
                .expect_err(&format!("{text:?} must be refused"));
            assert_eq!(err.line, 1, "{text:?}: {err}");
        }
    }

    /// `TestCleanPatterns`, `TestCleanPatternsStripEmptyPatterns` (empty lines are no pattern),
    /// `TestCleanPatternsExceptionFlag`, `TestCleanPatternsLeadingSpaceTrimmed` and
    /// `TestCleanPatternsTrailingSpaceTrimmed` (`!` is found after trimming).
    #[test]
    fn upstream_clean_patterns() {
        assert_eq!(patterns("docs\nconfig").patterns.len(), 2);
        assert_eq!(patterns("docs\nconfig\n").patterns.len(), 2);
        assert_eq!(patterns("docs\nconfig\n\n   \n").patterns.len(), 2);
        for text in [
            "docs\n!docs/README.md",
            "docs\n  !docs/README.md",
            "docs\n!docs/README.md  ",
        ] {
            let parsed = patterns(text);
            assert!(parsed.patterns.iter().any(|p| p.exception), "{text:?}");
            assert_eq!(parsed.patterns[1].text, "docs/README.md", "{text:?}");
        }
    }

    /// `TestCompile`'s `compileTests` (the `/` subtest; the `\` one is Windows'): which shortcut
    /// `compile` picks. Upstream also compares the regular expression; here `Tokens` is matched
    /// by [`match_tokens`] instead, which the tables above check.
    #[test]
    fn upstream_compile_kinds() {
        let table: &[(&str, &str)] = &[
            ("*", "tokens"),
            ("file*", "tokens"),
            ("*file", "tokens"),
            ("a*/b", "tokens"),
            ("**", "suffix"),
            ("**/**", "tokens"),
            ("dir/**", "prefix"),
            ("**/dir", "suffix"),
            ("**/dir2/*", "tokens"),
            ("**/dir2/**", "tokens"),
            ("**file", "suffix"),
            ("**/file*txt", "tokens"),
            ("**/**/*.txt", "tokens"),
            ("a[b-d]e", "tokens"),
            (".*", "tokens"),
            ("abc.def", "exact"),
            ("abc?def", "tokens"),
            ("**/foo/bar", "suffix"),
            ("a(b)c/def", "exact"),
            ("a.|)$(}+{bc", "exact"),
            (
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                "exact",
            ),
        ];
        for (pattern, expected) in table {
            let compiled = Pattern::compile(&clean(pattern), false).expect("compiles");
            let kind = match compiled.kind {
                Kind::Exact => "exact",
                Kind::Prefix(_) => "prefix",
                Kind::Suffix(_) => "suffix",
                Kind::Tokens => "tokens",
            };
            assert_eq!(kind, *expected, "{pattern:?}");
        }
        assert_eq!(table.len(), 21);
    }

    /// github.com/moby/patternmatcher, `ignorefile/ignorefile_test.go`, `TestReadAll`: a leading
    /// `/` is dropped (also after `!` and a space), comments and empty lines are skipped. Its
    /// last two lines (`!` and `! `) are read as `!` by `ReadAll` and refused by `New`; here the
    /// parse refuses the first, on line 8.
    #[test]
    fn upstream_read_all() {
        let content =
            "test1\n/test2\n/a/file/here\n\nlastfile\n# this is a comment\n! /inverted/abs/path\n";
        let read: Vec<String> = patterns(content)
            .patterns
            .iter()
            .map(|p| format!("{}{}", if p.exception { "!" } else { "" }, p.text))
            .collect();
        assert_eq!(
            read,
            [
                "test1",
                "test2",
                "a/file/here",
                "lastfile",
                "!inverted/abs/path"
            ]
        );
        let err = IgnorePatterns::parse(format!("{content}!\n! ").as_bytes()).unwrap_err();
        assert_eq!(err.line, 8, "{err}");
        assert!(patterns("").is_empty());
    }

    /// `TestMatchesAmount`, its `isMatch` column, from github.com/containers/storage, file
    /// `pkg/fileutils/fileutils_test.go` (the copy of this matcher that Buildah's `copier` has
    /// used). Upstream's inputs start with `/`; `ReadAll` drops the leading `/` of every pattern
    /// and the walk asks about relative paths, so the inputs here are the same paths, relative.
    #[test]
    fn upstream_matches_amount() {
        let table: &[(&[&str], &str, bool)] = &[
            (&["1", "2", "3"], "2", true),
            (&["2", "!2", "!2"], "2", false),
            (&["1", "2", "2"], "2", true),
            (&["1", "2", "2", "2"], "2", true),
            (&["/prefix/path", "/prefix/other"], "prefix/path", true),
            (&["/prefix*", "/prefix/path"], "prefix/path", true),
            (&["/prefix*", "!/prefix/path"], "prefix/match", true),
            (&["/prefix*", "!/prefix/path"], "prefix/path", false),
        ];
        for (lines, text, expected) in table {
            assert_eq!(
                patterns(&lines.join("\n")).matches(text),
                *expected,
                "{lines:?} on {text:?}"
            );
        }
    }
}
