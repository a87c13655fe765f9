//! Outbound delivery end to end: a message goes into the real daemon over SMTP, the
//! daemon resolves the recipient domain against a stub DNS server and delivers to sinks
//! on loopback, which accept, fail, reject, refuse or stall on purpose. What the sinks
//! received, the delivery log file, `spool list` and the bounces and delay notices
//! (parsed back with mail-parser; delay notices in `delivery/delay.rs`) are checked.
//!
//! Every MX host resolves to a 127.x address and `[delivery] port` is the sinks' port, so
//! real MX resolution lands on the sinks. Bounces go to `sender.test`, which a route
//! sends to a separate capture sink.

// A test crate's root resolves modules next to itself; these live in delivery/.
#[path = "delivery/delay.rs"]
mod delay;
#[path = "delivery/dsn.rs"]
mod dsn;
#[path = "delivery/rig.rs"]
mod rig;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use serde_json::Value;
use way2mail_tests::{
    for_each_backend, Backend, Behaviour, Daemon, Record, Sink, SinkOptions, StubDns,
};

use dsn::{dsn_for, Dsn};
use rig::{
    check_relayed_copy, config, lo, log_records, message, route, sink, stop_and_list,
    stop_expecting_empty_spool, submit, submit_many, submit_with, wait_finals, wait_log, SENDER,
    WAIT,
};

fn delivers_through_mx(backend: Backend) -> Result<()> {
    let sink = sink(Behaviour::Accept)?;
    let dns = StubDns::start(vec![
        Record::mx("dest.test", 10, "mx.dest.test"),
        Record::a("mx.dest.test", lo(1)),
    ])?;
    let mut d = Daemon::start(&config(backend, &dns, sink.port(), None))?;
    let body = message("basic");
    let id = submit(&d, &["user@dest.test", "other@dest.test"], &body)?;

    let got = sink.wait_for(1, WAIT)?;
    let m = &got[0];
    assert_eq!(m.mail_from, SENDER);
    assert_eq!(m.rcpt_to, ["user@dest.test", "other@dest.test"]);
    check_relayed_copy(&m.data, &body.replace("\r\n..", "\r\n."))?;
    let r = wait_log(&d, &id, "user@dest.test", "delivered")?;
    assert_eq!(r["next_hop"], "mx.dest.test", "{r}");
    assert_eq!(r["ip"], "127.0.0.1", "{r}");
    assert_eq!(r["attempt"], 1, "{r}");
    assert!(r["reply"].as_str().unwrap_or("").starts_with("250"), "{r}");
    wait_log(&d, &id, "other@dest.test", "delivered")?;
    assert_eq!(sink.messages().len(), 1, "delivered once, both recipients");
    stop_expecting_empty_spool(&mut d, 2)?;
    // The same records, kept in the spool after the message is gone, by message
    // and by recipient.
    let by_message = d.spool_log(&["--message", &id])?;
    assert_eq!(by_message.len(), 2, "{by_message:?}");
    let by_recipient = d.spool_log(&["--recipient", "OTHER@dest.test", "--hours", "1"])?;
    assert_eq!(by_recipient.len(), 1, "{by_recipient:?}");
    let record: Value = serde_json::from_str(&by_recipient[0])?;
    assert_eq!(record["outcome"], "delivered", "{record}");
    assert_eq!(record["message_id"], id.as_str(), "{record}");
    assert!(d.spool_log(&["--message", "not-an-id"]).is_err());
    Ok(())
}

/// Every outcome is one INFO line in the daemon's log, naming the message, the
/// recipient's domain, the attempt, the next hop and the reply; full addresses only
/// with `[log] recipients = true`.
fn outcomes_in_the_daemon_log(backend: Backend, recipients: bool) -> Result<()> {
    let capture = sink(Behaviour::Accept)?;
    let sink = sink(Behaviour::RejectRcpt(550, "5.1.1"))?;
    let dns = StubDns::start(vec![
        Record::mx("dest.test", 10, "mx.dest.test"),
        Record::a("mx.dest.test", lo(1)),
    ])?;
    let mut c = config(backend, &dns, sink.port(), Some(&capture));
    if recipients {
        c = c.set("log", "recipients", "true");
    }
    let mut d = Daemon::start(&c)?;
    let id = submit(
        &d,
        &["ok-one@dest.test", "gone@dest.test"],
        &message("logged"),
    )?;
    wait_log(&d, &id, "ok-one@dest.test", "delivered")?;
    wait_log(&d, &id, "gone@dest.test", "bounced")?;
    let lines = |word: &str| -> Vec<String> {
        d.stderr()
            .lines()
            .filter(|l| l.contains(" INFO ") && l.contains(&format!(": {word} ")))
            .filter(|l| l.contains(&format!("id={id}")))
            .map(str::to_owned)
            .collect()
    };
    let delivered = way2mail_tests::wait_for("the delivered line", WAIT, || {
        Some(lines("delivered")).filter(|l| !l.is_empty())
    })?;
    let bounced = way2mail_tests::wait_for("the bounced line", WAIT, || {
        Some(lines("bounced")).filter(|l| !l.is_empty())
    })?;
    assert_eq!(
        (delivered.len(), bounced.len()),
        (1, 1),
        "{delivered:?} {bounced:?}"
    );
    for line in delivered.iter().chain(&bounced) {
        for field in [
            "domain=\"dest.test\"",
            "attempt=1",
            "next_hop=\"mx.dest.test\"",
            "ip=127.0.0.1",
            "queue_ms=",
        ] {
            assert!(line.contains(field), "{field} missing: {line}");
        }
    }
    let (delivered, bounced) = (&delivered[0], &bounced[0]);
    let mut expected = vec![
        (delivered, "code=250 enhanced=2.0.0"),
        (bounced, "code=550 enhanced=5.1.1"),
        (bounced, "recipient rejected by sink"),
    ];
    let log = d.stderr();
    if recipients {
        expected.push((delivered, "recipient=\"ok-one@dest.test\""));
        expected.push((bounced, "recipient=\"gone@dest.test\""));
    }
    for (line, text) in expected {
        assert!(line.contains(text), "{text} missing: {line}");
    }
    if !recipients {
        for address in ["ok-one@dest.test", "gone@dest.test"] {
            let leaks: Vec<&str> = log.lines().filter(|l| l.contains(address)).collect();
            assert!(leaks.is_empty(), "{address} in the log: {leaks:?}");
        }
    }
    d.terminate()?;
    Ok(())
}

/// A 451, then a connection dropped after the data, then success: three attempts,
/// spaced by the back-off.
fn retries_then_delivers(backend: Backend) -> Result<()> {
    let sink = Sink::start(SinkOptions {
        script: vec![Behaviour::TempFail, Behaviour::Drop],
        ..SinkOptions::default()
    })?;
    let dns = StubDns::start(vec![
        Record::mx("dest.test", 10, "mx.dest.test"),
        Record::a("mx.dest.test", lo(1)),
    ])?;
    let mut d = Daemon::start(&config(backend, &dns, sink.port(), None))?;
    let id = submit(&d, &["user@dest.test"], &message("retry"))?;

    let got = sink.wait_for(1, WAIT)?;
    assert_eq!(got[0].rcpt_to, ["user@dest.test"]);
    wait_log(&d, &id, "user@dest.test", "delivered")?;
    // The file is a plaintext copy outside retention and erasure: said once at start.
    assert_eq!(
        d.stderr()
            .matches("holds recipient addresses in plaintext")
            .count(),
        1
    );
    let records: Vec<Value> = log_records(&d)
        .into_iter()
        .filter(|r| r["message_id"] == id.as_str())
        .collect();
    let steps: Vec<(&str, u64)> = records
        .iter()
        .map(|r| {
            (
                r["outcome"].as_str().unwrap_or(""),
                r["attempt"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        steps,
        [("deferred", 1), ("deferred", 2), ("delivered", 3)],
        "{records:#?}"
    );
    let reply = |i: usize| records[i]["reply"].as_str().unwrap_or("").to_string();
    assert!(reply(0).starts_with("451 4.3.0"), "{records:#?}");
    assert!(!reply(1).starts_with('2'), "{records:#?}");
    let time = |i: usize| records[i]["time_ms"].as_u64().unwrap_or(0);
    let gaps = (
        time(1).saturating_sub(time(0)),
        time(2).saturating_sub(time(1)),
    );
    assert!(
        gaps.0 >= 900 && gaps.1 >= 1900,
        "retried after {gaps:?} ms, not 1 s and 2 s"
    );
    let counts = sink.counts();
    assert_eq!((counts.tempfails, counts.drops), (1, 1));
    assert_eq!(sink.messages().len(), 1);
    stop_expecting_empty_spool(&mut d, 1)
}

fn bounces_with_dsn(backend: Backend) -> Result<()> {
    let dest = sink(Behaviour::RejectRcpt(550, "5.1.1"))?;
    let perm = Sink::start_at(
        SocketAddr::new(IpAddr::V4(lo(5)), dest.port()),
        SinkOptions {
            behaviour: Behaviour::PermFail,
            ..SinkOptions::default()
        },
    )?;
    let capture = sink(Behaviour::Accept)?;
    let dns = StubDns::start(vec![
        Record::mx("dest.test", 10, "mx.dest.test"),
        Record::a("mx.dest.test", lo(1)),
        Record::mx("perm.test", 10, "mx.perm.test"),
        Record::a("mx.perm.test", lo(5)),
    ])?;
    let mut d = Daemon::start(&config(backend, &dns, dest.port(), Some(&capture)))?;
    let mixed = submit(&d, &["ok@dest.test", "bad@dest.test"], &message("mixed"))?;
    submit(&d, &["user@perm.test"], &message("after-data"))?;
    let from = format!("<{SENDER}>");
    let hdrs = format!("{from} RET=HDRS");
    let full = format!("{from} RET=FULL");
    let bad = ["<bad@dest.test>"];
    submit_with(&d, &hdrs, &bad, &message("ret-hdrs"))?;
    submit_with(&d, &full, &bad, &message("ret-full"))?;
    let never = submit_with(
        &d,
        &from,
        &["<bad@dest.test> NOTIFY=NEVER"],
        &message("never"),
    )?;
    let null = submit_with(&d, "<>", &bad, &message("null-sender"))?;
    // NOTIFY=SUCCESS to a next hop that supports DSN: the hop got our NOTIFY and
    // reports the success itself (RFC 3461 §5.2.1); we send no notice.
    let success = submit_with(
        &d,
        &from,
        &["<ok@dest.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;ok@dest.test"],
        &message("success-to-dsn-hop"),
    )?;

    let got = dest.wait_for(1, WAIT)?;
    assert_eq!(got[0].rcpt_to, ["ok@dest.test"]);
    wait_log(&d, &mixed, "ok@dest.test", "delivered")?;
    let bounced = wait_log(&d, &mixed, "bad@dest.test", "bounced")?;
    assert!(bounced["reply"]
        .as_str()
        .unwrap_or("")
        .starts_with("550 5.1.1"));

    let dsns: Vec<Dsn> = capture
        .wait_for(4, WAIT)?
        .iter()
        .map(Dsn::parse)
        .collect::<Result<_>>()?;
    let p = dsn_for(&dsns, "Subject: after-data")?;
    p.check_failed("user@perm.test", Some("5.0.0"))?;
    let diag = p
        .field(Some("user@perm.test"), "Diagnostic-Code")
        .unwrap_or_default();
    assert!(diag.contains("554 5.0.0"), "{}", p.status);
    assert_eq!(perm.counts().permfails, 1);
    let m = dsn_for(&dsns, "Subject: mixed")?;
    m.check_failed("bad@dest.test", Some("5.1.1"))?;
    let diag = m
        .field(Some("bad@dest.test"), "Diagnostic-Code")
        .unwrap_or_default();
    assert!(
        diag.starts_with("smtp;") && diag.contains("550"),
        "{}",
        m.status
    );
    let remote = m
        .field(Some("bad@dest.test"), "Remote-MTA")
        .unwrap_or_default();
    assert_eq!(remote, "dns; mx.dest.test", "{}", m.status);
    assert!(
        m.field(Some("ok@dest.test"), "Action").is_none(),
        "the delivered recipient is not reported by default: {}",
        m.status
    );

    let h = dsn_for(&dsns, "Subject: ret-hdrs")?;
    h.check_failed("bad@dest.test", Some("5.1.1"))?;
    assert_eq!(h.returned.0, "text/rfc822-headers");
    assert!(
        !h.returned.1.contains("Hello, this is"),
        "RET=HDRS returned the body"
    );
    let f = dsn_for(&dsns, "Subject: ret-full")?;
    f.check_failed("bad@dest.test", Some("5.1.1"))?;
    assert_eq!(f.returned.0, "message/rfc822");
    assert!(
        f.returned.1.contains("Hello, this is ret-full."),
        "RET=FULL lost the body"
    );

    // A DSN is queued in the same spool batch that completes its message, so once both
    // are logged as bounced and the daemon is stopped, any DSN they caused is either at
    // the capture sink or still in the spool.
    wait_log(&d, &never, "bad@dest.test", "bounced")?;
    wait_log(&d, &null, "bad@dest.test", "bounced")?;
    wait_log(&d, &success, "ok@dest.test", "delivered")?;
    let passed_on = dest.wait_for(2, WAIT)?;
    assert!(
        passed_on.iter().any(|m| m
            .rcpt_params
            .iter()
            .any(|p| p.contains("NOTIFY=SUCCESS,FAILURE"))),
        "NOTIFY was not passed on to the DSN-capable hop"
    );
    // 2 + 5 bounced or delivered originals, 1 PermFail bounce and 4 notices delivered;
    // a notice that should not exist would make it 13 and is caught below.
    wait_finals(&d, 12)?;
    let left = stop_and_list(&mut d)?;
    assert!(
        left.is_empty(),
        "NOTIFY=NEVER or a null sender got a DSN: {left:#?}"
    );
    let all = capture.messages();
    assert_eq!(all.len(), 4, "NOTIFY=NEVER or a null sender got a DSN");
    Ok(())
}

/// Always 451 until the queue lifetime runs out; `check_status` also requires the
/// documented status 4.4.7 in the notice.
fn expires(backend: Backend, check_status: bool) -> Result<()> {
    let dest = sink(Behaviour::TempFail)?;
    let capture = sink(Behaviour::Accept)?;
    let dns = StubDns::start(vec![
        Record::mx("dest.test", 10, "mx.dest.test"),
        Record::a("mx.dest.test", lo(1)),
    ])?;
    let c = config(backend, &dns, dest.port(), Some(&capture)).set(
        "delivery",
        "max_queue_lifetime_secs",
        "2",
    );
    let mut d = Daemon::start(&c)?;
    let id = submit(&d, &["user@dest.test"], &message("expiry"))?;

    let dsn = Dsn::parse(&capture.wait_for(1, WAIT)?[0])?;
    dsn.check_failed("user@dest.test", check_status.then_some("4.4.7"))?;
    let diag = dsn
        .field(Some("user@dest.test"), "Diagnostic-Code")
        .unwrap_or_default();
    assert!(
        diag.contains("expired") && diag.contains("451 4.3.0"),
        "{}",
        dsn.status
    );
    let r = wait_log(&d, &id, "user@dest.test", "expired")?;
    assert!(
        r["reply"].as_str().unwrap_or("").contains("451 4.3.0"),
        "{r}"
    );
    assert!(dest.counts().tempfails >= 2, "{:?}", dest.counts());
    assert!(dest.messages().is_empty());
    stop_expecting_empty_spool(&mut d, 2)
}

fn null_mx_and_nxdomain_bounce(backend: Backend) -> Result<()> {
    let dest = sink(Behaviour::Accept)?;
    let capture = sink(Behaviour::Accept)?;
    let dns = StubDns::start(vec![Record::mx("nullmx.test", 0, ".")])?;
    let mut d = Daemon::start(&config(backend, &dns, dest.port(), Some(&capture)))?;
    let started = Instant::now();
    submit(&d, &["user@nullmx.test"], &message("null-mx"))?;
    submit(&d, &["user@nowhere.test"], &message("nxdomain"))?;

    let dsns: Vec<Dsn> = capture
        .wait_for(2, WAIT)?
        .iter()
        .map(Dsn::parse)
        .collect::<Result<_>>()?;
    assert!(started.elapsed() < Duration::from_secs(10), "not at once");
    dsn_for(&dsns, "Subject: null-mx")?.check_failed("user@nullmx.test", Some("5.1.10"))?;
    dsn_for(&dsns, "Subject: nxdomain")?.check_failed("user@nowhere.test", Some("5.1.2"))?;
    assert_eq!(
        dest.connections(),
        0,
        "a null MX or missing domain was connected to"
    );
    stop_expecting_empty_spool(&mut d, 4)
}

/// Sinks on other loopback addresses, all on one port, because `[delivery] port` is
/// global: the next MX is used after a refused connection and after a 421 greeting.
fn mx_fallback(backend: Backend) -> Result<()> {
    let good = Sink::start_on(IpAddr::V4(lo(3)), SinkOptions::default())?;
    let refusing = Sink::start_at(
        SocketAddr::new(IpAddr::V4(lo(4)), good.port()),
        SinkOptions {
            behaviour: Behaviour::RefuseGreeting(421),
            ..SinkOptions::default()
        },
    )?;
    let dns = StubDns::start(vec![
        Record::mx("down.test", 10, "a.down.test"),
        Record::mx("down.test", 20, "b.down.test"),
        Record::a("a.down.test", lo(2)),
        Record::a("b.down.test", lo(3)),
        Record::mx("busy.test", 10, "a.busy.test"),
        Record::mx("busy.test", 20, "b.busy.test"),
        Record::a("a.busy.test", lo(4)),
        Record::a("b.busy.test", lo(3)),
    ])?;
    let mut d = Daemon::start(&config(backend, &dns, good.port(), None))?;
    let down = submit(&d, &["user@down.test"], &message("down"))?;
    let busy = submit(&d, &["user@busy.test"], &message("busy"))?;

    let got = good.wait_for(2, WAIT)?;
    let mut rcpts: Vec<&str> = got.iter().map(|m| m.rcpt_to[0].as_str()).collect();
    rcpts.sort_unstable();
    assert_eq!(rcpts, ["user@busy.test", "user@down.test"]);
    let r = wait_log(&d, &down, "user@down.test", "delivered")?;
    assert_eq!(
        (r["next_hop"].as_str(), r["ip"].as_str()),
        (Some("b.down.test"), Some("127.0.0.3"))
    );
    assert_eq!(r["attempt"], 1, "fallback happens within one attempt: {r}");
    let r = wait_log(&d, &busy, "user@busy.test", "delivered")?;
    assert_eq!(r["next_hop"], "b.busy.test", "{r}");
    assert_eq!(r["attempt"], 1, "{r}");
    assert!(
        refusing.connections() >= 1,
        "the preferred MX was not tried first"
    );
    assert_eq!(refusing.counts().refused_greetings, refusing.connections());
    stop_expecting_empty_spool(&mut d, 2)
}

fn several_messages_per_connection(backend: Backend) -> Result<()> {
    // The first message stalls so that the others queue up behind it.
    let dest = Sink::start(SinkOptions {
        script: vec![Behaviour::Stall(Duration::from_millis(1500))],
        ..SinkOptions::default()
    })?;
    let dns = StubDns::start(vec![
        Record::mx("dest.test", 10, "mx.dest.test"),
        Record::a("mx.dest.test", lo(1)),
    ])?;
    let c = config(backend, &dns, dest.port(), None)
        .set("shaping", "max_connections", "1")
        .set("shaping", "max_messages_per_connection", "4");
    let mut d = Daemon::start(&c)?;
    submit_many(&d, 10, "batch")?;
    dest.wait_for(10, WAIT)?;
    let counts = dest.per_connection_counts();
    assert!(counts.len() < 10, "one connection per message: {counts:?}");
    assert!(
        counts.iter().all(|&n| n <= 4),
        "per-connection limit broken: {counts:?}"
    );
    assert!(
        counts.iter().any(|&n| n >= 3),
        "no connection was reused: {counts:?}"
    );
    assert_eq!(dest.peak_concurrent(), 1, "max_connections = 1");
    stop_expecting_empty_spool(&mut d, 10)
}

fn starttls(backend: Backend) -> Result<()> {
    let tls = Sink::start(SinkOptions {
        starttls: true,
        ..SinkOptions::default()
    })?;
    let plain = sink(Behaviour::Accept)?;
    let dns = StubDns::start(vec![
        Record::mx("dest.test", 10, "mx.dest.test"),
        Record::a("mx.dest.test", lo(1)),
        Record::a("tlshost.test", lo(1)),
    ])?;
    let c = config(backend, &dns, tls.port(), None)
        .raw(&route(
            "strict.test",
            &format!("tlshost.test:{}", tls.port()),
            "required",
        ))
        .raw(&route(
            "notls.test",
            &format!("tlshost.test:{}", plain.port()),
            "required",
        ));
    let mut d = Daemon::start(&c)?;
    let opportunistic = submit(&d, &["user@dest.test"], &message("opportunistic"))?;
    let strict = submit(&d, &["user@strict.test"], &message("strict"))?;
    let notls = submit(&d, &["user@notls.test"], &message("notls"))?;

    let got = tls.wait_for(1, WAIT)?;
    assert!(
        got[0].tls,
        "opportunistic delivery did not use the offered STARTTLS"
    );
    let r = wait_log(&d, &opportunistic, "user@dest.test", "delivered")?;
    assert!(r["tls"].as_str().is_some_and(|t| t.contains("TLS")), "{r}");

    let r = wait_log(&d, &strict, "user@strict.test", "deferred")?;
    let reply = r["reply"].as_str().unwrap_or("").to_ascii_lowercase();
    assert!(reply.contains("certificate"), "{r}");
    let r = wait_log(&d, &notls, "user@notls.test", "deferred")?;
    let reply = r["reply"].as_str().unwrap_or("").to_ascii_lowercase();
    assert!(reply.contains("tls"), "{r}");
    assert_eq!(
        tls.messages().len(),
        1,
        "required TLS delivered without a valid cert"
    );
    assert!(
        plain.messages().is_empty(),
        "required TLS delivered in plaintext"
    );
    assert!(plain.connections() >= 1);
    // Both stay queued, pending, with the TLS failure as their last error.
    let entries = stop_and_list(&mut d)?;
    ensure!(entries.len() == 2, "{entries:#?}");
    for (id, rcpt) in [(&strict, "user@strict.test"), (&notls, "user@notls.test")] {
        let entry = entries.iter().find(|e| e.id == *id).context("not queued")?;
        let line = entry.details.first().context("no recipient line")?;
        assert!(
            line.starts_with(&format!("{rcpt} pending attempts=")),
            "{line}"
        );
        assert!(line.to_ascii_lowercase().contains("tls"), "{line}");
    }
    Ok(())
}

fn shaping_limits_connections(backend: Backend) -> Result<()> {
    let dest = sink(Behaviour::Stall(Duration::from_millis(150)))?;
    let dns = StubDns::start(vec![
        Record::mx("dest.test", 10, "mx.dest.test"),
        Record::a("mx.dest.test", lo(1)),
    ])?;
    let c = config(backend, &dns, dest.port(), None).set("shaping", "max_connections", "2");
    let mut d = Daemon::start(&c)?;
    submit_many(&d, 24, "conn")?;
    dest.wait_for(24, WAIT)?;
    let peak = dest.peak_concurrent();
    assert!(
        (1..=2).contains(&peak),
        "{peak} parallel connections, limit 2"
    );
    stop_expecting_empty_spool(&mut d, 24)
}

/// Fixed one-second windows of `limit` allow at most `2 * limit` in any second.
fn check_rate(at: &mut [Instant], limit: usize) {
    at.sort_unstable();
    for pair in at.windows(2 * limit + 1) {
        let span = pair[2 * limit] - pair[0];
        assert!(
            span >= Duration::from_millis(900),
            "{} messages within {span:?}",
            2 * limit + 1
        );
    }
}

/// 5 messages per second while a backlog waits: the first message stalls on the only
/// connection until all 15 are queued; the other 14 then need three windows.
fn shaping_limits_rate_with_backlog(backend: Backend) -> Result<()> {
    let dest = Sink::start(SinkOptions {
        script: vec![Behaviour::Stall(Duration::from_millis(1500))],
        ..SinkOptions::default()
    })?;
    let dns = StubDns::start(vec![
        Record::mx("dest.test", 10, "mx.dest.test"),
        Record::a("mx.dest.test", lo(1)),
    ])?;
    let c = config(backend, &dns, dest.port(), None)
        .set("shaping", "max_connections", "1")
        .set("shaping", "max_messages_per_second", "5");
    let mut d = Daemon::start(&c)?;
    submit_many(&d, 15, "backlog")?;
    let got = dest.wait_for(15, WAIT)?;
    let mut at: Vec<Instant> = got.iter().skip(1).map(|m| m.at).collect();
    let span = at[at.len() - 1] - at[0];
    assert!(
        span >= Duration::from_millis(1900),
        "14 messages at 5/s within {span:?}"
    );
    check_rate(&mut at, 5);
    stop_expecting_empty_spool(&mut d, 15)
}

/// 5 messages per second when they arrive one by one, faster than that.
fn shaping_limits_rate_of_a_trickle(backend: Backend) -> Result<()> {
    let dest = sink(Behaviour::Accept)?;
    let dns = StubDns::start(vec![
        Record::mx("dest.test", 10, "mx.dest.test"),
        Record::a("mx.dest.test", lo(1)),
    ])?;
    let c = config(backend, &dns, dest.port(), None).set("shaping", "max_messages_per_second", "5");
    let mut d = Daemon::start(&c)?;
    let started = Instant::now();
    submit_many(&d, 15, "trickle")?;
    let got = dest.wait_for(15, WAIT)?;
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_secs(2),
        "15 messages at 5/s took {elapsed:?}"
    );
    check_rate(&mut got.iter().map(|m| m.at).collect::<Vec<_>>(), 5);
    stop_expecting_empty_spool(&mut d, 15)
}

fn spool_list_shows_deferred_recipient(backend: Backend) -> Result<()> {
    let dest = sink(Behaviour::TempFail)?;
    let dns = StubDns::start(vec![
        Record::mx("dest.test", 10, "mx.dest.test"),
        Record::a("mx.dest.test", lo(1)),
    ])?;
    let c = config(backend, &dns, dest.port(), None)
        .set("delivery", "retry_initial_secs", "600")
        .set("delivery", "retry_max_secs", "600");
    let mut d = Daemon::start(&c)?;
    let id = submit(&d, &["user@dest.test", "ok@dest.test"], &message("listed"))?;
    wait_log(&d, &id, "user@dest.test", "deferred")?;
    wait_log(&d, &id, "ok@dest.test", "deferred")?;
    let entries = stop_and_list(&mut d)?;
    let entry = entries
        .iter()
        .find(|e| e.id == id)
        .context("message not listed")?;
    assert_eq!(entry.details.len(), 2, "{:?}", entry.details);
    for (line, rcpt) in entry.details.iter().zip(["user@dest.test", "ok@dest.test"]) {
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(words[..3], [rcpt, "pending", "attempts=1"], "{line}");
        let next = words[3].strip_prefix("next=in-").unwrap_or("");
        assert!(["9m", "10m"].contains(&next), "{line}");
        assert!(
            line.ends_with("last=\"451 4.3.0 temporary failure (sink)\""),
            "{line}"
        );
    }
    Ok(())
}

/// A destination that answers a burst of 4xx is throttled, the log says so, and its
/// mail still goes out once it accepts again.
fn backs_off_on_bursts_of_temporary_failures(backend: Backend) -> Result<()> {
    let sink = rig::sink(Behaviour::TempFail)?;
    let dns = StubDns::start(vec![
        Record::mx("dest.test", 10, "mx.dest.test"),
        Record::a("mx.dest.test", lo(1)),
    ])?;
    let config = config(backend, &dns, sink.port(), None)
        .set("shaping", "backoff_after_failures", "3")
        // One connection at a time: the failures arrive one by one, and the streak
        // must survive the moments when the destination has nothing in flight.
        .set("shaping", "max_connections", "1");
    let mut d = Daemon::start(&config)?;
    submit_many(&d, 6, "burst")?;
    way2mail_tests::wait_for("a back-off line in the log", WAIT, || {
        let log = d.stderr();
        log.lines()
            .any(|l| l.contains("backing off") && l.contains("dest.test"))
            .then_some(())
    })?;
    sink.set_behaviour(Behaviour::Accept);
    sink.wait_for(6, WAIT)?;
    stop_expecting_empty_spool(&mut d, 6)
}

for_each_backend!(delivers_through_mx, mx_fallback);

mod one_backend {
    use super::*;

    #[test]
    fn outcomes_in_the_daemon_log_name_the_domain_only() -> Result<()> {
        super::outcomes_in_the_daemon_log(Backend::Epoll, false)
    }

    #[test]
    fn outcomes_in_the_daemon_log_with_recipients() -> Result<()> {
        super::outcomes_in_the_daemon_log(Backend::IoUring, true)
    }

    #[test]
    fn retries_then_delivers() -> Result<()> {
        super::retries_then_delivers(Backend::Epoll)
    }

    #[test]
    fn backs_off_on_bursts_of_temporary_failures() -> Result<()> {
        super::backs_off_on_bursts_of_temporary_failures(Backend::IoUring)
    }

    #[test]
    fn bounces_with_dsn() -> Result<()> {
        super::bounces_with_dsn(Backend::IoUring)
    }

    #[test]
    fn expires() -> Result<()> {
        super::expires(Backend::Epoll, false)
    }

    #[test]
    fn expiry_notice_status_is_4_4_7() -> Result<()> {
        super::expires(Backend::IoUring, true)
    }

    #[test]
    fn null_mx_and_nxdomain_bounce() -> Result<()> {
        super::null_mx_and_nxdomain_bounce(Backend::IoUring)
    }

    #[test]
    fn several_messages_per_connection() -> Result<()> {
        super::several_messages_per_connection(Backend::Epoll)
    }

    #[test]
    fn starttls() -> Result<()> {
        super::starttls(Backend::IoUring)
    }

    #[test]
    fn shaping_limits_connections() -> Result<()> {
        super::shaping_limits_connections(Backend::Epoll)
    }

    #[test]
    fn shaping_limits_rate_with_backlog() -> Result<()> {
        super::shaping_limits_rate_with_backlog(Backend::IoUring)
    }

    #[test]
    fn shaping_limits_rate_of_a_trickle() -> Result<()> {
        super::shaping_limits_rate_of_a_trickle(Backend::Epoll)
    }

    #[test]
    fn spool_list_shows_deferred_recipient() -> Result<()> {
        super::spool_list_shows_deferred_recipient(Backend::Epoll)
    }

    #[test]
    fn delay_notices() -> Result<()> {
        super::delay::delay_notices(Backend::Epoll)
    }
}
