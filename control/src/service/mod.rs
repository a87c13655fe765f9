//! The control service: one request from one identified caller in, one response out.
//! Identification (peer credentials, session token), the role check, the operation
//! against the store and the audit entry all happen here; the daemon's socket code
//! only frames lines and never decides anything.
//!
//! ```text
//!   handle ─ admit: version ─ identify (session.rs) ─ rbac::decide ─ reason
//!        └─ run ─ slow step without the lock, for the few that have one:
//!           │       login: argon2 ─ domain.verify, rotate_dkim --activate: DNS
//!           │       reputation.check: DNSBL lookups and letters (blocklist.rs)
//!           │       incident.notify, api.webhook_failing, api.reputation_pause:
//!           │       emails ─ tenant.report, tenant.deliverability, domain.dmarc,
//!           │       queue.*: the MTA
//!           └─ locked: writer lock ─ handler (tenants.rs, domains.rs, …; the slow
//!              step's result passed in) fills a Batch ─ audit entry + snapshot
//!              version into the same Batch ─ commit+flush ─ answer
//! ```
//!
//! The service's state and its writer lock (`locked`, `refuse`) are `writer.rs`;
//! the handlers use those and `context.rs`, never this file.
//!
//! `tenant.erase`, `retention.run` and the streamed requests (`handle_stream`:
//! `tenant.export`, `backup.create`) alternate: a step under the lock, the MTA
//! without it, another step under it. `hello` and a `snapshot.get` answered
//! `unchanged` are the only requests not audited; refused ones are.

mod api;
mod archive;
mod audit_ops;
mod backup;
mod blocklist;
pub(crate) use backup::BACKUP_SCRATCH;
mod context;
mod credentials;
mod deliverability;
mod dmarc;
mod domains;
mod erasure;
mod export;
mod export_format;
mod feedback;
mod incidents;
mod mta;
mod operators;
mod queue;
mod report;
mod retention;
mod session;
mod snapshot;
mod suppression;
mod tenants;
mod validate;
mod webhooks;
mod writer;

use crate::metrics::LoginResult;
use crate::rbac::{self, Decision, Op};
use way2mail_wire::protocol::{
    AuditOutcome, ErrorBody, ErrorCode, Request, RequestEnvelope, Response, VERSION,
};
use way2mail_wire::snapshot::TenantLimits;

use context::{Ctx, Failure, Identity};
use writer::{request_tenant, MAX_REASON_CHARS};

pub use context::StreamOut;
pub use way2mail_daemon::Caller;
pub use writer::Service;

pub use crate::settings::{SendingSettings, ServiceSettings};

pub use erasure::{signed_bytes as receipt_signed_bytes, verify as verify_receipt, ReceiptError};

impl Service {
    /// Answers one parsed request. Never panics on any input.
    pub fn handle(
        &self,
        caller: &Caller,
        envelope: RequestEnvelope,
    ) -> Result<Response, ErrorBody> {
        let login = matches!(envelope.request, Request::Login { .. });
        let (who, request, reason) = self.admit(caller, envelope).inspect_err(|_| {
            if login {
                crate::metrics::login(LoginResult::Other);
            }
        })?;

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
                let mut failed_as = LoginResult::Other;
                let answer = self.locked(who, op, tenant, reason, |ctx| {
                    session::login(ctx, &name, &totp, check, &mut failed_as)
                });
                // A session counts once committed: a failed commit is `other`.
                crate::metrics::login(match answer {
                    Ok(_) => LoginResult::Ok,
                    Err(_) => failed_as,
                });
                answer
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
            // DNS lookups and letters without the lock, then the state and the audit.
            Request::ReputationCheck => blocklist::run(self, who, reason),
            request @ (Request::QueueSummary { .. }
            | Request::QueueList { .. }
            | Request::QueueShow { .. }
            | Request::QueueHold { .. }
            | Request::QueueRelease { .. }
            | Request::QueueRetry { .. }
            | Request::QueueBounce { .. }
            | Request::QueueDelete { .. }) => queue::run(self, who, &request, reason),
            request @ (Request::TenantExport { .. } | Request::BackupCreate) => {
                let failure = Failure::new(
                    ErrorCode::BadRequest,
                    format!(
                        "{op} answers with a stream of frames; use `way2mail` or a client that reads streams"
                    ),
                );
                Err(self.refuse(who, &request, reason, AuditOutcome::Failed, failure))
            }
            // Audited under the API operation's own name (`api.suppression.add`).
            Request::ApiCall {
                credential_id,
                call,
            } => self.locked(who, call.name(), None, reason, |ctx| {
                api::call(ctx, &credential_id, &call)
            }),
            Request::ApiUnsubscribe {
                tenant: name,
                address,
            } => self.locked(who, op, tenant, reason, |ctx| {
                api::unsubscribe(ctx, &name, &address)
            }),
            Request::ApiAutoSuppress {
                tenant: name,
                address,
                rule,
                source,
            } => {
                let signal = feedback::Signal {
                    tenant: &name,
                    address: &address,
                    rule: &rule,
                    source: &source,
                };
                self.locked(who, op, tenant, reason, |ctx| {
                    feedback::auto_suppress(ctx, &signal)
                })
            }
            Request::ApiReputationPause {
                tenant: name,
                rates,
            } => {
                // As for webhooks: a report made twice at once sends the letters once.
                let _notifying = self.notify_lock.lock().unwrap_or_else(|e| e.into_inner());
                let letters = feedback::pause_letters(self, &name, &rates);
                self.locked(who, op, tenant, reason, |ctx| {
                    feedback::pause(ctx, &name, &rates, letters)
                })
            }
            Request::TenantDeliverability {
                tenant: name,
                since,
            } => deliverability::run(self, who, &name, since, reason),
            Request::DomainDmarc { domain, since } => dmarc::run(self, who, &domain, since, reason),
            Request::ApiWebhookFailing {
                tenant: name,
                id,
                failing_since,
                last_error,
            } => {
                let report = webhooks::Report {
                    tenant: &name,
                    id: &id,
                    failing_since,
                    last_error: &last_error,
                };
                // As for incident.notify: a report made twice at once sends one letter.
                let _notifying = self.notify_lock.lock().unwrap_or_else(|e| e.into_inner());
                let notice = webhooks::notice(self, &report);
                self.locked(who, op, tenant, reason, |ctx| {
                    webhooks::failing(ctx, &report, notice)
                })
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
        let peer = Identity::peer(caller, self.settings());
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
        Request::TenantResumeSending { tenant } => feedback::resume_sending(ctx, tenant),
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
        Request::ReputationShow => blocklist::show(ctx),
        Request::SuppressionAdd {
            tenant,
            address,
            note,
        } => suppression::add(ctx, tenant, address, note.as_deref()),
        Request::SuppressionList { tenant } => suppression::list(ctx, tenant),
        Request::SuppressionRemove { tenant, address } => suppression::remove(ctx, tenant, address),
        Request::WebhookAdd {
            tenant,
            url,
            events,
        } => webhooks::add(ctx, tenant, url, events),
        Request::WebhookList { tenant } => webhooks::list(ctx, tenant),
        Request::WebhookRemove { tenant, id } => webhooks::remove(ctx, tenant, id),
        Request::WebhookEnable { tenant, id } => webhooks::enable(ctx, tenant, id),
        Request::ReceiptKey => erasure::public_key(ctx),
        // Their slow step comes first, without the lock (see `Service::run`).
        Request::Login { .. }
        | Request::DomainVerify { .. }
        | Request::DomainRotateDkim { activate: true, .. }
        | Request::IncidentNotify { .. }
        | Request::ApiWebhookFailing { .. }
        | Request::ApiReputationPause { .. }
        | Request::TenantReport { .. }
        | Request::TenantDeliverability { .. }
        | Request::DomainDmarc { .. }
        | Request::TenantErase { .. }
        | Request::RetentionRun
        | Request::ReputationCheck
        | Request::TenantExport { .. }
        | Request::BackupCreate
        | Request::QueueSummary { .. }
        | Request::QueueList { .. }
        | Request::QueueShow { .. }
        | Request::QueueHold { .. }
        | Request::QueueRelease { .. }
        | Request::QueueRetry { .. }
        | Request::QueueBounce { .. }
        | Request::QueueDelete { .. } => Err(Failure::internal(format!(
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
        // Run above, under their own audit action.
        Request::ApiCall { .. }
        | Request::ApiUnsubscribe { .. }
        | Request::ApiAutoSuppress { .. } => Err(Failure::internal(
            "an api request reached the generic dispatch",
        )),
    }
}

fn denial_message(who: &Identity, op: Op, name: &str, code: ErrorCode, caller: &Caller) -> String {
    match (op, code) {
        (Op::Bootstrap, ErrorCode::Forbidden) => {
            "bootstrap is only for root on the control socket without a session, before the first admin exists".into()
        }
        (Op::Bootstrap, _) => format!("bootstrap is only for root on the control socket (you are uid {})", caller.uid),
        (Op::SnapshotGet | Op::RetentionReport | Op::ApiCall, _) => format!(
            "{name} is only for the MTA's service user without a session (you are uid {})",
            caller.uid
        ),
        (_, ErrorCode::Forbidden) => format!("role {} may not {name}", who.role_name()),
        _ => format!("not logged in: run `way2mail login` first ({name} needs an operator session)"),
    }
}
