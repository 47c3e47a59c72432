//! Socket policy documents: the model, validation with line/column errors,
//! and rendering.
//!
//! * [`validate`] checks a document against Adobe's socket policy rules and
//!   returns the [`Policy`] it grants plus [`Warning`]s, or the first
//!   [`PolicyError`] with its line and column.
//! * [`Policy::render`] writes a policy as a document that validates back to
//!   the same [`Policy`].
//! * [`parse_allow_spec`] reads the `DOMAIN:PORTS` form of `--allow`.

mod compat;
mod domain;
mod error;
mod ports;
mod spec;
mod validate;

use std::fmt;
use std::str::FromStr;

pub use domain::{DomainError, DomainPattern, MAX_HOST_LEN, MAX_LABEL_LEN};
pub use error::{Advice, PolicyError, Rule, Warning};
pub use ports::{PortRange, PortSet, PortsError};
pub use spec::{parse_allow_spec, SpecError};
pub use validate::validate;

/// Documents larger than this (10 KB) are refused.
pub const MAX_POLICY_LEN: usize = 10 * 1024;
/// Documents larger than this get a warning: clients read the reply in one
/// read and a reply larger than one segment can arrive cut.
pub const WARN_POLICY_LEN: usize = 1400;

/// Unity Web Player reads the reply with one `Receive` into a 5,000-byte
/// buffer (mono's `SocketPolicyClient.GetPolicyStreamForIP`): a longer reply
/// is cut.
pub const UNITY_READ: usize = 5000;
/// Lightspark reads the reply 4,096 bytes at a time and stops at the first
/// shorter read (`SocketPolicyFile::retrievePolicyFile`,
/// `src/backends/security.cpp`): a longer reply can be cut where it
/// arrives in pieces.
pub const LIGHTSPARK_READ: usize = 4096;

/// The DOCTYPE line real policies start with (after the XML declaration).
pub const DOCTYPE: &str = "<!DOCTYPE cross-domain-policy SYSTEM \
                           \"http://www.adobe.com/xml/dtds/cross-domain-policy.dtd\">";

/// A validated socket policy.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Policy {
    /// `<site-control permitted-cross-domain-policies=...>`, if present.
    pub site_control: Option<MetaPolicy>,
    /// The `<allow-access-from>` rules, in document order.
    pub allow: Vec<AllowAccessFrom>,
}

/// Socket meta-policies: which socket policies a host allows besides its
/// master policy on port 843.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetaPolicy {
    /// `all`: any socket policy on the host is considered (the default).
    All,
    /// `master-only`: only the master policy on port 843.
    MasterOnly,
    /// `none`: no socket policy at all, the master policy included.
    None,
}

impl MetaPolicy {
    /// The attribute value.
    pub const fn as_str(self) -> &'static str {
        match self {
            MetaPolicy::All => "all",
            MetaPolicy::MasterOnly => "master-only",
            MetaPolicy::None => "none",
        }
    }
}

impl fmt::Display for MetaPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MetaPolicy {
    type Err = Rule;

    /// Parses `all`, `master-only` or `none`; the HTTP and FTP values and
    /// anything else give the [`Rule`] they break.
    fn from_str(value: &str) -> Result<MetaPolicy, Rule> {
        match value {
            "all" => Ok(MetaPolicy::All),
            "master-only" => Ok(MetaPolicy::MasterOnly),
            "none" => Ok(MetaPolicy::None),
            "by-content-type" | "by-ftp-filename" => Err(Rule::MetaPolicyNotForSockets {
                value: value.to_string(),
            }),
            _ => Err(Rule::MetaPolicy {
                value: value.to_string(),
            }),
        }
    }
}

/// One `<allow-access-from>` rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AllowAccessFrom {
    /// Who may connect.
    pub domain: DomainPattern,
    /// To which ports.
    pub to_ports: PortSet,
    /// The `secure` attribute, if given.
    pub secure: Option<bool>,
}

impl AllowAccessFrom {
    /// A rule granting `domain` access to `to_ports`, with no `secure` attribute.
    pub fn new(domain: DomainPattern, to_ports: PortSet) -> AllowAccessFrom {
        AllowAccessFrom {
            domain,
            to_ports,
            secure: None,
        }
    }

    /// Whether this rule lets a page from `host` connect to `port`.
    pub fn grants(&self, host: &str, port: u16) -> bool {
        self.domain.matches(host) && self.to_ports.contains(port)
    }
}

/// A policy and the warnings its validation produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validated {
    /// The policy.
    pub policy: Policy,
    /// Warnings, each with a position, in document order (size warnings first).
    pub warnings: Vec<Warning>,
    /// Line and column of `<site-control>`, if the document has one (where
    /// it is served from decides whether Lightspark accepts it).
    pub site_control_at: Option<(u32, u32)>,
    /// Line and column of each `<allow-access-from>`, in the order of
    /// `policy.allow`.
    pub allow_at: Vec<(u32, u32)>,
}

/// Appends `value` to `out` escaped for a double-quoted attribute.
fn push_attribute(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            _ => out.push(c),
        }
    }
}

impl Policy {
    /// Every domain to every port: `<allow-access-from domain="*" to-ports="*" />`.
    pub fn allow_all() -> Policy {
        Policy {
            site_control: None,
            allow: vec![AllowAccessFrom::new(DomainPattern::any(), PortSet::any())],
        }
    }

    /// Whether the policy lets a page from `host` connect to `port`: some
    /// rule grants it and the meta-policy is not `none`.
    pub fn grants(&self, host: &str, port: u16) -> bool {
        self.site_control != Some(MetaPolicy::None)
            && self.allow.iter().any(|rule| rule.grants(host, port))
    }

    /// Renders the document (without the NUL terminator) on one line: the
    /// XML declaration, the root and its elements, no DOCTYPE and no line
    /// breaks, so that a monitor that reads one line (the common Nagios
    /// check wants `cross-domain-policy`, its older version `xml version=`,
    /// both in the first line) sees both, and the reply is as small as it
    /// can be. Validating the result gives back an equal [`Policy`].
    ///
    /// ```
    /// use flashpolicy_proto::policy::{self, Policy};
    /// let text = Policy::allow_all().render();
    /// assert_eq!(
    ///     text,
    ///     r#"<?xml version="1.0"?><cross-domain-policy><allow-access-from domain="*" to-ports="*"/></cross-domain-policy>"#
    /// );
    /// assert_eq!(policy::validate(text.as_bytes()).map(|v| v.policy), Ok(Policy::allow_all()));
    /// ```
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(100 + 60 * self.allow.len());
        out.push_str("<?xml version=\"1.0\"?><cross-domain-policy>");
        if let Some(meta) = self.site_control {
            out.push_str("<site-control permitted-cross-domain-policies=\"");
            out.push_str(meta.as_str());
            out.push_str("\"/>");
        }
        for rule in &self.allow {
            out.push_str("<allow-access-from domain=\"");
            push_attribute(&mut out, &rule.domain.to_string());
            out.push_str("\" to-ports=\"");
            push_attribute(&mut out, &rule.to_ports.to_string());
            out.push('"');
            if let Some(secure) = rule.secure {
                out.push_str(if secure {
                    " secure=\"true\""
                } else {
                    " secure=\"false\""
                });
            }
            out.push_str("/>");
        }
        out.push_str("</cross-domain-policy>");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy_with_everything() -> Policy {
        Policy {
            site_control: Some(MetaPolicy::MasterOnly),
            allow: vec![
                AllowAccessFrom::new(
                    "*.example.com".parse().expect("domain"),
                    "443,8000-8100".parse().expect("ports"),
                ),
                AllowAccessFrom {
                    domain: "2001:db8::1".parse().expect("domain"),
                    to_ports: "843".parse().expect("ports"),
                    secure: Some(false),
                },
                AllowAccessFrom {
                    domain: "localhost".parse().expect("domain"),
                    to_ports: PortSet::any(),
                    secure: Some(true),
                },
            ],
        }
    }

    #[test]
    fn renders_allow_all_exactly_on_one_line() {
        assert_eq!(
            Policy::allow_all().render(),
            "<?xml version=\"1.0\"?><cross-domain-policy>\
             <allow-access-from domain=\"*\" to-ports=\"*\"/>\
             </cross-domain-policy>"
        );
        let text = policy_with_everything().render();
        assert!(!text.contains('\n'), "{text}");
        let first = text.lines().next().expect("a line");
        assert!(first.contains("cross-domain-policy") && first.contains("xml version="));
    }

    #[test]
    fn render_validates_back() {
        let policy = policy_with_everything();
        let text = policy.render();
        let validated = validate(text.as_bytes()).expect("valid");
        assert_eq!(validated.policy, policy);
        let flash: Vec<_> = validated
            .warnings
            .iter()
            .filter(|w| !w.rule.is_compat())
            .collect();
        assert_eq!(flash.len(), 1, "{:?}", validated.warnings);
        assert_eq!(flash[0].rule, Advice::SecureTrue);
        assert_eq!(flash[0].line, 1);
        let empty = Policy::default();
        assert_eq!(
            validate(empty.render().as_bytes()).map(|v| v.policy),
            Ok(empty)
        );
    }

    #[test]
    fn escapes_attributes() {
        let mut out = String::new();
        push_attribute(&mut out, "a&b<c>d\"e'f");
        assert_eq!(out, "a&amp;b&lt;c&gt;d&quot;e&apos;f");
    }

    #[test]
    fn grants() {
        let policy = Policy {
            site_control: None,
            allow: vec![AllowAccessFrom::new(
                "*.example.com".parse().expect("domain"),
                "443".parse().expect("ports"),
            )],
        };
        assert!(policy.grants("www.example.com", 443));
        assert!(!policy.grants("www.example.com", 80));
        assert!(!policy.grants("example.org", 443));
        let none = Policy {
            site_control: Some(MetaPolicy::None),
            ..policy
        };
        assert!(!none.grants("www.example.com", 443));
    }

    #[test]
    fn meta_policy_values() {
        for meta in [MetaPolicy::All, MetaPolicy::MasterOnly, MetaPolicy::None] {
            assert_eq!(meta.as_str().parse::<MetaPolicy>(), Ok(meta));
        }
        assert!(matches!(
            "by-content-type".parse::<MetaPolicy>(),
            Err(Rule::MetaPolicyNotForSockets { .. })
        ));
        assert!(matches!(
            "All".parse::<MetaPolicy>(),
            Err(Rule::MetaPolicy { .. })
        ));
    }
}
