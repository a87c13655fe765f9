//! The protocol's types for data protection: retention settings and their effect,
//! legal holds, suppression lists, what a tenant's report, export and erasure
//! receipt say, and what retention runs and backups did.

use serde::{Deserialize, Serialize};

use crate::mta_admin::{RouteInfo, SweepReport};

/// A tenant's own retention periods, in seconds; `None` follows control's
/// `[retention]` default for that category.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionSettings {
    /// Queued message content and recipient lists (from acceptance).
    #[serde(default)]
    pub content_secs: Option<u64>,
    /// Delivery log records (from the outcome).
    #[serde(default)]
    pub delivery_log_secs: Option<u64>,
    /// Security and access logs: the audit entries about the tenant.
    #[serde(default)]
    pub security_log_secs: Option<u64>,
    /// Account and billing records, counted from the end of the subscription.
    #[serde(default)]
    pub account_secs: Option<u64>,
}

/// One retention period in force, and where it comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Period {
    pub secs: u64,
    /// `tenant` (the tenant's agreement) or `default` (control's `[retention]`).
    pub source: String,
}

/// Every retention period in force for one tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EffectiveRetention {
    pub content: Period,
    pub delivery_log: Period,
    pub security_log: Period,
    pub account: Period,
    /// Between `tenant.terminate` and the scheduled erasure.
    pub termination_grace: Period,
}

/// Control's `[retention]` defaults, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionDefaults {
    pub content_secs: u64,
    pub delivery_log_secs: u64,
    pub security_log_secs: u64,
    pub account_secs: u64,
    pub termination_grace_secs: u64,
    pub sweep_interval_secs: u64,
}

impl Default for RetentionDefaults {
    /// The platform's defaults: content 30 days, delivery and security logs 400 days
    /// (13 months, a year of monthly reviews and a margin), account and billing
    /// records 10 years after the subscription ends (tax law), 30 days between
    /// termination and erasure, an hourly sweep.
    fn default() -> RetentionDefaults {
        const DAY: u64 = 86_400;
        RetentionDefaults {
            content_secs: 30 * DAY,
            delivery_log_secs: 400 * DAY,
            security_log_secs: 400 * DAY,
            account_secs: 10 * 365 * DAY,
            termination_grace_secs: 30 * DAY,
            sweep_interval_secs: 3_600,
        }
    }
}

/// A legal hold: nothing of the tenant is deleted (retention, erasure) while set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegalHold {
    /// Unix seconds.
    pub since: u64,
    pub by: String,
    pub reason: String,
}

/// One address on a tenant's suppression list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuppressionEntry {
    /// Lower-cased.
    pub address: String,
    pub note: Option<String>,
    /// Unix seconds.
    pub added_at: u64,
    pub added_by: String,
    /// Why it was added automatically: one of [`AUTO_SUPPRESS_RULES`]
    /// (`invalid_recipient`, `bad_domain`, `complaint`, `unsubscribe`); `None` when
    /// an operator or an API key added it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The event that caused an automatic addition: `MESSAGE_ID` or
    /// `MESSAGE_ID/outcome` of the tenant's delivery log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// The automatic suppression rules, by name; a tenant may opt out of each
/// (`way2mail tenant update T --auto-suppress RULE=off`).
pub const AUTO_SUPPRESS_RULES: [&str; 4] = [
    "invalid_recipient",
    "bad_domain",
    "complaint",
    "unsubscribe",
];

/// Which automatic suppression rules apply to a tenant: all of them unless it
/// opted out. Records stored before the rules read as all on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AutoSuppress {
    /// A permanent failure categorised `invalid_recipient`.
    pub invalid_recipient: bool,
    /// A permanent failure categorised `bad_domain`, confirmed by a second one for
    /// the same address.
    pub bad_domain: bool,
    /// A complaint (ARF report).
    pub complaint: bool,
    /// A one-click unsubscribe.
    pub unsubscribe: bool,
}

impl Default for AutoSuppress {
    fn default() -> AutoSuppress {
        AutoSuppress {
            invalid_recipient: true,
            bad_domain: true,
            complaint: true,
            unsubscribe: true,
        }
    }
}

impl AutoSuppress {
    /// Whether rule `name` (one of [`AUTO_SUPPRESS_RULES`]) is on; `None` for a name
    /// that is not a rule.
    pub fn get(&self, name: &str) -> Option<bool> {
        match name {
            "invalid_recipient" => Some(self.invalid_recipient),
            "bad_domain" => Some(self.bad_domain),
            "complaint" => Some(self.complaint),
            "unsubscribe" => Some(self.unsubscribe),
            _ => None,
        }
    }

    /// Sets rule `name`; `false` for a name that is not a rule.
    pub fn set(&mut self, name: &str, on: bool) -> bool {
        let slot = match name {
            "invalid_recipient" => &mut self.invalid_recipient,
            "bad_domain" => &mut self.bad_domain,
            "complaint" => &mut self.complaint,
            "unsubscribe" => &mut self.unsubscribe,
            _ => return false,
        };
        *slot = on;
        true
    }
}

/// A tenant's rolling counts as the MTA measured them when a `[reputation]`
/// threshold was crossed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReputationRates {
    /// The window the counts cover, in seconds (24 h).
    pub window_secs: u64,
    /// Recipients accepted for delivery in the window.
    pub accepted: u64,
    /// Permanent failures of a hard category (`invalid_recipient`, `bad_domain`)
    /// and asynchronous bounces in the window.
    pub hard_bounces: u64,
    pub complaints: u64,
    /// Which threshold was crossed: `bounce_rate` or `complaint_rate`.
    pub crossed: String,
    /// The threshold, in parts per million (0.05 is 50000).
    pub threshold_ppm: u64,
}

impl ReputationRates {
    /// Hard bounces over accepted recipients, 0.0 when nothing was accepted.
    pub fn bounce_rate(&self) -> f64 {
        ratio(self.hard_bounces, self.accepted)
    }

    /// Complaints over accepted recipients, 0.0 when nothing was accepted.
    pub fn complaint_rate(&self) -> f64 {
        ratio(self.complaints, self.accepted)
    }
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// The reputation guard paused the tenant's sending: its mail stays queued (as
/// for a suspended tenant) until an operator resumes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendingPause {
    /// Unix seconds.
    pub since: u64,
    pub rates: ReputationRates,
}

/// The events a webhook may ask for, by name (`accepted` comes from the spool
/// commit, `suppressed` from a refused recipient, the others from the delivery log).
pub const WEBHOOK_EVENTS: [&str; 9] = [
    "accepted",
    "delivered",
    "deferred",
    "bounced",
    "expired",
    "suppressed",
    "unsubscribed",
    "async_bounced",
    "complained",
];

/// One of a tenant's webhook endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookInfo {
    /// `wh_` and 16 hex digits.
    pub id: String,
    pub url: String,
    /// Names from [`WEBHOOK_EVENTS`], sorted, no duplicates.
    pub events: Vec<String>,
    /// Unix seconds.
    pub created_at: u64,
    pub created_by: String,
    /// Set when deliveries failed for the MTA's whole retry period (or an operator
    /// disabled it); nothing is sent to a disabled endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_at: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<String>,
    /// The signing secret: in the answer to the request that created the endpoint,
    /// and never again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// One category of data held about a tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataCategory {
    pub category: String,
    /// `control` or `mta`.
    pub held_by: String,
    pub count: u64,
    /// Unix seconds of the oldest record, when the category has a date.
    pub oldest: Option<u64>,
    /// How long it is kept, in words (`30d (tenant's agreement)`).
    pub kept: String,
}

/// Who did what with a tenant's data, grouped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessSummary {
    pub actor: String,
    pub action: String,
    /// `ok`, `denied` or `failed`.
    pub outcome: String,
    pub count: u64,
    /// Unix milliseconds of the latest.
    pub last_at_ms: u64,
}

/// `tenant.report`: what is held about a tenant and who touched it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantReport {
    pub tenant: String,
    /// Unix seconds.
    pub generated_at: u64,
    pub status: super::TenantStatus,
    pub terminated_at: Option<u64>,
    /// When the scheduled erasure runs (after `tenant.terminate`).
    pub erase_after: Option<u64>,
    pub legal_hold: Option<LegalHold>,
    pub categories: Vec<DataCategory>,
    pub retention: EffectiveRetention,
    /// Smart hosts the tenant's mail may be handed to (the MTA's routes); all other
    /// mail goes to the recipients' own mail exchangers.
    pub delivery_partners: Vec<RouteInfo>,
    /// Why the MTA's part (spool categories, routes) is missing, when it is.
    pub mta_unavailable: Option<String>,
    /// Unix milliseconds: accesses are counted from here (90 days back).
    pub access_since_ms: u64,
    pub access: Vec<AccessSummary>,
}

/// One file of an export archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportFile {
    pub path: String,
    pub bytes: u64,
    /// Lower-case hex SHA-256 of the file.
    pub sha256: String,
}

/// The manifest of an export archive (also its last file, `manifest.json`, where
/// `created_at` is an RFC 3339 UTC string like every time in the archive).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportManifest {
    /// `way2mail-tenant-export 2`.
    pub format: String,
    pub tenant: String,
    /// Unix seconds.
    pub created_at: u64,
    pub messages: u64,
    pub delivery_log_records: u64,
    pub domains: u64,
    pub credentials: u64,
    pub suppression_entries: u64,
    pub access_log_entries: u64,
    pub files: Vec<ExportFile>,
}

/// One line of an erasure receipt: what, how many, and (when kept) until when and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptItem {
    pub category: String,
    /// `control` or `mta`.
    pub held_by: String,
    pub count: u64,
    /// Kept items: Unix seconds until which they are kept (`None`: see `why`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<u64>,
    /// Kept items: the reason (legal obligation, accountability).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

/// A data key destroyed by an erasure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShreddedKey {
    /// `control` or `mta`.
    pub held_by: String,
    /// The key id (hex); `None` when that daemon never held data of the tenant.
    pub key_id: Option<String>,
    /// Unix milliseconds; `None` while pending (the MTA was unreachable).
    pub at_ms: Option<u64>,
}

/// Ed25519 over the receipt's JSON without this field (serde's field order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptSignature {
    /// `ed25519`.
    pub algorithm: String,
    /// Base64 of the 32-byte public key.
    pub public_key: String,
    /// Base64 of the 64-byte signature.
    pub value: String,
}

/// The signed record of one erasure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErasureReceipt {
    /// `ER-YYYY-NNNN`.
    pub receipt: String,
    /// `way2mail-erasure-receipt 1`.
    pub format: String,
    pub tenant: String,
    pub business_name: String,
    /// Unix seconds.
    pub erased_at: u64,
    /// The actor who asked (`operator:NAME`, `system:retention` for a scheduled
    /// erasure after termination).
    pub requested_by: String,
    pub reason: Option<String>,
    pub removed: Vec<ReceiptItem>,
    pub kept: Vec<ReceiptItem>,
    pub shredded_keys: Vec<ShreddedKey>,
    /// What remains to be done, in words (the MTA's part when it was unreachable).
    pub pending: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<ReceiptSignature>,
}

/// What one `retention.run` did, in control and in the MTA.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionRunReport {
    /// Audit entries whose content was pruned.
    pub audit_entries_pruned: u64,
    /// Billing records past their period, deleted.
    pub billing_records_deleted: u64,
    /// Erasure receipts past their period, deleted.
    pub receipts_deleted: u64,
    /// Terminated tenants whose grace period ended: erased now (receipt ids).
    pub erased: Vec<String>,
    /// Tenants that would have been erased but are under legal hold.
    pub held: Vec<String>,
    /// The MTA's sweep, or why it could not run.
    pub mta: Option<SweepReport>,
    pub mta_unavailable: Option<String>,
}

/// What `backup.create` wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupInfo {
    /// Unix seconds.
    pub created_at: u64,
    /// Bytes of the archive.
    pub bytes: u64,
    pub control_records: u64,
    pub spool_records: u64,
    /// First 16 hex digits of the SHA-256 of the backup key: which key opens it.
    pub key_fingerprint: String,
}
