//! The load generator: many concurrent SMTP client sessions sharing one message budget.
//!
//! `run` spawns one worker task per connection. A worker claims message numbers from
//! a shared atomic counter until the budget is spent; it keeps its [`Session`] open
//! across messages (unless asked for a new connection per message) and opens a new
//! one whenever the last failed at the transport level. Every claimed message ends
//! as either a latency sample or exactly one failure, keyed by reply code or by a
//! condition such as `connect` or `timeout`.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::conn::Conn;
use crate::message::MessageTemplate;
use crate::reply::{read_reply, ServerReply};
use crate::stats::{ClientStats, ClientSummary};

/// What the load generator is asked to do.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub server: String,
    pub connections: usize,
    pub messages: u64,
    pub size: usize,
    pub recipients: usize,
    pub pipelining: bool,
    pub new_connection_per_message: bool,
    pub starttls: bool,
    /// AUTH PLAIN with (user, password) after EHLO, on every connection.
    pub auth: Option<(String, String)>,
    pub ehlo: String,
    pub from: String,
    pub to_domain: String,
    pub timeout: Duration,
}

/// State shared by all workers.
struct Shared {
    cfg: ClientConfig,
    addr: SocketAddr,
    next: AtomicU64,
    template: MessageTemplate,
    recipients: Vec<String>,
    tls: Option<(TlsConnector, ServerName<'static>)>,
}

impl Shared {
    /// Claims the next message number (from 1), or `None` once the budget is spent.
    fn claim(&self) -> Option<u64> {
        let n = self.next.fetch_add(1, Relaxed);
        (n < self.cfg.messages).then_some(n + 1)
    }
}

/// Why one message failed; `fatal` means the connection cannot be reused.
#[derive(Debug)]
struct Failure {
    key: String,
    fatal: bool,
}

impl Failure {
    fn reply(reply: &ServerReply) -> Self {
        // 421 means the server is closing the channel.
        Self {
            key: reply.code.to_string(),
            fatal: reply.code == 421,
        }
    }

    fn fatal(key: &str) -> Self {
        Self {
            key: key.to_string(),
            fatal: true,
        }
    }

    fn io(e: &io::Error) -> Self {
        let key = match e.kind() {
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => "disconnect",
            io::ErrorKind::InvalidData => "protocol",
            _ => "io",
        };
        Self::fatal(key)
    }
}

/// Runs `fut` under the per-operation timeout, mapping errors to failures.
async fn timed<T>(limit: Duration, fut: impl Future<Output = io::Result<T>>) -> Result<T, Failure> {
    match tokio::time::timeout(limit, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(Failure::io(&e)),
        Err(_) => Err(Failure::fatal("timeout")),
    }
}

/// Runs the whole benchmark and returns its summary.
pub async fn run(cfg: ClientConfig) -> anyhow::Result<ClientSummary> {
    let addr = tokio::net::lookup_host(&cfg.server)
        .await
        .with_context(|| format!("resolving {}", cfg.server))?
        .next()
        .with_context(|| format!("no address for {}", cfg.server))?;
    let tls = if cfg.starttls {
        Some((
            crate::tls::benchmark_connector()?,
            crate::tls::server_name(&cfg.server)?,
        ))
    } else {
        None
    };
    let recipients: Vec<String> = (1..=cfg.recipients)
        .map(|i| format!("rcpt{i}@{}", cfg.to_domain))
        .collect();
    let unix_time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let template = MessageTemplate::new(cfg.size, &cfg.from, &recipients, unix_time);
    let workers = cfg.connections.max(1);
    let shared = Arc::new(Shared {
        cfg,
        addr,
        next: AtomicU64::new(0),
        template,
        recipients,
        tls,
    });

    let start = Instant::now();
    let handles: Vec<_> = (0..workers)
        .map(|_| tokio::spawn(worker(shared.clone())))
        .collect();
    let mut total = ClientStats::default();
    for handle in handles {
        total.merge(handle.await.context("worker task")?);
    }
    Ok(total.summarize(start.elapsed()))
}

async fn worker(shared: Arc<Shared>) -> ClientStats {
    let mut stats = ClientStats::default();
    let mut idle: Option<Session> = None;
    while let Some(seq) = shared.claim() {
        let mut session = match idle.take() {
            Some(s) => s,
            None => match Session::open(&shared).await {
                Ok(s) => s,
                Err(f) => {
                    stats.failed(f.key);
                    continue;
                }
            },
        };
        match session.send(&shared, seq).await {
            Ok(latency) => stats.ok(latency),
            Err(f) => {
                let fatal = f.fatal;
                stats.failed(f.key);
                if fatal {
                    continue;
                }
            }
        }
        if shared.cfg.new_connection_per_message {
            session.quit(shared.cfg.timeout).await;
        } else {
            idle = Some(session);
        }
    }
    if let Some(session) = idle {
        session.quit(shared.cfg.timeout).await;
    }
    stats
}

/// One open client connection, greeted and EHLO'd (and TLS'd if asked).
struct Session {
    conn: Conn,
    pipelining: bool,
    limit: Duration,
}

impl Session {
    async fn open(shared: &Shared) -> Result<Self, Failure> {
        let limit = shared.cfg.timeout;
        let tcp = match tokio::time::timeout(limit, TcpStream::connect(shared.addr)).await {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(_)) => return Err(Failure::fatal("connect")),
            Err(_) => return Err(Failure::fatal("timeout")),
        };
        // Small command batches must not wait for Nagle's delayed ACK.
        let _ = tcp.set_nodelay(true);
        let mut session = Self {
            conn: Conn::new(tcp),
            pipelining: false,
            limit,
        };
        let greeting = session.read().await?;
        expect_setup(&greeting, 220)?;
        let mut ehlo = session.ehlo(&shared.cfg.ehlo).await?;
        if let Some((connector, name)) = &shared.tls {
            if !ehlo.has_extension("STARTTLS") {
                return Err(Failure::fatal("no-starttls"));
            }
            let reply = session.command("STARTTLS").await?;
            expect_setup(&reply, 220)?;
            let upgrade = session.conn.start_tls_client(connector, name.clone());
            timed(limit, upgrade).await.map_err(|f| {
                if f.key == "timeout" {
                    f
                } else {
                    Failure::fatal("tls")
                }
            })?;
            ehlo = session.ehlo(&shared.cfg.ehlo).await?;
        }
        if let Some((user, password)) = &shared.cfg.auth {
            let token = plain_token(user, password);
            let reply = session.command(&format!("AUTH PLAIN {token}")).await?;
            if reply.code != 235 {
                return Err(Failure::fatal("auth"));
            }
        }
        session.pipelining = shared.cfg.pipelining && ehlo.has_extension("PIPELINING");
        Ok(session)
    }

    async fn ehlo(&mut self, name: &str) -> Result<ServerReply, Failure> {
        let reply = self.command(&format!("EHLO {name}")).await?;
        expect_setup(&reply, 250)?;
        Ok(reply)
    }

    async fn read(&mut self) -> Result<ServerReply, Failure> {
        timed(self.limit, read_reply(&mut self.conn)).await
    }

    async fn flush(&mut self) -> Result<(), Failure> {
        timed(self.limit, self.conn.flush()).await
    }

    /// Sends one command line and waits for its reply.
    async fn command(&mut self, line: &str) -> Result<ServerReply, Failure> {
        push_line(self.conn.output(), line);
        self.flush().await?;
        self.read().await
    }

    /// Sends message `seq`; returns the time from MAIL to the final reply.
    async fn send(&mut self, shared: &Shared, seq: u64) -> Result<Duration, Failure> {
        let start = Instant::now();
        let outcome = if self.pipelining {
            self.envelope_pipelined(shared).await?
        } else {
            self.envelope_sequential(shared).await?
        };
        match outcome {
            Envelope::Open { rejected } => {
                shared.template.write_data(seq, self.conn.output());
                self.flush().await?;
                let reply = self.read().await?;
                match rejected {
                    Some(f) => Err(f),
                    None if reply.is_positive() => Ok(start.elapsed()),
                    None => Err(Failure::reply(&reply)),
                }
            }
            Envelope::Refused {
                failure,
                needs_reset,
            } => {
                if needs_reset && !failure.fatal {
                    let reply = self.command("RSET").await?;
                    if !reply.is_positive() {
                        return Err(Failure::fatal(&failure.key));
                    }
                }
                Err(failure)
            }
        }
    }

    /// MAIL, RCPTs and DATA one at a time, each waiting for its reply.
    async fn envelope_sequential(&mut self, shared: &Shared) -> Result<Envelope, Failure> {
        let reply = self
            .command(&format!("MAIL FROM:<{}>", shared.cfg.from))
            .await?;
        if !reply.is_positive() {
            return Ok(Envelope::refused(&reply, false));
        }
        for rcpt in &shared.recipients {
            let reply = self.command(&format!("RCPT TO:<{rcpt}>")).await?;
            if !reply.is_positive() {
                return Ok(Envelope::refused(&reply, true));
            }
        }
        let reply = self.command("DATA").await?;
        if reply.code != 354 {
            return Ok(Envelope::refused(&reply, true));
        }
        Ok(Envelope::Open { rejected: None })
    }

    /// MAIL, RCPTs and DATA in one write (RFC 2920), then all their replies.
    async fn envelope_pipelined(&mut self, shared: &Shared) -> Result<Envelope, Failure> {
        let out = self.conn.output();
        push_line(out, &format!("MAIL FROM:<{}>", shared.cfg.from));
        for rcpt in &shared.recipients {
            push_line(out, &format!("RCPT TO:<{rcpt}>"));
        }
        push_line(out, "DATA");
        self.flush().await?;
        let mut rejected: Option<Failure> = None;
        let mail = self.read().await?;
        let mail_ok = mail.is_positive();
        note(&mut rejected, &mail)?;
        for _ in &shared.recipients {
            let reply = self.read().await?;
            note(&mut rejected, &reply)?;
        }
        let data = self.read().await?;
        if data.code == 354 {
            // The server takes the content even if a recipient was refused; the
            // message still counts as failed with the first refusal's code.
            return Ok(Envelope::Open { rejected });
        }
        let failure = rejected.unwrap_or_else(|| Failure::reply(&data));
        Ok(Envelope::Refused {
            failure,
            needs_reset: mail_ok,
        })
    }

    /// Best-effort QUIT and close.
    async fn quit(mut self, limit: Duration) {
        let limit = limit.min(Duration::from_secs(2));
        push_line(self.conn.output(), "QUIT");
        if timed(limit, self.conn.flush()).await.is_ok() {
            let _ = timed(limit, read_reply(&mut self.conn)).await;
        }
        self.conn.shutdown().await;
    }
}

/// Where the envelope phase left the transaction.
enum Envelope {
    /// DATA got 354: the content must be sent. `rejected` holds an earlier refusal.
    Open { rejected: Option<Failure> },
    /// No DATA phase; `needs_reset` when MAIL had been accepted.
    Refused { failure: Failure, needs_reset: bool },
}

impl Envelope {
    fn refused(reply: &ServerReply, needs_reset: bool) -> Self {
        Self::Refused {
            failure: Failure::reply(reply),
            needs_reset,
        }
    }
}

/// Records the first refusal of a pipelined batch; a 421 ends the session at once.
fn note(rejected: &mut Option<Failure>, reply: &ServerReply) -> Result<(), Failure> {
    if reply.is_positive() {
        return Ok(());
    }
    let failure = Failure::reply(reply);
    if failure.fatal {
        return Err(failure);
    }
    rejected.get_or_insert(failure);
    Ok(())
}

/// Checks a greeting/EHLO/STARTTLS reply; any other code makes the session unusable.
fn expect_setup(reply: &ServerReply, code: u16) -> Result<(), Failure> {
    if reply.code == code {
        Ok(())
    } else {
        Err(Failure {
            key: reply.code.to_string(),
            fatal: true,
        })
    }
}

fn push_line(out: &mut Vec<u8>, line: &str) {
    out.extend_from_slice(line.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// The SASL PLAIN initial response (RFC 4616): base64 of `\0user\0password`.
fn plain_token(user: &str, password: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn plain_token_is_rfc_4616() {
        // RFC 4616 §4's example, without an authorization identity.
        assert_eq!(
            super::plain_token("tim", "tanstaaftanstaaf"),
            "AHRpbQB0YW5zdGFhZnRhbnN0YWFm"
        );
    }
}
