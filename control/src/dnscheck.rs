//! `domain.verify`: looks up the records a tenant domain should publish (publish.rs)
//! through `[dns] nameservers` and judges each one. Parsing and the SPF evaluation are
//! mail-auth's, so a record counts as right when a receiver using the same code would
//! find it right.
//!
//! ```text
//!   verify(dns, domain, sending)            blocking; own current-thread runtime
//!     ├─ SPF    DOMAIN                      one v=spf1 record; every [sending] ip → pass
//!     ├─ DKIM   SEL._domainkey.DOMAIN       one per key: p= is our key, k= our type
//!     ├─ DMARC  _dmarc.DOMAIN               one v=DMARC1 record that parses
//!     └─ BIMI   SEL._bimi.DOMAIN            l= (and a=) as set          (when BIMI is set)
//!               _dmarc.DOMAIN               BIMI's prerequisites: DMARC p=quarantine or
//!                                           p=reject at pct=100, an active DKIM key right
//!   each check runs as its own task, all at once, each bounded by CHECK_BUDGET
//! ```
//!
//! Statuses: `ok`; `missing` when the name has no record of the kind (NXDOMAIN or
//! NODATA); `wrong` when one is there but unusable; `error` when a lookup failed
//! (timeout, SERVFAIL, …), which says nothing about the record. The domain is verified
//! when every required check is `ok`: SPF (when `[sending]` names addresses or an
//! include), DKIM of each active key, and DMARC. Pending and retired keys, BIMI, and SPF
//! without `[sending]` are reported but not required.

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::Name;
use hickory_resolver::proto::ProtoError;
use hickory_resolver::TokioResolver;
use mail_auth::common::parse::TxtRecordParser;
use mail_auth::common::verify::DomainKey;
use mail_auth::dkim::DkimError;
use mail_auth::dmarc::{Dmarc, Policy};
use mail_auth::spf::verify::SpfParameters;
use mail_auth::spf::{Macro, Mechanism, Qualifier, Spf};
use mail_auth::{MessageAuthenticator, Parameters, SpfResult};

use crate::settings::SendingSettings;
use crate::{dkim, publish};
use way2mail_daemon::dns::DnsSettings;
use way2mail_wire::protocol::{
    BimiInfo, CheckStatus, DkimKeyInfo, DkimKeyState, DomainInfo, DomainVerification, RecordCheck,
    RecordPurpose,
};

/// The longest one check may take, however slow `[dns]` is configured to be; below the
/// CLI's request timeout, so a slow verify still gets its answer to the operator.
const MAX_CHECK_BUDGET: Duration = Duration::from_secs(45);

/// Looks up the records `domain` should publish and judges each one. Blocking: it runs
/// its own current-thread tokio runtime (on a helper thread when called from inside
/// one), and takes at most a few times `[dns] timeout × attempts` ([`check_budget`]),
/// all checks running at once.
pub fn verify(
    dns: &DnsSettings,
    domain: &DomainInfo,
    sending: &SendingSettings,
) -> DomainVerification {
    let target = Arc::new(Target::new(domain, sending));
    let budget = check_budget(dns);
    let checks = if tokio::runtime::Handle::try_current().is_ok() {
        // block_on inside a runtime would panic: run on a thread of our own.
        std::thread::scope(|scope| {
            scope
                .spawn(|| run(dns, &target, budget))
                .join()
                .unwrap_or(Err(SetupError::Panicked))
        })
    } else {
        run(dns, &target, budget)
    };
    let checks = checks.unwrap_or_else(|reason| {
        target
            .planned()
            .into_iter()
            .map(|base| base.error(&reason))
            .collect()
    });
    DomainVerification {
        domain: target.domain.clone(),
        verified: checks
            .iter()
            .filter(|c| c.required)
            .all(|c| c.status == CheckStatus::Ok),
        checks,
        checked_at: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    }
}

/// How long one check may take: four rounds of `timeout × attempts` (an SPF
/// evaluation follows includes one after another) plus a second, at most
/// [`MAX_CHECK_BUDGET`]. Checks run concurrently, so this bounds the whole verify.
pub fn check_budget(dns: &DnsSettings) -> Duration {
    let attempts = u32::try_from(dns.attempts.max(1)).unwrap_or(u32::MAX);
    dns.timeout
        .saturating_mul(attempts)
        .saturating_mul(4)
        .saturating_add(Duration::from_secs(1))
        .min(MAX_CHECK_BUDGET)
}

/// What is checked, owned so that every task can hold it.
#[derive(Debug)]
struct Target {
    /// Lowercase, no trailing dot.
    domain: String,
    keys: Vec<DkimKeyInfo>,
    bimi: Option<BimiInfo>,
    sending: SendingSettings,
}

impl Target {
    fn new(domain: &DomainInfo, sending: &SendingSettings) -> Target {
        Target {
            domain: domain.domain.trim_end_matches('.').to_ascii_lowercase(),
            keys: domain.dkim.clone(),
            bimi: domain.bimi.clone(),
            sending: sending.clone(),
        }
    }

    fn spf_configured(&self) -> bool {
        !self.sending.ips.is_empty() || self.sending.spf_include.is_some()
    }

    fn dmarc_name(&self) -> String {
        publish::dmarc_name(&self.domain)
    }

    fn spf_base(&self) -> Base {
        Base {
            purpose: RecordPurpose::Spf,
            name: self.domain.clone(),
            required: self.spf_configured(),
            expected: publish::spf_value(&self.sending),
        }
    }

    fn dkim_base(&self, key: &DkimKeyInfo) -> Base {
        Base {
            purpose: RecordPurpose::Dkim,
            name: dkim::record_name(&key.selector, &self.domain),
            required: key.state == DkimKeyState::Active,
            expected: Some(dkim::record_value(key)),
        }
    }

    fn dmarc_base(&self) -> Base {
        Base {
            purpose: RecordPurpose::Dmarc,
            name: self.dmarc_name(),
            required: true,
            expected: Some(publish::dmarc_value(&self.sending)),
        }
    }

    fn bimi_base(&self, bimi: &BimiInfo) -> Base {
        Base {
            purpose: RecordPurpose::Bimi,
            name: publish::bimi_name(&bimi.selector, &self.domain),
            required: false,
            expected: Some(publish::bimi_value(&bimi.logo_url, bimi.vmc_url.as_deref())),
        }
    }

    /// BIMI's prerequisites, reported under the DMARC record's name.
    fn bimi_prerequisites_base(&self) -> Base {
        Base {
            purpose: RecordPurpose::Bimi,
            name: self.dmarc_name(),
            required: false,
            expected: None,
        }
    }

    /// Every check, in the order of `domain dns`, before any lookup.
    fn planned(&self) -> Vec<Base> {
        let mut out = vec![self.spf_base()];
        out.extend(self.keys.iter().map(|k| self.dkim_base(k)));
        out.push(self.dmarc_base());
        if let Some(bimi) = &self.bimi {
            out.push(self.bimi_base(bimi));
            out.push(self.bimi_prerequisites_base());
        }
        out
    }
}

/// A check before its lookup: everything but the verdict.
#[derive(Debug, Clone)]
struct Base {
    purpose: RecordPurpose,
    name: String,
    required: bool,
    expected: Option<String>,
}

impl Base {
    fn judge(self, status: CheckStatus, found: Vec<String>, detail: String) -> RecordCheck {
        RecordCheck {
            purpose: self.purpose,
            name: self.name,
            status,
            required: self.required,
            expected: self.expected,
            found,
            detail,
        }
    }

    fn error(self, reason: impl std::fmt::Display) -> RecordCheck {
        let detail = format!("Looking up {} failed: {reason}.", self.name);
        self.judge(CheckStatus::Error, Vec::new(), detail)
    }
}

/// Why no check could run (every check is then an error with this reason).
#[derive(Debug, thiserror::Error)]
enum SetupError {
    #[error("cannot start the DNS runtime: {0}")]
    Runtime(std::io::Error),
    #[error("{0}")]
    Resolver(std::io::Error),
    #[error("the DNS checks failed unexpectedly")]
    Panicked,
}

/// Builds the runtime and the resolver and runs every check.
fn run(
    dns: &DnsSettings,
    target: &Arc<Target>,
    budget: Duration,
) -> Result<Vec<RecordCheck>, SetupError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(SetupError::Runtime)?;
    runtime.block_on(async {
        let resolver = way2mail_daemon::dns::resolver(dns).map_err(SetupError::Resolver)?;
        let auth = Arc::new(MessageAuthenticator(resolver));
        Ok(run_checks(&auth, target, budget).await)
    })
}

async fn run_checks(
    auth: &Arc<MessageAuthenticator>,
    target: &Arc<Target>,
    budget: Duration,
) -> Vec<RecordCheck> {
    let timed_out = format!("no answer within {} s", budget.as_secs_f32());

    let spf = {
        let (auth, target) = (Arc::clone(auth), Arc::clone(target));
        tokio::spawn(async move { bounded(budget, spf_check(&auth, &target)).await })
    };
    let dkim: Vec<_> = (0..target.keys.len())
        .map(|i| {
            let (auth, target) = (Arc::clone(auth), Arc::clone(target));
            tokio::spawn(async move { bounded(budget, dkim_check(&auth, &target, i)).await })
        })
        .collect();
    let dmarc = {
        let (auth, target) = (Arc::clone(auth), Arc::clone(target));
        tokio::spawn(async move { bounded(budget, dmarc_check(&auth, &target)).await })
    };
    let bimi = target.bimi.clone().map(|bimi| {
        let (auth, target) = (Arc::clone(auth), Arc::clone(target));
        tokio::spawn(async move { bounded(budget, bimi_check(&auth, &target, &bimi)).await })
    });

    let failed = |base: Base, e: Option<tokio::task::JoinError>| match e {
        None => base.error(&timed_out),
        Some(_) => base.error("the check failed unexpectedly"),
    };
    let mut checks = Vec::with_capacity(target.keys.len() + 4);
    checks.push(match spf.await {
        Ok(Some(check)) => check,
        Ok(None) => failed(target.spf_base(), None),
        Err(e) => failed(target.spf_base(), Some(e)),
    });
    for (handle, key) in dkim.into_iter().zip(&target.keys) {
        checks.push(match handle.await {
            Ok(Some(check)) => check,
            Ok(None) => failed(target.dkim_base(key), None),
            Err(e) => failed(target.dkim_base(key), Some(e)),
        });
    }
    let (dmarc_check, dmarc_seen) = match dmarc.await {
        Ok(Some(got)) => got,
        Ok(None) => (
            failed(target.dmarc_base(), None),
            DmarcSeen::Failed(timed_out.clone()),
        ),
        Err(e) => (
            failed(target.dmarc_base(), Some(e)),
            DmarcSeen::Failed("the check failed unexpectedly".into()),
        ),
    };
    let dmarc_found = dmarc_check.found.clone();
    checks.push(dmarc_check);
    if let (Some(handle), Some(bimi)) = (bimi, &target.bimi) {
        checks.push(match handle.await {
            Ok(Some(check)) => check,
            Ok(None) => failed(target.bimi_base(bimi), None),
            Err(e) => failed(target.bimi_base(bimi), Some(e)),
        });
        let prerequisites = bimi_prerequisites(target, &dmarc_seen, dmarc_found, &checks);
        checks.push(prerequisites);
    }
    checks
}

/// `future`'s output, or `None` when it takes longer than `budget`.
async fn bounded<T>(budget: Duration, future: impl Future<Output = T>) -> Option<T> {
    tokio::time::timeout(budget, future).await.ok()
}

/// The TXT records at a name, each record's character-strings joined without a
/// separator (RFC 7208 §3.3, RFC 6376 §3.6.2.2) and read as UTF-8 (lossily).
#[derive(Debug)]
struct Txts {
    records: Vec<String>,
    /// Why there are none: `Some("NXDOMAIN")` or `Some("NODATA")`.
    absent: Option<&'static str>,
}

impl Txts {
    fn missing_detail(&self, name: &str, what: &str) -> String {
        match (self.absent, self.records.len()) {
            (Some("NXDOMAIN"), _) => {
                format!("There is no {what} at {name} (the name does not exist).")
            }
            (_, 0) => format!("There is no {what} at {name} (the name has no TXT records)."),
            (_, 1) => format!("There is no {what} at {name}, only 1 other TXT record."),
            (_, n) => format!("There is no {what} at {name}, only {n} other TXT records."),
        }
    }
}

/// Why a lookup says nothing about the record, in a few words. NXDOMAIN and NODATA
/// are answers ([`Txts::absent`]), never this.
#[derive(Debug, thiserror::Error)]
enum LookupError {
    #[error("{name} is not a valid DNS name ({why})")]
    Name { name: String, why: ProtoError },
    #[error("the DNS server did not answer in time")]
    Timeout,
    /// The response code, as DNS people write it (`SERVFAIL`).
    #[error("the DNS server answered {0}")]
    Answered(&'static str),
    #[error("{0}")]
    Other(NetError),
}

impl From<NetError> for LookupError {
    fn from(e: NetError) -> LookupError {
        match e {
            NetError::Timeout => LookupError::Timeout,
            NetError::Dns(DnsError::ResponseCode(code)) => LookupError::Answered(match code {
                ResponseCode::ServFail => "SERVFAIL",
                ResponseCode::Refused => "REFUSED",
                other => other.to_str(),
            }),
            other => LookupError::Other(other),
        }
    }
}

/// Looks up the TXT records at `name`.
async fn lookup_txt(resolver: &TokioResolver, name: &str) -> Result<Txts, LookupError> {
    let fqdn = Name::from_str_relaxed(format!("{name}.")).map_err(|why| LookupError::Name {
        name: name.to_owned(),
        why,
    })?;
    match resolver.txt_lookup(fqdn).await {
        Ok(lookup) => {
            let records = way2mail_daemon::dns::txt_texts(lookup.answers());
            let absent = records.is_empty().then_some("NODATA");
            Ok(Txts { records, absent })
        }
        Err(NetError::Dns(DnsError::NoRecordsFound(none))) => Ok(Txts {
            records: Vec::new(),
            absent: Some(if none.response_code == ResponseCode::NXDomain {
                "NXDOMAIN"
            } else {
                "NODATA"
            }),
        }),
        Err(e) => Err(e.into()),
    }
}

/// The parts of a tag-list record (`tag=value; …`, RFC 6376 §3.2): names lowercase,
/// values with surrounding whitespace removed; `None` when a part has no `=` or a tag
/// repeats.
fn tags(record: &str) -> Option<Vec<(String, String)>> {
    let mut out: Vec<(String, String)> = Vec::new();
    for part in record.split(';') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let (tag, value) = part.split_once('=')?;
        let tag = tag.trim().to_ascii_lowercase();
        if tag.is_empty() || out.iter().any(|(t, _)| *t == tag) {
            return None;
        }
        out.push((tag, value.trim().to_owned()));
    }
    Some(out)
}

fn tag<'a>(tags: &'a [(String, String)], name: &str) -> Option<&'a str> {
    tags.iter()
        .find(|(t, _)| t == name)
        .map(|(_, v)| v.as_str())
}

/// Whether `record` starts with `v=VERSION` (case-insensitive), the mark of its kind.
fn is_version(record: &str, version: &str) -> bool {
    let Some((tag, rest)) = record.trim_start().split_once('=') else {
        return false;
    };
    if !tag.trim().eq_ignore_ascii_case("v") {
        return false;
    }
    let value = rest.split(';').next().unwrap_or("").trim();
    value.eq_ignore_ascii_case(version)
}

/// RFC 7208 §4.5: `v=spf1` followed by a space or the end.
fn is_spf(record: &str) -> bool {
    let bytes = record.as_bytes();
    bytes.len() >= 6
        && bytes[..6].eq_ignore_ascii_case(b"v=spf1")
        && bytes.get(6).is_none_or(|b| *b == b' ')
}

fn without_whitespace(value: &str) -> String {
    value.chars().filter(|c| !c.is_whitespace()).collect()
}

fn spf_word(result: SpfResult) -> &'static str {
    match result {
        SpfResult::Pass => "pass",
        SpfResult::Fail => "fail",
        SpfResult::SoftFail => "softfail",
        SpfResult::Neutral => "neutral",
        SpfResult::TempError => "temperror",
        SpfResult::PermError => "permerror",
        SpfResult::None => "none",
    }
}

/// `a`, `a and b`, `a, b and c`.
fn and_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [head @ .., last] => format!("{} and {last}", head.join(", ")),
    }
}

async fn spf_check(auth: &MessageAuthenticator, target: &Target) -> RecordCheck {
    let base = target.spf_base();
    let domain = target.domain.as_str();
    let txts = match lookup_txt(auth.resolver(), domain).await {
        Ok(txts) => txts,
        Err(reason) => return base.error(reason),
    };
    let found: Vec<String> = txts.records.iter().filter(|r| is_spf(r)).cloned().collect();
    let unconfigured = " [sending] names no ips or spf_include, so SPF is not required";
    match found.len() {
        0 => {
            let mut detail = txts.missing_detail(domain, "SPF record (v=spf1)");
            if !target.spf_configured() {
                detail = format!("{}:{unconfigured}.", detail.trim_end_matches('.'));
            }
            return base.judge(CheckStatus::Missing, found, detail);
        }
        1 => {}
        n => {
            let detail = format!(
                "{domain} has {n} SPF records, which receivers treat as permerror, so merge them \
                into one."
            );
            return base.judge(CheckStatus::Wrong, found, detail);
        }
    }
    let spf = match Spf::parse(found[0].as_bytes()) {
        Ok(spf) => spf,
        Err(_) => {
            let detail = format!(
                "The SPF record of {domain} does not parse, which receivers treat as permerror."
            );
            return base.judge(CheckStatus::Wrong, found, detail);
        }
    };
    if !target.spf_configured() {
        let detail = format!(
            "The SPF record of {domain} parses, but{unconfigured} and it was not checked against \
            the platform's servers."
        );
        return base.judge(CheckStatus::Ok, found, detail);
    }

    // Every sending address must pass, evaluated as a receiver would.
    let sender = format!("postmaster@{domain}");
    let mut failing = Vec::new();
    let mut temporary = Vec::new();
    for ip in &target.sending.ips {
        let params = SpfParameters::verify_mail_from(*ip, domain, domain, &sender);
        let output = auth.check_host(Parameters::new(params)).await;
        match output.result() {
            SpfResult::Pass => {}
            SpfResult::TempError => temporary.push(ip.to_string()),
            other => failing.push(format!("{ip} gets {}", spf_word(other))),
        }
    }
    if !failing.is_empty() {
        let detail = format!(
            "The SPF record of {domain} does not authorise the platform: {} instead of pass.",
            and_list(&failing)
        );
        return base.judge(CheckStatus::Wrong, found, detail);
    }
    if !temporary.is_empty() {
        let detail = format!(
            "Evaluating the SPF record of {domain} for {} gave temperror (a lookup it needs \
            failed).",
            and_list(&temporary)
        );
        return base.judge(CheckStatus::Error, found, detail);
    }
    if target.sending.ips.is_empty() {
        if let Some(include) = &target.sending.spf_include {
            if !includes(&spf, include) {
                let detail = format!(
                    "The SPF record of {domain} has no include:{include}, which authorises the \
                    platform's servers."
                );
                return base.judge(CheckStatus::Wrong, found, detail);
            }
            let detail = format!("The SPF record of {domain} includes {include}.");
            return base.judge(CheckStatus::Ok, found, detail);
        }
    }
    let ips: Vec<String> = target.sending.ips.iter().map(IpAddr::to_string).collect();
    let detail = format!(
        "The SPF record of {domain} gives pass for {}.",
        and_list(&ips)
    );
    base.judge(CheckStatus::Ok, found, detail)
}

/// Whether `spf` has a passing `include:NAME` or a `redirect=NAME` (literal names,
/// case and a trailing dot ignored).
fn includes(spf: &Spf, name: &str) -> bool {
    let want = name.trim_end_matches('.');
    let same = |m: &Macro| match m {
        Macro::Literal(bytes) => std::str::from_utf8(bytes)
            .is_ok_and(|s| s.trim_end_matches('.').eq_ignore_ascii_case(want)),
        _ => false,
    };
    spf.directives.iter().any(|d| {
        d.qualifier == Qualifier::Pass
            && matches!(&d.mechanism, Mechanism::Include { macro_string } if same(macro_string))
    }) || spf.redirect.as_ref().is_some_and(same)
}

async fn dkim_check(auth: &MessageAuthenticator, target: &Target, index: usize) -> RecordCheck {
    let Some(key) = target.keys.get(index) else {
        // Never: tasks are made for existing indexes only.
        return Base {
            purpose: RecordPurpose::Dkim,
            name: target.domain.clone(),
            required: false,
            expected: None,
        }
        .error("no such key");
    };
    let base = target.dkim_base(key);
    let name = base.name.clone();
    let state = match key.state {
        DkimKeyState::Active => "active",
        DkimKeyState::Pending => "pending",
        DkimKeyState::Retired => "retired",
    };
    let txts = match lookup_txt(auth.resolver(), &name).await {
        Ok(txts) => txts,
        Err(reason) => return base.error(reason),
    };
    let found = txts.records.clone();
    let record = match found.len() {
        0 => {
            let detail =
                txts.missing_detail(&name, &format!("DKIM key record for the {state} selector"));
            return base.judge(CheckStatus::Missing, found, detail);
        }
        1 => found[0].clone(),
        n => {
            let detail = format!(
                "{name} has {n} TXT records, so receivers may pick any of them; publish only the \
                key of the {state} selector."
            );
            return base.judge(CheckStatus::Wrong, found, detail);
        }
    };
    let wrong = |detail: String| (CheckStatus::Wrong, detail);
    let (status, detail) = match judge_dkim(&record, key) {
        Ok(note) => (
            CheckStatus::Ok,
            format!("{name} publishes the key of the {state} selector{note}."),
        ),
        Err(problem) => wrong(format!("{name} ({state}) {problem}.")),
    };
    base.judge(status, found, detail)
}

/// `Ok(note)` when `record` publishes `key` usably for rsa-sha256 / ed25519-sha256
/// mail signatures.
fn judge_dkim(record: &str, key: &DkimKeyInfo) -> Result<&'static str, DkimProblem> {
    let parsed = DomainKey::parse(record.as_bytes());
    if let Err(mail_auth::Error::Dkim(DkimError::RevokedPublicKey)) = parsed {
        return Err(DkimProblem::Revoked);
    }
    let Some(tags) = tags(record) else {
        return Err(DkimProblem::NotTagList);
    };
    if let Some(version) = tag(&tags, "v") {
        if version != "DKIM1" || tags.first().is_some_and(|(t, _)| t != "v") {
            return Err(DkimProblem::NotDkim(version.to_owned()));
        }
    }
    let Some(p) = tag(&tags, "p") else {
        return Err(DkimProblem::NoKey);
    };
    if without_whitespace(p) != without_whitespace(&key.public_key) {
        return Err(DkimProblem::OtherKey);
    }
    let want = key.algorithm.key_type();
    let k = tag(&tags, "k").unwrap_or("rsa");
    if !k.eq_ignore_ascii_case(want) {
        return Err(DkimProblem::KeyType {
            k: k.to_owned(),
            want,
        });
    }
    if let Err(e) = parsed {
        return Err(DkimProblem::Unparsable(e));
    }
    if let Some(h) = tag(&tags, "h") {
        if !h
            .split(':')
            .any(|a| a.trim().eq_ignore_ascii_case("sha256"))
        {
            return Err(DkimProblem::Hashes(h.to_owned()));
        }
    }
    if let Some(s) = tag(&tags, "s") {
        if !s
            .split(':')
            .any(|t| t.trim() == "*" || t.trim().eq_ignore_ascii_case("email"))
        {
            return Err(DkimProblem::Services(s.to_owned()));
        }
    }
    let testing =
        tag(&tags, "t").is_some_and(|t| t.split(':').any(|f| f.trim().eq_ignore_ascii_case("y")));
    Ok(if testing {
        " (t=y: receivers may treat its signatures as a test)"
    } else {
        ""
    })
}

/// What is wrong with a DKIM key record: a predicate for "NAME …".
#[derive(Debug, thiserror::Error)]
enum DkimProblem {
    #[error("has an empty p=, which revokes the key")]
    Revoked,
    #[error("does not parse as a DKIM key record (tag=value; …)")]
    NotTagList,
    #[error("is not a DKIM key record: it has v={0} where v=DKIM1 belongs first")]
    NotDkim(String),
    #[error("has no p= tag")]
    NoKey,
    #[error("publishes another public key than this selector's")]
    OtherKey,
    #[error("says k={k}, but the key is {want}")]
    KeyType { k: String, want: &'static str },
    #[error("does not parse as a DKIM key record ({0})")]
    Unparsable(mail_auth::Error),
    #[error("allows only h={0}, but the signatures use sha256")]
    Hashes(String),
    #[error("limits the key to s={0}, not email")]
    Services(String),
}

/// What the DMARC check saw, for BIMI's prerequisites.
#[derive(Debug, Clone)]
enum DmarcSeen {
    Failed(String),
    Missing,
    Unusable,
    Policy { p: Policy, pct: Option<u32> },
}

fn policy_word(p: Policy) -> &'static str {
    match p {
        Policy::None | Policy::Unspecified => "none",
        Policy::Quarantine => "quarantine",
        Policy::Reject => "reject",
    }
}

async fn dmarc_check(auth: &MessageAuthenticator, target: &Target) -> (RecordCheck, DmarcSeen) {
    let base = target.dmarc_base();
    let name = base.name.clone();
    let txts = match lookup_txt(auth.resolver(), &name).await {
        Ok(txts) => txts,
        Err(reason) => {
            let seen = DmarcSeen::Failed(reason.to_string());
            return (base.error(reason), seen);
        }
    };
    let found: Vec<String> = txts
        .records
        .iter()
        .filter(|r| is_version(r, "DMARC1"))
        .cloned()
        .collect();
    let record = match found.len() {
        0 => {
            let detail = txts.missing_detail(&name, "DMARC record (v=DMARC1)");
            return (
                base.judge(CheckStatus::Missing, found, detail),
                DmarcSeen::Missing,
            );
        }
        1 => found[0].clone(),
        n => {
            let detail =
                format!("{name} has {n} DMARC records, so receivers apply none of them; keep one.");
            return (
                base.judge(CheckStatus::Wrong, found, detail),
                DmarcSeen::Unusable,
            );
        }
    };
    let dmarc = match Dmarc::parse(record.as_bytes()) {
        Ok(dmarc) => dmarc,
        Err(_) => {
            let detail =
                format!("The DMARC record at {name} does not parse, so receivers ignore it.");
            return (
                base.judge(CheckStatus::Wrong, found, detail),
                DmarcSeen::Unusable,
            );
        }
    };
    let pct_tag = tags(&record).and_then(|t| tag(&t, "pct").map(str::to_owned));
    let pct = match pct_tag {
        None => None,
        Some(text) => match text.parse::<u32>() {
            Ok(n) if n <= 100 => Some(n),
            _ => {
                let detail = format!(
                    "The DMARC record at {name} has pct={text}, which is not a \
                    number from 0 to 100."
                );
                return (
                    base.judge(CheckStatus::Wrong, found, detail),
                    DmarcSeen::Unusable,
                );
            }
        },
    };
    let detail = match dmarc.p {
        Policy::Unspecified => format!(
            "The DMARC record at {name} parses but has no p=, which receivers read as p=none: it \
            only asks for reports and does not protect the domain."
        ),
        Policy::None => format!(
            "The DMARC record at {name} has p=none: it only asks for reports and does not \
            protect the domain until it moves to p=quarantine or p=reject."
        ),
        p => match pct {
            Some(n) if n < 100 => format!(
                "The DMARC record at {name} has p={} for pct={n} of failing mail.",
                policy_word(p)
            ),
            _ => format!(
                "The DMARC record at {name} has p={}, which protects the domain.",
                policy_word(p)
            ),
        },
    };
    let seen = DmarcSeen::Policy { p: dmarc.p, pct };
    (base.judge(CheckStatus::Ok, found, detail), seen)
}

async fn bimi_check(auth: &MessageAuthenticator, target: &Target, bimi: &BimiInfo) -> RecordCheck {
    let base = target.bimi_base(bimi);
    let name = base.name.clone();
    let txts = match lookup_txt(auth.resolver(), &name).await {
        Ok(txts) => txts,
        Err(reason) => return base.error(reason),
    };
    let found: Vec<String> = txts
        .records
        .iter()
        .filter(|r| is_version(r, "BIMI1"))
        .cloned()
        .collect();
    let record = match found.len() {
        0 => {
            let detail = txts.missing_detail(&name, "BIMI record (v=BIMI1)");
            return base.judge(CheckStatus::Missing, found, detail);
        }
        1 => found[0].clone(),
        n => {
            let detail =
                format!("{name} has {n} BIMI records, so receivers use none of them; keep one.");
            return base.judge(CheckStatus::Wrong, found, detail);
        }
    };
    let (status, detail) = match judge_bimi(&record, bimi) {
        Ok(()) => (
            CheckStatus::Ok,
            match &bimi.vmc_url {
                Some(_) => format!("{name} points at the logo and the certificate that are set."),
                None => format!("{name} points at the logo that is set."),
            },
        ),
        Err(problem) => (CheckStatus::Wrong, format!("{name} {problem}.")),
    };
    base.judge(status, found, detail)
}

fn judge_bimi(record: &str, bimi: &BimiInfo) -> Result<(), BimiProblem> {
    let Some(tags) = tags(record) else {
        return Err(BimiProblem::NotTagList);
    };
    if tags.first().is_none_or(|(t, _)| t != "v") {
        return Err(BimiProblem::NoVersion);
    }
    match tag(&tags, "l") {
        None => return Err(BimiProblem::NoLogo(bimi.logo_url.clone())),
        Some(l) if l != bimi.logo_url => {
            return Err(BimiProblem::OtherLogo {
                found: l.to_owned(),
                set: bimi.logo_url.clone(),
            })
        }
        Some(_) => {}
    }
    if let Some(vmc) = &bimi.vmc_url {
        match tag(&tags, "a") {
            None | Some("") => return Err(BimiProblem::NoCertificate(vmc.clone())),
            Some(a) if a != vmc => {
                return Err(BimiProblem::OtherCertificate {
                    found: a.to_owned(),
                    set: vmc.clone(),
                })
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// What is wrong with a BIMI record: a predicate for "NAME …".
#[derive(Debug, thiserror::Error)]
enum BimiProblem {
    #[error("does not parse as a BIMI record (tag=value; …)")]
    NotTagList,
    #[error("does not start with v=BIMI1")]
    NoVersion,
    #[error("has no l= where {0} belongs")]
    NoLogo(String),
    #[error("has l={found}, but the logo is set to {set}")]
    OtherLogo { found: String, set: String },
    #[error("has no a= where {0} belongs")]
    NoCertificate(String),
    #[error("has a={found}, but the certificate is set to {set}")]
    OtherCertificate { found: String, set: String },
}

/// Receivers show a BIMI logo only for mail that passes DMARC under an enforcing
/// policy (p=quarantine or p=reject, pct=100) and is DKIM-signed by the domain itself.
/// Our keys sign with d= the domain, so an active key that is published right makes
/// that alignment possible.
fn bimi_prerequisites(
    target: &Target,
    dmarc: &DmarcSeen,
    dmarc_found: Vec<String>,
    checks: &[RecordCheck],
) -> RecordCheck {
    let base = target.bimi_prerequisites_base();
    let domain = &target.domain;
    let active: Vec<&RecordCheck> = target
        .keys
        .iter()
        .filter(|k| k.state == DkimKeyState::Active)
        .filter_map(|k| {
            let name = dkim::record_name(&k.selector, domain);
            checks
                .iter()
                .find(|c| c.purpose == RecordPurpose::Dkim && c.name == name)
        })
        .collect();
    let mut unmet = Vec::new();
    let mut unknown = Vec::new();
    match dmarc {
        DmarcSeen::Failed(reason) => unknown.push(format!("the DMARC lookup failed ({reason})")),
        DmarcSeen::Missing => unmet.push("there is no DMARC record".to_string()),
        DmarcSeen::Unusable => unmet.push("the DMARC record is not usable".to_string()),
        DmarcSeen::Policy { p, pct } => {
            if !matches!(p, Policy::Quarantine | Policy::Reject) {
                unmet.push("the DMARC policy is p=none".to_string());
            } else if let Some(n) = pct.filter(|n| *n < 100) {
                unmet.push(format!("the DMARC policy covers pct={n} only"));
            }
        }
    }
    if !active.iter().any(|c| c.status == CheckStatus::Ok) {
        if active.iter().any(|c| c.status == CheckStatus::Error) {
            unknown.push("an active DKIM key's lookup failed".to_string());
        } else if active.is_empty() {
            unmet.push(format!("{domain} has no active DKIM key"));
        } else {
            unmet.push("no active DKIM key is published right".to_string());
        }
    }
    let needs = format!(
        "Receivers show the BIMI logo only under a DMARC policy of p=quarantine or p=reject at \
        pct=100 with an active DKIM key of {domain} published"
    );
    if !unmet.is_empty() {
        let detail = format!("{needs}, but {}.", and_list(&unmet));
        base.judge(CheckStatus::Wrong, dmarc_found, detail)
    } else if !unknown.is_empty() {
        let detail = format!(
            "{needs}, and that cannot be told because {}.",
            and_list(&unknown)
        );
        base.judge(CheckStatus::Error, dmarc_found, detail)
    } else {
        let detail = format!(
            "BIMI's prerequisites are met: an enforcing DMARC policy and an active DKIM key of \
            {domain} published."
        );
        base.judge(CheckStatus::Ok, dmarc_found, detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_lists() {
        let t = tags(" v=DKIM1 ; k = ed25519; p=ab cd ;").expect("parses");
        assert_eq!(tag(&t, "k"), Some("ed25519"));
        assert_eq!(tag(&t, "p"), Some("ab cd"));
        assert!(tags("v=DKIM1; p").is_none());
        assert!(tags("v=DKIM1; p=a; p=b").is_none());
        assert!(is_version("v=DMARC1; p=none", "DMARC1"));
        assert!(is_version(" V = dmarc1", "DMARC1"));
        assert!(!is_version("v=DMARC10; p=none", "DMARC1"));
        assert!(!is_version("p=none; v=DMARC1", "DMARC1"));
        assert!(is_spf("v=spf1 -all"));
        assert!(is_spf("V=SPF1"));
        assert!(!is_spf("v=spf10 -all"));
        assert!(!is_spf("v=spf"));
    }

    #[test]
    fn and_lists() {
        assert_eq!(and_list(&[]), "");
        assert_eq!(and_list(&["a".into()]), "a");
        assert_eq!(and_list(&["a".into(), "b".into()]), "a and b");
        assert_eq!(
            and_list(&["a".into(), "b".into(), "c".into()]),
            "a, b and c"
        );
    }

    #[test]
    fn budget_is_bounded() {
        let fast = DnsSettings {
            nameservers: Vec::new(),
            timeout: Duration::from_millis(500),
            attempts: 1,
        };
        assert_eq!(check_budget(&fast), Duration::from_secs(3));
        let slow = DnsSettings {
            nameservers: Vec::new(),
            timeout: Duration::from_secs(30),
            attempts: 5,
        };
        assert_eq!(check_budget(&slow), MAX_CHECK_BUDGET);
    }
}
