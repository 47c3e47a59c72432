//! `--websocket`: the WebSocket-to-TCP bridge Ruffle's `socketProxy` needs,
//! with no I/O.
//!
//! Ruffle, in the browser, reaches a game's socket server only through a
//! WebSocket: each `flash.net.Socket` opens `new WebSocket(proxyUrl)` and
//! the bridge opens one TCP connection to the game for it. This module
//! holds every decision of that bridge; `flashpolicy-server` only moves
//! the bytes:
//!
//! * [`upgrade`]: the HTTP upgrade request, bounded in size, checked in
//!   full, and its answer (`101`, or an HTTP error).
//! * [`origin`]: `--ws-origin`, which pages may connect.
//! * [`inbound`]: the browser's frames, unmasked and handed on as a byte
//!   stream; ping, pong and close; every protocol violation and its close
//!   code.
//! * [`outbound`]: frames to the browser: binary data, pong, close.
//! * [`closing`]: the closing handshake against TCP half-closes.
//! * [`client`]: the browser's side, for clients that test a bridge: the
//!   upgrade request and its answer, masked frames.
//!
//! Frame headers and the accept key come from `tungstenite`'s protocol
//! layer; the HTTP request is parsed by `httparse`.

pub mod client;
pub mod closing;
pub mod inbound;
pub mod origin;
pub mod outbound;
pub mod upgrade;

pub use client::{
    client_binary_header, client_close, upgrade_request, AnswerReader, HandshakeError,
    MAX_CLIENT_HEADER,
};
pub use closing::{Act, Closing};
pub use inbound::{Control, Decoded, Inbound, Violation, MAX_FRAME};
pub use origin::{Origin, OriginError, Origins};
pub use outbound::{binary_header, push_close, push_pong, MAX_CONTROL_FRAME, MAX_SERVER_HEADER};
pub use upgrade::{Accepted, Refusal, UpgradeReader, UpgradeStep, BAD_GATEWAY, MAX_UPGRADE_LEN};
