//! The outbound side fed by a hostile peer: the reply reader alone (the same
//! replies whatever the chunking; codes in range; no control character in the text,
//! which reaches logs and DSNs), and a whole `ClientSession` that delivers two
//! messages to a peer answering with arbitrary bytes: it never panics or spins,
//! every message sent gets exactly one result with one disposition per recipient,
//! and what we write is CRLF lines only.
//!
//! With DATA, no body makes us write more ends of data than messages.
//!
//! Input: an options byte (TLS policy, credentials, body, its type), a cut-seed byte,
//! then the peer's bytes.

#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use way2mail_fuzz::cuts::cut;
use way2mail_smtp::client::{
    ClientEvent, ClientParams, ClientSession, Content, ContentScan, Credentials, OutboundMessage,
    OutboundRecipient, ReplyError, ReplyReader, TlsPolicy,
};
use way2mail_smtp::{BodyType, Notify, Reply, Ret};

/// A clean body with dot lines, and one as an old spool may hold it: the published
/// smuggling line ends, which must leave as CRLF, stuffed, never as an end of data.
const BODIES: [&[u8]; 2] = [
    b"Subject: fuzz\r\n\r\n.a line with a leading dot\r\n..\r\n.\r\nend\r\n",
    b"Subject: old\r\n\r\nx\n.\nMAIL FROM:<a@b>\r.\rRCPT TO:<c@d>\r\n.\nDATA\n.\r\nend\r",
];
const RECIPIENTS: usize = 3;

fuzz_target!(|data: &[u8]| {
    let [options, seed, peer @ ..] = data else {
        return;
    };
    let chunks = cut(peer, *seed);
    let whole = read_replies(&[peer]);
    assert_eq!(
        read_replies(&chunks),
        whole,
        "the chunking changed the replies"
    );
    session(*options, &chunks);
});

/// Every reply until the input ends or is no SMTP.
fn read_replies(chunks: &[&[u8]]) -> (Vec<Reply>, Option<ReplyError>) {
    let mut reader = ReplyReader::default();
    let (mut input, mut pos, mut replies) = (Vec::new(), 0, Vec::new());
    for chunk in chunks {
        input.extend_from_slice(chunk);
        loop {
            match reader.read(&input, &mut pos) {
                Ok(Some(reply)) => {
                    check_reply(&reply);
                    replies.push(reply);
                }
                Ok(None) => break,
                Err(e) => return (replies, Some(e)),
            }
        }
    }
    (replies, None)
}

fn check_reply(reply: &Reply) {
    assert!((200..=559).contains(&reply.code), "{reply}");
    if let Some(e) = reply.enhanced {
        assert_eq!(u16::from(e.class()), reply.class(), "{reply}");
    }
    let line = reply.to_string();
    assert!(!line.chars().any(char::is_control), "{line:?}");
}

/// The message for `options`; the second of a session streams its content (the
/// caller gives it in pieces at `SendContent`).
fn message(options: u8, streamed: bool) -> OutboundMessage {
    let recipient = |n: usize| OutboundRecipient {
        address: format!("r{n}@example.net"),
        notify: Notify::default(),
        orcpt: (n == 0).then(|| "rfc822;r0@example.net".to_string()),
    };
    OutboundMessage {
        sender: if options & 0x40 != 0 {
            String::new()
        } else {
            "a@example.org".into()
        },
        recipients: (0..RECIPIENTS).map(recipient).collect(),
        body_type: if options & 0x10 != 0 {
            BodyType::EightBitMime
        } else {
            BodyType::SevenBit
        },
        smtputf8: options & 0x20 != 0,
        ret: (options & 0x80 != 0).then_some(Ret::Headers),
        envid: (options & 0x80 != 0).then(|| "env+2Bid".to_string()),
        body: if streamed {
            let mut scan = ContentScan::default();
            for piece in pieces(options) {
                scan.push(piece);
            }
            Content::Streamed(scan.finish())
        } else {
            Content::Whole(Arc::new(body(options).to_vec()))
        },
    }
}

fn body(options: u8) -> &'static [u8] {
    BODIES[usize::from(options >> 3 & 1)]
}

/// The body cut in three, the cuts falling inside line ends and dot lines.
fn pieces(options: u8) -> [&'static [u8]; 3] {
    let b = body(options);
    let (one, two) = (b.len() / 3, 2 * b.len() / 3 + 1);
    [&b[..one], &b[one..two.min(b.len())], &b[two.min(b.len())..]]
}

fn session(options: u8, chunks: &[&[u8]]) {
    let tls = [
        TlsPolicy::Opportunistic,
        TlsPolicy::Required,
        TlsPolicy::None,
    ][usize::from(options & 3) % 3];
    let params = ClientParams {
        ehlo_name: "mx.example.org".into(),
        tls,
    };
    let mut c = ClientSession::new(params);
    if options & 4 != 0 {
        c = c.with_credentials(Credentials {
            user: "user".into(),
            password: "password".into(),
        });
    }
    let mut input = chunks.iter();
    let (mut sent, mut done) = (0, 0);
    let mut pending = None;
    let total: usize = chunks.iter().map(|c| c.len()).sum();
    let mut budget = 4 * total + 64;
    let mut written = Vec::new();
    loop {
        assert!(budget > 0, "no progress: too many events for the input");
        budget -= 1;
        let event = pending.take().unwrap_or_else(|| c.next_event());
        check_written(c.output());
        written.extend_from_slice(c.output());
        c.clear_output();
        match event {
            ClientEvent::NeedInput => match input.next() {
                Some(chunk) => c.feed(chunk),
                None => pending = Some(c.connection_lost()),
            },
            ClientEvent::StartTls => c.tls_established(),
            ClientEvent::Ready if sent < 2 => {
                sent += 1;
                c.send(message(options, sent == 2));
            }
            ClientEvent::SendContent => {
                // All of it before the next check: a piece may end between CR and LF.
                for piece in pieces(options) {
                    c.push_content(piece);
                }
                c.end_content();
            }
            ClientEvent::Ready => c.quit(),
            ClientEvent::Done(result) => {
                done += 1;
                let indexes: Vec<usize> = result.recipients.iter().map(|r| r.index).collect();
                assert_eq!(indexes, (0..RECIPIENTS).collect::<Vec<_>>());
                for r in &result.recipients {
                    check_reply(&r.disposition.reply());
                }
            }
            ClientEvent::Failed(failure) => {
                if let Some(reply) = &failure.reply {
                    check_reply(reply);
                }
            }
            ClientEvent::Closed => break,
        }
    }
    assert_eq!(done, sent, "a message sent without exactly one result");
    if find(&written, b"BDAT").is_none() {
        // DATA only: one end of data per message at most, whatever the body holds.
        let ends = written.windows(5).filter(|w| w == b"\r\n.\r\n").count();
        assert!(ends <= sent, "{ends} ends of data for {sent} messages");
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Our commands and the content: CRLF lines, no bare CR or LF, no NUL.
fn check_written(out: &[u8]) {
    for (i, &b) in out.iter().enumerate() {
        match b {
            b'\r' => assert_eq!(out.get(i + 1), Some(&b'\n'), "bare CR written"),
            b'\n' => assert!(i > 0 && out[i - 1] == b'\r', "bare LF written"),
            0 => panic!("NUL written"),
            _ => {}
        }
    }
    assert!(
        out.is_empty() || out.ends_with(b"\r\n"),
        "a partial line written"
    );
}
