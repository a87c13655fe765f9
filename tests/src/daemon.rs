//! One running `way2mail-mta` process. Its stderr goes to a file in its temp dir (read back
//! into failure messages); it is ready when every listener has answered `220`; it is
//! stopped with SIGTERM (then SIGKILL) when the [`Daemon`] is dropped, so no test leaves a
//! process behind even when it fails half-way.

use std::fs::File;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
pub use rustix::process::Signal;
use rustix::process::{kill_process, Pid};
use rustls::ClientConfig;
use tempfile::TempDir;

use crate::client::SmtpClient;
use crate::config::{Ports, TestConfig};
use crate::process::{run_bounded, wait_timeout};
use crate::{daemon_binary, tls, Backend};

/// How long a daemon may take to answer on every listener.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a stop may take: above the default 10 s shutdown grace.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Read and write timeout of admin socket clients (a dump or a sweep takes a while).
const ADMIN_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound for the short CLI commands (`spool list`, `--check`).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// A daemon process and the temp dir holding its config, spool, key and certificate.
pub struct Daemon {
    // Dropped after `child` is stopped by `Drop::drop`, which runs before fields drop.
    dir: TempDir,
    child: Child,
    exited: Option<ExitStatus>,
    config_path: Option<PathBuf>,
    /// Where the relative/dev paths resolve: the temp dir, or `./var` for dev defaults.
    data_dir: PathBuf,
    ports: Ports,
    backend: Option<Backend>,
}

impl Daemon {
    /// Writes `config` into a fresh temp dir, starts the daemon on it and waits until all
    /// three listeners greet.
    ///
    /// The ports are free when chosen, but another process on the machine may bind
    /// one before the daemon does; the daemon then refuses to start, saying so, and
    /// it is started again on other ports (a few times at most).
    pub fn start(config: &TestConfig) -> anyhow::Result<Daemon> {
        let mut tries = 0;
        loop {
            tries += 1;
            match Daemon::start_once(config) {
                Err(e) if tries < 3 && format!("{e:#}").contains("already served by another") => {}
                started => return started,
            }
        }
    }

    fn start_once(config: &TestConfig) -> anyhow::Result<Daemon> {
        let dir = tempfile::Builder::new()
            .prefix("way2mail-test-")
            .tempdir()
            .context("creating the daemon's temp dir")?;
        let ports = Ports::ephemeral()?;
        let config_path = config.write(dir.path(), &ports)?;
        let data_dir = dir.path().to_path_buf();
        let mut command = Command::new(daemon_binary()?);
        command.arg("--config").arg(&config_path);
        let mut daemon = Daemon::spawn(command, dir, Some(config_path), data_dir, ports)?;
        daemon.backend = Some(config.backend());
        Ok(daemon)
    }

    /// Starts the daemon without `--config` in `dir` as working directory: the documented
    /// dev defaults (ports 2525/2587/2465, files under `./var`).
    pub fn start_dev_defaults(dir: TempDir) -> anyhow::Result<Daemon> {
        let data_dir = dir.path().join("var");
        let command = Command::new(daemon_binary()?);
        Daemon::spawn(command, dir, None, data_dir, Ports::dev_defaults())
    }

    fn spawn(
        mut command: Command,
        dir: TempDir,
        config_path: Option<PathBuf>,
        data_dir: PathBuf,
        ports: Ports,
    ) -> anyhow::Result<Daemon> {
        let stderr = File::create(dir.path().join("stderr.log")).context("stderr log")?;
        let child = command
            .current_dir(dir.path())
            // The config's [log] level must win over whatever the developer exported.
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(stderr.try_clone()?)
            .stderr(stderr)
            .spawn()
            .context("starting way2mail-mta")?;
        let mut daemon = Daemon {
            dir,
            child,
            exited: None,
            config_path,
            data_dir,
            ports,
            backend: None,
        };
        daemon.wait_ready()?;
        Ok(daemon)
    }

    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.try_exit()? {
                bail!(
                    "way2mail-mta exited during startup ({status}); stderr:\n{}",
                    self.stderr()
                );
            }
            let error = match self.probe_listeners() {
                Ok(()) => return Ok(()),
                Err(error) => error,
            };
            if Instant::now() >= deadline {
                bail!(
                    "way2mail-mta not ready within {READY_TIMEOUT:?} (last probe: {error:#}); \
                     stderr:\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Each listener must greet with 220; the probe then says QUIT and waits for the close
    /// so that it no longer counts against connection limits a test configured.
    fn probe_listeners(&self) -> anyhow::Result<()> {
        let short = Some(Duration::from_secs(2));
        let connect = |port: u16| -> anyhow::Result<TcpStream> {
            let tcp = TcpStream::connect(("127.0.0.1", port))?;
            tcp.set_read_timeout(short)?;
            tcp.set_write_timeout(short)?;
            Ok(tcp)
        };
        for port in [self.ports.mx, self.ports.submission] {
            let (client, greeting) = SmtpClient::over_plain(connect(port)?)?;
            finish_probe(port, client, greeting)?;
        }
        let config = self.tls_config()?;
        let port = self.ports.submissions;
        let (client, greeting) = SmtpClient::over_tls(connect(port)?, config)?;
        finish_probe(port, client, greeting)
    }

    pub fn ports(&self) -> Ports {
        self.ports
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Where the metrics endpoint listens (`[metrics] listen` of the test configs).
    pub fn metrics_addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.ports.metrics))
    }

    pub fn backend(&self) -> Option<Backend> {
        self.backend
    }

    /// The temp dir (the daemon's working directory).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn config_path(&self) -> Option<&Path> {
        self.config_path.as_deref()
    }

    pub fn cert_path(&self) -> PathBuf {
        self.data_dir.join("tls/cert.pem")
    }

    pub fn spool_dir(&self) -> PathBuf {
        self.data_dir.join("spool")
    }

    pub fn spool_key_path(&self) -> PathBuf {
        self.data_dir.join("spool.key")
    }

    pub fn spool_keyring_path(&self) -> PathBuf {
        self.data_dir.join("spool.keyring")
    }

    /// The admin socket: `mta.sock` in the temp dir (TestConfig's default), or the
    /// dev default `./var/mta.sock`.
    pub fn admin_socket(&self) -> PathBuf {
        match self.config_path {
            Some(_) => self.dir.path().join("mta.sock"),
            None => self.data_dir.join("mta.sock"),
        }
    }

    /// A client of the admin socket, as control connects to it.
    pub fn admin(&self) -> anyhow::Result<way2mail_wire::mta_admin::AdminClient> {
        let path = self.admin_socket();
        way2mail_wire::mta_admin::AdminClient::connect(&path, ADMIN_TIMEOUT)
            .with_context(|| format!("connecting to the admin socket {}", path.display()))
    }

    /// Opens the spool's files the way the daemon does (master key, keyring), once
    /// the daemon has stopped.
    pub fn open_spool(&self) -> anyhow::Result<way2mail_queue::Spool> {
        use anyhow::Context as _;
        let master = way2mail_seal::MasterKey::load_or_create(&self.spool_key_path())
            .context("loading the spool master key")?;
        let keyring = way2mail_seal::Keyring::open_existing(&self.spool_keyring_path(), master)
            .context("opening the spool keyring")?;
        way2mail_queue::Spool::open(&self.spool_dir(), keyring).context("opening the spool")
    }

    /// A TLS client config trusting the certificate the daemon generated.
    pub fn tls_config(&self) -> anyhow::Result<Arc<ClientConfig>> {
        tls::client_config(&tls::load_pem_cert(&self.cert_path())?)
    }

    /// A session on the submission listener after EHLO, STARTTLS (verifying the
    /// daemon's certificate) and EHLO again: ready for AUTH or MAIL.
    pub fn submission_tls(&self) -> anyhow::Result<SmtpClient> {
        let (mut c, greeting) = SmtpClient::connect(self.ports().submission)?;
        ensure!(greeting.code == 220, "greeting {greeting}");
        c.expect("EHLO client.test", 250)?;
        let mut c = c.starttls(self.tls_config()?)?;
        c.expect("EHLO client.test", 250)?;
        Ok(c)
    }

    /// Everything the daemon wrote to stderr (and stdout) so far.
    pub fn stderr(&self) -> String {
        std::fs::read(self.dir.path().join("stderr.log"))
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_else(|error| format!("<stderr.log unreadable: {error}>"))
    }

    /// Sends `signal` to the daemon.
    pub fn signal(&self, signal: Signal) -> anyhow::Result<()> {
        kill_process(Pid::from_child(&self.child), signal)
            .with_context(|| format!("sending {signal:?} to way2mail-mta"))
    }

    /// The exit status if the process has exited (reaping it).
    pub fn try_exit(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().context("polling way2mail-mta")?;
        }
        Ok(self.exited)
    }

    /// Fails (with the daemon's stderr) unless the process is still running.
    pub fn assert_running(&mut self) -> anyhow::Result<()> {
        match self.try_exit()? {
            None => Ok(()),
            Some(status) => bail!(
                "way2mail-mta exited unexpectedly ({status}); stderr:\n{}",
                self.stderr()
            ),
        }
    }

    /// Sends `signal` and waits for the exit; fails if it takes longer than 30 s.
    pub fn stop_with(&mut self, signal: Signal) -> anyhow::Result<ExitStatus> {
        if let Some(status) = self.try_exit()? {
            return Ok(status);
        }
        self.signal(signal)?;
        self.wait_exit()
    }

    /// Waits (without signalling) up to 30 s for the process to exit.
    pub fn wait_exit(&mut self) -> anyhow::Result<ExitStatus> {
        if let Some(status) = self.exited {
            return Ok(status);
        }
        match wait_timeout(&mut self.child, STOP_TIMEOUT)? {
            Some(status) => {
                self.exited = Some(status);
                Ok(status)
            }
            None => bail!(
                "way2mail-mta still running after {STOP_TIMEOUT:?}; stderr:\n{}",
                self.stderr()
            ),
        }
    }

    /// SIGTERM, and the exit status must be success.
    pub fn terminate(&mut self) -> anyhow::Result<()> {
        let status = self.stop_with(Signal::TERM)?;
        if !status.success() {
            bail!(
                "way2mail-mta exited with {status} after SIGTERM; stderr:\n{}",
                self.stderr()
            );
        }
        Ok(())
    }

    /// Runs `way2mail-mta spool list` against this daemon's config (or dev defaults):
    /// answered by the daemon through its admin socket while it runs.
    pub fn spool_list(&self) -> anyhow::Result<Output> {
        self.spool_command(&["spool", "list"])
    }

    /// `way2mail-mta ARGS…` against this daemon's config, as it exited.
    pub fn spool_command(&self, args: &[&str]) -> anyhow::Result<Output> {
        let mut command = Command::new(daemon_binary()?);
        command.current_dir(self.dir.path()).args(args);
        if let Some(config) = &self.config_path {
            command.arg("--config").arg(config);
        }
        run_bounded(command.env_remove("RUST_LOG"), COMMAND_TIMEOUT)
    }

    /// `spool log ARGS...`: the delivery records kept in the spool, one JSON line each.
    pub fn spool_log(&self, args: &[&str]) -> anyhow::Result<Vec<String>> {
        let mut command = Command::new(daemon_binary()?);
        command
            .current_dir(self.dir.path())
            .args(["spool", "log"])
            .args(args);
        if let Some(config) = &self.config_path {
            command.arg("--config").arg(config);
        }
        let output = run_bounded(command.env_remove("RUST_LOG"), COMMAND_TIMEOUT)?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if !output.status.success() {
            bail!(
                "spool log failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(stdout.lines().map(str::to_string).collect())
    }

    /// `spool list`, which must succeed, parsed.
    pub fn spool_entries(&self) -> anyhow::Result<Vec<SpoolEntry>> {
        let output = self.spool_list()?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            bail!(
                "spool list failed ({}):\nstdout:\n{stdout}\nstderr:\n{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        parse_spool_list(&stdout)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if matches!(self.try_exit(), Ok(None)) {
            // Best effort in drop: a failure to signal means the process is already gone.
            let _ = self.signal(Signal::TERM);
            if !matches!(
                wait_timeout(&mut self.child, Duration::from_secs(5)),
                Ok(Some(_))
            ) {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
        // Shown by the test runner only when the test failed.
        let stderr = self.stderr();
        let tail: Vec<&str> = stderr.lines().rev().take(60).collect();
        eprintln!("--- way2mail-mta stderr (last {} lines) ---", tail.len());
        for line in tail.iter().rev() {
            eprintln!("{line}");
        }
    }
}

fn finish_probe(
    port: u16,
    mut client: SmtpClient,
    greeting: crate::TestReply,
) -> anyhow::Result<()> {
    if greeting.code != 220 {
        bail!("port {port} greeted with {greeting}");
    }
    client.expect("QUIT", 221)?;
    // The server closes after 221; waiting for it keeps probes out of per-IP counts.
    let _ = client.read_to_end();
    Ok(())
}

/// One line of `spool list`: `<id> <sender or <>> <recipient count> <size bytes> <age>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolEntry {
    pub id: String,
    /// `incoming`, `deferred`, `active` or `held`.
    pub state: String,
    pub sender: String,
    pub recipients: usize,
    pub size: u64,
    pub age: String,
    /// The indented per-recipient lines under the message (state, attempts, next
    /// attempt, last error).
    pub details: Vec<String>,
}

/// Parses `spool list` output: a header line, one line per message, and optionally a
/// closing `N message(s)` count, which must then agree with the lines.
pub fn parse_spool_list(stdout: &str) -> anyhow::Result<Vec<SpoolEntry>> {
    let mut lines: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    ensure!(
        !lines.is_empty(),
        "spool list printed nothing, not even a header"
    );
    let header = lines.remove(0);
    let header_word = header.split_whitespace().next().unwrap_or("");
    ensure!(
        !crate::is_message_id(header_word),
        "spool list printed no header line: {header:?}"
    );
    let summary = lines.last().and_then(|last| {
        let (count, rest) = last.trim().split_once(' ')?;
        let count: usize = count.parse().ok()?;
        rest.starts_with("message").then_some(count)
    });
    if summary.is_some() {
        lines.pop();
    }
    let mut entries: Vec<SpoolEntry> = Vec::new();
    for line in lines {
        if line.starts_with(char::is_whitespace) {
            let entry = entries
                .last_mut()
                .with_context(|| format!("recipient line before any message: {line:?}"))?;
            entry.details.push(line.trim().to_string());
        } else {
            entries.push(parse_spool_line(line)?);
        }
    }
    if let Some(count) = summary {
        ensure!(
            count == entries.len(),
            "spool list says {count} message(s) but lists {}",
            entries.len()
        );
    }
    Ok(entries)
}

fn parse_spool_line(line: &str) -> anyhow::Result<SpoolEntry> {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        [id, state, sender, recipients, size, age @ ..]
            if crate::is_message_id(id) && !age.is_empty() =>
        {
            Ok(SpoolEntry {
                id: (*id).to_string(),
                state: (*state).to_string(),
                sender: (*sender).to_string(),
                recipients: recipients.parse().context("recipient count")?,
                size: size.parse().context("size in bytes")?,
                age: age.join(" "),
                details: Vec::new(),
            })
        }
        _ => bail!("unexpected spool list line {line:?}"),
    }
}
