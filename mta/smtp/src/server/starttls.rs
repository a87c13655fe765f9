//! `STARTTLS` (RFC 3207). On success the protocol replies `220 2.0.0`, throws away
//! whatever the client pipelined after the command (it arrived in plaintext and must
//! never be executed inside the TLS session), and waits for the caller's handshake.
//! Afterwards everything learnt before TLS is forgotten: the EHLO, any transaction,
//! and any authentication (RFC 4954 §4; AUTH is only offered inside TLS anyway).

use super::state::SessionState;
use crate::reply::{EnhancedCode, Reply};

impl SessionState {
    /// `Ok` when the handshake may start.
    pub(super) fn starttls(&mut self) -> Result<(), Reply> {
        if self.tls_active {
            Err(Reply::new(
                503,
                EnhancedCode::new(5, 5, 1),
                "TLS already active",
            ))
        } else if !self.params.tls_available {
            Err(Reply::new(
                502,
                EnhancedCode::new(5, 5, 1),
                "STARTTLS not available",
            ))
        } else {
            Ok(())
        }
    }

    /// The handshake succeeded (also called once after an implicit-TLS handshake to
    /// record the description).
    pub(super) fn tls_established(&mut self, description: String) {
        self.tls_active = true;
        self.tls_description = Some(description);
        self.greeting = None;
        self.auth = None;
        self.reset();
    }
}
