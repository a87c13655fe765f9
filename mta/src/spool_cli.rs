//! `way2mail-mta spool list`, `spool log` and `spool verify`: read the spool
//! directly, for operators and crash tests, while the daemon is stopped (the spool
//! lock refuses a second opener). Each runs under a watchdog, like the daemon's
//! start: a damaged spool gives an error, never a hang.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use way2mail_daemon::time::now_ms;
use way2mail_daemon::watchdog::{self, Progress};
use way2mail_queue::{LogFilter, RecipientSummary, Spool, SpoolOptions, VerifyReport};
use way2mail_seal::{Keyring, MasterKey};
use way2mail_smtp::{MessageId, RecipientState};

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
    };
    Ok(Spool::open_with(path, keyring, &options)?)
}

/// `way2mail-mta spool log`: the delivery records kept in the spool, filtered.
pub fn log(
    settings: &Settings,
    message: Option<&str>,
    recipient: Option<String>,
    hours: Option<u64>,
) -> Result<ExitCode> {
    let message = message
        .map(|m| m.parse::<MessageId>())
        .transpose()
        .context("--message: not a queue id")?;
    let now_ms = now_ms();
    let filter = LogFilter {
        tenant: None,
        message,
        recipient,
        since_ms: hours.map(|h| now_ms.saturating_sub(h.saturating_mul(3_600_000))),
        until_ms: None,
    };
    let records = bounded(settings, move |path, keyring, progress| {
        Ok(open(path, keyring, progress)?.delivery_log(filter)?)
    })?;
    let mut out = std::io::stdout().lock();
    for record in records {
        writeln!(out, "{}", serde_json::to_string(&record)?)?;
    }
    Ok(ExitCode::SUCCESS)
}

pub fn list(settings: &Settings, json: bool) -> Result<ExitCode> {
    let messages = bounded(settings, |path, keyring, progress| {
        Ok(open(path, keyring, progress)?.list()?)
    })?;
    let now_ms = now_ms();
    let mut out = std::io::stdout().lock();
    if !json {
        writeln!(
            out,
            "{:<26} {:<40} {:>5} {:>10} {:>8}",
            "ID", "SENDER", "RCPTS", "SIZE", "AGE"
        )?;
    }
    for m in &messages {
        let sender = if m.sender.is_empty() { "<>" } else { &m.sender };
        let age_s = now_ms.saturating_sub(m.received_at_ms) / 1000;
        if json {
            let recipients: Vec<_> = m
                .recipient_states
                .iter()
                .map(|r| {
                    serde_json::json!({
                        "address": r.address,
                        "state": state_name(r.state),
                        "attempts": r.attempts,
                        "last_error": r.last_error,
                    })
                })
                .collect();
            let line = serde_json::json!({
                "id": m.id.to_string(),
                "sender": sender,
                "recipients": m.recipients,
                "size": m.size,
                "age_secs": age_s,
                "leased": m.leased,
                "next_attempt_ms": m.next_attempt_ms,
                "recipient_states": recipients,
            });
            writeln!(out, "{line}")?;
        } else {
            writeln!(
                out,
                "{:<26} {:<40} {:>5} {:>10} {:>8}",
                m.id,
                sender,
                m.recipients,
                m.size,
                age(age_s)
            )?;
            for r in &m.recipient_states {
                writeln!(
                    out,
                    "    {}",
                    recipient_line(r, m.leased, m.next_attempt_ms, now_ms)
                )?;
            }
        }
    }
    if !json {
        writeln!(out, "{} message(s)", messages.len())?;
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

fn state_name(state: RecipientState) -> &'static str {
    match state {
        RecipientState::Pending => "pending",
        RecipientState::Delivered => "delivered",
        RecipientState::Failed => "failed",
    }
}

/// `you@example.net pending attempts=2 next=in 4m last="451 4.7.1 try later"`.
fn recipient_line(r: &RecipientSummary, leased: bool, next_ms: Option<u64>, now_ms: u64) -> String {
    let mut line = format!(
        "{} {} attempts={}",
        r.address,
        state_name(r.state),
        r.attempts
    );
    if r.state == RecipientState::Pending {
        match (leased, next_ms) {
            (true, _) => line.push_str(" next=in-delivery"),
            (false, Some(t)) if t > now_ms => {
                line.push_str(&format!(" next=in-{}", age((t - now_ms) / 1000)));
            }
            (false, _) => line.push_str(" next=now"),
        }
    }
    if let Some(e) = &r.last_error {
        // Quoted so that a reply text can never look like another field or line.
        line.push_str(&format!(" last={:?}", e));
    }
    line
}

/// `42s`, `17m`, `5h`, `3d`: an operator's age, like mailq's.
fn age(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}
