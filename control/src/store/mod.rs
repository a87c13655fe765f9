//! The control store: one sled database whose every value is sealed with
//! AES-256-GCM under a data key of the keyring (the spool's record format): a
//! tenant's records under that tenant's key, everything else under the node's own
//! key. Destroying a tenant's key (erasure) makes its records unreadable wherever
//! copies are, backups included. The AAD of a record is its tree name and key, so a
//! sealed value copied to another key or tree does not open. Values are versioned
//! JSON (`{"v":1,"data":…}`).
//!
//! ```text
//!   tree         key                          value                      sealed with
//!   tenants      tenant id                    TenantInfo                 the tenant's key
//!   domains      blind(domain)                DomainInfo (owner)         the tenant's key
//!   credentials  credential id                CredentialRecord (argon2)  the tenant's key
//!   dkim_keys    blind(domain) selector       DkimKeyRecord (PKCS#8)     the tenant's key
//!   suppression  tenant \0 blind_t(address)   SuppressionEntry           the tenant's key
//!   webhooks     tenant \0 webhook id         WebhookRecord (secret)     the tenant's key
//!   suppression_ tenant \0 blind_t(address)   SuppressionCandidate       the tenant's key
//!    candidates  (as in suppression)          (a first bad_domain failure,
//!                                             awaiting a confirming second)
//!   operators    operator name                OperatorRecord (hash, TOTP) system
//!   sessions     SHA-256(token)               SessionRecord              system
//!   audit        seq (u64 big-endian)         AuditEntry                 system (tenant
//!                                                                        details: tenant key)
//!   meta         "snapshot_version" / "audit_head" / "incident_seq:YYYY" / …  system
//!   incidents    incident id                  IncidentInfo               system (contacts:
//!                                                                        tenant key)
//!   billing      tenant id                    BillingRecord              system
//!   receipts     receipt id                   ErasureReceipt (signed)    system
//!   erased       tenant id                    ErasedTenant               system
//! ```
//!
//! `blind(name)` is a keyed hash (the system key's blind index), `blind_t` the same
//! under the tenant's key: no domain name or address is ever a sled key, because
//! sled keeps keys in clear in its files, and a deleted key can linger in them.
//!
//! DKIM private keys have their own tree, apart from the domain records (which hold
//! only the public halves), so that nothing that reads or lists domains ever holds
//! a private key in memory; only signing-key paths (the MTA's snapshot) read them.
//!
//! Writes go through [`Batch`]: all changes of one request (and its audit entry)
//! commit in one sled transaction over every tree, with the store's commit count
//! (`meta/commit_seq`), then the database is flushed and the anchor file rewritten
//! (anchor.rs) before the caller answers. A tenant's first record makes its data
//! key, which is on disk before the transaction commits. Opening compares the store
//! with its anchor and refuses one that lost commits; verify.rs checks every record
//! offline (`way2mail-control --verify-store`).

pub mod anchor;
mod migrate;
pub mod verify;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use base64::Engine as _;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};
use way2mail_seal::{DataKey, KeyId, Keyring, MasterKey};

use crate::error::Error;
use way2mail_daemon::watchdog::Progress;

pub use anchor::{AnchorCheck, AnchorPolicy, StoreOptions};

/// Version of the JSON inside every sealed value.
const RECORD_VERSION: u32 = 1;

/// The trees of the store; the discriminant is the index into [`Store::trees`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TreeName {
    Tenants,
    Domains,
    Credentials,
    Operators,
    Sessions,
    Audit,
    Meta,
    DkimKeys,
    Incidents,
    Suppression,
    Billing,
    Receipts,
    Erased,
    Webhooks,
    SuppressionCandidates,
}

impl TreeName {
    pub const ALL: [TreeName; 15] = [
        TreeName::Tenants,
        TreeName::Domains,
        TreeName::Credentials,
        TreeName::Operators,
        TreeName::Sessions,
        TreeName::Audit,
        TreeName::Meta,
        TreeName::DkimKeys,
        TreeName::Incidents,
        TreeName::Suppression,
        TreeName::Billing,
        TreeName::Receipts,
        TreeName::Erased,
        TreeName::Webhooks,
        TreeName::SuppressionCandidates,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TreeName::Tenants => "tenants",
            TreeName::Domains => "domains",
            TreeName::Credentials => "credentials",
            TreeName::Operators => "operators",
            TreeName::Sessions => "sessions",
            TreeName::Audit => "audit",
            TreeName::Meta => "meta",
            TreeName::DkimKeys => "dkim_keys",
            TreeName::Incidents => "incidents",
            TreeName::Suppression => "suppression",
            TreeName::Billing => "billing",
            TreeName::Receipts => "receipts",
            TreeName::Erased => "erased",
            TreeName::Webhooks => "webhooks",
            TreeName::SuppressionCandidates => "suppression_candidates",
        }
    }

    pub fn from_name(name: &str) -> Option<TreeName> {
        TreeName::ALL.into_iter().find(|t| t.as_str() == name)
    }

    /// Trees whose every record belongs to one tenant and is sealed with its key.
    pub fn is_tenant_owned(self) -> bool {
        matches!(
            self,
            TreeName::Tenants
                | TreeName::Domains
                | TreeName::Credentials
                | TreeName::DkimKeys
                | TreeName::Suppression
                | TreeName::Webhooks
                | TreeName::SuppressionCandidates
        )
    }
}

#[derive(Serialize, Deserialize)]
struct Versioned<T> {
    v: u32,
    data: T,
}

/// Whose key seals a value.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Sealing {
    System,
    Tenant(String),
}

/// One change of a batch: a value to seal and store (`Some`), or a removal.
type Op = (TreeName, Vec<u8>, Option<(Vec<u8>, Sealing)>);

/// The changes of one request, applied atomically by [`Store::commit`].
#[derive(Default)]
pub struct Batch {
    ops: Vec<Op>,
    /// Audit entries chained into this batch (by `AuditWriter`), counted in
    /// `way2mail_control_audit_entries_total` once the batch commits.
    audit_entries: u64,
}

fn encode<T: Serialize>(tree: TreeName, value: &T) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(&Versioned {
        v: RECORD_VERSION,
        data: value,
    })
    .map_err(|e| Error::Crypto(format!("cannot encode a {} record: {e}", tree.as_str())))
}

impl Batch {
    pub fn new() -> Batch {
        Batch::default()
    }

    /// Stores `value` under `key`, sealed with the node's own key (serialized now,
    /// sealed at commit). Not for tenant-owned trees.
    pub fn put<T: Serialize>(
        &mut self,
        tree: TreeName,
        key: impl Into<Vec<u8>>,
        value: &T,
    ) -> Result<(), Error> {
        let json = encode(tree, value)?;
        self.ops
            .push((tree, key.into(), Some((json, Sealing::System))));
        Ok(())
    }

    /// Stores `value` under `key`, sealed with `tenant`'s data key (made at commit
    /// when the tenant has none yet).
    pub fn put_tenant<T: Serialize>(
        &mut self,
        tree: TreeName,
        tenant: &str,
        key: impl Into<Vec<u8>>,
        value: &T,
    ) -> Result<(), Error> {
        let json = encode(tree, value)?;
        self.ops.push((
            tree,
            key.into(),
            Some((json, Sealing::Tenant(tenant.to_owned()))),
        ));
        Ok(())
    }

    pub fn remove(&mut self, tree: TreeName, key: impl Into<Vec<u8>>) {
        self.ops.push((tree, key.into(), None));
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Notes `count` audit entries chained into this batch (the audit writer's
    /// business), for the metrics once it commits.
    pub(crate) fn note_audit_entries(&mut self, count: u64) {
        self.audit_entries += count;
    }

    /// Whether this batch stores a record sealed with `tenant`'s key.
    pub fn writes_tenant(&self, tenant: &str) -> bool {
        self.ops
            .iter()
            .any(|(_, _, v)| matches!(v, Some((_, Sealing::Tenant(t))) if t == tenant))
    }
}

/// What errors and log lines call control's store key file (`key_file`).
pub const STORE_KEY: &str = "control store key (`key_file`)";
/// What errors and log lines call a store key being rotated out.
pub const PREVIOUS_STORE_KEY: &str = "previous control store key (`previous_key_files`)";

/// Whether the store's last write reached the disk: shared with whoever reports the
/// daemon's readiness (`/readyz`), which a failed write turns off until a later
/// write succeeds. Only the write itself counts (the sled transaction, its flush,
/// the `syncfs`), not a batch refused before it (a record for an erased tenant).
#[derive(Debug, Clone, Default)]
pub struct WriteHealth(Arc<Mutex<Option<String>>>);

impl WriteHealth {
    /// `Err` with the reason while the last write has failed.
    pub fn check(&self) -> Result<(), String> {
        match &*self.0.lock().unwrap_or_else(PoisonError::into_inner) {
            None => Ok(()),
            Some(reason) => Err(format!("the last control store write failed: {reason}")),
        }
    }

    fn record(&self, written: &Result<(), Error>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) =
            written.as_ref().err().map(ToString::to_string);
    }
}

/// Where a store lives: its directory, the master key, the keyring.
#[derive(Debug, Clone)]
pub struct StoreFiles {
    pub dir: PathBuf,
    pub key_file: PathBuf,
    pub keyring_file: PathBuf,
    /// Master keys being rotated out (the keyring is re-wrapped at open).
    pub previous_key_files: Vec<PathBuf>,
}

impl StoreFiles {
    /// `dir/store`, `dir/store.key`, `dir/store.keyring`: for tests and tools.
    pub fn in_dir(dir: &Path) -> StoreFiles {
        StoreFiles {
            dir: dir.join("store"),
            key_file: dir.join("store.key"),
            keyring_file: dir.join("store.keyring"),
            previous_key_files: Vec::new(),
        }
    }

    /// Loads the master keys and opens the keyring bound to the store directory.
    pub fn open_keyring(&self) -> Result<Keyring, Error> {
        let master =
            MasterKey::load_or_create_named(&self.key_file, STORE_KEY).map_err(Error::KeyFile)?;
        let previous = self
            .previous_key_files
            .iter()
            .map(|p| MasterKey::load_or_create_named(p, PREVIOUS_STORE_KEY).map_err(Error::KeyFile))
            .collect::<Result<Vec<_>, _>>()?;
        Keyring::open_bound(&self.dir, &self.keyring_file, master, previous).map_err(Error::Key)
    }
}

/// A sealed field opened: its text, or the fact that its tenant was erased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opened {
    Text(String),
    Erased,
}

pub struct Store {
    db: sled::Db,
    dir: PathBuf,
    keyring: Keyring,
    /// Indexed by `TreeName as usize`.
    trees: Vec<sled::Tree>,
    anchor_check: AnchorCheck,
    /// The last commit count; held across a whole commit, so that counts and
    /// anchors advance in order.
    committed: Mutex<u64>,
    progress: Progress,
    /// The store directory, for `syncfs` after each flush (see `commit`).
    dir_handle: std::fs::File,
    /// Whether the last commit's write failed (for readiness).
    write_health: WriteHealth,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (or creates) the store, its master key (0600 when created) and keyring;
    /// records of the version before data keys are sealed again under data keys.
    /// A store that diverged from its anchor is refused ([`Error::RolledBack`]).
    pub fn open(files: &StoreFiles) -> Result<Store, Error> {
        Store::open_with(files, &StoreOptions::default())
    }

    /// [`Store::open`] with options. sled may spin or panic on damaged files: a
    /// daemon runs this under a watchdog (`way2mail_daemon::watchdog`).
    pub fn open_with(files: &StoreFiles, options: &StoreOptions) -> Result<Store, Error> {
        let keyring = files.open_keyring()?;
        Store::open_with_keyring_options(&files.dir, keyring, options)
    }

    pub fn open_with_keyring(dir: &Path, keyring: Keyring) -> Result<Store, Error> {
        Store::open_with_keyring_options(dir, keyring, &StoreOptions::default())
    }

    pub fn open_with_keyring_options(
        dir: &Path,
        keyring: Keyring,
        options: &StoreOptions,
    ) -> Result<Store, Error> {
        let db = way2mail_queue::open_sled(&sled::Config::new().path(dir)).map_err(|source| {
            Error::Open {
                path: dir.to_owned(),
                source,
            }
        })?;
        options.progress.tick();
        let trees = TreeName::ALL
            .iter()
            .map(|t| db.open_tree(t.as_str()))
            .collect::<Result<Vec<_>, _>>()?;
        let mut store = Store {
            db,
            dir: dir.to_owned(),
            keyring,
            trees,
            anchor_check: AnchorCheck::Inspected,
            committed: Mutex::new(0),
            progress: options.progress.clone(),
            dir_handle: std::fs::File::open(dir).map_err(|e| Error::Open {
                path: dir.to_owned(),
                source: e.into(),
            })?,
            write_health: WriteHealth::default(),
        };
        // Compared before anything is written; the anchor is written after the
        // migration (a store from before data keys reads only once migrated).
        let (check, was) = store.check_anchor(options.anchor)?;
        options.progress.tick();
        if check == AnchorCheck::Inspected {
            return Ok(store);
        }
        *store
            .committed
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner) = store.stored_commit_seq()?.unwrap_or(0);
        store.anchor_check = check;
        migrate::run(&store)?;
        let seq = *store
            .committed
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        store.sync_anchor(seq, was.as_ref())?;
        Ok(store)
    }

    /// Whether the last write reached the disk, as a handle that stays current.
    pub fn write_health(&self) -> WriteHealth {
        self.write_health.clone()
    }

    /// What opening found about the store's anchor.
    pub fn anchor_check(&self) -> &AnchorCheck {
        &self.anchor_check
    }

    /// One more record read, for the watchdog of whoever opened the store.
    pub(crate) fn tick(&self) {
        self.progress.tick();
    }

    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn tree(&self, tree: TreeName) -> &sled::Tree {
        &self.trees[tree as usize]
    }

    /// Reads and opens one record; `None` when the key is absent.
    pub fn get<T: DeserializeOwned>(&self, tree: TreeName, key: &[u8]) -> Result<Option<T>, Error> {
        match self.tree(tree).get(key)? {
            None => Ok(None),
            Some(sealed) => self.open_value(tree, key, sealed.to_vec()).map(Some),
        }
    }

    /// Every record of a tree in key order. One unreadable record fails the scan:
    /// policy must never be built from a partly readable store.
    pub fn scan<T: DeserializeOwned>(&self, tree: TreeName) -> Result<Vec<(Vec<u8>, T)>, Error> {
        let mut out = Vec::new();
        for item in self.tree(tree).iter() {
            let (k, v) = item?;
            let value = self.open_value(tree, &k, v.to_vec())?;
            out.push((k.to_vec(), value));
        }
        Ok(out)
    }

    /// Every record whose key starts with `prefix`, in key order; like [`Store::scan`],
    /// one unreadable record fails the whole read.
    pub fn scan_prefix<T: DeserializeOwned>(
        &self,
        tree: TreeName,
        prefix: &[u8],
    ) -> Result<Vec<(Vec<u8>, T)>, Error> {
        let mut out = Vec::new();
        for item in self.tree(tree).scan_prefix(prefix) {
            let (k, v) = item?;
            let value = self.open_value(tree, &k, v.to_vec())?;
            out.push((k.to_vec(), value));
        }
        Ok(out)
    }

    /// The keys starting with `prefix`, in key order, without opening their values
    /// (to remove them).
    pub fn keys_with_prefix(&self, tree: TreeName, prefix: &[u8]) -> Result<Vec<Vec<u8>>, Error> {
        let mut out = Vec::new();
        for key in self.tree(tree).scan_prefix(prefix).keys() {
            out.push(key?.to_vec());
        }
        Ok(out)
    }

    /// The keys of every record of `tree` sealed with `key_id`, read from the record
    /// headers without opening them (erasure).
    pub fn keys_sealed_with(&self, tree: TreeName, key_id: KeyId) -> Result<Vec<Vec<u8>>, Error> {
        let mut out = Vec::new();
        for item in self.tree(tree).iter() {
            let (k, v) = item?;
            if way2mail_seal::key_id_of(&v) == Some(key_id) {
                out.push(k.to_vec());
            }
        }
        Ok(out)
    }

    /// Applies the batch in one transaction over all trees, with the next commit
    /// count, then flushes and rewrites the anchor.
    pub fn commit(&self, mut batch: Batch) -> Result<(), Error> {
        if batch.is_empty() {
            return Ok(());
        }
        if self.anchor_check == AnchorCheck::Inspected {
            return Err(Error::ReadOnly {
                dir: self.dir.clone(),
            });
        }
        let mut committed = self
            .committed
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let seq = *committed + 1;
        batch.put(TreeName::Meta, anchor::META_COMMIT_SEQ, &seq)?;
        let audit_entries = batch.audit_entries;
        let mut sealed = Vec::with_capacity(batch.ops.len());
        for (tree, key, value) in batch.ops {
            let value = match value {
                Some((json, sealing)) => {
                    if tree.is_tenant_owned() != matches!(sealing, Sealing::Tenant(_)) {
                        return Err(Error::Crypto(format!(
                            "internal: a {} record sealed with the wrong kind of key",
                            tree.as_str()
                        )));
                    }
                    let key_for = self.sealing_key(&sealing)?;
                    Some(self.seal_with(&key_for, tree, &key, json)?)
                }
                None => None,
            };
            sealed.push((tree as usize, key, value));
        }
        let trees: Vec<&sled::Tree> = self.trees.iter().collect();
        let written = (|| {
            trees
                .as_slice()
                .transaction(|view| {
                    for (index, key, value) in &sealed {
                        match value {
                            Some(v) => view[*index].insert(key.as_slice(), v.as_slice())?,
                            None => view[*index].remove(key.as_slice())?,
                        };
                    }
                    Ok::<(), ConflictableTransactionError<()>>(())
                })
                .map_err(|e| match e {
                    TransactionError::Storage(e) => Error::Storage(e),
                    TransactionError::Abort(()) => Error::Crypto("transaction aborted".into()),
                })?;
            // Applied: the next commit counts on from here even if the flush fails.
            *committed = seq;
            self.db.flush()?;
            // sled's flush (`sync_file_range`) persists neither the file's size nor the
            // drive's cache: one `syncfs` makes the commit survive a power cut, and must
            // come before the anchor, which may never be ahead of what is on disk.
            rustix::fs::syncfs(&self.dir_handle)
                .map_err(|e| Error::Storage(sled::Error::Io(e.into())))
        })();
        self.write_health.record(&written);
        written?;
        crate::metrics::audit_entries(audit_entries);
        // The change is committed whatever happens to the anchor: one left behind
        // only weakens the check at the next start, so it is logged, not returned.
        if let Err(e) = self
            .current_anchor(seq)
            .and_then(|anchor| self.write_anchor(&anchor))
        {
            tracing::error!(error = %e, "cannot bring the control store's anchor up to date");
        }
        Ok(())
    }

    fn sealing_key(&self, sealing: &Sealing) -> Result<Arc<DataKey>, Error> {
        match sealing {
            Sealing::System => Ok(self.keyring.system()),
            Sealing::Tenant(t) => self.keyring.tenant(t).map_err(|e| match e {
                way2mail_seal::Error::Erased(t) => Error::Erased(t),
                e => Error::Key(e),
            }),
        }
    }

    fn seal_with(
        &self,
        key: &DataKey,
        tree: TreeName,
        sled_key: &[u8],
        json: Vec<u8>,
    ) -> Result<Vec<u8>, Error> {
        key.seal(&aad(tree, sled_key), json)
            .map_err(|e| Error::Crypto(format!("cannot seal a {} record: {e}", tree.as_str())))
    }

    pub(crate) fn open_value<T: DeserializeOwned>(
        &self,
        tree: TreeName,
        key: &[u8],
        sealed: Vec<u8>,
    ) -> Result<T, Error> {
        let corrupt = |reason: String| Error::Corrupt {
            tree: tree.as_str(),
            key: describe_key(tree, key),
            reason,
        };
        let json = match self.keyring.open_record(&aad(tree, key), sealed) {
            Ok(json) => json,
            Err(way2mail_seal::Error::Shredded { tenant, .. }) => {
                return Err(Error::Shredded {
                    tree: tree.as_str(),
                    key: describe_key(tree, key),
                    tenant,
                })
            }
            Err(way2mail_seal::Error::UnknownKey { key_id, .. }) => {
                return Err(corrupt(format!(
                    "sealed with data key {key_id}, which this keyring does not hold"
                )))
            }
            Err(_) => {
                return Err(corrupt(
                    "does not open with its data key (changed or moved)".into(),
                ))
            }
        };
        let record: Versioned<T> =
            serde_json::from_slice(&json).map_err(|e| corrupt(format!("bad JSON: {e}")))?;
        if record.v != RECORD_VERSION {
            return Err(corrupt(format!("unknown record version {}", record.v)));
        }
        Ok(record.data)
    }

    /// Seals a value in the store's record format with the node's key, for
    /// [`Store::audit_put_raw`].
    pub(crate) fn seal_record<T: Serialize>(
        &self,
        tree: TreeName,
        key: &[u8],
        value: &T,
    ) -> Result<Vec<u8>, Error> {
        let json = encode(tree, value)?;
        self.seal_with(&self.keyring.system(), tree, key, json)
    }

    /// Seals one field of a shared record (an audit detail, a notification's
    /// address) with `tenant`'s key, as base64 text; `aad` binds it to its place.
    pub fn seal_field(&self, tenant: &str, aad: &[u8], text: &str) -> Result<String, Error> {
        let key = self.sealing_key(&Sealing::Tenant(tenant.to_owned()))?;
        let sealed = key
            .seal(aad, text.as_bytes())
            .map_err(|e| Error::Crypto(format!("cannot seal a field: {e}")))?;
        Ok(base64::engine::general_purpose::STANDARD.encode(sealed))
    }

    /// Opens what [`Store::seal_field`] sealed; [`Opened::Erased`] once the tenant's
    /// key is gone.
    pub fn open_field(&self, aad: &[u8], sealed: &str) -> Result<Opened, Error> {
        let corrupt = |reason: &str| Error::Corrupt {
            tree: "field",
            key: String::from_utf8_lossy(aad).into_owned(),
            reason: reason.to_owned(),
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(sealed)
            .map_err(|_| corrupt("not base64"))?;
        match self.keyring.open_record(aad, bytes) {
            Ok(plain) => String::from_utf8(plain)
                .map(Opened::Text)
                .map_err(|_| corrupt("not UTF-8")),
            Err(way2mail_seal::Error::Shredded { .. }) => Ok(Opened::Erased),
            Err(_) => Err(corrupt("does not open with its data key")),
        }
    }

    /// The key of a domain's record: its blind index under the node's key.
    pub fn domain_key(&self, domain: &str) -> Vec<u8> {
        self.keyring
            .system()
            .blind_index(domain.as_bytes())
            .to_vec()
    }

    /// The `dkim_keys` key of one selector of a domain.
    pub fn dkim_key(&self, domain: &str, selector: &str) -> Vec<u8> {
        let mut key = self.dkim_prefix(domain);
        key.extend_from_slice(selector.as_bytes());
        key
    }

    /// The prefix of every `dkim_keys` key of a domain (32 bytes).
    pub fn dkim_prefix(&self, domain: &str) -> Vec<u8> {
        self.domain_key(domain)
    }

    /// The `suppression` key of an address of `tenant`: the tenant's prefix and the
    /// address's blind index under the tenant's key (made if it has none yet). The
    /// `suppression_candidates` tree uses the same keys.
    pub fn suppression_key(&self, tenant: &str, address: &str) -> Result<Vec<u8>, Error> {
        let key = self.sealing_key(&Sealing::Tenant(tenant.to_owned()))?;
        let mut out = suppression_prefix(tenant);
        out.extend_from_slice(&key.blind_index(address.trim().to_lowercase().as_bytes()));
        Ok(out)
    }

    /// FORENSICS AND TAMPER TESTS ONLY, bypasses the hash chain: every audit record
    /// as stored (sealed), in key order, with the sequence number of its key.
    pub fn audit_raw(&self) -> Result<Vec<(u64, Vec<u8>)>, Error> {
        let mut out = Vec::new();
        for item in self.tree(TreeName::Audit).iter() {
            let (k, v) = item?;
            out.push((seq_of_key(&k).unwrap_or(u64::MAX), v.to_vec()));
        }
        Ok(out)
    }

    /// FORENSICS AND TAMPER TESTS ONLY, bypasses the hash chain: stores `bytes`
    /// as the sealed audit record at `seq` and flushes.
    pub fn audit_put_raw(&self, seq: u64, bytes: &[u8]) -> Result<(), Error> {
        self.tree(TreeName::Audit)
            .insert(seq.to_be_bytes(), bytes)?;
        self.db.flush()?;
        Ok(())
    }

    /// FORENSICS AND TAMPER TESTS ONLY, bypasses the hash chain: deletes the
    /// audit record at `seq` and flushes.
    pub fn audit_remove_raw(&self, seq: u64) -> Result<(), Error> {
        self.tree(TreeName::Audit).remove(seq.to_be_bytes())?;
        self.db.flush()?;
        Ok(())
    }

    /// Raw iteration for the audit verifier, which must see unreadable records too.
    pub(crate) fn raw_iter(&self, tree: TreeName) -> sled::Iter {
        self.tree(tree).iter()
    }

    pub(crate) fn raw_range_from(&self, tree: TreeName, from: &[u8]) -> sled::Iter {
        self.tree(tree).range(from.to_vec()..)
    }

    /// Every record of every tree as stored (sealed), for backups: `each` gets the
    /// tree, key and sealed value. The caller keeps writers out (the service's
    /// writer lock) so that the copy is one point in time.
    pub fn for_each_raw(
        &self,
        mut each: impl FnMut(TreeName, &[u8], &[u8]) -> Result<(), Error>,
    ) -> Result<u64, Error> {
        let mut n = 0;
        for tree in TreeName::ALL {
            for item in self.tree(tree).iter() {
                let (k, v) = item?;
                each(tree, &k, &v)?;
                n += 1;
            }
        }
        Ok(n)
    }
}

fn aad(tree: TreeName, key: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(tree.as_str().len() + 1 + key.len());
    aad.extend_from_slice(tree.as_str().as_bytes());
    aad.push(0);
    aad.extend_from_slice(key);
    aad
}

/// The audit tree's key for `seq`.
pub fn audit_key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

/// The prefix of every `suppression` key of a tenant: `tenant \0`.
pub fn suppression_prefix(tenant: &str) -> Vec<u8> {
    tenant_prefix(tenant)
}

/// The prefix of every `webhooks` key of a tenant: `tenant \0`.
pub fn webhook_prefix(tenant: &str) -> Vec<u8> {
    tenant_prefix(tenant)
}

/// The `webhooks` key of endpoint `id` of `tenant`: `tenant \0 id`. The id is
/// random (`wh_` and hex digits), not client data, so it may be a key in clear.
pub fn webhook_key(tenant: &str, id: &str) -> Vec<u8> {
    let mut key = tenant_prefix(tenant);
    key.extend_from_slice(id.as_bytes());
    key
}

/// `tenant \0`: tenant ids never hold a NUL, so one tenant's prefix never starts
/// another's keys (`acme` and `acme-2`).
fn tenant_prefix(tenant: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(tenant.len() + 1);
    key.extend_from_slice(tenant.as_bytes());
    key.push(0);
    key
}

/// The sequence number of an audit key, `None` when it is not 8 bytes.
pub fn seq_of_key(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.try_into().ok()?))
}

fn describe_key(tree: TreeName, key: &[u8]) -> String {
    match tree {
        TreeName::Audit => seq_of_key(key).map_or_else(|| hex(key), |s| s.to_string()),
        // Hashes and blind indexes; other keys are names, but show them safely.
        TreeName::Sessions | TreeName::Domains => hex(key),
        TreeName::DkimKeys if key.len() > 32 => {
            format!(
                "{}/{}",
                hex(&key[..32]),
                String::from_utf8_lossy(&key[32..])
            )
        }
        TreeName::Suppression | TreeName::SuppressionCandidates => {
            match key.iter().position(|&b| b == 0) {
                Some(at) => format!(
                    "{}/{}",
                    String::from_utf8_lossy(&key[..at]),
                    hex(&key[at + 1..])
                ),
                None => hex(key),
            }
        }
        TreeName::Webhooks => String::from_utf8_lossy(key).replacen('\0', "/", 1),
        _ => String::from_utf8_lossy(key).into_owned(),
    }
}

pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        // Writing to a String cannot fail.
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&StoreFiles::in_dir(dir.path())).expect("open");
        (dir, store)
    }

    fn raw(store: &Store, tree: TreeName, key: &[u8]) -> Vec<u8> {
        store
            .tree(tree)
            .get(key)
            .expect("raw")
            .expect("present")
            .to_vec()
    }

    /// Control's key files are named as control's (`key_file`, `previous_key_files`)
    /// in errors, never as the MTA's spool key.
    #[test]
    fn key_file_errors_name_controls_own_key() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let files = StoreFiles::in_dir(dir.path());
        std::fs::write(&files.key_file, [7u8; 32]).expect("write");
        std::fs::set_permissions(&files.key_file, std::fs::Permissions::from_mode(0o644))
            .expect("chmod");
        let shown = files.open_keyring().expect_err("0644").to_string();
        assert!(
            shown.starts_with(&format!(
                "control store key (`key_file`) {} has mode 0644",
                files.key_file.display()
            )),
            "{shown}"
        );
        assert!(!shown.to_lowercase().contains("spool"), "{shown}");

        std::fs::set_permissions(&files.key_file, std::fs::Permissions::from_mode(0o600))
            .expect("chmod");
        let old = dir.path().join("old.key");
        std::fs::write(&old, [7u8; 3]).expect("write");
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let files = StoreFiles {
            previous_key_files: vec![old.clone()],
            ..files
        };
        let shown = files.open_keyring().expect_err("3 bytes").to_string();
        assert_eq!(
            shown,
            format!(
                "previous control store key (`previous_key_files`) {}: expected exactly 32 \
                 bytes, found 3",
                old.display()
            )
        );
    }

    #[test]
    fn values_round_trip_and_are_bound_to_their_key() {
        let (_dir, store) = store();
        let mut batch = Batch::new();
        batch
            .put_tenant(TreeName::Tenants, "acme", "acme", &"Acme Corp".to_string())
            .expect("put");
        batch
            .put(TreeName::Operators, "alice", &"Alice".to_string())
            .expect("put");
        store.commit(batch).expect("commit");
        let got: Option<String> = store.get(TreeName::Tenants, b"acme").expect("get");
        assert_eq!(got.as_deref(), Some("Acme Corp"));
        let sealed = raw(&store, TreeName::Tenants, b"acme");
        assert!(!sealed.windows(4).any(|w| w == b"Acme"), "stored in clear");
        let acme = store.keyring().existing("acme").expect("acme's key");
        assert_eq!(way2mail_seal::key_id_of(&sealed), Some(acme.id()));
        let alice = raw(&store, TreeName::Operators, b"alice");
        assert_eq!(
            way2mail_seal::key_id_of(&alice),
            Some(store.keyring().system().id())
        );

        // The same sealed bytes under another key, or in another tree, do not open.
        store
            .tree(TreeName::Tenants)
            .insert(b"globex", sealed.clone())
            .expect("insert");
        assert!(matches!(
            store.get::<String>(TreeName::Tenants, b"globex"),
            Err(Error::Corrupt { .. })
        ));
        store
            .tree(TreeName::Domains)
            .insert(b"acme", sealed)
            .expect("insert");
        assert!(store.get::<String>(TreeName::Domains, b"acme").is_err());
    }

    #[test]
    fn tenant_trees_need_tenant_keys_and_shredding_erases() {
        let (_dir, store) = store();
        let mut batch = Batch::new();
        batch.put(TreeName::Tenants, "acme", &1u32).expect("put");
        assert!(
            store.commit(batch).is_err(),
            "a tenant record under the node's key"
        );
        let mut batch = Batch::new();
        batch
            .put_tenant(TreeName::Meta, "acme", "x", &1u32)
            .expect("put");
        assert!(
            store.commit(batch).is_err(),
            "a node record under a tenant key"
        );

        let mut batch = Batch::new();
        batch
            .put_tenant(TreeName::Tenants, "acme", "acme", &"A".to_string())
            .expect("put");
        batch
            .put_tenant(TreeName::Credentials, "acme", "cr_1", &"C".to_string())
            .expect("put");
        batch
            .put_tenant(TreeName::Tenants, "globex", "globex", &"G".to_string())
            .expect("put");
        store.commit(batch).expect("commit");
        let id = store.keyring().existing("acme").expect("key").id();
        assert_eq!(
            store
                .keys_sealed_with(TreeName::Credentials, id)
                .expect("keys"),
            vec![b"cr_1".to_vec()]
        );
        store.keyring().shred("acme").expect("shred");
        assert!(matches!(
            store.get::<String>(TreeName::Tenants, b"acme"),
            Err(Error::Shredded { .. })
        ));
        assert_eq!(
            store
                .get::<String>(TreeName::Tenants, b"globex")
                .expect("other"),
            Some("G".into())
        );
        let mut batch = Batch::new();
        batch
            .put_tenant(TreeName::Tenants, "acme", "acme", &"again".to_string())
            .expect("put");
        assert!(matches!(store.commit(batch), Err(Error::Erased(_))));
    }

    #[test]
    fn fields_are_sealed_per_tenant() {
        let (_dir, store) = store();
        let sealed = store
            .seal_field("acme", b"audit:7", "contact a@acme.example")
            .expect("seal");
        assert!(!sealed.contains("acme.example"));
        assert_eq!(
            store.open_field(b"audit:7", &sealed).expect("open"),
            Opened::Text("contact a@acme.example".into())
        );
        assert!(
            store.open_field(b"audit:8", &sealed).is_err(),
            "bound to its place"
        );
        store.keyring().shred("acme").expect("shred");
        assert_eq!(
            store.open_field(b"audit:7", &sealed).expect("open"),
            Opened::Erased
        );
    }

    #[test]
    fn names_are_blind_in_keys() {
        let (_dir, store) = store();
        let key = store.domain_key("acme.example");
        assert_eq!(key, store.domain_key("acme.example"));
        assert_ne!(key, store.domain_key("acme.example.net"));
        assert_eq!(key.len(), 32);
        assert!(store
            .dkim_key("acme.example", "sel")
            .starts_with(&store.dkim_prefix("acme.example")));
        let a = store.suppression_key("acme", "X@Example.NET").expect("key");
        assert_eq!(
            a,
            store
                .suppression_key("acme", " x@example.net")
                .expect("key")
        );
        assert_ne!(
            a,
            store
                .suppression_key("globex", "x@example.net")
                .expect("key")
        );
        assert!(a.starts_with(&suppression_prefix("acme")));
        assert!(!a.windows(7).any(|w| w == b"example"));
    }

    #[test]
    fn webhook_keys_stay_in_their_tenant() {
        let key = webhook_key("acme", "wh_0123456789abcdef");
        assert_eq!(key, b"acme\0wh_0123456789abcdef");
        assert!(key.starts_with(&webhook_prefix("acme")));
        assert!(!webhook_key("acme-2", "wh_01").starts_with(&webhook_prefix("acme")));
        assert_eq!(
            describe_key(TreeName::Webhooks, &key),
            "acme/wh_0123456789abcdef"
        );
        assert!(TreeName::Webhooks.is_tenant_owned());
        assert_eq!(TreeName::from_name("webhooks"), Some(TreeName::Webhooks));
    }

    #[test]
    fn suppression_candidates_are_a_tenant_tree_keyed_like_the_list() {
        let (_dir, store) = store();
        let tree = TreeName::SuppressionCandidates;
        assert_eq!(TreeName::from_name("suppression_candidates"), Some(tree));
        assert!(tree.is_tenant_owned());
        let key = store
            .suppression_key("acme", "u@typo.example")
            .expect("key");
        let shown = describe_key(tree, &key);
        assert!(
            shown.starts_with("acme/") && !shown.contains("typo"),
            "{shown}"
        );
        let mut batch = Batch::new();
        batch.put(tree, key.clone(), &1u32).expect("put");
        assert!(store.commit(batch).is_err(), "never under the node's key");
    }

    #[test]
    fn batch_applies_removals_across_trees() {
        let (_dir, store) = store();
        let mut batch = Batch::new();
        batch
            .put_tenant(TreeName::Domains, "acme", "a.example", &1u32)
            .expect("put");
        batch.put(TreeName::Meta, "x", &2u32).expect("put");
        store.commit(batch).expect("commit");
        let mut batch = Batch::new();
        batch.remove(TreeName::Domains, "a.example");
        batch.put(TreeName::Meta, "x", &3u32).expect("put");
        store.commit(batch).expect("commit");
        assert_eq!(
            store
                .get::<u32>(TreeName::Domains, b"a.example")
                .expect("get"),
            None
        );
        assert_eq!(
            store.get::<u32>(TreeName::Meta, b"x").expect("get"),
            Some(3)
        );
    }

    /// Readiness follows the last write: a failed one turns it off, a later
    /// successful one back on; a batch refused before writing changes nothing.
    #[test]
    fn write_health_follows_the_last_write() {
        let (_dir, store) = store();
        let health = store.write_health();
        assert_eq!(health.check(), Ok(()));
        health.record(&Err(Error::Crypto("the disk is full".into())));
        let reason = health.check().expect_err("failed");
        assert!(reason.contains("the disk is full"), "{reason}");
        store.keyring().shred("gone").expect("shred");
        let mut batch = Batch::new();
        batch
            .put_tenant(TreeName::Domains, "gone", "g.example", &1u32)
            .expect("put");
        assert!(store.commit(batch).is_err());
        assert!(health.check().is_err(), "unchanged by a refused batch");
        let mut batch = Batch::new();
        batch.put(TreeName::Meta, "x", &1u32).expect("put");
        store.commit(batch).expect("commit");
        assert_eq!(store.write_health().check(), Ok(()));
    }

    #[test]
    fn prefix_reads_stop_at_the_prefix() {
        let (_dir, store) = store();
        let mut batch = Batch::new();
        for (tenant, n) in [("acme", 1u32), ("acme", 2), ("acme-2", 3), ("b", 4)] {
            let key = store
                .suppression_key(tenant, &format!("u{n}@example.net"))
                .expect("key");
            batch
                .put_tenant(TreeName::Suppression, tenant, key, &n)
                .expect("put");
        }
        store.commit(batch).expect("commit");
        let mut found: Vec<u32> = store
            .scan_prefix::<u32>(TreeName::Suppression, &suppression_prefix("acme"))
            .expect("scan")
            .into_iter()
            .map(|(_, v)| v)
            .collect();
        found.sort();
        assert_eq!(found, [1, 2]);
        assert_eq!(
            store
                .keys_with_prefix(TreeName::Suppression, &suppression_prefix("acme"))
                .expect("keys")
                .len(),
            2
        );
    }
}
