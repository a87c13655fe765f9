//! The Way2Mail spool: durable, encrypted storage of accepted messages on sled.
//! No sockets and no async runtime: the daemon calls in from its session tasks and
//! awaits a [`Durable`] before it answers `250`.
//!
//! Layout and flow:
//!
//! ```text
//!   id.rs        MessageId: time-ordered 128-bit ids, Crockford base32 text form
//!   keys.rs      every sled key, built and parsed in one place
//!   keyfile.rs   SpoolKey: the AES-256 key file (0600, exactly 32 bytes)
//!   seal.rs      AES-256-GCM records: nonce || ciphertext || tag, AAD = sled key
//!   record.rs    what is inside a sealed envelope record (versioned JSON)
//!   spool.rs     Spool: open (lock), enqueue (one atomic batch), read, list
//!   commit.rs    group commit: one flusher thread, one sled flush for many waiters
//!   recovery.rs  startup check: decrypt everything, repair the schedule, quarantine
//! ```
//!
//! `enqueue` seals the envelope and body, writes them with the schedule entry in one
//! sled batch, and hands a waiter to the flusher thread; the returned [`Durable`]
//! resolves once a flush that started after that batch has succeeded. That await is
//! the commit point between "not accepted" and "durably queued".
//! The on-disk format is described in `docs/spool-format.md`.

mod commit;
pub mod envelope;
mod error;
mod id;
mod keyfile;
pub mod keys;
mod record;
mod recovery;
mod seal;
mod spool;

pub use commit::{CommitStats, Durable, Health};
pub use envelope::{BodyType, Envelope, Notify, Origin, Recipient, Ret};
pub use error::Error;
pub use id::MessageId;
pub use keyfile::SpoolKey;
pub use recovery::RecoveryReport;
pub use spool::{Spool, Summary};
