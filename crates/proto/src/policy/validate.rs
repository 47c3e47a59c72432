//! Checking a document against Adobe's socket policy rules.
//!
//! The document is parsed with `roxmltree` (a DTD is allowed, since real
//! policies carry `<!DOCTYPE cross-domain-policy ...>`; nothing external is
//! ever fetched), then walked once. The first broken rule stops validation
//! with its position; softer problems become [`Warning`]s.

use roxmltree::{Document, Node, NodeType, ParsingOptions, TextPos};

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
/// elements and attributes; HTTP-only elements; stray text.
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
    let mut checker = Checker {
        doc: &doc,
        warnings,
    };
    let policy = checker.root(doc.root_element())?;
    Ok(Validated {
        policy,
        warnings: checker.warnings,
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
                }
                NodeType::Element if is(child, SITE_CONTROL) => {
                    if let Some((_, first_line)) = site_control_at {
                        return Err(self.error(
                            child.range().start,
                            Rule::DuplicateSiteControl { first_line },
                        ));
                    }
                    let meta = self.site_control(child)?;
                    site_control_at =
                        Some((child.range().start, self.pos(child.range().start).row));
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
mod tests {
    use super::*;
    use crate::policy::{DomainError, PortsError};

    const HEAD: &str = "<?xml version=\"1.0\"?>\n\
        <!DOCTYPE cross-domain-policy SYSTEM \"http://www.adobe.com/xml/dtds/cross-domain-policy.dtd\">\n";

    /// The error of an invalid document as (line, column, rule).
    fn error(document: &str) -> (u32, u32, Rule) {
        let e = validate(document.as_bytes()).expect_err("should be invalid");
        (e.line, e.column, e.rule)
    }

    /// The warnings of a valid document as (line, column, advice).
    fn warnings(document: &str) -> Vec<(u32, u32, Advice)> {
        validate(document.as_bytes())
            .unwrap_or_else(|e| panic!("should be valid: {e}"))
            .warnings
            .into_iter()
            .map(|w| (w.line, w.column, w.rule))
            .collect()
    }

    fn policy(document: &str) -> Policy {
        validate(document.as_bytes())
            .unwrap_or_else(|e| panic!("should be valid: {e}"))
            .policy
    }

    /// The document `HEAD` + `<cross-domain-policy>` + body + closing tag;
    /// the body starts on line 4.
    fn wrap(body: &str) -> String {
        format!("{HEAD}<cross-domain-policy>\n{body}</cross-domain-policy>\n")
    }

    #[test]
    fn a_typical_policy_is_clean() {
        let doc = wrap(
            "  <!-- Policy file for xmlsocket://socks.example.com -->\n  \
             <site-control permitted-cross-domain-policies=\"master-only\"/>\n  \
             <allow-access-from domain=\"*.example.com\" to-ports=\"507,516-523\" />\n  \
             <allow-access-from domain=\"192.0.2.7\" to-ports=\"*\" secure=\"false\"></allow-access-from>\n",
        );
        let validated = validate(doc.as_bytes()).expect("valid");
        assert!(validated.warnings.is_empty(), "{:?}", validated.warnings);
        assert_eq!(validated.policy.site_control, Some(MetaPolicy::MasterOnly));
        assert_eq!(validated.policy.allow.len(), 2);
        assert_eq!(
            validated.policy.allow[0].to_ports.to_string(),
            "507,516-523"
        );
        assert_eq!(validated.policy.allow[1].secure, Some(false));
        assert!(validated.policy.grants("www.example.com", 520));
        assert!(!validated.policy.grants("www.example.com", 524));
    }

    #[test]
    fn minimal_policy_without_prolog() {
        let p = policy("<cross-domain-policy><allow-access-from domain=\"*\" to-ports=\"*\"/></cross-domain-policy>");
        assert_eq!(p, Policy::allow_all());
    }

    #[test]
    fn entities_in_values_are_resolved() {
        let p = policy(&wrap(
            "<allow-access-from domain=\"&#42;\" to-ports=\"&#56;43\"/>\n",
        ));
        assert!(p.allow[0].domain.is_any());
        assert_eq!(p.allow[0].to_ports.to_string(), "843");
    }

    #[test]
    fn windows_line_endings() {
        let doc = "<cross-domain-policy>\r\n  <allow-access-from domain=\"*\"/>\r\n</cross-domain-policy>\r\n";
        let (line, column, _) = error(doc);
        assert_eq!((line, column), (2, 3));
    }

    #[test]
    fn too_large_is_refused() {
        let filler = "<!-- padding -->\n".repeat(700);
        let doc = wrap(&format!(
            "{filler}<allow-access-from domain=\"*\" to-ports=\"*\"/>\n"
        ));
        assert!(doc.len() > MAX_POLICY_LEN);
        assert_eq!(error(&doc), (1, 1, Rule::TooLarge { len: doc.len() }));
    }

    #[test]
    fn exactly_the_limit_is_accepted_with_a_warning() {
        let base = wrap("<allow-access-from domain=\"*\" to-ports=\"*\"/>\n<!--X-->\n");
        let pad = " ".repeat(MAX_POLICY_LEN - base.len() + 1);
        let doc = base.replace('X', &pad);
        assert_eq!(doc.len(), MAX_POLICY_LEN);
        assert_eq!(
            warnings(&doc),
            vec![(
                1,
                1,
                Advice::Large {
                    len: MAX_POLICY_LEN
                }
            )]
        );
        let over = base.replace('X', &format!("{pad} "));
        assert_eq!(
            error(&over),
            (
                1,
                1,
                Rule::TooLarge {
                    len: MAX_POLICY_LEN + 1
                }
            )
        );
    }

    #[test]
    fn large_gets_a_warning() {
        let filler = "<!-- padding -->\n".repeat(80);
        let doc = wrap(&format!(
            "{filler}<allow-access-from domain=\"*\" to-ports=\"*\"/>\n"
        ));
        assert!(doc.len() > WARN_POLICY_LEN);
        assert_eq!(
            warnings(&doc),
            vec![(1, 1, Advice::Large { len: doc.len() })]
        );
        let small = wrap("<allow-access-from domain=\"*\" to-ports=\"*\"/>\n");
        assert!(warnings(&small).is_empty());
    }

    #[test]
    fn nul_byte() {
        let doc = "<cross-domain-policy>\nab\u{e9}c\0</cross-domain-policy>";
        assert_eq!(error(doc), (2, 5, Rule::Nul));
    }

    #[test]
    fn not_utf8() {
        let mut doc = b"<cross-domain-policy>\n\n\xc3\xa9a".to_vec();
        doc.push(0xff);
        doc.extend_from_slice(b"</cross-domain-policy>");
        let e = validate(&doc).expect_err("invalid");
        assert_eq!((e.line, e.column, e.rule), (3, 3, Rule::NotUtf8));
    }

    #[test]
    fn xml_syntax_errors_carry_their_position() {
        let (line, column, rule) = error("<cross-domain-policy>\n  <allow-access-from domain=\"*\" to-ports=\"*\">\n</cross-domain-policy>");
        assert_eq!((line, column), (3, 1));
        let Rule::Xml(message) = rule else {
            panic!("not an XML error: {rule:?}")
        };
        assert!(!message.contains(" at 3:"), "{message}");
        assert!(message.contains("allow-access-from"), "{message}");

        let (line, column, rule) =
            error("<cross-domain-policy>\n <a b=\"1\" b=\"2\"/></cross-domain-policy>");
        assert_eq!((line, column), (2, 11));
        assert!(matches!(rule, Rule::Xml(_)));

        let (line, column, rule) = error("<cross-domain-policy x=\"<\"/>");
        assert_eq!((line, column), (1, 25));
        assert!(matches!(rule, Rule::Xml(_)));
    }

    #[test]
    fn truncated_documents_point_at_their_end() {
        assert!(matches!(error(""), (1, 1, Rule::Xml(_))));
        assert!(matches!(error("  \n  "), (2, 3, Rule::Xml(_))));
        assert!(matches!(
            error("<cross-domain-policy>\n  <allow-access-from domain=\"*\" to-ports=\"*\"/>\n"),
            (3, 1, Rule::Xml(_))
        ));
        let (line, column, rule) = error("<?xml version=\"1.0\"?>\n<cross-domain-policy");
        assert_eq!((line, column), (2, 21), "{rule}");
    }

    #[test]
    fn wrong_root() {
        assert_eq!(
            error(&format!("{HEAD}<access-policy/>")),
            (
                3,
                1,
                Rule::Root {
                    found: "access-policy".into()
                }
            )
        );
        assert_eq!(
            error("<cross-domain-policy xmlns=\"urn:x\"/>"),
            (
                1,
                1,
                Rule::Root {
                    found: "cross-domain-policy xmlns=\"urn:x\"".into()
                }
            )
        );
    }

    #[test]
    fn allow_access_from_needs_both_attributes() {
        assert_eq!(
            error(&wrap("  <allow-access-from to-ports=\"*\"/>\n")),
            (
                4,
                3,
                Rule::MissingAttribute {
                    element: "allow-access-from",
                    attribute: "domain"
                }
            )
        );
        assert_eq!(
            error(&wrap("\n\t<allow-access-from domain=\"*\"/>\n")),
            (
                5,
                2,
                Rule::MissingAttribute {
                    element: "allow-access-from",
                    attribute: "to-ports"
                }
            )
        );
    }

    #[test]
    fn bad_domain_points_at_the_value() {
        assert_eq!(
            error(&wrap(
                "  <allow-access-from domain=\"10.*\" to-ports=\"*\"/>\n"
            )),
            (4, 30, Rule::Domain(DomainError::WildcardIp))
        );
        assert_eq!(
            error(&wrap("  <allow-access-from domain = '' to-ports=\"*\"/>\n")),
            (4, 32, Rule::Domain(DomainError::Empty))
        );
        assert_eq!(
            error(&wrap(
                "<allow-access-from domain=\"www.*.com\" to-ports=\"*\"/>\n"
            )),
            (4, 28, Rule::Domain(DomainError::MisplacedWildcard))
        );
    }

    #[test]
    fn bad_ports_point_at_the_value() {
        assert_eq!(
            error(&wrap(
                "<allow-access-from domain=\"*\" to-ports=\"80,0\"/>\n"
            )),
            (
                4,
                41,
                Rule::Ports(PortsError::OutOfRange {
                    item: 2,
                    text: "0".into()
                })
            )
        );
        assert_eq!(
            error(&wrap(
                "<allow-access-from to-ports=\"2-1\"\n    domain=\"*\"/>\n"
            )),
            (
                4,
                30,
                Rule::Ports(PortsError::Reversed {
                    item: 1,
                    first: 2,
                    last: 1
                })
            )
        );
        assert_eq!(
            error(&wrap("<allow-access-from domain=\"*\" to-ports=\"\"/>\n")),
            (4, 41, Rule::Ports(PortsError::Empty))
        );
    }

    #[test]
    fn blanks_in_ports_are_a_warning() {
        assert_eq!(
            warnings(&wrap(
                "<allow-access-from domain=\"*\" to-ports=\"80, 443\"/>\n"
            )),
            vec![(4, 41, Advice::BlanksInPorts)]
        );
    }

    #[test]
    fn secure() {
        assert_eq!(
            error(&wrap(
                "<allow-access-from domain=\"*\" to-ports=\"*\" secure=\"yes\"/>\n"
            )),
            (
                4,
                52,
                Rule::Secure {
                    value: "yes".into()
                }
            )
        );
        assert!(matches!(
            error(&wrap(
                "<allow-access-from domain=\"*\" to-ports=\"*\" secure=\"TRUE\"/>\n"
            )),
            (4, 52, Rule::Secure { .. })
        ));
        assert_eq!(
            warnings(&wrap(
                "<allow-access-from domain=\"*\" to-ports=\"*\" secure=\"true\"/>\n"
            )),
            vec![(4, 44, Advice::SecureTrue)]
        );
        let p = policy(&wrap(
            "<allow-access-from domain=\"*\" to-ports=\"*\" secure=\"true\"/>\n",
        ));
        assert_eq!(p.allow[0].secure, Some(true));
    }

    #[test]
    fn site_control_values() {
        for (value, meta) in [
            ("all", MetaPolicy::All),
            ("master-only", MetaPolicy::MasterOnly),
            ("none", MetaPolicy::None),
        ] {
            let doc = wrap(&format!(
                "<site-control permitted-cross-domain-policies=\"{value}\"/>\n\
                 <allow-access-from domain=\"*\" to-ports=\"*\"/>\n"
            ));
            assert_eq!(policy(&doc).site_control, Some(meta));
        }
        for value in ["by-content-type", "by-ftp-filename"] {
            let doc = wrap(&format!(
                "<site-control permitted-cross-domain-policies=\"{value}\"/>\n"
            ));
            assert_eq!(
                error(&doc),
                (
                    4,
                    48,
                    Rule::MetaPolicyNotForSockets {
                        value: value.into()
                    }
                )
            );
        }
        assert_eq!(
            error(&wrap(
                "<site-control permitted-cross-domain-policies=\"master\"/>\n"
            )),
            (
                4,
                48,
                Rule::MetaPolicy {
                    value: "master".into()
                }
            )
        );
        assert_eq!(
            error(&wrap(" <site-control/>\n")),
            (
                4,
                2,
                Rule::MissingAttribute {
                    element: "site-control",
                    attribute: "permitted-cross-domain-policies"
                }
            )
        );
    }

    #[test]
    fn only_one_site_control() {
        let doc = wrap(
            "<site-control permitted-cross-domain-policies=\"all\"/>\n\
             <allow-access-from domain=\"*\" to-ports=\"*\"/>\n  \
             <site-control permitted-cross-domain-policies=\"all\"/>\n",
        );
        assert_eq!(
            error(&doc),
            (6, 3, Rule::DuplicateSiteControl { first_line: 4 })
        );
    }

    #[test]
    fn meta_policy_none_warns() {
        let doc = wrap(
            "<allow-access-from domain=\"*\" to-ports=\"*\"/>\n\
             <site-control permitted-cross-domain-policies=\"none\"/>\n",
        );
        assert_eq!(warnings(&doc), vec![(5, 1, Advice::MetaPolicyNone)]);
    }

    #[test]
    fn empty_policy_warns() {
        assert_eq!(
            warnings(&format!("{HEAD}<cross-domain-policy/>")),
            vec![(3, 1, Advice::GrantsNothing)]
        );
        assert_eq!(
            warnings(&wrap(
                "<site-control permitted-cross-domain-policies=\"all\"/>\n"
            )),
            vec![(3, 1, Advice::GrantsNothing)]
        );
    }

    #[test]
    fn unknown_and_http_only_things_warn() {
        let doc = wrap(
            "<allow-access-from domain=\"*\" to-ports=\"*\" to-port=\"1\"/>\n\
             <allow-http-request-headers-from domain=\"*\" headers=\"*\"/>\n\
             <allow-acess-from domain=\"*\" to-ports=\"*\"/>\n\
             <site-control permitted-cross-domain-policies=\"all\" x:y=\"1\" xmlns:x=\"urn:x\"/>\n",
        );
        assert_eq!(
            warnings(&doc),
            vec![
                (
                    4,
                    44,
                    Advice::UnknownAttribute {
                        element: "allow-access-from".into(),
                        attribute: "to-port".into()
                    }
                ),
                (
                    5,
                    1,
                    Advice::HttpOnlyElement {
                        name: "allow-http-request-headers-from".into()
                    }
                ),
                (
                    6,
                    1,
                    Advice::UnknownElement {
                        name: "allow-acess-from".into()
                    }
                ),
                (
                    7,
                    53,
                    Advice::UnknownAttribute {
                        element: "site-control".into(),
                        attribute: "{urn:x}y".into()
                    }
                ),
            ]
        );
    }

    #[test]
    fn content_inside_rules_warns() {
        let doc = wrap(
            "<allow-access-from domain=\"*\" to-ports=\"*\">\n  hello\n  <port>80</port>\n</allow-access-from>\n\
             stray\n",
        );
        assert_eq!(
            warnings(&doc),
            vec![
                (5, 3, Advice::StrayText),
                (
                    6,
                    3,
                    Advice::UnknownElement {
                        name: "port".into()
                    }
                ),
                (8, 1, Advice::StrayText),
            ]
        );
    }

    #[test]
    fn root_attributes_warn() {
        assert_eq!(
            warnings("<cross-domain-policy version=\"1\"><allow-access-from domain=\"*\" to-ports=\"*\"/></cross-domain-policy>"),
            vec![(
                1,
                22,
                Advice::UnknownAttribute {
                    element: "cross-domain-policy".into(),
                    attribute: "version".into()
                }
            )]
        );
    }

    #[test]
    fn first_error_wins_in_document_order() {
        let doc = wrap(
            "<allow-access-from domain=\"*\" to-ports=\"0\"/>\n\
             <allow-access-from domain=\"10.*\" to-ports=\"*\"/>\n",
        );
        assert!(matches!(error(&doc), (4, _, Rule::Ports(_))));
    }

    #[test]
    fn display_names_line_and_column() {
        let e = validate(wrap("<allow-access-from domain=\"*\" to-ports=\"x\"/>\n").as_bytes())
            .expect_err("invalid");
        assert_eq!(
            e.to_string(),
            "line 4, column 41: to-ports item 1 `x` is not a port number or a `first-last` range"
        );
    }

    #[test]
    fn byte_order_mark_is_accepted() {
        let doc = "\u{feff}<cross-domain-policy>\n<allow-access-from domain=\"*\" to-ports=\"x\"/></cross-domain-policy>";
        let e = validate(doc.as_bytes()).expect_err("bad ports");
        assert_eq!((e.line, e.column), (2, 41));
    }
}
