//! The `--metrics` HTTP endpoint: `GET /metrics` on a thread of its own,
//! never on a worker.
//!
//! A small mio loop, so no client can hold it up: every client is
//! non-blocking and has a deadline ([`CLIENT_TIMEOUT`] to send its request,
//! as long again to take the answer); at most [`MAX_CLIENTS`] are held at
//! once, and one more arriving evicts the oldest, so silent clients cannot
//! lock a scraper out; a request is read into a fixed buffer of
//! [`MAX_REQUEST`] bytes and parsed with `httparse`. Answers: 200 with the
//! metrics for `GET` (or `HEAD`) `/metrics`, 404 for any other path, 405
//! for another method, 400 for a malformed request, 431 for one that does
//! not fit; each is followed by a close (no keep-alive).

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::{Duration, Instant};

use flashpolicy_proto::serve::RateLimit;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
use prometheus_client::registry::Registry;
use slab::Slab;
use tracing::{debug, error, warn};

use super::encode::render;

/// Clients held at once.
pub const MAX_CLIENTS: usize = 16;

/// The most bytes of request line and headers read from a client.
pub const MAX_REQUEST: usize = 8192;

/// How long a client has to send its request, and again to take the answer.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

/// Headers parsed at most; a request with more is answered 431.
const MAX_HEADERS: usize = 32;

/// How long accepting pauses after an accept error (out of descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

const LISTENER: Token = Token(usize::MAX);

/// The bound `--metrics` socket, not yet served.
#[derive(Debug)]
pub struct MetricsListener {
    listener: std::net::TcpListener,
}

impl MetricsListener {
    /// Binds `addr`.
    pub fn bind(addr: SocketAddr) -> io::Result<MetricsListener> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        Ok(MetricsListener { listener })
    }

    /// The address it is bound to (the port chosen when `addr` had 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves `registry` from a new thread, named `metrics`, until the
    /// process exits.
    pub fn spawn(self, registry: Registry) -> io::Result<()> {
        let poll = Poll::new()?;
        let mut listener = TcpListener::from_std(self.listener);
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let mut server = Server {
            poll,
            listener,
            clients: Slab::with_capacity(MAX_CLIENTS),
            registry,
            accept_paused_until: None,
            accept_warning: RateLimit::default(),
        };
        std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || {
                if let Err(e) = server.run() {
                    error!("metrics: the endpoint stopped: {e}");
                }
            })?;
        Ok(())
    }
}

/// Where a client is.
#[derive(Debug)]
enum Stage {
    /// Reading the request: `len` bytes of `buf` so far.
    Reading {
        buf: Box<[u8; MAX_REQUEST]>,
        len: usize,
    },
    /// Sending `out` from `sent` on.
    Writing { out: Vec<u8>, sent: usize },
}

#[derive(Debug)]
struct Client {
    stream: TcpStream,
    deadline: Instant,
    stage: Stage,
}

struct Server {
    poll: Poll,
    listener: TcpListener,
    clients: Slab<Client>,
    registry: Registry,
    accept_paused_until: Option<Instant>,
    accept_warning: RateLimit,
}

impl Server {
    fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(64);
        loop {
            let now = Instant::now();
            let next = self
                .clients
                .iter()
                .map(|(_, c)| c.deadline)
                .chain(self.accept_paused_until)
                .min();
            let timeout = next.map(|at| at.saturating_duration_since(now));
            crate::engine::common::poll_events(&mut self.poll, &mut events, timeout)?;
            let now = Instant::now();
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(now),
                    Token(key) => self.on_ready(key, now),
                }
            }
            if self.accept_paused_until.is_some_and(|at| at <= now) {
                self.accept_paused_until = None;
                // Edge-triggered: connections queued meanwhile give no new
                // edge, so look now.
                self.accept(now);
            }
            self.clients.retain(|_, c| c.deadline > now);
        }
    }

    fn accept(&mut self, now: Instant) {
        while self.accept_paused_until.is_none() {
            match self.listener.accept() {
                Ok((stream, _)) => self.admit(stream, now),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => {}
                Err(e) => {
                    if self.accept_warning.allow(now) {
                        warn!("metrics: accept: {e}; retrying after {ACCEPT_BACKOFF:?}");
                    }
                    self.accept_paused_until = Some(now + ACCEPT_BACKOFF);
                }
            }
        }
    }

    fn admit(&mut self, mut stream: TcpStream, now: Instant) {
        if self.clients.len() >= MAX_CLIENTS {
            let oldest = self
                .clients
                .iter()
                .min_by_key(|(_, c)| c.deadline)
                .map(|(key, _)| key);
            if let Some(key) = oldest {
                debug!("metrics: {MAX_CLIENTS} clients open; closing the oldest");
                drop(self.clients.remove(key));
            }
        }
        let entry = self.clients.vacant_entry();
        if let Err(e) =
            self.poll
                .registry()
                .register(&mut stream, Token(entry.key()), Interest::READABLE)
        {
            debug!("metrics: register: {e}");
            return;
        }
        entry.insert(Client {
            stream,
            deadline: now + CLIENT_TIMEOUT,
            stage: Stage::Reading {
                buf: Box::new([0; MAX_REQUEST]),
                len: 0,
            },
        });
    }

    fn on_ready(&mut self, key: usize, now: Instant) {
        let Some(client) = self.clients.get_mut(key) else {
            return;
        };
        let done = match step(client, &self.registry, now) {
            Ok(Step::Wait) => false,
            Ok(Step::StartedWriting) => {
                let token = Token(key);
                match self
                    .poll
                    .registry()
                    .reregister(&mut client.stream, token, Interest::WRITABLE)
                {
                    Ok(()) => false,
                    Err(e) => {
                        debug!("metrics: reregister: {e}");
                        true
                    }
                }
            }
            Ok(Step::Done) => true,
            Err(e) => {
                debug!("metrics: client: {e}");
                true
            }
        };
        if done {
            drop(self.clients.remove(key));
        }
    }
}

/// What driving a client left it at.
enum Step {
    /// Waiting for the socket as registered.
    Wait,
    /// The answer is ready and not all sent: wait for writability.
    StartedWriting,
    /// Finished (answered, or the client went away): close it.
    Done,
}

/// Reads what the client has sent and answers once the request is whole;
/// sends what the socket takes.
fn step(client: &mut Client, registry: &Registry, now: Instant) -> io::Result<Step> {
    let mut started_writing = false;
    if let Stage::Reading { buf, len } = &mut client.stage {
        let out = loop {
            match client.stream.read(&mut buf[*len..]) {
                Ok(0) => return Ok(Step::Done),
                Ok(n) => {
                    *len += n;
                    if let Some(out) = answer(&buf[..*len], registry) {
                        break out;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Step::Wait),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        };
        client.stage = Stage::Writing { out, sent: 0 };
        client.deadline = now + CLIENT_TIMEOUT;
        started_writing = true;
    }
    let Stage::Writing { out, sent } = &mut client.stage else {
        return Ok(Step::Done);
    };
    while *sent < out.len() {
        match client.stream.write(&out[*sent..]) {
            Ok(0) => return Ok(Step::Done),
            Ok(n) => *sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return Ok(if started_writing {
                    Step::StartedWriting
                } else {
                    Step::Wait
                });
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let _ = client.stream.shutdown(Shutdown::Write);
    Ok(Step::Done)
}

/// The whole answer to `request` (the bytes read so far), or `None` while
/// it is incomplete and may still fit.
fn answer(request: &[u8], registry: &Registry) -> Option<Vec<u8>> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(request) {
        Ok(httparse::Status::Complete(_)) => Some(route(
            req.method.unwrap_or(""),
            req.path.unwrap_or(""),
            registry,
        )),
        Ok(httparse::Status::Partial) if request.len() < MAX_REQUEST => None,
        Ok(httparse::Status::Partial) | Err(httparse::Error::TooManyHeaders) => Some(plain(
            "431 Request Header Fields Too Large",
            "request too large\n",
            false,
        )),
        Err(_) => Some(plain("400 Bad Request", "bad request\n", false)),
    }
}

/// The answer to a whole request for `path` with `method`.
fn route(method: &str, path: &str, registry: &Registry) -> Vec<u8> {
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    if path != "/metrics" {
        return plain(
            "404 Not Found",
            "not found: the metrics are at /metrics\n",
            false,
        );
    }
    let head = match method {
        "GET" => false,
        "HEAD" => true,
        _ => {
            let mut out = plain(
                "405 Method Not Allowed",
                "only GET and HEAD are allowed\n",
                false,
            );
            // Before the blank line that ends the headers.
            let at = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(0);
            out.splice(at..at, b"\r\nAllow: GET, HEAD".iter().copied());
            return out;
        }
    };
    match render(registry) {
        Ok(body) => response("200 OK", CONTENT_TYPE, body.as_bytes(), head),
        Err(e) => {
            error!("metrics: cannot encode the metrics: {e}");
            plain(
                "500 Internal Server Error",
                "cannot encode the metrics\n",
                head,
            )
        }
    }
}

fn plain(status: &str, body: &str, head: bool) -> Vec<u8> {
    response(status, "text/plain; charset=utf-8", body.as_bytes(), head)
}

fn response(status: &str, content_type: &str, body: &[u8], head: bool) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head {
        out.extend_from_slice(body);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(out: &[u8]) -> String {
        String::from_utf8_lossy(out).into_owned()
    }

    #[test]
    fn routes_and_errors() {
        let registry = Registry::default();
        let ok =
            text(&answer(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", &registry).expect("whole"));
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(
            ok.contains("Content-Type: text/plain; version=0.0.4"),
            "{ok}"
        );
        let q = text(&answer(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n", &registry).expect("whole"));
        assert!(q.starts_with("HTTP/1.1 200 OK\r\n"), "{q}");
        assert_eq!(answer(b"GET /metrics HTTP/1.1\r\nHost:", &registry), None);
        let nf = text(&answer(b"GET / HTTP/1.1\r\n\r\n", &registry).expect("whole"));
        assert!(nf.starts_with("HTTP/1.1 404 "), "{nf}");
        let na = text(&answer(b"POST /metrics HTTP/1.1\r\n\r\n", &registry).expect("whole"));
        assert!(na.starts_with("HTTP/1.1 405 "), "{na}");
        assert!(na.contains("\r\nAllow: GET, HEAD\r\n\r\n"), "{na}");
        let bad = text(&answer(b"\x16\x03\x01 garbage\r\n\r\n", &registry).expect("an answer"));
        assert!(bad.starts_with("HTTP/1.1 400 "), "{bad}");
        let big = vec![b'a'; MAX_REQUEST];
        let mut long = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
        long.extend_from_slice(&big[..MAX_REQUEST - long.len()]);
        let too = text(&answer(&long, &registry).expect("an answer"));
        assert!(too.starts_with("HTTP/1.1 431 "), "{too}");
        let head = answer(b"HEAD /metrics HTTP/1.1\r\n\r\n", &registry).expect("whole");
        assert!(text(&head).ends_with("\r\n\r\n"), "no body");
    }
}
