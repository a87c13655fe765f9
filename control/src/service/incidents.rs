//! The incident register: what happened, which data, the likely consequences and
//! the measures taken, which tenants are affected, and a record of every
//! notification sent to them.
//!
//! ```text
//!   open (INC-YYYY-NNNN, numbered per year) ─ add_tenant … ─ update … (old → new
//!   in the audit) ─ notify: an email per affected tenant not yet notified, through
//!   the MTA, each attempt recorded ─ close (resolution; no more tenants or emails)
//! ```
//!
//! `incident.notify` sends before the writer lock is taken ([`send_pending`]), so a
//! slow MTA delays only that request; [`notify`] then records what was sent under
//! the lock. Notify requests are serialized among themselves (`Service::run`) so
//! that two at once cannot both email the same tenant.

use serde_json::json;

use super::context::{Ctx, Failure};
use super::writer::Service;
use super::{tenants, validate};
use crate::notify::{self, incident::Letter};
use crate::records::META_INCIDENT_SEQ_PREFIX;
use crate::store::{Opened, Store, TreeName};
use way2mail_wire::protocol::{
    AuditOutcome, IncidentInfo, Notification, NotificationOutcome, Response,
};

/// How far in the future `detected_at` may lie (clock skew between hosts).
const DETECTED_AT_SLACK_SECS: u64 = 300;

/// `INC-2026-0001` from what an operator typed (` inc-2026-0001 `), or `invalid`.
fn normalize_id(id: &str) -> Result<String, Failure> {
    let id = id.trim().to_ascii_uppercase();
    let valid = id
        .strip_prefix("INC-")
        .and_then(|rest| rest.split_once('-'))
        .is_some_and(|(year, number)| {
            year.len() == 4
                && year.bytes().all(|b| b.is_ascii_digit())
                && (4..=12).contains(&number.len())
                && number.bytes().all(|b| b.is_ascii_digit())
        });
    if valid {
        Ok(id)
    } else {
        Err(Failure::invalid(format!(
            "{:?} is not an incident id (INC-2026-0001)",
            validate::shorten(&id)
        )))
    }
}

/// (year, number) of a well-formed id, for ordering.
fn order_key(id: &str) -> (u64, u64) {
    let mut parts = id.split('-').skip(1).map(|p| p.parse::<u64>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

/// Where a notification's sealed address belongs.
fn contact_aad(incident: &str, tenant: &str) -> Vec<u8> {
    format!("incident-contact:{incident}:{tenant}").into_bytes()
}

const SEALED: &str = "sealed:";
/// What a notification's address reads once its tenant was erased.
pub(crate) const ERASED_CONTACT: &str = "(erased with the tenant)";

/// Reads an incident, opening each notification's address (sealed with the
/// tenant's key, so that an erasure erases it from the register too).
fn read(store: &Store, id: &str) -> Result<Option<IncidentInfo>, crate::error::Error> {
    Ok(store
        .get::<IncidentInfo>(TreeName::Incidents, id.as_bytes())?
        .map(|i| opened(store, i)))
}

fn opened(store: &Store, mut info: IncidentInfo) -> IncidentInfo {
    for n in &mut info.notifications {
        if let Some(sealed) = n.contact.strip_prefix(SEALED) {
            n.contact = match store.open_field(&contact_aad(&info.id, &n.tenant), sealed) {
                Ok(Opened::Text(t)) => t,
                Ok(Opened::Erased) | Err(_) => ERASED_CONTACT.into(),
            };
        }
    }
    info
}

fn load(ctx: &Ctx<'_>, id: &str) -> Result<IncidentInfo, Failure> {
    let id = normalize_id(id)?;
    read(ctx.store, &id)?.ok_or_else(|| Failure::not_found(format!("incident {id} does not exist")))
}

fn load_open(ctx: &Ctx<'_>, id: &str, doing: &str) -> Result<IncidentInfo, Failure> {
    let info = load(ctx, id)?;
    if info.closed_at.is_some() {
        return Err(Failure::conflict(format!(
            "incident {} is closed: cannot {doing}",
            info.id
        )));
    }
    Ok(info)
}

fn save(ctx: &mut Ctx<'_>, info: &IncidentInfo) -> Result<(), Failure> {
    let mut stored = info.clone();
    for n in &mut stored.notifications {
        let erased =
            n.contact == ERASED_CONTACT || ctx.store.keyring().existing(&n.tenant).is_none();
        if !erased && !n.contact.starts_with(SEALED) {
            let sealed =
                ctx.store
                    .seal_field(&n.tenant, &contact_aad(&info.id, &n.tenant), &n.contact)?;
            n.contact = format!("{SEALED}{sealed}");
        }
    }
    ctx.batch
        .put(TreeName::Incidents, info.id.as_bytes(), &stored)?;
    Ok(())
}

/// The fields of `incident.open`.
pub(crate) struct Opening<'a> {
    pub title: &'a str,
    pub nature: &'a str,
    pub data_affected: &'a str,
    pub consequences: &'a str,
    pub measures: &'a str,
    pub detected_at: Option<u64>,
}

pub(crate) fn open(ctx: &mut Ctx<'_>, o: Opening<'_>) -> Result<Response, Failure> {
    let title = validate::text("title", o.title, false)?;
    let nature = validate::long_text("nature", o.nature)?;
    let data_affected = validate::long_text("data_affected", o.data_affected)?;
    let consequences = validate::long_text("consequences", o.consequences)?;
    let measures = validate::long_text("measures", o.measures)?;
    let detected_at = o.detected_at.unwrap_or(ctx.now);
    if detected_at > ctx.now + DETECTED_AT_SLACK_SECS {
        return Err(Failure::invalid("detected_at lies in the future"));
    }
    let year = way2mail_smtp::date::rfc3339(ctx.now)
        .get(..4)
        .unwrap_or("0000")
        .to_owned();
    let counter = format!("{META_INCIDENT_SEQ_PREFIX}{year}");
    let mut seq = ctx
        .store
        .get::<u64>(TreeName::Meta, counter.as_bytes())?
        .unwrap_or(0);
    let id = loop {
        seq += 1;
        let id = format!("INC-{year}-{seq:04}");
        if ctx
            .store
            .get::<IncidentInfo>(TreeName::Incidents, id.as_bytes())?
            .is_none()
        {
            break id;
        }
    };
    ctx.batch.put(TreeName::Meta, counter.into_bytes(), &seq)?;
    let info = IncidentInfo {
        id,
        title,
        nature,
        data_affected,
        consequences,
        measures,
        opened_at: ctx.now,
        opened_by: ctx.who.actor.clone(),
        detected_at,
        updated_at: ctx.now,
        closed_at: None,
        closed_by: None,
        resolution: None,
        tenants: Vec::new(),
        notifications: Vec::new(),
    };
    save(ctx, &info)?;
    ctx.detail = Some(format!(
        "opened {}: {}",
        info.id,
        json!({
            "title": info.title,
            "nature": info.nature,
            "data_affected": info.data_affected,
            "consequences": info.consequences,
            "measures": info.measures,
            "detected_at": info.detected_at,
        })
    ));
    Ok(Response::Incident(info))
}

pub(crate) fn add_tenant(ctx: &mut Ctx<'_>, id: &str, tenant: &str) -> Result<Response, Failure> {
    let mut info = load_open(ctx, id, "add tenants")?;
    let tenant = tenants::load(ctx, tenant)?.tenant;
    if info.tenants.contains(&tenant) {
        return Err(Failure::exists(format!(
            "tenant {tenant} is already affected by {}",
            info.id
        )));
    }
    info.tenants.push(tenant.clone());
    info.updated_at = ctx.now;
    save(ctx, &info)?;
    ctx.detail = Some(format!("{}: tenant {tenant} affected", info.id));
    Ok(Response::Incident(info))
}

/// The fields `incident.update` may change; `None` leaves one as it is.
#[derive(Debug, Default)]
pub(crate) struct Changes<'a> {
    pub title: Option<&'a str>,
    pub nature: Option<&'a str>,
    pub data_affected: Option<&'a str>,
    pub consequences: Option<&'a str>,
    pub measures: Option<&'a str>,
}

/// Applies the given fields; the audit detail holds each changed field's old and
/// new text.
pub(crate) fn update(
    ctx: &mut Ctx<'_>,
    id: &str,
    changes: Changes<'_>,
) -> Result<Response, Failure> {
    let mut info = load(ctx, id)?;
    let mut diff = serde_json::Map::new();
    if let Some(v) = changes.title {
        let v = validate::text("title", v, false)?;
        if v != info.title {
            diff.insert("title".into(), json!({"old": info.title, "new": v}));
            info.title = v;
        }
    }
    for (field, new, slot) in [
        ("nature", changes.nature, &mut info.nature),
        (
            "data_affected",
            changes.data_affected,
            &mut info.data_affected,
        ),
        ("consequences", changes.consequences, &mut info.consequences),
        ("measures", changes.measures, &mut info.measures),
    ] {
        if let Some(v) = new {
            let v = validate::long_text(field, v)?;
            if v != *slot {
                diff.insert(field.into(), json!({"old": *slot, "new": v}));
                *slot = v;
            }
        }
    }
    if diff.is_empty() {
        return Err(Failure::invalid(
            "nothing to change: give at least one new value",
        ));
    }
    info.updated_at = ctx.now;
    save(ctx, &info)?;
    ctx.detail = Some(format!("{}: {}", info.id, serde_json::Value::Object(diff)));
    Ok(Response::Incident(info))
}

pub(crate) fn close(ctx: &mut Ctx<'_>, id: &str, resolution: &str) -> Result<Response, Failure> {
    let mut info = load_open(ctx, id, "close it again")?;
    let resolution = validate::long_text("resolution", resolution)?;
    let unnotified: Vec<&str> = info
        .tenants
        .iter()
        .filter(|t| !info.notified(t))
        .map(String::as_str)
        .collect();
    let mut detail = format!(
        "closed {}: {}",
        info.id,
        json!({ "resolution": resolution })
    );
    if !unnotified.is_empty() {
        detail.push_str(&format!("; never notified: {}", unnotified.join(", ")));
    }
    info.closed_at = Some(ctx.now);
    info.closed_by = Some(ctx.who.actor.clone());
    info.resolution = Some(resolution);
    info.updated_at = ctx.now;
    save(ctx, &info)?;
    ctx.detail = Some(detail);
    Ok(Response::Incident(info))
}

pub(crate) fn list(ctx: &mut Ctx<'_>) -> Result<Response, Failure> {
    let mut incidents: Vec<IncidentInfo> = ctx
        .store
        .scan::<IncidentInfo>(TreeName::Incidents)?
        .into_iter()
        .map(|(_, i)| opened(ctx.store, i))
        .collect();
    incidents.sort_by_key(|i| order_key(&i.id));
    ctx.detail = Some(format!("{} incidents", incidents.len()));
    Ok(Response::Incidents { incidents })
}

pub(crate) fn show(ctx: &mut Ctx<'_>, id: &str) -> Result<Response, Failure> {
    let info = load(ctx, id)?;
    ctx.detail = Some(info.id.clone());
    Ok(Response::Incident(info))
}

/// Before the writer lock: emails every affected tenant of incident `id` that has
/// no successful notification yet (every affected tenant with `again`), and returns
/// the records to keep. Nothing is sent when the incident does not exist or is
/// closed; [`notify`] then answers why.
pub(crate) fn send_pending(
    service: &Service,
    actor: &str,
    id: &str,
    again: bool,
) -> Vec<Notification> {
    let Ok(id) = normalize_id(id) else {
        return Vec::new();
    };
    let store = service.store();
    let incident = match read(store, &id) {
        Ok(Some(incident)) if incident.closed_at.is_none() => incident,
        _ => return Vec::new(),
    };
    let settings = &service.settings().notify;
    let mut sent = Vec::new();
    for tenant in &incident.tenants {
        if !again && incident.notified(tenant) {
            continue;
        }
        let Ok(Some(info)) =
            store.get::<way2mail_wire::protocol::TenantInfo>(TreeName::Tenants, tenant.as_bytes())
        else {
            continue;
        };
        let message_id = notify::message_id(&incident.id, tenant, &settings.from);
        let base = Notification {
            tenant: tenant.clone(),
            contact: info.contact.clone(),
            sent_at: super::context::now_secs(),
            sent_by: actor.to_owned(),
            outcome: NotificationOutcome::Failed,
            reply: String::new(),
            message_id: message_id.clone(),
            queue_id: None,
        };
        let Some(to) = notify::contact_address(&info.contact) else {
            sent.push(Notification {
                reply: format!(
                    "not sent: the tenant's contact is not an email address; set one with \
                     `way2mail tenant update {tenant} --contact ADDRESS`"
                ),
                ..base
            });
            continue;
        };
        let message = notify::incident::compose(&Letter {
            incident: &incident,
            tenant,
            business_name: &info.business_name,
            to: &to,
            from: &settings.from,
            message_id: &message_id,
            date_ms: super::context::now_ms(),
        });
        let delivery = notify::send(settings, &to, &message);
        tracing::info!(
            incident = %incident.id,
            tenant = %tenant,
            ok = delivery.ok,
            "incident notification handed to the MTA"
        );
        sent.push(Notification {
            contact: to,
            sent_at: super::context::now_secs(),
            outcome: if delivery.ok {
                NotificationOutcome::Ok
            } else {
                NotificationOutcome::Failed
            },
            reply: delivery.reply,
            queue_id: delivery.queue_id,
            ..base
        });
    }
    sent
}

/// Records what [`send_pending`] sent: the incident keeps every attempt, and each
/// gets its own audit entry under its tenant (after the request's own entry).
pub(crate) fn notify(
    ctx: &mut Ctx<'_>,
    id: &str,
    again: bool,
    sent: Vec<Notification>,
) -> Result<Response, Failure> {
    // The emails are out: they are audited even if recording them fails.
    audit_sent(ctx, id, &sent);
    let mut info = load(ctx, id)?;
    if sent.is_empty() {
        if info.closed_at.is_some() {
            return Err(Failure::conflict(format!(
                "incident {} is closed: cannot notify",
                info.id
            )));
        }
        if info.tenants.is_empty() {
            return Err(Failure::conflict(format!(
                "incident {} has no affected tenants: add them first (incident add-tenant)",
                info.id
            )));
        }
        ctx.detail = Some(format!(
            "{}: nothing sent: every affected tenant has been notified{}",
            info.id,
            if again {
                ""
            } else {
                " (again: to send once more)"
            }
        ));
        return Ok(Response::IncidentNotified {
            incident: info,
            sent: Vec::new(),
        });
    }
    let summary: Vec<String> = sent
        .iter()
        .map(|n| {
            format!(
                "{} {}",
                n.tenant,
                match n.outcome {
                    NotificationOutcome::Ok => "ok",
                    NotificationOutcome::Failed => "failed",
                }
            )
        })
        .collect();
    ctx.detail = Some(format!(
        "{}: {} notifications{}: {}",
        info.id,
        sent.len(),
        if again { " (again)" } else { "" },
        summary.join(", ")
    ));
    info.notifications.extend(sent.iter().cloned());
    info.updated_at = ctx.now;
    save(ctx, &info)?;
    Ok(Response::IncidentNotified {
        incident: info,
        sent,
    })
}

/// One audit entry per email sent, under its tenant.
fn audit_sent(ctx: &mut Ctx<'_>, id: &str, sent: &[Notification]) {
    // Emails went out only for a well-formed id: the incident's own.
    let incident = normalize_id(id).unwrap_or_else(|_| id.to_owned());
    for n in sent {
        ctx.extra_audit.push(super::context::ExtraAudit {
            tenant: Some(n.tenant.clone()),
            outcome: match n.outcome {
                NotificationOutcome::Ok => AuditOutcome::Ok,
                NotificationOutcome::Failed => AuditOutcome::Failed,
            },
            detail: format!(
                "{incident}: notification to {} {}: {}; message-id <{}>",
                validate::shorten(&n.contact),
                match n.outcome {
                    NotificationOutcome::Ok => "handed to the MTA",
                    NotificationOutcome::Failed => "failed",
                },
                n.reply,
                n.message_id
            ),
        });
    }
}
