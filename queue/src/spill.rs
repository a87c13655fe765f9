//! Messages still being received. A session holds at most a small buffer of a
//! message in memory; past it, what arrived is sealed and appended to a file of
//! its own, `incoming/<id>` in the spool directory, and read back at the end of
//! data, when the message is checked, signed and spooled (`enqueue_from_parts`
//! writes its chunks as it reads the parts). Parts are not mail: nothing was
//! acknowledged, so they are not synced, are sealed under the node's own key, are
//! deleted once the message is spooled or refused, and whatever a crash left is
//! deleted at the next start. They are files rather than records because sled
//! copies a tree node on every insert: gigabytes of parts written and deleted
//! again cost sled's memory and time for nothing.
//!
//! A file is a sequence of `len:4 BE` + a sealed record of at most [`PART`]
//! plaintext bytes, record n sealed to `keys::spill(id, n)`: a record cut short,
//! reordered or moved to another message does not open.

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use crate::keys;
use crate::{Error, MessageId, Spool};

/// The directory of the parts' files, inside the spool directory.
pub(crate) const INCOMING: &str = "incoming";
/// Plaintext bytes per record of a parts file.
const PART: usize = 64 * 1024;

impl Spool {
    fn incoming(&self) -> PathBuf {
        self.path().join(INCOMING)
    }

    fn parts_file(&self, id: &MessageId) -> PathBuf {
        self.incoming().join(id.to_string())
    }

    /// Appends `bytes` to the parts of message `id`, from part `*next` on (0 for
    /// the first), and advances `*next`. Not synced.
    pub fn spill(&self, id: &MessageId, next: &mut u32, bytes: &[u8]) -> Result<(), Error> {
        let key = self.inner.keyring.system();
        std::fs::create_dir_all(self.incoming())?;
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(self.parts_file(id))?;
        // One record at a time: what this holds beyond `bytes` is one record.
        for part in bytes.chunks(PART) {
            let sealed = way2mail_seal::record::seal(&key, &keys::spill(id, *next), part)?;
            file.write_all(&(sealed.len() as u32).to_be_bytes())?;
            file.write_all(&sealed)?;
            *next += 1;
        }
        Ok(())
    }

    /// The parts of message `id`, in order, appended to `out`.
    pub fn read_spill(&self, id: &MessageId, out: &mut Vec<u8>) -> Result<(), Error> {
        self.each_part(id, |part| {
            out.extend_from_slice(part);
            Ok(())
        })
    }

    /// Calls `each` with the plaintext of every part of `id`, in order; nothing
    /// when it has none.
    pub fn each_part(
        &self,
        id: &MessageId,
        mut each: impl FnMut(&[u8]) -> Result<(), Error>,
    ) -> Result<(), Error> {
        for part in self.parts(id)? {
            each(&part?)?;
        }
        Ok(())
    }

    /// [`each_part`](Spool::each_part) for what follows the first `skip` bytes of
    /// the parts (a header section read and replaced, say).
    pub fn each_part_after(
        &self,
        id: &MessageId,
        skip: u64,
        mut each: impl FnMut(&[u8]) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let mut left = skip;
        self.each_part(id, |part| {
            let cut = usize::try_from(left).unwrap_or(usize::MAX).min(part.len());
            left -= cut as u64;
            each(&part[cut..])
        })
    }

    /// The parts of `id`, read one at a time, in order; none when it has none.
    pub fn parts(&self, id: &MessageId) -> Result<Parts, Error> {
        let reader = match File::open(self.parts_file(id)) {
            Ok(f) => Some(BufReader::with_capacity(PART + 64, f)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e.into()),
        };
        Ok(Parts {
            spool: self.clone(),
            id: *id,
            index: 0,
            reader,
        })
    }

    /// Deletes the parts of message `id`.
    pub fn drop_spill(&self, id: &MessageId) -> Result<(), Error> {
        match std::fs::remove_file(self.parts_file(id)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    /// The messages whose parts a previous run left (for recovery).
    pub(crate) fn unfinished(&self) -> Result<Vec<MessageId>, Error> {
        let dir = match std::fs::read_dir(self.incoming()) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut ids = Vec::new();
        for entry in dir {
            let entry = entry?;
            match entry.file_name().to_str().and_then(|n| n.parse().ok()) {
                Some(id) => ids.push(id),
                // Not ours; nothing that opens the spool writes anything else here.
                None => {
                    tracing::warn!(file = ?entry.path(), "unexpected file among messages being received; removed");
                    std::fs::remove_file(entry.path())?;
                }
            }
        }
        Ok(ids)
    }
}

/// Writes a body's chunks as its bytes come, each sealed under its final key.
struct ChunkWriter<'a> {
    spool: &'a Spool,
    key: std::sync::Arc<way2mail_seal::DataKey>,
    id: MessageId,
    index: u32,
    buf: Vec<u8>,
    len: u64,
    /// The body's shape, learnt from the chunks as they are written.
    shape: way2mail_smtp::client::ContentScan,
}

impl ChunkWriter<'_> {
    fn push(&mut self, mut bytes: &[u8]) -> Result<(), Error> {
        while !bytes.is_empty() {
            // A whole chunk within `bytes` is sealed from where it lies.
            if self.buf.is_empty() && bytes.len() >= keys::BODY_CHUNK {
                let (chunk, rest) = bytes.split_at(keys::BODY_CHUNK);
                self.write(chunk)?;
                bytes = rest;
                continue;
            }
            let room = keys::BODY_CHUNK - self.buf.len();
            let take = room.min(bytes.len());
            self.buf.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.buf.len() == keys::BODY_CHUNK {
                self.write_buffered()?;
            }
        }
        Ok(())
    }

    /// Seals the chunk gathered across pieces.
    fn write_buffered(&mut self) -> Result<(), Error> {
        let buf = std::mem::take(&mut self.buf);
        self.write(&buf)?;
        self.buf = buf;
        self.buf.clear();
        Ok(())
    }

    fn write(&mut self, plain: &[u8]) -> Result<(), Error> {
        let k = keys::body_chunk(&self.id, self.index);
        let sealed = way2mail_seal::record::seal(&self.key, &k, plain)?;
        self.spool.inner.db.insert(k, sealed)?;
        self.shape.push(plain);
        self.index += 1;
        self.len += plain.len() as u64;
        Ok(())
    }

    fn finish(mut self) -> Result<(u64, Option<crate::record::BodyShape>), Error> {
        if !self.buf.is_empty() || self.index == 0 {
            self.write_buffered()?;
        }
        Ok((
            self.len,
            crate::record::shape_if_streamed(self.len, self.shape),
        ))
    }
}

impl Spool {
    /// Spools a message received in parts without holding it whole: its body is
    /// `head`, then the parts of `id` without their first `skip` bytes (the header
    /// section `head` replaces, when it does), then `tail`. The chunks are sealed
    /// and written as the parts are read, before the envelope; then the envelope
    /// and the schedule entry go through the group commit like `enqueue`'s, and the
    /// returned `Durable` says when the message is safe. Until then a crash leaves
    /// chunks without an envelope, which recovery deletes with the parts (it knows
    /// the message from them), so the caller deletes the parts only after that.
    pub fn enqueue_from_parts(
        &self,
        id: MessageId,
        envelope: &crate::Envelope,
        head: &[u8],
        skip: u64,
        tail: &[u8],
    ) -> Result<crate::Durable, Error> {
        self.refuse_if_unhealthy()?;
        let key = self.data_key(envelope.origin.tenant.as_deref())?;
        let mut writer = ChunkWriter {
            spool: self,
            key: std::sync::Arc::clone(&key),
            id,
            index: 0,
            buf: Vec::with_capacity(keys::BODY_CHUNK),
            len: 0,
            shape: Default::default(),
        };
        let written = (|| {
            writer.push(head)?;
            self.each_part_after(&id, skip, |part| writer.push(part))?;
            writer.push(tail)?;
            writer.finish()
        })();
        let (body_len, shape) = match written {
            Ok(done) => done,
            Err(e) => {
                // What was written is no message: gone now, or at the next start.
                let _ = self.drop_chunks(&id);
                return Err(e);
            }
        };
        let env_key = keys::envelope(&id);
        let mut write = crate::commit::Write::default();
        write.insert(
            &env_key,
            crate::record::seal_envelope(&key, &env_key, envelope, body_len, shape)?,
        );
        write.insert(&keys::due(way2mail_daemon::time::now_ms(), &id), Vec::new());
        write.count_messages(1);
        Ok(self.inner.committer.submit(write))
    }

    fn drop_chunks(&self, id: &MessageId) -> Result<(), Error> {
        for k in crate::body::existing_keys(&self.inner.db, id)? {
            self.inner.db.remove(k)?;
        }
        Ok(())
    }
}

/// The parts of a message being received (see [`Spool::parts`]). Each item is the
/// plaintext of one record, authenticated; an error ends them.
pub struct Parts {
    spool: Spool,
    id: MessageId,
    index: u32,
    reader: Option<BufReader<File>>,
}

impl Parts {
    fn corrupt(&self, reason: &str) -> Error {
        Error::Corrupt {
            key: format!("part {} of {} being received", self.index, self.id),
            reason: reason.to_owned(),
        }
    }

    /// The next record; `None` at the end of the file.
    fn read_next(&mut self) -> Option<Result<Vec<u8>, Error>> {
        let reader = self.reader.as_mut()?;
        let mut len = [0u8; 4];
        match reader.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return None,
            Err(e) => return Some(Err(e.into())),
        }
        let len = u32::from_be_bytes(len) as usize;
        if len > PART + way2mail_seal::record::OVERHEAD {
            return Some(Err(self.corrupt("record too long")));
        }
        let mut sealed = vec![0u8; len];
        if reader.read_exact(&mut sealed).is_err() {
            return Some(Err(self.corrupt("cut short")));
        }
        let aad = keys::spill(&self.id, self.index);
        let plain = self.spool.inner.keyring.open_record(&aad, sealed);
        self.index += 1;
        Some(plain.map_err(Error::from))
    }
}

impl Iterator for Parts {
    type Item = Result<Vec<u8>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        let item = self.read_next();
        if !matches!(item, Some(Ok(_))) {
            self.reader = None;
        }
        item
    }
}
