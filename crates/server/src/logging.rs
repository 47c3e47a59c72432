//! `--log-format`: human-readable lines (`text`, the default) or one JSON
//! object per line (`json`) for log shippers. The format also decides how
//! the few lines written outside the logger (a start-up configuration error,
//! the totals at exit) look, so that in JSON mode every stderr line parses.

use std::io::IsTerminal;

use flashpolicy_proto::serve::{End, Tally};

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

/// The totals in `--log-format json`: one object,
/// `{"totals":{"accepted":N,"served":N,...}}`, with the same keys in the
/// same order as `supervisor::totals_line`.
pub(crate) fn totals_json(totals: &Tally) -> String {
    use std::fmt::Write;
    // The keys are fixed ASCII names and the values integers: nothing to escape.
    let mut line = format!("{{\"totals\":{{\"accepted\":{}", totals.accepted);
    for end in End::ALL {
        let _ = write!(line, ",\"{}\":{}", end.name(), totals.get(end));
    }
    line.push_str("}}");
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_totals_object_names_every_counter() {
        let totals = Tally {
            accepted: 3,
            served: 2,
            rejected: 1,
            ..Tally::default()
        };
        assert_eq!(
            totals_json(&totals),
            r#"{"totals":{"accepted":3,"served":2,"rejected":1,"timed_out":0,"failed":0,"shed":0,"proxy_invalid":0,"over_ip_limit":0,"relayed":0,"upstream_failed":0,"origin_refused":0}}"#
        );
    }
}
