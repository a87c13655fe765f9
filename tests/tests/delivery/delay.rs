//! Delay notices end to end (RFC 3461 `NOTIFY=DELAY`, RFC 3464 `Action: delayed`):
//! messages to a destination whose MX port is closed stay deferred past a
//! one-second `[delivery] delay_notice_secs`, and the notices reach the sender's
//! capture sink, parsed back with mail-parser. Which recipients they list follows
//! NOTIFY; a message gets at most one, however many retries follow; the null sender,
//! `NOTIFY=NEVER` and `NOTIFY=FAILURE` get none. A recipient that fails for good in
//! the attempt that also owes the delay notice is reported in the same DSN, and the
//! bounce is never lost.

use anyhow::{ensure, Context, Result};
use serde_json::Value;
use way2mail_tests::{
    http_get, metric_value, wait_for, Backend, Behaviour, ClosedPort, Daemon, Record, Sink,
    SinkOptions, StubDns,
};

use super::dsn::Dsn;
use super::rig::{
    config, lo, log_records, message, route, sink, stop_and_list, submit_with, SENDER, WAIT,
};

/// The message tags and what each must (not) cause.
const LISTED: &str = "delay-listed";
const NEVER: &str = "delay-never";
const FAILURE_ONLY: &str = "delay-failure-only";
const NULL_SENDER: &str = "delay-null-sender";
const MIXED: &str = "delay-mixed";

pub fn delay_notices(backend: Backend) -> Result<()> {
    let capture = sink(Behaviour::Accept)?;
    // perm.test answers 451 once, then refuses every recipient with 550: its
    // recipient fails for good on the second attempt, the first past the threshold.
    let perm = Sink::start(SinkOptions {
        script: vec![Behaviour::TempFail],
        behaviour: Behaviour::RejectRcpt(550, "5.1.1"),
        ..SinkOptions::default()
    })?;
    let dns = StubDns::start(vec![
        Record::mx("dest.test", 10, "mx.dest.test"),
        Record::a("mx.dest.test", lo(1)),
    ])?;
    // Nothing listens on the delivery port: every dest.test attempt is deferred.
    let closed_port = ClosedPort::new()?;
    let closed = closed_port.port;
    let perm_host = format!("[127.0.0.1]:{}", perm.port());
    let c = config(backend, &dns, closed, Some(&capture))
        .set("delivery", "delay_notice_secs", "1")
        // Refused connections must not slow the retries down: the test waits for them.
        .set("shaping", "backoff_after_failures", "1000")
        .raw(&route("perm.test", &perm_host, "none"));
    let mut d = Daemon::start(&c)?;
    let from = format!("<{SENDER}>");
    let listed = submit_with(
        &d,
        &from,
        &[
            "<plain@dest.test>",
            "<asks@dest.test> NOTIFY=DELAY",
            "<never@dest.test> NOTIFY=NEVER",
            "<fails@dest.test> NOTIFY=FAILURE",
        ],
        &message(LISTED),
    )?;
    let never = submit_with(&d, &from, &["<x@dest.test> NOTIFY=NEVER"], &message(NEVER))?;
    let failure_only = submit_with(
        &d,
        &from,
        &["<y@dest.test> NOTIFY=FAILURE"],
        &message(FAILURE_ONLY),
    )?;
    let null = submit_with(&d, "<>", &["<z@dest.test>"], &message(NULL_SENDER))?;
    let mixed = submit_with(
        &d,
        &from,
        &["<m@dest.test>", "<bad@perm.test>"],
        &message(MIXED),
    )?;
    let originals = [&listed, &never, &failure_only, &null, &mixed];

    // Four attempts of every original: three retries past the threshold, each of
    // which would have queued a second notice.
    for id in originals {
        wait_attempt(&d, id, 4)?;
    }
    // Normally two notices: the listed message's, and one DSN that bounces
    // bad@perm.test and reports m@dest.test delayed. Three if the mixed message's
    // first attempt itself ended past the threshold (a loaded machine): its delay
    // notice then went out alone, and the bounce after it.
    let late_first = first_queue_ms(&d, &mixed)? >= 1000;
    let expected = if late_first { 3 } else { 2 };
    let dsns = notices(&d, &capture, expected)?;
    check_listed(&dsns)?;
    check_mixed(&dsns, !late_first)?;
    for tag in [NEVER, FAILURE_ONLY, NULL_SENDER] {
        ensure!(
            returning(&dsns, tag).is_empty(),
            "{tag} got a notice: {:?}",
            dsns.iter().map(|d| &d.status).collect::<Vec<_>>()
        );
    }
    check_log_and_metric(&d, &listed)?;

    // Stopped: any further notice is now either at the capture sink or in the spool.
    let left = stop_and_list(&mut d)?;
    ensure!(
        left.len() == originals.len(),
        "expected the deferred originals only, got {left:#?}"
    );
    ensure!(
        capture.messages().len() == dsns.len(),
        "a notice arrived late"
    );
    Ok(())
}

/// Waits for a log record of attempt `n` (or later) of message `id`.
fn wait_attempt(d: &Daemon, id: &str, n: u64) -> Result<()> {
    wait_for(&format!("attempt {n} of {id}"), WAIT, || {
        log_records(d)
            .iter()
            .any(|r| r["message_id"] == id && r["attempt"].as_u64().unwrap_or(0) >= n)
            .then_some(())
    })
}

/// How long message `id` had been queued when its first attempt ended.
fn first_queue_ms(d: &Daemon, id: &str) -> Result<u64> {
    log_records(d)
        .iter()
        .find(|r| r["message_id"] == id && r["attempt"] == 1)
        .and_then(|r| r["queue_time_ms"].as_u64())
        .with_context(|| format!("no first attempt of {id} in the log"))
}

/// The `expected` notices at the sender's sink, once their deliveries are logged (so
/// a stop now leaves none of them in the spool).
fn notices(d: &Daemon, capture: &Sink, expected: usize) -> Result<Vec<Dsn>> {
    let to_sender = |r: &Value| r["recipient"] == SENDER && r["outcome"] == "delivered";
    capture.wait_for(expected, WAIT)?;
    wait_for("the notices' deliveries in the log", WAIT, || {
        let logged = log_records(d).iter().filter(|r| to_sender(r)).count();
        (logged >= expected).then_some(())
    })?;
    let all = capture.messages();
    ensure!(
        all.len() == expected,
        "{} notices, not {expected}",
        all.len()
    );
    all.iter().map(Dsn::parse).collect()
}

fn returning<'a>(dsns: &'a [Dsn], tag: &str) -> Vec<&'a Dsn> {
    let subject = format!("Subject: {tag}\r\n");
    dsns.iter()
        .filter(|d| d.returned.1.contains(&subject))
        .collect()
}

/// One notice, from <> to the sender, listing the recipients whose NOTIFY asks for
/// delays (none given, or DELAY) with the fields RFC 3464 §2.3 gives a delay.
fn check_listed(dsns: &[Dsn]) -> Result<()> {
    let found = returning(dsns, LISTED);
    ensure!(found.len() == 1, "{} notices for {LISTED}", found.len());
    let dsn = found[0];
    ensure!(dsn.mail_from.is_empty(), "notice from {}", dsn.mail_from);
    ensure!(dsn.rcpt_to == [SENDER], "notice to {:?}", dsn.rcpt_to);
    for rcpt in ["plain@dest.test", "asks@dest.test"] {
        let f = |name| dsn.field(Some(rcpt), name).unwrap_or_default();
        ensure!(f("Action") == "delayed", "{rcpt}: {}", dsn.status);
        ensure!(f("Status") == "4.4.1", "{rcpt}: {}", dsn.status);
        ensure!(!f("Will-Retry-Until").is_empty(), "{}", dsn.status);
        ensure!(!f("Last-Attempt-Date").is_empty(), "{}", dsn.status);
        let diag = f("Diagnostic-Code");
        ensure!(diag.contains("connect to"), "{rcpt}: {}", dsn.status);
    }
    for rcpt in ["never@dest.test", "fails@dest.test"] {
        ensure!(
            dsn.field(Some(rcpt), "Action").is_none(),
            "{rcpt} reported: {}",
            dsn.status
        );
    }
    ensure!(
        dsn.returned.0 == "text/rfc822-headers",
        "a delay notice returns headers only, got {}",
        dsn.returned.0
    );
    Ok(())
}

/// The bounce of bad@perm.test and the delay of m@dest.test: exactly one report of
/// each, in one DSN when `combined`.
fn check_mixed(dsns: &[Dsn], combined: bool) -> Result<()> {
    let found = returning(dsns, MIXED);
    let action = |d: &Dsn, rcpt| d.field(Some(rcpt), "Action").unwrap_or_default();
    let failed: Vec<_> = found
        .iter()
        .filter(|d| action(d, "bad@perm.test") == "failed")
        .collect();
    let delayed: Vec<_> = found
        .iter()
        .filter(|d| action(d, "m@dest.test") == "delayed")
        .collect();
    ensure!(failed.len() == 1, "{} bounces for {MIXED}", failed.len());
    ensure!(
        delayed.len() == 1,
        "{} delay notices for {MIXED}",
        delayed.len()
    );
    failed[0].check_failed("bad@perm.test", Some("5.1.1"))?;
    let expected = if combined { 1 } else { 2 };
    ensure!(
        found.len() == expected,
        "{} notices for {MIXED}",
        found.len()
    );
    Ok(())
}

/// One `delay notice queued` line per delay notice (the listed and the mixed
/// message's), naming both queue ids and no address; the counter agrees.
fn check_log_and_metric(d: &Daemon, listed: &str) -> Result<()> {
    let stderr = d.stderr();
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("delay notice queued"))
        .collect();
    ensure!(lines.len() == 2, "{lines:#?}");
    let line = lines
        .iter()
        .find(|l| l.contains(&format!("id={listed}")))
        .context("no delay notice line for the listed message")?;
    ensure!(
        line.contains("notice=") && line.contains("delayed=2"),
        "{line}"
    );
    ensure!(!lines.iter().any(|l| l.contains('@')), "{lines:#?}");
    let (_, metrics) = http_get(d.metrics_addr(), "/metrics")?;
    let counted = metric_value(&metrics, "way2mail_delay_notices_total", &[]);
    ensure!(counted == Some(2.0), "counter {counted:?}");
    Ok(())
}
