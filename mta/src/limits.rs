//! Connection accounting: the caps shared by every core, a global count and a count
//! per client IP ([`ConnectionLimiter`]); what each connection has sent
//! ([`Activity`]); and each core's count of sessions in progress, which shutdown
//! waits on ([`LiveSessions`]).
//!
//! At a cap a newcomer is not simply refused: the connection that has sent the
//! fewest bytes per second over its life is displaced instead (told `421 4.3.2` and
//! closed by its session), so that slow clients cannot hold every place. Only a
//! connection older than `[timeouts] displace_after_secs` that has averaged less than
//! `[timeouts] min_data_rate` is a candidate ([`Displacing`]); fresh and working
//! connections never are, and with no candidate the newcomer is refused as before.
//! At the per-IP cap only that IP's own connections are candidates.
//!
//! Every count is held by a guard that gives it back when dropped, so a session
//! that ends early, panics, or is dropped with its runtime can never keep its place.
//! The shared table is touched once at accept and once at close, never per byte (a
//! session counts its bytes in its own [`Activity`]), so a mutex is fine there. A
//! newcomer at the global cap scans every connection once; a scan that finds no
//! candidate is not repeated for a second, so a flood at the cap costs no scans.

use std::cell::Cell;
use std::collections::HashMap;
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// After a scan of every connection found none to displace, newcomers at the global
/// cap are refused without scanning for this long.
const RESCAN: Duration = Duration::from_secs(1);

pub struct ConnectionLimiter {
    /// The caps are atomics only so that a reload can change them (`set_caps`);
    /// they are read under the table's lock, like everything else here.
    max_total: AtomicUsize,
    max_per_ip: AtomicUsize,
    table: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    /// Connections admitted and not displaced.
    active: usize,
    /// Displaced connections whose sessions are still saying goodbye.
    leaving: usize,
    /// The active connections of each client IP.
    by_ip: HashMap<IpAddr, Vec<Arc<Activity>>>,
    /// No scan of every connection before this instant (see [`RESCAN`]).
    rescan_after: Option<Instant>,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Total,
    PerIp,
}

/// Which connections a newcomer at a cap may displace (from `[timeouts]`).
#[derive(Debug, Clone, Copy)]
pub struct Displacing {
    /// Younger connections are never displaced.
    pub min_age: Duration,
    /// Connections that averaged at least this many bytes per second are never
    /// displaced.
    pub below_rate: u64,
}

/// One connection as the caps see it: when it came, what it has sent, and whether
/// it was displaced. Its session adds to `received` after every read.
#[derive(Debug)]
pub struct Activity {
    accepted: Instant,
    received: AtomicU64,
    /// Set under the table's lock, once.
    displaced: AtomicBool,
    wake: Notify,
}

/// Holds one connection's place; gives it back when dropped.
pub struct ConnectionSlot {
    limiter: Arc<ConnectionLimiter>,
    ip: IpAddr,
    activity: Arc<Activity>,
}

impl ConnectionLimiter {
    pub fn new(max_total: usize, max_per_ip: usize) -> Arc<Self> {
        Arc::new(ConnectionLimiter {
            max_total: AtomicUsize::new(max_total),
            max_per_ip: AtomicUsize::new(max_per_ip),
            table: Mutex::new(Table::default()),
        })
    }

    /// New caps for the connections admitted from now on (a reload of `[limits]`).
    /// Connections over a lowered cap are not closed: they end as they would have.
    pub fn set_caps(&self, max_total: usize, max_per_ip: usize) {
        self.max_total.store(max_total, Ordering::Relaxed);
        self.max_per_ip.store(max_per_ip, Ordering::Relaxed);
    }

    /// Admits a connection from `ip`, displacing a slow one at a cap if it can.
    pub fn try_acquire(
        self: &Arc<Self>,
        ip: IpAddr,
        displacing: Displacing,
    ) -> Result<ConnectionSlot, Refusal> {
        self.acquire_at(ip, displacing, Instant::now())
    }

    fn acquire_at(
        self: &Arc<Self>,
        ip: IpAddr,
        displacing: Displacing,
        now: Instant,
    ) -> Result<ConnectionSlot, Refusal> {
        let ip = canonical(ip);
        let mut table = self.table();
        let max_total = self.max_total.load(Ordering::Relaxed);
        // Displaced connections keep their place until their sessions end, a few
        // seconds; this bounds how far past the cap that can take us.
        if table.active + table.leaving >= max_total.saturating_add(headroom(max_total)) {
            return Err(Refusal::Total);
        }
        let from_ip = table.by_ip.get(&ip).map_or(0, Vec::len);
        if from_ip >= self.max_per_ip.load(Ordering::Relaxed) {
            let own = table.by_ip.get(&ip).into_iter().flatten();
            let Some(victim) = slowest(own, displacing, now) else {
                return Err(Refusal::PerIp);
            };
            table.displace(ip, &victim);
        } else if table.active >= max_total {
            if table.rescan_after.is_some_and(|at| now < at) {
                return Err(Refusal::Total);
            }
            let all = table
                .by_ip
                .iter()
                .flat_map(|(ip, v)| v.iter().map(|a| (*ip, a)));
            let Some((victim_ip, victim)) = slowest_of(all, displacing, now) else {
                table.rescan_after = Some(now + RESCAN);
                return Err(Refusal::Total);
            };
            table.displace(victim_ip, &victim);
        }
        let activity = Arc::new(Activity::new(now));
        table.active += 1;
        table
            .by_ip
            .entry(ip)
            .or_default()
            .push(Arc::clone(&activity));
        Ok(ConnectionSlot {
            limiter: Arc::clone(self),
            ip,
            activity,
        })
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        // Only counts and handles are behind this lock; nothing can panic half-way
        // through changing them.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Connections admitted and not yet ended (those displaced included).
    pub fn active(&self) -> usize {
        let t = self.table();
        t.active + t.leaving
    }

    #[cfg(test)]
    fn active_from(&self, ip: IpAddr) -> usize {
        self.table().by_ip.get(&canonical(ip)).map_or(0, Vec::len)
    }
}

impl Table {
    fn displace(&mut self, ip: IpAddr, victim: &Arc<Activity>) {
        if let Some(list) = self.by_ip.get_mut(&ip) {
            if let Some(i) = list.iter().position(|a| Arc::ptr_eq(a, victim)) {
                list.swap_remove(i);
            }
            if list.is_empty() {
                self.by_ip.remove(&ip);
            }
        }
        victim.displaced.store(true, Ordering::Release);
        // A permit is kept when the session is not waiting: it sees it at its next read.
        victim.wake.notify_one();
        self.active -= 1;
        self.leaving += 1;
    }
}

/// The candidate with the lowest rate among `connections`, if any is one.
fn slowest<'a>(
    connections: impl Iterator<Item = &'a Arc<Activity>>,
    displacing: Displacing,
    now: Instant,
) -> Option<Arc<Activity>> {
    slowest_of(connections.map(|a| ((), a)), displacing, now).map(|((), a)| a)
}

fn slowest_of<'a, K>(
    connections: impl Iterator<Item = (K, &'a Arc<Activity>)>,
    displacing: Displacing,
    now: Instant,
) -> Option<(K, Arc<Activity>)> {
    let mut best: Option<(f64, K, &Arc<Activity>)> = None;
    for (key, activity) in connections {
        let Some(rate) = activity.candidate_rate(displacing, now) else {
            continue;
        };
        if best.as_ref().is_none_or(|(r, _, _)| rate < *r) {
            best = Some((rate, key, activity));
        }
    }
    best.map(|(_, key, activity)| (key, Arc::clone(activity)))
}

impl Activity {
    fn new(accepted: Instant) -> Activity {
        Activity {
            accepted,
            received: AtomicU64::new(0),
            displaced: AtomicBool::new(false),
            wake: Notify::new(),
        }
    }

    /// Counts `n` more bytes from the client.
    pub fn received(&self, n: usize) {
        self.received.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Resolves once the connection was displaced by a newcomer.
    pub async fn displaced(&self) {
        self.wake.notified().await;
    }

    /// Bytes per second over the connection's life, when it may be displaced: old
    /// enough and below the rate.
    fn candidate_rate(&self, displacing: Displacing, now: Instant) -> Option<f64> {
        let age = now.saturating_duration_since(self.accepted);
        if age < displacing.min_age || age.is_zero() {
            return None;
        }
        let rate = self.received.load(Ordering::Relaxed) as f64 / age.as_secs_f64();
        (rate < displacing.below_rate as f64).then_some(rate)
    }
}

impl ConnectionSlot {
    pub fn activity(&self) -> Arc<Activity> {
        Arc::clone(&self.activity)
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut table = self.limiter.table();
        if self.activity.displaced.load(Ordering::Acquire) {
            table.leaving = table.leaving.saturating_sub(1);
            return;
        }
        if let Some(list) = table.by_ip.get_mut(&self.ip) {
            if let Some(i) = list.iter().position(|a| Arc::ptr_eq(a, &self.activity)) {
                list.swap_remove(i);
            }
            if list.is_empty() {
                table.by_ip.remove(&self.ip);
            }
        }
        table.active = table.active.saturating_sub(1);
    }
}

/// How many displaced connections may still be closing at once: a sixteenth of the
/// cap, at least one.
fn headroom(max_total: usize) -> usize {
    max_total / 16 + 1
}

/// An IPv4 client seen through a dual-stack socket counts as its IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// One core's sessions in progress. Clones share the count; it never leaves the
/// core, hence `Rc` and `Cell`.
#[derive(Clone, Default)]
pub struct LiveSessions {
    shared: Rc<Live>,
}

#[derive(Default)]
struct Live {
    count: Cell<usize>,
    /// Woken whenever a session ends.
    ended: Notify,
}

/// Counts one session as live until dropped.
pub struct LiveSession {
    shared: Rc<Live>,
}

impl LiveSessions {
    pub fn enter(&self) -> LiveSession {
        self.shared.count.set(self.shared.count.get() + 1);
        LiveSession {
            shared: Rc::clone(&self.shared),
        }
    }

    pub fn count(&self) -> usize {
        self.shared.count.get()
    }

    /// Resolves once no session is live.
    pub async fn idle(&self) {
        // Single-threaded: nothing can end a session between the check and the
        // registration that `notified()` makes when first polled.
        while self.count() > 0 {
            self.shared.ended.notified().await;
        }
    }
}

impl Drop for LiveSession {
    fn drop(&mut self) {
        let count = &self.shared.count;
        count.set(count.get().saturating_sub(1));
        self.shared.ended.notify_waiters();
    }
}

#[cfg(test)]
mod tests;
