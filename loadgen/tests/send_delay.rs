//! `--send-delay`: the request leaves only that long after the handshake.
//! Only lower bounds on time are asserted (the machine may be slow and
//! noisy); upper bounds are seconds.

mod common;

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// How long ago the kernel completed the handshake of a socket `accept`
/// just returned, read before any data has arrived: until the first
/// segment with data, the socket's last-receive time (`tcpi_last_data_recv`,
/// in milliseconds) is the time the handshake's final ACK made it. `None`
/// when data has already arrived, so that time is gone.
fn handshake_age(s: &TcpStream) -> Option<Duration> {
    let info = tcp_info(s);
    // Only after reading the age: is data there already? If none is, none
    // was when the age was read either.
    s.set_nonblocking(true).expect("nonblocking");
    let waiting = matches!(s.peek(&mut [0u8; 1]), Ok(n) if n > 0);
    s.set_nonblocking(false).expect("blocking");
    (!waiting).then(|| Duration::from_millis(info.tcpi_last_data_recv.into()))
}

/// A server that notes, for each connection, how long after the kernel
/// completed its handshake the whole request had arrived, then answers with
/// the policy. Its clock starts at the handshake, not at `accept`, so a
/// test thread that runs late (as under a parallel test run) cannot shorten
/// a gap; a connection whose request came before the accept returned
/// cannot be timed and is noted as `None`.
fn timing_server() -> (String, Arc<Mutex<Vec<Option<Duration>>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let target = listener.local_addr().expect("addr").to_string();
    let gaps = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&gaps);
    thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(mut s) = s else { continue };
            let accepted = Instant::now();
            let age = handshake_age(&s);
            let seen = Arc::clone(&seen);
            thread::spawn(move || {
                if read_request(&mut s, Duration::from_secs(5)) == REQUEST {
                    if let Ok(mut v) = seen.lock() {
                        v.push(age.map(|a| a + accepted.elapsed()));
                    }
                    let _ = s.write_all(&reply());
                }
            });
        }
    });
    (target, gaps)
}

fn sorted(gaps: &Mutex<Vec<Option<Duration>>>) -> Vec<Option<Duration>> {
    let mut v = gaps.lock().map(|v| v.clone()).unwrap_or_default();
    v.sort();
    v
}

#[test]
fn the_request_waits_for_the_send_delay() {
    let dir = TempDir::new("send-delay");
    for (name, load) in [("closed", ["-c", "2"]), ("open", ["--rate", "40"])] {
        let (target, gaps) = timing_server();
        let mut args = vec!["--count", "6", "--send-delay", "50ms"];
        args.extend(load);
        args.push(&target);
        let run = run_loadgen(&dir, name, &args);
        assert_eq!(u(&run.json, &["ok"]), 6, "{name}: {}", run.stdout);
        assert_eq!(errors_total(&run.json), 0, "{name}: {}", run.stdout);
        assert_eq!(run.json["send_delay_us"], 50_000.0, "{name}");
        assert!(run.stdout.contains("send delay 50ms"), "{}", run.stdout);
        let gaps = sorted(&gaps);
        assert_eq!(gaps.len(), 6, "{name}: {gaps:?}");
        // The client starts its delay when it sees the handshake done, on
        // loopback within the same millisecond as the server's kernel, so
        // each request arrives 50 ms after the handshake or later (less the
        // kernel clock's tick, counted in whole milliseconds). A request
        // can come before the test's accept returns only if that thread was
        // more than 50 ms late; most must be timed.
        let timed: Vec<Duration> = gaps.iter().flatten().copied().collect();
        assert!(timed.len() >= 3, "{name}: {gaps:?}");
        assert!(timed[0] >= Duration::from_millis(45), "{name}: {gaps:?}");
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
    let (target, gaps) = timing_server();
    let run = run_loadgen(&dir, "default", &["-c", "2", "--count", "20", &target]);
    assert_eq!(u(&run.json, &["ok"]), 20, "{}", run.stdout);
    assert_eq!(errors_total(&run.json), 0, "{}", run.stdout);
    assert_eq!(run.json["send_delay_us"], 0.0);
    assert!(!run.stdout.contains("send delay"), "{}", run.stdout);
    let gaps = sorted(&gaps);
    assert_eq!(gaps.len(), 20, "{gaps:?}");
    // No delay was added: even the slowest timed request arrived well
    // within the seconds that a loaded machine could take.
    assert!(
        gaps.iter().flatten().all(|g| *g < Duration::from_secs(3)),
        "{gaps:?}"
    );
}
