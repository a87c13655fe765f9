//! Tenants and SMTP AUTH in the daemon: the control snapshot the MTA follows, and
//! what sessions ask of it: is this password right, may this tenant send from
//! this address, is its budget spent; and what the DKIM signer asks: which tenant
//! owns a domain, may the domain send, with which keys.
//!
//! ```text
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
mod verifier;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use way2mail_smtp::server::TenantPolicy;

use crate::config::authn::MissingKeys;
use crate::config::control::AuthConfig;

pub use directory::{not_a_domain_of_this_account, sender_domain, Directory};
pub use follower::{Follower, Source};

use directory::Current;
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
    /// [`Follower::start`] installs one. Domains without DKIM keys are refused at
    /// `MAIL FROM` unless [`Tenants::with_missing_keys`] says otherwise.
    pub fn new(auth: &AuthConfig) -> Result<Tenants> {
        let current = Arc::new(Current::default());
        Ok(Tenants {
            policy: Arc::new(Policy::new(Arc::clone(&current), MissingKeys::Refuse)),
            current,
            verifier: Verifier::start(auth.verify_threads)?,
            lockout: Lockout::new(lockout::Settings {
                max_failures: auth.max_failures,
                window: auth.failure_window,
                lockout: auth.lockout,
            }),
            failure_delay: auth.failure_delay,
        })
    }

    /// `[dkim] missing_keys` for the `MAIL FROM` check of authenticated tenants (the
    /// signer applies the same setting at the end of data).
    pub fn with_missing_keys(mut self, missing_keys: MissingKeys) -> Tenants {
        self.policy = Arc::new(Policy::new(Arc::clone(&self.current), missing_keys));
        self
    }

    /// The directory in force, `None` until a first snapshot arrived.
    pub fn directory(&self) -> Option<Arc<Directory>> {
        self.current.get()
    }

    /// The rules the protocol consults for authenticated sessions.
    pub fn policy(&self) -> Arc<dyn TenantPolicy> {
        Arc::clone(&self.policy) as Arc<dyn TenantPolicy>
    }

    /// Makes `directory` the one sessions see from their next check on. DKIM keys
    /// that did not change are taken over from the directory it replaces.
    pub(crate) fn install(&self, directory: Directory) {
        let mut directory = directory;
        if let Some(previous) = self.current.get() {
            directory.adopt_keys(&previous);
        }
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
