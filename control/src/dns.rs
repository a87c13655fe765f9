//! DNS for everything Way2Mail looks up: the MTA's MX/A/AAAA resolution, its inbound
//! SPF/DKIM/DMARC/ARC checks, and control's `domain.verify`. One settings type (the
//! `[dns]` table of both daemons) and one resolver builder, so that every lookup goes
//! to `nameservers` (a stub DNS in the tests) and none to a hard-coded resolver.

use std::net::SocketAddr;
use std::time::Duration;

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
