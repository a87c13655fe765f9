//! The end of every accepted submission, whichever door it came in by (an SMTP
//! session's end of data, an HTTPS API request): DKIM-sign tenant mail, then seal,
//! write and flush it to the spool, handing small fresh messages to delivery in
//! memory. The caller answers (`250`, `202`) only after [`spool`] returned `Ok`.

use way2mail_queue::{Error, SideRecords};
use way2mail_smtp::reply::Reply;
use way2mail_smtp::{Envelope, MessageId};

use crate::session::{Live, Shared};

/// Signs tenant mail; other mail passes unchanged. Returns the body (with its
/// signature) and the signature's summary for the "message queued" line; the
/// envelope may gain its tenant. `Err` is the reply refusing a message that must
/// be signed and cannot be.
pub fn sign(
    shared: &Shared,
    live: &Live,
    id: &MessageId,
    envelope: &mut Envelope,
    body: Vec<u8>,
) -> Result<(Vec<u8>, Option<String>), Reply> {
    // One-click unsubscribe fields and Feedback-ID go in first, so that the
    // signature covers them.
    let body = add_fields(shared, live, id, envelope, body);
    let outcome = live.signer.apply(envelope, body)?;
    // Trusted-network mail signed for a tenant domain is that tenant's: sealed
    // with its key, part of its export, erasure and retention.
    if envelope.origin.tenant.is_none() {
        envelope.origin.tenant = outcome.tenant;
    }
    Ok((outcome.body, outcome.dkim))
}

/// Writes a message to the spool, with `side` records in the same write (an API
/// request's idempotency record), and waits for the group commit that makes it
/// durable. A small message goes to delivery in memory once it is durable.
pub async fn spool(
    shared: &Shared,
    id: MessageId,
    envelope: Envelope,
    body: Vec<u8>,
    side: SideRecords,
) -> Result<(), Error> {
    let spool = &shared.spool;
    let enqueued = match &shared.handoff {
        Some(handoff) => handoff.enqueue(spool, id, &envelope, &body, side),
        None => spool
            .enqueue_with(id, &envelope, &body, side)
            .map(|d| (d, None)),
    };
    let (result, handed) = match enqueued {
        Ok((durable, handed)) => (durable.wait().await, handed),
        Err(e) => (Err(e), None),
    };
    if let Some(handed) = handed {
        if result.is_ok() {
            handed.send(envelope, body);
        } else {
            handed.failed(spool);
        }
    }
    result
}

/// The fields the platform adds to tenant mail before signing it, those the
/// message does not have already: one-click unsubscribe (`unsubscribe.rs`) and
/// `Feedback-ID` (`feedback_loop::feedback_id`).
pub fn add_fields(
    shared: &Shared,
    live: &Live,
    id: &MessageId,
    envelope: &Envelope,
    message: Vec<u8>,
) -> Vec<u8> {
    let unsubscribe = crate::unsubscribe::fields(shared, live, id, envelope);
    let feedback_id = crate::feedback_loop::feedback_id(envelope);
    let mut fields: Vec<(&str, &str)> = Vec::with_capacity(2);
    if let Some(f) = &unsubscribe {
        fields.push(("List-Unsubscribe", f));
    }
    if let Some(f) = &feedback_id {
        fields.push(("Feedback-ID", f));
    }
    if fields.is_empty() {
        return message;
    }
    crate::unsubscribe::add_missing(message, &fields)
}
