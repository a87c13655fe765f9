//! TLS for sessions: the server configuration (certificate loading, or a generated
//! self-signed one for development) and a rustls connection driven over the
//! owned-buffer [`Io`](crate::io::Io) trait, so both I/O backends get the same TLS.
//!
//! Only TLS 1.2 and 1.3 are offered, with rustls' aws-lc-rs provider passed
//! explicitly (a second provider compiled in would make rustls panic at run time).

pub mod certs;
pub mod client;
pub mod stream;

pub use certs::{api_config, server_config};
pub use stream::{connect, handshake, TlsStream};
