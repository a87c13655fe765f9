//! Inputs the fuzz targets found, kept so that they stay fixed.

use std::time::{Duration, Instant};

use serde::Deserialize;
use way2mail_daemon::config::parse;
use way2mail_daemon::logging::LogConfig;

#[derive(Deserialize)]
struct WithLog {
    log: LogConfig,
}

/// `mta_config` found a `[log] level` whose field filter kept the filter's regular
/// expression compiler busy for minutes; the configuration check now refuses it
/// before compiling anything.
#[test]
fn a_pathological_log_filter_is_refused_at_once() {
    let text = include_str!("fixtures/fuzzed-log-level.toml");
    let config: WithLog = parse(text).expect("the fixture parses as TOML");
    let started = Instant::now();
    let err = config.log.validate().unwrap_err();
    assert_eq!(err.key, "log.level");
    assert!(err.reason.contains("longer than"), "{}", err.reason);

    // Within the length bound, its field filter is what is refused.
    let mut short = config.log.clone();
    short.level.truncate(short.level.floor_char_boundary(500));
    let err = short.validate().unwrap_err();
    assert!(err.reason.contains("field filters"), "{}", err.reason);
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// `mta_config` found a `[log] level` with a multi-byte character on which the
/// filter's parser panicked (a byte index inside a character): the daemon would have
/// died with a panic instead of naming the key. Refused with the reason now.
#[test]
fn a_multibyte_log_filter_is_refused_not_a_panic() {
    let text = include_str!("fixtures/fuzzed-log-level-multibyte.toml");
    let config: WithLog = parse(text).expect("the fixture parses as TOML");
    let err = config.log.validate().unwrap_err();
    assert_eq!(err.key, "log.level");
    assert!(err.reason.contains("not accepted"), "{}", err.reason);
}
