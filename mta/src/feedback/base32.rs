//! RFC 4648 base32 (section 6), lower case, no padding: the alphabet of VERP tokens.
//! Written here rather than taken from a crate because the token needs exactly this
//! much: a-z and 2-7 survive every mail system's handling of local parts (no case
//! significance, no `+`, `=` or `/`), and decoding is strict so that one token has
//! one spelling apart from case.

const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// `data` in base32, lower case, without `=` padding.
pub(crate) fn encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(5) * 8);
    let mut buffer: u16 = 0;
    let mut bits: u32 = 0;
    for &byte in data {
        buffer = (buffer << 8) | u16::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[usize::from((buffer >> bits) & 0x1f)]));
        }
        // Only the low `bits` bits are still needed.
        buffer &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(char::from(
            ALPHABET[usize::from((buffer << (5 - bits)) & 0x1f)],
        ));
    }
    out
}

/// The value of one digit, either case.
fn digit(c: u8) -> Option<u16> {
    match c {
        b'a'..=b'z' => Some(u16::from(c - b'a')),
        b'A'..=b'Z' => Some(u16::from(c - b'A')),
        b'2'..=b'7' => Some(u16::from(c - b'2') + 26),
        _ => None,
    }
}

/// The bytes `text` encodes, case-insensitively. `None` for a character outside the
/// alphabet (padding included), a length no byte string encodes to, or leftover
/// bits that are not zero (a second spelling of the same bytes).
pub(crate) fn decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 5 / 8);
    let mut buffer: u16 = 0;
    let mut bits: u32 = 0;
    for &c in text.as_bytes() {
        buffer = (buffer << 5) | digit(c)?;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push(((buffer >> bits) & 0xff) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    // A whole digit left over encodes no byte: no encoder writes it.
    if bits >= 5 || buffer != 0 {
        return None;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc_4648_vectors() {
        // RFC 4648 section 10, lower-cased and without padding.
        for (plain, coded) in [
            ("", ""),
            ("f", "my"),
            ("fo", "mzxq"),
            ("foo", "mzxw6"),
            ("foob", "mzxw6yq"),
            ("fooba", "mzxw6ytb"),
            ("foobar", "mzxw6ytboi"),
        ] {
            assert_eq!(encode(plain.as_bytes()), coded);
            assert_eq!(decode(coded).as_deref(), Some(plain.as_bytes()));
            assert_eq!(
                decode(&coded.to_ascii_uppercase()).as_deref(),
                Some(plain.as_bytes())
            );
        }
    }

    #[test]
    fn rejects_what_no_encoder_writes() {
        for bad in ["m", "mzx", "mzxw6y", "mz", "my======", "m1", "mz!q", "mzxr"] {
            assert_eq!(decode(bad), None, "{bad}");
        }
    }

    proptest! {
        #[test]
        fn round_trips(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let text = encode(&data);
            prop_assert_eq!(text.len(), (data.len() * 8).div_ceil(5));
            prop_assert_eq!(decode(&text), Some(data));
        }

        #[test]
        fn decode_never_panics(text in "\\PC{0,80}") {
            let _ = decode(&text);
        }
    }
}
