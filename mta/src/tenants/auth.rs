//! One AUTH exchange's verdict: lockout first (a locked IP or username costs no
//! argon2), then the password on the verifier pool, then the tenant's status. A
//! wrong password waits `auth.failure_delay_ms` before its `535`. One log line per
//! outcome (target `way2mail::auth`): never a password, and on failure never the
//! username in clear, only a digest prefix.

use std::net::IpAddr;
use std::time::Instant;

use way2mail_smtp::server::{AuthMechanism, AuthVerdict, Grant};
use way2mail_wire::protocol::TenantStatus;
use zeroize::Zeroizing;

use super::directory::API_KEY_USER;
use super::lockout::{user_key, user_tag};
use super::state::Tenants;

impl Tenants {
    pub async fn authenticate(
        &self,
        client_ip: IpAddr,
        mechanism: AuthMechanism,
        username: &str,
        password: Zeroizing<String>,
    ) -> AuthVerdict {
        let mechanism = match mechanism {
            AuthMechanism::Plain => "PLAIN",
            AuthMechanism::Login => "LOGIN",
        };
        self.verdict(client_ip, mechanism, username, password).await
    }

    /// An API key from `Authorization: Bearer`: the same checks, lockouts, delay
    /// and cache as AUTH, under the username `"api key <prefix>"`. A key that is not
    /// of the `w2m_<prefix>_<secret>` form is a failure like a wrong one.
    pub async fn authenticate_api_key(
        &self,
        client_ip: IpAddr,
        key: Zeroizing<String>,
    ) -> AuthVerdict {
        let prefix = way2mail_seal::password::parse_api_key(&key).map_or("", |(p, _)| p);
        let username = format!("{API_KEY_USER}{prefix}");
        self.verdict(client_ip, "API", &username, key).await
    }

    async fn verdict(
        &self,
        client_ip: IpAddr,
        mechanism: &'static str,
        username: &str,
        password: Zeroizing<String>,
    ) -> AuthVerdict {
        let key = user_key(username);
        let user = user_tag(&key);
        if self.lockout.is_locked(client_ip, &key, Instant::now()) {
            tracing::info!(target: "way2mail::auth", outcome = "locked_out", %client_ip, mechanism, user, "auth refused");
            return AuthVerdict::LockedOut;
        }
        let Some(directory) = self.current.get() else {
            tracing::info!(target: "way2mail::auth", outcome = "unavailable", %client_ip, mechanism, reason = "no control snapshot", "auth refused");
            return AuthVerdict::Unavailable;
        };
        let matched = match self.verifier.check(&directory, username, password).await {
            Ok(m) => m,
            Err(_busy) => {
                tracing::warn!(target: "way2mail::auth", outcome = "unavailable", %client_ip, mechanism, reason = "verifier saturated", "auth refused");
                return AuthVerdict::Unavailable;
            }
        };
        let user_entry = directory.user(username).filter(|_| matched);
        let Some(entry) = user_entry else {
            let started = self.lockout.failure(client_ip, &key, Instant::now());
            if started.ip {
                tracing::warn!(target: "way2mail::auth", %client_ip, failures = self.lockout.max_failures(), "client IP locked out of AUTH after repeated failures");
            }
            if started.user {
                tracing::warn!(target: "way2mail::auth", %client_ip, user, failures = self.lockout.max_failures(), "username locked out of AUTH after repeated failures");
            }
            tracing::info!(target: "way2mail::auth", outcome = "rejected", %client_ip, mechanism, user, snapshot = directory.version, "auth failed");
            tokio::time::sleep(self.failure_delay).await;
            return AuthVerdict::Rejected;
        };
        self.lockout.success(client_ip, &key);
        let status = directory.tenant(&entry.tenant).map(|t| t.status);
        if status != Some(TenantStatus::Active) {
            let status = match status {
                Some(TenantStatus::Suspended) => "suspended",
                _ => "terminated",
            };
            tracing::info!(target: "way2mail::auth", outcome = "tenant_disabled", %client_ip, mechanism, tenant = %entry.tenant, status, "auth refused");
            return AuthVerdict::TenantDisabled;
        }
        tracing::info!(target: "way2mail::auth", outcome = "accepted", %client_ip, mechanism, tenant = %entry.tenant, credential = %entry.credential_id, snapshot = directory.version, "auth accepted");
        AuthVerdict::Accepted(Grant {
            tenant: entry.tenant.clone(),
            username: username.to_owned(),
            credential_id: entry.credential_id.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::control::AuthConfig;
    use crate::tenants::directory::Directory;
    use std::time::Duration;
    use way2mail_wire::snapshot::{SmtpUser, Snapshot, SnapshotTenant, TenantLimits};

    fn tenants(max_failures: u32) -> Tenants {
        let auth = AuthConfig {
            failure_delay: Duration::from_millis(50),
            max_failures,
            ..AuthConfig::default()
        };
        Tenants::new(&auth).expect("tenants")
    }

    fn snapshot(status: TenantStatus) -> Snapshot {
        Snapshot {
            version: 1,
            erased: Vec::new(),
            generated_at_ms: 0,
            tenants: vec![SnapshotTenant {
                tenant: "acme".into(),
                status,
                domains: vec!["acme.example".into()],
                limits: TenantLimits::default(),
                smtp_users: vec![SmtpUser {
                    username: "bob@acme.example".into(),
                    credential_id: "c1".into(),
                    password_hash: way2mail_seal::password::hash("pw").expect("hash"),
                }],
                sending: Vec::new(),
                retention: None,
                legal_hold: false,
                suppressed: Vec::new(),
                api_keys: Vec::new(),
                list_unsubscribe: false,
                webhooks: Vec::new(),
                sending_paused: false,
            }],
        }
    }

    fn run<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));

    async fn auth(t: &Tenants, ip: IpAddr, user: &str, pw: &str) -> AuthVerdict {
        t.authenticate(ip, AuthMechanism::Plain, user, Zeroizing::new(pw.into()))
            .await
    }

    #[test]
    fn verdicts() {
        let t = tenants(5);
        run(async {
            assert_eq!(
                auth(&t, IP, "bob@acme.example", "pw").await,
                AuthVerdict::Unavailable
            );
            t.install(Directory::new(&snapshot(TenantStatus::Active)));
            assert_eq!(
                auth(&t, IP, "bob@acme.example", "pw").await,
                AuthVerdict::Accepted(Grant {
                    tenant: "acme".into(),
                    username: "bob@acme.example".into(),
                    credential_id: "c1".into(),
                })
            );
            let started = Instant::now();
            assert_eq!(
                auth(&t, IP, "bob@acme.example", "nope").await,
                AuthVerdict::Rejected
            );
            assert!(
                started.elapsed() >= Duration::from_millis(50),
                "failure delay"
            );
            assert_eq!(auth(&t, IP, "eve", "pw").await, AuthVerdict::Rejected);
            t.install(Directory::new(&snapshot(TenantStatus::Suspended)));
            assert_eq!(
                auth(&t, IP, "bob@acme.example", "pw").await,
                AuthVerdict::TenantDisabled
            );
            // A wrong password for a suspended tenant says nothing about the tenant.
            assert_eq!(
                auth(&t, IP, "bob@acme.example", "x").await,
                AuthVerdict::Rejected
            );
        });
    }

    #[test]
    fn lockout_by_ip_then_success_elsewhere() {
        let t = tenants(3);
        t.install(Directory::new(&snapshot(TenantStatus::Active)));
        let other_ip: IpAddr = "198.51.100.7".parse().expect("ip");
        run(async {
            for n in 0..3 {
                let user = format!("guess{n}");
                assert_eq!(auth(&t, IP, &user, "x").await, AuthVerdict::Rejected);
            }
            // Locked: even the right password is not looked at.
            assert_eq!(
                auth(&t, IP, "bob@acme.example", "pw").await,
                AuthVerdict::LockedOut
            );
            assert!(matches!(
                auth(&t, other_ip, "bob@acme.example", "pw").await,
                AuthVerdict::Accepted(_)
            ));
            // Per username: three failures from anywhere lock bob out everywhere.
            for n in 0..3u8 {
                let ip = IpAddr::from([203, 0, 113, n]);
                assert_eq!(
                    auth(&t, ip, "bob@acme.example", "x").await,
                    AuthVerdict::Rejected
                );
            }
            assert_eq!(
                auth(&t, other_ip, "bob@acme.example", "pw").await,
                AuthVerdict::LockedOut
            );
        });
    }
}
