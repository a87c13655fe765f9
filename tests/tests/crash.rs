//! The durability promise, tested by killing the daemon: 16 concurrent clients submit up
//! to 400 messages, each with a unique marker in its body; once about half have been
//! acknowledged the daemon gets SIGKILL. Every message that got `250 <id> queued` must
//! then be in `spool list`, must open and decrypt with the spool key and contain its
//! marker, and no marker may appear in plain text in any file of the spool directory.
//! While the daemon runs, `spool list` is answered by the daemon (its admin socket)
//! rather than by opening a spool another process is writing.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use way2mail_smtp::MessageId;
use way2mail_tests::{
    for_each_backend, parse_spool_list, queued_id, Backend, Daemon, Signal, SmtpClient, TestConfig,
};

const MESSAGES: usize = 400;
const CLIENTS: usize = 16;
/// Common prefix of every marker: one search finds any of them in plain text.
const MARKER_PREFIX: &str = "W2MPLAINTEXTMARKER";
const SENDER: &str = "crash@example.org";

for_each_backend!(acknowledged_messages_survive_sigkill);

/// State shared by the client threads.
struct Load {
    port: u16,
    next: AtomicUsize,
    /// (id, marker) of every acknowledged message.
    acked: Mutex<Vec<(String, String)>>,
    acked_count: AtomicUsize,
    killed: AtomicBool,
    /// Failures seen before the kill, which are real errors.
    failures: Mutex<Vec<String>>,
}

fn acknowledged_messages_survive_sigkill(backend: Backend) -> anyhow::Result<()> {
    let mut daemon = Daemon::start(&TestConfig::new(backend))?;
    let load = Arc::new(Load {
        port: daemon.ports().mx,
        next: AtomicUsize::new(0),
        acked: Mutex::new(Vec::new()),
        acked_count: AtomicUsize::new(0),
        killed: AtomicBool::new(false),
        failures: Mutex::new(Vec::new()),
    });
    let workers: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let load = Arc::clone(&load);
            thread::spawn(move || run_client(&load, client))
        })
        .collect();

    wait_for_acks(&load, 1)?;
    spool_list_answered_while_running(&daemon)?;
    wait_for_acks(&load, MESSAGES / 2)?;
    load.killed.store(true, Ordering::SeqCst);
    daemon.signal(Signal::KILL)?;
    daemon.wait_exit()?;
    for worker in workers {
        if worker.join().is_err() {
            bail!("a client thread panicked");
        }
    }
    let failures = lock(&load.failures).clone();
    ensure!(
        failures.is_empty(),
        "clients failed before the kill: {failures:?}"
    );
    let acked = lock(&load.acked).clone();
    let sent = load.next.load(Ordering::SeqCst).min(MESSAGES);
    eprintln!(
        "{backend:?}: {} acknowledged of {sent} started at SIGKILL",
        acked.len()
    );

    let listed: BTreeSet<String> = daemon.spool_entries()?.into_iter().map(|e| e.id).collect();
    for (id, _) in &acked {
        ensure!(
            listed.contains(id),
            "acknowledged {id} missing after SIGKILL"
        );
    }
    ensure!(
        listed.len() <= sent,
        "{} listed but only {sent} sent",
        listed.len()
    );
    check_sealed_contents(&daemon, &acked)?;
    no_plaintext_in(&daemon.spool_dir())
}

fn wait_for_acks(load: &Load, count: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    while load.acked_count.load(Ordering::SeqCst) < count {
        let failures = lock(&load.failures).clone();
        ensure!(failures.is_empty(), "clients failed: {failures:?}");
        ensure!(
            Instant::now() < deadline,
            "only {} acknowledged after 120 s",
            load.acked_count.load(Ordering::SeqCst)
        );
        thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}

fn spool_list_answered_while_running(daemon: &Daemon) -> anyhow::Result<()> {
    let output = daemon.spool_list()?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    ensure!(
        output.status.success(),
        "spool list failed while the daemon runs:\n{said}"
    );
    let listed = parse_spool_list(&String::from_utf8_lossy(&output.stdout))?;
    ensure!(
        !listed.is_empty(),
        "spool list shows nothing after an ack:\n{said}"
    );
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

fn send_until_done(load: &Load, client: usize) -> anyhow::Result<()> {
    let (mut smtp, greeting) = SmtpClient::connect(load.port)?;
    ensure!(greeting.code == 220, "greeting {greeting}");
    smtp.expect(&format!("EHLO crash{client}.client.test"), 250)?;
    loop {
        let n = load.next.fetch_add(1, Ordering::SeqCst);
        if n >= MESSAGES {
            smtp.expect("QUIT", 221)?;
            return Ok(());
        }
        let marker = format!("{MARKER_PREFIX}-{n:04}-{}", std::process::id());
        let body = message_body(&marker, n);
        let reply = smtp.send_message(SENDER, &[&format!("rcpt{n}@example.net")], &body)?;
        let id = queued_id(&reply)?;
        lock(&load.acked).push((id, marker));
        load.acked_count.fetch_add(1, Ordering::SeqCst);
    }
}

fn message_body(marker: &str, n: usize) -> String {
    let mut body = format!("From: <{SENDER}>\r\nSubject: crash test {n}\r\n\r\n{marker}\r\n");
    for line in 0..24 {
        body.push_str(&format!("filler line {line:02} {}\r\n", "x".repeat(64)));
    }
    body
}

/// Opens the spool the way delivery would and checks each acknowledged message.
fn check_sealed_contents(daemon: &Daemon, acked: &[(String, String)]) -> anyhow::Result<()> {
    let spool = daemon.open_spool()?;
    for (id, marker) in acked {
        let message_id: MessageId = id.parse().with_context(|| format!("parsing id {id}"))?;
        let (envelope, content) = spool
            .read(&message_id)
            .with_context(|| format!("reading {id}"))?
            .with_context(|| format!("{id} listed but not readable"))?;
        ensure!(
            envelope.sender == SENDER,
            "{id}: sender {:?}",
            envelope.sender
        );
        ensure!(
            envelope.recipients.len() == 1,
            "{id}: {:?}",
            envelope.recipients
        );
        ensure!(
            find(&content, marker.as_bytes()),
            "{id}: content does not contain its marker {marker}"
        );
    }
    Ok(())
}

/// Every file under the spool directory, searched for the marker prefix.
fn no_plaintext_in(dir: &Path) -> anyhow::Result<()> {
    let mut stack = vec![dir.to_path_buf()];
    let mut files = 0;
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            for entry in std::fs::read_dir(&path)? {
                stack.push(entry?.path());
            }
            continue;
        }
        files += 1;
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        ensure!(
            !find(&bytes, MARKER_PREFIX.as_bytes()),
            "message content in plain text in {}",
            path.display()
        );
    }
    ensure!(files > 0, "no files under {}", dir.display());
    Ok(())
}

fn find(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

/// A poisoned lock only means another client thread panicked, which join reports.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
