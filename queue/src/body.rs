//! Message bodies in the spool: written as chunks of at most [`keys::BODY_CHUNK`]
//! bytes, each sealed on its own under its own key (`keys.rs` explains the size),
//! and read back one chunk at a time, so that nothing has to hold a whole body to
//! send it.
//!
//! The envelope records the body's length, and every chunk but the last is full, so
//! the length names every key of a body: reading knows where it ends, notices a
//! chunk missing, cut short or out of place (each is sealed to its key), and
//! deleting a message needs no scan. A body written before chunking is one record
//! of any length under the first key; it is read as such.

use std::sync::Arc;

use way2mail_seal::record as seal;
use way2mail_seal::DataKey;

use crate::commit::Write;
use crate::keys::{self, BODY_CHUNK};
use crate::spool::Inner;
use crate::{record, Error, MessageId, Spool};

/// Adds the sealed chunks of `body` to `write`, each sealed from where it lies in
/// `body` straight into its record (`seal::seal`): no chunk is copied.
pub(crate) fn seal_body(
    write: &mut Write,
    key: &DataKey,
    id: &MessageId,
    body: &[u8],
) -> Result<(), Error> {
    if body.len() <= BODY_CHUNK {
        let k = keys::body(id);
        write.insert(&k, seal::seal(key, &k, body)?);
        return Ok(());
    }
    for (index, part) in (0u32..).zip(body.chunks(BODY_CHUNK)) {
        let k = keys::body_chunk(id, index);
        write.insert(&k, seal::seal(key, &k, part)?);
    }
    Ok(())
}

/// Adds the removal of every record of a body of `body_len` bytes to `write`.
pub(crate) fn remove_body(write: &mut Write, id: &MessageId, body_len: u64) {
    for k in keys::body_keys(id, body_len) {
        write.remove(&k);
    }
}

/// The keys of the body records of `id` that exist, for when its length is not
/// known (its envelope is unreadable). Reads only that body's records.
pub(crate) fn existing_keys(db: &sled::Db, id: &MessageId) -> Result<Vec<Vec<u8>>, Error> {
    db.scan_prefix(keys::body(id))
        .map(|item| Ok(item?.0.to_vec()))
        .collect()
}

/// Reads the beginning of a message from `pieces` up to the end of its header
/// section (the empty line included), or until `max` bytes are read, and no
/// further. Returns what was read (the end of the last piece may follow the
/// header section) and where the header section ends, if it does.
pub fn read_header_section(
    pieces: impl Iterator<Item = Result<Vec<u8>, Error>>,
    max: usize,
) -> Result<(Vec<u8>, Option<usize>), Error> {
    let mut out = Vec::new();
    for piece in pieces {
        // An empty line split across two pieces is found too.
        let from = out.len().saturating_sub(3);
        out.extend_from_slice(&piece?);
        if let Some(p) = out[from..].windows(4).position(|w| w == b"\r\n\r\n") {
            return Ok((out, Some(from + p + 4)));
        }
        if out.len() >= max {
            break;
        }
    }
    Ok((out, None))
}

/// A body read chunk by chunk (see [`Spool::body_chunks`]). Each item is the
/// plaintext of one chunk, authenticated; an error ends the body.
pub struct BodyChunks {
    inner: Arc<Inner>,
    id: MessageId,
    body_len: u64,
    count: u32,
    next: u32,
    done: bool,
}

impl BodyChunks {
    fn corrupt(&self, index: u32, reason: &str) -> Error {
        Error::Corrupt {
            key: keys::describe(&keys::body_chunk(&self.id, index)),
            reason: reason.to_owned(),
        }
    }

    fn read_next(&mut self) -> Result<Vec<u8>, Error> {
        let index = self.next;
        let k = keys::body_chunk(&self.id, index);
        let value = self
            .inner
            .db
            .get(&k)?
            .ok_or_else(|| self.corrupt(index, "missing"))?;
        let plain = record::open_body(&self.inner.keyring, &k, &value)?;
        let len = plain.len() as u64;
        if index == 0 && len == self.body_len {
            // The whole body in one record (short, or written before chunking).
            self.done = true;
            return Ok(plain);
        }
        let last = index + 1 == self.count;
        let want = if last {
            self.body_len - u64::from(index) * BODY_CHUNK as u64
        } else {
            BODY_CHUNK as u64
        };
        if len != want {
            return Err(self.corrupt(index, "length differs from the envelope's"));
        }
        self.next += 1;
        self.done = last;
        Ok(plain)
    }
}

impl Iterator for BodyChunks {
    type Item = Result<Vec<u8>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let item = self.read_next();
        if item.is_err() {
            self.done = true;
        }
        Some(item)
    }
}

impl Spool {
    /// Reads the body of `id`, whose envelope says it is `body_len` bytes long,
    /// one chunk at a time: what the caller holds is one chunk, whatever the size.
    /// Blocks on the disk for each chunk not in the cache.
    pub fn body_chunks(&self, id: &MessageId, body_len: u64) -> BodyChunks {
        BodyChunks {
            inner: Arc::clone(&self.inner),
            id: *id,
            body_len,
            count: keys::body_chunk_count(body_len),
            next: 0,
            done: false,
        }
    }

    /// Reads and authenticates one message's whole body; `None` if the message is
    /// not in the spool.
    pub fn read_body(&self, id: &MessageId) -> Result<Option<Vec<u8>>, Error> {
        let inner = &*self.inner;
        let env_key = keys::envelope(id);
        let Some(value) = inner.db.get(env_key)? else {
            return Ok(None);
        };
        let (_, body_len) = record::open_envelope(&inner.keyring, &env_key, &value)?;
        self.read_whole_body(id, body_len).map(Some)
    }

    /// Reads a whole body of `body_len` bytes (as its envelope says) chunk by chunk.
    pub fn read_whole_body(&self, id: &MessageId, body_len: u64) -> Result<Vec<u8>, Error> {
        let mut chunks = self.body_chunks(id, body_len);
        let first = chunks.next().transpose()?.unwrap_or_default();
        // A body of one record is that record's plaintext, not a copy of it.
        if first.len() as u64 == body_len {
            return Ok(first);
        }
        let mut body = Vec::with_capacity(usize::try_from(body_len).unwrap_or(0));
        body.extend_from_slice(&first);
        for chunk in chunks {
            body.extend_from_slice(&chunk?);
        }
        Ok(body)
    }
}

impl Spool {
    /// Moves the records of `id` under the quarantine prefix in `write`: its
    /// envelope (`envelope` when the caller already read it) and every body record
    /// there is.
    pub(crate) fn quarantine_records(
        &self,
        write: &mut Write,
        id: &MessageId,
        envelope: Option<Vec<u8>>,
    ) -> Result<(), Error> {
        let db = &self.inner.db;
        let env_key = keys::envelope(id);
        let envelope = match envelope {
            Some(v) => Some(v),
            None => db.get(env_key)?.map(|v| v.to_vec()),
        };
        if let Some(value) = envelope {
            write.remove(&env_key);
            write.insert(&keys::quarantine(&env_key), value);
        }
        for item in db.scan_prefix(keys::body(id)) {
            let (k, v) = item?;
            write.remove(&k);
            write.insert(&keys::quarantine(&k), v.to_vec());
        }
        Ok(())
    }

    /// Takes a message whose body cannot be read (missing, corrupt, cut short) out
    /// of the queue into quarantine: its records are kept byte for byte for an
    /// operator to look at, its schedule entry, hold or lease is removed. Returns
    /// whether there was such a message; waits until the change is durable.
    pub fn quarantine(&self, id: &MessageId) -> Result<bool, Error> {
        self.refuse_if_unhealthy()?;
        let inner = &*self.inner;
        let _taking = inner.leases.taking();
        if !inner.db.contains_key(keys::envelope(id))? {
            return Ok(false);
        }
        let mut write = Write::default();
        self.quarantine_records(&mut write, id, None)?;
        if let Some(scheduled) = self.schedule()?.remove(id) {
            for k in scheduled.keys {
                write.remove(&k);
            }
        }
        inner.leases.forget(id);
        write.count_messages(-1);
        inner.committer.submit(write).wait_blocking()?;
        tracing::error!(%id, "message quarantined: its body cannot be read");
        Ok(true)
    }
}
