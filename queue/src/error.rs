//! The one error type of the spool. Callers branch on it to choose SMTP replies:
//! `Unhealthy` and `Locked` mean "stop accepting" (`421 4.3.2`), `NoSpace` means the
//! filesystem is full (`452 4.3.1`), `Storage`/`Io` on enqueue mean the message was
//! not accepted (`451 4.3.0`). `RolledBack` only comes from opening: the daemon
//! does not start.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong in the spool.
#[non_exhaustive]
#[derive(thiserror::Error, Debug)]
pub enum Error {
    /// Another process (or another `Spool` in this process) holds the spool lock.
    #[error(
        "spool {} is in use by a running way2mail-mta (its lock is held); \
         stop that process or choose another spool path",
        path.display()
    )]
    Locked { path: PathBuf },
    /// The spool lost committed writes (or the anchor that would tell): see
    /// `anchor.rs`. Refused unless the operator accepts it.
    #[error(
        "spool {} is not the spool its anchor recorded: {divergence}. Committed messages \
         may have been lost (damaged files, or an older copy put in place). Restore the \
         spool from a backup, or inspect it with `way2mail-mta spool verify`; start with \
         `way2mail-mta --accept-rollback` only once you decided to keep it as it is",
        path.display()
    )]
    RolledBack {
        path: PathBuf,
        divergence: crate::anchor::Divergence,
    },
    #[error("spool I/O error: {0}")]
    Io(#[from] io::Error),
    #[error("spool storage error: {0}")]
    Storage(#[from] sled::Error),
    /// The master key file cannot be used: its mode lets group or others in, it is
    /// not a 32-byte key, or it cannot be read or created. The message starts with
    /// the name the key was loaded under (`way2mail_seal::MasterKey::load_or_create_named`;
    /// the MTA's is `` spool key (`[spool] key_file`) ``).
    #[error(transparent)]
    Key(way2mail_seal::Error),
    /// A stored record failed authentication or does not parse.
    #[error("spool record {key} is corrupt: {reason}")]
    Corrupt { key: String, reason: String },
    /// The spool refuses writes after a failed write or flush, until a flush succeeds.
    #[error("spool unhealthy: {0}")]
    Unhealthy(String),
    /// Unhealthy because the spool's filesystem is full (`452 4.3.1`).
    #[error("spool filesystem full: {0}")]
    NoSpace(String),
    /// The record was sealed with the data key of a tenant that was erased: it is
    /// unreadable by design (crypto-shredding).
    #[error("spool record {key} belongs to erased tenant {tenant}: its key was destroyed")]
    Shredded { key: String, tenant: String },
    /// The record names a data key this keyring never had (another node's record,
    /// or the wrong keyring file).
    #[error(
        "spool record {key} is sealed with data key {key_id}, which this keyring does not hold"
    )]
    UnknownKey {
        key: String,
        key_id: way2mail_seal::KeyId,
    },
    /// No data key is made for a tenant that was erased.
    #[error("tenant {0} was erased; no new data is stored under that name")]
    Erased(String),
    /// The keyring file cannot be used.
    #[error("keyring {}: {reason}", path.display())]
    Keyring { path: PathBuf, reason: String },
    /// The AEAD primitive or the random generator failed.
    #[error("spool encryption failure")]
    Crypto,
    /// `complete` was called for a message that is neither leased nor queued.
    #[error("message {0} is not in the spool")]
    UnknownMessage(way2mail_smtp::MessageId),
    /// Text that is not a message id.
    #[error("invalid message id {0:?}")]
    InvalidId(String),
}

/// Sealing's errors in the spool's terms: a record that does not open is named by
/// its sled key.
impl From<way2mail_seal::Error> for Error {
    fn from(e: way2mail_seal::Error) -> Error {
        use way2mail_seal::Error as Seal;
        match e {
            Seal::Io(e) => Error::Io(e),
            e @ (Seal::KeyPermissions { .. } | Seal::KeyFormat { .. } | Seal::KeyFile { .. }) => {
                Error::Key(e)
            }
            Seal::Keyring { path, reason } => Error::Keyring { path, reason },
            Seal::Erased(tenant) => Error::Erased(tenant),
            Seal::Corrupt { aad, reason } => Error::Corrupt {
                key: crate::keys::describe(&aad),
                reason: reason.to_owned(),
            },
            Seal::Shredded { aad, tenant } => Error::Shredded {
                key: crate::keys::describe(&aad),
                tenant,
            },
            Seal::UnknownKey { aad, key_id } => Error::UnknownKey {
                key: crate::keys::describe(&aad),
                key_id,
            },
            Seal::Crypto(_) => Error::Crypto,
            // `Error` is non-exhaustive; anything new is a sealing failure.
            _ => Error::Crypto,
        }
    }
}

impl From<way2mail_smtp::InvalidId> for Error {
    fn from(e: way2mail_smtp::InvalidId) -> Error {
        Error::InvalidId(e.0)
    }
}
