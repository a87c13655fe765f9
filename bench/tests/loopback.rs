//! End-to-end: the real `way2mail-bench` binary as sink and as load generator, on
//! 127.0.0.1 with ephemeral ports. Every child process runs under a deadline and is
//! killed if it overruns, so a hang fails the test instead of stalling the suite.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_way2mail-bench");
const DEADLINE: Duration = Duration::from_secs(20);

/// Spawns the binary with stdout lines delivered through a channel.
fn spawn(args: &[&str]) -> (Child, Receiver<String>) {
    let mut child = Command::new(BIN)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn way2mail-bench");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// Waits for `child` to exit; kills it and panics after the deadline.
fn wait(child: &mut Child) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("child did not finish within {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The last JSON line printed before the channel closed.
fn last_json(rx: &Receiver<String>) -> Value {
    let mut last = None;
    while let Ok(line) = rx.recv_timeout(DEADLINE) {
        last = Some(line);
    }
    let line = last.expect("no output");
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
}

struct Sink {
    child: Child,
    lines: Receiver<String>,
    addr: String,
}

impl Sink {
    fn start(extra: &[&str]) -> Self {
        let mut args = vec!["sink", "--listen", "127.0.0.1:0", "--json"];
        args.extend_from_slice(extra);
        let (child, lines) = spawn(&args);
        let first = lines.recv_timeout(DEADLINE).expect("sink address line");
        let addr = first
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
            .to_string();
        Self { child, lines, addr }
    }

    /// Waits for the sink to exit by itself and returns its JSON report.
    fn report(mut self) -> Value {
        let status = wait(&mut self.child);
        assert!(status.success(), "sink exit status {status}");
        last_json(&self.lines)
    }
}

impl Sink {
    /// Sends SIGTERM and returns the JSON report printed on the way out.
    fn terminate(self) -> Value {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        self.report()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the load generator; returns its exit code and JSON summary.
fn client(addr: &str, extra: &[&str]) -> (i32, Value) {
    let mut args = vec!["smtp", "--server", addr, "--json", "--timeout-secs", "5"];
    args.extend_from_slice(extra);
    let (mut child, lines) = spawn(&args);
    let status = wait(&mut child);
    (status.code().expect("exit code"), last_json(&lines))
}

fn n(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
}

/// 200 messages over 4 connections, checked on both sides.
fn round_trip(sink_extra: &[&str], client_extra: &[&str], recipients: u64) -> (Value, Value) {
    let mut sink_args = vec!["--exit-after-messages", "200"];
    sink_args.extend_from_slice(sink_extra);
    let sink = Sink::start(&sink_args);
    let rcpts = recipients.to_string();
    let mut args = vec![
        "--connections",
        "4",
        "--messages",
        "200",
        "--size",
        "2000",
        "--recipients",
        &rcpts,
    ];
    args.extend_from_slice(client_extra);
    let (code, summary) = client(&sink.addr, &args);
    let report = sink.report();
    assert_eq!(code, 0, "{summary}");
    assert_eq!(n(&summary, "ok"), 200, "{summary}");
    assert_eq!(n(&summary, "failed"), 0, "{summary}");
    assert_eq!(summary["errors"], serde_json::json!({}));
    assert!(summary["msgs_per_s"].as_f64().unwrap() > 0.0);
    assert!(summary["p50_ms"].as_f64().unwrap() <= summary["p99_ms"].as_f64().unwrap());
    assert!(summary["p99_ms"].as_f64().unwrap() <= summary["max_ms"].as_f64().unwrap());
    assert_eq!(n(&report, "messages"), 200, "{report}");
    assert_eq!(n(&report, "recipients"), 200 * recipients, "{report}");
    // The sink counts un-stuffed content, which is exactly the generated size.
    assert_eq!(n(&report, "bytes"), 200 * 2000, "{report}");
    assert_eq!(
        n(&report, "tempfails") + n(&report, "permfails") + n(&report, "drops"),
        0
    );
    (summary, report)
}

#[test]
fn keep_alive_without_pipelining() {
    let (_, report) = round_trip(&[], &[], 1);
    assert_eq!(
        n(&report, "connections"),
        4,
        "one connection per worker: {report}"
    );
    assert!(n(&report, "peak_connections") <= 4);
}

#[test]
fn pipelining_with_several_recipients() {
    let (_, report) = round_trip(&[], &["--pipelining"], 3);
    assert_eq!(n(&report, "connections"), 4, "{report}");
}

#[test]
fn new_connection_per_message() {
    let (_, report) = round_trip(&[], &["--new-connection-per-message"], 1);
    assert_eq!(n(&report, "connections"), 200, "{report}");
}

#[test]
fn starttls_with_pipelining() {
    round_trip(&["--starttls"], &["--starttls", "--pipelining"], 2);
}

#[test]
fn starttls_refused_when_not_offered() {
    let sink = Sink::start(&[]);
    let (code, summary) = client(
        &sink.addr,
        &["--connections", "2", "--messages", "10", "--starttls"],
    );
    assert_eq!(code, 1, "nothing succeeded: {summary}");
    assert_eq!(summary["errors"], serde_json::json!({"no-starttls": 10}));
}

#[test]
fn all_tempfail_is_counted_under_451() {
    let sink = Sink::start(&["--tempfail-rate", "1.0", "--exit-after-messages", "200"]);
    for extra in [&[][..], &["--pipelining"][..]] {
        let mut args = vec!["--connections", "4", "--messages", "100"];
        args.extend_from_slice(extra);
        let (code, summary) = client(&sink.addr, &args);
        assert_eq!(code, 1, "nothing succeeded: {summary}");
        assert_eq!(n(&summary, "ok"), 0);
        assert_eq!(n(&summary, "failed"), 100);
        assert_eq!(summary["errors"], serde_json::json!({"451": 100}));
    }
    let report = sink.report();
    assert_eq!(n(&report, "tempfails"), 200, "{report}");
    assert_eq!(n(&report, "messages"), 0, "{report}");
}

#[test]
fn mixed_outcomes_agree_on_both_sides() {
    let sink = Sink::start(&[
        "--tempfail-rate",
        "0.2",
        "--permfail-rate",
        "0.1",
        "--drop-rate",
        "0.1",
        "--seed",
        "7",
        "--exit-after-messages",
        "300",
    ]);
    let (code, summary) = client(
        &sink.addr,
        &["--connections", "4", "--messages", "300", "--pipelining"],
    );
    let report = sink.report();
    assert_eq!(code, 0, "{summary}");
    assert_eq!(n(&summary, "ok") + n(&summary, "failed"), 300);
    assert_eq!(
        n(&summary, "ok"),
        n(&report, "messages"),
        "{summary} {report}"
    );
    let errors = &summary["errors"];
    let count = |key: &str| errors[key].as_u64().unwrap_or(0);
    assert_eq!(count("451"), n(&report, "tempfails"), "{summary} {report}");
    assert_eq!(count("554"), n(&report, "permfails"), "{summary} {report}");
    assert_eq!(
        count("disconnect"),
        n(&report, "drops"),
        "{summary} {report}"
    );
    for rate_key in ["tempfails", "permfails", "drops"] {
        assert!(
            n(&report, rate_key) > 0,
            "{rate_key} never happened: {report}"
        );
    }
    // Each drop makes its worker reconnect, unless it was that worker's last message.
    let (conns, drops) = (n(&report, "connections"), n(&report, "drops"));
    assert!(drops <= conns && conns <= 4 + drops, "{report}");
}

#[test]
fn stalling_sink_times_out() {
    let sink = Sink::start(&["--delay-ms", "3000"]);
    let args = [
        "--connections",
        "2",
        "--messages",
        "2",
        "--timeout-secs",
        "1",
    ];
    let mut full = vec!["smtp", "--server", &sink.addr, "--json"];
    full.extend_from_slice(&args);
    let (mut child, lines) = spawn(&full);
    let start = Instant::now();
    let status = wait(&mut child);
    let summary = last_json(&lines);
    assert_eq!(status.code(), Some(1), "{summary}");
    assert_eq!(summary["errors"], serde_json::json!({"timeout": 2}));
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "timeout not applied"
    );
}

#[test]
fn refused_connections_are_counted() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let (code, summary) = client(&addr, &["--connections", "2", "--messages", "5"]);
    assert_eq!(code, 1);
    assert_eq!(summary["errors"], serde_json::json!({"connect": 5}));
}

#[test]
fn sink_text_report_on_sigterm() {
    let (mut child, lines) = spawn(&["sink", "--listen", "127.0.0.1:0"]);
    let first = lines.recv_timeout(DEADLINE).unwrap();
    assert!(first.starts_with("listening on 127.0.0.1:"), "{first}");
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(wait(&mut child).success());
    let rest: Vec<String> = lines.iter().collect();
    assert!(
        rest.iter()
            .any(|l| l.starts_with("messages:") && l.ends_with(" 0")),
        "{rest:?}"
    );
    assert!(
        rest.iter().any(|l| l.starts_with("peak connections:")),
        "{rest:?}"
    );
}

/// Final reply codes in `text` (lines with a space or nothing after the code).
fn final_codes(text: &str) -> Vec<u16> {
    text.split("\r\n")
        .filter(|l| l.len() == 3 || l.as_bytes().get(3) == Some(&b' '))
        .map(|l| l[..3].parse().unwrap())
        .collect()
}

#[test]
fn raw_pipelined_bdat_and_smuggling_attempt() {
    use std::io::{Read, Write};
    let sink = Sink::start(&[]);
    let mut tcp = std::net::TcpStream::connect(&sink.addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // One pipelined batch: a BDAT message in two chunks, then a DATA transaction.
    tcp.write_all(
        b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT 5\r\nhelloBDAT 3 LAST\r\nabc\
          MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nRCPT TO:<e@f>\r\nDATA\r\n",
    )
    .unwrap();
    // A bare-LF dot line must not end the data: the "MAIL" after it is content.
    let content = b"x\n.\nMAIL FROM:<evil@x>\r\n";
    std::thread::sleep(Duration::from_millis(50));
    tcp.write_all(content).unwrap();
    tcp.write_all(b".\r\nQUIT\r\n").unwrap();
    let mut text = String::new();
    tcp.read_to_string(&mut text).unwrap();
    assert_eq!(
        final_codes(&text),
        vec![220, 250, 250, 250, 250, 250, 250, 250, 250, 354, 250, 221],
        "{text}"
    );
    assert!(text.contains("250-PIPELINING\r\n250-SIZE"), "{text}");
    let report = sink.terminate();
    assert_eq!(n(&report, "messages"), 2, "{report}");
    assert_eq!(n(&report, "recipients"), 3, "{report}");
    assert_eq!(n(&report, "bytes"), 8 + content.len() as u64, "{report}");
    assert_eq!(n(&report, "connections"), 1, "{report}");
}

/// Reads one reply (all its lines) and returns its code.
fn reply_code(reader: &mut impl BufRead) -> u16 {
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        assert!(line.len() >= 4, "short reply line {line:?}");
        if line.as_bytes()[3] == b' ' {
            return line[..3].parse().unwrap();
        }
    }
}

#[test]
fn save_dir_keeps_each_accepted_message_as_sent() {
    use std::io::Write;
    let dir = std::env::temp_dir().join(format!("way2mail-sink-save-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let sink = Sink::start(&["--save-dir", dir.to_str().unwrap()]);
    let stream = std::net::TcpStream::connect(&sink.addr).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    let mut say = |text: &[u8], code: u16, reader: &mut BufReader<std::net::TcpStream>| {
        writer.write_all(text).unwrap();
        assert_eq!(
            reply_code(reader),
            code,
            "after {:?}",
            String::from_utf8_lossy(text)
        );
    };
    assert_eq!(reply_code(&mut reader), 220);
    say(b"EHLO client.test\r\n", 250, &mut reader);
    say(b"MAIL FROM:<a@x.test>\r\n", 250, &mut reader);
    say(b"RCPT TO:<b@y.test>\r\n", 250, &mut reader);
    say(b"DATA\r\n", 354, &mut reader);
    say(
        b"Subject: one\r\n\r\n..a dot\r\nend\r\n.\r\n",
        250,
        &mut reader,
    );
    say(b"MAIL FROM:<a@x.test>\r\n", 250, &mut reader);
    say(b"RCPT TO:<b@y.test>\r\n", 250, &mut reader);
    say(b"BDAT 10\r\nSubject: t", 250, &mut reader);
    say(b"BDAT 10 LAST\r\nwo\r\n\r\n.x\r\n", 250, &mut reader);
    say(b"QUIT\r\n", 221, &mut reader);
    let report = sink.terminate();
    assert_eq!(n(&report, "messages"), 2, "{report}");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let contents: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    assert_eq!(
        contents,
        [
            b"Subject: one\r\n\r\n.a dot\r\nend\r\n".to_vec(),
            b"Subject: two\r\n\r\n.x\r\n".to_vec()
        ]
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
