//! DKIM key pairs for tenant domains: generation (aws-lc-rs), selector names and the
//! DNS record values that publish the public halves.
//!
//! ```text
//!   generate_pair(domain, existing keys, now, state)
//!     ├── RSA-2048  PKCS#8 DER ─┐                  p= base64(SubjectPublicKeyInfo DER)
//!     └── Ed25519   PKCS#8 DER ─┴─ NewKey { info, record }   p= base64(32-byte key), RFC 8463
//!   selectors  w2m-YYYYMMDD-rsa / w2m-YYYYMMDD-ed, then w2m-YYYYMMDD-2-rsa … on the same day
//!   record     v=DKIM1; k=rsa; p=…  /  v=DKIM1; k=ed25519; p=…
//! ```
//!
//! A private key exists in memory only as aws-lc-rs's own buffers (wiped when
//! dropped) and, base64-encoded, inside a [`DkimKeyRecord`], which wipes itself when
//! dropped and has no `Debug`; [`NewKey`]'s `Debug` leaves it out.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::error::Error;
use crate::records::DkimKeyRecord;
use way2mail_wire::protocol::{DkimAlgorithm, DkimKeyInfo, DkimKeyState};

/// Every selector this module makes starts with this.
pub const SELECTOR_PREFIX: &str = "w2m-";

/// One freshly generated key: its public half as a domain shows it, and the private
/// key as the `dkim_keys` tree stores it.
pub struct NewKey {
    pub info: DkimKeyInfo,
    pub record: DkimKeyRecord,
}

impl std::fmt::Debug for NewKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewKey")
            .field("info", &self.info)
            .field("private_key", &"<redacted>")
            .finish()
    }
}

/// An RSA-2048 and an Ed25519 key for `domain`, in `state`, under selectors that no
/// key in `existing` has (see [`pair_selectors`]).
pub fn generate_pair(
    domain: &str,
    existing: &[DkimKeyInfo],
    now: u64,
    state: DkimKeyState,
) -> Result<[NewKey; 2], Error> {
    let (rsa, ed) = pair_selectors(existing.iter().map(|k| k.selector.as_str()), now);
    Ok([
        generate(domain, &rsa, DkimAlgorithm::RsaSha256, now, state)?,
        generate(domain, &ed, DkimAlgorithm::Ed25519Sha256, now, state)?,
    ])
}

/// One key pair of `algorithm` under `selector`.
pub fn generate(
    domain: &str,
    selector: &str,
    algorithm: DkimAlgorithm,
    now: u64,
    state: DkimKeyState,
) -> Result<NewKey, Error> {
    let crypto = |what: &str| Error::Crypto(format!("cannot {what} a DKIM key"));
    let (private_key, public_key) = match algorithm {
        DkimAlgorithm::RsaSha256 => {
            let pair = RsaKeyPair::generate(KeySize::Rsa2048).map_err(|_| crypto("generate"))?;
            let pkcs8 = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&pair)
                .map_err(|_| crypto("encode"))?;
            let spki = AsDer::<aws_lc_rs::encoding::PublicKeyX509Der>::as_der(pair.public_key())
                .map_err(|_| crypto("encode"))?;
            (
                STANDARD.encode(pkcs8.as_ref()),
                STANDARD.encode(spki.as_ref()),
            )
        }
        DkimAlgorithm::Ed25519Sha256 => {
            let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
                .map_err(|_| crypto("generate"))?;
            let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|_| crypto("load"))?;
            (
                STANDARD.encode(pkcs8.as_ref()),
                STANDARD.encode(pair.public_key().as_ref()),
            )
        }
    };
    Ok(NewKey {
        info: DkimKeyInfo {
            selector: selector.to_owned(),
            algorithm,
            state,
            public_key,
            created_at: now,
        },
        record: DkimKeyRecord {
            domain: domain.to_owned(),
            selector: selector.to_owned(),
            algorithm,
            private_key,
            created_at: now,
        },
    })
}

/// The RSA and Ed25519 selectors of a new pair created at `now` (Unix seconds):
/// `w2m-YYYYMMDD-rsa` and `w2m-YYYYMMDD-ed` (UTC date), or with `-N` before the
/// suffix when a selector of that date exists already, N one more than the highest
/// number in use that day (the first pair counts as 1). So no selector is reused
/// while a key of that day is still known.
pub fn pair_selectors<'a>(
    existing: impl IntoIterator<Item = &'a str>,
    now: u64,
) -> (String, String) {
    let date: String = way2mail_smtp::date::rfc3339(now)
        .chars()
        .take(10)
        .filter(|c| *c != '-')
        .collect();
    let base = format!("{SELECTOR_PREFIX}{date}");
    let highest = existing
        .into_iter()
        .filter_map(|selector| pair_number(selector.strip_prefix(&base)?))
        .max();
    match highest {
        None => (format!("{base}-rsa"), format!("{base}-ed")),
        Some(n) => {
            let n = n.saturating_add(1);
            (format!("{base}-{n}-rsa"), format!("{base}-{n}-ed"))
        }
    }
}

/// `-rsa`/`-ed` → 1, `-N-rsa`/`-N-ed` → N; anything else is not one of ours.
fn pair_number(rest: &str) -> Option<u32> {
    let rest = rest.strip_prefix('-')?;
    let stem = rest
        .strip_suffix("-rsa")
        .or_else(|| rest.strip_suffix("-ed"))
        .or_else(|| (rest == "rsa" || rest == "ed").then_some(""))?;
    if stem.is_empty() {
        return Some(1);
    }
    if stem.bytes().all(|b| b.is_ascii_digit()) {
        stem.parse().ok()
    } else {
        None
    }
}

/// The owner name of a selector's record: `SELECTOR._domainkey.DOMAIN`.
pub fn record_name(selector: &str, domain: &str) -> String {
    format!("{selector}._domainkey.{domain}")
}

/// The TXT value publishing a key: `v=DKIM1; k=rsa; p=…` or `v=DKIM1; k=ed25519; p=…`.
pub fn record_value(key: &DkimKeyInfo) -> String {
    format!(
        "v=DKIM1; k={}; p={}",
        key.algorithm.key_type(),
        key.public_key
    )
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use mail_auth::common::crypto::{Ed25519Key, RsaKey, Sha256, SigningKey};
    use mail_auth::common::headers::HeaderWriter;
    use mail_auth::common::parse::TxtRecordParser;
    use mail_auth::common::verify::DomainKey;
    use mail_auth::dkim::DkimSigner;
    use mail_auth::{
        AuthenticatedMessage, DkimResult, MessageAuthenticator, Parameters, ResolverCache, Txt,
    };

    use super::*;

    /// 2026-11-29T12:00:00Z.
    const NOV_29: u64 = 1_795_953_600;

    /// A TXT cache holding the records under test, so verification needs no DNS.
    #[derive(Default)]
    struct Records(Mutex<HashMap<Box<str>, Txt>>);

    impl ResolverCache<Box<str>, Txt> for Records {
        fn get<Q>(&self, name: &Q) -> Option<Txt>
        where
            Box<str>: std::borrow::Borrow<Q>,
            Q: std::hash::Hash + Eq + ?Sized,
        {
            self.0.lock().expect("lock").get(name).cloned()
        }
        fn remove<Q>(&self, name: &Q) -> Option<Txt>
        where
            Box<str>: std::borrow::Borrow<Q>,
            Q: std::hash::Hash + Eq + ?Sized,
        {
            self.0.lock().expect("lock").remove(name)
        }
        fn insert(&self, key: Box<str>, value: Txt, _valid_until: std::time::Instant) {
            self.0.lock().expect("lock").insert(key, value);
        }
    }

    const MESSAGE: &str = "From: Alice <alice@shop.example>\r\n\
        To: bob@example.net\r\n\
        Subject: keys\r\n\
        Date: Sun, 29 Nov 2026 12:00:00 +0000\r\n\
        Message-ID: <1@shop.example>\r\n\
        \r\n\
        Hello Bob.\r\n";

    fn sign(key: impl SigningKey, selector: &str, message: &str) -> String {
        let signature = DkimSigner::from_key(key)
            .domain("shop.example")
            .selector(selector)
            .headers(["From", "To", "Subject", "Date", "Message-ID"])
            .sign(message.as_bytes())
            .expect("sign");
        format!("{}{message}", signature.to_header())
    }

    /// Verifies every signature of `signed` against `record` published at `name`,
    /// through mail-auth's own DKIM verifier (its DNS answered from the cache).
    fn verify(signed: &str, name: &str, record: &str) -> Vec<DkimResult> {
        let records = Records::default();
        let key = DomainKey::parse(record.as_bytes()).expect("the record parses");
        records.insert(
            format!("{name}.").into_boxed_str(),
            Txt::DomainKey(Arc::new(key)),
            std::time::Instant::now() + std::time::Duration::from_secs(60),
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            // No name servers: a lookup that misses the cache fails at once.
            let authenticator = MessageAuthenticator::new(
                mail_auth::hickory_resolver::config::ResolverConfig::from_name_servers(Vec::new()),
                Default::default(),
            )
            .expect("authenticator");
            let message = AuthenticatedMessage::parse(signed.as_bytes()).expect("message");
            let params = Parameters::new(&message).with_txt_cache(&records);
            authenticator
                .verify_dkim(params)
                .await
                .iter()
                .map(|output| output.result().clone())
                .collect()
        })
    }

    #[test]
    #[allow(deprecated)] // from_pkcs8_der: the replacement needs rustls-pki-types
    fn rsa_keys_sign_and_verify_against_their_record() {
        let [rsa, _] =
            generate_pair("shop.example", &[], NOV_29, DkimKeyState::Active).expect("generate");
        assert_eq!(rsa.info.algorithm, DkimAlgorithm::RsaSha256);
        assert_eq!(rsa.info.selector, "w2m-20261129-rsa");
        let der = STANDARD.decode(&rsa.record.private_key).expect("base64");
        let key = RsaKey::<Sha256>::from_pkcs8_der(&der).expect("mail-auth loads the PKCS#8");
        let record = record_value(&rsa.info);
        assert!(record.starts_with("v=DKIM1; k=rsa; p=MII"), "{record}");
        let name = record_name(&rsa.info.selector, "shop.example");
        assert_eq!(name, "w2m-20261129-rsa._domainkey.shop.example");

        let signed = sign(key, &rsa.info.selector, MESSAGE);
        assert_eq!(verify(&signed, &name, &record), [DkimResult::Pass]);

        // A changed body does not pass (mail-auth calls a body hash mismatch
        // neutral), a changed header fails, and so does another key's record.
        let tampered = signed.replace("Hello Bob.", "Hello Eve.");
        let result = verify(&tampered, &name, &record);
        assert!(
            matches!(result[..], [DkimResult::Neutral(_)])
                && format!("{result:?}").contains("FailedBodyHashMatch"),
            "{result:?}"
        );
        let tampered = signed.replace("Subject: keys", "Subject: other");
        let result = verify(&tampered, &name, &record);
        assert!(matches!(result[..], [DkimResult::Fail(_)]), "{result:?}");
        let other = generate(
            "shop.example",
            "x",
            DkimAlgorithm::RsaSha256,
            NOV_29,
            DkimKeyState::Active,
        )
        .expect("generate");
        assert!(matches!(
            verify(&signed, &name, &record_value(&other.info))[..],
            [DkimResult::Fail(_)]
        ));
    }

    #[test]
    fn ed25519_keys_sign_and_verify_against_their_record() {
        let [_, ed] =
            generate_pair("shop.example", &[], NOV_29, DkimKeyState::Pending).expect("generate");
        assert_eq!(ed.info.algorithm, DkimAlgorithm::Ed25519Sha256);
        assert_eq!(ed.info.state, DkimKeyState::Pending);
        assert_eq!(ed.info.selector, "w2m-20261129-ed");
        let der = STANDARD.decode(&ed.record.private_key).expect("base64");
        let key = Ed25519Key::from_pkcs8_der(&der).expect("mail-auth loads the PKCS#8");
        // RFC 8463: p= is the bare 32-byte key.
        assert_eq!(STANDARD.decode(&ed.info.public_key).expect("p").len(), 32);
        assert_eq!(
            key.public_key(),
            STANDARD.decode(&ed.info.public_key).expect("p")
        );
        let record = record_value(&ed.info);
        assert!(record.starts_with("v=DKIM1; k=ed25519; p="), "{record}");
        let name = record_name(&ed.info.selector, "shop.example");

        let signed = sign(key, &ed.info.selector, MESSAGE);
        assert_eq!(verify(&signed, &name, &record), [DkimResult::Pass]);
        let tampered = signed.replace("Subject: keys", "Subject: other");
        assert!(matches!(
            verify(&tampered, &name, &record)[..],
            [DkimResult::Fail(_)]
        ));
    }

    #[test]
    fn keys_are_fresh_and_debug_hides_them() {
        let [a, b] =
            generate_pair("shop.example", &[], NOV_29, DkimKeyState::Active).expect("generate");
        let [c, d] =
            generate_pair("shop.example", &[], NOV_29, DkimKeyState::Active).expect("generate");
        assert_ne!(a.record.private_key, c.record.private_key);
        assert_ne!(b.record.private_key, d.record.private_key);
        assert_ne!(a.info.public_key, c.info.public_key);
        let shown = format!("{a:?} {b:?}");
        assert!(!shown.contains(&a.record.private_key));
        assert!(!shown.contains(&b.record.private_key));
        assert!(shown.contains("<redacted>"));
        assert_eq!(a.record.domain, "shop.example");
        assert_eq!(a.record.selector, a.info.selector);
    }

    #[test]
    fn selectors_are_unique_per_domain() {
        assert_eq!(
            pair_selectors([], NOV_29),
            ("w2m-20261129-rsa".into(), "w2m-20261129-ed".into())
        );
        assert_eq!(
            pair_selectors(["w2m-20261129-rsa", "w2m-20261129-ed"], NOV_29),
            ("w2m-20261129-2-rsa".into(), "w2m-20261129-2-ed".into())
        );
        // After the first pair of the day was deleted, numbering still goes up.
        assert_eq!(
            pair_selectors(["w2m-20261129-2-ed"], NOV_29),
            ("w2m-20261129-3-rsa".into(), "w2m-20261129-3-ed".into())
        );
        // Other days and foreign selectors do not count.
        assert_eq!(
            pair_selectors(
                [
                    "w2m-20261128-rsa",
                    "w2m-20261129x-rsa",
                    "default",
                    "w2m-20261129-a-rsa"
                ],
                NOV_29
            ),
            ("w2m-20261129-rsa".into(), "w2m-20261129-ed".into())
        );
        // Rotating again and again on one day never repeats a selector.
        let mut keys: Vec<DkimKeyInfo> = Vec::new();
        for _ in 0..4 {
            let (rsa, ed) = pair_selectors(keys.iter().map(|k| k.selector.as_str()), NOV_29);
            for selector in [rsa, ed] {
                assert!(
                    keys.iter().all(|k| k.selector != selector),
                    "{selector} repeated"
                );
                keys.push(DkimKeyInfo {
                    selector,
                    algorithm: DkimAlgorithm::RsaSha256,
                    state: DkimKeyState::Active,
                    public_key: String::new(),
                    created_at: NOV_29,
                });
            }
        }
        assert_eq!(keys[7].selector, "w2m-20261129-4-ed");
        // Every selector is one DNS label.
        for k in &keys {
            assert!(k.selector.len() <= 63);
            assert!(k
                .selector
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'));
        }
    }
}
