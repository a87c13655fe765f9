//! Delivery's memory follows `[spool] memory_budget`, not the queue: a daemon
//! restarted on a spool holding 80 messages of 5 MB for a destination that is down
//! (every message due at once after the restart) holds about a budget's worth of
//! bodies, not all 400 MB of them, while every message is tried again; once the
//! route is moved to a running sink (a SIGHUP reload), all 80 are delivered.
//!
//! The peak is the kernel's own high-water mark of the process's resident memory
//! (`VmHWM` in /proc/PID/status), read after every message had two attempts in the
//! restarted daemon, and compared with the peak of a daemon that opened the same
//! spool with delivery off: opening a spool costs memory of its own (sled keeps the
//! large values its recovery pass read), which the budget does not cover.
//! docs/benchmarks.md has the numbers with and without a budget.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use way2mail_tests::{
    free_port, queued_id, wait_for, Backend, Behaviour, Daemon, Signal, Sink, SinkOptions,
    SmtpClient, TestConfig,
};

const MESSAGES: usize = 80;
const MESSAGE_BYTES: usize = 5_000_000;
const MIB: u64 = 1024 * 1024;
/// The budget of the restarted daemon: about 13 of the 5 MB bodies.
const BUDGET: u64 = 64 * MIB;
/// The most delivery may add to the peak RSS of the daemon that opened the same
/// spool without delivery: the budget, plus room for a message being decrypted, the
/// jobs, the allocator's slack and the baseline's own noise (its peak varied by
/// 50 MiB between runs). Reading every body (the scheduler before the budget) adds
/// about the whole backlog: 320-365 MiB here (docs/benchmarks.md).
const DELIVERY_BOUND: u64 = BUDGET + 96 * MIB;
const WAIT: Duration = Duration::from_secs(60);

/// Memory does not depend on the I/O backend; one run keeps the test short. epoll
/// works everywhere (io_uring may be forbidden in a container).
#[test]
fn a_restart_on_a_large_backlog_holds_a_budget_of_bodies() -> Result<()> {
    let started = Instant::now();
    let closed = free_port()?;
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
