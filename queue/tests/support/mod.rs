//! Fixtures shared by the delivery tests: a spool in a temporary directory,
//! envelopes, bodies, log records, and raw access to the sled files.

// Each test crate uses a different subset.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use way2mail_queue::{keys, DeliveryOutcome, DeliveryRecord, Leased, Spool};
use way2mail_seal::{Keyring, MasterKey};
use way2mail_smtp::{BodyType, Envelope, MessageId, Notify, Origin, Recipient};

/// Long enough that no lease expires during a test.
pub const LEASE_MS: u64 = 3_600_000;

pub fn envelope(sender: &str, rcpts: usize) -> Envelope {
    Envelope {
        sender: sender.to_owned(),
        recipients: (0..rcpts)
            .map(|i| Recipient::new(format!("rcpt{i}@example.net"), Notify::default(), None))
            .collect(),
        body_type: BodyType::SevenBit,
        smtputf8: false,
        ret: None,
        envid: None,
        origin: Origin {
            client_ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 9)),
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

pub fn body(tag: &str) -> Vec<u8> {
    format!("Subject: {tag}\r\n\r\nbody of {tag}\r\n").into_bytes()
}

pub fn log_record(
    id: &MessageId,
    rcpt: &str,
    time_ms: u64,
    outcome: DeliveryOutcome,
) -> DeliveryRecord {
    DeliveryRecord {
        time_ms,
        outcome,
        message_id: id.to_string(),
        recipient: rcpt.to_owned(),
        next_hop: Some("mx.example.net".into()),
        ip: Some(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1))),
        tls: Some("TLSv1.3".into()),
        reply: Some("250 2.0.0 ok".into()),
        attempt: 1,
        queue_time_ms: 12,
        tags: Vec::new(),
        metadata: Default::default(),
        category: None,
        scan: None,
    }
}

pub struct Fixture {
    _dir: tempfile::TempDir,
    pub spool_dir: PathBuf,
    pub key_path: PathBuf,
}

impl Fixture {
    pub fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool_dir = dir.path().join("spool");
        let key_path = dir.path().join("spool.key");
        MasterKey::load_or_create(&key_path).expect("key");
        Fixture {
            _dir: dir,
            spool_dir,
            key_path,
        }
    }

    pub fn open(&self) -> Spool {
        open_at(&self.spool_dir, &self.key_path)
    }
}

pub fn open_at(dir: &Path, key: &Path) -> Spool {
    Spool::open(dir, keyring_for(key)).expect("open spool")
}

/// The keyring beside a master key file (`spool.key` → `spool.keyring`).
pub fn keyring_for(key: &Path) -> Keyring {
    let master = MasterKey::load_or_create(key).expect("key");
    Keyring::open(&key.with_extension("keyring"), master).expect("keyring")
}

pub fn enqueue(spool: &Spool, env: &Envelope, tag: &str) -> MessageId {
    let id = MessageId::generate();
    spool
        .enqueue(id, env, body(tag))
        .expect("enqueue")
        .wait_blocking()
        .expect("durable");
    id
}

pub fn ids(leased: &[Leased]) -> Vec<MessageId> {
    leased.iter().map(|l| l.id).collect()
}

/// Reschedules a leased message at `due_ms` without changing its envelope.
pub fn reschedule(spool: &Spool, id: MessageId, env: &Envelope, due_ms: u64) {
    spool
        .complete(id, env, Some(due_ms), None, Vec::new())
        .expect("complete")
        .wait_blocking()
        .expect("durable");
}

/// Opens the spool's sled files directly once the spool is closed; retries while
/// sled's background threads of the closed spool still hold its lock.
pub fn raw_db(dir: &Path) -> sled::Db {
    let start = std::time::Instant::now();
    loop {
        match sled::open(dir) {
            Ok(db) => return db,
            Err(_) if start.elapsed() < std::time::Duration::from_secs(5) => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(e) => panic!("raw open: {e}"),
        }
    }
}

/// The spool's lease keys.
pub fn raw_leases(dir: &Path) -> Vec<MessageId> {
    raw_db(dir)
        .scan_prefix([keys::LEASE])
        .map(|kv| match keys::parse(&kv.expect("kv").0) {
            Some(keys::Key::Lease { id, .. }) => id,
            other => panic!("not a lease: {other:?}"),
        })
        .collect()
}
