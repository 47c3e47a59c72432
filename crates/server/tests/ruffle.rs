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
//!   the SWF passed to `Socket.connect`; with no entry, the connection
//!   fails at once, without any WebSocket.
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

use bridge::{websockify, Bridge, StartBridge};
use cert::Cert;
use gw::{upstream, Upstream};
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
    let seen = player::play(&tools, &swf, game, &bridge.url, &line, cert.as_ref());
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
