//! The MTA's metrics: their names and help texts, the histogram buckets, the small
//! functions the code records through, the gauges a thread samples, and what
//! `/readyz` checks. The HTTP endpoint itself is `way2mail_daemon::metrics`; the
//! list with labels is docs/monitoring.md.
//!
//! Recording goes through the `metrics` facade: with `[metrics] listen = ""` no
//! recorder is installed and every call below does nothing. Label values are bounded
//! sets (listener roles, reply classes, outcomes, reasons, TLS versions): never an
//! address, a tenant or a message id.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use way2mail_daemon::metrics::Readiness;
use way2mail_mta::verification::Report;
use way2mail_queue::Spool;
use way2mail_smtp::server::{AuthVerdict, Role, SpoolState};

use crate::monitor::SpoolMonitor;
use crate::tenants::Tenants;

/// How often the queue gauges are sampled.
const SAMPLE_EVERY: Duration = Duration::from_secs(5);

const SMTP_CONNECTIONS: &str = "way2mail_smtp_connections_total";
const SMTP_REPLIES: &str = "way2mail_smtp_replies_total";
const MESSAGES_ACCEPTED: &str = "way2mail_messages_accepted_total";
const MESSAGES_REJECTED: &str = "way2mail_messages_rejected_total";
const AUTH_ATTEMPTS: &str = "way2mail_auth_attempts_total";
const DELIVERIES: &str = "way2mail_deliveries_total";
const QUEUE_MESSAGES: &str = "way2mail_queue_messages";
const QUEUE_OLDEST: &str = "way2mail_queue_oldest_seconds";
const ACCEPT_TO_REPLY: &str = "way2mail_accept_to_reply_seconds";
const DELIVERY_SECONDS: &str = "way2mail_delivery_seconds";
const DELAY_NOTICES: &str = "way2mail_delay_notices_total";
const DKIM_SIGNED: &str = "way2mail_dkim_signed_total";
const INBOUND_AUTH: &str = "way2mail_inbound_auth_total";
const TLS_SESSIONS: &str = "way2mail_tls_sessions_total";
const CERT_EXPIRY: &str = "way2mail_tls_certificate_expiry_timestamp_seconds";
const INFLIGHT_BYTES: &str = "way2mail_delivery_inflight_bytes";
const INGEST_RESERVED: &str = "way2mail_ingest_reserved_bytes";
const SPOOL_FREE: &str = "way2mail_spool_free_bytes";
const READY: &str = "way2mail_ready";
const CONFIG_RELOADS: &str = "way2mail_config_reloads_total";
const API_CONNECTIONS: &str = "way2mail_api_connections_total";
const PROXY_HEADERS: &str = "way2mail_proxy_headers_total";
const API_REQUESTS: &str = "way2mail_api_requests_total";

/// Latencies from 100 µs to a minute.
const SECONDS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0,
];
/// From a second to the five days of the default queue lifetime.
const DELIVERY_BUCKETS: &[f64] = &[
    0.1, 1.0, 5.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0, 43200.0, 86400.0, 259200.0, 432000.0,
];
const BATCH: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

/// Installs the recorder and says what every metric means; `None` when `[metrics]
/// listen` is off. Binds the endpoint now, so that a taken address stops the start.
pub fn install(listen: Option<SocketAddr>) -> Result<Option<Endpoint>> {
    let Some(address) = listen else {
        tracing::info!("metrics.listen is empty: no metrics endpoint");
        return Ok(None);
    };
    let listener = way2mail_daemon::metrics::bind(address)?;
    let handle = way2mail_daemon::metrics::install(&[
        (way2mail_queue::metrics::COMMIT_SECONDS, SECONDS),
        (way2mail_queue::metrics::BATCH_SIZE, BATCH),
        (ACCEPT_TO_REPLY, SECONDS),
        (DELIVERY_SECONDS, DELIVERY_BUCKETS),
    ])?;
    describe();
    Ok(Some(Endpoint { listener, handle }))
}

/// The bound endpoint, served once the daemon has what `/readyz` checks.
pub struct Endpoint {
    listener: std::net::TcpListener,
    handle: way2mail_daemon::metrics::PrometheusHandle,
}

impl Endpoint {
    /// Serves `/metrics`, `/healthz` and `/readyz`, and starts sampling the gauges.
    pub fn serve(self, check: ReadyCheck) -> Result<()> {
        let sampled = check.clone();
        std::thread::Builder::new()
            .name("metrics-sampler".into())
            .spawn(move || loop {
                sampled.sample();
                std::thread::sleep(SAMPLE_EVERY);
            })
            .context("starting the metrics sampler")?;
        let ready: Readiness = Arc::new(move || check.ready());
        way2mail_daemon::metrics::serve(self.listener, self.handle, ready)?;
        Ok(())
    }
}

fn describe() {
    describe_counter!(
        SMTP_CONNECTIONS,
        "SMTP connections by listener role and result (accepted, refused_total_cap, refused_ip_cap, refused_spool)"
    );
    describe_counter!(
        SMTP_REPLIES,
        "SMTP replies sent to clients by listener role and class (2xx, 3xx, 4xx, 5xx)"
    );
    describe_counter!(
        MESSAGES_ACCEPTED,
        "messages answered 250 after the spool commit, by listener role"
    );
    describe_counter!(
        MESSAGES_REJECTED,
        "messages refused after their data, by listener role and reason"
    );
    describe_counter!(
        AUTH_ATTEMPTS,
        "SMTP AUTH attempts and API key checks by result"
    );
    describe_counter!(
        PROXY_HEADERS,
        "PROXY protocol headers from load balancers by result (accepted, refused, timeout)"
    );
    describe_counter!(
        API_CONNECTIONS,
        "HTTPS API connections by result (accepted, refused_total_cap, refused_ip_cap, tls_failed)"
    );
    describe_counter!(
        API_REQUESTS,
        "HTTPS API requests by endpoint and status code"
    );
    describe_counter!(
        DELIVERIES,
        "delivery outcomes per recipient (delivered, deferred, bounced, expired), by failure category"
    );
    describe_counter!(
        DELAY_NOTICES,
        "delay notices (RFC 3464 Action: delayed) queued to senders, at most one per message"
    );
    describe_gauge!(
        QUEUE_MESSAGES,
        "messages in the spool: active (being delivered) and waiting"
    );
    describe_gauge!(
        QUEUE_OLDEST,
        "age of the oldest message in the spool (0 when empty)"
    );
    describe_histogram!(
        ACCEPT_TO_REPLY,
        "end of a message's data to its 250 (checks, signing, the spool commit)"
    );
    describe_histogram!(
        DELIVERY_SECONDS,
        "acceptance to a recipient's final outcome (delivered, bounced, expired)"
    );
    describe_counter!(DKIM_SIGNED, "messages DKIM-signed for a tenant domain");
    describe_counter!(
        INBOUND_AUTH,
        "SPF, DKIM, DMARC and ARC results of mail from the internet, by method and result"
    );
    describe_counter!(
        TLS_SESSIONS,
        "TLS sessions by direction (inbound, outbound) and protocol version"
    );
    describe_gauge!(
        CERT_EXPIRY,
        "expiry (Unix time) of the listeners' TLS certificate"
    );
    describe_gauge!(SPOOL_FREE, "bytes free on the spool's filesystem");
    describe_gauge!(
        INFLIGHT_BYTES,
        "body bytes of the messages out for delivery, held in memory (bounded by spool.memory_budget)"
    );
    describe_gauge!(
        INGEST_RESERVED,
        "memory reserved by the end-of-data work on messages larger than spool.message_buffer (bounded by spool.ingest_budget)"
    );
    describe_gauge!(READY, "1 when /readyz answers 200, else 0");
    describe_counter!(
        CONFIG_RELOADS,
        "configuration reloads (SIGHUP) by result: ok, or failed (the running configuration stayed)"
    );
    describe_histogram!(
        way2mail_queue::metrics::COMMIT_SECONDS,
        "one group commit of the spool: the sled batch and its flush"
    );
    describe_histogram!(
        way2mail_queue::metrics::BATCH_SIZE,
        "writes (messages, lease batches, completions) served by one group commit"
    );
}

/// A connection admitted (`accepted`) or refused at the door (`refused_total_cap`,
/// `refused_ip_cap`, `refused_spool`).
pub fn connection(role: Role, result: &'static str) {
    counter!(SMTP_CONNECTIONS, "listener" => role.as_str(), "result" => result).increment(1);
}

/// One PROXY protocol header read from a load balancer (`proxy_from`): `accepted`,
/// `refused` (not a v2 header, or garbled) or `timeout`.
pub fn proxy_header(result: &'static str) {
    counter!(PROXY_HEADERS, "result" => result).increment(1);
}

/// One HTTPS API connection's admission or TLS failure.
pub fn api_connection(result: &'static str) {
    counter!(API_CONNECTIONS, "result" => result).increment(1);
}

/// One answered API request; `endpoint` from a fixed set (the route's pattern).
pub fn api_request(endpoint: &'static str, status: u16) {
    counter!(API_REQUESTS, "endpoint" => endpoint, "status" => status.to_string()).increment(1);
}

/// Counts the replies in a batch of output (each reply's last line).
pub fn replies(role: Role, output: &[u8]) {
    let mut counts = [0u64; 6];
    for line in output.split(|&b| b == b'\n') {
        if let [class @ b'1'..=b'5', b'0'..=b'9', b'0'..=b'9', b' ', ..] = line {
            counts[usize::from(class - b'0')] += 1;
        }
    }
    for (class, name) in [(2, "2xx"), (3, "3xx"), (4, "4xx"), (5, "5xx")] {
        if counts[class] > 0 {
            counter!(SMTP_REPLIES, "listener" => role.as_str(), "class" => name)
                .increment(counts[class]);
        }
    }
}

/// A message got its `250`, `seconds` after the end of its data.
pub fn accepted(listener: &'static str, seconds: f64) {
    counter!(MESSAGES_ACCEPTED, "listener" => listener).increment(1);
    histogram!(ACCEPT_TO_REPLY).record(seconds);
}

/// A message was refused after its data; `reason` from a fixed set.
pub fn rejected(listener: &'static str, reason: &'static str) {
    counter!(MESSAGES_REJECTED, "listener" => listener, "reason" => reason).increment(1);
}

/// One AUTH attempt's result (`accepted`, `rejected`, `locked_out`, ...).
pub fn auth(verdict: &AuthVerdict) {
    let result = match verdict {
        AuthVerdict::Accepted(_) => "accepted",
        AuthVerdict::Rejected => "rejected",
        AuthVerdict::TenantDisabled => "tenant_disabled",
        AuthVerdict::LockedOut => "locked_out",
        AuthVerdict::Unavailable => "unavailable",
    };
    counter!(AUTH_ATTEMPTS, "result" => result).increment(1);
}

/// One recipient's outcome; final ones also record the time since acceptance.
pub fn delivery(outcome: &'static str, category: Option<&str>, final_after_ms: Option<u64>) {
    // A fixed set of names (the bounce categories), never a reply's text.
    let category = category.unwrap_or("none").to_string();
    counter!(DELIVERIES, "outcome" => outcome, "category" => category).increment(1);
    if let Some(ms) = final_after_ms {
        histogram!(DELIVERY_SECONDS).record(ms as f64 / 1000.0);
    }
}

/// Body bytes of the messages out for delivery, set by the scheduler each round.
pub fn delivery_inflight_bytes(bytes: u64) {
    gauge!(INFLIGHT_BYTES).set(bytes as f64);
}

/// Memory the end-of-data work on large messages holds now.
pub fn ingest_reserved_bytes(bytes: u64) {
    gauge!(INGEST_RESERVED).set(bytes as f64);
}

/// A delay notice queued for a message.
pub fn delay_notice() {
    counter!(DELAY_NOTICES).increment(1);
}

/// A message signed for a tenant domain.
pub fn dkim_signed() {
    counter!(DKIM_SIGNED).increment(1);
}

/// The inbound checks of one message: one count per method and its result.
pub fn inbound_auth(report: &Report) {
    for (method, result) in [
        ("spf", report.spf()),
        ("dkim", report.dkim()),
        ("dmarc", report.dmarc.result),
        ("arc", report.arc.result),
    ] {
        counter!(INBOUND_AUTH, "method" => method, "result" => result.as_str()).increment(1);
    }
}

/// A TLS session; `description` as the logs give it (`TLSv1.3 TLS13_AES_256_GCM_SHA384`).
pub fn tls_session(direction: &'static str, description: &str) {
    let version = match description.split_whitespace().next() {
        Some("TLSv1.3") => "TLSv1.3",
        Some("TLSv1.2") => "TLSv1.2",
        _ => "other",
    };
    counter!(TLS_SESSIONS, "direction" => direction, "version" => version).increment(1);
}

/// A configuration reload: `ok` or `failed`.
pub fn config_reload(result: &'static str) {
    counter!(CONFIG_RELOADS, "result" => result).increment(1);
}

/// Publishes the expiry of the certificate in `pem_file` (read again at each reload).
pub fn certificate_expiry(pem_file: &Path) {
    match read_not_after(pem_file) {
        Ok(not_after) => gauge!(CERT_EXPIRY).set(not_after as f64),
        Err(e) => tracing::warn!(
            path = %pem_file.display(),
            error = %e,
            "cannot read the certificate's expiry for way2mail_tls_certificate_expiry_timestamp_seconds"
        ),
    }
}

fn read_not_after(pem_file: &Path) -> Result<i64> {
    let pem = std::fs::read(pem_file).context("reading")?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).map_err(|e| anyhow::anyhow!("{e}"))?;
    let cert = pem.parse_x509().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(cert.validity().not_after.timestamp())
}

/// What `/readyz` checks and the sampler reads.
#[derive(Clone)]
pub struct ReadyCheck {
    pub spool: Spool,
    pub monitor: SpoolMonitor,
    /// With control: its confirmation must be younger than `max_age`.
    pub tenants: Option<(Arc<Tenants>, Duration)>,
    /// Messages out for delivery now (the scheduler's).
    pub active: Arc<std::sync::atomic::AtomicUsize>,
    /// A draining node takes no traffic.
    pub drain: Arc<crate::drain::Drain>,
}

impl ReadyCheck {
    /// `Ok` when the node should get traffic: the spool takes mail (healthy, above
    /// its disk floor) and the tenant snapshot is current.
    pub fn ready(&self) -> Result<(), String> {
        if self.drain.is_draining() {
            return Err(
                "draining (way2mail-mta drain): delivering the queue, taking no mail".into(),
            );
        }
        match self.monitor.state() {
            SpoolState::Ready => {}
            SpoolState::DiskLow => {
                return Err("the spool's filesystem is below spool.min_free_space".into())
            }
            SpoolState::Unhealthy => {
                return Err("the spool cannot commit (see the daemon's log)".into())
            }
        }
        if let Some((tenants, max_age)) = &self.tenants {
            match tenants.unconfirmed_for() {
                None => return Err("control has not answered since the start".into()),
                Some(age) if age > *max_age => {
                    return Err(format!(
                        "control has not confirmed the tenant snapshot for {} s \
                         (control.snapshot_max_age_ms)",
                        age.as_secs()
                    ))
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    fn sample(&self) {
        let total = self.spool.len();
        let active = self
            .active
            .load(std::sync::atomic::Ordering::Relaxed)
            .min(total);
        // Holds are few (an operator's doing): counting them is a short key scan.
        let held = self.spool.held_count().unwrap_or(0).min(total - active);
        gauge!(QUEUE_MESSAGES, "state" => "active").set(active as f64);
        gauge!(QUEUE_MESSAGES, "state" => "held").set(held as f64);
        gauge!(QUEUE_MESSAGES, "state" => "waiting").set((total - active - held) as f64);
        let oldest = match self.spool.oldest() {
            Ok(Some(id)) => {
                way2mail_daemon::time::now_ms().saturating_sub(id.timestamp_ms()) as f64 / 1000.0
            }
            Ok(None) => 0.0,
            Err(e) => {
                tracing::debug!(error = %e, "sampling the oldest message");
                return;
            }
        };
        gauge!(QUEUE_OLDEST).set(oldest);
        if let Ok(free) = self.spool.free_space() {
            gauge!(SPOOL_FREE).set(free as f64);
        }
        gauge!(READY).set(if self.ready().is_ok() { 1.0 } else { 0.0 });
    }
}
