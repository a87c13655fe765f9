//! Streamed answers on the JSON-lines sockets (control's and the MTA's admin
//! socket), for results too large for one line: a tenant export, a backup.
//!
//! ```text
//!   -> request line
//!   <- {"v":1,"id":N,"ok":true,"result":{"kind":"stream", …}}      (or an error line)
//!   <- frame*: length (u32 BE, 1 ..= MAX_FRAME) || bytes
//!   <- 00 00 00 00                                                  end of frames
//!   <- the final response line: the result, or the error that cut the stream short
//! ```
//!
//! A reader never holds more than one frame; the final line says whether what came
//! before is complete, so a stream cut short by a failure is never mistaken for a
//! whole one.

use std::io::{self, BufRead, Read, Write};

/// Largest frame; writers split longer writes.
pub const MAX_FRAME: usize = 1 << 20;

/// Writes frames to the socket; buffers up to [`MAX_FRAME`] bytes.
pub struct FrameWriter<W: Write> {
    out: W,
    buf: Vec<u8>,
    /// Bytes handed to `write` so far (payload only).
    pub written: u64,
}

impl<W: Write> FrameWriter<W> {
    pub fn new(out: W) -> FrameWriter<W> {
        FrameWriter {
            out,
            buf: Vec::with_capacity(64 * 1024),
            written: 0,
        }
    }

    fn emit(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        // MAX_FRAME fits in u32.
        let len = self.buf.len() as u32;
        self.out.write_all(&len.to_be_bytes())?;
        self.out.write_all(&self.buf)?;
        self.buf.clear();
        Ok(())
    }

    /// Sends what is buffered and the end marker; returns the inner writer for the
    /// final line.
    pub fn finish(mut self) -> io::Result<W> {
        self.emit()?;
        self.out.write_all(&0u32.to_be_bytes())?;
        self.out.flush()?;
        Ok(self.out)
    }
}

impl<W: Write> Write for FrameWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = MAX_FRAME - self.buf.len();
        let n = data.len().min(room);
        self.buf.extend_from_slice(&data[..n]);
        self.written += n as u64;
        if self.buf.len() == MAX_FRAME {
            self.emit()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.emit()?;
        self.out.flush()
    }
}

/// Reads the frames of one stream as one byte stream; `read` returns 0 at the end
/// marker. Afterwards the final line follows on the underlying reader.
pub struct FrameReader<'a, R: BufRead> {
    input: &'a mut R,
    left: usize,
    done: bool,
}

impl<'a, R: BufRead> FrameReader<'a, R> {
    pub fn new(input: &'a mut R) -> FrameReader<'a, R> {
        FrameReader {
            input,
            left: 0,
            done: false,
        }
    }

    /// Whether the end marker was read.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Reads and discards the rest of the stream.
    pub fn drain(&mut self) -> io::Result<()> {
        io::copy(self, &mut io::sink()).map(|_| ())
    }
}

impl<R: BufRead> Read for FrameReader<'_, R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.done || out.is_empty() {
            return Ok(0);
        }
        if self.left == 0 {
            let mut len = [0u8; 4];
            self.input.read_exact(&mut len)?;
            let len = u32::from_be_bytes(len) as usize;
            if len == 0 {
                self.done = true;
                return Ok(0);
            }
            if len > MAX_FRAME {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("stream frame of {len} bytes (at most {MAX_FRAME})"),
                ));
            }
            self.left = len;
        }
        let want = out.len().min(self.left);
        let n = self.input.read(&mut out[..want])?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.left -= n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_split_large_writes() {
        let mut wire = Vec::new();
        let data: Vec<u8> = (0..(MAX_FRAME * 2 + 17)).map(|i| (i % 251) as u8).collect();
        {
            let mut w = FrameWriter::new(&mut wire);
            w.write_all(b"hello ").expect("write");
            w.write_all(&data).expect("write");
            assert_eq!(w.written, data.len() as u64 + 6);
            let out = w.finish().expect("finish");
            out.write_all(b"{\"final\":true}\n").expect("line");
        }
        let mut input = io::BufReader::new(wire.as_slice());
        let mut got = Vec::new();
        let mut r = FrameReader::new(&mut input);
        r.read_to_end(&mut got).expect("read");
        assert!(r.is_done());
        assert_eq!(&got[..6], b"hello ");
        assert_eq!(&got[6..], data.as_slice());
        let mut line = String::new();
        input.read_line(&mut line).expect("line");
        assert_eq!(line, "{\"final\":true}\n");
    }

    #[test]
    fn a_cut_or_oversized_stream_is_an_error() {
        let mut wire = Vec::new();
        wire.extend_from_slice(&10u32.to_be_bytes());
        wire.extend_from_slice(b"abc");
        let mut input = io::BufReader::new(wire.as_slice());
        assert!(FrameReader::new(&mut input)
            .read_to_end(&mut Vec::new())
            .is_err());
        let huge = ((MAX_FRAME + 1) as u32).to_be_bytes();
        let mut input = io::BufReader::new(&huge[..]);
        assert!(FrameReader::new(&mut input)
            .read_to_end(&mut Vec::new())
            .is_err());
    }
}
