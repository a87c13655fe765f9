//! The control store's anchor: proof, outside sled, of how far the store had come.
//! sled 0.34 meeting a damaged log file keeps what precedes the damage and silently
//! drops the rest: a store could open "fine" with its newest audit entries gone and
//! a suspended tenant active again. So every commit advances a count kept in the
//! store (`meta/commit_seq`, in the commit's own transaction), and after the flush
//! the anchor file `way2mail.anchor` in the store directory records that count and
//! the audit chain's head:
//!
//! ```text
//!   way2mail-control-anchor 1
//!   commit_seq 57
//!   audit_seq 21
//!   audit_hash 3f9a…(64 hex)
//! ```
//!
//! At open a store whose count is below the anchor's, whose audit log ends before
//! the anchor's head, or whose entry at that position is another one, is refused
//! unless the operator accepts it (`--accept-rollback`). An anchor behind the
//! store is normal: the process stopped between a commit and the anchor's write.
//! `audit verify` checks the chain against the anchor too (audit.rs).

use std::path::{Path, PathBuf};

use serde::Deserialize;
use way2mail_daemon::files::Unreadable;
use way2mail_daemon::watchdog::Progress;

use super::{audit_key, Store, TreeName};
use crate::error::Error;
use crate::records::{AuditHead, META_AUDIT_HEAD};

/// The anchor's file name inside the store directory, beside sled's files: a
/// directory moved, copied or restored carries the anchor that belongs to it.
pub const ANCHOR_FILE: &str = "way2mail.anchor";
const MAGIC: &str = "way2mail-control-anchor 1";
/// Meta key of the commit count.
pub(super) const META_COMMIT_SEQ: &[u8] = b"commit_seq";

/// What an anchor file records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    pub commit_seq: u64,
    /// The audit log's newest entry: its seq (0 when empty) and hash.
    pub audit_seq: u64,
    pub audit_hash: Option<String>,
}

impl Anchor {
    fn encode(&self) -> String {
        let mut text = format!(
            "{MAGIC}\ncommit_seq {}\naudit_seq {}\n",
            self.commit_seq, self.audit_seq
        );
        if let Some(hash) = &self.audit_hash {
            text.push_str(&format!("audit_hash {hash}\n"));
        }
        text
    }

    fn parse(text: &str) -> Result<Anchor, Unreadable> {
        let mut lines = text.lines();
        if lines.next() != Some(MAGIC) {
            return Err(format!("it does not start with {MAGIC:?}").into());
        }
        let (mut commit_seq, mut audit_seq, mut audit_hash) = (None, None, None);
        for line in lines {
            let number = |n: &str| n.parse::<u64>().map_err(|_| format!("bad line {line:?}"));
            match line.split_once(' ') {
                Some(("commit_seq", n)) => commit_seq = Some(number(n)?),
                Some(("audit_seq", n)) => audit_seq = Some(number(n)?),
                Some(("audit_hash", h))
                    if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) =>
                {
                    audit_hash = Some(h.to_owned())
                }
                _ => return Err(format!("unexpected line {line:?}").into()),
            }
        }
        let (Some(commit_seq), Some(audit_seq)) = (commit_seq, audit_seq) else {
            return Err("it lacks the commit_seq or audit_seq line".into());
        };
        if audit_seq > 0 && audit_hash.is_none() {
            return Err("it has no audit_hash line".into());
        }
        Ok(Anchor {
            commit_seq,
            audit_seq,
            audit_hash,
        })
    }
}

/// How a store differs from its anchor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Divergence {
    /// The store has committed before (it counts its commits) but has no anchor.
    Missing { store: u64 },
    /// The anchor file does not parse.
    Unreadable { reason: String },
    /// The store's commit count is below the anchor's.
    Behind { anchor: u64, store: u64 },
    /// The audit log ends before the entry the anchor recorded.
    AuditTruncated { anchor: u64, store: u64 },
    /// The audit entry at the anchor's position is not the one it recorded.
    AuditChanged { seq: u64 },
}

impl std::fmt::Display for Divergence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Divergence::Missing { store } => write!(
                f,
                "its anchor file is missing, although the store has committed before (it is at commit {store})"
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
            Divergence::AuditTruncated { anchor, store } => write!(
                f,
                "its audit log ends at entry {store}, but its anchor recorded entry {anchor}: the newest entries are missing"
            ),
            Divergence::AuditChanged { seq } => write!(
                f,
                "audit entry {seq} is not the entry its anchor recorded"
            ),
        }
    }
}

/// What opening found about the anchor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnchorCheck {
    /// The store is at or past its anchor.
    Current,
    /// No anchor and no commit counted (a store from before anchors, or new): its
    /// first anchor was written.
    Created,
    /// The store had diverged and the operator accepted it (`--accept-rollback`);
    /// the anchor now records the store as it is.
    Accepted {
        divergence: Divergence,
        /// What the anchor recorded (`None`: it was missing or unreadable).
        anchor: Option<Anchor>,
        /// The store as it was accepted.
        store: Anchor,
    },
    /// A store a restore just built: its anchor records it as it is.
    Adopted,
    /// Opened for reading only (verification): nothing checked, nothing written.
    Inspected,
}

/// What opening does about the anchor.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AnchorPolicy {
    /// Refuse a store that diverged from its anchor.
    #[default]
    Refuse,
    /// Start on it anyway (the operator decided) and rewrite the anchor.
    AcceptRollback,
    /// A store a restore built: write its first anchor, whatever was there.
    Adopt,
    /// Read only: no migration, no anchor written, commits refused.
    Inspect,
}

/// How to open a store.
#[derive(Debug, Clone, Default)]
pub struct StoreOptions {
    pub anchor: AnchorPolicy,
    /// Ticked as opening gets somewhere, for a watchdog.
    pub progress: Progress,
}

/// The store's side of the comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct StoreState {
    pub commit_seq: Option<u64>,
    pub audit_seq: u64,
    /// The hash of the stored entry at the anchor's audit position, if any.
    pub hash_at_anchor: Option<String>,
}

/// A store that did not diverge from its anchor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Position {
    /// No anchor, and no commit counted that would need one.
    Unanchored,
    /// At or past its anchor.
    Current,
}

/// Compares a store with its anchor (`Err(reason)` when the file does not parse).
pub(super) fn judge(
    anchor: &Result<Option<Anchor>, Unreadable>,
    store: &StoreState,
) -> Result<Position, Divergence> {
    let anchor = match anchor {
        Err(reason) => {
            return Err(Divergence::Unreadable {
                reason: reason.to_string(),
            })
        }
        Ok(None) => {
            return match store.commit_seq {
                None => Ok(Position::Unanchored),
                Some(store) => Err(Divergence::Missing { store }),
            }
        }
        Ok(Some(anchor)) => anchor,
    };
    let commit_seq = store.commit_seq.unwrap_or(0);
    if commit_seq < anchor.commit_seq {
        return Err(Divergence::Behind {
            anchor: anchor.commit_seq,
            store: commit_seq,
        });
    }
    if store.audit_seq < anchor.audit_seq {
        return Err(Divergence::AuditTruncated {
            anchor: anchor.audit_seq,
            store: store.audit_seq,
        });
    }
    if anchor.audit_seq > 0 && store.hash_at_anchor != anchor.audit_hash {
        return Err(Divergence::AuditChanged {
            seq: anchor.audit_seq,
        });
    }
    Ok(Position::Current)
}

pub(super) fn path(dir: &Path) -> PathBuf {
    dir.join(ANCHOR_FILE)
}

/// Reads the anchor of the store in `dir`: `Ok(None)` when there is none, `Err`
/// with the reason when it cannot be read.
pub fn read(dir: &Path) -> Result<Option<Anchor>, Unreadable> {
    way2mail_daemon::files::read_parsed(&path(dir), Anchor::parse)
}

/// Only the hash of a stored audit entry.
#[derive(Deserialize)]
struct EntryHash {
    hash: String,
}

impl Store {
    /// The commit count stored (`None` before the first counted commit).
    pub(super) fn stored_commit_seq(&self) -> Result<Option<u64>, Error> {
        self.get::<u64>(TreeName::Meta, META_COMMIT_SEQ)
    }

    /// The audit head recorded in meta.
    fn stored_audit_head(&self) -> Result<Option<AuditHead>, Error> {
        self.get::<AuditHead>(TreeName::Meta, META_AUDIT_HEAD)
    }

    /// The hash of the audit entry stored at `seq`, if it opens.
    pub(crate) fn audit_hash_at(&self, seq: u64) -> Option<String> {
        self.get::<EntryHash>(TreeName::Audit, &audit_key(seq))
            .ok()
            .flatten()
            .map(|e| e.hash)
    }

    /// The anchor this store's state calls for now.
    pub(super) fn current_anchor(&self, commit_seq: u64) -> Result<Anchor, Error> {
        let head = self.stored_audit_head()?.filter(|h| h.seq > 0);
        Ok(Anchor {
            commit_seq,
            audit_seq: head.as_ref().map_or(0, |h| h.seq),
            audit_hash: head.map(|h| h.hash),
        })
    }

    /// Writes (replaces) the anchor.
    pub(super) fn write_anchor(&self, anchor: &Anchor) -> Result<(), Error> {
        let file = path(&self.dir);
        way2mail_daemon::files::replace(&file, anchor.encode().as_bytes()).map_err(|source| {
            Error::Anchor {
                path: file.clone(),
                source,
            }
        })
    }

    /// At open, before any write: compares the store with its anchor under
    /// `policy`, or refuses. Returns what was found and the anchor file as read.
    pub(super) fn check_anchor(
        &self,
        policy: AnchorPolicy,
    ) -> Result<(AnchorCheck, Option<Anchor>), Error> {
        if policy == AnchorPolicy::Inspect {
            return Ok((AnchorCheck::Inspected, None));
        }
        let anchor = read(&self.dir);
        let check = if policy == AnchorPolicy::Adopt {
            tracing::info!(store = %self.dir.display(), "a restored store: writing its anchor");
            AnchorCheck::Adopted
        } else {
            let state = self.state(&anchor)?;
            match judge(&anchor, &state) {
                Ok(Position::Current) => AnchorCheck::Current,
                Ok(Position::Unanchored) => {
                    tracing::info!(
                        store = %self.dir.display(),
                        "the control store had no anchor (new, or from a version before \
                         anchors): writing its first"
                    );
                    AnchorCheck::Created
                }
                Err(divergence) if policy == AnchorPolicy::AcceptRollback => {
                    tracing::warn!(
                        store = %self.dir.display(),
                        %divergence,
                        "starting on a control store that diverged from its anchor, as \
                         --accept-rollback asked; the anchor now records the store as it is"
                    );
                    AnchorCheck::Accepted {
                        divergence,
                        anchor: anchor.clone().ok().flatten(),
                        store: self.current_anchor(state.commit_seq.unwrap_or(0))?,
                    }
                }
                Err(divergence) => {
                    return Err(Error::RolledBack {
                        dir: self.dir.clone(),
                        divergence,
                    })
                }
            }
        };
        Ok((check, anchor.ok().flatten()))
    }

    /// After opening (and migrating): makes the anchor record the store as it is,
    /// unless `was` already does.
    pub(super) fn sync_anchor(&self, commit_seq: u64, was: Option<&Anchor>) -> Result<(), Error> {
        let now = self.current_anchor(commit_seq)?;
        if was != Some(&now) {
            self.write_anchor(&now)?;
        }
        Ok(())
    }

    /// The store's side of the comparison with `anchor`.
    pub(super) fn state(
        &self,
        anchor: &Result<Option<Anchor>, Unreadable>,
    ) -> Result<StoreState, Error> {
        let commit_seq = self.stored_commit_seq()?;
        let Ok(Some(anchor)) = anchor else {
            // Nothing to compare the audit log with.
            return Ok(StoreState {
                commit_seq,
                audit_seq: 0,
                hash_at_anchor: None,
            });
        };
        let audit_seq = self.stored_audit_head()?.map_or(0, |h| h.seq);
        Ok(StoreState {
            commit_seq,
            audit_seq,
            hash_at_anchor: self.audit_hash_at(anchor.audit_seq),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(c: char) -> String {
        c.to_string().repeat(64)
    }

    #[test]
    fn anchors_round_trip_and_refuse_garbage() {
        let a = Anchor {
            commit_seq: 57,
            audit_seq: 21,
            audit_hash: Some(hash('a')),
        };
        assert_eq!(Anchor::parse(&a.encode()), Ok(a));
        let empty = Anchor {
            commit_seq: 0,
            audit_seq: 0,
            audit_hash: None,
        };
        assert_eq!(Anchor::parse(&empty.encode()), Ok(empty));
        for bad in [
            "",
            "way2mail-spool-anchor 1\ncommit_seq 1\n",
            "way2mail-control-anchor 1\ncommit_seq 1\n",
            "way2mail-control-anchor 1\ncommit_seq 1\naudit_seq 2\n",
            "way2mail-control-anchor 1\ncommit_seq 1\naudit_seq 2\naudit_hash xyz\n",
            "way2mail-control-anchor 1\ncommit_seq -1\naudit_seq 0\n",
        ] {
            assert!(Anchor::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_store_behind_its_anchor_or_on_another_chain_diverged() {
        let anchor = Ok(Some(Anchor {
            commit_seq: 57,
            audit_seq: 21,
            audit_hash: Some(hash('a')),
        }));
        let store = |commit: u64, audit: u64, at: Option<char>| StoreState {
            commit_seq: Some(commit),
            audit_seq: audit,
            hash_at_anchor: at.map(hash),
        };
        assert_eq!(
            judge(&anchor, &store(57, 21, Some('a'))),
            Ok(Position::Current)
        );
        // Past the anchor (a crash before its write): normal.
        assert_eq!(
            judge(&anchor, &store(60, 24, Some('a'))),
            Ok(Position::Current)
        );
        assert_eq!(
            judge(&anchor, &store(20, 6, None)),
            Err(Divergence::Behind {
                anchor: 57,
                store: 20
            })
        );
        assert_eq!(
            judge(&anchor, &store(57, 6, None)),
            Err(Divergence::AuditTruncated {
                anchor: 21,
                store: 6
            })
        );
        assert_eq!(
            judge(&anchor, &store(60, 24, Some('b'))),
            Err(Divergence::AuditChanged { seq: 21 })
        );
        let unanchored = StoreState {
            commit_seq: None,
            audit_seq: 0,
            hash_at_anchor: None,
        };
        assert_eq!(
            judge(&Ok(None), &unanchored),
            Ok(Position::Unanchored),
            "upgrade or new"
        );
        assert_eq!(
            judge(&Ok(None), &store(3, 1, None)),
            Err(Divergence::Missing { store: 3 })
        );
        assert!(matches!(
            judge(&Err("x".into()), &unanchored),
            Err(Divergence::Unreadable { .. })
        ));
    }
}
