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

/// A core's runtime: its ring set up for one thread that does everything.
///
/// - `IORING_SETUP_SINGLE_ISSUER`: only the thread that made the ring submits to
///   it (true here: a core's runtime never leaves its thread), so the kernel skips
///   the locking and task bookkeeping that several submitters need.
/// - `IORING_SETUP_COOP_TASKRUN`: a completion does not interrupt the thread with
///   an inter-processor interrupt to run its task work at once; the work runs at
///   the thread's next system call, which a busy core makes constantly (it polls
///   epoll at every turn of its loop).
///
/// Measured on the ingest benchmark (docs/benchmarks.md, "io_uring setup"): the
/// two together take io_uring from 0.88× epoll's throughput to 1.02× (means of
/// seven paired runs). `DEFER_TASKRUN` is not set: tokio-uring waits for
/// completions through the ring's readiness in epoll and never asks the kernel
/// for events, which deferred task work needs. A kernel older than 6.0 refuses
/// the flags; the ring is then made without them.
pub fn runtime() -> io::Result<tokio_uring::Runtime> {
    let mut ring = tokio_uring::uring_builder();
    ring.setup_single_issuer().setup_coop_taskrun();
    match tokio_uring::Runtime::new(tokio_uring::builder().uring_builder(&ring)) {
        Ok(rt) => Ok(rt),
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) => {
            tracing::debug!("io_uring setup flags refused by the kernel; a plain ring instead");
            tokio_uring::Runtime::new(&tokio_uring::builder())
        }
        Err(e) => Err(e),
    }
}

/// Creates a ring as the cores will and runs one no-op through it: containers and
/// hardened kernels refuse one or the other (EPERM, ENOSYS, or io_uring_disabled).
pub fn probe() -> io::Result<()> {
    let rt = runtime()?;
    rt.block_on(tokio_uring::no_op())
}
