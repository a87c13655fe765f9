//! Sealing at rest: every record value is `nonce(12) || ciphertext || tag(16)` under
//! AES-256-GCM with a fresh random nonce, and the record's own sled key as AAD, so a
//! value copied or moved under another key no longer authenticates.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, NONCE_LEN};

use crate::{keys, Error};

pub(crate) const TAG_LEN: usize = 16;
/// Bytes a sealed record adds to its plaintext.
pub(crate) const OVERHEAD: usize = NONCE_LEN + TAG_LEN;

/// Encrypts `data` in its own buffer and returns it as a record. The buffer grows
/// by [`OVERHEAD`] bytes (no reallocation when the caller left that much spare
/// capacity); the plaintext is never copied into a second buffer.
pub(crate) fn seal(key: &LessSafeKey, aad: &[u8], mut data: Vec<u8>) -> Result<Vec<u8>, Error> {
    let mut nonce = [0u8; NONCE_LEN];
    aws_lc_rs::rand::fill(&mut nonce).map_err(|_| Error::Crypto)?;
    data.reserve_exact(OVERHEAD);
    let tag = key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut data,
        )
        .map_err(|_| Error::Crypto)?;
    data.extend_from_slice(tag.as_ref());
    // Shifts the ciphertext within the same allocation to make room for the nonce.
    data.splice(0..0, nonce);
    Ok(data)
}

/// Authenticates and decrypts a record stored under `aad`, returning the plaintext.
pub(crate) fn open(key: &LessSafeKey, aad: &[u8], mut record: Vec<u8>) -> Result<Vec<u8>, Error> {
    let corrupt = |reason: &str| Error::Corrupt {
        key: keys::describe(aad),
        reason: reason.to_owned(),
    };
    if record.len() < OVERHEAD {
        return Err(corrupt("record shorter than nonce and tag"));
    }
    let nonce =
        Nonce::try_assume_unique_for_key(&record[..NONCE_LEN]).map_err(|_| corrupt("bad nonce"))?;
    let plain_len = key
        .open_within(nonce, Aad::from(aad), &mut record, NONCE_LEN..)
        .map_err(|_| corrupt("authentication failed"))?
        .len();
    record.truncate(plain_len);
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::aead::{UnboundKey, AES_256_GCM};

    fn key() -> LessSafeKey {
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[7u8; 32]).expect("32-byte key"))
    }

    #[test]
    fn round_trip_and_layout() {
        let k = key();
        let plain = b"Subject: hello\r\n\r\nbody\r\n".to_vec();
        let sealed = seal(&k, b"aad", plain.clone()).expect("seal");
        assert_eq!(sealed.len(), plain.len() + OVERHEAD);
        assert!(!sealed.windows(plain.len()).any(|w| w == plain.as_slice()));
        assert_eq!(open(&k, b"aad", sealed).expect("open"), plain);
    }

    #[test]
    fn nonces_differ() {
        let k = key();
        let a = seal(&k, b"k", vec![1, 2, 3]).expect("seal");
        let b = seal(&k, b"k", vec![1, 2, 3]).expect("seal");
        assert_ne!(a, b);
    }

    #[test]
    fn wrong_aad_tamper_and_truncation_fail() {
        let k = key();
        let sealed = seal(&k, b"one", b"data".to_vec()).expect("seal");
        assert!(matches!(
            open(&k, b"two", sealed.clone()),
            Err(Error::Corrupt { .. })
        ));
        for i in 0..sealed.len() {
            let mut t = sealed.clone();
            t[i] ^= 0x01;
            assert!(
                matches!(open(&k, b"one", t), Err(Error::Corrupt { .. })),
                "byte {i}"
            );
        }
        for n in 0..sealed.len() {
            assert!(open(&k, b"one", sealed[..n].to_vec()).is_err());
        }
    }

    #[test]
    fn empty_plaintext() {
        let k = key();
        let sealed = seal(&k, b"x", Vec::new()).expect("seal");
        assert_eq!(open(&k, b"x", sealed).expect("open"), Vec::<u8>::new());
    }
}
