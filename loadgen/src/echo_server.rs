//! `flashpolicy-echo`: the game server of the gateway and bridge benchmarks
//! (and of tests that want a real process behind a relay): one mio (epoll)
//! loop that echoes every byte it reads.
//!
//! Each connection has one buffer of at most `buffer` bytes, allocated at
//! its first read: while it is full the connection is not read (the peer's
//! sends block in TCP's own flow control), so memory stays bounded whatever
//! a client sends. Half-close aware: when the client shuts down its sending
//! side, what is buffered is written back, then this side shuts down too and
//! the connection is closed.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::Duration;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

/// The listener's token; connections use their slab key.
const LISTENER: Token = Token(usize::MAX);

/// One echoed connection.
struct Conn {
    stream: TcpStream,
    /// Read but not yet written back: `buf[start..end]`.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// The client half-closed (or the read side failed).
    read_done: bool,
}

/// What one pass over a connection left.
enum Pump {
    /// Waiting for the socket (readable or writable).
    Waiting,
    /// Both directions finished (or an error): close it.
    Finished,
}

impl Conn {
    /// Writes what is buffered and reads more, until the socket would block
    /// both ways or the echo is complete.
    fn pump(&mut self, cap: usize) -> Pump {
        loop {
            let mut progress = false;
            while self.start < self.end {
                match self.stream.write(&self.buf[self.start..self.end]) {
                    Ok(0) => return Pump::Finished,
                    Ok(n) => {
                        self.start += n;
                        progress = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => return Pump::Finished,
                }
            }
            if self.start == self.end {
                self.start = 0;
                self.end = 0;
                if self.read_done {
                    let _ = self.stream.shutdown(Shutdown::Write);
                    return Pump::Finished;
                }
            }
            if !self.read_done && self.end < cap {
                if self.buf.is_empty() {
                    self.buf.resize(cap, 0);
                }
                match self.stream.read(&mut self.buf[self.end..]) {
                    Ok(0) => {
                        self.read_done = true;
                        progress = true;
                    }
                    Ok(n) => {
                        self.end += n;
                        progress = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => progress = true,
                    Err(_) => return Pump::Finished,
                }
            }
            if !progress {
                return Pump::Waiting;
            }
        }
    }
}

/// Binds `addr` with a deep accept queue (`backlog`), non-blocking.
pub fn bind(addr: SocketAddr, backlog: i32) -> io::Result<TcpListener> {
    let domain = socket2::Domain::for_address(addr);
    let sock = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    sock.set_reuse_address(true)?;
    sock.bind(&addr.into())?;
    sock.listen(backlog)?;
    sock.set_nonblocking(true)?;
    Ok(TcpListener::from_std(sock.into()))
}

/// Serves `listener` forever (until the process is stopped), echoing with
/// per-connection buffers of `cap` bytes.
pub fn serve(mut listener: TcpListener, cap: usize) -> io::Result<()> {
    let cap = cap.max(1);
    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut conns: Slab<Conn> = Slab::with_capacity(1024);
    let mut events = Events::with_capacity(1024);
    loop {
        match poll.poll(&mut events, None) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        for ev in events.iter() {
            if ev.token() == LISTENER {
                accept_all(&listener, &poll, &mut conns, cap);
                continue;
            }
            let key = ev.token().0;
            let Some(conn) = conns.get_mut(key) else {
                continue;
            };
            if let Pump::Finished = conn.pump(cap) {
                let mut conn = conns.remove(key);
                let _ = poll.registry().deregister(&mut conn.stream);
            }
        }
    }
}

/// Accepts every pending connection and echoes what each has sent already.
fn accept_all(listener: &TcpListener, poll: &Poll, conns: &mut Slab<Conn>, cap: usize) {
    loop {
        let mut stream = match listener.accept() {
            Ok((s, _)) => s,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                // Out of descriptors or memory: the backlog keeps the rest;
                // try again at the next event rather than spinning.
                eprintln!("flashpolicy-echo: accept: {e}");
                std::thread::sleep(Duration::from_millis(1));
                return;
            }
        };
        let _ = stream.set_nodelay(true);
        let entry = conns.vacant_entry();
        let key = entry.key();
        if poll
            .registry()
            .register(
                &mut stream,
                Token(key),
                Interest::READABLE | Interest::WRITABLE,
            )
            .is_err()
        {
            continue;
        }
        let conn = entry.insert(Conn {
            stream,
            buf: Vec::new(),
            start: 0,
            end: 0,
            read_done: false,
        });
        if let Pump::Finished = conn.pump(cap) {
            let mut conn = conns.remove(key);
            let _ = poll.registry().deregister(&mut conn.stream);
        }
    }
}
