//! Adobe Flash Player.
//!
//! Sources: Adobe, "Setting up a socket policy file server"
//! (`devnet/flashplayer/articles/socket_policy_files.html`, here *SP*)
//! and "Policy file changes in Flash Player 9 and Flash Player 10"
//! (`devnet/flashplayer/articles/fplayer9_security.html`, *FP9*), and the
//! cross-domain policy file specification (*CDP*).

use super::{before_nul, validated, ClientPolicy, ClientRule, Origin, Read, Rejection};

/// How long Flash Player waits for the master policy before it tries the
/// next place: about 3 seconds (SP, on the wait for port 843).
pub const MASTER_TIMEOUT_MS: u64 = 3000;

/// Flash Player reads until the NUL that ends the policy, whatever the
/// pieces it arrives in (SP: the server sends the policy followed by a NUL
/// byte); what follows the first NUL is not part of the policy.
pub fn read(chunks: &[&[u8]]) -> Read {
    let all: Vec<u8> = chunks.concat();
    let (document, _) = before_nul(&all);
    Read {
        document: document.to_vec(),
        cut: false,
    }
}

/// Flash Player accepts exactly what the validator accepts (the validator
/// implements CDP's rules for socket policies). `<site-control>` counts
/// only in the master policy (CDP, `site-control`: a master policy
/// element); elsewhere it is ignored, so it is dropped here.
pub fn parse(document: &[u8], port: u16, master: bool) -> Result<ClientPolicy, Rejection> {
    let (_, mut policy) = validated(document, port)?;
    if !master {
        policy.site_control = None;
    }
    Ok(policy)
}

/// Whether `rule`, from a policy served on `policy_port`, lets a SWF from
/// `origin` connect to `port`:
/// * the domain matches (CDP: `*`, `*.example.com` also matching
///   `example.com`, exact names compared case-insensitively, IP literals
///   matched literally, never resolved);
/// * `port` is in `to-ports` (lists and inclusive ranges, `*`);
/// * a policy served from a port of 1024 or above grants only ports of 1024
///   or above (FP9, on socket policies served from high ports);
/// * `secure="true"` grants only SWFs loaded over HTTPS (CDP, `secure`).
pub fn grants(rule: &ClientRule, policy_port: u16, origin: &Origin, port: u16) -> bool {
    if policy_port >= 1024 && port < 1024 {
        return false;
    }
    if rule.rule.secure == Some(true) && !origin.https {
        return false;
    }
    rule.rule.grants(&origin.host, port)
}
