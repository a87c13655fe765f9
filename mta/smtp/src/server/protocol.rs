//! [`Protocol`]: the byte-level driver of one session. It owns the input and output
//! buffers, cuts input into command lines or hands it to the DATA / BDAT receivers,
//! dispatches commands to the verb handlers, counts errors, and turns outcomes into
//! [`Event`]s.
//!
//! Buffering is bounded by construction: in command mode at most one partial command
//! line (< 512 octets; < 12288 for an `AUTH` line where AUTH exists) is kept once the
//! input has been processed; a longer line is dropped as it arrives; DATA and BDAT
//! content goes straight into the message buffer (itself capped at the size limit).
//! Replies to pipelined commands accumulate in `output` in order, and are written by
//! the caller whenever an event asks for it.
//!
//! AUTH lines carry credentials: once processed they are overwritten in the input
//! buffer, the buffer is wiped when the session is dropped, and `Debug` shows only
//! its length.

use std::fmt;
use std::mem;

use zeroize::Zeroize;

use super::auth::{self, AuthStep, Sasl, MAX_AUTH_LINE};
use super::bdat::ChunkPlan;
use super::body::Body;
use super::command::{self, BdatArgs, Command};
use super::data::DataReceiver;
use super::message::{ContentRefusal, Flaws};
use super::state::SessionState;
use super::{AuthVerdict, Event, QueueFailure, SessionParams, SpoolState};
use crate::reply::{self, EnhancedCode, Reply};

/// RFC 5321 §4.5.3.1.4: a command line is at most 512 octets including CRLF.
pub const MAX_COMMAND_LINE: usize = 512;

/// Input kept after processing beyond this capacity is given back to the allocator.
const KEEP_INPUT_CAPACITY: usize = 64 * 1024;

/// What the input currently is.
#[derive(Debug)]
enum Mode {
    Command,
    /// Dropping the rest of a line that is already too long; then this reply.
    SkipLine(Reply),
    Data(DataReceiver, Body),
    Bdat {
        remaining: u64,
        size: u64,
        last: bool,
        plan: ChunkPlan,
    },
    /// A message was handed out; waiting for `message_queued`.
    AwaitQueue(crate::MessageId),
    /// `Event::Refused` was handed out; the next `next_event` sends the reply.
    Refused(ContentRefusal),
    /// `220 2.0.0` sent; waiting for `tls_established`.
    AwaitTls,
    /// A `334` challenge was sent; the next line is the client's SASL response.
    Auth(Sasl),
    /// Credentials were handed out; waiting for `auth_result`.
    AwaitAuth,
    /// The verdict arrived; the next `next_event` replies to it.
    Verdict(AuthVerdict),
    Closing,
}

/// The result of one processing step inside `next_event`.
// Carries an `Event` by value on its way out; see `Event` for why it is not boxed.
#[allow(clippy::large_enum_variant)]
enum Step {
    Continue,
    NeedInput,
    Emit(Event),
}

/// One SMTP server session, sans-IO.
pub struct Protocol {
    state: SessionState,
    input: Vec<u8>,
    /// Start of the unprocessed part of `input`.
    pos: usize,
    /// Octets from `pos` already known to hold no line end, so that a line arriving
    /// an octet at a time is scanned once, not once per octet (AUTH lines reach
    /// 12288 octets). Zero whenever `pos` moves past a line.
    newline_free: usize,
    output: Vec<u8>,
    mode: Mode,
    errors: u32,
}

impl Protocol {
    pub fn new(params: SessionParams) -> Protocol {
        Protocol {
            state: SessionState::new(params),
            input: Vec::new(),
            pos: 0,
            newline_free: 0,
            output: Vec::new(),
            mode: Mode::Command,
            errors: 0,
        }
    }

    /// Queues `220 <hostname> ESMTP Way2Mail`.
    pub fn greeting(&mut self) {
        let text = format!("{} ESMTP Way2Mail", self.state.params.hostname);
        Reply::without_enhanced(220, text).write_to(&mut self.output);
    }

    /// Appends client input. Input arriving while the session waits for a TLS
    /// handshake or is closing is dropped: it can never be executed.
    pub fn feed(&mut self, bytes: &[u8]) {
        if !matches!(self.mode, Mode::AwaitTls | Mode::Closing) {
            self.input.extend_from_slice(bytes);
        }
    }

    /// Appends client input that arrived in a buffer of its own (its whole length),
    /// and returns an empty buffer for the next read. When nothing was left
    /// buffered, the usual case, the buffer itself becomes the input and not a
    /// byte is copied; the one returned is the previous input buffer.
    pub fn feed_buffer(&mut self, mut buf: Vec<u8>) -> Vec<u8> {
        if self.input.is_empty() && !matches!(self.mode, Mode::AwaitTls | Mode::Closing) {
            self.pos = 0;
            let mut old = std::mem::replace(&mut self.input, buf);
            old.clear();
            return old;
        }
        self.feed(&buf);
        buf.clear();
        buf
    }

    /// Processes buffered input up to the next thing the caller must do.
    pub fn next_event(&mut self) -> Event {
        loop {
            let step = match self.mode {
                Mode::Closing => {
                    self.discard_input();
                    return Event::Close;
                }
                Mode::AwaitTls => return Event::StartTls,
                Mode::AwaitQueue(_) | Mode::AwaitAuth => return Event::NeedInput,
                Mode::Verdict(_) => self.verdict_step(),
                Mode::Refused(_) => self.refused_step(),
                Mode::Command => self.command_step(),
                Mode::Auth(_) => self.sasl_step(),
                Mode::SkipLine(_) => self.skip_step(),
                Mode::Data(..) => self.data_step(),
                Mode::Bdat { .. } => self.bdat_step(),
            };
            match step {
                Step::Continue => {}
                Step::NeedInput => {
                    self.compact();
                    return Event::NeedInput;
                }
                Step::Emit(event) => return event,
            }
        }
    }

    /// Reply bytes not yet written.
    pub fn output(&self) -> &[u8] {
        &self.output
    }

    pub fn clear_output(&mut self) {
        self.output.clear();
    }

    pub fn set_spool_state(&mut self, s: SpoolState) {
        self.state.spool = s;
    }

    /// Hands message content out as [`Event::Content`] whenever more than `bytes`
    /// of it are held, instead of keeping each message whole until its end.
    pub fn spill_content_over(&mut self, bytes: usize) {
        self.state.spill_at = Some(bytes.max(1));
    }

    /// The TLS handshake succeeded: forget the EHLO and any transaction (RFC 3207 §4.2).
    pub fn tls_established(&mut self, description: String) {
        self.state.tls_established(description);
        self.discard_input();
        if matches!(self.mode, Mode::AwaitTls) {
            self.mode = Mode::Command;
        }
    }

    /// The caller's verdict on the last [`Event::Message`]; queues the final reply.
    pub fn message_queued(&mut self, result: Result<(), QueueFailure>) {
        let Mode::AwaitQueue(id) = self.mode else {
            return;
        };
        self.mode = Mode::Command;
        if result.is_ok() {
            if let Some((policy, grant)) = self.state.tenant() {
                policy.message_queued(grant);
            }
        }
        let r = match result {
            Ok(()) => Reply::owned(250, EnhancedCode::new(2, 0, 0), format!("{id} queued")),
            Err(QueueFailure::DiskFull) => reply::DISK_LOW,
            Err(QueueFailure::Unhealthy | QueueFailure::Other) => reply::QUEUE_FAILED,
        };
        r.write_to(&mut self.output);
    }

    /// The caller refused the message handed over by the last [`Event::Message`]
    /// before spooling it (a DMARC reject, a domain that may not send): `reply`
    /// answers the end of data instead of `250`, and the transaction is over.
    pub fn message_refused(&mut self, reply: Reply) {
        let Mode::AwaitQueue(_) = self.mode else {
            return;
        };
        self.mode = Mode::Command;
        reply.write_to(&mut self.output);
    }

    /// The caller's verdict on the last [`Event::Authenticate`]. The reply (`235`,
    /// `535`, `454`, or `421` and close) is queued by the next `next_event()`, which
    /// also counts a failure towards the error limit and may tarpit it first.
    pub fn auth_result(&mut self, verdict: AuthVerdict) {
        if matches!(self.mode, Mode::AwaitAuth) {
            self.mode = Mode::Verdict(verdict);
        }
    }

    /// True while message content (DATA or a BDAT chunk) is being received.
    pub fn in_data(&self) -> bool {
        matches!(self.mode, Mode::Data(..) | Mode::Bdat { .. })
    }

    /// One of the caller's deadlines passed (a command line, the content's minimum
    /// rate, the session's lifetime): `421 4.4.2`, then [`Event::Close`].
    pub fn timeout(&mut self) {
        let text = format!("{} timeout exceeded", self.state.params.hostname);
        self.close_with(Reply::owned(421, EnhancedCode::new(4, 4, 2), text));
    }

    /// The server is stopping: `421 4.3.2`, then [`Event::Close`].
    pub fn shutdown(&mut self) {
        let text = format!("{} service shutting down", self.state.params.hostname);
        self.close_with(Reply::owned(421, EnhancedCode::new(4, 3, 2), text));
    }

    pub fn tls_active(&self) -> bool {
        self.state.tls_active
    }

    fn close_with(&mut self, r: Reply) {
        if !matches!(self.mode, Mode::Closing) {
            r.write_to(&mut self.output);
            self.mode = Mode::Closing;
        }
        self.discard_input();
    }

    fn discard_input(&mut self) {
        self.input.clear();
        self.pos = 0;
        self.newline_free = 0;
        if self.input.capacity() > KEEP_INPUT_CAPACITY {
            self.input.shrink_to(MAX_COMMAND_LINE);
        }
    }

    /// Drops processed input so that only the unprocessed tail stays buffered.
    fn compact(&mut self) {
        self.input.drain(..self.pos);
        self.pos = 0;
        if self.input.capacity() > KEEP_INPUT_CAPACITY && self.input.len() < MAX_COMMAND_LINE {
            self.input.shrink_to(MAX_COMMAND_LINE);
        }
    }

    /// The longest line allowed for the command starting with `line`.
    fn line_limit(&self, line: &[u8]) -> usize {
        if is_auth_line(line) && self.state.auth_enabled() {
            MAX_AUTH_LINE
        } else {
            MAX_COMMAND_LINE
        }
    }

    /// Gives up on the rest of the current line without buffering it.
    fn skip_rest(&mut self, then: Reply) {
        // The line may be an AUTH line with credentials in it.
        self.input[self.pos..].fill(0);
        self.pos = self.input.len();
        self.newline_free = 0;
        self.mode = Mode::SkipLine(then);
    }

    /// The next complete line as `start..end` of `input` (consumed), or the length of
    /// the incomplete rest.
    fn next_line(&mut self) -> Result<(usize, usize), usize> {
        let avail = &self.input[self.pos..];
        let known = self.newline_free.min(avail.len());
        match avail[known..].iter().position(|&b| b == b'\n') {
            Some(nl) => {
                let (start, end) = (self.pos, self.pos + known + nl + 1);
                self.pos = end;
                self.newline_free = 0;
                Ok((start, end))
            }
            None => {
                self.newline_free = avail.len();
                Err(avail.len())
            }
        }
    }

    fn command_step(&mut self) -> Step {
        let limit = self.line_limit(&self.input[self.pos..]);
        let (start, end) = match self.next_line() {
            Ok(line) => line,
            Err(partial) if partial >= limit => {
                // Even with its CRLF still to come this line is too long: stop buffering.
                self.skip_rest(reply::LINE_TOO_LONG);
                return Step::Continue;
            }
            Err(_) => return Step::NeedInput,
        };
        if end - start > limit {
            return self.respond(reply::LINE_TOO_LONG);
        }
        // The line is moved out for the handler's borrow; nothing else reads input then.
        let mut input = mem::take(&mut self.input);
        let step = self.dispatch(&input[start..end]);
        if is_auth_line(&input[start..end]) {
            input[start..end].fill(0);
        }
        self.input = input;
        if matches!(self.mode, Mode::AwaitTls | Mode::Closing) {
            // Nothing pipelined after STARTTLS or QUIT may ever be executed.
            self.discard_input();
        }
        step
    }

    fn skip_step(&mut self) -> Step {
        let avail = &mut self.input[self.pos..];
        let nl = avail.iter().position(|&b| b == b'\n');
        let skipped = nl.map_or(avail.len(), |nl| nl + 1);
        avail[..skipped].fill(0);
        self.pos += skipped;
        if nl.is_none() {
            return Step::NeedInput;
        }
        match mem::replace(&mut self.mode, Mode::Command) {
            Mode::SkipLine(r) => self.respond(r),
            _ => Step::Continue,
        }
    }

    /// One line of a SASL exchange, bounded like an AUTH command line.
    fn sasl_step(&mut self) -> Step {
        let (start, end) = match self.next_line() {
            Ok(line) => line,
            Err(partial) if partial >= MAX_AUTH_LINE => {
                self.skip_rest(auth::LINE_TOO_LONG);
                return Step::Continue;
            }
            Err(_) => return Step::NeedInput,
        };
        let Mode::Auth(sasl) = mem::replace(&mut self.mode, Mode::Command) else {
            return Step::Continue;
        };
        let line = &self.input[start..end];
        let step = if line.len() > MAX_AUTH_LINE {
            AuthStep::Done(auth::LINE_TOO_LONG)
        } else {
            let line = line.strip_suffix(b"\n").unwrap_or(line);
            sasl.respond(line.strip_suffix(b"\r").unwrap_or(line))
        };
        self.input[start..end].fill(0);
        self.auth_step(step)
    }

    fn auth_step(&mut self, step: AuthStep) -> Step {
        match step {
            AuthStep::Challenge(challenge, sasl) => {
                Reply::without_enhanced(334, challenge).write_to(&mut self.output);
                self.mode = Mode::Auth(sasl);
                Step::Continue
            }
            AuthStep::Credentials {
                mechanism,
                username,
                password,
            } => {
                // Input pipelined behind the exchange stays buffered for after the verdict.
                self.mode = Mode::AwaitAuth;
                Step::Emit(Event::Authenticate {
                    mechanism,
                    username,
                    password,
                })
            }
            AuthStep::Done(r) => self.respond(r),
        }
    }

    fn verdict_step(&mut self) -> Step {
        match mem::replace(&mut self.mode, Mode::Command) {
            Mode::Verdict(v) => {
                let r = self.state.auth_verdict(v);
                self.respond(r)
            }
            _ => Step::Continue,
        }
    }

    fn dispatch(&mut self, line: &[u8]) -> Step {
        let cmd = match command::parse(line) {
            Ok(cmd) => cmd,
            Err(r) => return self.respond(r),
        };
        let s = &mut self.state;
        let r = match cmd {
            Command::Ehlo(name) => s.ehlo(name, true),
            Command::Helo(name) => s.ehlo(name, false),
            Command::Mail { path, params } => s.mail(path, params),
            Command::Rcpt { path, params } => s.rcpt(path, params),
            Command::Data => match s.data() {
                Ok(body) => {
                    reply::START_DATA.write_to(&mut self.output);
                    self.mode = Mode::Data(DataReceiver::default(), body);
                    return Step::Continue;
                }
                Err(r) => r,
            },
            Command::Bdat(args) => return self.bdat_command(args),
            Command::Rset => {
                s.reset();
                reply::RESET_OK
            }
            Command::Noop => reply::OK,
            Command::Quit => {
                let text = format!("{} closing connection", s.params.hostname);
                self.close_with(Reply::owned(221, EnhancedCode::new(2, 0, 0), text));
                return Step::Continue;
            }
            Command::Vrfy => reply::VRFY,
            Command::Help => reply::HELP,
            Command::StartTls => match s.starttls() {
                Ok(()) => {
                    reply::TLS_READY.write_to(&mut self.output);
                    self.mode = Mode::AwaitTls;
                    return Step::Emit(Event::StartTls);
                }
                Err(r) => r,
            },
            Command::Auth(args) => {
                let step = s.auth(args);
                return self.auth_step(step);
            }
            Command::NotImplemented => reply::NOT_IMPLEMENTED,
        };
        self.respond(r)
    }

    /// Queues a reply; counts 5xx replies, tarpits and closes on too many of them.
    fn respond(&mut self, r: Reply) -> Step {
        if r.code == 421 {
            self.close_with(r);
            return Step::Continue;
        }
        r.write_to(&mut self.output);
        if !r.is_permanent() {
            return Step::Continue;
        }
        self.errors = self.errors.saturating_add(1);
        let limits = &self.state.params.limits;
        let tarpit = self.errors > limits.tarpit_after_errors && !limits.tarpit_delay.is_zero();
        let delay = limits.tarpit_delay;
        if self.errors >= limits.max_errors {
            let text = format!("{} too many errors", self.state.params.hostname);
            self.close_with(Reply::owned(421, EnhancedCode::new(4, 7, 0), text));
        }
        if tarpit {
            Step::Emit(Event::Tarpit(delay))
        } else {
            Step::Continue
        }
    }

    fn data_step(&mut self) -> Step {
        let Mode::Data(rx, body) = &mut self.mode else {
            return Step::Continue;
        };
        let (used, done) = rx.consume(&self.input[self.pos..], body);
        self.pos += used;
        self.newline_free = 0;
        if !done {
            if let Some(bytes) = body.take_spill() {
                return Step::Emit(Event::Content { id: body.id, bytes });
            }
            return Step::NeedInput;
        }
        match mem::replace(&mut self.mode, Mode::Command) {
            Mode::Data(rx, body) => self.finish(body, rx.flaws()),
            _ => Step::Continue,
        }
    }

    fn finish(&mut self, body: Body, flaws: Flaws) -> Step {
        match self.state.finish_message(body, flaws) {
            Ok(Event::Refused { id, reason }) => self.refuse(id, reason),
            Ok(event) => {
                if let Event::Message { id, .. } = &event {
                    self.mode = Mode::AwaitQueue(*id);
                }
                Step::Emit(event)
            }
            Err(r) => self.respond(r),
        }
    }

    /// Hands the refusal out first, so that the caller can log it before the reply
    /// (and any tarpit before it) goes the usual way through `respond`.
    fn refuse(&mut self, id: crate::MessageId, reason: ContentRefusal) -> Step {
        self.mode = Mode::Refused(reason);
        Step::Emit(Event::Refused { id, reason })
    }

    fn refused_step(&mut self) -> Step {
        match mem::replace(&mut self.mode, Mode::Command) {
            Mode::Refused(reason) => self.respond(reason.reply()),
            _ => Step::Continue,
        }
    }

    fn bdat_command(&mut self, args: BdatArgs) -> Step {
        let usage = Reply::new(501, EnhancedCode::new(5, 5, 4), "Syntax: BDAT size [LAST]");
        let (size, last, plan) = match args {
            BdatArgs::Unsynced => {
                // The chunk's length is unknown, so its octets would be read as
                // commands: answer, then close rather than guess.
                let step = self.respond(usage);
                let text = format!(
                    "{} BDAT size unreadable, closing",
                    self.state.params.hostname
                );
                self.close_with(Reply::owned(421, EnhancedCode::new(4, 5, 0), text));
                return step;
            }
            BdatArgs::BadSyntax { size } => (size, false, ChunkPlan::Discard(usage)),
            BdatArgs::Chunk { size, last } => (size, last, self.state.bdat()),
        };
        self.mode = Mode::Bdat {
            remaining: size,
            size,
            last,
            plan,
        };
        Step::Continue
    }

    fn bdat_step(&mut self) -> Step {
        let Mode::Bdat {
            remaining, plan, ..
        } = &mut self.mode
        else {
            return Step::Continue;
        };
        let avail = &self.input[self.pos..];
        let take = usize::try_from(*remaining).map_or(avail.len(), |r| r.min(avail.len()));
        if *plan == ChunkPlan::Store {
            self.state.bdat_store(&avail[..take]);
        }
        self.pos += take;
        self.newline_free = 0;
        *remaining -= take as u64;
        if let Some((id, bytes)) = self.state.bdat_spill() {
            return Step::Emit(Event::Content { id, bytes });
        }
        if *remaining > 0 {
            return Step::NeedInput;
        }
        let Mode::Bdat {
            size, last, plan, ..
        } = mem::replace(&mut self.mode, Mode::Command)
        else {
            return Step::Continue;
        };
        match plan {
            ChunkPlan::Discard(r) => self.respond(r),
            ChunkPlan::Store if last => {
                let chunks = self.state.tx.as_mut().and_then(|t| t.chunks.take());
                match chunks {
                    Some(chunks) => {
                        let (body, flaws) = chunks.finish();
                        self.finish(body, flaws)
                    }
                    None => self.respond(reply::BAD_SEQUENCE_MAIL),
                }
            }
            ChunkPlan::Store => match self.state.bdat_chunk_done(size) {
                Ok(r) => self.respond(r),
                Err((id, reason)) => self.refuse(id, reason),
            },
        }
    }
}

/// `AUTH ` at the start of a line, in any case.
fn is_auth_line(line: &[u8]) -> bool {
    line.get(..5)
        .is_some_and(|v| v.eq_ignore_ascii_case(b"AUTH "))
}

/// Input may hold credentials: only its size is shown.
impl fmt::Debug for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Protocol")
            .field("state", &self.state)
            .field("mode", &self.mode)
            .field("input_len", &(self.input.len() - self.pos))
            .field("output_len", &self.output.len())
            .field("errors", &self.errors)
            .finish()
    }
}

impl Drop for Protocol {
    fn drop(&mut self) {
        // Zeroizing a Vec wipes its whole capacity, including processed lines.
        self.input.zeroize();
    }
}

#[cfg(test)]
mod tests;
