//! The MTA's side of data protection, end to end, over its real admin socket (as
//! control uses it) and real SMTP: a tenant's inventory, export and erasure (the
//! export holds exactly that tenant's queued messages, bodies byte-identical, and
//! its delivery log; trusted-network mail signed for its domain included), backup
//! dumps that restore and cannot bring an erased tenant back, refused peers and bad
//! requests; the retention sweep (`retention.rs`); and what the snapshot tells the
//! MTA (`tenant_rules.rs`): suppression lists, erasures made while it was down,
//! held delivery for suspended tenants.

// A test crate's root resolves modules next to itself; these live in mta_admin/.
#[path = "mta_admin/retention.rs"]
mod retention;
#[path = "mta_admin/rig.rs"]
mod rig;
#[path = "mta_admin/tenant_rules.rs"]
mod tenant_rules;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use way2mail_queue::{restore_dump, DeliveryOutcome, Spool};
use way2mail_seal::{Keyring, MasterKey};
use way2mail_smtp::MessageId;
use way2mail_tests::{for_each_backend, Backend, Daemon, FakeControl, TestConfig};
use way2mail_wire::client::ClientError;
use way2mail_wire::mta_admin::{AdminOp, AdminResponse, AdminResult, MAX_REQUEST_BYTES};
use way2mail_wire::protocol::{ErrorCode, TenantStatus};

use rig::{
    export, inventory, inventory_until, snapshot, submit_as, submit_trusted, tenant, Rig, WAIT,
};

for_each_backend!(a_tenants_data_is_counted_exported_dumped_and_erased);

fn a_tenants_data_is_counted_exported_dumped_and_erased(backend: Backend) -> Result<()> {
    let rig = Rig::new()?;
    let tenants = vec![
        tenant("acme", TenantStatus::Active)?,
        tenant("globex", TenantStatus::Active)?,
    ];
    let _control = FakeControl::start(&rig.control_socket(), snapshot(1, tenants, &[]))?;
    let daemon = Daemon::start(&rig.config(backend))?;

    // acme: one delivered, one queued, and one from a trusted network signed for its
    // domain; globex and mail of no tenant: one queued each.
    let delivered = submit_as(&daemon, "acme", "someone@remote.example", "acme-delivered")?;
    let queued = submit_as(&daemon, "acme", "someone@stuck.example", "acme-queued")?;
    let relayed = submit_trusted(
        &daemon,
        "bounces@relay.example",
        "news@acme.example",
        "someone@stuck.example",
        "acme-relayed",
    )?;
    let globex = submit_as(&daemon, "globex", "someone@stuck.example", "globex-queued")?;
    let nobody = submit_trusted(
        &daemon,
        "app@elsewhere.example",
        "app@elsewhere.example",
        "someone@stuck.example",
        "nobody-queued",
    )?;
    rig.sink.wait_for(1, WAIT)?;
    let inv = inventory_until(&daemon, "acme", "acme's three outcomes", |i| {
        i.log_records == 3
    })?;
    ensure!(
        inv.messages == 2 && inv.key_id.is_some() && inv.erased_at_ms.is_none(),
        "{inv:?}"
    );
    ensure!(inv.bytes > 0 && inv.oldest_message_ms.is_some() && inv.oldest_log_ms.is_some());
    inventory_until(&daemon, "globex", "globex's deferral", |i| {
        i.log_records == 1
    })?;

    // The export holds acme's queued messages and log, nothing of anyone else.
    let acme = export(&daemon, "acme")?;
    ensure!(
        acme.result
            == AdminResult::Exported {
                messages: 2,
                log_records: 3
            },
        "{:?}",
        acme.result
    );
    let ids: BTreeSet<&str> = acme.messages.iter().map(|m| m.id.as_str()).collect();
    ensure!(
        ids == BTreeSet::from([queued.as_str(), relayed.as_str()]),
        "{ids:?}"
    );
    for m in &acme.messages {
        ensure!(m.envelope["origin"]["tenant"] == "acme", "{}", m.envelope);
        let text = String::from_utf8_lossy(&m.body);
        let marker = if m.id == queued {
            "acme-queued"
        } else {
            "acme-relayed"
        };
        ensure!(
            text.starts_with("Received: ") && text.contains(&format!("The content of {marker}.")),
            "{text}"
        );
    }
    let logged: BTreeSet<&str> = acme.log.iter().map(|r| r.message_id.as_str()).collect();
    ensure!(
        logged == BTreeSet::from([delivered.as_str(), queued.as_str(), relayed.as_str()]),
        "{logged:?}"
    );
    ensure!(acme
        .log
        .iter()
        .any(|r| r.message_id == delivered && r.outcome == DeliveryOutcome::Delivered));
    let log_text = daemon.stderr();
    ensure!(
        !log_text.contains("The content of"),
        "message content in the log"
    );
    // No plaintext delivery log unless configured.
    ensure!(!log_text.contains("holds recipient addresses in plaintext"));
    ensure!(!daemon.dir().join("var/delivery.log").exists());

    // A backup dump restores into a fresh spool, where the same bodies read back.
    let (dump, answer) = daemon.admin()?.call_stream(AdminOp::BackupDump, |r| {
        let mut bytes = Vec::new();
        r.read_to_end(&mut bytes)?;
        Ok(bytes)
    })?;
    let AdminResult::Dumped { records, bytes } = answer else {
        bail!("backup.dump answered {answer:?}");
    };
    ensure!(
        bytes == dump.len() as u64 && records > 0,
        "{bytes} {records}"
    );
    let leftovers: Vec<_> = std::fs::read_dir(rig.state.path())?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".dump-"))
        .collect();
    ensure!(
        leftovers.is_empty(),
        "temporary dump files left: {leftovers:?}"
    );
    // The node's keyring, as an operator restoring onto this node would use it.
    let keyring = || -> Result<Keyring> {
        let master = MasterKey::load_or_create(&rig.state.path().join("spool.key"))?;
        Ok(Keyring::open_existing(
            &rig.state.path().join("spool.keyring"),
            master,
        )?)
    };
    let restored_dir = tempfile::tempdir()?;
    let restored = restored_dir.path().join("spool");
    let stats = restore_dump(&restored, &keyring()?, &mut dump.as_slice())?;
    ensure!(
        stats.messages == 4 && stats.erased_dropped == 0,
        "{stats:?}"
    );
    {
        let spool = Spool::open(&restored, keyring()?)?;
        for m in &acme.messages {
            let (_, body) = spool
                .read(&m.id.parse::<MessageId>()?)?
                .context("restored message")?;
            ensure!(
                body == m.body,
                "restored body differs from the exported one"
            );
        }
        for id in [&globex, &nobody] {
            ensure!(spool.read(&id.parse::<MessageId>()?)?.is_some(), "{id}");
        }
    }

    // Erasure: acme's key shredded, its messages and log gone; globex untouched.
    let answer = daemon.admin()?.call(AdminOp::TenantErase {
        tenant: "acme".into(),
    })?;
    let AdminResult::Erased(erased) = answer else {
        bail!("tenant.erase answered {answer:?}");
    };
    ensure!(
        erased.messages == 2 && erased.log_records == 3 && erased.key_id == inv.key_id,
        "{erased:?}"
    );
    let after = inventory(&daemon, "acme")?;
    ensure!(
        after.messages == 0
            && after.log_records == 0
            && after.key_id.is_none()
            && after.erased_at_ms == Some(erased.erased_at_ms),
        "{after:?}"
    );
    let again = export(&daemon, "acme")?;
    ensure!(again.messages.is_empty() && again.log.is_empty());
    ensure!(inventory(&daemon, "globex")?.messages == 1);
    // Erasing twice is harmless and answers the first erasure: when, and what it
    // removed (control may ask after the MTA completed the erasure on its own from
    // the snapshot; the receipt must still count what was removed).
    let AdminResult::Erased(twice) = daemon.admin()?.call(AdminOp::TenantErase {
        tenant: "acme".into(),
    })?
    else {
        bail!("second erase");
    };
    ensure!(
        twice.erased_at_ms == erased.erased_at_ms
            && twice.messages == erased.messages
            && twice.log_records == erased.log_records,
        "{twice:?}"
    );

    // The dump taken before the erasure cannot bring acme back.
    let stats = restore_dump(&restored, &keyring()?, &mut dump.as_slice())?;
    ensure!(stats.messages == 2 && stats.erased_dropped > 0, "{stats:?}");
    let spool = Spool::open(&restored, keyring()?)?;
    for m in &acme.messages {
        ensure!(spool.read(&m.id.parse::<MessageId>()?)?.is_none());
    }
    ensure!(spool.read(&globex.parse::<MessageId>()?)?.is_some());
    Ok(())
}

/// Sends raw bytes and reads `answers` response lines; with `closes`, the server
/// must then close the connection.
fn raw(
    socket: &std::path::Path,
    bytes: &[u8],
    answers: usize,
    closes: bool,
) -> Result<Vec<AdminResponse>> {
    let mut s = UnixStream::connect(socket)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(bytes)?;
    let mut reader = BufReader::new(s);
    let mut out = Vec::new();
    for _ in 0..answers {
        let mut answer = String::new();
        reader.read_line(&mut answer)?;
        out.push(serde_json::from_str(&answer).with_context(|| format!("answer {answer:?}"))?);
    }
    if closes {
        let mut rest = Vec::new();
        // A peer closed with our unread bytes in its queue resets rather than ends.
        match reader.read_to_end(&mut rest) {
            Ok(0) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            other => bail!("the connection stayed open: {other:?}"),
        }
    }
    Ok(out)
}

fn remote_code(e: ClientError) -> Result<(ErrorCode, String)> {
    match e {
        ClientError::Remote(body) => Ok((body.code, body.message)),
        other => bail!("expected an error answer, got {other}"),
    }
}

#[test]
fn peers_and_requests_the_socket_refuses() -> Result<()> {
    // Tests run as root; 4242 is somebody else.
    let config = TestConfig::new(Backend::Epoll)
        .set("control", "socket", "\"\"")
        .set("admin", "allowed_uids", "[4242]")
        .set("admin", "allow_root", "false");
    let daemon = Daemon::start(&config)?;
    let mode = std::fs::metadata(daemon.admin_socket())?.permissions();
    ensure!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777 == 0o660,
        "socket mode {:o}",
        std::os::unix::fs::PermissionsExt::mode(&mode)
    );
    let e = daemon
        .admin()?
        .call(AdminOp::Hello)
        .expect_err("uid 0 is not allowed");
    let (code, message) = remote_code(e)?;
    ensure!(
        code == ErrorCode::Forbidden && message.contains("uid 0"),
        "{code:?} {message}"
    );
    // One line, then the connection is closed. The refused connection above holds
    // this uid's one slot until its thread ends, a moment after the client saw the
    // close: a `busy` answer in that moment is retried, and so is a write that
    // found the busy connection already closed (EPIPE).
    let mut answers = Vec::new();
    for attempt in 0..50 {
        let sent = raw(
            &daemon.admin_socket(),
            b"{\"v\":1,\"id\":9,\"op\":\"hello\"}\n",
            1,
            true,
        );
        answers = match sent {
            Ok(a) => a,
            Err(e) if attempt < 49 && e.to_string().contains("Broken pipe") => {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            Err(e) => return Err(e),
        };
        let busy = answers[0]
            .error
            .as_ref()
            .is_some_and(|e| e.code == ErrorCode::Busy);
        if !busy {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    ensure!(!answers[0].ok && answers[0].id == 9, "{answers:?}");
    ensure!(daemon.stderr().contains("uid not in admin.allowed_uids"));
    drop(daemon);

    let daemon = Daemon::start(&TestConfig::new(Backend::Epoll).set("control", "socket", "\"\""))?;
    let mut admin = daemon.admin()?;
    let AdminResult::Hello { caller, .. } = admin.call(AdminOp::Hello)? else {
        bail!("hello");
    };
    ensure!(caller == "uid:0", "{caller}");
    // Bad tenant names get a clear error, and the connection goes on.
    for bad in ["", "Acme", "../acme", "acme\n", "a b", &"x".repeat(100)] {
        let e = admin
            .call(AdminOp::TenantInventory { tenant: bad.into() })
            .expect_err(bad);
        let (code, message) = remote_code(e)?;
        ensure!(
            code == ErrorCode::Invalid && message.contains("invalid tenant id"),
            "{bad:?}: {code:?} {message}"
        );
    }
    let AdminResult::Routes { routes } = admin.call(AdminOp::Routes)? else {
        bail!("routes");
    };
    ensure!(routes.is_empty(), "{routes:?}");
    let AdminResult::Inventory(inv) = admin.call(AdminOp::TenantInventory {
        tenant: "nobody".into(),
    })?
    else {
        bail!("inventory");
    };
    ensure!(inv.messages == 0 && inv.key_id.is_none(), "{inv:?}");
    // Unknown ops and versions are answered; the connection stays open for more.
    let answers = raw(
        &daemon.admin_socket(),
        b"{\"v\":1,\"id\":3,\"op\":\"spool.drop\"}\nnot json\n{\"v\":7,\"op\":\"hello\"}\n\
          {\"v\":1,\"id\":4,\"op\":\"hello\"}\n",
        4,
        false,
    )?;
    let codes: Vec<Option<ErrorCode>> = answers
        .iter()
        .map(|a| a.error.as_ref().map(|e| e.code))
        .collect();
    ensure!(
        codes
            == [
                Some(ErrorCode::UnknownOp),
                Some(ErrorCode::BadRequest),
                Some(ErrorCode::UnsupportedVersion),
                None
            ]
            && answers[0].id == 3
            && answers[3].id == 4,
        "{answers:?}"
    );
    // Too large: an error, then the connection is closed.
    let mut huge = vec![b'x'; MAX_REQUEST_BYTES + 10];
    huge.push(b'\n');
    let answers = raw(&daemon.admin_socket(), &huge, 1, true)?;
    ensure!(
        answers[0].error.as_ref().map(|e| e.code) == Some(ErrorCode::RequestTooLarge),
        "{answers:?}"
    );
    // The socket file goes with the daemon.
    let socket = daemon.admin_socket();
    let mut daemon = daemon;
    daemon.terminate()?;
    ensure!(!socket.exists(), "the admin socket outlived the daemon");
    Ok(())
}
