//! [`Tenants`]: what every core shares about tenants — the directory of the snapshot
//! in force, the [`TenantPolicy`] sessions consult, the AUTH verifier pool and the
//! lockouts. The follower installs directories into it; AUTH (`auth.rs`) and the
//! DKIM signer read it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use way2mail_smtp::server::TenantPolicy;

use crate::config::authn::MissingKeys;
use crate::config::control::AuthConfig;

use super::directory::{Current, Directory};
use super::lockout::{self, Lockout};
use super::policy::Policy;
use super::verifier::Verifier;

pub struct Tenants {
    pub(super) current: Arc<Current>,
    pub(super) policy: Arc<Policy>,
    pub(super) verifier: Verifier,
    pub(super) lockout: Lockout,
    /// How long a wrong password waits before its `535` (`auth.rs`).
    pub(super) failure_delay: Duration,
    /// Unix time (ms) control last answered the follower; 0: never.
    confirmed_ms: AtomicU64,
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
            confirmed_ms: AtomicU64::new(0),
        })
    }

    /// Control answered (with a snapshot or `unchanged`): the one in force is current.
    pub(super) fn confirmed(&self) {
        self.confirmed_ms
            .store(way2mail_daemon::time::now_ms(), Ordering::Relaxed);
    }

    /// How long ago control last confirmed the snapshot; `None`: it never did.
    pub fn unconfirmed_for(&self) -> Option<Duration> {
        match self.confirmed_ms.load(Ordering::Relaxed) {
            0 => None,
            at => Some(Duration::from_millis(
                way2mail_daemon::time::now_ms().saturating_sub(at),
            )),
        }
    }

    /// `[dkim] missing_keys` for the `MAIL FROM` check of authenticated tenants (the
    /// signer applies the same setting at the end of data).
    pub fn with_missing_keys(mut self, missing_keys: MissingKeys) -> Tenants {
        self.policy = Arc::new(Policy::new(Arc::clone(&self.current), missing_keys));
        self
    }

    /// Records the recipients refused as suppressed, as `suppressed` events in
    /// `spool` (the tenant's delivery log, and its webhooks).
    pub fn record_events_in(&self, spool: way2mail_queue::Spool) {
        self.policy.record_events_in(spool);
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
    pub(super) fn maintain(&self) {
        self.lockout.prune(Instant::now());
        self.policy.prune();
    }

    #[cfg(test)]
    pub(super) fn version(&self) -> Option<u64> {
        self.current.version()
    }
}
