//! Backups of the spool: a consistent dump of every record as stored (sealed: the
//! dump never holds a plaintext byte, and never the keyring), and its restore onto a
//! stopped node.
//!
//! ```text
//!   "way2mail-spool-dump 1\n"
//!   { klen: u32 BE, key, vlen: u32 BE, value }*      every sled key in key order
//!   klen = 0xFFFF_FFFF, records: u64 BE              end marker and count
//! ```
//!
//! `dump` holds writers off (like recovery) while it copies, so the copy is one
//! point in time: every message whole or absent, schedule and leases consistent.
//! Write it to a local file (fast) and ship that, rather than holding writers off
//! for as long as a slow reader takes.
//!
//! `restore` builds the new spool next to the old one (`<dir>.restoring`), then
//! moves the old directory aside (`<dir>.before-restore-<unix time>`, never deleted)
//! and the new one into place. Records sealed with the key of a tenant erased since
//! the backup are dropped on the way in: the keyring of the node, not the backup,
//! decides what is readable. The new spool gets its own anchor (anchor.rs), at the
//! commit count the backup had: a restore is the operator's decision to go back.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::PoisonError;

use crate::keys::{self, Key};
use way2mail_seal::record as seal;
use way2mail_seal::{Keyring, Lookup};

use crate::{Error, Spool};

const MAGIC: &[u8] = b"way2mail-spool-dump 1\n";
const END: u32 = u32::MAX;
/// Longest key or value accepted on restore (sled's own limit is far above any
/// message the daemon accepts).
const MAX_ITEM: u32 = 1 << 30;

/// What a dump wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DumpStats {
    pub records: u64,
    pub bytes: u64,
}

/// What a restore put in place.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreStats {
    /// Records written to the new spool.
    pub records: u64,
    /// Queued messages among them.
    pub messages: u64,
    /// Records of erased tenants left out.
    pub erased_dropped: u64,
    /// Where the spool that was there before now is.
    pub moved_aside: Option<PathBuf>,
}

impl Spool {
    /// Writes every record to `out` in the dump format, as one consistent snapshot.
    pub fn dump(&self, out: &mut impl Write) -> Result<DumpStats, Error> {
        let inner = &*self.inner;
        let _exclusive = inner
            .shared
            .writers
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let mut stats = DumpStats::default();
        out.write_all(MAGIC)?;
        stats.bytes += MAGIC.len() as u64;
        for item in inner.db.iter() {
            let (key, value) = item?;
            write_item(out, &key)?;
            write_item(out, &value)?;
            stats.records += 1;
            stats.bytes += 8 + key.len() as u64 + value.len() as u64;
        }
        out.write_all(&END.to_be_bytes())?;
        out.write_all(&stats.records.to_be_bytes())?;
        stats.bytes += 12;
        out.flush()?;
        Ok(stats)
    }
}

fn write_item(out: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    let len = u32::try_from(bytes.len())
        .ok()
        .filter(|&n| n < END)
        .ok_or_else(|| io::Error::other("record too large to dump"))?;
    out.write_all(&len.to_be_bytes())?;
    out.write_all(bytes)
}

fn bad(reason: impl Into<String>) -> Error {
    Error::Io(io::Error::new(
        io::ErrorKind::InvalidData,
        format!("spool dump: {}", reason.into()),
    ))
}

/// Reads the next key or value; `None` at the end marker.
fn read_item(input: &mut impl Read) -> Result<Option<Vec<u8>>, Error> {
    let mut len = [0u8; 4];
    input.read_exact(&mut len).map_err(|_| bad("cut short"))?;
    let len = u32::from_be_bytes(len);
    if len == END {
        return Ok(None);
    }
    if len > MAX_ITEM {
        return Err(bad(format!("an item of {len} bytes")));
    }
    let mut buf = vec![0u8; len as usize];
    input.read_exact(&mut buf).map_err(|_| bad("cut short"))?;
    Ok(Some(buf))
}

/// Whether a record must be left out because its tenant was erased.
fn erased(keyring: &Keyring, key: &[u8], value: &[u8]) -> bool {
    match keys::parse(key) {
        Some(
            Key::Envelope(_)
            | Key::Body(..)
            | Key::Log { .. }
            | Key::Idempotency { .. }
            | Key::Webhook(_)
            | Key::Dmarc { .. },
        ) => {
            seal::key_id_of(value).is_some_and(|id| matches!(keyring.lookup(id), Lookup::Erased(_)))
        }
        _ => false,
    }
}

/// Restores a dump into `dir`, which no running daemon may hold. See the module doc.
pub fn restore_dump(
    dir: &Path,
    keyring: &Keyring,
    input: &mut impl Read,
) -> Result<RestoreStats, Error> {
    let lock_path = dir.join(crate::spool::LOCK_FILE);
    if lock_path.exists() {
        // Held while a daemon has the spool open.
        let _held = crate::spool::lock(dir)?;
    }
    let mut magic = vec![0u8; MAGIC.len()];
    input.read_exact(&mut magic).map_err(|_| bad("cut short"))?;
    if magic != MAGIC {
        return Err(bad("not a spool dump (wrong header)"));
    }
    let staging = sibling(dir, "restoring");
    if staging.exists() {
        std::fs::remove_dir_all(&staging)?;
    }
    let mut stats = RestoreStats::default();
    {
        let db = sled::Config::new().path(&staging).open()?;
        let mut batch = sled::Batch::default();
        let mut pending = 0;
        while let Some(key) = read_item(input)? {
            let value = read_item(input)?.ok_or_else(|| bad("a key without its value"))?;
            if erased(keyring, &key, &value) {
                stats.erased_dropped += 1;
                continue;
            }
            if matches!(keys::parse(&key), Some(Key::Envelope(_))) {
                stats.messages += 1;
            }
            batch.insert(key, value);
            stats.records += 1;
            pending += 1;
            if pending == 10_000 {
                db.apply_batch(std::mem::take(&mut batch))?;
                pending = 0;
            }
        }
        let mut count = [0u8; 8];
        input.read_exact(&mut count).map_err(|_| bad("cut short"))?;
        if u64::from_be_bytes(count) != stats.records + stats.erased_dropped {
            return Err(bad("the record count does not match the end marker"));
        }
        db.apply_batch(batch)?;
        db.flush()?;
        // The restored spool is a new starting point: its anchor records it as it is
        // (the spool moved aside keeps its own).
        let commit_seq = crate::anchor::commit_seq(&db)?.unwrap_or(0);
        crate::anchor::write(&staging, crate::anchor::Anchor { commit_seq })?;
    }
    keyring.bind(&staging)?;
    // Run as root, a restore must leave the daemon's user owning its spool.
    way2mail_daemon::files::chown_tree_like(&staging, dir)?;
    if dir.exists() {
        let now = way2mail_daemon::time::now_secs();
        let aside = sibling(dir, &format!("before-restore-{now}"));
        std::fs::rename(dir, &aside)?;
        stats.moved_aside = Some(aside);
    }
    std::fs::rename(&staging, dir)?;
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::File::open(parent)?.sync_all()?;
    }
    Ok(stats)
}

fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let mut name = dir.as_os_str().to_owned();
    name.push(".");
    name.push(suffix);
    PathBuf::from(name)
}
