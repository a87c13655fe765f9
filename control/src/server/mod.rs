//! The `way2mail-control` daemon's socket server: it frames JSON lines and
//! identifies peers; every decision is the [`Service`]'s.
//!
//! ```text
//!   run ── socket::bind (stale file, mode, parent dir)
//!    ├── accept thread ── admit (peer::caller, max_connections)
//!    │                     └── connection thread ── connection::serve
//!    │                           └── request::answer ── Service::handle
//!    └── main thread: waits for SIGTERM/SIGINT, then stops accepting, shuts the
//!        read side of every connection (a request being answered still gets its
//!        response), waits for them, removes the socket file
//! ```
//!
//! Threads, not async: a control plane sees a handful of operators and one MTA,
//! and `max_connections` bounds the threads.

pub mod config;
pub mod connection;
pub mod peer;
pub mod protection;
pub mod request;
pub mod socket;

use std::collections::HashMap;
use std::io::Write;
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use signal_hook::consts::{SIGINT, SIGTERM};

use crate::protocol::ErrorCode;
use crate::service::{Caller, Service, ServiceSettings};

use self::config::Settings;
use self::connection::End;

/// How long connections may take to finish the request in hand at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Runs the daemon until SIGTERM or SIGINT.
pub fn run(settings: Settings) -> Result<()> {
    // Registered first so that a signal during start-up is not lost.
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])
        .context("installing signal handlers")?;
    // The socket first: its liveness check is what tells a second daemon that
    // one is already running, more clearly than the store's lock would.
    let bound = socket::bind(&settings.socket, settings.socket_mode)?;
    let service = match open_service(&settings) {
        Ok(service) => service,
        Err(e) => {
            bound.remove_file();
            return Err(e);
        }
    };
    let listener = bound
        .listener
        .try_clone()
        .context("cloning the listening socket")?;
    let shared = Arc::new(Shared {
        service,
        settings,
        stopping: AtomicBool::new(false),
        conns: Mutex::new(Conns::default()),
        drained: Condvar::new(),
    });
    let acceptor = {
        let shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("control-accept".into())
            .spawn(move || accept_loop(&shared, &listener))
            .context("starting the accept thread")?
    };
    let sweeper = {
        let shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("control-retention".into())
            .spawn(move || sweep_loop(&shared))
            .context("starting the retention thread")?
    };
    tracing::info!(
        socket = %bound.path().display(),
        mode = format_args!("{:04o}", shared.settings.socket_mode),
        max_connections = shared.settings.max_connections,
        version = env!("CARGO_PKG_VERSION"),
        "way2mail-control listening"
    );
    crate::sd_notify::ready();
    let signal = signals.forever().next();
    crate::sd_notify::stopping();
    tracing::info!(signal, "shutting down: no new connections");
    shared.stopping.store(true, Ordering::Release);
    // Wakes the blocked accept(): on Linux it fails with EINVAL once the
    // listening socket's receive side is shut.
    let _ = rustix::net::shutdown(&bound.listener, rustix::net::Shutdown::Read);
    if acceptor.join().is_err() {
        tracing::error!("the accept thread panicked");
    }
    shared.drained.notify_all();
    if sweeper.join().is_err() {
        tracing::error!("the retention thread panicked");
    }
    let unfinished = shared.drain(SHUTDOWN_GRACE);
    bound.remove_file();
    if unfinished > 0 {
        tracing::warn!(unfinished, "stopped with connections still busy");
    }
    tracing::info!("way2mail-control stopped");
    Ok(())
}

fn open_service(settings: &Settings) -> Result<Service> {
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
    };
    let files = &settings.store;
    Service::open(files, service_settings).with_context(|| {
        format!(
            "opening the control store {} (key file {}, keyring {})",
            files.dir.display(),
            files.key_file.display(),
            files.keyring_file.display()
        )
    })
}

/// Runs the retention sweep every `[retention] sweep_interval` (the first one a
/// minute after start, so that a restart loop does not sweep in a loop), until
/// the daemon stops.
fn sweep_loop(shared: &Shared) {
    let interval = Duration::from_secs(shared.settings.retention.sweep_interval_secs);
    let mut next = Instant::now() + interval.min(Duration::from_secs(60));
    loop {
        {
            let conns = shared.conns();
            let wait = next.saturating_duration_since(Instant::now());
            let _ = shared
                .drained
                .wait_timeout_while(conns, wait, |_| {
                    !shared.stopping.load(Ordering::Acquire) && Instant::now() < next
                })
                .unwrap_or_else(|p| p.into_inner());
        }
        if shared.stopping.load(Ordering::Acquire) {
            return;
        }
        if Instant::now() < next {
            continue;
        }
        match shared.service.sweep_scheduled() {
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

struct Shared {
    service: Service,
    settings: Settings,
    stopping: AtomicBool,
    conns: Mutex<Conns>,
    /// Signalled whenever a connection ends.
    drained: Condvar,
}

/// The open connections, each with a handle to shut its read side at shutdown.
#[derive(Default)]
struct Conns {
    next_id: u64,
    open: HashMap<u64, UnixStream>,
}

impl Shared {
    fn conns(&self) -> MutexGuard<'_, Conns> {
        // A panic while holding this lock leaves only a map of handles behind;
        // it stays consistent, so a poisoned lock is used as it is.
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn admit(self: &Arc<Self>, stream: UnixStream) {
        let caller = match peer::caller(&stream) {
            Ok(caller) => caller,
            Err(e) => {
                tracing::warn!(error = %e, "no peer credentials; closing");
                return;
            }
        };
        let id = {
            let mut conns = self.conns();
            if conns.open.len() >= self.settings.max_connections {
                drop(conns);
                tracing::warn!(
                    uid = caller.uid,
                    pid = caller.pid,
                    max_connections = self.settings.max_connections,
                    "connection refused: too many connections"
                );
                refuse_busy(stream, self.settings.max_connections);
                return;
            }
            let handle = match stream.try_clone() {
                Ok(handle) => handle,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot clone a connection; closing");
                    return;
                }
            };
            conns.next_id += 1;
            let id = conns.next_id;
            conns.open.insert(id, handle);
            id
        };
        let shared = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("control-conn".into())
            .spawn(move || shared.connection(id, stream, caller));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start a connection thread");
            self.finished(id);
        }
    }

    fn connection(&self, id: u64, stream: UnixStream, caller: Caller) {
        let started = Instant::now();
        let end = connection::serve(
            stream,
            &self.service,
            &caller,
            &self.settings.service_uids,
            self.settings.idle_timeout,
        );
        let secs = started.elapsed().as_secs_f64();
        match end {
            End::Closed => tracing::debug!(
                uid = caller.uid,
                pid = caller.pid,
                secs,
                "connection closed"
            ),
            End::IdleTimeout => tracing::info!(
                uid = caller.uid,
                pid = caller.pid,
                secs,
                "connection closed: idle timeout"
            ),
            End::TooLarge => tracing::warn!(
                uid = caller.uid,
                pid = caller.pid,
                secs,
                "connection closed: request too large"
            ),
            End::Io(kind) => {
                tracing::info!(uid = caller.uid, pid = caller.pid, secs, error = %kind, "connection closed: I/O error")
            }
        }
        self.finished(id);
    }

    fn finished(&self, id: u64) {
        self.conns().open.remove(&id);
        self.drained.notify_all();
    }

    /// Ends every connection after the request it is answering; returns how many
    /// were still open when `grace` ran out.
    fn drain(&self, grace: Duration) -> usize {
        let deadline = Instant::now() + grace;
        let mut conns = self.conns();
        for stream in conns.open.values() {
            let _ = stream.shutdown(Shutdown::Read);
        }
        while !conns.open.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            conns = self
                .drained
                .wait_timeout(conns, left)
                .map(|(guard, _)| guard)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        conns.open.len()
    }
}

fn accept_loop(shared: &Arc<Shared>, listener: &std::os::unix::net::UnixListener) {
    loop {
        let accepted = listener.accept();
        if shared.stopping.load(Ordering::Acquire) {
            return;
        }
        match accepted {
            Ok((stream, _)) => shared.admit(stream),
            Err(e) => {
                // Out of file descriptors and the like: pause rather than spin.
                tracing::warn!(error = %e, "accept failed");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Tells a client over the limit why it is being closed, without waiting on it.
fn refuse_busy(mut stream: UnixStream, max: usize) {
    let response = request::error_envelope(
        0,
        ErrorCode::Busy,
        format!("too many connections (the limit is {max}); try again later"),
    );
    if let Ok(mut line) = serde_json::to_vec(&response) {
        line.push(b'\n');
        let _ = stream.set_write_timeout(Some(Duration::from_millis(200)));
        let _ = stream.write_all(&line);
    }
}
