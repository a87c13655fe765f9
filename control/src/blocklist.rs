//! DNSBL lookups of the platform's own sending addresses (`[sending] ips`) in the
//! `[blocklists] zones`, through `[dns]` (the resolver `domain verify` uses). The
//! monitor around it (state, audit, letters, metrics) is `service/blocklist.rs`.
//!
//! ```text
//!   look_up(dns, ips, zones)          blocking; own current-thread runtime, a fresh
//!     └─ per (ip, zone), all at once: resolver per call (no answers cached between checks)
//!          A  <reversed ip>.<zone>    NXDOMAIN / NODATA      → not listed
//!                                     127.0.0.0/8            → listed (codes)
//!                                     127.255.255.0/24 only  → error (the zone refused:
//!                                                              Spamhaus' public-resolver,
//!                                                              rate-limit and typo codes)
//!                                     anything else          → error
//!                                     timeout, SERVFAIL, …   → error
//!          TXT <same name>            on a listing: the reason, cleaned and shortened
//! ```
//!
//! A lookup error is never a listing: the monitor leaves the pair's state as it was.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use hickory_resolver::TokioResolver;

use way2mail_daemon::dns::DnsSettings;

/// The longest TXT reason kept, in characters.
pub const MAX_REASON_CHARS: usize = 300;
/// The longest one pair's lookups may take, however slow `[dns]` is.
const MAX_BUDGET: Duration = Duration::from_secs(30);

/// What one lookup of one address in one zone found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    NotListed,
    /// The zone's A answers (`127.0.0.2`) and its TXT reason (may be empty).
    Listed {
        codes: Vec<String>,
        reason: String,
    },
    /// Says nothing about a listing.
    Error(String),
}

/// One address in one zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup {
    pub ip: IpAddr,
    pub zone: String,
    pub outcome: Outcome,
}

/// A zone name as `[blocklists] zones` takes it: lowercase, at least two labels of
/// letters, digits, `-` and `_`, no trailing dot, at most 200 characters (an IPv6
/// query name adds 64).
pub fn is_zone_name(zone: &str) -> bool {
    !zone.is_empty()
        && zone.len() <= 200
        && zone.split('.').count() >= 2
        && zone.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        })
}

/// What the A answers of a DNSBL query mean: a listing (the codes), or an error when
/// the zone refused the query (`127.255.255.x`, Spamhaus' codes for queries through
/// public resolvers, over the rate limit, or to a mistyped zone) or answered outside
/// `127.0.0.0/8` (a resolver that rewrites NXDOMAIN, a zone gone wildcard).
pub fn judge_answers(answers: &[Ipv4Addr]) -> Result<Vec<String>, String> {
    if answers.is_empty() {
        return Err("an answer without addresses".into());
    }
    let codes: Vec<String> = answers.iter().map(Ipv4Addr::to_string).collect();
    if let Some(outside) = answers.iter().find(|a| a.octets()[0] != 127) {
        return Err(format!(
            "answered {outside}, outside 127.0.0.0/8: not a blocklist answer (a resolver \
             that rewrites NXDOMAIN, or a zone that no longer works)"
        ));
    }
    let listing: Vec<String> = answers
        .iter()
        .filter(|a| a.octets()[..3] != [127, 255, 255])
        .map(Ipv4Addr::to_string)
        .collect();
    if listing.is_empty() {
        return Err(format!(
            "the zone refused the query ({}: queries through public or shared resolvers, \
             over the rate limit, or a zone that needs a key)",
            codes.join(", ")
        ));
    }
    Ok(listing)
}

/// A TXT reason as it is kept: control characters as spaces, trimmed, at most
/// [`MAX_REASON_CHARS`] characters (`…` when cut).
pub fn clean_reason(text: &str) -> String {
    let cleaned: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let cleaned = cleaned.trim();
    if cleaned.chars().count() > MAX_REASON_CHARS {
        let mut cut: String = cleaned.chars().take(MAX_REASON_CHARS - 1).collect();
        cut.push('…');
        cut
    } else {
        cleaned.to_owned()
    }
}

/// How long one pair may take: A then TXT, each `timeout × attempts`, plus a second.
pub fn budget(dns: &DnsSettings) -> Duration {
    let attempts = u32::try_from(dns.attempts.max(1)).unwrap_or(u32::MAX);
    dns.timeout
        .saturating_mul(attempts)
        .saturating_mul(2)
        .saturating_add(Duration::from_secs(1))
        .min(MAX_BUDGET)
}

/// Looks every address up in every zone, all at once. Blocking: runs its own
/// current-thread runtime (on a helper thread when called inside one). Results are
/// in the order of `ips` then `zones`.
pub fn look_up(dns: &DnsSettings, ips: &[IpAddr], zones: &[String]) -> Vec<Lookup> {
    let pairs: Vec<(IpAddr, String)> = ips
        .iter()
        .flat_map(|ip| zones.iter().map(move |zone| (*ip, zone.clone())))
        .collect();
    if pairs.is_empty() {
        return Vec::new();
    }
    let run = || -> Result<Vec<Lookup>, String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the DNS runtime: {e}"))?;
        runtime.block_on(async {
            let resolver =
                Arc::new(way2mail_daemon::dns::resolver(dns).map_err(|e| e.to_string())?);
            let budget = budget(dns);
            let tasks: Vec<_> = pairs
                .iter()
                .map(|(ip, zone)| {
                    let resolver = Arc::clone(&resolver);
                    let name = way2mail_daemon::dns::dnsbl_name(*ip, zone);
                    tokio::spawn(async move {
                        tokio::time::timeout(budget, look_up_one(&resolver, &name))
                            .await
                            .unwrap_or_else(|_| {
                                Outcome::Error(format!(
                                    "no answer within {} s",
                                    budget.as_secs_f32()
                                ))
                            })
                    })
                })
                .collect();
            let mut out = Vec::with_capacity(pairs.len());
            for ((ip, zone), task) in pairs.iter().zip(tasks) {
                let outcome = task
                    .await
                    .unwrap_or_else(|_| Outcome::Error("the lookup failed unexpectedly".into()));
                out.push(Lookup {
                    ip: *ip,
                    zone: zone.clone(),
                    outcome,
                });
            }
            Ok(out)
        })
    };
    let result = if tokio::runtime::Handle::try_current().is_ok() {
        std::thread::scope(|scope| {
            scope
                .spawn(run)
                .join()
                .unwrap_or_else(|_| Err("the lookups failed unexpectedly".into()))
        })
    } else {
        run()
    };
    match result {
        Ok(lookups) => lookups,
        Err(why) => pairs
            .into_iter()
            .map(|(ip, zone)| Lookup {
                ip,
                zone,
                outcome: Outcome::Error(why.clone()),
            })
            .collect(),
    }
}

/// A failed lookup in a few words.
fn describe(e: &NetError) -> String {
    match e {
        NetError::Timeout => "the DNS server did not answer in time".into(),
        NetError::Dns(DnsError::ResponseCode(code)) => {
            format!("the DNS server answered {}", code.to_str())
        }
        other => other.to_string(),
    }
}

async fn look_up_one(resolver: &TokioResolver, name: &str) -> Outcome {
    let fqdn = match Name::from_str_relaxed(format!("{name}.")) {
        Ok(fqdn) => fqdn,
        Err(e) => return Outcome::Error(format!("{name} is not a valid DNS name ({e})")),
    };
    let answers: Vec<Ipv4Addr> = match resolver.lookup(fqdn.clone(), RecordType::A).await {
        Ok(lookup) => lookup
            .answers()
            .iter()
            .filter_map(|record| match &record.data {
                RData::A(a) => Some(a.0),
                _ => None,
            })
            .collect(),
        // NXDOMAIN, or the name without A records: not listed.
        Err(NetError::Dns(DnsError::NoRecordsFound(none)))
            if matches!(
                none.response_code,
                ResponseCode::NXDomain | ResponseCode::NoError
            ) =>
        {
            return Outcome::NotListed
        }
        Err(e) => return Outcome::Error(describe(&e)),
    };
    if answers.is_empty() {
        // A CNAME chain without an address at its end.
        return Outcome::NotListed;
    }
    let codes = match judge_answers(&answers) {
        Ok(codes) => codes,
        Err(why) => return Outcome::Error(why),
    };
    let reason = match resolver.lookup(fqdn, RecordType::TXT).await {
        Ok(lookup) => clean_reason(&way2mail_daemon::dns::txt_texts(lookup.answers()).join(" ")),
        // No reason given (or it could not be fetched): still a listing.
        Err(_) => String::new(),
    };
    Outcome::Listed { codes, reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_judged() {
        let a = |s: &str| s.parse::<Ipv4Addr>().expect("ip");
        assert_eq!(
            judge_answers(&[a("127.0.0.2"), a("127.0.0.4")]),
            Ok(vec!["127.0.0.2".into(), "127.0.0.4".into()])
        );
        // Spamhaus: public resolver, rate limit, typo: the query was refused.
        for code in ["127.255.255.254", "127.255.255.255", "127.255.255.252"] {
            let e = judge_answers(&[a(code)]).expect_err(code);
            assert!(e.contains("refused"), "{e}");
        }
        // A resolver that answers NXDOMAIN with its own address.
        assert!(judge_answers(&[a("198.51.100.7")]).is_err());
        assert!(judge_answers(&[]).is_err());
    }

    #[test]
    fn reasons_cleaned_and_cut() {
        assert_eq!(clean_reason(" Listed\r\nBcc: x "), "Listed  Bcc: x");
        let long = "x".repeat(1000);
        let cut = clean_reason(&long);
        assert_eq!(cut.chars().count(), MAX_REASON_CHARS);
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn zone_names() {
        for good in [
            "zen.spamhaus.org",
            "bl.test.example",
            "b.barracudacentral.org",
        ] {
            assert!(is_zone_name(good), "{good}");
        }
        for bad in [
            "",
            "localhost",
            "a..b",
            "bad zone.example",
            "A.example",
            "x.example.",
        ] {
            assert!(!is_zone_name(bad), "{bad}");
        }
    }
}
