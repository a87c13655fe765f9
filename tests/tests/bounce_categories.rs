//! Bounce classification end to end: next hops (sinks) refuse recipients with the
//! replies real receivers give, and every failure reaches the delivery log (read
//! through the admin socket, as `spool log` does) and the metrics with its
//! category; an unreachable next hop is `network`; a rule of `[bounces]
//! rules_file` wins over the built-in rules; a rules file that does not parse stops
//! `--check` with the rule named.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use way2mail_tests::{
    daemon_binary, http_get, metric_value, queued_id, run_bounded, Backend, Behaviour, ClosedPort,
    Daemon, Ports, Sink, SinkOptions, SmtpClient, TestConfig,
};
use way2mail_wire::mta_admin::{AdminOp, AdminResult};
use way2mail_wire::queue::QueueLogEntry;

const WAIT: Duration = Duration::from_secs(30);

fn refusing(code: u16, enhanced: &'static str) -> Result<Sink> {
    Sink::start(SinkOptions {
        behaviour: Behaviour::RejectRcpt(code, enhanced),
        ..SinkOptions::default()
    })
}

fn route(domain: &str, port: u16) -> String {
    format!("[[route]]\ndomain = \"{domain}\"\nhost = \"[127.0.0.1]:{port}\"\ntls = \"none\"\n")
}

/// Sends one message from the null sender to each of `rcpts` over mx.
fn send(d: &Daemon, rcpts: &[&str]) -> Result<()> {
    let (mut c, _) = SmtpClient::connect(d.ports().mx)?;
    c.expect("EHLO client.test", 250)?;
    for rcpt in rcpts {
        c.expect("MAIL FROM:<>", 250)?;
        c.expect(&format!("RCPT TO:<{rcpt}>"), 250)?;
        c.expect("DATA", 354)?;
        c.send(b"Subject: classified\r\n\r\nHello.\r\n")?;
        queued_id(&c.command(".")?)?;
    }
    c.expect("QUIT", 221)?;
    Ok(())
}

/// The delivery log once it has a record for each of `rcpts`.
fn log_for(d: &Daemon, rcpts: &[&str]) -> Result<Vec<QueueLogEntry>> {
    let deadline = Instant::now() + WAIT;
    loop {
        let answer = d.admin()?.call(AdminOp::DeliveryLog {
            message: None,
            recipient: None,
            since_ms: None,
            limit: None,
        })?;
        let AdminResult::DeliveryLog { records, .. } = answer else {
            bail!("delivery.log answered {answer:?}");
        };
        if rcpts
            .iter()
            .all(|r| records.iter().any(|e| e.recipient == *r))
        {
            return Ok(records);
        }
        ensure!(
            Instant::now() < deadline,
            "records for {rcpts:?}: {records:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn category_of<'a>(log: &'a [QueueLogEntry], rcpt: &str) -> Result<&'a QueueLogEntry> {
    log.iter()
        .find(|e| e.recipient == rcpt)
        .with_context(|| format!("no record for {rcpt}"))
}

#[test]
fn failures_are_classified_in_the_log_and_the_metrics() -> Result<()> {
    let unknown = refusing(550, "5.1.1")?;
    let full = refusing(452, "4.2.2")?;
    let closed = ClosedPort::new()?;
    let config = TestConfig::quick_delivery(Backend::Epoll)
        .set("delivery", "retry_initial_secs", "3600")
        .set("delivery", "retry_max_secs", "3600")
        .raw(&route("unknown.test", unknown.port()))
        .raw(&route("full.test", full.port()))
        .raw(&route("down.test", closed.port));
    let d = Daemon::start(&config)?;
    let rcpts = [
        "nobody@unknown.test",
        "hoarder@full.test",
        "anyone@down.test",
    ];
    send(&d, &rcpts)?;
    let log = log_for(&d, &rcpts)?;
    for (rcpt, outcome, category) in [
        ("nobody@unknown.test", "bounced", "invalid_recipient"),
        ("hoarder@full.test", "deferred", "mailbox_full"),
        ("anyone@down.test", "deferred", "network"),
    ] {
        let e = category_of(&log, rcpt)?;
        ensure!(
            e.outcome == outcome && e.category.as_deref() == Some(category),
            "{rcpt}: want {outcome}/{category}, got {e:?}"
        );
    }
    let (status, metrics) = http_get(d.metrics_addr(), "/metrics")?;
    ensure!(status == 200, "{metrics}");
    for (outcome, category) in [
        ("bounced", "invalid_recipient"),
        ("deferred", "mailbox_full"),
        ("deferred", "network"),
    ] {
        let n = metric_value(
            &metrics,
            "way2mail_deliveries_total",
            &[("outcome", outcome), ("category", category)],
        );
        ensure!(n == Some(1.0), "{outcome}/{category}: {n:?}\n{metrics}");
    }
    Ok(())
}

#[test]
fn the_operators_rules_come_first_and_bad_ones_stop_the_start() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let rules = dir.path().join("bounce-rules.toml");
    // This receiver says "full" when it means the account was closed.
    std::fs::write(
        &rules,
        "[[rule]]\ncategory = \"invalid_recipient\"\nstatus = [\"4.2.2\"]\n\
         patterns = [\"(?i)rejected by sink\"]\n",
    )?;
    let full = refusing(452, "4.2.2")?;
    let config = TestConfig::quick_delivery(Backend::Epoll)
        .set("delivery", "retry_initial_secs", "3600")
        .set("delivery", "retry_max_secs", "3600")
        .set("bounces", "rules_file", &format!("\"{}\"", rules.display()))
        .raw(&route("full.test", full.port()));
    let d = Daemon::start(&config)?;
    send(&d, &["closed@full.test"])?;
    let log = log_for(&d, &["closed@full.test"])?;
    let e = category_of(&log, "closed@full.test")?;
    ensure!(
        e.category.as_deref() == Some("invalid_recipient"),
        "the operator's rule: {e:?}"
    );
    drop(d);

    // A pattern that is no regex, and a category that does not exist.
    for (bad, named) in [
        (
            "[[rule]]\ncategory = \"policy\"\npatterns = [\"(unclosed\"]\n",
            "rule 1",
        ),
        (
            "[[rule]]\ncategory = \"policy\"\ncodes = [550]\n\
             [[rule]]\ncategory = \"spam\"\ncodes = [550]\n",
            "spam",
        ),
    ] {
        std::fs::write(&rules, bad)?;
        let file = config.write(dir.path(), &Ports::ephemeral()?)?;
        let mut command = std::process::Command::new(daemon_binary()?);
        command
            .current_dir(dir.path())
            .arg("--config")
            .arg(&file)
            .arg("--check");
        let out = run_bounded(&mut command, Duration::from_secs(30))?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure!(
            !out.status.success()
                && stderr.contains("bounces.rules_file")
                && stderr.contains(named),
            "{bad}: {stderr}"
        );
    }
    Ok(())
}
