//! `way2mail-mta spool list`, `spool summary`, `spool log` and `spool verify`, for
//! operators and crash tests. While the daemon runs, `list`, `summary` and `log`
//! ask it through its admin socket (root, or a uid in `admin.allowed_uids`); when
//! none answers they read the spool files directly (the spool lock refuses a
//! second opener while a daemon holds it). `verify` always reads the files, with
//! the daemon stopped. Reading the files runs under a watchdog, like the daemon's
//! start: a damaged spool gives an error, never a hang.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use way2mail_daemon::time::now_ms;
use way2mail_daemon::watchdog::{self, Progress};
use way2mail_queue::{LogFilter, Spool, SpoolOptions, VerifyReport};
use way2mail_seal::{Keyring, MasterKey};
use way2mail_smtp::MessageId;
use way2mail_wire::mta_admin::{AdminClient, AdminOp, AdminResult};
use way2mail_wire::queue::{text, QueueFilter, QueueLogEntry, QueueMessage, QueueSummaryBuilder};

use crate::admin::queue;
use crate::config::Settings;

/// What an operator does about a spool that cannot be opened.
pub const DAMAGED_HINT: &str = "Check it with `way2mail-mta spool verify` (with the daemon \
    stopped) and restore it from a backup (`way2mail backup restore`) if it is damaged";

/// The keyring, without creating a key that was never there.
fn keyring(settings: &Settings) -> Result<Keyring> {
    let cfg = &settings.raw.spool;
    if !cfg.key_file.exists() {
        bail!(
            "spool.key_file {} does not exist: nothing was ever spooled with this configuration",
            cfg.key_file.display()
        );
    }
    // The key's errors name it and its file.
    let master = MasterKey::load_or_create_named(&cfg.key_file, crate::config::SPOOL_KEY)?;
    Keyring::open_existing(&cfg.keyring_file, master)
        .with_context(|| format!("spool.keyring_file {}", cfg.keyring_file.display()))
}

/// Runs `work` on the spool's files under a watchdog bounded by
/// `spool.open_timeout_secs` without progress.
fn bounded<T: Send + 'static>(
    settings: &Settings,
    work: impl FnOnce(&Path, Keyring, &Progress) -> Result<T> + Send + 'static,
) -> Result<T> {
    let keyring = keyring(settings)?;
    let cfg = &settings.raw.spool;
    let path = cfg.path.clone();
    let progress = Progress::new();
    let ticks = progress.clone();
    let what = format!("reading the spool {}", path.display());
    watchdog::bounded(&what, cfg.open_timeout, &progress, move || {
        work(&path, keyring, &ticks)
    })
    .map_err(|stuck| anyhow::anyhow!("{stuck}. {DAMAGED_HINT}"))?
    .with_context(|| what)
}

/// Opens the spool for reading (refusing one behind its anchor).
fn open(path: &Path, keyring: Keyring, progress: &Progress) -> Result<Spool> {
    let options = SpoolOptions {
        accept_rollback: false,
        progress: progress.clone(),
        cache_bytes: None,
    };
    Ok(Spool::open_with(path, keyring, &options)?)
}

/// The running daemon's admin socket, when one answers there: the live commands
/// ask it; without one they open the spool files themselves.
fn live(settings: &Settings) -> Option<AdminClient> {
    let admin = settings.admin.as_ref()?;
    AdminClient::connect(&admin.socket, LIVE_TIMEOUT).ok()
}

/// How long a live command waits for the daemon's answer (a large queue is walked
/// whole for a summary).
const LIVE_TIMEOUT: Duration = Duration::from_secs(300);

/// Most messages `spool list` shows from a running daemon.
const LIVE_LIST_LIMIT: u64 = 100_000;

fn ask(client: &mut AdminClient, op: AdminOp) -> Result<AdminResult> {
    let name = op.name();
    client.call(op).with_context(|| {
        format!(
            "asking the running daemon ({name} on its admin socket {})",
            client.path().display()
        )
    })
}

fn unexpected(answer: AdminResult) -> anyhow::Error {
    anyhow::anyhow!("unexpected answer from the daemon: {answer:?}")
}

/// `way2mail-mta spool log`: the delivery records kept in the spool, filtered.
pub fn log(
    settings: &Settings,
    message: Option<&str>,
    recipient: Option<String>,
    hours: Option<u64>,
) -> Result<ExitCode> {
    let message_id = message
        .map(|m| m.parse::<MessageId>())
        .transpose()
        .context("--message: not a queue id")?;
    let now_ms = now_ms();
    let since_ms = hours.map(|h| now_ms.saturating_sub(h.saturating_mul(3_600_000)));
    let records: Vec<QueueLogEntry> = match live(settings) {
        Some(mut client) => {
            let op = AdminOp::DeliveryLog {
                message: message.map(str::to_owned),
                recipient,
                since_ms,
                limit: None,
            };
            match ask(&mut client, op)? {
                AdminResult::DeliveryLog { records, matched } => {
                    if matched > records.len() as u64 {
                        eprintln!(
                            "way2mail-mta: {matched} records matched; the newest {} are shown \
                             (narrow with --hours, --message or --recipient)",
                            records.len()
                        );
                    }
                    records
                }
                other => return Err(unexpected(other)),
            }
        }
        None => {
            let filter = LogFilter {
                tenant: None,
                message: message_id,
                recipient,
                since_ms,
                until_ms: None,
            };
            bounded(settings, move |path, keyring, progress| {
                Ok(open(path, keyring, progress)?.delivery_log(filter)?)
            })?
            .into_iter()
            .map(queue::log_entry)
            .collect()
        }
    };
    let mut out = std::io::stdout().lock();
    for record in records {
        writeln!(out, "{}", serde_json::to_string(&record)?)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `way2mail-mta spool list`: every queued message with its recipients.
pub fn list(settings: &Settings, json: bool) -> Result<ExitCode> {
    let (messages, matched) = match live(settings) {
        Some(mut client) => {
            let op = AdminOp::QueueList {
                filter: QueueFilter::default(),
                limit: Some(LIVE_LIST_LIMIT),
            };
            match ask(&mut client, op)? {
                AdminResult::QueueListing(l) => (l.messages, l.matched),
                other => return Err(unexpected(other)),
            }
        }
        None => {
            let all: Vec<QueueMessage> = bounded(settings, |path, keyring, progress| {
                Ok(open(path, keyring, progress)?.list()?)
            })?
            .into_iter()
            .map(queue::message_of)
            .collect();
            let n = all.len() as u64;
            (all, n)
        }
    };
    let mut out = std::io::stdout().lock();
    text::list(&mut out, &messages, json, now_ms())?;
    if !json {
        writeln!(out, "{} message(s)", matched)?;
    }
    if matched > messages.len() as u64 {
        eprintln!(
            "way2mail-mta: {matched} messages queued; the first {} are shown \
             (`way2mail queue list` filters)",
            messages.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `way2mail-mta spool summary`: messages per recipient domain by age (qshape).
pub fn summary(settings: &Settings, json: bool) -> Result<ExitCode> {
    let summary = match live(settings) {
        Some(mut client) => {
            let op = AdminOp::QueueSummary {
                filter: QueueFilter::default(),
            };
            match ask(&mut client, op)? {
                AdminResult::QueueSummary(s) => s,
                other => return Err(unexpected(other)),
            }
        }
        None => {
            let now = now_ms();
            bounded(settings, move |path, keyring, progress| {
                let mut builder = QueueSummaryBuilder::new(now);
                open(path, keyring, progress)?.visit(|s| builder.add(&queue::message_of(s)))?;
                Ok(builder.finish())
            })?
        }
    };
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string(&summary)?)?;
    } else {
        text::summary(&mut out, &summary)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `way2mail-mta spool verify`: every record and the anchor checked, nothing
/// changed. Exit 0 when clean, 1 when a problem was found.
pub fn verify(settings: &Settings) -> Result<ExitCode> {
    let report = bounded(settings, |path, keyring, progress| {
        Ok(way2mail_queue::verify(path, &keyring, progress)?)
    })?;
    let mut out = std::io::stdout().lock();
    print_report(&mut out, &report)?;
    Ok(if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_report(out: &mut impl Write, r: &VerifyReport) -> std::io::Result<()> {
    let seq = |s: Option<u64>| s.map_or_else(|| "none".to_owned(), |n| n.to_string());
    writeln!(out, "spool {}", r.path.display())?;
    writeln!(
        out,
        "  commit {}, anchor {}",
        seq(r.commit_seq),
        seq(r.anchor_seq)
    )?;
    for (count, what) in [
        (r.envelopes, "envelopes"),
        (r.bodies, "bodies"),
        (r.scheduled, "schedule entries"),
        (r.leased, "leases"),
        (r.log_records, "delivery log records"),
        (r.idempotency, "idempotency records of API requests"),
        (
            r.quarantined,
            "quarantined records (kept by an earlier recovery)",
        ),
        (
            r.erased,
            "records of erased tenants (deleted at the next start)",
        ),
        (r.metadata, "metadata records"),
    ] {
        writeln!(out, "  {count:>10}  {what}")?;
    }
    if r.is_clean() {
        return writeln!(out, "spool verify: no problem found");
    }
    writeln!(out, "problems:")?;
    for (problem, count) in &r.problems {
        writeln!(out, "  {count:>10}  {}", problem.describe())?;
    }
    writeln!(out, "first problems:")?;
    for example in &r.examples {
        writeln!(out, "  {example}")?;
    }
    writeln!(
        out,
        "spool verify: {} problem(s) found. {DAMAGED_HINT}; the daemon's recovery \
         quarantines records that do not open",
        r.problem_count()
    )
}

/// `way2mail-mta drain`: asks the running daemon to stop taking mail and deliver its
/// queue (`drain.rs`); with `stop`, it stops once the queue is empty. With `wait`,
/// follows the queue until the daemon stopped (at most that long): exit 0 once it
/// did, 1 when the time ran out first.
pub fn drain(settings: &Settings, op: AdminOp, wait: Option<Duration>) -> Result<ExitCode> {
    let stop = matches!(
        op,
        AdminOp::Drain {
            stop_when_empty: true,
            ..
        }
    );
    let Some(mut client) = live(settings) else {
        anyhow::bail!(
            "no daemon answers on the admin socket ({}): nothing to drain",
            settings.admin.as_ref().map_or_else(
                || "admin.socket is empty".into(),
                |a| a.socket.display().to_string()
            )
        );
    };
    let (started, queued) = match ask(&mut client, op)? {
        AdminResult::Draining { started, queued } => (started, queued),
        other => return Err(unexpected(other)),
    };
    println!(
        "{}: {queued} message(s) queued{}",
        if started {
            "draining"
        } else {
            "already draining"
        },
        if stop {
            "; the daemon stops once the queue is empty"
        } else {
            ""
        }
    );
    let Some(wait) = wait else {
        return Ok(ExitCode::SUCCESS);
    };
    let deadline = std::time::Instant::now() + wait;
    let mut last = Some(queued);
    while std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_secs(1));
        // The daemon is gone once its admin socket no longer answers.
        let Some(mut client) = live(settings) else {
            println!("the daemon stopped");
            return Ok(ExitCode::SUCCESS);
        };
        // Asking again changes nothing (no new peer) and answers the spool's
        // message count, which is kept, where a summary would walk the queue.
        let again = AdminOp::Drain {
            stop_when_empty: stop,
            handover: None,
            peer_name: None,
        };
        let queued = match client.call(again) {
            Ok(AdminResult::Draining { queued, .. }) => Some(queued),
            _ => None,
        };
        if queued.is_some() && queued != last {
            println!("{} message(s) queued", queued.unwrap_or_default());
            last = queued;
        }
    }
    eprintln!("still draining after {} s", wait.as_secs());
    Ok(ExitCode::FAILURE)
}
