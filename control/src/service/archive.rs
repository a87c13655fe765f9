//! Tar (POSIX ustar) archives, for exports: a format every system reads (`tar`,
//! Python's tarfile, 7-Zip) without a library of ours. Each file's SHA-256 is taken
//! as it is written, for the manifest.

use std::io::{self, Write};

use aws_lc_rs::digest;

use way2mail_wire::protocol::ExportFile;

const BLOCK: usize = 512;

/// Writes files one after the other; `finish` writes the end-of-archive blocks.
pub(crate) struct Tar<W: Write> {
    out: W,
    mtime: u64,
    files: Vec<ExportFile>,
}

fn octal(field: &mut [u8], value: u64) -> io::Result<()> {
    // Digits, then a NUL: the width minus one digit.
    let text = format!("{value:0width$o}", width = field.len() - 1);
    if text.len() != field.len() - 1 {
        return Err(io::Error::other("value too large for a tar header"));
    }
    field[..text.len()].copy_from_slice(text.as_bytes());
    field[text.len()] = 0;
    Ok(())
}

/// Splits `path` into ustar's prefix (≤ 155) and name (≤ 100) fields.
fn split(path: &str) -> io::Result<(&str, &str)> {
    if path.len() <= 100 {
        return Ok(("", path));
    }
    for (at, _) in path.match_indices('/') {
        let (prefix, name) = (&path[..at], &path[at + 1..]);
        if prefix.len() <= 155 && name.len() <= 100 && !name.is_empty() {
            return Ok((prefix, name));
        }
    }
    Err(io::Error::other(format!(
        "path too long for a tar archive: {path}"
    )))
}

fn header(path: &str, size: u64, mtime: u64) -> io::Result<[u8; BLOCK]> {
    let mut h = [0u8; BLOCK];
    let (prefix, name) = split(path)?;
    h[..name.len()].copy_from_slice(name.as_bytes());
    octal(&mut h[100..108], 0o600)?;
    octal(&mut h[108..116], 0)?;
    octal(&mut h[116..124], 0)?;
    octal(&mut h[124..136], size)?;
    octal(&mut h[136..148], mtime)?;
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[265..273].copy_from_slice(b"way2mail");
    h[297..305].copy_from_slice(b"way2mail");
    h[345..345 + prefix.len()].copy_from_slice(prefix.as_bytes());
    // The checksum is computed with its own field read as spaces.
    h[148..156].copy_from_slice(b"        ");
    let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
    let text = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(text.as_bytes());
    Ok(h)
}

impl<W: Write> Tar<W> {
    pub(crate) fn new(out: W, mtime: u64) -> Tar<W> {
        Tar {
            out,
            mtime,
            files: Vec::new(),
        }
    }

    /// Adds one file.
    pub(crate) fn file(&mut self, path: &str, data: &[u8]) -> io::Result<()> {
        self.out
            .write_all(&header(path, data.len() as u64, self.mtime)?)?;
        self.out.write_all(data)?;
        let pad = (BLOCK - data.len() % BLOCK) % BLOCK;
        self.out.write_all(&[0u8; BLOCK][..pad])?;
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

    pub(crate) fn finish(mut self) -> io::Result<W> {
        self.out.write_all(&[0u8; 2 * BLOCK])?;
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_ustar() {
        let mut buf = Vec::new();
        let mut tar = Tar::new(&mut buf, 1_700_000_000);
        tar.file("a/b.txt", b"hello").expect("file");
        let long = format!("{}/messages/{}.eml", "t".repeat(63), "0".repeat(26));
        tar.file(&long, b"").expect("long path");
        assert_eq!(tar.files()[0].sha256.len(), 64);
        tar.finish().expect("finish");
        assert_eq!(buf.len() % BLOCK, 0);
        assert_eq!(&buf[257..263], b"ustar\0");
        assert_eq!(&buf[..7], b"a/b.txt");
        assert_eq!(&buf[124..135], b"00000000005");
        assert_eq!(&buf[BLOCK..BLOCK + 5], b"hello");
        let second = &buf[2 * BLOCK..3 * BLOCK];
        // The first split that fits: the name part keeps `messages/…`.
        assert_eq!(
            &second[345..345 + 64],
            format!("{}\0", "t".repeat(63)).as_bytes()
        );
        assert_eq!(&second[..9], b"messages/");
        assert!(split(&"x".repeat(300)).is_err());
    }
}
