//! A report attachment's bytes → the XML document: zip (what Google and most others
//! send), gzip (Microsoft, Yahoo), or the XML itself.
//!
//! Both sizes are capped before any of it is trusted: the attachment at
//! [`MAX_ATTACHMENT`], the XML at [`MAX_XML`]. Inflating reads through a `take`
//! of one byte more than the cap, so a member that inflates past it (a zip bomb,
//! or a size field that lies) costs at most `MAX_XML + 1` bytes of memory before
//! it is refused.

use std::io::{Cursor, Read};

use super::{ReportError, MAX_ATTACHMENT, MAX_XML};

/// How an attachment is packed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Zip,
    Gzip,
    Xml,
}

/// The packing that `content_type` (parameters and case ignored) or, for a
/// generic type, the file name's extension says; `None`: not a report.
pub(crate) fn kind(content_type: &str, filename: Option<&str>) -> Option<Kind> {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        // x-zip-compressed is what Windows mail software says for zip files.
        "application/zip" | "application/x-zip" | "application/x-zip-compressed" => Some(Kind::Zip),
        "application/gzip" | "application/x-gzip" => Some(Kind::Gzip),
        "text/xml" | "application/xml" => Some(Kind::Xml),
        // Some reporters send a generic type and let the name say what it is.
        "application/octet-stream" | "" => by_name(filename?),
        _ => None,
    }
}

fn by_name(filename: &str) -> Option<Kind> {
    let name = filename.trim().to_ascii_lowercase();
    if name.ends_with(".zip") {
        Some(Kind::Zip)
    } else if name.ends_with(".gz") {
        // `.xml.gz`, and `.gz` alone.
        Some(Kind::Gzip)
    } else if name.ends_with(".xml") {
        Some(Kind::Xml)
    } else {
        None
    }
}

/// The XML document in an attachment of `content_type` named `filename`.
///
/// A zip archive must hold exactly one `.xml` member (other members are ignored);
/// [`ReportError::NotAReport`] when the type and name say no report at all.
pub fn decode(
    bytes: &[u8],
    content_type: &str,
    filename: Option<&str>,
) -> Result<Vec<u8>, ReportError> {
    let kind = kind(content_type, filename).ok_or(ReportError::NotAReport)?;
    if bytes.len() > MAX_ATTACHMENT {
        return Err(ReportError::TooLarge("attachment"));
    }
    match kind {
        Kind::Zip => unzip(bytes),
        Kind::Gzip => read_capped(flate2::read::GzDecoder::new(bytes)),
        Kind::Xml => {
            if bytes.len() > MAX_XML {
                return Err(ReportError::TooLarge("XML document"));
            }
            Ok(bytes.to_vec())
        }
    }
}

fn unzip(bytes: &[u8]) -> Result<Vec<u8>, ReportError> {
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).map_err(archive_error)?;
    let mut xml = None;
    for index in 0..archive.len() {
        let Some(name) = archive.name_for_index(index) else {
            continue;
        };
        if name.to_ascii_lowercase().ends_with(".xml") {
            if xml.is_some() {
                return Err(ReportError::Archive(
                    "the zip archive holds more than one .xml member".into(),
                ));
            }
            xml = Some(index);
        }
    }
    let index =
        xml.ok_or_else(|| ReportError::Archive("no .xml member in the zip archive".into()))?;
    let member = archive.by_index(index).map_err(archive_error)?;
    // The declared size first (cheap), then the real one (the declaration can lie).
    if member.size() > MAX_XML as u64 {
        return Err(ReportError::TooLarge("XML document"));
    }
    read_capped(member)
}

/// All of `reader`, refused past MAX_XML without reading (or allocating) further.
fn read_capped(reader: impl Read) -> Result<Vec<u8>, ReportError> {
    let mut out = Vec::new();
    reader
        .take(MAX_XML as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| ReportError::Archive(e.to_string()))?;
    if out.len() > MAX_XML {
        return Err(ReportError::TooLarge("XML document"));
    }
    Ok(out)
}

fn archive_error(error: zip::result::ZipError) -> ReportError {
    ReportError::Archive(error.to_string())
}
