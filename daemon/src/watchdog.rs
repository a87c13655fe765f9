//! Work that may never return, given a bound: opening a store. sled 0.34 can spin
//! forever, or panic, on a damaged file, and nothing can stop a thread from the
//! outside. So the work runs on a thread of its own while the caller watches: the
//! work ticks a [`Progress`] counter as it goes (a record read, a record checked),
//! and when the counter has not moved for the stall bound, or the work panicked,
//! the caller gets a [`Stuck`] error to report. A stalled thread is left behind,
//! still holding whatever it held (the store's lock): the caller is expected to
//! report and exit the process.
//!
//! A bound on progress rather than on the whole: checking every record of a large
//! spool may rightly take minutes, but never a stall bound without reading one.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A counter that bounded work bumps each time it gets somewhere.
#[derive(Debug, Clone, Default)]
pub struct Progress(Arc<AtomicU64>);

impl Progress {
    pub fn new() -> Progress {
        Progress::default()
    }

    /// One more step done.
    pub fn tick(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    fn steps(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Why bounded work gave no answer.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Stuck {
    /// No progress for the stall bound: the work is presumed to spin or hang.
    #[error("{what}: no progress for {} s (the files may be damaged)", after.as_secs())]
    Stalled { what: String, after: Duration },
    /// The work panicked; the message is the panic's.
    #[error("{what}: failed inside the storage engine ({message}; the files may be damaged)")]
    Panicked { what: String, message: String },
    #[error("{what}: cannot start a thread: {source}")]
    Spawn {
        what: String,
        source: std::io::Error,
    },
}

/// Runs `work` on its own thread and returns its result, or [`Stuck`] once
/// `progress` has not moved for `stall` or the work panicked. `what` names the
/// work in the error ("opening the spool /var/lib/…").
pub fn bounded<T: Send + 'static>(
    what: &str,
    stall: Duration,
    progress: &Progress,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Stuck> {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("bounded-work".into())
        .spawn(move || {
            // The receiver may be gone (the caller gave up); nobody to tell then.
            let _ = tx.send(catch_unwind(AssertUnwindSafe(work)));
        })
        .map_err(|source| Stuck::Spawn {
            what: what.to_owned(),
            source,
        })?;
    let mut seen = progress.steps();
    let mut last_move = Instant::now();
    loop {
        let left = (last_move + stall).saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(panic)) => {
                return Err(Stuck::Panicked {
                    what: what.to_owned(),
                    message: panic_message(panic.as_ref()),
                })
            }
            Err(RecvTimeoutError::Timeout) => {
                let now = progress.steps();
                if now == seen {
                    return Err(Stuck::Stalled {
                        what: what.to_owned(),
                        after: stall,
                    });
                }
                seen = now;
                last_move = Instant::now();
            }
            // Only if the thread died without unwinding through `catch_unwind`.
            Err(RecvTimeoutError::Disconnected) => {
                return Err(Stuck::Panicked {
                    what: what.to_owned(),
                    message: "the worker thread ended without an answer".into(),
                })
            }
        }
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_fail_on_panic_and_stop_waiting_on_a_stall() {
        let progress = Progress::new();
        let ok = bounded("adding", Duration::from_secs(5), &progress, || 2 + 2);
        assert_eq!(ok.expect("answer"), 4);

        let panicked = bounded("opening", Duration::from_secs(5), &progress, || {
            panic!("tried to serialize Uninitialized")
        });
        let e = panicked.expect_err("panic");
        assert!(matches!(e, Stuck::Panicked { .. }), "{e}");
        assert!(e.to_string().contains("tried to serialize"), "{e}");

        // Spins forever without a tick: given up after the bound. (The thread is
        // left spinning until the test process exits, as a daemon would exit.)
        let start = Instant::now();
        let stalled = bounded("spinning", Duration::from_millis(300), &progress, || loop {
            std::thread::sleep(Duration::from_millis(50));
        });
        assert!(matches!(stalled, Err(Stuck::Stalled { .. })));
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn progress_keeps_slow_work_alive() {
        let progress = Progress::new();
        let ticking = progress.clone();
        // Takes longer than the bound in all, never that long without a tick.
        let slow = bounded(
            "checking",
            Duration::from_millis(300),
            &progress,
            move || {
                for _ in 0..10 {
                    std::thread::sleep(Duration::from_millis(100));
                    ticking.tick();
                }
                "done"
            },
        );
        assert_eq!(slow.expect("answer"), "done");
    }
}
