//! `--upstream-proxy-protocol`: the PROXY header (v1 text or v2 binary) a
//! relay sends to the upstream first, naming the player's address.

use std::net::{IpAddr, SocketAddr};

/// Which PROXY protocol version to send upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum UpstreamProxy {
    /// The text header: `PROXY TCP4 src dst sport dport\r\n`.
    V1,
    /// The binary header.
    V2,
}

/// The v2 signature.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// The header for a connection from `client` to `local` (the gateway's
/// address it reached). Mixed families are sent as IPv6 (an IPv4 address
/// mapped), as a dual-stack socket would report them.
pub(crate) fn encode(version: UpstreamProxy, client: SocketAddr, local: SocketAddr) -> Vec<u8> {
    let (src, dst) = same_family(client, local);
    match version {
        UpstreamProxy::V1 => {
            let family = if src.is_ipv4() { "TCP4" } else { "TCP6" };
            format!(
                "PROXY {family} {} {} {} {}\r\n",
                src.ip(),
                dst.ip(),
                src.port(),
                dst.port()
            )
            .into_bytes()
        }
        UpstreamProxy::V2 => {
            let mut out = Vec::with_capacity(16 + 36);
            out.extend_from_slice(V2_SIGNATURE);
            out.push(0x21); // version 2, PROXY
            match (src.ip(), dst.ip()) {
                (IpAddr::V4(s), IpAddr::V4(d)) => {
                    out.push(0x11); // TCP over IPv4
                    out.extend_from_slice(&12u16.to_be_bytes());
                    out.extend_from_slice(&s.octets());
                    out.extend_from_slice(&d.octets());
                }
                (s, d) => {
                    out.push(0x21); // TCP over IPv6
                    out.extend_from_slice(&36u16.to_be_bytes());
                    out.extend_from_slice(&v6(s).octets());
                    out.extend_from_slice(&v6(d).octets());
                }
            }
            out.extend_from_slice(&src.port().to_be_bytes());
            out.extend_from_slice(&dst.port().to_be_bytes());
            out
        }
    }
}

fn v6(ip: IpAddr) -> std::net::Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

/// Both addresses in one family: IPv4 where both are (or map) IPv4, IPv6
/// otherwise.
fn same_family(a: SocketAddr, b: SocketAddr) -> (SocketAddr, SocketAddr) {
    let (ca, cb) = (a.ip().to_canonical(), b.ip().to_canonical());
    if ca.is_ipv4() && cb.is_ipv4() {
        (SocketAddr::new(ca, a.port()), SocketAddr::new(cb, b.port()))
    } else {
        (
            SocketAddr::new(IpAddr::V6(v6(ca)), a.port()),
            SocketAddr::new(IpAddr::V6(v6(cb)), b.port()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flashpolicy_proto::proxy::{HeaderReader, Step};

    fn decoded(bytes: &[u8]) -> Option<SocketAddr> {
        match HeaderReader::default().feed(bytes) {
            Step::Header { client, .. } => client,
            other => panic!("not a header: {other:?}"),
        }
    }

    #[test]
    fn both_versions_decode_to_the_client() {
        let client: SocketAddr = "192.0.2.7:40000".parse().expect("addr");
        let local: SocketAddr = "127.0.0.1:9339".parse().expect("addr");
        for v in [UpstreamProxy::V1, UpstreamProxy::V2] {
            let header = encode(v, client, local);
            assert_eq!(decoded(&header), Some(client), "{v:?}");
        }
        assert_eq!(
            encode(UpstreamProxy::V1, client, local),
            b"PROXY TCP4 192.0.2.7 127.0.0.1 40000 9339\r\n"
        );
    }

    #[test]
    fn a_mapped_client_on_a_dual_stack_port_is_sent_as_ipv4() {
        let client: SocketAddr = "[::ffff:192.0.2.7]:40000".parse().expect("addr");
        let local: SocketAddr = "[::ffff:127.0.0.1]:9339".parse().expect("addr");
        let header = encode(UpstreamProxy::V2, client, local);
        assert_eq!(header[13], 0x11);
        assert_eq!(header.len(), 16 + 12);
    }

    #[test]
    fn ipv6_clients_are_sent_as_ipv6() {
        let client: SocketAddr = "[2001:db8::1]:40000".parse().expect("addr");
        let local: SocketAddr = "127.0.0.1:9339".parse().expect("addr");
        let header = encode(UpstreamProxy::V2, client, local);
        assert_eq!(header[13], 0x21);
        assert_eq!(header.len(), 16 + 36);
        assert!(encode(UpstreamProxy::V1, client, local)
            .starts_with(b"PROXY TCP6 2001:db8::1 ::ffff:127.0.0.1 "));
    }
}
