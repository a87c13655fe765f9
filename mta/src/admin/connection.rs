//! One admin connection on its own thread: read a line, answer it, repeat.
//!
//! As on control's socket: a line may take at most `idle_timeout` to arrive,
//! counted from the previous answer (a silent peer and one trickling bytes are
//! closed alike); a line longer than [`MAX_REQUEST_BYTES`] is never buffered whole:
//! the peer gets `request_too_large` and is closed, since the rest of that line
//! cannot be told from the next request. Every other error is answered and the
//! connection goes on.

use std::io::{BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use way2mail_daemon::lines::{read_line, Line};
use way2mail_daemon::thread_server::{serve_lines, End};
use way2mail_daemon::Caller;
use way2mail_wire::mta_admin::MAX_REQUEST_BYTES;
use way2mail_wire::protocol::ErrorCode;

use super::answer::error_line;
use super::ops::Ops;

/// How long a refused peer has to send the request it came with, so that its
/// answer can carry that request's id.
const REFUSAL_WAIT: Duration = Duration::from_secs(1);

pub fn serve(stream: UnixStream, ops: &Ops, caller: &Caller, idle_timeout: Duration) -> End {
    let too_large = || {
        error_line(
            0,
            ErrorCode::RequestTooLarge,
            format!("request line exceeds {MAX_REQUEST_BYTES} bytes; closing the connection"),
        )
    };
    serve_lines(
        stream,
        idle_timeout,
        MAX_REQUEST_BYTES,
        too_large,
        |line, writer| ops.answer(line, caller, writer),
    )
}

/// Answers a peer whose uid may not use the socket with one `forbidden` line (for
/// the request it sent, if it sent one within a second) and closes.
pub fn forbid(stream: UnixStream, caller: &Caller) {
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let _ = writer.set_write_timeout(Some(REFUSAL_WAIT));
    let mut reader = BufReader::new(stream);
    let id = match read_line(
        &mut reader,
        Instant::now() + REFUSAL_WAIT,
        MAX_REQUEST_BYTES,
    ) {
        Ok(Line::Complete(line)) => request_id(&line),
        _ => 0,
    };
    let line = error_line(
        id,
        ErrorCode::Forbidden,
        format!(
            "uid {} may not use the MTA's admin socket (admin.allowed_uids)",
            caller.uid
        ),
    );
    let _ = writer.write_all(&line);
}

/// The `id` of a request line, when it has one.
fn request_id(line: &[u8]) -> u64 {
    serde_json::from_slice::<serde_json::Value>(line)
        .ok()
        .and_then(|v| v.get("id").and_then(serde_json::Value::as_u64))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_echoed() {
        assert_eq!(request_id(br#"{"v":1,"id":7,"op":"hello"}"#), 7);
        assert_eq!(request_id(b"not json"), 0);
    }
}
