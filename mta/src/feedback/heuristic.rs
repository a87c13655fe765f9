//! Bounces without a status part, read from their text. Three shapes, tried in
//! order:
//!
//! - qmail (QSBMF, cr.yp.to/proto/qsbmf.txt): "Hi. This is the qmail-send
//!   program at …", then one paragraph per recipient, `<addr>:` and the reason.
//! - Old Exim: "This message was created automatically by mail delivery
//!   software.", "… The following address(es) failed:", then each address indented
//!   on a line of its own, its reason indented below it.
//! - Anything else: each line with a permanent SMTP reply (`550 5.1.1 …`, or `said:
//!   550 …`), with the address on that line or the nearest line above naming one.
//!
//! Only the text before the returned copy is read (the copy names addresses of its
//! own), at most [`MAX_TEXT`] bytes of it. What is found is `failed`: a text that
//! reads as a delay warning ("has not yet been delivered", "will continue to try")
//! gives nothing, since reading a warning as a failure would suppress a recipient
//! whose mail may yet arrive. Our own VERP addresses are never taken for a
//! recipient (the bounce is addressed to one and often quotes it).

use std::sync::OnceLock;

use regex::Regex;

use super::dsn::{is_status, BounceRecipient};
use super::fields::{self, OriginalHeaders};
use super::{MAX_FIELD, MAX_RECIPIENTS};

/// Bytes of text read for recipients.
const MAX_TEXT: usize = 64 * 1024;
/// Bytes of text read for the returned copy's header section.
const MAX_COPY: usize = 256 * 1024;
/// Lines above a reply searched for its address.
const LOOK_BACK: usize = 12;

/// Phrases that start the returned copy (compared in lower case, after dashes and
/// white space at the start of the line).
const COPY_MARKERS: &[&str] = &[
    "below this line is a copy of the message",
    "this is a copy of the message",
    "original message follows",
    "unsent message follows",
    "original message headers",
    "message headers follow",
];

/// Delay-warning wording (lower case).
const DELAY_WORDING: &[&str] = &[
    "has not yet been delivered",
    "have not yet been delivered",
    "not been delivered yet",
    "delivery has been delayed",
    "delivery is delayed",
    "delayed mail",
    "will continue to try",
    "will keep trying",
    "still being retried",
    "could not send message for past",
];

fn regex(cell: &'static OnceLock<Option<Regex>>, pattern: &str) -> Option<&'static Regex> {
    cell.get_or_init(|| Regex::new(pattern).ok()).as_ref()
}

/// An ASCII addr-spec (dot-atom local part, a domain with a letter TLD).
fn address_regex() -> Option<&'static Regex> {
    static CELL: OnceLock<Option<Regex>> = OnceLock::new();
    regex(
        &CELL,
        r"(?i)[a-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.){1,10}[a-z]{2,63}\b",
    )
}

/// A permanent SMTP reply: `550 5.1.1`, `550-5.1.1`, `554 #5.7.1`, or a bare 5xx
/// after a word that introduces a reply.
fn reply_regex() -> Option<&'static Regex> {
    static CELL: OnceLock<Option<Regex>> = OnceLock::new();
    regex(
        &CELL,
        r"(?i)\b5[0-5][0-9][ -]#?5\.[0-9]{1,3}\.[0-9]{1,3}\b|\b(?:said|says|replied|returned|response|reply|error)\b[^0-9\n]{0,20}\b5[0-5][0-9]\b",
    )
}

/// `host mx.example.org [192.0.2.1]`, as Exim and Postfix texts name the remote MTA.
fn host_regex() -> Option<&'static Regex> {
    static CELL: OnceLock<Option<Regex>> = OnceLock::new();
    regex(
        &CELL,
        r"(?i)\bhost\s+([a-z0-9][a-z0-9.-]{0,252}[a-z0-9])\.?\s*\[",
    )
}

/// `text` cut at `max` bytes, on a character boundary.
fn head(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn is_copy_marker(line: &str) -> bool {
    let l = line
        .trim_start_matches(|c: char| c == '-' || c.is_whitespace())
        .to_ascii_lowercase();
    COPY_MARKERS.iter().any(|m| l.starts_with(m))
}

/// A line at column 0 that starts a header section (an inline copy with no marker).
fn is_header_start(line: &str) -> bool {
    let l = line.get(..12).unwrap_or(line).to_ascii_lowercase();
    l.starts_with("return-path:") || l.starts_with("received:")
}

/// The text before the returned copy.
fn notice(text: &str) -> &str {
    let mut end = 0;
    for line in text.split_inclusive('\n') {
        if is_copy_marker(line) || is_header_start(line) {
            break;
        }
        end += line.len();
    }
    &text[..end]
}

/// Whether `address` is one of our VERP return paths (any domain).
fn is_verp(address: &str) -> bool {
    address
        .rsplit_once('@')
        .is_some_and(|(local, _)| super::verp::parse_local_part(local).is_some())
}

/// The enhanced status code in `text`, if any: the first `N.N.N` with class 2, 4 or
/// 5 and a subject RFC 3463 defines (0-7), that is not part of a longer dotted
/// number (an IP address). Stricter than a Status field needs to be: prose holds
/// version numbers (`Exim 4.94.2`) that have a status code's shape.
fn status_in(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut start = 0;
    while let Some(i) = text[start..].find(['2', '4', '5']).map(|i| i + start) {
        start = i + 1;
        if i > 0 && (bytes[i - 1].is_ascii_digit() || bytes[i - 1] == b'.') {
            continue;
        }
        let end = text[i..]
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .map_or(text.len(), |e| e + i);
        let candidate = text[i..end].trim_end_matches('.');
        let subject = candidate.split('.').nth(1).unwrap_or("");
        if is_status(candidate) && subject.len() == 1 && subject < "8" {
            return Some(candidate.to_owned());
        }
    }
    None
}

fn remote_mta_in(text: &str) -> Option<String> {
    let captures = host_regex()?.captures(text)?;
    captures.get(1).map(|m| m.as_str().to_owned())
}

fn failed(address: &str, reason: &str) -> BounceRecipient {
    let diagnostic = fields::clean(reason.as_bytes());
    BounceRecipient {
        address: fields::truncated(address, MAX_FIELD),
        original_recipient: None,
        action: "failed".to_owned(),
        status: status_in(&diagnostic),
        remote_mta: remote_mta_in(&diagnostic),
        diagnostic: (!diagnostic.is_empty()).then_some(diagnostic),
    }
}

/// Adds `r` unless its address is there already or is ours; false when full.
fn push(found: &mut Vec<BounceRecipient>, r: BounceRecipient) -> bool {
    if !is_verp(&r.address)
        && !found
            .iter()
            .any(|f| f.address.eq_ignore_ascii_case(&r.address))
    {
        found.push(r);
    }
    found.len() < MAX_RECIPIENTS
}

/// The failed recipients a bounce's text names; empty when it names none or reads
/// as a delay warning.
pub(crate) fn recipients(text: &str) -> Vec<BounceRecipient> {
    let text = notice(head(text, MAX_TEXT));
    let lower = text.to_ascii_lowercase();
    if DELAY_WORDING.iter().any(|w| lower.contains(w)) {
        return Vec::new();
    }
    if lower.contains("this is the qmail-send program") {
        let found = qmail(text);
        if !found.is_empty() {
            return found;
        }
    }
    if lower.contains("created automatically by mail delivery software") {
        let found = exim(text);
        if !found.is_empty() {
            return found;
        }
    }
    generic(text)
}

/// qmail: paragraphs `<addr>:` then reason lines, up to a blank line.
fn qmail(text: &str) -> Vec<BounceRecipient> {
    let mut found = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in text.lines() {
        let t = line.trim();
        let opening = t
            .strip_prefix('<')
            .and_then(|t| t.strip_suffix(">:"))
            .filter(|a| a.contains('@') && !a.contains(char::is_whitespace));
        if let Some(address) = opening {
            if let Some((a, reason)) = current.take() {
                if !push(&mut found, failed(&a, &reason)) {
                    return found;
                }
            }
            current = Some((address.to_owned(), String::new()));
        } else if t.is_empty() {
            if let Some((a, reason)) = current.take() {
                if !push(&mut found, failed(&a, &reason)) {
                    return found;
                }
            }
        } else if let Some((_, reason)) = &mut current {
            if reason.len() < 4 * MAX_FIELD {
                reason.push_str(t);
                reason.push(' ');
            }
        }
    }
    if let Some((a, reason)) = current {
        push(&mut found, failed(&a, &reason));
    }
    found
}

/// Old Exim: after "…failed:", indented address lines, each followed by its more
/// indented reason lines; the list ends at a line that is not indented.
fn exim(text: &str) -> Vec<BounceRecipient> {
    let mut lines = text.lines();
    if !lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.contains("address(es) failed") || l.contains("addresses failed")
    }) {
        return Vec::new();
    }
    let mut found = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in lines {
        let t = line.trim();
        if t.is_empty() {
            continue;
        }
        if !line.starts_with([' ', '\t']) {
            break;
        }
        // An address alone on its line (Exim 3 adds a colon; some add brackets).
        let alone = t.trim_end_matches(':');
        let alone = alone
            .strip_prefix('<')
            .and_then(|a| a.strip_suffix('>'))
            .unwrap_or(alone);
        if alone.contains('@') && !alone.contains(char::is_whitespace) {
            if let Some((a, reason)) = current.take() {
                if !push(&mut found, failed(&a, &reason)) {
                    return found;
                }
            }
            current = Some((alone.to_owned(), String::new()));
        } else if let Some((_, reason)) = &mut current {
            // "(generated from …)" names an alias, not a reason.
            if !t.starts_with("(generated from") && reason.len() < 4 * MAX_FIELD {
                reason.push_str(t);
                reason.push(' ');
            }
        }
    }
    if let Some((a, reason)) = current {
        push(&mut found, failed(&a, &reason));
    }
    found
}

/// The addresses on a line that could be a recipient (not ours).
fn addresses(line: &str) -> Vec<&str> {
    let Some(re) = address_regex() else {
        return Vec::new();
    };
    re.find_iter(line)
        .map(|m| m.as_str().trim_start_matches('.'))
        .filter(|a| !is_verp(a))
        .collect()
}

/// Every line with a permanent reply, with the address on it or above it.
fn generic(text: &str) -> Vec<BounceRecipient> {
    let Some(reply) = reply_regex() else {
        return Vec::new();
    };
    let lines: Vec<&str> = text.lines().collect();
    let mut found = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if !reply.is_match(line) {
            continue;
        }
        let here = addresses(line);
        let address = here.first().copied().or_else(|| {
            lines[i.saturating_sub(LOOK_BACK)..i]
                .iter()
                .rev()
                .find_map(|l| addresses(l).last().copied())
        });
        if let Some(address) = address {
            if !push(&mut found, failed(address, line)) {
                break;
            }
        }
    }
    found
}

/// The header section of the copy a non-standard bounce returns inline: after its
/// copy marker, or from its first `Return-Path:`/`Received:` line.
pub(crate) fn original(text: &str) -> Option<OriginalHeaders> {
    let text = head(text, MAX_COPY);
    let mut offset = 0;
    let mut start = None;
    for line in text.split_inclusive('\n') {
        if is_copy_marker(line) {
            start = Some(offset + line.len());
            break;
        }
        if is_header_start(line) {
            start = Some(offset);
            break;
        }
        offset += line.len();
    }
    let copy = text.as_bytes().get(start?..)?;
    let headers = OriginalHeaders::from_fields(&fields::header_section(copy));
    (!headers.is_empty()).then_some(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_in_text() {
        assert_eq!(status_in("Sorry (#5.1.1)").as_deref(), Some("5.1.1"));
        assert_eq!(
            status_in("host [192.0.2.25]: 550 5.7.1 no").as_deref(),
            Some("5.7.1")
        );
        assert_eq!(status_in("at 10.5.1.1 and 2.5.1.1.9"), None);
        assert_eq!(status_in("version 4.94.2"), None);
        assert_eq!(status_in("ends 4.4.7."), Some("4.4.7".to_owned()));
        assert_eq!(status_in(""), None);
    }

    #[test]
    fn generic_reply_lines() {
        let text = "Delivery to the following recipient failed permanently:\n\n     bob@example.com\n\nTechnical details:\n550 5.1.1 User unknown\n";
        let r = recipients(text);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].address, "bob@example.com");
        assert_eq!(r[0].status.as_deref(), Some("5.1.1"));
        // A number that is not a reply, or a temporary one: nothing.
        assert!(recipients("We sent 550 5.0 messages to bob@example.com\n").is_empty());
        assert!(recipients("bob@example.com: 450 4.2.0 try later\n").is_empty());
    }

    #[test]
    fn our_addresses_are_no_recipients() {
        let verp = format!("b-{}@bounces.example", "a".repeat(58));
        let text = format!("Your message from {verp} failed:\nsaid: 550 rejected\n");
        assert!(recipients(&text).is_empty());
    }
}
