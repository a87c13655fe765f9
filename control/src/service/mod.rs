//! The control service: one request from one identified caller in, one response out.
//! Identification (peer credentials, session token), the role check, the operation
//! against the store and the audit entry all happen here; the daemon's socket code
//! only frames lines and never decides anything.
//!
//! ```text
//!   handle ─ admit: version ─ identify (session.rs) ─ rbac::decide ─ reason
//!        └─ run ─ slow step without the lock, for the few that have one:
//!           │       login: argon2 ─ domain.verify, rotate_dkim --activate: DNS
//!           │       incident.notify: emails ─ tenant.report: the MTA
//!           └─ locked: writer lock ─ handler (tenants.rs, domains.rs, …; the slow
//!              step's result passed in) fills a Batch ─ audit entry + snapshot
//!              version into the same Batch ─ commit+flush ─ answer
//! ```
//!
//! `tenant.erase`, `retention.run` and the streamed requests (`handle_stream`:
//! `tenant.export`, `backup.create`) alternate: a step under the lock, the MTA
//! without it, another step under it. `hello` and a `snapshot.get` answered
//! `unchanged` are the only requests not audited; refused ones are.

mod archive;
mod audit_ops;
mod backup;
pub(crate) use backup::BACKUP_SCRATCH;
mod context;
mod credentials;
mod domains;
mod erasure;
mod export;
mod incidents;
mod mta;
mod operators;
mod report;
mod retention;
mod session;
mod snapshot;
mod suppression;
mod tenants;
mod validate;

use std::sync::OnceLock;
use std::time::Duration;

use crate::audit::{AuditDraft, AuditLog};
use crate::error::Error;
use crate::rbac::{self, Decision, Op};
use crate::records::META_SNAPSHOT_VERSION;
use crate::store::{Batch, Store, StoreFiles, TreeName};
use way2mail_wire::protocol::{
    AuditOutcome, ErrorBody, ErrorCode, Request, RequestEnvelope, Response, VERSION,
};
use way2mail_wire::snapshot::TenantLimits;

use context::{now_ms, Ctx, Failure, Identity};

pub use way2mail_daemon::Caller;

#[derive(Debug, Clone)]
pub struct ServiceSettings {
    /// Peers with these uids (no token) may read the policy snapshot: the MTA's user.
    pub service_uids: Vec<u32>,
    /// How long a login session lasts.
    pub session_ttl: Duration,
    /// Limits of a tenant added without explicit ones.
    pub tenant_defaults: TenantLimits,
    /// Where `domain.verify` sends its lookups.
    pub dns: way2mail_daemon::dns::DnsSettings,
    /// What tenant domains must publish to authorise our mail (`[sending]`).
    pub sending: SendingSettings,
    /// Where incident notifications are handed to the MTA (`[notify]`).
    pub notify: crate::notify::NotifySettings,
    /// `[retention]`: the default periods.
    pub retention: way2mail_wire::protocol::RetentionDefaults,
    /// `[mta]`: the MTA's admin socket.
    pub mta: crate::server::protection::MtaSettings,
    /// `[backup] key_file`.
    pub backup_key_file: std::path::PathBuf,
}

/// `[sending]`: the platform's side of the records tenant domains publish.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SendingSettings {
    /// The MTA's public sending addresses, for `ip4:`/`ip6:` terms in the SPF record.
    pub ips: Vec<std::net::IpAddr>,
    /// An SPF record of the platform's to `include:` (`_spf.way2mail.example`).
    pub spf_include: Option<String>,
    /// `rua=` of the suggested DMARC record (`mailto:dmarc@…`); none when empty.
    pub dmarc_rua: Option<String>,
}

impl Default for ServiceSettings {
    /// The daemon's own user as the service user (MTA and control under one
    /// account in development), 8-hour sessions, default limits.
    fn default() -> ServiceSettings {
        ServiceSettings {
            service_uids: vec![rustix::process::geteuid().as_raw()],
            session_ttl: Duration::from_secs(8 * 3600),
            tenant_defaults: TenantLimits::default(),
            dns: way2mail_daemon::dns::DnsSettings::default(),
            sending: SendingSettings::default(),
            notify: crate::notify::NotifySettings::default(),
            retention: way2mail_wire::protocol::RetentionDefaults::default(),
            mta: crate::server::protection::MtaSettings::default(),
            backup_key_file: "./var/backup.key".into(),
        }
    }
}

pub use erasure::{signed_bytes as receipt_signed_bytes, verify as verify_receipt, ReceiptError};

/// Longest `reason` accepted.
const MAX_REASON_CHARS: usize = 500;

/// Thread-safe: the daemon calls `handle` from several connection threads at once.
#[derive(Debug)]
pub struct Service {
    store: Store,
    audit: AuditLog,
    settings: ServiceSettings,
    /// Verified against when a login names an unknown operator, so that case costs
    /// the same argon2 time as a wrong password.
    dummy_hash: OnceLock<String>,
    /// Held by `incident.notify` from sending to recording, so that two notify
    /// requests cannot email the same tenants twice. Other requests never wait on it.
    notify_lock: std::sync::Mutex<()>,
}

impl Service {
    /// Opens the store (its master key created 0600 when missing, its keyring).
    pub fn open(files: &StoreFiles, settings: ServiceSettings) -> Result<Service, Error> {
        Ok(Service::with_store(Store::open(files)?, settings))
    }

    pub fn with_store(store: Store, settings: ServiceSettings) -> Service {
        Service {
            store,
            audit: AuditLog::new(),
            settings,
            dummy_hash: OnceLock::new(),
            notify_lock: std::sync::Mutex::new(()),
        }
    }

    /// The store, for tools and tests (tampering goes through the documented raw
    /// audit API).
    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn settings(&self) -> &ServiceSettings {
        &self.settings
    }

    /// The current policy snapshot version (0 before the first change).
    pub fn snapshot_version(&self) -> Result<u64, Error> {
        Ok(self
            .store
            .get::<u64>(TreeName::Meta, META_SNAPSHOT_VERSION)?
            .unwrap_or(0))
    }

    /// Answers one parsed request. Never panics on any input.
    pub fn handle(
        &self,
        caller: &Caller,
        envelope: RequestEnvelope,
    ) -> Result<Response, ErrorBody> {
        let (who, request, reason) = self.admit(caller, envelope)?;

        // Unaudited fast paths.
        match &request {
            Request::Hello => return Ok(session::hello(&who)),
            Request::SnapshotGet {
                known_version: Some(known),
            } => match self.snapshot_version() {
                Ok(current) if current == *known => {
                    return Ok(Response::SnapshotUnchanged { version: current })
                }
                Ok(_) => {}
                Err(e) => return Err(Failure::from(e).body),
            },
            _ => {}
        }
        self.run(&who, request, reason)
    }

    /// Runs an allowed request. Most run whole under the writer lock. Those with a
    /// slow step (argon2, DNS, the MTA, emails) take it first, without the lock, so
    /// that it stalls only their own caller, and hand what it found to their apply
    /// step under the lock, which re-reads what it changes.
    fn run(
        &self,
        who: &Identity,
        request: Request,
        reason: Option<String>,
    ) -> Result<Response, ErrorBody> {
        let op = request.op();
        let tenant = request_tenant(&request);
        match request {
            Request::Login {
                name,
                password,
                totp,
            } => {
                let check = session::check_password(self, &name, &password);
                self.locked(who, op, tenant, reason, |ctx| {
                    session::login(ctx, &name, &totp, check)
                })
            }
            Request::DomainVerify { domain } => {
                let lookups = domains::look_up(self, &domain);
                self.locked(who, op, tenant, reason, |ctx| {
                    domains::verify(ctx, &domain, lookups)
                })
            }
            Request::DomainRotateDkim {
                domain,
                activate: true,
                force,
            } => {
                let published = if force {
                    domains::Publication::Forced
                } else {
                    domains::Publication::Checked(domains::look_up(self, &domain))
                };
                self.locked(who, op, tenant, reason, |ctx| {
                    domains::activate_dkim(ctx, &domain, published)
                })
            }
            Request::IncidentNotify { id, again } => {
                // Held from sending to recording: two notify requests at once cannot
                // email the same tenants twice. Nothing else waits on it.
                let _notifying = self.notify_lock.lock().unwrap_or_else(|e| e.into_inner());
                let sent = incidents::send_pending(self, &who.actor, &id, again);
                self.locked(who, op, tenant, reason, |ctx| {
                    incidents::notify(ctx, &id, again, sent)
                })
            }
            Request::TenantReport { tenant: name } => {
                let mta = report::ask_mta(self, &name);
                self.locked(who, op, tenant, reason, |ctx| {
                    report::report(ctx, &name, mta)
                })
            }
            // These talk to the MTA between steps under the writer lock.
            Request::TenantErase { tenant, confirm } => {
                erasure::erase(self, who, &tenant, &confirm, reason)
            }
            Request::RetentionRun => retention::run(self, who, reason),
            request @ (Request::TenantExport { .. } | Request::BackupCreate) => {
                let failure = Failure::new(
                    ErrorCode::BadRequest,
                    format!(
                        "{op} answers with a stream of frames; use `way2mail` or a client that reads streams"
                    ),
                );
                Err(self.refuse(who, &request, reason, AuditOutcome::Failed, failure))
            }
            request => self.locked(who, op, tenant, reason, |ctx| dispatch(ctx, &request)),
        }
    }

    /// Identifies the caller and checks the version, the role and the reason;
    /// refusals are audited.
    fn admit(
        &self,
        caller: &Caller,
        envelope: RequestEnvelope,
    ) -> Result<(Identity, Request, Option<String>), ErrorBody> {
        let RequestEnvelope {
            v,
            token,
            reason,
            request,
            ..
        } = envelope;
        let op = Op::of(&request);
        let peer = Identity::peer(caller, &self.settings);
        let reason = reason
            .map(|r| r.trim().to_owned())
            .filter(|r| !r.is_empty());

        if v != VERSION {
            let failure = Failure::new(
                ErrorCode::UnsupportedVersion,
                format!(
                    "protocol version {v} is not supported; this daemon speaks version {VERSION}"
                ),
            );
            return Err(self.refuse(&peer, &request, reason, AuditOutcome::Failed, failure));
        }

        let who = match session::identify(self, caller, token.as_deref(), op) {
            Ok(who) => who,
            Err(failure) => {
                return Err(self.refuse(&peer, &request, reason, AuditOutcome::Denied, failure))
            }
        };

        match rbac::decide(who.subject, op) {
            Decision::Allow => {}
            Decision::AllowWithReason if reason.is_some() => {}
            Decision::AllowWithReason => {
                let failure = Failure::new(
                    ErrorCode::ReasonRequired,
                    format!(
                        "role {} must give a reason (--reason) for {}",
                        who.role_name(),
                        request.op()
                    ),
                );
                return Err(self.refuse(&who, &request, reason, AuditOutcome::Denied, failure));
            }
            Decision::Deny(code) => {
                let message = denial_message(&who, op, request.op(), code, caller);
                let failure = Failure::new(code, message);
                return Err(self.refuse(&who, &request, reason, AuditOutcome::Denied, failure));
            }
        }

        if reason
            .as_ref()
            .is_some_and(|r| r.chars().count() > MAX_REASON_CHARS)
        {
            let failure = Failure::new(
                ErrorCode::Invalid,
                format!("reason is longer than {MAX_REASON_CHARS} characters"),
            );
            return Err(self.refuse(&who, &request, None, AuditOutcome::Failed, failure));
        }
        Ok((who, request, reason))
    }

    /// Answers a streamed request (`tenant.export`, `backup.create`): refusals and
    /// failures before the stream starts are an ordinary error answer; once
    /// `out.start()` has sent the first line, the data goes to `out` as frames and
    /// the returned result is the final line.
    pub fn handle_stream(
        &self,
        caller: &Caller,
        envelope: RequestEnvelope,
        out: &mut dyn StreamOut,
    ) -> Result<Response, ErrorBody> {
        let (who, request, reason) = self.admit(caller, envelope)?;
        match &request {
            Request::TenantExport { tenant } => export::run(self, &who, tenant, reason, out),
            Request::BackupCreate => backup::create(self, &who, reason, out),
            other => {
                let failure = Failure::new(
                    ErrorCode::BadRequest,
                    format!("{} is not a streamed request", other.op()),
                );
                Err(self.refuse(&who, other, reason, AuditOutcome::Failed, failure))
            }
        }
    }

    /// Runs `f` under the writer lock; its batch commits with its audit entry (and
    /// any extra ones it noted). On failure nothing of the batch commits, but the
    /// failure is audited.
    pub(crate) fn locked(
        &self,
        who: &Identity,
        action: &str,
        tenant: Option<String>,
        reason: Option<String>,
        f: impl FnOnce(&mut Ctx<'_>) -> Result<Response, Failure>,
    ) -> Result<Response, ErrorBody> {
        let writer = self.audit.writer();
        let mut ctx = Ctx::new(self, who, tenant);
        ctx.reason = reason.clone();
        let result = f(&mut ctx);
        let (outcome, answer) = match result {
            Ok(response) => (AuditOutcome::Ok, Ok(response)),
            Err(failure) => {
                ctx.batch = Batch::new();
                ctx.snapshot_changed = false;
                // Handlers may have noted context (the name a login tried).
                ctx.detail = Some(match ctx.detail.take() {
                    Some(context) => format!("{}; {context}", failure.detail()),
                    None => failure.detail(),
                });
                (AuditOutcome::Failed, Err(failure))
            }
        };
        let (actor, role) = ctx
            .actor_override
            .take()
            .unwrap_or_else(|| (who.actor.clone(), who.role));
        let draft = AuditDraft {
            actor,
            role,
            action: action.to_owned(),
            tenant: ctx.tenant.take(),
            outcome,
            reason,
            detail: ctx.detail.take(),
            public_detail: ctx.public_detail,
        };
        // Facts recorded besides the request (emails sent): kept even when the
        // request failed, since they happened.
        let mut drafts = vec![draft.clone()];
        drafts.extend(ctx.extra_audit.drain(..).map(|extra| AuditDraft {
            tenant: extra.tenant,
            outcome: extra.outcome,
            detail: Some(extra.detail),
            ..draft.clone()
        }));
        let mut batch = std::mem::take(&mut ctx.batch);
        let committed = (|| {
            if ctx.snapshot_changed {
                let version = self.snapshot_version()? + 1;
                batch.put(TreeName::Meta, META_SNAPSHOT_VERSION, &version)?;
            }
            writer.append_all(&self.store, &mut batch, drafts, now_ms())?;
            self.store.commit(batch)
        })();
        if let Err(e) = committed {
            tracing::error!(error = %e, op = action, "control store commit failed");
            // The change did not happen; still try to leave a trace of the attempt.
            let mut draft = draft;
            draft.outcome = AuditOutcome::Failed;
            draft.detail = Some(format!("internal: store commit failed: {e}"));
            let mut batch = Batch::new();
            if writer
                .append(&self.store, &mut batch, draft, now_ms())
                .is_ok()
            {
                let _ = self.store.commit(batch);
            }
            return Err(Failure::from(e).body);
        }
        answer.map_err(|f| f.body)
    }

    /// Audits a request refused before it ran and returns the error for the caller.
    fn refuse(
        &self,
        who: &Identity,
        request: &Request,
        reason: Option<String>,
        outcome: AuditOutcome,
        failure: Failure,
    ) -> ErrorBody {
        if matches!(request, Request::Hello) {
            return failure.body;
        }
        let draft = AuditDraft {
            actor: who.actor.clone(),
            role: who.role,
            action: request.op().to_owned(),
            tenant: request_tenant(request),
            outcome,
            reason: reason.map(|r| r.chars().take(MAX_REASON_CHARS).collect()),
            detail: Some(failure.detail()),
            public_detail: false,
        };
        let writer = self.audit.writer();
        let mut batch = Batch::new();
        let result = writer
            .append(&self.store, &mut batch, draft, now_ms())
            .and_then(|_| self.store.commit(batch));
        if let Err(e) = result {
            tracing::error!(error = %e, op = request.op(), "cannot audit a refused request");
            return Failure::from(e).body;
        }
        failure.body
    }
}

/// Where a streamed answer goes: `start` sends its first line, then `write` sends
/// frame bytes.
pub trait StreamOut: std::io::Write {
    fn start(&mut self) -> std::io::Result<()>;
}

/// The requests that run whole under the writer lock, each to its handler.
fn dispatch(ctx: &mut Ctx<'_>, request: &Request) -> Result<Response, Failure> {
    match request {
        Request::Hello => Ok(session::hello(ctx.who)),
        Request::Bootstrap { name, password } => session::bootstrap(ctx, name, password),
        Request::Logout => session::logout(ctx),
        Request::TenantAdd {
            tenant,
            business_name,
            contact,
            billing_ref,
            messages_per_hour,
            messages_per_day,
            recipients_per_message,
        } => {
            let defaults = ctx.settings.tenant_defaults;
            let limits = TenantLimits {
                messages_per_hour: messages_per_hour.unwrap_or(defaults.messages_per_hour),
                messages_per_day: messages_per_day.unwrap_or(defaults.messages_per_day),
                recipients_per_message: recipients_per_message
                    .unwrap_or(defaults.recipients_per_message),
            };
            tenants::add(
                ctx,
                tenant,
                business_name,
                contact,
                billing_ref.as_deref(),
                limits,
            )
        }
        Request::TenantList => tenants::list(ctx),
        Request::TenantShow { tenant } => tenants::show(ctx, tenant),
        Request::TenantUpdate { tenant, .. } => {
            tenants::update(ctx, tenant, tenants::Changes::of(request))
        }
        Request::TenantSuspend { tenant } => tenants::suspend(ctx, tenant),
        Request::TenantResume { tenant } => tenants::resume(ctx, tenant),
        Request::TenantTerminate { tenant } => tenants::terminate(ctx, tenant),
        Request::TenantRetention {
            tenant,
            content_secs,
            delivery_log_secs,
            security_log_secs,
            account_secs,
            reset,
        } => retention::set(
            ctx,
            tenant,
            way2mail_wire::protocol::RetentionSettings {
                content_secs: *content_secs,
                delivery_log_secs: *delivery_log_secs,
                security_log_secs: *security_log_secs,
                account_secs: *account_secs,
            },
            *reset,
        ),
        Request::TenantHold { tenant, hold } => tenants::hold(ctx, tenant, *hold),
        Request::TenantReceipt { tenant } => erasure::receipt(ctx, tenant),
        Request::RetentionShow => retention::show(ctx),
        Request::SuppressionAdd {
            tenant,
            address,
            note,
        } => suppression::add(ctx, tenant, address, note.as_deref()),
        Request::SuppressionList { tenant } => suppression::list(ctx, tenant),
        Request::SuppressionRemove { tenant, address } => suppression::remove(ctx, tenant, address),
        Request::ReceiptKey => erasure::public_key(ctx),
        // Their slow step comes first, without the lock (see `Service::run`).
        Request::Login { .. }
        | Request::DomainVerify { .. }
        | Request::DomainRotateDkim { activate: true, .. }
        | Request::IncidentNotify { .. }
        | Request::TenantReport { .. }
        | Request::TenantErase { .. }
        | Request::RetentionRun
        | Request::TenantExport { .. }
        | Request::BackupCreate => Err(Failure::internal(format!(
            "{} reached the generic dispatcher",
            request.op()
        ))),
        Request::DomainAdd { tenant, domain } => domains::add(ctx, tenant, domain),
        Request::DomainList { tenant } => domains::list(ctx, tenant.as_deref()),
        Request::DomainRemove { tenant, domain } => domains::remove(ctx, tenant, domain),
        Request::DomainShow { domain } => domains::show(ctx, domain),
        Request::DomainDns { domain } => domains::dns(ctx, domain),
        Request::DomainRotateDkim {
            domain,
            activate: false,
            ..
        } => domains::rotate_dkim(ctx, domain),
        Request::DomainRetireDkim { domain, selector } => {
            domains::retire_dkim(ctx, domain, selector.as_deref())
        }
        Request::DomainOverride { domain, allow } => domains::override_(ctx, domain, *allow),
        Request::DomainBimi {
            domain,
            selector,
            logo_url,
            vmc_url,
            clear,
        } => domains::bimi(
            ctx,
            domain,
            domains::BimiChange {
                selector: selector.as_deref(),
                logo_url: logo_url.as_deref(),
                vmc_url: vmc_url.as_deref(),
                clear: *clear,
            },
        ),
        Request::CredentialAdd {
            tenant,
            kind,
            username,
            description,
        } => credentials::add(
            ctx,
            tenant,
            *kind,
            username.as_deref(),
            description.as_deref(),
        ),
        Request::CredentialList { tenant } => credentials::list(ctx, tenant.as_deref()),
        Request::CredentialRevoke { id } => credentials::revoke(ctx, id),
        Request::OperatorAdd { name, role } => operators::add(ctx, name, *role),
        Request::OperatorList => operators::list(ctx),
        Request::OperatorRole { name, role } => operators::set_role(ctx, name, *role),
        Request::OperatorRemove { name } => operators::remove(ctx, name),
        Request::IncidentOpen {
            title,
            nature,
            data_affected,
            consequences,
            measures,
            detected_at,
        } => incidents::open(
            ctx,
            incidents::Opening {
                title,
                nature,
                data_affected,
                consequences,
                measures,
                detected_at: *detected_at,
            },
        ),
        Request::IncidentAddTenant { id, tenant } => incidents::add_tenant(ctx, id, tenant),
        Request::IncidentUpdate {
            id,
            title,
            nature,
            data_affected,
            consequences,
            measures,
        } => incidents::update(
            ctx,
            id,
            incidents::Changes {
                title: title.as_deref(),
                nature: nature.as_deref(),
                data_affected: data_affected.as_deref(),
                consequences: consequences.as_deref(),
                measures: measures.as_deref(),
            },
        ),
        Request::IncidentClose { id, resolution } => incidents::close(ctx, id, resolution),
        Request::IncidentList => incidents::list(ctx),
        Request::IncidentShow { id } => incidents::show(ctx, id),
        Request::AuditList {
            tenant,
            since_seq,
            limit,
        } => audit_ops::list(ctx, tenant.as_deref(), *since_seq, *limit),
        Request::AuditVerify => audit_ops::verify(ctx),
        Request::SnapshotGet { .. } => snapshot::get(ctx),
        Request::RetentionReport { report } => retention::report(ctx, report),
    }
}

/// The tenant a request names, for the audit entry.
fn request_tenant(request: &Request) -> Option<String> {
    match request {
        Request::TenantAdd { tenant, .. }
        | Request::TenantShow { tenant }
        | Request::TenantUpdate { tenant, .. }
        | Request::TenantSuspend { tenant }
        | Request::TenantResume { tenant }
        | Request::TenantTerminate { tenant }
        | Request::TenantRetention { tenant, .. }
        | Request::TenantHold { tenant, .. }
        | Request::TenantErase { tenant, .. }
        | Request::TenantReceipt { tenant }
        | Request::TenantReport { tenant }
        | Request::TenantExport { tenant }
        | Request::SuppressionAdd { tenant, .. }
        | Request::SuppressionList { tenant }
        | Request::SuppressionRemove { tenant, .. }
        | Request::DomainAdd { tenant, .. }
        | Request::DomainRemove { tenant, .. }
        | Request::CredentialAdd { tenant, .. }
        | Request::IncidentAddTenant { tenant, .. } => Some(tenant.clone()),
        Request::DomainList { tenant }
        | Request::CredentialList { tenant }
        | Request::AuditList { tenant, .. } => tenant.clone(),
        _ => None,
    }
    // A hostile peer could send a megabyte "tenant"; the audit keeps a bounded copy.
    .map(|t| t.chars().take(validate::MAX_TENANT_CHARS).collect())
}

fn denial_message(who: &Identity, op: Op, name: &str, code: ErrorCode, caller: &Caller) -> String {
    match (op, code) {
        (Op::Bootstrap, ErrorCode::Forbidden) => {
            "bootstrap is only for root on the control socket without a session, before the first admin exists".into()
        }
        (Op::Bootstrap, _) => format!("bootstrap is only for root on the control socket (you are uid {})", caller.uid),
        (Op::SnapshotGet | Op::RetentionReport, _) => format!(
            "{name} is only for the MTA's service user without a session (you are uid {})",
            caller.uid
        ),
        (_, ErrorCode::Forbidden) => format!("role {} may not {name}", who.role_name()),
        _ => format!("not logged in: run `way2mail login` first ({name} needs an operator session)"),
    }
}
