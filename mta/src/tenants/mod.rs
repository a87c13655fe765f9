//! Tenants and SMTP AUTH in the daemon: the control snapshot the MTA follows, and
//! what sessions ask of it: is this password right, may this tenant send from
//! this address, is its budget spent.
//!
//! ```text
//!   follower.rs      thread: control socket ── snapshot ──► Current (swap) + snapshot_file.rs
//!   directory.rs     one snapshot indexed: username → user, tenant → status/domains/limits
//!   policy.rs        TenantPolicy for the protocol: sender rules + hourly/daily counters
//!   auth.rs          one AUTH: lockout ─► verifier ─► tenant status ─► verdict (+ log line)
//!   verifier.rs      argon2 on a small thread pool, successes cached per snapshot hash
//!   lockout.rs       failures per client IP and per username, lockout windows
//! ```
//!
//! Everything here is shared by all cores through one `Arc<Tenants>`; sessions only
//! take short locks and never do I/O, except awaiting the verifier.

mod auth;
mod directory;
mod follower;
mod lockout;
mod policy;
mod snapshot_file;
mod verifier;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use way2mail_mta::smtp::TenantPolicy;

use crate::config::control::AuthConfig;

pub use follower::{Follower, Source};

use directory::{Current, Directory};
use lockout::Lockout;
use policy::Policy;
use verifier::Verifier;

pub struct Tenants {
    current: Arc<Current>,
    policy: Arc<Policy>,
    verifier: Verifier,
    lockout: Lockout,
    failure_delay: Duration,
}

impl Tenants {
    /// Starts the verification threads; the directory stays empty until
    /// [`Follower::start`] installs one.
    pub fn new(auth: &AuthConfig) -> Result<Tenants> {
        let current = Arc::new(Current::default());
        Ok(Tenants {
            policy: Arc::new(Policy::new(Arc::clone(&current))),
            current,
            verifier: Verifier::start(auth.verify_threads)?,
            lockout: Lockout::new(lockout::Settings {
                max_failures: auth.max_failures,
                window: Duration::from_secs(auth.failure_window_secs),
                lockout: Duration::from_secs(auth.lockout_secs),
            }),
            failure_delay: auth.failure_delay(),
        })
    }

    /// The rules the protocol consults for authenticated sessions.
    pub fn policy(&self) -> Arc<dyn TenantPolicy> {
        Arc::clone(&self.policy) as Arc<dyn TenantPolicy>
    }

    /// Makes `directory` the one sessions see from their next check on.
    fn install(&self, directory: Directory) {
        self.verifier.forget_stale(&directory);
        self.current.set(directory);
    }

    /// Drops expired lockout and counter entries (called by the follower).
    fn maintain(&self) {
        self.lockout.prune(Instant::now());
        self.policy.prune();
    }

    #[cfg(test)]
    fn version(&self) -> Option<u64> {
        self.current.version()
    }
}
