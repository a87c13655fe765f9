//! The node master key (historically "the spool key"): 32 random bytes in a file
//! only the daemon's user can read. It wraps the keyring (`keyring.rs`), whose data
//! keys seal every record. Created on
//! first start (0600, `O_EXCL`, fsynced with its directory); on later starts a file
//! that group or others can access, or that is not exactly 32 bytes, is refused
//! rather than silently used or replaced.

use std::fmt;
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use aws_lc_rs::aead::{LessSafeKey, UnboundKey, AES_256_GCM};
use zeroize::Zeroizing;

use crate::Error;

const KEY_LEN: usize = 32;

/// The node master key: an AES-256-GCM key that seals the keyring file (and, before
/// data keys, sealed records directly). Opaque: `Debug` does not show it,
/// and the raw bytes are wiped after the key schedule is built.
pub struct MasterKey {
    pub(crate) aead: LessSafeKey,
    /// Names the key without revealing it (see [`MasterKey::fingerprint`]).
    fingerprint: String,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

/// What [`MasterKey::load_or_create`] calls the key it loads.
const UNNAMED_KEY: &str = "master key";

impl MasterKey {
    /// Loads the key at `path`, or creates it when the file does not exist; errors
    /// and log lines call it "master key". Daemons and tools name theirs with
    /// [`MasterKey::load_or_create_named`].
    pub fn load_or_create(path: &Path) -> Result<MasterKey, Error> {
        MasterKey::load_or_create_named(path, UNNAMED_KEY)
    }

    /// Loads the key at `path`, or creates it when the file does not exist. `name`
    /// says which key the file is, in the caller's terms and with the setting that
    /// names the file (`` spool key (`[spool] key_file`) ``): every error and log
    /// line about the file starts with it, so that an operator knows which file to
    /// look at. This crate serves several stores and never guesses the name.
    pub fn load_or_create_named(path: &Path, name: &'static str) -> Result<MasterKey, Error> {
        let file = KeyFile { path, name };
        match OpenOptions::new().read(true).open(path) {
            Ok(f) => load(&file, f),
            Err(e) if e.kind() == io::ErrorKind::NotFound => match create(&file) {
                Ok(key) => Ok(key),
                // Another process created it between our open and create: use theirs.
                Err(Error::KeyFile { error, .. })
                    if error.kind() == io::ErrorKind::AlreadyExists =>
                {
                    load(&file, File::open(path).map_err(|e| file.error(e))?)
                }
                Err(e) => Err(e),
            },
            Err(e) => Err(file.error(e)),
        }
    }

    /// Seals `data` directly under this master key (`nonce || ciphertext || tag`,
    /// AES-256-GCM, fresh nonce), for the few files it protects itself: the keyring.
    /// Records are sealed with data keys instead (see `keyring.rs`).
    pub fn seal(&self, aad: &[u8], data: Vec<u8>) -> Result<Vec<u8>, Error> {
        crate::record::seal_master(&self.aead, aad, data)
    }

    /// Opens what [`MasterKey::seal`] sealed under the same `aad`.
    pub fn open(&self, aad: &[u8], record: Vec<u8>) -> Result<Vec<u8>, Error> {
        crate::record::open_master(&self.aead, aad, record)
    }

    /// 16 hex digits of a hash of the key: tells which key sealed something (a
    /// backup) without revealing anything of the key.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// A fresh random key that lives only in memory (tests, benchmarks, tools).
    pub fn generate() -> Result<MasterKey, Error> {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        aws_lc_rs::rand::fill(bytes.as_mut()).map_err(|_| Error::crypto("random generator"))?;
        from_bytes(bytes.as_ref())
    }
}

fn from_bytes(bytes: &[u8]) -> Result<MasterKey, Error> {
    let unbound =
        UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| Error::crypto("AES-256-GCM key"))?;
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(b"way2mail key fingerprint\n");
    ctx.update(bytes);
    let fingerprint = ctx.finish().as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(MasterKey {
        aead: LessSafeKey::new(unbound),
        fingerprint,
    })
}

/// The key file being loaded, and the caller's name for it.
struct KeyFile<'a> {
    path: &'a Path,
    name: &'static str,
}

impl KeyFile<'_> {
    fn error(&self, error: io::Error) -> Error {
        Error::KeyFile {
            name: self.name,
            path: self.path.to_owned(),
            error,
        }
    }
}

fn load(key_file: &KeyFile<'_>, mut file: File) -> Result<MasterKey, Error> {
    let (path, name) = (key_file.path, key_file.name);
    // Checked on the open descriptor, so the file we judge is the file we read.
    let meta = file.metadata().map_err(|e| key_file.error(e))?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(Error::KeyPermissions {
            name,
            path: path.to_owned(),
            mode,
        });
    }
    let format = |reason: String| Error::KeyFormat {
        name,
        path: path.to_owned(),
        reason,
    };
    if !meta.is_file() {
        return Err(format("not a regular file".into()));
    }
    // One byte more than a key, so that a longer file is detected without reading it all.
    let mut buf = Zeroizing::new([0u8; KEY_LEN + 1]);
    let mut len = 0;
    loop {
        let n = file.read(&mut buf[len..]).map_err(|e| key_file.error(e))?;
        if n == 0 || len + n == buf.len() {
            len += n;
            break;
        }
        len += n;
    }
    if len != KEY_LEN {
        return Err(format(format!(
            "expected exactly {KEY_LEN} bytes, found {}",
            if len > KEY_LEN {
                "more".to_owned()
            } else {
                len.to_string()
            }
        )));
    }
    from_bytes(&buf[..KEY_LEN])
}

fn create(key_file: &KeyFile<'_>) -> Result<MasterKey, Error> {
    let (path, name) = (key_file.path, key_file.name);
    let io = |e: io::Error| key_file.error(e);
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(dir) = parent {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io)?;
    }
    let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
    aws_lc_rs::rand::fill(bytes.as_mut()).map_err(|_| Error::crypto("random generator"))?;
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    file.write_all(bytes.as_ref()).map_err(io)?;
    file.sync_all().map_err(io)?;
    // The new directory entry must survive a crash too, or a restart makes a new key
    // and every queued record becomes unreadable.
    if let Some(dir) = parent {
        File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    }
    tracing::info!(path = %path.display(), "created a new {name}");
    from_bytes(bytes.as_ref())
}
