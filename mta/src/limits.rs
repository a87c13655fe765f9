//! Connection accounting shared by every core: a global cap and a per-client-IP cap.
//! Touched once at accept and once at close, never per byte, so a mutex is fine here.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

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
    ip: IpAddr,
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
        if self.total.fetch_add(1, Ordering::AcqRel) >= self.max_total {
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err(Refusal::Total);
        }
        let mut map = self.by_ip.lock().unwrap_or_else(|p| p.into_inner());
        let count = map.entry(ip).or_insert(0);
        if *count >= self.max_per_ip {
            drop(map);
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err(Refusal::PerIp);
        }
        *count += 1;
        Ok(ConnectionSlot {
            limiter: Arc::clone(self),
            ip,
        })
    }

    #[cfg(test)]
    pub fn active(&self) -> usize {
        self.total.load(Ordering::Acquire)
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut map = self.limiter.by_ip.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = map.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                map.remove(&self.ip);
            }
        }
        drop(map);
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

#[cfg(test)]
mod tests {
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
}
