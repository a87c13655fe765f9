//! Configured routes (`[[route]]`): which recipient domains bypass MX lookup and go to
//! a fixed host instead (a smart host, a delivery partner, a test sink).
//!
//! Pure and synchronous: [`Route::parse`] turns the three strings of a `[[route]]` entry
//! into a typed [`Route`], naming the offending value when one is wrong, and
//! [`Routes::find`] picks the route for a recipient domain (an exact domain first,
//! then `"*"`). The resolver in `mx.rs` turns the chosen route into next hops.

use std::net::{IpAddr, Ipv6Addr};
use std::path::PathBuf;

use way2mail_smtp::client::TlsPolicy;

/// A `[[route]]` entry that cannot be used, with the value at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RouteError {
    /// `domain` is neither `"*"` nor a domain name.
    #[error("route domain '{domain}': {reason}")]
    Domain {
        domain: String,
        reason: &'static str,
    },
    /// `host` is not `HOST:PORT` or `[IP]:PORT`.
    #[error("route host '{host}': expected HOST:PORT or [IP]:PORT ({reason})")]
    Host { host: String, reason: &'static str },
    /// `tls` is not one of the three policies.
    #[error("route tls '{tls}': expected \"opportunistic\", \"required\" or \"none\"")]
    Tls { tls: String },
}

/// Which recipient domains a route applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomainMatch {
    /// Exactly this domain (stored lowercase, without a trailing dot).
    Exact(String),
    /// `"*"`: every domain without an exact route.
    Any,
}

/// Where a route sends mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteHost {
    /// A host name, resolved through A/AAAA only (never MX): the operator named the
    /// machine, not a mail domain. Stored lowercase, without a trailing dot.
    Name(String),
    /// `[IP]`: this address, no DNS at all.
    Ip(IpAddr),
}

/// Credentials for a smart host that wants SMTP AUTH. The password stays in its file
/// (read when connecting), so it never sits in the configuration or in a log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteAuth {
    pub user: String,
    pub password_file: PathBuf,
}

/// One `[[route]]` entry, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub domain: DomainMatch,
    pub host: RouteHost,
    pub port: u16,
    pub tls: TlsPolicy,
    pub auth: Option<RouteAuth>,
}

impl Route {
    /// Parses a `[[route]]` entry: `domain` is a domain name or `"*"`, `host` is
    /// `HOST:PORT` or `[IP]:PORT` (IPv6 as `[2001:db8::1]:25`, the `IPv6:` tag of
    /// RFC 5321 address literals is accepted too), `tls` is `opportunistic`, `required`
    /// or `none`.
    pub fn parse(
        domain: &str,
        host: &str,
        tls: &str,
        auth: Option<RouteAuth>,
    ) -> Result<Route, RouteError> {
        let domain = parse_domain(domain)?;
        let (host, port) = parse_host(host)?;
        let tls = parse_tls(tls)?;
        Ok(Route {
            domain,
            host,
            port,
            tls,
            auth,
        })
    }
}

/// All configured routes, in configuration order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Routes(Vec<Route>);

impl Routes {
    pub fn new(routes: Vec<Route>) -> Routes {
        Routes(routes)
    }

    /// The route for a recipient domain: the first exact match (case-insensitive,
    /// a trailing dot ignored), else the first `"*"`, else none (MX lookup).
    pub fn find(&self, domain: &str) -> Option<&Route> {
        let wanted = domain.strip_suffix('.').unwrap_or(domain);
        self.0
            .iter()
            .find(|r| matches!(&r.domain, DomainMatch::Exact(d) if d.eq_ignore_ascii_case(wanted)))
            .or_else(|| self.0.iter().find(|r| r.domain == DomainMatch::Any))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn parse_domain(domain: &str) -> Result<DomainMatch, RouteError> {
    if domain == "*" {
        return Ok(DomainMatch::Any);
    }
    let name = check_name(domain).map_err(|reason| RouteError::Domain {
        domain: domain.to_string(),
        reason,
    })?;
    Ok(DomainMatch::Exact(name))
}

fn parse_host(host: &str) -> Result<(RouteHost, u16), RouteError> {
    let bad = |reason| RouteError::Host {
        host: host.to_string(),
        reason,
    };
    let (name, port) = host.rsplit_once(':').ok_or_else(|| bad("no port"))?;
    let port = match port.parse::<u16>() {
        Ok(0) | Err(_) => return Err(bad("the port must be a number from 1 to 65535")),
        Ok(port) => port,
    };
    if let Some(inner) = name.strip_prefix('[') {
        let literal = inner.strip_suffix(']').ok_or_else(|| bad("unclosed '['"))?;
        let literal = literal
            .get(..5)
            .filter(|tag| tag.eq_ignore_ascii_case("IPv6:"))
            .map_or(literal, |_| &literal[5..]);
        let ip = literal
            .parse::<IpAddr>()
            .map_err(|_| bad("not an IP address inside '[...]'"))?;
        return Ok((RouteHost::Ip(ip), port));
    }
    if name.contains(['[', ']']) || name.parse::<Ipv6Addr>().is_ok() {
        return Err(bad("an IPv6 address needs brackets"));
    }
    // A bare IPv4 address cannot be looked up as a name either; take it as meant.
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Ok((RouteHost::Ip(ip), port));
    }
    let name = check_name(name).map_err(bad)?;
    Ok((RouteHost::Name(name), port))
}

fn parse_tls(tls: &str) -> Result<TlsPolicy, RouteError> {
    match tls.to_ascii_lowercase().as_str() {
        "opportunistic" => Ok(TlsPolicy::Opportunistic),
        "required" => Ok(TlsPolicy::Required),
        "none" => Ok(TlsPolicy::None),
        _ => Err(RouteError::Tls {
            tls: tls.to_string(),
        }),
    }
}

/// Checks a host or domain name in its ASCII form (letters, digits, `-`, `_` in labels
/// of 1..=63 octets, at most 253 in all) and returns it lowercase without a trailing dot.
/// Underscores are tolerated because real internal host names carry them.
fn check_name(name: &str) -> Result<String, &'static str> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() {
        return Err("empty name");
    }
    if name.len() > 253 {
        return Err("longer than 253 characters");
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err("empty label");
        }
        if label.len() > 63 {
            return Err("a label is longer than 63 characters");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("a label starts or ends with '-'");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err("only letters, digits, '-' and '_' are allowed (IDNs in A-label form)");
        }
    }
    Ok(name.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn route(domain: &str, host: &str) -> Route {
        Route::parse(domain, host, "opportunistic", None).unwrap()
    }

    #[test]
    fn parses_names_and_literals() {
        let r = Route::parse("Example.NET.", "SMTP.example.net:587", "required", None).unwrap();
        assert_eq!(r.domain, DomainMatch::Exact("example.net".into()));
        assert_eq!(r.host, RouteHost::Name("smtp.example.net".into()));
        assert_eq!((r.port, r.tls), (587, TlsPolicy::Required));

        let r = Route::parse("*", "[192.0.2.1]:25", "none", None).unwrap();
        assert_eq!(r.domain, DomainMatch::Any);
        assert_eq!(
            r.host,
            RouteHost::Ip(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)))
        );
        assert_eq!(r.tls, TlsPolicy::None);

        for host in ["[2001:db8::1]:2525", "[IPv6:2001:db8::1]:2525"] {
            let r = route("a.example", host);
            assert_eq!(r.host, RouteHost::Ip("2001:db8::1".parse().unwrap()));
            assert_eq!(r.port, 2525);
        }
        assert_eq!(
            route("a.example", "192.0.2.7:25").host,
            RouteHost::Ip("192.0.2.7".parse().unwrap())
        );
    }

    #[test]
    fn rejects_bad_entries_and_names_the_value() {
        let hosts = [
            "smtp.example.net",
            "smtp.example.net:",
            "smtp.example.net:0",
            "smtp.example.net:65536",
            "smtp.example.net:x25",
            "[192.0.2.1:25",
            "[not-an-ip]:25",
            "[]:25",
            "2001:db8::1:25",
            ":25",
            "bad host:25",
            "-lead.example:25",
            "a..b:25",
            "x]:25",
        ];
        for host in hosts {
            let err = Route::parse("example.net", host, "none", None).unwrap_err();
            assert!(matches!(err, RouteError::Host { .. }), "{host}: {err:?}");
            let message = err.to_string();
            assert!(message.contains(&format!("'{host}'")), "{message}");
            assert!(
                message.contains("expected HOST:PORT or [IP]:PORT"),
                "{message}"
            );
        }
        let long_label = format!("{}.example", "a".repeat(64));
        for domain in [
            "",
            ".",
            "exa mple.net",
            "a..b",
            &long_label,
            "ex*ample.net",
            "**",
        ] {
            let err = Route::parse(domain, "[192.0.2.1]:25", "none", None).unwrap_err();
            assert!(
                matches!(err, RouteError::Domain { .. }),
                "{domain:?}: {err:?}"
            );
            assert!(err.to_string().contains(&format!("'{domain}'")));
        }
        for tls in ["", "yes", "starttls", "dane"] {
            let err = Route::parse("*", "[192.0.2.1]:25", tls, None).unwrap_err();
            assert_eq!(err, RouteError::Tls { tls: tls.into() });
        }
    }

    #[test]
    fn exact_beats_any_whatever_the_order() {
        let routes = Routes::new(vec![
            route("*", "[192.0.2.1]:25"),
            route("example.net", "[192.0.2.2]:25"),
            route("example.net", "[192.0.2.3]:25"),
        ]);
        let ip = |d: &str| routes.find(d).map(|r| r.host.clone());
        let at = |last: u8| Some(RouteHost::Ip(IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))));
        assert_eq!(ip("example.net"), at(2));
        assert_eq!(ip("EXAMPLE.Net."), at(2));
        assert_eq!(ip("sub.example.net"), at(1));
        assert_eq!(ip("other.org"), at(1));

        let only_exact = Routes::new(vec![route("example.net", "relay.example:25")]);
        assert!(only_exact.find("example.org").is_none());
        assert!(Routes::default().find("example.net").is_none());
    }
}
