//! The delivery log in the spool: one sealed record per outcome (delivered,
//! deferred, bounced, expired) under `g<time_ms><id><seq>`, so that retention purges
//! a time range by key range and operators query a time window, then filter by
//! message or recipient. Records are written by `Spool::complete`, atomically with
//! the outcome they describe, and outlive the message.

use std::net::IpAddr;
use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};

use crate::commit::Write;
use crate::keys::{self, Key};
use crate::{record, Error, MessageId, Spool};

/// What one attempt meant for one recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryOutcome {
    Delivered,
    /// Temporary failure; the message stays queued.
    Deferred,
    /// Permanent failure.
    Bounced,
    /// The maximum queue lifetime passed.
    Expired,
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
}

/// Which records [`Spool::delivery_log`] returns; every field narrows, `None`
/// (the default) does not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogFilter {
    pub message: Option<MessageId>,
    /// Compared ignoring ASCII case.
    pub recipient: Option<String>,
    /// Records at or after this time.
    pub since_ms: Option<u64>,
    /// Records before this time.
    pub until_ms: Option<u64>,
}

/// Keys removed per flusher write by a purge, so that a large purge does not hold up
/// the commits of new messages for long.
const PURGE_CHUNK: usize = 10_000;

impl Spool {
    /// Seals `records` about message `id` into `write`.
    pub(crate) fn append_log(
        &self,
        write: &mut Write,
        id: &MessageId,
        records: &[DeliveryRecord],
    ) -> Result<(), Error> {
        let inner = &*self.inner;
        for r in records {
            let seq = inner.log_seq.fetch_add(1, Ordering::Relaxed);
            let key = keys::log(r.time_ms, id, seq);
            write.insert(&key, record::seal_log(&inner.key, &key, r)?);
        }
        Ok(())
    }

    /// Delivery log records in time order: a range scan over the time window, then
    /// the message (by key, without opening other records) and recipient filters.
    pub fn delivery_log(&self, filter: LogFilter) -> Result<Vec<DeliveryRecord>, Error> {
        let inner = &*self.inner;
        let start = keys::log_from(filter.since_ms.unwrap_or(0)).to_vec();
        let end = match filter.until_ms {
            Some(t) => keys::log_from(t).to_vec(),
            None => vec![keys::LOG + 1],
        };
        let mut out = Vec::new();
        if start >= end {
            return Ok(out);
        }
        for item in inner.db.range(start..end) {
            let (key, value) = item?;
            let Some(Key::Log { id, .. }) = keys::parse(&key) else {
                continue;
            };
            if filter.message.is_some_and(|m| m != id) {
                continue;
            }
            let r = record::open_log(&inner.key, &key, &value)?;
            if let Some(want) = &filter.recipient {
                if !r.recipient.eq_ignore_ascii_case(want) {
                    continue;
                }
            }
            out.push(r);
        }
        Ok(out)
    }

    /// Deletes every delivery log record older than `time_ms`, through the flusher,
    /// and returns how many were deleted. Blocks the calling thread like `take_due`.
    pub fn purge_delivery_log_before(&self, time_ms: u64) -> Result<usize, Error> {
        let inner = &*self.inner;
        let start = vec![keys::LOG];
        let end = keys::log_from(time_ms).to_vec();
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
}
