//! Control's side of the MTA's admin socket (`[mta]`): one connection per request
//! that needs the spool, and why the MTA's part is missing when it cannot be had.
//! Callers reach the MTA only outside the writer lock: it may be slow or away.

use way2mail_wire::client::ClientError;
use way2mail_wire::mta_admin::AdminClient;

use super::writer::Service;

/// Why the MTA's part of a request is missing. The text goes to operators (in
/// answers, receipts and audit details) as it is.
#[derive(Debug, thiserror::Error)]
pub(crate) enum MtaError {
    #[error("no MTA is configured ([mta] admin_socket is empty)")]
    NotConfigured,
    #[error("the MTA's admin socket: {0}")]
    Connect(ClientError),
    #[error("the MTA answered: {0}")]
    Answer(ClientError),
    /// An answer of another kind than the request's (`Debug` of what came).
    #[error("unexpected answer {0}")]
    Unexpected(String),
}

impl Service {
    /// A connection to the MTA's admin socket.
    pub(crate) fn mta_client(&self) -> Result<AdminClient, MtaError> {
        let path = self
            .settings()
            .mta
            .admin_socket
            .as_ref()
            .ok_or(MtaError::NotConfigured)?;
        AdminClient::connect(path, self.settings().mta.timeout).map_err(MtaError::Connect)
    }

    /// One exchange with the MTA's admin socket.
    pub(crate) fn mta<T>(
        &self,
        f: impl FnOnce(&mut AdminClient) -> Result<T, ClientError>,
    ) -> Result<T, MtaError> {
        let mut client = self.mta_client()?;
        f(&mut client).map_err(MtaError::Answer)
    }
}
