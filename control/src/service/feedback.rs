//! The feedback loop from the MTA's delivery log to a tenant's policy: hard
//! signals about an address put it on the tenant's suppression list
//! (`api.auto_suppress`), and a tenant whose rolling bounce or complaint rate
//! crossed a `[reputation]` threshold has its sending paused
//! (`api.reputation_pause`) until an operator resumes it
//! (`tenant.resume_sending`). Both reports come from the MTA's service user only.
//!
//! ```text
//!   api.auto_suppress ─ rule on for the tenant? ─ invalid_recipient, complaint:
//!   │                                              on the list (reason, source)
//!   │                                           └ bad_domain: first report → a
//!   │                                              candidate (suppression_candidates);
//!   │                                              a confirming second → on the list
//!   api.reputation_pause ─ letters (no writer lock; the notify lock held) to the
//!                          operators and the tenant's contact ─ pause (writer lock):
//!                          sending_paused in the tenant and the snapshot
//!   tenant.resume_sending ─ pause lifted (an operator, audited with the reason)
//! ```
//!
//! A tenant may opt out of each rule (`tenant.update` `auto_suppress`); an
//! opted-out report changes nothing and says so in the audit log. Every answer to
//! the MTA is `done` once the request is well-formed: the audit entry says what was
//! decided.

use way2mail_smtp::date::rfc3339;
use way2mail_wire::protocol::{ReputationRates, Response, SendingPause, TenantInfo, TenantStatus};

use super::context::{now_ms, now_secs, Ctx, Failure};
use super::writer::Service;
use super::{suppression, tenants, validate};
use crate::notify;
use crate::records::SuppressionCandidate;
use crate::store::TreeName;

/// The rules the MTA reports under `api.auto_suppress` (`unsubscribe` comes as
/// `api.unsubscribe`).
pub(crate) const REPORTED_RULES: [&str; 3] = ["invalid_recipient", "bad_domain", "complaint"];
/// `added_by` of an automatic entry.
pub(crate) const ADDED_BY: &str = "auto-suppress";
/// The thresholds the MTA may report as crossed.
const THRESHOLDS: [&str; 2] = ["bounce_rate", "complaint_rate"];

/// What the MTA reports in `api.auto_suppress`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Signal<'a> {
    pub tenant: &'a str,
    pub address: &'a str,
    pub rule: &'a str,
    pub source: &'a str,
}

/// `api.auto_suppress` (see the module doc). `invalid` for a rule the MTA may not
/// report, a malformed address or source; `not_found` for an unknown tenant;
/// otherwise `done`, whatever was decided.
pub(crate) fn auto_suppress(ctx: &mut Ctx<'_>, signal: &Signal<'_>) -> Result<Response, Failure> {
    let rule = signal.rule.trim();
    if !REPORTED_RULES.contains(&rule) {
        return Err(Failure::invalid(format!(
            "unknown automatic suppression rule {:?}: the rules reported are {}",
            validate::shorten(signal.rule),
            REPORTED_RULES.join(", ")
        )));
    }
    let addr = suppression::address(signal.address)?;
    let source = validate::text("source", signal.source, false)?;
    let info = tenants::load(ctx, signal.tenant)?;
    let what = format!("{rule} for {addr} ({source})");
    if info.status == TenantStatus::Terminated {
        ctx.detail = Some(format!("{what}: the tenant is terminated, nothing added"));
        return Ok(Response::Done);
    }
    if info.auto_suppress.get(rule) != Some(true) {
        ctx.detail = Some(format!(
            "{what}: not suppressed, the tenant turned the {rule} rule off"
        ));
        return Ok(Response::Done);
    }
    let key = ctx.store.suppression_key(&info.tenant, &addr)?;
    let candidate = ctx
        .store
        .get::<SuppressionCandidate>(TreeName::SuppressionCandidates, &key)?;
    if suppression::contains(ctx, &info.tenant, &addr)? {
        if candidate.is_some() {
            ctx.batch.remove(TreeName::SuppressionCandidates, key);
        }
        ctx.detail = Some(format!("{what}: already suppressed"));
        return Ok(Response::Done);
    }
    let note = if rule == "bad_domain" {
        match candidate.filter(|c| !c.expired(ctx.now)) {
            None => {
                let first = SuppressionCandidate {
                    address: addr.clone(),
                    rule: rule.to_owned(),
                    first_source: source.clone(),
                    first_at: ctx.now,
                };
                ctx.batch
                    .put_tenant(TreeName::SuppressionCandidates, &info.tenant, key, &first)?;
                ctx.detail = Some(format!(
                    "{what}: first failure, kept as a candidate; a second one within {} \
                     suppresses the address",
                    way2mail_daemon::duration::format(SuppressionCandidate::MAX_AGE_SECS)
                ));
                return Ok(Response::Done);
            }
            Some(c)
                if c.first_source == source
                    && ctx.now
                        < c.first_at
                            .saturating_add(SuppressionCandidate::SAME_SOURCE_AFTER_SECS) =>
            {
                ctx.detail = Some(format!(
                    "{what}: the first failure (at {}) reported again, still waiting for a \
                     second",
                    rfc3339(c.first_at)
                ));
                return Ok(Response::Done);
            }
            Some(c) => {
                ctx.batch.remove(TreeName::SuppressionCandidates, key);
                format!(
                    "automatic: bad_domain (confirmed; first failure {} at {})",
                    c.first_source,
                    rfc3339(c.first_at)
                )
            }
        }
    } else {
        if candidate.is_some() {
            ctx.batch.remove(TreeName::SuppressionCandidates, key);
        }
        format!("automatic: {rule}")
    };
    // The note is ours, but a source is the MTA's text: keep it within the limit.
    let note: String = note.chars().take(200).collect();
    let entry = suppression::insert(
        ctx,
        &info.tenant,
        addr,
        suppression::Origin {
            added_by: ADDED_BY.into(),
            note: Some(note),
            reason: Some(rule),
            source: Some(&source),
        },
    )?;
    ctx.detail = Some(format!(
        "{what}: suppressed {} ({})",
        entry.address,
        entry.note.as_deref().unwrap_or("")
    ));
    Ok(Response::Done)
}

/// The reported rates, or `invalid`.
fn check_rates(rates: &ReputationRates) -> Result<(), Failure> {
    if !THRESHOLDS.contains(&rates.crossed.as_str()) {
        return Err(Failure::invalid(format!(
            "unknown threshold {:?}: the thresholds are {}",
            validate::shorten(&rates.crossed),
            THRESHOLDS.join(", ")
        )));
    }
    if rates.window_secs == 0 || rates.threshold_ppm == 0 || rates.threshold_ppm > 1_000_000 {
        return Err(Failure::invalid(
            "window_secs must be at least 1 and threshold_ppm 1 to 1000000",
        ));
    }
    Ok(())
}

/// One letter about a pause: to whom, and what came of it.
#[derive(Debug)]
pub(crate) struct Letter {
    /// `operators` or `contact`.
    pub to_whom: &'static str,
    pub outcome: Outcome,
}

#[derive(Debug)]
pub(crate) enum Outcome {
    NotSent(String),
    Sent {
        to: String,
        message_id: String,
        delivery: notify::Delivery,
    },
}

impl Letter {
    /// For the audit entry.
    fn describe(&self) -> String {
        match &self.outcome {
            Outcome::NotSent(why) => format!("the {} were not told: {why}", self.to_whom),
            Outcome::Sent {
                to,
                message_id,
                delivery,
            } => format!(
                "letter to the {} ({}) {}: {}; message-id <{message_id}>",
                self.to_whom,
                validate::shorten(to),
                if delivery.ok {
                    "handed to the MTA"
                } else {
                    "failed"
                },
                delivery.reply
            ),
        }
    }
}

/// Before the writer lock: when `tenant` exists, is not terminated and is not
/// paused yet, writes to the operators (`[notify] from`) and to the tenant's
/// contact that its sending is being paused. The caller holds the service's notify
/// lock until [`pause`] has recorded the outcome, so a report made twice sends the
/// letters once.
pub(crate) fn pause_letters(
    service: &Service,
    tenant: &str,
    rates: &ReputationRates,
) -> Vec<Letter> {
    if check_rates(rates).is_err() {
        return Vec::new();
    }
    let info = match service
        .store()
        .get::<TenantInfo>(TreeName::Tenants, tenant.as_bytes())
    {
        Ok(Some(info))
            if info.sending_paused.is_none() && info.status != TenantStatus::Terminated =>
        {
            info
        }
        _ => return Vec::new(),
    };
    let settings = &service.settings().notify;
    let since = now_secs();
    let mut letters = Vec::new();
    let mut send = |to_whom: &'static str, audience, to: String| {
        let message_id = notify::message_id("paused", &info.tenant, &settings.from);
        let message = notify::reputation::compose(&notify::reputation::Paused {
            audience,
            tenant: &info.tenant,
            business_name: &info.business_name,
            rates,
            since,
            to: &to,
            from: &settings.from,
            message_id: &message_id,
            date_ms: now_ms(),
        });
        let delivery = notify::send(settings, &to, &message);
        tracing::info!(
            tenant = %info.tenant,
            to = to_whom,
            ok = delivery.ok,
            "sending paused: letter handed to the MTA"
        );
        letters.push(Letter {
            to_whom,
            outcome: Outcome::Sent {
                to,
                message_id,
                delivery,
            },
        });
    };
    send(
        "operators",
        notify::reputation::Audience::Operators,
        settings.from.clone(),
    );
    match notify::contact_address(&info.contact) {
        Some(to) => send("contact", notify::reputation::Audience::Tenant, to),
        None => letters.push(Letter {
            to_whom: "contact",
            outcome: Outcome::NotSent(format!(
                "the tenant's contact is not an email address; set one with \
                 `way2mail tenant update {} --contact ADDRESS`",
                info.tenant
            )),
        }),
    }
    letters
}

/// `api.reputation_pause`, under the writer lock: pauses the tenant's sending
/// unless it is paused already (or terminated), and records what
/// [`pause_letters`] sent. `done` either way.
pub(crate) fn pause(
    ctx: &mut Ctx<'_>,
    tenant: &str,
    rates: &ReputationRates,
    letters: Vec<Letter>,
) -> Result<Response, Failure> {
    check_rates(rates)?;
    let mut info = tenants::load(ctx, tenant)?;
    let told: Vec<String> = letters.iter().map(Letter::describe).collect();
    let with_letters = |detail: String| {
        if told.is_empty() {
            detail
        } else {
            format!("{detail}; {}", told.join("; "))
        }
    };
    let summary = notify::reputation::summary(rates);
    if let Some(p) = &info.sending_paused {
        ctx.detail = Some(with_letters(format!(
            "{summary}: sending paused already since {}, nothing to do",
            rfc3339(p.since)
        )));
        return Ok(Response::Done);
    }
    if info.status == TenantStatus::Terminated {
        ctx.detail = Some(with_letters(format!(
            "{summary}: the tenant is terminated, nothing to pause"
        )));
        return Ok(Response::Done);
    }
    info.sending_paused = Some(SendingPause {
        since: ctx.now,
        rates: rates.clone(),
    });
    tenants::save(ctx, &mut info)?;
    let detail = format!("sending paused: {summary}");
    ctx.detail = Some(if told.is_empty() {
        format!("{detail}; no letters: the tenant changed while the report ran")
    } else {
        with_letters(detail)
    });
    Ok(Response::Done)
}

/// `tenant.resume_sending`: lifts the reputation guard's pause; `conflict` when the
/// tenant's sending is not paused (or it is terminated).
pub(crate) fn resume_sending(ctx: &mut Ctx<'_>, tenant: &str) -> Result<Response, Failure> {
    let mut info = tenants::load_live(ctx, tenant)?;
    let Some(pause) = info.sending_paused.take() else {
        return Err(Failure::conflict(format!(
            "the sending of tenant {} is not paused",
            info.tenant
        )));
    };
    tenants::save(ctx, &mut info)?;
    ctx.detail = Some(format!(
        "sending resumed; it was paused since {}: {}",
        rfc3339(pause.since),
        notify::reputation::summary(&pause.rates)
    ));
    Ok(Response::Tenant(info))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_known_thresholds_and_sane_numbers() {
        let mut r = ReputationRates {
            window_secs: 86_400,
            accepted: 10,
            hard_bounces: 1,
            complaints: 0,
            crossed: "bounce_rate".into(),
            threshold_ppm: 50_000,
        };
        assert!(check_rates(&r).is_ok());
        r.crossed = "open_rate".into();
        assert!(check_rates(&r).is_err());
        r.crossed = "complaint_rate".into();
        r.threshold_ppm = 0;
        assert!(check_rates(&r).is_err());
        r.threshold_ppm = 1_000_001;
        assert!(check_rates(&r).is_err());
    }

    #[test]
    fn the_reported_rules_are_rules() {
        let rules = way2mail_wire::protocol::AUTO_SUPPRESS_RULES;
        for rule in REPORTED_RULES {
            assert!(rules.contains(&rule), "{rule}");
        }
        assert!(!REPORTED_RULES.contains(&"unsubscribe"));
    }
}
