//! The deliverability feedback loop: what receivers tell us about tenant mail, and
//! what the node does about it (docs/feedback.md).
//!
//! ```text
//!   mod.rs      Addresses: the mx listener's intake addresses (smtp Intake);
//!               FeedbackLoop: the guard, and the worker thread that tells control
//!   intake.rs   a bounce (DSN to a VERP return path) or a complaint (ARF to
//!               [feedback] address) → async_bounced / complained records
//!   guard.rs    rolling 24 h counts per tenant → pause past [reputation] rates
//! ```
//!
//! Signals, and where they come from:
//!
//! ```text
//!   spool commit of a tenant message ──accepted(n)──────────┐
//!   delivery log: bounced, hard category ──recorded()───────┤  (the spool's
//!   intake: async bounce, verified complaint ───────────────┤   EventRouter)
//!                                                           ▼
//!                                   Guard (counts) ── crossed ──► Pause
//!   hard failure / complaint ───────────────────────────────────► Suppress
//!                                       worker thread: api.reputation_pause,
//!                                       api.auto_suppress to control
//! ```
//!
//! The worker owns every call to control, so a slow control never delays a
//! delivery or a session; its queue is bounded (signals beyond it are dropped and
//! counted: the rule they would have applied applies again at the next failure).

pub mod dmarc_intake;
pub mod guard;
pub mod intake;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TrySendError};
use way2mail_daemon::time::now_ms;
use way2mail_queue::{DeliveryOutcome, DeliveryRecord};
use way2mail_smtp::reply::{EnhancedCode, Reply};
use way2mail_wire::client::{Auth, ControlClient};
use way2mail_wire::protocol::{ReputationRates, Request};

use crate::config::Settings;
use crate::tenants::Tenants;
use guard::Guard;

/// Signals waiting for the worker, at most.
const QUEUE: usize = 10_000;
/// How often the worker publishes the rates and re-checks its retries.
const TICK: Duration = Duration::from_secs(5);

/// The `mx` listener's intake: `b-TOKEN@<[bounces] domain>`, `[feedback]
/// address` and `[feedback] dmarc_address`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addresses {
    verp: Option<String>,
    report: Option<String>,
    dmarc: Option<String>,
}

/// What an intake address takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A VERP return path: bounces (and complaints some providers send there).
    Bounce,
    /// `[feedback] address`: complaint reports.
    Complaint,
    /// `[feedback] dmarc_address`: DMARC aggregate reports (`dmarc_intake`).
    Dmarc,
}

impl Addresses {
    /// `None` when none is set. All lower-cased by the caller.
    pub fn new(
        verp: Option<String>,
        report: Option<String>,
        dmarc: Option<String>,
    ) -> Option<Addresses> {
        (verp.is_some() || report.is_some() || dmarc.is_some()).then_some(Addresses {
            verp,
            report,
            dmarc,
        })
    }

    pub fn verp_domain(&self) -> Option<&str> {
        self.verp.as_deref()
    }

    /// Which intake `address` belongs to, if any; an address of the VERP domain
    /// that is not shaped like a return path is `Err` (refused at `RCPT`).
    pub fn kind(&self, address: &str) -> Option<Result<Kind, ()>> {
        let lower = address.to_ascii_lowercase();
        if self.report.as_deref() == Some(lower.as_str()) {
            return Some(Ok(Kind::Complaint));
        }
        if self.dmarc.as_deref() == Some(lower.as_str()) {
            return Some(Ok(Kind::Dmarc));
        }
        let (local, domain) = lower.rsplit_once('@')?;
        if Some(domain.trim_end_matches('.')) != self.verp.as_deref() {
            return None;
        }
        let shaped = local.len() == 2 + way2mail_mta::feedback::verp::TOKEN_CHARS
            && local.starts_with("b-")
            && local[2..].bytes().all(|b| b.is_ascii_alphanumeric());
        Some(if shaped { Ok(Kind::Bounce) } else { Err(()) })
    }
}

impl way2mail_smtp::server::Intake for Addresses {
    fn check(&self, address: &str) -> Option<Result<(), Reply>> {
        self.kind(address).map(|k| {
            k.map(|_| ()).map_err(|()| {
                Reply::new(
                    550,
                    EnhancedCode::new(5, 1, 1),
                    "No such recipient: bounces only",
                )
            })
        })
    }
}

/// What the worker does.
#[derive(Debug)]
enum Signal {
    Suppress {
        tenant: String,
        address: String,
        rule: &'static str,
        source: String,
    },
    Pause {
        tenant: String,
        rates: ReputationRates,
    },
}

/// The guard and the worker's queue, shared by the spool's event router, the
/// intake and the metrics.
pub struct FeedbackLoop {
    guard: Mutex<Guard>,
    signals: Sender<Signal>,
    tenants: Arc<Tenants>,
}

/// The running worker; dropping it does not stop it, [`Worker::stop`] does.
pub struct Worker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl FeedbackLoop {
    /// The loop and its worker thread, which calls control (when configured).
    pub fn start(
        settings: &Settings,
        tenants: Arc<Tenants>,
    ) -> anyhow::Result<(Arc<FeedbackLoop>, Worker)> {
        let (tx, rx) = bounded(QUEUE);
        let feedback = Arc::new(FeedbackLoop {
            guard: Mutex::new(Guard::new(settings.raw.reputation.clone())),
            signals: tx,
            tenants,
        });
        let control = settings.raw.control.enabled().then(|| {
            (
                settings.raw.control.socket.clone(),
                settings.raw.control.timeout,
            )
        });
        let stop = Arc::new(AtomicBool::new(false));
        let worker = {
            let feedback = Arc::clone(&feedback);
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("feedback".into())
                .spawn(move || feedback.work(&rx, control, &stop))?
        };
        Ok((
            feedback,
            Worker {
                stop,
                thread: Some(worker),
            },
        ))
    }

    /// `n` recipients of `tenant` were accepted (the spool committed its message).
    pub fn accepted(&self, tenant: &str, n: usize) {
        self.guard().accepted(tenant, n as u64, now_ms());
    }

    /// A delivery log record of `tenant` was written: a permanent failure of a
    /// hard category counts against the tenant and may suppress the address.
    /// Records of the intake (async bounces, complaints) are counted by it.
    pub fn recorded(&self, tenant: &str, record: &DeliveryRecord) {
        if record.outcome != DeliveryOutcome::Bounced {
            return;
        }
        let Some(rule) = hard_rule(record.category.as_deref()) else {
            return;
        };
        self.hard_bounce(tenant, &record.recipient, rule, &record.message_id);
    }

    /// A permanent failure of rule `rule` (`invalid_recipient`, `bad_domain`) for
    /// `address` of `tenant`, from the record of message `source`.
    pub fn hard_bounce(&self, tenant: &str, address: &str, rule: &'static str, source: &str) {
        let crossed = self.guard().hard_bounce(tenant, now_ms(), &self.tenants);
        self.suppress(tenant, address, rule, source);
        if let Some(rates) = crossed {
            self.pause(tenant, rates);
        }
    }

    /// A verified complaint about `tenant`'s mail to `address` (when the report
    /// names it), from message `source`.
    pub fn complaint(&self, tenant: &str, address: Option<&str>, source: &str) {
        let crossed = self.guard().complaint(tenant, now_ms(), &self.tenants);
        if let Some(address) = address {
            self.suppress(tenant, address, "complaint", source);
        }
        if let Some(rates) = crossed {
            self.pause(tenant, rates);
        }
    }

    /// The rates of every tenant counted, for the metrics.
    pub fn publish(&self) {
        for (tenant, bounce, complaint) in self.guard().rates(now_ms()) {
            metrics::gauge!("way2mail_tenant_bounce_rate", "tenant" => tenant.clone()).set(bounce);
            metrics::gauge!("way2mail_tenant_complaint_rate", "tenant" => tenant).set(complaint);
        }
    }

    fn guard(&self) -> std::sync::MutexGuard<'_, Guard> {
        self.guard.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn suppress(&self, tenant: &str, address: &str, rule: &'static str, source: &str) {
        self.send(Signal::Suppress {
            tenant: tenant.to_string(),
            address: address.to_string(),
            rule,
            source: source.to_string(),
        });
    }

    fn pause(&self, tenant: &str, rates: ReputationRates) {
        tracing::warn!(
            tenant,
            crossed = %rates.crossed,
            accepted = rates.accepted,
            hard_bounces = rates.hard_bounces,
            complaints = rates.complaints,
            "reputation guard: the tenant crossed a threshold; pausing its sending"
        );
        metrics::counter!("way2mail_reputation_pauses_total").increment(1);
        self.send(Signal::Pause {
            tenant: tenant.to_string(),
            rates,
        });
    }

    fn send(&self, signal: Signal) {
        match self.signals.try_send(signal) {
            Ok(()) => {}
            Err(TrySendError::Full(s)) => {
                metrics::counter!("way2mail_feedback_dropped_total").increment(1);
                tracing::warn!(
                    signal = kind(&s),
                    "feedback: the worker's queue is full; signal dropped"
                );
                if let Signal::Pause { tenant, .. } = s {
                    self.guard().pause_failed(&tenant);
                }
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// The worker: tells control, publishes the rates.
    fn work(
        &self,
        rx: &Receiver<Signal>,
        control: Option<(std::path::PathBuf, Duration)>,
        stop: &AtomicBool,
    ) {
        while !stop.load(Ordering::Relaxed) {
            match rx.recv_timeout(TICK) {
                Ok(signal) => self.tell(signal, control.as_ref()),
                Err(RecvTimeoutError::Timeout) => self.publish(),
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    fn tell(&self, signal: Signal, control: Option<&(std::path::PathBuf, Duration)>) {
        let Some((socket, timeout)) = control else {
            return;
        };
        let name = kind(&signal);
        let (request, tenant) = match signal {
            Signal::Suppress {
                tenant,
                address,
                rule,
                source,
            } => {
                metrics::counter!("way2mail_auto_suppressions_total", "rule" => rule).increment(1);
                (
                    Request::ApiAutoSuppress {
                        tenant: tenant.clone(),
                        address,
                        rule: rule.to_string(),
                        source,
                    },
                    tenant,
                )
            }
            Signal::Pause { tenant, rates } => (
                Request::ApiReputationPause {
                    tenant: tenant.clone(),
                    rates,
                },
                tenant,
            ),
        };
        let result = ControlClient::connect(socket, *timeout)
            .and_then(|mut c| c.call(request, &Auth::default()));
        if let Err(e) = result {
            tracing::warn!(error = %e, tenant = %tenant, signal = name, "feedback: control not told");
            if name == "pause" {
                self.guard().pause_failed(&tenant);
            }
        }
    }
}

fn kind(signal: &Signal) -> &'static str {
    match signal {
        Signal::Suppress { .. } => "suppress",
        Signal::Pause { .. } => "pause",
    }
}

/// The `Feedback-ID:` field of tenant mail (`CAMPAIGN:TENANT:way2mail`, the form
/// mailbox providers' postmaster tools aggregate by): the campaign is the
/// message's first tag (letters, digits, `.`, `_`, `-`; at most 64), else
/// `default`. `None` for mail of no tenant.
pub fn feedback_id(envelope: &way2mail_smtp::Envelope) -> Option<String> {
    let tenant = envelope.origin.tenant.as_deref()?;
    let campaign = envelope
        .tags
        .first()
        .filter(|t| {
            !t.is_empty()
                && t.len() <= 64
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        })
        .map_or("default", String::as_str);
    Some(format!("Feedback-ID: {campaign}:{tenant}:way2mail\r\n"))
}

/// The automatic suppression rule of a failure category, for the hard ones.
pub fn hard_rule(category: Option<&str>) -> Option<&'static str> {
    match category? {
        "invalid_recipient" => Some("invalid_recipient"),
        "bad_domain" => Some("bad_domain"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intake_addresses() {
        let token = "a".repeat(way2mail_mta::feedback::verp::TOKEN_CHARS);
        let a = Addresses::new(
            Some("bounces.example".into()),
            Some("fbl@example.com".into()),
            Some("dmarc@example.com".into()),
        )
        .expect("on");
        assert_eq!(a.kind("Dmarc@Example.com"), Some(Ok(Kind::Dmarc)));
        assert_eq!(a.kind("FBL@Example.com"), Some(Ok(Kind::Complaint)));
        assert_eq!(
            a.kind(&format!("b-{token}@Bounces.Example")),
            Some(Ok(Kind::Bounce))
        );
        assert_eq!(a.kind("postmaster@bounces.example"), Some(Err(())));
        assert_eq!(a.kind("b-short@bounces.example"), Some(Err(())));
        assert_eq!(a.kind("bob@example.com"), None);
        assert_eq!(a.kind("postmaster"), None);
        assert!(Addresses::new(None, None, None).is_none());
    }
}
