//! Startup check. One pass over the spool's metadata (in key order: schedule,
//! envelopes, holds, leases, quarantine), then one atomic batch of repairs. Bodies
//! and the delivery log are not read: they are most of the spool's bytes, and a
//! start must not take longer, or hold more, the more mail is queued. A body is
//! authenticated when delivery reads it, and a message whose body is missing,
//! corrupt or cut short is quarantined then (`Spool::quarantine`); `spool verify`
//! checks every record offline. Nothing holding client data is ever deleted:
//! envelopes that fail to authenticate or parse, with their bodies, records under a
//! data key this keyring never had, and unknown keys are moved under the quarantine
//! prefix. The one exception is mail of an erased tenant (its key was shredded: a
//! restored backup can bring such records back), which is unreadable by design and
//! deleted. Only schedule entries and leases (empty values) are removed. Every lease
//! goes back to the schedule, due now: whatever delivery was doing when the process
//! stopped is done again (at least once).

use std::collections::HashSet;

use crate::keys::{self, Key};
use crate::{body, record, Error, MessageId};
use way2mail_daemon::watchdog::Progress;
use way2mail_seal::Keyring;

/// What `Spool::recover` found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RecoveryReport {
    /// Complete, authentic messages now in the spool.
    pub messages: usize,
    /// Records moved under the quarantine prefix.
    pub quarantined: usize,
    /// Messages that had no schedule entry and got one (due now).
    pub schedule_repaired: usize,
    /// Schedule entries and leases removed because their message does not exist.
    pub orphans_removed: usize,
    /// Leases of valid messages turned back into schedule entries, due now.
    pub leases_released: usize,
    /// Records of erased tenants deleted (their data keys were shredded).
    pub erased_removed: usize,
    /// Records of the version before data keys re-sealed under data keys.
    pub migrated: usize,
    /// Files of messages that were still being received, and chunks written from
    /// them for a message that got no envelope (never acknowledged).
    pub unfinished_removed: usize,
}

#[derive(Default)]
struct Pass {
    scheduled: Vec<(Vec<u8>, MessageId)>,
    leased: Vec<(Vec<u8>, MessageId)>,
    valid: HashSet<MessageId>,
    to_quarantine: Vec<Vec<u8>>,
    /// Records sealed with a shredded key.
    erased: Vec<Vec<u8>>,
    /// Messages whose envelope is quarantined or erased: their bodies follow.
    bodies_to_quarantine: Vec<MessageId>,
    bodies_erased: Vec<MessageId>,
    /// Chunks of messages spooled from their parts that got no envelope.
    unfinished: Vec<Vec<u8>>,
    /// Every message with an envelope record, whatever became of it.
    enveloped: HashSet<MessageId>,
}

impl Pass {
    fn visit(&mut self, keyring: &Keyring, key: &[u8], value: &[u8]) {
        match keys::parse(key) {
            // Not scanned (see the module doc).
            Some(
                Key::Body(..)
                | Key::Log { .. }
                | Key::LegacyLog { .. }
                | Key::Idempotency { .. }
                | Key::IdempotencyExpiry { .. }
                | Key::Webhook(_)
                | Key::WebhookDue { .. }
                | Key::Dmarc { .. },
            ) => {}
            // A held message is where an operator put it: not due, not repaired.
            Some(Key::Due { id, .. } | Key::Held(id)) => self.scheduled.push((key.to_vec(), id)),
            Some(Key::Lease { id, .. }) => self.leased.push((key.to_vec(), id)),
            Some(Key::Envelope(id)) => {
                self.enveloped.insert(id);
                self.envelope(keyring, key, value, id);
            }
            Some(Key::Quarantine(_) | Key::Meta(_)) => {}
            None => {
                tracing::warn!(record = %keys::describe(key), "quarantining unknown record");
                self.to_quarantine.push(key.to_vec());
            }
        }
    }

    fn envelope(&mut self, keyring: &Keyring, key: &[u8], value: &[u8], id: MessageId) {
        match record::open_envelope(keyring, key, value) {
            Ok(_) => {
                self.valid.insert(id);
            }
            Err(Error::Shredded { .. }) => {
                self.erased.push(key.to_vec());
                self.bodies_erased.push(id);
            }
            Err(e) => {
                tracing::warn!(record = %keys::describe(key), reason = %e, "quarantining message");
                self.to_quarantine.push(key.to_vec());
                self.bodies_to_quarantine.push(id);
            }
        }
    }
}

/// Runs the check and applies the repairs. Returns the report and whether anything
/// was changed. The caller must keep writers out for the duration.
pub(crate) fn run(
    db: &sled::Db,
    keyring: &Keyring,
    now_ms: u64,
    progress: &Progress,
    unfinished: &[MessageId],
) -> Result<(RecoveryReport, bool), Error> {
    let mut pass = Pass::default();
    // Everything but bodies and the delivery log, in key order.
    let before_bodies = db.range(..[keys::BODY].as_slice());
    let between = db.range([keys::BODY + 1].as_slice()..[keys::LOG].as_slice());
    let after_log = db.range([keys::LOG + 1].as_slice()..);
    for item in before_bodies.chain(between).chain(after_log) {
        let (key, value) = item?;
        progress.tick();
        pass.visit(keyring, &key, &value);
    }
    // The bodies of quarantined and erased envelopes: only their own records are
    // read, to learn their keys.
    for id in std::mem::take(&mut pass.bodies_to_quarantine) {
        pass.to_quarantine.extend(body::existing_keys(db, &id)?);
    }
    for id in std::mem::take(&mut pass.bodies_erased) {
        pass.erased.extend(body::existing_keys(db, &id)?);
    }
    // A message spooled from its parts has its chunks written before its envelope
    // (`Spool::enqueue_from_parts`): chunks of one that got no envelope are gone
    // with its parts (the caller deletes the parts' files).
    for id in unfinished.iter().filter(|id| !pass.enveloped.contains(*id)) {
        pass.unfinished.extend(body::existing_keys(db, id)?);
    }
    let mut report = RecoveryReport {
        messages: pass.valid.len(),
        ..RecoveryReport::default()
    };
    let mut batch = sled::Batch::default();
    for key in &pass.erased {
        batch.remove(key.as_slice());
        report.erased_removed += 1;
    }
    for key in &pass.unfinished {
        batch.remove(key.as_slice());
        report.unfinished_removed += 1;
    }
    for key in &pass.to_quarantine {
        if let Some(value) = db.get(key)? {
            batch.remove(key.as_slice());
            batch.insert(keys::quarantine(key), value);
            report.quarantined += 1;
        }
    }
    let mut has_schedule = HashSet::new();
    for (key, id) in &pass.scheduled {
        if pass.valid.contains(id) {
            has_schedule.insert(*id);
        } else {
            batch.remove(key.as_slice());
            report.orphans_removed += 1;
        }
    }
    for (key, id) in &pass.leased {
        batch.remove(key.as_slice());
        if !pass.valid.contains(id) {
            report.orphans_removed += 1;
            continue;
        }
        // A message both leased and scheduled (should not happen) keeps one entry.
        if has_schedule.insert(*id) {
            batch.insert(&keys::due(now_ms, id)[..], &[][..]);
        }
        report.leases_released += 1;
    }
    for id in pass.valid.iter().filter(|id| !has_schedule.contains(*id)) {
        batch.insert(&keys::due(now_ms, id)[..], &[][..]);
        report.schedule_repaired += 1;
    }
    let changed = report.quarantined
        + report.erased_removed
        + report.unfinished_removed
        + report.orphans_removed
        + report.schedule_repaired
        + report.leases_released
        > 0;
    if changed {
        db.apply_batch(batch)?;
        tracing::warn!(?report, "spool recovery repaired the spool");
    }
    Ok((report, changed))
}
