//! The message buffer: the `Received:` header we prepend, then the content as the
//! receivers pass it on (DATA unstuffed; DATA and BDAT with every line end a CRLF).
//! Writing the header first means the stored body is built once and never copied.
//!
//! It enforces the size limit (past it, nothing more is stored but the count goes on,
//! so the reply can come after the end of data) and counts `Received:` headers in the
//! header section for loop detection, both incrementally, whatever the chunking.

use crate::MessageId;

/// A lying `SIZE=` must not make us allocate: the first reservation is capped.
const MAX_INITIAL_RESERVE: u64 = 256 * 1024;

/// The first time a buffer without a size hint has to grow, it grows to this:
/// most messages fit, and are never moved by a reallocation.
const FIRST_GROWTH: usize = 32 * 1024;

#[derive(Debug)]
pub(super) struct Body {
    pub id: MessageId,
    buf: Vec<u8>,
    header_len: usize,
    content_len: u64,
    max: u64,
    oversize: bool,
    scan: HeaderScan,
    /// Hand the buffer out once it holds this much (see [`Body::take_spill`]).
    spill_at: Option<usize>,
    /// Octets handed out so far.
    spilled: u64,
}

impl Body {
    pub fn new(id: MessageId, received: String, max: u64, size_hint: Option<u64>) -> Body {
        let header_len = received.len();
        let mut buf = received.into_bytes();
        let reserve = size_hint.unwrap_or(0).min(max).min(MAX_INITIAL_RESERVE);
        buf.reserve(usize::try_from(reserve).unwrap_or(0));
        Body {
            id,
            buf,
            header_len,
            content_len: 0,
            max,
            oversize: false,
            scan: HeaderScan::default(),
            spill_at: None,
            spilled: 0,
        }
    }

    /// Hands content out as it arrives once more than `at` octets are held.
    pub fn spilling_at(mut self, at: Option<usize>) -> Body {
        self.spill_at = at;
        self
    }

    /// The content held so far (the `Received:` header first), when it has grown
    /// past the spill size: the caller stores it, and the message is what it took
    /// followed by what `into_bytes` gives at the end. Nothing once the message is
    /// over the size limit: it will be refused.
    pub fn take_spill(&mut self) -> Option<Vec<u8>> {
        let at = self.spill_at?;
        if self.oversize || self.buf.len() < at {
            return None;
        }
        self.spilled += self.buf.len() as u64;
        Some(std::mem::replace(
            &mut self.buf,
            Vec::with_capacity(at + at / 8),
        ))
    }

    /// Appends content; past the limit the stored content is dropped and only counted.
    pub fn store(&mut self, bytes: &[u8]) {
        self.content_len = self.content_len.saturating_add(bytes.len() as u64);
        if self.oversize {
            return;
        }
        if self.content_len > self.max {
            self.oversize = true;
            // Whatever was handed out already is the caller's to drop.
            self.buf
                .truncate(self.header_len.saturating_sub(self.spilled as usize));
            self.buf.shrink_to_fit();
            return;
        }
        self.grow_for(bytes.len());
        self.buf.extend_from_slice(bytes);
        self.scan.push(bytes);
    }

    /// Makes room for `more` octets in as few steps as possible: each reallocation
    /// moves everything held so far. Past [`FIRST_GROWTH`], a spilling buffer goes
    /// straight to its spill size (it is handed out there), others double.
    fn grow_for(&mut self, more: usize) {
        let need = self.buf.len() + more;
        if need <= self.buf.capacity() {
            return;
        }
        let target = if need <= FIRST_GROWTH {
            FIRST_GROWTH
        } else if let Some(at) = self.spill_at {
            // A read may take it a little past the spill size before it is handed out.
            need.max(at + at / 8)
        } else {
            need.max(self.buf.capacity() * 2)
        };
        self.buf.reserve_exact(target - self.buf.len());
    }

    pub fn oversize(&self) -> bool {
        self.oversize
    }

    /// `Received:` headers the client sent (ours is not counted).
    pub fn received_headers(&self) -> usize {
        self.scan.received
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }
}

/// Incremental scan of the header section: counts lines starting with `Received:`
/// (case-insensitive) until the first empty line. Lines end at LF, so a header
/// section with bare LFs is still counted: loop detection errs on the side of seeing.
#[derive(Debug, Default)]
struct HeaderScan {
    done: bool,
    /// Octets seen in the current line.
    col: usize,
    /// The current line so far is a prefix of `received:`.
    matching: bool,
    /// The current line so far is just `\r`.
    only_cr: bool,
    received: usize,
}

const RECEIVED: &[u8] = b"received:";

impl HeaderScan {
    fn push(&mut self, bytes: &[u8]) {
        let mut i = 0;
        while i < bytes.len() {
            if self.done {
                return;
            }
            if self.col > 0 && !self.matching && !self.only_cr {
                // Nothing more in this line counts: on to its end.
                match memchr::memchr(b'\n', &bytes[i..]) {
                    Some(at) => {
                        self.col += at;
                        i += at;
                    }
                    None => {
                        self.col += bytes.len() - i;
                        return;
                    }
                }
            }
            let b = bytes[i];
            i += 1;
            if b == b'\n' {
                self.done = self.col == 0 || (self.col == 1 && self.only_cr);
                self.col = 0;
                continue;
            }
            if self.col == 0 {
                self.matching = true;
                self.only_cr = b == b'\r';
            } else {
                self.only_cr = false;
            }
            if self.matching && self.col < RECEIVED.len() {
                if b.to_ascii_lowercase() != RECEIVED[self.col] {
                    self.matching = false;
                } else if self.col + 1 == RECEIVED.len() {
                    self.received += 1;
                    self.matching = false;
                }
            }
            self.col += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(chunks: &[&[u8]]) -> usize {
        let mut s = HeaderScan::default();
        for c in chunks {
            s.push(c);
        }
        s.received
    }

    #[test]
    fn counts_only_the_header_section() {
        let msg = b"Received: a\r\nRECEIVED: b\r\n\tReceived: folded\r\nX-Received: c\r\nreceived:d\r\n\r\nReceived: body\r\n";
        assert_eq!(count(&[msg]), 3);
        for split in 0..msg.len() {
            assert_eq!(
                count(&[&msg[..split], &msg[split..]]),
                3,
                "split at {split}"
            );
        }
        assert_eq!(count(&[b"Received: a\n\nReceived: b\n"]), 1);
        assert_eq!(count(&[b"Receive: a\r\n"]), 0);
    }

    /// The header section's `Received:` lines counted the plain way: lines end at
    /// LF, the section at the first line that is empty or only a CR.
    fn reference(msg: &[u8]) -> usize {
        let mut n = 0;
        for line in msg.split(|&b| b == b'\n') {
            if line.is_empty() || line == b"\r" {
                break;
            }
            n += usize::from(line.len() >= 9 && line[..9].eq_ignore_ascii_case(b"received:"));
        }
        n
    }

    #[test]
    fn counts_as_the_plain_way_does_in_any_pieces() {
        let alphabet = b"ReceivdRECEIVD:x \r\n\n";
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let len = (next() % 48) as usize;
            let mut msg: Vec<u8> = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            if next() % 2 == 0 {
                msg.splice(0..0, b"Received: x\r\n".iter().copied());
            }
            let a = (next() as usize) % (msg.len() + 1);
            let b = a + (next() as usize) % (msg.len() - a + 1);
            assert_eq!(
                count(&[&msg[..a], &msg[a..b], &msg[b..]]),
                reference(&msg),
                "{:?} split at {a} and {b}",
                String::from_utf8_lossy(&msg)
            );
        }
    }

    #[test]
    fn size_limit_stops_storing() {
        let mut b = Body::new(MessageId::generate(), "R\r\n".into(), 5, Some(u64::MAX));
        b.store(b"abc");
        b.store(b"de");
        assert!(!b.oversize());
        b.store(b"f");
        assert!(b.oversize());
        b.store(b"more");
        assert_eq!(b.into_bytes(), b"R\r\n");
    }
}
