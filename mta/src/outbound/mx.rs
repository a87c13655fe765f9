//! Next-hop resolution: recipient domain → the hosts to try, in order.
//!
//! ```text
//! next_hops(domain, port, routes)
//!   ├─ route for the domain?  [IP]  → that address, no DNS
//!   │                         name  → A/AAAA of the name (never MX), the route's port/TLS
//!   └─ MX lookup   records    → null MX? (RFC 7505) → NullMx
//!                             → preference ascending, shuffled within a preference,
//!                               A/AAAA of each exchange, hosts without address dropped
//!                  NODATA     → implicit MX: the domain's own A/AAAA (RFC 5321 §5.1)
//!                  NXDOMAIN   → NoSuchDomain;  SERVFAIL, timeout → Temporary
//! ```
//!
//! DNS goes through hickory-resolver with its own positive and negative cache (TTLs
//! honoured, clamped to sane bounds) and short timeouts: SMTP delivery cannot wait
//! hickory's default 5 s × 3. Names are always absolute, so no search domain is ever
//! appended. The resolver is cheap to keep and not meant to be shared: each core's
//! delivery worker builds its own [`MxResolver`] inside its runtime, so the cache and
//! sockets stay core-local.

use std::hash::BuildHasher;
use std::net::IpAddr;

use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{Name, RData};
use hickory_resolver::TokioResolver;

use crate::outbound::route::{Route, RouteHost, Routes};
use way2mail_smtp::client::TlsPolicy;
use way2mail_smtp::EnhancedCode;

/// `[dns]`: the one settings type for every lookup, shared with control.
pub use way2mail_daemon::dns::DnsSettings;

/// One host to try, with every address found for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextHop {
    /// The MX exchange, the domain itself (implicit MX), the route's host name, or an
    /// `[IP]` route's address as text; lowercase, no trailing dot.
    pub host: String,
    /// IPv4 addresses first, then IPv6; never empty.
    pub addrs: Vec<IpAddr>,
    pub port: u16,
    /// The MX preference (0 for implicit MX and routes).
    pub preference: u16,
    pub tls: TlsPolicy,
}

/// Why a domain has no next hop. Each kind maps to the status of the bounce or deferral.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResolveError {
    /// The domain publishes a null MX (RFC 7505): it accepts no mail. Permanent,
    /// `556 5.1.10`.
    #[error("{domain} does not accept mail (null MX)")]
    NullMx { domain: String },
    /// NXDOMAIN: the recipient domain does not exist. Permanent, `5.1.2`.
    #[error("{domain}: no such domain")]
    NoSuchDomain { domain: String },
    /// The domain exists but no mail host has an address: its MX hosts resolve to
    /// nothing, or it has neither MX nor A/AAAA. RFC 5321 §5.1 says this MUST be
    /// reported as an error; like Postfix we make it permanent, `5.4.4` (unable to
    /// route), rather than 5.1.2, because the domain itself does exist.
    #[error("{domain}: no mail host with an address")]
    NoAddress { domain: String },
    /// SERVFAIL, REFUSED, timeouts, a route host that does not resolve: try again
    /// later, `4.4.3`.
    #[error("{domain}: DNS lookup failed, will retry: {reason}")]
    Temporary { domain: String, reason: String },
}

impl ResolveError {
    pub fn is_permanent(&self) -> bool {
        !matches!(self, ResolveError::Temporary { .. })
    }

    /// The RFC 3463 enhanced status code for the DSN or the log.
    pub fn enhanced_code(&self) -> EnhancedCode {
        match self {
            ResolveError::NullMx { .. } => EnhancedCode::new(5, 1, 10),
            ResolveError::NoSuchDomain { .. } => EnhancedCode::new(5, 1, 2),
            ResolveError::NoAddress { .. } => EnhancedCode::new(5, 4, 4),
            ResolveError::Temporary { .. } => EnhancedCode::new(4, 4, 3),
        }
    }

    /// The basic SMTP reply code to report: 556 for a null MX (RFC 7505 §4.2), 550 for
    /// the other permanent failures, 451 for temporary ones.
    pub fn reply_code(&self) -> u16 {
        match self {
            ResolveError::NullMx { .. } => 556,
            ResolveError::NoSuchDomain { .. } | ResolveError::NoAddress { .. } => 550,
            ResolveError::Temporary { .. } => 451,
        }
    }
}

/// A failed lookup of one name and type, before it is given a meaning.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Miss {
    /// NXDOMAIN.
    NoName,
    /// NOERROR with no record of that type.
    NoData,
    /// Anything that may work later (SERVFAIL, timeout, network error).
    Failed(String),
}

/// Resolves recipient domains to next hops. One per core; see the module comment.
pub struct MxResolver {
    resolver: TokioResolver,
}

impl MxResolver {
    /// Builds a resolver from `[dns]`, on the core that will use it; its queries run
    /// inside that core's tokio runtime. Fails only when `nameservers` is empty and the
    /// system configuration (resolv.conf) cannot be read.
    pub fn new(settings: &DnsSettings) -> std::io::Result<MxResolver> {
        Ok(MxResolver {
            resolver: way2mail_daemon::dns::resolver(settings)?,
        })
    }

    /// The hosts to try for `domain`, best first. `port` is `[delivery] port`, used for
    /// hosts found through MX or A lookup; a route brings its own port and TLS policy.
    pub async fn next_hops(
        &self,
        domain: &str,
        port: u16,
        routes: &Routes,
    ) -> Result<Vec<NextHop>, ResolveError> {
        let domain = domain.strip_suffix('.').unwrap_or(domain).to_lowercase();
        if let Some(route) = routes.find(&domain) {
            return self.route_hop(&domain, route).await.map(|hop| vec![hop]);
        }
        let Some(name) = absolute(&domain) else {
            return Err(ResolveError::NoSuchDomain { domain });
        };
        match self.mx(&name).await {
            Ok(records) => self.mx_hops(&domain, records, port).await,
            Err(Miss::NoData) => match self.addresses(&name).await {
                Ok(addrs) => Ok(vec![NextHop {
                    host: domain,
                    addrs,
                    port,
                    preference: 0,
                    tls: TlsPolicy::default(),
                }]),
                Err(miss) => Err(address_error(domain, miss)),
            },
            Err(Miss::NoName) => Err(ResolveError::NoSuchDomain { domain }),
            Err(Miss::Failed(reason)) => Err(ResolveError::Temporary { domain, reason }),
        }
    }

    /// A route's single hop. A route host that does not resolve is the operator's
    /// configuration (or their DNS) being wrong, not the recipient's: the mail waits
    /// instead of bouncing.
    async fn route_hop(&self, domain: &str, route: &Route) -> Result<NextHop, ResolveError> {
        let (host, addrs) = match &route.host {
            RouteHost::Ip(ip) => (ip.to_string(), vec![*ip]),
            RouteHost::Name(host) => {
                let found = match absolute(host) {
                    Some(name) => self.addresses(&name).await,
                    None => Err(Miss::NoName),
                };
                let addrs = found.map_err(|miss| ResolveError::Temporary {
                    domain: domain.to_string(),
                    reason: format!("route host {host}: {}", describe(&miss)),
                })?;
                (host.clone(), addrs)
            }
        };
        Ok(NextHop {
            host,
            addrs,
            port: route.port,
            preference: 0,
            tls: route.tls,
        })
    }

    /// Turns MX records into hops: null MX check, ordering, then addresses.
    async fn mx_hops(
        &self,
        domain: &str,
        records: Vec<(u16, Name)>,
        port: u16,
    ) -> Result<Vec<NextHop>, ResolveError> {
        // RFC 7505 §3: a null MX is the only record; "." is never a usable host, so a
        // "." among real exchanges is simply skipped.
        if let [(_, exchange)] = records.as_slice() {
            if exchange.is_root() {
                return Err(ResolveError::NullMx {
                    domain: domain.to_string(),
                });
            }
        }
        let mut records: Vec<(u16, String)> = records
            .into_iter()
            .filter(|(_, exchange)| !exchange.is_root())
            .map(|(pref, exchange)| (pref, host_text(&exchange)))
            .collect();
        order_by_preference(&mut records, random_seed(domain));

        let mut hops: Vec<NextHop> = Vec::with_capacity(records.len());
        let mut failure = None;
        for (preference, host) in records {
            if hops.iter().any(|hop| hop.host == host) {
                continue;
            }
            let Some(name) = absolute(&host) else {
                continue;
            };
            match self.addresses(&name).await {
                Ok(addrs) => hops.push(NextHop {
                    host,
                    addrs,
                    port,
                    preference,
                    tls: TlsPolicy::default(),
                }),
                Err(Miss::Failed(reason)) => failure = Some(format!("{host}: {reason}")),
                Err(Miss::NoName | Miss::NoData) => {}
            }
        }
        match (hops.is_empty(), failure) {
            (false, _) => Ok(hops),
            // An exchange that could not be resolved right now may still have addresses.
            (true, Some(reason)) => Err(ResolveError::Temporary {
                domain: domain.to_string(),
                reason,
            }),
            (true, None) => Err(ResolveError::NoAddress {
                domain: domain.to_string(),
            }),
        }
    }

    async fn mx(&self, name: &Name) -> Result<Vec<(u16, Name)>, Miss> {
        match self.resolver.mx_lookup(name.clone()).await {
            Ok(lookup) => {
                let records: Vec<(u16, Name)> = lookup
                    .answers()
                    .iter()
                    .filter_map(|r| match &r.data {
                        RData::MX(mx) => Some((mx.preference, mx.exchange.clone())),
                        _ => None,
                    })
                    .collect();
                // An answer with only CNAMEs and no MX at the end of the chain.
                if records.is_empty() {
                    Err(Miss::NoData)
                } else {
                    Ok(records)
                }
            }
            Err(e) => Err(miss(&e)),
        }
    }

    /// A and AAAA of a name, asked at the same time; IPv4 addresses first. One family
    /// answering is enough; both failing for a reason other than "no such record"
    /// makes the whole lookup a temporary failure.
    async fn addresses(&self, name: &Name) -> Result<Vec<IpAddr>, Miss> {
        let (v4, v6) = tokio::join!(
            self.resolver.ipv4_lookup(name.clone()),
            self.resolver.ipv6_lookup(name.clone())
        );
        let v4 = v4.map(|l| {
            l.answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::A(a) => Some(IpAddr::V4(a.0)),
                    _ => None,
                })
                .collect::<Vec<_>>()
        });
        let v6 = v6.map(|l| {
            l.answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                    _ => None,
                })
                .collect::<Vec<_>>()
        });
        let mut addrs = Vec::new();
        let mut misses = Vec::new();
        for found in [v4, v6] {
            match found {
                Ok(list) => addrs.extend(list),
                Err(e) => misses.push(miss(&e)),
            }
        }
        if !addrs.is_empty() {
            return Ok(addrs);
        }
        if let Some(failed) = misses.iter().find(|m| matches!(m, Miss::Failed(_))) {
            return Err(failed.clone());
        }
        if misses.len() == 2 && misses.iter().all(|m| *m == Miss::NoName) {
            return Err(Miss::NoName);
        }
        Err(Miss::NoData)
    }
}

/// Gives a hickory error its meaning for mail routing.
fn miss(err: &NetError) -> Miss {
    if let NetError::Dns(DnsError::NoRecordsFound(no)) = err {
        return match no.response_code {
            ResponseCode::NXDomain => Miss::NoName,
            ResponseCode::NoError => Miss::NoData,
            code => Miss::Failed(format!("the resolver answered {code}")),
        };
    }
    Miss::Failed(err.to_string())
}

fn address_error(domain: String, miss: Miss) -> ResolveError {
    match miss {
        Miss::NoName => ResolveError::NoSuchDomain { domain },
        Miss::NoData => ResolveError::NoAddress { domain },
        Miss::Failed(reason) => ResolveError::Temporary { domain, reason },
    }
}

fn describe(miss: &Miss) -> String {
    match miss {
        Miss::NoName => "no such domain".to_string(),
        Miss::NoData => "no A or AAAA record".to_string(),
        Miss::Failed(reason) => reason.clone(),
    }
}

/// The absolute DNS name for a domain (IDNs converted to A-labels), or `None` when it
/// cannot be one (empty, too long, an address literal, stray characters).
fn absolute(domain: &str) -> Option<Name> {
    if domain.is_empty() || domain.starts_with('[') {
        return None;
    }
    let mut name = Name::from_utf8(domain).ok()?;
    name.set_fqdn(true);
    (!name.is_root()).then_some(name)
}

/// A name as a host string: lowercase, no trailing dot.
fn host_text(name: &Name) -> String {
    let text = name.to_ascii().to_ascii_lowercase();
    match text.strip_suffix('.') {
        Some(stripped) => stripped.to_string(),
        None => text,
    }
}

/// A fresh random seed per call. `RandomState::new()` draws new SipHash keys for every
/// instance, which is all the randomness spreading load over equal MX hosts needs,
/// without a `rand` dependency.
fn random_seed(domain: &str) -> u64 {
    std::collections::hash_map::RandomState::new().hash_one(domain)
}

/// Sorts by preference ascending and shuffles (Fisher-Yates) inside each preference,
/// so that equal MX hosts share the load as RFC 5321 §5.1 asks.
fn order_by_preference<T>(records: &mut [(u16, T)], seed: u64) {
    records.sort_by_key(|(pref, _)| *pref);
    let mut state = seed;
    let mut start = 0;
    while start < records.len() {
        let pref = records[start].0;
        let end = start
            + records[start..]
                .iter()
                .take_while(|(p, _)| *p == pref)
                .count();
        for i in (start + 1..end).rev() {
            let span = (i - start + 1) as u64;
            let j = start + (splitmix64(&mut state) % span) as usize;
            records.swap(i, j);
        }
        start = end;
    }
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ordering_keeps_preferences_and_shuffles_inside_them() {
        let mut seen_first = HashSet::new();
        for seed in 0..200u64 {
            let mut records = vec![(20, "c"), (10, "a"), (30, "e"), (10, "b"), (20, "d")];
            order_by_preference(&mut records, seed);
            let prefs: Vec<u16> = records.iter().map(|r| r.0).collect();
            assert_eq!(prefs, [10, 10, 20, 20, 30]);
            let mut firsts = [records[0].1, records[1].1];
            firsts.sort_unstable();
            assert_eq!(firsts, ["a", "b"]);
            seen_first.insert(records[0].1);
        }
        assert_eq!(
            seen_first.len(),
            2,
            "both equal-preference hosts come first sometimes"
        );
        assert_ne!(random_seed("example.net"), random_seed("example.net"));
    }

    #[test]
    fn statuses_match_the_kind_of_failure() {
        let d = || "example.net".to_string();
        let cases = [
            (ResolveError::NullMx { domain: d() }, true, "5.1.10", 556),
            (
                ResolveError::NoSuchDomain { domain: d() },
                true,
                "5.1.2",
                550,
            ),
            (ResolveError::NoAddress { domain: d() }, true, "5.4.4", 550),
            (
                ResolveError::Temporary {
                    domain: d(),
                    reason: "timeout".into(),
                },
                false,
                "4.4.3",
                451,
            ),
        ];
        for (err, permanent, status, code) in cases {
            assert_eq!(err.is_permanent(), permanent, "{err}");
            assert_eq!(err.enhanced_code().to_string(), status, "{err}");
            assert_eq!(err.reply_code(), code, "{err}");
            assert!(err.to_string().contains("example.net"));
        }
    }

    #[test]
    fn names_are_absolute_and_literals_are_not_names() {
        let name = absolute("Example.NET").unwrap();
        assert!(name.is_fqdn());
        assert_eq!(host_text(&name), "example.net");
        assert_eq!(
            host_text(&absolute("bücher.example").unwrap()),
            "xn--bcher-kva.example"
        );
        for bad in ["", "[192.0.2.1]", "[IPv6:2001:db8::1]", "a..b"] {
            assert!(absolute(bad).is_none(), "{bad:?}");
        }
        assert!(absolute(&"a".repeat(300)).is_none());
    }
}
