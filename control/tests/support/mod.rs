//! A control service on a real sled store in a temp dir, with the callers and
//! login steps the integration tests share.
#![allow(dead_code)]

pub mod mta_admin;
pub mod smtp;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use way2mail_control::audit::AuditLog;
use way2mail_control::service::{Caller, Service, ServiceSettings};
use way2mail_control::totp;
use way2mail_wire::protocol::{
    AuditEntry, ErrorBody, ErrorCode, Request, RequestEnvelope, Response, Role, VERSION,
};
use way2mail_wire::snapshot::TenantLimits;

pub const ROOT: Caller = Caller {
    uid: 0,
    gid: 0,
    pid: 100,
};
pub const MTA: Caller = Caller {
    uid: 990,
    gid: 990,
    pid: 200,
};
pub const USER: Caller = Caller {
    uid: 1000,
    gid: 1000,
    pid: 300,
};
pub const ADMIN_PASSWORD: &str = "correct horse battery staple";

pub struct Harness {
    pub dir: tempfile::TempDir,
    pub service: Service,
}

pub fn settings(session_ttl: Duration) -> ServiceSettings {
    ServiceSettings {
        service_uids: vec![MTA.uid],
        session_ttl,
        tenant_defaults: TenantLimits::default(),
        // No MTA beside these services: the spool's part of an erasure stays pending.
        mta: way2mail_control::server::protection::MtaSettings {
            admin_socket: None,
            timeout: Duration::from_secs(1),
        },
        ..ServiceSettings::default()
    }
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

impl Harness {
    pub fn new() -> Harness {
        Harness::with_settings(settings(Duration::from_secs(3600)))
    }

    /// A harness whose letters (`[notify]`) go to `server`, from
    /// `security@way2mail.test`.
    pub fn notifying_through(server: std::net::SocketAddr, timeout: Duration) -> Harness {
        let mut s = settings(Duration::from_secs(3600));
        s.notify = way2mail_control::notify::NotifySettings {
            smtp_server: server,
            from: "security@way2mail.test".into(),
            helo: "control.test".into(),
            timeout,
        };
        Harness::with_settings(s)
    }

    pub fn with_settings(settings: ServiceSettings) -> Harness {
        let dir = tempfile::tempdir().expect("tempdir");
        let service = Service::open(
            &way2mail_control::store::StoreFiles::in_dir(dir.path()),
            settings,
        )
        .expect("open service");
        Harness { dir, service }
    }

    /// The snapshot control hands the MTA now.
    pub fn snapshot(&self) -> way2mail_wire::snapshot::Snapshot {
        match self.call(
            &MTA,
            None,
            None,
            Request::SnapshotGet {
                known_version: None,
            },
        ) {
            Ok(Response::Snapshot(s)) => s,
            other => panic!("snapshot: {other:?}"),
        }
    }

    pub fn call(
        &self,
        caller: &Caller,
        token: Option<&str>,
        reason: Option<&str>,
        request: Request,
    ) -> Result<Response, ErrorBody> {
        self.service.handle(
            caller,
            RequestEnvelope {
                v: VERSION,
                id: 1,
                token: token.map(str::to_owned),
                reason: reason.map(str::to_owned),
                request,
            },
        )
    }

    /// Calls as an operator.
    pub fn op(&self, token: &str, request: Request) -> Result<Response, ErrorBody> {
        self.call(&USER, Some(token), None, request)
    }

    /// Bootstraps `admin` and returns its TOTP secret.
    pub fn bootstrap(&self) -> String {
        match self.call(
            &ROOT,
            None,
            None,
            Request::Bootstrap {
                name: "admin".into(),
                password: ADMIN_PASSWORD.into(),
            },
        ) {
            Ok(Response::OperatorCreated {
                totp_secret, role, ..
            }) => {
                assert_eq!(role, Role::Admin);
                totp_secret
            }
            other => panic!("bootstrap: {other:?}"),
        }
    }

    /// Logs in with the code of `now + offset_steps` steps.
    pub fn login_at(
        &self,
        name: &str,
        password: &str,
        secret: &str,
        offset_steps: i64,
    ) -> Result<Response, ErrorBody> {
        let at = now().saturating_add_signed(offset_steps * totp::STEP_SECS as i64);
        let code = totp::code(secret, at).expect("code");
        self.call(
            &USER,
            None,
            None,
            Request::Login {
                name: name.into(),
                password: password.into(),
                totp: code,
            },
        )
    }

    pub fn login(&self, name: &str, password: &str, secret: &str) -> String {
        match self.login_at(name, password, secret, 0) {
            Ok(Response::LoggedIn { token, .. }) => token,
            other => panic!("login {name}: {other:?}"),
        }
    }

    /// Bootstraps and logs the admin in; returns its token and TOTP secret.
    pub fn admin(&self) -> (String, String) {
        let secret = self.bootstrap();
        (self.login("admin", ADMIN_PASSWORD, &secret), secret)
    }

    /// Adds an operator with `role` (as admin) and logs it in; returns its token.
    pub fn operator(&self, admin_token: &str, name: &str, role: Role) -> String {
        match self.op(
            admin_token,
            Request::OperatorAdd {
                name: name.into(),
                role,
            },
        ) {
            Ok(Response::OperatorCreated {
                password,
                totp_secret,
                totp_uri,
                ..
            }) => {
                assert!(totp_uri.contains(&totp_secret));
                self.login(name, &password, &totp_secret)
            }
            other => panic!("operator.add {name}: {other:?}"),
        }
    }

    pub fn add_tenant(&self, token: &str, tenant: &str) {
        self.op(
            token,
            Request::TenantAdd {
                tenant: tenant.into(),
                business_name: format!("{tenant} Ltd"),
                contact: format!("ops@{tenant}.example"),
                billing_ref: None,
                messages_per_hour: None,
                messages_per_day: None,
                recipients_per_message: None,
            },
        )
        .expect("tenant.add");
    }

    /// Sets `tenant`'s contact, nothing else.
    pub fn set_contact(&self, token: &str, tenant: &str, contact: &str) {
        self.op(
            token,
            Request::TenantUpdate {
                tenant: tenant.into(),
                business_name: None,
                contact: Some(contact.into()),
                billing_ref: None,
                messages_per_hour: None,
                messages_per_day: None,
                recipients_per_message: None,
                list_unsubscribe: None,
                auto_suppress: Default::default(),
            },
        )
        .expect("tenant.update");
    }

    pub fn audit(&self) -> Vec<AuditEntry> {
        AuditLog::list(self.service.store(), None, 0, usize::MAX).expect("audit list")
    }

    /// The newest audit entry of `action`.
    pub fn last_audit(&self, action: &str) -> AuditEntry {
        self.audit()
            .into_iter()
            .rev()
            .find(|e| e.action == action)
            .unwrap_or_else(|| panic!("no {action} in the audit log"))
    }

    pub fn audit_head_seq(&self) -> u64 {
        AuditLog::head(self.service.store()).expect("head").seq
    }
}

pub fn code_of(result: &Result<Response, ErrorBody>) -> Option<ErrorCode> {
    result.as_ref().err().map(|e| e.code)
}
