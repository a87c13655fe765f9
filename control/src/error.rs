//! The one error type of the control library: what can go wrong below the
//! protocol (opening the store, its anchor, reading or sealing a record, hashing). Requests
//! never see it directly: the service turns it into an `internal` error body.

use std::path::PathBuf;

#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store directory could not be opened (missing permissions, or another
    /// `way2mail-control` holds its lock).
    #[error("cannot open the control store {}: {source}", path.display())]
    Open { path: PathBuf, source: sled::Error },
    #[error("control store error: {0}")]
    Storage(#[from] sled::Error),
    /// The store is not the one its anchor recorded (see `store::anchor`): refused
    /// at open unless the operator accepts it.
    #[error(
        "control store {} is not the store its anchor recorded: {divergence}. Committed \
         changes (audit entries, suspensions, erasures) may have been lost: damaged files, \
         or an older copy put in place. Restore it from a backup (`way2mail backup \
         restore`), or check it with `way2mail-control --verify-store`; start with \
         `way2mail-control --accept-rollback` only once you decided to keep it as it is \
         (the decision is audited)",
        dir.display()
    )]
    RolledBack {
        dir: PathBuf,
        divergence: crate::store::anchor::Divergence,
    },
    /// The anchor file could not be written.
    #[error("cannot write the control store's anchor {}: {source}", path.display())]
    Anchor {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The store was opened for reading only (verification) and a write was tried.
    #[error("the control store {} was opened for reading only", dir.display())]
    ReadOnly { dir: PathBuf },
    /// A master key file (`key_file`, `previous_key_files`) is unreadable, has
    /// loose permissions or a wrong size; the message names which
    /// ([`crate::store::STORE_KEY`]).
    #[error(transparent)]
    KeyFile(way2mail_seal::Error),
    /// The keyring could not be opened or used.
    #[error("control store key: {0}")]
    Key(#[source] way2mail_seal::Error),
    /// A record fails authentication (changed without the key, or moved to another
    /// key) or does not parse.
    #[error("control store record {tree}/{key} is corrupt: {reason}")]
    Corrupt {
        tree: &'static str,
        key: String,
        reason: String,
    },
    /// The record was sealed with the data key of an erased tenant: unreadable by
    /// design (crypto-shredding).
    #[error("control store record {tree}/{key} belongs to erased tenant {tenant}")]
    Shredded {
        tree: &'static str,
        key: String,
        tenant: String,
    },
    /// Nothing new is stored under the name of an erased tenant.
    #[error("tenant {0} was erased; its name is not used again")]
    Erased(String),
    /// The random generator, the AEAD or the password hash failed.
    #[error("cryptographic failure: {0}")]
    Crypto(String),
    /// A TOTP secret that is not base32.
    #[error("invalid TOTP secret: {0}")]
    TotpSecret(String),
}

/// Key and keyring failures keep their meaning: an erased tenant stays
/// [`Error::Erased`], a failed primitive [`Error::Crypto`].
impl From<way2mail_seal::Error> for Error {
    fn from(e: way2mail_seal::Error) -> Error {
        match e {
            way2mail_seal::Error::Erased(tenant) => Error::Erased(tenant),
            way2mail_seal::Error::Crypto(what) => Error::Crypto(what),
            e => Error::Key(e),
        }
    }
}
