//! The test driver shared by the integration tests: builds session parameters for a
//! few listener setups and runs client bytes through a `Protocol` the way the real
//! session loop does, answering `Message` with `message_queued(Ok)`, `StartTls`
//! with `tls_established("TLSv1.3 test")` at the next phase boundary, and
//! `Authenticate` with the verdict [`verdict`] scripts for the credentials, and
//! recording `Refused` as `refused <reason>`. The
//! `Auth*` setups carry a [`FakeTenants`] policy, whose calls the transcript records.

#![allow(dead_code)]

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use way2mail_smtp::relay::RelayPolicy;
use way2mail_smtp::reply::{EnhancedCode, Reply};
use way2mail_smtp::server::{
    AuthVerdict, BareLineEndings, Event, Grant, Limits, Protocol, Role, SessionParams, TenantPolicy,
};
use way2mail_smtp::Envelope;

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
    /// Port 587 with tenants (AUTH after STARTTLS), untrusted client.
    AuthSubmission,
    /// Port 465 with tenants, untrusted client.
    AuthSubmissions,
    /// Port 465 with tenants, client in a trusted network.
    AuthTrusted,
    /// Port 25 with tenants: AUTH is still never offered there.
    AuthMx,
    /// Port 465 with tenants, max 5 errors, tarpit after 2.
    AuthStrict,
    /// Port 25, untrusted, with `bare_line_endings = "reject"`.
    MxRejectBare,
}

/// The scripted credentials: `alice`/`secret` is tenant `acme`; `bob`/`secret` belongs
/// to a suspended tenant; `locked` is locked out; `down` finds the policy unavailable;
/// anything else is wrong.
pub const PASSWORD: &str = "secret";

pub fn verdict(username: &str, password: &str) -> AuthVerdict {
    match (username, password) {
        ("alice", PASSWORD) => AuthVerdict::Accepted(Grant {
            tenant: "acme".into(),
            username: "alice".into(),
            credential_id: "cred-alice".into(),
        }),
        ("bob", PASSWORD) => AuthVerdict::TenantDisabled,
        ("locked", _) => AuthVerdict::LockedOut,
        ("down", _) => AuthVerdict::Unavailable,
        _ => AuthVerdict::Rejected,
    }
}

/// Tenant `acme` owns `acme.example`, may send 3 recipients per message, has
/// [`SUPPRESSED`] on its suppression list, and the fake records every
/// `message_queued` call.
#[derive(Debug, Default)]
pub struct FakeTenants {
    pub queued: Mutex<Vec<Grant>>,
}

pub const TENANT_DOMAIN: &str = "acme.example";
pub const TENANT_MAX_RECIPIENTS: usize = 3;
/// On acme's suppression list (compared ignoring case, as the daemon does).
pub const SUPPRESSED: &str = "unsubscribed@example.org";

impl TenantPolicy for FakeTenants {
    fn check_sender(&self, grant: &Grant, sender: &str) -> Result<(), Reply> {
        let ours = sender
            .rsplit_once('@')
            .is_some_and(|(_, d)| d.eq_ignore_ascii_case(TENANT_DOMAIN));
        if grant.tenant == "acme" && ours {
            Ok(())
        } else {
            Err(Reply::new(
                553,
                EnhancedCode::new(5, 7, 1),
                "Sender address not owned by tenant",
            ))
        }
    }

    fn check_recipient(&self, grant: &Grant, address: &str, count: usize) -> Result<(), Reply> {
        if count > TENANT_MAX_RECIPIENTS {
            Err(Reply::new(
                452,
                EnhancedCode::new(4, 5, 3),
                "Tenant limit: 3 recipients per message",
            ))
        } else if grant.tenant == "acme" && address.eq_ignore_ascii_case(SUPPRESSED) {
            Err(Reply::owned(
                550,
                EnhancedCode::new(5, 7, 1),
                format!("Recipient <{address}> is on this account's suppression list"),
            ))
        } else {
            Ok(())
        }
    }

    fn message_queued(&self, grant: &Grant) {
        self.queued.lock().expect("fake lock").push(grant.clone());
    }
}

pub fn limits() -> Limits {
    Limits {
        max_message_size: 10_000,
        max_recipients: 100,
        max_errors: 50,
        tarpit_after_errors: 40,
        tarpit_delay: Duration::from_millis(5),
        max_received_headers: 10,
        bare_line_endings: BareLineEndings::Normalize,
    }
}

pub fn params(setup: Setup) -> SessionParams {
    params_with_tenants(setup).0
}

/// The parameters, and the fake policy they carry for the `Auth*` setups.
pub fn params_with_tenants(setup: Setup) -> (SessionParams, Option<Arc<FakeTenants>>) {
    let relay = RelayPolicy::new(&["example.org".to_string()], &["10.0.0.0/8".to_string()])
        .expect("valid test relay policy");
    let ip: IpAddr = match setup {
        Setup::MxTrusted | Setup::AuthTrusted => TRUSTED,
        _ => UNTRUSTED,
    }
    .parse()
    .expect("valid test ip");
    let mut limits = limits();
    if matches!(setup, Setup::Strict | Setup::AuthStrict) {
        limits.max_errors = 5;
        limits.tarpit_after_errors = 2;
    }
    if setup == Setup::MxRejectBare {
        limits.bare_line_endings = BareLineEndings::Reject;
    }
    let role = match setup {
        Setup::Submission | Setup::AuthSubmission => Role::Submission,
        Setup::Submissions | Setup::AuthSubmissions | Setup::AuthTrusted | Setup::AuthStrict => {
            Role::Submissions
        }
        _ => Role::Mx,
    };
    let fake = matches!(
        setup,
        Setup::AuthSubmission
            | Setup::AuthSubmissions
            | Setup::AuthTrusted
            | Setup::AuthMx
            | Setup::AuthStrict
    )
    .then(|| Arc::new(FakeTenants::default()));
    let params = SessionParams {
        hostname: HOST.to_string(),
        role,
        client_ip: ip,
        tls_active: role == Role::Submissions,
        tls_available: setup != Setup::MxNoTls,
        limits,
        relay: Arc::new(relay),
        tenants: fake.clone().map(|f| -> Arc<dyn TenantPolicy> { f }),
        intake: None,
        blocked: None,
    };
    (params, fake)
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
    /// The grants `TenantPolicy::message_queued` was called with, in order.
    pub tenant_queued: Vec<Grant>,
    /// Content handed out (`Event::Content`) of the message being received.
    pub spilled: Vec<u8>,
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

/// `phases` for [`run_chunked`] with phase `k` cut in two at byte `at` and every other
/// phase fed whole: what a client whose write was split by the network looks like.
pub fn split_phase<'a>(phases: &[&'a [u8]], k: usize, at: usize) -> Vec<Vec<&'a [u8]>> {
    phases
        .iter()
        .enumerate()
        .map(|(i, p)| {
            if i == k {
                vec![&p[..at], &p[at..]]
            } else {
                vec![*p]
            }
        })
        .collect()
}

/// Runs a dialogue: `phases[i]` is fed as the chunks `chunks(i)`; between phases a
/// pending STARTTLS handshake completes.
pub fn run_chunked(setup: Setup, phases: &[Vec<&[u8]>]) -> Transcript {
    let (params, fake) = params_with_tenants(setup);
    let mut t = run_protocol(Protocol::new(params), phases);
    if let Some(fake) = fake {
        t.tenant_queued = fake.queued.lock().expect("fake lock").clone();
    }
    t
}

/// [`run_chunked`] with content handed out whenever more than `at` octets of it
/// are held: the messages must come out the same.
pub fn run_spilling(setup: Setup, phases: &[Vec<&[u8]>], at: usize) -> Transcript {
    let (params, _) = params_with_tenants(setup);
    let mut p = Protocol::new(params);
    p.spill_content_over(at);
    run_protocol(p, phases)
}

fn run_protocol(mut p: Protocol, phases: &[Vec<&[u8]>]) -> Transcript {
    let mut t = Transcript::default();
    p.greeting();
    let mut tls_pending = false;
    // Every other chunk arrives in a buffer of its own, as a session reads it
    // (`feed_buffer`, which takes the buffer over when nothing else is held), the
    // others are copied in (`feed`, as after TLS): the two must not differ.
    let mut spare = Vec::new();
    let mut owned = false;
    for phase in phases {
        if tls_pending {
            p.tls_established("TLSv1.3 test".to_string());
            tls_pending = false;
        }
        for chunk in phase {
            owned = !owned;
            if owned {
                spare.extend_from_slice(chunk);
                spare = p.feed_buffer(spare);
                assert!(spare.is_empty(), "the buffer handed back is empty");
            } else {
                p.feed(chunk);
            }
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
            Event::Content { bytes, .. } => t.spilled.extend_from_slice(&bytes),
            Event::Message { id, envelope, body } => {
                let body = [std::mem::take(&mut t.spilled), body].concat();
                assert!(
                    find(&body, id.to_string().as_bytes()).is_some(),
                    "the Received header names the message id"
                );
                t.events.push(format!("message from <{}>", envelope.sender));
                t.messages.push(Accepted { envelope, body });
                p.message_queued(Ok(()));
            }
            Event::Refused { id, reason } => {
                // What was handed out of a refused message is not wanted.
                t.spilled.clear();
                assert!(!id.to_string().is_empty());
                t.events.push(format!("refused {}", reason.as_str()));
            }
            Event::Tarpit(d) => t.events.push(format!("tarpit {}ms", d.as_millis())),
            Event::Authenticate {
                mechanism,
                ref username,
                ref password,
            } => {
                // The password must never reach a log line through `{:?}`.
                for debug in [format!("{event:?}"), format!("{p:?}")] {
                    assert!(
                        !debug.contains(password.as_str()),
                        "password in Debug output: {debug}"
                    );
                }
                t.events
                    .push(format!("authenticate {mechanism:?} {username}"));
                let v = verdict(username, password);
                p.auth_result(v);
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
