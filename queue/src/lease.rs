//! Delivery's side of the spool: leasing due messages, reading their bodies, and
//! ending a lease with the attempt's outcome in one atomic write.
//!
//! A lease replaces the schedule entry `d<due><id>` by `l<expiry><id>`. While it
//! exists the message is not due, so it is handed out once; if the process dies with
//! the lease still on disk, recovery puts the message back on the schedule (at least
//! once, never lost). `complete` removes the lease in the same batch that records the
//! outcome: the new envelope and either a new schedule entry or the deletion of the
//! message, plus an optional new message (a bounce) and delivery log records.
//!
//! Every write here goes through the flusher (commit.rs), like `enqueue`: sled's
//! `apply_batch` and its transactions take the global write lock that a flush holds,
//! so a caller writing on its own would stall behind every flush.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::body;
use crate::commit::Write;
use crate::keys::{self, Key};
use crate::record::BodyShape;
use crate::{record, DeliveryRecord, Durable, Envelope, Error, MessageId, Spool};

/// A message handed to delivery by [`Spool::take_due`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leased {
    pub id: MessageId,
    pub envelope: Envelope,
    /// The body's length as the envelope records it: what reading the body will
    /// hold in memory, known before it is read.
    pub body_len: u64,
    /// How the body goes to a next hop, when the envelope records it (bodies longer
    /// than one chunk, written by this version).
    pub shape: Option<BodyShape>,
}

/// An envelope opened to be leased: with its body's length and shape.
type Opened = (Envelope, u64, Option<BodyShape>);

/// What this process knows about a lease it took.
#[derive(Debug, Clone, Copy)]
struct Held {
    expiry_ms: u64,
    /// Kept so that `complete` can seal the new envelope without opening the old.
    body_len: u64,
    shape: Option<BodyShape>,
}

/// The leases this process holds, so that `complete` finds the lease key without
/// scanning every lease.
#[derive(Default)]
pub(crate) struct Leases {
    /// Serializes `take_due`: two takers reading the same schedule entries before
    /// either write is applied would lease a message twice.
    taking: Mutex<()>,
    held: Mutex<HashMap<MessageId, Held>>,
}

impl Leases {
    fn held(&self) -> MutexGuard<'_, HashMap<MessageId, Held>> {
        // Nothing panics while holding this lock; the map stays valid if it did.
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Held while leasing, and while an operator changes a message
    /// (operate.rs): nothing is leased between a look at the schedule and the
    /// write that changes it.
    pub(crate) fn taking(&self) -> MutexGuard<'_, ()> {
        // Guards no data; a panic elsewhere leaves nothing inconsistent.
        self.taking.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn clear(&self) {
        self.held().clear();
    }

    /// Forgets a lease whose message was deleted (erasure, retention).
    pub(crate) fn forget(&self, id: &MessageId) {
        self.held().remove(id);
    }

    pub(crate) fn is_held(&self, id: &MessageId) -> bool {
        self.held().contains_key(id)
    }
}

/// Why a due entry was dropped instead of leased.
enum Dropped {
    Missing,
    Corrupt,
    /// Mail of an erased tenant: its records are deleted.
    Erased,
}

impl Spool {
    /// Takes up to `max` schedule entries due at or before `now_ms` (in due order),
    /// replacing each with a lease that expires at `now_ms + lease_ms`, in one atomic
    /// batch, and returns once that batch is durable. Entries whose envelope is
    /// missing are dropped; messages whose envelope no longer authenticates are
    /// quarantined. Blocks the calling thread (for the flush): call it from the
    /// scheduler's thread or `spawn_blocking`, not from an async task.
    pub fn take_due(&self, now_ms: u64, max: usize, lease_ms: u64) -> Result<Vec<Leased>, Error> {
        self.take_due_within(now_ms, max, u64::MAX, lease_ms, |len| len)
    }

    /// [`take_due`](Spool::take_due) that also stops before what the messages taken
    /// cost the caller adds up to more than `max_bytes`: `cost` says what a body of
    /// a given length costs (the caller holds small bodies in memory and streams
    /// large ones) and the caller leases against a budget. The first due message is
    /// taken whatever its cost, so one larger than the budget still goes out; the
    /// entry that does not fit stays on the schedule, first in line for the next
    /// call.
    pub fn take_due_within(
        &self,
        now_ms: u64,
        max: usize,
        max_bytes: u64,
        lease_ms: u64,
        cost: impl Fn(u64) -> u64,
    ) -> Result<Vec<Leased>, Error> {
        if max == 0 {
            return Ok(Vec::new());
        }
        self.refuse_if_unhealthy()?;
        let inner = &*self.inner;
        let _taking = inner.leases.taking();
        let expiry_ms = now_ms.saturating_add(lease_ms);
        let mut write = Write::default();
        let mut taken: Vec<Leased> = Vec::new();
        let mut bytes = 0u64;
        let mut seen = HashSet::new();
        let (mut missing, mut corrupt, mut erased) = (0usize, 0usize, 0usize);
        for item in inner
            .db
            .range(keys::due_from(0)..=keys::due_through(now_ms))
        {
            if taken.len() >= max {
                break;
            }
            let (key, _) = item?;
            // Anything else under the prefix is recovery's to quarantine.
            let Some(Key::Due { id, .. }) = keys::parse(&key) else {
                continue;
            };
            // A second entry for a message already leased would deliver it twice.
            if !seen.insert(id) || inner.leases.held().contains_key(&id) {
                write.remove(&key);
                continue;
            }
            match self.open_for_lease(&id, &mut write)? {
                Ok((envelope, body_len, shape)) => {
                    let cost = cost(body_len);
                    if !taken.is_empty() && bytes.saturating_add(cost) > max_bytes {
                        // Left due: its envelope was only read.
                        break;
                    }
                    bytes = bytes.saturating_add(cost);
                    write.remove(&key);
                    write.insert(&keys::lease(expiry_ms, &id), Vec::new());
                    taken.push(Leased {
                        id,
                        envelope,
                        body_len,
                        shape,
                    });
                }
                Err(dropped) => {
                    write.remove(&key);
                    match dropped {
                        Dropped::Missing => missing += 1,
                        Dropped::Corrupt => corrupt += 1,
                        Dropped::Erased => erased += 1,
                    }
                }
            }
        }
        if missing + corrupt + erased > 0 {
            tracing::warn!(
                missing,
                corrupt,
                erased,
                "due entries dropped: message missing, quarantined as corrupt, or of an erased tenant"
            );
        }
        if write.is_empty() {
            return Ok(Vec::new());
        }
        inner.committer.submit(write).wait_blocking()?;
        let mut held = inner.leases.held();
        for leased in &taken {
            held.insert(
                leased.id,
                Held {
                    expiry_ms,
                    body_len: leased.body_len,
                    shape: leased.shape,
                },
            );
        }
        Ok(taken)
    }

    /// [`enqueue`](Spool::enqueue) for a message its caller hands to delivery
    /// itself, in memory, once the write is durable (the session that received it,
    /// while delivery has room): written leased until `now_ms + lease_ms` instead of
    /// due, so no lease round reads it back. Complete it as if `take_due` had
    /// returned it. If the process dies first, recovery puts it on the schedule like
    /// any lease; if the write fails, call [`forget_lease`](Spool::forget_lease).
    pub fn enqueue_leased(
        &self,
        id: MessageId,
        envelope: &Envelope,
        body: &[u8],
        now_ms: u64,
        lease_ms: u64,
        side: crate::SideRecords,
    ) -> Result<Durable, Error> {
        self.refuse_if_unhealthy()?;
        let expiry_ms = now_ms.saturating_add(lease_ms);
        let mut write = Write::default();
        let shape = self.seal_new_message(&mut write, id, envelope, body, Some(expiry_ms))?;
        side.add_to(&mut write);
        // Known before the write is submitted: nothing can complete the message
        // before its caller has it back, after the write.
        self.inner.leases.held().insert(
            id,
            Held {
                expiry_ms,
                body_len: body.len() as u64,
                shape,
            },
        );
        Ok(self.inner.committer.submit(write))
    }

    /// Forgets the lease of a message whose [`enqueue_leased`](Spool::enqueue_leased)
    /// failed: whatever of it reached the disk is recovery's at the next start.
    pub fn forget_lease(&self, id: &MessageId) {
        self.inner.leases.forget(id);
    }

    /// Opens the envelope of a message about to be leased. A corrupt one is moved to
    /// quarantine (with its body) in `write`, as recovery would: never deleted.
    fn open_for_lease(
        &self,
        id: &MessageId,
        write: &mut Write,
    ) -> Result<Result<Opened, Dropped>, Error> {
        let inner = &*self.inner;
        let env_key = keys::envelope(id);
        let Some(value) = inner.db.get(env_key)? else {
            return Ok(Err(Dropped::Missing));
        };
        match record::open_envelope_shaped(&inner.keyring, &env_key, &value) {
            Ok(found) => Ok(Ok(found)),
            Err(Error::Shredded { .. }) => {
                write.remove(&env_key);
                for k in body::existing_keys(&inner.db, id)? {
                    write.remove(&k);
                }
                write.count_messages(-1);
                Ok(Err(Dropped::Erased))
            }
            Err(e) => {
                tracing::error!(record = %keys::describe(&env_key), reason = %e, "quarantining message");
                self.quarantine_records(write, id, Some(value.to_vec()))?;
                write.count_messages(-1);
                Ok(Err(Dropped::Corrupt))
            }
        }
    }

    /// The earliest due time on the schedule, if any (for the scheduler's sleep).
    /// Leased messages are not on the schedule.
    pub fn next_due(&self) -> Result<Option<u64>, Error> {
        for item in self.inner.db.scan_prefix([keys::DUE]) {
            let (key, _) = item?;
            if let Some(Key::Due { due_ms, .. }) = keys::parse(&key) {
                return Ok(Some(due_ms));
            }
        }
        Ok(None)
    }

    /// Ends a lease with the outcome of an attempt. In ONE atomic batch: removes the
    /// lease, then either deletes the message (`next_due_ms` is `None`: every
    /// recipient is done) or writes `envelope` (its delivery state) and schedules the
    /// message at `next_due_ms`; enqueues `also_enqueue` (a bounce, say: id, envelope,
    /// body, due now); appends `log` to the delivery log under `id`. Await the
    /// returned [`Durable`] like an enqueue's. Fails with `UnknownMessage` when the
    /// message is neither leased by this process nor in the spool. When the
    /// message's tenant was erased meanwhile, whatever is left of it is deleted and
    /// nothing else is written (no new state, bounce or log record).
    pub fn complete(
        &self,
        id: MessageId,
        envelope: &Envelope,
        next_due_ms: Option<u64>,
        also_enqueue: Option<(MessageId, Envelope, Vec<u8>)>,
        log: Vec<DeliveryRecord>,
    ) -> Result<Durable, Error> {
        self.refuse_if_unhealthy()?;
        let inner = &*self.inner;
        let held = inner.leases.held().remove(&id);
        let (lease, body_len, shape) = match held {
            Some(h) => (Some(h.expiry_ms), h.body_len, h.shape),
            None => self.find_lease(&id)?,
        };
        let mut write = Write::default();
        if let Some(expiry_ms) = lease {
            write.remove(&keys::lease(expiry_ms, &id));
        }
        let env_key = keys::envelope(&id);
        let data_key = match self.data_key(envelope.origin.tenant.as_deref()) {
            Ok(k) => k,
            Err(Error::Erased(_)) => {
                if inner.db.contains_key(env_key)? {
                    write.remove(&env_key);
                    for k in body::existing_keys(&inner.db, &id)? {
                        write.remove(&k);
                    }
                    write.count_messages(-1);
                }
                return Ok(inner.committer.submit(write));
            }
            Err(e) => return Err(e),
        };
        match next_due_ms {
            None => {
                write.remove(&env_key);
                body::remove_body(&mut write, &id, body_len);
                write.count_messages(-1);
            }
            Some(due_ms) => {
                let sealed = record::seal_envelope(&data_key, &env_key, envelope, body_len, shape)?;
                write.insert(&env_key, sealed);
                write.insert(&keys::due(due_ms, &id), Vec::new());
            }
        }
        if let Some((new_id, new_envelope, body)) = also_enqueue {
            self.seal_new_message(&mut write, new_id, &new_envelope, &body, None)?;
        }
        self.append_log(&mut write, &data_key, &id, &log)?;
        Ok(inner.committer.submit(write))
    }

    /// The lease, body length and body shape of a message this process did not lease (taken
    /// before a `recover`, or by a caller completing a message it never took).
    fn find_lease(&self, id: &MessageId) -> Result<(Option<u64>, u64, Option<BodyShape>), Error> {
        let inner = &*self.inner;
        let env_key = keys::envelope(id);
        let Some(value) = inner.db.get(env_key)? else {
            return Err(Error::UnknownMessage(*id));
        };
        let (body_len, shape) = match record::open_envelope_shaped(&inner.keyring, &env_key, &value)
        {
            Ok((_, len, shape)) => (len, shape),
            // Erased while leased: `complete` deletes what is left.
            Err(Error::Shredded { .. }) => (0, None),
            Err(e) => return Err(e),
        };
        for item in inner.db.scan_prefix([keys::LEASE]) {
            let (key, _) = item?;
            if let Some(Key::Lease {
                expiry_ms,
                id: leased,
            }) = keys::parse(&key)
            {
                if leased == *id {
                    return Ok((Some(expiry_ms), body_len, shape));
                }
            }
        }
        Ok((None, body_len, shape))
    }
}
