//! Reports of scheduled sweeps, sent to control (`retention.report`, identified by
//! our uid like the snapshot follower), which writes them to its audit log. A
//! report control did not get is kept and sent again after the next sweep, up to
//! [`MAX_PENDING`]; beyond that the oldest is dropped with a warning, since the
//! counts are also in the MTA's own log.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::Duration;

use way2mail_wire::client::{Auth, ClientError, ControlClient};
use way2mail_wire::mta_admin::SweepReport;
use way2mail_wire::protocol::{Request, Response};

/// Reports kept while control does not answer.
pub const MAX_PENDING: usize = 100;

/// Whether a sweep removed anything worth reporting.
pub fn removed_anything(report: &SweepReport) -> bool {
    !report.entries.is_empty() || report.erased_messages > 0 || report.erased_log_records > 0
}

pub struct Reports {
    socket: PathBuf,
    timeout: Duration,
    pending: VecDeque<SweepReport>,
}

impl Reports {
    pub fn new(socket: PathBuf, timeout: Duration) -> Reports {
        Reports {
            socket,
            timeout,
            pending: VecDeque::new(),
        }
    }

    #[cfg(test)]
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Queues `report` (if it removed anything) and sends every pending report, oldest
    /// first, until control fails to answer.
    pub fn send(&mut self, report: SweepReport) {
        if removed_anything(&report) {
            if self.pending.len() == MAX_PENDING {
                if let Some(dropped) = self.pending.pop_front() {
                    tracing::warn!(
                        started_ms = dropped.started_ms,
                        "control has not taken retention reports for {MAX_PENDING} sweeps; the oldest is dropped"
                    );
                }
            }
            self.pending.push_back(report);
        }
        if self.pending.is_empty() {
            return;
        }
        let mut client = match ControlClient::connect(&self.socket, self.timeout) {
            Ok(c) => c,
            Err(e) => return self.keep(&e),
        };
        while let Some(report) = self.pending.front() {
            let request = Request::RetentionReport {
                report: report.clone(),
            };
            match client.call(request, &Auth::default()) {
                Ok(Response::Done) => {}
                Ok(other) => tracing::error!(
                    answer = ?other,
                    "control answered a retention report unexpectedly; report dropped"
                ),
                // Control answered and refused (wrong service uid, say): sending the
                // same report again would be refused again.
                Err(ClientError::Remote(e)) => tracing::error!(
                    code = ?e.code,
                    error = %e.message,
                    "control refused a retention report; report dropped"
                ),
                Err(e) => return self.keep(&e),
            }
            self.pending.pop_front();
        }
    }

    fn keep(&self, error: &ClientError) {
        tracing::warn!(
            error = %error,
            pending = self.pending.len(),
            "retention report not delivered to control; sent again after the next sweep"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use way2mail_wire::mta_admin::SweepEntry;

    fn report(at: u64, removed: u64) -> SweepReport {
        SweepReport {
            started_ms: at,
            entries: (removed > 0)
                .then(|| SweepEntry {
                    tenant: None,
                    messages_removed: removed,
                    ..SweepEntry::default()
                })
                .into_iter()
                .collect(),
            ..SweepReport::default()
        }
    }

    #[test]
    fn empty_reports_are_not_kept_and_unsent_ones_are_bounded() {
        assert!(!removed_anything(&report(1, 0)));
        assert!(removed_anything(&SweepReport {
            erased_log_records: 1,
            ..SweepReport::default()
        }));
        let dir = tempfile::tempdir().expect("tempdir");
        let mut r = Reports::new(dir.path().join("nobody.sock"), Duration::from_millis(100));
        r.send(report(1, 0));
        assert_eq!(r.pending(), 0);
        for at in 0..(MAX_PENDING as u64 + 5) {
            r.send(report(at, 1));
        }
        assert_eq!(r.pending(), MAX_PENDING);
        assert_eq!(
            r.pending.front().map(|p| p.started_ms),
            Some(5),
            "oldest dropped"
        );
    }
}
