//! `api.call`: what a tenant's HTTPS API request asks of control, sent by the MTA
//! (its service user only). The MTA names the API key by its credential id; control
//! checks that it is an unrevoked API key, scopes the operation to the key's
//! tenant, and writes the audit entry as the key's: actor `api:<prefix>`, the
//! tenant, the action (`api.suppression.add`, `api.webhook.add`, `api.access`,
//! ...). A tenant's key can only ever reach its own tenant's data: no request
//! names a tenant, and another tenant's webhook id is simply not found.

use super::context::{Ctx, Failure};
use super::{domains, suppression, tenants, validate, webhooks};
use crate::records::CredentialRecord;
use crate::store::TreeName;
use way2mail_wire::protocol::{ApiCall, CredentialKind, ErrorCode, Response, TenantStatus};

/// The longest `what` of an `access` entry.
const MAX_WHAT: usize = 200;

pub(crate) fn call(
    ctx: &mut Ctx<'_>,
    credential_id: &str,
    call: &ApiCall,
) -> Result<Response, Failure> {
    let key = ctx
        .store
        .get::<CredentialRecord>(TreeName::Credentials, credential_id.as_bytes())?
        .filter(|c| c.kind == CredentialKind::Api && c.revoked_at.is_none())
        .ok_or_else(|| {
            Failure::new(
                ErrorCode::Unauthenticated,
                format!(
                    "{} is not an API key in force",
                    validate::shorten(credential_id)
                ),
            )
        })?;
    ctx.tenant = Some(key.tenant.clone());
    ctx.actor_override = Some((format!("api:{}", key.username), None));
    let tenant = tenants::load(ctx, &key.tenant)?;
    if tenant.status != TenantStatus::Active {
        return Err(Failure::new(
            ErrorCode::Forbidden,
            format!("tenant {} is not active", tenant.tenant),
        ));
    }
    match call {
        ApiCall::SuppressionList => suppression::list(ctx, &tenant.tenant),
        ApiCall::SuppressionAdd { address, note } => {
            suppression::add(ctx, &tenant.tenant, address, note.as_deref())
        }
        ApiCall::SuppressionRemove { address } => suppression::remove(ctx, &tenant.tenant, address),
        ApiCall::WebhookList => webhooks::list(ctx, &tenant.tenant),
        ApiCall::WebhookAdd { url, events } => webhooks::add(ctx, &tenant.tenant, url, events),
        ApiCall::WebhookRemove { id } => webhooks::remove(ctx, &tenant.tenant, id),
        ApiCall::WebhookEnable { id } => webhooks::enable(ctx, &tenant.tenant, id),
        ApiCall::DomainList => domains::list(ctx, Some(&tenant.tenant)),
        ApiCall::DomainDns { domain } => {
            // Another tenant's domain is not there, as far as this key can tell.
            let wanted = domain.trim().trim_end_matches('.').to_ascii_lowercase();
            let owned = domains::owned_by(ctx.store, Some(&tenant.tenant))?
                .into_iter()
                .any(|d| d.domain == wanted);
            if !owned {
                return Err(Failure::not_found(format!(
                    "domain {} is not registered",
                    validate::shorten(domain)
                )));
            }
            domains::dns(ctx, &wanted)
        }
        ApiCall::Access { what } => {
            let what = validate::text("what", what, false)?;
            if what.chars().count() > MAX_WHAT {
                return Err(Failure::invalid("what: too long"));
            }
            ctx.detail = Some(what.to_string());
            Ok(Response::Done)
        }
    }
}

/// `api.unsubscribe`: a recipient used the one-click link of `tenant`'s mail (the
/// MTA opened its sealed token). The address goes on the tenant's suppression
/// list, added by `unsubscribe` with reason `unsubscribe`, unless the tenant
/// turned that rule off; already there is a success too (a link may be used twice).
pub(crate) fn unsubscribe(
    ctx: &mut Ctx<'_>,
    tenant: &str,
    address: &str,
) -> Result<Response, Failure> {
    ctx.actor_override = Some(("unsubscribe".to_owned(), None));
    let info = tenants::load_live(ctx, tenant)?;
    let addr = suppression::address(address)?;
    if !info.auto_suppress.unsubscribe {
        ctx.detail = Some(format!(
            "not suppressed: {addr}: the tenant turned automatic suppression on \
             unsubscribe off"
        ));
        return Ok(Response::Done);
    }
    let origin = suppression::Origin {
        added_by: "unsubscribe".into(),
        note: Some("one-click unsubscribe (RFC 8058)".into()),
        reason: Some("unsubscribe"),
        source: None,
    };
    match suppression::insert(ctx, &info.tenant, addr, origin) {
        Ok(entry) => Ok(Response::Suppressions {
            entries: vec![entry],
        }),
        Err(f) if f.body.code == ErrorCode::AlreadyExists => {
            ctx.detail = Some("already suppressed".into());
            Ok(Response::Done)
        }
        Err(f) => Err(f),
    }
}
