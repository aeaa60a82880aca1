//! `run_script_step`: run the script the runner wrote into `_temp` inside the job container.
//!
//! The step's environment (secrets included) travels on the exec's **stdin**, never in a file
//! and never in the exec URL (which API-server audit logs record): a fixed wrapper script reads
//! exactly as many bytes as we send (`head -c`), `eval`s the single-quoted `export` lines, and
//! `exec`s the step's entry point. Values with `$`, quotes, backticks, backslashes and newlines
//! arrive byte for byte. The wrapper records its pid so a cancelled step can be stopped.
//!
//! In copy mode the runner's `_temp` (the step script, file-command files) goes into the pod
//! before the step and `_temp/_runner_file_commands` comes back after it, so `GITHUB_OUTPUT`,
//! `GITHUB_ENV`, `GITHUB_PATH`, `GITHUB_STATE` and the step summary work.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context as _;
use tracing::{debug, warn};

use super::Outcome;
use crate::k8s::{Context, Undo};
use crate::protocol::{DataPlane, ScriptStepArgs, State};
use crate::shell;
use crate::workspace::{self, CopyOptions, Stdin};

/// The runner's directory for file-command files (`GITHUB_OUTPUT`, `GITHUB_ENV`...), in `_temp`.
pub const FILE_COMMANDS: &str = "_runner_file_commands";

use crate::k8s::names::JOB_CONTAINER;

/// Where the runner's `_work` is mounted in the job container.
pub const WORK_MOUNT: &str = "/__w";

/// The wrapper that runs a step. Positional parameters: `$1` pid file, `$2` byte count of the
/// environment on stdin, `$3` working directory (may be empty), `$4` directories to prepend to
/// `PATH` (may be empty), `$5` how many `NAME=value` pairs the environment script left in
/// `runner_k8s_hook_pair_<i>` for `env` (names sh cannot export), then the command. It never
/// interpolates user input into its own text.
pub const STEP_WRAPPER: &str = r#"set -e
mkdir -p "${1%/*}"
echo "$$" > "$1"
runner_k8s_hook_env=$(head -c "$2")
eval "$runner_k8s_hook_env"
unset runner_k8s_hook_env
if [ -n "$4" ]; then PATH="$4${PATH:+:$PATH}"; export PATH; fi
if [ -n "$3" ]; then cd "$3"; fi
runner_k8s_hook_pairs=$5
shift 5
if [ "$runner_k8s_hook_pairs" -gt 0 ]; then
  i=0
  while [ "$i" -lt "$runner_k8s_hook_pairs" ]; do
    eval "set -- \"\$runner_k8s_hook_pair_$i\" \"\$@\""
    unset "runner_k8s_hook_pair_$i"
    i=$((i + 1))
  done
  set -- env "$@"
fi
exec "$@" </dev/null"#;

/// Run `run_script_step`.
///
/// # Errors
/// When the step could not be run or its end was not observed. A step that ran and exited
/// non-zero is not an error: it is [`Outcome::StepExited`].
pub async fn run(args: ScriptStepArgs, state: State, context: &Context) -> anyhow::Result<Outcome> {
    let entry_point = args
        .entry_point
        .as_deref()
        .filter(|e| !e.is_empty())
        .context("the `run_script_step` request has no `entryPoint`")?;
    let entry_point_args = shell::rejoin(&args.entry_point_args)
        .context("failed to read the step's `entryPointArgs`")?;
    let pod = state.job_pod.as_str();
    let exec = context.exec_in(pod, JOB_CONTAINER);
    // State written by the TypeScript hook has no data plane; copying is correct in both.
    let copy_mode = state.data_plane != Some(DataPlane::Volume);
    let runner_temp = runner_temp(context)?;

    if copy_mode {
        let report = workspace::copy_in(
            &exec,
            &runner_temp,
            &format!("{WORK_MOUNT}/_temp"),
            &CopyOptions::default(),
        )
        .await
        .with_context(|| format!("failed to copy the runner's `_temp` into pod `{pod}`"))?;
        debug!(%report, "_temp copied in");
    }

    let pid_file = format!(
        "{WORK_MOUNT}/_temp/_runner_k8s_hook/step-{}.pid",
        crate::k8s::names::random_suffix()
    );
    let command = StepCommand::new(
        &args.environment_variables,
        args.working_directory.as_deref().unwrap_or(""),
        &args.prepend_path.joined().unwrap_or_default(),
        &pid_file,
        entry_point,
        &entry_point_args,
    );
    let undo = Undo::StopProcess {
        pod: pod.to_owned(),
        container: JOB_CONTAINER.to_owned(),
        pid_file: pid_file.clone(),
    };
    context.undo.push(undo.clone());
    debug!(pod, entry_point, "running script step");
    let mut stdout = tokio::io::stdout();
    let mut stderr = tokio::io::stderr();
    let stdin = Stdin {
        len: command.stdin.len() as u64,
        reader: Box::new(command.stdin.as_slice()),
    };
    let result = exec
        .exec(command.argv, Some(stdin), &mut stdout, &mut stderr)
        .await
        .with_context(|| format!("failed to run the step in pod `{pod}`"));
    context.undo.forget(&undo);

    if copy_mode {
        // Bring file commands back even when the step failed: the runner still processes what
        // a failed step wrote (outputs, summary).
        let copied = workspace::copy_out(
            &exec,
            &format!("{WORK_MOUNT}/_temp/{FILE_COMMANDS}"),
            &runner_temp.join(FILE_COMMANDS),
            &CopyOptions::default(),
        )
        .await
        .with_context(|| format!("failed to copy `{FILE_COMMANDS}` back from pod `{pod}`"));
        match (&result, copied) {
            (Ok(_), Err(e)) => return Err(e),
            (Err(_), Err(e)) => warn!(error = %format!("{e:#}"), "file commands not copied back"),
            (_, Ok(report)) => debug!(%report, "file commands copied back"),
        }
    }

    match result? {
        0 => Ok(Outcome::Success(None)),
        code => Ok(Outcome::StepExited(exit_status_byte(code))),
    }
}

/// The runner's `_temp` on the runner host (`RUNNER_TEMP`).
fn runner_temp(context: &Context) -> anyhow::Result<PathBuf> {
    context.config.runner_temp.clone().context(
        "environment variable `RUNNER_TEMP` is not set: the hook must be started by the runner",
    )
}

/// A process exit code as a byte: codes 1..=255 pass through; anything outside (a negative or
/// wrapped code) becomes 1 so a failure never looks like success.
pub fn exit_status_byte(code: i32) -> u8 {
    match u8::try_from(code) {
        Ok(0) | Err(_) => 1,
        Ok(b) => b,
    }
}

/// The exec argv and stdin for one step.
#[derive(Debug)]
pub struct StepCommand {
    /// `sh -c <wrapper> sh <pid file> <n> <wd> <path> <pairs> <entry point> <args>...`
    pub argv: Vec<String>,
    /// The environment as `export` lines (contains secrets: never log it).
    pub stdin: Vec<u8>,
}

impl StepCommand {
    /// Build the command for a step.
    pub fn new(
        env: &BTreeMap<String, String>,
        working_directory: &str,
        prepend_path: &str,
        pid_file: &str,
        entry_point: &str,
        entry_point_args: &[String],
    ) -> StepCommand {
        let (stdin, pairs) = env_script(env);
        let mut argv = vec![
            "sh".to_owned(),
            "-c".to_owned(),
            STEP_WRAPPER.to_owned(),
            "sh".to_owned(),
            pid_file.to_owned(),
            stdin.len().to_string(),
            working_directory.to_owned(),
            prepend_path.to_owned(),
            pairs.to_string(),
        ];
        argv.push(entry_point.to_owned());
        argv.extend(entry_point_args.iter().cloned());
        StepCommand {
            argv,
            stdin: stdin.into_bytes(),
        }
    }
}

/// The shell text that sets `env`, and how many `NAME=value` pairs it left for `env`.
///
/// Names sh cannot export (e.g. `my-var`; Docker's `-e` accepts them) are held as pairs in
/// shell variables and handed to `env` by the wrapper, so their values do not travel in the
/// exec request either.
fn env_script(env: &BTreeMap<String, String>) -> (String, usize) {
    let mut script = String::new();
    let mut pairs = 0;
    for (key, value) in env {
        if is_shell_name(key) {
            script.push_str(&format!("export {key}={}\n", shell::quote(value)));
        } else if !key.is_empty() && !key.contains('=') && !key.contains('\0') {
            script.push_str(&format!(
                "runner_k8s_hook_pair_{pairs}={}\n",
                shell::quote(&format!("{key}={value}"))
            ));
            pairs += 1;
        } else {
            warn!(
                key,
                "environment variable name cannot be set in a process; skipped"
            );
        }
    }
    (script, pairs)
}

/// A name POSIX sh can `export`: letters, digits and `_`, not starting with a digit.
fn is_shell_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b == b'_' || b.is_ascii_alphabetic())
        && bytes.all(|b| b == b'_' || b.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::process::{Command, Stdio};

    /// Run the wrapper with a local `sh`, as the container would.
    fn run_locally(command: &StepCommand) -> (i32, String) {
        let mut child = Command::new(&command.argv[0])
            .args(&command.argv[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(&command.stdin)
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8(out.stdout).unwrap(),
        )
    }

    #[test]
    fn env_values_arrive_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let nasty = "a $HOME `id` $(id) \"dq\" 'sq' \\ back\\slash\nnew line\n\ttab ü € 🦀 ";
        let env = BTreeMap::from([
            ("NASTY".to_owned(), nasty.to_owned()),
            ("EMPTY".to_owned(), String::new()),
            ("my-var".to_owned(), "dash $x".to_owned()),
        ]);
        let pid_file = dir.path().join("p/step.pid");
        let command = StepCommand::new(
            &env,
            dir.path().to_str().unwrap(),
            "/opt/a/bin:/opt/b/bin",
            pid_file.to_str().unwrap(),
            "sh",
            &[
                "-c".to_owned(),
                r#"printf '%s|%s|%s|%s' "$NASTY" "${EMPTY-unset}" "$PWD" "${PATH%%:*}""#.to_owned(),
            ],
        );
        assert!(
            !command
                .argv
                .iter()
                .any(|a| a.contains("back\\slash") || a.contains("dash")),
            "an env value leaked into the exec argv: {:?}",
            command.argv
        );
        let (code, out) = run_locally(&command);
        assert_eq!(code, 0);
        assert_eq!(
            out,
            format!(
                "{nasty}||{}|/opt/a/bin",
                dir.path().canonicalize().unwrap().display()
            )
        );
        assert!(pid_file.exists(), "the wrapper records its pid");
    }

    #[test]
    fn names_sh_cannot_export_reach_the_entry_point() {
        let dir = tempfile::tempdir().unwrap();
        let env = BTreeMap::from([
            ("my-var".to_owned(), "dash $x\nline2".to_owned()),
            ("other.var".to_owned(), "dot".to_owned()),
            ("PLAIN".to_owned(), "p".to_owned()),
        ]);
        let command = StepCommand::new(
            &env,
            "",
            "",
            dir.path().join("x.pid").to_str().unwrap(),
            "env",
            &[],
        );
        let (code, out) = run_locally(&command);
        assert_eq!(code, 0);
        // (Shells drop such names from their own children's environment, so `env` itself must
        // be the entry point's parent: it is.)
        assert!(out.contains("my-var=dash $x\nline2\n"), "{out}");
        assert!(out.contains("other.var=dot\n"), "{out}");
        assert!(out.contains("PLAIN=p\n"), "{out}");
        assert!(
            !out.contains("runner_k8s_hook_"),
            "helper variables leak: {out}"
        );
    }

    #[test]
    fn exit_code_and_stdin_of_the_step() {
        let dir = tempfile::tempdir().unwrap();
        let command = StepCommand::new(
            &BTreeMap::new(),
            "",
            "",
            dir.path().join("x.pid").to_str().unwrap(),
            "sh",
            &["-c".to_owned(), "cat; exit 3".to_owned()],
        );
        // The step's stdin is /dev/null, so `cat` ends at once instead of hanging.
        assert_eq!(run_locally(&command), (3, String::new()));
    }

    #[test]
    fn exit_codes_map_to_bytes_that_never_read_as_success() {
        assert_eq!(exit_status_byte(3), 3);
        assert_eq!(exit_status_byte(255), 255);
        assert_eq!(exit_status_byte(256), 1);
        assert_eq!(exit_status_byte(-1), 1);
    }
}
