//! Content scanning with rspamd (docs/scanning.md): each message of the kinds
//! `[scan] roles` names is posted to rspamd's `/checkv2` before it is signed, and
//! rspamd's action decides what becomes of it.
//!
//! ```text
//!   reject                    refused: 550 5.7.1 (API: 422 naming the symbols)
//!   soft reject, greylist     refused for now: 451 4.7.1 (API: 503)
//!   add header                X-Spam: Yes and rspamd's milter headers, then signed
//!   rewrite subject           Subject: as rspamd wrote it, then signed
//!   no action                 as it is
//!   score >= hold_score       queued held for review (`way2mail queue release`)
//! ```
//!
//! The scan is one HTTP/1.1 exchange over a tokio `TcpStream`, awaited by the
//! session's task: a slow rspamd delays that session only, never its core. A scan
//! that fails (connection refused, `timeout_ms`, a garbled answer) follows
//! `[scan] on_failure`.

mod client;
mod headers;

use std::time::Instant;

use way2mail_smtp::reply::{EnhancedCode, Reply};
use way2mail_smtp::server::Role;
use way2mail_smtp::{Envelope, MessageId};

use crate::config::scan::{OnFailure, ScanConfig, ScanRole};

pub use self::client::{Action, Target, Verdict};

/// How many symbols the log line and the API's refusal name, the heaviest first.
const TOP_SYMBOLS: usize = 10;

/// The scan role of an SMTP listener's mail.
pub fn role_of(role: Role) -> ScanRole {
    match role {
        Role::Mx => ScanRole::Mx,
        Role::Submission => ScanRole::Submission,
        Role::Submissions => ScanRole::Submissions,
    }
}

/// What a scan made of a message that may be queued.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// `score=… action=… symbols=A,B` for the "message queued" line.
    pub summary: String,
    /// Queue it held for review.
    pub hold: bool,
    /// What the envelope keeps, for the message's delivery log records.
    pub result: way2mail_smtp::ScanResult,
}

/// Why a scan refuses a message.
#[derive(Debug, Clone)]
pub enum Refusal {
    /// rspamd said `reject`: the symbols that made it so, the heaviest first.
    Reject { symbols: Vec<String>, score: f64 },
    /// rspamd said `soft reject` or `greylist`, or it could not be asked and
    /// `on_failure = "tempfail"`.
    Tempfail { why: String },
}

impl Refusal {
    /// The SMTP reply.
    pub fn reply(&self) -> Reply {
        match self {
            Refusal::Reject { .. } => {
                Reply::new(550, EnhancedCode::new(5, 7, 1), "Message refused as spam")
            }
            Refusal::Tempfail { .. } => {
                Reply::new(451, EnhancedCode::new(4, 7, 1), "Try again later")
            }
        }
    }

    /// For the "message refused" line.
    pub fn describe(&self) -> String {
        match self {
            Refusal::Reject { symbols, score } => {
                format!("reject score={score:.2} symbols={}", symbols.join(","))
            }
            Refusal::Tempfail { why } => why.clone(),
        }
    }

    /// The `rejected` metric's reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::Reject { .. } => "spam",
            Refusal::Tempfail { .. } => "scan_tempfail",
        }
    }
}

/// What a scan returns: the message (with the headers rspamd asked for) and the
/// outcome, or the refusal.
pub type Scanned = Result<(Vec<u8>, Option<Outcome>), Refusal>;

/// Whether mail of `role` of `size` octets is scanned at all.
pub fn applies(config: &ScanConfig, role: ScanRole, size: u64) -> bool {
    config.enabled() && config.roles.contains(&role) && size <= config.max_size
}

/// Scans `message` if `[scan]` covers it; otherwise returns it as it is.
pub async fn scan(
    config: &ScanConfig,
    role: ScanRole,
    id: &MessageId,
    envelope: &Envelope,
    message: Vec<u8>,
) -> Scanned {
    if !config.enabled() || !config.roles.contains(&role) {
        return Ok((message, None));
    }
    if message.len() as u64 > config.max_size {
        metrics::counter!(SCAN_TOTAL, "action" => "skipped_size").increment(1);
        return Ok((message, None));
    }
    describe();
    let started = Instant::now();
    let result = client::check(config, id, envelope, &message).await;
    metrics::histogram!(SCAN_SECONDS).record(started.elapsed().as_secs_f64());
    let verdict = match result {
        Ok(v) => v,
        Err(failure) => {
            metrics::counter!(SCAN_FAILURES, "reason" => failure.reason()).increment(1);
            tracing::warn!(%id, role = role.as_str(), error = %failure, on_failure = ?config.on_failure, "content scan failed");
            return match config.on_failure {
                OnFailure::Accept => Ok((
                    message,
                    Some(Outcome {
                        summary: format!("failed ({})", failure.reason()),
                        hold: false,
                        result: way2mail_smtp::ScanResult {
                            action: "failed".into(),
                            score: 0.0,
                            required_score: 0.0,
                            symbols: Vec::new(),
                            held: false,
                        },
                    }),
                )),
                OnFailure::Tempfail => Err(Refusal::Tempfail {
                    why: format!("scan failed: {failure}"),
                }),
            };
        }
    };
    metrics::counter!(SCAN_TOTAL, "action" => verdict.action.as_metric()).increment(1);
    decide(config, verdict, message)
}

/// rspamd's answer applied to the message.
fn decide(config: &ScanConfig, verdict: Verdict, message: Vec<u8>) -> Scanned {
    let symbols = verdict.top_symbols(TOP_SYMBOLS);
    match verdict.action {
        Action::Reject => {
            return Err(Refusal::Reject {
                symbols,
                score: verdict.score,
            })
        }
        Action::SoftReject | Action::Greylist => {
            return Err(Refusal::Tempfail {
                why: format!(
                    "{} score={:.2} symbols={}",
                    verdict.action.as_str(),
                    verdict.score,
                    symbols.join(",")
                ),
            })
        }
        _ => {}
    }
    let message = match verdict.action {
        Action::AddHeader => headers::add_header(message, &verdict.add_headers),
        Action::RewriteSubject => match &verdict.subject {
            Some(subject) => headers::rewrite_subject(message, subject),
            None => message,
        },
        _ => message,
    };
    let hold = config.hold_score.is_some_and(|h| verdict.score >= h);
    let result = way2mail_smtp::ScanResult {
        action: verdict.action.as_metric().to_owned(),
        score: verdict.score,
        required_score: verdict.required_score,
        symbols,
        held: hold,
    };
    let summary = result.to_string();
    Ok((
        message,
        Some(Outcome {
            summary,
            hold,
            result,
        }),
    ))
}

pub const SCAN_TOTAL: &str = "way2mail_scan_total";
pub const SCAN_SECONDS: &str = "way2mail_scan_seconds";
pub const SCAN_FAILURES: &str = "way2mail_scan_failures_total";
pub const SCAN_HELD: &str = "way2mail_scan_held_total";

/// Says what the scan metrics mean, once (the recorder is installed by then).
fn describe() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        metrics::describe_counter!(
            SCAN_TOTAL,
            "content scans by rspamd's action (no_action, add_header, rewrite_subject, greylist, soft_reject, reject), and skipped_size"
        );
        metrics::describe_histogram!(SCAN_SECONDS, "one content scan, connect to answer");
        metrics::describe_counter!(
            SCAN_FAILURES,
            "content scans that failed, by reason (connect, timeout, http_status, protocol)"
        );
        metrics::describe_counter!(
            SCAN_HELD,
            "messages queued held for review (their score at or above scan.hold_score)"
        );
    });
}

/// A message queued held for review.
pub fn held() {
    metrics::counter!(SCAN_HELD).increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(action: Action, score: f64) -> Verdict {
        Verdict {
            action,
            score,
            required_score: 15.0,
            symbols: vec![("GTUBE".into(), 0.0), ("HEAVY".into(), 9.0)],
            add_headers: Vec::new(),
            subject: Some("*** SPAM *** hi".into()),
        }
    }

    fn config(hold: Option<f64>) -> ScanConfig {
        ScanConfig {
            rspamd: "http://127.0.0.1:11333".into(),
            hold_score: hold,
            ..ScanConfig::default()
        }
    }

    const MSG: &[u8] = b"From: a@b\r\nSubject: hi\r\n\r\nbody\r\n";

    #[test]
    fn scan_reject_names_symbols_heaviest_first() {
        let r = decide(&config(None), verdict(Action::Reject, 1000.0), MSG.to_vec());
        let Err(Refusal::Reject { symbols, .. }) = r else {
            panic!("not refused")
        };
        assert_eq!(symbols, ["HEAVY", "GTUBE"]);
        assert_eq!(
            Refusal::Reject {
                symbols,
                score: 0.0
            }
            .reply()
            .code,
            550
        );
    }

    #[test]
    fn scan_soft_reject_and_greylist_tempfail() {
        for a in [Action::SoftReject, Action::Greylist] {
            let r = decide(&config(None), verdict(a, 5.0), MSG.to_vec());
            assert_eq!(r.unwrap_err().reply().code, 451);
        }
    }

    #[test]
    fn scan_hold_score_and_headers() {
        let (m, o) = decide(
            &config(Some(6.0)),
            verdict(Action::AddHeader, 7.0),
            MSG.to_vec(),
        )
        .unwrap();
        assert!(o.unwrap().hold);
        assert!(m.starts_with(b"X-Spam: Yes\r\n"));
        let (m, o) = decide(
            &config(Some(6.0)),
            verdict(Action::RewriteSubject, 5.0),
            MSG.to_vec(),
        )
        .unwrap();
        assert!(!o.unwrap().hold);
        assert_eq!(
            m,
            b"From: a@b\r\nSubject: *** SPAM *** hi\r\n\r\nbody\r\n".to_vec()
        );
        let (m, _) = decide(&config(None), verdict(Action::NoAction, 0.0), MSG.to_vec()).unwrap();
        assert_eq!(m, MSG);
    }
}
