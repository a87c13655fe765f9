//! DNS blocklists on inbound mail: a stub DNS serves a zone that lists 127.0.0.1
//! (A 127.0.0.2 and a TXT reason) and a zone whose server fails. A client of the
//! mx listener outside the trusted networks is refused with `554 5.7.1` naming
//! the zone and its reason, at `RCPT TO` (postmaster still reachable) or at `MAIL
//! FROM` as configured; the answer is cached per address; a zone that fails is
//! not a listing; a trusted client is never looked up.

use anyhow::ensure;
use std::net::Ipv4Addr;
use way2mail_tests::{Backend, Daemon, Record, RecordType, SmtpClient, StubDns, TestConfig};

const LISTED: &str = "1.0.0.127.bl.test.example";
const FAILING: &str = "1.0.0.127.down.test.example";
const REASON: &str = "Listed for spam, see https://bl.test.example/q?127.0.0.1";

fn stub() -> anyhow::Result<StubDns> {
    StubDns::start(vec![
        Record::a(LISTED, Ipv4Addr::new(127, 0, 0, 2)),
        Record::txt(LISTED, REASON),
        Record::servfail(FAILING),
    ])
}

fn config(dns: &StubDns, zones: &[&str], refuse_at: &str, trusted: &str) -> TestConfig {
    let zones: Vec<String> = zones.iter().map(|z| format!("\"{z}\"")).collect();
    TestConfig::new(Backend::Epoll)
        .set("dns", "nameservers", &format!("[\"{}\"]", dns.addr()))
        .set("dns", "timeout_ms", "500")
        .set("dns", "attempts", "1")
        .set("relay", "domains", r#"["local.test"]"#)
        .set("relay", "trusted_networks", trusted)
        .set("inbound", "checks", "false")
        .set("inbound", "dnsbl_zones", &format!("[{}]", zones.join(", ")))
        .set("inbound", "dnsbl_refuse_at", &format!("\"{refuse_at}\""))
}

fn connect(d: &Daemon) -> anyhow::Result<SmtpClient> {
    let (mut c, _) = SmtpClient::connect(d.ports().mx)?;
    c.expect("EHLO client.test", 250)?;
    Ok(c)
}

#[test]
fn listed_clients_are_refused_at_the_configured_step() -> anyhow::Result<()> {
    let dns = stub()?;
    let d = Daemon::start(&config(
        &dns,
        &["down.test.example", "bl.test.example"],
        "rcpt",
        "[]",
    ))?;
    let mut c = connect(&d)?;
    c.expect("MAIL FROM:<someone@sender.test>", 250)?;
    let r = c.command("RCPT TO:<user@local.test>")?;
    ensure!(
        r.code == 554
            && r.text().contains("5.7.1")
            && r.text().contains("bl.test.example")
            && r.text().contains(REASON),
        "{r:?}"
    );
    // The postmaster stays reachable, bare or at our domain.
    c.expect("RCPT TO:<postmaster@local.test>", 250)?;
    c.expect("RCPT TO:<Postmaster>", 250)?;
    c.expect("QUIT", 221)?;
    // A second connection is answered from the cache.
    let mut again = connect(&d)?;
    again.expect("MAIL FROM:<someone@sender.test>", 250)?;
    again.expect("RCPT TO:<user@local.test>", 554)?;
    ensure!(
        dns.queries(LISTED, RecordType::A) == 1,
        "{} lookups",
        dns.queries(LISTED, RecordType::A)
    );
    drop(d);

    // At MAIL FROM when configured so.
    let d = Daemon::start(&config(&dns, &["bl.test.example"], "mail", "[]"))?;
    let mut c = connect(&d)?;
    let r = c.command("MAIL FROM:<someone@sender.test>")?;
    ensure!(
        r.code == 554 && r.text().contains("bl.test.example"),
        "{r:?}"
    );
    drop(d);

    // A zone whose server fails is no listing.
    let d = Daemon::start(&config(&dns, &["down.test.example"], "rcpt", "[]"))?;
    let mut c = connect(&d)?;
    c.expect("MAIL FROM:<someone@sender.test>", 250)?;
    c.expect("RCPT TO:<user@local.test>", 250)?;
    drop(d);

    // A trusted client is never looked up.
    let before = dns.queries(LISTED, RecordType::A);
    let d = Daemon::start(&config(
        &dns,
        &["bl.test.example"],
        "rcpt",
        r#"["127.0.0.0/8"]"#,
    ))?;
    let mut c = connect(&d)?;
    c.expect("MAIL FROM:<someone@sender.test>", 250)?;
    c.expect("RCPT TO:<user@local.test>", 250)?;
    ensure!(
        dns.queries(LISTED, RecordType::A) == before,
        "a trusted client was looked up"
    );
    Ok(())
}
