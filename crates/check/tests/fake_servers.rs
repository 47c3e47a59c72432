//! `flashpolicy-check` against fake policy servers on loopback, each with
//! one fault: a silent master port, no NUL, two NULs, a reply sent before
//! the request, a reset, a reply larger than one read, a destination-port
//! policy with `<site-control>`. Every fake answers a bounded number of
//! connections and every wait is bounded.

#[allow(dead_code)] // the server's suites use the rest
#[path = "../../server/tests/common/ports.rs"]
mod ports;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::thread;
use std::time::Duration;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_flashpolicy-check");

const POLICY: &str =
    "<?xml version=\"1.0\"?><cross-domain-policy><allow-access-from domain=\"*\" to-ports=\"*\"/></cross-domain-policy>";

/// Reads the request (up to its NUL), bounded in size and time.
fn read_request(stream: &mut TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while got.len() < 64 {
        match stream.read(&mut byte) {
            Ok(1) if byte[0] == 0 => return,
            Ok(1) => got.push(byte[0]),
            _ => return,
        }
    }
}

/// A fake server on loopback answering up to `connections` connections,
/// each on its own thread, with `answer`.
fn fake(connections: usize, answer: fn(TcpStream)) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    thread::spawn(move || {
        for stream in listener.incoming().take(connections) {
            let Ok(stream) = stream else { return };
            thread::spawn(move || answer(stream));
        }
    });
    addr
}

fn reply_with(bytes: &[u8]) -> impl Fn(TcpStream) {
    let bytes = bytes.to_vec();
    move |mut stream: TcpStream| {
        read_request(&mut stream);
        let _ = stream.write_all(&bytes);
    }
}

/// Runs the checker with `--json`; returns the exit code and the object.
fn check(port: u16, args: &[&str]) -> (i32, Value) {
    let target = format!("127.0.0.1:{port}");
    let mut cmd = Command::new(BIN);
    cmd.arg(&target)
        .args(["--from", "https://game.example.com", "--json"])
        .args(args);
    // Long enough for a fake's thread that runs late under a parallel
    // test run; the fakes answer or close at once, so no test waits it out.
    if !args.contains(&"--timeout") {
        cmd.args(["--timeout", "10s"]);
    }
    let output = cmd.output().expect("run flashpolicy-check");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let json: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{e}: stdout {stdout:?}, stderr {:?}", output.stderr));
    (output.status.code().expect("exit code"), json)
}

fn client<'a>(json: &'a Value, name: &str) -> &'a Value {
    json["clients"]
        .as_array()
        .expect("clients")
        .iter()
        .find(|c| c["client"] == name)
        .unwrap_or_else(|| panic!("no {name} in {json}"))
}

fn defects(client: &Value, fetch: usize) -> Vec<String> {
    client["fetches"][fetch]["defects"]
        .as_array()
        .expect("defects")
        .iter()
        .map(|d| d.as_str().expect("name").to_string())
        .collect()
}

#[test]
fn a_silent_master_port_falls_back_to_the_destination_after_the_timeout() {
    fn silent(mut stream: TcpStream) {
        read_request(&mut stream);
        // Hold the connection, say nothing; the checker gives up first.
        thread::sleep(Duration::from_secs(15));
    }
    fn good(stream: TcpStream) {
        reply_with(format!("{POLICY}\0").as_bytes())(stream);
    }
    let master = fake(4, silent);
    let dest = fake(4, good);
    let master_port = master.port().to_string();
    let (code, json) = check(
        dest.port(),
        &[
            "--client",
            "flash",
            "--timeout",
            "2s",
            "--master-port",
            &master_port,
        ],
    );
    let flash = client(&json, "flash");
    assert_eq!(flash["allowed"], true, "{json}");
    assert_eq!(flash["fetches"][0]["master"], true);
    assert!(
        flash["fetches"][0]["outcome"]
            .as_str()
            .is_some_and(|o| o.contains("timed out")),
        "{json}"
    );
    assert_eq!(defects(flash, 0), ["timed_out"]);
    // The time of each fetch is reported.
    assert!(flash["fetches"][0]["time_ms"].is_u64() && flash["fetches"][1]["time_ms"].is_u64());
    assert_eq!(
        flash["decided_by"]["policy"],
        format!("127.0.0.1:{}", dest.port())
    );
    // Allowed, but the client waited for a timeout: WARNING.
    assert_eq!((code, json["status"].as_str()), (1, Some("WARNING")));
}

#[test]
fn no_nul() {
    let dest = fake(6, |s| reply_with(POLICY.as_bytes())(s));
    let closed = ports::closed_port().port().to_string();
    let (code, json) = check(dest.port(), &["--master-port", &closed]);
    let flash = client(&json, "flash");
    // Flash Player takes what came before the close.
    assert_eq!(flash["allowed"], true, "{json}");
    assert_eq!(defects(flash, 1), ["no_nul"]);
    // Lightspark drops the last byte (a `>`), which breaks the document.
    assert_eq!(client(&json, "lightspark")["allowed"], false, "{json}");
    assert_eq!(code, 2);
}

#[test]
fn two_nuls() {
    let dest = fake(6, |s| reply_with(format!("{POLICY}\0\0").as_bytes())(s));
    let closed = ports::closed_port().port().to_string();
    let (code, json) = check(
        dest.port(),
        &["--client", "flash", "--master-port", &closed],
    );
    let flash = client(&json, "flash");
    assert_eq!(flash["allowed"], true, "{json}");
    assert_eq!(defects(flash, 1), ["many_nuls"]);
    assert_eq!(code, 1);
}

/// The checker, as Flash Player with `--early-wait early`, against a
/// server that sends its policy before the request.
fn check_eager(early: &str) -> (i32, Value) {
    fn eager(mut stream: TcpStream) {
        let _ = stream.write_all(format!("{POLICY}\0").as_bytes());
        read_request(&mut stream);
    }
    let dest = fake(2, eager);
    let closed = ports::closed_port().port().to_string();
    check(
        dest.port(),
        &[
            "--client",
            "flash",
            "--master-port",
            &closed,
            "--early-wait",
            early,
        ],
    )
}

#[test]
fn a_reply_before_the_request() {
    // The eager fake's thread may run late: look for its bytes for long
    // enough (they come at once on time, so the look ends then).
    let (code, json) = check_eager("10s");
    let flash = client(&json, "flash");
    assert!(
        defects(flash, 1).contains(&"before_request".to_string()),
        "{json}"
    );
    assert_eq!(code, 1);
}

#[test]
fn an_early_wait_of_zero_does_not_look() {
    let (code, json) = check_eager("0s");
    let flash = client(&json, "flash");
    assert_eq!(flash["allowed"], true, "{json}");
    assert_eq!(defects(flash, 1), Vec::<String>::new(), "{json}");
    assert_eq!(code, 0, "{json}");
}

#[test]
fn a_reset() {
    fn reset(mut stream: TcpStream) {
        read_request(&mut stream);
        // SO_LINGER 0: close sends RST.
        let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
        drop(stream);
    }
    let master = fake(2, reset);
    let master_port = master.port().to_string();
    let (code, json) = check(
        ports::closed_port().port(),
        &["--client", "unity", "--master-port", &master_port],
    );
    let unity = client(&json, "unity");
    assert_eq!(unity["allowed"], false, "{json}");
    assert!(defects(unity, 0).contains(&"reset".to_string()), "{json}");
    assert_eq!(code, 2);
}

#[test]
fn a_reply_larger_than_one_read() {
    // 6,000 bytes: more than Unity's one 5,000-byte Receive.
    fn big(stream: TcpStream) {
        let pad = "x".repeat(6000);
        let doc = POLICY.replace(
            "</cross-domain-policy>",
            &format!("<!--{pad}--></cross-domain-policy>"),
        );
        reply_with(format!("{doc}\0").as_bytes())(stream);
    }
    let master = fake(6, big);
    let master_port = master.port().to_string();
    let (code, json) = check(
        ports::closed_port().port(),
        &["--master-port", &master_port],
    );
    let unity = client(&json, "unity");
    assert_eq!(unity["allowed"], false, "{json}");
    assert!(defects(unity, 0).contains(&"cut".to_string()), "{json}");
    assert_eq!(client(&json, "flash")["allowed"], true, "{json}");
    assert_eq!(code, 2);
}

#[test]
fn a_destination_port_policy_with_site_control() {
    fn with_site_control(stream: TcpStream) {
        reply_with(
            b"<cross-domain-policy><site-control permitted-cross-domain-policies=\"all\"/>\
              <allow-access-from domain=\"*\" to-ports=\"*\"/></cross-domain-policy>\0",
        )(stream);
    }
    let dest = fake(6, with_site_control);
    let closed = ports::closed_port().port().to_string();
    let (code, json) = check(dest.port(), &["--master-port", &closed]);
    // Flash Player ignores <site-control> outside the master policy.
    assert_eq!(client(&json, "flash")["allowed"], true, "{json}");
    let lightspark = client(&json, "lightspark");
    assert_eq!(lightspark["allowed"], false, "{json}");
    assert!(
        lightspark["fetches"][1]["outcome"]
            .as_str()
            .is_some_and(|o| o.contains("site-control")),
        "{json}"
    );
    // Unity consults only the master port, which is closed.
    assert_eq!(client(&json, "unity")["allowed"], false, "{json}");
    assert_eq!(code, 2);
}

#[test]
fn usage_errors_are_unknown() {
    for args in [
        vec!["127.0.0.1", "--from", "a.com"],
        vec!["127.0.0.1:843", "--from", "ftp://a.com"],
        vec!["127.0.0.1:843"],
        vec![
            "127.0.0.1:843",
            "--from",
            "a.com",
            "--client",
            "silverlight",
        ],
        vec!["127.0.0.1:843", "--from", "a.com", "--timeout", "0s"],
    ] {
        let output = Command::new(BIN).args(&args).output().expect("run");
        assert_eq!(output.status.code(), Some(3), "{args:?}");
    }
}

#[test]
fn the_status_line_has_performance_data() {
    let dest = fake(2, |s| reply_with(format!("{POLICY}\0").as_bytes())(s));
    let port = dest.port().to_string();
    let output = Command::new(BIN)
        .args([&format!("127.0.0.1:{port}"), "--from", "game.example.com"])
        .args([
            "--client",
            "flash",
            "--master-port",
            &port,
            "--warning-ms",
            "60000",
        ])
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let mut lines = stdout.lines();
    let status = lines.next().expect("status line");
    assert!(
        status.starts_with("FLASHPOLICY OK - flash OK from http://game.example.com | time="),
        "{stdout}"
    );
    assert!(status.contains("ms;60000;;0 flash="), "{stdout}");
    let verdict = lines.next().expect("verdict line");
    assert!(
        verdict.starts_with(&format!("flash: OK - 127.0.0.1:{port} granted by line 1: <allow-access-from domain=\"*\" to-ports=\"*\"/>")),
        "{stdout}"
    );
    assert_eq!(output.status.code(), Some(0));
}
