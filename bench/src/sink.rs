//! The SMTP sink: a fast server that accepts mail and counts it; it stores nothing
//! unless asked to write each message to a directory (`--save-dir`).
//!
//! Layout: [`run`] binds the listener and owns the accept loop, the periodic
//! reporter and the shutdown triggers (SIGINT, SIGTERM, `--exit-after-messages`);
//! each accepted socket gets a task running [`session::serve`], which drives the
//! sans-IO [`protocol`] and updates the shared [`SinkCounters`].

mod protocol;
mod session;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::Notify;
use tokio_rustls::TlsAcceptor;

pub use protocol::Rates;

use crate::stats::{SinkCounters, SinkSnapshot};

/// Connections waiting to be accepted: big enough for load generators that open
/// hundreds of connections at once.
const BACKLOG: i32 = 1024;

/// What the sink is asked to do.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    pub listen: SocketAddr,
    pub rates: Rates,
    pub seed: u64,
    pub hostname: String,
    pub report_every: Option<Duration>,
    pub max_connections: Option<u64>,
    pub exit_after_messages: Option<u64>,
    pub delay: Duration,
    pub starttls: bool,
    pub json: bool,
    /// Where accepted messages are written (`--save-dir`); `None`: nowhere.
    pub save_dir: Option<std::path::PathBuf>,
}

/// Shared by all sessions.
pub struct SinkContext {
    cfg: SinkConfig,
    counters: SinkCounters,
    tls: Option<TlsAcceptor>,
    exit: Notify,
}

impl SinkContext {
    /// Called once the `n`th message (from 0) has been answered.
    fn message_completed(&self, n: u64) {
        if self.cfg.exit_after_messages == Some(n + 1) {
            self.exit.notify_one();
        }
    }
}

/// Runs the sink until a signal or the message limit; prints the final report.
pub async fn run(cfg: SinkConfig) -> anyhow::Result<SinkSnapshot> {
    // Installed before the address is announced, so a harness that signals right
    // after reading it still gets the report rather than a killed process.
    let signals = Signals::install()?;
    let listener = bind(cfg.listen)?;
    let local = listener.local_addr().context("listener address")?;
    // Harnesses read this first line to learn the port when listening on port 0.
    println!("listening on {local}");
    let _ = std::io::stdout().flush();

    if let Some(dir) = &cfg.save_dir {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating --save-dir {}", dir.display()))?;
    }
    let tls = if cfg.starttls {
        Some(crate::tls::self_signed_acceptor(&cfg.hostname)?)
    } else {
        None
    };
    let ctx = Arc::new(SinkContext {
        cfg,
        counters: SinkCounters::default(),
        tls,
        exit: Notify::new(),
    });
    let start = Instant::now();
    if let Some(every) = ctx.cfg.report_every {
        tokio::spawn(report_periodically(ctx.clone(), every, start));
    }
    let limit = ctx.cfg.exit_after_messages.is_some();
    tokio::select! {
        () = accept_loop(listener, ctx.clone()) => {}
        () = signals.recv() => {}
        () = ctx.exit.notified(), if limit => {}
    }
    let snapshot = ctx.counters.snapshot();
    let elapsed = start.elapsed();
    if ctx.cfg.json {
        println!("{}", snapshot.to_json(elapsed));
    } else {
        print!("{}", snapshot.to_text(elapsed));
    }
    let _ = std::io::stdout().flush();
    Ok(snapshot)
}

fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).context("socket")?;
    // Lets a harness restart the sink on the same port while old sockets linger.
    socket.set_reuse_address(true).context("SO_REUSEADDR")?;
    socket.set_nonblocking(true).context("non-blocking")?;
    socket
        .bind(&addr.into())
        .with_context(|| format!("binding {addr}"))?;
    socket.listen(BACKLOG).context("listen")?;
    TcpListener::from_std(socket.into()).context("registering listener")
}

async fn accept_loop(listener: TcpListener, ctx: Arc<SinkContext>) {
    loop {
        match listener.accept().await {
            Ok((tcp, _)) => {
                tokio::spawn(session::serve(tcp, ctx.clone()));
            }
            Err(e) => {
                // Usually EMFILE under heavy load: back off instead of spinning.
                eprintln!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// SIGINT and SIGTERM, either of which ends the sink with a report.
struct Signals {
    interrupt: Signal,
    terminate: Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Self> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt()).context("installing SIGINT handler")?,
            terminate: signal(SignalKind::terminate()).context("installing SIGTERM handler")?,
        })
    }

    async fn recv(mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}

async fn report_periodically(ctx: Arc<SinkContext>, every: Duration, start: Instant) {
    let mut ticker = tokio::time::interval(every);
    ticker.tick().await;
    let mut previous = 0;
    loop {
        ticker.tick().await;
        let s = ctx.counters.snapshot();
        let rate = (s.messages - previous) as f64 / every.as_secs_f64();
        previous = s.messages;
        // stderr, so stdout stays machine-readable (address line, final report).
        eprintln!(
            "[sink {:.0}s] messages={} ({rate:.0}/s) recipients={} bytes={} conns={} current={} peak={} \
             tempfails={} permfails={} drops={}",
            start.elapsed().as_secs_f64(),
            s.messages,
            s.recipients,
            s.bytes,
            s.connections,
            s.current_connections,
            s.peak_connections,
            s.tempfails,
            s.permfails,
            s.drops
        );
    }
}
