//! `EHLO` and `HELO` (RFC 5321 §4.1.1.1): record the client's name, drop any open
//! transaction, and list the extensions. HELO gets a plain `250` and no extensions,
//! so MAIL/RCPT parameters are refused afterwards. A successful AUTH survives a new
//! EHLO (RFC 4954 §4).
//!
//! AUTH is listed only where it can be used (a tenant policy, a submission role) and
//! only inside TLS, so that no client is invited to send a password in cleartext.

use super::auth;
use super::state::{Greeting, SessionState};
use crate::reply::Reply;

impl SessionState {
    pub(super) fn ehlo(&mut self, name: &str, extended: bool) -> Reply {
        self.reset();
        self.greeting = Some(Greeting {
            name: name.to_string(),
            extended,
        });
        let host = &self.params.hostname;
        if !extended {
            return Reply::without_enhanced(250, host.clone());
        }
        let mut text = format!(
            "{host} Hello {name}\nPIPELINING\nSIZE {}\n8BITMIME\nENHANCEDSTATUSCODES\nCHUNKING\nSMTPUTF8\nDSN",
            self.params.limits.max_message_size
        );
        if self.params.tls_available && !self.tls_active {
            text.push_str("\nSTARTTLS");
        }
        if self.auth_offered() {
            text.push('\n');
            text.push_str(auth::EHLO_KEYWORD);
        }
        Reply::without_enhanced(250, text)
    }
}
