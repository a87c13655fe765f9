//! The hand-over of a notification to the local MTA: one blocking SMTP dialogue
//! (EHLO with HELO fallback, MAIL, RCPT, DATA dot-stuffed, QUIT), every reply read
//! with `way2mail_smtp`'s bounded reply reader and checked, one deadline for the
//! whole exchange. What it returns is what the incident records: a [`Delivery`]
//! with the final reply, or the step that failed and why.
//!
//! Deliberately not the MTA's pipelining client: the hop is one message over
//! loopback, and a strict command-reply exchange names the step that failed.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use way2mail_smtp::client::{ReplyError, ReplyReader};
use way2mail_smtp::Reply;

use super::NotifySettings;

/// Longest reply text kept in a notification record.
const MAX_RECORDED_REPLY: usize = 500;
/// Bytes asked of the socket per read; the reply reader bounds what is kept.
const READ_SIZE: usize = 4096;

/// The outcome of one hand-over to the MTA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The server took the message (2xx after the data).
    pub ok: bool,
    /// The final reply (`250 2.0.0 <id> queued`), or the step that failed and why.
    pub reply: String,
    /// The queue id named by an accepting reply.
    pub queue_id: Option<String>,
}

/// Why a hand-over failed; its text is what the notification records.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandOverError {
    #[error("cannot connect to {server}: {error}")]
    Connect {
        server: SocketAddr,
        #[source]
        error: io::Error,
    },
    /// Reading or writing at `step` failed (or the deadline passed).
    #[error("{step}: {error}")]
    Io {
        step: &'static str,
        #[source]
        error: io::Error,
    },
    #[error("{step}: not an SMTP reply: {error}")]
    NotSmtp {
        step: &'static str,
        #[source]
        error: ReplyError,
    },
    /// The server answered `step` with a reply other than the one that goes on.
    #[error("{step}: {reply}")]
    Refused { step: &'static str, reply: Reply },
}

/// Sends `message` from `settings.from` to `to` through `settings.smtp_server`.
/// Never panics; every failure is a `Delivery` with `ok: false`.
pub fn send(settings: &NotifySettings, to: &str, message: &[u8]) -> Delivery {
    match exchange(settings, to, message) {
        Ok(reply) => Delivery {
            ok: true,
            queue_id: queue_id(&reply),
            reply: recorded(&reply.to_string()),
        },
        Err(e) => Delivery {
            ok: false,
            reply: recorded(&e.to_string()),
            queue_id: None,
        },
    }
}

fn recorded(text: &str) -> String {
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_RECORDED_REPLY)
        .collect();
    if text.chars().count() > MAX_RECORDED_REPLY {
        out.push('…');
    }
    out
}

/// The queue id in an accepting reply: `250 2.0.0 <id> queued` (Way2Mail) or
/// `… queued as <id>` (Postfix and others).
pub fn queue_id(reply: &Reply) -> Option<String> {
    let words: Vec<&str> = reply.text.split_whitespace().collect();
    let id_like =
        |w: &str| !w.is_empty() && w.len() <= 64 && w.bytes().all(|b| b.is_ascii_alphanumeric());
    if let Some(at) = words
        .windows(2)
        .position(|w| w[0].eq_ignore_ascii_case("queued") && w[1].eq_ignore_ascii_case("as"))
    {
        let id = words
            .get(at + 2)?
            .trim_matches(|c: char| !c.is_ascii_alphanumeric());
        return id_like(id).then(|| id.to_owned());
    }
    let success = reply.enhanced.is_some_and(|e| e.class() == 2);
    match words.as_slice() {
        [id, queued, ..] if success && queued.eq_ignore_ascii_case("queued") => {
            id_like(id).then(|| (*id).to_owned())
        }
        _ => None,
    }
}

/// The connection with one deadline for everything.
struct Conn {
    stream: TcpStream,
    deadline: Instant,
    /// Bytes read and not yet taken by a complete reply.
    input: Vec<u8>,
    reader: ReplyReader,
}

impl Conn {
    fn remaining(&self) -> io::Result<Duration> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            Err(io::Error::new(io::ErrorKind::TimedOut, "timed out"))
        } else {
            Ok(left)
        }
    }

    fn write(&mut self, step: &'static str, bytes: &[u8]) -> Result<(), HandOverError> {
        let written = self.remaining().and_then(|left| {
            self.stream.set_write_timeout(Some(left))?;
            self.stream.write_all(bytes)?;
            self.stream.flush()
        });
        written.map_err(|error| HandOverError::Io { step, error })
    }

    /// One reply, bounded by the reader's limits on lines and replies.
    fn reply(&mut self, step: &'static str) -> Result<Reply, HandOverError> {
        loop {
            let mut used = 0;
            let read = self.reader.read(&self.input, &mut used);
            // Complete lines are the reader's now, whatever the result.
            self.input.drain(..used);
            match read {
                Ok(Some(reply)) => return Ok(reply),
                Ok(None) => {}
                Err(error) => return Err(HandOverError::NotSmtp { step, error }),
            }
            self.fill()
                .map_err(|error| HandOverError::Io { step, error })?;
        }
    }

    /// Reads what the server sent next, within the deadline.
    fn fill(&mut self) -> io::Result<()> {
        let left = self.remaining()?;
        self.stream.set_read_timeout(Some(left))?;
        let mut buf = [0u8; READ_SIZE];
        let n = self.stream.read(&mut buf)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection",
            ));
        }
        self.input.extend_from_slice(&buf[..n]);
        Ok(())
    }

    /// Sends `line` and reads its reply.
    fn command(&mut self, step: &'static str, line: &str) -> Result<Reply, HandOverError> {
        self.write(step, format!("{line}\r\n").as_bytes())?;
        self.reply(step)
    }
}

/// `reply` when its code is one of `ok` (any 2xx when `ok` is empty), else the
/// refusal at `step`.
fn expect(step: &'static str, reply: Reply, ok: &[u16]) -> Result<Reply, HandOverError> {
    if ok.contains(&reply.code) || ok.is_empty() && reply.class() == 2 {
        Ok(reply)
    } else {
        Err(HandOverError::Refused { step, reply })
    }
}

/// The SMTP dialogue; the final reply on success, else what failed.
fn exchange(settings: &NotifySettings, to: &str, message: &[u8]) -> Result<Reply, HandOverError> {
    let server = settings.smtp_server;
    let deadline = Instant::now() + settings.timeout;
    let stream = TcpStream::connect_timeout(&server, settings.timeout)
        .map_err(|error| HandOverError::Connect { server, error })?;
    let _ = stream.set_nodelay(true);
    let mut conn = Conn {
        stream,
        deadline,
        input: Vec::new(),
        reader: ReplyReader::default(),
    };

    let greeting = conn.reply("greeting")?;
    expect("greeting", greeting, &[220])?;
    let ehlo = conn.command("EHLO", &format!("EHLO {}", settings.helo))?;
    if ehlo.code != 250 {
        let helo = conn.command("HELO", &format!("HELO {}", settings.helo))?;
        expect("HELO", helo, &[250])?;
    }
    let mail = conn.command("MAIL FROM", &format!("MAIL FROM:<{}>", settings.from))?;
    expect("MAIL FROM", mail, &[250])?;
    let rcpt = conn.command("RCPT TO", &format!("RCPT TO:<{to}>"))?;
    expect("RCPT TO", rcpt, &[250, 251])?;
    let data = conn.command("DATA", "DATA")?;
    expect("DATA", data, &[354])?;
    conn.write("end of data", &dot_stuffed(message))?;
    let last = conn.reply("end of data")?;
    let last = expect("end of data", last, &[])?;
    // The message is the server's now; a failed QUIT changes nothing.
    let _ = conn.command("QUIT", "QUIT");
    let mut rest = [0u8; 64];
    let _ = conn.stream.read(&mut rest);
    Ok(last)
}

/// The message with every line starting with `.` doubled, CRLF line ends (a bare
/// LF becomes CRLF) and the final `.` line.
pub fn dot_stuffed(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 64);
    let mut at_line_start = true;
    let mut prev = 0u8;
    for &b in message {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        at_line_start = b == b'\n';
        prev = b;
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::net::TcpListener;

    fn reply(line: &str) -> Reply {
        let mut reader = ReplyReader::default();
        let bytes = format!("{line}\r\n");
        reader
            .read(bytes.as_bytes(), &mut 0)
            .expect("a reply")
            .expect("complete")
    }

    #[test]
    fn queue_ids_from_replies() {
        let r = |text: &str| reply(&format!("250 {text}"));
        assert_eq!(
            queue_id(&r("2.0.0 01JD5K2M3N4P5Q6R7S8T9V0W1X queued")).as_deref(),
            Some("01JD5K2M3N4P5Q6R7S8T9V0W1X")
        );
        assert_eq!(
            queue_id(&r("2.0.0 Ok: queued as 4Bq1Xy0sZQz9")).as_deref(),
            Some("4Bq1Xy0sZQz9")
        );
        assert_eq!(queue_id(&r("2.0.0 Ok")), None);
    }

    /// A scripted SMTP server: the greeting, then one reply per command (the data
    /// after a 354 up to its final dot counts as one); returns what the client sent.
    fn server(replies: Vec<&'static str>) -> (SocketAddr, std::thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let handle = std::thread::spawn(move || {
            let (stream, _) = listener.accept().expect("accept");
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .expect("timeout");
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut writer = stream;
            let mut transcript = String::new();
            let mut replies = replies.into_iter();
            if let Some(greeting) = replies.next() {
                writer.write_all(greeting.as_bytes()).expect("greet");
            }
            let mut in_data = false;
            for reply in replies {
                loop {
                    let mut line = String::new();
                    match reader.read_line(&mut line) {
                        Ok(0) | Err(_) => return transcript,
                        Ok(_) => {}
                    }
                    transcript.push_str(&line);
                    if !in_data || line == ".\r\n" {
                        in_data = false;
                        in_data |=
                            line.eq_ignore_ascii_case("DATA\r\n") && reply.starts_with("354");
                        break;
                    }
                }
                if writer.write_all(reply.as_bytes()).is_err() {
                    return transcript;
                }
            }
            let mut rest = String::new();
            let _ = reader.read_to_string(&mut rest);
            transcript.push_str(&rest);
            transcript
        });
        (addr, handle)
    }

    fn settings(addr: SocketAddr) -> NotifySettings {
        NotifySettings {
            smtp_server: addr,
            from: "security@way2mail.test".into(),
            helo: "control.test".into(),
            timeout: Duration::from_secs(5),
        }
    }

    #[test]
    fn a_whole_exchange_and_the_final_reply() {
        let (addr, server) = server(vec![
            "220 mx.test ESMTP\r\n",
            "250-mx.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n",
            "250 2.1.0 ok\r\n",
            "250 2.1.5 ok\r\n",
            "354 go ahead\r\n",
            "250 2.0.0 01JD5K2M3N4P5Q6R7S8T9V0W1X queued\r\n",
            "221 2.0.0 bye\r\n",
        ]);
        let d = send(
            &settings(addr),
            "ops@acme.test",
            b"Subject: x\r\n\r\n.dot\r\nbody\r\n",
        );
        assert!(d.ok, "{d:?}");
        assert_eq!(d.reply, "250 2.0.0 01JD5K2M3N4P5Q6R7S8T9V0W1X queued");
        assert_eq!(d.queue_id.as_deref(), Some("01JD5K2M3N4P5Q6R7S8T9V0W1X"));
        let text = server.join().expect("server");
        assert!(text.starts_with(
            "EHLO control.test\r\nMAIL FROM:<security@way2mail.test>\r\nRCPT TO:<ops@acme.test>\r\nDATA\r\n"
        ), "{text}");
        assert!(
            text.contains("\r\n..dot\r\nbody\r\n.\r\nQUIT\r\n"),
            "{text}"
        );
    }

    #[test]
    fn refusals_and_dead_servers_are_failures() {
        let (addr, _server) = server(vec![
            "220 mx.test ESMTP\r\n",
            "250 mx.test\r\n",
            "250 2.1.0 ok\r\n",
            "554 5.7.1 relay denied\r\n",
        ]);
        let d = send(&settings(addr), "ops@acme.test", b"x\r\n");
        assert!(!d.ok);
        assert_eq!(d.reply, "RCPT TO: 554 5.7.1 relay denied");
        assert_eq!(d.queue_id, None);

        let (addr, _server) = server(vec!["554 5.3.2 no service\r\n"]);
        let d = send(&settings(addr), "ops@acme.test", b"x\r\n");
        assert!(
            !d.ok && d.reply == "greeting: 554 5.3.2 no service",
            "{d:?}"
        );

        // Nothing listening.
        let port = TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr");
        let d = send(&settings(port), "ops@acme.test", b"x\r\n");
        assert!(
            !d.ok && d.reply.starts_with("cannot connect to 127.0.0.1:"),
            "{d:?}"
        );

        // Garbage and silence are bounded.
        let (addr, _server) = server(vec!["hello there\r\n"]);
        let d = send(&settings(addr), "ops@acme.test", b"x\r\n");
        assert!(!d.ok && d.reply.contains("not an SMTP reply"), "{d:?}");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let mut quiet = settings(listener.local_addr().expect("addr"));
        quiet.timeout = Duration::from_millis(300);
        let started = Instant::now();
        let d = send(&quiet, "ops@acme.test", b"x\r\n");
        assert!(!d.ok && d.reply.starts_with("greeting:"), "{d:?}");
        assert!(started.elapsed() < Duration::from_secs(3));
    }
}
