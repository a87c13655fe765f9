//! DMARC aggregate reports received for tenant domains: each sealed with the
//! tenant's data key under `r <key_id> <end_ms> <digest>` (keys.rs), so that a
//! tenant's reports are one key range ordered by the end of the period they cover.
//! That range is what retention trims (by the tenant's delivery log period), what
//! an export reads and what erasure deletes (after shredding the key, which leaves
//! the records unreadable at once).
//!
//! The spool does not know the report's shape: the MTA hands it a serializable
//! value and reads it back as one. A report sent again (reporters resend) has the
//! same reporter and report id, hence the same key, and is not stored twice.

use std::ops::ControlFlow;

use aws_lc_rs::digest;
use serde::de::DeserializeOwned;
use serde::Serialize;
use way2mail_seal::Keyring;

use crate::commit::Write;
use crate::keys::{self, Key};
use crate::{Error, Spool};

/// The record's name in errors.
const WHAT: &str = "DMARC report";

/// Opens a DMARC report stored under `key`.
pub(crate) fn open<T: DeserializeOwned>(
    keyring: &Keyring,
    key: &[u8],
    value: &[u8],
) -> Result<T, Error> {
    crate::record::open_flat(keyring, key, value, WHAT)
}

/// The digest that names a report: its reporter and report id.
fn digest_of(reporter: &str, report_id: &str) -> [u8; 16] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(&(reporter.len() as u64).to_be_bytes());
    ctx.update(reporter.as_bytes());
    ctx.update(report_id.as_bytes());
    let d = ctx.finish();
    let mut out = [0u8; 16];
    out.copy_from_slice(&d.as_ref()[..16]);
    out
}

impl Spool {
    /// Stores `report` of `tenant`, from `reporter` with `report_id`, covering a
    /// period that ends at `end_ms`; returns once it is durable. `false`: the
    /// same report was stored before (nothing written).
    pub fn store_dmarc_report<T: Serialize>(
        &self,
        tenant: &str,
        reporter: &str,
        report_id: &str,
        end_ms: u64,
        report: &T,
    ) -> Result<bool, Error> {
        self.refuse_if_unhealthy()?;
        let data_key = self.data_key(Some(tenant))?;
        let key = keys::dmarc(data_key.id(), end_ms, &digest_of(reporter, report_id));
        if self.inner.db.contains_key(key)? {
            return Ok(false);
        }
        let mut write = Write::default();
        write.insert(
            &key,
            crate::record::seal_flat(&data_key, &key, report, WHAT)?,
        );
        self.inner.committer.submit(write).wait_blocking()?;
        Ok(true)
    }

    /// Calls `each` with every DMARC report of `tenant` whose period ends at or
    /// after `since_ms`, oldest end first, one at a time, until it breaks. A tenant
    /// without a data key has none.
    pub fn dmarc_reports<T: DeserializeOwned>(
        &self,
        tenant: &str,
        since_ms: u64,
        mut each: impl FnMut(T) -> ControlFlow<()>,
    ) -> Result<u64, Error> {
        let inner = &*self.inner;
        let Some(key_id) = inner.keyring.existing(tenant).map(|k| k.id()) else {
            return Ok(0);
        };
        let mut n = 0;
        let start = keys::dmarc_from(key_id, since_ms).to_vec();
        for item in inner.db.range(start..keys::dmarc_end(key_id)) {
            let (key, value) = item?;
            inner.progress.tick();
            if !matches!(keys::parse(&key), Some(Key::Dmarc { .. })) {
                continue;
            }
            n += 1;
            if each(open(&inner.keyring, &key, &value)?).is_break() {
                break;
            }
        }
        Ok(n)
    }

    /// How many DMARC reports `key_id` holds, from the keys alone.
    pub fn dmarc_report_count(&self, key_id: way2mail_seal::KeyId) -> Result<u64, Error> {
        self.dmarc_report_count_up_to(key_id, u64::MAX)
    }

    /// [`dmarc_report_count`](Spool::dmarc_report_count), counting no further than
    /// `limit`.
    pub fn dmarc_report_count_up_to(
        &self,
        key_id: way2mail_seal::KeyId,
        limit: u64,
    ) -> Result<u64, Error> {
        let start = keys::dmarc_from(key_id, 0).to_vec();
        let mut n = 0;
        for item in self.inner.db.range(start..keys::dmarc_end(key_id)).keys() {
            item?;
            n += 1;
            if n >= limit {
                break;
            }
        }
        Ok(n)
    }

    /// Deletes the DMARC reports of `key_id` whose period ended before `time_ms`,
    /// and returns how many were deleted.
    pub fn purge_dmarc_of(
        &self,
        key_id: way2mail_seal::KeyId,
        time_ms: u64,
    ) -> Result<usize, Error> {
        let start = keys::dmarc_from(key_id, 0).to_vec();
        let end = keys::dmarc_from(key_id, time_ms).to_vec();
        self.remove_range(start, end)
    }

    /// Deletes every DMARC report of `key_id` (erasure).
    pub(crate) fn delete_dmarc_of(&self, key_id: way2mail_seal::KeyId) -> Result<usize, Error> {
        self.remove_range(
            keys::dmarc_from(key_id, 0).to_vec(),
            keys::dmarc_end(key_id),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_tell_reporters_and_ids_apart() {
        assert_eq!(digest_of("google.com", "1"), digest_of("google.com", "1"));
        assert_ne!(digest_of("google.com", "1"), digest_of("google.com", "2"));
        // The reporter's length is hashed: no two splits of one string collide.
        assert_ne!(digest_of("ab", "c"), digest_of("a", "bc"));
    }
}
