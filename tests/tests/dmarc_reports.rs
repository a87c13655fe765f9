//! DMARC aggregate reports for tenant domains, end to end with a real control and
//! MTA:
//!
//! - reports (RFC 7489 appendix C) built here as reporters send them, zipped and
//!   gzipped, sent on mx to `[feedback] dmarc_address` → `250`, never relayed;
//! - `way2mail domain dmarc D` sums them: reporters, messages by source IP with
//!   SPF/DKIM alignment and disposition, the share `p=reject` would refuse; a
//!   report sent again counts once; a subdomain's counts under its domain;
//! - `GET /v1/domains/{d}/dmarc` gives the same to the tenant's API key, 404 to
//!   another tenant's;
//! - malformed, oversized (a gzip bomb) and entity-bomb reports, and a report for
//!   a domain not hosted here, are refused and change nothing;
//! - the export holds the reports; erasure removes them.

use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, ensure, Context};
use serde_json::Value;
use way2mail_tests::control::{json_str, Control, Operator};
use way2mail_tests::{api_request, wait_for, Backend, Daemon, SmtpClient, TestConfig};
use way2mail_wire::mta_admin::{AdminClient, AdminOp, AdminResult};

const DOMAIN: &str = "acme.example";
const RUA: &str = "dmarc-reports@way2mail.example";
const FOLLOW: Duration = Duration::from_secs(10);

fn toml_str(path: &Path) -> String {
    format!("\"{}\"", path.display())
}

/// One `<record>`: (source IP, count, DKIM, SPF, disposition).
type Row<'a> = (&'a str, u64, &'a str, &'a str, &'a str);

/// An aggregate report as appendix C of RFC 7489 describes it.
fn report_xml(org: &str, id: &str, domain: &str, end: u64, rows: &[Row<'_>]) -> String {
    let mut xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\" ?>\n<feedback>\n  <version>1.0</version>\n  \
         <report_metadata>\n    <org_name>{org}</org_name>\n    \
         <email>noreply-dmarc@{org}</email>\n    <report_id>{id}</report_id>\n    \
         <date_range><begin>{}</begin><end>{end}</end></date_range>\n  </report_metadata>\n  \
         <policy_published>\n    <domain>{domain}</domain>\n    <adkim>r</adkim>\n    \
         <aspf>r</aspf>\n    <p>none</p>\n    <sp>none</sp>\n    <pct>100</pct>\n  \
         </policy_published>\n",
        end - 86_400
    );
    for (ip, count, dkim, spf, disposition) in rows {
        xml.push_str(&format!(
            "  <record>\n    <row>\n      <source_ip>{ip}</source_ip>\n      \
             <count>{count}</count>\n      <policy_evaluated>\n        \
             <disposition>{disposition}</disposition>\n        <dkim>{dkim}</dkim>\n        \
             <spf>{spf}</spf>\n      </policy_evaluated>\n    </row>\n    \
             <identifiers><header_from>{domain}</header_from></identifiers>\n    \
             <auth_results>\n      <dkim><domain>{domain}</domain><result>{dkim}</result></dkim>\n      \
             <spf><domain>{domain}</domain><result>{spf}</result></spf>\n    </auth_results>\n  \
             </record>\n"
        ));
    }
    xml.push_str("</feedback>\n");
    xml
}

fn zip_of(name: &str, bytes: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    writer.start_file(
        name,
        zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated),
    )?;
    writer.write_all(bytes)?;
    Ok(writer.finish()?.into_inner())
}

fn gzip_of(bytes: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes)?;
    Ok(encoder.finish()?)
}

/// The mail a reporter sends: a short text part and the report attached.
fn report_mail(org: &str, filename: &str, content_type: &str, attachment: &[u8]) -> String {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(attachment);
    let lines: Vec<&str> = encoded
        .as_bytes()
        .chunks(76)
        .map(|c| std::str::from_utf8(c).unwrap_or(""))
        .collect();
    format!(
        "From: <noreply-dmarc@{org}>\r\nTo: <{RUA}>\r\nSubject: Report domain: {DOMAIN} \
         Submitter: {org}\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n\
         --b1\r\nContent-Type: text/plain\r\n\r\nThis is an aggregate report.\r\n\
         --b1\r\nContent-Type: {content_type}; name=\"{filename}\"\r\n\
         Content-Disposition: attachment; filename=\"{filename}\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{}\r\n--b1--\r\n",
        lines.join("\r\n")
    )
}

struct Rig {
    control: Control,
    admin: Operator,
    daemon: Daemon,
    state: tempfile::TempDir,
}

impl Rig {
    fn start() -> anyhow::Result<Rig> {
        Rig::start_with(|c| c)
    }

    /// [`Rig::start`], with the MTA's configuration changed by `tune`.
    fn start_with(tune: impl FnOnce(TestConfig) -> TestConfig) -> anyhow::Result<Rig> {
        let state = tempfile::Builder::new()
            .prefix("way2mail-dmarc-")
            .tempdir()?;
        let admin_socket = state.path().join("mta.sock");
        let control = Control::start_with(&format!(
            "[mta]\nadmin_socket = {}\n[sending]\ndmarc_rua = \"mailto:{RUA}\"",
            toml_str(&admin_socket),
        ))?;
        let admin = control.bootstrap_admin("admin")?;
        let run = |args: &[&str]| control.run_as(&admin, args)?.ok();
        for (tenant, domain) in [("acme", DOMAIN), ("beta", "beta.example")] {
            run(&[
                "tenant",
                "add",
                tenant,
                "--business-name",
                "Test Ltd",
                "--contact",
                "ops@example.org",
            ])?;
            run(&["domain", "add", tenant, domain])?;
        }
        let config = TestConfig::new(Backend::Epoll)
            .set("admin", "socket", &toml_str(&admin_socket))
            .set("control", "socket", &toml_str(&control.socket()))
            .set(
                "control",
                "snapshot_file",
                &toml_str(&state.path().join("snapshot")),
            )
            .set("feedback", "dmarc_address", &format!("\"mailto:{RUA}\""));
        let daemon = Daemon::start(&tune(config))?;
        Ok(Rig {
            control,
            admin,
            daemon,
            state,
        })
    }

    fn run(&self, args: &[&str]) -> anyhow::Result<way2mail_tests::control::CliOutput> {
        self.control.run_as(&self.admin, args)?.ok()
    }

    /// Sends `message` to the rua address on mx; the reply to the dot (code and text).
    fn send(&self, message: &str) -> anyhow::Result<(u16, String)> {
        let (mut c, _) = SmtpClient::connect(self.daemon.ports().mx)?;
        c.expect("EHLO mx.reporter.test", 250)?;
        let r = c.send_message("noreply-dmarc@reporter.test", &[RUA], message)?;
        Ok((r.code, r.text()))
    }

    /// `domain dmarc DOMAIN --json`.
    fn summary(&self) -> anyhow::Result<Value> {
        self.run(&["--json", "domain", "dmarc", DOMAIN])?.json()
    }

    /// `GET path` with `key`: the status and the body.
    fn api_get(&self, path: &str, key: &str) -> anyhow::Result<(u16, Value)> {
        let a = api_request(&self.daemon, "GET", path, Some(key), &[])?;
        Ok((a.status, a.body))
    }

    fn api_key(&self, tenant: &str) -> anyhow::Result<String> {
        let created = self
            .run(&["--json", "credential", "add", tenant, "--api"])?
            .json()?;
        json_str(&created, "secret")
    }
}

fn source<'a>(summary: &'a Value, ip: &str) -> anyhow::Result<&'a Value> {
    summary["sources"]
        .as_array()
        .context("sources")?
        .iter()
        .find(|s| s["ip"] == ip)
        .with_context(|| format!("no source {ip} in {summary}"))
}

#[test]
fn aggregate_reports_are_received_summed_served_exported_and_erased() -> anyhow::Result<()> {
    let rig = Rig::start()?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let day = now - now % 86_400;

    // google.com, zipped: 40 passing from our IP, 10 failing from a forger.
    let google = report_xml(
        "google.com",
        "g-1",
        DOMAIN,
        day,
        &[
            ("192.0.2.10", 40, "pass", "pass", "none"),
            ("198.51.100.7", 10, "fail", "fail", "none"),
        ],
    );
    let google_mail = report_mail(
        "google.com",
        &format!("google.com!{DOMAIN}!{}!{day}.zip", day - 86_400),
        "application/zip",
        &zip_of("report.xml", google.as_bytes())?,
    );
    // The tenant's domain reaches the MTA with control's next snapshot.
    let accepted = wait_for("the first report to be accepted", FOLLOW, || {
        rig.send(&google_mail).ok().filter(|(code, _)| *code == 250)
    })?;
    ensure!(accepted.1.contains("Report received"), "{accepted:?}");
    // Yahoo, gzipped: a subdomain's mail, DKIM aligned only.
    let yahoo = report_xml(
        "Yahoo",
        "y-1",
        &format!("news.{DOMAIN}"),
        day,
        &[("192.0.2.10", 50, "pass", "fail", "none")],
    );
    let yahoo_mail = report_mail(
        "yahoo.com",
        "report.xml.gz",
        "application/gzip",
        &gzip_of(yahoo.as_bytes())?,
    );
    ensure!(rig.send(&yahoo_mail)?.0 == 250);
    // Sent again: counted once.
    ensure!(rig.send(&google_mail)?.0 == 250);

    let summary = rig.summary()?;
    ensure!(summary["domain"] == DOMAIN, "{summary}");
    ensure!(summary["reports"] == 2, "{summary}");
    ensure!(summary["messages"] == 100, "{summary}");
    ensure!(summary["passing"] == 90, "{summary}");
    ensure!(summary["failing"] == 10, "{summary}");
    ensure!(summary["published_policy"] == "none", "{summary}");
    let ours = source(&summary, "192.0.2.10")?;
    ensure!(
        ours["messages"] == 90 && ours["dkim_aligned"] == 90 && ours["spf_aligned"] == 40,
        "{ours}"
    );
    let forger = source(&summary, "198.51.100.7")?;
    ensure!(
        forger["messages"] == 10 && forger["passing"] == 0 && forger["none"] == 10,
        "{forger}"
    );
    let reporters = summary["reporters"].as_array().context("reporters")?;
    ensure!(reporters.len() == 2, "{summary}");
    // The operator's table names the sources and the share p=reject would refuse.
    let text = rig.run(&["domain", "dmarc", DOMAIN])?.stdout;
    ensure!(
        text.contains("198.51.100.7") && text.contains("10.0"),
        "{text}"
    );

    // Hostile and unreadable reports: refused whole, nothing kept.
    let refused = |mail: &str, code: u16, why: &str| -> anyhow::Result<()> {
        let (got, text) = rig.send(mail)?;
        ensure!(got == code, "{why}: {got} {text}");
        Ok(())
    };
    let malformed = report_mail(
        "bad.example",
        "r.xml",
        "text/xml",
        b"<feedback><report_metadata><org_name>x</org_name>",
    );
    refused(&malformed, 550, "malformed XML")?;
    let bomb = "<?xml version=\"1.0\"?>\n<!DOCTYPE lolz [<!ENTITY lol \"lol\">\
                <!ENTITY lol2 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">\
                <!ENTITY lol3 \"&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;\">]>\n\
                <feedback><report_metadata><org_name>&lol3;</org_name></report_metadata></feedback>";
    let bomb_mail = report_mail(
        "bomb.example",
        "r.zip",
        "application/zip",
        &zip_of("r.xml", bomb.as_bytes())?,
    );
    refused(&bomb_mail, 550, "entity bomb")?;
    // 40 MB of spaces inflate past the 20 MiB cap: refused once past it.
    let inflating = gzip_of(&vec![b' '; 40 << 20])?;
    ensure!(inflating.len() < 1 << 20, "the bomb is small");
    let inflating_mail = report_mail("bomb.example", "r.xml.gz", "application/gzip", &inflating);
    refused(&inflating_mail, 552, "gzip bomb")?;
    let foreign = report_mail(
        "google.com",
        "r.xml",
        "text/xml",
        report_xml(
            "google.com",
            "f-1",
            "elsewhere.example",
            day,
            &[("192.0.2.99", 5, "pass", "pass", "none")],
        )
        .as_bytes(),
    );
    refused(&foreign, 550, "a domain not hosted here")?;
    refused(
        "Subject: hello\r\n\r\nNot a report.\r\n",
        550,
        "no report at all",
    )?;
    let after = rig.summary()?;
    ensure!(
        after["reports"] == 2 && after["messages"] == 100,
        "unchanged: {after}"
    );

    // The tenant's application reads the same over HTTPS; another tenant cannot.
    let acme_key = rig.api_key("acme")?;
    let beta_key = rig.api_key("beta")?;
    let path = format!("/v1/domains/{DOMAIN}/dmarc");
    let (status, body) = wait_for("the API key to reach the MTA", FOLLOW, || {
        rig.api_get(&path, &acme_key)
            .ok()
            .filter(|(s, _)| *s != 401)
    })?;
    ensure!(status == 200, "{status} {body}");
    ensure!(body["messages"] == 100 && body["failing"] == 10, "{body}");
    let share = body["would_fail_reject_share"].as_f64().context("share")?;
    ensure!((share - 0.1).abs() < 1e-9, "{body}");
    let (status, _) = wait_for("beta's key", FOLLOW, || {
        rig.api_get(&path, &beta_key)
            .ok()
            .filter(|(s, _)| *s != 401)
    })?;
    ensure!(status == 404, "another tenant's domain: {status}");

    // Exported with the tenant's data, then erased with it.
    let archive = rig.state.path().join("acme.tar");
    rig.run(&[
        "tenant",
        "export",
        "acme",
        "--out",
        &archive.display().to_string(),
    ])?;
    let extracted = rig.state.path().join("extracted");
    way2mail_tests::control::untar(&archive, &extracted)?;
    let exported = std::fs::read_to_string(extracted.join("acme-export/dmarc-reports/0001.jsonl"))?;
    ensure!(
        exported.lines().count() == 2
            && exported.contains("\"g-1\"")
            && exported.contains("\"y-1\""),
        "{exported}"
    );
    rig.run(&[
        "tenant",
        "erase",
        "acme",
        "--confirm",
        "acme",
        "--out",
        &rig.state.path().join("receipt.json").display().to_string(),
    ])?;
    let mut admin = AdminClient::connect(&rig.state.path().join("mta.sock"), FOLLOW)?;
    let answer = admin.call(AdminOp::Dmarc {
        tenant: "acme".into(),
        domain: DOMAIN.into(),
        since_ms: 0,
    })?;
    let AdminResult::Dmarc(left) = answer else {
        bail!("dmarc answered {answer:?}");
    };
    ensure!(left.reports == 0 && left.messages == 0, "{left:?}");
    Ok(())
}

#[test]
fn a_tenant_at_its_report_quota_takes_no_more() -> anyhow::Result<()> {
    let rig = Rig::start_with(|c| c.set("feedback", "dmarc_max_reports", "2"))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let day = now - now % 86_400;
    let mail = |id: &str| {
        let xml = report_xml(
            "google.com",
            id,
            DOMAIN,
            day,
            &[("192.0.2.10", 1, "pass", "pass", "none")],
        );
        report_mail("google.com", "r.xml", "text/xml", xml.as_bytes())
    };
    wait_for("the first report to be accepted", FOLLOW, || {
        rig.send(&mail("q-1")).ok().filter(|(code, _)| *code == 250)
    })?;
    ensure!(rig.send(&mail("q-2"))?.0 == 250, "the second report");
    let (code, text) = rig.send(&mail("q-3"))?;
    ensure!(
        code == 452,
        "the third report past a quota of 2: {code} {text}"
    );
    let summary = rig.summary()?;
    ensure!(summary["reports"] == 2, "{summary}");
    ensure!(
        rig.daemon
            .stderr()
            .contains("the tenant keeps [feedback] dmarc_max_reports already"),
        "no WARN line"
    );
    Ok(())
}
