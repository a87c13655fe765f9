//! The daemon's [`TenantPolicy`]: the directory's sender rules plus each tenant's
//! sending budget, a rolling hour and a rolling day counted in one-minute buckets.
//!
//! The counters are shared by every core behind one mutex, taken once at `MAIL`
//! and once per queued message. They live in memory only: a restart starts every
//! tenant with a full budget. A budget is checked at `MAIL` and spent when the
//! message is queued, so sessions of one tenant running side by side can overshoot
//! it by the number of messages in flight.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use way2mail_smtp::reply::{EnhancedCode, Reply};
use way2mail_smtp::server::{Grant, TenantPolicy};

use super::directory::{sender_domain, Current};
use crate::config::authn::MissingKeys;

/// Minutes in the rolling day; also the number of buckets per tenant.
const DAY_MINUTES: u64 = 24 * 60;
const HOUR_MINUTES: u64 = 60;

/// Messages queued by one tenant per minute over the last day, with running
/// totals so that a check never sums the buckets.
struct Window {
    buckets: Box<[u32]>,
    /// The minute the newest bucket stands for.
    head: u64,
    hour: u64,
    day: u64,
}

impl Window {
    fn new(now: u64) -> Window {
        Window {
            buckets: vec![0; DAY_MINUTES as usize].into_boxed_slice(),
            head: now,
            hour: 0,
            day: 0,
        }
    }

    fn slot(minute: u64) -> usize {
        (minute % DAY_MINUTES) as usize
    }

    /// Moves the head to `now`, dropping what fell out of each window.
    fn advance(&mut self, now: u64) {
        if now <= self.head {
            return;
        }
        if now - self.head >= DAY_MINUTES {
            self.buckets.fill(0);
            (self.hour, self.day) = (0, 0);
            self.head = now;
            return;
        }
        for m in self.head + 1..=now {
            if let Some(old) = m.checked_sub(HOUR_MINUTES) {
                self.hour -= u64::from(self.buckets[Self::slot(old)]);
            }
            // The slot for minute m last held minute m - 1440, which leaves the day now.
            let slot = Self::slot(m);
            self.day -= u64::from(self.buckets[slot]);
            self.buckets[slot] = 0;
        }
        self.head = now;
    }

    fn add(&mut self, now: u64) {
        self.advance(now);
        let slot = &mut self.buckets[Self::slot(self.head)];
        *slot = slot.saturating_add(1);
        self.hour += 1;
        self.day += 1;
    }
}

pub struct Policy {
    directory: Arc<Current>,
    counters: Mutex<HashMap<String, Window>>,
    epoch: Instant,
    /// `[dkim] missing_keys`: may a domain without DKIM keys send (unsigned)?
    missing_keys: MissingKeys,
    /// Where refused (suppressed) recipients are recorded as events.
    events: std::sync::OnceLock<way2mail_queue::Spool>,
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policy").finish_non_exhaustive()
    }
}

impl Policy {
    pub fn new(directory: Arc<Current>, missing_keys: MissingKeys) -> Policy {
        Policy {
            directory,
            counters: Mutex::new(HashMap::new()),
            epoch: Instant::now(),
            missing_keys,
            events: std::sync::OnceLock::new(),
        }
    }

    /// Monotonic minutes: a clock step must not refill or drain a budget.
    fn minute(&self) -> u64 {
        self.epoch.elapsed().as_secs() / 60
    }

    fn counters(&self) -> std::sync::MutexGuard<'_, HashMap<String, Window>> {
        // Counter updates cannot panic half-way; a poisoned map is still consistent.
        self.counters.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The sender checks (the tenant's own domain, which may send and has a DKIM key
    /// or may go unsigned) and the budget check at minute `now`.
    fn check_sender_at(&self, grant: &Grant, sender: &str, now: u64) -> Result<(), Reply> {
        let Some(directory) = self.directory.get() else {
            // Only reachable if the snapshot vanished after AUTH succeeded, which
            // the follower never does; refuse softly rather than guess.
            return Err(Reply::new(
                451,
                EnhancedCode::new(4, 7, 0),
                "Account data unavailable, try again later",
            ));
        };
        let tenant = directory.check_sender(grant, sender)?;
        if let Some(domain) = sender_domain(sender) {
            directory.check_sending(domain, self.missing_keys)?;
        }
        let limits = tenant.limits;
        let (hour, day) = {
            let mut counters = self.counters();
            match counters.get_mut(&grant.tenant) {
                Some(w) => {
                    w.advance(now);
                    (w.hour, w.day)
                }
                None => (0, 0),
            }
        };
        // The daily budget first: when it is spent, retrying within the hour is futile.
        if day >= u64::from(limits.messages_per_day) {
            return Err(Reply::owned(
                550,
                EnhancedCode::new(5, 7, 0),
                format!(
                    "Tenant daily message limit ({}) reached",
                    limits.messages_per_day
                ),
            ));
        }
        if hour >= u64::from(limits.messages_per_hour) {
            return Err(Reply::owned(
                452,
                EnhancedCode::new(4, 7, 0),
                format!(
                    "Tenant hourly message limit ({}) reached, try again later",
                    limits.messages_per_hour
                ),
            ));
        }
        Ok(())
    }

    fn message_queued_at(&self, grant: &Grant, now: u64) {
        let mut counters = self.counters();
        match counters.get_mut(&grant.tenant) {
            Some(w) => w.add(now),
            None => {
                let mut w = Window::new(now);
                w.add(now);
                counters.insert(grant.tenant.clone(), w);
            }
        }
    }

    /// Drops the windows of tenants that sent nothing for a day, so that the map
    /// holds only tenants with something to remember.
    pub fn prune(&self) {
        let now = self.minute();
        self.counters().retain(|_, w| {
            w.advance(now);
            w.day > 0
        });
    }
}

impl Policy {
    pub fn record_events_in(&self, spool: way2mail_queue::Spool) {
        let _ = self.events.set(spool);
    }

    /// A `suppressed` event for `address` of `tenant`: in its delivery log and to
    /// its webhooks, in the next group commit (the refusal does not wait for it).
    /// No message is queued for the address, so the event gets an id of its own.
    fn suppressed(&self, tenant: &str, address: &str, reply: &Reply) {
        metrics::counter!("way2mail_suppressed_recipients_total", "tenant" => tenant.to_string())
            .increment(1);
        let Some(spool) = self.events.get() else {
            return;
        };
        let id = way2mail_smtp::MessageId::generate();
        let record = way2mail_queue::DeliveryRecord {
            time_ms: way2mail_daemon::time::now_ms(),
            outcome: way2mail_queue::DeliveryOutcome::Suppressed,
            message_id: id.to_string(),
            recipient: address.to_string(),
            next_hop: None,
            ip: None,
            tls: None,
            reply: Some(reply.to_string()),
            attempt: 0,
            queue_time_ms: 0,
            tags: Vec::new(),
            metadata: Default::default(),
            category: None,
            scan: None,
        };
        match spool.submit_event(tenant, &id, &record) {
            Ok(durable) => drop(durable),
            Err(e) => tracing::warn!(error = %e, "a suppressed recipient was not recorded"),
        }
    }
}

impl TenantPolicy for Policy {
    fn check_sender(&self, grant: &Grant, sender: &str) -> Result<(), Reply> {
        self.check_sender_at(grant, sender, self.minute())
    }

    fn check_recipient(&self, grant: &Grant, address: &str, count: usize) -> Result<(), Reply> {
        let Some(directory) = self.directory.get() else {
            return Ok(());
        };
        let tenant = directory.active_tenant(grant)?;
        let limit = tenant.limits.recipients_per_message;
        if count > limit as usize {
            return Err(Reply::owned(
                452,
                EnhancedCode::new(4, 5, 3),
                format!("Too many recipients for this account (limit {limit})"),
            ));
        }
        let checked = directory.check_recipient(grant, address).map(|_| ());
        if let Err(reply) = &checked {
            if tenant.suppresses(address) {
                self.suppressed(&grant.tenant, address, reply);
            }
        }
        checked
    }

    fn message_queued(&self, grant: &Grant) {
        self.message_queued_at(grant, self.minute());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenants::directory::tests::{grant, snapshot};
    use crate::tenants::directory::Directory;

    fn policy(hour: u32, day: u32, rcpts: u32) -> Policy {
        let mut s = snapshot(1);
        for t in &mut s.tenants {
            t.limits.messages_per_hour = hour;
            t.limits.messages_per_day = day;
            t.limits.recipients_per_message = rcpts;
        }
        let current = Arc::new(Current::default());
        current.set(Directory::new(&s));
        Policy::new(current, MissingKeys::Refuse)
    }

    fn refusal(r: Result<(), Reply>) -> (u16, Option<EnhancedCode>, String) {
        let e = r.expect_err("expected a refusal");
        (e.code, e.enhanced, e.text.into_owned())
    }

    #[test]
    fn hourly_budget_rolls_over_minutes() {
        let p = policy(3, 100, 10);
        let g = grant("acme");
        let from = "a@acme.example";
        for minute in [0, 10, 20] {
            assert!(p.check_sender_at(&g, from, minute).is_ok());
            p.message_queued_at(&g, minute);
        }
        let (c, s, text) = refusal(p.check_sender_at(&g, from, 30));
        assert_eq!((c, s), (452, Some(EnhancedCode::new(4, 7, 0))));
        assert_eq!(
            text,
            "Tenant hourly message limit (3) reached, try again later"
        );
        // Still spent at minute 59; minute 60 drops the message of minute 0.
        assert!(p.check_sender_at(&g, from, 59).is_err());
        assert!(p.check_sender_at(&g, from, 60).is_ok());
        p.message_queued_at(&g, 60);
        assert!(p.check_sender_at(&g, from, 69).is_err());
        assert!(p.check_sender_at(&g, from, 70).is_ok());
    }

    #[test]
    fn daily_budget_is_permanent_and_rolls_over_the_day() {
        let p = policy(100, 4, 10);
        let g = grant("acme");
        let from = "a@acme.example";
        for minute in [0, 100, 200, 1000] {
            p.message_queued_at(&g, minute);
        }
        let (c, s, text) = refusal(p.check_sender_at(&g, from, 1200));
        assert_eq!((c, s), (550, Some(EnhancedCode::new(5, 7, 0))));
        assert_eq!(text, "Tenant daily message limit (4) reached");
        assert!(p.check_sender_at(&g, from, 1439).is_err());
        assert!(
            p.check_sender_at(&g, from, 1440).is_ok(),
            "minute 0 left the day"
        );
        // A long silence clears everything.
        assert!(p.check_sender_at(&g, from, 10_000).is_ok());
        p.message_queued_at(&g, 10_000);
        let counters = p.counters();
        let w = counters.get("acme").expect("window");
        assert_eq!((w.hour, w.day), (1, 1));
    }

    #[test]
    fn sender_rules_come_before_budgets() {
        let p = policy(0, 0, 10);
        let (c, _, _) = refusal(p.check_sender_at(&grant("acme"), "a@evil.example", 0));
        assert_eq!(c, 553);
        let (c, _, text) = refusal(p.check_sender_at(&grant("sleepy"), "a@sleepy.example", 0));
        assert_eq!((c, text.as_str()), (550, "Account suspended"));
    }

    #[test]
    fn sender_domains_must_be_able_to_send_at_mail_from() {
        let mut s = snapshot(1);
        for entry in &mut s.tenants[0].sending {
            if entry.domain == "acme.example" {
                entry.may_send = false;
            } else {
                entry.dkim.clear();
            }
        }
        let current = Arc::new(Current::default());
        current.set(Directory::new(&s));
        let g = grant("acme");
        for missing in [MissingKeys::Refuse, MissingKeys::Unsigned] {
            let p = Policy::new(Arc::clone(&current), missing);
            let (c, st, text) = refusal(p.check_sender_at(&g, "a@acme.example", 0));
            assert_eq!(
                (c, st, text.as_str()),
                (
                    550,
                    Some(EnhancedCode::new(5, 7, 1)),
                    "Sender domain acme.example is not verified for sending"
                )
            );
            let no_key = p.check_sender_at(&g, "<a@MAIL.acme.example>", 0);
            if missing == MissingKeys::Refuse {
                let (c, st, text) = refusal(no_key);
                assert_eq!(
                    (c, st, text.as_str()),
                    (
                        550,
                        Some(EnhancedCode::new(5, 7, 1)),
                        "Sender domain MAIL.acme.example has no DKIM key"
                    )
                );
            } else {
                assert!(no_key.is_ok(), "unsigned is allowed");
            }
            // Ownership is checked first.
            assert_eq!(refusal(p.check_sender_at(&g, "a@other.example", 0)).0, 553);
        }
    }

    #[test]
    fn recipients_per_message() {
        let p = policy(10, 10, 2);
        let g = grant("acme");
        let to = "b@remote.example";
        assert!(p.check_recipient(&g, to, 1).is_ok());
        assert!(p.check_recipient(&g, to, 2).is_ok());
        let (c, s, text) = refusal(p.check_recipient(&g, to, 3));
        assert_eq!((c, s), (452, Some(EnhancedCode::new(4, 5, 3))));
        assert_eq!(text, "Too many recipients for this account (limit 2)");
        let (c, _, _) = refusal(p.check_recipient(&grant("gone"), to, 1));
        assert_eq!(c, 550);
    }

    #[test]
    fn suppressed_recipients_are_refused_for_their_tenant_only() {
        let mut s = snapshot(1);
        s.tenants[0].suppressed = vec![
            way2mail_wire::snapshot::suppression_hash("Gone@Remote.Example"),
            // Upper-case hex, as a hand-made list might have it.
            way2mail_wire::snapshot::suppression_hash("old@remote.example").to_uppercase(),
        ];
        s.tenants[1].status = way2mail_wire::protocol::TenantStatus::Active;
        s.tenants[1].suppressed = vec![way2mail_wire::snapshot::suppression_hash("x@y.example")];
        let current = Arc::new(Current::default());
        current.set(Directory::new(&s));
        let p = Policy::new(current, MissingKeys::Refuse);
        let acme = grant("acme");
        for address in [
            "gone@remote.example",
            "GONE@remote.EXAMPLE",
            "old@remote.example",
        ] {
            let (c, st, text) = refusal(p.check_recipient(&acme, address, 1));
            assert_eq!(
                (c, st),
                (550, Some(EnhancedCode::new(5, 7, 1))),
                "{address}"
            );
            assert_eq!(
                text,
                format!("Recipient <{address}> is on this account's suppression list")
            );
        }
        assert!(p.check_recipient(&acme, "other@remote.example", 1).is_ok());
        assert!(
            p.check_recipient(&acme, "x@y.example", 1).is_ok(),
            "another tenant's list"
        );
        let (c, _, _) = refusal(p.check_recipient(&grant("sleepy"), "x@y.example", 1));
        assert_eq!(c, 550);
        assert!(p
            .check_recipient(&grant("sleepy"), "gone@remote.example", 1)
            .is_ok());
    }

    #[test]
    fn prune_forgets_idle_tenants() {
        let p = policy(10, 10, 2);
        p.message_queued_at(&grant("acme"), 0);
        p.prune();
        assert_eq!(p.counters().len(), 1, "sent within the day");
        p.counters().get_mut("acme").expect("window").advance(5000);
        p.prune();
        assert!(p.counters().is_empty());
    }
}
