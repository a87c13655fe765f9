//! Delivery Status Notification parameters (RFC 3461): `RET` and `ENVID` on MAIL,
//! `NOTIFY` and `ORCPT` on RCPT. Values are checked and kept as given so that
//! delivery can pass them on; malformed ones get `501 5.5.4`.

use crate::{Notify, Ret};

use crate::reply::{self, EnhancedCode, Reply};

/// RFC 3461 §4.4: ENVID is at most 100 characters.
const MAX_ENVID: usize = 100;
/// RFC 3461 §4.2: ORCPT's address part is at most 500 characters.
const MAX_ORCPT: usize = 500;

pub(super) fn parse_ret(value: Option<&str>) -> Result<Ret, Reply> {
    match value {
        Some(v) if v.eq_ignore_ascii_case("FULL") => Ok(Ret::Full),
        Some(v) if v.eq_ignore_ascii_case("HDRS") => Ok(Ret::Headers),
        _ => Err(Reply::new(
            501,
            EnhancedCode::new(5, 5, 4),
            "RET must be FULL or HDRS",
        )),
    }
}

pub(super) fn parse_envid(value: Option<&str>) -> Result<String, Reply> {
    match value {
        Some(v) if v.len() <= MAX_ENVID && is_xtext(v) => Ok(v.to_string()),
        _ => Err(Reply::new(
            501,
            EnhancedCode::new(5, 5, 4),
            "ENVID must be xtext of at most 100 characters",
        )),
    }
}

pub(super) fn parse_notify(value: Option<&str>) -> Result<Notify, Reply> {
    let bad = || {
        Reply::new(
            501,
            EnhancedCode::new(5, 5, 4),
            "NOTIFY must be NEVER or a list of SUCCESS, FAILURE, DELAY",
        )
    };
    let mut n = Notify::default();
    for word in value.ok_or_else(bad)?.split(',') {
        if word.eq_ignore_ascii_case("NEVER") {
            n.never = true;
        } else if word.eq_ignore_ascii_case("SUCCESS") {
            n.success = true;
        } else if word.eq_ignore_ascii_case("FAILURE") {
            n.failure = true;
        } else if word.eq_ignore_ascii_case("DELAY") {
            n.delay = true;
        } else {
            return Err(bad());
        }
    }
    if n.never && (n.success || n.failure || n.delay) {
        return Err(Reply::new(
            501,
            EnhancedCode::new(5, 5, 4),
            "NOTIFY=NEVER excludes other values",
        ));
    }
    Ok(n)
}

/// `ORCPT=addr-type;xtext`. For `utf-8` (RFC 6533) the address may hold UTF-8.
pub(super) fn parse_orcpt(value: Option<&str>) -> Result<String, Reply> {
    let bad = || {
        Reply::new(
            501,
            EnhancedCode::new(5, 5, 4),
            "ORCPT must be addr-type;xtext",
        )
    };
    let v = value.ok_or_else(bad)?;
    let (kind, addr) = v.split_once(';').ok_or_else(bad)?;
    let kind_ok = !kind.is_empty() && kind.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    let addr_ok = !addr.is_empty()
        && addr.len() <= MAX_ORCPT
        && (is_xtext(addr) || (kind.eq_ignore_ascii_case("utf-8") && is_utf8_addr(addr)));
    if kind_ok && addr_ok {
        Ok(v.to_string())
    } else {
        Err(bad())
    }
}

/// RFC 3461 §4: printable ASCII except `+` and `=`, which appear only as `+XX`.
fn is_xtext(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => {
                let hex =
                    |c: &u8| c.is_ascii_digit() || (b'A'..=b'F').contains(&c.to_ascii_uppercase());
                if !(b.get(i + 1).is_some_and(hex) && b.get(i + 2).is_some_and(hex)) {
                    return false;
                }
                i += 3;
            }
            b'=' => return false,
            c if (33..=126).contains(&c) => i += 1,
            _ => return false,
        }
    }
    true
}

/// RFC 6533 utf-8-addr-xtext, loosely: printable, no `+`/`=` (those must be escaped).
fn is_utf8_addr(s: &str) -> bool {
    s.chars()
        .all(|c| !c.is_control() && !c.is_whitespace() && c != '+' && c != '=')
}

/// Shared by MAIL and RCPT: a keyword given twice is a syntax error (RFC 3461 §4).
pub(super) fn once(seen: &mut bool) -> Result<(), Reply> {
    if std::mem::replace(seen, true) {
        Err(reply::PARAM_REPEATED)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xtext() {
        assert!(is_xtext("abc+2Bdef"));
        assert!(is_xtext("a+2b"));
        assert!(!is_xtext("a+2"));
        assert!(!is_xtext("a+zz"));
        assert!(!is_xtext("a=b"));
        assert!(!is_xtext("a b"));
        assert!(!is_xtext("é"));
    }

    #[test]
    fn notify_lists() {
        let n = parse_notify(Some("success,DELAY")).expect("valid");
        assert!(n.success && n.delay && !n.failure && !n.never);
        assert!(parse_notify(Some("NEVER")).expect("valid").never);
        assert!(parse_notify(Some("NEVER,SUCCESS")).is_err());
        assert!(parse_notify(Some("SOMETIMES")).is_err());
        assert!(parse_notify(Some("SUCCESS,")).is_err());
        assert!(parse_notify(None).is_err());
    }

    #[test]
    fn orcpt_and_envid() {
        assert!(parse_orcpt(Some("rfc822;a+40b@example.org")).is_ok());
        assert!(parse_orcpt(Some("utf-8;用户@例子.测试")).is_ok());
        assert!(parse_orcpt(Some("rfc822")).is_err());
        assert!(parse_orcpt(Some(";a@b")).is_err());
        assert!(parse_orcpt(Some("rfc822;")).is_err());
        assert!(parse_envid(Some("QQ314159")).is_ok());
        assert!(parse_envid(Some(&"x".repeat(101))).is_err());
        assert_eq!(parse_ret(Some("hdrs")), Ok(Ret::Headers));
        assert!(parse_ret(Some("ALL")).is_err());
    }
}
