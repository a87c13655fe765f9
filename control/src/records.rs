//! The records kept in the store's trees, besides those the protocol already
//! defines (tenants are stored as [`TenantInfo`](way2mail_wire::protocol::TenantInfo), domains as [`DomainInfo`](way2mail_wire::protocol::DomainInfo), audit
//! entries as [`AuditEntry`](way2mail_wire::protocol::AuditEntry)). Records holding secrets
//! or their hashes do not implement `Debug`, so they cannot end up in a log.

use serde::{Deserialize, Serialize};

use way2mail_wire::protocol::{
    CredentialInfo, CredentialKind, DkimAlgorithm, ErasureReceipt, OperatorInfo, Role, WebhookInfo,
};

/// Meta keys.
pub const META_SNAPSHOT_VERSION: &[u8] = b"snapshot_version";
pub const META_AUDIT_HEAD: &[u8] = b"audit_head";
/// `incident_seq:YYYY` → the last incident number given out in that year (u64).
pub const META_INCIDENT_SEQ_PREFIX: &str = "incident_seq:";

#[derive(Clone, Serialize, Deserialize)]
pub struct CredentialRecord {
    pub id: String,
    pub tenant: String,
    pub kind: CredentialKind,
    /// SMTP username, or the API key's public prefix.
    pub username: String,
    pub description: Option<String>,
    /// argon2id PHC string of the password or API key.
    pub secret_hash: String,
    pub created_at: u64,
    pub revoked_at: Option<u64>,
}

impl CredentialRecord {
    pub fn info(&self) -> CredentialInfo {
        CredentialInfo {
            id: self.id.clone(),
            tenant: self.tenant.clone(),
            kind: self.kind,
            username: self.username.clone(),
            description: self.description.clone(),
            created_at: self.created_at,
            revoked_at: self.revoked_at,
        }
    }
}

#[derive(Clone, Serialize, Deserialize)]
pub struct OperatorRecord {
    pub name: String,
    pub role: Role,
    pub password_hash: String,
    /// Base32; sealed at rest like every value.
    pub totp_secret: String,
    pub created_at: u64,
    pub last_login_at: Option<u64>,
    /// The TOTP step of the last successful login; codes of that step or earlier
    /// are refused.
    pub last_totp_step: Option<u64>,
}

impl OperatorRecord {
    pub fn info(&self) -> OperatorInfo {
        OperatorInfo {
            name: self.name.clone(),
            role: self.role,
            created_at: self.created_at,
            last_login_at: self.last_login_at,
        }
    }
}

/// Stored under SHA-256 of the token; the token itself is only in the caller's hands.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionRecord {
    pub operator: String,
    pub created_at: u64,
    /// Unix seconds.
    pub expires_at: u64,
}

/// The newest audit entry, kept in meta so a removed tail is detected.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditHead {
    pub seq: u64,
    pub hash: String,
}

/// A DKIM private key, in the `dkim_keys` tree under `domain \0 selector`. Its public
/// half, state and dates are in the domain's [`DomainInfo`](way2mail_wire::protocol::DomainInfo);
/// this record is read only to build the MTA's snapshot. No `Debug`, and the key is
/// wiped from memory when the record is dropped.
#[derive(Clone, Serialize, Deserialize)]
pub struct DkimKeyRecord {
    pub domain: String,
    pub selector: String,
    pub algorithm: DkimAlgorithm,
    /// PKCS#8 DER, base64 (standard alphabet, padded): the form the snapshot carries.
    pub private_key: String,
    pub created_at: u64,
}

impl Drop for DkimKeyRecord {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.private_key);
    }
}

/// What is kept of a tenant for billing once its subscription ended, sealed with the
/// node's key (so it outlives an erasure), until `delete_after`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BillingRecord {
    pub tenant: String,
    pub business_name: String,
    pub billing_ref: Option<String>,
    /// Unix seconds: the subscription's start and end.
    pub subscribed_at: u64,
    pub terminated_at: u64,
    /// Unix seconds: the retention sweep deletes it then.
    pub delete_after: u64,
}

/// A signed erasure receipt as kept, until `delete_after`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptRecord {
    pub receipt: ErasureReceipt,
    pub delete_after: u64,
}

/// A tenant id that was erased: never used again, and listed in the MTA's snapshot
/// so that an MTA that missed the erasure completes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErasedTenant {
    pub tenant: String,
    /// Unix seconds.
    pub erased_at: u64,
    /// The receipt's id.
    pub receipt: String,
}

/// A tenant's webhook endpoint, in the `webhooks` tree under `tenant \0 id`. The
/// signing secret is kept whole, because the MTA signs with it (it reaches the MTA
/// in the snapshot); the tenant sees it once, in the answer that made it. No
/// `Debug`, and the secret is wiped from memory when the record is dropped.
#[derive(Clone, Serialize, Deserialize)]
pub struct WebhookRecord {
    /// `wh_` and 16 hex digits.
    pub id: String,
    pub url: String,
    /// Names from `WEBHOOK_EVENTS`, sorted, no duplicates.
    pub events: Vec<String>,
    /// `whsec_` and 32 alphanumeric characters.
    pub secret: String,
    /// Unix seconds.
    pub created_at: u64,
    pub created_by: String,
    /// Set while disabled (the MTA reported it failing); nothing is sent to it then.
    pub disabled_at: Option<u64>,
    pub disabled_reason: Option<String>,
}

impl WebhookRecord {
    /// The endpoint as listed: never the secret.
    pub fn info(&self) -> WebhookInfo {
        WebhookInfo {
            id: self.id.clone(),
            url: self.url.clone(),
            events: self.events.clone(),
            created_at: self.created_at,
            created_by: self.created_by.clone(),
            disabled_at: self.disabled_at,
            disabled_reason: self.disabled_reason.clone(),
            secret: None,
        }
    }
}

impl Drop for WebhookRecord {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.secret);
    }
}

/// A first `bad_domain` failure for an address of a tenant, in the
/// `suppression_candidates` tree under the same key as a suppression entry
/// (`tenant \0 blind_t(address)`), sealed with the tenant's key. A second failure
/// (another delivery, or the same one an hour later) within
/// [`SuppressionCandidate::MAX_AGE_SECS`] puts the address on the suppression list
/// and removes this record; an older one counts as never seen. Never in the
/// snapshot: the MTA knows only suppressed addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuppressionCandidate {
    /// Lower-cased.
    pub address: String,
    /// The rule it waits under (`bad_domain`).
    pub rule: String,
    /// The delivery log event of the first failure (`MESSAGE_ID` or
    /// `MESSAGE_ID/outcome`).
    pub first_source: String,
    /// Unix seconds.
    pub first_at: u64,
}

impl SuppressionCandidate {
    /// How long a first failure waits for its second (30 days); the retention
    /// sweep drops older ones.
    pub const MAX_AGE_SECS: u64 = 30 * 86_400;
    /// The same event reported again counts as a second failure only this long
    /// after the first (an hour): a retried report is not a confirmation.
    pub const SAME_SOURCE_AFTER_SECS: u64 = 3_600;

    /// Whether it is too old to be confirmed at `now`.
    pub fn expired(&self, now: u64) -> bool {
        now >= self.first_at.saturating_add(Self::MAX_AGE_SECS)
    }
}
