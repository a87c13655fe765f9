//! Request lines on both JSON-lines sockets (control's and the MTA's admin
//! socket): one line at a time, never holding more than the socket's limit, within
//! a deadline, so that a peer that never speaks and one that trickles a byte at a
//! time are closed alike.

use std::io::{self, BufRead, BufReader, ErrorKind};
use std::os::unix::net::UnixStream;
use std::time::Instant;

/// One line read from the peer.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    Complete(Vec<u8>),
    /// Longer than the limit: the rest cannot be told apart from the next request.
    TooLarge,
    Eof,
}

/// Reads up to and including `\n`, never holding more than `max` bytes. Bytes
/// after the newline stay buffered for the next call (pipelined requests).
pub fn read_line(
    reader: &mut BufReader<UnixStream>,
    deadline: Instant,
    max: usize,
) -> io::Result<Line> {
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
        if line.len() + take > max {
            return Ok(Line::TooLarge);
        }
        line.extend_from_slice(&available[..take]);
        reader.consume(take);
        if done {
            return Ok(Line::Complete(line));
        }
    }
}

/// The line without its end and trailing blanks.
pub fn trim_line(line: &[u8]) -> &[u8] {
    let mut end = line.len();
    while end > 0 && matches!(line[end - 1], b'\n' | b'\r' | b' ' | b'\t') {
        end -= 1;
    }
    &line[..end]
}

/// A read that ran out of time.
pub fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::time::Duration;

    const MAX: usize = 4096;

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
            match read_line(&mut reader, deadline, MAX).expect("read") {
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
        let mut exact = vec![b'x'; MAX - 1];
        exact.push(b'\n');
        assert_eq!(lines_of(&exact), vec![Ok(exact.clone())]);
        let mut over = vec![b'x'; MAX];
        over.push(b'\n');
        assert_eq!(lines_of(&over), vec![Err("too large")]);
    }

    #[test]
    fn silence_times_out() {
        let (_a, b) = UnixStream::pair().expect("socketpair");
        let mut reader = BufReader::new(b);
        let deadline = Instant::now() + Duration::from_millis(50);
        let e = read_line(&mut reader, deadline, MAX).expect_err("timeout");
        assert!(is_timeout(&e), "{e}");
    }

    #[test]
    fn trims_line_ends() {
        assert_eq!(trim_line(b"{}\r\n"), b"{}");
        assert_eq!(trim_line(b" \n"), b"");
    }
}
