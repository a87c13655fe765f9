//! The epoll backend: tokio's readiness-based `TcpStream` on a current-thread runtime.

use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::Io;

pub struct EpollStream(pub TcpStream);

impl Io for EpollStream {
    async fn read(&mut self, mut buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        buf.clear();
        let res = self.0.read_buf(&mut buf).await;
        (res, buf)
    }

    async fn write_all(&mut self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        let res = self.0.write_all(&buf).await;
        (res, buf)
    }

    async fn shutdown(&mut self) {
        // The peer may already be gone; nothing useful to do with the error.
        let _ = self.0.shutdown().await;
    }
}
