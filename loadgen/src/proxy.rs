//! `--proxy-protocol v1|v2`: a PROXY protocol header before each request,
//! as a balancer would send it, so that the cost of a server's PROXY
//! parsing can be measured.
//!
//! The header carries the connection's own addresses, or with
//! `--proxy-source CIDR` a source address cycled through that range (the
//! connection's own port), and always the connection's real destination.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use clap::ValueEnum;
use flashpolicy_proto::proxy::{Cidr, V2_SIGNATURE};

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

/// A header claiming `src`, to `dst` (both of one family).
pub fn encode(version: ProxyVersion, src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    match version {
        ProxyVersion::V1 => {
            let proto = if src.is_ipv4() { "TCP4" } else { "TCP6" };
            format!(
                "PROXY {proto} {} {} {} {}\r\n",
                src.ip(),
                dst.ip(),
                src.port(),
                dst.port()
            )
            .into_bytes()
        }
        ProxyVersion::V2 => {
            let mut h = V2_SIGNATURE.to_vec();
            h.push(0x21); // version 2, PROXY
            match (src.ip(), dst.ip()) {
                (IpAddr::V4(s), IpAddr::V4(d)) => {
                    h.extend_from_slice(&[0x11, 0, 12]);
                    h.extend_from_slice(&s.octets());
                    h.extend_from_slice(&d.octets());
                }
                (s, d) => {
                    h.extend_from_slice(&[0x21, 0, 36]);
                    h.extend_from_slice(&v6(s).octets());
                    h.extend_from_slice(&v6(d).octets());
                }
            }
            h.extend_from_slice(&src.port().to_be_bytes());
            h.extend_from_slice(&dst.port().to_be_bytes());
            h
        }
    }
}

fn v6(ip: IpAddr) -> std::net::Ipv6Addr {
    match ip {
        IpAddr::V4(a) => a.to_ipv6_mapped(),
        IpAddr::V6(a) => a,
    }
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
