//! A rustls connection, server or client, driven over any [`Io`]: rustls is sans-IO,
//! so this file only moves ciphertext between the socket and the connection object.

use std::io::{self, Read, Write};
use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, Connection, ServerConfig, ServerConnection};

use crate::io::Io;

/// Ciphertext read size: one full TLS record plus header fits.
const TLS_READ: usize = 18 * 1024;

pub struct TlsStream<I> {
    inner: I,
    conn: Connection,
    /// Ciphertext read from the socket but not yet given to rustls.
    rx: Vec<u8>,
    rx_pos: usize,
    /// Spare buffer for reads and writes of ciphertext.
    scratch: Vec<u8>,
    eof: bool,
}

fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// Runs the server handshake over `inner`. The caller bounds it with a timeout.
pub async fn handshake<I: Io>(inner: I, config: Arc<ServerConfig>) -> io::Result<TlsStream<I>> {
    let conn = ServerConnection::new(config).map_err(tls_error)?;
    drive_handshake(inner, conn.into()).await
}

/// Runs the client handshake with `server` over `inner` (outbound STARTTLS). The
/// caller bounds it with a timeout.
pub async fn connect<I: Io>(
    inner: I,
    config: Arc<ClientConfig>,
    server: ServerName<'static>,
) -> io::Result<TlsStream<I>> {
    let conn = ClientConnection::new(config, server).map_err(tls_error)?;
    drive_handshake(inner, conn.into()).await
}

async fn drive_handshake<I: Io>(inner: I, conn: Connection) -> io::Result<TlsStream<I>> {
    let mut s = TlsStream {
        inner,
        conn,
        rx: Vec::with_capacity(TLS_READ),
        rx_pos: 0,
        scratch: Vec::with_capacity(TLS_READ),
        eof: false,
    };
    while s.conn.is_handshaking() {
        s.send_pending().await?;
        if !s.conn.is_handshaking() {
            break;
        }
        if s.eof {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        s.receive().await?;
    }
    s.send_pending().await?;
    Ok(s)
}

impl<I: Io> TlsStream<I> {
    /// "TLSv1.3 TLS13_AES_256_GCM_SHA384": for logs, the envelope and `Received:`.
    pub fn description(&self) -> String {
        let version = match self.conn.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
            _ => "TLS",
        };
        match self.conn.negotiated_cipher_suite() {
            Some(suite) => format!("{version} {:?}", suite.suite()),
            None => version.to_string(),
        }
    }

    /// Writes whatever rustls has queued (handshake messages, alerts, records).
    async fn send_pending(&mut self) -> io::Result<()> {
        while self.conn.wants_write() {
            let mut out = std::mem::take(&mut self.scratch);
            out.clear();
            self.conn.write_tls(&mut out)?;
            let (res, out) = self.inner.write_all(out).await;
            self.scratch = out;
            res?;
        }
        Ok(())
    }

    /// Feeds rustls ciphertext: leftovers first, else one read from the socket.
    async fn receive(&mut self) -> io::Result<()> {
        if self.rx_pos >= self.rx.len() {
            let buf = std::mem::take(&mut self.rx);
            let (res, buf) = self.inner.read(buf).await;
            self.rx = buf;
            self.rx_pos = 0;
            if res? == 0 {
                self.eof = true;
                return Ok(());
            }
        }
        let mut pending = &self.rx[self.rx_pos..];
        let before = pending.len();
        let fed = self.conn.read_tls(&mut pending);
        self.rx_pos += before - pending.len();
        fed?;
        if let Err(e) = self.conn.process_new_packets() {
            // Tell the peer why (an alert) before giving up; best effort.
            let _ = self.send_pending().await;
            return Err(tls_error(e));
        }
        Ok(())
    }
}

impl<I: Io> Io for TlsStream<I> {
    async fn read(&mut self, mut buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        let cap = buf.capacity().max(1);
        buf.clear();
        buf.resize(cap, 0);
        loop {
            match self.conn.reader().read(&mut buf) {
                Ok(n) => {
                    // n == 0: the peer sent close_notify.
                    buf.truncate(n);
                    return (Ok(n), buf);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => {
                    buf.clear();
                    return (Err(e), buf);
                }
            }
            if self.eof {
                buf.clear();
                return (Ok(0), buf);
            }
            // Key updates and session tickets may need an answer while we read.
            let step = match self.send_pending().await {
                Ok(()) => self.receive().await,
                Err(e) => Err(e),
            };
            if let Err(e) = step {
                buf.clear();
                return (Err(e), buf);
            }
        }
    }

    async fn write_all(&mut self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        let mut rest = &buf[..];
        while !rest.is_empty() {
            match self.conn.writer().write(rest) {
                Ok(n) => rest = &rest[n..],
                Err(e) => return (Err(e), buf),
            }
            if let Err(e) = self.send_pending().await {
                return (Err(e), buf);
            }
        }
        (Ok(()), buf)
    }

    async fn shutdown(&mut self) {
        self.conn.send_close_notify();
        let _ = self.send_pending().await;
        self.inner.shutdown().await;
    }
}
