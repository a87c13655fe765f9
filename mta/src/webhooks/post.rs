//! One connection to a webhook endpoint and the signed posts over it.
//!
//! ```text
//!   Way2Mail-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>
//! ```
//!
//! The receiver recomputes the MAC over the raw body with the secret it got when
//! the endpoint was made, compares in constant time, and refuses a `t` too far
//! from its own clock (a replayed post). HTTPS verifies the endpoint's certificate
//! against the system's roots (and `[webhooks] ca_file`); there is no way to turn
//! that off.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::hmac;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONTENT_TYPE, HOST, USER_AGENT};
use hyper::Request;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::target::Target;

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "Way2Mail-Signature";
/// The header naming the endpoint.
pub const WEBHOOK_HEADER: &str = "Way2Mail-Webhook-Id";
/// Most of an answer's body read (and thrown away).
const MAX_ANSWER: usize = 64 * 1024;

/// `t=…,v1=…` for `body` posted at unix time `t`.
pub fn signature(secret: &str, t: u64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(t.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    let tag = ctx.sign();
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("t={t},v1={hex}")
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// An open HTTP/1.1 connection to one endpoint.
pub struct Connection {
    sender: SendRequest<Full<Bytes>>,
    host: String,
    path: String,
}

/// Connects to the first of `addresses` that answers, with TLS when the target
/// is https, within `timeout`.
pub async fn connect(
    target: &Target,
    addresses: &[SocketAddr],
    tls: &Arc<ClientConfig>,
    timeout: Duration,
) -> Result<Connection, String> {
    let mut last = String::from("no address");
    for address in addresses {
        let tcp = match tokio::time::timeout(timeout, TcpStream::connect(address)).await {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(e)) => {
                last = format!("connecting to {address}: {e}");
                continue;
            }
            Err(_) => {
                last = format!("connecting to {address}: timed out");
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let io: Box<dyn Io> = if target.https {
            let name = ServerName::try_from(target.host.clone())
                .map_err(|_| format!("{} is not a name TLS can verify", target.host))?;
            let connector = tokio_rustls::TlsConnector::from(Arc::clone(tls));
            match tokio::time::timeout(timeout, connector.connect(name, tcp)).await {
                Ok(Ok(stream)) => Box::new(stream),
                Ok(Err(e)) => return Err(format!("TLS with {address}: {e}")),
                Err(_) => return Err(format!("TLS with {address}: timed out")),
            }
        } else {
            Box::new(tcp)
        };
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| format!("HTTP with {address}: {e}"))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let default_port = if target.https { 443 } else { 80 };
        let host = match (target.host.contains(':'), target.port == default_port) {
            (true, true) => format!("[{}]", target.host),
            (true, false) => format!("[{}]:{}", target.host, target.port),
            (false, true) => target.host.clone(),
            (false, false) => format!("{}:{}", target.host, target.port),
        };
        return Ok(Connection {
            sender,
            host,
            path: target.path.clone(),
        });
    }
    Err(last)
}

impl Connection {
    /// Posts `body` signed with `secret`; `Ok` on any 2xx answer within `timeout`.
    pub async fn post(
        &mut self,
        webhook: &str,
        secret: &str,
        body: Bytes,
        timeout: Duration,
    ) -> Result<(), String> {
        let t = way2mail_daemon::time::now_ms() / 1000;
        let request = Request::post(self.path.as_str())
            .header(HOST, self.host.as_str())
            .header(CONTENT_TYPE, "application/json")
            .header(
                USER_AGENT,
                concat!("way2mail-webhooks/", env!("CARGO_PKG_VERSION")),
            )
            .header(WEBHOOK_HEADER, webhook)
            .header(SIGNATURE_HEADER, signature(secret, t, &body))
            .body(Full::new(body))
            .map_err(|e| format!("building the request: {e}"))?;
        let exchange = async {
            self.sender
                .ready()
                .await
                .map_err(|e| format!("connection closed: {e}"))?;
            let answer = self
                .sender
                .send_request(request)
                .await
                .map_err(|e| format!("no answer: {e}"))?;
            let status = answer.status();
            // Read (at most MAX_ANSWER of) the body so the connection can carry the
            // next post.
            let _ = Limited::new(answer.into_body(), MAX_ANSWER).collect().await;
            if status.is_success() {
                Ok(())
            } else {
                Err(format!("HTTP {}", status.as_u16()))
            }
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {} s", timeout.as_secs())),
        }
    }

    pub fn is_open(&self) -> bool {
        !self.sender.is_closed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_of_time_dot_body() {
        // Computed independently: printf '1700000000.{"a":1}' |
        //   openssl dgst -sha256 -hmac whsec_test
        assert_eq!(
            signature("whsec_test", 1_700_000_000, br#"{"a":1}"#),
            "t=1700000000,v1=38877139021993b830af32feea6e18a8da83eb2f6e49ee50bd9e4cf4ca4d3789"
        );
    }
}
