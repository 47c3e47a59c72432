//! Facts about a valid document's element tree that the validator does not
//! report as errors but some clients refuse on: elements nested in rules,
//! HTTP-only elements, more attributes than a client expects, stray text.

use roxmltree::{Document, NodeType, ParsingOptions};

/// What [`facts`] found, each as the 1-based line of its first case.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Facts {
    /// An element inside `<allow-access-from>` or `<site-control>`.
    pub nested: Option<u32>,
    /// `<allow-http-request-headers-from>`.
    pub http_headers: Option<u32>,
    /// An `<allow-access-from>` with more than three attributes.
    pub many_attributes: Option<u32>,
    /// A `<site-control>` with other than one attribute.
    pub site_control_attributes: Option<u32>,
    /// `<site-control>`.
    pub site_control: Option<u32>,
    /// Text other than whitespace directly in the root.
    pub stray_text: Option<u32>,
}

/// Reads the facts of `text`, a document the validator accepted (parsed
/// with the same options; on a parse error, none are found).
pub(super) fn facts(text: &str) -> Facts {
    let options = ParsingOptions {
        allow_dtd: true,
        nodes_limit: 20_000,
        ..ParsingOptions::default()
    };
    let mut found = Facts::default();
    let Ok(doc) = Document::parse_with_options(text, options) else {
        return found;
    };
    let line = |node: roxmltree::Node<'_, '_>| doc.text_pos_at(node.range().start).row;
    let first = |slot: &mut Option<u32>, l: u32| {
        slot.get_or_insert(l);
    };
    for child in doc.root_element().children() {
        match child.node_type() {
            NodeType::Text if child.text().is_some_and(|t| !t.trim().is_empty()) => {
                first(&mut found.stray_text, line(child));
            }
            NodeType::Element => {
                let name = child.tag_name().name();
                let attributes = child.attributes().len();
                match name {
                    "allow-http-request-headers-from" => {
                        first(&mut found.http_headers, line(child));
                    }
                    "allow-access-from" if attributes > 3 => {
                        first(&mut found.many_attributes, line(child));
                    }
                    "site-control" => {
                        first(&mut found.site_control, line(child));
                        if attributes != 1 {
                            first(&mut found.site_control_attributes, line(child));
                        }
                    }
                    _ => {}
                }
                if let Some(inner) = child.children().find(|c| c.is_element()) {
                    first(&mut found.nested, line(inner));
                }
            }
            _ => {}
        }
    }
    found
}
