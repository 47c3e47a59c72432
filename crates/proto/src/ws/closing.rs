//! How a bridged connection ends: the WebSocket closing handshake on one
//! side, TCP's half-closes on the other (RFC 6455 §5.5.1, §7).
//!
//! * The browser's close frame (or its TCP end-of-stream) ends the stream
//!   toward the game: the upstream gets a FIN, and the game's answer still
//!   flows back until the game closes too.
//! * The game's FIN ends the stream toward the browser: once everything
//!   before it is sent, the bridge sends a close frame with 1000 (never a
//!   reserved code such as 1005, which browsers report as an abnormal end),
//!   then waits (bounded by the engine's `--timeout`) for the browser's
//!   close frame, and closes the TCP connection first, as a server should.
//! * A protocol violation by the browser, or an error on the game's side:
//!   a close frame with the matching code (1002, 1003, 1009; 1011), then
//!   the connection is closed once it is sent.

/// What the bridge should do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    /// Nothing more now.
    Go,
    /// Half-close the upstream (the browser's stream has ended).
    ShutUpstream,
    /// Queue a close frame with this code, after any frame already started.
    SendClose(u16),
    /// Close both connections.
    Finish,
}

/// A bridged connection's closing state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Closing {
    /// The browser's close frame (or end-of-stream) arrived.
    client_done: bool,
    /// The game's end-of-stream arrived.
    upstream_done: bool,
    /// A close frame has been queued toward the browser.
    close_queued: bool,
    /// That close frame has been sent in full.
    close_sent: bool,
    /// The connection fails: close once the close frame is out.
    failing: bool,
}

impl Closing {
    /// An open connection.
    pub const fn new() -> Closing {
        Closing {
            client_done: false,
            upstream_done: false,
            close_queued: false,
            close_sent: false,
            failing: false,
        }
    }

    /// The browser's close frame arrived (or its TCP stream ended).
    pub fn on_client_close(&mut self) -> Act {
        if self.client_done {
            return Act::Go;
        }
        self.client_done = true;
        if self.close_sent {
            Act::Finish
        } else {
            Act::ShutUpstream
        }
    }

    /// The browser broke the protocol: answer with `code`, then close.
    pub fn on_violation(&mut self, code: u16) -> Act {
        self.client_done = true;
        self.failing = true;
        self.queue_close(code)
    }

    /// The game's stream ended (everything before it has been framed).
    pub fn on_upstream_eof(&mut self) -> Act {
        self.upstream_done = true;
        self.queue_close(1000)
    }

    /// The game's side failed (a reset): 1011, then close.
    pub fn on_upstream_error(&mut self) -> Act {
        self.upstream_done = true;
        self.failing = true;
        self.queue_close(1011)
    }

    /// The queued close frame has been written in full.
    pub fn on_close_sent(&mut self) -> Act {
        self.close_sent = true;
        if self.failing || self.client_done {
            Act::Finish
        } else {
            Act::Go
        }
    }

    /// Whether frames from the browser are still read.
    pub fn reads_client(&self) -> bool {
        !self.client_done
    }

    /// Whether the game's bytes are still read and framed.
    pub fn reads_upstream(&self) -> bool {
        !self.upstream_done && !self.close_queued
    }

    /// The bridge's close frame is out and the browser's is awaited: the
    /// engine bounds this wait.
    pub fn awaits_client(&self) -> bool {
        self.close_sent && !self.client_done
    }

    fn queue_close(&mut self, code: u16) -> Act {
        if self.close_queued {
            return if self.close_sent && (self.failing || self.client_done) {
                Act::Finish
            } else {
                Act::Go
            };
        }
        self.close_queued = true;
        Act::SendClose(code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_browser_closes_first() {
        let mut c = Closing::new();
        assert_eq!(c.on_client_close(), Act::ShutUpstream);
        assert!(!c.reads_client());
        assert!(c.reads_upstream(), "the game's answer still flows");
        assert_eq!(c.on_upstream_eof(), Act::SendClose(1000));
        assert!(!c.reads_upstream());
        assert_eq!(c.on_close_sent(), Act::Finish);
    }

    #[test]
    fn the_game_closes_first() {
        let mut c = Closing::new();
        assert_eq!(c.on_upstream_eof(), Act::SendClose(1000));
        assert_eq!(c.on_close_sent(), Act::Go);
        assert!(c.awaits_client());
        assert!(
            c.reads_client(),
            "frames before the browser's close still go up"
        );
        assert_eq!(c.on_client_close(), Act::Finish);
    }

    #[test]
    fn a_violation_closes_once_its_frame_is_out() {
        let mut c = Closing::new();
        assert_eq!(c.on_violation(1002), Act::SendClose(1002));
        assert!(!c.reads_client());
        assert!(!c.reads_upstream());
        // The game ending meanwhile queues nothing more.
        assert_eq!(c.on_upstream_eof(), Act::Go);
        assert_eq!(c.on_close_sent(), Act::Finish);
    }

    #[test]
    fn an_upstream_error_is_1011() {
        let mut c = Closing::new();
        assert_eq!(c.on_upstream_error(), Act::SendClose(1011));
        assert_eq!(c.on_close_sent(), Act::Finish);
    }

    #[test]
    fn a_second_close_from_the_browser_is_ignored() {
        let mut c = Closing::new();
        assert_eq!(c.on_client_close(), Act::ShutUpstream);
        assert_eq!(c.on_client_close(), Act::Go);
    }
}
