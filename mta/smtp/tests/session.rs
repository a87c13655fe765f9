//! Session behaviour driven through the API rather than bytes alone: EHLO contents,
//! enhanced status codes (line 31), timeouts (line 32), shutdown, the error limit and
//! tarpit, spool health, queue failures, refused content, `in_data`, and bounded
//! buffering.

mod driver;

use std::time::Duration;

use driver::{drive, params, run, Setup, Transcript, HOST};
use way2mail_smtp::server::{ContentRefusal, Event, Protocol, QueueFailure, SpoolState};

const E: &str = "EHLO client.example\r\n";
const M: &str = "MAIL FROM:<sender@client.example>\r\n";
const R: &str = "RCPT TO:<user@example.org>\r\n";

fn ehlo_lines(t: &Transcript) -> Vec<String> {
    t.lines()
        .filter(|l| l.starts_with("250"))
        .map(|l| l[4..].to_string())
        .collect()
}

#[test]
fn c02_ehlo_lists_every_extension() {
    let t = run(Setup::Mx, &[E.as_bytes()]);
    let lines = ehlo_lines(&t);
    assert_eq!(lines[0], format!("{HOST} Hello client.example"));
    for ext in [
        "PIPELINING",
        "SIZE 10000",
        "8BITMIME",
        "ENHANCEDSTATUSCODES",
        "CHUNKING",
        "SMTPUTF8",
        "DSN",
        "STARTTLS",
    ] {
        assert!(
            lines.iter().any(|l| l == ext),
            "{ext} missing from {lines:?}"
        );
    }
    assert!(
        !lines.iter().any(|l| l.starts_with("AUTH")),
        "AUTH is not offered"
    );
    let t = run(Setup::MxNoTls, &[E.as_bytes()]);
    assert!(!ehlo_lines(&t).iter().any(|l| l == "STARTTLS"));
    let t = run(Setup::Mx, &[b"HELO client.example\r\n"]);
    assert_eq!(ehlo_lines(&t), [HOST.to_string()]);
}

#[test]
fn c18_no_starttls_advertised_after_tls() {
    let t = run(
        Setup::Mx,
        &[[E, "STARTTLS\r\n"].concat().as_bytes(), E.as_bytes()],
    );
    let lines = ehlo_lines(&t);
    assert_eq!(
        lines.iter().filter(|l| *l == "STARTTLS").count(),
        1,
        "{lines:?}"
    );
    assert_eq!(t.events, ["starttls"]);
    let t = run(Setup::Submissions, &[E.as_bytes()]);
    assert!(!ehlo_lines(&t).iter().any(|l| l == "STARTTLS"));
}

#[test]
fn c31_enhanced_status_codes_after_ehlo() {
    let dialogue = [
        E,
        M,
        R,
        "RCPT TO:<x@elsewhere.example>\r\n",
        "DATA\r\nx\r\n.\r\n",
        "NOOP\r\nVRFY a\r\nHELP\r\n",
        "FOO\r\nTURN\r\nRSET\r\nMAIL FROM:<a@@b>\r\nMAIL FROM:<a@b.example> X=1\r\n",
        "BDAT 1\r\nx",
        "STARTTLS x\r\nQUIT\r\n",
    ]
    .concat();
    let t = run(Setup::Mx, &[dialogue.as_bytes()]);
    let mut lines = t.lines().skip(1).skip_while(|l| l.starts_with("250-"));
    assert!(
        lines.next().is_some_and(|l| l.starts_with("250 ")),
        "the EHLO reply ends"
    );
    let mut checked = 0;
    for line in lines.filter(|l| !l.starts_with("354 ")) {
        let code = &line[..3];
        let status = line[4..].split(' ').next().unwrap_or("");
        let parts: Vec<&str> = status.split('.').collect();
        assert_eq!(parts.len(), 3, "no enhanced code in {line:?}");
        assert_eq!(parts[0], &code[..1], "class differs in {line:?}");
        assert!(parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())));
        checked += 1;
    }
    assert!(checked >= 15, "only {checked} replies checked");
}

#[test]
fn c32_timeout_closes_with_421() {
    let mut p = Protocol::new(params(Setup::Mx));
    p.greeting();
    p.feed(E.as_bytes());
    assert!(matches!(p.next_event(), Event::NeedInput));
    p.clear_output();
    p.timeout();
    p.feed(b"NOOP\r\n");
    assert!(matches!(p.next_event(), Event::Close));
    assert_eq!(
        p.output(),
        format!("421 4.4.2 {HOST} timeout exceeded\r\n").as_bytes()
    );
}

#[test]
fn shutdown_closes_with_421_4_3_2() {
    let mut p = Protocol::new(params(Setup::Mx));
    p.greeting();
    p.clear_output();
    p.shutdown();
    assert!(matches!(p.next_event(), Event::Close));
    assert_eq!(
        p.output(),
        format!("421 4.3.2 {HOST} service shutting down\r\n").as_bytes()
    );
}

#[test]
fn greeting_text() {
    let mut p = Protocol::new(params(Setup::Mx));
    p.greeting();
    assert_eq!(
        p.output(),
        format!("220 {HOST} ESMTP Way2Mail\r\n").as_bytes()
    );
}

#[test]
fn errors_tarpit_then_close() {
    // Strict: tarpit after 2 errors, close at 5.
    let t = run(
        Setup::Strict,
        &[b"FOO\r\nFOO\r\nNOOP\r\nFOO\r\nFOO\r\nFOO\r\nNOOP\r\n"],
    );
    assert_eq!(t.codes(), [220, 500, 500, 250, 500, 500, 500, 421]);
    assert_eq!(
        t.events,
        ["tarpit 5ms", "tarpit 5ms", "tarpit 5ms", "close"]
    );
    assert!(t
        .lines()
        .last()
        .is_some_and(|l| l.starts_with("421 4.7.0 ")));
}

#[test]
fn tarpit_comes_before_the_error_reply_is_written() {
    let mut p = Protocol::new(params(Setup::Strict));
    p.feed(b"FOO\r\nFOO\r\nFOO\r\nNOOP\r\n");
    let Event::Tarpit(d) = p.next_event() else {
        panic!("the third error is tarpitted");
    };
    assert_eq!(d, Duration::from_millis(5));
    // The delayed reply is pending: the caller writes it after sleeping.
    assert_eq!(
        p.output(),
        "500 5.5.1 Command unrecognized\r\n".repeat(3).as_bytes()
    );
    p.clear_output();
    assert!(matches!(p.next_event(), Event::NeedInput));
    assert_eq!(p.output(), b"250 2.0.0 Ok\r\n");
}

#[test]
fn spool_state_decides_mail() {
    let mut p = Protocol::new(params(Setup::Mx));
    let mut t = Transcript::default();
    let mut tls = false;
    p.greeting();
    p.set_spool_state(SpoolState::DiskLow);
    p.feed([E, M].concat().as_bytes());
    assert!(!drive(&mut p, &mut t, &mut tls));
    p.set_spool_state(SpoolState::Ready);
    p.feed([M, "RSET\r\n"].concat().as_bytes());
    assert!(!drive(&mut p, &mut t, &mut tls));
    p.set_spool_state(SpoolState::Unhealthy);
    p.feed([M, "NOOP\r\n"].concat().as_bytes());
    assert!(drive(&mut p, &mut t, &mut tls));
    assert_eq!(t.codes(), [220, 250, 452, 250, 250, 421]);
    assert!(t.lines().any(|l| l.starts_with("452 4.3.1 ")));
    assert!(t.lines().any(|l| l.starts_with("421 4.3.2 ")));
}

#[test]
fn queue_failures_choose_the_reply() {
    let cases = [
        (Ok(()), "250 2.0.0 "),
        (Err(QueueFailure::DiskFull), "452 4.3.1 "),
        (Err(QueueFailure::Unhealthy), "451 4.3.0 "),
        (Err(QueueFailure::Other), "451 4.3.0 "),
    ];
    for (result, expected) in cases {
        let mut p = Protocol::new(params(Setup::Mx));
        p.feed([E, M, R, "DATA\r\nx\r\n.\r\nNOOP\r\n"].concat().as_bytes());
        let Event::Message { id, .. } = p.next_event() else {
            panic!("no message");
        };
        p.clear_output();
        p.feed(b"NOOP\r\n");
        assert!(
            matches!(p.next_event(), Event::NeedInput),
            "input waits for the queue"
        );
        assert!(p.output().is_empty(), "no reply before the queue answers");
        p.message_queued(result);
        assert!(matches!(p.next_event(), Event::NeedInput));
        let out = String::from_utf8(p.output().to_vec()).expect("utf-8");
        assert!(out.starts_with(expected), "{out:?}");
        if result.is_ok() {
            assert!(
                out.starts_with(&format!("250 2.0.0 {id} queued\r\n")),
                "{out:?}"
            );
        }
        assert!(
            out.ends_with("250 2.0.0 Ok\r\n250 2.0.0 Ok\r\n"),
            "both NOOPs answered after: {out:?}"
        );
    }
}

#[test]
fn refused_content_is_an_event_before_its_reply() {
    let cases = [
        (Setup::Mx, "a\0b", ContentRefusal::Nul, "550 5.6.0 "),
        (
            Setup::MxRejectBare,
            "a\nb",
            ContentRefusal::BareLineEnding,
            "550 5.6.0 ",
        ),
        (
            Setup::Mx,
            &"a".repeat(999),
            ContentRefusal::LineTooLong,
            "500 5.5.2 ",
        ),
        (
            Setup::Mx,
            &"Received: x\r\n".repeat(11),
            ContentRefusal::Loop,
            "554 5.4.6 ",
        ),
    ];
    for (setup, content, reason, reply) in cases {
        let mut p = Protocol::new(params(setup));
        p.feed(
            [E, M, R, "DATA\r\n", content, "\r\n.\r\nNOOP\r\n"]
                .concat()
                .as_bytes(),
        );
        p.clear_output();
        let Event::Refused { id, reason: got } = p.next_event() else {
            panic!("{reason:?}: no refusal");
        };
        assert_eq!(got, reason);
        assert_eq!(reason.reply().to_string().get(..10), Some(reply));
        assert!(!id.to_string().is_empty());
        let before = String::from_utf8(p.output().to_vec()).expect("utf-8");
        assert!(
            !before.contains(reply),
            "{reason:?}: replied before the event"
        );
        assert!(matches!(p.next_event(), Event::NeedInput));
        let out = String::from_utf8(p.output().to_vec()).expect("utf-8");
        assert!(
            out.ends_with(&format!("{}\r\n250 2.0.0 Ok\r\n", reason.reply())),
            "{reason:?}: {out:?}"
        );
        assert!(out.contains(reply), "{out:?}");
    }
    // A BDAT chunk over the size limit is refused at that chunk.
    let mut p = Protocol::new(params(Setup::Mx));
    let big = format!("BDAT 10001\r\n{}", "z".repeat(10_001));
    p.feed([E, M, R, &big].concat().as_bytes());
    assert!(matches!(
        p.next_event(),
        Event::Refused {
            reason: ContentRefusal::TooBig,
            ..
        }
    ));
}

#[test]
fn refusals_count_towards_the_error_limit() {
    // Strict: tarpit after 2 errors; a refused message is an error like any 5xx.
    let bad = [M, R, "DATA\r\na\0\r\n.\r\n"].concat();
    let t = run(Setup::Strict, &[[E, &bad, &bad, &bad].concat().as_bytes()]);
    assert_eq!(
        t.codes(),
        [220, 250, 250, 250, 354, 550, 250, 250, 354, 550, 250, 250, 354, 550]
    );
    assert_eq!(
        t.events,
        [
            "refused nul_octet",
            "refused nul_octet",
            "refused nul_octet",
            "tarpit 5ms"
        ]
    );
}

#[test]
fn in_data_during_data_and_bdat() {
    let mut p = Protocol::new(params(Setup::Mx));
    p.feed([E, M, R, "DATA\r\npart"].concat().as_bytes());
    assert!(matches!(p.next_event(), Event::NeedInput));
    assert!(p.in_data());
    p.feed(b"\r\n.\r\n");
    assert!(matches!(p.next_event(), Event::Message { .. }));
    assert!(!p.in_data());
    p.message_queued(Ok(()));
    p.feed([M, R, "BDAT 10\r\nabc"].concat().as_bytes());
    assert!(matches!(p.next_event(), Event::NeedInput));
    assert!(p.in_data());
    p.feed(b"defghij");
    assert!(matches!(p.next_event(), Event::NeedInput));
    assert!(!p.in_data());
}

#[test]
fn c07_ten_megabyte_line_is_not_buffered() {
    let mut p = Protocol::new(params(Setup::Mx));
    p.feed(b"NOOP ");
    let chunk = vec![b'x'; 64 * 1024];
    for _ in 0..160 {
        p.feed(&chunk);
        assert!(matches!(p.next_event(), Event::NeedInput));
        assert!(p.output().is_empty(), "no reply before the line ends");
    }
    p.feed(b"\r\nNOOP\r\n");
    assert!(matches!(p.next_event(), Event::NeedInput));
    assert_eq!(p.output(), b"500 5.5.2 Line too long\r\n250 2.0.0 Ok\r\n");
}

#[test]
fn starttls_event_repeats_until_established() {
    let mut p = Protocol::new(params(Setup::Mx));
    p.feed([E, "STARTTLS\r\nNOOP\r\n"].concat().as_bytes());
    assert!(matches!(p.next_event(), Event::StartTls));
    assert!(p.output().ends_with(b"220 2.0.0 Ready to start TLS\r\n"));
    p.clear_output();
    p.feed(b"NOOP\r\n");
    assert!(matches!(p.next_event(), Event::StartTls));
    assert!(!p.tls_active());
    p.tls_established("TLSv1.3 test".into());
    assert!(p.tls_active());
    assert!(matches!(p.next_event(), Event::NeedInput));
    assert!(
        p.output().is_empty(),
        "nothing fed before the handshake was executed"
    );
}
