//! The HTTPS API load generator: `POST /v1/messages` over keep-alive TLS
//! connections, HTTP/1.1 or HTTP/2, sharing one message budget.
//!
//! `--connections` is the number of requests in flight, one per worker task. Over
//! HTTP/1.1 each worker has its own TLS connection and sends its requests one after
//! the other on it. Over HTTP/2 (`h2` negotiated by ALPN, refused as `no-h2`
//! otherwise) the workers share `ceil(connections / streams_per_connection)` TLS
//! connections, worker `i` using connection `i % n`, so each connection carries at
//! most `streams_per_connection` concurrent streams. A worker claims message numbers
//! from a shared atomic counter until the budget is spent; a connection that fails
//! is replaced by a new one at the next request.
//!
//! Every claimed message ends as either a latency sample (a `202`, measured from
//! sending the request to the end of the response) or exactly one failure, keyed by
//! the HTTP status (`429`, `503`, ...) or by a condition: `connect`, `tls`, `no-h2`,
//! `timeout`, `disconnect`, `protocol` or `http`. The first answer of each failing
//! status is kept as a sample, for the report to show why.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper::header::{HeaderValue, AUTHORIZATION, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::ServerName;
use serde_json::json;
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::message::JsonRequestTemplate;
use crate::stats::{ClientStats, ClientSummary};

/// The endpoint every request goes to.
const PATH: &str = "/v1/messages";
/// How much of a failing answer's body a sample keeps.
const SAMPLE_LEN: usize = 300;

/// What the API load generator is asked to do.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub server: String,
    pub key: String,
    /// Requests in flight (see the module docs for how they map to connections).
    pub connections: usize,
    pub messages: u64,
    pub size: usize,
    pub from: String,
    pub to: String,
    /// Check the server's certificate against these PEM certificates; `None`
    /// accepts any certificate (benchmarking only).
    pub ca_file: Option<PathBuf>,
    /// The name for SNI and certificate checks; the host of `server` by default.
    pub server_name: Option<String>,
    pub http2: bool,
    pub streams_per_connection: usize,
    pub timeout: Duration,
}

impl ApiConfig {
    /// TLS connections the run keeps open (before any is replaced).
    pub fn tls_connections(&self) -> usize {
        if self.http2 {
            self.connections
                .div_ceil(self.streams_per_connection.max(1))
        } else {
            self.connections
        }
    }
}

/// The result of a run: the same figures as the SMTP load generator's, and how.
#[derive(Debug)]
pub struct ApiSummary {
    pub summary: ClientSummary,
    /// `"1.1"` or `"2"`.
    pub http: &'static str,
    /// Requests in flight.
    pub concurrency: usize,
    /// TLS connections opened, replacements included.
    pub connections_opened: u64,
    /// For each failure key, the first failing answer's body (truncated) or error.
    pub samples: BTreeMap<String, String>,
}

impl ApiSummary {
    pub fn to_json(&self) -> String {
        let mut v = self.summary.to_json_value();
        if let Some(map) = v.as_object_mut() {
            map.insert("http".into(), json!(self.http));
            map.insert("concurrency".into(), json!(self.concurrency));
            map.insert("connections_opened".into(), json!(self.connections_opened));
        }
        v.to_string()
    }

    pub fn to_text(&self) -> String {
        format!(
            "protocol:        HTTP/{}\nin flight:       {}\nconnections:     {} opened\n{}",
            self.http,
            self.concurrency,
            self.connections_opened,
            self.summary.to_text()
        )
    }

    /// One line per failure key: what the server said (or what went wrong) the
    /// first time.
    pub fn samples_text(&self) -> String {
        self.samples
            .iter()
            .map(|(key, sample)| format!("first {key}: {sample}\n"))
            .collect()
    }
}

/// State shared by all workers.
struct Shared {
    cfg: ApiConfig,
    addr: SocketAddr,
    connector: TlsConnector,
    name: ServerName<'static>,
    uri: Uri,
    host: HeaderValue,
    auth: HeaderValue,
    template: JsonRequestTemplate,
    next: AtomicU64,
    opened: AtomicU64,
    /// HTTP/2 only: the shared connections, each replaced when it fails.
    h2: Vec<Mutex<Option<http2::SendRequest<Full<Bytes>>>>>,
}

impl Shared {
    /// Claims the next message number (from 1), or `None` once the budget is spent.
    fn claim(&self) -> Option<u64> {
        let n = self.next.fetch_add(1, Relaxed);
        (n < self.cfg.messages).then_some(n + 1)
    }

    fn request(&self, seq: u64) -> Request<Full<Bytes>> {
        let body = Bytes::from(self.template.body(seq));
        let mut req = Request::new(Full::new(body.clone()));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = self.uri.clone();
        let headers = req.headers_mut();
        if !self.cfg.http2 {
            headers.insert(HOST, self.host.clone());
        }
        headers.insert(AUTHORIZATION, self.auth.clone());
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
        req
    }
}

/// Why one message failed: its key in the error counts, and what to show of it.
#[derive(Debug)]
struct Failure {
    key: String,
    sample: Option<String>,
}

impl Failure {
    fn new(key: &str) -> Self {
        Self {
            key: key.to_string(),
            sample: None,
        }
    }

    fn hyper(e: &hyper::Error) -> Self {
        let key = if e.is_timeout() {
            "timeout"
        } else if e.is_canceled() || e.is_closed() || e.is_incomplete_message() {
            "disconnect"
        } else if e.is_parse() {
            "protocol"
        } else {
            "http"
        };
        Self {
            key: key.to_string(),
            sample: Some(e.to_string()),
        }
    }
}

/// One worker's results: the shared figures and the failure samples.
#[derive(Default)]
struct WorkerStats {
    stats: ClientStats,
    samples: BTreeMap<String, String>,
}

impl WorkerStats {
    fn failed(&mut self, f: Failure) {
        if let Some(sample) = f.sample {
            self.samples.entry(f.key.clone()).or_insert(sample);
        }
        self.stats.failed(f.key);
    }
}

/// Runs the whole benchmark and returns its summary.
pub async fn run(cfg: ApiConfig) -> anyhow::Result<ApiSummary> {
    let addr = tokio::net::lookup_host(&cfg.server)
        .await
        .with_context(|| format!("resolving {}", cfg.server))?
        .next()
        .with_context(|| format!("no address for {}", cfg.server))?;
    let alpn: &[u8] = if cfg.http2 { b"h2" } else { b"http/1.1" };
    let connector = crate::tls::https_connector(cfg.ca_file.as_deref(), &[alpn])?;
    let name = match &cfg.server_name {
        Some(n) => crate::tls::server_name(n)?,
        None => crate::tls::server_name(&cfg.server)?,
    };
    // HTTP/2 carries the authority in the URI (`:authority`); HTTP/1.1 in `Host`.
    let uri: Uri = if cfg.http2 {
        format!("https://{}{PATH}", cfg.server)
            .parse()
            .with_context(|| format!("bad server address {:?}", cfg.server))?
    } else {
        Uri::from_static(PATH)
    };
    let host = HeaderValue::from_str(&cfg.server).context("bad server address")?;
    let mut auth = HeaderValue::from_str(&format!("Bearer {}", cfg.key))
        .context("the API key cannot be sent in a header")?;
    auth.set_sensitive(true);
    let template = JsonRequestTemplate::new(cfg.size, &cfg.from, &cfg.to, cfg.messages);
    let workers = cfg.connections.max(1);
    let h2 = if cfg.http2 {
        (0..cfg.tls_connections())
            .map(|_| Mutex::new(None))
            .collect()
    } else {
        Vec::new()
    };
    let shared = Arc::new(Shared {
        cfg,
        addr,
        connector,
        name,
        uri,
        host,
        auth,
        template,
        next: AtomicU64::new(0),
        opened: AtomicU64::new(0),
        h2,
    });

    let start = Instant::now();
    let handles: Vec<_> = (0..workers)
        .map(|i| {
            let shared = shared.clone();
            if shared.cfg.http2 {
                tokio::spawn(async move { worker_h2(shared, i).await })
            } else {
                tokio::spawn(async move { worker_http1(shared).await })
            }
        })
        .collect();
    let mut total = ClientStats::default();
    let mut samples = BTreeMap::new();
    for handle in handles {
        let w = handle.await.context("worker task")?;
        total.merge(w.stats);
        for (k, v) in w.samples {
            samples.entry(k).or_insert(v);
        }
    }
    let elapsed = start.elapsed();
    Ok(ApiSummary {
        summary: total.summarize(elapsed),
        http: if shared.cfg.http2 { "2" } else { "1.1" },
        concurrency: workers,
        connections_opened: shared.opened.load(Relaxed),
        samples,
    })
}

/// A TCP connection and TLS on it, with the ALPN protocol checked for HTTP/2.
async fn connect(shared: &Shared) -> Result<TlsStream<TcpStream>, Failure> {
    let limit = shared.cfg.timeout;
    let tcp = match tokio::time::timeout(limit, TcpStream::connect(shared.addr)).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(_)) => return Err(Failure::new("connect")),
        Err(_) => return Err(Failure::new("timeout")),
    };
    let _ = tcp.set_nodelay(true);
    shared.opened.fetch_add(1, Relaxed);
    let tls = match tokio::time::timeout(limit, shared.connector.connect(shared.name.clone(), tcp))
        .await
    {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            return Err(Failure {
                key: "tls".to_string(),
                sample: Some(e.to_string()),
            })
        }
        Err(_) => return Err(Failure::new("timeout")),
    };
    if shared.cfg.http2 && tls.get_ref().1.alpn_protocol() != Some(b"h2".as_slice()) {
        return Err(Failure::new("no-h2"));
    }
    Ok(tls)
}

async fn open_http1(shared: &Shared) -> Result<http1::SendRequest<Full<Bytes>>, Failure> {
    let tls = connect(shared).await?;
    let handshake = http1::handshake(TokioIo::new(tls));
    let (sender, conn) = match tokio::time::timeout(shared.cfg.timeout, handshake).await {
        Ok(Ok(pair)) => pair,
        Ok(Err(e)) => return Err(Failure::hyper(&e)),
        Err(_) => return Err(Failure::new("timeout")),
    };
    // Ends when the sender is dropped and the last response is read, or on error.
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

async fn open_h2(shared: &Shared) -> Result<http2::SendRequest<Full<Bytes>>, Failure> {
    let tls = connect(shared).await?;
    let handshake = http2::handshake(TokioExecutor::new(), TokioIo::new(tls));
    let (sender, conn) = match tokio::time::timeout(shared.cfg.timeout, handshake).await {
        Ok(Ok(pair)) => pair,
        Ok(Err(e)) => return Err(Failure::hyper(&e)),
        Err(_) => return Err(Failure::new("timeout")),
    };
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// Sends a request with `send` and reads the whole answer: the latency on a `202`,
/// else the failure; and whether the connection may carry another request.
async fn exchange<F>(shared: &Shared, send: F) -> (Result<Duration, Failure>, bool)
where
    F: std::future::Future<Output = hyper::Result<hyper::Response<hyper::body::Incoming>>>,
{
    let start = Instant::now();
    let answer = async {
        let response = send.await.map_err(|e| Failure::hyper(&e))?;
        let status = response.status();
        let closing = response
            .headers()
            .get(CONNECTION)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| Failure::hyper(&e))?
            .to_bytes();
        Ok::<_, Failure>((status, closing, body))
    };
    let (status, closing, body) = match tokio::time::timeout(shared.cfg.timeout, answer).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(f)) => return (Err(f), false),
        Err(_) => return (Err(Failure::new("timeout")), false),
    };
    if status == StatusCode::ACCEPTED {
        return (Ok(start.elapsed()), !closing);
    }
    let text = String::from_utf8_lossy(&body);
    let failure = Failure {
        key: status.as_u16().to_string(),
        sample: Some(text.chars().take(SAMPLE_LEN).collect()),
    };
    (Err(failure), !closing)
}

/// Sorts an exchange's outcome into `stats`; passes on whether the connection is
/// reusable.
fn record(stats: &mut WorkerStats, (outcome, reusable): (Result<Duration, Failure>, bool)) -> bool {
    match outcome {
        Ok(latency) => stats.stats.ok(latency),
        Err(f) => stats.failed(f),
    }
    reusable
}

async fn worker_http1(shared: Arc<Shared>) -> WorkerStats {
    let mut stats = WorkerStats::default();
    let mut idle: Option<http1::SendRequest<Full<Bytes>>> = None;
    while let Some(seq) = shared.claim() {
        // A kept connection the server has closed meanwhile is replaced silently:
        // only a failure on a new connection counts.
        let kept = match idle.take() {
            Some(mut s) => match tokio::time::timeout(shared.cfg.timeout, s.ready()).await {
                Ok(Ok(())) => Some(s),
                _ => None,
            },
            None => None,
        };
        let mut sender = match kept {
            Some(s) => s,
            None => match open_http1(&shared).await {
                Ok(s) => s,
                Err(f) => {
                    stats.failed(f);
                    continue;
                }
            },
        };
        let send = sender.send_request(shared.request(seq));
        if record(&mut stats, exchange(&shared, send).await) {
            idle = Some(sender);
        }
    }
    stats
}

async fn worker_h2(shared: Arc<Shared>, index: usize) -> WorkerStats {
    let mut stats = WorkerStats::default();
    let slot = &shared.h2[index % shared.h2.len()];
    while let Some(seq) = shared.claim() {
        let mut sender = {
            // One worker per connection opens it; the others wait for it here.
            let mut guard = slot.lock().await;
            match guard.as_ref().filter(|s| !s.is_closed()) {
                Some(s) => s.clone(),
                None => match open_h2(&shared).await {
                    Ok(s) => {
                        *guard = Some(s.clone());
                        s
                    }
                    Err(f) => {
                        *guard = None;
                        stats.failed(f);
                        continue;
                    }
                },
            }
        };
        let ready = tokio::time::timeout(shared.cfg.timeout, sender.ready()).await;
        let outcome = match ready {
            Ok(Ok(())) => exchange(&shared, sender.send_request(shared.request(seq))).await,
            Ok(Err(e)) => (Err(Failure::hyper(&e)), false),
            Err(_) => (Err(Failure::new("timeout")), false),
        };
        if !record(&mut stats, outcome) {
            // Whoever next finds it closed opens a new one; a stream timeout alone
            // does not close a connection the other streams still use.
            let mut guard = slot.lock().await;
            if guard.as_ref().is_some_and(|s| s.is_closed()) {
                *guard = None;
            }
        }
    }
    stats
}
