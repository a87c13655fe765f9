//! `POST /v1/messages`: a JSON request checked field by field (every refusal names
//! its field) and built into an RFC 5322 message with mail-builder (MIME parts,
//! encoded words, folded headers, base64 or quoted-printable bodies). Bcc goes into
//! the envelope only. The Message-ID is made from the queue id and this node's
//! host name, so it never names the machine's own host name by accident and a
//! message can be found by either.
//!
//! `POST /v1/messages/raw`: an RFC 5322 message as it is, the envelope in the query
//! (`?from=…&to=…&to=…`) or in `Way2Mail-From`/`Way2Mail-To` headers.

use std::borrow::Cow;
use std::collections::BTreeMap;

use base64::Engine as _;
use mail_builder::headers::address::Address;
use mail_builder::headers::date::Date;
use mail_builder::headers::message_id::MessageId as MimeMessageId;
use mail_builder::headers::text::Text;
use mail_builder::mime::BodyPart;
use mail_builder::MessageBuilder;
use serde::Deserialize;
use way2mail_smtp::path::{valid_mailbox, MAX_PATH};
use way2mail_smtp::MessageId;

use super::problem::Problem;

/// The JSON body of `POST /v1/messages`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendRequest {
    pub from: Mailbox,
    #[serde(default)]
    pub to: Vec<Mailbox>,
    #[serde(default)]
    pub cc: Vec<Mailbox>,
    #[serde(default)]
    pub bcc: Vec<Mailbox>,
    #[serde(default)]
    pub reply_to: Option<Mailbox>,
    pub subject: String,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub html: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub attachments: Vec<Attachment>,
    /// Labels for the message's events (not in the message itself).
    #[serde(default)]
    pub tags: Vec<String>,
    /// Key-value pairs for the message's events (not in the message itself).
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

/// The most `tags` and `metadata` entries a message carries.
const MAX_LABELS: usize = 10;

/// `"a@example.com"` or `{"email": "a@example.com", "name": "A. Person"}`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Mailbox {
    Address(String),
    Named {
        email: String,
        #[serde(default)]
        name: Option<String>,
    },
}

impl Mailbox {
    fn email(&self) -> &str {
        match self {
            Mailbox::Address(a) => a,
            Mailbox::Named { email, .. } => email,
        }
    }

    fn name(&self) -> Option<&str> {
        match self {
            Mailbox::Address(_) => None,
            Mailbox::Named { name, .. } => name.as_deref().filter(|n| !n.is_empty()),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attachment {
    pub filename: String,
    pub content_type: String,
    pub content_base64: String,
}

/// A message ready for the spool: the envelope's addresses and the content.
#[derive(Debug)]
pub struct Built {
    pub sender: String,
    /// Every recipient once (to, cc, bcc; compared without regard to case).
    pub recipients: Vec<String>,
    pub content: Vec<u8>,
    pub labels: Labels,
}

/// What a message carries into its events besides itself.
#[derive(Debug, Default, Clone)]
pub struct Labels {
    pub tags: Vec<String>,
    pub metadata: BTreeMap<String, String>,
}

/// A content scan's refusal as the API answers it: rspamd's `reject` is 422
/// `spam` naming the symbols (in `errors[]`, field `symbols`); a temporary
/// refusal is 503 with `Retry-After`.
pub fn scan_refused(refusal: &crate::scan::Refusal) -> Problem {
    match refusal {
        crate::scan::Refusal::Reject { symbols, .. } => {
            let mut p = Problem::new(
                hyper::StatusCode::UNPROCESSABLE_ENTITY,
                "spam",
                "The message was refused as spam",
                format!("content scan: {}", symbols.join(", ")),
            );
            p.errors = symbols
                .iter()
                .map(|s| super::problem::FieldError {
                    field: "symbols".into(),
                    message: s.clone(),
                })
                .collect();
            p
        }
        crate::scan::Refusal::Tempfail { .. } => {
            Problem::unavailable("the content scanner cannot take the message now")
        }
    }
}

/// A tag or metadata key: 1 to 64 of `A-Z a-z 0-9 _ . : -`.
fn label(field: &str, text: &str) -> Result<(), Problem> {
    let ok = !text.is_empty()
        && text.len() <= 64
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Problem::invalid(field, "1 to 64 of A-Z a-z 0-9 _ . : -"))
    }
}

fn labels(request: &SendRequest) -> Result<Labels, Problem> {
    if request.tags.len() > MAX_LABELS {
        return Err(Problem::invalid("tags", format!("at most {MAX_LABELS}")));
    }
    if request.metadata.len() > MAX_LABELS {
        return Err(Problem::invalid(
            "metadata",
            format!("at most {MAX_LABELS} keys"),
        ));
    }
    for (i, t) in request.tags.iter().enumerate() {
        label(&format!("tags[{i}]"), t)?;
    }
    for (k, v) in &request.metadata {
        label(&format!("metadata.{k}"), k)?;
        if v.chars().count() > 256 || v.chars().any(char::is_control) {
            return Err(Problem::invalid(
                format!("metadata.{k}"),
                "at most 256 characters, no control characters",
            ));
        }
    }
    let mut tags = request.tags.clone();
    tags.dedup();
    Ok(Labels {
        tags,
        metadata: request.metadata.clone(),
    })
}

/// Headers the builder or the MTA writes, or that would change who gets the
/// message: refused in `headers`.
const RESERVED: &[&str] = &[
    "from",
    "to",
    "cc",
    "bcc",
    "reply-to",
    "sender",
    "subject",
    "date",
    "message-id",
    "mime-version",
    "received",
    "return-path",
    "dkim-signature",
    "arc-seal",
    "arc-message-signature",
    "arc-authentication-results",
    "authentication-results",
];

/// Reads a JSON request. Syntax errors are 400; a field of the wrong type, a
/// missing or an unknown field are 422 naming it.
pub fn parse(body: &[u8]) -> Result<SendRequest, Problem> {
    parse_json(body)
}

/// Reads a JSON request body of type `T`, errors as [`parse`] gives them.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Problem> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let parsed: Result<T, _> = serde_path_to_error::deserialize(&mut de);
    let request = parsed.map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            Problem::malformed(format!("not valid JSON: {inner}"))
        } else {
            let field = if path == "." {
                "body".to_string()
            } else {
                path
            };
            Problem::invalid(field, inner.to_string())
        }
    })?;
    de.end()
        .map_err(|e| Problem::malformed(format!("not valid JSON: {e}")))?;
    Ok(request)
}

/// Checks a request and builds its message; `hostname` and `id` make the
/// Message-ID, `now_ms` the Date.
pub fn build(
    request: &SendRequest,
    id: &MessageId,
    hostname: &str,
    now_ms: u64,
) -> Result<Built, Problem> {
    let sender = mailbox("from", &request.from)?;
    let mut recipients: Vec<String> = Vec::new();
    for (field, list) in [
        ("to", &request.to),
        ("cc", &request.cc),
        ("bcc", &request.bcc),
    ] {
        for (i, m) in list.iter().enumerate() {
            let address = mailbox(&format!("{field}[{i}]"), m)?;
            if !recipients.iter().any(|r| r.eq_ignore_ascii_case(&address)) {
                recipients.push(address);
            }
        }
    }
    if recipients.is_empty() {
        return Err(Problem::invalid(
            "to",
            "at least one recipient (to, cc or bcc) is required",
        ));
    }
    if let Some(r) = &request.reply_to {
        mailbox("reply_to", r)?;
    }
    line_text("subject", &request.subject)?;
    if request.text.is_none() && request.html.is_none() {
        return Err(Problem::invalid(
            "text",
            "text or html (or both) is required",
        ));
    }
    for (field, body) in [("text", &request.text), ("html", &request.html)] {
        if body.as_deref().is_some_and(|b| b.contains('\0')) {
            return Err(Problem::invalid(field, "NUL characters are not allowed"));
        }
    }
    for (name, value) in &request.headers {
        header(name, value)?;
    }
    let labels = labels(request)?;
    let mut attachments = Vec::with_capacity(request.attachments.len());
    for (i, a) in request.attachments.iter().enumerate() {
        attachments.push(attachment(i, a)?);
    }

    let mut b = MessageBuilder::new()
        .from(address(&request.from))
        .subject(Text::new(request.subject.as_str()))
        .message_id(MimeMessageId::new(format!("{id}@{hostname}")))
        .date(Date::new(i64::try_from(now_ms / 1000).unwrap_or(0)));
    if !request.to.is_empty() {
        b = b.to(Address::new_list(request.to.iter().map(address).collect()));
    }
    if !request.cc.is_empty() {
        b = b.cc(Address::new_list(request.cc.iter().map(address).collect()));
    }
    if let Some(r) = &request.reply_to {
        b = b.reply_to(address(r));
    }
    for (name, value) in &request.headers {
        b = b.header(name.as_str(), Text::new(value.as_str()));
    }
    // Line ends in text become LF here and CRLF in the message: a bare CR must
    // not reach the spool (SMTP smuggling).
    let line_ends = |t: &str| t.replace("\r\n", "\n").replace('\r', "\n");
    if let Some(t) = &request.text {
        b = b.text_body(line_ends(t));
    }
    if let Some(h) = &request.html {
        b = b.html_body(line_ends(h));
    }
    for (a, bytes) in request.attachments.iter().zip(attachments) {
        b = b.attachment(
            a.content_type.as_str(),
            a.filename.as_str(),
            BodyPart::Binary(Cow::Owned(bytes)),
        );
    }
    let content = b
        .write_to_vec()
        .map_err(|e| Problem::malformed(format!("the message cannot be built: {e}")))?;
    // Whatever the builder wrote, only CRLF line ends go on.
    let content = match way2mail_smtp::line_ends::normalize(&content) {
        std::borrow::Cow::Borrowed(_) => content,
        std::borrow::Cow::Owned(fixed) => fixed,
    };
    Ok(Built {
        sender,
        recipients,
        content,
        labels,
    })
}

fn address<'a>(m: &'a Mailbox) -> Address<'a> {
    Address::new_address(m.name(), m.email())
}

/// A mailbox's address, checked as SMTP checks a path; its display name, if
/// any, must be one line of text.
fn mailbox(field: &str, m: &Mailbox) -> Result<String, Problem> {
    let email = m.email();
    if email.len() > MAX_PATH || !valid_mailbox(email) {
        let field = match m {
            Mailbox::Address(_) => field.to_string(),
            Mailbox::Named { .. } => format!("{field}.email"),
        };
        return Err(Problem::invalid(field, "not a valid email address"));
    }
    if let Some(name) = m.name() {
        line_text(&format!("{field}.name"), name)?;
    }
    Ok(email.to_string())
}

/// One line of text: no control characters but tab, at most 998 octets.
fn line_text(field: &str, text: &str) -> Result<(), Problem> {
    if text.len() > 998 {
        return Err(Problem::invalid(field, "longer than 998 octets"));
    }
    if text.chars().any(|c| c.is_control() && c != '\t') {
        return Err(Problem::invalid(
            field,
            "control characters (such as line breaks) are not allowed",
        ));
    }
    Ok(())
}

fn header(name: &str, value: &str) -> Result<(), Problem> {
    let field = format!("headers.{name}");
    let token = !name.is_empty()
        && name.len() <= 76
        && name.bytes().all(|b| (33..=126).contains(&b) && b != b':');
    if !token {
        return Err(Problem::invalid(field, "not a valid header name"));
    }
    let lower = name.to_ascii_lowercase();
    if RESERVED.contains(&lower.as_str()) || lower.starts_with("content-") {
        return Err(Problem::invalid(
            field,
            "this header is set from the request's own fields or by the server",
        ));
    }
    line_text(&field, value)
}

/// An attachment's checks; its decoded content.
fn attachment(i: usize, a: &Attachment) -> Result<Vec<u8>, Problem> {
    let at = |f: &str| format!("attachments[{i}].{f}");
    if a.filename.is_empty() || a.filename.len() > 255 {
        return Err(Problem::invalid(at("filename"), "1 to 255 octets"));
    }
    line_text(&at("filename"), &a.filename)?;
    let valid_type = a.content_type.split_once('/').is_some_and(|(t, s)| {
        let token = |x: &str| {
            !x.is_empty()
                && x.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
        };
        token(t) && token(s)
    });
    if !valid_type {
        return Err(Problem::invalid(
            at("content_type"),
            "not a MIME type (type/subtype)",
        ));
    }
    let compact: Vec<u8> = a
        .content_base64
        .bytes()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact)
        .map_err(|_| Problem::invalid(at("content_base64"), "not valid base64"))
}

/// The envelope of `POST /v1/messages/raw`: `from` and `to` from the query,
/// else from the `Way2Mail-From` and `Way2Mail-To` (comma-separated) headers.
pub fn raw_envelope(
    query: Option<&str>,
    header_from: Option<&str>,
    header_to: &[&str],
) -> Result<(String, Vec<String>), Problem> {
    let mut from = None;
    let mut to: Vec<String> = Vec::new();
    for (k, v) in form_pairs(query.unwrap_or("")) {
        match k.as_str() {
            "from" => from = Some(v),
            "to" => to.extend(v.split(',').map(|a| a.trim().to_string())),
            _ => return Err(Problem::invalid(k, "unknown query parameter")),
        }
    }
    if from.is_none() {
        from = header_from.map(|f| f.trim().to_string());
    }
    if to.is_empty() {
        for h in header_to {
            to.extend(h.split(',').map(|a| a.trim().to_string()));
        }
    }
    let Some(from) = from else {
        return Err(Problem::invalid(
            "from",
            "the envelope sender is required (?from= or Way2Mail-From)",
        ));
    };
    if from.len() > MAX_PATH || !valid_mailbox(&from) {
        return Err(Problem::invalid("from", "not a valid email address"));
    }
    to.retain(|a| !a.is_empty());
    if to.is_empty() {
        return Err(Problem::invalid(
            "to",
            "at least one recipient is required (?to= or Way2Mail-To)",
        ));
    }
    let mut recipients: Vec<String> = Vec::new();
    for (i, a) in to.into_iter().enumerate() {
        if a.len() > MAX_PATH || !valid_mailbox(&a) {
            return Err(Problem::invalid(
                format!("to[{i}]"),
                "not a valid email address",
            ));
        }
        if !recipients.iter().any(|r| r.eq_ignore_ascii_case(&a)) {
            recipients.push(a);
        }
    }
    Ok((from, recipients))
}

/// `application/x-www-form-urlencoded` pairs, percent-decoded (`+` is a space).
pub fn form_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The content of a raw message as SMTP would take it: CRLF line ends only, no
/// NUL, lines of at most 998 octets, a header section that parses.
pub fn check_raw(content: &[u8]) -> Result<Vec<u8>, Problem> {
    if content.contains(&0) {
        return Err(Problem::invalid("body", "NUL octets are not allowed"));
    }
    let content = way2mail_smtp::line_ends::normalize(content).into_owned();
    let too_long = |line: &[u8]| line.strip_suffix(b"\r").unwrap_or(line).len() > 998;
    if content.split(|&b| b == b'\n').any(too_long) {
        return Err(Problem::invalid("body", "a line is longer than 998 octets"));
    }
    let header_end = content
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 2)
        .or_else(|| content.ends_with(b"\r\n").then_some(content.len()));
    let Some(end) = header_end else {
        return Err(Problem::invalid("body", "no header section"));
    };
    let header = &content[..end];
    let first_is_field = header
        .iter()
        .position(|&b| b == b':')
        .is_some_and(|c| c > 0 && !header[..c].iter().any(|b| b.is_ascii_whitespace()));
    if !first_is_field {
        return Err(Problem::invalid(
            "body",
            "the message does not start with a header field",
        ));
    }
    let has = |name: &[u8]| {
        header.split(|&b| b == b'\n').any(|line| {
            line.len() > name.len()
                && line[..name.len()].eq_ignore_ascii_case(name)
                && line[name.len()] == b':'
        })
    };
    if !has(b"from") {
        return Err(Problem::invalid(
            "body",
            "the message has no From: header field",
        ));
    }
    Ok(content)
}

/// How many `Received:` fields the header section holds (loop detection).
pub fn received_count(content: &[u8]) -> usize {
    let end = content
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(content.len());
    content[..end]
        .split(|&b| b == b'\n')
        .filter(|line| line.len() > 9 && line[..9].eq_ignore_ascii_case(b"received:"))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(json: &str) -> SendRequest {
        serde_json::from_str(json).expect("request parses")
    }

    fn id() -> MessageId {
        MessageId::generate()
    }

    #[test]
    fn builds_a_well_formed_message() {
        let r = request(
            r#"{"from":{"email":"app@acme.example","name":"Acme Café"},
                "to":["b@example.net"],"cc":["c@example.net"],"bcc":["B@example.net","d@example.net"],
                "reply_to":"help@acme.example","subject":"Ünïcode subject, quite long so that it has to be folded over more than one line of the header section",
                "text":"hello\nworld","html":"<p>hello</p>",
                "headers":{"X-Campaign":"spring"},
                "attachments":[{"filename":"a.txt","content_type":"text/plain","content_base64":"aGVsbG8="}]}"#,
        );
        let id = id();
        let built = build(&r, &id, "mta.example", 1_700_000_000_000).expect("builds");
        assert_eq!(built.sender, "app@acme.example");
        assert_eq!(
            built.recipients,
            ["b@example.net", "c@example.net", "d@example.net"]
        );
        let text = String::from_utf8(built.content.clone()).expect("utf-8");
        assert!(!text.to_ascii_lowercase().contains("\nbcc:"), "{text}");
        assert!(
            text.contains(&format!("Message-ID: <{id}@mta.example>")),
            "{text}"
        );
        assert!(text.lines().all(|l| l.len() <= 998));
        let parsed = mail_parser::MessageParser::default()
            .parse(&built.content)
            .expect("parses back");
        assert_eq!(parsed.subject(), Some("Ünïcode subject, quite long so that it has to be folded over more than one line of the header section"));
        assert_eq!(
            parsed.from().and_then(|f| f.first()).and_then(|a| a.name()),
            Some("Acme Café")
        );
        // Text line ends travel as CRLF.
        assert_eq!(parsed.body_text(0).as_deref(), Some("hello\r\nworld"));
        assert_eq!(parsed.attachment_count(), 1);
        assert_eq!(
            parsed.header_raw("X-Campaign").map(str::trim),
            Some("spring")
        );
        // Every line ends in CRLF.
        assert!(!built
            .content
            .windows(2)
            .any(|w| w[1] == b'\n' && w[0] != b'\r'));
    }

    #[test]
    fn json_errors_name_their_field() {
        let field = |json: &str| {
            let e = parse(json.as_bytes()).expect_err(json);
            (e.status.as_u16(), e.errors.first().map(|f| f.field.clone()))
        };
        assert_eq!(field(r#"{"from": "#), (400, None));
        assert_eq!(
            field(r#"{"from":"a@b.example","subject":"s"} trailing"#),
            (400, None)
        );
        assert_eq!(field(r#"[1]"#).0, 422);
        let unknown = field(r#"{"from":"a@b.example","subject":"s","colour":"red"}"#);
        assert_eq!(unknown, (422, Some("colour".into())));
        assert_eq!(
            field(r#"{"from":"a@b.example","subject":7}"#),
            (422, Some("subject".into()))
        );
        assert_eq!(
            field(r#"{"from":"a@b.example","subject":"s","attachments":[{"filename":"f"}]}"#),
            (422, Some("attachments[0]".into()))
        );
        assert!(parse(br#"{"from":"a@b.example","subject":"s"}"#).is_ok());
    }

    #[test]
    fn refusals_name_their_field() {
        let cases = [
            (
                r#"{"from":"nope","to":["b@example.net"],"subject":"s","text":"t"}"#,
                "from",
            ),
            (
                r#"{"from":"a@acme.example","to":["b@example.net","x"],"subject":"s","text":"t"}"#,
                "to[1]",
            ),
            (
                r#"{"from":"a@acme.example","subject":"s","text":"t"}"#,
                "to",
            ),
            (
                r#"{"from":"a@acme.example","to":["b@example.net"],"subject":"s\r\nBcc: x@evil.example","text":"t"}"#,
                "subject",
            ),
            (
                r#"{"from":"a@acme.example","to":["b@example.net"],"subject":"s"}"#,
                "text",
            ),
            (
                r#"{"from":"a@acme.example","to":["b@example.net"],"subject":"s","text":"t","headers":{"Bcc":"x@y.example"}}"#,
                "headers.Bcc",
            ),
            (
                r#"{"from":"a@acme.example","to":["b@example.net"],"subject":"s","text":"t","headers":{"X-A":"1\r\nBcc: x@y.example"}}"#,
                "headers.X-A",
            ),
            (
                r#"{"from":{"email":"a@acme.example","name":"A\nB"},"to":["b@example.net"],"subject":"s","text":"t"}"#,
                "from.name",
            ),
            (
                r#"{"from":"a@acme.example","to":["b@example.net"],"subject":"s","text":"t","attachments":[{"filename":"f","content_type":"text/plain","content_base64":"!!"}]}"#,
                "attachments[0].content_base64",
            ),
            (
                r#"{"from":"a@acme.example","to":["b@example.net"],"subject":"s","text":"t","attachments":[{"filename":"f","content_type":"plain","content_base64":""}]}"#,
                "attachments[0].content_type",
            ),
        ];
        for (json, field) in cases {
            let e = build(&request(json), &id(), "h", 0).expect_err(json);
            assert_eq!(e.errors[0].field, field, "{json}");
            assert_eq!(e.status.as_u16(), 422);
        }
    }

    #[test]
    fn raw_envelope_from_query_or_headers() {
        let (from, to) = raw_envelope(
            Some("from=a%40acme.example&to=b@example.net,c@example.net&to=B@example.net"),
            None,
            &[],
        )
        .expect("query");
        assert_eq!(from, "a@acme.example");
        assert_eq!(to, ["b@example.net", "c@example.net"]);
        let (from, to) = raw_envelope(
            None,
            Some("a@acme.example"),
            &["b@example.net, d@example.net"],
        )
        .expect("headers");
        assert_eq!((from.as_str(), to.len()), ("a@acme.example", 2));
        assert_eq!(
            raw_envelope(Some("to=b@example.net"), None, &[])
                .expect_err("no from")
                .errors[0]
                .field,
            "from"
        );
        assert_eq!(
            raw_envelope(Some("from=a@acme.example&bcc=x"), None, &[])
                .expect_err("unknown")
                .errors[0]
                .field,
            "bcc"
        );
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("%zz+%41"), "%zz A");
    }

    #[test]
    fn raw_content_checks() {
        let ok =
            check_raw(b"From: a@acme.example\nSubject: s\n\nbody\n").expect("bare LF becomes CRLF");
        assert_eq!(ok, b"From: a@acme.example\r\nSubject: s\r\n\r\nbody\r\n");
        assert!(check_raw(b"From: a@acme.example\r\n\r\nx\0y\r\n").is_err());
        assert!(check_raw(b"just text without headers").is_err());
        assert!(check_raw(b"Subject: no from\r\n\r\nx\r\n").is_err());
        let long = format!("From: a@acme.example\r\n\r\n{}\r\n", "x".repeat(999));
        assert!(check_raw(long.as_bytes()).is_err());
        assert_eq!(
            received_count(b"Received: a\r\nreceived: b\r\nFrom: x\r\n\r\nReceived: body\r\n"),
            2
        );
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            ".{0,40}",
            "[a-zA-Z ]{0,200}",
            "[a-z]{990,1100}",
            "(\\PC{0,30}\n){0,5}",
            "[a-z\r\n. ]{0,60}",
        ]
    }

    #[test]
    fn long_lines_and_8bit_text_are_encoded() {
        for body in [
            "x".repeat(5000),
            "é".repeat(3000),
            format!("{}\n.\n", "a ".repeat(900)),
        ] {
            let request = SendRequest {
                from: Mailbox::Address("a@acme.example".into()),
                to: vec![Mailbox::Address("b@example.net".into())],
                cc: Vec::new(),
                bcc: Vec::new(),
                reply_to: None,
                subject: "s".into(),
                text: Some(body.clone()),
                html: Some(body.clone()),
                headers: BTreeMap::new(),
                attachments: Vec::new(),
                tags: Vec::new(),
                metadata: BTreeMap::new(),
            };
            let built = build(&request, &MessageId::generate(), "h", 0).expect("builds");
            let longest = built.content.split(|&b| b == b'\n').map(<[u8]>::len).max();
            assert!(longest.unwrap_or(0) <= 999, "{longest:?}");
            let parsed = mail_parser::MessageParser::default()
                .parse(&built.content)
                .expect("parses");
            let text = parsed.body_text(0).expect("text");
            assert_eq!(text.replace("\r\n", "\n"), body);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Whatever the request, building it never panics; what it builds has
        /// CRLF line ends only, no line over 998 octets, and parses back.
        #[test]
        fn built_messages_are_always_well_formed(
            subject in text(),
            name in text(),
            body in text(),
            html in proptest::option::of(text()),
            header in text(),
            filename in "[a-zA-Z0-9 ._-]{1,40}",
            attachment in proptest::collection::vec(any::<u8>(), 0..3000),
        ) {
            let request = SendRequest {
                from: Mailbox::Named { email: "a@acme.example".into(), name: Some(name) },
                to: vec![Mailbox::Address("b@example.net".into())],
                cc: Vec::new(),
                bcc: Vec::new(),
                reply_to: None,
                subject: subject.clone(),
                text: Some(body),
                html,
                headers: [("X-Test".to_string(), header)].into_iter().collect(),
                attachments: vec![Attachment {
                    filename,
                    content_type: "application/octet-stream".into(),
                    content_base64: base64::engine::general_purpose::STANDARD.encode(&attachment),
                }],
                tags: Vec::new(),
                metadata: BTreeMap::new(),
            };
            let Ok(built) = build(&request, &MessageId::generate(), "mta.example", 0) else {
                return Ok(());
            };
            let content = &built.content;
            for (i, &b) in content.iter().enumerate() {
                if b == b'\n' {
                    prop_assert!(i > 0 && content[i - 1] == b'\r', "bare LF");
                }
                if b == b'\r' {
                    prop_assert_eq!(content.get(i + 1), Some(&b'\n'), "bare CR");
                }
            }
            for line in content.split(|&b| b == b'\n') {
                prop_assert!(line.len() <= 999, "a line of {} octets", line.len());
            }
            let parsed = mail_parser::MessageParser::default().parse(content);
            prop_assert!(parsed.is_some(), "does not parse back");
            let parsed = parsed.unwrap_or_default();
            // Folding may change runs of white space, nothing else.
            let words = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
            prop_assert_eq!(words(parsed.subject().unwrap_or("")), words(&subject));
        }
    }
}
