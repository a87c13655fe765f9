//! Notifications to a tenant's contact: plain-text letters (this file: the message
//! every letter is; `incident.rs`: a security incident; `webhook.rs`: a webhook
//! endpoint disabled; `reputation.rs`: a tenant's sending paused, to its contact
//! and to the platform's operators at `[notify] from`) and their hand-over to the local MTA (`[notify] smtp_server`,
//! `handover.rs`), which delivers them onwards like any other mail (STARTTLS to the
//! recipient's MX).
//!
//! ```text
//!   contact_address ─ incident::compose / webhook::compose ─ plain (RFC 5322: Date,
//!   From, To, Subject, Message-ID, MIME; body 7bit, or quoted-printable when not
//!   ASCII) ─ send: EHLO, MAIL, RCPT, DATA (dot-stuffed), QUIT, every reply checked
//!   ─ Delivery { ok, reply, queue_id }
//! ```
//!
//! The hop is plain SMTP over loopback: `[notify] smtp_server` must be a loopback
//! address (checked when the configuration is loaded), so the message never crosses
//! a network unencrypted. Every read and write is bounded (one deadline for the
//! whole exchange; replies go through `way2mail_smtp`'s reply reader, which bounds
//! lines and replies). Header values that come from operators or tenants (an
//! incident's title) are stripped of control characters and encoded (RFC 2047) or
//! folded, so no input can add a header field.

pub mod blocklist;
mod handover;
pub mod incident;
pub mod reputation;
pub mod webhook;

use std::net::SocketAddr;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

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

/// A new `Message-ID` (without brackets) for a letter to `tenant` about `subject`
/// (an incident or webhook id): unique by 64 random bits, under the sender's domain.
pub fn message_id(subject: &str, tenant: &str, from: &str) -> String {
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
        safe(subject),
        safe(tenant),
        crate::store::hex(&random)
    )
}

/// A plain-text letter to a tenant's contact, whatever it says: the header fields
/// and the body, before they become a message ([`plain`]).
#[derive(Debug, Clone)]
pub struct Plain<'a> {
    /// The recipient (a checked address).
    pub to: &'a str,
    pub from: &'a str,
    pub message_id: &'a str,
    /// Unix milliseconds, for `Date:`.
    pub date_ms: u64,
    /// Any text: cleaned and encoded here.
    pub subject: &'a str,
    /// Fields after `Message-ID` naming what the letter is about
    /// (`X-Way2Mail-Incident`); their values are ids the platform made.
    pub about: &'a [(&'a str, &'a str)],
    /// Lines separated by `\n`, wrapped here.
    pub body: &'a str,
}

/// The whole message, CRLF line ends, not dot-stuffed: `Date`, `From`, `To`,
/// `Subject`, `Message-ID`, the `about` fields, MIME; the body wrapped at [`WRAP`]
/// characters, 7bit when it is ASCII, else quoted-printable.
pub fn plain(letter: &Plain<'_>) -> Vec<u8> {
    let lines = wrap(letter.body);
    let ascii = lines.iter().all(|l| l.is_ascii());
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
    field("Subject", &header_text("Subject", letter.subject));
    field("Message-ID", &format!("<{}>", letter.message_id));
    for (name, value) in letter.about {
        field(name, &clean_line(value));
    }
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

/// A letter's body as it is written: one `\n`-ended line at a time.
#[derive(Debug, Default)]
struct Body(String);

impl Body {
    fn line(&mut self, text: &str) {
        self.0.push_str(text);
        self.0.push('\n');
    }

    /// The closing lines every letter ends with: the signature separator (RFC
    /// 3676 §4.3) and who signs.
    fn signed(mut self, by: &str) -> String {
        self.line("");
        self.line("-- ");
        self.line(by);
        self.0
    }
}

/// One line of operator or tenant text: control characters become spaces.
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
}
