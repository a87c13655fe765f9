//! A receiving SMTP server on loopback for the delivery tests: the daemon's outbound side
//! connects to it as it would to a real MX. It records what it accepts and can be told to
//! misbehave (4xx, 5xx, rejected recipients, dropped or stalled connections, refused
//! greetings), per message through a script or for every message through a behaviour.
//!
//! ```text
//! Sink::start -> accept thread -> one thread per connection -> session.rs (line reader,
//!                                 verbs, DATA/BDAT, STARTTLS) -> Shared (messages, counters)
//! ```
//!
//! Everything is bounded: socket timeouts, the idle time of a connection, the length of a
//! line and the size of a message, so a confused client fails a test instead of hanging it.
//! Dropping the sink stops the accept loop and every connection thread.

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

mod session;

use anyhow::Context;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::ServerConfig;

/// How often blocked reads and the accept loop look at the stop flag.
const POLL: Duration = Duration::from_millis(100);
/// A connection with no command for this long is closed with a 421.
const IDLE_LIMIT: Duration = Duration::from_secs(30);
/// Longest line (command or message line) accepted before the connection is closed.
const MAX_LINE: usize = 1024 * 1024;
/// Largest message kept; bigger ones are read to the end and refused with 552.
const MAX_MESSAGE: usize = 32 * 1024 * 1024;
/// The SIZE the sink advertises.
const ADVERTISED_SIZE: usize = 30 * 1024 * 1024;

/// What the sink does with one message (or, for `RefuseGreeting`, one connection).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Behaviour {
    /// 250 after the data.
    Accept,
    /// 451 4.3.0 after the data.
    TempFail,
    /// 554 5.0.0 after the data.
    PermFail,
    /// This reply (code, enhanced status) to every RCPT TO whose local part does not start
    /// with `ok`, so one transaction can mix accepted and rejected recipients.
    RejectRcpt(u16, &'static str),
    /// Closes the connection after the data, before replying.
    Drop,
    /// Waits this long after the data, then accepts.
    Stall(Duration),
    /// Greets with this code (421 or 554) and closes.
    RefuseGreeting(u16),
}

/// How a sink behaves and which extensions it advertises.
#[derive(Debug, Clone)]
pub struct SinkOptions {
    /// Applied once `script` is used up.
    pub behaviour: Behaviour,
    /// Applied in turn to the 1st, 2nd, ... message; a `RefuseGreeting` entry is applied to
    /// the next connection instead.
    pub script: Vec<Behaviour>,
    /// Offers STARTTLS with a freshly generated self-signed certificate.
    pub starttls: bool,
    pub pipelining: bool,
    /// false: EHLO gets 502 and the client must fall back to HELO.
    pub esmtp: bool,
    pub dsn: bool,
    pub chunking: bool,
    pub eightbitmime: bool,
    pub smtputf8: bool,
}

impl Default for SinkOptions {
    fn default() -> SinkOptions {
        SinkOptions {
            behaviour: Behaviour::Accept,
            script: Vec::new(),
            starttls: false,
            pipelining: true,
            esmtp: true,
            dsn: true,
            chunking: true,
            eightbitmime: true,
            smtputf8: true,
        }
    }
}

/// One accepted message.
#[derive(Debug, Clone)]
pub struct Received {
    /// The reverse path without angle brackets (empty for the null sender).
    pub mail_from: String,
    /// Everything after `MAIL FROM:<...>`, trimmed.
    pub mail_params: String,
    /// Accepted recipients only, without angle brackets.
    pub rcpt_to: Vec<String>,
    /// The parameters of each accepted recipient, in the same order.
    pub rcpt_params: Vec<String>,
    /// The message as sent, dot-stuffing removed, without the final `.` line.
    pub data: Vec<u8>,
    /// 0-based number of the connection that carried it.
    pub connection: usize,
    /// Whether the connection had switched to TLS.
    pub tls: bool,
    /// When the sink accepted it (just before its 250).
    pub at: Instant,
}

/// Counters of what the sink refused or lost on purpose.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SinkCounts {
    pub tempfails: usize,
    pub permfails: usize,
    pub drops: usize,
    pub rejected_rcpts: usize,
    pub refused_greetings: usize,
}

#[derive(Default)]
struct State {
    messages: Vec<Received>,
    counts: SinkCounts,
    connections: usize,
    active: usize,
    peak: usize,
    per_connection: Vec<usize>,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    script: Mutex<VecDeque<Behaviour>>,
    behaviour: Mutex<Behaviour>,
    stop: AtomicBool,
    opts: SinkOptions,
    tls: Option<Arc<ServerConfig>>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // A poisoned lock means a sink thread panicked; the data is still usable for the
        // test's assertions, which will fail on their own.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn current(&self) -> Behaviour {
        self.behaviour
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The behaviour for a new connection: a scripted `RefuseGreeting` at the head of the
    /// script, else the standing behaviour if it is one.
    fn for_connection(&self) -> Option<u16> {
        let mut script = self.script.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(Behaviour::RefuseGreeting(code)) = script.front() {
            let code = *code;
            script.pop_front();
            return Some(code);
        }
        match self.current() {
            Behaviour::RefuseGreeting(code) if script.is_empty() => Some(code),
            _ => None,
        }
    }

    /// The behaviour for a new message (decided at MAIL FROM).
    fn for_message(&self) -> Behaviour {
        let mut script = self.script.lock().unwrap_or_else(|e| e.into_inner());
        match script.front() {
            Some(Behaviour::RefuseGreeting(_)) | None => match self.current() {
                Behaviour::RefuseGreeting(_) => Behaviour::Accept,
                other => other,
            },
            Some(_) => script.pop_front().unwrap_or(Behaviour::Accept),
        }
    }

    fn count(&self, bump: impl FnOnce(&mut SinkCounts)) {
        bump(&mut self.state().counts);
        self.changed.notify_all();
    }
}

/// A running sink; stops when dropped.
pub struct Sink {
    shared: Arc<Shared>,
    addr: SocketAddr,
    accept: Option<JoinHandle<()>>,
    sessions: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Sink {
    /// Starts a sink on 127.0.0.1 with an ephemeral port.
    pub fn start(opts: SinkOptions) -> anyhow::Result<Sink> {
        Sink::start_on(IpAddr::V4(Ipv4Addr::LOCALHOST), opts)
    }

    /// Starts a sink on `ip` (any 127.x address works on Linux) with an ephemeral port.
    pub fn start_on(ip: IpAddr, opts: SinkOptions) -> anyhow::Result<Sink> {
        Sink::start_at(SocketAddr::new(ip, 0), opts)
    }

    /// Starts a sink on exactly `addr`, e.g. another loopback address with the port of an
    /// existing sink, because the daemon uses one delivery port for every MX host.
    pub fn start_at(addr: SocketAddr, opts: SinkOptions) -> anyhow::Result<Sink> {
        let listener = TcpListener::bind(addr).with_context(|| format!("binding {addr}"))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let tls = if opts.starttls {
            Some(server_config()?)
        } else {
            None
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            script: Mutex::new(opts.script.iter().cloned().collect()),
            behaviour: Mutex::new(opts.behaviour.clone()),
            stop: AtomicBool::new(false),
            opts,
            tls,
        });
        let sessions = Arc::new(Mutex::new(Vec::new()));
        let accept = {
            let shared = Arc::clone(&shared);
            let sessions = Arc::clone(&sessions);
            std::thread::Builder::new()
                .name(format!("sink-{}", addr.port()))
                .spawn(move || accept_loop(listener, shared, sessions))?
        };
        Ok(Sink {
            shared,
            addr,
            accept: Some(accept),
            sessions,
        })
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// A `[[route]]` table (for [`crate::TestConfig::raw`]) sending mail for `domain`
    /// to this sink in plain SMTP.
    pub fn route(&self, domain: &str) -> String {
        format!(
            "[[route]]\ndomain = \"{domain}\"\nhost = \"[127.0.0.1]:{}\"\ntls = \"none\"\n",
            self.port()
        )
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every accepted message so far, in the order of their 250.
    pub fn messages(&self) -> Vec<Received> {
        self.shared.state().messages.clone()
    }

    /// Waits until at least `n` messages were accepted and returns all of them.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> anyhow::Result<Vec<Received>> {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.state();
        while state.messages.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            anyhow::ensure!(
                !left.is_zero(),
                "sink on {}: {} of {n} messages after {timeout:?} ({} connections, {:?})",
                self.addr,
                state.messages.len(),
                state.connections,
                state.counts
            );
            state = match self.shared.changed.wait_timeout(state, left) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        Ok(state.messages.clone())
    }

    /// Connections accepted so far (refused greetings included).
    pub fn connections(&self) -> usize {
        self.shared.state().connections
    }

    /// The most connections that were open at the same time.
    pub fn peak_concurrent(&self) -> usize {
        self.shared.state().peak
    }

    /// Accepted messages per connection, indexed by connection number.
    pub fn per_connection_counts(&self) -> Vec<usize> {
        self.shared.state().per_connection.clone()
    }

    pub fn counts(&self) -> SinkCounts {
        self.shared.state().counts
    }

    /// Replaces the standing behaviour (the script, if not used up, still comes first).
    pub fn set_behaviour(&self, b: Behaviour) {
        *self
            .shared
            .behaviour
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = b;
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
        let handles = std::mem::take(&mut *self.sessions.lock().unwrap_or_else(|e| e.into_inner()));
        for handle in handles {
            let _ = handle.join();
        }
    }
}

fn server_config() -> anyhow::Result<Arc<ServerConfig>> {
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    let certified = rcgen::generate_simple_self_signed(names).context("generating a cert")?;
    let cert: CertificateDer<'static> = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("choosing TLS versions")?
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .context("loading the sink's certificate")?;
    Ok(Arc::new(config))
}

fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    sessions: Arc<Mutex<Vec<JoinHandle<()>>>>,
) {
    while !shared.stop.load(Ordering::SeqCst) {
        let tcp = match listener.accept() {
            Ok((tcp, _)) => tcp,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            Err(_) => {
                std::thread::sleep(POLL);
                continue;
            }
        };
        let number = {
            let mut state = shared.state();
            let number = state.connections;
            state.connections += 1;
            state.active += 1;
            state.peak = state.peak.max(state.active);
            state.per_connection.push(0);
            number
        };
        let session_shared = Arc::clone(&shared);
        let spawned = std::thread::Builder::new()
            .name(format!("sink-conn-{number}"))
            .spawn(move || {
                let _ = session::serve(tcp, number, &session_shared);
                session_shared.state().active -= 1;
                session_shared.changed.notify_all();
            });
        match spawned {
            Ok(handle) => {
                let mut sessions = sessions.lock().unwrap_or_else(|e| e.into_inner());
                // Finished sessions need no join; keeping only live ones bounds the list.
                sessions.retain(|h| !h.is_finished());
                sessions.push(handle);
            }
            Err(_) => shared.state().active -= 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SmtpClient;

    #[test]
    fn records_unstuffed_data_and_follows_the_script() -> anyhow::Result<()> {
        let sink = Sink::start(SinkOptions {
            script: vec![Behaviour::TempFail, Behaviour::RejectRcpt(550, "5.1.1")],
            ..SinkOptions::default()
        })?;
        let (mut c, greeting) = SmtpClient::connect(sink.port())?;
        assert_eq!(greeting.code, 220);
        let ehlo = c.expect("EHLO me.test", 250)?;
        assert!(ehlo.has_extension("PIPELINING") && !ehlo.has_extension("STARTTLS"));
        let body = "Subject: x\r\n\r\n..dot\r\nend\r\n";
        assert_eq!(c.send_message("a@me.test", &["b@x.test"], body)?.code, 451);
        c.expect("MAIL FROM:<a@me.test>", 250)?;
        c.expect("RCPT TO:<bad@x.test>", 550)?;
        c.expect("RCPT TO:<ok@x.test> NOTIFY=NEVER", 250)?;
        c.expect("DATA", 354)?;
        c.send(body.as_bytes())?;
        assert_eq!(c.command(".")?.code, 250);
        c.expect("MAIL FROM:<a@me.test>", 250)?;
        c.expect("RCPT TO:<ok@x.test>", 250)?;
        // BDAT is answered only after its chunk.
        c.send(b"BDAT 3\r\nabc")?;
        assert_eq!(c.read_reply()?.code, 250);
        c.expect("MAIL FROM:<>", 503)?;
        c.expect("QUIT", 221)?;

        let got = sink.wait_for(1, Duration::from_secs(5))?;
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].rcpt_to, ["ok@x.test"]);
        assert_eq!(got[0].rcpt_params, ["NOTIFY=NEVER"]);
        assert_eq!(got[0].data, b"Subject: x\r\n\r\n.dot\r\nend\r\n");
        assert_eq!((got[0].connection, got[0].tls), (0, false));
        let counts = sink.counts();
        assert_eq!((counts.tempfails, counts.rejected_rcpts), (1, 1));
        assert_eq!(sink.per_connection_counts(), [1]);
        Ok(())
    }

    #[test]
    fn refuses_greeting_then_serves() -> anyhow::Result<()> {
        let sink = Sink::start(SinkOptions {
            script: vec![Behaviour::RefuseGreeting(421)],
            esmtp: false,
            ..SinkOptions::default()
        })?;
        let (_, greeting) = SmtpClient::connect(sink.port())?;
        assert_eq!(greeting.code, 421);
        let (mut c, greeting) = SmtpClient::connect(sink.port())?;
        assert_eq!(greeting.code, 220);
        c.expect("EHLO me.test", 502)?;
        c.expect("HELO me.test", 250)?;
        c.send(b"BDAT 3 LAST\r\nabc")?;
        assert_eq!(c.read_reply()?.code, 503);
        c.expect("QUIT", 221)?;
        assert_eq!(sink.connections(), 2);
        assert_eq!(sink.counts().refused_greetings, 1);
        Ok(())
    }
}
