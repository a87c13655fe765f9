//! `way2mail-mta spool verify`: an offline check of the whole spool, run while the
//! daemon is stopped (it takes the spool's lock). Every record is opened with the
//! keyring and decoded; every message must have its body (of the length its
//! envelope says) and exactly one schedule entry or lease; every schedule entry and
//! lease must belong to a message; the commit count must be at or past the anchor.
//! Nothing is repaired and nothing is written, the anchor included: repairs are
//! recovery's, at the daemon's start, and a spool behind its anchor is the
//! operator's decision.
//!
//! Records of erased tenants are counted apart, not as problems: they are
//! unreadable by design and the daemon deletes them. Quarantined records (kept by
//! an earlier recovery) are counted, not opened. A spool from before data keys that
//! no daemon of this version has started yet is not migrated here: its records show
//! as sealed with a key the keyring lacks until the daemon has started once.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use way2mail_daemon::watchdog::Progress;
use way2mail_seal::Keyring;

use crate::anchor::{self, Divergence};
use crate::keys::{self, Key};
use crate::{record, Error, MessageId};

/// How many problem descriptions a report keeps (the counts are complete).
const MAX_EXAMPLES: usize = 20;

/// A kind of problem `verify` finds.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Problem {
    /// A record that does not open (changed or damaged) or does not decode.
    Corrupt,
    /// A record sealed with a data key this keyring does not hold.
    UnknownKey,
    /// A key this version never writes.
    UnknownRecord,
    /// A message whose body is missing.
    BodyMissing,
    /// A body without its envelope.
    EnvelopeMissing,
    /// A body of another length than its envelope says.
    LengthMismatch,
    /// A message neither scheduled nor leased: it would never be delivered.
    Unscheduled,
    /// A message scheduled or leased more than once.
    ScheduledTwice,
    /// A schedule entry or lease of a message that is not in the spool.
    OrphanSchedule,
    /// The commit count does not decode.
    CommitCount,
    /// The spool is not what its anchor recorded.
    Anchor,
}

impl Problem {
    pub fn describe(self) -> &'static str {
        match self {
            Problem::Corrupt => "records that do not open or decode",
            Problem::UnknownKey => "records sealed with a data key the keyring lacks",
            Problem::UnknownRecord => "records of an unknown kind",
            Problem::BodyMissing => "messages without their body",
            Problem::EnvelopeMissing => "bodies without their envelope",
            Problem::LengthMismatch => "bodies of another length than their envelope says",
            Problem::Unscheduled => "messages neither scheduled nor leased",
            Problem::ScheduledTwice => "messages scheduled or leased more than once",
            Problem::OrphanSchedule => "schedule entries and leases without a message",
            Problem::CommitCount => "commit count records that do not decode",
            Problem::Anchor => "divergence from the anchor",
        }
    }
}

/// What `verify` found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    pub path: PathBuf,
    /// The spool's commit count (`None`: never counted).
    pub commit_seq: Option<u64>,
    /// The commit count its anchor records (`None`: no anchor, or unreadable).
    pub anchor_seq: Option<u64>,
    /// How the spool differs from its anchor, if it does.
    pub divergence: Option<Divergence>,
    pub envelopes: u64,
    pub bodies: u64,
    pub scheduled: u64,
    pub leased: u64,
    pub log_records: u64,
    /// Idempotency records of API requests (and their expiry entries).
    pub idempotency: u64,
    /// Webhook outbox entries waiting to be posted.
    pub webhook_events: u64,
    /// DMARC aggregate reports received for tenant domains.
    pub dmarc_reports: u64,
    pub quarantined: u64,
    /// Records of erased tenants, awaiting removal by the daemon.
    pub erased: u64,
    pub metadata: u64,
    /// Problems found, by kind.
    pub problems: BTreeMap<Problem, u64>,
    /// The first problems, described (record and reason).
    pub examples: Vec<String>,
}

impl VerifyReport {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }

    pub fn problem_count(&self) -> u64 {
        self.problems.values().sum()
    }

    fn problem(&mut self, kind: Problem, what: String) {
        *self.problems.entry(kind).or_default() += 1;
        if self.examples.len() < MAX_EXAMPLES {
            self.examples.push(what);
        }
    }

    /// Counts a record that did not open.
    fn unreadable(&mut self, key: &[u8], error: &Error) {
        let kind = match error {
            Error::UnknownKey { .. } => Problem::UnknownKey,
            _ => Problem::Corrupt,
        };
        self.problem(kind, format!("{}: {error}", keys::describe(key)));
    }
}

/// What one pass learned about messages, to check them against each other.
#[derive(Default)]
struct Messages {
    /// Envelopes that opened, with the body length they name.
    envelopes: HashMap<MessageId, u64>,
    /// Bodies whose records opened, with what those records add up to.
    bodies: HashMap<MessageId, BodyParts>,
    /// Records present but unreadable or erased: no consistency claims about them.
    unreadable: HashSet<MessageId>,
    /// Schedule entries and leases per message.
    schedule: HashMap<MessageId, u32>,
}

/// The records of one body that opened.
#[derive(Default)]
struct BodyParts {
    /// Bytes of all of them.
    len: u64,
    /// Bytes of the first.
    first: u64,
    /// How many there are.
    chunks: u32,
    /// The highest chunk index among them.
    last: u32,
}

impl BodyParts {
    /// One record holding the whole body (as written before chunking), or every
    /// chunk a body of `body_len` bytes is written as, the first one full.
    fn laid_out_for(&self, body_len: u64) -> bool {
        let whole = self.chunks == 1 && self.last == 0;
        let count = keys::body_chunk_count(body_len);
        let chunked = self.chunks == count
            && self.last + 1 == count
            && self.first == body_len.min(keys::BODY_CHUNK as u64);
        whole || chunked
    }
}

/// Checks the stopped spool at `path` with `keyring` (see the module doc), ticking
/// `progress` per record. Fails only when the spool cannot be read at all (locked,
/// missing, unreadable files); problems with records are in the report.
pub fn verify(path: &Path, keyring: &Keyring, progress: &Progress) -> Result<VerifyReport, Error> {
    if !path.join("db").exists() {
        return Err(Error::Io(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{} holds no spool", path.display()),
        )));
    }
    let _lock = crate::spool::lock(path)?;
    let db = crate::spool::open_db(path, None)?;
    progress.tick();
    let mut report = VerifyReport {
        path: path.to_owned(),
        ..VerifyReport::default()
    };
    let mut messages = Messages::default();
    for item in db.iter() {
        let (key, value) = item?;
        progress.tick();
        visit(&mut report, &mut messages, keyring, &key, &value);
    }
    cross_check(&mut report, &messages);
    check_anchor(&mut report, &db, path);
    Ok(report)
}

fn visit(
    report: &mut VerifyReport,
    messages: &mut Messages,
    keyring: &Keyring,
    key: &[u8],
    value: &[u8],
) {
    match keys::parse(key) {
        Some(Key::Envelope(id)) => {
            report.envelopes += 1;
            match record::open_envelope(keyring, key, value) {
                Ok((_, body_len)) => {
                    messages.envelopes.insert(id, body_len);
                }
                Err(Error::Shredded { .. }) => {
                    report.erased += 1;
                    messages.unreadable.insert(id);
                }
                Err(e) => {
                    report.unreadable(key, &e);
                    messages.unreadable.insert(id);
                }
            }
        }
        Some(Key::Body(id, chunk)) => {
            if chunk == 0 {
                report.bodies += 1;
            }
            match record::open_body(keyring, key, value) {
                Ok(body) => {
                    let parts = messages.bodies.entry(id).or_default();
                    parts.len += body.len() as u64;
                    parts.chunks += 1;
                    parts.last = parts.last.max(chunk);
                    if chunk == 0 {
                        parts.first = body.len() as u64;
                    }
                }
                Err(Error::Shredded { .. }) => {
                    report.erased += 1;
                    messages.unreadable.insert(id);
                }
                Err(e) => {
                    report.unreadable(key, &e);
                    messages.unreadable.insert(id);
                }
            }
        }
        Some(Key::Due { id, .. } | Key::Held(id)) => {
            report.scheduled += 1;
            *messages.schedule.entry(id).or_default() += 1;
        }
        Some(Key::Lease { id, .. }) => {
            report.leased += 1;
            *messages.schedule.entry(id).or_default() += 1;
        }
        Some(Key::Log { .. } | Key::LegacyLog { .. }) => {
            report.log_records += 1;
            match record::open_log(keyring, key, value) {
                Ok(_) => {}
                Err(Error::Shredded { .. }) => report.erased += 1,
                Err(e) => report.unreadable(key, &e),
            }
        }
        Some(Key::Idempotency { .. }) => {
            report.idempotency += 1;
            match crate::idempotency::open(keyring, key, value) {
                Ok(_) => {}
                Err(Error::Shredded { .. }) => report.erased += 1,
                Err(e) => report.unreadable(key, &e),
            }
        }
        Some(Key::IdempotencyExpiry { .. }) => report.idempotency += 1,
        Some(Key::Webhook(_)) => {
            report.webhook_events += 1;
            match crate::webhook::open(keyring, key, value) {
                Ok(_) => {}
                Err(Error::Shredded { .. }) => report.erased += 1,
                Err(e) => report.unreadable(key, &e),
            }
        }
        Some(Key::WebhookDue { .. }) => {}
        Some(Key::Dmarc { .. }) => {
            report.dmarc_reports += 1;
            match crate::dmarc::open::<serde_json::Value>(keyring, key, value) {
                Ok(_) => {}
                Err(Error::Shredded { .. }) => report.erased += 1,
                Err(e) => report.unreadable(key, &e),
            }
        }
        Some(Key::Quarantine(_)) => report.quarantined += 1,
        Some(Key::Meta(_)) => report.metadata += 1,
        None => report.problem(Problem::UnknownRecord, keys::describe(key)),
    }
}

fn cross_check(report: &mut VerifyReport, m: &Messages) {
    for (id, &body_len) in &m.envelopes {
        match m.bodies.get(id) {
            Some(parts) if parts.len != body_len => report.problem(
                Problem::LengthMismatch,
                format!(
                    "message {id}: body of {} bytes, the envelope says {body_len}",
                    parts.len
                ),
            ),
            Some(parts) if !parts.laid_out_for(body_len) => report.problem(
                Problem::LengthMismatch,
                format!(
                    "message {id}: body in {} records up to chunk {}, not as a body of {body_len} bytes is written",
                    parts.chunks, parts.last
                ),
            ),
            Some(_) => {}
            None if m.unreadable.contains(id) => {}
            None => report.problem(Problem::BodyMissing, format!("message {id}: no body")),
        }
        match m.schedule.get(id).copied().unwrap_or(0) {
            0 => report.problem(
                Problem::Unscheduled,
                format!("message {id}: neither scheduled nor leased"),
            ),
            1 => {}
            n => report.problem(
                Problem::ScheduledTwice,
                format!("message {id}: {n} schedule entries and leases"),
            ),
        }
    }
    for id in m.bodies.keys() {
        if !m.envelopes.contains_key(id) && !m.unreadable.contains(id) {
            report.problem(Problem::EnvelopeMissing, format!("body {id}: no envelope"));
        }
    }
    for id in m.schedule.keys() {
        if !m.envelopes.contains_key(id) && !m.unreadable.contains(id) {
            report.problem(
                Problem::OrphanSchedule,
                format!("schedule or lease of {id}: no such message"),
            );
        }
    }
}

fn check_anchor(report: &mut VerifyReport, db: &sled::Db, path: &Path) {
    let store = match anchor::commit_seq(db) {
        Ok(seq) => seq,
        Err(e) => {
            report.problem(Problem::CommitCount, e.to_string());
            None
        }
    };
    report.commit_seq = store;
    let anchor = anchor::read(path);
    report.anchor_seq = anchor.as_ref().ok().and_then(|a| a.map(|a| a.commit_seq));
    if let Err(divergence) = anchor::judge(&anchor, store) {
        report.problem(Problem::Anchor, divergence.to_string());
        report.divergence = Some(divergence);
    }
}
