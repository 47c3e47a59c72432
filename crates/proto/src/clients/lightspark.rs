//! Lightspark.
//!
//! Sources: `src/backends/security.cpp` (*SEC*: `SecurityManager`,
//! `SocketPolicyFile`, `PolicyAllowAccessFrom`) and
//! `src/parsing/crossdomainpolicy.cpp` (*CDP*:
//! `CrossDomainPolicy::getNextElement`).

use super::structure::facts;
use super::{validated, ClientPolicy, ClientRule, Origin, Read, Rejection};
use crate::policy::LIGHTSPARK_READ;

/// SEC `SocketPolicyFile::retrievePolicyFile` connects with a 3 s timeout
/// ("adobe has a 3 second timeout").
pub const TIMEOUT_MS: u64 = 3000;

/// SEC `retrievePolicyFile` reads into a 4,096-byte buffer while each read
/// fills it, and stops at the first shorter read; then the reply must end
/// with NUL, `>` or `\n`, and that last byte is dropped (so a reply with
/// no NUL loses its final `>`).
///
/// `chunks` are what arrived together; Lightspark's reads take each in
/// 4,096-byte slices and stop after the first slice shorter than that.
pub fn read(chunks: &[&[u8]]) -> Read {
    let mut kept = Vec::new();
    let total: usize = chunks.iter().map(|c| c.len()).sum();
    'reads: for chunk in chunks {
        for slice in chunk.chunks(LIGHTSPARK_READ) {
            kept.extend_from_slice(slice);
            if slice.len() < LIGHTSPARK_READ {
                break 'reads;
            }
        }
    }
    let cut = kept.len() < total;
    match kept.last() {
        Some(0 | b'>' | b'\n') => {
            kept.pop();
        }
        // Refused whole: an empty document makes the parse fail.
        _ => kept.clear(),
    }
    Read {
        document: kept,
        cut,
    }
}

/// Lightspark refuses what the validator refuses (its libxml++ reader is
/// no more lenient), and also, per CDP `getNextElement`, which returns
/// `INVALID` for the whole file on:
/// * `<site-control>` in a file that is not the master policy (SEC
///   `SocketPolicyFile::isMaster`: served from port 843), or with other
///   than exactly one attribute;
/// * `<allow-http-request-headers-from>` in a socket policy;
/// * an `<allow-access-from>` with more than three attributes;
/// * any element below the root's children (depth above 1).
pub fn parse(document: &[u8], port: u16, master: bool) -> Result<ClientPolicy, Rejection> {
    let (_, mut policy) = validated(document, port)?;
    let text = std::str::from_utf8(document).unwrap_or_default();
    let found = facts(text);
    let refuse = |line, reason| Err(Rejection::Refused { line, reason });
    if let (false, Some(line)) = (master, found.site_control) {
        return refuse(
            line,
            "Lightspark rejects a policy with <site-control> not served as the master policy (port 843)",
        );
    }
    if let Some(line) = found.site_control_attributes {
        return refuse(
            line,
            "Lightspark rejects a <site-control> with other than one attribute",
        );
    }
    if let Some(line) = found.http_headers {
        return refuse(
            line,
            "Lightspark rejects a socket policy with <allow-http-request-headers-from>",
        );
    }
    if let Some(line) = found.many_attributes {
        return refuse(
            line,
            "Lightspark rejects an <allow-access-from> with more than 3 attributes",
        );
    }
    if let Some(line) = found.nested {
        return refuse(
            line,
            "Lightspark rejects elements nested below the root's children",
        );
    }
    if !master {
        policy.site_control = None;
    }
    Ok(policy)
}

/// SEC `PolicyAllowAccessFrom`: its constructor keeps, of each
/// comma-separated `to-ports` item, only the first number (`atoi` of the
/// item; the range branch never fires), so `8000-8100` grants 8000 alone;
/// `*` grants every port. `allowsAccessFrom` then matches the domain
/// (`URLInfo::matchesDomain`: `*`, `*.suffix`, exact names), refuses port
/// 0, and with `secure="true"` refuses SWFs not loaded over HTTPS.
pub fn grants(rule: &ClientRule, origin: &Origin, port: u16) -> bool {
    if port == 0 || !rule.rule.domain.matches(&origin.host) {
        return false;
    }
    if rule.rule.secure == Some(true) && !origin.https {
        return false;
    }
    match rule.rule.to_ports.ranges() {
        None => true,
        Some(ranges) => ranges.iter().any(|r| r.first() == port),
    }
}
