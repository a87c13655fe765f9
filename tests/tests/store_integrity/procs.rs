//! What the store integrity tests share: a daemon process started with arguments
//! the harness does not give (`--accept-rollback`), watched until it serves or
//! exits within a deadline; byte flips; copies of store directories.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rustix::process::{kill_process, Pid, Signal};
use way2mail_tests::wait_timeout;

/// The bound the issue sets: a damaged store gives an error within this long.
pub const BOUND: Duration = Duration::from_secs(30);

/// A daemon process of a test; SIGTERM, then SIGKILL, when dropped.
pub struct Proc {
    child: Child,
    log: PathBuf,
    exited: Option<ExitStatus>,
}

/// How a start ended.
#[derive(Debug)]
pub enum Start {
    /// It serves.
    Ready,
    /// It exited first, with this status.
    Exited(ExitStatus),
}

impl Proc {
    /// Starts `command` with stdout and stderr in `log`.
    pub fn spawn(mut command: Command, log: PathBuf) -> Result<Proc> {
        let file = File::create(&log).context("log file")?;
        let child = command
            .env_remove("RUST_LOG")
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("starting {command:?}"))?;
        Ok(Proc {
            child,
            log,
            exited: None,
        })
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `ready` answers true or the process exits; fails (a hang) when
    /// neither happens within [`BOUND`].
    pub fn start(&mut self, mut ready: impl FnMut() -> bool) -> Result<Start> {
        let deadline = Instant::now() + BOUND;
        loop {
            if let Some(status) = self.child.try_wait()? {
                self.exited = Some(status);
                return Ok(Start::Exited(status));
            }
            if ready() {
                return Ok(Start::Ready);
            }
            if Instant::now() >= deadline {
                bail!(
                    "neither serving nor exited after {BOUND:?} (a hang); log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGTERM and the exit status (within 30 s).
    pub fn stop(&mut self) -> Result<ExitStatus> {
        if let Some(status) = self.exited {
            return Ok(status);
        }
        kill_process(Pid::from_child(&self.child), Signal::TERM).context("SIGTERM")?;
        match wait_timeout(&mut self.child, BOUND)? {
            Some(status) => {
                self.exited = Some(status);
                Ok(status)
            }
            None => bail!("still running 30 s after SIGTERM; log:\n{}", self.log()),
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.exited.is_none() && matches!(self.child.try_wait(), Ok(None)) {
            // Best effort: the process may be gone already.
            let _ = kill_process(Pid::from_child(&self.child), Signal::TERM);
            if !matches!(
                wait_timeout(&mut self.child, Duration::from_secs(5)),
                Ok(Some(_))
            ) {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }
}

/// XORs 64 bytes of `file` at `at` (a fraction of its length).
pub fn flip(file: &Path, at: f64) -> Result<()> {
    let mut bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let len = bytes.len();
    let start = ((len as f64 * at) as usize).min(len.saturating_sub(64));
    for b in &mut bytes[start..(start + 64).min(len)] {
        *b ^= 0x5a;
    }
    std::fs::write(file, bytes).with_context(|| format!("writing {}", file.display()))
}

/// Copies the directory `from` to `to` (replaced), files and subdirectories.
pub fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    if to.exists() {
        std::fs::remove_dir_all(to)?;
    }
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)
                .with_context(|| format!("copying {}", entry.path().display()))?;
        }
    }
    Ok(())
}

/// Puts sled's files of `old` back into `dir`, keeping `dir`'s anchor (and every
/// other file that is not sled's): the store an older copy, its anchor current.
pub fn put_back_sled_files(old: &Path, dir: &Path, anchor: &str) -> Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if is_sled_file(&name.to_string_lossy()) {
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                std::fs::remove_dir_all(path)?;
            } else {
                std::fs::remove_file(path)?;
            }
        }
    }
    for entry in std::fs::read_dir(old)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !is_sled_file(&name) || name == anchor {
            continue;
        }
        let target = dir.join(&name);
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

fn is_sled_file(name: &str) -> bool {
    name == "db" || name == "conf" || name == "blobs" || name.starts_with("snap.")
}

/// Opens sled's files directly (a disk fault, an attacker), retrying while the
/// stopped daemon's lock lingers.
pub fn raw_sled(dir: &Path) -> Result<sled::Db> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match sled::open(dir) {
            Ok(db) => return Ok(db),
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => bail!("opening {} with sled: {e}", dir.display()),
        }
    }
}
