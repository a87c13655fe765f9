//! The one-time migration of a spool written before data keys existed: its
//! envelopes and bodies were sealed directly with the master key and its delivery
//! log keys had no key id. Run by `Spool::recover` before the recovery pass, with
//! writers excluded. Each such record is opened with the master key and sealed again
//! under the data key of its tenant (mail of no tenant and old log records: the
//! node's own key), in batches; the format marker `m format` = `2` then says there
//! is nothing left to do, so later starts skip the scan. Quarantined records keep
//! their bytes as they are.

use std::collections::HashMap;

use crate::keys::{self, Key};
use way2mail_daemon::watchdog::Progress;
use way2mail_seal::record as seal;
use way2mail_seal::Keyring;

use crate::{record, Error, MessageId};

/// The key and value that mark a spool as fully in the current format.
const FORMAT_VALUE: &[u8] = b"2";
/// Records re-sealed per batch.
const CHUNK: usize = 10_000;

fn is_legacy(keyring: &Keyring, value: &[u8]) -> bool {
    match seal::key_id_of(value) {
        None => true,
        // A legacy record whose random nonce happens to start like a header names a
        // key id this keyring does not have.
        Some(id) => matches!(keyring.lookup(id), way2mail_seal::Lookup::Unknown),
    }
}

/// Migrates what needs it and returns the number of records re-sealed.
pub(crate) fn run(db: &sled::Db, keyring: &Keyring, progress: &Progress) -> Result<usize, Error> {
    if db.get(keys::FORMAT)?.as_deref() == Some(FORMAT_VALUE) {
        return Ok(0);
    }
    let master = keyring.master();
    let mut batch = sled::Batch::default();
    let mut pending = 0usize;
    let mut migrated = 0usize;
    let flush = |batch: &mut sled::Batch, pending: &mut usize| -> Result<(), Error> {
        if *pending > 0 {
            db.apply_batch(std::mem::take(batch))?;
            *pending = 0;
        }
        Ok(())
    };
    // Envelopes first: they say whose mail each body is.
    let mut owners: HashMap<MessageId, Option<String>> = HashMap::new();
    for item in db.scan_prefix([keys::ENVELOPE]) {
        let (key, value) = item?;
        progress.tick();
        let Some(Key::Envelope(id)) = keys::parse(&key) else {
            continue;
        };
        if !is_legacy(keyring, &value) {
            continue;
        }
        // One that does not open is recovery's to quarantine.
        let Ok(json) = master.open(&key, value.to_vec()) else {
            continue;
        };
        let Ok((envelope, body_len)) = record::parse_envelope(&key, &json) else {
            continue;
        };
        let tenant = envelope.origin.tenant.clone();
        let data_key = match &tenant {
            Some(t) => keyring.tenant(t)?,
            None => keyring.system(),
        };
        batch.insert(
            key.to_vec(),
            record::seal_envelope(&data_key, &key, &envelope, body_len, None)?,
        );
        owners.insert(id, tenant);
        pending += 1;
        migrated += 1;
        if pending >= CHUNK {
            flush(&mut batch, &mut pending)?;
        }
    }
    for item in db.scan_prefix([keys::BODY]) {
        let (key, value) = item?;
        progress.tick();
        let Some(Key::Body(id, _)) = keys::parse(&key) else {
            continue;
        };
        if !is_legacy(keyring, &value) {
            continue;
        }
        let Ok(body) = master.open(&key, value.to_vec()) else {
            continue;
        };
        let data_key = match owners.get(&id).cloned().flatten() {
            Some(t) => keyring.tenant(&t)?,
            None => keyring.system(),
        };
        batch.insert(key.to_vec(), seal::seal(&data_key, &key, body)?);
        pending += 1;
        migrated += 1;
        if pending >= CHUNK {
            flush(&mut batch, &mut pending)?;
        }
    }
    let system = keyring.system();
    for item in db.scan_prefix([keys::LOG]) {
        let (key, value) = item?;
        progress.tick();
        let Some(Key::LegacyLog { time_ms, id, seq }) = keys::parse(&key) else {
            continue;
        };
        let Ok(json) = master.open(&key, value.to_vec()) else {
            continue;
        };
        let Ok(log) = record::parse_log(&key, &json) else {
            continue;
        };
        let new_key = keys::log(system.id(), time_ms, &id, seq);
        batch.remove(key.to_vec());
        batch.insert(new_key.to_vec(), record::seal_log(&system, &new_key, &log)?);
        pending += 1;
        migrated += 1;
        if pending >= CHUNK {
            flush(&mut batch, &mut pending)?;
        }
    }
    batch.insert(keys::FORMAT, FORMAT_VALUE);
    pending += 1;
    flush(&mut batch, &mut pending)?;
    if migrated > 0 {
        tracing::warn!(
            migrated,
            "spool records of the format before data keys were sealed again under data keys"
        );
    }
    Ok(migrated)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DeliveryOutcome, DeliveryRecord, Envelope, LogFilter, Spool};
    use std::net::{IpAddr, Ipv4Addr};
    use way2mail_seal::MasterKey;
    use way2mail_smtp::{BodyType, Origin};

    fn envelope(tenant: Option<&str>) -> Envelope {
        Envelope {
            sender: "a@example.org".into(),
            recipients: vec![way2mail_smtp::Recipient::new(
                "b@example.net".into(),
                way2mail_smtp::Notify::default(),
                None,
            )],
            body_type: BodyType::SevenBit,
            smtputf8: false,
            ret: None,
            envid: None,
            origin: Origin {
                client_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
                helo: "h".into(),
                listener: "submission".into(),
                tls: None,
                auth: tenant.map(|_| "u".into()),
                tenant: tenant.map(str::to_owned),
            },
            received_at_ms: 5,
            attempts: 0,
            next_attempt_ms: None,
            delay_notified: false,
            tags: Vec::new(),
            metadata: Default::default(),
            scan: None,
        }
    }

    /// Writes a message as the version before data keys did.
    fn legacy_message(db: &sled::Db, master: &MasterKey, env: &Envelope, body: &[u8]) -> MessageId {
        let id = MessageId::generate();
        let ek = keys::envelope(&id);
        let json =
            serde_json::to_vec(&serde_json::json!({"v":1,"body_len":body.len(),"envelope":env}))
                .expect("json");
        db.insert(ek, master.seal(&ek, json).expect("seal"))
            .expect("insert");
        let bk = keys::body(&id);
        db.insert(bk, master.seal(&bk, body.to_vec()).expect("seal"))
            .expect("insert");
        db.insert(keys::due(1, &id), &[][..]).expect("due");
        id
    }

    #[test]
    fn a_spool_from_before_data_keys_opens_and_reads_under_tenant_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool_dir = dir.path().join("spool");
        let master_path = dir.path().join("spool.key");
        let master = MasterKey::load_or_create(&master_path).expect("master");
        let (plain, tenant, log_id) = {
            let db = sled::open(&spool_dir).expect("sled");
            let plain = legacy_message(&db, &master, &envelope(None), b"Subject: a\r\n\r\nA\r\n");
            let tenant = legacy_message(
                &db,
                &master,
                &envelope(Some("acme")),
                b"Subject: t\r\n\r\nT\r\n",
            );
            let log_id = MessageId::generate();
            let lk = keys::legacy_log(1_000, &log_id, 7);
            let record = DeliveryRecord {
                time_ms: 1_000,
                outcome: DeliveryOutcome::Delivered,
                message_id: log_id.to_string(),
                recipient: "b@example.net".into(),
                next_hop: None,
                ip: None,
                tls: None,
                reply: None,
                attempt: 1,
                queue_time_ms: 1,
                tags: Vec::new(),
                metadata: Default::default(),
                category: None,
                scan: None,
            };
            let json = record::log_plaintext(&record).expect("json");
            db.insert(lk, master.seal(&lk, json).expect("seal"))
                .expect("insert");
            db.flush().expect("flush");
            (plain, tenant, log_id)
        };
        let keyring = Keyring::open(
            &dir.path().join("keyring"),
            MasterKey::load_or_create(&master_path).expect("m"),
        )
        .expect("keyring");
        let spool = Spool::open(&spool_dir, keyring.clone()).expect("open");
        let report = spool.recover().expect("recover");
        assert_eq!(report.migrated, 5, "{report:?}");
        assert_eq!(report.messages, 2);
        assert_eq!(report.quarantined, 0);
        let (_, body) = spool.read(&plain).expect("read").expect("present");
        assert_eq!(body, b"Subject: a\r\n\r\nA\r\n");
        let (env, body) = spool.read(&tenant).expect("read").expect("present");
        assert_eq!(env.origin.tenant.as_deref(), Some("acme"));
        assert_eq!(body, b"Subject: t\r\n\r\nT\r\n");
        let acme = keyring.existing("acme").expect("acme got a key");
        let raw = spool
            .inner
            .db
            .get(keys::body(&tenant))
            .expect("get")
            .expect("body");
        assert_eq!(seal::key_id_of(&raw), Some(acme.id()));
        let log = spool.delivery_log(LogFilter::default()).expect("log");
        assert_eq!(log.len(), 1);
        assert_eq!(log[0].message_id, log_id.to_string());
        // A second start finds nothing to do.
        drop(spool);
        let spool = Spool::open(&spool_dir, keyring).expect("reopen");
        assert_eq!(spool.recover().expect("recover").migrated, 0);
    }
}
