//! Tar (POSIX ustar) archives for exports, written by the `tar` crate: a format every
//! system reads (`tar`, Python's tarfile, 7-Zip). Every member is a plain file owned
//! by `way2mail`, mode 0600, dated when the export started; each one's SHA-256 is
//! taken as it is written, for the manifest. Members go out one by one: an archive
//! is never whole in memory.

use std::io::{self, Write};
use std::mem::ManuallyDrop;

use aws_lc_rs::digest;
use tar::{Builder, EntryType, Header};

use way2mail_wire::protocol::ExportFile;

/// The user and group named in every member.
const OWNER: &str = "way2mail";

/// Writes files one after the other; `finish` writes the end-of-archive blocks.
pub(crate) struct Tar<'a> {
    /// Never dropped: `tar::Builder`'s drop writes the end-of-archive blocks, which
    /// would make an export cut short by an error look complete. It only borrows its
    /// writer, so not dropping it leaks nothing.
    builder: ManuallyDrop<Builder<&'a mut dyn Write>>,
    mtime: u64,
    files: Vec<ExportFile>,
}

impl<'a> Tar<'a> {
    pub(crate) fn new(out: &'a mut dyn Write, mtime: u64) -> Tar<'a> {
        Tar {
            builder: ManuallyDrop::new(Builder::new(out)),
            mtime,
            files: Vec::new(),
        }
    }

    /// Adds one file.
    pub(crate) fn file(&mut self, path: &str, data: &[u8]) -> io::Result<()> {
        let mut header = Header::new_ustar();
        header.set_entry_type(EntryType::Regular);
        header.set_size(data.len() as u64);
        header.set_mode(0o600);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(self.mtime);
        header.set_username(OWNER)?;
        header.set_groupname(OWNER)?;
        // Sets the path (split into ustar's prefix and name when long) and the checksum.
        self.builder.append_data(&mut header, path, data)?;
        self.files.push(ExportFile {
            path: path.to_owned(),
            bytes: data.len() as u64,
            sha256: crate::store::hex(digest::digest(&digest::SHA256, data).as_ref()),
        });
        Ok(())
    }

    /// The files written so far.
    pub(crate) fn files(&self) -> &[ExportFile] {
        &self.files
    }

    pub(crate) fn finish(self) -> io::Result<()> {
        let Tar { builder, .. } = self;
        let out = ManuallyDrop::into_inner(builder).into_inner()?;
        out.flush()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    const BLOCK: usize = 512;

    #[test]
    fn members_read_back_as_written() {
        let mut buf = Vec::new();
        let long = format!("{}/messages/{}.eml", "t".repeat(63), "0".repeat(26));
        let mut tar = Tar::new(&mut buf, 1_700_000_000);
        tar.file("a/b.txt", b"hello").expect("file");
        tar.file(&long, b"").expect("long path");
        assert_eq!(tar.files()[0].sha256.len(), 64);
        assert_eq!(tar.files()[1].path, long);
        tar.finish().expect("finish");
        assert_eq!(buf.len() % BLOCK, 0);
        assert_eq!(&buf[257..263], b"ustar\0");
        // Two members of one block (and one of data), then the two end blocks.
        assert_eq!(buf.len(), 5 * BLOCK);

        let mut archive = tar::Archive::new(buf.as_slice());
        let mut seen = Vec::new();
        for entry in archive.entries().expect("entries") {
            let mut entry = entry.expect("entry");
            let header = entry.header();
            assert_eq!(header.entry_type(), EntryType::Regular);
            assert_eq!(header.mode().expect("mode"), 0o600);
            assert_eq!(header.mtime().expect("mtime"), 1_700_000_000);
            assert_eq!(header.username().expect("user"), Some(OWNER));
            assert_eq!(header.groupname().expect("group"), Some(OWNER));
            let path = entry.path().expect("path").to_string_lossy().into_owned();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).expect("data");
            seen.push((path, data));
        }
        assert_eq!(
            seen,
            [
                ("a/b.txt".to_owned(), b"hello".to_vec()),
                (long, Vec::new())
            ]
        );
    }

    #[test]
    fn an_unfinished_archive_has_no_end() {
        let mut buf = Vec::new();
        let mut tar = Tar::new(&mut buf, 1_700_000_000);
        tar.file("a/b.txt", b"hello").expect("file");
        drop(tar);
        // The header and the data block, without the end-of-archive blocks.
        assert_eq!(buf.len(), 2 * BLOCK);
    }
}
