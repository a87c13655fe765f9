//! `tenant.report`, the right to information: every category of data held about a
//! tenant (in control and, asked before the writer lock, in the MTA's spool) with
//! its count, its oldest record and how long it is kept; the retention periods in
//! force; the delivery partners its mail may pass through (the MTA's smart-host
//! routes); and who accessed its data in the last 90 days, from the audit log.

use std::collections::BTreeMap;

use super::context::{now_ms, Ctx, Failure};
use super::mta::MtaError;
use super::writer::Service;
use super::{credentials, domains, retention, suppression, tenants, webhooks};
use crate::audit::AuditLog;
use crate::records::{BillingRecord, SuppressionCandidate};
use crate::store::{suppression_prefix, TreeName};
use way2mail_wire::client::ClientError;
use way2mail_wire::mta_admin::{AdminOp, AdminResult, MtaInventory, RouteInfo};
use way2mail_wire::protocol::{
    AccessSummary, AuditOutcome, DataCategory, IncidentInfo, Response, TenantReport,
};

/// How far back accesses are listed.
const ACCESS_WINDOW_MS: u64 = 90 * 86_400_000;

/// What the MTA said about a tenant: its spool inventory and routes, or why not.
pub(crate) type MtaView = Result<(MtaInventory, Vec<RouteInfo>), MtaError>;

/// Asks the MTA: the slow step of `tenant.report`, taken without the writer lock.
pub(crate) fn ask_mta(service: &Service, tenant: &str) -> MtaView {
    service.mta(|c| {
        let inventory = match c.call(AdminOp::TenantInventory {
            tenant: tenant.to_owned(),
        })? {
            AdminResult::Inventory(i) => i,
            other => {
                return Err(ClientError::Protocol(format!(
                    "unexpected answer {other:?}"
                )))
            }
        };
        let routes = match c.call(AdminOp::Routes)? {
            AdminResult::Routes { routes } => routes,
            other => {
                return Err(ClientError::Protocol(format!(
                    "unexpected answer {other:?}"
                )))
            }
        };
        Ok((inventory, routes))
    })
}

fn oldest(times: impl Iterator<Item = u64>) -> Option<u64> {
    times.min()
}

fn outcome_name(o: AuditOutcome) -> &'static str {
    match o {
        AuditOutcome::Ok => "ok",
        AuditOutcome::Denied => "denied",
        AuditOutcome::Failed => "failed",
    }
}

/// The report, with what [`ask_mta`] found.
pub(crate) fn report(ctx: &mut Ctx<'_>, tenant: &str, mta: MtaView) -> Result<Response, Failure> {
    let info = tenants::load(ctx, tenant)?;
    let e = retention::effective(&ctx.settings.retention, &info);
    let mut categories = Vec::new();
    let mut control = |category: &str, count: u64, oldest: Option<u64>, kept: String| {
        categories.push(DataCategory {
            category: category.to_owned(),
            held_by: "control".into(),
            count,
            oldest,
            kept,
        })
    };
    let while_account = "while the account exists; erased with it".to_owned();
    control(
        "account record (business name, contact, billing reference, limits, settings)",
        1,
        Some(info.created_at),
        format!(
            "while the account exists; then the billing record {} after the subscription ends",
            retention::describe(&e.account)
        ),
    );
    let domains = domains::owned_by(ctx.store, Some(&info.tenant))?;
    control(
        "sending domains (with DKIM public keys, verification, BIMI)",
        domains.len() as u64,
        oldest(domains.iter().map(|d| d.created_at)),
        while_account.clone(),
    );
    let keys: Vec<u64> = domains
        .iter()
        .flat_map(|d| d.dkim.iter().map(|k| k.created_at))
        .collect();
    control(
        "DKIM private keys",
        keys.len() as u64,
        oldest(keys.into_iter()),
        while_account.clone(),
    );
    let credentials = credentials::owned_by(ctx.store, Some(&info.tenant))?;
    control(
        "SMTP credentials and API keys (argon2id hashes and metadata)",
        credentials.len() as u64,
        oldest(credentials.iter().map(|c| c.created_at)),
        while_account.clone(),
    );
    let suppressed = suppression::entries(ctx, &info.tenant)?;
    control(
        "suppression list entries",
        suppressed.len() as u64,
        oldest(suppressed.iter().map(|s| s.added_at)),
        while_account.clone(),
    );
    let candidates = ctx.store.scan_prefix::<SuppressionCandidate>(
        TreeName::SuppressionCandidates,
        &suppression_prefix(&info.tenant),
    )?;
    control(
        "suppression candidates (addresses with one bad-domain failure, awaiting a second)",
        candidates.len() as u64,
        oldest(candidates.iter().map(|(_, c)| c.first_at)),
        format!(
            "until a second failure suppresses the address, at most {}; erased with the account",
            way2mail_daemon::duration::format(SuppressionCandidate::MAX_AGE_SECS)
        ),
    );
    let endpoints = webhooks::records(ctx.store, &info.tenant)?;
    control(
        "webhook endpoints (URLs, events, signing secrets)",
        endpoints.len() as u64,
        oldest(endpoints.iter().map(|w| w.created_at)),
        while_account,
    );
    let since = now_ms().saturating_sub(ACCESS_WINDOW_MS);
    let mut access: BTreeMap<(String, String, &'static str), AccessSummary> = BTreeMap::new();
    let (mut audit_count, mut audit_oldest) = (0u64, None);
    for entry in AuditLog::all(ctx.store)? {
        if entry.pruned || entry.tenant.as_deref() != Some(info.tenant.as_str()) {
            continue;
        }
        audit_count += 1;
        audit_oldest =
            Some(audit_oldest.map_or(entry.at_ms / 1000, |o: u64| o.min(entry.at_ms / 1000)));
        if entry.at_ms < since {
            continue;
        }
        let outcome = outcome_name(entry.outcome);
        let slot = access
            .entry((entry.actor.clone(), entry.action.clone(), outcome))
            .or_insert_with(|| AccessSummary {
                actor: entry.actor.clone(),
                action: entry.action.clone(),
                outcome: outcome.into(),
                count: 0,
                last_at_ms: 0,
            });
        slot.count += 1;
        slot.last_at_ms = slot.last_at_ms.max(entry.at_ms);
    }
    control(
        "audit log entries about the tenant (every access to its data)",
        audit_count,
        audit_oldest,
        retention::describe(&e.security_log),
    );
    let incidents: Vec<IncidentInfo> = ctx
        .store
        .scan::<IncidentInfo>(TreeName::Incidents)?
        .into_iter()
        .map(|(_, i)| i)
        .filter(|i| i.tenants.contains(&info.tenant))
        .collect();
    control(
        "security incidents naming the tenant",
        incidents.len() as u64,
        oldest(incidents.iter().map(|i| i.opened_at)),
        "kept in the incident register for accountability".into(),
    );
    if let Some(b) = ctx
        .store
        .get::<BillingRecord>(TreeName::Billing, info.tenant.as_bytes())?
    {
        control(
            "billing record of the ended subscription",
            1,
            Some(b.terminated_at),
            format!("until unix {}", b.delete_after),
        );
    }
    let (delivery_partners, mta_unavailable) = match mta {
        Ok((inv, routes)) => {
            for (category, count, oldest_ms, kept) in [
                (
                    "queued messages (content and recipient lists)",
                    inv.messages,
                    inv.oldest_message_ms,
                    retention::describe(&e.content),
                ),
                (
                    "delivery log records",
                    inv.log_records,
                    inv.oldest_log_ms,
                    retention::describe(&e.delivery_log),
                ),
            ] {
                categories.push(DataCategory {
                    category: category.into(),
                    held_by: "mta".into(),
                    count,
                    oldest: oldest_ms.map(|ms| ms / 1000),
                    kept,
                });
            }
            (routes, None)
        }
        Err(why) => (Vec::new(), Some(why.to_string())),
    };
    ctx.detail = Some(format!(
        "report: {} categories, {} accesses in 90 days",
        categories.len(),
        access.values().map(|a| a.count).sum::<u64>()
    ));
    Ok(Response::TenantReport(TenantReport {
        tenant: info.tenant.clone(),
        generated_at: ctx.now,
        status: info.status,
        terminated_at: info.terminated_at,
        erase_after: info.erase_after,
        legal_hold: info.legal_hold.clone(),
        categories,
        retention: e,
        delivery_partners,
        mta_unavailable,
        access_since_ms: since,
        access: access.into_values().collect(),
    }))
}
