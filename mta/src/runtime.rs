//! Thread per core: each worker thread runs its own single-threaded runtime (io_uring
//! or epoll, as [`Backend`] says) with its own `SO_REUSEPORT` socket for every
//! listener, so the kernel spreads connections over the cores and a session never
//! leaves the core that accepted it. Nothing on the data path is shared between
//! cores except the spool (sled, internally concurrent), the group-commit flusher
//! and the connection caps (`limits.rs`).
//!
//! ```text
//!  main thread: config, spool, sockets, signals ──shutdown (watch)──┐
//!  core 0: runtime ─ CoreStart (delivery worker) ─ accept loop per listener
//!          ─ admit (caps, spool health) ─ spawn_local(session) ◄──┤
//!  core 1: runtime ─ ...                                          ◄┘
//! ```
//!
//! What else a core runs beside its listeners is handed in by `main.rs` as a
//! [`CoreStart`], so this file knows sessions but not delivery.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};
use socket2::{Domain, Protocol as SockProtocol, Socket, Type};
use way2mail_smtp::server::{Role, SpoolState};
use way2mail_smtp::Networks;

use crate::config::{Listener, Service};
use crate::io::epoll::EpollStream;
use crate::io::proxied::{self, Proxied};
use crate::io::uring::{self, UringStream};
use crate::io::{Backend, Io};
use crate::limits::{ConnectionLimiter, Displacing, LiveSessions, Refusal};
use crate::session::{self, Shared};

/// Listen backlog: enough for a burst of benchmark or MX connections.
const BACKLOG: i32 = 4096;

/// How long a closing connection gets to write its last reply.
const GOODBYE: Duration = Duration::from_secs(5);

/// Work a core starts on its own runtime before it accepts (its delivery worker):
/// built on the main thread, run on the core, where `spawn_local` is allowed.
pub type CoreStart = Box<dyn FnOnce() + Send>;

/// One listening socket of a core: what it serves, and the load balancers whose
/// connections start with a PROXY protocol header (`proxy_from`).
pub type Bound = (TcpListener, Service, Arc<Networks>);

/// Binds one `SO_REUSEPORT` socket per core for every listener. Port 0 is resolved
/// by the first socket and reused for the others.
pub fn bind_all(listeners: &[Listener], cores: usize) -> Result<Vec<Vec<Bound>>> {
    let mut per_core: Vec<Vec<Bound>> = (0..cores).map(|_| Vec::new()).collect();
    for l in listeners {
        let mut address = l.address;
        if address.port() != 0 {
            not_served_elsewhere(address).with_context(|| {
                format!(
                    "listener {}: the address is already served by another process \
                     (another way2mail-mta, or another MTA); stop it or choose another \
                     address",
                    l.address
                )
            })?;
        }
        for sockets in per_core.iter_mut() {
            let socket = bind_one(address)
                .with_context(|| format!("listener {}: cannot listen", l.address))?;
            address = socket.local_addr().context("local address")?;
            sockets.push((socket, l.service, Arc::clone(&l.proxy_from)));
        }
        tracing::info!(address = %address, role = l.service.as_str(), cores, "listening");
    }
    Ok(per_core)
}

/// `SO_REUSEPORT` lets every process of the same user join a listening group: a
/// second daemon on the same address would silently take half the connections. A
/// plain socket (address reuse only, so that connections in TIME_WAIT do not count)
/// cannot bind where any socket listens, so a successful probe, closed at once,
/// proves the address free. Our own sockets are bound right after; a daemon
/// starting in that instant could still slip in, which a service manager that
/// starts one instance does not do.
fn not_served_elsewhere(address: SocketAddr) -> std::io::Result<()> {
    tcp_socket(address)?.bind(&address.into())
}

fn bind_one(address: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = tcp_socket(address)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&address.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// A TCP socket for `address` with address reuse (connections in TIME_WAIT do not
/// hold the port), IPv6 only for an IPv6 address.
fn tcp_socket(address: SocketAddr) -> std::io::Result<Socket> {
    let socket = Socket::new(
        Domain::for_address(address),
        Type::STREAM,
        Some(SockProtocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    if address.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    Ok(socket)
}

/// Starts one worker thread per core; each returns when shutdown is done. Core `n`
/// runs `starts[n]` first, when there is one.
pub fn start_cores(
    shared: Arc<Shared>,
    limiter: Arc<ConnectionLimiter>,
    backend: Backend,
    sockets: Vec<Vec<Bound>>,
    starts: Vec<CoreStart>,
) -> Result<Vec<JoinHandle<Result<()>>>> {
    let mut handles = Vec::new();
    let mut starts = starts.into_iter();
    for (core, listeners) in sockets.into_iter().enumerate() {
        let start = starts.next();
        let shared = Arc::clone(&shared);
        let limiter = Arc::clone(&limiter);
        let handle = std::thread::Builder::new()
            .name(format!("core-{core}"))
            .spawn(move || {
                pin_to_cpu(core);
                let worker = Worker::new(shared, limiter);
                match backend {
                    Backend::IoUring => run_uring(worker, listeners, start),
                    Backend::Epoll => run_epoll(worker, listeners, start),
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

/// Per-core state: the shared context, the caps, and the core's live sessions,
/// so that shutdown can wait for them.
#[derive(Clone)]
struct Worker {
    shared: Arc<Shared>,
    limiter: Arc<ConnectionLimiter>,
    live: LiveSessions,
}

impl Worker {
    fn new(shared: Arc<Shared>, limiter: Arc<ConnectionLimiter>) -> Worker {
        Worker {
            shared,
            limiter,
            live: LiveSessions::default(),
        }
    }

    /// Admits or refuses an accepted connection, then serves it to its end. At a
    /// cap, admitting may displace the slowest connection (`limits.rs`). The
    /// connection's places (caps, live count) are guards: however the session ends,
    /// even by a panic, they are given back.
    async fn handle<I: Io>(
        self,
        mut io: I,
        peer: SocketAddr,
        role: Role,
        proxy_from: Arc<Networks>,
    ) {
        if !proxy_from.contains(peer.ip()) {
            return self.admit(io, peer, role).await;
        }
        // A load balancer's connection: its PROXY header names the client, whose
        // address then stands for the connection's everywhere (caps, relay rules,
        // lockouts, SPF, `Received:`).
        let read = proxied::header_within(proxied::read_header(&mut io), peer, role.as_str()).await;
        match read {
            Some((client, pending)) => {
                self.admit(Proxied::new(io, pending), client.unwrap_or(peer), role)
                    .await;
            }
            None => io.shutdown().await,
        }
    }

    /// Admits or refuses a connection from `peer` (the client, after any PROXY
    /// header), then serves it to its end.
    async fn admit<I: Io>(self, mut io: I, peer: SocketAddr, role: Role) {
        let live = self.shared.live.get();
        let timeouts = &live.settings.raw.timeouts;
        let displacing = Displacing {
            min_age: timeouts.displace_after,
            below_rate: timeouts.min_data_rate,
        };
        let (reason, result) = match self.limiter.try_acquire(peer.ip(), displacing) {
            Err(Refusal::Total) => ("too many connections", "refused_total_cap"),
            Err(Refusal::PerIp) => ("too many connections from your address", "refused_ip_cap"),
            Ok(_) if self.shared.monitor.state() == SpoolState::Unhealthy => {
                ("spool unavailable", "refused_spool")
            }
            Ok(slot) => {
                crate::metrics::connection(role, "accepted");
                let _live = self.live.enter();
                let activity = slot.activity();
                let shared = Arc::clone(&self.shared);
                session::serve(shared, Arc::clone(&live), io, peer, role, activity).await;
                drop(slot);
                return;
            }
        };
        crate::metrics::connection(role, result);
        tracing::info!(peer = %peer, reason, "connection refused");
        // Implicit TLS clients would not understand a plaintext reply.
        if role != Role::Submissions {
            let host = &live.settings.raw.hostname;
            let line = format!("421 4.3.2 {host} {reason}, try again later\r\n");
            let _ = tokio::time::timeout(GOODBYE, io.write_all(line.into_bytes())).await;
        }
        io.shutdown().await;
    }

    /// The HTTPS API's accept loop. HTTP connections use tokio's sockets on both
    /// backends (tokio-uring runs on a tokio runtime, whose reactor serves them):
    /// hyper reads and writes through tokio's traits, and the API's requests are
    /// few and large next to SMTP's round trips (docs/architecture.md).
    async fn accept_api(self, socket: TcpListener, proxy_from: Arc<Networks>) {
        let listener = match tokio::net::TcpListener::from_std(socket) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "the API listener cannot join the runtime");
                return;
            }
        };
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                () = self.stopped() => break,
                () = self.shared.drain.started() => break,
            };
            match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let proxied = proxy_from.contains(peer.ip());
                    tokio::task::spawn_local(self.clone().handle_api(stream, peer, proxied));
                }
                Err(e) => accept_error(e).await,
            }
        }
    }

    /// Admits an API connection under the same caps as SMTP's, then serves it.
    async fn handle_api(self, mut stream: tokio::net::TcpStream, peer: SocketAddr, proxied: bool) {
        let peer = if proxied {
            let read = proxied::read_header_exact(&mut stream);
            match proxied::header_within(read, peer, "api").await {
                Some(client) => client.unwrap_or(peer),
                None => return,
            }
        } else {
            peer
        };
        let live = self.shared.live.get();
        let timeouts = &live.settings.raw.timeouts;
        let displacing = Displacing {
            min_age: timeouts.displace_after,
            below_rate: timeouts.min_data_rate,
        };
        match self.limiter.try_acquire(peer.ip(), displacing) {
            Ok(slot) => {
                crate::metrics::api_connection("accepted");
                let _live = self.live.enter();
                let shared = Arc::clone(&self.shared);
                crate::api::serve(shared, live, stream, peer, slot.activity()).await;
                drop(slot);
            }
            Err(refusal) => {
                crate::metrics::api_connection(match refusal {
                    Refusal::Total => "refused_total_cap",
                    Refusal::PerIp => "refused_ip_cap",
                });
                tracing::info!(peer = %peer, listener = "api", "connection refused at a connection cap");
                // Closed without a word: a TLS client would not read plaintext.
                drop(stream);
            }
        }
    }

    /// After the accept loops stopped: wait for the sessions, at most the grace
    /// period plus the time a session needs to say goodbye.
    async fn drain(&self) {
        let grace = self.shared.live.get().settings.raw.timeouts.shutdown_grace;
        let limit = grace.saturating_add(GOODBYE);
        if tokio::time::timeout(limit, self.live.idle()).await.is_err() {
            tracing::warn!(
                sessions = self.live.count(),
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

fn run_uring(worker: Worker, listeners: Vec<Bound>, start: Option<CoreStart>) -> Result<()> {
    let rt = uring::runtime().context("starting io_uring")?;
    rt.block_on(async move {
        if let Some(start) = start {
            start();
        }
        for (socket, service, proxy_from) in listeners {
            let role = match service {
                Service::Smtp(role) => role,
                Service::Api => {
                    tokio_uring::spawn(worker.clone().accept_api(socket, proxy_from));
                    continue;
                }
            };
            let listener = tokio_uring::net::TcpListener::from_std(socket);
            let w = worker.clone();
            tokio_uring::spawn(async move {
                loop {
                    let accepted = tokio::select! {
                        a = listener.accept() => a,
                        () = w.stopped() => break,
                        () = w.shared.drain.started() => break,
                    };
                    match accepted {
                        Ok((stream, peer)) => {
                            let _ = stream.set_nodelay(true);
                            tokio_uring::spawn(w.clone().handle(
                                UringStream(stream),
                                peer,
                                role,
                                Arc::clone(&proxy_from),
                            ));
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

fn run_epoll(worker: Worker, listeners: Vec<Bound>, start: Option<CoreStart>) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the epoll runtime")?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        if let Some(start) = start {
            start();
        }
        for (socket, service, proxy_from) in listeners {
            let role = match service {
                Service::Smtp(role) => role,
                Service::Api => {
                    tokio::task::spawn_local(worker.clone().accept_api(socket, proxy_from));
                    continue;
                }
            };
            let listener = tokio::net::TcpListener::from_std(socket)?;
            let w = worker.clone();
            tokio::task::spawn_local(async move {
                loop {
                    let accepted = tokio::select! {
                        a = listener.accept() => a,
                        () = w.stopped() => break,
                        () = w.shared.drain.started() => break,
                    };
                    match accepted {
                        Ok((stream, peer)) => {
                            let _ = stream.set_nodelay(true);
                            tokio::task::spawn_local(w.clone().handle(
                                EpollStream(stream),
                                peer,
                                role,
                                Arc::clone(&proxy_from),
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
