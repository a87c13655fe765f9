//! One tenant's data in the spool: what there is (inventory, from record headers
//! and keys alone), handing it out (export), and erasing it. A tenant's queued
//! messages are the envelopes and bodies sealed with its data key; its delivery log
//! is the key range `g<key_id>`.
//!
//! Erasure shreds the key first, so that from that moment nothing of the tenant can
//! be read anywhere (here, in stale pages of the sled files, in backups), and then
//! deletes the records, which are only ciphertext by then. A record a racing session
//! writes under the old key after the scan is deleted by the next sweep
//! (`purge_erased`) or recovery.

use std::collections::{HashMap, HashSet};
use std::sync::PoisonError;

use crate::commit::Write;
use crate::keys::{self, Key};
use way2mail_seal::record as seal;
use way2mail_seal::{Erasure, KeyId};

use crate::{Envelope, Error, LogStats, MessageId, Spool};

/// What the spool holds of one tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenantInventory {
    /// The tenant's data key here; `None` when it never stored anything.
    pub key_id: Option<KeyId>,
    pub messages: u64,
    /// Sealed size of the messages' bodies.
    pub bytes: u64,
    /// When the oldest queued message was accepted.
    pub oldest_message_ms: Option<u64>,
    pub log: LogStats,
}

/// What an erasure removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantErasure {
    pub erasure: Erasure,
    pub messages: u64,
    pub log_records: u64,
}

impl Spool {
    /// Ids of the queued messages sealed with `key_id`, from the envelope headers.
    pub(crate) fn messages_of(&self, key_id: KeyId) -> Result<Vec<MessageId>, Error> {
        let mut out = Vec::new();
        for item in self.inner.db.scan_prefix([keys::ENVELOPE]) {
            let (key, value) = item?;
            if let Some(Key::Envelope(id)) = keys::parse(&key) {
                if seal::key_id_of(&value) == Some(key_id) {
                    out.push(id);
                }
            }
        }
        Ok(out)
    }

    /// Schedule entries, leases and holds (their whole keys) by message.
    pub(crate) fn schedule_keys(&self) -> Result<HashMap<MessageId, Vec<Vec<u8>>>, Error> {
        Ok(self
            .schedule()?
            .into_iter()
            .map(|(id, s)| (id, s.keys))
            .collect())
    }

    /// Counts what the spool holds of `tenant` without opening a record.
    pub fn tenant_inventory(&self, tenant: &str) -> Result<TenantInventory, Error> {
        let Some(key) = self.inner.keyring.existing(tenant) else {
            return Ok(TenantInventory::default());
        };
        let mut inv = TenantInventory {
            key_id: Some(key.id()),
            log: self.log_stats(key.id())?,
            ..TenantInventory::default()
        };
        for id in self.messages_of(key.id())? {
            inv.messages += 1;
            let t = id.timestamp_ms();
            inv.oldest_message_ms = Some(inv.oldest_message_ms.map_or(t, |o| o.min(t)));
            for chunk in self.inner.db.scan_prefix(keys::body(&id)) {
                inv.bytes += chunk?.1.len() as u64;
            }
        }
        Ok(inv)
    }

    /// Calls `each` with every queued message of `tenant` (id, envelope, body), in
    /// id order; stops at the first error. Messages that leave the spool meanwhile
    /// are skipped.
    pub fn for_each_tenant_message<E: From<Error>>(
        &self,
        tenant: &str,
        mut each: impl FnMut(MessageId, Envelope, Vec<u8>) -> Result<(), E>,
    ) -> Result<u64, E> {
        let Some(key) = self.inner.keyring.existing(tenant) else {
            return Ok(0);
        };
        let mut n = 0;
        for id in self.messages_of(key.id())? {
            if let Some((envelope, body)) = self.read(&id)? {
                each(id, envelope, body)?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Erases `tenant` from the spool: shreds its data key, then deletes its queued
    /// messages (envelope, body, schedule entry or lease), its delivery log, its
    /// API idempotency records, its webhook outbox and its DMARC reports.
    /// Blocks the calling thread for the writes. Idempotent, and one at a time: the
    /// counts are everything this process removed for the tenant, so when the snapshot
    /// follower completes an erasure just before the admin socket asks for it, the
    /// admin answer (and with it the erasure receipt) still counts what was removed.
    pub fn erase_tenant(&self, tenant: &str) -> Result<TenantErasure, Error> {
        let inner = &*self.inner;
        let mut erased = inner.erased.lock().unwrap_or_else(PoisonError::into_inner);
        let key_id = inner.keyring.existing(tenant).map(|k| k.id());
        let erasure = inner.keyring.shred(tenant)?;
        let removed = match key_id.or(erasure.key_id) {
            Some(key_id) => self.delete_key_data(key_id)?,
            None => (0, 0),
        };
        let total = erased.entry(tenant.to_owned()).or_default();
        total.0 += removed.0;
        total.1 += removed.1;
        Ok(TenantErasure {
            erasure,
            messages: total.0,
            log_records: total.1,
        })
    }

    /// Deletes every record sealed with `key_id` (and the schedule entries and
    /// leases of its messages): messages and log records removed.
    pub(crate) fn delete_key_data(&self, key_id: KeyId) -> Result<(u64, u64), Error> {
        let inner = &*self.inner;
        let doomed: HashSet<MessageId> = self.messages_of(key_id)?.into_iter().collect();
        let mut write = Write::default();
        for id in &doomed {
            write.remove(&keys::envelope(id));
            write.count_messages(-1);
            inner.leases.forget(id);
        }
        // Every body record sealed with the key (every chunk of every body of the
        // doomed messages, and bodies whose envelope is already gone).
        for item in inner.db.scan_prefix([keys::BODY]) {
            let (key, value) = item?;
            if matches!(keys::parse(&key), Some(Key::Body(..)))
                && seal::key_id_of(&value) == Some(key_id)
            {
                write.remove(&key);
            }
        }
        let mut schedule = self.schedule_keys()?;
        for id in &doomed {
            for key in schedule.remove(id).unwrap_or_default() {
                write.remove(&key);
            }
        }
        if !write.is_empty() {
            inner.committer.submit(write).wait_blocking()?;
        }
        let log_records =
            self.remove_range(keys::log_prefix(key_id).to_vec(), keys::log_end(key_id))? as u64;
        // The tenant's idempotency records, and their expiry entries (a day's worth
        // of them at most, read by key only).
        let prefix = keys::idempotency_prefix(key_id);
        let mut end = prefix.to_vec();
        end.push(0xff);
        end.extend_from_slice(&[0xff; 32]);
        self.remove_range(prefix.to_vec(), end)?;
        let mut expiries = Write::default();
        for item in inner.db.scan_prefix([keys::IDEMPOTENCY_EXPIRY]).keys() {
            let key = item?;
            if matches!(keys::parse(&key), Some(Key::IdempotencyExpiry { key_id: k, .. }) if k == key_id)
            {
                expiries.remove(&key);
            }
        }
        if !expiries.is_empty() {
            inner.committer.submit(expiries).wait_blocking()?;
        }
        // Its webhook outbox; the index entries go when the dispatcher meets them.
        self.delete_webhooks_of(key_id)?;
        // The DMARC reports received for its domains.
        self.delete_dmarc_of(key_id)?;
        Ok((doomed.len() as u64, log_records))
    }
}
