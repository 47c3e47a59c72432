//! `--payload`: the echo test, against in-test echo servers (loopback): a
//! faithful echo is all ok with the right byte counts, a corrupted, short or
//! cut-off echo is an error naming where, memory stays bounded for a large
//! payload, and a PROXY header goes first, then the payload.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;

/// Echoes everything until EOF, then closes; `corrupt` flips the byte at
/// that offset of the stream, `keep` echoes only that many bytes (but reads
/// everything).
fn echo(s: &mut TcpStream, corrupt: Option<u64>, keep: Option<u64>) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let mut buf = [0u8; 16 * 1024];
    let mut offset = 0u64;
    loop {
        let n = match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(c) = corrupt {
            if (offset..offset + n as u64).contains(&c) {
                buf[(c - offset) as usize] ^= 0x20;
            }
        }
        let end = match keep {
            Some(k) => k.saturating_sub(offset).min(n as u64) as usize,
            None => n,
        };
        offset += n as u64;
        if s.write_all(&buf[..end]).is_err() {
            return;
        }
    }
    let _ = s.shutdown(Shutdown::Write);
}

fn echo_server(corrupt: Option<u64>, keep: Option<u64>) -> Fake {
    Fake::start(false, move |mut s, _| echo(&mut s, corrupt, keep))
}

#[test]
fn a_faithful_echo_is_ok_with_the_byte_counts() {
    let dir = TempDir::new("payload-ok");
    let fake = echo_server(None, None);
    // Closed loop.
    let run = run_loadgen(
        &dir,
        "closed",
        &[
            "-c",
            "4",
            "--count",
            "100",
            "--payload",
            "64KiB",
            &fake.target(),
        ],
    );
    let j = &run.json;
    assert_eq!(u(j, &["ok"]), 100, "{}", run.stdout);
    assert_eq!(errors_total(j), 0, "{}", run.stdout);
    assert_eq!(u(j, &["payload_bytes"]), 65536);
    assert_eq!(u(j, &["bytes_sent"]), 100 * 65536);
    assert_eq!(u(j, &["bytes_received"]), 100 * 65536);
    assert!(
        j["sent_mb_per_sec"].as_f64().is_some_and(|x| x > 0.0),
        "{j}"
    );
    assert!(
        j["received_mb_per_sec"].as_f64().is_some_and(|x| x > 0.0),
        "{j}"
    );
    assert!(
        run.stdout.contains("payload: 65536 bytes"),
        "{}",
        run.stdout
    );
    // Open loop, from several source addresses, with an odd size.
    let run = run_loadgen(
        &dir,
        "open",
        &[
            "--rate",
            "200",
            "--count",
            "60",
            "--payload",
            "4099",
            "--source",
            "127.0.0.2-127.0.0.4",
            &fake.target(),
        ],
    );
    let j = &run.json;
    assert_eq!(u(j, &["ok"]), 60, "{}", run.stdout);
    assert_eq!(errors_total(j), 0, "{}", run.stdout);
    assert_eq!(u(j, &["bytes_sent"]), 60 * 4099);
    assert_eq!(u(j, &["bytes_received"]), 60 * 4099);
    let peers = fake.peers.lock().expect("peers").clone();
    for ip in ["127.0.0.2", "127.0.0.3", "127.0.0.4"] {
        let ip: IpAddr = ip.parse().expect("ip");
        assert!(peers.iter().any(|p| p.ip() == ip), "{ip} never used");
    }
}

#[test]
fn a_corrupted_byte_is_a_bad_response_naming_its_offset() {
    let dir = TempDir::new("payload-corrupt");
    let fake = echo_server(Some(1000), None);
    let run = run_loadgen(
        &dir,
        "corrupt",
        &[
            "-c",
            "2",
            "--count",
            "20",
            "--payload",
            "4096",
            &fake.target(),
        ],
    );
    let j = &run.json;
    assert_eq!(u(j, &["ok"]), 0, "{}", run.stdout);
    assert_eq!(u(j, &["errors", "bad_response"]), 20, "{}", run.stdout);
    assert_eq!(errors_total(j), 20);
    let first = j["first_errors"]["bad_response"].as_str().unwrap_or("");
    assert!(first.contains("echo differs at byte 1000"), "{first}");
}

#[test]
fn a_short_echo_or_an_early_close_is_an_error() {
    let dir = TempDir::new("payload-short");
    // Reads everything, echoes only the first 3000 bytes, closes cleanly.
    let fake = echo_server(None, Some(3000));
    let run = run_loadgen(
        &dir,
        "short",
        &[
            "-c",
            "2",
            "--count",
            "20",
            "--payload",
            "8KiB",
            &fake.target(),
        ],
    );
    let j = &run.json;
    assert_eq!(u(j, &["ok"]), 0, "{}", run.stdout);
    assert_eq!(u(j, &["errors", "bad_response"]), 20, "{}", run.stdout);
    let first = j["first_errors"]["bad_response"].as_str().unwrap_or("");
    assert!(first.contains("after 3000 of 8192 bytes"), "{first}");
    // Closes after its first read of a larger payload, without echoing:
    // never ok, whether the client sees a reset or a short echo.
    let fake = Fake::start(false, |mut s, _| {
        let mut buf = [0u8; 1024];
        let _ = s.read(&mut buf);
    });
    let run = run_loadgen(
        &dir,
        "closed",
        &[
            "-c",
            "2",
            "--count",
            "20",
            "--payload",
            "1MiB",
            &fake.target(),
        ],
    );
    let j = &run.json;
    assert_eq!(u(j, &["ok"]), 0, "{}", run.stdout);
    assert_eq!(errors_total(j), 20, "{}", run.stdout);
    assert_eq!(u(j, &["errors", "timeout"]), 0, "{}", run.stdout);
}

/// Runs the binary, returning its peak resident set (KiB, from wait4) and
/// its JSON summary.
fn run_measured(dir: &TempDir, args: &[&str]) -> (i64, serde_json::Value) {
    let json_path = dir.path("measured.json");
    // Reaped by wait4 below (for its rusage), not by `Child::wait`.
    #[allow(clippy::zombie_processes)]
    let child = Command::new(loadgen_bin())
        .args(args)
        .arg("--json")
        .arg(&json_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("run flashpolicy-loadgen");
    let pid = i32::try_from(child.id()).expect("pid");
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value of the plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our own child, not yet waited for (the `Child` is
    // never waited on), and both pointers are to live locals.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(r, pid, "wait4: {}", std::io::Error::last_os_error());
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "status {status}"
    );
    let text = std::fs::read_to_string(&json_path).expect("the --json file");
    (
        usage.ru_maxrss,
        serde_json::from_str(&text).expect("valid JSON"),
    )
}

#[test]
fn large_payloads_keep_memory_bounded() {
    let dir = TempDir::new("payload-large");
    let fake = echo_server(None, None);
    // 1 MiB each, several at once.
    let run = run_loadgen(
        &dir,
        "mib",
        &[
            "-c",
            "4",
            "--count",
            "16",
            "--payload",
            "1MiB",
            &fake.target(),
        ],
    );
    assert_eq!(u(&run.json, &["ok"]), 16, "{}", run.stdout);
    assert_eq!(u(&run.json, &["bytes_received"]), 16 << 20);
    // Two clients of 128 MiB each at once: buffering a payload would take
    // 256 MiB; the generator's whole peak RSS stays far below one payload.
    let (rss_kib, j) = run_measured(
        &dir,
        &[
            "-c",
            "2",
            "--count",
            "2",
            "--timeout",
            "60s",
            "--payload",
            "128MiB",
            &fake.target(),
        ],
    );
    assert_eq!(u(&j, &["ok"]), 2, "{j}");
    assert_eq!(u(&j, &["bytes_received"]), 2 * (128 << 20), "{j}");
    assert!(rss_kib < 64 * 1024, "peak RSS {rss_kib} KiB");
}

/// Reads a PROXY v1 or v2 header off `s`; returns the source address it
/// claims, or None when it is not a valid header.
fn read_proxy_header(s: &mut TcpStream) -> Option<SocketAddr> {
    let mut first = [0u8; 12];
    s.read_exact(&mut first[..5]).ok()?;
    if &first[..5] == b"PROXY" {
        let mut line = first[..5].to_vec();
        let mut b = [0u8; 1];
        while !line.ends_with(b"\r\n") && line.len() < 108 {
            s.read_exact(&mut b).ok()?;
            line.push(b[0]);
        }
        let text = String::from_utf8(line).ok()?;
        let f: Vec<&str> = text.trim_end().split(' ').collect();
        if f.len() != 6 || f[1] != "TCP4" {
            return None;
        }
        return Some(SocketAddr::new(f[2].parse().ok()?, f[4].parse().ok()?));
    }
    s.read_exact(&mut first[5..]).ok()?;
    if first != *b"\r\n\r\n\0\r\nQUIT\n" {
        return None;
    }
    let mut fixed = [0u8; 4];
    s.read_exact(&mut fixed).ok()?;
    let len = u16::from_be_bytes([fixed[2], fixed[3]]) as usize;
    if fixed[0] != 0x21 || fixed[1] != 0x11 || len != 12 {
        return None;
    }
    let mut addrs = [0u8; 12];
    s.read_exact(&mut addrs).ok()?;
    let ip = std::net::Ipv4Addr::new(addrs[0], addrs[1], addrs[2], addrs[3]);
    Some(SocketAddr::new(
        IpAddr::V4(ip),
        u16::from_be_bytes([addrs[8], addrs[9]]),
    ))
}

#[test]
fn a_proxy_header_goes_first_then_the_payload() {
    for version in ["v1", "v2"] {
        let dir = TempDir::new(&format!("payload-proxy-{version}"));
        let good = Arc::new(AtomicU64::new(0));
        let fake = {
            let good = Arc::clone(&good);
            Fake::start(false, move |mut s, _| {
                let peer = s.peer_addr().ok();
                if read_proxy_header(&mut s).is_some_and(|a| Some(a) == peer) {
                    good.fetch_add(1, Ordering::SeqCst);
                    echo(&mut s, None, None);
                }
            })
        };
        let run = run_loadgen(
            &dir,
            "proxy",
            &[
                "-c",
                "3",
                "--count",
                "30",
                "--payload",
                "100KiB",
                "--proxy-protocol",
                version,
                &fake.target(),
            ],
        );
        let j = &run.json;
        assert_eq!(u(j, &["ok"]), 30, "{version}: {}", run.stdout);
        assert_eq!(good.load(Ordering::SeqCst), 30, "{version}");
        // The header is not payload: only the payload is counted.
        assert_eq!(u(j, &["bytes_sent"]), 30 * 102_400, "{version}");
        assert_eq!(j["proxy_protocol"], version);
    }
}

#[test]
fn payload_usage_errors() {
    for args in [
        &["--payload", "0", "127.0.0.1:1"][..],
        &["--payload", "12 parsecs", "127.0.0.1:1"],
        &["--payload", "1KiB", "--scenario", "idle", "127.0.0.1:1"],
        &[
            "--payload",
            "1KiB",
            "--flash-fallback",
            "843",
            "127.0.0.1:1",
        ],
    ] {
        let out = run_plain(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let msg = String::from_utf8_lossy(&out.stderr);
        assert!(msg.contains("--payload"), "{args:?}: {msg}");
    }
}
