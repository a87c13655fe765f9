//! The spool's condition as sessions see it, refreshed off the hot path: a thread
//! samples the spool's health and the free space of its filesystem twice a second
//! and publishes one atomic value that every session reads before each command.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use way2mail_queue::{Health, Spool};
use way2mail_smtp::server::SpoolState;

const READY: u8 = 0;
const DISK_LOW: u8 = 1;
const UNHEALTHY: u8 = 2;

#[derive(Clone)]
pub struct SpoolMonitor {
    state: Arc<AtomicU8>,
}

impl SpoolMonitor {
    /// Samples once now, then keeps sampling on a background thread for as long as
    /// the process lives.
    pub fn start(spool: Spool, min_free: u64) -> std::io::Result<SpoolMonitor> {
        let monitor = SpoolMonitor {
            state: Arc::new(AtomicU8::new(READY)),
        };
        monitor.sample(&spool, min_free);
        let m = monitor.clone();
        std::thread::Builder::new()
            .name("spool-monitor".into())
            .spawn(move || loop {
                std::thread::sleep(Duration::from_millis(500));
                m.sample(&spool, min_free);
            })?;
        Ok(monitor)
    }

    fn sample(&self, spool: &Spool, min_free: u64) {
        let next = match (spool.health(), spool.free_space()) {
            (Health::Unhealthy(reason), _) => {
                if self.state.load(Ordering::Relaxed) != UNHEALTHY {
                    tracing::error!(%reason, "spool unhealthy: refusing new mail with 421");
                }
                UNHEALTHY
            }
            (_, Ok(free)) if free < min_free => {
                if self.state.load(Ordering::Relaxed) != DISK_LOW {
                    tracing::warn!(
                        free,
                        min_free,
                        "spool disk space low: refusing MAIL with 452"
                    );
                }
                DISK_LOW
            }
            (_, Err(e)) => {
                tracing::warn!(error = %e, "cannot read free space of the spool filesystem");
                READY
            }
            _ => READY,
        };
        self.state.store(next, Ordering::Relaxed);
    }

    pub fn state(&self) -> SpoolState {
        match self.state.load(Ordering::Relaxed) {
            DISK_LOW => SpoolState::DiskLow,
            UNHEALTHY => SpoolState::Unhealthy,
            _ => SpoolState::Ready,
        }
    }
}
