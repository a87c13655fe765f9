//! Starting delivery: the delivery log writer and the scheduler thread at once, and
//! for each core a [`CorePlan`] that the core turns into its worker once it runs
//! (the worker and its DNS resolver must be made on their own thread).

use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::{Context as _, Result};
use crossbeam_channel::Sender;
use rustls::ClientConfig;
use tokio::sync::mpsc::UnboundedReceiver;
use way2mail_mta::outbound::mx::MxResolver;
use way2mail_queue::Spool;

use super::budget::Budget;
use super::handoff::Handoff;
use super::{connection, log, scheduler, worker, Job, JobResult};
use crate::config::Settings;
use crate::current::Current;
use crate::io::Backend;
use crate::tenants::Tenants;
use crate::tls;

/// Everything a core needs to build its delivery worker; the worker itself (and its
/// DNS resolver) is created on the core, because neither may leave its thread.
pub struct CorePlan {
    pub jobs: UnboundedReceiver<Job>,
    pub backend: Backend,
    /// The settings in force: what only a restart changes is read once, here;
    /// routes and shaping by the worker at each attempt.
    pub settings: Arc<Current<Settings>>,
    pub tls_opportunistic: Arc<ClientConfig>,
    pub tls_verified: Arc<ClientConfig>,
    pub results: Sender<JobResult>,
}

impl CorePlan {
    /// Spawns the worker on the current core's runtime.
    pub fn start(self) {
        let s = &self.settings.get();
        let d = &s.raw.delivery;
        let resolver = match MxResolver::new(&s.dns) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "cannot start the DNS resolver: no delivery on this core");
                return;
            }
        };
        let ctx = worker::Context {
            backend: self.backend,
            resolver,
            settings: Arc::clone(&self.settings),
            port: d.port,
            source: s.egress.source,
            connect_timeout: d.connect_timeout,
            connection: connection::Settings {
                ehlo: s.egress.ehlo.clone(),
                command_timeout: d.command_timeout,
                data_timeout: d.data_timeout,
                tls_timeout: s.raw.timeouts.tls_handshake,
                tls_opportunistic: self.tls_opportunistic,
                tls_verified: self.tls_verified,
            },
            results: self.results,
        };
        tokio::task::spawn_local(worker::Worker::new(ctx).run(self.jobs));
    }
}

/// Delivery, started: one plan per core, the scheduler's thread, and the hand-off
/// through which sessions give it fresh mail.
pub struct Started {
    pub plans: Vec<CorePlan>,
    pub scheduler: JoinHandle<()>,
    pub handoff: Arc<Handoff>,
}

/// Starts the delivery log writer and the scheduler thread, and returns one plan
/// per core; `None` when delivery is disabled.
pub fn start(
    current: &Arc<Current<Settings>>,
    spool: &Spool,
    tenants: Option<Arc<Tenants>>,
    backend: Backend,
    stop: Arc<AtomicBool>,
    active: Arc<AtomicUsize>,
) -> Result<Option<Started>> {
    let settings = current.get();
    let d = &settings.raw.delivery;
    if !d.enabled {
        tracing::info!("delivery disabled ([delivery] enabled = false): mail stays queued");
        return Ok(None);
    }
    let file = (!d.log_file.as_os_str().is_empty()).then_some(d.log_file.as_path());
    if let Some(path) = file {
        tracing::warn!(
            path = %path.display(),
            "delivery.log_file is set: it holds recipient addresses in plaintext, outside \
             retention and erasure (the sealed delivery log in the spool is the log of record)"
        );
    }
    let log = log::start(log::LogSettings {
        file,
        recipients: settings.raw.log.recipients,
    })?;
    let (results_tx, results_rx) = crossbeam_channel::unbounded();
    let tls_opportunistic = tls::client::opportunistic();
    let tls_verified = tls::client::verified();
    let mut senders = Vec::new();
    let mut plans = Vec::new();
    for _ in 0..settings.threads {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        senders.push(tx);
        plans.push(CorePlan {
            jobs: rx,
            backend,
            settings: Arc::clone(current),
            tls_opportunistic: Arc::clone(&tls_opportunistic),
            tls_verified: Arc::clone(&tls_verified),
            results: results_tx.clone(),
        });
    }
    let budget = Arc::new(Budget::new(settings.raw.spool.memory_budget));
    let (handoff, doorbell) = Handoff::new(Arc::clone(&budget), d.lease_secs * 1000);
    let handoff = Arc::new(handoff);
    let scheduler = scheduler::Scheduler {
        spool: spool.clone(),
        config: d.clone(),
        hostname: settings.raw.hostname.clone(),
        cores: senders,
        results: results_rx,
        log,
        stop,
        tenants,
        active,
        budget,
        handoff: Arc::clone(&handoff),
        doorbell,
        bounces: Arc::clone(&settings.bounces),
        verp: settings.raw.bounces.verp_domain(),
    };
    let handle = std::thread::Builder::new()
        .name("scheduler".into())
        .spawn(move || scheduler.run())
        .context("starting the scheduler")?;
    Ok(Some(Started {
        plans,
        scheduler: handle,
        handoff,
    }))
}
