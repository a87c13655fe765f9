//! Data keys as the rest of the crate hands them around: one AES-256-GCM key with
//! its id and owner, what a key id turns out to be when looked up, and the record
//! of a tenant whose key was destroyed. The keyring (`keyring.rs`) makes, stores
//! and shreds them; the record format (`record.rs`) seals and opens with them,
//! which is where [`DataKey::seal`] lives.

use std::fmt;
use std::sync::Arc;

use aws_lc_rs::aead::{LessSafeKey, UnboundKey, AES_256_GCM};
use aws_lc_rs::hmac;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::{Error, KeyId};

/// Whose records a data key seals.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Owner {
    /// The node's own records: mail of no tenant, operators, the audit chain.
    System,
    Tenant(String),
}

impl Owner {
    pub fn tenant(&self) -> Option<&str> {
        match self {
            Owner::System => None,
            Owner::Tenant(t) => Some(t),
        }
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Owner::System => f.write_str("system"),
            Owner::Tenant(t) => write!(f, "tenant {t}"),
        }
    }
}

/// One data key, ready to seal and open. `Debug` never shows key material.
pub struct DataKey {
    id: KeyId,
    owner: Owner,
    created_ms: u64,
    pub(crate) aead: LessSafeKey,
    /// HMAC key for blind indexes of this owner's names (derived from the key).
    index: hmac::Key,
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataKey")
            .field("id", &self.id)
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

impl DataKey {
    /// Builds the key schedule and the blind-index key from the raw key bytes.
    pub(crate) fn from_bytes(
        id: KeyId,
        owner: Owner,
        created_ms: u64,
        bytes: &[u8],
    ) -> Result<DataKey, Error> {
        let unbound =
            UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| Error::crypto("AES-256-GCM key"))?;
        let derived = Zeroizing::new(
            hmac::sign(
                &hmac::Key::new(hmac::HMAC_SHA256, bytes),
                b"way2mail blind index v1",
            )
            .as_ref()
            .to_vec(),
        );
        Ok(DataKey {
            id,
            owner,
            created_ms,
            aead: LessSafeKey::new(unbound),
            index: hmac::Key::new(hmac::HMAC_SHA256, &derived),
        })
    }

    pub fn id(&self) -> KeyId {
        self.id
    }

    pub fn owner(&self) -> &Owner {
        &self.owner
    }

    pub fn created_ms(&self) -> u64 {
        self.created_ms
    }

    /// A keyed hash of `name`, to use as a store key instead of the name itself:
    /// equal names give equal keys, and without this data key nothing links the
    /// hash back to the name.
    pub fn blind_index(&self, name: &[u8]) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(hmac::sign(&self.index, name).as_ref());
        out
    }
}

/// What the keyring knows of a key id.
#[derive(Debug, Clone)]
pub enum Lookup {
    Key(Arc<DataKey>),
    /// Shredded: the tenant was erased; its records are unreadable by design.
    Erased(Erasure),
    /// Never seen here: a record from another node, or a keyring that is not this
    /// node's. Such records are kept (quarantined), never deleted.
    Unknown,
}

/// A tenant whose key was destroyed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Erasure {
    pub tenant: String,
    /// The key that was shredded; `None` when the tenant never had one here.
    pub key_id: Option<KeyId>,
    pub at_ms: u64,
}
