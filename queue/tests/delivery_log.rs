//! The delivery log's queries and purge, and how `list` shows delivery state, on
//! real sled files.

mod support;

use support::*;
use way2mail_daemon::time::now_ms;
use way2mail_queue::{DeliveryOutcome, LogFilter};
use way2mail_smtp::RecipientState;

#[test]
fn delivery_log_filters_and_purge() {
    let fx = Fixture::new();
    let spool = fx.open();
    let env = envelope("f@example.org", 1);
    let (a, b) = (enqueue(&spool, &env, "a"), enqueue(&spool, &env, "b"));
    spool.take_due(now_ms(), 10, LEASE_MS).expect("take");
    let log_a = vec![
        log_record(&a, "x@example.net", 1_000, DeliveryOutcome::Deferred),
        log_record(&a, "y@example.net", 1_000, DeliveryOutcome::Deferred),
        log_record(&a, "x@example.net", 3_000, DeliveryOutcome::Delivered),
    ];
    let log_b = vec![
        log_record(&b, "X@Example.NET", 2_000, DeliveryOutcome::Bounced),
        log_record(&b, "z@example.net", 4_000, DeliveryOutcome::Expired),
    ];
    let da = spool
        .complete(a, &env, None, None, log_a.clone())
        .expect("complete");
    let db = spool
        .complete(b, &env, Some(9), None, log_b.clone())
        .expect("complete");
    da.wait_blocking().expect("durable");
    db.wait_blocking().expect("durable");

    let query = |f: LogFilter| -> Vec<(u64, String)> {
        spool
            .delivery_log(f)
            .expect("log")
            .into_iter()
            .map(|r| (r.time_ms, r.recipient))
            .collect()
    };
    let times: Vec<u64> = query(LogFilter::default()).iter().map(|r| r.0).collect();
    assert_eq!(times, vec![1_000, 1_000, 2_000, 3_000, 4_000], "time order");
    assert_eq!(
        query(LogFilter {
            tenant: None,
            message: Some(b),
            ..LogFilter::default()
        })
        .len(),
        2
    );
    let by_rcpt = query(LogFilter {
        tenant: None,
        recipient: Some("x@example.net".into()),
        ..LogFilter::default()
    });
    assert_eq!(
        by_rcpt.iter().map(|r| r.0).collect::<Vec<_>>(),
        vec![1_000, 2_000, 3_000]
    );
    let window = query(LogFilter {
        tenant: None,
        since_ms: Some(2_000),
        until_ms: Some(4_000),
        ..LogFilter::default()
    });
    assert_eq!(
        window.iter().map(|r| r.0).collect::<Vec<_>>(),
        vec![2_000, 3_000]
    );
    let both = query(LogFilter {
        tenant: None,
        message: Some(a),
        recipient: Some("x@example.net".into()),
        since_ms: Some(2_000),
        until_ms: None,
    });
    assert_eq!(both, vec![(3_000, "x@example.net".to_owned())]);
    assert!(query(LogFilter {
        tenant: None,
        since_ms: Some(5_000),
        until_ms: Some(1_000),
        ..LogFilter::default()
    })
    .is_empty());

    assert_eq!(spool.purge_delivery_log_before(1_000).expect("purge"), 0);
    assert_eq!(spool.purge_delivery_log_before(3_000).expect("purge"), 3);
    assert_eq!(spool.purge_delivery_log_before(3_000).expect("purge"), 0);
    drop(spool);
    let spool = fx.open();
    let left = spool.delivery_log(LogFilter::default()).expect("log");
    assert_eq!(left, vec![log_a[2].clone(), log_b[1].clone()]);
    assert_eq!(spool.len(), 1, "purging the log leaves messages alone");
}

#[test]
fn list_shows_recipient_states_and_next_attempt() {
    let fx = Fixture::new();
    let spool = fx.open();
    let id = enqueue(&spool, &envelope("s@example.org", 2), "list");
    let before = &spool.list().expect("list")[0];
    assert!(before.next_attempt_ms.is_some_and(|t| t <= now_ms()) && !before.leased);
    assert!(before
        .recipient_states
        .iter()
        .all(|r| r.state == RecipientState::Pending && r.attempts == 0));
    let taken = now_ms();
    let leased = spool.take_due(taken, 1, 60_000).expect("take");
    let during = &spool.list().expect("list")[0];
    assert!(during.leased);
    assert_eq!(during.next_attempt_ms, Some(taken + 60_000));

    let mut env = leased[0].envelope.clone();
    env.recipients[0].state = RecipientState::Failed;
    env.recipients[0].attempts = 2;
    env.recipients[0].last_error = Some("550 5.1.1 no such user".into());
    reschedule(&spool, id, &env, 42_000);
    let s = &spool.list().expect("list")[0];
    assert_eq!(
        (s.id, s.recipients, s.next_attempt_ms, s.leased),
        (id, 2, Some(42_000), false)
    );
    assert_eq!(s.size, body("list").len() as u64);
    assert_eq!(s.recipient_states[0].address, "rcpt0@example.net");
    assert_eq!(s.recipient_states[0].state, RecipientState::Failed);
    assert_eq!(s.recipient_states[0].attempts, 2);
    assert_eq!(
        s.recipient_states[0].last_error.as_deref(),
        Some("550 5.1.1 no such user")
    );
    assert_eq!(s.recipient_states[1].state, RecipientState::Pending);
}

#[test]
fn delivery_log_pages_by_cursor_per_tenant() {
    let fx = Fixture::new();
    let spool = fx.open();
    let mut acme = envelope("f@acme.example", 1);
    acme.origin.tenant = Some("acme".into());
    let mut beta = envelope("f@beta.example", 1);
    beta.origin.tenant = Some("beta".into());
    let (a, b) = (enqueue(&spool, &acme, "a"), enqueue(&spool, &beta, "b"));
    spool.take_due(now_ms(), 10, LEASE_MS).expect("take");
    let log_a: Vec<_> = (0..7u64)
        .map(|n| {
            log_record(
                &a,
                &format!("r{n}@example.net"),
                1_000 + n / 2 * 1_000,
                DeliveryOutcome::Deferred,
            )
        })
        .collect();
    let da = spool
        .complete(a, &acme, Some(9), None, log_a.clone())
        .expect("complete");
    let db = spool
        .complete(
            b,
            &beta,
            Some(9),
            None,
            vec![log_record(
                &b,
                "x@example.net",
                1_500,
                DeliveryOutcome::Bounced,
            )],
        )
        .expect("complete");
    da.wait_blocking().expect("durable");
    db.wait_blocking().expect("durable");

    // Pages of three: every record of acme's once, in order, none of beta's.
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = spool
            .delivery_log_page("acme", cursor.as_ref(), u64::MAX, 3)
            .expect("page");
        assert!(page.len() <= 3);
        let Some((last, _)) = page.last() else { break };
        cursor = Some(*last);
        seen.extend(page.into_iter().map(|(_, r)| r));
    }
    let mut want = log_a.clone();
    want.sort_by_key(|r| r.time_ms);
    assert_eq!(seen.len(), 7);
    assert_eq!(
        seen.iter().map(|r| r.time_ms).collect::<Vec<_>>(),
        want.iter().map(|r| r.time_ms).collect::<Vec<_>>()
    );
    assert!(seen.iter().all(|r| r.message_id == a.to_string()));
    // `until_ms` leaves out what is newer; an unknown tenant has nothing.
    let early = spool
        .delivery_log_page("acme", None, 2_000, 100)
        .expect("page");
    assert_eq!(early.len(), 2);
    assert!(spool
        .delivery_log_page("nobody", None, u64::MAX, 10)
        .expect("page")
        .is_empty());
    let beta_log = spool
        .delivery_log_page("beta", None, u64::MAX, 10)
        .expect("page");
    assert_eq!(beta_log.len(), 1);
}
