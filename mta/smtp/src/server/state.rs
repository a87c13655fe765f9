//! What one session knows between commands: the client's greeting, the open mail
//! transaction, TLS, the authenticated tenant and the spool's health. The verb
//! handlers (`ehlo.rs`, `auth.rs`, `mail.rs`, `rcpt.rs`, `data.rs`, `bdat.rs`,
//! `starttls.rs`) are `impl SessionState` blocks in their own files; `protocol.rs`
//! owns the byte buffers and calls them.

use crate::{BodyType, Recipient, Ret};

use super::bdat::Chunks;
use super::{Grant, SessionParams, SpoolState};

/// The accepted EHLO/HELO.
#[derive(Debug, Clone)]
pub(super) struct Greeting {
    pub name: String,
    /// EHLO (extensions on) rather than HELO.
    pub extended: bool,
}

/// One mail transaction, from an accepted `MAIL` to the end of data or `RSET`.
#[derive(Debug)]
pub(super) struct Transaction {
    pub sender: String,
    pub body_type: BodyType,
    pub smtputf8: bool,
    pub ret: Option<Ret>,
    pub envid: Option<String>,
    /// `SIZE=` as declared: only a hint for the first allocation.
    pub size_hint: Option<u64>,
    pub recipients: Vec<Recipient>,
    /// Some `RCPT` was answered (possibly with an error): decides 503 vs 554 at DATA.
    pub rcpt_attempted: bool,
    /// The message so far once a `BDAT` chunk has been accepted.
    pub chunks: Option<Chunks>,
    /// The recipients are the intake's ([`super::Intake`]): no other may join.
    pub intake: bool,
}

#[derive(Debug)]
pub(super) struct SessionState {
    pub params: SessionParams,
    pub greeting: Option<Greeting>,
    pub tx: Option<Transaction>,
    pub tls_active: bool,
    /// Negotiated version and cipher, recorded in the envelope.
    pub tls_description: Option<String>,
    /// Set by a successful AUTH; kept across RSET and EHLO (RFC 4954 §4), dropped
    /// only when the session ends or TLS starts.
    pub auth: Option<Grant>,
    pub spool: SpoolState,
    /// Content held past this many octets is handed out as it arrives
    /// ([`super::Event::Content`]); `None` keeps every message whole.
    pub spill_at: Option<usize>,
}

impl SessionState {
    pub fn new(params: SessionParams) -> SessionState {
        SessionState {
            tls_active: params.tls_active,
            params,
            greeting: None,
            tx: None,
            tls_description: None,
            auth: None,
            spool: SpoolState::Ready,
            spill_at: None,
        }
    }

    /// `RSET`, a new EHLO, or the end of a transaction.
    pub fn reset(&mut self) {
        self.tx = None;
    }
}
