//! `way2mail-bench api` against a small HTTPS server in this process (hyper over
//! tokio-rustls, self-signed, ALPN h2 and http/1.1) on 127.0.0.1 with an ephemeral
//! port: what the requests look like, how answers are counted, HTTP/1.1 and HTTP/2.
//! The server answers `202`, except `429` for every request whose subject number
//! is a multiple of 10.

#![allow(clippy::unwrap_used)]

use std::convert::Infallible;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_way2mail-bench");
const KEY: &str = "w2m_test_secret";

#[derive(Default)]
struct Seen {
    connections: AtomicU64,
    requests: AtomicU64,
    bad_requests: AtomicU64,
}

/// Checks one request as the API would; 400 if anything is off.
async fn answer(req: Request<Incoming>, seen: Arc<Seen>) -> Response<Full<Bytes>> {
    seen.requests.fetch_add(1, Relaxed);
    let h = req.headers();
    let good_headers = req.method() == hyper::Method::POST
        && req.uri().path() == "/v1/messages"
        && h.get("authorization")
            .is_some_and(|v| v == "Bearer w2m_test_secret")
        && h.get("content-type")
            .is_some_and(|v| v == "application/json")
        && (req.version() == hyper::Version::HTTP_2 || h.contains_key("host"));
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let json: Option<Value> = serde_json::from_slice(&body).ok();
    let seq = json.as_ref().and_then(|v| {
        let ok = v["from"] == "app@acme.example"
            && v["to"] == serde_json::json!(["rcpt@remote.example"])
            && v["text"].as_str().is_some_and(|t| t.len() > 1000);
        v["subject"]
            .as_str()?
            .strip_prefix("bench ")?
            .parse::<u64>()
            .ok()
            .filter(|_| ok)
    });
    let status = match seq {
        _ if !good_headers => StatusCode::BAD_REQUEST,
        None => StatusCode::BAD_REQUEST,
        Some(n) if n % 10 == 0 => StatusCode::TOO_MANY_REQUESTS,
        Some(_) => StatusCode::ACCEPTED,
    };
    if status == StatusCode::BAD_REQUEST {
        seen.bad_requests.fetch_add(1, Relaxed);
    }
    let mut r = Response::new(Full::new(Bytes::from_static(b"{\"title\":\"sample\"}")));
    *r.status_mut() = status;
    r
}

/// Starts the server on its own runtime thread; returns its address.
fn start_server(seen: Arc<Seen>) -> String {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let (acceptor, seen) = (acceptor.clone(), seen.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    seen.connections.fetch_add(1, Relaxed);
                    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
                    let service = hyper::service::service_fn(move |req| {
                        let seen = seen.clone();
                        async move { Ok::<_, Infallible>(answer(req, seen).await) }
                    });
                    let io = TokioIo::new(tls);
                    if h2 {
                        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                            .serve_connection(io, service)
                            .await;
                    } else {
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(io, service)
                            .await;
                    }
                });
            }
        });
    });
    addr
}

/// Runs `api` with `extra` against a fresh server; the summary and what it saw.
fn run(extra: &[&str]) -> (Value, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let addr = start_server(seen.clone());
    let mut args = vec![
        "api",
        "--server",
        &addr,
        "--key",
        KEY,
        "--messages",
        "200",
        "--size",
        "3000",
        "--from",
        "app@acme.example",
        "--to",
        "rcpt@remote.example",
        "--timeout-secs",
        "10",
        "--json",
    ];
    args.extend_from_slice(extra);
    let out = Command::new(BIN).args(&args).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr, "first 429: {\"title\":\"sample\"}\n");
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    (summary, seen)
}

fn check_counts(summary: &Value, seen: &Seen) {
    assert_eq!(summary["ok"], 180, "{summary}");
    assert_eq!(summary["failed"], 20, "{summary}");
    assert_eq!(summary["errors"], serde_json::json!({"429": 20}));
    assert_eq!(seen.requests.load(Relaxed), 200);
    assert_eq!(seen.bad_requests.load(Relaxed), 0);
    let f = |k: &str| summary[k].as_f64().unwrap();
    assert!(f("msgs_per_s") > 0.0);
    assert!(f("p50_ms") <= f("p90_ms") && f("p90_ms") <= f("p99_ms"));
    assert!(f("p99_ms") <= f("max_ms"));
}

#[test]
fn http1_keep_alive_one_connection_per_request_in_flight() {
    let (summary, seen) = run(&["--connections", "4"]);
    check_counts(&summary, &seen);
    assert_eq!(summary["http"], "1.1");
    assert_eq!(summary["concurrency"], 4);
    assert_eq!(summary["connections_opened"], 4, "{summary}");
    assert_eq!(seen.connections.load(Relaxed), 4);
}

#[test]
fn http2_multiplexes_over_fewer_connections() {
    let (summary, seen) = run(&[
        "--connections",
        "8",
        "--http2",
        "--streams-per-connection",
        "3",
    ]);
    check_counts(&summary, &seen);
    assert_eq!(summary["http"], "2");
    assert_eq!(summary["concurrency"], 8);
    // ceil(8 / 3)
    assert_eq!(summary["connections_opened"], 3, "{summary}");
    assert_eq!(seen.connections.load(Relaxed), 3);
}

#[test]
fn arguments_are_checked() {
    let fails = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(args)
            .env_remove("WAY2MAIL_BENCH_API_KEY")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} succeeded");
        String::from_utf8(out.stderr).unwrap()
    };
    assert!(fails(&["api"]).contains("WAY2MAIL_BENCH_API_KEY"));
    assert!(fails(&["api", "--key", "k", "--connections", "0"]).contains("at least 1"));
    fails(&["api", "--key", "k", "--streams-per-connection", "5"]);
    fails(&["api", "--key", "k", "--insecure", "--ca-file", "x.pem"]);
    assert!(fails(&["api", "--key", "k", "--ca-file", "/nonexistent.pem"]).contains("reading"));
}

#[test]
fn refused_connections_are_counted() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let out = Command::new(BIN)
        .args(["api", "--server", &addr, "--key", "k", "--json"])
        .args(["--connections", "2", "--messages", "5"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["errors"], serde_json::json!({"connect": 5}));
}
