//! Purges by age, the spool's half of the retention sweep (the daemon decides the
//! periods, per tenant). Each purge is a key range or a scan of record headers; no
//! record is opened except the envelopes of messages being removed, whose pending
//! recipients get an `expired` delivery log record saying why.
//!
//! - `purge_log_of(key_id, t)` (delivery_log.rs): one tenant's log older than `t`.
//! - `purge_content_of(key_id, t)`: queued messages of one tenant accepted before
//!   `t` (message content and recipient lists). Messages leased to delivery at that
//!   moment are left for the next sweep rather than pulled from under it.
//! - `purge_erased()`: whatever is left under keys of erased tenants.

use crate::commit::Write;
use crate::keys::{self, Key};
use crate::{record, DeliveryOutcome, DeliveryRecord, Error, MessageId, RecipientState, Spool};
use way2mail_seal::record as seal;
use way2mail_seal::{KeyId, Lookup};

/// What `purge_content_of` did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ContentPurge {
    /// Messages removed.
    pub messages: u64,
    /// Old enough, but leased to delivery: left for the next sweep.
    pub in_delivery: u64,
}

impl Spool {
    /// Removes the queued messages sealed with `key_id` that were accepted before
    /// `before_ms`; each pending recipient gets an `expired` log record with
    /// `reason`. Blocks the calling thread for the write.
    pub fn purge_content_of(
        &self,
        key_id: KeyId,
        before_ms: u64,
        reason: &str,
    ) -> Result<ContentPurge, Error> {
        let inner = &*self.inner;
        let Lookup::Key(data_key) = inner.keyring.lookup(key_id) else {
            return Ok(ContentPurge::default());
        };
        let old: Vec<MessageId> = self
            .messages_of(key_id)?
            .into_iter()
            .filter(|id| id.timestamp_ms() < before_ms)
            .collect();
        let mut purge = ContentPurge::default();
        if old.is_empty() {
            return Ok(purge);
        }
        let schedule = self.schedule_keys()?;
        let now = way2mail_daemon::time::now_ms();
        let mut write = Write::default();
        for id in old {
            let entries = schedule.get(&id).map(Vec::as_slice).unwrap_or_default();
            let leased = inner.leases.is_held(&id)
                || entries
                    .iter()
                    .any(|k| matches!(keys::parse(k), Some(Key::Lease { .. })));
            if leased {
                purge.in_delivery += 1;
                continue;
            }
            let env_key = keys::envelope(&id);
            let Some(value) = inner.db.get(env_key)? else {
                continue;
            };
            let (envelope, body_len) = record::open_envelope(&inner.keyring, &env_key, &value)?;
            let log: Vec<DeliveryRecord> = envelope
                .recipients
                .iter()
                .filter(|r| r.state == RecipientState::Pending)
                .map(|r| DeliveryRecord {
                    time_ms: now,
                    outcome: DeliveryOutcome::Expired,
                    message_id: id.to_string(),
                    recipient: r.address.clone(),
                    next_hop: None,
                    ip: None,
                    tls: None,
                    reply: Some(reason.to_owned()),
                    attempt: envelope.attempts,
                    queue_time_ms: now.saturating_sub(envelope.received_at_ms),
                    tags: envelope.tags.clone(),
                    metadata: envelope.metadata.clone(),
                    category: None,
                    scan: envelope.scan.clone(),
                })
                .collect();
            write.remove(&env_key);
            crate::body::remove_body(&mut write, &id, body_len);
            for k in entries {
                write.remove(k);
            }
            write.count_messages(-1);
            self.append_log(&mut write, &data_key, &id, &log)?;
            purge.messages += 1;
        }
        if !write.is_empty() {
            inner.committer.submit(write).wait_blocking()?;
        }
        Ok(purge)
    }

    /// Deletes what is left of erased tenants (records whose data key was shredded):
    /// messages written by a session that raced the erasure, records brought back by
    /// a restore. Returns messages and log records removed.
    pub fn purge_erased(&self) -> Result<(u64, u64), Error> {
        let keyring = &self.inner.keyring;
        let mut erased: Vec<KeyId> = Vec::new();
        for item in self.inner.db.scan_prefix([keys::ENVELOPE]) {
            let (_, value) = item?;
            if let Some(id) = seal::key_id_of(&value) {
                if matches!(keyring.lookup(id), Lookup::Erased(_)) && !erased.contains(&id) {
                    erased.push(id);
                }
            }
        }
        for id in self.log_key_ids()? {
            if matches!(keyring.lookup(id), Lookup::Erased(_)) && !erased.contains(&id) {
                erased.push(id);
            }
        }
        let (mut messages, mut records) = (0, 0);
        for id in erased {
            let (m, r) = self.delete_key_data(id)?;
            messages += m;
            records += r;
        }
        Ok((messages, records))
    }
}
