//! The spool on real sled files in temporary directories: round trips, listing,
//! group commit under concurrency, reopening, locking, durability across a crash,
//! encryption at rest, tampering and recovery.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Command;

use way2mail_queue::{keys, Error, Health, Spool};
use way2mail_seal::{Keyring, MasterKey};
use way2mail_smtp::{BodyType, Envelope, MessageId, Notify, Origin, Recipient};

const CHILD_ENV: &str = "WAY2MAIL_QUEUE_TEST_CHILD";

fn envelope(sender: &str, rcpts: usize) -> Envelope {
    Envelope {
        sender: sender.to_owned(),
        recipients: (0..rcpts)
            .map(|i| Recipient {
                address: format!("rcpt{i}@example.net"),
                notify: Notify {
                    failure: true,
                    ..Notify::default()
                },
                orcpt: None,
                ..Recipient::default()
            })
            .collect(),
        body_type: BodyType::EightBitMime,
        smtputf8: false,
        ret: None,
        envid: Some("ENV1".into()),
        origin: Origin {
            client_ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)),
            helo: "client.example.org".into(),
            listener: "mx".into(),
            tls: None,
            auth: None,
            tenant: None,
        },
        received_at_ms: 1_700_000_000_000,
        attempts: 0,
        next_attempt_ms: None,
        delay_notified: false,
        tags: Vec::new(),
        metadata: Default::default(),
        scan: None,
    }
}

fn body(tag: &str, len: usize) -> Vec<u8> {
    let mut b = format!("Subject: {tag}\r\n\r\n").into_bytes();
    while b.len() < len {
        b.extend_from_slice(tag.as_bytes());
        b.extend_from_slice(b"\r\n");
    }
    b
}

struct Fixture {
    _dir: tempfile::TempDir,
    spool_dir: PathBuf,
    key_path: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool_dir = dir.path().join("spool");
        let key_path = dir.path().join("keys/spool.key");
        Fixture {
            _dir: dir,
            spool_dir,
            key_path,
        }
    }

    fn open(&self) -> Spool {
        Spool::open(&self.spool_dir, keyring_for(&self.key_path)).expect("open spool")
    }
}

/// The keyring beside a master key file (`spool.key` → `spool.keyring`).
fn keyring_for(key_path: &Path) -> Keyring {
    let master = MasterKey::load_or_create(key_path).expect("key");
    Keyring::open(&key_path.with_extension("keyring"), master).expect("keyring")
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(f)
}

fn enqueue_durably(spool: &Spool, env: &Envelope, body: Vec<u8>) -> MessageId {
    let id = MessageId::generate();
    let durable = spool.enqueue(id, env, body).expect("enqueue");
    block_on(durable.wait()).expect("durable");
    id
}

#[test]
fn round_trip() {
    let fx = Fixture::new();
    let spool = fx.open();
    assert!(spool.is_empty());
    let env = envelope("alice@example.org", 2);
    let b = body("round trip", 5000);
    let id = enqueue_durably(&spool, &env, b.clone());
    assert_eq!(spool.len(), 1);
    let (got_env, got_body) = spool.read(&id).expect("read").expect("present");
    assert_eq!(got_env, env);
    assert_eq!(got_body, b);
    assert_eq!(spool.read(&MessageId::generate()).expect("read"), None);
    assert!(spool.stats().flushes >= 1);
    assert_eq!(spool.health(), Health::Ok);
    assert!(spool.free_space().expect("statvfs") > 0);
    assert_eq!(spool.path(), fx.spool_dir.as_path());
}

#[test]
fn empty_body_and_null_sender() {
    let fx = Fixture::new();
    let spool = fx.open();
    let env = envelope("", 1);
    let id = enqueue_durably(&spool, &env, Vec::new());
    let (e, b) = spool.read(&id).expect("read").expect("present");
    assert_eq!(e.sender, "");
    assert!(b.is_empty());
}

#[test]
fn list_in_id_order() {
    let fx = Fixture::new();
    let spool = fx.open();
    let mut ids = Vec::new();
    for i in 0..20 {
        let env = envelope(&format!("s{i}@example.org"), i % 3 + 1);
        ids.push(enqueue_durably(&spool, &env, body("list", 100 + i)));
    }
    let list = spool.list().expect("list");
    assert_eq!(list.len(), 20);
    for (i, s) in list.iter().enumerate() {
        assert_eq!(s.id, ids[i]);
        assert_eq!(s.sender, format!("s{i}@example.org"));
        assert_eq!(s.recipients, i % 3 + 1);
        assert_eq!(s.size, body("list", 100 + i).len() as u64);
        assert_eq!(s.received_at_ms, 1_700_000_000_000);
    }
}

#[test]
fn group_commit_serves_many_waiters_per_flush() {
    let fx = Fixture::new();
    let spool = fx.open();
    let threads = 8;
    let per_thread = 40;
    std::thread::scope(|s| {
        for t in 0..threads {
            let spool = spool.clone();
            s.spawn(move || {
                let env = envelope(&format!("t{t}@example.org"), 1);
                block_on(async {
                    let mut pending = Vec::new();
                    for _ in 0..per_thread {
                        let id = MessageId::generate();
                        pending.push((
                            id,
                            spool.enqueue(id, &env, body("gc", 5000)).expect("enqueue"),
                        ));
                    }
                    for (id, d) in pending {
                        d.wait().await.expect("durable");
                        assert!(spool.read(&id).expect("read").is_some());
                    }
                });
            });
        }
    });
    let stats = spool.stats();
    let total = (threads * per_thread) as u64;
    assert_eq!(stats.commits, total);
    assert!(stats.flushes < stats.commits, "{stats:?}");
    assert_eq!(spool.len(), total as usize);
}

#[test]
fn reopen_keeps_everything() {
    let fx = Fixture::new();
    let mut ids = Vec::new();
    {
        let spool = fx.open();
        let clone = spool.clone();
        for i in 0..10 {
            ids.push(enqueue_durably(
                &clone,
                &envelope("r@example.org", 1),
                body("reopen", i * 700),
            ));
        }
    }
    let spool = fx.open();
    assert_eq!(spool.len(), 10);
    let report = spool.recover().expect("recover");
    assert_eq!(report.messages, 10);
    assert_eq!(
        (
            report.quarantined,
            report.schedule_repaired,
            report.orphans_removed
        ),
        (0, 0, 0)
    );
    for (i, id) in ids.iter().enumerate() {
        let (_, b) = spool.read(id).expect("read").expect("present");
        assert_eq!(b, body("reopen", i * 700));
    }
}

#[test]
fn a_different_key_cannot_read() {
    let fx = Fixture::new();
    let id = {
        let spool = fx.open();
        enqueue_durably(&spool, &envelope("k@example.org", 1), body("key", 300))
    };
    let other = Spool::open(&fx.spool_dir, Keyring::ephemeral().expect("key")).expect("open");
    assert!(matches!(other.read(&id), Err(Error::UnknownKey { .. })));
}

#[test]
fn second_open_in_process_is_locked() {
    let fx = Fixture::new();
    let spool = fx.open();
    let again = Spool::open(&fx.spool_dir, Keyring::ephemeral().expect("key"));
    match again {
        Err(e @ Error::Locked { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("way2mail-mta"), "{msg}");
            assert!(msg.contains(&fx.spool_dir.display().to_string()), "{msg}");
        }
        other => panic!("expected Locked, got {other:?}"),
    }
    drop(spool);
    // The lock goes with the last handle.
    fx.open();
}

/// Runs this test binary again with only `child_entry`, in the given mode.
fn run_child(mode: &str, spool_dir: &Path, key_path: &Path) -> std::process::Output {
    Command::new(std::env::current_exe().expect("current exe"))
        .args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env(
            CHILD_ENV,
            format!("{mode}\n{}\n{}", spool_dir.display(), key_path.display()),
        )
        .output()
        .expect("spawn child")
}

/// Does nothing in a normal run; in a child run it plays the other process.
#[test]
fn child_entry() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut parts = spec.lines();
    let (mode, dir, key) = (
        parts.next().expect("mode"),
        PathBuf::from(parts.next().expect("dir")),
        PathBuf::from(parts.next().expect("key")),
    );
    let key = keyring_for(&key);
    match mode {
        "locked" => match Spool::open(&dir, key) {
            Err(Error::Locked { .. }) => println!("CHILD-LOCKED"),
            other => println!("CHILD-UNEXPECTED {other:?}"),
        },
        "crash" => {
            let spool = Spool::open(&dir, key).expect("open");
            for i in 0..25 {
                let id = enqueue_durably(
                    &spool,
                    &envelope("crash@example.org", 1),
                    body("crash", 2000 + i),
                );
                println!("CHILD-ID {id}");
            }
            // No destructors, no final flush: only what Durable promised survives.
            std::process::abort();
        }
        _ => panic!("unknown child mode"),
    }
}

#[test]
fn open_from_another_process_is_locked() {
    let fx = Fixture::new();
    let _spool = fx.open();
    let out = run_child("locked", &fx.spool_dir, &fx.key_path);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("CHILD-LOCKED"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn durable_messages_survive_a_crash() {
    let fx = Fixture::new();
    MasterKey::load_or_create(&fx.key_path).expect("key");
    let out = run_child("crash", &fx.spool_dir, &fx.key_path);
    assert!(!out.status.success(), "the child must have aborted");
    let ids: Vec<MessageId> = String::from_utf8_lossy(&out.stdout)
        .lines()
        // The harness may print "test child_entry ... " on the same line first.
        .filter_map(|l| l.split_once("CHILD-ID ").map(|(_, id)| id))
        .map(|s| s.trim().parse().expect("id"))
        .collect();
    assert_eq!(ids.len(), 25, "{}", String::from_utf8_lossy(&out.stderr));
    let spool = fx.open();
    assert_eq!(spool.recover().expect("recover").messages, 25);
    for (i, id) in ids.iter().enumerate() {
        let (env, b) = spool.read(id).expect("read").expect("survived");
        assert_eq!(env.sender, "crash@example.org");
        assert_eq!(b, body("crash", 2000 + i));
    }
}

fn all_file_bytes(dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            all_file_bytes(&path, out);
        } else {
            out.push((path.clone(), std::fs::read(&path).expect("read file")));
        }
    }
}

#[test]
fn no_plaintext_at_rest() {
    let fx = Fixture::new();
    let marker = "CONFIDENTIAL-BODY-MARKER-7f3a";
    let sender = "very-secret-sender@example.org";
    {
        let spool = fx.open();
        for _ in 0..5 {
            enqueue_durably(&spool, &envelope(sender, 3), body(marker, 20_000));
        }
        spool.flush().expect("flush");
    }
    let mut files = Vec::new();
    all_file_bytes(&fx.spool_dir, &mut files);
    let total: usize = files.iter().map(|(_, b)| b.len()).sum();
    assert!(
        total > 5 * 20_000,
        "the spool holds the messages ({total} bytes)"
    );
    for needle in [
        marker.as_bytes(),
        sender.as_bytes(),
        b"rcpt0@example.net",
        b"client.example.org",
    ] {
        for (path, bytes) in &files {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "{} contains {:?}",
                path.display(),
                String::from_utf8_lossy(needle)
            );
        }
    }
}

/// Opens the spool's sled files directly, as an attacker or a disk fault would.
/// Retries for a moment: sled's background writers may still hold its lock right
/// after the spool was dropped.
fn with_raw_db(dir: &Path, f: impl FnOnce(&sled::Db)) {
    let start = std::time::Instant::now();
    let db = loop {
        match sled::open(dir) {
            Ok(db) => break db,
            Err(e) if start.elapsed() < std::time::Duration::from_secs(5) => {
                let _ = e;
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(e) => panic!("raw open: {e}"),
        }
    };
    f(&db);
    db.flush().expect("raw flush");
}

fn due_keys(db: &sled::Db) -> Vec<keys::Key> {
    db.scan_prefix([keys::DUE])
        .map(|kv| keys::parse(&kv.expect("kv").0).expect("due key"))
        .collect()
}

#[test]
fn tampered_record_is_corrupt_and_quarantined() {
    let fx = Fixture::new();
    let (bad, bad_envelope, good) = {
        let spool = fx.open();
        let bad = enqueue_durably(&spool, &envelope("t@example.org", 1), body("tamper", 4000));
        let bad_envelope = enqueue_durably(
            &spool,
            &envelope("t@example.org", 1),
            body("envelope", 20_000),
        );
        let good = enqueue_durably(&spool, &envelope("t@example.org", 1), body("fine", 4000));
        (bad, bad_envelope, good)
    };
    with_raw_db(&fx.spool_dir, |db| {
        for key in [keys::body(&bad), keys::envelope(&bad_envelope)] {
            let mut v = db.get(key).expect("get").expect("present").to_vec();
            v[60] ^= 0x40;
            db.insert(key, v).expect("insert");
        }
    });
    let spool = fx.open();
    assert!(matches!(spool.read(&bad), Err(Error::Corrupt { .. })));
    assert!(spool.read(&good).expect("read").is_some());
    // Recovery reads envelopes, not bodies: the broken envelope goes, with all
    // three records of its body; the broken body is found when it is read.
    let report = spool.recover().expect("recover");
    assert_eq!(report.messages, 2);
    assert_eq!(report.quarantined, 4, "envelope and three body chunks");
    assert_eq!(report.orphans_removed, 1, "its schedule entry");
    assert_eq!(spool.len(), 2);
    assert!(matches!(spool.read_body(&bad), Err(Error::Corrupt { .. })));
    assert!(spool.quarantine(&bad).expect("quarantine"));
    assert!(!spool.quarantine(&bad).expect("again"), "nothing left");
    assert_eq!(spool.len(), 1);
    assert_eq!(spool.read(&bad).expect("read"), None);
    assert_eq!(spool.list().expect("list").len(), 1);
    // Idempotent: a second run finds nothing to do.
    let again = spool.recover().expect("recover");
    assert_eq!(
        (again.messages, again.quarantined, again.orphans_removed),
        (1, 0, 0)
    );
    drop(spool);
    with_raw_db(&fx.spool_dir, |db| {
        let q: Vec<_> = db
            .scan_prefix([keys::QUARANTINE])
            .map(|kv| kv.expect("kv").0)
            .collect();
        assert_eq!(q.len(), 6);
        assert!(q.iter().any(|k| k[1..] == keys::body(&bad)));
        assert!(q.iter().any(|k| k[1..] == keys::envelope(&bad)));
        assert!(q
            .iter()
            .any(|k| k[1..] == keys::body_chunk(&bad_envelope, 2)[..]));
        assert_eq!(due_keys(db).len(), 1);
    });
}

#[test]
fn large_bodies_are_chunked_and_read_back_chunk_by_chunk() {
    let fx = Fixture::new();
    let spool = fx.open();
    let chunk = keys::BODY_CHUNK;
    for len in [0, 1, chunk - 1, chunk, chunk + 1, 3 * chunk, 200_000] {
        let mut b = body("chunks", len);
        b.truncate(len);
        let id = enqueue_durably(&spool, &envelope("c@example.org", 1), b.clone());
        let parts: Vec<Vec<u8>> = spool
            .body_chunks(&id, len as u64)
            .collect::<Result<_, _>>()
            .expect("chunks");
        assert_eq!(
            parts.len() as u32,
            keys::body_chunk_count(len as u64),
            "{len}"
        );
        assert!(parts.iter().all(|p| p.len() <= chunk), "{len}");
        assert_eq!(parts.concat(), b, "{len}");
        assert_eq!(spool.read(&id).expect("read").expect("present").1, b);
    }
}

#[test]
fn a_body_cut_short_or_reordered_is_corrupt() {
    let fx = Fixture::new();
    let sized = |tag: &str| {
        let mut b = body(tag, 30_000);
        b.truncate(30_000);
        b
    };
    let (cut, swapped) = {
        let spool = fx.open();
        let cut = enqueue_durably(&spool, &envelope("a@example.org", 1), sized("cut"));
        let swapped = enqueue_durably(&spool, &envelope("a@example.org", 1), sized("swap"));
        (cut, swapped)
    };
    with_raw_db(&fx.spool_dir, |db| {
        db.remove(keys::body_chunk(&cut, 4)).expect("remove");
        let one = db
            .get(keys::body_chunk(&swapped, 1))
            .expect("get")
            .expect("1");
        let two = db
            .get(keys::body_chunk(&swapped, 2))
            .expect("get")
            .expect("2");
        db.insert(keys::body_chunk(&swapped, 1), two).expect("swap");
        db.insert(keys::body_chunk(&swapped, 2), one).expect("swap");
    });
    let spool = fx.open();
    for id in [cut, swapped] {
        let read: Result<Vec<_>, _> = spool.body_chunks(&id, 30_000).collect();
        assert!(matches!(read, Err(Error::Corrupt { .. })), "{read:?}");
    }
}

#[test]
fn records_moved_under_another_key_fail_authentication() {
    let fx = Fixture::new();
    let (a, b) = {
        let spool = fx.open();
        let a = enqueue_durably(&spool, &envelope("a@example.org", 1), body("aaaa", 1000));
        let b = enqueue_durably(&spool, &envelope("b@example.org", 1), body("bbbb", 1000));
        (a, b)
    };
    with_raw_db(&fx.spool_dir, |db| {
        let va = db.get(keys::body(&a)).expect("get").expect("a");
        let vb = db.get(keys::body(&b)).expect("get").expect("b");
        db.insert(keys::body(&a), vb).expect("swap");
        db.insert(keys::body(&b), va).expect("swap");
    });
    let spool = fx.open();
    assert!(matches!(spool.read(&a), Err(Error::Corrupt { .. })));
    assert!(matches!(spool.read(&b), Err(Error::Corrupt { .. })));
    assert!(spool.quarantine(&a).expect("quarantine"));
    assert!(spool.quarantine(&b).expect("quarantine"));
    assert!(spool.is_empty());
    assert_eq!(spool.recover().expect("recover").messages, 0);
}

#[test]
fn recover_repairs_schedule_and_removes_orphans() {
    let fx = Fixture::new();
    let (unscheduled, scheduled) = {
        let spool = fx.open();
        let u = enqueue_durably(&spool, &envelope("u@example.org", 1), body("u", 500));
        let s = enqueue_durably(&spool, &envelope("s@example.org", 1), body("s", 500));
        (u, s)
    };
    let ghost = MessageId::generate();
    with_raw_db(&fx.spool_dir, |db| {
        for key in due_keys(db) {
            if let keys::Key::Due { due_ms, id } = key {
                if id == unscheduled {
                    db.remove(keys::due(due_ms, &id)).expect("remove");
                }
            }
        }
        db.insert(keys::due(42, &ghost), &[][..]).expect("orphan");
    });
    let spool = fx.open();
    let report = spool.recover().expect("recover");
    assert_eq!(report.messages, 2);
    assert_eq!(report.schedule_repaired, 1);
    assert_eq!(report.orphans_removed, 1);
    assert_eq!(report.quarantined, 0);
    drop(spool);
    with_raw_db(&fx.spool_dir, |db| {
        let mut ids: Vec<MessageId> = due_keys(db)
            .into_iter()
            .map(|k| match k {
                keys::Key::Due { id, .. } => id,
                other => panic!("{other:?}"),
            })
            .collect();
        ids.sort();
        let mut want = vec![unscheduled, scheduled];
        want.sort();
        assert_eq!(ids, want);
    });
}

#[test]
fn unknown_keys_are_quarantined_not_deleted_and_orphan_bodies_left_to_verify() {
    let fx = Fixture::new();
    drop(fx.open());
    let lost = MessageId::generate();
    with_raw_db(&fx.spool_dir, |db| {
        db.insert(keys::body(&lost), &b"whatever"[..])
            .expect("insert");
        db.insert(&b"zzz"[..], &b"unknown"[..]).expect("insert");
    });
    let spool = fx.open();
    // Bodies are not read at start: an orphan one stays where it is, for
    // `spool verify` to report.
    let report = spool.recover().expect("recover");
    assert_eq!((report.messages, report.quarantined), (0, 1));
    drop(spool);
    with_raw_db(&fx.spool_dir, |db| {
        assert_eq!(db.scan_prefix([keys::QUARANTINE]).count(), 1);
        assert!(db.get(keys::quarantine(b"zzz")).expect("get").is_some());
        assert!(db.get(keys::body(&lost)).expect("get").is_some());
    });
}

#[test]
fn parts_of_a_message_being_received_are_read_back_dropped_and_cleared_at_start() {
    let fx = Fixture::new();
    let (done, left) = (MessageId::generate(), MessageId::generate());
    let big = vec![b'x'; 200_000];
    let incoming = fx.spool_dir.join("incoming");
    {
        let spool = fx.open();
        let (mut a, mut b) = (0, 0);
        for part in [&b"Received: x\r\n"[..], b"Subject: a\r\n", b"\r\n", &big] {
            spool.spill(&done, &mut a, part).expect("spill");
            spool
                .spill(&left, &mut b, &part[..part.len().min(20)])
                .expect("spill");
        }
        assert_eq!(a, 7, "the large part is written in four records of 64 KiB");
        let mut back = b"".to_vec();
        spool.read_spill(&done, &mut back).expect("read");
        assert_eq!(
            back,
            [&b"Received: x\r\nSubject: a\r\n\r\n"[..], &big].concat()
        );
        spool.drop_spill(&done).expect("drop");
        let mut none = Vec::new();
        spool.read_spill(&done, &mut none).expect("read");
        assert!(none.is_empty());
        // `left` is what a crash in the middle of a message leaves behind.
    }
    let file = std::fs::read(incoming.join(left.to_string())).expect("parts file");
    assert!(
        !file.windows(7).any(|w| w == b"Subject"),
        "parts are sealed"
    );
    assert_eq!(std::fs::read_dir(&incoming).expect("dir").count(), 1);
    // A record cut short does not open.
    std::fs::write(incoming.join(left.to_string()), &file[..file.len() - 1]).expect("cut");
    let spool = fx.open();
    let mut back = Vec::new();
    assert!(matches!(
        spool.read_spill(&left, &mut back),
        Err(Error::Corrupt { .. })
    ));
    let report = spool.recover().expect("recover");
    assert_eq!((report.unfinished_removed, report.quarantined), (1, 0));
    assert_eq!(std::fs::read_dir(&incoming).expect("dir").count(), 0);
}

#[test]
fn a_message_is_spooled_from_its_parts_with_a_new_head_and_leftovers_go_at_start() {
    let fx = Fixture::new();
    let header = b"Received: x\r\nSubject: parts\r\n\r\n".to_vec();
    let content = vec![b'z'; 3 * keys::BODY_CHUNK + 100];
    let (whole, unfinished) = (MessageId::generate(), MessageId::generate());
    let leftovers = {
        let spool = fx.open();
        for id in [whole, unfinished] {
            let mut next = 0;
            spool.spill(&id, &mut next, &header).expect("spill");
            spool.spill(&id, &mut next, &content).expect("spill");
        }
        // The head replaces the header section: what a signature and a rewritten
        // header do.
        let head = b"DKIM-Signature: v=1\r\nReceived: x\r\nSubject: parts\r\n\r\n";
        let env = envelope("p@example.org", 1);
        let skip = header.len() as u64;
        let durable = spool
            .enqueue_from_parts(whole, &env, head, skip, b"tail\r\n")
            .expect("enqueue");
        durable.wait_blocking().expect("durable");
        spool.drop_spill(&whole).expect("drop");
        let (_, body) = spool.read(&whole).expect("read").expect("queued");
        assert_eq!(body, [&head[..], &content, b"tail\r\n"].concat());
        spool.flush().expect("flush");
        // `unfinished` crashes after its chunks and before its envelope: the same
        // chunk records, without the commit.
        let chunks = [&header[..], &content].concat();
        let key = spool.keyring().system();
        (0u32..)
            .zip(chunks.chunks(keys::BODY_CHUNK))
            .map(|(i, part)| {
                let k = keys::body_chunk(&unfinished, i);
                let sealed = way2mail_seal::record::seal(&key, &k, part).expect("seal");
                (k, sealed)
            })
            .collect::<Vec<_>>()
    };
    with_raw_db(&fx.spool_dir, |db| {
        for (k, v) in &leftovers {
            db.insert(k, v.clone()).expect("insert");
        }
    });
    let spool = fx.open();
    let report = spool.recover().expect("recover");
    assert_eq!(report.messages, 1);
    assert_eq!(report.quarantined, 0);
    // Its parts' file and its four chunks.
    assert_eq!(report.unfinished_removed, 5, "{report:?}");
    drop(spool);
    with_raw_db(&fx.spool_dir, |db| {
        assert_eq!(db.scan_prefix(keys::body(&unfinished)).count(), 0);
        assert_eq!(db.scan_prefix(keys::body(&whole)).count(), 4);
    });
    let incoming = fx.spool_dir.join("incoming");
    assert_eq!(std::fs::read_dir(&incoming).expect("dir").count(), 0);
}

/// What a connection would learn from a pass over `body` (`ContentScan`).
fn scanned(body: &[u8]) -> way2mail_queue::BodyShape {
    let mut scan = way2mail_smtp::client::ContentScan::default();
    for piece in body.chunks(1000) {
        scan.push(piece);
    }
    scan.finish().into()
}

#[test]
fn a_streamed_body_carries_its_shape_through_leases_and_completions() {
    let fx = Fixture::new();
    let spool = fx.open();
    let env = envelope("s@example.org", 1);
    let now = u64::MAX / 2;
    // Bare line ends (counted as CRLF once sent) and an octet over 127, cut
    // across chunk boundaries.
    let mut large = b"Subject: shape\n\n".to_vec();
    while large.len() as u64 <= 2 * way2mail_queue::WHOLE_BODY_MAX {
        large.extend_from_slice("line caf\u{e9}\rmore\n".as_bytes());
    }
    let small = body("small", 2000);
    // Several chunks, but read whole by delivery: not scanned either.
    let middle = body("middle", 3 * keys::BODY_CHUNK);
    let big = enqueue_durably(&spool, &env, large.clone());
    let little = enqueue_durably(&spool, &env, small);
    let mid = enqueue_durably(&spool, &env, middle);
    let leased = spool.take_due(now, 10, 60_000).expect("take");
    let shape_of = |id: MessageId, leased: &[way2mail_queue::Leased]| {
        leased.iter().find(|l| l.id == id).expect("leased").shape
    };
    let expected = scanned(&large);
    assert!(expected.eight_bit && expected.size > large.len() as u64);
    assert_eq!(shape_of(big, &leased), Some(expected));
    // Bodies delivery reads whole have nothing recorded.
    assert_eq!(shape_of(little, &leased), None);
    assert_eq!(shape_of(mid, &leased), None);
    // A deferral rewrites the envelope: the shape stays.
    for id in [big, little, mid] {
        let durable = spool
            .complete(id, &env, Some(0), None, Vec::new())
            .expect("complete");
        durable.wait_blocking().expect("durable");
    }
    let again = spool.take_due(now, 10, 60_000).expect("take");
    assert_eq!(shape_of(big, &again), Some(expected));
    // Spooled from its parts: learnt while the chunks are written.
    let parted = MessageId::generate();
    let mut next = 0;
    spool.spill(&parted, &mut next, &large).expect("spill");
    let durable = spool
        .enqueue_from_parts(parted, &env, b"X-Head: 1\r\n", 0, b"tail\n")
        .expect("enqueue");
    durable.wait_blocking().expect("durable");
    let whole = [&b"X-Head: 1\r\n"[..], &large, b"tail\n"].concat();
    let leased = spool.take_due(now, 10, 60_000).expect("take");
    assert_eq!(shape_of(parted, &leased), Some(scanned(&whole)));
}
