//! A blocking client for the control socket: one connection, requests answered in
//! order. Used by the `way2mail` CLI, by the MTA's snapshot follower (on its own
//! thread) and by tests.

use std::io::{BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

pub use crate::answer::ClientError;
use crate::answer::{connect_lines, read_answer};
use crate::protocol::{Request, RequestEnvelope, Response, MAX_REQUEST_BYTES, VERSION};

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
