//! Opening one non-blocking connection, from the next `--source` address
//! in turn.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use mio::net::TcpStream;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::event_loop::Worker;
use crate::sys;

impl Worker {
    pub(super) fn connect(&mut self, addr: SocketAddr) -> io::Result<TcpStream> {
        let socket = Socket::new(
            Domain::for_address(addr),
            Type::STREAM.nonblocking().cloexec(),
            Some(Protocol::TCP),
        )?;
        if !self.sources.is_empty() {
            let ip = self.sources[self.next_source];
            self.next_source = (self.next_source + 1) % self.sources.len();
            if ip.is_ipv4() {
                sys::set_bind_address_no_port(socket.as_raw_fd())?;
            } else {
                // Linux honours it on IPv6 sockets too; without it the
                // bind merely picks a port early.
                let _ = sys::set_bind_address_no_port(socket.as_raw_fd());
            }
            socket.bind(&SockAddr::from(SocketAddr::new(ip, 0)))?;
        }
        match socket.connect(&SockAddr::from(addr)) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return Err(e),
        }
        Ok(TcpStream::from_std(std::net::TcpStream::from(socket)))
    }
}
