//! The fixtures (`fixtures/*.eml`, each naming its source), the three parts used
//! together on a report carrying a real token, and hostile input: empty, junk,
//! huge, truncated and mutated messages never panic and stay within the bounds.

use proptest::prelude::*;
use way2mail_seal::Keyring;
use way2mail_smtp::MessageId;

use super::dsn::{self, Bounce, BounceRecipient};
use super::{arf, verp, MAX_FIELD, MAX_RECIPIENTS};

const RFC3464_SIMPLE: &[u8] = include_bytes!("fixtures/rfc3464-simple.eml");
const RFC3464_MULTI: &[u8] = include_bytes!("fixtures/rfc3464-multi.eml");
const RFC3464_DELAYED: &[u8] = include_bytes!("fixtures/rfc3464-delayed.eml");
const POSTFIX_FAILED: &[u8] = include_bytes!("fixtures/postfix-failed.eml");
const POSTFIX_DELAYED: &[u8] = include_bytes!("fixtures/postfix-delayed.eml");
const EXIM_FAILED: &[u8] = include_bytes!("fixtures/exim-failed.eml");
const EXIM_DELAY: &[u8] = include_bytes!("fixtures/exim-delay.eml");
const QMAIL: &[u8] = include_bytes!("fixtures/qmail.eml");
const OUTLOOK_NDR: &[u8] = include_bytes!("fixtures/outlook-ndr.eml");
const GMAIL_DSN: &[u8] = include_bytes!("fixtures/gmail-dsn.eml");
const GENERIC_TEXT: &[u8] = include_bytes!("fixtures/generic-text.eml");
const RFC5965_SIMPLE: &[u8] = include_bytes!("fixtures/rfc5965-simple.eml");
const RFC5965_FULL: &[u8] = include_bytes!("fixtures/rfc5965-full.eml");
const YAHOO_ARF: &[u8] = include_bytes!("fixtures/yahoo-arf.eml");
const MICROSOFT_JMRP: &[u8] = include_bytes!("fixtures/microsoft-jmrp.eml");
const AUTO_REPLY: &[u8] = include_bytes!("fixtures/auto-reply.eml");

const BOUNCES: &[&[u8]] = &[
    RFC3464_SIMPLE,
    RFC3464_MULTI,
    RFC3464_DELAYED,
    POSTFIX_FAILED,
    POSTFIX_DELAYED,
    EXIM_FAILED,
    QMAIL,
    OUTLOOK_NDR,
    GMAIL_DSN,
    GENERIC_TEXT,
];
const COMPLAINTS: &[&[u8]] = &[RFC5965_SIMPLE, RFC5965_FULL, YAHOO_ARF, MICROSOFT_JMRP];
const NEITHER: &[&[u8]] = &[EXIM_DELAY, AUTO_REPLY];

/// The fixtures' stand-in for our VERP address (58 `a`s: an all-zero token).
const PLACEHOLDER: &str =
    "b-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@bounces.example";
const DOMAIN: &str = "bounces.example";

fn all_fixtures() -> impl Iterator<Item = &'static [u8]> {
    BOUNCES.iter().chain(COMPLAINTS).chain(NEITHER).copied()
}

fn bounce(message: &[u8]) -> Bounce {
    dsn::parse(message).expect("a bounce")
}

fn recipient(address: &str, action: &str, status: Option<&str>) -> BounceRecipient {
    BounceRecipient {
        address: address.to_owned(),
        original_recipient: None,
        action: action.to_owned(),
        status: status.map(str::to_owned),
        diagnostic: None,
        remote_mta: None,
    }
}

#[test]
fn every_fixture_names_its_source() {
    for f in all_fixtures() {
        assert!(
            f.starts_with(b"X-Fixture-Source: "),
            "{}",
            String::from_utf8_lossy(&f[..60])
        );
    }
}

#[test]
fn rfc3464_simple() {
    let b = bounce(RFC3464_SIMPLE);
    assert!(b.standard);
    assert_eq!(
        b.recipients,
        vec![BounceRecipient {
            original_recipient: Some("louisl@larry.slip.umd.edu".into()),
            diagnostic: Some("426 connection timed out".into()),
            ..recipient("louisl@larry.slip.umd.edu", "failed", Some("4.0.0"))
        }]
    );
    // The RFC's placeholder is no message: nothing to read from it.
    assert!(b.original.is_empty(), "{:?}", b.original);
}

#[test]
fn rfc3464_multi_recipient_keeps_each_action() {
    let b = bounce(RFC3464_MULTI);
    assert!(b.standard);
    let summary: Vec<(&str, &str, Option<&str>)> = b
        .recipients
        .iter()
        .map(|r| (r.address.as_str(), r.action.as_str(), r.status.as_deref()))
        .collect();
    assert_eq!(
        summary,
        [
            ("arathib@vnet.ibm.com", "failed", Some("5.0.0")),
            ("johnh@hpnjld.njd.hp.com", "delayed", Some("4.0.0")),
            ("wsnell@sdcc13.ucsd.edu", "failed", Some("5.0.0")),
        ]
    );
    // Folded and with doubled space after the type.
    assert_eq!(
        b.recipients[0].diagnostic.as_deref(),
        Some("550 'arathib@vnet.IBM.COM' is not a registered gateway user")
    );
    assert_eq!(b.recipients[0].remote_mta.as_deref(), Some("vnet.ibm.com"));
    assert_eq!(b.recipients[1].diagnostic, None);
    assert_eq!(
        b.recipients[2].remote_mta.as_deref(),
        Some("sdcc13.ucsd.edu")
    );
}

#[test]
fn rfc3464_delayed() {
    let b = bounce(RFC3464_DELAYED);
    assert!(b.standard);
    assert_eq!(
        b.recipients,
        vec![recipient(
            "thomas@de-montfort.ac.uk",
            "delayed",
            Some("4.0.0")
        )]
    );
    assert_eq!(b.original.return_path.as_deref(), Some(PLACEHOLDER));
    assert_eq!(
        b.original.message_id.as_deref(),
        Some("<19940709012147.7H3KQ@news.example.com>")
    );
    assert_eq!(b.original.to.as_deref(), Some("thomas@de-montfort.ac.uk"));
}

#[test]
fn postfix_failed() {
    let b = bounce(POSTFIX_FAILED);
    assert!(b.standard);
    assert_eq!(
        b.recipients,
        vec![BounceRecipient {
            original_recipient: Some("Alice@Example.org".into()),
            diagnostic: Some(
                "550 5.1.1 <alice@example.org>: Recipient address rejected: User unknown in virtual mailbox table"
                    .into()
            ),
            remote_mta: Some("mx.example.org".into()),
            ..recipient("alice@example.org", "failed", Some("5.1.1"))
        }]
    );
    let o = &b.original;
    assert_eq!(o.return_path.as_deref(), Some(PLACEHOLDER));
    assert_eq!(
        o.message_id.as_deref(),
        Some("<01HR3K7ZP0Q8WJ6M2B5T9XV4CD@shop.example.com>")
    );
    assert_eq!(
        o.feedback_id.as_deref(),
        Some("order-1042:acme:transactional:way2mail")
    );
    assert_eq!(o.to.as_deref(), Some("Alice <Alice@Example.org>"));
    assert_eq!(o.to_address().as_deref(), Some("Alice@Example.org"));
    assert_eq!(
        o.from.as_deref(),
        Some("Example Shop <orders@shop.example.com>")
    );
}

#[test]
fn postfix_delay_warning_is_delayed() {
    let b = bounce(POSTFIX_DELAYED);
    assert!(b.standard);
    assert_eq!(b.recipients.len(), 1);
    let r = &b.recipients[0];
    assert_eq!(r.address, "bob@slow.example");
    assert_eq!(r.action, "delayed");
    assert_eq!(r.status.as_deref(), Some("4.4.1"));
    assert_eq!(
        r.diagnostic.as_deref(),
        Some("connect to mx.slow.example[192.0.2.30]:25: Connection timed out")
    );
    assert_eq!(b.original.return_path.as_deref(), Some(PLACEHOLDER));
    assert_eq!(b.original.to.as_deref(), Some("bob@slow.example"));
}

#[test]
fn outlook_ndr() {
    let b = bounce(OUTLOOK_NDR);
    assert!(b.standard);
    assert_eq!(
        b.recipients,
        vec![BounceRecipient {
            diagnostic: Some(
                "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient frank@contoso.example not found by SMTP address lookup"
                    .into()
            ),
            ..recipient("frank@contoso.example", "failed", Some("5.1.10"))
        }]
    );
    // Exchange writes Return-Path without brackets.
    assert_eq!(b.original.return_path.as_deref(), Some(PLACEHOLDER));
    assert_eq!(
        b.original.to_address().as_deref(),
        Some("frank@contoso.example")
    );
    assert_eq!(
        b.original.message_id.as_deref(),
        Some("<01HR3K7ZP0Q8WJ6M2B5T9XV4CH@shop.example.com>")
    );
}

#[test]
fn gmail_dsn() {
    let b = bounce(GMAIL_DSN);
    assert!(b.standard);
    assert_eq!(b.recipients.len(), 1);
    let r = &b.recipients[0];
    assert_eq!(r.address, "nobody@example.com");
    assert_eq!(r.action, "failed");
    assert_eq!(r.status.as_deref(), Some("5.1.1"));
    // The comment after the host is dropped, and the root's trailing dot.
    assert_eq!(r.remote_mta.as_deref(), Some("mx.example.com"));
    assert!(r
        .diagnostic
        .as_deref()
        .is_some_and(|d| d.starts_with("550 5.1.1 <nobody@example.com>")));
    assert_eq!(b.original.return_path.as_deref(), Some(PLACEHOLDER));
    assert_eq!(
        b.original.feedback_id.as_deref(),
        Some("welcome:acme:onboarding:way2mail")
    );
    assert_eq!(b.original.to.as_deref(), Some("forwarder@gmail.com"));
}

#[test]
fn exim_without_dsn() {
    let b = bounce(EXIM_FAILED);
    assert!(!b.standard);
    assert_eq!(b.recipients.len(), 2);
    let r = &b.recipients[0];
    assert_eq!(r.address, "nobody@example.org");
    assert_eq!(r.action, "failed");
    assert_eq!(r.status.as_deref(), Some("5.1.1"));
    assert_eq!(r.remote_mta.as_deref(), Some("mx.example.org"));
    assert_eq!(
        r.diagnostic.as_deref(),
        Some("SMTP error from remote mail server after RCPT TO:<nobody@example.org>: host mx.example.org [192.0.2.25]: 550 5.1.1 <nobody@example.org>: Recipient address rejected: User unknown in local recipient table")
    );
    assert_eq!(
        b.recipients[1],
        BounceRecipient {
            diagnostic: Some("Unrouteable address".into()),
            ..recipient("gone@example.net", "failed", None)
        }
    );
    assert_eq!(b.original.return_path.as_deref(), Some(PLACEHOLDER));
    assert_eq!(
        b.original.message_id.as_deref(),
        Some("<01HR3K7ZP0Q8WJ6M2B5T9XV4CF@shop.example.com>")
    );
}

#[test]
fn qmail_without_dsn() {
    let b = bounce(QMAIL);
    assert!(!b.standard);
    let summary: Vec<(&str, Option<&str>)> = b
        .recipients
        .iter()
        .map(|r| (r.address.as_str(), r.status.as_deref()))
        .collect();
    assert_eq!(
        summary,
        [
            ("god@heaven.example", None),
            ("carol@example.org", Some("5.1.1")),
            ("dave@nowhere.invalid", Some("5.1.2")),
        ]
    );
    assert!(b.recipients.iter().all(|r| r.action == "failed"));
    assert_eq!(
        b.recipients[0].diagnostic.as_deref(),
        Some("This address no longer accepts mail.")
    );
    assert_eq!(b.original.return_path.as_deref(), Some(PLACEHOLDER));
    assert_eq!(
        b.original.feedback_id.as_deref(),
        Some("invoice:acme:transactional:way2mail")
    );
    assert_eq!(b.original.to.as_deref(), Some("carol@example.org"));
}

#[test]
fn generic_text_bounce() {
    let b = bounce(GENERIC_TEXT);
    assert!(!b.standard);
    assert_eq!(b.recipients.len(), 1);
    let r = &b.recipients[0];
    assert_eq!(r.address, "grace@example.net");
    assert_eq!(r.action, "failed");
    assert_eq!(r.status.as_deref(), Some("5.1.1"));
    assert_eq!(b.original.return_path.as_deref(), Some(PLACEHOLDER));
    assert_eq!(
        b.original.message_id.as_deref(),
        Some("<01HR3K7ZP0Q8WJ6M2B5T9XV4CK@shop.example.com>")
    );
}

#[test]
fn warnings_and_auto_replies_are_no_bounces() {
    // Exim's text delay warning names an address and a reply, but is no failure.
    assert_eq!(dsn::parse(EXIM_DELAY), None);
    assert_eq!(dsn::parse(AUTO_REPLY), None);
    assert_eq!(arf::parse(AUTO_REPLY), None);
}

#[test]
fn bounces_are_no_complaints_and_complaints_no_bounces() {
    for f in BOUNCES.iter().chain(NEITHER) {
        assert_eq!(arf::parse(f), None);
    }
    for f in COMPLAINTS {
        assert_eq!(dsn::parse(f), None);
    }
}

#[test]
fn rfc5965_simple() {
    let c = arf::parse(RFC5965_SIMPLE).expect("complaint");
    assert_eq!(c.feedback_type, "abuse");
    assert_eq!(c.user_agent.as_deref(), Some("SomeGenerator/1.0"));
    assert_eq!(c.original_mail_from, None);
    assert!(c.original_rcpt_to.is_empty());
    assert_eq!(c.arrival_date, None);
    assert_eq!(c.source_ip, None);
    assert_eq!(c.reported_domain, None);
    assert_eq!(c.original.return_path, None);
    assert_eq!(
        c.original.message_id.as_deref(),
        Some("8787KJKJ3K4J3K4J3K4J3.mail@example.net")
    );
    assert_eq!(
        c.original.from.as_deref(),
        Some("<somespammer@example.net>")
    );
    assert_eq!(c.original.to.as_deref(), Some("<Undisclosed Recipients>"));
    assert_eq!(c.original.to_address(), None);
}

#[test]
fn rfc5965_full() {
    let c = arf::parse(RFC5965_FULL).expect("complaint");
    assert_eq!(c.feedback_type, "abuse");
    assert_eq!(
        c.original_mail_from.as_deref(),
        Some("somespammer@example.net")
    );
    assert_eq!(c.original_rcpt_to, vec!["user@example.com".to_owned()]);
    assert_eq!(
        c.arrival_date.as_deref(),
        Some("Thu, 8 Mar 2005 14:00:00 EDT")
    );
    assert_eq!(c.source_ip.as_deref(), Some("192.0.2.1"));
    assert_eq!(c.reported_domain.as_deref(), Some("example.net"));
    assert_eq!(c.original.return_path.as_deref(), Some(PLACEHOLDER));
}

#[test]
fn yahoo_arf() {
    let c = arf::parse(YAHOO_ARF).expect("complaint");
    assert_eq!(c.feedback_type, "abuse");
    assert_eq!(c.user_agent.as_deref(), Some("Yahoo!-Mail-Feedback/2.0"));
    assert_eq!(c.original_mail_from.as_deref(), Some(PLACEHOLDER));
    assert!(c.original_rcpt_to.is_empty());
    // The older field name.
    assert_eq!(
        c.arrival_date.as_deref(),
        Some("Tue, 05 Mar 2024 12:00:00 +0000")
    );
    assert_eq!(c.source_ip.as_deref(), Some("192.0.2.10"));
    assert_eq!(c.reported_domain.as_deref(), Some("news.example.com"));
    assert_eq!(c.original.return_path.as_deref(), Some(PLACEHOLDER));
    assert_eq!(
        c.original.to_address().as_deref(),
        Some("heidi@yahoo.example")
    );
    assert_eq!(
        c.original.feedback_id.as_deref(),
        Some("march:acme:newsletter:way2mail")
    );
}

#[test]
fn microsoft_jmrp_redacted() {
    let c = arf::parse(MICROSOFT_JMRP).expect("complaint");
    assert_eq!(c.feedback_type, "abuse");
    assert_eq!(c.user_agent.as_deref(), Some("Hotmail FBL"));
    assert_eq!(c.original_mail_from.as_deref(), Some(PLACEHOLDER));
    assert!(c.original_rcpt_to.is_empty());
    assert_eq!(c.source_ip.as_deref(), Some("192.0.2.10"));
    assert_eq!(c.reported_domain, None);
    assert_eq!(c.original.return_path.as_deref(), Some(PLACEHOLDER));
    assert_eq!(c.original.to, None);
    assert_eq!(
        c.original.message_id.as_deref(),
        Some("<01HR3K7ZP0Q8WJ6M2B5T9XV4CN@news.example.com>")
    );
}

/// A fixture with our placeholder replaced by `address` (same length, so nothing
/// else in the message moves).
fn with_return_path(fixture: &[u8], address: &str) -> Vec<u8> {
    assert_eq!(address.len(), PLACEHOLDER.len());
    let text = String::from_utf8(fixture.to_vec()).expect("utf-8 fixture");
    text.replace(PLACEHOLDER, address).into_bytes()
}

#[test]
fn bounce_to_tenant_message_and_recipient() {
    let keyring = Keyring::ephemeral().expect("keyring");
    let key = keyring.tenant("acme").expect("key");
    let id = MessageId::generate();
    let address = verp::return_path(&key, &id, "Alice@Example.org", DOMAIN);
    let b = bounce(&with_return_path(POSTFIX_FAILED, &address));
    let return_path = b.original.return_path.as_deref().expect("return path");
    let v = verp::verify(&keyring, return_path, DOMAIN).expect("ours");
    assert_eq!(v.tenant, "acme");
    assert_eq!(v.message, id);
    let r = &b.recipients[0];
    assert_eq!(r.action, "failed");
    assert!(verp::recipient_matches(&key, &v.recipient_tag, &r.address));
    // The same message's return path for another recipient does not cover Alice.
    let other = verp::return_path(&key, &id, "mallory@example.org", DOMAIN);
    let v = verp::verify(&keyring, &other, DOMAIN).expect("ours");
    assert!(!verp::recipient_matches(&key, &v.recipient_tag, &r.address));
}

#[test]
fn complaint_to_tenant_message_and_recipient() {
    let keyring = Keyring::ephemeral().expect("keyring");
    let key = keyring.tenant("acme").expect("key");
    let id = MessageId::generate();
    let address = verp::return_path(&key, &id, "heidi@yahoo.example", DOMAIN);
    let c = arf::parse(&with_return_path(YAHOO_ARF, &address)).expect("complaint");
    let v = verp::verify(
        &keyring,
        c.original.return_path.as_deref().expect("rp"),
        DOMAIN,
    )
    .expect("ours");
    assert_eq!((v.tenant.as_str(), v.message), ("acme", id));
    let to = c.original.to_address().expect("to");
    assert!(verp::recipient_matches(&key, &v.recipient_tag, &to));
    // Erased: the same report is about nothing of ours any more.
    keyring.shred("acme").expect("shred");
    assert_eq!(
        verp::verify(
            &keyring,
            c.original.return_path.as_deref().expect("rp"),
            DOMAIN
        ),
        None
    );
}

#[test]
fn placeholders_verify_nowhere() {
    let keyring = Keyring::ephemeral().expect("keyring");
    keyring.tenant("acme").expect("key");
    let b = bounce(POSTFIX_FAILED);
    assert_eq!(
        verp::verify(
            &keyring,
            b.original.return_path.as_deref().expect("rp"),
            DOMAIN
        ),
        None
    );
}

#[test]
fn empty_and_junk_are_nothing() {
    for junk in [
        &b""[..],
        b"\r\n",
        b"\r\n\r\n\r\n",
        b"garbage",
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=x\r\n\r\n",
        b"Content-Type: multipart/report; boundary=\"\"\r\n\r\n--\r\n--\r\n",
        b"Content-Type: message/delivery-status\r\n\r\nFinal-Recipient\r\n",
        b"\xff\xfe\x00\x00From: \xc3\x28\r\n\r\n\x80\x81",
    ] {
        assert_eq!(
            dsn::parse(junk),
            None,
            "{:?}",
            String::from_utf8_lossy(junk)
        );
        assert_eq!(
            arf::parse(junk),
            None,
            "{:?}",
            String::from_utf8_lossy(junk)
        );
    }
}

/// A DSN whose status part is `body`.
fn dsn_with(body: &str) -> Vec<u8> {
    format!(
        "From: x@y.example\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n\r\n--B\r\nContent-Type: message/delivery-status\r\n\r\n{body}\r\n--B--\r\n"
    )
    .into_bytes()
}

#[test]
fn huge_reports_are_bounded() {
    // More recipients than anyone reports.
    let mut body = String::from("Reporting-MTA: dns; a.example\r\n\r\n");
    for i in 0..3000 {
        body.push_str(&format!(
            "Final-Recipient: rfc822; r{i}@x.example\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n"
        ));
    }
    let b = bounce(&dsn_with(&body));
    assert_eq!(b.recipients.len(), MAX_RECIPIENTS);
    assert_eq!(b.recipients[999].address, "r999@x.example");

    // A field longer than anyone writes, and one folded over many lines.
    let long = "x".repeat(200_000);
    let folded = "\r\n y".repeat(50_000);
    let b = bounce(&dsn_with(&format!(
        "Final-Recipient: rfc822; {long}@x.example\r\nAction: failed{folded}\r\nDiagnostic-Code: smtp; 550 {long}\r\n"
    )));
    let r = &b.recipients[0];
    // Values are cut before their type is dropped: "rfc822; " and "smtp; ".
    assert_eq!(r.address.chars().count(), MAX_FIELD - 8);
    assert_eq!(r.action, "failed");
    assert_eq!(
        r.diagnostic.as_deref().map(|d| d.chars().count()),
        Some(MAX_FIELD - 6)
    );

    // A message far over the size read: cut, still parsed.
    let mut big = dsn_with("Final-Recipient: rfc822; a@x.example\r\nAction: failed\r\n");
    big.extend(std::iter::repeat_n(b'z', 2 * super::MAX_MESSAGE));
    assert_eq!(bounce(&big).recipients.len(), 1);

    // Many complaint recipients.
    let mut arf = String::from("Content-Type: multipart/report; report-type=feedback-report; boundary=\"B\"\r\n\r\n--B\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: Abuse\r\n");
    for i in 0..3000 {
        arf.push_str(&format!("Original-Rcpt-To: <r{i}@x.example>\r\n"));
    }
    arf.push_str("\r\n--B--\r\n");
    let c = arf::parse(arf.as_bytes()).expect("complaint");
    assert_eq!(c.feedback_type, "abuse");
    assert_eq!(c.original_rcpt_to.len(), MAX_RECIPIENTS);
}

#[test]
fn huge_heuristic_bounces_are_bounded() {
    let mut text = String::from("From: MAILER-DAEMON@x.example\r\nSubject: failure notice\r\n\r\nHi. This is the qmail-send program at x.example.\r\n\r\n");
    for i in 0..20_000 {
        text.push_str(&format!(
            "<r{i}@x.example>:\r\nSorry, no mailbox here by that name. (#5.1.1)\r\n\r\n"
        ));
    }
    let b = bounce(text.as_bytes());
    assert!(!b.standard);
    // Only the first 64 KiB of text are read, and never more than the cap.
    assert!(!b.recipients.is_empty() && b.recipients.len() <= MAX_RECIPIENTS);
    assert_eq!(b.recipients[0].status.as_deref(), Some("5.1.1"));
}

#[test]
fn encoded_parts_are_read() {
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let status = b64("Reporting-MTA: dns; a.example\r\n\r\nFinal-Recipient: rfc822; bob@x.example\r\nAction: FAILED\r\nStatus: 5.2.2\r\n");
    let copy = b64(&format!(
        "Return-Path: <{PLACEHOLDER}>\r\nTo: bob@x.example\r\n\r\nhi\r\n"
    ));
    let message = format!(
        "Content-Type: multipart/mixed; boundary=\"O\"\r\n\r\n--O\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n\r\n--B\r\nContent-Type: message/delivery-status\r\nContent-Transfer-Encoding: base64\r\n\r\n{status}\r\n--B\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n{copy}\r\n--B--\r\n--O--\r\n"
    );
    let b = bounce(message.as_bytes());
    assert_eq!(
        b.recipients,
        vec![recipient("bob@x.example", "failed", Some("5.2.2"))]
    );
    assert_eq!(b.original.return_path.as_deref(), Some(PLACEHOLDER));
    assert_eq!(b.original.to.as_deref(), Some("bob@x.example"));
}

#[test]
fn action_missing_or_odd() {
    let b = bounce(&dsn_with(
        "Final-Recipient: rfc822; a@x.example\r\nStatus: 5.1.1\r\n\r\nFinal-Recipient: rfc822; b@x.example\r\nStatus: 4.4.1\r\n\r\nFinal-Recipient: rfc822; c@x.example\r\nAction: Delivered (to mailbox)\r\nStatus: 2.0.0\r\n\r\nFinal-Recipient: rfc822; d@x.example\r\nStatus: bogus\r\n\r\nOriginal-Recipient: rfc822; e@x.example\r\nAction: relayed\r\n",
    ));
    let summary: Vec<(&str, &str, Option<&str>)> = b
        .recipients
        .iter()
        .map(|r| (r.address.as_str(), r.action.as_str(), r.status.as_deref()))
        .collect();
    assert_eq!(
        summary,
        [
            ("a@x.example", "failed", Some("5.1.1")),
            ("b@x.example", "delayed", Some("4.4.1")),
            ("c@x.example", "delivered", Some("2.0.0")),
            ("e@x.example", "relayed", None),
        ]
    );
}

#[test]
fn every_truncation_of_every_fixture_is_safe() {
    for f in all_fixtures() {
        for end in (0..f.len()).step_by(7) {
            let cut = &f[..end];
            if let Some(b) = dsn::parse(cut) {
                assert!(!b.recipients.is_empty() && b.recipients.len() <= MAX_RECIPIENTS);
            }
            let _ = arf::parse(cut);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let _ = dsn::parse(&bytes);
        let _ = arf::parse(&bytes);
    }

    #[test]
    fn mutated_fixtures_never_panic(
        which in 0usize..16,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..16),
    ) {
        let fixture = all_fixtures().nth(which).unwrap_or(QMAIL);
        let mut bytes = fixture.to_vec();
        for (at, byte) in edits {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        if let Some(b) = dsn::parse(&bytes) {
            prop_assert!(b.recipients.len() <= MAX_RECIPIENTS);
            for r in &b.recipients {
                prop_assert!(r.address.chars().count() <= MAX_FIELD);
            }
        }
        let _ = arf::parse(&bytes);
    }

    #[test]
    fn report_shaped_text_never_panics(body in "(\\PC{0,40}(:|;|\r\n| |\t|<|>|@)){0,60}") {
        let _ = dsn::parse(&dsn_with(&body));
        let mut arf = String::from("Content-Type: multipart/report; report-type=feedback-report; boundary=B\r\n\r\n--B\r\nContent-Type: message/feedback-report\r\n\r\n");
        arf.push_str(&body);
        let _ = arf::parse(arf.as_bytes());
    }
}
