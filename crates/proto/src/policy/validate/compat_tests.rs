//! One test per compatibility warning the validator gives (the ones that
//! depend on where the policy is served are the server's), with its exact
//! line and column, and the UTF-16 error.

use super::*;

fn compat(document: &[u8]) -> Vec<(u32, u32, Advice)> {
    validate(document)
        .unwrap_or_else(|e| panic!("should be valid: {e}"))
        .warnings
        .into_iter()
        .filter(|w| w.rule.is_compat())
        .map(|w| (w.line, w.column, w.rule))
        .collect()
}

const ANY: &str = "<allow-access-from domain=\"*\" to-ports=\"843\"/>";

#[test]
fn no_wildcard_domain_points_at_the_root() {
    let doc = "<?xml version=\"1.0\"?>\n  <cross-domain-policy>\n\
               <allow-access-from domain=\"*.example.com\" to-ports=\"443\"/>\n\
               </cross-domain-policy>";
    assert_eq!(
        compat(doc.as_bytes()),
        vec![(2, 3, Advice::NoWildcardDomain)]
    );
    let message = Advice::NoWildcardDomain.to_string();
    assert!(message.contains("Unity Web Player"), "{message}");
    // One `*` rule among others is enough; no rule at all is GrantsNothing.
    let doc = format!("<cross-domain-policy><allow-access-from domain=\"a.com\" to-ports=\"1\"/>{ANY}</cross-domain-policy>");
    assert_eq!(compat(doc.as_bytes()), vec![]);
    assert_eq!(compat(b"<cross-domain-policy/>"), vec![]);
}

#[test]
fn a_range_points_at_the_to_ports_value() {
    let doc = "<cross-domain-policy>\n\
               <allow-access-from domain=\"*\" to-ports=\"443,8000-8100\"/>\n\
               <allow-access-from domain=\"*\" to-ports=\"9000-9000,80\"/>\n\
               </cross-domain-policy>";
    let advice = Advice::PortRange {
        range: "8000-8100".to_string(),
        first: 8000,
        last: 8100,
    };
    // `9000-9000` is one port: no warning.
    assert_eq!(compat(doc.as_bytes()), vec![(2, 41, advice.clone())]);
    let message = advice.to_string();
    assert!(
        message.contains("Lightspark grants only 8000")
            && message.contains("Unity Web Player drops 8100"),
        "{message}"
    );
}

#[test]
fn http_headers_element_is_a_lightspark_rejection() {
    let doc = format!(
        "<cross-domain-policy>\n{ANY}\n  <allow-http-request-headers-from domain=\"*\" headers=\"*\"/>\n</cross-domain-policy>"
    );
    let found = compat(doc.as_bytes());
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!((found[0].0, found[0].1), (3, 3));
    let message = found[0].2.to_string();
    assert!(message.contains("Lightspark rejects"), "{message}");
}

/// A valid document of exactly `len` bytes.
fn of_len(len: usize) -> String {
    let base = format!("<cross-domain-policy>{ANY}<!---->\n</cross-domain-policy>");
    let pad = "x".repeat(len - base.len());
    base.replace("<!---->", &format!("<!--{pad}-->"))
}

#[test]
fn sizes_over_what_lightspark_and_unity_read() {
    // The reply is the document and its NUL.
    let at_lightspark = of_len(4095);
    assert_eq!(at_lightspark.len(), 4095);
    assert_eq!(compat(at_lightspark.as_bytes()), vec![]);
    let over_lightspark = of_len(4096);
    assert_eq!(
        compat(over_lightspark.as_bytes()),
        vec![(
            1,
            1,
            Advice::TooLargeFor {
                client: "Lightspark",
                limit: 4096,
                len: 4097
            }
        )]
    );
    let over_unity = of_len(5000);
    assert_eq!(
        compat(over_unity.as_bytes()),
        vec![
            (
                1,
                1,
                Advice::TooLargeFor {
                    client: "Lightspark",
                    limit: 4096,
                    len: 5001
                }
            ),
            (
                1,
                1,
                Advice::TooLargeFor {
                    client: "Unity Web Player",
                    limit: 5000,
                    len: 5001
                }
            )
        ]
    );
}

#[test]
fn a_byte_order_mark() {
    let mut doc = b"\xEF\xBB\xBF".to_vec();
    doc.extend_from_slice(format!("<cross-domain-policy>{ANY}</cross-domain-policy>").as_bytes());
    assert_eq!(compat(&doc), vec![(1, 1, Advice::ByteOrderMark)]);
}

#[test]
fn utf16_has_its_own_error() {
    let text = format!("<cross-domain-policy>{ANY}</cross-domain-policy>");
    let le: Vec<u8> = text.encode_utf16().flat_map(u16::to_le_bytes).collect();
    let be: Vec<u8> = text.encode_utf16().flat_map(u16::to_be_bytes).collect();
    let mut le_bom = vec![0xFF, 0xFE];
    le_bom.extend_from_slice(&le);
    let mut be_bom = vec![0xFE, 0xFF];
    be_bom.extend_from_slice(&be);
    for doc in [le, be, le_bom, be_bom] {
        let e = validate(&doc).expect_err("UTF-16");
        assert_eq!((e.line, e.column, &e.rule), (1, 1, &Rule::Utf16));
        assert!(e.to_string().contains("encode the policy as UTF-8"), "{e}");
    }
    // A NUL elsewhere keeps its own message.
    let e = validate(b"<a\0/>").expect_err("NUL");
    assert_eq!(e.rule, Rule::Nul);
}
