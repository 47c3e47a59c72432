//! `--send-delay`: the request leaves only that long after the handshake.
//! Only lower bounds on time are asserted (the machine may be slow and
//! noisy); upper bounds are seconds.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

/// A server that notes, for each connection, how long after `accept`
/// returned the whole request had arrived, then answers with the policy.
fn timing_server() -> (Fake, Arc<Mutex<Vec<Duration>>>) {
    let gaps = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&gaps);
    let fake = Fake::start(false, move |mut s: TcpStream, _| {
        let accepted = Instant::now();
        if read_request(&mut s, Duration::from_secs(5)) == REQUEST {
            if let Ok(mut v) = seen.lock() {
                v.push(accepted.elapsed());
            }
            let _ = s.write_all(&reply());
        }
    });
    (fake, gaps)
}

fn sorted(gaps: &Mutex<Vec<Duration>>) -> Vec<Duration> {
    let mut v = gaps.lock().map(|v| v.clone()).unwrap_or_default();
    v.sort();
    v
}

#[test]
fn the_request_waits_for_the_send_delay() {
    let dir = TempDir::new("send-delay");
    for (name, load) in [("closed", ["-c", "2"]), ("open", ["--rate", "40"])] {
        let (fake, gaps) = timing_server();
        let mut args = vec!["--count", "6", "--send-delay", "50ms"];
        args.extend(load);
        let target = fake.target();
        args.push(&target);
        let run = run_loadgen(&dir, name, &args);
        assert_eq!(u(&run.json, &["ok"]), 6, "{name}: {}", run.stdout);
        assert_eq!(errors_total(&run.json), 0, "{name}: {}", run.stdout);
        assert_eq!(run.json["send_delay_us"], 50_000.0, "{name}");
        assert!(run.stdout.contains("send delay 50ms"), "{}", run.stdout);
        let gaps = sorted(&gaps);
        assert_eq!(gaps.len(), 6, "{name}: {gaps:?}");
        // The client starts its delay when it sees the handshake done,
        // which is no later than the server's accept returns, so each
        // request arrives 50 ms after the accept or later. The slack on
        // the first is for an accept thread that was scheduled late (12 ms
        // late seen under a parallel build); most must be on time.
        assert!(gaps[0] >= Duration::from_millis(25), "{name}: {gaps:?}");
        assert!(gaps[3] >= Duration::from_millis(49), "{name}: {gaps:?}");
        // Latency still counts from the (intended) start, so the reply
        // began more than the delay after it.
        let first_byte = u(&run.json, &["latency_us", "first_byte", "p50"]);
        assert!(
            first_byte >= 50_000,
            "{name}: first byte p50 {first_byte} µs"
        );
    }
}

#[test]
fn without_a_send_delay_the_request_goes_at_once() {
    let dir = TempDir::new("no-send-delay");
    let (fake, gaps) = timing_server();
    let run = run_loadgen(
        &dir,
        "default",
        &["-c", "2", "--count", "20", &fake.target()],
    );
    assert_eq!(u(&run.json, &["ok"]), 20, "{}", run.stdout);
    assert_eq!(errors_total(&run.json), 0, "{}", run.stdout);
    assert_eq!(run.json["send_delay_us"], 0.0);
    assert!(!run.stdout.contains("send delay"), "{}", run.stdout);
    let gaps = sorted(&gaps);
    assert_eq!(gaps.len(), 20, "{gaps:?}");
    // No delay was added: even the slowest request arrived well within
    // the seconds that a loaded machine could take.
    assert!(gaps[19] < Duration::from_secs(3), "{gaps:?}");
}
