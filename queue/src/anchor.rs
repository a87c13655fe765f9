//! The spool's anchor: proof, outside sled, of how far the spool had come. sled
//! 0.34 meeting a damaged log file keeps what precedes the damage and silently drops
//! the rest, so a spool can open "fine" while missing messages it acknowledged. The
//! spool counts its committed batches (`m commit_seq`, advanced in each batch the
//! flusher applies), and the anchor file `way2mail.anchor` in the spool directory
//! records the last count known to be on disk:
//!
//! ```text
//!   way2mail-spool-anchor 1
//!   commit_seq 48213
//! ```
//!
//! The anchor is written only after the flush that made its count durable, so after
//! any crash it is at or behind the spool (normal); a spool behind its anchor lost
//! committed writes, and opening it is refused until an operator decides
//! (`--accept-rollback`, which rewrites the anchor). A thread of its own rewrites it
//! (atomic replace, fsync) at most every [`ANCHOR_INTERVAL`] while commits happen and
//! once more when they stop, and `Spool::flush` (shutdown) brings it up to date; see
//! `docs/spool-format.md`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::{keys, Error};
use way2mail_daemon::files::Unreadable;

/// The anchor's file name inside the spool directory, beside sled's own files: a
/// directory moved, copied or restored carries the anchor that belongs to it.
pub const ANCHOR_FILE: &str = "way2mail.anchor";
const MAGIC: &str = "way2mail-spool-anchor 1";

/// The longest the anchor lags the spool while commits happen. Writing it at every
/// group commit would add two fsyncs (the file, its directory) to every flush: on
/// the test machine that took a lone message's commit from 0.45 ms to 12.5 ms (see
/// docs/spool-format.md, "Anchor"). Off the flusher's thread and at most this often,
/// it costs nothing measurable, and a rollback it misses is at most this much of the
/// newest commits.
pub const ANCHOR_INTERVAL: Duration = Duration::from_millis(100);

/// What an anchor file records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Anchor {
    pub commit_seq: u64,
}

impl Anchor {
    fn encode(&self) -> String {
        format!("{MAGIC}\ncommit_seq {}\n", self.commit_seq)
    }

    fn parse(text: &str) -> Result<Anchor, Unreadable> {
        let mut lines = text.lines();
        if lines.next() != Some(MAGIC) {
            return Err(format!("it does not start with {MAGIC:?}").into());
        }
        let mut commit_seq = None;
        for line in lines {
            match line.split_once(' ') {
                Some(("commit_seq", n)) => {
                    commit_seq = Some(n.parse::<u64>().map_err(|_| format!("bad line {line:?}"))?);
                }
                _ => return Err(format!("unexpected line {line:?}").into()),
            }
        }
        commit_seq
            .map(|commit_seq| Anchor { commit_seq })
            .ok_or_else(|| Unreadable::from("it has no commit_seq line"))
    }
}

/// How a spool differs from its anchor: it lost committed writes, or the anchor
/// that would tell is gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Divergence {
    /// The spool has committed before (it counts its commits) but has no anchor.
    Missing { store: u64 },
    /// The anchor file does not parse.
    Unreadable { reason: String },
    /// The spool is older than its anchor.
    Behind { anchor: u64, store: u64 },
}

impl std::fmt::Display for Divergence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Divergence::Missing { store } => write!(
                f,
                "its anchor file is missing, although the spool has committed before (it is at commit {store})"
            ),
            Divergence::Unreadable { reason } => {
                write!(f, "its anchor file cannot be read: {reason}")
            }
            Divergence::Behind { anchor, store } => {
                write!(f, "it is at commit {store}, but its anchor recorded commit {anchor}: ")?;
                if anchor - store == 1 {
                    write!(f, "commit {anchor} is missing")
                } else {
                    write!(f, "commits {} to {anchor} are missing", store + 1)
                }
            }
        }
    }
}

/// What opening found about the anchor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnchorCheck {
    /// The spool is at or past its anchor.
    Current,
    /// The spool had no anchor and never counted a commit (made by a version
    /// before anchors, or new): its first anchor was written.
    Created,
    /// The spool had diverged from its anchor and the operator accepted it
    /// (`--accept-rollback`); the anchor now records the spool as it is.
    Accepted(Divergence),
}

/// A spool that did not diverge from its anchor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Standing {
    /// No anchor, and no commit counted that would need one.
    Unanchored,
    /// At or past its anchor.
    Current,
}

/// Compares the spool's commit count with its anchor (`Err(reason)` when the file
/// does not parse).
pub(crate) fn judge(
    anchor: &Result<Option<Anchor>, Unreadable>,
    store: Option<u64>,
) -> Result<Standing, Divergence> {
    match (anchor, store) {
        (Err(reason), _) => Err(Divergence::Unreadable {
            reason: reason.to_string(),
        }),
        (Ok(None), None) => Ok(Standing::Unanchored),
        (Ok(None), Some(store)) => Err(Divergence::Missing { store }),
        (Ok(Some(a)), store) => {
            let store = store.unwrap_or(0);
            if store < a.commit_seq {
                Err(Divergence::Behind {
                    anchor: a.commit_seq,
                    store,
                })
            } else {
                Ok(Standing::Current)
            }
        }
    }
}

pub(crate) fn path(dir: &Path) -> PathBuf {
    dir.join(ANCHOR_FILE)
}

/// Reads the anchor of the spool in `dir`: `Ok(None)` when there is none, `Err`
/// with the reason when it cannot be read.
pub fn read(dir: &Path) -> Result<Option<Anchor>, Unreadable> {
    way2mail_daemon::files::read_parsed(&path(dir), Anchor::parse)
}

/// Writes (replaces) the anchor of the spool in `dir`.
pub(crate) fn write(dir: &Path, anchor: Anchor) -> Result<(), Error> {
    way2mail_daemon::files::replace(&path(dir), anchor.encode().as_bytes()).map_err(|e| {
        Error::Io(std::io::Error::new(
            e.kind(),
            format!("writing the spool anchor {}: {e}", path(dir).display()),
        ))
    })
}

/// The commit count stored in the spool; `None` before its first counted commit.
pub(crate) fn commit_seq(db: &sled::Db) -> Result<Option<u64>, Error> {
    match db.get(keys::COMMIT_SEQ)? {
        None => Ok(None),
        Some(v) => match <[u8; 8]>::try_from(v.as_ref()) {
            Ok(b) => Ok(Some(u64::from_be_bytes(b))),
            Err(_) => Err(Error::Corrupt {
                key: keys::describe(keys::COMMIT_SEQ),
                reason: format!("{} bytes, not 8", v.len()),
            }),
        },
    }
}

/// At open: checks the spool in `dir` (at `store` commits) against its anchor and
/// brings the anchor up to date, or refuses. `accept_rollback` is the operator's
/// decision to start on a spool that diverged.
pub(crate) fn admit(
    dir: &Path,
    store: Option<u64>,
    accept_rollback: bool,
) -> Result<AnchorCheck, Error> {
    let anchor = read(dir);
    let check = match judge(&anchor, store) {
        Ok(Standing::Current) => AnchorCheck::Current,
        Ok(Standing::Unanchored) => {
            tracing::info!(
                spool = %dir.display(),
                "the spool had no anchor (new, or from a version before anchors): writing its first"
            );
            AnchorCheck::Created
        }
        Err(divergence) if accept_rollback => {
            tracing::warn!(
                spool = %dir.display(),
                %divergence,
                "starting on a spool that diverged from its anchor, as --accept-rollback asked; \
                 the anchor now records the spool as it is"
            );
            AnchorCheck::Accepted(divergence)
        }
        Err(divergence) => {
            return Err(Error::RolledBack {
                path: dir.to_owned(),
                divergence,
            })
        }
    };
    let store = store.unwrap_or(0);
    if anchor.ok().flatten() != Some(Anchor { commit_seq: store }) {
        write(dir, Anchor { commit_seq: store })?;
    }
    Ok(check)
}

/// Keeps the anchor up to date on a thread of its own, so that its fsyncs never
/// hold up the flusher: the flusher reports each durable commit count
/// ([`AnchorWriter::durable`]), the thread writes the newest one at most every
/// [`ANCHOR_INTERVAL`]. Writes are serialized and never go backwards; dropping the
/// writer writes the last count and joins the thread.
pub(crate) struct AnchorWriter {
    inner: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    dir: PathBuf,
    reported: Mutex<Reported>,
    wake: Condvar,
    /// Held while the file is written.
    written: Mutex<Written>,
}

struct Reported {
    /// The newest commit count known durable.
    durable: u64,
    stop: bool,
}

struct Written {
    seq: u64,
    at: Option<Instant>,
    /// The last write failed: logged once until one succeeds.
    failing: bool,
}

impl AnchorWriter {
    /// For the spool in `dir`, whose anchor records `seq` now.
    pub(crate) fn start(dir: PathBuf, seq: u64) -> Result<AnchorWriter, Error> {
        let inner = Arc::new(Shared {
            dir,
            reported: Mutex::new(Reported {
                durable: seq,
                stop: false,
            }),
            wake: Condvar::new(),
            written: Mutex::new(Written {
                seq,
                at: None,
                failing: false,
            }),
        });
        let thread = {
            let inner = Arc::clone(&inner);
            std::thread::Builder::new()
                .name("spool-anchor".into())
                .spawn(move || inner.run())?
        };
        Ok(AnchorWriter {
            inner,
            thread: Some(thread),
        })
    }

    /// Commit count `seq` is on disk.
    pub(crate) fn durable(&self, seq: u64) {
        let mut reported = self.inner.reported();
        if seq > reported.durable {
            reported.durable = seq;
            self.inner.wake.notify_one();
        }
    }

    /// Writes the anchor now if it is behind the newest durable commit (shutdown,
    /// tools).
    pub(crate) fn write_now(&self) {
        let seq = self.inner.reported().durable;
        self.inner.write_upto(seq);
    }
}

impl Drop for AnchorWriter {
    fn drop(&mut self) {
        self.inner.reported().stop = true;
        self.inner.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.write_now();
    }
}

impl Shared {
    fn reported(&self) -> MutexGuard<'_, Reported> {
        // Plain counters: still valid if a holder panicked.
        self.reported.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn written(&self) -> MutexGuard<'_, Written> {
        self.written.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn run(&self) {
        let mut reported = self.reported();
        while !reported.stop {
            let target = reported.durable;
            let (seq, at) = {
                let written = self.written();
                (written.seq, written.at)
            };
            if target <= seq {
                reported = self
                    .wake
                    .wait(reported)
                    .unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            let left = at.map_or(Duration::ZERO, |at| {
                (at + ANCHOR_INTERVAL).saturating_duration_since(Instant::now())
            });
            if !left.is_zero() {
                reported = self
                    .wake
                    .wait_timeout(reported, left)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
                continue;
            }
            drop(reported);
            self.write_upto(target);
            reported = self.reported();
        }
    }

    fn write_upto(&self, seq: u64) {
        let mut written = self.written();
        if seq <= written.seq {
            return;
        }
        written.at = Some(Instant::now());
        match write(&self.dir, Anchor { commit_seq: seq }) {
            Ok(()) => {
                written.seq = seq;
                written.failing = false;
            }
            // The spool itself is fine; an anchor left behind only weakens the check
            // at the next start. The next commit tries again.
            Err(e) if !written.failing => {
                written.failing = true;
                tracing::error!(error = %e, "cannot write the spool anchor");
            }
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchors_round_trip_and_refuse_garbage() {
        let a = Anchor { commit_seq: 48213 };
        assert_eq!(Anchor::parse(&a.encode()), Ok(a));
        for bad in [
            "",
            "way2mail-spool-anchor 2\ncommit_seq 1\n",
            "way2mail-spool-anchor 1\n",
            "way2mail-spool-anchor 1\ncommit_seq x\n",
            "way2mail-spool-anchor 1\ncommit_seq 1\nextra 2\n",
        ] {
            assert!(Anchor::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_spool_behind_its_anchor_diverged_one_ahead_did_not() {
        let at = |n| Ok(Some(Anchor { commit_seq: n }));
        assert_eq!(
            judge(&Ok(None), None),
            Ok(Standing::Unanchored),
            "upgrade or new"
        );
        assert_eq!(judge(&at(5), Some(5)), Ok(Standing::Current));
        // A crash between the flush and the anchor write: normal.
        assert_eq!(judge(&at(5), Some(9)), Ok(Standing::Current));
        assert_eq!(
            judge(&at(9), Some(5)),
            Err(Divergence::Behind {
                anchor: 9,
                store: 5
            })
        );
        // sled lost even the counter: behind by all of it.
        assert_eq!(
            judge(&at(9), None),
            Err(Divergence::Behind {
                anchor: 9,
                store: 0
            })
        );
        assert_eq!(
            judge(&Ok(None), Some(3)),
            Err(Divergence::Missing { store: 3 })
        );
        assert!(matches!(
            judge(&Err("x".into()), Some(3)),
            Err(Divergence::Unreadable { .. })
        ));
    }

    #[test]
    fn the_writer_keeps_up_and_never_goes_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let writer = AnchorWriter::start(dir.path().to_owned(), 0).expect("start");
        let anchored = |n| Ok(Some(Anchor { commit_seq: n }));
        writer.durable(3);
        let start = Instant::now();
        while read(dir.path()) != anchored(3) {
            assert!(start.elapsed() < Duration::from_secs(10), "never written");
            std::thread::sleep(Duration::from_millis(10));
        }
        // A lower count (a report out of order) is never written.
        writer.durable(2);
        writer.write_now();
        assert_eq!(read(dir.path()), anchored(3));
        // Within the interval the thread waits; dropping the writer writes the last.
        writer.durable(4);
        writer.durable(5);
        drop(writer);
        assert_eq!(read(dir.path()), anchored(5));
    }
}
