//! The built-in rules against the fixture table (`fixtures/replies.txt`), operator
//! files and their errors, multi-line replies, and classify on arbitrary text.

use std::io::Write;

use proptest::prelude::*;

use super::load::{self, Boundaries};
use super::reply::Reply;
use super::{Category, Rules};

const FIXTURES: &str = include_str!("fixtures/replies.txt");

struct Fixture {
    line: usize,
    category: Category,
    reply: String,
    source: &'static str,
}

/// `category | reply | source`; the reply may hold " | " itself, so the category
/// is up to the first separator and the source after the last. `\n` in a reply is
/// a line break.
fn fixtures() -> Vec<Fixture> {
    let mut all = Vec::new();
    for (n, line) in FIXTURES.lines().enumerate() {
        let line_no = n + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (category, rest) = line
            .split_once(" | ")
            .unwrap_or_else(|| panic!("fixtures line {line_no}: no ' | '"));
        let (reply, source) = rest
            .rsplit_once(" | ")
            .unwrap_or_else(|| panic!("fixtures line {line_no}: no source"));
        let category = Category::from_name(category)
            .unwrap_or_else(|| panic!("fixtures line {line_no}: category {category}"));
        all.push(Fixture {
            line: line_no,
            category,
            reply: reply.replace("\\n", "\n"),
            source,
        });
    }
    all
}

fn operator_file(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(text.as_bytes()).expect("write");
    file
}

#[test]
fn built_in_rules_parse() {
    let rules = super::built_in_rules().expect("built-in");
    assert!(rules.len() > 20, "{}", rules.len());
    // And `built_in()` is that set (not the empty stand-in for a broken file).
    assert_eq!(Rules::built_in().rules.len(), rules.len());
}

#[test]
fn ascii_word_boundaries_change_no_built_in_verdict() {
    let text = super::BUILT_IN;
    let as_written = load::rules("built-in", text, Boundaries::AsWritten).expect("as written");
    let as_written = Rules { rules: as_written };
    let rules = Rules::built_in();
    for f in fixtures() {
        assert_eq!(
            as_written.classify(Some(&f.reply)),
            rules.classify(Some(&f.reply)),
            "line {}",
            f.line
        );
    }
    assert_eq!(
        load::ascii_word_boundaries(r"\bspam\b"),
        r"(?-u:\b)spam(?-u:\b)"
    );
    assert_eq!(
        load::ascii_word_boundaries(r"a\\b\b{start}\d"),
        r"a\\b\b{start}\d"
    );
}

#[test]
fn every_fixture_classifies_as_its_category() {
    let rules = Rules::built_in();
    let wrong: Vec<String> = fixtures()
        .iter()
        .filter_map(|f| {
            let got = rules.classify(Some(&f.reply));
            (got != f.category).then(|| {
                format!(
                    "line {}: {} expected, got {} ({}): {:?}",
                    f.line,
                    f.category.name(),
                    got.name(),
                    f.source,
                    f.reply
                )
            })
        })
        .collect();
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
}

#[test]
fn fixtures_cover_every_category() {
    let all = fixtures();
    for category in Category::ALL {
        let n = all.iter().filter(|f| f.category == category).count();
        assert!(n >= 5, "{}: {n} fixtures", category.name());
    }
}

/// A peer's reply as it arrives over several lines: `CODE-STATUS words` for all but
/// the last line, `CODE STATUS words` for the last.
fn as_lines(
    code: u16,
    status: Option<String>,
    words: &[&str],
    per_line: usize,
    join: &str,
) -> String {
    let chunks: Vec<String> = words.chunks(per_line).map(|c| c.join(" ")).collect();
    let last = chunks.len().saturating_sub(1);
    let lines: Vec<String> = chunks
        .iter()
        .enumerate()
        .map(|(i, chunk)| {
            let sep = if i == last { ' ' } else { '-' };
            match &status {
                Some(status) => format!("{code}{sep}{status} {chunk}"),
                None => format!("{code}{sep}{chunk}"),
            }
        })
        .collect();
    lines.join(join)
}

#[test]
fn multi_line_replies_classify_like_single_line_ones() {
    let rules = Rules::built_in();
    let mut checked = 0;
    for f in fixtures() {
        let parsed = Reply::parse(&f.reply);
        let Some(code) = parsed.code else { continue };
        // Only replies that are the peer's from their first word.
        let prefix = code.to_string();
        if !f.reply.starts_with(&prefix) {
            continue;
        }
        let status = parsed.status.map(|s| s.to_string());
        let single = parsed.text.clone();
        let mut words: Vec<&str> = single.split(' ').skip(1).collect();
        if status.is_some() && words.first().is_some_and(|w| Some(w.to_string()) == status) {
            words.remove(0);
        }
        assert_eq!(rules.classify(Some(&single)), f.category, "line {}", f.line);
        for per_line in [1, 3, 7] {
            for join in ["\n", "\r\n", " "] {
                let multi = as_lines(code, status.clone(), &words, per_line, join);
                assert_eq!(
                    rules.classify(Some(&multi)),
                    f.category,
                    "line {}, {per_line} words a line, joined by {join:?}: {multi:?}",
                    f.line
                );
            }
        }
        checked += 1;
    }
    assert!(checked > 60, "{checked}");
}

#[test]
fn nothing_to_classify_is_other() {
    let rules = Rules::built_in();
    assert_eq!(rules.classify(None), Category::Other);
    // Text with a reply code that no rule explains is other; text with no code at
    // all is our own reason, network.
    assert_eq!(rules.classify(Some("554 5.0.0 no")), Category::Other);
    assert_eq!(rules.classify(Some("")), Category::Network);
}

#[test]
fn category_names_round_trip() {
    for category in Category::ALL {
        assert_eq!(Category::from_name(category.name()), Some(category));
    }
    let mut names: Vec<&str> = Category::ALL.iter().map(|c| c.name()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), 12);
    assert_eq!(Category::from_name("Policy"), None);
}

#[test]
fn rules_are_shareable_between_threads() {
    fn shareable<T: Send + Sync + Clone + std::fmt::Debug>() {}
    shareable::<Rules>();
}

#[test]
fn an_operator_rule_wins_over_the_built_in_ones() {
    let reply = "550 5.1.1 <bob@example.com>: Recipient address rejected: User unknown";
    assert_eq!(
        Rules::built_in().classify(Some(reply)),
        Category::InvalidRecipient
    );
    let file = operator_file(
        r#"
        # A receiver that says "user unknown" to senders it has blocked.
        [[rule]]
        category = "reputation_block"
        codes = [550]
        status = ["5.1"]
        patterns = ['(?i)user unknown']
        "#,
    );
    let rules = Rules::with_file(file.path()).expect("operator rules");
    assert_eq!(rules.classify(Some(reply)), Category::ReputationBlock);
    // The built-in rules still follow.
    assert_eq!(
        rules.classify(Some("552 5.2.2 mailbox full")),
        Category::MailboxFull
    );
    // Each condition must hold: another code, or status class, does not match.
    assert_eq!(
        rules.classify(Some("450 4.1.1 user unknown")),
        Category::InvalidRecipient
    );
    assert_eq!(
        rules.classify(Some("550 5.7.1 user unknown")),
        Category::InvalidRecipient
    );
}

#[test]
fn status_prefixes_match_by_component() {
    let file = operator_file(
        r#"
        [[rule]]
        category = "other"
        status = ["5.7.2"]
        "#,
    );
    let rules = Rules::with_file(file.path()).expect("rules");
    assert_eq!(rules.classify(Some("550 5.7.2 x")), Category::Other);
    // 5.7.23 is not under 5.7.2: the built-in SPF fallback takes it.
    assert_eq!(rules.classify(Some("550 5.7.23 x")), Category::AuthFailure);
}

#[test]
fn an_empty_operator_file_is_the_built_in_rules() {
    let file = operator_file("# nothing yet\n");
    let rules = Rules::with_file(file.path()).expect("rules");
    assert_eq!(rules.rules.len(), Rules::built_in().rules.len());
}

/// The error for `text` as an operator file; it must name the file.
fn error_of(text: &str) -> String {
    let file = operator_file(text);
    let e = Rules::with_file(file.path()).expect_err(text);
    let path = file.path().display().to_string();
    assert!(e.starts_with(&path), "{e}");
    e
}

#[test]
fn a_bad_operator_file_names_the_rule_and_the_problem() {
    let ok = "[[rule]]\ncategory = \"policy\"\ncodes = [550]\n\n";
    let cases = [
        (
            "[[rule]]\ncategory = \"spam\"\ncodes = [550]\n",
            vec!["rule 1", "unknown category \"spam\"", "invalid_recipient"],
        ),
        (
            "[[rule]]\ncategory = \"policy\"\npatterns = ['ok', '(?i)user (unknown']\n",
            vec![
                "rule 1",
                "patterns[1]",
                "(?i)user (unknown",
                "not a valid regex",
                "unclosed group",
            ],
        ),
        (
            "[[rule]]\ncategory = \"policy\"\nstatus = [\"5.1.x\"]\n",
            vec!["rule 1", "status", "\"5.1.x\""],
        ),
        (
            "[[rule]]\ncategory = \"policy\"\ncodes = [999]\n",
            vec!["rule 1", "999", "reply code"],
        ),
        (
            "[[rule]]\ncategory = \"policy\"\ncodes = []\n",
            vec!["rule 1", "codes is empty"],
        ),
        (
            "[[rule]]\ncategory = \"policy\"\n",
            vec!["rule 1", "no condition"],
        ),
        (
            "[[rule]]\ncategory = \"policy\"\npattern = ['x']\n",
            vec!["rule 1", "unknown field `pattern`"],
        ),
        (
            "[[rule]]\ncategory = \"policy\"\ncodes = [\"550\"]\n",
            vec!["rule 1", "codes"],
        ),
        (
            "[[rule]\ncategory = \"policy\"\n",
            vec!["not valid TOML", "invalid table header"],
        ),
        (
            "[[rules]]\ncategory = \"policy\"\n",
            vec!["unknown field `rules`"],
        ),
    ];
    for (text, wants) in cases {
        // The same mistake as the third rule is reported as rule 3.
        for (body, rule) in [
            (text.to_string(), "rule 1"),
            (format!("{ok}{ok}{text}"), "rule 3"),
        ] {
            let e = error_of(&body);
            for want in &wants {
                let want = if *want == "rule 1" { rule } else { want };
                assert!(e.contains(want), "{want:?} not in {e:?} (file {body:?})");
            }
            assert!(!e.contains('\n'), "one line: {e:?}");
        }
    }
}

#[test]
fn an_unreadable_operator_file_is_named() {
    let e =
        Rules::with_file(std::path::Path::new("/nonexistent/bounces.toml")).expect_err("missing");
    assert!(
        e.starts_with("/nonexistent/bounces.toml: cannot read"),
        "{e}"
    );
}

proptest! {
    #[test]
    fn classify_never_panics(text in any::<String>()) {
        let rules = Rules::built_in();
        let _ = rules.classify(Some(&text));
    }

    #[test]
    fn classify_never_panics_on_reply_shaped_text(
        code in 0u16..1000,
        sep in prop::sample::select(vec![" ", "-", "", "\n", ": "]),
        status in "[0-9#(]{0,2}\\.?[0-9]{0,4}\\.?[0-9]{0,4}[).:]?",
        rest in "[ -~\\n\\r\\t\u{80}-\u{10ffff}]{0,80}",
    ) {
        let rules = Rules::built_in();
        let text = format!("{code}{sep}{status} {rest}\n{code}-{status} {rest}");
        let _ = rules.classify(Some(&text));
    }
}
