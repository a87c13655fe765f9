//! Measurements: client latencies and error counts, sink counters.
//!
//! Each load-generator worker fills its own [`ClientStats`] without locks; they are
//! merged once at the end into a [`ClientSummary`] (percentiles by nearest rank on
//! the sorted latencies). The sink shares one [`SinkCounters`] of relaxed atomics
//! and reports [`SinkSnapshot`]s of it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use serde_json::json;

/// One worker's results.
#[derive(Debug, Default)]
pub struct ClientStats {
    /// Latency of each successful message, in microseconds.
    pub latencies_us: Vec<u64>,
    pub failed: u64,
    /// Failure count by key: a reply code (`451`) or a condition (`timeout`).
    pub errors: BTreeMap<String, u64>,
}

impl ClientStats {
    pub fn ok(&mut self, latency: Duration) {
        self.latencies_us
            .push(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX));
    }

    pub fn failed(&mut self, key: String) {
        self.failed += 1;
        *self.errors.entry(key).or_default() += 1;
    }

    pub fn merge(&mut self, other: ClientStats) {
        self.latencies_us.extend(other.latencies_us);
        self.failed += other.failed;
        for (key, n) in other.errors {
            *self.errors.entry(key).or_default() += n;
        }
    }

    pub fn summarize(mut self, elapsed: Duration) -> ClientSummary {
        self.latencies_us.sort_unstable();
        let ms = |us: u64| us as f64 / 1000.0;
        let ok = self.latencies_us.len() as u64;
        let secs = elapsed.as_secs_f64();
        ClientSummary {
            ok,
            failed: self.failed,
            elapsed_s: secs,
            msgs_per_s: if secs > 0.0 { ok as f64 / secs } else { 0.0 },
            p50_ms: ms(percentile(&self.latencies_us, 50.0)),
            p90_ms: ms(percentile(&self.latencies_us, 90.0)),
            p99_ms: ms(percentile(&self.latencies_us, 99.0)),
            max_ms: ms(self.latencies_us.last().copied().unwrap_or(0)),
            errors: self.errors,
        }
    }
}

/// Nearest-rank percentile of sorted values; 0 when empty.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Final result of a load-generator run.
#[derive(Debug)]
pub struct ClientSummary {
    pub ok: u64,
    pub failed: u64,
    pub elapsed_s: f64,
    pub msgs_per_s: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub errors: BTreeMap<String, u64>,
}

impl ClientSummary {
    pub fn to_json(&self) -> String {
        self.to_json_value().to_string()
    }

    /// The figures as a JSON object, for callers that add their own keys.
    pub fn to_json_value(&self) -> serde_json::Value {
        json!({
            "ok": self.ok,
            "failed": self.failed,
            "elapsed_s": self.elapsed_s,
            "msgs_per_s": self.msgs_per_s,
            "p50_ms": self.p50_ms,
            "p90_ms": self.p90_ms,
            "p99_ms": self.p99_ms,
            "max_ms": self.max_ms,
            "errors": self.errors,
        })
    }

    pub fn to_text(&self) -> String {
        let mut s = format!(
            "messages ok:     {}\nmessages failed: {}\nelapsed:         {:.3} s\n\
             throughput:      {:.1} msgs/s\nlatency p50:     {:.3} ms\n\
             latency p90:     {:.3} ms\nlatency p99:     {:.3} ms\n\
             latency max:     {:.3} ms\n",
            self.ok,
            self.failed,
            self.elapsed_s,
            self.msgs_per_s,
            self.p50_ms,
            self.p90_ms,
            self.p99_ms,
            self.max_ms
        );
        if !self.errors.is_empty() {
            s.push_str("errors:\n");
            for (key, n) in &self.errors {
                s.push_str(&format!("  {key}: {n}\n"));
            }
        }
        s
    }
}

/// Counters shared by all sink sessions.
#[derive(Debug, Default)]
pub struct SinkCounters {
    /// Messages accepted with 250, their accepted recipients and data bytes.
    pub messages: AtomicU64,
    pub recipients: AtomicU64,
    pub bytes: AtomicU64,
    pub connections: AtomicU64,
    pub current_connections: AtomicU64,
    pub peak_connections: AtomicU64,
    pub tempfails: AtomicU64,
    pub permfails: AtomicU64,
    pub drops: AtomicU64,
    /// Messages whose data was complete, whatever the answer: orders the
    /// pseudo-random outcomes and drives `--exit-after-messages`.
    pub completed: AtomicU64,
}

impl SinkCounters {
    /// Counts a new connection; returns the number now open.
    pub fn connection_opened(&self) -> u64 {
        self.connections.fetch_add(1, Relaxed);
        let now = self.current_connections.fetch_add(1, Relaxed) + 1;
        self.peak_connections.fetch_max(now, Relaxed);
        now
    }

    pub fn connection_closed(&self) {
        self.current_connections.fetch_sub(1, Relaxed);
    }

    pub fn snapshot(&self) -> SinkSnapshot {
        SinkSnapshot {
            messages: self.messages.load(Relaxed),
            recipients: self.recipients.load(Relaxed),
            bytes: self.bytes.load(Relaxed),
            connections: self.connections.load(Relaxed),
            current_connections: self.current_connections.load(Relaxed),
            peak_connections: self.peak_connections.load(Relaxed),
            tempfails: self.tempfails.load(Relaxed),
            permfails: self.permfails.load(Relaxed),
            drops: self.drops.load(Relaxed),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SinkSnapshot {
    pub messages: u64,
    pub recipients: u64,
    pub bytes: u64,
    pub connections: u64,
    pub current_connections: u64,
    pub peak_connections: u64,
    pub tempfails: u64,
    pub permfails: u64,
    pub drops: u64,
}

impl SinkSnapshot {
    pub fn to_json(self, elapsed: Duration) -> String {
        json!({
            "messages": self.messages,
            "recipients": self.recipients,
            "bytes": self.bytes,
            "connections": self.connections,
            "peak_connections": self.peak_connections,
            "tempfails": self.tempfails,
            "permfails": self.permfails,
            "drops": self.drops,
            "elapsed_s": elapsed.as_secs_f64(),
        })
        .to_string()
    }

    pub fn to_text(self, elapsed: Duration) -> String {
        format!(
            "messages:         {}\nrecipients:       {}\nbytes:            {}\n\
             connections:      {}\npeak connections: {}\ntempfails:        {}\n\
             permfails:        {}\ndrops:            {}\nelapsed:          {:.3} s\n",
            self.messages,
            self.recipients,
            self.bytes,
            self.connections,
            self.peak_connections,
            self.tempfails,
            self.permfails,
            self.drops,
            elapsed.as_secs_f64()
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), 50);
        assert_eq!(percentile(&v, 99.0), 99);
        assert_eq!(percentile(&v, 100.0), 100);
        assert_eq!(percentile(&v, 0.0), 1);
        assert_eq!(percentile(&[7], 99.0), 7);
        assert_eq!(percentile(&[], 50.0), 0);
    }

    #[test]
    fn merge_and_summarize() {
        let mut a = ClientStats::default();
        a.ok(Duration::from_millis(3));
        a.failed("451".into());
        let mut b = ClientStats::default();
        b.ok(Duration::from_millis(1));
        b.failed("451".into());
        b.failed("timeout".into());
        a.merge(b);
        let s = a.summarize(Duration::from_secs(2));
        assert_eq!((s.ok, s.failed), (2, 3));
        assert_eq!(s.errors.get("451"), Some(&2));
        assert_eq!(s.errors.get("timeout"), Some(&1));
        assert_eq!(s.max_ms, 3.0);
        assert_eq!(s.p50_ms, 1.0);
        assert_eq!(s.p90_ms, 3.0);
        assert_eq!(s.msgs_per_s, 1.0);
        let json: serde_json::Value = serde_json::from_str(&s.to_json()).unwrap();
        assert_eq!(json["errors"]["451"], 2);
        assert!(s.to_text().contains("  timeout: 1\n"));
    }

    #[test]
    fn peak_connections() {
        let c = SinkCounters::default();
        c.connection_opened();
        c.connection_opened();
        c.connection_closed();
        c.connection_opened();
        let s = c.snapshot();
        assert_eq!(
            (s.connections, s.current_connections, s.peak_connections),
            (3, 2, 2)
        );
    }
}
