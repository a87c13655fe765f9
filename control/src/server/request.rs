//! One request line in, one response envelope out: the checks the daemon makes
//! before the service sees anything. The order is fixed and documented in
//! docs/control-protocol.md: JSON at all (`bad_request`), the version
//! (`unsupported_version`), a known `op` (`unknown_op`), the argument types
//! (`bad_request`), then the service. The `id` is echoed whenever it can be read.

use std::time::Instant;

use serde_json::Value;

use crate::service::{Caller, Service};
use way2mail_wire::protocol::{
    ErrorBody, ErrorCode, RequestEnvelope, Response, ResponseEnvelope, VERSION,
};

/// Every operation name on the wire. `protocol::Request` is the definition; a
/// unit test keeps this list equal to it.
pub const OPS: &[&str] = &[
    "hello",
    "bootstrap",
    "login",
    "logout",
    "tenant.add",
    "tenant.list",
    "tenant.show",
    "tenant.update",
    "tenant.suspend",
    "tenant.resume",
    "tenant.resume_sending",
    "tenant.deliverability",
    "tenant.terminate",
    "tenant.retention",
    "tenant.hold",
    "tenant.erase",
    "tenant.receipt",
    "tenant.report",
    "tenant.export",
    "retention.run",
    "retention.show",
    "reputation.show",
    "reputation.check",
    "suppression.add",
    "suppression.list",
    "suppression.remove",
    "backup.create",
    "receipt.key",
    "queue.summary",
    "queue.list",
    "queue.show",
    "queue.hold",
    "queue.release",
    "queue.retry",
    "queue.bounce",
    "queue.delete",
    "domain.add",
    "domain.list",
    "domain.remove",
    "domain.show",
    "domain.dns",
    "domain.dmarc",
    "domain.verify",
    "domain.rotate_dkim",
    "domain.retire_dkim",
    "domain.override",
    "domain.bimi",
    "credential.add",
    "credential.list",
    "credential.revoke",
    "operator.add",
    "operator.list",
    "operator.role",
    "operator.remove",
    "incident.open",
    "incident.add_tenant",
    "incident.update",
    "incident.notify",
    "incident.close",
    "incident.list",
    "incident.show",
    "audit.list",
    "audit.verify",
    "snapshot.get",
    "retention.report",
    "api.call",
    "api.unsubscribe",
    "api.auto_suppress",
    "api.reputation_pause",
    "api.webhook_failing",
    "webhook.add",
    "webhook.list",
    "webhook.remove",
    "webhook.enable",
];

/// What the request log needs to know about one answered line.
#[derive(Debug)]
pub struct Answered {
    pub response: ResponseEnvelope,
    /// The op when the line named a known one.
    pub op: Option<&'static str>,
    pub has_token: bool,
}

pub fn error_envelope(id: u64, code: ErrorCode, message: impl Into<String>) -> ResponseEnvelope {
    ResponseEnvelope {
        v: VERSION,
        id,
        ok: false,
        result: None,
        error: Some(ErrorBody {
            code,
            message: message.into(),
        }),
    }
}

/// A request line that parsed.
#[derive(Debug)]
pub struct Parsed {
    pub id: u64,
    pub op: &'static str,
    pub has_token: bool,
    pub envelope: RequestEnvelope,
}

impl Parsed {
    /// Whether the answer is a stream of frames (`tenant.export`, `backup.create`).
    pub fn streamed(&self) -> bool {
        matches!(
            self.envelope.request,
            way2mail_wire::protocol::Request::TenantExport { .. }
                | way2mail_wire::protocol::Request::BackupCreate
        )
    }
}

/// The response line for request `id`'s result.
pub fn response_envelope(
    id: u64,
    result: Result<way2mail_wire::protocol::Response, ErrorBody>,
) -> ResponseEnvelope {
    match result {
        Ok(result) => ResponseEnvelope {
            v: VERSION,
            id,
            ok: true,
            result: Some(result),
            error: None,
        },
        Err(error) => ResponseEnvelope {
            v: VERSION,
            id,
            ok: false,
            result: None,
            error: Some(error),
        },
    }
}

/// Answers one request line (without its newline). Never panics on any input.
pub fn answer(service: &Service, caller: &Caller, line: &[u8]) -> Answered {
    match parse(line) {
        Ok(parsed) => answer_parsed(service, caller, parsed),
        Err(answered) => answered,
    }
}

/// Answers a parsed request (not a streamed one).
pub fn answer_parsed(service: &Service, caller: &Caller, parsed: Parsed) -> Answered {
    let Parsed {
        id,
        op,
        has_token,
        envelope,
    } = parsed;
    Answered {
        response: response_envelope(id, service.handle(caller, envelope)),
        op: Some(op),
        has_token,
    }
}

/// Parses one request line; a line that is no request gets its error answer.
// The error is the answer itself, built once and written once: boxing it would
// only add an allocation to every refused line.
#[allow(clippy::result_large_err)]
pub fn parse(line: &[u8]) -> Result<Parsed, Answered> {
    let refused = |id, code, message: String| Answered {
        response: error_envelope(id, code, message),
        op: None,
        has_token: false,
    };
    let value: Value = match serde_json::from_slice(line) {
        Ok(value) => value,
        Err(e) => {
            return Err(refused(
                0,
                ErrorCode::BadRequest,
                format!("malformed JSON: {e}"),
            ))
        }
    };
    let Some(object) = value.as_object() else {
        return Err(refused(
            0,
            ErrorCode::BadRequest,
            "a request must be a JSON object".into(),
        ));
    };
    let id = object.get("id").and_then(Value::as_u64).unwrap_or(0);
    let has_token = object.get("token").is_some_and(|t| !t.is_null());
    match object.get("v") {
        Some(v) if v.as_u64() == Some(u64::from(VERSION)) => {}
        Some(v) => {
            return Err(refused(
                id,
                ErrorCode::UnsupportedVersion,
                format!(
                    "protocol version {v} is not supported; this daemon speaks version {VERSION}"
                ),
            ))
        }
        None => {
            return Err(refused(
                id,
                ErrorCode::UnsupportedVersion,
                format!(
                    "the request has no protocol version `v`; this daemon speaks version {VERSION}"
                ),
            ))
        }
    }
    let op = match object.get("op") {
        Some(Value::String(name)) => match OPS.iter().find(|known| **known == name.as_str()) {
            Some(known) => *known,
            None => {
                return Err(refused(
                    id,
                    ErrorCode::UnknownOp,
                    format!("unknown op `{}`", printable(name)),
                ))
            }
        },
        Some(other) => {
            return Err(refused(
                id,
                ErrorCode::BadRequest,
                format!("`op` must be a string, not {}", json_kind(other)),
            ))
        }
        None => {
            return Err(refused(
                id,
                ErrorCode::BadRequest,
                "missing field `op`".into(),
            ))
        }
    };
    let envelope: RequestEnvelope = match serde_json::from_value(value) {
        Ok(envelope) => envelope,
        Err(e) => {
            return Err(Answered {
                response: error_envelope(id, ErrorCode::BadRequest, format!("{op}: {e}")),
                op: Some(op),
                has_token,
            })
        }
    };
    Ok(Parsed {
        id,
        op,
        has_token,
        envelope,
    })
}

/// Logs one answered request: op, actor kind, outcome, duration. Never the
/// arguments, the token or the reason, which may carry client data or secrets.
/// Counts it too (`way2mail_control_requests_total{op,outcome}`, the same two
/// static strings).
pub fn log(answered: &Answered, caller: &Caller, service_uids: &[u32], started: Instant) {
    let outcome = match &answered.response.error {
        None => "ok",
        Some(error) => code_name(error.code),
    };
    let op = answered.op.unwrap_or("-");
    crate::metrics::request(op, outcome);
    let actor = actor_kind(caller, answered.has_token, service_uids);
    let duration_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    let (uid, pid) = (caller.uid, caller.pid);
    macro_rules! line {
        ($level:ident) => {
            tracing::$level!(op, actor, uid, pid, outcome, duration_us, "request")
        };
    }
    // The MTA asks every second or so; only a changed snapshot is news.
    if matches!(
        answered.response.result,
        Some(Response::SnapshotUnchanged { .. })
    ) {
        line!(debug);
    } else {
        line!(info);
    }
}

/// For the request log: what kind of actor sent a request, without its token.
pub fn actor_kind(caller: &Caller, has_token: bool, service_uids: &[u32]) -> &'static str {
    if has_token {
        "operator"
    } else if caller.uid == 0 {
        "root"
    } else if service_uids.contains(&caller.uid) {
        "service"
    } else {
        "uid"
    }
}

fn code_name(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::BadRequest => "bad_request",
        ErrorCode::UnsupportedVersion => "unsupported_version",
        ErrorCode::UnknownOp => "unknown_op",
        ErrorCode::RequestTooLarge => "request_too_large",
        ErrorCode::Unauthenticated => "unauthenticated",
        ErrorCode::Forbidden => "forbidden",
        ErrorCode::ReasonRequired => "reason_required",
        ErrorCode::LoginFailed => "login_failed",
        ErrorCode::NotFound => "not_found",
        ErrorCode::Unavailable => "unavailable",
        ErrorCode::AlreadyExists => "already_exists",
        ErrorCode::Invalid => "invalid",
        ErrorCode::Conflict => "conflict",
        ErrorCode::Internal => "internal",
        ErrorCode::Busy => "busy",
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// An op name from the wire, shortened and without control characters, so an
/// error message cannot be used to echo arbitrary bytes back.
fn printable(name: &str) -> String {
    let mut out: String = name
        .chars()
        .take(64)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if name.chars().count() > 64 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use way2mail_wire::protocol::Request;

    #[test]
    fn ops_list_matches_the_protocol() {
        // serde names every variant it expects when it meets an unknown one.
        let e = serde_json::from_str::<Request>(r#"{"op":"no.such.op"}"#).expect_err("unknown");
        let message = e.to_string();
        let expected: Vec<&str> = message.split('`').skip(3).step_by(2).collect();
        assert_eq!(expected, OPS, "{message}");
    }

    #[test]
    fn code_names_are_the_wire_names() {
        for code in [
            ErrorCode::BadRequest,
            ErrorCode::UnsupportedVersion,
            ErrorCode::UnknownOp,
            ErrorCode::RequestTooLarge,
            ErrorCode::Unauthenticated,
            ErrorCode::Forbidden,
            ErrorCode::ReasonRequired,
            ErrorCode::LoginFailed,
            ErrorCode::NotFound,
            ErrorCode::AlreadyExists,
            ErrorCode::Invalid,
            ErrorCode::Conflict,
            ErrorCode::Internal,
        ] {
            let wire = serde_json::to_value(code).expect("serialize");
            assert_eq!(wire.as_str(), Some(code_name(code)));
        }
    }

    #[test]
    fn printable_cuts_and_masks() {
        assert_eq!(printable("a\nb"), "a?b");
        assert_eq!(printable(&"x".repeat(100)).chars().count(), 65);
    }
}
