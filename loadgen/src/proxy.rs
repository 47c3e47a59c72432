//! `--proxy-protocol v1|v2`: a PROXY protocol header before each request,
//! as a balancer would send it, so that the cost of a server's PROXY
//! parsing can be measured.
//!
//! The header carries the connection's own addresses, or with
//! `--proxy-source CIDR` a source address cycled through that range (the
//! connection's own port), and always the connection's real destination.

use std::fmt;
use std::net::SocketAddr;

use clap::ValueEnum;
use flashpolicy_proto::proxy::Cidr;

/// Which header to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProxyVersion {
    /// The text header (`PROXY TCP4 ...\r\n`).
    V1,
    /// The binary header (`PROXY` command, TCP over IPv4 or IPv6).
    V2,
}

impl ProxyVersion {
    /// `"v1"` or `"v2"` (reports).
    pub fn name(self) -> &'static str {
        match self {
            ProxyVersion::V1 => "v1",
            ProxyVersion::V2 => "v2",
        }
    }
}

impl fmt::Display for ProxyVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The headers a run sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyHeaders {
    /// v1 or v2.
    pub version: ProxyVersion,
    /// `--proxy-source`: claimed source addresses, cycled through.
    pub source: Option<Cidr>,
}

impl ProxyHeaders {
    /// The header for a connection from `local` to `dest`; `n` counts the
    /// connections of this worker (it picks the `--proxy-source` address).
    pub fn header(&self, local: SocketAddr, dest: SocketAddr, n: u64) -> Vec<u8> {
        let src_ip = self.source.map_or(local.ip(), |c| c.nth(n));
        encode(self.version, SocketAddr::new(src_ip, local.port()), dest)
    }
}

impl From<ProxyVersion> for flashpolicy_proto::proxy::Version {
    fn from(v: ProxyVersion) -> Self {
        match v {
            ProxyVersion::V1 => flashpolicy_proto::proxy::Version::V1,
            ProxyVersion::V2 => flashpolicy_proto::proxy::Version::V2,
        }
    }
}

/// A header claiming `src`, to `dst` (written in one family; see
/// [`flashpolicy_proto::proxy::encode()`]).
pub fn encode(version: ProxyVersion, src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    flashpolicy_proto::proxy::encode(version.into(), src, dst)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flashpolicy_proto::proxy::{HeaderReader, Step};

    #[test]
    fn headers_parse_back_with_the_claimed_source() {
        let dst: SocketAddr = "127.0.0.1:843".parse().expect("valid");
        let local: SocketAddr = "127.0.0.1:40000".parse().expect("valid");
        for version in [ProxyVersion::V1, ProxyVersion::V2] {
            let headers = ProxyHeaders {
                version,
                source: Some("198.51.100.0/24".parse().expect("valid")),
            };
            for n in [0u64, 5, 300] {
                let h = headers.header(local, dst, n);
                let want = SocketAddr::new(
                    format!("198.51.100.{}", n % 256).parse().expect("valid"),
                    40000,
                );
                assert_eq!(
                    HeaderReader::new().feed(&h),
                    Step::Header {
                        client: Some(want),
                        consumed: h.len()
                    },
                    "{version}"
                );
            }
            let own = ProxyHeaders {
                version,
                source: None,
            };
            let h6 = own.header(
                "[::1]:5".parse().expect("valid"),
                "[::1]:843".parse().expect("valid"),
                0,
            );
            assert!(matches!(
                HeaderReader::new().feed(&h6),
                Step::Header { client: Some(c), .. } if c == "[::1]:5".parse().expect("valid")
            ));
        }
    }
}
