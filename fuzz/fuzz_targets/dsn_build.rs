//! Building a delivery status notification from hostile envelope data: addresses,
//! ORCPT, ENVID and HELO from a client, reply text and host names from a peer, and
//! any original message. The notice must stay a well-formed message whatever they
//! hold: its own header section and its two generated parts are CRLF lines of at
//! most 998 octets with no control character (no field injection), the returned
//! original has CRLF line ends only, the MIME boundary occurs only as the four
//! delimiters, the body type says 8BITMIME exactly when needed, and it goes back to
//! the original sender.
//!
//! There is no DSN *parser* yet (inbound bounces are not read); when one comes, and
//! ARF (RFC 5965) parsing with the feedback-loop work, their targets go beside this
//! one (docs/security.md, "Fuzzing").

#![no_main]

use std::net::{IpAddr, Ipv4Addr};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use way2mail_smtp::dsn::{build, Action, DsnRecipient, DsnRequest};
use way2mail_smtp::reply::EnhancedCode;
use way2mail_smtp::{BodyType, Envelope, Notify, Origin, Recipient, Ret};

#[derive(Debug, Arbitrary)]
struct Input {
    reporting_mta: String,
    original_id: String,
    sender: String,
    recipients: Vec<Rcpt>,
    ret: Option<bool>,
    envid: Option<String>,
    helo: String,
    outcomes: Vec<Outcome>,
    original: Vec<u8>,
    now_ms: u64,
    received_at_ms: u64,
}

#[derive(Debug, Arbitrary)]
struct Rcpt {
    address: String,
    notify: u8,
    orcpt: Option<String>,
}

#[derive(Debug, Arbitrary)]
struct Outcome {
    index: u8,
    action: u8,
    status: (u8, u16, u16),
    remote_mta: Option<String>,
    diagnostic: Option<String>,
    last_attempt_ms: Option<u64>,
    will_retry_until_ms: Option<u64>,
}

/// RFC 5322 §2.1.1: at most 998 octets on a line, CRLF excluded.
const MAX_LINE: usize = 998;

fuzz_target!(|input: Input| {
    let envelope = envelope(&input);
    let recipients = input.outcomes.iter().map(outcome).collect();
    let req = DsnRequest {
        reporting_mta: &input.reporting_mta,
        envelope: &envelope,
        original_id: &input.original_id,
        original: &input.original,
        original_size: input.original.len(),
        recipients,
        now_ms: input.now_ms,
    };
    let Some(dsn) = build(&req) else {
        return;
    };
    assert!(!input.sender.is_empty(), "a notice about a notice");
    assert_eq!(dsn.recipient, input.sender);
    let m = &dsn.message;
    assert_eq!(dsn.body_type == BodyType::EightBitMime, !m.is_ascii());

    let boundary = boundary(m);
    let delimiter = format!("\r\n--{boundary}");
    let at: Vec<usize> = m
        .windows(delimiter.len())
        .enumerate()
        .filter_map(|(i, w)| (w == delimiter.as_bytes()).then_some(i))
        .collect();
    assert_eq!(at.len(), 4, "the boundary occurs {} times", at.len());
    assert!(m.ends_with(format!("{delimiter}--\r\n").as_bytes()));
    // Everything we generate: the header section, the text and the status part.
    check_lines(&m[..at[2] + 2]);
    // The returned original too is sent with CRLF line ends only.
    for (i, &b) in m.iter().enumerate() {
        match b {
            b'\r' => assert_eq!(m.get(i + 1), Some(&b'\n'), "bare CR at {i}"),
            b'\n' => assert!(i > 0 && m[i - 1] == b'\r', "bare LF at {i}"),
            _ => {}
        }
    }
});

fn envelope(input: &Input) -> Envelope {
    let notify = |n: u8| Notify {
        never: n & 1 != 0,
        success: n & 2 != 0,
        failure: n & 4 != 0,
        delay: n & 8 != 0,
    };
    Envelope {
        sender: input.sender.clone(),
        recipients: input
            .recipients
            .iter()
            .map(|r| Recipient::new(r.address.clone(), notify(r.notify), r.orcpt.clone()))
            .collect(),
        body_type: BodyType::SevenBit,
        smtputf8: false,
        ret: input
            .ret
            .map(|full| if full { Ret::Full } else { Ret::Headers }),
        envid: input.envid.clone(),
        origin: Origin {
            client_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            helo: input.helo.clone(),
            listener: "mx".into(),
            tls: None,
            auth: None,
            tenant: None,
        },
        received_at_ms: input.received_at_ms,
        attempts: 1,
        next_attempt_ms: None,
        delay_notified: false,
        tags: Vec::new(),
        metadata: Default::default(),
        scan: None,
    }
}

fn outcome(o: &Outcome) -> DsnRecipient {
    let action = [
        Action::Failed,
        Action::Delayed,
        Action::Delivered,
        Action::Relayed,
    ];
    let (class, subject, detail) = o.status;
    DsnRecipient {
        index: usize::from(o.index),
        action: action[usize::from(o.action) % action.len()],
        status: EnhancedCode::new(
            [2, 4, 5][usize::from(class) % 3],
            subject % 1000,
            detail % 1000,
        ),
        remote_mta: o.remote_mta.clone(),
        diagnostic: o.diagnostic.clone(),
        last_attempt_ms: o.last_attempt_ms,
        will_retry_until_ms: o.will_retry_until_ms,
    }
}

/// The `boundary="…"` of the notice's own Content-Type, on its folded line: no
/// field before it is folded, so no client text can start a line like it.
fn boundary(m: &[u8]) -> String {
    let key = b"\r\n boundary=\"";
    let start = m
        .windows(key.len())
        .position(|w| w == key)
        .expect("a boundary")
        + key.len();
    let len = m[start..]
        .iter()
        .position(|&b| b == b'"')
        .expect("a closing quote");
    String::from_utf8(m[start..start + len].to_vec()).expect("an ASCII boundary")
}

/// CRLF lines only, each at most [`MAX_LINE`] octets, no other control character.
fn check_lines(text: &[u8]) {
    assert!(text.ends_with(b"\r\n"));
    for line in text[..text.len() - 1].split(|&b| b == b'\n') {
        let line = line
            .strip_suffix(b"\r")
            .unwrap_or_else(|| panic!("a line without CR: {:?}", String::from_utf8_lossy(line)));
        let shown = || String::from_utf8_lossy(line).into_owned();
        assert!(line.len() <= MAX_LINE, "a line of {} octets", line.len());
        assert!(
            !line.iter().any(|&b| b < 0x20 || b == 0x7f),
            "control character in {:?}",
            shown()
        );
        assert!(
            !String::from_utf8_lossy(line).chars().any(char::is_control),
            "control character in {:?}",
            shown()
        );
    }
}
