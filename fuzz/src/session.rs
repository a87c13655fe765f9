//! Runs a server [`Protocol`] over chunks of client input the way the daemon's
//! session loop does (a message is queued at once, STARTTLS completes before the
//! next chunk, AUTH gets the scripted verdict of [`crate::listener::verdict`]) and
//! panics, which is what the fuzzer reports, when something that must hold for any
//! input does not:
//!
//! - output is only whole reply lines, `ddd text` or `ddd-text`, CRLF-terminated,
//!   at most 512 octets, no control character, one code per multi-line reply, and
//!   every write point ends a reply;
//! - after the session asks for input it keeps at most [`MAX_AUTH_LINE`] octets of
//!   it (checked about every 512 octets fed: the check formats the session);
//! - every input is answered in a bounded number of events (no busy loop);
//! - an accepted message has 1 to `max_recipients` recipients, at most
//!   `max_message_size` octets of content, only CRLF line ends and no NUL in it
//!   (what a next hop reads is what we read), only local recipients unless the client
//!   is trusted or authenticated (never an open relay), and when authenticated it
//!   is `alice`, of tenant `acme`, sending from `acme.example`;
//! - no `Debug` output shows a password that came from decoding an AUTH exchange.

use way2mail_smtp::server::{Event, Protocol, MAX_AUTH_LINE};
use way2mail_smtp::Envelope;

use crate::listener::{self, Setup, LOCAL_DOMAIN, TENANT, TENANT_DOMAIN, USER};

/// RFC 5321 §4.5.3.1.5: a reply line is at most 512 octets including CRLF.
const MAX_REPLY_LINE: usize = 512;

/// What the fake handshake reports.
const TLS_DESCRIPTION: &str = "TLSv1.3 fuzz";

/// Fed octets between two checks of the buffered input.
const CHECK_EVERY: usize = 512;

/// What a session produced, in a form two runs over the same input can compare.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Transcript {
    /// The code of every complete reply, in order.
    pub codes: Vec<u16>,
    /// Each accepted message: its envelope (arrival time zeroed) and its content
    /// after our `Received:` header.
    pub messages: Vec<(Envelope, Vec<u8>)>,
    /// Each message refused at the end of its content, by reason.
    pub refused: Vec<&'static str>,
    /// STARTTLS happened: input after it depends on where the chunks were cut.
    pub starttls: bool,
    pub closed: bool,
}

/// Runs `setup`'s session over `chunks`, checking every invariant on the way.
pub fn run(setup: Setup, chunks: &[&[u8]]) -> Transcript {
    let mut p = Protocol::new(setup.params());
    let mut t = Transcript::default();
    let total: usize = chunks.iter().map(|c| c.len()).sum();
    // One event per reply at most, and a reply needs at least a line end; a few
    // more for the greeting, a verdict and the close.
    let mut budget = 2 * total + 16;
    // What `Debug` shows of a session that has read nothing.
    let fresh = format!("{p:?}");
    p.greeting();
    check_output(p.output());
    t.codes.extend(codes(p.output()));
    p.clear_output();
    let mut tls_pending = false;
    let mut fed_since_check = 0;
    for (i, chunk) in chunks.iter().enumerate() {
        if tls_pending {
            p.tls_established(TLS_DESCRIPTION.to_string());
            tls_pending = false;
        }
        p.feed(chunk);
        fed_since_check += chunk.len();
        loop {
            assert!(budget > 0, "no progress: too many events for the input");
            budget -= 1;
            let event = p.next_event();
            check_output(p.output());
            t.codes.extend(codes(p.output()));
            p.clear_output();
            match event {
                Event::NeedInput => {
                    if fed_since_check >= CHECK_EVERY || i + 1 == chunks.len() {
                        check_buffered(&p);
                        fed_since_check = 0;
                    }
                    break;
                }
                Event::StartTls => {
                    t.starttls = true;
                    tls_pending = true;
                    break;
                }
                Event::Message { id, envelope, body } => {
                    let content = check_message(setup, &envelope, &body, &id.to_string());
                    let mut envelope = envelope;
                    envelope.received_at_ms = 0;
                    t.messages.push((envelope, content.to_vec()));
                    p.message_queued(Ok(()));
                }
                Event::Refused { reason, .. } => t.refused.push(reason.as_str()),
                // Only with `spill_content_over`, which this target does not set.
                Event::Tarpit(_) | Event::Content { .. } => {}
                Event::Authenticate {
                    ref username,
                    ref password,
                    ..
                } => {
                    if decoded_only(password, username, chunks, &fresh) {
                        for debug in [format!("{event:?}"), format!("{p:?}")] {
                            assert!(!debug.contains(password.as_str()), "password in Debug");
                        }
                    }
                    let verdict = listener::verdict(username, password);
                    p.auth_result(verdict);
                }
                Event::Close => {
                    t.closed = true;
                    return t;
                }
            }
        }
    }
    t
}

/// True when `password` can only have come from decoding the SASL exchange: it
/// occurs nowhere in the client's bytes as they are, nor in what `Debug` shows
/// anyway (the user name, which `Debug` shows on purpose, a grant, the TLS
/// description, the session's own texts). A letter in it keeps it from matching
/// the numbers `Debug` prints for byte buffers. Seen in `Debug` output then, it
/// leaked from the exchange.
fn decoded_only(password: &str, username: &str, chunks: &[&[u8]], fresh: &str) -> bool {
    let shown_anyway = [
        username,
        fresh,
        TLS_DESCRIPTION,
        &format!("{:?}", listener::grant()),
    ];
    password.len() >= 4
        && password.bytes().any(|b| b.is_ascii_alphabetic())
        && !shown_anyway.iter().any(|s| s.contains(password))
        && find(&chunks.concat(), password.as_bytes()).is_none()
}

/// Reply lines only, each whole, and the last one ends its reply.
pub fn check_output(out: &[u8]) {
    let mut open: Option<u16> = None;
    let mut rest = out;
    while !rest.is_empty() {
        let end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .unwrap_or_else(|| panic!("reply without CRLF: {:?}", String::from_utf8_lossy(rest)));
        let line = &rest[..end];
        rest = &rest[end + 2..];
        assert!(
            end + 2 <= MAX_REPLY_LINE,
            "reply line of {} octets",
            end + 2
        );
        let shown = || String::from_utf8_lossy(line).into_owned();
        assert!(
            line.len() >= 4 && line[..3].iter().all(u8::is_ascii_digit),
            "not a reply line: {:?}",
            shown()
        );
        assert!(
            (b'2'..=b'5').contains(&line[0]),
            "reply code out of range: {:?}",
            shown()
        );
        assert!(
            line[4..].iter().all(|&b| b >= 0x20 && b != 0x7f),
            "control character in a reply: {:?}",
            shown()
        );
        assert!(
            std::str::from_utf8(line).is_ok(),
            "reply not UTF-8: {:?}",
            shown()
        );
        let code = reply_code(line);
        if let Some(previous) = open {
            assert_eq!(previous, code, "multi-line reply changes its code");
        }
        open = match line[3] {
            b'-' => Some(code),
            b' ' => None,
            _ => panic!("no separator after the code: {:?}", shown()),
        };
    }
    assert!(open.is_none(), "output ends inside a multi-line reply");
}

fn reply_code(line: &[u8]) -> u16 {
    line[..3]
        .iter()
        .fold(0, |n, d| n * 10 + u16::from(d - b'0'))
}

/// The code of each complete reply in `out` (already checked).
pub fn codes(out: &[u8]) -> impl Iterator<Item = u16> + '_ {
    out.split(|&b| b == b'\n')
        .filter(|l| l.len() >= 4 && l[3] == b' ')
        .map(reply_code)
}

/// At most one AUTH line's worth of input waits in the session.
fn check_buffered(p: &Protocol) {
    // `Debug` shows only the length of the input buffer; it is printed after every
    // field a client can fill, so the last `input_len` is the real one.
    let debug = format!("{p:?}");
    let at = debug.rfind("input_len: ").expect("Debug shows input_len") + 11;
    let digits: String = debug[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    let buffered: usize = digits.parse().expect("input_len is a number");
    assert!(
        buffered <= MAX_AUTH_LINE,
        "{buffered} octets of input buffered while waiting for more"
    );
}

/// The message invariants; returns the content after our `Received:` header.
fn check_message<'a>(setup: Setup, envelope: &Envelope, body: &'a [u8], id: &str) -> &'a [u8] {
    let limits = setup.limits();
    let n = envelope.recipients.len();
    assert!(
        (1..=limits.max_recipients).contains(&n),
        "a message with {n} recipients"
    );
    assert!(body.starts_with(b"Received: "), "no Received header first");
    // Our header ends with the date's zone; client content comes after it.
    let end = find(body, b" +0000\r\n").expect("Received header ends with the date") + 8;
    assert!(
        find(&body[..end], id.as_bytes()).is_some(),
        "the Received header names the message id"
    );
    let content = &body[end..];
    assert!(
        content.len() as u64 <= limits.max_message_size,
        "{} octets of content accepted over a {} limit",
        content.len(),
        limits.max_message_size
    );
    check_line_ends(content);
    let origin = &envelope.origin;
    match &origin.auth {
        None => {
            if !setup.trusted() {
                for r in &envelope.recipients {
                    assert!(
                        listener::domain_is(&r.address, LOCAL_DOMAIN)
                            || r.address.eq_ignore_ascii_case("postmaster"),
                        "open relay: <{}> accepted from an untrusted client",
                        r.address
                    );
                }
            }
            assert_eq!(origin.tenant, None, "a tenant without authentication");
        }
        Some(user) => {
            assert_eq!(user, USER, "authenticated as someone never accepted");
            assert_eq!(origin.tenant.as_deref(), Some(TENANT));
            assert!(
                listener::domain_is(&envelope.sender, TENANT_DOMAIN),
                "tenant {TENANT} sent as <{}>",
                envelope.sender
            );
        }
    }
    content
}

/// Every CR starts a CRLF, every LF ends one, and no NUL.
pub fn check_line_ends(content: &[u8]) {
    for (i, &b) in content.iter().enumerate() {
        match b {
            b'\r' => assert_eq!(content.get(i + 1), Some(&b'\n'), "bare CR at {i}"),
            b'\n' => assert!(i > 0 && content[i - 1] == b'\r', "bare LF at {i}"),
            0 => panic!("NUL at {i}"),
            _ => {}
        }
    }
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
