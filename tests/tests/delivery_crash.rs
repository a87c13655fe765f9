//! At-least-once delivery across a crash: 8 concurrent clients submit 300 messages, each
//! with a unique marker in its body, to a daemon that delivers them (route `*`) to a
//! capturing sink which stalls a little before each 250, so that deliveries are in flight
//! when the daemon gets SIGKILL. A second daemon then starts on the same spool; every
//! acknowledged marker must reach the sink (a loss fails the test), duplicates are
//! counted and printed (allowed: a delivery whose completion the crash lost is made
//! again), the spool must end empty, and the delivery log must still hold one record per
//! line: the record the kill cut short may stay torn, but must not swallow the next one.
//!
//! The spool, its key and the delivery log live in a directory the test owns, so the
//! two daemons (each with its own temp dir and ports) share them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, ensure, Context, Result};
use way2mail_tests::{
    for_each_backend, queued_id, wait_for, Backend, Behaviour, Daemon, Received, Signal, Sink,
    SinkOptions, SmtpClient, TestConfig,
};

const MESSAGES: usize = 300;
const CLIENTS: usize = 8;
/// Recipient domains: several destinations, spread over both cores.
const DOMAINS: usize = 3;
/// The sink waits this long before each 250: with the default 10 connections per
/// destination at most 600 deliveries/s, so the kill finds deliveries in flight (the sink
/// still takes those it holds: duplicates) and others still queued.
const STALL: Duration = Duration::from_millis(50);
const MARKER_PREFIX: &str = "W2MDELIVERYCRASH";
const SENDER: &str = "crash@example.org";
/// Bound for every wait of the test.
const WAIT: Duration = Duration::from_secs(20);
/// How each delivery log record (one JSON object per line) begins.
const RECORD_START: &str = "{\"time_ms\":";

for_each_backend!(acknowledged_messages_delivered_after_sigkill);

/// State shared by the client threads.
struct Load {
    port: u16,
    next: AtomicUsize,
    /// marker → queue id of every acknowledged message.
    acked: Mutex<BTreeMap<String, String>>,
    acked_count: AtomicUsize,
    killed: AtomicBool,
    /// Failures seen before the kill, which are real errors.
    failures: Mutex<Vec<String>>,
}

fn acknowledged_messages_delivered_after_sigkill(backend: Backend) -> Result<()> {
    let shared = tempfile::Builder::new()
        .prefix("way2mail-delivery-crash-")
        .tempdir()?;
    let sink = Sink::start(SinkOptions {
        behaviour: Behaviour::Stall(STALL),
        ..SinkOptions::default()
    })?;
    let config = config(backend, shared.path(), sink.port());
    let acked = load_then_kill(&config, &sink)?;
    let at_kill = sink.messages().len();

    // A delivery the sink was stalling at the kill still lands after it; waiting past the
    // stall keeps those out of what the second daemon is credited with.
    thread::sleep(STALL * 4);
    let restart_at = Instant::now();
    let restart_ms = unix_ms();
    let mut second = Daemon::start(&config)?;
    wait_for("every acknowledged marker at the sink", WAIT, || {
        let counts = marker_counts(&sink.messages());
        acked.keys().all(|m| counts.contains_key(m)).then_some(())
    })
    .with_context(|| missing_report(&acked, &sink))?;

    let after_restart = settle(&sink, restart_at, shared.path(), restart_ms)?;
    second.terminate()?;
    let left = second.spool_entries()?;
    ensure!(
        left.is_empty(),
        "spool not empty after every delivery: {left:#?}"
    );
    let delivered = marker_counts(&sink.messages());
    report(backend, &acked, &delivered, at_kill, after_restart);
    check_envelopes(&sink.messages())?;
    log_lines_complete(&shared.path().join("delivery.log"))
}

/// Starts the first daemon and the clients, SIGKILLs the daemon once half the load is
/// acknowledged and deliveries have started, and returns marker → id of every message
/// acknowledged before the kill.
fn load_then_kill(config: &TestConfig, sink: &Sink) -> Result<BTreeMap<String, String>> {
    let mut first = Daemon::start(config)?;
    let load = Arc::new(Load {
        port: first.ports().mx,
        next: AtomicUsize::new(0),
        acked: Mutex::new(BTreeMap::new()),
        acked_count: AtomicUsize::new(0),
        killed: AtomicBool::new(false),
        failures: Mutex::new(Vec::new()),
    });
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let load = Arc::clone(&load);
            thread::spawn(move || run_client(&load, client))
        })
        .collect();
    let what = "half the messages acknowledged and deliveries under way";
    let ready = wait_for(what, WAIT, || {
        let failures = lock(&load.failures).clone();
        if !failures.is_empty() {
            return Some(Err(failures));
        }
        let half = load.acked_count.load(Ordering::SeqCst) >= MESSAGES / 2;
        (half && !sink.messages().is_empty()).then_some(Ok(()))
    });
    load.killed.store(true, Ordering::SeqCst);
    first.signal(Signal::KILL)?;
    first.wait_exit()?;
    ready?.map_err(|failures| anyhow::anyhow!("clients failed before the kill: {failures:?}"))?;
    for client in clients {
        if client.join().is_err() {
            bail!("a client thread panicked");
        }
    }
    let failures = lock(&load.failures).clone();
    ensure!(failures.is_empty(), "clients failed: {failures:?}");
    let acked = lock(&load.acked).clone();
    Ok(acked)
}

fn config(backend: Backend, shared: &Path, sink_port: u16) -> TestConfig {
    let path = |name: &str| format!("\"{}\"", shared.join(name).display());
    TestConfig::new(backend)
        .set("spool", "path", &path("spool"))
        .set("spool", "key_file", &path("spool.key"))
        .set("spool", "keyring_file", &path("spool.keyring"))
        .set("delivery", "enabled", "true")
        .set("delivery", "log_file", &path("delivery.log"))
        .raw(&format!(
            "[[route]]\ndomain = \"*\"\nhost = \"[127.0.0.1]:{sink_port}\"\ntls = \"none\"\n"
        ))
}

/// Waits until the sink has been quiet for a second and every delivery it saw from the
/// second daemon has its `delivered` line in the delivery log: the line is handed to the
/// log writer just before the completion goes to the spool, so after it a SIGTERM (which
/// joins the scheduler and flushes the spool) must leave nothing behind. Returns how many
/// messages the second daemon delivered.
fn settle(sink: &Sink, restart_at: Instant, dir: &Path, restart_ms: u64) -> Result<usize> {
    let mut last = (sink.messages().len(), Instant::now());
    let mut seen = (0, 0);
    wait_for("the sink quiet and every delivery logged", WAIT, || {
        let messages = sink.messages();
        if messages.len() != last.0 {
            last = (messages.len(), Instant::now());
            return None;
        }
        let since = messages.iter().filter(|m| m.at >= restart_at).count();
        let logged = delivered_lines_since(&dir.join("delivery.log"), restart_ms);
        seen = (since, logged);
        (last.1.elapsed() >= Duration::from_secs(1) && logged >= since).then_some(since)
    })
    .with_context(|| {
        format!(
            "{} messages at the sink after the restart, {} `delivered` lines logged since",
            seen.0, seen.1
        )
    })
}

/// `delivered` records of the delivery log written at or after `since_ms`. Records are
/// found by their opening field rather than by line, so that a line the first daemon left
/// unfinished (see [`log_lines_complete`]) cannot hide a record of the second.
fn delivered_lines_since(log: &Path, since_ms: u64) -> usize {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    // Each piece after a split starts with the record's time_ms digits.
    text.split(RECORD_START)
        .filter(|record| record.contains("\"outcome\":\"delivered\""))
        .filter(|record| leading_number(record).is_some_and(|t| t >= since_ms))
        .count()
}

/// No line of the delivery log may hold more than one record: a record cut short by
/// SIGKILL may stay behind as a torn line (it is printed), but the next daemon's first
/// record must start a line of its own rather than be glued onto it.
fn log_lines_complete(log: &Path) -> Result<()> {
    let text = std::fs::read_to_string(log).with_context(|| format!("{}", log.display()))?;
    for (number, line) in text.lines().enumerate() {
        let torn = !line.ends_with('}');
        let starts = line.starts_with(RECORD_START) || (torn && RECORD_START.starts_with(line));
        ensure!(
            starts && line.matches(RECORD_START).count() <= 1,
            "delivery log line {} is not one record: {line}",
            number + 1
        );
        if torn {
            println!("delivery log line {} torn by the kill: {line}", number + 1);
        }
    }
    Ok(())
}

fn leading_number(text: &str) -> Option<u64> {
    let digits: String = text.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// How often each marker reached the sink.
fn marker_counts(messages: &[Received]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for message in messages {
        if let Some(marker) = marker_in(&message.data) {
            *counts.entry(marker).or_insert(0) += 1;
        }
    }
    counts
}

fn marker_in(data: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(data);
    let start = text.find(MARKER_PREFIX)?;
    let marker: String = text[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    Some(marker)
}

fn missing_report(acked: &BTreeMap<String, String>, sink: &Sink) -> String {
    let counts = marker_counts(&sink.messages());
    let missing: Vec<String> = acked
        .iter()
        .filter(|(marker, _)| !counts.contains_key(*marker))
        .map(|(marker, id)| format!("{marker} ({id})"))
        .collect();
    format!(
        "{} of {} acknowledged messages lost: {missing:?}",
        missing.len(),
        acked.len()
    )
}

fn report(
    backend: Backend,
    acked: &BTreeMap<String, String>,
    delivered: &BTreeMap<String, usize>,
    at_kill: usize,
    after_restart: usize,
) {
    let duplicates: Vec<(&String, &usize)> = delivered.iter().filter(|(_, n)| **n > 1).collect();
    let extra: usize = duplicates.iter().map(|(_, n)| **n - 1).sum();
    let unacked: BTreeSet<&String> = delivered
        .keys()
        .filter(|m| !acked.contains_key(*m))
        .collect();
    println!(
        "{backend:?}: {} acknowledged; {at_kill} at the sink at SIGKILL, {after_restart} \
         delivered after the restart; {} messages duplicated ({extra} extra copies): {:?}; \
         {} delivered without an acknowledgement (cut off by the kill)",
        acked.len(),
        duplicates.len(),
        duplicates,
        unacked.len()
    );
}

/// Every delivered copy carries the original envelope.
fn check_envelopes(messages: &[Received]) -> Result<()> {
    for message in messages {
        let marker = marker_in(&message.data).unwrap_or_default();
        ensure!(
            message.mail_from == SENDER,
            "{marker}: MAIL FROM {:?}",
            message.mail_from
        );
        ensure!(
            message.rcpt_to.len() == 1 && message.rcpt_to[0].starts_with("rcpt"),
            "{marker}: RCPT TO {:?}",
            message.rcpt_to
        );
    }
    Ok(())
}

/// One client connection sending messages until the load is done or the daemon dies.
fn run_client(load: &Load, client: usize) {
    if let Err(error) = send_until_done(load, client) {
        if !load.killed.load(Ordering::SeqCst) {
            lock(&load.failures).push(format!("client {client}: {error:#}"));
        }
    }
}

fn send_until_done(load: &Load, client: usize) -> Result<()> {
    let (mut smtp, greeting) = SmtpClient::connect(load.port)?;
    ensure!(greeting.code == 220, "greeting {greeting}");
    smtp.expect(&format!("EHLO client{client}.crash.test"), 250)?;
    loop {
        let n = load.next.fetch_add(1, Ordering::SeqCst);
        if n >= MESSAGES || load.killed.load(Ordering::SeqCst) {
            let _ = smtp.command("QUIT");
            return Ok(());
        }
        let marker = format!("{MARKER_PREFIX}-{n:04}-{}", std::process::id());
        let rcpt = format!("rcpt{n}@d{}.crash.test", n % DOMAINS);
        let reply = smtp.send_message(SENDER, &[&rcpt], &body(&marker, n))?;
        let id = queued_id(&reply)?;
        lock(&load.acked).insert(marker, id);
        load.acked_count.fetch_add(1, Ordering::SeqCst);
    }
}

fn body(marker: &str, n: usize) -> String {
    let mut body = format!("From: <{SENDER}>\r\nSubject: delivery crash {n}\r\n\r\n{marker}\r\n");
    for line in 0..16 {
        body.push_str(&format!("filler line {line:02} {}\r\n", "y".repeat(60)));
    }
    body
}

/// A poisoned lock only means another client thread panicked, which join reports.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
