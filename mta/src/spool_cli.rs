//! `way2mail-mta spool list`: reads the spool directly, for operators and crash
//! tests, while the daemon is stopped (sled's lock refuses a second opener).

use std::io::Write;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use way2mail_queue::{Spool, SpoolKey};

use crate::config::Settings;

pub fn list(settings: &Settings, json: bool) -> Result<ExitCode> {
    let cfg = &settings.raw.spool;
    if !cfg.key_file.exists() {
        bail!(
            "spool.key_file {} does not exist: nothing was ever spooled with this configuration",
            cfg.key_file.display()
        );
    }
    let key = SpoolKey::load_or_create(&cfg.key_file)
        .with_context(|| format!("spool.key_file {}", cfg.key_file.display()))?;
    let spool = Spool::open(&cfg.path, key)?;
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut out = std::io::stdout().lock();
    if !json {
        writeln!(
            out,
            "{:<26} {:<40} {:>5} {:>10} {:>8}",
            "ID", "SENDER", "RCPTS", "SIZE", "AGE"
        )?;
    }
    let messages = spool.list()?;
    for m in &messages {
        let sender = if m.sender.is_empty() { "<>" } else { &m.sender };
        let age_s = now_ms.saturating_sub(m.received_at_ms) / 1000;
        if json {
            let line = serde_json::json!({
                "id": m.id.to_string(),
                "sender": sender,
                "recipients": m.recipients,
                "size": m.size,
                "age_secs": age_s,
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
        }
    }
    if !json {
        writeln!(out, "{} message(s)", messages.len())?;
    }
    Ok(ExitCode::SUCCESS)
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
