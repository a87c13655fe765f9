//! What the control snapshot tells the MTA besides who may send: a tenant's
//! suppression list (its recipients refused at RCPT), an erasure control made while
//! the MTA was down (completed at the next start), and a suspension (its mail held,
//! untouched, until the tenant is resumed).

use std::time::Duration;

use anyhow::{bail, ensure, Result};
use way2mail_queue::DeliveryOutcome;
use way2mail_tests::{for_each_backend, wait_for, Backend, Daemon, FakeControl, SmtpClient};
use way2mail_wire::protocol::TenantStatus;
use way2mail_wire::snapshot::suppression_hash;

use super::rig::{
    authenticated, export, inventory, inventory_until, snapshot, submit_as, submit_trusted, tenant,
    Rig, FOLLOW, WAIT,
};

const BLOCKED: &str = "Blocked@Remote.Example";

for_each_backend!(suppression_erasure_and_held_delivery_follow_the_snapshot);

fn suppression_erasure_and_held_delivery_follow_the_snapshot(backend: Backend) -> Result<()> {
    let rig = Rig::new()?;
    let mut acme = tenant("acme", TenantStatus::Active)?;
    acme.suppressed = vec![suppression_hash("blocked@remote.example")];
    let globex = tenant("globex", TenantStatus::Active)?;
    let control = FakeControl::start(
        &rig.control_socket(),
        snapshot(1, vec![acme.clone(), globex.clone()], &[]),
    )?;
    let config = rig.config(backend);
    let mut daemon = Daemon::start(&config)?;

    // Suppression: refused for acme's sessions, in any case; the transaction goes on.
    let mut c = authenticated(&daemon, "acme")?;
    c.expect("MAIL FROM:<app@acme.example>", 250)?;
    let r = c.command(&format!("RCPT TO:<{BLOCKED}>"))?;
    ensure!(
        r.code == 550
            && r.enhanced() == Some("5.7.1")
            && r.text().contains(&format!(
                "Recipient <{BLOCKED}> is on this account's suppression list"
            )),
        "{r}"
    );
    c.expect("RCPT TO:<fine@remote.example>", 250)?;
    c.expect("RSET", 250)?;
    // One INFO line says so, with the domain but not the address.
    let log = daemon.stderr();
    let suppressed: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" INFO way2mail::message: suppressed "))
        .collect();
    ensure!(
        suppressed.len() == 1
            && suppressed[0].contains("tenant=acme")
            && suppressed[0].contains("domain=\"Remote.Example\""),
        "no suppressed line:\n{log}"
    );
    ensure!(
        !log.to_ascii_lowercase().contains("blocked@remote.example"),
        "the address in the log:\n{log}"
    );
    // Another tenant may still write to that address, and so may a trusted network.
    let mut g = authenticated(&daemon, "globex")?;
    g.expect("MAIL FROM:<app@globex.example>", 250)?;
    g.expect(&format!("RCPT TO:<{BLOCKED}>"), 250)?;
    let (mut t, _) = SmtpClient::connect(daemon.ports().mx)?;
    t.expect("EHLO relay.client.test", 250)?;
    t.expect("MAIL FROM:<app@elsewhere.example>", 250)?;
    t.expect(&format!("RCPT TO:<{BLOCKED}>"), 250)?;
    drop((c, g, t));

    // Erasure while the MTA is down: completed when it starts on the new snapshot.
    submit_as(&daemon, "globex", "a@stuck.example", "globex-left-behind")?;
    inventory_until(&daemon, "globex", "globex's deferral", |i| {
        i.log_records == 1
    })?;
    daemon.terminate()?;
    control.set(snapshot(2, vec![acme.clone()], &["globex"]));
    let daemon = Daemon::start(&config)?;
    let gone = inventory(&daemon, "globex")?;
    ensure!(
        gone.erased_at_ms.is_some() && gone.messages == 0 && gone.log_records == 0,
        "{gone:?}"
    );
    let log = daemon.stderr();
    ensure!(
        log.lines().any(|l| l.contains("tenant erased in control")
            && l.contains("messages=1")
            && l.contains("log_records=1")),
        "no WARN about the completed erasure:\n{log}"
    );

    // Suspended: its mail (here from a trusted network, signed for its domain) stays
    // queued with no attempt and no log record...
    let mut suspended = acme.clone();
    suspended.status = TenantStatus::Suspended;
    control.set(snapshot(3, vec![suspended], &["globex"]));
    wait_for("the suspension to reach the MTA", FOLLOW, || {
        daemon.stderr().contains("version=3").then_some(())
    })?;
    let held = submit_trusted(
        &daemon,
        "bounces@relay.example",
        "news@acme.example",
        "someone@remote.example",
        "held-while-suspended",
    )?;
    wait_for("a held-delivery log line", WAIT, || {
        daemon.stderr().contains("delivery held").then_some(())
    })?;
    // Held mail is looked at every second here; give it a few rounds.
    std::thread::sleep(Duration::from_secs(3));
    ensure!(
        rig.sink.messages().is_empty(),
        "a suspended tenant's mail was delivered"
    );
    // The one log record is the `suppressed` event of the refused RCPT above.
    let inv = inventory(&daemon, "acme")?;
    ensure!(inv.messages == 1 && inv.log_records == 1, "{inv:?}");
    let log = daemon.stderr();
    ensure!(
        log.matches("delivery held").count() == 1,
        "the held message is logged more than once an hour:\n{log}"
    );

    // ...until the tenant is resumed: then it goes out, as its first attempt.
    control.set(snapshot(4, vec![acme], &["globex"]));
    let arrived = rig.sink.wait_for(1, WAIT)?;
    ensure!(
        String::from_utf8_lossy(&arrived[0].data).contains("held-while-suspended"),
        "{:?}",
        arrived[0]
    );
    inventory_until(&daemon, "acme", "the delivery record", |i| {
        i.log_records == 2 && i.messages == 0
    })?;
    let exported = export(&daemon, "acme")?;
    let [refusal, record] = exported.log.as_slice() else {
        bail!("{} log records", exported.log.len());
    };
    ensure!(
        refusal.outcome == DeliveryOutcome::Suppressed && refusal.recipient == BLOCKED,
        "{refusal:?}"
    );
    ensure!(
        record.message_id == held
            && record.outcome == DeliveryOutcome::Delivered
            && record.attempt == 1,
        "{record:?}"
    );
    // Every admin request has its log line (written just after the answer), without
    // message content.
    wait_for("the export's admin request line", WAIT, || {
        daemon
            .stderr()
            .lines()
            .any(|l| l.contains("admin request") && l.contains("tenant.export"))
            .then_some(())
    })?;
    ensure!(
        !daemon.stderr().contains("The content of"),
        "message content in the log"
    );
    Ok(())
}
