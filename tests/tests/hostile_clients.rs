//! Raw-socket clients that misbehave: plaintext on the submission port, a 10 MB line,
//! binary garbage and NUL bytes, a TLS handshake made of garbage, a client that never
//! reads its replies. Each must get a clear reply or a closed connection, never take the
//! daemon down, and never stop it from serving the next, well-behaved client.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use way2mail_tests::{for_each_backend, queued_id, Backend, Daemon, SmtpClient, TestConfig};

for_each_backend!(
    submission_requires_starttls,
    ten_megabyte_line_is_refused,
    binary_garbage_gets_replies,
    tls_garbage_after_starttls,
    non_reading_client_does_not_stall_others,
);

/// A well-behaved client that must still get its message queued on `port`.
fn deliver_one(port: u16) -> anyhow::Result<String> {
    let (mut client, greeting) = SmtpClient::connect(port)?;
    ensure!(greeting.code == 220, "greeting {greeting}");
    client.expect("EHLO good.client.test", 250)?;
    let reply = client.send_message(
        "good@example.org",
        &["rcpt@example.net"],
        "Subject: still served\r\n\r\nhello\r\n",
    )?;
    queued_id(&reply)
}

fn submission_requires_starttls(backend: Backend) -> anyhow::Result<()> {
    let daemon = Daemon::start(&TestConfig::new(backend))?;
    let port = daemon.ports().submission;
    let (mut client, _) = SmtpClient::connect(port)?;
    let ehlo = client.expect("EHLO plain.client.test", 250)?;
    ensure!(
        ehlo.has_extension("STARTTLS"),
        "no STARTTLS offered: {ehlo}"
    );
    let mail = client.command("MAIL FROM:<a@example.org>")?;
    ensure!(
        mail.code == 530 && mail.enhanced() == Some("5.7.0"),
        "MAIL before STARTTLS on submission: {mail}"
    );
    let rcpt = client.command("RCPT TO:<b@example.net>")?;
    ensure!(rcpt.code >= 500, "RCPT without a transaction: {rcpt}");

    // The positive control: the same dialogue after STARTTLS is accepted.
    let mut client = client.starttls(daemon.tls_config()?)?;
    client.expect("EHLO tls.client.test", 250)?;
    let reply = client.send_message(
        "a@example.org",
        &["b@example.net"],
        "Subject: x\r\n\r\ny\r\n",
    )?;
    queued_id(&reply)?;
    Ok(())
}

fn ten_megabyte_line_is_refused(backend: Backend) -> anyhow::Result<()> {
    let mut daemon = Daemon::start(&TestConfig::new(backend))?;
    let port = daemon.ports().mx;
    let (mut client, _) = SmtpClient::connect(port)?;
    client.expect("EHLO big.client.test", 250)?;
    let mut line = b"NOOP ".to_vec();
    line.resize(10 * 1024 * 1024, b'a');
    line.extend_from_slice(b"\r\n");
    // Written from another thread: the server may answer (or close) before it has read
    // it all, and this thread must be reading by then.
    let mut writer = client.socket().try_clone()?;
    let sender = thread::spawn(move || writer.write_all(&line));
    let reply = client.read_reply().context("reply to the 10 MB line")?;
    ensure!(reply.code == 500, "10 MB line: expected 500, got {reply}");
    let fully_sent = sender
        .join()
        .map_err(|_| anyhow::anyhow!("writer panicked"))?;
    if fully_sent.is_ok() {
        // The connection may stay usable (the rest of the line discarded) or be closed;
        // what it must not do is treat the tail of the line as commands.
        if let Ok(noop) = client.command("NOOP") {
            ensure!(
                noop.code == 250 || noop.code == 421,
                "NOOP after it: {noop}"
            );
        }
    }
    deliver_one(port).context("a second client after the 10 MB line")?;
    daemon.assert_running()
}

fn binary_garbage_gets_replies(backend: Backend) -> anyhow::Result<()> {
    let config = TestConfig::new(backend)
        .set("limits", "max_errors", "6")
        .set("limits", "tarpit_delay_ms", "50");
    let mut daemon = Daemon::start(&config)?;
    let port = daemon.ports().mx;
    let (mut client, _) = SmtpClient::connect(port)?;
    let garbage: [&[u8]; 4] = [
        b"\x00\x00\x00\r\n",
        b"\xff\xfe\xfd\x80 \x1b[2J\r\n",
        b"EHLO evil\x00.client.test\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n",
    ];
    for bytes in garbage {
        client.send(bytes)?;
        let reply = client
            .read_reply()
            .with_context(|| format!("reply to {bytes:?}"))?;
        ensure!((500..600).contains(&reply.code), "{bytes:?} got {reply}");
    }
    client.expect("EHLO fine.client.test", 250)?;
    let reply = client.command("MAIL FROM:<nul\0byte@example.org>")?;
    ensure!(
        (500..600).contains(&reply.code),
        "NUL in MAIL FROM got {reply}"
    );

    // Keep erring: past max_errors the daemon gives up on the session.
    let mut closed_with = None;
    for _ in 0..4 {
        client.send(b"\x01\x02\x03\r\n")?;
        let reply = client.read_reply()?;
        if reply.code == 421 {
            closed_with = Some(reply);
            break;
        }
        ensure!((500..600).contains(&reply.code), "garbage got {reply}");
    }
    let closed_with = closed_with.context("no 421 after more than max_errors bad commands")?;
    ensure!(
        closed_with.enhanced() == Some("4.7.0"),
        "error limit: {closed_with}"
    );
    client
        .read_to_end()
        .context("connection should close after 421")?;

    deliver_one(port)?;
    daemon.assert_running()
}

fn tls_garbage_after_starttls(backend: Backend) -> anyhow::Result<()> {
    let config = TestConfig::new(backend).set("timeouts", "tls_handshake_secs", "3");
    let mut daemon = Daemon::start(&config)?;
    for port in [daemon.ports().mx, daemon.ports().submission] {
        let (mut client, _) = SmtpClient::connect(port)?;
        client.expect("EHLO tls.client.test", 250)?;
        client.expect("STARTTLS", 220)?;
        let started = Instant::now();
        // A ClientHello-looking record header followed by nonsense.
        client.send(b"\x16\x03\x01\x00\x20garbage garbage garbage garbage!\r\nQUIT\r\n")?;
        // Either an alert or nothing, then the close; a reset also counts as closed.
        let _ = client.read_to_end();
        ensure!(
            started.elapsed() < Duration::from_secs(15),
            "connection not closed after TLS garbage"
        );
    }
    // A handshake that simply never comes is cut off by tls_handshake_secs.
    let (mut silent, _) = SmtpClient::connect(daemon.ports().mx)?;
    silent.expect("EHLO silent.client.test", 250)?;
    silent.expect("STARTTLS", 220)?;
    let started = Instant::now();
    let _ = silent.read_to_end();
    ensure!(
        started.elapsed() < Duration::from_secs(12),
        "silent TLS client kept for {:?}",
        started.elapsed()
    );
    // The same on the implicit-TLS listener, where the handshake is the first thing.
    let mut silent = SmtpClient::tcp(daemon.ports().submissions)?;
    let started = Instant::now();
    let _ = silent.read_to_end(&mut Vec::new());
    ensure!(
        started.elapsed() < Duration::from_secs(12),
        "silent implicit-TLS client kept for {:?}",
        started.elapsed()
    );
    deliver_one(daemon.ports().mx)?;
    daemon.assert_running()
}

/// One worker thread, so the flooding client and the good client share one event loop;
/// a session blocked on writing replies must not block that loop.
fn non_reading_client_does_not_stall_others(backend: Backend) -> anyhow::Result<()> {
    let config = TestConfig::new(backend).set("runtime", "threads", "1");
    let mut daemon = Daemon::start(&config)?;
    let port = daemon.ports().mx;
    let (mut flooder, _) = SmtpClient::connect(port)?;
    flooder.expect("EHLO flood.client.test", 250)?;
    let mut writer = flooder.socket().try_clone()?;
    let flood = thread::spawn(move || {
        let batch = b"NOOP\r\n".repeat(10_000);
        // 6 MB of pipelined NOOPs, far more than both socket buffers hold.
        for _ in 0..100 {
            if writer.write_all(&batch).is_err() {
                break;
            }
        }
    });
    thread::sleep(Duration::from_secs(1));

    let started = Instant::now();
    deliver_one(port).context("a good client while another never reads")?;
    let took = started.elapsed();
    flooder.socket().shutdown(Shutdown::Both)?;
    if flood.join().is_err() {
        bail!("flood thread panicked");
    }
    ensure!(took < Duration::from_secs(10), "good client took {took:?}");
    deliver_one(port)?;
    daemon.assert_running()
}
