//! Relay policy: which recipient domains are ours and which client addresses may
//! relay to anyone else. The SMTP `RCPT` handler asks two questions, "is this domain
//! local?" and "is this client trusted?", and refuses everything else with
//! `550 5.7.1`, so the server is never an open relay.
//!
//! Networks are parsed here by hand (CIDR is a few lines) rather than pulling in a
//! crate; a bad entry is reported with the entry itself so that the operator can find
//! it in the configuration.

use std::net::IpAddr;

/// The error type of this library: a configuration entry the relay policy rejects.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RelayError {
    /// A `trusted_networks` entry that is not `address` or `address/prefix`.
    #[error("invalid CIDR '{entry}': {reason}")]
    InvalidCidr { entry: String, reason: &'static str },
    /// A relay domain that cannot be a domain name.
    #[error("invalid domain '{entry}': {reason}")]
    InvalidDomain { entry: String, reason: &'static str },
}

/// One network: an address with its host bits cleared, and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Network {
    V4(u32, u8),
    V6(u128, u8),
}

impl Network {
    fn contains(&self, ip: IpAddr) -> bool {
        match (*self, ip) {
            (Network::V4(net, len), IpAddr::V4(a)) => u32::from(a) & mask32(len) == net,
            (Network::V6(net, len), IpAddr::V6(a)) => u128::from(a) & mask128(len) == net,
            _ => false,
        }
    }
}

fn mask32(len: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
}

fn mask128(len: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0)
}

/// A set of networks (`a.b.c.d/n`, `v6::/n`, or a bare address), e.g. a
/// listener's `proxy_from`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Networks(Vec<Network>);

impl Networks {
    pub fn parse(entries: &[String]) -> Result<Networks, RelayError> {
        entries
            .iter()
            .map(|n| parse_cidr(n))
            .collect::<Result<Vec<_>, _>>()
            .map(Networks)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// True when `ip` lies in one of the networks (an IPv4-mapped IPv6 address
    /// counts as its IPv4 form).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|n| n.contains(ip))
    }
}

/// Local (relay) domains and trusted networks of one listener.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelayPolicy {
    /// Lower case, without a trailing dot.
    domains: Vec<String>,
    networks: Vec<Network>,
}

impl RelayPolicy {
    /// Builds the policy from configuration strings. Domains match exactly (no
    /// wildcard), case-insensitively; networks are `a.b.c.d/n`, `v6::/n` or a bare
    /// address (a host route).
    pub fn new(domains: &[String], trusted_networks: &[String]) -> Result<RelayPolicy, RelayError> {
        let domains = domains
            .iter()
            .map(|d| parse_domain(d))
            .collect::<Result<Vec<_>, _>>()?;
        let Networks(networks) = Networks::parse(trusted_networks)?;
        Ok(RelayPolicy { domains, networks })
    }

    /// True when `domain` is one of ours (ASCII case-insensitive, a trailing dot ignored).
    pub fn is_local_domain(&self, domain: &str) -> bool {
        let domain = domain.strip_suffix('.').unwrap_or(domain);
        self.domains.iter().any(|d| d.eq_ignore_ascii_case(domain))
    }

    /// True when `ip` lies in a trusted network. An IPv4-mapped IPv6 address
    /// (`::ffff:a.b.c.d`, what a dual-stack socket reports) counts as its IPv4 form.
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.networks.iter().any(|n| n.contains(ip))
    }
}

fn parse_domain(entry: &str) -> Result<String, RelayError> {
    let bad = |reason| RelayError::InvalidDomain {
        entry: entry.to_string(),
        reason,
    };
    let d = entry.trim();
    let d = d.strip_suffix('.').unwrap_or(d);
    if d.is_empty() {
        return Err(bad("empty"));
    }
    if d.len() > 255 {
        return Err(bad("longer than 255 octets"));
    }
    if d.split('.').any(str::is_empty) {
        return Err(bad("empty label"));
    }
    if d.chars()
        .any(|c| c.is_whitespace() || c.is_control() || "@<>[]()\\\",;:".contains(c))
    {
        return Err(bad("character not allowed in a domain"));
    }
    Ok(d.to_lowercase())
}

fn parse_cidr(entry: &str) -> Result<Network, RelayError> {
    let bad = |reason| RelayError::InvalidCidr {
        entry: entry.to_string(),
        reason,
    };
    let s = entry.trim();
    let (addr, prefix) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let ip: IpAddr = addr.parse().map_err(|_| bad("not an IP address"))?;
    let max: u8 = if ip.is_ipv4() { 32 } else { 128 };
    let len = match prefix {
        None => max,
        Some(p) if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) => {
            return Err(bad("prefix is not a number"))
        }
        Some(p) => match p.parse::<u8>() {
            Ok(n) if n <= max => n,
            _ if max == 32 => return Err(bad("prefix longer than 32")),
            _ => return Err(bad("prefix longer than 128")),
        },
    };
    // Host bits are cleared rather than refused: `10.1.2.3/8` plainly means 10/8.
    Ok(match ip {
        IpAddr::V4(a) => Network::V4(u32::from(a) & mask32(len), len),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            // `::ffff:10.0.0.0/104` is written for dual-stack sockets; store it as v4
            // so that it matches the canonical client address.
            Some(v4) if len >= 96 => {
                let len4 = len - 96;
                Network::V4(u32::from(v4) & mask32(len4), len4)
            }
            _ => Network::V6(u128::from(a) & mask128(len), len),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn policy(nets: &[&str]) -> RelayPolicy {
        RelayPolicy::new(
            &strings(&["Example.ORG", "mail.example.net."]),
            &strings(nets),
        )
        .expect("valid test policy")
    }

    #[test]
    fn domains_match_exactly_and_case_insensitively() {
        let p = policy(&[]);
        assert!(p.is_local_domain("example.org"));
        assert!(p.is_local_domain("EXAMPLE.org"));
        assert!(p.is_local_domain("mail.example.net"));
        assert!(p.is_local_domain("example.org."));
        assert!(!p.is_local_domain("sub.example.org"));
        assert!(!p.is_local_domain("example.org.evil"));
        assert!(!p.is_local_domain(""));
    }

    #[test]
    fn v4_and_v6_networks() {
        let p = policy(&["10.0.0.0/8", "192.0.2.7", "2001:db8::/32", "::1"]);
        assert!(p.is_trusted("10.200.3.4".parse().expect("ip")));
        assert!(!p.is_trusted("11.0.0.1".parse().expect("ip")));
        assert!(p.is_trusted("192.0.2.7".parse().expect("ip")));
        assert!(!p.is_trusted("192.0.2.8".parse().expect("ip")));
        assert!(p.is_trusted("2001:db8:1::5".parse().expect("ip")));
        assert!(!p.is_trusted("2001:db9::5".parse().expect("ip")));
        assert!(p.is_trusted("::1".parse().expect("ip")));
    }

    #[test]
    fn mapped_v6_client_counts_as_v4() {
        let p = policy(&["10.0.0.0/8"]);
        assert!(p.is_trusted("::ffff:10.1.2.3".parse().expect("ip")));
        assert!(!p.is_trusted("::ffff:11.1.2.3".parse().expect("ip")));
        let p = policy(&["::ffff:10.0.0.0/104"]);
        assert!(p.is_trusted("10.1.2.3".parse().expect("ip")));
    }

    #[test]
    fn zero_prefix_matches_the_family() {
        let p = policy(&["0.0.0.0/0"]);
        assert!(p.is_trusted("203.0.113.9".parse().expect("ip")));
        assert!(!p.is_trusted("2001:db8::1".parse().expect("ip")));
    }

    #[test]
    fn errors_name_the_entry() {
        let e = RelayPolicy::new(&[], &strings(&["10.0.0.0/33"])).expect_err("bad prefix");
        assert_eq!(
            e.to_string(),
            "invalid CIDR '10.0.0.0/33': prefix longer than 32"
        );
        let e = RelayPolicy::new(&[], &strings(&["::/129"])).expect_err("bad prefix");
        assert_eq!(
            e.to_string(),
            "invalid CIDR '::/129': prefix longer than 128"
        );
        let e = RelayPolicy::new(&[], &strings(&["10.0.0/8"])).expect_err("bad address");
        assert_eq!(e.to_string(), "invalid CIDR '10.0.0/8': not an IP address");
        let e = RelayPolicy::new(&[], &strings(&["10.0.0.0/x"])).expect_err("bad prefix");
        assert_eq!(
            e.to_string(),
            "invalid CIDR '10.0.0.0/x': prefix is not a number"
        );
        let e = RelayPolicy::new(&strings(&["a b"]), &[]).expect_err("bad domain");
        assert!(e.to_string().starts_with("invalid domain 'a b'"));
    }
}
