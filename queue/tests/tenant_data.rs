//! Per-tenant data keys in the spool: what a tenant has, its export, its erasure
//! (crypto-shredding), retention purges, and backups (dump and restore) that cannot
//! bring an erased tenant back.

mod support;

use std::path::Path;

use support::*;
use way2mail_daemon::time::now_ms;
use way2mail_queue::{keys, restore_dump, DeliveryOutcome, Error, LogFilter, Spool};
use way2mail_seal::Keyring;
use way2mail_smtp::{Envelope, MessageId};

fn tenant_envelope(tenant: &str, rcpts: usize) -> Envelope {
    let mut env = envelope(&format!("app@{tenant}.example"), rcpts);
    env.origin.tenant = Some(tenant.to_owned());
    env.origin.auth = Some(format!("app@{tenant}.example"));
    env.origin.listener = "submission".into();
    env
}

fn enqueue_tagged(spool: &Spool, env: &Envelope, marker: &str) -> MessageId {
    let id = MessageId::generate();
    let body = format!("Subject: {marker}\r\n\r\nsecret content {marker}\r\n").into_bytes();
    spool
        .enqueue(id, env, body)
        .expect("enqueue")
        .wait_blocking()
        .expect("durable");
    id
}

/// Delivers every due message at once, logging one record per recipient.
fn deliver_all(spool: &Spool) {
    for leased in spool.take_due(u64::MAX / 2, 1000, LEASE_MS).expect("take") {
        let log: Vec<_> = leased
            .envelope
            .recipients
            .iter()
            .map(|r| log_record(&leased.id, &r.address, now_ms(), DeliveryOutcome::Delivered))
            .collect();
        spool
            .complete(leased.id, &leased.envelope, None, None, log)
            .expect("complete")
            .wait_blocking()
            .expect("durable");
    }
}

/// Every (key, value) of the sled files, read once the spool is closed.
fn raw_records(dir: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    raw_db(dir)
        .iter()
        .map(|kv| {
            let (k, v) = kv.expect("kv");
            (k.to_vec(), v.to_vec())
        })
        .collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn each_tenant_has_its_own_key_inventory_and_export() {
    let fx = Fixture::new();
    let spool = fx.open();
    let a1 = enqueue_tagged(&spool, &tenant_envelope("acme", 2), "acme-1");
    let a2 = enqueue_tagged(&spool, &tenant_envelope("acme", 1), "acme-2");
    let g = enqueue_tagged(&spool, &tenant_envelope("globex", 1), "globex-1");
    let none = enqueue_tagged(&spool, &envelope("x@example.org", 1), "none");
    let keyring = spool.keyring().clone();
    let acme = keyring.existing("acme").expect("acme key");
    let globex = keyring.existing("globex").expect("globex key");
    assert_ne!(acme.id(), globex.id());
    assert_ne!(acme.id(), keyring.system().id());

    let inv = spool.tenant_inventory("acme").expect("inventory");
    assert_eq!(inv.key_id, Some(acme.id()));
    assert_eq!(inv.messages, 2);
    assert!(inv.oldest_message_ms.expect("oldest") <= a1.timestamp_ms());
    assert_eq!(spool.tenant_inventory("nobody").expect("none").messages, 0);

    let mut exported = Vec::new();
    let n = spool
        .for_each_tenant_message("acme", |id, env, body| {
            assert_eq!(env.origin.tenant.as_deref(), Some("acme"));
            exported.push((id, String::from_utf8(body).expect("utf8")));
            Ok::<_, Error>(())
        })
        .expect("export");
    assert_eq!(n, 2);
    let ids: Vec<MessageId> = exported.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, vec![a1, a2]);
    assert!(exported[0].1.contains("acme-1"));

    deliver_all(&spool);
    let log = spool
        .delivery_log(LogFilter {
            tenant: Some(Some("acme".into())),
            ..LogFilter::default()
        })
        .expect("log");
    assert_eq!(log.len(), 3, "two recipients of a1, one of a2");
    assert!(log
        .iter()
        .all(|r| r.message_id == a1.to_string() || r.message_id == a2.to_string()));
    let mine = spool
        .delivery_log(LogFilter {
            tenant: Some(None),
            ..LogFilter::default()
        })
        .expect("log");
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].message_id, none.to_string());
    assert_eq!(
        spool.delivery_log(LogFilter::default()).expect("all").len(),
        5
    );
    assert_eq!(
        spool.tenant_inventory("globex").expect("inv").log.records,
        1
    );
    let _ = g;
}

#[test]
fn erasure_shreds_the_key_and_removes_the_tenant_only() {
    let fx = Fixture::new();
    let (acme_queued, globex_queued) = {
        let spool = fx.open();
        let delivered = enqueue_tagged(&spool, &tenant_envelope("acme", 1), "acme-delivered");
        deliver_all(&spool);
        let queued = enqueue_tagged(&spool, &tenant_envelope("acme", 1), "acme-queued");
        let other = enqueue_tagged(&spool, &tenant_envelope("globex", 1), "globex-queued");
        let key_id = spool.keyring().existing("acme").expect("key").id();

        let erased = spool.erase_tenant("acme").expect("erase");
        assert_eq!(erased.messages, 1);
        assert_eq!(erased.log_records, 1);
        assert_eq!(erased.erasure.key_id, Some(key_id));
        assert!(spool.read(&queued).expect("read").is_none());
        assert_eq!(spool.len(), 1);
        assert!(spool.read(&other).expect("read").is_some());
        assert_eq!(spool.tenant_inventory("acme").expect("inv").messages, 0);
        // The name is never used again.
        assert!(matches!(
            spool.enqueue(MessageId::generate(), &tenant_envelope("acme", 1), b"x"),
            Err(Error::Erased(_))
        ));
        // A second erasure finds nothing more, and still reports what was removed.
        let again = spool.erase_tenant("acme").expect("again");
        assert_eq!((again.messages, again.log_records), (1, 1));
        let _ = delivered;
        (queued, other)
    };
    // Nothing left in the files opens as the tenant's, and no raw byte is plaintext.
    let keyring = keyring_for(&fx.key_path);
    let mut opened_other = false;
    for (key, value) in raw_records(&fx.spool_dir) {
        assert!(
            !contains(&value, b"acme-"),
            "plaintext in {}",
            keys::describe(&key)
        );
        assert!(
            !contains(&value, b"globex-"),
            "plaintext in {}",
            keys::describe(&key)
        );
        if let Ok(plain) = keyring.open_record(&key, value.clone()) {
            assert!(
                !contains(&plain, b"acme"),
                "acme readable in {}",
                keys::describe(&key)
            );
            opened_other |= contains(&plain, b"globex-queued");
        }
    }
    assert!(opened_other, "the other tenant's mail is still readable");
    let _ = (acme_queued, globex_queued);
}

/// The snapshot follower and the admin socket may both act on one erasure in
/// control, at the same moment: they run one after the other, and each reports
/// everything removed (the admin socket's answer goes into the erasure receipt).
#[test]
fn two_erasures_at_once_both_report_what_was_removed() {
    let fx = Fixture::new();
    let spool = fx.open();
    let _ = enqueue_tagged(&spool, &tenant_envelope("acme", 1), "acme-delivered");
    deliver_all(&spool);
    for n in 0..3 {
        let _ = enqueue_tagged(&spool, &tenant_envelope("acme", 1), &format!("acme-{n}"));
    }
    let counts: Vec<(u64, u64)> = std::thread::scope(|s| {
        let runs: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    let done = spool.erase_tenant("acme").expect("erase");
                    (done.messages, done.log_records)
                })
            })
            .collect();
        runs.into_iter()
            .map(|r| r.join().expect("thread"))
            .collect()
    });
    assert_eq!(counts, vec![(3, 1), (3, 1)]);
    assert!(spool.is_empty());
}

#[test]
fn a_message_erased_while_in_delivery_is_gone_after_completion() {
    let fx = Fixture::new();
    let spool = fx.open();
    let id = enqueue_tagged(&spool, &tenant_envelope("acme", 1), "in-flight");
    let leased = spool.take_due(u64::MAX / 2, 10, LEASE_MS).expect("take");
    assert_eq!(ids(&leased), vec![id]);
    spool.erase_tenant("acme").expect("erase");
    let log = vec![log_record(
        &id,
        "rcpt0@example.net",
        now_ms(),
        DeliveryOutcome::Delivered,
    )];
    match spool.complete(id, &leased[0].envelope, None, None, log) {
        Err(Error::UnknownMessage(_)) => {}
        Ok(d) => d.wait_blocking().expect("durable"),
        Err(e) => panic!("unexpected {e}"),
    }
    assert!(spool.is_empty());
    assert!(spool
        .delivery_log(LogFilter::default())
        .expect("log")
        .is_empty());
    assert!(raw_leases_of(&spool).is_empty());
}

fn raw_leases_of(spool: &Spool) -> Vec<MessageId> {
    spool
        .list()
        .expect("list")
        .into_iter()
        .filter(|m| m.leased)
        .map(|m| m.id)
        .collect()
}

#[test]
fn retention_purges_old_content_and_logs_by_tenant() {
    let fx = Fixture::new();
    let spool = fx.open();
    let delivered = enqueue_tagged(&spool, &tenant_envelope("acme", 1), "old-log");
    deliver_all(&spool);
    let queued = enqueue_tagged(&spool, &tenant_envelope("acme", 2), "old-mail");
    let other = enqueue_tagged(&spool, &tenant_envelope("globex", 1), "other");
    let acme = spool.keyring().existing("acme").expect("key").id();

    // Nothing is older than an hour.
    let hour_ago = now_ms() - 3_600_000;
    assert_eq!(
        spool
            .purge_content_of(acme, hour_ago, "r")
            .expect("purge")
            .messages,
        0
    );
    assert_eq!(spool.purge_log_of(acme, hour_ago).expect("purge"), 0);

    let later = now_ms() + 1;
    let purged = spool
        .purge_content_of(
            acme,
            later,
            "removed by the retention policy (content_days = 0)",
        )
        .expect("purge");
    assert_eq!(purged.messages, 1);
    assert!(spool.read(&queued).expect("read").is_none());
    assert!(
        spool.read(&other).expect("read").is_some(),
        "other tenants keep theirs"
    );
    let log = spool
        .delivery_log(LogFilter {
            tenant: Some(Some("acme".into())),
            message: Some(queued),
            ..LogFilter::default()
        })
        .expect("log");
    assert_eq!(log.len(), 2, "one expired record per pending recipient");
    assert!(log.iter().all(|r| r.outcome == DeliveryOutcome::Expired
        && r.reply.as_deref().is_some_and(|t| t.contains("retention"))));

    // The log: everything of acme before `later` (the delivery and the expiries).
    let removed = spool.purge_log_of(acme, now_ms() + 1).expect("purge log");
    assert_eq!(removed, 3);
    assert!(spool
        .delivery_log(LogFilter {
            tenant: Some(Some("acme".into())),
            ..LogFilter::default()
        })
        .expect("log")
        .is_empty());
    let _ = delivered;
}

#[test]
fn messages_in_delivery_are_left_for_the_next_sweep() {
    let fx = Fixture::new();
    let spool = fx.open();
    let id = enqueue_tagged(&spool, &tenant_envelope("acme", 1), "leased");
    let leased = spool.take_due(u64::MAX / 2, 10, LEASE_MS).expect("take");
    let acme = spool.keyring().existing("acme").expect("key").id();
    let purged = spool
        .purge_content_of(acme, now_ms() + 1, "r")
        .expect("purge");
    assert_eq!((purged.messages, purged.in_delivery), (0, 1));
    assert!(spool.read(&id).expect("read").is_some());
    drop(leased);
}

#[test]
fn backups_restore_every_message_but_never_an_erased_tenant() {
    let fx = Fixture::new();
    let mut dump = Vec::new();
    let (acme, globex, plain) = {
        let spool = fx.open();
        let acme = enqueue_tagged(&spool, &tenant_envelope("acme", 1), "acme-mail");
        let globex = enqueue_tagged(&spool, &tenant_envelope("globex", 1), "globex-mail");
        let plain = enqueue_tagged(&spool, &envelope("x@example.org", 1), "plain-mail");
        let stats = spool.dump(&mut dump).expect("dump");
        assert!(stats.records >= 9, "{stats:?}");
        assert!(
            !contains(&dump, b"acme-mail"),
            "the dump holds sealed records only"
        );
        // Restoring onto a running spool is refused.
        assert!(matches!(
            restore_dump(&fx.spool_dir, spool.keyring(), &mut dump.as_slice()),
            Err(Error::Locked { .. })
        ));
        spool.erase_tenant("acme").expect("erase");
        (acme, globex, plain)
    };
    let keyring = keyring_for(&fx.key_path);
    let stats = restore_dump(&fx.spool_dir, &keyring, &mut dump.as_slice()).expect("restore");
    assert_eq!(stats.messages, 2, "{stats:?}");
    assert!(stats.erased_dropped >= 2, "{stats:?}");
    assert!(stats.moved_aside.as_ref().is_some_and(|p| p.exists()));
    let spool = Spool::open(&fx.spool_dir, keyring).expect("open restored");
    let report = spool.recover().expect("recover");
    assert_eq!(report.messages, 2, "{report:?}");
    assert!(spool.read(&acme).expect("read").is_none());
    assert!(spool.read(&globex).expect("read").is_some());
    assert!(spool.read(&plain).expect("read").is_some());

    // A damaged or cut dump is refused and leaves the spool as it was.
    drop(spool);
    let cut = &dump[..dump.len() - 5];
    assert!(restore_dump(&fx.spool_dir, &keyring_for(&fx.key_path), &mut &cut[..]).is_err());
    assert!(restore_dump(&fx.spool_dir, &keyring_for(&fx.key_path), &mut &b"junk"[..]).is_err());
    let spool = fx.open();
    assert_eq!(spool.len(), 2);
}

#[test]
fn records_of_erased_tenants_brought_back_raw_are_deleted() {
    let fx = Fixture::new();
    let copied = {
        let spool = fx.open();
        enqueue_tagged(&spool, &tenant_envelope("acme", 1), "acme-mail");
        enqueue_tagged(&spool, &envelope("x@example.org", 1), "plain-mail");
        deliver_all(&spool);
        enqueue_tagged(&spool, &tenant_envelope("acme", 1), "acme-queued");
        drop(spool);
        // The message records only: bringing the commit count back too would be a
        // rollback, which opening refuses (see store_integrity.rs).
        let mut copied = raw_records(&fx.spool_dir);
        copied.retain(|(k, _)| k.as_slice() != keys::COMMIT_SEQ);
        let spool = fx.open();
        spool.erase_tenant("acme").expect("erase");
        copied
    };
    // Put the old records back behind the spool's back (a file-level copy).
    {
        let db = raw_db(&fx.spool_dir);
        for (k, v) in &copied {
            db.insert(k.as_slice(), v.as_slice()).expect("insert");
        }
        db.flush().expect("flush");
    }
    let spool = fx.open();
    // Without recovery, the sweep's purge finds them by their key ids.
    let (messages, log) = spool.purge_erased().expect("purge");
    assert_eq!((messages, log), (1, 1));
    drop(spool);
    {
        let db = raw_db(&fx.spool_dir);
        for (k, v) in &copied {
            db.insert(k.as_slice(), v.as_slice()).expect("insert");
        }
        db.flush().expect("flush");
    }
    // And recovery at start deletes what it meets of them.
    let spool = fx.open();
    let report = spool.recover().expect("recover");
    assert_eq!(report.erased_removed, 2, "{report:?}");
    assert_eq!(report.quarantined, 0, "{report:?}");
    assert_eq!(report.messages, 0, "{report:?}");
}

#[test]
fn a_foreign_keyring_never_deletes_anything() {
    let fx = Fixture::new();
    {
        let spool = fx.open();
        enqueue_tagged(&spool, &tenant_envelope("acme", 1), "acme-mail");
    }
    // The wrong keyring: the records are quarantined, not treated as erased.
    let spool = Spool::open(&fx.spool_dir, Keyring::ephemeral().expect("ring")).expect("open");
    let report = spool.recover().expect("recover");
    assert_eq!(report.erased_removed, 0);
    assert_eq!(report.quarantined, 2);
    assert_eq!(spool.purge_erased().expect("purge"), (0, 0));
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Report {
    id: String,
    end: u64,
    text: String,
}

#[test]
fn dmarc_reports_are_sealed_per_tenant_kept_once_trimmed_and_erased() {
    let fx = Fixture::new();
    let report = |id: &str, end: u64| Report {
        id: id.into(),
        end,
        text: format!("dmarc-secret-{id}"),
    };
    {
        let spool = fx.open();
        for (id, end) in [("old", 1_000), ("mid", 5_000), ("new", 9_000)] {
            assert!(spool
                .store_dmarc_report("acme", "google.com", id, end, &report(id, end))
                .expect("store"));
        }
        // Sent again: the same reporter and id land on the same key.
        assert!(!spool
            .store_dmarc_report("acme", "google.com", "mid", 5_000, &report("mid", 5_000))
            .expect("again"));
        // Another reporter's report with the same id is its own.
        assert!(spool
            .store_dmarc_report("acme", "yahoo.com", "mid", 5_000, &report("y", 5_000))
            .expect("other reporter"));
        assert!(spool
            .store_dmarc_report("globex", "google.com", "g", 5_000, &report("g", 5_000))
            .expect("globex"));

        let read = |tenant: &str, since: u64| {
            let mut out: Vec<Report> = Vec::new();
            spool
                .dmarc_reports(tenant, since, |r| {
                    out.push(r);
                    std::ops::ControlFlow::Continue(())
                })
                .expect("read");
            out.into_iter().map(|r| r.id).collect::<Vec<_>>()
        };
        assert_eq!(read("acme", 0).len(), 4);
        assert_eq!(read("acme", 5_000).len(), 3, "ending at or after since");
        assert_eq!(read("acme", 9_001), Vec::<String>::new());
        assert_eq!(read("globex", 0), vec!["g".to_string()]);
        assert_eq!(read("nobody", 0), Vec::<String>::new());

        let acme = spool.keyring().existing("acme").expect("key").id();
        assert_eq!(spool.purge_dmarc_of(acme, 5_000).expect("purge"), 1);
        assert_eq!(read("acme", 0).len(), 3);
        assert_eq!(spool.dmarc_report_count(acme).expect("count"), 3);

        spool.erase_tenant("acme").expect("erase");
        assert_eq!(spool.dmarc_report_count(acme).expect("count"), 0);
        assert_eq!(read("globex", 0), vec!["g".to_string()]);
    }
    for (key, value) in raw_records(&fx.spool_dir) {
        assert!(
            !contains(&value, b"dmarc-secret"),
            "plaintext in {}",
            keys::describe(&key)
        );
    }
}
