//! The control protocol on the wire: JSON lines over a Unix stream socket, one
//! request line in, one response line out, in order, any number per connection.
//! Documented for operators and integrators in `docs/control-protocol.md`; this file
//! is its single definition.
//!
//! ```text
//!   -> {"v":1,"id":7,"token":"…","reason":"ticket 4711","op":"tenant.show","args":{"tenant":"acme"}}
//!   <- {"v":1,"id":7,"ok":true,"result":{…}}
//!   <- {"v":1,"id":8,"ok":false,"error":{"code":"forbidden","message":"role support may not …"}}
//! ```
//!
//! `v` is the protocol version ([`VERSION`]); a request with another version gets an
//! `unsupported_version` error naming the versions this daemon speaks. `id` is the
//! caller's and echoed back. `token` is an operator session token from `login`;
//! `reason` is the justification some roles must give for reading client data.
//! Callers without a token are identified by their Unix peer credentials only:
//! root may `bootstrap`, the MTA's user may read the policy snapshot.

mod blocklist;
mod data;

use serde::{Deserialize, Serialize};

pub use crate::answer::{ErrorBody, ErrorCode};
use crate::queue::{
    QueueAction, QueueChangeReport, QueueFilter, QueueListing, QueueLogEntry, QueueMessage,
    QueueSelection, QueueSummary,
};
pub use crate::snapshot::{DkimAlgorithm, TenantStatus};
use crate::snapshot::{Snapshot, TenantLimits};

pub use blocklist::*;
pub use data::*;

/// The protocol version this build speaks.
pub const VERSION: u32 = 1;

/// Longest tenant id.
pub const MAX_TENANT_CHARS: usize = 63;

/// The tenant id rule, `[a-z0-9][a-z0-9-]{0,62}`, on every socket that names a
/// tenant (control's and the MTA's admin socket).
pub fn check_tenant_id(id: &str) -> Result<(), InvalidTenantId> {
    let b = id.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= MAX_TENANT_CHARS
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-');
    if ok {
        Ok(())
    } else {
        Err(InvalidTenantId { shown: shorten(id) })
    }
}

/// A tenant id that breaks the rule; says the rule in plain words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid tenant id {shown:?}: use 1 to 63 lower-case letters, digits and '-', starting with a letter or digit"
)]
pub struct InvalidTenantId {
    /// The id as quoted back ([`shorten`]): a hostile one may be a megabyte long.
    shown: String,
}

/// Client input as quoted back in an answer: at most 64 characters, control
/// characters replaced.
pub fn shorten(value: &str) -> String {
    value
        .chars()
        .take(64)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// Longest request line accepted, newline included; longer lines get
/// `request_too_large` and the connection is closed.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// One request line. `op` and `args` are the [`Request`] (adjacently tagged).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RequestEnvelope {
    pub v: u32,
    #[serde(default)]
    pub id: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(flatten)]
    pub request: Request,
}

/// One response line: `result` when `ok`, `error` otherwise.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResponseEnvelope {
    pub v: u32,
    pub id: u64,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Response>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

/// Operator roles, least privilege first in each pair:
/// `admin` everything; `operator` tenants, domains, credentials, queue;
/// `support` tenant metadata only (never message content or credentials, and a
/// reason for every read); `auditor` the audit log only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    Operator,
    Support,
    Auditor,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Admin, Role::Operator, Role::Support, Role::Auditor];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Support => "support",
            Role::Auditor => "auditor",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialKind {
    /// An SMTP AUTH username and password.
    Smtp,
    /// A bearer API key (for the HTTPS API).
    Api,
}

/// Every operation. Serialized as `"op": "<name>", "args": {…}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", content = "args", deny_unknown_fields)]
pub enum Request {
    /// Anyone: the daemon's version and who it thinks the caller is.
    #[serde(rename = "hello")]
    Hello,
    /// Root on the socket, only while no admin exists: creates the first admin.
    #[serde(rename = "bootstrap")]
    Bootstrap { name: String, password: String },
    /// Password and current TOTP code; returns a session token.
    #[serde(rename = "login")]
    Login {
        name: String,
        password: String,
        totp: String,
    },
    /// Ends the session of the token sent with the request.
    #[serde(rename = "logout")]
    Logout,

    #[serde(rename = "tenant.add")]
    TenantAdd {
        tenant: String,
        business_name: String,
        contact: String,
        #[serde(default)]
        billing_ref: Option<String>,
        /// Limits not given take the daemon's `[tenant_defaults]`.
        #[serde(default)]
        messages_per_hour: Option<u32>,
        #[serde(default)]
        messages_per_day: Option<u32>,
        #[serde(default)]
        recipients_per_message: Option<u32>,
    },
    #[serde(rename = "tenant.list")]
    TenantList,
    #[serde(rename = "tenant.show")]
    TenantShow { tenant: String },
    /// Changes only the fields given.
    #[serde(rename = "tenant.update")]
    TenantUpdate {
        tenant: String,
        #[serde(default)]
        business_name: Option<String>,
        #[serde(default)]
        contact: Option<String>,
        #[serde(default)]
        billing_ref: Option<String>,
        #[serde(default)]
        messages_per_hour: Option<u32>,
        #[serde(default)]
        messages_per_day: Option<u32>,
        #[serde(default)]
        recipients_per_message: Option<u32>,
        /// One-click unsubscribe (RFC 8058) on the tenant's mail.
        #[serde(default)]
        list_unsubscribe: Option<bool>,
        /// Automatic suppression rules turned on or off, by name
        /// ([`AUTO_SUPPRESS_RULES`]); those not named stay as they are.
        #[serde(default)]
        auto_suppress: std::collections::BTreeMap<String, bool>,
    },
    #[serde(rename = "tenant.suspend")]
    TenantSuspend { tenant: String },
    /// Lifts a suspension (not a termination).
    #[serde(rename = "tenant.resume")]
    TenantResume { tenant: String },
    /// Lifts a pause of the reputation guard ([`SendingPause`]); the reason is
    /// the request's.
    #[serde(rename = "tenant.resume_sending")]
    TenantResumeSending { tenant: String },
    /// Volume and outcomes of the tenant's mail since `since` (unix seconds;
    /// default the last 7 days): from the MTA's delivery log, with the
    /// suppressions control added in that time.
    #[serde(rename = "tenant.deliverability")]
    TenantDeliverability {
        tenant: String,
        #[serde(default)]
        since: Option<u64>,
    },
    /// Ends the subscription: the MTA stops the tenant's mail at once (also what is
    /// queued), and the tenant is erased when `[retention] termination_grace` is over.
    #[serde(rename = "tenant.terminate")]
    TenantTerminate { tenant: String },
    /// Sets the tenant's own retention periods (seconds; those not given stay), or
    /// with `reset` goes back to the defaults for all of them.
    #[serde(rename = "tenant.retention")]
    TenantRetention {
        tenant: String,
        #[serde(default)]
        content_secs: Option<u64>,
        #[serde(default)]
        delivery_log_secs: Option<u64>,
        #[serde(default)]
        security_log_secs: Option<u64>,
        #[serde(default)]
        account_secs: Option<u64>,
        #[serde(default)]
        reset: bool,
    },
    /// Places (`hold`) or lifts a legal hold: while held nothing of the tenant is
    /// deleted. Needs a reason.
    #[serde(rename = "tenant.hold")]
    TenantHold { tenant: String, hold: bool },
    /// Erases the tenant: deletes what the retention rules allow, shreds its keys in
    /// both daemons, and answers a signed receipt. `confirm` must repeat the tenant.
    #[serde(rename = "tenant.erase")]
    TenantErase { tenant: String, confirm: String },
    /// The erasure receipt of an erased tenant.
    #[serde(rename = "tenant.receipt")]
    TenantReceipt { tenant: String },
    /// The categories of data held, retention in force, delivery partners and the
    /// accesses of the last 90 days.
    #[serde(rename = "tenant.report")]
    TenantReport { tenant: String },
    /// Streamed: one archive (tar) of everything held about the tenant.
    #[serde(rename = "tenant.export")]
    TenantExport { tenant: String },

    /// Runs the retention sweep now, in control and in the MTA.
    #[serde(rename = "retention.run")]
    RetentionRun,
    /// Control's retention defaults.
    #[serde(rename = "retention.show")]
    RetentionShow,
    /// The blocklist monitor of the platform's sending addresses: current
    /// listings, their history, the last check, the zones and addresses watched.
    #[serde(rename = "reputation.show")]
    ReputationShow,
    /// Looks every sending address up in every blocklist zone now.
    #[serde(rename = "reputation.check")]
    ReputationCheck,

    #[serde(rename = "suppression.add")]
    SuppressionAdd {
        tenant: String,
        address: String,
        #[serde(default)]
        note: Option<String>,
    },
    #[serde(rename = "suppression.list")]
    SuppressionList { tenant: String },
    #[serde(rename = "suppression.remove")]
    SuppressionRemove { tenant: String, address: String },

    /// Streamed: a consistent backup of the control store and the spool, sealed
    /// with the backup key.
    #[serde(rename = "backup.create")]
    BackupCreate,
    /// The public key erasure receipts are signed with.
    #[serde(rename = "receipt.key")]
    ReceiptKey,

    /// The MTA's queue: messages per recipient domain by age (qshape's view).
    #[serde(rename = "queue.summary")]
    QueueSummary {
        #[serde(default)]
        filter: QueueFilter,
    },
    /// The matching queued messages (at most `limit`, 1000 by default).
    #[serde(rename = "queue.list")]
    QueueList {
        #[serde(default)]
        filter: QueueFilter,
        #[serde(default)]
        limit: Option<u64>,
    },
    /// One queued message with its delivery log records.
    #[serde(rename = "queue.show")]
    QueueShow { id: String },
    /// Takes the selected messages off the schedule until released.
    #[serde(rename = "queue.hold")]
    QueueHold {
        selection: QueueSelection,
        #[serde(default)]
        dry_run: bool,
    },
    /// Puts held messages back on the schedule, due now.
    #[serde(rename = "queue.release")]
    QueueRelease {
        selection: QueueSelection,
        #[serde(default)]
        dry_run: bool,
    },
    /// Makes the selected (not held) messages due now.
    #[serde(rename = "queue.retry")]
    QueueRetry {
        selection: QueueSelection,
        #[serde(default)]
        dry_run: bool,
    },
    /// Ends the selected messages with a bounce to their senders (5.0.0).
    #[serde(rename = "queue.bounce")]
    QueueBounce {
        selection: QueueSelection,
        #[serde(default)]
        dry_run: bool,
    },
    /// Removes the selected messages without a notice.
    #[serde(rename = "queue.delete")]
    QueueDelete {
        selection: QueueSelection,
        #[serde(default)]
        dry_run: bool,
    },

    #[serde(rename = "domain.add")]
    DomainAdd { tenant: String, domain: String },
    /// All domains, or one tenant's.
    #[serde(rename = "domain.list")]
    DomainList {
        #[serde(default)]
        tenant: Option<String>,
    },
    #[serde(rename = "domain.remove")]
    DomainRemove { tenant: String, domain: String },
    /// One domain with its DKIM keys (public halves), verification and BIMI settings.
    #[serde(rename = "domain.show")]
    DomainShow { domain: String },
    /// The DNS records to publish for a domain.
    #[serde(rename = "domain.dns")]
    DomainDns { domain: String },
    /// The DMARC aggregate reports received for the domain whose date range ends
    /// at or after `since` (unix seconds; default the last 30 days), summed by
    /// the MTA. An access to the tenant's data: audited.
    #[serde(rename = "domain.dmarc")]
    DomainDmarc {
        domain: String,
        #[serde(default)]
        since: Option<u64>,
    },
    /// Looks the records up (`[dns] nameservers`), says record by record what is
    /// missing or wrong, and marks the domain verified when every required one is right.
    #[serde(rename = "domain.verify")]
    DomainVerify { domain: String },
    /// Without `activate`: creates a pending RSA + Ed25519 pair under new selectors (to
    /// publish first). With `activate`: the pending pair signs from now on, the active
    /// one becomes retired (still published until retired for good).
    #[serde(rename = "domain.rotate_dkim")]
    DomainRotateDkim {
        domain: String,
        #[serde(default)]
        activate: bool,
        /// Activate even when the pending selectors are not found in DNS.
        #[serde(default)]
        force: bool,
    },
    /// Deletes retired keys: the one named, or every retired one.
    #[serde(rename = "domain.retire_dkim")]
    DomainRetireDkim {
        domain: String,
        #[serde(default)]
        selector: Option<String>,
    },
    /// Lets an unverified domain send (`allow`), or withdraws that. Needs a reason.
    #[serde(rename = "domain.override")]
    DomainOverride { domain: String, allow: bool },
    /// Sets (selector and logo location, optional VMC location) or clears BIMI.
    #[serde(rename = "domain.bimi")]
    DomainBimi {
        domain: String,
        #[serde(default)]
        selector: Option<String>,
        #[serde(default)]
        logo_url: Option<String>,
        #[serde(default)]
        vmc_url: Option<String>,
        #[serde(default)]
        clear: bool,
    },

    /// Creates an SMTP user (`username` required, unique) or an API key; the secret
    /// is generated, returned once, and stored only as an argon2id hash.
    #[serde(rename = "credential.add")]
    CredentialAdd {
        tenant: String,
        kind: CredentialKind,
        #[serde(default)]
        username: Option<String>,
        #[serde(default)]
        description: Option<String>,
    },
    #[serde(rename = "credential.list")]
    CredentialList {
        #[serde(default)]
        tenant: Option<String>,
    },
    #[serde(rename = "credential.revoke")]
    CredentialRevoke { id: String },

    /// Creates an operator with a generated password and TOTP secret, both returned once.
    #[serde(rename = "operator.add")]
    OperatorAdd { name: String, role: Role },
    #[serde(rename = "operator.list")]
    OperatorList,
    #[serde(rename = "operator.role")]
    OperatorRole { name: String, role: Role },
    #[serde(rename = "operator.remove")]
    OperatorRemove { name: String },

    /// Opens an incident in the register (admin only).
    #[serde(rename = "incident.open")]
    IncidentOpen {
        title: String,
        /// What happened.
        nature: String,
        /// Which data (categories, approximate volume) is affected.
        data_affected: String,
        /// The likely consequences for the clients and the people whose data it is.
        consequences: String,
        /// Measures taken or proposed to address it and limit its effects.
        measures: String,
        /// Unix seconds: when the incident was detected (default: now).
        #[serde(default)]
        detected_at: Option<u64>,
    },
    /// Marks a tenant as affected.
    #[serde(rename = "incident.add_tenant")]
    IncidentAddTenant { id: String, tenant: String },
    /// Changes only the fields given.
    #[serde(rename = "incident.update")]
    IncidentUpdate {
        id: String,
        #[serde(default)]
        title: Option<String>,
        #[serde(default)]
        nature: Option<String>,
        #[serde(default)]
        data_affected: Option<String>,
        #[serde(default)]
        consequences: Option<String>,
        #[serde(default)]
        measures: Option<String>,
    },
    /// Emails every affected tenant's contact not yet notified (every one with
    /// `again`) through the MTA (`[notify]`), and records each attempt.
    #[serde(rename = "incident.notify")]
    IncidentNotify {
        id: String,
        #[serde(default)]
        again: bool,
    },
    #[serde(rename = "incident.close")]
    IncidentClose { id: String, resolution: String },
    #[serde(rename = "incident.list")]
    IncidentList,
    #[serde(rename = "incident.show")]
    IncidentShow { id: String },

    /// Audit entries, oldest first, filtered.
    #[serde(rename = "audit.list")]
    AuditList {
        #[serde(default)]
        tenant: Option<String>,
        /// Only entries with `seq >= since_seq`.
        #[serde(default)]
        since_seq: Option<u64>,
        /// At most this many (the newest ones when more match); default 100.
        #[serde(default)]
        limit: Option<u32>,
    },
    /// Walks the whole chain and reports every broken link.
    #[serde(rename = "audit.verify")]
    AuditVerify,

    /// The MTA's user (peer credentials): the policy snapshot, or `unchanged` when
    /// the caller already holds `known_version`.
    #[serde(rename = "snapshot.get")]
    SnapshotGet {
        #[serde(default)]
        known_version: Option<u64>,
    },
    /// The MTA's user: what one of its scheduled retention sweeps removed (counts
    /// only), for the audit log.
    #[serde(rename = "retention.report")]
    RetentionReport {
        report: crate::mta_admin::SweepReport,
    },
    /// The MTA's user, for a tenant's HTTPS API request: one operation on the data
    /// of the tenant whose API key `credential_id` is (checked here: an unrevoked
    /// API key), audited as that key's.
    #[serde(rename = "api.call")]
    ApiCall {
        credential_id: String,
        call: ApiCall,
    },
    /// The MTA's user: a recipient used the one-click unsubscribe link (RFC 8058)
    /// of `tenant`'s mail; `address` goes on its suppression list (already there
    /// is fine).
    #[serde(rename = "api.unsubscribe")]
    ApiUnsubscribe { tenant: String, address: String },
    /// The MTA's user: a hard signal about `address` of `tenant`'s mail under
    /// `rule` (one of [`AUTO_SUPPRESS_RULES`] but `unsubscribe`), from the
    /// delivery log event `source`. Control adds the address to the suppression
    /// list unless the tenant opted out of the rule; `bad_domain` only at its
    /// second report for the address. Answers `done` whatever it decided (the
    /// audit entry says what).
    #[serde(rename = "api.auto_suppress")]
    ApiAutoSuppress {
        tenant: String,
        address: String,
        rule: String,
        source: String,
    },
    /// The MTA's user: `tenant`'s rolling rates crossed a `[reputation]`
    /// threshold. Control pauses its sending ([`SendingPause`]), audits, and
    /// tells the operator address and the tenant's contact. Already paused: `done`.
    #[serde(rename = "api.reputation_pause")]
    ApiReputationPause {
        tenant: String,
        rates: ReputationRates,
    },
    /// The MTA's user: every delivery to webhook `id` of `tenant` failed since
    /// `failing_since` (unix seconds) for the MTA's whole retry period. Control
    /// disables the endpoint and tells the tenant's contact.
    #[serde(rename = "api.webhook_failing")]
    ApiWebhookFailing {
        tenant: String,
        id: String,
        failing_since: u64,
        last_error: String,
    },

    /// A webhook endpoint for `tenant`: `url` receives the named events (see
    /// [`WEBHOOK_EVENTS`]). The answer carries the signing secret, once.
    #[serde(rename = "webhook.add")]
    WebhookAdd {
        tenant: String,
        url: String,
        events: Vec<String>,
    },
    #[serde(rename = "webhook.list")]
    WebhookList { tenant: String },
    #[serde(rename = "webhook.remove")]
    WebhookRemove { tenant: String, id: String },
    /// Enables a disabled endpoint again.
    #[serde(rename = "webhook.enable")]
    WebhookEnable { tenant: String, id: String },
}

/// What an HTTPS API request asks of control (`api.call`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ApiCall {
    SuppressionList,
    SuppressionAdd {
        address: String,
        #[serde(default)]
        note: Option<String>,
    },
    SuppressionRemove {
        address: String,
    },
    DomainList,
    WebhookAdd {
        url: String,
        events: Vec<String>,
    },
    WebhookList,
    WebhookRemove {
        id: String,
    },
    /// Enables the key's tenant's endpoint `id` again after it was disabled.
    WebhookEnable {
        id: String,
    },
    DomainDns {
        domain: String,
    },
    /// A read the MTA answered from its own data (a message, events): recorded
    /// in the audit log only. `what` names it (`GET /v1/messages/ID`).
    Access {
        what: String,
    },
}

impl ApiCall {
    /// The audit action (`api.suppression.add`).
    pub fn name(&self) -> &'static str {
        match self {
            ApiCall::SuppressionList => "api.suppression.list",
            ApiCall::SuppressionAdd { .. } => "api.suppression.add",
            ApiCall::SuppressionRemove { .. } => "api.suppression.remove",
            ApiCall::DomainList => "api.domain.list",
            ApiCall::WebhookAdd { .. } => "api.webhook.add",
            ApiCall::WebhookList => "api.webhook.list",
            ApiCall::WebhookRemove { .. } => "api.webhook.remove",
            ApiCall::WebhookEnable { .. } => "api.webhook.enable",
            ApiCall::DomainDns { .. } => "api.domain.dns",
            ApiCall::Access { .. } => "api.access",
        }
    }
}

impl Request {
    /// The queue change a `queue.hold|release|retry|bounce|delete` request asks
    /// for, with its selection and dry-run flag.
    pub fn queue_change(&self) -> Option<(QueueAction, &QueueSelection, bool)> {
        let (action, selection, dry_run) = match self {
            Request::QueueHold { selection, dry_run } => (QueueAction::Hold, selection, dry_run),
            Request::QueueRelease { selection, dry_run } => {
                (QueueAction::Release, selection, dry_run)
            }
            Request::QueueRetry { selection, dry_run } => (QueueAction::Retry, selection, dry_run),
            Request::QueueBounce { selection, dry_run } => {
                (QueueAction::Bounce, selection, dry_run)
            }
            Request::QueueDelete { selection, dry_run } => {
                (QueueAction::Delete, selection, dry_run)
            }
            _ => return None,
        };
        Some((action, selection, *dry_run))
    }

    /// The operation name as on the wire (`tenant.add`), for logs and the audit log.
    pub fn op(&self) -> &'static str {
        match self {
            Request::Hello => "hello",
            Request::Bootstrap { .. } => "bootstrap",
            Request::Login { .. } => "login",
            Request::Logout => "logout",
            Request::TenantAdd { .. } => "tenant.add",
            Request::TenantList => "tenant.list",
            Request::TenantShow { .. } => "tenant.show",
            Request::TenantUpdate { .. } => "tenant.update",
            Request::TenantSuspend { .. } => "tenant.suspend",
            Request::TenantResume { .. } => "tenant.resume",
            Request::TenantResumeSending { .. } => "tenant.resume_sending",
            Request::TenantDeliverability { .. } => "tenant.deliverability",
            Request::TenantTerminate { .. } => "tenant.terminate",
            Request::TenantRetention { .. } => "tenant.retention",
            Request::TenantHold { .. } => "tenant.hold",
            Request::TenantErase { .. } => "tenant.erase",
            Request::TenantReceipt { .. } => "tenant.receipt",
            Request::TenantReport { .. } => "tenant.report",
            Request::TenantExport { .. } => "tenant.export",
            Request::RetentionRun => "retention.run",
            Request::RetentionShow => "retention.show",
            Request::ReputationShow => "reputation.show",
            Request::ReputationCheck => "reputation.check",
            Request::SuppressionAdd { .. } => "suppression.add",
            Request::SuppressionList { .. } => "suppression.list",
            Request::SuppressionRemove { .. } => "suppression.remove",
            Request::BackupCreate => "backup.create",
            Request::ReceiptKey => "receipt.key",
            Request::QueueSummary { .. } => "queue.summary",
            Request::QueueList { .. } => "queue.list",
            Request::QueueShow { .. } => "queue.show",
            Request::QueueHold { .. } => "queue.hold",
            Request::QueueRelease { .. } => "queue.release",
            Request::QueueRetry { .. } => "queue.retry",
            Request::QueueBounce { .. } => "queue.bounce",
            Request::QueueDelete { .. } => "queue.delete",
            Request::DomainAdd { .. } => "domain.add",
            Request::DomainList { .. } => "domain.list",
            Request::DomainRemove { .. } => "domain.remove",
            Request::DomainShow { .. } => "domain.show",
            Request::DomainDns { .. } => "domain.dns",
            Request::DomainDmarc { .. } => "domain.dmarc",
            Request::DomainVerify { .. } => "domain.verify",
            Request::DomainRotateDkim { .. } => "domain.rotate_dkim",
            Request::DomainRetireDkim { .. } => "domain.retire_dkim",
            Request::DomainOverride { .. } => "domain.override",
            Request::DomainBimi { .. } => "domain.bimi",
            Request::CredentialAdd { .. } => "credential.add",
            Request::CredentialList { .. } => "credential.list",
            Request::CredentialRevoke { .. } => "credential.revoke",
            Request::OperatorAdd { .. } => "operator.add",
            Request::OperatorList => "operator.list",
            Request::OperatorRole { .. } => "operator.role",
            Request::OperatorRemove { .. } => "operator.remove",
            Request::IncidentOpen { .. } => "incident.open",
            Request::IncidentAddTenant { .. } => "incident.add_tenant",
            Request::IncidentUpdate { .. } => "incident.update",
            Request::IncidentNotify { .. } => "incident.notify",
            Request::IncidentClose { .. } => "incident.close",
            Request::IncidentList => "incident.list",
            Request::IncidentShow { .. } => "incident.show",
            Request::AuditList { .. } => "audit.list",
            Request::AuditVerify => "audit.verify",
            Request::SnapshotGet { .. } => "snapshot.get",
            Request::RetentionReport { .. } => "retention.report",
            Request::ApiCall { .. } => "api.call",
            Request::ApiUnsubscribe { .. } => "api.unsubscribe",
            Request::ApiAutoSuppress { .. } => "api.auto_suppress",
            Request::ApiReputationPause { .. } => "api.reputation_pause",
            Request::ApiWebhookFailing { .. } => "api.webhook_failing",
            Request::WebhookAdd { .. } => "webhook.add",
            Request::WebhookList { .. } => "webhook.list",
            Request::WebhookRemove { .. } => "webhook.remove",
            Request::WebhookEnable { .. } => "webhook.enable",
        }
    }
}

/// Every successful result, one variant per kind of answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Response {
    Hello {
        daemon_version: String,
        protocol_versions: Vec<u32>,
        /// `operator:NAME`, `root`, `owner:UID` (the daemon's own user), `service:UID`
        /// or `uid:UID`.
        caller: String,
    },
    /// Bootstrap and operator.add: the new operator's secrets, shown this once.
    OperatorCreated {
        name: String,
        role: Role,
        /// The generated password (operator.add); empty after bootstrap, whose
        /// caller chose the password.
        password: String,
        /// Base32 TOTP secret and the `otpauth://` URI for authenticator apps.
        totp_secret: String,
        totp_uri: String,
    },
    LoggedIn {
        token: String,
        role: Role,
        /// Unix seconds.
        expires_at: u64,
    },
    Done,
    Tenant(TenantInfo),
    Tenants {
        tenants: Vec<TenantInfo>,
    },
    Domains {
        domains: Vec<DomainInfo>,
    },
    Domain(DomainInfo),
    DnsRecords(DomainRecords),
    Verification(DomainVerification),
    /// credential.add: the secret, shown this once.
    CredentialCreated {
        credential: CredentialInfo,
        secret: String,
    },
    Credentials {
        credentials: Vec<CredentialInfo>,
    },
    Operators {
        operators: Vec<OperatorInfo>,
    },
    Incident(IncidentInfo),
    Incidents {
        incidents: Vec<IncidentInfo>,
    },
    /// incident.notify: the incident with every notification record, and the
    /// attempts of this request (empty when every affected tenant was notified).
    IncidentNotified {
        incident: IncidentInfo,
        sent: Vec<Notification>,
    },
    Audit {
        entries: Vec<AuditEntry>,
    },
    AuditVerified(AuditReport),
    Snapshot(Snapshot),
    SnapshotUnchanged {
        version: u64,
    },
    /// The first line of a streamed answer: frames follow, then the final line.
    Stream,
    ErasureReceipt(ErasureReceipt),
    TenantReport(TenantReport),
    Deliverability(crate::mta_admin::DeliverabilityReport),
    Dmarc(crate::mta_admin::DmarcSummary),
    /// The final line of `tenant.export`.
    TenantExported(ExportManifest),
    RetentionRun(RetentionRunReport),
    RetentionDefaults(RetentionDefaults),
    /// `reputation.show` and `reputation.check`: the blocklist monitor's state.
    Reputation(ReputationReport),
    Suppressions {
        entries: Vec<SuppressionEntry>,
    },
    Webhooks {
        webhooks: Vec<WebhookInfo>,
    },
    /// The final line of `backup.create`.
    BackupCreated(BackupInfo),
    QueueSummary(QueueSummary),
    QueueListing(QueueListing),
    QueueMessage {
        message: QueueMessage,
        log: Vec<QueueLogEntry>,
    },
    QueueChanged(QueueChangeReport),
    ReceiptKey {
        algorithm: String,
        /// Base64 of the 32-byte Ed25519 public key.
        public_key: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantInfo {
    pub tenant: String,
    pub business_name: String,
    pub contact: String,
    pub billing_ref: Option<String>,
    pub status: TenantStatus,
    pub limits: TenantLimits,
    /// Unix seconds.
    pub created_at: u64,
    pub updated_at: u64,
    /// The tenant's own retention periods (its agreement); unset ones follow the
    /// defaults.
    #[serde(default)]
    pub retention: RetentionSettings,
    #[serde(default)]
    pub legal_hold: Option<LegalHold>,
    /// When the subscription ended (`tenant.terminate`).
    #[serde(default)]
    pub terminated_at: Option<u64>,
    /// When the scheduled erasure runs.
    #[serde(default)]
    pub erase_after: Option<u64>,
    /// The MTA adds one-click unsubscribe headers (RFC 8058) to the tenant's mail.
    #[serde(default)]
    pub list_unsubscribe: bool,
    /// Which automatic suppression rules apply.
    #[serde(default)]
    pub auto_suppress: AutoSuppress,
    /// Set while the reputation guard holds the tenant's mail.
    #[serde(default)]
    pub sending_paused: Option<SendingPause>,
}

/// A domain as stored and as shown. Fields after `created_at` came with DKIM and
/// default to empty so that records stored before them still read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainInfo {
    pub domain: String,
    pub tenant: String,
    pub created_at: u64,
    /// Public halves only; the private keys live in their own sealed tree.
    #[serde(default)]
    pub dkim: Vec<DkimKeyInfo>,
    /// Unix seconds of the last `domain.verify` that found every required record;
    /// `None` when never verified or when a later check found one missing or wrong.
    #[serde(default)]
    pub verified_at: Option<u64>,
    /// An operator let this domain send while unverified (audited).
    #[serde(default)]
    pub send_unverified: bool,
    #[serde(default)]
    pub bimi: Option<BimiInfo>,
}

impl DomainInfo {
    /// Whether the MTA may send mail from it: verified, or overridden.
    pub fn may_send(&self) -> bool {
        self.verified_at.is_some() || self.send_unverified
    }
}

/// Where a key is in its life: `pending` (created by a rotation, to be published),
/// `active` (signs), `retired` (replaced; stays published until deleted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DkimKeyState {
    Pending,
    Active,
    Retired,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DkimKeyInfo {
    pub selector: String,
    pub algorithm: DkimAlgorithm,
    pub state: DkimKeyState,
    /// The record's `p=` value: base64 of the SubjectPublicKeyInfo (RSA) or of the
    /// 32-byte public key (Ed25519).
    pub public_key: String,
    /// Unix seconds.
    pub created_at: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BimiInfo {
    /// The `BIMI-Selector:` `s=` value and the record's label (`default`).
    pub selector: String,
    /// `l=`: https location of the SVG Tiny PS logo.
    pub logo_url: String,
    /// `a=`: https location of the Verified Mark Certificate, if any.
    pub vmc_url: Option<String>,
}

/// What a record is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordPurpose {
    Spf,
    Dkim,
    Dmarc,
    Bimi,
}

impl RecordPurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordPurpose::Spf => "spf",
            RecordPurpose::Dkim => "dkim",
            RecordPurpose::Dmarc => "dmarc",
            RecordPurpose::Bimi => "bimi",
        }
    }
}

/// One record to publish.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsRecord {
    pub purpose: RecordPurpose,
    /// Owner name, fully qualified, without the trailing dot.
    pub name: String,
    /// Always `TXT` today.
    pub rtype: String,
    /// The record's text, unquoted and unsplit.
    pub value: String,
    /// What it is for / what to do with it (`selector w2m-… (pending: publish before
    /// activating)`).
    pub note: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainRecords {
    pub domain: String,
    pub records: Vec<DnsRecord>,
}

/// The state of one published record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    /// Present and right.
    Ok,
    /// Not published (no record of that kind at the name).
    Missing,
    /// Published but wrong (the detail says how).
    Wrong,
    /// The lookup failed (timeout, SERVFAIL): nothing can be said.
    Error,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordCheck {
    pub purpose: RecordPurpose,
    pub name: String,
    pub status: CheckStatus,
    /// Whether the domain needs this one to count as verified.
    pub required: bool,
    /// What should be there, when one exact value is expected.
    pub expected: Option<String>,
    /// What the lookup found (every TXT string of the relevant kind).
    pub found: Vec<String>,
    /// One sentence: what is right, missing or wrong.
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainVerification {
    pub domain: String,
    /// Every required check is `ok`.
    pub verified: bool,
    pub checks: Vec<RecordCheck>,
    /// Unix seconds.
    pub checked_at: u64,
}

/// A credential as listed: never the secret or its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialInfo {
    pub id: String,
    pub tenant: String,
    pub kind: CredentialKind,
    /// SMTP username; for API keys the key's public prefix.
    pub username: String,
    pub description: Option<String>,
    pub created_at: u64,
    pub revoked_at: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorInfo {
    pub name: String,
    pub role: Role,
    pub created_at: u64,
    pub last_login_at: Option<u64>,
}

/// One entry of the incident register.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentInfo {
    /// `INC-YYYY-NNNN`: the year it was opened and its number in that year.
    pub id: String,
    pub title: String,
    pub nature: String,
    pub data_affected: String,
    pub consequences: String,
    pub measures: String,
    /// Unix seconds.
    pub opened_at: u64,
    /// The actor who opened it (`operator:NAME`).
    pub opened_by: String,
    pub detected_at: u64,
    pub updated_at: u64,
    pub closed_at: Option<u64>,
    pub closed_by: Option<String>,
    pub resolution: Option<String>,
    /// Affected tenants, in the order they were added.
    pub tenants: Vec<String>,
    /// Every notification attempt, oldest first.
    pub notifications: Vec<Notification>,
}

impl IncidentInfo {
    /// Whether `tenant` has been notified successfully.
    pub fn notified(&self, tenant: &str) -> bool {
        self.notifications
            .iter()
            .any(|n| n.tenant == tenant && n.outcome == NotificationOutcome::Ok)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationOutcome {
    /// The MTA accepted the message (2xx at the end of DATA).
    Ok,
    /// Not handed over: a refusal, no connection, or a contact that is no address.
    Failed,
}

/// One notification email of an incident to one tenant's contact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    pub tenant: String,
    /// The address written to (the tenant's contact at the time).
    pub contact: String,
    /// Unix seconds.
    pub sent_at: u64,
    /// The actor who sent it.
    pub sent_by: String,
    pub outcome: NotificationOutcome,
    /// The MTA's final reply (`250 2.0.0 <id> queued`), or why it failed.
    pub reply: String,
    /// The `Message-ID:` of the email, without angle brackets.
    pub message_id: String,
    /// The MTA's queue id, when its reply names one.
    pub queue_id: Option<String>,
}

/// Whether the audited request succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditOutcome {
    Ok,
    /// Refused by the role check, a missing token or a missing reason.
    Denied,
    /// Accepted but failed (not found, invalid, conflict, internal).
    Failed,
}

/// One audit log entry as stored (inside its sealed record) and as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// 1, 2, 3, … without gaps.
    pub seq: u64,
    /// Unix milliseconds.
    pub at_ms: u64,
    /// `operator:NAME`, `root`, `owner:UID`, `service:UID` or `uid:UID`.
    pub actor: String,
    pub role: Option<Role>,
    /// The operation name (`tenant.show`).
    pub action: String,
    pub tenant: Option<String>,
    pub outcome: AuditOutcome,
    pub reason: Option<String>,
    /// What changed or why it failed, without secrets. For an entry about a tenant
    /// the stored entry holds it only sealed (`sealed_detail`); listings put the
    /// opened text here, and leave it empty once the tenant's key is destroyed.
    pub detail: Option<String>,
    /// The detail of an entry about a tenant, sealed with that tenant's data key
    /// (base64), so that erasing the tenant erases it too, while the chain still
    /// verifies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed_detail: Option<String>,
    /// The retention sweep removed this entry's content; only its place in the
    /// chain (seq, time, hashes) remains.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pruned: bool,
    /// Hex SHA-256 of the previous entry (`hash`), all zeros for the first.
    pub prev_hash: String,
    /// Hex SHA-256 over `prev_hash` and this entry's other fields (canonical JSON).
    pub hash: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditReport {
    /// Entries checked.
    pub entries: u64,
    /// Empty when the chain is intact.
    pub problems: Vec<AuditProblem>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditProblem {
    /// The sequence number (or store position) where the chain breaks.
    pub seq: u64,
    /// `changed`, `removed`, `reordered`, `unreadable`, `truncated`.
    pub kind: String,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_wire_form() {
        let line = r#"{"v":1,"id":3,"token":"t","op":"tenant.show","args":{"tenant":"acme"}}"#;
        let req: RequestEnvelope = serde_json::from_str(line).expect("parse");
        assert_eq!(req.v, 1);
        assert_eq!(req.id, 3);
        assert_eq!(
            req.request,
            Request::TenantShow {
                tenant: "acme".into()
            }
        );
        let unit = r#"{"v":1,"op":"tenant.list"}"#;
        let req: RequestEnvelope = serde_json::from_str(unit).expect("unit op");
        assert_eq!(req.request, Request::TenantList);
        assert_eq!(req.request.op(), "tenant.list");
    }

    #[test]
    fn wrong_types_and_unknown_ops_are_errors() {
        for bad in [
            r#"{"v":1,"op":"tenant.show","args":{"tenant":5}}"#,
            r#"{"v":1,"op":"tenant.nope"}"#,
            r#"{"v":"1","op":"hello"}"#,
            r#"{"v":1,"op":"tenant.show","args":{"tenant":"a","extra":1}}"#,
        ] {
            assert!(
                serde_json::from_str::<RequestEnvelope>(bad).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn tenant_id_rule() {
        for good in ["acme", "0day", "a-b-c", &"a".repeat(MAX_TENANT_CHARS)] {
            assert_eq!(check_tenant_id(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "-acme",
            "Acme",
            "ac me",
            &"a".repeat(MAX_TENANT_CHARS + 1),
        ] {
            assert!(check_tenant_id(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            check_tenant_id("Acme\n")
                .expect_err("upper case")
                .to_string(),
            "invalid tenant id \"Acme?\": use 1 to 63 lower-case letters, digits and '-', \
             starting with a letter or digit"
        );
    }

    #[test]
    fn response_round_trip() {
        let r = ResponseEnvelope {
            v: VERSION,
            id: 9,
            ok: true,
            result: Some(Response::Done),
            error: None,
        };
        let text = serde_json::to_string(&r).expect("serialize");
        assert_eq!(text, r#"{"v":1,"id":9,"ok":true,"result":{"kind":"done"}}"#);
        let back: ResponseEnvelope = serde_json::from_str(&text).expect("parse");
        assert_eq!(back.result, Some(Response::Done));
    }
}
