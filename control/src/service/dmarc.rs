//! `domain.dmarc`: the DMARC aggregate reports the MTA received for a domain since
//! a time, summed by the MTA (its admin socket, asked outside the writer lock as
//! `tenant.deliverability` is). An access to the client data of the domain's
//! tenant: audited under that tenant with what was asked and the totals.

use way2mail_wire::mta_admin::{AdminOp, AdminResult};
use way2mail_wire::protocol::{DomainInfo, ErrorBody, Response};

use super::context::{now_secs, Ctx, Failure, Identity};
use super::writer::Service;
use super::{queue, validate};
use crate::store::TreeName;

/// The default window: the last 30 days.
pub(crate) const DEFAULT_WINDOW_SECS: u64 = 30 * 86_400;

/// Answers `domain.dmarc` of `domain` since `since` (unix seconds; default now −
/// 30 days).
pub(crate) fn run(
    service: &Service,
    who: &Identity,
    domain: &str,
    since: Option<u64>,
    reason: Option<String>,
) -> Result<Response, ErrorBody> {
    let op = "domain.dmarc";
    let now = now_secs();
    let since = since.unwrap_or_else(|| now.saturating_sub(DEFAULT_WINDOW_SECS));
    let checked = validate::domain(domain).and_then(|name| {
        if since > now {
            Err(Failure::invalid(format!(
                "since (unix {since}) is in the future"
            )))
        } else {
            Ok(name)
        }
    });
    let name = match checked {
        Ok(name) => name,
        Err(failure) => return service.locked(who, op, None, reason, |_| Err(failure)),
    };
    // An unknown domain is not worth a trip to the MTA: the step under the lock
    // says so.
    let registered = {
        let store = service.store();
        store
            .get::<DomainInfo>(TreeName::Domains, &store.domain_key(&name))
            .ok()
            .flatten()
    };
    let asked = registered.map(|info| {
        let answer = service.mta(|c| {
            c.call(AdminOp::Dmarc {
                tenant: info.tenant.clone(),
                domain: info.domain.clone(),
                since_ms: since.saturating_mul(1000),
            })
        });
        (info.tenant, answer)
    });
    service.locked(who, op, None, reason, |ctx| {
        let info = load(ctx, &name)?;
        let answer = match asked {
            Some((tenant, answer)) if tenant == info.tenant => answer,
            Some(_) => {
                return Err(Failure::internal(format!(
                    "domain {} moved to another tenant while the report ran; ask again",
                    info.domain
                )))
            }
            None => {
                return Err(Failure::internal(format!(
                    "domain {} appeared while the report ran; ask again",
                    info.domain
                )))
            }
        };
        let mut summary = match answer.map_err(queue::failure_of)? {
            AdminResult::Dmarc(summary) => summary,
            other => {
                return Err(Failure::internal(format!(
                    "unexpected answer from the MTA: {other:?}"
                )))
            }
        };
        summary.domain = info.domain.clone();
        ctx.detail = Some(format!(
            "dmarc of {} since {}: {} reports, {} messages, {} failing",
            info.domain,
            way2mail_smtp::date::rfc3339(since),
            summary.reports,
            summary.messages,
            summary.failing
        ));
        Ok(Response::Dmarc(summary))
    })
}

/// Loads a registered domain and names its tenant in the audit entry (as the
/// other `domain.*` reads do).
fn load(ctx: &mut Ctx<'_>, name: &str) -> Result<DomainInfo, Failure> {
    let info = ctx
        .store
        .get::<DomainInfo>(TreeName::Domains, &ctx.store.domain_key(name))?
        .ok_or_else(|| Failure::not_found(format!("domain {name} is not registered")))?;
    ctx.tenant = Some(info.tenant.clone());
    Ok(info)
}
