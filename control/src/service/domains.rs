//! Domain operations: a domain belongs to exactly one tenant (the key of the
//! domains tree is the domain), is lower-cased, and is what the MTA checks MAIL
//! FROM against.

use super::context::{Ctx, Failure};
use super::{tenants, validate};
use crate::protocol::{DomainInfo, Response};
use crate::store::TreeName;

pub(crate) fn add(ctx: &mut Ctx<'_>, tenant: &str, domain: &str) -> Result<Response, Failure> {
    let owner = tenants::load_live(ctx, tenant)?;
    let domain = validate::domain(domain)?;
    if let Some(existing) = ctx
        .store
        .get::<DomainInfo>(TreeName::Domains, domain.as_bytes())?
    {
        return Err(Failure::exists(if ctx.who.sees_owners() {
            format!(
                "domain {domain} already belongs to tenant {}",
                existing.tenant
            )
        } else {
            format!("domain {domain} is already registered")
        }));
    }
    let info = DomainInfo {
        domain: domain.clone(),
        tenant: owner.tenant,
        created_at: ctx.now,
    };
    ctx.batch.put(TreeName::Domains, domain.as_bytes(), &info)?;
    ctx.snapshot_changed = true;
    ctx.detail = Some(format!("added domain {domain}"));
    Ok(Response::Domains {
        domains: vec![info],
    })
}

pub(crate) fn list(ctx: &mut Ctx<'_>, tenant: Option<&str>) -> Result<Response, Failure> {
    if let Some(t) = tenant {
        tenants::load(ctx, t)?;
    }
    let domains: Vec<DomainInfo> = ctx
        .store
        .scan::<DomainInfo>(TreeName::Domains)?
        .into_iter()
        .map(|(_, d)| d)
        .filter(|d| tenant.is_none_or(|t| d.tenant == t))
        .collect();
    ctx.detail = Some(format!("{} domains", domains.len()));
    Ok(Response::Domains { domains })
}

pub(crate) fn remove(ctx: &mut Ctx<'_>, tenant: &str, domain: &str) -> Result<Response, Failure> {
    let domain = validate::domain(domain)?;
    let owned = ctx
        .store
        .get::<DomainInfo>(TreeName::Domains, domain.as_bytes())?
        .filter(|d| d.tenant == tenant);
    if owned.is_none() {
        return Err(Failure::not_found(format!(
            "domain {domain} is not a domain of tenant {}",
            validate::shorten(tenant)
        )));
    }
    ctx.batch.remove(TreeName::Domains, domain.as_bytes());
    ctx.snapshot_changed = true;
    ctx.detail = Some(format!("removed domain {domain}"));
    Ok(Response::Done)
}
