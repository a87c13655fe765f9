//! The policy snapshot the MTA loads from control: every tenant with its status,
//! domains, sending limits and SMTP users (argon2id hashes, never passwords). The
//! version grows with every change to any of it, so the MTA can poll cheaply with
//! `snapshot.get {known_version}` and swap in a new snapshot when it moved.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Grows by at least one with every change to tenants, domains or credentials.
    pub version: u64,
    /// Unix milliseconds when control produced it.
    pub generated_at_ms: u64,
    pub tenants: Vec<SnapshotTenant>,
    /// Tenants erased in control: the MTA shreds its key for each of them and
    /// deletes what it still holds, if it has not already (an erasure made while it
    /// was unreachable). Empty in snapshots from before erasure existed.
    #[serde(default)]
    pub erased: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotTenant {
    pub tenant: String,
    pub status: TenantStatus,
    /// Lower-case domain names the tenant may send from.
    pub domains: Vec<String>,
    pub limits: TenantLimits,
    /// Unrevoked SMTP credentials only.
    pub smtp_users: Vec<SmtpUser>,
    /// Per domain (one entry for each of `domains`): may it send, and with which
    /// signing keys. Empty in snapshots from before DKIM.
    #[serde(default)]
    pub sending: Vec<SendingDomain>,
    /// How long the MTA keeps this tenant's data (effective: the tenant's own
    /// settings over control's defaults). `None` in snapshots from before retention:
    /// the MTA's `[retention]` defaults apply.
    #[serde(default)]
    pub retention: Option<MtaRetention>,
    /// Under legal hold: the MTA's retention sweep deletes nothing of this tenant.
    #[serde(default)]
    pub legal_hold: bool,
    /// The tenant's suppression list: lower-case hex SHA-256 of each suppressed
    /// address, lower-cased. The MTA refuses these recipients for the tenant's mail.
    #[serde(default)]
    pub suppressed: Vec<String>,
    /// Unrevoked API keys, for the HTTPS API. Empty in snapshots from before it.
    #[serde(default)]
    pub api_keys: Vec<ApiKey>,
    /// Add one-click unsubscribe headers (RFC 8058) to the tenant's mail.
    #[serde(default)]
    pub list_unsubscribe: bool,
    /// The tenant's enabled webhook endpoints. Empty in snapshots from before them.
    #[serde(default)]
    pub webhooks: Vec<SnapshotWebhook>,
    /// The reputation guard paused the tenant's sending: the MTA holds its mail
    /// (accepted and queued, not delivered) as for a suspended tenant.
    #[serde(default)]
    pub sending_paused: bool,
}

/// A webhook endpoint as the MTA needs it: where to post which events, and the
/// secret to sign them with.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotWebhook {
    pub id: String,
    pub url: String,
    pub events: Vec<String>,
    pub secret: String,
}

impl std::fmt::Debug for SnapshotWebhook {
    /// Without the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotWebhook")
            .field("id", &self.id)
            .field("url", &self.url)
            .field("events", &self.events)
            .finish_non_exhaustive()
    }
}

/// The retention periods the MTA enforces for one tenant, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MtaRetention {
    /// Queued message content and recipient lists, counted from acceptance.
    pub content_secs: u64,
    /// Delivery log records, counted from the outcome.
    pub delivery_log_secs: u64,
}

/// The form of an address on suppression lists and in snapshots: lower-case hex
/// SHA-256 of the address, lower-cased and trimmed.
pub fn suppression_hash(address: &str) -> String {
    let normal = address.trim().to_lowercase();
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, normal.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// What the MTA needs to send mail from one tenant domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendingDomain {
    /// Lower-case.
    pub domain: String,
    /// Verified, or an operator let it send unverified.
    pub may_send: bool,
    /// The active keys (normally one RSA and one Ed25519); empty when it has none.
    pub dkim: Vec<SigningKey>,
    /// `BIMI-Selector: v=BIMI1; s=…` is added when set.
    pub bimi_selector: Option<String>,
}

/// A private DKIM key, as only the MTA's user ever receives it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningKey {
    pub selector: String,
    pub algorithm: DkimAlgorithm,
    /// PKCS#8 DER, base64 (standard alphabet, padded).
    pub private_key: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("selector", &self.selector)
            .field("algorithm", &self.algorithm)
            .field("private_key", &"<redacted>")
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmtpUser {
    pub username: String,
    pub credential_id: String,
    /// PHC string (`$argon2id$v=19$m=…`), checked with `way2mail_seal::password::verify`.
    pub password_hash: String,
}

/// An API key as the MTA checks it: `w2m_<prefix>_<secret>`, found by its public
/// prefix and verified against the argon2id hash of the whole key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    pub prefix: String,
    pub credential_id: String,
    /// PHC string of the whole key.
    pub key_hash: String,
}

/// Per-tenant sending limits, enforced by the MTA on authenticated submission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantLimits {
    pub messages_per_hour: u32,
    pub messages_per_day: u32,
    pub recipients_per_message: u32,
}

impl Default for TenantLimits {
    fn default() -> TenantLimits {
        TenantLimits {
            messages_per_hour: 10_000,
            messages_per_day: 100_000,
            recipients_per_message: 1_000,
        }
    }
}

/// Whether a tenant may send: the snapshot carries it, and so do tenant answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TenantStatus {
    Active,
    Suspended,
    Terminated,
}

/// The two DKIM key types a tenant domain signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DkimAlgorithm {
    /// `a=rsa-sha256`, 2048-bit keys.
    RsaSha256,
    /// `a=ed25519-sha256` (RFC 8463).
    Ed25519Sha256,
}

impl DkimAlgorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            DkimAlgorithm::RsaSha256 => "rsa-sha256",
            DkimAlgorithm::Ed25519Sha256 => "ed25519-sha256",
        }
    }

    /// The `k=` tag of the DNS record.
    pub fn key_type(self) -> &'static str {
        match self {
            DkimAlgorithm::RsaSha256 => "rsa",
            DkimAlgorithm::Ed25519Sha256 => "ed25519",
        }
    }
}
