//! Delivery's side of the spool on real sled files: leases (take_due), completion
//! (delete, reschedule, bounce, log) checked after reopening, recovery releasing
//! leases (also after a real crash of a child process), and the queued counter.

mod support;

use std::path::Path;
use std::process::Command;

use support::*;
use way2mail_daemon::time::now_ms;
use way2mail_queue::{keys, DeliveryOutcome, Error, LogFilter};
use way2mail_smtp::{MessageId, RecipientState};

const CHILD_ENV: &str = "WAY2MAIL_QUEUE_DELIVERY_CHILD";

#[test]
fn take_due_returns_due_entries_in_order_and_leases_them() {
    let fx = Fixture::new();
    let spool = fx.open();
    assert_eq!(spool.next_due().expect("next_due"), None);
    let env = envelope("s@example.org", 1);
    let (a, b, c) = (
        enqueue(&spool, &env, "a"),
        enqueue(&spool, &env, "b"),
        enqueue(&spool, &env, "c"),
    );
    assert!(spool
        .next_due()
        .expect("next_due")
        .is_some_and(|t| t <= now_ms()));
    assert_eq!(
        ids(&spool.take_due(now_ms(), 2, LEASE_MS).expect("take")),
        vec![a, b]
    );
    let rest = spool.take_due(now_ms(), 10, LEASE_MS).expect("take");
    assert_eq!(ids(&rest), vec![c]);
    assert_eq!(rest[0].envelope, env);
    assert!(
        spool
            .take_due(u64::MAX, 10, LEASE_MS)
            .expect("take")
            .is_empty(),
        "all leased"
    );
    assert_eq!(spool.next_due().expect("next_due"), None);

    // Put them back at chosen times: due order, not id order, decides.
    reschedule(&spool, a, &env, 5_000);
    reschedule(&spool, b, &env, 3_000);
    reschedule(&spool, c, &env, 9_000);
    assert_eq!(spool.next_due().expect("next_due"), Some(3_000));
    assert!(spool
        .take_due(2_999, 10, LEASE_MS)
        .expect("take")
        .is_empty());
    assert_eq!(
        ids(&spool.take_due(5_000, 10, LEASE_MS).expect("take")),
        vec![b, a]
    );
    assert_eq!(spool.next_due().expect("next_due"), Some(9_000));
    assert_eq!(
        ids(&spool.take_due(u64::MAX, 10, LEASE_MS).expect("take")),
        vec![c]
    );
    assert!(spool
        .take_due(u64::MAX, 0, LEASE_MS)
        .expect("take")
        .is_empty());
    assert_eq!(spool.len(), 3, "leasing does not change the count");
}

/// The scheduler leases against a memory budget: a round stops before the bodies
/// it took would pass `max_bytes`, leaving that entry first in line, and the first
/// message of a round is taken whatever its size.
#[test]
fn take_due_within_stops_at_the_byte_limit_but_always_takes_one() {
    let fx = Fixture::new();
    let spool = fx.open();
    let env = envelope("s@example.org", 1);
    let sized = |len: usize| {
        let id = MessageId::generate();
        spool
            .enqueue(id, &env, vec![b'x'; len])
            .expect("enqueue")
            .wait_blocking()
            .expect("durable");
        id
    };
    let (a, b, c, d) = (sized(100), sized(300), sized(50), sized(1000));
    let take = |max_bytes| {
        spool
            .take_due_within(now_ms(), 10, max_bytes, LEASE_MS, |len| len)
            .expect("take")
    };
    let first = take(350);
    assert_eq!(ids(&first), vec![a], "a and b together are 400 bytes");
    assert_eq!(first[0].body_len, 100);
    let second = take(350);
    assert_eq!(ids(&second), vec![b, c], "exactly at the limit");
    assert_eq!(
        second.iter().map(|l| l.body_len).collect::<Vec<_>>(),
        [300, 50]
    );
    let third = take(10);
    assert_eq!(ids(&third), vec![d], "larger than the limit, alone");
    assert_eq!(third[0].body_len, 1000);
    assert!(take(u64::MAX).is_empty(), "all leased");
    assert_eq!(spool.next_due().expect("next_due"), None);
}

#[test]
fn complete_deletes_reschedules_bounces_and_logs_atomically() {
    let fx = Fixture::new();
    let t0 = now_ms();
    let (done, retry, bounce) = {
        let spool = fx.open();
        let done = enqueue(&spool, &envelope("d@example.org", 2), "done");
        let retry = enqueue(&spool, &envelope("r@example.org", 2), "retry");
        let leased = spool.take_due(now_ms(), 10, LEASE_MS).expect("take");
        assert_eq!(ids(&leased), vec![done, retry]);

        let bounce = MessageId::generate();
        let dsn = envelope("", 1);
        let log = vec![
            log_record(&done, "rcpt0@example.net", t0, DeliveryOutcome::Delivered),
            log_record(&done, "rcpt1@example.net", t0, DeliveryOutcome::Bounced),
        ];
        let d1 = spool
            .complete(
                done,
                &leased[0].envelope,
                None,
                Some((bounce, dsn, body("dsn"))),
                log,
            )
            .expect("complete");

        let mut env = leased[1].envelope.clone();
        env.attempts = 1;
        env.next_attempt_ms = Some(t0 + 600_000);
        env.recipients[0].state = RecipientState::Delivered;
        env.recipients[0].attempts = 1;
        env.recipients[1].attempts = 1;
        env.recipients[1].last_error = Some("451 4.7.1 try later".into());
        let log = vec![log_record(
            &retry,
            "rcpt1@example.net",
            t0 + 1,
            DeliveryOutcome::Deferred,
        )];
        let d2 = spool
            .complete(retry, &env, Some(t0 + 600_000), None, log)
            .expect("complete");
        d1.wait_blocking().expect("durable");
        d2.wait_blocking().expect("durable");
        assert_eq!(spool.len(), 2, "one deleted, one bounce added");
        (done, retry, bounce)
    };
    assert!(raw_leases(&fx.spool_dir).is_empty(), "both leases ended");

    let spool = fx.open();
    assert_eq!(spool.len(), 2);
    assert_eq!(spool.read(&done).expect("read"), None);
    assert_eq!(spool.read_body(&done).expect("read_body"), None);
    let (env, b) = spool.read(&retry).expect("read").expect("retry kept");
    assert_eq!(b, body("retry"));
    assert_eq!(env.attempts, 1);
    assert_eq!(env.next_attempt_ms, Some(t0 + 600_000));
    assert_eq!(env.recipients[0].state, RecipientState::Delivered);
    assert_eq!(env.recipients[1].state, RecipientState::Pending);
    assert_eq!(
        env.recipients[1].last_error.as_deref(),
        Some("451 4.7.1 try later")
    );
    assert_eq!(
        spool.read_body(&bounce).expect("read_body"),
        Some(body("dsn"))
    );
    // The bounce is due now, the deferred message later.
    assert_eq!(
        ids(&spool.take_due(now_ms(), 10, LEASE_MS).expect("take")),
        vec![bounce]
    );
    assert_eq!(
        ids(&spool.take_due(t0 + 600_000, 10, LEASE_MS).expect("take")),
        vec![retry]
    );

    let log = spool.delivery_log(LogFilter::default()).expect("log");
    assert_eq!(log.len(), 3, "records outlive the deleted message");
    assert_eq!(log[0].outcome, DeliveryOutcome::Delivered);
    assert_eq!(log[1].outcome, DeliveryOutcome::Bounced);
    assert_eq!(
        log[2],
        log_record(
            &retry,
            "rcpt1@example.net",
            t0 + 1,
            DeliveryOutcome::Deferred
        )
    );
    let report = spool.recover().expect("recover");
    assert_eq!((report.messages, report.leases_released), (2, 2));
}

#[test]
fn counter_follows_enqueue_completion_and_bounces() {
    let fx = Fixture::new();
    let spool = fx.open();
    let env = envelope("c@example.org", 1);
    for tag in ["1", "2", "3"] {
        enqueue(&spool, &env, tag);
    }
    let leased = spool.take_due(now_ms(), 3, LEASE_MS).expect("take");
    assert_eq!(spool.len(), 3);
    let done = |i: usize, bounce: bool| {
        let extra = bounce.then(|| (MessageId::generate(), envelope("", 1), body("dsn")));
        spool
            .complete(leased[i].id, &leased[i].envelope, None, extra, Vec::new())
            .expect("complete")
            .wait_blocking()
            .expect("durable");
    };
    done(0, false);
    assert_eq!(spool.len(), 2);
    done(1, true);
    assert_eq!(spool.len(), 2);
    reschedule(&spool, leased[2].id, &leased[2].envelope, 1);
    assert_eq!(spool.len(), 2);
    assert_eq!(spool.list().expect("list").len(), 2);
    drop(spool);
    let spool = fx.open();
    assert_eq!(spool.len(), 2);
    assert_eq!(spool.recover().expect("recover").messages, 2);
}

#[test]
fn recover_releases_leases_and_complete_finds_an_old_lease() {
    let fx = Fixture::new();
    let env = envelope("l@example.org", 1);
    let (a, b) = {
        let spool = fx.open();
        let a = enqueue(&spool, &env, "a");
        let b = enqueue(&spool, &env, "b");
        assert_eq!(
            spool.take_due(now_ms(), 10, LEASE_MS).expect("take").len(),
            2
        );
        (a, b)
    };
    {
        // Reopened without recovery: the leases are still there, nothing is due,
        // and completing finds the lease on disk although this process never took it.
        let spool = fx.open();
        assert!(spool
            .take_due(u64::MAX - 1, 10, LEASE_MS)
            .expect("take")
            .is_empty());
        reschedule(&spool, b, &env, 1);
        let listed = spool.list().expect("list");
        assert!(listed[0].leased && listed[0].next_attempt_ms.is_some_and(|t| t > now_ms()));
        assert!(!listed[1].leased && listed[1].next_attempt_ms == Some(1));
    }
    assert_eq!(raw_leases(&fx.spool_dir), vec![a]);
    let spool = fx.open();
    let report = spool.recover().expect("recover");
    assert_eq!(report.leases_released, 1);
    assert_eq!(report.messages, 2);
    assert_eq!(
        (
            report.schedule_repaired,
            report.orphans_removed,
            report.quarantined
        ),
        (0, 0, 0)
    );
    let mut due = ids(&spool.take_due(now_ms(), 10, LEASE_MS).expect("take"));
    due.sort();
    assert_eq!(due, vec![a, b]);
    assert_eq!(spool.read(&b).expect("read").expect("b").1, body("b"));
}

#[test]
fn a_message_enqueued_leased_is_never_due_completes_and_returns_after_a_crash() {
    let fx = Fixture::new();
    let env = envelope("h@example.org", 1);
    let (delivered, crashed) = {
        let spool = fx.open();
        let leased = |tag: &str| {
            let id = MessageId::generate();
            spool
                .enqueue_leased(id, &env, &body(tag), now_ms(), LEASE_MS, Default::default())
                .expect("enqueue")
                .wait_blocking()
                .expect("durable");
            id
        };
        let (delivered, crashed) = (leased("a"), leased("b"));
        assert_eq!(spool.len(), 2);
        assert_eq!(spool.next_due().expect("next_due"), None, "leased, not due");
        assert!(spool
            .take_due(u64::MAX - 1, 10, LEASE_MS)
            .expect("take")
            .is_empty());
        let listed = spool.list().expect("list");
        assert!(listed.iter().all(|s| s.leased));
        // Completed like a message take_due returned: the lease is found in memory.
        let mut done = env.clone();
        done.recipients[0].state = RecipientState::Delivered;
        spool
            .complete(delivered, &done, None, None, Vec::new())
            .expect("complete")
            .wait_blocking()
            .expect("durable");
        assert!(spool.read(&delivered).expect("read").is_none());
        // A write that failed is forgotten; nothing else changes.
        spool.forget_lease(&MessageId::generate());
        (delivered, crashed)
    };
    // The other one was never completed (the process died): recovery puts it back.
    assert_eq!(raw_leases(&fx.spool_dir), vec![crashed]);
    let spool = fx.open();
    let report = spool.recover().expect("recover");
    assert_eq!((report.leases_released, report.messages), (1, 1));
    let due = spool.take_due(now_ms(), 10, LEASE_MS).expect("take");
    assert_eq!(ids(&due), vec![crashed]);
    assert_eq!(due[0].envelope, env);
    assert_eq!(spool.read(&crashed).expect("read").expect("b").1, body("b"));
    assert!(spool.read(&delivered).expect("read").is_none());
}

#[test]
fn complete_of_an_unknown_message_fails() {
    let fx = Fixture::new();
    let spool = fx.open();
    let ghost = MessageId::generate();
    match spool.complete(
        ghost,
        &envelope("g@example.org", 1),
        Some(1),
        None,
        Vec::new(),
    ) {
        Err(Error::UnknownMessage(id)) => assert_eq!(id, ghost),
        other => panic!("expected UnknownMessage, got {other:?}"),
    }
    assert!(spool.is_empty());
    assert_eq!(spool.next_due().expect("next_due"), None);
}

#[test]
fn take_due_quarantines_a_corrupt_envelope() {
    let fx = Fixture::new();
    let env = envelope("q@example.org", 1);
    let (bad, good) = {
        let spool = fx.open();
        (enqueue(&spool, &env, "bad"), enqueue(&spool, &env, "good"))
    };
    {
        let db = raw_db(&fx.spool_dir);
        let mut v = db
            .get(keys::envelope(&bad))
            .expect("get")
            .expect("present")
            .to_vec();
        v[20] ^= 1;
        db.insert(keys::envelope(&bad), v).expect("insert");
        db.flush().expect("flush");
    }
    let spool = fx.open();
    assert_eq!(spool.len(), 2);
    assert_eq!(
        ids(&spool.take_due(now_ms(), 10, LEASE_MS).expect("take")),
        vec![good]
    );
    assert_eq!(spool.len(), 1);
    assert_eq!(spool.read(&bad).expect("read"), None, "moved to quarantine");
    let report = spool.recover().expect("recover");
    assert_eq!(
        (report.messages, report.quarantined, report.leases_released),
        (1, 0, 1)
    );
}

#[test]
fn blocking_calls_work_from_inside_a_runtime() {
    let fx = Fixture::new();
    let spool = fx.open();
    let id = enqueue(&spool, &envelope("rt@example.org", 1), "rt");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let taken = rt.block_on(async { spool.take_due(now_ms(), 10, LEASE_MS) });
    assert_eq!(ids(&taken.expect("take")), vec![id]);
}

/// Does nothing in a normal run; in a child run it leases messages and aborts.
#[test]
fn child_entry() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (dir, key) = spec.split_once('\n').expect("dir and key");
    let spool = open_at(Path::new(dir), Path::new(key));
    let env = envelope("crash@example.org", 1);
    for i in 0..5 {
        enqueue(&spool, &env, &format!("crash {i}"));
    }
    for leased in spool.take_due(now_ms(), 100, LEASE_MS).expect("take") {
        println!("CHILD-LEASED {}", leased.id);
    }
    // No destructors, no final flush: the leases are on disk, delivery never ended.
    std::process::abort();
}

#[test]
fn a_lease_held_by_a_crashed_process_is_released_by_recovery() {
    let fx = Fixture::new();
    let out = Command::new(std::env::current_exe().expect("current exe"))
        .args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env(
            CHILD_ENV,
            format!("{}\n{}", fx.spool_dir.display(), fx.key_path.display()),
        )
        .output()
        .expect("spawn child");
    assert!(!out.status.success(), "the child must have aborted");
    let mut leased: Vec<MessageId> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once("CHILD-LEASED ").map(|(_, id)| id))
        .map(|s| s.trim().parse().expect("id"))
        .collect();
    assert_eq!(leased.len(), 5, "{}", String::from_utf8_lossy(&out.stderr));
    let spool = fx.open();
    assert!(
        spool
            .take_due(now_ms(), 10, LEASE_MS)
            .expect("take")
            .is_empty(),
        "still leased"
    );
    let report = spool.recover().expect("recover");
    assert_eq!((report.messages, report.leases_released), (5, 5));
    let mut due = ids(&spool.take_due(now_ms(), 10, LEASE_MS).expect("take"));
    due.sort();
    leased.sort();
    assert_eq!(due, leased);
    for id in &leased {
        assert!(spool.read_body(id).expect("read_body").is_some());
    }
}

/// Completions are handed to the flusher without waiting (the scheduler never
/// blocks on a flush); a shutdown's `flush` must apply every one handed over
/// before it, or their messages come back from the lease at the next start and
/// are delivered twice.
#[test]
fn flush_applies_completions_handed_over_before_it() {
    let fx = Fixture::new();
    let spool = fx.open();
    let env = envelope("f@example.org", 1);
    for i in 0..300 {
        enqueue(&spool, &env, &i.to_string());
    }
    let leased = spool.take_due(now_ms(), 300, LEASE_MS).expect("take");
    assert_eq!(leased.len(), 300);
    for l in &leased {
        // Not waited for, as in the scheduler.
        let _ = spool
            .complete(l.id, &l.envelope, None, None, Vec::new())
            .expect("complete");
    }
    spool.flush().expect("flush");
    assert_eq!(
        spool.list().expect("list").len(),
        0,
        "as seen right after flush"
    );
    assert_eq!(spool.len(), 0);
}

#[test]
fn operator_changes_leave_leased_mail_alone_and_holds_survive_a_restart() {
    use way2mail_queue::{Change, Changed, Placement};
    let fx = Fixture::new();
    let env = envelope("s@example.org", 1);
    let (held, leased, removed) = {
        let spool = fx.open();
        let a = enqueue(&spool, &env, "a");
        let b = enqueue(&spool, &env, "b");
        let c = enqueue(&spool, &env, "c");
        // b is being delivered.
        let taken = spool.take_due(now_ms(), 10, LEASE_MS).expect("take");
        reschedule(&spool, a, &env, u64::MAX / 2);
        reschedule(&spool, c, &env, u64::MAX / 2);
        assert_eq!(ids(&taken), vec![a, b, c]);
        // Hold everything: the leased one is skipped with a reason.
        let done = spool
            .change_messages(&[a, b], false, |_, _, placement| {
                assert!(matches!(placement, Placement::Due(_)));
                Ok(Change::Hold)
            })
            .expect("hold");
        assert_eq!(done[0], (a, Changed::Done));
        assert!(
            matches!(&done[1], (id, Changed::Skipped(why)) if *id == b && why.contains("delivery"))
        );
        // A dry run decides but writes nothing.
        let dry = spool
            .change_messages(&[c], true, |_, _, _| {
                Ok(Change::Remove {
                    log: Vec::new(),
                    notice: None,
                })
            })
            .expect("dry run");
        assert_eq!(dry, vec![(c, Changed::Done)]);
        assert!(spool.read(&c).expect("read").is_some());
        let refused = spool
            .change_messages(&[c], false, |_, _, _| Err("not today".into()))
            .expect("refusal");
        assert_eq!(refused, vec![(c, Changed::Skipped("not today".into()))]);
        spool
            .change_messages(&[c], false, |id, envelope, _| {
                Ok(Change::Remove {
                    log: vec![log_record(
                        id,
                        &envelope.recipients[0].address,
                        now_ms(),
                        DeliveryOutcome::Deleted,
                    )],
                    notice: None,
                })
            })
            .expect("remove");
        assert!(spool.read(&c).expect("read").is_none());
        assert_eq!(spool.len(), 2);
        let listed = spool.summary(&a).expect("summary").expect("a is queued");
        assert!(listed.held_since_ms.is_some() && listed.next_attempt_ms.is_none());
        (a, b, c)
    };
    // After a restart: the lease is released (due now) but the hold stays.
    let spool = fx.open();
    let report = spool.recover().expect("recover");
    assert_eq!((report.leases_released, report.schedule_repaired), (1, 0));
    assert_eq!(
        ids(&spool.take_due(now_ms(), 10, LEASE_MS).expect("take")),
        vec![leased]
    );
    assert!(matches!(
        spool.placements().expect("placements").get(&held),
        Some(Placement::Held(_))
    ));
    // Released: due now, and delivery takes it.
    spool
        .change_messages(&[held], false, |_, _, placement| {
            assert!(matches!(placement, Placement::Held(_)));
            Ok(Change::Schedule { due_ms: 0 })
        })
        .expect("release");
    assert_eq!(
        ids(&spool.take_due(now_ms(), 10, LEASE_MS).expect("take")),
        vec![held]
    );
    let log = spool
        .delivery_log(LogFilter {
            message: Some(removed),
            ..LogFilter::default()
        })
        .expect("log");
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].outcome, DeliveryOutcome::Deleted);
}
