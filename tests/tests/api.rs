//! The HTTPS API, end to end: a real `way2mail-control` holds two tenants, their
//! domains and API keys made with the `way2mail` CLI; the real MTA follows it and
//! serves the API on its `api` listener; Python's own HTTP client (urllib and the
//! ssl module, tests/python/http_request.py) sends. Messages sent by JSON and raw
//! arrive at a sink DKIM-signed (verified with mail-auth against the records
//! `domain dns` lists, served by a stub DNS) and well-formed (parsed back with
//! mail-parser); Bcc stays in the envelope. Every refusal the API documents is
//! checked: 401 (no key, wrong key, revoked key), 403 (suspended tenant), 404, 405,
//! 413, 415, 422 with the field, 429 (the tenant's hourly budget, and a brute force
//! locked out), and suppression; a second tenant's key never sends as the first.
//!
//! HTTP/2 and the curl examples of docs/api.md run in `.ci/api.sh`, beside
//! schemathesis.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, ensure, Context};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use mail_auth::DkimResult;
use mail_parser::MimeHeaders;
use serde_json::{json, Value};
use way2mail_tests::control::{json_str, Control, Operator};
use way2mail_tests::{
    api_request, for_each_backend, wait_for, Backend, Daemon, Received, Record, Sink, SinkOptions,
    StubDns, TestConfig,
};

const FOLLOW: Duration = Duration::from_secs(5);
const DELIVERY: Duration = Duration::from_secs(30);
const MAX_FAILURES: u32 = 4;

fn toml_str(path: &Path) -> String {
    format!("\"{}\"", path.display())
}

/// One response as the Python client saw it.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Value,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .as_object()?
            .iter()
            .find_map(|(k, v)| k.eq_ignore_ascii_case(name).then(|| v.as_str()).flatten())
    }

    /// A problem+json answer with `status`; its `type` ends with `kind`.
    fn problem(&self, status: u16, kind: &str) -> anyhow::Result<&Answer> {
        ensure!(self.status == status, "want {status} {kind}, got {self:?}");
        ensure!(
            self.header("Content-Type") == Some("application/problem+json"),
            "not problem+json: {self:?}"
        );
        let t = self.body["type"].as_str().unwrap_or("");
        ensure!(
            t == format!("urn:way2mail:problem:{kind}"),
            "type {t}, want {kind}: {self:?}"
        );
        ensure!(self.body["status"] == status, "status field: {self:?}");
        Ok(self)
    }

    fn field(&self) -> &str {
        self.body["errors"][0]["field"].as_str().unwrap_or("")
    }
}

struct Tenant {
    key: String,
    credential: String,
}

struct Rig {
    control: Control,
    admin: Operator,
    dns: StubDns,
    sink: Sink,
    daemon: Daemon,
    acme: Tenant,
    beta: Tenant,
    _state: tempfile::TempDir,
}

impl Rig {
    /// One request through Python's client.
    fn request(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        extra: &[&str],
    ) -> anyhow::Result<Answer> {
        let a = api_request(&self.daemon, method, path, key, extra)?;
        Ok(Answer {
            status: a.status,
            headers: a.headers,
            body: a.body,
        })
    }

    /// `POST path` with the file at `file` as a `content_type` body.
    fn post_file(
        &self,
        path: &str,
        key: Option<&str>,
        file: &Path,
        content_type: &str,
    ) -> anyhow::Result<Answer> {
        let file = file.display().to_string();
        self.request(
            "POST",
            path,
            key,
            &["--data-file", &file, "--content-type", content_type],
        )
    }

    /// `POST /v1/messages` with an `Idempotency-Key`.
    fn send_idempotent(
        &self,
        key: &str,
        body: &Value,
        idempotency: &str,
    ) -> anyhow::Result<Answer> {
        let header = format!("Idempotency-Key: {idempotency}");
        self.request(
            "POST",
            "/v1/messages",
            Some(key),
            &["--json", &body.to_string(), "--header", &header],
        )
    }

    fn send_json(&self, key: &str, body: &Value) -> anyhow::Result<Answer> {
        self.request(
            "POST",
            "/v1/messages",
            Some(key),
            &["--json", &body.to_string()],
        )
    }

    fn cli(&self, args: &[&str]) -> anyhow::Result<Value> {
        self.control.run_as(&self.admin, args)?.ok()?.json()
    }
}

fn api_key(control: &Control, admin: &Operator, tenant: &str) -> anyhow::Result<Tenant> {
    let created = control
        .run_as(admin, &["--json", "credential", "add", tenant, "--api"])?
        .ok()?
        .json()?;
    Ok(Tenant {
        key: json_str(&created, "secret")?,
        credential: created["credential"]["id"]
            .as_str()
            .context("credential id")?
            .to_string(),
    })
}

/// Control with acme (acme.example) and beta (beta.example, one message an hour),
/// an API key each; DNS publishes acme.example's records; remote.example goes to
/// the sink.
fn rig(backend: Backend, max_message_size: u64) -> anyhow::Result<Rig> {
    rig_with(backend, max_message_size, |config| config)
}

/// [`rig`], with the MTA's configuration changed by `tune`. Control hands its
/// notification letters to the sink.
fn rig_with(
    backend: Backend,
    max_message_size: u64,
    tune: impl FnOnce(TestConfig) -> TestConfig,
) -> anyhow::Result<Rig> {
    let sink = Sink::start(SinkOptions::default())?;
    let state = tempfile::Builder::new()
        .prefix("way2mail-api-state-")
        .tempdir()?;
    // Control reaches the MTA's admin socket for tenant exports.
    let admin_socket = state.path().join("mta.sock");
    let control = Control::start_with(&format!(
        "[mta]\nadmin_socket = {}\n[notify]\nsmtp_server = \"{}\"\nfrom = \"platform@way2mail.example\"",
        toml_str(&admin_socket),
        sink.addr()
    ))?;
    let admin = control.bootstrap_admin("admin")?;
    let run = |args: &[&str]| control.run_as(&admin, args)?.ok();
    for (tenant, domain, limits) in [
        ("acme", "acme.example", &[][..]),
        ("beta", "beta.example", &["--messages-per-hour", "1"][..]),
    ] {
        let mut add = vec![
            "tenant",
            "add",
            tenant,
            "--business-name",
            "Test Ltd",
            "--contact",
            "ops@example.org",
        ];
        add.extend_from_slice(limits);
        run(&add)?;
        run(&["domain", "add", tenant, domain])?;
        run(&["domain", "override", domain, "--allow", "--reason", "test"])?;
    }
    let acme = api_key(&control, &admin, "acme")?;
    let beta = api_key(&control, &admin, "beta")?;
    let mut records = Vec::new();
    let listed = run(&["--json", "domain", "dns", "acme.example"])?.json()?;
    for r in listed["records"].as_array().context("no records")? {
        let name = r["name"].as_str().context("record name")?;
        let value = r["value"].as_str().context("record value")?;
        records.push(Record::txt(name, value));
    }
    let dns = StubDns::start(records)?;
    let config = TestConfig::new(backend)
        .set("admin", "socket", &toml_str(&admin_socket))
        .set("control", "socket", &toml_str(&control.socket()))
        .set(
            "control",
            "snapshot_file",
            &toml_str(&state.path().join("snapshot")),
        )
        .set("delivery", "enabled", "true")
        .set("delivery", "retry_initial_secs", "1")
        .set("dns", "nameservers", &format!("[\"{}\"]", dns.addr()))
        .set("dns", "timeout_ms", "500")
        .set("relay", "trusted_networks", "[]")
        .set("limits", "max_message_size", &max_message_size.to_string())
        // Large API requests are read under this budget, one at a time here.
        .set("spool", "ingest_budget", "1048576")
        .set("spool", "message_buffer", "65536")
        .set("auth", "failure_delay_ms", "100")
        .set("auth", "max_failures", &MAX_FAILURES.to_string())
        .set("auth", "lockout_secs", "60")
        .raw(&sink.route("remote.example"));
    let daemon = Daemon::start(&tune(config))?;
    let rig = Rig {
        control,
        admin,
        dns,
        sink,
        daemon,
        acme,
        beta,
        _state: state,
    };
    // The keys reach the MTA with control's next snapshot.
    wait_for("the API keys to reach the MTA", FOLLOW, || {
        let probe = json!({"from": "x", "subject": "s", "text": "t"});
        rig.send_json(&rig.acme.key, &probe)
            .ok()
            .filter(|a| a.status == 422)
    })?;
    Ok(rig)
}

fn arrived(sink: &Sink, marker: &str) -> anyhow::Result<Received> {
    wait_for(&format!("message {marker} at the sink"), DELIVERY, || {
        sink.messages()
            .into_iter()
            .find(|m| String::from_utf8_lossy(&m.data).contains(marker))
    })
}

for_each_backend!(send_json_and_raw);

fn send_json_and_raw(backend: Backend) -> anyhow::Result<()> {
    let rig = rig(backend, 10 * 1024 * 1024)?;
    let pdf = B64.encode(b"%PDF-1.4 not really a pdf\n");
    let sent = rig.send_json(
        &rig.acme.key,
        &json!({
            "from": {"email": "billing@acme.example", "name": "Acme Billing — Café"},
            "to": ["customer@remote.example", {"email": "second@remote.example", "name": "Second"}],
            "bcc": ["hidden@remote.example"],
            "reply_to": "help@acme.example",
            "subject": "Invoice json-marker ✓",
            "text": "Hello,\nyour invoice is attached.\n.a line with a leading dot\n",
            "html": "<p>Hello, your <b>invoice</b> is attached.</p>",
            "headers": {"X-Campaign": "spring"},
            "attachments": [{"filename": "invoice.pdf", "content_type": "application/pdf", "content_base64": pdf}],
            "tags": ["invoice", "spring"],
            "metadata": {"order": "4711"}
        }),
    )?;
    ensure!(sent.status == 202, "JSON send: {sent:?}");
    let id = sent.body["id"].as_str().context("id")?.to_string();
    ensure!(id.len() > 10, "id {id}");
    ensure!(
        sent.body["recipients"]
            == json!([
                "customer@remote.example",
                "second@remote.example",
                "hidden@remote.example"
            ]),
        "{sent:?}"
    );

    // A retry with the same Idempotency-Key gets the first answer, nothing more
    // is sent; the key with another request is refused.
    let once = json!({"from": "billing@acme.example", "to": ["once@remote.example"],
                      "subject": "idempotent-marker", "text": "only once"});
    let first = rig.send_idempotent(&rig.acme.key, &once, "order-4711")?;
    ensure!(first.status == 202, "{first:?}");
    let retry = rig.send_idempotent(&rig.acme.key, &once, "order-4711")?;
    ensure!(
        retry.status == 202
            && retry.body == first.body
            && retry.header("Idempotent-Replayed") == Some("true"),
        "retry: {retry:?} first: {first:?}"
    );
    let other = json!({"from": "billing@acme.example", "to": ["twice@remote.example"],
                       "subject": "other", "text": "x"});
    rig.send_idempotent(&rig.acme.key, &other, "order-4711")?
        .problem(422, "idempotency-key-reused")?;
    // The key is the tenant's own: beta's same key sends beta's message.
    let beta_once = json!({"from": "app@beta.example", "to": ["once@remote.example"],
                           "subject": "beta", "text": "x"});
    let b = rig.send_idempotent(&rig.beta.key, &beta_once, "order-4711")?;
    ensure!(b.status == 202 && b.body["id"] != first.body["id"], "{b:?}");

    // Raw, envelope in the query, bare LF line ends.
    let raw = "From: Acme <news@acme.example>\nTo: customer@remote.example\nSubject: raw-marker\n\
               Message-ID: <raw-marker@acme.example>\n\nA raw message.\n";
    let file = rig._state.path().join("raw.eml");
    std::fs::write(&file, raw)?;
    let raw_sent = rig.post_file(
        "/v1/messages/raw?from=news%40acme.example&to=customer@remote.example",
        Some(&rig.acme.key),
        &file,
        "message/rfc822",
    )?;
    ensure!(raw_sent.status == 202, "raw send: {raw_sent:?}");

    let m = arrived(&rig.sink, "json-marker")?;
    ensure!(m.mail_from == "billing@acme.example", "{}", m.mail_from);
    let mut rcpts = m.rcpt_to.clone();
    rcpts.sort();
    ensure!(
        rcpts
            == [
                "customer@remote.example",
                "hidden@remote.example",
                "second@remote.example"
            ],
        "{rcpts:?}"
    );
    let text = String::from_utf8_lossy(&m.data).into_owned();
    ensure!(
        !text.to_ascii_lowercase().contains("\nbcc:") && !text.contains("hidden@"),
        "Bcc leaked:\n{text}"
    );
    ensure!(
        text.contains(&format!("Message-ID: <{id}@mx.way2mail.test>")),
        "Message-ID from the queue id:\n{text}"
    );
    ensure!(text.contains("with HTTPS"), "Received names HTTPS:\n{text}");
    let verdicts = rig.dns.dkim_verdicts(&m.data)?;
    ensure!(
        !verdicts.is_empty() && verdicts.iter().all(|v| *v == DkimResult::Pass),
        "DKIM: {verdicts:?}\n{text}"
    );
    let parsed = mail_parser::MessageParser::default()
        .parse(&m.data)
        .context("mail-parser")?;
    ensure!(
        parsed.subject() == Some("Invoice json-marker ✓"),
        "{:?}",
        parsed.subject()
    );
    let from = parsed.from().and_then(|f| f.first()).context("From")?;
    ensure!(from.name() == Some("Acme Billing — Café"), "{from:?}");
    ensure!(
        parsed.to().map(|t| t.iter().count()) == Some(2),
        "To: {:?}",
        parsed.to()
    );
    ensure!(
        parsed
            .reply_to()
            .and_then(|r| r.first())
            .and_then(|a| a.address())
            == Some("help@acme.example")
    );
    ensure!(parsed.header_raw("X-Campaign").map(str::trim) == Some("spring"));
    let body = parsed.body_text(0).context("text part")?;
    ensure!(
        body.contains("your invoice is attached.") && body.contains(".a line with a leading dot"),
        "{body}"
    );
    ensure!(parsed
        .body_html(0)
        .is_some_and(|h| h.contains("<b>invoice</b>")));
    let attachment = parsed.attachment(0).context("attachment")?;
    ensure!(attachment.attachment_name() == Some("invoice.pdf"));
    ensure!(attachment.contents() == b"%PDF-1.4 not really a pdf\n");
    ensure!(text.split("\r\n").all(|l| l.len() <= 998), "a long line");

    // What became of it, as the tenant sees it: every recipient delivered.
    let path = format!("/v1/messages/{id}");
    let seen = wait_for("the message's outcomes", DELIVERY, || {
        rig.request("GET", &path, Some(&rig.acme.key), &[])
            .ok()
            .filter(|a| a.status == 200 && a.body["status"] == "done")
    })?;
    let states: Vec<&str> = seen.body["recipients"]
        .as_array()
        .context("recipients")?
        .iter()
        .filter_map(|r| r["state"].as_str())
        .collect();
    ensure!(states == ["delivered"; 3], "{seen:?}");
    ensure!(
        seen.body["tags"] == json!(["invoice", "spring"])
            && seen.body["metadata"] == json!({"order": "4711"}),
        "{seen:?}"
    );
    ensure!(
        !text.contains("4711") && !text.contains("spring\""),
        "labels leaked into the message"
    );
    let events = seen.body["events"].as_array().context("events")?;
    ensure!(
        events.len() == 3
            && events
                .iter()
                .all(|e| e["type"] == "delivered" && e["message_id"] == id.as_str()),
        "{seen:?}"
    );
    // The same outcomes in the tenant's event feed, page by page.
    let feed = wait_for("the events to settle into the feed", DELIVERY, || {
        rig.request("GET", "/v1/events?limit=2", Some(&rig.acme.key), &[])
            .ok()
            .filter(|a| {
                a.status == 200 && a.body["events"].as_array().is_some_and(|e| e.len() == 2)
            })
    })?;
    ensure!(feed.body["more"] == true, "{feed:?}");
    let next = feed.body["next"].as_str().context("next")?.to_string();
    let rest = rig.request(
        "GET",
        &format!("/v1/events?after={next}&limit=100"),
        Some(&rig.acme.key),
        &[],
    )?;
    ensure!(rest.status == 200, "{rest:?}");
    let mut all: Vec<Value> = feed.body["events"].as_array().cloned().unwrap_or_default();
    all.extend(rest.body["events"].as_array().cloned().unwrap_or_default());
    let ours = all
        .iter()
        .filter(|e| {
            e["message_id"] == id.as_str()
                && e["type"] == "delivered"
                && e["tags"] == json!(["invoice", "spring"])
                && e["metadata"]["order"] == "4711"
        })
        .count();
    ensure!(ours == 3, "events: {all:?}");
    let beta_feed = rig.request("GET", "/v1/events", Some(&rig.beta.key), &[])?;
    ensure!(
        beta_feed.status == 200 && beta_feed.body["events"] == json!([]),
        "{beta_feed:?}"
    );
    rig.request("GET", "/v1/events?after=nope", Some(&rig.acme.key), &[])?
        .problem(422, "invalid-request")?;
    // Another tenant's key does not see it; nor does a made-up id.
    rig.request("GET", &path, Some(&rig.beta.key), &[])?
        .problem(404, "not-found")?;
    rig.request("GET", "/v1/messages/NOTANID", Some(&rig.acme.key), &[])?
        .problem(404, "not-found")?;

    // The idempotent message went out once.
    arrived(&rig.sink, "idempotent-marker")?;
    std::thread::sleep(Duration::from_millis(500));
    let copies = rig
        .sink
        .messages()
        .iter()
        .filter(|m| String::from_utf8_lossy(&m.data).contains("idempotent-marker"))
        .count();
    ensure!(copies == 1, "{copies} copies of the idempotent message");

    // Large requests wait for their share of the ingest budget (1 MiB here, less
    // than what each asks): all are queued, and nothing stays reserved.
    let big = (0..3)
        .map(|n| {
            let path = rig._state.path().join(format!("big-{n}.eml"));
            let line = "0123456789".repeat(7) + "\r\n";
            let text = format!(
                "From: app@acme.example\r\nSubject: big-{n}\r\n\r\n{}",
                line.repeat(400_000 / line.len())
            );
            std::fs::write(&path, text).map(|()| path)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let answers: Vec<anyhow::Result<Answer>> = std::thread::scope(|s| {
        let handles: Vec<_> = big
            .iter()
            .map(|path| {
                let rig = &rig;
                s.spawn(move || {
                    rig.post_file(
                        "/v1/messages/raw?from=app@acme.example&to=big@remote.example",
                        Some(&rig.acme.key),
                        path,
                        "message/rfc822",
                    )
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("client thread panicked")))
            })
            .collect()
    });
    for a in answers {
        let a = a?;
        ensure!(a.status == 202, "large raw message: {a:?}");
    }
    let (_, metrics) = way2mail_tests::http_get(rig.daemon.metrics_addr(), "/metrics")?;
    ensure!(
        way2mail_tests::metric_value(&metrics, "way2mail_ingest_reserved_bytes", &[]) == Some(0.0),
        "ingest budget still reserved"
    );

    let raw_in = arrived(&rig.sink, "raw-marker")?;
    let raw_text = String::from_utf8_lossy(&raw_in.data);
    ensure!(
        raw_text.contains("Subject: raw-marker\r\n") && raw_text.contains("\r\nA raw message.\r\n"),
        "{raw_text}"
    );
    ensure!(
        rig.dns
            .dkim_verdicts(&raw_in.data)?
            .iter()
            .all(|v| *v == DkimResult::Pass),
        "raw DKIM"
    );
    Ok(())
}

#[test]
fn refusals() -> anyhow::Result<()> {
    let rig = rig(Backend::Epoll, 64 * 1024)?;
    let message = |from: &str, to: &[&str]| json!({"from": from, "to": to, "subject": "refusals", "text": "hello"});
    let acme = |to: &[&str]| message("app@acme.example", to);

    // Without a key, with a wrong one.
    let a = rig.request(
        "POST",
        "/v1/messages",
        None,
        &["--json", &acme(&["a@remote.example"]).to_string()],
    )?;
    a.problem(401, "unauthorized")?;
    ensure!(
        a.header("WWW-Authenticate")
            .is_some_and(|h| h.starts_with("Bearer")),
        "{a:?}"
    );
    rig.send_json("w2m_nope_wrongsecret", &acme(&["a@remote.example"]))?
        .problem(401, "unauthorized")?;
    // The OpenAPI document needs no key.
    let doc = rig.request("GET", "/v1/openapi.json", None, &[])?;
    ensure!(
        doc.status == 200 && doc.body["openapi"] == "3.1.0",
        "{doc:?}"
    );
    rig.request("GET", "/v1/nothing", Some(&rig.acme.key), &[])?
        .problem(404, "not-found")?;
    // Webhooks: no private, loopback, link-local or metadata address, no plain
    // http, only known events (the defaults of [webhooks]).
    for (url, events, field) in [
        ("https://127.0.0.1:8443/hook", json!(["delivered"]), "url"),
        ("https://localhost/hook", json!(["delivered"]), "url"),
        (
            "https://169.254.169.254/latest/meta-data",
            json!(["delivered"]),
            "url",
        ),
        ("https://[::1]:8443/", json!(["delivered"]), "url"),
        ("https://10.0.0.7/hook", json!(["delivered"]), "url"),
        ("http://hooks.example.com/", json!(["delivered"]), "url"),
        (
            "https://user:pw@hooks.example.com/",
            json!(["delivered"]),
            "url",
        ),
        ("https://hooks.example.com/", json!(["opened"]), "events[0]"),
        ("https://hooks.example.com/", json!([]), "events"),
    ] {
        let body = json!({"url": url, "events": events}).to_string();
        let a = rig.request(
            "POST",
            "/v1/webhooks",
            Some(&rig.acme.key),
            &["--json", &body],
        )?;
        a.problem(422, "invalid-request")?;
        ensure!(a.field() == field, "{url}: {a:?}");
    }
    let listed = rig.request("GET", "/v1/webhooks", Some(&rig.acme.key), &[])?;
    ensure!(
        listed.status == 200 && listed.body["webhooks"] == json!([]),
        "nothing was made: {listed:?}"
    );
    let a = rig.request("GET", "/v1/messages", Some(&rig.acme.key), &[])?;
    a.problem(405, "method-not-allowed")?;
    ensure!(a.header("Allow") == Some("POST"), "{a:?}");
    // Wrong content type, malformed JSON, a bad field.
    rig.request(
        "POST",
        "/v1/messages",
        Some(&rig.acme.key),
        &[
            "--json",
            &acme(&["a@remote.example"]).to_string(),
            "--content-type",
            "text/plain",
        ],
    )?
    .problem(415, "unsupported-media-type")?;
    rig.request(
        "POST",
        "/v1/messages",
        Some(&rig.acme.key),
        &["--json", "{\"from\": "],
    )?
    .problem(400, "malformed-request")?;
    let a = rig.send_json(
        &rig.acme.key,
        &acme(&["a@remote.example", "not an address"]),
    )?;
    ensure!(
        a.problem(422, "invalid-request")?.field() == "to[1]",
        "{a:?}"
    );
    let a = rig.send_json(&rig.acme.key, &json!({"from": "app@acme.example", "to": ["a@remote.example"], "subject": "s", "text": "t", "colour": "red"}))?;
    ensure!(
        a.problem(422, "invalid-request")?.field() == "colour",
        "{a:?}"
    );
    // A sender outside the tenant's domains, and another tenant's domain.
    let a = rig.send_json(
        &rig.acme.key,
        &message("app@beta.example", &["a@remote.example"]),
    )?;
    ensure!(
        a.problem(422, "invalid-request")?.field() == "from",
        "{a:?}"
    );
    // Over the size limit: declared, and built.
    let big = "x".repeat(70 * 1024);
    let a = rig.send_json(&rig.acme.key, &json!({"from": "app@acme.example", "to": ["a@remote.example"], "subject": "big", "text": big}))?;
    a.problem(413, "too-large")?;
    let file = rig._state.path().join("big.eml");
    std::fs::write(
        &file,
        format!("From: app@acme.example\r\n\r\n{}", "y".repeat(80 * 1024)),
    )?;
    rig.post_file(
        "/v1/messages/raw?from=app@acme.example&to=a@remote.example",
        Some(&rig.acme.key),
        &file,
        "message/rfc822",
    )?
    .problem(413, "too-large")?;

    // Suppression: that recipient is left out; alone, the request is refused.
    rig.cli(&[
        "--json",
        "suppression",
        "add",
        "acme",
        "gone@remote.example",
    ])?;
    let sent = wait_for("the suppression to reach the MTA", FOLLOW, || {
        rig.send_json(
            &rig.acme.key,
            &acme(&["gone@remote.example", "kept@remote.example"]),
        )
        .ok()
        .filter(|a| a.status == 202 && a.body["refused"].as_array().is_some_and(|r| !r.is_empty()))
    })?;
    ensure!(
        sent.body["recipients"] == json!(["kept@remote.example"]),
        "{sent:?}"
    );
    ensure!(
        sent.body["refused"][0]["address"] == "gone@remote.example",
        "{sent:?}"
    );
    rig.send_json(&rig.acme.key, &acme(&["gone@remote.example"]))?
        .problem(422, "recipients-refused")?;

    // beta's hourly budget is one message; acme's key never sends as beta.
    let beta = |to: &[&str]| message("app@beta.example", to);
    let first = rig.send_json(&rig.beta.key, &beta(&["a@remote.example"]))?;
    ensure!(first.status == 202, "{first:?}");
    let a = rig.send_json(&rig.beta.key, &beta(&["a@remote.example"]))?;
    a.problem(429, "rate-limited")?;
    ensure!(a.header("Retry-After").is_some(), "{a:?}");
    // Suspended: 403; revoked: 401.
    rig.cli(&["--json", "tenant", "suspend", "beta"])?;
    wait_for("the suspension to reach the MTA", FOLLOW, || {
        rig.send_json(&rig.beta.key, &beta(&["a@remote.example"]))
            .ok()
            .filter(|a| a.status == 403)
    })?
    .problem(403, "account-disabled")?;
    rig.cli(&["--json", "credential", "revoke", &rig.acme.credential])?;
    wait_for("the revocation to reach the MTA", FOLLOW, || {
        rig.send_json(&rig.acme.key, &acme(&["a@remote.example"]))
            .ok()
            .filter(|a| a.status == 401)
    })?;

    // A brute force from one address is locked out like AUTH.
    let mut last = None;
    for n in 0..=MAX_FAILURES {
        last = Some(rig.send_json(
            &format!("w2m_guess{n}_secret"),
            &acme(&["a@remote.example"]),
        )?);
    }
    let last = last.context("no attempt")?;
    last.problem(429, "locked-out")?;
    ensure!(last.header("Retry-After") == Some("60"), "{last:?}");
    Ok(())
}

#[test]
fn account_endpoints_through_control() -> anyhow::Result<()> {
    let rig = rig(Backend::IoUring, 1024 * 1024)?;
    let key = &rig.acme.key;
    let domains = rig.request("GET", "/v1/domains", Some(key), &[])?;
    ensure!(domains.status == 200, "{domains:?}");
    ensure!(
        domains.body["domains"].as_array().map(Vec::len) == Some(1)
            && domains.body["domains"][0]["domain"] == "acme.example"
            && domains.body["domains"][0]["may_send"] == true,
        "{domains:?}"
    );
    let dns = rig.request("GET", "/v1/domains/acme.example/dns", Some(key), &[])?;
    ensure!(dns.status == 200, "{dns:?}");
    let purposes: Vec<&str> = dns.body["records"]
        .as_array()
        .context("records")?
        .iter()
        .filter_map(|r| r["purpose"].as_str())
        .collect();
    ensure!(
        purposes.contains(&"dkim") && purposes.contains(&"dmarc"),
        "{purposes:?}"
    );
    // Another tenant's domain does not exist for this key.
    rig.request("GET", "/v1/domains/beta.example/dns", Some(key), &[])?
        .problem(404, "not-found")?;

    // A suppression added through the API refuses that recipient.
    let added = rig.request(
        "POST",
        "/v1/suppressions",
        Some(key),
        &[
            "--json",
            r#"{"address": "Gone@Remote.example", "note": "asked to stop"}"#,
        ],
    )?;
    ensure!(added.status == 201, "{added:?}");
    ensure!(added.body["address"] == "gone@remote.example", "{added:?}");
    ensure!(
        added.body["added_by"]
            .as_str()
            .is_some_and(|a| a.starts_with("api:")),
        "{added:?}"
    );
    rig.request(
        "POST",
        "/v1/suppressions",
        Some(key),
        &["--json", r#"{"address": "gone@remote.example"}"#],
    )?
    .problem(409, "exists")?;
    let listed = rig.request("GET", "/v1/suppressions", Some(key), &[])?;
    ensure!(
        listed.body["suppressions"][0]["address"] == "gone@remote.example",
        "{listed:?}"
    );
    let beta_list = rig.request("GET", "/v1/suppressions", Some(&rig.beta.key), &[])?;
    ensure!(beta_list.body["suppressions"] == json!([]), "{beta_list:?}");
    let message = json!({"from": "app@acme.example", "to": ["gone@remote.example"],
                         "subject": "s", "text": "t"});
    wait_for("the suppression to reach the MTA", FOLLOW, || {
        rig.send_json(key, &message)
            .ok()
            .filter(|a| a.status == 422)
    })?
    .problem(422, "recipients-refused")?;
    let removed = rig.request(
        "DELETE",
        "/v1/suppressions/gone%40remote.example",
        Some(key),
        &[],
    )?;
    ensure!(removed.status == 204, "{removed:?}");
    rig.request(
        "DELETE",
        "/v1/suppressions/gone%40remote.example",
        Some(key),
        &[],
    )?
    .problem(404, "not-found")?;
    wait_for("the removal to reach the MTA", FOLLOW, || {
        rig.send_json(key, &message)
            .ok()
            .filter(|a| a.status == 202)
    })?;

    // Every call is in the audit log as the key's, with the tenant.
    let _ = rig.request("GET", "/v1/events", Some(key), &[])?;
    let audit = rig.cli(&["--json", "audit", "list", "--tenant", "acme"])?;
    let entries = audit["entries"].as_array().context("entries")?;
    let by_key = |action: &str| {
        entries.iter().any(|e| {
            e["action"] == action && e["actor"].as_str().is_some_and(|a| a.starts_with("api:"))
        })
    };
    for action in [
        "api.domain.list",
        "api.domain.dns",
        "api.suppression.add",
        "api.suppression.list",
        "api.suppression.remove",
        "api.access",
    ] {
        ensure!(by_key(action), "no {action} entry by the key: {entries:?}");
    }
    Ok(())
}

#[test]
fn one_click_unsubscribe() -> anyhow::Result<()> {
    let rig = rig(Backend::Epoll, 1024 * 1024)?;
    let key = &rig.acme.key;
    rig.cli(&[
        "--json",
        "tenant",
        "update",
        "acme",
        "--list-unsubscribe",
        "on",
    ])?;
    // Sent until the setting reached the MTA: the message arrives with the link.
    let mut n = 0;
    let with_link = wait_for("a message with a List-Unsubscribe link", DELIVERY, || {
        n += 1;
        let marker = format!("unsub-marker-{n}");
        let sent = rig
            .send_json(
                key,
                &json!({"from": "news@acme.example", "to": ["reader@remote.example"],
                        "subject": marker, "text": "news"}),
            )
            .ok()?;
        let id = sent.body["id"].as_str()?.to_string();
        let m = arrived(&rig.sink, &marker).ok()?;
        let text = String::from_utf8_lossy(&m.data).into_owned();
        text.contains("List-Unsubscribe:").then_some((id, m))
    })?;
    let (id, m) = with_link;
    let text = String::from_utf8_lossy(&m.data).into_owned();
    ensure!(
        text.contains("\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"),
        "{text}"
    );
    let verdicts = rig.dns.dkim_verdicts(&m.data)?;
    ensure!(
        !verdicts.is_empty() && verdicts.iter().all(|v| *v == DkimResult::Pass),
        "{verdicts:?}"
    );
    let signature = text
        .split("\r\n")
        .find(|l| l.starts_with("DKIM-Signature:"))
        .context("signature")?;
    let unfolded: String = text[text.find(signature).unwrap_or(0)..]
        .split("\r\n")
        .take_while(|l| l.starts_with("DKIM-Signature:") || l.starts_with([' ', '\t']))
        .collect();
    ensure!(
        unfolded.contains("List-Unsubscribe:List-Unsubscribe-Post")
            || (unfolded.contains("List-Unsubscribe")
                && unfolded.contains("List-Unsubscribe-Post")),
        "not signed: {unfolded}"
    );
    let link = text
        .split("List-Unsubscribe: <")
        .nth(1)
        .and_then(|rest| rest.split('>').next())
        .context("link")?;
    ensure!(
        link.starts_with("https://mx.way2mail.test/v1/unsubscribe/"),
        "{link}"
    );
    let path = &link["https://mx.way2mail.test".len()..];

    // A browser gets a page; junk is 404; the one-click POST works, twice.
    let page = rig.request("GET", path, None, &[])?;
    ensure!(
        page.status == 200 && page.body.as_str().is_some_and(|b| b.contains("<form")),
        "{page:?}"
    );
    rig.request("POST", "/v1/unsubscribe/AAAAinvalid", None, &[])?
        .problem(404, "not-found")?;
    let form = rig._state.path().join("one-click.txt");
    std::fs::write(&form, "List-Unsubscribe=One-Click")?;
    for _ in 0..2 {
        let a = rig.post_file(path, None, &form, "application/x-www-form-urlencoded")?;
        ensure!(a.status == 200 && a.body["unsubscribed"] == true, "{a:?}");
    }
    // The recipient is refused from then on, and the event is in the feed, once.
    let again = json!({"from": "news@acme.example", "to": ["reader@remote.example"],
                       "subject": "after", "text": "x"});
    wait_for("the suppression to reach the MTA", FOLLOW, || {
        rig.send_json(key, &again).ok().filter(|a| a.status == 422)
    })?;
    let events = wait_for("the unsubscribed event", DELIVERY, || {
        let feed = rig
            .request("GET", "/v1/events?limit=1000", Some(key), &[])
            .ok()?;
        let all = feed.body["events"].as_array()?.clone();
        all.iter()
            .any(|e| e["type"] == "unsubscribed")
            .then_some(all)
    })?;
    let unsubscribed: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "unsubscribed")
        .collect();
    ensure!(
        unsubscribed.len() == 1
            && unsubscribed[0]["message_id"] == id.as_str()
            && unsubscribed[0]["recipient"] == "reader@remote.example",
        "{unsubscribed:?}"
    );
    // A message to two recipients carries no link: it could not say who asked.
    let two = rig.send_json(
        key,
        &json!({"from": "news@acme.example", "to": ["a@remote.example", "b@remote.example"],
                "subject": "two-marker", "text": "x"}),
    )?;
    ensure!(two.status == 202, "{two:?}");
    let m = arrived(&rig.sink, "two-marker")?;
    ensure!(
        !String::from_utf8_lossy(&m.data).contains("List-Unsubscribe"),
        "a link for two"
    );
    Ok(())
}

/// `202` comes after the durable spool write: every message the API accepted
/// before a SIGKILL is in the spool afterwards (or was delivered already).
#[test]
fn accepted_api_messages_survive_sigkill() -> anyhow::Result<()> {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Mutex;
    let mut rig = rig(Backend::IoUring, 1024 * 1024)?;
    let acked: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());
    let killed = AtomicBool::new(false);
    std::thread::scope(|s| -> anyhow::Result<()> {
        let rig = &rig;
        for client in 0..6 {
            let (acked, killed) = (&acked, &killed);
            s.spawn(move || {
                for n in 0.. {
                    if killed.load(Ordering::SeqCst) {
                        break;
                    }
                    let marker = format!("KILLMARK-{client}-{n}");
                    let body = json!({"from": "app@acme.example", "to": ["k@remote.example"],
                                      "subject": marker, "text": "durable"});
                    match rig.send_json(&rig.acme.key, &body) {
                        Ok(a) if a.status == 202 => {
                            let id = a.body["id"].as_str().unwrap_or_default().to_string();
                            acked
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .push((id, marker));
                        }
                        _ => {
                            if killed.load(Ordering::SeqCst) {
                                break;
                            }
                        }
                    }
                }
            });
        }
        wait_for("30 acknowledged messages", Duration::from_secs(60), || {
            (acked.lock().unwrap_or_else(|p| p.into_inner()).len() >= 30).then_some(())
        })?;
        rig.daemon.signal(way2mail_tests::Signal::KILL)?;
        killed.store(true, Ordering::SeqCst);
        Ok(())
    })?;
    rig.daemon.wait_exit()?;
    let acked = acked.into_inner().unwrap_or_else(|p| p.into_inner());
    let queued: std::collections::BTreeSet<String> = rig
        .daemon
        .spool_entries()?
        .into_iter()
        .map(|e| e.id)
        .collect();
    let delivered: Vec<String> = rig
        .sink
        .messages()
        .iter()
        .map(|m| String::from_utf8_lossy(&m.data).into_owned())
        .collect();
    for (id, marker) in &acked {
        ensure!(
            queued.contains(id) || delivered.iter().any(|d| d.contains(marker.as_str())),
            "message {id} ({marker}) got 202 and is gone; {} acknowledged",
            acked.len()
        );
    }
    Ok(())
}

/// A CA and a certificate it signed for `localhost` and 127.0.0.1, as PEM files in
/// `dir`: (CA, certificate, key).
fn receiver_certs(dir: &Path) -> anyhow::Result<(PathBuf, PathBuf, PathBuf)> {
    let ca_key = rcgen::KeyPair::generate()?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "webhook test CA");
    let ca = ca_params.self_signed(&ca_key)?;
    let key = rcgen::KeyPair::generate()?;
    let params = rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])?;
    let cert = params.signed_by(&key, &rcgen::Issuer::from_params(&ca_params, &ca_key))?;
    let paths = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&paths.0, ca.pem())?;
    std::fs::write(&paths.1, cert.pem())?;
    std::fs::write(&paths.2, key.serialize_pem())?;
    Ok(paths)
}

/// tests/python/webhook_receiver.py, running: an HTTPS endpoint that checks each
/// post's signature with the secret in `secret` and writes a line per post to `out`.
struct Receiver {
    child: std::process::Child,
    port: u16,
    secret: PathBuf,
    out: PathBuf,
}

impl Receiver {
    fn start(
        dir: &Path,
        name: &str,
        certs: &(PathBuf, PathBuf, PathBuf),
        extra: &[&str],
    ) -> anyhow::Result<Receiver> {
        use std::io::BufRead as _;
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/webhook_receiver.py");
        let (secret, out) = (
            dir.join(format!("{name}.secret")),
            dir.join(format!("{name}.jsonl")),
        );
        let mut child = Command::new("python3")
            .arg(&script)
            .arg("--cert")
            .arg(&certs.1)
            .arg("--key")
            .arg(&certs.2)
            .arg("--secret-file")
            .arg(&secret)
            .arg("--out")
            .arg(&out)
            .args(extra)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .context("starting webhook_receiver.py (is python3 installed?)")?;
        let stdout = child.stdout.take().context("receiver stdout")?;
        let mut line = String::new();
        std::io::BufReader::new(stdout).read_line(&mut line)?;
        let port = match line.trim().parse() {
            Ok(p) => p,
            Err(_) => {
                let _ = child.kill();
                bail!("webhook_receiver.py printed {line:?}, not its port");
            }
        };
        Ok(Receiver {
            child,
            port,
            secret,
            out,
        })
    }

    /// Every post it got so far.
    fn posts(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Every event of the posts it took (signature verified, answered 200).
    fn events(&self) -> Vec<Value> {
        self.posts()
            .into_iter()
            .filter(|p| p["status"] == 200 && p["verified"] == true)
            .flat_map(|p| p["body"]["events"].as_array().cloned().unwrap_or_default())
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Makes a webhook for `tenant_key` posting `events` to `url`; the answer.
fn make_webhook(rig: &Rig, tenant_key: &str, url: &str, events: &[&str]) -> anyhow::Result<Answer> {
    let body = json!({"url": url, "events": events}).to_string();
    let made = rig.request("POST", "/v1/webhooks", Some(tenant_key), &["--json", &body])?;
    ensure!(made.status == 201, "webhook not made: {made:?}");
    ensure!(
        made.body["secret"]
            .as_str()
            .is_some_and(|s| s.starts_with("whsec_"))
            && made.body["id"]
                .as_str()
                .is_some_and(|s| s.starts_with("wh_")),
        "{made:?}"
    );
    Ok(made)
}

#[test]
fn webhooks_signed_retried_disabled_exported_and_erased() -> anyhow::Result<()> {
    let files = tempfile::Builder::new()
        .prefix("way2mail-webhooks-")
        .tempdir()?;
    let certs = receiver_certs(files.path())?;
    // `good` is down for its first two posts; `bad` never takes one.
    let good = Receiver::start(files.path(), "good", &certs, &["--fail-first", "2"])?;
    let bad = Receiver::start(files.path(), "bad", &certs, &["--always-fail"])?;
    let give_up_secs = 6;
    let rig = rig_with(Backend::Epoll, 1024 * 1024, |c| {
        c.set("webhooks", "allow_private", "true")
            .set("webhooks", "ca_file", &toml_str(&certs.0))
            .set("webhooks", "retry_initial_secs", "1")
            .set("webhooks", "retry_max_secs", "1")
            .set("webhooks", "give_up_after_secs", &give_up_secs.to_string())
    })?;

    // The endpoint, by its name (the certificate is checked against it).
    let made = make_webhook(
        &rig,
        &rig.acme.key,
        &format!("https://localhost:{}/hooks?source=way2mail", good.port),
        &["accepted", "delivered", "suppressed"],
    )?;
    let good_id = made.body["id"].as_str().context("id")?.to_string();
    std::fs::write(
        &good.secret,
        made.body["secret"].as_str().context("secret")?,
    )?;
    // Listed without its secret, and only to its tenant.
    let listed = rig.request("GET", "/v1/webhooks", Some(&rig.acme.key), &[])?;
    let hooks = listed.body["webhooks"].as_array().context("webhooks")?;
    ensure!(
        hooks.len() == 1
            && hooks[0]["id"] == good_id.as_str()
            && hooks[0].get("secret").is_none()
            && hooks[0]["enabled"] == true,
        "{listed:?}"
    );
    let theirs = rig.request("GET", "/v1/webhooks", Some(&rig.beta.key), &[])?;
    ensure!(theirs.body["webhooks"] == json!([]), "{theirs:?}");
    let path = format!("/v1/webhooks/{good_id}");
    rig.request("DELETE", &path, Some(&rig.beta.key), &[])?
        .problem(404, "not-found")?;

    // A suppressed address, and a message to it and to another.
    let body = json!({"address": "gone@remote.example"}).to_string();
    let added = rig.request(
        "POST",
        "/v1/suppressions",
        Some(&rig.acme.key),
        &["--json", &body],
    )?;
    ensure!(added.status == 201, "{added:?}");
    let message = |to: &[&str], marker: &str| {
        json!({"from": "app@acme.example", "to": to, "subject": marker, "text": "hello",
               "tags": ["hooked"]})
    };
    wait_for(
        "the suppression and the webhook to reach the MTA",
        FOLLOW,
        || {
            rig.send_json(&rig.acme.key, &message(&["gone@remote.example"], "probe"))
                .ok()
                .filter(|a| a.status == 422)
        },
    )?;
    let sent = rig.send_json(
        &rig.acme.key,
        &message(
            &["hook@remote.example", "gone@remote.example"],
            "hook-marker",
        ),
    )?;
    ensure!(sent.status == 202, "{sent:?}");
    let id = sent.body["id"].as_str().context("id")?.to_string();
    arrived(&rig.sink, "hook-marker")?;

    // Accepted, delivered (the message's) and suppressed (the refused address) reach
    // the receiver signed, after it failed twice.
    let events = wait_for("the events at the receiver", DELIVERY, || {
        let events = good.events();
        let has = |kind: &str, rcpt: &str| {
            events.iter().any(|e| {
                e["type"] == kind
                    && e["recipient"] == rcpt
                    && (kind == "suppressed" || e["message_id"] == id.as_str())
            })
        };
        (has("accepted", "hook@remote.example")
            && has("delivered", "hook@remote.example")
            && has("suppressed", "gone@remote.example"))
        .then_some(events)
    })?;
    let posts = good.posts();
    ensure!(
        posts.iter().take(2).all(|p| p["status"] == 503),
        "the first two posts failed: {posts:?}"
    );
    ensure!(
        posts
            .iter()
            .skip(2)
            .all(|p| p["verified"] == true && p["webhook"] == good_id.as_str()),
        "every later post was signed with the endpoint's secret: {posts:?}"
    );
    let delivered = events
        .iter()
        .find(|e| e["type"] == "delivered" && e["message_id"] == id.as_str())
        .context("delivered")?;
    ensure!(
        delivered["tags"] == json!(["hooked"])
            && delivered["id"].as_str().is_some_and(|s| s.len() == 32),
        "{delivered}"
    );

    // An endpoint that takes nothing is disabled after the retry period, and the
    // tenant's contact gets a letter.
    let made = make_webhook(
        &rig,
        &rig.acme.key,
        &format!("https://127.0.0.1:{}/", bad.port),
        &["accepted"],
    )?;
    let bad_id = made.body["id"].as_str().context("id")?.to_string();
    std::fs::write(&bad.secret, made.body["secret"].as_str().context("secret")?)?;
    wait_for("the second endpoint to reach the MTA", FOLLOW, || {
        let sent = rig
            .send_json(
                &rig.acme.key,
                &message(&["bad@remote.example"], "bad-marker"),
            )
            .ok()?;
        std::thread::sleep(Duration::from_millis(1500));
        (sent.status == 202 && !bad.posts().is_empty()).then_some(())
    })?;
    let disabled = wait_for(
        "the failing endpoint to be disabled",
        Duration::from_secs(give_up_secs + 30),
        || {
            let listed = rig
                .request("GET", "/v1/webhooks", Some(&rig.acme.key), &[])
                .ok()?;
            listed.body["webhooks"]
                .as_array()?
                .iter()
                .find(|w| w["id"] == bad_id.as_str() && w["enabled"] == false)
                .cloned()
        },
    )?;
    ensure!(
        disabled["disabled_reason"]
            .as_str()
            .is_some_and(|r| r.contains("HTTP 500")),
        "{disabled}"
    );
    ensure!(bad.posts().len() >= 2, "retried: {:?}", bad.posts());
    // The tenant enables it again itself.
    let path = format!("/v1/webhooks/{bad_id}/enable");
    let enabled = rig.request("POST", &path, Some(&rig.acme.key), &[])?;
    ensure!(
        enabled.status == 200
            && enabled.body["enabled"] == true
            && enabled.body.get("secret").is_none(),
        "{enabled:?}"
    );
    rig.request("POST", &path, Some(&rig.beta.key), &[])?
        .problem(404, "not-found")?;
    let letter = arrived(&rig.sink, &bad_id)?;
    ensure!(
        letter.rcpt_to == ["ops@example.org"],
        "to the tenant's contact: {:?}",
        letter.rcpt_to
    );

    // An endpoint nobody answers keeps its events in the outbox; an idempotent send
    // keeps its answer: both are in the tenant's export.
    let closed = way2mail_tests::ClosedPort::new()?;
    make_webhook(
        &rig,
        &rig.acme.key,
        &format!("https://127.0.0.1:{}/", closed.port),
        &["accepted"],
    )?;
    std::thread::sleep(FOLLOW);
    let kept = rig.send_idempotent(
        &rig.acme.key,
        &message(&["late@remote.example"], "late-marker"),
        "late-1",
    )?;
    ensure!(kept.status == 202, "{kept:?}");
    let archive = files.path().join("acme.tar");
    rig.control
        .run_as(
            &rig.admin,
            &[
                "tenant",
                "export",
                "acme",
                "--out",
                &archive.display().to_string(),
            ],
        )?
        .ok()?;
    let extracted = files.path().join("extracted");
    way2mail_tests::control::untar(&archive, &extracted)?;
    let base = extracted.join("acme-export");
    let webhooks: Value = serde_json::from_slice(&std::fs::read(base.join("webhooks.json"))?)?;
    let listed = webhooks
        .as_array()
        .or_else(|| webhooks["webhooks"].as_array());
    ensure!(
        listed.is_some_and(|l| l.len() == 3 && l.iter().all(|w| w.get("secret").is_none())),
        "{webhooks}"
    );
    let outbox = std::fs::read_to_string(base.join("webhook-outbox/0001.jsonl"))?;
    ensure!(
        outbox.lines().any(|l| l.contains("late@remote.example")),
        "the waiting event is exported: {outbox}"
    );
    let requests = std::fs::read_to_string(base.join("api-requests.json"))?;
    ensure!(
        requests.contains("late-marker")
            || requests.contains(kept.body["id"].as_str().unwrap_or("-")),
        "{requests}"
    );

    // Erasure takes the outbox and the kept answers with the rest.
    rig.control
        .run_as(
            &rig.admin,
            &[
                "tenant",
                "erase",
                "acme",
                "--confirm",
                "acme",
                "--out",
                &files.path().join("receipt.json").display().to_string(),
            ],
        )?
        .ok()?;
    let mut rig = rig;
    rig.daemon.terminate()?;
    let master = way2mail_seal::MasterKey::load_or_create(&rig.daemon.spool_key_path())?;
    let keyring = way2mail_seal::Keyring::open_existing(&rig.daemon.spool_keyring_path(), master)?;
    let report = way2mail_queue::verify(&rig.daemon.spool_dir(), &keyring, &Default::default())?;
    ensure!(
        report.webhook_events == 0 && report.idempotency == 0,
        "left after erasure: {report:?}"
    );
    Ok(())
}
