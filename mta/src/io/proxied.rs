//! Reading a PROXY protocol v2 header (`way2mail_mta::proxy_protocol`) off a
//! connection from a listener's `proxy_from`, before the session starts.
//!
//! On the SMTP listeners the header is read through [`Io`] like the session's
//! reads, which fill a buffer as far as the kernel has data: what a client sent
//! right behind the header (a TLS ClientHello on port 465, pipelined commands) is
//! kept in [`Proxied`] and handed to the session before anything else. On the API
//! listener (tokio sockets) the header is read exactly.

use std::io;
use std::net::SocketAddr;

use tokio::io::AsyncReadExt;
use way2mail_mta::proxy_protocol::{self, Header, FIXED_LEN};

use super::Io;

/// How long a balancer has to send its PROXY header: it sends it at once, and a
/// connection waiting for one is not yet under the connection caps.
const HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A connection whose PROXY header was read: what came behind it first, then the
/// connection.
pub struct Proxied<I> {
    pending: Vec<u8>,
    inner: I,
}

impl<I: Io> Proxied<I> {
    pub fn new(inner: I, pending: Vec<u8>) -> Proxied<I> {
        Proxied { pending, inner }
    }
}

impl<I: Io> Io for Proxied<I> {
    async fn read(&mut self, mut buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        if self.pending.is_empty() {
            return self.inner.read(buf).await;
        }
        buf.clear();
        let n = self.pending.len().min(buf.capacity().max(1));
        buf.extend_from_slice(&self.pending[..n]);
        self.pending.drain(..n);
        (Ok(n), buf)
    }

    async fn write_all(&mut self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        self.inner.write_all(buf).await
    }

    async fn shutdown(&mut self) {
        self.inner.shutdown().await;
    }
}

fn refused(e: proxy_protocol::ProxyError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// Reads the header: the client it names (`None` for the balancer's own
/// connections), and the octets read past it.
pub async fn read_header<I: Io>(io: &mut I) -> io::Result<(Option<SocketAddr>, Vec<u8>)> {
    let mut got: Vec<u8> = Vec::with_capacity(FIXED_LEN);
    fill(io, &mut got, FIXED_LEN).await?;
    let fixed: [u8; FIXED_LEN] = got[..FIXED_LEN]
        .try_into()
        .map_err(|_| io::Error::other("short"))?;
    let end = FIXED_LEN + proxy_protocol::rest_len(&fixed).map_err(refused)?;
    fill(io, &mut got, end).await?;
    let header = proxy_protocol::parse(&fixed, &got[FIXED_LEN..end]).map_err(refused)?;
    let pending = got.split_off(end);
    Ok((client_of(header), pending))
}

/// Reads into `got` until it holds at least `need` octets (a read may bring more);
/// refuses as soon as what came is not the signature.
async fn fill<I: Io>(io: &mut I, got: &mut Vec<u8>, need: usize) -> io::Result<()> {
    while got.len() < need {
        let (read, buf) = io.read(Vec::with_capacity(need - got.len())).await;
        if read? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed within the PROXY header",
            ));
        }
        got.extend_from_slice(&buf);
        // Behind the signature a client's bytes are not a header: refuse early.
        let sig = got.len().min(proxy_protocol::SIGNATURE.len());
        if got[..sig] != proxy_protocol::SIGNATURE[..sig] {
            return Err(refused(proxy_protocol::ProxyError::Signature));
        }
    }
    Ok(())
}

/// Reads the header off a tokio socket, exactly: the client it names.
pub async fn read_header_exact(
    stream: &mut tokio::net::TcpStream,
) -> io::Result<Option<SocketAddr>> {
    let mut fixed = [0u8; FIXED_LEN];
    stream.read_exact(&mut fixed).await?;
    let len = proxy_protocol::rest_len(&fixed).map_err(refused)?;
    let mut rest = vec![0u8; len];
    stream.read_exact(&mut rest).await?;
    proxy_protocol::parse(&fixed, &rest)
        .map(client_of)
        .map_err(refused)
}

fn client_of(header: Header) -> Option<SocketAddr> {
    match header {
        Header::Proxied(client) => Some(client),
        Header::Local => None,
    }
}

/// Awaits `reading` (one of the readers above) for at most [`HEADER_TIMEOUT`]:
/// its result, or `None` once the refusal or the timeout is counted and logged.
pub async fn header_within<T>(
    reading: impl std::future::Future<Output = io::Result<T>>,
    peer: SocketAddr,
    listener: &'static str,
) -> Option<T> {
    match tokio::time::timeout(HEADER_TIMEOUT, reading).await {
        Ok(Ok(read)) => {
            crate::metrics::proxy_header("accepted");
            Some(read)
        }
        Ok(Err(e)) => {
            crate::metrics::proxy_header("refused");
            tracing::warn!(%peer, listener, error = %e, "PROXY header refused; connection closed");
            None
        }
        Err(_) => {
            crate::metrics::proxy_header("timeout");
            tracing::warn!(%peer, listener, "no PROXY header in time; connection closed");
            None
        }
    }
}
