//! One control snapshot, indexed for the questions sessions ask: who is this SMTP
//! username (tenant, credential, password hash), and may this tenant send now and
//! from this address. Built once per snapshot version, then only read, shared
//! between cores behind an `Arc`; [`Current`] is the slot the follower swaps.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use way2mail_control::protocol::TenantStatus;
use way2mail_control::snapshot::{Snapshot, TenantLimits};
use way2mail_mta::smtp::reply::Reply;
use way2mail_mta::smtp::Grant;

/// An SMTP user as the directory knows it.
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
}

#[derive(Debug)]
pub struct Directory {
    pub version: u64,
    users: HashMap<String, User>,
    tenants: HashMap<String, Tenant>,
}

impl Directory {
    pub fn new(snapshot: &Snapshot) -> Directory {
        let mut users = HashMap::new();
        let mut tenants = HashMap::new();
        for t in &snapshot.tenants {
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
            tenants.insert(
                t.tenant.clone(),
                Tenant {
                    status: t.status,
                    domains: t.domains.iter().map(|d| d.to_ascii_lowercase()).collect(),
                    limits: t.limits,
                },
            );
        }
        Directory {
            version: snapshot.version,
            users,
            tenants,
        }
    }

    /// Usernames are matched exactly, as control stores them.
    pub fn user(&self, username: &str) -> Option<&User> {
        self.users.get(username)
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
        let address = sender
            .strip_prefix('<')
            .and_then(|s| s.strip_suffix('>'))
            .unwrap_or(sender);
        let domain = address.rfind('@').map(|i| &address[i + 1..]);
        let allowed = domain
            .filter(|d| !d.is_empty())
            .is_some_and(|d| tenant.domains.contains(&d.to_ascii_lowercase()));
        if allowed {
            Ok(tenant)
        } else {
            Err(Reply::owned(
                553,
                "5.7.1",
                format!("Sender address <{address}> is not in a domain of this account"),
            ))
        }
    }
}

const CREDENTIALS_REVOKED: Reply = Reply::new(550, "5.7.1", "Credentials revoked");
const SUSPENDED: Reply = Reply::new(550, "5.7.1", "Account suspended");
const TERMINATED: Reply = Reply::new(550, "5.7.1", "Account terminated");

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
    use way2mail_control::snapshot::{SmtpUser, SnapshotTenant};

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
        }
    }

    pub(crate) fn snapshot(version: u64) -> Snapshot {
        Snapshot {
            version,
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

    fn code(r: Result<&Tenant, Reply>) -> (u16, &'static str, String) {
        let e = r.expect_err("expected a refusal");
        (e.code, e.status, e.text.into_owned())
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
            assert_eq!((c, s), (553, "5.7.1"), "{bad}");
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
        assert_eq!((c, s, text.as_str()), (550, "5.7.1", "Account suspended"));
        let (c, _, text) = code(d.check_sender(&grant("gone"), "a@gone.example"));
        assert_eq!((c, text.as_str()), (550, "Account terminated"));
        let stranger = Grant {
            tenant: "acme".into(),
            username: "deleted-user".into(),
            credential_id: "deleted-user-cred".into(),
        };
        let (c, s, text) = code(d.check_sender(&stranger, "a@acme.example"));
        assert_eq!((c, s, text.as_str()), (550, "5.7.1", "Credentials revoked"));
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
