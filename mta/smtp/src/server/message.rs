//! The two ends of a message's content, shared by DATA and BDAT: whether content
//! may start (a transaction with at least one accepted recipient), the new buffer
//! with its `Received:` header, and the end-of-content checks that either refuse the
//! message or turn buffer and transaction into [`Event::Message`].
//!
//! This is the protocol side of the commit point: the transaction is consumed here,
//! and the client's `250` only comes once the caller reports the spool write.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::{Envelope, MessageId, Origin};

use super::body::Body;
use super::state::SessionState;
use super::Event;
use crate::reply::{self, EnhancedCode, Reply};

const DATA_LINE_TOO_LONG: Reply = Reply::new(
    500,
    EnhancedCode::new(5, 5, 2),
    "Message has a line longer than 1000 octets",
);

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

    /// A fresh buffer for the open transaction, starting with our `Received:` header.
    pub(super) fn new_body(&self) -> Body {
        let id = MessageId::generate();
        let header = self.received_header(&id, SystemTime::now());
        let hint = self.tx.as_ref().and_then(|t| t.size_hint);
        Body::new(id, header, self.params.limits.max_message_size, hint)
    }

    /// The content is complete. The transaction ends here whatever the outcome.
    pub(super) fn finish_message(
        &mut self,
        body: Body,
        line_too_long: bool,
    ) -> Result<Event, Reply> {
        let tx = self.tx.take().ok_or(reply::BAD_SEQUENCE_MAIL)?;
        if body.oversize() {
            return Err(reply::TOO_BIG);
        }
        if line_too_long {
            return Err(DATA_LINE_TOO_LONG);
        }
        if body.received_headers() > self.params.limits.max_received_headers {
            return Err(reply::LOOP);
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
        };
        Ok(Event::Message {
            id: body.id,
            envelope,
            body: body.into_bytes(),
        })
    }
}
