//! Every sled key of the spool is built and parsed here, nowhere else.
//!
//! One tree, one-byte prefixes, fixed-width big-endian fields, so that sled's byte
//! order is the logical order (time first for the schedule):
//!
//! ```text
//!   e <id:16>                  sealed envelope
//!   b <id:16>                  sealed body
//!   d <due_ms:8 BE> <id:16>    schedule entry (empty value), ordered by (due, id)
//!   g <time_ms:8 BE> <id:16> <seq:4 BE>   sealed delivery log record, time order
//!   l <expiry_ms:8 BE> <id:16> lease (empty value): the message is being delivered
//!   q <original key>           quarantined record, value kept byte for byte
//! ```

use crate::MessageId;

pub const ENVELOPE: u8 = b'e';
pub const BODY: u8 = b'b';
pub const DUE: u8 = b'd';
pub const QUARANTINE: u8 = b'q';
pub const LEASE: u8 = b'l';
pub const LOG: u8 = b'g';

/// Length of an envelope or body key.
pub const RECORD_KEY_LEN: usize = 17;
/// Length of a schedule key.
pub const DUE_KEY_LEN: usize = 25;
/// Length of a lease key (same layout as a schedule key).
pub const LEASE_KEY_LEN: usize = 25;
/// Length of a delivery log key.
pub const LOG_KEY_LEN: usize = 29;

/// A parsed spool key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    Envelope(MessageId),
    Body(MessageId),
    Due {
        due_ms: u64,
        id: MessageId,
    },
    Lease {
        expiry_ms: u64,
        id: MessageId,
    },
    Log {
        time_ms: u64,
        id: MessageId,
        seq: u32,
    },
    /// A quarantined record; holds the key it had before.
    Quarantine(Vec<u8>),
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

pub fn body(id: &MessageId) -> [u8; RECORD_KEY_LEN] {
    record(BODY, id)
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

pub fn log(time_ms: u64, id: &MessageId, seq: u32) -> [u8; LOG_KEY_LEN] {
    let mut k = [0u8; LOG_KEY_LEN];
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

/// First delivery log key at `time_ms` or later; every key of an earlier time sorts
/// before it.
pub fn log_from(time_ms: u64) -> [u8; LOG_KEY_LEN] {
    log(time_ms, &MIN_ID, 0)
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
        BODY => id_at(rest).map(Key::Body),
        DUE if rest.len() == DUE_KEY_LEN - 1 => {
            let (due_ms, id, _) = split_timed(rest)?;
            Some(Key::Due { due_ms, id })
        }
        LEASE if rest.len() == LEASE_KEY_LEN - 1 => {
            let (expiry_ms, id, _) = split_timed(rest)?;
            Some(Key::Lease { expiry_ms, id })
        }
        LOG if rest.len() == LOG_KEY_LEN - 1 => {
            let (time_ms, id, seq) = split_timed(rest)?;
            let seq = u32::from_be_bytes(seq.try_into().ok()?);
            Some(Key::Log { time_ms, id, seq })
        }
        QUARANTINE => Some(Key::Quarantine(rest.to_vec())),
        _ => None,
    }
}

/// A human-readable name for a key, for errors and logs (never holds content).
pub fn describe(key: &[u8]) -> String {
    match parse(key) {
        Some(Key::Envelope(id)) => format!("envelope {id}"),
        Some(Key::Body(id)) => format!("body {id}"),
        Some(Key::Due { due_ms, id }) => format!("schedule {id} due {due_ms}"),
        Some(Key::Lease { expiry_ms, id }) => format!("lease {id} until {expiry_ms}"),
        Some(Key::Log { time_ms, id, seq }) => format!("delivery log {id} at {time_ms} #{seq}"),
        Some(Key::Quarantine(orig)) => format!("quarantined {}", describe(&orig)),
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

    proptest! {
        #[test]
        fn record_keys_round_trip(id in id()) {
            prop_assert_eq!(parse(&envelope(&id)), Some(Key::Envelope(id)));
            prop_assert_eq!(parse(&body(&id)), Some(Key::Body(id)));
            let q = quarantine(&body(&id));
            prop_assert_eq!(parse(&q), Some(Key::Quarantine(body(&id).to_vec())));
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
        fn lease_and_log_keys_round_trip(t in any::<u64>(), id in id(), seq in any::<u32>()) {
            prop_assert_eq!(parse(&lease(t, &id)), Some(Key::Lease { expiry_ms: t, id }));
            prop_assert_eq!(parse(&log(t, &id, seq)), Some(Key::Log { time_ms: t, id, seq }));
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
        fn log_byte_order_is_time_then_id_then_seq_order(
            a in (any::<u64>(), id(), any::<u32>()),
            b in (any::<u64>(), id(), any::<u32>()),
        ) {
            let (ka, kb) = (log(a.0, &a.1, a.2), log(b.0, &b.1, b.2));
            prop_assert_eq!(ka.cmp(&kb), a.cmp(&b));
        }

        #[test]
        fn range_bounds_enclose_exactly_their_times(t in any::<u64>(), u in any::<u64>(), id in id(), seq in any::<u32>()) {
            let k = due(u, &id);
            prop_assert_eq!(k >= due_from(t), u >= t);
            prop_assert_eq!(k <= due_through(t), u <= t);
            prop_assert_eq!(log(u, &id, seq) >= log_from(t), u >= t);
        }

        #[test]
        fn prefixes_keep_kinds_apart(t in any::<u64>(), id in id(), seq in any::<u32>()) {
            // A scan of one prefix never meets another kind of key.
            let (d, l, g) = (due(t, &id), lease(t, &id), log(t, &id, seq));
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
        assert_eq!(parse(b"x0000000000000000"), None);
    }
}
