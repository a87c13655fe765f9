//! Idempotency records: the first answer to an API request sent with an
//! `Idempotency-Key`, kept for [`IDEMPOTENCY_TTL_MS`] so that a retried request
//! gets that answer instead of sending the message twice.
//!
//! A record is written in the same group-commit batch as the message its request
//! queued ([`Spool::enqueue_with`], [`SideRecords`]): after a crash both are there
//! or neither is, so a retry can neither lose the message nor send it twice. It is
//! sealed with the tenant's data key (erasure shreds it with the rest of the
//! tenant's data) under `i <key_id> <SHA-256 of the client's key>`; a second key,
//! `j <expiry> <key_id> <digest>`, lets the purge find what expired by one range
//! read.

use aws_lc_rs::digest;
use serde::{Deserialize, Serialize};
use way2mail_seal::Keyring;

use crate::commit::Write;
use crate::keys::{self, Key};
use crate::{Error, Spool};

/// How long an answer is kept: 24 hours.
pub const IDEMPOTENCY_TTL_MS: u64 = 24 * 60 * 60 * 1000;

/// The record's name in errors.
const WHAT: &str = "idempotency record";

/// The first answer to a request with an `Idempotency-Key`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    pub created_ms: u64,
    /// SHA-256 (hexadecimal) of what the request asked (its method, path, query
    /// and body): the same key with another request is refused, not answered.
    pub request: String,
    pub status: u16,
    /// The answer's body as it was sent.
    pub body: String,
    /// The message the request queued.
    pub message_id: String,
}

/// Records written in the same batch as a message ([`Spool::enqueue_with`]). Only
/// the spool makes them.
#[derive(Debug, Default)]
pub struct SideRecords(pub(crate) Vec<(Vec<u8>, Vec<u8>)>);

impl SideRecords {
    pub(crate) fn add_to(self, write: &mut Write) {
        for (key, value) in self.0 {
            write.insert(&key, value);
        }
    }
}

fn digest_of(client_key: &str) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, client_key.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Opens an idempotency record stored under `key`.
pub(crate) fn open(
    keyring: &Keyring,
    key: &[u8],
    value: &[u8],
) -> Result<IdempotencyRecord, Error> {
    crate::record::open_flat(keyring, key, value, WHAT)
}

impl Spool {
    /// The sealed records keeping `record` as the answer to `tenant`'s requests
    /// with `client_key`, for [`Spool::enqueue_with`].
    pub fn idempotency_records(
        &self,
        tenant: &str,
        client_key: &str,
        record: &IdempotencyRecord,
    ) -> Result<SideRecords, Error> {
        let data_key = self.data_key(Some(tenant))?;
        let digest = digest_of(client_key);
        let key = keys::idempotency(data_key.id(), &digest);
        let sealed = crate::record::seal_flat(&data_key, &key, record, WHAT)?;
        let expiry = record.created_ms.saturating_add(IDEMPOTENCY_TTL_MS);
        let expiry_key = keys::idempotency_expiry(expiry, data_key.id(), &digest);
        Ok(SideRecords(vec![
            (key.to_vec(), sealed),
            (expiry_key.to_vec(), Vec::new()),
        ]))
    }

    /// The answer kept for `tenant`'s `client_key`, unless there is none or it
    /// expired before `now_ms`.
    pub fn idempotency(
        &self,
        tenant: &str,
        client_key: &str,
        now_ms: u64,
    ) -> Result<Option<IdempotencyRecord>, Error> {
        let inner = &*self.inner;
        let Some(data_key) = inner.keyring.existing(tenant) else {
            return Ok(None);
        };
        let key = keys::idempotency(data_key.id(), &digest_of(client_key));
        let Some(value) = inner.db.get(key)? else {
            return Ok(None);
        };
        let record = match open(&inner.keyring, &key, &value) {
            Ok(r) => r,
            Err(Error::Shredded { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let live = record.created_ms.saturating_add(IDEMPOTENCY_TTL_MS) > now_ms;
        Ok(live.then_some(record))
    }

    /// Every idempotency record `tenant` has (for its data export).
    pub fn idempotency_of(&self, tenant: &str) -> Result<Vec<IdempotencyRecord>, Error> {
        let inner = &*self.inner;
        let Some(data_key) = inner.keyring.existing(tenant) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for item in inner
            .db
            .scan_prefix(keys::idempotency_prefix(data_key.id()))
        {
            let (key, value) = item?;
            inner.progress.tick();
            match open(&inner.keyring, &key, &value) {
                Ok(r) => out.push(r),
                Err(Error::Shredded { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        out.sort_by_key(|r| r.created_ms);
        Ok(out)
    }

    /// Deletes the idempotency records that expired before `now_ms` (and their
    /// expiry entries); returns how many records went.
    pub fn purge_idempotency(&self, now_ms: u64) -> Result<usize, Error> {
        let inner = &*self.inner;
        let start = vec![keys::IDEMPOTENCY_EXPIRY];
        let mut end = vec![keys::IDEMPOTENCY_EXPIRY];
        end.extend_from_slice(&now_ms.to_be_bytes());
        let mut purged = 0;
        loop {
            let mut write = Write::default();
            let mut n = 0;
            for item in inner
                .db
                .range(start.clone()..end.clone())
                .keys()
                .take(crate::delivery_log::PURGE_CHUNK)
            {
                let key = item?;
                if let Some(Key::IdempotencyExpiry { key_id, digest, .. }) = keys::parse(&key) {
                    write.remove(&keys::idempotency(key_id, &digest));
                }
                write.remove(&key);
                n += 1;
            }
            if n == 0 {
                return Ok(purged);
            }
            inner.committer.submit(write).wait_blocking()?;
            purged += n;
        }
    }
}
