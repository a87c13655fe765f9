//! The HTTPS API for tenants' applications (docs/api.md): TLS 1.2+ with the
//! listeners' certificate and ALPN (`h2`, `http/1.1`), hyper on the core that
//! accepted the connection, API keys from `Authorization: Bearer`, and messages
//! that go through exactly what an authenticated SMTP submission goes through:
//! the tenant's sender domains, budgets, recipient limit and suppression list
//! (`TenantPolicy`), DKIM signing, and the durable spool before the `202`.
//!
//! ```text
//!   mod.rs      connection: TLS, HTTP/1.1 or HTTP/2, shutdown; routing; auth;
//!               the submission shared by both sending endpoints
//!   send.rs     JSON → RFC 5322 (mail-builder); raw messages and their envelope
//!   problem.rs  errors as application/problem+json
//!   openapi.rs  the OpenAPI 3.1 document served at /v1/openapi.json
//! ```

mod account;
mod idempotency;
mod openapi;
mod problem;
pub(crate) mod read;
mod send;

use std::cell::Cell;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use tokio::net::TcpStream;
use tokio::time::Instant;
use way2mail_smtp::reply::{EnhancedCode, Reply};
use way2mail_smtp::server::{AuthVerdict, Grant, SpoolState};
use way2mail_smtp::{BodyType, Envelope, MessageId, Notify, Origin, Recipient};
use way2mail_wire::protocol::{ApiCall, Request as ControlRequest, WEBHOOK_EVENTS};
use zeroize::Zeroizing;

use crate::limits::Activity;
use crate::session::ingest::{IngestBudget, Reservation};
use crate::session::{Live, Shared};
use crate::tenants::directory::{CREDENTIALS_REVOKED, SUSPENDED, TERMINATED};

use self::problem::{FieldError, Problem};

/// A request whose body a handler takes when it reads it; a body left unread (an
/// answer given before it: 401, 415, 404...) is drained after the answer is made,
/// up to [`DRAIN`], so that the client reads the answer rather than a reset (some
/// HTTP/2 clients treat the early end of a stream they are still sending on as an
/// error).
type Req = Request<BodySlot>;

struct BodySlot(std::cell::RefCell<Option<Incoming>>);

impl BodySlot {
    fn take(&self) -> Option<Incoming> {
        self.0.borrow_mut().take()
    }
}

/// How long draining an unread body may take.
const DRAIN_TIME: Duration = Duration::from_secs(2);

/// The one-click unsubscribe links' path (RFC 8058).
const UNSUBSCRIBE: &str = "/v1/unsubscribe/";

/// Streams one HTTP/2 connection may run at once.
const MAX_STREAMS: u32 = 64;

/// What a JSON request may add to the message it describes: base64 attachments
/// grow by a third, and the JSON around them is small.
fn json_limit(max_message_size: u64) -> u64 {
    max_message_size.saturating_mul(4) / 3 + 64 * 1024
}

/// Runs hyper's futures (HTTP/2 streams) on the core that accepted the connection.
#[derive(Clone, Copy)]
struct LocalExec;

impl<F> hyper::rt::Executor<F> for LocalExec
where
    F: Future + 'static,
{
    fn execute(&self, fut: F) {
        tokio::task::spawn_local(fut);
    }
}

/// One API connection's context, shared by its requests (on this core only).
struct Conn {
    shared: Arc<Shared>,
    live: Arc<Live>,
    peer: SocketAddr,
    tls: String,
    requests: Cell<u32>,
}

/// Serves one accepted API connection to its end and logs one line about it.
pub async fn serve(
    shared: Arc<Shared>,
    live: Arc<Live>,
    stream: TcpStream,
    peer: SocketAddr,
    activity: Arc<Activity>,
) {
    let started = Instant::now();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::clone(&live.api_tls));
    let handshake = live.settings.raw.timeouts.tls_handshake;
    let stream = match tokio::time::timeout(handshake, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            crate::metrics::api_connection("tls_failed");
            tracing::debug!(peer = %peer, error = %e, "API TLS handshake failed");
            return;
        }
        Err(_) => {
            crate::metrics::api_connection("tls_failed");
            return;
        }
    };
    let (_, tls) = stream.get_ref();
    let h2 = tls.alpn_protocol() == Some(b"h2".as_slice());
    let version = match tls.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
        _ => "TLS",
    };
    let description = match tls.negotiated_cipher_suite() {
        Some(suite) => format!("{version} {:?}", suite.suite()),
        None => version.to_string(),
    };
    crate::metrics::tls_session("inbound", &description);
    let timeouts = &live.settings.raw.timeouts;
    let (idle, data) = (timeouts.command, timeouts.data);
    let conn = Rc::new(Conn {
        shared: Arc::clone(&shared),
        live: Arc::clone(&live),
        peer,
        tls: description.clone(),
        requests: Cell::new(0),
    });
    let service = {
        let conn = Rc::clone(&conn);
        service_fn(move |req| {
            let conn = Rc::clone(&conn);
            async move { Ok::<_, Infallible>(conn.handle(req, data).await) }
        })
    };
    let io = TokioIo::new(stream);
    let mut stop = shared.shutdown.clone();
    let stopping = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    let displaced = activity.displaced();
    let outcome = if h2 {
        let c = http2::Builder::new(LocalExec)
            .timer(TokioTimer::new())
            .max_concurrent_streams(MAX_STREAMS)
            .keep_alive_interval(Some(idle))
            .keep_alive_timeout(Duration::from_secs(20))
            .serve_connection(io, service);
        let mut c = std::pin::pin!(c);
        tokio::select! {
            r = c.as_mut() => r.err(),
            () = stopping => { c.as_mut().graceful_shutdown(); c.await.err() }
            () = displaced => { c.as_mut().graceful_shutdown(); c.await.err() }
        }
    } else {
        let c = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(idle)
            .max_buf_size(64 * 1024)
            .serve_connection(io, service);
        let mut c = std::pin::pin!(c);
        tokio::select! {
            r = c.as_mut() => r.err(),
            () = stopping => { c.as_mut().graceful_shutdown(); c.await.err() }
            () = displaced => { c.as_mut().graceful_shutdown(); c.await.err() }
        }
    };
    tracing::info!(
        target: "way2mail::connection",
        peer = %peer,
        listener = "api",
        tls = %description,
        http = if h2 { "2" } else { "1.1" },
        requests = conn.requests.get(),
        duration_ms = started.elapsed().as_millis() as u64,
        outcome = if outcome.is_some() { "connection error" } else { "closed" },
        "connection closed"
    );
}

/// The answer to one request, with what its log line says.
struct Answer {
    endpoint: &'static str,
    tenant: Option<String>,
    result: Result<Response<Full<Bytes>>, Problem>,
}

impl Answer {
    fn of(endpoint: &'static str, result: Result<Response<Full<Bytes>>, Problem>) -> Answer {
        Answer {
            endpoint,
            tenant: None,
            result,
        }
    }
}

impl Conn {
    async fn handle(&self, req: Request<Incoming>, data: Duration) -> Response<Full<Bytes>> {
        let started = Instant::now();
        self.requests.set(self.requests.get() + 1);
        let method = req.method().clone();
        // A client waiting for `100 Continue` sends nothing unless asked: no drain.
        let expects_continue = req
            .headers()
            .get(hyper::header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        let (parts, body) = req.into_parts();
        let req = Request::from_parts(parts, BodySlot(std::cell::RefCell::new(Some(body))));
        let answer = self.route(&req, data).await;
        if let Some(body) = req.body().take().filter(|_| !expects_continue) {
            drain(body).await;
        }
        let mut response = match answer.result {
            Ok(r) => r,
            Err(p) => p.response(),
        };
        // HTTP/1 leaves out the body of an answer to HEAD by itself; HTTP/2 does not.
        if method == Method::HEAD {
            *response.body_mut() = Full::new(Bytes::new());
        }
        let status = response.status().as_u16();
        crate::metrics::api_request(answer.endpoint, status);
        tracing::info!(
            target: "way2mail::api",
            peer = %self.peer,
            method = %method,
            endpoint = answer.endpoint,
            status,
            tenant = answer.tenant.as_deref().unwrap_or(""),
            duration_ms = started.elapsed().as_millis() as u64,
            "api request"
        );
        response
    }

    async fn route(&self, req: &Req, data: Duration) -> Answer {
        let path = req.uri().path();
        match (req.method(), path) {
            (&Method::GET, "/v1/openapi.json") => {
                let mut r =
                    Response::new(Full::new(Bytes::from_static(openapi::DOCUMENT.as_bytes())));
                r.headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                Answer::of("openapi", Ok(r))
            }
            (&Method::POST, "/v1/messages") => self.send(req, data, false).await,
            (&Method::POST, "/v1/messages/raw") => self.send(req, data, true).await,
            (_, "/v1/messages" | "/v1/messages/raw") => {
                Answer::of("other", Err(not_allowed("POST")))
            }
            (&Method::GET, "/v1/events") => self.events(req).await,
            (&Method::GET, "/v1/suppressions") => {
                self.account(req, "suppressions", Account::SuppressionList)
                    .await
            }
            (&Method::POST, "/v1/suppressions") => self.add_suppression(req, data).await,
            (&Method::DELETE, p) if p.starts_with("/v1/suppressions/") => {
                let address = send::percent_decode(&p["/v1/suppressions/".len()..]);
                self.account(req, "suppression", Account::SuppressionRemove(address))
                    .await
            }
            (&Method::GET, "/v1/webhooks") => {
                self.account(req, "webhooks", Account::WebhookList).await
            }
            (&Method::POST, "/v1/webhooks") => self.add_webhook(req, data).await,
            (&Method::POST, p) if p.starts_with("/v1/webhooks/") && p.ends_with("/enable") => {
                let id = p["/v1/webhooks/".len()..p.len() - "/enable".len()].to_string();
                self.account(req, "webhook", Account::WebhookEnable(id))
                    .await
            }
            (&Method::DELETE, p) if p.starts_with("/v1/webhooks/") => {
                let id = send::percent_decode(&p["/v1/webhooks/".len()..]);
                self.account(req, "webhook", Account::WebhookRemove(id))
                    .await
            }
            (_, "/v1/webhooks") => Answer::of("other", Err(not_allowed("GET, POST"))),
            (&Method::GET, "/v1/domains") => {
                self.account(req, "domains", Account::DomainList).await
            }
            (&Method::GET, p) if p.starts_with("/v1/domains/") && p.ends_with("/dmarc") => {
                let domain =
                    send::percent_decode(&p["/v1/domains/".len()..p.len() - "/dmarc".len()]);
                self.dmarc(req, &domain).await
            }
            (&Method::GET, p) if p.starts_with("/v1/domains/") && p.ends_with("/dns") => {
                let domain = p["/v1/domains/".len()..p.len() - "/dns".len()].to_string();
                self.account(req, "domain_dns", Account::DomainDns(domain))
                    .await
            }
            (_, "/v1/suppressions") => Answer::of("other", Err(not_allowed("GET, POST"))),
            (_, "/v1/domains") => Answer::of("other", Err(not_allowed("GET"))),
            (_, "/v1/events") => Answer::of("other", Err(not_allowed("GET"))),
            (&Method::POST, p) if p.starts_with(UNSUBSCRIBE) => {
                self.unsubscribe(&p[UNSUBSCRIBE.len()..]).await
            }
            (&Method::GET, p) if p.starts_with(UNSUBSCRIBE) => {
                self.unsubscribe_page(&p[UNSUBSCRIBE.len()..])
            }
            (_, p) if p.starts_with(UNSUBSCRIBE) => {
                Answer::of("unsubscribe", Err(not_allowed("GET, POST")))
            }
            (method, p) if p.starts_with("/v1/messages/") => {
                if method != Method::GET {
                    return Answer::of("other", Err(not_allowed("GET")));
                }
                let id = p["/v1/messages/".len()..].to_string();
                self.message(req, &id).await
            }
            (_, "/v1/openapi.json") => Answer::of("other", Err(not_allowed("GET"))),
            _ => Answer::of("other", Err(Problem::not_found())),
        }
    }

    /// The tenant the request's API key stands for.
    async fn authenticate(&self, req: &Req) -> Result<Grant, Problem> {
        let Some(tenants) = &self.shared.tenants else {
            return Err(Problem::unavailable(
                "this node has no account data (control.socket is not set)",
            ));
        };
        let bearer = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, token) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .filter(|t| !t.is_empty());
        let Some(key) = bearer else {
            return Err(Problem::unauthorized(
                "send the API key as Authorization: Bearer <key>",
            ));
        };
        let verdict = tenants
            .authenticate_api_key(self.peer.ip(), Zeroizing::new(key.to_string()))
            .await;
        crate::metrics::auth(&verdict);
        match verdict {
            AuthVerdict::Accepted(grant) => Ok(grant),
            AuthVerdict::Rejected => Err(Problem::unauthorized("the API key is wrong or revoked")),
            AuthVerdict::TenantDisabled => {
                Err(account_disabled("the account is suspended or terminated"))
            }
            AuthVerdict::LockedOut => {
                let lockout = self.live.settings.raw.auth.lockout;
                Err(Problem::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "locked-out",
                    "Too many failed authentications",
                    "this address or key is locked out after repeated failures",
                )
                .retry_after(lockout))
            }
            AuthVerdict::Unavailable => Err(Problem::unavailable(
                "credentials cannot be checked right now",
            )),
        }
    }

    /// `POST /v1/messages` (JSON) and `POST /v1/messages/raw`: the key, then the
    /// message.
    async fn send(&self, req: &Req, data: Duration, raw: bool) -> Answer {
        let endpoint = if raw { "messages_raw" } else { "messages" };
        self.keyed(req, endpoint, async |grant| {
            let key = idempotency::key_of(req)?;
            if raw {
                self.send_raw(req, data, grant, key).await
            } else {
                self.send_json(req, data, grant, key).await
            }
        })
        .await
    }

    /// An endpoint that needs an API key: the key, then `handle` with the tenant
    /// it stands for; the answer names the tenant for its log line.
    async fn keyed(
        &self,
        req: &Req,
        endpoint: &'static str,
        handle: impl AsyncFnOnce(&Grant) -> Result<Response<Full<Bytes>>, Problem>,
    ) -> Answer {
        match self.authenticate(req).await {
            Ok(grant) => Answer {
                endpoint,
                result: handle(&grant).await,
                tenant: Some(grant.tenant),
            },
            Err(p) => Answer::of(endpoint, Err(p)),
        }
    }

    async fn send_json(
        &self,
        req: &Req,
        data: Duration,
        grant: &Grant,
        key: Option<String>,
    ) -> Result<Response<Full<Bytes>>, Problem> {
        media_type(req, "application/json")?;
        let max = self.live.settings.limits.max_message_size;
        let described = idempotency::describe(req);
        let (body, _reserved) =
            read_body(req, json_limit(max), data, &self.shared.ingest, JSON_COPIES).await?;
        let claim = match key {
            Some(key) => match self.claim(grant, key, &described, &body)? {
                Claimed::Replay(answer) => return Ok(answer),
                Claimed::Fresh(claim) => Some(claim),
            },
            None => None,
        };
        let request = send::parse(&body)?;
        drop(body);
        let id = MessageId::generate();
        let built = send::build(&request, &id, &self.live.settings.raw.hostname, now_ms())?;
        drop(request);
        let (sender, recipients) = (built.sender, built.recipients);
        let message = Submission {
            sender,
            recipients,
            content: built.content,
            labels: built.labels,
        };
        self.submit(grant, id, message, claim.as_ref()).await
    }

    async fn send_raw(
        &self,
        req: &Req,
        data: Duration,
        grant: &Grant,
        key: Option<String>,
    ) -> Result<Response<Full<Bytes>>, Problem> {
        media_type(req, "message/rfc822")?;
        let described = idempotency::describe(req);
        let headers = req.headers();
        let from = headers.get("way2mail-from").and_then(|v| v.to_str().ok());
        let to: Vec<&str> = headers
            .get_all("way2mail-to")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        let (sender, recipients) = send::raw_envelope(req.uri().query(), from, &to)?;
        let max = self.live.settings.limits.max_message_size;
        let (body, _reserved) = read_body(req, max, data, &self.shared.ingest, RAW_COPIES).await?;
        let claim = match key {
            Some(key) => match self.claim(grant, key, &described, &body)? {
                Claimed::Replay(answer) => return Ok(answer),
                Claimed::Fresh(claim) => Some(claim),
            },
            None => None,
        };
        let content = send::check_raw(&body)?;
        drop(body);
        let id = MessageId::generate();
        let message = Submission {
            sender,
            recipients,
            content,
            labels: send::Labels::default(),
        };
        self.submit(grant, id, message, claim.as_ref()).await
    }

    /// An `Idempotency-Key` request: the answer kept for it, or the right to send
    /// (held until the message is spooled, so that a concurrent retry waits).
    fn claim(
        &self,
        grant: &Grant,
        key: String,
        described: &str,
        body: &[u8],
    ) -> Result<Claimed, Problem> {
        let claim = idempotency::Claim::take(&grant.tenant, key, described, body)?;
        match claim.kept(&self.shared.spool, now_ms())? {
            Some(answer) => Ok(Claimed::Replay(answer)),
            None => Ok(Claimed::Fresh(claim)),
        }
    }

    /// The endpoints control answers: the key, then one `api.call`.
    async fn account(&self, req: &Req, endpoint: &'static str, what: Account) -> Answer {
        self.keyed(req, endpoint, async |grant| {
            let settings = &self.live.settings;
            let id = &grant.credential_id;
            match what {
                Account::SuppressionList => account::ask(settings, id, ApiCall::SuppressionList)
                    .await
                    .and_then(account::suppressions)
                    .map(|s| json(StatusCode::OK, &account::Suppressions { suppressions: s })),
                Account::SuppressionRemove(address) => {
                    account::ask(settings, id, ApiCall::SuppressionRemove { address })
                        .await
                        .map(|_| empty(StatusCode::NO_CONTENT))
                }
                Account::WebhookList => account::ask(settings, id, ApiCall::WebhookList)
                    .await
                    .and_then(account::webhooks)
                    .map(|w| json(StatusCode::OK, &account::Webhooks { webhooks: w })),
                Account::WebhookEnable(webhook) => {
                    account::ask(settings, id, ApiCall::WebhookEnable { id: webhook })
                        .await
                        .and_then(account::webhooks)
                        .and_then(|mut w| {
                            w.pop().ok_or_else(|| {
                                Problem::unavailable("account data answered unexpectedly")
                            })
                        })
                        .map(|w| json(StatusCode::OK, &w))
                }
                Account::WebhookRemove(webhook) => {
                    account::ask(settings, id, ApiCall::WebhookRemove { id: webhook })
                        .await
                        .map(|_| empty(StatusCode::NO_CONTENT))
                }
                Account::DomainList => account::ask(settings, id, ApiCall::DomainList)
                    .await
                    .and_then(account::domains)
                    .map(|d| json(StatusCode::OK, &d)),
                Account::DomainDns(domain) => {
                    account::ask(settings, id, ApiCall::DomainDns { domain })
                        .await
                        .and_then(account::records)
                        .map(|r| json(StatusCode::OK, &r))
                }
            }
        })
        .await
    }

    /// `POST /v1/suppressions {address, note?}`.
    async fn add_suppression(&self, req: &Req, data: Duration) -> Answer {
        self.keyed(req, "suppressions", async |grant| {
            media_type(req, "application/json")?;
            let (body, _) =
                read_body(req, 16 * 1024, data, &self.shared.ingest, PLAIN_COPIES).await?;
            let request: account::SuppressionRequest = send::parse_json(&body)?;
            let call = ApiCall::SuppressionAdd {
                address: request.address,
                note: request.note,
            };
            let added = account::ask(&self.live.settings, &grant.credential_id, call).await?;
            let mut entries = account::suppressions(added)?;
            let entry = entries
                .pop()
                .ok_or_else(|| Problem::unavailable("account data answered unexpectedly"))?;
            Ok(json(StatusCode::CREATED, &entry))
        })
        .await
    }

    /// `POST /v1/webhooks {url, events}`: the URL is checked here against
    /// `[webhooks]` (scheme, and addresses that are not public), then control makes
    /// the endpoint and its secret, which this answer carries once.
    async fn add_webhook(&self, req: &Req, data: Duration) -> Answer {
        self.keyed(req, "webhooks", async |grant| {
            media_type(req, "application/json")?;
            let (body, _) =
                read_body(req, 16 * 1024, data, &self.shared.ingest, PLAIN_COPIES).await?;
            let request: account::WebhookRequest = send::parse_json(&body)?;
            if request.events.is_empty() {
                return Err(Problem::invalid("events", "name at least one event"));
            }
            for (i, event) in request.events.iter().enumerate() {
                if !WEBHOOK_EVENTS.contains(&event.as_str()) {
                    return Err(Problem::invalid(
                        format!("events[{i}]"),
                        format!("not an event; one of {}", WEBHOOK_EVENTS.join(", ")),
                    ));
                }
            }
            let config = &self.live.settings.raw.webhooks;
            let target = crate::webhooks::target::Target::parse(&request.url, config)
                .map_err(|e| Problem::invalid("url", e))?;
            target
                .resolve(config)
                .await
                .map_err(|e| Problem::invalid("url", e))?;
            let call = ApiCall::WebhookAdd {
                url: request.url,
                events: request.events,
            };
            let added = account::ask(&self.live.settings, &grant.credential_id, call).await?;
            let made = account::webhooks(added)?
                .pop()
                .ok_or_else(|| Problem::unavailable("account data answered unexpectedly"))?;
            Ok(json(StatusCode::CREATED, &made))
        })
        .await
    }

    /// `POST /v1/unsubscribe/{token}` (RFC 8058 one-click): no API key, the sealed
    /// token is the authority. The recipient goes on the tenant's suppression list
    /// through control, and the first time an `unsubscribed` event goes into the
    /// tenant's delivery log. `200` however often it is repeated.
    async fn unsubscribe(&self, token: &str) -> Answer {
        const ENDPOINT: &str = "unsubscribe";
        let Some(link) = crate::unsubscribe::open(&self.shared.spool, token) else {
            return Answer::of(ENDPOINT, Err(Problem::not_found()));
        };
        let request = ControlRequest::ApiUnsubscribe {
            tenant: link.tenant.clone(),
            address: link.address.clone(),
        };
        let result = match account::send(&self.live.settings, request).await {
            Err(p) => Err(p),
            Ok(answer) => {
                // `done`: it was on the list already; no second event.
                let new = !matches!(answer, way2mail_wire::protocol::Response::Done);
                match self.unsubscribed_event(&link, new).await {
                    Ok(()) => Ok(json(
                        StatusCode::OK,
                        &serde_json::json!({"unsubscribed": true}),
                    )),
                    Err(p) => Err(p),
                }
            }
        };
        Answer {
            endpoint: ENDPOINT,
            tenant: Some(link.tenant),
            result,
        }
    }

    async fn unsubscribed_event(
        &self,
        link: &crate::unsubscribe::Link,
        new: bool,
    ) -> Result<(), Problem> {
        if !new {
            return Ok(());
        }
        let now = now_ms();
        let record = way2mail_queue::DeliveryRecord {
            time_ms: now,
            outcome: way2mail_queue::DeliveryOutcome::Unsubscribed,
            message_id: link.message.to_string(),
            recipient: link.address.clone(),
            next_hop: None,
            ip: None,
            tls: None,
            reply: Some("one-click unsubscribe (RFC 8058)".into()),
            attempt: 0,
            queue_time_ms: now.saturating_sub(link.message.timestamp_ms()),
            tags: Vec::new(),
            metadata: Default::default(),
            category: None,
            scan: None,
        };
        let spool = self.shared.spool.clone();
        let (tenant, id) = (link.tenant.clone(), link.message);
        off_core("the event could not be recorded", move || {
            spool.record_event(&tenant, &id, &record)
        })
        .await
    }

    /// `GET /v1/unsubscribe/{token}`: for people who open the link in a browser,
    /// a page whose button makes the POST (a GET never unsubscribes: link
    /// scanners follow links).
    fn unsubscribe_page(&self, token: &str) -> Answer {
        const ENDPOINT: &str = "unsubscribe";
        if crate::unsubscribe::open(&self.shared.spool, token).is_none() {
            return Answer::of(ENDPOINT, Err(Problem::not_found()));
        }
        let page = "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Unsubscribe</title></head>\n\
            <body><form method=\"post\"><p>Stop receiving these emails?</p>\n\
            <button type=\"submit\" name=\"List-Unsubscribe\" value=\"One-Click\">Unsubscribe</button>\n\
            </form></body></html>\n";
        let mut response = Response::new(Full::new(Bytes::from_static(page.as_bytes())));
        response.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        Answer::of(ENDPOINT, Ok(response))
    }

    /// `GET /v1/messages/{id}`: where the message stands, recipient by recipient,
    /// and its delivery outcomes.
    async fn message(&self, req: &Req, id: &str) -> Answer {
        self.keyed(req, "message", async |grant| {
            let what = format!(
                "GET /v1/messages/{}",
                id.chars().take(40).collect::<String>()
            );
            account::record_access(&self.live.settings, &grant.credential_id, what).await?;
            let Ok(id) = id.parse::<MessageId>() else {
                return Err(Problem::not_found());
            };
            let spool = self.shared.spool.clone();
            let tenant = grant.tenant.clone();
            match off_core("the spool could not be read", move || {
                read::message(&spool, &tenant, id)
            })
            .await?
            {
                Some(view) => Ok(json(StatusCode::OK, &view)),
                None => Err(Problem::not_found()),
            }
        })
        .await
    }

    /// `GET /v1/domains/{domain}/dmarc?since=UNIX`: the DMARC aggregate reports
    /// received for one of the tenant's domains, summed (default: the last 30
    /// days). Another tenant's domain, or no domain, is 404.
    async fn dmarc(&self, req: &Req, domain: &str) -> Answer {
        self.keyed(req, "domain_dmarc", async |grant| {
            let now = now_ms();
            let mut since_ms = now.saturating_sub(DMARC_WINDOW_MS);
            for (k, v) in send::form_pairs(req.uri().query().unwrap_or("")) {
                match k.as_str() {
                    "since" => {
                        since_ms = v
                            .parse::<u64>()
                            .ok()
                            .and_then(|s| s.checked_mul(1000))
                            .filter(|ms| *ms <= now)
                            .ok_or_else(|| {
                                Problem::invalid("since", "Unix seconds, not in the future")
                            })?;
                    }
                    _ => return Err(Problem::invalid(k, "unknown query parameter")),
                }
            }
            let domain = domain.trim_end_matches('.').to_ascii_lowercase();
            let what = format!(
                "GET /v1/domains/{}/dmarc",
                domain.chars().take(253).collect::<String>()
            );
            account::record_access(&self.live.settings, &grant.credential_id, what).await?;
            let owned = self
                .shared
                .tenants
                .as_ref()
                .and_then(|t| t.directory())
                .and_then(|d| d.sending(&domain).map(|s| s.tenant == grant.tenant))
                .unwrap_or(false);
            if !owned {
                return Err(Problem::not_found());
            }
            let spool = self.shared.spool.clone();
            let tenant = grant.tenant.clone();
            let summary = off_core("the DMARC reports could not be read", move || {
                crate::feedback_loop::dmarc_intake::summary(&spool, &tenant, &domain, since_ms)
            })
            .await?;
            Ok(json(StatusCode::OK, &read::DmarcView::from(summary)))
        })
        .await
    }

    /// `GET /v1/events?after=CURSOR&limit=N`: the tenant's delivery events, oldest
    /// first, one page at a time.
    async fn events(&self, req: &Req) -> Answer {
        self.keyed(req, "events", async |grant| {
            let mut after = None;
            let mut limit = read::DEFAULT_PAGE;
            for (k, v) in send::form_pairs(req.uri().query().unwrap_or("")) {
                match k.as_str() {
                    "after" => {
                        after = Some(read::parse_cursor(&v).ok_or_else(|| {
                            Problem::invalid("after", "not a cursor this API gave")
                        })?);
                    }
                    "limit" => {
                        limit = v
                            .parse::<usize>()
                            .ok()
                            .filter(|n| (1..=read::MAX_PAGE).contains(n))
                            .ok_or_else(|| {
                                Problem::invalid(
                                    "limit",
                                    format!("an integer from 1 to {}", read::MAX_PAGE),
                                )
                            })?;
                    }
                    _ => return Err(Problem::invalid(k, "unknown query parameter")),
                }
            }
            let what = format!(
                "GET /v1/events{}",
                if after.is_some() { "?after=…" } else { "" }
            );
            account::record_access(&self.live.settings, &grant.credential_id, what).await?;
            let spool = self.shared.spool.clone();
            let tenant = grant.tenant.clone();
            let now = now_ms();
            let page = off_core("the delivery log could not be read", move || {
                read::events(&spool, &tenant, after, limit, now)
            })
            .await?;
            Ok(json(StatusCode::OK, &page))
        })
        .await
    }

    /// What an authenticated SMTP transaction does between `MAIL` and the `250`:
    /// the sender and recipient rules, the content limits, signing and the
    /// durable spool; then `202 {id, recipients, refused}`.
    async fn submit(
        &self,
        grant: &Grant,
        id: MessageId,
        message: Submission,
        claim: Option<&idempotency::Claim>,
    ) -> Result<Response<Full<Bytes>>, Problem> {
        let Submission {
            sender,
            recipients,
            content,
            labels,
        } = message;
        let started = Instant::now();
        match self.shared.monitor.state() {
            SpoolState::Ready => {}
            SpoolState::DiskLow => {
                return Err(Problem::unavailable("the spool is low on disk space"));
            }
            SpoolState::Unhealthy => {
                return Err(Problem::unavailable("the spool cannot take mail right now"));
            }
        }
        let Some(tenants) = &self.shared.tenants else {
            return Err(Problem::unavailable("no account data"));
        };
        let policy = tenants.policy();
        policy
            .check_sender(grant, &sender)
            .map_err(|r| refused("from", &r))?;
        let settings = &self.live.settings;
        let mut accepted: Vec<String> = Vec::with_capacity(recipients.len());
        let mut refusals: Vec<Refusal> = Vec::new();
        for (i, address) in recipients.into_iter().enumerate() {
            if accepted.len() >= settings.limits.max_recipients {
                return Err(Problem::invalid(
                    "to",
                    format!("more than {} recipients", settings.limits.max_recipients),
                ));
            }
            match policy.check_recipient(grant, &address, accepted.len() + 1) {
                Ok(()) => accepted.push(address),
                // The suppression list refuses that recipient only, as at RCPT.
                Err(r) if r.code == 550 && !is_account_reply(&r) => refusals.push(Refusal {
                    address,
                    reason: r.text.into_owned(),
                }),
                Err(r) => return Err(refused(&format!("to[{i}]"), &r)),
            }
        }
        if accepted.is_empty() {
            let mut p = Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "recipients-refused",
                "Every recipient was refused",
                "no recipient may receive this message",
            );
            p.errors = refusals
                .into_iter()
                .map(|r| FieldError {
                    field: "to".into(),
                    message: r.reason,
                })
                .collect();
            return Err(p);
        }
        let now = now_ms();
        let received = received_header(&self.peer, &settings.raw.hostname, &id, &self.tls, now);
        let mut body = Vec::with_capacity(received.len() + content.len());
        body.extend_from_slice(received.as_bytes());
        body.extend_from_slice(&content);
        drop(content);
        if body.len() as u64 > settings.limits.max_message_size {
            return Err(Problem::too_large(settings.limits.max_message_size));
        }
        if send::received_count(&body) > settings.limits.max_received_headers {
            return Err(Problem::invalid(
                "body",
                "too many Received: header fields (a mail loop)",
            ));
        }
        let smtputf8 = !sender.is_ascii() || accepted.iter().any(|a| !a.is_ascii());
        let body_type = if body.is_ascii() {
            BodyType::SevenBit
        } else {
            BodyType::EightBitMime
        };
        let envelope = Envelope {
            sender,
            recipients: accepted
                .iter()
                .map(|a| Recipient::new(a.clone(), Notify::default(), None))
                .collect(),
            body_type,
            smtputf8,
            ret: None,
            envid: None,
            attempts: 0,
            next_attempt_ms: None,
            delay_notified: false,
            tags: labels.tags,
            metadata: labels.metadata,
            origin: Origin {
                client_ip: self.peer.ip(),
                helo: String::new(),
                listener: "api".into(),
                tls: Some(self.tls.clone()),
                auth: Some(grant.username.clone()),
                tenant: Some(grant.tenant.clone()),
            },
            received_at_ms: now,
            scan: None,
        };
        // Content scanning (`scan/`): before signing, so that its header changes
        // are signed.
        let scan_config = &settings.raw.scan;
        let scan_role = crate::config::scan::ScanRole::Api;
        let scanned = crate::scan::scan(scan_config, scan_role, &id, &envelope, body).await;
        let (body, scan) = match scanned {
            Ok(scanned) => scanned,
            Err(refusal) => {
                crate::metrics::rejected("api", refusal.reason());
                tracing::info!(
                    target: "way2mail::message",
                    %id,
                    client_ip = %self.peer.ip(),
                    listener = "api",
                    tenant = %grant.tenant,
                    scan = %refusal.describe(),
                    "message refused"
                );
                return Err(send::scan_refused(&refusal));
            }
        };
        let mut envelope = envelope;
        envelope.scan = scan.as_ref().map(|s| s.result.clone());
        let (body, dkim) =
            match crate::submit::sign(&self.shared, &self.live, &id, &mut envelope, body) {
                Ok(signed) => signed,
                Err(reply) => {
                    crate::metrics::rejected("api", "not_signed");
                    return Err(refused("from", &reply));
                }
            };
        let size = body.len() as u64;
        let recipients = accepted.len();
        // The answer is known before the write: kept with the message when the
        // request has an Idempotency-Key.
        let answer = serde_json::to_vec(&Queued {
            id: id.to_string(),
            recipients: accepted,
            refused: refusals,
        })
        .unwrap_or_default();
        let side = match claim {
            Some(c) => c.records(&self.shared.spool, id, StatusCode::ACCEPTED, &answer, now)?,
            None => Default::default(),
        };
        let hold = scan.as_ref().is_some_and(|s| s.hold);
        let spooled = if hold {
            crate::submit::spool_held(&self.shared, id, envelope, body, side).await
        } else {
            crate::submit::spool(&self.shared, id, envelope, body, side).await
        };
        if let Err(e) = spooled {
            crate::metrics::rejected("api", "spool_failure");
            tracing::error!(%id, client_ip = %self.peer.ip(), error = %e, "spooling failed");
            return Err(Problem::unavailable("the message could not be spooled"));
        }
        policy.message_queued(grant);
        crate::metrics::accepted("api", started.elapsed().as_secs_f64());
        tracing::info!(
            target: "way2mail::message",
            %id,
            client_ip = %self.peer.ip(),
            listener = "api",
            tls = %self.tls,
            size,
            recipients,
            tenant = %grant.tenant,
            dkim = dkim.as_deref().unwrap_or(""),
            scan = scan.as_ref().map_or("", |s| s.summary.as_str()),
            "message queued"
        );
        Ok(json_bytes(StatusCode::ACCEPTED, answer))
    }
}

/// A message on its way from a request to the spool.
struct Submission {
    sender: String,
    recipients: Vec<String>,
    content: Vec<u8>,
    labels: send::Labels,
}

/// What an account endpoint asks of control.
enum Account {
    SuppressionList,
    SuppressionRemove(String),
    WebhookList,
    WebhookRemove(String),
    WebhookEnable(String),
    DomainList,
    DomainDns(String),
}

enum Claimed {
    Replay(Response<Full<Bytes>>),
    Fresh(idempotency::Claim),
}

/// The body of a `202`.
#[derive(Serialize)]
struct Queued {
    id: String,
    recipients: Vec<String>,
    refused: Vec<Refusal>,
}

#[derive(Serialize)]
struct Refusal {
    address: String,
    reason: String,
}

fn is_account_reply(r: &Reply) -> bool {
    *r == CREDENTIALS_REVOKED || *r == SUSPENDED || *r == TERMINATED
}

fn account_disabled(detail: &str) -> Problem {
    Problem::new(
        StatusCode::FORBIDDEN,
        "account-disabled",
        "The account may not send",
        detail,
    )
}

/// The HTTP answer to a refusal the SMTP rules gave as a reply.
fn refused(field: &str, r: &Reply) -> Problem {
    if *r == CREDENTIALS_REVOKED {
        return Problem::unauthorized("the API key was revoked");
    }
    if is_account_reply(r) {
        return account_disabled(&r.text);
    }
    let is = |class, subject, detail| r.enhanced == Some(EnhancedCode::new(class, subject, detail));
    match r.code {
        // The tenant's hourly (452 4.7.0) or daily (550 5.7.0) budget.
        452 if is(4, 7, 0) => rate_limited(&r.text, 60),
        550 if is(5, 7, 0) => rate_limited(&r.text, 3600),
        452 if is(4, 5, 3) => Problem::invalid("to", r.text.to_string()),
        400..=499 => Problem::unavailable(r.text.to_string()),
        _ => Problem::invalid(field, r.text.to_string()),
    }
}

fn rate_limited(detail: &str, retry_secs: u64) -> Problem {
    Problem::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate-limited",
        "A sending limit of the account is reached",
        detail,
    )
    .retry_after(Duration::from_secs(retry_secs))
}

fn not_allowed(allow: &'static str) -> Problem {
    let mut p = Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "Method not allowed",
        format!("this path answers {allow}"),
    );
    p.allow = Some(allow);
    p
}

/// Refuses a request whose `Content-Type` is not `expected` (parameters such as
/// `charset` aside).
fn media_type(req: &Req, expected: &str) -> Result<(), Problem> {
    let given = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim());
    if given.is_some_and(|g| g.eq_ignore_ascii_case(expected)) {
        Ok(())
    } else {
        Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported content type",
            format!("send Content-Type: {expected}"),
        ))
    }
}

/// How much of a body over the limit is read and thrown away before the `413`:
/// a client that is still sending when the connection closes gets a reset
/// instead of the answer. Larger bodies are cut off (clients sending
/// `Expect: 100-continue` get the answer before they send anything).
const DRAIN: u64 = 1024 * 1024;

/// How many times its body a raw request holds on its way to the spool: the
/// body, the message normalised from it, the signed copy.
const RAW_COPIES: u64 = 3;
/// The same for a JSON request: the body, the parsed request, the decoded
/// attachments, the built message, the signed copy.
const JSON_COPIES: u64 = 5;
/// A small JSON request that carries no message.
const PLAIN_COPIES: u64 = 1;

/// Reads a request body of at most `limit` octets within `deadline`. A body
/// larger than `[spool] message_buffer` is only read under a reservation of the
/// ingest budget (what it and its copies will take), held by the
/// caller until the message is spooled, so that what API requests hold at once
/// is bounded by `[spool] ingest_budget` like SMTP's large messages, however many
/// clients send. `copies`: how many times the body the request will hold.
async fn read_body(
    req: &Req,
    limit: u64,
    deadline: Duration,
    budget: &IngestBudget,
    copies: u64,
) -> Result<(Bytes, Option<Reservation>), Problem> {
    let working_set = |n: u64| n.saturating_mul(copies);
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let expects_continue = req
        .headers()
        .get(hyper::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    // Answered before reading: the client waits for `100 Continue`, or the body
    // is too large to drain.
    if declared.is_some_and(|d| d > limit && (expects_continue || d > limit.saturating_add(DRAIN)))
    {
        return Err(Problem::too_large(limit));
    }
    let Some(mut body) = req.body().take() else {
        return Err(Problem::malformed("the request body was already read"));
    };
    let buffer = budget.message_buffer as u64;
    let mut reservation = match declared {
        Some(d) if d > buffer && d <= limit => budget.reserve(working_set(d)).await,
        _ => None,
    };
    let mut collected = bytes::BytesMut::with_capacity(
        usize::try_from(declared.unwrap_or(0).min(limit).min(buffer)).unwrap_or(0),
    );
    let mut seen: u64 = 0;
    let read = async {
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| {
                Problem::malformed(format!("the request body could not be read: {e}"))
            })?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            seen += data.len() as u64;
            if seen > limit.saturating_add(DRAIN) {
                break;
            }
            if seen <= limit && declared.is_none_or(|d| d <= limit) {
                // A body of unknown length outgrowing the buffer waits for its
                // share, as large as it may become.
                if seen > buffer && reservation.is_none() {
                    reservation = budget.reserve(working_set(limit)).await;
                }
                collected.extend_from_slice(&data);
            }
        }
        Ok(())
    };
    match tokio::time::timeout(deadline, read).await {
        Ok(Ok(())) if seen > limit || declared.is_some_and(|d| d > limit) => {
            Err(Problem::too_large(limit))
        }
        Ok(Ok(())) => Ok((collected.freeze(), reservation)),
        Ok(Err(p)) => Err(p),
        Err(_) => Err(Problem::new(
            StatusCode::REQUEST_TIMEOUT,
            "timeout",
            "The request body took too long",
            format!("the body must arrive within {} s", deadline.as_secs()),
        )),
    }
}

/// Runs spool work on tokio's blocking pool, off the core's event loop. A
/// failure is logged and answered `503` with `failed` as its detail.
/// The default window of `GET /v1/domains/{domain}/dmarc`: 30 days.
const DMARC_WINDOW_MS: u64 = 30 * 86_400 * 1000;

async fn off_core<T: Send + 'static>(
    failed: &'static str,
    work: impl FnOnce() -> Result<T, way2mail_queue::Error> + Send + 'static,
) -> Result<T, Problem> {
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => {
            tracing::error!(error = %e, failed, "spool work for an API request failed");
            Err(Problem::unavailable(failed))
        }
        Err(_) => Err(Problem::unavailable(failed)),
    }
}

/// Reads and drops what is left of a body nobody read, up to [`DRAIN`] octets and
/// [`DRAIN_TIME`].
async fn drain(mut body: Incoming) {
    let read = async {
        let mut seen = 0u64;
        while let Some(Ok(frame)) = body.frame().await {
            if let Ok(data) = frame.into_data() {
                seen += data.len() as u64;
                if seen > DRAIN {
                    break;
                }
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME, read).await;
}

fn json<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Response<Full<Bytes>> {
    json_bytes(status, serde_json::to_vec(value).unwrap_or_default())
}

fn empty(status: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    response
}

fn json_bytes(status: StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// `Received: from [ip] by <host> (Way2Mail) with HTTPS id <id>; <date>`: the
/// trace field an SMTP submission gets, with the HTTPS transport named.
fn received_header(
    peer: &SocketAddr,
    hostname: &str,
    id: &MessageId,
    tls: &str,
    now: u64,
) -> String {
    let ip = match peer.ip().to_canonical() {
        std::net::IpAddr::V4(a) => format!("[{a}]"),
        std::net::IpAddr::V6(a) => format!("[IPv6:{a}]"),
    };
    format!(
        "Received: from {ip} ({ip})\r\n\tby {hostname} (Way2Mail) with HTTPS ({tls}) id {id};\r\n\t{}\r\n",
        way2mail_smtp::date::rfc5322(now)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_map_to_statuses() {
        let hourly = Reply::new(452, EnhancedCode::new(4, 7, 0), "hourly");
        let p = refused("from", &hourly);
        assert_eq!(
            (p.status.as_u16(), p.retry_after),
            (429, Some(Duration::from_secs(60)))
        );
        let daily = Reply::new(550, EnhancedCode::new(5, 7, 0), "daily");
        assert_eq!(refused("from", &daily).status.as_u16(), 429);
        assert_eq!(refused("from", &SUSPENDED).status.as_u16(), 403);
        assert_eq!(refused("from", &CREDENTIALS_REVOKED).status.as_u16(), 401);
        let domain = crate::tenants::not_a_domain_of_this_account("a@b.example");
        let p = refused("from", &domain);
        assert_eq!(
            (p.status.as_u16(), p.errors[0].field.as_str()),
            (422, "from")
        );
        let unavailable = Reply::new(451, EnhancedCode::new(4, 7, 0), "later");
        assert_eq!(refused("from", &unavailable).status.as_u16(), 503);
    }

    #[test]
    fn received_header_is_folded_and_dated() {
        let peer: SocketAddr = "192.0.2.7:4000".parse().expect("addr");
        let id = MessageId::generate();
        let h = received_header(&peer, "mta.example", &id, "TLSv1.3 X", 1_700_000_000_000);
        assert!(h.starts_with(
            "Received: from [192.0.2.7] ([192.0.2.7])\r\n\tby mta.example (Way2Mail) with HTTPS"
        ));
        assert!(h.ends_with("Tue, 14 Nov 2023 22:13:20 +0000\r\n"), "{h}");
        assert!(h.split("\r\n").all(|l| l.len() < 998));
    }
}
