//! How much the scheduler may lease: the bodies of messages out for delivery are
//! held in memory, so what is out is bounded by `[spool] memory_budget` in bytes and
//! by a count, not by the size of the queue. Pure arithmetic; the scheduler asks
//! [`Budget::room`] before each lease and `Spool::take_due_within` stops at the
//! bytes it allows.

/// Messages leased per round at most (one durable write per round). Memory is
/// bounded by the bytes (`take_due_within` stops a round at the budget), so a
/// round of small messages may be large: the lease writes stay as few as before
/// the budget, and large bodies are still taken a budget's worth at a time.
pub const MAX_BATCH: usize = 512;
/// Messages out at once, whatever their size (envelopes, jobs and per-message
/// state cost memory too).
pub const MAX_IN_FLIGHT: usize = 10_000;

/// Body bytes and messages out for delivery, against the budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    limit: u64,
    bytes: u64,
    count: usize,
}

/// What the next lease may take: at most `count` messages, and bodies adding up to
/// at most `bytes` beyond the first message (which is taken whatever its size).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Room {
    pub count: usize,
    pub bytes: u64,
}

impl Budget {
    pub fn new(limit: u64) -> Budget {
        Budget {
            limit,
            bytes: 0,
            count: 0,
        }
    }

    /// Body bytes held now (for the gauge).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// What may be leased now. Nothing while the budget is used up or the count is
    /// reached; otherwise what is left of both. Because a lease takes its first
    /// message whatever its size, a message larger than the whole budget still
    /// goes out, and memory stays under the budget plus one message.
    pub fn room(&self) -> Room {
        let count = MAX_BATCH.min(MAX_IN_FLIGHT.saturating_sub(self.count));
        if count == 0 || self.bytes >= self.limit {
            return Room { count: 0, bytes: 0 };
        }
        Room {
            count,
            bytes: self.limit - self.bytes,
        }
    }

    /// A message's body is held from now on.
    pub fn take(&mut self, body_len: u64) {
        self.bytes = self.bytes.saturating_add(body_len);
        self.count += 1;
    }

    /// A message held with `take` is done (completed, or given back).
    pub fn release(&mut self, body_len: u64) {
        self.bytes = self.bytes.saturating_sub(body_len);
        self.count = self.count.saturating_sub(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    fn budget(limit: u64, held: &[u64]) -> Budget {
        let mut b = Budget::new(limit);
        for &len in held {
            b.take(len);
        }
        b
    }

    #[test]
    fn an_idle_scheduler_leases_a_full_round_within_the_budget() {
        let room = budget(64 * MIB, &[]).room();
        assert_eq!(
            room,
            Room {
                count: MAX_BATCH,
                bytes: 64 * MIB
            }
        );
    }

    #[test]
    fn the_room_shrinks_as_bodies_are_held_and_grows_as_they_go() {
        let mut b = budget(64 * MIB, &[5 * MIB; 10]);
        assert_eq!(b.room().bytes, 14 * MIB);
        assert_eq!(b.room().count, MAX_BATCH);
        b.take(14 * MIB);
        assert_eq!(b.room(), Room { count: 0, bytes: 0 }, "exactly used up");
        b.release(5 * MIB);
        assert_eq!(b.room().bytes, 5 * MIB);
        assert_eq!(b.bytes(), 59 * MIB);
    }

    #[test]
    fn one_message_larger_than_the_budget_is_held_alone() {
        // Nothing out: a round may start, and its first message is taken whatever
        // its size; then nothing more until it is done.
        let mut b = budget(MIB, &[]);
        assert!(b.room().count > 0);
        b.take(30 * MIB);
        assert_eq!(b.room(), Room { count: 0, bytes: 0 });
        b.release(30 * MIB);
        assert_eq!(b, Budget::new(MIB), "released whole");
    }

    #[test]
    fn the_count_caps_many_small_messages() {
        let mut b = budget(u64::MAX, &[]);
        for _ in 0..MAX_IN_FLIGHT - 10 {
            b.take(1);
        }
        assert_eq!(b.room().count, 10, "fewer than a round left");
        for _ in 0..10 {
            b.take(1);
        }
        assert_eq!(b.room().count, 0);
    }

    #[test]
    fn releasing_more_than_held_does_not_wrap() {
        let mut b = budget(MIB, &[10]);
        b.release(20);
        b.release(20);
        assert_eq!(b, Budget::new(MIB));
    }
}
