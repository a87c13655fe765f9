//! Messages still being received. A session holds at most a small buffer of a
//! message in memory; past it, what arrived is sealed and written here as parts
//! (`s<id><n>`), in order, and read back at the end of data, when the message is
//! checked, signed and spooled as a whole (under the ingest budget, in the
//! daemon). Parts are not mail: nothing was acknowledged, so they need no
//! durability, are sealed under the node's own key, are deleted once the message
//! is spooled or refused, and whatever a crash left is deleted at the next start.

use crate::keys::{self, Key};
use crate::{Error, MessageId, Spool};

impl Spool {
    /// Stores `bytes` as the next parts of message `id`, from part `*next` on (0 for
    /// the first), in records of at most [`keys::BODY_CHUNK`] bytes (as bodies are,
    /// for the same reason), and advances `*next`. Blocks only for sled's in-memory
    /// writes; not durable.
    pub fn spill(&self, id: &MessageId, next: &mut u32, bytes: &[u8]) -> Result<(), Error> {
        let inner = &*self.inner;
        let key_of_node = inner.keyring.system();
        for part in bytes.chunks(keys::BODY_CHUNK) {
            let key = keys::spill(id, *next);
            let mut buf = Vec::with_capacity(part.len() + way2mail_seal::record::OVERHEAD);
            buf.extend_from_slice(part);
            inner
                .db
                .insert(key, way2mail_seal::record::seal(&key_of_node, &key, buf)?)?;
            *next += 1;
        }
        Ok(())
    }

    /// The parts of message `id`, in order, appended to `out`.
    pub fn read_spill(&self, id: &MessageId, out: &mut Vec<u8>) -> Result<(), Error> {
        let inner = &*self.inner;
        for (expected, item) in (0u32..).zip(inner.db.scan_prefix(keys::spill_prefix(id))) {
            let (key, value) = item?;
            if keys::parse(&key) != Some(Key::Spill(*id, expected)) {
                return Err(Error::Corrupt {
                    key: keys::describe(&key),
                    reason: format!("part {expected} expected"),
                });
            }
            out.extend_from_slice(&crate::record::open_body(&inner.keyring, &key, &value)?);
        }
        Ok(())
    }

    /// Deletes the parts of message `id`. Not durable: a crash brings them back,
    /// and the next start deletes them.
    pub fn drop_spill(&self, id: &MessageId) -> Result<(), Error> {
        let inner = &*self.inner;
        for item in inner.db.scan_prefix(keys::spill_prefix(id)).keys() {
            inner.db.remove(item?)?;
        }
        Ok(())
    }
}
