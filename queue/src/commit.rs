//! Group commit: the one place where queued messages become durable, and the only
//! writer of the spool besides recovery.
//!
//! Sessions seal their records and hand them, with a oneshot sender, to the flusher
//! thread; leases, completions and log purges travel the same way as [`Write`]s. The flusher blocks for the first message, drains every message already
//! pending, writes all of them in ONE sled batch, flushes once and answers them all.
//! Every answer comes from a flush that started after that message's batch was
//! applied. Messages arriving during a flush wait for the next one; under load one
//! batch and one flush serve many messages, so the batch size follows the load
//! without a tuning knob. Each batch that changes anything also advances the commit
//! count (`m commit_seq`); once a flush has made a count durable, the anchor's
//! thread (anchor.rs) may record it.
//!
//! Why the flusher, not the session, applies the batch: sled 0.34's `apply_batch`
//! takes its global write lock, and `flush` holds the read side of that lock until
//! the disk has answered. A session applying its own batch would stall its whole
//! core (every session on it) behind each flush; here the cores never wait on sled.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::anchor::AnchorWriter;
use crate::{keys, Error};

type Answer = Result<(), Error>;

/// One atomic change to the spool: an enqueue, a batch of leases, a completion or a
/// log purge. Its operations are applied in order, in one sled batch with every
/// other write of the same round.
#[derive(Default)]
pub(crate) struct Write {
    /// `Some(value)` inserts, `None` removes.
    ops: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    /// How the number of queued messages changes once this write is applied.
    queued_delta: isize,
}

impl Write {
    pub(crate) fn insert(&mut self, key: &[u8], value: Vec<u8>) {
        self.ops.push((key.to_vec(), Some(value)));
    }

    pub(crate) fn remove(&mut self, key: &[u8]) {
        self.ops.push((key.to_vec(), None));
    }

    /// Counts a message added (`+1`) or deleted (`-1`) by this write.
    pub(crate) fn count_messages(&mut self, delta: isize) {
        self.queued_delta += delta;
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// One write on its way to the flusher, and who to tell.
pub(crate) struct Pending {
    write: Write,
    waiter: oneshot::Sender<Answer>,
}

/// While unhealthy nobody enqueues, so nobody would trigger a flush: the flusher
/// wakes at this interval and, if the spool is unhealthy, retries a flush to find
/// out when the disk is back. An idle wake-up costs nothing measurable.
const RETRY_WHILE_UNHEALTHY: Duration = Duration::from_secs(1);

/// Whether the spool accepts writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    Ok,
    /// A write or flush failed; the reason is the storage error's text.
    Unhealthy(String),
}

/// Counters of the group committer since the spool was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CommitStats {
    /// Successful and failed sled flushes, including synchronous ones.
    pub flushes: u64,
    /// Writes answered by the flusher: enqueues, lease batches, completions, purges.
    pub commits: u64,
}

/// A message written to the spool but perhaps not yet on disk.
#[must_use = "a message is not durably queued until Durable::wait returns Ok"]
#[derive(Debug)]
pub struct Durable {
    rx: oneshot::Receiver<Answer>,
}

impl Durable {
    /// Resolves once a flush that started after the message's batch was applied has
    /// returned. `Ok` means the message is durably queued; only then answer `250`.
    pub async fn wait(self) -> Result<(), Error> {
        match self.rx.await {
            Ok(answer) => answer,
            Err(_) => Err(Error::Unhealthy(
                "the group committer stopped before the message was flushed".into(),
            )),
        }
    }

    /// [`Durable::wait`] for plain threads (the scheduler, tools). It parks the
    /// calling thread, so inside an async task prefer `wait().await`; unlike tokio's
    /// `blocking_recv` it never panics when called from a runtime thread.
    pub fn wait_blocking(self) -> Result<(), Error> {
        let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
        let mut cx = Context::from_waker(&waker);
        let mut wait = std::pin::pin!(self.wait());
        loop {
            match wait.as_mut().poll(&mut cx) {
                Poll::Ready(answer) => return answer,
                // A spurious unpark only costs another poll.
                Poll::Pending => std::thread::park(),
            }
        }
    }
}

/// Wakes a thread parked in [`Durable::wait_blocking`].
struct Unpark(std::thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

#[derive(Default)]
struct HealthState {
    /// Bumped by every failure, so that a flush that started before a failure
    /// cannot declare the spool healthy again.
    generation: u64,
    reason: Option<String>,
    /// The last failure was the filesystem running out of space.
    no_space: bool,
}

/// State shared by the spool handles and the flusher thread.
#[derive(Default)]
pub(crate) struct Shared {
    /// The flusher writes under the shared side, recovery under the exclusive side:
    /// recovery's pass must not see half of a message.
    pub(crate) writers: RwLock<()>,
    /// Number of queued messages.
    pub(crate) queued: AtomicUsize,
    /// The spool directory, for `syncfs` after each sled flush; `None` only in
    /// unit tests of this module.
    spool_dir: Option<std::fs::File>,
    health: Mutex<HealthState>,
    /// Fast path for the check on every enqueue.
    unhealthy: AtomicBool,
    flushes: AtomicU64,
    commits: AtomicU64,
    /// The last batch applied (`m commit_seq`); only the flusher advances it.
    commit_seq: AtomicU64,
    /// `None` only in unit tests of this module.
    anchor: Option<AnchorWriter>,
}

impl Shared {
    /// For the spool whose directory is `spool_dir`, at `commit_seq` committed
    /// batches, its anchor kept by `anchor`.
    pub(crate) fn new(spool_dir: std::fs::File, commit_seq: u64, anchor: AnchorWriter) -> Shared {
        Shared {
            spool_dir: Some(spool_dir),
            commit_seq: AtomicU64::new(commit_seq),
            anchor: Some(anchor),
            ..Shared::default()
        }
    }

    /// After a flush that started once every batch up to `seq` was applied: `seq`
    /// is durable, and the anchor may record it.
    fn durable(&self, seq: u64) {
        if let Some(anchor) = &self.anchor {
            anchor.durable(seq);
        }
    }

    /// Writes the anchor now if it is behind (shutdown, tools).
    pub(crate) fn write_anchor(&self) {
        if let Some(anchor) = &self.anchor {
            anchor.write_now();
        }
    }

    /// The last batch applied.
    pub(crate) fn commit_seq(&self) -> u64 {
        self.commit_seq.load(Ordering::Acquire)
    }

    /// sled 0.34 makes its log stable with `sync_file_range`, which persists neither
    /// the file's size nor the drive's write cache, and writes large items to blob
    /// files that it never syncs. One `syncfs` of the spool's filesystem after the
    /// flush covers all of it: the `250` then survives a power cut, not only a crash.
    fn sync_files(&self) -> std::io::Result<()> {
        match &self.spool_dir {
            Some(dir) => rustix::fs::syncfs(dir).map_err(std::io::Error::from),
            None => Ok(()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, HealthState> {
        // Nothing panics while holding this lock; if something did, the state is
        // still a valid pair of plain values.
        self.health.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn mark_unhealthy(&self, reason: String) {
        self.mark_failed(reason, false);
    }

    fn mark_failed(&self, reason: String, no_space: bool) {
        // Logged once per episode: the flusher's retries while unhealthy would
        // otherwise repeat it every second.
        if !self.unhealthy.load(Ordering::Acquire) {
            tracing::error!(
                %reason,
                "spool unhealthy, refusing new messages; an I/O error latched by the \
                 storage engine clears only when way2mail-mta restarts"
            );
        }
        let mut s = self.state();
        s.generation += 1;
        s.reason = Some(reason);
        s.no_space = no_space;
        self.unhealthy.store(true, Ordering::Release);
    }

    /// The error for a message refused or failed while unhealthy: `NoSpace` when
    /// the filesystem is full (the client hears `452 4.3.1`), else `Unhealthy`.
    pub(crate) fn refusal(&self) -> Error {
        let s = self.state();
        let reason = s.reason.clone().unwrap_or_else(|| "spool unhealthy".into());
        if s.no_space {
            Error::NoSpace(reason)
        } else {
            Error::Unhealthy(reason)
        }
    }

    pub(crate) fn health(&self) -> Health {
        if !self.unhealthy.load(Ordering::Acquire) {
            return Health::Ok;
        }
        match &self.state().reason {
            Some(r) => Health::Unhealthy(r.clone()),
            None => Health::Ok,
        }
    }

    pub(crate) fn stats(&self) -> CommitStats {
        CommitStats {
            flushes: self.flushes.load(Ordering::Relaxed),
            commits: self.commits.load(Ordering::Relaxed),
        }
    }

    /// Applies every write of a round as one atomic sled batch, which also advances
    /// the commit count when it changes anything.
    fn write(&self, db: &sled::Db, round: &mut [Pending]) -> Result<(), Failure> {
        if self.unhealthy.load(Ordering::Acquire) {
            return Err(Failure::Refused);
        }
        let mut batch = sled::Batch::default();
        let mut delta = 0isize;
        let mut changes = false;
        for p in round.iter_mut() {
            // A batch keeps the last operation per key, so order within and across
            // writes is preserved.
            for (key, value) in p.write.ops.drain(..) {
                changes = true;
                match value {
                    Some(value) => batch.insert(key, value),
                    None => batch.remove(key),
                }
            }
            delta += p.write.queued_delta;
        }
        let seq = self.commit_seq() + u64::from(changes);
        if changes {
            batch.insert(keys::COMMIT_SEQ, &seq.to_be_bytes());
        }
        let _writing = self.writers.read().unwrap_or_else(PoisonError::into_inner);
        match db.apply_batch(batch) {
            Ok(()) => {
                self.commit_seq.store(seq, Ordering::Release);
                self.adjust_queued(delta);
                Ok(())
            }
            Err(e) => Err(self.failed(Failure::Write(e))),
        }
    }

    /// Latches a write or flush failure: the spool is unhealthy from here on, until
    /// a later flush succeeds.
    fn failed(&self, failure: Failure) -> Failure {
        self.mark_failed(failure.to_string(), failure.is_no_space());
        failure
    }

    fn adjust_queued(&self, delta: isize) {
        // Saturating: a counter that drifted (a message deleted by hand, say) must
        // not wrap to a huge number; recovery resets it to the truth.
        let _ = self
            .queued
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_add_signed(delta))
            });
    }

    /// One sled flush with health bookkeeping; used by the flusher and by
    /// `Spool::flush`. The error is the reason the spool is now unhealthy.
    pub(crate) fn flush(&self, db: &sled::Db) -> Result<(), Failure> {
        let generation = self.state().generation;
        // Read before the flush: every batch up to here is covered by it.
        let seq = self.commit_seq();
        self.flushes.fetch_add(1, Ordering::Relaxed);
        let outcome = match db.flush() {
            Ok(_) => self.sync_files().map_err(Failure::Sync),
            Err(e) => Err(Failure::Flush(e)),
        };
        match outcome {
            Ok(()) => {
                self.durable(seq);
                let mut s = self.state();
                if s.generation == generation && s.reason.take().is_some() {
                    self.unhealthy.store(false, Ordering::Release);
                    tracing::info!("spool flush succeeded, healthy again");
                }
                Ok(())
            }
            Err(failure) => Err(self.failed(failure)),
        }
    }
}

/// Why a round of writes or a flush did not reach the disk. Its text is the reason
/// the spool gives while unhealthy (in logs, `Error::Unhealthy` and `NoSpace`).
#[derive(Debug, thiserror::Error)]
pub(crate) enum Failure {
    /// Not tried: the spool was already unhealthy.
    #[error("refused: the spool is unhealthy")]
    Refused,
    #[error("write failed: {0}")]
    Write(sled::Error),
    #[error("flush failed: {0}")]
    Flush(sled::Error),
    #[error("flush failed: syncing the spool files: {0}")]
    Sync(std::io::Error),
}

impl Failure {
    /// The filesystem is full: clients hear `452 4.3.1` rather than `421`.
    fn is_no_space(&self) -> bool {
        let full = |e: &std::io::Error| e.kind() == std::io::ErrorKind::StorageFull;
        match self {
            Failure::Refused => false,
            Failure::Write(sled::Error::Io(e)) | Failure::Flush(sled::Error::Io(e)) => full(e),
            Failure::Write(_) | Failure::Flush(_) => false,
            Failure::Sync(e) => full(e),
        }
    }
}

impl From<Failure> for Error {
    /// A failed flush as `Spool::flush` reports it: always `Unhealthy`, with the
    /// reason the spool now gives.
    fn from(failure: Failure) -> Error {
        Error::Unhealthy(failure.to_string())
    }
}

/// Owns the flusher thread; dropping it stops and joins the thread.
pub(crate) struct Committer {
    tx: Option<mpsc::Sender<Pending>>,
    thread: Option<JoinHandle<()>>,
}

impl Committer {
    pub(crate) fn start(db: sled::Db, shared: Arc<Shared>) -> Result<Committer, Error> {
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("spool-flusher".into())
            .spawn(move || run(&db, &shared, &rx))?;
        Ok(Committer {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Hands a write (sealed records, removals) to the flusher.
    pub(crate) fn submit(&self, write: Write) -> Durable {
        let (waiter, rx) = oneshot::channel();
        if let Some(tx) = &self.tx {
            // A send error means the flusher is gone; the dropped waiter then makes
            // `Durable::wait` fail, which is the right answer.
            let _ = tx.send(Pending { write, waiter });
        }
        Durable { rx }
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        // Closing the channel ends the flusher loop; joining it makes sure its handle
        // on the database is gone before the caller's, so the sled lock is released
        // when the last `Spool` is dropped.
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The longest a first waiter is held back to gather others into its flush.
const MAX_GATHER: Duration = Duration::from_millis(1);

fn run(db: &sled::Db, shared: &Shared, rx: &mpsc::Receiver<Pending>) {
    let mut round: Vec<Pending> = Vec::new();
    // Under load a flush's fixed cost (thread hand-offs, the write, the sync) is paid
    // per round, and on a small machine it competes with the sessions for CPU. So
    // when the last round served several messages, wait up to as long as its flush
    // took (capped) for more to arrive; an idle spool (one message) is never held.
    let mut gather = Duration::ZERO;
    loop {
        match rx.recv_timeout(RETRY_WHILE_UNHEALTHY) {
            Ok(p) => round.push(p),
            Err(RecvTimeoutError::Timeout) => {
                if shared.unhealthy.load(Ordering::Acquire) {
                    let _ = shared.flush(db);
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        }
        gather_more(rx, &mut round, gather);
        let started = Instant::now();
        let result = shared.write(db, &mut round).and_then(|()| shared.flush(db));
        metrics::histogram!(crate::metrics::COMMIT_SECONDS).record(started.elapsed().as_secs_f64());
        metrics::histogram!(crate::metrics::BATCH_SIZE).record(round.len() as f64);
        gather = if round.len() > 1 {
            started.elapsed().min(MAX_GATHER)
        } else {
            Duration::ZERO
        };
        shared
            .commits
            .fetch_add(round.len() as u64, Ordering::Relaxed);
        for p in round.drain(..) {
            let answer = match &result {
                Ok(()) => Ok(()),
                Err(_) => Err(shared.refusal()),
            };
            // The session may have given up (client gone); nothing to tell it then.
            let _ = p.waiter.send(answer);
        }
    }
    tracing::debug!("spool flusher stopped");
}

/// The most record changes one round gathers (a write is never split, so a round
/// may end a little over it). sled copies the tree node a change lands in, and the
/// copies of one round are garbage only once the round is applied: this bounds
/// what a round of large changes (the 2,900 chunk deletions that complete a 20 MB
/// message, say) holds at once, as `ingest_budget` does for large writes.
const ROUND_OPS: usize = 1024;

/// Takes every message already pending, and keeps taking arrivals until `window`
/// has passed since this call, or the round holds [`ROUND_OPS`] changes.
fn gather_more(rx: &mpsc::Receiver<Pending>, batch: &mut Vec<Pending>, window: Duration) {
    let mut ops: usize = batch.iter().map(|p| p.write.ops.len()).sum();
    let deadline = Instant::now() + window;
    while ops < ROUND_OPS {
        let next = match rx.try_recv() {
            Ok(p) => p,
            Err(_) => match deadline.checked_duration_since(Instant::now()) {
                Some(left) => match rx.recv_timeout(left) {
                    Ok(p) => p,
                    Err(_) => return,
                },
                None => return,
            },
        };
        ops += next.write.ops.len();
        batch.push(next);
    }
}

#[cfg(test)]
mod tests {
    use std::io;

    use super::*;

    fn pending(ops: usize) -> Pending {
        let mut write = Write::default();
        for i in 0..ops {
            write.remove(&i.to_be_bytes());
        }
        Pending {
            write,
            waiter: oneshot::channel().0,
        }
    }

    #[test]
    fn a_round_stops_gathering_past_its_share_of_changes() {
        let (tx, rx) = mpsc::channel();
        for _ in 0..3 {
            tx.send(pending(ROUND_OPS / 2 + 10)).expect("send");
        }
        tx.send(pending(1)).expect("send");
        let mut round = Vec::new();
        gather_more(&rx, &mut round, Duration::ZERO);
        // The second write takes the round past its share: it ends there, whole.
        assert_eq!(round.len(), 2);
        round.clear();
        gather_more(&rx, &mut round, Duration::ZERO);
        assert_eq!(round.len(), 2, "the rest waits for the next round");
        // A round that holds its share already (one large write) takes no more.
        tx.send(pending(1)).expect("send");
        let mut round = vec![pending(ROUND_OPS)];
        gather_more(&rx, &mut round, Duration::from_millis(1));
        assert_eq!(round.len(), 1);
        drop(rx.try_recv().expect("left for the next round"));
        // Small writes are all taken together, as before.
        for _ in 0..50 {
            tx.send(pending(4)).expect("send");
        }
        round.clear();
        gather_more(&rx, &mut round, Duration::from_millis(1));
        assert_eq!(round.len(), 50);
    }

    #[test]
    fn failures_keep_their_reasons_and_tell_a_full_disk() {
        let full = || io::Error::from(io::ErrorKind::StorageFull);
        let cases = [
            (
                Failure::Sync(full()),
                "flush failed: syncing the spool files: ",
                true,
            ),
            (
                Failure::Flush(sled::Error::Io(full())),
                "flush failed: ",
                true,
            ),
            (
                Failure::Write(sled::Error::Io(full())),
                "write failed: ",
                true,
            ),
            (
                Failure::Write(sled::Error::Unsupported("x".into())),
                "write failed: ",
                false,
            ),
            (
                Failure::Sync(io::Error::other("gone")),
                "flush failed: ",
                false,
            ),
        ];
        for (failure, prefix, no_space) in cases {
            assert!(failure.to_string().starts_with(prefix), "{failure}");
            assert_eq!(failure.is_no_space(), no_space, "{failure}");
        }
        // A failure latched by the flusher is what new messages are refused with.
        let shared = Shared::default();
        let reason = shared.failed(Failure::Sync(full())).to_string();
        assert!(matches!(shared.refusal(), Error::NoSpace(r) if r == reason));
        let reason = shared
            .failed(Failure::Sync(io::Error::other("gone")))
            .to_string();
        assert!(matches!(shared.refusal(), Error::Unhealthy(r) if r == reason));
    }
}
