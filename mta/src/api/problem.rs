//! Errors as `application/problem+json` (RFC 9457): a stable `type` URI per kind of
//! failure (documented in docs/api.md), the status, a human `title` and `detail`,
//! and for bad input the field (`errors[].field`, a path such as `to[1]`).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use hyper::{Response, StatusCode};
use serde::Serialize;

/// Problem types are URNs (RFC 9457 §3.1.1 allows any URI; these are stable and
/// resolve to nothing), each documented in docs/api.md.
const TYPE_BASE: &str = "urn:way2mail:problem:";

#[derive(Debug, Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

#[derive(Debug)]
pub struct Problem {
    pub status: StatusCode,
    /// The last segment of the type URI (`invalid-request`, `unauthorized`, ...).
    pub kind: &'static str,
    pub title: &'static str,
    pub detail: String,
    pub errors: Vec<FieldError>,
    pub retry_after: Option<Duration>,
    /// The methods a path answers, for 405.
    pub allow: Option<&'static str>,
}

#[derive(Serialize)]
struct Body<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    detail: &'a str,
    #[serde(skip_serializing_if = "<[FieldError]>::is_empty")]
    errors: &'a [FieldError],
}

impl Problem {
    pub fn new(
        status: StatusCode,
        kind: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Problem {
        Problem {
            status,
            kind,
            title,
            detail: detail.into(),
            errors: Vec::new(),
            retry_after: None,
            allow: None,
        }
    }

    /// 422: the request is well-formed JSON but `field` is wrong.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Problem {
        let message = message.into();
        let field = field.into();
        let mut p = Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-request",
            "The request is not valid",
            format!("{field}: {message}"),
        );
        p.errors.push(FieldError { field, message });
        p
    }

    /// 400: the body is not what the content type says.
    pub fn malformed(detail: impl Into<String>) -> Problem {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "malformed-request",
            "The request body cannot be read",
            detail,
        )
    }

    pub fn unauthorized(detail: &str) -> Problem {
        Problem::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Missing, wrong or revoked API key",
            detail,
        )
    }

    pub fn not_found() -> Problem {
        Problem::new(
            StatusCode::NOT_FOUND,
            "not-found",
            "No such resource",
            "nothing is served at this path",
        )
    }

    pub fn too_large(limit: u64) -> Problem {
        Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-large",
            "The request is too large",
            format!("the limit is {limit} octets"),
        )
    }

    /// 503 with `Retry-After`: the spool or the account data cannot take it now.
    pub fn unavailable(detail: impl Into<String>) -> Problem {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Try again later",
            detail,
        )
        .retry_after(Duration::from_secs(60))
    }

    pub fn retry_after(mut self, after: Duration) -> Problem {
        self.retry_after = Some(after);
        self
    }

    pub fn response(&self) -> Response<Full<Bytes>> {
        let body = Body {
            kind: format!("{TYPE_BASE}{}", self.kind),
            title: self.title,
            status: self.status.as_u16(),
            detail: &self.detail,
            errors: &self.errors,
        };
        // Serialising plain strings and numbers cannot fail.
        let json = serde_json::to_vec(&body).unwrap_or_default();
        let mut response = Response::new(Full::new(Bytes::from(json)));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(after) = self.retry_after {
            let secs = after.as_secs().max(1);
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                headers.insert(RETRY_AFTER, v);
            }
        }
        if let Some(allow) = self.allow {
            headers.insert(ALLOW, HeaderValue::from_static(allow));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"way2mail\""),
            );
        }
        response
    }
}
