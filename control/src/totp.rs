//! RFC 6238 time-based one-time passwords for operator login: HMAC-SHA1, 30-second
//! steps, 6 digits, base32 secrets (RFC 4648, no padding) as authenticator apps
//! expect. The codes are totp-rs's; the rules are ours: a code is accepted for the
//! current step or one step either side, and only for a step later than the last
//! one used to log in, so a code seen over a shoulder cannot be replayed. Secrets
//! come from aws-lc's generator and are wiped from memory after use.

use totp_rs::{Algorithm, Builder, Secret, Totp};
use zeroize::Zeroizing;

use crate::error::Error;
use way2mail_seal::password::secrets_equal;

pub const STEP_SECS: u64 = 30;
pub const DIGITS: u8 = 6;
const SECRET_BYTES: usize = 20;
const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// A fresh random secret, base32-encoded.
pub fn generate_secret() -> Result<String, Error> {
    let mut bytes = Zeroizing::new([0u8; SECRET_BYTES]);
    aws_lc_rs::rand::fill(bytes.as_mut()).map_err(|_| Error::Crypto("random generator".into()))?;
    Ok(base32_encode(bytes.as_ref()))
}

/// The `otpauth://` URI an authenticator app scans.
pub fn uri(name: &str, secret_b32: &str) -> String {
    format!("otpauth://totp/Way2Mail:{name}?secret={secret_b32}&issuer=Way2Mail")
}

/// The 6-digit code for `unix_secs`.
pub fn code(secret_b32: &str, unix_secs: u64) -> Result<String, Error> {
    let totp = generator(&base32_decode(secret_b32)?, DIGITS)?;
    Ok(totp.generate(unix_secs).to_string())
}

/// The step a valid `code` belongs to: the current one or one either side, and
/// later than `last_used_step`. `None` for a wrong, stale or replayed code.
pub fn verify(
    secret_b32: &str,
    code: &str,
    unix_secs: u64,
    last_used_step: Option<u64>,
) -> Result<Option<u64>, Error> {
    let totp = generator(&base32_decode(secret_b32)?, DIGITS)?;
    let now = unix_secs / STEP_SECS;
    let mut found = None;
    // All candidates are computed and compared, so timing does not say which matched
    // (totp-rs's own check stops at the first match and does not know the replay rule).
    for step in [now.saturating_sub(1), now, now + 1] {
        let expected = totp.generate(step.saturating_mul(STEP_SECS)).to_string();
        if secrets_equal(expected.as_bytes(), code.as_bytes())
            && last_used_step.is_none_or(|last| step > last)
        {
            found = Some(step);
        }
    }
    Ok(found)
}

/// RFC 6238 with our parameters over `key` (at least 128 bits, as RFC 4226 asks).
fn generator(key: &[u8], digits: u8) -> Result<Totp, Error> {
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(digits)
        .with_step_duration(STEP_SECS)
        .with_secret(Secret::from(key))
        .build()
        .map_err(|e| Error::TotpSecret(e.to_string()))
}

pub fn base32_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(BASE32[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(BASE32[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

/// Decodes base32, case-insensitively, ignoring `=` padding and spaces (as people
/// type secrets from a screen).
pub fn base32_decode(text: &str) -> Result<Zeroizing<Vec<u8>>, Error> {
    let mut out = Zeroizing::new(Vec::with_capacity(text.len() * 5 / 8));
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for c in text.bytes().filter(|&c| c != b'=' && c != b' ') {
        let value = match c.to_ascii_uppercase() {
            c @ b'A'..=b'Z' => c - b'A',
            c @ b'2'..=b'7' => c - b'2' + 26,
            _ => return Err(Error::TotpSecret("not base32".into())),
        };
        buffer = (buffer << 5) | u32::from(value);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
        }
    }
    if out.is_empty() {
        return Err(Error::TotpSecret("empty".into()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B, SHA-1 column (8 digits).
    #[test]
    fn rfc6238_sha1_vectors() {
        let key = b"12345678901234567890";
        for (time, expected) in [
            (59u64, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ] {
            let totp = generator(key, 8).expect("generator");
            assert_eq!(totp.generate(time).to_string(), expected, "T={time}");
        }
        let secret = base32_encode(key);
        assert_eq!(secret, "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        // The 6-digit code is the low six digits of the same value.
        assert_eq!(code(&secret, 59).expect("code"), "287082");
        // Below RFC 4226's 128 bits a secret is refused, never used.
        assert!(code(&base32_encode(&key[..15]), 59).is_err());
    }

    #[test]
    fn base32_round_trip() {
        for len in 0..=21 {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let text = base32_encode(&bytes);
            if len == 0 {
                assert!(base32_decode(&text).is_err());
            } else {
                assert_eq!(*base32_decode(&text).expect("decode"), bytes);
                assert_eq!(*base32_decode(&text.to_lowercase()).expect("decode"), bytes);
            }
        }
        assert_eq!(base32_encode(b"foobar"), "MZXW6YTBOI"); // RFC 4648 section 10
        assert!(base32_decode("ABC1").is_err());
        assert_eq!(generate_secret().expect("secret").len(), 32);
    }

    #[test]
    fn window_and_replay() {
        let secret = generate_secret().expect("secret");
        let now = 1_700_000_015;
        let step = now / STEP_SECS;
        let current = code(&secret, now).expect("code");
        assert_eq!(verify(&secret, &current, now, None).expect("v"), Some(step));
        let previous = code(&secret, now - STEP_SECS).expect("code");
        assert_eq!(
            verify(&secret, &previous, now, None).expect("v"),
            Some(step - 1)
        );
        let next = code(&secret, now + STEP_SECS).expect("code");
        assert_eq!(
            verify(&secret, &next, now, None).expect("v"),
            Some(step + 1)
        );
        for far in [now - 3 * STEP_SECS, now + 3 * STEP_SECS] {
            let c = code(&secret, far).expect("code");
            if c != current && c != previous && c != next {
                assert_eq!(verify(&secret, &c, now, None).expect("v"), None);
            }
        }
        // Replay of the step just used, or of an earlier one.
        assert_eq!(verify(&secret, &current, now, Some(step)).expect("v"), None);
        assert_eq!(
            verify(&secret, &previous, now, Some(step)).expect("v"),
            None
        );
        assert_eq!(
            verify(&secret, &next, now, Some(step)).expect("v"),
            Some(step + 1)
        );
        assert_eq!(verify(&secret, "12345", now, None).expect("v"), None);
        assert_eq!(verify(&secret, "", now, None).expect("v"), None);
    }
}
