//! Input rules for names and text the control plane stores: tenant ids, domain
//! names, SMTP usernames, operator names and free text. Each returns the value to
//! store (normalized) or a `Failure` with the rule in plain words.

use super::context::Failure;
use way2mail_wire::snapshot::TenantLimits;

pub(crate) use way2mail_wire::protocol::{shorten, MAX_TENANT_CHARS};
const MAX_TEXT_CHARS: usize = 200;

/// `[a-z0-9][a-z0-9-]{0,62}`.
pub(crate) fn tenant_id(id: &str) -> Result<&str, Failure> {
    way2mail_wire::protocol::check_tenant_id(id).map_err(|e| Failure::invalid(e.to_string()))?;
    Ok(id)
}

/// A DNS name, lower-cased, without a trailing dot: labels of 1 to 63 letters,
/// digits and inner hyphens, at least two labels, 253 characters at most, and a
/// top-level label that is not all digits. Internationalized names in their
/// `xn--` form.
pub(crate) fn domain(name: &str) -> Result<String, Failure> {
    let lower = name.trim().to_ascii_lowercase();
    let lower = lower.strip_suffix('.').unwrap_or(&lower).to_owned();
    let bad = |why: &str| Failure::invalid(format!("invalid domain {:?}: {why}", shorten(name)));
    if !lower.is_ascii() {
        return Err(bad("use the ASCII (xn--) form of internationalized names"));
    }
    if lower.is_empty() || lower.len() > 253 {
        return Err(bad("must be 1 to 253 characters"));
    }
    let labels: Vec<&str> = lower.split('.').collect();
    if labels.len() < 2 {
        return Err(bad("needs at least two labels (example.com)"));
    }
    for label in &labels {
        let b = label.as_bytes();
        if b.is_empty() || b.len() > 63 {
            return Err(bad("each label must be 1 to 63 characters"));
        }
        if !b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-') {
            return Err(bad("labels hold only letters, digits and '-'"));
        }
        if b[0] == b'-' || b[b.len() - 1] == b'-' {
            return Err(bad("labels cannot start or end with '-'"));
        }
    }
    if labels
        .last()
        .is_some_and(|tld| tld.bytes().all(|c| c.is_ascii_digit()))
    {
        return Err(bad("the last label cannot be all digits"));
    }
    Ok(lower)
}

/// 1 to 128 printable ASCII characters without spaces (SASL usernames are
/// compared byte for byte, so no normalization).
pub(crate) fn smtp_username(name: &str) -> Result<&str, Failure> {
    let ok = !name.is_empty() && name.len() <= 128 && name.bytes().all(|c| c.is_ascii_graphic());
    if ok {
        Ok(name)
    } else {
        Err(Failure::invalid(format!(
            "invalid SMTP username {:?}: use 1 to 128 printable characters without spaces",
            shorten(name)
        )))
    }
}

/// `[a-z0-9._-]{1,64}`.
pub(crate) fn operator_name(name: &str) -> Result<&str, Failure> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'_' | b'-')
        });
    if ok {
        Ok(name)
    } else {
        Err(Failure::invalid(format!(
            "invalid operator name {:?}: use 1 to 64 lower-case letters, digits, '.', '_' and '-'",
            shorten(name)
        )))
    }
}

/// Free text such as a business name: trimmed, 1 to 200 characters (0 when
/// `optional`), no control characters.
pub(crate) fn text(field: &str, value: &str, optional: bool) -> Result<String, Failure> {
    let value = value.trim();
    let count = value.chars().count();
    if (!optional && count == 0) || count > MAX_TEXT_CHARS {
        return Err(Failure::invalid(format!(
            "{field} must be {} to {MAX_TEXT_CHARS} characters",
            if optional { 0 } else { 1 }
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(Failure::invalid(format!(
            "{field} cannot contain control characters"
        )));
    }
    Ok(value.to_owned())
}

/// Longest text of an incident's long fields (nature, data affected, …).
pub(crate) const MAX_LONG_TEXT_CHARS: usize = 4000;

/// Several lines of free text, such as an incident's nature: line ends normalized to
/// `\n`, trimmed, 1 to 4,000 characters, no control characters but line ends and tabs.
pub(crate) fn long_text(field: &str, value: &str) -> Result<String, Failure> {
    let value = value.replace("\r\n", "\n").replace('\r', "\n");
    let value = value.trim();
    let count = value.chars().count();
    if count == 0 || count > MAX_LONG_TEXT_CHARS {
        return Err(Failure::invalid(format!(
            "{field} must be 1 to {MAX_LONG_TEXT_CHARS} characters"
        )));
    }
    if value
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(Failure::invalid(format!(
            "{field} cannot contain control characters other than line ends and tabs"
        )));
    }
    Ok(value.to_owned())
}

pub(crate) fn limits(limits: &TenantLimits) -> Result<(), Failure> {
    for (name, value) in [
        ("messages_per_hour", limits.messages_per_hour),
        ("messages_per_day", limits.messages_per_day),
        ("recipients_per_message", limits.recipients_per_message),
    ] {
        if value < 1 {
            return Err(Failure::invalid(format!("{name} must be at least 1")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_ids() {
        for ok in ["a", "acme", "0day", "a-b-c", &"x".repeat(63)] {
            assert!(tenant_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "Acme", "a_b", "a.b", "a b", &"x".repeat(64), "é"] {
            assert!(tenant_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn domains() {
        assert_eq!(domain("Example.COM.").expect("ok"), "example.com");
        assert_eq!(
            domain("xn--bcher-kva.example").expect("ok"),
            "xn--bcher-kva.example"
        );
        assert_eq!(domain("a-1.b2.example").expect("ok"), "a-1.b2.example");
        for bad in [
            "",
            "com",
            "a..b",
            "-a.com",
            "a-.com",
            "a_b.com",
            "bücher.de",
            "1.2.3.4",
            "a b.com",
            &format!("{}.com", "a".repeat(64)),
            &format!("{}com", "a.".repeat(127)),
        ] {
            assert!(domain(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn usernames_and_operators() {
        assert!(smtp_username("user@example.com").is_ok());
        assert!(smtp_username("a b").is_err());
        assert!(smtp_username("").is_err());
        assert!(smtp_username(&"u".repeat(129)).is_err());
        assert!(smtp_username("tab\t").is_err());
        assert!(operator_name("alice.b_c-1").is_ok());
        for bad in ["", "Alice", "a b", "a@b", &"a".repeat(65)] {
            assert!(operator_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn texts_and_limits() {
        assert_eq!(text("contact", "  x  ", false).expect("ok"), "x");
        assert!(text("contact", "  ", false).is_err());
        assert_eq!(text("billing_ref", "", true).expect("ok"), "");
        assert!(text("contact", "a\nb", false).is_err());
        assert!(text("contact", &"a".repeat(201), false).is_err());
        assert!(limits(&TenantLimits::default()).is_ok());
        let zero = TenantLimits {
            messages_per_day: 0,
            ..TenantLimits::default()
        };
        assert!(limits(&zero).is_err());
    }
}
