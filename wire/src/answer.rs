//! Answer lines on both JSON-lines sockets (control's and the MTA's admin socket):
//! the error body every refusal carries, and how a blocking client connects and reads
//! the answer to its request. `client.rs` (control) and `mta_admin.rs` (the MTA) build
//! their requests on this.

use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Why a request failed: a stable machine-readable `code` and a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not JSON, or JSON that is not a request (missing or wrongly typed fields).
    BadRequest,
    /// `v` is not a version this daemon speaks.
    UnsupportedVersion,
    /// `op` is not an operation this daemon knows.
    UnknownOp,
    /// The request line exceeds the socket's longest request line (`MAX_REQUEST_BYTES`).
    RequestTooLarge,
    /// No valid session token (missing, unknown or expired), and the peer
    /// credentials alone do not allow this operation.
    Unauthenticated,
    /// The caller's role does not allow this operation.
    Forbidden,
    /// The role requires a `reason` for this operation and none was given.
    ReasonRequired,
    /// Wrong password or TOTP code at `login`.
    LoginFailed,
    NotFound,
    AlreadyExists,
    /// Arguments well-formed but not acceptable (bad domain, bad role, empty name, …).
    Invalid,
    /// The request is valid but the state forbids it (e.g. bootstrap when an admin exists).
    Conflict,
    /// The daemon failed (storage); the request may or may not have taken effect.
    Internal,
    /// The daemon is at its connection limit; try again shortly.
    Busy,
    /// Another daemon the request needs (the MTA's admin socket) cannot be reached.
    Unavailable,
}

/// Responses can be much larger than requests (audit lists, snapshots).
const MAX_RESPONSE_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    #[error("cannot connect to the control socket {path}: {source}")]
    Connect { path: PathBuf, source: io::Error },
    #[error("control socket I/O failed: {0}")]
    Io(#[from] io::Error),
    #[error("the control daemon closed the connection")]
    Closed,
    #[error("unexpected answer from the control daemon: {0}")]
    Protocol(String),
    /// The daemon answered with an error.
    #[error("{}", .0.message)]
    Remote(ErrorBody),
}

/// Connects to a JSON-lines socket: a buffered reader and a writer on one stream,
/// with `timeout` applied to every read and write.
pub(crate) fn connect_lines(
    path: &Path,
    timeout: Duration,
) -> Result<(BufReader<UnixStream>, UnixStream), ClientError> {
    let stream = UnixStream::connect(path).map_err(|source| ClientError::Connect {
        path: path.to_owned(),
        source,
    })?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let writer = stream.try_clone()?;
    Ok((BufReader::new(stream), writer))
}

/// A response line of either socket (control's `ResponseEnvelope`, the MTA's
/// `AdminResponse`): the same fields around a different `result`.
#[derive(Deserialize)]
struct Answer<T> {
    id: u64,
    ok: bool,
    // A missing `result` or `error` is `None` (serde's rule for `Option`).
    result: Option<T>,
    error: Option<ErrorBody>,
}

/// Reads one response line and returns the result it carries for request `id`, or
/// the daemon's error.
pub(crate) fn read_answer<T: serde::de::DeserializeOwned>(
    reader: &mut BufReader<UnixStream>,
    id: u64,
) -> Result<T, ClientError> {
    let mut line = Vec::new();
    let n = reader
        .take(MAX_RESPONSE_BYTES)
        .read_until(b'\n', &mut line)?;
    if n == 0 {
        return Err(ClientError::Closed);
    }
    if line.last() != Some(&b'\n') {
        return Err(ClientError::Protocol(
            "response line too long or cut".into(),
        ));
    }
    let answer: Answer<T> = serde_json::from_slice(&line)
        .map_err(|e| ClientError::Protocol(format!("cannot parse the answer: {e}")))?;
    if answer.id != id {
        return Err(ClientError::Protocol(format!(
            "answer for request {} while waiting for {id}",
            answer.id
        )));
    }
    match (answer.ok, answer.result, answer.error) {
        (true, Some(result), _) => Ok(result),
        (false, _, Some(error)) => Err(ClientError::Remote(error)),
        _ => Err(ClientError::Protocol(
            "answer without result or error".into(),
        )),
    }
}
