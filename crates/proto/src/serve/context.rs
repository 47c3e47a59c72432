//! What every session event is served with: the reply current now, the
//! PROXY settings and the per-address limit.

use super::address_limit::AddressLimit;
use crate::proxy::ProxySettings;

/// The worker's serving context, passed by reference to the events of a
/// [`Session`](super::Session) that may need it.
#[derive(Debug, Clone, Copy)]
pub struct Serving<'a> {
    /// The reply being served now; a session sends the one current when its
    /// request completed.
    pub reply: &'static [u8],
    /// `--proxy-protocol`: every connection starts with a PROXY header,
    /// from the peers these settings trust. `None`: no header.
    pub proxy: Option<&'a ProxySettings>,
    /// `--max-per-ip`: the open connections of each client address, shared
    /// by every worker. `None`: no limit.
    pub limit: Option<&'static AddressLimit>,
}

impl<'a> Serving<'a> {
    /// Serving `reply` with no PROXY header.
    pub const fn plain(reply: &'static [u8]) -> Serving<'static> {
        Serving {
            reply,
            proxy: None,
            limit: None,
        }
    }

    /// Serving `reply`, with PROXY headers if `proxy` is given.
    pub const fn new(reply: &'static [u8], proxy: Option<&'a ProxySettings>) -> Serving<'a> {
        Serving {
            reply,
            proxy,
            limit: None,
        }
    }

    /// The same, with `--max-per-ip` counted in `limit` if given.
    pub const fn with_limit(self, limit: Option<&'static AddressLimit>) -> Serving<'a> {
        Serving { limit, ..self }
    }

    /// Whether a session must be given its peer's address at accept: with
    /// `--proxy-protocol` (the `--proxy-from` check and the real endpoints
    /// of `LOCAL`) and with `--max-per-ip` (the address to count).
    /// Engines also pass it when debug logging is on.
    pub const fn needs_peer(&self) -> bool {
        self.proxy.is_some() || self.limit.is_some()
    }
}
