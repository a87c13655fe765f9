//! DNS blocklists on inbound mail (`[inbound] dnsbl_zones`): a client of the mx
//! listener outside the trusted networks is looked up in each zone when it
//! connects, before the greeting, and a listed one has its mail refused with
//! `554 5.7.1` naming the zone and its TXT reason, at `MAIL FROM` or at every
//! `RCPT TO` but postmaster (`[inbound] dnsbl_refuse_at`; the smtp crate's
//! `Blocked`).
//!
//! ```text
//!   connect ─ mx, zones set, not trusted? ─ cache (per address, dnsbl_cache_secs)
//!             └ miss: every zone at once: A <reversed address>.<zone>
//!                 127.0.0.2–127.255.255.254 (not 127.255.255.x: a zone's own
//!                 error codes) → listed; TXT at the same name is the reason
//!                 NXDOMAIN, no answer → not listed
//!                 timeout, SERVFAIL → not listed, not cached (counted)
//! ```
//!
//! A lookup error is never a listing: a blocklist that does not answer must not
//! stop mail. The lookups share the session's deadline budget: they are bounded
//! by `[dns] timeout_ms × attempts`.
//!
//! The cache is shared by the cores, bounded at [`CACHE_MAX`] addresses (past it,
//! expired entries are dropped, then the oldest half), so its memory does not follow
//! how many clients connect.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::rr::{Name, RData};
use hickory_resolver::TokioResolver;
use way2mail_smtp::reply::{EnhancedCode, Reply};
use way2mail_smtp::server::{Blocked, BlockedAt, Role};

use crate::config::authn::DnsblStep;
use crate::config::Settings;

/// Addresses the cache holds at most.
pub const CACHE_MAX: usize = 100_000;
/// The longest reason kept from a TXT record.
const MAX_REASON: usize = 200;

/// A listing: the zone and what it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    pub zone: String,
    pub reason: Option<String>,
}

#[derive(Debug, Default)]
pub struct Cache {
    entries: Mutex<HashMap<IpAddr, (Instant, Option<Listing>)>>,
}

impl Cache {
    fn get(&self, ip: IpAddr, now: Instant) -> Option<Option<Listing>> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(&ip)
            .filter(|(until, _)| *until > now)
            .map(|(_, l)| l.clone())
    }

    fn put(&self, ip: IpAddr, until: Instant, listing: Option<Listing>, now: Instant) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= CACHE_MAX {
            entries.retain(|_, (u, _)| *u > now);
            if entries.len() >= CACHE_MAX {
                // Keep the half that lives longest.
                let mut untils: Vec<Instant> = entries.values().map(|(u, _)| *u).collect();
                untils.sort_unstable();
                let cut = untils[untils.len() / 2];
                entries.retain(|_, (u, _)| *u > cut);
            }
        }
        entries.insert(ip, (until, listing));
    }
}

thread_local! {
    /// This core's resolver, built on first use inside its runtime.
    static RESOLVER: RefCell<Option<TokioResolver>> = const { RefCell::new(None) };
}

fn resolver(settings: &Settings) -> std::io::Result<TokioResolver> {
    RESOLVER.with(|cell| {
        if let Some(r) = cell.borrow().as_ref() {
            return Ok(r.clone());
        }
        let r = way2mail_daemon::dns::resolver(&settings.dns)?;
        *cell.borrow_mut() = Some(r.clone());
        Ok(r)
    })
}

/// What the session's protocol is told about `ip`: `None` unless the mx listener
/// checks blocklists, the client is not trusted, and a zone lists it.
pub async fn check(settings: &Settings, cache: &Cache, role: Role, ip: IpAddr) -> Option<Blocked> {
    let inbound = &settings.raw.inbound;
    if role != Role::Mx || inbound.dnsbl_zones.is_empty() || settings.relay.is_trusted(ip) {
        return None;
    }
    let ip = ip.to_canonical();
    let now = Instant::now();
    let listing = match cache.get(ip, now) {
        Some(cached) => cached,
        None => {
            let (listing, complete) = look_up(settings, ip).await;
            if complete || listing.is_some() {
                cache.put(ip, now + inbound.dnsbl_cache, listing.clone(), now);
            }
            listing
        }
    }?;
    metrics::counter!("way2mail_dnsbl_listed_total", "zone" => listing.zone.clone()).increment(1);
    tracing::info!(
        target: "way2mail::connection",
        client_ip = %ip,
        zone = %listing.zone,
        "client listed on a DNS blocklist: its mail is refused"
    );
    let text = match &listing.reason {
        Some(r) => format!(
            "Service unavailable; client [{ip}] blocked using {}: {r}",
            listing.zone
        ),
        None => format!(
            "Service unavailable; client [{ip}] blocked using {}",
            listing.zone
        ),
    };
    Some(Blocked {
        reply: Reply::owned(554, EnhancedCode::new(5, 7, 1), text),
        at: match inbound.dnsbl_refuse_at {
            DnsblStep::Mail => BlockedAt::Mail,
            DnsblStep::Rcpt => BlockedAt::Rcpt,
        },
    })
}

/// Looks `ip` up in every zone at once; the first zone (in configured order) that
/// lists it, and whether every zone answered.
async fn look_up(settings: &Settings, ip: IpAddr) -> (Option<Listing>, bool) {
    let resolver = match resolver(settings) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "dnsbl: no resolver; not checked");
            return (None, false);
        }
    };
    let attempts = u32::try_from(settings.dns.attempts.max(1)).unwrap_or(u32::MAX);
    let limit = settings.dns.timeout.saturating_mul(attempts);
    let zones = &settings.raw.inbound.dnsbl_zones;
    let lookups = zones.iter().map(|zone| {
        let resolver = resolver.clone();
        async move {
            let name = query_name(ip, zone);
            match tokio::time::timeout(limit, in_zone(&resolver, &name)).await {
                Ok(found) => found,
                Err(_) => Err(()),
            }
        }
    });
    let answers = futures_util::future::join_all(lookups).await;
    let mut complete = true;
    for (zone, answer) in zones.iter().zip(answers) {
        match answer {
            Ok(Some(reason)) => {
                return (
                    Some(Listing {
                        zone: zone.trim_end_matches('.').to_ascii_lowercase(),
                        reason,
                    }),
                    true,
                )
            }
            Ok(None) => {}
            Err(()) => {
                complete = false;
                metrics::counter!("way2mail_dnsbl_errors_total", "zone" => zone.clone())
                    .increment(1);
            }
        }
    }
    (None, complete)
}

/// `Ok(Some(reason))` listed, `Ok(None)` not listed, `Err` no answer.
async fn in_zone(resolver: &TokioResolver, name: &str) -> Result<Option<Option<String>>, ()> {
    let Ok(fqdn) = Name::from_str_relaxed(name) else {
        return Err(());
    };
    let listed = match resolver.ipv4_lookup(fqdn.clone()).await {
        Ok(l) => l.answers().iter().any(|r| match &r.data {
            RData::A(a) => is_listing(a.0),
            _ => false,
        }),
        Err(NetError::Dns(DnsError::NoRecordsFound(_))) => false,
        Err(_) => return Err(()),
    };
    if !listed {
        return Ok(None);
    }
    let reason = match resolver.txt_lookup(fqdn).await {
        Ok(l) => way2mail_daemon::dns::txt_texts(l.answers())
            .first()
            .map(|text| {
                text.chars()
                    .filter(|c| !c.is_control())
                    .take(MAX_REASON)
                    .collect()
            }),
        Err(_) => None,
    };
    Ok(Some(reason))
}

/// An A answer that means "listed": 127.0.0.2 and up, but not 127.255.255.x
/// (Spamhaus and others answer those for refused or malformed queries).
fn is_listing(a: std::net::Ipv4Addr) -> bool {
    let o = a.octets();
    o[0] == 127 && !(o[1] == 255 && o[2] == 255) && a != std::net::Ipv4Addr::new(127, 0, 0, 1)
}

/// The absolute name to ask `zone` about `ip` (`4.3.2.1.zone.` for 1.2.3.4).
fn query_name(ip: IpAddr, zone: &str) -> String {
    format!("{}.", way2mail_daemon::dns::dnsbl_name(ip, zone))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn query_names() {
        assert_eq!(
            query_name("192.0.2.99".parse().expect("ip"), "zen.example."),
            "99.2.0.192.zen.example."
        );
        assert_eq!(
            query_name("2001:db8::1".parse().expect("ip"), "bl.example"),
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.bl.example."
        );
    }

    #[test]
    fn listing_answers() {
        assert!(is_listing("127.0.0.2".parse().expect("ip")));
        assert!(is_listing("127.0.0.11".parse().expect("ip")));
        assert!(!is_listing("127.255.255.254".parse().expect("ip")));
        assert!(!is_listing("127.0.0.1".parse().expect("ip")));
        assert!(!is_listing("10.0.0.2".parse().expect("ip")));
    }

    #[test]
    fn the_cache_stays_bounded() {
        let cache = Cache::default();
        let now = Instant::now();
        for i in 0..(CACHE_MAX as u32 + 10) {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(i));
            cache.put(ip, now + Duration::from_secs(u64::from(i)), None, now);
        }
        let len = cache.entries.lock().expect("lock").len();
        assert!(len <= CACHE_MAX, "{len}");
        let last = IpAddr::V4(std::net::Ipv4Addr::from(CACHE_MAX as u32 + 9));
        assert_eq!(cache.get(last, now), Some(None), "the newest is kept");
    }
}
