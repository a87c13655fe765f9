//! Reading rules files: TOML into checked [`Rule`]s, or an error that names the file,
//! the rule (numbered from 1 in file order) and what is wrong with it. Everything is
//! checked here, once, so that classifying never meets a bad rule: categories are
//! known names, codes are reply codes, statuses parse, every pattern compiles.

use regex::Regex;
use serde::Deserialize;

use super::rule::{Rule, Status};
use super::Category;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    rule: Vec<RuleSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSpec {
    category: String,
    codes: Option<Vec<u16>>,
    status: Option<Vec<String>>,
    patterns: Option<Vec<String>>,
    has_code: Option<bool>,
}

/// How a file's patterns are compiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Boundaries {
    /// As written: the regex crate's syntax, `\b` a Unicode word boundary. Operators'
    /// files, whose patterns may well be about non-ASCII words.
    AsWritten,
    /// `\b` compiled as `(?-u:\b)`, an ASCII word boundary. A Unicode `\b` makes the
    /// regex crate leave its DFA for a slower engine whenever the text holds a
    /// non-ASCII character (about 70 times slower on the built-in rules); for the
    /// built-in patterns, all of whose `\b` sit next to ASCII, the two are the same.
    Ascii,
}

/// Parses one file's rules; `origin` names it in errors.
pub(super) fn rules(origin: &str, text: &str, boundaries: Boundaries) -> Result<Vec<Rule>, String> {
    // toml's reasons can take several lines ("invalid table header\nexpected `.`");
    // a configuration error is one.
    let file: File = way2mail_daemon::config::parse(text).map_err(|e| {
        let reason: Vec<&str> = e.reason.lines().map(str::trim).collect();
        format!("{origin}: {}: {}", rule_key(&e.key), reason.join("; "))
    })?;
    file.rule
        .into_iter()
        .enumerate()
        .map(|(n, spec)| {
            check(spec, boundaries).map_err(|e| format!("{origin}: rule {}: {e}", n + 1))
        })
        .collect()
}

fn check(spec: RuleSpec, boundaries: Boundaries) -> Result<Rule, String> {
    let category = Category::from_name(&spec.category).ok_or_else(|| {
        let names: Vec<&str> = Category::ALL.iter().map(|c| c.name()).collect();
        format!(
            "unknown category \"{}\" (expected one of {})",
            spec.category,
            names.join(", ")
        )
    })?;
    if spec.codes.is_none()
        && spec.status.is_none()
        && spec.patterns.is_none()
        && spec.has_code.is_none()
    {
        // It would take every failure; surely a mistake.
        return Err("no condition (codes, status, patterns or has_code)".into());
    }
    Ok(Rule {
        category,
        codes: spec.codes.map(check_codes).transpose()?,
        status: spec.status.map(check_status).transpose()?,
        patterns: spec.patterns.map(|p| compile(&p, boundaries)).transpose()?,
        has_code: spec.has_code,
    })
}

fn check_codes(codes: Vec<u16>) -> Result<Box<[u16]>, String> {
    if codes.is_empty() {
        return Err("codes is empty (omit it to allow any code)".into());
    }
    if let Some(bad) = codes.iter().find(|c| !(200..=599).contains(*c)) {
        return Err(format!("codes: {bad} is not an SMTP reply code (200-599)"));
    }
    Ok(codes.into())
}

fn check_status(status: Vec<String>) -> Result<Box<[Status]>, String> {
    if status.is_empty() {
        return Err("status is empty (omit it to allow any status)".into());
    }
    status
        .iter()
        .map(|s| {
            Status::parse_prefix(s).ok_or_else(|| {
                format!(
                    "status: \"{s}\" is not an enhanced status code or a prefix of one \
                     (like \"5.1.1\" or \"5.1\")"
                )
            })
        })
        .collect()
}

/// Checks each pattern on its own (so that the error names the one at fault), then
/// compiles their alternation: a rule is tested in one scan of the text. Inline
/// flags such as `(?i)` stay inside their pattern's group.
fn compile(patterns: &[String], boundaries: Boundaries) -> Result<Regex, String> {
    if patterns.is_empty() {
        return Err("patterns is empty (omit it to allow any text)".into());
    }
    let mut alternation = Vec::with_capacity(patterns.len());
    for (i, pattern) in patterns.iter().enumerate() {
        let pattern = match boundaries {
            Boundaries::AsWritten => pattern.clone(),
            Boundaries::Ascii => ascii_word_boundaries(pattern),
        };
        if let Err(e) = Regex::new(&pattern) {
            return Err(format!(
                "patterns[{i}] \"{pattern}\" is not a valid regex: {}",
                regex_reason(&e)
            ));
        }
        alternation.push(format!("(?:{pattern})"));
    }
    Regex::new(&alternation.join("|"))
        .map_err(|e| format!("patterns together: {}", regex_reason(&e)))
}

/// `\b` → `(?-u:\b)`, leaving other escapes (`\\b` is a backslash and a `b`) and
/// the `\b{…}` forms alone.
pub(super) fn ascii_word_boundaries(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + 16);
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('b') if chars.peek() != Some(&'{') => out.push_str(r"(?-u:\b)"),
            Some(escaped) => {
                out.push('\\');
                out.push(escaped);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// The regex crate's syntax errors draw the pattern over several lines and end with
/// `error: <reason>`; the reason alone fits on a configuration error's line.
fn regex_reason(e: &regex::Error) -> String {
    let text = e.to_string();
    let last = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    last.trim().trim_start_matches("error: ").to_string()
}

/// The configuration parser's key path (`rule[2].codes[0]`) with the rule numbered
/// as people count: `rule 3: codes[0]`. An error outside every key is the TOML
/// syntax's (the parser gives no line for it).
fn rule_key(key: &str) -> String {
    if key == "(top level)" {
        return "not valid TOML".into();
    }
    let Some(rest) = key.strip_prefix("rule[") else {
        return key.to_string();
    };
    let Some((index, rest)) = rest.split_once(']') else {
        return key.to_string();
    };
    let Ok(index) = index.parse::<usize>() else {
        return key.to_string();
    };
    match rest.trim_start_matches('.') {
        "" => format!("rule {}", index + 1),
        field => format!("rule {}: {field}", index + 1),
    }
}
