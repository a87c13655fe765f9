//! Retention in control: the periods in force for each tenant (its agreement over
//! the `[retention]` defaults), `tenant.retention` to set them, the control half of
//! the sweep (audit entries pruned, billing records, receipts and unconfirmed
//! suppression candidates past their period deleted, terminated tenants erased once
//! their grace period is over), `retention.run`
//! to sweep both daemons now, and the MTA's reports of its own scheduled sweeps.
//! Everything a sweep removes is written to the audit log as counts, never content.

use std::collections::HashMap;

use serde_json::json;

use super::context::{now_ms, Ctx, ExtraAudit, Failure, Identity};
use super::writer::Service;
use super::{erasure, tenants};
use crate::audit::AuditLog;
use crate::records::{BillingRecord, ErasedTenant, ReceiptRecord, SuppressionCandidate};
use crate::store::{audit_key, TreeName};
use way2mail_daemon::duration;
use way2mail_wire::mta_admin::{AdminOp, AdminResult, SweepReport};
use way2mail_wire::protocol::{
    AuditOutcome, EffectiveRetention, ErrorBody, Period, Response, RetentionDefaults,
    RetentionRunReport, RetentionSettings, TenantInfo, TenantStatus,
};
use way2mail_wire::snapshot::MtaRetention;

/// Longest period accepted for a tenant (as for the defaults).
const MAX_SECS: u64 = 1000 * 365 * 86_400;
/// Audit entries pruned per hold of the writer lock.
const PRUNE_CHUNK: usize = 5_000;

fn period(own: Option<u64>, default: u64) -> Period {
    match own {
        Some(secs) => Period {
            secs,
            source: "tenant".into(),
        },
        None => Period {
            secs: default,
            source: "default".into(),
        },
    }
}

/// The periods in force for a tenant.
pub(crate) fn effective(d: &RetentionDefaults, t: &TenantInfo) -> EffectiveRetention {
    let r = &t.retention;
    EffectiveRetention {
        content: period(r.content_secs, d.content_secs),
        delivery_log: period(r.delivery_log_secs, d.delivery_log_secs),
        security_log: period(r.security_log_secs, d.security_log_secs),
        account: period(r.account_secs, d.account_secs),
        termination_grace: period(None, d.termination_grace_secs),
    }
}

/// What the MTA enforces for a tenant.
pub(crate) fn mta_view(d: &RetentionDefaults, t: &TenantInfo) -> MtaRetention {
    let e = effective(d, t);
    MtaRetention {
        content_secs: e.content.secs,
        delivery_log_secs: e.delivery_log.secs,
    }
}

/// `30d (tenant's agreement)` / `400d (default)`.
pub(crate) fn describe(p: &Period) -> String {
    let whose = if p.source == "tenant" {
        "tenant's agreement"
    } else {
        "default"
    };
    format!("{} ({whose})", duration::format(p.secs))
}

/// `tenant.retention`: sets the periods given (or, with `reset`, clears them all).
pub(crate) fn set(
    ctx: &mut Ctx<'_>,
    tenant: &str,
    changes: RetentionSettings,
    reset: bool,
) -> Result<Response, Failure> {
    let mut info = tenants::load_live(ctx, tenant)?;
    let given = [
        ("content", changes.content_secs),
        ("delivery_log", changes.delivery_log_secs),
        ("security_log", changes.security_log_secs),
        ("account", changes.account_secs),
    ];
    if reset && given.iter().any(|(_, v)| v.is_some()) {
        return Err(Failure::invalid(
            "reset clears every period: give either reset or periods",
        ));
    }
    if !reset && given.iter().all(|(_, v)| v.is_none()) {
        return Err(Failure::invalid(
            "nothing to change: give at least one period",
        ));
    }
    for (name, value) in given {
        if let Some(secs) = value {
            if secs == 0 || secs > MAX_SECS {
                return Err(Failure::invalid(format!(
                    "{name} must be between 1s and 1000y"
                )));
            }
        }
    }
    let before = info.retention;
    let r = &mut info.retention;
    if reset {
        *r = RetentionSettings::default();
    } else {
        r.content_secs = changes.content_secs.or(r.content_secs);
        r.delivery_log_secs = changes.delivery_log_secs.or(r.delivery_log_secs);
        r.security_log_secs = changes.security_log_secs.or(r.security_log_secs);
        r.account_secs = changes.account_secs.or(r.account_secs);
    }
    ctx.detail = Some(json!({ "retention": { "old": before, "new": info.retention } }).to_string());
    tenants::save(ctx, &mut info)?;
    Ok(Response::Tenant(info))
}

/// `retention.show`: the defaults.
pub(crate) fn show(ctx: &mut Ctx<'_>) -> Result<Response, Failure> {
    Ok(Response::RetentionDefaults(ctx.settings.retention))
}

/// `retention.report`: one audit entry for the MTA's sweep, one per tenant it touched.
pub(crate) fn report(ctx: &mut Ctx<'_>, report: &SweepReport) -> Result<Response, Failure> {
    ctx.detail = Some(record_sweep(ctx, report));
    Ok(Response::Done)
}

/// Notes a sweep of the MTA in the audit: extra entries per tenant; returns the
/// summary line for the request's own entry.
fn record_sweep(ctx: &mut Ctx<'_>, report: &SweepReport) -> String {
    let mut messages = 0;
    let mut records = 0;
    for e in &report.entries {
        messages += e.messages_removed;
        records += e.log_records_removed;
        let mut detail = format!(
            "MTA retention sweep at {}: removed {} queued messages and {} delivery log records",
            report.started_ms, e.messages_removed, e.log_records_removed,
        );
        if e.messages_in_delivery > 0 {
            detail.push_str(&format!(
                "; {} old enough but in delivery, left for the next sweep",
                e.messages_in_delivery
            ));
        }
        ctx.extra_audit.push(ExtraAudit {
            tenant: e.tenant.clone(),
            outcome: AuditOutcome::Ok,
            detail,
        });
    }
    format!(
        "MTA retention sweep at {}: {} tenants, {messages} messages and {records} log records \
         removed; {} messages and {} log records of erased tenants deleted",
        report.started_ms,
        report.entries.len(),
        report.erased_messages,
        report.erased_log_records,
    )
}

/// What the control half of one sweep did.
#[derive(Debug, Default)]
struct StoreSweep {
    pruned: u64,
    billing_deleted: u64,
    receipts_deleted: u64,
    /// Suppression candidates past their age (never confirmed).
    candidates_dropped: u64,
    /// Terminated tenants whose grace period is over.
    due: Vec<String>,
    held: Vec<String>,
    /// More audit entries are due than one pass prunes.
    more: bool,
}

/// Prunes, deletes and finds the due erasures, into `ctx.batch`.
fn sweep_store(ctx: &mut Ctx<'_>, now_ms: u64) -> Result<StoreSweep, Failure> {
    let d = ctx.settings.retention;
    let now = now_ms / 1000;
    let mut out = StoreSweep::default();
    let tenants: HashMap<String, TenantInfo> = ctx
        .store
        .scan::<TenantInfo>(TreeName::Tenants)?
        .into_iter()
        .map(|(_, t)| (t.tenant.clone(), t))
        .collect();
    for t in tenants.values() {
        let due = t.status == TenantStatus::Terminated && t.erase_after.is_some_and(|at| at <= now);
        if due && t.legal_hold.is_some() {
            out.held.push(t.tenant.clone());
        } else if due {
            out.due.push(t.tenant.clone());
        }
    }
    out.due.sort();
    out.held.sort();
    for entry in AuditLog::all(ctx.store)? {
        if entry.pruned {
            continue;
        }
        let owner = entry.tenant.as_deref().and_then(|t| tenants.get(t));
        if owner.is_some_and(|t| t.legal_hold.is_some()) {
            continue;
        }
        let keep_secs = owner
            .and_then(|t| t.retention.security_log_secs)
            .unwrap_or(d.security_log_secs);
        if entry.at_ms.saturating_add(keep_secs.saturating_mul(1000)) >= now_ms {
            continue;
        }
        if out.pruned as usize == PRUNE_CHUNK {
            out.more = true;
            break;
        }
        ctx.batch.put(
            TreeName::Audit,
            audit_key(entry.seq),
            &AuditLog::pruned(&entry),
        )?;
        out.pruned += 1;
    }
    for (key, b) in ctx.store.scan::<BillingRecord>(TreeName::Billing)? {
        if b.delete_after <= now {
            ctx.batch.remove(TreeName::Billing, key);
            out.billing_deleted += 1;
        }
    }
    for (key, r) in ctx.store.scan::<ReceiptRecord>(TreeName::Receipts)? {
        if r.delete_after <= now {
            ctx.batch.remove(TreeName::Receipts, key);
            out.receipts_deleted += 1;
        }
    }
    for (key, c) in ctx
        .store
        .scan::<SuppressionCandidate>(TreeName::SuppressionCandidates)?
    {
        // The key starts with `tenant \0`.
        let tenant = key
            .iter()
            .position(|&b| b == 0)
            .map(|at| String::from_utf8_lossy(&key[..at]).into_owned());
        let held = tenant
            .as_deref()
            .and_then(|t| tenants.get(t))
            .is_some_and(|t| t.legal_hold.is_some());
        if c.expired(now) && !held {
            ctx.batch.remove(TreeName::SuppressionCandidates, key);
            out.candidates_dropped += 1;
        }
    }
    ctx.detail = Some(format!(
        "retention sweep: {} audit entries pruned, {} billing records and {} receipts deleted, \
         {} unconfirmed suppression candidates dropped, {} tenants due for erasure, {} held",
        out.pruned,
        out.billing_deleted,
        out.receipts_deleted,
        out.candidates_dropped,
        out.due.len(),
        out.held.len()
    ));
    Ok(out)
}

/// One sweep of control's store, and the erasures that are due; `run_mta` also
/// asks the MTA to sweep now. Used by `retention.run` and the hourly thread.
pub(crate) fn sweep(
    service: &Service,
    who: &Identity,
    action: &str,
    reason: Option<String>,
    run_mta: bool,
) -> Result<RetentionRunReport, ErrorBody> {
    let mut report = RetentionRunReport {
        audit_entries_pruned: 0,
        billing_records_deleted: 0,
        receipts_deleted: 0,
        erased: Vec::new(),
        held: Vec::new(),
        mta: None,
        mta_unavailable: None,
    };
    let due = loop {
        let mut pass = StoreSweep::default();
        service.locked(who, action, None, reason.clone(), |ctx| {
            pass = sweep_store(ctx, now_ms())?;
            Ok(Response::Done)
        })?;
        report.audit_entries_pruned += pass.pruned;
        report.billing_records_deleted += pass.billing_deleted;
        report.receipts_deleted += pass.receipts_deleted;
        report.held = pass.held;
        if !pass.more {
            break pass.due;
        }
    };
    // An erasure whose key could not be destroyed at the time (a disk error).
    if let Ok(erased) = service.store().scan::<ErasedTenant>(TreeName::Erased) {
        for (_, e) in erased {
            if service.store().keyring().existing(&e.tenant).is_some() {
                match service.store().keyring().shred(&e.tenant) {
                    Ok(_) => {
                        tracing::warn!(tenant = %e.tenant, "shredded the key of an erased tenant left by an earlier failure")
                    }
                    Err(err) => {
                        tracing::error!(tenant = %e.tenant, error = %err, "cannot shred the key of an erased tenant")
                    }
                }
            }
        }
    }
    for tenant in due {
        let why = Some("scheduled erasure: the grace period after termination is over".to_owned());
        match erasure::erase_tenant(service, who, &tenant, why) {
            Ok(receipt) => report.erased.push(receipt.receipt),
            Err(e) => tracing::error!(%tenant, error = %e.message, "scheduled erasure failed"),
        }
    }
    if run_mta {
        match service.mta(|c| c.call(AdminOp::RetentionRun)) {
            Ok(AdminResult::Swept(swept)) => {
                service.locked(who, action, None, reason, |ctx| {
                    ctx.detail = Some(record_sweep(ctx, &swept));
                    Ok(Response::Done)
                })?;
                report.mta = Some(swept);
            }
            Ok(other) => report.mta_unavailable = Some(format!("unexpected answer {other:?}")),
            Err(e) => report.mta_unavailable = Some(e.to_string()),
        }
    }
    Ok(report)
}

/// `retention.run`.
pub(crate) fn run(
    service: &Service,
    who: &Identity,
    reason: Option<String>,
) -> Result<Response, ErrorBody> {
    sweep(service, who, "retention.run", reason, true).map(Response::RetentionRun)
}

impl Service {
    /// The scheduled sweep of the daemon's retention thread (`system:retention`).
    pub fn sweep_scheduled(&self) -> Result<RetentionRunReport, ErrorBody> {
        sweep(
            self,
            &Identity::system("retention"),
            "retention.sweep",
            None,
            false,
        )
    }
}
