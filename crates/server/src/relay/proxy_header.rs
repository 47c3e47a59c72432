//! `--upstream-proxy-protocol`: the PROXY header (v1 text or v2 binary) a
//! relay sends to the upstream first, naming the player's address.

use std::net::SocketAddr;

use flashpolicy_proto::proxy::Version;

/// Which PROXY protocol version to send upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum UpstreamProxy {
    /// The text header: `PROXY TCP4 src dst sport dport\r\n`.
    V1,
    /// The binary header.
    V2,
}

impl From<UpstreamProxy> for Version {
    fn from(v: UpstreamProxy) -> Version {
        match v {
            UpstreamProxy::V1 => Version::V1,
            UpstreamProxy::V2 => Version::V2,
        }
    }
}

/// The header for a connection from `client` to `local` (the gateway's
/// address it reached); see [`flashpolicy_proto::proxy::encode()`] for the
/// families.
pub(crate) fn encode(version: UpstreamProxy, client: SocketAddr, local: SocketAddr) -> Vec<u8> {
    flashpolicy_proto::proxy::encode(version.into(), client, local)
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
