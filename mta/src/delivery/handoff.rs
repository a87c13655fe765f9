//! Fresh mail straight to delivery, as Postfix's new mail goes to its active queue:
//! the session that spooled a small message hands it to the scheduler in memory
//! (envelope and body as it holds them), so delivery neither reads it back nor
//! leases it in a second durable write. The message is written leased instead of
//! due (`Spool::enqueue_leased`), and only if the delivery budget has room for its
//! body, reserved before the write; otherwise it goes on the schedule as before and
//! a lease round takes it. Either way the spool's records are the message: if the
//! process dies before the hand-off is delivered, recovery puts the lease back on
//! the schedule (at least once, never lost).
//!
//! Handing over does not wake the scheduler for each message: fresh mail waits in
//! a list that the scheduler empties whenever it runs, which under load is at
//! every batch of results from the cores. Only a scheduler with nothing out (no
//! result will wake it) is woken, by the first message into the empty list; one
//! with messages out picks the list up at the next result or within its poll
//! interval (50 ms).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crossbeam_channel::{Receiver, Sender};
use way2mail_queue::{Durable, Error, SideRecords, Spool};
use way2mail_smtp::{Envelope, MessageId};

use super::budget::Budget;
use super::{body_cost, WHOLE_BODY_MAX};
use way2mail_daemon::time::now_ms;

/// A message handed over: leased by its enqueue, its place in the budget reserved.
pub struct Fresh {
    pub id: MessageId,
    pub envelope: Envelope,
    pub body: Arc<Vec<u8>>,
}

/// Fresh mail on its way from the sessions to the scheduler.
pub struct Handoff {
    budget: Arc<Budget>,
    /// Bounded by the reservations: nothing is added without one.
    waiting: Mutex<Vec<Fresh>>,
    /// The scheduler has nothing out, so no result will wake it.
    idle: AtomicBool,
    doorbell: Sender<()>,
    lease_ms: u64,
    /// Set once the scheduler has stopped: what it would be handed stays leased,
    /// for recovery.
    closed: AtomicBool,
}

/// What wakes an idle scheduler.
pub type Doorbell = Receiver<()>;

impl Handoff {
    pub fn new(budget: Arc<Budget>, lease_ms: u64) -> (Handoff, Doorbell) {
        let (doorbell, rings) = crossbeam_channel::bounded(1);
        let handoff = Handoff {
            budget,
            waiting: Mutex::new(Vec::new()),
            idle: AtomicBool::new(true),
            doorbell,
            lease_ms,
            closed: AtomicBool::new(false),
        };
        (handoff, rings)
    }

    fn waiting(&self) -> MutexGuard<'_, Vec<Fresh>> {
        // A push or a swap: a panic elsewhere cannot leave the list half changed.
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The scheduler's side: everything handed over since the last call.
    pub fn take_all(&self) -> Vec<Fresh> {
        std::mem::take(&mut *self.waiting())
    }

    /// The scheduler's side, before it waits: whether it has nothing out (and
    /// will sleep until woken or its poll interval ends). Returns whether mail is
    /// waiting already (handed over while it was busy: nothing rang for it).
    pub fn set_idle(&self, idle: bool) -> bool {
        self.idle.store(idle, Ordering::Release);
        !self.waiting().is_empty()
    }

    /// The scheduler's side, when it stops: nothing is handed over any more, and
    /// what was waiting gives its reservation back (its lease stays, for
    /// recovery).
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        for fresh in self.take_all() {
            self.budget.release(body_cost(fresh.body.len() as u64));
        }
    }

    fn hand(&self, fresh: Fresh) -> bool {
        if self.closed.load(Ordering::Acquire) {
            return false;
        }
        let first = {
            let mut waiting = self.waiting();
            waiting.push(fresh);
            waiting.len() == 1
        };
        if first && self.idle.load(Ordering::Acquire) {
            // Full means it rings already.
            let _ = self.doorbell.try_send(());
        }
        true
    }

    /// Spools a message: leased and handed over when delivery has room for its body
    /// (a [`Handed`] to give it to once the write is durable), due on the schedule
    /// otherwise (`None`, with the same durability handle). `side` records go in
    /// the same write.
    pub fn enqueue(
        &self,
        spool: &Spool,
        id: MessageId,
        envelope: &Envelope,
        body: &[u8],
        side: SideRecords,
    ) -> Result<(Durable, Option<Handed<'_>>), Error> {
        let len = body.len() as u64;
        let cost = body_cost(len);
        if len > WHOLE_BODY_MAX || !self.budget.try_reserve(cost) {
            return Ok((spool.enqueue_with(id, envelope, body, side)?, None));
        }
        let handed = Handed {
            handoff: self,
            id,
            cost,
            sent: false,
        };
        let durable = spool.enqueue_leased(id, envelope, body, now_ms(), self.lease_ms, side)?;
        Ok((durable, Some(handed)))
    }
}

/// A message written leased, to hand over once its write is durable. Dropped
/// without [`send`](Handed::send) (the write failed, or the session is gone), it
/// gives its reservation back.
pub struct Handed<'a> {
    handoff: &'a Handoff,
    id: MessageId,
    cost: u64,
    sent: bool,
}

impl Handed<'_> {
    /// Hands the durable message to the scheduler. `body` is what was spooled:
    /// spare capacity is given back first, since the budget counts its length.
    pub fn send(mut self, envelope: Envelope, mut body: Vec<u8>) {
        if body.capacity() > body.len() + body.len() / 8 {
            body.shrink_to_fit();
        }
        let fresh = Fresh {
            id: self.id,
            envelope,
            body: Arc::new(body),
        };
        // Once handed over the reservation is the scheduler's, released when the
        // message completes. A scheduler that has stopped leaves the lease for
        // recovery at the next start.
        self.sent = self.handoff.hand(fresh);
    }

    /// The write failed: the spool forgets the lease, the budget its reservation.
    pub fn failed(self, spool: &Spool) {
        spool.forget_lease(&self.id);
    }
}

impl Drop for Handed<'_> {
    fn drop(&mut self) {
        if !self.sent {
            self.handoff.budget.release(self.cost);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope() -> Envelope {
        serde_json::from_str(
            r#"{"sender":"a@example.org","recipients":[{"address":"b@example.net",
            "notify":{"never":false,"success":false,"failure":true,"delay":false},
            "orcpt":null}],"body_type":"SevenBit","smtputf8":false,"ret":null,
            "envid":null,"origin":{"client_ip":"192.0.2.1","helo":"h","listener":"mx",
            "tls":null,"auth":null},"received_at_ms":5}"#,
        )
        .expect("envelope")
    }

    /// A reservation of `cost` and the message it is for.
    fn reserved(handoff: &Handoff, cost: u64) -> Handed<'_> {
        assert!(handoff.budget.try_reserve(cost));
        Handed {
            handoff,
            id: MessageId::generate(),
            cost,
            sent: false,
        }
    }

    fn held(budget: &Budget) -> (u64, usize) {
        (budget.bytes(), budget.count())
    }

    #[test]
    fn a_reservation_not_handed_over_is_given_back() {
        let budget = Arc::new(Budget::new(10_000));
        let (handoff, rings) = Handoff::new(Arc::clone(&budget), 60_000);
        drop(reserved(&handoff, 4_000));
        assert_eq!(held(&budget), (0, 0));
        assert!(handoff.take_all().is_empty());
        assert!(rings.try_recv().is_err());
    }

    #[test]
    fn a_message_handed_over_keeps_its_reservation_and_its_spare_capacity_goes() {
        let budget = Arc::new(Budget::new(10_000));
        let (handoff, rings) = Handoff::new(Arc::clone(&budget), 60_000);
        let handed = reserved(&handoff, 5);
        let id = handed.id;
        let mut body = Vec::with_capacity(32 * 1024);
        body.extend_from_slice(b"hello");
        handed.send(envelope(), body);
        assert!(rings.try_recv().is_ok(), "an idle scheduler is woken");
        let fresh = handoff.take_all().pop().expect("handed over");
        assert_eq!(fresh.id, id);
        assert_eq!(fresh.body.as_slice(), b"hello");
        assert!(fresh.body.capacity() < 1024);
        assert_eq!(held(&budget), (5, 1), "the scheduler's now");
    }

    #[test]
    fn a_busy_scheduler_is_not_woken_and_finds_the_messages_at_its_next_look() {
        let budget = Arc::new(Budget::new(10_000));
        let (handoff, rings) = Handoff::new(Arc::clone(&budget), 60_000);
        handoff.set_idle(false);
        for _ in 0..3 {
            reserved(&handoff, 5).send(envelope(), b"hello".to_vec());
        }
        assert!(rings.try_recv().is_err(), "not woken");
        assert_eq!(handoff.take_all().len(), 3);
        assert_eq!(held(&budget), (15, 3));
    }

    #[test]
    fn with_the_scheduler_gone_the_reservations_are_given_back() {
        let budget = Arc::new(Budget::new(10_000));
        let (handoff, _rings) = Handoff::new(Arc::clone(&budget), 60_000);
        reserved(&handoff, 5).send(envelope(), b"hello".to_vec());
        handoff.close();
        assert_eq!(held(&budget), (0, 0), "what waited");
        reserved(&handoff, 5).send(envelope(), b"hello".to_vec());
        assert_eq!(held(&budget), (0, 0), "what came after");
        assert!(handoff.take_all().is_empty());
    }
}
