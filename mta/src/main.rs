//! `way2mail-mta`: the SMTP engine daemon, and `way2mail-mta spool list|log|verify`
//! for operators.
//!
//! Start-up order matters: configuration (fail fast, naming the key), logging, TLS
//! material, the spool (its lock is what stops a second daemon from sharing our
//! `SO_REUSEPORT` ports; opened and recovered under a watchdog, checked against its
//! anchor), then sockets and worker threads, and last the admin socket. SIGHUP
//! re-reads the configuration and applies what can change live (`reload.rs`).
//! Shutdown runs the other way: close the admin socket, stop accepting, let
//! sessions finish or answer `421`, flush, exit 0.
//!
//! ```text
//! main ── config ── spool (sled, group-commit flusher) ── monitor thread
//!   ├── tenants: follower thread (snapshot, data keys, erasures)
//!   ├── delivery: scheduler thread, and one CorePlan per core
//!   ├── retention: sweep thread (reports to control)
//!   ├── runtime::start_cores ── core N: delivery worker (its CorePlan)
//!   │                           accept ── session ── protocol (way2mail_smtp)
//!   ├── admin: accept thread ── connection threads (inventory, export, erase, dump)
//!   └── signals: SIGHUP ── reload (settings swapped for new sessions and attempts)
//! ```
//!
//! This file is the only one that knows every part. The runtime is handed what each
//! core starts besides its listeners (a `CoreStart`), so that neither the runtime
//! nor delivery knows the other and no two modules depend on each other.

mod admin;
mod api;
mod config;
mod current;
mod delivery;
mod dnsbl;
mod drain;
mod feedback_loop;
mod handover;
mod inbound;
mod io;
mod limits;
mod metrics;
mod monitor;
mod reload;
mod retention;
mod runtime;
mod scan;
mod session;
mod signer;
mod spool_cli;
mod submit;
mod tenants;
mod tls;
mod unsubscribe;
mod webhooks;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use way2mail_mta::bounces;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use way2mail_daemon::watchdog::{self, Progress};
use way2mail_queue::{Spool, SpoolOptions};

use crate::config::{Config, Settings};
use crate::current::Current;
use crate::io::Backend;
use crate::limits::ConnectionLimiter;
use crate::monitor::SpoolMonitor;
use crate::reload::Reloader;
use crate::runtime::CoreStart;
use crate::session::{Live, Shared};
use crate::tenants::{Follower, Source, Tenants};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "way2mail-mta", version, about = "Way2Mail SMTP engine")]
struct Cli {
    /// Configuration file (TOML); without it the dev defaults apply.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Validate the configuration and exit: 0 valid, 1 invalid.
    #[arg(long)]
    check: bool,
    /// Start on a spool that is behind its anchor (committed messages were lost, or
    /// an older copy was put in place), once you decided to keep it as it is. Logged
    /// at WARN; the anchor is rewritten.
    #[arg(long)]
    accept_rollback: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Inspect the queue: through the running daemon's admin socket, or the spool
    /// files when no daemon runs.
    Spool {
        #[command(subcommand)]
        command: SpoolCommand,
    },
    /// Take the running node out of service: /readyz answers 503, the listeners
    /// close, the queue is delivered; then the daemon stops (docs/operations.md,
    /// "Draining a node").
    Drain {
        /// Keep the daemon running once the queue is empty (it still takes no mail).
        #[arg(long)]
        keep_running: bool,
        /// Hand the queue over to this peer node (HOST:PORT of its `[handover]
        /// listen`) instead of delivering it from here.
        #[arg(long, value_name = "HOST:PORT")]
        handover: Option<String>,
        /// The name the peer's certificate must carry (default: HOST).
        #[arg(long, value_name = "NAME", requires = "handover")]
        peer_name: Option<String>,
        /// Follow the queue until the daemon stopped, at most this many seconds
        /// (exit 1 when it had not by then).
        #[arg(long, value_name = "SECS")]
        wait: Option<u64>,
    },
}

#[derive(Subcommand)]
enum SpoolCommand {
    /// One line per queued message: id, state, sender, recipients, size, age.
    List {
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Messages per recipient domain by age in minutes (Postfix qshape's view).
    Summary {
        /// One JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Delivery outcomes kept in the spool, oldest first, as JSON lines.
    Log {
        /// Only this message (its queue id).
        #[arg(long, value_name = "ID")]
        message: Option<String>,
        /// Only this recipient address (case-insensitive).
        #[arg(long, value_name = "ADDRESS")]
        recipient: Option<String>,
        /// Only the last this many hours.
        #[arg(long, value_name = "HOURS")]
        hours: Option<u64>,
    },
    /// Check every record (opens, decodes, belongs to a message) and the anchor;
    /// exits 0 when clean, 1 when a problem was found. Changes nothing. Needs the
    /// daemon stopped.
    Verify,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("way2mail-mta: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    let config = match &cli.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    let settings = config.validate()?;
    if cli.check {
        println!("configuration OK");
        return Ok(ExitCode::SUCCESS);
    }
    match cli.command {
        Some(Command::Spool {
            command: SpoolCommand::List { json },
        }) => spool_cli::list(&settings, json),
        Some(Command::Spool {
            command:
                SpoolCommand::Log {
                    message,
                    recipient,
                    hours,
                },
        }) => spool_cli::log(&settings, message.as_deref(), recipient, hours),
        Some(Command::Spool {
            command: SpoolCommand::Summary { json },
        }) => spool_cli::summary(&settings, json),
        Some(Command::Spool {
            command: SpoolCommand::Verify,
        }) => spool_cli::verify(&settings),
        Some(Command::Drain {
            keep_running,
            handover,
            peer_name,
            wait,
        }) => spool_cli::drain(
            &settings,
            way2mail_wire::mta_admin::AdminOp::Drain {
                stop_when_empty: !keep_running,
                handover,
                peer_name,
            },
            wait.map(std::time::Duration::from_secs),
        ),
        None => serve(settings, cli.config, cli.accept_rollback),
    }
}

/// Opens and recovers the spool under a watchdog: sled may spin or panic on damaged
/// files, and a daemon that never starts must say so rather than hang.
fn open_spool(
    spool_cfg: &config::SpoolConfig,
    keyring: way2mail_seal::Keyring,
    accept_rollback: bool,
) -> Result<(Spool, way2mail_queue::RecoveryReport)> {
    let progress = Progress::new();
    let options = SpoolOptions {
        accept_rollback,
        progress: progress.clone(),
        cache_bytes: Some(spool_cfg.cache_size),
    };
    let path = spool_cfg.path.clone();
    let what = format!("opening the spool {}", path.display());
    watchdog::bounded(&what, spool_cfg.open_timeout, &progress, move || {
        let spool = Spool::open_with(&path, keyring, &options)?;
        let report = spool.recover()?;
        Ok::<_, way2mail_queue::Error>((spool, report))
    })
    .map_err(|stuck| anyhow::anyhow!("{stuck}. {}", spool_cli::DAMAGED_HINT))?
    .with_context(|| what)
}

fn serve(settings: Settings, path: Option<PathBuf>, accept_rollback: bool) -> Result<ExitCode> {
    way2mail_daemon::logging::init(&settings.raw.log);
    let endpoint = metrics::install(settings.metrics)?;
    let tls = tls::server_config(&settings.raw.tls, &settings.raw.hostname)?;
    let tls_files = reload::tls_files(&settings.raw.tls);
    if endpoint.is_some() {
        metrics::certificate_expiry(&settings.raw.tls.cert);
    }
    let spool_cfg = &settings.raw.spool;
    let keyring = spool_cfg.open_keyring()?;
    let (spool, report) = open_spool(spool_cfg, keyring, accept_rollback)?;
    tracing::info!(
        messages = report.messages,
        quarantined = report.quarantined,
        schedule_repaired = report.schedule_repaired,
        orphans_removed = report.orphans_removed,
        leases_released = report.leases_released,
        erased_removed = report.erased_removed,
        migrated = report.migrated,
        path = %spool.path().display(),
        "spool checked"
    );
    let monitor = SpoolMonitor::start(spool.clone(), spool_cfg.min_free_space)
        .context("starting the spool monitor")?;
    let (tenants, follower) = start_tenants(&settings, &spool)?;
    let backend = Backend::choose(settings.raw.runtime.io)?;
    let sockets = runtime::bind_all(&settings.listeners, settings.threads)?;
    let limits = &settings.raw.limits;
    let limiter = ConnectionLimiter::new(limits.max_connections, limits.max_connections_per_ip);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let settings = Arc::new(settings);
    let current = Arc::new(Current::new(Arc::clone(&settings)));
    let stop_scheduler = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let active = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let delivery = delivery::start(
        &current,
        &spool,
        tenants.clone(),
        backend,
        Arc::clone(&stop_scheduler),
        Arc::clone(&active),
    )?;
    let (sweeper, sweep_thread) = start_retention(&settings, &spool, tenants.clone())?;
    // Mail handed over by draining peers; its body as queued (with the headers
    // added here) may be a little over the size limit.
    let handover = match settings.raw.handover.check()? {
        Some(address) => Some(handover::Receiver::start(
            &settings.raw.handover,
            address,
            spool.clone(),
            settings.raw.limits.max_message_size.saturating_add(1 << 20),
        )?),
        None => None,
    };
    // Tenant events for webhooks (and refused recipients in the delivery log) exist
    // only where there are tenants.
    // So do the feedback loop's guard and automatic suppression (docs/feedback.md).
    let (webhooks, feedback) = match &tenants {
        Some(t) => {
            t.record_events_in(spool.clone());
            let (feedback, worker) = feedback_loop::FeedbackLoop::start(&settings, Arc::clone(t))?;
            let dispatcher = webhooks::Dispatcher::start(
                spool.clone(),
                Arc::clone(t),
                &settings,
                Some(Arc::clone(&feedback)),
            )?;
            (Some(dispatcher), Some((feedback, worker)))
        }
        None => (None, None),
    };
    let (plans, scheduler, handoff) = match delivery {
        Some(d) => (d.plans, Some(d.scheduler), Some(d.handoff)),
        None => (Vec::new(), None, None),
    };
    let starts: Vec<CoreStart> = plans
        .into_iter()
        .map(|plan| Box::new(move || plan.start()) as CoreStart)
        .collect();
    // Registered before the workers start so that no signal is missed.
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])
        .context("installing signal handlers")?;
    tracing::info!(
        backend = backend.name(),
        threads = settings.threads,
        hostname = %settings.raw.hostname,
        "way2mail-mta started"
    );
    let drain = Arc::new(drain::Drain::default());
    let admin_limiter = Arc::clone(&limiter);
    let live = Live {
        signer: signer::Signer::new(Arc::clone(&settings), tenants.clone()),
        inbound: inbound::Inbound::new(Arc::clone(&settings)),
        settings: Arc::clone(&settings),
        api_tls: tls::api_config(&tls),
        tls,
    };
    let metrics_on = endpoint.is_some();
    if let Some(endpoint) = endpoint {
        let max_age = settings.raw.control.snapshot_max_age;
        endpoint.serve(metrics::ReadyCheck {
            spool: spool.clone(),
            monitor: monitor.clone(),
            tenants: tenants.clone().map(|t| (t, max_age)),
            active,
            drain: Arc::clone(&drain),
        })?;
    }
    let shared = Arc::new(Shared {
        live: Current::new(Arc::new(live)),
        spool: spool.clone(),
        monitor,
        shutdown: stop_rx,
        feedback: feedback.as_ref().map(|(f, _)| Arc::clone(f)),
        dnsbl: dnsbl::Cache::default(),
        drain: Arc::clone(&drain),
        tenants: tenants.clone(),
        handoff,
        ingest: session::ingest::IngestBudget::new(
            settings.raw.spool.ingest_budget,
            settings.raw.spool.message_buffer,
        ),
    });
    let admin_settings = settings.admin.clone();
    let mut reloader = Reloader {
        path,
        shared: Arc::clone(&shared),
        settings: Arc::clone(&current),
        limiter: Arc::clone(&limiter),
        tenants,
        metrics: metrics_on,
        tls_files,
    };
    let cores = runtime::start_cores(shared, limiter, backend, sockets, starts)?;
    let admin = match admin_settings {
        Some(a) => {
            let ops = admin::Ops {
                spool: spool.clone(),
                sweeper,
                settings: current,
                drain: Arc::clone(&drain),
                limiter: Arc::clone(&admin_limiter),
            };
            Some(admin::AdminServer::start(a, ops)?)
        }
        None => {
            tracing::info!("admin.socket is empty: no admin socket");
            None
        }
    };
    // The listening sockets are bound (connections queue in their backlog) and the
    // spool is recovered: systemd may start what is ordered after us.
    way2mail_daemon::systemd::ready();
    let signal = wait_for_stop(&mut signals, &mut reloader);
    way2mail_daemon::systemd::stopping();
    tracing::info!(signal, "shutting down: no new connections");
    if let Some(admin) = admin {
        admin.stop();
    }
    let _ = stop_tx.send(true);
    stop_scheduler.store(true, std::sync::atomic::Ordering::Release);
    let mut failed = false;
    for core in cores {
        match core.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %format!("{e:#}"), "worker failed");
                failed = true;
            }
            Err(_) => {
                tracing::error!("worker panicked");
                failed = true;
            }
        }
    }
    if let Some(scheduler) = scheduler {
        let _ = scheduler.join();
    }
    if let Some(follower) = follower {
        follower.stop();
    }
    sweep_thread.stop();
    if let Some(handover) = handover {
        handover.stop();
    }
    if let Some((_, worker)) = feedback {
        worker.stop();
    }
    if let Some(webhooks) = webhooks {
        webhooks.stop();
    }
    spool.flush().context("final spool flush")?;
    let stats = spool.stats();
    tracing::info!(
        flushes = stats.flushes,
        commits = stats.commits,
        "way2mail-mta stopped"
    );
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Serves SIGHUP (reload) until SIGTERM or SIGINT, which it returns.
fn wait_for_stop(
    signals: &mut signal_hook::iterator::Signals,
    reloader: &mut Reloader,
) -> Option<i32> {
    loop {
        match signals.forever().next() {
            Some(SIGHUP) => reloader.reload(),
            other => return other,
        }
    }
}

/// Tenants and AUTH, when `[control] socket` is set: the first snapshot is loaded
/// (from control, else from the saved file) before the listeners open.
fn start_tenants(
    settings: &Settings,
    spool: &Spool,
) -> Result<(Option<Arc<Tenants>>, Option<Follower>)> {
    let control = &settings.raw.control;
    if !control.enabled() {
        tracing::info!("control.socket is empty: no tenants, AUTH not offered");
        return Ok((None, None));
    }
    let tenants = Arc::new(
        Tenants::new(&settings.raw.auth)
            .context("starting AUTH")?
            .with_missing_keys(settings.raw.dkim.missing_keys),
    );
    let source = Source {
        socket: control.socket.clone(),
        snapshot_file: control.snapshot_file.clone(),
        poll: control.poll,
        timeout: control.timeout,
        spool: spool.clone(),
    };
    let follower =
        Follower::start(source, Arc::clone(&tenants)).context("starting the control follower")?;
    Ok((Some(tenants), Some(follower)))
}

/// The retention sweeper (shared with the admin socket's `retention.run`) and its
/// thread, which reports to control when there is one.
fn start_retention(
    settings: &Settings,
    spool: &Spool,
    tenants: Option<Arc<Tenants>>,
) -> Result<(Arc<retention::Sweeper>, retention::SweepThread)> {
    let r = &settings.raw.retention;
    let defaults = retention::plan::Periods {
        content_secs: r.content_secs,
        log_secs: r.delivery_log_secs,
    };
    let sweeper = Arc::new(retention::Sweeper::new(spool.clone(), tenants, defaults));
    let control = &settings.raw.control;
    let report_to = control.enabled().then(|| retention::ReportTo {
        socket: control.socket.clone(),
        timeout: control.timeout,
    });
    let thread = retention::SweepThread::start(Arc::clone(&sweeper), r.sweep_interval, report_to)
        .context("starting the retention thread")?;
    Ok((sweeper, thread))
}
