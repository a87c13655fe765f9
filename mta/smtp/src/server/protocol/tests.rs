//! Buffering bounds and the wiping of AUTH lines, checked on `Protocol`'s private
//! state.

use super::*;
use crate::relay::RelayPolicy;
use crate::server::{Grant, Limits, Role, TenantPolicy};
use proptest::prelude::*;
use std::sync::Arc;

/// A policy that allows everything: these tests are about buffering.
#[derive(Debug)]
struct AllowAll;

impl TenantPolicy for AllowAll {
    fn check_sender(&self, _: &Grant, _: &str) -> Result<(), Reply> {
        Ok(())
    }
    fn check_recipient(&self, _: &Grant, _: &str, _: usize) -> Result<(), Reply> {
        Ok(())
    }
    fn message_queued(&self, _: &Grant) {}
}

/// Port 25 without tenants, or port 465 with AUTH on.
fn protocol_with(auth: bool) -> Protocol {
    Protocol::new(SessionParams {
        hostname: "mx.example.org".into(),
        role: if auth { Role::Submissions } else { Role::Mx },
        client_ip: "10.0.0.1".parse().expect("ip"),
        tls_active: auth,
        tls_available: true,
        limits: Limits::default(),
        relay: Arc::new(
            RelayPolicy::new(&["example.org".into()], &["10.0.0.0/8".into()]).expect("policy"),
        ),
        tenants: auth.then(|| Arc::new(AllowAll) as Arc<dyn TenantPolicy>),
        intake: None,
        blocked: None,
    })
}

fn protocol() -> Protocol {
    protocol_with(false)
}

/// What stays buffered once `next_event` asks for input.
fn check_bounded(p: &Protocol) {
    let left = p.input.len() - p.pos;
    let line = if p.state.auth_enabled() {
        MAX_AUTH_LINE
    } else {
        MAX_COMMAND_LINE
    };
    match p.mode {
        Mode::Command => assert!(left < line, "{left} octets kept"),
        Mode::Auth(_) => assert!(left < MAX_AUTH_LINE, "{left} octets kept"),
        Mode::SkipLine(_) | Mode::Data(..) | Mode::Bdat { .. } => assert_eq!(left, 0),
        _ => {}
    }
}

#[test]
fn ten_megabyte_line_keeps_memory_flat() {
    let mut p = protocol();
    let chunk = vec![b'x'; 64 * 1024];
    for _ in 0..160 {
        p.feed(&chunk);
        assert!(matches!(p.next_event(), Event::NeedInput));
        check_bounded(&p);
        assert!(p.input.capacity() <= 2 * chunk.len(), "input capacity grew");
    }
    assert!(matches!(p.mode, Mode::SkipLine(_)));
}

#[test]
fn ten_megabyte_auth_lines_keep_memory_flat() {
    let cases: [(&[u8], &[u8]); 2] = [
        (b"EHLO a\r\nAUTH PLAIN ", b"500 5.5.2 Line too long\r\n"),
        (
            b"EHLO a\r\nAUTH LOGIN\r\n",
            b"500 5.5.6 Authentication Exchange line is too long\r\n",
        ),
    ];
    for (start, refusal) in cases {
        let mut p = protocol_with(true);
        p.feed(start);
        let chunk = vec![b'A'; 64 * 1024];
        for _ in 0..160 {
            p.feed(&chunk);
            assert!(matches!(p.next_event(), Event::NeedInput));
            check_bounded(&p);
            assert!(p.input.capacity() <= 2 * chunk.len(), "input capacity grew");
        }
        p.clear_output();
        p.feed(b"\r\nNOOP\r\n");
        assert!(matches!(p.next_event(), Event::NeedInput));
        assert_eq!(p.output(), [refusal, b"250 2.0.0 Ok\r\n"].concat());
    }
}

#[test]
fn processed_auth_lines_are_wiped_from_the_buffer() {
    let mut p = protocol_with(true);
    // "\0alice\0hunter2"
    p.feed(b"EHLO a\r\nAUTH PLAIN AGFsaWNlAGh1bnRlcjI=\r\nNOOP\r\n");
    let Event::Authenticate { password, .. } = p.next_event() else {
        panic!("credentials expected");
    };
    assert_eq!(password.as_str(), "hunter2");
    assert!(
        !p.input.windows(8).any(|w| w == b"AGFsaWNl"),
        "AUTH line left in the input buffer"
    );
    assert!(p.input.ends_with(b"NOOP\r\n"), "pipelined input kept");
    p.feed(b"AUTH LOGIN\r\nYWxpY2U=\r\naHVudGVyMg==\r\n");
    p.auth_result(crate::server::AuthVerdict::Rejected);
    assert!(matches!(p.next_event(), Event::Authenticate { .. }));
    for b64 in [&b"YWxpY2U="[..], b"aHVudGVyMg=="] {
        assert!(!p.input.windows(b64.len()).any(|w| w == b64));
    }
}

proptest! {
    #[test]
    fn buffered_input_is_bounded(
        auth in any::<bool>(),
        prefix in proptest::sample::select(vec![
            &b""[..],
            b"EHLO a.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<u@example.org>\r\nDATA\r\n",
            b"EHLO a.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<u@example.org>\r\nBDAT 3000\r\n",
            b"EHLO a.example\r\nAUTH PLAIN ",
            b"EHLO a.example\r\nAUTH LOGIN\r\n",
            b"EHLO a.example\r\nAUTH PLAIN\r\n",
        ]),
        bytes in proptest::collection::vec(any::<u8>(), 0..16000),
        cut in 1usize..700,
    ) {
        let mut p = protocol_with(auth);
        p.feed(prefix);
        for chunk in bytes.chunks(cut) {
            p.feed(chunk);
            loop {
                match p.next_event() {
                    Event::NeedInput => break,
                    Event::Message { .. } => p.message_queued(Ok(())),
                    Event::StartTls => p.tls_established("test".into()),
                    Event::Tarpit(_) | Event::Refused { .. } | Event::Content { .. } => {}
                    Event::Close => return Ok(()),
                    Event::Authenticate { .. } => p.auth_result(crate::server::AuthVerdict::Rejected),
                }
            }
            check_bounded(&p);
            p.clear_output();
        }
    }
}

/// The bounce intake of a test: `b-…@bounces.example.org` are its addresses,
/// other addresses of that domain are refused.
#[derive(Debug)]
struct Bounces;

impl crate::server::Intake for Bounces {
    fn check(&self, address: &str) -> Option<Result<(), Reply>> {
        let (local, domain) = address.rsplit_once('@')?;
        if !domain.eq_ignore_ascii_case("bounces.example.org") {
            return None;
        }
        Some(if local.starts_with("b-") {
            Ok(())
        } else {
            Err(Reply::new(
                550,
                EnhancedCode::new(5, 1, 1),
                "No such recipient",
            ))
        })
    }
}

/// Every reply `p` writes for `lines`, one string per reply line.
fn replies(p: &mut Protocol, lines: &[&str]) -> Vec<String> {
    p.clear_output();
    for line in lines {
        p.feed(format!("{line}\r\n").as_bytes());
        while !matches!(p.next_event(), Event::NeedInput) {}
    }
    String::from_utf8_lossy(p.output())
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn intake_recipients_are_accepted_from_anyone_and_kept_apart() {
    let mut p = Protocol::new(SessionParams {
        hostname: "mx.example.org".into(),
        role: Role::Mx,
        client_ip: "192.0.2.7".parse().expect("ip"),
        tls_active: false,
        tls_available: true,
        limits: Limits::default(),
        relay: Arc::new(
            RelayPolicy::new(&["example.org".into()], &["10.0.0.0/8".into()]).expect("policy"),
        ),
        tenants: None,
        intake: Some(Arc::new(Bounces)),
        blocked: None,
    });
    let got = replies(
        &mut p,
        &[
            "EHLO mx.remote.example",
            "MAIL FROM:<>",
            "RCPT TO:<nobody@bounces.example.org>",
            "RCPT TO:<b-1@bounces.example.org>",
            "RCPT TO:<user@example.org>",
            "RCPT TO:<b-2@Bounces.example.org>",
            "RSET",
            "MAIL FROM:<>",
            "RCPT TO:<user@example.org>",
            "RCPT TO:<b-1@bounces.example.org>",
            "RCPT TO:<user@elsewhere.example>",
        ],
    );
    let codes: Vec<&str> = got
        .iter()
        .filter(|l| !l.starts_with("250-"))
        .map(|l| &l[..3])
        .collect();
    assert_eq!(
        codes,
        ["250", "250", "550", "250", "452", "250", "250", "250", "250", "452", "550"],
        "{got:?}"
    );
}
