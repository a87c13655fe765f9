//! One sink connection: a line reader over a plain or TLS stream, one small handler per
//! verb, DATA and BDAT collection, and the behaviour chosen at MAIL FROM applied once
//! the message is complete. Accepted messages are recorded in the sink's shared state
//! before the 250 goes out.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::{ServerConnection, StreamOwned};

use super::{
    Behaviour, Received, Shared, ADVERTISED_SIZE, IDLE_LIMIT, MAX_LINE, MAX_MESSAGE, POLL,
};

/// A plain or TLS server-side connection.
enum Conn {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ServerConnection, TcpStream>>),
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(tcp) => tcp.read(buf),
            Conn::Tls(tls) => tls.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(tcp) => tcp.write(buf),
            Conn::Tls(tls) => tls.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Plain(tcp) => tcp.flush(),
            Conn::Tls(tls) => tls.flush(),
        }
    }
}

/// One transaction in progress.
struct Transaction {
    behaviour: Behaviour,
    mail_from: String,
    mail_params: String,
    rcpt_to: Vec<String>,
    rcpt_params: Vec<String>,
    chunks: Vec<u8>,
}

/// One connection's state: its stream, unread input and transaction.
struct Session<'a> {
    conn: Option<Conn>,
    input: Vec<u8>,
    number: usize,
    shared: &'a Shared,
    tx: Option<Transaction>,
    last_activity: Instant,
}

pub(super) fn serve(tcp: TcpStream, number: usize, shared: &Shared) -> io::Result<()> {
    tcp.set_read_timeout(Some(POLL))?;
    tcp.set_write_timeout(Some(Duration::from_secs(10)))?;
    tcp.set_nodelay(true)?;
    let mut session = Session {
        conn: Some(Conn::Plain(tcp)),
        input: Vec::new(),
        number,
        shared,
        tx: None,
        last_activity: Instant::now(),
    };
    if let Some(code) = shared.for_connection() {
        shared.count(|c| c.refused_greetings += 1);
        let enhanced = if code / 100 == 4 { "4.3.2" } else { "5.3.2" };
        return session.reply(&format!("{code} {enhanced} sink refuses service"));
    }
    session.reply("220 sink.test ESMTP test sink")?;
    while let Some(line) = session.read_line()? {
        if !session.command(&line)? {
            break;
        }
    }
    Ok(())
}

impl Session<'_> {
    fn conn(&mut self) -> io::Result<&mut Conn> {
        self.conn
            .as_mut()
            .ok_or_else(|| io::Error::other("connection already closed"))
    }

    fn reply(&mut self, text: &str) -> io::Result<()> {
        let conn = self.conn()?;
        conn.write_all(text.as_bytes())?;
        conn.write_all(b"\r\n")?;
        conn.flush()
    }

    /// Reads more input, retrying on the poll timeout until stop or the idle limit.
    fn fill(&mut self) -> io::Result<bool> {
        let mut buf = [0u8; 16 * 1024];
        loop {
            if self.shared.stop.load(Ordering::SeqCst) {
                return Ok(false);
            }
            if self.last_activity.elapsed() > IDLE_LIMIT {
                let _ = self.reply("421 4.4.2 sink idle timeout");
                return Ok(false);
            }
            match self.conn()?.read(&mut buf) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.input.extend_from_slice(&buf[..n]);
                    self.last_activity = Instant::now();
                    return Ok(true);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// The next line without its CRLF (a bare LF also ends it), or None at EOF/stop.
    fn read_line(&mut self) -> io::Result<Option<Vec<u8>>> {
        loop {
            if let Some(end) = self.input.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.input.drain(..=end).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(Some(line));
            }
            if self.input.len() > MAX_LINE {
                let _ = self.reply("500 5.5.2 line too long");
                return Ok(None);
            }
            if !self.fill()? {
                return Ok(None);
            }
        }
    }

    /// Handles one command line; false ends the connection.
    fn command(&mut self, line: &[u8]) -> io::Result<bool> {
        let text = String::from_utf8_lossy(line).into_owned();
        let verb = text
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        let opts = &self.shared.opts;
        match verb.as_str() {
            "EHLO" if !opts.esmtp => self.reply("502 5.5.1 EHLO not supported here")?,
            "EHLO" => self.ehlo()?,
            "HELO" => {
                self.tx = None;
                self.reply("250 sink.test")?;
            }
            "STARTTLS" => return self.starttls(),
            "MAIL" => self.mail(&text)?,
            "RCPT" => self.rcpt(&text)?,
            "DATA" => return self.data(),
            "BDAT" => return self.bdat(&text),
            "RSET" => {
                self.tx = None;
                self.reply("250 2.0.0 reset")?;
            }
            "NOOP" => self.reply("250 2.0.0 ok")?,
            "VRFY" => self.reply("252 2.5.0 cannot verify")?,
            "QUIT" => {
                self.reply("221 2.0.0 bye")?;
                return Ok(false);
            }
            _ => self.reply("500 5.5.1 unknown command")?,
        }
        Ok(true)
    }

    fn is_tls(&self) -> bool {
        matches!(self.conn, Some(Conn::Tls(_)))
    }

    fn ehlo(&mut self) -> io::Result<()> {
        self.tx = None;
        let opts = &self.shared.opts;
        let mut lines = vec!["sink.test".to_string(), format!("SIZE {ADVERTISED_SIZE}")];
        let flags = [
            (opts.pipelining, "PIPELINING"),
            (opts.eightbitmime, "8BITMIME"),
            (opts.smtputf8, "SMTPUTF8"),
            (opts.dsn, "DSN"),
            (opts.chunking, "CHUNKING"),
            (self.shared.tls.is_some() && !self.is_tls(), "STARTTLS"),
            (true, "ENHANCEDSTATUSCODES"),
        ];
        lines.extend(flags.iter().filter(|f| f.0).map(|f| f.1.to_string()));
        let last = lines.len() - 1;
        let text: Vec<String> = lines
            .iter()
            .enumerate()
            .map(|(i, l)| format!("250{}{l}", if i == last { ' ' } else { '-' }))
            .collect();
        self.reply(&text.join("\r\n"))
    }

    fn starttls(&mut self) -> io::Result<bool> {
        let config = match (&self.shared.tls, self.is_tls()) {
            (Some(config), false) => Arc::clone(config),
            _ => {
                self.reply("502 5.5.1 STARTTLS not available")?;
                return Ok(true);
            }
        };
        // Input pipelined after STARTTLS would be a command injection; refuse it.
        if !self.input.is_empty() {
            self.reply("554 5.5.1 pipelined input after STARTTLS")?;
            return Ok(false);
        }
        self.reply("220 2.0.0 ready to start TLS")?;
        let tcp = match self.conn.take() {
            Some(Conn::Plain(tcp)) => tcp,
            _ => return Ok(false),
        };
        let server = ServerConnection::new(config).map_err(io::Error::other)?;
        self.conn = Some(Conn::Tls(Box::new(StreamOwned::new(server, tcp))));
        self.tx = None;
        Ok(true)
    }

    fn mail(&mut self, text: &str) -> io::Result<()> {
        if self.tx.is_some() {
            return self.reply("503 5.5.1 nested MAIL command");
        }
        match split_path(text, "MAIL FROM:") {
            Some((path, params)) => {
                self.tx = Some(Transaction {
                    behaviour: self.shared.for_message(),
                    mail_from: path,
                    mail_params: params,
                    rcpt_to: Vec::new(),
                    rcpt_params: Vec::new(),
                    chunks: Vec::new(),
                });
                self.reply("250 2.1.0 sender ok")
            }
            None => self.reply("501 5.5.4 syntax: MAIL FROM:<address>"),
        }
    }

    fn rcpt(&mut self, text: &str) -> io::Result<()> {
        let Some(tx) = self.tx.as_mut() else {
            return self.reply("503 5.5.1 MAIL first");
        };
        let Some((path, params)) = split_path(text, "RCPT TO:") else {
            return self.reply("501 5.5.4 syntax: RCPT TO:<address>");
        };
        if let Behaviour::RejectRcpt(code, enhanced) = &tx.behaviour {
            if !path.to_ascii_lowercase().starts_with("ok") {
                let reply = format!("{code} {enhanced} recipient rejected by sink");
                self.shared.count(|c| c.rejected_rcpts += 1);
                return self.reply(&reply);
            }
        }
        tx.rcpt_to.push(path);
        tx.rcpt_params.push(params);
        self.reply("250 2.1.5 recipient ok")
    }

    fn data(&mut self) -> io::Result<bool> {
        match &self.tx {
            None => {
                self.reply("503 5.5.1 MAIL first")?;
                return Ok(true);
            }
            Some(tx) if tx.rcpt_to.is_empty() => {
                self.tx = None;
                self.reply("554 5.5.1 no valid recipients")?;
                return Ok(true);
            }
            Some(_) => {}
        }
        self.reply("354 go ahead")?;
        let mut data = Vec::new();
        let mut too_big = false;
        loop {
            let Some(line) = self.read_line()? else {
                return Ok(false);
            };
            if line == b"." {
                break;
            }
            let line = line.strip_prefix(b".").unwrap_or(&line);
            if data.len() + line.len() + 2 <= MAX_MESSAGE {
                data.extend_from_slice(line);
                data.extend_from_slice(b"\r\n");
            } else {
                too_big = true;
            }
        }
        if too_big {
            self.tx = None;
            self.reply("552 5.3.4 message too big")?;
            return Ok(true);
        }
        self.finish(data)
    }

    fn bdat(&mut self, text: &str) -> io::Result<bool> {
        let words: Vec<&str> = text.split_whitespace().collect();
        let (size, last) = match words.as_slice() {
            [_, size] => (size.parse::<usize>().ok(), false),
            [_, size, last] if last.eq_ignore_ascii_case("LAST") => {
                (size.parse::<usize>().ok(), true)
            }
            _ => (None, false),
        };
        let Some(size) = size.filter(|s| *s <= MAX_MESSAGE) else {
            self.reply("501 5.5.4 syntax: BDAT size [LAST]")?;
            return Ok(false);
        };
        while self.input.len() < size {
            if !self.fill()? {
                return Ok(false);
            }
        }
        let chunk: Vec<u8> = self.input.drain(..size).collect();
        let Some(tx) = self.tx.as_mut().filter(|tx| !tx.rcpt_to.is_empty()) else {
            self.reply("503 5.5.1 no transaction with recipients")?;
            return Ok(true);
        };
        if tx.chunks.len() + chunk.len() > MAX_MESSAGE {
            self.reply("552 5.3.4 message too big")?;
            self.tx = None;
            return Ok(true);
        }
        tx.chunks.extend_from_slice(&chunk);
        if !last {
            self.reply(&format!("250 2.0.0 {size} octets received"))?;
            return Ok(true);
        }
        let data = std::mem::take(&mut tx.chunks);
        self.finish(data)
    }

    /// Applies the transaction's behaviour to a complete message; false ends the
    /// connection.
    fn finish(&mut self, data: Vec<u8>) -> io::Result<bool> {
        let Some(tx) = self.tx.take() else {
            return Ok(true);
        };
        match tx.behaviour {
            Behaviour::TempFail => {
                self.shared.count(|c| c.tempfails += 1);
                self.reply("451 4.3.0 temporary failure (sink)")?;
            }
            Behaviour::PermFail => {
                self.shared.count(|c| c.permfails += 1);
                self.reply("554 5.0.0 permanent failure (sink)")?;
            }
            Behaviour::Drop => {
                self.shared.count(|c| c.drops += 1);
                if let Some(Conn::Plain(tcp)) = &self.conn {
                    let _ = tcp.shutdown(std::net::Shutdown::Both);
                }
                self.conn = None;
                return Ok(false);
            }
            Behaviour::Stall(wait) => {
                if !self.stall(wait) {
                    return Ok(false);
                }
                self.accept(tx, data)?;
            }
            Behaviour::Accept | Behaviour::RejectRcpt(..) | Behaviour::RefuseGreeting(_) => {
                self.accept(tx, data)?;
            }
        }
        Ok(true)
    }

    /// Sleeps `wait` in slices; false when the sink stops meanwhile.
    fn stall(&self, wait: Duration) -> bool {
        let until = Instant::now() + wait;
        while Instant::now() < until {
            if self.shared.stop.load(Ordering::SeqCst) {
                return false;
            }
            let left = until.saturating_duration_since(Instant::now());
            std::thread::sleep(left.min(Duration::from_millis(20)));
        }
        true
    }

    /// Records the message, then replies 250: a client that sees the 250 can count on the
    /// message being in `messages()`.
    fn accept(&mut self, tx: Transaction, data: Vec<u8>) -> io::Result<()> {
        let tls = self.is_tls();
        {
            let mut state = self.shared.state();
            state.messages.push(Received {
                mail_from: tx.mail_from,
                mail_params: tx.mail_params,
                rcpt_to: tx.rcpt_to,
                rcpt_params: tx.rcpt_params,
                data,
                connection: self.number,
                tls,
                at: Instant::now(),
            });
            if let Some(count) = state.per_connection.get_mut(self.number) {
                *count += 1;
            }
        }
        self.shared.changed.notify_all();
        self.reply("250 2.0.0 accepted by sink")
    }
}

/// Splits `MAIL FROM:<path> params` (case-insensitive prefix, optional space after the
/// colon) into the path without brackets and the trimmed parameters.
fn split_path(text: &str, prefix: &str) -> Option<(String, String)> {
    let head = text.get(..prefix.len())?;
    if !head.eq_ignore_ascii_case(prefix) {
        return None;
    }
    let rest = text[prefix.len()..].trim_start();
    let rest = rest.strip_prefix('<')?;
    let end = rest.find('>')?;
    Some((rest[..end].to_string(), rest[end + 1..].trim().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_path_handles_params_and_null_sender() {
        assert_eq!(
            split_path("MAIL FROM:<a@b.test> SIZE=10 RET=HDRS", "MAIL FROM:"),
            Some(("a@b.test".into(), "SIZE=10 RET=HDRS".into()))
        );
        assert_eq!(
            split_path("mail from: <>", "MAIL FROM:"),
            Some((String::new(), String::new()))
        );
        assert_eq!(split_path("RCPT TO:x@y", "RCPT TO:"), None);
    }
}
