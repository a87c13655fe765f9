//! One sink connection: the only place that reads and writes its socket.
//!
//! The loop takes complete command lines from the input buffer and hands them to
//! [`protocol::handle_line`]; replies collect in the output batch and are flushed
//! only when the input runs dry (so a pipelined batch gets one write back) and at
//! the end of each message (so the client's latency includes nothing of ours).

use std::io;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;

use super::protocol::{self, Action, DotScanner, Settings, SinkAnswer, State};
use super::SinkContext;
use crate::conn::Conn;

/// Longest command line accepted (RFC 5321 asks for 512; extensions add more).
const MAX_LINE: usize = 4096;
/// Idle limit while waiting for the client (RFC 5321 section 4.5.3.2 suggests 5 min).
const IDLE: Duration = Duration::from_secs(300);

/// Serves one accepted connection until QUIT, a drop, an error or the client leaving.
pub async fn serve(tcp: TcpStream, ctx: Arc<SinkContext>) {
    let _open = OpenConnection::new(ctx.clone());
    let _ = tcp.set_nodelay(true);
    let mut conn = Conn::new(tcp);
    let over_limit = ctx
        .cfg
        .max_connections
        .is_some_and(|max| ctx.counters.current_connections.load(Relaxed) > max);
    let greeting = if over_limit {
        format!("421 4.7.0 {} Too many connections\r\n", ctx.cfg.hostname)
    } else {
        format!("220 {} ESMTP way2mail-bench sink\r\n", ctx.cfg.hostname)
    };
    conn.output().extend_from_slice(greeting.as_bytes());
    if over_limit {
        let _ = conn.flush().await;
        return;
    }
    // Errors just end the session: the client went away or misbehaved.
    let _ = dialogue(&mut conn, &ctx).await;
    let _ = tokio::time::timeout(Duration::from_secs(1), conn.shutdown()).await;
}

/// Keeps the current-connections gauge right however the session ends.
struct OpenConnection(Arc<SinkContext>);

impl OpenConnection {
    fn new(ctx: Arc<SinkContext>) -> Self {
        ctx.counters.connection_opened();
        Self(ctx)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.counters.connection_closed();
    }
}

async fn dialogue(conn: &mut Conn, ctx: &SinkContext) -> io::Result<()> {
    let settings = Settings {
        hostname: &ctx.cfg.hostname,
        starttls: ctx.tls.is_some(),
    };
    let mut state = State::default();
    let mut line = Vec::with_capacity(256);
    // The current message's content, raw, when messages are saved.
    let mut saved = ctx.cfg.save_dir.as_ref().map(|_| Saved::default());
    loop {
        if !next_line(conn, &mut line).await? {
            return Ok(());
        }
        let keep_going = match protocol::handle_line(&mut state, &line, &settings, conn.output()) {
            Action::Continue => true,
            Action::Data => {
                let bytes = receive_data(conn, saved.as_mut()).await?;
                finish_message(conn, ctx, &mut state, bytes, saved.as_mut()).await?
            }
            Action::Bdat {
                size,
                last,
                refusal,
            } => {
                discard(conn, size, saved.as_mut()).await?;
                bdat_reply(conn, ctx, &mut state, size, last, refusal, saved.as_mut()).await?
            }
            Action::StartTls => {
                start_tls(conn, ctx).await?;
                // RFC 3207: the session starts over after the handshake.
                state = State {
                    tls: true,
                    ..State::default()
                };
                true
            }
            Action::Close => {
                conn.flush().await?;
                false
            }
        };
        if !keep_going {
            return Ok(());
        }
    }
}

/// Copies the next command line (without CRLF) into `line`; `false` if the client
/// sent an over-long line, which has been answered and ends the session.
async fn next_line(conn: &mut Conn, line: &mut Vec<u8>) -> io::Result<bool> {
    loop {
        if let Some(lf) = conn.buffered().iter().position(|&b| b == b'\n') {
            line.clear();
            let raw = &conn.buffered()[..lf];
            line.extend_from_slice(raw.strip_suffix(b"\r").unwrap_or(raw));
            conn.consume(lf + 1);
            return Ok(true);
        }
        if conn.buffered().len() > MAX_LINE {
            push_line(conn, "500 5.5.2 Line too long");
            conn.flush().await?;
            return Ok(false);
        }
        wait_for_input(conn).await?;
    }
}

/// Answers a BDAT chunk that has been read; `false` if the connection was dropped.
async fn bdat_reply(
    conn: &mut Conn,
    ctx: &SinkContext,
    state: &mut State,
    size: u64,
    last: bool,
    refusal: Option<&'static str>,
    saved: Option<&mut Saved>,
) -> io::Result<bool> {
    if let Some(refusal) = refusal {
        if let Some(saved) = saved {
            saved.clear();
        }
        push_line(conn, refusal);
        Ok(true)
    } else if !last {
        state.bdat_bytes += size;
        push_line(conn, "250 2.0.0 Chunk received");
        Ok(true)
    } else {
        let bytes = state.bdat_bytes + size;
        let mut saved = saved;
        if let Some(saved) = saved.as_deref_mut() {
            saved.bdat = true;
        }
        finish_message(conn, ctx, state, bytes, saved).await
    }
}

/// Sends the queued 220 and performs the server side of the TLS handshake.
async fn start_tls(conn: &mut Conn, ctx: &SinkContext) -> io::Result<()> {
    conn.flush().await?;
    let acceptor = ctx
        .tls
        .as_ref()
        .ok_or_else(|| io::Error::other("STARTTLS without a certificate"))?;
    tokio::time::timeout(IDLE, conn.start_tls_server(acceptor))
        .await
        .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))?
}

fn push_line(conn: &mut Conn, text: &str) {
    conn.output().extend_from_slice(text.as_bytes());
    conn.output().extend_from_slice(b"\r\n");
}

/// Flushes pending replies, then waits for more input; end of stream is an error.
async fn wait_for_input(conn: &mut Conn) -> io::Result<()> {
    conn.flush().await?;
    let n = tokio::time::timeout(IDLE, conn.fill())
        .await
        .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
    if n == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

/// Consumes DATA content up to and including CRLF.CRLF; returns the content size
/// after un-stuffing, i.e. the size of the message itself.
async fn receive_data(conn: &mut Conn, mut saved: Option<&mut Saved>) -> io::Result<u64> {
    let mut scanner = DotScanner::default();
    let mut total = 0u64;
    loop {
        let buffered = conn.buffered();
        if let Some(n) = scanner.scan(buffered) {
            if let Some(saved) = saved.as_deref_mut() {
                saved.push(&buffered[..n]);
            }
            conn.consume(n);
            // The final ".\r\n" is not content; the CRLF before it is.
            return Ok(total + n as u64 - 3 - scanner.stuffing());
        }
        let n = buffered.len();
        total += n as u64;
        if let Some(saved) = saved.as_deref_mut() {
            saved.push(buffered);
        }
        conn.consume(n);
        wait_for_input(conn).await?;
    }
}

/// Consumes exactly `size` bytes of a BDAT chunk.
async fn discard(conn: &mut Conn, mut size: u64, mut saved: Option<&mut Saved>) -> io::Result<()> {
    loop {
        let take = conn
            .buffered()
            .len()
            .min(usize::try_from(size).unwrap_or(usize::MAX));
        if let Some(saved) = saved.as_deref_mut() {
            saved.push(&conn.buffered()[..take]);
        }
        conn.consume(take);
        size -= take as u64;
        if size == 0 {
            return Ok(());
        }
        wait_for_input(conn).await?;
    }
}

/// Answers a complete message by the configured outcome; `false` when the
/// connection was dropped on purpose.
async fn finish_message(
    conn: &mut Conn,
    ctx: &SinkContext,
    state: &mut State,
    bytes: u64,
    saved: Option<&mut Saved>,
) -> io::Result<bool> {
    let counters = &ctx.counters;
    let n = counters.completed.fetch_add(1, Relaxed);
    let outcome = protocol::decide(ctx.cfg.seed, n, ctx.cfg.rates);
    let recipients = state.recipients;
    state.reset_transaction();
    if !ctx.cfg.delay.is_zero() {
        tokio::time::sleep(ctx.cfg.delay).await;
    }
    let reply = match outcome {
        SinkAnswer::Accept => {
            counters.messages.fetch_add(1, Relaxed);
            counters.recipients.fetch_add(recipients, Relaxed);
            counters.bytes.fetch_add(bytes, Relaxed);
            if let (Some(saved), Some(dir)) = (saved.as_deref(), &ctx.cfg.save_dir) {
                let path = dir.join(format!("{n:016X}.eml"));
                if let Err(e) = std::fs::write(&path, saved.content()) {
                    eprintln!("writing {}: {e}", path.display());
                }
            }
            format!("250 2.0.0 Ok: queued as {n:016X}")
        }
        SinkAnswer::TempFail => {
            counters.tempfails.fetch_add(1, Relaxed);
            "451 4.3.0 Temporary failure (sink)".to_string()
        }
        SinkAnswer::PermFail => {
            counters.permfails.fetch_add(1, Relaxed);
            "554 5.0.0 Permanent failure (sink)".to_string()
        }
        SinkAnswer::Drop => {
            counters.drops.fetch_add(1, Relaxed);
            ctx.message_completed(n);
            return Ok(false);
        }
    };
    if let Some(saved) = saved {
        saved.clear();
    }
    push_line(conn, &reply);
    let flushed = conn.flush().await;
    ctx.message_completed(n);
    flushed.map(|()| true)
}

/// Bytes of one message kept for `--save-dir`, at most this many (the rest is
/// counted, not kept).
const SAVE_MAX: usize = 64 << 20;

/// The content of the message being received, as it came over the wire.
#[derive(Debug, Default)]
pub(super) struct Saved {
    raw: Vec<u8>,
    /// BDAT content is taken as it is; DATA content is dot-stuffed and ends with
    /// `.CRLF`.
    bdat: bool,
}

impl Saved {
    fn push(&mut self, bytes: &[u8]) {
        let room = SAVE_MAX.saturating_sub(self.raw.len());
        self.raw.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    fn clear(&mut self) {
        self.raw.clear();
        self.bdat = false;
    }

    /// The message itself: BDAT content as received; DATA content without its
    /// final `.CRLF` and with each line's stuffed leading dot removed.
    pub(super) fn content(&self) -> Vec<u8> {
        if self.bdat {
            return self.raw.clone();
        }
        let body = self.raw.strip_suffix(b".\r\n").unwrap_or(&self.raw);
        let mut out = Vec::with_capacity(body.len());
        for line in body.split_inclusive(|&b| b == b'\n') {
            out.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::Saved;

    #[test]
    fn saved_data_is_unstuffed_and_loses_its_end() {
        let mut saved = Saved::default();
        saved.push(b"Subject: x\r\n\r\n..a dot\r\n.");
        saved.push(b"..two\r\nlast\r\n.\r\n");
        assert_eq!(
            saved.content(),
            b"Subject: x\r\n\r\n.a dot\r\n..two\r\nlast\r\n"
        );
        saved.clear();
        saved.bdat = true;
        saved.push(b"..as is\r\n");
        assert_eq!(saved.content(), b"..as is\r\n");
    }
}
