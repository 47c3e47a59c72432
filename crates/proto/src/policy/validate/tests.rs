//! Tests of the socket policy validator: every rule, with exact positions.

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
    // Clean for Flash Player; the range and the lack of `domain="*"` are
    // compatibility warnings (Lightspark, Unity), tested in compat_tests.
    let flash: Vec<_> = validated
        .warnings
        .iter()
        .filter(|w| !w.rule.is_compat())
        .collect();
    assert!(flash.is_empty(), "{flash:?}");
    assert_eq!(validated.warnings.len(), 2, "{:?}", validated.warnings);
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
        warnings(&doc)[0],
        (
            1,
            1,
            Advice::Large {
                len: MAX_POLICY_LEN
            }
        )
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
