//! The listener setups a fuzzed session runs under, with limits small enough that
//! the fuzzer reaches them (a 10 000-octet message, 5 recipients), and a fake tenant
//! policy whose rules the session checks can state independently: tenant `acme`
//! sends only from `acme.example`, and only `alice`/`secret` logs in as it.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use way2mail_smtp::relay::RelayPolicy;
use way2mail_smtp::reply::{EnhancedCode, Reply};
use way2mail_smtp::server::{
    AuthVerdict, BareLineEndings, Grant, Limits, Role, SessionParams, TenantPolicy,
};

pub const HOST: &str = "mx.example.org";
/// The one local domain.
pub const LOCAL_DOMAIN: &str = "example.org";
pub const TENANT: &str = "acme";
pub const TENANT_DOMAIN: &str = "acme.example";
pub const USER: &str = "alice";
pub const PASSWORD: &str = "secret";
const UNTRUSTED: &str = "203.0.113.5";
const TRUSTED: &str = "10.1.2.3";

/// A listener configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setup {
    /// Port 25, untrusted client, STARTTLS available.
    Mx,
    /// Port 25 from a trusted network (may relay).
    MxTrusted,
    /// Port 25, untrusted, at most 5 errors and a tarpit after 2.
    Strict,
    /// Port 25, untrusted, `bare_line_endings = "reject"`.
    MxRejectBare,
    /// Port 587 with tenants: AUTH after STARTTLS.
    AuthSubmission,
    /// Port 465 with tenants (TLS from the start): AUTH at once.
    AuthSubmissions,
    /// Port 465 with tenants, at most 5 errors.
    AuthStrict,
    /// Port 25 with tenants: AUTH is never offered there.
    AuthMx,
}

impl Setup {
    pub const ALL: [Setup; 8] = [
        Setup::Mx,
        Setup::MxTrusted,
        Setup::Strict,
        Setup::MxRejectBare,
        Setup::AuthSubmission,
        Setup::AuthSubmissions,
        Setup::AuthStrict,
        Setup::AuthMx,
    ];
    /// The setups where AUTH can happen.
    pub const AUTH: [Setup; 3] = [
        Setup::AuthSubmission,
        Setup::AuthSubmissions,
        Setup::AuthStrict,
    ];

    /// The client may relay to any domain without authenticating.
    pub fn trusted(self) -> bool {
        self == Setup::MxTrusted
    }

    pub fn params(self) -> SessionParams {
        // Invariant: both lists are literals the relay parser accepts.
        #[allow(clippy::unwrap_used)]
        let relay =
            RelayPolicy::new(&[LOCAL_DOMAIN.to_string()], &["10.0.0.0/8".to_string()]).unwrap();
        let ip = if self.trusted() { TRUSTED } else { UNTRUSTED };
        // Invariant: both are literal addresses.
        #[allow(clippy::unwrap_used)]
        let ip: IpAddr = ip.parse().unwrap();
        let role = match self {
            Setup::Mx | Setup::MxTrusted | Setup::Strict | Setup::MxRejectBare | Setup::AuthMx => {
                Role::Mx
            }
            Setup::AuthSubmission => Role::Submission,
            Setup::AuthSubmissions | Setup::AuthStrict => Role::Submissions,
        };
        let tenants = matches!(
            self,
            Setup::AuthSubmission | Setup::AuthSubmissions | Setup::AuthStrict | Setup::AuthMx
        )
        .then(|| -> Arc<dyn TenantPolicy> { Arc::new(FakeTenants) });
        SessionParams {
            hostname: HOST.to_string(),
            role,
            client_ip: ip,
            tls_active: role == Role::Submissions,
            tls_available: true,
            limits: self.limits(),
            relay: Arc::new(relay),
            tenants,
            intake: None,
            blocked: None,
        }
    }

    pub fn limits(self) -> Limits {
        let strict = matches!(self, Setup::Strict | Setup::AuthStrict);
        Limits {
            max_message_size: 10_000,
            max_recipients: 5,
            max_errors: if strict { 5 } else { 50 },
            tarpit_after_errors: if strict { 2 } else { 40 },
            tarpit_delay: Duration::from_millis(5),
            max_received_headers: 10,
            bare_line_endings: if self == Setup::MxRejectBare {
                BareLineEndings::Reject
            } else {
                BareLineEndings::Normalize
            },
        }
    }
}

/// The scripted verdict: `alice`/`secret` is tenant `acme`, `bob`/`secret` belongs
/// to a suspended tenant, `locked` is locked out, `down` finds no policy, anyone
/// else is rejected.
pub fn verdict(username: &str, password: &str) -> AuthVerdict {
    match (username, password) {
        (USER, PASSWORD) => AuthVerdict::Accepted(grant()),
        ("bob", PASSWORD) => AuthVerdict::TenantDisabled,
        ("locked", _) => AuthVerdict::LockedOut,
        ("down", _) => AuthVerdict::Unavailable,
        _ => AuthVerdict::Rejected,
    }
}

/// What `alice`/`secret` is granted.
pub fn grant() -> Grant {
    Grant {
        tenant: TENANT.into(),
        username: USER.into(),
        credential_id: "cred-alice".into(),
    }
}

/// `acme` owns `acme.example` and may send 3 recipients per message.
#[derive(Debug)]
pub struct FakeTenants;

impl TenantPolicy for FakeTenants {
    fn check_sender(&self, grant: &Grant, sender: &str) -> Result<(), Reply> {
        if grant.tenant == TENANT && domain_is(sender, TENANT_DOMAIN) {
            Ok(())
        } else {
            Err(Reply::new(
                553,
                EnhancedCode::new(5, 7, 1),
                "Sender address not owned by tenant",
            ))
        }
    }

    fn check_recipient(&self, _grant: &Grant, _address: &str, count: usize) -> Result<(), Reply> {
        if count > 3 {
            Err(Reply::new(
                452,
                EnhancedCode::new(4, 5, 3),
                "Tenant limit: 3 recipients per message",
            ))
        } else {
            Ok(())
        }
    }

    fn message_queued(&self, _grant: &Grant) {}
}

/// The domain of `address` (after its last `@`) is `domain`, ignoring ASCII case
/// and a trailing dot: the rule the relay policy states, written out again here so
/// that the check does not lean on the code it checks.
pub fn domain_is(address: &str, domain: &str) -> bool {
    address.rsplit_once('@').is_some_and(|(_, d)| {
        d.strip_suffix('.')
            .unwrap_or(d)
            .eq_ignore_ascii_case(domain)
    })
}
