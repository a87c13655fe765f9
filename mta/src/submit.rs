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
    // One-click unsubscribe fields go in first, so that the signature covers them.
    let body = match crate::unsubscribe::fields(shared, live, id, envelope) {
        Some(fields) => crate::unsubscribe::add(body, &fields),
        None => body,
    };
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
