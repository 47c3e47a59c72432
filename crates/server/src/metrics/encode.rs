//! The `/metrics` body: a `prometheus-client` [`Collector`] that reads the
//! live counters at scrape time, encoded in the Prometheus text format
//! (version 0.0.4).
//!
//! Why a collector and not registered `Counter`s: the numbers already live
//! in the workers' own blocks ([`Counters`]); a collector reads them when a
//! scrape asks, so the workers never touch a `prometheus-client` type and
//! the registry is built once. Each scrape costs one snapshot per worker.

use std::sync::{Arc, Mutex, PoisonError};

use flashpolicy_proto::serve::{AcceptErrorKind, End, Tally};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::counters::Counters;
use super::policy::PolicyCounters;

/// Everything a scrape reports, read live.
#[derive(Debug)]
pub struct LiveCollector {
    counters: Counters,
    policy: Arc<PolicyCounters>,
    engine: &'static str,
    /// Per worker, the counts the last scrape showed (see [`monotonic`]).
    shown: Mutex<Vec<Tally>>,
}

impl LiveCollector {
    /// A collector over these counters, for a server running `engine`.
    pub fn new(counters: Counters, policy: Arc<PolicyCounters>, engine: &'static str) -> Self {
        let shown = vec![Tally::default(); counters.workers()];
        LiveCollector {
            counters,
            policy,
            engine,
            shown: Mutex::new(shown),
        }
    }
}

/// A registry holding only `collector`.
pub fn registry(collector: LiveCollector) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(collector));
    registry
}

/// The text a scrape gets.
pub fn render(registry: &Registry) -> Result<String, std::fmt::Error> {
    let mut body = String::with_capacity(4096);
    prometheus_client::encoding::prometheus_text::encode(&mut body, registry)?;
    Ok(body)
}

/// The counts to show: each at least what the last scrape showed. The
/// io_uring engine counts a reply as served when it submits the send and,
/// in the rare case that the send then fails, moves that connection to
/// failed ([`Tally::amend`]); a Prometheus counter must never fall, so
/// `served` is held at its last shown value until the worker has served
/// past it. `last` becomes what is shown.
fn monotonic(last: &mut Tally, now: &Tally) -> Tally {
    let mut shown = Tally {
        accepted: now.accepted.max(last.accepted),
        ..Tally::default()
    };
    for end in End::ALL {
        shown.add(end, now.get(end).max(last.get(end)));
    }
    *last = shown;
    shown
}

impl Collector for LiveCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let now: Vec<Tally> = (0..self.counters.workers())
            .map(|w| self.counters.snapshot(w))
            .collect();
        let shown: Vec<Tally> = {
            let mut last = self.shown.lock().unwrap_or_else(PoisonError::into_inner);
            last.iter_mut()
                .zip(&now)
                .map(|(last, now)| monotonic(last, now))
                .collect()
        };
        let workers: Vec<String> = (0..now.len()).map(|w| w.to_string()).collect();

        let mut m = encoder.encode_descriptor(
            "flashpolicyd_connections",
            "Connections that have ended, by how they ended and by worker.",
            None,
            MetricType::Counter,
        )?;
        for end in End::ALL {
            for (tally, worker) in shown.iter().zip(&workers) {
                let labels = [("end", end.name()), ("worker", worker.as_str())];
                ConstCounter::new(tally.get(end)).encode(m.encode_family(&labels)?)?;
            }
        }

        let mut m = encoder.encode_descriptor(
            "flashpolicyd_connections_accepted",
            "Connections accepted (shed ones included), by worker.",
            None,
            MetricType::Counter,
        )?;
        for (tally, worker) in shown.iter().zip(&workers) {
            let labels = [("worker", worker.as_str())];
            ConstCounter::new(tally.accepted).encode(m.encode_family(&labels)?)?;
        }

        let mut m = encoder.encode_descriptor(
            "flashpolicyd_connections_open",
            "Connections accepted and not yet ended (parked ones included), by worker.",
            None,
            MetricType::Gauge,
        )?;
        for (tally, worker) in now.iter().zip(&workers) {
            let labels = [("worker", worker.as_str())];
            let open = tally.accepted.saturating_sub(tally.ended_total());
            ConstGauge::new(open).encode(m.encode_family(&labels)?)?;
        }

        let mut m = encoder.encode_descriptor(
            "flashpolicyd_accept_errors",
            "Errors from accept, by what they mean to the server.",
            None,
            MetricType::Counter,
        )?;
        for (kind, n) in AcceptErrorKind::ERRORS
            .into_iter()
            .zip(self.counters.accept_errors())
        {
            let labels = [("kind", kind.name())];
            ConstCounter::new(n).encode(m.encode_family(&labels)?)?;
        }

        let mut m = encoder.encode_descriptor(
            "flashpolicyd_relayed_bytes",
            "--gateway: bytes relayed, up (player to game server) and down, counted as each relay closes.",
            None,
            MetricType::Counter,
        )?;
        for (direction, n) in ["up", "down"]
            .into_iter()
            .zip(self.counters.relayed_bytes())
        {
            let labels = [("direction", direction)];
            ConstCounter::new(n).encode(m.encode_family(&labels)?)?;
        }

        let mut m = encoder.encode_descriptor(
            "flashpolicyd_policy_reloads",
            "Policy reloads (SIGHUP), by result; after an error the previous policy is still served.",
            None,
            MetricType::Counter,
        )?;
        for (result, n) in [
            ("ok", self.policy.reloads_ok()),
            ("error", self.policy.reloads_error()),
        ] {
            let labels = [("result", result)];
            ConstCounter::new(n).encode(m.encode_family(&labels)?)?;
        }

        let m = encoder.encode_descriptor(
            "flashpolicyd_policy_bytes",
            "Size of the reply being served: the policy document and its NUL.",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(self.policy.bytes()).encode(m)?;

        let mut m = encoder.encode_descriptor(
            "flashpolicyd_build_info",
            "Always 1: the server's version and the engine its workers run.",
            None,
            MetricType::Gauge,
        )?;
        let labels = [
            ("version", env!("CARGO_PKG_VERSION")),
            ("engine", self.engine),
        ];
        ConstGauge::new(1u64).encode(m.encode_family(&labels)?)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrape(registry: &Registry) -> String {
        render(registry).expect("encodes")
    }

    fn value(body: &str, series: &str) -> Option<u64> {
        body.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn every_series_is_there_with_the_live_values() {
        let (counters, mut tallies) = Counters::new(2);
        let policy = Arc::new(PolicyCounters::new(120));
        let registry = registry(LiveCollector::new(counters, Arc::clone(&policy), "epoll"));
        tallies[1].accepted();
        tallies[1].accepted();
        tallies[1].ended(End::Served);
        tallies[0].accept_error(AcceptErrorKind::OutOfResources);
        policy.reloaded(99);
        let body = scrape(&registry);
        let v = |s: &str| value(&body, s).unwrap_or_else(|| panic!("no {s} in\n{body}"));
        assert_eq!(
            v(r#"flashpolicyd_connections_total{end="served",worker="1"}"#),
            1
        );
        assert_eq!(
            v(r#"flashpolicyd_connections_total{end="served",worker="0"}"#),
            0
        );
        for end in End::ALL {
            for w in 0..2 {
                let series = format!(
                    r#"flashpolicyd_connections_total{{end="{}",worker="{w}"}}"#,
                    end.name()
                );
                assert!(value(&body, &series).is_some(), "{series}");
            }
        }
        assert_eq!(
            v(r#"flashpolicyd_connections_accepted_total{worker="1"}"#),
            2
        );
        assert_eq!(v(r#"flashpolicyd_connections_open{worker="1"}"#), 1);
        assert_eq!(v(r#"flashpolicyd_connections_open{worker="0"}"#), 0);
        assert_eq!(
            v(r#"flashpolicyd_accept_errors_total{kind="out_of_resources"}"#),
            1
        );
        assert_eq!(v(r#"flashpolicyd_accept_errors_total{kind="other"}"#), 0);
        assert_eq!(v(r#"flashpolicyd_policy_reloads_total{result="ok"}"#), 1);
        assert_eq!(v(r#"flashpolicyd_policy_reloads_total{result="error"}"#), 0);
        assert_eq!(v("flashpolicyd_policy_bytes"), 99);
        let info = format!(
            r#"flashpolicyd_build_info{{version="{}",engine="epoll"}}"#,
            env!("CARGO_PKG_VERSION")
        );
        assert_eq!(v(&info), 1);
        assert!(body.contains("# TYPE flashpolicyd_connections_total counter\n"));
        assert!(body.contains("# TYPE flashpolicyd_connections_open gauge\n"));
    }

    #[test]
    fn an_amend_never_makes_a_counter_fall() {
        let (counters, mut tallies) = Counters::new(1);
        let policy = Arc::new(PolicyCounters::new(1));
        let registry = registry(LiveCollector::new(counters.clone(), policy, "uring"));
        let served = r#"flashpolicyd_connections_total{end="served",worker="0"}"#;
        let failed = r#"flashpolicyd_connections_total{end="failed",worker="0"}"#;
        tallies[0].accepted();
        tallies[0].ended(End::Served);
        assert_eq!(value(&scrape(&registry), served), Some(1));
        tallies[0].amend(End::Served, End::Failed);
        let body = scrape(&registry);
        assert_eq!(value(&body, served), Some(1), "held, not fallen");
        assert_eq!(value(&body, failed), Some(1));
        assert_eq!(counters.snapshot(0).served, 0, "the totals stay exact");
        tallies[0].accepted();
        tallies[0].ended(End::Served);
        tallies[0].accepted();
        tallies[0].ended(End::Served);
        assert_eq!(value(&scrape(&registry), served), Some(2), "caught up");
    }
}
