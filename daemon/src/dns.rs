//! DNS for everything Way2Mail looks up: the MTA's MX/A/AAAA resolution, its inbound
//! SPF/DKIM/DMARC/ARC checks, and control's `domain.verify`. One settings type (the
//! `[dns]` table of both daemons) and one resolver builder, so that every lookup goes
//! to `nameservers` (a stub DNS in the tests) and none to a hard-coded resolver.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use crate::config::ConfigError;

/// `[dns]` as written in either daemon's TOML; [`DnsConfig::validate`] checks it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnsConfig {
    /// `"IP:PORT"` of recursive resolvers; empty = the system's /etc/resolv.conf.
    pub nameservers: Vec<String>,
    pub timeout_ms: u64,
    pub attempts: usize,
}

impl Default for DnsConfig {
    fn default() -> Self {
        let d = DnsSettings::default();
        DnsConfig {
            nameservers: Vec::new(),
            timeout_ms: d.timeout.as_millis() as u64,
            attempts: d.attempts,
        }
    }
}

impl DnsConfig {
    /// The checked settings; errors name the key (`dns.nameservers[1]`).
    pub fn validate(&self) -> Result<DnsSettings, ConfigError> {
        let mut nameservers = Vec::with_capacity(self.nameservers.len());
        for (i, text) in self.nameservers.iter().enumerate() {
            let addr = text.parse::<SocketAddr>().map_err(|_| {
                ConfigError::new(
                    format!("dns.nameservers[{i}]"),
                    format!("{text:?} is not IP:PORT (e.g. \"127.0.0.1:53\")"),
                )
            })?;
            nameservers.push(addr);
        }
        if self.timeout_ms == 0 {
            return Err(ConfigError::new("dns.timeout_ms", "must be at least 1"));
        }
        if self.attempts == 0 {
            return Err(ConfigError::new("dns.attempts", "must be at least 1"));
        }
        Ok(DnsSettings {
            nameservers,
            timeout: Duration::from_millis(self.timeout_ms),
            attempts: self.attempts,
        })
    }
}

/// `[dns]`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsSettings {
    /// Recursive resolvers to ask (UDP, TCP when an answer is truncated); empty means
    /// the nameservers of the system's resolv.conf.
    pub nameservers: Vec<SocketAddr>,
    /// How long to wait for one answer.
    pub timeout: Duration,
    /// How many times to send a query before giving up (at least 1).
    pub attempts: usize,
}

impl Default for DnsSettings {
    fn default() -> DnsSettings {
        DnsSettings {
            nameservers: Vec::new(),
            timeout: Duration::from_secs(2),
            attempts: 2,
        }
    }
}

use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::TokioResolver;

/// Builds a resolver from `[dns]`. Its queries run inside the tokio runtime that
/// awaits them, so build it on the thread (core) that will use it. Fails only when
/// `nameservers` is empty and the system configuration (resolv.conf) cannot be read,
/// or the resolver cannot be set up.
pub fn resolver(settings: &DnsSettings) -> std::io::Result<TokioResolver> {
    let servers: Vec<SocketAddr> = if settings.nameservers.is_empty() {
        let (system, _) = hickory_resolver::system_conf::read_system_conf().map_err(|e| {
            std::io::Error::other(format!("reading the system DNS configuration: {e}"))
        })?;
        system
            .name_servers
            .iter()
            .flat_map(|ns| {
                ns.connections
                    .iter()
                    .map(move |c| SocketAddr::new(ns.ip, c.port))
            })
            .collect()
    } else {
        settings.nameservers.clone()
    };
    let mut group = Vec::with_capacity(servers.len());
    for addr in dedup(servers) {
        // UDP first; hickory switches to TCP when an answer is truncated.
        let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
        for connection in &mut ns.connections {
            connection.port = addr.port();
        }
        group.push(ns);
    }
    // No domain, no search list: every name we ask is absolute.
    let config = ResolverConfig::from_parts(None, Vec::new(), group);
    TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
        .with_options(options(settings))
        .build()
        .map_err(|e| std::io::Error::other(format!("setting up the DNS resolver: {e}")))
}

/// Resolver options: our timeout and attempts, cache bounds, DNS only.
fn options(settings: &DnsSettings) -> ResolverOpts {
    let mut opts = ResolverOpts::default();
    opts.timeout = settings.timeout;
    // hickory counts retries after the first try; `attempts` counts tries.
    opts.attempts = settings.attempts.max(1) - 1;
    opts.ndots = 0;
    opts.cache_size = 4096;
    // TTLs are honoured as given (a TTL of 0 means "do not cache"), but a zone cannot
    // pin an answer for longer than a day, or a negative answer for more than an hour
    // (RFC 2308 suggests 1-3 hours), so fixed DNS is picked up soon.
    opts.positive_min_ttl = Some(Duration::ZERO);
    opts.positive_max_ttl = Some(Duration::from_secs(86_400));
    opts.negative_min_ttl = Some(Duration::ZERO);
    opts.negative_max_ttl = Some(Duration::from_secs(3_600));
    // Like Postfix's smtp_host_lookup = dns: /etc/hosts does not route mail.
    opts.use_hosts_file = ResolveHosts::Never;
    opts
}

fn dedup(addrs: Vec<SocketAddr>) -> Vec<SocketAddr> {
    let mut seen = Vec::with_capacity(addrs.len());
    for addr in addrs {
        if !seen.contains(&addr) {
            seen.push(addr);
        }
    }
    seen
}

/// The text of each TXT record among `records` (a lookup's answers), its strings
/// joined as RFC 7208 §3.3 says, read as UTF-8 lossily; other records are skipped.
pub fn txt_texts(records: &[hickory_resolver::proto::rr::Record]) -> Vec<String> {
    records
        .iter()
        .filter_map(|record| match &record.data {
            hickory_resolver::proto::rr::RData::TXT(txt) => {
                let joined: Vec<u8> = txt
                    .txt_data
                    .iter()
                    .flat_map(|s| s.iter().copied())
                    .collect();
                Some(String::from_utf8_lossy(&joined).into_owned())
            }
            _ => None,
        })
        .collect()
}

/// An address as a DNS blocklist is asked about it: the octets of an IPv4 address
/// reversed (`10.2.0.192` for 192.0.2.10), the 32 nibbles of an IPv6 address
/// reversed, dot separated (RFC 5782 §2.4); an IPv4-mapped IPv6 address in its
/// IPv4 form.
pub fn dnsbl_reversed(ip: std::net::IpAddr) -> String {
    match ip.to_canonical() {
        std::net::IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            format!("{d}.{c}.{b}.{a}")
        }
        std::net::IpAddr::V6(v6) => {
            let mut name = String::with_capacity(63);
            for byte in v6.octets().iter().rev() {
                for nibble in [byte & 0x0f, byte >> 4] {
                    if !name.is_empty() {
                        name.push('.');
                    }
                    name.push(char::from_digit(u32::from(nibble), 16).unwrap_or('0'));
                }
            }
            name
        }
    }
}

/// `<reversed address>.<zone>`, the name whose A records say whether `zone` lists
/// `ip` ([`dnsbl_reversed`]); without a trailing dot.
pub fn dnsbl_name(ip: std::net::IpAddr, zone: &str) -> String {
    format!("{}.{}", dnsbl_reversed(ip), zone.trim_end_matches('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<DnsSettings, ConfigError> {
        let config: DnsConfig = toml::from_str(text).expect("toml");
        config.validate()
    }

    #[test]
    fn defaults_and_values() {
        let d = parse("").expect("defaults");
        assert_eq!(d, DnsSettings::default());
        let s = parse(
            "nameservers = [\"127.0.0.1:5353\", \"[::1]:53\"]\ntimeout_ms = 300\nattempts = 1",
        )
        .expect("valid");
        assert_eq!(s.nameservers.len(), 2);
        assert_eq!(s.nameservers[0].port(), 5353);
        assert_eq!(s.timeout, Duration::from_millis(300));
        assert_eq!(s.attempts, 1);
    }

    #[test]
    fn errors_name_the_key() {
        for (text, key) in [
            (
                "nameservers = [\"127.0.0.1:53\", \"127.0.0.1\"]",
                "dns.nameservers[1]",
            ),
            (
                "nameservers = [\"resolver.example:53\"]",
                "dns.nameservers[0]",
            ),
            ("timeout_ms = 0", "dns.timeout_ms"),
            ("attempts = 0", "dns.attempts"),
        ] {
            let e = parse(text).expect_err(text);
            assert_eq!(e.key, key, "{text}");
        }
    }

    #[test]
    fn ipv4_octets_reversed() {
        let ip: std::net::IpAddr = "192.0.2.10".parse().expect("ip");
        assert_eq!(dnsbl_reversed(ip), "10.2.0.192");
        assert_eq!(
            dnsbl_name(ip, "zen.spamhaus.org"),
            "10.2.0.192.zen.spamhaus.org"
        );
        let mapped: std::net::IpAddr = "::ffff:1.2.3.4".parse().expect("ip");
        assert_eq!(dnsbl_reversed(mapped), "4.3.2.1");
    }

    #[test]
    fn ipv6_nibbles_reversed() {
        let ip: std::net::IpAddr = "2001:db8:1:2:3:4:567:89ab".parse().expect("ip");
        assert_eq!(
            dnsbl_reversed(ip),
            "b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2"
        );
        let ip: std::net::IpAddr = "2001:db8::25".parse().expect("ip");
        let name = dnsbl_reversed(ip);
        assert_eq!(name.split('.').count(), 32);
        assert!(name.starts_with("5.2.0.0.0.0"), "{name}");
        assert!(name.ends_with("8.b.d.0.1.0.0.2"), "{name}");
        assert_eq!(
            dnsbl_name("2001:db8::1".parse().expect("ip"), "bl.example."),
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.bl.example"
        );
    }
}
