//! AUTH and tenant behaviour driven through the API: where AUTH is advertised, what
//! an authenticated message carries (envelope origin, `Received:` keyword without the
//! user name), the tenant policy hearing only of messages really queued, the wait
//! for a verdict, and passwords kept out of every `Debug` output.

mod driver;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use driver::{params_with_tenants, run, Setup, Transcript, PASSWORD};
use way2mail_smtp::server::{AuthMechanism, AuthVerdict, Event, Grant, Protocol, QueueFailure};

const E: &str = "EHLO client.example\r\n";
const M: &str = "MAIL FROM:<user@acme.example>\r\n";
const R: &str = "RCPT TO:<user@example.org>\r\n";
const MSG: &str = "DATA\r\nSubject: t\r\n\r\nhello\r\n.\r\n";

fn alice() -> String {
    format!(
        "AUTH PLAIN {}\r\n",
        STANDARD.encode(format!("\0alice\0{PASSWORD}"))
    )
}

fn acme() -> Grant {
    Grant {
        tenant: "acme".into(),
        username: "alice".into(),
        credential_id: "cred-alice".into(),
    }
}

fn offers_auth(t: &Transcript) -> Vec<bool> {
    // One entry per EHLO answer: whether its extension list had AUTH.
    let mut answers = Vec::new();
    for l in t.lines().filter(|l| l.starts_with("250")) {
        if l.contains(" Hello ") {
            answers.push(false);
        } else if l[4..] == *"AUTH PLAIN LOGIN" {
            *answers
                .last_mut()
                .expect("AUTH after an EHLO greeting line") = true;
        }
    }
    answers
}

#[test]
fn c02_auth_advertised_only_inside_tls_on_submission_with_tenants() {
    let tls = |setup| {
        run(
            setup,
            &[[E, "STARTTLS\r\n"].concat().as_bytes(), E.as_bytes()],
        )
    };
    assert_eq!(offers_auth(&tls(Setup::AuthSubmission)), [false, true]);
    assert_eq!(offers_auth(&tls(Setup::AuthMx)), [false, false]);
    assert_eq!(offers_auth(&tls(Setup::Submission)), [false, false]);
    assert_eq!(
        offers_auth(&run(Setup::AuthSubmissions, &[E.as_bytes()])),
        [true]
    );
    assert_eq!(
        offers_auth(&run(Setup::AuthTrusted, &[E.as_bytes()])),
        [true]
    );
    assert_eq!(
        offers_auth(&run(Setup::Submissions, &[E.as_bytes()])),
        [false]
    );
    // A new EHLO after AUTH still lists it (the session stays authenticated).
    let again = run(
        Setup::AuthSubmissions,
        &[[E, &alice(), E].concat().as_bytes()],
    );
    assert_eq!(offers_auth(&again), [true, true]);
}

#[test]
fn authenticated_message_carries_user_and_tenant() {
    let t = run(
        Setup::AuthSubmissions,
        &[[E, &alice(), M, R, MSG].concat().as_bytes()],
    );
    assert_eq!(
        t.messages.len(),
        1,
        "{}",
        String::from_utf8_lossy(&t.output)
    );
    let m = &t.messages[0];
    assert_eq!(m.envelope.origin.auth.as_deref(), Some("alice"));
    assert_eq!(m.envelope.origin.tenant.as_deref(), Some("acme"));
    assert_eq!(m.envelope.origin.listener, "submissions");
    let received = m.received();
    assert!(received.contains(" with ESMTPSA id "), "{received}");
    assert!(
        !received.contains("alice") && !received.contains("acme"),
        "the Received header names no user: {received}"
    );
    assert_eq!(t.tenant_queued, [acme()]);
}

#[test]
fn unauthenticated_message_has_no_user() {
    let t = run(Setup::AuthTrusted, &[[E, M, R, MSG].concat().as_bytes()]);
    let m = &t.messages[0];
    assert_eq!(m.envelope.origin.auth, None);
    assert_eq!(m.envelope.origin.tenant, None);
    assert!(m.received().contains(" with ESMTPS id "));
    assert!(t.tenant_queued.is_empty());
}

/// Feeds a whole authenticated transaction and answers the credentials.
fn authenticated_message(p: &mut Protocol) {
    p.feed([E, &alice(), M, R, MSG].concat().as_bytes());
    let Event::Authenticate {
        mechanism,
        username,
        password,
    } = p.next_event()
    else {
        panic!("credentials expected");
    };
    assert_eq!(
        (mechanism, username.as_str(), password.as_str()),
        (AuthMechanism::Plain, "alice", PASSWORD)
    );
    p.auth_result(AuthVerdict::Accepted(acme()));
}

#[test]
fn message_queued_counts_only_messages_really_queued() {
    for failure in [
        QueueFailure::DiskFull,
        QueueFailure::Unhealthy,
        QueueFailure::Other,
    ] {
        let (params, fake) = params_with_tenants(Setup::AuthSubmissions);
        let fake = fake.expect("fake tenants");
        let mut p = Protocol::new(params);
        authenticated_message(&mut p);
        assert!(matches!(p.next_event(), Event::Message { .. }));
        p.message_queued(Err(failure));
        assert!(fake.queued.lock().expect("lock").is_empty(), "{failure:?}");
        // The same session queues the next message: counted once.
        p.feed([M, R, MSG].concat().as_bytes());
        assert!(matches!(p.next_event(), Event::Message { .. }));
        p.message_queued(Ok(()));
        p.message_queued(Ok(()));
        assert_eq!(*fake.queued.lock().expect("lock"), [acme()]);
    }
}

#[test]
fn input_waits_for_the_verdict() {
    let (params, _) = params_with_tenants(Setup::AuthSubmissions);
    let mut p = Protocol::new(params);
    p.feed([E, &alice(), "NOOP\r\n"].concat().as_bytes());
    assert!(matches!(p.next_event(), Event::Authenticate { .. }));
    p.clear_output();
    p.feed(M.as_bytes());
    for _ in 0..2 {
        assert!(matches!(p.next_event(), Event::NeedInput));
        assert!(p.output().is_empty(), "nothing answered before the verdict");
    }
    // A verdict nobody asked for changes nothing.
    p.message_queued(Ok(()));
    p.auth_result(AuthVerdict::Accepted(acme()));
    assert!(matches!(p.next_event(), Event::NeedInput));
    assert_eq!(
        p.output(),
        b"235 2.7.0 Authentication successful\r\n250 2.0.0 Ok\r\n250 2.1.0 Sender ok\r\n"
    );
    p.clear_output();
    p.auth_result(AuthVerdict::LockedOut);
    p.feed(b"NOOP\r\n");
    assert!(matches!(p.next_event(), Event::NeedInput));
    assert_eq!(p.output(), b"250 2.0.0 Ok\r\n", "stray verdict ignored");
}

#[test]
fn timeout_while_waiting_for_the_verdict() {
    let (params, _) = params_with_tenants(Setup::AuthSubmissions);
    let mut p = Protocol::new(params);
    p.feed([E, &alice()].concat().as_bytes());
    assert!(matches!(p.next_event(), Event::Authenticate { .. }));
    p.clear_output();
    p.timeout();
    p.auth_result(AuthVerdict::Accepted(acme()));
    assert!(matches!(p.next_event(), Event::Close));
    assert!(p.output().starts_with(b"421 4.4.2 "));
}

#[test]
fn passwords_never_in_debug_output() {
    let plain = STANDARD.encode(format!("\0alice\0{PASSWORD}"));
    let user = STANDARD.encode("alice");
    let pass = STANDARD.encode(PASSWORD);
    let (params, _) = params_with_tenants(Setup::AuthSubmissions);
    let mut p = Protocol::new(params);
    // A derived `Debug` would print buffered input as a list of numbers.
    let as_numbers = |s: &str| {
        format!("{:?}", s.as_bytes())
            .trim_matches(['[', ']'])
            .to_string()
    };
    let (plain_numbers, pass_numbers) = (as_numbers(&plain), as_numbers(&pass));
    let secrets = [
        PASSWORD,
        plain.as_str(),
        pass.as_str(),
        plain_numbers.as_str(),
        pass_numbers.as_str(),
    ];
    let clean = |what: &str, debug: String| {
        for s in secrets {
            assert!(!debug.contains(s), "{what} shows {s:?}: {debug}");
        }
    };
    // Credentials buffered, not yet processed.
    p.feed(format!("{E}AUTH PLAIN {plain}\r\nAUTH LOGIN {user}\r\n{pass}\r\n").as_bytes());
    clean("fed protocol", format!("{p:?}"));
    let event = p.next_event();
    assert!(matches!(event, Event::Authenticate { .. }));
    clean("PLAIN event", format!("{event:?}"));
    clean("PLAIN event (alternate)", format!("{event:#?}"));
    assert!(format!("{event:?}").contains("<redacted>"));
    clean("protocol awaiting the verdict", format!("{p:?}"));
    drop(event);
    p.auth_result(AuthVerdict::Rejected);
    let event = p.next_event();
    assert!(matches!(
        event,
        Event::Authenticate {
            mechanism: AuthMechanism::Login,
            ..
        }
    ));
    clean("LOGIN event", format!("{event:?}"));
    clean("protocol after LOGIN", format!("{p:?}"));
    clean("replies", String::from_utf8_lossy(p.output()).into_owned());
}

#[test]
fn message_event_debug_shows_no_content() {
    let (params, _) = params_with_tenants(Setup::AuthTrusted);
    let mut p = Protocol::new(params);
    p.feed(
        [
            E,
            M,
            R,
            "DATA\r\nSubject: confidential-words\r\n\r\nx\r\n.\r\n",
        ]
        .concat()
        .as_bytes(),
    );
    let event = p.next_event();
    let debug = format!("{event:?}");
    assert!(debug.starts_with("Message {"), "{debug}");
    assert!(debug.contains("body_len"), "{debug}");
    assert!(!debug.contains("confidential"), "{debug}");
}
