//! Held delivery: mail of a tenant that control suspended or terminated, or whose
//! sending the reputation guard paused, stays queued, untouched, until the account
//! is active (and sending) again. The scheduler asks
//! [`Hold::check`] for every message it leases; a held message goes back on the
//! schedule `[delivery] hold_recheck_secs` later without counting an attempt,
//! without a delivery log record and without being expired: holding is the
//! platform's decision, not a delivery failure.
//!
//! One INFO line per tenant per hour says mail is being held, so that a queue of
//! a suspended tenant does not fill the log.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::tenants::Directory;

/// How often the log mentions one tenant's held mail.
const NOTICE_EVERY: Duration = Duration::from_secs(3600);

/// Remembers when each tenant's held mail was last logged.
#[derive(Debug, Default)]
pub struct Hold {
    noticed: HashMap<String, Instant>,
}

/// Why a message waits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub tenant: String,
    /// `suspended`, `terminated` or `sending paused`.
    pub reason: &'static str,
    /// Whether this is the first held message of the tenant within the hour.
    pub log: bool,
}

impl Hold {
    /// Whether mail of `tenant` must wait under `directory` (the one in force; `None`
    /// before a first snapshot, when nothing is held).
    pub fn check(
        &mut self,
        directory: Option<&Directory>,
        tenant: Option<&str>,
        now: Instant,
    ) -> Option<Held> {
        let tenant = tenant?;
        let reason = directory?.holds_delivery(tenant)?;
        let log = match self.noticed.get(tenant) {
            Some(at) if now.saturating_duration_since(*at) < NOTICE_EVERY => false,
            _ => {
                self.noticed.insert(tenant.to_owned(), now);
                true
            }
        };
        Some(Held {
            tenant: tenant.to_owned(),
            reason,
            log,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenants::directory::tests::snapshot;
    use way2mail_wire::protocol::TenantStatus;

    #[test]
    fn suspended_and_terminated_tenants_are_held_and_logged_hourly() {
        // acme is active, sleepy suspended, gone terminated.
        let d = Directory::new(&snapshot(1));
        let mut hold = Hold::default();
        let t0 = Instant::now();
        assert_eq!(hold.check(Some(&d), Some("acme"), t0), None);
        assert_eq!(hold.check(Some(&d), None, t0), None, "mail of no tenant");
        assert_eq!(hold.check(Some(&d), Some("unknown"), t0), None);
        assert_eq!(
            hold.check(None, Some("sleepy"), t0),
            None,
            "no snapshot yet"
        );

        let held = hold.check(Some(&d), Some("sleepy"), t0).expect("held");
        assert_eq!(
            (held.tenant.as_str(), held.reason, held.log),
            ("sleepy", "suspended", true)
        );
        let again = hold.check(Some(&d), Some("sleepy"), t0 + Duration::from_secs(3599));
        assert_eq!(again.map(|h| h.log), Some(false), "once per hour");
        let gone = hold.check(Some(&d), Some("gone"), t0).expect("held");
        assert_eq!((gone.reason, gone.log), ("terminated", true));
        let later = hold.check(Some(&d), Some("sleepy"), t0 + NOTICE_EVERY);
        assert_eq!(later.map(|h| h.log), Some(true), "an hour later");

        // Resumed: delivered again.
        let mut s = snapshot(2);
        s.tenants[1].status = TenantStatus::Active;
        let resumed = Directory::new(&s);
        assert_eq!(hold.check(Some(&resumed), Some("sleepy"), t0), None);

        // Paused by the reputation guard: held, whatever its status says.
        s.tenants[0].sending_paused = true;
        let paused = Directory::new(&s);
        let held = hold.check(Some(&paused), Some("acme"), t0).expect("held");
        assert_eq!(held.reason, "sending paused");
    }
}
