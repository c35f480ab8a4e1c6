//! Logging setup: structured events to stderr, filtered by RUST_LOG (default info for the daemon).

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. The daemon logs at info; CLI commands
/// only warn, so their own output stays clean.
pub fn init(daemon: bool) {
    let default = if daemon {
        "info,openraft=warn"
    } else {
        "warn,openraft=error"
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
