//! The outbound SMTP client against scripted peers: tables of (peer bytes, expected
//! client bytes), each run twice, once with the peer's bytes fed whole and once a
//! byte at a time, which must give the same events and the same client bytes.

use std::sync::Arc;

use proptest::prelude::*;
use way2mail_smtp::client::TlsPolicy;
use way2mail_smtp::client::{
    ClientEvent, ClientParams, ClientSession, Content, ContentScan, DeliveryResult, Disposition,
    Interruption, OutboundMessage, OutboundRecipient,
};
use way2mail_smtp::{BodyType, Notify, Ret};

#[derive(Clone)]
enum Step {
    /// Bytes from the peer.
    Peer(&'static [u8]),
    /// What the client must have written since the last check.
    Client(&'static [u8]),
    Send(OutboundMessage),
    TlsUp,
    Quit,
    Lost,
}
use Step::*;

fn params(tls: TlsPolicy) -> ClientParams {
    ClientParams {
        ehlo_name: "out.example.org".to_string(),
        tls,
    }
}

fn message(rcpts: &[&str], body: &[u8]) -> OutboundMessage {
    OutboundMessage {
        sender: "a@example.org".to_string(),
        recipients: rcpts
            .iter()
            .map(|r| OutboundRecipient {
                address: r.to_string(),
                notify: Notify::default(),
                orcpt: None,
            })
            .collect(),
        body_type: BodyType::SevenBit,
        smtputf8: false,
        ret: None,
        envid: None,
        body: Content::Whole(Arc::new(body.to_vec())),
    }
}

/// Greeting and EHLO with the given answer.
fn hello(ehlo_reply: &'static [u8]) -> Vec<Step> {
    vec![
        Peer(b"220 mx.example.net ESMTP\r\n"),
        Client(b"EHLO out.example.org\r\n"),
        Peer(ehlo_reply),
    ]
}

fn with(mut first: Vec<Step>, rest: Vec<Step>) -> Vec<Step> {
    first.extend(rest);
    first
}

/// Takes events until the client waits on the caller; NeedInput is not recorded,
/// nor a waiting event that repeats the one before.
fn settle(c: &mut ClientSession, events: &mut Vec<ClientEvent>, out: &mut Vec<u8>) {
    loop {
        let event = c.next_event();
        out.extend_from_slice(c.output());
        c.clear_output();
        let waits = matches!(
            event,
            ClientEvent::NeedInput
                | ClientEvent::Ready
                | ClientEvent::StartTls
                | ClientEvent::Closed
        );
        if event != ClientEvent::NeedInput && !(waits && events.last() == Some(&event)) {
            events.push(event);
        }
        if waits {
            return;
        }
    }
}

fn run(tls: TlsPolicy, steps: &[Step], split: bool) -> (Vec<ClientEvent>, ClientSession) {
    let mut c = ClientSession::new(params(tls));
    let (mut events, mut out) = (Vec::new(), Vec::new());
    settle(&mut c, &mut events, &mut out);
    for step in steps {
        match step {
            Peer(bytes) if split => {
                for b in bytes.iter() {
                    c.feed(&[*b]);
                    settle(&mut c, &mut events, &mut out);
                }
            }
            Peer(bytes) => {
                c.feed(bytes);
                settle(&mut c, &mut events, &mut out);
            }
            Client(expected) => {
                assert_eq!(
                    String::from_utf8_lossy(&out),
                    String::from_utf8_lossy(expected),
                    "events so far: {events:?}"
                );
                out.clear();
            }
            Send(m) => {
                c.send(m.clone());
                settle(&mut c, &mut events, &mut out);
            }
            TlsUp => {
                c.tls_established();
                settle(&mut c, &mut events, &mut out);
            }
            Quit => {
                c.quit();
                settle(&mut c, &mut events, &mut out);
            }
            Lost => {
                events.push(c.connection_lost());
                settle(&mut c, &mut events, &mut out);
            }
        }
    }
    assert!(
        out.is_empty(),
        "unchecked output {:?}",
        String::from_utf8_lossy(&out)
    );
    (events, c)
}

/// Runs the script whole and split at every byte; both must agree.
fn check_with(tls: TlsPolicy, steps: Vec<Step>) -> (Vec<ClientEvent>, ClientSession) {
    let (split, _) = run(tls, &steps, true);
    let (whole, client) = run(tls, &steps, false);
    assert_eq!(whole, split);
    (whole, client)
}

fn check(steps: Vec<Step>) -> (Vec<ClientEvent>, ClientSession) {
    check_with(TlsPolicy::Opportunistic, steps)
}

fn results(events: &[ClientEvent]) -> Vec<&DeliveryResult> {
    events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Done(r) => Some(r),
            _ => None,
        })
        .collect()
}

/// Each recipient's fate and reply (`"Permanent 550 5.1.1 text"`), for the n-th
/// Done.
fn outcomes(events: &[ClientEvent], n: usize) -> Vec<String> {
    let result = results(events)[n];
    for (i, r) in result.recipients.iter().enumerate() {
        assert_eq!(r.index, i);
    }
    let pairs = result.recipients.iter();
    pairs
        .map(|r| {
            let d = &r.disposition;
            let fate = if d.is_delivered() {
                "Delivered"
            } else if d.is_permanent() {
                "Permanent"
            } else {
                "Temporary"
            };
            format!("{fate} {}", d.reply())
        })
        .collect()
}

fn failure(events: &[ClientEvent]) -> (bool, &'static str, Option<u16>) {
    match events.iter().find(|e| matches!(e, ClientEvent::Failed(_))) {
        Some(ClientEvent::Failed(f)) => (f.temporary, f.stage, f.reply.as_ref().map(|r| r.code)),
        _ => panic!("no failure in {events:?}"),
    }
}

#[test]
fn greeting_refusals() {
    let (events, _) = check(vec![Peer(b"554 5.7.1 go away\r\n"), Client(b"QUIT\r\n")]);
    assert_eq!(failure(&events), (false, "greeting", Some(554)));
    assert_eq!(events.last(), Some(&ClientEvent::Closed));
    let (events, _) = check(vec![
        Peer(b"450-busy\r\n450 later\r\n"),
        Client(b"QUIT\r\n"),
    ]);
    assert_eq!(failure(&events), (true, "greeting", Some(450)));
    // 421: the peer is gone, no QUIT.
    let (events, _) = check(vec![Peer(b"421 4.3.2 shutting down\r\n"), Client(b"")]);
    assert_eq!(failure(&events), (true, "greeting", Some(421)));
}

#[test]
fn ehlo_refused_falls_back_to_helo() {
    let steps = vec![
        Peer(b"220 old.example.net SMTP\r\n"),
        Client(b"EHLO out.example.org\r\n"),
        Peer(b"502 5.5.1 what\r\n"),
        Client(b"HELO out.example.org\r\n"),
        Peer(b"250 old.example.net\r\n"),
        Send(message(&["b@example.net", "c@example.net"], b"hi\r\n")),
        // No PIPELINING: one command at a time, and no parameters.
        Client(b"MAIL FROM:<a@example.org>\r\n"),
        Peer(b"250 ok\r\n"),
        Client(b"RCPT TO:<b@example.net>\r\n"),
        Peer(b"250 ok\r\n"),
        Client(b"RCPT TO:<c@example.net>\r\n"),
        Peer(b"250 ok\r\n"),
        Client(b"DATA\r\n"),
        Peer(b"354 go\r\n"),
        Client(b"hi\r\n.\r\n"),
        Peer(b"250 queued\r\n"),
    ];
    let (events, client) = check(steps);
    assert_eq!(client.extensions(), &Default::default());
    let ok = "Delivered 250 queued";
    assert_eq!(outcomes(&events, 0), [ok, ok]);
    assert_eq!(events.last(), Some(&ClientEvent::Ready));

    let steps = vec![
        Peer(b"220 x\r\n"),
        Client(b"EHLO out.example.org\r\n"),
        Peer(b"500 no\r\n"),
        Client(b"HELO out.example.org\r\n"),
        Peer(b"550 not you\r\n"),
        Client(b"QUIT\r\n"),
    ];
    let (events, _) = check(steps);
    assert_eq!(failure(&events), (false, "helo", Some(550)));
}

const PIPELINING: &[u8] = b"250-mx.example.net\r\n250-PIPELINING\r\n250 ENHANCEDSTATUSCODES\r\n";

#[test]
fn pipelined_batch_with_one_recipient_refused() {
    let steps = with(
        hello(PIPELINING),
        vec![
            Send(message(&["b@x.net", "c@x.net", "d@x.net"], b"Subject: x\r\n\r\nbody\r\n")),
            Client(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@x.net>\r\nRCPT TO:<c@x.net>\r\nRCPT TO:<d@x.net>\r\nDATA\r\n"),
            Peer(b"250 2.1.0 ok\r\n250 2.1.5 ok\r\n550-5.1.1 no such\r\n550 5.1.1 user\r\n250 2.1.5 ok\r\n354 go\r\n"),
            Client(b"Subject: x\r\n\r\nbody\r\n.\r\n"),
            Peer(b"250 2.0.0 queued as X\r\n"),
        ],
    );
    let (events, _) = check(steps);
    let ok = "Delivered 250 2.0.0 queued as X";
    assert_eq!(
        outcomes(&events, 0),
        [ok, "Permanent 550 5.1.1 no such user", ok]
    );
    assert!(!results(&events)[0].dsn_supported);
    assert_eq!(events.last(), Some(&ClientEvent::Ready));
}

#[test]
fn all_recipients_refused_resets() {
    let steps = with(
        hello(PIPELINING),
        vec![
            Send(message(&["b@x.net", "c@x.net"], b"x\r\n")),
            Client(
                b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@x.net>\r\nRCPT TO:<c@x.net>\r\nDATA\r\n",
            ),
            Peer(b"250 ok\r\n550 5.1.1 no\r\n452 4.2.2 full\r\n554 5.5.1 no valid recipients\r\n"),
            Client(b"RSET\r\n"),
            Peer(b"250 reset\r\n"),
        ],
    );
    let (events, _) = check(steps);
    let expected = ["Permanent 550 5.1.1 no", "Temporary 452 4.2.2 full"];
    assert_eq!(outcomes(&events, 0), expected);
    assert_eq!(events.last(), Some(&ClientEvent::Ready));

    // DATA accepted anyway: an empty message, not the body (RFC 2920 §3.1).
    let steps = with(
        hello(PIPELINING),
        vec![
            Send(message(&["b@x.net"], b"secret\r\n")),
            Client(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@x.net>\r\nDATA\r\n"),
            Peer(b"250 ok\r\n550 5.1.1 no\r\n354 go\r\n"),
            Client(b".\r\n"),
            Peer(b"554 no recipients\r\n"),
        ],
    );
    let (events, _) = check(steps);
    assert_eq!(outcomes(&events, 0), ["Permanent 550 5.1.1 no"]);

    // Without PIPELINING, the same RSET after the last refusal.
    let steps = with(
        hello(b"250 mx\r\n"),
        vec![
            Send(message(&["b@x.net"], b"x\r\n")),
            Client(b"MAIL FROM:<a@example.org>\r\n"),
            Peer(b"250 ok\r\n"),
            Client(b"RCPT TO:<b@x.net>\r\n"),
            Peer(b"550 no\r\n"),
            Client(b"RSET\r\n"),
            Peer(b"250 ok\r\n"),
        ],
    );
    let (events, _) = check(steps);
    assert_eq!(outcomes(&events, 0), ["Permanent 550 no"]);
    assert_eq!(events.last(), Some(&ClientEvent::Ready));
}

#[test]
fn mail_refused_applies_to_every_recipient() {
    let steps = with(
        hello(b"250 mx\r\n"),
        vec![
            Send(message(&["b@x.net", "c@x.net"], b"x\r\n")),
            Client(b"MAIL FROM:<a@example.org>\r\n"),
            Peer(b"451 4.7.1 greylisted\r\n"),
        ],
    );
    let (events, _) = check(steps);
    let grey = "Temporary 451 4.7.1 greylisted";
    assert_eq!(outcomes(&events, 0), [grey, grey]);
    assert_eq!(events.last(), Some(&ClientEvent::Ready));
}

#[test]
fn data_is_dot_stuffed_and_ends_with_crlf() {
    let body: &[u8] = b".first\r\nmiddle\n.after bare LF\r\n..two\r\nno dot.\r\n.";
    let steps = with(
        hello(b"250 mx\r\n"),
        vec![
            Send(message(&["b@x.net"], body)),
            Client(b"MAIL FROM:<a@example.org>\r\n"),
            Peer(b"250 ok\r\n"),
            Client(b"RCPT TO:<b@x.net>\r\n"),
            Peer(b"250 ok\r\n"),
            Client(b"DATA\r\n"),
            Peer(b"354 go\r\n"),
            // The bare LF goes out as CRLF and starts a line, which is stuffed.
            Client(b"..first\r\nmiddle\r\n..after bare LF\r\n...two\r\nno dot.\r\n..\r\n.\r\n"),
            Peer(b"554 5.6.0 rejected\r\n"),
        ],
    );
    let (events, _) = check(steps);
    assert_eq!(outcomes(&events, 0), ["Permanent 554 5.6.0 rejected"]);
    assert_eq!(events.last(), Some(&ClientEvent::Ready));
}

#[test]
fn bdat_with_chunking() {
    let body: &[u8] = b".raw\nbody\r\n.";
    let ehlo = b"250-mx\r\n250-PIPELINING\r\n250-CHUNKING\r\n250 SIZE 1000\r\n";
    let steps = with(
        hello(ehlo),
        vec![
            Send(message(&["b@x.net", "c@x.net"], body)),
            // SIZE and the chunk count the octets as sent: the bare LF becomes CRLF.
            Client(
                b"MAIL FROM:<a@example.org> SIZE=13\r\nRCPT TO:<b@x.net>\r\nRCPT TO:<c@x.net>\r\n",
            ),
            Peer(b"250 ok\r\n250 ok\r\n250 ok\r\n"),
            Client(b"BDAT 13 LAST\r\n.raw\r\nbody\r\n."),
            Peer(b"250-2.0.0 ok\r\n250 2.0.0 queued\r\n"),
            // A refused BDAT is followed by RSET (RFC 3030).
            Send(message(&["b@x.net", "c@x.net"], b"x")),
            Client(
                b"MAIL FROM:<a@example.org> SIZE=1\r\nRCPT TO:<b@x.net>\r\nRCPT TO:<c@x.net>\r\n",
            ),
            Peer(b"250 ok\r\n250 ok\r\n550 5.1.1 no\r\n"),
            Client(b"BDAT 1 LAST\r\nx"),
            Peer(b"452 4.3.1 full\r\n"),
            Client(b"RSET\r\n"),
            Peer(b"250 ok\r\n"),
        ],
    );
    let (events, _) = check(steps);
    let ok = "Delivered 250 2.0.0 ok queued";
    assert_eq!(outcomes(&events, 0), [ok, ok]);
    let second = ["Temporary 452 4.3.1 full", "Permanent 550 5.1.1 no"];
    assert_eq!(outcomes(&events, 1), second);
    assert_eq!(events.last(), Some(&ClientEvent::Ready));
}

#[test]
fn bdat_without_pipelining_waits_for_each_reply() {
    let steps = with(
        hello(b"250-mx\r\n250 CHUNKING\r\n"),
        vec![
            Send(message(&["b@x.net"], b"hello")),
            Client(b"MAIL FROM:<a@example.org>\r\n"),
            Peer(b"250 ok\r\n"),
            Client(b"RCPT TO:<b@x.net>\r\n"),
            Peer(b"250 ok\r\n"),
            Client(b"BDAT 5 LAST\r\nhello"),
            Peer(b"250 ok\r\n"),
        ],
    );
    let (events, _) = check(steps);
    assert_eq!(outcomes(&events, 0), ["Delivered 250 ok"]);
}

#[test]
fn size_limit_refuses_before_sending() {
    let steps = with(
        hello(b"250-mx\r\n250 SIZE 10\r\n"),
        vec![
            Send(message(&["b@x.net", "c@x.net"], b"01234567890")),
            Client(b""),
            Send(message(&["b@x.net"], b"0123456789")),
            Client(b"MAIL FROM:<a@example.org> SIZE=10\r\n"),
            Peer(b"250 ok\r\n"),
            Client(b"RCPT TO:<b@x.net>\r\n"),
            Peer(b"250 ok\r\n"),
            Client(b"DATA\r\n"),
            Peer(b"354 go\r\n"),
            Client(b"0123456789\r\n.\r\n"),
            Peer(b"250 ok\r\n"),
        ],
    );
    let (events, _) = check(steps);
    let first = outcomes(&events, 0);
    assert_eq!(first.len(), 2);
    for r in first {
        assert!(r.starts_with("Permanent 552 5.3.4 "), "{r}");
    }
    assert_eq!(outcomes(&events, 1), ["Delivered 250 ok"]);
}

#[test]
fn smtputf8_needed_but_missing() {
    let mut m = message(&["b@x.net"], b"x\r\n");
    m.smtputf8 = true;
    let steps = with(hello(b"250 mx\r\n"), vec![Send(m.clone()), Client(b"")]);
    let (events, _) = check(steps);
    let r = &outcomes(&events, 0)[0];
    assert!(r.starts_with("Permanent 553 5.6.7 "), "{r}");

    // A UTF-8 address needs it too, even without the flag.
    let steps = with(
        hello(b"250 mx\r\n"),
        vec![Send(message(&["j\u{f6}rg@x.net"], b"x")), Client(b"")],
    );
    let (events, _) = check(steps);
    assert!(outcomes(&events, 0)[0].starts_with("Permanent 553 5.6.7 "));

    let steps = with(
        hello(b"250-mx\r\n250 SMTPUTF8\r\n"),
        vec![Send(m), Client(b"MAIL FROM:<a@example.org> SMTPUTF8\r\n")],
    );
    check(steps);
}

#[test]
fn eight_bit_body_and_8bitmime() {
    let mut eight = message(&["b@x.net"], "caf\u{e9}\r\n".as_bytes());
    eight.body_type = BodyType::EightBitMime;
    let mut clean = message(&["b@x.net"], b"cafe\r\n");
    clean.body_type = BodyType::EightBitMime;
    let steps = with(
        hello(b"250 mx\r\n"),
        vec![
            Send(eight.clone()),
            Client(b""),
            // Declared 8-bit but 7-bit clean: goes, without BODY=.
            Send(clean),
            Client(b"MAIL FROM:<a@example.org>\r\n"),
        ],
    );
    let (events, _) = check(steps);
    let r = &outcomes(&events, 0)[0];
    assert!(r.starts_with("Permanent 554 5.6.3 "), "{r}");

    let steps = with(
        hello(b"250-mx\r\n250 8BITMIME\r\n"),
        vec![
            Send(eight),
            Client(b"MAIL FROM:<a@example.org> BODY=8BITMIME\r\n"),
        ],
    );
    check(steps);
}

fn dsn_message() -> OutboundMessage {
    let mut m = message(&["b@x.net", "c@x.net", "d@x.net"], b"x\r\n");
    m.ret = Some(Ret::Headers);
    m.envid = Some("QQ314159".to_string());
    m.recipients[0].notify = Notify {
        success: true,
        failure: true,
        ..Notify::default()
    };
    m.recipients[0].orcpt = Some("rfc822;b@x.net".to_string());
    m.recipients[1].notify.never = true;
    m
}

#[test]
fn dsn_parameters_only_to_a_peer_with_dsn() {
    let steps = with(
        hello(b"250-mx\r\n250-PIPELINING\r\n250 DSN\r\n"),
        vec![
            Send(dsn_message()),
            Client(
                b"MAIL FROM:<a@example.org> RET=HDRS ENVID=QQ314159\r\n\
                  RCPT TO:<b@x.net> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b@x.net\r\n\
                  RCPT TO:<c@x.net> NOTIFY=NEVER\r\n\
                  RCPT TO:<d@x.net>\r\nDATA\r\n",
            ),
            Peer(b"250 ok\r\n250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n"),
            Client(b"x\r\n.\r\n"),
            Peer(b"250 ok\r\n"),
        ],
    );
    let (events, _) = check(steps);
    assert!(results(&events)[0].dsn_supported);

    let steps = with(
        hello(PIPELINING),
        vec![
            Send(dsn_message()),
            Client(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@x.net>\r\nRCPT TO:<c@x.net>\r\nRCPT TO:<d@x.net>\r\nDATA\r\n"),
            Peer(b"250 ok\r\n250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n"),
            Client(b"x\r\n.\r\n"),
            Peer(b"250 ok\r\n"),
        ],
    );
    let (events, _) = check(steps);
    assert!(!results(&events)[0].dsn_supported);
}

const TLS_EHLO: &[u8] = b"250-mx\r\n250 STARTTLS\r\n";

#[test]
fn starttls_opportunistic() {
    let steps = with(
        hello(TLS_EHLO),
        vec![
            Client(b"STARTTLS\r\n"),
            Peer(b"220 2.0.0 go ahead\r\n"),
            TlsUp,
            Client(b"EHLO out.example.org\r\n"),
            // STARTTLS again after TLS is ignored.
            Peer(b"250-mx\r\n250-STARTTLS\r\n250 PIPELINING\r\n"),
        ],
    );
    let (events, client) = check(steps);
    assert_eq!(events, [ClientEvent::StartTls, ClientEvent::Ready]);
    assert!(client.tls_active());
    assert!(client.extensions().pipelining);

    // Refused: plaintext goes on. Not offered: plaintext.
    let steps = with(
        hello(TLS_EHLO),
        vec![Client(b"STARTTLS\r\n"), Peer(b"454 4.7.0 no TLS\r\n")],
    );
    let (events, client) = check(steps);
    assert_eq!(events, [ClientEvent::Ready]);
    assert!(!client.tls_active());
    let (events, _) = check(hello(b"250 mx\r\n"));
    assert_eq!(events, [ClientEvent::Ready]);
}

#[test]
fn starttls_required_and_none() {
    let steps = with(hello(b"250 mx\r\n"), vec![Client(b"QUIT\r\n")]);
    let (events, _) = check_with(TlsPolicy::Required, steps);
    assert_eq!(failure(&events), (true, "starttls", None));
    let steps = with(
        hello(TLS_EHLO),
        vec![
            Client(b"STARTTLS\r\n"),
            Peer(b"554 5.7.0 no\r\n"),
            Client(b"QUIT\r\n"),
        ],
    );
    let (events, _) = check_with(TlsPolicy::Required, steps);
    assert_eq!(failure(&events), (true, "starttls", Some(554)));
    let steps = with(
        hello(TLS_EHLO),
        vec![Client(b"STARTTLS\r\n"), Peer(b"220 go\r\n"), TlsUp],
    );
    let steps = with(
        steps,
        vec![Client(b"EHLO out.example.org\r\n"), Peer(b"250 mx\r\n")],
    );
    let (events, _) = check_with(TlsPolicy::Required, steps);
    assert_eq!(events, [ClientEvent::StartTls, ClientEvent::Ready]);
    // None: never STARTTLS.
    let (events, client) = check_with(TlsPolicy::None, hello(TLS_EHLO));
    assert_eq!(events, [ClientEvent::Ready]);
    assert!(client.extensions().starttls);
}

#[test]
fn plaintext_after_starttls_reply_is_refused() {
    let steps = with(
        hello(TLS_EHLO),
        vec![
            Client(b"STARTTLS\r\n"),
            Peer(b"220 go\r\n250 injected\r\n"),
            Client(b"QUIT\r\n"),
        ],
    );
    // Split, the 220 alone looks fine, so only the whole run can see the injection.
    let (events, _) = run(TlsPolicy::Opportunistic, &steps, false);
    assert_eq!(failure(&events), (true, "protocol", None));
}

#[test]
fn peer_421_mid_transaction() {
    let steps = with(
        hello(PIPELINING),
        vec![
            Send(message(&["b@x.net", "c@x.net", "d@x.net"], b"x\r\n")),
            Client(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@x.net>\r\nRCPT TO:<c@x.net>\r\nRCPT TO:<d@x.net>\r\nDATA\r\n"),
            Peer(b"250 ok\r\n550 5.1.1 no\r\n421 4.7.0 too fast\r\n"),
            Client(b""),
        ],
    );
    let (events, _) = check(steps);
    let slow = "Temporary 421 4.7.0 too fast";
    assert_eq!(outcomes(&events, 0), ["Permanent 550 5.1.1 no", slow, slow]);
    assert!(matches!(events[events.len() - 3], ClientEvent::Done(_)));
    assert_eq!(failure(&events), (true, "rcpt", Some(421)));
    assert_eq!(events.last(), Some(&ClientEvent::Closed));

    // 421 as the answer to the content.
    let steps = with(
        hello(PIPELINING),
        vec![
            Send(message(&["b@x.net"], b"x\r\n")),
            Client(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@x.net>\r\nDATA\r\n"),
            Peer(b"250 ok\r\n250 ok\r\n354 go\r\n"),
            Client(b"x\r\n.\r\n"),
            Peer(b"421 bye\r\n"),
        ],
    );
    let (events, _) = check(steps);
    assert_eq!(outcomes(&events, 0), ["Temporary 421 bye"]);
    assert_eq!(failure(&events), (true, "data", Some(421)));
}

#[test]
fn two_messages_on_one_connection_then_quit() {
    let steps = with(
        hello(PIPELINING),
        vec![
            Send(message(&["b@x.net"], b"one\r\n")),
            Client(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@x.net>\r\nDATA\r\n"),
            Peer(b"250 ok\r\n250 ok\r\n354 go\r\n"),
            Client(b"one\r\n.\r\n"),
            Peer(b"250 first\r\n"),
            Send(message(&["c@x.net"], b"two\r\n")),
            Client(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<c@x.net>\r\nDATA\r\n"),
            Peer(b"250 ok\r\n250 ok\r\n354 go\r\n"),
            Client(b"two\r\n.\r\n"),
            Peer(b"250 second\r\n"),
            Quit,
            Client(b"QUIT\r\n"),
        ],
    );
    let (events, _) = check(steps);
    assert_eq!(outcomes(&events, 0), ["Delivered 250 first"]);
    assert_eq!(outcomes(&events, 1), ["Delivered 250 second"]);
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| match e {
            ClientEvent::Ready => "ready",
            ClientEvent::Done(_) => "done",
            ClientEvent::Closed => "closed",
            _ => "other",
        })
        .collect();
    assert_eq!(kinds, ["ready", "done", "ready", "done", "ready", "closed"]);
}

#[test]
fn garbage_replies_fail() {
    let long_line: &'static [u8] = Box::leak(vec![b'2'; 5000].into_boxed_slice());
    for greeting in [
        &b"hello\r\n"[..],
        b"250-a\r\n251 b\r\n",
        long_line,
        b"199 x\r\n",
    ] {
        let (events, _) = check(vec![Peer(greeting), Client(b"QUIT\r\n")]);
        assert_eq!(failure(&events), (true, "protocol", None), "{events:?}");
    }
    // Mid-transaction: the message is reported temporary first.
    let steps = with(
        hello(PIPELINING),
        vec![
            Send(message(&["b@x.net"], b"x\r\n")),
            Client(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@x.net>\r\nDATA\r\n"),
            Peer(b"250 ok\r\n250 ok\r\nSMTP? what is that\r\n"),
            Client(b"QUIT\r\n"),
        ],
    );
    let (events, _) = check(steps);
    assert!(outcomes(&events, 0)[0].starts_with("Temporary 451 4.5.0 "));
    assert_eq!(failure(&events), (true, "protocol", None));
    // Unsolicited data while idle.
    let steps = with(
        hello(b"250 mx\r\n"),
        vec![Peer(b"250 surprise\r\n"), Client(b"QUIT\r\n")],
    );
    let (events, _) = check(steps);
    assert_eq!(failure(&events), (true, "protocol", None));
}

#[test]
fn idle_421_and_connection_lost() {
    let steps = with(
        hello(b"250 mx\r\n"),
        vec![Peer(b"421 4.4.2 idle too long\r\n")],
    );
    let (events, _) = check(steps);
    assert_eq!(failure(&events), (true, "idle", Some(421)));

    let steps = with(
        hello(PIPELINING),
        vec![
            Send(message(&["b@x.net", "c@x.net"], b"x\r\n")),
            Client(
                b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@x.net>\r\nRCPT TO:<c@x.net>\r\nDATA\r\n",
            ),
            Peer(b"250 ok\r\n250 ok\r\n550 no\r\n"),
            Lost,
        ],
    );
    let (events, _) = check(steps);
    let expected = ["Temporary 421 4.4.2 connection lost", "Permanent 550 no"];
    assert_eq!(outcomes(&events, 0), expected);
    assert_eq!(failure(&events), (true, "data", None));

    let (events, _) = check(with(hello(b"250 mx\r\n"), vec![Lost]));
    assert_eq!(failure(&events), (true, "idle", None));
}

#[test]
fn send_when_not_ready_gives_the_message_back() {
    let mut c = ClientSession::new(params(TlsPolicy::Opportunistic));
    assert_eq!(c.next_event(), ClientEvent::NeedInput);
    c.send(message(&["b@x.net"], b"x"));
    match c.next_event() {
        ClientEvent::Done(r) => assert_eq!(
            r.recipients[0].disposition,
            Disposition::Interrupted(Interruption::NotReady)
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(c.output(), b"");
}

proptest! {
    #[test]
    fn arbitrary_peer_bytes_never_panic(
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..16),
        prefix in 0usize..4,
    ) {
        let mut c = ClientSession::new(params(TlsPolicy::Opportunistic));
        // Sometimes start from a sane session so that later stages see garbage too.
        let sane: [&[u8]; 3] = [b"220 x\r\n", b"250-x\r\n250-PIPELINING\r\n250-CHUNKING\r\n250 STARTTLS\r\n", b"220 go\r\n"];
        let feeds = sane.iter().take(prefix).map(|s| s.to_vec()).chain(chunks);
        for chunk in feeds {
            c.feed(&chunk);
            for _ in 0..8 {
                match c.next_event() {
                    ClientEvent::Ready => c.send(message(&["b@x.net", "c@x.net"], b".x\n")),
                    ClientEvent::StartTls => c.tls_established(),
                    ClientEvent::NeedInput | ClientEvent::Closed => break,
                    _ => {}
                }
            }
            c.clear_output();
        }
        // Whatever state it is in, a lost connection ends it within a few events.
        let mut last = c.connection_lost();
        for _ in 0..3 {
            if last == ClientEvent::Closed {
                break;
            }
            last = c.next_event();
        }
        prop_assert_eq!(last, ClientEvent::Closed);
    }
}

/// Every CR is followed by LF and every LF preceded by CR.
fn crlf_only(bytes: &[u8]) -> bool {
    bytes.iter().enumerate().all(|(i, &b)| match b {
        b'\r' => bytes.get(i + 1) == Some(&b'\n'),
        b'\n' => i > 0 && bytes[i - 1] == b'\r',
        _ => true,
    })
}

/// What the client writes for `body` once the peer said yes to everything up to the
/// content, with or without CHUNKING.
fn content_on_the_wire(body: &[u8], chunking: bool) -> Vec<u8> {
    content_written(body, chunking, None)
}

/// [`content_on_the_wire`] with the content streamed in `pieces` (`Some`), or given
/// whole (`None`).
fn content_written(body: &[u8], chunking: bool, pieces: Option<&[&[u8]]>) -> Vec<u8> {
    let mut c = ClientSession::new(params(TlsPolicy::None));
    let (mut events, mut out) = (Vec::new(), Vec::new());
    let ehlo: &[u8] = if chunking {
        b"250-mx\r\n250-PIPELINING\r\n250 CHUNKING\r\n"
    } else {
        b"250-mx\r\n250 PIPELINING\r\n"
    };
    for step in [&b"220 mx\r\n"[..], ehlo] {
        c.feed(step);
        settle(&mut c, &mut events, &mut out);
    }
    let mut m = message(&["b@x.net"], body);
    if let Some(pieces) = pieces {
        let mut scan = ContentScan::default();
        for p in pieces {
            scan.push(p);
        }
        m.body = Content::Streamed(scan.finish());
    }
    c.send(m);
    settle(&mut c, &mut events, &mut out);
    out.clear();
    let replies: &[u8] = if chunking {
        b"250 ok\r\n250 ok\r\n"
    } else {
        b"250 ok\r\n250 ok\r\n354 go\r\n"
    };
    c.feed(replies);
    if pieces.is_none() {
        settle(&mut c, &mut events, &mut out);
        return out;
    }
    // The driver's side of streaming: the event, the pieces, the end.
    loop {
        let event = c.next_event();
        out.extend_from_slice(&c.take_output(Vec::new()));
        match event {
            ClientEvent::SendContent => {
                for p in pieces.unwrap_or_default() {
                    c.push_content(p);
                    out.extend_from_slice(&c.take_output(Vec::new()));
                }
                c.end_content();
            }
            ClientEvent::NeedInput => return out,
            other => panic!("unexpected {other:?}"),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Whatever the spool holds, no bare CR or LF goes out; with DATA a receiver that
    /// also ends lines at a bare LF finds the end of data exactly where a strict one
    /// does; with BDAT the size announced is the size sent.
    #[test]
    fn outbound_content_never_has_a_bare_cr_or_lf(
        body in proptest::collection::vec(
            prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'.'), Just(0u8), any::<u8>()],
            0..400,
        ),
    ) {
        let data = content_on_the_wire(&body, false);
        prop_assert!(crlf_only(&data), "{:?}", data);
        prop_assert!(data.ends_with(b"\r\n.\r\n"));
        let end = data.windows(3).enumerate().position(|(i, w)| {
            w == b".\r\n" && (i == 0 || data[i - 1] == b'\n')
        });
        prop_assert_eq!(end.map(|i| i + 3), Some(data.len()), "{:?}", data);

        let bdat = content_on_the_wire(&body, true);
        let text = String::from_utf8_lossy(&bdat);
        let header_end = text.find("\r\n").map(|p| p + 2);
        prop_assert!(header_end.is_some());
        let header_end = header_end.unwrap_or_default();
        let size: usize = text[5..header_end - 7].parse().unwrap_or(usize::MAX);
        prop_assert!(text.starts_with("BDAT ") && text[..header_end].ends_with(" LAST\r\n"));
        prop_assert_eq!(bdat.len() - header_end, size);
        prop_assert!(crlf_only(&bdat[header_end..]), "{:?}", bdat);
    }

    /// Streamed content, cut anywhere, goes out exactly as the whole body does.
    #[test]
    fn streamed_content_goes_out_as_whole_content_does(
        body in proptest::collection::vec(
            prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'.'), any::<u8>()],
            0..400,
        ),
        cuts in proptest::collection::vec(0usize..400, 0..8),
    ) {
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(body.len())).collect();
        cuts.sort_unstable();
        let mut pieces: Vec<&[u8]> = Vec::new();
        let mut from = 0;
        for c in cuts.into_iter().chain([body.len()]) {
            pieces.push(&body[from..c]);
            from = c;
        }
        for chunking in [false, true] {
            prop_assert_eq!(
                content_written(&body, chunking, Some(&pieces)),
                content_on_the_wire(&body, chunking)
            );
        }
    }
}
