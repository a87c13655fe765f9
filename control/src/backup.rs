//! Backups: one archive holding a consistent copy of the control store and of the
//! spool, sealed with AES-256-GCM under the backup key, and its restore onto a
//! stopped node.
//!
//! ```text
//!   "way2mail-backup 1\n"
//!   header line (JSON): {"archive":HEX16,"created_at":SECS,"key_fingerprint":HEX16}
//!   chunk*: len (u32 BE) || seal(plaintext chunk)   AAD = "way2mail-backup" ‖ archive ‖
//!                                                        index (u64 BE) ‖ last (0 | 1)
//!   plaintext: 'C' { tree_len u8, tree, klen u32, key, vlen u32, value }* 0u8
//!              'S' <spool dump, docs/spool-format.md>
//!              'E'
//! ```
//!
//! Records go in as they are stored, still sealed with their data keys: the
//! archive never holds a plaintext record, and never a keyring. A tenant erased
//! after the backup therefore stays unreadable in it, and a restore drops its
//! records. Chunks are numbered and the last one is marked, so a reordered, cut or
//! extended archive does not open.

use std::io::{self, BufRead, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use way2mail_seal::{Keyring, Lookup, MasterKey};

use crate::store::TreeName;

/// What errors and log lines call the backup key file (`[backup] key_file`).
pub const BACKUP_KEY: &str = "backup key (`[backup] key_file`)";

const MAGIC: &[u8] = b"way2mail-backup 1\n";
const AAD_PREFIX: &[u8] = b"way2mail-backup";
/// Plaintext per chunk.
const CHUNK: usize = 1 << 20;
/// Largest sealed chunk accepted when reading.
const MAX_SEALED: usize = CHUNK + 64;

/// The clear header of an archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub archive: String,
    /// Unix seconds.
    pub created_at: u64,
    /// Which backup key opens it (`MasterKey::fingerprint`).
    pub key_fingerprint: String,
}

fn chunk_aad(archive: &str, index: u64, last: bool) -> Vec<u8> {
    let mut aad = AAD_PREFIX.to_vec();
    aad.extend_from_slice(archive.as_bytes());
    aad.extend_from_slice(&index.to_be_bytes());
    aad.push(u8::from(last));
    aad
}

fn invalid(reason: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, reason.into())
}

/// Seals what is written to it into chunks.
pub struct ArchiveWriter<'k, W: Write> {
    out: W,
    key: &'k MasterKey,
    header: Header,
    index: u64,
    buf: Vec<u8>,
    /// Bytes of the archive written so far.
    pub bytes: u64,
}

impl<'k, W: Write> ArchiveWriter<'k, W> {
    /// Writes the magic and header line.
    pub fn new(
        mut out: W,
        key: &'k MasterKey,
        created_at: u64,
    ) -> io::Result<ArchiveWriter<'k, W>> {
        let mut id = [0u8; 8];
        aws_lc_rs::rand::fill(&mut id).map_err(|_| io::Error::other("random generator failed"))?;
        let header = Header {
            archive: crate::store::hex(&id),
            created_at,
            key_fingerprint: key.fingerprint().to_owned(),
        };
        let mut line = serde_json::to_vec(&header).map_err(io::Error::other)?;
        line.push(b'\n');
        out.write_all(MAGIC)?;
        out.write_all(&line)?;
        Ok(ArchiveWriter {
            bytes: (MAGIC.len() + line.len()) as u64,
            out,
            key,
            header,
            index: 0,
            buf: Vec::with_capacity(CHUNK),
        })
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    fn seal_chunk(&mut self, last: bool) -> io::Result<()> {
        let aad = chunk_aad(&self.header.archive, self.index, last);
        let plain = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        let sealed = self
            .key
            .seal(&aad, plain)
            .map_err(|e| io::Error::other(format!("sealing a backup chunk: {e}")))?;
        let len = u32::try_from(sealed.len()).map_err(|_| invalid("chunk too large"))?;
        self.out.write_all(&len.to_be_bytes())?;
        self.out.write_all(&sealed)?;
        self.bytes += 4 + sealed.len() as u64;
        self.index += 1;
        Ok(())
    }

    /// Seals the last chunk and returns the sink.
    pub fn finish(mut self) -> io::Result<(W, u64)> {
        self.seal_chunk(true)?;
        self.out.flush()?;
        Ok((self.out, self.bytes))
    }
}

impl<W: Write> Write for ArchiveWriter<'_, W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.seal_chunk(false)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Opens an archive's chunks as one plaintext stream.
pub struct ArchiveReader<'k, R: BufRead> {
    input: R,
    key: &'k MasterKey,
    header: Header,
    index: u64,
    plain: Vec<u8>,
    at: usize,
    done: bool,
}

impl<'k, R: BufRead> ArchiveReader<'k, R> {
    /// Reads the header; fails when the archive is not one, or not for this key.
    pub fn new(mut input: R, key: &'k MasterKey) -> io::Result<ArchiveReader<'k, R>> {
        let mut magic = vec![0u8; MAGIC.len()];
        input
            .read_exact(&mut magic)
            .map_err(|_| invalid("not a way2mail backup (too short)"))?;
        if magic != MAGIC {
            return Err(invalid("not a way2mail backup (wrong header)"));
        }
        let mut line = Vec::new();
        input.by_ref().take(4096).read_until(b'\n', &mut line)?;
        let header: Header = serde_json::from_slice(&line)
            .map_err(|e| invalid(format!("unreadable backup header: {e}")))?;
        if header.key_fingerprint != key.fingerprint() {
            return Err(invalid(format!(
                "this backup was sealed with the backup key {}, not with {} (the key given)",
                header.key_fingerprint,
                key.fingerprint()
            )));
        }
        Ok(ArchiveReader {
            input,
            key,
            header,
            index: 0,
            plain: Vec::new(),
            at: 0,
            done: false,
        })
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    fn next_chunk(&mut self) -> io::Result<()> {
        let mut len = [0u8; 4];
        if let Err(e) = self.input.read_exact(&mut len) {
            return Err(if e.kind() == io::ErrorKind::UnexpectedEof {
                invalid("the backup is cut short (its last chunk is missing)")
            } else {
                e
            });
        }
        let len = u32::from_be_bytes(len) as usize;
        if len > MAX_SEALED {
            return Err(invalid(format!("a backup chunk of {len} bytes")));
        }
        let mut sealed = vec![0u8; len];
        self.input
            .read_exact(&mut sealed)
            .map_err(|_| invalid("the backup is cut short inside a chunk"))?;
        for last in [false, true] {
            let aad = chunk_aad(&self.header.archive, self.index, last);
            if let Ok(plain) = self.key.open(&aad, sealed.clone()) {
                self.plain = plain;
                self.at = 0;
                self.index += 1;
                self.done = last;
                if last {
                    let mut extra = [0u8; 1];
                    if self.input.read(&mut extra)? != 0 {
                        return Err(invalid("data after the backup's last chunk"));
                    }
                }
                return Ok(());
            }
        }
        Err(invalid(format!(
            "backup chunk {} does not open: damaged, reordered, or from another archive",
            self.index
        )))
    }
}

impl<R: BufRead> Read for ArchiveReader<'_, R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.at == self.plain.len() {
            if self.done {
                return Ok(0);
            }
            self.next_chunk()?;
        }
        let n = out.len().min(self.plain.len() - self.at);
        out[..n].copy_from_slice(&self.plain[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Writes the control section: every record as stored.
pub fn write_control_record(
    out: &mut impl Write,
    tree: TreeName,
    key: &[u8],
    value: &[u8],
) -> io::Result<()> {
    let name = tree.as_str().as_bytes();
    out.write_all(&[name.len() as u8])?;
    out.write_all(name)?;
    for part in [key, value] {
        let len = u32::try_from(part.len()).map_err(|_| invalid("record too large"))?;
        out.write_all(&len.to_be_bytes())?;
        out.write_all(part)?;
    }
    Ok(())
}

/// Ends the control section.
pub fn end_control(out: &mut impl Write) -> io::Result<()> {
    out.write_all(&[0u8])
}

/// One control store record as stored: tree, key, sealed value.
pub type ControlRecord = (TreeName, Vec<u8>, Vec<u8>);

/// Reads the next control record; `None` at the section's end.
pub fn read_control_record(input: &mut impl Read) -> io::Result<Option<ControlRecord>> {
    let mut len = [0u8; 1];
    input.read_exact(&mut len)?;
    if len[0] == 0 {
        return Ok(None);
    }
    let mut name = vec![0u8; len[0] as usize];
    input.read_exact(&mut name)?;
    let tree = std::str::from_utf8(&name)
        .ok()
        .and_then(TreeName::from_name)
        .ok_or_else(|| {
            invalid(format!(
                "unknown store tree {:?}",
                String::from_utf8_lossy(&name)
            ))
        })?;
    let mut parts = Vec::with_capacity(2);
    for _ in 0..2 {
        let mut n = [0u8; 4];
        input.read_exact(&mut n)?;
        let n = u32::from_be_bytes(n) as usize;
        if n > 1 << 30 {
            return Err(invalid("a store record too large"));
        }
        let mut buf = vec![0u8; n];
        input.read_exact(&mut buf)?;
        parts.push(buf);
    }
    let value = parts.pop().unwrap_or_default();
    let key = parts.pop().unwrap_or_default();
    Ok(Some((tree, key, value)))
}

/// Reads one section marker byte.
pub fn read_marker(input: &mut impl Read) -> io::Result<u8> {
    let mut m = [0u8; 1];
    input.read_exact(&mut m)?;
    Ok(m[0])
}

/// Where a restore puts things, and with which keys.
pub struct RestoreTarget {
    pub control_dir: PathBuf,
    pub control_keyring: Keyring,
    pub spool_dir: PathBuf,
    pub spool_keyring: Keyring,
}

/// What a restore did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RestoreReport {
    pub archive: String,
    pub created_at: u64,
    pub control_records: u64,
    /// Control records of tenants erased since the backup, left out.
    pub control_erased_dropped: u64,
    pub spool_records: u64,
    pub spool_messages: u64,
    pub spool_erased_dropped: u64,
    pub control_moved_aside: Option<PathBuf>,
    pub spool_moved_aside: Option<PathBuf>,
}

fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let mut name = dir.as_os_str().to_owned();
    name.push(".");
    name.push(suffix);
    PathBuf::from(name)
}

fn erased_record(keyring: &Keyring, value: &[u8]) -> bool {
    way2mail_seal::key_id_of(value)
        .is_some_and(|id| matches!(keyring.lookup(id), Lookup::Erased(_)))
}

/// Why a restore stopped. Until the last step (the swap) the node is as it was.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RestoreError {
    /// The archive does not open or read (another key, damaged, cut short).
    #[error("{0}")]
    Archive(io::Error),
    #[error("the backup does not start with the control store")]
    NoControlStore,
    #[error("the backup has no spool section")]
    NoSpool,
    #[error("the backup does not end where it should")]
    NoEnd,
    #[error("data after the end of the backup")]
    TrailingData,
    /// The staging copy of the control store.
    #[error("{}: {source}", path.display())]
    Staging { path: PathBuf, source: io::Error },
    #[error("{}: {source}", path.display())]
    StagingStore { path: PathBuf, source: sled::Error },
    #[error("{0}")]
    Store(sled::Error),
    #[error("{0}")]
    Keyring(way2mail_seal::Error),
    #[error("restoring the spool: {0}")]
    Spool(way2mail_queue::Error),
    /// Moving the current control store aside or the restored one in.
    #[error("{0}")]
    Swap(io::Error),
}

/// Restores an archive onto a stopped node: the control store is built beside the
/// current one, the spool is restored (`way2mail_queue::restore_dump`), then the
/// control store is swapped in. The directories that were there are moved aside,
/// never deleted. Records sealed with the keys of tenants erased since the backup
/// are dropped: the node's keyrings decide what can come back.
pub fn restore(
    input: impl BufRead,
    key: &MasterKey,
    target: &RestoreTarget,
) -> Result<RestoreReport, RestoreError> {
    let mut reader = ArchiveReader::new(input, key).map_err(RestoreError::Archive)?;
    let mut report = RestoreReport {
        archive: reader.header().archive.clone(),
        created_at: reader.header().created_at,
        ..RestoreReport::default()
    };
    if read_marker(&mut reader).map_err(RestoreError::Archive)? != b'C' {
        return Err(RestoreError::NoControlStore);
    }
    let staging = sibling(&target.control_dir, "restoring");
    let staging_error = |source| RestoreError::Staging {
        path: staging.clone(),
        source,
    };
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(staging_error)?;
    }
    let built = (|| {
        let db = sled::Config::new()
            .path(&staging)
            .open()
            .map_err(|source| RestoreError::StagingStore {
                path: staging.clone(),
                source,
            })?;
        while let Some((tree, k, v)) =
            read_control_record(&mut reader).map_err(RestoreError::Archive)?
        {
            if tree.is_tenant_owned() && erased_record(&target.control_keyring, &v) {
                report.control_erased_dropped += 1;
                continue;
            }
            db.open_tree(tree.as_str())
                .and_then(|t| t.insert(k, v))
                .map_err(RestoreError::Store)?;
            report.control_records += 1;
        }
        db.flush().map_err(RestoreError::Store)?;
        Ok(())
    })();
    let restored = built.and_then(|()| {
        target
            .control_keyring
            .bind(&staging)
            .map_err(RestoreError::Keyring)?;
        way2mail_daemon::files::chown_tree_like(&staging, &target.control_dir)
            .map_err(staging_error)?;
        if read_marker(&mut reader).map_err(RestoreError::Archive)? != b'S' {
            return Err(RestoreError::NoSpool);
        }
        let spool =
            way2mail_queue::restore_dump(&target.spool_dir, &target.spool_keyring, &mut reader)
                .map_err(RestoreError::Spool)?;
        report.spool_records = spool.records;
        report.spool_messages = spool.messages;
        report.spool_erased_dropped = spool.erased_dropped;
        report.spool_moved_aside = spool.moved_aside;
        if read_marker(&mut reader).map_err(RestoreError::Archive)? != b'E' {
            return Err(RestoreError::NoEnd);
        }
        let mut rest = Vec::new();
        reader
            .read_to_end(&mut rest)
            .map_err(RestoreError::Archive)?;
        if !rest.is_empty() {
            return Err(RestoreError::TrailingData);
        }
        Ok(())
    });
    if let Err(e) = restored {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(e);
    }
    if target.control_dir.exists() {
        let aside = sibling(
            &target.control_dir,
            &format!("before-restore-{}", way2mail_daemon::time::now_secs()),
        );
        std::fs::rename(&target.control_dir, &aside).map_err(RestoreError::Swap)?;
        report.control_moved_aside = Some(aside);
    }
    std::fs::rename(&staging, &target.control_dir).map_err(RestoreError::Swap)?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealed(key: &MasterKey, plain: &[u8]) -> Vec<u8> {
        let mut w = ArchiveWriter::new(Vec::new(), key, 1).expect("writer");
        w.write_all(plain).expect("write");
        w.finish().expect("finish").0
    }

    fn opened(key: &MasterKey, archive: &[u8]) -> io::Result<Vec<u8>> {
        let mut r = ArchiveReader::new(archive, key)?;
        let mut out = Vec::new();
        r.read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn archives_round_trip_and_hold_no_plaintext() {
        let key = MasterKey::generate().expect("key");
        let plain: Vec<u8> = (0..(CHUNK * 2 + 99)).map(|i| (i % 241) as u8).collect();
        let archive = sealed(&key, &plain);
        assert_eq!(opened(&key, &archive).expect("open"), plain);
        let small = sealed(&key, b"known plaintext marker");
        assert!(!small.windows(12).any(|w| w == b"known plaint"));
        assert_eq!(opened(&key, &sealed(&key, b"")).expect("empty"), b"");
    }

    #[test]
    fn damaged_cut_extended_or_foreign_archives_are_refused() {
        let key = MasterKey::generate().expect("key");
        let plain = vec![7u8; CHUNK + 10];
        let archive = sealed(&key, &plain);
        let other = MasterKey::generate().expect("other");
        let e = opened(&other, &archive).expect_err("other key");
        assert!(e.to_string().contains("sealed with the backup key"), "{e}");
        let mut flipped = archive.clone();
        let at = flipped.len() - 20;
        flipped[at] ^= 1;
        assert!(opened(&key, &flipped).is_err());
        // Without its last chunk: the first chunk opens, but not as the last.
        let header_end = archive.iter().position(|&b| b == b'\n').expect("magic") + 1;
        let header_end = header_end
            + archive[header_end..]
                .iter()
                .position(|&b| b == b'\n')
                .expect("header")
            + 1;
        let first_len =
            u32::from_be_bytes(archive[header_end..header_end + 4].try_into().expect("len"))
                as usize;
        let cut = &archive[..header_end + 4 + first_len];
        let e = opened(&key, cut).expect_err("cut");
        assert!(e.to_string().contains("cut short"), "{e}");
        let mut longer = archive.clone();
        longer.push(0);
        assert!(opened(&key, &longer).is_err());
        assert!(opened(&key, b"not a backup at all, far too short?").is_err());
    }

    #[test]
    fn control_records_round_trip() {
        let mut buf = Vec::new();
        write_control_record(&mut buf, TreeName::Audit, b"k1", b"v1").expect("write");
        write_control_record(&mut buf, TreeName::Tenants, b"", b"").expect("write");
        end_control(&mut buf).expect("end");
        let mut input = buf.as_slice();
        assert_eq!(
            read_control_record(&mut input).expect("read"),
            Some((TreeName::Audit, b"k1".to_vec(), b"v1".to_vec()))
        );
        assert_eq!(
            read_control_record(&mut input).expect("read"),
            Some((TreeName::Tenants, Vec::new(), Vec::new()))
        );
        assert_eq!(read_control_record(&mut input).expect("end"), None);
    }
}
