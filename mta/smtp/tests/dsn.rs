//! Delivery status notifications built by `outbound::dsn` and parsed back with
//! mail-parser, field by field: the report structure, the machine-readable
//! delivery-status fields, what is returned of the original, when no notice is
//! due at all, and that every line of a notice ends in CRLF whatever the original.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

use mail_parser::{DateTime, Message, MessageParser, MessagePart, MimeHeaders};
use proptest::prelude::*;
use way2mail_smtp::dsn::{build, Action, Dsn, DsnRecipient, DsnRequest};
use way2mail_smtp::{BodyType, Envelope, Notify, Origin, Ret};

const HOST: &str = "mx.example.org";
const RECEIVED_MS: u64 = 1_700_000_000_000;
const NOW_MS: u64 = RECEIVED_MS + 3_600_000;
const BODY_LINE: &str = "The body line that only comes back with RET=FULL.";

fn original() -> Vec<u8> {
    format!(
        "From: Alice <alice@example.org>\r\nTo: bob@example.net\r\n\
         Subject: Quarterly numbers\r\nMessage-ID: <q1@example.org>\r\n\r\n{BODY_LINE}\r\n"
    )
    .into_bytes()
}

const UNSPECIFIED: Notify = Notify {
    never: false,
    success: false,
    failure: false,
    delay: false,
};
const NEVER: Notify = Notify {
    never: true,
    ..UNSPECIFIED
};
const SUCCESS: Notify = Notify {
    success: true,
    ..UNSPECIFIED
};
const FAILURE: Notify = Notify {
    failure: true,
    ..UNSPECIFIED
};

fn rcpt(address: &str, notify: Notify, orcpt: Option<&str>) -> serde_json::Value {
    serde_json::json!({ "address": address, "notify": notify, "orcpt": orcpt })
}

/// An envelope as the spool stores it (built through serde so that the delivery
/// state fields keep their defaults).
fn envelope(sender: &str, recipients: Vec<serde_json::Value>, ret: Option<Ret>) -> Envelope {
    let origin = Origin {
        client_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        helo: "client.example.org".into(),
        listener: "submission".into(),
        tls: None,
        auth: None,
        tenant: None,
    };
    serde_json::from_value(serde_json::json!({
        "sender": sender,
        "recipients": recipients,
        "body_type": BodyType::SevenBit,
        "smtputf8": false,
        "ret": ret,
        "envid": null,
        "origin": origin,
        "received_at_ms": RECEIVED_MS,
    }))
    .expect("a valid envelope")
}

fn outcome(index: usize, action: Action, status: &str) -> DsnRecipient {
    DsnRecipient {
        index,
        action,
        status: status.parse().expect("an enhanced status code"),
        remote_mta: None,
        diagnostic: None,
        last_attempt_ms: None,
        will_retry_until_ms: None,
    }
}

fn failed_550(index: usize) -> DsnRecipient {
    DsnRecipient {
        remote_mta: Some("dns; mx1.example.net".into()),
        diagnostic: Some("smtp; 550 5.1.1 No such user".into()),
        last_attempt_ms: Some(NOW_MS - 1000),
        ..outcome(index, Action::Failed, "5.1.1")
    }
}

fn run(env: &Envelope, original: &[u8], recipients: Vec<DsnRecipient>) -> Option<Dsn> {
    build(&DsnRequest {
        reporting_mta: HOST,
        envelope: env,
        original_id: "Q0123ABC",
        original,
        original_size: original.len(),
        recipients,
        now_ms: NOW_MS,
    })
}

fn parse(dsn: &Dsn) -> Message<'_> {
    MessageParser::default()
        .parse(&dsn.message)
        .expect("the notice parses")
}

/// The three parts of the report, checking the multipart/report structure.
fn report_parts<'a>(msg: &'a Message<'a>) -> [&'a MessagePart<'a>; 3] {
    let ct = msg.content_type().expect("Content-Type");
    assert_eq!((ct.ctype(), ct.subtype()), ("multipart", Some("report")));
    assert_eq!(ct.attribute("report-type"), Some("delivery-status"));
    let ids = msg.parts[0].sub_parts().expect("multipart");
    assert_eq!(ids.len(), 3, "three parts");
    let part = |i: usize| msg.part(ids[i]).expect("part");
    [part(0), part(1), part(2)]
}

fn media_type(part: &MessagePart<'_>) -> String {
    let ct = part.content_type().expect("part Content-Type");
    format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or(""))
}

/// The delivery-status part as field groups: the per-message group first, then one
/// per recipient. Each group is parsed by mail-parser as a header block.
fn status_groups(part: &MessagePart<'_>) -> Vec<HashMap<String, String>> {
    let body = std::str::from_utf8(part.contents()).expect("UTF-8 status");
    body.split("\r\n\r\n")
        .filter(|g| !g.trim().is_empty())
        .map(|group| {
            let block = format!("{group}\r\n\r\n");
            let parsed = MessageParser::default()
                .parse_headers(block.as_bytes())
                .expect("fields parse");
            parsed
                .headers()
                .iter()
                .map(|h| {
                    let value = h.value().as_text().expect("text field").to_string();
                    (h.name().to_ascii_lowercase(), value)
                })
                .collect()
        })
        .collect()
}

fn date_ms(value: &str) -> u64 {
    let date = DateTime::parse_rfc822(value).expect("RFC 5322 date");
    date.to_timestamp() as u64 * 1000
}

#[test]
fn failure_report_field_by_field() {
    let mut env = envelope(
        "alice@example.org",
        vec![
            rcpt(
                "bob@example.net",
                UNSPECIFIED,
                Some("rfc822;Bob+2Bx@example.net"),
            ),
            rcpt("carol@example.net", FAILURE, None),
        ],
        None,
    );
    env.envid = Some("ENV+2B1".into());
    let mut second = outcome(1, Action::Failed, "5.2.2");
    second.diagnostic = Some("smtp; 552 5.2.2 Mailbox full".into());
    let dsn = run(&env, &original(), vec![failed_550(0), second]).expect("a notice");
    assert_eq!(dsn.recipient, "alice@example.org");
    assert_eq!(dsn.body_type, BodyType::SevenBit);
    assert!(!dsn.smtputf8);

    let msg = parse(&dsn);
    let from = msg.from().and_then(|a| a.first()).expect("From");
    assert_eq!(from.address(), Some("MAILER-DAEMON@mx.example.org"));
    assert_eq!(from.name(), Some("Mail Delivery System"));
    let to = msg.to().and_then(|a| a.first()).expect("To");
    assert_eq!(to.address(), Some("alice@example.org"));
    assert_eq!(msg.subject(), Some("Undelivered Mail Returned to Sender"));
    assert_eq!(
        msg.date().expect("Date").to_timestamp() as u64 * 1000,
        NOW_MS
    );
    let id = msg.message_id().expect("Message-ID");
    assert!(
        id.ends_with("@mx.example.org") && id.contains("Q0123ABC"),
        "{id}"
    );
    let auto = msg.header("Auto-Submitted").and_then(|v| v.as_text());
    assert_eq!(auto, Some("auto-replied"));

    let [text, status, returned] = report_parts(&msg);
    assert_eq!(media_type(text), "text/plain");
    let text = text.text_contents().expect("text");
    for needle in [
        "<bob@example.net>",
        "550 5.1.1 No such user",
        "<carol@example.net>",
        "Q0123ABC",
    ] {
        assert!(text.contains(needle), "text lacks {needle}: {text}");
    }

    assert_eq!(media_type(status), "message/delivery-status");
    let groups = status_groups(status);
    assert_eq!(groups.len(), 3, "{groups:?}");
    let message = &groups[0];
    assert_eq!(message["reporting-mta"], "dns; mx.example.org");
    assert_eq!(message["original-envelope-id"], "ENV+1");
    assert_eq!(date_ms(&message["arrival-date"]), RECEIVED_MS);

    let bob = &groups[1];
    assert_eq!(bob["original-recipient"], "rfc822;Bob+x@example.net");
    assert_eq!(bob["final-recipient"], "rfc822;bob@example.net");
    assert_eq!(bob["action"], "failed");
    assert_eq!(bob["status"], "5.1.1");
    assert_eq!(bob["remote-mta"], "dns; mx1.example.net");
    assert_eq!(bob["diagnostic-code"], "smtp; 550 5.1.1 No such user");
    assert_eq!(date_ms(&bob["last-attempt-date"]), NOW_MS - 1000);
    assert!(!bob.contains_key("will-retry-until"));

    let carol = &groups[2];
    assert!(!carol.contains_key("original-recipient"));
    assert_eq!(carol["final-recipient"], "rfc822;carol@example.net");
    assert_eq!(carol["status"], "5.2.2");
    assert_eq!(carol["diagnostic-code"], "smtp; 552 5.2.2 Mailbox full");
    assert!(!carol.contains_key("remote-mta") && !carol.contains_key("last-attempt-date"));

    // No RET: headers only.
    assert_eq!(media_type(returned), "text/rfc822-headers");
    let headers = returned.text_contents().expect("headers");
    assert!(headers.contains("Subject: Quarterly numbers"));
    assert!(!dsn_contains(&dsn, BODY_LINE));
}

fn dsn_contains(dsn: &Dsn, needle: &str) -> bool {
    dsn.message
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[test]
fn ret_full_returns_the_whole_message() {
    let env = envelope(
        "alice@example.org",
        vec![rcpt("bob@example.net", UNSPECIFIED, None)],
        Some(Ret::Full),
    );
    let dsn = run(&env, &original(), vec![failed_550(0)]).expect("a notice");
    let msg = parse(&dsn);
    let [_, _, returned] = report_parts(&msg);
    assert_eq!(media_type(returned), "message/rfc822");
    let inner = returned.message().expect("nested message");
    assert_eq!(inner.subject(), Some("Quarterly numbers"));
    assert_eq!(inner.message_id(), Some("q1@example.org"));
    let body = inner.body_text(0).expect("body");
    assert!(body.contains(BODY_LINE), "{body}");
}

#[test]
fn ret_hdrs_returns_headers_only() {
    let env = envelope(
        "alice@example.org",
        vec![rcpt("bob@example.net", UNSPECIFIED, None)],
        Some(Ret::Headers),
    );
    let dsn = run(&env, &original(), vec![failed_550(0)]).expect("a notice");
    let msg = parse(&dsn);
    let [_, _, returned] = report_parts(&msg);
    assert_eq!(media_type(returned), "text/rfc822-headers");
    let headers = returned.text_contents().expect("headers");
    assert!(headers.contains("Message-ID: <q1@example.org>"));
    assert!(!headers.contains(BODY_LINE));
    assert!(!dsn_contains(&dsn, BODY_LINE));
}

#[test]
fn no_notice_for_null_sender_or_never() {
    let bounce = envelope(
        "",
        vec![rcpt("bob@example.net", FAILURE, None)],
        Some(Ret::Full),
    );
    assert_eq!(run(&bounce, &original(), vec![failed_550(0)]), None);

    let never = envelope(
        "alice@example.org",
        vec![rcpt("bob@example.net", NEVER, None)],
        None,
    );
    assert_eq!(run(&never, &original(), vec![failed_550(0)]), None);
    let delayed = outcome(0, Action::Delayed, "4.4.1");
    assert_eq!(run(&never, &original(), vec![delayed]), None);

    // Nothing to report at all, or only recipients that do not exist.
    let env = envelope(
        "alice@example.org",
        vec![rcpt("bob@example.net", FAILURE, None)],
        None,
    );
    assert_eq!(run(&env, &original(), vec![]), None);
    assert_eq!(run(&env, &original(), vec![failed_550(7)]), None);
}

#[test]
fn success_only_when_asked_for() {
    let delivered = || DsnRecipient {
        remote_mta: Some("mx1.example.net".into()),
        diagnostic: Some("250 2.0.0 Ok: queued as X".into()),
        ..outcome(0, Action::Delivered, "2.0.0")
    };
    for notify in [UNSPECIFIED, FAILURE, NEVER] {
        let env = envelope(
            "alice@example.org",
            vec![rcpt("bob@example.net", notify, None)],
            None,
        );
        assert_eq!(
            run(&env, &original(), vec![delivered()]),
            None,
            "{notify:?}"
        );
    }
    let env = envelope(
        "alice@example.org",
        vec![rcpt("bob@example.net", SUCCESS, None)],
        Some(Ret::Full),
    );
    let dsn = run(&env, &original(), vec![delivered()]).expect("a success notice");
    let msg = parse(&dsn);
    assert_eq!(msg.subject(), Some("Successful Mail Delivery Report"));
    let [_, status, returned] = report_parts(&msg);
    let groups = status_groups(status);
    assert_eq!(groups[1]["action"], "delivered");
    assert_eq!(groups[1]["status"], "2.0.0");
    // A bare host and a bare reply get their types.
    assert_eq!(groups[1]["remote-mta"], "dns; mx1.example.net");
    assert_eq!(
        groups[1]["diagnostic-code"],
        "smtp; 250 2.0.0 Ok: queued as X"
    );
    // RET=FULL is for failures; a success notice carries headers only.
    assert_eq!(media_type(returned), "text/rfc822-headers");

    let relayed = outcome(0, Action::Relayed, "2.0.0");
    let dsn = run(&env, &original(), vec![relayed]).expect("a relayed notice");
    let groups = status_groups(report_parts(&parse(&dsn))[1]);
    assert_eq!(groups[1]["action"], "relayed");
}

#[test]
fn mixed_recipients_report_only_those_asking() {
    let env = envelope(
        "alice@example.org",
        vec![
            rcpt("a@example.net", UNSPECIFIED, None),
            rcpt("b@example.net", UNSPECIFIED, None),
            rcpt("c@example.net", NEVER, None),
            rcpt("d@example.net", SUCCESS, None),
        ],
        None,
    );
    let outcomes = vec![
        failed_550(0),
        outcome(1, Action::Delivered, "2.0.0"),
        failed_550(2),
        outcome(3, Action::Delivered, "2.0.0"),
    ];
    let dsn = run(&env, &original(), outcomes).expect("a notice");
    let msg = parse(&dsn);
    // The worst outcome reported picks the subject.
    assert_eq!(msg.subject(), Some("Undelivered Mail Returned to Sender"));
    let [text, status, _] = report_parts(&msg);
    let groups = status_groups(status);
    let reported: Vec<(&str, &str)> = groups[1..]
        .iter()
        .map(|g| (g["final-recipient"].as_str(), g["action"].as_str()))
        .collect();
    assert_eq!(
        reported,
        [
            ("rfc822;a@example.net", "failed"),
            ("rfc822;d@example.net", "delivered")
        ]
    );
    let text = text.text_contents().expect("text");
    assert!(!text.contains("b@example.net") && !text.contains("c@example.net"));
}

#[test]
fn delay_notice() {
    let env = envelope(
        "alice@example.org",
        vec![rcpt("bob@example.net", UNSPECIFIED, None)],
        Some(Ret::Full),
    );
    let until = RECEIVED_MS + 5 * 86_400_000;
    let delayed = DsnRecipient {
        diagnostic: Some("smtp; 451 4.7.1 Try again later".into()),
        last_attempt_ms: Some(NOW_MS),
        will_retry_until_ms: Some(until),
        ..outcome(0, Action::Delayed, "4.7.1")
    };
    let dsn = run(&env, &original(), vec![delayed]).expect("a delay notice");
    let msg = parse(&dsn);
    assert_eq!(msg.subject(), Some("Delayed Mail (still being retried)"));
    let [_, status, returned] = report_parts(&msg);
    let bob = &status_groups(status)[1];
    assert_eq!(bob["action"], "delayed");
    assert_eq!(bob["status"], "4.7.1");
    assert_eq!(date_ms(&bob["will-retry-until"]), until);
    assert_eq!(date_ms(&bob["last-attempt-date"]), NOW_MS);
    assert_eq!(media_type(returned), "text/rfc822-headers");
}

/// A bounce and a delay notice due in the same attempt travel as one report: a
/// `failed` and a `delayed` group, the failure's subject, a text that says the
/// delayed recipients are still tried.
#[test]
fn one_notice_reports_a_failure_and_a_delay() {
    let env = envelope(
        "alice@example.org",
        vec![
            rcpt("bob@example.net", UNSPECIFIED, None),
            rcpt("carol@example.net", UNSPECIFIED, None),
        ],
        None,
    );
    let delayed = DsnRecipient {
        diagnostic: Some("smtp; 451 4.3.0 later".into()),
        last_attempt_ms: Some(NOW_MS),
        will_retry_until_ms: Some(NOW_MS + 86_400_000),
        ..outcome(1, Action::Delayed, "4.3.0")
    };
    let dsn = run(&env, &original(), vec![failed_550(0), delayed]).expect("a notice");
    let msg = parse(&dsn);
    assert_eq!(msg.subject(), Some("Undelivered Mail Returned to Sender"));
    let [text, status, _] = report_parts(&msg);
    let groups = status_groups(status);
    let actions: Vec<(&str, &str)> = groups[1..]
        .iter()
        .map(|g| (g["final-recipient"].as_str(), g["action"].as_str()))
        .collect();
    assert_eq!(
        actions,
        [
            ("rfc822;bob@example.net", "failed"),
            ("rfc822;carol@example.net", "delayed")
        ]
    );
    assert!(groups[2].contains_key("will-retry-until"));
    assert!(!groups[1].contains_key("will-retry-until"));
    let text = text.text_contents().expect("text");
    assert!(text.contains("still being tried"), "{text}");
}

#[test]
fn boundary_is_not_in_the_original() {
    let env = envelope(
        "alice@example.org",
        vec![rcpt("bob@example.net", UNSPECIFIED, None)],
        Some(Ret::Full),
    );
    // An original full of boundary-like lines, including ones a naive generator
    // might produce.
    let mut original = original();
    for line in [
        "--=_dsn_0\r\n",
        "--=_dsn_\r\n",
        "--boundary\r\n",
        "=_dsn_ffffffffffffffff\r\n",
    ] {
        original.extend_from_slice(line.as_bytes());
    }
    for _ in 0..20 {
        let dsn = run(&env, &original, vec![failed_550(0)]).expect("a notice");
        let msg = parse(&dsn);
        let boundary = msg
            .content_type()
            .and_then(|ct| ct.attribute("boundary"))
            .expect("boundary")
            .to_string();
        assert!(boundary.len() >= 20 && boundary.len() <= 70, "{boundary}");
        let in_original = original
            .windows(boundary.len())
            .any(|w| w == boundary.as_bytes());
        assert!(!in_original);
        // Three delimiters and the close delimiter, nothing else.
        let delimiter = format!("\r\n--{boundary}");
        let count = dsn
            .message
            .windows(delimiter.len())
            .filter(|w| *w == delimiter.as_bytes())
            .count();
        assert_eq!(count, 4);
        // The returned message comes back byte for byte.
        let [_, _, returned] = report_parts(&msg);
        assert_eq!(returned.contents(), &original[..]);
    }
}

#[test]
fn eight_bit_original() {
    let env = envelope(
        "alice@example.org",
        vec![rcpt("bob@example.net", UNSPECIFIED, None)],
        Some(Ret::Full),
    );
    let original = "Subject: menu\r\nContent-Type: text/plain; charset=utf-8\r\n\
                    Content-Transfer-Encoding: 8bit\r\n\r\nCr\u{e8}me br\u{fb}l\u{e9}e\r\n";
    let dsn = run(&env, original.as_bytes(), vec![failed_550(0)]).expect("a notice");
    assert_eq!(dsn.body_type, BodyType::EightBitMime);
    let msg = parse(&dsn);
    let [_, _, returned] = report_parts(&msg);
    assert_eq!(media_type(returned), "message/rfc822");
    let cte = returned.content_transfer_encoding();
    assert_eq!(cte, Some("8bit"));
    let inner = returned.message().expect("nested message");
    assert_eq!(
        inner.body_text(0).as_deref(),
        Some("Cr\u{e8}me br\u{fb}l\u{e9}e\r\n")
    );

    // Headers only: the 8-bit body stays out, so the notice is 7-bit.
    let env = envelope(
        "alice@example.org",
        vec![rcpt("bob@example.net", UNSPECIFIED, None)],
        None,
    );
    let dsn = run(&env, original.as_bytes(), vec![failed_550(0)]).expect("a notice");
    assert_eq!(dsn.body_type, BodyType::SevenBit);
    let msg = parse(&dsn);
    assert_eq!(
        report_parts(&msg)[2].content_transfer_encoding(),
        Some("7bit")
    );

    // UTF-8 header fields (RFC 6532) come back as message/global-headers.
    let intl = "Subject: caf\u{e9}\r\n\r\nbody\r\n";
    let dsn = run(&env, intl.as_bytes(), vec![failed_550(0)]).expect("a notice");
    let msg = parse(&dsn);
    let returned = report_parts(&msg)[2];
    assert_eq!(media_type(returned), "message/global-headers");
    assert_eq!(returned.content_transfer_encoding(), Some("8bit"));
    assert_eq!(returned.contents(), "Subject: caf\u{e9}\r\n".as_bytes());
}

#[test]
fn oversized_original_comes_back_as_headers() {
    let env = envelope(
        "alice@example.org",
        vec![rcpt("bob@example.net", UNSPECIFIED, None)],
        Some(Ret::Full),
    );
    let mut original = original();
    let line = b"0123456789012345678901234567890123456789012345678901234567890123456789\r\n";
    while original.len() <= 10 * 1024 * 1024 {
        original.extend_from_slice(line);
    }
    let dsn = run(&env, &original, vec![failed_550(0)]).expect("a notice");
    assert!(dsn.message.len() < 64 * 1024, "{}", dsn.message.len());
    let msg = parse(&dsn);
    let [text, _, returned] = report_parts(&msg);
    assert_eq!(media_type(returned), "text/rfc822-headers");
    assert!(text
        .text_contents()
        .expect("text")
        .contains("only its header section"));
}

#[test]
fn hostile_values_stay_in_their_fields() {
    let env = envelope(
        "alice@example.org",
        vec![rcpt("bob@example.net", UNSPECIFIED, None)],
        None,
    );
    let long_reply = format!(
        "smtp; 550 5.7.1 {} {}",
        "blocked ".repeat(200),
        "z".repeat(3000)
    );
    let outcomes = vec![
        DsnRecipient {
            diagnostic: Some("smtp; 550 no\r\nBcc: victim@example.com\r\n\r\n--x".into()),
            remote_mta: Some("dns; mx\nSubject: forged".into()),
            ..outcome(0, Action::Failed, "2.0.0")
        },
        DsnRecipient {
            diagnostic: Some(long_reply),
            ..outcome(0, Action::Failed, "5.7.1")
        },
    ];
    let dsn = run(&env, &original(), outcomes).expect("a notice");
    let text = String::from_utf8(dsn.message.clone()).expect("UTF-8");
    for line in text.split("\r\n") {
        assert!(line.len() < 998, "line of {}", line.len());
        assert!(
            !line.starts_with("Bcc:") && !line.starts_with("Subject: forged"),
            "{line}"
        );
    }
    assert!(!text.replace("\r\n", "").contains('\n'), "bare LF");
    let msg = parse(&dsn);
    assert!(msg.header("Bcc").is_none());
    let groups = status_groups(report_parts(&msg)[1]);
    assert_eq!(groups.len(), 3);
    // A success code on a failure is not believed.
    assert_eq!(groups[1]["status"], "5.0.0");
    assert_eq!(
        groups[1]["diagnostic-code"],
        "smtp; 550 no Bcc: victim@example.com --x"
    );
    assert_eq!(groups[1]["remote-mta"], "dns; mx Subject: forged");
    let long = &groups[2]["diagnostic-code"];
    assert!(
        long.starts_with("smtp; 550 5.7.1 blocked blocked"),
        "{long}"
    );
}

/// Every CR is followed by LF and every LF preceded by CR.
fn crlf_only(bytes: &[u8]) -> bool {
    bytes.iter().enumerate().all(|(i, &b)| match b {
        b'\r' => bytes.get(i + 1) == Some(&b'\n'),
        b'\n' => i > 0 && bytes[i - 1] == b'\r',
        _ => true,
    })
}

#[test]
fn an_original_with_bare_line_ends_comes_back_with_crlf() {
    // Spooled before the receivers normalised line ends.
    let bare = b"From: a@example.org\nSubject: old\r\rbody\n.\nMAIL FROM:<x@y>\r\n";
    for ret in [Ret::Full, Ret::Headers] {
        let env = envelope(
            "alice@example.org",
            vec![rcpt("bob@example.net", UNSPECIFIED, None)],
            Some(ret),
        );
        let dsn = run(&env, bare, vec![failed_550(0)]).expect("a notice");
        assert!(
            crlf_only(&dsn.message),
            "{ret:?}: {:?}",
            String::from_utf8_lossy(&dsn.message)
        );
        let msg = parse(&dsn);
        let [_, _, returned] = report_parts(&msg);
        let text = String::from_utf8_lossy(returned.contents());
        assert!(
            text.starts_with("From: a@example.org\r\nSubject: old\r\n"),
            "{text:?}"
        );
        assert_eq!(text.contains("body"), ret == Ret::Full, "{text:?}");
    }
}

proptest! {
    #[test]
    fn notices_have_crlf_line_ends_only(
        original in proptest::collection::vec(
            prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'.'), Just(b':'), any::<u8>()],
            0..400,
        ),
        full in any::<bool>(),
        diagnostic in ".{0,80}",
    ) {
        let env = envelope(
            "alice@example.org",
            vec![rcpt("bob@example.net", UNSPECIFIED, None)],
            Some(if full { Ret::Full } else { Ret::Headers }),
        );
        let outcome = DsnRecipient {
            diagnostic: Some(diagnostic),
            ..failed_550(0)
        };
        let dsn = run(&env, &original, vec![outcome]).expect("a notice");
        prop_assert!(crlf_only(&dsn.message), "{:?}", String::from_utf8_lossy(&dsn.message));
    }
}
