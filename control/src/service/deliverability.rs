//! `tenant.deliverability`: a tenant's volume and outcomes since a time, from the
//! MTA's delivery log (its admin socket, asked outside the writer lock as the queue
//! operations are), with the suppressions control added in that time. An access
//! to client data: audited under the tenant with what was asked and the totals.

use way2mail_wire::mta_admin::{AdminOp, AdminResult};
use way2mail_wire::protocol::{check_tenant_id, ErrorBody, Response, TenantInfo};

use super::context::{now_secs, Failure, Identity};
use super::writer::Service;
use super::{queue, suppression, tenants};
use crate::store::TreeName;

/// The default window: the last 7 days.
pub(crate) const DEFAULT_WINDOW_SECS: u64 = 7 * 86_400;

/// Answers `tenant.deliverability` of `tenant` since `since` (unix seconds; default
/// now − 7 days).
pub(crate) fn run(
    service: &Service,
    who: &Identity,
    tenant: &str,
    since: Option<u64>,
    reason: Option<String>,
) -> Result<Response, ErrorBody> {
    let op = "tenant.deliverability";
    let audited = Some(
        tenant
            .chars()
            .take(super::validate::MAX_TENANT_CHARS)
            .collect(),
    );
    let now = now_secs();
    let since = since.unwrap_or_else(|| now.saturating_sub(DEFAULT_WINDOW_SECS));
    let checked = check_tenant_id(tenant)
        .map_err(|e| Failure::invalid(e.to_string()))
        .and_then(|()| {
            if since > now {
                Err(Failure::invalid(format!(
                    "since (unix {since}) is in the future"
                )))
            } else {
                Ok(())
            }
        });
    if let Err(failure) = checked {
        return service.locked(who, op, audited, reason, |_| Err(failure));
    }
    // An unknown tenant is not worth a trip to the MTA: the step under the lock
    // says so.
    let known = matches!(
        service
            .store()
            .get::<TenantInfo>(TreeName::Tenants, tenant.as_bytes()),
        Ok(Some(_))
    );
    let answer = if known {
        Some(service.mta(|c| {
            c.call(AdminOp::Deliverability {
                tenant: tenant.to_owned(),
                since_ms: since.saturating_mul(1000),
            })
        }))
    } else {
        None
    };
    service.locked(who, op, audited, reason, |ctx| {
        let info = tenants::load(ctx, tenant)?;
        let Some(answer) = answer else {
            return Err(Failure::internal(format!(
                "tenant {} appeared while the report ran; ask again",
                info.tenant
            )));
        };
        let mut report = match answer.map_err(queue::failure_of)? {
            AdminResult::Deliverability(report) => report,
            other => {
                return Err(Failure::internal(format!(
                    "unexpected answer from the MTA: {other:?}"
                )))
            }
        };
        report.tenant = info.tenant.clone();
        report.suppressions_added = suppression::entries(ctx, &info.tenant)?
            .iter()
            .filter(|e| e.added_at >= since)
            .count() as u64;
        ctx.detail = Some(format!(
            "deliverability since {}: {} recipients, {} delivered, {} bounced, {} \
             complaints, {} suppressions added",
            way2mail_smtp::date::rfc3339(since),
            report.volume,
            report.delivered,
            report.bounced,
            report.complaints,
            report.suppressions_added
        ));
        Ok(Response::Deliverability(report))
    })
}
