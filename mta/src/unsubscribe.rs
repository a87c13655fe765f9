//! One-click unsubscribe (RFC 8058) for tenants that have it on
//! (`way2mail tenant update T --list-unsubscribe on`).
//!
//! A message of such a tenant, with exactly one recipient and no
//! `List-Unsubscribe` of its own, gets, before it is DKIM-signed (both fields are
//! among the signed ones):
//!
//! ```text
//! List-Unsubscribe: <https://PUBLIC/v1/unsubscribe/TOKEN>
//! List-Unsubscribe-Post: List-Unsubscribe=One-Click
//! ```
//!
//! TOKEN is the tenant and the recipient, sealed (AES-256-GCM) with the tenant's
//! data key, base64url: it names the recipient only to us, cannot be forged or
//! altered, and stops working when the tenant is erased (its key is shredded).
//! `POST /v1/unsubscribe/TOKEN` (no API key: the token is the authority) puts the
//! recipient on the tenant's suppression list through control. A message with
//! several recipients gets no header: one link cannot say which of them asked.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use way2mail_queue::Spool;
use way2mail_smtp::{Envelope, MessageId};

use crate::session::{Live, Shared};

/// The associated data of every token: a token is nothing else's ciphertext.
const AAD: &[u8] = b"way2mail one-click unsubscribe 1";
/// The longest token accepted (a sealed tenant name and address, base64url).
const MAX_TOKEN: usize = 1024;

/// What a token names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub tenant: String,
    pub address: String,
    /// The message that carried the link.
    pub message: MessageId,
}

/// A token naming `address` of message `message` for `tenant`.
pub fn token(
    spool: &Spool,
    tenant: &str,
    address: &str,
    message: &MessageId,
) -> Result<String, way2mail_queue::Error> {
    let key = spool.keyring().tenant(tenant)?;
    let payload = format!("{tenant}\n{message}\n{address}");
    let sealed = way2mail_seal::record::seal(&key, AAD, payload.as_bytes())?;
    Ok(URL_SAFE_NO_PAD.encode(sealed))
}

/// What a token names; `None` for anything that is not one of ours (or whose
/// tenant was erased).
pub fn open(spool: &Spool, token: &str) -> Option<Link> {
    if token.is_empty() || token.len() > MAX_TOKEN {
        return None;
    }
    let sealed = URL_SAFE_NO_PAD.decode(token).ok()?;
    let payload = spool.keyring().open_record(AAD, sealed).ok()?;
    let text = String::from_utf8(payload).ok()?;
    let mut parts = text.splitn(3, '\n');
    let (tenant, message, address) = (parts.next()?, parts.next()?, parts.next()?);
    Some(Link {
        tenant: tenant.to_string(),
        address: address.to_string(),
        message: message.parse().ok()?,
    })
}

/// The two fields for `envelope`, when its tenant has one-click unsubscribe on
/// and it has exactly one recipient; `None` otherwise.
pub fn fields(shared: &Shared, live: &Live, id: &MessageId, envelope: &Envelope) -> Option<String> {
    let tenant = envelope.origin.tenant.as_deref()?;
    let [recipient] = envelope.recipients.as_slice() else {
        return None;
    };
    let directory = shared.tenants.as_ref()?.directory()?;
    if !directory.tenant(tenant)?.list_unsubscribe {
        return None;
    }
    let token = match token(&shared.spool, tenant, &recipient.address, id) {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(tenant, error = %e, "no unsubscribe link: the token could not be sealed");
            return None;
        }
    };
    let settings = &live.settings;
    let base = settings.raw.api.base_url(&settings.raw.hostname);
    Some(format!(
        "List-Unsubscribe: <{base}/v1/unsubscribe/{token}>\r\n\
         List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
    ))
}

/// Where the header section of `message` ends (the offset of its empty line).
fn header_end(message: &[u8]) -> Option<usize> {
    if message.starts_with(b"\r\n") {
        return Some(0);
    }
    Some(message.windows(4).position(|w| w == b"\r\n\r\n")? + 2)
}

/// Whether `header` has a field named `name` (any case).
fn has_field(header: &[u8], name: &str) -> bool {
    let n = name.len();
    header.split(|&b| b == b'\n').any(|line| {
        line.len() > n && line[..n].eq_ignore_ascii_case(name.as_bytes()) && line[n] == b':'
    })
}

/// `message` with `fields` at the end of its header section, unless it has a
/// `List-Unsubscribe` of its own or no header section.
#[cfg(test)]
fn add(message: Vec<u8>, fields: &str) -> Vec<u8> {
    add_missing(message, &[("List-Unsubscribe", fields)])
}

/// `message` with each `(name, lines)` of `fields` whose field `name` it does not
/// have yet at the end of its header section, in one copy; unchanged when it has
/// no header section.
pub fn add_missing(message: Vec<u8>, fields: &[(&str, &str)]) -> Vec<u8> {
    let Some(end) = header_end(&message) else {
        return message;
    };
    let missing: Vec<&str> = fields
        .iter()
        .filter(|(name, _)| !has_field(&message[..end], name))
        .map(|(_, lines)| *lines)
        .collect();
    if missing.is_empty() {
        return message;
    }
    let extra: usize = missing.iter().map(|l| l.len()).sum();
    let mut out = Vec::with_capacity(message.len() + extra);
    out.extend_from_slice(&message[..end]);
    for lines in missing {
        out.extend_from_slice(lines.as_bytes());
    }
    out.extend_from_slice(&message[end..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIELDS: &str = "List-Unsubscribe: <https://h/v1/unsubscribe/T>\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n";

    #[test]
    fn fields_go_at_the_end_of_the_header_section() {
        let m = b"Received: x\r\nFrom: a@b.example\r\n\r\nbody\r\n\r\nmore\r\n".to_vec();
        let out = add(m, FIELDS);
        let text = String::from_utf8(out).expect("utf-8");
        assert!(text.starts_with("Received: x\r\nFrom: a@b.example\r\nList-Unsubscribe: <https://h/v1/unsubscribe/T>\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n\r\nbody"), "{text}");
    }

    #[test]
    fn a_message_with_its_own_link_or_no_header_is_left_alone() {
        let own =
            b"From: a@b.example\r\nlist-unsubscribe: <mailto:x@b.example>\r\n\r\nbody\r\n".to_vec();
        assert_eq!(add(own.clone(), FIELDS), own);
        let headerless = b"no header end at all".to_vec();
        assert_eq!(add(headerless.clone(), FIELDS), headerless);
    }

    #[test]
    fn only_missing_fields_are_added() {
        let m = b"From: a@b.example\r\nFeedback-ID: x:acme:way2mail\r\n\r\nbody\r\n".to_vec();
        let out = add_missing(
            m,
            &[
                ("List-Unsubscribe", FIELDS),
                ("Feedback-ID", "Feedback-ID: y:acme:way2mail\r\n"),
            ],
        );
        let text = String::from_utf8(out).expect("utf-8");
        assert_eq!(text.matches("Feedback-ID:").count(), 1, "{text}");
        assert!(text.contains("x:acme"), "{text}");
        assert!(text.contains("List-Unsubscribe-Post"), "{text}");
        // A field whose name only starts alike is another field.
        let m = b"Feedback-IDs: z\r\n\r\nbody".to_vec();
        let out = add_missing(m, &[("Feedback-ID", "Feedback-ID: y:acme:way2mail\r\n")]);
        assert!(String::from_utf8(out).expect("utf-8").contains("y:acme"));
    }

    #[test]
    fn tokens_open_only_with_the_keyring_that_sealed_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = dir.path().join("spool.key");
        let master = way2mail_seal::MasterKey::load_or_create(&key).expect("key");
        let keyring =
            way2mail_seal::Keyring::open(&key.with_extension("keyring"), master).expect("keyring");
        let spool = Spool::open(&dir.path().join("spool"), keyring).expect("spool");
        let id = MessageId::generate();
        let t = token(&spool, "acme", "Bob@Remote.example", &id).expect("token");
        assert!(t.len() < 200, "{t}");
        assert!(t
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        let link = Link {
            tenant: "acme".into(),
            address: "Bob@Remote.example".into(),
            message: id,
        };
        assert_eq!(open(&spool, &t), Some(link));
        // Altered, truncated, or junk: nothing.
        let mut altered = t.clone().into_bytes();
        altered[10] = if altered[10] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            open(&spool, &String::from_utf8(altered).expect("ascii")),
            None
        );
        assert_eq!(open(&spool, &t[..t.len() - 2]), None);
        assert_eq!(open(&spool, "!!"), None);
        // Erasing the tenant shreds its key: its links stop working.
        spool.erase_tenant("acme").expect("erase");
        assert_eq!(open(&spool, &t), None);
    }
}
