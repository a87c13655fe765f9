//! The `[log]` table both daemons share, and the one way they set up logging: to
//! stderr (where journald or a redirect collects it), no colours, text or JSON lines,
//! `RUST_LOG` overriding the configured level. The level sits behind a reload
//! layer, so that a daemon re-reading its configuration can change it in place
//! ([`apply`]); the format is chosen once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use serde::Deserialize;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{reload, EnvFilter, Registry};

use crate::config::ConfigError;

mod fields;

/// The longest `[log] level` accepted; a real filter is a few dozen characters.
const MAX_LEVEL_LEN: usize = 512;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
    pub level: String,
    /// Full recipient addresses in log lines (default: the domain only, because the
    /// log is outside retention and erasure).
    pub recipients: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            level: "info".into(),
            recipients: false,
        }
    }
}

impl LogConfig {
    /// Checks `level` as a filter: a level (`info`) or comma-separated
    /// `target=level` and `target[span]=level` directives. Field filters
    /// (`{field=value}`) are refused: their values compile to regular expressions,
    /// and a pathological one kept the filter's compiler busy for minutes (found by
    /// the `mta_config` fuzz target). `RUST_LOG` still takes them, at the
    /// operator's own risk.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let level = &self.level;
        if level.len() > MAX_LEVEL_LEN {
            return Err(ConfigError::new(
                "log.level",
                format!("longer than {MAX_LEVEL_LEN} characters"),
            ));
        }
        if level.contains(['{', '}']) {
            return Err(ConfigError::new(
                "log.level",
                "field filters ({field=value}) are not accepted here; use RUST_LOG",
            ));
        }
        // The filter's parser slices its input by byte positions and panicked on
        // multi-byte characters (another fuzz finding): only ASCII reaches it.
        if let Some(bad) = level.chars().find(|&c| !allowed_in_level(c)) {
            return Err(ConfigError::new(
                "log.level",
                format!("{bad:?} is not accepted: use letters, digits and _ - : . , = [ ] * only"),
            ));
        }
        tracing_subscriber::EnvFilter::try_new(level).map_err(|e| {
            ConfigError::new(
                "log.level",
                format!(
                    "expected error, warn, info, debug or trace, or target=level directives ({e})"
                ),
            )
        })?;
        Ok(())
    }
}

fn allowed_in_level(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_-:.,=[]*".contains(c)
}

/// `[log] recipients` of the running process, for the log lines written away from
/// the configuration (set by [`init`]).
static RECIPIENTS: AtomicBool = AtomicBool::new(false);

/// Whether log lines may carry full recipient addresses (`[log] recipients`).
pub fn recipients() -> bool {
    RECIPIENTS.load(Ordering::Relaxed)
}

/// The handle that changes the level of the installed subscriber; `None` when
/// `RUST_LOG` chose the filter, which a configuration reload then leaves alone.
static LEVEL: OnceLock<Option<reload::Handle<EnvFilter, Registry>>> = OnceLock::new();

/// Installs the global subscriber; call once, after the configuration was checked.
pub fn init(log: &LogConfig) {
    RECIPIENTS.store(log.recipients, Ordering::Relaxed);
    let (filter, from_env) = match EnvFilter::try_from_default_env() {
        Ok(filter) => (filter, true),
        Err(_) => (EnvFilter::new(&log.level), false),
    };
    let (filter, handle) = reload::Layer::new(filter);
    let _ = LEVEL.set((!from_env).then_some(handle));
    let text = (log.format == LogFormat::Text).then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .fmt_fields(fields::TextFields)
    });
    let json = (log.format == LogFormat::Json).then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .json()
            .flatten_event(true)
    });
    tracing_subscriber::registry()
        .with(filter)
        .with(text)
        .with(json)
        .init();
}

/// Applies a re-read `[log]` to the running process: the level (unless `RUST_LOG`
/// set it) and `recipients`. `log` must have passed [`LogConfig::validate`]; the
/// format needs a restart.
pub fn apply(log: &LogConfig) {
    RECIPIENTS.store(log.recipients, Ordering::Relaxed);
    if let Some(Some(handle)) = LEVEL.get() {
        // Fails only when the subscriber is gone, at the very end of the process.
        let _ = handle.reload(EnvFilter::new(&log.level));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn level(level: &str) -> Result<(), ConfigError> {
        LogConfig {
            format: LogFormat::Text,
            level: level.into(),
            recipients: false,
        }
        .validate()
    }

    #[test]
    fn levels_and_directives_are_accepted() {
        for ok in [
            "info",
            "warn",
            "way2mail_mta=debug,info",
            "h2=warn,sled[flush]=trace",
        ] {
            assert!(level(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn field_filters_overlong_and_unknown_levels_are_refused() {
        let err = level("way2mail_mta[session{peer=1.*}]=debug").unwrap_err();
        assert_eq!(err.key, "log.level");
        assert!(err.reason.contains("field filters"), "{}", err.reason);
        assert!(level(&"a".repeat(MAX_LEVEL_LEN + 1)).is_err());
        assert!(level("x=notalevel").is_err());
        let err = level("\t\tϾ]=dma]=de@l").unwrap_err();
        assert!(err.reason.contains("not accepted"), "{}", err.reason);
    }

    /// The fuzz finding: a level whose field filter took the filter's compiler
    /// minutes. Refused at once now.
    #[test]
    fn the_fuzzed_field_filter_is_refused_quickly() {
        let fuzzed = format!(
            "way{}[kes_file = {}]{}",
            "{".repeat(37),
            "{".repeat(13),
            "~".repeat(400)
        );
        let started = std::time::Instant::now();
        assert!(level(&fuzzed).is_err());
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }
}
