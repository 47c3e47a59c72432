//! Unity Web Player: mono's `System.Net.Sockets.SocketPolicyClient` fetches
//! the policy, `MonoForks.System.Windows.Browser.Net.CrossDomainPolicyManager`
//! caches it per IP, Unity's `FlashCrossDomainPolicy` parses and decides.
//!
//! Sources: mono `mcs/class/System/System.Net.Sockets/SocketPolicyClient.cs`
//! (*SPC*); Unity's `CrossDomainPolicyManager.cs` (*CDPM*) and
//! `FlashCrossDomainPolicy.cs` with its parser (*FCDP*).

use super::structure::facts;
use super::{before_nul, validated, ClientPolicy, ClientRule, Read, Rejection};
use crate::policy::UNITY_READ;

/// CDPM `CheckSocketEndPoint` fetches with a 3,000 ms timeout.
pub const TIMEOUT_MS: u64 = 3000;

/// SPC `GetPolicyStreamForIP` calls `Receive` once into a 5,000-byte
/// buffer and keeps what that one read returned: the first chunk, at most
/// [`UNITY_READ`] bytes. The policy is read up to its NUL.
pub fn read(chunks: &[&[u8]]) -> Read {
    let first = chunks.first().copied().unwrap_or_default();
    let kept = &first[..first.len().min(UNITY_READ)];
    let total: usize = chunks.iter().map(|c| c.len()).sum();
    let (document, _) = before_nul(kept);
    Read {
        document: document.to_vec(),
        cut: total > kept.len(),
    }
}

/// Unity refuses what the validator refuses, and also (FCDP parser
/// `Read`) a document whose root holds content other than elements (text
/// throws "Unexpected cross-domain-policy content"). `<site-control>` is
/// never consulted for sockets (FCDP `IsSocketConnectionAllowed` looks only
/// at the rules), so it is dropped.
pub fn parse(document: &[u8], port: u16, _master: bool) -> Result<ClientPolicy, Rejection> {
    let (_, mut policy) = validated(document, port)?;
    let text = std::str::from_utf8(document).unwrap_or_default();
    if let Some(line) = facts(text).stray_text {
        return Err(Rejection::Refused {
            line,
            reason: "Unity's parser throws on text in <cross-domain-policy>",
        });
    }
    policy.site_control = None;
    Ok(policy)
}

/// FCDP `AllowAccessFrom.IsSocketConnectionAllowed(port, policyport)`:
/// * a policy served from a port above 1024 grants no port below 1024
///   (`policyport > 1024 && port < 1024`; note 1024 itself is exempt);
/// * `to-ports="*"` grants every port; a list grants its ports; a range
///   `a-b` grants `a` up to `b - 1`: Unity's parser keeps the end exclusive
///   (`9000-9001` is 9000 alone; issue 10's reading of Unity's parser). The
///   older mono fork's parser converts each comma item with
///   `XmlConvert.ToInt32` and so rejects any range outright: with either,
///   list the ports;
/// * only `domain="*"` grants anything: "for now we only support socket
///   policies that say all domains are fine" (`return Domain == "*"`);
///   the SWF's origin and `secure` are never looked at.
pub fn grants(rule: &ClientRule, policy_port: u16, port: u16) -> bool {
    if policy_port > 1024 && port < 1024 {
        return false;
    }
    if port == 0 || !rule.rule.domain.is_any() {
        return false;
    }
    match rule.rule.to_ports.ranges() {
        None => true,
        Some(ranges) => ranges.iter().any(|r| {
            if r.first() == r.last() {
                port == r.first()
            } else {
                r.first() <= port && port < r.last()
            }
        }),
    }
}
