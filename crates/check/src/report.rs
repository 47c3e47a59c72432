//! The verdicts as monitoring wants them: a Nagios status and exit code, one
//! status line with performance data, one line per client; or JSON.

use std::fmt::Write as _;

use flashpolicy_proto::clients::{Fetched, Outcome};
use serde_json::{json, Value};

use crate::args::Check;
use crate::run::ClientResult;

/// Nagios plugin states, in increasing severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    /// Every client connects, no defect, fast enough.
    Ok,
    /// Allowed, but a defect or a slow answer.
    Warning,
    /// Denied, unreachable, invalid, or too slow.
    Critical,
    /// Bad arguments.
    Unknown,
}

impl Status {
    /// The exit code.
    pub const fn code(self) -> u8 {
        match self {
            Status::Ok => 0,
            Status::Warning => 1,
            Status::Critical => 2,
            Status::Unknown => 3,
        }
    }

    /// Its name.
    pub const fn name(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Warning => "WARNING",
            Status::Critical => "CRITICAL",
            Status::Unknown => "UNKNOWN",
        }
    }
}

/// One client's state.
pub fn status_of(check: &Check, result: &ClientResult) -> Status {
    let ms = millis(result.elapsed());
    if !result.verdict.allowed || check.critical_ms.is_some_and(|c| ms > c) {
        Status::Critical
    } else if check.warning_ms.is_some_and(|w| ms > w) || result.defects().next().is_some() {
        Status::Warning
    } else {
        Status::Ok
    }
}

/// The worst state of all clients.
pub fn overall(check: &Check, results: &[ClientResult]) -> Status {
    results
        .iter()
        .map(|r| status_of(check, r))
        .max()
        .unwrap_or(Status::Unknown)
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// `host:port`, IPv6 in brackets.
fn endpoint(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn threshold(t: Option<u64>) -> String {
    t.map(|t| t.to_string()).unwrap_or_default()
}

/// The status line, then one verdict line per client.
pub fn text(check: &Check, results: &[ClientResult]) -> String {
    let status = overall(check, results);
    let summary: Vec<String> = results
        .iter()
        .map(|r| {
            let word = if r.verdict.allowed { "OK" } else { "DENIED" };
            format!("{} {word}", r.verdict.client)
        })
        .collect();
    let (w, c) = (threshold(check.warning_ms), threshold(check.critical_ms));
    let slowest = results
        .iter()
        .map(|r| millis(r.elapsed()))
        .max()
        .unwrap_or(0);
    let mut out = format!(
        "FLASHPOLICY {} - {} from {} | time={slowest}ms;{w};{c};0",
        status.name(),
        summary.join(", "),
        check.origin
    );
    for r in results {
        let _ = write!(
            out,
            " {}={}ms;{w};{c};0",
            r.verdict.client,
            millis(r.elapsed())
        );
    }
    out.push('\n');
    for r in results {
        out.push_str(&verdict_line(check, r));
        out.push('\n');
    }
    out
}

/// `client: OK|DENIED - decider; fetched ...`.
fn verdict_line(check: &Check, r: &ClientResult) -> String {
    let word = if r.verdict.allowed { "OK" } else { "DENIED" };
    let decider = match (r.verdict.note, r.verdict.consulted.last()) {
        (Some(note), _) => note.to_string(),
        (None, Some(last)) => format!("{} {}", endpoint(&check.host, last.port), last.outcome),
        (None, None) => "no policy file to consult".to_string(),
    };
    let fetched: Vec<String> = r
        .fetches
        .iter()
        .zip(&r.verdict.consulted)
        .map(|(f, c)| {
            let mut s = format!(
                "{}{} {} ms",
                endpoint(&check.host, f.port),
                if c.master { " (master)" } else { "" },
                millis(f.elapsed)
            );
            if let Outcome::Unavailable(why) = &c.outcome {
                let _ = write!(s, " unavailable: {why}");
            }
            if !f.defects.is_empty() {
                let d: Vec<String> = f.defects.iter().map(ToString::to_string).collect();
                let _ = write!(s, " ({})", d.join(", "));
            }
            s
        })
        .collect();
    let mut line = format!("{}: {word} - {decider}", r.verdict.client);
    if !fetched.is_empty() {
        let _ = write!(line, "; fetched {}", fetched.join(", "));
    }
    line
}

/// The whole result as one JSON object.
pub fn json(check: &Check, results: &[ClientResult]) -> Value {
    let status = overall(check, results);
    let clients: Vec<Value> = results
        .iter()
        .map(|r| {
            let decided_by = match (r.verdict.allowed, r.verdict.consulted.last()) {
                (true, Some(last)) => match &last.outcome {
                    Outcome::Granted(rule) => json!({
                        "policy": endpoint(&check.host, last.port),
                        "line": rule.line,
                        "rule": rule.to_string(),
                    }),
                    _ => Value::Null,
                },
                _ => Value::Null,
            };
            let fetches: Vec<Value> = r
                .fetches
                .iter()
                .zip(&r.verdict.consulted)
                .map(|(f, c)| {
                    json!({
                        "policy": endpoint(&check.host, f.port),
                        "master": c.master,
                        "time_ms": millis(f.elapsed),
                        "bytes": match &f.fetched {
                            Fetched::Reply(chunks) => chunks.iter().map(Vec::len).sum::<usize>(),
                            Fetched::Failed(_) => 0,
                        },
                        "outcome": c.outcome.to_string(),
                        "defects": f.defects.iter().map(|d| d.name()).collect::<Vec<_>>(),
                    })
                })
                .collect();
            json!({
                "client": r.verdict.client.name(),
                "allowed": r.verdict.allowed,
                "status": status_of(check, r).name(),
                "note": r.verdict.note,
                "decided_by": decided_by,
                "time_ms": millis(r.elapsed()),
                "fetches": fetches,
            })
        })
        .collect();
    json!({
        "status": status.name(),
        "exit": status.code(),
        "target": endpoint(&check.host, check.addr.port()),
        "address": check.addr.to_string(),
        "origin": check.origin.to_string(),
        "clients": clients,
    })
}
