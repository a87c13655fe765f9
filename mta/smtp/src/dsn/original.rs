//! The third part of a DSN: the original message returned to its sender, whole
//! (`RET=FULL`) or its header section only (RFC 3461 §4.3, RFC 6522 §3), with CRLF
//! line ends only whatever the spool held, like every other line of a notice.

use std::borrow::Cow;

use crate::line_ends;

/// Largest original returned whole. Beyond it only the header section is returned
/// (and the human part says so): a bounce must not itself be refused for its size,
/// nor double the spool's load for a huge message.
pub(super) const MAX_FULL: usize = 10 * 1024 * 1024;

/// What goes in the third part.
pub(super) struct Returned<'a> {
    /// The part's media type.
    pub(super) content_type: &'static str,
    /// The part's content, every line ending in CRLF.
    pub(super) body: Cow<'a, [u8]>,
    /// True when `body` has octets over 127 and so needs
    /// `Content-Transfer-Encoding: 8bit` (and the DSN needs `BODY=8BITMIME`).
    pub(super) eight_bit: bool,
    /// True when the whole message was asked for but was over [`MAX_FULL`].
    pub(super) cut_to_headers: bool,
}

/// Chooses the third part: the whole message when `full` and it is not over
/// [`MAX_FULL`], its header section otherwise. `size` is the stored message's size:
/// `original` may hold only the beginning of a message larger than [`MAX_FULL`]
/// (its header section is all that is returned of it).
///
/// A message whose header section is not ASCII (RFC 6532) is returned as
/// `message/global` or `message/global-headers` (RFC 6533 §6), as the plain types
/// promise ASCII headers.
pub(super) fn returned(original: &[u8], size: usize, full: bool) -> Returned<'_> {
    // Normalised first, so that the header section ends where a reader will see it end.
    let message = line_ends::normalize(original);
    let header_len = header_section(&message).len();
    let utf8_headers = !message[..header_len].is_ascii();
    let whole = full && size <= MAX_FULL && original.len() == size;
    let content_type = match (whole, utf8_headers) {
        (true, false) => "message/rfc822",
        (true, true) => "message/global",
        (false, false) => "text/rfc822-headers",
        (false, true) => "message/global-headers",
    };
    let body = match message {
        Cow::Borrowed(m) if !whole => Cow::Borrowed(&m[..header_len]),
        Cow::Owned(mut m) if !whole => {
            m.truncate(header_len);
            Cow::Owned(m)
        }
        whole_message => whole_message,
    };
    Returned {
        content_type,
        eight_bit: !body.is_ascii(),
        body,
        cut_to_headers: full && !whole,
    }
}

/// The header section of `message`, including the CRLF that ends its last field but
/// not the empty line after it. A message without an empty line is all header; a
/// message starting with one has no header section. Bare LF line ends are accepted
/// too, though the spool stores CRLF.
fn header_section(message: &[u8]) -> &[u8] {
    if message.starts_with(b"\r\n") || message.starts_with(b"\n") {
        return &[];
    }
    let end = message.windows(2).enumerate().find_map(|(i, w)| match w {
        // "\n\r\n" or "\n\n": the empty line starts right after this LF.
        [b'\n', b'\r'] if message.get(i + 2) == Some(&b'\n') => Some(i + 1),
        [b'\n', b'\n'] => Some(i + 1),
        _ => None,
    });
    match end {
        Some(end) => &message[..end],
        None => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_sections() {
        let cases: [(&[u8], &[u8]); 6] = [
            (
                b"A: 1\r\nB: 2\r\n\r\nbody\r\n\r\nmore\r\n",
                b"A: 1\r\nB: 2\r\n",
            ),
            (b"A: 1\n\nbody\n", b"A: 1\n"),
            (b"A: 1\r\nB: 2\r\n", b"A: 1\r\nB: 2\r\n"),
            (b"\r\nbody only\r\n", b""),
            (b"", b""),
            (b"A: 1\r\n folded\r\n\r\n", b"A: 1\r\n folded\r\n"),
        ];
        for (message, want) in cases {
            assert_eq!(
                header_section(message),
                want,
                "{:?}",
                String::from_utf8_lossy(message)
            );
        }
    }

    #[test]
    fn choice_of_part() {
        let msg = b"Subject: hi\r\n\r\nbody \xc3\xa9\r\n";
        let r = returned(msg, msg.len(), true);
        assert_eq!(
            (r.content_type, &r.body[..], r.eight_bit),
            ("message/rfc822", &msg[..], true)
        );
        let r = returned(msg, msg.len(), false);
        assert_eq!(r.content_type, "text/rfc822-headers");
        assert_eq!(&r.body[..], b"Subject: hi\r\n");
        assert!(!r.eight_bit && !r.cut_to_headers);

        // Spooled before line ends were normalised: returned with CRLF only, and the
        // header section ends where the normalised message shows its empty line.
        let bare = b"Subject: hi\nX: y\r\rbody\r.\n";
        assert_eq!(
            &returned(bare, bare.len(), true).body[..],
            b"Subject: hi\r\nX: y\r\n\r\nbody\r\n.\r\n"
        );
        assert_eq!(
            &returned(bare, bare.len(), false).body[..],
            b"Subject: hi\r\nX: y\r\n"
        );

        let utf8 = "Subject: caf\u{e9}\r\n\r\nx\r\n".as_bytes();
        assert_eq!(
            returned(utf8, utf8.len(), true).content_type,
            "message/global"
        );
        assert_eq!(
            returned(utf8, utf8.len(), false).content_type,
            "message/global-headers"
        );

        let mut big = b"Subject: big\r\n\r\n".to_vec();
        big.resize(MAX_FULL + 1, b'x');
        let r = returned(&big, big.len(), true);
        assert_eq!(r.content_type, "text/rfc822-headers");
        assert_eq!(&r.body[..], b"Subject: big\r\n");
        assert!(r.cut_to_headers);
        // Only the beginning of that message, as delivery reads it from the spool.
        let r = returned(&big[..100], big.len(), true);
        assert_eq!(r.content_type, "text/rfc822-headers");
        assert_eq!(&r.body[..], b"Subject: big\r\n");
        assert!(r.cut_to_headers);
    }
}
