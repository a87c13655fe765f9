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

/// How long a message queued for review is leased while it is written, and how
/// far off it is scheduled before the hold takes it off the schedule: neither the
/// scheduler nor the in-memory handoff can start delivering it meanwhile.
const HOLD_LEASE_MS: u64 = 60 * 60 * 1000;
const HOLD_DUE_MS: u64 = 7 * 24 * 60 * 60 * 1000;

/// [`spool`] for a message a content scan holds for review (`[scan] hold_score`):
/// written leased (never handed to delivery), then scheduled far off and held in
/// the writes right after, so that `way2mail queue list --state held` shows it
/// until an operator releases or bounces it. `Ok` once the message is durable;
/// a hold that fails after that is logged (the message stays queued, due in a
/// week) rather than refused.
pub async fn spool_held(
    shared: &Shared,
    id: MessageId,
    envelope: Envelope,
    body: Vec<u8>,
    side: SideRecords,
) -> Result<(), Error> {
    let spool = shared.spool.clone();
    let now = way2mail_daemon::time::now_ms();
    let durable = match spool.enqueue_leased(id, &envelope, &body, now, HOLD_LEASE_MS, side) {
        Ok(durable) => durable,
        Err(e) => {
            spool.forget_lease(&id);
            return Err(e);
        }
    };
    drop(body);
    if let Err(e) = durable.wait().await {
        spool.forget_lease(&id);
        return Err(e);
    }
    let held = async {
        spool
            .complete(id, &envelope, Some(now + HOLD_DUE_MS), None, Vec::new())?
            .wait()
            .await?;
        let s = spool.clone();
        tokio::task::spawn_blocking(move || {
            s.change_messages(&[id], false, |_, _, _| Ok(way2mail_queue::Change::Hold))
        })
        .await
        .map_err(|_| Error::Corrupt {
            key: format!("hold {id}"),
            reason: "the hold stopped".into(),
        })?
    };
    match held.await {
        Ok(changed) => match changed.first() {
            Some((_, way2mail_queue::Changed::Done)) => crate::scan::held(),
            other => {
                tracing::error!(%id, outcome = ?other, "a message for review could not be held; it is due in a week")
            }
        },
        Err(e) => {
            tracing::error!(%id, error = %e, "a message for review could not be held; it is due in a week")
        }
    }
    Ok(())
}
