//! A tenant export with webhooks: `webhooks.json` lists the endpoints without their
//! secrets, `webhook-outbox/0001.jsonl` holds the MTA's undelivered events one a line,
//! times in RFC 3339 (the MTA's part comes from a stand-in for its admin socket).

mod support;

use std::time::Duration;

use support::mta_admin::{serve_export, untar, Sink};
use support::{settings, Harness, USER};
use way2mail_wire::mta_admin::ExportItem;
use way2mail_wire::protocol::{Request, RequestEnvelope, Response, VERSION};

#[test]
fn the_export_holds_the_endpoints_without_secrets_and_the_outbox() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("mta.sock");
    let mut s = settings(Duration::from_secs(3600));
    s.mta.admin_socket = Some(socket.clone());
    let h = Harness::with_settings(s);
    let (admin, _) = h.admin();
    h.add_tenant(&admin, "acme");
    let w = match h.op(
        &admin,
        Request::WebhookAdd {
            tenant: "acme".into(),
            url: "https://hooks.acme.example/w2m".into(),
            events: vec!["bounced".into()],
        },
    ) {
        Ok(Response::Webhooks { webhooks }) => webhooks[0].clone(),
        other => panic!("webhook.add: {other:?}"),
    };
    let secret = w.secret.clone().expect("secret");
    let record = |recipient: &str, time_ms: u64| way2mail_queue::DeliveryRecord {
        time_ms,
        outcome: way2mail_queue::DeliveryOutcome::Bounced,
        message_id: "01JEQ7ZK3M8R2W5Y9C4D6F1H0T".into(),
        recipient: recipient.into(),
        next_hop: None,
        ip: None,
        tls: None,
        reply: Some("550 5.1.1 no such user".into()),
        attempt: 1,
        queue_time_ms: 5,
        tags: Vec::new(),
        metadata: Default::default(),
        category: None,
        scan: None,
    };
    let events: Vec<String> = [
        (
            record("a@remote.example", 1_796_000_000_000),
            2,
            Some("HTTP 500"),
        ),
        (record("b@remote.example", 1_796_000_001_000), 0, None),
    ]
    .into_iter()
    .enumerate()
    .map(|(n, (event, attempts, error))| {
        serde_json::json!({
            "id": format!("e{n}"), "webhook": "wh_1", "event": event,
            "created_ms": event.time_ms, "attempts": attempts,
            "next_attempt_ms": event.time_ms + 60_000, "last_error": error,
        })
        .to_string()
    })
    .collect();
    serve_export(
        &socket,
        "acme",
        events
            .iter()
            .map(|e| ExportItem::WebhookEvent(e.as_bytes().to_vec()))
            .collect(),
    );
    let mut sink = Sink::default();
    let manifest = match h.service.handle_stream(
        &USER,
        RequestEnvelope {
            v: VERSION,
            id: 1,
            token: Some(admin.clone()),
            reason: None,
            request: Request::TenantExport {
                tenant: "acme".into(),
            },
        },
        &mut sink,
    ) {
        Ok(Response::TenantExported(m)) => m,
        other => panic!("tenant.export: {other:?}"),
    };
    let files = untar(&sink.0);
    for name in ["webhooks.json", "webhook-outbox/0001.jsonl"] {
        let path = format!("acme-export/{name}");
        assert!(files.contains_key(&path), "{path} in {:?}", files.keys());
        assert!(
            manifest.files.iter().any(|f| f.path == path),
            "{path} in the manifest"
        );
    }
    let listed: serde_json::Value =
        serde_json::from_str(&files["acme-export/webhooks.json"]).expect("json");
    assert_eq!(listed[0]["id"], w.id.as_str());
    assert_eq!(listed[0]["url"], "https://hooks.acme.example/w2m");
    assert_eq!(listed[0]["events"], serde_json::json!(["bounced"]));
    assert!(listed[0]["created_at"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z')));
    assert!(listed[0].get("secret").is_none());
    let random = secret.strip_prefix("whsec_").expect("whsec_");
    assert!(
        files.values().all(|f| !f.contains(random)),
        "the secret is nowhere in the archive"
    );
    // One a line, in the export's form: times in RFC 3339.
    let lines: Vec<serde_json::Value> = files["acme-export/webhook-outbox/0001.jsonl"]
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["id"], "e0");
    assert_eq!(lines[0]["attempts"], 2);
    assert_eq!(lines[0]["last_error"], "HTTP 500");
    assert_eq!(lines[0]["event"]["recipient"], "a@remote.example");
    assert_eq!(lines[0]["event"]["outcome"], "bounced");
    for line in &lines {
        for time in [
            &line["created_at"],
            &line["next_attempt_at"],
            &line["event"]["time"],
        ] {
            assert!(time.as_str().is_some_and(|t| t.ends_with('Z')), "{line}");
        }
        assert!(line.get("created_ms").is_none(), "{line}");
    }
    let entry = h.last_audit("tenant.export");
    let detail = entry.detail.expect("detail");
    assert!(
        detail.contains("1 webhook endpoints, 2 webhook events not delivered yet"),
        "{detail}"
    );
}
