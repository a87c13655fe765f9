//! The tenant reputation guard: per tenant, recipients accepted, hard bounces and
//! complaints over a rolling 24 h in one-hour buckets. When a hard bounce or a
//! complaint makes a rate cross its `[reputation]` threshold (once the tenant has
//! `min_volume` recipients in the window), the guard asks for a pause, once:
//!
//! - it asks again only if telling control failed (`pause_failed`);
//! - while the snapshot says the tenant is paused, nothing more is asked;
//! - once a snapshot says it is not paused any more (an operator resumed it), its
//!   counts start afresh, so that the failures that paused it do not pause it
//!   again at the next bounce.
//!
//! Counts live in memory: a restart starts every tenant with an empty window
//! (the delivery log keeps the record; `way2mail tenant deliverability` reads it).
//! Memory: 24 buckets per tenant that sent in the last day.

use std::collections::HashMap;

use way2mail_wire::protocol::ReputationRates;

use crate::config::feedback::ReputationConfig;
use crate::tenants::Tenants;

const HOUR_MS: u64 = 3_600_000;
const HOURS: usize = 24;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Counts {
    accepted: u64,
    hard: u64,
    complaints: u64,
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.accepted += o.accepted;
        self.hard += o.hard;
        self.complaints += o.complaints;
    }
}

#[derive(Debug)]
struct Window {
    buckets: [Counts; HOURS],
    /// The hour (since the epoch) the newest bucket stands for.
    head: u64,
    /// A pause was asked for and not (yet) seen in a snapshot.
    asked: bool,
    /// A snapshot showed the tenant paused.
    paused_seen: bool,
}

impl Window {
    fn new(hour: u64) -> Window {
        Window {
            buckets: [Counts::default(); HOURS],
            head: hour,
            asked: false,
            paused_seen: false,
        }
    }

    fn advance(&mut self, hour: u64) -> &mut Counts {
        if hour > self.head {
            let gap = (hour - self.head).min(HOURS as u64);
            for h in 1..=gap {
                self.buckets[((self.head + h) % HOURS as u64) as usize] = Counts::default();
            }
            self.head = hour;
        }
        &mut self.buckets[(self.head % HOURS as u64) as usize]
    }

    fn totals(&self) -> Counts {
        let mut t = Counts::default();
        for b in &self.buckets {
            t.add(b);
        }
        t
    }
}

#[derive(Debug)]
pub struct Guard {
    config: ReputationConfig,
    tenants: HashMap<String, Window>,
}

impl Guard {
    pub fn new(config: ReputationConfig) -> Guard {
        Guard {
            config,
            tenants: HashMap::new(),
        }
    }

    fn window(&mut self, tenant: &str, now_ms: u64) -> &mut Window {
        let hour = now_ms / HOUR_MS;
        if !self.tenants.contains_key(tenant) {
            self.tenants.insert(tenant.to_string(), Window::new(hour));
        }
        let w = self
            .tenants
            .get_mut(tenant)
            .unwrap_or_else(|| unreachable!("inserted above"));
        w.advance(hour);
        w
    }

    pub fn accepted(&mut self, tenant: &str, n: u64, now_ms: u64) {
        let hour = now_ms / HOUR_MS;
        self.window(tenant, now_ms).advance(hour).accepted += n;
    }

    /// Counts a hard bounce; the rates when a threshold was crossed and a pause
    /// is to be asked for.
    pub fn hard_bounce(
        &mut self,
        tenant: &str,
        now_ms: u64,
        tenants: &Tenants,
    ) -> Option<ReputationRates> {
        let paused = paused(tenants, tenant);
        self.count(tenant, now_ms, paused, |c| c.hard += 1)
    }

    pub fn complaint(
        &mut self,
        tenant: &str,
        now_ms: u64,
        tenants: &Tenants,
    ) -> Option<ReputationRates> {
        let paused = paused(tenants, tenant);
        self.count(tenant, now_ms, paused, |c| c.complaints += 1)
    }

    /// `paused`: what the snapshot in force says of the tenant (`None`: no
    /// snapshot, or the tenant is not in it).
    fn count(
        &mut self,
        tenant: &str,
        now_ms: u64,
        paused: Option<bool>,
        bump: impl FnOnce(&mut Counts),
    ) -> Option<ReputationRates> {
        let hour = now_ms / HOUR_MS;
        let config = self.config.clone();
        let w = self.window(tenant, now_ms);
        match paused {
            Some(true) => {
                w.paused_seen = true;
                w.asked = false;
            }
            Some(false) if w.paused_seen => {
                // Resumed by an operator: a fresh window.
                *w = Window::new(hour);
            }
            _ => {}
        }
        bump(w.advance(hour));
        if w.asked || paused == Some(true) {
            return None;
        }
        let rates = crossed(&config, &w.totals())?;
        w.asked = true;
        Some(rates)
    }

    /// Telling control failed: the next failure may ask again.
    pub fn pause_failed(&mut self, tenant: &str) {
        if let Some(w) = self.tenants.get_mut(tenant) {
            w.asked = false;
        }
    }

    /// (tenant, bounce rate, complaint rate) of every tenant counted; tenants with
    /// nothing left in the window are forgotten.
    pub fn rates(&mut self, now_ms: u64) -> Vec<(String, f64, f64)> {
        let hour = now_ms / HOUR_MS;
        let mut out = Vec::with_capacity(self.tenants.len());
        self.tenants.retain(|tenant, w| {
            w.advance(hour);
            let t = w.totals();
            let share = |n: u64| {
                if t.accepted == 0 {
                    0.0
                } else {
                    n as f64 / t.accepted as f64
                }
            };
            out.push((tenant.clone(), share(t.hard), share(t.complaints)));
            t != Counts::default() || w.paused_seen || w.asked
        });
        out
    }
}

fn paused(tenants: &Tenants, tenant: &str) -> Option<bool> {
    let directory = tenants.directory()?;
    directory.tenant(tenant).map(|t| t.sending_paused)
}

/// The threshold `totals` crosses, if any (complaints first: the graver signal).
fn crossed(config: &ReputationConfig, totals: &Counts) -> Option<ReputationRates> {
    if totals.accepted == 0 || totals.accepted < config.min_volume {
        return None;
    }
    let rate = |n: u64| n as f64 / totals.accepted as f64;
    let which =
        if config.max_complaint_rate > 0.0 && rate(totals.complaints) > config.max_complaint_rate {
            ("complaint_rate", config.max_complaint_rate)
        } else if config.max_bounce_rate > 0.0 && rate(totals.hard) > config.max_bounce_rate {
            ("bounce_rate", config.max_bounce_rate)
        } else {
            return None;
        };
    Some(ReputationRates {
        window_secs: (HOURS as u64) * 3600,
        accepted: totals.accepted,
        hard_bounces: totals.hard,
        complaints: totals.complaints,
        crossed: which.0.to_string(),
        threshold_ppm: (which.1 * 1_000_000.0).round() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_800_000_000_000;

    fn guard() -> Guard {
        Guard::new(ReputationConfig {
            max_bounce_rate: 0.05,
            max_complaint_rate: 0.003,
            min_volume: 200,
        })
    }

    fn bounce(g: &mut Guard, at: u64, paused: Option<bool>) -> Option<ReputationRates> {
        g.count("acme", at, paused, |c| c.hard += 1)
    }

    #[test]
    fn a_rate_counts_only_past_the_minimum_volume_and_asks_once() {
        let mut g = guard();
        g.accepted("acme", 100, T0);
        for _ in 0..50 {
            assert_eq!(bounce(&mut g, T0, Some(false)), None, "under min_volume");
        }
        g.accepted("acme", 100, T0);
        // 51 of 200 (25 %) > 5 %.
        let rates = bounce(&mut g, T0, Some(false)).expect("crossed");
        assert_eq!(
            (rates.crossed.as_str(), rates.accepted, rates.hard_bounces),
            ("bounce_rate", 200, 51)
        );
        assert_eq!(rates.threshold_ppm, 50_000);
        assert_eq!(bounce(&mut g, T0, Some(false)), None, "asked already");
        g.pause_failed("acme");
        assert!(bounce(&mut g, T0, Some(false)).is_some(), "asked again");
        // Paused: quiet; resumed: a fresh window, under the volume again.
        assert_eq!(bounce(&mut g, T0, Some(true)), None);
        assert_eq!(bounce(&mut g, T0, Some(false)), None);
        let rates = g.rates(T0);
        assert_eq!(rates, vec![("acme".to_string(), 0.0, 0.0)]);
    }

    #[test]
    fn complaints_cross_their_own_threshold() {
        let mut g = guard();
        g.accepted("acme", 1000, T0);
        for _ in 0..3 {
            assert_eq!(g.count("acme", T0, None, |c| c.complaints += 1), None);
        }
        // 4 of 1000 = 0.4 % > 0.3 %.
        let rates = g
            .count("acme", T0, None, |c| c.complaints += 1)
            .expect("crossed");
        assert_eq!(rates.crossed, "complaint_rate");
        assert!((rates.complaint_rate() - 0.004).abs() < 1e-9);
    }

    #[test]
    fn the_window_rolls_over_a_day() {
        let mut g = guard();
        g.accepted("acme", 1000, T0);
        for _ in 0..40 {
            bounce(&mut g, T0, None);
        }
        let later = T0 + 23 * HOUR_MS;
        let r = g.rates(later);
        assert!((r[0].1 - 0.04).abs() < 1e-9, "{r:?}");
        // A day after, the window is empty and the tenant forgotten.
        assert_eq!(g.rates(T0 + 25 * HOUR_MS).len(), 1);
        assert!(g.rates(T0 + 26 * HOUR_MS).is_empty());
    }

    #[test]
    fn zero_turns_a_threshold_off() {
        let mut g = Guard::new(ReputationConfig {
            max_bounce_rate: 0.0,
            max_complaint_rate: 0.0,
            min_volume: 1,
        });
        g.accepted("acme", 1, T0);
        assert_eq!(bounce(&mut g, T0, None), None);
    }
}
