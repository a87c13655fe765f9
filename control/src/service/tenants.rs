//! Tenant operations: add, list, show, update, the status moves (active ⇄
//! suspended, anything → terminated, which is final and schedules the erasure), and
//! legal holds. An erased tenant's id is never used again.

use serde_json::json;

use super::context::{Ctx, Failure};
use super::validate;
use crate::records::{BillingRecord, ErasedTenant};
use crate::store::TreeName;
use way2mail_wire::protocol::{
    LegalHold, Request, Response, RetentionSettings, TenantInfo, TenantStatus, AUTO_SUPPRESS_RULES,
};
use way2mail_wire::snapshot::TenantLimits;

pub(crate) fn load(ctx: &Ctx<'_>, tenant: &str) -> Result<TenantInfo, Failure> {
    if let Some(info) = ctx
        .store
        .get::<TenantInfo>(TreeName::Tenants, tenant.as_bytes())?
    {
        return Ok(info);
    }
    match (erased(ctx, tenant)?, ctx.store.keyring().erasure(tenant)) {
        (Some(e), _) => Err(Failure::not_found(format!(
            "tenant {tenant} was erased at unix {} (receipt {})",
            e.erased_at, e.receipt
        ))),
        (None, Some(e)) => Err(Failure::not_found(format!(
            "tenant {tenant} was erased at unix {}",
            e.at_ms / 1000
        ))),
        (None, None) => Err(Failure::not_found(format!(
            "tenant {} does not exist",
            validate::shorten(tenant)
        ))),
    }
}

/// The erasure of `tenant`, if it was erased.
pub(crate) fn erased(ctx: &Ctx<'_>, tenant: &str) -> Result<Option<ErasedTenant>, Failure> {
    Ok(ctx
        .store
        .get::<ErasedTenant>(TreeName::Erased, tenant.as_bytes())?)
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

/// Stores the tenant (changed now) and moves the snapshot version.
pub(crate) fn save(ctx: &mut Ctx<'_>, info: &mut TenantInfo) -> Result<(), Failure> {
    info.updated_at = ctx.now;
    ctx.batch.put_tenant(
        TreeName::Tenants,
        &info.tenant,
        info.tenant.as_bytes(),
        &*info,
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
    if erased(ctx, tenant)?.is_some() || ctx.store.keyring().erasure(tenant).is_some() {
        return Err(Failure::conflict(format!(
            "tenant id {tenant} belonged to an erased tenant; ids are never reused, choose another"
        )));
    }
    let mut info = TenantInfo {
        tenant: tenant.to_owned(),
        business_name,
        contact,
        billing_ref,
        status: TenantStatus::Active,
        limits,
        created_at: ctx.now,
        updated_at: ctx.now,
        retention: RetentionSettings::default(),
        legal_hold: None,
        terminated_at: None,
        erase_after: None,
        list_unsubscribe: false,
        auto_suppress: Default::default(),
        sending_paused: None,
    };
    save(ctx, &mut info)?;
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
    list_unsubscribe: Option<bool>,
    auto_suppress: std::collections::BTreeMap<String, bool>,
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
                list_unsubscribe,
                auto_suppress,
                ..
            } => Changes {
                business_name: business_name.clone(),
                contact: contact.clone(),
                billing_ref: billing_ref.clone(),
                messages_per_hour: *messages_per_hour,
                messages_per_day: *messages_per_day,
                recipients_per_message: *recipients_per_message,
                list_unsubscribe: *list_unsubscribe,
                auto_suppress: auto_suppress.clone(),
            },
            _ => Changes::default(),
        }
    }
}

/// Applies the given fields; the audit detail holds each changed field's old and
/// new value (`auto_suppress.RULE` for each rule turned on or off). An empty
/// `billing_ref` clears it; an unknown rule name is `invalid`.
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
    if let Some(on) = changes.list_unsubscribe {
        note("list_unsubscribe", json!(info.list_unsubscribe), json!(on));
        info.list_unsubscribe = on;
    }
    for (name, on) in &changes.auto_suppress {
        let rule = name.trim().to_ascii_lowercase();
        let Some(old) = info.auto_suppress.get(&rule) else {
            return Err(Failure::invalid(format!(
                "unknown automatic suppression rule {:?}: the rules are {}",
                validate::shorten(name),
                AUTO_SUPPRESS_RULES.join(", ")
            )));
        };
        note(&format!("auto_suppress.{rule}"), json!(old), json!(*on));
        info.auto_suppress.set(&rule, *on);
    }
    if diff.is_empty() {
        return Err(Failure::invalid(
            "nothing to change: give at least one new value",
        ));
    }
    save(ctx, &mut info)?;
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
    if to == TenantStatus::Terminated {
        schedule_erasure(ctx, &mut info)?;
    }
    save(ctx, &mut info)?;
    Ok(Response::Tenant(info))
}

/// At termination: the erasure after the grace period, and the billing record that
/// outlives it for the account period.
fn schedule_erasure(ctx: &mut Ctx<'_>, info: &mut TenantInfo) -> Result<(), Failure> {
    let d = ctx.settings.retention;
    let account = info.retention.account_secs.unwrap_or(d.account_secs);
    info.terminated_at = Some(ctx.now);
    info.erase_after = Some(ctx.now.saturating_add(d.termination_grace_secs));
    let billing = billing_record(info, ctx.now, account);
    ctx.batch
        .put(TreeName::Billing, info.tenant.as_bytes(), &billing)?;
    if let Some(detail) = &mut ctx.detail {
        detail.push_str(&format!(
            "; erasure scheduled for unix {}, billing record kept until unix {}",
            info.erase_after.unwrap_or(0),
            billing.delete_after
        ));
    }
    Ok(())
}

/// The billing record of a tenant whose subscription ends at `ended`.
pub(crate) fn billing_record(info: &TenantInfo, ended: u64, account_secs: u64) -> BillingRecord {
    BillingRecord {
        tenant: info.tenant.clone(),
        business_name: info.business_name.clone(),
        billing_ref: info.billing_ref.clone(),
        subscribed_at: info.created_at,
        terminated_at: ended,
        delete_after: ended.saturating_add(account_secs),
    }
}

/// `tenant.hold`: places or lifts a legal hold (the reason is in the audit entry).
pub(crate) fn hold(ctx: &mut Ctx<'_>, tenant: &str, hold: bool) -> Result<Response, Failure> {
    let mut info = load(ctx, tenant)?;
    match (hold, &info.legal_hold) {
        (true, Some(h)) => {
            return Err(Failure::conflict(format!(
                "tenant {tenant} is under legal hold since unix {} ({})",
                h.since, h.reason
            )))
        }
        (false, None) => {
            return Err(Failure::conflict(format!(
                "tenant {tenant} is not under legal hold"
            )))
        }
        _ => {}
    }
    info.legal_hold = if hold {
        Some(LegalHold {
            since: ctx.now,
            by: ctx.who.actor.clone(),
            reason: ctx.reason.clone().unwrap_or_default(),
        })
    } else {
        None
    };
    ctx.detail = Some(if hold {
        "legal hold placed: nothing of the tenant is deleted until it is lifted".into()
    } else {
        "legal hold lifted".into()
    });
    save(ctx, &mut info)?;
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
