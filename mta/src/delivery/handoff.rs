//! Fresh mail straight to delivery, as Postfix's new mail goes to its active queue:
//! the session that spooled a small message hands it to the scheduler in memory
//! (envelope and body as it holds them), so delivery neither reads it back nor
//! leases it in a second durable write. The message is written leased instead of
//! due (`Spool::enqueue_leased`), and only if the delivery budget has room for its
//! body, reserved before the write; otherwise it goes on the schedule as before and
//! a lease round takes it. Either way the spool's records are the message: if the
//! process dies before the hand-off is delivered, recovery puts the lease back on
//! the schedule (at least once, never lost).

use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};
use way2mail_queue::{Durable, Error, Spool};
use way2mail_smtp::{Envelope, MessageId};

use super::budget::Budget;
use super::WHOLE_BODY_MAX;
use way2mail_daemon::time::now_ms;

/// A message handed over: leased by its enqueue, its place in the budget reserved.
pub struct Fresh {
    pub id: MessageId,
    pub envelope: Envelope,
    pub body: Arc<Vec<u8>>,
}

/// The sessions' side of the hand-off.
pub struct Handoff {
    budget: Arc<Budget>,
    to_scheduler: Sender<Fresh>,
    lease_ms: u64,
}

/// The scheduler's side: the channel the sessions hand fresh mail into.
pub type FreshReceiver = Receiver<Fresh>;

impl Handoff {
    pub fn new(budget: Arc<Budget>, lease_ms: u64) -> (Handoff, FreshReceiver) {
        // Bounded by the reservations, not by the channel: nothing is sent without
        // one.
        let (tx, rx) = crossbeam_channel::unbounded();
        let handoff = Handoff {
            budget,
            to_scheduler: tx,
            lease_ms,
        };
        (handoff, rx)
    }

    /// Spools a message: leased and handed over when delivery has room for its body
    /// (a [`Handed`] to give it to once the write is durable), due on the schedule
    /// otherwise (`None`, with the same durability handle).
    pub fn enqueue(
        &self,
        spool: &Spool,
        id: MessageId,
        envelope: &Envelope,
        body: &[u8],
    ) -> Result<(Durable, Option<Handed<'_>>), Error> {
        let len = body.len() as u64;
        if len > WHOLE_BODY_MAX || !self.budget.try_reserve(len) {
            return Ok((spool.enqueue(id, envelope, body)?, None));
        }
        let handed = Handed {
            handoff: self,
            id,
            cost: len,
            sent: false,
        };
        let durable = spool.enqueue_leased(id, envelope, body, now_ms(), self.lease_ms)?;
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
        // Once sent the reservation is the scheduler's, released when the
        // message completes. A scheduler that has stopped leaves the lease for
        // recovery at the next start.
        self.sent = self.handoff.to_scheduler.send(fresh).is_ok();
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

    #[test]
    fn a_reservation_not_handed_over_is_given_back() {
        let budget = Arc::new(Budget::new(10_000));
        let (handoff, rx) = Handoff::new(Arc::clone(&budget), 60_000);
        let handed = Handed {
            handoff: &handoff,
            id: MessageId::generate(),
            cost: 4_000,
            sent: false,
        };
        drop(handed);
        assert_eq!((budget.bytes(), budget.count()), (0, 0));
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn a_message_handed_over_keeps_its_reservation_and_its_spare_capacity_goes() {
        let budget = Arc::new(Budget::new(10_000));
        let (handoff, rx) = Handoff::new(Arc::clone(&budget), 60_000);
        assert!(budget.try_reserve(5));
        let id = MessageId::generate();
        let handed = Handed {
            handoff: &handoff,
            id,
            cost: 5,
            sent: false,
        };
        let mut body = Vec::with_capacity(32 * 1024);
        body.extend_from_slice(b"hello");
        handed.send(envelope(), body);
        let fresh = rx.try_recv().expect("handed over");
        assert_eq!(fresh.id, id);
        assert_eq!(fresh.body.as_slice(), b"hello");
        assert!(fresh.body.capacity() < 1024);
        assert_eq!(
            (budget.bytes(), budget.count()),
            (5, 1),
            "the scheduler's now"
        );
    }

    #[test]
    fn with_the_scheduler_gone_the_reservation_is_given_back() {
        let budget = Arc::new(Budget::new(10_000));
        let (handoff, rx) = Handoff::new(Arc::clone(&budget), 60_000);
        drop(rx);
        assert!(budget.try_reserve(5));
        let handed = Handed {
            handoff: &handoff,
            id: MessageId::generate(),
            cost: 5,
            sent: false,
        };
        handed.send(envelope(), b"hello".to_vec());
        assert_eq!((budget.bytes(), budget.count()), (0, 0));
    }
}
