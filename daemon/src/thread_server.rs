//! The thread-per-connection server of both JSON-lines sockets (control's socket
//! and the MTA's admin socket): an accept thread admits peers by their
//! `SO_PEERCRED` uid within the socket's [`Admission`] (a hard cap, a share per
//! uid, slots reserved for the service uids; `admission.rs`), a thread serves each
//! connection, and a shutdown lets every connection finish the request in hand.
//!
//! ```text
//!   start ── accept thread ── admit (peer credentials, Admission)
//!              │                └── connection thread ── Handler::serve ── End (logged)
//!   stop ── shut the listener's read side (wakes accept) ── join ── drain (grace)
//! ```
//!
//! Threads, not async: both sockets see a handful of peers, and the limit bounds
//! the threads.

use std::collections::HashMap;
use std::io::{BufReader, ErrorKind, Write};
use std::net::Shutdown;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::lines::{is_timeout, read_line, trim_line, Line};
use crate::peer::{self, Caller};

mod admission;

pub use admission::{Admission, Busy};

/// How a connection ended, for the log.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// The peer closed its side (or the daemon is stopping and shut ours).
    Closed,
    IdleTimeout,
    TooLarge,
    /// Reading or writing failed (the peer vanished, or stopped reading).
    Io(ErrorKind),
}

/// What a socket does with its connections.
pub trait Handler: Send + Sync + 'static {
    /// Serves one admitted connection to its end.
    fn serve(&self, stream: UnixStream, caller: &Caller) -> End;

    /// The whole line (newline included) a peer refused for `why` gets.
    fn busy_line(&self, why: Busy) -> Vec<u8>;
}

/// Open connections, each with its peer's uid and a handle to shut its read side
/// at shutdown.
#[derive(Default)]
struct Conns {
    next_id: u64,
    open: HashMap<u64, (u32, UnixStream)>,
}

struct Shared<H> {
    /// Names the socket in threads and log lines (`control`, `admin`).
    name: &'static str,
    handler: H,
    admission: Admission,
    stopping: AtomicBool,
    conns: Mutex<Conns>,
    /// Signalled whenever a connection ends, and at stop.
    changed: Condvar,
}

/// A running server; [`ThreadServer::stop`] ends it.
pub struct ThreadServer<H> {
    shared: Arc<Shared<H>>,
    listener: UnixListener,
    acceptor: Option<JoinHandle<()>>,
}

impl<H: Handler> ThreadServer<H> {
    /// Starts accepting on `listener`.
    pub fn start(
        name: &'static str,
        listener: &UnixListener,
        admission: Admission,
        handler: H,
    ) -> std::io::Result<ThreadServer<H>> {
        let shared = Arc::new(Shared {
            name,
            handler,
            admission,
            stopping: AtomicBool::new(false),
            conns: Mutex::new(Conns::default()),
            changed: Condvar::new(),
        });
        let accepting = listener.try_clone()?;
        let acceptor = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name(format!("{name}-accept"))
                .spawn(move || accept_loop(&shared, &accepting))?
        };
        Ok(ThreadServer {
            shared,
            listener: listener.try_clone()?,
            acceptor: Some(acceptor),
        })
    }

    pub fn handler(&self) -> &H {
        &self.shared.handler
    }

    /// A handle for threads beside the server (control's retention sweep) to sleep on.
    pub fn sleeper(&self) -> Sleeper<H> {
        Sleeper {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Stops accepting, lets each connection finish the request it is answering
    /// (up to `grace`), and returns how many were still open then.
    pub fn stop(mut self, grace: Duration) -> usize {
        let s = &*self.shared;
        s.stopping.store(true, Ordering::Release);
        s.changed.notify_all();
        // Wakes the blocked accept(): on Linux it fails once the listening
        // socket's receive side is shut.
        let _ = rustix::net::shutdown(&self.listener, rustix::net::Shutdown::Read);
        if let Some(acceptor) = self.acceptor.take() {
            if acceptor.join().is_err() {
                tracing::error!(socket = s.name, "the accept thread panicked");
            }
        }
        s.drain(grace)
    }
}

/// Lets another thread sleep until a deadline or the server's stop.
pub struct Sleeper<H> {
    shared: Arc<Shared<H>>,
}

impl<H> Sleeper<H> {
    /// Sleeps until `deadline`; true when the server began stopping meanwhile.
    pub fn sleep_until(&self, deadline: Instant) -> bool {
        let s = &*self.shared;
        let conns = s.conns();
        let wait = deadline.saturating_duration_since(Instant::now());
        let _ = s
            .changed
            .wait_timeout_while(conns, wait, |_| {
                !s.stopping.load(Ordering::Acquire) && Instant::now() < deadline
            })
            .unwrap_or_else(|p| p.into_inner());
        s.stopping.load(Ordering::Acquire)
    }

    pub fn handler(&self) -> &H {
        &self.shared.handler
    }
}

impl<H> Shared<H> {
    fn conns(&self) -> MutexGuard<'_, Conns> {
        // Only a map of handles is behind this lock; a panic cannot leave it half-made.
        self.conns.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn finished(&self, id: u64) {
        self.conns().open.remove(&id);
        self.changed.notify_all();
    }

    /// Shuts the read side of every connection (each finishes the request in hand)
    /// and waits for them; returns how many were left when `grace` ran out.
    fn drain(&self, grace: Duration) -> usize {
        let deadline = Instant::now() + grace;
        let mut conns = self.conns();
        for (_, stream) in conns.open.values() {
            let _ = stream.shutdown(Shutdown::Read);
        }
        while !conns.open.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            conns = self
                .changed
                .wait_timeout(conns, left)
                .map(|(guard, _)| guard)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        conns.open.len()
    }
}

impl<H: Handler> Shared<H> {
    fn admit(self: &Arc<Self>, stream: UnixStream) {
        let name = self.name;
        let caller = match peer::caller(&stream) {
            Ok(caller) => caller,
            Err(e) => {
                tracing::warn!(socket = name, error = %e, "no peer credentials; closing");
                return;
            }
        };
        let open = {
            let mut conns = self.conns();
            // At most max_connections entries: a count per accept is cheap.
            let mine = conns.open.values().filter(|(uid, _)| *uid == caller.uid);
            let checked = self
                .admission
                .check(caller.uid, conns.open.len(), mine.count());
            if let Err(busy) = checked {
                drop(conns);
                tracing::warn!(
                    socket = name,
                    uid = caller.uid,
                    pid = caller.pid,
                    "connection refused: {busy}"
                );
                let mut stream = stream;
                let _ = stream.set_write_timeout(Some(Duration::from_millis(200)));
                let _ = stream.write_all(&self.handler.busy_line(busy));
                return;
            }
            let handle = match stream.try_clone() {
                Ok(handle) => handle,
                Err(e) => {
                    tracing::warn!(socket = name, error = %e, "cannot clone a connection; closing");
                    return;
                }
            };
            conns.next_id += 1;
            let id = conns.next_id;
            conns.open.insert(id, (caller.uid, handle));
            Open {
                shared: Arc::clone(self),
                id,
            }
        };
        // A thread that cannot start drops its closure, and with it `open`.
        let spawned = std::thread::Builder::new()
            .name(format!("{name}-conn"))
            .spawn(move || {
                let open = open;
                open.shared.connection(stream, caller);
            });
        if let Err(e) = spawned {
            tracing::error!(socket = name, error = %e, "cannot start a connection thread");
        }
    }

    fn connection(&self, stream: UnixStream, caller: Caller) {
        let started = Instant::now();
        let end = self.handler.serve(stream, &caller);
        let secs = started.elapsed().as_secs_f64();
        let (name, uid, pid) = (self.name, caller.uid, caller.pid);
        match end {
            End::Closed => tracing::debug!(socket = name, uid, pid, secs, "connection closed"),
            End::IdleTimeout => {
                tracing::info!(
                    socket = name,
                    uid,
                    pid,
                    secs,
                    "connection closed: idle timeout"
                )
            }
            End::TooLarge => {
                tracing::warn!(
                    socket = name,
                    uid,
                    pid,
                    secs,
                    "connection closed: request too large"
                )
            }
            End::Io(kind) => tracing::info!(
                socket = name, uid, pid, secs, error = %kind,
                "connection closed: I/O error"
            ),
        }
    }
}

/// One connection's place among the open ones, given back when dropped: when the
/// connection ends, and also when its handler panics or its thread never starts,
/// so that neither the admission limits nor the drain at stop count it forever.
struct Open<H> {
    shared: Arc<Shared<H>>,
    id: u64,
}

impl<H> Drop for Open<H> {
    fn drop(&mut self) {
        self.shared.finished(self.id);
    }
}

fn accept_loop<H: Handler>(shared: &Arc<Shared<H>>, listener: &UnixListener) {
    loop {
        let accepted = listener.accept();
        if shared.stopping.load(Ordering::Acquire) {
            return;
        }
        match accepted {
            Ok((stream, _)) => shared.admit(stream),
            Err(e) => {
                // Out of file descriptors and the like: pause rather than spin.
                tracing::warn!(socket = shared.name, error = %e, "accept failed");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// The request loop of a connection on either socket: reads a line (within
/// `idle_timeout` of the previous answer, never more than `max` bytes), skips
/// blank ones, and hands each to `answer` with the connection's writer. A line
/// over `max` gets `too_large` (the whole line to send) and closes the
/// connection: the rest of it cannot be told apart from the next request.
pub fn serve_lines(
    stream: UnixStream,
    idle_timeout: Duration,
    max: usize,
    too_large: impl FnOnce() -> Vec<u8>,
    mut answer: impl FnMut(&[u8], &mut UnixStream) -> std::io::Result<()>,
) -> End {
    let mut writer = match stream.try_clone() {
        Ok(writer) => writer,
        Err(e) => return End::Io(e.kind()),
    };
    // A peer that stops reading must not hold this thread forever either.
    if let Err(e) = writer.set_write_timeout(Some(idle_timeout)) {
        return End::Io(e.kind());
    }
    let mut reader = BufReader::with_capacity(8 * 1024, stream);
    loop {
        let deadline = Instant::now() + idle_timeout;
        let line = match read_line(&mut reader, deadline, max) {
            Ok(Line::Eof) => return End::Closed,
            Ok(Line::TooLarge) => {
                // The peer may already be gone; the connection closes either way.
                let _ = writer.write_all(&too_large());
                return End::TooLarge;
            }
            Ok(Line::Complete(line)) => line,
            Err(e) if is_timeout(&e) => return End::IdleTimeout,
            Err(e) => return End::Io(e.kind()),
        };
        let line = trim_line(&line);
        if line.is_empty() {
            continue;
        }
        if let Err(e) = answer(line, &mut writer) {
            return End::Io(e.kind());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    /// Panics while serving its first connection, answers `ok` on later ones.
    struct PanicsOnce(std::sync::atomic::AtomicBool);

    impl Handler for PanicsOnce {
        fn serve(&self, mut stream: UnixStream, _caller: &Caller) -> End {
            if !self.0.swap(true, Ordering::AcqRel) {
                panic!("a handler bug");
            }
            let _ = stream.write_all(b"ok\n");
            End::Closed
        }

        fn busy_line(&self, _why: Busy) -> Vec<u8> {
            b"busy\n".to_vec()
        }
    }

    fn answer(path: &std::path::Path) -> String {
        let mut stream = UnixStream::connect(path).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut text = String::new();
        let _ = stream.read_to_string(&mut text);
        text
    }

    #[test]
    fn a_panicking_handler_gives_its_place_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.sock");
        let listener = UnixListener::bind(&path).expect("bind");
        let handler = PanicsOnce(AtomicBool::new(false));
        let server =
            ThreadServer::start("test", &listener, Admission::shared(1), handler).expect("start");
        // The first connection's thread panics: the peer sees the connection close.
        assert_eq!(answer(&path), "");
        // With its place given back, the one allowed connection is served, not `busy`.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let text = answer(&path);
            if text == "ok\n" {
                break;
            }
            assert_eq!(text, "busy\n");
            assert!(
                Instant::now() < deadline,
                "the panicked connection kept its place"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(server.stop(Duration::from_secs(1)), 0);
    }
}
