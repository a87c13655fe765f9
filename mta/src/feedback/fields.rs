//! Header-style field blocks, as RFC 3464 (`message/delivery-status`) and RFC 5965
//! (`message/feedback-report`) write them and as a message's header section is:
//! `Name: value` lines, continued by lines that start with white space, blocks
//! separated by blank lines. One reader for all three, bounded in every dimension,
//! since all three come from strangers.
//!
//! And [`OriginalHeaders`]: what a report's copy of our message (or of its header
//! section) says about that message.

use super::{MAX_FIELD, MAX_RECIPIENTS};

/// Blocks read from one body: a per-message block and up to [`MAX_RECIPIENTS`]
/// per-recipient ones.
const MAX_BLOCKS: usize = MAX_RECIPIENTS + 1;
/// Fields kept per block (the ones after this are not looked at): RFC 3464 and 5965
/// define about a dozen, a header section may have a few hundred, and a feedback
/// report may repeat Original-Rcpt-To for each of [`MAX_RECIPIENTS`] recipients.
const MAX_FIELDS: usize = MAX_RECIPIENTS + 100;
/// A field name longer than this is not one (RFC 5322 lines are at most 998).
const MAX_NAME: usize = 76;
/// Raw bytes gathered for a value before it is cut at [`MAX_FIELD`] characters
/// (a character is at most 4 bytes; white space is collapsed after gathering).
const MAX_RAW_VALUE: usize = 8 * MAX_FIELD;

/// One field: the name in lower case, the value unfolded, white-space runs made one
/// space, trimmed, and cut at [`MAX_FIELD`] characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Field {
    pub name: String,
    pub value: String,
}

/// The first field named `name` (lower case) in `block`.
pub(crate) fn first<'a>(block: &'a [Field], name: &str) -> Option<&'a str> {
    block
        .iter()
        .find(|f| f.name == name)
        .map(|f| f.value.as_str())
}

/// Every field named `name` (lower case) in `block`.
pub(crate) fn all<'a>(block: &'a [Field], name: &'a str) -> impl Iterator<Item = &'a str> {
    block
        .iter()
        .filter(move |f| f.name == name)
        .map(|f| f.value.as_str())
}

/// `text` cut at `max` characters.
pub(crate) fn truncated(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => text[..end].to_owned(),
        None => text.to_owned(),
    }
}

/// White-space runs as one space, trimmed, at most [`MAX_FIELD`] characters.
pub(crate) fn clean(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let joined = text.split_whitespace().collect::<Vec<_>>().join(" ");
    truncated(&joined, MAX_FIELD)
}

/// A field being gathered.
struct Open {
    name: String,
    raw: Vec<u8>,
}

struct Reader {
    blocks: Vec<Vec<Field>>,
    block: Vec<Field>,
    open: Option<Open>,
    max_blocks: usize,
}

impl Reader {
    fn close_field(&mut self) {
        if let Some(open) = self.open.take() {
            if self.block.len() < MAX_FIELDS {
                self.block.push(Field {
                    name: open.name,
                    value: clean(&open.raw),
                });
            }
        }
    }

    fn close_block(&mut self) {
        self.close_field();
        if !self.block.is_empty() {
            self.blocks.push(std::mem::take(&mut self.block));
        }
    }

    fn full(&self) -> bool {
        self.blocks.len() >= self.max_blocks
    }

    fn line(&mut self, line: &[u8]) {
        if line.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
            if let Some(open) = &mut self.open {
                if open.raw.len() < MAX_RAW_VALUE {
                    let room = MAX_RAW_VALUE - open.raw.len();
                    open.raw.push(b' ');
                    open.raw.extend_from_slice(&line[..line.len().min(room)]);
                }
            }
            return;
        }
        self.close_field();
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            // Not a field (prose, or a broken line): skipped.
            return;
        };
        let name = &line[..colon];
        // RFC 5322 ftext, allowing white space before the colon (obsolete syntax).
        let name = name.trim_ascii_end();
        if name.is_empty()
            || name.len() > MAX_NAME
            || !name.iter().all(|b| (33..=126).contains(b) && *b != b':')
        {
            return;
        }
        let value = &line[colon + 1..];
        self.open = Some(Open {
            name: String::from_utf8_lossy(name).to_ascii_lowercase(),
            raw: value[..value.len().min(MAX_RAW_VALUE)].to_vec(),
        });
    }
}

/// Lines of `text`, without their CR LF (or bare LF).
fn lines(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    text.split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
}

/// The field blocks of a report body, empty ones skipped; at most [`MAX_BLOCKS`].
pub(crate) fn blocks(text: &[u8]) -> Vec<Vec<Field>> {
    read(text, MAX_BLOCKS, false)
}

/// The fields of a header section: `bytes` up to its first blank line (leading blank
/// lines skipped, for a part that starts with one).
pub(crate) fn header_section(bytes: &[u8]) -> Vec<Field> {
    read(bytes, 1, true).into_iter().next().unwrap_or_default()
}

fn read(text: &[u8], max_blocks: usize, stop_at_body: bool) -> Vec<Vec<Field>> {
    let mut reader = Reader {
        blocks: Vec::new(),
        block: Vec::new(),
        open: None,
        max_blocks,
    };
    let mut seen_any = false;
    for line in lines(text) {
        if line.iter().all(u8::is_ascii_whitespace) {
            // A line of only white space ends a block, as an empty one does:
            // generators are not careful about trailing blanks.
            reader.close_block();
            if reader.full() || (stop_at_body && seen_any) {
                break;
            }
            continue;
        }
        seen_any = true;
        reader.line(line);
    }
    if !reader.full() {
        reader.close_block();
    }
    reader.blocks
}

/// A field value with its type dropped: `rfc822; bob@example.com` → `bob@example.com`,
/// `dns; mx.example.com` → `mx.example.com`, `smtp; 550 5.1.1 …` → `550 5.1.1 …`. A
/// value with no `;` is returned whole (some generators leave the type out).
pub(crate) fn untyped(value: &str) -> &str {
    match value.split_once(';') {
        Some((kind, rest)) if is_type(kind.trim()) => rest.trim(),
        _ => value.trim(),
    }
}

/// An RFC 3464 address-type or diagnostic-type: an atom (`rfc822`, `smtp`, `dns`,
/// `X-Local`, `x-postfix`), not prose that happens to contain a `;`.
fn is_type(kind: &str) -> bool {
    !kind.is_empty()
        && kind.len() <= 32
        && kind
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// An address as fields write it: angle brackets, a trailing comment and quotes
/// around the whole dropped (`<bob@example.com> (via relay)` → `bob@example.com`).
pub(crate) fn address(value: &str) -> Option<String> {
    let value = value.trim();
    let inner = match (value.find('<'), value.find('>')) {
        (Some(open), Some(close)) if open < close => &value[open + 1..close],
        _ => value
            .split_whitespace()
            .find(|w| w.contains('@'))
            .or_else(|| value.split_whitespace().next())
            .unwrap_or(""),
    };
    let inner = inner
        .trim()
        .trim_matches(|c| c == '"' || c == '\'' || c == ',');
    if inner.is_empty() {
        None
    } else {
        Some(truncated(inner, MAX_FIELD))
    }
}

/// What a report's copy of our message says about it: read from the returned
/// `message/rfc822` part or the `text/rfc822-headers` part (or, in a non-standard
/// bounce, the copy after its "copy of the message" line).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OriginalHeaders {
    /// The address in `Return-Path:`, without angle brackets: our VERP address when
    /// the copy is of a tenant's message (check it with `verp::verify`).
    pub return_path: Option<String>,
    /// `Message-ID:` as written (angle brackets included).
    pub message_id: Option<String>,
    /// `Feedback-ID:` (Gmail's feedback loop), as written.
    pub feedback_id: Option<String>,
    /// `To:` as written (display names and all; see [`OriginalHeaders::to_address`]).
    /// In a complaint it is often the complaining recipient; providers may redact it.
    pub to: Option<String>,
    /// `From:` as written.
    pub from: Option<String>,
}

impl OriginalHeaders {
    pub(crate) fn from_fields(fields: &[Field]) -> OriginalHeaders {
        let text = |name: &str| {
            first(fields, name)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        OriginalHeaders {
            return_path: first(fields, "return-path").and_then(address),
            message_id: text("message-id"),
            feedback_id: text("feedback-id"),
            to: text("to"),
            from: text("from"),
        }
    }

    /// The first address in `To:`, without display name or brackets; `None` when
    /// there is no `To:` or it holds no address (`undisclosed-recipients:;`, a
    /// redacted field).
    pub fn to_address(&self) -> Option<String> {
        self.to
            .as_deref()
            .and_then(address)
            .filter(|a| a.contains('@'))
    }

    /// Whether nothing was found.
    pub fn is_empty(&self) -> bool {
        *self == OriginalHeaders::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_unfold_and_split() {
        let text = b"\r\nReporting-MTA: dns; a.example\r\n\r\n\r\nFinal-Recipient: rfc822;x@y\r\nDiagnostic-Code: smtp;  550 'x@y' is not a\r\n    registered gateway user\r\nprose line\r\n \t \r\nAction: delayed\r\n";
        let b = blocks(text);
        assert_eq!(b.len(), 3);
        assert_eq!(first(&b[0], "reporting-mta"), Some("dns; a.example"));
        assert_eq!(
            first(&b[1], "diagnostic-code"),
            Some("smtp; 550 'x@y' is not a registered gateway user")
        );
        assert_eq!(first(&b[2], "action"), Some("delayed"));
    }

    #[test]
    fn header_section_stops_at_the_body() {
        let h =
            header_section(b"Return-Path: <b-x@b.example>\nTo: A <a@x.example>\n\nTo: body@x\n");
        assert_eq!(h.len(), 2);
        let o = OriginalHeaders::from_fields(&h);
        assert_eq!(o.return_path.as_deref(), Some("b-x@b.example"));
        assert_eq!(o.to_address().as_deref(), Some("a@x.example"));
    }

    #[test]
    fn values_are_bounded() {
        let mut text = b"Diagnostic-Code: smtp; ".to_vec();
        text.extend(std::iter::repeat_n(b'x', 100_000));
        text.extend_from_slice(b"\n");
        for _ in 0..10_000 {
            text.extend_from_slice(b" yyyyyyyyyy\n");
        }
        let b = blocks(&text);
        assert_eq!(
            first(&b[0], "diagnostic-code").map(|v| v.chars().count()),
            Some(MAX_FIELD)
        );
        let many: Vec<u8> = b"A: b\n\n".repeat(5000);
        assert_eq!(blocks(&many).len(), MAX_BLOCKS);
        let wide: Vec<u8> = b"A: b\n".repeat(5000);
        assert_eq!(blocks(&wide)[0].len(), MAX_FIELDS);
    }

    #[test]
    fn types_and_addresses() {
        assert_eq!(untyped("rfc822; bob@example.com"), "bob@example.com");
        assert_eq!(untyped("RFC822;<bob@example.com>"), "<bob@example.com>");
        assert_eq!(untyped("bob@example.com"), "bob@example.com");
        assert_eq!(untyped("550 no; really"), "550 no; really");
        assert_eq!(
            address("<bob@example.com> (comment)").as_deref(),
            Some("bob@example.com")
        );
        assert_eq!(
            address("Bob <bob@example.com>").as_deref(),
            Some("bob@example.com")
        );
        assert_eq!(
            address("bob@example.com (x)").as_deref(),
            Some("bob@example.com")
        );
        assert_eq!(address("<>"), None);
        assert_eq!(address(""), None);
        assert_eq!(truncated("ééé", 2), "éé");
    }
}
