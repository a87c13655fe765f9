//! Every sled key of the spool is built and parsed here, nowhere else.
//!
//! One tree, one-byte prefixes, fixed-width big-endian fields, so that sled's byte
//! order is the logical order (time first for the schedule):
//!
//! ```text
//!   e <id:16>                  sealed envelope
//!   b <id:16>                  sealed body
//!   d <due_ms:8 BE> <id:16>    schedule entry (empty value), ordered by (due, id)
//!   q <original key>           quarantined record, value kept byte for byte
//! ```

use crate::MessageId;

pub const ENVELOPE: u8 = b'e';
pub const BODY: u8 = b'b';
pub const DUE: u8 = b'd';
pub const QUARANTINE: u8 = b'q';

/// Length of an envelope or body key.
pub const RECORD_KEY_LEN: usize = 17;
/// Length of a schedule key.
pub const DUE_KEY_LEN: usize = 25;

/// A parsed spool key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    Envelope(MessageId),
    Body(MessageId),
    Due {
        due_ms: u64,
        id: MessageId,
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

pub fn due(due_ms: u64, id: &MessageId) -> [u8; DUE_KEY_LEN] {
    let mut k = [0u8; DUE_KEY_LEN];
    k[0] = DUE;
    k[1..9].copy_from_slice(&due_ms.to_be_bytes());
    k[9..].copy_from_slice(id.as_bytes());
    k
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
            let (t, id) = rest.split_at(8);
            let due_ms = u64::from_be_bytes(t.try_into().ok()?);
            Some(Key::Due {
                due_ms,
                id: id_at(id)?,
            })
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
        assert_eq!(parse(b"x0000000000000000"), None);
    }
}
