//! Handing queued mail from a draining node to a peer (`way2mail-mta drain
//! --handover HOST:PORT`, docs/operations.md "Draining a node"), over mutual TLS
//! 1.3: each side shows a certificate signed by `[handover] ca`.
//!
//! The exchange, per message, on one connection:
//!
//! ```text
//!   sender → {"id":"<queue id>","envelope":{…},"size":N}\n  then N octets (the body)
//!   peer   → {"ok":true}\n          once the message is durable in its spool
//!            {"ok":false,"error":"…"}\n   refused (the sender keeps it)
//! ```
//!
//! A header with an empty id and no body is a ping, answered `{"ok":true}`: the
//! sender's first exchange, so that a peer refusing its certificate (which TLS 1.3
//! tells only after the handshake) is an error before anything is drained.
//!
//! The peer spools the message under the same queue id with the envelope as it
//! was (sender, recipients with their DSN parameters and states, tenant, attempts,
//! arrival time), sealed with its own keyring; a message it already holds is
//! acknowledged again (a retry after a lost acknowledgement). The sender holds each
//! message before reading it (delivery cannot take it meanwhile), and removes it
//! only after the acknowledgement; on any failure it puts it back on the schedule.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};
use serde::{Deserialize, Serialize};
use way2mail_queue::{Change, Changed, Placement, Spool};
use way2mail_smtp::{Envelope, MessageId};

use crate::config::handover::HandoverConfig;
use crate::tls::certs::{read_certs, read_key};

/// Longest header line read.
const MAX_HEADER: usize = 1 << 20;
/// Connections served at once.
const MAX_CONNECTIONS: usize = 4;

#[derive(Serialize, Deserialize)]
struct Header {
    id: String,
    envelope: Envelope,
    size: u64,
}

/// What every header has: a ping is one with an empty id and no body.
#[derive(Serialize, Deserialize)]
struct Ping {
    id: String,
    size: u64,
}

#[derive(Serialize, Deserialize)]
struct Ack {
    ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The certificate chain, key and CA roots of `[handover]`.
fn material(
    config: &HandoverConfig,
) -> Result<(
    Vec<CertificateDer<'static>>,
    PrivateKeyDer<'static>,
    RootCertStore,
)> {
    let certs = read_certs(&config.cert, "handover.cert")?;
    let key = read_key(&config.key, "handover.key")?;
    let mut roots = RootCertStore::empty();
    let cas = read_certs(&config.ca, "handover.ca")?;
    let (added, _) = roots.add_parsable_certificates(cas);
    if added == 0 {
        bail!(
            "handover.ca: {} holds no usable certificate",
            config.ca.display()
        );
    }
    Ok((certs, key, roots))
}

fn server_config(config: &HandoverConfig) -> Result<Arc<ServerConfig>> {
    let (certs, key, roots) = material(config)?;
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .context("handover.ca: cannot verify client certificates with it")?;
    let server = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .context("TLS 1.3")?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .context("handover.cert/key: the key does not match the certificate")?;
    Ok(Arc::new(server))
}

fn client_config(config: &HandoverConfig) -> Result<Arc<ClientConfig>> {
    let (certs, key, roots) = material(config)?;
    let client = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .context("TLS 1.3")?
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)
        .context("handover.cert/key: the key does not match the certificate")?;
    Ok(Arc::new(client))
}

/// The peer's side: takes handed-over messages on `[handover] listen`.
pub struct Receiver {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Receiver {
    pub fn start(
        config: &HandoverConfig,
        address: SocketAddr,
        spool: Spool,
        max_size: u64,
    ) -> Result<Receiver> {
        let tls = server_config(config)?;
        let listener = TcpListener::bind(address)
            .with_context(|| format!("handover.listen: cannot listen on {address}"))?;
        listener.set_nonblocking(true)?;
        tracing::info!(%address, "handover: taking mail from draining peers");
        let stop = Arc::new(AtomicBool::new(false));
        let timeout = config.timeout;
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("handover".into())
                .spawn(move || accept(&listener, &tls, &spool, max_size, timeout, &stop))?
        };
        Ok(Receiver {
            stop,
            thread: Some(thread),
        })
    }

    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn accept(
    listener: &TcpListener,
    tls: &Arc<ServerConfig>,
    spool: &Spool,
    max_size: u64,
    timeout: Duration,
    stop: &AtomicBool,
) {
    let open = Arc::new(AtomicUsize::new(0));
    while !stop.load(Ordering::Relaxed) {
        let (tcp, peer) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "handover: accept failed");
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
        };
        if open.load(Ordering::Acquire) >= MAX_CONNECTIONS {
            tracing::warn!(%peer, "handover: too many connections; refused");
            continue;
        }
        open.fetch_add(1, Ordering::AcqRel);
        let (tls, spool, open) = (Arc::clone(tls), spool.clone(), Arc::clone(&open));
        let spawned = std::thread::Builder::new()
            .name("handover-in".into())
            .spawn(move || {
                if let Err(e) = serve(tcp, &tls, &spool, max_size, timeout) {
                    tracing::warn!(%peer, error = %format!("{e:#}"), "handover: connection ended");
                }
                open.fetch_sub(1, Ordering::AcqRel);
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "handover: no thread for a connection");
        }
    }
}

/// One peer's connection: messages until it closes.
fn serve(
    tcp: TcpStream,
    tls: &Arc<ServerConfig>,
    spool: &Spool,
    max_size: u64,
    timeout: Duration,
) -> Result<()> {
    tcp.set_nonblocking(false)?;
    tcp.set_read_timeout(Some(timeout))?;
    tcp.set_write_timeout(Some(timeout))?;
    let conn = ServerConnection::new(Arc::clone(tls))?;
    let mut stream = BufReader::new(rustls::StreamOwned::new(conn, tcp));
    loop {
        let mut line = Vec::new();
        let n = (&mut stream)
            .take(MAX_HEADER as u64 + 1)
            .read_until(b'\n', &mut line)?;
        if n == 0 {
            return Ok(());
        }
        if line.last() != Some(&b'\n') {
            bail!("a header line over {MAX_HEADER} octets, or cut short");
        }
        let ping: Ping = serde_json::from_slice(&line).context("a header that does not parse")?;
        if ping.id.is_empty() && ping.size == 0 {
            answer(stream.get_mut(), None)?;
            continue;
        }
        let header: Header =
            serde_json::from_slice(&line).context("a header that does not parse")?;
        if header.size > max_size {
            answer(
                stream.get_mut(),
                Some(format!("{} octets: over this node's limit", header.size)),
            )?;
            bail!("a message of {} octets refused", header.size);
        }
        let mut body = vec![0u8; usize::try_from(header.size)?];
        stream.read_exact(&mut body)?;
        let result = take(spool, &header, &body);
        match &result {
            Ok(()) => {
                metrics::counter!("way2mail_handover_messages_total", "direction" => "received")
                    .increment(1);
                tracing::info!(
                    target: "way2mail::message",
                    id = %header.id,
                    recipients = header.envelope.recipients.len(),
                    size = header.size,
                    tenant = header.envelope.origin.tenant.as_deref().unwrap_or(""),
                    "message handed over to this node"
                );
            }
            Err(e) => tracing::warn!(id = %header.id, error = %e, "handover: message refused"),
        }
        answer(stream.get_mut(), result.err())?;
    }
}

/// Spools one handed-over message; `Ok` once durable (or already held).
fn take(spool: &Spool, header: &Header, body: &[u8]) -> Result<(), String> {
    let id: MessageId = header
        .id
        .parse()
        .map_err(|_| format!("'{}' is not a queue id", header.id))?;
    match spool.read(&id) {
        Ok(Some(_)) => return Ok(()),
        Ok(None) => {}
        Err(e) => return Err(format!("spool: {e}")),
    }
    spool
        .enqueue(id, &header.envelope, body)
        .and_then(|durable| durable.wait_blocking())
        .map_err(|e| format!("spool: {e}"))
}

fn answer(out: &mut impl Write, error: Option<String>) -> Result<()> {
    let ack = Ack {
        ok: error.is_none(),
        error,
    };
    let mut line = serde_json::to_vec(&ack)?;
    line.push(b'\n');
    out.write_all(&line)?;
    out.flush()?;
    Ok(())
}

/// The draining side: a connection to one peer.
pub struct Sender {
    address: String,
    name: ServerName<'static>,
    tls: Arc<ClientConfig>,
    timeout: Duration,
    stream: Option<BufReader<rustls::StreamOwned<ClientConnection, TcpStream>>>,
}

impl Sender {
    /// A sender to `address` (HOST:PORT), whose certificate must name `name`.
    pub fn new(config: &HandoverConfig, address: &str, name: &str) -> Result<Sender> {
        if !config.has_tls() {
            bail!("handing over needs handover.cert, handover.key and handover.ca");
        }
        Ok(Sender {
            address: address.to_string(),
            name: ServerName::try_from(name.to_string())
                .map_err(|_| anyhow!("'{name}' is not a host name or address"))?,
            tls: client_config(config)?,
            timeout: config.timeout,
            stream: None,
        })
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    /// Connects and completes the handshake: the peer answers and each side
    /// accepted the other's certificate.
    pub fn check(&mut self) -> Result<()> {
        let result = self.ping();
        if result.is_err() {
            self.stream = None;
        }
        result
    }

    fn connect(
        &mut self,
    ) -> Result<&mut BufReader<rustls::StreamOwned<ClientConnection, TcpStream>>> {
        if self.stream.is_none() {
            let to = self
                .address
                .to_socket_addrs()
                .with_context(|| format!("resolving {}", self.address))?
                .next()
                .ok_or_else(|| anyhow!("{} resolves to no address", self.address))?;
            let tcp = TcpStream::connect_timeout(&to, self.timeout)
                .with_context(|| format!("connecting to {to}"))?;
            tcp.set_read_timeout(Some(self.timeout))?;
            tcp.set_write_timeout(Some(self.timeout))?;
            let conn = ClientConnection::new(Arc::clone(&self.tls), self.name.clone())?;
            let mut stream = rustls::StreamOwned::new(conn, tcp);
            // Handshake now, so that a refused certificate is an error here.
            while stream.conn.is_handshaking() {
                stream
                    .conn
                    .complete_io(&mut stream.sock)
                    .context("TLS handshake with the peer")?;
            }
            self.stream = Some(BufReader::new(stream));
        }
        self.stream.as_mut().ok_or_else(|| anyhow!("no connection"))
    }

    fn ping(&mut self) -> Result<()> {
        let stream = self.connect()?;
        let mut line = serde_json::to_vec(&Ping {
            id: String::new(),
            size: 0,
        })?;
        line.push(b'\n');
        stream.get_mut().write_all(&line)?;
        stream.get_mut().flush()?;
        read_ack(stream).context("the peer did not answer a ping")
    }

    /// Sends one message; `Ok` once the peer said it is durable there.
    fn send(&mut self, id: &MessageId, envelope: &Envelope, body: &[u8]) -> Result<()> {
        let result = self.try_send(id, envelope, body);
        if result.is_err() {
            self.stream = None;
        }
        result
    }

    fn try_send(&mut self, id: &MessageId, envelope: &Envelope, body: &[u8]) -> Result<()> {
        let stream = self.connect()?;
        let mut line = serde_json::to_vec(&Header {
            id: id.to_string(),
            envelope: envelope.clone(),
            size: body.len() as u64,
        })?;
        line.push(b'\n');
        let out = stream.get_mut();
        out.write_all(&line)?;
        out.write_all(body)?;
        out.flush()?;
        read_ack(stream)
    }

    /// Hands over every message not in delivery right now; returns how many went.
    /// Stops at the first failure (the message stays here, due again).
    pub fn hand_over_queue(&mut self, spool: &Spool) -> Result<usize> {
        let mut sent = 0;
        let ids: Vec<MessageId> = spool.placements()?.into_keys().collect();
        for id in ids {
            // Held first: delivery cannot take it while it travels. A message an
            // operator holds stays here: releasing or deleting it is theirs.
            let held = spool.change_messages(&[id], false, |_, _, placement| match placement {
                Placement::Held(_) => Err("held by an operator".into()),
                _ => Ok(Change::Hold),
            })?;
            if !matches!(held.first(), Some((_, Changed::Done))) {
                continue;
            }
            let Some((envelope, body)) = spool.read(&id)? else {
                continue;
            };
            if let Err(e) = self.send(&id, &envelope, &body) {
                let now = way2mail_daemon::time::now_ms();
                spool.change_messages(&[id], false, |_, _, _| {
                    Ok(Change::Schedule { due_ms: now })
                })?;
                return Err(e.context(format!("handing {id} over to {}", self.address)));
            }
            spool.change_messages(&[id], false, |_, _, _| {
                Ok(Change::Remove {
                    log: Vec::new(),
                    notice: None,
                })
            })?;
            metrics::counter!("way2mail_handover_messages_total", "direction" => "sent")
                .increment(1);
            tracing::info!(
                target: "way2mail::message",
                %id,
                peer = %self.address,
                recipients = envelope.recipients.len(),
                "message handed over to a peer"
            );
            sent += 1;
        }
        Ok(sent)
    }
}

/// The peer's answer: `Ok` for `{"ok":true}`.
fn read_ack(stream: &mut impl BufRead) -> Result<()> {
    let mut reply = Vec::new();
    stream
        .take(4096)
        .read_until(b'\n', &mut reply)
        .context("reading the peer's acknowledgement")?;
    let ack: Ack = serde_json::from_slice(&reply)
        .with_context(|| format!("the peer answered {:?}", String::from_utf8_lossy(&reply)))?;
    if ack.ok {
        Ok(())
    } else {
        bail!("the peer refused it: {}", ack.error.unwrap_or_default())
    }
}
