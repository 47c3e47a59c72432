//! The `to-ports` attribute: `*`, or a comma list of ports and `first-last`
//! ranges within 1–65535.
//!
//! Syntax accepted by [`PortSet::from_str`]:
//! * `*` alone: every port;
//! * otherwise one or more items separated by `,`, each a decimal port
//!   (`843`) or an inclusive range (`1024-2048`, first ≤ last);
//! * ASCII spaces and tabs around an item and around its `-` are ignored
//!   (`80, 443` reads as `80,443`). The validator still warns about them,
//!   because Flash Player's own parser is not documented to accept them;
//! * empty items (`80,,443`, a trailing comma), port 0, ports above 65535,
//!   signs, and `*` inside a list are errors.
//!
//! [`Display`](fmt::Display) writes the canonical form (`80,443,1024-2048`),
//! which parses back to an equal [`PortSet`].

use std::fmt;
use std::str::FromStr;

/// An inclusive range of TCP ports, `first..=last`, with `1 <= first <= last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortRange {
    first: u16,
    last: u16,
}

impl PortRange {
    /// The range `first..=last`, or `None` if `first` is 0 or above `last`.
    pub const fn new(first: u16, last: u16) -> Option<PortRange> {
        if first == 0 || first > last {
            None
        } else {
            Some(PortRange { first, last })
        }
    }

    /// The single port `port`, or `None` for port 0.
    pub const fn single(port: u16) -> Option<PortRange> {
        PortRange::new(port, port)
    }

    /// The first port of the range.
    pub const fn first(&self) -> u16 {
        self.first
    }

    /// The last port of the range (equal to [`first`](Self::first) for a single port).
    pub const fn last(&self) -> u16 {
        self.last
    }

    /// Whether `port` lies in the range.
    pub const fn contains(&self, port: u16) -> bool {
        self.first <= port && port <= self.last
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

/// The ports an `<allow-access-from>` rule grants: every port, or a
/// non-empty list of ranges in the order written.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PortSet {
    repr: Repr,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Repr {
    Any,
    List(Box<[PortRange]>),
}

impl PortSet {
    /// `*`: every port.
    pub fn any() -> PortSet {
        PortSet { repr: Repr::Any }
    }

    /// A list of ranges, or `None` if `ranges` is empty.
    pub fn from_ranges(ranges: Vec<PortRange>) -> Option<PortSet> {
        if ranges.is_empty() {
            None
        } else {
            Some(PortSet {
                repr: Repr::List(ranges.into_boxed_slice()),
            })
        }
    }

    /// Whether this is `*`.
    pub fn is_any(&self) -> bool {
        matches!(self.repr, Repr::Any)
    }

    /// The ranges in the order written, or `None` for `*`.
    pub fn ranges(&self) -> Option<&[PortRange]> {
        match &self.repr {
            Repr::Any => None,
            Repr::List(ranges) => Some(ranges),
        }
    }

    /// Whether the set grants `port`. Port 0 is never granted.
    pub fn contains(&self, port: u16) -> bool {
        match &self.repr {
            Repr::Any => port != 0,
            Repr::List(ranges) => ranges.iter().any(|r| r.contains(port)),
        }
    }
}

impl fmt::Display for PortSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.repr {
            Repr::Any => f.write_str("*"),
            Repr::List(ranges) => {
                for (i, range) in ranges.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{range}")?;
                }
                Ok(())
            }
        }
    }
}

/// Why a `to-ports` value is malformed. `item` is the 1-based position of
/// the offending comma-separated item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortsError {
    /// The value is empty (or only whitespace).
    Empty,
    /// An item between commas is empty, e.g. `80,,443` or `80,`.
    EmptyItem {
        /// Which item.
        item: usize,
    },
    /// `*` appears together with other items.
    WildcardInList,
    /// An item is not a decimal number or `first-last` range.
    NotANumber {
        /// Which item.
        item: usize,
        /// The text that is not a number.
        text: String,
    },
    /// A port is 0 or above 65535.
    OutOfRange {
        /// Which item.
        item: usize,
        /// The number as written.
        text: String,
    },
    /// A range whose first port is above its last.
    Reversed {
        /// Which item.
        item: usize,
        /// First port.
        first: u16,
        /// Last port.
        last: u16,
    },
}

impl fmt::Display for PortsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortsError::Empty => {
                f.write_str("to-ports is empty; use `*` or a list like `843,1024-2048`")
            }
            PortsError::EmptyItem { item } => write!(
                f,
                "to-ports item {item} is empty (a doubled, leading or trailing comma)"
            ),
            PortsError::WildcardInList => {
                f.write_str("to-ports `*` must stand alone, not inside a list")
            }
            PortsError::NotANumber { item, text } => write!(
                f,
                "to-ports item {item} `{text}` is not a port number or a `first-last` range"
            ),
            PortsError::OutOfRange { item, text } => {
                write!(f, "to-ports item {item}: port {text} is outside 1-65535")
            }
            PortsError::Reversed { item, first, last } => write!(
                f,
                "to-ports item {item}: range {first}-{last} ends before it starts"
            ),
        }
    }
}

impl std::error::Error for PortsError {}

fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

fn parse_port(item: usize, text: &str) -> Result<u16, PortsError> {
    let text = text.trim_matches(is_blank);
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PortsError::NotANumber {
            item,
            text: text.to_string(),
        });
    }
    // Digits only, so the only failure left is overflow.
    match text.parse::<u32>() {
        Ok(port @ 1..=65535) => u16::try_from(port).map_err(|_| PortsError::OutOfRange {
            item,
            text: text.to_string(),
        }),
        _ => Err(PortsError::OutOfRange {
            item,
            text: text.to_string(),
        }),
    }
}

impl FromStr for PortSet {
    type Err = PortsError;

    fn from_str(text: &str) -> Result<PortSet, PortsError> {
        let trimmed = text.trim_matches(is_blank);
        if trimmed.is_empty() {
            return Err(PortsError::Empty);
        }
        if trimmed == "*" {
            return Ok(PortSet::any());
        }
        let mut ranges = Vec::new();
        for (index, raw) in trimmed.split(',').enumerate() {
            let item = index + 1;
            let piece = raw.trim_matches(is_blank);
            if piece.is_empty() {
                return Err(PortsError::EmptyItem { item });
            }
            if piece == "*" {
                return Err(PortsError::WildcardInList);
            }
            let range = match piece.split_once('-') {
                None => {
                    let port = parse_port(item, piece)?;
                    PortRange {
                        first: port,
                        last: port,
                    }
                }
                Some((a, b)) => {
                    let first = parse_port(item, a)?;
                    let last = parse_port(item, b)?;
                    PortRange::new(first, last).ok_or(PortsError::Reversed { item, first, last })?
                }
            };
            ranges.push(range);
        }
        // `trimmed` is not empty, so there is at least one item.
        Ok(PortSet {
            repr: Repr::List(ranges.into_boxed_slice()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<PortSet, PortsError> {
        text.parse()
    }

    #[test]
    fn star_and_lists() {
        assert!(parse("*").expect("star").is_any());
        assert_eq!(parse("843").expect("one").to_string(), "843");
        assert_eq!(parse("80,443").expect("two").to_string(), "80,443");
        assert_eq!(parse("1024-2048").expect("range").to_string(), "1024-2048");
        assert_eq!(
            parse("507,516-523").expect("mix").to_string(),
            "507,516-523"
        );
        assert_eq!(parse("1-65535").expect("all").to_string(), "1-65535");
        assert_eq!(parse("5-5").expect("degenerate").to_string(), "5");
    }

    #[test]
    fn blanks_around_items_are_ignored() {
        assert_eq!(
            parse(" 80 , 443 ,\t1024 - 2048 ")
                .expect("blanks")
                .to_string(),
            "80,443,1024-2048"
        );
        assert!(parse(" * ").expect("star").is_any());
        assert!(matches!(parse("8 0"), Err(PortsError::NotANumber { .. })));
        assert!(matches!(parse("80\n"), Err(PortsError::NotANumber { .. })));
    }

    #[test]
    fn errors() {
        assert_eq!(parse(""), Err(PortsError::Empty));
        assert_eq!(parse("  "), Err(PortsError::Empty));
        assert_eq!(parse("80,,443"), Err(PortsError::EmptyItem { item: 2 }));
        assert_eq!(parse("80,"), Err(PortsError::EmptyItem { item: 2 }));
        assert_eq!(parse(",80"), Err(PortsError::EmptyItem { item: 1 }));
        assert_eq!(parse("80,*"), Err(PortsError::WildcardInList));
        assert_eq!(
            parse("0"),
            Err(PortsError::OutOfRange {
                item: 1,
                text: "0".into()
            })
        );
        assert_eq!(
            parse("80,65536"),
            Err(PortsError::OutOfRange {
                item: 2,
                text: "65536".into()
            })
        );
        assert_eq!(
            parse("99999999999999999999"),
            Err(PortsError::OutOfRange {
                item: 1,
                text: "99999999999999999999".into()
            })
        );
        assert_eq!(
            parse("+80"),
            Err(PortsError::NotANumber {
                item: 1,
                text: "+80".into()
            })
        );
        assert_eq!(
            parse("2048-1024"),
            Err(PortsError::Reversed {
                item: 1,
                first: 2048,
                last: 1024
            })
        );
        assert!(matches!(parse("1-2-3"), Err(PortsError::NotANumber { .. })));
        assert!(matches!(parse("-5"), Err(PortsError::NotANumber { .. })));
        assert!(matches!(parse("5-"), Err(PortsError::NotANumber { .. })));
        assert!(matches!(parse("80-*"), Err(PortsError::NotANumber { .. })));
        assert!(matches!(parse("**"), Err(PortsError::NotANumber { .. })));
    }

    #[test]
    fn contains() {
        let set = parse("80,1024-2048").expect("valid");
        assert!(set.contains(80));
        assert!(set.contains(1024));
        assert!(set.contains(2048));
        assert!(!set.contains(81));
        assert!(!set.contains(2049));
        assert!(PortSet::any().contains(65535));
        assert!(!PortSet::any().contains(0));
    }

    #[test]
    fn constructors() {
        assert_eq!(PortRange::new(0, 5), None);
        assert_eq!(PortRange::new(6, 5), None);
        assert_eq!(PortRange::single(0), None);
        assert_eq!(PortSet::from_ranges(Vec::new()), None);
        let set = PortSet::from_ranges(vec![
            PortRange::single(843).expect("843"),
            PortRange::new(1024, 2048).expect("range"),
        ])
        .expect("non-empty");
        assert_eq!(set, parse("843,1024-2048").expect("valid"));
        assert_eq!(set.ranges().map(<[_]>::len), Some(2));
    }
}
