//! Idempotency records of API requests on real sled files: written with their
//! message in one batch, found by tenant and key, expired after a day, purged,
//! counted by verify, and erased with their tenant.

mod support;

use support::*;
use way2mail_queue::{verify, IdempotencyRecord, IDEMPOTENCY_TTL_MS};
use way2mail_smtp::MessageId;

fn record(id: &MessageId, created_ms: u64) -> IdempotencyRecord {
    IdempotencyRecord {
        created_ms,
        request: "ab".repeat(32),
        status: 202,
        body: format!("{{\"id\":\"{id}\"}}"),
        message_id: id.to_string(),
    }
}

#[test]
fn kept_with_the_message_found_expired_purged_and_erased() {
    let fx = Fixture::new();
    let spool = fx.open();
    let mut env = envelope("a@acme.example", 1);
    env.origin.tenant = Some("acme".into());
    let now = 1_800_000_000_000;
    let id = MessageId::generate();
    let rec = record(&id, now);
    let side = spool
        .idempotency_records("acme", "order-1234", &rec)
        .expect("records");
    spool
        .enqueue_with(id, &env, &body("x"), side)
        .expect("enqueue")
        .wait_blocking()
        .expect("durable");
    drop(spool);

    // After a restart: both the message and its answer.
    let spool = fx.open();
    assert!(spool.envelope(&id).expect("read").is_some());
    assert_eq!(
        spool
            .idempotency("acme", "order-1234", now + 1)
            .expect("lookup"),
        Some(rec.clone())
    );
    assert_eq!(
        spool
            .idempotency("acme", "order-1235", now)
            .expect("lookup"),
        None
    );
    assert_eq!(
        spool
            .idempotency("beta", "order-1234", now)
            .expect("lookup"),
        None
    );
    // A day later it is gone for lookups, then for good.
    let later = now + IDEMPOTENCY_TTL_MS;
    assert_eq!(
        spool
            .idempotency("acme", "order-1234", later)
            .expect("lookup"),
        None
    );
    assert_eq!(
        spool.idempotency_of("acme").expect("export"),
        vec![rec.clone()]
    );

    // A second record, to erase with the tenant.
    let id2 = MessageId::generate();
    let side = spool
        .idempotency_records("acme", "order-2", &record(&id2, later))
        .expect("records");
    spool
        .enqueue_with(id2, &env, &body("y"), side)
        .expect("enqueue")
        .wait_blocking()
        .expect("durable");
    assert_eq!(spool.purge_idempotency(later - 1).expect("purge"), 0);
    assert_eq!(spool.purge_idempotency(later + 1).expect("purge"), 1);
    assert_eq!(spool.idempotency_of("acme").expect("export").len(), 1);
    drop(spool);
    let report = verify(
        &fx.spool_dir,
        &keyring_for(&fx.key_path),
        &Default::default(),
    )
    .expect("verify");
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.idempotency, 2, "one record and its expiry entry");

    let spool = fx.open();
    spool.erase_tenant("acme").expect("erase");
    assert!(spool.idempotency_of("acme").expect("export").is_empty());
    assert_eq!(
        spool.idempotency("acme", "order-2", later).expect("lookup"),
        None
    );
}
