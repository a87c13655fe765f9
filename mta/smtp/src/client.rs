//! The SMTP client for outbound delivery, sans-IO like the server in `crate::server`:
//! bytes from the peer go in through [`ClientSession::feed`], commands come out
//! through [`ClientSession::output`], and what the caller must do next is a
//! [`ClientEvent`] from [`ClientSession::next_event`]. It never touches a socket and
//! never waits.
//!
//! Layout: `reply` reads the peer's replies (incrementally, bounded) into
//! [`crate::Reply`], `ehlo` turns the EHLO answer into [`Extensions`], `auth` logs in
//! to a smart host, `transaction` runs one message (checks against the peer's
//! extensions, MAIL, RCPT, DATA or BDAT, one [`Disposition`] per recipient), `body`
//! puts the content on the wire (CRLF line ends only, dot-stuffed for DATA). This
//! file holds the session: greeting, EHLO with HELO fallback, STARTTLS, RSET, QUIT
//! and failures.
//!
//! Every command sent queues what its reply will answer (`Expect`), so pipelined
//! replies are matched in order by one mechanism, with or without PIPELINING.
//!
//! ```text
//!   let mut c = ClientSession::new(params);
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

mod auth;
mod body;
mod disposition;
mod ehlo;
mod reply;
mod transaction;

use std::collections::VecDeque;
use std::sync::Arc;

use crate::reply::Reply;
use crate::{BodyType, Notify, Ret};

use self::reply::RawReply;
use self::transaction::Transaction;

pub use self::auth::Credentials;
pub use self::body::ContentScan;
pub use self::disposition::{Disposition, Interruption, Unsendable};
pub use self::ehlo::Extensions;
pub use self::reply::{ReplyError, ReplyReader, MAX_LINE, MAX_REPLY};

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
    /// The content as spooled. Lines should end in CRLF; a bare CR or LF (mail
    /// spooled before the receivers normalised them) goes out as CRLF.
    pub body: Content,
}

/// A message's content: in memory, or streamed by the caller when the session asks
/// for it ([`ClientEvent::SendContent`]), so that a large body is never held whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    Whole(Arc<Vec<u8>>),
    Streamed(StreamedContent),
}

/// What the session must know of streamed content before it starts: learnt by a
/// [`ContentScan`] over the same pieces that will be streamed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamedContent {
    /// Octets once every line ends in CRLF (what BDAT and SIZE announce).
    pub size: usize,
    /// No octet over 127: the content may go to a peer without 8BITMIME.
    pub seven_bit: bool,
}

/// What became of one recipient of the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientResult {
    /// Index into the message's `recipients`.
    pub index: usize,
    pub disposition: Disposition,
}

/// The result of one [`ClientSession::send`]: one entry per recipient, in index order.
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

/// `stage: reply`, or `stage: reason` when the peer gave no reply.
impl std::fmt::Display for SessionFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.reply {
            Some(reply) => write!(f, "{}: {reply}", self.stage),
            None => write!(f, "{}: {}", self.stage, self.reason),
        }
    }
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
    /// The message's streamed content is due: write `output()`, then give the
    /// content in pieces to `push_content()` (writing `output()` as it grows) and
    /// call `end_content()`; then ask for the next event. If the content cannot be
    /// read, close the connection without ending it: the peer discards it.
    SendContent,
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
pub struct ClientSession {
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
    /// Streamed content is being written (after `SendContent`).
    streaming: Option<body::Encoder>,
}

impl ClientSession {
    /// A session that starts by waiting for the peer's greeting.
    pub fn new(params: ClientParams) -> ClientSession {
        ClientSession {
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
            streaming: None,
        }
    }

    /// Authenticates with these credentials after EHLO (and STARTTLS), before the
    /// first message. Credentials are never sent over a connection without TLS.
    pub fn with_credentials(mut self, credentials: Credentials) -> ClientSession {
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
            if self.streaming.is_some() {
                return ClientEvent::SendContent;
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
            match self.reader.read_raw(&self.input, &mut self.input_pos) {
                Ok(Some(raw)) => self.on_reply(raw),
                Ok(None) => return ClientEvent::NeedInput,
                Err(e) => self.fail_protocol(e.as_str()),
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

    /// Takes the commands to write, leaving `spare` (cleared) as the next output
    /// buffer: the bytes are moved, not copied.
    pub fn take_output(&mut self, mut spare: Vec<u8>) -> Vec<u8> {
        spare.clear();
        std::mem::replace(&mut self.output, spare)
    }

    /// Makes the output buffer hold at least `bytes` octets in all: a caller
    /// streaming content asks for what it writes between two flushes, so that the
    /// buffer is never moved by growing (a flush swaps in another buffer, which
    /// is sized on the next call).
    pub fn reserve_output(&mut self, bytes: usize) {
        self.output.reserve(bytes.saturating_sub(self.output.len()));
    }

    /// The next piece of streamed content (after `SendContent`), encoded into
    /// `output()`.
    pub fn push_content(&mut self, piece: &[u8]) {
        if let Some(encoder) = self.streaming.as_mut() {
            encoder.push(piece, &mut self.output);
        }
    }

    /// The streamed content is complete: its end goes into `output()`, and the
    /// session waits for the peer's verdict.
    pub fn end_content(&mut self) {
        if let Some(encoder) = self.streaming.take() {
            encoder.finish(&mut self.output);
        }
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
            let not_ready = Disposition::Interrupted(Interruption::NotReady);
            let result = Transaction::all(&message, &not_ready);
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
        self.abort_transaction(Interruption::Abandoned);
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
            self.fail(failure, Interruption::ConnectionLost, false);
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
        self.streaming = None;
        self.await_tls = false;
        self.expect.clear();
        self.input.clear();
        self.input_pos = 0;
    }

    /// Ends the session: a message in flight gets `in_flight` for its undecided
    /// recipients, then `Failed`. QUIT only to a peer that still talks SMTP.
    fn fail(&mut self, failure: SessionFailure, in_flight: Interruption, quit: bool) {
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

    fn fail_protocol(&mut self, reason: &'static str) {
        let failure = SessionFailure {
            temporary: true,
            stage: "protocol",
            reply: None,
            reason: format!("protocol error ({}): {reason}", self.stage()),
        };
        self.fail(failure, Interruption::Protocol(reason), true);
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
        self.fail(failure, Interruption::Peer(reply), true);
    }

    /// Input while no reply is due: a 421 (idle timeout, shutdown) or garbage.
    /// True when that ended the session; a partial line waits for more.
    fn unsolicited(&mut self) -> bool {
        match self.reader.read(&self.input, &mut self.input_pos) {
            Ok(None) => return false,
            Ok(Some(reply)) if reply.code == 421 => {
                let failure = SessionFailure {
                    temporary: true,
                    stage: self.stage(),
                    reply: Some(reply.clone()),
                    reason: "peer closed the connection".to_string(),
                };
                self.fail(failure, Interruption::Peer(reply), false);
            }
            Ok(Some(_)) => self.fail_protocol("data from the peer when no reply was due"),
            Err(e) => self.fail_protocol(e.as_str()),
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
            return self.fail(failure, Interruption::Peer(reply), false);
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
            self.fail(failure, Interruption::TlsUnavailable, true);
        } else {
            self.become_ready();
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
