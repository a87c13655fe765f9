//! The control store: one sled database whose every value is sealed with
//! AES-256-GCM (the spool's record format and key file). The AAD of a record is
//! its tree name and key, so a sealed value copied to another key or tree does not
//! open. Values are versioned JSON (`{"v":1,"data":…}`).
//!
//! ```text
//!   tenants      tenant id            -> TenantRecord
//!   domains      domain               -> DomainRecord (owner tenant)
//!   credentials  credential id        -> CredentialRecord (argon2id hash)
//!   operators    operator name        -> OperatorRecord (hash, TOTP secret)
//!   sessions     SHA-256(token)       -> SessionRecord (never the token)
//!   audit        seq (u64 big-endian) -> AuditEntry
//!   meta         "snapshot_version" / "audit_head" / "incident_seq:YYYY"
//!   dkim_keys    domain \0 selector  -> DkimKeyRecord (PKCS#8 private key)
//!   incidents    incident id          -> IncidentInfo (INC-YYYY-NNNN)
//! ```
//!
//! DKIM private keys have their own tree, apart from the domain records (which hold
//! only the public halves), so that nothing that reads or lists domains ever holds
//! a private key in memory; only signing-key paths (the MTA's snapshot) read them.
//!
//! Writes go through [`Batch`]: all changes of one request (and its audit entry)
//! commit in one sled transaction over every tree, then the database is flushed
//! before the caller answers.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};
use way2mail_queue::SpoolKey;

use crate::error::Error;

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
}

impl TreeName {
    pub const ALL: [TreeName; 9] = [
        TreeName::Tenants,
        TreeName::Domains,
        TreeName::Credentials,
        TreeName::Operators,
        TreeName::Sessions,
        TreeName::Audit,
        TreeName::Meta,
        TreeName::DkimKeys,
        TreeName::Incidents,
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
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Versioned<T> {
    v: u32,
    data: T,
}

/// The changes of one request, applied atomically by [`Store::commit`].
#[derive(Default)]
pub struct Batch {
    ops: Vec<(TreeName, Vec<u8>, Option<Vec<u8>>)>,
}

impl Batch {
    pub fn new() -> Batch {
        Batch::default()
    }

    /// Stores `value` under `key` (serialized now, sealed at commit).
    pub fn put<T: Serialize>(
        &mut self,
        tree: TreeName,
        key: impl Into<Vec<u8>>,
        value: &T,
    ) -> Result<(), Error> {
        let json = serde_json::to_vec(&Versioned {
            v: RECORD_VERSION,
            data: value,
        })
        .map_err(|e| Error::Crypto(format!("cannot encode a {} record: {e}", tree.as_str())))?;
        self.ops.push((tree, key.into(), Some(json)));
        Ok(())
    }

    pub fn remove(&mut self, tree: TreeName, key: impl Into<Vec<u8>>) {
        self.ops.push((tree, key.into(), None));
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

pub struct Store {
    db: sled::Db,
    key: SpoolKey,
    /// Indexed by `TreeName as usize`.
    trees: Vec<sled::Tree>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (or creates) the store in `dir`, sealing with the key in `key_file`
    /// (created 0600 when missing).
    pub fn open(dir: &Path, key_file: &Path) -> Result<Store, Error> {
        let key = SpoolKey::load_or_create(key_file).map_err(Error::Key)?;
        Store::open_with_key(dir, key)
    }

    pub fn open_with_key(dir: &Path, key: SpoolKey) -> Result<Store, Error> {
        let db = sled::Config::new()
            .path(dir)
            .open()
            .map_err(|source| Error::Open {
                path: dir.to_owned(),
                source,
            })?;
        let trees = TreeName::ALL
            .iter()
            .map(|t| db.open_tree(t.as_str()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Store { db, key, trees })
    }

    fn tree(&self, tree: TreeName) -> &sled::Tree {
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

    /// Applies the batch in one transaction over all trees, then flushes.
    pub fn commit(&self, batch: Batch) -> Result<(), Error> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut sealed = Vec::with_capacity(batch.ops.len());
        for (tree, key, value) in batch.ops {
            let value = match value {
                Some(json) => Some(self.seal(tree, &key, json)?),
                None => None,
            };
            sealed.push((tree as usize, key, value));
        }
        let trees: Vec<&sled::Tree> = self.trees.iter().collect();
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
        self.db.flush()?;
        Ok(())
    }

    pub(crate) fn seal(&self, tree: TreeName, key: &[u8], json: Vec<u8>) -> Result<Vec<u8>, Error> {
        self.key
            .seal(&aad(tree, key), json)
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
        let json = self
            .key
            .open(&aad(tree, key), sealed)
            .map_err(|_| corrupt("does not open with the store key (changed or moved)".into()))?;
        let record: Versioned<T> =
            serde_json::from_slice(&json).map_err(|e| corrupt(format!("bad JSON: {e}")))?;
        if record.v != RECORD_VERSION {
            return Err(corrupt(format!("unknown record version {}", record.v)));
        }
        Ok(record.data)
    }

    /// Seals a value in the store's record format, for [`Store::audit_put_raw`].
    pub(crate) fn seal_record<T: Serialize>(
        &self,
        tree: TreeName,
        key: &[u8],
        value: &T,
    ) -> Result<Vec<u8>, Error> {
        let json = serde_json::to_vec(&Versioned {
            v: RECORD_VERSION,
            data: value,
        })
        .map_err(|e| Error::Crypto(format!("cannot encode a {} record: {e}", tree.as_str())))?;
        self.seal(tree, key, json)
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

/// The `dkim_keys` key of one selector of a domain: `domain \0 selector`.
pub fn dkim_key(domain: &str, selector: &str) -> Vec<u8> {
    let mut key = dkim_prefix(domain);
    key.extend_from_slice(selector.as_bytes());
    key
}

/// The prefix of every `dkim_keys` key of a domain: `domain \0`.
pub fn dkim_prefix(domain: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(domain.len() + 1);
    key.extend_from_slice(domain.as_bytes());
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
        // Session keys are hashes; other keys are names, but show them safely.
        TreeName::Sessions => hex(key),
        TreeName::DkimKeys => String::from_utf8_lossy(key).replace('\0', "/"),
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
        let key = SpoolKey::generate().expect("key");
        let store = Store::open_with_key(&dir.path().join("db"), key).expect("open");
        (dir, store)
    }

    #[test]
    fn values_round_trip_and_are_bound_to_their_key() {
        let (_dir, store) = store();
        let mut batch = Batch::new();
        batch
            .put(TreeName::Tenants, "acme", &"Acme Corp".to_string())
            .expect("put");
        batch
            .put(TreeName::Tenants, "globex", &"Globex".to_string())
            .expect("put");
        store.commit(batch).expect("commit");
        let got: Option<String> = store.get(TreeName::Tenants, b"acme").expect("get");
        assert_eq!(got.as_deref(), Some("Acme Corp"));
        let raw = store
            .tree(TreeName::Tenants)
            .get(b"acme")
            .expect("raw")
            .expect("present");
        assert!(!raw.windows(4).any(|w| w == b"Acme"), "stored in clear");

        // The same sealed bytes under another key, or in another tree, do not open.
        store
            .tree(TreeName::Tenants)
            .insert(b"globex", raw.clone())
            .expect("insert");
        assert!(matches!(
            store.get::<String>(TreeName::Tenants, b"globex"),
            Err(Error::Corrupt { .. })
        ));
        store
            .tree(TreeName::Domains)
            .insert(b"acme", raw)
            .expect("insert");
        assert!(store.get::<String>(TreeName::Domains, b"acme").is_err());
    }

    #[test]
    fn batch_applies_removals_across_trees() {
        let (_dir, store) = store();
        let mut batch = Batch::new();
        batch
            .put(TreeName::Domains, "a.example", &1u32)
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

    #[test]
    fn prefix_reads_stop_at_the_prefix() {
        let (_dir, store) = store();
        let mut batch = Batch::new();
        for (domain, selector) in [
            ("a.example", "s1"),
            ("a.example", "s2"),
            ("a.example.net", "s1"),
            ("b.example", "s1"),
        ] {
            batch
                .put(
                    TreeName::DkimKeys,
                    dkim_key(domain, selector),
                    &format!("{domain}/{selector}"),
                )
                .expect("put");
        }
        store.commit(batch).expect("commit");
        let found: Vec<String> = store
            .scan_prefix::<String>(TreeName::DkimKeys, &dkim_prefix("a.example"))
            .expect("scan")
            .into_iter()
            .map(|(_, v)| v)
            .collect();
        assert_eq!(found, ["a.example/s1", "a.example/s2"]);
        let keys = store
            .keys_with_prefix(TreeName::DkimKeys, &dkim_prefix("a.example"))
            .expect("keys");
        assert_eq!(
            keys,
            [dkim_key("a.example", "s1"), dkim_key("a.example", "s2")]
        );
    }
}
