//! DKIM signing (sans-IO): which headers to sign, the `BIMI-Selector:` field, and the
//! `DKIM-Signature:` fields to prepend. No clock of our own (mail-auth stamps `t=`), no
//! DNS, no key storage: the caller passes parsed [`Key`]s and gets a new message back.
//!
//! ```text
//!   sign_message(message, domain, keys, bimi)
//!     ├── bimi: every BIMI-Selector field removed, `BIMI-Selector: v=BIMI1; s=SEL` prepended
//!     ├── h=: the names of SIGNED_HEADERS present in the message (each occurrence signed,
//!     │       bottom-up, as RFC 6376 §5.4.2 says) plus one more `From` (over-signing: a
//!     │       From added later breaks the signature); absent names are not listed
//!     ├── one signature per key (rsa-sha256, ed25519-sha256), c=relaxed/relaxed, d=domain
//!     └── DKIM-Signature fields (in key order) + [BIMI-Selector] + the message
//! ```
//!
//! mail-auth's `DkimSigner` signs every occurrence of each name it is given and also
//! lists each given name it did not find; so it is given, per message, exactly the names
//! present plus one extra `From`, which it then lists once more than `From` occurs.
//! Header fields are found the way mail-auth finds them (name = the bytes before the
//! colon, compared without regard to case), so the two never disagree on what is present.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use mail_auth::common::crypto::{Algorithm, DkimKey, Ed25519Key, RsaKey, Sha256, SigningKey};
use mail_auth::common::headers::{HeaderWriter, Writable};
use mail_auth::dkim::{Canonicalization, DkimSigner};
use mail_parser::parsers::MessageStream;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use way2mail_wire::protocol::DkimAlgorithm;
use zeroize::Zeroizing;

/// The fields signed when present: RFC 6376 §5.4.1's recommendation, then
/// `List-Unsubscribe-Post` (RFC 8058 §4 requires it signed for one-click unsubscribe),
/// `Message-ID`, the MIME fields and `BIMI-Selector`. `From` is always listed once
/// more than it occurs.
pub const SIGNED_HEADERS: [&str; 25] = [
    "From",
    "Reply-To",
    "Subject",
    "Date",
    "To",
    "Cc",
    "Resent-Date",
    "Resent-From",
    "Resent-To",
    "Resent-Cc",
    "In-Reply-To",
    "References",
    "List-Id",
    "List-Help",
    "List-Unsubscribe",
    "List-Subscribe",
    "List-Post",
    "List-Owner",
    "List-Archive",
    "List-Unsubscribe-Post",
    "Message-ID",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "BIMI-Selector",
];

const BIMI_SELECTOR: &str = "BIMI-Selector";

/// Why a key could not be loaded or a message not signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// The private key is not base64, or not a PKCS#8 key of its algorithm.
    #[error("DKIM key {selector}: {reason}")]
    Key { selector: String, reason: String },
    /// A selector or domain that cannot appear in a header field as it is.
    #[error("not usable in a header field: {0:?}")]
    BadName(String),
    /// Signing was called without keys.
    #[error("no DKIM key to sign with")]
    NoKeys,
    /// mail-auth failed to sign (a crypto library error).
    #[error("DKIM signing failed: {0}")]
    Sign(String),
}

/// One private key with its selector, parsed once and used for many messages.
pub struct Key {
    selector: String,
    algorithm: DkimAlgorithm,
    key: DkimKey,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("selector", &self.selector)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl Key {
    /// A key from its PKCS#8 DER (what control generates: RSA-2048 or Ed25519).
    pub fn from_pkcs8(
        selector: &str,
        algorithm: DkimAlgorithm,
        der: &[u8],
    ) -> Result<Key, SignError> {
        if !is_token(selector) {
            return Err(SignError::BadName(selector.to_owned()));
        }
        let bad = |e: mail_auth::Error| SignError::Key {
            selector: selector.to_owned(),
            reason: format!("not a PKCS#8 {} key ({e})", algorithm.as_str()),
        };
        let key = match algorithm {
            DkimAlgorithm::RsaSha256 => DkimKey::Rsa(
                RsaKey::<Sha256>::from_key_der(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(der)))
                    .map_err(bad)?,
            ),
            DkimAlgorithm::Ed25519Sha256 => {
                DkimKey::Ed25519(Ed25519Key::from_pkcs8_der(der).map_err(bad)?)
            }
        };
        Ok(Key {
            selector: selector.to_owned(),
            algorithm,
            key,
        })
    }

    /// A key as the control snapshot carries it: PKCS#8 DER in standard base64.
    pub fn from_base64(
        selector: &str,
        algorithm: DkimAlgorithm,
        base64: &str,
    ) -> Result<Key, SignError> {
        let der = Zeroizing::new(STANDARD.decode(base64.trim()).map_err(|_| SignError::Key {
            selector: selector.to_owned(),
            reason: "not base64".into(),
        })?);
        Key::from_pkcs8(selector, algorithm, &der)
    }

    pub fn selector(&self) -> &str {
        &self.selector
    }

    pub fn algorithm(&self) -> DkimAlgorithm {
        self.algorithm
    }
}

/// Lends a stored key to one `DkimSigner` (mail-auth's signer owns its key).
struct Lent<'a>(&'a DkimKey);

impl SigningKey for Lent<'_> {
    type Hasher = Sha256;

    fn sign(&self, input: impl Writable) -> mail_auth::Result<Vec<u8>> {
        self.0.sign(input)
    }

    fn algorithm(&self) -> Algorithm {
        self.0.algorithm()
    }
}

/// One header field: where its name is and where the whole field (with its line
/// break) is in the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    /// Bytes before the colon (the whole line for a line without one).
    pub name: (usize, usize),
    /// From the start of the name to after the field's last line break.
    pub whole: (usize, usize),
}

impl Field {
    pub fn name<'m>(&self, message: &'m [u8]) -> &'m [u8] {
        &message[self.name.0..self.name.1]
    }

    pub fn value<'m>(&self, message: &'m [u8]) -> &'m [u8] {
        let start = (self.name.1 + 1).min(self.whole.1);
        &message[start..self.whole.1]
    }

    /// Whether this field's name is `name` (ASCII case-insensitive).
    pub fn is(&self, message: &[u8], name: &str) -> bool {
        self.name(message).eq_ignore_ascii_case(name.as_bytes())
    }
}

/// The header fields of `message`, top to bottom, and where the body starts. A field
/// starts at the beginning of a line, continues over lines that start with a space or
/// a tab, and the section ends at the first empty line (or the end of the message).
pub fn fields(message: &[u8]) -> (Vec<Field>, usize) {
    let mut out = Vec::with_capacity(16);
    let mut pos = 0;
    while pos < message.len() {
        let rest = &message[pos..];
        if rest.starts_with(b"\r\n") {
            return (out, pos + 2);
        }
        if rest.starts_with(b"\n") {
            return (out, pos + 1);
        }
        let end = field_end(message, pos);
        let line_end = memchr_from(message, pos, b'\n').unwrap_or(message.len());
        let name_end = message[pos..line_end]
            .iter()
            .position(|&b| b == b':')
            .map_or(end, |i| pos + i);
        out.push(Field {
            name: (pos, name_end),
            whole: (pos, end),
        });
        pos = end;
    }
    (out, message.len())
}

/// The end of the field starting at `start`: after the first line break not followed
/// by a space or a tab.
fn field_end(message: &[u8], start: usize) -> usize {
    let mut pos = start;
    loop {
        match memchr_from(message, pos, b'\n') {
            None => return message.len(),
            Some(nl) => match message.get(nl + 1) {
                Some(b' ' | b'\t') => pos = nl + 1,
                _ => return nl + 1,
            },
        }
    }
}

fn memchr_from(haystack: &[u8], from: usize, needle: u8) -> Option<usize> {
    haystack
        .get(from..)?
        .iter()
        .position(|&b| b == needle)
        .map(|i| from + i)
}

/// The `h=` list to hand to mail-auth for `message`: each name of [`SIGNED_HEADERS`]
/// that occurs (once, whatever its count), then `From` once more.
pub fn headers_to_sign(message: &[u8]) -> Vec<&'static str> {
    let (fields, _) = fields(message);
    let mut names: Vec<&'static str> = SIGNED_HEADERS
        .iter()
        .copied()
        .filter(|name| fields.iter().any(|f| f.is(message, name)))
        .collect();
    names.push("From");
    names
}

/// The domain of the `From:` field, lower-case, without a trailing dot: `None` unless
/// there is exactly one `From:` field and every mailbox in it has the same domain.
pub fn from_domain(message: &[u8]) -> Option<String> {
    let (fields, _) = fields(message);
    let mut from = fields.iter().filter(|f| f.is(message, "From"));
    let field = from.next()?;
    if from.next().is_some() {
        return None;
    }
    let value = field.value(message);
    let address = MessageStream::new(value).parse_address().into_address()?;
    let mut domain: Option<String> = None;
    for addr in address.iter() {
        let d = addr
            .address()
            .and_then(|a| a.rsplit_once('@'))
            .map(|(_, d)| d.trim().trim_end_matches('.').to_ascii_lowercase())
            .filter(|d| !d.is_empty())?;
        match &domain {
            Some(seen) if *seen != d => return None,
            Some(_) => {}
            None => domain = Some(d),
        }
    }
    domain
}

/// `message` with every `BIMI-Selector:` field removed and ours put on top.
pub fn with_bimi_selector(message: &[u8], selector: &str) -> Result<Vec<u8>, SignError> {
    if !is_token(selector) {
        return Err(SignError::BadName(selector.to_owned()));
    }
    let field = format!("{BIMI_SELECTOR}: v=BIMI1; s={selector}\r\n");
    let (fields, _) = fields(message);
    let mut out = Vec::with_capacity(field.len() + message.len());
    out.extend_from_slice(field.as_bytes());
    let mut copied = 0;
    for f in fields.iter().filter(|f| f.is(message, BIMI_SELECTOR)) {
        out.extend_from_slice(&message[copied..f.whole.0]);
        copied = f.whole.1;
    }
    out.extend_from_slice(&message[copied..]);
    Ok(out)
}

/// The `DKIM-Signature:` fields for `message`, one per key in `keys` order, each
/// ending in CRLF, ready to be put on top of the message.
pub fn signatures(message: &[u8], domain: &str, keys: &[Key]) -> Result<Vec<u8>, SignError> {
    if keys.is_empty() {
        return Err(SignError::NoKeys);
    }
    if !is_domain(domain) {
        return Err(SignError::BadName(domain.to_owned()));
    }
    let headers = headers_to_sign(message);
    let mut out = Vec::with_capacity(600 * keys.len());
    for key in keys {
        let signature = DkimSigner::from_key(Lent(&key.key))
            .domain(domain)
            .selector(key.selector.as_str())
            .headers(headers.iter().copied())
            .header_canonicalization(Canonicalization::Relaxed)
            .body_canonicalization(Canonicalization::Relaxed)
            .sign(message)
            .map_err(|e| SignError::Sign(e.to_string()))?;
        out.extend_from_slice(signature.to_header().as_bytes());
    }
    Ok(out)
}

/// The whole step: the `BIMI-Selector:` field when `bimi_selector` is set, then one
/// signature per key over the result, prepended. The returned message is what gets
/// spooled.
pub fn sign_message(
    message: Vec<u8>,
    domain: &str,
    keys: &[Key],
    bimi_selector: Option<&str>,
) -> Result<Vec<u8>, SignError> {
    let message = match bimi_selector {
        Some(selector) => with_bimi_selector(&message, selector)?,
        None => message,
    };
    let signatures = signatures(&message, domain, keys)?;
    let mut out = Vec::with_capacity(signatures.len() + message.len());
    out.extend_from_slice(&signatures);
    out.extend_from_slice(&message);
    Ok(out)
}

/// Where the pieces of a body come from, for [`sign_head`]: calls its argument with
/// each piece in order.
pub type BodyPieces<'a> = dyn FnMut(&mut dyn FnMut(&[u8])) -> Result<(), SignError> + 'a;

/// [`sign_message`] for a message that is not held whole: `header` is its header
/// section (the empty line included) and `body` gives the rest in pieces, once.
/// Returns what replaces `header` at the top of the message: the signatures, then
/// the header section (with the `BIMI-Selector:` field when `bimi_selector` is
/// set). The signatures are those `sign_message` makes of the same message.
pub fn sign_head(
    header: &[u8],
    domain: &str,
    keys: &[Key],
    bimi_selector: Option<&str>,
    body: &mut BodyPieces<'_>,
) -> Result<Vec<u8>, SignError> {
    if keys.is_empty() {
        return Err(SignError::NoKeys);
    }
    if !is_domain(domain) {
        return Err(SignError::BadName(domain.to_owned()));
    }
    let header = match bimi_selector {
        Some(selector) => with_bimi_selector(header, selector)?,
        None => header.to_vec(),
    };
    let names = headers_to_sign(&header);
    let signers: Vec<_> = keys
        .iter()
        .map(|key| {
            DkimSigner::from_key(Lent(&key.key))
                .domain(domain)
                .selector(key.selector.as_str())
                .headers(names.iter().copied())
                .header_canonicalization(Canonicalization::Relaxed)
                .body_canonicalization(Canonicalization::Relaxed)
        })
        .collect();
    let mut streams: Vec<_> = signers.iter().map(|s| s.sign_streaming()).collect();
    for stream in &mut streams {
        stream.write(&header);
    }
    body(&mut |piece: &[u8]| {
        for stream in streams.iter_mut() {
            stream.write(piece);
        }
    })?;
    let mut out = Vec::with_capacity(600 * keys.len() + header.len());
    for stream in streams {
        let signature = stream
            .finish()
            .map_err(|e| SignError::Sign(e.to_string()))?;
        out.extend_from_slice(signature.to_header().as_bytes());
    }
    out.extend_from_slice(&header);
    Ok(out)
}

/// A selector: DNS labels of letters, digits, `-` and `_`, separated by dots.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// A domain as `d=` carries it (A-labels; control stores domains that way).
fn is_domain(s: &str) -> bool {
    is_token(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_auth::common::parse::TxtRecordParser;
    use mail_auth::common::verify::DomainKey;
    use mail_auth::{
        AuthenticatedMessage, DkimResult, MessageAuthenticator, Parameters, ResolverCache, Txt,
    };
    use std::borrow::Borrow;
    use std::collections::HashMap;
    use std::hash::Hash;
    use std::sync::{Mutex, OnceLock};
    use std::time::Instant;

    const DOMAIN: &str = "acme.example";

    /// A TXT cache filled in advance: the verifier finds the keys without DNS.
    struct Records(Mutex<HashMap<Box<str>, Txt>>);

    impl ResolverCache<Box<str>, Txt> for Records {
        fn get<Q>(&self, name: &Q) -> Option<Txt>
        where
            Box<str>: Borrow<Q>,
            Q: Hash + Eq + ?Sized,
        {
            self.0.lock().unwrap().get(name).cloned()
        }

        fn remove<Q>(&self, name: &Q) -> Option<Txt>
        where
            Box<str>: Borrow<Q>,
            Q: Hash + Eq + ?Sized,
        {
            self.0.lock().unwrap().remove(name)
        }

        fn insert(&self, key: Box<str>, value: Txt, _: Instant) {
            self.0.lock().unwrap().insert(key, value);
        }
    }

    struct Fixture {
        keys: Vec<Key>,
        records: Records,
    }

    include!("../testdata/dkim/keys.rs");

    /// The test keys (an RSA-2048 and an Ed25519 key), with their DNS records in a
    /// cache.
    fn fixture() -> &'static Fixture {
        static FIXTURE: OnceLock<Fixture> = OnceLock::new();
        FIXTURE.get_or_init(|| {
            let records = Records(Mutex::new(HashMap::new()));
            let mut keys = Vec::new();
            for (selector, algorithm, private, public) in TEST_KEYS {
                let txt = format!("v=DKIM1; k={}; p={}", algorithm.key_type(), public.trim());
                records.insert(
                    format!("{selector}._domainkey.{DOMAIN}.").into(),
                    Txt::from(DomainKey::parse(txt.as_bytes()).expect("record")),
                    Instant::now(),
                );
                keys.push(Key::from_base64(selector, algorithm, private).expect("key"));
            }
            Fixture { keys, records }
        })
    }

    /// mail-auth's verdict for every DKIM-Signature of `message`.
    fn verify(message: &[u8]) -> Vec<DkimResult> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        // No nameserver is ever asked: every record is in the cache.
        let resolver = MessageAuthenticator::new(
            mail_auth::hickory_resolver::config::ResolverConfig::from_parts(
                None,
                Vec::new(),
                Vec::new(),
            ),
            Default::default(),
        )
        .expect("resolver");
        let parsed = AuthenticatedMessage::parse(message).expect("parse");
        let params = Parameters::new(&parsed).with_txt_cache(&fixture().records);
        rt.block_on(resolver.verify_dkim(params))
            .into_iter()
            .map(|o| o.result().clone())
            .collect()
    }

    fn message() -> Vec<u8> {
        concat!(
            "Received: from client.test by mx.way2mail.test; Mon, 1 Jan 2024 00:00:00 +0000\r\n",
            "From: Billing <billing@acme.example>\r\n",
            "To: Customer <customer@remote.example>\r\n",
            "Subject: Your invoice\r\n",
            "Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n",
            "Message-ID: <1@acme.example>\r\n",
            "MIME-Version: 1.0\r\n",
            "Content-Type: text/plain; charset=utf-8\r\n",
            "X-Mailer: test\r\n",
            "\r\n",
            "Hello,\r\n\r\nyour invoice is attached.\r\n",
        )
        .as_bytes()
        .to_vec()
    }

    fn signed(message: Vec<u8>, bimi: Option<&str>) -> Vec<u8> {
        sign_message(message, DOMAIN, &fixture().keys, bimi).expect("sign")
    }

    /// The `h=` value of each DKIM-Signature, as names.
    fn h_lists(message: &[u8]) -> Vec<Vec<String>> {
        let parsed = AuthenticatedMessage::parse(message).expect("parse");
        parsed
            .dkim_headers
            .iter()
            .map(|h| h.header.h.clone())
            .collect()
    }

    #[test]
    fn both_signatures_verify() {
        let out = signed(message(), None);
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.starts_with("DKIM-Signature: v=1; a=rsa-sha256;"),
            "{text}"
        );
        assert_eq!(text.matches("DKIM-Signature:").count(), 2);
        assert!(text.contains("a=ed25519-sha256;"), "{text}");
        assert!(text.contains("c=relaxed/relaxed"), "{text}");
        assert!(text.contains(&format!("d={DOMAIN};")), "{text}");
        assert!(
            out.ends_with(&message()),
            "the message follows the signatures"
        );
        assert_eq!(verify(&out), vec![DkimResult::Pass, DkimResult::Pass]);
    }

    #[test]
    fn a_message_signed_in_pieces_verifies_like_one_signed_whole() {
        let mut m = b"BIMI-Selector: v=BIMI1; s=old\r\n".to_vec();
        m.extend_from_slice(&message());
        m.extend(std::iter::repeat_n(b"more body text\r\n".as_slice(), 2000).flatten());
        let split = m
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("header end")
            + 4;
        let (header, body) = m.split_at(split);
        let keys = &fixture().keys;
        let head = sign_head(header, DOMAIN, keys, Some("brand"), &mut |each| {
            // Pieces cut anywhere, as the spool's parts are.
            for piece in body.chunks(1000) {
                each(piece);
            }
            Ok(())
        })
        .expect("sign");
        let streamed = [&head[..], body].concat();
        assert_eq!(verify(&streamed), vec![DkimResult::Pass, DkimResult::Pass]);
        let whole = signed(m.clone(), Some("brand"));
        // The same message under the same kinds of signatures (only `b=` and `t=`
        // may differ).
        let after_signatures = |x: &[u8]| {
            let text = String::from_utf8_lossy(x).into_owned();
            text[text.find("BIMI-Selector:").expect("bimi")..].to_owned()
        };
        assert_eq!(after_signatures(&streamed), after_signatures(&whole));
        assert_eq!(h_lists(&streamed), h_lists(&whole));
        assert!(matches!(
            sign_head(header, DOMAIN, &[], None, &mut |_| Ok(())),
            Err(SignError::NoKeys)
        ));
    }

    #[test]
    fn from_is_over_signed_and_absent_fields_are_not_listed() {
        let out = signed(message(), None);
        for h in h_lists(&out) {
            let lower: Vec<String> = h.iter().map(|n| n.to_ascii_lowercase()).collect();
            assert_eq!(lower.iter().filter(|n| *n == "from").count(), 2, "{h:?}");
            for present in [
                "to",
                "subject",
                "date",
                "message-id",
                "mime-version",
                "content-type",
            ] {
                assert_eq!(
                    lower.iter().filter(|n| *n == present).count(),
                    1,
                    "{present} in {h:?}"
                );
            }
            for absent in [
                "cc",
                "reply-to",
                "list-id",
                "references",
                "bimi-selector",
                "received",
                "x-mailer",
            ] {
                assert!(!lower.iter().any(|n| n == absent), "{absent} in {h:?}");
            }
            assert_eq!(h.len(), 8, "{h:?}");
        }
    }

    #[test]
    fn every_occurrence_is_signed_and_from_once_more() {
        let mut m = b"To: a@remote.example\r\nTo: b@remote.example\r\n".to_vec();
        m.extend_from_slice(&message());
        let out = signed(m, None);
        for h in h_lists(&out) {
            let count = |name: &str| h.iter().filter(|n| n.eq_ignore_ascii_case(name)).count();
            assert_eq!((count("To"), count("From")), (3, 2), "{h:?}");
        }
        assert_eq!(verify(&out), vec![DkimResult::Pass, DkimResult::Pass]);
    }

    #[test]
    fn a_changed_body_fails() {
        let out = signed(message(), None);
        let text = String::from_utf8(out).expect("utf-8");
        let tampered = text.replace("your invoice is attached", "your invoice is overdue");
        assert_ne!(tampered, text);
        let body_hash = DkimResult::Neutral(mail_auth::Error::Dkim(
            mail_auth::dkim::DkimError::FailedBodyHashMatch,
        ));
        assert_eq!(
            verify(tampered.as_bytes()),
            vec![body_hash.clone(), body_hash]
        );
    }

    #[test]
    fn a_second_from_added_later_fails() {
        let out = signed(message(), None);
        // Added at the bottom of the header section (where a verifier looks first) and
        // at the top: either way the over-signed From no longer matches.
        let text = String::from_utf8(out).expect("utf-8");
        let bottom = text.replacen(
            "X-Mailer: test\r\n",
            "X-Mailer: test\r\nFrom: ceo@acme.example\r\n",
            1,
        );
        let top = format!("From: ceo@acme.example\r\n{text}");
        for tampered in [bottom, top] {
            let results = verify(tampered.as_bytes());
            assert_eq!(results.len(), 2);
            for r in results {
                assert!(matches!(r, DkimResult::Fail(_)), "{r:?}");
            }
        }
        // A field that is not signed may be added: the signatures still pass.
        let harmless = text.replacen("X-Mailer: test\r\n", "X-Mailer: test\r\nX-Extra: 1\r\n", 1);
        assert_eq!(
            verify(harmless.as_bytes()),
            vec![DkimResult::Pass, DkimResult::Pass]
        );
    }

    #[test]
    fn a_changed_signed_header_fails_and_relaxed_tolerates_whitespace() {
        let text = String::from_utf8(signed(message(), None)).expect("utf-8");
        let changed = text.replace("Subject: Your invoice", "Subject: Your refund");
        let results = verify(changed.as_bytes());
        assert_eq!(results.len(), 2);
        for r in results {
            assert!(matches!(r, DkimResult::Fail(_)), "{r:?}");
        }
        let spaced = text.replace("Subject: Your invoice", "subject:   Your   invoice  ");
        assert_eq!(
            verify(spaced.as_bytes()),
            vec![DkimResult::Pass, DkimResult::Pass]
        );
    }

    #[test]
    fn bimi_selector_is_set_replaced_and_signed() {
        let mut m = b"BIMI-Selector: v=BIMI1; s=client-choice\r\n".to_vec();
        m.extend_from_slice(&message());
        let mut with_inner = message();
        let at = with_inner
            .windows(9)
            .position(|w| w == b"X-Mailer:")
            .expect("X-Mailer");
        with_inner.splice(
            at..at,
            b"bimi-selector: v=BIMI1;\r\n s=folded\r\n".iter().copied(),
        );
        for input in [message(), m, with_inner] {
            let out = signed(input, Some("brand"));
            let text = String::from_utf8_lossy(&out);
            assert_eq!(
                text.to_ascii_lowercase().matches("bimi-selector:").count(),
                1,
                "{text}"
            );
            assert!(
                text.contains("\r\nBIMI-Selector: v=BIMI1; s=brand\r\nReceived:"),
                "{text}"
            );
            for h in h_lists(&out) {
                assert!(h.iter().any(|n| n == "BIMI-Selector"), "{h:?}");
            }
            assert_eq!(verify(&out), vec![DkimResult::Pass, DkimResult::Pass]);
            let changed = text.replace("s=brand", "s=other");
            let results = verify(changed.as_bytes());
            assert_eq!(results.len(), 2);
            for r in results {
                assert!(matches!(r, DkimResult::Fail(_)), "{r:?}");
            }
        }
        assert!(matches!(
            with_bimi_selector(b"From: a@b\r\n\r\n", "bad\r\nX-Injected: 1"),
            Err(SignError::BadName(_))
        ));
    }

    #[test]
    fn messages_without_from_or_body_still_sign() {
        let out = signed(b"Subject: no from\r\n\r\n".to_vec(), None);
        for h in h_lists(&out) {
            assert_eq!(h, vec!["Subject".to_string(), "From".to_string()]);
        }
        assert_eq!(verify(&out), vec![DkimResult::Pass, DkimResult::Pass]);
        // Header section only, no blank line.
        let out = signed(b"From: a@acme.example\r\n".to_vec(), None);
        assert_eq!(verify(&out), vec![DkimResult::Pass, DkimResult::Pass]);
    }

    #[test]
    fn from_domain_is_the_single_domain_of_the_single_from() {
        let case = |headers: &str| from_domain(format!("{headers}\r\nbody\r\n").as_bytes());
        assert_eq!(
            case("From: Billing <Billing@ACME.Example>\r\n").as_deref(),
            Some("acme.example")
        );
        assert_eq!(
            case("Received: x\r\nfrom: a@acme.example.\r\n").as_deref(),
            Some("acme.example")
        );
        assert_eq!(
            case("From: \"Doe, J\" <j@acme.example>,\r\n b@acme.example\r\n").as_deref(),
            Some("acme.example")
        );
        assert_eq!(
            case("From: (comment) \"x@evil.example\" <a@acme.example>\r\n").as_deref(),
            Some("acme.example")
        );
        assert_eq!(case("From: a@acme.example, b@other.example\r\n"), None);
        assert_eq!(
            case("From: a@acme.example\r\nFrom: a@acme.example\r\n"),
            None
        );
        assert_eq!(case("To: a@acme.example\r\n"), None);
        assert_eq!(case("From: undisclosed\r\n"), None);
        assert_eq!(case("From: a@\r\n"), None);
        // The body is not the header section.
        assert_eq!(
            from_domain(b"Subject: x\r\n\r\nFrom: a@acme.example\r\n"),
            None
        );
    }

    #[test]
    fn fields_follow_folding_and_stop_at_the_blank_line() {
        let m = b"A: 1\r\nB: 2\r\n  more\r\n\tand more\r\nno colon\r\nC:3\n\nbody: x\r\n";
        let (f, body) = fields(m);
        let names: Vec<&[u8]> = f.iter().map(|f| f.name(m)).collect();
        assert_eq!(
            names,
            vec![&b"A"[..], b"B", b"no colon\r\n", b"C"],
            "{:?}",
            f
        );
        assert_eq!(f[1].value(m), b" 2\r\n  more\r\n\tand more\r\n");
        assert_eq!(&m[body..], b"body: x\r\n");
        let (f, body) = fields(b"");
        assert!(f.is_empty());
        assert_eq!(body, 0);
        let (f, body) = fields(b"A: unterminated");
        assert_eq!((f.len(), body), (1, 15));
    }

    #[test]
    fn keys_and_names_are_checked() {
        let k = &fixture().keys;
        assert_eq!(k[0].algorithm(), DkimAlgorithm::RsaSha256);
        assert_eq!(k[1].algorithm(), DkimAlgorithm::Ed25519Sha256);
        assert!(
            !format!("{:?}", k[0]).contains("key:"),
            "no key material in Debug"
        );
        assert!(matches!(
            Key::from_base64("s", DkimAlgorithm::RsaSha256, "!!"),
            Err(SignError::Key { .. })
        ));
        assert!(matches!(
            Key::from_base64("s", DkimAlgorithm::Ed25519Sha256, "AAAA"),
            Err(SignError::Key { .. })
        ));
        assert!(matches!(
            Key::from_base64("bad selector", DkimAlgorithm::Ed25519Sha256, "AAAA"),
            Err(SignError::BadName(_))
        ));
        assert_eq!(
            sign_message(message(), DOMAIN, &[], None),
            Err(SignError::NoKeys)
        );
        assert!(matches!(
            sign_message(message(), "acme.example;x=1", k, None),
            Err(SignError::BadName(_))
        ));
    }
}
