//! What validation reports: errors ([`PolicyError`], a broken [`Rule`]) and
//! warnings ([`Warning`], a piece of [`Advice`]), each at a 1-based line and
//! column of the document. Columns count characters, not bytes.

use std::fmt;

use super::domain::DomainError;
use super::ports::PortsError;
use super::{MAX_POLICY_LEN, WARN_POLICY_LEN};

/// A rule of socket policy documents that a document breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rule {
    /// The document is larger than [`MAX_POLICY_LEN`].
    TooLarge {
        /// Its length in bytes.
        len: usize,
    },
    /// The document contains a NUL byte; a client stops reading there.
    Nul,
    /// The document is not UTF-8.
    NotUtf8,
    /// The document is UTF-16 (a UTF-16 byte-order mark, or NULs between
    /// ASCII characters): no client decodes it.
    Utf16,
    /// The document is not well-formed XML (the XML parser's message).
    Xml(String),
    /// The root element is not `<cross-domain-policy>`.
    Root {
        /// The root element found.
        found: String,
    },
    /// An element lacks a mandatory attribute.
    MissingAttribute {
        /// The element.
        element: &'static str,
        /// The attribute.
        attribute: &'static str,
    },
    /// A malformed `domain`.
    Domain(DomainError),
    /// A malformed `to-ports`.
    Ports(PortsError),
    /// `secure` is neither `true` nor `false`.
    Secure {
        /// The value found.
        value: String,
    },
    /// `permitted-cross-domain-policies` has an unknown value.
    MetaPolicy {
        /// The value found.
        value: String,
    },
    /// `permitted-cross-domain-policies` has a value that only HTTP or FTP
    /// policies may use (`by-content-type`, `by-ftp-filename`).
    MetaPolicyNotForSockets {
        /// The value found.
        value: String,
    },
    /// A second `<site-control>`.
    DuplicateSiteControl {
        /// Line of the first one.
        first_line: u32,
    },
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::TooLarge { len } => write!(
                f,
                "the policy is {len} bytes; the most a socket policy may have is {MAX_POLICY_LEN}"
            ),
            Rule::Nul => f.write_str(
                "the policy contains a NUL byte; a client stops reading at the first NUL",
            ),
            Rule::NotUtf8 => f.write_str("the policy is not valid UTF-8"),
            Rule::Utf16 => f.write_str(
                "the policy is UTF-16; socket policy clients read bytes, not UTF-16: \
                 encode the policy as UTF-8",
            ),
            Rule::Xml(message) => write!(f, "not well-formed XML: {message}"),
            Rule::Root { found } => write!(
                f,
                "the root element must be <cross-domain-policy>, not <{found}>"
            ),
            Rule::MissingAttribute { element, attribute } => write!(
                f,
                "<{element}> must have a `{attribute}` attribute"
            ),
            Rule::Domain(e) => e.fmt(f),
            Rule::Ports(e) => e.fmt(f),
            Rule::Secure { value } => write!(
                f,
                "secure must be `true` or `false`, not `{value}`"
            ),
            Rule::MetaPolicy { value } => write!(
                f,
                "permitted-cross-domain-policies must be `all`, `master-only` or `none`, not `{value}`"
            ),
            Rule::MetaPolicyNotForSockets { value } => write!(
                f,
                "permitted-cross-domain-policies `{value}` applies only to HTTP or FTP policies; \
                 a socket policy takes `all`, `master-only` or `none`"
            ),
            Rule::DuplicateSiteControl { first_line } => write!(
                f,
                "a policy may have only one <site-control>; the first is on line {first_line}"
            ),
        }
    }
}

/// Something valid but probably not what the author wants.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Advice {
    /// The document is larger than [`WARN_POLICY_LEN`]: clients read the
    /// reply in one read, and a reply larger than one segment can arrive cut.
    Large {
        /// Its length in bytes.
        len: usize,
    },
    /// No `<allow-access-from>`: the policy grants nothing.
    GrantsNothing,
    /// `site-control` is `none`, which disables every socket policy on the
    /// host, this one included.
    MetaPolicyNone,
    /// `secure="true"`, which Adobe advises against for socket policies of
    /// servers that are not local.
    SecureTrue,
    /// `to-ports` contains blanks, which Flash Player may not accept.
    BlanksInPorts,
    /// An element socket policies do not define; clients ignore it.
    UnknownElement {
        /// Its name.
        name: String,
    },
    /// An attribute the element does not define; clients ignore it.
    UnknownAttribute {
        /// The element.
        element: String,
        /// The attribute.
        attribute: String,
    },
    /// `<allow-http-request-headers-from>` is for HTTP policies only.
    HttpOnlyElement {
        /// Its name.
        name: String,
    },
    /// Text (other than whitespace) where only elements belong.
    StrayText,
    /// No rule has `domain="*"`: Unity Web Player honours only those for
    /// sockets (mono's `FlashCrossDomainPolicy.AllowAccessFrom.IsSocketConnectionAllowed`
    /// returns `Domain == "*"`), so the policy grants Unity nothing.
    NoWildcardDomain,
    /// A `first-last` range in `to-ports`: Lightspark grants only `first`
    /// (`PolicyAllowAccessFrom`'s constructor in `src/backends/security.cpp`
    /// keeps the first number of each item), Unity's parser treats `last`
    /// as exclusive.
    PortRange {
        /// The range as written in canonical form.
        range: String,
        /// Its first port.
        first: u16,
        /// Its last port.
        last: u16,
    },
    /// The reply (document and NUL) is larger than what a client reads.
    TooLargeFor {
        /// The client, by name.
        client: &'static str,
        /// What that client reads (bytes).
        limit: usize,
        /// The reply's length in bytes (the document and its NUL).
        len: usize,
    },
    /// The document starts with a UTF-8 byte-order mark.
    ByteOrderMark,
    /// `<site-control>` in a policy served from a port other than 843:
    /// Lightspark rejects the whole file (`CrossDomainPolicy::getNextElement`
    /// in `src/parsing/crossdomainpolicy.cpp` returns `INVALID` for
    /// `site-control` outside a master policy); Flash Player ignores it there.
    SiteControlOffMaster {
        /// The listening port that is not 843.
        port: u16,
    },
    /// Every listener is IPv6-only: Unity Web Player connects over IPv4
    /// only (mono's `SocketPolicyClient` opens an `InterNetwork` socket).
    Ipv6Only {
        /// The listeners, as written.
        listeners: String,
    },
}

impl Advice {
    /// Whether this warning says that a real client (Unity Web Player,
    /// Lightspark) refuses or under-reads the policy: the warnings
    /// `--check --strict` turns into errors.
    pub fn is_compat(&self) -> bool {
        matches!(
            self,
            Advice::NoWildcardDomain
                | Advice::PortRange { .. }
                | Advice::TooLargeFor { .. }
                | Advice::ByteOrderMark
                | Advice::SiteControlOffMaster { .. }
                | Advice::Ipv6Only { .. }
                | Advice::HttpOnlyElement { .. }
        )
    }
}

impl fmt::Display for Advice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Advice::Large { len } => write!(
                f,
                "the policy is {len} bytes; above {WARN_POLICY_LEN} it may not fit in one \
                 segment, and clients that read it in one read can get it cut"
            ),
            Advice::GrantsNothing => f.write_str(
                "the policy has no <allow-access-from>, so it grants nothing to anybody",
            ),
            Advice::MetaPolicyNone => f.write_str(
                "permitted-cross-domain-policies `none` forbids every socket policy on this \
                 host, this one included: its rules grant nothing",
            ),
            Advice::SecureTrue => f.write_str(
                "secure=\"true\" in a socket policy is meaningful only for local servers; Adobe \
                 advises against it for servers reached over the network",
            ),
            Advice::BlanksInPorts => f.write_str(
                "to-ports contains blanks; Flash Player may not accept them, write e.g. `80,443`",
            ),
            Advice::UnknownElement { name } => write!(
                f,
                "<{name}> is not part of a socket policy; clients ignore it"
            ),
            Advice::UnknownAttribute { element, attribute } => write!(
                f,
                "<{element}> has no `{attribute}` attribute; clients ignore it"
            ),
            Advice::HttpOnlyElement { name } => write!(
                f,
                "<{name}> applies only to HTTP policies: Flash Player ignores it, \
                 Lightspark rejects the whole socket policy (drop the element)"
            ),
            Advice::StrayText => {
                f.write_str("text outside any attribute is not part of a policy; clients ignore it")
            }
            Advice::NoWildcardDomain => f.write_str(
                "no <allow-access-from domain=\"*\">: Unity Web Player honours only rules \
                 with domain=\"*\" for sockets, so it is granted nothing",
            ),
            Advice::PortRange { range, first, last } => {
                write!(
                    f,
                    "to-ports range {range}: Lightspark grants only {first}, Unity Web Player \
                     drops {last} (its range end is exclusive); list the ports or use `*`"
                )
            }
            Advice::TooLargeFor { client, limit, len } => write!(
                f,
                "the reply (policy and NUL) is {len} bytes; {client} reads at most {limit} \
                 and gets it cut"
            ),
            Advice::ByteOrderMark => f.write_str(
                "the policy starts with a UTF-8 byte-order mark; some clients take it for \
                 content before the root: drop it",
            ),
            Advice::SiteControlOffMaster { port } => write!(
                f,
                "<site-control> in a policy served from port {port}, not 843: Lightspark \
                 rejects the whole file, Flash Player ignores the element there"
            ),
            Advice::Ipv6Only { listeners } => write!(
                f,
                "every listener is IPv6-only ({listeners}): Unity Web Player fetches \
                 socket policies over IPv4 only and gets none"
            ),
        }
    }
}

/// A rule broken at a position of the document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    /// 1-based line.
    pub line: u32,
    /// 1-based column, in characters.
    pub column: u32,
    /// The rule broken.
    pub rule: Rule,
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

/// Advice about a position of the document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// 1-based line.
    pub line: u32,
    /// 1-based column, in characters.
    pub column: u32,
    /// What to consider.
    pub rule: Advice,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}, column {}: {}",
            self.line, self.column, self.rule
        )
    }
}
