//! Live queue operations end to end: the real `way2mail` CLI through the real
//! `way2mail-control` (roles, audit log) to the real `way2mail-mta`'s admin
//! socket, on a queue of deferred mail (a route to a closed port): summary, list
//! with every filter, show, hold (dry run first), release, retry, bounce, delete;
//! refusals for roles without queue rights; `way2mail-mta spool list|summary|log`
//! answered by the running daemon.

#[allow(dead_code)]
#[path = "data_protection/rig.rs"]
mod rig;

use std::collections::BTreeSet;

use anyhow::{ensure, Context, Result};
use serde_json::Value;
use std::process::Command;
use std::time::Duration;
use way2mail_tests::control::Operator;

use way2mail_tests::{
    daemon_binary, http_get, metric_value, run_bounded, wait_for, Backend, Ports,
};

use rig::{Rig, WAIT};

/// The ids of a `queue list --json` answer, sorted.
fn ids(listing: &Value) -> Result<BTreeSet<String>> {
    listing["messages"]
        .as_array()
        .context("no messages")?
        .iter()
        .map(|m| m["id"].as_str().map(str::to_owned).context("id"))
        .collect()
}

fn set(ids: &[String]) -> BTreeSet<String> {
    ids.iter().cloned().collect()
}

fn changed(report: &Value) -> Result<BTreeSet<String>> {
    report["changed"]
        .as_array()
        .context("no changed")?
        .iter()
        .map(|m| m.as_str().map(str::to_owned).context("id"))
        .collect()
}

/// `way2mail --json queue list ARGS…` as `op`.
fn list(rig: &Rig, op: &Operator, args: &[&str]) -> Result<Value> {
    let mut all = vec!["--json", "queue", "list"];
    all.extend_from_slice(args);
    rig.control.run_as(op, &all)?.ok()?.json()
}

/// Runs as `op` and expects a refusal whose message says `why`.
fn refused(rig: &Rig, op: &Operator, args: &[&str], why: &str) -> Result<()> {
    let out = rig.control.run_as(op, args)?;
    ensure!(
        !out.status.success() && out.stderr.contains(why),
        "{args:?} as {} was not refused with {why:?}: {out:?}",
        op.role
    );
    Ok(())
}

#[test]
fn operators_see_and_change_the_live_queue() -> Result<()> {
    let rig = Rig::start(Backend::Epoll, "")?;
    let (acme, globex) = rig.traffic()?;
    let admin = &rig.admin;
    let all: Vec<String> = acme.iter().chain(&globex).cloned().collect();

    // qshape's view: four messages for stuck.example, all young and deferred.
    let summary = rig.cli_json(&["queue", "summary"])?;
    ensure!(summary["total"]["messages"] == 4, "{summary}");
    ensure!(summary["total"]["by_age"][0] == 4, "{summary}");
    ensure!(
        summary["domains"][0]["domain"] == "stuck.example",
        "{summary}"
    );
    ensure!(summary["domains"][0]["messages"] == 4, "{summary}");
    ensure!(
        summary["states"] == serde_json::json!([["deferred", 4]]),
        "{summary}"
    );
    let table = rig.cli(&["queue", "summary"])?;
    ensure!(
        table.contains("stuck.example") && table.contains("TOTAL"),
        "{table}"
    );

    // Every filter narrows.
    ensure!(ids(&list(&rig, admin, &[])?)? == set(&all));
    ensure!(ids(&list(&rig, admin, &["--tenant", "acme"])?)? == set(&acme));
    ensure!(ids(&list(&rig, admin, &["--sender", "@globex.example"])?)? == set(&globex));
    ensure!(ids(&list(&rig, admin, &["--sender", "app@acme.example"])?)? == set(&acme));
    ensure!(
        ids(&list(
            &rig,
            admin,
            &["--domain", "stuck.example", "--state", "deferred"]
        )?)? == set(&all)
    );
    ensure!(ids(&list(&rig, admin, &["--domain", "remote.example"])?)?.is_empty());
    ensure!(ids(&list(&rig, admin, &["--older-than", "1h"])?)?.is_empty());
    ensure!(ids(&list(
        &rig,
        admin,
        &["--older-than", "0s", "--state", "held"]
    )?)?
    .is_empty());
    let limited = list(&rig, admin, &["--limit", "1"])?;
    ensure!(
        limited["matched"] == 4 && ids(&limited)?.len() == 1,
        "{limited}"
    );
    let one = &list(&rig, admin, &["--tenant", "acme"])?["messages"][0];
    ensure!(one["state"] == "deferred" && one["attempts"] == 1, "{one}");
    ensure!(one["recipients"][0]["state"] == "pending", "{one}");

    // Hold: the dry run changes nothing, the real one takes globex's mail aside.
    let dry = rig.cli_json(&["queue", "hold", "--tenant", "globex", "--dry-run"])?;
    ensure!(
        dry["dry_run"] == true && changed(&dry)? == set(&globex),
        "{dry}"
    );
    ensure!(ids(&list(&rig, admin, &["--state", "held"])?)?.is_empty());
    let held = rig.cli_json(&["queue", "hold", "--tenant", "globex"])?;
    ensure!(changed(&held)? == set(&globex), "{held}");
    ensure!(ids(&list(&rig, admin, &["--state", "held"])?)? == set(&globex));
    wait_for("the held gauge", WAIT, || {
        let (_, scrape) = http_get(rig.mta.metrics_addr(), "/metrics").ok()?;
        let held = metric_value(&scrape, "way2mail_queue_messages", &[("state", "held")]);
        let waiting = metric_value(&scrape, "way2mail_queue_messages", &[("state", "waiting")]);
        (held == Some(2.0) && waiting == Some(2.0)).then_some(())
    })?;
    let again = rig.cli_json(&["queue", "hold", &globex[0]])?;
    ensure!(again["skipped"][0]["why"] == "already held", "{again}");
    let retry_held = rig.cli_json(&["queue", "retry", "--state", "held"])?;
    ensure!(
        changed(&retry_held)?.is_empty()
            && retry_held["skipped"].as_array().map(Vec::len) == Some(2),
        "{retry_held}"
    );

    // The running daemon answers the spool commands too.
    let live = rig.mta.spool_list()?;
    let text = String::from_utf8_lossy(&live.stdout);
    ensure!(live.status.success(), "spool list: {live:?}");
    ensure!(
        text.contains("4 message(s)") && text.contains("held"),
        "{text}"
    );
    let summary = rig.mta.spool_command(&["spool", "summary", "--json"])?;
    ensure!(summary.status.success(), "spool summary: {summary:?}");
    let summary: Value = serde_json::from_slice(&summary.stdout)?;
    ensure!(summary["total"]["messages"] == 4, "{summary}");
    // Without an admin socket the files are read, which a running daemon forbids.
    let dir = tempfile::tempdir()?;
    let offline = rig
        .mta_config
        .clone()
        .set("admin", "socket", "\"\"")
        .write(dir.path(), &Ports::ephemeral()?)?;
    let mut command = Command::new(daemon_binary()?);
    command
        .arg("--config")
        .arg(&offline)
        .args(["spool", "list"]);
    let out = run_bounded(command.env_remove("RUST_LOG"), Duration::from_secs(60))?;
    let said = String::from_utf8_lossy(&out.stderr);
    ensure!(!out.status.success() && said.contains("in use"), "{out:?}");

    // Roles: support reads with a reason, never changes; auditors see nothing;
    // operators change, and say why they delete.
    let support = rig.control.add_operator(admin, "sam", "support")?;
    let auditor = rig.control.add_operator(admin, "aud", "auditor")?;
    let operator = rig.control.add_operator(admin, "olga", "operator")?;
    refused(&rig, &support, &["queue", "list"], "reason")?;
    let seen = list(
        &rig,
        &support,
        &["--reason", "ticket 42", "--tenant", "acme"],
    )?;
    ensure!(ids(&seen)? == set(&acme));
    refused(&rig, &support, &["queue", "hold", "--all"], "may not")?;
    refused(&rig, &auditor, &["queue", "summary"], "may not")?;
    refused(&rig, &operator, &["queue", "delete", &acme[1]], "reason")?;
    refused(&rig, admin, &["queue", "delete"], "select messages")?;

    // Release puts one held message back, due now: it is tried again at once.
    let released = rig
        .control
        .run_as(&operator, &["--json", "queue", "release", &globex[0]])?
        .ok()?
        .json()?;
    ensure!(changed(&released)? == set(&globex[..1]), "{released}");
    wait_for("the released message's second attempt", WAIT, || {
        let shown = rig.cli_json(&["queue", "show", &globex[0]]).ok()?;
        (shown["message"]["attempts"] == 2).then_some(())
    })?;
    let shown = rig.cli_json(&["queue", "show", &globex[0]])?;
    ensure!(shown["log"].as_array().map(Vec::len) == Some(2), "{shown}");
    ensure!(shown["log"][1]["outcome"] == "deferred", "{shown}");

    // Retry makes deferred mail due now: acme's first message gets its second attempt.
    let retried = rig.cli_json(&["queue", "retry", &acme[0]])?;
    ensure!(changed(&retried)? == set(&acme[..1]), "{retried}");
    wait_for("the retried message's second attempt", WAIT, || {
        let shown = rig.cli_json(&["queue", "show", &acme[0]]).ok()?;
        (shown["message"]["attempts"] == 2).then_some(())
    })?;

    // Bounce ends a message with a notice to its sender; delete ends one silently.
    let bounced = rig.cli_json(&["queue", "bounce", &acme[0]])?;
    ensure!(
        changed(&bounced)? == set(&acme[..1]) && bounced["notices"] == 1,
        "{bounced}"
    );
    let deleted = rig
        .control
        .run_as(
            &operator,
            &[
                "--reason",
                "customer asked",
                "--json",
                "queue",
                "delete",
                &acme[1],
            ],
        )?
        .ok()?
        .json()?;
    ensure!(
        changed(&deleted)? == set(&acme[1..]) && deleted["notices"] == 0,
        "{deleted}"
    );
    // The notice is queued for acme's sender (which has no route here: it is
    // tried, and leaves a delivery log record under its own id).
    let notice_seen = wait_for("the bounce's own delivery attempt", WAIT, || {
        let queued = list(&rig, admin, &["--sender", "<>"]).ok()?;
        let tried = rig
            .mta
            .spool_log(&["--recipient", "app@acme.example"])
            .ok()?;
        (queued["matched"] == 1 || !tried.is_empty()).then_some((queued, tried))
    })?;
    if notice_seen.0["matched"] == 1 {
        let notice = &notice_seen.0["messages"][0];
        ensure!(notice["tenant"] == "acme", "{notice}");
    }
    let remaining = list(
        &rig,
        admin,
        &["--tenant", "acme", "--sender", "app@acme.example"],
    )?;
    ensure!(remaining["matched"] == 0, "{remaining}");
    let log = rig.mta.spool_log(&["--message", &acme[0]])?;
    ensure!(
        log.iter()
            .any(|l| l.contains("\"bounced\"")
                && l.contains("removed from the queue by the operator")),
        "{log:?}"
    );
    let log = rig.mta.spool_log(&["--message", &acme[1]])?;
    ensure!(log.iter().any(|l| l.contains("\"deleted\"")), "{log:?}");

    // Every command is in the audit log, refusals included.
    let audit = rig.cli_json(&["audit", "list", "--limit", "1000"])?;
    let entries = audit["entries"].as_array().context("entries")?;
    let has = |action: &str, outcome: &str, actor: &str| {
        entries.iter().any(|e| {
            e["action"] == action
                && e["outcome"] == outcome
                && e["actor"].as_str().is_some_and(|a| a.ends_with(actor))
        })
    };
    for (action, outcome, actor) in [
        ("queue.summary", "ok", "admin"),
        ("queue.list", "ok", "sam"),
        ("queue.hold", "ok", "admin"),
        ("queue.hold", "denied", "sam"),
        ("queue.summary", "denied", "aud"),
        ("queue.delete", "denied", "olga"),
        ("queue.release", "ok", "olga"),
        ("queue.retry", "ok", "admin"),
        ("queue.bounce", "ok", "admin"),
        ("queue.delete", "ok", "olga"),
        ("queue.show", "ok", "admin"),
    ] {
        ensure!(
            has(action, outcome, actor),
            "no {outcome} {action} by {actor} in the audit log"
        );
    }
    let hold = entries
        .iter()
        .find(|e| e["action"] == "queue.hold" && e["outcome"] == "ok" && e["tenant"] == "globex")
        .context("the hold of globex's mail is audited under globex")?;
    let detail = hold["detail"].as_str().unwrap_or_default();
    ensure!(
        detail.contains("tenant=globex") && detail.contains("2 changed"),
        "{hold}"
    );
    ensure!(
        !detail.contains("@stuck.example"),
        "addresses in the audit detail: {hold}"
    );
    Ok(())
}
