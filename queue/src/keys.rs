//! Every sled key of the spool is built and parsed here, nowhere else.
//!
//! One tree, one-byte prefixes, fixed-width big-endian fields, so that sled's byte
//! order is the logical order (time first for the schedule):
//!
//! ```text
//!   e <id:16>                  sealed envelope
//!   b <id:16>                  sealed body, or its first chunk
//!   b <id:16> <n:4 BE>         sealed chunk n (n ≥ 1) of a body longer than
//!                              BODY_CHUNK bytes: every chunk holds BODY_CHUNK
//!                              bytes but the last, so the envelope's body length
//!                              names every key of the body
//!   d <due_ms:8 BE> <id:16>    schedule entry (empty value), ordered by (due, id)
//!   h <id:16>                  held by an operator (value: held-at ms, 8 BE): off
//!                              the schedule, not due, not expired, until released
//!   g <key_id:8 BE> <time_ms:8 BE> <id:16> <seq:4 BE>
//!                              sealed delivery log record: per data key (tenant),
//!                              then time order, so that a tenant's log, or the part
//!                              of it older than its retention, is one key range
//!   l <expiry_ms:8 BE> <id:16> lease (empty value): the message is being delivered
//!   i <key_id:8 BE> <digest:32> sealed idempotency record: the first answer to an
//!                              API request with an `Idempotency-Key` (digest: its
//!                              SHA-256), per data key (tenant)
//!   j <expiry_ms:8 BE> <key_id:8 BE> <digest:32>
//!                              when that record expires (empty value): the purge
//!                              reads this range up to now, nothing else
//!   w <key_id:8 BE> <created_ms:8 BE> <n:8 BE>
//!                              sealed webhook outbox entry: one event for one
//!                              endpoint, per data key (tenant) in creation order
//!                              (n: random, tells entries of one millisecond apart)
//!   x <due_ms:8 BE> <key_id:8 BE> <created_ms:8 BE> <n:8 BE>
//!                              when that entry is due to be posted (empty value): the
//!                              dispatcher reads this range up to now, nothing else
//!   r <key_id:8 BE> <end_ms:8 BE> <digest:16>
//!                              sealed DMARC aggregate report received for a domain
//!                              of the data key's tenant, by the end of the period it
//!                              covers (digest: of its reporter and report id, so a
//!                              report sent again lands on the same key)
//!   q <original key>           quarantined record, value kept byte for byte
//!   m <name>                   spool metadata (`m format` = `2`: no record left in
//!                              the format before data keys; `m commit_seq` = u64
//!                              BE: batches the flusher committed, see anchor.rs)
//! ```

use way2mail_seal::KeyId;

use crate::MessageId;

pub const ENVELOPE: u8 = b'e';
pub const BODY: u8 = b'b';
pub const DUE: u8 = b'd';
pub const QUARANTINE: u8 = b'q';
pub const LEASE: u8 = b'l';
pub const LOG: u8 = b'g';
pub const META: u8 = b'm';
pub const HELD: u8 = b'h';
pub const IDEMPOTENCY: u8 = b'i';
pub const IDEMPOTENCY_EXPIRY: u8 = b'j';
pub const WEBHOOK: u8 = b'w';
pub const WEBHOOK_DUE: u8 = b'x';
pub const DMARC: u8 = b'r';
/// The first byte of the associated data of a part of a message being received:
/// parts live in files (spill.rs), not in the tree, but are sealed like records.
pub const SPILL: u8 = b's';
/// The format marker (see `migrate.rs`).
pub const FORMAT: &[u8] = b"mformat";
/// The count of committed batches (see `anchor.rs`).
pub const COMMIT_SEQ: &[u8] = b"mcommit_seq";

/// Length of an envelope or body key.
pub const RECORD_KEY_LEN: usize = 17;
/// Length of the key of a body's chunk after its first.
pub const BODY_CHUNK_KEY_LEN: usize = 21;
/// Plaintext bytes per body record. sled writes a tree node larger than a quarter
/// of its 512 KiB segments as a file of its own, and its cache charges such a node
/// at the size of its pointer, so it is never evicted: large values would make the
/// cache, and the process, as large as the queue. A leaf holds at most 17 entries
/// before it splits; 17 sealed chunks of 7 KiB stay under that threshold, so every
/// node is charged its real size and the cache bound holds. A body written before
/// chunking (one record of any length) is still read: see `Spool::body_chunks`.
pub const BODY_CHUNK: usize = 7 * 1024;
/// Length of a schedule key.
pub const DUE_KEY_LEN: usize = 25;
/// Length of a lease key (same layout as a schedule key).
pub const LEASE_KEY_LEN: usize = 25;
/// Length of an idempotency record's key.
pub const IDEMPOTENCY_KEY_LEN: usize = 41;
/// Length of an idempotency expiry key.
pub const IDEMPOTENCY_EXPIRY_KEY_LEN: usize = 49;
/// Length of a delivery log key.
pub const LOG_KEY_LEN: usize = 37;
/// Length of a webhook outbox entry's key.
pub const WEBHOOK_KEY_LEN: usize = 25;
/// Length of a webhook outbox entry's due key.
pub const WEBHOOK_DUE_KEY_LEN: usize = 33;
/// Length of a DMARC aggregate report's key.
pub const DMARC_KEY_LEN: usize = 33;
/// Length of a delivery log key of the version before data keys (no key id);
/// only the migration meets them.
pub const LEGACY_LOG_KEY_LEN: usize = 29;

/// A parsed spool key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    Envelope(MessageId),
    /// A body's chunk: 0 for the first (or only) record.
    Body(MessageId, u32),
    Due {
        due_ms: u64,
        id: MessageId,
    },
    Lease {
        expiry_ms: u64,
        id: MessageId,
    },
    /// Held by an operator: neither scheduled nor leased.
    Held(MessageId),
    Log {
        key_id: KeyId,
        time_ms: u64,
        id: MessageId,
        seq: u32,
    },
    /// A log record written before data keys existed (migrated at start-up).
    LegacyLog {
        time_ms: u64,
        id: MessageId,
        seq: u32,
    },
    /// An API request's first answer, by data key and the digest of its
    /// `Idempotency-Key`.
    Idempotency {
        key_id: KeyId,
        digest: [u8; 32],
    },
    /// When an idempotency record expires.
    IdempotencyExpiry {
        expiry_ms: u64,
        key_id: KeyId,
        digest: [u8; 32],
    },
    /// A webhook outbox entry.
    Webhook(OutboxKey),
    /// When a webhook outbox entry is due.
    WebhookDue {
        due_ms: u64,
        entry: OutboxKey,
    },
    /// A DMARC aggregate report, by data key and the end of its period.
    Dmarc {
        key_id: KeyId,
        end_ms: u64,
        digest: [u8; 16],
    },
    /// A quarantined record; holds the key it had before.
    Quarantine(Vec<u8>),
    /// Spool metadata; holds its name.
    Meta(Vec<u8>),
}

/// Names one webhook outbox entry: its tenant's data key, when it was made, and a
/// random number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OutboxKey {
    pub key_id: KeyId,
    pub created_ms: u64,
    pub n: u64,
}

impl OutboxKey {
    pub fn key(&self) -> [u8; WEBHOOK_KEY_LEN] {
        let mut k = [0u8; WEBHOOK_KEY_LEN];
        k[0] = WEBHOOK;
        k[1..9].copy_from_slice(&self.key_id.0.to_be_bytes());
        k[9..17].copy_from_slice(&self.created_ms.to_be_bytes());
        k[17..].copy_from_slice(&self.n.to_be_bytes());
        k
    }

    pub fn due_key(&self, due_ms: u64) -> [u8; WEBHOOK_DUE_KEY_LEN] {
        let mut k = [0u8; WEBHOOK_DUE_KEY_LEN];
        k[0] = WEBHOOK_DUE;
        k[1..9].copy_from_slice(&due_ms.to_be_bytes());
        k[9..].copy_from_slice(&self.key()[1..]);
        k
    }

    fn parse(rest: &[u8]) -> Option<OutboxKey> {
        let field = |at: usize| -> Option<u64> {
            Some(u64::from_be_bytes(rest.get(at..at + 8)?.try_into().ok()?))
        };
        (rest.len() == WEBHOOK_KEY_LEN - 1).then_some(())?;
        Some(OutboxKey {
            key_id: KeyId(field(0)?),
            created_ms: field(8)?,
            n: field(16)?,
        })
    }

    /// The entry's name in exports and webhook posts: 32 hex digits.
    pub fn name(&self) -> String {
        format!("{:016x}{:016x}", self.created_ms, self.n)
    }
}

/// The prefix of every webhook outbox entry of one data key.
pub fn webhook_prefix(key_id: KeyId) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = WEBHOOK;
    k[1..].copy_from_slice(&key_id.0.to_be_bytes());
    k
}

fn record(prefix: u8, id: &MessageId) -> [u8; RECORD_KEY_LEN] {
    let mut k = [0u8; RECORD_KEY_LEN];
    k[0] = prefix;
    k[1..].copy_from_slice(id.as_bytes());
    k
}

pub fn envelope(id: &MessageId) -> [u8; RECORD_KEY_LEN] {
    record(ENVELOPE, id)
}

/// The key of a body's first (or only) record; also the prefix of all its chunks.
pub fn body(id: &MessageId) -> [u8; RECORD_KEY_LEN] {
    record(BODY, id)
}

/// What part `index` of a message being received is sealed to (spill.rs).
pub fn spill(id: &MessageId, index: u32) -> [u8; BODY_CHUNK_KEY_LEN] {
    let mut k = [0u8; BODY_CHUNK_KEY_LEN];
    k[0] = SPILL;
    k[1..17].copy_from_slice(id.as_bytes());
    k[17..].copy_from_slice(&index.to_be_bytes());
    k
}

/// The key of chunk `index` of a body (`body(id)` for 0).
pub fn body_chunk(id: &MessageId, index: u32) -> Vec<u8> {
    let mut k = body(id).to_vec();
    if index > 0 {
        k.extend_from_slice(&index.to_be_bytes());
    }
    k
}

/// How many records a body of `body_len` bytes is written as (at least one, empty
/// bodies included).
pub fn body_chunk_count(body_len: u64) -> u32 {
    let n = body_len.div_ceil(BODY_CHUNK as u64).max(1);
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Every key a body of `body_len` bytes is written under.
pub fn body_keys(id: &MessageId, body_len: u64) -> impl Iterator<Item = Vec<u8>> + '_ {
    (0..body_chunk_count(body_len)).map(move |i| body_chunk(id, i))
}

pub fn held(id: &MessageId) -> [u8; RECORD_KEY_LEN] {
    record(HELD, id)
}

fn timed(prefix: u8, ms: u64, id: &MessageId) -> [u8; DUE_KEY_LEN] {
    let mut k = [0u8; DUE_KEY_LEN];
    k[0] = prefix;
    k[1..9].copy_from_slice(&ms.to_be_bytes());
    k[9..].copy_from_slice(id.as_bytes());
    k
}

pub fn due(due_ms: u64, id: &MessageId) -> [u8; DUE_KEY_LEN] {
    timed(DUE, due_ms, id)
}

pub fn lease(expiry_ms: u64, id: &MessageId) -> [u8; LEASE_KEY_LEN] {
    timed(LEASE, expiry_ms, id)
}

pub fn log(key_id: KeyId, time_ms: u64, id: &MessageId, seq: u32) -> [u8; LOG_KEY_LEN] {
    let mut k = [0u8; LOG_KEY_LEN];
    k[..9].copy_from_slice(&log_prefix(key_id));
    k[9..17].copy_from_slice(&time_ms.to_be_bytes());
    k[17..33].copy_from_slice(id.as_bytes());
    k[33..].copy_from_slice(&seq.to_be_bytes());
    k
}

pub fn idempotency(key_id: KeyId, digest: &[u8; 32]) -> [u8; IDEMPOTENCY_KEY_LEN] {
    let mut k = [0u8; IDEMPOTENCY_KEY_LEN];
    k[0] = IDEMPOTENCY;
    k[1..9].copy_from_slice(&key_id.0.to_be_bytes());
    k[9..].copy_from_slice(digest);
    k
}

/// The prefix of every idempotency record of one data key.
pub fn idempotency_prefix(key_id: KeyId) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = IDEMPOTENCY;
    k[1..].copy_from_slice(&key_id.0.to_be_bytes());
    k
}

pub fn idempotency_expiry(
    expiry_ms: u64,
    key_id: KeyId,
    digest: &[u8; 32],
) -> [u8; IDEMPOTENCY_EXPIRY_KEY_LEN] {
    let mut k = [0u8; IDEMPOTENCY_EXPIRY_KEY_LEN];
    k[0] = IDEMPOTENCY_EXPIRY;
    k[1..9].copy_from_slice(&expiry_ms.to_be_bytes());
    k[9..17].copy_from_slice(&key_id.0.to_be_bytes());
    k[17..].copy_from_slice(digest);
    k
}

/// The prefix of every delivery log key of one data key.
pub fn log_prefix(key_id: KeyId) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = LOG;
    k[1..].copy_from_slice(&key_id.0.to_be_bytes());
    k
}

/// The key of a DMARC aggregate report of `key_id` whose period ends at `end_ms`.
pub fn dmarc(key_id: KeyId, end_ms: u64, digest: &[u8; 16]) -> [u8; DMARC_KEY_LEN] {
    let mut k = [0u8; DMARC_KEY_LEN];
    k[0] = DMARC;
    k[1..9].copy_from_slice(&key_id.0.to_be_bytes());
    k[9..17].copy_from_slice(&end_ms.to_be_bytes());
    k[17..].copy_from_slice(digest);
    k
}

/// The first DMARC report key of `key_id` ending at `end_ms` or later.
pub fn dmarc_from(key_id: KeyId, end_ms: u64) -> [u8; DMARC_KEY_LEN] {
    dmarc(key_id, end_ms, &[0; 16])
}

/// The first key after every DMARC report key of `key_id`.
pub fn dmarc_end(key_id: KeyId) -> Vec<u8> {
    match key_id.0.checked_add(1) {
        Some(next) => dmarc_from(KeyId(next), 0)[..9].to_vec(),
        None => vec![DMARC + 1],
    }
}

/// A delivery log key of the version before data keys, for the migration's tests.
pub fn legacy_log(time_ms: u64, id: &MessageId, seq: u32) -> [u8; LEGACY_LOG_KEY_LEN] {
    let mut k = [0u8; LEGACY_LOG_KEY_LEN];
    k[..DUE_KEY_LEN].copy_from_slice(&timed(LOG, time_ms, id));
    k[DUE_KEY_LEN..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// The smallest and largest id, for range bounds over time-keyed prefixes.
const MIN_ID: MessageId = MessageId::from_bytes([0; 16]);
const MAX_ID: MessageId = MessageId::from_bytes([0xff; 16]);

/// First schedule key due at `due_ms` or later.
pub fn due_from(due_ms: u64) -> [u8; DUE_KEY_LEN] {
    due(due_ms, &MIN_ID)
}

/// Last schedule key due at `due_ms` or earlier.
pub fn due_through(due_ms: u64) -> [u8; DUE_KEY_LEN] {
    due(due_ms, &MAX_ID)
}

/// First delivery log key of `key_id` at `time_ms` or later; every key of that
/// data key with an earlier time sorts before it.
pub fn log_from(key_id: KeyId, time_ms: u64) -> [u8; LOG_KEY_LEN] {
    log(key_id, time_ms, &MIN_ID, 0)
}

/// The first key after every delivery log key of `key_id`.
pub fn log_end(key_id: KeyId) -> Vec<u8> {
    match key_id.0.checked_add(1) {
        Some(next) => log_prefix(KeyId(next)).to_vec(),
        None => vec![LOG + 1],
    }
}

fn split_timed(rest: &[u8]) -> Option<(u64, MessageId, &[u8])> {
    if rest.len() < DUE_KEY_LEN - 1 {
        return None;
    }
    let (t, rest) = rest.split_at(8);
    let (id, tail) = rest.split_at(16);
    Some((u64::from_be_bytes(t.try_into().ok()?), id_at(id)?, tail))
}

pub fn quarantine(original: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(original.len() + 1);
    k.push(QUARANTINE);
    k.extend_from_slice(original);
    k
}

fn id_at(bytes: &[u8]) -> Option<MessageId> {
    let b: [u8; 16] = bytes.try_into().ok()?;
    Some(MessageId::from_bytes(b))
}

/// Parses a key; `None` for anything this version does not write.
pub fn parse(key: &[u8]) -> Option<Key> {
    let (&prefix, rest) = key.split_first()?;
    match prefix {
        ENVELOPE => id_at(rest).map(Key::Envelope),
        BODY if rest.len() == BODY_CHUNK_KEY_LEN - 1 => {
            let (id, index) = rest.split_at(16);
            let index = u32::from_be_bytes(index.try_into().ok()?);
            // Chunk 0 is always written under the shorter key.
            (index > 0).then_some(Key::Body(id_at(id)?, index))
        }
        BODY => id_at(rest).map(|id| Key::Body(id, 0)),
        HELD => id_at(rest).map(Key::Held),
        DUE if rest.len() == DUE_KEY_LEN - 1 => {
            let (due_ms, id, _) = split_timed(rest)?;
            Some(Key::Due { due_ms, id })
        }
        LEASE if rest.len() == LEASE_KEY_LEN - 1 => {
            let (expiry_ms, id, _) = split_timed(rest)?;
            Some(Key::Lease { expiry_ms, id })
        }
        LOG if rest.len() == LOG_KEY_LEN - 1 => {
            let (kid, rest) = rest.split_at(8);
            let key_id = KeyId(u64::from_be_bytes(kid.try_into().ok()?));
            let (time_ms, id, seq) = split_timed(rest)?;
            let seq = u32::from_be_bytes(seq.try_into().ok()?);
            Some(Key::Log {
                key_id,
                time_ms,
                id,
                seq,
            })
        }
        LOG if rest.len() == LEGACY_LOG_KEY_LEN - 1 => {
            let (time_ms, id, seq) = split_timed(rest)?;
            let seq = u32::from_be_bytes(seq.try_into().ok()?);
            Some(Key::LegacyLog { time_ms, id, seq })
        }
        IDEMPOTENCY if rest.len() == IDEMPOTENCY_KEY_LEN - 1 => {
            let (kid, digest) = rest.split_at(8);
            Some(Key::Idempotency {
                key_id: KeyId(u64::from_be_bytes(kid.try_into().ok()?)),
                digest: digest.try_into().ok()?,
            })
        }
        IDEMPOTENCY_EXPIRY if rest.len() == IDEMPOTENCY_EXPIRY_KEY_LEN - 1 => {
            let (t, rest) = rest.split_at(8);
            let (kid, digest) = rest.split_at(8);
            Some(Key::IdempotencyExpiry {
                expiry_ms: u64::from_be_bytes(t.try_into().ok()?),
                key_id: KeyId(u64::from_be_bytes(kid.try_into().ok()?)),
                digest: digest.try_into().ok()?,
            })
        }
        WEBHOOK => OutboxKey::parse(rest).map(Key::Webhook),
        WEBHOOK_DUE if rest.len() == WEBHOOK_DUE_KEY_LEN - 1 => {
            let (t, rest) = rest.split_at(8);
            Some(Key::WebhookDue {
                due_ms: u64::from_be_bytes(t.try_into().ok()?),
                entry: OutboxKey::parse(rest)?,
            })
        }
        DMARC if rest.len() == DMARC_KEY_LEN - 1 => {
            let (kid, rest) = rest.split_at(8);
            let (t, digest) = rest.split_at(8);
            Some(Key::Dmarc {
                key_id: KeyId(u64::from_be_bytes(kid.try_into().ok()?)),
                end_ms: u64::from_be_bytes(t.try_into().ok()?),
                digest: digest.try_into().ok()?,
            })
        }
        QUARANTINE => Some(Key::Quarantine(rest.to_vec())),
        META => Some(Key::Meta(rest.to_vec())),
        _ => None,
    }
}

/// A human-readable name for a key, for errors and logs (never holds content).
pub fn describe(key: &[u8]) -> String {
    match parse(key) {
        Some(Key::Envelope(id)) => format!("envelope {id}"),
        Some(Key::Body(id, 0)) => format!("body {id}"),
        Some(Key::Body(id, n)) => format!("body {id} chunk {n}"),
        Some(Key::Due { due_ms, id }) => format!("schedule {id} due {due_ms}"),
        Some(Key::Lease { expiry_ms, id }) => format!("lease {id} until {expiry_ms}"),
        Some(Key::Held(id)) => format!("hold {id}"),
        Some(Key::Log {
            key_id,
            time_ms,
            id,
            seq,
        }) => format!("delivery log {id} at {time_ms} #{seq} (key {key_id})"),
        Some(Key::LegacyLog { time_ms, id, seq }) => {
            format!("delivery log {id} at {time_ms} #{seq} (before data keys)")
        }
        Some(Key::Idempotency { key_id, .. }) => format!("idempotency record (key {key_id})"),
        Some(Key::IdempotencyExpiry {
            expiry_ms, key_id, ..
        }) => format!("idempotency expiry at {expiry_ms} (key {key_id})"),
        Some(Key::Webhook(e)) => format!("webhook outbox entry {} (key {})", e.name(), e.key_id),
        Some(Key::WebhookDue { due_ms, entry }) => {
            format!("webhook outbox entry {} due {due_ms}", entry.name())
        }
        Some(Key::Dmarc { key_id, end_ms, .. }) => {
            format!("DMARC report ending {end_ms} (key {key_id})")
        }
        Some(Key::Quarantine(orig)) => format!("quarantined {}", describe(&orig)),
        Some(Key::Meta(name)) => format!("spool metadata {}", String::from_utf8_lossy(&name)),
        None => format!("unknown key of {} bytes", key.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id() -> impl Strategy<Value = MessageId> {
        any::<[u8; 16]>().prop_map(MessageId::from_bytes)
    }

    fn kid() -> impl Strategy<Value = KeyId> {
        any::<u64>().prop_map(KeyId)
    }

    proptest! {
        #[test]
        fn record_keys_round_trip(id in id()) {
            prop_assert_eq!(parse(&envelope(&id)), Some(Key::Envelope(id)));
            prop_assert_eq!(parse(&body(&id)), Some(Key::Body(id, 0)));
            let q = quarantine(&body(&id));
            prop_assert_eq!(parse(&q), Some(Key::Quarantine(body(&id).to_vec())));
        }

        #[test]
        fn webhook_keys_round_trip(
            key_id in kid(), created_ms in any::<u64>(), n in any::<u64>(), due_ms in any::<u64>()
        ) {
            let e = OutboxKey { key_id, created_ms, n };
            prop_assert_eq!(parse(&e.key()), Some(Key::Webhook(e)));
            prop_assert_eq!(parse(&e.due_key(due_ms)), Some(Key::WebhookDue { due_ms, entry: e }));
            prop_assert!(e.key().starts_with(&webhook_prefix(key_id)));
        }

        #[test]
        fn dmarc_keys_round_trip_and_sort_by_key_then_end(
            key_id in kid(), a in any::<u64>(), b in any::<u64>(), digest in any::<[u8; 16]>()
        ) {
            let k = dmarc(key_id, a, &digest);
            prop_assert_eq!(parse(&k), Some(Key::Dmarc { key_id, end_ms: a, digest }));
            prop_assert!(dmarc_from(key_id, a).as_slice() <= k.as_slice());
            prop_assert!(k.as_slice() < dmarc_end(key_id).as_slice());
            if a < b {
                prop_assert!(k < dmarc_from(key_id, b));
            }
        }

        #[test]
        fn body_chunk_keys_round_trip_and_sort_in_order_under_the_body(
            id in id(), other in id(), a in any::<u32>(), b in any::<u32>()
        ) {
            prop_assert_eq!(parse(&body_chunk(&id, a)), Some(Key::Body(id, a)));
            prop_assert_eq!(parse(&spill(&id, a)), None, "not a key of the tree");
            prop_assert_eq!(body_chunk(&id, a).cmp(&body_chunk(&id, b)), a.cmp(&b));
            prop_assert!(body_chunk(&id, a).starts_with(&body(&id)));
            prop_assert_eq!(body_chunk(&other, b).starts_with(&body(&id)), other == id);
        }

        #[test]
        fn body_keys_cover_the_length(id in id(), len in 0u64..200_000) {
            let keys: Vec<_> = body_keys(&id, len).collect();
            let n = keys.len() as u64;
            prop_assert!(n >= 1);
            prop_assert!(n * BODY_CHUNK as u64 >= len);
            prop_assert!(len == 0 || (n - 1) * (BODY_CHUNK as u64) < len);
            prop_assert_eq!(&keys[0], &body(&id).to_vec());
        }

        #[test]
        fn due_keys_round_trip(due_ms in any::<u64>(), id in id()) {
            prop_assert_eq!(parse(&due(due_ms, &id)), Some(Key::Due { due_ms, id }));
        }

        #[test]
        fn due_byte_order_is_due_then_id_order(
            a in (any::<u64>(), id()),
            b in (any::<u64>(), id()),
        ) {
            let (ka, kb) = (due(a.0, &a.1), due(b.0, &b.1));
            prop_assert_eq!(ka.cmp(&kb), a.cmp(&b));
        }

        #[test]
        fn lease_and_log_keys_round_trip(k in kid(), t in any::<u64>(), id in id(), seq in any::<u32>()) {
            prop_assert_eq!(parse(&lease(t, &id)), Some(Key::Lease { expiry_ms: t, id }));
            prop_assert_eq!(parse(&log(k, t, &id, seq)), Some(Key::Log { key_id: k, time_ms: t, id, seq }));
            prop_assert_eq!(parse(&legacy_log(t, &id, seq)), Some(Key::LegacyLog { time_ms: t, id, seq }));
        }

        #[test]
        fn lease_byte_order_is_expiry_then_id_order(
            a in (any::<u64>(), id()),
            b in (any::<u64>(), id()),
        ) {
            let (ka, kb) = (lease(a.0, &a.1), lease(b.0, &b.1));
            prop_assert_eq!(ka.cmp(&kb), a.cmp(&b));
        }

        #[test]
        fn log_byte_order_is_key_then_time_then_id_then_seq_order(
            a in (kid(), any::<u64>(), id(), any::<u32>()),
            b in (kid(), any::<u64>(), id(), any::<u32>()),
        ) {
            let (ka, kb) = (log(a.0, a.1, &a.2, a.3), log(b.0, b.1, &b.2, b.3));
            prop_assert_eq!(ka.cmp(&kb), a.cmp(&b));
        }

        #[test]
        fn range_bounds_enclose_exactly_their_times(
            k in kid(), other in kid(), t in any::<u64>(), u in any::<u64>(), id in id(), seq in any::<u32>()
        ) {
            let d = due(u, &id);
            prop_assert_eq!(d >= due_from(t), u >= t);
            prop_assert_eq!(d <= due_through(t), u <= t);
            let g = log(k, u, &id, seq);
            prop_assert_eq!(g >= log_from(k, t), u >= t);
            prop_assert!(g.as_slice() < log_end(k).as_slice());
            prop_assert!(g.starts_with(&log_prefix(k)));
            // Another data key's records are outside this one's range.
            let h = log(other, u, &id, seq);
            let inside = h.as_slice() >= log_from(k, 0).as_slice() && h.as_slice() < log_end(k).as_slice();
            prop_assert_eq!(inside, other == k);
        }

        #[test]
        fn prefixes_keep_kinds_apart(k in kid(), t in any::<u64>(), id in id(), seq in any::<u32>()) {
            // A scan of one prefix never meets another kind of key.
            let (d, l, g) = (due(t, &id), lease(t, &id), log(k, t, &id, seq));
            prop_assert!(d[0] != l[0] && l[0] != g[0] && g[0] != d[0]);
            prop_assert!(matches!(parse(&d), Some(Key::Due { .. })), "Due");
            prop_assert!(matches!(parse(&l), Some(Key::Lease { .. })), "Lease");
            prop_assert!(matches!(parse(&g), Some(Key::Log { .. })), "Log");
        }

        #[test]
        fn record_byte_order_is_id_order(a in id(), b in id()) {
            prop_assert_eq!(envelope(&a).cmp(&envelope(&b)), a.cmp(&b));
            prop_assert_eq!(body(&a).cmp(&body(&b)), a.cmp(&b));
        }

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = parse(&bytes);
            let _ = describe(&bytes);
        }
    }

    #[test]
    fn wrong_lengths_are_not_keys() {
        assert_eq!(parse(b""), None);
        assert_eq!(parse(b"e123"), None);
        assert_eq!(parse(&[DUE; 24]), None);
        assert_eq!(parse(&[LEASE; 26]), None);
        assert_eq!(parse(&[LOG; 25]), None);
        assert_eq!(parse(&[LOG; 30]), None);
        assert_eq!(parse(&[LOG; 38]), None);
        assert_eq!(parse(b"x0000000000000000"), None);
        // Chunk 0 under the long form, and lengths between the two forms.
        assert_eq!(
            parse(&[BODY, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0]),
            None
        );
        assert_eq!(parse(&[BODY; 19]), None);
    }
}
