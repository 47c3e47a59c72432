//! Byte counts on the command line (`--payload`): a plain number of bytes,
//! or a number with a unit: `B`, binary `KiB`/`MiB`/`GiB` (1024-based) or
//! decimal `kB`/`MB`/`GB` (1000-based), the unit case-insensitive.

use std::fmt;

/// Why a byte count does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SizeError {
    /// No digits before the unit.
    NoNumber(String),
    /// A unit that is none of the known ones.
    Unit(String),
    /// More than `u64::MAX` bytes.
    TooLarge(String),
    /// Zero bytes.
    Zero,
}

impl fmt::Display for SizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SizeError::NoNumber(s) => write!(
                f,
                "{s:?} is not a byte count (expected e.g. 4096, 64KiB or 1MiB)"
            ),
            SizeError::Unit(u) => {
                write!(f, "unknown unit {u:?} (use B, KiB, MiB, GiB, kB, MB or GB)")
            }
            SizeError::TooLarge(s) => write!(f, "{s:?} is too large"),
            SizeError::Zero => f.write_str("must be at least 1 byte"),
        }
    }
}

impl std::error::Error for SizeError {}

/// Parses a byte count of at least 1.
pub fn parse_size(text: &str) -> Result<u64, SizeError> {
    let t = text.trim();
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = t.split_at(digits);
    if number.is_empty() {
        return Err(SizeError::NoNumber(text.to_string()));
    }
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        _ => return Err(SizeError::Unit(unit.trim().to_string())),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| SizeError::TooLarge(text.to_string()))?;
    let bytes = n
        .checked_mul(multiplier)
        .ok_or_else(|| SizeError::TooLarge(text.to_string()))?;
    if bytes == 0 {
        return Err(SizeError::Zero);
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64KiB"), Ok(65536));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("1 mib"), Ok(1 << 20));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("10kB"), Ok(10_000));
        assert_eq!(parse_size("3MB"), Ok(3_000_000));
        assert_eq!(parse_size("7B"), Ok(7));
        assert_eq!(parse_size("0"), Err(SizeError::Zero));
        assert!(matches!(parse_size("KiB"), Err(SizeError::NoNumber(_))));
        assert!(matches!(parse_size("-1"), Err(SizeError::NoNumber(_))));
        assert!(matches!(parse_size("1.5MiB"), Err(SizeError::Unit(_))));
        assert!(matches!(parse_size("5 furlongs"), Err(SizeError::Unit(_))));
        assert!(matches!(
            parse_size("99999999999999999999"),
            Err(SizeError::TooLarge(_))
        ));
        assert!(matches!(
            parse_size("99999999999GiB"),
            Err(SizeError::TooLarge(_))
        ));
    }
}
