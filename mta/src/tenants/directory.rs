//! One control snapshot, indexed for the questions sessions ask: who is this SMTP
//! username (tenant, credential, password hash), may this tenant send now and from
//! this address, and how is mail from a tenant domain signed (may the domain send,
//! its DKIM keys, its BIMI selector). Built once per snapshot version, then only
//! read, shared between cores behind an `Arc`; [`Current`] is the slot the follower
//! swaps.
//!
//! DKIM keys are decoded when a domain first signs under a snapshot version (not per
//! message, and not for domains that send nothing), and carried over to the next
//! version when its keys did not change ([`Directory::adopt_keys`]).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock, RwLock};

use way2mail_mta::signing::Key;
use way2mail_smtp::reply::{EnhancedCode, Reply};
use way2mail_smtp::server::Grant;
use way2mail_wire::protocol::{DkimAlgorithm, TenantStatus};
use way2mail_wire::snapshot::{suppression_hash, MtaRetention, Snapshot, TenantLimits};
use zeroize::Zeroizing;

use crate::config::authn::MissingKeys;

/// How an API key appears where an SMTP username would: `Grant::username`, the
/// verifier's cache and the lockout key are `"api key <prefix>"`. SMTP usernames
/// have no spaces (control refuses them), so the two never meet.
pub const API_KEY_USER: &str = "api key ";

/// An SMTP user (or an API key) as the directory knows it.
#[derive(Debug)]
pub struct User {
    pub tenant: String,
    pub credential_id: String,
    /// PHC string (`$argon2id$…`).
    pub password_hash: String,
}

#[derive(Debug)]
pub struct Tenant {
    pub status: TenantStatus,
    /// Lower-case, exact names: a subdomain is not covered by its parent.
    pub domains: HashSet<String>,
    pub limits: TenantLimits,
    /// How long the MTA keeps the tenant's data; `None`: the `[retention]` defaults.
    pub retention: Option<MtaRetention>,
    /// Under legal hold: the retention sweep deletes nothing of the tenant.
    pub legal_hold: bool,
    /// One-click unsubscribe headers (RFC 8058) on its mail.
    pub list_unsubscribe: bool,
    /// Its enabled webhook endpoints.
    pub webhooks: Vec<way2mail_wire::snapshot::SnapshotWebhook>,
    /// The reputation guard paused its sending: its mail is held.
    pub sending_paused: bool,
    /// [`suppression_hash`] of every address the tenant may not send to.
    suppressed: HashSet<String>,
}

impl Tenant {
    /// Whether the tenant's suppression list holds `address` (any case).
    pub fn suppresses(&self, address: &str) -> bool {
        !self.suppressed.is_empty() && self.suppressed.contains(&suppression_hash(address))
    }
}

/// One tenant domain as the signer sees it.
#[derive(Debug)]
pub struct Sending {
    /// The tenant the domain belongs to.
    pub tenant: String,
    /// Verified, or an operator let it send unverified.
    pub may_send: bool,
    /// The `s=` of the `BIMI-Selector:` field to set, when the domain has BIMI.
    pub bimi_selector: Option<String>,
    keys: Arc<KeySet>,
}

impl Sending {
    /// The usable active keys, decoded on first use under this snapshot version. A
    /// key that cannot be decoded is logged (once) and left out.
    pub fn keys(&self, domain: &str) -> &[Key] {
        self.keys.parsed.get_or_init(|| {
            self.keys
                .source
                .iter()
                .filter_map(
                    |k| match Key::from_base64(&k.selector, k.algorithm, &k.private_key) {
                        Ok(key) => Some(key),
                        Err(e) => {
                            tracing::error!(
                                domain,
                                selector = %k.selector,
                                error = %e,
                                "DKIM key unusable; the domain signs without it"
                            );
                            None
                        }
                    },
                )
                .collect()
        })
    }

    /// Whether the snapshot lists any active key (usable or not).
    pub fn has_keys(&self) -> bool {
        !self.keys.source.is_empty()
    }
}

/// A private key as the snapshot gives it; the base64 is wiped when dropped.
#[derive(PartialEq, Eq)]
struct KeySource {
    selector: String,
    algorithm: DkimAlgorithm,
    private_key: Zeroizing<String>,
}

/// The active keys of one domain: as received, and decoded once.
#[derive(Default)]
struct KeySet {
    source: Vec<KeySource>,
    parsed: OnceLock<Vec<Key>>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let selectors: Vec<&str> = self.source.iter().map(|k| k.selector.as_str()).collect();
        f.debug_struct("KeySet")
            .field("selectors", &selectors)
            .field("decoded", &self.parsed.get().is_some())
            .finish()
    }
}

#[derive(Debug)]
pub struct Directory {
    pub version: u64,
    users: HashMap<String, User>,
    /// API keys by their public prefix.
    api_keys: HashMap<String, User>,
    tenants: HashMap<String, Tenant>,
    /// Every tenant domain (lower-case) → how it sends.
    sending: HashMap<String, Sending>,
}

impl Directory {
    pub fn new(snapshot: &Snapshot) -> Directory {
        let mut users = HashMap::new();
        let mut api_keys = HashMap::new();
        let mut tenants = HashMap::new();
        let mut sending = HashMap::new();
        for t in &snapshot.tenants {
            for s in &t.sending {
                let keys = KeySet {
                    source: s
                        .dkim
                        .iter()
                        .map(|k| KeySource {
                            selector: k.selector.clone(),
                            algorithm: k.algorithm,
                            private_key: Zeroizing::new(k.private_key.clone()),
                        })
                        .collect(),
                    parsed: OnceLock::new(),
                };
                let bimi_selector = s.bimi_selector.clone().filter(|sel| {
                    let ok = is_selector(sel);
                    if !ok {
                        tracing::warn!(domain = %s.domain, "BIMI selector unusable; not set");
                    }
                    ok
                });
                // Control gives every domain one owner; should two claim it, the
                // first keeps it.
                sending
                    .entry(s.domain.to_ascii_lowercase())
                    .or_insert(Sending {
                        tenant: t.tenant.clone(),
                        may_send: s.may_send,
                        bimi_selector,
                        keys: Arc::new(keys),
                    });
            }
            // A snapshot from before DKIM lists domains without sending entries: they
            // may send (nothing was verified then) and have no keys.
            for d in &t.domains {
                sending
                    .entry(d.to_ascii_lowercase())
                    .or_insert_with(|| Sending {
                        tenant: t.tenant.clone(),
                        may_send: true,
                        bimi_selector: None,
                        keys: Arc::default(),
                    });
            }
            for u in &t.smtp_users {
                users.insert(
                    u.username.clone(),
                    User {
                        tenant: t.tenant.clone(),
                        credential_id: u.credential_id.clone(),
                        password_hash: u.password_hash.clone(),
                    },
                );
            }
            for k in &t.api_keys {
                api_keys.insert(
                    k.prefix.clone(),
                    User {
                        tenant: t.tenant.clone(),
                        credential_id: k.credential_id.clone(),
                        password_hash: k.key_hash.clone(),
                    },
                );
            }
            tenants.insert(
                t.tenant.clone(),
                Tenant {
                    status: t.status,
                    domains: t.domains.iter().map(|d| d.to_ascii_lowercase()).collect(),
                    limits: t.limits,
                    retention: t.retention,
                    legal_hold: t.legal_hold,
                    list_unsubscribe: t.list_unsubscribe,
                    webhooks: t.webhooks.clone(),
                    sending_paused: t.sending_paused,
                    // Control sends lower-case hex; a list written by hand may not be.
                    suppressed: t
                        .suppressed
                        .iter()
                        .map(|h| h.to_ascii_lowercase())
                        .collect(),
                },
            );
        }
        Directory {
            version: snapshot.version,
            users,
            api_keys,
            tenants,
            sending,
        }
    }

    /// Takes over the decoded keys of `previous` for every domain whose keys did
    /// not change, so a new snapshot version does not decode them again.
    pub fn adopt_keys(&mut self, previous: &Directory) {
        for (domain, s) in &mut self.sending {
            if let Some(old) = previous.sending.get(domain) {
                if old.keys.source == s.keys.source {
                    s.keys = Arc::clone(&old.keys);
                }
            }
        }
    }

    /// Usernames are matched exactly, as control stores them; `"api key <prefix>"`
    /// ([`API_KEY_USER`]) names an API key.
    pub fn user(&self, username: &str) -> Option<&User> {
        match username.strip_prefix(API_KEY_USER) {
            Some(prefix) => self.api_keys.get(prefix),
            None => self.users.get(username),
        }
    }

    pub fn tenant(&self, tenant: &str) -> Option<&Tenant> {
        self.tenants.get(tenant)
    }

    /// Counts for logs (never names).
    pub fn counts(&self) -> (usize, usize, usize) {
        let domains = self.tenants.values().map(|t| t.domains.len()).sum();
        (self.tenants.len(), domains, self.users.len())
    }

    /// The tenant `grant` still stands for, if its credential and account are
    /// still good: the checks every authenticated transaction starts with.
    pub fn active_tenant(&self, grant: &Grant) -> Result<&Tenant, Reply> {
        let user = self
            .user(&grant.username)
            .filter(|u| u.tenant == grant.tenant && u.credential_id == grant.credential_id)
            .ok_or(CREDENTIALS_REVOKED)?;
        let tenant = self.tenant(&user.tenant).ok_or(CREDENTIALS_REVOKED)?;
        match tenant.status {
            TenantStatus::Active => Ok(tenant),
            TenantStatus::Suspended => Err(SUSPENDED),
            TenantStatus::Terminated => Err(TERMINATED),
        }
    }

    /// `MAIL FROM` by `grant`: the address's domain (after the last `@`,
    /// case-insensitive) must be exactly one of the tenant's domains.
    pub fn check_sender(&self, grant: &Grant, sender: &str) -> Result<&Tenant, Reply> {
        let tenant = self.active_tenant(grant)?;
        let address = bare(sender);
        let allowed =
            sender_domain(sender).is_some_and(|d| tenant.domains.contains(&d.to_ascii_lowercase()));
        if allowed {
            Ok(tenant)
        } else {
            Err(not_a_domain_of_this_account(address))
        }
    }

    /// `RCPT TO` by `grant`: the tenant is still active, and `address` is not on its
    /// suppression list.
    pub fn check_recipient(&self, grant: &Grant, address: &str) -> Result<&Tenant, Reply> {
        let tenant = self.active_tenant(grant)?;
        if tenant.suppresses(address) {
            let domain = address.rsplit_once('@').map_or("", |(_, d)| d);
            let recipient = way2mail_daemon::logging::recipients().then_some(address);
            tracing::info!(
                target: "way2mail::message",
                tenant = %grant.tenant,
                domain,
                recipient,
                "suppressed"
            );
            return Err(Reply::owned(
                550,
                EnhancedCode::new(5, 7, 1),
                format!("Recipient <{address}> is on this account's suppression list"),
            ));
        }
        Ok(tenant)
    }

    /// Why mail of `tenant` must wait, if it must: its account is suspended or
    /// terminated (`suspended`, `terminated`), or the reputation guard paused its
    /// sending (`sending paused`). Mail of tenants the snapshot does not list goes out.
    pub fn holds_delivery(&self, tenant: &str) -> Option<&'static str> {
        let t = self.tenant(tenant)?;
        match t.status {
            TenantStatus::Active if t.sending_paused => Some("sending paused"),
            TenantStatus::Active => None,
            TenantStatus::Suspended => Some("suspended"),
            TenantStatus::Terminated => Some("terminated"),
        }
    }

    /// How the tenant domain `domain` (any case) sends; `None` for other domains.
    pub fn sending(&self, domain: &str) -> Option<&Sending> {
        match self.sending.get(domain) {
            Some(s) => Some(s),
            None if domain.bytes().any(|b| b.is_ascii_uppercase()) => {
                self.sending.get(&domain.to_ascii_lowercase())
            }
            None => None,
        }
    }

    /// May mail from the tenant domain `domain` go out: the domain may send, and it
    /// has a DKIM key unless `missing_keys` lets it go unsigned. The refusals are the
    /// same at `MAIL FROM` (authenticated tenants) and at the end of data (the
    /// domain signing a message, trusted networks included).
    pub fn check_sending(
        &self,
        domain: &str,
        missing_keys: MissingKeys,
    ) -> Result<&Sending, Reply> {
        let Some(s) = self.sending(domain) else {
            return Err(Reply::owned(
                550,
                EnhancedCode::new(5, 7, 1),
                format!("Sender domain {domain} is not a domain of this system"),
            ));
        };
        if !s.may_send {
            return Err(Reply::owned(
                550,
                EnhancedCode::new(5, 7, 1),
                format!("Sender domain {domain} is not verified for sending"),
            ));
        }
        if missing_keys == MissingKeys::Refuse && s.keys(domain).is_empty() {
            return Err(Reply::owned(
                550,
                EnhancedCode::new(5, 7, 1),
                format!("Sender domain {domain} has no DKIM key"),
            ));
        }
        Ok(s)
    }
}

/// The reverse-path without angle brackets.
fn bare(sender: &str) -> &str {
    sender
        .strip_prefix('<')
        .and_then(|s| s.strip_suffix('>'))
        .unwrap_or(sender)
}

/// The domain of a reverse-path (after the last `@`), as written; `None` for the
/// null sender and for an address without a domain.
pub fn sender_domain(sender: &str) -> Option<&str> {
    let address = bare(sender);
    address
        .rfind('@')
        .map(|i| &address[i + 1..])
        .filter(|d| !d.is_empty())
}

pub fn not_a_domain_of_this_account(address: &str) -> Reply {
    Reply::owned(
        553,
        EnhancedCode::new(5, 7, 1),
        format!("Sender address <{address}> is not in a domain of this account"),
    )
}

/// A BIMI selector that can go into a header field as it is (a DNS label, or
/// several).
fn is_selector(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

pub(crate) const CREDENTIALS_REVOKED: Reply =
    Reply::new(550, EnhancedCode::new(5, 7, 1), "Credentials revoked");
pub(crate) const SUSPENDED: Reply =
    Reply::new(550, EnhancedCode::new(5, 7, 1), "Account suspended");
pub(crate) const TERMINATED: Reply =
    Reply::new(550, EnhancedCode::new(5, 7, 1), "Account terminated");

/// The directory sessions read now; `None` until a first snapshot arrived. The
/// follower replaces the `Arc` whole, so a reader keeps a consistent snapshot for
/// as long as it holds its clone and the lock is held only for the clone.
#[derive(Debug, Default)]
pub struct Current {
    slot: RwLock<Option<Arc<Directory>>>,
}

impl Current {
    pub fn get(&self) -> Option<Arc<Directory>> {
        // A writer cannot panic while holding the lock (it only assigns), so a
        // poisoned lock still holds a whole value.
        self.slot.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn set(&self, directory: Directory) {
        let new = Arc::new(directory);
        *self.slot.write().unwrap_or_else(|p| p.into_inner()) = Some(new);
    }

    #[cfg(test)]
    pub fn version(&self) -> Option<u64> {
        self.get().map(|d| d.version)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use way2mail_wire::snapshot::{SendingDomain, SigningKey, SmtpUser, SnapshotTenant};

    include!("../../testdata/dkim/keys.rs");

    /// The test keys (an RSA-2048 and an Ed25519 key) with their `p=` values.
    pub(crate) fn test_keys() -> &'static [(SigningKey, String)] {
        static KEYS: OnceLock<Vec<(SigningKey, String)>> = OnceLock::new();
        KEYS.get_or_init(|| {
            TEST_KEYS
                .iter()
                .map(|&(selector, algorithm, private, public)| {
                    let key = SigningKey {
                        selector: selector.to_owned(),
                        algorithm,
                        private_key: private.trim().to_owned(),
                    };
                    (key, public.trim().to_owned())
                })
                .collect()
        })
    }

    /// A domain that may send, signing with [`test_keys`].
    pub(crate) fn sending(domain: &str) -> SendingDomain {
        SendingDomain {
            domain: domain.to_ascii_lowercase(),
            may_send: true,
            dkim: test_keys().iter().map(|(k, _)| k.clone()).collect(),
            bimi_selector: None,
        }
    }

    pub(crate) fn tenant(name: &str, status: TenantStatus, domains: &[&str]) -> SnapshotTenant {
        SnapshotTenant {
            tenant: name.into(),
            status,
            domains: domains.iter().map(|d| d.to_string()).collect(),
            limits: TenantLimits::default(),
            smtp_users: vec![SmtpUser {
                username: format!("{name}-user"),
                credential_id: format!("{name}-cred"),
                password_hash: format!("$argon2id$hash-of-{name}"),
            }],
            sending: domains.iter().map(|d| sending(d)).collect(),
            retention: None,
            legal_hold: false,
            suppressed: Vec::new(),
            api_keys: Vec::new(),
            list_unsubscribe: false,
            webhooks: Vec::new(),
            sending_paused: false,
        }
    }

    pub(crate) fn snapshot(version: u64) -> Snapshot {
        Snapshot {
            version,
            erased: Vec::new(),
            generated_at_ms: 1_700_000_000_000,
            tenants: vec![
                tenant(
                    "acme",
                    TenantStatus::Active,
                    &["acme.example", "Mail.Acme.Example"],
                ),
                tenant("sleepy", TenantStatus::Suspended, &["sleepy.example"]),
                tenant("gone", TenantStatus::Terminated, &["gone.example"]),
            ],
        }
    }

    pub(crate) fn grant(tenant: &str) -> Grant {
        Grant {
            tenant: tenant.into(),
            username: format!("{tenant}-user"),
            credential_id: format!("{tenant}-cred"),
        }
    }

    fn code(r: Result<&Tenant, Reply>) -> (u16, Option<EnhancedCode>, String) {
        let e = r.expect_err("expected a refusal");
        (e.code, e.enhanced, e.text.into_owned())
    }

    #[test]
    fn users_and_tenants_are_indexed() {
        let d = Directory::new(&snapshot(7));
        assert_eq!(d.version, 7);
        let u = d.user("acme-user").expect("known user");
        assert_eq!(
            (u.tenant.as_str(), u.credential_id.as_str()),
            ("acme", "acme-cred")
        );
        assert_eq!(u.password_hash, "$argon2id$hash-of-acme");
        assert!(d.user("ACME-USER").is_none(), "usernames match exactly");
        assert!(d.user("nobody").is_none());
        let t = d.tenant("acme").expect("known tenant");
        assert!(t.domains.contains("mail.acme.example"), "lower-cased");
        assert_eq!(d.counts(), (3, 4, 3));
    }

    #[test]
    fn sender_domain_must_be_the_tenants() {
        let d = Directory::new(&snapshot(1));
        let g = grant("acme");
        for ok in [
            "a@acme.example",
            "A@ACME.Example",
            "<b@mail.acme.example>",
            "\"x@y\"@acme.example",
        ] {
            assert!(d.check_sender(&g, ok).is_ok(), "{ok}");
        }
        for bad in [
            "a@other.example",
            "a@sub.acme.example",
            "a@acme.example.evil",
            "a@sleepy.example",
            "acme.example",
            "a@",
        ] {
            let (c, s, text) = code(d.check_sender(&g, bad));
            assert_eq!((c, s), (553, Some(EnhancedCode::new(5, 7, 1))), "{bad}");
            assert!(
                text.contains("is not in a domain of this account"),
                "{text}"
            );
        }
        let (c, _, text) = code(d.check_sender(&g, ""));
        assert_eq!(c, 553);
        assert_eq!(text, "Sender address <> is not in a domain of this account");
        let (c, _, _) = code(d.check_sender(&g, "<>"));
        assert_eq!(c, 553);
    }

    #[test]
    fn disabled_and_revoked_accounts() {
        let d = Directory::new(&snapshot(1));
        let (c, s, text) = code(d.check_sender(&grant("sleepy"), "a@sleepy.example"));
        assert_eq!(
            (c, s, text.as_str()),
            (550, Some(EnhancedCode::new(5, 7, 1)), "Account suspended")
        );
        let (c, _, text) = code(d.check_sender(&grant("gone"), "a@gone.example"));
        assert_eq!((c, text.as_str()), (550, "Account terminated"));
        let stranger = Grant {
            tenant: "acme".into(),
            username: "deleted-user".into(),
            credential_id: "deleted-user-cred".into(),
        };
        let (c, s, text) = code(d.check_sender(&stranger, "a@acme.example"));
        assert_eq!(
            (c, s, text.as_str()),
            (550, Some(EnhancedCode::new(5, 7, 1)), "Credentials revoked")
        );
        // A username that moved to another tenant is not the grant's any more.
        let moved = Grant {
            tenant: "sleepy".into(),
            username: "acme-user".into(),
            credential_id: "acme-cred".into(),
        };
        assert_eq!(
            code(d.check_sender(&moved, "a@acme.example")).2,
            "Credentials revoked"
        );
        // The same username re-issued as a new credential does not carry old sessions.
        let reissued = Grant {
            credential_id: "an-older-credential".into(),
            ..grant("acme")
        };
        assert_eq!(
            code(d.check_sender(&reissued, "a@acme.example")).2,
            "Credentials revoked"
        );
    }

    /// acme (as in [`snapshot`]) plus `unverified.example` (may not send),
    /// `nokeys.example` (no keys), `broken.example` (a key that does not decode) and
    /// `brand.example` (BIMI).
    fn sending_snapshot(version: u64) -> Snapshot {
        let mut s = snapshot(version);
        let acme = &mut s.tenants[0];
        for d in [
            "unverified.example",
            "nokeys.example",
            "broken.example",
            "brand.example",
        ] {
            acme.domains.push(d.into());
            let mut entry = sending(d);
            match d {
                "unverified.example" => entry.may_send = false,
                "nokeys.example" => entry.dkim.clear(),
                "broken.example" => {
                    entry.dkim.truncate(1);
                    entry.dkim[0].private_key = "AAAA".into();
                }
                _ => entry.bimi_selector = Some("brand".into()),
            }
            acme.sending.push(entry);
        }
        s
    }

    #[test]
    fn sending_domains_are_indexed_with_their_owner() {
        let d = Directory::new(&sending_snapshot(1));
        let s = d.sending("Mail.ACME.example").expect("any case");
        assert_eq!((s.tenant.as_str(), s.may_send), ("acme", true));
        assert_eq!(s.keys("mail.acme.example").len(), 2);
        assert_eq!(
            d.sending("sleepy.example").map(|s| s.tenant.as_str()),
            Some("sleepy")
        );
        assert!(d.sending("other.example").is_none());
        assert!(d.sending("sub.acme.example").is_none());
        let b = d.sending("brand.example").expect("brand");
        assert_eq!(b.bimi_selector.as_deref(), Some("brand"));
    }

    #[test]
    fn domains_that_may_not_send_or_have_no_key_are_refused() {
        let d = Directory::new(&sending_snapshot(1));
        let refusal = |domain: &str, missing: MissingKeys| {
            let e = d
                .check_sending(domain, missing)
                .expect_err("expected a refusal");
            (e.code, e.enhanced, e.text.into_owned())
        };
        for missing in [MissingKeys::Refuse, MissingKeys::Unsigned] {
            assert_eq!(
                refusal("unverified.example", missing),
                (
                    550,
                    Some(EnhancedCode::new(5, 7, 1)),
                    "Sender domain unverified.example is not verified for sending".into()
                )
            );
            assert!(d.check_sending("acme.example", missing).is_ok());
        }
        assert_eq!(
            refusal("nokeys.example", MissingKeys::Refuse),
            (
                550,
                Some(EnhancedCode::new(5, 7, 1)),
                "Sender domain nokeys.example has no DKIM key".into()
            )
        );
        let s = d
            .check_sending("nokeys.example", MissingKeys::Unsigned)
            .expect("unsigned allowed");
        assert!(s.keys("nokeys.example").is_empty() && !s.has_keys());
        // A key that does not decode is left out; with none left the domain has none.
        assert_eq!(
            refusal("broken.example", MissingKeys::Refuse).2,
            "Sender domain broken.example has no DKIM key"
        );
        assert!(d.sending("broken.example").expect("listed").has_keys());
    }

    #[test]
    fn snapshots_from_before_dkim_may_send_without_keys() {
        let mut s = snapshot(1);
        for t in &mut s.tenants {
            t.sending.clear();
        }
        let d = Directory::new(&s);
        let acme = d.sending("acme.example").expect("listed");
        assert!(acme.may_send && !acme.has_keys());
        assert!(d
            .check_sending("acme.example", MissingKeys::Unsigned)
            .is_ok());
        assert_eq!(
            d.check_sending("acme.example", MissingKeys::Refuse)
                .expect_err("no key")
                .text,
            "Sender domain acme.example has no DKIM key"
        );
    }

    #[test]
    fn decoded_keys_carry_over_to_the_next_version_when_unchanged() {
        let first = Directory::new(&sending_snapshot(1));
        assert_eq!(
            first.sending("acme.example").expect("acme").keys("").len(),
            2
        );
        let mut changed = sending_snapshot(2);
        // brand.example gets new keys (one of them only), acme keeps its keys.
        changed.tenants[0]
            .sending
            .iter_mut()
            .find(|s| s.domain == "brand.example")
            .expect("brand")
            .dkim
            .truncate(1);
        let mut second = Directory::new(&changed);
        second.adopt_keys(&first);
        let same = |domain: &str| {
            Arc::ptr_eq(
                &first.sending(domain).expect("first").keys,
                &second.sending(domain).expect("second").keys,
            )
        };
        assert!(same("acme.example"), "unchanged keys are not decoded again");
        assert!(
            second
                .sending("acme.example")
                .expect("acme")
                .keys
                .parsed
                .get()
                .is_some(),
            "already decoded"
        );
        assert!(!same("brand.example"), "changed keys are decoded anew");
        assert_eq!(
            second.sending("brand.example").expect("b").keys("").len(),
            1
        );
    }

    #[test]
    fn keys_and_bimi_selectors_stay_out_of_debug_and_bad_selectors_are_dropped() {
        let mut s = sending_snapshot(1);
        s.tenants[0].sending[0].bimi_selector = Some("x\r\nInjected: 1".into());
        let d = Directory::new(&s);
        assert_eq!(d.sending("acme.example").expect("acme").bimi_selector, None);
        let text = format!("{d:?}");
        for (k, _) in test_keys() {
            assert!(!text.contains(&k.private_key), "private key in Debug");
        }
    }

    #[test]
    fn retention_legal_hold_and_suppression_are_kept_per_tenant() {
        let mut s = snapshot(1);
        s.tenants[0].retention = Some(MtaRetention {
            content_secs: 60,
            delivery_log_secs: 3600,
        });
        s.tenants[0].legal_hold = true;
        s.tenants[0].suppressed = vec![suppression_hash(" Bob@Remote.Example ")];
        let d = Directory::new(&s);
        let acme = d.tenant("acme").expect("acme");
        assert_eq!(acme.retention.map(|r| r.content_secs), Some(60));
        assert!(acme.legal_hold);
        assert!(acme.suppresses("bob@remote.example"));
        assert!(acme.suppresses("BOB@REMOTE.EXAMPLE"));
        assert!(!acme.suppresses("bobby@remote.example"));
        let sleepy = d.tenant("sleepy").expect("sleepy");
        assert_eq!((sleepy.retention, sleepy.legal_hold), (None, false));
        assert!(!sleepy.suppresses("bob@remote.example"));
        assert_eq!(d.holds_delivery("acme"), None);
        assert_eq!(d.holds_delivery("sleepy"), Some("suspended"));
        assert_eq!(d.holds_delivery("gone"), Some("terminated"));
        assert_eq!(d.holds_delivery("nobody"), None);
    }

    #[test]
    fn current_swaps_whole_directories() {
        let c = Current::default();
        assert!(c.get().is_none());
        c.set(Directory::new(&snapshot(1)));
        let held = c.get().expect("set");
        c.set(Directory::new(&snapshot(2)));
        assert_eq!(held.version, 1, "a reader keeps its snapshot");
        assert_eq!(c.version(), Some(2));
    }
}
