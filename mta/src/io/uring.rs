//! The io_uring backend: tokio-uring's completion-based `TcpStream`, and the probe
//! that tells whether the kernel lets us use io_uring at all. tokio-uring is
//! unmaintained upstream, so few places name it: this file, the core runtime and
//! its listeners (`runtime.rs`), and the delivery worker handing a connected socket
//! over to it (`delivery/worker.rs`).

use std::io;

use tokio_uring::net::TcpStream;

use super::Io;

pub struct UringStream(pub TcpStream);

impl Io for UringStream {
    async fn read(&mut self, mut buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        // tokio-uring reads into the buffer from its start up to its capacity and sets
        // the length to what the kernel wrote when that is more than the current length.
        buf.clear();
        let (res, buf) = self.0.read(buf).await;
        (res, buf)
    }

    async fn write_all(&mut self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        self.0.write_all(buf).await
    }

    async fn shutdown(&mut self) {
        // The peer may already be gone; nothing useful to do with the error.
        let _ = self.0.shutdown(std::net::Shutdown::Write);
    }
}

impl Drop for UringStream {
    /// tokio-uring does not cancel an in-flight operation when its future is dropped
    /// (a read abandoned by a timeout stays queued in the ring), and the queued read
    /// keeps the socket open: a silent client would hold its connection forever.
    /// Shutting the socket down completes that read, so the descriptor is closed.
    fn drop(&mut self) {
        let _ = self.0.shutdown(std::net::Shutdown::Both);
    }
}

/// Creates a ring and runs one no-op through it: containers and hardened kernels
/// refuse one or the other (EPERM, ENOSYS, or io_uring_disabled).
pub fn probe() -> io::Result<()> {
    let rt = tokio_uring::Runtime::new(&tokio_uring::builder())?;
    rt.block_on(tokio_uring::no_op())
}
