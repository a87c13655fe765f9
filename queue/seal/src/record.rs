//! Sealing at rest: every record value is
//!
//! ```text
//!   "W2" || key_id(8, BE) || nonce(12) || ciphertext || tag(16)
//! ```
//!
//! under AES-256-GCM with the data key `key_id` of the keyring (a tenant's, or the
//! node's own), a fresh random nonce, and as associated data the 10-byte header
//! followed by the record's own sled key: a value copied or moved under another key,
//! or relabelled with another key id, no longer authenticates. The header can be
//! read without any key, which is how erasure and retention find a tenant's records.
//!
//! Records of the version before data keys (`nonce || ciphertext || tag` under the
//! master key, AAD = sled key) are read only by the migration (`open_legacy`).

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, NONCE_LEN};

use crate::data_key::{DataKey, Lookup};
use crate::{Error, KeyId};

const MAGIC: [u8; 2] = *b"W2";
/// Magic and key id.
pub const HEADER_LEN: usize = 10;
pub const TAG_LEN: usize = 16;
/// Bytes a sealed record adds to its plaintext.
pub const OVERHEAD: usize = HEADER_LEN + NONCE_LEN + TAG_LEN;

fn header(id: KeyId) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..2].copy_from_slice(&MAGIC);
    h[2..].copy_from_slice(&id.0.to_be_bytes());
    h
}

/// The associated data of a record: its header, then the caller's (its sled key).
fn full_aad(header: &[u8], aad: &[u8]) -> Aad<Vec<u8>> {
    Aad::from([header, aad].concat())
}

/// The data key a record names, read from its header without opening it; `None`
/// when the value is not a record of this format.
pub fn key_id_of(record: &[u8]) -> Option<KeyId> {
    if record.len() < OVERHEAD || record[..2] != MAGIC {
        return None;
    }
    let mut b = [0u8; 8];
    b.copy_from_slice(&record[2..HEADER_LEN]);
    Some(KeyId(u64::from_be_bytes(b)))
}

/// Encrypts `data` into a new buffer of exactly the record's size and returns it
/// as a record. The cipher reads the plaintext where it lies and writes the
/// ciphertext where the record keeps it: the plaintext is never copied, and the
/// record is never moved or regrown.
pub fn seal(key: &DataKey, aad: &[u8], data: impl AsRef<[u8]>) -> Result<Vec<u8>, Error> {
    let data = data.as_ref();
    let head = header(key.id());
    let mut nonce = [0u8; NONCE_LEN];
    aws_lc_rs::rand::fill(&mut nonce).map_err(|_| Error::crypto("random generator"))?;
    let mut record = vec![0u8; OVERHEAD + data.len()];
    record[..HEADER_LEN].copy_from_slice(&head);
    record[HEADER_LEN..HEADER_LEN + NONCE_LEN].copy_from_slice(&nonce);
    let (ciphertext, tag) = record[HEADER_LEN + NONCE_LEN..].split_at_mut(data.len());
    key.aead
        .seal_out_of_place_scatter(
            Nonce::assume_unique_for_key(nonce),
            full_aad(&head, aad),
            data,
            ciphertext,
            &[],
            tag,
        )
        .map_err(|_| Error::crypto("AES-256-GCM"))?;
    Ok(record)
}

impl DataKey {
    /// Seals `data` as one record stored under `aad` (see [`seal`]).
    pub fn seal(&self, aad: &[u8], data: impl AsRef<[u8]>) -> Result<Vec<u8>, Error> {
        seal(self, aad, data)
    }
}

/// Authenticates and decrypts a record stored under `aad` with the data key its
/// header names, as `lookup` (the keyring's) finds it, into a new buffer of the
/// plaintext's size: the record is read where it lies (a value sled handed out)
/// and never copied. A shredded key gives [`Error::Shredded`], a key never held
/// [`Error::UnknownKey`], anything else that does not open [`Error::Corrupt`].
pub fn open(
    lookup: impl FnOnce(KeyId) -> Lookup,
    aad: &[u8],
    record: &[u8],
) -> Result<Vec<u8>, Error> {
    let corrupt = |reason: &'static str| Error::Corrupt {
        aad: aad.to_vec(),
        reason,
    };
    let Some(id) = key_id_of(record) else {
        return Err(corrupt("not a sealed record (no header)"));
    };
    let key = match lookup(id) {
        Lookup::Key(k) => k,
        Lookup::Erased(e) => {
            return Err(Error::Shredded {
                aad: aad.to_vec(),
                tenant: e.tenant,
            })
        }
        Lookup::Unknown => {
            return Err(Error::UnknownKey {
                aad: aad.to_vec(),
                key_id: id,
            })
        }
    };
    let nonce = Nonce::try_assume_unique_for_key(&record[HEADER_LEN..HEADER_LEN + NONCE_LEN])
        .map_err(|_| corrupt("bad nonce"))?;
    let (ciphertext, tag) = record[HEADER_LEN + NONCE_LEN..].split_at(record.len() - OVERHEAD);
    let mut plain = vec![0u8; ciphertext.len()];
    key.aead
        .open_separate_gather(
            nonce,
            full_aad(&record[..HEADER_LEN], aad),
            ciphertext,
            tag,
            &mut plain,
        )
        .map_err(|_| corrupt("authentication failed"))?;
    Ok(plain)
}

/// Seals `data` directly under a master key: `nonce || ciphertext || tag`, AAD as
/// given. This is the keyring file's format, and the format every record had
/// before data keys existed.
pub fn seal_master(master: &LessSafeKey, aad: &[u8], mut data: Vec<u8>) -> Result<Vec<u8>, Error> {
    let mut nonce = [0u8; NONCE_LEN];
    aws_lc_rs::rand::fill(&mut nonce).map_err(|_| Error::crypto("random generator"))?;
    data.reserve_exact(NONCE_LEN + TAG_LEN);
    let tag = master
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut data,
        )
        .map_err(|_| Error::crypto("AES-256-GCM"))?;
    data.extend_from_slice(tag.as_ref());
    data.splice(0..0, nonce);
    Ok(data)
}

/// Opens what [`seal_master`] sealed (also the records of the version before data
/// keys, which only the migration reads).
pub fn open_master(
    master: &LessSafeKey,
    aad: &[u8],
    mut record: Vec<u8>,
) -> Result<Vec<u8>, Error> {
    let corrupt = |reason: &'static str| Error::Corrupt {
        aad: aad.to_vec(),
        reason,
    };
    if record.len() < NONCE_LEN + TAG_LEN {
        return Err(corrupt("record shorter than nonce and tag"));
    }
    let nonce =
        Nonce::try_assume_unique_for_key(&record[..NONCE_LEN]).map_err(|_| corrupt("bad nonce"))?;
    let plain_len = master
        .open_within(nonce, Aad::from(aad), &mut record, NONCE_LEN..)
        .map_err(|_| corrupt("authentication failed"))?
        .len();
    record.truncate(plain_len);
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Keyring;

    fn ring() -> Keyring {
        Keyring::ephemeral().expect("keyring")
    }

    #[test]
    fn round_trip_and_layout() {
        let k = ring();
        let plain = b"Subject: hello\r\n\r\nbody\r\n".to_vec();
        let key = k.system();
        let sealed = seal(&key, b"aad", plain.clone()).expect("seal");
        assert_eq!(sealed.len(), plain.len() + OVERHEAD);
        assert_eq!(key_id_of(&sealed), Some(key.id()));
        assert!(!sealed.windows(plain.len()).any(|w| w == plain.as_slice()));
        assert_eq!(k.open_record(b"aad", sealed).expect("open"), plain);
    }

    #[test]
    fn nonces_differ() {
        let k = ring();
        let a = seal(&k.system(), b"k", vec![1, 2, 3]).expect("seal");
        let b = seal(&k.system(), b"k", vec![1, 2, 3]).expect("seal");
        assert_ne!(a, b);
    }

    #[test]
    fn wrong_aad_tamper_relabel_and_truncation_fail() {
        let k = ring();
        let sealed = seal(&k.system(), b"one", b"data").expect("seal");
        assert!(matches!(
            k.open_record(b"two", sealed.clone()),
            Err(Error::Corrupt { .. })
        ));
        for i in 0..sealed.len() {
            let mut t = sealed.clone();
            t[i] ^= 0x01;
            assert!(k.open_record(b"one", t).is_err(), "byte {i}");
        }
        for n in 0..sealed.len() {
            assert!(k.open_record(b"one", &sealed[..n]).is_err());
        }
        // Relabelled with another tenant's key id: that key cannot open it.
        let other = k.tenant("other").expect("key");
        let mut relabelled = sealed.clone();
        relabelled[2..HEADER_LEN].copy_from_slice(&other.id().0.to_be_bytes());
        assert!(matches!(
            k.open_record(b"one", relabelled),
            Err(Error::Corrupt { .. })
        ));
    }

    #[test]
    fn keys_of_other_keyrings_are_unknown() {
        let a = ring();
        let b = ring();
        let sealed = seal(&a.tenant("t").expect("key"), b"k", b"x").expect("seal");
        assert!(matches!(
            b.open_record(b"k", sealed),
            Err(Error::UnknownKey { .. })
        ));
    }

    #[test]
    fn long_associated_data_round_trips_and_binds() {
        let k = ring();
        let long: Vec<u8> = (0..300u16).map(|i| i as u8).collect();
        let sealed = seal(&k.system(), &long, b"data").expect("seal");
        assert_eq!(k.open_record(&long, &sealed).expect("open"), b"data");
        let mut other = long.clone();
        other[299] ^= 1;
        assert!(k.open_record(&other, &sealed).is_err());
        assert!(k.open_record(&long[..128], &sealed).is_err());
    }

    #[test]
    fn empty_plaintext() {
        let k = ring();
        let sealed = seal(&k.system(), b"x", Vec::new()).expect("seal");
        assert_eq!(k.open_record(b"x", sealed).expect("open"), Vec::<u8>::new());
    }
}
