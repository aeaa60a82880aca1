//! The hook binary: read the request from stdin, run it, report. All logic is in the library.

use std::io::Read;
use std::process::ExitCode;

use runner_k8s_hook::{Outcome, config::Config, error, logging};

fn main() -> ExitCode {
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

    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            return fail(&anyhow::Error::new(err).context("failed to start the async runtime"));
        }
    };
    let result = runtime.block_on(async {
        tokio::select! {
            result = runner_k8s_hook::run(&input, &config) => Ok(result),
            signal = signals::wait() => Err(signal),
        }
    });
    match result {
        Ok(Ok(Outcome::Success(_))) => ExitCode::SUCCESS,
        Ok(Ok(Outcome::StepExited(code))) => ExitCode::from(code),
        Ok(Err(err)) => fail(&err),
        Err(signal) => {
            eprintln!("::error::the hook was cancelled by {}", signal.name());
            ExitCode::from(signal.exit_code())
        }
    }
}

fn fail(err: &anyhow::Error) -> ExitCode {
    eprint!("{}", error::report(err));
    ExitCode::from(error::EXIT_FAILURE)
}

mod signals {
    //! SIGINT/SIGTERM from the runner (it sends SIGINT, then SIGTERM 7.5 s later).

    use tokio::signal::unix::{SignalKind, signal};

    /// A signal that cancels the command in flight.
    #[derive(Debug, Clone, Copy)]
    pub enum Cancel {
        Interrupt,
        Terminate,
    }

    impl Cancel {
        pub fn name(self) -> &'static str {
            match self {
                Cancel::Interrupt => "SIGINT",
                Cancel::Terminate => "SIGTERM",
            }
        }
        /// 128 + signal number, as a shell reports a process killed by it.
        pub fn exit_code(self) -> u8 {
            match self {
                Cancel::Interrupt => 130,
                Cancel::Terminate => 143,
            }
        }
    }

    /// Wait for the first SIGINT or SIGTERM. If a handler cannot be installed, wait forever on
    /// the other one (the command still runs; only prompt cancellation is lost).
    pub async fn wait() -> Cancel {
        let mut interrupt = signal(SignalKind::interrupt()).ok();
        let mut terminate = signal(SignalKind::terminate()).ok();
        tokio::select! {
            Some(()) = async { interrupt.as_mut()?.recv().await } => Cancel::Interrupt,
            Some(()) = async { terminate.as_mut()?.recv().await } => Cancel::Terminate,
        }
    }
}
