//! Tenant operations: add, list, show, update, and the status moves
//! (active ⇄ suspended, anything → terminated, which is final).

use serde_json::json;

use super::context::{Ctx, Failure};
use super::validate;
use crate::protocol::{Request, Response, TenantInfo, TenantStatus};
use crate::snapshot::TenantLimits;
use crate::store::TreeName;

pub(crate) fn load(ctx: &Ctx<'_>, tenant: &str) -> Result<TenantInfo, Failure> {
    ctx.store
        .get::<TenantInfo>(TreeName::Tenants, tenant.as_bytes())?
        .ok_or_else(|| {
            Failure::not_found(format!(
                "tenant {} does not exist",
                validate::shorten(tenant)
            ))
        })
}

/// Loads a tenant that may still be changed (not terminated).
pub(crate) fn load_live(ctx: &Ctx<'_>, tenant: &str) -> Result<TenantInfo, Failure> {
    let info = load(ctx, tenant)?;
    if info.status == TenantStatus::Terminated {
        return Err(Failure::conflict(format!(
            "tenant {tenant} is terminated and cannot be changed"
        )));
    }
    Ok(info)
}

fn save(ctx: &mut Ctx<'_>, info: &TenantInfo) -> Result<(), Failure> {
    ctx.batch.put_tenant(
        TreeName::Tenants,
        &info.tenant,
        info.tenant.as_bytes(),
        info,
    )?;
    ctx.snapshot_changed = true;
    Ok(())
}

pub(crate) fn add(
    ctx: &mut Ctx<'_>,
    tenant: &str,
    business_name: &str,
    contact: &str,
    billing_ref: Option<&str>,
    limits: TenantLimits,
) -> Result<Response, Failure> {
    let tenant = validate::tenant_id(tenant)?;
    let business_name = validate::text("business_name", business_name, false)?;
    let contact = validate::text("contact", contact, false)?;
    let billing_ref = match billing_ref {
        Some(b) => Some(validate::text("billing_ref", b, true)?).filter(|b| !b.is_empty()),
        None => None,
    };
    validate::limits(&limits)?;
    if ctx
        .store
        .get::<TenantInfo>(TreeName::Tenants, tenant.as_bytes())?
        .is_some()
    {
        return Err(Failure::exists(format!("tenant {tenant} already exists")));
    }
    let info = TenantInfo {
        tenant: tenant.to_owned(),
        business_name,
        contact,
        billing_ref,
        status: TenantStatus::Active,
        limits,
        created_at: ctx.now,
        updated_at: ctx.now,
    };
    save(ctx, &info)?;
    ctx.detail = Some(
        json!({
            "business_name": info.business_name,
            "contact": info.contact,
            "billing_ref": info.billing_ref,
            "limits": info.limits,
        })
        .to_string(),
    );
    Ok(Response::Tenant(info))
}

pub(crate) fn list(ctx: &mut Ctx<'_>) -> Result<Response, Failure> {
    let tenants: Vec<TenantInfo> = ctx
        .store
        .scan::<TenantInfo>(TreeName::Tenants)?
        .into_iter()
        .map(|(_, t)| t)
        .collect();
    ctx.detail = Some(format!("{} tenants", tenants.len()));
    Ok(Response::Tenants { tenants })
}

pub(crate) fn show(ctx: &mut Ctx<'_>, tenant: &str) -> Result<Response, Failure> {
    Ok(Response::Tenant(load(ctx, tenant)?))
}

/// The fields `tenant.update` may change; `None` leaves a field as it is.
#[derive(Debug, Default)]
pub(crate) struct Changes {
    business_name: Option<String>,
    contact: Option<String>,
    billing_ref: Option<String>,
    messages_per_hour: Option<u32>,
    messages_per_day: Option<u32>,
    recipients_per_message: Option<u32>,
}

impl Changes {
    pub fn of(request: &Request) -> Changes {
        match request {
            Request::TenantUpdate {
                business_name,
                contact,
                billing_ref,
                messages_per_hour,
                messages_per_day,
                recipients_per_message,
                ..
            } => Changes {
                business_name: business_name.clone(),
                contact: contact.clone(),
                billing_ref: billing_ref.clone(),
                messages_per_hour: *messages_per_hour,
                messages_per_day: *messages_per_day,
                recipients_per_message: *recipients_per_message,
            },
            _ => Changes::default(),
        }
    }
}

/// Applies the given fields; the audit detail holds each changed field's old and
/// new value. An empty `billing_ref` clears it.
pub(crate) fn update(
    ctx: &mut Ctx<'_>,
    tenant: &str,
    changes: Changes,
) -> Result<Response, Failure> {
    let mut info = load_live(ctx, tenant)?;
    let mut diff = serde_json::Map::new();
    let mut note = |field: &str, old: serde_json::Value, new: serde_json::Value| {
        if old != new {
            diff.insert(field.into(), json!({ "old": old, "new": new }));
        }
    };
    if let Some(v) = &changes.business_name {
        let v = validate::text("business_name", v, false)?;
        note("business_name", json!(info.business_name), json!(v));
        info.business_name = v;
    }
    if let Some(v) = &changes.contact {
        let v = validate::text("contact", v, false)?;
        note("contact", json!(info.contact), json!(v));
        info.contact = v;
    }
    if let Some(v) = &changes.billing_ref {
        let v = Some(validate::text("billing_ref", v, true)?).filter(|b| !b.is_empty());
        note("billing_ref", json!(info.billing_ref), json!(v));
        info.billing_ref = v;
    }
    let mut limits = info.limits;
    for (field, new, slot) in [
        (
            "messages_per_hour",
            changes.messages_per_hour,
            &mut limits.messages_per_hour,
        ),
        (
            "messages_per_day",
            changes.messages_per_day,
            &mut limits.messages_per_day,
        ),
        (
            "recipients_per_message",
            changes.recipients_per_message,
            &mut limits.recipients_per_message,
        ),
    ] {
        if let Some(new) = new {
            note(field, json!(*slot), json!(new));
            *slot = new;
        }
    }
    validate::limits(&limits)?;
    info.limits = limits;
    if diff.is_empty() {
        return Err(Failure::invalid(
            "nothing to change: give at least one new value",
        ));
    }
    info.updated_at = ctx.now;
    save(ctx, &info)?;
    ctx.detail = Some(serde_json::Value::Object(diff).to_string());
    Ok(Response::Tenant(info))
}

fn set_status(
    ctx: &mut Ctx<'_>,
    tenant: &str,
    from: &[TenantStatus],
    to: TenantStatus,
) -> Result<Response, Failure> {
    let mut info = load(ctx, tenant)?;
    if !from.contains(&info.status) {
        let why = match info.status {
            TenantStatus::Terminated => "it is terminated, which is final",
            TenantStatus::Suspended => "it is already suspended",
            TenantStatus::Active => "it is not suspended",
        };
        return Err(Failure::conflict(format!(
            "tenant {tenant} cannot become {}: {why}",
            status_name(to)
        )));
    }
    ctx.detail = Some(format!(
        "status {} -> {}",
        status_name(info.status),
        status_name(to)
    ));
    info.status = to;
    info.updated_at = ctx.now;
    save(ctx, &info)?;
    Ok(Response::Tenant(info))
}

fn status_name(status: TenantStatus) -> &'static str {
    match status {
        TenantStatus::Active => "active",
        TenantStatus::Suspended => "suspended",
        TenantStatus::Terminated => "terminated",
    }
}

pub(crate) fn suspend(ctx: &mut Ctx<'_>, tenant: &str) -> Result<Response, Failure> {
    set_status(
        ctx,
        tenant,
        &[TenantStatus::Active],
        TenantStatus::Suspended,
    )
}

pub(crate) fn resume(ctx: &mut Ctx<'_>, tenant: &str) -> Result<Response, Failure> {
    set_status(
        ctx,
        tenant,
        &[TenantStatus::Suspended],
        TenantStatus::Active,
    )
}

pub(crate) fn terminate(ctx: &mut Ctx<'_>, tenant: &str) -> Result<Response, Failure> {
    set_status(
        ctx,
        tenant,
        &[TenantStatus::Active, TenantStatus::Suspended],
        TenantStatus::Terminated,
    )
}
