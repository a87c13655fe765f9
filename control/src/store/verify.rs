//! `way2mail-control --verify-store`: an offline check of every record of a store
//! opened for reading only ([`AnchorPolicy::Inspect`](super::AnchorPolicy)): each
//! opens with its data key and decodes as a versioned record, and the store is at
//! or past its anchor. The audit chain is checked by `AuditLog::verify`, which the
//! command runs beside this. Nothing is written, the anchor included.
//!
//! Records sealed with an erased tenant's key are counted apart, not as problems:
//! they are unreadable by design. A store from before data keys that no daemon of
//! this version has started yet is not migrated here: its records show as
//! unreadable until the daemon has started once.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;

use super::anchor::{self, Divergence};
use super::{Store, TreeName};
use crate::error::Error;

/// How many problem descriptions a report keeps (the counts are complete).
const MAX_EXAMPLES: usize = 20;

/// One tree's records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TreeCount {
    pub records: u64,
    /// Sealed with the key of an erased tenant.
    pub erased: u64,
    /// Do not open or decode.
    pub unreadable: u64,
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreReport {
    pub dir: PathBuf,
    pub trees: Vec<(TreeName, TreeCount)>,
    /// The store's commit count (`None`: never counted).
    pub commit_seq: Option<u64>,
    /// What the anchor records (`None`: no anchor, or unreadable).
    pub anchor: Option<anchor::Anchor>,
    /// How the store differs from its anchor, if it does.
    pub divergence: Option<Divergence>,
    /// The first problems, described.
    pub examples: Vec<String>,
}

impl StoreReport {
    /// Records that do not open, plus one for a divergence from the anchor.
    pub fn problem_count(&self) -> u64 {
        self.trees.iter().map(|(_, c)| c.unreadable).sum::<u64>()
            + u64::from(self.divergence.is_some())
    }
}

/// Opens every record of `store` (see the module doc). Fails only when sled
/// cannot be read; records that do not open are in the report.
pub fn verify(store: &Store) -> Result<StoreReport, Error> {
    let mut report = StoreReport {
        dir: store.dir().to_owned(),
        trees: Vec::new(),
        commit_seq: None,
        anchor: None,
        divergence: None,
        examples: Vec::new(),
    };
    let mut counts: BTreeMap<usize, TreeCount> = BTreeMap::new();
    for tree in TreeName::ALL {
        let count = counts.entry(tree as usize).or_default();
        for item in store.raw_iter(tree) {
            let (key, sealed) = item?;
            store.tick();
            count.records += 1;
            match store.open_value::<Value>(tree, &key, sealed.to_vec()) {
                Ok(_) => {}
                Err(Error::Shredded { .. }) => count.erased += 1,
                Err(e) => {
                    count.unreadable += 1;
                    if report.examples.len() < MAX_EXAMPLES {
                        report.examples.push(e.to_string());
                    }
                }
            }
        }
        report.trees.push((tree, *count));
    }
    check_anchor(store, &mut report);
    Ok(report)
}

fn check_anchor(store: &Store, report: &mut StoreReport) {
    let found = anchor::read(store.dir());
    report.anchor = found.clone().ok().flatten();
    report.commit_seq = store.stored_commit_seq().ok().flatten();
    match store
        .state(&found)
        .map(|state| anchor::judge(&found, &state))
    {
        Ok(Ok(_)) => {}
        Ok(Err(divergence)) => {
            report.examples.push(format!(
                "the store is not what its anchor recorded: {divergence}"
            ));
            report.divergence = Some(divergence);
        }
        // The records holding the count or the audit head do not open: counted
        // with the unreadable records of `meta` already.
        Err(e) => report
            .examples
            .push(format!("cannot compare the store with its anchor: {e}")),
    }
}
