//! Secrets at rest, for both stores (the MTA's spool and control's store): the node
//! master key, the keyring of per-tenant data keys it wraps, the sealed record format,
//! and argon2id password hashes. No sled and no I/O beyond the key and keyring files.
//!
//! ```text
//!   keyring.rs     Keyring: one data key per tenant and one for the node, wrapped
//!                  under the master key; shredding a key erases a tenant's records
//!   master_key.rs  MasterKey: the key file (0600, exactly 32 bytes), or a credential
//!   record.rs      AES-256-GCM records: "W2" || key id || nonce || ciphertext || tag,
//!                  AAD = header || the record's own key
//!   data_key.rs    DataKey (id, owner, AEAD and blind-index keys), Lookup, Erasure
//!   password.rs    argon2id hashes (PHC strings), generated passwords and API keys
//!   error.rs       Error: what the owner of a record turns into its own terms
//!   key_id.rs      KeyId: the name of a data key in record headers and store keys
//! ```
//!
//! Each file uses only those listed below it: the keyring seals its file with the
//! master key and hands out data keys; records are sealed with a data key and
//! opened with whatever key lookup the caller gives (`Keyring::open_record` gives
//! its own).
//!
//! A store seals a value with `keyring.tenant(t)?.seal(key, value)` (or the node's
//! `keyring.system()`), and opens it with `keyring.open_record(key, sealed)`: the
//! header names the data key, so nothing else needs to be known to open it, and a
//! record under a shredded key says so instead of failing as corrupt.

mod data_key;
mod error;
mod key_id;
pub mod keyring;
mod master_key;
pub mod password;
pub mod record;

pub use data_key::{DataKey, Erasure, Lookup, Owner};
pub use error::Error;
pub use key_id::KeyId;
pub use keyring::{Keyring, TenantKey};
pub use master_key::MasterKey;
pub use record::key_id_of;
