//! The spool's anchor and `verify`, on real sled files: the anchor follows the
//! commits; a spool behind it (an older copy of sled's files, or its anchor gone)
//! is refused until the rollback is accepted; a spool from before anchors gets its
//! first; a restore writes its own; `verify` counts every kind of record and names
//! damaged and inconsistent ones.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::*;
use way2mail_daemon::watchdog::Progress;
use way2mail_queue::anchor::{self, Anchor, Divergence};
use way2mail_queue::{
    keys, restore_dump, verify, AnchorCheck, Error, Problem, Spool, SpoolOptions,
};

fn anchored(dir: &Path) -> Option<u64> {
    anchor::read(dir)
        .expect("anchor readable")
        .map(|a| a.commit_seq)
}

fn commit_seq(dir: &Path) -> Option<u64> {
    raw_db(dir)
        .get(keys::COMMIT_SEQ)
        .expect("get")
        .map(|v| u64::from_be_bytes(v.as_ref().try_into().expect("8 bytes")))
}

/// Copies sled's files (not the anchor) from `from` to `to`.
fn copy_sled_files(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("dir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "db" || name == "conf" || name.starts_with("snap.") {
            std::fs::copy(entry.path(), to.join(&name)).expect("copy");
        }
    }
}

#[test]
fn the_anchor_follows_the_commits() {
    let fx = Fixture::new();
    let spool = fx.open();
    assert_eq!(spool.anchor_check(), &AnchorCheck::Created);
    assert_eq!(anchored(&fx.spool_dir), Some(0));
    for i in 0..5 {
        enqueue(&spool, &envelope("a@example.org", 1), &format!("m{i}"));
    }
    // Within the writer's interval the anchor catches up on its own.
    let start = Instant::now();
    while anchored(&fx.spool_dir) != Some(5) {
        assert!(start.elapsed() < Duration::from_secs(10), "anchor stuck");
        std::thread::sleep(Duration::from_millis(20));
    }
    enqueue(&spool, &envelope("a@example.org", 1), "last");
    spool.flush().expect("flush");
    assert_eq!(
        anchored(&fx.spool_dir),
        Some(6),
        "flush brings it up to date"
    );
    drop(spool);
    assert_eq!(commit_seq(&fx.spool_dir), Some(6));
    assert_eq!(fx.open().anchor_check(), &AnchorCheck::Current);
}

#[test]
fn a_spool_behind_its_anchor_is_refused_until_accepted() {
    let fx = Fixture::new();
    let old = fx.spool_dir.with_file_name("old");
    {
        let spool = fx.open();
        enqueue(&spool, &envelope("a@example.org", 1), "kept");
    }
    copy_sled_files(&fx.spool_dir, &old);
    {
        let spool = fx.open();
        enqueue(&spool, &envelope("a@example.org", 1), "lost");
        enqueue(&spool, &envelope("a@example.org", 1), "lost too");
    }
    assert_eq!(anchored(&fx.spool_dir), Some(3));
    copy_sled_files(&old, &fx.spool_dir);

    let keyring = keyring_for(&fx.key_path);
    match Spool::open(&fx.spool_dir, keyring.clone()) {
        Err(Error::RolledBack { divergence, .. }) => {
            assert_eq!(
                divergence,
                Divergence::Behind {
                    anchor: 3,
                    store: 1
                }
            )
        }
        other => panic!("expected RolledBack, got {other:?}"),
    }
    let report = verify(&fx.spool_dir, &keyring, &Progress::new()).expect("verify");
    assert_eq!(
        report.problems.get(&Problem::Anchor),
        Some(&1),
        "{report:?}"
    );
    assert_eq!(anchored(&fx.spool_dir), Some(3), "refusing writes nothing");

    let options = SpoolOptions {
        accept_rollback: true,
        ..SpoolOptions::default()
    };
    let spool = Spool::open_with(&fx.spool_dir, keyring, &options).expect("accepted");
    assert!(matches!(
        spool.anchor_check(),
        AnchorCheck::Accepted(Divergence::Behind {
            anchor: 3,
            store: 1
        })
    ));
    assert_eq!(spool.recover().expect("recover").messages, 1);
    drop(spool);
    assert_eq!(anchored(&fx.spool_dir), Some(1));
    assert_eq!(fx.open().anchor_check(), &AnchorCheck::Current);
}

#[test]
fn a_missing_or_garbled_anchor_is_refused_but_a_spool_before_anchors_gets_one() {
    let fx = Fixture::new();
    drop(fx.open());
    {
        let spool = fx.open();
        enqueue(&spool, &envelope("a@example.org", 1), "m");
    }
    let anchor_file = fx.spool_dir.join(anchor::ANCHOR_FILE);
    std::fs::write(&anchor_file, "way2mail-spool-anchor 1\ncommit_seq many\n").expect("write");
    let keyring = keyring_for(&fx.key_path);
    assert!(matches!(
        Spool::open(&fx.spool_dir, keyring.clone()),
        Err(Error::RolledBack {
            divergence: Divergence::Unreadable { .. },
            ..
        })
    ));
    std::fs::remove_file(&anchor_file).expect("remove");
    assert!(matches!(
        Spool::open(&fx.spool_dir, keyring.clone()),
        Err(Error::RolledBack {
            divergence: Divergence::Missing { store: 1 },
            ..
        })
    ));
    // A spool written before anchors has neither the file nor the count.
    {
        let db = raw_db(&fx.spool_dir);
        db.remove(keys::COMMIT_SEQ).expect("remove");
        db.flush().expect("flush");
    }
    let spool = Spool::open(&fx.spool_dir, keyring).expect("upgrade");
    assert_eq!(spool.anchor_check(), &AnchorCheck::Created);
    assert_eq!(spool.recover().expect("recover").messages, 1);
    drop(spool);
    assert_eq!(
        anchor::read(&fx.spool_dir),
        Ok(Some(Anchor { commit_seq: 0 }))
    );
}

#[test]
fn a_restored_spool_gets_its_own_anchor() {
    let fx = Fixture::new();
    let mut dump = Vec::new();
    {
        let spool = fx.open();
        for i in 0..3 {
            enqueue(&spool, &envelope("a@example.org", 1), &format!("m{i}"));
        }
        spool.dump(&mut dump).expect("dump");
    }
    let restored = fx.spool_dir.with_file_name("restored");
    let keyring = keyring_for(&fx.key_path);
    restore_dump(&restored, &keyring, &mut dump.as_slice()).expect("restore");
    assert_eq!(anchored(&restored), Some(3));
    let spool = Spool::open(&restored, keyring).expect("open restored");
    assert_eq!(spool.anchor_check(), &AnchorCheck::Current);
    assert_eq!(spool.recover().expect("recover").messages, 3);
}

#[test]
fn verify_counts_records_and_names_what_is_wrong() {
    let fx = Fixture::new();
    let (damaged, unscheduled) = {
        let spool = fx.open();
        let damaged = enqueue(&spool, &envelope("a@example.org", 2), "damaged");
        let unscheduled = enqueue(&spool, &envelope("a@example.org", 1), "unscheduled");
        enqueue(&spool, &envelope("a@example.org", 1), "fine");
        (damaged, unscheduled)
    };
    let keyring = keyring_for(&fx.key_path);
    let clean = verify(&fx.spool_dir, &keyring, &Progress::new()).expect("verify");
    assert!(clean.is_clean(), "{clean:?}");
    assert_eq!((clean.envelopes, clean.bodies, clean.scheduled), (3, 3, 3));
    assert_eq!(clean.commit_seq, Some(3));
    assert_eq!(clean.anchor_seq, Some(3));

    {
        let db = raw_db(&fx.spool_dir);
        let key = keys::body(&damaged);
        let mut value = db.get(key).expect("get").expect("body").to_vec();
        value[40] ^= 0x01;
        db.insert(key, value).expect("insert");
        for item in db.scan_prefix([keys::DUE]) {
            let (key, _) = item.expect("due");
            if let Some(keys::Key::Due { id, .. }) = keys::parse(&key) {
                if id == unscheduled {
                    db.remove(key).expect("remove");
                }
            }
        }
        db.insert(keys::due(7, &way2mail_smtp::MessageId::generate()), &[][..])
            .expect("orphan");
        db.flush().expect("flush");
    }
    let found = verify(&fx.spool_dir, &keyring, &Progress::new()).expect("verify");
    assert_eq!(found.problems.get(&Problem::Corrupt), Some(&1), "{found:?}");
    assert_eq!(
        found.problems.get(&Problem::Unscheduled),
        Some(&1),
        "{found:?}"
    );
    assert_eq!(
        found.problems.get(&Problem::OrphanSchedule),
        Some(&1),
        "{found:?}"
    );
    assert_eq!(found.problem_count(), 3, "{found:?}");
    assert!(
        found
            .examples
            .iter()
            .any(|e| e.contains(&keys::describe(&keys::body(&damaged)))),
        "{:?}",
        found.examples
    );
    // Nothing was repaired or rewritten.
    assert_eq!(anchored(&fx.spool_dir), Some(3));
    let again = verify(&fx.spool_dir, &keyring, &Progress::new()).expect("verify");
    assert_eq!(again.problems, found.problems);
}

#[test]
fn verify_refuses_a_running_spool() {
    let fx = Fixture::new();
    let _spool = fx.open();
    let keyring = keyring_for(&fx.key_path);
    assert!(matches!(
        verify(&fx.spool_dir, &keyring, &Progress::new()),
        Err(Error::Locked { .. })
    ));
}

#[test]
fn verify_names_a_chunked_body_missing_a_chunk() {
    let fx = Fixture::new();
    let (cut, whole) = {
        let spool = fx.open();
        let long = |tag: &str| {
            let id = way2mail_smtp::MessageId::generate();
            let durable = spool
                .enqueue(id, &envelope("a@example.org", 1), vec![b'x'; 50_000])
                .expect(tag);
            durable.wait_blocking().expect("durable");
            id
        };
        (long("cut"), long("whole"))
    };
    let keyring = keyring_for(&fx.key_path);
    let clean = verify(&fx.spool_dir, &keyring, &Progress::new()).expect("verify");
    assert!(clean.is_clean(), "{clean:?}");
    assert_eq!(clean.bodies, 2, "one body per message, whatever its chunks");
    {
        let db = raw_db(&fx.spool_dir);
        db.remove(keys::body_chunk(&cut, 6)).expect("remove");
        db.flush().expect("flush");
    }
    let found = verify(&fx.spool_dir, &keyring, &Progress::new()).expect("verify");
    assert_eq!(
        found.problems.get(&Problem::LengthMismatch),
        Some(&1),
        "{found:?}"
    );
    assert!(
        found.examples.iter().any(|e| e.contains(&cut.to_string())),
        "{:?}",
        found.examples
    );
    assert!(!found
        .examples
        .iter()
        .any(|e| e.contains(&whole.to_string())));
}
