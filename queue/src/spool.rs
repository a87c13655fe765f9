//! The spool handle: opening (with an exclusive lock, checked against its anchor in
//! anchor.rs), the commit point `enqueue`, and the read side (`read`, `list`).
//! Delivery's side of the handle (leases, completion) is in lease.rs, the delivery
//! log in delivery_log.rs; keys are built in keys.rs and every write goes through
//! the flusher in commit.rs.

use std::collections::HashMap;
use std::fs::{DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rustix::fs::FlockOperation;
use way2mail_daemon::time::now_ms;

use crate::anchor::{self, AnchorCheck, AnchorWriter};
use crate::commit::{Committer, Shared, Write};
use crate::lease::Leases;
use crate::operate::Placement;
use crate::{
    keys, migrate, record, recovery, CommitStats, Durable, Envelope, Error, Health, MessageId,
    RecipientState, RecoveryReport, SideRecords,
};
use way2mail_daemon::watchdog::Progress;
use way2mail_seal::{DataKey, Keyring};

/// Name of the lock file inside the spool directory, held with `flock` while open.
pub(crate) const LOCK_FILE: &str = "way2mail.lock";
/// sled's page cache unless [`SpoolOptions::cache_bytes`] says otherwise. Bodies
/// are read back once for delivery, so a large cache buys little; this keeps the
/// schedule, envelopes and recent records hot. 128 MiB measured no faster at
/// ingest than 64 MiB (docs/benchmarks.md).
pub const DEFAULT_CACHE_BYTES: u64 = 64 << 20;

/// One queued message, as shown by `list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub id: MessageId,
    /// The tenant whose mail it is (whose data key seals it).
    pub tenant: Option<String>,
    pub sender: String,
    pub recipients: usize,
    /// Body size in bytes.
    pub size: u64,
    pub received_at_ms: u64,
    /// Each recipient's delivery state, in envelope order.
    pub recipient_states: Vec<RecipientSummary>,
    /// When the message is due next (its schedule entry), or, while it is being
    /// delivered, when its lease expires.
    pub next_attempt_ms: Option<u64>,
    /// The message is leased: a delivery attempt is under way (or was, when the
    /// process stopped; recovery puts it back on the schedule).
    pub leased: bool,
    /// Held by an operator since this time (Unix ms): off the schedule.
    pub held_since_ms: Option<u64>,
    /// Attempts of the message as a whole.
    pub attempts: u32,
}

/// One recipient of a listed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientSummary {
    pub address: String,
    pub state: RecipientState,
    pub attempts: u32,
    pub last_error: Option<String>,
}

/// How to open a spool.
#[derive(Debug, Clone, Default)]
pub struct SpoolOptions {
    /// Start on a spool that diverged from its anchor (the operator decided to keep
    /// it as it is); the anchor is rewritten. Without it such a spool is refused.
    pub accept_rollback: bool,
    /// Ticked for every record opening, recovery and the scans read, so that a
    /// watchdog can tell slow work from a hang.
    pub progress: Progress,
    /// sled's page cache in bytes; `None`: [`DEFAULT_CACHE_BYTES`].
    pub cache_bytes: Option<u64>,
}

/// A handle on the open spool; clones share one database and one flusher thread.
#[derive(Clone)]
pub struct Spool {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    // Declared first so that it is dropped first: the flusher thread is joined (and
    // its database handle released) before `db` and the lock file go.
    pub(crate) committer: Committer,
    pub(crate) db: sled::Db,
    pub(crate) keyring: Keyring,
    pub(crate) shared: Arc<Shared>,
    pub(crate) leases: Leases,
    /// Sequence numbers of delivery log keys: several records of one message in one
    /// millisecond still get distinct keys.
    pub(crate) log_seq: AtomicU32,
    /// What each tenant erasure of this process removed, by tenant; held for the whole
    /// of an erasure, so that two at once (the snapshot follower and the admin socket
    /// both acting on one erasure in control) run one after the other and both report
    /// what was removed (see `erase_tenant`). One entry per erased tenant.
    pub(crate) erased: Mutex<HashMap<String, (u64, u64)>>,
    pub(crate) progress: Progress,
    /// Which webhook endpoints take which events (`webhook.rs`); none until the
    /// daemon installs one.
    pub(crate) router: std::sync::RwLock<Option<Arc<dyn crate::EventRouter>>>,
    anchor_check: AnchorCheck,
    path: PathBuf,
    _lock: File,
}

pub(crate) fn lock(path: &Path) -> Result<File, Error> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path.join(LOCK_FILE))?;
    match rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(file),
        Err(rustix::io::Errno::WOULDBLOCK) => Err(Error::Locked {
            path: path.to_owned(),
        }),
        Err(e) => Err(Error::Io(e.into())),
    }
}

/// How long `open` keeps trying when sled's own lock is still held although ours
/// was free: sled's background writer threads keep its files (and lock) open for a
/// moment after the last handle of a previous open in this process is dropped.
const SLED_LOCK_GRACE: Duration = Duration::from_secs(3);

fn is_sled_lock_error(e: &sled::Error) -> bool {
    matches!(e, sled::Error::Io(io) if io.to_string().contains("could not acquire lock"))
}

pub(crate) fn open_db(path: &Path, cache_bytes: Option<u64>) -> Result<sled::Db, Error> {
    let config = sled::Config::new()
        .path(path)
        // The flusher thread owns durability; a background timer flush would only
        // add writes that nobody waits for.
        .flush_every_ms(None)
        .mode(sled::Mode::HighThroughput)
        .cache_capacity(cache_bytes.unwrap_or(DEFAULT_CACHE_BYTES));
    match open_sled(&config) {
        Ok(db) => Ok(db),
        // Still held: some process that got past our lock file (an older binary,
        // say) has the database open.
        Err(e) if is_sled_lock_error(&e) => Err(Error::Locked {
            path: path.to_owned(),
        }),
        Err(e) => Err(e.into()),
    }
}

/// Opens a sled database, waiting up to a few seconds while sled's own file lock is
/// still held by the background threads of a previous open in this process (they
/// keep it for a moment after the last handle is dropped). Any other error, or a
/// lock still held at the deadline, is returned as sled gave it.
pub fn open_sled(config: &sled::Config) -> Result<sled::Db, sled::Error> {
    let deadline = Instant::now() + SLED_LOCK_GRACE;
    loop {
        match config.open() {
            Err(e) if is_sled_lock_error(&e) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

impl Spool {
    /// Opens (creating if needed) the spool at `path`, sealing with the data keys of
    /// `keyring`, and starts its flusher thread. A spool that diverged from its
    /// anchor is refused ([`Error::RolledBack`]).
    pub fn open(path: &Path, keyring: Keyring) -> Result<Spool, Error> {
        Spool::open_with(path, keyring, &SpoolOptions::default())
    }

    /// [`Spool::open`] with options. sled may spin or panic on damaged files: a
    /// daemon runs this under a watchdog (`way2mail_daemon::watchdog`).
    pub fn open_with(
        path: &Path,
        keyring: Keyring,
        options: &SpoolOptions,
    ) -> Result<Spool, Error> {
        DirBuilder::new().recursive(true).mode(0o700).create(path)?;
        let lock_file = lock(path)?;
        let db = open_db(path, options.cache_bytes)?;
        options.progress.tick();
        let commit_seq = anchor::commit_seq(&db)?;
        let anchor_check = anchor::admit(path, commit_seq, options.accept_rollback)?;
        let commit_seq = commit_seq.unwrap_or(0);
        let queued = db
            .scan_prefix([keys::ENVELOPE])
            .inspect(|_| options.progress.tick())
            .count();
        let shared = Arc::new(Shared::new(
            std::fs::File::open(path)?,
            commit_seq,
            AnchorWriter::start(path.to_owned(), commit_seq)?,
        ));
        shared.queued.store(queued, Ordering::Relaxed);
        let committer = Committer::start(db.clone(), Arc::clone(&shared))?;
        Ok(Spool {
            inner: Arc::new(Inner {
                committer,
                db,
                keyring,
                shared,
                leases: Leases::default(),
                log_seq: AtomicU32::new(0),
                erased: Mutex::default(),
                progress: options.progress.clone(),
                router: std::sync::RwLock::new(None),
                anchor_check,
                path: path.to_owned(),
                _lock: lock_file,
            }),
        })
    }

    /// What opening found about the spool's anchor.
    pub fn anchor_check(&self) -> &AnchorCheck {
        &self.inner.anchor_check
    }

    /// Startup check; see `docs/spool-format.md` ("Recovery"). Records of the
    /// version before data keys are migrated first.
    pub fn recover(&self) -> Result<RecoveryReport, Error> {
        let inner = &*self.inner;
        let _exclusive = inner
            .shared
            .writers
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let migrated =
            migrate::run(&inner.db, &inner.keyring, &inner.progress).inspect_err(|e| {
                inner
                    .shared
                    .mark_unhealthy(format!("migration failed: {e}"))
            })?;
        let unfinished = self.unfinished()?;
        let (mut report, changed) = recovery::run(
            &inner.db,
            &inner.keyring,
            now_ms(),
            &inner.progress,
            &unfinished,
        )
        .inspect_err(|e| inner.shared.mark_unhealthy(format!("recovery failed: {e}")))?;
        report.migrated = migrated;
        let changed = changed || migrated > 0;
        inner
            .shared
            .queued
            .store(report.messages, Ordering::Relaxed);
        // Every lease went back to the schedule; none is held any more.
        inner.leases.clear();
        if changed {
            // Not `flush()`: its barrier write would wait for the flusher, which
            // waits for the writers' lock held here. Nothing is queued meanwhile.
            inner.shared.flush(&inner.db)?;
        }
        // Only now: the chunks written from them are gone for good.
        for id in &unfinished {
            self.drop_spill(id)?;
            report.unfinished_removed += 1;
        }
        Ok(report)
    }

    /// Writes a message, due now, and returns the handle to await its durability.
    /// The id must be fresh (from [`MessageId::generate`]). The body is sealed from
    /// where it lies, chunk by chunk, straight into its records.
    pub fn enqueue(
        &self,
        id: MessageId,
        envelope: &Envelope,
        body: impl AsRef<[u8]>,
    ) -> Result<Durable, Error> {
        self.enqueue_with(id, envelope, body.as_ref(), SideRecords::default())
    }

    /// [`enqueue`](Spool::enqueue), with `side` records (an API request's
    /// idempotency record) in the same batch: durable together or not at all.
    pub fn enqueue_with(
        &self,
        id: MessageId,
        envelope: &Envelope,
        body: &[u8],
        side: SideRecords,
    ) -> Result<Durable, Error> {
        self.refuse_if_unhealthy()?;
        let mut write = Write::default();
        self.seal_new_message(&mut write, id, envelope, body, None)?;
        side.add_to(&mut write);
        Ok(self.inner.committer.submit(write))
    }

    pub(crate) fn refuse_if_unhealthy(&self) -> Result<(), Error> {
        match self.inner.shared.health() {
            Health::Unhealthy(_) => Err(self.inner.shared.refusal()),
            Health::Ok => Ok(()),
        }
    }

    /// The data key sealing the records of mail of `tenant` (the node's own key for
    /// mail of no tenant); a tenant's first message makes its key.
    pub(crate) fn data_key(&self, tenant: Option<&str>) -> Result<Arc<DataKey>, Error> {
        match tenant {
            None => Ok(self.inner.keyring.system()),
            Some(t) => Ok(self.inner.keyring.tenant(t)?),
        }
    }

    /// The keyring whose data keys seal this spool's records.
    pub fn keyring(&self) -> &Keyring {
        &self.inner.keyring
    }

    /// Adds a new message to `write`: sealed envelope and body under the data key of
    /// the envelope's tenant, and either due now or, with `lease_expiry_ms`, leased
    /// until then (`Spool::enqueue_leased`). Returns the body's shape as recorded.
    pub(crate) fn seal_new_message(
        &self,
        write: &mut Write,
        id: MessageId,
        envelope: &Envelope,
        body: &[u8],
        lease_expiry_ms: Option<u64>,
    ) -> Result<Option<crate::record::BodyShape>, Error> {
        let key = &*self.data_key(envelope.origin.tenant.as_deref())?;
        let env_key = keys::envelope(&id);
        let shape = record::shape_of(body);
        write.insert(
            &env_key,
            record::seal_envelope(key, &env_key, envelope, body.len() as u64, shape)?,
        );
        crate::body::seal_body(write, key, &id, body)?;
        self.fan_out_accepted(write, key, &id, envelope, now_ms())?;
        match lease_expiry_ms {
            None => write.insert(&keys::due(now_ms(), &id), Vec::new()),
            Some(expiry_ms) => write.insert(&keys::lease(expiry_ms, &id), Vec::new()),
        }
        write.count_messages(1);
        Ok(shape)
    }

    /// Reads and authenticates one message; `None` if it is not in the spool.
    pub fn read(&self, id: &MessageId) -> Result<Option<(Envelope, Vec<u8>)>, Error> {
        let inner = &*self.inner;
        let env_key = keys::envelope(id);
        let Some(env_value) = inner.db.get(env_key)? else {
            return Ok(None);
        };
        let (envelope, body_len) = record::open_envelope(&inner.keyring, &env_key, &env_value)?;
        let body = self.read_whole_body(id, body_len)?;
        Ok(Some((envelope, body)))
    }

    /// Every queued message in id (= arrival) order. Opens envelopes only.
    pub fn list(&self) -> Result<Vec<Summary>, Error> {
        let mut out = Vec::with_capacity(self.len());
        self.visit(|s| out.push(s))?;
        Ok(out)
    }

    /// Calls `f` with every queued message in id (= arrival) order, one at a time:
    /// what the caller keeps is its own business, not the queue's size.
    pub fn visit(&self, mut f: impl FnMut(Summary)) -> Result<(), Error> {
        let inner = &*self.inner;
        let placements = self.placements()?;
        for item in inner.db.scan_prefix([keys::ENVELOPE]) {
            let (key, value) = item?;
            inner.progress.tick();
            let Some(keys::Key::Envelope(id)) = keys::parse(&key) else {
                return Err(Error::Corrupt {
                    key: keys::describe(&key),
                    reason: "malformed key".into(),
                });
            };
            match record::open_envelope(&inner.keyring, &key, &value) {
                Ok((envelope, size)) => f(summarize(id, envelope, size, placements.get(&id))),
                // Mail of an erased tenant, left for recovery or the sweep to delete.
                Err(Error::Shredded { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// One queued message as `list` shows it; `None` when it is not queued.
    pub fn summary(&self, id: &MessageId) -> Result<Option<Summary>, Error> {
        let Some((envelope, size)) = self.envelope(id)? else {
            return Ok(None);
        };
        let placements = self.placements()?;
        Ok(Some(summarize(*id, envelope, size, placements.get(id))))
    }

    /// A queued message's envelope and body size by one point read (no body, no
    /// scan of the schedule); `None` when it is not queued (or its tenant's key was
    /// shredded).
    pub fn envelope(&self, id: &MessageId) -> Result<Option<(Envelope, u64)>, Error> {
        let inner = &*self.inner;
        let key = keys::envelope(id);
        let Some(value) = inner.db.get(key)? else {
            return Ok(None);
        };
        match record::open_envelope(&inner.keyring, &key, &value) {
            Ok(found) => Ok(Some(found)),
            Err(Error::Shredded { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Since when (Unix ms) an operator holds the message, if one does.
    pub fn held_since(&self, id: &MessageId) -> Result<Option<u64>, Error> {
        Ok(self
            .inner
            .db
            .get(keys::held(id))?
            .map(|v| crate::operate::held_since(&v)))
    }

    /// The oldest queued message (ids begin with their arrival time, and the
    /// envelopes are kept in id order): one key read, whatever the queue holds.
    pub fn oldest(&self) -> Result<Option<MessageId>, Error> {
        match self.inner.db.scan_prefix([keys::ENVELOPE]).keys().next() {
            Some(key) => match keys::parse(&key?) {
                Some(keys::Key::Envelope(id)) => Ok(Some(id)),
                _ => Ok(None),
            },
            None => Ok(None),
        }
    }

    /// Number of queued messages.
    pub fn len(&self) -> usize {
        self.inner.shared.queued.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn health(&self) -> Health {
        self.inner.shared.health()
    }

    pub fn stats(&self) -> CommitStats {
        self.inner.shared.stats()
    }

    /// Bytes available to unprivileged users on the spool's filesystem.
    pub fn free_space(&self) -> io::Result<u64> {
        let st = rustix::fs::statvfs(&self.inner.path)?;
        Ok(st.f_bavail.saturating_mul(st.f_frsize))
    }

    /// Applies every write handed to the flusher before this call, flushes, and
    /// waits for it (shutdown, tools), and brings the anchor up to date. A success
    /// also clears an earlier unhealthy state.
    ///
    /// The writes first: completions are handed over without waiting, and a
    /// shutdown that only flushed sled would leave one still in the flusher's queue
    /// when the process exits (its message delivered again after the restart).
    pub fn flush(&self) -> Result<(), Error> {
        // The flusher takes writes in order: once this empty one is answered, all
        // before it are applied. Its answer is not the verdict (a write refused
        // while unhealthy leaves a lease, which recovery releases); the flush is.
        let _ = self
            .inner
            .committer
            .submit(Write::default())
            .wait_blocking();
        self.inner.shared.flush(&self.inner.db)?;
        self.inner.shared.write_anchor();
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool")
            .field("path", &self.inner.path)
            .field("queued", &self.len())
            .finish_non_exhaustive()
    }
}

fn summarize(
    id: MessageId,
    envelope: Envelope,
    size: u64,
    placement: Option<&Placement>,
) -> Summary {
    let (next_attempt_ms, leased, held_since_ms) = match placement {
        Some(Placement::Due(ms)) => (Some(*ms), false, None),
        Some(Placement::Leased(ms)) => (Some(*ms), true, None),
        Some(Placement::Held(ms)) => (None, false, Some(*ms)),
        None => (None, false, None),
    };
    Summary {
        id,
        tenant: envelope.origin.tenant,
        sender: envelope.sender,
        recipients: envelope.recipients.len(),
        size,
        received_at_ms: envelope.received_at_ms,
        recipient_states: envelope
            .recipients
            .into_iter()
            .map(|r| RecipientSummary {
                address: r.address,
                state: r.state,
                attempts: r.attempts,
                last_error: r.last_error,
            })
            .collect(),
        next_attempt_ms,
        leased,
        held_since_ms,
        attempts: envelope.attempts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope() -> Envelope {
        Envelope {
            sender: "h@example.org".into(),
            recipients: Vec::new(),
            body_type: way2mail_smtp::BodyType::SevenBit,
            smtputf8: false,
            ret: None,
            envid: None,
            origin: way2mail_smtp::Origin {
                client_ip: std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
                helo: "h".into(),
                listener: "mx".into(),
                tls: None,
                auth: None,
                tenant: None,
            },
            received_at_ms: 1,
            attempts: 0,
            next_attempt_ms: None,
            delay_notified: false,
            tags: Vec::new(),
            metadata: Default::default(),
            scan: None,
        }
    }

    #[test]
    fn handles_cross_threads() {
        fn send_sync<T: Send + Sync + 'static>() {}
        send_sync::<Spool>();
        send_sync::<Durable>();
        send_sync::<Error>();
        send_sync::<way2mail_seal::MasterKey>();
        send_sync::<Keyring>();
    }

    #[test]
    fn unhealthy_refuses_until_a_flush_succeeds() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = Spool::open(dir.path(), Keyring::ephemeral().expect("key")).expect("open");
        spool.inner.shared.mark_unhealthy("disk on fire".into());
        assert_eq!(spool.health(), Health::Unhealthy("disk on fire".into()));
        match spool.enqueue(MessageId::generate(), &envelope(), b"x") {
            Err(Error::Unhealthy(reason)) => assert_eq!(reason, "disk on fire"),
            other => panic!("expected Unhealthy, got {other:?}"),
        }
        assert!(spool.is_empty());
        spool.flush().expect("flush");
        assert_eq!(spool.health(), Health::Ok);
        let durable = spool
            .enqueue(MessageId::generate(), &envelope(), b"x")
            .expect("enqueue");
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        rt.block_on(durable.wait()).expect("durable");
        assert_eq!(spool.len(), 1);
    }

    #[test]
    fn flusher_retries_on_its_own_while_unhealthy() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = Spool::open(dir.path(), Keyring::ephemeral().expect("key")).expect("open");
        // Nobody enqueues or flushes from here on: only the flusher's retry can heal.
        spool.inner.shared.mark_unhealthy("transient".into());
        let start = Instant::now();
        while spool.health() != Health::Ok {
            assert!(start.elapsed() < Duration::from_secs(10), "never recovered");
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(spool.stats().flushes, 1);
        assert_eq!(spool.stats().commits, 0);
    }
}
