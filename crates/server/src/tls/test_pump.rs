//! Test harness: a [`TlsStream`] and a rustls client (or a raw socket) over
//! a loopback pair of mio sockets, in one small poll loop.
//!
//! The server side is driven the way an edge-triggered loop drives it: it
//! reads only after a READABLE event, and then until `WouldBlock`; it
//! flushes after a WRITABLE event. A stream that returned `WouldBlock`
//! while the socket still had something for it would stall here, and the
//! pump's deadline would fail the test.

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, ServerConfig};

use super::TlsStream;

const SERVER: Token = Token(0);
const CLIENT: Token = Token(1);

/// The longest a pump waits for what a test expects.
const PUMP_DEADLINE: Duration = Duration::from_secs(10);

/// Both ends and what each has seen.
pub(super) struct Pair {
    poll: Poll,
    events: Events,
    /// The stream under test.
    pub(super) server: TlsStream,
    /// The client's session; `None` for a raw client.
    pub(super) client: Option<ClientConnection>,
    /// The client's socket (raw clients write to it directly).
    pub(super) client_tcp: TcpStream,
    /// Plaintext the server has read.
    pub(super) server_got: Vec<u8>,
    /// How the server's reading ended: `Ok(())` for `Ok(0)`, or the error.
    pub(super) server_end: Option<io::Result<()>>,
    /// Plaintext the server still has to write.
    pub(super) server_outbox: Vec<u8>,
    /// Writes of the server that returned `WouldBlock`.
    pub(super) server_blocked_writes: usize,
    /// The server writes back what it reads.
    pub(super) echo: bool,
    /// Plaintext the client has read.
    pub(super) client_got: Vec<u8>,
    /// Plaintext the client still has to send.
    pub(super) client_outbox: Vec<u8>,
    /// The client reads its socket (false: what arrives stays there).
    pub(super) client_reads: bool,
    /// The client saw TCP EOF.
    pub(super) client_eof: bool,
    /// The client's session failed.
    pub(super) client_error: Option<rustls::Error>,
}

/// The socket buffers of a pair made to fill up.
const SMALL_BUFFER: usize = 16 * 1024;

/// A connected loopback pair: (accepted server side, client side), both
/// non-blocking; `small`: a small send buffer on the server and a small
/// receive buffer on the client (set before connecting, so that the
/// window is sized for it).
fn loopback_pair(small: bool) -> (TcpStream, TcpStream) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = listener.local_addr().expect("listener address");
    let client = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
        .expect("client socket");
    if small {
        client
            .set_recv_buffer_size(SMALL_BUFFER)
            .expect("SO_RCVBUF");
    }
    client.connect(&addr.into()).expect("connect loopback");
    let client = std::net::TcpStream::from(client);
    let (server, _) = listener.accept().expect("accept");
    if small {
        socket2::SockRef::from(&server)
            .set_send_buffer_size(SMALL_BUFFER)
            .expect("SO_SNDBUF");
    }
    for s in [&client, &server] {
        s.set_nonblocking(true).expect("non-blocking");
    }
    (TcpStream::from_std(server), TcpStream::from_std(client))
}

impl Pair {
    /// A rustls client (for the name `localhost`) against a server with
    /// `server_config`.
    pub(super) fn new(server_config: Arc<ServerConfig>, client_config: Arc<ClientConfig>) -> Pair {
        Pair::with_client(server_config, Some(client(client_config)), false)
    }

    /// [`Pair::new`] over small socket buffers, which a large write fills.
    pub(super) fn new_small(
        server_config: Arc<ServerConfig>,
        client_config: Arc<ClientConfig>,
    ) -> Pair {
        Pair::with_client(server_config, Some(client(client_config)), true)
    }

    /// A client that speaks no TLS: the test writes to `client_tcp`.
    pub(super) fn raw(server_config: Arc<ServerConfig>) -> Pair {
        Pair::with_client(server_config, None, false)
    }

    fn with_client(
        server_config: Arc<ServerConfig>,
        client: Option<ClientConnection>,
        small: bool,
    ) -> Pair {
        let (server_tcp, mut client_tcp) = loopback_pair(small);
        let poll = Poll::new().expect("poll");
        let mut server = TlsStream::new(server_config, server_tcp).expect("server session");
        let both = Interest::READABLE | Interest::WRITABLE;
        poll.registry()
            .register(&mut server, SERVER, both)
            .expect("register server");
        poll.registry()
            .register(&mut client_tcp, CLIENT, both)
            .expect("register client");
        Pair {
            poll,
            events: Events::with_capacity(16),
            server,
            client,
            client_tcp,
            server_got: Vec::new(),
            server_end: None,
            server_outbox: Vec::new(),
            server_blocked_writes: 0,
            echo: false,
            client_got: Vec::new(),
            client_outbox: Vec::new(),
            client_reads: true,
            client_eof: false,
            client_error: None,
        }
    }

    /// Runs the loop until `done` holds; panics with `what` (and the state)
    /// if it does not within the deadline.
    pub(super) fn pump_until(&mut self, what: &str, mut done: impl FnMut(&Pair) -> bool) {
        let deadline = Instant::now() + PUMP_DEADLINE;
        loop {
            self.turn();
            if done(self) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not done in {PUMP_DEADLINE:?}: server got {} bytes, end {:?}, \
                 outbox {}; client got {} bytes, outbox {}, eof {}, error {:?}",
                self.server_got.len(),
                self.server_end,
                self.server_outbox.len(),
                self.client_got.len(),
                self.client_outbox.len(),
                self.client_eof,
                self.client_error
            );
        }
    }

    /// Runs the loop for `time`, whatever happens.
    pub(super) fn pump_for(&mut self, time: Duration) {
        let end = Instant::now() + time;
        while Instant::now() < end {
            self.turn();
        }
    }

    /// One turn: the server sends what it has, the client moves, then one
    /// short wait for events, which the server acts on.
    fn turn(&mut self) {
        self.server_send();
        self.client_step();
        self.poll
            .poll(&mut self.events, Some(Duration::from_millis(5)))
            .expect("poll");
        let (mut readable, mut writable) = (false, false);
        for event in self.events.iter() {
            if event.token() == SERVER {
                readable |= event.is_readable() || event.is_read_closed() || event.is_error();
                writable |= event.is_writable();
            }
        }
        if readable {
            self.server_read();
        }
        if writable && self.server.wants_write() {
            match self.server.flush() {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => self.server_end = Some(Err(e)),
            }
        }
    }

    /// Reads until `WouldBlock`, the end, or an error.
    fn server_read(&mut self) {
        let mut buf = [0u8; 16 * 1024];
        while self.server_end.is_none() {
            match self.server.read(&mut buf) {
                Ok(0) => self.server_end = Some(Ok(())),
                Ok(n) => {
                    self.server_got.extend_from_slice(&buf[..n]);
                    if self.echo {
                        self.server_outbox.extend_from_slice(&buf[..n]);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => self.server_end = Some(Err(e)),
            }
        }
    }

    /// Writes the outbox until it is empty or the stream would block.
    fn server_send(&mut self) {
        while !self.server_outbox.is_empty() {
            match self.server.write(&self.server_outbox) {
                Ok(n) => {
                    self.server_outbox.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.server_blocked_writes += 1;
                    return;
                }
                Err(e) => {
                    self.server_end = Some(Err(e));
                    return;
                }
            }
        }
    }

    /// The client reads, processes and writes what it can, never blocking.
    fn client_step(&mut self) {
        let Some(client) = self.client.as_mut() else {
            return;
        };
        if self.client_reads && !self.client_eof && self.client_error.is_none() {
            loop {
                match client.read_tls(&mut self.client_tcp) {
                    Ok(0) => self.client_eof = true,
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => panic!("client read_tls: {e}"),
                }
                if let Err(e) = client.process_new_packets() {
                    self.client_error = Some(e);
                    break;
                }
                let mut buf = [0u8; 16 * 1024];
                loop {
                    match client.reader().read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => self.client_got.extend_from_slice(&buf[..n]),
                        Err(_) => break,
                    }
                }
                if self.client_eof {
                    break;
                }
            }
        }
        if !self.client_outbox.is_empty() {
            let taken = client
                .writer()
                .write(&self.client_outbox)
                .expect("client write");
            self.client_outbox.drain(..taken);
        }
        while client.wants_write() {
            match client.write_tls(&mut self.client_tcp) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("client write_tls: {e}"),
            }
        }
    }

    /// Whether both ends have finished the handshake.
    pub(super) fn handshake_done(&self) -> bool {
        !self.server.is_handshaking() && self.client.as_ref().is_some_and(|c| !c.is_handshaking())
    }

    /// The client's session (panics for a raw client).
    pub(super) fn client(&mut self) -> &mut ClientConnection {
        self.client.as_mut().expect("a TLS client")
    }
}

/// A client session for the name `localhost`.
fn client(config: Arc<ClientConfig>) -> ClientConnection {
    let name = ServerName::try_from("localhost").expect("a server name");
    ClientConnection::new(config, name).expect("client session")
}

/// `len` bytes of a pattern that shows where a byte went missing.
pub(super) fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}
