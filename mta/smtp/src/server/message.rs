//! The two ends of a message's content, shared by DATA and BDAT: whether content
//! may start (a transaction with at least one accepted recipient), the new buffer
//! with its `Received:` header, and the end-of-content checks that either refuse the
//! message ([`ContentRefusal`], handed out as [`Event::Refused`]) or turn buffer and
//! transaction into [`Event::Message`].
//!
//! The receivers only take notes while the content goes by ([`Flaws`]); every
//! verdict waits for the end of data, so that the client, which cannot be answered
//! in the middle of its content, hears it as the reply to the final dot or chunk.
//!
//! This is the protocol side of the commit point: the transaction is consumed here,
//! and the client's `250` only comes once the caller reports the spool write.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::{Envelope, MessageId, Origin};

use super::body::Body;
use super::state::SessionState;
use super::{BareLineEndings, Event};
use crate::reply::{self, EnhancedCode, Reply};

const DATA_LINE_TOO_LONG: Reply = Reply::new(
    500,
    EnhancedCode::new(5, 5, 2),
    "Message has a line longer than 1000 octets",
);
const HAS_NUL: Reply = Reply::new(
    550,
    EnhancedCode::new(5, 6, 0),
    "Message contains a NUL octet",
);
const HAS_BARE_LINE_END: Reply = Reply::new(
    550,
    EnhancedCode::new(5, 6, 0),
    "Message contains a bare CR or LF; lines must end with CRLF",
);

/// Why the protocol refused a message at the end of its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ContentRefusal {
    /// Over `max_message_size`: `552 5.3.4`.
    TooBig,
    /// A DATA text line over 1000 octets: `500 5.5.2`.
    LineTooLong,
    /// A NUL octet anywhere in the content: `550 5.6.0`.
    Nul,
    /// A bare CR or LF under `bare_line_endings = "reject"`: `550 5.6.0`.
    BareLineEnding,
    /// More `Received:` headers than `max_received_headers`: `554 5.4.6`.
    Loop,
}

impl ContentRefusal {
    /// The reply to the end of data.
    pub fn reply(self) -> Reply {
        match self {
            ContentRefusal::TooBig => reply::TOO_BIG,
            ContentRefusal::LineTooLong => DATA_LINE_TOO_LONG,
            ContentRefusal::Nul => HAS_NUL,
            ContentRefusal::BareLineEnding => HAS_BARE_LINE_END,
            ContentRefusal::Loop => reply::LOOP,
        }
    }

    /// A stable word for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            ContentRefusal::TooBig => "too_big",
            ContentRefusal::LineTooLong => "line_too_long",
            ContentRefusal::Nul => "nul_octet",
            ContentRefusal::BareLineEnding => "bare_line_ending",
            ContentRefusal::Loop => "mail_loop",
        }
    }
}

/// What a receiver noticed in the content on its way into the buffer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Flaws {
    /// A DATA text line over 1000 octets.
    pub long_line: bool,
    /// A bare CR or LF (already stored as CRLF).
    pub bare_line_end: bool,
    pub nul: bool,
}

impl SessionState {
    /// A transaction exists and has at least one recipient.
    pub(super) fn content_allowed(&self) -> Result<(), Reply> {
        match &self.tx {
            None => Err(reply::BAD_SEQUENCE_MAIL),
            Some(t) if !t.recipients.is_empty() => Ok(()),
            Some(t) if t.rcpt_attempted => Err(reply::NO_VALID_RECIPIENTS),
            Some(_) => Err(reply::BAD_SEQUENCE_RCPT),
        }
    }

    /// Content to hand out before the end of data (see [`Body::take_spill`]): of the
    /// DATA message being received, or of the open BDAT transaction.
    pub(super) fn bdat_spill(&mut self) -> Option<(MessageId, Vec<u8>)> {
        let chunks = self.tx.as_mut()?.chunks.as_mut()?;
        chunks.take_spill()
    }

    /// A fresh buffer for the open transaction, starting with our `Received:` header.
    pub(super) fn new_body(&self) -> Body {
        let id = MessageId::generate();
        let header = self.received_header(&id, SystemTime::now());
        let hint = self.tx.as_ref().and_then(|t| t.size_hint);
        Body::new(id, header, self.params.limits.max_message_size, hint).spilling_at(self.spill_at)
    }

    /// The content is complete: [`Event::Message`], or [`Event::Refused`] when it
    /// fails a check. The transaction ends here whatever the outcome.
    pub(super) fn finish_message(&mut self, body: Body, flaws: Flaws) -> Result<Event, Reply> {
        let tx = self.tx.take().ok_or(reply::BAD_SEQUENCE_MAIL)?;
        if let Some(reason) = self.refusal(&body, flaws) {
            return Ok(Event::Refused {
                id: body.id,
                reason,
            });
        }
        let received_at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let envelope = Envelope {
            sender: tx.sender,
            recipients: tx.recipients,
            body_type: tx.body_type,
            smtputf8: tx.smtputf8,
            ret: tx.ret,
            envid: tx.envid,
            attempts: 0,
            next_attempt_ms: None,
            delay_notified: false,
            tags: Vec::new(),
            metadata: Default::default(),
            origin: Origin {
                client_ip: self.params.client_ip,
                helo: self
                    .greeting
                    .as_ref()
                    .map(|g| g.name.clone())
                    .unwrap_or_default(),
                listener: self.params.role.as_str().to_string(),
                tls: self.tls_active.then(|| {
                    // Implicit TLS without a reported description still says so.
                    self.tls_description
                        .clone()
                        .unwrap_or_else(|| "TLS".to_string())
                }),
                auth: self.auth.as_ref().map(|g| g.username.clone()),
                tenant: self.auth.as_ref().map(|g| g.tenant.clone()),
            },
            received_at_ms,
            scan: None,
        };
        Ok(Event::Message {
            id: body.id,
            envelope,
            body: body.into_bytes(),
        })
    }

    /// The first check the content fails, in the order the replies are documented.
    fn refusal(&self, body: &Body, flaws: Flaws) -> Option<ContentRefusal> {
        let limits = &self.params.limits;
        if body.oversize() {
            Some(ContentRefusal::TooBig)
        } else if flaws.long_line {
            Some(ContentRefusal::LineTooLong)
        } else if flaws.nul {
            Some(ContentRefusal::Nul)
        } else if flaws.bare_line_end && limits.bare_line_endings == BareLineEndings::Reject {
            Some(ContentRefusal::BareLineEnding)
        } else if body.received_headers() > limits.max_received_headers {
            Some(ContentRefusal::Loop)
        } else {
            None
        }
    }
}
