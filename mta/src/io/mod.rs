//! The owned-buffer I/O trait that sessions and delivery connections are written
//! against, its two backends, io_uring (tokio-uring, `uring.rs`) and epoll (tokio's
//! current-thread runtime, `epoll.rs`), and [`Backend`] (`backend.rs`): which of the
//! two this process runs on, chosen once at start.
//!
//! Buffers are passed by value and handed back with the result, because io_uring
//! needs to own a buffer while the kernel fills it; the epoll backend follows the
//! same shape so that a session is one piece of code for both. Sessions are pinned
//! to their core and never `Send`, hence `async fn` in a trait without `Send` bounds.

mod backend;
pub mod epoll;
pub mod proxied;
pub mod uring;

use std::io;

pub use backend::Backend;

/// A byte stream a session can read from and write to.
#[allow(async_fn_in_trait)] // futures stay on their core: no Send bound wanted
pub trait Io {
    /// Reads into `buf` from its start, up to its capacity; returns the buffer with
    /// its length set to the bytes read. `Ok(0)` means the peer closed.
    async fn read(&mut self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>);

    /// Writes every byte of `buf`.
    async fn write_all(&mut self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>);

    /// Closes the write side, telling the peer we are done.
    async fn shutdown(&mut self);
}
