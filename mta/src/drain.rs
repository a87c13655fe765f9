//! Draining a node (`way2mail-mta drain`, the admin op `drain`): it stops taking
//! mail and empties its queue before it stops, so that a balancer or a rolling
//! upgrade can take it out of service without a message waiting on a stopped node.
//!
//! 1. `/readyz` answers 503 (`draining`): a balancer's health check takes the node
//!    out of rotation;
//! 2. every core's accept loops end, closing the listening sockets: new connections
//!    are refused (to a balancer: the next node), sessions already open finish;
//! 3. delivery goes on as usual; with `stop_when_empty`, once the spool holds no
//!    message and no session is open, the daemon stops as on SIGTERM (exit 0, an
//!    empty spool left behind).
//!
//! Mail that cannot be delivered keeps the node draining until it is delivered,
//! bounced or expired (`[delivery] max_queue_lifetime_secs`); `way2mail queue` shows what is
//! left. A drain lasts until the process ends: a restart serves again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use way2mail_queue::Spool;

use crate::limits::ConnectionLimiter;

/// How often a draining node looks at its queue and sessions.
const CHECK: Duration = Duration::from_secs(1);

/// Whether the node drains; the accept loops and `/readyz` follow it.
pub struct Drain {
    tx: watch::Sender<bool>,
    stop_when_empty: AtomicBool,
    /// Where the queue goes instead of being delivered here, when asked.
    handover: Mutex<Option<crate::handover::Sender>>,
}

impl Default for Drain {
    fn default() -> Drain {
        Drain {
            tx: watch::channel(false).0,
            stop_when_empty: AtomicBool::new(false),
            handover: Mutex::new(None),
        }
    }
}

impl Drain {
    pub fn is_draining(&self) -> bool {
        *self.tx.borrow()
    }

    /// Resolves once the node drains.
    pub async fn started(&self) {
        let mut rx = self.tx.subscribe();
        // An error means the sender is gone: the process is ending anyway.
        let _ = rx.wait_for(|d| *d).await;
    }

    /// Starts draining (again: only `stop_when_empty` can change); `true` the first
    /// time. The watcher stops the daemon once the queue is empty, when asked to.
    pub fn start(
        self: &Arc<Self>,
        stop_when_empty: bool,
        handover: Option<crate::handover::Sender>,
        spool: &Spool,
        limiter: &Arc<ConnectionLimiter>,
    ) -> bool {
        if stop_when_empty {
            self.stop_when_empty.store(true, Ordering::Release);
        }
        if let Some(sender) = handover {
            tracing::warn!(
                peer = sender.address(),
                "draining: the queue goes to a peer"
            );
            *self.handover.lock().unwrap_or_else(PoisonError::into_inner) = Some(sender);
        }
        let first = !self.tx.send_replace(true);
        if first {
            tracing::warn!(
                queued = spool.len(),
                stop_when_empty,
                "draining: /readyz answers 503, the listeners close, the queue is delivered"
            );
            metrics::gauge!("way2mail_draining").set(1.0);
            let (drain, spool, limiter) = (Arc::clone(self), spool.clone(), Arc::clone(limiter));
            let spawned = std::thread::Builder::new()
                .name("drain".into())
                .spawn(move || drain.watch(&spool, &limiter));
            if let Err(e) = spawned {
                tracing::error!(error = %e, "draining: the watcher thread did not start");
            }
        }
        first
    }

    /// Until the queue is empty and no session is open, then SIGTERM to ourselves
    /// when asked to stop.
    fn watch(&self, spool: &Spool, limiter: &ConnectionLimiter) {
        let mut last = usize::MAX;
        loop {
            std::thread::sleep(CHECK);
            self.hand_over(spool);
            let (queued, sessions) = (spool.len(), limiter.active());
            if queued != last {
                tracing::info!(queued, sessions, "draining");
                last = queued;
            }
            if queued == 0 && sessions == 0 && self.stop_when_empty.load(Ordering::Acquire) {
                tracing::warn!("drained: the queue is empty; stopping");
                let me = rustix::process::getpid();
                if let Err(e) = rustix::process::kill_process(me, rustix::process::Signal::TERM) {
                    tracing::error!(error = %e, "drained, but the daemon could not stop itself");
                }
                return;
            }
        }
    }

    /// Sends what can go to the peer, when there is one; a failure is logged and
    /// tried again at the next check.
    fn hand_over(&self, spool: &Spool) {
        let mut guard = self.handover.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(sender) = guard.as_mut() else {
            return;
        };
        match sender.hand_over_queue(spool) {
            Ok(0) => {}
            Ok(sent) => tracing::info!(sent, peer = sender.address(), "draining: handed over"),
            Err(e) => tracing::warn!(
                peer = sender.address(),
                error = %format!("{e:#}"),
                "draining: handover failed; trying again"
            ),
        }
    }
}
