//! Draining a node (`way2mail-mta drain`): `/readyz` answers 503, the listeners
//! close, the queue is delivered (here after two temporary failures each, so the
//! drain lasts a retry), and the daemon stops by itself, exit 0, leaving an empty
//! spool.

use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Context};
use way2mail_tests::{
    daemon_binary, http_get, wait_for, Backend, Behaviour, Daemon, Sink, SinkOptions, SmtpClient,
    TestConfig,
};

const WAIT: Duration = Duration::from_secs(60);

#[test]
fn a_drained_node_refuses_new_mail_delivers_its_queue_and_stops_empty_epoll() -> anyhow::Result<()>
{
    drained(Backend::Epoll)
}

#[test]
fn a_drained_node_refuses_new_mail_delivers_its_queue_and_stops_empty_io_uring(
) -> anyhow::Result<()> {
    drained(Backend::IoUring)
}

fn drained(backend: Backend) -> anyhow::Result<()> {
    let sink = Sink::start(SinkOptions {
        script: vec![Behaviour::TempFail; 6],
        ..SinkOptions::default()
    })?;
    // No control: ready as soon as the spool is.
    let config = TestConfig::quick_delivery(backend)
        .set("control", "socket", "\"\"")
        .raw(&sink.route("remote.example"));
    let mut daemon = Daemon::start(&config)?;
    let mx = daemon.ports().mx;
    for i in 0..3 {
        let (mut c, _) = SmtpClient::connect(mx)?;
        c.expect("EHLO client.test", 250)?;
        let body = format!("Subject: drain {i}\r\n\r\nqueued before the drain\r\n");
        let r = c.send_message("a@client.test", &[&format!("bob{i}@remote.example")], &body)?;
        ensure!(r.code == 250, "{r:?}");
    }
    let (code, _) = http_get(daemon.metrics_addr(), "/readyz")?;
    ensure!(code == 200, "ready before the drain: {code}");

    // `way2mail-mta drain --wait`, as an operator runs it.
    let config_path = daemon.config_path().context("config path")?.to_path_buf();
    let cli = std::thread::spawn(move || {
        Command::new(daemon_binary()?)
            .arg("--config")
            .arg(&config_path)
            .args(["drain", "--wait", "60"])
            .output()
            .context("running way2mail-mta drain")
    });

    // Out of service at once: 503, and the listeners are closed.
    wait_for("/readyz to answer 503", WAIT, || {
        let (code, body) = http_get(daemon.metrics_addr(), "/readyz").ok()?;
        (code == 503 && body.contains("draining")).then_some(())
    })?;
    for (name, port) in [
        ("mx", mx),
        ("submission", daemon.ports().submission),
        ("api", daemon.ports().api),
    ] {
        wait_for(&format!("the {name} listener to close"), WAIT, || {
            TcpStream::connect(("127.0.0.1", port))
                .is_err()
                .then_some(())
        })?;
    }
    // Closed while the daemon still runs (each message fails twice first, so the
    // drain outlasts these checks): its health endpoint still answers.
    let (code, _) = http_get(daemon.metrics_addr(), "/readyz")?;
    ensure!(code == 503, "not draining any more: {code}");

    let output = cli
        .join()
        .map_err(|_| anyhow::anyhow!("the CLI thread panicked"))??;
    let stdout = String::from_utf8_lossy(&output.stdout);
    ensure!(
        output.status.success() && stdout.contains("draining: 3 message(s) queued"),
        "drain --wait: {:?}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    ensure!(stdout.contains("the daemon stopped"), "{stdout}");
    let status = daemon.wait_exit()?;
    ensure!(
        status.success(),
        "exit status {status}: {}",
        daemon.stderr()
    );
    let delivered = sink
        .messages()
        .into_iter()
        .filter(|m| String::from_utf8_lossy(&m.data).contains("queued before the drain"))
        .count();
    ensure!(delivered == 3, "delivered {delivered} of 3");
    let spool = daemon.open_spool()?;
    ensure!(
        spool.is_empty(),
        "{} message(s) left in the spool",
        spool.len()
    );
    ensure!(daemon.stderr().contains("drained: the queue is empty"));
    Ok(())
}
