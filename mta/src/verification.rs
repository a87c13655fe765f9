//! Inbound message authentication: SPF (HELO and MAIL FROM identities), DKIM, ARC and
//! DMARC through mail-auth, the `Authentication-Results:` header (RFC 8601) that records
//! them, and the removal of forged copies of that header.
//!
//! ```text
//! authenticate(authenticator, message, client, limit)
//!   ├─ together: SPF HELO, SPF MAIL FROM, DKIM (first 10 signatures), ARC  ┐ one deadline;
//!   └─ then:     DMARC (needs the SPF and DKIM outputs)                    ┘ 2/3 for the first stage
//!   → Report: owned results; a check the deadline cut short is `temperror (timed out)`
//! Report::header(authserv_id)      the A-R field, one method per folded line, CRLF-terminated
//! Report::summary()                `spf=pass dkim=pass dmarc=pass arc=none`, for the log
//! Report::dmarc_failure()          the From domain and its policy when DMARC failed
//! quarantine_header(policy, from)  `X-Way2Mail-Quarantine: dmarc=fail policy=... header.from=...`
//! strip_forged_results(msg, id)    sans-IO: drops each A-R field that claims our authserv-id
//! strip_fields(msg, name)          sans-IO: drops every field of that name
//! ```
//!
//! This is the one library module that does I/O: DNS, through the resolver inside the
//! [`MessageAuthenticator`] the caller passes (one per core, built on that core), bounded
//! by tokio timers. Everything after the lookups (the header text, the summary, the
//! stripping) is pure and tested here.
//!
//! DMARC follows mail-auth 0.13, i.e. RFC 9989 (DMARCbis): the author domain's policy,
//! else the organizational domain's `sp`/`np`, with `t=y` lowering the policy one step;
//! `pct=` is no longer part of the protocol and is ignored (every failing message gets
//! the policy).

use std::borrow::Cow;
use std::net::IpAddr;
use std::time::Duration;

use base64::Engine as _;
use mail_auth::common::auth_results::AsAuthResult;
use mail_auth::dkim::DkimError;
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::dmarc::Policy;
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{
    ArcOutput, AuthenticatedMessage, DkimOutput, DkimResult, DmarcOutput, DmarcResult, Error,
    MessageAuthenticator, SpfOutput, SpfResult,
};
use tokio::time::{timeout_at, Instant};

/// DKIM signatures verified per message; later ones are ignored (each costs a DNS
/// lookup and a public-key operation).
pub const MAX_DKIM_SIGNATURES: usize = 10;

/// The header a quarantined message carries (see [`quarantine_header`]).
pub const QUARANTINE_HEADER: &str = "X-Way2Mail-Quarantine";

/// The name of the header field this module writes and strips.
pub const AUTHENTICATION_RESULTS: &str = "Authentication-Results";

/// An RFC 8601 result keyword.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthResult {
    Pass,
    Fail,
    SoftFail,
    Neutral,
    None,
    TempError,
    PermError,
}

impl AuthResult {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthResult::Pass => "pass",
            AuthResult::Fail => "fail",
            AuthResult::SoftFail => "softfail",
            AuthResult::Neutral => "neutral",
            AuthResult::None => "none",
            AuthResult::TempError => "temperror",
            AuthResult::PermError => "permerror",
        }
    }
}

/// A DMARC policy, as published (`p=`, or `sp=`/`np=` for a subdomain), after `t=y`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DmarcPolicy {
    None,
    Quarantine,
    Reject,
}

impl DmarcPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            DmarcPolicy::None => "none",
            DmarcPolicy::Quarantine => "quarantine",
            DmarcPolicy::Reject => "reject",
        }
    }
}

/// The connecting peer as the SMTP session knows it: who it says it is and what it
/// asks to send as, which SPF, DMARC and the header are evaluated for.
#[derive(Debug, Clone, Copy)]
pub struct PeerIdentity<'a> {
    /// The IP address of the connection.
    pub ip: IpAddr,
    /// The EHLO/HELO argument.
    pub helo: &'a str,
    /// The reverse-path without angle brackets; empty for the null sender.
    pub mail_from: &'a str,
    /// Our host name (the SPF `%{r}` macro).
    pub receiver: &'a str,
}

/// One SPF evaluation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpfCheck {
    pub result: AuthResult,
    /// A comment for the header (`timed out`), if any.
    pub reason: Option<String>,
}

/// One DKIM signature's evaluation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DkimCheck {
    pub result: AuthResult,
    /// Why it did not pass (`body hash did not verify`), if it did not.
    pub reason: Option<String>,
    /// `d=`, `s=` and the first 8 characters of `b=` (RFC 6008); empty when the
    /// signature could not be parsed.
    pub domain: String,
    pub selector: String,
    pub b: String,
}

/// The ARC chain's evaluation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArcCheck {
    pub result: AuthResult,
    pub reason: Option<String>,
}

/// The DMARC evaluation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DmarcCheck {
    pub result: AuthResult,
    /// `p=reject` when a record applied; the error for temperror/permerror.
    pub reason: Option<String>,
    /// The RFC 5322.From domain; empty when there is none to check (no From, or
    /// several From domains, which RFC 9989 exempts).
    pub domain: String,
    /// The policy that applies to the domain (`none` when no record was found).
    pub policy: DmarcPolicy,
}

/// Everything the checks found, owned (no borrow of the message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub remote_ip: IpAddr,
    pub helo: String,
    pub mail_from: String,
    /// The HELO identity (RFC 7208 §2.3).
    pub spf_helo: SpfCheck,
    /// The MAIL FROM identity (§2.4); `None` for the null sender, whose MAIL FROM
    /// identity is the HELO identity.
    pub spf_mail_from: Option<SpfCheck>,
    /// One entry per signature, in header order; empty = no signature.
    pub dkim: Vec<DkimCheck>,
    pub arc: ArcCheck,
    pub dmarc: DmarcCheck,
}

/// The bound for all checks of one message, given the time one DNS lookup may take
/// (`[dns] timeout_ms` × `attempts`): three lookups' worth (the first stage may time
/// out, then DMARC still gets its own lookups), at least 1 s, at most 30 s.
pub fn time_limit(lookup: Duration) -> Duration {
    lookup
        .saturating_mul(3)
        .clamp(Duration::from_secs(1), Duration::from_secs(30))
}

/// Runs SPF (both identities), DKIM, ARC and DMARC on `message` (the bytes as they will
/// be spooled, our `Received:` on top is harmless) within `limit`. Never fails: a DNS
/// problem is a temperror, a check still running at the deadline a temperror too.
pub async fn authenticate(
    authenticator: &MessageAuthenticator,
    message: &[u8],
    client: &PeerIdentity<'_>,
    limit: Duration,
) -> Report {
    // An IPv4 client seen through a dual-stack socket (::ffff:192.0.2.1) is checked,
    // and reported, as the IPv4 address it is.
    let client = &PeerIdentity {
        ip: client.ip.to_canonical(),
        ..*client
    };
    let start = Instant::now();
    let deadline = start + limit;
    let first_stage = start + limit.saturating_mul(2) / 3;
    let mut parsed = AuthenticatedMessage::parse(message);
    if let Some(parsed) = &mut parsed {
        parsed.dkim_headers.truncate(MAX_DKIM_SIGNATURES);
    }
    let parsed = parsed;

    let spf_helo = timeout_at(
        first_stage,
        authenticator.verify_spf(SpfParameters::verify_ehlo(
            client.ip,
            client.helo,
            client.receiver,
        )),
    );
    let spf_mail_from = async {
        if client.mail_from.is_empty() {
            return None;
        }
        let params = SpfParameters::verify_mail_from(
            client.ip,
            client.helo,
            client.receiver,
            client.mail_from,
        );
        Some(timeout_at(first_stage, authenticator.verify_spf(params)).await)
    };
    let dkim = async {
        match &parsed {
            Some(m) => timeout_at(first_stage, authenticator.verify_dkim(m))
                .await
                .ok(),
            None => Some(Vec::new()),
        }
    };
    let arc = async {
        match &parsed {
            Some(m) => timeout_at(first_stage, authenticator.verify_arc(m))
                .await
                .ok(),
            None => Some(ArcOutput::default()),
        }
    };
    let (spf_helo, spf_mail_from, dkim, arc) = tokio::join!(spf_helo, spf_mail_from, dkim, arc);

    // The SPF result DMARC uses: MAIL FROM's, or HELO's for the null sender.
    // A timed-out SPF check is a temperror, for the header and for DMARC alike.
    let spf_helo_check = spf_outcome(spf_helo.as_ref().ok());
    let spf_mail_from_check = spf_mail_from.as_ref().map(|r| spf_outcome(r.as_ref().ok()));
    let spf_helo = spf_helo.unwrap_or_else(|_| timed_out_spf(client.helo));
    let spf_mail_from =
        spf_mail_from.map(|r| r.unwrap_or_else(|_| timed_out_spf(domain_of(client.mail_from))));
    let spf_for_dmarc = spf_mail_from.as_ref().unwrap_or(&spf_helo);
    let spf_domain = if client.mail_from.is_empty() {
        client.helo
    } else {
        domain_of(client.mail_from)
    };

    let dmarc = match (&parsed, &dkim) {
        (Some(m), Some(dkim_outputs)) => {
            let params = DmarcParameters::new(m, dkim_outputs, spf_domain, spf_for_dmarc);
            match timeout_at(deadline, authenticator.verify_dmarc(params)).await {
                Ok(output) => dmarc_check(&output),
                Err(_) => timed_out_dmarc(m),
            }
        }
        (Some(m), None) => timed_out_dmarc(m),
        (None, _) => DmarcCheck {
            result: AuthResult::None,
            reason: None,
            domain: String::new(),
            policy: DmarcPolicy::None,
        },
    };

    Report {
        remote_ip: client.ip,
        helo: client.helo.to_string(),
        mail_from: client.mail_from.to_string(),
        spf_helo: spf_helo_check,
        spf_mail_from: spf_mail_from_check,
        dkim: match &dkim {
            Some(outputs) => dkim_checks(outputs),
            None => vec![DkimCheck {
                result: AuthResult::TempError,
                reason: Some(TIMED_OUT.to_string()),
                domain: String::new(),
                selector: String::new(),
                b: String::new(),
            }],
        },
        arc: match &arc {
            Some(output) => arc_check(output),
            None => ArcCheck {
                result: AuthResult::TempError,
                reason: Some(TIMED_OUT.to_string()),
            },
        },
        dmarc,
    }
}

const TIMED_OUT: &str = "timed out";

fn timed_out_spf(domain: &str) -> SpfOutput {
    SpfOutput::new(domain.to_string()).with_result(SpfResult::TempError)
}

fn timed_out_dmarc(message: &AuthenticatedMessage<'_>) -> DmarcCheck {
    DmarcCheck {
        result: AuthResult::TempError,
        reason: Some(TIMED_OUT.to_string()),
        domain: message
            .from
            .first()
            .map(|a| domain_of(a).to_string())
            .unwrap_or_default(),
        policy: DmarcPolicy::None,
    }
}

fn domain_of(address: &str) -> &str {
    address.rsplit_once('@').map_or(address, |(_, d)| d)
}

/// The check of a finished SPF evaluation, or of one the deadline cut short (`None`).
fn spf_outcome(output: Option<&SpfOutput>) -> SpfCheck {
    let Some(output) = output else {
        return SpfCheck {
            result: AuthResult::TempError,
            reason: Some(TIMED_OUT.to_string()),
        };
    };
    let (result, reason) = match output.result() {
        SpfResult::Pass => (AuthResult::Pass, None),
        SpfResult::Fail => (AuthResult::Fail, None),
        SpfResult::SoftFail => (AuthResult::SoftFail, None),
        SpfResult::Neutral => (AuthResult::Neutral, None),
        SpfResult::None => (AuthResult::None, None),
        SpfResult::TempError => (AuthResult::TempError, Some("dns error")),
        SpfResult::PermError => (AuthResult::PermError, Some("invalid SPF record")),
    };
    SpfCheck {
        result,
        reason: reason.map(str::to_string),
    }
}

/// mail-auth's own wording of an error, without the parentheses.
fn reason_of(error: &Error) -> String {
    let mut text = String::new();
    error.as_auth_result(&mut text);
    text.trim()
        .trim_start_matches('(')
        .trim_end_matches(')')
        .to_string()
}

/// mail-auth's result as an RFC 8601 keyword, with one change: a body hash that does
/// not match is `fail` (RFC 6376 §3.7: PERMFAIL, the verification failed; RFC 8601
/// §2.7.1 `fail`), where mail-auth, like OpenDKIM, says `neutral`.
fn dkim_outcome(result: &DkimResult) -> (AuthResult, Option<String>) {
    match result {
        DkimResult::Pass => (AuthResult::Pass, None),
        DkimResult::Neutral(e @ Error::Dkim(DkimError::FailedBodyHashMatch)) => {
            (AuthResult::Fail, Some(reason_of(e)))
        }
        DkimResult::Neutral(e) => (AuthResult::Neutral, Some(reason_of(e))),
        DkimResult::Fail(e) => (AuthResult::Fail, Some(reason_of(e))),
        DkimResult::PermError(e) => (AuthResult::PermError, Some(reason_of(e))),
        DkimResult::TempError(e) => (AuthResult::TempError, Some(reason_of(e))),
        DkimResult::None => (AuthResult::None, None),
    }
}

fn dkim_check(output: &DkimOutput<'_>) -> DkimCheck {
    let (result, reason) = dkim_outcome(output.result());
    let (domain, selector, b) = match output.signature() {
        Some(s) => {
            let prefix = s.b.get(..6).unwrap_or(&s.b);
            (
                s.d.clone(),
                s.s.clone(),
                base64::engine::general_purpose::STANDARD.encode(prefix),
            )
        }
        None => Default::default(),
    };
    DkimCheck {
        result,
        reason,
        domain,
        selector,
        b,
    }
}

/// At most [`MAX_DKIM_SIGNATURES`] entries: the verified signatures first, then the
/// ones that did not parse (mail-auth reports each malformed `DKIM-Signature:`, and a
/// message may carry thousands).
fn dkim_checks(outputs: &[DkimOutput<'_>]) -> Vec<DkimCheck> {
    let (mut checks, unparsed): (Vec<DkimCheck>, Vec<DkimCheck>) = outputs
        .iter()
        .map(dkim_check)
        .partition(|c| !c.domain.is_empty());
    checks.extend(unparsed);
    checks.truncate(MAX_DKIM_SIGNATURES);
    checks
}

fn arc_check(output: &ArcOutput<'_>) -> ArcCheck {
    let (result, reason) = dkim_outcome(output.result());
    ArcCheck { result, reason }
}

fn dmarc_check(output: &DmarcOutput) -> DmarcCheck {
    let policy = match output.policy() {
        Policy::Reject => DmarcPolicy::Reject,
        Policy::Quarantine => DmarcPolicy::Quarantine,
        Policy::None | Policy::Unspecified => DmarcPolicy::None,
    };
    let found = output.dmarc_record().is_some();
    let (result, reason) = match output.result() {
        DmarcResult::Pass => (AuthResult::Pass, None),
        DmarcResult::Fail(_) => (AuthResult::Fail, None),
        DmarcResult::TempError(e) => (AuthResult::TempError, Some(reason_of(&e))),
        DmarcResult::PermError(e) => (AuthResult::PermError, Some(reason_of(&e))),
        DmarcResult::None => (AuthResult::None, None),
    };
    let reason = match reason {
        Some(reason) => Some(reason),
        None if found => Some(format!("p={}", policy.as_str())),
        None => None,
    };
    DmarcCheck {
        result,
        reason,
        domain: output.domain().to_string(),
        policy,
    }
}

impl Report {
    /// The report when the checks could not run at all (no resolver): every method
    /// `temperror` with `reason`.
    pub fn unavailable(client: &PeerIdentity<'_>, reason: &str) -> Report {
        let client = &PeerIdentity {
            ip: client.ip.to_canonical(),
            ..*client
        };
        let spf = SpfCheck {
            result: AuthResult::TempError,
            reason: Some(reason.to_string()),
        };
        Report {
            remote_ip: client.ip,
            helo: client.helo.to_string(),
            mail_from: client.mail_from.to_string(),
            spf_helo: spf.clone(),
            spf_mail_from: (!client.mail_from.is_empty()).then(|| spf.clone()),
            dkim: vec![DkimCheck {
                result: AuthResult::TempError,
                reason: Some(reason.to_string()),
                domain: String::new(),
                selector: String::new(),
                b: String::new(),
            }],
            arc: ArcCheck {
                result: AuthResult::TempError,
                reason: Some(reason.to_string()),
            },
            dmarc: DmarcCheck {
                result: AuthResult::TempError,
                reason: Some(reason.to_string()),
                domain: String::new(),
                policy: DmarcPolicy::None,
            },
        }
    }

    /// The SPF result that counts: MAIL FROM's, or HELO's for the null sender.
    pub fn spf(&self) -> AuthResult {
        self.spf_mail_from.as_ref().unwrap_or(&self.spf_helo).result
    }

    /// One DKIM result for the message: `pass` if any signature passed, else the most
    /// telling failure (fail, permerror, temperror, neutral), `none` without signatures.
    pub fn dkim(&self) -> AuthResult {
        const ORDER: [AuthResult; 5] = [
            AuthResult::Pass,
            AuthResult::Fail,
            AuthResult::PermError,
            AuthResult::TempError,
            AuthResult::Neutral,
        ];
        ORDER
            .into_iter()
            .find(|o| self.dkim.iter().any(|c| c.result == *o))
            .unwrap_or(AuthResult::None)
    }

    /// For the log: `spf=pass dkim=pass dmarc=pass arc=none`.
    pub fn summary(&self) -> String {
        format!(
            "spf={} dkim={} dmarc={} arc={}",
            self.spf().as_str(),
            self.dkim().as_str(),
            self.dmarc.result.as_str(),
            self.arc.result.as_str()
        )
    }

    /// The From domain and the policy that applies to it, when DMARC failed (not for
    /// temperror or permerror: those are not failures of the domain's policy).
    pub fn dmarc_failure(&self) -> Option<(DmarcPolicy, &str)> {
        (self.dmarc.result == AuthResult::Fail).then_some((self.dmarc.policy, &*self.dmarc.domain))
    }

    /// The `Authentication-Results:` field (RFC 8601) with `authserv_id`, one method
    /// per folded line, ending in CRLF:
    ///
    /// ```text
    /// Authentication-Results: mx.example.org;
    ///     spf=pass smtp.mailfrom=alice@example.com;
    ///     spf=none smtp.helo=client.example.com;
    ///     dkim=pass header.d=example.com header.s=sel header.b=AbCdEfGh;
    ///     arc=none smtp.remote-ip=192.0.2.1;
    ///     dmarc=pass (p=reject) header.from=example.com
    /// ```
    pub fn header(&self, authserv_id: &str) -> String {
        let mut h = String::with_capacity(320);
        h.push_str(AUTHENTICATION_RESULTS);
        h.push_str(": ");
        h.push_str(authserv_id);
        if let Some(spf) = &self.spf_mail_from {
            method(&mut h, "spf", spf.result, spf.reason.as_deref());
            h.push_str(" smtp.mailfrom=");
            push_pvalue(&mut h, &self.mail_from);
        }
        method(
            &mut h,
            "spf",
            self.spf_helo.result,
            self.spf_helo.reason.as_deref(),
        );
        h.push_str(" smtp.helo=");
        push_pvalue(&mut h, &self.helo);
        if self.dkim.is_empty() {
            method(&mut h, "dkim", AuthResult::None, None);
        }
        for dkim in &self.dkim {
            method(&mut h, "dkim", dkim.result, dkim.reason.as_deref());
            if !dkim.domain.is_empty() {
                h.push_str(" header.d=");
                push_pvalue(&mut h, &dkim.domain);
                h.push_str(" header.s=");
                push_pvalue(&mut h, &dkim.selector);
                if !dkim.b.is_empty() {
                    h.push_str(" header.b=");
                    push_pvalue(&mut h, &dkim.b);
                }
            }
        }
        method(&mut h, "arc", self.arc.result, self.arc.reason.as_deref());
        h.push_str(" smtp.remote-ip=");
        push_pvalue(&mut h, &self.remote_ip.to_string());
        method(
            &mut h,
            "dmarc",
            self.dmarc.result,
            self.dmarc.reason.as_deref(),
        );
        if !self.dmarc.domain.is_empty() {
            h.push_str(" header.from=");
            push_pvalue(&mut h, &self.dmarc.domain);
        }
        h.push_str("\r\n");
        h
    }
}

/// `;CRLF TAB name=result (reason)`.
fn method(h: &mut String, name: &str, result: AuthResult, reason: Option<&str>) {
    h.push_str(";\r\n\t");
    h.push_str(name);
    h.push('=');
    h.push_str(result.as_str());
    if let Some(reason) = reason {
        h.push_str(" (");
        for c in reason.chars() {
            // A comment may not hold unbalanced parentheses, backslashes or controls.
            if !matches!(c, '(' | ')' | '\\') && !c.is_control() {
                h.push(c);
            }
        }
        h.push(')');
    }
}

/// The header a message gets when DMARC failed and the configuration says quarantine
/// (`policy` is the From domain's policy, `from` its domain), ending in CRLF:
/// `X-Way2Mail-Quarantine: dmarc=fail policy=quarantine header.from=example.com`.
pub fn quarantine_header(policy: DmarcPolicy, from: &str) -> String {
    quarantine_mark(&format!("dmarc=fail policy={}", policy.as_str()), from)
}

/// The quarantine mark for a message whose author DMARC cannot tell
/// ([`ambiguous_author`]).
pub fn quarantine_ambiguous() -> String {
    format!("{QUARANTINE_HEADER}: dmarc=none reason=ambiguous-from\r\n")
}

fn quarantine_mark(what: &str, from: &str) -> String {
    let mut h = String::with_capacity(80 + from.len());
    h.push_str(QUARANTINE_HEADER);
    h.push_str(": ");
    h.push_str(what);
    h.push_str(" header.from=");
    push_pvalue(&mut h, from);
    h.push_str("\r\n");
    h
}

/// Why DMARC cannot judge a message's author, if it cannot: RFC 7489 §6.6.1 leaves
/// messages with several `From:` fields, or one naming several domains, to the
/// receiver — a sender could otherwise pick which domain's policy applies (mail-auth
/// answers `dmarc=none` for them). `None` for one `From:` in one domain, and for a
/// message without `From:` (there is no author domain to protect).
pub fn ambiguous_author(message: &[u8]) -> Option<&'static str> {
    let (fields, _) = crate::signing::fields(message);
    let froms = fields.iter().filter(|f| f.is(message, "From")).count();
    match froms {
        0 => None,
        1 if crate::signing::from_domain(message).is_some() => None,
        1 => Some("the From: header field names more than one domain"),
        _ => Some("the message has more than one From: header field"),
    }
}

/// The longest value written into a header, in bytes (an SMTP path is at most 256).
const MAX_PVALUE: usize = 256;

/// RFC 2045 `tspecials`, which a token may not contain.
fn is_tspecial(b: u8) -> bool {
    matches!(
        b,
        b'(' | b')'
            | b'<'
            | b'>'
            | b'@'
            | b','
            | b';'
            | b':'
            | b'\\'
            | b'"'
            | b'/'
            | b'['
            | b']'
            | b'?'
            | b'='
    )
}

/// A byte that may appear in a token (non-ASCII allowed, for RFC 6532 messages).
fn is_token_byte(b: u8) -> bool {
    b > b' ' && b != 0x7f && !is_tspecial(b)
}

/// Writes an RFC 8601 `pvalue`: as is when it is a token or `local-part@domain` made of
/// tokens, else as a quoted-string with `"` and `\` escaped and controls dropped.
fn push_pvalue(h: &mut String, value: &str) {
    // Values come from the client (MAIL FROM, HELO, header fields): keep each short
    // enough that no header line nears the 998-octet limit of RFC 5322.
    let mut end = value.len().min(MAX_PVALUE);
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    let value = &value[..end];
    let plain = !value.is_empty()
        && value.split('@').count() <= 2
        && value
            .split('@')
            .all(|part| !part.is_empty() && part.bytes().all(is_token_byte));
    if plain {
        h.push_str(value);
        return;
    }
    h.push('"');
    for c in value.chars() {
        match c {
            '"' | '\\' => {
                h.push('\\');
                h.push(c);
            }
            c if c.is_control() => {}
            c => h.push(c),
        }
    }
    h.push('"');
}

/// Removes from the header section of `message` every `Authentication-Results:` field
/// whose authserv-id is `authserv_id` (RFC 8601 §5: a border MTA must not pass on
/// results that claim to be its own). Ids are compared without regard to ASCII case
/// or a trailing dot; fields of other ids, and anything in the body, stay. Works on
/// CRLF and bare-LF line ends and folded fields. Returns how many fields were removed.
pub fn strip_forged_results(message: &mut Vec<u8>, authserv_id: &str) -> usize {
    let ours = trim_dot(authserv_id.as_bytes());
    strip_matching(message, |name, value| {
        name.eq_ignore_ascii_case(AUTHENTICATION_RESULTS.as_bytes())
            && authserv_id_of(value).is_some_and(|id| trim_dot(&id).eq_ignore_ascii_case(ours))
    })
}

/// Removes every field named `name` (any case) from the header section of `message`;
/// returns how many.
pub fn strip_fields(message: &mut Vec<u8>, name: &str) -> usize {
    strip_matching(message, |field, _| {
        field.eq_ignore_ascii_case(name.as_bytes())
    })
}

fn trim_dot(id: &[u8]) -> &[u8] {
    id.strip_suffix(b".").unwrap_or(id)
}

/// Removes the header fields for which `remove(name, value)` holds, in place. Fields
/// are found by [`crate::signing::fields`], the scan the signer uses; a name is
/// compared without the blanks before its colon (`Authentication-Results :` counts).
fn strip_matching(message: &mut Vec<u8>, mut remove: impl FnMut(&[u8], &[u8]) -> bool) -> usize {
    let (fields, _) = crate::signing::fields(message);
    let doomed: Vec<(usize, usize)> = fields
        .iter()
        .filter(|f| {
            let whole = &message[f.whole.0..f.whole.1];
            // A line without a colon (or a stray continuation line) names no field.
            let Some(colon) = whole.iter().position(|&b| b == b':') else {
                return false;
            };
            remove(trim_wsp_end(&whole[..colon]), &whole[colon + 1..])
        })
        .map(|f| f.whole)
        .collect();
    if doomed.is_empty() {
        return 0;
    }
    let mut write = 0;
    let mut read = 0;
    for &(start, end) in &doomed {
        message.copy_within(read..start, write);
        write += start - read;
        read = end;
    }
    let len = message.len();
    message.copy_within(read..len, write);
    write += len - read;
    message.truncate(write);
    doomed.len()
}

fn trim_wsp_end(mut name: &[u8]) -> &[u8] {
    while let [rest @ .., b' ' | b'\t'] = name {
        name = rest;
    }
    name
}

/// The authserv-id at the start of an `Authentication-Results:` value: after optional
/// CFWS, a token or a quoted-string (RFC 8601 §2.2).
fn authserv_id_of(value: &[u8]) -> Option<Cow<'_, [u8]>> {
    let start = skip_cfws(value, 0);
    let rest = value.get(start..)?;
    if rest.first() == Some(&b'"') {
        let mut id = Vec::new();
        let mut bytes = rest[1..].iter();
        while let Some(&b) = bytes.next() {
            match b {
                b'"' => return (!id.is_empty()).then_some(Cow::Owned(id)),
                b'\\' => id.push(*bytes.next()?),
                b'\r' | b'\n' => {}
                _ => id.push(b),
            }
        }
        return None; // unterminated
    }
    let len = rest.iter().take_while(|&&b| is_token_byte(b)).count();
    (len > 0).then(|| Cow::Borrowed(&rest[..len]))
}

/// Skips whitespace, line folds and (nested) comments.
fn skip_cfws(value: &[u8], mut at: usize) -> usize {
    while let Some(&b) = value.get(at) {
        match b {
            b' ' | b'\t' | b'\r' | b'\n' => at += 1,
            b'(' => {
                let mut depth = 0usize;
                while let Some(&c) = value.get(at) {
                    at += 1;
                    match c {
                        b'\\' => at += 1,
                        b'(' => depth += 1,
                        b')' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                }
            }
            _ => break,
        }
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ambiguous_author_needs_one_from_in_one_domain() {
        let one = b"From: A <a@x.example>\r\nTo: b@y.example\r\n\r\nbody\r\n";
        assert_eq!(ambiguous_author(one), None);
        let same = b"From: a@x.example, c@X.example\r\n\r\nbody\r\n";
        assert_eq!(ambiguous_author(same), None);
        let none = b"To: b@y.example\r\n\r\nbody\r\n";
        assert_eq!(ambiguous_author(none), None);
        let two = b"From: a@x.example\r\nfrom: a@evil.example\r\n\r\nbody\r\n";
        assert!(ambiguous_author(two).is_some_and(|p| p.contains("more than one From")));
        let mixed = b"From: a@x.example,\r\n b@evil.example\r\n\r\nbody\r\n";
        assert!(ambiguous_author(mixed).is_some_and(|p| p.contains("more than one domain")));
        // A From: field in the body is not a header field.
        let in_body = b"From: a@x.example\r\n\r\nFrom: b@evil.example\r\n";
        assert_eq!(ambiguous_author(in_body), None);
    }

    fn strip(message: &str, id: &str) -> (String, usize) {
        let mut bytes = message.as_bytes().to_vec();
        let n = strip_forged_results(&mut bytes, id);
        (String::from_utf8(bytes).unwrap(), n)
    }

    #[test]
    fn strips_our_id_and_keeps_others() {
        let message = "Received: from a by b; Mon, 1 Jan 2024 00:00:00 +0000\r\n\
             Authentication-Results: mx.example.org; spf=pass smtp.mailfrom=a@b.example\r\n\
             Authentication-Results: mx.example.evil; spf=pass smtp.mailfrom=a@b.example\r\n\
             authentication-results:MX.Example.ORG;dkim=pass\r\n\
             AUTHENTICATION-RESULTS : mx.example.org. ; dmarc=pass\r\n\
             Authentication-Results: evil.mx.example.org; spf=pass\r\n\
             Authentication-Results: mx.example.org.evil; spf=pass\r\n\
             Authentication-Results: mx-example-org; spf=pass\r\n\
             Subject: hi\r\n\
             \r\n\
             Authentication-Results: mx.example.org; spf=pass\r\n";
        let (out, n) = strip(message, "mx.example.org");
        assert_eq!(n, 3);
        assert_eq!(
            out,
            "Received: from a by b; Mon, 1 Jan 2024 00:00:00 +0000\r\n\
             Authentication-Results: mx.example.evil; spf=pass smtp.mailfrom=a@b.example\r\n\
             Authentication-Results: evil.mx.example.org; spf=pass\r\n\
             Authentication-Results: mx.example.org.evil; spf=pass\r\n\
             Authentication-Results: mx-example-org; spf=pass\r\n\
             Subject: hi\r\n\
             \r\n\
             Authentication-Results: mx.example.org; spf=pass\r\n",
            "the body's look-alike line is not a header and stays"
        );
    }

    #[test]
    fn strips_folded_fields_whole() {
        let message = "From: a@b.example\r\n\
             Authentication-Results:\r\n \
             (comment (nested) \\) here)\r\n\tmx.example.org\r\n\
             \t1; spf=pass\r\n\
             \tsmtp.mailfrom=a@b.example\r\n\
             Authentication-Results: other.example;\r\n\tdkim=pass\r\n\
             Subject: x\r\n\r\nbody\r\n";
        let (out, n) = strip(message, "mx.example.org");
        assert_eq!(n, 1);
        assert_eq!(
            out,
            "From: a@b.example\r\n\
             Authentication-Results: other.example;\r\n\tdkim=pass\r\n\
             Subject: x\r\n\r\nbody\r\n"
        );
    }

    #[test]
    fn quoted_ids_and_bare_lf() {
        let message = "Authentication-Results: \"mx.example.org\"; none\n\
             Authentication-Results: \"mx.exa\\mple.org\"; none\n\
             Authentication-Results: \"mx.example.org; none\n\
             X: y\n\nbody\n";
        let (out, n) = strip(message, "mx.example.org");
        assert_eq!(n, 2);
        assert_eq!(
            out, "Authentication-Results: \"mx.example.org; none\nX: y\n\nbody\n",
            "an unterminated quoted-string has no id and stays"
        );
    }

    #[test]
    fn nothing_to_strip_and_odd_inputs() {
        for message in [
            "",
            "\r\n",
            "no colon line\r\n\r\n",
            " continuation first\r\nX: y\r\n",
            "Authentication-Results:",
            "Authentication-Results: ;spf=pass\r\n",
            "Authentication-Results: (unclosed comment mx.example.org\r\n",
            "Subject: x\r\n\r\nAuthentication-Results: mx.example.org; none\r\n",
        ] {
            let (out, n) = strip(message, "mx.example.org");
            assert_eq!((out.as_str(), n), (message, 0), "{message:?}");
        }
        // Last field without a line end.
        let (out, n) = strip(
            "X: y\r\nAuthentication-Results: mx.example.org",
            "mx.example.org",
        );
        assert_eq!((out.as_str(), n), ("X: y\r\n", 1));
    }

    #[test]
    fn strip_fields_by_name() {
        let mut m = b"X-Way2Mail-Quarantine: dmarc=fail\r\n\tpolicy=reject\r\nx-way2mail-quarantine: x\r\nX-Way2Mail-Quarantined: keep\r\n\r\nX-Way2Mail-Quarantine: body\r\n".to_vec();
        assert_eq!(strip_fields(&mut m, QUARANTINE_HEADER), 2);
        assert_eq!(
            m,
            b"X-Way2Mail-Quarantined: keep\r\n\r\nX-Way2Mail-Quarantine: body\r\n"
        );
    }

    fn report() -> Report {
        Report {
            remote_ip: "192.0.2.1".parse().unwrap(),
            helo: "client.example.com".into(),
            mail_from: "alice@example.com".into(),
            spf_helo: SpfCheck {
                result: AuthResult::None,
                reason: None,
            },
            spf_mail_from: Some(SpfCheck {
                result: AuthResult::Pass,
                reason: None,
            }),
            dkim: vec![DkimCheck {
                result: AuthResult::Pass,
                reason: None,
                domain: "example.com".into(),
                selector: "sel".into(),
                b: "AbCdEfGh".into(),
            }],
            arc: ArcCheck {
                result: AuthResult::None,
                reason: None,
            },
            dmarc: DmarcCheck {
                result: AuthResult::Pass,
                reason: Some("p=reject".into()),
                domain: "example.com".into(),
                policy: DmarcPolicy::Reject,
            },
        }
    }

    #[test]
    fn header_text() {
        let r = report();
        assert_eq!(
            r.header("mx.example.org"),
            "Authentication-Results: mx.example.org;\r\n\
             \tspf=pass smtp.mailfrom=alice@example.com;\r\n\
             \tspf=none smtp.helo=client.example.com;\r\n\
             \tdkim=pass header.d=example.com header.s=sel header.b=AbCdEfGh;\r\n\
             \tarc=none smtp.remote-ip=192.0.2.1;\r\n\
             \tdmarc=pass (p=reject) header.from=example.com\r\n"
        );
        assert_eq!(r.summary(), "spf=pass dkim=pass dmarc=pass arc=none");
        assert_eq!(r.dmarc_failure(), None);
    }

    #[test]
    fn header_for_failures_null_sender_and_odd_values() {
        let mut r = report();
        r.mail_from = String::new();
        r.spf_mail_from = None;
        r.helo = "[192.0.2.1]".into();
        r.remote_ip = "2001:db8::1".parse().unwrap();
        r.spf_helo = SpfCheck {
            result: AuthResult::TempError,
            reason: Some("timed out".into()),
        };
        r.dkim = vec![
            DkimCheck {
                result: AuthResult::Neutral,
                reason: Some("unsupported (version)".into()),
                domain: String::new(),
                selector: String::new(),
                b: String::new(),
            },
            DkimCheck {
                result: AuthResult::Fail,
                reason: Some("body hash did not verify".into()),
                domain: "ex\"ample.com".into(),
                selector: "s 1".into(),
                b: "Zm9vYmFy".into(),
            },
        ];
        r.arc = ArcCheck {
            result: AuthResult::Fail,
            reason: Some("broken ARC chain".into()),
        };
        r.dmarc = DmarcCheck {
            result: AuthResult::Fail,
            reason: Some("p=quarantine".into()),
            domain: "example.com".into(),
            policy: DmarcPolicy::Quarantine,
        };
        assert_eq!(
            r.header("mx.example.org"),
            "Authentication-Results: mx.example.org;\r\n\
             \tspf=temperror (timed out) smtp.helo=\"[192.0.2.1]\";\r\n\
             \tdkim=neutral (unsupported version);\r\n\
             \tdkim=fail (body hash did not verify) header.d=\"ex\\\"ample.com\" \
             header.s=\"s 1\" header.b=Zm9vYmFy;\r\n\
             \tarc=fail (broken ARC chain) smtp.remote-ip=\"2001:db8::1\";\r\n\
             \tdmarc=fail (p=quarantine) header.from=example.com\r\n"
        );
        assert_eq!(r.summary(), "spf=temperror dkim=fail dmarc=fail arc=fail");
        assert_eq!(
            r.dmarc_failure(),
            Some((DmarcPolicy::Quarantine, "example.com"))
        );
        // Every line but the first is a continuation: the field stays one field.
        let header = r.header("mx.example.org");
        let lines: Vec<&str> = header.split_terminator("\r\n").collect();
        assert!(lines[1..].iter().all(|l| l.starts_with('\t')), "{lines:?}");
        let mut forged = format!("{header}X: y\r\n\r\n").into_bytes();
        assert_eq!(strip_forged_results(&mut forged, "MX.EXAMPLE.ORG"), 1);
        assert_eq!(forged, b"X: y\r\n\r\n");
    }

    #[test]
    fn no_signatures_and_summary_precedence() {
        let mut r = report();
        r.dkim.clear();
        r.dmarc = DmarcCheck {
            result: AuthResult::None,
            reason: None,
            domain: String::new(),
            policy: DmarcPolicy::None,
        };
        let header = r.header("id");
        assert!(header.contains(";\r\n\tdkim=none;\r\n"), "{header}");
        assert!(header.ends_with(";\r\n\tdmarc=none\r\n"), "{header}");
        assert_eq!(r.summary(), "spf=pass dkim=none dmarc=none arc=none");
        let check = |result| DkimCheck {
            result,
            reason: None,
            domain: "d".into(),
            selector: "s".into(),
            b: String::new(),
        };
        r.dkim = vec![check(AuthResult::Neutral), check(AuthResult::TempError)];
        assert_eq!(r.dkim(), AuthResult::TempError);
        r.dkim.push(check(AuthResult::Fail));
        assert_eq!(r.dkim(), AuthResult::Fail);
        r.dkim.push(check(AuthResult::Pass));
        assert_eq!(r.dkim(), AuthResult::Pass);
    }

    #[test]
    fn dkim_results_map_to_rfc8601_keywords() {
        let body = DkimResult::Neutral(Error::Dkim(DkimError::FailedBodyHashMatch));
        assert_eq!(
            dkim_outcome(&body),
            (
                AuthResult::Fail,
                Some("body hash did not verify".to_string())
            )
        );
        let expired = DkimResult::Neutral(Error::Dkim(DkimError::SignatureExpired));
        assert_eq!(dkim_outcome(&expired).0, AuthResult::Neutral);
        let crypto = DkimResult::Fail(Error::Crypto(
            mail_auth::common::crypto::CryptoError::FailedVerification,
        ));
        assert_eq!(
            dkim_outcome(&crypto),
            (AuthResult::Fail, Some("verification failed".to_string()))
        );
        let dns = DkimResult::TempError(Error::Dns(mail_auth::DnsError::Resolver("x".into())));
        assert_eq!(
            dkim_outcome(&dns),
            (AuthResult::TempError, Some("dns error".to_string()))
        );
        assert_eq!(dkim_outcome(&DkimResult::None), (AuthResult::None, None));
    }

    #[test]
    fn unavailable_is_temperror_everywhere() {
        let client = PeerIdentity {
            ip: "::ffff:192.0.2.9".parse().unwrap(),
            helo: "h.example",
            mail_from: "",
            receiver: "mx.example.org",
        };
        let r = Report::unavailable(&client, "no DNS resolver");
        assert_eq!(
            r.summary(),
            "spf=temperror dkim=temperror dmarc=temperror arc=temperror"
        );
        assert_eq!(r.dmarc_failure(), None);
        assert_eq!(
            r.header("mx.example.org"),
            "Authentication-Results: mx.example.org;\r\n\
             \tspf=temperror (no DNS resolver) smtp.helo=h.example;\r\n\
             \tdkim=temperror (no DNS resolver);\r\n\
             \tarc=temperror (no DNS resolver) smtp.remote-ip=192.0.2.9;\r\n\
             \tdmarc=temperror (no DNS resolver)\r\n"
        );
    }

    #[test]
    fn hostile_values_stay_bounded() {
        let mut r = report();
        r.mail_from = format!("{}@example.com", "é".repeat(400));
        let long = mail_auth::dkim::Signature {
            d: "d".repeat(5000),
            s: "s".into(),
            b: b"123456789".to_vec(),
            ..Default::default()
        };
        let mut outputs: Vec<DkimOutput<'_>> = (0..50)
            .map(|_| DkimOutput::neutral(Error::ParseError))
            .collect();
        outputs.insert(40, DkimOutput::pass().with_signature(&long));
        r.dkim = dkim_checks(&outputs);
        assert_eq!(r.dkim.len(), MAX_DKIM_SIGNATURES);
        assert_eq!(r.dkim[0].result, AuthResult::Pass, "signed ones first");
        assert_eq!(r.dkim[0].b, "MTIzNDU2");
        let header = r.header("mx.example.org");
        assert!(
            header.split("\r\n").all(|line| line.len() < 998),
            "{header}"
        );
        assert_eq!(header.matches("dkim=").count(), MAX_DKIM_SIGNATURES);
        assert!(header.contains(&format!("header.d={} ", "d".repeat(MAX_PVALUE))));
    }

    #[test]
    fn quarantine_header_text() {
        assert_eq!(
            quarantine_header(DmarcPolicy::Reject, "example.com"),
            "X-Way2Mail-Quarantine: dmarc=fail policy=reject header.from=example.com\r\n"
        );
        assert_eq!(
            quarantine_header(DmarcPolicy::Quarantine, "a b\r\n"),
            "X-Way2Mail-Quarantine: dmarc=fail policy=quarantine header.from=\"a b\"\r\n"
        );
    }

    #[test]
    fn time_limit_bounds() {
        assert_eq!(
            time_limit(Duration::from_millis(100)),
            Duration::from_secs(1)
        );
        assert_eq!(time_limit(Duration::from_secs(4)), Duration::from_secs(12));
        assert_eq!(time_limit(Duration::from_secs(60)), Duration::from_secs(30));
    }

    /// A nameserver that never answers: every check ends as a temperror, and the whole
    /// run stays within its limit although one lookup alone would take 10 s.
    #[test]
    fn bounded_by_the_limit_when_dns_is_silent() {
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let dns = way2mail_daemon::dns::DnsSettings {
            nameservers: vec![silent.local_addr().unwrap()],
            timeout: Duration::from_secs(10),
            attempts: 1,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let report = runtime.block_on(async {
            let authenticator = MessageAuthenticator(way2mail_daemon::dns::resolver(&dns).unwrap());
            let client = PeerIdentity {
                ip: "::ffff:192.0.2.1".parse().unwrap(),
                helo: "client.example.com",
                mail_from: "alice@example.com",
                receiver: "mx.example.org",
            };
            let message = b"From: alice@example.com\r\nSubject: x\r\n\r\nhello\r\n";
            let started = std::time::Instant::now();
            let report =
                authenticate(&authenticator, message, &client, Duration::from_millis(600)).await;
            let took = started.elapsed();
            assert!(took < Duration::from_secs(3), "took {took:?}");
            report
        });
        assert_eq!(
            report.spf_helo,
            SpfCheck {
                result: AuthResult::TempError,
                reason: Some("timed out".into())
            }
        );
        assert_eq!(report.dmarc.reason.as_deref(), Some("timed out"));
        assert_eq!(report.spf(), AuthResult::TempError);
        assert_eq!(report.remote_ip.to_string(), "192.0.2.1");
        assert_eq!(report.dmarc.result, AuthResult::TempError);
        assert_eq!(report.dmarc.domain, "example.com");
        assert_eq!(report.dmarc_failure(), None);
        // No signature, no ARC set: nothing to look up, so these are known at once.
        assert_eq!(report.dkim(), AuthResult::None);
        assert_eq!(report.arc.result, AuthResult::None);
        assert_eq!(
            report.summary(),
            "spf=temperror dkim=none dmarc=temperror arc=none"
        );
    }
}
