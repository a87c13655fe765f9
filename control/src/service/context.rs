//! What an operation handler works with: the caller's identity, the store, a batch
//! collecting its changes, and the audit fields it fills in (tenant, detail); and
//! [`Failure`], the error a handler returns, which becomes both the caller's error
//! body and the audit entry's detail.

use crate::error::Error;
use crate::rbac::Subject;
use crate::store::{Batch, Store};
use way2mail_wire::protocol::{ErrorBody, ErrorCode, Role};

use crate::settings::ServiceSettings;
use way2mail_daemon::Caller;

pub(crate) use way2mail_daemon::time::{now_ms, now_secs};

/// Who is asking, once the token (if any) has been checked.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    /// For the audit log: `operator:NAME`, `root`, `service:UID` or `uid:UID`.
    pub actor: String,
    pub subject: Subject,
    pub role: Option<Role>,
    /// The session's store key (SHA-256 of the token), for logout.
    pub session_key: Option<Vec<u8>>,
}

impl Identity {
    /// A caller known only by its peer credentials.
    pub fn peer(caller: &Caller, settings: &ServiceSettings) -> Identity {
        // The daemon's own user already owns the store and its key, so it is as
        // trusted as root here; this is what lets a developer who runs the daemon
        // as themselves bootstrap it.
        let owner = caller.uid == rustix::process::geteuid().as_raw();
        let root = caller.uid == 0 || owner;
        let service = settings.service_uids.contains(&caller.uid);
        let actor = if caller.uid == 0 {
            "root".to_owned()
        } else if owner {
            format!("owner:{}", caller.uid)
        } else if service {
            format!("service:{}", caller.uid)
        } else {
            format!("uid:{}", caller.uid)
        };
        Identity {
            actor,
            subject: Subject::Peer { root, service },
            role: None,
            session_key: None,
        }
    }

    /// The daemon acting on its own (the retention sweep): `system:WHAT`.
    pub fn system(what: &str) -> Identity {
        Identity {
            actor: format!("system:{what}"),
            subject: Subject::Peer {
                root: false,
                service: false,
            },
            role: None,
            session_key: None,
        }
    }

    pub fn role_name(&self) -> &'static str {
        self.role.map_or("none", Role::as_str)
    }

    /// Whether the caller may learn which tenant owns something (a domain already
    /// taken, for instance).
    pub fn sees_owners(&self) -> bool {
        matches!(self.role, Some(Role::Admin | Role::Operator))
    }
}

pub(crate) struct Ctx<'a> {
    pub store: &'a Store,
    pub settings: &'a ServiceSettings,
    pub who: &'a Identity,
    /// Unix seconds at the start of the request.
    pub now: u64,
    pub batch: Batch,
    /// Set when tenants, domains or credentials change: bumps the snapshot version.
    pub snapshot_changed: bool,
    /// The request's reason (also in its audit entry).
    pub reason: Option<String>,
    /// The audit detail carries no tenant data: do not seal it with the tenant's key.
    pub public_detail: bool,
    /// Audit fields.
    pub tenant: Option<String>,
    pub detail: Option<String>,
    /// For login and bootstrap, whose action it was once known.
    pub actor_override: Option<(String, Option<Role>)>,
    /// Audit entries to chain after the request's own (same actor, action and
    /// reason) for facts besides the request, e.g. one per email sent. Kept when
    /// the request fails: the facts happened.
    pub extra_audit: Vec<ExtraAudit>,
}

/// One more audit entry of a request: what differs from the request's own entry.
#[derive(Debug, Clone)]
pub(crate) struct ExtraAudit {
    pub tenant: Option<String>,
    pub outcome: way2mail_wire::protocol::AuditOutcome,
    pub detail: String,
}

impl<'a> Ctx<'a> {
    pub fn new(
        store: &'a Store,
        settings: &'a ServiceSettings,
        who: &'a Identity,
        tenant: Option<String>,
    ) -> Ctx<'a> {
        Ctx {
            store,
            settings,
            who,
            now: now_secs(),
            batch: Batch::new(),
            snapshot_changed: false,
            reason: None,
            public_detail: false,
            tenant,
            detail: None,
            actor_override: None,
            extra_audit: Vec::new(),
        }
    }
}

/// A request that ran and failed: the caller's error and the audit detail.
#[derive(Debug)]
pub(crate) struct Failure {
    pub body: ErrorBody,
}

impl Failure {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Failure {
        Failure {
            body: ErrorBody {
                code,
                message: message.into(),
            },
        }
    }

    pub fn invalid(message: impl Into<String>) -> Failure {
        Failure::new(ErrorCode::Invalid, message)
    }

    pub fn not_found(message: impl Into<String>) -> Failure {
        Failure::new(ErrorCode::NotFound, message)
    }

    pub fn conflict(message: impl Into<String>) -> Failure {
        Failure::new(ErrorCode::Conflict, message)
    }

    pub fn exists(message: impl Into<String>) -> Failure {
        Failure::new(ErrorCode::AlreadyExists, message)
    }

    pub fn internal(message: impl Into<String>) -> Failure {
        Failure::new(ErrorCode::Internal, message)
    }

    /// `code: message`, for the audit entry. Messages never carry secrets.
    pub fn detail(&self) -> String {
        let code = serde_json::to_value(self.body.code)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        format!("{code}: {}", self.body.message)
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        tracing::error!(error = %e, "control store failure");
        Failure::internal(format!("control store failure: {e}"))
    }
}

impl From<way2mail_seal::Error> for Failure {
    fn from(e: way2mail_seal::Error) -> Failure {
        Failure::from(Error::from(e))
    }
}

/// Where a streamed answer goes: `start` sends its first line, then `write` sends
/// frame bytes.
pub trait StreamOut: std::io::Write {
    fn start(&mut self) -> std::io::Result<()>;
}
