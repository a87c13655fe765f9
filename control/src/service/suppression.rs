//! Suppression lists: addresses a tenant's mail must not go to (unsubscribed, known
//! bad). Each entry is sealed with the tenant's key under a blind-index key, and
//! the MTA receives only SHA-256 digests of the addresses in its snapshot, which it
//! checks at `RCPT TO`. Operators and API keys add entries here; the MTA's reports
//! add them automatically (`feedback.rs`), with the rule (`reason`) and the
//! delivery log event (`source`) that caused them.

use super::context::{Ctx, Failure};
use super::{tenants, validate};
use crate::store::{suppression_prefix, TreeName};
use way2mail_wire::protocol::{Response, SuppressionEntry};

/// Longest address accepted (RFC 5321 path limit).
const MAX_ADDRESS: usize = 254;

/// A well-formed address, trimmed and lower-cased, or `invalid`.
pub(crate) fn address(text: &str) -> Result<String, Failure> {
    let a = text.trim().to_lowercase();
    let well_formed = a.len() <= MAX_ADDRESS
        && a.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && !domain.is_empty() && !domain.contains('@')
        })
        && !a
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "<>\"".contains(c));
    if well_formed {
        Ok(a)
    } else {
        Err(Failure::invalid(format!(
            "{:?} is not an email address",
            validate::shorten(text)
        )))
    }
}

/// Every entry of a tenant's list, in key order.
pub(crate) fn entries(ctx: &Ctx<'_>, tenant: &str) -> Result<Vec<SuppressionEntry>, Failure> {
    let mut out: Vec<SuppressionEntry> = ctx
        .store
        .scan_prefix::<SuppressionEntry>(TreeName::Suppression, &suppression_prefix(tenant))?
        .into_iter()
        .map(|(_, e)| e)
        .collect();
    out.sort_by(|a, b| a.address.cmp(&b.address));
    Ok(out)
}

/// How a new entry came: who added it, its note, and for automatic additions the
/// rule and the event behind it.
#[derive(Debug, Clone)]
pub(crate) struct Origin<'a> {
    pub added_by: String,
    pub note: Option<String>,
    /// One of `AUTO_SUPPRESS_RULES`; `None` for an operator's or an API key's entry.
    pub reason: Option<&'a str>,
    pub source: Option<&'a str>,
}

/// Whether `addr` (checked) is on `tenant`'s list.
pub(crate) fn contains(ctx: &Ctx<'_>, tenant: &str, addr: &str) -> Result<bool, Failure> {
    let key = ctx.store.suppression_key(tenant, addr)?;
    Ok(ctx
        .store
        .get::<SuppressionEntry>(TreeName::Suppression, &key)?
        .is_some())
}

/// Puts `addr` (checked) on `tenant`'s list (the tenant loaded and live);
/// `already_exists` when it is there. Notes the change for the snapshot and the
/// audit detail.
pub(crate) fn insert(
    ctx: &mut Ctx<'_>,
    tenant: &str,
    addr: String,
    origin: Origin<'_>,
) -> Result<SuppressionEntry, Failure> {
    let key = ctx.store.suppression_key(tenant, &addr)?;
    if ctx
        .store
        .get::<SuppressionEntry>(TreeName::Suppression, &key)?
        .is_some()
    {
        return Err(Failure::exists(format!(
            "{addr} is already on the suppression list of {tenant}"
        )));
    }
    let entry = SuppressionEntry {
        address: addr,
        note: origin.note,
        added_at: ctx.now,
        added_by: origin.added_by,
        reason: origin.reason.map(str::to_owned),
        source: origin.source.map(str::to_owned),
    };
    ctx.batch
        .put_tenant(TreeName::Suppression, tenant, key, &entry)?;
    ctx.snapshot_changed = true;
    ctx.detail = Some(format!("suppressed {}", entry.address));
    Ok(entry)
}

pub(crate) fn add(
    ctx: &mut Ctx<'_>,
    tenant: &str,
    addr: &str,
    note: Option<&str>,
) -> Result<Response, Failure> {
    let info = tenants::load_live(ctx, tenant)?;
    let addr = address(addr)?;
    let note = match note {
        Some(n) => Some(validate::text("note", n, true)?).filter(|n| !n.is_empty()),
        None => None,
    };
    let origin = Origin {
        // An API key's own additions name the key (api.rs sets the actor).
        added_by: ctx
            .actor_override
            .as_ref()
            .map_or_else(|| ctx.who.actor.clone(), |(actor, _)| actor.clone()),
        note,
        reason: None,
        source: None,
    };
    let entry = insert(ctx, &info.tenant, addr, origin)?;
    Ok(Response::Suppressions {
        entries: vec![entry],
    })
}

pub(crate) fn list(ctx: &mut Ctx<'_>, tenant: &str) -> Result<Response, Failure> {
    let info = tenants::load(ctx, tenant)?;
    let entries = entries(ctx, &info.tenant)?;
    ctx.detail = Some(format!("{} suppressed addresses", entries.len()));
    Ok(Response::Suppressions { entries })
}

pub(crate) fn remove(ctx: &mut Ctx<'_>, tenant: &str, addr: &str) -> Result<Response, Failure> {
    let info = tenants::load_live(ctx, tenant)?;
    let addr = address(addr)?;
    let key = ctx.store.suppression_key(&info.tenant, &addr)?;
    if ctx
        .store
        .get::<SuppressionEntry>(TreeName::Suppression, &key)?
        .is_none()
    {
        return Err(Failure::not_found(format!(
            "{addr} is not on the suppression list of {tenant}"
        )));
    }
    ctx.batch.remove(TreeName::Suppression, key);
    ctx.snapshot_changed = true;
    ctx.detail = Some(format!("no longer suppressed: {addr}"));
    Ok(Response::Done)
}
