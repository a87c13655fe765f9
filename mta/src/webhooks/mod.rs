//! Tenant webhooks: events posted, signed, to the endpoints tenants registered.
//!
//! ```text
//!   spool commit (message accepted, delivery log record, refused recipient)
//!     └─ Router: which endpoints of the tenant take this event ─► outbox entries,
//!        sealed, in the same batch (way2mail-queue's webhook.rs)
//!   dispatcher thread: every second, the entries due ─ grouped per endpoint ─
//!     target.rs (URL, addresses: no private ones unless allowed) ─ post.rs (HTTPS,
//!     signed, batch_size events per post, `parallel` endpoints at once)
//!     ├─ 2xx: entries removed
//!     ├─ else: retried after retry_initial · 2^(attempts-1), at most retry_max
//!     └─ still failing give_up_after after the event: dropped; if the endpoint
//!        took no post since, control is told (`api.webhook_failing`): it disables
//!        the endpoint and emails the tenant's contact
//! ```
//!
//! Events reach an endpoint at least once (a post that timed out after the receiver
//! took it is posted again): receivers deduplicate by each event's `id`. Within one
//! endpoint events are posted in the order they fell due; across retries they may
//! come out of order, so each carries its time.

pub mod post;
pub mod target;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::ClientConfig;
use serde::Serialize;
use way2mail_queue::{DeliveryOutcome, DueEvent, EventRouter, OutboxKey, Spool};
use way2mail_wire::client::{Auth, ControlClient};
use way2mail_wire::protocol::Request;
use way2mail_wire::snapshot::SnapshotWebhook;

use crate::api::read::EventView;
use crate::config::webhooks::WebhooksConfig;
use crate::config::Settings;
use crate::tenants::Tenants;
use target::Target;

/// Entries taken per round.
const ROUND: usize = 1000;
/// How often the outbox is looked at when it had nothing due.
const IDLE: Duration = Duration::from_secs(1);
/// Longest `last_error` kept with an entry.
const MAX_ERROR: usize = 300;

/// The spool's [`EventRouter`]: the endpoints of the snapshot in force.
/// It also hands the reputation guard what it counts (`feedback_loop`).
pub struct Router {
    tenants: Arc<Tenants>,
    feedback: Option<Arc<crate::feedback_loop::FeedbackLoop>>,
}

impl Router {
    pub fn new(
        tenants: Arc<Tenants>,
        feedback: Option<Arc<crate::feedback_loop::FeedbackLoop>>,
    ) -> Router {
        Router { tenants, feedback }
    }
}

impl EventRouter for Router {
    fn endpoints(&self, tenant: &str, outcome: &DeliveryOutcome) -> Vec<String> {
        let Some(directory) = self.tenants.directory() else {
            return Vec::new();
        };
        let Some(t) = directory.tenant(tenant) else {
            return Vec::new();
        };
        let name = outcome.name();
        t.webhooks
            .iter()
            .filter(|w| w.events.iter().any(|e| e == name))
            .map(|w| w.id.clone())
            .collect()
    }

    fn accepted(&self, tenant: &str, recipients: usize) {
        if let Some(f) = &self.feedback {
            f.accepted(tenant, recipients);
        }
    }

    fn recorded(&self, tenant: &str, record: &way2mail_queue::DeliveryRecord) {
        if let Some(f) = &self.feedback {
            f.recorded(tenant, record);
        }
    }
}

/// The client TLS configuration for endpoints: the system's roots, plus those of
/// `[webhooks] ca_file`.
pub fn tls_config(config: &WebhooksConfig) -> Result<Arc<ClientConfig>> {
    let mut extra: Vec<CertificateDer<'static>> = Vec::new();
    if !config.ca_file.as_os_str().is_empty() {
        for cert in CertificateDer::pem_file_iter(&config.ca_file)
            .with_context(|| format!("reading webhooks.ca_file {}", config.ca_file.display()))?
        {
            extra.push(cert.with_context(|| {
                format!(
                    "a certificate in webhooks.ca_file {}",
                    config.ca_file.display()
                )
            })?);
        }
    }
    Ok(crate::tls::client::verified_with(&extra))
}

/// One event as a webhook post carries it.
#[derive(Serialize)]
struct EventPost {
    /// The outbox entry's name: the same event posted again has the same id.
    id: String,
    #[serde(flatten)]
    event: EventView,
}

#[derive(Serialize)]
struct Post<'a> {
    webhook: &'a str,
    events: Vec<EventPost>,
}

/// The body of one post.
fn body(webhook: &str, events: &[DueEvent]) -> Bytes {
    let post = Post {
        webhook,
        events: events
            .iter()
            .map(|d| EventPost {
                id: d.key.name(),
                event: EventView::from(d.entry.event.clone()),
            })
            .collect(),
    };
    // A struct of strings and numbers always serializes.
    Bytes::from(serde_json::to_vec(&post).unwrap_or_default())
}

/// What the dispatcher knows of an endpoint's health in this process.
#[derive(Debug, Default)]
struct Health {
    /// When a post to it last succeeded.
    last_ok_ms: Option<u64>,
    /// Control was told it is failing (and disabled it).
    reported: bool,
}

/// The dispatcher's thread.
pub struct Dispatcher {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

struct Worker {
    spool: Spool,
    tenants: Arc<Tenants>,
    config: WebhooksConfig,
    tls: Arc<ClientConfig>,
    control: Option<(std::path::PathBuf, Duration)>,
    health: HashMap<String, Health>,
}

impl Dispatcher {
    /// Installs the router in the spool and starts posting.
    pub fn start(
        spool: Spool,
        tenants: Arc<Tenants>,
        settings: &Settings,
        feedback: Option<Arc<crate::feedback_loop::FeedbackLoop>>,
    ) -> Result<Dispatcher> {
        let config = settings.raw.webhooks.clone();
        let tls = tls_config(&config)?;
        spool.set_event_router(Arc::new(Router::new(Arc::clone(&tenants), feedback)));
        let control = settings.raw.control.enabled().then(|| {
            (
                settings.raw.control.socket.clone(),
                settings.raw.control.timeout,
            )
        });
        let stop = Arc::new(AtomicBool::new(false));
        let mut worker = Worker {
            spool,
            tenants,
            config,
            tls,
            control,
            health: HashMap::new(),
        };
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("webhooks".into())
            .spawn(move || worker.run(&flag))
            .context("starting the webhook thread")?;
        Ok(Dispatcher {
            stop,
            thread: Some(thread),
        })
    }

    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Entries of one endpoint, due now.
struct Group {
    tenant: String,
    endpoint: Option<SnapshotWebhook>,
    events: Vec<DueEvent>,
}

impl Worker {
    fn run(&mut self, stop: &AtomicBool) {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "webhooks: no runtime; no webhook will be posted");
                return;
            }
        };
        while !stop.load(Ordering::Acquire) {
            let busy = match self.round(&runtime) {
                Ok(n) => n > 0,
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "webhooks: a round failed");
                    false
                }
            };
            if !busy {
                // Sleep in slices so that shutdown is not held up.
                for _ in 0..10 {
                    if stop.load(Ordering::Acquire) {
                        return;
                    }
                    std::thread::sleep(IDLE / 10);
                }
            }
        }
    }

    /// Posts what is due; returns how many entries were handled.
    fn round(&mut self, runtime: &tokio::runtime::Runtime) -> Result<usize> {
        let now = way2mail_daemon::time::now_ms();
        let due = self.spool.webhooks_due(now, ROUND)?;
        if due.is_empty() {
            return Ok(0);
        }
        let n = due.len();
        let groups = self.group(due);
        let config = self.config.clone();
        let tls = Arc::clone(&self.tls);
        let results = runtime.block_on(post_all(groups, config, tls));
        self.settle(results)?;
        Ok(n)
    }

    /// Groups entries per endpoint, in the order they fell due.
    fn group(&self, due: Vec<DueEvent>) -> Vec<Group> {
        let directory = self.tenants.directory();
        let mut order: Vec<(String, String)> = Vec::new();
        let mut groups: HashMap<(String, String), Group> = HashMap::new();
        for d in due {
            let k = (d.tenant.clone(), d.entry.webhook.clone());
            let group = groups.entry(k.clone()).or_insert_with(|| {
                order.push(k.clone());
                let endpoint = directory
                    .as_ref()
                    .and_then(|dir| dir.tenant(&d.tenant))
                    .and_then(|t| t.webhooks.iter().find(|w| w.id == d.entry.webhook))
                    .cloned();
                Group {
                    tenant: d.tenant.clone(),
                    endpoint,
                    events: Vec::new(),
                }
            });
            group.events.push(d);
        }
        order
            .into_iter()
            .filter_map(|k| groups.remove(&k))
            .collect()
    }

    /// Removes what was posted or dropped, reschedules what failed.
    fn settle(&mut self, results: Vec<Outcome>) -> Result<()> {
        let now = way2mail_daemon::time::now_ms();
        let give_up_ms = u64::try_from(self.config.give_up_after.as_millis()).unwrap_or(u64::MAX);
        let mut done: Vec<(OutboxKey, u64)> = Vec::new();
        let mut retry: Vec<DueEvent> = Vec::new();
        for outcome in results {
            match outcome {
                Outcome::Gone { events, .. } => {
                    metrics::counter!("way2mail_webhook_events_total", "outcome" => "dropped")
                        .increment(events.len() as u64);
                    done.extend(events.iter().map(|d| (d.key, d.due_ms)));
                }
                Outcome::Posted { webhook, events } => {
                    metrics::counter!("way2mail_webhook_events_total", "outcome" => "posted")
                        .increment(events.len() as u64);
                    let health = self.health.entry(webhook).or_default();
                    health.last_ok_ms = Some(now);
                    health.reported = false;
                    done.extend(events.iter().map(|d| (d.key, d.due_ms)));
                }
                Outcome::Failed {
                    tenant,
                    webhook,
                    error,
                    events,
                } => {
                    let error: String = error.chars().take(MAX_ERROR).collect();
                    let mut failing_since = None;
                    for mut d in events {
                        let age = now.saturating_sub(d.key.created_ms);
                        if age >= give_up_ms {
                            metrics::counter!("way2mail_webhook_events_total", "outcome" => "expired")
                                .increment(1);
                            let health = self.health.entry(webhook.clone()).or_default();
                            if health.last_ok_ms.is_none_or(|ok| ok < d.key.created_ms) {
                                failing_since =
                                    Some(failing_since.map_or(d.key.created_ms, |s: u64| {
                                        s.min(d.key.created_ms)
                                    }));
                            }
                            done.push((d.key, d.due_ms));
                            continue;
                        }
                        d.entry.attempts = d.entry.attempts.saturating_add(1);
                        let wait = self.config.backoff(d.entry.attempts);
                        d.entry.next_attempt_ms =
                            now.saturating_add(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX));
                        d.entry.last_error = Some(error.clone());
                        retry.push(d);
                    }
                    tracing::warn!(
                        tenant = %tenant,
                        webhook = %webhook,
                        error = %error,
                        "webhook post failed"
                    );
                    if let Some(since) = failing_since {
                        self.report_failing(&tenant, &webhook, since, &error);
                    }
                }
            }
        }
        self.spool.webhooks_done(&done)?;
        self.spool.webhooks_retry(&retry)?;
        Ok(())
    }

    /// Tells control that `webhook` took no post for the whole retry period.
    fn report_failing(&mut self, tenant: &str, webhook: &str, since_ms: u64, error: &str) {
        let health = self.health.entry(webhook.to_string()).or_default();
        if health.reported {
            return;
        }
        tracing::warn!(
            tenant = %tenant,
            webhook = %webhook,
            failing_since_ms = since_ms,
            "webhook endpoint failed for the whole retry period: disabling it"
        );
        let Some((socket, timeout)) = &self.control else {
            return;
        };
        let request = Request::ApiWebhookFailing {
            tenant: tenant.to_string(),
            id: webhook.to_string(),
            failing_since: since_ms / 1000,
            last_error: error.to_string(),
        };
        match ControlClient::connect(socket, *timeout)
            .and_then(|mut c| c.call(request, &Auth::default()))
        {
            Ok(_) => {
                health.reported = true;
                metrics::counter!("way2mail_webhooks_disabled_total").increment(1);
            }
            Err(e) => {
                tracing::warn!(error = %e, webhook = %webhook, "webhooks: control not told (retried)");
            }
        }
    }
}

/// What became of one endpoint's entries in a round.
enum Outcome {
    /// The endpoint no longer exists or is disabled: its events are dropped.
    Gone { events: Vec<DueEvent> },
    Posted {
        webhook: String,
        events: Vec<DueEvent>,
    },
    Failed {
        tenant: String,
        webhook: String,
        error: String,
        events: Vec<DueEvent>,
    },
}

/// Posts every group, `parallel` endpoints at a time.
async fn post_all(
    groups: Vec<Group>,
    config: WebhooksConfig,
    tls: Arc<ClientConfig>,
) -> Vec<Outcome> {
    let config = Arc::new(config);
    let permits = Arc::new(tokio::sync::Semaphore::new(config.parallel));
    let mut tasks = tokio::task::JoinSet::new();
    for group in groups {
        let (config, tls, permits) = (Arc::clone(&config), Arc::clone(&tls), Arc::clone(&permits));
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await;
            post_group(group, &config, &tls).await
        });
    }
    let mut out = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(outcomes) => out.extend(outcomes),
            Err(e) => tracing::error!(error = %e, "webhooks: a post task failed"),
        }
    }
    out
}

/// One endpoint's entries, in posts of `batch_size`, over one connection. After a
/// failed post the rest wait with it.
async fn post_group(
    group: Group,
    config: &WebhooksConfig,
    tls: &Arc<ClientConfig>,
) -> Vec<Outcome> {
    let Group {
        tenant,
        endpoint,
        events,
    } = group;
    let Some(endpoint) = endpoint else {
        return vec![Outcome::Gone { events }];
    };
    let fail = |error: String, events: Vec<DueEvent>| Outcome::Failed {
        tenant: tenant.clone(),
        webhook: endpoint.id.clone(),
        error,
        events,
    };
    let target = match Target::parse(&endpoint.url, config) {
        Ok(t) => t,
        Err(error) => return vec![fail(error, events)],
    };
    let connect = || async {
        let addresses = target.resolve(config).await?;
        post::connect(&target, &addresses, tls, config.timeout).await
    };
    let mut out = Vec::new();
    let mut connection: Option<post::Connection> = None;
    let mut rest = events;
    while !rest.is_empty() {
        // A receiver may close the connection after any answer: open another.
        let open = match connection.take() {
            Some(c) if c.is_open() => Ok(c),
            _ => connect().await,
        };
        let mut c = match open {
            Ok(c) => c,
            Err(error) => {
                metrics::counter!("way2mail_webhook_posts_total", "outcome" => "failed")
                    .increment(1);
                out.push(fail(error, rest));
                return out;
            }
        };
        let take = rest.len().min(config.batch_size);
        let tail = rest.split_off(take);
        let batch = rest;
        rest = tail;
        let body = body(&endpoint.id, &batch);
        match c
            .post(&endpoint.id, &endpoint.secret, body, config.timeout)
            .await
        {
            Ok(()) => {
                metrics::counter!("way2mail_webhook_posts_total", "outcome" => "ok").increment(1);
                out.push(Outcome::Posted {
                    webhook: endpoint.id.clone(),
                    events: batch,
                });
                connection = Some(c);
            }
            Err(error) => {
                metrics::counter!("way2mail_webhook_posts_total", "outcome" => "failed")
                    .increment(1);
                let mut failed = batch;
                failed.append(&mut rest);
                out.push(fail(error, failed));
                return out;
            }
        }
    }
    out
}
