//! The SMTP client for outbound delivery, sans-IO like the server in `crate::server`:
//! bytes from the peer go in through [`Client::feed`], commands come out through
//! [`Client::output`], and what the caller must do next is a [`ClientEvent`] from
//! [`Client::next_event`]. It never touches a socket and never waits.
//!
//! Layout: `reply` reads the peer's replies (incrementally, bounded), `ehlo` turns
//! the EHLO answer into [`Extensions`], `transaction` runs one message (checks
//! against the peer's extensions, MAIL, RCPT, DATA or BDAT, one result per
//! recipient), `body` puts the content on the wire. This file holds the session:
//! greeting, EHLO with HELO fallback, STARTTLS, RSET, QUIT and failures.
//!
//! Every command sent queues what its reply will answer (`Expect`), so pipelined
//! replies are matched in order by one mechanism, with or without PIPELINING.
//!
//! ```text
//!   let mut c = Client::new(params);
//!   loop {
//!       match c.next_event() {
//!           NeedInput  => { write(c.output()); c.clear_output(); c.feed(read()?) }
//!           StartTls   => { write(c.output()); c.clear_output(); handshake; c.tls_established() }
//!           Ready      => match next_message() { Some(m) => c.send(m), None => c.quit() },
//!           Done(r)    => record(r),
//!           Failed(f)  => { write(c.output()); close; break }
//!           Closed     => { write(c.output()); close; break }
//!       }
//!   }
//! ```

mod body;
mod ehlo;
mod reply;
mod transaction;

use std::collections::VecDeque;
use std::sync::Arc;

use crate::{BodyType, Notify, Ret};

use self::reply::{RawReply, ReplyReader};
use self::transaction::Transaction;

pub use self::ehlo::Extensions;
pub use self::reply::{Reply, MAX_LINE, MAX_REPLY};

/// How a next hop is to be secured (`[[route]] tls`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsPolicy {
    /// STARTTLS when the peer offers it; plaintext otherwise (the default for MX
    /// delivery, as RFC 3207 allows).
    #[default]
    Opportunistic,
    /// STARTTLS or no delivery: a peer without it, or a failed handshake, is a
    /// temporary failure.
    Required,
    /// Never STARTTLS.
    None,
}

/// How to run sessions to one next hop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientParams {
    /// The name we give in EHLO/HELO.
    pub ehlo_name: String,
    pub tls: TlsPolicy,
}

/// One recipient of an [`OutboundMessage`], with its DSN parameters as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundRecipient {
    /// The forward-path without angle brackets.
    pub address: String,
    pub notify: Notify,
    /// `ORCPT=` as received (`addr-type;xtext`).
    pub orcpt: Option<String>,
}

/// One message for one connection: the envelope part going to this next hop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundMessage {
    /// The reverse-path without angle brackets; `""` is the null sender.
    pub sender: String,
    pub recipients: Vec<OutboundRecipient>,
    pub body_type: BodyType,
    /// The message needs SMTPUTF8 (RFC 6531).
    pub smtputf8: bool,
    pub ret: Option<Ret>,
    pub envid: Option<String>,
    /// The content as spooled (lines end in CRLF, bare LFs possible).
    pub body: Arc<Vec<u8>>,
}

/// What became of one recipient on this attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// Try again later (4xx, lost connection, ...).
    Temporary,
    /// Bounce (5xx, or a message this peer can never take).
    Permanent,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientResult {
    /// Index into the message's `recipients`.
    pub index: usize,
    pub outcome: Outcome,
    /// The peer's reply, or one made up for the same meaning (`552 5.3.4` for a
    /// message over the peer's SIZE limit, ...).
    pub reply: Reply,
}

/// The result of one [`Client::send`]: one entry per recipient, in index order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryResult {
    pub recipients: Vec<RecipientResult>,
    /// The peer advertised DSN: if not, a NOTIFY=SUCCESS recipient that was
    /// delivered gets a `relayed` notice rather than `delivered` (RFC 3461 §5.2.2).
    pub dsn_supported: bool,
}

/// Why the connection cannot be used (any more).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionFailure {
    /// False only for a 5xx from the peer at connection level (a 554 greeting, HELO
    /// refused): this host will not take mail from us.
    pub temporary: bool,
    /// `"greeting"`, `"ehlo"`, `"helo"`, `"starttls"`, `"mail"`, `"rcpt"`,
    /// `"data"`, `"bdat"`, `"rset"`, `"idle"`, or `"protocol"` for replies that
    /// are not SMTP.
    pub stage: &'static str,
    /// The peer's reply, when the failure is one.
    pub reply: Option<Reply>,
    pub reason: String,
}

/// What the caller must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// Write `output()` (if any), then read and `feed()`.
    NeedInput,
    /// Write `output()`, do the TLS client handshake, call `tls_established()`.
    StartTls,
    /// Idle and usable: call `send()` or `quit()`.
    Ready,
    /// The message given to `send()` is finished. `Ready` follows unless a
    /// `Failed` or `Closed` does.
    Done(DeliveryResult),
    /// The connection is unusable: write `output()` (it may hold QUIT), then close.
    /// Any message in flight was reported by a `Done` just before.
    Failed(SessionFailure),
    /// After `quit()` or a failure: write `output()` and close.
    Closed,
}

/// What the next reply from the peer answers, in the order commands went out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Greeting,
    Ehlo,
    Helo,
    StartTls,
    Mail,
    /// RCPT for the recipient with this index.
    Rcpt(usize),
    Data,
    /// The reply after the content and its terminating dot.
    DataEnd,
    /// The reply to `BDAT n LAST` and its content.
    BdatEnd,
    /// The reply to a lone `.` sent because DATA was accepted with no recipients.
    DotOnly,
    Rset,
    /// `AUTH PLAIN <initial response>`.
    AuthPlain,
    /// `AUTH LOGIN`, then the user name, then the password (each answered 334).
    AuthLogin(u8),
}

impl Expect {
    fn stage(self) -> &'static str {
        match self {
            Expect::Greeting => "greeting",
            Expect::Ehlo => "ehlo",
            Expect::Helo => "helo",
            Expect::StartTls => "starttls",
            Expect::Mail => "mail",
            Expect::Rcpt(_) => "rcpt",
            Expect::Data | Expect::DataEnd | Expect::DotOnly => "data",
            Expect::BdatEnd => "bdat",
            Expect::Rset => "rset",
            Expect::AuthPlain | Expect::AuthLogin(_) => "auth",
        }
    }
}

/// One SMTP client session, sans-IO.
#[derive(Debug)]
pub struct Client {
    params: ClientParams,
    input: Vec<u8>,
    /// How much of `input` has been read as replies.
    input_pos: usize,
    reader: ReplyReader,
    output: Vec<u8>,
    expect: VecDeque<Expect>,
    events: VecDeque<ClientEvent>,
    extensions: Extensions,
    tx: Option<Transaction>,
    tls_active: bool,
    /// STARTTLS accepted; waiting for `tls_established`.
    await_tls: bool,
    /// EHLO/HELO (and STARTTLS) are done: messages may be sent.
    ready: bool,
    /// QUIT sent or the session failed: nothing more happens.
    closed: bool,
    /// Credentials for a smart host; sent only over TLS.
    credentials: Option<Credentials>,
}

/// A smart host's user name and password (RFC 4954 AUTH PLAIN or LOGIN).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The password never reaches a log line.
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl Client {
    /// A session that starts by waiting for the peer's greeting.
    pub fn new(params: ClientParams) -> Client {
        Client {
            params,
            input: Vec::new(),
            input_pos: 0,
            reader: ReplyReader::default(),
            output: Vec::new(),
            expect: VecDeque::from([Expect::Greeting]),
            events: VecDeque::new(),
            extensions: Extensions::default(),
            tx: None,
            tls_active: false,
            await_tls: false,
            ready: false,
            closed: false,
            credentials: None,
        }
    }

    /// Authenticates with these credentials after EHLO (and STARTTLS), before the
    /// first message. Credentials are never sent over a connection without TLS.
    pub fn with_credentials(mut self, credentials: Credentials) -> Client {
        self.credentials = Some(credentials);
        self
    }

    /// Bytes read from the peer.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.closed {
            return;
        }
        self.input.drain(..self.input_pos);
        self.input_pos = 0;
        self.input.extend_from_slice(bytes);
    }

    /// Processes the input read so far and says what to do next.
    pub fn next_event(&mut self) -> ClientEvent {
        loop {
            if let Some(event) = self.events.pop_front() {
                return event;
            }
            if self.closed {
                return ClientEvent::Closed;
            }
            if self.await_tls {
                return ClientEvent::StartTls;
            }
            if self.expect.is_empty() {
                if !self.ready || self.tx.is_some() {
                    // Every command queues its reply; this is a safety net only.
                    self.fail_protocol("no reply due in the middle of a session");
                    continue;
                }
                if self.input_pos < self.input.len() && self.unsolicited() {
                    continue;
                }
                return ClientEvent::Ready;
            }
            match self.reader.read(&self.input, &mut self.input_pos) {
                Ok(Some(raw)) => self.on_reply(raw),
                Ok(None) => return ClientEvent::NeedInput,
                Err(reason) => self.fail_protocol(reason),
            }
        }
    }

    /// Commands to write to the peer.
    pub fn output(&self) -> &[u8] {
        &self.output
    }

    pub fn clear_output(&mut self) {
        self.output.clear();
    }

    /// The TLS handshake after `StartTls` succeeded: start over with EHLO (RFC 3207
    /// §4.2), forgetting everything learnt in plaintext.
    pub fn tls_established(&mut self) {
        if !self.await_tls || self.closed {
            return;
        }
        self.await_tls = false;
        self.tls_active = true;
        self.input.clear();
        self.input_pos = 0;
        self.reader = ReplyReader::default();
        self.extensions = Extensions::default();
        self.command(&format!("EHLO {}", self.params.ehlo_name), Expect::Ehlo);
    }

    /// Starts delivering `message`; only after `Ready`. Called at any other time,
    /// the message comes straight back as a `Done` with every recipient temporary.
    pub fn send(&mut self, message: OutboundMessage) {
        if self.closed || self.await_tls || !self.ready || !self.expect.is_empty() {
            let reply = Reply::local(451, "4.4.0", "connection not ready for a message");
            let result = Transaction::all(&message, Outcome::Temporary, &reply);
            self.done(result);
            return;
        }
        self.start_transaction(message);
    }

    /// Ends the session politely. A message still in flight is reported temporary.
    pub fn quit(&mut self) {
        if self.closed {
            return;
        }
        self.abort_transaction(Reply::local(451, "4.4.0", "delivery abandoned"));
        self.output.extend_from_slice(b"QUIT\r\n");
        self.close();
    }

    /// The peer closed the connection or the read failed. Returns `Done` with every
    /// recipient still in flight temporary (a `Failed` follows), or `Failed`.
    pub fn connection_lost(&mut self) -> ClientEvent {
        if !self.closed {
            let failure = SessionFailure {
                temporary: true,
                stage: self.stage(),
                reply: None,
                reason: "connection lost".to_string(),
            };
            self.fail(
                failure,
                Reply::local(421, "4.4.2", "connection lost"),
                false,
            );
        }
        self.next_event()
    }

    /// What the peer advertised in its last EHLO answer.
    pub fn extensions(&self) -> &Extensions {
        &self.extensions
    }

    pub fn tls_active(&self) -> bool {
        self.tls_active
    }

    fn command(&mut self, line: &str, expect: Expect) {
        self.output.extend_from_slice(line.as_bytes());
        self.output.extend_from_slice(b"\r\n");
        self.expect.push_back(expect);
    }

    fn done(&mut self, result: DeliveryResult) {
        self.events.push_back(ClientEvent::Done(result));
    }

    /// Where the session is, for a failure that is not an answer to a command.
    fn stage(&self) -> &'static str {
        match self.expect.front() {
            Some(expect) => expect.stage(),
            None if self.await_tls => "starttls",
            None => "idle",
        }
    }

    fn close(&mut self) {
        self.closed = true;
        self.await_tls = false;
        self.expect.clear();
        self.input.clear();
        self.input_pos = 0;
    }

    /// Ends the session: a message in flight gets `in_flight` for its undecided
    /// recipients, then `Failed`. QUIT only to a peer that still talks SMTP.
    fn fail(&mut self, failure: SessionFailure, in_flight: Reply, quit: bool) {
        if self.closed {
            return;
        }
        self.abort_transaction(in_flight);
        if quit {
            self.output.extend_from_slice(b"QUIT\r\n");
        }
        self.close();
        self.events.push_back(ClientEvent::Failed(failure));
    }

    fn fail_protocol(&mut self, reason: &str) {
        let failure = SessionFailure {
            temporary: true,
            stage: "protocol",
            reply: None,
            reason: format!("protocol error ({}): {reason}", self.stage()),
        };
        let reply = Reply::local(451, "4.5.0", format!("protocol error: {reason}"));
        self.fail(failure, reply, true);
    }

    /// A connection-level refusal from the peer; `permanent` when a 5xx means
    /// this host will never take mail from us.
    fn fail_reply(&mut self, stage: &'static str, reply: Reply, reason: &str, permanent: bool) {
        let failure = SessionFailure {
            temporary: !(permanent && reply.class() == 5),
            stage,
            reply: Some(reply.clone()),
            reason: reason.to_string(),
        };
        self.fail(failure, reply, true);
    }

    /// Input while no reply is due: a 421 (idle timeout, shutdown) or garbage.
    /// True when that ended the session; a partial line waits for more.
    fn unsolicited(&mut self) -> bool {
        match self.reader.read(&self.input, &mut self.input_pos) {
            Ok(None) => return false,
            Ok(Some(raw)) if raw.code == 421 => {
                let failure = SessionFailure {
                    temporary: true,
                    stage: self.stage(),
                    reply: Some(raw.to_reply()),
                    reason: "peer closed the connection".to_string(),
                };
                self.fail(failure, raw.to_reply(), false);
            }
            Ok(Some(_)) => self.fail_protocol("data from the peer when no reply was due"),
            Err(reason) => self.fail_protocol(reason),
        }
        true
    }

    fn on_reply(&mut self, raw: RawReply) {
        let Some(expect) = self.expect.pop_front() else {
            return self.fail_protocol("reply when none was due");
        };
        let reply = raw.to_reply();
        if reply.code == 421 {
            // RFC 5321 §3.8: the peer is closing; nothing more will be answered.
            let failure = SessionFailure {
                temporary: true,
                stage: expect.stage(),
                reply: Some(reply.clone()),
                reason: "peer closed the connection".to_string(),
            };
            return self.fail(failure, reply, false);
        }
        match expect {
            Expect::Greeting => self.on_greeting(reply),
            Expect::Ehlo => self.on_ehlo(&raw, reply),
            Expect::Helo => self.on_helo(reply),
            Expect::StartTls => self.on_starttls(reply),
            Expect::Rset => self.on_rset(reply),
            Expect::AuthPlain | Expect::AuthLogin(_) => self.on_auth(expect, reply),
            _ => self.on_transaction_reply(expect, reply),
        }
    }

    fn on_greeting(&mut self, reply: Reply) {
        match reply.class() {
            2 => self.command(&format!("EHLO {}", self.params.ehlo_name), Expect::Ehlo),
            // RFC 5321 §3.1: after a 554 greeting the client sends QUIT.
            4 | 5 => self.fail_reply("greeting", reply, "peer refused the session", true),
            _ => self.fail_protocol("unexpected greeting"),
        }
    }

    fn on_ehlo(&mut self, raw: &RawReply, reply: Reply) {
        match reply.class() {
            2 => {
                self.extensions = Extensions::from_ehlo(&raw.lines);
                self.after_hello();
            }
            // An old peer without ESMTP: plain SMTP, no extensions.
            5 => self.command(&format!("HELO {}", self.params.ehlo_name), Expect::Helo),
            _ => self.fail_reply("ehlo", reply, "peer refused EHLO", true),
        }
    }

    fn on_helo(&mut self, reply: Reply) {
        if reply.class() == 2 {
            self.extensions = Extensions::default();
            self.after_hello();
        } else {
            self.fail_reply("helo", reply, "peer refused EHLO and HELO", true);
        }
    }

    /// EHLO/HELO done: STARTTLS if it is wanted and possible, else ready.
    fn after_hello(&mut self) {
        let policy = self.params.tls;
        if self.tls_active || policy == TlsPolicy::None {
            self.become_ready();
        } else if self.extensions.starttls {
            self.ready = false;
            self.command("STARTTLS", Expect::StartTls);
        } else if policy == TlsPolicy::Required {
            let failure = SessionFailure {
                temporary: true,
                stage: "starttls",
                reply: None,
                reason: "TLS required but the peer does not offer STARTTLS".to_string(),
            };
            self.fail(failure, Reply::local(451, "4.7.5", "TLS unavailable"), true);
        } else {
            self.become_ready();
        }
    }

    /// Ready for messages, after authenticating first when credentials are set.
    fn become_ready(&mut self) {
        let Some(c) = self.credentials.clone() else {
            self.ready = true;
            return;
        };
        let refuse = |reason: &str| SessionFailure {
            temporary: true,
            stage: "auth",
            reply: None,
            reason: reason.to_string(),
        };
        if !self.tls_active {
            let failure =
                refuse("credentials are only sent over TLS, and this connection has none");
            return self.fail(failure, Reply::local(451, "4.7.5", "no TLS for AUTH"), true);
        }
        if self.extensions.auth_plain {
            let token = base64(format!("\0{}\0{}", c.user, c.password).as_bytes());
            self.command(&format!("AUTH PLAIN {token}"), Expect::AuthPlain);
        } else if self.extensions.auth_login {
            self.command("AUTH LOGIN", Expect::AuthLogin(0));
        } else {
            let failure = refuse("the smart host offers neither AUTH PLAIN nor AUTH LOGIN");
            self.fail(failure, Reply::local(451, "4.7.0", "no usable AUTH"), true);
        }
    }

    fn on_auth(&mut self, expect: Expect, reply: Reply) {
        match (expect, reply.code) {
            (_, 235) => self.ready = true,
            (Expect::AuthLogin(step), 334) if step < 2 => {
                let Some(c) = &self.credentials else { return };
                let value = if step == 0 { &c.user } else { &c.password };
                let line = base64(value.as_bytes());
                self.command(&line, Expect::AuthLogin(step + 1));
            }
            // A refused login is the operator's to fix, not the recipients' fault:
            // the mail waits (4xx) rather than bounces.
            _ => self.fail_reply(
                "auth",
                reply,
                "the smart host refused our credentials",
                false,
            ),
        }
    }

    fn on_starttls(&mut self, reply: Reply) {
        if reply.class() == 2 {
            if self.input_pos < self.input.len() {
                // Plaintext sent after the 220 would be read as if it came over TLS
                // (response injection, cf. CVE-2011-0411 on the server side).
                return self.fail_protocol("data after the STARTTLS reply");
            }
            self.await_tls = true;
        } else if self.params.tls == TlsPolicy::Required {
            self.fail_reply(
                "starttls",
                reply,
                "TLS required but STARTTLS refused",
                false,
            );
        } else {
            // RFC 3207 §4: opportunistic TLS may go on in plaintext.
            self.ready = true;
        }
    }

    fn on_rset(&mut self, reply: Reply) {
        if reply.class() != 2 {
            self.fail_reply("rset", reply, "peer refused RSET", false);
        }
    }
}

/// Standard base64 (RFC 4648) for AUTH exchanges.
fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod auth_tests {
    use super::*;

    #[test]
    fn base64_vectors() {
        // RFC 4648 §10.
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
    }

    fn ready_client(auth_line: &str, tls: bool) -> Client {
        let mut c = Client::new(ClientParams {
            ehlo_name: "me.example".into(),
            tls: TlsPolicy::Opportunistic,
        })
        .with_credentials(Credentials {
            user: "u".into(),
            password: "p".into(),
        });
        c.feed(b"220 hi\r\n");
        let _ = c.next_event();
        c.clear_output();
        if tls {
            c.feed(b"250-hi\r\n250 STARTTLS\r\n");
            assert!(matches!(c.next_event(), ClientEvent::NeedInput));
            c.clear_output();
            c.feed(b"220 go\r\n");
            assert!(matches!(c.next_event(), ClientEvent::StartTls));
            c.tls_established();
            c.clear_output();
        }
        c.feed(format!("250-hi\r\n{auth_line}\r\n").as_bytes());
        c
    }

    #[test]
    fn plain_after_tls() {
        let mut c = ready_client("250 AUTH PLAIN LOGIN", true);
        assert!(matches!(c.next_event(), ClientEvent::NeedInput));
        assert_eq!(c.output(), b"AUTH PLAIN AHUAcA==\r\n");
        c.clear_output();
        c.feed(b"235 2.7.0 ok\r\n");
        assert!(matches!(c.next_event(), ClientEvent::Ready));
    }

    #[test]
    fn login_steps_and_refusal_defers() {
        let mut c = ready_client("250 AUTH LOGIN", true);
        assert!(matches!(c.next_event(), ClientEvent::NeedInput));
        assert_eq!(c.output(), b"AUTH LOGIN\r\n");
        c.clear_output();
        c.feed(b"334 VXNlcm5hbWU6\r\n");
        let _ = c.next_event();
        assert_eq!(c.output(), b"dQ==\r\n");
        c.clear_output();
        c.feed(b"334 UGFzc3dvcmQ6\r\n");
        let _ = c.next_event();
        assert_eq!(c.output(), b"cA==\r\n");
        c.clear_output();
        c.feed(b"535 5.7.8 bad\r\n");
        match c.next_event() {
            ClientEvent::Failed(f) => assert!(f.temporary && f.stage == "auth", "{f:?}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn never_without_tls() {
        let mut c = ready_client("250 AUTH PLAIN", false);
        match c.next_event() {
            ClientEvent::Failed(f) => assert!(f.temporary && f.stage == "auth", "{f:?}"),
            other => panic!("{other:?}"),
        }
        assert!(!String::from_utf8_lossy(c.output()).contains("AUTH"));
    }
}
