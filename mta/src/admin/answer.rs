//! How every admin answer is written: one JSON line per response (`AdminResponse`:
//! the request's id, `ok`, a result or an error). The ops, the streamed ops'
//! opening and final lines, and the refusals of the connection and server layers
//! all go through here, so the socket has one answer format.

use std::io::{self, Write};

use way2mail_wire::mta_admin::{AdminResponse, AdminResult, VERSION};
use way2mail_wire::protocol::{ErrorBody, ErrorCode};

/// What an op answers: its result, or why it failed.
pub(super) type Answer = Result<AdminResult, ErrorBody>;

pub(super) fn failure(code: ErrorCode, message: impl Into<String>) -> ErrorBody {
    ErrorBody {
        code,
        message: message.into(),
    }
}

/// A spool failure as the peer sees it: the request may have taken effect in part.
pub(super) fn internal(what: &str, e: &way2mail_queue::Error) -> ErrorBody {
    failure(ErrorCode::Internal, format!("{what}: {e}"))
}

/// Writes one response line.
pub(super) fn write(out: &mut impl Write, id: u64, answer: Answer) -> io::Result<()> {
    let (ok, result, error) = match answer {
        Ok(result) => (true, Some(result), None),
        Err(error) => (false, None, Some(error)),
    };
    out.write_all(&response_line(&AdminResponse {
        v: VERSION,
        id,
        ok,
        result,
        error,
    }))
}

/// A response line (with its newline) carrying an error.
pub(super) fn error_line(id: u64, code: ErrorCode, message: String) -> Vec<u8> {
    response_line(&AdminResponse {
        v: VERSION,
        id,
        ok: false,
        result: None,
        error: Some(ErrorBody { code, message }),
    })
}

fn response_line(response: &AdminResponse) -> Vec<u8> {
    // Plain data (strings, numbers, enums without maps keyed by non-strings):
    // serializing it cannot fail.
    let mut line = serde_json::to_vec(response).unwrap_or_else(|_| {
        br#"{"v":1,"id":0,"ok":false,"error":{"code":"internal","message":"unencodable answer"}}"#
            .to_vec()
    });
    line.push(b'\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_one_response_each() {
        let line = error_line(7, ErrorCode::Forbidden, "no".into());
        assert_eq!(line.last(), Some(&b'\n'));
        let back: AdminResponse = serde_json::from_slice(&line).expect("parse");
        assert_eq!((back.id, back.ok), (7, false));
        assert_eq!(back.error.map(|e| e.code), Some(ErrorCode::Forbidden));
        let mut out = Vec::new();
        write(&mut out, 8, Ok(AdminResult::Stream)).expect("write");
        let back: AdminResponse = serde_json::from_slice(&out).expect("parse");
        assert_eq!((back.id, back.ok), (8, true));
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
    }
}
