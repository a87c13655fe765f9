//! Metrics and health over HTTP, the same for both daemons: `[metrics] listen`, and on
//! it `GET /metrics` (the Prometheus text format, rendered by
//! `metrics-exporter-prometheus` from what the code records through the `metrics`
//! facade), `GET /healthz` (the process serves) and `GET /readyz` (the daemon's own
//! readiness check; `503` with the reason when it fails).
//!
//! The server is a thread of its own with a one-thread tokio runtime and hyper's
//! HTTP/1.1: a scrape never runs on a core that serves mail. It is meant for a
//! loopback or management address, and bounded all the same: at most
//! [`MAX_CONNECTIONS`] at once (more are closed unanswered), each connection at most
//! [`CONNECTION_TIME`], requests without a body.

use std::convert::Infallible;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
pub use metrics_exporter_prometheus::PrometheusHandle;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use serde::Deserialize;

use crate::config::ConfigError;

/// Scrapes served at once; a monitoring system needs one or two.
pub const MAX_CONNECTIONS: usize = 16;
/// The longest a connection may stay open, whatever it does.
pub const CONNECTION_TIME: Duration = Duration::from_secs(30);
/// How often histograms are folded (the exporter's upkeep) between scrapes.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// `[metrics]`: where the HTTP endpoint listens; `""` turns it off, absent is the
/// daemon's default.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    #[serde(default)]
    pub listen: Option<String>,
}

impl MetricsConfig {
    /// The address to listen on (`default` when `listen` is absent); `None` when off.
    pub fn address(&self, default: &str) -> Result<Option<SocketAddr>, ConfigError> {
        let listen = self.listen.as_deref().unwrap_or(default);
        if listen.is_empty() {
            return Ok(None);
        }
        listen.parse().map(Some).map_err(|_| {
            ConfigError::new(
                "metrics.listen",
                format!(
                    "{listen:?} is not an address with a port (e.g. {default:?}; \"\" turns it off)"
                ),
            )
        })
    }
}

/// Installs the process's metrics recorder, with histogram buckets for the named
/// metrics (the others are recorded as summaries). Once per process.
pub fn install(buckets: &[(&str, &[f64])]) -> Result<PrometheusHandle> {
    let mut builder = PrometheusBuilder::new();
    for (name, bounds) in buckets {
        builder = builder
            .set_buckets_for_metric(Matcher::Full((*name).to_owned()), bounds)
            .with_context(|| format!("histogram buckets of {name}"))?;
    }
    builder
        .install_recorder()
        .context("installing the metrics recorder")
}

/// Why the daemon is not ready, in words for the operator; `Ok` when it is.
pub type Readiness = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// Binds the endpoint (at start, so that a taken address stops the daemon with a
/// clear error).
pub fn bind(address: SocketAddr) -> Result<TcpListener> {
    let listener = TcpListener::bind(address)
        .with_context(|| format!("metrics.listen: cannot listen on {address}"))?;
    listener
        .set_nonblocking(true)
        .context("metrics.listen: non-blocking socket")?;
    Ok(listener)
}

/// Serves the endpoint on its own thread until the process ends.
pub fn serve(
    listener: TcpListener,
    handle: PrometheusHandle,
    ready: Readiness,
) -> Result<JoinHandle<()>> {
    let address = listener.local_addr().context("metrics listener address")?;
    std::thread::Builder::new()
        .name("metrics-http".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    tracing::error!(error = %e, "metrics endpoint: no runtime; not serving");
                    return;
                }
            };
            runtime.block_on(accept_loop(listener, handle, ready));
        })
        .inspect(|_| tracing::info!(%address, "metrics and health endpoint listening"))
        .context("starting the metrics thread")
}

async fn accept_loop(listener: TcpListener, handle: PrometheusHandle, ready: Readiness) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(e) => {
            tracing::error!(error = %e, "metrics endpoint: cannot register the listener");
            return;
        }
    };
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(UPKEEP_EVERY);
        loop {
            ticker.tick().await;
            upkeep.run_upkeep();
        }
    });
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // EMFILE and the like: wait rather than spin.
                tracing::debug!(error = %e, "metrics endpoint: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let handle = handle.clone();
        let ready = Arc::clone(&ready);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let answer = answer(&request, &handle, &ready);
                async move { Ok::<_, Infallible>(answer) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .max_buf_size(16 * 1024)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_TIME, connection).await;
            drop(slot);
        });
    }
}

/// The answer to one request.
fn answer(
    request: &Request<Incoming>,
    handle: &PrometheusHandle,
    ready: &Readiness,
) -> Response<Full<Bytes>> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n".into());
    }
    match request.uri().path() {
        "/metrics" => {
            let mut response = text(StatusCode::OK, handle.render());
            response.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            response
        }
        "/healthz" => text(StatusCode::OK, "ok\n".into()),
        "/readyz" => match ready() {
            Ok(()) => text(StatusCode::OK, "ready\n".into()),
            Err(reason) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {reason}\n"),
            ),
        },
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: /metrics, /healthz, /readyz\n".into(),
        ),
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_parses_an_address_or_nothing() {
        let with = |listen: Option<&str>| MetricsConfig {
            listen: listen.map(str::to_owned),
        };
        assert_eq!(with(Some("")).address("127.0.0.1:1").unwrap(), None);
        assert_eq!(
            with(None).address("127.0.0.1:9465").unwrap(),
            Some("127.0.0.1:9465".parse().unwrap())
        );
        assert_eq!(
            with(Some("[::1]:9")).address("127.0.0.1:1").unwrap(),
            Some("[::1]:9".parse().unwrap())
        );
        let err = with(Some("localhost")).address("").unwrap_err();
        assert_eq!(err.key, "metrics.listen");
    }
}
