//! A buffered SMTP connection shared by the load generator and the sink.
//!
//! `Conn` owns the socket (plain TCP, or TLS after STARTTLS), one input buffer that
//! the protocol code parses in place, and one output buffer that collects a whole
//! batch of commands or replies so each batch leaves in a single write.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// Input buffer size: large enough for any reply or command line we accept and for
/// big reads of message data, small enough to keep thousands of connections cheap.
const INPUT_BUFFER: usize = 64 * 1024;

/// The transport under a connection.
enum Io {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::TlsStream<TcpStream>>),
    /// Only seen for the instant of a STARTTLS upgrade, or after a failed one.
    Closed,
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "connection closed")
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Io::Closed => Poll::Ready(Err(closed())),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Io::Closed => Poll::Ready(Err(closed())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Io::Closed => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Io::Closed => Poll::Ready(Ok(())),
        }
    }
}

/// A connection with an input buffer parsed in place and a batched output buffer.
pub struct Conn {
    io: Io,
    input: Box<[u8]>,
    /// Bytes `start..end` of `input` are received and not yet consumed.
    start: usize,
    end: usize,
    output: Vec<u8>,
}

impl Conn {
    pub fn new(stream: TcpStream) -> Self {
        Self {
            io: Io::Plain(stream),
            input: vec![0; INPUT_BUFFER].into_boxed_slice(),
            start: 0,
            end: 0,
            output: Vec::with_capacity(16 * 1024),
        }
    }

    /// Received bytes not yet consumed by the protocol code.
    pub fn buffered(&self) -> &[u8] {
        &self.input[self.start..self.end]
    }

    /// Marks `n` buffered bytes as consumed.
    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Reads more input; returns the number of new bytes, 0 at end of stream.
    ///
    /// Fails with `InvalidData` when the buffer is full of unconsumed bytes: the peer
    /// sent a line or reply longer than anything this tool accepts.
    pub async fn fill(&mut self) -> io::Result<usize> {
        if self.end == self.input.len() {
            if self.start == 0 {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "line too long"));
            }
            self.input.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let n = self.io.read(&mut self.input[self.end..]).await?;
        self.end += n;
        Ok(n)
    }

    /// The pending output batch; appended to, then sent by [`Conn::flush`].
    pub fn output(&mut self) -> &mut Vec<u8> {
        &mut self.output
    }

    /// Sends the pending output batch in one write.
    pub async fn flush(&mut self) -> io::Result<()> {
        if !self.output.is_empty() {
            self.io.write_all(&self.output).await?;
            self.output.clear();
        }
        self.io.flush().await
    }

    /// Best-effort orderly close.
    pub async fn shutdown(&mut self) {
        let _ = self.io.shutdown().await;
    }

    /// Upgrades to TLS as the client after a `220` reply to STARTTLS.
    pub async fn start_tls_client(
        &mut self,
        connector: &TlsConnector,
        name: rustls_pki_types::ServerName<'static>,
    ) -> io::Result<()> {
        let tcp = self.take_plain()?;
        let tls = connector.connect(name, tcp).await?;
        self.io = Io::Tls(Box::new(tls.into()));
        Ok(())
    }

    /// Upgrades to TLS as the server after sending `220` to STARTTLS.
    pub async fn start_tls_server(&mut self, acceptor: &TlsAcceptor) -> io::Result<()> {
        let tcp = self.take_plain()?;
        let tls = acceptor.accept(tcp).await?;
        self.io = Io::Tls(Box::new(tls.into()));
        Ok(())
    }

    /// Takes the plain socket for a TLS upgrade. Anything already buffered was sent
    /// in cleartext before the handshake; it is discarded rather than trusted, which
    /// is what defeats STARTTLS command injection.
    fn take_plain(&mut self) -> io::Result<TcpStream> {
        self.start = 0;
        self.end = 0;
        self.output.clear();
        match std::mem::replace(&mut self.io, Io::Closed) {
            Io::Plain(tcp) => Ok(tcp),
            other => {
                self.io = other;
                Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "TLS already active",
                ))
            }
        }
    }
}
