//! The extra `buildah build` and `buildah push` options an operator may add
//! (`ACTIONS_RUNNER_CONTAINER_HOOKS_K8S_BUILD_OPTIONS` / `..._PUSH_OPTIONS`), checked against an
//! allow-list when the configuration is read, so a bad option fails before any pod exists.
//!
//! Strimzi does the same for its Buildah builds (`DockerOutput.java`: build and push options are
//! validated against a fixed list, and anything else fails validation). Our list is stricter in
//! one way: credentials (`--creds`, `--authfile`) and certificates (`--cert-dir`) are refused,
//! because pod specs are readable by anyone who can `get pods`, and because the hook already
//! provides both from the registry Secret and `..._REGISTRY_CA`. Options that would undo the
//! build pod's security profile or the script's own bookkeeping (`--isolation`,
//! `--storage-driver`, `--root`, `--userns*`, `--network`, `--volume`, `--device`,
//! `--security-opt`, `--cap-add`, `--file`, `--tag`, `--digestfile`, `--logfile`, `--iidfile`,
//! `--target`, `--build-arg`) are refused too.
//!
//! Every accepted option is returned in one canonical word, `--name` or `--name=value`, with
//! its value checked (a number, a duration, a boolean or a word from a fixed set, or a registry
//! repository), so a value can never be another option in disguise (`--retry --creds=...`).
//! This module is pure.

use std::fmt;

/// What value an option takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Value {
    /// A boolean flag: `--name` or `--name=true|false` (pflag takes no separate word).
    Bool,
    /// An optional word from a set: `--name` or `--name=<word>` (pflag's `NoOptDefVal`).
    OptionalOneOf(&'static [&'static str]),
    /// A required word from a set: `--name=<word>` or `--name <word>`.
    OneOf(&'static [&'static str]),
    /// A whole number: `--name=<n>` or `--name <n>`.
    Number,
    /// A Go duration such as `2s`, `1m30s` or `500ms`.
    Duration,
    /// A registry repository such as `registry.example:5000/cache`.
    Repository,
}

/// One allowed option, and why it is safe to let an operator set it.
#[derive(Debug, Clone, Copy)]
struct Allowed {
    name: &'static str,
    value: Value,
}

const BOOLS: &[&str] = &["true", "false"];

/// Options accepted in `..._BUILD_OPTIONS`. Each only changes how the image is built or fetched,
/// never where the build runs, who it runs as, what it can reach on the node, or which
/// credentials it uses:
/// - `--tls-verify`: for a registry on plain HTTP or with a private CA not given by
///   `..._REGISTRY_CA` (pulls of `FROM` images and cache images);
/// - `--retry`, `--retry-delay`: retries of pulls on flaky networks;
/// - `--format`: `oci` or `docker` (the Docker format keeps `HEALTHCHECK` and `ONBUILD`);
/// - `--layers`, `--cache-from`, `--cache-to`, `--cache-ttl`: layer caching in a registry
///   repository, which pays off for expensive `RUN` steps;
/// - `--pull`: the base image pull policy;
/// - `--timestamp`: a fixed creation time, for reproducible images;
/// - `--squash`: one layer for the new content.
const BUILD: &[Allowed] = &[
    Allowed {
        name: "--tls-verify",
        value: Value::Bool,
    },
    Allowed {
        name: "--retry",
        value: Value::Number,
    },
    Allowed {
        name: "--retry-delay",
        value: Value::Duration,
    },
    Allowed {
        name: "--format",
        value: Value::OneOf(&["oci", "docker"]),
    },
    Allowed {
        name: "--layers",
        value: Value::Bool,
    },
    Allowed {
        name: "--cache-from",
        value: Value::Repository,
    },
    Allowed {
        name: "--cache-to",
        value: Value::Repository,
    },
    Allowed {
        name: "--cache-ttl",
        value: Value::Duration,
    },
    Allowed {
        name: "--pull",
        value: Value::OptionalOneOf(&["true", "false", "always", "missing", "never", "newer"]),
    },
    Allowed {
        name: "--timestamp",
        value: Value::Number,
    },
    Allowed {
        name: "--squash",
        value: Value::Bool,
    },
];

/// Options accepted in `..._PUSH_OPTIONS`, each only about how the image is sent:
/// - `--tls-verify`: as for builds;
/// - `--retry`, `--retry-delay`: retries of the upload;
/// - `--format`: the manifest type in the registry (`oci` or `v2s2`, Docker's);
/// - `--compression-format`, `--compression-level`, `--disable-compression`: layer
///   compression (`zstd` pushes faster and smaller where every puller supports it);
/// - `--remove-signatures`: do not copy signatures;
/// - `--quiet`: no progress lines in the build log.
const PUSH: &[Allowed] = &[
    Allowed {
        name: "--tls-verify",
        value: Value::Bool,
    },
    Allowed {
        name: "--retry",
        value: Value::Number,
    },
    Allowed {
        name: "--retry-delay",
        value: Value::Duration,
    },
    Allowed {
        name: "--format",
        value: Value::OneOf(&["oci", "v2s2"]),
    },
    Allowed {
        name: "--compression-format",
        value: Value::OneOf(&["gzip", "zstd", "zstd:chunked"]),
    },
    Allowed {
        name: "--compression-level",
        value: Value::Number,
    },
    Allowed {
        name: "--disable-compression",
        value: Value::Bool,
    },
    Allowed {
        name: "--remove-signatures",
        value: Value::Bool,
    },
    Allowed {
        name: "--quiet",
        value: Value::Bool,
    },
];

/// Which command the options are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// `buildah build`.
    Build,
    /// `buildah push`.
    Push,
}

impl Stage {
    fn allowed(self) -> &'static [Allowed] {
        match self {
            Stage::Build => BUILD,
            Stage::Push => PUSH,
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::Build => "build",
            Stage::Push => "push",
        })
    }
}

/// Why a list of options was refused. Messages never repeat the whole text: a refused
/// `--creds=user:password` must not end up in a log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionError {
    /// The text has an unbalanced quote or a trailing backslash.
    #[error("the options cannot be split into words like a shell would: {reason}")]
    Split {
        /// What is wrong, without the text.
        reason: &'static str,
    },
    /// A word that is not an option.
    #[error("`{word}` is not an option: every word must be an option like `--retry=3`")]
    NotAnOption {
        /// The word.
        word: String,
    },
    /// An option outside the allow-list.
    #[error("`{option}` is not an allowed {stage} option; allowed: {}", allowed_list(*.stage))]
    NotAllowed {
        /// The option's name (without its value).
        option: String,
        /// Build or push.
        stage: Stage,
    },
    /// An option that needs a value and has none.
    #[error("`{option}` needs a value: {expected}")]
    MissingValue {
        /// The option.
        option: &'static str,
        /// The accepted form.
        expected: String,
    },
    /// An option with a value it does not accept.
    #[error("`{option}` does not accept `{value}`: expected {expected}")]
    InvalidValue {
        /// The option.
        option: &'static str,
        /// What was given.
        value: String,
        /// The accepted form.
        expected: String,
    },
}

/// The allowed options of `stage`, for messages and docs: `` `--tls-verify[=BOOL]`, ...``.
pub fn allowed_list(stage: Stage) -> String {
    stage
        .allowed()
        .iter()
        .map(|a| format!("`{}`", usage(a)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn usage(allowed: &Allowed) -> String {
    let name = allowed.name;
    match allowed.value {
        Value::Bool => format!("{name}[=true|false]"),
        Value::OptionalOneOf(set) => format!("{name}[={}]", set.join("|")),
        Value::OneOf(set) => format!("{name}={}", set.join("|")),
        Value::Number => format!("{name}=N"),
        Value::Duration => format!("{name}=DURATION"),
        Value::Repository => format!("{name}=REPOSITORY"),
    }
}

fn expected(value: Value) -> String {
    match value {
        Value::Bool => "`true` or `false`".to_owned(),
        Value::OptionalOneOf(set) | Value::OneOf(set) => {
            let words: Vec<String> = set.iter().map(|w| format!("`{w}`")).collect();
            format!("one of {}", words.join(", "))
        }
        Value::Number => "a whole number, e.g. `3`".to_owned(),
        Value::Duration => "a duration such as `2s`, `500ms` or `1m30s`".to_owned(),
        Value::Repository => {
            "a registry repository such as `registry.example:5000/cache`".to_owned()
        }
    }
}

/// Split `text` like a shell ([`crate::shell::split`]) and check every option against the
/// allow-list of `stage`. Returns the options as canonical words (`--name` or `--name=value`),
/// ready to be passed to `buildah` as separate arguments.
///
/// # Errors
/// [`OptionError`] for the first word that is not an allowed option with a valid value.
pub fn parse(stage: Stage, text: &str) -> Result<Vec<String>, OptionError> {
    let words = crate::shell::split(text).map_err(|e| OptionError::Split {
        reason: match e {
            crate::shell::ShellError::UnterminatedQuote { .. } => "a quote is never closed",
            crate::shell::ShellError::TrailingBackslash { .. } => {
                "it ends with a backslash that escapes nothing"
            }
        },
    })?;
    let mut out = Vec::new();
    let mut words = words.into_iter().peekable();
    while let Some(word) = words.next() {
        let Some(body) = word.strip_prefix("--") else {
            // Short options (`-q`) are not accepted either: one spelling per option keeps the
            // allow-list exact.
            let shown = if word.starts_with('-') {
                word.split('=').next().unwrap_or("").to_owned()
            } else {
                word.clone()
            };
            return Err(if word.starts_with('-') {
                OptionError::NotAllowed {
                    option: shown,
                    stage,
                }
            } else {
                OptionError::NotAnOption { word: shown }
            });
        };
        let (name, inline) = match body.split_once('=') {
            Some((name, value)) => (format!("--{name}"), Some(value.to_owned())),
            None => (word.clone(), None),
        };
        let Some(allowed) = stage.allowed().iter().find(|a| a.name == name) else {
            return Err(OptionError::NotAllowed {
                option: name,
                stage,
            });
        };
        let takes_next_word = matches!(
            allowed.value,
            Value::OneOf(_) | Value::Number | Value::Duration | Value::Repository
        );
        let value = match inline {
            Some(v) => Some(v),
            None if takes_next_word => match words.next_if(|w| !w.starts_with("--")) {
                Some(v) => Some(v),
                None => {
                    return Err(OptionError::MissingValue {
                        option: allowed.name,
                        expected: expected(allowed.value),
                    });
                }
            },
            None => None,
        };
        match value {
            None => out.push(allowed.name.to_owned()),
            Some(value) => {
                check_value(allowed, &value)?;
                out.push(format!("{}={value}", allowed.name));
            }
        }
    }
    Ok(out)
}

fn check_value(allowed: &Allowed, value: &str) -> Result<(), OptionError> {
    let ok = match allowed.value {
        Value::Bool => BOOLS.contains(&value),
        Value::OptionalOneOf(set) | Value::OneOf(set) => set.contains(&value),
        Value::Number => {
            !value.is_empty() && value.len() <= 10 && value.bytes().all(|b| b.is_ascii_digit())
        }
        Value::Duration => is_go_duration(value),
        Value::Repository => {
            super::reference::RegistryHost::parse(value).is_ok_and(|host| host.path().is_some())
        }
    };
    if ok {
        Ok(())
    } else {
        Err(OptionError::InvalidValue {
            option: allowed.name,
            value: value.to_owned(),
            expected: expected(allowed.value),
        })
    }
}

/// A Go `time.ParseDuration` string without sign: one or more `<number><unit>` with units
/// `ns`, `us`, `µs`, `ms`, `s`, `m`, `h`.
fn is_go_duration(value: &str) -> bool {
    let mut rest = value;
    if rest.is_empty() {
        return false;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number = &rest[..digits];
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return false;
        }
        rest = &rest[digits..];
        let unit = ["ns", "us", "µs", "ms", "s", "m", "h"]
            .into_iter()
            .find(|u| rest.starts_with(u));
        match unit {
            Some(u) => rest = &rest[u.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(stage: Stage, text: &str) -> Vec<String> {
        parse(stage, text).unwrap_or_else(|e| panic!("`{text}`: {e}"))
    }

    #[test]
    fn allowed_options_come_back_canonical() {
        assert_eq!(
            ok(
                Stage::Build,
                "--tls-verify=false --retry 5 --retry-delay=3s --format docker --layers --pull=never"
            ),
            [
                "--tls-verify=false",
                "--retry=5",
                "--retry-delay=3s",
                "--format=docker",
                "--layers",
                "--pull=never",
            ]
        );
        assert_eq!(
            ok(
                Stage::Build,
                "--cache-from registry.ns.svc:5000/cache --cache-to=registry.ns.svc:5000/cache --cache-ttl 168h"
            ),
            [
                "--cache-from=registry.ns.svc:5000/cache",
                "--cache-to=registry.ns.svc:5000/cache",
                "--cache-ttl=168h",
            ]
        );
        assert_eq!(
            ok(
                Stage::Push,
                "--format=v2s2 --compression-format zstd --compression-level=3 --quiet"
            ),
            [
                "--format=v2s2",
                "--compression-format=zstd",
                "--compression-level=3",
                "--quiet",
            ]
        );
        assert!(ok(Stage::Push, "  ").is_empty());
        // `--pull` takes no separate word (pflag NoOptDefVal), so the next option stays one.
        assert_eq!(ok(Stage::Build, "--pull --layers"), ["--pull", "--layers"]);
    }

    #[test]
    fn credentials_and_sandbox_options_are_refused_by_name_only() {
        for (stage, text, option) in [
            (Stage::Build, "--creds=user:s3cret", "--creds"),
            (Stage::Push, "--creds user:s3cret", "--creds"),
            (Stage::Push, "--authfile=/x", "--authfile"),
            (Stage::Push, "--cert-dir /x", "--cert-dir"),
            (Stage::Build, "--storage-driver=vfs", "--storage-driver"),
            (Stage::Build, "--isolation oci", "--isolation"),
            (Stage::Build, "--network=host", "--network"),
            (Stage::Build, "--volume /:/host", "--volume"),
            (Stage::Build, "--target=dev", "--target"),
            (Stage::Build, "--build-arg=A=1", "--build-arg"),
            (Stage::Push, "--digestfile=/tmp/x", "--digestfile"),
            (Stage::Push, "--layers", "--layers"),
            (Stage::Build, "-q", "-q"),
            (
                Stage::Build,
                "--retry=3 --security-opt=seccomp=unconfined",
                "--security-opt",
            ),
        ] {
            let err = parse(stage, text).unwrap_err();
            assert_eq!(
                err,
                OptionError::NotAllowed {
                    option: option.to_owned(),
                    stage
                },
                "{text}"
            );
            let message = err.to_string();
            assert!(!message.contains("s3cret"), "{message}");
            assert!(
                message.contains("allowed: `--tls-verify[=true|false]`"),
                "{message}"
            );
        }
    }

    #[test]
    fn values_are_checked_so_no_option_hides_in_a_value() {
        let err = parse(Stage::Build, "--retry --creds=u:p").unwrap_err();
        assert!(
            matches!(
                err,
                OptionError::MissingValue {
                    option: "--retry",
                    ..
                }
            ),
            "{err}"
        );
        let err = parse(Stage::Build, "--retry=three").unwrap_err();
        assert_eq!(
            err.to_string(),
            "`--retry` does not accept `three`: expected a whole number, e.g. `3`"
        );
        assert!(parse(Stage::Build, "--tls-verify=no").is_err());
        assert!(parse(Stage::Build, "--format=v2s2").is_err());
        assert!(parse(Stage::Push, "--format=docker").is_err());
        assert!(parse(Stage::Build, "--retry-delay=2").is_err());
        assert!(parse(Stage::Build, "--cache-to=cache").is_err());
        assert!(
            parse(Stage::Build, "--tls-verify false").is_err(),
            "a bool takes no separate word"
        );
        let err = parse(Stage::Build, "latest").unwrap_err();
        assert!(matches!(err, OptionError::NotAnOption { .. }));
        let err = parse(Stage::Build, "--retry='3").unwrap_err();
        assert_eq!(
            err.to_string(),
            "the options cannot be split into words like a shell would: a quote is never closed"
        );
    }

    #[test]
    fn go_durations() {
        for good in ["2s", "500ms", "1m30s", "1.5h", "10us", "3µs", "168h"] {
            assert!(is_go_duration(good), "{good}");
        }
        for bad in ["", "2", "s", "1x", "-1s", "1..5s", "1s2"] {
            assert!(!is_go_duration(bad), "{bad}");
        }
    }
}
