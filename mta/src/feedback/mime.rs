//! The MIME side of reports: mail-parser finds the parts, and this file hands each
//! one's content over as bytes, whatever mail-parser made of it. Reports are read
//! from their raw bytes here, not from mail-parser's header values, because
//! mail-parser knows neither `message/delivery-status` nor `message/feedback-report`
//! (it gives them as binary, or as text when they are malformed), and a
//! `message/rfc822` part comes back as a parsed message whose field values have been
//! through its parsers (an address list, a date) rather than as written.

use std::borrow::Cow;

use mail_parser::{Message, MessageParser, MessagePart, MimeHeaders, PartType};

use super::fields::{self, OriginalHeaders};
use super::MAX_MESSAGE;

/// `message` parsed as MIME, after cutting it at [`MAX_MESSAGE`] bytes: reports put
/// their machine-readable part before the returned message, so a cut loses at most
/// part of the copy.
pub(crate) fn parse(message: &[u8]) -> Option<Message<'_>> {
    let message = &message[..message.len().min(MAX_MESSAGE)];
    if message.is_empty() {
        return None;
    }
    MessageParser::default().parse(message)
}

/// Whether `part`'s Content-Type is `ctype/subtype` (ignoring case).
pub(crate) fn is(part: &MessagePart<'_>, ctype: &str, subtype: &str) -> bool {
    part.is_content_type(ctype, subtype)
}

/// The content of `part` (a part of `message`, not of a message nested in it), with
/// its transfer encoding undone: text as decoded, binary as is, and a nested message
/// as the bytes it was parsed from.
pub(crate) fn content<'m>(
    message: &'m Message<'_>,
    part: &'m MessagePart<'_>,
) -> Option<Cow<'m, [u8]>> {
    match &part.body {
        PartType::Text(text) | PartType::Html(text) => Some(Cow::Borrowed(text.as_bytes())),
        PartType::Binary(bytes) | PartType::InlineBinary(bytes) => {
            Some(Cow::Borrowed(bytes.as_ref()))
        }
        PartType::Message(nested) => {
            if part.encoding == mail_parser::Encoding::None {
                // Parsed in place: its bytes are the parent's, from the part's body
                // on. Only the header section is read, so the end does not matter.
                let start = usize::try_from(part.offset_body).ok()?;
                message.raw_message.get(start..).map(Cow::Borrowed)
            } else {
                // Decoded (base64, quoted-printable) and parsed on its own.
                Some(Cow::Borrowed(nested.raw_message.as_ref()))
            }
        }
        PartType::Multipart(_) => None,
    }
}

/// The first part (after the root) of one of `types`, as `(type, subtype)` pairs.
pub(crate) fn find<'m>(
    message: &'m Message<'m>,
    types: &[(&str, &str)],
) -> Option<&'m MessagePart<'m>> {
    message
        .parts
        .iter()
        .skip(1)
        .find(|p| types.iter().any(|(t, s)| is(p, t, s)))
}

/// Parts that carry the returned message or its header section: RFC 3462 and 5965
/// name `message/rfc822` and `text/rfc822-headers`; RFC 6533 the `global` forms;
/// `message/rfc822-headers` is a common misspelling.
const ORIGINAL: &[(&str, &str)] = &[
    ("message", "rfc822"),
    ("text", "rfc822-headers"),
    ("message", "global"),
    ("message", "global-headers"),
    ("message", "rfc822-headers"),
];

/// The headers of the returned message, when the report has a part for it.
pub(crate) fn original(message: &Message<'_>) -> Option<OriginalHeaders> {
    let part = find(message, ORIGINAL)?;
    let bytes = content(message, part)?;
    Some(OriginalHeaders::from_fields(&fields::header_section(
        &bytes,
    )))
}

/// The text of the first `text/plain` part (a part with no Content-Type is one), or
/// of the root when the message is not multipart.
pub(crate) fn first_text<'m>(message: &'m Message<'_>) -> Option<&'m str> {
    message.parts.iter().find_map(|p| match &p.body {
        PartType::Text(text) if p.content_type().is_none() || is(p, "text", "plain") => {
            Some(text.as_ref())
        }
        _ => None,
    })
}
