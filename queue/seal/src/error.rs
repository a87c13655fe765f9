//! The one error type of sealing. A record that does not open carries the associated
//! data it was opened under (the sled key, for the spool and the control store), so
//! that its owner can name the record in its own terms.

use std::io;
use std::path::PathBuf;

use crate::KeyId;

#[non_exhaustive]
#[derive(thiserror::Error, Debug)]
pub enum Error {
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    /// The master key file is readable or writable by group or others. `name` is
    /// the caller's name for the key (see [`MasterKey::load_or_create_named`]), as
    /// in every key file error.
    ///
    /// [`MasterKey::load_or_create_named`]: crate::MasterKey::load_or_create_named
    #[error(
        "{name} {} has mode {mode:04o}: group and others must have no access \
         (run `chmod 600 {}`)",
        path.display(),
        path.display()
    )]
    KeyPermissions {
        name: &'static str,
        path: PathBuf,
        mode: u32,
    },
    /// The master key file exists but is not a 32-byte key.
    #[error("{name} {}: {reason}", path.display())]
    KeyFormat {
        name: &'static str,
        path: PathBuf,
        reason: String,
    },
    /// The master key file could not be read or created.
    #[error("{name} {}: {error}", path.display())]
    KeyFile {
        name: &'static str,
        path: PathBuf,
        error: io::Error,
    },
    /// The keyring file cannot be used.
    #[error("keyring {}: {reason}", path.display())]
    Keyring { path: PathBuf, reason: String },
    /// No data key is made for a tenant that was erased.
    #[error("tenant {0} was erased; no new data is stored under that name")]
    Erased(String),
    /// A record failed authentication or is not a sealed record.
    #[error("sealed record is corrupt: {reason}")]
    Corrupt { aad: Vec<u8>, reason: &'static str },
    /// The record was sealed with the data key of a tenant that was erased: it is
    /// unreadable by design (crypto-shredding).
    #[error("sealed record belongs to erased tenant {tenant}: its key was destroyed")]
    Shredded { aad: Vec<u8>, tenant: String },
    /// The record names a data key this keyring never had (another node's record,
    /// or the wrong keyring file).
    #[error("sealed record names data key {key_id}, which this keyring does not hold")]
    UnknownKey { aad: Vec<u8>, key_id: KeyId },
    /// The AEAD primitive, the random generator or the password hash failed.
    #[error("cryptographic failure: {0}")]
    Crypto(String),
}

impl Error {
    /// A failure of the AEAD primitive, the key schedule or the random generator;
    /// `what` names which.
    pub(crate) fn crypto(what: &str) -> Error {
        Error::Crypto(what.to_owned())
    }
}
