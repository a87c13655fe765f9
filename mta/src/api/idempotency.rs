//! `Idempotency-Key` on the sending endpoints: a retried request gets the first
//! answer, for 24 hours, instead of sending the message twice.
//!
//! - The answer is kept in the spool, sealed with the tenant's key, in the same
//!   write as the message (`Spool::idempotency_records`, `enqueue_with`): after a
//!   crash there is either the message and its answer, or neither (and a retry
//!   sends it, once).
//! - While a request with a key is being handled, the same key from the same
//!   tenant is answered `409` (`idempotency-key-in-use`, `Retry-After: 1`): the
//!   claim is held in memory until the message is durable or refused.
//! - The key with another request (method, path, query or body differ) is `422`
//!   (`idempotency-key-reused`): a client bug, never silently answered.
//! - Only `202` answers are kept: a refused request queued nothing, and its retry
//!   is checked afresh.

use std::collections::HashSet;
use std::sync::{LazyLock, Mutex};

use aws_lc_rs::digest;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::HeaderValue;
use hyper::{Request, Response, StatusCode};
use way2mail_queue::{IdempotencyRecord, SideRecords, Spool};
use way2mail_smtp::MessageId;

use super::problem::Problem;

/// The request header.
pub const HEADER: &str = "idempotency-key";
/// Set on an answer that was kept from an earlier request.
const REPLAYED: &str = "idempotent-replayed";
/// The longest key accepted.
const MAX_KEY: usize = 255;

/// Tenant-and-key digests of the requests being handled now, on every core.
static IN_FLIGHT: LazyLock<Mutex<HashSet<[u8; 32]>>> = LazyLock::new(Mutex::default);

fn in_flight() -> std::sync::MutexGuard<'static, HashSet<[u8; 32]>> {
    // Inserts and removals cannot panic half-way.
    IN_FLIGHT.lock().unwrap_or_else(|p| p.into_inner())
}

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    for p in parts {
        ctx.update(&(p.len() as u64).to_be_bytes());
        ctx.update(p);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The request's `Idempotency-Key`, if it has one: 1 to 255 printable ASCII
/// characters.
pub fn key_of<B>(req: &Request<B>) -> Result<Option<String>, Problem> {
    let Some(value) = req.headers().get(HEADER) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or("");
    let valid = !text.is_empty()
        && text.len() <= MAX_KEY
        && text.bytes().all(|b| b.is_ascii_graphic() || b == b' ');
    if valid {
        Ok(Some(text.to_string()))
    } else {
        Err(Problem::invalid(
            "Idempotency-Key",
            format!("1 to {MAX_KEY} printable ASCII characters"),
        ))
    }
}

/// What identifies a request besides its body: method, path and query.
pub fn describe<B>(req: &Request<B>) -> String {
    format!(
        "{} {}?{}",
        req.method(),
        req.uri().path(),
        req.uri().query().unwrap_or("")
    )
}

/// The right to send for one tenant's key, held until dropped.
pub struct Claim {
    tenant: String,
    key: String,
    /// SHA-256 of the request (hexadecimal), as kept with the answer.
    request: String,
    slot: [u8; 32],
}

impl Claim {
    /// Claims `key` for `tenant`, or `409` when a request with it is in hand.
    pub fn take(tenant: &str, key: String, described: &str, body: &[u8]) -> Result<Claim, Problem> {
        let slot = sha256(&[tenant.as_bytes(), key.as_bytes()]);
        if !in_flight().insert(slot) {
            return Err(Problem::new(
                StatusCode::CONFLICT,
                "idempotency-key-in-use",
                "A request with this Idempotency-Key is being handled",
                "retry when it has been answered",
            )
            .retry_after(std::time::Duration::from_secs(1)));
        }
        Ok(Claim {
            tenant: tenant.to_string(),
            key,
            request: hex(&sha256(&[described.as_bytes(), body])),
            slot,
        })
    }

    /// The answer kept for this key, if any: replayed for the same request,
    /// `422` for another.
    pub fn kept(
        &self,
        spool: &Spool,
        now_ms: u64,
    ) -> Result<Option<Response<Full<Bytes>>>, Problem> {
        let found = spool
            .idempotency(&self.tenant, &self.key, now_ms)
            .map_err(|e| {
                tracing::error!(error = %e, "reading an idempotency record failed");
                Problem::unavailable("the spool could not be read")
            })?;
        let Some(record) = found else {
            return Ok(None);
        };
        if record.request != self.request {
            return Err(Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency-key-reused",
                "This Idempotency-Key was used for another request",
                "a key names one request; use a new key for a new message",
            ));
        }
        let mut response = Response::new(Full::new(Bytes::from(record.body)));
        *response.status_mut() =
            StatusCode::from_u16(record.status).unwrap_or(StatusCode::ACCEPTED);
        let headers = response.headers_mut();
        headers.insert(
            hyper::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(REPLAYED, HeaderValue::from_static("true"));
        Ok(Some(response))
    }

    /// The records keeping `answer` for this key, written with message `id`.
    pub fn records(
        &self,
        spool: &Spool,
        id: MessageId,
        status: StatusCode,
        answer: &[u8],
        now_ms: u64,
    ) -> Result<SideRecords, Problem> {
        let record = IdempotencyRecord {
            created_ms: now_ms,
            request: self.request.clone(),
            status: status.as_u16(),
            body: String::from_utf8_lossy(answer).into_owned(),
            message_id: id.to_string(),
        };
        spool
            .idempotency_records(&self.tenant, &self.key, &record)
            .map_err(|e| {
                tracing::error!(error = %e, "sealing an idempotency record failed");
                Problem::unavailable("the message could not be spooled")
            })
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        in_flight().remove(&self.slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_claim_per_tenant_and_key_at_a_time() {
        let a = Claim::take("acme", "k1".into(), "POST /v1/messages?", b"{}").expect("first");
        let again = Claim::take("acme", "k1".into(), "POST /v1/messages?", b"{}");
        assert_eq!(again.err().map(|p| p.status.as_u16()), Some(409));
        // Another tenant's key of the same text is its own.
        let b =
            Claim::take("beta", "k1".into(), "POST /v1/messages?", b"{}").expect("other tenant");
        drop(a);
        let c = Claim::take("acme", "k1".into(), "POST /v1/messages?", b"{}").expect("released");
        // The request digest covers the body and the description.
        let d = Claim::take("acme", "k2".into(), "POST /v1/messages?", b"{ }").expect("k2");
        assert_ne!(c.request, d.request);
        assert_eq!(c.request, b.request);
    }
}
