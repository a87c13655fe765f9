//! The message content on the wire. DATA needs dot-stuffing (RFC 5321 §4.5.2) and a
//! final CRLF before the `.` terminator; BDAT sends the octets as they are.
//!
//! A line starts after CRLF and also after a bare LF: stored bodies may keep bare
//! LFs, and a receiver that takes LF as a line end must never see a line `.` that
//! we did not mean as the end of data (the SMTP smuggling family of bugs).

/// Appends `body` as DATA content, terminator included.
pub(super) fn write_data(body: &[u8], out: &mut Vec<u8>) {
    // Stuffing adds one octet per dotted line; most bodies have none or few.
    out.reserve(body.len() + 16);
    let mut rest = body;
    while let Some(&first) = rest.first() {
        if first == b'.' {
            out.push(b'.');
        }
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .map_or(rest.len(), |i| i + 1);
        out.extend_from_slice(&rest[..end]);
        rest = &rest[end..];
    }
    if !body.ends_with(b"\r\n") {
        // A final bare LF becomes the CRLF; otherwise the last line gets one.
        if body.ends_with(b"\n") {
            out.pop();
        }
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
}

/// True when the body can go to a peer without 8BITMIME unchanged.
pub(super) fn is_seven_bit(body: &[u8]) -> bool {
    body.is_ascii()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        write_data(body, &mut out);
        out
    }

    #[test]
    fn stuffing() {
        assert_eq!(data(b".a\r\nb\r\n"), b"..a\r\nb\r\n.\r\n");
        assert_eq!(data(b"a\r\n.\r\nb\r\n"), b"a\r\n..\r\nb\r\n.\r\n");
        assert_eq!(data(b"a\n.b\n"), b"a\n..b\r\n.\r\n");
        assert_eq!(data(b"a\r.b\r\n"), b"a\r.b\r\n.\r\n");
        assert_eq!(data(b"a.\r\n.."), b"a.\r\n...\r\n.\r\n");
    }

    #[test]
    fn final_line_end() {
        assert_eq!(data(b"a"), b"a\r\n.\r\n");
        assert_eq!(data(b"a\r"), b"a\r\r\n.\r\n");
        assert_eq!(data(b"a\n"), b"a\r\n.\r\n");
        assert_eq!(data(b""), b"\r\n.\r\n");
        assert_eq!(data(b"."), b"..\r\n.\r\n");
    }

    #[test]
    fn seven_bit() {
        assert!(is_seven_bit(b"plain\r\n"));
        assert!(!is_seven_bit("caf\u{e9}".as_bytes()));
    }
}
