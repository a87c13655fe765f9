//! The MTA's retention sweep: the periods of the snapshot per tenant (legal hold
//! wins, mail of no tenant keeps `[retention]`'s), exactly the records older than
//! them removed, an `expired` record saying why for each removed recipient; reports
//! of scheduled sweeps reach control's audit log, also when control was away at the
//! time; `retention.run`'s are answered, not sent.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;
use way2mail_queue::DeliveryOutcome;
use way2mail_tests::control::Control;
use way2mail_tests::{for_each_backend, wait_for, Backend, Daemon, FakeControl};
use way2mail_wire::mta_admin::{AdminOp, AdminResult, SweepEntry};
use way2mail_wire::protocol::TenantStatus;
use way2mail_wire::snapshot::MtaRetention;

use super::rig::{
    export, inventory, inventory_until, snapshot, submit_as, submit_trusted, tenant, toml_str, Rig,
    WAIT,
};

const PERIOD: u64 = 3;

for_each_backend!(the_sweep_removes_exactly_what_outlived_its_period);

fn the_sweep_removes_exactly_what_outlived_its_period(backend: Backend) -> Result<()> {
    let rig = Rig::new()?;
    let short = Some(MtaRetention {
        content_secs: PERIOD,
        delivery_log_secs: PERIOD,
    });
    let mut acme = tenant("acme", TenantStatus::Active)?;
    acme.retention = short;
    let mut held = tenant("globex", TenantStatus::Active)?;
    held.retention = short;
    held.legal_hold = true;
    let control = FakeControl::start(&rig.control_socket(), snapshot(1, vec![acme, held], &[]))?;
    let daemon = Daemon::start(&rig.config(backend))?;

    let old_delivered = submit_as(&daemon, "acme", "a@remote.example", "old-delivered")?;
    let old_queued = submit_as(&daemon, "acme", "a@stuck.example", "old-queued")?;
    submit_as(&daemon, "globex", "a@stuck.example", "on-hold")?;
    let nobody = submit_trusted(
        &daemon,
        "app@elsewhere.example",
        "app@elsewhere.example",
        "a@stuck.example",
        "no-tenant",
    )?;
    inventory_until(&daemon, "acme", "acme's old outcomes", |i| {
        i.log_records == 2
    })?;
    inventory_until(&daemon, "globex", "globex's deferral", |i| {
        i.log_records == 1
    })?;
    let old_done = Instant::now();
    std::thread::sleep(Duration::from_millis(PERIOD * 1000 + 500));
    let young_delivered = submit_as(&daemon, "acme", "b@remote.example", "young-delivered")?;
    let young_queued = submit_as(&daemon, "acme", "b@stuck.example", "young-queued")?;
    inventory_until(&daemon, "acme", "acme's young outcomes", |i| {
        i.log_records == 4
    })?;

    let answer = daemon.admin()?.call(AdminOp::RetentionRun)?;
    ensure!(
        old_done.elapsed() < Duration::from_secs(PERIOD * 2 + 5),
        "too slow to tell old from young"
    );
    let AdminResult::Swept(report) = answer else {
        bail!("retention.run answered {answer:?}");
    };
    ensure!(
        report.entries
            == [SweepEntry {
                tenant: Some("acme".into()),
                messages_removed: 1,
                messages_in_delivery: 0,
                log_records_removed: 2,
            }],
        "{report:?}"
    );
    ensure!(report.erased_messages == 0 && report.erased_log_records == 0);

    let left = export(&daemon, "acme")?;
    let ids: Vec<&str> = left.messages.iter().map(|m| m.id.as_str()).collect();
    ensure!(ids == [young_queued.as_str()], "{ids:?}");
    let logged: BTreeSet<(&str, String)> = left
        .log
        .iter()
        .map(|r| (r.message_id.as_str(), format!("{:?}", r.outcome)))
        .collect();
    ensure!(
        logged
            == BTreeSet::from([
                (young_delivered.as_str(), "Delivered".into()),
                (young_queued.as_str(), "Deferred".into()),
                (old_queued.as_str(), "Expired".into()),
            ]),
        "{logged:?} (old delivered was {old_delivered})"
    );
    let expired = left
        .log
        .iter()
        .find(|r| r.outcome == DeliveryOutcome::Expired)
        .context("expired record")?;
    ensure!(
        expired.reply.as_deref() == Some("removed by the retention policy (content 3s)"),
        "{expired:?}"
    );
    // Legal hold: nothing of globex goes, although its periods are as short.
    let g = inventory(&daemon, "globex")?;
    ensure!(g.messages == 1 && g.log_records == 1, "{g:?}");
    // Mail of no tenant keeps [retention]'s 30 days.
    let mut daemon = daemon;
    daemon.terminate()?;
    let entries = daemon.spool_entries()?;
    ensure!(entries.iter().any(|e| e.id == nobody), "{entries:?}");
    ensure!(
        control.reports().is_empty(),
        "a retention.run report was sent to control: {:?}",
        control.reports()
    );
    Ok(())
}

for_each_backend!(scheduled_sweeps_report_to_control_once_it_is_back);

fn scheduled_sweeps_report_to_control_once_it_is_back(backend: Backend) -> Result<()> {
    let mut control = Control::start()?;
    let admin = control.bootstrap_admin("admin")?;
    control.stop()?;
    let rig = Rig::new()?;
    let config = rig
        .config(backend)
        .set("control", "socket", &toml_str(&control.socket()))
        .set("retention", "content", "\"2s\"")
        .set("retention", "sweep_interval", "\"1s\"");
    let daemon = Daemon::start(&config)?;
    submit_trusted(
        &daemon,
        "app@elsewhere.example",
        "app@elsewhere.example",
        "a@stuck.example",
        "swept-while-control-is-down",
    )?;
    wait_for("a sweep whose report cannot be sent", WAIT, || {
        let log = daemon.stderr();
        let swept = log
            .lines()
            .any(|l| l.contains("retention sweep") && l.contains(" messages=1 "));
        (swept && log.contains("retention report not delivered to control")).then_some(())
    })?;

    control.restart()?;
    // One entry for the sweep, one per key that lost something (here the node's own).
    let details = wait_for("the report in control's audit log", WAIT, || {
        let out = control
            .run_as(&admin, &["--json", "audit", "list", "--limit", "1000"])
            .ok()?;
        let listed: Value = out.json().ok()?;
        let details: Vec<String> = listed["entries"]
            .as_array()?
            .iter()
            .filter(|e| e["action"] == "retention.report" && e["outcome"] == "ok")
            .filter_map(|e| e["detail"].as_str().map(str::to_owned))
            .collect();
        (details.len() >= 2).then_some(details)
    })?;
    ensure!(
        details.iter().any(|d| d.contains("1 messages and"))
            && details
                .iter()
                .any(|d| d.contains("removed 1 queued messages")),
        "{details:?}"
    );
    Ok(())
}
