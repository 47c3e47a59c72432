//! What the validator adds for the clients besides Flash Player: a
//! document each of them reads differently. The rules and their sources
//! are in [`crate::clients`]; here they become [`Advice`] at a position.

use super::error::Advice;
use super::{PortSet, Warning, LIGHTSPARK_READ, UNITY_READ};

/// The UTF-8 byte-order mark.
pub(super) const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Whether `document` looks like UTF-16: a UTF-16 byte-order mark, or an
/// ASCII `<` next to a NUL in its first two bytes (`<\0` or `\0<`, how
/// `<?xml` or `<cross-domain-policy` start in UTF-16LE and BE).
pub(super) fn is_utf16(document: &[u8]) -> bool {
    matches!(
        document,
        [0xFF, 0xFE, ..] | [0xFE, 0xFF, ..] | [b'<', 0, ..] | [0, b'<', ..]
    )
}

/// Warnings about the whole document, at line 1, column 1: a byte-order
/// mark, and a reply longer than what Lightspark or Unity reads.
pub(super) fn whole_document(document: &[u8], warnings: &mut Vec<Warning>) {
    let at = |rule| Warning {
        line: 1,
        column: 1,
        rule,
    };
    if document.starts_with(BOM) {
        warnings.push(at(Advice::ByteOrderMark));
    }
    let reply = document.len() + 1;
    for (client, limit) in [
        ("Lightspark", LIGHTSPARK_READ),
        ("Unity Web Player", UNITY_READ),
    ] {
        if reply > limit {
            warnings.push(at(Advice::TooLargeFor {
                client,
                limit,
                len: reply,
            }));
        }
    }
}

/// The first `first-last` range (first < last) of `to_ports`, as advice.
pub(super) fn range_advice(to_ports: &PortSet) -> Option<Advice> {
    let range = to_ports.ranges()?.iter().find(|r| r.first() < r.last())?;
    Some(Advice::PortRange {
        range: range.to_string(),
        first: range.first(),
        last: range.last(),
    })
}
