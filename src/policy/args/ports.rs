//! TCP/UDP ports for `in_ports`: a port `80` or a range `8000-8080`, each 1..=65535.
//!
//! Ports are counted in ASCII decimal only. Anything a human might read as a port but a
//! program might read otherwise is not a port: `0`, `65536`, `-1`, `080` (octal?), `0x50`,
//! `+80`, `" 80"`, full-width `８０`, `1e3` or `80.0` as JSON numbers, `80:90` (pf's and
//! OPNsense aliases' range syntax) and reversed ranges `80-70`.
//!
//! A value may also be a comma-separated list (`"80,443"`): it passes only if every element
//! is a valid port or range inside an allowed one, with no empty elements and no spaces. A
//! list is never more permissive than its elements taken one by one, so accepting it loses
//! nothing; refusing it would only push callers to make several calls.

use std::fmt;

use serde_json::Value;

/// Most elements read from one comma-separated value.
const MAX_LIST: usize = 64;

/// An inclusive range of ports, `lo <= hi`, both in 1..=65535.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub lo: u16,
    pub hi: u16,
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.lo == self.hi {
            write!(f, "{}", self.lo)
        } else {
            write!(f, "{}-{}", self.lo, self.hi)
        }
    }
}

impl PortRange {
    /// `80` or `8000-8080`, strictly (see the module documentation).
    pub fn parse(text: &str) -> Option<PortRange> {
        let (lo, hi) = match text.split_once('-') {
            Some((lo, hi)) => (parse_port(lo)?, parse_port(hi)?),
            None => {
                let p = parse_port(text)?;
                (p, p)
            }
        };
        (lo <= hi).then_some(PortRange { lo, hi })
    }

    /// A port given as an integer.
    pub fn single(n: i128) -> Option<PortRange> {
        let p = u16::try_from(n).ok().filter(|p| *p != 0)?;
        Some(PortRange { lo: p, hi: p })
    }

    pub fn contains(&self, inner: &PortRange) -> bool {
        self.lo <= inner.lo && inner.hi <= self.hi
    }
}

/// 1 to 5 ASCII digits without a leading zero, in 1..=65535.
fn parse_port(text: &str) -> Option<u16> {
    let ok = !text.is_empty()
        && text.len() <= 5
        && text.bytes().all(|b| b.is_ascii_digit())
        && !text.starts_with('0');
    if !ok {
        return None;
    }
    text.parse().ok()
}

/// Why a value is not inside the allowed ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortError {
    /// Not an integer or a string.
    WrongType,
    /// A string or integer that is not a port, range or list of them.
    NotAPort,
    /// A valid port or range outside every allowed range.
    Outside(PortRange),
}

/// Checks a JSON value (integer, or string holding a port, a range or a comma list of them)
/// against the allowed ranges.
pub fn check(value: &Value, allowed: &[PortRange]) -> Result<(), PortError> {
    let inside = |r: PortRange| {
        if allowed.iter().any(|a| a.contains(&r)) {
            Ok(())
        } else {
            Err(PortError::Outside(r))
        }
    };
    match value {
        Value::Number(n) => {
            // Only integers: 80.0 and 1e3 are floats in JSON and not ports.
            let n = match (n.as_i64(), n.as_u64()) {
                (Some(i), _) => i128::from(i),
                (None, Some(u)) => i128::from(u),
                _ => return Err(PortError::NotAPort),
            };
            inside(PortRange::single(n).ok_or(PortError::NotAPort)?)
        }
        Value::String(s) => {
            if s.len() > MAX_LIST * 12 {
                return Err(PortError::NotAPort);
            }
            let mut count = 0;
            for part in s.split(',') {
                count += 1;
                if count > MAX_LIST {
                    return Err(PortError::NotAPort);
                }
                inside(PortRange::parse(part).ok_or(PortError::NotAPort)?)?;
            }
            Ok(())
        }
        _ => Err(PortError::WrongType),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_strictly() {
        let good: &[(&str, (u16, u16))] = &[
            ("1", (1, 1)),
            ("80", (80, 80)),
            ("65535", (65535, 65535)),
            ("8000-8080", (8000, 8080)),
            ("80-80", (80, 80)),
            ("1-65535", (1, 65535)),
        ];
        for (text, (lo, hi)) in good {
            assert_eq!(
                PortRange::parse(text),
                Some(PortRange { lo: *lo, hi: *hi }),
                "{text}"
            );
        }
        for text in [
            "",
            "0",
            "65536",
            "99999",
            "100000",
            "-1",
            "080",
            "0x50",
            "+80",
            " 80",
            "80 ",
            "８０",
            "80-70",
            "80-",
            "-80",
            "80--90",
            "80-90-100",
            "80:90",
            "80,443",
            "1e3",
            "80.0",
        ] {
            assert_eq!(PortRange::parse(text), None, "{text:?}");
        }
    }
}
