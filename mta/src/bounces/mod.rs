//! Bounce classification: every failed or deferred attempt gets one [`Category`],
//! why it failed in terms an operator acts on, decided by rules that are data: the
//! built-in `built_in.toml` (compiled into the binary), after the operator's
//! `[bounces] rules_file` when one is set.
//!
//! ```text
//!   mod.rs       Category, Rules: built_in(), with_file(), classify()
//!   reply.rs     the text as rules see it: normalized, reply code and status picked out
//!   rule.rs      one checked rule; Status (an enhanced status code or a prefix of one)
//!   load.rs      TOML → checked rules, errors naming the file and the rule
//!   built_in.toml               the built-in rules, in order, each with its reason
//!   fixtures/replies.txt        category | reply | source, for tests.rs
//! ```
//!
//! # What is classified
//!
//! The text the delivery log records as `reply`: the next hop's reply (`550 5.1.1
//! <bob@example.com>: Recipient address rejected: User unknown`; a multi-line reply
//! joined by spaces or by newlines, with or without the `550-5.1.1 ` prefixes of its
//! lines), or our own reason when no reply decided:
//! `connect to mx.example.net[192.0.2.1:25]: Connection refused`,
//! `example.net: no such domain`,
//! `mx.example.net at starttls: TLS required but the peer does not offer STARTTLS`,
//! `delivery time expired; last error: …` (delivery/attempt.rs, outbound/mx.rs and
//! the SMTP client write these). No text at all (`None`) is [`Category::Other`].
//!
//! Before any rule looks, the text is normalized (reply.rs): whitespace runs become
//! one space, and the continuation prefixes of a multi-line reply are dropped, so
//! that `550-5.1.1 …Please try\n550-5.1.1 double-checking…` reads `550 5.1.1 …Please
//! try double-checking…`. The SMTP reply code is the first three-digit word that
//! starts the text, follows a word ending in `:` or `;`, or opens a quotation (our
//! `mx.example.net at rcpt: 550 …`, Diagnostic-Code's `smtp; 550 …`, `returned '550
//! …'`); the enhanced status code is the word after it (`5.1.1`, `#5.1.1`), else the
//! first later word that is a status of the code's class (`(5.1.1)`). Text with no
//! such word has no code: it is our own reason, not a reply.
//!
//! # Rules files
//!
//! The built-in file and an operator's have one format:
//!
//! ```toml
//! [[rule]]
//! category = "invalid_recipient"      # one of Category::name()
//! # Conditions: every one given must hold; one omitted holds for any text.
//! codes = [550, 551, 553]             # the reply code is one of these
//! status = ["5.1.1", "5.1.10", "4.1"] # the enhanced status code is one of these or
//!                                     # lies under it, by component: "5.1" covers
//!                                     # 5.1.x, and "5.7.2" does not cover 5.7.23
//! patterns = ["(?i)user unknown", "(?i)no such (user|mailbox)"]
//!                                     # regexes (regex crate syntax) on the normalized
//!                                     # text: any one matching is enough
//! has_code = false                    # the text has no reply code (true: has one)
//! ```
//!
//! A rule with a condition that has no value to test (`codes` or `status`, and the
//! text has none) does not hold. Patterns are case-sensitive unless they say `(?i)`;
//! they are not anchored (`^` is the start of the normalized text: the reply code,
//! or the start of our own reason). Unknown keys are errors, so that a misspelt
//! condition (`pattern = …`) cannot silently widen a rule; so are a rule with no
//! condition at all (it would take every failure), empty lists, codes outside
//! 200-599, statuses that are not `class[.subject[.detail]]` with class 2, 4 or 5,
//! and patterns that do not compile. [`Rules::with_file`]'s error names the file,
//! the rule by its number in the file (from 1) and the fault: `/etc/way2mail/bounces
//! .toml: rule 3: patterns[1] "(?i)user (unknown" is not a valid regex: unclosed
//! group`. A TOML syntax error has no rule number (the configuration parser gives
//! no position): `…: not valid TOML: invalid table header; expected …`.
//!
//! # Order and fallback
//!
//! The first rule whose conditions all hold decides: the operator's rules in file
//! order, then the built-in ones in file order; when none holds, `Other`. So an
//! operator overrides a built-in verdict by writing a narrower or earlier rule, and
//! never needs to copy the built-in file.
//!
//! The built-in order is the classification policy; `built_in.toml` gives the reason
//! for each rule next to it. In short: our own reasons that must not be misread
//! (a DNS failure that "will retry" is network even when it says "no such domain"
//! about a route host), then TLS; wording that names the cause of a 5.7.x
//! (authentication, reputation, our sender address, content) before the categories
//! that would take the same words; recipient, mailbox, size and domain wording; a
//! "try again later" 4xx as a rate limit; policy wording. Then the fallback by
//! enhanced status code, written as the last rules of the same file: X.1.1, X.1.0,
//! X.1.3, X.1.10, X.2.1 invalid_recipient; X.1.2 bad_domain; X.2.2 mailbox_full;
//! X.3.4, X.2.3 message_too_large; X.7.10/11/30 and X.7.5 tls_required; X.7.20-29
//! and X.7.8 auth_failure; other X.7 and X.1.8 policy; X.4 network. Last, text with
//! no reply code at all is network (our own reason: refused, reset, timed out).
//!
//! Choices worth knowing:
//!
//! - The category is the reason, not the permanence: 450 4.2.2 and 552 5.2.2 are
//!   both mailbox_full, and the reply class (or the attempt's outcome) says whether
//!   to retry. The status fallback lists 4.x and 5.x codes alike.
//! - 5.7.1 is used for everything, so wording splits it: blocklists and reputation
//!   → reputation_block; spam, viruses, malformed messages → content_rejected;
//!   SPF/DKIM/DMARC → auth_failure; the rest (relaying denied, access denied,
//!   organization policy) → policy.
//! - Reverse DNS (5.7.25, "cannot find your hostname", "PTR record") is
//!   auth_failure: RFC 7372 lists it among the email authentication statuses, and
//!   like SPF it is fixed in our DNS.
//! - Rate limits that mention reputation words are still rate limits when the
//!   provider says so (Gmail 4.7.28, Yahoo TSS04); a deferral that cites our
//!   reputation (Microsoft 4.7.650 "rate limited due to IP reputation", Gmail
//!   421 4.7.0 "unusual rate of unsolicited mail") is reputation_block.
//! - Greylisting is rate_limited (come back later, no judgement of the sender).
//! - "452 4.3.1 Insufficient system storage" is other: the receiving system is
//!   full, not the recipient's mailbox.
//!
//! # Cost
//!
//! Everything is compiled at load (a rule's patterns are one regex, their
//! alternation); classify normalizes the text once and tests rules in order,
//! cheap conditions before patterns, stopping at the first that holds: a few
//! microseconds a reply in a release build. In the built-in file `\b` is compiled as
//! an ASCII word boundary, which keeps replies with non-ASCII characters on the
//! regex crate's fast engine (load.rs, `Boundaries`).

mod load;
mod reply;
mod rule;
#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::OnceLock;

use self::load::Boundaries;
use self::reply::Reply;
use self::rule::Rule;

/// The built-in rules, in classification order.
const BUILT_IN: &str = include_str!("built_in.toml");
/// How errors name the built-in file.
const BUILT_IN_ORIGIN: &str = "built-in bounce rules (mta/src/bounces/built_in.toml)";

/// Why a delivery attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Category {
    InvalidRecipient,
    BadDomain,
    MailboxFull,
    MessageTooLarge,
    ContentRejected,
    Policy,
    ReputationBlock,
    RateLimited,
    AuthFailure,
    TlsRequired,
    Network,
    Other,
}

impl Category {
    pub const ALL: [Category; 12] = [
        Category::InvalidRecipient,
        Category::BadDomain,
        Category::MailboxFull,
        Category::MessageTooLarge,
        Category::ContentRejected,
        Category::Policy,
        Category::ReputationBlock,
        Category::RateLimited,
        Category::AuthFailure,
        Category::TlsRequired,
        Category::Network,
        Category::Other,
    ];

    /// snake_case: "invalid_recipient", "bad_domain", "mailbox_full",
    /// "message_too_large", "content_rejected", "policy", "reputation_block",
    /// "rate_limited", "auth_failure", "tls_required", "network", "other"
    pub fn name(self) -> &'static str {
        match self {
            Category::InvalidRecipient => "invalid_recipient",
            Category::BadDomain => "bad_domain",
            Category::MailboxFull => "mailbox_full",
            Category::MessageTooLarge => "message_too_large",
            Category::ContentRejected => "content_rejected",
            Category::Policy => "policy",
            Category::ReputationBlock => "reputation_block",
            Category::RateLimited => "rate_limited",
            Category::AuthFailure => "auth_failure",
            Category::TlsRequired => "tls_required",
            Category::Network => "network",
            Category::Other => "other",
        }
    }

    pub fn from_name(s: &str) -> Option<Category> {
        Category::ALL.into_iter().find(|c| c.name() == s)
    }
}

/// A loaded rule set: the operator's rules (if any), then the built-in ones.
#[derive(Debug, Clone)]
pub struct Rules {
    rules: Vec<Rule>,
}

impl Rules {
    /// The built-in rule set (`built_in.toml`, included at build time), parsed once.
    /// Never panics: `tests::built_in_rules_parse` proves the file loads, and were it
    /// ever not to, classification would degrade to `other` with an ERROR line rather
    /// than take the daemon down.
    pub fn built_in() -> Rules {
        static PARSED: OnceLock<Rules> = OnceLock::new();
        PARSED
            .get_or_init(|| {
                let rules = built_in_rules().unwrap_or_else(|e| {
                    tracing::error!(error = %e, "bounce classification disabled");
                    Vec::new()
                });
                Rules { rules }
            })
            .clone()
    }

    /// The operator's rules file (`[bounces] rules_file`) checked before the built-in
    /// rules. The error names the file and, for a bad rule, its number (from 1) and
    /// what is wrong: TOML that does not parse, an unknown key or category, a code or
    /// status that is not one, a pattern that is not a valid regex.
    pub fn with_file(path: &Path) -> Result<Rules, String> {
        let origin = path.display().to_string();
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("{origin}: cannot read: {e}"))?;
        let mut rules = load::rules(&origin, &text, Boundaries::AsWritten)?;
        rules.extend(built_in_rules()?);
        Ok(Rules { rules })
    }

    /// The category of one failure: the first rule whose conditions all hold, else
    /// `Other`. `reply` is what the delivery log records as the reply (the next hop's
    /// reply, single- or multi-line, or our own reason when there was none); `None`
    /// is `Other`.
    pub fn classify(&self, reply: Option<&str>) -> Category {
        let Some(reply) = reply else {
            return Category::Other;
        };
        let reply = Reply::parse(reply);
        self.rules
            .iter()
            .find(|rule| rule.holds(&reply))
            .map_or(Category::Other, |rule| rule.category)
    }
}

fn built_in_rules() -> Result<Vec<Rule>, String> {
    load::rules(BUILT_IN_ORIGIN, BUILT_IN, Boundaries::Ascii)
}
