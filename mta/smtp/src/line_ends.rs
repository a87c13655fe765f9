//! Line ends as SMTP allows them: CRLF and nothing else (RFC 5321 §2.3.8). A bare CR
//! or a bare LF is a line end to some receivers and plain text to others, and that
//! disagreement is what SMTP smuggling exploits; so wherever content enters or leaves
//! this crate such an octet becomes CRLF.
//!
//! [`Normalizer`] does it incrementally, for content that arrives in pieces (BDAT
//! chunks, where a CR ending one chunk may meet the LF starting the next);
//! [`normalized_len`] and [`extend_normalized`] do it for a whole message (outbound
//! BDAT, the original returned in a DSN). The DATA receiver and the DATA writer do
//! the same inside their own line handling, since dot-stuffing needs the lines too.

use std::borrow::Cow;

/// Turns bare CR and bare LF into CRLF as content goes by, and notes what it saw.
#[derive(Debug, Default)]
pub(crate) struct Normalizer {
    /// The last octet pushed was a CR: whether it was bare depends on the next one.
    cr_pending: bool,
    bare: bool,
    nul: bool,
}

impl Normalizer {
    /// Passes `input` on to `out`, normalised, in as few runs as the line ends allow.
    pub(crate) fn push(&mut self, input: &[u8], out: &mut impl FnMut(&[u8])) {
        let mut rest = input;
        if self.cr_pending && !rest.is_empty() {
            self.cr_pending = false;
            out(b"\n");
            if rest[0] == b'\n' {
                rest = &rest[1..];
            } else {
                self.bare = true;
            }
        }
        let mut start = 0;
        let mut from = 0;
        while let Some(p) = find_special(&rest[from..]) {
            let at = from + p;
            from = at + 1;
            match rest[at] {
                b'\r' => match rest.get(at + 1) {
                    Some(b'\n') => from = at + 2,
                    Some(_) => {
                        out(&rest[start..=at]);
                        out(b"\n");
                        self.bare = true;
                        start = from;
                    }
                    None => {
                        // The CR goes out now: it starts a CRLF whatever comes next.
                        out(&rest[start..=at]);
                        self.cr_pending = true;
                        return;
                    }
                },
                b'\n' => {
                    out(&rest[start..at]);
                    out(b"\r\n");
                    self.bare = true;
                    start = from;
                }
                _ => self.nul = true,
            }
        }
        if start < rest.len() {
            out(&rest[start..]);
        }
    }

    /// The content is complete: a CR at its very end was bare.
    pub(crate) fn finish(&mut self, out: &mut impl FnMut(&[u8])) {
        if self.cr_pending {
            self.cr_pending = false;
            self.bare = true;
            out(b"\n");
        }
    }

    /// Some bare CR or LF was turned into CRLF.
    pub(crate) fn saw_bare(&self) -> bool {
        self.bare
    }

    /// Some octet was NUL (passed on unchanged).
    pub(crate) fn saw_nul(&self) -> bool {
        self.nul
    }
}

/// The next CR, LF or NUL: the octets that end a run of plain text.
pub(crate) fn find_special(bytes: &[u8]) -> Option<usize> {
    memchr::memchr3(b'\r', b'\n', 0, bytes)
}

/// The length of `bytes` once every bare CR and bare LF is CRLF.
pub(crate) fn normalized_len(bytes: &[u8]) -> usize {
    let mut len = bytes.len();
    let mut from = 0;
    while let Some(p) = memchr::memchr2(b'\r', b'\n', &bytes[from..]) {
        let at = from + p;
        from = at + 1;
        if bytes[at] == b'\n' {
            len += 1;
        } else if bytes.get(at + 1) == Some(&b'\n') {
            from = at + 2;
        } else {
            len += 1;
        }
    }
    len
}

/// Appends `bytes` to `out` with every bare CR and bare LF turned into CRLF.
pub(crate) fn extend_normalized(bytes: &[u8], out: &mut Vec<u8>) {
    let mut n = Normalizer::default();
    let mut sink = |run: &[u8]| out.extend_from_slice(run);
    n.push(bytes, &mut sink);
    n.finish(&mut sink);
}

/// `bytes` with CRLF line ends only, copied only when something had to change.
pub fn normalize(bytes: &[u8]) -> Cow<'_, [u8]> {
    let len = normalized_len(bytes);
    if len == bytes.len() {
        return Cow::Borrowed(bytes);
    }
    let mut out = Vec::with_capacity(len);
    extend_normalized(bytes, &mut out);
    Cow::Owned(out)
}

/// True when every CR in `bytes` is followed by LF and every LF preceded by CR.
#[cfg(test)]
pub(crate) fn is_crlf_only(bytes: &[u8]) -> bool {
    normalized_len(bytes) == bytes.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pieces(chunks: &[&[u8]]) -> (Vec<u8>, bool, bool) {
        let mut n = Normalizer::default();
        let mut out = Vec::new();
        let mut sink = |run: &[u8]| out.extend_from_slice(run);
        for c in chunks {
            n.push(c, &mut sink);
        }
        n.finish(&mut sink);
        (out, n.saw_bare(), n.saw_nul())
    }

    #[test]
    fn bare_ends_become_crlf() {
        let cases: [(&[u8], &[u8], bool); 8] = [
            (b"a\r\nb\r\n", b"a\r\nb\r\n", false),
            (b"a\nb", b"a\r\nb", true),
            (b"a\rb", b"a\r\nb", true),
            (b"a\r", b"a\r\n", true),
            (b"\n", b"\r\n", true),
            (b"\r\r\n\n", b"\r\n\r\n\r\n", true),
            (b"\n\r", b"\r\n\r\n", true),
            (b"", b"", false),
        ];
        for (input, want, bare) in cases {
            assert_eq!(pieces(&[input]), (want.to_vec(), bare, false), "{input:?}");
            assert_eq!(normalized_len(input), want.len(), "{input:?}");
            assert_eq!(&normalize(input)[..], want, "{input:?}");
            for split in 0..=input.len() {
                let (a, b) = input.split_at(split);
                assert_eq!(pieces(&[a, b]).0, want, "{input:?} split at {split}");
            }
        }
        assert!(matches!(normalize(b"a\r\n"), Cow::Borrowed(_)));
        assert_eq!(pieces(&[b"a\0b\r\n"]), (b"a\0b\r\n".to_vec(), false, true));
    }

    proptest! {
        #[test]
        fn output_is_crlf_only_and_keeps_every_other_octet(
            input in proptest::collection::vec(
                prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'.'), Just(0u8), any::<u8>()],
                0..200,
            ),
            cut in any::<usize>(),
        ) {
            let cut = cut % (input.len() + 1);
            let (out, bare, _) = pieces(&[&input[..cut], &input[cut..]]);
            prop_assert!(is_crlf_only(&out));
            prop_assert_eq!(out.len(), normalized_len(&input));
            prop_assert_eq!(bare, !is_crlf_only(&input));
            let text = |b: &[u8]| b.iter().copied().filter(|&c| c != b'\r' && c != b'\n').collect::<Vec<u8>>();
            prop_assert_eq!(text(&out), text(&input));
            prop_assert_eq!(normalize(&out).len(), out.len(), "normalising twice changes nothing");
        }
    }
}
