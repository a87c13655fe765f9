//! The webhook outbox: tenant events waiting to be posted to the tenant's webhook
//! endpoints.
//!
//! An entry is one event for one endpoint. It is written in the same group-commit
//! batch as what it reports: the delivery log record (`Spool::append_log`, for
//! delivered, deferred, bounced, expired and unsubscribed), the new message
//! (`accepted`) or the refusal (`suppressed`), so a crash loses neither the outcome
//! nor its event. Which endpoints take which events is the daemon's to say, through
//! the [`EventRouter`] it installs; without one (or for mail of no tenant) nothing is
//! written, and a tenant without webhooks costs one lookup per record.
//!
//! Entries are sealed with the tenant's data key under
//! `w <key_id> <created_ms> <n>` (erasure shreds them with the tenant's other data;
//! retention and exports read one key range per tenant), and found by the dispatcher
//! through `x <due_ms> <entry>`, a range read up to now.

use std::sync::{Arc, PoisonError};

use serde::{Deserialize, Serialize};
use way2mail_seal::{DataKey, KeyId, Keyring, Lookup};

use crate::commit::Write;
use crate::delivery_log::{DeliveryOutcome, DeliveryRecord};
use crate::keys::{self, Key, OutboxKey};
use crate::{Envelope, Error, MessageId, Spool};

/// The record's name in errors.
const WHAT: &str = "webhook entry";

/// Says which of a tenant's webhook endpoints take an event.
pub trait EventRouter: Send + Sync {
    /// The ids of `tenant`'s endpoints that take `outcome` events; empty for a
    /// tenant without webhooks.
    fn endpoints(&self, tenant: &str, outcome: &DeliveryOutcome) -> Vec<String>;

    /// A message of `tenant` with `recipients` recipients is being committed
    /// (the reputation guard counts accepted mail here). Nothing by default.
    fn accepted(&self, _tenant: &str, _recipients: usize) {}

    /// A delivery log record of `tenant` is being committed. Nothing by default.
    fn recorded(&self, _tenant: &str, _record: &DeliveryRecord) {}
}

/// One event waiting for one endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxEntry {
    /// The endpoint's id (`wh_…`).
    pub webhook: String,
    pub event: DeliveryRecord,
    /// Posts tried so far.
    pub attempts: u32,
    pub next_attempt_ms: u64,
    /// Why the last post failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// An entry the dispatcher may post now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueEvent {
    pub key: OutboxKey,
    /// When it was due (names its index key).
    pub due_ms: u64,
    pub tenant: String,
    pub entry: OutboxEntry,
}

fn seal_entry(data_key: &DataKey, key: &OutboxKey, entry: &OutboxEntry) -> Result<Vec<u8>, Error> {
    crate::record::seal_flat(data_key, &key.key(), entry, WHAT)
}

/// Opens a webhook outbox entry stored under `key`.
pub(crate) fn open(keyring: &Keyring, key: &[u8], value: &[u8]) -> Result<OutboxEntry, Error> {
    crate::record::open_flat(keyring, key, value, WHAT)
}

fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    // A failing system RNG leaves zeros: the creation time still orders entries,
    // and an equal key would only replace an entry of the same millisecond.
    let _ = aws_lc_rs::rand::fill(&mut b);
    u64::from_be_bytes(b)
}

impl Spool {
    /// Installs the router that decides which events go to which endpoints (once
    /// the daemon knows its tenants); replaces an earlier one.
    pub fn set_event_router(&self, router: Arc<dyn EventRouter>) {
        *self
            .inner
            .router
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(router);
    }

    fn router(&self) -> Option<Arc<dyn EventRouter>> {
        self.inner
            .router
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Adds to `write` an outbox entry per endpoint of the key's tenant that takes
    /// each of `events`.
    pub(crate) fn fan_out(
        &self,
        write: &mut Write,
        data_key: &DataKey,
        events: &[DeliveryRecord],
    ) -> Result<(), Error> {
        let Some(tenant) = data_key.owner().tenant() else {
            return Ok(());
        };
        let Some(router) = self.router() else {
            return Ok(());
        };
        for event in events {
            if event.outcome != DeliveryOutcome::Accepted {
                router.recorded(tenant, event);
            }
            for webhook in router.endpoints(tenant, &event.outcome) {
                let key = OutboxKey {
                    key_id: data_key.id(),
                    created_ms: event.time_ms,
                    n: random_u64(),
                };
                let entry = OutboxEntry {
                    webhook,
                    event: event.clone(),
                    attempts: 0,
                    next_attempt_ms: event.time_ms,
                    last_error: None,
                };
                write.insert(&key.key(), seal_entry(data_key, &key, &entry)?);
                write.insert(&key.due_key(entry.next_attempt_ms), Vec::new());
            }
        }
        Ok(())
    }

    /// The `accepted` events of a new message, one per recipient, into `write`.
    pub(crate) fn fan_out_accepted(
        &self,
        write: &mut Write,
        data_key: &DataKey,
        id: &MessageId,
        envelope: &Envelope,
        now_ms: u64,
    ) -> Result<(), Error> {
        let (Some(tenant), Some(router)) = (data_key.owner().tenant(), self.router()) else {
            return Ok(());
        };
        router.accepted(tenant, envelope.recipients.len());
        if router
            .endpoints(tenant, &DeliveryOutcome::Accepted)
            .is_empty()
        {
            return Ok(());
        }
        let events: Vec<DeliveryRecord> = envelope
            .recipients
            .iter()
            .map(|r| DeliveryRecord {
                time_ms: now_ms,
                outcome: DeliveryOutcome::Accepted,
                message_id: id.to_string(),
                recipient: r.address.clone(),
                next_hop: None,
                ip: None,
                tls: None,
                reply: None,
                attempt: 0,
                queue_time_ms: 0,
                tags: envelope.tags.clone(),
                metadata: envelope.metadata.clone(),
                category: None,
                scan: envelope.scan.clone(),
            })
            .collect();
        self.fan_out(write, data_key, &events)
    }

    /// Up to `limit` entries due at `now_ms`, oldest due first. Index entries whose
    /// entry is gone (delivered, erased, purged by retention) are removed on the way.
    pub fn webhooks_due(&self, now_ms: u64, limit: usize) -> Result<Vec<DueEvent>, Error> {
        let inner = &*self.inner;
        let start = vec![keys::WEBHOOK_DUE];
        let mut end = vec![keys::WEBHOOK_DUE];
        end.extend_from_slice(&now_ms.saturating_add(1).to_be_bytes());
        let mut out = Vec::new();
        let mut stale = Write::default();
        for item in inner.db.range(start..end).keys() {
            if out.len() >= limit {
                break;
            }
            let index = item?;
            let Some(Key::WebhookDue { due_ms, entry: key }) = keys::parse(&index) else {
                stale.remove(&index);
                continue;
            };
            let tenant = match inner.keyring.lookup(key.key_id) {
                Lookup::Key(k) => k.owner().tenant().map(str::to_owned),
                Lookup::Erased(_) | Lookup::Unknown => None,
            };
            let value = inner.db.get(key.key())?;
            let (Some(tenant), Some(value)) = (tenant, value) else {
                stale.remove(&index);
                continue;
            };
            match open(&inner.keyring, &key.key(), &value) {
                Ok(entry) => out.push(DueEvent {
                    key,
                    due_ms,
                    tenant,
                    entry,
                }),
                Err(Error::Shredded { .. }) => stale.remove(&index),
                Err(e) => return Err(e),
            }
        }
        if !stale.is_empty() {
            inner.committer.submit(stale).wait_blocking()?;
        }
        Ok(out)
    }

    /// Removes entries that were posted (or given up on), with their index entries.
    pub fn webhooks_done(&self, done: &[(OutboxKey, u64)]) -> Result<(), Error> {
        if done.is_empty() {
            return Ok(());
        }
        let mut write = Write::default();
        for (key, due_ms) in done {
            write.remove(&key.key());
            write.remove(&key.due_key(*due_ms));
        }
        self.inner.committer.submit(write).wait_blocking()
    }

    /// Writes entries back after a failed post, each due at its `next_attempt_ms`
    /// (moving its index entry from `due_ms`).
    pub fn webhooks_retry(&self, retry: &[DueEvent]) -> Result<(), Error> {
        if retry.is_empty() {
            return Ok(());
        }
        let inner = &*self.inner;
        let mut write = Write::default();
        for d in retry {
            let Lookup::Key(data_key) = inner.keyring.lookup(d.key.key_id) else {
                // Erased meanwhile: the entry is unreadable and goes.
                write.remove(&d.key.key());
                write.remove(&d.key.due_key(d.due_ms));
                continue;
            };
            write.insert(&d.key.key(), seal_entry(&data_key, &d.key, &d.entry)?);
            write.remove(&d.key.due_key(d.due_ms));
            write.insert(&d.key.due_key(d.entry.next_attempt_ms), Vec::new());
        }
        inner.committer.submit(write).wait_blocking()
    }

    /// Up to `limit` of the entries `tenant` has waiting, oldest first, after
    /// `after` (an entry this returned before; `None`: from the first). For its
    /// data export, a page at a time.
    pub fn webhook_outbox_page(
        &self,
        tenant: &str,
        after: Option<&OutboxKey>,
        limit: usize,
    ) -> Result<Vec<(OutboxKey, OutboxEntry)>, Error> {
        let inner = &*self.inner;
        let Some(data_key) = inner.keyring.existing(tenant) else {
            return Ok(Vec::new());
        };
        let prefix = keys::webhook_prefix(data_key.id());
        let start = match after {
            Some(k) => {
                let mut s = k.key().to_vec();
                s.push(0);
                s
            }
            None => prefix.to_vec(),
        };
        let mut out = Vec::new();
        for item in inner.db.range(start..) {
            if out.len() >= limit {
                break;
            }
            let (key, value) = item?;
            if !key.starts_with(&prefix) {
                break;
            }
            inner.progress.tick();
            let Some(Key::Webhook(k)) = keys::parse(&key) else {
                continue;
            };
            match open(&inner.keyring, &key, &value) {
                Ok(entry) => out.push((k, entry)),
                Err(Error::Shredded { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Deletes the outbox entries of `key_id` made before `before_ms` (retention);
    /// their index entries go when the dispatcher meets them.
    pub fn purge_webhooks_of(&self, key_id: KeyId, before_ms: u64) -> Result<usize, Error> {
        let prefix = keys::webhook_prefix(key_id);
        let mut end = prefix.to_vec();
        end.extend_from_slice(&before_ms.to_be_bytes());
        self.remove_range(prefix.to_vec(), end)
    }

    /// Deletes every outbox entry of `key_id` (erasure).
    pub(crate) fn delete_webhooks_of(&self, key_id: KeyId) -> Result<usize, Error> {
        let prefix = keys::webhook_prefix(key_id);
        let mut end = prefix.to_vec();
        end.extend_from_slice(&[0xff; keys::WEBHOOK_KEY_LEN - 8]);
        self.remove_range(prefix.to_vec(), end)
    }
}
