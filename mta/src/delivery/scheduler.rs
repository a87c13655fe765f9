//! The scheduler thread: leases due messages, fans them out to the cores by next-hop
//! domain, gathers the per-recipient results and completes each message once all of
//! its jobs have answered. It never blocks a core and never waits for a flush: a
//! completion lost in a crash leaves the lease, which goes back to the schedule at
//! the next start (at-least-once, never lost). Mail of a suspended or terminated
//! tenant is put back unsent (`hold.rs`). Bodies of messages out are held in
//! memory, so it leases in small rounds and only while their bytes are under
//! `[spool] memory_budget` (`budget.rs`): a large backlog, all due at once after a
//! restart, is worked through a budget's worth at a time. Fresh small messages
//! arrive in memory from the sessions that spooled them, already leased and
//! counted in the budget (`handoff.rs`).

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use tokio::sync::mpsc::UnboundedSender;
use way2mail_queue::{DeliveryOutcome, DeliveryRecord, Spool};
use way2mail_smtp::{Envelope, MessageId, RecipientState};

use super::attempt::{Attempt, RecipientAttempt};
use super::budget::Budget;
use super::handoff::{Doorbell, Fresh, Handoff};
use super::hold::Hold;
use super::log::{Outcome, OutcomeLog};
use super::{bounce, delay, domain_of, retry, Job, JobBody, JobResult};
use crate::config::delivery::DeliveryConfig;
use crate::tenants::Tenants;
use way2mail_daemon::time::now_ms;

/// Longest sleep between looks at the schedule.
const POLL: Duration = Duration::from_millis(50);

pub struct Scheduler {
    pub spool: Spool,
    pub config: DeliveryConfig,
    pub hostname: String,
    pub cores: Vec<UnboundedSender<Job>>,
    pub results: Receiver<JobResult>,
    /// The outcome log lines and the delivery log file (`log.rs`).
    pub log: OutcomeLog,
    pub stop: Arc<AtomicBool>,
    /// Whose mail is held (suspended and terminated tenants); `None` without control.
    pub tenants: Option<Arc<Tenants>>,
    /// Messages out for delivery now, for the queue gauge.
    pub active: Arc<AtomicUsize>,
    /// `[spool] memory_budget`: body bytes of the messages out, at most (plus one
    /// message, when a single one is larger); shared with the sessions' hand-offs.
    pub budget: Arc<Budget>,
    /// Fresh messages handed over by the sessions that spooled them, and what
    /// wakes the scheduler for them when it has nothing out.
    pub handoff: Arc<Handoff>,
    pub doorbell: Doorbell,
    /// Classifies failures (`[bounces]`).
    pub bounces: Arc<crate::bounces::Rules>,
    /// `[bounces] domain`: tenant mail leaves with a VERP return path there, one
    /// recipient per transaction.
    pub verp: Option<String>,
}

/// A leased message whose jobs are out.
struct InFlight {
    envelope: Envelope,
    body: JobBody,
    /// A job could not read the body.
    unreadable: bool,
    /// What it counts against the budget (the length its lease gave).
    body_len: u64,
    remaining: usize,
    results: Vec<RecipientAttempt>,
}

impl Scheduler {
    pub fn run(self) {
        let mut out = Out {
            inflight: HashMap::new(),
        };
        let mut rng = Rng::seeded();
        let mut hold = Hold::default();
        while !self.stop.load(Ordering::Acquire) {
            // A full round means more may be due right away.
            let full = self.lease(&mut out, &mut hold, &mut rng);
            let waiting = self.handoff.set_idle(out.inflight.is_empty());
            let wait = if full || waiting {
                Duration::ZERO
            } else {
                POLL
            };
            crossbeam_channel::select! {
                recv(self.results) -> result => match result {
                    Ok(result) => self.collect(&mut out, result, &mut rng),
                    Err(_) => break,
                },
                recv(self.doorbell) -> _ => {},
                default(wait) => {}
            }
            self.adopt(&mut out, &mut hold, self.handoff.take_all(), &mut rng);
            while let Ok(result) = self.results.try_recv() {
                self.collect(&mut out, result, &mut rng);
            }
            self.active.store(out.inflight.len(), Ordering::Relaxed);
            crate::metrics::delivery_inflight_bytes(self.budget.bytes());
        }
        self.handoff.close();
        tracing::debug!(
            in_flight = out.inflight.len(),
            "scheduler stopped; leases return at next start"
        );
    }

    /// Leases as many due messages as the budget has room for and sends their jobs
    /// out (or puts held ones back); returns whether it leased a full round.
    fn lease(&self, out: &mut Out, hold: &mut Hold, rng: &mut Rng) -> bool {
        let lease_ms = self.config.lease_secs * 1000;
        // Claiming the room shuts the sessions' hand-offs out until the round is
        // over: only when something is due.
        match self.spool.next_due() {
            Ok(Some(due)) if due <= now_ms() => {}
            Ok(_) => return false,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the schedule");
                return false;
            }
        }
        let room = self.budget.claim();
        if room.count == 0 {
            return false;
        }
        let leased = match self.spool.take_due_within(
            now_ms(),
            room.count,
            room.bytes,
            lease_ms,
            super::body_cost,
        ) {
            Ok(leased) => leased,
            Err(e) => {
                self.budget.settle(room, 0, 0);
                tracing::error!(error = %e, "cannot read the schedule");
                return false;
            }
        };
        let full = leased.len() == room.count;
        // What the round holds once its messages are out; the rest of the room
        // is given back at the end.
        let (mut held_bytes, mut held_count) = (0u64, 0usize);
        let directory = self.tenants.as_ref().and_then(|t| t.directory());
        let now = Instant::now();
        for l in leased {
            let tenant = l.envelope.origin.tenant.as_deref();
            if let Some(held) = hold.check(directory.as_deref(), tenant, now) {
                self.put_back(l.id, l.envelope, &held);
                continue;
            }
            let body = if l.body_len > super::WHOLE_BODY_MAX {
                JobBody::Spooled {
                    spool: self.spool.clone(),
                    body_len: l.body_len,
                    shape: l.shape,
                }
            } else {
                match self.spool.read_whole_body(&l.id, l.body_len) {
                    Ok(body) => JobBody::Whole(Arc::new(body)),
                    Err(e @ way2mail_queue::Error::Corrupt { .. }) => {
                        self.quarantine(l.id, &e);
                        continue;
                    }
                    Err(e) => {
                        // The disk, not the record: the lease expires and the message
                        // is tried again.
                        tracing::error!(id = %l.id, error = %e, "cannot read the message body; left leased");
                        continue;
                    }
                }
            };
            // Counted from here until `collect` completes it; held and unreadable
            // messages above never were.
            if self.dispatch(out, l.id, l.envelope, body, l.body_len, rng) {
                held_bytes += super::body_cost(l.body_len);
                held_count += 1;
            }
        }
        self.budget.settle(room, held_bytes, held_count);
        full
    }

    /// Fresh messages handed over by their sessions: leased by their enqueue, their
    /// bodies in memory and counted in the budget, so they go straight out (or back
    /// on the schedule, for a held tenant).
    fn adopt(&self, out: &mut Out, hold: &mut Hold, handed: Vec<Fresh>, rng: &mut Rng) {
        if handed.is_empty() {
            return;
        }
        let directory = self.tenants.as_ref().and_then(|t| t.directory());
        let now = Instant::now();
        for fresh in handed {
            let cost = super::body_cost(fresh.body.len() as u64);
            let tenant = fresh.envelope.origin.tenant.as_deref();
            if let Some(held) = hold.check(directory.as_deref(), tenant, now) {
                self.budget.release(cost);
                self.put_back(fresh.id, fresh.envelope, &held);
                continue;
            }
            let body_len = fresh.body.len() as u64;
            let body = JobBody::Whole(fresh.body);
            if !self.dispatch(out, fresh.id, fresh.envelope, body, body_len, rng) {
                self.budget.release(cost);
            }
        }
    }

    /// Sends a leased message's jobs to the cores and keeps it in flight until
    /// they answer. `false` when it had nothing to deliver and was completed at
    /// once (it then holds nothing of the budget).
    fn dispatch(
        &self,
        out: &mut Out,
        id: MessageId,
        envelope: Envelope,
        body: JobBody,
        body_len: u64,
        rng: &mut Rng,
    ) -> bool {
        let jobs = self.split(id, &envelope, &body);
        if jobs.is_empty() {
            // Nothing pending (should not happen): finish it now, since no result
            // will ever come back for it.
            self.complete(id, InFlight::new(envelope, body, body_len, 0), rng);
            return false;
        }
        let message = InFlight::new(envelope, body, body_len, jobs.len());
        out.inflight.insert(id, message);
        for job in jobs {
            let core = shard(&job.domain, self.cores.len());
            if let Err(e) = self.cores[core].send(job) {
                tracing::error!(core, "delivery worker gone");
                let _ = e;
            }
        }
        true
    }

    /// Ends the lease of a held message without an attempt: same envelope, due again
    /// `hold_recheck_secs` later, no log record, no bounce.
    fn put_back(&self, id: MessageId, mut envelope: Envelope, held: &super::hold::Held) {
        let due = now_ms() + self.config.hold_recheck_secs.saturating_mul(1000);
        envelope.next_attempt_ms = Some(due);
        if held.log {
            tracing::info!(
                tenant = %held.tenant,
                reason = held.reason,
                recheck_secs = self.config.hold_recheck_secs,
                "delivery held: the tenant's account is not active or its sending is paused; its mail stays queued"
            );
        }
        if let Err(e) = self
            .spool
            .complete(id, &envelope, Some(due), None, Vec::new())
        {
            tracing::error!(%id, error = %e, "putting a held message back on the schedule");
        }
    }

    /// Takes a message whose body cannot be read out of the queue, into quarantine,
    /// where an operator finds its records as they were.
    fn quarantine(&self, id: MessageId, error: &way2mail_queue::Error) {
        tracing::error!(%id, %error, "message body unreadable");
        if let Err(e) = self.spool.quarantine(&id) {
            tracing::error!(%id, error = %e, "cannot quarantine the message; left leased");
        }
    }

    /// One job per next-hop domain among the pending recipients; with `[bounces]
    /// domain`, one per recipient of a tenant message (not a bounce of ours: its
    /// null sender stays null), each with its own VERP return path, so that a
    /// bounce names the message and the recipient (`way2mail_mta::feedback::verp`).
    fn split(&self, id: MessageId, envelope: &Envelope, body: &JobBody) -> Vec<Job> {
        let shared = Arc::new(envelope.clone());
        if let Some(jobs) = self.verp_jobs(id, &shared, body) {
            return jobs;
        }
        let mut by_domain: Vec<(String, Vec<usize>)> = Vec::new();
        for (index, r) in envelope.recipients.iter().enumerate() {
            if r.state != RecipientState::Pending {
                continue;
            }
            // `postmaster` without a domain is ours: route it like our host name.
            let domain = domain_of(&r.address).unwrap_or_else(|| self.hostname.clone());
            match by_domain.iter_mut().find(|(d, _)| *d == domain) {
                Some((_, list)) => list.push(index),
                None => by_domain.push((domain, vec![index])),
            }
        }
        by_domain
            .into_iter()
            .map(|(domain, recipients)| Job {
                id,
                envelope: Arc::clone(&shared),
                body: body.clone(),
                domain,
                recipients,
                return_path: None,
            })
            .collect()
    }

    /// The jobs of a tenant message under `[bounces] domain`; `None` when VERP
    /// does not apply (off, no tenant, null sender, no key to sign with).
    fn verp_jobs(
        &self,
        id: MessageId,
        envelope: &Arc<Envelope>,
        body: &JobBody,
    ) -> Option<Vec<Job>> {
        let domain = self.verp.as_deref()?;
        let tenant = envelope.origin.tenant.as_deref()?;
        if envelope.sender.is_empty() {
            return None;
        }
        let key = self.spool.keyring().existing(tenant)?;
        let jobs = envelope
            .recipients
            .iter()
            .enumerate()
            .filter(|(_, r)| r.state == RecipientState::Pending)
            .map(|(index, r)| Job {
                id,
                envelope: Arc::clone(envelope),
                body: body.clone(),
                domain: domain_of(&r.address).unwrap_or_else(|| self.hostname.clone()),
                recipients: vec![index],
                return_path: Some(way2mail_mta::feedback::verp::return_path(
                    &key, &id, &r.address, domain,
                )),
            })
            .collect();
        Some(jobs)
    }

    fn collect(&self, out: &mut Out, result: JobResult, rng: &mut Rng) {
        let Some(entry) = out.inflight.get_mut(&result.id) else {
            return;
        };
        entry.results.extend(result.recipients);
        entry.unreadable |= result.body_unreadable;
        entry.remaining = entry.remaining.saturating_sub(1);
        if entry.remaining == 0 {
            if let Some(done) = out.inflight.remove(&result.id) {
                self.budget.release(super::body_cost(done.body_len));
                if done.unreadable {
                    // What its other jobs did is lost with the attempt: a body
                    // that cannot be read is not sent again.
                    let e = way2mail_queue::Error::Corrupt {
                        key: format!("body {}", result.id),
                        reason: "unreadable while streaming it to a next hop".into(),
                    };
                    self.quarantine(result.id, &e);
                } else {
                    self.complete(result.id, done, rng);
                }
            }
        }
    }

    /// Applies the attempt's outcomes and writes the message back in one batch.
    fn complete(&self, id: MessageId, done: InFlight, rng: &mut Rng) {
        let now = now_ms();
        let mut envelope = done.envelope;
        envelope.attempts += 1;
        let queue_time_ms = now.saturating_sub(envelope.received_at_ms);
        let (attempts, tenant) = (envelope.attempts, envelope.origin.tenant.clone());
        let (tags, metadata) = (envelope.tags.clone(), envelope.metadata.clone());
        let scan = envelope.scan.clone();
        // The delivery log's record of each recipient, with what its log line adds.
        let bounces = &self.bounces;
        let outcome = |address: &str, o: &RecipientAttempt, text: String| Outcome {
            record: DeliveryRecord {
                tags: tags.clone(),
                metadata: metadata.clone(),
                scan: scan.clone(),
                // Every failure, temporary or not, gets its kind.
                category: (!matches!(o.attempt, Attempt::Delivered { .. }))
                    .then(|| bounces.classify(Some(&text)).name().to_string()),
                ..record(id, address, o, text, attempts, now, queue_time_ms)
            },
            tenant: tenant.clone(),
            code: o.attempt.reply_code(),
            enhanced: o.attempt.enhanced_code(),
        };
        let mut outcomes = Vec::new();
        let mut reported: Vec<RecipientAttempt> = Vec::new();
        for o in &done.results {
            let Some(r) = envelope.recipients.get_mut(o.index) else {
                continue;
            };
            r.attempts += 1;
            let text = o.attempt.to_string();
            match &o.attempt {
                Attempt::Delivered { .. } => {
                    r.state = RecipientState::Delivered;
                    r.last_error = None;
                }
                Attempt::Failed(_) => {
                    r.state = RecipientState::Failed;
                    r.last_error = Some(text.clone());
                }
                Attempt::Deferred(_) => r.last_error = Some(text.clone()),
            }
            // A final outcome goes into the sender's notice when its NOTIFY asks
            // for it; but a success passed to a next hop that supports DSN is that
            // hop's to report (RFC 3461 §5.2.1): it got our NOTIFY and ORCPT, so a
            // notice from us would be a duplicate.
            if !o.attempt.is_deferred() && !o.attempt.passed_on_with_dsn() {
                reported.push(o.clone());
            }
            outcomes.push(outcome(&r.address, o, text));
        }
        let pending = envelope
            .recipients
            .iter()
            .any(|r| r.state == RecipientState::Pending);
        if pending && retry::expired(&self.config, envelope.received_at_ms, now) {
            for (index, r) in envelope.recipients.iter_mut().enumerate() {
                if r.state == RecipientState::Pending {
                    r.state = RecipientState::Failed;
                    let o = RecipientAttempt::expired(index, r.last_error.clone());
                    let text = o.attempt.to_string();
                    outcomes.push(outcome(&r.address, &o, text));
                    reported.push(o);
                }
            }
        }
        let still_pending = envelope
            .recipients
            .iter()
            .any(|r| r.state == RecipientState::Pending);
        let next_due = still_pending
            .then(|| now + retry::backoff_ms(&self.config, envelope.attempts, rng.next()));
        envelope.next_attempt_ms = next_due;
        let (notice, delayed) =
            self.notice(id, &mut envelope, &done.body, &done.results, &reported, now);
        let delay_notice = notice
            .as_ref()
            .filter(|_| delayed > 0)
            .map(|(notice_id, _, _)| *notice_id);
        let mut records = Vec::with_capacity(outcomes.len());
        for outcome in outcomes {
            let kind = &outcome.record.outcome;
            let final_after = (*kind != DeliveryOutcome::Deferred).then_some(queue_time_ms);
            crate::metrics::delivery(
                super::log::outcome_word(kind),
                outcome.record.category.as_deref(),
                final_after,
            );
            records.push(outcome.record.clone());
            self.log.send(outcome);
        }
        // Not waited for: a completion lost in a crash leaves its lease behind,
        // which recovery turns back into a due entry (a duplicate, never a loss).
        match self
            .spool
            .complete(id, &envelope, next_due, notice, records)
        {
            Ok(_) => {
                if let Some(notice_id) = delay_notice {
                    delay_notice_queued(id, notice_id, tenant.as_deref(), delayed);
                }
            }
            Err(e) => tracing::error!(%id, error = %e, "completing a delivery attempt"),
        }
    }

    /// The one DSN a completion queues (`Spool::complete` takes one): the bounce of
    /// `finals`, the delay notice `delay.rs` decides (marking the envelope), or both
    /// in one report. Also returns how many recipients it reports as delayed.
    fn notice(
        &self,
        id: MessageId,
        envelope: &mut Envelope,
        body: &JobBody,
        results: &[RecipientAttempt],
        finals: &[RecipientAttempt],
        now: u64,
    ) -> (Option<Queued>, usize) {
        let delayed = delay::decide(&self.config, envelope, results, now);
        let count = delayed.len();
        let mut recipients: Vec<_> = finals
            .iter()
            .map(|o| bounce::final_outcome(o, now))
            .collect();
        recipients.extend(delayed);
        if recipients.is_empty() || envelope.sender.is_empty() {
            return (None, count);
        }
        let read;
        let (original, size) = match body {
            JobBody::Whole(b) => (b.as_slice(), b.len()),
            JobBody::Spooled {
                spool, body_len, ..
            } => match bounce::original_from_spool(spool, &id, *body_len) {
                Ok(bytes) => {
                    read = bytes;
                    (
                        read.as_slice(),
                        usize::try_from(*body_len).unwrap_or(usize::MAX),
                    )
                }
                Err(e) => {
                    tracing::error!(%id, error = %e, "message body unreadable: no notice");
                    return (None, count);
                }
            },
        };
        let notice = bounce::notice(
            &self.hostname,
            id,
            envelope,
            original,
            size,
            recipients,
            now,
        );
        (notice, count)
    }
}

/// The messages out for delivery (their bodies' bytes are in the budget).
struct Out {
    inflight: HashMap<MessageId, InFlight>,
}

/// A notice ready for `Spool::complete`: its queue id, envelope and message.
type Queued = (MessageId, Envelope, Vec<u8>);

/// The INFO line and the counter of a delay notice handed to the spool with its
/// message's completion: queue ids and a count, never an address.
fn delay_notice_queued(id: MessageId, notice: MessageId, tenant: Option<&str>, delayed: usize) {
    crate::metrics::delay_notice();
    tracing::info!(
        target: "way2mail::delivery",
        %id,
        %notice,
        tenant,
        delayed,
        "delay notice queued"
    );
}

impl InFlight {
    fn new(envelope: Envelope, body: JobBody, body_len: u64, remaining: usize) -> InFlight {
        InFlight {
            envelope,
            body,
            unreadable: false,
            body_len,
            remaining,
            results: Vec::new(),
        }
    }
}

/// The delivery log's record of one recipient's attempt; `reply` is the attempt's
/// text, as `last_error` keeps it.
fn record(
    id: MessageId,
    recipient: &str,
    o: &RecipientAttempt,
    reply: String,
    attempt: u32,
    now: u64,
    queue_time_ms: u64,
) -> DeliveryRecord {
    let hop = o.hop.as_ref();
    DeliveryRecord {
        time_ms: now,
        outcome: o.attempt.log_outcome(),
        message_id: id.to_string(),
        recipient: recipient.to_string(),
        next_hop: hop.map(|h| h.host.clone()),
        ip: hop.map(|h| h.ip),
        tls: hop.and_then(|h| h.tls.clone()),
        reply: Some(reply),
        attempt,
        queue_time_ms,
        tags: Vec::new(),
        metadata: Default::default(),
        category: None,
        scan: None,
    }
}

/// The core that owns a destination: a stable hash, so a domain's connections and
/// shaping state always live on one core.
pub fn shard(domain: &str, cores: usize) -> usize {
    let mut h = DefaultHasher::new();
    domain.hash(&mut h);
    (h.finish() % cores.max(1) as u64) as usize
}

/// xorshift64*: jitter does not need a cryptographic generator.
pub struct Rng(u64);

impl Rng {
    pub fn seeded() -> Rng {
        let seed = now_ms() ^ u64::from(std::process::id()).rotate_left(32);
        Rng(seed | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}
