//! The WebSocket-to-TCP bridges Ruffle's `socketProxy` can name. Each is
//! started by a [`StartBridge`] function in front of one upstream, over
//! `ws://`, or over `wss://` with the test certificate when one is given.

use std::any::Any;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::OwnedFd;
use std::process::{Command, Stdio};

use crate::cert::Cert;
use crate::group::Group;
use crate::tools::Tools;

/// Starts a bridge to `upstream`; `tls` makes it `wss://`.
pub type StartBridge = fn(&Tools, upstream: SocketAddr, tls: Option<&Cert>) -> Bridge;

/// A running bridge, stopped (every process of it) when dropped.
pub struct Bridge {
    /// What it is, for messages.
    pub name: &'static str,
    /// The URL to put in `socketProxy`'s `proxyUrl`.
    pub url: String,
    /// Whatever keeps it running: dropping it stops the bridge.
    _running: Box<dyn Any>,
}

impl Bridge {
    /// A bridge reachable at `url`, kept running by `running`.
    pub fn new(name: &'static str, url: String, running: impl Any) -> Bridge {
        Bridge {
            name,
            url,
            _running: Box::new(running),
        }
    }
}

/// The URL of a bridge on `addr`: `wss://` with TLS, else `ws://`.
pub fn url_of(addr: SocketAddr, tls: bool) -> String {
    let scheme = if tls { "wss" } else { "ws" };
    format!("{scheme}://{addr}/")
}

/// Debian's websockify. It gets its listening socket (bound here, on an
/// OS-chosen loopback port) as its stdin, in its `--inetd` mode, so there
/// is no port to guess and nothing to wait for: the kernel queues the
/// browser's connection until websockify accepts it.
pub fn websockify(tools: &Tools, upstream: SocketAddr, tls: Option<&Cert>) -> Bridge {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the bridge's port");
    let addr = listener.local_addr().expect("the bridge's address");
    let mut cmd = Command::new(&tools.websockify);
    cmd.arg("--inetd");
    if let Some(cert) = tls {
        cmd.args([
            "--ssl-only",
            "--cert",
            cert.cert.path(),
            "--key",
            cert.key.path(),
        ]);
    }
    cmd.arg(upstream.to_string())
        .stdin(Stdio::from(OwnedFd::from(listener)))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let group = Group::spawn(&mut cmd)
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", tools.websockify.display()));
    Bridge::new("websockify", url_of(addr, tls.is_some()), group)
}

/// `flashpolicyd --websocket` itself (the epoll engine for its policy
/// workers; the bridge runs on its own threads whatever the engine); with
/// `tls`, `--tls-cert`/`--tls-key` make it `wss://`.
pub fn flashpolicyd(_tools: &Tools, upstream: SocketAddr, tls: Option<&Cert>) -> Bridge {
    let spec = format!("127.0.0.1:0={upstream}");
    let mut builder = crate::common::Server::builder("epoll").args(&["--websocket", &spec]);
    if let Some(cert) = tls {
        builder = builder.args(&["--tls-cert", cert.cert.path(), "--tls-key", cert.key.path()]);
    }
    let server = builder.start();
    let addr = crate::gw::announced(&server, "websocket on ");
    Bridge::new("flashpolicyd", url_of(addr, tls.is_some()), server)
}
