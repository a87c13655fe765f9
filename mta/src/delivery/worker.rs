//! A core's delivery worker. Every destination (next-hop domain) hashed to this core
//! lives here and nowhere else, so its queue, connection count and shaping state
//! need no locks. Jobs arrive from the scheduler; the worker opens connections up to
//! the destination's limit; each connection pulls jobs until the queue is empty or
//! its message limit is reached.
//!
//! Routes, smart-host credentials and shaping are read from the settings in force
//! ([`Current`]) when a destination is first queued and when a connection attempt
//! starts, so a reload reaches the next attempt; an attempt under way keeps the
//! snapshot it started with, and a busy destination keeps its shaper until its
//! queue drains.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use tokio::sync::mpsc::UnboundedReceiver;
use way2mail_mta::outbound::mx::{MxResolver, NextHop};
use way2mail_smtp::client::Credentials;

use super::attempt::{Attempt, DeliveryError, HostError};
use super::connection::{self, Ended, JobSource, Peer};
use super::shaping::{Change, Shaper};
use super::{Job, JobResult};
use crate::config::delivery::route_key;
use crate::config::Settings;
use crate::current::Current;
use crate::io::epoll::EpollStream;
use crate::io::uring::UringStream;
use crate::io::Backend;

/// Everything a core's worker shares with its connections.
pub struct Context {
    pub backend: Backend,
    pub resolver: MxResolver,
    /// Routes, credentials and shaping in force (see the module comment).
    pub settings: Arc<Current<Settings>>,
    pub port: u16,
    pub source: Option<std::net::IpAddr>,
    pub connect_timeout: Duration,
    pub connection: connection::Settings,
    pub results: Sender<JobResult>,
}

struct Destination {
    queue: VecDeque<Job>,
    shaper: Shaper,
    active: usize,
    wake_pending: bool,
}

#[derive(Clone)]
pub struct Worker {
    ctx: Rc<Context>,
    destinations: Rc<RefCell<HashMap<String, Destination>>>,
}

impl Worker {
    pub fn new(ctx: Context) -> Worker {
        Worker {
            ctx: Rc::new(ctx),
            destinations: Rc::new(RefCell::new(HashMap::new())),
        }
    }

    /// Takes jobs until the scheduler goes away.
    pub async fn run(self, mut jobs: UnboundedReceiver<Job>) {
        while let Some(job) = jobs.recv().await {
            let domain = job.domain.clone();
            {
                let mut dests = self.destinations.borrow_mut();
                dests
                    .entry(domain.clone())
                    .or_insert_with(|| Destination {
                        queue: VecDeque::new(),
                        shaper: Shaper::new(&self.ctx.settings.get().raw.shaping, Instant::now()),
                        active: 0,
                        wake_pending: false,
                    })
                    .queue
                    .push_back(job);
            }
            self.open_connections(&domain);
        }
    }

    /// Starts connections while the destination has work and room.
    fn open_connections(&self, domain: &str) {
        let now = Instant::now();
        let mut dests = self.destinations.borrow_mut();
        let Some(d) = dests.get_mut(domain) else {
            return;
        };
        let wait = d.shaper.connect_wait(now);
        if !wait.is_zero() {
            if !d.wake_pending {
                d.wake_pending = true;
                let w = self.clone();
                let domain = domain.to_string();
                tokio::task::spawn_local(async move {
                    tokio::time::sleep(wait).await;
                    if let Some(d) = w.destinations.borrow_mut().get_mut(&domain) {
                        d.wake_pending = false;
                    }
                    w.open_connections(&domain);
                });
            }
            return;
        }
        while d.active < d.shaper.connection_limit() && d.active < d.queue.len() {
            d.active += 1;
            let w = self.clone();
            let domain = domain.to_string();
            tokio::task::spawn_local(async move { w.connect_and_deliver(domain).await });
        }
    }

    async fn connect_and_deliver(self, domain: String) {
        let ctx = &self.ctx;
        let settings = ctx.settings.get();
        match ctx
            .resolver
            .next_hops(&domain, ctx.port, &settings.routes)
            .await
        {
            Ok(hops) => self.try_hops(&domain, &hops, &settings).await,
            Err(e) => self.fail_queue(&domain, &Attempt::of_dns(e)),
        }
        let reopen = {
            let mut dests = self.destinations.borrow_mut();
            match dests.get_mut(&domain) {
                Some(d) => {
                    d.active -= 1;
                    let more = !d.queue.is_empty();
                    if !more && d.active == 0 && d.shaper.is_idle(Instant::now()) {
                        dests.remove(&domain);
                    }
                    more
                }
                None => false,
            }
        };
        if reopen {
            self.open_connections(&domain);
        }
    }

    /// MX hosts in order, each of their addresses in turn, until one connection is
    /// used; if none is, every queued job of the destination is deferred.
    async fn try_hops(&self, domain: &str, hops: &[NextHop], settings: &Settings) {
        let mut last = HostError::NoHop;
        for hop in hops {
            for &addr in &hop.addrs {
                if self.queue_empty(domain) {
                    return;
                }
                let peer = Peer {
                    host: &hop.host,
                    addr,
                    tls: hop.tls,
                    credentials: credentials_for(settings, domain),
                };
                let source = DestinationJobs {
                    worker: self,
                    domain,
                    sent: Cell::new(0),
                    max_messages: settings.raw.shaping.max_messages_per_connection,
                };
                match self
                    .connect(SocketAddr::new(addr, hop.port), &peer, &source)
                    .await
                {
                    Ok(Ended::Used | Ended::Idle) => return,
                    Ok(Ended::Unusable(reason)) | Err(reason) => {
                        self.note(domain, false);
                        last = reason;
                    }
                }
            }
        }
        let unreachable = DeliveryError::Unreachable(last);
        self.fail_queue(domain, &Attempt::Deferred(unreachable));
    }

    async fn connect(
        &self,
        addr: SocketAddr,
        peer: &Peer<'_>,
        jobs: &DestinationJobs<'_>,
    ) -> Result<Ended, HostError> {
        let ctx = &self.ctx;
        let host = || peer.host.to_string();
        let stream = tokio::time::timeout(ctx.connect_timeout, tcp_connect(addr, ctx.source))
            .await
            .map_err(|_| HostError::ConnectTimeout { host: host(), addr })?
            .map_err(|e| HostError::Connect {
                host: host(),
                addr,
                error: Arc::new(e),
            })?;
        let _ = stream.set_nodelay(true);
        let settings = &ctx.connection;
        Ok(match ctx.backend {
            Backend::Epoll => connection::run(EpollStream(stream), settings, peer, jobs).await,
            Backend::IoUring => {
                let std = stream
                    .into_std()
                    .map_err(|e| HostError::Socket { error: Arc::new(e) })?;
                let uring = tokio_uring::net::TcpStream::from_std(std);
                connection::run(UringStream(uring), settings, peer, jobs).await
            }
        })
    }

    fn queue_empty(&self, domain: &str) -> bool {
        self.destinations
            .borrow()
            .get(domain)
            .is_none_or(|d| d.queue.is_empty())
    }

    /// Reports every queued job of a destination with one attempt.
    fn fail_queue(&self, domain: &str, attempt: &Attempt) {
        let jobs: Vec<Job> = match self.destinations.borrow_mut().get_mut(domain) {
            Some(d) => d.queue.drain(..).collect(),
            None => Vec::new(),
        };
        for job in jobs {
            let _ = self.ctx.results.send(job.all(attempt));
        }
    }

    /// Feeds the shaper and logs its changes of mind.
    fn note(&self, domain: &str, ok: bool) {
        let now = Instant::now();
        let mut dests = self.destinations.borrow_mut();
        let Some(d) = dests.get_mut(domain) else {
            return;
        };
        let change = if ok {
            d.shaper.success(now)
        } else {
            d.shaper.temporary_failure(now)
        };
        match change {
            Change::None => {}
            Change::Throttled { level } => tracing::warn!(
                destination = domain,
                level,
                connections = d.shaper.connection_limit(),
                "destination answers with temporary failures: backing off"
            ),
            Change::Recovered { level } => tracing::info!(
                destination = domain,
                level,
                connections = d.shaper.connection_limit(),
                "destination recovering: raising its rate again"
            ),
        }
    }
}

/// The smart-host credentials of the route that serves `domain`, if any.
fn credentials_for<'a>(settings: &'a Settings, domain: &str) -> Option<&'a Credentials> {
    let route = settings.routes.find(domain)?;
    settings.credentials.get(&route_key(route))
}

/// Connects from the egress source address when one is configured.
async fn tcp_connect(
    addr: SocketAddr,
    source: Option<std::net::IpAddr>,
) -> std::io::Result<tokio::net::TcpStream> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    if let Some(source) = source.filter(|s| s.is_ipv4() == addr.is_ipv4()) {
        socket.bind(SocketAddr::new(source, 0))?;
    }
    socket.connect(addr).await
}

/// A connection's view of its destination's queue, with shaping applied.
struct DestinationJobs<'a> {
    worker: &'a Worker,
    domain: &'a str,
    /// Messages this connection took, against `max_messages`.
    sent: Cell<usize>,
    /// `[shaping] max_messages_per_connection` when the connection started.
    max_messages: usize,
}

impl JobSource for DestinationJobs<'_> {
    async fn next_job(&self) -> Option<Job> {
        if self.sent.get() >= self.max_messages {
            return None;
        }
        loop {
            let wait = {
                let mut dests = self.worker.destinations.borrow_mut();
                let d = dests.get_mut(self.domain)?;
                if d.queue.is_empty() {
                    return None;
                }
                let wait = d.shaper.take_message(Instant::now());
                if wait.is_zero() {
                    self.sent.set(self.sent.get() + 1);
                    return d.queue.pop_front();
                }
                wait
            };
            tokio::time::sleep(wait).await;
        }
    }

    fn report(&self, result: JobResult, peer_ok: bool) {
        self.worker.note(self.domain, peer_ok);
        let _ = self.worker.ctx.results.send(result);
    }
}
