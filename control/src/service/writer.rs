//! The service's state and its writer lock: the store, the audit log and the
//! settings, one request at a time changing them. `locked` runs a handler's apply
//! step under the lock and commits its batch together with the request's audit
//! entries; `refuse` audits a request that never got that far. The request flow above
//! it (`mod.rs`) and the handlers below it use this; it uses neither.

use std::sync::OnceLock;

use way2mail_wire::protocol::{AuditOutcome, ErrorBody, Request, Response};

use super::context::{now_ms, Ctx, Failure, Identity};
use super::validate;
use crate::audit::{AuditDraft, AuditLog};
use crate::error::Error;
use crate::records::META_SNAPSHOT_VERSION;
use crate::settings::ServiceSettings;
use crate::store::{Batch, Store, StoreFiles, TreeName};

/// Longest `reason` accepted.
pub(super) const MAX_REASON_CHARS: usize = 500;

/// Thread-safe: the daemon calls `handle` from several connection threads at once.
#[derive(Debug)]
pub struct Service {
    store: Store,
    audit: AuditLog,
    settings: ServiceSettings,
    /// Verified against when a login names an unknown operator, so that case costs
    /// the same argon2 time as a wrong password.
    pub(super) dummy_hash: OnceLock<String>,
    /// Held by `incident.notify`, `api.webhook_failing` and `api.reputation_pause`
    /// from sending to recording, so that two such requests cannot send the same
    /// letter twice. Other requests never wait on it.
    pub(super) notify_lock: std::sync::Mutex<()>,
    /// Held through one blocklist check (lookups, letters, recording), so that the
    /// periodic check and `reputation.check` never report one change twice.
    pub(super) blocklist_lock: std::sync::Mutex<()>,
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
            blocklist_lock: std::sync::Mutex::new(()),
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
        let mut ctx = Ctx::new(&self.store, &self.settings, who, tenant);
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
        let mut new_version = None;
        let committed = (|| {
            if ctx.snapshot_changed {
                let version = self.snapshot_version()? + 1;
                batch.put(TreeName::Meta, META_SNAPSHOT_VERSION, &version)?;
                new_version = Some(version);
            }
            writer.append_all(&self.store, &mut batch, drafts, now_ms())?;
            self.store.commit(batch)
        })();
        if let (Ok(()), Some(version)) = (&committed, new_version) {
            crate::metrics::snapshot_version(version);
        }
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

    /// Commits a batch of the node's own bookkeeping that is no request and needs no
    /// audit entry (a periodic blocklist check that changed nothing), in turn with
    /// the writers.
    pub(super) fn commit_unaudited(&self, batch: Batch) -> Result<(), Error> {
        let _writer = self.audit.writer();
        self.store.commit(batch)
    }

    /// Audits a request refused before it ran and returns the error for the caller.
    pub(super) fn refuse(
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

/// The tenant a request names, for the audit entry.
pub(super) fn request_tenant(request: &Request) -> Option<String> {
    match request {
        Request::TenantAdd { tenant, .. }
        | Request::TenantShow { tenant }
        | Request::TenantUpdate { tenant, .. }
        | Request::TenantSuspend { tenant }
        | Request::TenantResume { tenant }
        | Request::TenantResumeSending { tenant }
        | Request::TenantDeliverability { tenant, .. }
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
        | Request::WebhookAdd { tenant, .. }
        | Request::WebhookList { tenant }
        | Request::WebhookRemove { tenant, .. }
        | Request::WebhookEnable { tenant, .. }
        | Request::ApiWebhookFailing { tenant, .. }
        | Request::ApiUnsubscribe { tenant, .. }
        | Request::ApiAutoSuppress { tenant, .. }
        | Request::ApiReputationPause { tenant, .. }
        | Request::DomainAdd { tenant, .. }
        | Request::DomainRemove { tenant, .. }
        | Request::CredentialAdd { tenant, .. }
        | Request::IncidentAddTenant { tenant, .. } => Some(tenant.clone()),
        Request::DomainList { tenant }
        | Request::CredentialList { tenant }
        | Request::AuditList { tenant, .. } => tenant.clone(),
        Request::QueueSummary { filter } | Request::QueueList { filter, .. } => {
            filter.tenant.clone()
        }
        request => request
            .queue_change()
            .and_then(|(_, selection, _)| selection.filter.tenant.clone()),
    }
    // A hostile peer could send a megabyte "tenant"; the audit keeps a bounded copy.
    .map(|t| t.chars().take(validate::MAX_TENANT_CHARS).collect())
}
