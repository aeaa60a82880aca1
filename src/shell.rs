//! POSIX shell words: splitting a command line into words and quoting a word for `sh`.
//!
//! This module owns every place where the hook turns text into shell words or words into shell
//! text, so the rules live (and are tested) once:
//!
//! - [`split`] / [`rejoin`] undo the runner's own splitting of container arguments. For a
//!   container action with `args: ["hello", "big world"]` the runner builds the string
//!   ` "hello" "big world"` (each argument double-quoted, `"` escaped) and then calls
//!   `Split(' ')`, dropping empty items (runner #2633, `ContainerActionHandler.cs`), so the hook
//!   receives `["\"hello\"", "\"big", "world\""]`. Joining those with single spaces and
//!   splitting like a shell gives back `["hello", "big world"]`. The TypeScript hook does the same
//!   with `shlex.split(args.join(' '))` (`fixArgs` in `packages/k8s/src/k8s/utils.ts`).
//! - [`quote`] makes any string one literal word for `sh -c` scripts the hook generates.
//!
//! Splitting never expands anything: `$VAR`, `$(cmd)`, backticks, globs and `~` stay literal, and
//! `#` does not start a comment (an argument may well be `#channel`). It only removes quotes and
//! escapes. This module does no I/O and runs no shell.

use std::fmt;

/// Text that cannot be split into shell words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShellError {
    /// A `'` or `"` quote is opened and never closed.
    #[error("unterminated {kind} quote in `{text}`")]
    UnterminatedQuote {
        /// Which quote was left open.
        kind: QuoteKind,
        /// The whole text that was being split.
        text: String,
    },
    /// The text ends with a `\` outside quotes, which escapes nothing.
    #[error("`{text}` ends with a backslash that escapes nothing")]
    TrailingBackslash {
        /// The whole text that was being split.
        text: String,
    },
}

/// The two kinds of shell quotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuoteKind {
    /// `'...'`: everything inside is literal.
    Single,
    /// `"..."`: `\` escapes `"`, `\`, `$`, backtick and newline.
    Double,
}

impl fmt::Display for QuoteKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            QuoteKind::Single => "single",
            QuoteKind::Double => "double",
        })
    }
}

/// Split `text` into words the way a POSIX shell does, without any expansion.
///
/// - Unquoted blanks (space, tab, newline) separate words; runs of them count as one.
/// - `'...'` is literal up to the next `'`.
/// - `"..."`: a backslash followed by `"`, `\`, `$`, backtick or newline yields that character
///   (a backslash-newline pair is removed, as POSIX line continuation); before any other
///   character the backslash is kept (POSIX XCU 2.2.3).
/// - Outside quotes, a backslash makes the next character literal; backslash-newline is removed.
/// - Quotes can join parts of one word (`a"b c"d` is `ab cd`) and make empty words (`''`).
///
/// # Errors
/// [`ShellError::UnterminatedQuote`] for an unclosed quote and [`ShellError::TrailingBackslash`]
/// for a final unescaped backslash, each naming the text.
pub fn split(text: &str) -> Result<Vec<String>, ShellError> {
    let mut words = Vec::new();
    let mut word = String::new();
    // A word exists once any character or quote of it was seen: `''` is one empty word.
    let mut in_word = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\\' => match chars.next() {
                Some('\n') => {}
                Some(next) => {
                    word.push(next);
                    in_word = true;
                }
                None => {
                    return Err(ShellError::TrailingBackslash {
                        text: text.to_owned(),
                    });
                }
            },
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(inner) => word.push(inner),
                        None => {
                            return Err(ShellError::UnterminatedQuote {
                                kind: QuoteKind::Single,
                                text: text.to_owned(),
                            });
                        }
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some('\n') => {}
                            Some(escaped @ ('"' | '\\' | '$' | '`')) => word.push(escaped),
                            Some(other) => {
                                word.push('\\');
                                word.push(other);
                            }
                            None => {
                                return Err(ShellError::UnterminatedQuote {
                                    kind: QuoteKind::Double,
                                    text: text.to_owned(),
                                });
                            }
                        },
                        Some(inner) => word.push(inner),
                        None => {
                            return Err(ShellError::UnterminatedQuote {
                                kind: QuoteKind::Double,
                                text: text.to_owned(),
                            });
                        }
                    }
                }
            }
            other => {
                word.push(other);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// Undo the runner's split of container arguments: join with single spaces, then [`split`].
///
/// The runner split on single spaces, so runs of spaces inside one quoted argument are already
/// lost when the request arrives (`"a  b"` comes back as `a b`); Docker's own hook has the same
/// limit.
///
/// # Errors
/// As [`split`], e.g. when an argument contains an unbalanced `"`.
pub fn rejoin(args: &[String]) -> Result<Vec<String>, ShellError> {
    split(&args.join(" "))
}

/// Quote `word` so that `sh` reads it back as exactly that one word, with nothing expanded.
///
/// Words made only of characters that are never special to the shell (ASCII letters, digits and
/// `@%+=:,./_-`, the set Python's `shlex.quote` leaves bare) stay as they are; anything else is
/// put in single quotes, each `'` written as `'\''`. The empty string becomes `''`.
pub fn quote(word: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "@%+=:,./_-".contains(c);
    if !word.is_empty() && word.chars().all(safe) {
        return word.to_owned();
    }
    let mut quoted = String::with_capacity(word.len() + 2);
    quoted.push('\'');
    for c in word.chars() {
        if c == '\'' {
            quoted.push_str("'\\''");
        } else {
            quoted.push(c);
        }
    }
    quoted.push('\'');
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        split(text).unwrap_or_else(|e| panic!("`{text}` should split: {e}"))
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn blanks_separate_words() {
        assert_eq!(words("a b\tc\nd"), strings(&["a", "b", "c", "d"]));
        assert_eq!(words("  a   b  "), strings(&["a", "b"]));
        assert!(words("").is_empty());
        assert!(words("   ").is_empty());
    }

    #[test]
    fn single_quotes_are_literal() {
        assert_eq!(
            words(r#"'$HOME `x` "q" \n'"#),
            strings(&[r#"$HOME `x` "q" \n"#])
        );
        assert_eq!(words("'a b'c"), strings(&["a bc"]));
    }

    #[test]
    fn double_quotes_escape_only_the_posix_set() {
        assert_eq!(words(r#""a \" \\ \$ \` b""#), strings(&[r#"a " \ $ ` b"#]));
        // Before any other character the backslash stays.
        assert_eq!(words(r#""\n\a""#), strings(&[r"\n\a"]));
        // Backslash-newline is a line continuation.
        assert_eq!(words("\"a\\\nb\""), strings(&["ab"]));
        // Nothing is expanded.
        assert_eq!(words(r#""$HOME $(id)""#), strings(&["$HOME $(id)"]));
    }

    #[test]
    fn backslash_outside_quotes_escapes_the_next_character() {
        assert_eq!(words(r"a\ b c"), strings(&["a b", "c"]));
        assert_eq!(words(r#"\"x\'"#), strings(&[r#""x'"#]));
        assert_eq!(words("a\\\nb"), strings(&["ab"]));
    }

    #[test]
    fn quotes_make_empty_words_and_join_parts() {
        assert_eq!(words("'' \"\""), strings(&["", ""]));
        assert_eq!(words(r#"a"b c"d"#), strings(&["ab cd"]));
        assert_eq!(words("#not-a-comment"), strings(&["#not-a-comment"]));
    }

    #[test]
    fn unterminated_quotes_name_the_text() {
        let err = split(r#"echo "big world"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"unterminated double quote in `echo "big world`"#
        );
        let err = split("it's").unwrap_err();
        assert_eq!(err.to_string(), "unterminated single quote in `it's`");
        let err = split(r"tail\").unwrap_err();
        assert_eq!(
            err.to_string(),
            r"`tail\` ends with a backslash that escapes nothing"
        );
        assert!(matches!(
            split(r#""a\"#),
            Err(ShellError::UnterminatedQuote {
                kind: QuoteKind::Double,
                ..
            })
        ));
    }

    /// Runner #2633: `args: ["hello", "big world"]` arrives split on spaces.
    #[test]
    fn regression_runner_2633_rejoin_recovers_container_args() {
        let from_runner = strings(&["\"hello\"", "\"big", "world\""]);
        assert_eq!(
            rejoin(&from_runner).unwrap(),
            strings(&["hello", "big world"])
        );
        // An argument with an escaped quote, as the runner writes it (`"` → `\"`).
        let from_runner = strings(&[r#""say""#, r#""\"hi\"""#]);
        assert_eq!(rejoin(&from_runner).unwrap(), strings(&["say", "\"hi\""]));
        // Script-step style arguments pass through unchanged.
        let plain = strings(&["-e", "/__w/_temp/0d1e.sh"]);
        assert_eq!(rejoin(&plain).unwrap(), plain);
        assert!(rejoin(&[]).unwrap().is_empty());
    }

    #[test]
    fn quote_leaves_safe_words_bare() {
        assert_eq!(quote("abc"), "abc");
        assert_eq!(quote("/__w/_temp/x.sh"), "/__w/_temp/x.sh");
        assert_eq!(quote("KEY=v@1:2,3%+"), "KEY=v@1:2,3%+");
        assert_eq!(quote("-e"), "-e");
    }

    #[test]
    fn quote_single_quotes_everything_else() {
        assert_eq!(quote(""), "''");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("$HOME"), "'$HOME'");
        assert_eq!(quote("`id`"), "'`id`'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote("a\nb"), "'a\nb'");
        assert_eq!(quote("~"), "'~'");
        assert_eq!(quote("*"), "'*'");
        assert_eq!(quote("héllo"), "'héllo'");
    }

    #[test]
    fn split_of_quote_round_trips() {
        let nasty = [
            "",
            " ",
            "plain",
            "two words",
            "  leading and trailing  ",
            "$HOME",
            "${HOME}",
            "$(rm -rf /)",
            "`id`",
            "\"double\"",
            "'single'",
            "it's",
            "'",
            "''",
            "\\",
            "\\\\",
            "back\\slash",
            "a\nb",
            "trailing newline\n",
            "\ttab",
            "semi;colon && pipe | amp & redirect > < ",
            "glob * ? [a-z]",
            "~user",
            "#comment",
            "unicode: héllo wörld 日本語 🚀",
            "mixed '\"$`\\\n all",
            "=",
            "--flag=value with space",
        ];
        for word in nasty {
            let quoted = quote(word);
            assert_eq!(
                split(&quoted).unwrap(),
                vec![word.to_owned()],
                "quote({word:?}) = {quoted:?} does not split back"
            );
        }
        // Several quoted words joined with spaces split back into the same list.
        let joined = nasty.iter().map(|w| quote(w)).collect::<Vec<_>>().join(" ");
        assert_eq!(split(&joined).unwrap(), strings(&nasty));
    }
}
