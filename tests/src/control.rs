//! One running `way2mail-control` daemon in its own temp dir, and the `way2mail` CLI
//! pointed at it. Operators are real: bootstrapped as root (the tests run as root),
//! logged in with a TOTP code computed from the secret the daemon printed, each with
//! its own token file, exactly as an operator's shell would hold it.
//!
//! The metrics endpoint listens on an ephemeral port of 127.0.0.1 ([`Control::metrics_addr`]),
//! never on the default 9466, so that tests in parallel do not collide; a test that
//! writes its own `[metrics]` table in `extra` gets exactly that instead.

use std::fs::File;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, ensure, Context};
use rustix::process::{kill_process, Pid, Signal};
use serde_json::Value;
use tempfile::TempDir;

use crate::binary::{cli_binary, control_binary};
use crate::process::wait_timeout;

const READY_TIMEOUT: Duration = Duration::from_secs(20);
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// A control daemon process; SIGTERM (then SIGKILL) on drop.
pub struct Control {
    dir: TempDir,
    child: Option<Child>,
    extra: String,
    /// Where the harness put the metrics endpoint; `None` when `extra` has its own
    /// `[metrics]` table.
    metrics: Option<SocketAddr>,
}

/// What one CLI run printed and how it exited.
#[derive(Debug)]
pub struct CliOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl CliOutput {
    /// Fails with both streams unless the command succeeded.
    pub fn ok(self) -> anyhow::Result<CliOutput> {
        ensure!(
            self.status.success(),
            "command failed ({}):\nstdout: {}\nstderr: {}",
            self.status,
            self.stdout,
            self.stderr
        );
        Ok(self)
    }

    /// stdout parsed as JSON (for `--json` runs).
    pub fn json(&self) -> anyhow::Result<Value> {
        serde_json::from_str(&self.stdout)
            .with_context(|| format!("stdout is not JSON: {}", self.stdout))
    }
}

/// A logged-in operator: its token file is what the CLI reads.
#[derive(Debug, Clone)]
pub struct Operator {
    pub name: String,
    pub role: String,
    pub password: String,
    pub totp_secret: String,
    pub token_file: PathBuf,
}

impl Control {
    /// Starts a daemon with the test defaults plus `extra` TOML (top-level keys first).
    pub fn start_with(extra: &str) -> anyhow::Result<Control> {
        let dir = tempfile::Builder::new()
            .prefix("way2mail-control-test-")
            .tempdir()
            .context("creating the control daemon's temp dir")?;
        let own_table = extra.lines().any(|line| line.trim() == "[metrics]");
        let metrics = if own_table {
            None
        } else {
            Some(SocketAddr::from(([127, 0, 0, 1], crate::free_port()?)))
        };
        let mut control = Control {
            dir,
            child: None,
            extra: extra.to_string(),
            metrics,
        };
        control.spawn()?;
        Ok(control)
    }

    pub fn start() -> anyhow::Result<Control> {
        Control::start_with("")
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The metrics and health endpoint (`[metrics] listen`) the harness configured;
    /// `None` when the test wrote its own `[metrics]` table.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics
    }

    /// The daemon's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("control.sock")
    }

    pub fn store_dir(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    pub fn key_file(&self) -> PathBuf {
        self.dir.path().join("control.key")
    }

    pub fn keyring_file(&self) -> PathBuf {
        self.dir.path().join("control.keyring")
    }

    /// The store's files, for opening it directly once the daemon has stopped.
    pub fn store_files(&self) -> way2mail_control::store::StoreFiles {
        way2mail_control::store::StoreFiles {
            dir: self.store_dir(),
            key_file: self.key_file(),
            keyring_file: self.keyring_file(),
            previous_key_files: Vec::new(),
        }
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("control.toml")
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let quote = |p: PathBuf| format!("\"{}\"", p.display());
        let mut text = format!(
            // The top-level keys first, so `extra` may open tables (`[dns]`).
            "socket = {}\nstore = {}\nkey_file = {}\nkeyring_file = {}\n{extra}\n",
            quote(self.socket()),
            quote(self.store_dir()),
            quote(self.key_file()),
            quote(self.keyring_file()),
            extra = self.extra,
        );
        if let Some(address) = self.metrics {
            text.push_str(&format!("[metrics]\nlisten = \"{address}\"\n"));
        }
        std::fs::write(self.config_path(), text).context("writing control.toml")?;
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.dir.path().join("control.log"))
            .context("control log")?;
        let child = Command::new(control_binary()?)
            .arg("--config")
            .arg(self.config_path())
            .current_dir(self.dir.path())
            .env_remove("RUST_LOG")
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting way2mail-control")?;
        self.child = Some(child);
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    bail!(
                        "way2mail-control exited during startup ({status}):\n{}",
                        self.log()
                    );
                }
            }
            if self.cli(None, &["whoami"], None)?.status.success() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("way2mail-control not ready in time:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("control.log")).unwrap_or_default()
    }

    /// SIGTERM and wait; the exit must be clean.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        kill_process(Pid::from_child(&child), Signal::TERM).context("SIGTERM to control")?;
        match wait_timeout(&mut child, Duration::from_secs(20))? {
            Some(status) if status.success() => Ok(()),
            Some(status) => bail!("way2mail-control exited with {status}:\n{}", self.log()),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("way2mail-control did not stop within 20 s")
            }
        }
    }

    /// Starts the daemon again on the same store, key and socket.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop()?;
        self.spawn()
    }

    /// Runs `way2mail --socket S ARGS…` with `token_file` as the session store and
    /// `stdin` fed to the process.
    pub fn cli(
        &self,
        token_file: Option<&Path>,
        args: &[&str],
        stdin: Option<&str>,
    ) -> anyhow::Result<CliOutput> {
        let mut command = Command::new(cli_binary()?);
        command
            .arg("--socket")
            .arg(self.socket())
            .args(args)
            .env_remove("WAY2MAIL_TOKEN")
            .env_remove("WAY2MAIL_SOCKET")
            .env_remove("RUST_LOG");
        let token_file = token_file
            .map(Path::to_path_buf)
            .unwrap_or_else(|| self.dir.path().join("no-token"));
        command.env("WAY2MAIL_TOKEN_FILE", token_file);
        let output = run_with_stdin(&mut command, stdin.unwrap_or(""))?;
        Ok(CliOutput {
            status: output.status,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }

    /// `way2mail ARGS…` as `op` (with its token file).
    pub fn run_as(&self, op: &Operator, args: &[&str]) -> anyhow::Result<CliOutput> {
        self.cli(Some(&op.token_file), args, None)
    }

    /// Bootstraps the first admin as root and logs it in.
    pub fn bootstrap_admin(&self, name: &str) -> anyhow::Result<Operator> {
        let password = format!("{name}-bootstrap-password-0");
        let out = self
            .cli(
                None,
                &["--json", "bootstrap", "--name", name, "--password-stdin"],
                Some(&format!("{password}\n")),
            )?
            .ok()?;
        let created = out.json()?;
        let secret = json_str(&created, "totp_secret")?;
        let op = Operator {
            name: name.to_string(),
            role: "admin".into(),
            password,
            totp_secret: secret,
            token_file: self.dir.path().join(format!("token-{name}")),
        };
        self.login(&op)?;
        Ok(op)
    }

    /// `operator add NAME --role ROLE` by `admin`, then logs the new operator in.
    pub fn add_operator(
        &self,
        admin: &Operator,
        name: &str,
        role: &str,
    ) -> anyhow::Result<Operator> {
        let out = self
            .run_as(admin, &["--json", "operator", "add", name, "--role", role])?
            .ok()?;
        let created = out.json()?;
        let op = Operator {
            name: name.to_string(),
            role: role.to_string(),
            password: json_str(&created, "password")?,
            totp_secret: json_str(&created, "totp_secret")?,
            token_file: self.dir.path().join(format!("token-{name}")),
        };
        self.login(&op)?;
        Ok(op)
    }

    /// `login` with the current TOTP code.
    pub fn login(&self, op: &Operator) -> anyhow::Result<()> {
        let code = totp_now(&op.totp_secret, 0)?;
        self.login_with_code(op, &code)?.ok().map(|_| ())
    }

    /// `login` with a given code (right, wrong, or from outside the window).
    pub fn login_with_code(&self, op: &Operator, code: &str) -> anyhow::Result<CliOutput> {
        self.cli(
            Some(&op.token_file),
            &[
                "login",
                "--name",
                &op.name,
                "--password-stdin",
                "--totp",
                code,
            ],
            Some(&format!("{}\n", op.password)),
        )
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Best effort in drop: the process may already be gone.
            let _ = kill_process(Pid::from_child(&child), Signal::TERM);
            if !matches!(
                wait_timeout(&mut child, Duration::from_secs(5)),
                Ok(Some(_))
            ) {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let log = self.log();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        eprintln!("--- way2mail-control log (last {} lines) ---", tail.len());
        for line in tail.iter().rev() {
            eprintln!("{line}");
        }
    }
}

/// The TOTP code for now + `offset_secs`.
pub fn totp_now(secret: &str, offset_secs: i64) -> anyhow::Result<String> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() as i64;
    let at = u64::try_from(now + offset_secs).context("time before the epoch")?;
    way2mail_control::totp::code(secret, at).map_err(|e| anyhow::anyhow!("totp: {e}"))
}

/// A string field of a JSON object, or an error naming it.
pub fn json_str(value: &Value, key: &str) -> anyhow::Result<String> {
    value
        .get(key)
        .and_then(Value::as_str)
        .map(str::to_string)
        .with_context(|| format!("no string `{key}` in {value}"))
}

fn run_with_stdin(command: &mut Command, input: &str) -> anyhow::Result<Output> {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {command:?}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        // The CLI may exit before reading (usage errors): a broken pipe is its answer.
        let _ = stdin.write_all(input.as_bytes());
    }
    // Output is small (tables, JSON); reading both pipes to the end in threads keeps a
    // chatty child from blocking, and the deadline keeps a hung one from hanging us.
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(COMMAND_TIMEOUT) {
        Ok(output) => Ok(output?),
        Err(_) => {
            if let Some(pid) = Pid::from_raw(pid as i32) {
                let _ = kill_process(pid, Signal::KILL);
            }
            bail!("{command:?} did not finish within {COMMAND_TIMEOUT:?}")
        }
    }
}

/// Extracts a tar archive with Python's `tarfile` (an implementation that is not
/// ours) into `dir`; returns the member names.
pub fn untar(archive: &Path, dir: &Path) -> anyhow::Result<Vec<String>> {
    let script = "import sys, tarfile, json\n\
        t = tarfile.open(sys.argv[1])\n\
        names = t.getnames()\n\
        t.extractall(sys.argv[2])\n\
        print(json.dumps(names))\n";
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(archive)
        .arg(dir)
        .output()
        .context("running python3")?;
    anyhow::ensure!(
        out.status.success(),
        "python's tarfile refused the archive: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}
