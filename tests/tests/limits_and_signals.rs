//! Resource limits and process lifecycle seen from outside: the idle timeout, the per-IP
//! connection limit (counted across all worker threads), half-closed sockets releasing
//! their slot, and SIGTERM/SIGINT as a graceful stop with exit status 0 that still lets a
//! message in flight finish; a second daemon asked for an address the first serves
//! exits at once, naming it.

use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use way2mail_tests::{
    admitted, daemon_binary, for_each_backend, free_port, queued_id, run_bounded, Backend, Daemon,
    Ports, Signal, SmtpClient, TestConfig,
};

for_each_backend!(
    idle_client_times_out,
    per_ip_connection_limit,
    half_closed_sockets_are_released,
    sigterm_is_graceful,
    sigint_exits_zero,
    a_second_daemon_on_a_served_address_fails,
);

fn idle_client_times_out(backend: Backend) -> anyhow::Result<()> {
    let config = TestConfig::new(backend).set("timeouts", "command_secs", "2");
    let daemon = Daemon::start(&config)?;
    let (mut client, greeting) = SmtpClient::connect(daemon.ports().mx)?;
    ensure!(greeting.code == 220, "greeting {greeting}");
    let started = Instant::now();
    let reply = client
        .read_reply()
        .context("waiting for the idle timeout")?;
    let waited = started.elapsed();
    ensure!(
        reply.code == 421 && reply.enhanced() == Some("4.4.2"),
        "idle client got {reply}"
    );
    ensure!(
        waited >= Duration::from_millis(1500) && waited < Duration::from_secs(10),
        "timeout after {waited:?} with command_secs = 2"
    );
    client
        .read_to_end()
        .context("connection should close after 421")?;
    Ok(())
}

fn per_ip_connection_limit(backend: Backend) -> anyhow::Result<()> {
    let config = TestConfig::new(backend).set("limits", "max_connections_per_ip", "2");
    let daemon = Daemon::start(&config)?;
    let ports = daemon.ports();
    let first = admitted(ports.mx)?;
    // The limit spans listeners as well as worker threads.
    let _second = admitted(ports.submission)?;
    for port in [ports.mx, ports.submission, ports.mx] {
        let (mut third, greeting) = SmtpClient::connect(port)?;
        ensure!(
            greeting.code == 421 && greeting.enhanced() == Some("4.3.2"),
            "third connection from one IP got {greeting}"
        );
        third
            .read_to_end()
            .context("refused connection should close")?;
    }
    drop(first);
    admitted(ports.mx).context("a slot should free up when a client leaves")?;
    Ok(())
}

fn half_closed_sockets_are_released(backend: Backend) -> anyhow::Result<()> {
    let config = TestConfig::new(backend).set("limits", "max_connections_per_ip", "2");
    let daemon = Daemon::start(&config)?;
    let port = daemon.ports().mx;
    for round in 0..4 {
        let mut client = admitted(port)?;
        client.send(b"EHLO half.client.test\r\nNOOP\r\n")?;
        client.shutdown_write()?;
        let started = Instant::now();
        let rest = client
            .read_to_end()
            .with_context(|| format!("round {round}: daemon kept a half-closed socket open"))?;
        ensure!(
            started.elapsed() < Duration::from_secs(10),
            "round {round}: close took {:?}",
            started.elapsed()
        );
        let text = String::from_utf8_lossy(&rest);
        ensure!(
            text.lines().any(|line| line.starts_with("250 ")),
            "round {round}: commands sent before the half-close went unanswered: {text:?}"
        );
    }
    // Four connections came and went through a limit of two: their slots were released.
    let _a = admitted(port)?;
    let _b = admitted(port)?;
    Ok(())
}

/// SIGTERM with one idle client and one client in the middle of DATA: the message in
/// flight is still queued within the grace period, the process exits 0 and the message
/// is in the spool.
fn sigterm_is_graceful(backend: Backend) -> anyhow::Result<()> {
    let config = TestConfig::new(backend).set("timeouts", "shutdown_grace_secs", "5");
    let mut daemon = Daemon::start(&config)?;
    let port = daemon.ports().mx;
    let (mut idle, _) = SmtpClient::connect(port)?;
    idle.expect("EHLO idle.client.test", 250)?;
    let (mut busy, _) = SmtpClient::connect(port)?;
    busy.expect("EHLO busy.client.test", 250)?;
    busy.expect("MAIL FROM:<busy@example.org>", 250)?;
    busy.expect("RCPT TO:<rcpt@example.net>", 250)?;
    busy.expect("DATA", 354)?;
    busy.send(b"Subject: in flight\r\n\r\nfirst half\r\n")?;

    daemon.signal(Signal::TERM)?;
    thread::sleep(Duration::from_millis(300));
    busy.send(b"second half\r\n.\r\n")?;
    let reply = busy.read_reply().context("end of DATA during shutdown")?;
    let id = queued_id(&reply).context("message in flight at SIGTERM")?;
    // The idle session is told (421) or just closed; either way it must end.
    let _ = idle.read_to_end();

    let status = daemon.wait_exit()?;
    if !status.success() {
        bail!("exit status {status} after SIGTERM");
    }
    let ids: Vec<String> = daemon.spool_entries()?.into_iter().map(|e| e.id).collect();
    ensure!(ids == [id.clone()], "spool lists {ids:?}, expected [{id}]");
    Ok(())
}

fn sigint_exits_zero(backend: Backend) -> anyhow::Result<()> {
    let mut daemon = Daemon::start(&TestConfig::new(backend))?;
    let status = daemon.stop_with(Signal::INT)?;
    ensure!(status.success(), "exit status {status} after SIGINT");
    Ok(())
}

/// Every daemon's sockets use `SO_REUSEPORT`, so without a check a second daemon
/// (another directory, same user) would join the first one's listening group and
/// silently take half of its connections.
fn a_second_daemon_on_a_served_address_fails(backend: Backend) -> anyhow::Result<()> {
    let config = TestConfig::new(backend);
    let mut first = Daemon::start(&config)?;
    let second = |ports: Ports| -> anyhow::Result<String> {
        let dir = tempfile::tempdir()?;
        let path = config.write(dir.path(), &ports)?;
        let out = run_bounded(
            std::process::Command::new(daemon_binary()?)
                .arg("--config")
                .arg(&path)
                .current_dir(dir.path()),
            Duration::from_secs(60),
        )?;
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        ensure!(!out.status.success(), "the second daemon started: {stderr}");
        Ok(stderr)
    };
    // The same listeners (its own metrics port).
    let stderr = second(Ports {
        metrics: free_port()?,
        ..first.ports()
    })?;
    let mx = format!("127.0.0.1:{}", first.ports().mx);
    ensure!(
        stderr.contains(&mx) && stderr.contains("already served by another process"),
        "{stderr}"
    );
    // The same metrics endpoint too: that is the first address it binds.
    let stderr = second(first.ports())?;
    ensure!(
        stderr.contains("metrics.listen: cannot listen on")
            && stderr.contains(&format!("127.0.0.1:{}", first.ports().metrics)),
        "{stderr}"
    );
    // The first one still serves all of it.
    for _ in 0..8 {
        let (mut c, greeting) = SmtpClient::connect(first.ports().mx)?;
        ensure!(greeting.code == 220, "greeting {greeting}");
        c.expect("QUIT", 221)?;
    }
    first.assert_running()?;
    Ok(())
}
