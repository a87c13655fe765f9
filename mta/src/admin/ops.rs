//! One admin request: parsed (version, known op, arguments), its tenant name
//! checked, run against the spool or the sweeper, answered, and logged in one line
//! (op, caller uid, tenant id, outcome, duration; never message data).

use std::io;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;
use way2mail_daemon::Caller;
use way2mail_queue::Spool;
use way2mail_wire::mta_admin::{
    AdminOp, AdminRequest, AdminResult, MtaErasure, MtaInventory, RouteInfo, VERSION,
};
use way2mail_wire::protocol::{check_tenant_id, shorten, ErrorBody, ErrorCode};

use super::answer::{failure, internal, write, Answer};
use super::{deliverability, export, queue};
use crate::config::delivery::RouteConfig;
use crate::config::Settings;
use crate::current::Current;
use crate::retention::Sweeper;

/// Every op name this build serves, as on the wire.
const OPS: [&str; 15] = [
    "hello",
    "tenant.inventory",
    "tenant.export",
    "tenant.erase",
    "retention.run",
    "backup.dump",
    "routes",
    "queue.summary",
    "queue.list",
    "queue.show",
    "queue.change",
    "delivery.log",
    "deliverability",
    "dmarc",
    "drain",
];

/// What the admin ops work on.
pub struct Ops {
    pub spool: Spool,
    pub sweeper: Arc<Sweeper>,
    /// The settings in force: `routes` follows reloads; bounces of `queue.change`
    /// are reported by its host name.
    pub settings: Arc<Current<Settings>>,
    /// `drain`: what it sets, and what it watches.
    pub drain: Arc<crate::drain::Drain>,
    pub limiter: Arc<crate::limits::ConnectionLimiter>,
}

/// How a request ended, for its log line.
enum RequestOutcome {
    Ok,
    Failed(ErrorCode),
}

impl Ops {
    /// The `[[route]]`s as `routes` lists them: no credentials, only whether there are.
    pub fn route_infos(routes: &[RouteConfig]) -> Vec<RouteInfo> {
        routes
            .iter()
            .map(|r| RouteInfo {
                domains: vec![r.domain.to_ascii_lowercase()],
                hosts: vec![r.host.clone()],
                tls: r.tls.to_ascii_lowercase(),
                authenticated: r.auth.is_some(),
            })
            .collect()
    }

    /// Removes the dump scratch files a crashed process left beside the spool.
    pub(super) fn remove_stale_dumps(&self) {
        way2mail_daemon::files::Scratch::remove_stale(self.spool.path(), export::DUMP_SCRATCH);
    }

    /// Answers one request line (several lines for streamed ops). `Err` only when
    /// writing to the peer failed: the connection is over.
    pub(super) fn answer(
        &self,
        line: &[u8],
        caller: &Caller,
        out: &mut UnixStream,
    ) -> io::Result<()> {
        let started = Instant::now();
        let (id, op, tenant, outcome) = match parse(line) {
            Err((id, error)) => {
                let code = error.code;
                write(out, id, Err(error))?;
                (id, "(unparsed)", None, RequestOutcome::Failed(code))
            }
            Ok(request) => {
                let name = request.op.name();
                let tenant = tenant_of(&request.op).map(str::to_owned);
                let outcome = self.run(request.id, request.op, caller, out)?;
                (request.id, name, tenant, outcome)
            }
        };
        let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let tenant = tenant
            .as_deref()
            .filter(|t| check_tenant_id(t).is_ok())
            .unwrap_or("");
        match outcome {
            RequestOutcome::Ok => tracing::info!(
                target: "way2mail::admin",
                id,
                op,
                uid = caller.uid,
                tenant,
                outcome = "ok",
                duration_ms,
                "admin request"
            ),
            RequestOutcome::Failed(code) => tracing::warn!(
                target: "way2mail::admin",
                id,
                op,
                uid = caller.uid,
                tenant,
                outcome = ?code,
                duration_ms,
                "admin request failed"
            ),
        }
        Ok(())
    }

    fn run(
        &self,
        id: u64,
        op: AdminOp,
        caller: &Caller,
        out: &mut UnixStream,
    ) -> io::Result<RequestOutcome> {
        if let Some(t) = tenant_of(&op) {
            if let Err(e) = check_tenant(t) {
                let code = e.code;
                write(out, id, Err(e))?;
                return Ok(RequestOutcome::Failed(code));
            }
        }
        let answer = match op {
            AdminOp::Hello => Ok(AdminResult::Hello {
                daemon_version: env!("CARGO_PKG_VERSION").into(),
                caller: format!("uid:{}", caller.uid),
            }),
            AdminOp::TenantInventory { tenant } => self.inventory(&tenant),
            AdminOp::TenantErase { tenant } => self.erase(&tenant),
            AdminOp::RetentionRun => self.sweep(),
            AdminOp::Deliverability { tenant, since_ms } => {
                deliverability::report(&self.spool, &tenant, since_ms)
            }
            AdminOp::Dmarc {
                tenant,
                domain,
                since_ms,
            } => {
                crate::feedback_loop::dmarc_intake::summary(&self.spool, &tenant, &domain, since_ms)
                    .map(AdminResult::Dmarc)
                    .map_err(|e| internal("reading the DMARC reports", &e))
            }
            AdminOp::Drain {
                stop_when_empty,
                handover,
                peer_name,
            } => self.drain(stop_when_empty, handover, peer_name),
            AdminOp::Routes => Ok(AdminResult::Routes {
                routes: Ops::route_infos(&self.settings.get().raw.routes),
            }),
            AdminOp::QueueSummary { filter } => queue::summary(&self.spool, &filter),
            AdminOp::QueueList { filter, limit } => queue::list(&self.spool, &filter, limit),
            AdminOp::QueueShow { id } => queue::show(&self.spool, &id),
            AdminOp::QueueChange {
                action,
                selection,
                dry_run,
            } => queue::change(
                &self.spool,
                &self.settings.get().raw.hostname,
                action,
                &selection,
                dry_run,
            ),
            AdminOp::DeliveryLog {
                message,
                recipient,
                since_ms,
                limit,
            } => queue::delivery_log(&self.spool, message.as_deref(), recipient, since_ms, limit),
            // The streamed ops write their own lines and frames.
            AdminOp::TenantExport { tenant } => {
                return export::tenant(&self.spool, &tenant, id, out).map(outcome_of)
            }
            AdminOp::BackupDump => return export::dump(&self.spool, id, out).map(outcome_of),
        };
        let outcome = outcome_of(answer.as_ref().map(|_| ()).map_err(|e| e.code));
        write(out, id, answer)?;
        Ok(outcome)
    }

    fn inventory(&self, tenant: &str) -> Answer {
        let inv = self
            .spool
            .tenant_inventory(tenant)
            .map_err(|e| internal("counting the tenant's spool data", &e))?;
        Ok(AdminResult::Inventory(MtaInventory {
            key_id: inv.key_id.map(|k| k.to_string()),
            messages: inv.messages,
            bytes: inv.bytes,
            oldest_message_ms: inv.oldest_message_ms,
            log_records: inv.log.records,
            oldest_log_ms: inv.log.oldest_ms,
            erased_at_ms: self.spool.keyring().erasure(tenant).map(|e| e.at_ms),
        }))
    }

    fn erase(&self, tenant: &str) -> Answer {
        let done = self
            .spool
            .erase_tenant(tenant)
            .map_err(|e| internal("erasing the tenant", &e))?;
        tracing::warn!(
            %tenant,
            messages = done.messages,
            log_records = done.log_records,
            "tenant erased through the admin socket"
        );
        Ok(AdminResult::Erased(MtaErasure {
            key_id: done.erasure.key_id.map(|k| k.to_string()),
            messages: done.messages,
            log_records: done.log_records,
            erased_at_ms: done.erasure.at_ms,
        }))
    }

    /// `drain`: with `handover`, the queue goes to that peer (its certificate
    /// checked first, so that a wrong peer is an error here, not a WARN later).
    fn drain(
        &self,
        stop_when_empty: bool,
        handover: Option<String>,
        peer_name: Option<String>,
    ) -> Answer {
        let sender = match handover {
            None => None,
            Some(address) => {
                let name = peer_name.unwrap_or_else(|| {
                    address
                        .rsplit_once(':')
                        .map_or(address.as_str(), |(host, _)| host)
                        .trim_matches(['[', ']'])
                        .to_string()
                });
                let config = self.settings.get().raw.handover.clone();
                let sender = crate::handover::Sender::new(&config, &address, &name)
                    .and_then(|mut s| s.check().map(|()| s))
                    .map_err(|e| {
                        failure(ErrorCode::Invalid, format!("handover to {address}: {e:#}"))
                    })?;
                Some(sender)
            }
        };
        Ok(AdminResult::Draining {
            started: self
                .drain
                .start(stop_when_empty, sender, &self.spool, &self.limiter),
            queued: self.spool.len() as u64,
        })
    }

    fn sweep(&self) -> Answer {
        match self.sweeper.sweep("admin") {
            Ok(report) => Ok(AdminResult::Swept(report)),
            Err(failed) => {
                let (messages, records): (u64, u64) =
                    failed.partial.entries.iter().fold((0, 0), |(m, r), e| {
                        (m + e.messages_removed, r + e.log_records_removed)
                    });
                Err(failure(
                    ErrorCode::Internal,
                    format!(
                        "the sweep stopped at a spool error after removing {messages} messages \
                         and {records} log records: {}",
                        failed.error
                    ),
                ))
            }
        }
    }
}

fn outcome_of<T>(result: Result<T, ErrorCode>) -> RequestOutcome {
    match result {
        Ok(_) => RequestOutcome::Ok,
        Err(code) => RequestOutcome::Failed(code),
    }
}

/// The request, or the id to answer with and why it is refused.
fn parse(line: &[u8]) -> Result<AdminRequest, (u64, ErrorBody)> {
    let value: Value = serde_json::from_slice(line)
        .map_err(|e| (0, failure(ErrorCode::BadRequest, format!("not JSON: {e}"))))?;
    let id = value.get("id").and_then(Value::as_u64).unwrap_or(0);
    let refuse = |code, message: String| Err((id, failure(code, message)));
    match value.get("v").and_then(Value::as_u64) {
        Some(v) if v == u64::from(VERSION) => {}
        Some(v) => {
            return refuse(
                ErrorCode::UnsupportedVersion,
                format!("protocol version {v}; this MTA speaks {VERSION}"),
            )
        }
        None => return refuse(ErrorCode::BadRequest, "no protocol version \"v\"".into()),
    }
    let Some(op) = value.get("op").and_then(Value::as_str) else {
        return refuse(ErrorCode::BadRequest, "no \"op\"".into());
    };
    if !OPS.contains(&op) {
        return refuse(
            ErrorCode::UnknownOp,
            format!("unknown op {:?}; known: {}", shorten(op), OPS.join(", ")),
        );
    }
    let op = op.to_owned();
    serde_json::from_value(value).or_else(|e| {
        refuse(
            ErrorCode::BadRequest,
            format!("bad arguments for {op}: {e}"),
        )
    })
}

fn tenant_of(op: &AdminOp) -> Option<&str> {
    match op {
        AdminOp::TenantInventory { tenant }
        | AdminOp::TenantExport { tenant }
        | AdminOp::TenantErase { tenant }
        | AdminOp::Deliverability { tenant, .. }
        | AdminOp::Dmarc { tenant, .. } => Some(tenant),
        AdminOp::QueueSummary { filter } | AdminOp::QueueList { filter, .. } => {
            filter.tenant.as_deref()
        }
        AdminOp::QueueChange { selection, .. } => selection.filter.tenant.as_deref(),
        AdminOp::Hello
        | AdminOp::RetentionRun
        | AdminOp::BackupDump
        | AdminOp::Routes
        | AdminOp::QueueShow { .. }
        | AdminOp::DeliveryLog { .. }
        | AdminOp::Drain { .. } => None,
    }
}

fn check_tenant(t: &str) -> Result<(), ErrorBody> {
    check_tenant_id(t).map_err(|e| failure(ErrorCode::Invalid, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(line: &str) -> (u64, ErrorCode, String) {
        let (id, e) = parse(line.as_bytes()).expect_err("refused");
        (id, e.code, e.message)
    }

    #[test]
    fn requests_are_parsed_or_refused_with_the_right_code() {
        let r = parse(br#"{"v":1,"id":3,"op":"tenant.export","args":{"tenant":"acme"}}"#)
            .expect("parse");
        assert_eq!(
            (r.id, r.op),
            (
                3,
                AdminOp::TenantExport {
                    tenant: "acme".into()
                }
            )
        );
        assert_eq!(refused("{").1, ErrorCode::BadRequest);
        assert_eq!(refused(r#"{"id":4,"op":"hello"}"#).0, 4);
        assert_eq!(
            refused(r#"{"v":2,"id":5,"op":"hello"}"#).1,
            ErrorCode::UnsupportedVersion
        );
        let (id, code, message) = refused(r#"{"v":1,"id":6,"op":"spool.drop"}"#);
        assert_eq!((id, code), (6, ErrorCode::UnknownOp));
        assert!(message.contains("tenant.export"), "{message}");
        let (_, code, message) = refused(r#"{"v":1,"op":"tenant.erase","args":{}}"#);
        assert_eq!(code, ErrorCode::BadRequest);
        assert!(message.contains("tenant"), "{message}");
        assert_eq!(
            refused(r#"{"v":1,"op":"tenant.erase","args":{"tenant":"a","all":true}}"#).1,
            ErrorCode::BadRequest,
            "unknown arguments"
        );
    }

    #[test]
    fn every_op_is_listed() {
        let ops = [
            AdminOp::Hello,
            AdminOp::TenantInventory { tenant: "a".into() },
            AdminOp::TenantExport { tenant: "a".into() },
            AdminOp::TenantErase { tenant: "a".into() },
            AdminOp::RetentionRun,
            AdminOp::BackupDump,
            AdminOp::Routes,
            AdminOp::QueueSummary {
                filter: Default::default(),
            },
            AdminOp::QueueList {
                filter: Default::default(),
                limit: None,
            },
            AdminOp::QueueShow { id: "x".into() },
            AdminOp::QueueChange {
                action: way2mail_wire::queue::QueueAction::Hold,
                selection: Default::default(),
                dry_run: true,
            },
            AdminOp::DeliveryLog {
                message: None,
                recipient: None,
                since_ms: None,
                limit: None,
            },
            AdminOp::Deliverability {
                tenant: "a".into(),
                since_ms: 0,
            },
            AdminOp::Dmarc {
                tenant: "a".into(),
                domain: "a.example".into(),
                since_ms: 0,
            },
            AdminOp::Drain {
                stop_when_empty: false,
                handover: None,
                peer_name: None,
            },
        ];
        for op in &ops {
            assert!(OPS.contains(&op.name()), "{}", op.name());
        }
        assert_eq!(ops.len(), OPS.len());
    }

    #[test]
    fn tenant_ids_follow_controls_rule() {
        for ok in ["acme", "a", "0day", "acme-eu-2", &"a".repeat(63)] {
            assert!(check_tenant(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-acme",
            "Acme",
            "ac me",
            "acme\n",
            "acme\u{0}",
            "a/../b",
            "ünï",
            &"a".repeat(64),
        ] {
            let e = check_tenant(bad).expect_err(bad);
            assert_eq!(e.code, ErrorCode::Invalid);
            assert!(!e.message.contains('\n'), "{:?}", e.message);
        }
        let long = "x".repeat(4000);
        assert!(check_tenant(&long).expect_err("long").message.len() < 300);
    }

    #[test]
    fn routes_are_listed_without_credentials() {
        let config = crate::config::Config::parse(
            "[[route]]\ndomain = \"Partner.example\"\nhost = \"smtp.partner.example:587\"\n\
             tls = \"Required\"\nauth = { user = \"u\", password_file = \"/secret\" }\n\
             [[route]]\ndomain = \"*\"\nhost = \"[192.0.2.1]:25\"\n",
        )
        .expect("config");
        let routes = config.routes;
        let infos = Ops::route_infos(&routes);
        assert_eq!(
            infos,
            vec![
                RouteInfo {
                    domains: vec!["partner.example".into()],
                    hosts: vec!["smtp.partner.example:587".into()],
                    tls: "required".into(),
                    authenticated: true,
                },
                RouteInfo {
                    domains: vec!["*".into()],
                    hosts: vec!["[192.0.2.1]:25".into()],
                    tls: "opportunistic".into(),
                    authenticated: false,
                },
            ]
        );
        let text = serde_json::to_string(&infos).expect("json");
        assert!(
            !text.contains("secret") && !text.contains("\"u\""),
            "{text}"
        );
    }
}
