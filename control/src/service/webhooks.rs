//! Webhook endpoints: where the MTA posts a tenant's delivery events, each post
//! signed with the endpoint's secret. Control keeps the endpoints, sealed with the
//! tenant's key like its suppression list, and hands the enabled ones, secrets
//! included, to the MTA in the snapshot. The MTA posts and retries; when every
//! delivery to an endpoint failed for its whole retry period it says so
//! (`api.webhook_failing`), and control disables the endpoint and writes to the
//! tenant's contact.
//!
//! ```text
//!   add (operator, or an API key for its tenant) ─ URL and events checked ─ id,
//!   secret (in this answer only) ─ snapshot: enabled endpoints with secrets
//!   api.webhook_failing ─ notice (no writer lock: the letter, through the MTA)
//!                       └ failing (writer lock: disable, audit what was sent)
//!   enable (operator) ─ in the snapshot again
//! ```
//!
//! Control checks only the URL's form. Whether plain `http` or private addresses
//! may be posted to is the MTA's configuration, decided where it connects.

use std::net::Ipv6Addr;

use way2mail_seal::password::random_string;
use way2mail_smtp::date::rfc3339;
use way2mail_wire::protocol::{Response, TenantInfo, WebhookInfo, WEBHOOK_EVENTS};
use way2mail_wire::snapshot::SnapshotWebhook;

use super::context::{now_ms, now_secs, Ctx, Failure};
use super::writer::Service;
use super::{tenants, validate};
use crate::error::Error;
use crate::notify;
use crate::records::WebhookRecord;
use crate::store::{hex, webhook_key, webhook_prefix, Store, TreeName};

/// Endpoints a tenant may have, enabled or not: each event is posted once per
/// endpoint that wants it, so the count multiplies the MTA's work.
pub(crate) const MAX_ENDPOINTS: usize = 10;
/// Longest URL accepted, in characters (all ASCII).
const MAX_URL: usize = 2048;
/// How much of the MTA's last error goes into the reason and the letter.
const MAX_ERROR_CHARS: usize = 300;
/// Random alphanumeric characters of a signing secret (≈ 190 bits).
const SECRET_CHARS: usize = 32;

/// `url` checked for form (see the module doc), its scheme lower-cased.
fn url(text: &str) -> Result<String, Failure> {
    let text = text.trim();
    let bad = |why: &str| {
        Failure::invalid(format!(
            "invalid webhook URL {:?}: {why}",
            validate::shorten(text)
        ))
    };
    if text.chars().count() > MAX_URL {
        return Err(bad(&format!("longer than {MAX_URL} characters")));
    }
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("no spaces or control characters (percent-encode them)"));
    }
    if !text.is_ascii() {
        return Err(bad(
            "use ASCII: percent-encode other characters, and give international host \
             names in their xn-- form",
        ));
    }
    let scheme_end = text
        .find("://")
        .ok_or_else(|| bad("must start with https:// or http://"))?;
    let scheme = text[..scheme_end].to_ascii_lowercase();
    let rest = &text[scheme_end + 3..];
    if scheme != "https" && scheme != "http" {
        return Err(bad("must start with https:// or http://"));
    }
    if rest.contains('#') {
        return Err(bad("no fragment (#…): it is never sent to the server"));
    }
    let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
    if authority.contains('@') {
        return Err(bad(
            "no user name or password (user@host): the signature proves the sender",
        ));
    }
    host_and_port(authority).map_err(bad)?;
    Ok(format!("{scheme}://{rest}"))
}

/// `host`, `host:port`, `[ipv6]` or `[ipv6]:port`: a DNS name or an address, and a
/// port from 1 to 65535.
fn host_and_port(authority: &str) -> Result<(), &'static str> {
    let (host, port) = match authority.strip_prefix('[') {
        Some(inside) => {
            let (address, after) = inside
                .split_once(']')
                .ok_or("an IPv6 address needs its closing ]")?;
            address
                .parse::<Ipv6Addr>()
                .map_err(|_| "not an IPv6 address between [ and ]")?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or("only :port may follow ]")?),
            };
            (None, port)
        }
        None => match authority.rsplit_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(authority), None),
        },
    };
    if let Some(host) = host {
        if host.is_empty() {
            return Err("no host");
        }
        let name = host.strip_suffix('.').unwrap_or(host);
        let well_formed = name.len() <= 253
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !well_formed {
            return Err("the host must be a DNS name or an IP address");
        }
    }
    if let Some(port) = port {
        let number = (1..=5).contains(&port.len()) && port.bytes().all(|b| b.is_ascii_digit());
        if !number || port.parse::<u16>().map_or(true, |p| p == 0) {
            return Err("the port must be a number from 1 to 65535");
        }
    }
    Ok(())
}

/// The event names, lower-cased, each one of [`WEBHOOK_EVENTS`], sorted, once each.
fn events(names: &[String]) -> Result<Vec<String>, Failure> {
    let allowed = WEBHOOK_EVENTS.join(", ");
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let event = name.trim().to_ascii_lowercase();
        if !WEBHOOK_EVENTS.contains(&event.as_str()) {
            return Err(Failure::invalid(format!(
                "unknown webhook event {:?}: the events are {allowed}",
                validate::shorten(name)
            )));
        }
        out.push(event);
    }
    out.sort_unstable();
    out.dedup();
    if out.is_empty() {
        return Err(Failure::invalid(format!(
            "name at least one webhook event: {allowed}"
        )));
    }
    Ok(out)
}

/// Every endpoint of `tenant`, oldest first.
pub(crate) fn records(store: &Store, tenant: &str) -> Result<Vec<WebhookRecord>, Error> {
    let mut out: Vec<WebhookRecord> = store
        .scan_prefix::<WebhookRecord>(TreeName::Webhooks, &webhook_prefix(tenant))?
        .into_iter()
        .map(|(_, r)| r)
        .collect();
    out.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    Ok(out)
}

/// The tenant's enabled endpoints as the MTA posts to them, with their secrets.
pub(crate) fn snapshot_view(store: &Store, tenant: &str) -> Result<Vec<SnapshotWebhook>, Error> {
    Ok(records(store, tenant)?
        .iter()
        .filter(|r| r.disabled_at.is_none())
        .map(|r| SnapshotWebhook {
            id: r.id.clone(),
            url: r.url.clone(),
            events: r.events.clone(),
            secret: r.secret.clone(),
        })
        .collect())
}

/// Endpoint `id` of `tenant` with its store key, or `not_found`.
fn load(ctx: &Ctx<'_>, tenant: &str, id: &str) -> Result<(Vec<u8>, WebhookRecord), Failure> {
    let key = webhook_key(tenant, id.trim());
    match ctx.store.get::<WebhookRecord>(TreeName::Webhooks, &key)? {
        Some(record) => Ok((key, record)),
        None => Err(Failure::not_found(format!(
            "webhook {} of tenant {tenant} does not exist",
            validate::shorten(id)
        ))),
    }
}

pub(crate) fn add(
    ctx: &mut Ctx<'_>,
    tenant: &str,
    url_text: &str,
    event_names: &[String],
) -> Result<Response, Failure> {
    let info = tenants::load_live(ctx, tenant)?;
    let url = url(url_text)?;
    let events = events(event_names)?;
    let count = records(ctx.store, &info.tenant)?.len();
    if count >= MAX_ENDPOINTS {
        return Err(Failure::conflict(format!(
            "tenant {} has {count} webhook endpoints, the most allowed: remove one first",
            info.tenant
        )));
    }
    let mut id = [0u8; 8];
    aws_lc_rs::rand::fill(&mut id).map_err(|_| Failure::internal("random generator failed"))?;
    let id = format!("wh_{}", hex(&id));
    let key = webhook_key(&info.tenant, &id);
    if ctx
        .store
        .get::<WebhookRecord>(TreeName::Webhooks, &key)?
        .is_some()
    {
        // 2^64 ids: a collision is a broken random generator, not bad luck.
        return Err(Failure::internal(
            "generated webhook id collides; try again",
        ));
    }
    let record = WebhookRecord {
        id,
        url,
        events,
        secret: format!("whsec_{}", random_string(SECRET_CHARS)?.as_str()),
        created_at: ctx.now,
        // An API key's own endpoints name the key (api.rs sets the actor).
        created_by: ctx
            .actor_override
            .as_ref()
            .map_or_else(|| ctx.who.actor.clone(), |(actor, _)| actor.clone()),
        disabled_at: None,
        disabled_reason: None,
    };
    ctx.batch
        .put_tenant(TreeName::Webhooks, &info.tenant, key, &record)?;
    ctx.snapshot_changed = true;
    // Never the secret: the audit log outlives this answer.
    ctx.detail = Some(format!(
        "webhook {} added: {} ({})",
        record.id,
        record.url,
        record.events.join(", ")
    ));
    let mut shown = record.info();
    shown.secret = Some(record.secret.clone());
    Ok(Response::Webhooks {
        webhooks: vec![shown],
    })
}

/// Every endpoint of the tenant, never a secret.
pub(crate) fn list(ctx: &mut Ctx<'_>, tenant: &str) -> Result<Response, Failure> {
    let info = tenants::load(ctx, tenant)?;
    let webhooks: Vec<WebhookInfo> = records(ctx.store, &info.tenant)?
        .iter()
        .map(WebhookRecord::info)
        .collect();
    ctx.detail = Some(format!("{} webhook endpoints", webhooks.len()));
    Ok(Response::Webhooks { webhooks })
}

pub(crate) fn remove(ctx: &mut Ctx<'_>, tenant: &str, id: &str) -> Result<Response, Failure> {
    let info = tenants::load_live(ctx, tenant)?;
    let (key, record) = load(ctx, &info.tenant, id)?;
    ctx.batch.remove(TreeName::Webhooks, key);
    // A disabled endpoint is not in the snapshot.
    ctx.snapshot_changed = record.disabled_at.is_none();
    ctx.detail = Some(format!("webhook {} removed: {}", record.id, record.url));
    Ok(Response::Done)
}

/// Enables a disabled endpoint again (enabled already is a success too); answers
/// the endpoint.
pub(crate) fn enable(ctx: &mut Ctx<'_>, tenant: &str, id: &str) -> Result<Response, Failure> {
    let info = tenants::load_live(ctx, tenant)?;
    let (key, mut record) = load(ctx, &info.tenant, id)?;
    match (record.disabled_at.take(), record.disabled_reason.take()) {
        (None, _) => {
            ctx.detail = Some(format!("webhook {} is enabled already", record.id));
        }
        (Some(since), reason) => {
            ctx.batch
                .put_tenant(TreeName::Webhooks, &info.tenant, key, &record)?;
            ctx.snapshot_changed = true;
            ctx.detail = Some(format!(
                "webhook {} enabled: {} (disabled since {}: {})",
                record.id,
                record.url,
                rfc3339(since),
                reason.as_deref().unwrap_or("no reason recorded")
            ));
        }
    }
    Ok(Response::Webhooks {
        webhooks: vec![record.info()],
    })
}

/// What the MTA reports in `api.webhook_failing`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Report<'a> {
    pub tenant: &'a str,
    pub id: &'a str,
    /// Unix seconds.
    pub failing_since: u64,
    pub last_error: &'a str,
}

impl Report<'_> {
    fn key(&self) -> Vec<u8> {
        webhook_key(self.tenant, self.id.trim())
    }

    /// The MTA's error on one line, at most [`MAX_ERROR_CHARS`] characters.
    fn error(&self) -> String {
        let line: String = self
            .last_error
            .trim()
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let cut = line.char_indices().nth(MAX_ERROR_CHARS).map(|(at, _)| at);
        match cut {
            _ if line.is_empty() => "no error reported".into(),
            Some(at) => format!("{}…", &line[..at]),
            None => line,
        }
    }

    /// The endpoint's `disabled_reason`.
    fn reason(&self) -> String {
        format!(
            "deliveries failed since {}: {}",
            rfc3339(self.failing_since),
            self.error()
        )
    }
}

/// What came of writing to the tenant's contact about a disabled endpoint.
#[derive(Debug)]
pub(crate) enum Notice {
    /// No letter: the endpoint is unknown or disabled already.
    Unneeded,
    /// No letter, and why.
    NotSent(String),
    /// The letter, handed to the MTA or not.
    Sent {
        to: String,
        message_id: String,
        delivery: notify::Delivery,
    },
}

impl Notice {
    /// For the audit entry.
    fn describe(&self) -> Option<String> {
        match self {
            Notice::Unneeded => None,
            Notice::NotSent(why) => Some(format!("the contact was not told: {why}")),
            Notice::Sent {
                to,
                message_id,
                delivery,
            } => Some(format!(
                "letter to {} {}: {}; message-id <{message_id}>",
                validate::shorten(to),
                if delivery.ok {
                    "handed to the MTA"
                } else {
                    "failed"
                },
                delivery.reply
            )),
        }
    }
}

/// Before the writer lock: writes to the tenant's contact that endpoint
/// `report.id` is being disabled, if it is enabled now. The caller holds the
/// service's notify lock until [`failing`] has recorded the outcome, so that a
/// report made twice sends one letter.
pub(crate) fn notice(service: &Service, report: &Report<'_>) -> Notice {
    let store = service.store();
    let record = match store.get::<WebhookRecord>(TreeName::Webhooks, &report.key()) {
        Ok(Some(record)) if record.disabled_at.is_none() => record,
        _ => return Notice::Unneeded,
    };
    let info = match store.get::<TenantInfo>(TreeName::Tenants, report.tenant.as_bytes()) {
        Ok(Some(info)) => info,
        Ok(None) => return Notice::NotSent("the tenant's record is gone".into()),
        Err(e) => return Notice::NotSent(format!("the tenant's record does not read: {e}")),
    };
    let Some(to) = notify::contact_address(&info.contact) else {
        return Notice::NotSent(format!(
            "the tenant's contact is not an email address; set one with \
             `way2mail tenant update {} --contact ADDRESS`",
            info.tenant
        ));
    };
    let settings = &service.settings().notify;
    let message_id = notify::message_id(&record.id, &info.tenant, &settings.from);
    let message = notify::webhook::compose(&notify::webhook::Disabled {
        tenant: &info.tenant,
        business_name: &info.business_name,
        endpoint: &record.id,
        url: &record.url,
        failing_since: report.failing_since,
        disabled_at: now_secs(),
        last_error: &report.error(),
        to: &to,
        from: &settings.from,
        message_id: &message_id,
        date_ms: now_ms(),
    });
    let delivery = notify::send(settings, &to, &message);
    tracing::info!(
        tenant = %info.tenant,
        webhook = %record.id,
        ok = delivery.ok,
        "webhook disabled: letter handed to the MTA"
    );
    Notice::Sent {
        to,
        message_id,
        delivery,
    }
}

/// `api.webhook_failing`, under the writer lock: disables the endpoint if it is
/// enabled, and records what [`notice`] sent. Unknown or disabled already is a
/// success (the MTA may report twice); so is a letter that could not be sent.
pub(crate) fn failing(
    ctx: &mut Ctx<'_>,
    report: &Report<'_>,
    notice: Notice,
) -> Result<Response, Failure> {
    let told = notice.describe();
    let key = report.key();
    let enabled = ctx
        .store
        .get::<WebhookRecord>(TreeName::Webhooks, &key)?
        .filter(|r| r.disabled_at.is_none());
    let Some(mut record) = enabled else {
        let mut detail = format!(
            "webhook {}: unknown or disabled already, nothing to do",
            validate::shorten(report.id)
        );
        if let Some(told) = told {
            detail = format!("{detail}; {told}");
        }
        ctx.detail = Some(detail);
        return Ok(Response::Done);
    };
    let reason = report.reason();
    record.disabled_at = Some(ctx.now);
    record.disabled_reason = Some(reason.clone());
    ctx.batch
        .put_tenant(TreeName::Webhooks, report.tenant, key, &record)?;
    ctx.snapshot_changed = true;
    ctx.detail = Some(format!(
        "webhook {} disabled: {}; {reason}; {}",
        record.id,
        record.url,
        told.unwrap_or_else(|| "the contact was not told: enabled while the report ran".into())
    ));
    Ok(Response::Done)
}
