//! A stub DNS server for the black-box tests: it answers real UDP and TCP queries on
//! 127.0.0.1 from a table of records, so the daemon's resolver can be pointed at it
//! with `[dns] nameservers`.
//!
//! ```text
//! StubDns::start(records)  binds UDP and TCP on one ephemeral port, one thread each
//!   query  → parse (RFC 1035 header + question; compressed names followed, bounded)
//!          → count (name, type)
//!          → table: no_answer → silence; servfail → SERVFAIL; unknown or nxdomain
//!            → NXDOMAIN + SOA; records of the type (CNAMEs followed) → answer;
//!            none of the type → NOERROR/NODATA + SOA
//! drop     → both threads stop
//! ```
//!
//! Negative answers carry an SOA in the authority section, whose TTL and MINIMUM are the
//! name's negative TTL (the `.ttl()` of its `nxdomain` entry, else of its first record,
//! else 300 s): resolvers only cache a negative answer that has one (RFC 2308).
//! Anything hostile is dropped or answered FORMERR; nothing here panics on input.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;

const DEFAULT_TTL: u32 = 300;
const POLL: Duration = Duration::from_millis(50);

/// DNS record types the stub knows by name; anything else is counted by number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordType {
    A,
    Aaaa,
    Mx,
    Txt,
    Cname,
    Soa,
    Other(u16),
}

impl RecordType {
    pub fn code(self) -> u16 {
        match self {
            RecordType::A => 1,
            RecordType::Cname => 5,
            RecordType::Soa => 6,
            RecordType::Mx => 15,
            RecordType::Txt => 16,
            RecordType::Aaaa => 28,
            RecordType::Other(code) => code,
        }
    }

    pub fn from_code(code: u16) -> RecordType {
        match code {
            1 => RecordType::A,
            5 => RecordType::Cname,
            6 => RecordType::Soa,
            15 => RecordType::Mx,
            16 => RecordType::Txt,
            28 => RecordType::Aaaa,
            other => RecordType::Other(other),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Data {
    Mx(u16, String),
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Txt(String),
    Cname(String),
}

impl Data {
    fn record_type(&self) -> RecordType {
        match self {
            Data::Mx(..) => RecordType::Mx,
            Data::A(_) => RecordType::A,
            Data::Aaaa(_) => RecordType::Aaaa,
            Data::Txt(_) => RecordType::Txt,
            Data::Cname(_) => RecordType::Cname,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Data(Data),
    NxDomain,
    ServFail,
    NoAnswer,
}

/// One table entry: a record, or how the stub behaves for a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    name: String,
    ttl: u32,
    kind: Kind,
}

impl Record {
    fn new(name: &str, kind: Kind) -> Record {
        Record {
            name: normalize(name),
            ttl: DEFAULT_TTL,
            kind,
        }
    }

    /// `name MX preference exchange`; an `exchange` of `"."` is a null MX.
    pub fn mx(name: &str, preference: u16, exchange: &str) -> Record {
        Record::new(name, Kind::Data(Data::Mx(preference, exchange.to_string())))
    }

    pub fn a(name: &str, addr: Ipv4Addr) -> Record {
        Record::new(name, Kind::Data(Data::A(addr)))
    }

    pub fn aaaa(name: &str, addr: Ipv6Addr) -> Record {
        Record::new(name, Kind::Data(Data::Aaaa(addr)))
    }

    pub fn txt(name: &str, text: &str) -> Record {
        Record::new(name, Kind::Data(Data::Txt(text.to_string())))
    }

    pub fn cname(name: &str, target: &str) -> Record {
        Record::new(name, Kind::Data(Data::Cname(target.to_string())))
    }

    /// NXDOMAIN for every type; `.ttl()` sets the negative TTL. Unknown names get
    /// NXDOMAIN anyway; this entry exists to choose the TTL.
    pub fn nxdomain(name: &str) -> Record {
        Record::new(name, Kind::NxDomain)
    }

    /// SERVFAIL for every type.
    pub fn servfail(name: &str) -> Record {
        Record::new(name, Kind::ServFail)
    }

    /// The query is received (and counted) but never answered.
    pub fn no_answer(name: &str) -> Record {
        Record::new(name, Kind::NoAnswer)
    }

    /// Sets the TTL in seconds (default 300).
    pub fn ttl(mut self, seconds: u32) -> Record {
        self.ttl = seconds;
        self
    }
}

/// Lowercase, no trailing dot: how names are compared and counted.
fn normalize(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

struct State {
    records: Vec<Record>,
    queries: Mutex<HashMap<(String, RecordType), usize>>,
    stop: AtomicBool,
}

/// A running stub server; stops when dropped.
pub struct StubDns {
    addr: SocketAddr,
    state: Arc<State>,
    threads: Vec<JoinHandle<()>>,
}

impl StubDns {
    /// mail-auth's verdict on every DKIM-Signature of `message`, the keys looked up
    /// here: an independent verifier for what the MTA signs.
    pub fn dkim_verdicts(&self, message: &[u8]) -> anyhow::Result<Vec<mail_auth::DkimResult>> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async {
            let resolver = way2mail_daemon::dns::resolver(&way2mail_daemon::dns::DnsSettings {
                nameservers: vec![self.addr()],
                ..way2mail_daemon::dns::DnsSettings::default()
            })?;
            let parsed = mail_auth::AuthenticatedMessage::parse(message)
                .context("mail-auth cannot parse")?;
            Ok(mail_auth::MessageAuthenticator(resolver)
                .verify_dkim(&parsed)
                .await
                .into_iter()
                .map(|o| o.result().clone())
                .collect())
        })
    }

    /// Binds UDP and TCP on the same ephemeral loopback port and starts answering.
    pub fn start(records: Vec<Record>) -> anyhow::Result<StubDns> {
        let (udp, tcp) = bind_pair()?;
        let addr = udp.local_addr()?;
        udp.set_read_timeout(Some(POLL))?;
        tcp.set_nonblocking(true)?;
        let state = Arc::new(State {
            records,
            queries: Mutex::new(HashMap::new()),
            stop: AtomicBool::new(false),
        });
        let udp_state = Arc::clone(&state);
        let tcp_state = Arc::clone(&state);
        let threads = vec![
            std::thread::spawn(move || serve_udp(&udp, &udp_state)),
            std::thread::spawn(move || serve_tcp(&tcp, &tcp_state)),
        ];
        Ok(StubDns {
            addr,
            state,
            threads,
        })
    }

    /// Where the server listens (UDP and TCP).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many queries arrived for `name` (any case, trailing dot or not) and type.
    pub fn queries(&self, name: &str, rtype: RecordType) -> usize {
        let counts = self.state.queries.lock().unwrap_or_else(|e| e.into_inner());
        counts.get(&(normalize(name), rtype)).copied().unwrap_or(0)
    }

    /// How many queries arrived in all.
    pub fn total_queries(&self) -> usize {
        let counts = self.state.queries.lock().unwrap_or_else(|e| e.into_inner());
        counts.values().sum()
    }
}

impl Drop for StubDns {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// A UDP socket and a TCP listener on the same port (another process may hold the TCP
/// side of a free UDP port, so a few ports are tried).
fn bind_pair() -> anyhow::Result<(UdpSocket, TcpListener)> {
    let mut last = None;
    for _ in 0..20 {
        let udp = UdpSocket::bind("127.0.0.1:0").context("binding the stub DNS UDP socket")?;
        match TcpListener::bind(udp.local_addr()?) {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) => last = Some(e),
        }
    }
    Err(anyhow::anyhow!(
        "no port free for both UDP and TCP: {last:?}"
    ))
}

fn serve_udp(socket: &UdpSocket, state: &State) {
    let mut buf = [0u8; 4096];
    while !state.stop.load(Ordering::SeqCst) {
        let (len, peer) = match socket.recv_from(&mut buf) {
            Ok(got) => got,
            Err(_) => continue, // read timeout: look at the stop flag again
        };
        if let Some(mut reply) = handle(state, &buf[..len]) {
            if reply.len() > 512 {
                reply = truncated(&reply);
            }
            let _ = socket.send_to(&reply, peer);
        }
    }
}

fn serve_tcp(listener: &TcpListener, state: &Arc<State>) {
    while !state.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                let state = Arc::clone(state);
                // Detached: it sees the stop flag within one poll interval.
                std::thread::spawn(move || serve_tcp_connection(stream, &state));
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(POLL),
            Err(_) => std::thread::sleep(POLL),
        }
    }
}

/// RFC 1035 §4.2.2: each message is preceded by its two-byte length.
fn serve_tcp_connection(mut stream: TcpStream, state: &State) {
    if stream.set_nonblocking(false).is_err() || stream.set_read_timeout(Some(POLL)).is_err() {
        return;
    }
    let mut pending = Vec::new();
    let mut chunk = [0u8; 4096];
    while !state.stop.load(Ordering::SeqCst) {
        match stream.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => pending.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(_) => return,
        }
        while pending.len() >= 2 {
            let len = usize::from(u16::from_be_bytes([pending[0], pending[1]]));
            if pending.len() < 2 + len {
                break;
            }
            let message: Vec<u8> = pending.drain(..2 + len).skip(2).collect();
            if let Some(reply) = handle(state, &message) {
                let Ok(len) = u16::try_from(reply.len()) else {
                    continue;
                };
                let framed = [&len.to_be_bytes()[..], &reply].concat();
                if stream.write_all(&framed).is_err() {
                    return;
                }
            }
        }
    }
}

/// One parsed question.
struct Query {
    id: u16,
    flags: u16,
    labels: Vec<Vec<u8>>,
    qtype: u16,
    qclass: u16,
}

/// Query bytes in, reply bytes out (or `None`: say nothing).
fn handle(state: &State, message: &[u8]) -> Option<Vec<u8>> {
    let query = match parse_query(message) {
        Ok(query) => query,
        Err(Some((id, flags))) => return Some(header_only(id, flags, RCODE_FORMERR)),
        Err(None) => return None,
    };
    let name = dotted(&query.labels);
    {
        let mut counts = state.queries.lock().unwrap_or_else(|e| e.into_inner());
        *counts
            .entry((name.clone(), RecordType::from_code(query.qtype)))
            .or_insert(0) += 1;
    }
    let opcode = (query.flags >> 11) & 0xF;
    if opcode != 0 {
        return Some(header_only(query.id, query.flags, RCODE_NOTIMP));
    }
    let entries: Vec<&Record> = state.records.iter().filter(|r| r.name == name).collect();
    if entries.iter().any(|r| r.kind == Kind::NoAnswer) {
        return None;
    }
    if entries.iter().any(|r| r.kind == Kind::ServFail) {
        return Some(reply(&query, RCODE_SERVFAIL, &[], None));
    }
    let negative_ttl = entries
        .iter()
        .find(|r| r.kind == Kind::NxDomain)
        .or(entries.first())
        .map_or(DEFAULT_TTL, |r| r.ttl);
    if entries.is_empty() || entries.iter().any(|r| r.kind == Kind::NxDomain) {
        return Some(reply(&query, RCODE_NXDOMAIN, &[], Some(negative_ttl)));
    }
    let answers = lookup(state, &name, query.qtype);
    let soa = answers.is_empty().then_some(negative_ttl);
    Some(reply(&query, RCODE_NOERROR, &answers, soa))
}

/// The records of `qtype` at `name`, following CNAMEs inside the table (at most 8), the
/// way a recursive resolver returns the whole chain.
fn lookup<'a>(state: &'a State, name: &str, qtype: u16) -> Vec<&'a Record> {
    let mut answers = Vec::new();
    let mut current = name.to_string();
    for _ in 0..8 {
        let mut cname = None;
        for record in state.records.iter().filter(|r| r.name == current) {
            if let Kind::Data(data) = &record.kind {
                if data.record_type().code() == qtype {
                    answers.push(record);
                } else if let Data::Cname(target) = data {
                    cname = Some((record, normalize(target)));
                }
            }
        }
        match cname {
            Some((record, target)) if answers.is_empty() => {
                answers.push(record);
                current = target;
            }
            _ => break,
        }
    }
    answers
}

const RCODE_NOERROR: u16 = 0;
const RCODE_FORMERR: u16 = 1;
const RCODE_SERVFAIL: u16 = 2;
const RCODE_NXDOMAIN: u16 = 3;
const RCODE_NOTIMP: u16 = 4;
const FLAG_QR: u16 = 0x8000;
const FLAG_AA: u16 = 0x0400;
const FLAG_TC: u16 = 0x0200;
const FLAG_RD: u16 = 0x0100;
const FLAG_RA: u16 = 0x0080;
const CLASS_IN: u16 = 1;

/// Parses the header and the first question. `Err(Some(..))`: a header was readable,
/// answer FORMERR; `Err(None)`: not worth an answer (too short, or itself a response).
fn parse_query(message: &[u8]) -> Result<Query, Option<(u16, u16)>> {
    let word = |at: usize| -> Option<u16> {
        Some(u16::from_be_bytes([
            *message.get(at)?,
            *message.get(at + 1)?,
        ]))
    };
    let (Some(id), Some(flags), Some(qdcount)) = (word(0), word(2), word(4)) else {
        return Err(None);
    };
    if flags & FLAG_QR != 0 {
        return Err(None);
    }
    if qdcount == 0 {
        return Err(Some((id, flags)));
    }
    let (labels, end) = read_name(message, 12).ok_or(Some((id, flags)))?;
    let (Some(qtype), Some(qclass)) = (word(end), word(end + 2)) else {
        return Err(Some((id, flags)));
    };
    Ok(Query {
        id,
        flags,
        labels,
        qtype,
        qclass,
    })
}

/// Reads a possibly compressed name at `start`; returns its labels and the offset just
/// after it. Pointers may only go backwards and at most 32 are followed, so a loop or a
/// pointer past the end yields `None`.
fn read_name(message: &[u8], start: usize) -> Option<(Vec<Vec<u8>>, usize)> {
    let mut labels = Vec::new();
    let mut at = start;
    let mut end = None;
    let mut jumps = 0;
    let mut total = 0usize;
    loop {
        let len = *message.get(at)?;
        match len {
            0 => return Some((labels, end.unwrap_or(at + 1))),
            0xC0..=0xFF => {
                let target = usize::from(u16::from_be_bytes([len, *message.get(at + 1)?]) & 0x3FFF);
                jumps += 1;
                if jumps > 32 || target >= at {
                    return None;
                }
                end.get_or_insert(at + 2);
                at = target;
            }
            1..=63 => {
                let label = message.get(at + 1..at + 1 + usize::from(len))?;
                total += label.len() + 1;
                if total > 255 {
                    return None;
                }
                labels.push(label.to_vec());
                at += 1 + usize::from(len);
            }
            _ => return None, // 0x40 and 0x80: extended label types, not supported
        }
    }
}

fn dotted(labels: &[Vec<u8>]) -> String {
    let text: Vec<String> = labels
        .iter()
        .map(|l| String::from_utf8_lossy(l).to_ascii_lowercase())
        .collect();
    text.join(".")
}

fn header_only(id: u16, flags: u16, rcode: u16) -> Vec<u8> {
    let flags = FLAG_QR | (flags & FLAG_RD) | FLAG_RA | rcode;
    let mut out = Vec::with_capacity(12);
    for word in [id, flags, 0, 0, 0, 0] {
        out.extend_from_slice(&word.to_be_bytes());
    }
    out
}

/// A full reply: the question echoed as it came (same case), the answers, and an SOA in
/// the authority section for negative answers.
fn reply(query: &Query, rcode: u16, answers: &[&Record], soa_ttl: Option<u32>) -> Vec<u8> {
    let flags = FLAG_QR | FLAG_AA | (query.flags & FLAG_RD) | FLAG_RA | rcode;
    let ancount = u16::try_from(answers.len()).unwrap_or(u16::MAX);
    let nscount = u16::from(soa_ttl.is_some());
    let mut out = Vec::with_capacity(512);
    for word in [query.id, flags, 1, ancount, nscount, 0] {
        out.extend_from_slice(&word.to_be_bytes());
    }
    for label in &query.labels {
        out.push(label.len() as u8); // read_name admits labels of 1..=63 bytes only
        out.extend_from_slice(label);
    }
    out.push(0);
    out.extend_from_slice(&query.qtype.to_be_bytes());
    out.extend_from_slice(&query.qclass.to_be_bytes());
    for record in answers.iter().take(usize::from(ancount)) {
        if let Kind::Data(data) = &record.kind {
            push_rr(
                &mut out,
                &record.name,
                data.record_type(),
                record.ttl,
                &rdata(data),
            );
        }
    }
    if let Some(ttl) = soa_ttl {
        let zone = dotted(&query.labels);
        let mut soa = Vec::new();
        push_name(&mut soa, "ns.stub.test");
        push_name(&mut soa, "hostmaster.stub.test");
        for value in [1, 3600, 600, 86_400, ttl] {
            soa.extend_from_slice(&u32::to_be_bytes(value));
        }
        push_rr(&mut out, &zone, RecordType::Soa, ttl, &soa);
    }
    out
}

/// A UDP answer that does not fit in 512 bytes: header and question with TC set, so
/// the client asks again over TCP.
fn truncated(full: &[u8]) -> Vec<u8> {
    let question_end = read_name(full, 12).map_or(full.len(), |(_, end)| end + 4);
    let mut out = full[..question_end.min(full.len())].to_vec();
    out[2] |= (FLAG_TC >> 8) as u8;
    for byte in &mut out[6..12] {
        *byte = 0;
    }
    out
}

fn rdata(data: &Data) -> Vec<u8> {
    let mut out = Vec::new();
    match data {
        Data::A(addr) => out.extend_from_slice(&addr.octets()),
        Data::Aaaa(addr) => out.extend_from_slice(&addr.octets()),
        Data::Mx(preference, exchange) => {
            out.extend_from_slice(&preference.to_be_bytes());
            push_name(&mut out, exchange);
        }
        Data::Cname(target) => push_name(&mut out, target),
        Data::Txt(text) => {
            // Character-strings of at most 255 bytes each (RFC 1035 §3.3.14).
            for chunk in text.as_bytes().chunks(255) {
                out.push(chunk.len() as u8);
                out.extend_from_slice(chunk);
            }
            if text.is_empty() {
                out.push(0);
            }
        }
    }
    out
}

fn push_rr(out: &mut Vec<u8>, name: &str, rtype: RecordType, ttl: u32, rdata: &[u8]) {
    push_name(out, name);
    out.extend_from_slice(&rtype.code().to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    out.extend_from_slice(&ttl.to_be_bytes());
    let len = u16::try_from(rdata.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&rdata[..usize::from(len)]);
}

/// Writes a name uncompressed; `"."` and `""` are the root. Labels longer than 63 bytes
/// are cut (table data comes from tests, but must still make a valid message).
fn push_name(out: &mut Vec<u8>, name: &str) {
    for label in name.split('.').filter(|l| !l.is_empty()) {
        let bytes = &label.as_bytes()[..label.len().min(63)];
        out.push(bytes.len() as u8);
        out.extend_from_slice(bytes);
    }
    out.push(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut out = Vec::new();
        for word in [0x1234, FLAG_RD, 1, 0, 0, 0] {
            out.extend_from_slice(&u16::to_be_bytes(word));
        }
        push_name(&mut out, name);
        out.extend_from_slice(&qtype.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out
    }

    #[test]
    fn reads_compressed_names_and_rejects_loops() {
        let mut message = query("mail.example.test", 15);
        // A second name at the end: "x" + pointer to offset 12 (the question name).
        let second = message.len();
        message.extend_from_slice(&[1, b'x', 0xC0, 12]);
        let (labels, end) = read_name(&message, second).unwrap();
        assert_eq!(dotted(&labels), "x.mail.example.test");
        assert_eq!(end, message.len());
        // A pointer to itself, a forward pointer, a truncated label.
        assert!(read_name(&[0, 0, 0xC0, 2], 2).is_none());
        assert!(read_name(&[0xC0, 4, 0, 0, 0], 0).is_none());
        assert!(read_name(&[5, b'a', b'b'], 0).is_none());
    }

    #[test]
    fn hostile_bytes_never_panic() {
        let state = State {
            records: vec![Record::a("a.test", Ipv4Addr::LOCALHOST)],
            queries: Mutex::new(HashMap::new()),
            stop: AtomicBool::new(false),
        };
        let good = query("a.test", 1);
        for cut in 0..good.len() {
            let _ = handle(&state, &good[..cut]);
        }
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        for len in 0..600 {
            let noise: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect();
            let _ = handle(&state, &noise);
            let mut prefixed = good[..12].to_vec();
            prefixed.extend_from_slice(&noise);
            let _ = handle(&state, &prefixed);
        }
        let answer = handle(&state, &good).unwrap();
        assert_eq!(answer[3] & 0x0F, RCODE_NOERROR as u8);
        assert_eq!(u16::from_be_bytes([answer[6], answer[7]]), 1);
        assert_eq!(truncated(&answer).len(), good.len());
    }
}
