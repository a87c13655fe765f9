//! rspamd's HTTP protocol: `POST /checkv2` with the envelope in headers and the
//! message as the body, one JSON answer (`action`, `score`, `required_score`,
//! `symbols`, `milter.add_headers`, `subject`).

use std::fmt;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{CONTENT_LENGTH, HOST, USER_AGENT};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;
use way2mail_smtp::{Envelope, MessageId};

use crate::config::scan::ScanConfig;

/// The most of rspamd's answer read.
const ANSWER_MAX: usize = 1024 * 1024;

/// Where rspamd listens: `http://host:port[/prefix]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: u16,
    /// Before `/checkv2` (a proxy's path), without a trailing slash.
    pub prefix: String,
}

impl Target {
    pub fn parse(url: &str) -> Option<Target> {
        let rest = url.strip_prefix("http://")?;
        let (authority, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        let (host, port) = match authority.strip_prefix('[') {
            Some(v6) => {
                let (host, port) = v6.split_once("]:")?;
                (host, port)
            }
            None => authority.rsplit_once(':')?,
        };
        let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
        if host.is_empty()
            || host.contains(['@', '?', '#', '[', ']'])
            || host.chars().any(|c| c.is_whitespace() || c.is_control())
            || prefix.contains(['?', '#'])
        {
            return None;
        }
        Some(Target {
            host: host.to_string(),
            port,
            prefix: prefix.to_string(),
        })
    }

    fn host_header(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// rspamd's action (`NoAction` is rspamd's own name for it: "no action").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(clippy::enum_variant_names)]
pub enum Action {
    NoAction,
    Greylist,
    AddHeader,
    RewriteSubject,
    SoftReject,
    Reject,
}

impl Action {
    fn parse(s: &str) -> Option<Action> {
        Some(match s {
            "no action" => Action::NoAction,
            "greylist" => Action::Greylist,
            "add header" => Action::AddHeader,
            "rewrite subject" => Action::RewriteSubject,
            "soft reject" => Action::SoftReject,
            "reject" => Action::Reject,
            _ => return None,
        })
    }

    /// As rspamd spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::NoAction => "no action",
            Action::Greylist => "greylist",
            Action::AddHeader => "add header",
            Action::RewriteSubject => "rewrite subject",
            Action::SoftReject => "soft reject",
            Action::Reject => "reject",
        }
    }

    /// As a metric label and in log lines.
    pub fn as_metric(self) -> &'static str {
        match self {
            Action::NoAction => "no_action",
            Action::Greylist => "greylist",
            Action::AddHeader => "add_header",
            Action::RewriteSubject => "rewrite_subject",
            Action::SoftReject => "soft_reject",
            Action::Reject => "reject",
        }
    }
}

/// rspamd's answer, as far as it matters here.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub action: Action,
    pub score: f64,
    pub required_score: f64,
    /// Symbol names and their scores.
    pub symbols: Vec<(String, f64)>,
    /// `milter.add_headers`: fields to add.
    pub add_headers: Vec<(String, String)>,
    /// The new subject, for `rewrite subject`.
    pub subject: Option<String>,
}

impl Verdict {
    /// Up to `n` symbol names, the heaviest (by absolute score) first.
    pub fn top_symbols(&self, n: usize) -> Vec<String> {
        let mut s: Vec<&(String, f64)> = self.symbols.iter().collect();
        s.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()).then_with(|| a.0.cmp(&b.0)));
        s.into_iter()
            .take(n)
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Reads `/checkv2`'s JSON.
    pub fn parse(json: &[u8]) -> Result<Verdict, Failure> {
        let v: Value = serde_json::from_slice(json)
            .map_err(|e| Failure::Protocol(format!("not JSON: {e}")))?;
        let action = v
            .get("action")
            .and_then(Value::as_str)
            .ok_or_else(|| Failure::Protocol("no action in the answer".into()))?;
        let action = Action::parse(action)
            .ok_or_else(|| Failure::Protocol(format!("unknown action {action:?}")))?;
        let number = |k: &str| v.get(k).and_then(Value::as_f64).unwrap_or(0.0);
        let symbols = v
            .get("symbols")
            .and_then(Value::as_object)
            .map(|o| {
                o.iter()
                    .map(|(name, s)| {
                        let score = s.get("score").and_then(Value::as_f64).unwrap_or(0.0);
                        (name.clone(), score)
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut add_headers = Vec::new();
        if let Some(o) = v.pointer("/milter/add_headers").and_then(Value::as_object) {
            for (name, value) in o {
                // A string, `{"value": …, "order": …}`, or a list of either.
                let values: Vec<&Value> = match value {
                    Value::Array(a) => a.iter().collect(),
                    other => vec![other],
                };
                for value in values {
                    let text = match value {
                        Value::String(s) => Some(s.as_str()),
                        Value::Object(o) => o.get("value").and_then(Value::as_str),
                        _ => None,
                    };
                    if let Some(text) = text {
                        add_headers.push((name.clone(), text.to_string()));
                    }
                }
            }
        }
        Ok(Verdict {
            action,
            score: number("score"),
            required_score: number("required_score"),
            symbols,
            add_headers,
            subject: v.get("subject").and_then(Value::as_str).map(str::to_string),
        })
    }
}

/// Why a scan failed.
#[derive(Debug)]
pub enum Failure {
    Connect(String),
    Timeout,
    Status(u16),
    Protocol(String),
}

impl Failure {
    /// The `way2mail_scan_failures_total` label.
    pub fn reason(&self) -> &'static str {
        match self {
            Failure::Connect(_) => "connect",
            Failure::Timeout => "timeout",
            Failure::Status(_) => "http_status",
            Failure::Protocol(_) => "protocol",
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Connect(e) => write!(f, "connecting to rspamd: {e}"),
            Failure::Timeout => f.write_str("rspamd did not answer within scan.timeout_ms"),
            Failure::Status(s) => write!(f, "rspamd answered HTTP {s}"),
            Failure::Protocol(e) => write!(f, "rspamd's answer: {e}"),
        }
    }
}

/// One scan, connect to answer within `timeout_ms`.
pub async fn check(
    config: &ScanConfig,
    id: &MessageId,
    envelope: &Envelope,
    message: &[u8],
) -> Result<Verdict, Failure> {
    let target = Target::parse(&config.rspamd)
        .ok_or_else(|| Failure::Connect(format!("'{}' is not a valid URL", config.rspamd)))?;
    let request = request(&target, id, envelope, message)?;
    match tokio::time::timeout(config.timeout(), exchange(&target, request)).await {
        Ok(result) => result,
        Err(_) => Err(Failure::Timeout),
    }
}

fn request(
    target: &Target,
    id: &MessageId,
    envelope: &Envelope,
    message: &[u8],
) -> Result<Request<Full<Bytes>>, Failure> {
    let origin = &envelope.origin;
    let mut r = Request::post(format!("{}/checkv2", target.prefix))
        .header(HOST, target.host_header())
        .header(USER_AGENT, concat!("way2mail/", env!("CARGO_PKG_VERSION")))
        .header(CONTENT_LENGTH, message.len())
        .header("Queue-Id", id.to_string())
        .header("IP", origin.client_ip.to_string())
        .header("From", header_value(&envelope.sender));
    for rcpt in &envelope.recipients {
        r = r.header("Rcpt", header_value(&rcpt.address));
    }
    if !origin.helo.is_empty() {
        r = r.header("Helo", header_value(&origin.helo));
    }
    if let Some(user) = origin.auth.as_deref().or(origin.tenant.as_deref()) {
        r = r.header("User", header_value(user));
    }
    r.body(Full::new(Bytes::copy_from_slice(message)))
        .map_err(|e| Failure::Protocol(format!("building the request: {e}")))
}

/// Header values are addresses and names the protocol already checked; anything a
/// header cannot carry is dropped rather than refused.
fn header_value(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).collect()
}

async fn exchange(target: &Target, request: Request<Full<Bytes>>) -> Result<Verdict, Failure> {
    let tcp = TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(|e| Failure::Connect(e.to_string()))?;
    let _ = tcp.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| Failure::Connect(e.to_string()))?;
    let ask = async {
        let answer = sender
            .send_request(request)
            .await
            .map_err(|e| Failure::Protocol(e.to_string()))?;
        let status = answer.status();
        let body = Limited::new(answer.into_body(), ANSWER_MAX)
            .collect()
            .await
            .map_err(|e| Failure::Protocol(format!("reading the answer: {e}")))?
            .to_bytes();
        if !status.is_success() {
            return Err(Failure::Status(status.as_u16()));
        }
        Verdict::parse(&body)
    };
    // The connection is driven beside the exchange; rspamd may close it right
    // after its answer, and what was read by then is still ours to collect.
    tokio::pin!(conn);
    tokio::pin!(ask);
    tokio::select! {
        biased;
        verdict = &mut ask => verdict,
        _ = &mut conn => ask.await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_target_urls() {
        let t = Target::parse("http://127.0.0.1:11333").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.prefix.as_str()),
            ("127.0.0.1", 11333, "")
        );
        let t = Target::parse("http://[::1]:11333/rspamd/").unwrap();
        assert_eq!((t.host.as_str(), t.prefix.as_str()), ("::1", "/rspamd"));
        assert_eq!(t.host_header(), "[::1]:11333");
        for bad in [
            "",
            "https://h:1",
            "http://h",
            "http://:1",
            "http://h:0",
            "http://a@h:1",
        ] {
            assert!(Target::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn scan_parses_checkv2_answers() {
        let json = br#"{"is_skipped":false,"score":1001.5,"required_score":15,"action":"reject",
            "symbols":{"GTUBE":{"name":"GTUBE","score":0},"MISSING_DATE":{"name":"MISSING_DATE","score":1.5}},
            "milter":{"add_headers":{"X-A":"one","X-B":{"value":"two","order":0},"X-C":[{"value":"3"},"4"]}},
            "subject":"*** SPAM *** x","message-id":"x@y"}"#;
        let v = Verdict::parse(json).unwrap();
        assert_eq!(v.action, Action::Reject);
        assert_eq!(v.score, 1001.5);
        assert_eq!(v.top_symbols(1), ["MISSING_DATE"]);
        assert_eq!(v.add_headers.len(), 4);
        assert_eq!(v.subject.as_deref(), Some("*** SPAM *** x"));
        assert!(Verdict::parse(b"{}").is_err());
        assert!(Verdict::parse(br#"{"action":"eat it"}"#).is_err());
        assert!(Verdict::parse(b"nope").is_err());
    }
}
