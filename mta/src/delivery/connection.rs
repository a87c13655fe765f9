//! One outbound connection: drives the sans-IO SMTP client over the I/O trait,
//! upgrades to TLS when the client asks, and delivers jobs of one destination one
//! after another until the destination's queue is empty, the per-connection limit
//! is reached, or the peer fails. Timeouts are applied here, around each read and
//! write, exactly as for inbound sessions.

use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use way2mail_smtp::client::TlsPolicy;
use way2mail_smtp::client::{
    ClientEvent, ClientParams, ClientSession, Content, ContentScan, Credentials, DeliveryResult,
    Interruption, OutboundMessage, OutboundRecipient,
};

use super::attempt::{Attempt, DeliveryError, Hop, HostError, RecipientAttempt};
use super::{Job, JobBody, JobResult};
use crate::io::Io;
use crate::tls;

const READ_SIZE: usize = 16 * 1024;
/// While a body streams from the spool, encoded content is written whenever this
/// much has gathered: with one spool chunk, what a streaming connection holds.
pub const STREAM_FLUSH: usize = 64 * 1024;
/// The output room a streaming connection reserves once: a flush happens past
/// [`STREAM_FLUSH`], and one more chunk may follow it, stuffed.
const STREAM_ROOM: usize = STREAM_FLUSH + 2 * way2mail_queue::keys::BODY_CHUNK;

/// What a connection needs to know, shared by all connections of a core.
pub struct Settings {
    pub ehlo: String,
    pub command_timeout: Duration,
    pub data_timeout: Duration,
    pub tls_timeout: Duration,
    /// For opportunistic TLS: encrypts without checking the peer's certificate
    /// (RFC 7435); for required TLS: verifies against the system's roots.
    pub tls_opportunistic: Arc<ClientConfig>,
    pub tls_verified: Arc<ClientConfig>,
}

/// The peer a connection talks to.
pub struct Peer<'a> {
    pub host: &'a str,
    pub addr: IpAddr,
    pub tls: TlsPolicy,
    /// Smart-host credentials, for routes with `auth`.
    pub credentials: Option<&'a Credentials>,
}

/// Where a connection gets its next job; `None` ends the connection.
pub trait JobSource {
    #[allow(async_fn_in_trait)] // per-core, never sent between threads
    async fn next_job(&self) -> Option<Job>;
    fn report(&self, result: JobResult, peer_ok: bool);
}

/// How a connection ended.
#[derive(Debug)]
pub enum Ended {
    /// It delivered (or tried) at least one job; the destination is reachable.
    Used,
    /// It was ready but found no job left (other connections took them): neither
    /// a success nor a failure of the destination.
    Idle,
    /// It could not be used at all: try the next address.
    Unusable(HostError),
}

enum Phase {
    StartTls,
    Ended(Ended),
}

struct Conn<'a> {
    settings: &'a Settings,
    peer: &'a Peer<'a>,
    client: ClientSession,
    rbuf: Vec<u8>,
    /// The buffer written last, handed back to the client for its next output.
    wbuf: Vec<u8>,
    tls: Option<String>,
    used: bool,
    /// QUIT was sent because the queue had no job left for this connection.
    idle: bool,
    in_flight: Option<Job>,
    /// The job in flight could not read its body from the spool.
    body_failed: bool,
}

/// Runs one connection over `io` to its end.
pub async fn run<I: Io>(
    io: I,
    settings: &Settings,
    peer: &Peer<'_>,
    jobs: &impl JobSource,
) -> Ended {
    let mut client = ClientSession::new(ClientParams {
        ehlo_name: settings.ehlo.clone(),
        tls: peer.tls,
    });
    if let Some(credentials) = peer.credentials {
        client = client.with_credentials(credentials.clone());
    }
    let mut c = Conn {
        settings,
        peer,
        client,
        rbuf: Vec::with_capacity(READ_SIZE),
        wbuf: Vec::new(),
        tls: None,
        used: false,
        idle: false,
        in_flight: None,
        body_failed: false,
    };
    let mut io = io;
    match c.drive(&mut io, jobs).await {
        Phase::Ended(ended) => ended,
        Phase::StartTls => {
            let config = match peer.tls {
                TlsPolicy::Required => Arc::clone(&settings.tls_verified),
                _ => Arc::clone(&settings.tls_opportunistic),
            };
            let host = || peer.host.to_string();
            let Ok(name) = ServerName::try_from(host()) else {
                return c.unusable(jobs, HostError::TlsName { host: host() });
            };
            let handshake = tls::connect(io, config, name);
            let mut stream = match tokio::time::timeout(settings.tls_timeout, handshake).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    let error = Arc::new(e);
                    return c.unusable(
                        jobs,
                        HostError::Tls {
                            host: host(),
                            error,
                        },
                    );
                }
                Err(_) => return c.unusable(jobs, HostError::TlsTimeout { host: host() }),
            };
            let description = stream.description();
            crate::metrics::tls_session("outbound", &description);
            c.tls = Some(description);
            c.client.tls_established();
            match c.drive(&mut stream, jobs).await {
                Phase::Ended(ended) => ended,
                Phase::StartTls => c.unusable(jobs, HostError::StartTlsTwice),
            }
        }
    }
}

impl Conn<'_> {
    async fn drive<S: Io>(&mut self, io: &mut S, jobs: &impl JobSource) -> Phase {
        let mut pending = None;
        loop {
            let event = match pending.take() {
                Some(event) => event,
                None => match self.step(io).await {
                    Ok(event) => event,
                    Err(e) => self.lost(&e),
                },
            };
            match event {
                ClientEvent::NeedInput => unreachable_need_input(),
                ClientEvent::StartTls => return Phase::StartTls,
                ClientEvent::SendContent => {
                    if let Err(e) = self.stream_content(io).await {
                        pending = Some(self.lost(&e));
                    }
                }
                ClientEvent::Ready => match jobs.next_job().await {
                    Some(job) => self.send(job, jobs),
                    None => {
                        self.idle = true;
                        self.client.quit();
                    }
                },
                ClientEvent::Done(result) => self.done(result, jobs),
                ClientEvent::Failed(failure) => {
                    let host = self.peer.host.to_string();
                    let _ = self.flush(io).await;
                    io.shutdown().await;
                    let reason = HostError::Session { host, failure };
                    return Phase::Ended(self.unusable(jobs, reason));
                }
                ClientEvent::Closed => {
                    let _ = self.flush(io).await;
                    io.shutdown().await;
                    return Phase::Ended(if self.used {
                        Ended::Used
                    } else if self.idle {
                        Ended::Idle
                    } else {
                        Ended::Unusable(HostError::Closed {
                            host: self.peer.host.to_string(),
                        })
                    });
                }
            }
        }
    }

    /// Writes pending output, then reads until the client has an event that is not
    /// `NeedInput`.
    async fn step<S: Io>(&mut self, io: &mut S) -> io::Result<ClientEvent> {
        loop {
            let event = self.client.next_event();
            // Whatever the client queued while producing this event goes out first:
            // the peer needs our command before we can read its reply.
            self.flush(io).await?;
            if !matches!(event, ClientEvent::NeedInput) {
                return Ok(event);
            }
            let limit = if self.in_flight.is_some() {
                self.settings.data_timeout
            } else {
                self.settings.command_timeout
            };
            let buf = std::mem::take(&mut self.rbuf);
            let buf = if buf.capacity() < READ_SIZE {
                Vec::with_capacity(READ_SIZE)
            } else {
                buf
            };
            let (res, buf) = tokio::time::timeout(limit, io.read(buf))
                .await
                .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))?;
            self.rbuf = buf;
            let n = res?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            self.client.feed(&self.rbuf[..n]);
        }
    }

    async fn flush<S: Io>(&mut self, io: &mut S) -> io::Result<()> {
        if self.client.output().is_empty() {
            return Ok(());
        }
        // The output's buffer itself is written (no copy); the one written last
        // becomes the client's next.
        let out = self.client.take_output(std::mem::take(&mut self.wbuf));
        let (res, buf) = tokio::time::timeout(self.settings.command_timeout, io.write_all(out))
            .await
            .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))?;
        self.wbuf = buf;
        // A body's worth of capacity is not kept for the commands that follow.
        if self.wbuf.capacity() > 2 * STREAM_ROOM {
            self.wbuf = Vec::new();
        }
        res
    }

    /// Streams the body of the job in flight from the spool, one chunk at a time,
    /// writing whenever [`STREAM_FLUSH`] bytes of content have gathered. A body that
    /// cannot be read ends the connection without the end of data: the peer
    /// discards what it got, and the job comes back marked unreadable.
    async fn stream_content<S: Io>(&mut self, io: &mut S) -> io::Result<()> {
        let source = match self.in_flight.as_ref().map(|j| (j.id, &j.body)) {
            Some((
                id,
                JobBody::Spooled {
                    spool, body_len, ..
                },
            )) => Some((id, spool.clone(), *body_len)),
            _ => None,
        };
        if let Some((id, spool, body_len)) = source {
            for chunk in spool.body_chunks(&id, body_len) {
                self.client.reserve_output(STREAM_ROOM);
                match chunk {
                    Ok(chunk) => self.client.push_content(&chunk),
                    Err(e) => {
                        tracing::error!(%id, error = %e, "message body unreadable while sending it");
                        self.body_failed = true;
                        return Err(io::Error::other("message body unreadable"));
                    }
                }
                if self.client.output().len() >= STREAM_FLUSH {
                    self.flush(io).await?;
                }
            }
        }
        self.client.end_content();
        Ok(())
    }

    /// The connection broke (or timed out): let the client settle what was in flight.
    fn lost(&mut self, e: &io::Error) -> ClientEvent {
        tracing::debug!(host = self.peer.host, error = %e, "outbound connection lost");
        self.client.connection_lost()
    }

    fn send(&mut self, job: Job, jobs: &impl JobSource) {
        let body = match &job.body {
            JobBody::Whole(body) => Content::Whole(Arc::clone(body)),
            // What the session must announce (the size BDAT and SIZE give, whether
            // it needs 8BITMIME) was recorded with the body when it was written.
            JobBody::Spooled {
                shape: Some(shape), ..
            } => Content::Streamed((*shape).into()),
            // Written before shapes were recorded: a first pass learns it; the
            // content is read again when the session asks for it.
            JobBody::Spooled {
                spool,
                body_len,
                shape: None,
            } => {
                let mut scan = ContentScan::default();
                for chunk in spool.body_chunks(&job.id, *body_len) {
                    match chunk {
                        Ok(chunk) => scan.push(&chunk),
                        Err(e) => {
                            tracing::error!(id = %job.id, error = %e, "message body unreadable");
                            let abandoned = Interruption::Abandoned;
                            let attempt = Attempt::Deferred(DeliveryError::Interrupted(abandoned));
                            let result = JobResult {
                                body_unreadable: true,
                                ..job.all(&attempt)
                            };
                            jobs.report(result, true);
                            return;
                        }
                    }
                }
                Content::Streamed(scan.finish())
            }
        };
        let message = OutboundMessage {
            sender: job
                .return_path
                .clone()
                .unwrap_or_else(|| job.envelope.sender.clone()),
            recipients: job
                .recipients
                .iter()
                .map(|&i| {
                    let r = &job.envelope.recipients[i];
                    OutboundRecipient {
                        address: r.address.clone(),
                        notify: r.notify,
                        orcpt: r.orcpt.clone(),
                    }
                })
                .collect(),
            body_type: job.envelope.body_type,
            smtputf8: job.envelope.smtputf8,
            ret: job.envelope.ret,
            envid: job.envelope.envid.clone(),
            body,
        };
        self.in_flight = Some(job);
        self.client.send(message);
    }

    fn done(&mut self, result: DeliveryResult, jobs: &impl JobSource) {
        let Some(job) = self.in_flight.take() else {
            return;
        };
        self.used = true;
        let hop = Hop {
            host: self.peer.host.to_string(),
            ip: self.peer.addr,
            tls: self.tls.clone(),
        };
        let mut recipients = Vec::with_capacity(result.recipients.len());
        for r in result.recipients {
            let Some(&index) = job.recipients.get(r.index) else {
                continue;
            };
            let wants_success = job.envelope.recipients[index].notify.success;
            let no_dsn_beyond = wants_success && !result.dsn_supported;
            recipients.push(RecipientAttempt {
                index,
                attempt: Attempt::of_disposition(r.disposition, no_dsn_beyond),
                hop: Some(hop.clone()),
            });
        }
        let peer_ok = recipients.iter().any(|r| !r.attempt.is_deferred());
        jobs.report(
            JobResult {
                id: job.id,
                recipients,
                body_unreadable: std::mem::take(&mut self.body_failed),
            },
            peer_ok,
        );
    }

    /// Ends a connection that failed; a job caught in flight goes back as deferred.
    fn unusable(&mut self, jobs: &impl JobSource, reason: HostError) -> Ended {
        if let Some(job) = self.in_flight.take() {
            let broken = DeliveryError::ConnectionBroken(reason.clone());
            jobs.report(job.all(&Attempt::Deferred(broken)), false);
            self.used = true;
        }
        if self.used {
            Ended::Used
        } else {
            Ended::Unusable(reason)
        }
    }
}

/// `step` never returns `NeedInput`.
fn unreachable_need_input() {
    tracing::error!("outbound client returned NeedInput out of step");
}
