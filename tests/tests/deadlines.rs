//! Slow clients against the real daemon: the `[timeouts]` are deadlines, not idle
//! timers. A client that sends a byte every half second or so, inside a command line
//! or inside message content, is cut (`421 4.4.2`) about when the deadline says,
//! however steadily it trickles, and its half-received message is never queued;
//! meanwhile a well-behaved client, and an honest slow one above `min_data_rate`, are
//! served. A session is closed at `session_secs` whatever it does. At the connection
//! cap a newcomer displaces an idle trickler (`421 4.3.2`) but never a busy client.
//!
//! The upper bounds below are the deadline plus a generous margin for a loaded
//! machine: an idle timer would never cut these clients at all.

use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use way2mail_tests::{
    admitted, for_each_backend, queued_id, wait_for, Backend, Daemon, SmtpClient, TestConfig,
    TestReply,
};

for_each_backend!(
    a_trickled_command_line_is_cut,
    trickled_content_is_cut_and_never_queued,
    a_session_ends_at_its_lifetime,
    at_the_cap_a_newcomer_displaces_a_trickler_not_a_busy_client,
);

/// What a loaded machine may add to a deadline before the cut is seen.
const MARGIN: Duration = Duration::from_secs(6);

/// A thread writing `bytes` one at a time, `every` apart, on a clone of a client's
/// socket, until they run out, a write fails (the daemon closed), or it is stopped.
struct Trickler {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<usize>,
}

impl Trickler {
    fn start(client: &SmtpClient, bytes: &'static [u8], every: Duration) -> anyhow::Result<Self> {
        let mut socket: TcpStream = client.socket().try_clone()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            use std::io::Write;
            let mut sent = 0;
            for byte in bytes {
                if stopped.load(Ordering::Acquire) || socket.write_all(&[*byte]).is_err() {
                    break;
                }
                sent += 1;
                thread::sleep(every);
            }
            sent
        });
        Ok(Trickler { stop, thread })
    }

    /// Stops it; how many bytes went out.
    fn stop(self) -> anyhow::Result<usize> {
        self.stop.store(true, Ordering::Release);
        match self.thread.join() {
            Ok(sent) => Ok(sent),
            Err(_) => bail!("trickler thread panicked"),
        }
    }
}

fn ensure_cut(reply: &TestReply, waited: Duration, deadline: Duration) -> anyhow::Result<()> {
    ensure!(
        reply.code == 421 && reply.enhanced() == Some("4.4.2"),
        "a trickler got {reply}"
    );
    ensure!(
        waited >= deadline.saturating_sub(Duration::from_millis(500)),
        "cut after {waited:?}, before the {deadline:?} deadline"
    );
    ensure!(
        waited < deadline + MARGIN,
        "cut only after {waited:?} with a {deadline:?} deadline"
    );
    Ok(())
}

/// Waits for the daemon's log to mention `what`: a session logs its line just after
/// it closed the connection.
fn logged(daemon: &Daemon, what: &str) -> anyhow::Result<()> {
    wait_for(what, Duration::from_secs(5), || {
        daemon.stderr().contains(what).then_some(())
    })
    .with_context(|| format!("log:\n{}", daemon.stderr()))
}

/// A well-behaved client that must get its message queued on `port`.
fn deliver_one(port: u16, from: &str) -> anyhow::Result<String> {
    let (mut client, greeting) = SmtpClient::connect(port)?;
    ensure!(greeting.code == 220, "greeting {greeting}");
    client.expect("EHLO good.client.test", 250)?;
    let reply = client.send_message(
        from,
        &["rcpt@example.net"],
        "Subject: served\r\n\r\nhello\r\n",
    )?;
    queued_id(&reply)
}

fn a_trickled_command_line_is_cut(backend: Backend) -> anyhow::Result<()> {
    let config = TestConfig::new(backend).set("timeouts", "command_secs", "3");
    let daemon = Daemon::start(&config)?;
    let port = daemon.ports().mx;
    let line: &[u8] = b"EHLO a.very.slow.client.example\r\n";
    let (mut slow, greeting) = SmtpClient::connect(port)?;
    ensure!(greeting.code == 220, "greeting {greeting}");
    let started = Instant::now();
    // One byte a second: an idle timer of 3 s would wait forever.
    let trickler = Trickler::start(&slow, line, Duration::from_secs(1))?;
    deliver_one(port, "good@example.org").context("a good client beside the trickler")?;
    let reply = slow.read_reply().context("waiting for the cut")?;
    let waited = started.elapsed();
    let sent = trickler.stop()?;
    ensure_cut(&reply, waited, Duration::from_secs(3))?;
    ensure!(sent < line.len(), "the whole line went out ({sent} bytes)");
    slow.read_to_end()
        .context("the connection should close after 421")?;
    logged(&daemon, "command deadline")?;
    Ok(())
}

/// DATA and BDAT content trickled a byte every half second is cut about `data_secs`
/// after it began, and not queued; a client sending 1,000 B/s for longer than
/// `data_secs` is not cut and its message is queued.
fn trickled_content_is_cut_and_never_queued(backend: Backend) -> anyhow::Result<()> {
    let config = TestConfig::new(backend).set("timeouts", "data_secs", "3");
    let mut daemon = Daemon::start(&config)?;
    let port = daemon.ports().mx;
    let data = thread::spawn(move || -> anyhow::Result<()> {
        let (mut slow, _) = SmtpClient::connect(port)?;
        slow.expect("EHLO trickle.client.test", 250)?;
        slow.expect("MAIL FROM:<trickler@example.org>", 250)?;
        slow.expect("RCPT TO:<rcpt@example.net>", 250)?;
        slow.expect("DATA", 354)?;
        trickle_until_cut(slow)
    });
    let bdat = thread::spawn(move || -> anyhow::Result<()> {
        let (mut slow, _) = SmtpClient::connect(port)?;
        slow.expect("EHLO trickle.client.test", 250)?;
        slow.expect("MAIL FROM:<bdat-trickler@example.org>", 250)?;
        slow.expect("RCPT TO:<rcpt@example.net>", 250)?;
        slow.send(b"BDAT 1000 LAST\r\n")?;
        trickle_until_cut(slow)
    });
    let honest = honest_slow_link(port)?;
    for (name, t) in [("DATA", data), ("BDAT", bdat)] {
        match t.join() {
            Ok(result) => result.with_context(|| format!("the {name} trickler"))?,
            Err(_) => bail!("the {name} trickler's thread panicked"),
        }
    }
    daemon.terminate()?;
    let queued: Vec<_> = daemon.spool_entries()?;
    ensure!(
        queued.len() == 1 && queued[0].id == honest,
        "only the honest message should be queued: {queued:?}"
    );
    let log = daemon.stderr();
    ensure!(
        log.contains("content below the minimum rate"),
        "log:\n{log}"
    );
    Ok(())
}

fn trickle_until_cut(mut slow: SmtpClient) -> anyhow::Result<()> {
    let started = Instant::now();
    let body: &[u8] = b"Subject: slow\r\n\r\nThis message arrives half a byte a second.\r\n";
    let trickler = Trickler::start(&slow, body, Duration::from_millis(500))?;
    let reply = slow.read_reply().context("waiting for the cut")?;
    let waited = started.elapsed();
    let sent = trickler.stop()?;
    ensure_cut(&reply, waited, Duration::from_secs(3))?;
    ensure!(sent < body.len(), "the whole body went out ({sent} bytes)");
    slow.read_to_end()
        .context("the connection should close after 421")?;
    Ok(())
}

/// 200 bytes every 200 ms (1,000 B/s, twice `min_data_rate`) for 5 s, longer than
/// `data_secs`: queued.
fn honest_slow_link(port: u16) -> anyhow::Result<String> {
    let (mut client, _) = SmtpClient::connect(port)?;
    client.expect("EHLO honest.slow.client.test", 250)?;
    client.expect("MAIL FROM:<honest@example.org>", 250)?;
    client.expect("RCPT TO:<rcpt@example.net>", 250)?;
    client.expect("DATA", 354)?;
    client.send(b"Subject: slow but steady\r\n\r\n")?;
    let line = format!("{}\r\n", "x".repeat(198));
    for _ in 0..25 {
        client.send(line.as_bytes())?;
        thread::sleep(Duration::from_millis(200));
    }
    let reply = client.command(".")?;
    queued_id(&reply).context("the honest slow link")
}

/// A client that keeps every deadline (a NOOP every half second) is still closed at
/// `session_secs`.
fn a_session_ends_at_its_lifetime(backend: Backend) -> anyhow::Result<()> {
    let config = TestConfig::new(backend).set("timeouts", "session_secs", "3");
    let daemon = Daemon::start(&config)?;
    let started = Instant::now();
    let (mut client, greeting) = SmtpClient::connect(daemon.ports().mx)?;
    ensure!(greeting.code == 220, "greeting {greeting}");
    client.expect("EHLO long.lived.client.test", 250)?;
    let reply = loop {
        ensure!(
            started.elapsed() < Duration::from_secs(3) + MARGIN,
            "still open after {:?}",
            started.elapsed()
        );
        // The pause between NOOPs is spent watching for the daemon's unasked 421.
        if arrives_within(client.socket(), Duration::from_millis(500))? {
            break client.read_reply()?;
        }
        let reply = client.command("NOOP")?;
        if reply.code != 250 {
            break reply;
        }
    };
    ensure_cut(&reply, started.elapsed(), Duration::from_secs(3))?;
    client
        .read_to_end()
        .context("the connection should close after 421")?;
    logged(&daemon, "session lifetime")?;
    Ok(())
}

/// True when bytes (or the close) arrive on `socket` within `wait`.
fn arrives_within(socket: &TcpStream, wait: Duration) -> anyhow::Result<bool> {
    let before = socket.read_timeout()?;
    socket.set_read_timeout(Some(wait))?;
    let peeked = socket.peek(&mut [0u8; 1]);
    socket.set_read_timeout(before)?;
    match peeked {
        Ok(_) => Ok(true),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            Ok(false)
        }
        Err(e) => Err(e).context("watching the socket"),
    }
}

/// `max_connections = 2`: one busy client, one that sent a command and went quiet.
/// Once both are older than `displace_after_secs`, a newcomer is served and the quiet
/// one gets `421 4.3.2`; the next newcomer is refused, since the busy client is not a
/// candidate and the first newcomer is too young.
fn at_the_cap_a_newcomer_displaces_a_trickler_not_a_busy_client(
    backend: Backend,
) -> anyhow::Result<()> {
    let config = TestConfig::new(backend)
        .set("limits", "max_connections", "2")
        .set("timeouts", "displace_after_secs", "2");
    let daemon = Daemon::start(&config)?;
    let port = daemon.ports().mx;
    let mut busy = admitted(port)?;
    busy.expect("EHLO busy.client.test", 250)?;
    let stop = Arc::new(AtomicBool::new(false));
    let busy = {
        let stop = Arc::clone(&stop);
        thread::spawn(move || -> anyhow::Result<SmtpClient> {
            // Batches of pipelined NOOPs: thousands of bytes a second.
            let batch = "NOOP\r\n".repeat(20);
            while !stop.load(Ordering::Acquire) {
                busy.send(batch.as_bytes())?;
                for _ in 0..20 {
                    let reply = busy.read_reply()?;
                    ensure!(reply.code == 250, "the busy client got {reply}");
                }
                thread::sleep(Duration::from_millis(50));
            }
            Ok(busy)
        })
    };
    let mut quiet = admitted(port)?;
    quiet.expect("NOOP", 250)?;
    thread::sleep(Duration::from_millis(2500));

    let (mut newcomer, greeting) = SmtpClient::connect(port)?;
    ensure!(greeting.code == 220, "the newcomer got {greeting}");
    let told = quiet.read_reply().context("the displaced client's reply")?;
    ensure!(
        told.code == 421 && told.enhanced() == Some("4.3.2") && told.text().contains("slowest"),
        "the displaced client got {told}"
    );
    quiet
        .read_to_end()
        .context("the displaced connection should close")?;

    let (mut second, greeting) = SmtpClient::connect(port)?;
    ensure!(
        greeting.code == 421 && greeting.enhanced() == Some("4.3.2"),
        "a second newcomer got {greeting}"
    );
    second
        .read_to_end()
        .context("a refused connection closes")?;

    stop.store(true, Ordering::Release);
    let mut busy = match busy.join() {
        Ok(result) => result.context("the busy client")?,
        Err(_) => bail!("the busy client's thread panicked"),
    };
    busy.expect("QUIT", 221)?;
    newcomer.expect("EHLO newcomer.client.test", 250)?;
    let reply = newcomer.send_message(
        "newcomer@example.org",
        &["rcpt@example.net"],
        "Subject: admitted\r\n\r\nhello\r\n",
    )?;
    queued_id(&reply)?;
    logged(&daemon, "displaced by a newcomer")?;
    Ok(())
}
