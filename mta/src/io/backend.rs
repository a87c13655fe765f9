//! Which I/O backend this process runs on: io_uring where the kernel allows it
//! (containers often forbid it), else epoll. Chosen once at start from
//! `[runtime] io`; every core and every delivery connection then uses the same one.

use anyhow::{Context, Result};

use super::uring;
use crate::config::IoChoice;

/// The I/O backend every core runs: one for the whole process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    IoUring,
    Epoll,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::IoUring => "io_uring",
            Backend::Epoll => "epoll",
        }
    }

    /// Picks the backend; `auto` falls back to epoll with one line saying why.
    pub fn choose(choice: IoChoice) -> Result<Backend> {
        match choice {
            IoChoice::Epoll => Ok(Backend::Epoll),
            IoChoice::IoUring => uring::probe()
                .map(|()| Backend::IoUring)
                .context("runtime.io = \"io_uring\", but the kernel refuses io_uring"),
            IoChoice::Auto => match uring::probe() {
                Ok(()) => Ok(Backend::IoUring),
                Err(e) => {
                    tracing::info!(reason = %e, "io_uring unavailable, using epoll");
                    Ok(Backend::Epoll)
                }
            },
        }
    }
}
