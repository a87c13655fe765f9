//! The thread that keeps the MTA's tenant directory in step with control.
//!
//! At start it asks control once (`snapshot.get`, identified by our Unix uid);
//! if control answers, the snapshot is installed and saved; if not, the saved one
//! is installed and the log says the MTA runs on it; with neither, AUTH answers
//! `454` until control answers. Then it polls every `poll_ms` with the version it
//! holds (control answers `unchanged` cheaply), installs and saves every new
//! version, and logs one line when control goes away and one when it is back.
//!
//! ```text
//!   start ── snapshot.get ──ok──► install + save
//!                └──err──► load saved file ──► install (warn) | none (warn, 454)
//!   thread: every poll_ms ── snapshot.get{known_version} ── unchanged | install + save
//!   install: data keys made, missed erasures completed (data_keys.rs), directory swapped
//! ```

use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use way2mail_queue::Spool;
use way2mail_wire::client::{Auth, ClientError, ControlClient};
use way2mail_wire::protocol::{Request, Response};
use way2mail_wire::snapshot::Snapshot;

use super::directory::Directory;
use super::state::Tenants;
use super::{data_keys, snapshot_file};

/// How often idle lockout and counter entries are dropped.
const MAINTENANCE: Duration = Duration::from_secs(60);

/// Where snapshots come from and go to.
pub struct Source {
    pub socket: PathBuf,
    pub snapshot_file: PathBuf,
    pub poll: Duration,
    pub timeout: Duration,
    /// Its keyring seals the saved snapshot (the system data key) and gets the
    /// tenants' keys; erasures made in control are completed in it.
    pub spool: Spool,
}

/// The running follower; [`Follower::stop`] ends its thread.
pub struct Follower {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

struct State {
    source: Source,
    tenants: Arc<Tenants>,
    client: Option<ControlClient>,
    reachable: bool,
    known: Option<u64>,
}

impl Follower {
    /// Loads the first directory (from control, else from the saved file), then
    /// follows control on a thread.
    pub fn start(source: Source, tenants: Arc<Tenants>) -> std::io::Result<Follower> {
        let mut state = State {
            source,
            tenants,
            client: None,
            reachable: false,
            known: None,
        };
        state.first();
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("control-follower".into())
            .spawn(move || state.follow(&flag))?;
        Ok(Follower {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops polling and waits for the thread (at most one request timeout).
    pub fn stop(mut self) {
        self.signal();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    fn signal(&self) {
        let (lock, cv) = &*self.stop;
        *lock.lock().unwrap_or_else(|p| p.into_inner()) = true;
        cv.notify_all();
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.signal();
    }
}

impl State {
    fn first(&mut self) {
        match self.ask() {
            Ok(Some(snapshot)) => {
                self.reachable = true;
                self.install(snapshot, true);
                self.tenants.confirmed();
            }
            // Control claims we hold a version we do not: nothing to install yet.
            Ok(None) => self.reachable = true,
            Err(e) => self.fall_back(&e),
        }
    }

    /// Control did not answer at start: the saved snapshot, or nothing.
    fn fall_back(&mut self, error: &ClientError) {
        let socket = self.source.socket.display().to_string();
        match snapshot_file::load(&self.source.snapshot_file, self.source.spool.keyring()) {
            Ok(Some(saved)) => {
                tracing::warn!(
                    error = %error,
                    version = saved.snapshot.version,
                    saved_at_ms = saved.saved_at_ms,
                    "control unreachable at {socket}, serving from the snapshot saved at {} (version {})",
                    describe_time(saved.saved_at_ms),
                    saved.snapshot.version
                );
                self.install(saved.snapshot, false);
            }
            Ok(None) => tracing::warn!(
                error = %error,
                "control unreachable at {socket} and no snapshot saved: AUTH answers 454 until control answers"
            ),
            Err(e) => tracing::warn!(
                error = %error,
                saved = %e,
                "control unreachable at {socket} and the saved snapshot is unusable: AUTH answers 454 until control answers"
            ),
        }
    }

    fn follow(mut self, stop: &(Mutex<bool>, Condvar)) {
        let mut maintained = Instant::now();
        loop {
            if wait(stop, self.source.poll) {
                return;
            }
            match self.ask() {
                Ok(answer) => {
                    if !self.reachable {
                        self.reachable = true;
                        tracing::info!(
                            socket = %self.source.socket.display(),
                            "control reachable again"
                        );
                    }
                    if let Some(snapshot) = answer {
                        self.install(snapshot, true);
                    }
                    if self.known.is_some() {
                        self.tenants.confirmed();
                    }
                }
                Err(e) => {
                    if self.reachable {
                        self.reachable = false;
                        tracing::warn!(
                            error = %e,
                            version = self.known,
                            "control unreachable at {}, serving from the snapshot in memory",
                            self.source.socket.display()
                        );
                    }
                }
            }
            if maintained.elapsed() >= MAINTENANCE {
                maintained = Instant::now();
                self.tenants.maintain();
            }
        }
    }

    /// One `snapshot.get`; `None` when control says our version is current. The
    /// connection is kept between polls and dropped on any error.
    fn ask(&mut self) -> Result<Option<Snapshot>, ClientError> {
        let mut client = match self.client.take() {
            Some(c) => c,
            None => ControlClient::connect(&self.source.socket, self.source.timeout)?,
        };
        let request = Request::SnapshotGet {
            known_version: self.known,
        };
        let answer = client.call(request, &Auth::default())?;
        self.client = Some(client);
        match answer {
            Response::Snapshot(s) if Some(s.version) == self.known => Ok(None),
            Response::Snapshot(s) => Ok(Some(s)),
            Response::SnapshotUnchanged { .. } => Ok(None),
            other => {
                self.client = None;
                Err(ClientError::Protocol(format!(
                    "snapshot.get answered with {other:?}"
                )))
            }
        }
    }

    fn install(&mut self, snapshot: Snapshot, save: bool) {
        // Before the directory is swapped in: a tenant new in this snapshot has its
        // key before its first session can ask for it.
        data_keys::apply(&self.source.spool, &snapshot);
        let directory = Directory::new(&snapshot);
        let (tenants, domains, users) = directory.counts();
        tracing::info!(
            from = self.known,
            version = snapshot.version,
            tenants,
            domains,
            users,
            "control snapshot installed"
        );
        self.known = Some(snapshot.version);
        self.tenants.install(directory);
        if save {
            if let Err(e) = snapshot_file::save(
                &self.source.snapshot_file,
                self.source.spool.keyring(),
                &snapshot,
            ) {
                tracing::error!(error = %e, "cannot save the control snapshot; a restart without control would run without it");
            }
        }
    }
}

/// Sleeps `d` unless stopped first; true when stopped.
fn wait(stop: &(Mutex<bool>, Condvar), d: Duration) -> bool {
    let (lock, cv) = stop;
    let guard = lock.lock().unwrap_or_else(|p| p.into_inner());
    let (guard, _) = cv
        .wait_timeout_while(guard, d, |stopped| !*stopped)
        .unwrap_or_else(|p| p.into_inner());
    *guard
}

/// `unix 1700000000 (2h 5m ago)`: exact and readable without a calendar.
fn describe_time(ms: u64) -> String {
    let now = way2mail_daemon::time::now_secs();
    let secs = ms / 1000;
    let age = now.saturating_sub(secs);
    format!(
        "unix {secs} ({}h {}m {}s ago)",
        age / 3600,
        age / 60 % 60,
        age % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::control::AuthConfig;
    use crate::tenants::directory::tests::snapshot;
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::net::{UnixListener, UnixStream};
    use std::path::Path;
    use std::sync::atomic::{AtomicBool, Ordering};
    use way2mail_seal::Keyring;
    use way2mail_wire::protocol::{RequestEnvelope, ResponseEnvelope, VERSION};

    /// A control daemon reduced to `snapshot.get`, on a real Unix socket.
    struct FakeControl {
        path: PathBuf,
        current: Arc<Mutex<Snapshot>>,
        stopped: Arc<AtomicBool>,
        thread: Option<JoinHandle<()>>,
    }

    impl FakeControl {
        fn start(path: &Path, first: Snapshot) -> FakeControl {
            let listener = UnixListener::bind(path).expect("bind");
            let current = Arc::new(Mutex::new(first));
            let stopped = Arc::new(AtomicBool::new(false));
            let (c, s) = (Arc::clone(&current), Arc::clone(&stopped));
            let thread = std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if s.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(stream) = stream else { continue };
                    let (c, s) = (Arc::clone(&c), Arc::clone(&s));
                    std::thread::spawn(move || serve(stream, &c, &s));
                }
            });
            FakeControl {
                path: path.to_owned(),
                current,
                stopped,
                thread: Some(thread),
            }
        }

        fn set(&self, s: Snapshot) {
            *self.current.lock().expect("lock") = s;
        }

        /// Closes the socket and every connection: control is down.
        fn stop(mut self) {
            self.stopped.store(true, Ordering::SeqCst);
            let _ = UnixStream::connect(&self.path);
            if let Some(t) = self.thread.take() {
                t.join().expect("accept thread");
            }
            std::fs::remove_file(&self.path).expect("remove socket");
        }
    }

    fn serve(stream: UnixStream, current: &Mutex<Snapshot>, stopped: &AtomicBool) {
        let mut writer = stream.try_clone().expect("clone");
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { return };
            if stopped.load(Ordering::SeqCst) {
                return;
            }
            let req: RequestEnvelope = serde_json::from_str(&line).expect("request");
            let Request::SnapshotGet { known_version } = req.request else {
                panic!("unexpected request {line}");
            };
            assert!(req.token.is_none(), "the MTA is identified by its uid only");
            let snapshot = current.lock().expect("lock").clone();
            let result = if known_version == Some(snapshot.version) {
                Response::SnapshotUnchanged {
                    version: snapshot.version,
                }
            } else {
                Response::Snapshot(snapshot)
            };
            let answer = ResponseEnvelope {
                v: VERSION,
                id: req.id,
                ok: true,
                result: Some(result),
                error: None,
            };
            let mut out = serde_json::to_vec(&answer).expect("encode");
            out.push(b'\n');
            if writer.write_all(&out).is_err() {
                return;
            }
        }
    }

    /// The spool is opened once per follower, like the daemon's.
    fn source(dir: &Path) -> Source {
        Source {
            socket: dir.join("control.sock"),
            snapshot_file: dir.join("control-snapshot"),
            poll: Duration::from_millis(500),
            timeout: Duration::from_millis(2000),
            spool: Spool::open(&dir.join("spool"), keyring(dir)).expect("spool"),
        }
    }

    fn keyring(dir: &Path) -> Keyring {
        let master = way2mail_seal::MasterKey::load_or_create(&dir.join("spool.key")).expect("key");
        Keyring::open(&dir.join("spool.keyring"), master).expect("keyring")
    }

    fn tenants() -> Arc<Tenants> {
        Arc::new(Tenants::new(&AuthConfig::default()).expect("tenants"))
    }

    fn wait_for_version(t: &Tenants, version: u64, limit: Duration) -> Duration {
        let started = Instant::now();
        while t.version() != Some(version) {
            assert!(
                started.elapsed() < limit,
                "version {version} not seen within {limit:?} (have {:?})",
                t.version()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        started.elapsed()
    }

    #[test]
    fn follows_control_and_survives_its_absence() {
        let dir = tempfile::tempdir().expect("tempdir");
        let control = FakeControl::start(&dir.path().join("control.sock"), snapshot(1));

        // Initial load happens before start returns, and is saved.
        let t = tenants();
        let follower = Follower::start(source(dir.path()), Arc::clone(&t)).expect("start");
        assert_eq!(t.version(), Some(1));
        assert!(dir.path().join("control-snapshot").exists());

        // A change is followed within a second with the default 500 ms poll.
        control.set(snapshot(2));
        let took = wait_for_version(&t, 2, Duration::from_secs(1));
        assert!(took < Duration::from_secs(1), "{took:?}");

        // Control goes away: the directory in memory stays.
        control.stop();
        std::thread::sleep(Duration::from_millis(700));
        assert_eq!(t.version(), Some(2));
        follower.stop();

        // A restart without control serves the saved snapshot.
        let t2 = tenants();
        let follower = Follower::start(source(dir.path()), Arc::clone(&t2)).expect("restart");
        assert_eq!(t2.version(), Some(2), "saved snapshot loaded at start");

        // Control comes back with news: followed again.
        let control = FakeControl::start(&dir.path().join("control.sock"), snapshot(3));
        wait_for_version(&t2, 3, Duration::from_secs(2));
        follower.stop();
        control.stop();
    }

    #[test]
    fn no_control_and_no_saved_snapshot_means_no_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let t = tenants();
        let follower = Follower::start(source(dir.path()), Arc::clone(&t)).expect("start");
        assert_eq!(t.version(), None);
        // The spool is the follower's alone while it runs.
        follower.stop();
        // A tampered saved file is refused, not trusted.
        let key = keyring(dir.path());
        let file = dir.path().join("control-snapshot");
        snapshot_file::save(&file, &key, &snapshot(5)).expect("save");
        let mut raw = std::fs::read(&file).expect("read");
        let n = raw.len() - 1;
        raw[n] ^= 0x80;
        std::fs::write(&file, raw).expect("write");
        let t2 = tenants();
        let again = Follower::start(source(dir.path()), Arc::clone(&t2)).expect("start");
        assert_eq!(t2.version(), None);
        again.stop();
    }
}
