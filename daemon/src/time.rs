//! The clock, read one way everywhere: Unix time, UTC. A clock before 1970 reads as
//! 0 and one past the year 584 million as `u64::MAX`, rather than failing.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since 1970-01-01 UTC.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Seconds since 1970-01-01 UTC.
pub fn now_secs() -> u64 {
    now_ms() / 1000
}
