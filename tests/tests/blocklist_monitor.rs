//! Blocklist monitoring of the platform's own sending addresses, end to end: a stub
//! DNS serves a DNSBL zone that lists `192.0.2.10`, control checks (`way2mail
//! reputation check`) and reports the listing everywhere it should (metric, audit
//! entry, a letter to `[notify] from`, `way2mail reputation` with the TXT reason);
//! then the zone delists it and the next check clears it. A zone that does not
//! answer and one that refuses the query (`127.255.255.254`) are lookup errors,
//! never listings.
//!
//! Control's resolver is pointed at a small UDP relay in this file, which forwards
//! to whichever stub is current: switching stubs is how the zone "changes".

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{ensure, Context};
use serde_json::Value;
use way2mail_tests::control::Control;
use way2mail_tests::{http_get, metric_value, Record, Sink, SinkOptions, StubDns};

const IP: &str = "192.0.2.10";
const LISTED: &str = "10.2.0.192.bl.test.example";
const DOWN: &str = "10.2.0.192.down.test.example";
const REFUSED: &str = "10.2.0.192.refused.test.example";
const REASON: &str = "Listed for spam, see https://bl.test.example/lookup?ip=192.0.2.10";

/// A UDP DNS relay to the current upstream; stops when dropped.
struct Relay {
    addr: SocketAddr,
    upstream: Arc<Mutex<SocketAddr>>,
    stop: Arc<AtomicBool>,
}

impl Relay {
    fn start(upstream: SocketAddr) -> anyhow::Result<Relay> {
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        socket.set_read_timeout(Some(Duration::from_millis(50)))?;
        let addr = socket.local_addr()?;
        let upstream = Arc::new(Mutex::new(upstream));
        let stop = Arc::new(AtomicBool::new(false));
        let (up, halt) = (Arc::clone(&upstream), Arc::clone(&stop));
        let socket = Arc::new(socket);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !halt.load(Ordering::SeqCst) {
                let Ok((len, client)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                let query = buf[..len].to_vec();
                let target = *up.lock().unwrap_or_else(|e| e.into_inner());
                let socket = Arc::clone(&socket);
                // One thread a query: an upstream that never answers holds only it.
                std::thread::spawn(move || {
                    let Ok(out) = UdpSocket::bind("127.0.0.1:0") else {
                        return;
                    };
                    let _ = out.set_read_timeout(Some(Duration::from_secs(5)));
                    if out.send_to(&query, target).is_err() {
                        return;
                    }
                    let mut reply = [0u8; 4096];
                    if let Ok((n, _)) = out.recv_from(&mut reply) {
                        let _ = socket.send_to(&reply[..n], client);
                    }
                });
            }
        });
        Ok(Relay {
            addr,
            upstream,
            stop,
        })
    }

    fn switch(&self, upstream: SocketAddr) {
        *self.upstream.lock().unwrap_or_else(|e| e.into_inner()) = upstream;
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn metrics(control: &Control) -> anyhow::Result<String> {
    let addr = control.metrics_addr().context("no metrics endpoint")?;
    let (status, body) = http_get(addr, "/metrics")?;
    ensure!(status == 200, "/metrics answered {status}");
    Ok(body)
}

fn listed_gauge(text: &str, zone: &str) -> Option<f64> {
    metric_value(
        text,
        "way2mail_blocklist_listed",
        &[("ip", IP), ("zone", zone)],
    )
}

fn audit_actions(
    control: &Control,
    admin: &way2mail_tests::control::Operator,
) -> anyhow::Result<Vec<Value>> {
    let out = control
        .run_as(admin, &["--json", "audit", "list", "--limit", "1000"])?
        .ok()?;
    let json = out.json()?;
    Ok(json["entries"]
        .as_array()
        .context("no entries")?
        .iter()
        .filter(|e| {
            e["action"]
                .as_str()
                .is_some_and(|a| a.starts_with("blocklist.") || a == "reputation.check")
        })
        .cloned()
        .collect())
}

#[test]
fn listing_is_reported_and_cleared() -> anyhow::Result<()> {
    let listing = StubDns::start(vec![
        Record::a(LISTED, Ipv4Addr::new(127, 0, 0, 2)),
        Record::txt(LISTED, REASON),
        Record::no_answer(DOWN),
        Record::a(REFUSED, Ipv4Addr::new(127, 255, 255, 254)),
    ])?;
    let delisted = StubDns::start(vec![
        Record::nxdomain(LISTED),
        Record::no_answer(DOWN),
        Record::a(REFUSED, Ipv4Addr::new(127, 255, 255, 254)),
    ])?;
    let relay = Relay::start(listing.addr())?;
    let sink = Sink::start(SinkOptions::default())?;
    let control = Control::start_with(&format!(
        "[sending]\nips = [\"{IP}\"]\n\
         [blocklists]\nzones = [\"bl.test.example\", \"down.test.example\", \"refused.test.example\"]\n\
         [dns]\nnameservers = [\"{}\"]\ntimeout_ms = 400\nattempts = 1\n\
         [notify]\nsmtp_server = \"{}\"\nfrom = \"platform@way2mail.example\"",
        relay.addr,
        sink.addr()
    ))?;
    let admin = control.bootstrap_admin("admin")?;

    // Before any check: nothing listed, the gauges at 0.
    let shown = control
        .run_as(&admin, &["--json", "reputation"])?
        .ok()?
        .json()?;
    ensure!(shown["kind"] == "reputation", "{shown}");
    ensure!(shown["last_check"].is_null(), "{shown}");
    ensure!(shown["ips"] == serde_json::json!([IP]), "{shown}");
    let text = metrics(&control)?;
    ensure!(
        listed_gauge(&text, "bl.test.example") == Some(0.0),
        "{text}"
    );

    // Listed.
    let checked = control
        .run_as(&admin, &["--json", "reputation", "check"])?
        .ok()?
        .json()?;
    let listings = checked["listings"].as_array().context("listings")?;
    ensure!(
        listings.len() == 1,
        "only the listing zone lists: {checked}"
    );
    ensure!(listings[0]["zone"] == "bl.test.example", "{checked}");
    ensure!(listings[0]["ip"] == IP, "{checked}");
    ensure!(listings[0]["reason"] == REASON, "{checked}");
    ensure!(
        listings[0]["codes"] == serde_json::json!(["127.0.0.2"]),
        "{checked}"
    );
    let errors = checked["lookup_errors"].as_array().context("errors")?;
    let error_zones: Vec<&str> = errors.iter().filter_map(|e| e["zone"].as_str()).collect();
    ensure!(
        error_zones.contains(&"down.test.example") && error_zones.contains(&"refused.test.example"),
        "a silent zone and a refused query are lookup errors: {checked}"
    );
    ensure!(error_zones.len() == 2, "{checked}");

    let text = metrics(&control)?;
    ensure!(
        listed_gauge(&text, "bl.test.example") == Some(1.0),
        "{text}"
    );
    ensure!(
        listed_gauge(&text, "down.test.example") == Some(0.0),
        "{text}"
    );
    ensure!(
        listed_gauge(&text, "refused.test.example") == Some(0.0),
        "{text}"
    );
    let errors = metric_value(
        &text,
        "way2mail_blocklist_lookup_errors_total",
        &[("zone", "down.test.example")],
    );
    ensure!(errors.is_some_and(|n| n >= 1.0), "{text}");

    let audit = audit_actions(&control, &admin)?;
    let listed_entries: Vec<&Value> = audit
        .iter()
        .filter(|e| e["action"] == "blocklist.listed")
        .collect();
    ensure!(listed_entries.len() == 1, "{audit:#?}");
    ensure!(
        listed_entries[0]["actor"] == "system:blocklist",
        "{audit:#?}"
    );
    let detail = listed_entries[0]["detail"].as_str().unwrap_or_default();
    ensure!(
        detail.contains(IP) && detail.contains("bl.test.example") && detail.contains("spam"),
        "{detail}"
    );

    let letters = sink.wait_for(1, Duration::from_secs(15))?;
    ensure!(
        letters[0].rcpt_to == ["platform@way2mail.example"],
        "{:?}",
        letters[0].rcpt_to
    );
    let message = String::from_utf8_lossy(&letters[0].data);
    ensure!(
        message.contains("Subject: Sending address 192.0.2.10 listed in bl.test.example"),
        "{message}"
    );
    ensure!(message.contains("Listed for spam"), "{message}");

    let human = control.run_as(&admin, &["reputation"])?.ok()?.stdout;
    ensure!(
        human.contains("bl.test.example") && human.contains(REASON),
        "{human}"
    );

    // Checking again changes nothing: no second letter, no second entry.
    control.run_as(&admin, &["reputation", "check"])?.ok()?;
    let audit = audit_actions(&control, &admin)?;
    ensure!(
        audit
            .iter()
            .filter(|e| e["action"] == "blocklist.listed")
            .count()
            == 1,
        "{audit:#?}"
    );

    // Delisted.
    relay.switch(delisted.addr());
    let checked = control
        .run_as(&admin, &["--json", "reputation", "check"])?
        .ok()?
        .json()?;
    ensure!(
        checked["listings"].as_array().is_some_and(Vec::is_empty),
        "{checked}"
    );
    let events: Vec<&str> = checked["history"]
        .as_array()
        .context("history")?
        .iter()
        .filter_map(|e| e["event"].as_str())
        .collect();
    ensure!(events == ["listed", "delisted"], "{checked}");
    let text = metrics(&control)?;
    ensure!(
        listed_gauge(&text, "bl.test.example") == Some(0.0),
        "{text}"
    );
    let audit = audit_actions(&control, &admin)?;
    let delisted_entry = audit
        .iter()
        .find(|e| e["action"] == "blocklist.delisted")
        .with_context(|| format!("no blocklist.delisted entry: {audit:#?}"))?;
    ensure!(delisted_entry["actor"] == "system:blocklist", "{audit:#?}");
    ensure!(
        audit
            .iter()
            .filter(|e| e["action"] == "reputation.check")
            .count()
            == 3,
        "each check by the operator is audited: {audit:#?}"
    );
    let letters = sink.wait_for(2, Duration::from_secs(15))?;
    let message = String::from_utf8_lossy(&letters[1].data);
    ensure!(
        message.contains("Subject: Sending address 192.0.2.10 delisted from bl.test.example"),
        "{message}"
    );

    let shown = control
        .run_as(&admin, &["--json", "reputation"])?
        .ok()?
        .json()?;
    ensure!(
        shown["history"].as_array().map(Vec::len) == Some(2),
        "{shown}"
    );
    ensure!(shown["last_check"].is_u64(), "{shown}");
    Ok(())
}

#[test]
fn check_needs_sending_addresses_and_a_role() -> anyhow::Result<()> {
    let control = Control::start_with("[dns]\nnameservers = [\"127.0.0.1:9\"]")?;
    let admin = control.bootstrap_admin("admin")?;
    let out = control.run_as(&admin, &["reputation", "check"])?;
    ensure!(!out.status.success(), "{out:?}");
    ensure!(out.stderr.contains("[sending] ips is empty"), "{out:?}");
    let support = control.add_operator(&admin, "helpdesk", "support")?;
    control.run_as(&support, &["reputation"])?.ok()?;
    let out = control.run_as(&support, &["reputation", "check"])?;
    ensure!(
        !out.status.success(),
        "support may not run a check: {out:?}"
    );
    Ok(())
}
