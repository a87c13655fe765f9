//! The keyring: one AES-256-GCM data key per tenant (and one for the node's own
//! records), wrapped under the node master key. Every sealed record names the data
//! key that sealed it (see `record.rs`), so destroying one tenant's key makes all of
//! that tenant's records unreadable at once, wherever copies of them are: in the
//! store, in stale pages of its files, in backups (crypto-shredding). Backups never
//! carry the keyring; that is what lets an erasure reach into them.
//!
//! ```text
//!   file:  "way2mail-keyring 1\n" || master.seal(AAD "way2mail-keyring", JSON)
//!   JSON:  {"v":1,"index":HEX32,
//!           "keys":[{"id":N,"owner":"system"|{"tenant":T},"key":HEX32,"created_ms":N}],
//!           "erased":[{"tenant":T,"key_id":N|null,"at_ms":N}]}
//! ```
//!
//! The file is rewritten whole on every change (`files::replace_wiping`: atomic,
//! the replaced content zeroed), and a new key is on disk before anything sealed
//! with it can be. Rotating the master key re-wraps this one file; no record is
//! rewritten. A tenant whose key was shredded stays in `erased`, so that no new key
//! is ever made under its name and records left under its old key id (a restored
//! backup, say) are known to be erased, not lost.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

use way2mail_daemon::files;
use way2mail_daemon::time::now_ms;

use crate::data_key::{DataKey, Erasure, Lookup, Owner};
use crate::{Error, KeyId, MasterKey};

const MAGIC: &[u8] = b"way2mail-keyring 1\n";
const AAD: &[u8] = b"way2mail-keyring";
const VERSION: u32 = 1;
const KEY_LEN: usize = 32;
/// In a store's directory: the system key id of the keyring it belongs to.
pub const BOUND_FILE: &str = "keyring.id";

/// A tenant's key as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantKey {
    pub tenant: String,
    pub key_id: KeyId,
    pub created_ms: u64,
}

#[derive(Serialize, Deserialize)]
struct FileKey {
    id: KeyId,
    owner: Owner,
    key: String,
    created_ms: u64,
}

impl Drop for FileKey {
    fn drop(&mut self) {
        self.key.zeroize();
    }
}

#[derive(Serialize, Deserialize)]
struct FileContent {
    v: u32,
    keys: Vec<FileKey>,
    #[serde(default)]
    erased: Vec<Erasure>,
}

#[derive(Default)]
struct State {
    keys: HashMap<KeyId, Arc<DataKey>>,
    /// Key material by id, for rewriting the file; wiped on drop.
    material: HashMap<KeyId, Zeroizing<[u8; KEY_LEN]>>,
    tenants: HashMap<String, KeyId>,
    system: Option<KeyId>,
    erased: Vec<Erasure>,
}

impl State {
    fn add(
        &mut self,
        id: KeyId,
        owner: Owner,
        created_ms: u64,
        bytes: Zeroizing<[u8; KEY_LEN]>,
    ) -> Result<Arc<DataKey>, Error> {
        let key = Arc::new(DataKey::from_bytes(
            id,
            owner.clone(),
            created_ms,
            bytes.as_ref(),
        )?);
        match owner {
            Owner::System => self.system = Some(id),
            Owner::Tenant(t) => {
                self.tenants.insert(t, id);
            }
        }
        self.keys.insert(id, Arc::clone(&key));
        self.material.insert(id, bytes);
        Ok(key)
    }

    fn erased(&self, tenant: &str) -> Option<&Erasure> {
        self.erased.iter().find(|e| e.tenant == tenant)
    }

    fn fresh_id(&self) -> Result<KeyId, Error> {
        loop {
            let mut b = [0u8; 8];
            aws_lc_rs::rand::fill(&mut b).map_err(|_| Error::crypto("random generator"))?;
            let id = KeyId(u64::from_be_bytes(b));
            let used = id.0 == 0
                || self.keys.contains_key(&id)
                || self.erased.iter().any(|e| e.key_id == Some(id));
            if !used {
                return Ok(id);
            }
        }
    }

    fn content(&self) -> FileContent {
        let mut keys: Vec<FileKey> = self
            .keys
            .values()
            .map(|k| FileKey {
                id: k.id(),
                owner: k.owner().clone(),
                key: hex(self.material[&k.id()].as_ref()),
                created_ms: k.created_ms(),
            })
            .collect();
        keys.sort_by_key(|k| k.id);
        FileContent {
            v: VERSION,
            keys,
            erased: self.erased.clone(),
        }
    }
}

struct Inner {
    /// `None`: in memory only (tests, benchmarks).
    path: Option<PathBuf>,
    master: MasterKey,
    /// Made with the keyring and never changed.
    system: Arc<DataKey>,
    state: RwLock<State>,
    /// Serializes changes: each rewrites the whole file.
    changing: Mutex<()>,
}

/// The node's data keys; clones share one keyring.
#[derive(Clone)]
pub struct Keyring {
    inner: Arc<Inner>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

fn random_key() -> Result<Zeroizing<[u8; KEY_LEN]>, Error> {
    let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
    aws_lc_rs::rand::fill(bytes.as_mut()).map_err(|_| Error::crypto("random generator"))?;
    Ok(bytes)
}

impl Keyring {
    /// Opens the keyring at `path`, creating it (with a system key) when missing.
    pub fn open(path: &Path, master: MasterKey) -> Result<Keyring, Error> {
        Keyring::open_rotating(path, master, Vec::new())
    }

    /// Opens the keyring at `path` sealed with `master` or, during a master-key
    /// rotation, with one of `previous`: then it is re-wrapped under `master` at
    /// once (only this file is rewritten). Creates it when missing.
    pub fn open_rotating(
        path: &Path,
        master: MasterKey,
        previous: Vec<MasterKey>,
    ) -> Result<Keyring, Error> {
        let keyring = match std::fs::read(path) {
            Ok(bytes) => {
                let (content, rewrap) = read(path, &bytes, &master, &previous)?;
                let keyring = Keyring::from_content(Some(path.to_owned()), master, content)?;
                if rewrap {
                    keyring.save_locked(&keyring.read())?;
                    tracing::warn!(path = %path.display(), "keyring re-wrapped under the new master key");
                }
                keyring
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let keyring = Keyring::new_with_system(Some(path.to_owned()), master)?;
                keyring.save_locked(&keyring.read())?;
                tracing::info!(path = %path.display(), "created a new keyring");
                keyring
            }
            Err(e) => return Err(keyring_error(path, e.to_string())),
        };
        Ok(keyring)
    }

    /// Opens the keyring of the store in `store_dir` (the spool, control's store),
    /// like [`Keyring::open_rotating`], and checks that the two belong together: the
    /// store directory holds `keyring.id`, the id of its keyring's system key. A
    /// missing keyring for a store that already had one is refused rather than
    /// replaced by a new one (under which nothing stored would open), and so is
    /// another store's keyring.
    pub fn open_bound(
        store_dir: &Path,
        path: &Path,
        master: MasterKey,
        previous: Vec<MasterKey>,
    ) -> Result<Keyring, Error> {
        let marker = store_dir.join(BOUND_FILE);
        let bound = match std::fs::read_to_string(&marker) {
            Ok(text) => Some(text.lines().next().unwrap_or_default().trim().to_owned()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(keyring_error(&marker, e.to_string())),
        };
        if let Some(id) = &bound {
            if !path.exists() {
                return Err(keyring_error(
                    path,
                    format!(
                        "it is missing, but {} was sealed with the keyring whose system key is {id}; \
                         restore that keyring file (a new one could open nothing stored)",
                        store_dir.display()
                    ),
                ));
            }
        }
        let keyring = Keyring::open_rotating(path, master, previous)?;
        let mine = keyring.system().id().to_string();
        match bound {
            Some(id) if id == mine => {}
            Some(id) => {
                return Err(keyring_error(
                    path,
                    format!(
                    "it is not the keyring of {} (its system key is {mine}, the store's is {id})",
                    store_dir.display()
                ),
                ))
            }
            None => keyring.bind(store_dir)?,
        }
        Ok(keyring)
    }

    /// Marks `store_dir` as sealed with this keyring (`keyring.id`); restores write
    /// it into the directory they build.
    pub fn bind(&self, store_dir: &Path) -> Result<(), Error> {
        let marker = store_dir.join(BOUND_FILE);
        std::fs::DirBuilder::new()
            .recursive(true)
            .create(store_dir)
            .map_err(|e| keyring_error(store_dir, e.to_string()))?;
        let where_ = self
            .path()
            .map_or_else(|| "in memory".to_owned(), |p| p.display().to_string());
        let text = format!(
            "{}\n# the system key id of the keyring {where_}\n",
            self.system().id()
        );
        files::replace_wiping(&marker, text.as_bytes())
            .map_err(|e| keyring_error(&marker, e.to_string()))
    }

    /// Where the keyring of the store in `store_dir` lives when its configuration
    /// does not say: beside the directory, never inside it (`/var/spool/way2mail`
    /// → `/var/spool/way2mail.keyring`). `None` when the directory has no name of
    /// its own to add to (`.`, `/`).
    pub fn beside(store_dir: &Path) -> Option<std::path::PathBuf> {
        let normal: std::path::PathBuf = store_dir.components().collect();
        match normal.file_name() {
            Some(name)
                if normal
                    .components()
                    .next_back()
                    .is_some_and(|c| matches!(c, std::path::Component::Normal(_))) =>
            {
                let mut file = name.to_owned();
                file.push(".keyring");
                Some(normal.with_file_name(file))
            }
            _ => None,
        }
    }

    /// Opens an existing keyring without ever creating or rewriting one (tools run
    /// beside a stopped daemon).
    pub fn open_existing(path: &Path, master: MasterKey) -> Result<Keyring, Error> {
        let bytes = std::fs::read(path).map_err(|e| keyring_error(path, e.to_string()))?;
        let (content, _) = read(path, &bytes, &master, &[])?;
        Keyring::from_content(Some(path.to_owned()), master, content)
    }

    /// A keyring that lives only in memory, with a fresh master and system key.
    pub fn ephemeral() -> Result<Keyring, Error> {
        Keyring::new_with_system(None, MasterKey::generate()?)
    }

    fn new_with_system(path: Option<PathBuf>, master: MasterKey) -> Result<Keyring, Error> {
        let mut state = State::default();
        let id = state.fresh_id()?;
        let system = state.add(id, Owner::System, now_ms(), random_key()?)?;
        Ok(Keyring::with_state(path, master, system, state))
    }

    fn with_state(
        path: Option<PathBuf>,
        master: MasterKey,
        system: Arc<DataKey>,
        state: State,
    ) -> Keyring {
        Keyring {
            inner: Arc::new(Inner {
                path,
                master,
                system,
                state: RwLock::new(state),
                changing: Mutex::new(()),
            }),
        }
    }

    fn from_content(
        path: Option<PathBuf>,
        master: MasterKey,
        content: FileContent,
    ) -> Result<Keyring, Error> {
        let where_ = path.clone().unwrap_or_default();
        let mut state = State::default();
        for k in &content.keys {
            let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
            if !unhex(&k.key, bytes.as_mut()) {
                return Err(keyring_error(
                    &where_,
                    format!("key {} is not 32 hex bytes", k.id),
                ));
            }
            if state.keys.contains_key(&k.id) {
                return Err(keyring_error(
                    &where_,
                    format!("key {} appears twice", k.id),
                ));
            }
            state.add(k.id, k.owner.clone(), k.created_ms, bytes)?;
        }
        state.erased = content.erased.clone();
        let Some(system) = state.system.and_then(|id| state.keys.get(&id).cloned()) else {
            return Err(keyring_error(&where_, "it has no system key".into()));
        };
        Ok(Keyring::with_state(path, master, system, state))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        // Nothing panics while holding this lock; the maps stay valid if it did.
        self.inner
            .state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.inner
            .state
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes `state` to the file (nothing for an in-memory keyring). Called with
    /// `changing` held, before the new state is made visible.
    fn save_locked(&self, state: &State) -> Result<(), Error> {
        let Some(path) = &self.inner.path else {
            return Ok(());
        };
        let json = Zeroizing::new(
            serde_json::to_vec(&state.content()).map_err(|e| keyring_error(path, e.to_string()))?,
        );
        let sealed = self.inner.master.seal(AAD, json.to_vec())?;
        let mut file = Vec::with_capacity(MAGIC.len() + sealed.len());
        file.extend_from_slice(MAGIC);
        file.extend_from_slice(&sealed);
        files::replace_wiping(path, &file).map_err(|e| keyring_error(path, e.to_string()))
    }

    pub fn path(&self) -> Option<&Path> {
        self.inner.path.as_deref()
    }

    /// The key sealing the node's own records.
    pub fn system(&self) -> Arc<DataKey> {
        Arc::clone(&self.inner.system)
    }

    /// The tenant's key, made (and on disk) first if it has none yet. Fails with
    /// [`Error::Erased`] for a tenant that was erased: its name is never reused.
    pub fn tenant(&self, tenant: &str) -> Result<Arc<DataKey>, Error> {
        if let Some(key) = self.existing(tenant) {
            return Ok(key);
        }
        let _changing = self
            .inner
            .changing
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(key) = self.existing(tenant) {
            return Ok(key);
        }
        if self.read().erased(tenant).is_some() {
            return Err(Error::Erased(tenant.to_owned()));
        }
        // Built on a copy and saved before anyone can seal with it.
        let mut next = self.copy();
        let id = next.fresh_id()?;
        let key = next.add(
            id,
            Owner::Tenant(tenant.to_owned()),
            now_ms(),
            random_key()?,
        )?;
        self.save_locked(&next)?;
        *self.write() = next;
        tracing::info!(%tenant, key_id = %id, "created a tenant data key");
        Ok(key)
    }

    /// Makes the keys of every tenant in `tenants` that has none (and was not
    /// erased), with one write of the file; returns how many were made.
    pub fn ensure_tenants<'a>(
        &self,
        tenants: impl IntoIterator<Item = &'a str>,
    ) -> Result<usize, Error> {
        let wanted: Vec<&str> = tenants.into_iter().collect();
        let missing = |state: &State| -> Vec<String> {
            let mut m: Vec<String> = wanted
                .iter()
                .filter(|t| !state.tenants.contains_key(**t) && state.erased(t).is_none())
                .map(|t| (*t).to_owned())
                .collect();
            m.sort();
            m.dedup();
            m
        };
        if missing(&self.read()).is_empty() {
            return Ok(0);
        }
        let _changing = self
            .inner
            .changing
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut next = self.copy();
        let todo = missing(&next);
        for tenant in &todo {
            let id = next.fresh_id()?;
            next.add(id, Owner::Tenant(tenant.clone()), now_ms(), random_key()?)?;
        }
        if todo.is_empty() {
            return Ok(0);
        }
        self.save_locked(&next)?;
        *self.write() = next;
        tracing::info!(made = todo.len(), "created tenant data keys");
        Ok(todo.len())
    }

    /// The tenant's key if it has one.
    pub fn existing(&self, tenant: &str) -> Option<Arc<DataKey>> {
        let state = self.read();
        state
            .tenants
            .get(tenant)
            .and_then(|id| state.keys.get(id))
            .cloned()
    }

    pub fn lookup(&self, id: KeyId) -> Lookup {
        let state = self.read();
        if let Some(k) = state.keys.get(&id) {
            return Lookup::Key(Arc::clone(k));
        }
        match state.erased.iter().find(|e| e.key_id == Some(id)) {
            Some(e) => Lookup::Erased(e.clone()),
            None => Lookup::Unknown,
        }
    }

    /// Whether `tenant` was erased here.
    pub fn erasure(&self, tenant: &str) -> Option<Erasure> {
        self.read().erased(tenant).cloned()
    }

    /// Destroys the tenant's key (crypto-shredding) and remembers the tenant as
    /// erased. Idempotent: a second call returns the first erasure.
    pub fn shred(&self, tenant: &str) -> Result<Erasure, Error> {
        let _changing = self
            .inner
            .changing
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(done) = self.read().erased(tenant) {
            return Ok(done.clone());
        }
        let mut next = self.copy();
        let key_id = next.tenants.remove(tenant);
        if let Some(id) = key_id {
            next.keys.remove(&id);
            next.material.remove(&id);
        }
        let erasure = Erasure {
            tenant: tenant.to_owned(),
            key_id,
            at_ms: now_ms(),
        };
        next.erased.push(erasure.clone());
        self.save_locked(&next)?;
        *self.write() = next;
        tracing::warn!(%tenant, key_id = ?key_id.map(|k| k.to_string()), "tenant data key shredded");
        Ok(erasure)
    }

    /// Every tenant with a key here.
    pub fn tenants(&self) -> Vec<TenantKey> {
        let state = self.read();
        let mut out: Vec<TenantKey> = state
            .tenants
            .iter()
            .filter_map(|(t, id)| {
                state.keys.get(id).map(|k| TenantKey {
                    tenant: t.clone(),
                    key_id: *id,
                    created_ms: k.created_ms(),
                })
            })
            .collect();
        out.sort_by(|a, b| a.tenant.cmp(&b.tenant));
        out
    }

    /// Every erasure, oldest first.
    pub fn erasures(&self) -> Vec<Erasure> {
        self.read().erased.clone()
    }

    /// Every key id that can open records here (system and tenants).
    pub fn key_ids(&self) -> Vec<KeyId> {
        let mut ids: Vec<KeyId> = self.read().keys.keys().copied().collect();
        ids.sort();
        ids
    }

    /// Opens a record sealed by a key of this keyring under `aad` (`record.rs`).
    pub fn open_record(&self, aad: &[u8], record: impl AsRef<[u8]>) -> Result<Vec<u8>, Error> {
        crate::record::open(|id| self.lookup(id), aad, record.as_ref())
    }

    /// Opens what was sealed with the master key itself before data keys existed
    /// (`MasterKey::seal` format): files of that version, read once while upgrading.
    pub fn open_with_master(&self, aad: &[u8], record: Vec<u8>) -> Result<Vec<u8>, Error> {
        self.inner.master.open(aad, record)
    }

    /// The master key, for records of the version before data keys (read once by
    /// the migration, never written).
    pub fn master(&self) -> &MasterKey {
        &self.inner.master
    }

    fn copy(&self) -> State {
        let s = self.read();
        State {
            keys: s.keys.clone(),
            material: s
                .material
                .iter()
                .map(|(id, m)| (*id, Zeroizing::new(**m)))
                .collect(),
            tenants: s.tenants.clone(),
            system: s.system,
            erased: s.erased.clone(),
        }
    }
}

/// Parses and opens a keyring file; the flag says it was sealed with a previous
/// master key and must be re-wrapped.
fn read(
    path: &Path,
    bytes: &[u8],
    master: &MasterKey,
    previous: &[MasterKey],
) -> Result<(FileContent, bool), Error> {
    let Some(sealed) = bytes.strip_prefix(MAGIC) else {
        return Err(keyring_error(
            path,
            "not a keyring file (wrong header)".into(),
        ));
    };
    let mut opened = None;
    for (i, key) in std::iter::once(master).chain(previous.iter()).enumerate() {
        if let Ok(json) = key.open(AAD, sealed.to_vec()) {
            opened = Some((Zeroizing::new(json), i > 0));
            break;
        }
    }
    let Some((json, rewrap)) = opened else {
        return Err(keyring_error(
            path,
            "it does not open with the master key (wrong key file, or the keyring was altered)"
                .into(),
        ));
    };
    let content: FileContent = serde_json::from_slice(&json)
        .map_err(|e| keyring_error(path, format!("unreadable content: {e}")))?;
    if content.v != VERSION {
        return Err(keyring_error(
            path,
            format!("unknown version {}", content.v),
        ));
    }
    Ok((content, rewrap))
}

fn keyring_error(path: &Path, reason: String) -> Error {
    Error::Keyring {
        path: path.to_owned(),
        reason,
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

fn unhex(text: &str, out: &mut [u8]) -> bool {
    let t = text.as_bytes();
    if t.len() != out.len() * 2 {
        return false;
    }
    let val = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    for (i, slot) in out.iter_mut().enumerate() {
        match (val(t[2 * i]), val(t[2 * i + 1])) {
            (Some(h), Some(l)) => *slot = h << 4 | l,
            _ => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_place_is_beside_the_store() {
        let beside = |p: &str| Keyring::beside(Path::new(p));
        assert_eq!(beside("./var/spool"), Some("./var/spool.keyring".into()));
        assert_eq!(
            beside("/var/spool/way2mail/"),
            Some("/var/spool/way2mail.keyring".into())
        );
        assert_eq!(beside("spool"), Some("spool.keyring".into()));
        assert_eq!(beside("."), None);
        assert_eq!(beside("/"), None);
        assert_eq!(beside("a/.."), None);
    }

    fn master(dir: &Path, name: &str) -> MasterKey {
        MasterKey::load_or_create(&dir.join(name)).expect("master")
    }

    #[test]
    fn keys_persist_and_records_open_after_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keyring");
        let ring = Keyring::open(&path, master(dir.path(), "m")).expect("create");
        let acme = ring.tenant("acme").expect("acme key");
        let sealed = acme.seal(b"k", b"secret").expect("seal");
        let system_id = ring.system().id();
        drop(ring);
        let ring = Keyring::open(&path, master(dir.path(), "m")).expect("reopen");
        assert_eq!(ring.system().id(), system_id);
        assert_eq!(ring.existing("acme").expect("kept").id(), acme.id());
        assert_eq!(ring.open_record(b"k", sealed).expect("open"), b"secret");
        let raw = std::fs::read(&path).expect("raw");
        let hexkey = hex(ring.copy().material[&acme.id()].as_ref());
        assert!(
            !raw.windows(16).any(|w| w == &hexkey.as_bytes()[..16]),
            "wrapped"
        );
    }

    #[test]
    fn shredding_makes_records_unreadable_and_the_name_unusable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keyring");
        let ring = Keyring::open(&path, master(dir.path(), "m")).expect("create");
        let key = ring.tenant("acme").expect("key");
        let sealed = key.seal(b"k", b"mail").expect("seal");
        let erasure = ring.shred("acme").expect("shred");
        assert_eq!(erasure.key_id, Some(key.id()));
        assert!(matches!(ring.lookup(key.id()), Lookup::Erased(_)));
        assert!(matches!(
            ring.open_record(b"k", sealed.clone()),
            Err(Error::Shredded { .. })
        ));
        assert!(matches!(ring.tenant("acme"), Err(Error::Erased(_))));
        assert_eq!(ring.shred("acme").expect("again"), erasure);
        drop(ring);
        let ring = Keyring::open(&path, master(dir.path(), "m")).expect("reopen");
        assert!(matches!(
            ring.open_record(b"k", sealed),
            Err(Error::Shredded { .. })
        ));
        assert!(ring.existing("acme").is_none());
        // A tenant that never had a key can be marked erased too.
        let none = ring.shred("never").expect("shred");
        assert_eq!(none.key_id, None);
        assert!(matches!(ring.tenant("never"), Err(Error::Erased(_))));
    }

    #[test]
    fn rotation_rewraps_the_file_and_records_still_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keyring");
        let ring = Keyring::open(&path, master(dir.path(), "old")).expect("create");
        let sealed = ring
            .tenant("acme")
            .expect("key")
            .seal(b"k", b"x")
            .expect("seal");
        drop(ring);
        // The new master alone cannot open it.
        let e = Keyring::open(&path, master(dir.path(), "new")).expect_err("wrong master");
        assert!(
            e.to_string().contains("does not open with the master key"),
            "{e}"
        );
        let ring = Keyring::open_rotating(
            &path,
            master(dir.path(), "new"),
            vec![master(dir.path(), "old")],
        )
        .expect("rotate");
        assert_eq!(ring.open_record(b"k", sealed.clone()).expect("open"), b"x");
        drop(ring);
        let ring = Keyring::open(&path, master(dir.path(), "new")).expect("new master now");
        assert_eq!(ring.open_record(b"k", sealed).expect("open"), b"x");
        assert!(Keyring::open_existing(&path, master(dir.path(), "old")).is_err());
    }

    #[test]
    fn damaged_files_are_refused_not_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keyring");
        drop(Keyring::open(&path, master(dir.path(), "m")).expect("create"));
        let mut raw = std::fs::read(&path).expect("raw");
        let n = raw.len() - 3;
        raw[n] ^= 1;
        std::fs::write(&path, &raw).expect("write");
        assert!(Keyring::open(&path, master(dir.path(), "m")).is_err());
        assert_eq!(std::fs::read(&path).expect("raw"), raw, "left as it was");
        std::fs::write(&path, b"junk").expect("write");
        let e = Keyring::open(&path, master(dir.path(), "m")).expect_err("junk");
        assert!(e.to_string().contains("wrong header"), "{e}");
        let missing = dir.path().join("none");
        assert!(Keyring::open_existing(&missing, master(dir.path(), "m")).is_err());
        assert!(!missing.exists());
    }

    #[test]
    fn a_store_refuses_a_missing_or_foreign_keyring() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = dir.path().join("store");
        let path = dir.path().join("keyring");
        let ring =
            Keyring::open_bound(&store, &path, master(dir.path(), "m"), vec![]).expect("first");
        let id = ring.system().id();
        drop(ring);
        let again =
            Keyring::open_bound(&store, &path, master(dir.path(), "m"), vec![]).expect("again");
        assert_eq!(again.system().id(), id);
        drop(again);
        std::fs::rename(&path, dir.path().join("moved")).expect("move");
        let e = Keyring::open_bound(&store, &path, master(dir.path(), "m"), vec![])
            .expect_err("missing");
        assert!(e.to_string().contains("restore that keyring file"), "{e}");
        assert!(!path.exists(), "no new keyring was made");
        let other = dir.path().join("other");
        drop(Keyring::open(&other, master(dir.path(), "m")).expect("other"));
        std::fs::copy(&other, &path).expect("copy");
        let e = Keyring::open_bound(&store, &path, master(dir.path(), "m"), vec![])
            .expect_err("foreign");
        assert!(e.to_string().contains("is not the keyring of"), "{e}");
    }

    #[test]
    fn keys_for_many_tenants_are_made_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keyring");
        let ring = Keyring::open(&path, master(dir.path(), "m")).expect("create");
        ring.tenant("old").expect("old");
        ring.shred("gone").expect("shred");
        let made = ring
            .ensure_tenants(["old", "a", "b", "a", "gone"])
            .expect("ensure");
        assert_eq!(made, 2);
        assert!(ring.existing("a").is_some() && ring.existing("b").is_some());
        assert!(
            ring.existing("gone").is_none(),
            "an erased name gets no key"
        );
        assert_eq!(ring.ensure_tenants(["a", "b"]).expect("again"), 0);
        drop(ring);
        let ring = Keyring::open(&path, master(dir.path(), "m")).expect("reopen");
        assert_eq!(ring.tenants().len(), 3);
    }

    #[test]
    fn blind_indexes_are_per_key() {
        let ring = Keyring::ephemeral().expect("ring");
        let a = ring.tenant("a").expect("a");
        let b = ring.tenant("b").expect("b");
        assert_eq!(
            a.blind_index(b"x@example.net"),
            a.blind_index(b"x@example.net")
        );
        assert_ne!(
            a.blind_index(b"x@example.net"),
            b.blind_index(b"x@example.net")
        );
        assert_ne!(a.blind_index(b"x"), a.blind_index(b"y"));
    }
}
