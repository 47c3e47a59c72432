//! Reports: the text table (wrk2/HdrHistogram style), the JSON summary, and
//! the `.hgrm` percentile distribution.

use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{json, Map, Value};

use crate::mix::Scenario;
use crate::stats::{ErrorKind, Latencies, ScenarioStats, Stats, ERROR_KINDS, SIGFIG};
use crate::sys::CpuTime;

/// A finished run (or a merge of logs), ready to print.
#[derive(Debug, Clone)]
pub struct Summary {
    /// `"closed"` or `"open"` (or `"merged"` for `merge`).
    pub mode: String,
    /// What was loaded, in words.
    pub description: String,
    /// The recording window in seconds (see [`crate::runner`]).
    pub duration_s: f64,
    /// Everything counted.
    pub stats: Stats,
    /// Scenarios in the mix (report order).
    pub scenarios: Vec<Scenario>,
    /// Open loop: requested rate.
    pub rate: Option<f64>,
    /// Closed loop: concurrent clients.
    pub connections: Option<usize>,
    /// Worker threads.
    pub threads: Option<usize>,
    /// The generator's own CPU time over the whole run.
    pub cpu: Option<CpuTime>,
    /// Wall time of the whole run, warm-up included.
    pub elapsed: Option<Duration>,
    /// `--flash-fallback` was given.
    pub fallback: bool,
    /// `--send-delay` (`None` for `merge`, which does not know it).
    pub send_delay: Option<Duration>,
    /// `--proxy-protocol`: `"v1"` or `"v2"` (`None` without it, and for
    /// `merge`).
    pub proxy_protocol: Option<&'static str>,
    /// `--payload`: bytes each good client sent and expected echoed
    /// (`None` without it, and for `merge`).
    pub payload: Option<u64>,
    /// `--flash-gateway`: each client asked for the policy first.
    pub flash_gateway: bool,
    /// `--websocket`: the echo went through a WebSocket bridge.
    pub websocket: bool,
}

impl Summary {
    /// Good clients' counts.
    pub fn good(&self) -> &ScenarioStats {
        self.stats.scenario(Scenario::Good)
    }

    /// Successful good clients per second of the recording window.
    pub fn throughput(&self) -> f64 {
        if self.duration_s > 0.0 {
            self.good().ok as f64 / self.duration_s
        } else {
            0.0
        }
    }

    /// Generator CPU per finished client, in microseconds.
    pub fn cpu_us_per_conn(&self) -> Option<f64> {
        self.per_conn_us(self.cpu?.total())
    }

    /// `--payload`: megabytes (10^6 bytes) sent and received per second of
    /// the recording window by recorded clients.
    pub fn mb_per_sec(&self) -> (f64, f64) {
        if self.duration_s > 0.0 {
            (
                self.stats.bytes_sent as f64 / 1e6 / self.duration_s,
                self.stats.bytes_received as f64 / 1e6 / self.duration_s,
            )
        } else {
            (0.0, 0.0)
        }
    }

    fn per_conn_us(&self, d: Duration) -> Option<f64> {
        (self.stats.finished_all > 0)
            .then(|| d.as_secs_f64() * 1e6 / self.stats.finished_all as f64)
    }
}

/// Percentiles shown in the text table.
const TABLE: [f64; 8] = [50.0, 75.0, 90.0, 99.0, 99.9, 99.99, 99.999, 100.0];

/// The text report.
pub fn text(s: &Summary) -> String {
    let mut o = String::new();
    let good = s.good();
    let _ = writeln!(o, "{}", s.description);
    let _ = writeln!(
        o,
        "  good clients: {} ok, {} errors, {:.1} ok/s over {:.2} s",
        good.ok,
        good.error_count(),
        s.throughput(),
        s.duration_s
    );
    let _ = writeln!(o, "  errors: {}", error_line(&good.errors));
    if let Some(p) = s.payload {
        let (tx, rx) = s.mb_per_sec();
        let _ = writeln!(
            o,
            "  payload: {p} bytes each way per client; sent {} bytes ({tx:.2} MB/s), \
             received {} bytes ({rx:.2} MB/s); MB = 10^6 bytes",
            s.stats.bytes_sent, s.stats.bytes_received
        );
    }
    for (i, first) in s.stats.first_error.iter().enumerate() {
        if let Some(msg) = first {
            let _ = writeln!(o, "    first {}: {msg}", ErrorKind::ALL[i].name());
        }
    }
    let origin = if s.mode == "open" {
        "from each connection's intended start"
    } else {
        "from each connection's start"
    };
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "  Latency of good clients, µs {origin} (HdrHistogram, {SIGFIG} significant digits)"
    );
    latency_table(&mut o, &good.latency);
    if s.mode == "closed" {
        let _ = writeln!(
            o,
            "  Closed loop: a stalled server also stalls these clients, so stalls are\n  \
             under-counted (coordinated omission). For tail latency use --rate."
        );
    }
    if !s.stats.lag.is_empty() {
        let lag = &s.stats.lag;
        let _ = writeln!(
            o,
            "  Start behind schedule (counted in the latencies above): p50 {} µs, p99 {} µs, max {} µs",
            lag.value_at_quantile(0.5),
            lag.value_at_quantile(0.99),
            lag.max()
        );
    }
    if s.fallback {
        let _ = writeln!(
            o,
            "  Flash fallback: {} clients fell back ({}); time to policy of those: {}",
            good.fell_back,
            reason_line(&good.fallback_reasons),
            short_percentiles(&good.fell_back_total)
        );
    }
    for sc in s.scenarios.iter().filter(|sc| **sc != Scenario::Good) {
        let st = s.stats.scenario(*sc);
        let what = if sc.wants_policy() {
            "good replies"
        } else {
            "closed by the server"
        };
        let _ = writeln!(
            o,
            "  {} clients: {} started, {} {what}, errors: {}",
            sc.name(),
            st.started,
            st.ok,
            error_line(&st.errors)
        );
        let _ = writeln!(
            o,
            "    total time: {}",
            short_percentiles(&st.latency.total)
        );
        if st.unexpected_replies > 0 {
            let _ = writeln!(
                o,
                "    {} of them got a reply although they sent no valid request",
                st.unexpected_replies
            );
        }
    }
    if let Some(per) = s.cpu_us_per_conn() {
        let cpu = s.cpu.unwrap_or_default();
        let _ = writeln!(
            o,
            "  Generator CPU: {:.3} s for {} connections = {:.1} µs per connection \
             ({:.1} user + {:.1} system; getrusage RUSAGE_SELF)",
            cpu.total().as_secs_f64(),
            s.stats.finished_all,
            per,
            s.per_conn_us(cpu.user).unwrap_or(0.0),
            s.per_conn_us(cpu.system).unwrap_or(0.0),
        );
    }
    o
}

fn error_line(errors: &[u64; ERROR_KINDS]) -> String {
    ErrorKind::ALL
        .iter()
        .map(|k| format!("{} {}", k.name(), errors[k.index()]))
        .collect::<Vec<_>>()
        .join(", ")
}

fn reason_line(reasons: &[u64; ERROR_KINDS]) -> String {
    let parts: Vec<String> = ErrorKind::ALL
        .iter()
        .filter(|k| reasons[k.index()] > 0)
        .map(|k| {
            let name = if *k == ErrorKind::Timeout {
                "no policy in time"
            } else {
                k.name()
            };
            format!("{name} {}", reasons[k.index()])
        })
        .collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

fn short_percentiles(h: &Histogram<u64>) -> String {
    if h.is_empty() {
        return "no samples".into();
    }
    format!(
        "p50 {} µs, p99 {} µs, max {} µs ({} samples)",
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99),
        h.max(),
        h.len()
    )
}

fn latency_table(o: &mut String, l: &Latencies) {
    let _ = writeln!(
        o,
        "  {:>10} {:>12} {:>12} {:>12}",
        "Percentile", "connect", "first byte", "total"
    );
    let hs = [&l.connect, &l.first_byte, &l.total];
    for p in TABLE {
        let _ = write!(o, "  {:>9.3}%", p);
        for h in hs {
            let _ = write!(o, " {:>12}", h.value_at_percentile(p));
        }
        let _ = writeln!(o);
    }
    let _ = write!(o, "  {:>10}", "mean");
    for h in hs {
        let _ = write!(o, " {:>12.1}", h.mean());
    }
    let _ = writeln!(o);
    let _ = write!(o, "  {:>10}", "stdev");
    for h in hs {
        let _ = write!(o, " {:>12.1}", h.stdev());
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "  {:>10} {:>12}", "samples", l.total.len());
}

/// The JSON object for one histogram: `p50`, `p90`, `p99`, `p99_9`, `max`
/// (the keys the benchmark scripts read), plus `p75`, `p99_99`, `mean`,
/// `count`. Microseconds.
pub fn percentiles_json(h: &Histogram<u64>) -> Value {
    json!({
        "p50": h.value_at_quantile(0.50),
        "p90": h.value_at_quantile(0.90),
        "p99": h.value_at_quantile(0.99),
        "p99_9": h.value_at_quantile(0.999),
        "max": h.max(),
        "p75": h.value_at_quantile(0.75),
        "p99_99": h.value_at_quantile(0.9999),
        "mean": round1(h.mean()),
        "count": h.len(),
    })
}

fn round1(x: f64) -> f64 {
    if x.is_finite() {
        (x * 10.0).round() / 10.0
    } else {
        0.0
    }
}

fn round3(x: f64) -> f64 {
    if x.is_finite() {
        (x * 1000.0).round() / 1000.0
    } else {
        0.0
    }
}

fn errors_json(errors: &[u64; ERROR_KINDS]) -> Value {
    let mut m = Map::new();
    for k in ErrorKind::ALL {
        m.insert(k.name().into(), json!(errors[k.index()]));
    }
    Value::Object(m)
}

fn latencies_json(l: &Latencies) -> Value {
    json!({
        "total": percentiles_json(&l.total),
        "connect": percentiles_json(&l.connect),
        "first_byte": percentiles_json(&l.first_byte),
    })
}

/// The `--json` summary. The keys `mode`, `duration_s`, `ok`,
/// `throughput_per_sec`, `errors` (one key per [`ErrorKind`], named by
/// [`ErrorKind::name`]) and `latency_us{total,connect,first_byte}{p50,p90,
/// p99,p99_9,max}` describe the good clients and are a contract; the rest
/// is extra detail.
pub fn json(s: &Summary) -> Value {
    let good = s.good();
    let mut by_scenario = Map::new();
    for sc in &s.scenarios {
        let st = s.stats.scenario(*sc);
        by_scenario.insert(
            sc.name().into(),
            json!({
                "started": st.started,
                "ok": st.ok,
                "errors": errors_json(&st.errors),
                "latency_us": latencies_json(&st.latency),
                "unexpected_replies": st.unexpected_replies,
            }),
        );
    }
    let mut first_errors = Map::new();
    for (i, e) in s.stats.first_error.iter().enumerate() {
        if let Some(e) = e {
            first_errors.insert(ErrorKind::ALL[i].name().into(), json!(e));
        }
    }
    let mut fallback_reasons = Map::new();
    for k in ErrorKind::ALL {
        fallback_reasons.insert(k.name().into(), json!(good.fallback_reasons[k.index()]));
    }
    let mut v = json!({
        "mode": s.mode,
        "duration_s": (s.duration_s * 1000.0).round() / 1000.0,
        "ok": good.ok,
        "throughput_per_sec": round1(s.throughput()),
        "errors": errors_json(&good.errors),
        "latency_us": latencies_json(&good.latency),
        "started": good.started,
        "fell_back": good.fell_back,
        "fallback_reasons": fallback_reasons,
        "fell_back_total_us": percentiles_json(&good.fell_back_total),
        "by_scenario": by_scenario,
        "first_errors": first_errors,
        "connections_finished": s.stats.finished_all,
    });
    if let Value::Object(m) = &mut v {
        if let Some(rate) = s.rate {
            m.insert("rate".into(), json!(rate));
            m.insert("schedule_lag_us".into(), percentiles_json(&s.stats.lag));
        }
        if let Some(c) = s.connections {
            m.insert("connections".into(), json!(c));
        }
        if let Some(t) = s.threads {
            m.insert("threads".into(), json!(t));
        }
        if let Some(cpu) = s.cpu {
            m.insert("generator_cpu_s".into(), json!(cpu.total().as_secs_f64()));
            if let Some(per) = s.cpu_us_per_conn() {
                m.insert("generator_cpu_us_per_conn".into(), json!(round1(per)));
            }
            if let Some(per) = s.per_conn_us(cpu.user) {
                m.insert("generator_cpu_user_us_per_conn".into(), json!(round1(per)));
            }
            if let Some(per) = s.per_conn_us(cpu.system) {
                m.insert("generator_cpu_sys_us_per_conn".into(), json!(round1(per)));
            }
        }
        if let Some(e) = s.elapsed {
            m.insert("elapsed_s".into(), json!(e.as_secs_f64()));
        }
        if let Some(d) = s.send_delay {
            // Exact for any delay below 104 days (2^53 ns).
            m.insert("send_delay_us".into(), json!(d.as_nanos() as f64 / 1000.0));
        }
        if let Some(v) = s.proxy_protocol {
            m.insert("proxy_protocol".into(), json!(v));
        }
        if let Some(p) = s.payload {
            let (tx, rx) = s.mb_per_sec();
            m.insert("payload_bytes".into(), json!(p));
            m.insert("flash_gateway".into(), json!(s.flash_gateway));
            m.insert("websocket".into(), json!(s.websocket));
            m.insert("bytes_sent".into(), json!(s.stats.bytes_sent));
            m.insert("bytes_received".into(), json!(s.stats.bytes_received));
            m.insert("sent_mb_per_sec".into(), json!(round3(tx)));
            m.insert("received_mb_per_sec".into(), json!(round3(rx)));
        }
    }
    v
}

/// Writes `h` (microseconds) as an HdrHistogram percentile distribution
/// (`.hgrm`, the format of `outputPercentileDistribution` and wrk2), values
/// divided by `unit_ratio` (1000.0 gives milliseconds), 5 ticks per half
/// distance.
pub fn hgrm(h: &Histogram<u64>, unit_ratio: f64) -> String {
    let mut o = String::new();
    let _ = write!(
        o,
        "{:>12} {:>14} {:>10} {:>14}\n\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    let mut total = 0u64;
    if !h.is_empty() {
        for v in h.iter_quantiles(5) {
            total += v.count_since_last_iteration();
            let value = v.value_iterated_to() as f64 / unit_ratio;
            let q = v.quantile_iterated_to();
            if q < 1.0 {
                let _ = writeln!(
                    o,
                    "{:>12.3} {:>2.12} {:>10} {:>14.2}",
                    value,
                    q,
                    total,
                    1.0 / (1.0 - q)
                );
            } else {
                let _ = writeln!(o, "{:>12.3} {:>2.12} {:>10}", value, q, total);
            }
        }
    }
    let _ = writeln!(
        o,
        "#[Mean    = {:>12.3}, StdDeviation   = {:>12.3}]",
        h.mean() / unit_ratio,
        h.stdev() / unit_ratio
    );
    let _ = writeln!(
        o,
        "#[Max     = {:>12.3}, Total count    = {:>12}]",
        h.max() as f64 / unit_ratio,
        h.len()
    );
    let _ = writeln!(
        o,
        "#[Buckets = {:>12}, SubBuckets     = {:>12}]",
        h.buckets(),
        sub_buckets(h.sigfig())
    );
    o
}

/// HdrHistogram's sub-bucket count for `sigfig` digits: the power of two at
/// or above 2 × 10^sigfig.
fn sub_buckets(sigfig: u8) -> u64 {
    (2 * 10u64.pow(u32::from(sigfig))).next_power_of_two()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::new_histogram;

    #[test]
    fn hgrm_format() {
        let mut h = new_histogram();
        for v in 1..=1000u64 {
            h.record(v).expect("in range");
        }
        let text = hgrm(&h, 1000.0);
        let mut lines = text.lines();
        assert_eq!(
            lines.next(),
            Some("       Value     Percentile TotalCount 1/(1-Percentile)")
        );
        assert_eq!(lines.next(), Some(""));
        let first = lines.next().expect("a row");
        assert_eq!(
            first,
            "       0.001 0.000000000000          1           1.00"
        );
        let rows: Vec<&str> = text
            .lines()
            .skip(2)
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .collect();
        let last = rows.last().expect("rows");
        assert_eq!(*last, "       1.000 1.000000000000       1000");
        // Percentiles rise, counts rise, and the last count is the total.
        let parsed: Vec<(f64, f64, u64)> = rows
            .iter()
            .map(|r| {
                let f: Vec<&str> = r.split_whitespace().collect();
                (
                    f[0].parse().expect("value"),
                    f[1].parse().expect("percentile"),
                    f[2].parse().expect("count"),
                )
            })
            .collect();
        assert!(parsed
            .windows(2)
            .all(|w| w[0].1 <= w[1].1 && w[0].2 <= w[1].2 && w[0].0 <= w[1].0));
        assert!(text.contains("#[Mean    =        0.500, StdDeviation   =        0.289]"));
        assert!(text.contains("#[Max     =        1.000, Total count    =         1000]"));
        assert!(text.contains("SubBuckets     =         2048]"));
    }

    #[test]
    fn json_has_the_contract_keys() {
        let s = Summary {
            mode: "open".into(),
            description: String::new(),
            duration_s: 2.0,
            stats: Stats::new(),
            scenarios: vec![Scenario::Good],
            rate: Some(100.0),
            connections: None,
            threads: Some(1),
            cpu: Some(CpuTime {
                user: Duration::from_millis(10),
                system: Duration::from_millis(5),
            }),
            elapsed: None,
            fallback: false,
            send_delay: Some(Duration::from_micros(50)),
            proxy_protocol: None,
            payload: None,
            flash_gateway: false,
            websocket: false,
        };
        let v = json(&s);
        let mut s = s;
        let good = &mut s.stats.by_scenario[Scenario::Good.index()];
        good.errors[ErrorKind::LocalLimit.index()] = 2;
        good.errors[ErrorKind::Io.index()] = 3;
        let text = text(&s);
        assert!(
            text.contains("ports_exhausted 0, local_limit 2, io 3"),
            "{text}"
        );
        let w = json(&s);
        assert_eq!(w["errors"]["local_limit"], json!(2));
        assert_eq!(w["errors"]["io"], json!(3));
        assert_eq!(w["errors"]["ports_exhausted"], json!(0));
        assert_eq!(w["errors"]["reset"], json!(0));
        for k in [
            "mode",
            "duration_s",
            "ok",
            "throughput_per_sec",
            "errors",
            "latency_us",
        ] {
            assert!(v.get(k).is_some(), "{k}");
        }
        for k in ErrorKind::ALL {
            assert_eq!(v["errors"][k.name()], json!(0), "{k}");
        }
        assert_eq!(
            v["errors"].as_object().map(Map::len),
            Some(ErrorKind::ALL.len())
        );
        for h in ["total", "connect", "first_byte"] {
            for k in ["p50", "p90", "p99", "p99_9", "max"] {
                assert!(v["latency_us"][h][k].is_u64(), "{h}.{k}");
            }
        }
        assert_eq!(v["mode"], json!("open"));
        assert_eq!(v["send_delay_us"], json!(50.0));
    }
}
