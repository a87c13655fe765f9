//! A tiny SMTP server on loopback standing in for the MTA that control hands its
//! letters to (incident notifications, disabled webhooks): accepting, refusing
//! with 554, or silent.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, Copy, PartialEq)]
pub enum Mode {
    /// 250 … queued, with a new queue id per message.
    Accept,
    /// 554 5.7.1 at RCPT TO.
    Refuse,
    /// Accepts the connection and says nothing.
    Silent,
}

/// A tiny SMTP server on 127.0.0.1 keeping every message it accepts.
pub struct FakeMta {
    pub addr: SocketAddr,
    messages: Arc<Mutex<Vec<(String, String)>>>,
    mode: Arc<Mutex<Mode>>,
}

impl FakeMta {
    pub fn start(mode: Mode) -> FakeMta {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let messages = Arc::new(Mutex::new(Vec::new()));
        let mode = Arc::new(Mutex::new(mode));
        let (m, md) = (messages.clone(), mode.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (m, md) = (m.clone(), md.clone());
                std::thread::spawn(move || serve(stream, &m, *md.lock().expect("mode")));
            }
        });
        FakeMta {
            addr,
            messages,
            mode,
        }
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.mode.lock().expect("mode") = mode;
    }

    /// (recipient, message) of every accepted message.
    pub fn messages(&self) -> Vec<(String, String)> {
        self.messages.lock().expect("messages").clone()
    }
}

fn serve(stream: TcpStream, messages: &Mutex<Vec<(String, String)>>, mode: Mode) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    if mode == Mode::Silent {
        std::thread::sleep(Duration::from_secs(5));
        return;
    }
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut out = stream;
    let _ = out.write_all(b"220 fake.test ESMTP\r\n");
    let mut rcpt = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let upper = line.to_ascii_uppercase();
        let reply: String = if upper.starts_with("EHLO") {
            "250-fake.test\r\n250 PIPELINING\r\n".into()
        } else if upper.starts_with("MAIL FROM:") {
            "250 2.1.0 ok\r\n".into()
        } else if upper.starts_with("RCPT TO:") {
            if mode == Mode::Refuse {
                "554 5.7.1 relay access denied\r\n".into()
            } else {
                rcpt = line[8..].trim().trim_matches(['<', '>']).to_string();
                "250 2.1.5 ok\r\n".into()
            }
        } else if upper.starts_with("DATA") {
            let _ = out.write_all(b"354 go ahead\r\n");
            let mut data = String::new();
            loop {
                let mut l = String::new();
                if reader.read_line(&mut l).unwrap_or(0) == 0 {
                    return;
                }
                if l == ".\r\n" {
                    break;
                }
                data.push_str(l.strip_prefix('.').unwrap_or(&l));
            }
            let mut all = messages.lock().expect("messages");
            all.push((rcpt.clone(), data));
            format!("250 2.0.0 QUEUE{:021} queued\r\n", all.len())
        } else if upper.starts_with("QUIT") {
            let _ = out.write_all(b"221 2.0.0 bye\r\n");
            return;
        } else {
            "500 5.5.1 what\r\n".into()
        };
        if out.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}
