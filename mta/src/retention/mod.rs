//! The MTA's retention sweep: every `[retention] sweep_interval` (and once at start)
//! on its own thread, and on demand through the admin socket (`retention.run`).
//! Per data key it removes queued messages older than the content period and
//! delivery log records older than the log period, then whatever is left of erased
//! tenants.
//!
//! ```text
//!   plan.rs    which periods apply to which key (snapshot, legal hold, defaults)
//!   report.rs  scheduled sweeps' reports to control's audit log, kept while it is away
//!   mod.rs     Sweeper::sweep (one at a time) and the sweep thread
//! ```
//!
//! Reports of sweeps run through `retention.run` go back in the admin answer only:
//! control, which asked, records those itself.

pub mod plan;
pub mod report;

use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use way2mail_daemon::duration;
use way2mail_queue::Spool;
use way2mail_wire::mta_admin::{SweepEntry, SweepReport};

use crate::tenants::Tenants;

use self::plan::{Periods, Rules, Step};
use self::report::Reports;
use way2mail_daemon::time::now_ms;

/// A sweep that stopped at a spool error; what it removed before is in `partial`.
#[derive(Debug)]
pub struct SweepFailed {
    pub partial: SweepReport,
    pub error: way2mail_queue::Error,
}

pub struct Sweeper {
    spool: Spool,
    /// `None` when the MTA runs without control.
    tenants: Option<Arc<Tenants>>,
    defaults: Periods,
    /// One sweep at a time: a `retention.run` waits for a scheduled sweep in progress.
    running: Mutex<()>,
}

impl Sweeper {
    pub fn new(spool: Spool, tenants: Option<Arc<Tenants>>, defaults: Periods) -> Sweeper {
        Sweeper {
            spool,
            tenants,
            defaults,
            running: Mutex::new(()),
        }
    }

    /// Runs one sweep now and logs one line about it; `trigger` names who asked.
    pub fn sweep(&self, trigger: &'static str) -> Result<SweepReport, SweepFailed> {
        let _one = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        let started = Instant::now();
        let mut report = SweepReport {
            started_ms: now_ms(),
            ..SweepReport::default()
        };
        let directory = self.tenants.as_ref().and_then(|t| t.directory());
        let rules = match (&self.tenants, &directory) {
            (None, _) => Rules::Defaults,
            (Some(_), None) => Rules::Unknown,
            (Some(_), Some(d)) => Rules::Snapshot(d),
        };
        let keyring = self.spool.keyring();
        let plan = plan::plan(
            keyring.system().id(),
            &keyring.tenants(),
            rules,
            self.defaults,
        );
        let mut failed = None;
        for step in &plan.steps {
            match self.sweep_key(step, report.started_ms) {
                Ok(Some(entry)) => report.entries.push(entry),
                Ok(None) => {}
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        if failed.is_none() {
            match self.spool.purge_erased() {
                Ok((messages, records)) => {
                    report.erased_messages = messages;
                    report.erased_log_records = records;
                }
                Err(e) => failed = Some(e),
            }
        }
        // API idempotency records live a day whatever the tenant's retention: they
        // only repeat an answer (docs/api.md).
        let mut idempotency = 0;
        if failed.is_none() {
            match self.spool.purge_idempotency(report.started_ms) {
                Ok(n) => idempotency = n,
                Err(e) => failed = Some(e),
            }
        }
        log(
            &report,
            &plan,
            trigger,
            started.elapsed(),
            idempotency,
            failed.as_ref(),
        );
        match failed {
            None => Ok(report),
            Some(error) => Err(SweepFailed {
                partial: report,
                error,
            }),
        }
    }

    /// One key's purges; an entry when it lost something.
    fn sweep_key(
        &self,
        step: &Step,
        now_ms: u64,
    ) -> Result<Option<SweepEntry>, way2mail_queue::Error> {
        let p = step.periods;
        let reason = format!(
            "removed by the retention policy (content {})",
            duration::format(p.content_secs)
        );
        let content_before = now_ms.saturating_sub(p.content_secs.saturating_mul(1000));
        let log_before = now_ms.saturating_sub(p.log_secs.saturating_mul(1000));
        let content = self
            .spool
            .purge_content_of(step.key_id, content_before, &reason)?;
        let log_records = self.spool.purge_log_of(step.key_id, log_before)? as u64;
        // Webhook events not yet posted are event data too: kept no longer than the
        // delivery log (the dispatcher gives up on them sooner anyway).
        self.spool.purge_webhooks_of(step.key_id, log_before)?;
        // DMARC reports received for the tenant's domains: by the end of the period
        // each covers, under the same period as the delivery log.
        let dmarc = self.spool.purge_dmarc_of(step.key_id, log_before)?;
        if dmarc > 0 {
            tracing::debug!(
                tenant = step.tenant.as_deref().unwrap_or(""),
                reports = dmarc,
                "retention: DMARC reports removed"
            );
        }
        if content.messages == 0 && log_records == 0 {
            return Ok(None);
        }
        Ok(Some(SweepEntry {
            tenant: step.tenant.clone(),
            messages_removed: content.messages,
            messages_in_delivery: content.in_delivery,
            log_records_removed: log_records,
        }))
    }
}

fn log(
    report: &SweepReport,
    plan: &plan::Plan,
    trigger: &'static str,
    took: Duration,
    idempotency: usize,
    failed: Option<&way2mail_queue::Error>,
) {
    let sum = |f: fn(&SweepEntry) -> u64| report.entries.iter().map(f).sum::<u64>();
    let messages = sum(|e| e.messages_removed);
    let log_records = sum(|e| e.log_records_removed);
    let in_delivery = sum(|e| e.messages_in_delivery);
    let keys = plan.steps.len();
    let on_hold = plan.on_hold.len();
    let duration_ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX);
    match failed {
        None => tracing::info!(
            trigger,
            keys,
            messages,
            log_records,
            in_delivery,
            erased_messages = report.erased_messages,
            erased_log_records = report.erased_log_records,
            idempotency,
            on_hold,
            unknown = plan.unknown,
            duration_ms,
            "retention sweep"
        ),
        Some(error) => tracing::error!(
            trigger,
            keys,
            messages,
            log_records,
            %error,
            duration_ms,
            "retention sweep stopped by a spool error; the next sweep goes on"
        ),
    }
}

/// Where scheduled sweeps' reports go: control's socket.
pub struct ReportTo {
    pub socket: std::path::PathBuf,
    pub timeout: Duration,
}

/// The sweep thread; [`SweepThread::stop`] ends it after the sweep in progress.
pub struct SweepThread {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl SweepThread {
    pub fn start(
        sweeper: Arc<Sweeper>,
        interval: Duration,
        report_to: Option<ReportTo>,
    ) -> std::io::Result<SweepThread> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let flag = Arc::clone(&stop);
        let mut reports = report_to.map(|r| Reports::new(r.socket, r.timeout));
        let thread = std::thread::Builder::new()
            .name("retention".into())
            .spawn(move || loop {
                let report = match sweeper.sweep("schedule") {
                    Ok(report) => report,
                    Err(failed) => failed.partial,
                };
                if let Some(reports) = reports.as_mut() {
                    reports.send(report);
                }
                if wait(&flag, interval) {
                    return;
                }
            })?;
        Ok(SweepThread {
            stop,
            thread: Some(thread),
        })
    }

    pub fn stop(mut self) {
        let (lock, cv) = &*self.stop;
        *lock.lock().unwrap_or_else(PoisonError::into_inner) = true;
        cv.notify_all();
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                tracing::error!("the retention thread panicked");
            }
        }
    }
}

/// Sleeps `d` unless stopped first; true when stopped.
fn wait(stop: &(Mutex<bool>, Condvar), d: Duration) -> bool {
    let (lock, cv) = stop;
    let guard = lock.lock().unwrap_or_else(PoisonError::into_inner);
    let (guard, _) = cv
        .wait_timeout_while(guard, d, |stopped| !*stopped)
        .unwrap_or_else(PoisonError::into_inner);
    *guard
}
