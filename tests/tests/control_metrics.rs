//! way2mail-control's `[metrics]` endpoint from the outside: `/healthz`, `/readyz`,
//! `/metrics` in the Prometheus text format, its counters moving by exactly what
//! the test did through the real `way2mail` CLI and raw request lines, the gauge of
//! the snapshot version across a restart, a 404 for anything else, a taken port
//! stopping the start, and `listen = ""` leaving no TCP listener at all.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use way2mail_tests::control::{totp_now, Control, Operator};
use way2mail_tests::http::samples;
use way2mail_tests::{http_get, metric_value, tcp_listeners};

const REQUESTS: &str = "way2mail_control_requests_total";
const LOGINS: &str = "way2mail_control_logins_total";
const AUDIT: &str = "way2mail_control_audit_entries_total";
const SNAPSHOT: &str = "way2mail_control_snapshot_version";
/// Control's first retention sweep (an audit entry of its own) comes a minute after
/// start; the exact count of audit entries is only asserted well before that.
const BEFORE_FIRST_SWEEP: Duration = Duration::from_secs(50);

fn scrape(address: SocketAddr) -> anyhow::Result<String> {
    let (status, body) = http_get(address, "/metrics")?;
    ensure!(status == 200, "GET /metrics: {status}\n{body}");
    Ok(body)
}

/// A sample's value, 0 when the exporter has not seen it yet.
fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    metric_value(text, name, labels).unwrap_or(0.0)
}

/// How much a sample moved between two scrapes.
fn delta(before: &str, after: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    value(after, name, labels) - value(before, name, labels)
}

/// Raw request lines on the control socket, each answered.
fn raw_lines(control: &Control, lines: &[&str]) -> anyhow::Result<()> {
    let stream = UnixStream::connect(control.socket()).context("connecting to control")?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    for line in lines {
        writer.write_all(format!("{line}\n").as_bytes())?;
        let mut answer = String::new();
        reader.read_line(&mut answer)?;
        ensure!(answer.contains("\"ok\":false"), "{line}: {answer}");
    }
    Ok(())
}

#[test]
fn health_and_counters() -> anyhow::Result<()> {
    let started = Instant::now();
    let mut control = Control::start()?;
    let address = control
        .metrics_addr()
        .context("the harness puts the metrics endpoint on a free port")?;
    let pid = control.pid().context("running")?;
    ensure!(
        tcp_listeners(pid)? == vec![address],
        "control listens on TCP exactly at {address}: {:?}",
        tcp_listeners(pid)?
    );

    assert_eq!(http_get(address, "/healthz")?, (200, "ok\n".to_owned()));
    assert_eq!(http_get(address, "/readyz")?, (200, "ready\n".to_owned()));
    let (status, body) = http_get(address, "/nothing-here")?;
    assert_eq!(status, 404, "{body}");

    // A fresh store: the fixed series are there at zero before anything happened.
    let fresh = scrape(address)?;
    for result in ["ok", "bad_password", "bad_totp", "other"] {
        assert_eq!(
            metric_value(&fresh, LOGINS, &[("result", result)]),
            Some(0.0),
            "{result}\n{fresh}"
        );
    }
    assert_eq!(metric_value(&fresh, AUDIT, &[]), Some(0.0), "{fresh}");
    assert_eq!(metric_value(&fresh, SNAPSHOT, &[]), Some(0.0), "{fresh}");
    for name in [REQUESTS, LOGINS, AUDIT, SNAPSHOT] {
        ensure!(
            fresh.contains(&format!("# HELP {name} ")),
            "{name} is not described:\n{fresh}"
        );
    }

    let admin = control.bootstrap_admin("metrics-admin")?;
    let before = scrape(address)?;

    // One good login (a code of the next step: the bootstrap login used this one),
    // the same code again (a replay: bad_totp), a wrong password (bad_password).
    let code = totp_now(&admin.totp_secret, 30)?;
    control.login_with_code(&admin, &code)?.ok()?;
    let replay = control.login_with_code(&admin, &code)?;
    ensure!(!replay.status.success(), "a replayed code logged in");
    let wrong = Operator {
        password: "not-the-password-at-all".into(),
        ..admin.clone()
    };
    let refused = control.login_with_code(&wrong, &totp_now(&admin.totp_secret, 0)?)?;
    ensure!(!refused.status.success(), "a wrong password logged in");
    // A tenant (a new snapshot version), and two lines that name no known op.
    control
        .run_as(
            &admin,
            &[
                "tenant",
                "add",
                "metrics-co",
                "--business-name",
                "Metrics Ltd",
                "--contact",
                "ops@metrics.example",
            ],
        )?
        .ok()?;
    raw_lines(
        &control,
        &[r#"{"v":1,"id":7}"#, r#"{"v":1,"id":8,"op":"no.such.op"}"#],
    )?;

    let after = scrape(address)?;
    let moved = |name: &str, labels: &[(&str, &str)]| delta(&before, &after, name, labels);
    assert_eq!(moved(REQUESTS, &[("op", "login"), ("outcome", "ok")]), 1.0);
    assert_eq!(
        moved(REQUESTS, &[("op", "login"), ("outcome", "login_failed")]),
        2.0
    );
    assert_eq!(
        moved(REQUESTS, &[("op", "tenant.add"), ("outcome", "ok")]),
        1.0
    );
    assert_eq!(
        moved(REQUESTS, &[("op", "-"), ("outcome", "bad_request")]),
        1.0
    );
    assert_eq!(
        moved(REQUESTS, &[("op", "-"), ("outcome", "unknown_op")]),
        1.0
    );
    assert_eq!(moved(LOGINS, &[("result", "ok")]), 1.0);
    assert_eq!(moved(LOGINS, &[("result", "bad_totp")]), 1.0);
    assert_eq!(moved(LOGINS, &[("result", "bad_password")]), 1.0);
    assert_eq!(moved(LOGINS, &[("result", "other")]), 0.0);
    // Every request that parsed is audited once, except `hello`: the three logins,
    // and what `tenant add` sent (tenant.add, then tenant.show to print the result).
    let audited_requests: f64 = samples(&after)
        .filter(|s| s.name == REQUESTS)
        .filter(|s| !matches!(s.labels.get("op").map(String::as_str), Some("-" | "hello")))
        .map(|s| {
            let labels: Vec<(&str, &str)> = s
                .labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            s.value - value(&before, REQUESTS, &labels)
        })
        .sum();
    assert!(audited_requests >= 4.0, "{after}");
    let audited = moved(AUDIT, &[]);
    if started.elapsed() < BEFORE_FIRST_SWEEP {
        assert_eq!(audited, audited_requests, "{after}");
    } else {
        // The retention sweep may have added its own.
        assert!(audited >= audited_requests, "{after}");
    }
    assert_eq!(value(&after, SNAPSHOT, &[]), 1.0, "{after}");
    // Labels are op names and outcomes, never the names the requests carried.
    for secret in ["metrics-admin", "metrics-co", "no.such.op"] {
        ensure!(!after.contains(secret), "{secret} in the metrics:\n{after}");
    }

    // A new process starts its counters afresh; the gauge is the store's version.
    control.restart()?;
    let restarted = scrape(address)?;
    assert_eq!(value(&restarted, SNAPSHOT, &[]), 1.0, "{restarted}");
    assert_eq!(value(&restarted, AUDIT, &[]), 0.0, "{restarted}");
    assert_eq!(http_get(address, "/readyz")?.0, 200);
    Ok(())
}

#[test]
fn empty_listen_serves_nothing() -> anyhow::Result<()> {
    let control = Control::start_with("[metrics]\nlisten = \"\"")?;
    assert_eq!(control.metrics_addr(), None);
    let pid = control.pid().context("running")?;
    let listeners = tcp_listeners(pid)?;
    ensure!(listeners.is_empty(), "control listens on {listeners:?}");
    ensure!(
        !control
            .log()
            .contains("metrics and health endpoint listening"),
        "{}",
        control.log()
    );
    // Still a working daemon.
    ensure!(control.cli(None, &["whoami"], None)?.status.success());
    Ok(())
}

#[test]
fn a_taken_port_stops_the_start() -> anyhow::Result<()> {
    let taken = TcpListener::bind("127.0.0.1:0")?;
    let address = taken.local_addr()?;
    let Err(e) = Control::start_with(&format!("[metrics]\nlisten = \"{address}\"")) else {
        anyhow::bail!("control started although {address} was taken");
    };
    let shown = format!("{e:#}");
    ensure!(
        shown.contains(&format!("metrics.listen: cannot listen on {address}")),
        "{shown}"
    );
    Ok(())
}
