//! One SMTP session: the only place that reads and writes a client's socket.
//!
//! The loop feeds bytes to the sans-IO [`Protocol`] and acts on its events: write the
//! pending replies and read more (`NeedInput` — replies to a pipelined batch go out
//! together, which is what makes PIPELINING cheap), hand a message to the spool and
//! wait for the group commit before the `250` (`Message`), switch to TLS
//! (`StartTls`), or close. Deadlines (`session/deadlines.rs`), displacement at the
//! connection caps, and shutdown are applied here, around reads and writes, so a slow
//! or silent client only ever parks a cheap task, never a core, and never for long.

mod deadlines;
pub mod ingest;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use tokio::sync::watch;
use tokio::time::Instant;
use way2mail_mta::signing::SignError;
use way2mail_queue::Spool;
use way2mail_smtp::reply::Reply;
use way2mail_smtp::server::{
    AuthMechanism, AuthVerdict, Event, Protocol, QueueFailure, Role, SessionParams,
};
use way2mail_smtp::{Envelope, MessageId};
use zeroize::Zeroizing;

use crate::config::Settings;
use crate::current::Current;
use crate::inbound::Inbound;
use crate::io::Io;
use crate::limits::Activity;
use crate::monitor::SpoolMonitor;
use crate::signer::Signer;
use crate::tenants::Tenants;
use crate::tls;

use self::deadlines::{Cut, Deadlines, Limits};

/// Bytes read from the socket at a time.
const READ_SIZE: usize = 16 * 1024;

/// How long a displaced connection gets to write its last reply.
const GOODBYE: Duration = Duration::from_secs(5);

/// What every session on every core shares.
pub struct Shared {
    /// The settings in force; a reload replaces them for the sessions after it.
    pub live: Current<Live>,
    pub spool: Spool,
    pub monitor: SpoolMonitor,
    pub shutdown: watch::Receiver<bool>,
    /// Tenants and AUTH; `None` when `control.socket` is empty.
    pub tenants: Option<Arc<Tenants>>,
    /// Memory for the end of data of messages larger than the message buffer.
    pub ingest: ingest::IngestBudget,
    /// Fresh small messages straight to delivery; `None` when delivery is off.
    pub handoff: Option<Arc<crate::delivery::handoff::Handoff>>,
    /// The reputation guard and automatic suppression; `None` without tenants.
    pub feedback: Option<Arc<crate::feedback_loop::FeedbackLoop>>,
    /// What `[inbound] dnsbl_zones` said of recent clients.
    pub dnsbl: crate::dnsbl::Cache,
    /// Set when the node drains: the accept loops end.
    pub drain: Arc<crate::drain::Drain>,
}

/// The settings a session starts with and keeps to its end, and what is built from
/// them. A session that began before a reload finishes under the settings, the
/// certificate and the relay rules that its client was greeted with.
pub struct Live {
    pub settings: Arc<Settings>,
    pub tls: Arc<ServerConfig>,
    /// The same certificate for the HTTPS API, with ALPN (`h2`, `http/1.1`).
    pub api_tls: Arc<ServerConfig>,
    /// DKIM-signs tenant mail.
    pub signer: Signer,
    /// SPF/DKIM/DMARC/ARC on mail from the internet.
    pub inbound: Inbound,
}

/// How the wait for a read ended.
enum Waited<R> {
    Read(R),
    Displaced,
    Stopping,
}

/// Where a session stands after a stretch of plaintext or TLS dialogue.
enum Step {
    Closed(&'static str),
    StartTls,
}

struct Session {
    shared: Arc<Shared>,
    live: Arc<Live>,
    protocol: Protocol,
    peer: SocketAddr,
    role: Role,
    tls: Option<String>,
    messages: u32,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    shutdown: watch::Receiver<bool>,
    /// Set once shutdown began while a message was in flight.
    grace_until: Option<Instant>,
    deadlines: Deadlines,
    /// What the connection caps know of this connection; it counts what we read.
    activity: Arc<Activity>,
    /// The deadline that cut the session, for its log line.
    cut: Option<Cut>,
    /// The message being received, once parts of it were written to the spool.
    spilling: Option<Spilling>,
}

/// A message whose content outgrew the message buffer: what went to the spool.
struct Spilling {
    id: MessageId,
    /// The next part's number.
    next: u32,
    /// Bytes written as parts.
    bytes: u64,
    /// Writing a part failed: the message cannot be accepted.
    failed: Option<way2mail_queue::Error>,
}

/// Serves one accepted connection to its end and logs one line about it.
pub async fn serve<I: Io>(
    shared: Arc<Shared>,
    live: Arc<Live>,
    io: I,
    peer: SocketAddr,
    role: Role,
    activity: Arc<Activity>,
) {
    let started = Instant::now();
    let settings = &live.settings;
    let timeouts = &settings.raw.timeouts;
    let limits = Limits {
        command: timeouts.command,
        data: timeouts.data,
        min_data_rate: timeouts.min_data_rate,
        session: timeouts.session,
    };
    let blocked = crate::dnsbl::check(settings, &shared.dnsbl, role, peer.ip()).await;
    let params = SessionParams {
        hostname: settings.raw.hostname.clone(),
        role,
        client_ip: peer.ip(),
        tls_active: role == Role::Submissions,
        tls_available: true,
        limits: settings.limits.clone(),
        relay: Arc::clone(&settings.relay),
        tenants: shared.tenants.as_ref().map(|t| t.policy()),
        intake: settings
            .intake
            .clone()
            .filter(|_| role == Role::Mx)
            .map(|a| a as Arc<dyn way2mail_smtp::server::Intake>),
        blocked,
    };
    let mut protocol = Protocol::new(params);
    protocol.spill_content_over(shared.ingest.message_buffer);
    let mut s = Session {
        protocol,
        shutdown: shared.shutdown.clone(),
        shared,
        live,
        peer,
        role,
        tls: None,
        messages: 0,
        rbuf: Vec::with_capacity(READ_SIZE),
        wbuf: Vec::new(),
        grace_until: None,
        deadlines: Deadlines::new(limits, started),
        activity,
        cut: None,
        spilling: None,
    };
    let outcome = match s.run(io).await {
        Ok(outcome) => s.cut.map_or(outcome, Cut::outcome),
        Err(e) if e.kind() == io::ErrorKind::TimedOut => "write timeout",
        Err(_) => "connection error",
    };
    // A message cut off in the middle: its parts are not wanted.
    s.drop_spill();
    tracing::info!(
        target: "way2mail::connection",
        peer = %s.peer,
        listener = s.role.as_str(),
        tls = s.tls.as_deref().unwrap_or("none"),
        messages = s.messages,
        duration_ms = started.elapsed().as_millis() as u64,
        outcome,
        "connection closed"
    );
}

impl Session {
    async fn run<I: Io>(&mut self, io: I) -> io::Result<&'static str> {
        if self.role == Role::Submissions {
            let Some(mut tls) = self.start_tls(io).await else {
                return Ok("tls handshake failed");
            };
            self.protocol.greeting();
            return match self.drive(&mut tls).await? {
                Step::Closed(why) => Ok(why),
                Step::StartTls => Ok("starttls inside tls"),
            };
        }
        let mut io = io;
        self.protocol.greeting();
        match self.drive(&mut io).await? {
            Step::Closed(why) => Ok(why),
            Step::StartTls => {
                let Some(mut tls) = self.start_tls(io).await else {
                    return Ok("tls handshake failed");
                };
                match self.drive(&mut tls).await? {
                    Step::Closed(why) => Ok(why),
                    Step::StartTls => Ok("starttls inside tls"),
                }
            }
        }
    }

    /// The TLS handshake, bounded by `timeouts.tls_handshake_secs`.
    async fn start_tls<I: Io>(&mut self, io: I) -> Option<tls::TlsStream<I>> {
        let limit = self.live.settings.raw.timeouts.tls_handshake;
        let config = Arc::clone(&self.live.tls);
        match tokio::time::timeout(limit, tls::handshake(io, config)).await {
            Ok(Ok(stream)) => {
                let description = stream.description();
                crate::metrics::tls_session("inbound", &description);
                self.tls = Some(description.clone());
                self.protocol.tls_established(description);
                // The client's EHLO is due from now, not from the `220` before the handshake.
                self.deadlines.answered(Instant::now());
                Some(stream)
            }
            Ok(Err(e)) => {
                tracing::debug!(peer = %self.peer, error = %e, "TLS handshake failed");
                None
            }
            Err(_) => None,
        }
    }

    async fn drive<S: Io>(&mut self, io: &mut S) -> io::Result<Step> {
        loop {
            match self.protocol.next_event() {
                Event::NeedInput => {
                    self.flush(io).await?;
                    if let Some(closed) = self.read(io).await? {
                        return Ok(Step::Closed(closed));
                    }
                }
                Event::StartTls => {
                    self.flush(io).await?;
                    return Ok(Step::StartTls);
                }
                Event::Content { id, bytes } => self.spill(id, &bytes),
                Event::Message { id, envelope, body } => {
                    self.end_of_data(id, envelope, body).await;
                }
                // The protocol refused the content itself (size, line length, NUL,
                // bare line ends, loop); its reply follows on the next event.
                Event::Refused { id, reason } => {
                    self.drop_spill();
                    crate::metrics::rejected(self.role.as_str(), reason.as_str());
                    tracing::info!(
                        target: "way2mail::message",
                        %id,
                        client_ip = %self.peer.ip(),
                        listener = self.role.as_str(),
                        reason = reason.as_str(),
                        reply = reason.reply().code,
                        "message refused"
                    );
                }
                Event::Tarpit(delay) => tokio::time::sleep(delay).await,
                Event::Authenticate {
                    mechanism,
                    username,
                    password,
                } => self.authenticate(mechanism, &username, password).await,
                Event::Close => {
                    self.flush(io).await?;
                    io.shutdown().await;
                    return Ok(Step::Closed("closed"));
                }
            }
        }
    }

    /// Answers an AUTH exchange. The protocol only emits it when tenants are on;
    /// without them the answer is `454`, never a success.
    async fn authenticate(
        &mut self,
        mechanism: AuthMechanism,
        username: &str,
        password: Zeroizing<String>,
    ) {
        let verdict = match &self.shared.tenants {
            Some(t) => {
                t.authenticate(self.peer.ip(), mechanism, username, password)
                    .await
            }
            None => AuthVerdict::Unavailable,
        };
        crate::metrics::auth(&verdict);
        self.protocol.auth_result(verdict);
    }

    /// Writes the pending replies, bounded by the command timeout so that a client
    /// that never reads cannot park us forever.
    async fn flush<S: Io>(&mut self, io: &mut S) -> io::Result<()> {
        if self.protocol.output().is_empty() {
            return Ok(());
        }
        let mut out = std::mem::take(&mut self.wbuf);
        out.clear();
        out.extend_from_slice(self.protocol.output());
        crate::metrics::replies(self.role, &out);
        self.protocol.clear_output();
        let limit = self.live.settings.raw.timeouts.command;
        match tokio::time::timeout(limit, io.write_all(out)).await {
            Ok((res, out)) => {
                self.wbuf = out;
                self.deadlines.answered(Instant::now());
                res
            }
            Err(_) => Err(io::ErrorKind::TimedOut.into()),
        }
    }

    /// Reads once, under the session's deadlines, and feeds the protocol. Returns
    /// why the session is over when the client closed or was displaced. A deadline
    /// or shutdown queues the matching `421` instead of feeding.
    async fn read<S: Io>(&mut self, io: &mut S) -> io::Result<Option<&'static str>> {
        let in_data = self.protocol.in_data();
        let now = Instant::now();
        let (mut deadline, cut) = self.deadlines.next(in_data, now);
        // `None`: the shutdown grace ends first.
        let mut cut = Some(cut);
        let shutting_down = *self.shutdown.borrow();
        if shutting_down {
            let grace = self.live.settings.raw.timeouts.shutdown_grace;
            let until = *self.grace_until.get_or_insert_with(|| now + grace);
            if !in_data || until <= now {
                self.protocol.shutdown();
                return Ok(None);
            }
            if until < deadline {
                deadline = until;
                cut = None;
            }
        }
        let mut buf = std::mem::take(&mut self.rbuf);
        if buf.capacity() < READ_SIZE {
            buf = Vec::with_capacity(READ_SIZE);
        }
        let read = tokio::time::timeout_at(deadline, io.read(buf));
        let activity = Arc::clone(&self.activity);
        let displaced = activity.displaced();
        // A read abandoned on io_uring stays queued in the ring and would swallow
        // whatever arrives next, so a read is only ever abandoned when the session
        // is about to close: at a deadline, when displaced, or on shutdown outside a
        // message. Inside a message, shutdown waits for this read and the grace
        // period applies to the next one.
        let waited = if shutting_down || in_data {
            tokio::select! {
                r = read => Waited::Read(r),
                () = displaced => Waited::Displaced,
            }
        } else {
            tokio::select! {
                r = read => Waited::Read(r),
                () = displaced => Waited::Displaced,
                _ = self.shutdown.changed() => Waited::Stopping,
            }
        };
        let result = match waited {
            Waited::Read(result) => result,
            Waited::Displaced => return Ok(Some(self.close_displaced(io).await)),
            // The next read answers `421 4.3.2`.
            Waited::Stopping => return Ok(None),
        };
        let Ok((res, mut buf)) = result else {
            match cut {
                Some(cut) => {
                    self.cut = Some(cut);
                    self.protocol.timeout();
                }
                None => self.protocol.shutdown(),
            }
            return Ok(None);
        };
        let n = match res {
            Ok(n) if n > 0 => n,
            other => {
                self.rbuf = buf;
                return other.map(|_| Some("client closed"));
            }
        };
        buf.truncate(n);
        self.activity.received(n);
        self.deadlines.fed(&buf, Instant::now());
        self.protocol.set_spool_state(self.shared.monitor.state());
        // The read buffer becomes the protocol's input (no copy) and its previous
        // input buffer is the next read's.
        self.rbuf = self.protocol.feed_buffer(buf);
        Ok(None)
    }

    /// A newcomer at a connection cap displaced this slow session: `421 4.3.2`,
    /// bypassing the protocol (whatever it was receiving is dropped with it), and close.
    async fn close_displaced<S: Io>(&mut self, io: &mut S) -> &'static str {
        let host = &self.live.settings.raw.hostname;
        let line = format!("421 4.3.2 {host} too many connections, closing the slowest\r\n");
        // The client may not be reading; it is being closed either way.
        let _ = tokio::time::timeout(GOODBYE, io.write_all(line.into_bytes())).await;
        io.shutdown().await;
        "displaced by a newcomer at the connection cap"
    }

    /// Writes the next part of a message that outgrew the message buffer to the
    /// spool. A failure is remembered and answered at the end of data.
    fn spill(&mut self, id: MessageId, bytes: &[u8]) {
        if self.spilling.as_ref().is_some_and(|s| s.id != id) {
            self.drop_spill();
        }
        let s = self.spilling.get_or_insert(Spilling {
            id,
            next: 0,
            bytes: 0,
            failed: None,
        });
        if s.failed.is_some() {
            return;
        }
        match self.shared.spool.spill(&id, &mut s.next, bytes) {
            Ok(()) => s.bytes += bytes.len() as u64,
            Err(e) => s.failed = Some(e),
        }
    }

    /// Deletes the parts of the message being received, if any.
    fn drop_spill(&mut self) {
        if let Some(s) = self.spilling.take() {
            self.remove_parts(&s.id);
        }
    }

    fn remove_parts(&self, id: &MessageId) {
        if let Err(e) = self.shared.spool.drop_spill(id) {
            tracing::warn!(%id, error = %e, "cannot delete the parts of a message; the next start does");
        }
    }

    /// The end of data; its parts, if the message outgrew the message buffer, are
    /// deleted after it whatever became of it.
    async fn end_of_data(&mut self, id: MessageId, envelope: Envelope, tail: Vec<u8>) {
        if let Some(kind) = self.intake_kind(&envelope) {
            return self.consume(id, envelope, kind, tail).await;
        }
        let Some(spilled) = self.spilling.take_if(|s| s.id == id) else {
            self.drop_spill();
            return self.commit(id, envelope, tail).await;
        };
        self.commit_spilled(id, envelope, spilled, tail).await;
        self.remove_parts(&id);
    }

    /// What intake the transaction's recipients belong to, if any (the protocol
    /// keeps intake recipients in transactions of their own).
    fn intake_kind(&self, envelope: &Envelope) -> Option<crate::feedback_loop::Kind> {
        if self.role != Role::Mx {
            return None;
        }
        let intake = self.live.settings.intake.as_ref()?;
        intake.kind(&envelope.recipients.first()?.address)?.ok()
    }

    /// A bounce or complaint report for the intake: read whole (under the ingest
    /// budget when it was spilled), consumed off the core, answered `250`, never
    /// queued (`feedback_loop::intake`).
    async fn consume(
        &mut self,
        id: MessageId,
        envelope: Envelope,
        kind: crate::feedback_loop::Kind,
        tail: Vec<u8>,
    ) {
        let message = match self.spilling.take_if(|s| s.id == id) {
            None => tail,
            Some(spilled) => {
                if let Some(e) = spilled.failed {
                    self.remove_parts(&id);
                    return self.spool_failed(id, &e);
                }
                let size = spilled.bytes + tail.len() as u64;
                let _reservation = self.shared.ingest.reserve(size).await;
                let mut body = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
                let read = self.shared.spool.read_spill(&id, &mut body);
                self.remove_parts(&id);
                if let Err(e) = read {
                    return self.spool_failed(id, &e);
                }
                body.extend_from_slice(&tail);
                body
            }
        };
        let spool = self.shared.spool.clone();
        let feedback = self.shared.feedback.clone();
        let directory = self.shared.tenants.as_ref().and_then(|t| t.directory());
        let settings = Arc::clone(&self.live.settings);
        let recipients: Vec<String> = envelope
            .recipients
            .iter()
            .map(|r| r.address.clone())
            .collect();
        let done = tokio::task::spawn_blocking(move || {
            let intake = crate::feedback_loop::intake::Intake {
                spool: &spool,
                rules: &settings.bounces,
                verp_domain: settings.intake.as_ref().and_then(|a| a.verp_domain()),
                feedback: feedback.as_deref(),
                directory: directory.as_deref(),
                dmarc_max_reports: settings.raw.feedback.dmarc_max_reports,
            };
            recipients
                .iter()
                .map(|r| intake.consume(kind, r, &message))
                .collect::<Vec<_>>()
        })
        .await;
        let Ok(done) = done else {
            return self.spool_failed(
                id,
                &way2mail_queue::Error::Corrupt {
                    key: format!("report {id}"),
                    reason: "the intake stopped".into(),
                },
            );
        };
        for c in &done {
            tracing::info!(
                target: "way2mail::message",
                %id,
                client_ip = %self.peer.ip(),
                listener = self.role.as_str(),
                kind = ?c.kind,
                result = c.result,
                detail = c.detail,
                tenant = c.tenant.as_deref().unwrap_or(""),
                records = c.records,
                "report consumed"
            );
        }
        // Consumed, not queued: the end of data is answered all the same, unless
        // the intake refused the report.
        if let Some(reply) = done.into_iter().find_map(|c| c.reply) {
            return self.protocol.message_refused(reply);
        }
        self.messages += 1;
        self.protocol.message_refused(Reply::new(
            250,
            way2mail_smtp::reply::EnhancedCode::new(2, 0, 0),
            "Report received",
        ));
    }

    /// A message that outgrew the message buffer: signed and spooled from its
    /// parts, or (mail from the internet, whose checks need it whole) read back
    /// under the ingest budget and committed like any other.
    async fn commit_spilled(
        &mut self,
        id: MessageId,
        envelope: Envelope,
        spilled: Spilling,
        tail: Vec<u8>,
    ) {
        if let Some(e) = spilled.failed {
            return self.spool_failed(id, &e);
        }
        if !self.live.inbound.applies(self.role, &envelope)
            && self
                .commit_from_parts(id, envelope.clone(), spilled.bytes, &tail)
                .await
        {
            return;
        }
        let size = spilled.bytes + tail.len() as u64;
        let _reservation = self.shared.ingest.reserve(size.saturating_mul(2)).await;
        let mut body = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        match self.shared.spool.read_spill(&id, &mut body) {
            Ok(()) if body.len() as u64 == spilled.bytes => {
                body.extend_from_slice(&tail);
                drop(tail);
                self.commit(id, envelope, body).await;
            }
            Ok(()) => {
                let e = way2mail_queue::Error::Corrupt {
                    key: format!("parts of {id}"),
                    reason: "fewer bytes read back than were written".into(),
                };
                self.spool_failed(id, &e);
            }
            Err(e) => self.spool_failed(id, &e),
        }
    }

    /// The message could not be spooled: `451`/`452` and an ERROR line.
    fn spool_failed(&mut self, id: MessageId, e: &way2mail_queue::Error) {
        crate::metrics::rejected(self.role.as_str(), "spool_failure");
        tracing::error!(%id, client_ip = %self.peer.ip(), error = %e, "spooling failed");
        self.protocol.message_queued(Err(queue_failure(e)));
    }

    /// The commit point: a message is either not accepted, or sealed, written and
    /// flushed before the client hears `250`. Before that, mail from the internet is
    /// checked (SPF/DKIM/DMARC/ARC → `Authentication-Results:`), and tenant mail is
    /// DKIM-signed, the signature being the last header change.
    async fn commit(&mut self, id: MessageId, envelope: Envelope, body: Vec<u8>) {
        let data_ended = Instant::now();
        let mut body = body;
        let mut checks = None;
        if self.live.inbound.applies(self.role, &envelope) {
            match self.live.inbound.check(&envelope, body).await {
                Ok(outcome) => {
                    body = outcome.body;
                    checks = Some(outcome.summary);
                }
                Err((reply, summary)) => {
                    crate::metrics::rejected(self.role.as_str(), "inbound_auth");
                    tracing::info!(
                        target: "way2mail::message",
                        %id,
                        client_ip = %self.peer.ip(),
                        listener = self.role.as_str(),
                        auth = %summary,
                        reply = reply.code,
                        "message refused"
                    );
                    self.protocol.message_refused(reply);
                    return;
                }
            }
        }
        // Content scanning (`scan/`): awaited here, so a slow rspamd delays this
        // session only. Its header changes come before the signature.
        let scan_config = &self.live.settings.raw.scan;
        let scan_role = crate::scan::role_of(self.role);
        let (body, scan) =
            match crate::scan::scan(scan_config, scan_role, &id, &envelope, body).await {
                Ok(scanned) => scanned,
                Err(refusal) => {
                    crate::metrics::rejected(self.role.as_str(), refusal.reason());
                    let reply = refusal.reply();
                    tracing::info!(
                        target: "way2mail::message",
                        %id,
                        client_ip = %self.peer.ip(),
                        listener = self.role.as_str(),
                        tenant = envelope.origin.tenant.as_deref().unwrap_or(""),
                        scan = %refusal.describe(),
                        reply = reply.code,
                        "message refused"
                    );
                    self.protocol.message_refused(reply);
                    return;
                }
            };
        let mut envelope = envelope;
        envelope.scan = scan.as_ref().map(|s| s.result.clone());
        let (body, dkim) =
            match crate::submit::sign(&self.shared, &self.live, &id, &mut envelope, body) {
                Ok(signed) => signed,
                Err(reply) => return self.not_signed(id, &envelope, reply),
            };
        let report = Queued {
            size: body.len() as u64,
            data_ended,
            checks,
            dkim,
            recipients: envelope.recipients.len(),
            tenant: envelope.origin.tenant.clone(),
        };
        let shared = Arc::clone(&self.shared);
        let hold = scan.as_ref().is_some_and(|s| s.hold);
        let result = if hold {
            crate::submit::spool_held(&shared, id, envelope, body, Default::default()).await
        } else {
            crate::submit::spool(&shared, id, envelope, body, Default::default()).await
        };
        if let (Some(scan), Ok(())) = (&scan, &result) {
            tracing::info!(
                target: "way2mail::message",
                %id,
                listener = self.role.as_str(),
                scan = %scan.summary,
                held = scan.hold,
                "message scanned"
            );
        }
        self.queued(id, result, report);
    }

    /// The end of data of a message received in parts that needs no checks of the
    /// whole message: its header section is read from the parts, the signer signs
    /// over the parts as they are read (`Signer::apply_streamed`), and the spool
    /// writes its chunks from the parts (`Spool::enqueue_from_parts`). What it holds
    /// is the header section and a chunk, whatever the message's size. `false`
    /// when the header section is not in the parts (the caller reads the message
    /// back whole instead).
    async fn commit_from_parts(
        &mut self,
        id: MessageId,
        envelope: Envelope,
        spilled: u64,
        tail: &[u8],
    ) -> bool {
        let data_ended = Instant::now();
        // Mail that is scanned is scanned whole: the caller reads it back under
        // the ingest budget and commits it. Above `[scan] max_size` it is not.
        let size = spilled + tail.len() as u64;
        let scan_role = crate::scan::role_of(self.role);
        if crate::scan::applies(&self.live.settings.raw.scan, scan_role, size) {
            return false;
        }
        let spool = self.shared.spool.clone();
        let _reservation = self
            .shared
            .ingest
            .reserve(spilled + tail.len() as u64)
            .await;
        let header = match header_section(&spool, &id) {
            Ok(Some(header)) => header,
            Ok(None) => return false,
            Err(e) => {
                self.spool_failed(id, &e);
                return true;
            }
        };
        let mut envelope = envelope;
        let skip = header.len();
        // One-click unsubscribe fields and Feedback-ID, as `submit::sign` adds them
        // to whole messages.
        let header = crate::submit::add_fields(&self.shared, &self.live, &id, &envelope, header);
        let mut pieces = |each: &mut dyn FnMut(&[u8])| -> Result<(), SignError> {
            spool
                .each_part_after(&id, skip as u64, |part| {
                    each(part);
                    Ok(())
                })
                .map_err(|e| SignError::Sign(format!("reading the message back: {e}")))?;
            each(tail);
            Ok(())
        };
        let (head, skip, dkim) =
            match self
                .live
                .signer
                .apply_streamed(&envelope, &header, &mut pieces)
            {
                Ok(Some(outcome)) => {
                    if envelope.origin.tenant.is_none() {
                        envelope.origin.tenant = outcome.tenant;
                    }
                    (outcome.body, skip as u64, outcome.dkim)
                }
                Ok(None) => (Vec::new(), 0, None),
                Err(reply) => {
                    self.not_signed(id, &envelope, reply);
                    return true;
                }
            };
        let result = match spool.enqueue_from_parts(id, &envelope, &head, skip, tail) {
            Ok(durable) => durable.wait().await,
            Err(e) => Err(e),
        };
        let report = Queued {
            size: head.len() as u64 + spilled - skip + tail.len() as u64,
            data_ended,
            checks: None,
            dkim,
            recipients: envelope.recipients.len(),
            tenant: envelope.origin.tenant.clone(),
        };
        self.queued(id, result, report);
        true
    }

    /// Tenant mail that must be signed and cannot be: the signer's reply.
    fn not_signed(&mut self, id: MessageId, envelope: &Envelope, reply: Reply) {
        crate::metrics::rejected(self.role.as_str(), "not_signed");
        tracing::info!(
            target: "way2mail::message",
            %id,
            client_ip = %self.peer.ip(),
            listener = self.role.as_str(),
            tenant = envelope.origin.tenant.as_deref().unwrap_or(""),
            reply = reply.code,
            "message refused: not signed"
        );
        self.protocol.message_refused(reply);
    }

    /// The spool's verdict on a message: `250` and the "message queued" line once
    /// it is durable, else the failure's reply.
    fn queued(&mut self, id: MessageId, result: Result<(), way2mail_queue::Error>, report: Queued) {
        match result {
            Ok(()) => {
                self.messages += 1;
                crate::metrics::accepted(
                    self.role.as_str(),
                    report.data_ended.elapsed().as_secs_f64(),
                );
                tracing::info!(
                    target: "way2mail::message",
                    %id,
                    client_ip = %self.peer.ip(),
                    listener = self.role.as_str(),
                    tls = self.tls.as_deref().unwrap_or("none"),
                    size = report.size,
                    recipients = report.recipients,
                    tenant = report.tenant.as_deref().unwrap_or(""),
                    auth = report.checks.as_deref().unwrap_or(""),
                    dkim = report.dkim.as_deref().unwrap_or(""),
                    "message queued"
                );
                self.protocol.message_queued(Ok(()));
            }
            Err(e) => self.spool_failed(id, &e),
        }
    }
}

/// What the "message queued" line says beside the envelope.
struct Queued {
    size: u64,
    data_ended: Instant,
    checks: Option<String>,
    dkim: Option<String>,
    recipients: usize,
    tenant: Option<String>,
}

/// The most of a message's header section read from its parts; a longer one makes
/// the end of data read the message back whole.
const HEADER_MAX: usize = 1024 * 1024;

/// The header section of a message received in parts, the empty line included;
/// `None` when the parts hold no end of it within [`HEADER_MAX`].
fn header_section(spool: &Spool, id: &MessageId) -> Result<Option<Vec<u8>>, way2mail_queue::Error> {
    let (mut head, end) = way2mail_queue::read_header_section(spool.parts(id)?, HEADER_MAX)?;
    Ok(end.map(|end| {
        head.truncate(end);
        head
    }))
}

/// Chooses the SMTP answer for a spool failure: a full filesystem is `452 4.3.1`,
/// anything else `451 4.3.0`.
fn queue_failure(e: &way2mail_queue::Error) -> QueueFailure {
    match e {
        way2mail_queue::Error::NoSpace(_) => QueueFailure::DiskFull,
        way2mail_queue::Error::Unhealthy(_) => QueueFailure::Unhealthy,
        _ => QueueFailure::Other,
    }
}
