//! The JSON files of a tenant export as the client reads them
//! (`way2mail-tenant-export 2`): values that are words are lower-case words, as on
//! the rest of the wire (`7bit`, `pending`, `delivered`, `active`), and every point
//! in time is an RFC 3339 string in UTC: `2026-12-06T20:18:44Z` for times kept in
//! seconds, `2026-12-06T20:18:44.116Z` for times kept in milliseconds. Durations stay
//! numbers with their unit in their name (`queue_time_ms`, `content_secs`).
//!
//! Field names are those of the records the daemons keep, except the four times
//! whose name carried a unit: `at_ms` → `at` (access log), `received_at_ms` →
//! `received_at` and `next_attempt_ms` → `next_attempt_at` (message index),
//! `time_ms` → `time` (delivery log). The stored encodings (the spool's envelope
//! records, control's records, the protocol's Unix times) do not change: these
//! types are only ever written, into the archive. `docs/operations.md` documents
//! the result.

use serde::Serialize;
use way2mail_queue::{DeliveryOutcome, DeliveryRecord};
use way2mail_smtp::date::rfc3339;
use way2mail_smtp::{BodyType, Envelope, Notify, Origin, Recipient, RecipientState, Ret};
use way2mail_wire::protocol::{
    AuditEntry, AuditOutcome, AutoSuppress, BimiInfo, CredentialInfo, CredentialKind,
    DkimAlgorithm, DkimKeyInfo, DkimKeyState, DomainInfo, ExportFile, ExportManifest, LegalHold,
    ReputationRates, RetentionSettings, Role, SendingPause, SuppressionEntry, TenantInfo,
    TenantStatus, WebhookInfo,
};
use way2mail_wire::snapshot::TenantLimits;

/// `manifest.json`'s `format`: 2 since times are RFC 3339 strings and words are
/// words (1 had Unix times and the spool's Rust names).
pub(crate) const FORMAT: &str = "way2mail-tenant-export 2";

/// Unix seconds as `2026-12-06T20:18:44Z`.
pub(crate) fn secs(unix_secs: u64) -> String {
    rfc3339(unix_secs)
}

/// Unix milliseconds as `2026-12-06T20:18:44.116Z`.
pub(crate) fn millis(unix_ms: u64) -> String {
    let whole = rfc3339(unix_ms / 1000);
    let seconds = whole.strip_suffix('Z').unwrap_or(&whole);
    format!("{seconds}.{:03}Z", unix_ms % 1000)
}

/// `BODY=` as SMTP names it (RFC 6152), lower-cased.
pub(crate) fn body_type(b: BodyType) -> &'static str {
    match b {
        BodyType::SevenBit => "7bit",
        BodyType::EightBitMime => "8bitmime",
    }
}

/// `RET=` as SMTP names it (RFC 3461), lower-cased.
pub(crate) fn ret(r: Ret) -> &'static str {
    match r {
        Ret::Full => "full",
        Ret::Headers => "hdrs",
    }
}

pub(crate) fn recipient_state(s: RecipientState) -> &'static str {
    match s {
        RecipientState::Pending => "pending",
        RecipientState::Delivered => "delivered",
        RecipientState::Failed => "failed",
    }
}

/// `account.json`.
#[derive(Debug, Serialize)]
pub(crate) struct Account<'a> {
    tenant: &'a str,
    business_name: &'a str,
    contact: &'a str,
    billing_ref: Option<&'a str>,
    status: TenantStatus,
    limits: TenantLimits,
    created_at: String,
    updated_at: String,
    retention: RetentionSettings,
    legal_hold: Option<Hold<'a>>,
    terminated_at: Option<String>,
    erase_after: Option<String>,
    list_unsubscribe: bool,
    auto_suppress: AutoSuppress,
    sending_paused: Option<Paused<'a>>,
}

#[derive(Debug, Serialize)]
struct Hold<'a> {
    since: String,
    by: &'a str,
    reason: &'a str,
}

/// The reputation guard's pause, as kept.
#[derive(Debug, Serialize)]
struct Paused<'a> {
    since: String,
    rates: &'a ReputationRates,
}

pub(crate) fn account(t: &TenantInfo) -> Account<'_> {
    Account {
        tenant: &t.tenant,
        business_name: &t.business_name,
        contact: &t.contact,
        billing_ref: t.billing_ref.as_deref(),
        status: t.status,
        limits: t.limits,
        created_at: secs(t.created_at),
        updated_at: secs(t.updated_at),
        retention: t.retention,
        legal_hold: t.legal_hold.as_ref().map(|h: &LegalHold| Hold {
            since: secs(h.since),
            by: &h.by,
            reason: &h.reason,
        }),
        terminated_at: t.terminated_at.map(secs),
        erase_after: t.erase_after.map(secs),
        list_unsubscribe: t.list_unsubscribe,
        auto_suppress: t.auto_suppress,
        sending_paused: t.sending_paused.as_ref().map(|p: &SendingPause| Paused {
            since: secs(p.since),
            rates: &p.rates,
        }),
    }
}

/// One entry of `domains.json`.
#[derive(Debug, Serialize)]
pub(crate) struct Domain<'a> {
    domain: &'a str,
    tenant: &'a str,
    created_at: String,
    dkim: Vec<DkimKey<'a>>,
    verified_at: Option<String>,
    send_unverified: bool,
    bimi: Option<&'a BimiInfo>,
}

#[derive(Debug, Serialize)]
struct DkimKey<'a> {
    selector: &'a str,
    algorithm: DkimAlgorithm,
    state: DkimKeyState,
    public_key: &'a str,
    created_at: String,
}

pub(crate) fn domain(d: &DomainInfo) -> Domain<'_> {
    Domain {
        domain: &d.domain,
        tenant: &d.tenant,
        created_at: secs(d.created_at),
        dkim: d
            .dkim
            .iter()
            .map(|k: &DkimKeyInfo| DkimKey {
                selector: &k.selector,
                algorithm: k.algorithm,
                state: k.state,
                public_key: &k.public_key,
                created_at: secs(k.created_at),
            })
            .collect(),
        verified_at: d.verified_at.map(secs),
        send_unverified: d.send_unverified,
        bimi: d.bimi.as_ref(),
    }
}

/// One entry of `credentials.json`: never a secret or a hash (the listing has none).
#[derive(Debug, Serialize)]
pub(crate) struct Credential<'a> {
    id: &'a str,
    tenant: &'a str,
    kind: CredentialKind,
    username: &'a str,
    description: Option<&'a str>,
    created_at: String,
    revoked_at: Option<String>,
}

pub(crate) fn credential(c: &CredentialInfo) -> Credential<'_> {
    Credential {
        id: &c.id,
        tenant: &c.tenant,
        kind: c.kind,
        username: &c.username,
        description: c.description.as_deref(),
        created_at: secs(c.created_at),
        revoked_at: c.revoked_at.map(secs),
    }
}

/// One entry of `suppression.json`.
#[derive(Debug, Serialize)]
pub(crate) struct Suppressed<'a> {
    address: &'a str,
    note: Option<&'a str>,
    added_at: String,
    added_by: &'a str,
    /// The automatic rule that added it; `null` for an operator's or API key's.
    reason: Option<&'a str>,
    /// The delivery log event behind an automatic entry.
    source: Option<&'a str>,
}

pub(crate) fn suppressed(s: &SuppressionEntry) -> Suppressed<'_> {
    Suppressed {
        address: &s.address,
        note: s.note.as_deref(),
        added_at: secs(s.added_at),
        added_by: &s.added_by,
        reason: s.reason.as_deref(),
        source: s.source.as_deref(),
    }
}

/// One entry of `webhooks.json`: never the signing secret.
#[derive(Debug, Serialize)]
pub(crate) struct Webhook<'a> {
    id: &'a str,
    url: &'a str,
    events: &'a [String],
    created_at: String,
    created_by: &'a str,
    disabled_at: Option<String>,
    disabled_reason: Option<&'a str>,
}

pub(crate) fn webhook(w: &WebhookInfo) -> Webhook<'_> {
    Webhook {
        id: &w.id,
        url: &w.url,
        events: &w.events,
        created_at: secs(w.created_at),
        created_by: &w.created_by,
        disabled_at: w.disabled_at.map(secs),
        disabled_reason: w.disabled_reason.as_deref(),
    }
}

/// One entry of `access-log.json`. `prev_hash` and `hash` are the audit chain's,
/// computed over the entry as stored (`way2mail audit verify` checks them).
#[derive(Debug, Serialize)]
pub(crate) struct Access<'a> {
    seq: u64,
    at: String,
    actor: &'a str,
    role: Option<Role>,
    action: &'a str,
    tenant: Option<&'a str>,
    outcome: AuditOutcome,
    reason: Option<&'a str>,
    detail: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sealed_detail: Option<&'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pruned: bool,
    prev_hash: &'a str,
    hash: &'a str,
}

pub(crate) fn access(e: &AuditEntry) -> Access<'_> {
    Access {
        seq: e.seq,
        at: millis(e.at_ms),
        actor: &e.actor,
        role: e.role,
        action: &e.action,
        tenant: e.tenant.as_deref(),
        outcome: e.outcome,
        reason: e.reason.as_deref(),
        detail: e.detail.as_deref(),
        sealed_detail: e.sealed_detail.as_deref(),
        pruned: e.pruned,
        prev_hash: &e.prev_hash,
        hash: &e.hash,
    }
}

/// One entry of `messages/index.json`: the queue id and the envelope.
#[derive(Debug, Serialize)]
pub(crate) struct Message {
    id: String,
    envelope: MessageEnvelope,
}

#[derive(Debug, Serialize)]
struct MessageEnvelope {
    sender: String,
    recipients: Vec<MessageRecipient>,
    body_type: &'static str,
    smtputf8: bool,
    ret: Option<&'static str>,
    envid: Option<String>,
    origin: Origin,
    received_at: String,
    attempts: u32,
    next_attempt_at: Option<String>,
    /// Whether the sender was told the message is late (`Action: delayed`).
    delay_notified: bool,
    tags: Vec<String>,
    metadata: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Serialize)]
struct MessageRecipient {
    address: String,
    notify: Notify,
    orcpt: Option<String>,
    state: &'static str,
    attempts: u32,
    last_error: Option<String>,
}

pub(crate) fn message(id: String, e: Envelope) -> Message {
    Message {
        id,
        envelope: MessageEnvelope {
            sender: e.sender,
            recipients: e
                .recipients
                .into_iter()
                .map(|r: Recipient| MessageRecipient {
                    address: r.address,
                    notify: r.notify,
                    orcpt: r.orcpt,
                    state: recipient_state(r.state),
                    attempts: r.attempts,
                    last_error: r.last_error,
                })
                .collect(),
            body_type: body_type(e.body_type),
            smtputf8: e.smtputf8,
            ret: e.ret.map(ret),
            envid: e.envid,
            origin: e.origin,
            received_at: millis(e.received_at_ms),
            attempts: e.attempts,
            next_attempt_at: e.next_attempt_ms.map(millis),
            delay_notified: e.delay_notified,
            tags: e.tags,
            metadata: e.metadata,
        },
    }
}

/// One line of `delivery-log/NNNN.jsonl`.
#[derive(Debug, Serialize)]
pub(crate) struct Delivery {
    time: String,
    outcome: DeliveryOutcome,
    message_id: String,
    recipient: String,
    next_hop: Option<String>,
    ip: Option<std::net::IpAddr>,
    tls: Option<String>,
    reply: Option<String>,
    attempt: u32,
    queue_time_ms: u64,
    tags: Vec<String>,
    metadata: std::collections::BTreeMap<String, String>,
    /// The failure's category (the MTA's bounce rules); absent for a delivery.
    #[serde(skip_serializing_if = "Option::is_none")]
    category: Option<String>,
    /// The content scan's result when the message was accepted; absent when it
    /// was not scanned.
    #[serde(skip_serializing_if = "Option::is_none")]
    scan: Option<way2mail_smtp::ScanResult>,
}

pub(crate) fn delivery(r: DeliveryRecord) -> Delivery {
    Delivery {
        time: millis(r.time_ms),
        outcome: r.outcome,
        message_id: r.message_id,
        recipient: r.recipient,
        next_hop: r.next_hop,
        ip: r.ip,
        tls: r.tls,
        reply: r.reply,
        attempt: r.attempt,
        queue_time_ms: r.queue_time_ms,
        tags: r.tags,
        metadata: r.metadata,
        category: r.category,
        scan: r.scan,
    }
}

/// An outbox entry as the MTA streams it (`ExportItem::WebhookEvent`).
#[derive(serde::Deserialize)]
struct OutboxItem {
    id: String,
    webhook: String,
    event: DeliveryRecord,
    created_ms: u64,
    attempts: u32,
    next_attempt_ms: u64,
    #[serde(default)]
    last_error: Option<String>,
}

/// One line of `webhook-outbox/NNNN.jsonl`: an event not yet posted to an endpoint.
#[derive(Debug, Serialize)]
pub(crate) struct WebhookEvent {
    id: String,
    webhook: String,
    created_at: String,
    attempts: u32,
    next_attempt_at: String,
    last_error: Option<String>,
    event: Delivery,
}

/// The export's form of an outbox entry the MTA sent.
pub(crate) fn webhook_event(json: &[u8]) -> Result<WebhookEvent, serde_json::Error> {
    let i: OutboxItem = serde_json::from_slice(json)?;
    Ok(WebhookEvent {
        id: i.id,
        webhook: i.webhook,
        created_at: millis(i.created_ms),
        attempts: i.attempts,
        next_attempt_at: millis(i.next_attempt_ms),
        last_error: i.last_error,
        event: delivery(i.event),
    })
}

/// `manifest.json`: the manifest the protocol answers with, its time in RFC 3339.
#[derive(Debug, Serialize)]
pub(crate) struct Manifest<'a> {
    format: &'a str,
    tenant: &'a str,
    created_at: String,
    messages: u64,
    delivery_log_records: u64,
    domains: u64,
    credentials: u64,
    suppression_entries: u64,
    access_log_entries: u64,
    files: &'a [ExportFile],
}

pub(crate) fn manifest(m: &ExportManifest) -> Manifest<'_> {
    Manifest {
        format: &m.format,
        tenant: &m.tenant,
        created_at: secs(m.created_at),
        messages: m.messages,
        delivery_log_records: m.delivery_log_records,
        domains: m.domains,
        credentials: m.credentials,
        suppression_entries: m.suppression_entries,
        access_log_entries: m.access_log_entries,
        files: &m.files,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};
    use std::collections::BTreeSet;

    /// 2026-12-06T20:18:44.116Z.
    const MS: u64 = 1_796_588_324_116;
    const SECS: u64 = MS / 1000;

    fn keys(v: &Value) -> BTreeSet<String> {
        v.as_object().expect("object").keys().cloned().collect()
    }

    /// The export's keys are the stored record's, with the renamed times renamed:
    /// a field added to a record and forgotten here fails this.
    fn same_fields(stored: &impl Serialize, exported: &impl Serialize, renamed: &[(&str, &str)]) {
        let stored = serde_json::to_value(stored).expect("stored");
        let exported = serde_json::to_value(exported).expect("exported");
        let mut expected = keys(&stored);
        for (from, to) in renamed {
            assert!(expected.remove(*from), "{from} not in {stored}");
            expected.insert((*to).to_owned());
        }
        assert_eq!(keys(&exported), expected, "{exported}");
    }

    /// Fields whose values are words.
    const WORDS: &[&str] = &[
        "body_type",
        "ret",
        "state",
        "status",
        "kind",
        "role",
        "outcome",
        "algorithm",
    ];
    /// Fields whose values are points in time.
    const TIMES: &[&str] = &[
        "created_at",
        "updated_at",
        "since",
        "terminated_at",
        "erase_after",
        "verified_at",
        "revoked_at",
        "disabled_at",
        "added_at",
        "at",
        "received_at",
        "next_attempt_at",
        "time",
    ];

    /// Everywhere in `v`: words are lower case (never a Rust name like `SevenBit`),
    /// times are RFC 3339 UTC strings (`2026-12-06T20:18:44Z`, with `.mmm` or not).
    fn words_and_times(v: &Value) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    if v.is_null() {
                        continue;
                    }
                    if WORDS.contains(&k.as_str()) {
                        let w = v.as_str().expect("a word is a string");
                        assert!(
                            !w.is_empty() && !w.chars().any(|c| c.is_ascii_uppercase()),
                            "{k}: {w}"
                        );
                    }
                    if TIMES.contains(&k.as_str()) {
                        let t = v.as_str().expect("a time is a string");
                        let b = t.as_bytes();
                        assert!(
                            (t.len() == 20 || t.len() == 24)
                                && t.ends_with('Z')
                                && b[4] == b'-'
                                && b[10] == b'T'
                                && b[13] == b':',
                            "{k}: {t}"
                        );
                    }
                    words_and_times(v);
                }
            }
            Value::Array(items) => items.iter().for_each(words_and_times),
            _ => {}
        }
    }

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(millis(MS), "2026-12-06T20:18:44.116Z");
        assert_eq!(millis(SECS * 1000 + 5), "2026-12-06T20:18:44.005Z");
        assert_eq!(millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(secs(SECS), "2026-12-06T20:18:44Z");
    }

    #[test]
    fn smtp_words() {
        assert_eq!(body_type(BodyType::SevenBit), "7bit");
        assert_eq!(body_type(BodyType::EightBitMime), "8bitmime");
        assert_eq!(ret(Ret::Full), "full");
        assert_eq!(ret(Ret::Headers), "hdrs");
        assert_eq!(recipient_state(RecipientState::Pending), "pending");
        assert_eq!(recipient_state(RecipientState::Delivered), "delivered");
        assert_eq!(recipient_state(RecipientState::Failed), "failed");
    }

    #[test]
    fn message_and_delivery_record() {
        let envelope: Envelope = serde_json::from_value(json!({
            "sender": "a@example.org",
            "recipients": [{"address": "b@example.net",
                "notify": {"never": false, "success": true, "failure": true, "delay": false},
                "orcpt": null, "state": "Failed", "attempts": 2, "last_error": "550 5.1.1"},
                {"address": "c@example.net",
                "notify": {"never": false, "success": false, "failure": false, "delay": false},
                "orcpt": null}],
            "body_type": "EightBitMime", "smtputf8": true, "ret": "Headers", "envid": "x1",
            "origin": {"client_ip": "192.0.2.1", "helo": "h", "listener": "submission",
                "tls": "TLSv1_3", "auth": "app@acme.example", "tenant": "acme"},
            "received_at_ms": MS, "attempts": 2, "next_attempt_ms": MS + 60_000,
            "tags": ["invoice"], "metadata": {"order": "4711"}
        }))
        .expect("a stored envelope");
        let exported =
            serde_json::to_value(message("0123abcd".into(), envelope.clone())).expect("json");
        same_fields(
            &envelope,
            &exported["envelope"],
            &[
                ("received_at_ms", "received_at"),
                ("next_attempt_ms", "next_attempt_at"),
            ],
        );
        same_fields(
            &envelope.recipients[0],
            &exported["envelope"]["recipients"][0],
            &[],
        );
        let e = &exported["envelope"];
        assert_eq!(exported["id"], "0123abcd");
        assert_eq!(e["body_type"], "8bitmime");
        assert_eq!(e["ret"], "hdrs");
        assert_eq!(e["recipients"][0]["state"], "failed");
        assert_eq!(e["recipients"][1]["state"], "pending");
        assert_eq!(e["received_at"], "2026-12-06T20:18:44.116Z");
        assert_eq!(e["next_attempt_at"], "2026-12-06T20:19:44.116Z");
        assert_eq!(e["origin"]["tenant"], "acme");
        words_and_times(&exported);

        let record = DeliveryRecord {
            time_ms: MS,
            outcome: DeliveryOutcome::Delivered,
            message_id: "0123abcd".into(),
            recipient: "b@example.net".into(),
            next_hop: Some("mx.example.net".into()),
            ip: Some("192.0.2.9".parse().expect("ip")),
            tls: None,
            reply: Some("250 ok".into()),
            attempt: 1,
            queue_time_ms: 1500,
            tags: vec!["invoice".into()],
            metadata: [("order".to_string(), "4711".to_string())]
                .into_iter()
                .collect(),
            category: None,
            scan: None,
        };
        let exported = serde_json::to_value(delivery(record.clone())).expect("json");
        same_fields(&record, &exported, &[("time_ms", "time")]);
        assert_eq!(exported["time"], "2026-12-06T20:18:44.116Z");
        assert_eq!(exported["outcome"], "delivered");
        assert_eq!(exported["queue_time_ms"], 1500);
    }

    #[test]
    fn control_records() {
        let tenant = TenantInfo {
            tenant: "acme".into(),
            business_name: "Acme".into(),
            contact: "ops@acme.example".into(),
            billing_ref: None,
            status: TenantStatus::Suspended,
            limits: TenantLimits::default(),
            created_at: SECS,
            updated_at: SECS + 1,
            retention: RetentionSettings::default(),
            legal_hold: Some(LegalHold {
                since: SECS,
                by: "operator:alice".into(),
                reason: "court order".into(),
            }),
            terminated_at: Some(SECS),
            erase_after: None,
            list_unsubscribe: false,
            auto_suppress: Default::default(),
            sending_paused: Some(SendingPause {
                since: SECS,
                rates: ReputationRates {
                    window_secs: 86_400,
                    accepted: 500,
                    hard_bounces: 31,
                    complaints: 2,
                    crossed: "bounce_rate".into(),
                    threshold_ppm: 50_000,
                },
            }),
        };
        let exported = serde_json::to_value(account(&tenant)).expect("json");
        same_fields(&tenant, &exported, &[]);
        same_fields(&tenant.legal_hold, &exported["legal_hold"], &[]);
        same_fields(&tenant.sending_paused, &exported["sending_paused"], &[]);
        same_fields(&tenant.auto_suppress, &exported["auto_suppress"], &[]);
        assert_eq!(exported["sending_paused"]["since"], "2026-12-06T20:18:44Z");
        assert_eq!(exported["auto_suppress"]["bad_domain"], true);
        assert_eq!(exported["status"], "suspended");
        assert_eq!(exported["created_at"], "2026-12-06T20:18:44Z");
        assert_eq!(exported["erase_after"], Value::Null);
        words_and_times(&exported);

        let d = DomainInfo {
            domain: "acme.example".into(),
            tenant: "acme".into(),
            created_at: SECS,
            dkim: vec![DkimKeyInfo {
                selector: "s1".into(),
                algorithm: DkimAlgorithm::Ed25519Sha256,
                state: DkimKeyState::Active,
                public_key: "AAAA".into(),
                created_at: SECS,
            }],
            verified_at: Some(SECS),
            send_unverified: false,
            bimi: None,
        };
        let exported = serde_json::to_value(domain(&d)).expect("json");
        same_fields(&d, &exported, &[]);
        same_fields(&d.dkim[0], &exported["dkim"][0], &[]);
        assert_eq!(exported["dkim"][0]["algorithm"], "ed25519-sha256");
        assert_eq!(exported["dkim"][0]["state"], "active");
        words_and_times(&exported);

        let c = CredentialInfo {
            id: "c1".into(),
            tenant: "acme".into(),
            kind: CredentialKind::Smtp,
            username: "app@acme.example".into(),
            description: None,
            created_at: SECS,
            revoked_at: Some(SECS),
        };
        let exported = serde_json::to_value(credential(&c)).expect("json");
        same_fields(&c, &exported, &[]);
        assert_eq!(exported["kind"], "smtp");
        words_and_times(&exported);

        let s = SuppressionEntry {
            address: "x@y.example".into(),
            note: None,
            added_at: SECS,
            added_by: "auto-suppress".into(),
            reason: Some("invalid_recipient".into()),
            source: Some("0123456789ABCDEF/bounced".into()),
        };
        let exported = serde_json::to_value(suppressed(&s)).expect("json");
        same_fields(&s, &exported, &[]);
        assert_eq!(exported["reason"], "invalid_recipient");
        words_and_times(&exported);
        // An operator's entry: no reason or source, both null in the file.
        let by_hand = SuppressionEntry {
            added_by: "operator:alice".into(),
            reason: None,
            source: None,
            ..s
        };
        let exported = serde_json::to_value(suppressed(&by_hand)).expect("json");
        assert_eq!(exported["reason"], Value::Null);
        assert_eq!(exported["source"], Value::Null);

        let w = WebhookInfo {
            id: "wh_0123456789abcdef".into(),
            url: "https://hooks.acme.example/w2m".into(),
            events: vec!["bounced".into(), "delivered".into()],
            created_at: SECS,
            created_by: "api:abcd1234".into(),
            disabled_at: Some(SECS + 1),
            disabled_reason: Some("deliveries failed since …".into()),
            secret: None,
        };
        let exported = serde_json::to_value(webhook(&w)).expect("json");
        same_fields(&w, &exported, &[]);
        assert_eq!(exported["disabled_at"], "2026-12-06T20:18:45Z");
        words_and_times(&exported);
        let shown = WebhookInfo {
            secret: Some("whsec_x".into()),
            ..w
        };
        let exported = serde_json::to_value(webhook(&shown)).expect("json");
        assert!(exported.get("secret").is_none(), "{exported}");

        let entry = AuditEntry {
            seq: 1,
            at_ms: MS,
            actor: "operator:alice".into(),
            role: Some(Role::Admin),
            action: "tenant.add".into(),
            tenant: Some("acme".into()),
            outcome: AuditOutcome::Ok,
            reason: None,
            detail: Some("added".into()),
            sealed_detail: Some("c2VhbGVk".into()),
            pruned: true,
            prev_hash: "00".into(),
            hash: "11".into(),
        };
        let exported = serde_json::to_value(access(&entry)).expect("json");
        same_fields(&entry, &exported, &[("at_ms", "at")]);
        assert_eq!(exported["at"], "2026-12-06T20:18:44.116Z");
        assert_eq!(exported["role"], "admin");
        assert_eq!(exported["outcome"], "ok");
        words_and_times(&exported);

        let m = ExportManifest {
            format: FORMAT.into(),
            tenant: "acme".into(),
            created_at: SECS,
            messages: 1,
            delivery_log_records: 2,
            domains: 1,
            credentials: 1,
            suppression_entries: 0,
            access_log_entries: 3,
            files: vec![ExportFile {
                path: "acme-export/account.json".into(),
                bytes: 10,
                sha256: "ab".into(),
            }],
        };
        let exported = serde_json::to_value(manifest(&m)).expect("json");
        same_fields(&m, &exported, &[]);
        assert_eq!(exported["created_at"], "2026-12-06T20:18:44Z");
        assert_eq!(exported["format"], "way2mail-tenant-export 2");
    }
}
