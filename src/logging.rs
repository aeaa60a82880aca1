//! Logging: `tracing` to stderr, without timestamps (the runner stamps every line) or colours.
//!
//! stdout is reserved for the step's own output, which the runner parses for workflow commands.
//! Owns the subscriber's set-up only; reads its filter from [`crate::config`], never the
//! environment itself.

use tracing_subscriber::EnvFilter;

use crate::config::Config;

/// Install the global subscriber. The default filter is `info` for the hook and `warn` for its
/// libraries; runner debug mode (`RUNNER_DEBUG=1`) turns the hook to `debug`; `RUNNER_K8S_HOOK_LOG`
/// replaces the filter entirely.
pub fn init(config: &Config) {
    let default = if config.debug {
        "warn,runner_k8s_hook=debug"
    } else {
        "warn,runner_k8s_hook=info"
    };
    let filter = config
        .log_filter
        .as_deref()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(default));
    // `try_init`: a second call (tests) keeps the first subscriber instead of panicking.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .without_time()
        .with_target(false)
        .try_init();
}
