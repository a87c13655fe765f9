//! Tenants and SMTP AUTH in the daemon: the control snapshot the MTA follows, and
//! what sessions ask of it: is this password right, may this tenant send from
//! this address, is its budget spent; and what the DKIM signer asks: which tenant
//! owns a domain, may the domain send, with which keys.
//!
//! ```text
//!   state.rs         Tenants: what every core shares (the snapshot in force, the
//!                    TenantPolicy, the verifier, lockouts)
//!   follower.rs      thread: control socket ── snapshot ──► Current (swap) + snapshot_file.rs
//!   data_keys.rs     per snapshot: every tenant's data key made ahead of use, erasures
//!                    made in control completed in the spool
//!   directory.rs     one snapshot indexed: username → user, tenant → status/domains/limits/
//!                    retention/legal hold/suppression hashes,
//!                    domain → owner/may_send/DKIM keys (decoded once)/BIMI selector
//!   policy.rs        TenantPolicy for the protocol: sender rules (own domain, may send,
//!                    has a DKIM key), recipient rules (limit, suppression list)
//!                    + hourly/daily counters
//!   auth.rs          one AUTH: lockout ─► verifier ─► tenant status ─► verdict (+ log line)
//!   verifier.rs      argon2 on a small thread pool, successes cached per snapshot hash
//!   lockout.rs       failures per client IP and per username, lockout windows
//! ```
//!
//! Everything here is shared by all cores through one `Arc<Tenants>`; sessions only
//! take short locks and never do I/O, except awaiting the verifier.

mod auth;
mod data_keys;
pub(crate) mod directory;
mod follower;
mod lockout;
mod policy;
mod snapshot_file;
mod state;
mod verifier;

pub use directory::{not_a_domain_of_this_account, sender_domain, Directory};
pub use follower::{Follower, Source};
pub use state::Tenants;
