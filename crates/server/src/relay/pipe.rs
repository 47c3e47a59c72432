//! One direction of a relay: bytes move from a socket into a pipe and from
//! the pipe into the other socket with `splice(2)`, never through user
//! space. The pipe's capacity is the direction's whole buffer.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// A non-blocking pipe and the bytes it holds.
#[derive(Debug)]
pub(crate) struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    /// Bytes spliced in and not yet out.
    held: usize,
    /// The pipe's capacity (`F_GETPIPE_SZ`).
    capacity: usize,
}

/// What one splice did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Moved {
    /// This many bytes (never 0).
    Bytes(usize),
    /// End of stream from the socket.
    Eof,
    /// Nothing now: the socket (or pipe) is not ready.
    Blocked,
}

impl Pipe {
    /// A new, empty pipe.
    pub(crate) fn new() -> io::Result<Pipe> {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: `fds` is a valid array of two descriptors for pipe2 to
        // fill; the flags are valid.
        let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so both descriptors are open and ours
        // alone; each is owned exactly once.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: F_GETPIPE_SZ on a pipe we own takes no argument.
        let size = unsafe { libc::fcntl(write.as_raw_fd(), libc::F_GETPIPE_SZ) };
        let capacity = usize::try_from(size)
            .ok()
            .filter(|&c| c > 0)
            .unwrap_or(4096);
        Ok(Pipe {
            read,
            write,
            held: 0,
            capacity,
        })
    }

    /// Bytes waiting in the pipe.
    pub(crate) fn held(&self) -> usize {
        self.held
    }

    /// Whether there is room for more.
    pub(crate) fn has_room(&self) -> bool {
        self.held < self.capacity
    }

    /// The pipe's capacity: the most this direction ever buffers.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Moves what `socket` has (up to the room left) into the pipe.
    pub(crate) fn fill_from(&mut self, socket: RawFd) -> io::Result<Moved> {
        let room = self.capacity.saturating_sub(self.held);
        let moved = splice(socket, self.write.as_raw_fd(), room)?;
        if let Moved::Bytes(n) = moved {
            self.held += n;
        }
        Ok(moved)
    }

    /// Moves what the pipe holds into `socket`.
    pub(crate) fn drain_into(&mut self, socket: RawFd) -> io::Result<Moved> {
        if self.held == 0 {
            return Ok(Moved::Blocked);
        }
        let moved = splice(self.read.as_raw_fd(), socket, self.held)?;
        match moved {
            Moved::Bytes(n) => self.held = self.held.saturating_sub(n),
            // A pipe with bytes in it never reads as end-of-stream; a
            // socket that takes nothing and reports no error is unusable.
            Moved::Eof => return Err(io::Error::from(io::ErrorKind::WriteZero)),
            Moved::Blocked => {}
        }
        Ok(moved)
    }
}

/// One non-blocking `splice` of at most `len` bytes.
fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<Moved> {
    if len == 0 {
        return Ok(Moved::Blocked);
    }
    loop {
        // SAFETY: both descriptors are open for the duration of the call
        // (borrowed from owners that outlive it); null offsets mean "the
        // file position", which sockets and pipes require.
        let n = unsafe {
            libc::splice(
                from,
                std::ptr::null_mut(),
                to,
                std::ptr::null_mut(),
                len,
                libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
            )
        };
        if n > 0 {
            // `n` is positive and at most `len`.
            return Ok(Moved::Bytes(n as usize));
        }
        if n == 0 {
            return Ok(Moved::Eof);
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::WouldBlock => return Ok(Moved::Blocked),
            io::ErrorKind::Interrupted => continue,
            _ => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn bytes_go_through_the_pipe_in_order() {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let mut a = TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
        let (b, _) = l.accept().expect("accept");
        let l2 = TcpListener::bind("127.0.0.1:0").expect("bind");
        let c = TcpStream::connect(l2.local_addr().expect("addr")).expect("connect");
        let (mut d, _) = l2.accept().expect("accept");
        a.write_all(b"hello, relay").expect("write");
        b.set_nonblocking(true).expect("nonblocking");
        let mut pipe = Pipe::new().expect("pipe");
        assert!(pipe.capacity() >= 4096);
        let mut got = 0;
        for _ in 0..1000 {
            if let Moved::Bytes(n) = pipe.fill_from(b.as_raw_fd()).expect("fill") {
                got += n;
            }
            if got == 12 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        assert_eq!(pipe.held(), 12);
        assert_eq!(
            pipe.drain_into(c.as_raw_fd()).expect("drain"),
            Moved::Bytes(12)
        );
        assert_eq!(pipe.held(), 0);
        let mut buf = [0u8; 12];
        d.read_exact(&mut buf).expect("read");
        assert_eq!(&buf, b"hello, relay");
        drop(a);
        let mut eof = false;
        for _ in 0..1000 {
            if pipe.fill_from(b.as_raw_fd()).expect("fill") == Moved::Eof {
                eof = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        assert!(eof);
    }
}
