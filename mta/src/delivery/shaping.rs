//! Per-destination traffic shaping, owned by the core the destination is sharded to
//! (so no locks): a cap on parallel connections, on messages per connection, and on
//! messages per second, minute and hour; and automatic back-off when a destination
//! answers with bursts of 4xx or refuses connections, recovering gradually after.

use std::time::{Duration, Instant};

use crate::config::delivery::ShapingConfig;

/// The deepest throttle: 1/64 of the configured concurrency, at least one.
const MAX_PENALTY: u32 = 6;
/// A throttled destination steps back up one level after this long without a
/// temporary failure.
const RECOVER_AFTER: Duration = Duration::from_secs(60);
/// A run of failures this old no longer counts towards a back-off.
const FORGET_STREAK_AFTER: Duration = Duration::from_secs(600);

/// A fixed window counter ("at most `limit` per `span`").
#[derive(Debug)]
struct Window {
    span: Duration,
    limit: u32,
    started: Instant,
    used: u32,
}

impl Window {
    fn new(span: Duration, limit: u32, now: Instant) -> Window {
        Window {
            span,
            limit,
            started: now,
            used: 0,
        }
    }

    /// How long until one more message fits; zero when it fits now.
    fn wait(&mut self, now: Instant) -> Duration {
        if self.limit == 0 {
            return Duration::ZERO;
        }
        if now.duration_since(self.started) >= self.span {
            self.started = now;
            self.used = 0;
        }
        if self.used < self.limit {
            Duration::ZERO
        } else {
            self.span.saturating_sub(now.duration_since(self.started))
        }
    }
}

#[derive(Debug)]
pub struct Shaper {
    max_connections: usize,
    windows: [Window; 3],
    backoff_after: u32,
    consecutive_failures: u32,
    penalty: u32,
    last_failure: Option<Instant>,
    /// No new connection before this instant (set when throttling starts).
    paused_until: Option<Instant>,
}

/// What the shaper did with a failure, for the log.
#[derive(Debug, PartialEq, Eq)]
pub enum Change {
    None,
    Throttled { level: u32 },
    Recovered { level: u32 },
}

impl Shaper {
    pub fn new(config: &ShapingConfig, now: Instant) -> Shaper {
        Shaper {
            max_connections: config.max_connections,
            windows: [
                Window::new(Duration::from_secs(1), config.max_messages_per_second, now),
                Window::new(Duration::from_secs(60), config.max_messages_per_minute, now),
                Window::new(Duration::from_secs(3600), config.max_messages_per_hour, now),
            ],
            backoff_after: config.backoff_after_failures.max(1),
            consecutive_failures: 0,
            penalty: 0,
            last_failure: None,
            paused_until: None,
        }
    }

    /// Connections allowed now, given the current throttle.
    pub fn connection_limit(&self) -> usize {
        (self.max_connections >> self.penalty).max(1)
    }

    /// How long until a new connection may open (zero = now).
    pub fn connect_wait(&self, now: Instant) -> Duration {
        self.paused_until
            .map_or(Duration::ZERO, |until| until.saturating_duration_since(now))
    }

    /// How long until one more message may be sent (zero = now). When zero, the
    /// message is counted.
    pub fn take_message(&mut self, now: Instant) -> Duration {
        let wait = self
            .windows
            .iter_mut()
            .map(|w| w.wait(now))
            .max()
            .unwrap_or_default();
        if wait.is_zero() {
            for w in &mut self.windows {
                w.used += 1;
            }
        }
        wait
    }

    /// A message or connection went through.
    pub fn success(&mut self, now: Instant) -> Change {
        self.consecutive_failures = 0;
        match self.last_failure {
            Some(at) if self.penalty > 0 && now.duration_since(at) >= RECOVER_AFTER => {
                self.penalty -= 1;
                self.last_failure = Some(now);
                Change::Recovered {
                    level: self.penalty,
                }
            }
            _ => Change::None,
        }
    }

    /// A 421/4xx or a refused connection.
    pub fn temporary_failure(&mut self, now: Instant) -> Change {
        self.consecutive_failures += 1;
        self.last_failure = Some(now);
        if self.consecutive_failures < self.backoff_after || self.penalty >= MAX_PENALTY {
            return Change::None;
        }
        self.consecutive_failures = 0;
        self.penalty += 1;
        self.paused_until = Some(now + Duration::from_secs(5 * u64::from(self.penalty)));
        Change::Throttled {
            level: self.penalty,
        }
    }

    /// True when nothing about this destination needs remembering: no throttle, no
    /// recent run of failures (a burst may arrive one connection at a time), and no
    /// rate window still counting messages.
    pub fn is_idle(&self, now: Instant) -> bool {
        let streak_open = self.consecutive_failures > 0
            && self
                .last_failure
                .is_some_and(|at| now.duration_since(at) < FORGET_STREAK_AFTER);
        self.penalty == 0
            && !streak_open
            && self
                .windows
                .iter()
                .all(|w| w.limit == 0 || w.used == 0 || now.duration_since(w.started) >= w.span)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ShapingConfig {
        ShapingConfig {
            max_connections: 8,
            max_messages_per_connection: 10,
            max_messages_per_second: 3,
            max_messages_per_minute: 0,
            max_messages_per_hour: 0,
            backoff_after_failures: 2,
        }
    }

    #[test]
    fn per_second_window_holds_the_fourth_message() {
        let t0 = Instant::now();
        let mut s = Shaper::new(&config(), t0);
        for _ in 0..3 {
            assert!(s.take_message(t0).is_zero());
        }
        let wait = s.take_message(t0 + Duration::from_millis(200));
        assert!(wait > Duration::from_millis(700) && wait <= Duration::from_millis(800));
        assert!(s.take_message(t0 + Duration::from_secs(1)).is_zero());
    }

    #[test]
    fn bursts_of_failures_throttle_and_quiet_recovers() {
        let t0 = Instant::now();
        let mut s = Shaper::new(&config(), t0);
        assert_eq!(s.temporary_failure(t0), Change::None);
        assert_eq!(s.temporary_failure(t0), Change::Throttled { level: 1 });
        assert_eq!(s.connection_limit(), 4);
        assert!(s.connect_wait(t0) == Duration::from_secs(5));
        s.temporary_failure(t0);
        assert_eq!(s.temporary_failure(t0), Change::Throttled { level: 2 });
        assert_eq!(s.connection_limit(), 2);
        assert_eq!(s.success(t0 + Duration::from_secs(10)), Change::None);
        assert_eq!(
            s.success(t0 + Duration::from_secs(61)),
            Change::Recovered { level: 1 }
        );
        assert_eq!(s.connection_limit(), 4);
    }

    #[test]
    fn a_counting_window_keeps_the_destination() {
        let t0 = Instant::now();
        let mut s = Shaper::new(&config(), t0);
        assert!(s.is_idle(t0));
        assert!(s.take_message(t0).is_zero());
        assert!(!s.is_idle(t0 + Duration::from_millis(500)));
        assert!(s.is_idle(t0 + Duration::from_secs(1)));
    }

    #[test]
    fn a_failure_streak_keeps_the_destination() {
        let t0 = Instant::now();
        let mut s = Shaper::new(&config(), t0);
        s.temporary_failure(t0);
        assert!(!s.is_idle(t0 + Duration::from_secs(5)));
        assert!(s.is_idle(t0 + Duration::from_secs(601)));
        s.success(t0);
        assert!(s.is_idle(t0));
    }

    #[test]
    fn never_below_one_connection() {
        let t0 = Instant::now();
        let mut s = Shaper::new(&config(), t0);
        for _ in 0..100 {
            s.temporary_failure(t0);
        }
        assert_eq!(s.connection_limit(), 1);
    }
}
