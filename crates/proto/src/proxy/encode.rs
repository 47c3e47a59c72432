//! The sender side: a PROXY header naming a connection's endpoints, as a
//! balancer writes it (the gateway's `--upstream-proxy-protocol`, the load
//! generator's `--proxy-protocol`).

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use super::header::V2_SIGNATURE;

/// Which header to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// The text header: `PROXY TCP4 src dst sport dport\r\n`.
    V1,
    /// The binary header: the `PROXY` command, TCP over IPv4 or IPv6, no
    /// TLVs.
    V2,
}

/// The header for a connection from `src` to `dst`. Both are written in
/// one family: IPv4 where both are (or map) IPv4, IPv6 otherwise (an IPv4
/// address then mapped), as a dual-stack socket reports them.
pub fn encode(version: Version, src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let (src, dst) = same_family(src, dst);
    match version {
        Version::V1 => {
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
        Version::V2 => {
            let mut out = Vec::with_capacity(16 + 36);
            out.extend_from_slice(&V2_SIGNATURE);
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

fn v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

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
    use crate::proxy::{HeaderReader, Step};

    fn decoded(bytes: &[u8]) -> Option<SocketAddr> {
        let mut reader = HeaderReader::new();
        match reader.feed(bytes) {
            Step::Header { client, consumed } => {
                assert_eq!(consumed, bytes.len(), "the whole header, nothing more");
                client
            }
            other => panic!("not a header: {other:?}"),
        }
    }

    #[test]
    fn what_is_written_reads_back_in_both_versions_and_families() {
        let cases: [(&str, &str, &str); 4] = [
            ("192.0.2.7:5000", "127.0.0.1:843", "192.0.2.7:5000"),
            ("[2001:db8::7]:5000", "[::1]:843", "[2001:db8::7]:5000"),
            // A mapped client on a dual-stack port is written as IPv4.
            (
                "[::ffff:192.0.2.7]:5000",
                "[::ffff:127.0.0.1]:843",
                "192.0.2.7:5000",
            ),
            // Mixed families: IPv6, the IPv4 one mapped.
            ("192.0.2.7:5000", "[::1]:843", "[::ffff:192.0.2.7]:5000"),
        ];
        for (src, dst, want) in cases {
            let (src, dst) = (src.parse().expect("src"), dst.parse().expect("dst"));
            let want: SocketAddr = want.parse().expect("want");
            for version in [Version::V1, Version::V2] {
                let bytes = encode(version, src, dst);
                let got = decoded(&bytes).map(|a| SocketAddr::new(a.ip().to_canonical(), a.port()));
                assert_eq!(
                    got,
                    Some(SocketAddr::new(want.ip().to_canonical(), want.port())),
                    "{version:?} {src} -> {dst}"
                );
            }
        }
    }
}
