//! Fetching one policy file: connect, send the policy request (nothing
//! else, ever), record every read until the server closes.

use std::fmt;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use flashpolicy_proto::clients::Fetched;
use flashpolicy_proto::reply::nul_count;
use flashpolicy_proto::POLICY_REQUEST;

/// The most bytes kept of a reply (policies are at most 10 KB).
pub const MAX_REPLY: usize = 64 * 1024;
/// After the first NUL, how long to wait for the server to close (bytes
/// after the NUL are a defect).
const AFTER_NUL: Duration = Duration::from_millis(200);

/// Something wrong with a reply, even one a client accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Defect {
    /// Bytes arrived before the request was sent.
    BeforeRequest,
    /// The server reset the connection.
    Reset,
    /// The reply has no NUL.
    NoNul,
    /// The reply has more than one NUL.
    ManyNuls(usize),
    /// Bytes follow the only NUL.
    AfterNul,
    /// The fetch ran out of time.
    TimedOut,
    /// The client's read stopped before the server's last byte.
    Cut,
}

impl Defect {
    /// A short name for JSON.
    pub fn name(self) -> &'static str {
        match self {
            Defect::BeforeRequest => "before_request",
            Defect::Reset => "reset",
            Defect::NoNul => "no_nul",
            Defect::ManyNuls(_) => "many_nuls",
            Defect::AfterNul => "after_nul",
            Defect::TimedOut => "timed_out",
            Defect::Cut => "cut",
        }
    }
}

impl fmt::Display for Defect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Defect::BeforeRequest => f.write_str("sent before the request"),
            Defect::Reset => f.write_str("reset by the server"),
            Defect::NoNul => f.write_str("no NUL"),
            Defect::ManyNuls(n) => write!(f, "{n} NULs"),
            Defect::AfterNul => f.write_str("bytes after the NUL"),
            Defect::TimedOut => f.write_str("timed out"),
            Defect::Cut => f.write_str("cut by a single read"),
        }
    }
}

/// One fetch, as it went.
#[derive(Debug, Clone)]
pub struct Record {
    /// The port fetched.
    pub port: u16,
    /// Connect to close (or to giving up).
    pub elapsed: Duration,
    /// What came back, for the client model.
    pub fetched: Fetched,
    /// What was wrong with it.
    pub defects: Vec<Defect>,
}

fn remaining(deadline: Instant) -> Option<Duration> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|d| !d.is_zero())
}

/// Fetches the policy served at `addr`, all within `timeout`, after looking
/// for up to `early` (less if the timeout runs out) for bytes the server
/// sends before the request.
pub fn fetch(addr: SocketAddr, timeout: Duration, early: Duration) -> Record {
    let start = Instant::now();
    let deadline = start + timeout;
    let mut defects = Vec::new();
    let mut probe = Duration::ZERO;
    let times = Times {
        timeout,
        deadline,
        early,
    };
    let (chunks, failure) = exchange(addr, &times, &mut defects, &mut probe);
    let fetched = if chunks.is_empty() {
        Fetched::Failed(failure.unwrap_or_else(|| "closed without replying".to_string()))
    } else {
        let all = chunks.concat();
        match nul_count(&all) {
            (0, _) => defects.push(Defect::NoNul),
            (1, true) => {}
            (1, false) => defects.push(Defect::AfterNul),
            (n, _) => defects.push(Defect::ManyNuls(n)),
        }
        Fetched::Reply(chunks)
    };
    Record {
        port: addr.port(),
        // The look for early bytes is the checker's, not the client's.
        elapsed: start.elapsed().saturating_sub(probe),
        fetched,
        defects,
    }
}

/// The time limits of one exchange.
struct Times {
    timeout: Duration,
    deadline: Instant,
    early: Duration,
}

/// The reads of one exchange, and why it failed if nothing came.
fn exchange(
    addr: SocketAddr,
    times: &Times,
    defects: &mut Vec<Defect>,
    probe: &mut Duration,
) -> (Vec<Vec<u8>>, Option<String>) {
    let Times {
        timeout,
        deadline,
        early,
    } = *times;
    let timed_out = |defects: &mut Vec<Defect>| {
        defects.push(Defect::TimedOut);
        Some(format!("timed out after {} ms", timeout.as_millis()))
    };
    let mut stream = match TcpStream::connect_timeout(&addr, timeout) {
        Ok(s) => s,
        Err(e) if e.kind() == ErrorKind::TimedOut => return (Vec::new(), timed_out(defects)),
        Err(e) => return (Vec::new(), Some(format!("cannot connect: {e}"))),
    };
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    let mut buf = vec![0u8; MAX_REPLY];
    // Bytes before the request: a server that does not wait for it.
    if let Some(wait) = remaining(deadline) {
        let looked = Instant::now();
        if stream.set_read_timeout(Some(early.min(wait))).is_ok()
            && matches!(stream.peek(&mut buf[..1]), Ok(n) if n > 0)
        {
            defects.push(Defect::BeforeRequest);
        }
        *probe = looked.elapsed();
    }
    let written = stream
        .set_write_timeout(remaining(deadline))
        .and_then(|()| stream.write_all(POLICY_REQUEST));
    if let Err(e) = written {
        if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe) {
            defects.push(Defect::Reset);
        }
        // Whatever the server sent before closing is still worth reading.
        if !defects.contains(&Defect::BeforeRequest) {
            return (Vec::new(), Some(format!("cannot send the request: {e}")));
        }
    }
    let mut total = 0;
    let mut nul_at: Option<Instant> = None;
    let failure = loop {
        let limit = match (remaining(deadline), nul_at) {
            (None, None) => break timed_out(defects),
            (None, Some(_)) => break None,
            (Some(left), None) => left,
            (Some(left), Some(at)) => match remaining(at + AFTER_NUL) {
                Some(grace) => grace.min(left),
                None => break None,
            },
        };
        if stream.set_read_timeout(Some(limit)).is_err() {
            break Some("cannot set a read timeout".to_string());
        }
        match stream.read(&mut buf[..MAX_REPLY - total]) {
            Ok(0) => break None,
            Ok(n) => {
                if nul_at.is_none() && buf[..n].contains(&0) {
                    nul_at = Some(Instant::now());
                }
                chunks.push(buf[..n].to_vec());
                total += n;
                if total >= MAX_REPLY {
                    break None;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if nul_at.is_none() {
                    break timed_out(defects);
                }
                break None;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                if !defects.contains(&Defect::Reset) {
                    defects.push(Defect::Reset);
                }
                break Some("reset by the server".to_string());
            }
            Err(e) => break Some(format!("read failed: {e}")),
        }
    };
    (chunks, failure)
}
