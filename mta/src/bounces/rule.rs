//! One checked rule and the test of its conditions against a reply. Every condition
//! a rule gives must hold; one it omits holds for any reply. A rule's patterns are
//! compiled into one regex (their alternation), so that testing it is one scan.

use std::fmt;

use regex::Regex;

use super::reply::Reply;
use super::Category;

/// An RFC 3463 enhanced status code, or a rule's prefix of one: one to three numbers
/// (`5`, `5.1`, `5.1.1`). Prefixes are by component, so `5.1` covers `5.1.10` and
/// `5.7.2` does not cover `5.7.23`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Status {
    parts: [u16; 3],
    len: u8,
}

impl Status {
    /// A rule's status: a class (2, 4 or 5), then up to two numbers of 1-3 digits.
    pub fn parse_prefix(s: &str) -> Option<Status> {
        let mut parts = [0u16; 3];
        let mut len = 0u8;
        for (n, part) in s.split('.').enumerate() {
            let widest = if n == 0 { 1 } else { 3 };
            let slot = parts.get_mut(n)?;
            if part.is_empty() || part.len() > widest || !part.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            *slot = part.parse().ok()?;
            len += 1;
        }
        matches!(parts[0], 2 | 4 | 5).then_some(Status { parts, len })
    }

    /// A reply's status: all three components.
    pub fn parse_full(s: &str) -> Option<Status> {
        Status::parse_prefix(s).filter(|status| status.len == 3)
    }

    /// The class digit: 2, 4 or 5.
    pub fn class(self) -> u16 {
        self.parts[0]
    }

    /// Whether `self` (a reply's status) is `prefix` or lies under it.
    pub fn starts_with(self, prefix: Status) -> bool {
        let n = usize::from(prefix.len);
        prefix.len <= self.len && self.parts[..n] == prefix.parts[..n]
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = usize::from(self.len);
        for (i, part) in self.parts[..n].iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            write!(f, "{part}")?;
        }
        Ok(())
    }
}

/// A rule as loaded: its category and the conditions it gives (`None`: omitted).
#[derive(Debug, Clone)]
pub(super) struct Rule {
    pub category: Category,
    pub codes: Option<Box<[u16]>>,
    pub status: Option<Box<[Status]>>,
    /// Any of the rule's patterns, as one regex.
    pub patterns: Option<Regex>,
    /// `has_code = false`: the text carries no SMTP reply code (our own reason).
    pub has_code: Option<bool>,
}

impl Rule {
    /// Whether every condition holds; the cheap ones are tested first.
    pub fn holds(&self, reply: &Reply) -> bool {
        if self.has_code.is_some_and(|has| has != reply.code.is_some()) {
            return false;
        }
        if let Some(codes) = &self.codes {
            if !reply.code.is_some_and(|code| codes.contains(&code)) {
                return false;
            }
        }
        if let Some(prefixes) = &self.status {
            let Some(status) = reply.status else {
                return false;
            };
            if !prefixes.iter().any(|p| status.starts_with(*p)) {
                return false;
            }
        }
        self.patterns
            .as_ref()
            .is_none_or(|patterns| patterns.is_match(&reply.text))
    }
}
