//! How much the scheduler may lease: the bodies of messages out for delivery are
//! held in memory, so what is out is bounded by `[spool] memory_budget` in bytes and
//! by a count, not by the size of the queue. Two counters under a mutex: the
//! scheduler claims the room with [`Budget::claim`] before each lease round and
//! `Spool::take_due_within` stops at the bytes it allows; sessions handing fresh
//! mail over reserve in the same budget ([`Budget::try_reserve`]).

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Messages leased per round at most (one durable write per round). Memory is
/// bounded by the bytes (`take_due_within` stops a round at the budget), so a
/// round of small messages may be large: the lease writes stay as few as before
/// the budget, and large bodies are still taken a budget's worth at a time.
pub const MAX_BATCH: usize = 512;
/// Messages out at once, whatever their size (envelopes, jobs and per-message
/// state cost memory too).
pub const MAX_IN_FLIGHT: usize = 10_000;

/// Body bytes and messages out for delivery, against the budget. Shared by the
/// scheduler, which leases against it, and the sessions, which reserve a place in
/// it for the fresh messages they hand over (`handoff.rs`).
#[derive(Debug)]
pub struct Budget {
    limit: u64,
    held: Mutex<Held>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Held {
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
            held: Mutex::new(Held::default()),
        }
    }

    fn held(&self) -> MutexGuard<'_, Held> {
        // Plain numbers: a panic elsewhere cannot leave them half changed.
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Body bytes held now (for the gauge).
    pub fn bytes(&self) -> u64 {
        self.held().bytes
    }

    /// Messages held now.
    #[cfg(test)]
    pub fn count(&self) -> usize {
        self.held().count
    }

    /// What may be leased now. Nothing while the budget is used up or the count is
    /// reached; otherwise what is left of both. Because a lease takes its first
    /// message whatever its size, a message larger than the whole budget still
    /// goes out, and memory stays under the budget plus one message.
    #[cfg(test)]
    pub fn room(&self) -> Room {
        room(self.limit, *self.held())
    }

    /// [`room`](Budget::room), claimed at once: until [`settle`](Budget::settle)
    /// nobody else can reserve it, so a lease round and the sessions' hand-offs
    /// never both count on the same room.
    pub fn claim(&self) -> Room {
        let mut held = self.held();
        let room = room(self.limit, *held);
        held.bytes = held.bytes.saturating_add(room.bytes);
        held.count += room.count;
        room
    }

    /// Ends a [`claim`](Budget::claim): what the round held from it (`bytes` may
    /// be more than claimed, for a first message larger than the room) stays
    /// counted, the rest is free again.
    pub fn settle(&self, claimed: Room, bytes: u64, count: usize) {
        let mut held = self.held();
        held.bytes = held
            .bytes
            .saturating_sub(claimed.bytes)
            .saturating_add(bytes);
        held.count = held.count.saturating_sub(claimed.count) + count;
    }

    /// Reserves a place for one body of `cost` bytes if it fits whole in what is
    /// left (no "first message" allowance: what does not fit waits on the
    /// schedule instead).
    pub fn try_reserve(&self, cost: u64) -> bool {
        let mut held = self.held();
        if held.count >= MAX_IN_FLIGHT || held.bytes.saturating_add(cost) > self.limit {
            return false;
        }
        held.bytes += cost;
        held.count += 1;
        true
    }

    /// A message's body is held from now on.
    #[cfg(test)]
    pub fn take(&self, cost: u64) {
        let mut held = self.held();
        held.bytes = held.bytes.saturating_add(cost);
        held.count += 1;
    }

    /// A message held with `take` or `try_reserve` is done (completed, or given
    /// back).
    pub fn release(&self, cost: u64) {
        let mut held = self.held();
        held.bytes = held.bytes.saturating_sub(cost);
        held.count = held.count.saturating_sub(1);
    }
}

fn room(limit: u64, held: Held) -> Room {
    let count = MAX_BATCH.min(MAX_IN_FLIGHT.saturating_sub(held.count));
    if count == 0 || held.bytes >= limit {
        return Room { count: 0, bytes: 0 };
    }
    Room {
        count,
        bytes: limit - held.bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    fn budget(limit: u64, held: &[u64]) -> Budget {
        let b = Budget::new(limit);
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
        let b = budget(64 * MIB, &[5 * MIB; 10]);
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
        let b = budget(MIB, &[]);
        assert!(b.room().count > 0);
        b.take(30 * MIB);
        assert_eq!(b.room(), Room { count: 0, bytes: 0 });
        b.release(30 * MIB);
        assert_eq!((b.bytes(), b.count()), (0, 0), "released whole");
    }

    #[test]
    fn the_count_caps_many_small_messages() {
        let b = budget(u64::MAX, &[]);
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
        let b = budget(MIB, &[10]);
        b.release(20);
        b.release(20);
        assert_eq!((b.bytes(), b.count()), (0, 0));
    }

    #[test]
    fn a_claimed_room_is_nobody_elses_until_settled() {
        let b = budget(10 * MIB, &[2 * MIB]);
        let claimed = b.claim();
        assert_eq!(claimed.bytes, 8 * MIB);
        assert!(!b.try_reserve(1), "the round holds the room");
        assert_eq!(b.room(), Room { count: 0, bytes: 0 });
        // The round took two messages of 1 MiB: the rest is free again.
        b.settle(claimed, 2 * MIB, 2);
        assert_eq!((b.bytes(), b.count()), (4 * MIB, 3));
        assert!(b.try_reserve(6 * MIB), "exactly what is left");
        assert!(!b.try_reserve(1));
        b.release(6 * MIB);
        assert!(
            !b.try_reserve(6 * MIB + 1),
            "a reservation never goes past the limit"
        );
    }

    #[test]
    fn a_round_may_settle_more_than_it_claimed_for_its_first_message() {
        let b = budget(MIB, &[]);
        let claimed = b.claim();
        b.settle(claimed, 30 * MIB, 1);
        assert_eq!((b.bytes(), b.count()), (30 * MIB, 1));
        assert_eq!(b.claim(), Room { count: 0, bytes: 0 });
    }

    #[test]
    fn reservations_stop_at_the_count_too() {
        let b = budget(u64::MAX, &[]);
        for _ in 0..MAX_IN_FLIGHT {
            assert!(b.try_reserve(1));
        }
        assert!(!b.try_reserve(1));
        b.release(1);
        assert!(b.try_reserve(1));
    }
}
