//! Operators' changes to queued messages, while the daemon delivers: hold (off the
//! schedule under `h<id>`), put back on the schedule (release, retry), or remove
//! (bounce, delete) with delivery log records and an optional notice, in one atomic
//! batch per call.
//!
//! A message being delivered is never touched: the call holds the lease lock that
//! `take_due` holds, so nothing is leased between the look at a message and the
//! write that changes it, and waits for the batch to be durable before letting go
//! (the next `take_due` must see the new schedule). A leased message is reported
//! as in delivery and left alone; the operator runs the command again.

use std::collections::HashMap;

use way2mail_daemon::time::now_ms;

use crate::commit::Write;
use crate::keys::{self, Key};
use crate::{record, DeliveryRecord, Envelope, Error, MessageId, Spool};

/// Where a message stands on the schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Due at this time (Unix ms).
    Due(u64),
    /// Being delivered; its lease ends at this time.
    Leased(u64),
    /// Held by an operator since this time.
    Held(u64),
}

/// Where one message stands, and the keys that say so.
#[derive(Debug)]
pub(crate) struct Scheduled {
    pub(crate) placement: Placement,
    pub(crate) keys: Vec<Vec<u8>>,
}

/// What to do with one message.
#[derive(Debug)]
pub enum Change {
    /// Off the schedule until released.
    Hold,
    /// On the schedule, due at `due_ms` (held or not before).
    Schedule { due_ms: u64 },
    /// Out of the queue: `log` is appended to the delivery log and `notice` (a
    /// bounce: id, envelope, body) queued, due now.
    Remove {
        log: Vec<DeliveryRecord>,
        notice: Option<Box<Notice>>,
    },
}

/// A new message queued with a removal: id, envelope, body.
pub type Notice = (MessageId, Envelope, Vec<u8>);

/// What became of one message of a [`Spool::change_messages`] call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Changed {
    /// Changed (or, in a dry run, would be).
    Done,
    /// Left as it was, and why.
    Skipped(String),
}

impl Spool {
    /// How many messages are held (a scan of the hold keys only).
    pub fn held_count(&self) -> Result<usize, Error> {
        let mut n = 0;
        for key in self.inner.db.scan_prefix([keys::HELD]).keys() {
            key?;
            n += 1;
        }
        Ok(n)
    }

    /// Where every queued message stands: due, leased or held.
    pub fn placements(&self) -> Result<HashMap<MessageId, Placement>, Error> {
        Ok(self
            .schedule()?
            .into_iter()
            .map(|(id, s)| (id, s.placement))
            .collect())
    }

    /// Every schedule entry, lease and hold, by message: one scan of the three
    /// prefixes serves where a message stands and which keys place it.
    pub(crate) fn schedule(&self) -> Result<HashMap<MessageId, Scheduled>, Error> {
        let mut out: HashMap<MessageId, Scheduled> = HashMap::new();
        // In this order: a hold wins over a schedule entry, a lease over both.
        for prefix in [keys::DUE, keys::HELD, keys::LEASE] {
            for item in self.inner.db.scan_prefix([prefix]) {
                let (key, value) = item?;
                self.inner.progress.tick();
                let (id, placement) = match keys::parse(&key) {
                    Some(Key::Due { due_ms, id }) => (id, Placement::Due(due_ms)),
                    Some(Key::Held(id)) => (id, Placement::Held(held_since(&value))),
                    Some(Key::Lease { expiry_ms, id }) => (id, Placement::Leased(expiry_ms)),
                    _ => continue,
                };
                let entry = out.entry(id).or_insert(Scheduled {
                    placement,
                    keys: Vec::new(),
                });
                entry.keys.push(key.to_vec());
                entry.placement = match (entry.placement, placement) {
                    // The earliest entry counts, should there be several.
                    (Placement::Due(a), Placement::Due(b)) => Placement::Due(a.min(b)),
                    (_, later) => later,
                };
            }
        }
        Ok(out)
    }

    /// Runs `decide` on each message of `ids` that is queued and not being
    /// delivered, and applies the changes it returns in one atomic batch (unless
    /// `dry_run`), durable when this returns. `decide` sees the envelope and the
    /// placement as they are under the lock; `Err(why)` leaves the message as it is.
    /// Blocks the calling thread.
    pub fn change_messages(
        &self,
        ids: &[MessageId],
        dry_run: bool,
        mut decide: impl FnMut(&MessageId, &Envelope, Placement) -> Result<Change, String>,
    ) -> Result<Vec<(MessageId, Changed)>, Error> {
        self.refuse_if_unhealthy()?;
        let inner = &*self.inner;
        let _taking = inner.leases.taking();
        let schedule = self.schedule()?;
        let now = now_ms();
        let mut write = Write::default();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let skip = |why: &str| (*id, Changed::Skipped(why.to_owned()));
            let scheduled = schedule.get(id);
            let placement = match scheduled.map(|s| s.placement) {
                _ if inner.leases.is_held(id) => {
                    out.push(skip("in delivery right now; try again in a moment"));
                    continue;
                }
                Some(Placement::Leased(_)) => {
                    out.push(skip("in delivery right now; try again in a moment"));
                    continue;
                }
                Some(p) => p,
                // No schedule entry (recovery gives it one at the next start).
                None => Placement::Due(now),
            };
            let env_key = keys::envelope(id);
            let Some(value) = inner.db.get(env_key)? else {
                out.push(skip("not in the queue (delivered or removed meanwhile)"));
                continue;
            };
            let (envelope, body_len) = match record::open_envelope(&inner.keyring, &env_key, &value)
            {
                Ok(found) => found,
                Err(Error::Shredded { .. }) => {
                    out.push(skip("its tenant was erased"));
                    continue;
                }
                Err(e) => return Err(e),
            };
            let change = match decide(id, &envelope, placement) {
                Ok(change) => change,
                Err(why) => {
                    out.push(skip(&why));
                    continue;
                }
            };
            out.push((*id, Changed::Done));
            if dry_run {
                continue;
            }
            for key in scheduled.map(|s| s.keys.as_slice()).unwrap_or_default() {
                write.remove(key);
            }
            match change {
                Change::Hold => write.insert(&keys::held(id), now.to_be_bytes().to_vec()),
                Change::Schedule { due_ms } => write.insert(&keys::due(due_ms, id), Vec::new()),
                Change::Remove { log, notice } => {
                    write.remove(&env_key);
                    crate::body::remove_body(&mut write, id, body_len);
                    write.count_messages(-1);
                    let data_key = self.data_key(envelope.origin.tenant.as_deref())?;
                    self.append_log(&mut write, &data_key, id, &log)?;
                    if let Some(notice) = notice {
                        let (notice_id, notice_envelope, body) = *notice;
                        self.seal_new_message(
                            &mut write,
                            notice_id,
                            &notice_envelope,
                            &body,
                            None,
                        )?;
                    }
                }
            }
        }
        if !write.is_empty() {
            inner.committer.submit(write).wait_blocking()?;
        }
        Ok(out)
    }
}

/// The time a hold record keeps (0 for one that does not parse).
pub(crate) fn held_since(value: &[u8]) -> u64 {
    value.try_into().map(u64::from_be_bytes).unwrap_or(0)
}
