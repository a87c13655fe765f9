//! Where a webhook may be posted: the URL's form, and the addresses its host
//! resolves to. An endpoint is a URL a tenant typed, so it is treated as an attack
//! on the network the MTA sits in (server-side request forgery): unless
//! `[webhooks] allow_private` says otherwise, no post goes to loopback, private,
//! link-local (cloud metadata services live at 169.254.169.254 and fd00:ec2::254),
//! shared (CGNAT), multicast, documentation or otherwise non-public addresses. The
//! check runs on the addresses the post then connects to, at every post, so a name
//! that resolves to a public address when registered and to a private one later
//! (DNS rebinding) is refused too.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use hyper::Uri;

use crate::config::webhooks::WebhooksConfig;

/// An endpoint URL, checked for form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub https: bool,
    /// The host as the URL gives it (an IPv6 literal without brackets).
    pub host: String,
    pub port: u16,
    /// Path and query, `/` at least.
    pub path: String,
}

impl Target {
    /// Parses `url` and checks its scheme against `config`.
    pub fn parse(url: &str, config: &WebhooksConfig) -> Result<Target, String> {
        if url.len() > 2048 || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("not a URL".into());
        }
        let uri: Uri = url.parse().map_err(|_| "not a URL".to_string())?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") if config.allow_http => false,
            Some("http") => {
                return Err("plain http:// is not allowed here; use https://".into());
            }
            _ => return Err("the URL must start with https://".into()),
        };
        let authority = uri.authority().ok_or("the URL has no host")?;
        if authority.as_str().contains('@') {
            return Err("the URL may not carry a user name or password".into());
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        if host.is_empty() {
            return Err("the URL has no host".into());
        }
        let path = uri
            .path_and_query()
            .map_or("/".to_string(), |p| p.as_str().to_string());
        Ok(Target {
            https,
            port: uri.port_u16().unwrap_or(if https { 443 } else { 80 }),
            host,
            path: if path.is_empty() { "/".into() } else { path },
        })
    }

    /// The addresses to connect to: the host's, each allowed by `config`. An error
    /// names why there is none.
    pub async fn resolve(&self, config: &WebhooksConfig) -> Result<Vec<SocketAddr>, String> {
        let found: Vec<SocketAddr> = match self.host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, self.port)],
            Err(_) => tokio::net::lookup_host((self.host.as_str(), self.port))
                .await
                .map_err(|e| format!("{} does not resolve: {e}", self.host))?
                .collect(),
        };
        if found.is_empty() {
            return Err(format!("{} has no address", self.host));
        }
        if config.allow_private {
            return Ok(found);
        }
        // One non-public address refuses the whole name: a name that mixes public
        // and private addresses is how rebinding attacks pick their target.
        if let Some(bad) = found.iter().find(|a| !is_public(a.ip())) {
            return Err(format!(
                "{} resolves to {}, which is not a public address (see [webhooks] allow_private)",
                self.host,
                bad.ip()
            ));
        }
        Ok(found)
    }
}

/// Whether `ip` is an address on the public Internet.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        // Shared address space (CGNAT), RFC 6598.
        || (a == 100 && (64..128).contains(&b))
        // IETF protocol assignments, RFC 6890.
        || (a == 192 && b == 0 && c == 0)
        // Benchmarking, RFC 2544.
        || (a == 198 && (b == 18 || b == 19))
        // Reserved (class E).
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        // Unique local (fc00::/7, AWS's metadata service is fd00:ec2::254).
        || (first & 0xfe00) == 0xfc00
        // Link-local.
        || (first & 0xffc0) == 0xfe80
        // Documentation.
        || first == 0x2001 && ip.segments()[1] == 0x0db8
        // NAT64 (64:ff9b::/96) reaches IPv4 space whose kind is unknown here.
        || (first == 0x0064 && ip.segments()[1] == 0xff9b)
        // IPv4-compatible and other reserved ::/8.
        || first == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strict() -> WebhooksConfig {
        WebhooksConfig::default()
    }

    #[test]
    fn urls_are_checked_for_form_and_scheme() {
        let t = Target::parse("https://hooks.example.com/way2mail?x=1", &strict()).expect("ok");
        assert_eq!(
            t,
            Target {
                https: true,
                host: "hooks.example.com".into(),
                port: 443,
                path: "/way2mail?x=1".into()
            }
        );
        let t = Target::parse("https://[2001:db8::1]:8443", &strict()).expect("ok");
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("2001:db8::1", 8443, "/")
        );
        for bad in [
            "http://hooks.example.com/",
            "ftp://hooks.example.com/",
            "https://user:pw@hooks.example.com/",
            "https:///nohost",
            "hooks.example.com",
            "https://hooks.example.com/a b",
            "",
        ] {
            assert!(Target::parse(bad, &strict()).is_err(), "{bad}");
        }
        let open = WebhooksConfig {
            allow_http: true,
            ..WebhooksConfig::default()
        };
        let t = Target::parse("http://hooks.example.com/", &open).expect("http allowed");
        assert_eq!((t.https, t.port), (false, 80));
    }

    #[test]
    fn only_public_addresses_are_public() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "192.0.2.10",
            "198.18.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00:ec2::254",
            "fc00::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "2001:db8::1",
            "64:ff9b::7f00:1",
            "ff02::1",
        ] {
            let ip: IpAddr = private.parse().expect(private);
            assert!(!is_public(ip), "{private}");
        }
        for public in ["8.8.8.8", "1.1.1.1", "2606:4700::1111", "::ffff:8.8.8.8"] {
            let ip: IpAddr = public.parse().expect(public);
            assert!(is_public(ip), "{public}");
        }
    }

    #[tokio::test]
    async fn private_targets_are_refused_unless_allowed() {
        let t = Target::parse("https://127.0.0.1:8443/hook", &strict()).expect("form");
        let refused = t.resolve(&strict()).await.expect_err("loopback");
        assert!(refused.contains("not a public address"), "{refused}");
        let t = Target::parse("https://localhost/hook", &strict()).expect("form");
        assert!(t.resolve(&strict()).await.is_err());
        let open = WebhooksConfig {
            allow_private: true,
            ..WebhooksConfig::default()
        };
        let t = Target::parse("https://127.0.0.1:8443/hook", &open).expect("form");
        assert_eq!(
            t.resolve(&open).await.expect("allowed"),
            vec![SocketAddr::from(([127, 0, 0, 1], 8443))]
        );
    }
}
