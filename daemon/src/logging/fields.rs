//! The text format's fields, byte for byte as tracing-subscriber's default writes
//! them (`name=value` separated by spaces, strings quoted and escaped as `{:?}`
//! escapes them, the message first and unquoted), but with a short way for the
//! common case: a string of printable ASCII without `"` or `\`, which `{:?}`
//! writes unchanged between quotes, is written as it is instead of through the
//! formatting machinery and a character-by-character escape; integers and
//! booleans are written digit by digit; `%display` and `?debug` values go straight
//! to their `{:?}` without the default's (colourless) styling wrappers. The message,
//! strings that need escaping, and everything when the writer emits ANSI colours
//! are written by the default visitor itself. A message's log lines carry a dozen
//! such fields (client address, listener, TLS version, tenant, size, authentication
//! results); the test below holds the output to the default's, byte for byte.

use std::fmt;

use tracing::field::{Field, Visit};
use tracing_subscriber::field::{RecordFields, VisitOutput};
use tracing_subscriber::fmt::format::{DefaultVisitor, Writer};
use tracing_subscriber::fmt::FormatFields;

/// The text format's [`FormatFields`].
#[derive(Debug, Default)]
pub struct TextFields;

impl<'writer> FormatFields<'writer> for TextFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'writer>, fields: R) -> fmt::Result {
        let mut visitor = TextVisitor {
            writer,
            is_empty: true,
            result: Ok(()),
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct TextVisitor<'a> {
    writer: Writer<'a>,
    is_empty: bool,
    result: fmt::Result,
}

impl TextVisitor<'_> {
    /// The default visitor's way, for one field, padded as the default pads.
    fn by_default(&mut self, record: impl FnOnce(&mut DefaultVisitor<'_>)) {
        let mut visitor = DefaultVisitor::new(self.writer.by_ref(), self.is_empty);
        record(&mut visitor);
        self.result = visitor.finish();
    }

    /// Whether a field may take a short way: an ordinary name, no colours.
    fn short(&self, field: &Field) -> bool {
        self.result.is_ok() && !special(field.name()) && !self.writer.has_ansi_escapes()
    }

    /// Writes ` name=` (no space before the first field) and then `value`.
    fn write(&mut self, field: &Field, value: impl FnOnce(&mut Writer<'_>) -> fmt::Result) {
        let pad = if self.is_empty { "" } else { " " };
        self.is_empty = false;
        let w = &mut self.writer;
        self.result = (|| {
            w.write_str(pad)?;
            w.write_str(field.name())?;
            w.write_char('=')?;
            value(w)
        })();
    }

    fn write_integer(&mut self, field: &Field, negative: bool, mut n: u64) {
        // u64::MAX has 20 digits; the sign goes first.
        let mut digits = [0u8; 21];
        let mut at = digits.len();
        loop {
            at -= 1;
            digits[at] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        if negative {
            at -= 1;
            digits[at] = b'-';
        }
        let text = std::str::from_utf8(&digits[at..]).unwrap_or("");
        self.write(field, |w| w.write_str(text));
    }
}

/// Whether `{:?}` writes `s` unchanged between its quotes.
fn plain(s: &str) -> bool {
    s.bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
}

/// Names the default visitor treats apart: the message, raw identifiers and the
/// `log` crate's metadata.
fn special(name: &str) -> bool {
    name == "message" || name.starts_with("r#") || name.starts_with("log.")
}

impl Visit for TextVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if self.result.is_err() {
            return;
        }
        let name = field.name();
        if !self.short(field) || !plain(value) {
            self.by_default(|v| v.record_str(field, value));
            // The default skips `log.` fields without writing anything.
            self.is_empty &= name.starts_with("log.");
            return;
        }
        self.write(field, |w| {
            w.write_char('"')?;
            w.write_str(value)?;
            w.write_char('"')
        });
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if !self.short(field) {
            return self.record_debug(field, &value);
        }
        self.write_integer(field, false, value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if !self.short(field) {
            return self.record_debug(field, &value);
        }
        self.write_integer(field, value < 0, value.unsigned_abs());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        if !self.short(field) {
            return self.record_debug(field, &value);
        }
        self.write(field, |w| w.write_str(if value { "true" } else { "false" }));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.result.is_err() {
            return;
        }
        if self.short(field) {
            return self.write(field, |w| write!(w, "{value:?}"));
        }
        self.by_default(|v| v.record_debug(field, value));
        self.is_empty &= field.name().starts_with("log.");
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::format::DefaultFields;
    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().expect("buffer").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'a self) -> Buffer {
            self.clone()
        }
    }

    /// What the daemon's text layer writes for `events`, with `fields`.
    fn written<N>(fields: N, events: impl FnOnce()) -> String
    where
        N: for<'w> FormatFields<'w> + Send + Sync + 'static,
    {
        let buffer = Buffer::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(buffer.clone())
            .with_ansi(false)
            .without_time()
            .fmt_fields(fields)
            .finish();
        tracing::subscriber::with_default(subscriber, events);
        let bytes = buffer.0.lock().expect("buffer").clone();
        String::from_utf8(bytes).expect("utf-8")
    }

    fn events() {
        let id = "0123456789abcdef";
        tracing::info!(
            target: "way2mail::message",
            %id,
            client_ip = "127.0.0.1",
            listener = "mx",
            tls = "none",
            size = 5120u64,
            recipients = 1usize,
            tenant = "",
            auth = "spf=pass dkim=none",
            "message queued"
        );
        tracing::warn!(
            quoted = "say \"hi\"",
            backslash = r"C:\spool",
            control = "bell\u{7}esc\u{1b}[31m",
            unicode = "grüße, 日本",
            tab = "a\tb",
            empty = "",
            negative = -3i64,
            most = u64::MAX,
            least = i64::MIN,
            zero = 0u8,
            flag = true,
            no = false,
            float = 1.5f64,
            debug = ?Some("x"),
            "escapes: \"quoted\" \u{1b}[0m and {} formatted",
            7
        );
        let span = tracing::info_span!("session", peer = "192.0.2.1", n = 2u32);
        let _entered = span.enter();
        tracing::error!(reason = "disk \"full\"", r#type = "raw", "in a span");
        tracing::info!("only a message");
        tracing::info!(first = "no message before me");
    }

    #[test]
    fn lines_are_exactly_the_default_formats() {
        let ours = written(TextFields, events);
        let default = written(DefaultFields::new(), events);
        assert_eq!(ours, default);
        assert_eq!(ours.lines().count(), 5, "{ours}");
        assert!(
            ours.contains(r#"client_ip="127.0.0.1" listener="mx""#),
            "{ours}"
        );
        assert!(ours.contains(r#"quoted="say \"hi\"""#), "{ours}");
    }

    #[test]
    fn only_printable_ascii_without_quotes_or_backslashes_is_plain() {
        assert!(plain("spf=pass dkim=none (a, b; c) 'x'"));
        assert!(plain(""));
        for s in ["\"", "\\", "\t", "\u{7f}", "é", "\u{1b}"] {
            assert!(!plain(s), "{s:?}");
        }
    }
}
