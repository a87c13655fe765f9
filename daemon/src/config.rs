//! TOML configuration files, the same way for both daemons: every key has a default,
//! and a file that does not fit names the key at fault (`tls.cert: invalid type: …`),
//! so an operator can fix it without reading the code.

use std::path::Path;

use serde::de::DeserializeOwned;

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
