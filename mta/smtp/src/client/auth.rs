//! Logging in to a smart host (RFC 4954) after EHLO and STARTTLS, before the first
//! message: AUTH PLAIN when offered, else AUTH LOGIN. Credentials never go over a
//! connection without TLS, and a refused login defers the mail rather than bouncing
//! it: the credentials are the operator's to fix, not the recipients' fault.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use crate::reply::Reply;

use super::{ClientSession, Expect, Interruption, SessionFailure};

/// A smart host's user name and password (RFC 4954 AUTH PLAIN or LOGIN).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The password never reaches a log line.
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl ClientSession {
    /// Ready for messages, after authenticating first when credentials are set.
    pub(super) fn become_ready(&mut self) {
        let Some(c) = self.credentials.clone() else {
            self.ready = true;
            return;
        };
        let refuse = |reason: &str| SessionFailure {
            temporary: true,
            stage: "auth",
            reply: None,
            reason: reason.to_string(),
        };
        if !self.tls_active {
            let failure =
                refuse("credentials are only sent over TLS, and this connection has none");
            return self.fail(failure, Interruption::NoTlsForAuth, true);
        }
        if self.extensions.auth_plain {
            let token = base64(format!("\0{}\0{}", c.user, c.password).as_bytes());
            self.command(&format!("AUTH PLAIN {token}"), Expect::AuthPlain);
        } else if self.extensions.auth_login {
            self.command("AUTH LOGIN", Expect::AuthLogin(0));
        } else {
            let failure = refuse("the smart host offers neither AUTH PLAIN nor AUTH LOGIN");
            self.fail(failure, Interruption::NoUsableAuth, true);
        }
    }

    pub(super) fn on_auth(&mut self, expect: Expect, reply: Reply) {
        match (expect, reply.code) {
            (_, 235) => self.ready = true,
            (Expect::AuthLogin(step), 334) if step < 2 => {
                let Some(c) = &self.credentials else { return };
                let value = if step == 0 { &c.user } else { &c.password };
                let line = base64(value.as_bytes());
                self.command(&line, Expect::AuthLogin(step + 1));
            }
            // A refused login is the operator's to fix, not the recipients' fault:
            // the mail waits (4xx) rather than bounces.
            _ => self.fail_reply(
                "auth",
                reply,
                "the smart host refused our credentials",
                false,
            ),
        }
    }
}

/// Standard base64 (RFC 4648), as AUTH exchanges carry their messages.
fn base64(input: &[u8]) -> String {
    STANDARD.encode(input)
}

#[cfg(test)]
mod tests {
    use super::super::{ClientEvent, ClientParams, TlsPolicy};
    use super::*;

    #[test]
    fn base64_vectors() {
        // RFC 4648 §10.
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
    }

    fn ready_client(auth_line: &str, tls: bool) -> ClientSession {
        let mut c = ClientSession::new(ClientParams {
            ehlo_name: "me.example".into(),
            tls: TlsPolicy::Opportunistic,
        })
        .with_credentials(Credentials {
            user: "u".into(),
            password: "p".into(),
        });
        c.feed(b"220 hi\r\n");
        let _ = c.next_event();
        c.clear_output();
        if tls {
            c.feed(b"250-hi\r\n250 STARTTLS\r\n");
            assert!(matches!(c.next_event(), ClientEvent::NeedInput));
            c.clear_output();
            c.feed(b"220 go\r\n");
            assert!(matches!(c.next_event(), ClientEvent::StartTls));
            c.tls_established();
            c.clear_output();
        }
        c.feed(format!("250-hi\r\n{auth_line}\r\n").as_bytes());
        c
    }

    #[test]
    fn plain_after_tls() {
        let mut c = ready_client("250 AUTH PLAIN LOGIN", true);
        assert!(matches!(c.next_event(), ClientEvent::NeedInput));
        assert_eq!(c.output(), b"AUTH PLAIN AHUAcA==\r\n");
        c.clear_output();
        c.feed(b"235 2.7.0 ok\r\n");
        assert!(matches!(c.next_event(), ClientEvent::Ready));
    }

    #[test]
    fn login_steps_and_refusal_defers() {
        let mut c = ready_client("250 AUTH LOGIN", true);
        assert!(matches!(c.next_event(), ClientEvent::NeedInput));
        assert_eq!(c.output(), b"AUTH LOGIN\r\n");
        c.clear_output();
        c.feed(b"334 VXNlcm5hbWU6\r\n");
        let _ = c.next_event();
        assert_eq!(c.output(), b"dQ==\r\n");
        c.clear_output();
        c.feed(b"334 UGFzc3dvcmQ6\r\n");
        let _ = c.next_event();
        assert_eq!(c.output(), b"cA==\r\n");
        c.clear_output();
        c.feed(b"535 5.7.8 bad\r\n");
        match c.next_event() {
            ClientEvent::Failed(f) => assert!(f.temporary && f.stage == "auth", "{f:?}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn never_without_tls() {
        let mut c = ready_client("250 AUTH PLAIN", false);
        match c.next_event() {
            ClientEvent::Failed(f) => assert!(f.temporary && f.stage == "auth", "{f:?}"),
            other => panic!("{other:?}"),
        }
        assert!(!String::from_utf8_lossy(c.output()).contains("AUTH"));
    }
}
