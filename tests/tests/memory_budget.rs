//! Delivery's memory follows `[spool] memory_budget`, not the queue: a daemon
//! restarted on a spool holding 80 messages of 5 MB for a destination that is down
//! (every message due at once after the restart) holds little more than it did
//! before delivery started, while every message is tried again: bodies larger than
//! 64 KiB stay in the spool until a connection is ready to stream them, so a
//! destination that is down costs no body reads at all. Once the route is moved to
//! a running sink (a SIGHUP reload), all 80 are streamed out whole.
//!
//! The peak is the kernel's own high-water mark of the process's resident memory
//! (`VmHWM` in /proc/PID/status), read after every message had two attempts in the
//! restarted daemon, and compared with the peak of a daemon that opened the same
//! spool with delivery off. Opening the spool reads envelopes, not bodies, so that
//! baseline does not grow with the bytes queued either; it is held under 256 MiB.
//! docs/benchmarks.md has the numbers before and after.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use way2mail_tests::{
    queued_id, wait_for, Backend, Behaviour, ClosedPort, Daemon, Signal, Sink, SinkOptions,
    SmtpClient, TestConfig,
};

const MESSAGES: usize = 80;
const MESSAGE_BYTES: usize = 5_000_000;
const MIB: u64 = 1024 * 1024;
/// The budget of the restarted daemon: about 13 of the 5 MB bodies.
const BUDGET: u64 = 64 * MIB;
/// The most delivery may add to the peak RSS of the daemon that opened the same
/// spool without delivery: less than the budget, since a destination that is down
/// costs no body reads (measured: +5 to +26 MiB; the jobs, the connection attempts
/// and the allocator's slack). Reading bodies before connecting filled the budget
/// (+28 to +74 MiB); reading every body (the scheduler before the budget) added
/// about the whole backlog, 320-365 MiB (docs/benchmarks.md).
const DELIVERY_BOUND: u64 = BUDGET;
/// The most a daemon may hold after opening the 400 MB spool (debug build): about
/// 100 MiB measured; reading every body at start made it 530-575 MiB.
const OPEN_BOUND: u64 = 256 * MIB;
const WAIT: Duration = Duration::from_secs(60);

/// Memory does not depend on the I/O backend; one run keeps the test short. epoll
/// works everywhere (io_uring may be forbidden in a container).
#[test]
fn a_restart_on_a_large_backlog_holds_a_budget_of_bodies() -> Result<()> {
    let started = Instant::now();
    let closed_port = ClosedPort::new()?;
    let closed = closed_port.port;
    let base = delivery(Backend::Epoll);
    let mut first = Daemon::start(&base.clone().raw(&route_to(closed)))?;
    let ids = queue_backlog(&first)?;
    first.terminate()?;
    eprintln!("{MESSAGES} messages queued in {:?}", started.elapsed());

    // The same spool, keys and keyring. First without delivery: what opening the
    // spool costs (sled keeps every large value its recovery pass read in its
    // cache, whatever its cache size; see docs/benchmarks.md), the baseline.
    let path = |p: &Path| format!("{:?}", p.to_string_lossy());
    let same_spool = base
        .set("spool", "path", &path(&first.spool_dir()))
        .set("spool", "key_file", &path(&first.spool_key_path()))
        .set("spool", "keyring_file", &path(&first.spool_keyring_path()));
    let idle = same_spool.clone().set("delivery", "enabled", "false");
    let mut idle = Daemon::start(&idle.raw(&route_to(closed)))?;
    std::thread::sleep(Duration::from_secs(1));
    let baseline = peak_rss(idle.pid())?;
    idle.terminate()?;
    ensure!(
        baseline < OPEN_BOUND,
        "opening a spool of {} MB took {} MiB: bodies were read or cached",
        MESSAGES * MESSAGE_BYTES / 1_000_000,
        baseline / MIB
    );

    // Then with delivery and a budget of 64 MiB: every message is due at once.
    let budget = same_spool.set("spool", "memory_budget", &BUDGET.to_string());
    let d = Daemon::start(&budget.clone().raw(&route_to(closed)))?;
    wait_for("two attempts of every message", WAIT, || {
        let attempts = deferrals(&d);
        ids.iter()
            .all(|id| attempts.get(id).is_some_and(|&n| n >= 2))
            .then_some(())
    })
    .with_context(|| d.stderr())?;
    let peak = peak_rss(d.pid())?;
    let delivery = peak.saturating_sub(baseline);
    eprintln!(
        "peak RSS: {} MiB without delivery, {} MiB with delivery (+{} MiB; budget {} MiB, \
         backlog {} MB)",
        baseline / MIB,
        peak / MIB,
        delivery / MIB,
        BUDGET / MIB,
        MESSAGES * MESSAGE_BYTES / 1_000_000
    );
    ensure!(
        delivery < DELIVERY_BOUND,
        "delivery added {} MiB to the peak RSS, above {} MiB: bodies are held beyond the budget",
        delivery / MIB,
        DELIVERY_BOUND / MIB
    );

    // The destination comes back: everything goes out.
    let sink = Sink::start(SinkOptions {
        behaviour: Behaviour::Accept,
        ..SinkOptions::default()
    })?;
    budget
        .raw(&sink.route("dest.test"))
        .write(d.dir(), &d.ports())?;
    d.signal(Signal::HUP)?;
    let got = sink.wait_for(MESSAGES, WAIT)?;
    ensure!(got.len() == MESSAGES, "{} delivered", got.len());
    ensure!(
        got.iter().all(|m| m.data.len() >= MESSAGE_BYTES),
        "whole bodies delivered"
    );
    eprintln!("whole test took {:?}", started.elapsed());
    Ok(())
}

/// Large messages arriving together are received within `[spool] ingest_budget`:
/// each session keeps `message_buffer` of its message in memory and writes the rest
/// to the spool as it arrives; at the end of data the messages wait for a share of
/// the budget to be read back, signed and spooled. The peak of a daemon taking
/// `CONCURRENT` messages of 5 MB at once is compared with that of one taking the
/// same messages one after another over one connection (same spool writes, same
/// cache), both with delivery off; every message is in the daemon before any ends.
/// Then a daemon restarted on that spool delivers every message whole.
#[test]
fn large_messages_arriving_together_are_received_within_the_ingest_budget() -> Result<()> {
    const CONCURRENT: usize = 40;
    const INGEST: u64 = 16 * MIB;
    // The budget, a message buffer per session (it is handed out and refilled),
    // and slack for the allocator and the two runs' own noise (measured: +18 to +32 MiB
    // with delivery off in both; +20 to +72 MiB when delivery ran meanwhile).
    // Holding every message whole, as sessions did, added 608 MiB.
    const CONCURRENCY_BOUND: u64 = INGEST + 64 * MIB;
    let sink = Sink::start(SinkOptions {
        behaviour: Behaviour::Accept,
        ..SinkOptions::default()
    })?;
    let config = delivery(Backend::Epoll)
        .set("spool", "message_buffer", "262144")
        .set("spool", "ingest_budget", &INGEST.to_string())
        .set("delivery", "enabled", "false")
        .raw(&sink.route("dest.test"));
    let one_by_one = Daemon::start(&config)?;
    let mut c = client(&one_by_one)?;
    for i in 0..CONCURRENT {
        c.send_message("a@sender.test", &["user@dest.test"], &large_message(i))?;
    }
    let sequential = peak_rss(one_by_one.pid())?;
    drop(one_by_one);

    // Delivery stays off while the messages arrive, so that the peak is ingest's
    // alone (a delivery running meanwhile reads bodies within its own budget, which
    // made the comparison swing by tens of MiB); a restart on the same spool sends.
    let mut d = Daemon::start(&config)?;
    let start = std::sync::Arc::new(std::sync::Barrier::new(CONCURRENT));
    let port = d.ports().mx;
    let threads: Vec<_> = (0..CONCURRENT)
        .map(|i| {
            let start = std::sync::Arc::clone(&start);
            std::thread::spawn(move || -> Result<String> {
                let (mut c, _) = SmtpClient::connect(port)?;
                c.expect("EHLO client.test", 250)?;
                c.expect("MAIL FROM:<a@sender.test>", 250)?;
                c.expect("RCPT TO:<user@dest.test>", 250)?;
                c.expect("DATA", 354)?;
                // Every message is in the daemon, none ended, before any ends.
                c.send(large_message(i).as_bytes())?;
                start.wait();
                // What the kernel still buffers reaches the daemon meanwhile.
                std::thread::sleep(Duration::from_secs(1));
                c.send(b".\r\n")?;
                let reply = c.read_reply()?;
                ensure!(reply.code == 250, "{reply:?}");
                queued_id(&reply)
            })
        })
        .collect();
    let mut ids = Vec::new();
    for t in threads {
        ids.push(
            t.join()
                .map_err(|_| anyhow::anyhow!("client thread panicked"))??,
        );
    }
    let together = peak_rss(d.pid())?;
    let added = together.saturating_sub(sequential);
    eprintln!(
        "peak RSS: {} MiB one by one, {} MiB with {CONCURRENT} at once (+{} MiB; ingest budget {} MiB)",
        sequential / MIB,
        together / MIB,
        added / MIB,
        INGEST / MIB
    );
    ensure!(
        added < CONCURRENCY_BOUND,
        "{CONCURRENT} messages at once added {} MiB, above {} MiB: messages are held whole",
        added / MIB,
        CONCURRENCY_BOUND / MIB
    );
    // Neither daemon delivered; one restarted on the second's spool sends all.
    d.terminate()?;
    let path = |p: &Path| format!("{:?}", p.to_string_lossy());
    let sending = config
        .set("spool", "path", &path(&d.spool_dir()))
        .set("spool", "key_file", &path(&d.spool_key_path()))
        .set("spool", "keyring_file", &path(&d.spool_keyring_path()))
        .set("delivery", "enabled", "true");
    let _sending = Daemon::start(&sending)?;
    let got = sink.wait_for(CONCURRENT, WAIT)?;
    ensure!(got.len() == CONCURRENT, "{} delivered", got.len());
    for m in &got {
        let text = String::from_utf8_lossy(&m.data);
        ensure!(
            m.data.len() >= MESSAGE_BYTES,
            "a whole body: {}",
            m.data.len()
        );
        ensure!(
            text.contains("Subject: large "),
            "the header section came through"
        );
        ensure!(
            text.trim_end().ends_with("end of message"),
            "the end came through"
        );
    }
    eprintln!("{} ids accepted at once", ids.len());
    Ok(())
}

fn client(d: &Daemon) -> Result<SmtpClient> {
    let (mut c, _) = SmtpClient::connect(d.ports().mx)?;
    c.expect("EHLO client.test", 250)?;
    Ok(c)
}

/// A message of about `MESSAGE_BYTES` whose beginning and end can be recognised.
fn large_message(i: usize) -> String {
    let filler: String = "y".repeat(76) + "\r\n";
    let mut body = format!("From: <a@sender.test>\r\nSubject: large {i}\r\n\r\n");
    body.reserve(MESSAGE_BYTES + 100);
    while body.len() < MESSAGE_BYTES {
        body.push_str(&filler);
    }
    body.push_str("end of message\r\n");
    body
}

/// Delivery on with a short retry, outcomes in `delivery.log` of the daemon's dir.
/// The destination is never paused for its failures (`backoff_after_failures`): the
/// test wants every message tried again soon, not the shaper's growing pauses.
fn delivery(backend: Backend) -> TestConfig {
    TestConfig::quick_delivery(backend).set("shaping", "backoff_after_failures", "1000000")
}

/// `dest.test` to a port where nothing listens: every attempt is deferred.
fn route_to(port: u16) -> String {
    format!("[[route]]\ndomain = \"dest.test\"\nhost = \"[127.0.0.1]:{port}\"\ntls = \"none\"\n")
}

/// Sends the messages one after another over one connection (so that ingest holds
/// one message at a time) and returns their queue ids.
fn queue_backlog(d: &Daemon) -> Result<Vec<String>> {
    let filler: String = "x".repeat(76) + "\r\n";
    let lines = MESSAGE_BYTES / filler.len() + 1;
    let (mut c, _) = SmtpClient::connect(d.ports().mx)?;
    c.expect("EHLO client.test", 250)?;
    let mut ids = Vec::with_capacity(MESSAGES);
    for i in 0..MESSAGES {
        let mut body = format!("From: <a@sender.test>\r\nSubject: backlog {i}\r\n\r\n");
        body.reserve(lines * filler.len());
        for _ in 0..lines {
            body.push_str(&filler);
        }
        let reply = c.send_message("a@sender.test", &["user@dest.test"], &body)?;
        ids.push(queued_id(&reply)?);
    }
    c.expect("QUIT", 221)?;
    Ok(ids)
}

/// Deferred attempts per message id in the daemon's delivery log file.
fn deferrals(d: &Daemon) -> HashMap<String, usize> {
    let log = std::fs::read_to_string(d.dir().join("delivery.log")).unwrap_or_default();
    let mut count = HashMap::new();
    for line in log.lines().filter(|l| l.contains("\"deferred\"")) {
        let Ok(record) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if let Some(id) = record["message_id"].as_str() {
            *count.entry(id.to_string()).or_default() += 1;
        }
    }
    count
}

/// The process's peak resident set (`VmHWM`), in bytes.
fn peak_rss(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .context("no VmHWM line")?;
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .context("VmHWM value")?
        .parse()?;
    Ok(kib * 1024)
}
