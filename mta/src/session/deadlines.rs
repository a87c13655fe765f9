//! The session's clocks, which the sans-IO protocol does not have: before each read
//! the session asks [`Deadlines::next`] by when that read must end (and which
//! deadline that is), then tells [`Deadlines::fed`] what arrived and
//! [`Deadlines::answered`] when replies went out. They are deadlines, not idle
//! timers: a byte that arrives never moves them later, except by what it adds to the
//! content's rate.
//!
//! - A command line must be complete `command_secs` after its first byte, and that
//!   first byte must come within `command_secs` of the previous replies.
//! - Message content (DATA, each BDAT chunk) must end by
//!   `start + data_secs + received / min_data_rate`: after a grace of `data_secs` it
//!   must average `min_data_rate` bytes per second. A trickler is cut about
//!   `data_secs` after it starts; a link at the minimum rate or faster never is,
//!   however large the message. Content may not fall silent for `data_secs` either,
//!   so credit earned by a fast start cannot be spent standing still.
//! - The whole session ends `session_secs` after the connection was accepted.

use std::time::Duration;

use tokio::time::Instant;

/// Further than any deadline can sensibly be: what an overflowing sum becomes.
const FAR: Duration = Duration::from_secs(86_400 * 365 * 30);

/// Which deadline cut a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// A command line, or the wait for one, took longer than `command_secs`.
    Command,
    /// Message content fell below `min_data_rate`, or was silent for `data_secs`.
    Content,
    /// The session reached `session_secs`.
    Lifetime,
}

impl Cut {
    /// The outcome in the connection's log line.
    pub fn outcome(self) -> &'static str {
        match self {
            Cut::Command => "command deadline",
            Cut::Content => "content below the minimum rate",
            Cut::Lifetime => "session lifetime",
        }
    }
}

/// `[timeouts]` as the session applies them.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub command: Duration,
    pub data: Duration,
    /// Bytes per second, at least 1 (validated).
    pub min_data_rate: u64,
    pub session: Duration,
}

#[derive(Debug)]
pub struct Deadlines {
    limits: Limits,
    /// The session's end.
    end: Instant,
    /// When replies last went out: the wait for a line's first byte counts from here.
    answered: Instant,
    /// When the first byte of the command line still incomplete arrived.
    line: Option<Instant>,
    /// The stretch of content being received, if one is.
    content: Option<Content>,
}

#[derive(Debug)]
struct Content {
    started: Instant,
    last: Instant,
    received: u64,
}

impl Deadlines {
    pub fn new(limits: Limits, accepted: Instant) -> Deadlines {
        Deadlines {
            limits,
            end: after(accepted, limits.session),
            answered: accepted,
            line: None,
            content: None,
        }
    }

    /// By when the next read must end, and the deadline that is. `in_content` is
    /// the protocol's `in_data()`: content starts with the first read in it.
    pub fn next(&mut self, in_content: bool, now: Instant) -> (Instant, Cut) {
        let (at, cut) = if in_content {
            // Whatever command line was open ended with the command that began it.
            self.line = None;
            let content = self.content.get_or_insert(Content {
                started: now,
                last: now,
                received: 0,
            });
            (content.deadline(&self.limits), Cut::Content)
        } else {
            self.content = None;
            let from = self.line.unwrap_or(self.answered);
            (after(from, self.limits.command), Cut::Command)
        };
        if self.end <= at {
            (self.end, Cut::Lifetime)
        } else {
            (at, cut)
        }
    }

    /// `bytes` arrived at `now`, read under the deadline [`Deadlines::next`] gave.
    pub fn fed(&mut self, bytes: &[u8], now: Instant) {
        if let Some(content) = &mut self.content {
            content.received = content.received.saturating_add(bytes.len() as u64);
            content.last = now;
            return;
        }
        // Lines end at LF (the protocol's rule): what follows the last one is a new
        // line begun now; with no LF at all the open line goes on, or one begins.
        self.line = match bytes.iter().rposition(|&b| b == b'\n') {
            Some(last) if last + 1 == bytes.len() => None,
            Some(_) => Some(now),
            None if bytes.is_empty() => self.line,
            None => Some(self.line.unwrap_or(now)),
        };
    }

    /// Replies went out at `now`: the client's turn starts.
    pub fn answered(&mut self, now: Instant) {
        self.answered = now;
    }
}

impl Content {
    fn deadline(&self, limits: &Limits) -> Instant {
        // At most the session's length of credit: a bound for the arithmetic only,
        // since the session's own end comes first.
        let credit_ms = self.received.saturating_mul(1000) / limits.min_data_rate.max(1);
        let credit = Duration::from_millis(credit_ms).min(limits.session);
        let rate = after(self.started, limits.data.saturating_add(credit));
        let silence = after(self.last, limits.data);
        rate.min(silence)
    }
}

fn after(t: Instant, d: Duration) -> Instant {
    t.checked_add(d).unwrap_or_else(|| t + FAR)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        command: Duration::from_secs(20),
        data: Duration::from_secs(30),
        min_data_rate: 500,
        session: Duration::from_secs(3600),
    };

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn a_command_line_trickled_a_byte_a_second_is_cut_20s_after_its_first_byte() {
        let t0 = Instant::now();
        let mut d = Deadlines::new(LIMITS, t0);
        // The greeting went out at t0 + 1; the first byte comes 15 s later.
        d.answered(t0 + secs(1));
        assert_eq!(d.next(false, t0 + secs(1)), (t0 + secs(21), Cut::Command));
        d.fed(b"N", t0 + secs(16));
        for (i, byte) in b"OOP".iter().enumerate() {
            let now = t0 + secs(17 + i as u64);
            assert_eq!(d.next(false, now), (t0 + secs(36), Cut::Command));
            d.fed(&[*byte], now);
        }
        // The line completes; the reply goes out; the next wait counts from there.
        d.fed(b"\r\n", t0 + secs(20));
        d.answered(t0 + secs(20));
        assert_eq!(d.next(false, t0 + secs(20)), (t0 + secs(40), Cut::Command));
    }

    #[test]
    fn a_line_begun_behind_a_complete_one_counts_from_its_first_byte() {
        let t0 = Instant::now();
        let mut d = Deadlines::new(LIMITS, t0);
        d.next(false, t0);
        d.fed(b"NOOP\r\nNO", t0 + secs(2));
        // The NOOP's reply goes out later; the open line still counts from t0 + 2.
        d.answered(t0 + secs(3));
        assert_eq!(d.next(false, t0 + secs(3)), (t0 + secs(22), Cut::Command));
        d.fed(b"OP\r\n", t0 + secs(4));
        d.answered(t0 + secs(4));
        assert_eq!(d.next(false, t0 + secs(4)), (t0 + secs(24), Cut::Command));
    }

    #[test]
    fn content_has_a_grace_then_needs_the_minimum_rate() {
        let t0 = Instant::now();
        let mut d = Deadlines::new(LIMITS, t0);
        assert_eq!(d.next(true, t0), (t0 + secs(30), Cut::Content));
        // A trickler: one byte a second gains 2 ms a second; cut at about 30 s.
        for s in 1..=29 {
            d.fed(b"x", t0 + secs(s));
            let (at, cut) = d.next(true, t0 + secs(s));
            assert_eq!(cut, Cut::Content);
            assert_eq!(at, t0 + secs(30) + Duration::from_millis(2 * s));
        }
        // An honest link at 600 B/s stays ahead of its deadline for good.
        let mut d = Deadlines::new(LIMITS, t0);
        d.next(true, t0);
        for s in 1..=600 {
            let now = t0 + secs(s);
            d.fed(&[b'x'; 600], now);
            let (at, _) = d.next(true, now);
            assert!(at > now + secs(29), "cut at {s} s");
        }
    }

    #[test]
    fn credit_from_a_fast_start_does_not_excuse_silence() {
        let t0 = Instant::now();
        let mut d = Deadlines::new(LIMITS, t0);
        d.next(true, t0);
        d.fed(&vec![b'x'; 1_000_000], t0 + secs(1));
        assert_eq!(d.next(true, t0 + secs(1)), (t0 + secs(31), Cut::Content));
    }

    #[test]
    fn content_ends_and_commands_count_from_the_reply() {
        let t0 = Instant::now();
        let mut d = Deadlines::new(LIMITS, t0);
        d.next(false, t0);
        d.fed(b"DATA\r\nSubject: x", t0 + secs(1));
        d.answered(t0 + secs(1));
        d.next(true, t0 + secs(1));
        d.fed(b"\r\n\r\nbody\r\n.\r\n", t0 + secs(2));
        d.answered(t0 + secs(5));
        assert_eq!(d.next(false, t0 + secs(5)), (t0 + secs(25), Cut::Command));
        // A second message gets a fresh grace.
        assert_eq!(d.next(true, t0 + secs(6)), (t0 + secs(36), Cut::Content));
    }

    #[test]
    fn the_session_ends_at_its_lifetime_whatever_it_does() {
        let t0 = Instant::now();
        let limits = Limits {
            session: secs(25),
            ..LIMITS
        };
        let mut d = Deadlines::new(limits, t0);
        assert_eq!(d.next(false, t0), (t0 + secs(20), Cut::Command));
        d.answered(t0 + secs(10));
        assert_eq!(d.next(false, t0 + secs(10)), (t0 + secs(25), Cut::Lifetime));
        assert_eq!(d.next(true, t0 + secs(10)), (t0 + secs(25), Cut::Lifetime));
    }

    #[test]
    fn huge_settings_do_not_overflow() {
        let t0 = Instant::now();
        let limits = Limits {
            command: Duration::MAX,
            data: Duration::MAX,
            min_data_rate: 1,
            session: Duration::MAX,
        };
        let mut d = Deadlines::new(limits, t0);
        assert!(d.next(false, t0).0 > t0 + secs(86_400));
        d.next(true, t0);
        d.fed(&[0; 1000], t0);
        assert!(d.next(true, t0).0 > t0 + secs(86_400));
    }
}
