//! DMARC aggregate reports (RFC 7489 section 7.2): the daily XML that mailbox
//! providers send to a domain's `rua=` address, saying which IPs sent mail with
//! the domain in From and whether it passed. Pure functions on bytes; receiving the
//! reports and keeping them is the caller's.
//!
//! ```text
//!   mod.rs       ReportError, the size caps, reports_in_message(): a message's
//!                report attachments, decoded and parsed
//!   archive.rs   an attachment → the XML: zip, gzip or plain, each size capped
//!   report.rs    the XML (appendix C's schema) → AggregateReport, streaming
//!   summary.rs   reports → Summary: one domain's senders, and what p=reject
//!                would refuse
//!   tests.rs     reports built as reporters send them, and hostile input
//! ```
//!
//! # Hostile input
//!
//! Reports come from anyone who can send mail to the `rua=` address. Nothing here
//! panics, and memory is bounded by the input and the caps: a message is read up to
//! [`MAX_MESSAGE`] bytes, an attachment up to [`MAX_ATTACHMENT`], an inflated
//! document up to [`MAX_XML`] (a zip or gzip bomb is refused once it passes that,
//! not after it has inflated). The XML may not declare a document type, so that no
//! entity can be defined, let alone expanded ("billion laughs"); its nesting, field
//! texts and records are capped ([`report::MAX_DEPTH`], [`report::MAX_TEXT`],
//! [`report::MAX_RECORDS`]). Unlike the bounce and complaint parsers
//! (`feedback/`), what cannot be read is an error naming why: a report is read to
//! count mail, and a silently short count would mislead.

pub mod archive;
pub mod report;
mod summary;
#[cfg(test)]
mod tests;

pub use archive::decode;
pub use report::{parse_xml, AggregateReport, PublishedPolicy, Row};
pub use summary::{
    summarize, OtherSources, Reporter, Source, SourceStats, Summarizer, Summary, MAX_REPORTERS,
    MAX_SOURCES,
};

use mail_parser::{MessageParser, MimeHeaders, PartType};

/// Bytes of a message read: a [`MAX_ATTACHMENT`] attachment in base64, and room
/// for the rest.
pub const MAX_MESSAGE: usize = 15 * 1024 * 1024;
/// Bytes of one (compressed) report attachment.
pub const MAX_ATTACHMENT: usize = 10 * 1024 * 1024;
/// Bytes of one report's XML, inflated: about 100,000 records.
pub const MAX_XML: usize = 20 * 1024 * 1024;
/// Report attachments read from one message; reporters send one.
pub const MAX_REPORTS_PER_MESSAGE: usize = 16;

/// Why a report could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    /// Past one of the caps; names what.
    #[error("too large: {0}")]
    TooLarge(&'static str),
    /// A document type or entity declaration, or a reference to an undefined entity.
    #[error("the XML declares or uses entities, which reports never do")]
    Entity,
    /// Not well-formed XML, or a field whose value is not of its type.
    #[error("malformed report: {0}")]
    Malformed(String),
    /// A field the schema requires is not there; names it.
    #[error("the report lacks {0}")]
    Missing(&'static str),
    /// No DMARC aggregate report here: no attachment of a report's type, or XML
    /// whose root is not `<feedback>`.
    #[error("not a DMARC aggregate report")]
    NotAReport,
    /// The zip or gzip packing could not be undone.
    #[error("report archive: {0}")]
    Archive(String),
}

/// The aggregate reports attached to `message` (a whole message, as received).
///
/// A part is a report by its content type (zip, gzip, XML), or for a generic type
/// by its file name (`.zip`, `.gz`, `.xml`); the body of a single-part message
/// counts as a part. Any report that fails to read makes the whole call fail, so
/// that a partly read message is never taken for a complete one.
pub fn reports_in_message(message: &[u8]) -> Result<Vec<AggregateReport>, ReportError> {
    if message.len() > MAX_MESSAGE {
        return Err(ReportError::TooLarge("message"));
    }
    let parsed = MessageParser::default()
        .parse(message)
        .ok_or(ReportError::NotAReport)?;
    let mut reports = Vec::new();
    for part in &parsed.parts {
        let bytes: &[u8] = match &part.body {
            PartType::Binary(bytes) | PartType::InlineBinary(bytes) => bytes,
            PartType::Text(text) => text.as_bytes(),
            // A report is never an HTML body; nested messages (a forwarded report)
            // and multipart containers are not read.
            PartType::Html(_) | PartType::Message(_) | PartType::Multipart(_) => continue,
        };
        let content_type = part
            .content_type()
            .map(|ct| match ct.subtype() {
                Some(subtype) => format!("{}/{}", ct.ctype(), subtype),
                None => ct.ctype().to_owned(),
            })
            .unwrap_or_default();
        let filename = part.attachment_name();
        if archive::kind(&content_type, filename).is_none() {
            continue;
        }
        if reports.len() >= MAX_REPORTS_PER_MESSAGE {
            return Err(ReportError::TooLarge("report attachments in one message"));
        }
        let xml = decode(bytes, &content_type, filename)?;
        reports.push(parse_xml(&xml)?);
    }
    if reports.is_empty() {
        return Err(ReportError::NotAReport);
    }
    Ok(reports)
}
