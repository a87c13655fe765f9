//! The webhook outbox on real sled files: entries written with what they report
//! (a new message, a delivery log record, an event), only for tenants whose router
//! names endpoints; found when due, retried later, removed when posted, kept across
//! a restart, paged for exports, purged by retention, counted by verify and erased
//! with their tenant.

mod support;

use std::sync::Arc;

use support::*;
use way2mail_queue::{verify, DeliveryOutcome, EventRouter};
use way2mail_smtp::MessageId;

/// Tenant `acme` has endpoint `wh_a` for accepted and delivered events and
/// `wh_b` for delivered ones; nobody else has any.
struct Endpoints;

impl EventRouter for Endpoints {
    fn endpoints(&self, tenant: &str, outcome: &DeliveryOutcome) -> Vec<String> {
        match (tenant, outcome) {
            ("acme", DeliveryOutcome::Accepted) => vec!["wh_a".into()],
            ("acme", DeliveryOutcome::Delivered) => vec!["wh_a".into(), "wh_b".into()],
            _ => Vec::new(),
        }
    }
}

#[test]
fn events_wait_with_what_they_report_until_posted() {
    let fx = Fixture::new();
    let spool = fx.open();
    spool.set_event_router(Arc::new(Endpoints));
    let mut acme = envelope("a@acme.example", 2);
    acme.origin.tenant = Some("acme".into());
    acme.tags = vec!["welcome".into()];
    let mut beta = envelope("b@beta.example", 1);
    beta.origin.tenant = Some("beta".into());
    let id = enqueue(&spool, &acme, "one");
    enqueue(&spool, &beta, "two");
    let untenanted = envelope("c@local.example", 1);
    enqueue(&spool, &untenanted, "three");

    // One accepted event per recipient of acme's message; none for beta or mail
    // of no tenant.
    let now = way2mail_daemon_now();
    let due = spool.webhooks_due(now + 1000, 100).expect("due");
    assert_eq!(due.len(), 2, "{due:?}");
    for d in &due {
        assert_eq!(d.tenant, "acme");
        assert_eq!(d.entry.webhook, "wh_a");
        assert_eq!(d.entry.event.outcome, DeliveryOutcome::Accepted);
        assert_eq!(d.entry.event.message_id, id.to_string());
        assert_eq!(d.entry.event.tags, vec!["welcome".to_string()]);
        assert_eq!(d.entry.attempts, 0);
    }
    assert_ne!(due[0].key, due[1].key);

    // A failed post: back later, not before.
    let mut retry = due.clone();
    for d in &mut retry {
        d.entry.attempts = 1;
        d.entry.next_attempt_ms = now + 60_000;
        d.entry.last_error = Some("HTTP 503".into());
    }
    spool.webhooks_retry(&retry).expect("retry");
    assert!(spool.webhooks_due(now + 1000, 100).expect("due").is_empty());
    let again = spool.webhooks_due(now + 60_000, 100).expect("due");
    assert_eq!(again.len(), 2);
    assert_eq!(again[0].entry.last_error.as_deref(), Some("HTTP 503"));
    assert_eq!(again[0].due_ms, now + 60_000);

    // A delivery log record fans out to both endpoints that take it.
    let delivered = log_record(&id, "rcpt0@remote.example", now, DeliveryOutcome::Delivered);
    spool
        .submit_event("acme", &id, &delivered)
        .expect("event")
        .wait_blocking()
        .expect("durable");
    let mut posted: Vec<_> = spool
        .webhooks_due(now + 1000, 100)
        .expect("due")
        .into_iter()
        .map(|d| (d.entry.webhook.clone(), d))
        .collect();
    posted.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        posted.iter().map(|(w, _)| w.as_str()).collect::<Vec<_>>(),
        ["wh_a", "wh_b"]
    );
    spool
        .webhooks_done(&[(posted[0].1.key, posted[0].1.due_ms)])
        .expect("done");
    drop(spool);

    // After a restart: what was not posted is still there, in the export pages.
    let spool = fx.open();
    let pages: Vec<_> = {
        let first = spool.webhook_outbox_page("acme", None, 2).expect("page");
        let rest = spool
            .webhook_outbox_page("acme", Some(&first[1].0), 10)
            .expect("page");
        first.into_iter().chain(rest).collect()
    };
    assert_eq!(pages.len(), 3, "two accepted, one delivered for wh_b");
    assert!(spool
        .webhook_outbox_page("beta", None, 10)
        .expect("page")
        .is_empty());
    drop(spool);
    let report = verify(
        &fx.spool_dir,
        &keyring_for(&fx.key_path),
        &Default::default(),
    )
    .expect("verify");
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.webhook_events, 3);

    // Retention takes what is older than its cut; erasure takes the rest, and the
    // dispatcher's index forgets them.
    let spool = fx.open();
    let key_id = spool.keyring().existing("acme").expect("key").id();
    assert_eq!(spool.purge_webhooks_of(key_id, 0).expect("purge"), 0);
    spool.erase_tenant("acme").expect("erase");
    assert!(spool
        .webhook_outbox_page("acme", None, 10)
        .expect("page")
        .is_empty());
    assert!(spool
        .webhooks_due(u64::MAX - 1, 100)
        .expect("due")
        .is_empty());
}

#[test]
fn retention_purges_entries_older_than_its_cut() {
    let fx = Fixture::new();
    let spool = fx.open();
    spool.set_event_router(Arc::new(Endpoints));
    let mut acme = envelope("a@acme.example", 1);
    acme.origin.tenant = Some("acme".into());
    let id = MessageId::generate();
    let old = log_record(&id, "r@remote.example", 1_000, DeliveryOutcome::Delivered);
    spool
        .submit_event("acme", &id, &old)
        .expect("event")
        .wait_blocking()
        .expect("durable");
    let key_id = spool.keyring().existing("acme").expect("key").id();
    assert_eq!(
        spool
            .webhook_outbox_page("acme", None, 10)
            .expect("page")
            .len(),
        2
    );
    assert_eq!(spool.purge_webhooks_of(key_id, 1_000).expect("purge"), 0);
    assert_eq!(spool.purge_webhooks_of(key_id, 1_001).expect("purge"), 2);
    assert!(spool
        .webhooks_due(u64::MAX - 1, 10)
        .expect("due")
        .is_empty());
}

fn way2mail_daemon_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64
}
