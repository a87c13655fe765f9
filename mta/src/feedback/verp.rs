//! VERP return paths: tenant mail leaves with the envelope sender
//! `b-TOKEN@BOUNCES-DOMAIN`, so that a bounce or complaint coming back to that
//! address names, by itself, the tenant, the message and the recipient it is about.
//!
//! TOKEN is 36 bytes in lower-case base32 (58 characters; with `b-` the local part is
//! 60 octets, within RFC 5321's 64):
//!
//! ```text
//!   key_id      8   the tenant's data key id, big-endian (KeyId)
//!   message    16   the queue id (MessageId::as_bytes)
//!   recipient   4   blind_index("way2mail verp recipient 1\0" || lowercase(rcpt))[..4]
//!   mac         8   blind_index("way2mail verp 1\0" || the 28 bytes above)[..8]
//! ```
//!
//! Why this shape:
//!
//! - The key id, not the tenant name, is in the clear: the keyring maps it back to
//!   the tenant, and outsiders (who see every return path) learn no name.
//! - The recipient is a 4-byte keyed tag, not the address: a bounce names its failed
//!   recipient itself (Final-Recipient, a qmail `<addr>:` block), and the tag only
//!   confirms that the address it names is the one this copy went to. 32 bits make a
//!   wrong address match once in four billion, which is all a confirmation needs;
//!   the address never appears in the envelope of other recipients' copies.
//! - The MAC is keyed by the tenant's data key (its blind-index key), so a token
//!   cannot be forged or altered without it, and when the tenant is erased (its key
//!   shredded) its tokens stop verifying: bounces for an erased tenant are dropped.
//!   64 bits are plenty against online guessing, which is the only attack (each
//!   guess is one message to our bounces domain).
//! - Base32, lower case: local parts pass through systems that fold case, so the
//!   token must survive upper-casing (decoding ignores case), and it has no `+`,
//!   `-` or `=` that a system might treat as an address extension.

use aws_lc_rs::constant_time::verify_slices_are_equal;
use way2mail_seal::{DataKey, KeyId, Keyring, Lookup};
use way2mail_smtp::MessageId;

use super::base32;

/// What starts every VERP local part.
const PREFIX: &str = "b-";
/// Token bytes: key id, message id, recipient tag, MAC.
const TOKEN_BYTES: usize = 8 + 16 + 4 + 8;
/// The bytes the MAC covers.
const SIGNED_BYTES: usize = TOKEN_BYTES - 8;
/// Base32 characters of a token: ceil(36 * 8 / 5).
pub const TOKEN_CHARS: usize = 58;
/// The longest address `verify` looks at (RFC 5321: 64 + 1 + 255, and brackets).
const MAX_ADDRESS: usize = 330;
/// Domain separation of the two keyed hashes (the data key's blind-index key is
/// shared with other uses, which use other prefixes).
const MAC_CONTEXT: &[u8] = b"way2mail verp 1\0";
const RECIPIENT_CONTEXT: &[u8] = b"way2mail verp recipient 1\0";

/// A token taken apart, not yet verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    pub key_id: KeyId,
    pub message: MessageId,
    pub recipient_tag: [u8; 4],
    mac: [u8; 8],
}

/// A token whose MAC holds under a live tenant key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub tenant: String,
    pub key_id: KeyId,
    pub message: MessageId,
    /// Check a bounce's recipient against it with [`recipient_matches`].
    pub recipient_tag: [u8; 4],
}

/// The recipient as tagged: surrounding space and angle brackets dropped, lower
/// case (mail systems rewrite the case of addresses; a tag must survive that).
fn normalized(address: &str) -> String {
    let a = address.trim();
    let a = a
        .strip_prefix('<')
        .and_then(|a| a.strip_suffix('>'))
        .unwrap_or(a);
    a.trim().to_lowercase()
}

fn recipient_tag(key: &DataKey, recipient: &str) -> [u8; 4] {
    let mut input = RECIPIENT_CONTEXT.to_vec();
    input.extend_from_slice(normalized(recipient).as_bytes());
    let hash = key.blind_index(&input);
    [hash[0], hash[1], hash[2], hash[3]]
}

fn mac(key: &DataKey, signed: &[u8]) -> [u8; 8] {
    let mut input = Vec::with_capacity(MAC_CONTEXT.len() + signed.len());
    input.extend_from_slice(MAC_CONTEXT);
    input.extend_from_slice(signed);
    let hash = key.blind_index(&input);
    let mut out = [0u8; 8];
    out.copy_from_slice(&hash[..8]);
    out
}

fn signed_bytes(key_id: KeyId, message: &MessageId, tag: &[u8; 4]) -> [u8; SIGNED_BYTES] {
    let mut out = [0u8; SIGNED_BYTES];
    out[..8].copy_from_slice(&key_id.0.to_be_bytes());
    out[8..24].copy_from_slice(message.as_bytes());
    out[24..].copy_from_slice(tag);
    out
}

/// The local part for one recipient of one message: `b-` and the token.
pub fn local_part(key: &DataKey, id: &MessageId, recipient: &str) -> String {
    let tag = recipient_tag(key, recipient);
    let signed = signed_bytes(key.id(), id, &tag);
    let mut token = [0u8; TOKEN_BYTES];
    token[..SIGNED_BYTES].copy_from_slice(&signed);
    token[SIGNED_BYTES..].copy_from_slice(&mac(key, &signed));
    format!("{PREFIX}{}", base32::encode(&token))
}

/// The envelope sender for one recipient of one message of the tenant owning
/// `key`: `b-TOKEN@domain`.
pub fn return_path(key: &DataKey, id: &MessageId, recipient: &str, domain: &str) -> String {
    format!("{}@{domain}", local_part(key, id, recipient))
}

/// The token in a local part, by structure only (prefix, length, alphabet): says
/// nothing about who made it. Case does not matter.
pub fn parse_local_part(local: &str) -> Option<Token> {
    if local.len() != PREFIX.len() + TOKEN_CHARS {
        return None;
    }
    let (prefix, token) = local.split_at_checked(PREFIX.len())?;
    if !prefix.eq_ignore_ascii_case(PREFIX) {
        return None;
    }
    let bytes: [u8; TOKEN_BYTES] = base32::decode(token)?.try_into().ok()?;
    let mut key_id = [0u8; 8];
    key_id.copy_from_slice(&bytes[..8]);
    let mut message = [0u8; 16];
    message.copy_from_slice(&bytes[8..24]);
    let mut recipient_tag = [0u8; 4];
    recipient_tag.copy_from_slice(&bytes[24..28]);
    let mut mac = [0u8; 8];
    mac.copy_from_slice(&bytes[28..]);
    Some(Token {
        key_id: KeyId(u64::from_be_bytes(key_id)),
        message: MessageId::from_bytes(message),
        recipient_tag,
        mac,
    })
}

impl Token {
    /// Whether `key` made this token (compared in constant time).
    pub fn made_by(&self, key: &DataKey) -> bool {
        if key.id() != self.key_id {
            return false;
        }
        let expected = mac(
            key,
            &signed_bytes(self.key_id, &self.message, &self.recipient_tag),
        );
        verify_slices_are_equal(&expected, &self.mac).is_ok()
    }
}

/// The tenant, message and recipient tag of a VERP address of ours: `address` is
/// `b-TOKEN@domain` (angle brackets and surrounding space allowed, as in a
/// `Return-Path:` field), `domain` our bounces domain (compared ignoring case). `None`
/// for any other address, a token that does not verify, a key that is not a
/// tenant's, and a tenant that was erased.
pub fn verify(keyring: &Keyring, address: &str, domain: &str) -> Option<Verified> {
    if address.len() > MAX_ADDRESS {
        return None;
    }
    let address = address.trim();
    let address = address
        .strip_prefix('<')
        .and_then(|a| a.strip_suffix('>'))
        .unwrap_or(address);
    let (local, at) = address.rsplit_once('@')?;
    let domain = domain.strip_suffix('.').unwrap_or(domain);
    let at = at.strip_suffix('.').unwrap_or(at);
    if domain.is_empty() || !at.eq_ignore_ascii_case(domain) {
        return None;
    }
    let token = parse_local_part(local)?;
    let Lookup::Key(key) = keyring.lookup(token.key_id) else {
        return None;
    };
    if !token.made_by(&key) {
        return None;
    }
    let tenant = key.owner().tenant()?.to_owned();
    Some(Verified {
        tenant,
        key_id: token.key_id,
        message: token.message,
        recipient_tag: token.recipient_tag,
    })
}

/// Whether `address` (a bounce's recipient; case, space and angle brackets do not
/// matter) is the recipient `tag` was made for, under the same tenant key.
pub fn recipient_matches(key: &DataKey, tag: &[u8; 4], address: &str) -> bool {
    if address.len() > MAX_ADDRESS {
        return false;
    }
    verify_slices_are_equal(&recipient_tag(key, address), tag).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const DOMAIN: &str = "bounces.example";

    fn keyring() -> Keyring {
        Keyring::ephemeral().expect("keyring")
    }

    #[test]
    fn round_trip() {
        let keyring = keyring();
        let key = keyring.tenant("acme").expect("key");
        let id = MessageId::generate();
        let address = return_path(&key, &id, "Bob@Remote.example", DOMAIN);
        let (local, domain) = address.split_once('@').expect("@");
        assert_eq!(domain, DOMAIN);
        assert_eq!(local.len(), 60);
        assert!(local.len() <= 64);
        assert!(local.starts_with("b-"));
        assert!(local[2..]
            .bytes()
            .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b)));

        let v = verify(&keyring, &address, DOMAIN).expect("verifies");
        assert_eq!(v.tenant, "acme");
        assert_eq!(v.key_id, key.id());
        assert_eq!(v.message, id);
        assert!(recipient_matches(
            &key,
            &v.recipient_tag,
            "bob@remote.example"
        ));
        assert!(recipient_matches(
            &key,
            &v.recipient_tag,
            " <BOB@REMOTE.EXAMPLE> "
        ));
        assert!(!recipient_matches(
            &key,
            &v.recipient_tag,
            "alice@remote.example"
        ));

        // As a Return-Path field writes it, and with the domain in another case.
        let bracketed = format!("<{address}>");
        assert_eq!(
            verify(&keyring, &bracketed, "Bounces.EXAMPLE"),
            Some(v.clone())
        );
        // Upper-cased on the way (some systems fold local parts).
        assert_eq!(
            verify(&keyring, &address.to_ascii_uppercase(), DOMAIN),
            Some(v)
        );
    }

    #[test]
    fn tokens_are_per_message_and_recipient() {
        let keyring = keyring();
        let key = keyring.tenant("acme").expect("key");
        let id = MessageId::generate();
        let a = return_path(&key, &id, "a@x.example", DOMAIN);
        let b = return_path(&key, &id, "b@x.example", DOMAIN);
        let c = return_path(&key, &MessageId::generate(), "a@x.example", DOMAIN);
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_eq!(a, return_path(&key, &id, "A@X.example", DOMAIN));
    }

    #[test]
    fn forged_altered_and_truncated_tokens_are_rejected() {
        let keyring = keyring();
        let key = keyring.tenant("acme").expect("key");
        let id = MessageId::generate();
        let address = return_path(&key, &id, "bob@remote.example", DOMAIN);
        assert!(verify(&keyring, &address, DOMAIN).is_some());

        // Every single-character change anywhere in the token.
        let bytes = address.as_bytes();
        for i in 2..62 {
            for replacement in [b'a', b'q', b'7'] {
                if bytes[i] == replacement {
                    continue;
                }
                let mut altered = bytes.to_vec();
                altered[i] = replacement;
                let altered = String::from_utf8(altered).expect("ascii");
                assert_eq!(verify(&keyring, &altered, DOMAIN), None, "{altered}");
            }
        }
        // Truncated, extended, wrong prefix, wrong domain, junk.
        let local = &address[..60];
        for bad in [
            format!("{}@{DOMAIN}", &local[..59]),
            format!("{}@{DOMAIN}", &local[..30]),
            format!("{local}a@{DOMAIN}"),
            format!("c-{}@{DOMAIN}", &local[2..]),
            format!("{local}@other.example"),
            format!("{local}@{DOMAIN}.evil.example"),
            local.to_owned(),
            format!("x{local}@{DOMAIN}"),
            "@".to_owned(),
            String::new(),
            "b-@bounces.example".to_owned(),
            "é".repeat(200),
        ] {
            assert_eq!(verify(&keyring, &bad, DOMAIN), None, "{bad}");
        }
        assert_eq!(verify(&keyring, &address, ""), None);

        // A well-formed token with a made-up MAC, under a real key id.
        let mut token = parse_local_part(local).expect("structure");
        token.mac = [0; 8];
        assert!(!token.made_by(&key));
    }

    #[test]
    fn another_tenants_key_is_rejected() {
        let keyring = keyring();
        let acme = keyring.tenant("acme").expect("key");
        let other = keyring.tenant("other").expect("key");
        let id = MessageId::generate();
        let address = return_path(&acme, &id, "bob@remote.example", DOMAIN);
        let token = parse_local_part(&address[..60]).expect("structure");
        assert!(token.made_by(&acme));
        assert!(!token.made_by(&other));

        // The other tenant's MAC under acme's key id (a tenant forging for another).
        let forged_tag = recipient_tag(&other, "bob@remote.example");
        let signed = signed_bytes(acme.id(), &id, &forged_tag);
        let mut bytes = signed.to_vec();
        bytes.extend_from_slice(&mac(&other, &signed));
        let forged = format!("b-{}@{DOMAIN}", base32::encode(&bytes));
        assert_eq!(verify(&keyring, &forged, DOMAIN), None);

        // A token from another keyring (another node, or a keyring not ours).
        let elsewhere = Keyring::ephemeral().expect("keyring");
        let foreign = elsewhere.tenant("acme").expect("key");
        let address = return_path(&foreign, &id, "bob@remote.example", DOMAIN);
        assert_eq!(verify(&keyring, &address, DOMAIN), None);

        // The node's own key is no tenant's.
        let system = keyring.system();
        let address = return_path(&system, &id, "bob@remote.example", DOMAIN);
        assert_eq!(verify(&keyring, &address, DOMAIN), None);
    }

    #[test]
    fn an_erased_tenants_tokens_stop_verifying() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("spool.key");
        let master = way2mail_seal::MasterKey::load_or_create(&path).expect("key");
        let keyring = Keyring::open(&path.with_extension("keyring"), master).expect("keyring");
        let key = keyring.tenant("acme").expect("key");
        let address = return_path(&key, &MessageId::generate(), "bob@remote.example", DOMAIN);
        assert!(verify(&keyring, &address, DOMAIN).is_some());
        keyring.shred("acme").expect("shred");
        assert!(matches!(keyring.lookup(key.id()), Lookup::Erased(_)));
        assert_eq!(verify(&keyring, &address, DOMAIN), None);
        // Even with the key still in hand, the keyring no longer vouches for it.
        assert!(token_of(&address).made_by(&key));
    }

    fn token_of(address: &str) -> Token {
        parse_local_part(&address[..60]).expect("structure")
    }

    #[test]
    fn structure_round_trips() {
        let keyring = keyring();
        let key = keyring.tenant("acme").expect("key");
        let id = MessageId::generate();
        let local = local_part(&key, &id, "bob@remote.example");
        let token = parse_local_part(&local).expect("structure");
        assert_eq!(token.key_id, key.id());
        assert_eq!(token.message, id);
        assert_eq!(
            token.recipient_tag,
            recipient_tag(&key, "bob@remote.example")
        );
        assert_eq!(parse_local_part(&local.to_ascii_uppercase()), Some(token));
        // The fixtures' placeholder is well formed (all zero) and verifies nowhere.
        let placeholder = format!("b-{}", "a".repeat(TOKEN_CHARS));
        let zero = parse_local_part(&placeholder).expect("placeholder");
        assert_eq!(zero.key_id, KeyId(0));
        assert_eq!(
            verify(&keyring, &format!("{placeholder}@{DOMAIN}"), DOMAIN),
            None
        );
    }

    proptest! {
        #[test]
        fn arbitrary_addresses_never_verify_or_panic(address in "\\PC{0,120}") {
            let keyring = keyring();
            prop_assert_eq!(verify(&keyring, &address, DOMAIN), None);
            let _ = parse_local_part(&address);
        }

        #[test]
        fn arbitrary_tokens_never_verify(bytes in any::<[u8; 28]>()) {
            // Under a real tenant key id: only the MAC can stop them.
            let keyring = keyring();
            let key = keyring.tenant("acme").expect("key");
            let mut all = key.id().0.to_be_bytes().to_vec();
            all.extend_from_slice(&bytes);
            let address = format!("b-{}@{DOMAIN}", base32::encode(&all));
            prop_assert_eq!(verify(&keyring, &address, DOMAIN), None);
        }
    }
}
