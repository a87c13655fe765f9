//! Reloading the configuration with SIGHUP, seen from outside: a route moved to a
//! running sink delivers the mail it held once an operator retries it; a broken file (bad TOML, an invalid
//! value, a certificate that is not there) leaves the daemon serving on its old
//! configuration with one ERROR line and the failed counter moved; a certificate
//! renewed on disk is served to new sessions while a session opened before keeps
//! the old one; a changed listener address is named in one WARN line while the live
//! keys of the same file apply; the log level follows the file.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use way2mail_tests::{
    client_config, for_each_backend, free_port, http_get, metric_value, queued_id, wait_for,
    Backend, Behaviour, ClosedPort, Daemon, Signal, Sink, SinkOptions, SmtpClient, TestConfig,
};
use way2mail_wire::mta_admin::{AdminOp, AdminResult};
use way2mail_wire::queue::{QueueAction, QueueSelection};

for_each_backend!(
    a_moved_route_delivers_the_held_message,
    a_broken_file_keeps_the_running_configuration,
    a_renewed_certificate_reaches_new_sessions_only,
    a_changed_listener_is_named_and_the_rest_applies,
    the_log_level_follows_a_reload,
);

/// Anything the daemon should do within a few seconds.
const WAIT: Duration = Duration::from_secs(30);
const RELOADS: &str = "way2mail_config_reloads_total";

/// Writes `config` over the daemon's file and sends SIGHUP.
fn reload(d: &Daemon, config: &TestConfig) -> Result<()> {
    config.write(d.dir(), &d.ports())?;
    d.signal(Signal::HUP)
}

/// The daemon's log lines at `level` (`INFO`, `WARN`, ...) containing `text`.
fn lines(d: &Daemon, level: &str, text: &str) -> Vec<String> {
    d.stderr()
        .lines()
        .filter(|l| l.contains(&format!(" {level} ")) && l.contains(text))
        .map(str::to_owned)
        .collect()
}

/// Waits until there are `n` such lines; returns the last.
fn wait_lines(d: &Daemon, level: &str, text: &str, n: usize) -> Result<String> {
    wait_for(&format!("{n} {level} line(s) with {text:?}"), WAIT, || {
        let found = lines(d, level, text);
        (found.len() >= n).then(|| found.last().cloned()).flatten()
    })
    .with_context(|| d.stderr())
}

fn reloads(d: &Daemon, result: &str) -> Result<f64> {
    let (status, text) = http_get(d.metrics_addr(), "/metrics")?;
    ensure!(status == 200, "/metrics answered {status}");
    Ok(metric_value(&text, RELOADS, &[("result", result)]).unwrap_or(0.0))
}

/// One message on the mx listener from 127.0.0.1 (a trusted network: relayed).
fn submit(d: &Daemon, to: &str, subject: &str) -> Result<String> {
    let (mut c, _) = SmtpClient::connect(d.ports().mx)?;
    c.expect("EHLO client.test", 250)?;
    c.expect("MAIL FROM:<alice@sender.test>", 250)?;
    c.expect(&format!("RCPT TO:<{to}>"), 250)?;
    c.expect("DATA", 354)?;
    c.send(format!("Subject: {subject}\r\n\r\n{subject}\r\n").as_bytes())?;
    let id = queued_id(&c.command(".")?)?;
    c.expect("QUIT", 221)?;
    Ok(id)
}

fn a_moved_route_delivers_the_held_message(backend: Backend) -> Result<()> {
    let sink = Sink::start(SinkOptions {
        behaviour: Behaviour::Accept,
        ..SinkOptions::default()
    })?;
    let closed_port = ClosedPort::new()?;
    let closed = closed_port.port;
    // Retried after an hour: only `queue retry` brings the message out sooner.
    let base = TestConfig::quick_delivery(backend)
        .set("delivery", "retry_initial_secs", "3600")
        .set("delivery", "retry_max_secs", "3600");
    let held = base.clone().raw(&format!(
        "[[route]]\ndomain = \"dest.test\"\nhost = \"[127.0.0.1]:{closed}\"\ntls = \"none\"\n"
    ));
    let d = Daemon::start(&held)?;
    let id = submit(&d, "user@dest.test", "held")?;
    wait_for("the first attempt deferred", WAIT, || {
        let log = std::fs::read_to_string(d.dir().join("delivery.log")).unwrap_or_default();
        log.lines()
            .any(|l| l.contains(&id) && l.contains("\"deferred\""))
            .then_some(())
    })?;
    ensure!(sink.messages().is_empty(), "nothing reaches the sink yet");

    reload(&d, &base.raw(&sink.route("dest.test")))?;
    let line = wait_lines(&d, "INFO", "configuration reloaded", 1)?;
    ensure!(line.contains("route"), "{line}");
    // The operator's retry (what `way2mail queue retry ID` passes on) makes it due.
    let retry = AdminOp::QueueChange {
        action: QueueAction::Retry,
        selection: QueueSelection {
            ids: vec![id.clone()],
            ..QueueSelection::default()
        },
        dry_run: false,
    };
    let AdminResult::QueueChanged(report) = d.admin()?.call(retry)? else {
        anyhow::bail!("queue.change");
    };
    ensure!(report.changed == [id.clone()], "{report:?}");
    let got = sink.wait_for(1, WAIT)?;
    ensure!(got[0].rcpt_to == ["user@dest.test"], "{:?}", got[0].rcpt_to);
    // New mail goes to the sink at its first attempt.
    submit(&d, "other@dest.test", "after")?;
    let got = sink.wait_for(2, WAIT)?;
    ensure!(
        got[1].rcpt_to == ["other@dest.test"],
        "{:?}",
        got[1].rcpt_to
    );
    ensure!(reloads(&d, "ok")? == 1.0, "one successful reload counted");
    // The admin socket lists the routes in force.
    let AdminResult::Routes { routes } = d.admin()?.call(AdminOp::Routes)? else {
        anyhow::bail!("routes");
    };
    let sink_host = format!("[127.0.0.1]:{}", sink.port());
    ensure!(
        routes.len() == 1 && routes[0].hosts == [sink_host],
        "{routes:?}"
    );
    Ok(())
}

fn a_broken_file_keeps_the_running_configuration(backend: Backend) -> Result<()> {
    let config = TestConfig::new(backend);
    let mut d = Daemon::start(&config)?;
    let file = d.config_path().context("a config file")?.to_path_buf();
    let failed = "configuration reload failed";
    let broken = [
        ("bad TOML", None, "expected"),
        (
            "an invalid value",
            Some(config.clone().set("limits", "max_connections", "0")),
            "limits.max_connections",
        ),
        (
            "a missing certificate",
            Some(
                config
                    .clone()
                    .set("tls", "cert", "\"/nonexistent/cert.pem\""),
            ),
            "/nonexistent/cert.pem",
        ),
    ];
    for (n, (what, bad, why)) in broken.into_iter().enumerate() {
        match bad {
            Some(bad) => bad.write(d.dir(), &d.ports())?,
            None => {
                std::fs::write(&file, "[limits\nmax_connections = = 3\n")?;
                file.clone()
            }
        };
        d.signal(Signal::HUP)?;
        let line = wait_lines(&d, "ERROR", failed, n + 1)?;
        ensure!(line.contains(why), "{what}: the line says why: {line}");
        ensure!(
            lines(&d, "ERROR", "").len() == n + 1,
            "{what}: one ERROR line per failed reload:\n{}",
            d.stderr()
        );
        d.assert_running()?;
        // Still serving, on the old certificate.
        let mut c = d.submission_tls()?;
        c.expect("QUIT", 221)?;
        let counted = wait_for("the failed counter", WAIT, || {
            reloads(&d, "failed").ok().filter(|&v| v == (n + 1) as f64)
        });
        ensure!(
            counted.is_ok(),
            "{what}: reloads_total{{failed}} is not {}",
            n + 1
        );
    }
    ensure!(lines(&d, "INFO", "configuration reloaded").is_empty());
    ensure!(reloads(&d, "ok")? == 0.0);
    // A good file again: reloaded.
    reload(&d, &config)?;
    let line = wait_lines(&d, "INFO", "configuration reloaded", 1)?;
    ensure!(
        line.contains("nothing"),
        "the same file changes nothing: {line}"
    );
    Ok(())
}

/// A self-signed certificate for localhost and 127.0.0.1 expiring at the start of
/// `year`: (certificate PEM, key PEM, certificate DER).
fn certificate(year: i32) -> Result<(String, String, Vec<u8>)> {
    let mut params = rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])?;
    params.not_after = rcgen::date_time_ymd(year, 1, 1);
    let key = rcgen::KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem(), cert.der().to_vec()))
}

fn a_renewed_certificate_reaches_new_sessions_only(backend: Backend) -> Result<()> {
    let config = TestConfig::new(backend);
    let d = Daemon::start(&config)?;
    let old_pem = std::fs::read(d.cert_path())?;
    let old_der = CertificateDer::from_pem_slice(&old_pem)?.to_vec();
    let old = client_config(&old_pem)?;
    // Opened before the renewal; STARTTLS comes after it.
    let (mut before, _) = SmtpClient::connect(d.ports().submission)?;
    before.expect("EHLO client.test", 250)?;

    let (cert, key, der) = certificate(2040)?;
    std::fs::write(d.dir().join("tls/key.pem"), key)?;
    std::fs::write(d.cert_path(), &cert)?;
    d.signal(Signal::HUP)?;
    let line = wait_lines(&d, "INFO", "configuration reloaded", 1)?;
    ensure!(line.contains("tls"), "the renewal is named: {line}");

    let new = client_config(cert.as_bytes())?;
    let (mut after, _) = SmtpClient::connect(d.ports().submission)?;
    after.expect("EHLO client.test", 250)?;
    let after = after.starttls(new.clone())?;
    ensure!(
        after.peer_certificate() == Some(der.clone()),
        "STARTTLS sees the new certificate"
    );
    let (implicit, _) = SmtpClient::connect_tls(d.ports().submissions, new)?;
    ensure!(
        implicit.peer_certificate() == Some(der),
        "implicit TLS sees it too"
    );
    // The earlier session keeps the certificate it started with.
    let mut before = before.starttls(old)?;
    ensure!(
        before.peer_certificate() == Some(old_der),
        "the old certificate"
    );
    before.expect("EHLO client.test", 250)?;
    before.expect("QUIT", 221)?;
    // The expiry gauge follows the new certificate (2040-01-01T00:00:00Z).
    let (_, text) = http_get(d.metrics_addr(), "/metrics")?;
    let expiry = metric_value(
        &text,
        "way2mail_tls_certificate_expiry_timestamp_seconds",
        &[],
    );
    ensure!(expiry == Some(2_208_988_800.0), "expiry gauge {expiry:?}");
    Ok(())
}

fn a_changed_listener_is_named_and_the_rest_applies(backend: Backend) -> Result<()> {
    let config = TestConfig::new(backend);
    let d = Daemon::start(&config)?;
    let (mut before, _) = SmtpClient::connect(d.ports().mx)?;
    let mut moved = d.ports();
    moved.mx = free_port()?;
    config
        .clone()
        .set("limits", "max_message_size", "1000000")
        .write(d.dir(), &moved)?;
    d.signal(Signal::HUP)?;
    let warn = wait_lines(&d, "WARN", "only a restart applies them", 1)?;
    ensure!(warn.contains("listener"), "{warn}");
    let info = wait_lines(&d, "INFO", "configuration reloaded", 1)?;
    ensure!(
        info.contains("limits") && !info.contains("listener"),
        "{info}"
    );
    // The old address still serves, the new one is not bound.
    let (mut after, greeting) = SmtpClient::connect(d.ports().mx)?;
    ensure!(greeting.code == 220, "{greeting}");
    ensure!(
        SmtpClient::connect(moved.mx).is_err(),
        "nothing listens on the new address before a restart"
    );
    // The new limit reaches new sessions; the one opened before keeps its own.
    let size = |c: &mut SmtpClient| -> Result<String> {
        let ehlo = c.expect("EHLO client.test", 250)?;
        let line = ehlo.lines.iter().find(|l| l.starts_with("SIZE "));
        Ok(line.cloned().unwrap_or_default())
    };
    ensure!(size(&mut after)? == "SIZE 1000000");
    ensure!(size(&mut before)? == "SIZE 26214400");
    ensure!(lines(&d, "WARN", "only a restart").len() == 1);
    Ok(())
}

fn the_log_level_follows_a_reload(backend: Backend) -> Result<()> {
    let config = TestConfig::new(backend);
    let d = Daemon::start(&config)?;
    let failed_handshake = |d: &Daemon| -> Result<()> {
        let mut tcp = SmtpClient::tcp(d.ports().submissions)?;
        std::io::Write::write_all(&mut tcp, b"EHLO this is not TLS\r\n\r\n")?;
        let mut rest = Vec::new();
        let _ = std::io::Read::read_to_end(&mut tcp, &mut rest);
        Ok(())
    };
    failed_handshake(&d)?;
    wait_lines(&d, "INFO", "tls handshake failed", 1)?;
    ensure!(lines(&d, "DEBUG", "TLS handshake failed").is_empty());
    reload(&d, &config.clone().set("log", "level", "\"debug\""))?;
    wait_lines(&d, "INFO", "configuration reloaded", 1)?;
    failed_handshake(&d)?;
    wait_lines(&d, "DEBUG", "TLS handshake failed", 1)?;
    Ok(())
}
