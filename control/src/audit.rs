//! The hash-chained audit log. Entry `n` carries the hash of entry `n-1`, and its
//! own hash covers that link and every other field, so an entry cannot be changed,
//! removed or moved without breaking the chain. The newest entry's sequence number
//! and hash are kept in meta (`audit_head`) so that a removed tail shows too, and in
//! the store's anchor file outside sled (`store::anchor`), so that a log rolled back
//! whole, head included, shows as well.
//!
//! ```text
//!   hash(n) = hex SHA-256( prev_hash(n) ‖ "\n" ‖ canonical JSON of entry n without `hash` )
//!   prev_hash(1) = 64 × "0"
//! ```
//!
//! The detail of an entry about a tenant is sealed with that tenant's data key
//! (`sealed_detail`), and the hash covers the sealed form: erasing the tenant makes
//! the detail unreadable without breaking the chain. The retention sweep prunes old
//! entries: their content goes, their seq, time and hashes stay, so the chain still
//! shows that nothing was removed or reordered.
//!
//! Appends happen only through an [`AuditWriter`], the one writer lock of the
//! control store: the service holds it for the whole of a request, so each entry
//! commits in the same batch as the change it records and the chain stays linear
//! across connection threads. [`AuditLog::verify`] walks the stored records in key
//! order and reports every problem it finds.

use std::collections::{HashMap, VecDeque};

use std::sync::{Mutex, MutexGuard};

use aws_lc_rs::digest;
use serde::Serialize;

use crate::error::Error;
use crate::records::{AuditHead, META_AUDIT_HEAD};
use crate::store::anchor::{self, AnchorCheck};
use crate::store::{audit_key, hex, seq_of_key, Batch, Opened, Store, TreeName};
use way2mail_wire::protocol::{AuditEntry, AuditOutcome, AuditProblem, AuditReport, Role};

/// Binds a sealed detail to its entry.
fn detail_aad(seq: u64) -> Vec<u8> {
    let mut aad = b"audit-detail:".to_vec();
    aad.extend_from_slice(&seq.to_be_bytes());
    aad
}

/// `prev_hash` of the first entry.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// An entry before it is chained: everything but seq, time and hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditDraft {
    pub actor: String,
    pub role: Option<Role>,
    pub action: String,
    pub tenant: Option<String>,
    pub outcome: AuditOutcome,
    pub reason: Option<String>,
    pub detail: Option<String>,
    /// The detail holds nothing of the tenant's data (counts, ids): keep it
    /// readable even after the tenant's key is destroyed (erasure records).
    pub public_detail: bool,
}

/// The fields the hash covers, in a fixed order (serde keeps declaration order).
#[derive(Serialize)]
struct Hashed<'a> {
    seq: u64,
    at_ms: u64,
    actor: &'a str,
    role: Option<Role>,
    action: &'a str,
    tenant: Option<&'a str>,
    outcome: AuditOutcome,
    reason: Option<&'a str>,
    detail: Option<&'a str>,
    // Absent from entries written before sealed details, so their hashes hold.
    #[serde(skip_serializing_if = "Option::is_none")]
    sealed_detail: Option<&'a str>,
    prev_hash: &'a str,
}

/// The hash `entry.hash` must have (of the entry as stored, or as listed).
pub fn entry_hash(entry: &AuditEntry) -> String {
    let fields = Hashed {
        seq: entry.seq,
        at_ms: entry.at_ms,
        actor: &entry.actor,
        role: entry.role,
        action: &entry.action,
        tenant: entry.tenant.as_deref(),
        outcome: entry.outcome,
        reason: entry.reason.as_deref(),
        // A sealed detail is covered in its sealed form; the text a listing opens
        // into `detail` is not part of the stored entry.
        detail: match entry.sealed_detail {
            Some(_) => None,
            None => entry.detail.as_deref(),
        },
        sealed_detail: entry.sealed_detail.as_deref(),
        prev_hash: &entry.prev_hash,
    };
    // Serializing plain strings, integers and enums cannot fail.
    let json = serde_json::to_vec(&fields).unwrap_or_default();
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(entry.prev_hash.as_bytes());
    ctx.update(b"\n");
    ctx.update(&json);
    hex(ctx.finish().as_ref())
}

/// Holds the single writer lock (see the module doc).
pub struct AuditLog {
    writer: Mutex<()>,
}

/// Proof that the writer lock is held; appends need it.
pub struct AuditWriter<'a> {
    _guard: MutexGuard<'a, ()>,
}

impl Default for AuditLog {
    fn default() -> Self {
        AuditLog::new()
    }
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditLog")
    }
}

impl AuditLog {
    pub fn new() -> AuditLog {
        AuditLog {
            writer: Mutex::new(()),
        }
    }

    /// Takes the writer lock. A panic in another holder leaves nothing half done in
    /// memory (the state is in the store), so a poisoned lock is simply taken over.
    pub fn writer(&self) -> AuditWriter<'_> {
        AuditWriter {
            _guard: self.writer.lock().unwrap_or_else(|e| e.into_inner()),
        }
    }

    /// FORENSICS AND TAMPER TESTS ONLY, bypasses the hash chain: seals `entry` as
    /// the record for `entry.seq`, for [`Store::audit_put_raw`].
    pub fn seal_entry(store: &Store, entry: &AuditEntry) -> Result<Vec<u8>, Error> {
        store.seal_record(TreeName::Audit, &audit_key(entry.seq), entry)
    }

    /// FORENSICS AND TAMPER TESTS ONLY, bypasses the hash chain: seals `entry` as
    /// the record for position `seq`, whatever its own `seq` says.
    pub fn seal_entry_at(store: &Store, seq: u64, entry: &AuditEntry) -> Result<Vec<u8>, Error> {
        store.seal_record(TreeName::Audit, &audit_key(seq), entry)
    }

    /// Opens the sealed record stored at `seq`, as stored (details still sealed).
    pub fn open_entry(store: &Store, seq: u64, sealed: &[u8]) -> Result<AuditEntry, Error> {
        store.open_value(TreeName::Audit, &audit_key(seq), sealed.to_vec())
    }

    /// An entry as listed: its sealed detail opened into `detail` (left empty when
    /// the tenant's key was destroyed).
    pub fn readable(store: &Store, mut entry: AuditEntry) -> AuditEntry {
        if let Some(sealed) = &entry.sealed_detail {
            entry.detail = match store.open_field(&detail_aad(entry.seq), sealed) {
                Ok(Opened::Text(text)) => Some(text),
                Ok(Opened::Erased) | Err(_) => None,
            };
        }
        entry
    }

    /// The content-free stub the retention sweep leaves in place of `entry`.
    pub fn pruned(entry: &AuditEntry) -> AuditEntry {
        AuditEntry {
            seq: entry.seq,
            at_ms: entry.at_ms,
            actor: String::new(),
            role: None,
            action: String::new(),
            tenant: None,
            outcome: AuditOutcome::Ok,
            reason: None,
            detail: None,
            sealed_detail: None,
            pruned: true,
            prev_hash: entry.prev_hash.clone(),
            hash: entry.hash.clone(),
        }
    }

    /// The newest entry as recorded in meta (zero and the genesis hash when empty).
    pub fn head(store: &Store) -> Result<AuditHead, Error> {
        Ok(store
            .get::<AuditHead>(TreeName::Meta, META_AUDIT_HEAD)?
            .unwrap_or_else(|| AuditHead {
                seq: 0,
                hash: GENESIS_HASH.into(),
            }))
    }

    /// Entries oldest first, `seq >= since_seq`, of one tenant when given; the
    /// newest `limit` when more match. Unreadable records are skipped here (verify
    /// reports them).
    pub fn list(
        store: &Store,
        tenant: Option<&str>,
        since_seq: u64,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, Error> {
        let mut out = VecDeque::with_capacity(limit.min(1024));
        for item in store.raw_range_from(TreeName::Audit, &audit_key(since_seq)) {
            let (key, sealed) = item?;
            let Some(seq) = seq_of_key(&key) else {
                continue;
            };
            let Ok(entry) = AuditLog::open_entry(store, seq, &sealed) else {
                continue;
            };
            if tenant.is_some_and(|t| entry.tenant.as_deref() != Some(t)) {
                continue;
            }
            if out.len() == limit {
                out.pop_front();
            }
            if limit > 0 {
                out.push_back(entry);
            }
        }
        Ok(out
            .into_iter()
            .map(|e| AuditLog::readable(store, e))
            .collect())
    }

    /// Every stored entry in order, as stored, with unreadable records skipped
    /// (the retention sweep and reports; verify reports the unreadable ones).
    pub fn all(store: &Store) -> Result<Vec<AuditEntry>, Error> {
        let mut out = Vec::new();
        for item in store.raw_iter(TreeName::Audit) {
            let (key, sealed) = item?;
            let Some(seq) = seq_of_key(&key) else {
                continue;
            };
            if let Ok(entry) = AuditLog::open_entry(store, seq, &sealed) {
                out.push(entry);
            }
        }
        Ok(out)
    }

    /// Walks the whole log and reports every broken link.
    pub fn verify(store: &Store) -> Result<AuditReport, Error> {
        let mut problems = Vec::new();
        let mut problem = |seq: u64, kind: &str, message: String| {
            problems.push(AuditProblem {
                seq,
                kind: kind.into(),
                message,
            })
        };

        let mut records: Vec<(u64, Option<AuditEntry>)> = Vec::new();
        for item in store.raw_iter(TreeName::Audit) {
            let (key, sealed) = item?;
            store.tick();
            let Some(seq) = seq_of_key(&key) else {
                problem(
                    0,
                    "unreadable",
                    format!("a record has a malformed key ({} bytes)", key.len()),
                );
                continue;
            };
            match AuditLog::open_entry(store, seq, &sealed) {
                Ok(entry) => records.push((seq, Some(entry))),
                Err(_) => {
                    problem(seq, "unreadable", format!("entry {seq} does not open with the store key: changed without the key, or moved from another position"));
                    records.push((seq, None));
                }
            }
        }
        // Where each stored hash sits, to tell a link to a later entry (reordering)
        // from a link to nothing (a change).
        let position: HashMap<&str, u64> = records
            .iter()
            .filter_map(|(k, e)| e.as_ref().map(|e| (e.hash.as_str(), *k)))
            .collect();

        enum Prev<'a> {
            Known(&'a str),
            Unknown,
        }
        let mut prev = Prev::Known(GENESIS_HASH);
        let mut expected = 1u64;
        for (key, entry) in &records {
            let key = *key;
            if key > expected {
                problem(
                    expected,
                    "removed",
                    if key - expected == 1 {
                        format!("entry {expected} is missing")
                    } else {
                        format!("entries {expected} to {} are missing", key - 1)
                    },
                );
                prev = Prev::Unknown;
            } else if key < expected {
                problem(
                    key,
                    "reordered",
                    format!("a record is stored at position {key}, before the start of the log"),
                );
            }
            expected = key.saturating_add(1);
            let Some(entry) = entry else {
                prev = Prev::Unknown;
                continue;
            };
            if entry.seq != key {
                problem(
                    key,
                    "reordered",
                    format!("position {key} holds entry {}", entry.seq),
                );
            }
            // A pruned entry's content is gone; its links are still checked.
            if !entry.pruned && entry_hash(entry) != entry.hash {
                problem(
                    key,
                    "changed",
                    format!("entry {key} does not match its hash: its content was changed"),
                );
            }
            if let Prev::Known(prev_hash) = prev {
                if entry.prev_hash != prev_hash {
                    match position.get(entry.prev_hash.as_str()) {
                        Some(&at) if at > key => problem(key, "reordered", format!("entry {key} follows entry {at}, which is stored after it")),
                        Some(&at) => problem(key, "reordered", format!("entry {key} follows entry {at}, not the entry before it")),
                        None if key == 1 => problem(key, "changed", "the first entry does not start the chain".into()),
                        None => problem(key - 1, "changed", format!("entry {} is not the entry that entry {key} follows: it was changed", key - 1)),
                    }
                }
            }
            prev = Prev::Known(&entry.hash);
        }

        let last = records.last().map(|(k, _)| *k).unwrap_or(0);
        match store.get::<AuditHead>(TreeName::Meta, META_AUDIT_HEAD) {
            Err(_) => problem(last, "unreadable", "the audit head record does not open with the store key".into()),
            Ok(None) if !records.is_empty() => problem(last, "truncated", "the audit head record is missing".into()),
            Ok(None) => {}
            Ok(Some(head)) if head.seq > last => problem(
                last + 1,
                "truncated",
                format!("the log should hold {} entries but ends at {last}: the newest entries were removed", head.seq),
            ),
            Ok(Some(head)) if head.seq < last => problem(
                head.seq + 1,
                "changed",
                format!("entries after {} were added outside the log (the head says {})", head.seq, head.seq),
            ),
            Ok(Some(head)) => {
                if let Some((_, Some(entry))) = records.last() {
                    if entry.hash != head.hash {
                        problem(last, "changed", format!("entry {last} is not the newest entry the head recorded"));
                    }
                }
            }
        }
        check_anchor(store, &records, &mut problem);
        Ok(AuditReport {
            entries: records.len() as u64,
            problems,
        })
    }

    /// Records an operator's `--accept-rollback` in the log: what the anchor said
    /// and what the store was. Called at start, before any request is served.
    pub fn note_accepted_rollback(
        store: &Store,
        actor: String,
        at_ms: u64,
    ) -> Result<Option<AuditEntry>, Error> {
        let AnchorCheck::Accepted {
            divergence,
            anchor,
            store: found,
        } = store.anchor_check()
        else {
            return Ok(None);
        };
        let recorded = match anchor {
            Some(a) => format!(
                "commit {}, audit entry {}{}",
                a.commit_seq,
                a.audit_seq,
                a.audit_hash
                    .as_ref()
                    .map(|h| format!(" (hash {h})"))
                    .unwrap_or_default()
            ),
            None => "nothing readable".into(),
        };
        let draft = AuditDraft {
            actor,
            role: None,
            action: "store.accept_rollback".into(),
            tenant: None,
            outcome: AuditOutcome::Ok,
            reason: Some("way2mail-control started with --accept-rollback".into()),
            detail: Some(format!(
                "{divergence}. The anchor recorded {recorded}; the store was at commit {}, \
                 audit entry {}. Started on the store as it was.",
                found.commit_seq, found.audit_seq
            )),
            public_detail: true,
        };
        // Nothing else appends before the socket serves: a writer of its own is safe.
        let log = AuditLog::new();
        let mut batch = Batch::new();
        let entry = log.writer().append(store, &mut batch, draft, at_ms)?;
        store.commit(batch)?;
        Ok(Some(entry))
    }
}

/// Compares the log with the anchor file read now: the anchor's entry must still be
/// there, with the hash it recorded. An anchor behind the log is normal (the
/// process stopped between a commit and the anchor's write).
fn check_anchor(
    store: &Store,
    records: &[(u64, Option<AuditEntry>)],
    problem: &mut impl FnMut(u64, &str, String),
) {
    let last = records.last().map_or(0, |(k, _)| *k);
    let anchor = match anchor::read(store.dir()) {
        Ok(Some(anchor)) => anchor,
        Ok(None) => {
            return problem(
                last,
                "anchor",
                "the store's anchor file is missing: a rolled-back log cannot be told".into(),
            )
        }
        Err(reason) => {
            return problem(
                last,
                "anchor",
                format!("the store's anchor file cannot be read: {reason}"),
            )
        }
    };
    if anchor.audit_seq == 0 {
        return;
    }
    if anchor.audit_seq > last {
        return problem(
            last + 1,
            "truncated",
            format!(
                "the store's anchor recorded entry {} but the log ends at {last}: the newest \
                 entries were lost (a rolled-back or damaged store)",
                anchor.audit_seq
            ),
        );
    }
    let stored = records
        .iter()
        .find(|(k, _)| *k == anchor.audit_seq)
        .and_then(|(_, e)| e.as_ref())
        .map(|e| &e.hash);
    if stored != anchor.audit_hash.as_ref() {
        problem(
            anchor.audit_seq,
            "changed",
            format!(
                "entry {} is not the entry the store's anchor recorded",
                anchor.audit_seq
            ),
        );
    }
}

impl AuditWriter<'_> {
    /// Chains `draft` after the current head and adds it, and the new head, to
    /// `batch`. The entry exists once the batch commits.
    pub fn append(
        &self,
        store: &Store,
        batch: &mut Batch,
        draft: AuditDraft,
        at_ms: u64,
    ) -> Result<AuditEntry, Error> {
        let mut entries = self.append_all(store, batch, vec![draft], at_ms)?;
        entries
            .pop()
            .ok_or_else(|| Error::Crypto("no audit entry appended".into()))
    }

    /// Chains several entries, in order, after the current head (one request that
    /// records more than one fact, such as a notification per tenant), and adds
    /// them and the new head to `batch`.
    pub fn append_all(
        &self,
        store: &Store,
        batch: &mut Batch,
        drafts: Vec<AuditDraft>,
        at_ms: u64,
    ) -> Result<Vec<AuditEntry>, Error> {
        let mut head = AuditLog::head(store)?;
        let mut out = Vec::with_capacity(drafts.len());
        for draft in drafts {
            let seq = head.seq + 1;
            // Sealed with the tenant's key when the tenant has one (or gets one in
            // this batch); an entry about a name that holds no data stays readable.
            let (detail, sealed_detail) = match (&draft.tenant, draft.detail) {
                (Some(t), Some(d))
                    if !draft.public_detail
                        && (store.keyring().existing(t).is_some() || batch.writes_tenant(t)) =>
                {
                    (None, Some(store.seal_field(t, &detail_aad(seq), &d)?))
                }
                (_, d) => (d, None),
            };
            let mut entry = AuditEntry {
                seq,
                at_ms,
                actor: draft.actor,
                role: draft.role,
                action: draft.action,
                tenant: draft.tenant,
                outcome: draft.outcome,
                reason: draft.reason,
                detail,
                sealed_detail,
                pruned: false,
                prev_hash: head.hash,
                hash: String::new(),
            };
            entry.hash = entry_hash(&entry);
            batch.put(TreeName::Audit, audit_key(entry.seq), &entry)?;
            head = AuditHead {
                seq: entry.seq,
                hash: entry.hash.clone(),
            };
            out.push(entry);
        }
        batch.put(TreeName::Meta, META_AUDIT_HEAD, &head)?;
        // Counted (`way2mail_control_audit_entries_total`) when the batch commits.
        batch.note_audit_entries(out.len() as u64);
        Ok(out)
    }
}
