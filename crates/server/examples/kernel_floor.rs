//! The kernel floor: a "server" that accepts connections and closes them at
//! once, without reading the request or sending anything.
//!
//! It exists only so benchmarks can state what the kernel alone costs per
//! connection (the TCP handshake, `accept4`, `close`, the socket's life), and
//! report every real engine as a multiple of it. It uses the same listener
//! code as `flashpolicyd` (SO_REUSEPORT sockets from
//! [`flashpolicy_server::listener::bind_all`]) and a minimal mio loop per
//! thread.
//!
//! Clients see an empty reply, and often a reset: the request they sent is
//! never read, and closing a socket with unread data sends RST (RFC 1122
//! 4.2.2.13). That is expected here; this is not a policy server.
//!
//! ```text
//! cargo run --release -p flashpolicy-server --example kernel_floor -- --listen 127.0.0.1:0 --threads 1
//! ```
//!
//! Logs `listening on ADDR` on stderr once ready; stops on SIGINT/SIGTERM
//! (the default action) and prints how many connections it closed.

use std::io;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::time::Duration;

use clap::Parser;
use flashpolicy_server::config::Listen;
use flashpolicy_server::listener::{self, ListenOptions};
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};

/// Command line of the kernel floor.
#[derive(Debug, Parser)]
#[command(
    name = "kernel_floor",
    about = "Accepts TCP connections and closes them unread: the kernel's own cost per connection"
)]
struct Args {
    /// Address to listen on, e.g. 127.0.0.1:0 (port 0 picks a free port).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Threads, each with its own SO_REUSEPORT listener and mio loop.
    #[arg(long, value_name = "N", default_value = "1")]
    threads: NonZeroUsize,
    /// Listen backlog.
    #[arg(long, value_name = "N", default_value_t = 4096)]
    backlog: u32,
}

/// How long to wait before accepting again after an accept error other than
/// "nothing queued" (EMFILE and the like): edge-triggered epoll sends no new
/// edge for connections still queued, so a timeout brings the loop back.
const RETRY_AFTER: Duration = Duration::from_millis(10);

fn main() -> io::Result<()> {
    let args = Args::parse();
    let opts = ListenOptions {
        backlog: args.backlog,
        defer_accept_secs: None,
    };
    let listen = Listen::Addrs(vec![args.listen]);
    let sockets = listener::bind_all(&listen, args.threads.get(), opts)
        .map_err(|e| io::Error::other(e.to_string()))?;
    let mut threads = Vec::with_capacity(sockets.len());
    let mut addr = None;
    for (id, listeners) in sockets.into_iter().enumerate() {
        if addr.is_none() {
            addr = listeners.first().map(|l| l.local_addr()).transpose()?;
        }
        threads.push(
            std::thread::Builder::new()
                .name(format!("floor-{id}"))
                .spawn(move || run(listeners))?,
        );
    }
    if let Some(addr) = addr {
        eprintln!("listening on {addr}");
    }
    for t in threads {
        match t.join() {
            Ok(result) => result?,
            Err(_) => return Err(io::Error::other("a floor thread panicked")),
        }
    }
    Ok(())
}

/// One thread: accept everything queued, drop it (close), wait for more.
fn run(listeners: Vec<std::net::TcpListener>) -> io::Result<()> {
    let mut poll = Poll::new()?;
    let mut listeners: Vec<TcpListener> =
        listeners.into_iter().map(TcpListener::from_std).collect();
    for (i, l) in listeners.iter_mut().enumerate() {
        poll.registry().register(l, Token(i), Interest::READABLE)?;
    }
    let mut events = Events::with_capacity(64);
    let mut retry = false;
    loop {
        let timeout = retry.then_some(RETRY_AFTER);
        if let Err(e) = poll.poll(&mut events, timeout) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        retry = false;
        // After a timeout there are no events: try every listener again.
        for l in &listeners {
            loop {
                match l.accept() {
                    // Dropping the stream closes it, unread.
                    Ok((stream, _)) => drop(stream),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                        ) => {}
                    Err(_) => {
                        retry = true;
                        break;
                    }
                }
            }
        }
    }
}
