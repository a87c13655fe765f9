//! A blocking client for the control socket: one connection, requests answered in
//! order. Used by the `way2mail` CLI, by the MTA's snapshot follower (on its own
//! thread) and by tests.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::protocol::{ErrorBody, Request, RequestEnvelope, Response, MAX_REQUEST_BYTES, VERSION};

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

/// Per-request credentials: an operator's session token and a reason.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    pub token: Option<String>,
    pub reason: Option<String>,
}

#[derive(Debug)]
pub struct ControlClient {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    next_id: u64,
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

impl ControlClient {
    /// Connects, with `timeout` applied to every later read and write.
    pub fn connect(path: &Path, timeout: Duration) -> Result<ControlClient, ClientError> {
        let (reader, writer) = connect_lines(path, timeout)?;
        Ok(ControlClient {
            reader,
            writer,
            next_id: 1,
        })
    }

    /// Sends one request and waits for its response.
    pub fn call(&mut self, request: Request, auth: &Auth) -> Result<Response, ClientError> {
        let id = self.send(request, auth)?;
        self.answer(id)
    }

    /// Sends a streamed request (`tenant.export`, `backup.create`), copies the
    /// streamed bytes into `sink`, and returns the final answer. An error answer
    /// before the stream leaves `sink` untouched; one after it means what `sink`
    /// got is incomplete.
    pub fn call_stream(
        &mut self,
        request: Request,
        auth: &Auth,
        sink: &mut dyn Write,
    ) -> Result<Response, ClientError> {
        let id = self.send(request, auth)?;
        match self.answer(id)? {
            Response::Stream => {}
            other => {
                return Err(ClientError::Protocol(format!(
                    "expected a stream, got {other:?}"
                )))
            }
        }
        let mut frames = crate::stream::FrameReader::new(&mut self.reader);
        std::io::copy(&mut frames, sink)?;
        self.answer(id)
    }

    fn send(&mut self, request: Request, auth: &Auth) -> Result<u64, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        let envelope = RequestEnvelope {
            v: VERSION,
            id,
            token: auth.token.clone(),
            reason: auth.reason.clone(),
            request,
        };
        let mut line = serde_json::to_vec(&envelope)
            .map_err(|e| ClientError::Protocol(format!("cannot encode request: {e}")))?;
        line.push(b'\n');
        if line.len() > MAX_REQUEST_BYTES {
            return Err(ClientError::Protocol(format!(
                "request of {} bytes exceeds the {MAX_REQUEST_BYTES}-byte limit",
                line.len()
            )));
        }
        self.writer.write_all(&line)?;
        Ok(id)
    }

    fn answer(&mut self, id: u64) -> Result<Response, ClientError> {
        read_answer(&mut self.reader, id)
    }
}

/// A response line of either socket (control's `ResponseEnvelope`, the MTA's
/// `AdminResponse`): the same fields around a different `result`.
#[derive(serde::Deserialize)]
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
