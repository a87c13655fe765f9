//! Data protection end to end, with the real daemons and the `way2mail` CLI: a
//! tenant's export holds all of its data and nothing of another's; erasure leaves no
//! readable byte of it in the spool, the control store or a backup taken before;
//! retention removes exactly the old records; corrections and accesses are audited;
//! a backup restored gives back every queued message.

mod data_protection {
    pub mod rig;
}

use std::collections::BTreeSet;
use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use data_protection::rig::{contains, files_under, raw_tenant_key, Rig, WAIT};
use serde_json::Value;
use way2mail_control::store::{Store, TreeName};
use way2mail_tests::control::untar;
use way2mail_tests::{wait_for, Backend, Daemon};

fn sha256_hex(data: &[u8]) -> String {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Fields of an export (format 2) whose values are words, and whose are times.
const EXPORT_WORDS: &[&str] = &[
    "body_type",
    "ret",
    "state",
    "status",
    "kind",
    "role",
    "outcome",
    "algorithm",
];
const EXPORT_TIMES: &[&str] = &[
    "created_at",
    "updated_at",
    "since",
    "terminated_at",
    "erase_after",
    "verified_at",
    "revoked_at",
    "added_at",
    "at",
    "received_at",
    "next_attempt_at",
    "time",
];

/// An RFC 3339 UTC time as written in exports (`2026-12-06T20:18:44Z`, or with
/// `.116` milliseconds) in Unix milliseconds; `None` when it is anything else.
fn rfc3339_ms(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    let num = |from: usize, to: usize| -> Option<u64> {
        let digits = text.get(from..to)?;
        digits
            .bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| digits.parse().ok())?
    };
    let ms = match b.len() {
        20 => 0,
        24 if b[19] == b'.' => num(20, 23)?,
        _ => return None,
    };
    let fixed = [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')];
    if fixed.iter().any(|&(i, c)| b[i] != c) || b[b.len() - 1] != b'Z' {
        return None;
    }
    let (y, m, d) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (h, min, s) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || h > 23 || min > 59 || s > 59 {
        return None;
    }
    // Days since 1970-01-01 of a proleptic Gregorian date (March-based years).
    let (y, m) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let days = 365 * y + y / 4 - y / 100 + y / 400 + (153 * m + 2) / 5 + d - 1 - 719_468;
    Some(((days * 24 + h) * 60 + min) * 60 * 1000 + s * 1000 + ms)
}

/// Every word field of `v` is a lower-case word (no Rust name such as `SevenBit`),
/// every time field an RFC 3339 UTC string within `window` (Unix ms; the next
/// attempt may be later), and no time is left as a number with `_ms`. Notes the
/// fields met in `seen`.
fn check_export_values(
    file: &str,
    v: &Value,
    window: (u64, u64),
    seen: &mut BTreeSet<String>,
) -> Result<()> {
    match v {
        Value::Object(map) => {
            for (key, value) in map {
                ensure!(
                    !key.ends_with("_ms") || key == "queue_time_ms",
                    "{file}: {key} is a time in milliseconds, not RFC 3339: {v}"
                );
                if !value.is_null() && EXPORT_WORDS.contains(&key.as_str()) {
                    let word = value.as_str().unwrap_or_default();
                    ensure!(
                        !word.is_empty() && !word.chars().any(|c| c.is_ascii_uppercase()),
                        "{file}: {key} is {value}, not a lower-case word"
                    );
                    seen.insert(key.clone());
                }
                if !value.is_null() && EXPORT_TIMES.contains(&key.as_str()) {
                    let text = value.as_str().unwrap_or_default();
                    let ms = rfc3339_ms(text).with_context(|| {
                        format!("{file}: {key} is {value}, not an RFC 3339 UTC time")
                    })?;
                    let until = if key == "next_attempt_at" {
                        u64::MAX
                    } else {
                        window.1
                    };
                    ensure!(
                        (window.0..=until).contains(&ms),
                        "{file}: {key} {text} is outside the test's run {window:?}"
                    );
                    seen.insert(key.clone());
                }
                check_export_values(file, value, window, seen)?;
            }
        }
        Value::Array(items) => {
            for item in items {
                check_export_values(file, item, window, seen)?;
            }
        }
        _ => {}
    }
    Ok(())
}

#[test]
fn export_holds_every_message_log_line_and_setting_and_nothing_else() -> Result<()> {
    // Times in the export are whole seconds or milliseconds of this run.
    let started_ms = way2mail_daemon::time::now_ms() / 1000 * 1000;
    let rig = Rig::start(Backend::IoUring, "")?;
    let (acme_ids, _) = rig.traffic()?;
    let archive = rig.state.path().join("acme.tar");
    let out = rig.cli(&[
        "tenant",
        "export",
        "acme",
        "--out",
        &archive.display().to_string(),
    ])?;
    ensure!(out.contains("export written to"), "{out}");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&archive)?.permissions());
    ensure!(mode & 0o077 == 0, "the export is private: {mode:o}");
    // Exporting again to the same file is refused, not overwritten.
    let again = rig.control.run_as(
        &rig.admin,
        &[
            "tenant",
            "export",
            "acme",
            "--out",
            &archive.display().to_string(),
        ],
    )?;
    ensure!(!again.status.success(), "an existing file was overwritten");

    let dir = rig.state.path().join("extracted");
    let names = untar(&archive, &dir)?;
    let base = dir.join("acme-export");
    let manifest: Value = serde_json::from_slice(&std::fs::read(base.join("manifest.json"))?)?;
    ensure!(
        manifest["format"] == "way2mail-tenant-export 2",
        "{manifest}"
    );
    ensure!(manifest["messages"] == 2, "{manifest}");
    ensure!(manifest["delivery_log_records"] == 3, "{manifest}");
    ensure!(
        manifest["domains"] == 1 && manifest["credentials"] == 1,
        "{manifest}"
    );
    ensure!(manifest["suppression_entries"] == 1, "{manifest}");
    // Every file is in the manifest with its size and checksum, and nothing else is.
    let listed: BTreeSet<String> = manifest["files"]
        .as_array()
        .context("files")?
        .iter()
        .map(|f| f["path"].as_str().unwrap_or_default().to_owned())
        .collect();
    let present: BTreeSet<String> = names
        .iter()
        .filter(|n| !n.ends_with("manifest.json"))
        .cloned()
        .collect();
    ensure!(
        listed == present,
        "manifest {listed:?} vs archive {present:?}"
    );
    for f in manifest["files"].as_array().context("files")? {
        let data = std::fs::read(dir.join(f["path"].as_str().context("path")?))?;
        ensure!(f["bytes"] == data.len(), "size of {f}");
        ensure!(f["sha256"] == sha256_hex(&data), "checksum of {f}");
    }
    // Each queued message, as queued (signed), and its envelope.
    for (i, id) in acme_ids.iter().enumerate() {
        let eml = std::fs::read_to_string(base.join("messages").join(format!("{id}.eml")))?;
        ensure!(
            eml.contains(&format!("ACME-SECRET-QUEUED-{}", i + 1)),
            "{eml}"
        );
        ensure!(eml.contains("DKIM-Signature:"), "exported as queued: {eml}");
    }
    let index: Value = serde_json::from_slice(&std::fs::read(base.join("messages/index.json"))?)?;
    ensure!(index.as_array().map(Vec::len) == Some(2), "{index}");
    // Envelopes in SMTP's words: both messages wait for stuck.example.
    for m in index.as_array().context("index")? {
        let e = &m["envelope"];
        ensure!(
            e["body_type"] == "7bit" || e["body_type"] == "8bitmime",
            "{m}"
        );
        ensure!(e["origin"]["tenant"] == "acme", "{m}");
        let states: Vec<&Value> = e["recipients"]
            .as_array()
            .context("recipients")?
            .iter()
            .map(|r| &r["state"])
            .collect();
        ensure!(
            !states.is_empty() && states.iter().all(|s| *s == "pending"),
            "{m}"
        );
    }
    // Every delivery log line of the tenant: two deferrals and one delivery.
    let log = std::fs::read_to_string(base.join("delivery-log/0001.jsonl"))?;
    let records: Vec<Value> = log
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let mut outcomes: Vec<&str> = records
        .iter()
        .filter_map(|r| r["outcome"].as_str())
        .collect();
    outcomes.sort();
    ensure!(outcomes == ["deferred", "deferred", "delivered"], "{log}");
    ensure!(
        records.iter().any(|r| r["recipient"] == "c@remote.example"),
        "{log}"
    );
    // Settings and account data; no secret of any kind.
    let account = std::fs::read_to_string(base.join("account.json"))?;
    ensure!(
        account.contains("ACME Trading Ltd") && account.contains("privacy-officer@acme.example")
    );
    let credentials = std::fs::read_to_string(base.join("credentials.json"))?;
    ensure!(credentials.contains("app@acme.example"), "{credentials}");
    ensure!(
        !credentials.contains("argon2") && !credentials.contains("secret"),
        "{credentials}"
    );
    let domains = std::fs::read_to_string(base.join("domains.json"))?;
    ensure!(
        domains.contains("acme.example") && !domains.contains("PRIVATE"),
        "{domains}"
    );
    ensure!(std::fs::read_to_string(base.join("suppression.json"))?
        .contains("unsubscribed@acme-customer.example"));
    ensure!(std::fs::read_to_string(base.join("retention.json"))?.contains("in_force"));
    ensure!(std::fs::read_to_string(base.join("access-log.json"))?.contains("tenant.add"));
    // Client-facing throughout: in every JSON file, words are lower-case words (no
    // Rust enum name) and times RFC 3339 UTC strings of this run.
    let window = (started_ms, way2mail_daemon::time::now_ms() + 1000);
    let mut seen = BTreeSet::new();
    for name in names
        .iter()
        .filter(|n| n.ends_with(".json") || n.ends_with(".jsonl"))
    {
        let text = std::fs::read_to_string(dir.join(name))?;
        for rust_name in ["SevenBit", "EightBitMime", "Pending", "Delivered", "Failed"] {
            ensure!(
                !text.contains(&format!("\"{rust_name}\"")),
                "{name} holds {rust_name}:\n{text}"
            );
        }
        let values: Vec<Value> = if name.ends_with(".jsonl") {
            text.lines()
                .map(serde_json::from_str)
                .collect::<Result<_, _>>()?
        } else {
            vec![serde_json::from_str(&text)?]
        };
        for v in &values {
            check_export_values(name, v, window, &mut seen)?;
        }
    }
    for field in [
        "body_type",
        "state",
        "status",
        "kind",
        "outcome",
        "created_at",
        "updated_at",
        "added_at",
        "at",
        "received_at",
        "time",
    ] {
        ensure!(seen.contains(field), "no {field} in the export: {seen:?}");
    }
    // Nothing of the other tenant, anywhere in the archive.
    let raw = std::fs::read(&archive)?;
    ensure!(
        !contains(&raw, b"globex") && !contains(&raw, b"GLOBEX"),
        "another tenant's data exported"
    );
    // The export is in the audit log of the tenant, when it started and how it ended.
    let audit = rig.cli_json(&["audit", "list", "--tenant", "acme"])?;
    let exports: Vec<&Value> = audit["entries"]
        .as_array()
        .context("entries")?
        .iter()
        .filter(|e| e["action"] == "tenant.export")
        .collect();
    ensure!(exports.len() == 2, "{audit}");
    ensure!(
        exports[1]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("2 messages, 3 delivery log records")),
        "{audit}"
    );
    Ok(())
}

/// What must never be found again of acme once it is erased.
struct Traces {
    markers: Vec<Vec<u8>>,
}

impl Traces {
    fn of(raw_keys: &[Vec<u8>]) -> Traces {
        let mut markers: Vec<Vec<u8>> = [
            "ACME-SECRET",
            "privacy-officer@acme.example",
            "app@acme.example",
            "unsubscribed@acme-customer.example",
        ]
        .iter()
        .map(|m| m.as_bytes().to_vec())
        .collect();
        for k in raw_keys {
            markers.push(k.clone());
            markers.push(hex(k).into_bytes());
        }
        Traces { markers }
    }

    fn absent_from(&self, what: &str, bytes: &[u8]) -> Result<()> {
        for m in &self.markers {
            ensure!(
                !contains(bytes, m),
                "{what} holds {:?}",
                String::from_utf8_lossy(&m[..m.len().min(24)])
            );
        }
        Ok(())
    }

    fn absent_from_files(&self, paths: &[&Path]) -> Result<usize> {
        let mut n = 0;
        for p in paths {
            for (file, bytes) in files_under(p)? {
                self.absent_from(&file.display().to_string(), &bytes)?;
                n += 1;
            }
        }
        Ok(n)
    }
}

#[test]
fn erasure_leaves_nothing_readable_in_spool_store_or_earlier_backup() -> Result<()> {
    let mut rig = Rig::start(Backend::Epoll, "")?;
    rig.traffic()?;
    let state = rig.state.path().to_path_buf();
    let before = state.join("before.w2b");
    rig.cli(&["backup", "create", "--out", &before.display().to_string()])?;
    let control_key = raw_tenant_key(&rig.control.keyring_file(), &rig.control.key_file(), "acme")?
        .context("acme has a key in control")?;
    let mta_key = raw_tenant_key(
        &state.join("spool.keyring"),
        &state.join("spool.key"),
        "acme",
    )?
    .context("acme has a key in the MTA")?;
    let content_only = Traces::of(&[]);
    // Sealed from the start: no file ever held acme's content in clear.
    content_only.absent_from_files(&[&state.join("spool"), &rig.control.store_dir(), &before])?;

    let receipt_file = state.join("receipt.json");
    let printed = rig.cli(&[
        "tenant",
        "erase",
        "acme",
        "--confirm",
        "acme",
        "--out",
        &receipt_file.display().to_string(),
    ])?;
    ensure!(printed.contains("ed25519, valid"), "{printed}");
    let verified = rig.cli(&["receipt", "verify", &receipt_file.display().to_string()])?;
    ensure!(verified.contains("signature valid"), "{verified}");
    let receipt: Value = serde_json::from_slice(&std::fs::read(&receipt_file)?)?;
    let removed = |cat: &str| {
        receipt["removed"]
            .as_array()
            .and_then(|a| {
                a.iter()
                    .find(|i| i["category"].as_str().is_some_and(|c| c.starts_with(cat)))
            })
            .and_then(|i| i["count"].as_u64())
    };
    ensure!(removed("queued messages") == Some(2), "{receipt}");
    ensure!(removed("delivery log records") == Some(3), "{receipt}");
    ensure!(removed("account record") == Some(1), "{receipt}");
    ensure!(
        receipt["pending"].as_array().is_some_and(Vec::is_empty),
        "{receipt}"
    );
    let keys = receipt["shredded_keys"].as_array().context("keys")?;
    ensure!(
        keys.len() == 2 && keys.iter().all(|k| k["at_ms"].is_u64()),
        "{receipt}"
    );
    // A changed receipt does not verify.
    let mut forged = receipt.clone();
    forged["removed"][0]["count"] = Value::from(0);
    let forged_file = state.join("forged.json");
    std::fs::write(&forged_file, serde_json::to_vec(&forged)?)?;
    let check = rig.control.run_as(
        &rig.admin,
        &["receipt", "verify", &forged_file.display().to_string()],
    )?;
    ensure!(!check.status.success(), "a forged receipt verified");

    // The MTA has dropped acme at once; globex is untouched.
    let acme = rig.inventory("acme")?;
    ensure!(
        acme.messages == 0 && acme.log_records == 0 && acme.erased_at_ms.is_some(),
        "{acme:?}"
    );
    ensure!(rig.inventory("globex")?.messages == 2);

    // No file of the node holds a readable byte of acme, nor its keys: the spool,
    // the control store, both keyrings, the MTA's saved snapshot, and the backup
    // taken before the erasure.
    rig.mta.terminate()?;
    rig.control.stop()?;
    let traces = Traces::of(&[control_key.clone(), mta_key.clone()]);
    let checked = traces.absent_from_files(&[
        &state.join("spool"),
        &state.join("spool.keyring"),
        &state.join("snapshot"),
        &rig.control.store_dir(),
        &rig.control.keyring_file(),
        &before,
    ])?;
    ensure!(checked > 5, "files checked: {checked}");
    // Nor with every key the node still has: each spool record opened...
    let db_dir = state.join("spool");
    let keyring = way2mail_seal::Keyring::open_existing(
        &state.join("spool.keyring"),
        way2mail_seal::MasterKey::load_or_create(&state.join("spool.key"))?,
    )?;
    let mut opened = 0;
    {
        let db = wait_for("the spool's files", WAIT, || sled::open(&db_dir).ok())?;
        for kv in db.iter() {
            let (k, v) = kv?;
            if let Ok(plain) = keyring.open_record(&k, &v) {
                traces.absent_from("an opened spool record", &plain)?;
                opened += 1;
            }
        }
    }
    ensure!(opened > 0, "globex's records open");
    // ...each control record opened...
    {
        let store = wait_for("the control store", WAIT, || {
            Store::open(&rig.control.store_files()).ok()
        })?;
        let mut raw = Vec::new();
        store.for_each_raw(|tree, k, _| {
            raw.push((tree, k.to_vec()));
            Ok(())
        })?;
        for (tree, k) in raw {
            if let Ok(Some(v)) = store.get::<Value>(tree, &k) {
                traces.absent_from(
                    &format!("control record {}", tree.as_str()),
                    v.to_string().as_bytes(),
                )?;
            }
        }
        let entries = way2mail_control::audit::AuditLog::list(&store, Some("acme"), 0, usize::MAX)?;
        ensure!(
            entries.iter().any(|e| e.action == "tenant.erase"),
            "the erasure is audited"
        );
        ensure!(
            store.get::<Value>(TreeName::Billing, b"acme")?.is_some(),
            "billing kept"
        );
    }
    // ...and the backup, opened with the backup key: still only sealed records.
    {
        let key = way2mail_seal::MasterKey::load_or_create(&state.join("backup.key"))?;
        let file = std::io::BufReader::new(std::fs::File::open(&before)?);
        let mut plain = Vec::new();
        way2mail_control::backup::ArchiveReader::new(file, &key)?.read_to_end(&mut plain)?;
        traces.absent_from("the opened backup", &plain)?;
    }

    // Restoring that earlier backup brings globex back and leaves acme erased.
    let restored = rig.restore(&before, &state.join("backup.key"))?;
    ensure!(restored["spool_messages"] == 2, "{restored}");
    ensure!(
        restored["spool_erased_dropped"].as_u64() >= Some(4),
        "{restored}"
    );
    ensure!(
        restored["control_erased_dropped"].as_u64() >= Some(5),
        "{restored}"
    );
    rig.control.restart()?;
    rig.mta = Daemon::start(&rig.mta_config)?;
    let show = rig
        .control
        .run_as(&rig.admin, &["tenant", "show", "acme"])?;
    ensure!(
        !show.status.success() && show.stderr.contains("erased"),
        "{show:?}"
    );
    let receipt_id = receipt["receipt"].as_str().context("receipt id")?;
    ensure!(
        show.stderr.contains(receipt_id),
        "the receipt survives the restore: {show:?}"
    );
    let again = rig.cli_json(&["tenant", "receipt", "acme"])?;
    ensure!(again["receipt"] == receipt_id, "{again}");
    let snapshot_erased = rig.control.run_as(
        &rig.admin,
        &[
            "tenant",
            "add",
            "acme",
            "--business-name",
            "X",
            "--contact",
            "x@x.example",
        ],
    )?;
    ensure!(!snapshot_erased.status.success(), "an erased id came back");
    let acme = wait_for("acme's inventory", WAIT, || rig.inventory("acme").ok())?;
    ensure!(
        acme.messages == 0 && acme.erased_at_ms.is_some(),
        "{acme:?}"
    );
    ensure!(rig.inventory("globex")?.messages == 2);
    rig.mta.terminate()?;
    traces.absent_from_files(&[&state.join("spool"), &rig.control.store_dir()])?;
    Ok(())
}

#[test]
fn backup_then_restore_gives_back_every_queued_message() -> Result<()> {
    let mut rig = Rig::start(Backend::IoUring, "")?;
    let (acme, globex) = rig.traffic()?;
    let state = rig.state.path().to_path_buf();
    let file = state.join("node.w2b");
    let made = rig.cli_json(&["backup", "create", "--out", &file.display().to_string()])?;
    ensure!(made["spool_records"].as_u64() > Some(8), "{made}");
    let verified = rig.cli(&[
        "backup",
        "verify",
        "--in",
        &file.display().to_string(),
        "--key",
        &state.join("backup.key").display().to_string(),
    ])?;
    ensure!(verified.contains("whole"), "{verified}");
    // The node loses both stores; keys and keyrings survive (redundant storage).
    rig.mta.terminate()?;
    rig.control.stop()?;
    std::fs::remove_dir_all(state.join("spool"))?;
    std::fs::remove_dir_all(rig.control.store_dir())?;
    rig.restore(&file, &state.join("backup.key"))?;
    rig.control.restart()?;
    rig.mta = Daemon::start(&rig.mta_config)?;
    // The admin's session came back with the store; every queued message is back.
    let tenants = rig.cli_json(&["tenant", "list"])?;
    ensure!(
        tenants["tenants"].as_array().map(Vec::len) == Some(2),
        "{tenants}"
    );
    for (tenant, ids) in [("acme", &acme), ("globex", &globex)] {
        let inv = wait_for(&format!("{tenant} back"), WAIT, || {
            rig.inventory(tenant).ok()
        })?;
        ensure!(
            inv.messages == 2 && inv.log_records == 3,
            "{tenant}: {inv:?}"
        );
        let archive = state.join(format!("{tenant}.tar"));
        rig.cli(&[
            "tenant",
            "export",
            tenant,
            "--out",
            &archive.display().to_string(),
        ])?;
        let names = untar(&archive, &state.join(format!("{tenant}-x")))?;
        for id in ids.iter() {
            ensure!(
                names.iter().any(|n| n.ends_with(&format!("{id}.eml"))),
                "{id} not back: {names:?}"
            );
        }
    }
    let audit = rig.cli_json(&["audit", "list", "--limit", "1000"])?;
    ensure!(audit.to_string().contains("backup.restore"), "{audit}");
    Ok(())
}

#[test]
fn retention_removes_exactly_the_old_records() -> Result<()> {
    let rig = Rig::start(Backend::Epoll, "")?;
    let old_queued = rig.submit(&rig.acme, "a@stuck.example", "ACME-OLD-QUEUED")?;
    rig.submit(&rig.acme, "b@remote.example", "ACME-OLD-DELIVERED")?;
    rig.submit(&rig.globex, "g@remote.example", "GLOBEX-OLD-DELIVERED")?;
    rig.sink.wait_for(2, WAIT)?;
    rig.settled("acme", 1, 2)?;
    std::thread::sleep(Duration::from_secs(6));
    let new_at = Instant::now();
    let new_queued = rig.submit(&rig.acme, "c@stuck.example", "ACME-NEW-QUEUED")?;
    rig.submit(&rig.acme, "d@remote.example", "ACME-NEW-DELIVERED")?;
    rig.sink.wait_for(3, WAIT)?;
    rig.settled("acme", 2, 4)?;
    // The limit falls between the two groups' ages whatever the machine's speed:
    // at the run the new records are at most `young` + ~1 s old, the old ones at
    // least 6 s older than the new.
    let young = new_at.elapsed().as_secs_f64().ceil() as u64;
    let limit = format!("{}s", young + 3);
    rig.cli(&[
        "tenant",
        "retention",
        "acme",
        "--content",
        &limit,
        "--delivery-log",
        &limit,
    ])?;
    // The MTA follows control within a poll; give it a few.
    std::thread::sleep(Duration::from_millis(800));
    let run = rig.cli_json(&["retention", "run"])?;
    let entry = run["mta"]["entries"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["tenant"] == "acme"))
        .with_context(|| format!("no acme entry: {run}"))?;
    ensure!(entry["messages_removed"] == 1, "{run}");
    ensure!(entry["log_records_removed"] == 2, "{run}");
    ensure!(
        !run["mta"]["entries"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["tenant"] == "globex")),
        "globex keeps the defaults: {run}"
    );
    // What is left: the new queued message; the new records and the old message's
    // expiry, written by the sweep.
    let inv = rig.inventory("acme")?;
    ensure!(inv.messages == 1 && inv.log_records == 3, "{inv:?}");
    let archive = rig.state.path().join("acme.tar");
    rig.cli(&[
        "tenant",
        "export",
        "acme",
        "--out",
        &archive.display().to_string(),
    ])?;
    let dir = rig.state.path().join("x");
    untar(&archive, &dir)?;
    let base = dir.join("acme-export");
    ensure!(base.join(format!("messages/{new_queued}.eml")).exists());
    ensure!(!base.join(format!("messages/{old_queued}.eml")).exists());
    let log = std::fs::read_to_string(base.join("delivery-log/0001.jsonl"))?;
    let records: Vec<Value> = log
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let old: Vec<&Value> = records
        .iter()
        .filter(|r| r["message_id"] == old_queued.as_str())
        .collect();
    ensure!(
        old.len() == 1
            && old[0]["outcome"] == "expired"
            && old[0]["reply"]
                .as_str()
                .is_some_and(|r| r.contains("retention")),
        "{log}"
    );
    ensure!(inv.oldest_log_ms.is_some());
    ensure!(
        rig.inventory("globex")?.log_records == 1,
        "globex untouched"
    );
    // The sweep is in acme's audit log, as counts.
    let audit = rig.cli_json(&["audit", "list", "--tenant", "acme"])?;
    ensure!(
        audit["entries"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["action"] == "retention.run"
                && e["detail"].as_str().is_some_and(
                    |d| d.contains("removed 1 queued messages and 2 delivery log records")
                ))),
        "{audit}"
    );
    Ok(())
}

#[test]
fn corrections_and_accesses_are_audited() -> Result<()> {
    let rig = Rig::start(Backend::IoUring, "")?;
    rig.cli(&["tenant", "update", "acme", "--contact", "dpo@acme.example"])?;
    let support = rig.control.add_operator(&rig.admin, "sam", "support")?;
    rig.control
        .run_as(
            &support,
            &["--reason", "ticket 4711", "tenant", "show", "acme"],
        )?
        .ok()?;
    let audit = rig.cli_json(&["audit", "list", "--tenant", "acme"])?;
    let update = audit["entries"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["action"] == "tenant.update"))
        .with_context(|| format!("{audit}"))?;
    let detail = update["detail"].as_str().context("detail opened")?;
    ensure!(
        detail.contains("privacy-officer@acme.example") && detail.contains("dpo@acme.example"),
        "{detail}"
    );
    ensure!(
        update["sealed_detail"].is_string(),
        "stored sealed with acme's key: {update}"
    );
    let report = rig.cli_json(&["tenant", "report", "acme"])?;
    let access = report["access"].as_array().context("access")?;
    let saw = |actor: &str, action: &str| {
        access
            .iter()
            .any(|a| a["actor"] == actor && a["action"] == action && a["count"].as_u64() >= Some(1))
    };
    ensure!(saw("operator:sam", "tenant.show"), "{report}");
    ensure!(saw("operator:admin", "tenant.update"), "{report}");
    ensure!(report["mta_unavailable"].is_null(), "{report}");
    let partners = report["delivery_partners"].as_array().context("partners")?;
    ensure!(
        partners
            .iter()
            .any(|p| p["domains"].to_string().contains("remote.example")),
        "{report}"
    );
    let categories = report["categories"].as_array().context("categories")?;
    ensure!(
        categories.iter().any(|c| c["held_by"] == "mta"
            && c["category"]
                .as_str()
                .is_some_and(|s| s.starts_with("queued messages"))),
        "{report}"
    );
    // The report itself is an access, and so is reading the audit log about acme.
    let again = rig.cli_json(&["tenant", "report", "acme"])?;
    ensure!(again.to_string().contains("tenant.report"), "{again}");
    Ok(())
}
