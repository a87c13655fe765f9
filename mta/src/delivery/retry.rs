//! When to try a message again: exponential back-off with jitter, bounded by the
//! maximum delay, and the maximum queue lifetime after which a message expires.

use crate::config::delivery::DeliveryConfig;

/// The delay before attempt `attempts + 1`, in milliseconds, given `attempts` made.
/// `random` is any value in `0..=u64::MAX` (jitter source).
pub fn backoff_ms(config: &DeliveryConfig, attempts: u32, random: u64) -> u64 {
    let doublings = attempts.saturating_sub(1).min(32);
    let base = config
        .retry_initial_secs
        .saturating_mul(1u64 << doublings)
        .min(config.retry_max_secs)
        .saturating_mul(1000);
    let spread = base / 100 * config.retry_jitter_percent;
    base + if spread == 0 {
        0
    } else {
        random % (spread + 1)
    }
}

/// Whether a message received at `received_ms` has outlived the queue at `now_ms`.
pub fn expired(config: &DeliveryConfig, received_ms: u64, now_ms: u64) -> bool {
    now_ms.saturating_sub(received_ms) >= config.max_queue_lifetime_secs.saturating_mul(1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_maximum_with_bounded_jitter() {
        let c = DeliveryConfig {
            retry_initial_secs: 60,
            retry_max_secs: 600,
            retry_jitter_percent: 10,
            ..DeliveryConfig::default()
        };
        assert_eq!(backoff_ms(&c, 1, 0), 60_000);
        assert_eq!(backoff_ms(&c, 2, 0), 120_000);
        assert_eq!(backoff_ms(&c, 4, 0), 480_000);
        assert_eq!(backoff_ms(&c, 5, 0), 600_000);
        assert_eq!(backoff_ms(&c, 40, 0), 600_000);
        let jittered = backoff_ms(&c, 1, u64::MAX);
        assert!((60_000..=66_000).contains(&jittered), "{jittered}");
    }

    #[test]
    fn expiry() {
        let c = DeliveryConfig {
            max_queue_lifetime_secs: 10,
            ..DeliveryConfig::default()
        };
        assert!(!expired(&c, 1_000, 10_999));
        assert!(expired(&c, 1_000, 11_000));
    }
}
