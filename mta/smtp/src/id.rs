//! Message ids: 128 bits, time first, so that byte order, text order and arrival
//! order agree. Layout: 8 bytes big-endian unix time in microseconds, 4 bytes chosen
//! at random once per process, 4 bytes of a per-process atomic counter. The random
//! part keeps ids from two processes (or two runs) apart even if their clocks agree;
//! the counter keeps ids within one process apart even inside one microsecond.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::BuildHasher;
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

/// Crockford's base32 alphabet (no I, L, O, U); ascending, so text order = value order.
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// 128 bits in 5-bit digits: 26 digits, the first one carrying only 3 bits.
const TEXT_LEN: usize = 26;

/// The id of one queued message.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct MessageId([u8; 16]);

static COUNTER: AtomicU32 = AtomicU32::new(0);
/// Highest timestamp handed out so far: a clock stepping back never makes ids go back.
static LAST_MICROS: AtomicU64 = AtomicU64::new(0);
static PROCESS_RANDOM: OnceLock<[u8; 4]> = OnceLock::new();

fn process_random() -> [u8; 4] {
    *PROCESS_RANDOM.get_or_init(|| {
        // std keys its hashers from the operating system's random source once per
        // process; hashing the pid and the clock under such a key gives bits that
        // differ between processes and runs without a crypto library here.
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let mixed = RandomState::new().hash_one((std::process::id(), nanos));
        let [a, b, c, d, ..] = mixed.to_be_bytes();
        [a, b, c, d]
    })
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl MessageId {
    /// A new id, unique within this process and (through the random part and the
    /// clock) across processes and restarts.
    pub fn generate() -> MessageId {
        let now = now_micros();
        let prev = LAST_MICROS.fetch_max(now, Ordering::Relaxed);
        let micros = now.max(prev);
        let count = COUNTER.fetch_add(1, Ordering::Relaxed);
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&micros.to_be_bytes());
        b[8..12].copy_from_slice(&process_random());
        b[12..].copy_from_slice(&count.to_be_bytes());
        MessageId(b)
    }

    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    pub const fn from_bytes(b: [u8; 16]) -> MessageId {
        MessageId(b)
    }

    /// Unix time in milliseconds at which the id was generated.
    pub fn timestamp_ms(&self) -> u64 {
        let mut t = [0u8; 8];
        t.copy_from_slice(&self.0[..8]);
        u64::from_be_bytes(t) / 1000
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut v = u128::from_be_bytes(self.0);
        let mut out = [0u8; TEXT_LEN];
        for slot in out.iter_mut().rev() {
            *slot = ALPHABET[(v & 0x1f) as usize];
            v >>= 5;
        }
        // Every byte comes from ALPHABET, which is ASCII.
        f.write_str(std::str::from_utf8(&out).map_err(|_| fmt::Error)?)
    }
}

/// Value of one Crockford digit; accepts lower case and the usual look-alikes.
fn digit(c: u8) -> Option<u8> {
    let c = c.to_ascii_uppercase();
    let c = match c {
        b'O' => b'0',
        b'I' | b'L' => b'1',
        other => other,
    };
    ALPHABET.iter().position(|&a| a == c).map(|p| p as u8)
}

/// Text that is not a message id (at most 64 characters of it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid message id {0:?}")]
pub struct InvalidId(pub String);

impl FromStr for MessageId {
    type Err = InvalidId;

    fn from_str(s: &str) -> Result<MessageId, InvalidId> {
        let invalid = || InvalidId(s.chars().take(64).collect());
        let bytes = s.as_bytes();
        if bytes.len() != TEXT_LEN {
            return Err(invalid());
        }
        let mut v: u128 = 0;
        for (i, &c) in bytes.iter().enumerate() {
            let d = digit(c).ok_or_else(invalid)?;
            // The first digit holds only the top 3 bits; anything above 7 overflows.
            if i == 0 && d > 7 {
                return Err(invalid());
            }
            v = (v << 5) | u128::from(d);
        }
        Ok(MessageId(v.to_be_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn generated_ids_are_unique_and_increasing() {
        let ids: Vec<MessageId> = (0..10_000).map(|_| MessageId::generate()).collect();
        for w in ids.windows(2) {
            assert!(w[0] < w[1], "{} !< {}", w[0], w[1]);
        }
    }

    #[test]
    fn timestamp_is_now() {
        let before = now_micros() / 1000;
        let id = MessageId::generate();
        let after = now_micros() / 1000;
        assert!(id.timestamp_ms() >= before && id.timestamp_ms() <= after);
    }

    #[test]
    fn rejects_bad_text() {
        for bad in [
            "",
            "0",
            "8ZZZZZZZZZZZZZZZZZZZZZZZZZ",
            "0000000000000000000000000U",
            "00000000000000000000000000X",
        ] {
            assert!(
                matches!(bad.parse::<MessageId>(), Err(InvalidId(_))),
                "{bad}"
            );
        }
        assert_eq!(
            "7ZZZZZZZZZZZZZZZZZZZZZZZZZ".parse::<MessageId>().ok(),
            Some(MessageId([0xff; 16]))
        );
    }

    proptest! {
        #[test]
        fn text_round_trips(b in any::<[u8; 16]>()) {
            let id = MessageId::from_bytes(b);
            let text = id.to_string();
            prop_assert_eq!(text.len(), 26);
            prop_assert_eq!(text.parse::<MessageId>().ok(), Some(id));
            prop_assert_eq!(text.to_ascii_lowercase().parse::<MessageId>().ok(), Some(id));
        }

        #[test]
        fn text_order_is_byte_order(a in any::<[u8; 16]>(), b in any::<[u8; 16]>()) {
            let (ia, ib) = (MessageId::from_bytes(a), MessageId::from_bytes(b));
            prop_assert_eq!(ia.cmp(&ib), ia.to_string().cmp(&ib.to_string()));
            prop_assert_eq!(ia.cmp(&ib), a.cmp(&b));
        }
    }
}
