//! TOML configuration files, the same way for both daemons: every key has a default,
//! and a file that does not fit names the key at fault (`tls.cert: invalid type: …`),
//! so an operator can fix it without reading the code. Keys written in seconds or
//! milliseconds (`*_secs`, `*_ms`) are read straight into `Duration`s ([`secs`],
//! [`millis`]): code past the parse never converts them again.

use std::path::Path;
use std::time::Duration;

use serde::de::{DeserializeOwned, Deserializer};
use serde::Deserialize;

/// A configuration error, always naming the key it is about (a dotted path, or the
/// file for read errors).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct ConfigError {
    pub key: String,
    pub reason: String,
}

impl ConfigError {
    pub fn new(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
        ConfigError {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

/// Reads and parses a file.
pub fn load<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        key: path.display().to_string(),
        reason: format!("cannot read: {e}"),
    })?;
    parse(&text)
}

/// Parses TOML text into `T`, naming the key when it does not fit.
pub fn parse<T: DeserializeOwned>(text: &str) -> Result<T, ConfigError> {
    let de = toml::Deserializer::new(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        let key = if key == "." {
            "(top level)".into()
        } else {
            key
        };
        // toml's message can carry a multi-line source excerpt; the first line is the
        // reason, the rest repeats the file.
        let reason = e.inner().message().trim().to_string();
        ConfigError { key, reason }
    })
}

/// Serde: a `*_secs` key (whole seconds) as a [`Duration`], so that a daemon holds
/// durations from the moment its file is read. A value that does not fit fails as
/// the integer would (`invalid type: string "x", expected u64`).
pub fn secs<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    u64::deserialize(d).map(Duration::from_secs)
}

/// Serde: a `*_ms` key (whole milliseconds) as a [`Duration`]; see [`secs`].
pub fn millis<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    u64::deserialize(d).map(Duration::from_millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Sample {
        #[serde(default)]
        section: Section,
    }

    #[derive(Debug, Default, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Section {
        #[serde(default)]
        port: u16,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Timeouts {
        #[serde(rename = "wait_secs", deserialize_with = "secs")]
        wait: Duration,
        #[serde(rename = "poll_ms", deserialize_with = "millis")]
        poll: Duration,
    }

    #[test]
    fn durations_keep_their_keys_and_integer_errors() {
        let t = parse::<Timeouts>("wait_secs = 30\npoll_ms = 250\n").expect("parse");
        assert_eq!(
            (t.wait, t.poll),
            (Duration::from_secs(30), Duration::from_millis(250))
        );
        let e = parse::<Timeouts>("wait_secs = \"x\"\npoll_ms = 1\n").expect_err("type");
        assert_eq!(e.key, "wait_secs");
        assert!(e.reason.contains("expected u64"), "{e:?}");
        let e = parse::<Timeouts>("wait_secs = 1\npoll_ms = -1\n").expect_err("negative");
        assert_eq!(e.key, "poll_ms");
    }

    #[test]
    fn errors_name_the_key() {
        let e = parse::<Sample>("[section]\nport = \"x\"\n").expect_err("wrong type");
        assert_eq!(e.key, "section.port");
        let e = parse::<Sample>("nope = 1\n").expect_err("unknown key");
        assert!(e.reason.contains("nope"), "{e:?}");
        assert!(parse::<Sample>("").is_ok());
        let e = load::<Sample>(Path::new("/nonexistent/way2mail.toml")).expect_err("missing");
        assert!(e.reason.starts_with("cannot read"), "{e:?}");
    }
}
