//! Periods as operators write them (`"90d"`, `"12h"`, `"30m"`, `"45s"`, `"7y"`), for
//! retention settings in both daemons' configurations and on the command line.
//! A year is 365 days. Stored and carried as whole seconds.

use serde::de::{self, Deserializer};
use serde::Deserialize;

const UNITS: [(char, u64); 5] = [
    ('y', 365 * 86_400),
    ('d', 86_400),
    ('h', 3_600),
    ('m', 60),
    ('s', 1),
];

/// The longest period accepted: 1000 years.
const MAX_SECS: u64 = 1000 * 365 * 86_400;

/// Parses `N` followed by one unit (`s`, `m`, `h`, `d`, `y`) into seconds.
pub fn parse(text: &str) -> Result<u64, PeriodError> {
    let t = text.trim();
    let bad = || PeriodError::NotAPeriod(text.to_owned());
    let unit = t.chars().last().ok_or_else(bad)?;
    let factor = UNITS
        .iter()
        .find(|(u, _)| *u == unit)
        .map(|(_, f)| *f)
        .ok_or_else(bad)?;
    let number = &t[..t.len() - unit.len_utf8()];
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n: u64 = number.parse().map_err(|_| bad())?;
    n.checked_mul(factor)
        .filter(|&s| s <= MAX_SECS)
        .ok_or_else(|| PeriodError::TooLong(text.to_owned()))
}

/// Why a text is not a period; each names the text as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PeriodError {
    #[error("{0:?} is not a period: a whole number and a unit, e.g. \"90d\", \"12h\", \"30m\", \"45s\", \"7y\"")]
    NotAPeriod(String),
    #[error("{0:?} is longer than 1000 years")]
    TooLong(String),
}

/// The shortest exact form: `90d`, `36h`, `90s`.
pub fn format(secs: u64) -> String {
    if secs == 0 {
        return "0s".into();
    }
    for (unit, factor) in UNITS {
        if secs.is_multiple_of(factor) {
            return format!("{}{unit}", secs / factor);
        }
    }
    format!("{secs}s")
}

/// Serde: a period string into seconds.
pub fn deserialize_secs<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let text = String::deserialize(d)?;
    parse(&text).map_err(de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods() {
        assert_eq!(parse("90d"), Ok(90 * 86_400));
        assert_eq!(parse(" 12h "), Ok(43_200));
        assert_eq!(parse("30m"), Ok(1_800));
        assert_eq!(parse("45s"), Ok(45));
        assert_eq!(parse("10y"), Ok(3_650 * 86_400));
        assert_eq!(parse("0d"), Ok(0));
        for bad in [
            "", "d", "90", "9.5d", "-1d", "90 d", "1w", "ninety d", "１d",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        assert!(parse("99999999999999y").is_err());
        assert_eq!(
            parse("2000y").expect_err("too long").to_string(),
            "\"2000y\" is longer than 1000 years"
        );
        assert_eq!(
            parse("90 d").expect_err("not a period").to_string(),
            "\"90 d\" is not a period: a whole number and a unit, e.g. \"90d\", \"12h\", \
             \"30m\", \"45s\", \"7y\""
        );
    }

    #[test]
    fn formatting_is_exact_and_short() {
        for (secs, text) in [
            (90 * 86_400, "90d"),
            (36 * 3_600, "36h"),
            (90, "90s"),
            (0, "0s"),
            (3_650 * 86_400, "10y"),
        ] {
            assert_eq!(format(secs), text);
            assert_eq!(parse(text), Ok(secs));
        }
    }
}
