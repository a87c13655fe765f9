//! How one header-style field of a DSN is written. Values come partly from the
//! network (a peer's reply text, addresses and ENVID/ORCPT from the original
//! client), so every value is cleaned of control characters (no CR/LF can start a
//! new field) and capped, and long values are folded at spaces so that no line comes
//! near the 998-octet limit of RFC 5322 §2.1.1.

/// Lines are folded to stay under this many octets where spaces allow (RFC 5322's
/// recommended 78).
const SOFT_WIDTH: usize = 78;
/// A run without spaces longer than this is cut into pieces so that a line can never
/// reach 998 octets. Unfolding then shows a space inside that run: a lesser evil than
/// an invalid message.
const HARD_WIDTH: usize = 900;

/// `s` with every control character (CR, LF, TAB, NUL, ...) turned into a space,
/// runs of spaces collapsed, trimmed, and cut to at most `max` octets on a character
/// boundary (with `...` marking the cut).
pub(super) fn clean(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max));
    for word in s.split(|c: char| c.is_control() || c == ' ') {
        if word.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
        if out.len() > max {
            break;
        }
    }
    if out.len() > max {
        let mut cut = max.saturating_sub(3);
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push_str("...");
    }
    out
}

/// Appends `Name: value\r\n` to `out`, folded at spaces. `value` should already be
/// [`clean`]ed; any control character left in it is turned into a space anyway.
pub(super) fn push_field(out: &mut String, name: &str, value: &str) {
    out.push_str(name);
    out.push(':');
    push_folded(out, value, name.len() + 1, true);
}

/// Appends `text` and CRLF to `out`, folded like a field (continuation lines start
/// with a space), for the prose of the human-readable part.
pub(super) fn push_line(out: &mut String, text: &str) {
    push_folded(out, text, 0, false);
}

fn push_folded(out: &mut String, value: &str, start: usize, mut space_before: bool) {
    let mut line_len = start;
    for word in value.split(|c: char| c.is_control() || c == ' ') {
        for piece in pieces(word) {
            if line_len > start && line_len + 1 + piece.len() > SOFT_WIDTH {
                // The fold: CRLF followed by the space that separated the words.
                out.push_str("\r\n");
                line_len = 0;
                space_before = true;
            }
            if space_before {
                out.push(' ');
                line_len += 1;
            }
            out.push_str(piece);
            line_len += piece.len();
            space_before = true;
        }
    }
    out.push_str("\r\n");
}

/// `word` cut into pieces of at most [`HARD_WIDTH`] octets on character boundaries.
fn pieces(word: &str) -> impl Iterator<Item = &str> {
    let mut rest = word;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut cut = rest.len().min(HARD_WIDTH);
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (piece, tail) = rest.split_at(cut);
        rest = tail;
        Some(piece)
    })
}

/// Decodes RFC 3461 §4 xtext (`+HH` for a byte). `None` when `s` is not valid xtext
/// or decodes to something unfit for a field (control characters, invalid UTF-8),
/// in which case the caller shows the value as given, which is at least harmless.
pub(super) fn xtext_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'+' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    let decoded = String::from_utf8(out).ok()?;
    (!decoded.chars().any(char::is_control)).then_some(decoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_removes_line_breaks_and_caps() {
        assert_eq!(clean(" a\r\nB: x\t\0 y ", 100), "a B: x y");
        let long = "é".repeat(100);
        let c = clean(&long, 11);
        assert!(c.len() <= 11 && c.ends_with("..."), "{c}");
        assert_eq!(clean("", 10), "");
    }

    #[test]
    fn fields_fold_under_the_limits() {
        let value = format!("smtp; 550 {} {}", "word ".repeat(60), "x".repeat(2500));
        let mut out = String::new();
        push_field(&mut out, "Diagnostic-Code", &value);
        assert!(out.ends_with("\r\n"));
        let lines: Vec<&str> = out.trim_end_matches("\r\n").split("\r\n").collect();
        assert!(lines.len() > 4);
        assert!(lines[0].starts_with("Diagnostic-Code: smtp; 550 word"));
        for line in &lines {
            assert!(line.len() < 998, "{}", line.len());
        }
        for line in &lines[1..] {
            assert!(line.starts_with(' '));
        }
        // Unfolding gives back the words, the long run cut into pieces.
        let unfolded = out.replace("\r\n", "");
        assert_eq!(unfolded.matches("word").count(), 60);
        assert_eq!(unfolded.matches('x').count(), 2500);
        let short = {
            let mut s = String::new();
            push_field(&mut s, "Action", "failed");
            s
        };
        assert_eq!(short, "Action: failed\r\n");
        let mut prose = String::new();
        push_line(&mut prose, &"many words ".repeat(20));
        assert!(prose.starts_with("many words many"));
        assert!(prose.lines().all(|l| l.len() <= 79), "{prose}");
        assert_eq!(prose.replace("\r\n", "").matches("many words").count(), 20);
    }

    #[test]
    fn xtext() {
        assert_eq!(xtext_decode("a+2Bb+3Dc").as_deref(), Some("a+b=c"));
        assert_eq!(
            xtext_decode("user@example.net").as_deref(),
            Some("user@example.net")
        );
        assert_eq!(xtext_decode("bad+2"), None);
        assert_eq!(xtext_decode("bad+ZZ"), None);
        assert_eq!(xtext_decode("inject+0D+0AX: y"), None);
        assert_eq!(xtext_decode("+FF"), None);
    }
}
