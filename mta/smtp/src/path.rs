//! Paths and the names inside them (RFC 5321 §4.1.2, RFC 6531 for UTF-8): the
//! `<...>` of `MAIL FROM:` / `RCPT TO:`, mailboxes, domains and address literals.
//! Everything borrows from the command line; nothing is allocated.
//!
//! Checks are RFC-shaped but forgiving where real clients differ harmlessly
//! (underscores in domain labels, a trailing dot on a HELO name). Source routes
//! (`<@a,@b:user@d>`) are validated and then dropped, as RFC 5321 §3.3 asks.

use std::net::{Ipv4Addr, Ipv6Addr};

/// RFC 5321 §4.5.3.1.3: a path is at most 256 octets, brackets included.
pub const MAX_PATH: usize = 256;

/// An address taken out of a path, without brackets or source route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Path<'a> {
    /// `local@domain`, `postmaster` (RCPT only), or empty for the null path `<>`.
    pub address: &'a str,
}

impl<'a> Path<'a> {
    /// True when the address needs SMTPUTF8 (RFC 6531).
    pub fn is_utf8(&self) -> bool {
        !self.address.is_ascii()
    }

    /// The domain part, if there is one.
    pub fn domain(&self) -> Option<&'a str> {
        self.address.rfind('@').map(|i| &self.address[i + 1..])
    }
}

/// Why a path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    Syntax,
    TooLong,
}

/// Which command the path belongs to: they differ in what the brackets may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    /// `MAIL FROM:` — the null path `<>` is allowed.
    Reverse,
    /// `RCPT TO:` — `<postmaster>` without a domain is allowed.
    Forward,
}

/// Parses `<...>` at the start of `s`; returns the path and what follows the `>`.
pub fn parse_path(s: &str, kind: PathKind) -> Result<(Path<'_>, &str), PathError> {
    let end = closing_bracket(s).ok_or(PathError::Syntax)?;
    if end + 1 > MAX_PATH {
        return Err(PathError::TooLong);
    }
    let inner = &s[1..end];
    let rest = &s[end + 1..];
    if inner.is_empty() {
        return match kind {
            PathKind::Reverse => Ok((Path { address: "" }, rest)),
            PathKind::Forward => Err(PathError::Syntax),
        };
    }
    let mailbox = strip_source_route(inner)?;
    let ok = valid_mailbox(mailbox)
        || (kind == PathKind::Forward && mailbox.eq_ignore_ascii_case("postmaster"));
    if ok {
        Ok((Path { address: mailbox }, rest))
    } else {
        Err(PathError::Syntax)
    }
}

/// Index of the `>` that closes the path starting at `s[0] == '<'`, skipping quoted
/// local parts (which may contain `>`).
fn closing_bracket(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    if b.first() != Some(&b'<') {
        return None;
    }
    let mut quoted = false;
    let mut i = 1;
    while i < b.len() {
        match b[i] {
            b'\\' if quoted => i += 1,
            b'"' => quoted = !quoted,
            b'>' if !quoted => return Some(i),
            b'<' if !quoted => return None,
            _ => {}
        }
        i += 1;
    }
    None
}

/// `@a,@b:user@d` → `user@d`, after checking that the route is a list of domains.
fn strip_source_route(inner: &str) -> Result<&str, PathError> {
    if !inner.starts_with('@') {
        return Ok(inner);
    }
    let colon = inner.find(':').ok_or(PathError::Syntax)?;
    let route_ok = inner[..colon]
        .split(',')
        .all(|hop| hop.strip_prefix('@').is_some_and(valid_domain));
    if route_ok {
        Ok(&inner[colon + 1..])
    } else {
        Err(PathError::Syntax)
    }
}

/// `local-part "@" (domain / address-literal)`.
pub fn valid_mailbox(m: &str) -> bool {
    match m.rfind('@') {
        Some(at) => {
            let (local, domain) = (&m[..at], &m[at + 1..]);
            valid_local_part(local) && (valid_domain(domain) || valid_address_literal(domain))
        }
        None => false,
    }
}

fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii()
}

fn valid_local_part(local: &str) -> bool {
    if let Some(q) = local.strip_prefix('"') {
        let Some(body) = q.strip_suffix('"') else {
            return false;
        };
        let mut chars = body.chars();
        while let Some(c) = chars.next() {
            let ok = match c {
                '\\' => chars.next().is_some_and(|e| (' '..='~').contains(&e)),
                '"' => false,
                c => (' '..='~').contains(&c) || !c.is_ascii() && !c.is_control(),
            };
            if !ok {
                return false;
            }
        }
        true
    } else {
        !local.is_empty()
            && local.split('.').all(|atom| {
                !atom.is_empty() && atom.chars().all(|c| is_atext(c) && !c.is_control())
            })
    }
}

/// A dot-separated host name; labels of letters, digits, `-` and (leniently) `_`,
/// or non-ASCII U-labels.
pub fn valid_domain(d: &str) -> bool {
    if d.is_empty() || d.len() > 255 {
        return false;
    }
    d.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| {
                c.is_ascii_alphanumeric()
                    || c == '-'
                    || c == '_'
                    || (!c.is_ascii() && !c.is_control())
            })
    })
}

/// `[192.0.2.1]`, `[IPv6:2001:db8::1]` or a general literal `[tag:content]`.
pub fn valid_address_literal(d: &str) -> bool {
    let Some(inner) = d.strip_prefix('[').and_then(|s| s.strip_suffix(']')) else {
        return false;
    };
    if inner.parse::<Ipv4Addr>().is_ok() {
        return true;
    }
    match inner.split_once(':') {
        Some((tag, v6)) if tag.eq_ignore_ascii_case("IPv6") => v6.parse::<Ipv6Addr>().is_ok(),
        Some((tag, content)) => {
            valid_domain(tag)
                && !content.is_empty()
                && content
                    .bytes()
                    .all(|b| (33..=126).contains(&b) && !b"[]\\".contains(&b))
        }
        None => false,
    }
}

/// The EHLO/HELO argument: a domain (a trailing dot tolerated) or an address literal.
pub fn valid_helo(name: &str) -> bool {
    let d = name.strip_suffix('.').unwrap_or(name);
    valid_domain(d) || valid_address_literal(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fwd(s: &str) -> Result<&str, PathError> {
        parse_path(s, PathKind::Forward).map(|(p, _)| p.address)
    }

    #[test]
    fn mailboxes() {
        assert_eq!(fwd("<a@b.example>"), Ok("a@b.example"));
        assert_eq!(
            fwd("<\"a b>c\"@x.example> SIZE=1"),
            Ok("\"a b>c\"@x.example")
        );
        assert_eq!(fwd("<a.b+c@[192.0.2.1]>"), Ok("a.b+c@[192.0.2.1]"));
        assert_eq!(fwd("<a@[IPv6:2001:db8::1]>"), Ok("a@[IPv6:2001:db8::1]"));
        assert_eq!(fwd("<Postmaster>"), Ok("Postmaster"));
        assert_eq!(
            fwd("<@a.example,@b.example:u@d.example>"),
            Ok("u@d.example")
        );
        assert_eq!(fwd("<用户@例子.测试>"), Ok("用户@例子.测试"));
        for bad in [
            "<>",
            "a@b",
            "<a@b",
            "<a@@b>",
            "<@b>",
            "<a.@b>",
            "<.a@b>",
            "<a@-b>",
            "<a@b..c>",
            "<a b@c>",
            "<user>",
            "<a@[1.2.3]>",
            "<@a:>",
            "<@a,b:u@d>",
            "<a@b<c>",
        ] {
            assert_eq!(fwd(bad), Err(PathError::Syntax), "{bad}");
        }
    }

    #[test]
    fn length_limit_counts_brackets() {
        let local = "a".repeat(64);
        // 18 labels of 9 plus one more: 189 octets, so that the path is exactly 256.
        let domain = format!("{}abcdefghi", "abcdefghi.".repeat(18));
        let ok = format!("<{local}@{domain}>");
        assert_eq!(ok.len(), MAX_PATH);
        assert!(fwd(&ok).is_ok());
        let long = format!("<{local}@x{domain}>");
        assert_eq!(fwd(&long), Err(PathError::TooLong));
    }

    #[test]
    fn null_path_only_for_mail() {
        let (p, rest) = parse_path("<> BODY=7BIT", PathKind::Reverse).expect("null path");
        assert_eq!(p.address, "");
        assert_eq!(rest, " BODY=7BIT");
    }

    #[test]
    fn helo_names() {
        for ok in [
            "mail.example",
            "localhost",
            "[127.0.0.1]",
            "[IPv6:::1]",
            "host_1.example.",
        ] {
            assert!(valid_helo(ok), "{ok}");
        }
        for bad in ["", "a b", "[127.0.0]", "[::1]", "a..b", "<x>", "a@b"] {
            assert!(!valid_helo(bad), "{bad}");
        }
    }
}
