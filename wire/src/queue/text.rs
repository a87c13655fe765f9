//! The queue as operators read it, shared by `way2mail queue …` and `way2mail-mta
//! spool …` so that both print the same thing: mailq's listing (a message line,
//! then one line per recipient), qshape's table, and the JSON line of a message
//! (the fields `spool list --json` has always had, and the newer ones).

use std::io::{self, Write};

use super::{QueueChangeReport, QueueMessage, QueueState, QueueSummary};

/// `42s`, `17m`, `5h`, `3d`: an operator's age, like mailq's.
pub fn age(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

fn sender(m: &QueueMessage) -> &str {
    if m.sender.is_empty() {
        "<>"
    } else {
        &m.sender
    }
}

/// One message as a JSON object.
pub fn json(m: &QueueMessage, now_ms: u64) -> serde_json::Value {
    let recipients: Vec<_> = m
        .recipients
        .iter()
        .map(|r| {
            serde_json::json!({
                "address": r.address,
                "state": r.state,
                "attempts": r.attempts,
                "last_error": r.last_error,
            })
        })
        .collect();
    serde_json::json!({
        "id": m.id,
        "tenant": m.tenant,
        "sender": sender(m),
        "state": m.state.as_str(),
        "recipients": m.recipients.len(),
        "size": m.size,
        "received_at_ms": m.received_at_ms,
        "age_secs": now_ms.saturating_sub(m.received_at_ms) / 1000,
        "attempts": m.attempts,
        "leased": m.state == QueueState::Active,
        "held": m.state == QueueState::Held,
        "next_attempt_ms": m.next_attempt_ms,
        "recipient_states": recipients,
    })
}

/// The listing: a table (or JSON lines) of `messages`.
pub fn list(
    out: &mut impl Write,
    messages: &[QueueMessage],
    as_json: bool,
    now_ms: u64,
) -> io::Result<()> {
    if as_json {
        for m in messages {
            writeln!(out, "{}", json(m, now_ms))?;
        }
        return Ok(());
    }
    writeln!(
        out,
        "{:<26} {:<8} {:<40} {:>5} {:>10} {:>8}",
        "ID", "STATE", "SENDER", "RCPTS", "SIZE", "AGE"
    )?;
    for m in messages {
        let age_s = now_ms.saturating_sub(m.received_at_ms) / 1000;
        writeln!(
            out,
            "{:<26} {:<8} {:<40} {:>5} {:>10} {:>8}",
            m.id,
            m.state.as_str(),
            sender(m),
            m.recipients.len(),
            m.size,
            age(age_s)
        )?;
        for r in &m.recipients {
            writeln!(out, "    {}", recipient_line(m, r, now_ms))?;
        }
    }
    Ok(())
}

/// `you@example.net pending attempts=2 next=in-4m last="451 4.7.1 try later"`.
fn recipient_line(m: &QueueMessage, r: &super::QueueRecipient, now_ms: u64) -> String {
    let mut line = format!("{} {} attempts={}", r.address, r.state, r.attempts);
    if r.state == "pending" {
        match (m.state, m.next_attempt_ms) {
            (QueueState::Active, _) => line.push_str(" next=in-delivery"),
            (QueueState::Held, _) => line.push_str(" next=held"),
            (_, Some(t)) if t > now_ms => {
                line.push_str(&format!(" next=in-{}", age((t - now_ms) / 1000)));
            }
            _ => line.push_str(" next=now"),
        }
    }
    if let Some(e) = &r.last_error {
        // Quoted so that a reply text can never look like another field or line.
        line.push_str(&format!(" last={e:?}"));
    }
    line
}

/// qshape's table: a TOTAL line, then one line per domain, by age bucket.
pub fn summary(out: &mut impl Write, s: &QueueSummary) -> io::Result<()> {
    let width = s
        .domains
        .iter()
        .map(|r| r.domain.len())
        .max()
        .unwrap_or(0)
        .clamp(6, 60);
    write!(out, "{:>width$} {:>6}", "", "T")?;
    for (i, b) in s.buckets_min.iter().enumerate() {
        let label = if i + 1 == s.buckets_min.len() {
            format!("{b}+")
        } else {
            b.to_string()
        };
        write!(out, " {label:>5}")?;
    }
    writeln!(out)?;
    for row in std::iter::once(&s.total).chain(&s.domains) {
        write!(out, "{:>width$} {:>6}", row.domain, row.messages)?;
        for n in &row.by_age {
            write!(out, " {n:>5}")?;
        }
        writeln!(out)?;
    }
    let states: Vec<String> = s
        .states
        .iter()
        .map(|(state, n)| format!("{} {n}", state.as_str()))
        .collect();
    if !states.is_empty() {
        writeln!(out, "(ages in minutes; {})", states.join(", "))?;
    }
    Ok(())
}

/// What a change did, for people.
pub fn change(out: &mut impl Write, r: &QueueChangeReport) -> io::Result<()> {
    let action = r.action.map_or("change", |a| a.as_str());
    let verb = if r.dry_run { "would" } else { "did" };
    writeln!(
        out,
        "{action}: {} message(s) {verb} change, {} skipped{}",
        r.changed.len(),
        r.skipped.len(),
        if r.notices > 0 {
            format!(", {} bounce(s) queued", r.notices)
        } else {
            String::new()
        }
    )?;
    for id in &r.changed {
        writeln!(out, "  {id}")?;
    }
    for s in &r.skipped {
        writeln!(out, "  {} skipped: {}", s.id, s.why)?;
    }
    Ok(())
}
