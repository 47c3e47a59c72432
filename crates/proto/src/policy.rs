//! Socket policy documents: model, validation with line/column errors, rendering.
//!
//! STUB: the API below is the contract the server and the load generator use;
//! the implementation is being written.

use std::fmt;

/// Documents larger than this are refused.
pub const MAX_POLICY_LEN: usize = 10 * 1024;
/// Documents larger than this get a warning: clients read the reply in one
/// read and a reply larger than one segment can arrive cut.
pub const WARN_POLICY_LEN: usize = 1400;

/// A validated socket policy.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Policy {
    /// `<site-control permitted-cross-domain-policies=...>`, if present.
    pub site_control: Option<MetaPolicy>,
    /// The `<allow-access-from>` rules, in document order.
    pub allow: Vec<AllowAccessFrom>,
}

/// Socket meta-policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaPolicy {
    /// `all`
    All,
    /// `master-only`
    MasterOnly,
    /// `none`
    None,
}

/// One `<allow-access-from>` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowAccessFrom {
    /// Who may connect.
    pub domain: String,
    /// To which ports.
    pub to_ports: String,
    /// The `secure` attribute, if given.
    pub secure: Option<bool>,
}

/// A policy and the warnings its validation produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validated {
    /// The policy.
    pub policy: Policy,
    /// Warnings, each with a position.
    pub warnings: Vec<PolicyError>,
}

/// A rule broken at a position of the document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    /// 1-based line.
    pub line: u32,
    /// 1-based column.
    pub column: u32,
    /// The rule, in words.
    pub rule: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}, column {}: {}",
            self.line, self.column, self.rule
        )
    }
}

impl std::error::Error for PolicyError {}

/// Validates a socket policy document.
pub fn validate(document: &[u8]) -> Result<Validated, PolicyError> {
    let _ = document;
    Err(PolicyError {
        line: 1,
        column: 1,
        rule: "not implemented".into(),
    })
}

impl Policy {
    /// Every domain to every port.
    pub fn allow_all() -> Policy {
        Policy {
            site_control: None,
            allow: vec![AllowAccessFrom {
                domain: "*".into(),
                to_ports: "*".into(),
                secure: None,
            }],
        }
    }

    /// Renders the document (without the NUL terminator).
    pub fn render(&self) -> String {
        String::new()
    }
}

/// Why a `--allow DOMAIN:PORTS` argument is not a valid rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError(pub String);

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SpecError {}

/// Parses `DOMAIN:PORTS` as given to `--allow`, e.g. `*.example.com:443,8000-8100`.
pub fn parse_allow_spec(spec: &str) -> Result<AllowAccessFrom, SpecError> {
    Err(SpecError(format!("{spec}: not implemented")))
}
