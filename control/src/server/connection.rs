//! One client connection on its own thread: read a line, answer it, repeat.
//!
//! A line may take at most `idle_timeout` to arrive, counted from the moment the
//! previous answer was written: that closes a peer that never speaks and one that
//! trickles a byte at a time alike. A line longer than
//! [`MAX_REQUEST_BYTES`](way2mail_wire::protocol::MAX_REQUEST_BYTES) is never buffered in
//! full: the peer gets `request_too_large` and the connection is closed, because
//! the rest of that line cannot be told apart from the next request. Every other
//! error is answered and the connection goes on.

use std::io::{self, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use crate::service::{Caller, Service, StreamOut};
use way2mail_wire::protocol::{ErrorCode, Response, ResponseEnvelope, MAX_REQUEST_BYTES};
use way2mail_wire::stream::FrameWriter;

use super::request::{self, error_envelope};

use way2mail_daemon::thread_server::serve_lines;
pub use way2mail_daemon::thread_server::End;

pub fn serve(
    stream: UnixStream,
    service: &Service,
    caller: &Caller,
    service_uids: &[u32],
    idle_timeout: Duration,
) -> End {
    let too_large = || {
        let response = error_envelope(
            0,
            ErrorCode::RequestTooLarge,
            format!("request line exceeds {MAX_REQUEST_BYTES} bytes; closing the connection"),
        );
        response_bytes(&response)
    };
    serve_lines(
        stream,
        idle_timeout,
        MAX_REQUEST_BYTES,
        too_large,
        |line, writer| {
            let started = Instant::now();
            let answered = match request::parse(line) {
                Ok(parsed) if parsed.streamed() => {
                    answer_streamed(service, caller, parsed, writer, idle_timeout)?
                }
                Ok(parsed) => request::answer_parsed(service, caller, parsed),
                Err(answered) => answered,
            };
            request::log(&answered, caller, service_uids, started);
            write_response(writer, &answered.response)
        },
    )
}

/// A streamed answer's sink: the first line, then frames.
struct Streaming {
    line: UnixStream,
    id: u64,
    frames: Option<FrameWriter<UnixStream>>,
}

impl Write for Streaming {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        match &mut self.frames {
            Some(f) => f.write(data),
            None => Err(io::Error::other("the stream has not started")),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.frames {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

impl StreamOut for Streaming {
    fn start(&mut self) -> io::Result<()> {
        if self.frames.is_none() {
            let first = request::response_envelope(self.id, Ok(Response::Stream));
            write_response(&mut self.line, &first)?;
            self.frames = Some(FrameWriter::new(self.line.try_clone()?));
        }
        Ok(())
    }
}

/// Answers a streamed request. Returns the final line (written by the caller);
/// the frames, when the stream started, are ended first. A large answer may take
/// long to read: the peer gets the idle timeout per write, not for the whole.
fn answer_streamed(
    service: &Service,
    caller: &Caller,
    parsed: request::Parsed,
    writer: &UnixStream,
    idle_timeout: Duration,
) -> io::Result<request::Answered> {
    let request::Parsed {
        id,
        op,
        has_token,
        envelope,
    } = parsed;
    let line = writer.try_clone()?;
    line.set_write_timeout(Some(idle_timeout))?;
    let mut out = Streaming {
        line,
        id,
        frames: None,
    };
    let result = service.handle_stream(caller, envelope, &mut out);
    if let Some(frames) = out.frames.take() {
        frames.finish()?;
    }
    Ok(request::Answered {
        response: request::response_envelope(id, result),
        op: Some(op),
        has_token,
    })
}

fn write_response(writer: &mut UnixStream, response: &ResponseEnvelope) -> io::Result<()> {
    writer.write_all(&response_bytes(response))
}

/// A response line with its newline.
fn response_bytes(response: &ResponseEnvelope) -> Vec<u8> {
    // Plain data: serializing it cannot fail; should it, the peer still gets a line.
    let mut bytes = serde_json::to_vec(response).unwrap_or_else(|_| {
        br#"{"v":1,"id":0,"ok":false,"error":{"code":"internal","message":"unencodable answer"}}"#
            .to_vec()
    });
    bytes.push(b'\n');
    bytes
}
