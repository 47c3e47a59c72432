//! `--log-format`: human-readable lines (`text`, the default) or one JSON
//! object per line (`json`) for log shippers. The format also decides how
//! the few lines written outside the logger (a start-up configuration error,
//! the totals at exit) look, so that in JSON mode every stderr line parses.

use std::io::IsTerminal;

use crate::config::LogFormat;

/// Installs the global logger: `filter` (a tracing directive, `info` when
/// it does not parse) on stderr, in `format`.
pub fn init(filter: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .init(),
    }
}
