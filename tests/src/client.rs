//! A deliberately small SMTP client for black-box tests: it sends exactly the bytes a test
//! asks for (no pipelining or dot-stuffing of its own unless asked) and parses replies
//! strictly (`ddd-` continues, `ddd ` ends) so that malformed server output fails a test.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, ensure, Context};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};

/// Read and write timeout on every client socket: long enough for a loaded CI machine,
/// short enough that a stuck daemon fails the test instead of hanging it.
pub const IO_TIMEOUT: Duration = Duration::from_secs(20);

/// Longest reply line accepted; RFC 5321 §4.5.3.1.5 allows 512 octets.
const MAX_LINE: u64 = 64 * 1024;

/// A plain or TLS connection to the daemon.
pub enum SmtpStream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl SmtpStream {
    fn tcp(&self) -> &TcpStream {
        match self {
            SmtpStream::Plain(tcp) => tcp,
            SmtpStream::Tls(tls) => tls.get_ref(),
        }
    }
}

impl Read for SmtpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            SmtpStream::Plain(tcp) => tcp.read(buf),
            SmtpStream::Tls(tls) => tls.read(buf),
        }
    }
}

impl Write for SmtpStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            SmtpStream::Plain(tcp) => tcp.write(buf),
            SmtpStream::Tls(tls) => tls.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            SmtpStream::Plain(tcp) => tcp.flush(),
            SmtpStream::Tls(tls) => tls.flush(),
        }
    }
}

/// One SMTP reply as this client reads it: the code and the text of each line (without
/// `ddd-`/`ddd `), kept line by line so that tests can look at every line the server
/// sent, unlike the MTA's own `way2mail_smtp::Reply`, which joins them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestReply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl TestReply {
    /// All lines joined with newlines.
    pub fn text(&self) -> String {
        self.lines.join("\n")
    }

    /// The enhanced status code (`5.7.1`) when the first line starts with one.
    pub fn enhanced(&self) -> Option<&str> {
        let word = self.lines.first()?.split_whitespace().next()?;
        let parts: Vec<&str> = word.split('.').collect();
        let numeric = parts.len() == 3 && parts.iter().all(|p| p.parse::<u16>().is_ok());
        numeric.then_some(word)
    }

    /// True when an EHLO reply line (after the first) starts with `keyword`.
    pub fn has_extension(&self, keyword: &str) -> bool {
        self.lines.iter().skip(1).any(|line| {
            line.split_whitespace()
                .next()
                .is_some_and(|word| word.eq_ignore_ascii_case(keyword))
        })
    }
}

impl fmt::Display for TestReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.lines.join(" | "))
    }
}

/// A connection plus reply parsing. Writes go straight to the stream; reads are buffered.
pub struct SmtpClient {
    reader: BufReader<SmtpStream>,
}

impl SmtpClient {
    /// A TCP connection to 127.0.0.1:`port` with [`IO_TIMEOUT`] set both ways.
    pub fn tcp(port: u16) -> anyhow::Result<TcpStream> {
        let tcp = TcpStream::connect(("127.0.0.1", port))
            .with_context(|| format!("connecting to 127.0.0.1:{port}"))?;
        tcp.set_read_timeout(Some(IO_TIMEOUT))?;
        tcp.set_write_timeout(Some(IO_TIMEOUT))?;
        Ok(tcp)
    }

    /// Connects in plain text and reads the greeting, whatever its code.
    pub fn connect(port: u16) -> anyhow::Result<(SmtpClient, TestReply)> {
        SmtpClient::over_plain(SmtpClient::tcp(port)?)
    }

    /// Connects with implicit TLS (the submissions listener) and reads the greeting.
    pub fn connect_tls(
        port: u16,
        config: Arc<ClientConfig>,
    ) -> anyhow::Result<(SmtpClient, TestReply)> {
        SmtpClient::over_tls(SmtpClient::tcp(port)?, config)
    }

    /// Reads the greeting on an already connected socket.
    pub fn over_plain(tcp: TcpStream) -> anyhow::Result<(SmtpClient, TestReply)> {
        let mut client = SmtpClient::from_stream(SmtpStream::Plain(tcp));
        let greeting = client.read_reply().context("reading the greeting")?;
        Ok((client, greeting))
    }

    /// Handshakes on an already connected socket, then reads the greeting.
    pub fn over_tls(
        tcp: TcpStream,
        config: Arc<ClientConfig>,
    ) -> anyhow::Result<(SmtpClient, TestReply)> {
        let mut tls = handshake_stream(tcp, config)?;
        while tls.conn.is_handshaking() {
            tls.conn
                .complete_io(&mut tls.sock)
                .context("implicit TLS handshake")?;
        }
        let mut client = SmtpClient::from_stream(SmtpStream::Tls(Box::new(tls)));
        let greeting = client
            .read_reply()
            .context("reading the greeting over TLS")?;
        Ok((client, greeting))
    }

    pub fn from_stream(stream: SmtpStream) -> SmtpClient {
        SmtpClient {
            reader: BufReader::new(stream),
        }
    }

    /// The TCP socket underneath, for timeouts and shutdown.
    pub fn socket(&self) -> &TcpStream {
        self.reader.get_ref().tcp()
    }

    /// The DER of the certificate the server presented; `None` in plain text.
    pub fn peer_certificate(&self) -> Option<Vec<u8>> {
        match self.reader.get_ref() {
            SmtpStream::Plain(_) => None,
            SmtpStream::Tls(tls) => Some(tls.conn.peer_certificates()?.first()?.to_vec()),
        }
    }

    /// Writes `bytes` as they are.
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        let stream = self.reader.get_mut();
        stream.write_all(bytes)?;
        stream.flush()
    }

    /// Sends `line` + CRLF and reads one reply.
    pub fn command(&mut self, line: &str) -> anyhow::Result<TestReply> {
        self.send(format!("{line}\r\n").as_bytes())
            .with_context(|| format!("sending {line:?}"))?;
        self.read_reply()
            .with_context(|| format!("reading the reply to {line:?}"))
    }

    /// Like [`SmtpClient::command`] but fails unless the reply has code `expected`.
    pub fn expect(&mut self, line: &str, expected: u16) -> anyhow::Result<TestReply> {
        let reply = self.command(line)?;
        ensure!(
            reply.code == expected,
            "{line:?}: expected {expected}, got {reply}"
        );
        Ok(reply)
    }

    /// Reads one (possibly multi-line) reply.
    pub fn read_reply(&mut self) -> anyhow::Result<TestReply> {
        let mut lines = Vec::new();
        loop {
            let line = self.read_line()?;
            let bytes = line.as_bytes();
            ensure!(
                bytes.len() >= 3 && bytes[..3].iter().all(u8::is_ascii_digit),
                "malformed reply line {line:?}"
            );
            let code: u16 = line[..3].parse().context("reply code")?;
            let more = match bytes.get(3) {
                None | Some(b' ') => false,
                Some(b'-') => true,
                Some(_) => bail!("malformed reply line {line:?}"),
            };
            lines.push(line.get(4..).unwrap_or("").to_string());
            if !more {
                return Ok(TestReply { code, lines });
            }
        }
    }

    /// One CRLF-terminated line without its CRLF.
    fn read_line(&mut self) -> anyhow::Result<String> {
        let mut buf = Vec::new();
        (&mut self.reader)
            .take(MAX_LINE)
            .read_until(b'\n', &mut buf)?;
        if buf.is_empty() {
            bail!("connection closed by the server");
        }
        ensure!(
            buf.ends_with(b"\r\n"),
            "reply line not terminated by CRLF: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.truncate(buf.len() - 2);
        String::from_utf8(buf).context("reply line is not UTF-8")
    }

    /// Reads until the server closes the connection; returns what arrived. An error
    /// (reset, timeout) is returned as such so a test can tell them apart.
    pub fn read_to_end(&mut self) -> io::Result<Vec<u8>> {
        let mut rest = Vec::new();
        self.reader.read_to_end(&mut rest)?;
        Ok(rest)
    }

    /// `STARTTLS`, expect `220`, then the handshake; the reply must have been the last
    /// thing buffered (anything after it would be plaintext injected before TLS).
    pub fn starttls(mut self, config: Arc<ClientConfig>) -> anyhow::Result<SmtpClient> {
        self.expect("STARTTLS", 220)?;
        ensure!(
            self.reader.buffer().is_empty(),
            "bytes buffered after the STARTTLS reply"
        );
        let tcp = match self.reader.into_inner() {
            SmtpStream::Plain(tcp) => tcp,
            SmtpStream::Tls(_) => bail!("STARTTLS on a connection already in TLS"),
        };
        let mut tls = handshake_stream(tcp, config)?;
        while tls.conn.is_handshaking() {
            tls.conn
                .complete_io(&mut tls.sock)
                .context("TLS handshake after STARTTLS")?;
        }
        Ok(SmtpClient::from_stream(SmtpStream::Tls(Box::new(tls))))
    }

    /// EHLO, MAIL, RCPT for each recipient, DATA and `body` (which must already be
    /// dot-stuffed and end in CRLF). Returns the reply to the final dot.
    pub fn send_message(
        &mut self,
        from: &str,
        to: &[&str],
        body: &str,
    ) -> anyhow::Result<TestReply> {
        self.expect(&format!("MAIL FROM:<{from}>"), 250)?;
        for rcpt in to {
            self.expect(&format!("RCPT TO:<{rcpt}>"), 250)?;
        }
        self.expect("DATA", 354)?;
        self.send(body.as_bytes())?;
        self.command(".")
    }

    /// Closes the write side (the server sees EOF) while reads stay possible.
    pub fn shutdown_write(&self) -> io::Result<()> {
        self.socket().shutdown(Shutdown::Write)
    }
}

fn handshake_stream(
    tcp: TcpStream,
    config: Arc<ClientConfig>,
) -> anyhow::Result<StreamOwned<ClientConnection, TcpStream>> {
    let name = ServerName::try_from("localhost").context("server name")?;
    let conn = ClientConnection::new(config, name).context("creating a TLS client")?;
    Ok(StreamOwned::new(conn, tcp))
}
