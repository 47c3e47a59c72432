//! Decoding a complete v1 line (with the `ppp` crate) and a v2 address
//! block, and which v2 families carry one.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use super::{V2_INET6_LEN, V2_INET_LEN, V2_UNIX_LEN};

/// The address block a v2 `PROXY` of family/transport `fam` must carry, or
/// `None` if such a header is invalid on a stream: an unknown family or
/// transport, or a datagram one. Unspecified (0) in either half means the
/// real endpoints are used.
pub(super) fn proxy_block(fam: u8) -> Option<u16> {
    let (family, transport) = (fam >> 4, fam & 0x0f);
    if family > 3 || transport > 2 {
        return None;
    }
    if family == 0 || transport == 0 {
        return Some(0);
    }
    if transport == 2 {
        return None;
    }
    Some(match family {
        1 => V2_INET_LEN as u16,
        2 => V2_INET6_LEN as u16,
        _ => V2_UNIX_LEN as u16,
    })
}

/// The client (source) address of a v2 TCP address block; `None` for any
/// other family (real endpoints).
pub(super) fn decode_v2(fam: u8, a: &[u8]) -> Option<SocketAddr> {
    match fam {
        0x11 if a.len() >= V2_INET_LEN => {
            let ip = Ipv4Addr::new(a[0], a[1], a[2], a[3]);
            Some(SocketAddr::new(ip.into(), u16::from_be_bytes([a[8], a[9]])))
        }
        0x21 if a.len() >= V2_INET6_LEN => {
            let mut ip = [0u8; 16];
            ip.copy_from_slice(&a[..16]);
            let port = u16::from_be_bytes([a[32], a[33]]);
            Some(SocketAddr::new(Ipv6Addr::from(ip).into(), port))
        }
        _ => None,
    }
}

/// A complete v1 line (ending in `\n`): `Some(client)` if valid (`None`
/// inside for `UNKNOWN`), `None` if not.
pub(super) fn parse_v1(line: &[u8]) -> Option<Option<SocketAddr>> {
    let text = std::str::from_utf8(line).ok()?;
    let header = ppp::v1::Header::try_from(text).ok()?;
    if header.header.len() != line.len() {
        return None;
    }
    Some(match header.addresses {
        ppp::v1::Addresses::Unknown => None,
        ppp::v1::Addresses::Tcp4(a) => {
            Some(SocketAddr::new(a.source_address.into(), a.source_port))
        }
        ppp::v1::Addresses::Tcp6(a) => {
            Some(SocketAddr::new(a.source_address.into(), a.source_port))
        }
    })
}
