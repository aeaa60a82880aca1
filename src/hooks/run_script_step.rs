//! `run_script_step`: run the script the runner wrote into `_temp` inside the job container.
//!
//! The step's environment (secrets included) travels on the exec's **stdin**, never in a file
//! and never in the exec URL (which API-server audit logs record): a fixed wrapper script reads
//! exactly as many bytes as we send (`head -c`), `eval`s the single-quoted `export` lines, and
//! `exec`s the step's entry point. Values with `$`, quotes, backticks, backslashes and newlines
//! arrive byte for byte. The wrapper records the step's pid so a cancelled step can be stopped.
//!
//! The step does not depend on the exec connection: the wrapper starts it in the background with
//! its stdout, stderr and exit status in files of a step directory in the pod, then follows those
//! files on the exec's own stdout and stderr and ends with the step's exit code. When the
//! connection breaks (an API server restart, a network hiccup, a connection that stops
//! answering), the step keeps running; the hook waits for the API server and re-attaches a
//! follower from the byte offsets it has already passed on, so every byte reaches the runner
//! once and the step's real exit code ends the command. The files live in the job pod's
//! `_temp/_runner_k8s_hook/` until the next step starts (or the job pod goes).
//!
//! In copy mode the runner's `_temp` (the step script, file-command files) goes into the pod
//! before the step and `_temp/_runner_file_commands` comes back after it, so `GITHUB_OUTPUT`,
//! `GITHUB_ENV`, `GITHUB_PATH`, `GITHUB_STATE` and the step summary work.
//!
//! Owns the wrapper and follower scripts and the re-attach policy; the exec protocol is
//! [`crate::k8s::exec`]'s.

use std::collections::BTreeMap;
use std::path::PathBuf;

use std::pin::Pin;
use std::task::Poll;

use anyhow::Context as _;
use tokio::io::AsyncWrite;
use tracing::{debug, info, warn};

use super::Outcome;
use super::step::{self, FILE_COMMANDS, WORK_MOUNT};
use crate::k8s::exec::PodExec;
use crate::k8s::{Session, Undo, retry};
use crate::protocol::{DataPlane, ScriptStepArgs, State};
use crate::shell;
use crate::transfer::{self, CopyOptions, Stdin};

use crate::spec::names::JOB_CONTAINER;

/// Where step directories live in the job container.
pub const STEP_DIRS: &str = "/__w/_temp/_runner_k8s_hook";

/// The start of the wrapper that runs a step. Positional parameters: `$1` the step directory, `$2`
/// byte count of the environment on stdin, `$3` working directory (may be empty), `$4`
/// directories to prepend to `PATH` (may be empty), `$5` how many `NAME=value` pairs the
/// environment script left in `runner_k8s_hook_pair_<i>` for `env` (names sh cannot export),
/// then the command. It never interpolates user input into its own text, and its own variables
/// carry the `runner_k8s_hook_` prefix so that a step variable (`d`, `i`...) cannot change them.
///
/// It starts the step only when the whole environment arrived (the script ends with a sentinel:
/// a connection that broke while stdin was sent must not start a step without its secrets) and
/// only once (`mkdir` of the step directory is the lock; a second start follows the first).
/// The step runs in the background, its output and exit status in the step directory (mode
/// 0700), its pid in `pid`; the wrapper goes on as the [`FOLLOW`]er from offset 0.
const START: &str = r#"set -e
runner_k8s_hook_d=$1
runner_k8s_hook_env=$(head -c "$2")
eval "$runner_k8s_hook_env"
unset runner_k8s_hook_env
if [ "${runner_k8s_hook_env_complete-}" != 1 ]; then
  echo "runner-k8s-hook: the step's environment did not arrive in full; the step was not started" >&2
  exit 254
fi
unset runner_k8s_hook_env_complete
if [ -n "$4" ]; then PATH="$4${PATH:+:$PATH}"; export PATH; fi
if [ -n "$3" ]; then cd "$3"; fi
runner_k8s_hook_pairs=$5
shift 5
if [ "$runner_k8s_hook_pairs" -gt 0 ]; then
  runner_k8s_hook_i=0
  while [ "$runner_k8s_hook_i" -lt "$runner_k8s_hook_pairs" ]; do
    eval "set -- \"\$runner_k8s_hook_pair_$runner_k8s_hook_i\" \"\$@\""
    unset "runner_k8s_hook_pair_$runner_k8s_hook_i"
    runner_k8s_hook_i=$((runner_k8s_hook_i + 1))
  done
  set -- env "$@"
fi
# Finished steps' directories go now: never by a follower, since an earlier follower of a step
# whose connection broke may still be reading them.
for runner_k8s_hook_old in "${runner_k8s_hook_d%/*}"/step-*; do
  if [ "$runner_k8s_hook_old" != "$runner_k8s_hook_d" ] && [ -f "$runner_k8s_hook_old/exit" ]; then
    rm -rf "$runner_k8s_hook_old"
  fi
done
mkdir -p "${runner_k8s_hook_d%/*}"
set +e
if (umask 077 && mkdir "$runner_k8s_hook_d") 2>/dev/null; then
  : > "$runner_k8s_hook_d/out"
  : > "$runner_k8s_hook_d/err"
  ("$@" >"$runner_k8s_hook_d/out" 2>"$runner_k8s_hook_d/err"; echo "$?" > "$runner_k8s_hook_d/exit.new"; mv "$runner_k8s_hook_d/exit.new" "$runner_k8s_hook_d/exit") </dev/null >/dev/null 2>&1 &
  echo "$!" > "$runner_k8s_hook_d/pid"
fi
runner_k8s_hook_o=0
runner_k8s_hook_e=0
"#;

/// Follow a step's files from byte offsets `runner_k8s_hook_o` (stdout) and `runner_k8s_hook_e`
/// (stderr) until it has ended, then exit with its exit code. Exit 255 with a message when the
/// step directory is gone or the step was stopped (cancelled) before it recorded a status. Uses
/// `stat -c %s` (or `wc -c`), `tail -c`, `head -c` and a fractional `sleep`, which BusyBox and
/// GNU both have.
const FOLLOW: &str = r#"runner_k8s_hook_size() { stat -c %s "$1" 2>/dev/null || wc -c < "$1"; }
[ -f "$runner_k8s_hook_d/pid" ] || [ -f "$runner_k8s_hook_d/exit" ] || { echo "runner-k8s-hook: the step's state in $runner_k8s_hook_d is gone" >&2; exit 255; }
runner_k8s_hook_n=0
while :; do
  if [ -f "$runner_k8s_hook_d/exit" ]; then runner_k8s_hook_last=1; else runner_k8s_hook_last=0; fi
  if [ -f "$runner_k8s_hook_d/out" ]; then
    runner_k8s_hook_s=$(($(runner_k8s_hook_size "$runner_k8s_hook_d/out")))
    if [ "$runner_k8s_hook_s" -gt "$runner_k8s_hook_o" ]; then
      tail -c "+$((runner_k8s_hook_o + 1))" "$runner_k8s_hook_d/out" | head -c "$((runner_k8s_hook_s - runner_k8s_hook_o))"
      runner_k8s_hook_o=$runner_k8s_hook_s
      runner_k8s_hook_n=0
    fi
    runner_k8s_hook_s=$(($(runner_k8s_hook_size "$runner_k8s_hook_d/err")))
    if [ "$runner_k8s_hook_s" -gt "$runner_k8s_hook_e" ]; then
      tail -c "+$((runner_k8s_hook_e + 1))" "$runner_k8s_hook_d/err" | head -c "$((runner_k8s_hook_s - runner_k8s_hook_e))" >&2
      runner_k8s_hook_e=$runner_k8s_hook_s
      runner_k8s_hook_n=0
    fi
  fi
  if [ "$runner_k8s_hook_last" = 1 ]; then exit "$(cat "$runner_k8s_hook_d/exit")"; fi
  if ! kill -0 "$(cat "$runner_k8s_hook_d/pid" 2>/dev/null)" 2>/dev/null && [ ! -f "$runner_k8s_hook_d/exit" ]; then
    echo "runner-k8s-hook: the step was stopped before it ended" >&2
    exit 255
  fi
  runner_k8s_hook_n=$((runner_k8s_hook_n + 1))
  if [ "$runner_k8s_hook_n" -lt 50 ]; then sleep 0.05; else sleep 0.2; fi
done"#;

/// The wrapper that starts a step and follows it.
pub fn step_wrapper() -> String {
    [START, FOLLOW].concat()
}

/// The script that re-attaches to a running step: `$1` step directory, `$2` and `$3` the stdout
/// and stderr bytes already passed on.
pub fn reattach_script() -> String {
    [
        "runner_k8s_hook_d=$1\nrunner_k8s_hook_o=$2\nrunner_k8s_hook_e=$3\n",
        FOLLOW,
    ]
    .concat()
}

/// Run `run_script_step`.
///
/// # Errors
/// When the step could not be run or its end was not observed. A step that ran and exited
/// non-zero is not an error: it is [`Outcome::StepExited`].
pub async fn run(args: ScriptStepArgs, state: State, session: &Session) -> anyhow::Result<Outcome> {
    let entry_point = args
        .entry_point
        .as_deref()
        .filter(|e| !e.is_empty())
        .context("the `run_script_step` request has no `entryPoint`")?;
    let entry_point_args = shell::rejoin(&args.entry_point_args)
        .context("failed to read the step's `entryPointArgs`")?;
    let pod = state.job_pod.as_str();
    let exec = session.exec_in(pod, JOB_CONTAINER);
    // State written by the TypeScript hook has no data plane; copying is correct in both.
    let copy_mode = state.data_plane != Some(DataPlane::Volume);
    let runner_temp = runner_temp(session)?;

    if copy_mode {
        let report = transfer::copy_in(
            &exec,
            &runner_temp,
            &format!("{WORK_MOUNT}/_temp"),
            &CopyOptions::default(),
        )
        .await
        .with_context(|| format!("failed to copy the runner's `_temp` into pod `{pod}`"))?;
        debug!(%report, "_temp copied in");
    }

    let step_dir = format!("{STEP_DIRS}/step-{}", crate::spec::names::random_suffix());
    let command = StepCommand::new(
        &args.environment_variables,
        args.working_directory.as_deref().unwrap_or(""),
        &args.prepend_path.joined().unwrap_or_default(),
        &step_dir,
        entry_point,
        &entry_point_args,
    );
    let undo = Undo::StopProcess {
        pod: pod.to_owned(),
        container: JOB_CONTAINER.to_owned(),
        pid_file: format!("{step_dir}/pid"),
    };
    session.undo.push(undo.clone());
    debug!(pod, entry_point, "running script step");
    let result = run_attached(&exec, command, &step_dir)
        .await
        .with_context(|| format!("failed to run the step in pod `{pod}`"));
    if result.is_ok() {
        session.undo.forget(&undo);
    } else {
        // The step may still run: stop it (best effort, the API may be away) so that it does
        // not run beside the job's next steps.
        session.undo_all(crate::cancel::CANCEL_GRACE).await;
    }

    if copy_mode {
        // Bring file commands back even when the step failed: the runner still processes what
        // a failed step wrote (outputs, summary).
        let copied = transfer::copy_out(
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

    Ok(step::outcome(result?))
}

/// Start the step and follow it to its end. After a connection that broke, closed without a
/// status or went silent (the step goes on in the pod), re-attach a follower from the bytes
/// already passed on: again after every such break, however long the step runs. Only a
/// connection that cannot be made at all (the API server away for longer than
/// [`retry::OUTAGE_BUDGET`], or refusing) ends the command with an error.
async fn run_attached(exec: &PodExec, command: StepCommand, step_dir: &str) -> anyhow::Result<i32> {
    let mut stdout = Counted::new(tokio::io::stdout());
    let mut stderr = Counted::new(tokio::io::stderr());
    let stdin = Stdin {
        len: command.stdin.len() as u64,
        reader: Box::new(command.stdin.as_slice()),
    };
    let mut result = exec
        .exec(command.argv, Some(stdin), &mut stdout, &mut stderr)
        .await;
    let mut attached = false;
    loop {
        let error = match result {
            Ok(code) => return Ok(code),
            Err(error) if error.step_may_run_on() => error,
            Err(error) if attached => {
                return Err(anyhow::Error::new(error).context(
                    "could not re-attach to the step; it may still be running in the pod",
                ));
            }
            Err(error) => return Err(error.into()),
        };
        attached = true;
        warn!(
            error = %error,
            "the connection to the step broke; it goes on running in the pod, re-attaching"
        );
        tokio::time::sleep(retry::Backoff::default().next_delay()).await;
        let argv = vec![
            "sh".to_owned(),
            "-c".to_owned(),
            reattach_script(),
            "sh".to_owned(),
            step_dir.to_owned(),
            stdout.count.to_string(),
            stderr.count.to_string(),
        ];
        let started = tokio::time::Instant::now();
        result = exec.exec(argv, None, &mut stdout, &mut stderr).await;
        if result.is_ok() {
            info!(after = ?started.elapsed(), "re-attached to the step");
        }
    }
}

/// A writer that counts what passed through it.
struct Counted<W> {
    inner: W,
    count: u64,
}

impl<W> Counted<W> {
    fn new(inner: W) -> Counted<W> {
        Counted { inner, count: 0 }
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for Counted<W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = poll {
            self.count += n as u64;
        }
        poll
    }

    fn poll_flush(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The runner's `_temp` on the runner host (`RUNNER_TEMP`).
fn runner_temp(session: &Session) -> anyhow::Result<PathBuf> {
    session.config.runner_temp.clone().context(
        "environment variable `RUNNER_TEMP` is not set: the hook must be started by the runner",
    )
}

/// The exec argv and stdin for one step.
#[derive(Debug)]
pub struct StepCommand {
    /// `sh -c <wrapper> sh <step dir> <n> <wd> <path> <pairs> <entry point> <args>...`
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
        step_dir: &str,
        entry_point: &str,
        entry_point_args: &[String],
    ) -> StepCommand {
        let (stdin, pairs) = env_script(env);
        let mut argv = vec![
            "sh".to_owned(),
            "-c".to_owned(),
            step_wrapper(),
            "sh".to_owned(),
            step_dir.to_owned(),
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
    // Last: the wrapper starts the step only when this line arrived, i.e. all of the above.
    script.push_str("runner_k8s_hook_env_complete=1\n");
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
        let step_dir = dir.path().join("p/step-1");
        let command = StepCommand::new(
            &env,
            dir.path().to_str().unwrap(),
            "/opt/a/bin:/opt/b/bin",
            step_dir.to_str().unwrap(),
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
        assert_eq!(
            std::fs::read_to_string(step_dir.join("exit")).unwrap(),
            "0\n",
            "the step's status is kept"
        );
        // The next step removes it.
        let next = StepCommand::new(
            &env,
            "",
            "",
            dir.path().join("p/step-2").to_str().unwrap(),
            "true",
            &[],
        );
        assert_eq!(run_locally(&next).0, 0);
        assert!(
            !step_dir.exists(),
            "a finished step's directory goes when the next starts"
        );
    }

    /// The step goes on when its follower dies (a broken exec connection), and a re-attached
    /// follower passes on the rest of its output, each byte once, and its exit code.
    #[test]
    fn a_step_outlives_its_follower_and_a_new_one_picks_up_where_it_stopped() {
        use std::io::Read;
        let dir = tempfile::tempdir().unwrap();
        let step_dir = dir.path().join("step");
        let command = StepCommand::new(
            &BTreeMap::new(),
            "",
            "",
            step_dir.to_str().unwrap(),
            "sh",
            &[
                "-c".to_owned(),
                "for i in 1 2 3 4 5 6; do echo out$i; echo err$i >&2; sleep 0.2; done; exit 7"
                    .to_owned(),
            ],
        );
        let err_file = dir.path().join("stderr-1");
        let mut first = Command::new(&command.argv[0])
            .args(&command.argv[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&err_file).unwrap())
            .spawn()
            .unwrap();
        first
            .stdin
            .take()
            .unwrap()
            .write_all(&command.stdin)
            .unwrap();
        let mut seen = Vec::new();
        let mut stdout = first.stdout.take().unwrap();
        let mut byte = [0u8; 1];
        while !seen.ends_with(b"out2\n") {
            stdout.read_exact(&mut byte).unwrap();
            seen.push(byte[0]);
        }
        first.kill().unwrap();
        first.wait().unwrap();
        let err_seen = std::fs::read(&err_file).unwrap();

        let resumed = Command::new("sh")
            .args(["-c", &reattach_script(), "sh"])
            .arg(&step_dir)
            .arg(seen.len().to_string())
            .arg(err_seen.len().to_string())
            .output()
            .unwrap();
        assert_eq!(resumed.status.code(), Some(7), "the step's own exit code");
        let mut out = seen;
        out.extend_from_slice(&resumed.stdout);
        let mut err = err_seen;
        err.extend_from_slice(&resumed.stderr);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "out1\nout2\nout3\nout4\nout5\nout6\n"
        );
        assert_eq!(
            String::from_utf8(err).unwrap(),
            "err1\nerr2\nerr3\nerr4\nerr5\nerr6\n"
        );
    }

    #[test]
    fn step_variables_cannot_change_the_wrappers_own() {
        let dir = tempfile::tempdir().unwrap();
        let step_dir = dir.path().join("step-1");
        let env = BTreeMap::from([
            ("d".to_owned(), "/nonexistent/elsewhere".to_owned()),
            ("i".to_owned(), "7".to_owned()),
            ("o".to_owned(), "x".to_owned()),
            ("with-dash".to_owned(), "y".to_owned()),
        ]);
        let command = StepCommand::new(
            &env,
            "",
            "",
            step_dir.to_str().unwrap(),
            "sh",
            &["-c".to_owned(), r#"echo "$d $i $o""#.to_owned()],
        );
        let (code, out) = run_locally(&command);
        assert_eq!((code, out.as_str()), (0, "/nonexistent/elsewhere 7 x\n"));
        assert!(step_dir.join("exit").exists());
    }

    #[test]
    fn a_step_whose_environment_did_not_arrive_in_full_is_not_started() {
        let dir = tempfile::tempdir().unwrap();
        let step_dir = dir.path().join("step-1");
        let marker = dir.path().join("ran");
        let env = BTreeMap::from([
            ("FIRST".to_owned(), "1".to_owned()),
            ("SECRET_TOKEN".to_owned(), "s3cr3t".to_owned()),
        ]);
        let mut command = StepCommand::new(
            &env,
            "",
            "",
            step_dir.to_str().unwrap(),
            "touch",
            &[marker.to_str().unwrap().to_owned()],
        );
        // The connection broke after the first line: the wrapper reads what came, then EOF.
        let first_line = command.stdin.iter().position(|b| *b == b'\n').unwrap() + 1;
        command.stdin.truncate(first_line);
        let (code, _) = run_locally(&command);
        assert_eq!(code, 254);
        assert!(!marker.exists(), "the step did not run");
        assert!(!step_dir.exists());
    }

    #[test]
    fn a_second_start_of_the_same_step_follows_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let step_dir = dir.path().join("step-1");
        let count = dir.path().join("count");
        let command = StepCommand::new(
            &BTreeMap::new(),
            "",
            "",
            step_dir.to_str().unwrap(),
            "sh",
            &[
                "-c".to_owned(),
                format!("echo once >> {}; echo started", count.display()),
            ],
        );
        assert_eq!(run_locally(&command), (0, "started\n".to_owned()));
        // A retried start (its directory is the lock): it follows, it does not run the step again.
        assert_eq!(run_locally(&command), (0, "started\n".to_owned()));
        assert_eq!(std::fs::read_to_string(&count).unwrap(), "once\n");
    }

    #[test]
    fn a_stopped_step_ends_its_follower_with_a_message() {
        let dir = tempfile::tempdir().unwrap();
        let step_dir = dir.path().join("step");
        std::fs::create_dir_all(&step_dir).unwrap();
        for name in ["out", "err"] {
            std::fs::write(step_dir.join(name), "").unwrap();
        }
        // A pid that is not running and no exit status: what `STOP_PROCESS_TREE` leaves.
        std::fs::write(step_dir.join("pid"), "999999999").unwrap();
        let follower = Command::new("sh")
            .args(["-c", &reattach_script(), "sh"])
            .arg(&step_dir)
            .args(["0", "0"])
            .output()
            .unwrap();
        assert_eq!(follower.status.code(), Some(255));
        assert!(String::from_utf8_lossy(&follower.stderr).contains("the step was stopped"));
        let gone = Command::new("sh")
            .args(["-c", &reattach_script(), "sh"])
            .arg(dir.path().join("nothing"))
            .args(["0", "0"])
            .output()
            .unwrap();
        assert_eq!(gone.status.code(), Some(255));
        assert!(String::from_utf8_lossy(&gone.stderr).contains("the step's state in"));
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
            dir.path().join("x").to_str().unwrap(),
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
            dir.path().join("x").to_str().unwrap(),
            "sh",
            &["-c".to_owned(), "cat; exit 3".to_owned()],
        );
        // The step's stdin is /dev/null, so `cat` ends at once instead of hanging.
        assert_eq!(run_locally(&command), (3, String::new()));
    }
}
