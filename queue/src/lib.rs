//! The Way2Mail spool: durable, encrypted storage of accepted messages on sled.
//! No sockets and no async runtime: the daemon calls in from its session tasks and
//! awaits a [`Durable`] before it answers `250`.
//!
//! Layout and flow:
//!
//! ```text
//!   keys.rs      every sled key, built and parsed in one place
//!   record.rs    what is inside a sealed envelope record (versioned JSON)
//!   anchor.rs    the anchor file: the last durable commit count, outside sled,
//!                so that a spool that lost commits is refused at open
//!   spool.rs     Spool: open (lock, anchor), enqueue (one atomic batch), read, list,
//!                visit (one message at a time)
//!   lease.rs     delivery's side: take_due (leases), read_body, complete
//!   operate.rs   operators' changes: where messages stand (due, leased, held);
//!                hold, reschedule or remove them, never one in delivery
//!   delivery_log.rs  the time-keyed delivery log: records, queries, purge
//!   deliverability.rs  one tenant's log over a time window, a record at a time
//!   commit.rs    group commit: one flusher thread applies every write, one sled
//!                flush for many waiters
//!   recovery.rs  startup check: decrypt everything, repair the schedule, release
//!                leases, quarantine
//!   migrate.rs   one-time re-sealing of records from before data keys
//!   tenant_data.rs  one tenant's data: inventory, export, erasure
//!   retention.rs    purges by age, per data key (the retention sweep's primitives)
//!   dump.rs      online backup dump of every record, and restore onto a stopped node
//!   verify.rs    offline check of every record and of the anchor (`spool verify`)
//! ```
//!
//! `enqueue` seals the envelope and body, writes them with the schedule entry in one
//! sled batch, and hands a waiter to the flusher thread; the returned [`Durable`]
//! resolves once a flush that started after that batch has succeeded. That await is
//! the commit point between "not accepted" and "durably queued". Delivery takes due
//! messages under a lease and ends the lease with `complete`, which records the
//! outcome (new state and schedule, or deletion, a bounce, log records) in one batch.
//! The on-disk format is described in `docs/spool-format.md`.

pub mod anchor;
mod body;
mod commit;
mod deliverability;
mod delivery_log;
mod dmarc;
mod dump;
mod error;
mod idempotency;
pub mod keys;
mod lease;
mod migrate;
mod operate;

/// Names of the metrics the spool records (through the `metrics` facade; nothing
/// is recorded unless the process installed a recorder).
pub mod metrics {
    /// Histogram: seconds one group commit took (the sled batch and its flush).
    pub const COMMIT_SECONDS: &str = "way2mail_spool_commit_seconds";
    /// Histogram: writes served by one group commit.
    pub const BATCH_SIZE: &str = "way2mail_spool_batch_size";
}
mod record;
mod recovery;
mod retention;
mod spill;
mod spool;
mod tenant_data;
mod verify;
mod webhook;

pub use anchor::AnchorCheck;
pub use body::{read_header_section, BodyChunks};
pub use commit::{CommitStats, Durable, Health};
pub use delivery_log::{DeliveryOutcome, DeliveryRecord, LogFilter, LogStats, LOG_CURSOR_LEN};
pub use dump::{restore_dump, DumpStats, RestoreStats};
pub use error::Error;
pub use idempotency::{IdempotencyRecord, SideRecords, IDEMPOTENCY_TTL_MS};
pub use keys::OutboxKey;
pub use lease::Leased;
pub use operate::{Change, Changed, Placement};
pub use record::{BodyShape, WHOLE_BODY_MAX};
pub use recovery::RecoveryReport;
pub use retention::ContentPurge;
pub use spill::Parts;
pub use spool::{open_sled, RecipientSummary, Spool, SpoolOptions, Summary, DEFAULT_CACHE_BYTES};
pub use tenant_data::{TenantErasure, TenantInventory};
pub use verify::{verify, Problem, VerifyReport};
pub use webhook::{DueEvent, EventRouter, OutboxEntry};

// The spool stores what SMTP said about a message: the envelope and id types are
// the SMTP crate's, so a session hands its message over without conversion.
pub(crate) use way2mail_smtp::{Envelope, MessageId, RecipientState};
