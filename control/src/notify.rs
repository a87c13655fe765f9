//! Incident notifications: the email to an affected tenant's contact (this file) and
//! its hand-over to the local MTA (`[notify] smtp_server`, `handover.rs`), which
//! delivers it onwards like any other mail (STARTTLS to the recipient's MX).
//!
//! ```text
//!   contact_address ─ compose (RFC 5322: Date, From, To, Subject, Message-ID, MIME;
//!   body 7bit, or quoted-printable when not ASCII) ─ send: EHLO, MAIL, RCPT, DATA
//!   (dot-stuffed), QUIT, every reply checked ─ Delivery { ok, reply, queue_id }
//! ```
//!
//! The hop is plain SMTP over loopback: `[notify] smtp_server` must be a loopback
//! address (checked when the configuration is loaded), so the message never crosses
//! a network unencrypted. Every read and write is bounded (one deadline for the
//! whole exchange; replies go through `way2mail_smtp`'s reply reader, which bounds
//! lines and replies). Header values that come from operators (the incident's title)
//! are stripped of control characters and encoded (RFC 2047) or folded, so no input
//! can add a header field.

mod handover;

use std::net::SocketAddr;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use way2mail_wire::protocol::IncidentInfo;

pub use self::handover::{dot_stuffed, queue_id, send, Delivery};

/// Body lines are wrapped at this many characters (at spaces where there are some).
const WRAP: usize = 76;

/// `[notify]`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifySettings {
    /// The local MTA's listener (loopback only).
    pub smtp_server: SocketAddr,
    /// The envelope sender and `From:` of notifications.
    pub from: String,
    /// The name given in EHLO.
    pub helo: String,
    /// The whole exchange for one notification, connect to QUIT.
    pub timeout: Duration,
}

impl Default for NotifySettings {
    /// The MTA's dev mx listener on this host.
    fn default() -> NotifySettings {
        NotifySettings {
            smtp_server: SocketAddr::from(([127, 0, 0, 1], 2525)),
            from: "security@localhost".into(),
            helo: hostname(),
            timeout: Duration::from_secs(10),
        }
    }
}

/// This host's name for EHLO, `localhost` when it has none usable.
pub fn hostname() -> String {
    let name = rustix::system::uname();
    let name = name.nodename().to_string_lossy().into_owned();
    if is_helo_name(&name) {
        name
    } else {
        "localhost".into()
    }
}

/// A name EHLO may carry: letters, digits, '-' and '.', 1 to 253 characters.
pub fn is_helo_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && !name.starts_with(['.', '-'])
}

/// Whether `text` is a plain `local@domain` address (RFC 5321 dot-atom local part,
/// domain of letters, digits and inner hyphens; ASCII only, no display name).
pub fn is_address(text: &str) -> bool {
    let Some((local, domain)) = text.rsplit_once('@') else {
        return false;
    };
    let atext = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b);
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && local
            .split('.')
            .all(|part| !part.is_empty() && part.bytes().all(atext));
    let domain_ok = !domain.is_empty()
        && domain.len() <= 253
        && domain.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b.len() <= 63
                && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
                && b[0] != b'-'
                && b[b.len() - 1] != b'-'
        });
    local_ok && domain_ok
}

/// The address in a tenant's contact: the whole text when it is one, else the
/// part in angle brackets (`Jane Doe <jane@acme.example>`); `None` when neither is.
pub fn contact_address(contact: &str) -> Option<String> {
    let contact = contact.trim();
    if is_address(contact) {
        return Some(contact.to_owned());
    }
    let start = contact.rfind('<')?;
    let end = start + contact[start..].find('>')?;
    let inner = contact[start + 1..end].trim();
    is_address(inner).then(|| inner.to_owned())
}

/// A new `Message-ID` (without brackets) for the notification of `incident` to
/// `tenant`: unique by 64 random bits, under the sender's domain.
pub fn message_id(incident: &str, tenant: &str, from: &str) -> String {
    let mut random = [0u8; 8];
    // A failing system RNG leaves zeros; the time still separates the ids.
    let _ = aws_lc_rs::rand::fill(&mut random);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let domain = from.rsplit_once('@').map_or("localhost", |(_, d)| d);
    let safe = |s: &str| -> String {
        s.chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect::<String>()
            .to_ascii_lowercase()
    };
    format!(
        "{}.{}.{nanos:x}.{}@{domain}",
        safe(incident),
        safe(tenant),
        crate::store::hex(&random)
    )
}

/// What the email says, besides the incident.
#[derive(Debug, Clone)]
pub struct Letter<'a> {
    pub incident: &'a IncidentInfo,
    /// The tenant's id and business name, for the greeting.
    pub tenant: &'a str,
    pub business_name: &'a str,
    /// The recipient (a checked address).
    pub to: &'a str,
    pub from: &'a str,
    pub message_id: &'a str,
    /// Unix milliseconds, for `Date:`.
    pub date_ms: u64,
}

/// The whole message, CRLF line ends, not dot-stuffed.
pub fn compose(letter: &Letter<'_>) -> Vec<u8> {
    let i = letter.incident;
    let rfc3339 = way2mail_smtp::date::rfc3339;
    let mut body = String::new();
    let mut para = |text: &str| {
        body.push_str(text);
        body.push('\n');
    };
    para(&format!(
        "Dear {} ({}),",
        clean_line(letter.business_name),
        letter.tenant
    ));
    para("");
    para(&format!(
        "we are writing to inform you of a security incident on the Way2Mail platform \
         that affects data of your account {}.",
        letter.tenant
    ));
    para("");
    para(&format!("Incident:  {}", i.id));
    para(&format!("Title:     {}", clean_line(&i.title)));
    para(&format!("Detected:  {}", rfc3339(i.detected_at)));
    para(&format!("Opened:    {}", rfc3339(i.opened_at)));
    for (heading, text) in [
        ("Nature of the incident:", &i.nature),
        ("Data affected:", &i.data_affected),
        ("Likely consequences:", &i.consequences),
        ("Measures taken or proposed:", &i.measures),
    ] {
        para("");
        para(heading);
        para(text);
    }
    para("");
    para(&format!(
        "To reach us about this incident, reply to this message or write to {}, \
         quoting {}.",
        letter.from, i.id
    ));
    para("");
    para("-- ");
    para("Way2Mail platform security");

    let lines = wrap(&body);
    let ascii = lines.iter().all(|l| l.is_ascii());
    let subject = format!("Security incident {}: {}", i.id, i.title);
    let mut out = String::new();
    let mut field = |name: &str, value: &str| {
        out.push_str(name);
        out.push_str(": ");
        out.push_str(value);
        out.push_str("\r\n");
    };
    field("Date", &way2mail_smtp::date::rfc5322(letter.date_ms));
    field("From", letter.from);
    field("To", letter.to);
    field("Subject", &header_text("Subject", &subject));
    field("Message-ID", &format!("<{}>", letter.message_id));
    field("X-Way2Mail-Incident", &i.id);
    field("MIME-Version", "1.0");
    field("Content-Type", "text/plain; charset=utf-8");
    field(
        "Content-Transfer-Encoding",
        if ascii { "7bit" } else { "quoted-printable" },
    );
    out.push_str("\r\n");
    for line in &lines {
        if ascii {
            out.push_str(line);
            out.push_str("\r\n");
        } else {
            out.push_str(&quoted_printable(line));
        }
    }
    out.into_bytes()
}

/// One line of operator text: control characters become spaces.
fn clean_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// An unstructured header value: control characters removed; ASCII folded at
/// spaces to keep lines near 78 characters, anything else as RFC 2047 encoded
/// words (base64, at most 75 characters each) on folded lines.
pub fn header_text(name: &str, value: &str) -> String {
    let value = clean_line(value);
    let value = value.split_whitespace().collect::<Vec<_>>().join(" ");
    if value.is_ascii() && !value.contains("=?") {
        let mut out = String::new();
        let mut line_len = name.len() + 2;
        for (n, word) in value.split(' ').enumerate() {
            if n > 0 {
                if line_len + 1 + word.len() > 78 {
                    out.push_str("\r\n");
                    line_len = 0;
                }
                out.push(' ');
                line_len += 1;
            }
            out.push_str(word);
            line_len += word.len();
        }
        return out;
    }
    // 45 bytes of UTF-8 make 60 base64 characters: 72 with the frame.
    let mut words = Vec::new();
    let mut chunk = String::new();
    for c in value.chars() {
        if chunk.len() + c.len_utf8() > 45 {
            words.push(format!("=?utf-8?B?{}?=", B64.encode(chunk.as_bytes())));
            chunk.clear();
        }
        chunk.push(c);
    }
    if !chunk.is_empty() {
        words.push(format!("=?utf-8?B?{}?=", B64.encode(chunk.as_bytes())));
    }
    words.join("\r\n ")
}

/// The body as lines of at most [`WRAP`] characters: broken at spaces, words longer
/// than a line cut.
fn wrap(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        // The signature separator keeps its space (RFC 3676 §4.3).
        let line = if line == "-- " { line } else { line.trim_end() };
        if line.chars().count() <= WRAP {
            out.push(line.to_owned());
            continue;
        }
        let mut current = String::new();
        let mut len = 0;
        for word in line.split(' ') {
            let wlen = word.chars().count();
            if len > 0 && len + 1 + wlen > WRAP {
                out.push(std::mem::take(&mut current));
                len = 0;
            }
            if len > 0 {
                current.push(' ');
                len += 1;
            }
            for c in word.chars() {
                if len == WRAP {
                    out.push(std::mem::take(&mut current));
                    len = 0;
                }
                current.push(c);
                len += 1;
            }
        }
        out.push(current.trim_end().to_owned());
    }
    out
}

/// One line as quoted-printable (RFC 2045 §6.7), soft breaks keeping encoded lines
/// at most 76 characters; returns the encoded line(s) with CRLF.
fn quoted_printable(line: &str) -> String {
    let mut out = String::new();
    let mut len = 0;
    let bytes = line.as_bytes();
    for (n, &b) in bytes.iter().enumerate() {
        let last = n + 1 == bytes.len();
        let literal = (b == b' ' || b == b'\t') && !last || (33..=126).contains(&b) && b != b'=';
        let piece = if literal {
            (b as char).to_string()
        } else {
            format!("={b:02X}")
        };
        if len + piece.len() > 75 {
            out.push_str("=\r\n");
            len = 0;
        }
        out.push_str(&piece);
        len += piece.len();
    }
    out.push_str("\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incident(title: &str, nature: &str) -> IncidentInfo {
        IncidentInfo {
            id: "INC-2026-0007".into(),
            title: title.into(),
            nature: nature.into(),
            data_affected: "Contact addresses of recipients".into(),
            consequences: "Phishing attempts are possible".into(),
            measures: "Credentials rotated\n.a line starting with a dot".into(),
            opened_at: 1_767_225_600,
            opened_by: "operator:alice".into(),
            detected_at: 1_767_222_000,
            updated_at: 1_767_225_600,
            closed_at: None,
            closed_by: None,
            resolution: None,
            tenants: vec!["acme".into()],
            notifications: Vec::new(),
        }
    }

    fn letter_of(i: &IncidentInfo) -> String {
        let bytes = compose(&Letter {
            incident: i,
            tenant: "acme",
            business_name: "Acme\r\nBcc: evil@example.net",
            to: "ops@acme.test",
            from: "security@way2mail.test",
            message_id: "m1@way2mail.test",
            date_ms: 1_767_225_600_000,
        });
        String::from_utf8(bytes).expect("utf-8")
    }

    #[test]
    fn addresses_and_contacts() {
        for good in ["ops@acme.test", "a.b+c@x-y.example", "security@localhost"] {
            assert!(is_address(good), "{good}");
        }
        for bad in [
            "",
            "ops",
            "@acme.test",
            "ops@",
            "a..b@x.test",
            "ops@acme.test\r\nBcc: x@y",
            "o ps@acme.test",
            "ops@-acme.test",
            "ops@acme..test",
            "jöran@acme.test",
            "<ops@acme.test>",
        ] {
            assert!(!is_address(bad), "{bad:?}");
        }
        assert_eq!(
            contact_address(" ops@acme.test ").as_deref(),
            Some("ops@acme.test")
        );
        assert_eq!(
            contact_address("Jane Doe <jane@acme.test>").as_deref(),
            Some("jane@acme.test")
        );
        assert_eq!(contact_address("Jane Doe, phone 555"), None);
        assert_eq!(contact_address("Jane <not an address>"), None);
    }

    #[test]
    fn the_message_has_every_field_and_no_injected_header() {
        let i = incident(
            "Leaked\r\nBcc: victim@example.net key",
            "A database snapshot was exposed",
        );
        let text = letter_of(&i);
        let (header, body) = text.split_once("\r\n\r\n").expect("header end");
        for line in header.split("\r\n") {
            // Every line is a field or a continuation; none is an injected Bcc.
            assert!(!line.to_ascii_lowercase().starts_with("bcc"), "{header}");
            assert!(line.len() <= 78, "{line}");
        }
        assert!(
            header.starts_with("Date: Thu, 1 Jan 2026 00:00:00 +0000\r\n"),
            "{header}"
        );
        assert!(header.contains("\r\nFrom: security@way2mail.test\r\n"));
        assert!(header.contains("\r\nTo: ops@acme.test\r\n"));
        assert!(header.contains(
            "\r\nSubject: Security incident INC-2026-0007: Leaked Bcc: victim@example.net key\r\n"
        ), "{header}");
        assert!(header.contains("\r\nMessage-ID: <m1@way2mail.test>\r\n"));
        assert!(header.contains("\r\nContent-Type: text/plain; charset=utf-8\r\n"));
        assert!(header.contains("\r\nContent-Transfer-Encoding: 7bit"));
        assert!(
            !text.contains('\n') || !text.replace("\r\n", "").contains('\n'),
            "bare LF"
        );
        for part in [
            "Incident:  INC-2026-0007",
            "Nature of the incident:\r\nA database snapshot was exposed\r\n",
            "Data affected:\r\nContact addresses of recipients\r\n",
            "Likely consequences:\r\nPhishing attempts are possible\r\n",
            "Measures taken or proposed:\r\nCredentials rotated\r\n.a line",
            "write to\r\nsecurity@way2mail.test, quoting INC-2026-0007.\r\n",
            "\r\n-- \r\nWay2Mail platform security\r\n",
            "Dear Acme  Bcc: evil@example.net (acme),",
            "Detected:  2025-12-31T23:00:00Z",
        ] {
            assert!(body.contains(part), "{part:?} not in\n{body}");
        }
        // Dot-stuffed on the wire.
        let wire = String::from_utf8(dot_stuffed(text.as_bytes())).expect("utf-8");
        assert!(wire.contains("\r\n..a line starting with a dot\r\n"));
        assert!(wire.ends_with("\r\n.\r\n"));
    }

    #[test]
    fn non_ascii_is_encoded_and_long_lines_wrapped() {
        let long = "word ".repeat(60) + &"x".repeat(200);
        let i = incident("Fuite de données à Zürich — ärgerlich", &long);
        let text = letter_of(&i);
        let (header, body) = text.split_once("\r\n\r\n").expect("header end");
        assert!(header.contains("Subject: =?utf-8?B?"), "{header}");
        assert!(header.contains("\r\nContent-Transfer-Encoding: quoted-printable"));
        let subject: String = header
            .split("\r\n")
            .skip_while(|l| !l.starts_with("Subject:"))
            .take_while(|l| l.starts_with("Subject:") || l.starts_with(' '))
            .flat_map(|l| {
                l.trim_start_matches("Subject:")
                    .split_whitespace()
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .map(|w| {
                let inner = w.trim_start_matches("=?utf-8?B?").trim_end_matches("?=");
                String::from_utf8(B64.decode(inner).expect("base64")).expect("utf-8")
            })
            .collect();
        assert_eq!(
            subject,
            "Security incident INC-2026-0007: Fuite de données à Zürich — ärgerlich"
        );
        for line in body.split("\r\n") {
            assert!(line.len() <= 76 && line.is_ascii(), "{line:?}");
        }
        assert!(body.contains("=C3=BC"), "ü encoded");
        let ascii = incident("t", &long);
        let text = letter_of(&ascii);
        for line in text.split("\r\n") {
            assert!(line.chars().count() <= 78, "{line:?}");
        }
    }
}
