//! Python's smtplib (a second, independent client implementation) against the daemon:
//! EHLO features before and after STARTTLS, a three-recipient message with DSN
//! parameters, an SMTPUTF8/8BITMIME message, SMTP_SSL on the implicit-TLS listener, and
//! the open-relay rules for a client outside `trusted_networks`. The dialogue lives in
//! tests/python/smtplib_check.py; this file starts daemons, runs it and checks the spool.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, ensure};
use way2mail_tests::{for_each_backend, run_bounded, Backend, Daemon, TestConfig};

for_each_backend!(smtplib_starttls_and_smtps, smtplib_relay_rules);

fn smtplib_starttls_and_smtps(backend: Backend) -> anyhow::Result<()> {
    let mut daemon = Daemon::start(&TestConfig::new(backend))?;
    let ports = daemon.ports();
    let cert = daemon.cert_path();
    let mut queued = python(
        &["starttls-send", "--port", &ports.submission.to_string()],
        &cert,
    )?;
    ensure!(queued.len() == 2, "STARTTLS run queued {queued:?}");
    let smtps = python(
        &["smtps-send", "--port", &ports.submissions.to_string()],
        &cert,
    )?;
    ensure!(smtps.len() == 1, "SMTP_SSL run queued {smtps:?}");
    queued.extend(smtps);

    daemon.terminate()?;
    let entries = daemon.spool_entries()?;
    let listed: BTreeSet<&str> = entries.iter().map(|e| e.id.as_str()).collect();
    let expected: BTreeSet<&str> = queued.iter().map(String::as_str).collect();
    ensure!(
        listed == expected,
        "spool lists {listed:?}, smtplib got {expected:?}"
    );
    let three = entries.iter().filter(|e| e.recipients == 3).count();
    ensure!(
        three == 1,
        "expected one message with 3 recipients: {entries:?}"
    );
    Ok(())
}

/// 127.0.0.1 made untrusted: on mx, mail for `example.com` is accepted and anything
/// else is `550 5.7.1`; on submission, MAIL without AUTH is `530 5.7.0`.
fn smtplib_relay_rules(backend: Backend) -> anyhow::Result<()> {
    let config = TestConfig::new(backend)
        .set("relay", "trusted_networks", r#"["10.0.0.0/8"]"#)
        .set("relay", "domains", r#"["example.com"]"#)
        .set("inbound", "checks", "false");
    let mut daemon = Daemon::start(&config)?;
    let ports = daemon.ports();
    let queued = python(
        &[
            "relay-check",
            "--port",
            &ports.mx.to_string(),
            "--submission",
            &ports.submission.to_string(),
        ],
        &daemon.cert_path(),
    )?;
    ensure!(queued.len() == 1, "relay check queued {queued:?}");
    daemon.terminate()?;
    let ids: Vec<String> = daemon.spool_entries()?.into_iter().map(|e| e.id).collect();
    ensure!(ids == queued, "spool lists {ids:?}, smtplib got {queued:?}");
    Ok(())
}

/// Runs the script with `args` and `--cert`; returns the ids it saw queued.
fn python(args: &[&str], cert: &Path) -> anyhow::Result<Vec<String>> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/smtplib_check.py");
    let mut command = Command::new("python3");
    command
        .arg(&script)
        .args(args)
        .arg("--cert")
        .arg(cert)
        .env("PYTHONDONTWRITEBYTECODE", "1");
    let output = run_bounded(&mut command, Duration::from_secs(90))
        .map_err(|e| e.context("running python3 (is python3 installed?)"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "smtplib_check.py {args:?} failed ({}):\n{stdout}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(stdout
        .lines()
        .filter_map(|line| line.strip_prefix("QUEUED "))
        .map(str::to_string)
        .collect())
}
