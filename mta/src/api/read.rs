//! The reading endpoints: what became of a message the tenant sent. Read from the
//! spool (the envelope, by one point read, while the message is queued) and from
//! the sealed delivery log (its outcomes, within the tenant's retention), off the
//! core on tokio's blocking pool. A message of another tenant is answered as if it
//! did not exist.

use serde::Serialize;
use way2mail_queue::{DeliveryOutcome, DeliveryRecord, LogFilter, Spool, LOG_CURSOR_LEN};
use way2mail_smtp::{Envelope, MessageId, RecipientState};

/// How far before its id's time a message's log records are looked for (clocks
/// of the cores may differ by a little).
const LOG_SLACK_MS: u64 = 60_000;

#[derive(Debug, Serialize)]
pub struct MessageView {
    pub id: String,
    /// `queued` (waiting or being delivered), `held` (by an operator), `done`
    /// (no longer in the queue: every recipient has its final outcome).
    pub status: &'static str,
    /// The envelope sender, while the message is queued.
    pub from: Option<String>,
    pub received_at: String,
    /// Octets as queued, while the message is queued.
    pub size: Option<u64>,
    pub attempts: u32,
    pub next_attempt_at: Option<String>,
    pub recipients: Vec<RecipientView>,
    pub events: Vec<EventView>,
    pub tags: Vec<String>,
    pub metadata: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Serialize)]
pub struct RecipientView {
    pub address: String,
    /// `pending`, `delivered`, `failed` (queued message); once done, the last
    /// outcome: `delivered`, `bounced`, `expired`, `deleted`, `deferred`.
    pub state: &'static str,
    pub attempts: u32,
    pub last_reply: Option<String>,
}

/// One delivery outcome, as the delivery log records it.
#[derive(Debug, Serialize)]
pub struct EventView {
    pub time: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub message_id: String,
    pub recipient: String,
    pub attempt: u32,
    pub next_hop: Option<String>,
    pub tls: Option<String>,
    pub reply: Option<String>,
    pub tags: Vec<String>,
    pub metadata: std::collections::BTreeMap<String, String>,
    /// A failure's category (`invalid_recipient`, `mailbox_full`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// The content scan's result when the message was accepted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scan: Option<way2mail_smtp::ScanResult>,
}

/// `GET /v1/domains/{domain}/dmarc`: the summary as the CLI gets it, with times
/// in RFC 3339 and the share `p=reject` would refuse.
#[derive(Debug, Serialize)]
pub struct DmarcView {
    pub domain: String,
    pub since: String,
    pub until: String,
    pub reports: u64,
    pub duplicate_reports: u64,
    pub published_policy: Option<String>,
    pub messages: u64,
    pub passing: u64,
    pub failing: u64,
    /// `failing / messages` (0 with no messages): the share of the domain's mail
    /// that `p=reject` would have refused.
    pub would_fail_reject_share: f64,
    pub reporters: Vec<way2mail_wire::mta_admin::DmarcReporter>,
    pub other_reporters: u64,
    pub sources: Vec<way2mail_wire::mta_admin::DmarcSource>,
    /// The IPs past the 100 listed, summed (`ip` is how many they are).
    pub other_sources: way2mail_wire::mta_admin::DmarcSource,
}

impl From<way2mail_wire::mta_admin::DmarcSummary> for DmarcView {
    fn from(s: way2mail_wire::mta_admin::DmarcSummary) -> DmarcView {
        // f64 loses precision only past 2^53 messages; a share needs no more.
        #[allow(clippy::cast_precision_loss)]
        let share = if s.messages == 0 {
            0.0
        } else {
            s.failing as f64 / s.messages as f64
        };
        DmarcView {
            domain: s.domain,
            since: rfc3339_ms(s.since_ms),
            until: rfc3339_ms(s.until_ms),
            reports: s.reports,
            duplicate_reports: s.duplicate_reports,
            published_policy: s.published_policy,
            messages: s.messages,
            passing: s.passing,
            failing: s.failing,
            would_fail_reject_share: share,
            reporters: s.reporters,
            other_reporters: s.other_reporters,
            sources: s.sources,
            other_sources: s.other_sources,
        }
    }
}

impl From<DeliveryRecord> for EventView {
    fn from(r: DeliveryRecord) -> EventView {
        EventView {
            time: rfc3339_ms(r.time_ms),
            kind: r.outcome.name(),
            message_id: r.message_id,
            recipient: r.recipient,
            attempt: r.attempt,
            next_hop: r.next_hop,
            tls: r.tls,
            reply: r.reply,
            tags: r.tags,
            metadata: r.metadata,
            category: r.category,
            scan: r.scan,
        }
    }
}

fn rfc3339_ms(ms: u64) -> String {
    way2mail_smtp::date::rfc3339(ms / 1000)
}

/// Message `id` of `tenant`, or `None` when the tenant has no such message (in the
/// queue or in its delivery log).
pub fn message(
    spool: &Spool,
    tenant: &str,
    id: MessageId,
) -> Result<Option<MessageView>, way2mail_queue::Error> {
    let queued = spool
        .envelope(&id)?
        .filter(|(e, _)| e.origin.tenant.as_deref() == Some(tenant));
    let held = match &queued {
        Some(_) => spool.held_since(&id)?,
        None => None,
    };
    let log = spool.delivery_log(LogFilter {
        tenant: Some(Some(tenant.to_string())),
        message: Some(id),
        since_ms: Some(id.timestamp_ms().saturating_sub(LOG_SLACK_MS)),
        ..LogFilter::default()
    })?;
    let view = match queued {
        Some((envelope, size)) => queued_view(id, envelope, size, held.is_some(), log),
        None if log.is_empty() => return Ok(None),
        None => done_view(id, log),
    };
    Ok(Some(view))
}

fn queued_view(
    id: MessageId,
    e: Envelope,
    size: u64,
    held: bool,
    log: Vec<DeliveryRecord>,
) -> MessageView {
    MessageView {
        id: id.to_string(),
        status: if held { "held" } else { "queued" },
        from: Some(e.sender),
        received_at: rfc3339_ms(e.received_at_ms),
        size: Some(size),
        attempts: e.attempts,
        next_attempt_at: e.next_attempt_ms.filter(|_| !held).map(rfc3339_ms),
        recipients: e
            .recipients
            .into_iter()
            .map(|r| RecipientView {
                address: r.address,
                state: match r.state {
                    RecipientState::Pending => "pending",
                    RecipientState::Delivered => "delivered",
                    RecipientState::Failed => "failed",
                },
                attempts: r.attempts,
                last_reply: r.last_error,
            })
            .collect(),
        events: log.into_iter().map(EventView::from).collect(),
        tags: e.tags,
        metadata: e.metadata,
    }
}

/// A message no longer queued: each recipient's state is its last outcome.
fn done_view(id: MessageId, log: Vec<DeliveryRecord>) -> MessageView {
    let mut recipients: Vec<RecipientView> = Vec::new();
    for r in log
        .iter()
        .filter(|r| r.outcome != DeliveryOutcome::Unsubscribed)
    {
        let view = match recipients
            .iter_mut()
            .find(|v| v.address.eq_ignore_ascii_case(&r.recipient))
        {
            Some(v) => v,
            None => {
                recipients.push(RecipientView {
                    address: r.recipient.clone(),
                    state: "pending",
                    attempts: 0,
                    last_reply: None,
                });
                let last = recipients.len() - 1;
                &mut recipients[last]
            }
        };
        view.state = r.outcome.name();
        view.attempts = view.attempts.max(r.attempt);
        view.last_reply.clone_from(&r.reply);
    }
    let attempts = log.iter().map(|r| r.attempt).max().unwrap_or(0);
    let (tags, metadata) = log
        .first()
        .map(|r| (r.tags.clone(), r.metadata.clone()))
        .unwrap_or_default();
    MessageView {
        id: id.to_string(),
        status: "done",
        from: None,
        received_at: rfc3339_ms(id.timestamp_ms()),
        size: None,
        attempts,
        next_attempt_at: None,
        recipients,
        events: log.into_iter().map(EventView::from).collect(),
        tags,
        metadata,
    }
}

/// Records newer than this are not returned yet: outcomes are committed by several
/// threads, so one stamped a moment earlier may land after one stamped later, and a
/// reader following the log's tail would step over it.
pub const SETTLE_MS: u64 = 2_000;
/// The most events one page holds.
pub const MAX_PAGE: usize = 1_000;
pub const DEFAULT_PAGE: usize = 100;

#[derive(Debug, Serialize)]
pub struct EventPage {
    pub events: Vec<EventView>,
    /// Where the next page starts: give it back as `after`. The same cursor as
    /// given when nothing new was found.
    pub next: Option<String>,
    /// True when the page is full: more events may follow at once.
    pub more: bool,
}

/// A cursor as the API shows it: hexadecimal.
pub fn parse_cursor(text: &str) -> Option<[u8; LOG_CURSOR_LEN]> {
    if text.len() != LOG_CURSOR_LEN * 2 {
        return None;
    }
    let mut out = [0u8; LOG_CURSOR_LEN];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

fn cursor_text(c: &[u8; LOG_CURSOR_LEN]) -> String {
    c.iter().map(|b| format!("{b:02x}")).collect()
}

/// One page of `tenant`'s delivery events after `after`, up to `now_ms` less the
/// settling time.
pub fn events(
    spool: &Spool,
    tenant: &str,
    after: Option<[u8; LOG_CURSOR_LEN]>,
    limit: usize,
    now_ms: u64,
) -> Result<EventPage, way2mail_queue::Error> {
    let page = spool.delivery_log_page(
        tenant,
        after.as_ref(),
        now_ms.saturating_sub(SETTLE_MS),
        limit,
    )?;
    let more = page.len() >= limit;
    let next = page.last().map(|(c, _)| *c).or(after);
    Ok(EventPage {
        events: page.into_iter().map(|(_, r)| EventView::from(r)).collect(),
        next: next.as_ref().map(cursor_text),
        more,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_junk() {
        let mut c = [0u8; LOG_CURSOR_LEN];
        c[0] = 0xab;
        c[27] = 0x01;
        let text = cursor_text(&c);
        assert_eq!(text.len(), 56);
        assert_eq!(parse_cursor(&text), Some(c));
        assert_eq!(parse_cursor(&text[1..]), None);
        assert_eq!(parse_cursor(&"zz".repeat(28)), None);
        assert_eq!(parse_cursor(&"é".repeat(28)), None);
    }
}
