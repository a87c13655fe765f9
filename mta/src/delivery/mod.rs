//! Outbound delivery in the daemon: the scheduler thread (`scheduler.rs`) takes due
//! messages from the spool under a lease and hands one job per (message, next-hop
//! domain) to the core that owns that domain (hash), where the core's delivery
//! worker (`worker.rs`) queues it per destination, shapes it (`shaping.rs`) and
//! delivers it over pooled connections (`connection.rs`) driving the sans-IO SMTP
//! client. Each recipient's result is a typed [`attempt::Attempt`] (delivered,
//! deferred or failed, and why), from which every report derives its text and code.
//! Results go back to the scheduler, which completes the message in one atomic spool
//! write: recipients' states, the retry (`retry.rs`), a bounce or a delay notice if
//! one is due (`bounce.rs`, `delay.rs`; both in one DSN when both are), and
//! delivery-log records (in the spool; `log.rs` copies them to a
//! file when `[delivery] log_file` is set). Mail of suspended and terminated tenants
//! is held (`hold.rs`). What is out at once is bounded by `[spool] memory_budget`
//! in body bytes and by a count (`budget.rs`). `start.rs` starts the scheduler thread at once and
//! hands `main.rs` one plan per core, from which each core builds its worker.
//!
//! ```text
//!  spool ──take_due_within──► scheduler ──Job (by domain hash)──► core N worker ─► connection
//!    ▲                    │  ▲                                                 │
//!    └──complete (1 batch)┘  └──────────────── JobResult ◄─────────────────────┘
//! ```

pub mod attempt;
pub mod bounce;
pub mod budget;
pub mod connection;
pub mod delay;
pub mod handoff;
pub mod hold;
pub mod log;
pub mod retry;
pub mod scheduler;
pub mod shaping;
mod start;
pub mod worker;

pub use start::start;

use std::sync::Arc;

use way2mail_queue::Spool;
use way2mail_smtp::{Envelope, MessageId};

use self::attempt::{Attempt, RecipientAttempt};

/// One message's recipients at one next-hop domain, on its way to a core.
#[derive(Debug)]
pub struct Job {
    pub id: MessageId,
    pub envelope: Arc<Envelope>,
    pub body: JobBody,
    pub domain: String,
    /// Indices into `envelope.recipients`.
    pub recipients: Vec<usize>,
    /// The envelope sender to use instead of the message's: the VERP return path
    /// of a tenant message's one recipient (`[bounces] domain`).
    pub return_path: Option<String>,
}

/// A message's content as delivery holds it: a small body in memory, read once by
/// the scheduler and shared by the message's jobs; a larger one left in the spool
/// and streamed to each next hop by the connection that sends it, a chunk at a
/// time, once that connection is ready for it (`connection.rs`). A destination that
/// is down costs no body reads at all.
#[derive(Clone)]
pub enum JobBody {
    Whole(Arc<Vec<u8>>),
    /// `shape`, when the envelope records it, tells the connection what to announce
    /// without a pass over the body first.
    Spooled {
        spool: Spool,
        body_len: u64,
        shape: Option<way2mail_queue::BodyShape>,
    },
}

/// Bodies up to this size are read whole by the scheduler; larger ones are
/// streamed from the spool, which records their shape (the spool's threshold).
pub use way2mail_queue::WHOLE_BODY_MAX;
/// What a streamed body costs against `[spool] memory_budget` while its message is
/// out: the connection holds one spool chunk and up to [`connection::STREAM_FLUSH`]
/// bytes of encoded content, its TLS buffers aside.
pub const STREAMED_BODY_COST: u64 = 128 * 1024;

/// What a body of `body_len` bytes costs against the budget while out.
pub fn body_cost(body_len: u64) -> u64 {
    if body_len <= WHOLE_BODY_MAX {
        body_len
    } else {
        STREAMED_BODY_COST
    }
}

impl std::fmt::Debug for JobBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JobBody::Whole(b) => write!(f, "Whole({} bytes)", b.len()),
            JobBody::Spooled { body_len, .. } => write!(f, "Spooled({body_len} bytes)"),
        }
    }
}

/// A job's results, back to the scheduler.
#[derive(Debug)]
pub struct JobResult {
    pub id: MessageId,
    pub recipients: Vec<RecipientAttempt>,
    /// The body could not be read from the spool (missing, corrupt, cut short):
    /// the message goes to quarantine instead of being tried again.
    pub body_unreadable: bool,
}

impl Job {
    /// The same attempt for every recipient of the job (DNS failures, dead
    /// destinations), with no host that answered.
    pub fn all(&self, attempt: &Attempt) -> JobResult {
        JobResult {
            id: self.id,
            recipients: self
                .recipients
                .iter()
                .map(|&index| RecipientAttempt {
                    index,
                    attempt: attempt.clone(),
                    hop: None,
                })
                .collect(),
            body_unreadable: false,
        }
    }
}

/// The next-hop domain of an address: what follows the last `@`, lowercased;
/// `postmaster` without a domain is local and has none.
pub fn domain_of(address: &str) -> Option<String> {
    address
        .rsplit_once('@')
        .map(|(_, d)| d.trim_end_matches('.').to_ascii_lowercase())
        .filter(|d| !d.is_empty())
}
