//! The admin socket's listener: bound with control's socket code (the mode set
//! before anyone can connect, a stale file replaced, a live one never), an accept
//! thread admitting peers by their `SO_PEERCRED` uid, a thread per connection, and
//! a shutdown that lets the request in hand finish before the socket file goes.

use std::collections::HashMap;
use std::io::Write;
use std::net::Shutdown;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use way2mail_control::protocol::ErrorCode;
use way2mail_control::server::{peer, socket};
use way2mail_control::service::Caller;

use super::connection::{self, End};
use super::ops::Ops;
use crate::config::admin::AdminSettings;

/// How long connections may take to finish the request in hand at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The running admin socket; [`AdminServer::stop`] ends it and removes the file.
pub struct AdminServer {
    bound: socket::BoundSocket,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

struct Shared {
    ops: Ops,
    settings: AdminSettings,
    stopping: AtomicBool,
    conns: Mutex<Conns>,
    /// Signalled whenever a connection ends.
    drained: Condvar,
}

/// Open connections, each with a handle to shut its read side at shutdown.
#[derive(Default)]
struct Conns {
    next_id: u64,
    open: HashMap<u64, UnixStream>,
}

impl AdminServer {
    pub fn start(settings: AdminSettings, ops: Ops) -> Result<AdminServer> {
        ops.remove_stale_dumps();
        let bound = socket::bind(&settings.socket, settings.socket_mode).context("admin.socket")?;
        let listener = bound
            .listener
            .try_clone()
            .context("cloning the admin socket")?;
        let shared = Arc::new(Shared {
            ops,
            settings,
            stopping: AtomicBool::new(false),
            conns: Mutex::new(Conns::default()),
            drained: Condvar::new(),
        });
        let acceptor = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("admin-accept".into())
                .spawn(move || accept_loop(&shared, &listener))
        };
        let acceptor = match acceptor {
            Ok(t) => t,
            Err(e) => {
                bound.remove_file();
                return Err(e).context("starting the admin accept thread");
            }
        };
        tracing::info!(
            socket = %bound.path().display(),
            mode = format_args!("{:04o}", shared.settings.socket_mode),
            allowed_uids = ?shared.settings.allowed_uids,
            "admin socket listening"
        );
        Ok(AdminServer {
            bound,
            shared,
            acceptor: Some(acceptor),
        })
    }

    /// Stops accepting, lets each connection finish the request it is answering
    /// (up to 10 s), and removes the socket file.
    pub fn stop(mut self) {
        self.shared.stopping.store(true, Ordering::Release);
        // Wakes the blocked accept(): on Linux it fails once the listening socket's
        // receive side is shut.
        let _ = rustix::net::shutdown(&self.bound.listener, rustix::net::Shutdown::Read);
        if let Some(acceptor) = self.acceptor.take() {
            if acceptor.join().is_err() {
                tracing::error!("the admin accept thread panicked");
            }
        }
        let unfinished = self.shared.drain(SHUTDOWN_GRACE);
        self.bound.remove_file();
        if unfinished > 0 {
            tracing::warn!(
                unfinished,
                "admin socket stopped with requests still running"
            );
        }
    }
}

impl Shared {
    fn conns(&self) -> MutexGuard<'_, Conns> {
        // Only a map of handles is behind this lock; a panic cannot leave it half-made.
        self.conns.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn admit(self: &Arc<Self>, stream: UnixStream) {
        let caller = match peer::caller(&stream) {
            Ok(caller) => caller,
            Err(e) => {
                tracing::warn!(error = %e, "admin socket: no peer credentials; closing");
                return;
            }
        };
        let id = {
            let mut conns = self.conns();
            if conns.open.len() >= self.settings.max_connections {
                drop(conns);
                tracing::warn!(
                    uid = caller.uid,
                    max_connections = self.settings.max_connections,
                    "admin socket: connection refused: too many connections"
                );
                refuse(
                    stream,
                    ErrorCode::Busy,
                    format!(
                        "too many connections (the limit is {}); try again later",
                        self.settings.max_connections
                    ),
                );
                return;
            }
            let handle = match stream.try_clone() {
                Ok(handle) => handle,
                Err(e) => {
                    tracing::warn!(error = %e, "admin socket: cannot clone a connection; closing");
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
            .name("admin-conn".into())
            .spawn(move || shared.connection(id, stream, caller));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "admin socket: cannot start a connection thread");
            self.finished(id);
        }
    }

    fn connection(&self, id: u64, stream: UnixStream, caller: Caller) {
        if !self.settings.allowed_uids.contains(&caller.uid) {
            tracing::warn!(
                uid = caller.uid,
                pid = caller.pid,
                "admin socket: connection refused: uid not in admin.allowed_uids"
            );
            connection::forbid(stream, &caller);
            self.finished(id);
            return;
        }
        let started = Instant::now();
        let end = connection::serve(stream, &self.ops, &caller, self.settings.idle_timeout);
        let secs = started.elapsed().as_secs_f64();
        match end {
            End::Closed => tracing::debug!(uid = caller.uid, secs, "admin connection closed"),
            End::IdleTimeout => {
                tracing::info!(
                    uid = caller.uid,
                    secs,
                    "admin connection closed: idle timeout"
                )
            }
            End::TooLarge => tracing::warn!(
                uid = caller.uid,
                secs,
                "admin connection closed: request too large"
            ),
            End::Io(kind) => tracing::info!(
                uid = caller.uid,
                secs,
                error = %kind,
                "admin connection closed: I/O error"
            ),
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

fn accept_loop(shared: &Arc<Shared>, listener: &UnixListener) {
    loop {
        let accepted = listener.accept();
        if shared.stopping.load(Ordering::Acquire) {
            return;
        }
        match accepted {
            Ok((stream, _)) => shared.admit(stream),
            Err(e) => {
                // Out of file descriptors and the like: pause rather than spin.
                tracing::warn!(error = %e, "admin socket: accept failed");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Tells a client over the limit why it is being closed, without waiting on it.
fn refuse(mut stream: UnixStream, code: ErrorCode, message: String) {
    let line = connection::error_line(0, code, message);
    let _ = stream.set_write_timeout(Some(Duration::from_millis(200)));
    let _ = stream.write_all(&line);
}
