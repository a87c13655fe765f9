//! The MTA's configuration file, as far as a library reaches it. Its `Config` lives
//! in the daemon binary (`mta/src/config/`), so this target parses the sections
//! whose types and checks are in libraries, through the same
//! `way2mail_daemon::config::parse`, and runs the same checks `Config::validate`
//! runs on them: `[dns]` (`DnsConfig::validate`), `[relay]` (`RelayPolicy::new`) and
//! `[log]` (`LogConfig::validate`). What is left is listed in
//! docs/security.md ("Fuzzing").

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde::Deserialize;
use way2mail_daemon::config::parse;
use way2mail_daemon::dns::DnsConfig;
use way2mail_daemon::logging::LogConfig;
use way2mail_smtp::relay::RelayPolicy;

/// The reachable sections; the others are ignored, not refused.
#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct Reachable {
    relay: Relay,
    log: LogConfig,
    dns: DnsConfig,
}

/// `[relay]` as `mta/src/config/mod.rs` declares it.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct Relay {
    domains: Vec<String>,
    trusted_networks: Vec<String>,
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = parse::<Reachable>(text) else {
        return;
    };
    let _ = config.dns.validate();
    let _ = RelayPolicy::new(&config.relay.domains, &config.relay.trusted_networks);
    let _ = config.log.validate();
});
