//! The hook binary: read the request from stdin, run it, report. All logic is in the library;
//! the first argument chooses the command (`cli::command`).

use std::ffi::OsString;
use std::io::{Read, Write as _};
use std::process::ExitCode;

use anyhow::Context as _;

use runner_k8s_hook::cli::{self, Command};
use runner_k8s_hook::{Cancel, Cancelled, Outcome, Signal, config::Config, error, logging};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    match cli::command(args.first().map(OsString::as_os_str)) {
        Ok(Command::Hook) => {}
        Ok(Command::Build) => return build(&args[1..]),
        Ok(Command::Check) => return check(&args[1..]),
        Ok(Command::Version) => return print(&format!("{}\n", cli::version())),
        Ok(Command::Help) => return print(cli::USAGE),
        Err(unknown) => {
            eprintln!(
                "error: unknown argument `{unknown}`\nhint: the hook takes no arguments (the runner starts it with its request on stdin); see `runner-k8s-hook --help`"
            );
            return ExitCode::from(error::EXIT_FAILURE);
        }
    }
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(err) => return fail(&anyhow::Error::new(err)),
    };
    logging::init(&config);

    let mut input = String::new();
    if let Err(err) = std::io::stdin().read_to_string(&mut input) {
        return fail(&anyhow::Error::new(
            runner_k8s_hook::protocol::ProtocolError::ReadInput(err),
        ));
    }

    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(err) => return fail(&err),
    };
    let result = runtime.block_on(async { runner_k8s_hook::run(&input, &config, signals()).await });
    match result {
        Ok(Outcome::Success(_)) => ExitCode::SUCCESS,
        Ok(Outcome::StepExited(code)) => {
            // The step's own output already explains the failure; this names the code (the
            // runner reports only "Process completed with exit code N" for the hook).
            eprintln!("::error::the step failed: its process exited with code {code}");
            ExitCode::from(code)
        }
        Err(err) => {
            if let Some(Cancelled(signal)) = err.downcast_ref::<Cancelled>() {
                eprint!("{}", error::report(&err));
                ExitCode::from(signal.exit_code())
            } else {
                fail(&err)
            }
        }
    }
}

/// `runner-k8s-hook build ...`: the build engine (`cli::build`). A signal stops the build: its
/// local processes and temporary files, or its build pod.
fn build(args: &[OsString]) -> ExitCode {
    // In a workflow (the JavaScript action) errors are annotations; on a terminal, plain text.
    let in_workflow = std::env::var_os("GITHUB_ACTIONS").is_some_and(|v| v == "true");
    let render = if in_workflow {
        error::report
    } else {
        error::report_plain
    };
    let result = Config::from_env()
        .map_err(anyhow::Error::new)
        .and_then(|config| {
            logging::init(&config);
            runtime()?.block_on(async {
                let mut stdout = tokio::io::stdout();
                runner_k8s_hook::cli::build::run(args, &config, &mut stdout, signals()).await
            })
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprint!("{}", render(&err));
            match err.downcast_ref::<Cancelled>() {
                Some(Cancelled(signal)) => ExitCode::from(signal.exit_code()),
                None => ExitCode::from(error::EXIT_FAILURE),
            }
        }
    }
}

/// `runner-k8s-hook check ...`: the report on stdout, exit 0 when no check failed, 1 otherwise
/// (`cli::check`). Logs stay quiet unless `RUNNER_K8S_HOOK_LOG` asks: the report says it all.
fn check(args: &[OsString]) -> ExitCode {
    let result = Config::from_env()
        .map_err(anyhow::Error::new)
        .and_then(|mut config| {
            config.log_filter.get_or_insert_with(|| "error".to_owned());
            logging::init(&config);
            runtime()?.block_on(async {
                let mut stdout = tokio::io::stdout();
                runner_k8s_hook::cli::check::run(args, &config, &mut stdout, signals()).await
            })
        });
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(error::EXIT_FAILURE),
        Err(err) => {
            eprint!("{}", error::report_plain(&err));
            match err.downcast_ref::<Cancelled>() {
                Some(Cancelled(signal)) => ExitCode::from(signal.exit_code()),
                None => ExitCode::from(error::EXIT_FAILURE),
            }
        }
    }
}

/// `text` on stdout; a closed stdout (`| head -c0`) is a failure, not a panic.
fn print(text: &str) -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::from(error::EXIT_FAILURE),
    }
}

/// The current-thread runtime every command runs on.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("failed to start the async runtime")
}

fn fail(err: &anyhow::Error) -> ExitCode {
    eprint!("{}", error::report(err));
    ExitCode::from(error::EXIT_FAILURE)
}

/// Cancellation for the command: the first SIGINT or SIGTERM. Signals are watched for the whole
/// run: a second signal during clean-up is ignored (the clean-up is already bounded), and the
/// runner's final SIGKILL needs no handler. Call inside the runtime.
fn signals() -> Cancel {
    let (tx, cancel) = watch::channel(None);
    tokio::spawn(async move {
        let signal = wait_for_signal().await;
        let _ = tx.send(Some(signal));
        // Keep the sender alive so the receiver never sees a closed channel.
        std::future::pending::<()>().await;
    });
    cancel
}

/// The first SIGINT or SIGTERM. If a handler cannot be installed, only that signal loses its
/// prompt clean-up (the default action still ends the process).
async fn wait_for_signal() -> Signal {
    let mut interrupt = signal(SignalKind::interrupt()).ok();
    let mut terminate = signal(SignalKind::terminate()).ok();
    tokio::select! {
        Some(()) = async { interrupt.as_mut()?.recv().await } => Signal::Interrupt,
        Some(()) = async { terminate.as_mut()?.recv().await } => Signal::Terminate,
        else => std::future::pending().await,
    }
}
