//! The `way2mail-control` daemon's socket server: it frames JSON lines and
//! identifies peers; every decision is the [`Service`]'s. The socket file and the
//! threads are `way2mail-daemon`'s, shared with the MTA's admin socket.
//!
//! ```text
//!   run ── way2mail_daemon::socket::bind (stale file, mode, parent dir)
//!    ├── [metrics] listen: the recorder installed, the port bound (a taken port
//!    │     stops the start), served at once by way2mail_daemon::metrics on a
//!    │     thread of its own; /readyz follows Readiness (below)
//!    ├── open_store: under a watchdog, checked against its anchor (an accepted
//!    │     rollback is audited before anything is served)
//!    ├── way2mail_daemon::thread_server::ThreadServer: accept thread ── admit (peer
//!    │     uid: max_connections, a share per uid, slots reserved for service_uids)
//!    │     ── connection thread ── Control::serve
//!    │       └── connection::serve ── request::answer ── Service::handle
//!    ├── retention thread: the sweep every [retention] sweep_interval
//!    ├── blocklist thread: the sending addresses looked up in the DNSBLs every
//!    │     [blocklists] check_interval (when enabled and [sending] ips is set)
//!    └── main thread: waits for SIGTERM/SIGINT, then stops accepting, shuts the
//!        read side of every connection (a request being answered still gets its
//!        response), waits for them and the sweep, removes the socket file
//! ```
//!
//! Threads, not async: a control plane sees a handful of operators and one MTA,
//! and `max_connections` bounds the threads.

pub mod config;
pub mod connection;
pub mod protection;
pub mod request;

use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use signal_hook::consts::{SIGINT, SIGTERM};

use crate::audit::AuditLog;
use crate::service::{Caller, Service, ServiceSettings};
use crate::store::{AnchorPolicy, Store, StoreFiles, StoreOptions, WriteHealth};
use way2mail_daemon::time::now_ms;
use way2mail_daemon::watchdog::{self, Progress};
use way2mail_wire::protocol::ErrorCode;

use self::config::Settings;
use way2mail_daemon::thread_server::{Admission, Busy, End, Handler, Sleeper, ThreadServer};

/// How long connections may take to finish the request in hand at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Opening the store is given up after this long without progress (sled's own
/// open, then each record the anchor check and migration read): the store is
/// small, so a healthy one never comes near it.
pub const STORE_OPEN_STALL: Duration = Duration::from_secs(20);
/// What an operator does about a store that cannot be opened.
pub const STORE_DAMAGED_HINT: &str = "Check it with `way2mail-control --verify-store` (with \
    the daemon stopped) and restore it from a backup (`way2mail backup restore`) if it is damaged";

/// Control's side of the thread server: each connection is framed lines answered
/// by the service.
struct Control {
    service: Service,
    settings: Settings,
}

impl Handler for Control {
    fn serve(&self, stream: UnixStream, caller: &Caller) -> End {
        connection::serve(
            stream,
            &self.service,
            caller,
            &self.settings.service_uids,
            self.settings.idle_timeout,
        )
    }

    fn busy_line(&self, why: Busy) -> Vec<u8> {
        let response =
            request::error_envelope(0, ErrorCode::Busy, format!("{why}; try again later"));
        let mut line = serde_json::to_vec(&response).unwrap_or_default();
        line.push(b'\n');
        line
    }
}

/// What `/readyz` answers: ready once the store is open and the socket served,
/// while the store's last write succeeded, until the daemon starts stopping.
#[derive(Default)]
struct Readiness {
    /// Set once the store is open.
    store: OnceLock<WriteHealth>,
    serving: AtomicBool,
    stopping: AtomicBool,
}

impl Readiness {
    fn check(&self) -> Result<(), String> {
        if self.stopping.load(Ordering::Relaxed) {
            return Err("shutting down".into());
        }
        let Some(store) = self.store.get() else {
            return Err("opening the control store".into());
        };
        if !self.serving.load(Ordering::Relaxed) {
            return Err("starting the control socket".into());
        }
        store.check()
    }
}

/// `[metrics] listen`, when on: the recorder, the bound port and its thread. The
/// port is bound here so that a taken one stops the start, naming the key.
fn start_metrics(settings: &Settings, readiness: &Arc<Readiness>) -> Result<()> {
    let Some(address) = settings.metrics else {
        return Ok(());
    };
    let handle = way2mail_daemon::metrics::install(&[])?;
    crate::metrics::describe();
    let listener = way2mail_daemon::metrics::bind(address)?;
    let readiness = Arc::clone(readiness);
    way2mail_daemon::metrics::serve(listener, handle, Arc::new(move || readiness.check()))?;
    Ok(())
}

/// Runs the daemon until SIGTERM or SIGINT. `accept_rollback`: the operator decided
/// to start on a store that diverged from its anchor (audited).
pub fn run(settings: Settings, accept_rollback: bool) -> Result<()> {
    // Registered first so that a signal during start-up is not lost.
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])
        .context("installing signal handlers")?;
    // The socket first: its liveness check is what tells a second daemon that
    // one is already running, more clearly than the store's lock would (or than
    // the metrics port, taken by the first one too).
    let bound = way2mail_daemon::socket::bind(&settings.socket, settings.socket_mode)?;
    // Before the store opens: an accepted rollback's audit entry is counted, and
    // /healthz answers while a large store opens.
    let readiness = Arc::new(Readiness::default());
    let service = match start_metrics(&settings, &readiness)
        .and_then(|()| open_service(&settings, accept_rollback))
    {
        Ok(service) => service,
        Err(e) => {
            bound.remove_file();
            return Err(e);
        }
    };
    let _ = readiness.store.set(service.store().write_health());
    match service.snapshot_version() {
        Ok(version) => crate::metrics::snapshot_version(version),
        Err(e) => tracing::warn!(error = %e, "cannot read the snapshot version for the metrics"),
    }
    let max_connections = settings.max_connections;
    let admission = Admission {
        max_connections,
        max_per_uid: settings.max_connections_per_uid,
        reserved: settings.reserved_connections,
        service_uids: settings.service_uids.clone(),
    };
    let server = ThreadServer::start(
        "control",
        &bound.listener,
        admission,
        Control { service, settings },
    )
    .context("starting the accept thread")?;
    let sweeper = {
        let sleeper = server.sleeper();
        std::thread::Builder::new()
            .name("control-retention".into())
            .spawn(move || sweep_loop(&sleeper))
            .context("starting the retention thread")?
    };
    let blocklists = {
        let sleeper = server.sleeper();
        std::thread::Builder::new()
            .name("control-blocklist".into())
            .spawn(move || blocklist_loop(&sleeper))
            .context("starting the blocklist thread")?
    };
    readiness.serving.store(true, Ordering::Relaxed);
    tracing::info!(
        socket = %bound.path().display(),
        mode = format_args!("{:04o}", server.handler().settings.socket_mode),
        max_connections,
        version = env!("CARGO_PKG_VERSION"),
        "way2mail-control listening"
    );
    way2mail_daemon::systemd::ready();
    let signal = signals.forever().next();
    readiness.stopping.store(true, Ordering::Relaxed);
    way2mail_daemon::systemd::stopping();
    tracing::info!(signal, "shutting down: no new connections");
    let unfinished = server.stop(SHUTDOWN_GRACE);
    if sweeper.join().is_err() {
        tracing::error!("the retention thread panicked");
    }
    if blocklists.join().is_err() {
        tracing::error!("the blocklist thread panicked");
    }
    bound.remove_file();
    if unfinished > 0 {
        tracing::warn!(unfinished, "stopped with connections still busy");
    }
    tracing::info!("way2mail-control stopped");
    Ok(())
}

fn open_service(settings: &Settings, accept_rollback: bool) -> Result<Service> {
    let service_settings = ServiceSettings {
        service_uids: settings.service_uids.clone(),
        session_ttl: settings.session_ttl,
        tenant_defaults: settings.tenant_defaults,
        dns: settings.dns.clone(),
        sending: settings.sending.clone(),
        notify: settings.notify.clone(),
        retention: settings.retention,
        mta: settings.mta.clone(),
        backup_key_file: settings.backup_key_file.clone(),
        blocklists: settings.blocklists.clone(),
    };
    let files = &settings.store;
    let store = open_store(files, accept_rollback).with_context(|| {
        format!(
            "opening the control store {} (key file {}, keyring {})",
            files.dir.display(),
            files.key_file.display(),
            files.keyring_file.display()
        )
    })?;
    let uid = rustix::process::getuid().as_raw();
    let actor = format!("way2mail-control --accept-rollback (uid {uid})");
    if let Some(entry) = AuditLog::note_accepted_rollback(&store, actor, now_ms())
        .context("recording --accept-rollback in the audit log")?
    {
        tracing::warn!(
            seq = entry.seq,
            "--accept-rollback recorded in the audit log"
        );
    }
    let service = Service::with_store(store, service_settings);
    // Only now, with the store's lock held: no other daemon is copying beside it.
    way2mail_daemon::files::Scratch::remove_stale(&files.dir, crate::service::BACKUP_SCRATCH);
    Ok(service)
}

/// Opens the store under a watchdog: sled may spin or panic on damaged files, and
/// a daemon that never starts must say so rather than hang.
fn open_store(files: &StoreFiles, accept_rollback: bool) -> Result<Store> {
    let progress = Progress::new();
    let options = StoreOptions {
        anchor: if accept_rollback {
            AnchorPolicy::AcceptRollback
        } else {
            AnchorPolicy::Refuse
        },
        progress: progress.clone(),
    };
    let files = files.clone();
    let what = format!("opening the control store {}", files.dir.display());
    let store = watchdog::bounded(&what, STORE_OPEN_STALL, &progress, move || {
        Store::open_with(&files, &options)
    })
    .map_err(|stuck| anyhow::anyhow!("{stuck}. {STORE_DAMAGED_HINT}"))??;
    Ok(store)
}

/// Runs the retention sweep every `[retention] sweep_interval` (the first one a
/// minute after start, so that a restart loop does not sweep in a loop), until
/// the daemon stops.
fn sweep_loop(sleeper: &Sleeper<Control>) {
    let control = sleeper.handler();
    let interval = Duration::from_secs(control.settings.retention.sweep_interval_secs);
    let mut next = Instant::now() + interval.min(Duration::from_secs(60));
    loop {
        if sleeper.sleep_until(next) {
            return;
        }
        if Instant::now() < next {
            continue;
        }
        match control.service.sweep_scheduled() {
            Ok(r) => tracing::info!(
                audit_entries_pruned = r.audit_entries_pruned,
                billing_records_deleted = r.billing_records_deleted,
                receipts_deleted = r.receipts_deleted,
                erased = r.erased.len(),
                held = r.held.len(),
                "retention sweep"
            ),
            Err(e) => tracing::error!(error = %e.message, "retention sweep failed"),
        }
        next = Instant::now() + interval;
    }
}

/// Looks the sending addresses up in the blocklists every `[blocklists]
/// check_interval` (the first check a minute after start, or sooner with a shorter
/// interval), until the daemon stops. Does nothing when `[blocklists] enabled` is
/// off or there is nothing to look up.
fn blocklist_loop(sleeper: &Sleeper<Control>) {
    let control = sleeper.handler();
    let service = &control.service;
    service.blocklist_metrics();
    let b = &control.settings.blocklists;
    if !b.enabled || b.zones.is_empty() || control.settings.sending.ips.is_empty() {
        tracing::info!(
            enabled = b.enabled,
            zones = b.zones.len(),
            ips = control.settings.sending.ips.len(),
            "blocklist monitoring off"
        );
        return;
    }
    let interval = b.check_interval;
    let mut next = Instant::now() + interval.min(Duration::from_secs(60));
    loop {
        if sleeper.sleep_until(next) {
            return;
        }
        if Instant::now() < next {
            continue;
        }
        match service.blocklist_scheduled() {
            Ok(r) => tracing::info!(
                listings = r.listings.len(),
                lookup_errors = r.lookup_errors.len(),
                "blocklist check"
            ),
            Err(e) => tracing::error!(error = %e.message, "blocklist check failed"),
        }
        next = Instant::now() + interval;
    }
}
