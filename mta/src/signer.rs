//! DKIM signing of tenant mail before it is spooled: which messages are signed, with
//! which domain and keys, or refused. The signing itself (header selection,
//! `BIMI-Selector:`, mail-auth) is `way2mail_mta::signing`; the keys come from the
//! tenant directory, decoded once per snapshot version.
//!
//! ```text
//!   apply(envelope, message)
//!     authenticated tenant T ── d = From: domain if it is T's, else the MAIL FROM domain
//!     trusted network ───────── d = From: domain if it is a tenant's, else the MAIL FROM
//!                               domain if it is a tenant's, else not tenant mail: unchanged
//!     anything else ─────────── unchanged (mail from the internet is never signed)
//!   d may not send ─────────── 550 5.7.1 Sender domain d is not verified for sending
//!   d has no usable key ────── [dkim] missing_keys: refuse → 550 5.7.1 … has no DKIM key
//!                                                   unsigned → sent as it is (logged)
//!   otherwise ──────────────── BIMI-Selector (when d has BIMI) + one DKIM-Signature per
//!                               key, prepended: the last change to the message
//! ```

use std::sync::Arc;

use way2mail_mta::signing;
use way2mail_smtp::reply::{EnhancedCode, Reply};
use way2mail_smtp::Envelope;

use crate::config::authn::MissingKeys;
use crate::config::Settings;
use crate::tenants::{not_a_domain_of_this_account, sender_domain, Directory, Tenants};

/// A message after signing.
pub struct SignOutcome {
    /// The message to spool: the original, or with `BIMI-Selector:` and the
    /// `DKIM-Signature:` headers prepended.
    pub body: Vec<u8>,
    /// For the log: `d=DOMAIN s=SEL1,SEL2` when signed, `unsigned d=DOMAIN (no key)`
    /// for tenant mail sent unsigned, `None` for mail that is not a tenant's.
    pub dkim: Option<String>,
    /// The tenant whose mail this is: the authenticated one, or for a trusted
    /// network the owner of the signing domain. The session puts it into the
    /// envelope, so the message is sealed with that tenant's data key and is part
    /// of its export and erasure.
    pub tenant: Option<String>,
}

pub struct Signer {
    settings: Arc<Settings>,
    tenants: Option<Arc<Tenants>>,
}

/// What to do with one message.
#[derive(Debug, PartialEq, Eq)]
enum Decision {
    /// Not tenant mail.
    Pass,
    /// Sign for `domain` (or send unsigned, when it has no usable key and
    /// `missing_keys` allows that).
    Sign { domain: String },
}

impl Signer {
    pub fn new(settings: Arc<Settings>, tenants: Option<Arc<Tenants>>) -> Signer {
        Signer { settings, tenants }
    }

    /// Signs a message from a tenant domain (authenticated submission, or a trusted
    /// network sending for a tenant domain); passes other mail unchanged. `Err` is the
    /// reply refusing a message that must be signed and cannot be.
    pub fn apply(&self, envelope: &Envelope, body: Vec<u8>) -> Result<SignOutcome, Reply> {
        let unchanged = |body| {
            Ok(SignOutcome {
                body,
                dkim: None,
                tenant: None,
            })
        };
        let Some((directory, domain)) = self.signing_domain(envelope, &body)? else {
            return unchanged(body);
        };
        let tenant = envelope.origin.tenant.as_deref();
        let mut outcome = sign(
            &directory,
            self.settings.raw.dkim.missing_keys,
            &domain,
            tenant,
            body,
        )?;
        outcome.tenant = owner(&directory, tenant, &domain);
        Ok(outcome)
    }

    /// [`apply`](Signer::apply) for a message not held whole: `header` is its header
    /// section (the empty line included) and `body` gives the rest in pieces, read
    /// only when the message is signed. The outcome's `body` is what replaces
    /// `header` at the top of the message; `None` leaves the message as it is.
    pub fn apply_streamed(
        &self,
        envelope: &Envelope,
        header: &[u8],
        body: &mut signing::BodyPieces<'_>,
    ) -> Result<Option<SignOutcome>, Reply> {
        let Some((directory, domain)) = self.signing_domain(envelope, header)? else {
            return Ok(None);
        };
        let tenant = envelope.origin.tenant.as_deref();
        let sending = directory.check_sending(&domain, self.settings.raw.dkim.missing_keys)?;
        let keys = sending.keys(&domain);
        let bimi = sending.bimi_selector.as_deref();
        let (head, dkim) = if keys.is_empty() {
            unsigned_warning(&sending.tenant, tenant, &domain, sending.has_keys());
            let head = match bimi {
                Some(selector) => signing::with_bimi_selector(header, selector)
                    .unwrap_or_else(|_| header.to_vec()),
                None => header.to_vec(),
            };
            (head, format!("unsigned d={domain} (no key)"))
        } else {
            let head = signing::sign_head(header, &domain, keys, bimi, body)
                .map_err(|e| signing_failed(&domain, &e))?;
            crate::metrics::dkim_signed();
            (head, signed_with(&domain, keys))
        };
        Ok(Some(SignOutcome {
            body: head,
            dkim: Some(dkim),
            tenant: owner(&directory, tenant, &domain),
        }))
    }

    /// The domain tenant mail is signed for, with the directory that says so;
    /// `None` for mail that is not signed.
    fn signing_domain(
        &self,
        envelope: &Envelope,
        message: &[u8],
    ) -> Result<Option<(Arc<Directory>, String)>, Reply> {
        let Some(tenants) = &self.tenants else {
            return Ok(None);
        };
        let tenant = envelope.origin.tenant.as_deref();
        let trusted = self.settings.relay.is_trusted(envelope.origin.client_ip);
        if tenant.is_none() && !trusted {
            return Ok(None);
        }
        let Some(directory) = tenants.directory() else {
            if tenant.is_some() {
                // AUTH succeeded on a directory, which is never taken away again.
                return Err(Reply::new(
                    451,
                    EnhancedCode::new(4, 7, 0),
                    "Account data unavailable, try again later",
                ));
            }
            return Ok(None);
        };
        let from = signing::from_domain(message);
        match decide(&directory, tenant, &envelope.sender, from.as_deref())? {
            Decision::Pass => Ok(None),
            Decision::Sign { domain } => Ok(Some((directory, domain))),
        }
    }
}

/// Whose mail a signed message is: the authenticated tenant, or for a trusted
/// network the owner of the signing domain.
fn owner(directory: &Directory, tenant: Option<&str>, domain: &str) -> Option<String> {
    match tenant {
        Some(t) => Some(t.to_owned()),
        None => directory.sending(domain).map(|s| s.tenant.clone()),
    }
}

/// The log's `dkim` value of a signed message.
fn signed_with(domain: &str, keys: &[signing::Key]) -> String {
    let selectors: Vec<&str> = keys.iter().map(|k| k.selector()).collect();
    format!("d={domain} s={}", selectors.join(","))
}

fn unsigned_warning(owner: &str, tenant: Option<&str>, domain: &str, keys_unusable: bool) {
    tracing::warn!(
        target: "way2mail::message",
        tenant = %owner,
        authenticated = tenant.is_some(),
        domain,
        // true: control lists keys, none of which could be decoded (logged apart).
        keys_unusable,
        "sending unsigned: the domain has no usable DKIM key ([dkim] missing_keys = \"unsigned\")"
    );
}

fn signing_failed(domain: &str, e: &signing::SignError) -> Reply {
    tracing::error!(domain, error = %e, "DKIM signing failed");
    Reply::new(
        451,
        EnhancedCode::new(4, 3, 0),
        "Message could not be signed, try again later",
    )
}

/// Which domain signs the message, if any. `tenant` is the authenticated tenant;
/// without one the client is in a trusted network.
fn decide(
    directory: &Directory,
    tenant: Option<&str>,
    sender: &str,
    from: Option<&str>,
) -> Result<Decision, Reply> {
    let owner = |domain: &str| directory.sending(domain).map(|s| s.tenant.as_str());
    let envelope_domain = sender_domain(sender).map(str::to_ascii_lowercase);
    let domain = match tenant {
        Some(t) => {
            if let Some(f) = from.filter(|f| owner(f) == Some(t)) {
                f.to_owned()
            } else {
                // Checked at MAIL FROM; only a snapshot installed since then can
                // have taken the domain away.
                match envelope_domain.filter(|d| owner(d) == Some(t)) {
                    Some(d) => d,
                    None => {
                        let address = sender.trim_start_matches('<').trim_end_matches('>');
                        return Err(not_a_domain_of_this_account(address));
                    }
                }
            }
        }
        None => match from.filter(|f| owner(f).is_some()) {
            Some(f) => f.to_owned(),
            None => match envelope_domain.filter(|d| owner(d).is_some()) {
                Some(d) => d,
                None => return Ok(Decision::Pass),
            },
        },
    };
    Ok(Decision::Sign { domain })
}

/// Signs for `domain`, or refuses, or (no key, `unsigned`) lets the message go as it is.
fn sign(
    directory: &Directory,
    missing_keys: MissingKeys,
    domain: &str,
    tenant: Option<&str>,
    body: Vec<u8>,
) -> Result<SignOutcome, Reply> {
    let sending = directory.check_sending(domain, missing_keys)?;
    let keys = sending.keys(domain);
    let bimi = sending.bimi_selector.as_deref();
    if keys.is_empty() {
        // check_sending refused this unless missing_keys is `unsigned`.
        unsigned_warning(&sending.tenant, tenant, domain, sending.has_keys());
        let body = match bimi {
            Some(selector) => signing::with_bimi_selector(&body, selector).unwrap_or(body),
            None => body,
        };
        return Ok(SignOutcome {
            body,
            dkim: Some(format!("unsigned d={domain} (no key)")),
            tenant: None,
        });
    }
    match signing::sign_message(body, domain, keys, bimi) {
        Ok(body) => {
            crate::metrics::dkim_signed();
            Ok(SignOutcome {
                body,
                dkim: Some(signed_with(domain, keys)),
                tenant: None,
            })
        }
        Err(e) => Err(signing_failed(domain, &e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenants::directory::tests::{sending, snapshot, test_keys};
    use mail_auth::common::parse::TxtRecordParser;
    use mail_auth::common::verify::DomainKey;
    use mail_auth::{
        AuthenticatedMessage, DkimResult, MessageAuthenticator, Parameters, ResolverCache, Txt,
    };
    use std::borrow::Borrow;
    use std::collections::HashMap;
    use std::hash::Hash;
    use std::sync::Mutex;
    use std::time::Instant;

    /// acme owns acme.example, mail.acme.example and news.acme.example (BIMI),
    /// nokeys.example (no keys) and unverified.example (may not send); `other` owns
    /// other.example.
    fn directory() -> Directory {
        let mut s = snapshot(1);
        let acme = &mut s.tenants[0];
        for d in ["news.acme.example", "nokeys.example", "unverified.example"] {
            acme.domains.push(d.into());
            let mut entry = sending(d);
            match d {
                "nokeys.example" => entry.dkim.clear(),
                "unverified.example" => entry.may_send = false,
                _ => entry.bimi_selector = Some("brand".into()),
            }
            acme.sending.push(entry);
        }
        let mut other = s.tenants[0].clone();
        other.tenant = "other".into();
        other.domains = vec!["other.example".into()];
        other.sending = vec![sending("other.example")];
        other.smtp_users.clear();
        s.tenants.push(other);
        Directory::new(&s)
    }

    fn sign_domain(d: &str) -> Result<Decision, Reply> {
        Ok(Decision::Sign { domain: d.into() })
    }

    #[test]
    fn authenticated_mail_signs_with_the_from_domain_when_it_is_the_tenants() {
        let d = directory();
        let acme = Some("acme");
        let cases = [
            (
                "a@acme.example",
                Some("news.acme.example"),
                "news.acme.example",
            ),
            ("a@acme.example", Some("acme.example"), "acme.example"),
            ("<a@Mail.Acme.Example>", None, "mail.acme.example"),
            // From another tenant's domain, or a foreign one: the envelope domain.
            ("a@acme.example", Some("other.example"), "acme.example"),
            ("a@acme.example", Some("gmail.example"), "acme.example"),
        ];
        for (sender, from, want) in cases {
            assert_eq!(
                decide(&d, acme, sender, from),
                sign_domain(want),
                "{sender} {from:?}"
            );
        }
        // The envelope domain is no longer the tenant's (a snapshot changed since MAIL).
        let e = decide(&d, acme, "a@other.example", None).expect_err("refused");
        assert_eq!(
            (e.code, e.enhanced),
            (553, Some(EnhancedCode::new(5, 7, 1)))
        );
        // But a From: of the tenant's own still signs.
        assert_eq!(
            decide(&d, acme, "a@other.example", Some("acme.example")),
            sign_domain("acme.example")
        );
    }

    #[test]
    fn trusted_mail_signs_for_any_tenant_domain_and_passes_the_rest() {
        let d = directory();
        let cases = [
            (
                "app@relay.example",
                Some("acme.example"),
                Some("acme.example"),
            ),
            (
                "bounce@other.example",
                Some("acme.example"),
                Some("acme.example"),
            ),
            (
                "bounce@other.example",
                Some("news.example"),
                Some("other.example"),
            ),
            ("bounce@other.example", None, Some("other.example")),
            ("", Some("other.example"), Some("other.example")),
            ("app@relay.example", Some("news.example"), None),
            ("", None, None),
        ];
        for (sender, from, want) in cases {
            let expected = match want {
                Some(w) => sign_domain(w),
                None => Ok(Decision::Pass),
            };
            assert_eq!(
                decide(&d, None, sender, from),
                expected,
                "{sender} {from:?}"
            );
        }
    }

    /// A TXT cache holding the test keys' records for `domain`.
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

    fn verify(message: &[u8], domain: &str) -> Vec<DkimResult> {
        let records = Records(Mutex::new(HashMap::new()));
        for (key, public) in test_keys() {
            let txt = format!("v=DKIM1; k={}; p={public}", key.algorithm.key_type());
            records.insert(
                format!("{}._domainkey.{domain}.", key.selector).into(),
                Txt::from(DomainKey::parse(txt.as_bytes()).expect("record")),
                Instant::now(),
            );
        }
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
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(resolver.verify_dkim(Parameters::new(&parsed).with_txt_cache(&records)))
            .into_iter()
            .map(|o| o.result().clone())
            .collect()
    }

    fn envelope(ip: &str, tenant: Option<&str>, sender: &str) -> Envelope {
        Envelope {
            sender: sender.into(),
            recipients: Vec::new(),
            body_type: Default::default(),
            smtputf8: false,
            ret: None,
            envid: None,
            origin: way2mail_smtp::Origin {
                client_ip: ip.parse().expect("ip"),
                helo: "client.test".into(),
                listener: "mx".into(),
                tls: None,
                auth: tenant.map(|_| "app@acme.example".into()),
                tenant: tenant.map(str::to_owned),
            },
            received_at_ms: 0,
            attempts: 0,
            next_attempt_ms: None,
            delay_notified: false,
            tags: Vec::new(),
            metadata: Default::default(),
            scan: None,
        }
    }

    /// Only authenticated tenants and trusted networks get signatures; mail from the
    /// internet claiming a tenant domain is left as it is.
    #[test]
    fn only_tenants_and_trusted_networks_are_signed() {
        let settings = crate::config::Config::parse(
            "[relay]\ntrusted_networks = [\"10.0.0.0/8\"]\n[control]\nsocket = \"/nonexistent\"\n",
        )
        .expect("config")
        .validate()
        .expect("valid");
        let tenants = Arc::new(
            Tenants::new(&settings.raw.auth)
                .expect("tenants")
                .with_missing_keys(MissingKeys::Refuse),
        );
        let signer = Signer::new(Arc::new(settings), Some(Arc::clone(&tenants)));
        let internet = envelope("192.0.2.7", None, "a@news.acme.example");
        let trusted = envelope("10.1.2.3", None, "a@relay.example");
        let tenant = envelope("192.0.2.7", Some("acme"), "a@acme.example");

        // No snapshot yet: trusted mail passes, tenant mail waits.
        assert!(signer
            .apply(&trusted, MESSAGE.to_vec())
            .expect("pass")
            .dkim
            .is_none());
        assert_eq!(
            signer
                .apply(&tenant, MESSAGE.to_vec())
                .err()
                .map(|r| r.code),
            Some(451)
        );

        tenants.install(directory());
        let out = signer.apply(&internet, MESSAGE.to_vec()).expect("internet");
        assert_eq!((out.body.as_slice(), out.dkim), (MESSAGE, None));
        assert_eq!(out.tenant, None);
        let foreign = envelope("10.1.2.3", None, "a@relay.example");
        let out = signer
            .apply(&foreign, b"From: a@relay.example\r\n\r\nx\r\n".to_vec())
            .expect("foreign");
        assert_eq!((out.dkim, out.tenant), (None, None), "not a tenant's mail");
        for e in [&trusted, &tenant] {
            let out = signer.apply(e, MESSAGE.to_vec()).expect("signed");
            // Trusted mail for acme's domain is acme's, like its authenticated mail.
            assert_eq!(out.tenant.as_deref(), Some("acme"));
            assert!(
                out.dkim
                    .as_deref()
                    .is_some_and(|d| d.starts_with("d=news.acme.example s=")),
                "{:?}",
                out.dkim
            );
            assert_eq!(
                verify(&out.body, "news.acme.example"),
                vec![DkimResult::Pass, DkimResult::Pass]
            );
        }
        let no_control = Signer::new(Arc::clone(&signer.settings), None);
        let out = no_control
            .apply(&tenant, MESSAGE.to_vec())
            .expect("no tenants");
        assert_eq!(out.dkim, None);
    }

    const MESSAGE: &[u8] = b"From: billing@news.acme.example\r\nTo: c@remote.example\r\n\
        Subject: hi\r\n\r\nHello.\r\n";

    #[test]
    fn signed_with_both_keys_and_bimi() {
        let d = directory();
        let out = sign(
            &d,
            MissingKeys::Refuse,
            "news.acme.example",
            Some("acme"),
            MESSAGE.to_vec(),
        )
        .unwrap_or_else(|r| panic!("refused: {r:?}"));
        let selectors: Vec<&str> = test_keys()
            .iter()
            .map(|(k, _)| k.selector.as_str())
            .collect();
        assert_eq!(
            out.dkim.as_deref(),
            Some(format!("d=news.acme.example s={}", selectors.join(",")).as_str())
        );
        let text = String::from_utf8_lossy(&out.body);
        assert!(
            text.contains("BIMI-Selector: v=BIMI1; s=brand\r\n"),
            "{text}"
        );
        assert!(out.body.ends_with(MESSAGE));
        assert_eq!(
            verify(&out.body, "news.acme.example"),
            vec![DkimResult::Pass, DkimResult::Pass]
        );
    }

    #[test]
    fn refusals_and_unsigned() {
        let d = directory();
        let refused =
            |domain: &str, missing| match sign(&d, missing, domain, None, MESSAGE.to_vec()) {
                Ok(_) => panic!("{domain} signed"),
                Err(r) => (r.code, r.text.into_owned()),
            };
        assert_eq!(
            refused("unverified.example", MissingKeys::Unsigned),
            (
                550,
                "Sender domain unverified.example is not verified for sending".into()
            )
        );
        assert_eq!(
            refused("nokeys.example", MissingKeys::Refuse),
            (550, "Sender domain nokeys.example has no DKIM key".into())
        );
        let out = sign(
            &d,
            MissingKeys::Unsigned,
            "nokeys.example",
            None,
            MESSAGE.to_vec(),
        )
        .unwrap_or_else(|r| panic!("refused: {r:?}"));
        assert_eq!(out.body, MESSAGE, "sent as it is");
        assert_eq!(
            out.dkim.as_deref(),
            Some("unsigned d=nokeys.example (no key)")
        );
    }
}
