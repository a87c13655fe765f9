//! The delivery log in the spool: one sealed record per outcome (delivered,
//! deferred, bounced, expired) under `g<key_id><time_ms><id><seq>`, sealed with the
//! data key of the message's tenant: a tenant's whole log, or the part older than its
//! retention, is one key range, and operators query a time window, then filter by
//! message or recipient. Records are written by `Spool::complete`, atomically with
//! the outcome they describe, and outlive the message.

use std::net::IpAddr;
use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};

use crate::commit::Write;
use crate::keys::{self, Key};
use crate::{record, Error, MessageId, Spool};
use way2mail_seal::{DataKey, KeyId};

/// What one attempt meant for one recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryOutcome {
    Delivered,
    /// Temporary failure; the message stays queued.
    Deferred,
    /// Permanent failure.
    Bounced,
    /// The maximum queue lifetime passed (or retention removed the message).
    Expired,
    /// Removed by an operator without a notice (`way2mail queue delete`).
    Deleted,
    /// The recipient used the message's one-click unsubscribe link (RFC 8058):
    /// not a delivery attempt; the address is on the tenant's suppression list.
    Unsubscribed,
    /// The recipient was refused at submission: it is on the tenant's suppression
    /// list. Nothing was queued for it.
    Suppressed,
    /// The message was queued for the recipient. Only ever a webhook event: the
    /// delivery log does not hold these (the message itself does).
    Accepted,
    /// The next hop took the message, and later a bounce (a DSN to the message's
    /// VERP return path) said it failed for the recipient.
    AsyncBounced,
    /// The recipient's mailbox provider sent a complaint (an ARF report) about
    /// the message.
    Complained,
}

impl DeliveryOutcome {
    /// The event's name (`delivered`), as webhooks and the API's events call it.
    pub fn name(&self) -> &'static str {
        match self {
            DeliveryOutcome::Delivered => "delivered",
            DeliveryOutcome::Deferred => "deferred",
            DeliveryOutcome::Bounced => "bounced",
            DeliveryOutcome::Expired => "expired",
            DeliveryOutcome::Deleted => "deleted",
            DeliveryOutcome::Unsubscribed => "unsubscribed",
            DeliveryOutcome::Suppressed => "suppressed",
            DeliveryOutcome::Accepted => "accepted",
            DeliveryOutcome::AsyncBounced => "async_bounced",
            DeliveryOutcome::Complained => "complained",
        }
    }
}

/// One delivery log record (also the JSON line of the delivery log file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryRecord {
    /// Unix time in milliseconds of the outcome; the record's position in the log.
    pub time_ms: u64,
    pub outcome: DeliveryOutcome,
    /// The message id in its text form.
    pub message_id: String,
    pub recipient: String,
    /// The host that was talked to (or tried).
    pub next_hop: Option<String>,
    pub ip: Option<IpAddr>,
    /// Negotiated TLS version, when the connection was encrypted.
    pub tls: Option<String>,
    /// The peer's reply, or our own reason when there was none.
    pub reply: Option<String>,
    pub attempt: u32,
    /// Milliseconds since the message was accepted.
    pub queue_time_ms: u64,
    /// The message's `tags` and `metadata` (HTTPS API), for its events.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub metadata: std::collections::BTreeMap<String, String>,
    /// What kind of failure the reply was (`invalid_recipient`, `mailbox_full`,
    /// `reputation_block`, ...: the MTA's bounce rules); `None` for a delivery, and in
    /// records from before the rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// What the content scanner made of the message when it was accepted (the
    /// envelope's `scan`); `None` when it was not scanned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scan: Option<way2mail_smtp::ScanResult>,
}

/// Which records [`Spool::delivery_log`] returns; every field narrows, `None`
/// (the default) does not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogFilter {
    /// Only this tenant's records (`Some(None)`: only mail of no tenant).
    pub tenant: Option<Option<String>>,
    pub message: Option<MessageId>,
    /// Compared ignoring ASCII case.
    pub recipient: Option<String>,
    /// Records at or after this time.
    pub since_ms: Option<u64>,
    /// Records before this time.
    pub until_ms: Option<u64>,
}

/// Octets of a delivery log cursor: time, message id and sequence of a record's
/// key ([`Spool::delivery_log_page`]).
pub const LOG_CURSOR_LEN: usize = 28;

/// How much of the log one data key holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogStats {
    pub records: u64,
    /// Time of the oldest record.
    pub oldest_ms: Option<u64>,
}

/// Keys removed per flusher write by a purge, so that a large purge does not hold up
/// the commits of new messages for long.
pub(crate) const PURGE_CHUNK: usize = 10_000;

impl Spool {
    /// Seals `records` about message `id` into `write`, under `key` (the data key of
    /// the message's tenant).
    pub(crate) fn append_log(
        &self,
        write: &mut Write,
        key: &DataKey,
        id: &MessageId,
        records: &[DeliveryRecord],
    ) -> Result<(), Error> {
        let inner = &*self.inner;
        for r in records {
            let seq = inner.log_seq.fetch_add(1, Ordering::Relaxed);
            let sled_key = keys::log(key.id(), r.time_ms, id, seq);
            write.insert(&sled_key, record::seal_log(key, &sled_key, r)?);
        }
        self.fan_out(write, key, records)
    }

    /// The data keys whose records a filter asks for.
    fn log_keys(&self, tenant: &Option<Option<String>>) -> Vec<KeyId> {
        let keyring = &self.inner.keyring;
        match tenant {
            None => keyring.key_ids(),
            Some(None) => vec![keyring.system().id()],
            Some(Some(t)) => keyring.existing(t).map(|k| k.id()).into_iter().collect(),
        }
    }

    /// Delivery log records in time order: per data key a range scan over the time
    /// window, then the message (by key, without opening other records) and
    /// recipient filters. Records of erased tenants (whose keys are gone) are not
    /// returned.
    pub fn delivery_log(&self, filter: LogFilter) -> Result<Vec<DeliveryRecord>, Error> {
        let inner = &*self.inner;
        let mut out = Vec::new();
        for key_id in self.log_keys(&filter.tenant) {
            let start = keys::log_from(key_id, filter.since_ms.unwrap_or(0)).to_vec();
            let end = match filter.until_ms {
                Some(t) => keys::log_from(key_id, t).to_vec(),
                None => keys::log_end(key_id),
            };
            if start >= end {
                continue;
            }
            for item in inner.db.range(start..end) {
                let (key, value) = item?;
                inner.progress.tick();
                let Some(Key::Log { id, seq, .. }) = keys::parse(&key) else {
                    continue;
                };
                if filter.message.is_some_and(|m| m != id) {
                    continue;
                }
                let r = record::open_log(&inner.keyring, &key, &value)?;
                if let Some(want) = &filter.recipient {
                    if !r.recipient.eq_ignore_ascii_case(want) {
                        continue;
                    }
                }
                out.push(((r.time_ms, id, seq), r));
            }
        }
        out.sort_by_key(|(order, _)| *order);
        Ok(out.into_iter().map(|(_, r)| r).collect())
    }

    /// Records `record`, an event about message `id` of `tenant` that is no
    /// delivery attempt (a one-click unsubscribe), in the tenant's log; returns
    /// once it is durable.
    pub fn record_event(
        &self,
        tenant: &str,
        id: &MessageId,
        record: &DeliveryRecord,
    ) -> Result<(), Error> {
        self.submit_event(tenant, id, record)?.wait_blocking()
    }

    /// [`record_event`](Spool::record_event) for a caller that must not block: the
    /// write joins the next group commit; await the handle (or drop it) as needed.
    pub fn submit_event(
        &self,
        tenant: &str,
        id: &MessageId,
        record: &DeliveryRecord,
    ) -> Result<crate::Durable, Error> {
        self.refuse_if_unhealthy()?;
        let key = self.data_key(Some(tenant))?;
        let mut write = Write::default();
        self.append_log(&mut write, &key, id, std::slice::from_ref(record))?;
        Ok(self.inner.committer.submit(write))
    }

    /// One page of a tenant's delivery log, in key order (time, message, sequence):
    /// at most `limit` records after `after` (a cursor this returned before; `None`
    /// for the oldest) and before `until_ms`. Each record comes with its cursor,
    /// the 28 octets of its key after the data key's prefix. A tenant without a
    /// data key has no log.
    pub fn delivery_log_page(
        &self,
        tenant: &str,
        after: Option<&[u8; LOG_CURSOR_LEN]>,
        until_ms: u64,
        limit: usize,
    ) -> Result<Vec<([u8; LOG_CURSOR_LEN], DeliveryRecord)>, Error> {
        let inner = &*self.inner;
        let Some(key_id) = inner.keyring.existing(tenant).map(|k| k.id()) else {
            return Ok(Vec::new());
        };
        let prefix = keys::log_prefix(key_id);
        let mut start = prefix.to_vec();
        match after {
            // The first key after the cursor's: the cursor's key with a 0 appended.
            Some(c) => {
                start.extend_from_slice(c);
                start.push(0);
            }
            None => start.extend_from_slice(&keys::log_from(key_id, 0)[prefix.len()..]),
        }
        let end = keys::log_from(key_id, until_ms).to_vec();
        let mut out = Vec::new();
        if start >= end {
            return Ok(out);
        }
        for item in inner.db.range(start..end) {
            if out.len() >= limit {
                break;
            }
            let (key, value) = item?;
            inner.progress.tick();
            let Some(Key::Log { .. }) = keys::parse(&key) else {
                continue;
            };
            let Ok(cursor) = <[u8; LOG_CURSOR_LEN]>::try_from(&key[prefix.len()..]) else {
                continue;
            };
            out.push((cursor, record::open_log(&inner.keyring, &key, &value)?));
        }
        Ok(out)
    }

    /// How many log records `key_id` holds and the time of the oldest, counted from
    /// the keys alone.
    pub fn log_stats(&self, key_id: KeyId) -> Result<LogStats, Error> {
        let mut stats = LogStats::default();
        for item in self
            .inner
            .db
            .range(keys::log_prefix(key_id).to_vec()..keys::log_end(key_id))
        {
            let (key, _) = item?;
            if let Some(Key::Log { time_ms, .. }) = keys::parse(&key) {
                stats.records += 1;
                stats.oldest_ms = Some(stats.oldest_ms.map_or(time_ms, |o| o.min(time_ms)));
            }
        }
        Ok(stats)
    }

    /// Deletes every delivery log record older than `time_ms`, of every data key,
    /// through the flusher, and returns how many were deleted. Blocks the calling
    /// thread like `take_due`.
    pub fn purge_delivery_log_before(&self, time_ms: u64) -> Result<usize, Error> {
        let mut purged = 0;
        for key_id in self.log_key_ids()? {
            purged += self.purge_log_of(key_id, time_ms)?;
        }
        Ok(purged)
    }

    /// Deletes the delivery log records of `key_id` older than `time_ms` (one key
    /// range), and returns how many were deleted.
    pub fn purge_log_of(&self, key_id: KeyId, time_ms: u64) -> Result<usize, Error> {
        let start = keys::log_prefix(key_id).to_vec();
        let end = keys::log_from(key_id, time_ms).to_vec();
        self.remove_range(start, end)
    }

    /// Removes every key in `[start, end)` through the flusher, [`PURGE_CHUNK`] keys
    /// per write, and returns how many were removed.
    pub(crate) fn remove_range(&self, start: Vec<u8>, end: Vec<u8>) -> Result<usize, Error> {
        let inner = &*self.inner;
        let mut purged = 0;
        loop {
            let mut write = Write::default();
            let mut n = 0;
            for item in inner.db.range(start.clone()..end.clone()).take(PURGE_CHUNK) {
                let (key, _) = item?;
                write.remove(&key);
                n += 1;
            }
            if n == 0 {
                return Ok(purged);
            }
            inner.committer.submit(write).wait_blocking()?;
            purged += n;
        }
    }

    /// Every data key id that has log records here, known to the keyring or not.
    pub fn log_key_ids(&self) -> Result<Vec<KeyId>, Error> {
        let mut ids = Vec::new();
        let mut from = vec![keys::LOG];
        while let Some(item) = self.inner.db.range(from..vec![keys::LOG + 1]).next() {
            let (key, _) = item?;
            match keys::parse(&key) {
                Some(Key::Log { key_id, .. }) => {
                    ids.push(key_id);
                    from = keys::log_end(key_id);
                    if from == [keys::LOG + 1] {
                        break;
                    }
                }
                // Not a key of this version (the migration handles legacy ones):
                // step over it.
                _ => {
                    let mut next = key.to_vec();
                    next.push(0);
                    from = next;
                }
            }
        }
        Ok(ids)
    }
}
