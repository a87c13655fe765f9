//! The header changes rspamd asks for, made before the message is DKIM-signed.

use base64::Engine as _;

/// The most fields taken from `milter.add_headers`, and the longest value.
const MAX_FIELDS: usize = 16;
const MAX_VALUE: usize = 4096;

/// `add header`: `X-Spam: Yes` (unless rspamd adds an `X-Spam` of its own) and
/// rspamd's `milter.add_headers`, prepended.
pub fn add_header(message: Vec<u8>, fields: &[(String, String)]) -> Vec<u8> {
    let mut head = String::new();
    if !fields.iter().any(|(n, _)| n.eq_ignore_ascii_case("X-Spam")) {
        head.push_str("X-Spam: Yes\r\n");
    }
    for (name, value) in fields.iter().take(MAX_FIELDS) {
        if !valid_name(name) || value.len() > MAX_VALUE {
            continue;
        }
        head.push_str(name);
        head.push_str(": ");
        head.push_str(&fold(value));
        head.push_str("\r\n");
    }
    let mut out = Vec::with_capacity(head.len() + message.len());
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(&message);
    out
}

/// `rewrite subject`: the `Subject:` field (every line of it) becomes `subject`,
/// or is added when the message has none.
pub fn rewrite_subject(message: Vec<u8>, subject: &str) -> Vec<u8> {
    let value = if subject.is_ascii() {
        fold(subject)
    } else {
        format!(
            "=?UTF-8?B?{}?=",
            base64::engine::general_purpose::STANDARD.encode(subject)
        )
    };
    let field = format!("Subject: {value}\r\n");
    let end = header_end(&message);
    let mut at = 0;
    let mut found = None;
    while at < end {
        let line_end = message[at..end]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(end, |p| at + p + 1);
        if found.is_none()
            && message[at..].len() >= 8
            && message[at..at + 8].eq_ignore_ascii_case(b"subject:")
        {
            // The field and its continuation lines.
            let mut stop = line_end;
            while stop < end && matches!(message[stop], b' ' | b'\t') {
                stop = message[stop..end]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(end, |p| stop + p + 1);
            }
            found = Some((at, stop));
            break;
        }
        at = line_end;
    }
    let (from, to) = found.unwrap_or((0, 0));
    let mut out = Vec::with_capacity(message.len() + field.len());
    out.extend_from_slice(&message[..from]);
    out.extend_from_slice(field.as_bytes());
    out.extend_from_slice(&message[to..]);
    out
}

/// Where the header section ends (at the start of the empty line).
fn header_end(message: &[u8]) -> usize {
    let mut at = 0;
    while at < message.len() {
        if message[at] == b'\n' || message[at..].starts_with(b"\r\n") {
            return at;
        }
        match message[at..].iter().position(|&b| b == b'\n') {
            Some(p) => at += p + 1,
            None => return message.len(),
        }
    }
    message.len()
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 76
        && name.bytes().all(|b| (33..=126).contains(&b) && b != b':')
}

/// A value on as many lines as it had, each continuation line starting with
/// white space, no bare CR or LF, no control characters.
fn fold(value: &str) -> String {
    value
        .split('\n')
        .map(|l| {
            l.trim_end_matches('\r')
                .chars()
                .map(|c| if c.is_control() && c != '\t' { ' ' } else { c })
                .collect::<String>()
        })
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            if i == 0 {
                l.trim_start().to_string()
            } else {
                format!("\t{}", l.trim_start())
            }
        })
        .collect::<Vec<_>>()
        .join("\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_rewrites_a_folded_subject() {
        let m = b"From: a@b\r\nSubject: one\r\n two\r\nTo: c@d\r\n\r\nSubject: body\r\n".to_vec();
        let out = rewrite_subject(m, "[SPAM] one two");
        assert_eq!(
            out,
            b"From: a@b\r\nSubject: [SPAM] one two\r\nTo: c@d\r\n\r\nSubject: body\r\n".to_vec()
        );
        let out = rewrite_subject(b"From: a@b\r\n\r\nx".to_vec(), "h\u{e9}");
        assert!(out.starts_with(b"Subject: =?UTF-8?B?"));
    }

    #[test]
    fn scan_adds_headers_safely() {
        let out = add_header(
            b"From: a@b\r\n\r\nx".to_vec(),
            &[
                ("X-Spamd-Result".into(), "default: False\n SYM(1)\n".into()),
                ("Bad Name".into(), "x".into()),
            ],
        );
        assert_eq!(
            out,
            b"X-Spam: Yes\r\nX-Spamd-Result: default: False\r\n\tSYM(1)\r\nFrom: a@b\r\n\r\nx"
                .to_vec()
        );
    }
}
