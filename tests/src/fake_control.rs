//! A control daemon reduced to what the MTA asks of it: `snapshot.get` answered
//! from a snapshot the test crafts (and may replace), and `retention.report`
//! recorded. For shapes the real control never produces (a domain without keys, an
//! erasure the MTA missed) and for control coming and going at will; the real
//! daemon is [`crate::control::Control`].

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use way2mail_wire::mta_admin::SweepReport;
use way2mail_wire::protocol::{Request, RequestEnvelope, Response, ResponseEnvelope, VERSION};
use way2mail_wire::snapshot::Snapshot;

#[derive(Default)]
struct State {
    snapshot: Option<Snapshot>,
    reports: Vec<SweepReport>,
}

/// Serves on a real Unix socket until dropped (then the socket file is removed).
pub struct FakeControl {
    path: PathBuf,
    state: Arc<Mutex<State>>,
    stopped: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

impl FakeControl {
    pub fn start(path: &Path, snapshot: Snapshot) -> anyhow::Result<FakeControl> {
        let listener = UnixListener::bind(path).context("bind the fake control socket")?;
        listener.set_nonblocking(true)?;
        let state = Arc::new(Mutex::new(State {
            snapshot: Some(snapshot),
            reports: Vec::new(),
        }));
        let stopped = Arc::new(AtomicBool::new(false));
        let (st, stop) = (Arc::clone(&state), Arc::clone(&stopped));
        let thread = std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (st, stop) = (Arc::clone(&st), Arc::clone(&stop));
                        std::thread::spawn(move || serve(stream, &st, &stop));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Ok(FakeControl {
            path: path.to_owned(),
            state,
            stopped,
            thread: Some(thread),
        })
    }

    /// Serves `snapshot` from the next `snapshot.get` on.
    pub fn set(&self, snapshot: Snapshot) {
        lock(&self.state).snapshot = Some(snapshot);
    }

    /// The `retention.report`s received so far, in order.
    pub fn reports(&self) -> Vec<SweepReport> {
        lock(&self.state).reports.clone()
    }
}

impl Drop for FakeControl {
    fn drop(&mut self) {
        self.stopped.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn serve(stream: UnixStream, state: &Mutex<State>, stopped: &AtomicBool) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    while !stopped.load(Ordering::SeqCst) {
        match reader.read_line(&mut line) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(_) => return,
        }
        let Ok(req) = serde_json::from_str::<RequestEnvelope>(&line) else {
            return;
        };
        line.clear();
        let result = {
            let mut st = lock(state);
            match req.request {
                Request::SnapshotGet { known_version } => match &st.snapshot {
                    Some(s) if known_version == Some(s.version) => {
                        Response::SnapshotUnchanged { version: s.version }
                    }
                    Some(s) => Response::Snapshot(s.clone()),
                    None => return,
                },
                Request::RetentionReport { report } => {
                    st.reports.push(report);
                    Response::Done
                }
                _ => return,
            }
        };
        let answer = ResponseEnvelope {
            v: VERSION,
            id: req.id,
            ok: true,
            result: Some(result),
            error: None,
        };
        let Ok(mut out) = serde_json::to_vec(&answer) else {
            return;
        };
        out.push(b'\n');
        if writer.write_all(&out).is_err() {
            return;
        }
    }
}
