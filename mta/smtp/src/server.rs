//! The SMTP server protocol, sans-IO: bytes in through [`Protocol::feed`], replies
//! out through [`Protocol::output`], and everything the caller must act on (read
//! more, start TLS, spool a message, sleep, close) as an [`Event`] from
//! [`Protocol::next_event`]. It never blocks, never reads a socket and never waits.
//!
//! Flow inside: `protocol.rs` cuts the input into command lines (bounded at 512
//! octets) or hands it to the DATA / BDAT receivers; `command.rs` turns a line into a
//! typed [`Command`](command::Command); one handler per verb (`ehlo.rs`, `auth.rs`,
//! `mail.rs`, `rcpt.rs`, `data.rs`, `bdat.rs`, `starttls.rs`) checks it against the
//! session state and answers with a [`Reply`](reply::Reply). The DATA and BDAT
//! receivers turn every bare CR or LF into CRLF (or note it, for `reject`) and note
//! NUL octets as the content goes by. A finished message is the body buffer
//! (`body.rs`, starting with the `Received:` header from `received.rs`) plus the
//! envelope, handed out as [`Event::Message`]; content that fails the end-of-data
//! checks (`message.rs`) is [`Event::Refused`] instead. AUTH (`auth.rs`) decodes the
//! SASL exchange and hands the credentials out as [`Event::Authenticate`]; the
//! verdict, and the [`TenantPolicy`] checks of an authenticated session, stay with
//! the caller.
//!
//! Driving it:
//!
//! ```text
//!   p.greeting();
//!   loop {
//!       match p.next_event() {
//!           NeedInput        => { write(p.output()); p.clear_output(); p.feed(read()?) }
//!           StartTls         => { write(p.output()); p.clear_output(); handshake; p.tls_established(desc) }
//!           Message{..}      => { let r = spool(..); p.message_queued(r) }
//!           Refused{..}      => log(..)
//!           Authenticate{..} => { let v = check(..); p.auth_result(v) }
//!           Tarpit(d)        => { sleep(d); write(p.output()); p.clear_output() }
//!           Close            => { write(p.output()); close; break }
//!       }
//!   }
//! ```

mod auth;
mod bdat;
mod body;
pub mod command;
mod data;
mod dsn;
mod ehlo;
mod mail;
mod message;
mod protocol;
mod rcpt;
mod received;
mod starttls;
mod state;

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::{Envelope, MessageId};
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::relay::RelayPolicy;
use crate::reply;

pub use auth::MAX_AUTH_LINE;
pub use message::ContentRefusal;
pub use protocol::Protocol;

/// The listener a session came in on; it decides the TLS and relay rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Port 25: mail for our domains from anyone, relay only for trusted networks.
    Mx,
    /// Port 587: STARTTLS required before `MAIL`.
    Submission,
    /// Port 465: implicit TLS, the handshake comes before the greeting.
    Submissions,
}

impl Role {
    /// The name used in configuration, logs and `Origin::listener`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Mx => "mx",
            Role::Submission => "submission",
            Role::Submissions => "submissions",
        }
    }
}

/// Per-session limits (from the listener configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest message content in octets (advertised as `SIZE`).
    pub max_message_size: u64,
    /// Accepted recipients per transaction; more get `452 4.5.3`.
    pub max_recipients: usize,
    /// 5xx replies after which the session is closed with `421 4.7.0`.
    pub max_errors: u32,
    /// 5xx replies after which each further error reply is delayed.
    pub tarpit_after_errors: u32,
    pub tarpit_delay: Duration,
    /// More `Received:` headers than this in a message means a mail loop (`554 5.4.6`).
    pub max_received_headers: usize,
    /// What a bare CR or LF in message content gets.
    pub bare_line_endings: BareLineEndings,
}

/// What to do with a bare CR or bare LF in DATA or BDAT content (`[limits]
/// bare_line_endings`). Either way only `<CRLF>.<CRLF>` ends DATA, and nothing with a
/// bare CR or LF is ever handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BareLineEndings {
    /// Each becomes CRLF before the message is handed out.
    #[default]
    Normalize,
    /// The message is refused after the end of data with `550 5.6.0` (like Postfix's
    /// `smtpd_forbid_bare_newline = reject`).
    Reject,
}

/// The documented defaults (docs/configuration.md, `[limits]`); the daemon's
/// configuration takes its defaults for these keys from here.
impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_message_size: 25 * 1024 * 1024,
            max_recipients: 1000,
            max_errors: 10,
            tarpit_after_errors: 3,
            tarpit_delay: Duration::from_secs(1),
            max_received_headers: 30,
            bare_line_endings: BareLineEndings::Normalize,
        }
    }
}

/// Everything the protocol needs to know about one connection.
#[derive(Debug, Clone)]
pub struct SessionParams {
    /// Our name, used in the greeting, replies and the `Received:` header.
    pub hostname: String,
    pub role: Role,
    pub client_ip: IpAddr,
    /// True from the start on `submissions` (implicit TLS).
    pub tls_active: bool,
    /// STARTTLS can be offered (a certificate is configured).
    pub tls_available: bool,
    pub limits: Limits,
    pub relay: Arc<RelayPolicy>,
    /// Tenant rules for authenticated sessions. `Some` turns AUTH on: it is
    /// advertised on the submission roles once TLS is active, never on `mx`.
    pub tenants: Option<Arc<dyn TenantPolicy>>,
    /// Addresses whose mail the daemon takes for itself instead of relaying it
    /// (the bounce and complaint intake of the `mx` listener); `None`: no intake.
    pub intake: Option<Arc<dyn Intake>>,
    /// The client is on a blocklist the daemon looked it up in at connect
    /// (`[inbound] dnsbl_zones`): its mail is refused with the listing's reply.
    pub blocked: Option<Blocked>,
}

/// A listed client: what it is told, and from which command on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked {
    /// `554 5.7.1` naming the zone and its reason.
    pub reply: reply::Reply,
    pub at: BlockedAt,
}

/// Where a listed client's mail is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockedAt {
    /// Every `MAIL FROM` (the EHLO is answered, so the client reads why).
    Mail,
    /// Every `RCPT TO`, except `postmaster` (bare or at one of our domains), so
    /// that a listed sender can still reach the postmaster about the listing.
    Rcpt,
}

/// Local addresses whose mail the daemon consumes itself (asynchronous bounces to
/// VERP return paths, complaint reports). A quick in-memory check, never I/O. An
/// intake recipient is accepted from anyone (it is ours) and never shares a
/// transaction with other recipients: its message is not queued.
pub trait Intake: Send + Sync + fmt::Debug {
    /// `None`: not the intake's; `Some(Ok(()))`: an intake address;
    /// `Some(Err(reply))`: an address of an intake domain that is not one.
    fn check(&self, address: &str) -> Option<Result<(), reply::Reply>>;
}

/// Who an AUTH exchange proved the client to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub tenant: String,
    pub username: String,
    /// The credential that was checked: a session outlives neither its revocation nor
    /// its replacement by a new credential with the same username.
    pub credential_id: String,
}

/// The SASL mechanisms offered (RFC 4616 PLAIN, and LOGIN for older clients).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMechanism {
    Plain,
    Login,
}

/// The caller's verdict on an [`Event::Authenticate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthVerdict {
    /// `235 2.7.0`; later transactions run as this tenant.
    Accepted(Grant),
    /// `535 5.7.8`. The caller has already applied the failure delay.
    Rejected,
    /// Right credentials, but the tenant is suspended or terminated: `535 5.7.8`
    /// with a text that says so.
    TenantDisabled,
    /// Too many failures from this client or for this user: `421 4.7.0`, close.
    LockedOut,
    /// Credentials cannot be checked now (no policy snapshot yet): `454 4.7.0`.
    Unavailable,
}

/// Tenant rules consulted by the protocol for an authenticated session. The
/// implementation (in the daemon) reads the control snapshot and the per-tenant
/// counters; each call is a quick in-memory check, never I/O.
pub trait TenantPolicy: Send + Sync + fmt::Debug {
    /// `MAIL FROM` by `grant`: the sender's domain must be one of the tenant's
    /// (`553 5.7.1`), the tenant active, and its hourly/daily budget not spent.
    fn check_sender(&self, grant: &Grant, sender: &str) -> Result<(), reply::Reply>;
    /// `RCPT TO:<address>` that would make the transaction's `count`th recipient:
    /// the tenant's recipient limit, and its suppression list (`550 5.7.1`).
    fn check_recipient(
        &self,
        grant: &Grant,
        address: &str,
        count: usize,
    ) -> Result<(), reply::Reply>;
    /// A message from `grant` was queued: it counts towards the tenant's budgets.
    fn message_queued(&self, grant: &Grant);
}

/// What the spool said last; the caller updates it before feeding input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SpoolState {
    #[default]
    Ready,
    /// Low on disk: new transactions get `452 4.3.1`.
    DiskLow,
    /// The spool cannot take mail: `MAIL` gets `421 4.3.2` and the session closes.
    Unhealthy,
}

/// Why spooling a message failed; chooses the reply to the end of data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueFailure {
    /// `451 4.3.0`.
    Unhealthy,
    /// `452 4.3.1`.
    DiskFull,
    /// `451 4.3.0`.
    Other,
}

/// What the caller must do next.
// One `Message` per accepted message, moved once to the spool: boxing the envelope
// would cost an allocation per message to save a few hundred bytes of stack.
#[allow(clippy::large_enum_variant)]
pub enum Event {
    /// Write pending output, then read more input and `feed()` it.
    NeedInput,
    /// Write pending output (the `220 2.0.0`), do the TLS handshake, then call
    /// `tls_established()`. Input buffered after the STARTTLS line has been discarded.
    StartTls,
    /// Spool this message, then call `message_queued()`; no input is processed until then.
    Message {
        id: MessageId,
        envelope: Envelope,
        /// The `Received:` header followed by the message content as received, dot
        /// unstuffed, every line ending in CRLF; only what follows the `Content`
        /// events of this message, if there were any.
        body: Vec<u8>,
    },
    /// Only after [`Protocol::spill_content_over`]: the next part of the message
    /// being received (its beginning is the `Received:` header), handed out before
    /// the end of data so that a large message is not held whole. Store it and call
    /// `next_event()`. The message is these parts in order, then the body of its
    /// `Message`; a `Refused` or the session's end means they are not wanted.
    Content { id: MessageId, bytes: Vec<u8> },
    /// The protocol refused the message at the end of its content (nothing to spool):
    /// log it if you like, then call `next_event()`, which queues the reply
    /// (`reason.reply()`). The transaction is over; the session goes on.
    Refused {
        id: MessageId,
        reason: ContentRefusal,
    },
    /// Sleep this long, then write pending output and call `next_event()` again.
    Tarpit(Duration),
    /// Write pending output and close the connection.
    Close,
    /// Check these credentials (lockout first, then the password), then call
    /// `auth_result()`; no input is processed until then. Input pipelined after the
    /// exchange stays buffered and runs once the verdict is in.
    Authenticate {
        mechanism: AuthMechanism,
        username: String,
        password: Zeroizing<String>,
    },
}

/// Written by hand so that neither a password nor message content can reach a log
/// through `{:?}`: the password is redacted and the body shown by its length.
impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::NeedInput => f.write_str("NeedInput"),
            Event::StartTls => f.write_str("StartTls"),
            Event::Message { id, envelope, body } => f
                .debug_struct("Message")
                .field("id", id)
                .field("envelope", envelope)
                .field("body_len", &body.len())
                .finish(),
            Event::Content { id, bytes } => f
                .debug_struct("Content")
                .field("id", id)
                .field("len", &bytes.len())
                .finish(),
            Event::Refused { id, reason } => f
                .debug_struct("Refused")
                .field("id", id)
                .field("reason", reason)
                .finish(),
            Event::Tarpit(d) => f.debug_tuple("Tarpit").field(d).finish(),
            Event::Close => f.write_str("Close"),
            Event::Authenticate {
                mechanism,
                username,
                password: _,
            } => f
                .debug_struct("Authenticate")
                .field("mechanism", mechanism)
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
        }
    }
}
