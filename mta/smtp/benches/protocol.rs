//! Throughput of the sans-IO protocol: command-line parsing (EHLO / MAIL / RCPT) and
//! DATA reception (dot-unstuffing, end detection, line checks, line-end
//! normalisation, Received header) for a 5 KB and a 1 MB message, the 1 MB one also
//! with bare LF line ends (each stored as CRLF), and BDAT reception of the same.
//! Short runs (sample size 10): these are trend numbers.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use way2mail_smtp::relay::RelayPolicy;
use way2mail_smtp::server::command::parse;
use way2mail_smtp::server::{Event, Limits, Protocol, Role, SessionParams};

fn params() -> SessionParams {
    SessionParams {
        hostname: "mx.example.org".into(),
        role: Role::Mx,
        client_ip: "192.0.2.10".parse().expect("valid ip"),
        tls_active: false,
        tls_available: true,
        limits: Limits {
            max_message_size: 4 * 1024 * 1024,
            ..Limits::default()
        },
        relay: Arc::new(RelayPolicy::new(&["example.org".into()], &[]).expect("valid policy")),
        tenants: None,
        intake: None,
        blocked: None,
    }
}

fn commands(c: &mut Criterion) {
    let lines: [&[u8]; 3] = [
        b"EHLO client.example.net\r\n",
        b"MAIL FROM:<sender.name@client.example.net> SIZE=12345 BODY=8BITMIME RET=HDRS\r\n",
        b"RCPT TO:<recipient@example.org> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;recipient@example.org\r\n",
    ];
    let total: usize = lines.iter().map(|l| l.len()).sum();
    let mut g = c.benchmark_group("command_parse");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(total as u64));
    g.bench_function("ehlo_mail_rcpt", |b| {
        b.iter(|| {
            for l in lines {
                let _ = black_box(parse(black_box(l)));
            }
        })
    });
    g.finish();
}

/// A message of about `size` octets: 76-column lines ending in `eol`, every tenth
/// dot-stuffed.
fn message(size: usize, eol: &[u8]) -> Vec<u8> {
    let mut m = b"Subject: bench\r\nFrom: a@client.example.net\r\n\r\n".to_vec();
    let mut n = 0;
    while m.len() < size {
        if n % 10 == 0 {
            m.push(b'.');
        }
        m.extend_from_slice(&[b'x'; 74]);
        m.extend_from_slice(eol);
        n += 1;
    }
    m
}

fn receive(input: &[u8]) -> usize {
    let mut p = Protocol::new(params());
    p.feed(input);
    loop {
        match p.next_event() {
            Event::Message { body, .. } => return body.len(),
            Event::NeedInput | Event::Close => panic!("the message did not complete"),
            _ => {}
        }
    }
}

const ENVELOPE: &[u8] = b"EHLO c.example\r\nMAIL FROM:<a@c.example>\r\nRCPT TO:<u@example.org>\r\n";

fn data(c: &mut Criterion) {
    let mut g = c.benchmark_group("data_receive");
    g.sample_size(10);
    let cases: [(&str, usize, &[u8]); 3] = [
        ("5KB", 5 * 1024, b"\r\n"),
        ("1MB", 1024 * 1024, b"\r\n"),
        ("1MB_bare_lf", 1024 * 1024, b"\n"),
    ];
    for (name, size, eol) in cases {
        let mut input = ENVELOPE.to_vec();
        input.extend_from_slice(b"DATA\r\n");
        input.extend_from_slice(&message(size, eol));
        // After a bare LF only a full `<CRLF>.<CRLF>` ends the data.
        let end: &[u8] = if eol == b"\r\n" {
            b".\r\n"
        } else {
            b"\r\n.\r\n"
        };
        input.extend_from_slice(end);
        g.throughput(Throughput::Bytes(input.len() as u64));
        g.bench_function(name, |b| b.iter(|| black_box(receive(black_box(&input)))));
    }
    g.finish();
}

fn bdat(c: &mut Criterion) {
    let mut g = c.benchmark_group("bdat_receive");
    g.sample_size(10);
    for (name, eol) in [("1MB", &b"\r\n"[..]), ("1MB_bare_lf", b"\n")] {
        let content = message(1024 * 1024, eol);
        let mut input = ENVELOPE.to_vec();
        input.extend_from_slice(format!("BDAT {} LAST\r\n", content.len()).as_bytes());
        input.extend_from_slice(&content);
        g.throughput(Throughput::Bytes(input.len() as u64));
        g.bench_function(name, |b| b.iter(|| black_box(receive(black_box(&input)))));
    }
    g.finish();
}

criterion_group!(benches, commands, data, bdat);
criterion_main!(benches);
