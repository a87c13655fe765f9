//! Harness for the black-box tests: it starts the real `way2mail-mta` binary and talks to
//! it only through sockets, signals, files and its command line.
//!
//! Layout and flow:
//!
//! ```text
//! binary   finds target/<profile>/way2mail-mta (and way2mail-control, way2mail) next to the
//!          test executable (built once per test process under cargo)
//! control  Control: a way2mail-control daemon in a temp dir, the `way2mail` CLI against it,
//!          operators bootstrapped and logged in with real TOTP codes; its metrics
//!          endpoint on an ephemeral port (`metrics_addr()`)
//! http     http_get on a daemon's metrics/health endpoint, metric_value from the
//!          Prometheus text format, tcp_listeners of a process (from /proc)
//! fake_control  FakeControl: `snapshot.get` from a crafted snapshot, `retention.report`
//!          recorded
//! config   TestConfig: ephemeral 127.0.0.1 ports, a temp dir, TOML sections a test adds
//! daemon   Daemon::start(config) -> process with stderr in a file, waits for every
//!          listener's 220, SIGTERM then SIGKILL on drop; `spool list` runs; `admin()`
//!          connects to its admin socket
//! process  child commands with a deadline (`--check`, `spool list`, python3)
//! client   SmtpClient: a line-level SMTP client over TCP or TLS, TestReply parsing
//! sink     Sink: a receiving SMTP server on loopback that the daemon delivers to, with
//!          scripted failures
//! tls      rustls client configs trusting the daemon's generated certificate
//! ```
//!
//! Every test that speaks SMTP runs once per I/O backend; [`for_each_backend!`] expands a
//! `fn name(Backend) -> anyhow::Result<()>` into the two `#[test]`s.

mod binary;
mod client;
mod config;
pub mod control;
mod daemon;
pub mod dns;
pub mod fake_control;
pub mod http;
mod process;
pub mod sink;
mod tls;
mod tmpfs;

pub use binary::{bench_binary, cli_binary, control_binary, daemon_binary};
pub use client::{SmtpClient, SmtpStream, TestReply};
pub use config::{free_port, ClosedPort, Ports, TestConfig};
pub use daemon::{parse_spool_list, Daemon, Signal, SpoolEntry};
pub use dns::{Record, RecordType, StubDns};
pub use fake_control::FakeControl;
pub use http::{api_request, http_get, metric_value, tcp_listeners, ApiAnswer};
pub use process::{run_bounded, wait_timeout};
pub use sink::{Behaviour, Received, Sink, SinkCounts, SinkOptions};
pub use tls::{client_config, load_pem_cert};
pub use tmpfs::Tmpfs;

use std::time::{Duration, Instant};

/// The daemon's `[runtime] io` backends that the tests cover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    IoUring,
    Epoll,
}

impl Backend {
    /// Both backends, in the order the tests run them.
    pub const ALL: [Backend; 2] = [Backend::IoUring, Backend::Epoll];

    /// The value of `[runtime] io` selecting this backend.
    pub fn config_value(self) -> &'static str {
        match self {
            Backend::IoUring => "io_uring",
            Backend::Epoll => "epoll",
        }
    }
}

/// Polls `probe` until it returns `Some`, or fails after `timeout` naming `what`.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> Option<T>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe() {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            anyhow::bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Checks that a reply to the end of DATA is `250 2.0.0 <26-char id> queued` and returns
/// the id.
pub fn queued_id(reply: &TestReply) -> anyhow::Result<String> {
    let text = reply.text();
    let words: Vec<&str> = text.split_whitespace().collect();
    match (reply.code, words.as_slice()) {
        (250, ["2.0.0", id, "queued", ..]) if is_message_id(id) => Ok((*id).to_string()),
        _ => anyhow::bail!("expected `250 2.0.0 <id> queued`, got {reply}"),
    }
}

/// A message id as the daemon prints it: 26 alphanumeric ASCII characters.
pub fn is_message_id(word: &str) -> bool {
    word.len() == 26 && word.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Expands `fn name(Backend) -> anyhow::Result<()>` items into a module per function with
/// one `#[test]` per backend: `name::io_uring` and `name::epoll`.
#[macro_export]
macro_rules! for_each_backend {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[test]
                fn io_uring() -> ::anyhow::Result<()> {
                    super::$name($crate::Backend::IoUring)
                }

                #[test]
                fn epoll() -> ::anyhow::Result<()> {
                    super::$name($crate::Backend::Epoll)
                }
            }
        )*
    };
}

/// Opens a connection that the daemon greets with 220, retrying briefly: a connection
/// a test closed a moment ago may still be counted until the daemon notices.
pub fn admitted(port: u16) -> anyhow::Result<SmtpClient> {
    wait_for(
        "a 220 greeting",
        Duration::from_secs(5),
        || match SmtpClient::connect(port) {
            Ok((client, greeting)) if greeting.code == 220 => Some(client),
            _ => None,
        },
    )
}
