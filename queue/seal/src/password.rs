//! Secrets the control plane hands out and checks: argon2id hashes in PHC form
//! (the MTA verifies SMTP AUTH with [`verify`] against the snapshot), and the
//! generators for operator passwords, SMTP passwords and API keys.
//!
//! API keys look like `w2m_<prefix>_<secret>`: the prefix is public (it is how a
//! key is listed and found), the secret is only ever stored as an argon2id hash.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use zeroize::Zeroizing;

use crate::Error;

/// Alphanumeric: URL-safe, shell-safe and unambiguous to copy.
const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
/// Length of generated passwords: 24 × log2(62) ≈ 143 bits.
pub const PASSWORD_LEN: usize = 24;
const API_PREFIX_LEN: usize = 8;
const API_SECRET_LEN: usize = 32;
/// Longest password accepted for hashing or checking, so a hostile peer cannot make
/// argon2 chew megabytes.
pub const MAX_PASSWORD_LEN: usize = 1024;

/// Hashes `password` with argon2id (m=19456 KiB, t=2, p=1) and a random salt.
pub fn hash(password: &str) -> Result<String, Error> {
    let mut salt = [0u8; 16];
    aws_lc_rs::rand::fill(&mut salt).map_err(|_| Error::Crypto("random generator".into()))?;
    let salt =
        SaltString::encode_b64(&salt).map_err(|e| Error::Crypto(format!("argon2 salt: {e}")))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::Crypto(format!("argon2: {e}")))
}

/// Whether `password` matches the PHC string `phc`. A malformed hash or an
/// over-long password is simply a mismatch. The comparison inside argon2 is
/// constant-time.
pub fn verify(password: &str, phc: &str) -> bool {
    if password.len() > MAX_PASSWORD_LEN {
        return false;
    }
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// `len` characters drawn uniformly from the alphanumeric alphabet.
pub fn random_string(len: usize) -> Result<Zeroizing<String>, Error> {
    let mut out = Zeroizing::new(String::with_capacity(len));
    let mut buf = Zeroizing::new([0u8; 64]);
    while out.len() < len {
        aws_lc_rs::rand::fill(buf.as_mut())
            .map_err(|_| Error::Crypto("random generator".into()))?;
        for &b in buf.iter() {
            // Rejection sampling: 248 = 4 × 62, so every letter is equally likely.
            if b < 248 && out.len() < len {
                out.push(char::from(ALPHABET[usize::from(b) % ALPHABET.len()]));
            }
        }
    }
    Ok(out)
}

/// A fresh password for an operator or an SMTP user.
pub fn generate_password() -> Result<Zeroizing<String>, Error> {
    random_string(PASSWORD_LEN)
}

/// A fresh API key: the public prefix and the whole key `w2m_<prefix>_<secret>`.
pub fn generate_api_key() -> Result<(String, Zeroizing<String>), Error> {
    let prefix = random_string(API_PREFIX_LEN)?.to_lowercase();
    let secret = random_string(API_SECRET_LEN)?;
    let key = Zeroizing::new(format!("w2m_{prefix}_{}", secret.as_str()));
    Ok((prefix, key))
}

/// Splits an API key into its public prefix and its secret part.
pub fn parse_api_key(key: &str) -> Option<(&str, &str)> {
    let rest = key.strip_prefix("w2m_")?;
    let (prefix, secret) = rest.split_once('_')?;
    (!prefix.is_empty() && !secret.is_empty()).then_some((prefix, secret))
}

/// Constant-time equality for secrets of public length.
pub fn secrets_equal(a: &[u8], b: &[u8]) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_then_verify() {
        let phc = hash("correct horse battery").expect("hash");
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify("correct horse battery", &phc));
        assert!(!verify("correct horse batterY", &phc));
        assert!(!verify("", &phc));
        assert!(!verify("correct horse battery", "not a phc string"));
        assert!(!verify(&"x".repeat(MAX_PASSWORD_LEN + 1), &phc));
        assert_ne!(
            hash("same").expect("hash"),
            hash("same").expect("hash"),
            "salted"
        );
    }

    #[test]
    fn generated_secrets_have_their_shape() {
        let p = generate_password().expect("password");
        assert_eq!(p.len(), PASSWORD_LEN);
        assert!(p.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(*p, *generate_password().expect("password"));
        let (prefix, key) = generate_api_key().expect("api key");
        let (p2, secret) = parse_api_key(&key).expect("parse");
        assert_eq!(p2, prefix);
        assert_eq!(secret.len(), API_SECRET_LEN);
        assert!(parse_api_key("w2m__x").is_none());
        assert!(parse_api_key("abc").is_none());
    }

    #[test]
    fn alphabet_is_used_evenly() {
        let s = random_string(62 * 200).expect("random");
        for &c in ALPHABET {
            let n = s.bytes().filter(|&b| b == c).count();
            // Expected 200 each; 60..400 only fails with a broken generator.
            assert!(
                (60..400).contains(&n),
                "{} appears {n} times",
                char::from(c)
            );
        }
    }

    #[test]
    fn constant_time_compare() {
        assert!(secrets_equal(b"abc", b"abc"));
        assert!(!secrets_equal(b"abc", b"abd"));
        assert!(!secrets_equal(b"abc", b"ab"));
    }
}
