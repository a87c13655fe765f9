//! Live queue operations, the same on both sockets: `way2mail queue …` asks control,
//! which checks the role, writes the audit log and passes the request on to the
//! MTA's admin socket unchanged; `way2mail-mta spool list|summary` asks the admin
//! socket directly. Types, the filter's meaning and the summary's age buckets live
//! here so that both daemons and both CLIs agree on them.
//!
//! States are Postfix's: `incoming` (never tried), `deferred` (tried, waiting for
//! its next attempt), `active` (an attempt is under way), `held` (put aside by an
//! operator until released).

use serde::{Deserialize, Serialize};

pub mod text;

/// Where a queued message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueState {
    Incoming,
    Deferred,
    Active,
    Held,
}

impl QueueState {
    pub const ALL: [QueueState; 4] = [
        QueueState::Incoming,
        QueueState::Deferred,
        QueueState::Active,
        QueueState::Held,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            QueueState::Incoming => "incoming",
            QueueState::Deferred => "deferred",
            QueueState::Active => "active",
            QueueState::Held => "held",
        }
    }

    pub fn parse(text: &str) -> Option<QueueState> {
        QueueState::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// Which messages a request is about. Every given criterion must match; an empty
/// filter matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueFilter {
    /// The tenant whose mail it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// A recipient domain (any recipient still pending, case-insensitive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// The envelope sender: an address, `@domain` for a whole domain, or `<>` for
    /// the null sender (bounces). Case-insensitive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<QueueState>,
    /// Accepted at least this many seconds ago.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub older_than_secs: Option<u64>,
}

impl QueueFilter {
    pub fn is_empty(&self) -> bool {
        *self == QueueFilter::default()
    }

    /// Whether `m` is selected at `now_ms`.
    pub fn matches(&self, m: &QueueMessage, now_ms: u64) -> bool {
        if let Some(t) = &self.tenant {
            if m.tenant.as_deref() != Some(t.as_str()) {
                return false;
            }
        }
        if let Some(d) = &self.domain {
            let wanted = d.trim_start_matches('@');
            let hit = m
                .recipients
                .iter()
                .filter(|r| r.state == "pending")
                .any(|r| domain_of(&r.address).eq_ignore_ascii_case(wanted));
            if !hit {
                return false;
            }
        }
        if let Some(s) = &self.sender {
            if !sender_matches(s, &m.sender) {
                return false;
            }
        }
        if self.state.is_some_and(|s| s != m.state) {
            return false;
        }
        if let Some(secs) = self.older_than_secs {
            let age_ms = now_ms.saturating_sub(m.received_at_ms);
            if age_ms < secs.saturating_mul(1000) {
                return false;
            }
        }
        true
    }

    /// The filter in words, for logs and audit details (`tenant=acme state=held`).
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(t) = &self.tenant {
            parts.push(format!("tenant={t}"));
        }
        if let Some(d) = &self.domain {
            parts.push(format!("domain={d}"));
        }
        if let Some(s) = &self.sender {
            parts.push(format!("sender={s}"));
        }
        if let Some(s) = self.state {
            parts.push(format!("state={}", s.as_str()));
        }
        if let Some(o) = self.older_than_secs {
            parts.push(format!("older_than={o}s"));
        }
        if parts.is_empty() {
            "all".to_owned()
        } else {
            parts.join(" ")
        }
    }
}

fn sender_matches(pattern: &str, sender: &str) -> bool {
    if pattern == "<>" {
        return sender.is_empty();
    }
    match pattern.strip_prefix('@') {
        Some(domain) => !sender.is_empty() && domain_of(sender).eq_ignore_ascii_case(domain),
        None => sender.eq_ignore_ascii_case(pattern),
    }
}

/// The part after the last `@` (empty when there is none).
pub fn domain_of(address: &str) -> &str {
    address.rsplit_once('@').map_or("", |(_, d)| d)
}

/// The messages a changing request acts on: named ones (each must also match the
/// filter), or all that match the filter. An empty filter without ids selects
/// nothing unless `all` says so: a forgotten argument never touches the whole queue.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueSelection {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ids: Vec<String>,
    #[serde(default)]
    pub filter: QueueFilter,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all: bool,
}

impl QueueSelection {
    /// Why this selection is refused, if it is.
    pub fn problem(&self) -> Option<&'static str> {
        if self.ids.is_empty() && self.filter.is_empty() && !self.all {
            return Some(
                "select messages: give queue ids, a filter (--tenant, --domain, --sender, \
                 --state, --older-than), or --all",
            );
        }
        if self.ids.len() > MAX_IDS {
            return Some("too many queue ids in one request (at most 10000)");
        }
        None
    }

    /// Whether `m` is selected.
    pub fn matches(&self, m: &QueueMessage, now_ms: u64) -> bool {
        (self.ids.is_empty() || self.ids.contains(&m.id)) && self.filter.matches(m, now_ms)
    }

    pub fn describe(&self) -> String {
        let filter = self.filter.describe();
        match self.ids.len() {
            0 => filter,
            n if self.filter.is_empty() => format!("{n} id(s)"),
            n => format!("{n} id(s), {filter}"),
        }
    }
}

/// Most queue ids named in one request.
pub const MAX_IDS: usize = 10_000;

/// What a changing request does to each selected message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueAction {
    /// Off the schedule until released; never delivered, never expired meanwhile.
    Hold,
    /// Back on the schedule, due now.
    Release,
    /// Due now (deferred or incoming mail; held mail needs `release`).
    Retry,
    /// Ended: every pending recipient fails with 5.0.0 and the sender gets a DSN.
    Bounce,
    /// Removed without a notice to anyone.
    Delete,
}

impl QueueAction {
    pub fn as_str(self) -> &'static str {
        match self {
            QueueAction::Hold => "hold",
            QueueAction::Release => "release",
            QueueAction::Retry => "retry",
            QueueAction::Bounce => "bounce",
            QueueAction::Delete => "delete",
        }
    }
}

/// One queued message as the queue commands show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueMessage {
    pub id: String,
    pub tenant: Option<String>,
    /// Empty for the null sender.
    pub sender: String,
    pub size: u64,
    /// Unix milliseconds.
    pub received_at_ms: u64,
    pub state: QueueState,
    /// Attempts of the message as a whole.
    pub attempts: u32,
    /// When it is due next (scheduled), when its lease ends (active), or when it
    /// was held (held).
    pub next_attempt_ms: Option<u64>,
    pub recipients: Vec<QueueRecipient>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueRecipient {
    pub address: String,
    /// `pending`, `delivered` or `failed`.
    pub state: String,
    pub attempts: u32,
    pub last_error: Option<String>,
}

/// `queue.list`: the first `limit` matches in arrival order, and how many matched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueListing {
    pub messages: Vec<QueueMessage>,
    pub matched: u64,
}

/// The age buckets of `queue.summary`, in minutes: a bucket holds messages at
/// least its bound old and younger than the next one's (Postfix qshape's).
pub const AGE_BUCKETS_MIN: [u64; 10] = [0, 5, 10, 20, 40, 80, 160, 320, 640, 1280];

/// The bucket of a message `age_ms` old.
pub fn age_bucket(age_ms: u64) -> usize {
    let minutes = age_ms / 60_000;
    AGE_BUCKETS_MIN
        .iter()
        .rposition(|&b| minutes >= b)
        .unwrap_or(0)
}

/// `queue.summary`: qshape's table, messages per recipient domain by age.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueSummary {
    /// Lower bounds of the age buckets, minutes ([`AGE_BUCKETS_MIN`]).
    pub buckets_min: Vec<u64>,
    /// Every matching message once, by age.
    pub total: QueueSummaryRow,
    /// One row per domain with pending recipients, largest first. A message with
    /// pending recipients in several domains counts in each of them.
    pub domains: Vec<QueueSummaryRow>,
    /// Matching messages by state.
    pub states: Vec<(QueueState, u64)>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueSummaryRow {
    pub domain: String,
    pub messages: u64,
    /// Messages per age bucket, as many as `buckets_min`.
    pub by_age: Vec<u64>,
}

impl QueueSummary {
    /// The summary of `messages` (already filtered) at `now_ms`.
    pub fn of<'a>(messages: impl IntoIterator<Item = &'a QueueMessage>, now_ms: u64) -> Self {
        let mut builder = QueueSummaryBuilder::new(now_ms);
        for m in messages {
            builder.add(m);
        }
        builder.finish()
    }
}

/// Builds a [`QueueSummary`] one message at a time (the queue is never held whole).
#[derive(Debug)]
pub struct QueueSummaryBuilder {
    now_ms: u64,
    total: QueueSummaryRow,
    rows: std::collections::HashMap<String, QueueSummaryRow>,
    states: std::collections::HashMap<QueueState, u64>,
}

/// Most domain rows a summary lists; the rest are added up in one `(other)` row.
pub const MAX_SUMMARY_DOMAINS: usize = 1000;

fn empty_row(domain: &str) -> QueueSummaryRow {
    QueueSummaryRow {
        domain: domain.to_owned(),
        messages: 0,
        by_age: vec![0; AGE_BUCKETS_MIN.len()],
    }
}

impl QueueSummaryBuilder {
    pub fn new(now_ms: u64) -> Self {
        QueueSummaryBuilder {
            now_ms,
            total: empty_row("TOTAL"),
            rows: Default::default(),
            states: Default::default(),
        }
    }

    pub fn add(&mut self, m: &QueueMessage) {
        let bucket = age_bucket(self.now_ms.saturating_sub(m.received_at_ms));
        self.total.messages += 1;
        self.total.by_age[bucket] += 1;
        *self.states.entry(m.state).or_default() += 1;
        let mut domains: Vec<String> = m
            .recipients
            .iter()
            .filter(|r| r.state == "pending")
            .map(|r| domain_of(&r.address).to_ascii_lowercase())
            .collect();
        domains.sort();
        domains.dedup();
        for d in domains {
            let row = self.rows.entry(d).or_insert_with_key(|d| empty_row(d));
            row.messages += 1;
            row.by_age[bucket] += 1;
        }
    }

    pub fn finish(self) -> QueueSummary {
        let mut domains: Vec<QueueSummaryRow> = self.rows.into_values().collect();
        domains.sort_by(|a, b| b.messages.cmp(&a.messages).then(a.domain.cmp(&b.domain)));
        if domains.len() > MAX_SUMMARY_DOMAINS {
            let mut other = empty_row("(other)");
            for row in domains.drain(MAX_SUMMARY_DOMAINS..) {
                other.messages += row.messages;
                for (sum, n) in other.by_age.iter_mut().zip(row.by_age) {
                    *sum += n;
                }
            }
            domains.push(other);
        }
        QueueSummary {
            buckets_min: AGE_BUCKETS_MIN.to_vec(),
            total: self.total,
            domains,
            states: QueueState::ALL
                .into_iter()
                .filter_map(|s| self.states.get(&s).map(|n| (s, *n)))
                .collect(),
        }
    }
}

/// What a changing request did (or, with `dry_run`, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueChangeReport {
    pub action: Option<QueueAction>,
    pub dry_run: bool,
    /// Ids of the messages changed (or that would be).
    pub changed: Vec<String>,
    /// Selected messages left as they were, with why (in delivery right now, not
    /// held, gone meanwhile).
    pub skipped: Vec<QueueSkipped>,
    /// Bounces queued (`bounce`; none for the null sender or NOTIFY=NEVER).
    #[serde(default)]
    pub notices: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueSkipped {
    pub id: String,
    pub why: String,
}

/// One delivery log record, as the spool's delivery log writes it (the same JSON
/// fields as the MTA's delivery log file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueLogEntry {
    /// Unix milliseconds.
    pub time_ms: u64,
    /// `delivered`, `deferred`, `bounced`, `expired` or `deleted`.
    pub outcome: String,
    pub message_id: String,
    pub recipient: String,
    pub next_hop: Option<String>,
    pub ip: Option<String>,
    pub tls: Option<String>,
    pub reply: Option<String>,
    pub attempt: u32,
    pub queue_time_ms: u64,
    /// A failure's category (the MTA's bounce rules); absent for deliveries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// The content scan's result when the message was accepted
    /// (`score=6.00/15.00 action=add_header symbols=A,B[ held]`); absent when it
    /// was not scanned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scan: Option<String>,
}

/// Most delivery log records one `delivery.log` answer carries.
pub const MAX_LOG_RECORDS: u64 = 100_000;

#[cfg(test)]
mod tests {
    use super::*;

    fn message(
        sender: &str,
        rcpts: &[(&str, &str)],
        age_min: u64,
        state: QueueState,
    ) -> QueueMessage {
        QueueMessage {
            id: "X".into(),
            tenant: Some("acme".into()),
            sender: sender.into(),
            size: 10,
            received_at_ms: 1_000_000_000 - age_min * 60_000,
            state,
            attempts: 0,
            next_attempt_ms: None,
            recipients: rcpts
                .iter()
                .map(|(a, s)| QueueRecipient {
                    address: (*a).into(),
                    state: (*s).into(),
                    attempts: 0,
                    last_error: None,
                })
                .collect(),
        }
    }

    const NOW: u64 = 1_000_000_000;

    #[test]
    fn filters_combine() {
        let m = message(
            "App@Acme.example",
            &[("a@gmail.com", "pending"), ("b@yahoo.com", "delivered")],
            30,
            QueueState::Deferred,
        );
        let f = |f: QueueFilter| f.matches(&m, NOW);
        assert!(f(QueueFilter::default()));
        assert!(f(QueueFilter {
            domain: Some("GMAIL.com".into()),
            sender: Some("@acme.example".into()),
            state: Some(QueueState::Deferred),
            older_than_secs: Some(29 * 60),
            tenant: Some("acme".into()),
        }));
        assert!(
            !f(QueueFilter {
                domain: Some("yahoo.com".into()),
                ..Default::default()
            }),
            "only pending recipients count"
        );
        assert!(!f(QueueFilter {
            older_than_secs: Some(31 * 60),
            ..Default::default()
        }));
        assert!(!f(QueueFilter {
            sender: Some("<>".into()),
            ..Default::default()
        }));
        assert!(f(QueueFilter {
            sender: Some("app@acme.example".into()),
            ..Default::default()
        }));
        assert!(!f(QueueFilter {
            tenant: Some("other".into()),
            ..Default::default()
        }));
        let bounce = message("", &[("x@a.example", "pending")], 0, QueueState::Incoming);
        assert!(QueueFilter {
            sender: Some("<>".into()),
            ..Default::default()
        }
        .matches(&bounce, NOW));
    }

    #[test]
    fn an_empty_selection_is_refused() {
        assert!(QueueSelection::default().problem().is_some());
        let all = QueueSelection {
            all: true,
            ..Default::default()
        };
        assert!(all.problem().is_none());
        assert_eq!(all.describe(), "all");
    }

    #[test]
    fn summary_counts_per_domain_and_age() {
        let ms = [
            message(
                "a@x",
                &[("1@gmail.com", "pending"), ("2@gmail.com", "pending")],
                1,
                QueueState::Incoming,
            ),
            message(
                "a@x",
                &[("1@gmail.com", "pending"), ("3@yahoo.com", "pending")],
                30,
                QueueState::Deferred,
            ),
            message(
                "a@x",
                &[("1@aol.com", "failed"), ("3@yahoo.com", "pending")],
                2000,
                QueueState::Held,
            ),
        ];
        let s = QueueSummary::of(&ms, NOW);
        assert_eq!(s.total.messages, 3);
        assert_eq!(s.total.by_age, vec![1, 0, 0, 1, 0, 0, 0, 0, 0, 1]);
        let rows: Vec<(&str, u64)> = s
            .domains
            .iter()
            .map(|r| (r.domain.as_str(), r.messages))
            .collect();
        assert_eq!(rows, [("gmail.com", 2), ("yahoo.com", 2)]);
        assert_eq!(s.states.len(), 3);
        assert_eq!(age_bucket(0), 0);
        assert_eq!(age_bucket(5 * 60_000), 1);
        assert_eq!(age_bucket(u64::MAX), 9);
    }
}
