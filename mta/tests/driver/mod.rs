//! The test driver shared by the integration tests: builds session parameters for a
//! few listener setups and runs client bytes through a `Protocol` the way the real
//! session loop does, answering `Message` with `message_queued(Ok)` and `StartTls`
//! with `tls_established("TLSv1.3 test")` at the next phase boundary.

#![allow(dead_code)]

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use way2mail_mta::relay::RelayPolicy;
use way2mail_mta::smtp::{Event, Limits, Protocol, Role, SessionParams};
use way2mail_queue::Envelope;

pub const HOST: &str = "mx.example.org";
pub const UNTRUSTED: &str = "203.0.113.5";
pub const TRUSTED: &str = "10.1.2.3";

/// A listener configuration used by the dialogues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setup {
    /// Port 25, untrusted client, STARTTLS available, max 100 recipients, 10 000 octets.
    Mx,
    /// Port 25 from a trusted network (may relay).
    MxTrusted,
    /// Port 25 without a certificate.
    MxNoTls,
    /// Port 587.
    Submission,
    /// Port 465 (TLS from the start).
    Submissions,
    /// Port 25 with max 5 errors, tarpit after 2.
    Strict,
}

pub fn limits() -> Limits {
    Limits {
        max_message_size: 10_000,
        max_recipients: 100,
        max_errors: 50,
        tarpit_after_errors: 40,
        tarpit_delay: Duration::from_millis(5),
        max_received_headers: 10,
    }
}

pub fn params(setup: Setup) -> SessionParams {
    let relay = RelayPolicy::new(&["example.org".to_string()], &["10.0.0.0/8".to_string()])
        .expect("valid test relay policy");
    let ip: IpAddr = match setup {
        Setup::MxTrusted => TRUSTED,
        _ => UNTRUSTED,
    }
    .parse()
    .expect("valid test ip");
    let mut limits = limits();
    if setup == Setup::Strict {
        limits.max_errors = 5;
        limits.tarpit_after_errors = 2;
    }
    SessionParams {
        hostname: HOST.to_string(),
        role: match setup {
            Setup::Submission => Role::Submission,
            Setup::Submissions => Role::Submissions,
            _ => Role::Mx,
        },
        client_ip: ip,
        tls_active: setup == Setup::Submissions,
        tls_available: setup != Setup::MxNoTls,
        limits,
        relay: Arc::new(relay),
        tenants: None,
    }
}

/// One accepted message.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub envelope: Envelope,
    pub body: Vec<u8>,
}

impl Accepted {
    /// The body after our `Received:` header (which holds the id and the date).
    pub fn content(&self) -> &[u8] {
        let end = find(&self.body, b" +0000\r\n").expect("Received header ends with the date");
        &self.body[end + 8..]
    }

    pub fn received(&self) -> &str {
        let end = self.body.len() - self.content().len();
        std::str::from_utf8(&self.body[..end]).expect("ASCII header")
    }
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Everything a dialogue produced.
#[derive(Debug, Clone, Default)]
pub struct Transcript {
    pub output: Vec<u8>,
    /// Non-`NeedInput` events, in order, as comparable text.
    pub events: Vec<String>,
    pub messages: Vec<Accepted>,
    pub closed: bool,
}

impl Transcript {
    /// The code of every reply (a multi-line reply counts once).
    pub fn codes(&self) -> Vec<u16> {
        self.lines()
            .filter(|l| l.as_bytes().get(3) != Some(&b'-'))
            .map(|l| l[..3].parse().expect("reply starts with a code"))
            .collect()
    }

    pub fn lines(&self) -> impl Iterator<Item = &str> {
        std::str::from_utf8(&self.output)
            .expect("replies are UTF-8")
            .split("\r\n")
            .filter(|l| !l.is_empty())
    }

    /// Messages with the parts that differ between runs (id, date) removed.
    pub fn comparable(&self) -> Vec<(Envelope, Vec<u8>)> {
        self.messages
            .iter()
            .map(|m| {
                let mut e = m.envelope.clone();
                e.received_at_ms = 0;
                (e, m.content().to_vec())
            })
            .collect()
    }
}

/// Runs a dialogue: `phases[i]` is fed as the chunks `chunks(i)`; between phases a
/// pending STARTTLS handshake completes.
pub fn run_chunked(setup: Setup, phases: &[Vec<&[u8]>]) -> Transcript {
    let mut p = Protocol::new(params(setup));
    let mut t = Transcript::default();
    p.greeting();
    let mut tls_pending = false;
    for phase in phases {
        if tls_pending {
            p.tls_established("TLSv1.3 test".to_string());
            tls_pending = false;
        }
        for chunk in phase {
            p.feed(chunk);
            if tls_pending {
                // Plaintext sent before the handshake: fed, never executed.
                continue;
            }
            if drive(&mut p, &mut t, &mut tls_pending) {
                return t;
            }
        }
    }
    t
}

/// Calls `next_event` until input is needed; true when the session closed.
pub fn drive(p: &mut Protocol, t: &mut Transcript, tls_pending: &mut bool) -> bool {
    loop {
        let event = p.next_event();
        t.output.extend_from_slice(p.output());
        p.clear_output();
        match event {
            Event::NeedInput => return false,
            Event::StartTls => {
                t.events.push("starttls".into());
                *tls_pending = true;
                return false;
            }
            Event::Message { id, envelope, body } => {
                assert!(
                    find(&body, id.to_string().as_bytes()).is_some(),
                    "the Received header names the message id"
                );
                t.events.push(format!("message from <{}>", envelope.sender));
                t.messages.push(Accepted { envelope, body });
                p.message_queued(Ok(()));
            }
            Event::Tarpit(d) => t.events.push(format!("tarpit {}ms", d.as_millis())),
            Event::Authenticate { username, .. } => {
                t.events.push(format!("authenticate {username}"));
                p.auth_result(way2mail_mta::smtp::AuthVerdict::Rejected);
            }
            Event::Close => {
                t.events.push("close".into());
                t.closed = true;
                return true;
            }
        }
    }
}

/// Each phase fed whole.
pub fn run(setup: Setup, phases: &[&[u8]]) -> Transcript {
    let phases: Vec<Vec<&[u8]>> = phases.iter().map(|p| vec![*p]).collect();
    run_chunked(setup, &phases)
}
