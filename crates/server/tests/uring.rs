//! Tests specific to the io_uring engine: completion-queue overflow, mass
//! timeouts, resets, shutdown with thousands of operations in flight,
//! descriptor leaks and `--send-zc` (how `--backend auto` chooses is in
//! engine_choice.rs).
//!
//! Every behaviour test in the other files also runs against `uring` (see
//! `common::backends`). Where this kernel refuses io_uring, these tests print
//! why and pass without running (except the fallback tests, which need no
//! io_uring at all).

mod common;

use std::io::{ErrorKind, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::*;
use flashpolicy_proto::serve::Tally;

/// Overrides the ring size (submission entries; the CQ gets 4x).
const URING_ENTRIES: &str = "FLASHPOLICYD_URING_ENTRIES";

/// Whether io_uring works here; prints why a test is skipped if not.
fn uring_here(test: &str) -> bool {
    match uring_unavailable() {
        None => true,
        Some(why) => {
            skip_uring(test, &why);
            false
        }
    }
}

/// Raises this process's RLIMIT_NOFILE soft limit towards `want` (children
/// inherit it) and returns the soft limit now in force.
fn raise_nofile(want: u64) -> u64 {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the live struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } != 0 {
        return 1024;
    }
    let target: u64 = want.min(rl.rlim_max).max(rl.rlim_cur);
    if target > rl.rlim_cur {
        rl.rlim_cur = target;
        // SAFETY: setrlimit reads one live rlimit; raising the soft limit up
        // to the hard limit needs no privilege.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &rl) };
    }
    target
}

/// Fewest connections a many-connection test may run with: below this it
/// would pass without testing what it is about.
const MIN_AFFORDABLE: usize = 100;

/// How many connections `test` can afford: `want`, or fewer when the
/// descriptor limit is low (each connection costs one descriptor here and
/// one in the server). `None`, with the reason printed, when that is fewer
/// than `min(want, MIN_AFFORDABLE)`: the caller skips.
fn affordable(test: &str, want: usize) -> Option<usize> {
    let limit = raise_nofile(2 * want as u64 + 200) as usize;
    let n = want.min(limit.saturating_sub(200) / 2);
    let least = want.min(MIN_AFFORDABLE);
    if n < least {
        eprintln!(
            "{test}: skipped: RLIMIT_NOFILE is {limit}, enough for {n} connections; \
             the test needs at least {least}"
        );
        return None;
    }
    if n < want {
        eprintln!("{test}: RLIMIT_NOFILE is {limit}: using {n} connections instead of {want}");
    }
    Some(n)
}

/// Waits (bounded) until `pid` has at most `target` descriptors open;
/// returns the last count.
fn wait_fds(pid: u32, target: usize, timeout: Duration) -> usize {
    let deadline = Instant::now() + timeout;
    loop {
        let n = open_fds(pid);
        if n <= target || Instant::now() >= deadline {
            return n;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The totals the server printed at exit.
fn totals(log: &str) -> Tally {
    expect_totals(log, "uring")
}

/// Every accepted connection ended in exactly one way: none was lost.
fn assert_accounted(t: &Tally, what: &str) {
    assert_eq!(
        t.accepted,
        t.ended_total(),
        "{what}: accepted connections must each end exactly once: {t:?}"
    );
}

/// SIGTERM, then the exit status (must be 0) and the totals.
fn stop(server: &mut Server, within: Duration, what: &str) -> Tally {
    server.signal(libc::SIGTERM);
    let status = server
        .wait_exit(within)
        .unwrap_or_else(|| panic!("{what}: no exit within {within:?}:\n{}", server.log_text()));
    assert_eq!(
        status.code(),
        Some(0),
        "{what}: exit status; log:\n{}",
        server.log_text()
    );
    let log = server.log_text();
    assert!(!log.contains("panicked"), "{what}: panic:\n{log}");
    let t = totals(&log);
    assert_accounted(&t, what);
    t
}

/// Opens `n` connections and sends each `prefix` (maybe nothing).
fn open_many(addr: SocketAddr, n: usize, prefix: &[u8]) -> Vec<TcpStream> {
    (0..n)
        .map(|_| {
            let mut s = connect(addr);
            if !prefix.is_empty() {
                s.write_all(prefix).expect("write prefix");
            }
            s
        })
        .collect()
}

/// Closes `stream` with SO_LINGER 0, so the kernel sends RST.
fn reset(stream: TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    use std::os::fd::AsRawFd;
    // SAFETY: passes a live linger struct and its exact size to our socket.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_LINGER");
    drop(stream);
}

/// Reads each stream to its end and checks it got `expected` and a FIN.
fn assert_all_served(streams: Vec<TcpStream>, expected: &[u8], what: &str) {
    for (i, mut s) in streams.into_iter().enumerate() {
        let got = read_to_close(&mut s, 1 << 20)
            .unwrap_or_else(|(e, got)| panic!("{what} #{i}: {e} after {} bytes", got.len()));
        assert_eq!(got, expected, "{what} #{i}: wrong reply");
        assert_eq!(
            tcp_state(&s),
            TCP_CLOSE_WAIT,
            "{what} #{i}: not closed with FIN"
        );
    }
}

// ---------------------------------------------------------------------------
// Choosing the engine

#[test]
fn a_burst_larger_than_the_completion_queue_is_all_served() {
    if !uring_here("burst") {
        return;
    }
    // A ring of 4 submission entries has a 16-entry completion queue; the
    // burst overflows it many times over (IORING_FEAT_NODROP keeps them).
    let mut server = Server::builder("uring")
        .env(URING_ENTRIES, "4")
        .args(&["--threads", "1"])
        .start();
    let addr = server.addr();
    let expected = default_reply();
    const THREADS: usize = 8;
    const EACH: usize = 64;
    let Some(total) = affordable("burst", THREADS * EACH) else {
        return;
    };
    let per_thread = total / THREADS;
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let expected = expected.clone();
            std::thread::spawn(move || {
                let streams = open_many(addr, per_thread, REQUEST);
                assert_all_served(streams, &expected, &format!("burst thread {t}"));
            })
        })
        .collect();
    for h in handles {
        h.join().expect("a client thread failed");
    }
    let t = stop(&mut server, PROCESS_TIMEOUT, "burst");
    assert_eq!(t.served, (THREADS * per_thread) as u64, "{t:?}");
}

#[test]
fn thousands_of_idle_connections_time_out_together() {
    if !uring_here("idle") {
        return;
    }
    let Some(n) = affordable("idle", 2000) else {
        return;
    };
    let mut server = Server::start("uring", &["--threads", "1", "--timeout", "1500ms"]);
    let addr = server.addr();
    let pid = server.pid();
    let expected = default_reply();
    assert_served(addr, &[REQUEST], &expected, "before");
    let baseline = settled_fds(pid);

    let started = Instant::now();
    let idle = open_many(addr, n, b"");
    // Idle clients do not slow anybody else down.
    let t0 = Instant::now();
    assert_served(addr, &[REQUEST], &expected, "among idle clients");
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "slow among idle: {:?}",
        t0.elapsed()
    );

    for (i, mut s) in idle.into_iter().enumerate() {
        s.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        match read_to_close(&mut s, 64) {
            Ok(got) => assert!(got.is_empty(), "idle #{i} got {} bytes", got.len()),
            Err((e, _)) => panic!("idle #{i} was not closed: {e}"),
        }
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(30), "{n} timeouts took {took:?}");
    let left = wait_fds(pid, baseline, Duration::from_secs(5));
    assert_eq!(left, baseline, "descriptors after {n} timeouts");
    let t = stop(&mut server, PROCESS_TIMEOUT, "idle");
    assert_eq!(t.timed_out, n as u64, "{t:?}");
    assert_eq!(t.served, 2, "{t:?}");
}

#[test]
fn trickling_clients_time_out_too_and_free_their_descriptors() {
    if !uring_here("trickle") {
        return;
    }
    // Clients that send a byte every few milliseconds keep a recv
    // completing and being re-armed, so their deadlines pass while the
    // kernel is busy with the operation: the window in which an
    // ASYNC_CANCEL fails (EALREADY/ENOENT) and used to leave a connection
    // open for good. Every one must still be closed, and its descriptor
    // freed, soon after the timeout.
    let Some(n) = affordable("trickle", 300) else {
        return;
    };
    let mut server = Server::start("uring", &["--threads", "1", "--timeout", "500ms"]);
    let addr = server.addr();
    let pid = server.pid();
    let expected = default_reply();
    assert_served(addr, &[REQUEST], &expected, "before");
    let baseline = settled_fds(pid);

    // The request without its terminator, a byte every 40 ms: about 0.9 s,
    // so every deadline passes mid-request.
    let junk = TAG.to_vec();
    let streams = open_many(addr, n, b"");
    let writers: Vec<TcpStream> = streams
        .iter()
        .map(|s| s.try_clone().expect("clone"))
        .collect();
    let trickle = std::thread::spawn(move || {
        for byte in &junk {
            for mut w in &writers {
                // Fails once the server has closed it: expected.
                let _ = w.write_all(std::slice::from_ref(byte));
            }
            std::thread::sleep(Duration::from_millis(40));
        }
    });
    for (i, mut s) in streams.into_iter().enumerate() {
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        match read_to_close(&mut s, 1 << 20) {
            Ok(got) => assert!(got.is_empty(), "trickle #{i} got {} bytes", got.len()),
            // Bytes that arrive after the server's shutdown are unread at
            // its close, so the close may be a reset.
            Err((e, got)) => assert!(
                got.is_empty() && e.kind() == ErrorKind::ConnectionReset,
                "trickle #{i} was not closed: {e}"
            ),
        }
    }
    trickle.join().expect("trickle thread");
    let left = wait_fds(pid, baseline, Duration::from_secs(5));
    assert_eq!(left, baseline, "descriptors after {n} trickling clients");
    let t = stop(&mut server, PROCESS_TIMEOUT, "trickle");
    assert_eq!(t.timed_out + t.failed, n as u64, "{t:?}");
    assert_eq!(t.served, 1, "{t:?}");
}

#[test]
fn clients_that_reset_mid_operation_are_cleaned_up() {
    if !uring_here("resets") {
        return;
    }
    let mut server = Server::start("uring", &["--threads", "1", "--timeout", "10s"]);
    let addr = server.addr();
    let pid = server.pid();
    let expected = default_reply();
    assert_served(addr, &[REQUEST], &expected, "before");
    let baseline = settled_fds(pid);

    for round in 0..3 {
        // Reset after half a request (a recv in flight)...
        for s in open_many(addr, 100, &REQUEST[..10]) {
            reset(s);
        }
        // ...after the whole request (the reply may be in flight)...
        for s in open_many(addr, 100, REQUEST) {
            reset(s);
        }
        // ...and before sending anything.
        for s in open_many(addr, 100, b"") {
            reset(s);
        }
        assert_served(addr, &[REQUEST], &expected, &format!("after round {round}"));
    }
    let left = wait_fds(pid, baseline, Duration::from_secs(10));
    assert_eq!(left, baseline, "descriptors after resets");
    let t = stop(&mut server, PROCESS_TIMEOUT, "resets");
    assert_eq!(t.accepted, 4 + 900, "{t:?}");
    assert_eq!(
        t.timed_out, 0,
        "resets must not wait for the timeout: {t:?}"
    );
}

#[test]
fn sigterm_with_thousands_of_operations_in_flight_finishes_them_and_exits_0() {
    if !uring_here("shutdown") {
        return;
    }
    let Some(n) = affordable("shutdown", 2000) else {
        return;
    };
    let mut server = Server::start("uring", &["--threads", "2", "--timeout", "60s"]);
    let addr = server.addr();
    let expected = default_reply();
    // Thousands of recvs in flight, and some clients half-way through.
    let idle = open_many(addr, n, b"");
    let mut halfway = open_many(addr, 50, &REQUEST[..11]);
    assert_served(addr, &[REQUEST], &expected, "before");
    std::thread::sleep(Duration::from_millis(200));

    server.signal(libc::SIGTERM);
    assert!(
        server.wait_for_log("no longer accepting", PROCESS_TIMEOUT),
        "{}",
        server.log_text()
    );
    std::thread::sleep(Duration::from_millis(200));
    assert!(server.is_running(), "exited with connections in flight");

    // In-flight connections are still served after the signal.
    for s in &mut halfway {
        s.write_all(&REQUEST[11..]).expect("rest of request");
    }
    assert_all_served(halfway, &expected, "in flight at SIGTERM");
    // The idle ones close by themselves; then the server must exit 0.
    drop(idle);
    let status = server
        .wait_exit(Duration::from_secs(20))
        .unwrap_or_else(|| panic!("no exit after the last client left:\n{}", server.log_text()));
    assert_eq!(status.code(), Some(0), "{}", server.log_text());
    let t = totals(&server.log_text());
    assert_accounted(&t, "shutdown");
    assert_eq!(t.served, 51, "{t:?}");
}

#[test]
fn sigterm_with_idle_connections_exits_0_after_they_time_out() {
    if !uring_here("shutdown timeout") {
        return;
    }
    let Some(n) = affordable("shutdown timeout", 2000) else {
        return;
    };
    let mut server = Server::start("uring", &["--threads", "1", "--timeout", "1s"]);
    let addr = server.addr();
    let _idle = open_many(addr, n, b"");
    std::thread::sleep(Duration::from_millis(100));
    let t = stop(&mut server, Duration::from_secs(20), "shutdown timeout");
    assert_eq!(t.timed_out, n as u64, "{t:?}");
}

#[test]
fn no_descriptor_leaks_after_mixed_load() {
    if !uring_here("leaks") {
        return;
    }
    let mut server = Server::start("uring", &["--threads", "2", "--timeout", "2s"]);
    let addr = server.addr();
    let pid = server.pid();
    let expected = default_reply();
    assert_served(addr, &[REQUEST], &expected, "warm-up");
    let baseline = settled_fds(pid);

    let good = open_many(addr, 200, REQUEST);
    let garbage = open_many(addr, 100, b"GET / HTTP/1.0\r\n\r\n");
    let truncated = open_many(addr, 100, &REQUEST[..5]);
    for s in &truncated {
        s.shutdown(std::net::Shutdown::Write).expect("half-close");
    }
    let idle = open_many(addr, 50, b"");
    for s in open_many(addr, 100, &REQUEST[..15]) {
        reset(s);
    }
    assert_all_served(good, &expected, "good");
    for (what, streams) in [
        ("garbage", garbage),
        ("truncated", truncated),
        ("idle", idle),
    ] {
        for (i, mut s) in streams.into_iter().enumerate() {
            match read_to_close(&mut s, 64) {
                Ok(got) => assert!(got.is_empty(), "{what} #{i} got a reply"),
                Err((e, got)) => assert!(
                    got.is_empty() && e.kind() == ErrorKind::ConnectionReset,
                    "{what} #{i}: {e}"
                ),
            }
        }
    }
    let left = wait_fds(pid, baseline, Duration::from_secs(10));
    assert_eq!(left, baseline, "descriptors after the load");
    let t = stop(&mut server, PROCESS_TIMEOUT, "leaks");
    assert_eq!(t.served, 201, "{t:?}");
    assert_eq!(t.rejected, 200, "{t:?}");
    assert_eq!(t.timed_out, 50, "{t:?}");
}

#[test]
fn send_zc_serves_the_same_reply() {
    if !uring_here("send-zc") {
        return;
    }
    let mut server = Server::start("uring", &["--threads", "1", "--send-zc"]);
    let addr = server.addr();
    let expected = default_reply();
    assert_served(addr, &[REQUEST], &expected, "send-zc");
    assert_served(
        addr,
        &[&REQUEST[..7], &REQUEST[7..]],
        &expected,
        "send-zc split",
    );
    let streams = open_many(addr, 200, REQUEST);
    assert_all_served(streams, &expected, "send-zc burst");
    let t = stop(&mut server, PROCESS_TIMEOUT, "send-zc");
    assert_eq!(t.served, 202, "{t:?}");
}

#[test]
fn waiting_on_idle_connections_does_not_spin() {
    if !uring_here("no spin") {
        return;
    }
    let server = Server::start("uring", &["--threads", "2", "--timeout", "60s"]);
    let addr = server.addr();
    // Deadlines pending, recvs in flight, nothing arriving: the loop must
    // sleep in the kernel until the earliest deadline.
    let _idle = open_many(addr, 100, &REQUEST[..3]);
    std::thread::sleep(Duration::from_millis(200));
    let before = server.cpu_time();
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(1));
    let cpu = server.cpu_time().saturating_sub(before);
    assert!(
        cpu < started.elapsed() / 10,
        "used {cpu:?} of CPU in {:?} with only idle clients",
        started.elapsed()
    );
    assert_served(addr, &[REQUEST], &default_reply(), "after idling");
}

#[test]
fn fallback_ring_setups_work_too() {
    if !uring_here("ring set-up fallbacks") {
        return;
    }
    // As if the kernel refused SINGLE_ISSUER + DEFER_TASKRUN (then more):
    // completions then arrive without waiting for us, a different schedule.
    for (skip, flags) in [
        ("1", "coop_taskrun+taskrun_flag"),
        ("2", "submit_all"),
        ("3", "no setup flags"),
    ] {
        let mut server = Server::builder("uring")
            .env("FLASHPOLICYD_URING_SETUP", skip)
            .env(URING_ENTRIES, "4")
            .args(&["--threads", "1", "--timeout", "2s"])
            .start();
        let log = server.log_text();
        assert!(log.contains(&format!("({flags})")), "[{flags}] log:\n{log}");
        let addr = server.addr();
        let expected = default_reply();
        let idle = open_many(addr, 20, b"");
        assert_served(addr, &[&REQUEST[..5], &REQUEST[5..]], &expected, flags);
        assert_all_served(open_many(addr, 200, REQUEST), &expected, flags);
        for mut s in idle {
            let got = read_to_close(&mut s, 64).unwrap_or_else(|(e, _)| panic!("[{flags}] {e}"));
            assert!(got.is_empty(), "[{flags}] an idle client got a reply");
        }
        let t = stop(&mut server, PROCESS_TIMEOUT, flags);
        assert_eq!(t.served, 201, "[{flags}] {t:?}");
        assert_eq!(t.timed_out, 20, "[{flags}] {t:?}");
    }
}

#[test]
fn accept_under_fd_exhaustion_sheds_serves_and_leaks_nothing() {
    if !uring_here("fd exhaustion") {
        return;
    }
    let mut server = Server::builder("uring")
        .args(&["--threads", "1", "--timeout", "2s"])
        .nofile(48)
        .start();
    let addr = server.addr();
    let pid = server.pid();
    let expected = default_reply();
    assert_served(addr, &[REQUEST], &expected, "before");
    let baseline = settled_fds(pid);

    // Far more clients at once than the server has descriptors for, all
    // silent until the server has run out; then each sends its request.
    // Everyone gets the whole policy or nothing.
    let mut streams = open_many(addr, 300, b"");
    assert!(
        server.wait_for_log("shedding", Duration::from_secs(5)),
        "never ran out of descriptors:\n{}",
        server.log_text()
    );
    for s in &mut streams {
        // A shed client may already be reset; its read below tells.
        let _ = s.write_all(REQUEST);
    }
    let mut served = 0;
    for (i, mut s) in streams.into_iter().enumerate() {
        match read_to_close(&mut s, 1 << 20) {
            Ok(got) if got == expected => served += 1,
            Ok(got) => assert!(got.is_empty(), "#{i}: a partial reply of {}", got.len()),
            Err((e, got)) => assert!(
                got.is_empty() && e.kind() == ErrorKind::ConnectionReset,
                "#{i}: {e} after {} bytes",
                got.len()
            ),
        }
    }
    assert!(served > 0, "nobody was served");
    assert!(
        served_within(addr, &expected, Duration::from_secs(5)),
        "not serving again:\n{}",
        server.log_text()
    );
    let left = wait_fds(pid, baseline, Duration::from_secs(10));
    assert_eq!(left, baseline, "descriptors after exhaustion");
    let t = stop(&mut server, PROCESS_TIMEOUT, "fd exhaustion");
    assert!(t.served >= served as u64 + 2, "{t:?}");
    assert!(t.shed > 0, "nothing was shed: {t:?}");
}

#[test]
fn out_of_descriptors_at_shutdown_queued_clients_are_shed_not_reset() {
    // Both engines: the shutdown drain accepts what is still queued before
    // closing the listeners (closing one resets its queue). Out of
    // descriptors, each queued client must be shed (accepted and closed: a
    // FIN) with the spare descriptor, never left to the listener's reset.
    for backend in backends() {
        let mut server = Server::builder(backend)
            .args(&["--threads", "1", "--timeout", "1s"])
            .nofile(48)
            .start();
        let addr = server.addr();
        assert_served(addr, &[REQUEST], &default_reply(), backend);
        // Silent clients, far more than the server has descriptors for: it
        // runs out and sheds about one per back-off, so most are still
        // queued when the signal comes.
        let streams = open_many(addr, 200, b"");
        assert!(
            server.wait_for_log("shedding", Duration::from_secs(5)),
            "[{backend}] never ran out of descriptors:\n{}",
            server.log_text()
        );
        let t = stop(&mut server, PROCESS_TIMEOUT, backend);
        assert_eq!(t.accepted, 201, "[{backend}] everyone accepted: {t:?}");
        assert!(t.shed > 0, "[{backend}] nothing shed: {t:?}");
        for (i, mut s) in streams.into_iter().enumerate() {
            match read_to_close(&mut s, 64) {
                Ok(got) => assert!(got.is_empty(), "[{backend}] #{i} got a reply"),
                Err((e, _)) => panic!("[{backend}] #{i}: {e} (reset at shutdown?)"),
            }
        }
    }
}
