//! `flashpolicy-echo`, the benchmarks' echo server: every byte comes back
//! (through a buffer much smaller than the payload), it half-closes after
//! the client does, and many clients at once are all echoed intact.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use common::*;

#[test]
fn echoes_through_a_small_buffer_and_half_closes() {
    let echo = Server::echo(&["--buffer", "4KiB"]);
    let mut s = TcpStream::connect(echo.addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let sent: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut w = s.try_clone().expect("clone");
    let data = sent.clone();
    let writer = std::thread::spawn(move || {
        w.write_all(&data).expect("send");
        w.shutdown(Shutdown::Write).expect("half-close");
    });
    let mut got = Vec::new();
    s.read_to_end(&mut got).expect("read to the close");
    writer.join().expect("writer");
    assert_eq!(got.len(), sent.len());
    assert!(got == sent, "the echo differs");
}

#[test]
fn many_clients_through_the_loadgen() {
    let dir = TempDir::new("echo-server");
    let echo = Server::echo(&[]);
    let target = echo.addr.to_string();
    for (name, payload) in [("small", "100"), ("large", "256KiB")] {
        let run = run_loadgen(
            &dir,
            name,
            &["-c", "32", "--count", "200", "--payload", payload, &target],
        );
        assert_eq!(u(&run.json, &["ok"]), 200, "{}", run.stdout);
        assert_eq!(errors_total(&run.json), 0, "{}", run.stdout);
    }
}
