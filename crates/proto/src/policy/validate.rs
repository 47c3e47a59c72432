//! Checking a document against Adobe's socket policy rules.
//!
//! The document is parsed with `roxmltree` (a DTD is allowed, since real
//! policies carry `<!DOCTYPE cross-domain-policy ...>`; nothing external is
//! ever fetched), then walked once. The first broken rule stops validation
//! with its position; softer problems become [`Warning`]s.

use roxmltree::{Document, Node, NodeType, ParsingOptions, TextPos};

use super::compat;
use super::error::{Advice, PolicyError, Rule, Warning};
use super::{
    AllowAccessFrom, DomainPattern, MetaPolicy, Policy, PortSet, Validated, MAX_POLICY_LEN,
    WARN_POLICY_LEN,
};

/// Most XML nodes a document may have. A 10 KB document cannot reach it
/// without entity expansion; it bounds the memory that expansion could take.
const NODES_LIMIT: u32 = 20_000;

const ROOT: &str = "cross-domain-policy";
const SITE_CONTROL: &str = "site-control";
const ALLOW_ACCESS_FROM: &str = "allow-access-from";
const META_POLICY_ATTR: &str = "permitted-cross-domain-policies";
const HTTP_ONLY_ELEMENTS: &[&str] = &["allow-http-request-headers-from"];

/// Validates a socket policy document (without its NUL terminator).
///
/// Errors, each stopping validation at the first one met: more than
/// [`MAX_POLICY_LEN`] bytes; a NUL byte; invalid UTF-8; malformed XML; a root
/// other than `<cross-domain-policy>`; an `<allow-access-from>` without
/// `domain` or `to-ports`, or with a malformed `domain`, `to-ports` or
/// `secure`; a `<site-control>` without `permitted-cross-domain-policies`, or
/// with a value other than `all`, `master-only`, `none`; a second
/// `<site-control>`.
///
/// Warnings (see [`Advice`]): more than [`WARN_POLICY_LEN`] bytes; no rule at
/// all; meta-policy `none`; `secure="true"`; blanks in `to-ports`; unknown
/// elements and attributes; HTTP-only elements; stray text. Compatibility
/// warnings ([`Advice::is_compat`]): a UTF-8 byte-order mark; a reply over
/// [`super::LIGHTSPARK_READ`] or [`super::UNITY_READ`] bytes; no
/// `domain="*"` rule; a `first-last` range. A UTF-16 document is an error
/// of its own ([`Rule::Utf16`]).
///
/// ```
/// use flashpolicy_proto::policy;
/// let error = policy::validate(b"<cross-domain-policy>\n  <allow-access-from domain=\"*\"/>\n</cross-domain-policy>")
///     .expect_err("no to-ports");
/// assert_eq!((error.line, error.column), (2, 3));
/// assert_eq!(error.to_string(), "line 2, column 3: <allow-access-from> must have a `to-ports` attribute");
/// ```
pub fn validate(document: &[u8]) -> Result<Validated, PolicyError> {
    if document.len() > MAX_POLICY_LEN {
        return Err(PolicyError {
            line: 1,
            column: 1,
            rule: Rule::TooLarge {
                len: document.len(),
            },
        });
    }
    if compat::is_utf16(document) {
        return Err(PolicyError {
            line: 1,
            column: 1,
            rule: Rule::Utf16,
        });
    }
    if let Some(offset) = document.iter().position(|&b| b == 0) {
        return Err(error_at(document, offset, Rule::Nul));
    }
    let text = std::str::from_utf8(document)
        .map_err(|e| error_at(document, e.valid_up_to(), Rule::NotUtf8))?;
    let options = ParsingOptions {
        allow_dtd: true,
        nodes_limit: NODES_LIMIT,
        ..ParsingOptions::default()
    };
    let doc = Document::parse_with_options(text, options).map_err(|e| xml_error(document, e))?;

    let mut warnings = Vec::new();
    if document.len() > WARN_POLICY_LEN {
        warnings.push(Warning {
            line: 1,
            column: 1,
            rule: Advice::Large {
                len: document.len(),
            },
        });
    }
    compat::whole_document(document, &mut warnings);
    let mut checker = Checker {
        doc: &doc,
        warnings,
        site_control_at: None,
        allow_at: Vec::new(),
    };
    let policy = checker.root(doc.root_element())?;
    Ok(Validated {
        policy,
        warnings: checker.warnings,
        site_control_at: checker.site_control_at,
        allow_at: checker.allow_at,
    })
}

/// Line and column (in characters) of byte `offset` of `bytes`.
fn position(bytes: &[u8], offset: usize) -> (u32, u32) {
    let before = &bytes[..offset.min(bytes.len())];
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    // Count characters: every byte that is not a UTF-8 continuation byte.
    let column = before[line_start..]
        .iter()
        .filter(|&&b| b & 0xC0 != 0x80)
        .count()
        + 1;
    (saturate(line), saturate(column))
}

fn saturate(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn error_at(bytes: &[u8], offset: usize, rule: Rule) -> PolicyError {
    let (line, column) = position(bytes, offset);
    PolicyError { line, column, rule }
}

/// Maps a parser error to a [`PolicyError`] at its position (the end of the
/// document for "ended too early" errors), dropping the parser's own
/// "at L:C" from its message.
fn xml_error(document: &[u8], e: roxmltree::Error) -> PolicyError {
    use roxmltree::Error as E;
    let (line, column) = match e {
        E::NoRootNode | E::UnclosedRootNode | E::UnexpectedEndOfStream => {
            position(document, document.len())
        }
        _ => {
            let pos = e.pos();
            (pos.row, pos.col)
        }
    };
    let message = e.to_string().replacen(&format!(" at {}", e.pos()), "", 1);
    PolicyError {
        line,
        column,
        rule: Rule::Xml(message),
    }
}

struct Checker<'d, 'input> {
    doc: &'d Document<'input>,
    warnings: Vec<Warning>,
    site_control_at: Option<(u32, u32)>,
    allow_at: Vec<(u32, u32)>,
}

/// An element's name for messages: the local name, plus its namespace if any.
fn display_name(node: Node<'_, '_>) -> String {
    let name = node.tag_name();
    match name.namespace() {
        Some(ns) => format!("{} xmlns=\"{ns}\"", name.name()),
        None => name.name().to_string(),
    }
}

/// Whether `node` is an element with exactly this name and no namespace.
fn is(node: Node<'_, '_>, name: &str) -> bool {
    node.is_element() && node.tag_name().namespace().is_none() && node.tag_name().name() == name
}

impl Checker<'_, '_> {
    fn pos(&self, offset: usize) -> TextPos {
        self.doc.text_pos_at(offset)
    }

    fn error(&self, offset: usize, rule: Rule) -> PolicyError {
        let pos = self.pos(offset);
        PolicyError {
            line: pos.row,
            column: pos.col,
            rule,
        }
    }

    fn warn(&mut self, offset: usize, rule: Advice) {
        let pos = self.pos(offset);
        self.warnings.push(Warning {
            line: pos.row,
            column: pos.col,
            rule,
        });
    }

    fn root(&mut self, root: Node<'_, '_>) -> Result<Policy, PolicyError> {
        if !is(root, ROOT) {
            return Err(self.error(
                root.range().start,
                Rule::Root {
                    found: display_name(root),
                },
            ));
        }
        self.unknown_attributes(root, &[]);
        let mut policy = Policy::default();
        let mut site_control_at: Option<(usize, u32)> = None;
        for child in root.children() {
            match child.node_type() {
                NodeType::Element if is(child, ALLOW_ACCESS_FROM) => {
                    policy.allow.push(self.allow_access_from(child)?);
                    let pos = self.pos(child.range().start);
                    self.allow_at.push((pos.row, pos.col));
                }
                NodeType::Element if is(child, SITE_CONTROL) => {
                    if let Some((_, first_line)) = site_control_at {
                        return Err(self.error(
                            child.range().start,
                            Rule::DuplicateSiteControl { first_line },
                        ));
                    }
                    let meta = self.site_control(child)?;
                    let pos = self.pos(child.range().start);
                    site_control_at = Some((child.range().start, pos.row));
                    self.site_control_at = Some((pos.row, pos.col));
                    policy.site_control = Some(meta);
                }
                NodeType::Element => self.unknown_element(child),
                NodeType::Text => self.stray_text(child),
                _ => {}
            }
        }
        if policy.site_control == Some(MetaPolicy::None) {
            if let Some((offset, _)) = site_control_at {
                self.warn(offset, Advice::MetaPolicyNone);
            }
        }
        if policy.allow.is_empty() {
            self.warn(root.range().start, Advice::GrantsNothing);
        } else if !policy.allow.iter().any(|rule| rule.domain.is_any()) {
            self.warn(root.range().start, Advice::NoWildcardDomain);
        }
        Ok(policy)
    }

    fn allow_access_from(&mut self, node: Node<'_, '_>) -> Result<AllowAccessFrom, PolicyError> {
        let start = node.range().start;
        let missing = |attribute| Rule::MissingAttribute {
            element: ALLOW_ACCESS_FROM,
            attribute,
        };
        let domain_attr = node
            .attribute_node("domain")
            .ok_or_else(|| self.error(start, missing("domain")))?;
        let ports_attr = node
            .attribute_node("to-ports")
            .ok_or_else(|| self.error(start, missing("to-ports")))?;
        let domain: DomainPattern = domain_attr
            .value()
            .parse()
            .map_err(|e| self.error(domain_attr.range_value().start, Rule::Domain(e)))?;
        let to_ports: PortSet = ports_attr
            .value()
            .parse()
            .map_err(|e| self.error(ports_attr.range_value().start, Rule::Ports(e)))?;
        if ports_attr.value().contains([' ', '\t']) {
            self.warn(ports_attr.range_value().start, Advice::BlanksInPorts);
        }
        if let Some(advice) = compat::range_advice(&to_ports) {
            self.warn(ports_attr.range_value().start, advice);
        }
        let secure = match node.attribute_node("secure") {
            None => None,
            Some(attr) => match attr.value() {
                "true" => {
                    self.warn(attr.range().start, Advice::SecureTrue);
                    Some(true)
                }
                "false" => Some(false),
                value => {
                    return Err(self.error(
                        attr.range_value().start,
                        Rule::Secure {
                            value: value.to_string(),
                        },
                    ))
                }
            },
        };
        self.unknown_attributes(node, &["domain", "to-ports", "secure"]);
        self.no_content(node);
        Ok(AllowAccessFrom {
            domain,
            to_ports,
            secure,
        })
    }

    fn site_control(&mut self, node: Node<'_, '_>) -> Result<MetaPolicy, PolicyError> {
        let attr = node.attribute_node(META_POLICY_ATTR).ok_or_else(|| {
            self.error(
                node.range().start,
                Rule::MissingAttribute {
                    element: SITE_CONTROL,
                    attribute: META_POLICY_ATTR,
                },
            )
        })?;
        let meta = attr
            .value()
            .parse()
            .map_err(|rule| self.error(attr.range_value().start, rule))?;
        self.unknown_attributes(node, &[META_POLICY_ATTR]);
        self.no_content(node);
        Ok(meta)
    }

    fn unknown_element(&mut self, node: Node<'_, '_>) {
        let name = display_name(node);
        let advice = if node.tag_name().namespace().is_none()
            && HTTP_ONLY_ELEMENTS.contains(&node.tag_name().name())
        {
            Advice::HttpOnlyElement { name }
        } else {
            Advice::UnknownElement { name }
        };
        self.warn(node.range().start, advice);
    }

    fn unknown_attributes(&mut self, node: Node<'_, '_>, known: &[&str]) {
        for attr in node.attributes() {
            if attr.namespace().is_none() && known.contains(&attr.name()) {
                continue;
            }
            let attribute = match attr.namespace() {
                Some(ns) => format!("{{{ns}}}{}", attr.name()),
                None => attr.name().to_string(),
            };
            self.warn(
                attr.range().start,
                Advice::UnknownAttribute {
                    element: display_name(node),
                    attribute,
                },
            );
        }
    }

    /// Elements that take only attributes: warn about anything inside.
    fn no_content(&mut self, node: Node<'_, '_>) {
        for child in node.children() {
            match child.node_type() {
                NodeType::Element => self.unknown_element(child),
                NodeType::Text => self.stray_text(child),
                _ => {}
            }
        }
    }

    fn stray_text(&mut self, node: Node<'_, '_>) {
        let text = node.text().unwrap_or_default();
        if let Some(skip) = text.find(|c: char| !c.is_whitespace()) {
            // Point at the first non-blank character when the text is
            // written as is (entities and CDATA shift it; then the node start).
            let start = node.range().start;
            let written = self.doc.input_text().get(node.range()).unwrap_or_default();
            let offset = if written == text { start + skip } else { start };
            self.warn(offset, Advice::StrayText);
        }
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod compat_tests;
