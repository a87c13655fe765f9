//! `way2mail domain dns` and `way2mail domain verify` end to end: the real control
//! daemon, the real CLI, and DNS answered over UDP and TCP by a stub the daemon reaches
//! through its `[dns] nameservers`. What `domain dns` says to publish must parse with
//! mail-auth's parsers and, once served, verify; a missing DKIM record or an SPF record
//! without our address must not, with exit status 1 and the record named. Every verify
//! is in the audit log.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{ensure, Context};
use mail_auth::common::parse::TxtRecordParser;
use mail_auth::common::verify::DomainKey;
use mail_auth::dmarc::{Dmarc, Policy};
use mail_auth::spf::{Mechanism, Spf};
use serde_json::Value;
use way2mail_tests::control::{json_str, CliOutput, Control, Operator};
use way2mail_tests::{Record, RecordType, StubDns};

const DOMAIN: &str = "shop.example";
const SENDING_IP: &str = "192.0.2.10";
const POLL: Duration = Duration::from_millis(50);

/// A DNS relay on one loopback port (UDP and TCP) that forwards every query to the
/// stub DNS of the moment, so the daemon, configured once, sees zones the test swaps.
struct Relay {
    addr: SocketAddr,
    upstream: Arc<Mutex<Option<SocketAddr>>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Relay {
    fn start() -> anyhow::Result<Relay> {
        let (udp, tcp) = (0..20)
            .find_map(|_| {
                let udp = UdpSocket::bind("127.0.0.1:0").ok()?;
                let tcp = TcpListener::bind(udp.local_addr().ok()?).ok()?;
                Some((udp, tcp))
            })
            .context("no port free for both UDP and TCP")?;
        let addr = udp.local_addr()?;
        udp.set_read_timeout(Some(POLL))?;
        tcp.set_nonblocking(true)?;
        let upstream = Arc::new(Mutex::new(None));
        let stop = Arc::new(AtomicBool::new(false));
        let threads = vec![
            {
                let (upstream, stop) = (Arc::clone(&upstream), Arc::clone(&stop));
                std::thread::spawn(move || relay_udp(&udp, &upstream, &stop))
            },
            {
                let (upstream, stop) = (Arc::clone(&upstream), Arc::clone(&stop));
                std::thread::spawn(move || relay_tcp(&tcp, &upstream, &stop))
            },
        ];
        Ok(Relay {
            addr,
            upstream,
            stop,
            threads,
        })
    }

    /// From now on, queries go to `stub`.
    fn point_at(&self, stub: &StubDns) {
        *self.upstream.lock().unwrap_or_else(|e| e.into_inner()) = Some(stub.addr());
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

fn current(upstream: &Mutex<Option<SocketAddr>>) -> Option<SocketAddr> {
    *upstream.lock().unwrap_or_else(|e| e.into_inner())
}

fn relay_udp(socket: &UdpSocket, upstream: &Mutex<Option<SocketAddr>>, stop: &AtomicBool) {
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::SeqCst) {
        let Ok((len, client)) = socket.recv_from(&mut buf) else {
            continue;
        };
        let Some(target) = current(upstream) else {
            continue;
        };
        let Ok(out) = UdpSocket::bind("127.0.0.1:0") else {
            continue;
        };
        let _ = out.set_read_timeout(Some(Duration::from_secs(2)));
        if out.send_to(&buf[..len], target).is_err() {
            continue;
        }
        let mut reply = [0u8; 4096];
        if let Ok((n, _)) = out.recv_from(&mut reply) {
            let _ = socket.send_to(&reply[..n], client);
        }
    }
}

fn relay_tcp(listener: &TcpListener, upstream: &Mutex<Option<SocketAddr>>, stop: &Arc<AtomicBool>) {
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((client, _)) => {
                let Some(target) = current(upstream) else {
                    continue;
                };
                let stop = Arc::clone(stop);
                std::thread::spawn(move || {
                    let _ = pipe_connection(client, target, &stop);
                });
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(POLL),
            Err(_) => std::thread::sleep(POLL),
        }
    }
}

/// Copies bytes both ways until either side closes (or the relay stops).
fn pipe_connection(
    client: TcpStream,
    target: SocketAddr,
    stop: &AtomicBool,
) -> std::io::Result<()> {
    let server = TcpStream::connect_timeout(&target, Duration::from_secs(2))?;
    client.set_nonblocking(false)?;
    for stream in [&client, &server] {
        stream.set_read_timeout(Some(POLL))?;
    }
    let pairs = [(client.try_clone()?, server.try_clone()?), (server, client)];
    std::thread::scope(|scope| {
        for (mut from, mut to) in pairs {
            scope.spawn(move || {
                let mut buf = [0u8; 4096];
                while !stop.load(Ordering::SeqCst) {
                    match from.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => {
                            if to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        Err(e)
                            if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                        Err(_) => break,
                    }
                }
                let _ = to.shutdown(Shutdown::Write);
            });
        }
    });
    Ok(())
}

/// One record of `domain dns --json`.
#[derive(Debug, Clone)]
struct Published {
    purpose: String,
    name: String,
    value: String,
}

fn published(out: &CliOutput) -> anyhow::Result<Vec<Published>> {
    let json = out.json()?;
    let records = json
        .get("records")
        .and_then(Value::as_array)
        .with_context(|| format!("no records in {json}"))?;
    records
        .iter()
        .map(|r| {
            ensure!(json_str(r, "rtype")? == "TXT", "{r}");
            Ok(Published {
                purpose: json_str(r, "purpose")?,
                name: json_str(r, "name")?,
                value: json_str(r, "value")?,
            })
        })
        .collect()
}

fn zone(records: &[Published], skip: Option<&str>, replace: Option<(&str, &str)>) -> Vec<Record> {
    records
        .iter()
        .filter(|r| Some(r.name.as_str()) != skip)
        .map(|r| match replace {
            Some((name, value)) if r.name == name => Record::txt(&r.name, value),
            _ => Record::txt(&r.name, &r.value),
        })
        .collect()
}

fn verify(control: &Control, admin: &Operator) -> anyhow::Result<CliOutput> {
    control.run_as(admin, &["domain", "verify", DOMAIN])
}

fn shown(control: &Control, admin: &Operator) -> anyhow::Result<Value> {
    control
        .run_as(admin, &["--json", "domain", "show", DOMAIN])?
        .ok()?
        .json()
}

/// The domain's row in `domain list`.
fn listed(control: &Control, admin: &Operator) -> anyhow::Result<String> {
    let out = control.run_as(admin, &["domain", "list"])?.ok()?;
    out.stdout
        .lines()
        .find(|l| l.starts_with(DOMAIN))
        .map(str::to_string)
        .with_context(|| format!("{DOMAIN} not listed:\n{}", out.stdout))
}

#[test]
fn published_records_verify_and_broken_ones_do_not() -> anyhow::Result<()> {
    let relay = Relay::start()?;
    let control = Control::start_with(&format!(
        // Dotted keys: the harness appends the top-level keys after this text.
        "dns.nameservers = [\"{}\"]\ndns.timeout_ms = 1000\ndns.attempts = 1\n\
         sending.ips = [\"{SENDING_IP}\"]\n",
        relay.addr
    ))?;
    let admin = control.bootstrap_admin("admin")?;
    control
        .run_as(
            &admin,
            &[
                "tenant",
                "add",
                "shop",
                "--business-name",
                "Shop Ltd",
                "--contact",
                "ops@shop.example",
            ],
        )?
        .ok()?;
    control
        .run_as(&admin, &["domain", "add", "shop", DOMAIN])?
        .ok()?;
    ensure!(
        shown(&control, &admin)?.get("verified_at") == Some(&Value::Null),
        "a new domain is not verified"
    );

    // What to publish: every record parses as receivers parse it.
    let records = published(
        &control
            .run_as(&admin, &["--json", "domain", "dns", DOMAIN])?
            .ok()?,
    )?;
    let purposes: Vec<&str> = records.iter().map(|r| r.purpose.as_str()).collect();
    ensure!(purposes == ["spf", "dkim", "dkim", "dmarc"], "{records:?}");
    for r in &records {
        match r.purpose.as_str() {
            "spf" => {
                ensure!(r.name == DOMAIN, "{r:?}");
                let spf = Spf::parse(r.value.as_bytes())
                    .map_err(|e| anyhow::anyhow!("SPF {:?}: {e}", r.value))?;
                ensure!(
                    spf.directives
                        .iter()
                        .any(|d| matches!(&d.mechanism, Mechanism::Ip4 { addr, .. } if addr.to_string() == SENDING_IP)),
                    "{r:?}"
                );
            }
            "dkim" => {
                ensure!(r.name.ends_with("._domainkey.shop.example"), "{r:?}");
                DomainKey::parse(r.value.as_bytes())
                    .map_err(|e| anyhow::anyhow!("DKIM {:?}: {e}", r.value))?;
            }
            "dmarc" => {
                ensure!(r.name == "_dmarc.shop.example", "{r:?}");
                let dmarc = Dmarc::parse(r.value.as_bytes())
                    .map_err(|e| anyhow::anyhow!("DMARC {:?}: {e}", r.value))?;
                ensure!(dmarc.p == Policy::None, "{r:?}");
            }
            other => anyhow::bail!("unexpected record purpose {other}"),
        }
    }
    let dkim_rsa = records
        .iter()
        .find(|r| r.purpose == "dkim" && r.value.contains("k=rsa"))
        .context("an RSA DKIM record")?
        .name
        .clone();

    // Nothing published yet: not verified, and every record named.
    let empty = StubDns::start(Vec::new())?;
    relay.point_at(&empty);
    let out = verify(&control, &admin)?;
    ensure!(out.status.code() == Some(1), "{out:?}");
    for r in &records {
        ensure!(
            out.stdout.contains(&r.name),
            "{} not named:\n{}",
            r.name,
            out.stdout
        );
    }
    ensure!(out.stdout.contains("missing"), "{}", out.stdout);

    // Exactly what `domain dns` said: verified.
    let right = StubDns::start(zone(&records, None, None))?;
    relay.point_at(&right);
    let out = verify(&control, &admin)?;
    ensure!(out.status.success(), "{out:?}");
    ensure!(out.stdout.contains("verified"), "{}", out.stdout);
    ensure!(!out.stdout.contains("not verified"), "{}", out.stdout);
    ensure!(
        right.queries(&dkim_rsa, RecordType::Txt) >= 1,
        "the daemon asked the stub"
    );
    let json = control
        .run_as(&admin, &["--json", "domain", "verify", DOMAIN])?
        .ok()?
        .json()?;
    ensure!(json.get("verified") == Some(&Value::Bool(true)), "{json}");
    let checks = json
        .get("checks")
        .and_then(Value::as_array)
        .context("checks")?;
    ensure!(checks.len() == records.len(), "{json}");
    ensure!(
        checks
            .iter()
            .all(|c| c.get("status").and_then(Value::as_str) == Some("ok")),
        "{json}"
    );
    ensure!(
        shown(&control, &admin)?
            .get("verified_at")
            .and_then(Value::as_u64)
            .is_some(),
        "domain show says verified"
    );
    let row = listed(&control, &admin)?;
    ensure!(
        row.contains("verified") && !row.contains("unverified"),
        "{row}"
    );

    // The RSA DKIM record gone: not verified, exit 1, the record named as missing.
    let no_dkim = StubDns::start(zone(&records, Some(&dkim_rsa), None))?;
    relay.point_at(&no_dkim);
    let out = verify(&control, &admin)?;
    ensure!(out.status.code() == Some(1), "{out:?}");
    let line = out
        .stdout
        .lines()
        .find(|l| l.contains(&dkim_rsa))
        .with_context(|| format!("{dkim_rsa} not named:\n{}", out.stdout))?;
    ensure!(line.contains("missing"), "{line}");
    ensure!(out.stdout.contains("not verified"), "{}", out.stdout);
    ensure!(
        shown(&control, &admin)?.get("verified_at") == Some(&Value::Null),
        "a missing record takes the verification away"
    );
    let row = listed(&control, &admin)?;
    ensure!(row.contains("unverified"), "{row}");

    // SPF without our address: not verified, the SPF record named as wrong.
    let wrong_spf = StubDns::start(zone(
        &records,
        None,
        Some((DOMAIN, "v=spf1 ip4:198.51.100.1 -all")),
    ))?;
    relay.point_at(&wrong_spf);
    let out = verify(&control, &admin)?;
    ensure!(out.status.code() == Some(1), "{out:?}");
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with("spf"))
        .with_context(|| format!("no SPF line:\n{}", out.stdout))?;
    ensure!(line.contains(DOMAIN) && line.contains("wrong"), "{line}");
    ensure!(line.contains(&format!("{SENDING_IP} gets fail")), "{line}");

    // Right again, then the audit log: every verify, with its outcome in the detail.
    relay.point_at(&right);
    verify(&control, &admin)?.ok()?;
    let entries = control
        .run_as(&admin, &["--json", "audit", "list", "--limit", "1000"])?
        .ok()?
        .json()?;
    let verifies: Vec<&Value> = entries
        .get("entries")
        .and_then(Value::as_array)
        .context("audit entries")?
        .iter()
        .filter(|e| e.get("action").and_then(Value::as_str) == Some("domain.verify"))
        .collect();
    ensure!(verifies.len() == 6, "six verifies audited: {verifies:#?}");
    let details: Vec<String> = verifies
        .iter()
        .map(|e| json_str(e, "detail").unwrap_or_default())
        .collect();
    ensure!(details[1].starts_with("verified"), "{details:?}");
    ensure!(
        details[3].starts_with("not verified") && details[3].contains("missing"),
        "{details:?}"
    );
    ensure!(details[4].contains("spf"), "{details:?}");
    ensure!(details[5].starts_with("verified"), "{details:?}");
    for e in &verifies {
        ensure!(json_str(e, "actor")? == "operator:admin", "{e}");
    }
    Ok(())
}
