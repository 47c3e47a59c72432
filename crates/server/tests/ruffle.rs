//! A real Ruffle (its npm web build, in headless Chromium) plays a SWF
//! built from `ruffle/Main.hx`; the SWF's `flash.net.Socket` reaches an
//! echo game server through a WebSocket-to-TCP bridge named in Ruffle's
//! `socketProxy`, sends a line and reports the echo to the page. Over
//! `ws://` from an http page, and over `wss://` from an https page (a
//! certificate made by the test); and with a bridge that refuses.
//!
//! What Ruffle 0.6.0 in Chromium 148 was seen to do (Ruffle's
//! `web/src/navigator.rs`, and frames logged by a raw WebSocket server):
//! - `socketProxy` is looked up by exact host and port equality with what
//!   the SWF passed to `Socket.connect` (`localhost` does not match
//!   `127.0.0.1`); with no entry, the SWF gets `IOError` #2031 at once, no
//!   `CONNECT`, and no WebSocket is opened.
//! - It opens `new WebSocket(proxyUrl)` with no subprotocol; the path and
//!   query arrive as written; `Origin` is the page's origin; Chromium
//!   offers `permessage-deflate; client_max_window_bits`.
//! - One masked binary frame per `flush()`. Text frames from the bridge are
//!   dropped with a warning ("Server sent an unexpected text message").
//! - `Socket.close()` sends a close frame with no status code; closing the
//!   page sends 1001. websockify answers with 1005, which Chromium calls "a
//!   broken close frame containing a reserved status code" (logged only:
//!   the SWF already has its echo).
//! - The SWF's `CONNECT` fires before the WebSocket handshake; a refused
//!   bridge reaches the SWF only as `CLOSE`, with no `IOError`.
//!
//! Skipped, saying which tool is missing, unless
//! `FLASHPOLICYD_REQUIRE_TOOLS=1` (CI), where a missing tool fails.

mod common;
#[path = "common/gateway.rs"]
#[allow(dead_code)] // shared with the gateway tests
mod gw;
#[path = "common/scrape.rs"]
#[allow(dead_code)] // shared with the metrics tests; only `tool` is used here
mod scrape;

#[path = "ruffle/bridge.rs"]
mod bridge;
#[path = "ruffle/cert.rs"]
mod cert;
#[path = "ruffle/group.rs"]
mod group;
#[path = "ruffle/player.rs"]
mod player;
#[path = "ruffle/tools.rs"]
mod tools;

use std::net::SocketAddr;

use socket2::{Domain, Socket, Type};

use bridge::{flashpolicyd, url_of, websockify, Bridge, StartBridge};
use cert::Cert;
use gw::{upstream, Upstream};
use player::Page;
use tools::Tools;

/// An echo game server behind `start`'s bridge: the SWF's line comes back
/// to it. With `tls`, over `wss://` from an https page.
fn echo_through(start: StartBridge, tls: bool) {
    let Some(tools) = Tools::find() else { return };
    let tag = format!("echo-{}", if tls { "wss" } else { "ws" });
    let swf = player::build_swf(&tools, &tag);
    let cert = tls.then(|| Cert::new(&tools, &tag));
    let game = upstream(Upstream::Echo);
    let bridge: Bridge = start(&tools, game, cert.as_ref());
    let line = format!("hello through {} over {tag}", bridge.name);
    let page = Page {
        tls: cert.as_ref(),
        ..Page::new(game, &bridge.url, &line)
    };
    let seen = player::play(&tools, &swf, &page);
    let scheme = if tls { "https://" } else { "http://" };
    assert!(seen.origin.starts_with(scheme), "{}", seen.raw);
    assert!(seen.done, "the SWF never finished:\n{}", seen.raw);
    assert_eq!(seen.first("echo"), Some(line.as_str()), "{}", seen.raw);
    for bad in ["ioerror", "securityerror", "error"] {
        assert_eq!(seen.first(bad), None, "{}", seen.raw);
    }
}

#[test]
fn ruffle_echo_through_websockify_ws() {
    echo_through(websockify, false);
}

#[test]
fn ruffle_echo_through_websockify_wss_from_https_page() {
    echo_through(websockify, true);
}

#[test]
fn ruffle_echo_through_flashpolicyd_ws() {
    echo_through(flashpolicyd, false);
}

#[test]
fn ruffle_echo_through_flashpolicyd_wss_from_https_page() {
    echo_through(flashpolicyd, true);
}

/// A loopback port that refuses connections: bound (so no one else takes
/// it while the test runs) but not listening.
fn refusing_port() -> (Socket, SocketAddr) {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    let any: SocketAddr = "127.0.0.1:0".parse().expect("valid");
    socket.bind(&any.into()).expect("bind");
    let addr = socket
        .local_addr()
        .expect("addr")
        .as_socket()
        .expect("an inet address");
    (socket, addr)
}

/// Nothing listens where `proxyUrl` points: the SWF hears `CLOSE` (Ruffle
/// fired `CONNECT` before the handshake), or an `IOError`, and no echo;
/// the page does not hang.
#[test]
fn ruffle_refused_bridge_reports_close() {
    let Some(tools) = Tools::find() else { return };
    let swf = player::build_swf(&tools, "refused");
    let game = upstream(Upstream::Echo);
    let (_held, refusing) = refusing_port();
    let url = url_of(refusing, false);
    let seen = player::play(&tools, &swf, &Page::new(game, &url, "never echoed"));
    assert!(
        seen.done,
        "the SWF never heard of the refusal:\n{}",
        seen.raw
    );
    assert!(
        seen.first("close").is_some() || seen.first("ioerror").is_some(),
        "{}",
        seen.raw
    );
    assert_eq!(seen.first("echo"), None, "{}", seen.raw);
}

/// Ruffle's `socketProxy` lookup is exact: an entry for `localhost` does
/// not serve a Socket to `127.0.0.1` on the same port. The SWF gets an
/// `IOError` at once, and no WebSocket is opened (the bridge would echo).
#[test]
fn ruffle_socket_proxy_lookup_is_exact_on_the_host() {
    let Some(tools) = Tools::find() else { return };
    let swf = player::build_swf(&tools, "lookup");
    let game = upstream(Upstream::Echo);
    let bridge = websockify(&tools, game, None);
    let page = Page {
        proxy_host: Some("localhost"),
        ..Page::new(game, &bridge.url, "not for this host")
    };
    let seen = player::play(&tools, &swf, &page);
    assert!(seen.done, "the SWF never heard of the miss:\n{}", seen.raw);
    assert!(seen.first("ioerror").is_some(), "{}", seen.raw);
    assert_eq!(seen.first("connect"), None, "{}", seen.raw);
    assert_eq!(seen.first("echo"), None, "{}", seen.raw);
}
