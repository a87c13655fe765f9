//! The live queue ops of the admin socket (`queue.summary`, `queue.list`,
//! `queue.show`, `queue.change`, `delivery.log`): what `way2mail queue …` reaches
//! through control and `way2mail-mta spool …` reaches directly while the daemon
//! runs. Reading walks the spool one envelope at a time (the summary keeps counts,
//! the listing at most its limit); changes are made in chunks through
//! `Spool::change_messages`, which leaves messages in delivery alone.

use way2mail_daemon::time::now_ms;
use way2mail_queue::{
    Change, Changed, DeliveryOutcome, DeliveryRecord, LogFilter, Placement, Spool, Summary,
};
use way2mail_smtp::{Envelope, MessageId, RecipientState};
use way2mail_wire::mta_admin::AdminResult;
use way2mail_wire::protocol::ErrorCode;
use way2mail_wire::queue::{
    QueueAction, QueueChangeReport, QueueFilter, QueueListing, QueueLogEntry, QueueMessage,
    QueueRecipient, QueueSelection, QueueSkipped, QueueState, QueueSummaryBuilder, MAX_LOG_RECORDS,
};

use super::answer::{failure, internal, Answer};
use crate::delivery::bounce;

/// Messages a listing shows when the request names no limit.
const DEFAULT_LIST_LIMIT: u64 = 1000;
/// Messages changed per atomic batch (a bounce holds its notice in memory).
const CHUNK: usize = 256;

/// The message as the queue commands show it.
pub fn message_of(s: Summary) -> QueueMessage {
    let state = if s.held_since_ms.is_some() {
        QueueState::Held
    } else if s.leased {
        QueueState::Active
    } else if s.attempts == 0 {
        QueueState::Incoming
    } else {
        QueueState::Deferred
    };
    QueueMessage {
        id: s.id.to_string(),
        tenant: s.tenant,
        sender: s.sender,
        size: s.size,
        received_at_ms: s.received_at_ms,
        state,
        attempts: s.attempts,
        next_attempt_ms: s.held_since_ms.or(s.next_attempt_ms),
        recipients: s
            .recipient_states
            .into_iter()
            .map(|r| QueueRecipient {
                address: r.address,
                state: recipient_state(r.state).to_owned(),
                attempts: r.attempts,
                last_error: r.last_error,
            })
            .collect(),
    }
}

pub fn recipient_state(state: RecipientState) -> &'static str {
    match state {
        RecipientState::Pending => "pending",
        RecipientState::Delivered => "delivered",
        RecipientState::Failed => "failed",
    }
}

fn read_failed(e: &way2mail_queue::Error) -> way2mail_wire::protocol::ErrorBody {
    internal("reading the queue", e)
}

pub fn summary(spool: &Spool, filter: &QueueFilter) -> Answer {
    let now = now_ms();
    let mut builder = QueueSummaryBuilder::new(now);
    spool
        .visit(|s| {
            let m = message_of(s);
            if filter.matches(&m, now) {
                builder.add(&m);
            }
        })
        .map_err(|e| read_failed(&e))?;
    Ok(AdminResult::QueueSummary(builder.finish()))
}

pub fn list(spool: &Spool, filter: &QueueFilter, limit: Option<u64>) -> Answer {
    let now = now_ms();
    let limit = limit.unwrap_or(DEFAULT_LIST_LIMIT);
    let mut listing = QueueListing {
        messages: Vec::new(),
        matched: 0,
    };
    spool
        .visit(|s| {
            let m = message_of(s);
            if filter.matches(&m, now) {
                listing.matched += 1;
                if (listing.messages.len() as u64) < limit {
                    listing.messages.push(m);
                }
            }
        })
        .map_err(|e| read_failed(&e))?;
    Ok(AdminResult::QueueListing(listing))
}

fn parse_id(text: &str) -> Result<MessageId, way2mail_wire::protocol::ErrorBody> {
    text.parse::<MessageId>().map_err(|_| {
        failure(
            ErrorCode::Invalid,
            format!(
                "{:?} is not a queue id",
                way2mail_wire::protocol::shorten(text)
            ),
        )
    })
}

pub fn show(spool: &Spool, id: &str) -> Answer {
    let id = parse_id(id)?;
    let Some(summary) = spool.summary(&id).map_err(|e| read_failed(&e))? else {
        return Err(failure(
            ErrorCode::NotFound,
            format!("message {id} is not in the queue"),
        ));
    };
    let records = spool
        .delivery_log(LogFilter {
            message: Some(id),
            ..LogFilter::default()
        })
        .map_err(|e| internal("reading the delivery log", &e))?;
    Ok(AdminResult::QueueMessage {
        message: message_of(summary),
        log: records.into_iter().map(log_entry).collect(),
    })
}

pub fn log_entry(r: DeliveryRecord) -> QueueLogEntry {
    QueueLogEntry {
        time_ms: r.time_ms,
        outcome: crate::delivery::log::outcome_word(&r.outcome).to_owned(),
        message_id: r.message_id,
        recipient: r.recipient,
        next_hop: r.next_hop,
        ip: r.ip.map(|ip| ip.to_string()),
        tls: r.tls,
        reply: r.reply,
        attempt: r.attempt,
        queue_time_ms: r.queue_time_ms,
        category: r.category,
        scan: r.scan.map(|s| s.to_string()),
    }
}

/// `delivery.log`: the newest `limit` records that match, in time order.
pub fn delivery_log(
    spool: &Spool,
    message: Option<&str>,
    recipient: Option<String>,
    since_ms: Option<u64>,
    limit: Option<u64>,
) -> Answer {
    let message = message.map(parse_id).transpose()?;
    let limit = limit.unwrap_or(MAX_LOG_RECORDS).min(MAX_LOG_RECORDS) as usize;
    let mut records = spool
        .delivery_log(LogFilter {
            tenant: None,
            message,
            recipient,
            since_ms,
            until_ms: None,
        })
        .map_err(|e| internal("reading the delivery log", &e))?;
    records.sort_by_key(|r| r.time_ms);
    let matched = records.len() as u64;
    let cut = records.len().saturating_sub(limit);
    Ok(AdminResult::DeliveryLog {
        records: records.drain(cut..).map(log_entry).collect(),
        matched,
    })
}

/// `queue.change`: the selected messages, in chunks, each through `decide`.
pub fn change(
    spool: &Spool,
    hostname: &str,
    action: QueueAction,
    selection: &QueueSelection,
    dry_run: bool,
) -> Answer {
    if let Some(problem) = selection.problem() {
        return Err(failure(ErrorCode::Invalid, problem.to_owned()));
    }
    for id in &selection.ids {
        parse_id(id)?;
    }
    let now = now_ms();
    let mut report = QueueChangeReport {
        action: Some(action),
        dry_run,
        ..QueueChangeReport::default()
    };
    let mut selected = Vec::new();
    spool
        .visit(|s| {
            let m = message_of(s);
            if selection.matches(&m, now) {
                // Active mail matches a filter but is skipped with a reason below.
                if let Ok(id) = m.id.parse::<MessageId>() {
                    selected.push(id);
                }
            }
        })
        .map_err(|e| read_failed(&e))?;
    let found: std::collections::HashSet<String> = if selection.ids.is_empty() {
        Default::default()
    } else {
        selected.iter().map(MessageId::to_string).collect()
    };
    for id in &selection.ids {
        if !found.contains(id) {
            report.skipped.push(QueueSkipped {
                id: id.clone(),
                why: "not in the queue, or not matching the filter".into(),
            });
        }
    }
    for chunk in selected.chunks(CHUNK) {
        let mut notices = 0u64;
        let results = spool
            .change_messages(chunk, dry_run, |id, envelope, placement| {
                let change = decide(action, placement, now)?;
                Ok(match change {
                    Decided::Keep(change) => change,
                    Decided::Remove => {
                        let (change, notice) =
                            removal(spool, hostname, action, *id, envelope, now, dry_run);
                        notices += u64::from(notice);
                        change
                    }
                })
            })
            .map_err(|e| internal("changing the queue", &e))?;
        report.notices += notices;
        for (id, result) in results {
            match result {
                Changed::Done => report.changed.push(id.to_string()),
                Changed::Skipped(why) => report.skipped.push(QueueSkipped {
                    id: id.to_string(),
                    why,
                }),
            }
        }
    }
    if !dry_run {
        let word = match action {
            QueueAction::Bounce => Some("bounced"),
            QueueAction::Delete => Some("deleted"),
            _ => None,
        };
        if let Some(word) = word {
            for _ in &report.changed {
                crate::metrics::delivery(word, None, None);
            }
        }
    }
    tracing::info!(
        target: "way2mail::admin",
        action = action.as_str(),
        dry_run,
        selection = %selection.describe(),
        changed = report.changed.len(),
        skipped = report.skipped.len(),
        notices = report.notices,
        "queue change"
    );
    Ok(AdminResult::QueueChanged(report))
}

enum Decided {
    Keep(Change),
    Remove,
}

/// What `action` does to a message at `placement`, or why it does not apply.
fn decide(action: QueueAction, placement: Placement, now: u64) -> Result<Decided, String> {
    let held = matches!(placement, Placement::Held(_));
    match action {
        QueueAction::Hold if held => Err("already held".into()),
        QueueAction::Hold => Ok(Decided::Keep(Change::Hold)),
        QueueAction::Release if held => Ok(Decided::Keep(Change::Schedule { due_ms: now })),
        QueueAction::Release => Err("not held".into()),
        QueueAction::Retry if held => Err("held: release it instead".into()),
        QueueAction::Retry => Ok(Decided::Keep(Change::Schedule { due_ms: now })),
        QueueAction::Bounce | QueueAction::Delete => Ok(Decided::Remove),
    }
}

/// The removal of a message: a delivery log record per pending recipient and, for
/// `bounce`, the notice to its sender (not built in a dry run). Also says whether a
/// notice is queued.
fn removal(
    spool: &Spool,
    hostname: &str,
    action: QueueAction,
    id: MessageId,
    envelope: &Envelope,
    now: u64,
    dry_run: bool,
) -> (Change, bool) {
    let (outcome, reply) = match action {
        QueueAction::Bounce => (DeliveryOutcome::Bounced, bounce::REMOVED_BY_OPERATOR),
        _ => (
            DeliveryOutcome::Deleted,
            "deleted from the queue by the operator",
        ),
    };
    let pending: Vec<usize> = envelope
        .recipients
        .iter()
        .enumerate()
        .filter(|(_, r)| r.state == RecipientState::Pending)
        .map(|(i, _)| i)
        .collect();
    let queue_time_ms = now.saturating_sub(envelope.received_at_ms);
    let log = pending
        .iter()
        .map(|&i| DeliveryRecord {
            time_ms: now,
            outcome: outcome.clone(),
            message_id: id.to_string(),
            recipient: envelope.recipients[i].address.clone(),
            next_hop: None,
            ip: None,
            tls: None,
            reply: Some(reply.to_owned()),
            attempt: envelope.attempts,
            queue_time_ms,
            tags: envelope.tags.clone(),
            metadata: envelope.metadata.clone(),
            category: None,
            scan: envelope.scan.clone(),
        })
        .collect();
    let notice = match (action, dry_run) {
        (QueueAction::Bounce, false) => match spool.summary(&id).and_then(|s| {
            let size = s.map_or(0, |s| s.size);
            Ok((bounce::original_from_spool(spool, &id, size)?, size))
        }) {
            Ok((original, size)) => bounce::removed_by_operator(
                hostname,
                id,
                envelope,
                &original,
                usize::try_from(size).unwrap_or(usize::MAX),
                &pending,
                now,
            ),
            _ => {
                tracing::error!(%id, "message body unreadable: removed without a bounce");
                None
            }
        },
        _ => None,
    };
    let queued = notice.is_some();
    let notice = notice.map(Box::new);
    (Change::Remove { log, notice }, queued)
}
