//! Connection accounting: the caps shared by every core, a global count and a count
//! per client IP ([`ConnectionLimiter`]), and each core's count of sessions in
//! progress, which shutdown waits on ([`LiveSessions`]).
//!
//! Every count is held by a guard that gives it back when dropped, so a session
//! that ends early, panics, or is dropped with its runtime can never keep its place.
//! The shared counts are touched once at accept and once at close, never per byte,
//! so a mutex is fine there; the per-core count is the core's alone.

use std::cell::Cell;
use std::collections::HashMap;
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

pub struct ConnectionLimiter {
    max_total: usize,
    max_per_ip: usize,
    total: AtomicUsize,
    by_ip: Mutex<HashMap<IpAddr, usize>>,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Total,
    PerIp,
}

/// Holds one connection's place; gives it back when dropped.
pub struct ConnectionSlot {
    limiter: Arc<ConnectionLimiter>,
    /// Set once the per-IP count holds a place too.
    ip: Option<IpAddr>,
}

impl ConnectionLimiter {
    pub fn new(max_total: usize, max_per_ip: usize) -> Arc<Self> {
        Arc::new(ConnectionLimiter {
            max_total,
            max_per_ip,
            total: AtomicUsize::new(0),
            by_ip: Mutex::new(HashMap::new()),
        })
    }

    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Result<ConnectionSlot, Refusal> {
        let ip = canonical(ip);
        // Counted before it is checked, so that cores racing for the last place
        // cannot all get it; from here on the slot gives the place back on any return.
        let before = self.total.fetch_add(1, Ordering::AcqRel);
        let mut slot = ConnectionSlot {
            limiter: Arc::clone(self),
            ip: None,
        };
        if before >= self.max_total {
            return Err(Refusal::Total);
        }
        let mut map = self.by_ip();
        let count = map.entry(ip).or_insert(0);
        if *count >= self.max_per_ip {
            // The slot's drop takes this lock again.
            drop(map);
            return Err(Refusal::PerIp);
        }
        *count += 1;
        slot.ip = Some(ip);
        Ok(slot)
    }

    fn by_ip(&self) -> MutexGuard<'_, HashMap<IpAddr, usize>> {
        // Only counts are behind this lock; nothing can panic half-way through them.
        self.by_ip.lock().unwrap_or_else(PoisonError::into_inner)
    }

    #[cfg(test)]
    pub fn active(&self) -> usize {
        self.total.load(Ordering::Acquire)
    }

    #[cfg(test)]
    fn active_from(&self, ip: IpAddr) -> usize {
        self.by_ip().get(&canonical(ip)).copied().unwrap_or(0)
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        if let Some(ip) = self.ip {
            let mut map = self.limiter.by_ip();
            if let Some(count) = map.get_mut(&ip) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    map.remove(&ip);
                }
            }
        }
        self.limiter.total.fetch_sub(1, Ordering::AcqRel);
    }
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
mod tests {
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::time::Duration;

    use super::*;

    #[test]
    fn caps_total_and_per_ip_and_releases() {
        let l = ConnectionLimiter::new(3, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let s1 = l.try_acquire(a).unwrap();
        let _s2 = l.try_acquire(a).unwrap();
        assert_eq!(l.try_acquire(a).err(), Some(Refusal::PerIp));
        let _s3 = l.try_acquire(b).unwrap();
        assert_eq!(l.try_acquire(b).err(), Some(Refusal::Total));
        drop(s1);
        assert_eq!(l.active(), 2);
        let _s4 = l.try_acquire(a).unwrap();
        let mapped: IpAddr = "::ffff:10.0.0.2".parse().unwrap();
        assert_eq!(l.try_acquire(mapped).err(), Some(Refusal::Total));
    }

    #[test]
    fn refusals_hold_nothing() {
        let l = ConnectionLimiter::new(2, 1);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let _held = l.try_acquire(a).unwrap();
        for _ in 0..10 {
            assert_eq!(l.try_acquire(a).err(), Some(Refusal::PerIp));
        }
        assert_eq!((l.active(), l.active_from(a)), (1, 1));
    }

    #[test]
    fn a_panicking_session_gives_its_places_back() {
        let l = ConnectionLimiter::new(10, 10);
        let live = LiveSessions::default();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let unwound = catch_unwind(AssertUnwindSafe(|| {
            let _slot = l.try_acquire(a).unwrap();
            let _live = live.enter();
            assert_eq!((l.active(), l.active_from(a), live.count()), (1, 1, 1));
            panic!("a session bug");
        }));
        assert!(unwound.is_err());
        assert_eq!((l.active(), l.active_from(a), live.count()), (0, 0, 0));
    }

    #[test]
    fn shutdown_waits_for_the_last_live_session() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let local = tokio::task::LocalSet::new();
        local.block_on(&rt, async {
            let live = LiveSessions::default();
            let (one, two) = (live.enter(), live.enter());
            tokio::task::spawn_local(async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                drop(one);
                tokio::time::sleep(Duration::from_millis(20)).await;
                drop(two);
            });
            tokio::time::timeout(Duration::from_secs(5), live.idle())
                .await
                .expect("idle once both sessions ended");
            assert_eq!(live.count(), 0);
        });
    }
}
