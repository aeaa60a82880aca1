//! The command line: the hook entry ([`hook`]), the `build` subcommand ([`build`]), the `check`
//! subcommand ([`check`]), and what the binary says about itself ([`version`], [`USAGE`]).
//!
//! Owns what a process is asked to do and how a run turns into output; the work itself is done
//! by the layers below ([`crate::hooks`], [`crate::k8s`], [`crate::image`]). Nothing in the
//! library imports this module; `main.rs` calls it.

pub mod build;
pub mod check;
pub mod hook;

/// What `runner-k8s-hook --version` prints (without the line break): the version, the commit it
/// was built from and the target, e.g.
/// `runner-k8s-hook 0.1.0 (commit 7c2bea8, x86_64-unknown-linux-musl)`. The commit and target
/// come from `build.rs` (docs/developer/releasing.md); the commit is `unknown` for a build
/// outside a git checkout without `RUNNER_K8S_HOOK_COMMIT`.
pub fn version() -> String {
    format!(
        "runner-k8s-hook {} (commit {}, {})",
        env!("CARGO_PKG_VERSION"),
        env!("RUNNER_K8S_HOOK_BUILD_COMMIT"),
        env!("RUNNER_K8S_HOOK_BUILD_TARGET"),
    )
}

/// What `runner-k8s-hook --help` prints.
pub const USAGE: &str = "\
runner-k8s-hook: a GitHub Actions runner container hook for Kubernetes

usage: runner-k8s-hook              run a hook command: the runner's request (JSON) on stdin;
                                    the runner starts it through dist/index.js or dist/index.sh
       runner-k8s-hook build ...    build a Dockerfile with rootless Buildah and push it
                                    (see `runner-k8s-hook build --help`)
       runner-k8s-hook check ...    check that jobs will work in this cluster and namespace
                                    (see `runner-k8s-hook check --help`)
       runner-k8s-hook --version    print the version, commit and target (also -V)
       runner-k8s-hook --help       print this help (also -h)

Configuration comes from environment variables (docs/user/configuration.md).
";

/// The argument `lexopt` could not read, as the subcommands name it in their usage errors: a
/// flag given a value (`--no-push=yes`), a stray word, or an argument that is not UTF-8.
pub(crate) fn unknown_argument(error: lexopt::Error) -> String {
    match error {
        lexopt::Error::UnexpectedValue { option, value } => {
            format!("{option}={}", value.to_string_lossy())
        }
        lexopt::Error::UnexpectedArgument(arg) | lexopt::Error::NonUnicodeValue(arg) => {
            arg.to_string_lossy().into_owned()
        }
        other => other.to_string(),
    }
}

/// What the process is asked to do, by its first argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// No argument: a hook command, as the runner starts it ([`hook`]).
    Hook,
    /// `build ...` ([`build`]).
    Build,
    /// `check ...` ([`check`]).
    Check,
    /// `--version` or `-V`.
    Version,
    /// `--help` or `-h`.
    Help,
}

/// The command the first argument names, or the argument itself when it names none (the hook
/// takes no arguments, so a mistyped flag fails instead of waiting for a request on stdin).
///
/// # Errors
/// The unknown argument, lossily as UTF-8.
pub fn command(first: Option<&std::ffi::OsStr>) -> Result<Command, String> {
    let Some(first) = first else {
        return Ok(Command::Hook);
    };
    match first.to_str() {
        Some("build") => Ok(Command::Build),
        Some("check") => Ok(Command::Check),
        Some("--version" | "-V") => Ok(Command::Version),
        Some("--help" | "-h") => Ok(Command::Help),
        _ => Err(first.to_string_lossy().into_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn the_first_argument_names_the_command() {
        assert_eq!(command(None), Ok(Command::Hook));
        assert_eq!(command(Some(OsStr::new("build"))), Ok(Command::Build));
        assert_eq!(command(Some(OsStr::new("check"))), Ok(Command::Check));
        assert_eq!(command(Some(OsStr::new("--version"))), Ok(Command::Version));
        assert_eq!(command(Some(OsStr::new("-V"))), Ok(Command::Version));
        assert_eq!(command(Some(OsStr::new("--help"))), Ok(Command::Help));
        assert_eq!(command(Some(OsStr::new("-h"))), Ok(Command::Help));
        assert_eq!(
            command(Some(OsStr::new("--verison"))),
            Err("--verison".to_owned())
        );
        assert_eq!(command(Some(OsStr::new("-v"))), Err("-v".to_owned()));
    }
}
