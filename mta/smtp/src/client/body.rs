//! The message content on the wire. DATA needs dot-stuffing (RFC 5321 §4.5.2) and a
//! final CRLF before the `.` terminator; BDAT sends the octets with no stuffing.
//!
//! Either way nothing leaves with a bare CR or a bare LF: each becomes CRLF, whatever
//! the spool holds (mail queued before the receivers normalised line ends, a bounce
//! built from such mail). A next hop that took a bare CR or LF as a line end could
//! otherwise see a line `.` that we did not mean as the end of data (the SMTP
//! smuggling family of bugs). A line starts after every line end so normalised, and
//! every line that starts with `.` is stuffed. The size a BDAT announces counts the
//! octets as written.

use crate::line_ends::{self, Normalizer};

/// Writes message content in pieces, as DATA (stuffed, terminated) or as the
/// octets of one BDAT: the same octets whether the content comes whole or in
/// chunks split anywhere, so that a body can be streamed from the spool.
#[derive(Debug)]
pub(crate) struct Encoder {
    normalizer: Normalizer,
    /// DATA: dot-stuffing and the terminator. BDAT: neither.
    data: bool,
    /// The next octet out starts a line.
    line_start: bool,
    /// Nothing was written yet.
    empty: bool,
}

impl Encoder {
    pub(crate) fn data() -> Encoder {
        Encoder {
            normalizer: Normalizer::default(),
            data: true,
            line_start: true,
            empty: true,
        }
    }

    pub(crate) fn bdat() -> Encoder {
        Encoder {
            data: false,
            ..Encoder::data()
        }
    }

    /// Appends the next piece of the content.
    pub(crate) fn push(&mut self, piece: &[u8], out: &mut Vec<u8>) {
        let (data, line_start, empty) = (self.data, &mut self.line_start, &mut self.empty);
        let mut sink = |run: &[u8]| {
            if run.is_empty() {
                return;
            }
            *empty = false;
            if !data {
                out.extend_from_slice(run);
                return;
            }
            // Runs are normalised: every LF ends a line, and starts the next.
            let mut rest = run;
            while !rest.is_empty() {
                if *line_start && rest[0] == b'.' {
                    out.push(b'.');
                }
                match memchr::memchr(b'\n', rest) {
                    Some(p) => {
                        out.extend_from_slice(&rest[..=p]);
                        rest = &rest[p + 1..];
                        *line_start = true;
                    }
                    None => {
                        out.extend_from_slice(rest);
                        rest = &[];
                        *line_start = false;
                    }
                }
            }
        };
        self.normalizer.push(piece, &mut sink);
    }

    /// The content is complete: for DATA, the final CRLF when the content did not
    /// end a line, and the terminator.
    pub(crate) fn finish(mut self, out: &mut Vec<u8>) {
        let mut tail = Vec::new();
        {
            let mut sink = |run: &[u8]| tail.extend_from_slice(run);
            self.normalizer.finish(&mut sink);
        }
        if !tail.is_empty() {
            self.empty = false;
            out.extend_from_slice(&tail);
            self.line_start = tail.ends_with(b"\n");
        }
        if self.data {
            if !self.line_start || self.empty {
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b".\r\n");
        }
    }
}

/// What sending a body needs to know before it starts (the size BDAT and SIZE
/// announce, whether it needs 8BITMIME), learnt from a pass over its pieces.
#[derive(Debug, Default)]
pub struct ContentScan {
    normalizer: Normalizer,
    size: usize,
    eight_bit: bool,
}

impl ContentScan {
    pub fn push(&mut self, piece: &[u8]) {
        self.eight_bit |= !piece.is_ascii();
        let size = &mut self.size;
        self.normalizer
            .push(piece, &mut |run: &[u8]| *size += run.len());
    }

    /// The content's description, for [`crate::client::Content::Streamed`].
    pub fn finish(mut self) -> super::StreamedContent {
        let size = &mut self.size;
        self.normalizer.finish(&mut |run: &[u8]| *size += run.len());
        super::StreamedContent {
            size: self.size,
            seven_bit: !self.eight_bit,
        }
    }
}

/// Appends `body` as DATA content, terminator included.
pub(super) fn write_data(body: &[u8], out: &mut Vec<u8>) {
    // Stuffing adds one octet per dotted line; most bodies have none or few.
    out.reserve(body.len() + 16);
    let mut e = Encoder::data();
    e.push(body, out);
    e.finish(out);
}

/// The octet count a BDAT of `body` announces: the body with CRLF line ends only.
pub(super) fn bdat_size(body: &[u8]) -> usize {
    line_ends::normalized_len(body)
}

/// Appends `body` as the content of one BDAT, [`bdat_size`] octets.
pub(super) fn write_bdat(body: &[u8], out: &mut Vec<u8>) {
    line_ends::extend_normalized(body, out);
}

/// True when the body can go to a peer without 8BITMIME unchanged.
pub(super) fn is_seven_bit(body: &[u8]) -> bool {
    body.is_ascii()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn data(body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        write_data(body, &mut out);
        out
    }

    fn bdat(body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        write_bdat(body, &mut out);
        assert_eq!(out.len(), bdat_size(body), "{body:?}");
        out
    }

    #[test]
    fn stuffing() {
        assert_eq!(data(b".a\r\nb\r\n"), b"..a\r\nb\r\n.\r\n");
        assert_eq!(data(b"a\r\n.\r\nb\r\n"), b"a\r\n..\r\nb\r\n.\r\n");
        assert_eq!(data(b"a.\r\n.."), b"a.\r\n...\r\n.\r\n");
    }

    #[test]
    fn bare_line_ends_become_crlf_and_start_lines() {
        assert_eq!(data(b"a\n.b\n"), b"a\r\n..b\r\n.\r\n");
        assert_eq!(data(b"a\r.b\r\n"), b"a\r\n..b\r\n.\r\n");
        assert_eq!(data(b"x\n.\nMAIL"), b"x\r\n..\r\nMAIL\r\n.\r\n");
        assert_eq!(data(b"x\r.\r\n"), b"x\r\n..\r\n.\r\n");
        assert_eq!(data(b"x\r\r\n\n"), b"x\r\n\r\n\r\n.\r\n");
        assert_eq!(bdat(b"a\n.b\rc\r\nd\r"), b"a\r\n.b\r\nc\r\nd\r\n");
        assert_eq!(bdat(b"a\r\n"), b"a\r\n");
    }

    #[test]
    fn final_line_end() {
        assert_eq!(data(b"a"), b"a\r\n.\r\n");
        assert_eq!(data(b"a\r"), b"a\r\n.\r\n");
        assert_eq!(data(b"a\n"), b"a\r\n.\r\n");
        assert_eq!(data(b""), b"\r\n.\r\n");
        assert_eq!(data(b"."), b"..\r\n.\r\n");
    }

    #[test]
    fn seven_bit() {
        assert!(is_seven_bit(b"plain\r\n"));
        assert!(!is_seven_bit("caf\u{e9}".as_bytes()));
    }

    /// Reads DATA content back as a strict receiver does (lines end at CRLF only, the
    /// first `.` line ends it), and as a lax one does (a bare LF ends a line too).
    fn unstuff(wire: &[u8], lax: bool) -> (Vec<u8>, usize) {
        let mut content = Vec::new();
        let mut rest = wire;
        loop {
            let end = if lax {
                rest.iter().position(|&b| b == b'\n').map(|p| (p, p + 1))
            } else {
                rest.windows(2)
                    .position(|w| w == b"\r\n")
                    .map(|p| (p, p + 2))
            };
            let Some((text_end, next)) = end else {
                panic!("no terminator in {wire:?}");
            };
            let line = rest[..text_end]
                .strip_suffix(b"\r")
                .unwrap_or(&rest[..text_end]);
            if line == b"." {
                return (content, wire.len() - rest.len() + next);
            }
            content.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
            content.extend_from_slice(b"\r\n");
            rest = &rest[next..];
        }
    }

    proptest! {
        #[test]
        fn nothing_bare_ever_leaves_and_every_receiver_sees_one_message(
            body in proptest::collection::vec(
                prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'.'), any::<u8>()],
                0..300,
            ),
        ) {
            let wire = data(&body);
            prop_assert!(line_ends::is_crlf_only(&wire), "{:?}", wire);
            prop_assert!(wire.ends_with(b"\r\n.\r\n"));
            // A strict and a lax receiver both find the end exactly at the end, and
            // read the same, normalised, content.
            let (strict, used) = unstuff(&wire, false);
            prop_assert_eq!(used, wire.len());
            let (lax, used) = unstuff(&wire, true);
            prop_assert_eq!(used, wire.len());
            prop_assert_eq!(&strict, &lax);
            let mut normalised = Vec::new();
            line_ends::extend_normalized(&body, &mut normalised);
            if !normalised.ends_with(b"\r\n") {
                normalised.extend_from_slice(b"\r\n");
            }
            prop_assert_eq!(strict, normalised);
            let chunk = bdat(&body);
            prop_assert!(line_ends::is_crlf_only(&chunk), "{:?}", chunk);
        }

        #[test]
        fn content_in_pieces_goes_out_as_the_whole_does(
            body in proptest::collection::vec(
                prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'.'), any::<u8>()],
                0..300,
            ),
            cuts in proptest::collection::vec(0usize..300, 0..6),
        ) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(body.len())).collect();
            cuts.sort_unstable();
            let pieces: Vec<&[u8]> = {
                let mut out = Vec::new();
                let mut from = 0;
                for c in cuts.into_iter().chain([body.len()]) {
                    out.push(&body[from..c]);
                    from = c;
                }
                out
            };
            for (mut e, whole) in [(Encoder::data(), data(&body)), (Encoder::bdat(), bdat(&body))] {
                let mut out = Vec::new();
                for p in &pieces {
                    e.push(p, &mut out);
                }
                e.finish(&mut out);
                prop_assert_eq!(&out, &whole);
            }
            let mut scan = ContentScan::default();
            for p in &pieces {
                scan.push(p);
            }
            let described = scan.finish();
            prop_assert_eq!(described.size, bdat_size(&body));
            prop_assert_eq!(described.seven_bit, is_seven_bit(&body));
        }
    }
}
