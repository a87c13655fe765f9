//! Outbound delivery in the daemon: the scheduler thread (`scheduler.rs`) takes due
//! messages from the spool under a lease and hands one job per (message, next-hop
//! domain) to the core that owns that domain (hash), where the core's delivery
//! worker (`worker.rs`) queues it per destination, shapes it (`shaping.rs`) and
//! delivers it over pooled connections (`connection.rs`) driving the sans-IO SMTP
//! client. Results go back to the scheduler, which completes the message in one
//! atomic spool write: recipients' states, the retry (`retry.rs`), a bounce if one is
//! due (`bounce.rs`), and delivery-log records (in the spool; `log.rs` copies them to
//! a file when `[delivery] log_file` is set). Mail of suspended and terminated
//! tenants is held (`hold.rs`).
//!
//! ```text
//!  spool ──take_due──► scheduler ──Job (by domain hash)──► core N worker ─► connection
//!    ▲                    │  ▲                                                 │
//!    └──complete (1 batch)┘  └──────────────── JobResult ◄─────────────────────┘
//! ```

pub mod bounce;
pub mod connection;
pub mod hold;
pub mod log;
pub mod retry;
pub mod scheduler;
pub mod shaping;
pub mod worker;

use std::net::IpAddr;
use std::sync::Arc;

use way2mail_smtp::{Envelope, MessageId};

/// One message's recipients at one next-hop domain, on its way to a core.
#[derive(Debug)]
pub struct Job {
    pub id: MessageId,
    pub envelope: Arc<Envelope>,
    pub body: Arc<Vec<u8>>,
    pub domain: String,
    /// Indices into `envelope.recipients`.
    pub recipients: Vec<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    Temporary,
    Permanent,
}

/// What happened to one recipient in one attempt.
#[derive(Debug, Clone)]
pub struct RecipientOutcome {
    pub index: usize,
    pub verdict: Verdict,
    /// The peer's reply or our own diagnostic, e.g. `550 5.1.1 no such user`.
    pub reply: String,
    /// Enhanced status code for the DSN (`5.1.1`, `4.4.1`, `2.0.0`).
    pub status: String,
    pub next_hop: Option<String>,
    pub ip: Option<IpAddr>,
    pub tls: Option<String>,
    /// Delivered to a peer without DSN support (reported as "relayed").
    pub relayed: bool,
}

/// A job's results, back to the scheduler.
#[derive(Debug)]
pub struct JobResult {
    pub id: MessageId,
    pub outcomes: Vec<RecipientOutcome>,
}

impl Job {
    /// The same verdict for every recipient of the job (DNS failures, dead
    /// destinations, shutdown).
    pub fn all(&self, verdict: Verdict, reply: &str, status: &str) -> JobResult {
        JobResult {
            id: self.id,
            outcomes: self
                .recipients
                .iter()
                .map(|&index| RecipientOutcome {
                    index,
                    verdict,
                    reply: reply.to_string(),
                    status: status.to_string(),
                    next_hop: None,
                    ip: None,
                    tls: None,
                    relayed: false,
                })
                .collect(),
        }
    }
}

/// The next-hop domain of an address: what follows the last `@`, lowercased;
/// `postmaster` without a domain is local and has none.
pub fn domain_of(address: &str) -> Option<String> {
    address
        .rsplit_once('@')
        .map(|(_, d)| d.trim_end_matches('.').to_ascii_lowercase())
        .filter(|d| !d.is_empty())
}

/// Everything a core needs to build its delivery worker; the worker itself (and its
/// DNS resolver) is created on the core, because neither may leave its thread.
pub struct CorePlan {
    pub jobs: tokio::sync::mpsc::UnboundedReceiver<Job>,
    pub backend: crate::runtime::Backend,
    pub settings: Arc<crate::config::Settings>,
    pub tls_opportunistic: Arc<rustls::ClientConfig>,
    pub tls_verified: Arc<rustls::ClientConfig>,
    pub results: crossbeam_channel::Sender<JobResult>,
}

impl CorePlan {
    /// Spawns the worker on the current core's runtime.
    pub fn start(self) {
        let s = &self.settings;
        let d = &s.raw.delivery;
        let resolver = match way2mail_mta::outbound::mx::MxResolver::new(&s.dns) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "cannot start the DNS resolver: no delivery on this core");
                return;
            }
        };
        let secs = std::time::Duration::from_secs;
        let ctx = worker::Context {
            backend: self.backend,
            resolver,
            routes: Arc::clone(&s.routes),
            credentials: Arc::clone(&s.credentials),
            port: d.port,
            source: s.egress.source,
            connect_timeout: secs(d.connect_timeout_secs),
            shaping: s.raw.shaping.clone(),
            connection: connection::Settings {
                ehlo: s.egress.ehlo.clone(),
                command_timeout: secs(d.command_timeout_secs),
                data_timeout: secs(d.data_timeout_secs),
                tls_timeout: secs(s.raw.timeouts.tls_handshake_secs),
                tls_opportunistic: self.tls_opportunistic,
                tls_verified: self.tls_verified,
            },
            results: self.results,
        };
        tokio::task::spawn_local(worker::Worker::new(ctx).run(self.jobs));
    }
}

/// Starts the delivery log writer and the scheduler thread, and returns one plan
/// per core; `None` when delivery is disabled.
pub fn start(
    settings: &Arc<crate::config::Settings>,
    spool: &way2mail_queue::Spool,
    tenants: Option<Arc<crate::tenants::Tenants>>,
    backend: crate::runtime::Backend,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> anyhow::Result<Option<(Vec<CorePlan>, std::thread::JoinHandle<()>)>> {
    use anyhow::Context as _;
    let d = &settings.raw.delivery;
    if !d.enabled {
        tracing::info!("delivery disabled ([delivery] enabled = false): mail stays queued");
        return Ok(None);
    }
    let log = if d.log_file.as_os_str().is_empty() {
        None
    } else {
        tracing::warn!(
            path = %d.log_file.display(),
            "delivery.log_file is set: it holds recipient addresses in plaintext, outside \
             retention and erasure (the sealed delivery log in the spool is the log of record)"
        );
        Some(log::start(&d.log_file)?)
    };
    let (results_tx, results_rx) = crossbeam_channel::unbounded();
    let tls_opportunistic = crate::tls::client::opportunistic();
    let tls_verified = crate::tls::client::verified();
    let mut senders = Vec::new();
    let mut plans = Vec::new();
    for _ in 0..settings.threads {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        senders.push(tx);
        plans.push(CorePlan {
            jobs: rx,
            backend,
            settings: Arc::clone(settings),
            tls_opportunistic: Arc::clone(&tls_opportunistic),
            tls_verified: Arc::clone(&tls_verified),
            results: results_tx.clone(),
        });
    }
    let scheduler = scheduler::Scheduler {
        spool: spool.clone(),
        config: d.clone(),
        hostname: settings.raw.hostname.clone(),
        cores: senders,
        results: results_rx,
        log,
        stop,
        tenants,
    };
    let handle = std::thread::Builder::new()
        .name("scheduler".into())
        .spawn(move || scheduler.run())
        .context("starting the scheduler")?;
    Ok(Some((plans, handle)))
}
