//! Outbound delivery settings: `[delivery]`, `[dns]`, `[shaping]`, `[[route]]` and
//! `[[egress]]`. Parsed with the rest of the file; checked by [`DeliveryConfig::check`].

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use std::collections::HashMap;

use way2mail_mta::outbound::route::{DomainMatch, Route, RouteAuth, Routes};
use way2mail_smtp::client::Credentials;

use way2mail_daemon::config::secs;
use way2mail_daemon::ConfigError;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// Deliver queued mail at all (a relay-only test rig may turn it off).
    pub enabled: bool,
    /// Port used for hosts found through MX or A lookups.
    pub port: u16,
    /// First retry delay; each further retry doubles it, up to `retry_max_secs`.
    pub retry_initial_secs: u64,
    pub retry_max_secs: u64,
    /// Random spread added to each retry delay, in percent of it.
    pub retry_jitter_percent: u64,
    /// After this long in the queue a message is bounced as expired.
    pub max_queue_lifetime_secs: u64,
    /// Send the sender one delay notice (RFC 3464 `Action: delayed`) when an attempt
    /// leaves recipients pending and the message has waited this long; 0 = never.
    /// The default is Postfix's `delay_warning_time` of 4 h (`delivery/delay.rs`).
    pub delay_notice_secs: u64,
    /// How long a delivery attempt may hold a message before it is retried anyway.
    pub lease_secs: u64,
    /// Connect, greeting, command and data timeouts for outbound sessions.
    #[serde(rename = "connect_timeout_secs", deserialize_with = "secs")]
    pub connect_timeout: Duration,
    #[serde(rename = "command_timeout_secs", deserialize_with = "secs")]
    pub command_timeout: Duration,
    #[serde(rename = "data_timeout_secs", deserialize_with = "secs")]
    pub data_timeout: Duration,
    /// Mail of a suspended or terminated tenant is looked at again this much later.
    pub hold_recheck_secs: u64,
    /// One JSON line per delivery outcome is appended here; empty (the default)
    /// writes none: the sealed log in the spool is the delivery log of record.
    pub log_file: PathBuf,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            enabled: true,
            port: 25,
            retry_initial_secs: 300,
            retry_max_secs: 4 * 3600,
            retry_jitter_percent: 20,
            max_queue_lifetime_secs: 5 * 24 * 3600,
            delay_notice_secs: 4 * 3600,
            lease_secs: 900,
            connect_timeout: Duration::from_secs(30),
            command_timeout: Duration::from_secs(300),
            data_timeout: Duration::from_secs(600),
            hold_recheck_secs: 900,
            log_file: PathBuf::new(),
        }
    }
}

/// Per-destination limits. A destination is a next-hop domain.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShapingConfig {
    pub max_connections: usize,
    pub max_messages_per_connection: usize,
    /// 0 = no limit.
    pub max_messages_per_second: u32,
    pub max_messages_per_minute: u32,
    pub max_messages_per_hour: u32,
    /// After this many consecutive 4xx or connection failures, halve the
    /// destination's rate; it recovers gradually after successes.
    pub backoff_after_failures: u32,
}

impl Default for ShapingConfig {
    fn default() -> Self {
        // Polite enough for the large mailbox providers: few parallel connections,
        // connections reused for a bounded number of messages.
        ShapingConfig {
            max_connections: 10,
            max_messages_per_connection: 100,
            max_messages_per_second: 0,
            max_messages_per_minute: 0,
            max_messages_per_hour: 0,
            backoff_after_failures: 5,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteAuthConfig {
    pub user: String,
    pub password_file: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub domain: String,
    pub host: String,
    #[serde(default = "default_route_tls")]
    pub tls: String,
    #[serde(default)]
    pub auth: Option<RouteAuthConfig>,
}

fn default_route_tls() -> String {
    "opportunistic".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EgressConfig {
    pub source: String,
    pub ehlo: String,
}

/// The checked egress: where outbound connections come from and what they say.
#[derive(Debug, Clone)]
pub struct Egress {
    pub source: Option<IpAddr>,
    pub ehlo: String,
}

impl DeliveryConfig {
    pub fn check(&self) -> Result<(), ConfigError> {
        let positive = [
            ("delivery.port", u64::from(self.port)),
            ("delivery.retry_initial_secs", self.retry_initial_secs),
            ("delivery.retry_max_secs", self.retry_max_secs),
            (
                "delivery.max_queue_lifetime_secs",
                self.max_queue_lifetime_secs,
            ),
            ("delivery.lease_secs", self.lease_secs),
            ("delivery.hold_recheck_secs", self.hold_recheck_secs),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(ConfigError::new(key, "must be at least 1"));
            }
        }
        let timeouts = [
            ("delivery.connect_timeout_secs", self.connect_timeout),
            ("delivery.command_timeout_secs", self.command_timeout),
            ("delivery.data_timeout_secs", self.data_timeout),
        ];
        for (key, timeout) in timeouts {
            if timeout.is_zero() {
                return Err(ConfigError::new(key, "must be at least 1"));
            }
        }
        if self.retry_max_secs < self.retry_initial_secs {
            return Err(ConfigError::new(
                "delivery.retry_max_secs",
                "must not be below delivery.retry_initial_secs",
            ));
        }
        if self.retry_jitter_percent > 100 {
            return Err(ConfigError::new(
                "delivery.retry_jitter_percent",
                "must be 0 to 100",
            ));
        }
        Ok(())
    }
}

impl ShapingConfig {
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.max_connections == 0 {
            return Err(ConfigError::new(
                "shaping.max_connections",
                "must be at least 1",
            ));
        }
        if self.max_messages_per_connection == 0 {
            return Err(ConfigError::new(
                "shaping.max_messages_per_connection",
                "must be at least 1",
            ));
        }
        Ok(())
    }
}

/// Checks `[[egress]]`: at most one entry for now, its source a local IP literal.
pub fn check_egress(egress: &[EgressConfig], hostname: &str) -> Result<Egress, ConfigError> {
    match egress {
        [] => Ok(Egress {
            source: None,
            ehlo: hostname.to_string(),
        }),
        [one] => {
            let source = one.source.parse::<IpAddr>().map_err(|_| {
                ConfigError::new(
                    "egress[0].source",
                    format!("'{}' is not an IP address", one.source),
                )
            })?;
            if one.ehlo.trim().is_empty() || one.ehlo.contains(char::is_whitespace) {
                return Err(ConfigError::new("egress[0].ehlo", "must be a host name"));
            }
            Ok(Egress {
                source: Some(source),
                ehlo: one.ehlo.clone(),
            })
        }
        _ => Err(ConfigError::new(
            "egress",
            "only one [[egress]] entry is supported so far",
        )),
    }
}

/// The key a route's credentials are kept under: its domain, or `*`.
pub fn route_key(route: &Route) -> String {
    match &route.domain {
        DomainMatch::Exact(d) => d.clone(),
        DomainMatch::Any => "*".into(),
    }
}

/// Checks every `[[route]]`, builds the route table, and reads the password files of
/// routes with `auth` (at start and at every reload; the secrets stay in memory
/// only).
pub fn check_routes(
    routes: &[RouteConfig],
) -> Result<(Routes, HashMap<String, Credentials>), ConfigError> {
    let mut out = Vec::with_capacity(routes.len());
    let mut credentials = HashMap::new();
    for (i, r) in routes.iter().enumerate() {
        let auth = r.auth.as_ref().map(|a| RouteAuth {
            user: a.user.clone(),
            password_file: a.password_file.clone(),
        });
        let route = Route::parse(&r.domain, &r.host, &r.tls, auth)
            .map_err(|e| ConfigError::new(format!("route[{i}]"), e.to_string()))?;
        if let Some(a) = &r.auth {
            let key = format!("route[{i}].auth.password_file");
            let text = std::fs::read_to_string(&a.password_file).map_err(|e| {
                ConfigError::new(
                    &key,
                    format!("cannot read {}: {e}", a.password_file.display()),
                )
            })?;
            let password = text.trim_end_matches(['\r', '\n']).to_string();
            if password.is_empty() {
                return Err(ConfigError::new(key, "the file is empty"));
            }
            credentials.insert(
                route_key(&route),
                Credentials {
                    user: a.user.clone(),
                    password,
                },
            );
        }
        out.push(route);
    }
    Ok((Routes::new(out), credentials))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::Config;

    #[test]
    fn delay_notices_default_to_four_hours_and_can_be_turned_off() {
        let delay = |text: &str| {
            Config::parse(text)
                .unwrap()
                .validate()
                .unwrap()
                .raw
                .delivery
                .delay_notice_secs
        };
        assert_eq!(delay(""), 14_400);
        assert_eq!(delay("[delivery]\ndelay_notice_secs = 1\n"), 1);
        assert_eq!(delay("[delivery]\ndelay_notice_secs = 0\n"), 0);
    }

    #[test]
    fn timeouts_keep_their_keys_and_defaults() {
        let d = Config::parse("").unwrap().validate().unwrap().raw.delivery;
        assert_eq!(
            [d.connect_timeout, d.command_timeout, d.data_timeout].map(|t| t.as_secs()),
            [30, 300, 600]
        );
        let d = Config::parse(
            "[delivery]\nconnect_timeout_secs = 1\ncommand_timeout_secs = 2\n\
             data_timeout_secs = 3\n",
        )
        .unwrap()
        .validate()
        .unwrap()
        .raw
        .delivery;
        assert_eq!(
            (d.connect_timeout, d.command_timeout, d.data_timeout),
            (
                Duration::from_secs(1),
                Duration::from_secs(2),
                Duration::from_secs(3)
            )
        );
        for key in [
            "connect_timeout_secs",
            "command_timeout_secs",
            "data_timeout_secs",
        ] {
            let e = Config::parse(&format!("[delivery]\n{key} = 0\n"))
                .unwrap()
                .validate()
                .unwrap_err();
            assert_eq!(e.key, format!("delivery.{key}"));
        }
    }
}
