//! One client connection on its own thread: read a line, answer it, repeat.
//!
//! A line may take at most `idle_timeout` to arrive, counted from the moment the
//! previous answer was written: that closes a peer that never speaks and one that
//! trickles a byte at a time alike. A line longer than
//! [`MAX_REQUEST_BYTES`](crate::protocol::MAX_REQUEST_BYTES) is never buffered in
//! full: the peer gets `request_too_large` and the connection is closed, because
//! the rest of that line cannot be told apart from the next request. Every other
//! error is answered and the connection goes on.

use std::io::{self, BufRead, BufReader, ErrorKind, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use crate::protocol::{ErrorCode, Response, ResponseEnvelope, MAX_REQUEST_BYTES};
use crate::service::{Caller, Service, StreamOut};
use crate::stream::FrameWriter;

use super::request::{self, error_envelope};

/// How a connection ended, for the log.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// The peer closed its side (or the daemon is stopping and shut ours).
    Closed,
    IdleTimeout,
    TooLarge,
    /// Reading or writing failed (the peer vanished, or stopped reading).
    Io(ErrorKind),
}

/// One line read from the peer.
enum Line {
    Complete(Vec<u8>),
    TooLarge,
    Eof,
}

pub fn serve(
    stream: UnixStream,
    service: &Service,
    caller: &Caller,
    service_uids: &[u32],
    idle_timeout: Duration,
) -> End {
    let mut writer = match stream.try_clone() {
        Ok(writer) => writer,
        Err(e) => return End::Io(e.kind()),
    };
    // A peer that stops reading must not hold this thread forever either.
    if let Err(e) = writer.set_write_timeout(Some(idle_timeout)) {
        return End::Io(e.kind());
    }
    let mut reader = BufReader::with_capacity(8 * 1024, stream);
    loop {
        let deadline = Instant::now() + idle_timeout;
        let line = match read_line(&mut reader, deadline) {
            Ok(line) => line,
            Err(e) if is_timeout(&e) => return End::IdleTimeout,
            Err(e) => return End::Io(e.kind()),
        };
        let line = match line {
            Line::Eof => return End::Closed,
            Line::TooLarge => {
                let response = error_envelope(
                    0,
                    ErrorCode::RequestTooLarge,
                    format!(
                        "request line exceeds {MAX_REQUEST_BYTES} bytes; closing the connection"
                    ),
                );
                // The peer may already be gone; the connection closes either way.
                let _ = write_response(&mut writer, &response);
                return End::TooLarge;
            }
            Line::Complete(line) => line,
        };
        let line = trim_line(&line);
        if line.is_empty() {
            continue;
        }
        let started = Instant::now();
        let answered = match request::parse(line) {
            Ok(parsed) if parsed.streamed() => {
                match answer_streamed(service, caller, parsed, &writer, idle_timeout) {
                    Ok(answered) => answered,
                    Err(e) => return End::Io(e.kind()),
                }
            }
            Ok(parsed) => request::answer_parsed(service, caller, parsed),
            Err(answered) => answered,
        };
        request::log(&answered, caller, service_uids, started);
        if let Err(e) = write_response(&mut writer, &answered.response) {
            return End::Io(e.kind());
        }
    }
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
    let mut bytes = serde_json::to_vec(response).map_err(io::Error::other)?;
    bytes.push(b'\n');
    writer.write_all(&bytes)
}

/// Reads up to and including `\n`, never holding more than [`MAX_REQUEST_BYTES`].
/// Bytes after the newline stay buffered for the next call (pipelined requests).
fn read_line(reader: &mut BufReader<UnixStream>, deadline: Instant) -> io::Result<Line> {
    let mut line = Vec::new();
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(ErrorKind::TimedOut.into());
        }
        reader.get_ref().set_read_timeout(Some(remaining))?;
        let available = match reader.fill_buf() {
            Ok(available) => available,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            // A last line without its newline is still a request.
            return Ok(if line.is_empty() {
                Line::Eof
            } else {
                Line::Complete(line)
            });
        }
        let (take, done) = match available.iter().position(|&b| b == b'\n') {
            Some(at) => (at + 1, true),
            None => (available.len(), false),
        };
        if line.len() + take > MAX_REQUEST_BYTES {
            return Ok(Line::TooLarge);
        }
        line.extend_from_slice(&available[..take]);
        reader.consume(take);
        if done {
            return Ok(Line::Complete(line));
        }
    }
}

fn trim_line(line: &[u8]) -> &[u8] {
    let mut end = line.len();
    while end > 0 && matches!(line[end - 1], b'\n' | b'\r' | b' ' | b'\t') {
        end -= 1;
    }
    &line[..end]
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_of(input: &[u8]) -> Vec<Result<Vec<u8>, &'static str>> {
        let (mut a, b) = UnixStream::pair().expect("socketpair");
        let input = input.to_vec();
        let writer = std::thread::spawn(move || {
            let _ = a.write_all(&input);
        });
        let mut reader = BufReader::new(b);
        let mut out = Vec::new();
        loop {
            let deadline = Instant::now() + Duration::from_secs(5);
            match read_line(&mut reader, deadline).expect("read") {
                Line::Complete(l) => out.push(Ok(l)),
                Line::TooLarge => {
                    out.push(Err("too large"));
                    break;
                }
                Line::Eof => break,
            }
        }
        writer.join().expect("writer");
        out
    }

    #[test]
    fn lines_are_split_and_bounded() {
        assert_eq!(
            lines_of(b"a\nbc\n\nlast"),
            vec![
                Ok(b"a\n".to_vec()),
                Ok(b"bc\n".to_vec()),
                Ok(b"\n".to_vec()),
                Ok(b"last".to_vec())
            ]
        );
        let mut exact = vec![b'x'; MAX_REQUEST_BYTES - 1];
        exact.push(b'\n');
        assert_eq!(lines_of(&exact), vec![Ok(exact.clone())]);
        let mut over = vec![b'x'; MAX_REQUEST_BYTES];
        over.push(b'\n');
        assert_eq!(lines_of(&over), vec![Err("too large")]);
    }

    #[test]
    fn silence_times_out() {
        let (_a, b) = UnixStream::pair().expect("socketpair");
        let mut reader = BufReader::new(b);
        let deadline = Instant::now() + Duration::from_millis(50);
        let e = read_line(&mut reader, deadline).err().expect("timeout");
        assert!(is_timeout(&e), "{e}");
    }

    #[test]
    fn trims_line_ends() {
        assert_eq!(trim_line(b"{}\r\n"), b"{}");
        assert_eq!(trim_line(b" \n"), b"");
    }
}
