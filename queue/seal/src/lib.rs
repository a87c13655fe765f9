//! Secrets at rest, for both stores (the MTA's spool and control's store): the node
//! master key, the keyring of per-tenant data keys it wraps, the sealed record format,
//! and argon2id password hashes. No sled and no I/O beyond the key and keyring files.
//!
//! ```text
//!   master_key.rs  MasterKey: the key file (0600, exactly 32 bytes), or a credential
//!   keyring.rs     Keyring: one data key per tenant and one for the node, wrapped
//!                  under the master key; shredding a key erases a tenant's records
//!   record.rs      AES-256-GCM records: "W2" || key id || nonce || ciphertext || tag,
//!                  AAD = header || the record's own key
//!   password.rs    argon2id hashes (PHC strings), generated passwords and API keys
//!   error.rs       Error: what the owner of a record turns into its own terms
//! ```
//!
//! A store seals a value with `keyring.tenant(t)?.seal(key, value)` (or the node's
//! `keyring.system()`), and opens it with `keyring.open_record(key, sealed)`: the
//! header names the data key, so nothing else needs to be known to open it, and a
//! record under a shredded key says so instead of failing as corrupt.

mod error;
pub mod keyring;
mod master_key;
pub mod password;
pub mod record;

pub use error::Error;
pub use keyring::{DataKey, Erasure, KeyId, Keyring, Lookup, Owner, TenantKey};
pub use master_key::MasterKey;
pub use record::key_id_of;
