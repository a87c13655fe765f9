//! Thread per core: each worker thread runs its own single-threaded runtime (io_uring
//! or epoll) with its own `SO_REUSEPORT` socket for every listener, so the kernel
//! spreads connections over the cores and a session never leaves the core that
//! accepted it. Nothing on the data path is shared between cores except the spool
//! (sled, internally concurrent) and the group-commit flusher.
//!
//! ```text
//!  main thread: config, spool, sockets, signals ──shutdown (watch)──┐
//!  core 0: runtime ─ accept loop per listener ─ spawn_local(session) ◄┤
//!  core 1: runtime ─ accept loop per listener ─ spawn_local(session) ◄┘
//! ```

use std::cell::Cell;
use std::net::{SocketAddr, TcpListener};
use std::rc::Rc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};
use socket2::{Domain, Protocol as SockProtocol, Socket, Type};
use tokio::sync::Notify;
use way2mail_smtp::server::Role;

use crate::config::{IoChoice, Listener};
use crate::delivery::CorePlan;
use crate::io::epoll::EpollStream;
use crate::io::uring::UringStream;
use crate::io::Io;
use crate::limits::{ConnectionLimiter, Refusal};
use crate::session::{self, Shared};

/// Listen backlog: enough for a burst of benchmark or MX connections.
const BACKLOG: i32 = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    IoUring,
    Epoll,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::IoUring => "io_uring",
            Backend::Epoll => "epoll",
        }
    }

    /// Picks the backend; `auto` falls back to epoll with one line saying why.
    pub fn choose(choice: IoChoice) -> Result<Backend> {
        match choice {
            IoChoice::Epoll => Ok(Backend::Epoll),
            IoChoice::IoUring => probe_io_uring()
                .map(|()| Backend::IoUring)
                .context("runtime.io = \"io_uring\", but the kernel refuses io_uring"),
            IoChoice::Auto => match probe_io_uring() {
                Ok(()) => Ok(Backend::IoUring),
                Err(e) => {
                    tracing::info!(reason = %e, "io_uring unavailable, using epoll");
                    Ok(Backend::Epoll)
                }
            },
        }
    }
}

/// Creates a ring and runs one no-op through it: containers and hardened kernels
/// refuse one or the other (EPERM, ENOSYS, or io_uring_disabled).
fn probe_io_uring() -> std::io::Result<()> {
    let rt = tokio_uring::Runtime::new(&tokio_uring::builder())?;
    rt.block_on(tokio_uring::no_op())
}

/// Binds one `SO_REUSEPORT` socket per core for every listener. Port 0 is resolved
/// by the first socket and reused for the others.
pub fn bind_all(listeners: &[Listener], cores: usize) -> Result<Vec<Vec<(TcpListener, Role)>>> {
    let mut per_core: Vec<Vec<(TcpListener, Role)>> = (0..cores).map(|_| Vec::new()).collect();
    for l in listeners {
        let mut address = l.address;
        for sockets in per_core.iter_mut() {
            let socket = bind_one(address)
                .with_context(|| format!("listener {}: cannot listen", l.address))?;
            address = socket.local_addr().context("local address")?;
            sockets.push((socket, l.role));
        }
        tracing::info!(address = %address, role = l.role.as_str(), cores, "listening");
    }
    Ok(per_core)
}

fn bind_one(address: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = Socket::new(
        Domain::for_address(address),
        Type::STREAM,
        Some(SockProtocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    if address.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&address.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// Starts one worker thread per core; each returns when shutdown is done.
pub fn start_cores(
    shared: Arc<Shared>,
    limiter: Arc<ConnectionLimiter>,
    backend: Backend,
    sockets: Vec<Vec<(TcpListener, Role)>>,
    delivery: Option<Vec<CorePlan>>,
) -> Result<Vec<JoinHandle<Result<()>>>> {
    let mut handles = Vec::new();
    let mut plans = delivery.map(Vec::into_iter);
    for (core, listeners) in sockets.into_iter().enumerate() {
        let plan = plans.as_mut().and_then(Iterator::next);
        let shared = Arc::clone(&shared);
        let limiter = Arc::clone(&limiter);
        let handle = std::thread::Builder::new()
            .name(format!("core-{core}"))
            .spawn(move || {
                pin_to_cpu(core);
                let worker = Worker::new(shared, limiter);
                match backend {
                    Backend::IoUring => run_uring(worker, listeners, plan),
                    Backend::Epoll => run_epoll(worker, listeners, plan),
                }
            })
            .context("spawning a worker thread")?;
        handles.push(handle);
    }
    Ok(handles)
}

fn pin_to_cpu(core: usize) {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut set = rustix::thread::CpuSet::new();
    set.set(core % cpus);
    // Pinning is an optimisation; a restricted cpuset (containers) may refuse it.
    let _ = rustix::thread::sched_setaffinity(None, &set);
}

/// Per-core state: the shared context plus a count of live sessions, so that
/// shutdown can wait for them.
#[derive(Clone)]
struct Worker {
    shared: Arc<Shared>,
    limiter: Arc<ConnectionLimiter>,
    live: Rc<Cell<usize>>,
    idle: Rc<Notify>,
}

impl Worker {
    fn new(shared: Arc<Shared>, limiter: Arc<ConnectionLimiter>) -> Worker {
        Worker {
            shared,
            limiter,
            live: Rc::new(Cell::new(0)),
            idle: Rc::new(Notify::new()),
        }
    }

    /// Admits or refuses an accepted connection, then serves it to its end.
    async fn handle<I: Io>(self, mut io: I, peer: SocketAddr, role: Role) {
        let refusal = match self.limiter.try_acquire(peer.ip()) {
            Ok(slot) => {
                if self.shared.monitor.state() == way2mail_smtp::server::SpoolState::Unhealthy {
                    drop(slot);
                    Some("spool unavailable")
                } else {
                    self.live.set(self.live.get() + 1);
                    session::serve(Arc::clone(&self.shared), io, peer, role, slot).await;
                    self.live.set(self.live.get() - 1);
                    self.idle.notify_waiters();
                    return;
                }
            }
            Err(Refusal::Total) => Some("too many connections"),
            Err(Refusal::PerIp) => Some("too many connections from your address"),
        };
        if let Some(reason) = refusal {
            tracing::info!(peer = %peer, reason, "connection refused");
            // Implicit TLS clients would not understand a plaintext reply.
            if role != Role::Submissions {
                let host = &self.shared.settings.raw.hostname;
                let line = format!("421 4.3.2 {host} {reason}, try again later\r\n");
                let write = io.write_all(line.into_bytes());
                let _ = tokio::time::timeout(Duration::from_secs(5), write).await;
            }
            io.shutdown().await;
        }
    }

    /// After the accept loops stopped: wait for the sessions, at most the grace
    /// period plus the time a session needs to say goodbye.
    async fn drain(&self) {
        let grace = self.shared.settings.raw.timeouts.shutdown_grace_secs;
        let limit = Duration::from_secs(grace + 5);
        let wait = async {
            while self.live.get() > 0 {
                self.idle.notified().await;
            }
        };
        if tokio::time::timeout(limit, wait).await.is_err() {
            tracing::warn!(
                sessions = self.live.get(),
                "sessions still open after the grace period"
            );
        }
    }

    async fn stopped(&self) {
        let mut rx = self.shared.shutdown.clone();
        // An error means the sender is gone: the process is ending anyway.
        let _ = rx.wait_for(|stop| *stop).await;
    }
}

fn run_uring(
    worker: Worker,
    listeners: Vec<(TcpListener, Role)>,
    plan: Option<CorePlan>,
) -> Result<()> {
    let rt = tokio_uring::Runtime::new(&tokio_uring::builder()).context("starting io_uring")?;
    rt.block_on(async move {
        if let Some(plan) = plan {
            plan.start();
        }
        for (socket, role) in listeners {
            let listener = tokio_uring::net::TcpListener::from_std(socket);
            let w = worker.clone();
            tokio_uring::spawn(async move {
                loop {
                    let accepted = tokio::select! {
                        a = listener.accept() => a,
                        () = w.stopped() => break,
                    };
                    match accepted {
                        Ok((stream, peer)) => {
                            let _ = stream.set_nodelay(true);
                            tokio_uring::spawn(w.clone().handle(UringStream(stream), peer, role));
                        }
                        Err(e) => accept_error(e).await,
                    }
                }
            });
        }
        worker.stopped().await;
        worker.drain().await;
    });
    Ok(())
}

fn run_epoll(
    worker: Worker,
    listeners: Vec<(TcpListener, Role)>,
    plan: Option<CorePlan>,
) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the epoll runtime")?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        if let Some(plan) = plan {
            plan.start();
        }
        for (socket, role) in listeners {
            let listener = tokio::net::TcpListener::from_std(socket)?;
            let w = worker.clone();
            tokio::task::spawn_local(async move {
                loop {
                    let accepted = tokio::select! {
                        a = listener.accept() => a,
                        () = w.stopped() => break,
                    };
                    match accepted {
                        Ok((stream, peer)) => {
                            let _ = stream.set_nodelay(true);
                            tokio::task::spawn_local(w.clone().handle(
                                EpollStream(stream),
                                peer,
                                role,
                            ));
                        }
                        Err(e) => accept_error(e).await,
                    }
                }
            });
        }
        worker.stopped().await;
        worker.drain().await;
        Ok::<(), std::io::Error>(())
    })?;
    Ok(())
}

/// Accept fails transiently when file descriptors run out; back off briefly rather
/// than spin.
async fn accept_error(e: std::io::Error) {
    tracing::warn!(error = %e, "accept failed");
    tokio::time::sleep(Duration::from_millis(50)).await;
}
