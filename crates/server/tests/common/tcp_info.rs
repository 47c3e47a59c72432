//! The kernel's `TCP_INFO` of a socket, for tests that look at TCP state
//! or timing; shared by the workspace's suites (the load generator's
//! includes this file by path).

use std::net::TcpStream;
use std::os::fd::AsRawFd;

/// `getsockopt(TCP_INFO)` of `stream`; panics if the kernel refuses.
pub fn tcp_info(stream: &TcpStream) -> libc::tcp_info {
    // SAFETY: tcp_info is plain data; all zeroes is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: passes a live tcp_info and its size; the kernel writes at most
    // `len` bytes and updates `len`.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    assert_eq!(rc, 0, "TCP_INFO: {}", std::io::Error::last_os_error());
    info
}
