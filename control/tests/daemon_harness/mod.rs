//! Starts the real `way2mail-control` binary in a temporary directory and talks
//! raw JSON lines to it. Shared by the `daemon_*` tests.

#![allow(dead_code)]

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const DAEMON: &str = env!("CARGO_BIN_EXE_way2mail-control");

pub struct Daemon {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub config: PathBuf,
}

impl Daemon {
    /// Starts a daemon whose config is the paths in its tempdir plus `extra`
    /// (top-level keys, then tables), and waits until it answers.
    pub fn start(extra: &str) -> Daemon {
        let dir = tempfile::tempdir().expect("tempdir");
        Daemon::start_in(dir, extra)
    }

    /// The metrics endpoint is off (`[metrics] listen = ""`) unless `extra` has its
    /// own `[metrics]` table: tests in parallel would all want the default port.
    pub fn start_in(dir: tempfile::TempDir, extra: &str) -> Daemon {
        let socket = dir.path().join("run/control.sock");
        let config = dir.path().join("control.toml");
        let metrics = if extra.lines().any(|line| line.trim() == "[metrics]") {
            ""
        } else {
            "[metrics]\nlisten = \"\"\n"
        };
        fs::write(
            &config,
            format!(
                "socket = {:?}\nstore = {:?}\nkey_file = {:?}\nkeyring_file = {:?}\n{extra}\n{metrics}",
                socket,
                dir.path().join("store"),
                dir.path().join("control.key"),
                dir.path().join("control.keyring"),
            ),
        )
        .expect("write config");
        let mut daemon = Daemon {
            child: None,
            dir,
            socket,
            config,
        };
        daemon.spawn();
        daemon
    }

    fn spawn(&mut self) {
        let log = fs::File::create(self.dir.path().join("daemon.log")).expect("log file");
        let child = Command::new(DAEMON)
            .arg("--config")
            .arg(&self.config)
            .env("RUST_LOG", "debug")
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn way2mail-control");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child_mut().try_wait().expect("try_wait") {
                panic!("daemon exited at start: {status}\n{}", self.log());
            }
            if UnixStream::connect(&self.socket).is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "daemon did not listen:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn child_mut(&mut self) -> &mut Child {
        self.child.as_mut().expect("daemon running")
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("daemon running").id()
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    pub fn connect(&self) -> Conn {
        let stream = UnixStream::connect(&self.socket).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        Conn {
            reader: BufReader::new(stream.try_clone().expect("clone")),
            writer: stream,
        }
    }

    /// Sends a signal and waits for the exit.
    pub fn signal_and_wait(&mut self, signal: rustix::process::Signal) -> ExitStatus {
        let pid = rustix::process::Pid::from_raw(i32::try_from(self.pid()).expect("pid"))
            .expect("nonzero pid");
        rustix::process::kill_process(pid, signal).expect("kill");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child_mut().try_wait().expect("try_wait") {
                self.child = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "daemon did not exit:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn restart(&mut self) {
        self.spawn();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub struct Conn {
    pub reader: BufReader<UnixStream>,
    pub writer: UnixStream,
}

impl Conn {
    pub fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).expect("write");
    }

    /// Reads one response line; `None` when the daemon closed the connection.
    pub fn recv(&mut self) -> Option<Value> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => None,
            Ok(_) => Some(serde_json::from_str(&line).expect("response is JSON")),
            Err(e) => panic!("reading a response: {e}"),
        }
    }

    pub fn call(&mut self, line: &str) -> Value {
        self.send(format!("{line}\n").as_bytes());
        self.recv().expect("a response")
    }

    /// True when the daemon has closed the connection (EOF or reset).
    pub fn closed(&mut self) -> bool {
        let mut buf = [0u8; 1];
        match self.reader.read(&mut buf) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        }
    }
}

/// The error code of a response, asserting it is an error for request `id`.
pub fn error_code(response: &Value, id: u64) -> String {
    assert_eq!(response["v"], 1, "{response}");
    assert_eq!(response["ok"], false, "{response}");
    assert_eq!(response["id"], id, "{response}");
    response["error"]["code"]
        .as_str()
        .expect("error code")
        .to_string()
}

pub fn message(response: &Value) -> String {
    response["error"]["message"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

pub fn exists(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok()
}
