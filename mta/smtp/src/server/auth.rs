//! `AUTH` (RFC 4954) with the PLAIN (RFC 4616) and LOGIN mechanisms, and the rules
//! that follow from being authenticated. [`SessionState::auth`] decides whether an
//! exchange may start now (offered on this listener, after EHLO, over TLS, not yet
//! authenticated, outside a transaction); [`Sasl::respond`] takes the client's lines
//! one at a time. Decoded credentials leave the protocol as `Event::Authenticate`; the
//! caller's verdict comes back through `Protocol::auth_result` to
//! [`SessionState::auth_verdict`], which remembers the [`Grant`] until the session ends.
//!
//! Secrets: decoded SASL messages and passwords live in `Zeroizing` buffers, no type
//! here that holds a password implements `Debug`, and no reply ever echoes client input.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use zeroize::Zeroizing;

use super::state::SessionState;
use super::{AuthMechanism, AuthVerdict, Grant, Role};
use crate::reply::{self, EnhancedCode, Reply};

/// RFC 4954 §4: servers accept AUTH command and response lines of up to 12288 octets
/// (room for large SASL tokens); longer lines are refused without being buffered.
pub const MAX_AUTH_LINE: usize = 12288;

/// The EHLO line offering AUTH.
pub(super) const EHLO_KEYWORD: &str = "AUTH PLAIN LOGIN";

/// The LOGIN mechanism's prompts, `Username:` and `Password:` in base64.
const LOGIN_USERNAME: &str = "VXNlcm5hbWU6";
const LOGIN_PASSWORD: &str = "UGFzc3dvcmQ6";

const SUCCEEDED: Reply = Reply::new(235, EnhancedCode::new(2, 7, 0), "Authentication successful");
const UNAVAILABLE: Reply = Reply::new(
    454,
    EnhancedCode::new(4, 7, 0),
    "Temporary authentication failure",
);
pub(super) const LINE_TOO_LONG: Reply = Reply::new(
    500,
    EnhancedCode::new(5, 5, 6),
    "Authentication Exchange line is too long",
);
const CANCELED: Reply = Reply::new(501, EnhancedCode::new(5, 0, 0), "Authentication canceled");
const MALFORMED: Reply = Reply::new(
    501,
    EnhancedCode::new(5, 5, 2),
    "Malformed authentication response",
);
const USAGE: Reply = Reply::new(
    501,
    EnhancedCode::new(5, 5, 4),
    "Syntax: AUTH mechanism [initial-response]",
);
const NEED_EHLO: Reply = Reply::new(503, EnhancedCode::new(5, 5, 1), "Send EHLO first");
const ALREADY: Reply = Reply::new(503, EnhancedCode::new(5, 5, 1), "Already authenticated");
const IN_TRANSACTION: Reply = Reply::new(
    503,
    EnhancedCode::new(5, 5, 1),
    "AUTH not allowed during a mail transaction",
);
const UNKNOWN_MECHANISM: Reply = Reply::new(
    504,
    EnhancedCode::new(5, 5, 4),
    "Unrecognized authentication mechanism",
);
const INVALID: Reply = Reply::new(
    535,
    EnhancedCode::new(5, 7, 8),
    "Authentication credentials invalid",
);
const PROXY: Reply = Reply::new(
    535,
    EnhancedCode::new(5, 7, 8),
    "Authorization identity must be empty or equal the authentication identity",
);
const DISABLED: Reply = Reply::new(
    535,
    EnhancedCode::new(5, 7, 8),
    "Account disabled: the tenant is suspended or terminated",
);
const ENCRYPTION_REQUIRED: Reply = Reply::new(
    538,
    EnhancedCode::new(5, 7, 11),
    "Encryption required for requested authentication mechanism",
);

/// Where an exchange stands while the client owes the next line. Only the LOGIN
/// username is kept between lines; it is not a secret.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Sasl {
    Plain,
    LoginUsername,
    LoginPassword { username: String },
}

/// What follows an AUTH command or one line of the exchange. Holds a password, so it
/// deliberately has no `Debug`.
pub(super) enum AuthStep {
    /// Send `334 <challenge>`, then read the next line in this state.
    Challenge(&'static str, Sasl),
    /// Complete credentials for the caller to check.
    Credentials {
        mechanism: AuthMechanism,
        username: String,
        password: Zeroizing<String>,
    },
    /// The exchange is over with this reply.
    Done(Reply),
}

impl SessionState {
    /// AUTH exists on this listener: a tenant policy and a submission role.
    pub(super) fn auth_enabled(&self) -> bool {
        self.params.tenants.is_some() && self.params.role != Role::Mx
    }

    /// AUTH is advertised now: never before TLS (RFC 4954 §4, no cleartext passwords).
    pub(super) fn auth_offered(&self) -> bool {
        self.auth_enabled() && self.tls_active
    }

    /// `MAIL` must wait for AUTH: submission with tenants, not authenticated, and a
    /// client outside the trusted networks.
    pub(super) fn auth_required(&self) -> bool {
        self.auth_enabled()
            && self.auth.is_none()
            && !self.params.relay.is_trusted(self.params.client_ip)
    }

    /// `AUTH mechanism [initial-response]`.
    pub(super) fn auth(&self, args: &str) -> AuthStep {
        let refusal = if !self.auth_enabled() {
            Some(reply::NOT_IMPLEMENTED)
        } else if !self.greeting.as_ref().is_some_and(|g| g.extended) {
            // AUTH is an EHLO extension: after HELO it was never offered.
            Some(NEED_EHLO)
        } else if !self.tls_active {
            Some(ENCRYPTION_REQUIRED)
        } else if self.auth.is_some() {
            Some(ALREADY)
        } else if self.tx.is_some() {
            Some(IN_TRANSACTION)
        } else {
            None
        };
        if let Some(r) = refusal {
            return AuthStep::Done(r);
        }
        let mut words = args.split(' ').filter(|w| !w.is_empty());
        let (Some(mechanism), initial, None) = (words.next(), words.next(), words.next()) else {
            return AuthStep::Done(USAGE);
        };
        let (sasl, prompt) = if mechanism.eq_ignore_ascii_case("PLAIN") {
            (Sasl::Plain, "")
        } else if mechanism.eq_ignore_ascii_case("LOGIN") {
            (Sasl::LoginUsername, LOGIN_USERNAME)
        } else {
            return AuthStep::Done(UNKNOWN_MECHANISM);
        };
        match initial {
            None => AuthStep::Challenge(prompt, sasl),
            // RFC 4954 §4: a zero-length initial response is sent as `=`.
            Some("=") => sasl.take(&[]),
            Some(response) => match decode(response.as_bytes()) {
                Ok(message) => sasl.take(&message),
                Err(r) => AuthStep::Done(r),
            },
        }
    }

    /// The caller's verdict on the credentials.
    pub(super) fn auth_verdict(&mut self, verdict: AuthVerdict) -> Reply {
        match verdict {
            AuthVerdict::Accepted(grant) => {
                self.auth = Some(grant);
                SUCCEEDED
            }
            AuthVerdict::Rejected => INVALID,
            AuthVerdict::TenantDisabled => DISABLED,
            AuthVerdict::LockedOut => Reply::owned(
                421,
                EnhancedCode::new(4, 7, 0),
                format!(
                    "{} Too many authentication failures, try again later",
                    self.params.hostname
                ),
            ),
            AuthVerdict::Unavailable => UNAVAILABLE,
        }
    }

    /// The tenant of an authenticated session, with its policy.
    pub(super) fn tenant(&self) -> Option<(&dyn super::TenantPolicy, &Grant)> {
        match (&self.params.tenants, &self.auth) {
            (Some(policy), Some(grant)) => Some((policy.as_ref(), grant)),
            _ => None,
        }
    }
}

impl Sasl {
    /// One client line of the exchange, without its line ending.
    pub(super) fn respond(self, line: &[u8]) -> AuthStep {
        if line == b"*" {
            return AuthStep::Done(CANCELED);
        }
        // An empty response is an empty line; `=` is tolerated as well, since some
        // clients send it the way an empty initial response is sent.
        if line.is_empty() || line == b"=" {
            return self.take(&[]);
        }
        match decode(line) {
            Ok(message) => self.take(&message),
            Err(r) => AuthStep::Done(r),
        }
    }

    /// The decoded response.
    fn take(self, message: &[u8]) -> AuthStep {
        match self {
            Sasl::Plain => plain(message),
            Sasl::LoginUsername => match identity(message) {
                Ok(username) => AuthStep::Challenge(
                    LOGIN_PASSWORD,
                    Sasl::LoginPassword {
                        username: username.to_string(),
                    },
                ),
                Err(r) => AuthStep::Done(r),
            },
            Sasl::LoginPassword { username } => match std::str::from_utf8(message) {
                Ok(password) => {
                    credentials(AuthMechanism::Login, username, password.to_string().into())
                }
                Err(_) => AuthStep::Done(MALFORMED),
            },
        }
    }
}

/// Strict base64 (canonical padding, no whitespace) into a buffer wiped on drop.
fn decode(response: &[u8]) -> Result<Zeroizing<Vec<u8>>, Reply> {
    STANDARD
        .decode(response)
        .map(Zeroizing::new)
        .map_err(|_| MALFORMED)
}

/// RFC 4616: `[authzid] NUL authcid NUL passwd`.
fn plain(message: &[u8]) -> AuthStep {
    let mut parts = message.split(|&b| b == 0);
    let (Some(authzid), Some(authcid), Some(passwd), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return AuthStep::Done(MALFORMED);
    };
    let (Ok(authzid), Ok(authcid), Ok(passwd)) = (
        identity(authzid),
        identity(authcid),
        std::str::from_utf8(passwd),
    ) else {
        return AuthStep::Done(MALFORMED);
    };
    // Acting for someone else (proxy authorization) is not offered.
    if !authzid.is_empty() && authzid != authcid {
        return AuthStep::Done(PROXY);
    }
    credentials(
        AuthMechanism::Plain,
        authcid.to_string(),
        passwd.to_string().into(),
    )
}

/// A user name: UTF-8 without control characters, since it reaches logs and the spool.
fn identity(bytes: &[u8]) -> Result<&str, Reply> {
    let s = std::str::from_utf8(bytes).map_err(|_| MALFORMED)?;
    if s.chars().any(char::is_control) {
        return Err(MALFORMED);
    }
    Ok(s)
}

/// Empty credentials can never be right: refused without asking the caller.
fn credentials(
    mechanism: AuthMechanism,
    username: String,
    password: Zeroizing<String>,
) -> AuthStep {
    if username.is_empty() || password.is_empty() {
        return AuthStep::Done(INVALID);
    }
    AuthStep::Credentials {
        mechanism,
        username,
        password,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(step: AuthStep) -> String {
        match step {
            AuthStep::Challenge(c, s) => format!("334 {c} {s:?}"),
            AuthStep::Credentials {
                mechanism,
                username,
                password,
            } => format!("{mechanism:?} {username} {}", password.as_str()),
            AuthStep::Done(r) => format!("{} {}", r.code, r.enhanced_or_generic()),
        }
    }

    #[test]
    fn plain_messages() {
        let t = |m: &[u8]| outcome(plain(m));
        assert_eq!(t(b"\0alice\0pw"), "Plain alice pw");
        assert_eq!(t(b"alice\0alice\0pw"), "Plain alice pw");
        assert_eq!(t(b"bob\0alice\0pw"), "535 5.7.8");
        assert_eq!(t(b"\0alice\0"), "535 5.7.8");
        assert_eq!(t(b"\0\0pw"), "535 5.7.8");
        assert_eq!(t(b"alice\0pw"), "501 5.5.2");
        assert_eq!(t(b"\0alice\0pw\0"), "501 5.5.2");
        assert_eq!(t(b""), "501 5.5.2");
        assert_eq!(t(b"\0al\x01ice\0pw"), "501 5.5.2");
        assert_eq!(t(b"\0alice\0\xff"), "501 5.5.2");
        assert_eq!(t("\0jürgen\0pässwörd".as_bytes()), "Plain jürgen pässwörd");
    }

    #[test]
    fn base64_is_strict() {
        let r = |l: &[u8]| outcome(Sasl::Plain.respond(l));
        assert_eq!(r(b"AGFsaWNlAHB3"), "Plain alice pw");
        assert_eq!(r(b"AGFsaWNlAHB3\r"), "501 5.5.2");
        assert_eq!(r(b"AGFsaWNl AHB3"), "501 5.5.2");
        assert_eq!(r(b"AGFsaWNlAHB"), "501 5.5.2");
        assert_eq!(r(b"*"), "501 5.0.0");
        assert_eq!(r(b""), "501 5.5.2");
    }

    #[test]
    fn login_exchange() {
        let AuthStep::Challenge(LOGIN_PASSWORD, next) = Sasl::LoginUsername.respond(b"YWxpY2U=")
        else {
            panic!("LOGIN asks for the password after the username");
        };
        assert_eq!(
            next,
            Sasl::LoginPassword {
                username: "alice".into()
            }
        );
        assert_eq!(outcome(next.respond(b"cHc=")), "Login alice pw");
        let empty = Sasl::LoginPassword {
            username: "alice".into(),
        };
        assert_eq!(outcome(empty.respond(b"")), "535 5.7.8");
        assert_eq!(outcome(Sasl::LoginUsername.respond(b"*")), "501 5.0.0");
    }
}
