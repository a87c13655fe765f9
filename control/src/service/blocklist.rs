//! The blocklist monitor of the platform's sending addresses: every `[blocklists]
//! check_interval` (the daemon's blocklist thread) and on `reputation.check`, each
//! `[sending] ips` address is looked up in each `[blocklists] zones` zone
//! (`crate::blocklist`), and a listing that starts or ends is
//!
//! - a WARN (listed) or INFO (delisted) log line,
//! - an audit entry `blocklist.listed` / `blocklist.delisted` by `system:blocklist`,
//! - a letter to the platform's operators (`[notify] from`),
//! - an event in the history (the last [`MAX_HISTORY`]), and
//! - the gauge `way2mail_blocklist_listed{ip,zone}`.
//!
//! A lookup error is no listing: the pair keeps its state, and the error is counted
//! (`way2mail_blocklist_lookup_errors_total{zone}`) and shown by `reputation.show`.
//! The state is one record of the node (the meta tree, sealed with the node's key):
//! it holds no tenant data. A periodic check that changes nothing is not audited.

use serde::{Deserialize, Serialize};
use std::net::IpAddr;

use super::context::{now_ms, now_secs, Ctx, Failure, Identity};
use super::writer::Service;
use crate::blocklist::{self, Outcome};
use crate::error::Error;
use crate::notify;
use crate::settings::ServiceSettings;
use crate::store::{Batch, Store, TreeName};
use way2mail_wire::protocol::{
    BlocklistEvent, BlocklistListing, BlocklistLookupError, ErrorBody, ErrorCode, ReputationReport,
    Response,
};

/// The meta key of the monitor's state.
const STATE_KEY: &[u8] = b"blocklist.state";
/// Events kept in the history; older ones are dropped.
pub(crate) const MAX_HISTORY: usize = 1000;

/// What the store keeps between checks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct State {
    last_check: Option<u64>,
    listings: Vec<BlocklistListing>,
    lookup_errors: Vec<BlocklistLookupError>,
    history: Vec<BlocklistEvent>,
}

fn load(store: &Store) -> Result<State, Error> {
    Ok(store
        .get::<State>(TreeName::Meta, STATE_KEY)?
        .unwrap_or_default())
}

fn report(settings: &ServiceSettings, state: State) -> ReputationReport {
    let b = &settings.blocklists;
    ReputationReport {
        enabled: b.enabled,
        check_interval_secs: b.check_interval.as_secs(),
        zones: b.zones.clone(),
        ips: settings.sending.ips.iter().map(IpAddr::to_string).collect(),
        last_check: state.last_check,
        listings: state.listings,
        lookup_errors: state.lookup_errors,
        history: state.history,
    }
}

/// `reputation.show`.
pub(crate) fn show(ctx: &mut Ctx<'_>) -> Result<Response, Failure> {
    let state = load(ctx.store)?;
    ctx.public_detail = true;
    Ok(Response::Reputation(report(ctx.settings, state)))
}

/// A listing that started (`listed`) or ended, with the letter about it.
struct Transition {
    listed: bool,
    listing: BlocklistListing,
    letter: String,
}

/// The new state from the old one and this check's lookups, and what changed.
/// Listings of pairs no longer configured are dropped.
fn apply(before: &State, lookups: &[blocklist::Lookup], now: u64) -> (State, Vec<Transition>) {
    let mut after = State {
        last_check: Some(now),
        listings: Vec::new(),
        lookup_errors: Vec::new(),
        history: before.history.clone(),
    };
    let mut changes = Vec::new();
    for lookup in lookups {
        let ip = lookup.ip.to_string();
        let previous = before
            .listings
            .iter()
            .find(|l| l.ip == ip && l.zone == lookup.zone);
        match &lookup.outcome {
            Outcome::Listed { codes, reason } => {
                let listing = BlocklistListing {
                    ip: ip.clone(),
                    zone: lookup.zone.clone(),
                    since: previous.map_or(now, |p| p.since),
                    codes: codes.clone(),
                    reason: reason.clone(),
                    last_checked: now,
                };
                if previous.is_none() {
                    changes.push(Transition {
                        listed: true,
                        listing: listing.clone(),
                        letter: String::new(),
                    });
                }
                after.listings.push(listing);
            }
            Outcome::NotListed => {
                if let Some(p) = previous {
                    changes.push(Transition {
                        listed: false,
                        listing: p.clone(),
                        letter: String::new(),
                    });
                }
            }
            Outcome::Error(error) => {
                after.lookup_errors.push(BlocklistLookupError {
                    ip: ip.clone(),
                    zone: lookup.zone.clone(),
                    error: error.clone(),
                });
                if let Some(p) = previous {
                    after.listings.push(p.clone());
                }
            }
        }
    }
    for t in &changes {
        after.history.push(BlocklistEvent {
            at: now,
            ip: t.listing.ip.clone(),
            zone: t.listing.zone.clone(),
            event: if t.listed { "listed" } else { "delisted" }.into(),
            reason: t.listing.reason.clone(),
        });
    }
    let excess = after.history.len().saturating_sub(MAX_HISTORY);
    after.history.drain(..excess);
    (after, changes)
}

/// Writes to the operators about one change; returns what the audit entry says of it.
fn send_letter(service: &Service, t: &Transition, now: u64) -> String {
    let settings = &service.settings().notify;
    let message_id = notify::message_id(
        if t.listed { "blocklisted" } else { "delisted" },
        "platform",
        &settings.from,
    );
    let message = notify::blocklist::compose(&notify::blocklist::Change {
        listed: t.listed,
        ip: &t.listing.ip,
        zone: &t.listing.zone,
        codes: &t.listing.codes,
        reason: &t.listing.reason,
        since: t.listing.since,
        at: now,
        to: &settings.from,
        from: &settings.from,
        message_id: &message_id,
        date_ms: now_ms(),
    });
    let delivery = notify::send(settings, &settings.from, &message);
    if delivery.ok {
        format!(
            "letter to {} handed to the MTA (Message-ID <{message_id}>, {})",
            settings.from, delivery.reply
        )
    } else {
        tracing::error!(
            ip = %t.listing.ip,
            zone = %t.listing.zone,
            error = %delivery.reply,
            "the blocklist letter to the operators could not be handed to the MTA"
        );
        format!("letter to {} NOT sent: {}", settings.from, delivery.reply)
    }
}

fn put_state(batch: &mut Batch, state: &State) -> Result<(), Error> {
    batch.put(TreeName::Meta, STATE_KEY, state)
}

/// One check: the lookups and letters without the writer lock, then the state with
/// one audit entry per change (and, for `reputation.check`, the request's own).
/// `request`: the operator's `reputation.check` and its reason; `None` for the
/// periodic check.
fn check(
    service: &Service,
    request: Option<(&Identity, Option<String>)>,
) -> Result<ReputationReport, ErrorBody> {
    let _one = service
        .blocklist_lock
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let settings = service.settings();
    let ips = &settings.sending.ips;
    let zones = &settings.blocklists.zones;
    if ips.is_empty() || zones.is_empty() {
        let failure = Failure::new(
            ErrorCode::Conflict,
            if ips.is_empty() {
                "nothing to check: [sending] ips is empty"
            } else {
                "nothing to check: [blocklists] zones is empty"
            },
        );
        return match request {
            Some((who, reason)) => {
                service.locked(who, "reputation.check", None, reason, |_| Err(failure))?;
                unreachable_report()
            }
            None => Err(failure.body),
        };
    }
    let lookups = blocklist::look_up(&settings.dns, ips, zones);
    let now = now_secs();
    let before = load(service.store()).map_err(|e| Failure::from(e).body)?;
    let (after, mut changes) = apply(&before, &lookups, now);

    for lookup in &lookups {
        let ip = lookup.ip.to_string();
        match &lookup.outcome {
            Outcome::Listed { .. } => crate::metrics::blocklist_listed(&ip, &lookup.zone, true),
            Outcome::NotListed => crate::metrics::blocklist_listed(&ip, &lookup.zone, false),
            Outcome::Error(error) => {
                crate::metrics::blocklist_lookup_error(&lookup.zone);
                tracing::info!(%ip, zone = %lookup.zone, %error, "blocklist lookup failed (not a listing)");
            }
        }
    }
    crate::metrics::blocklist_checked(now);

    for t in &mut changes {
        let l = &t.listing;
        if t.listed {
            tracing::warn!(
                ip = %l.ip,
                zone = %l.zone,
                codes = %l.codes.join(","),
                reason = %l.reason,
                "sending address listed in a DNS blocklist"
            );
        } else {
            tracing::info!(
                ip = %l.ip,
                zone = %l.zone,
                since = l.since,
                "sending address no longer listed in a DNS blocklist"
            );
        }
        t.letter = send_letter(service, t, now);
    }

    let system = Identity::system("blocklist");
    for t in &changes {
        let l = &t.listing;
        let detail = if t.listed {
            let reason = if l.reason.is_empty() {
                "no reason given".to_owned()
            } else {
                l.reason.clone()
            };
            format!(
                "{} listed in {} ({}): {reason}; {}",
                l.ip,
                l.zone,
                l.codes.join(", "),
                t.letter
            )
        } else {
            format!(
                "{} no longer listed in {} (listed since {}); {}",
                l.ip, l.zone, l.since, t.letter
            )
        };
        let action = if t.listed {
            "blocklist.listed"
        } else {
            "blocklist.delisted"
        };
        service.locked(&system, action, None, None, |ctx| {
            put_state(&mut ctx.batch, &after)?;
            ctx.detail = Some(detail);
            ctx.public_detail = true;
            Ok(Response::Done)
        })?;
    }

    match request {
        Some((who, reason)) => {
            let summary = format!(
                "{} addresses in {} zones: {} listings ({} new, {} ended), {} lookup errors",
                ips.len(),
                zones.len(),
                after.listings.len(),
                changes.iter().filter(|t| t.listed).count(),
                changes.iter().filter(|t| !t.listed).count(),
                after.lookup_errors.len()
            );
            let answer = service.locked(who, "reputation.check", None, reason, |ctx| {
                put_state(&mut ctx.batch, &after)?;
                ctx.detail = Some(summary);
                ctx.public_detail = true;
                Ok(Response::Done)
            })?;
            debug_assert!(matches!(answer, Response::Done));
        }
        None if changes.is_empty() => {
            let mut batch = Batch::new();
            put_state(&mut batch, &after)
                .and_then(|()| service.commit_unaudited(batch))
                .map_err(|e| Failure::from(e).body)?;
        }
        None => {}
    }
    Ok(report(settings, after))
}

/// `locked` answered a failure with `Ok`: cannot happen, but answered as internal.
fn unreachable_report() -> Result<ReputationReport, ErrorBody> {
    Err(Failure::internal("the refused check was answered").body)
}

/// `reputation.check`.
pub(crate) fn run(
    service: &Service,
    who: &Identity,
    reason: Option<String>,
) -> Result<Response, ErrorBody> {
    check(service, Some((who, reason))).map(Response::Reputation)
}

impl Service {
    /// The periodic check of the daemon's blocklist thread (`system:blocklist`).
    pub fn blocklist_scheduled(&self) -> Result<ReputationReport, ErrorBody> {
        check(self, None)
    }

    /// Sets the blocklist metrics from the stored state (at start, before the first
    /// check): 1 for the listings kept, 0 for every other configured pair.
    pub fn blocklist_metrics(&self) {
        let settings = self.settings();
        let state = match load(self.store()) {
            Ok(state) => state,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the blocklist state for the metrics");
                State::default()
            }
        };
        for zone in &settings.blocklists.zones {
            crate::metrics::blocklist_zone(zone);
            for ip in &settings.sending.ips {
                let ip = ip.to_string();
                let listed = state.listings.iter().any(|l| l.ip == ip && &l.zone == zone);
                crate::metrics::blocklist_listed(&ip, zone, listed);
            }
        }
        if let Some(at) = state.last_check {
            crate::metrics::blocklist_checked(at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(ip: &str, zone: &str, outcome: Outcome) -> blocklist::Lookup {
        blocklist::Lookup {
            ip: ip.parse().expect("ip"),
            zone: zone.into(),
            outcome,
        }
    }

    fn listed(reason: &str) -> Outcome {
        Outcome::Listed {
            codes: vec!["127.0.0.2".into()],
            reason: reason.into(),
        }
    }

    #[test]
    fn listing_starts_stays_survives_errors_and_ends() {
        let ip = "192.0.2.10";
        let (s1, c1) = apply(
            &State::default(),
            &[lookup(ip, "a.example", listed("spam"))],
            100,
        );
        assert_eq!(c1.len(), 1);
        assert!(c1[0].listed);
        assert_eq!(s1.listings[0].since, 100);
        assert_eq!(s1.history.len(), 1);

        // Still listed: no change, `since` kept, `last_checked` moves.
        let (s2, c2) = apply(&s1, &[lookup(ip, "a.example", listed("spam 2"))], 200);
        assert!(c2.is_empty());
        assert_eq!(
            (s2.listings[0].since, s2.listings[0].last_checked),
            (100, 200)
        );
        assert_eq!(s2.listings[0].reason, "spam 2");

        // A lookup error is no delisting, and never a listing.
        let (s3, c3) = apply(
            &s2,
            &[
                lookup(ip, "a.example", Outcome::Error("timeout".into())),
                lookup(ip, "b.example", Outcome::Error("SERVFAIL".into())),
            ],
            300,
        );
        assert!(c3.is_empty());
        assert_eq!(s3.listings, s2.listings);
        assert_eq!(s3.lookup_errors.len(), 2);

        let (s4, c4) = apply(&s3, &[lookup(ip, "a.example", Outcome::NotListed)], 400);
        assert_eq!(c4.len(), 1);
        assert!(!c4[0].listed);
        assert_eq!(c4[0].listing.since, 100);
        assert!(s4.listings.is_empty());
        let events: Vec<&str> = s4.history.iter().map(|e| e.event.as_str()).collect();
        assert_eq!(events, ["listed", "delisted"]);
        assert_eq!(s4.last_check, Some(400));
    }

    #[test]
    fn history_is_bounded() {
        let ip = "192.0.2.10";
        let mut state = State::default();
        for i in 0..(MAX_HISTORY as u64 + 10) {
            let outcome = if i % 2 == 0 {
                listed("x")
            } else {
                Outcome::NotListed
            };
            state = apply(&state, &[lookup(ip, "a.example", outcome)], i).0;
        }
        assert_eq!(state.history.len(), MAX_HISTORY);
        assert_eq!(state.history[0].at, 10);
    }
}
