//! Domain operations: a domain belongs to exactly one tenant (the key of the
//! domains tree is the domain), is lower-cased, and is what the MTA checks MAIL
//! FROM against. Each domain has DKIM keys (public halves in its record, private
//! keys in the `dkim_keys` tree), the DNS records it should publish, a verification
//! state, an operator's override to send unverified, and optional BIMI settings.
//!
//! ```text
//!   add ───────── RSA + Ed25519 pair, active
//!   rotate_dkim ─ new pair, pending ── (publish; verify) ── activate_dkim:
//!                 pending → active, active → retired ── retire_dkim: deleted
//!   verify ────── dnscheck: verified_at set (all required records right) or cleared
//!                 (one missing or wrong); lookup failures change nothing
//!   may_send = verified or send_unverified (override, with a reason)
//! ```
//!
//! `verify` and `activate_dkim` judge [`Lookups`] made before the writer lock
//! ([`look_up`]), so a slow resolver stalls only their own caller.
//!
//! The snapshot version moves only when what the MTA sees changes: whether the
//! domain may send, its active keys, its BIMI selector.

use serde_json::json;

use super::context::{Ctx, Failure};
use super::writer::Service;
use super::{tenants, validate};
use crate::dkim::{self, NewKey};
use crate::store::{Store, TreeName};
use way2mail_wire::protocol::{
    BimiInfo, CheckStatus, DkimKeyState, DomainInfo, DomainRecords, DomainVerification,
    RecordPurpose, Response,
};

/// Longest BIMI logo or VMC location accepted.
const MAX_URL_CHARS: usize = 2048;

pub(crate) fn add(ctx: &mut Ctx<'_>, tenant: &str, domain: &str) -> Result<Response, Failure> {
    let owner = tenants::load_live(ctx, tenant)?;
    let domain = validate::domain(domain)?;
    if let Some(existing) = ctx
        .store
        .get::<DomainInfo>(TreeName::Domains, &ctx.store.domain_key(&domain))?
    {
        return Err(Failure::exists(if ctx.who.sees_owners() {
            format!(
                "domain {domain} already belongs to tenant {}",
                existing.tenant
            )
        } else {
            format!("domain {domain} is already registered")
        }));
    }
    let mut info = DomainInfo {
        domain: domain.clone(),
        tenant: owner.tenant,
        created_at: ctx.now,
        dkim: Vec::new(),
        verified_at: None,
        send_unverified: false,
        bimi: None,
    };
    // Keys of an earlier registration of the same name are never reused.
    remove_keys(ctx, &domain)?;
    let keys = dkim::generate_pair(&domain, &[], ctx.now, DkimKeyState::Active)?;
    store_keys(ctx, &mut info, keys)?;
    save(ctx, None, &info)?;
    ctx.detail = Some(format!(
        "added domain {domain}; DKIM selectors {}",
        selectors_of(&info, |_| true)
    ));
    Ok(Response::Domains {
        domains: vec![info],
    })
}

pub(crate) fn list(ctx: &mut Ctx<'_>, tenant: Option<&str>) -> Result<Response, Failure> {
    if let Some(t) = tenant {
        tenants::load(ctx, t)?;
    }
    let domains = owned_by(ctx.store, tenant)?;
    ctx.detail = Some(format!("{} domains", domains.len()));
    Ok(Response::Domains { domains })
}

/// The domains of `tenant` (of every tenant with `None`).
pub(crate) fn owned_by(store: &Store, tenant: Option<&str>) -> Result<Vec<DomainInfo>, Failure> {
    Ok(store
        .scan::<DomainInfo>(TreeName::Domains)?
        .into_iter()
        .map(|(_, d)| d)
        .filter(|d| tenant.is_none_or(|t| d.tenant == t))
        .collect())
}

pub(crate) fn remove(ctx: &mut Ctx<'_>, tenant: &str, domain: &str) -> Result<Response, Failure> {
    let domain = validate::domain(domain)?;
    let owned = ctx
        .store
        .get::<DomainInfo>(TreeName::Domains, &ctx.store.domain_key(&domain))?
        .filter(|d| d.tenant == tenant);
    if owned.is_none() {
        return Err(Failure::not_found(format!(
            "domain {domain} is not a domain of tenant {}",
            validate::shorten(tenant)
        )));
    }
    ctx.batch
        .remove(TreeName::Domains, ctx.store.domain_key(&domain));
    let keys = remove_keys(ctx, &domain)?;
    ctx.snapshot_changed = true;
    ctx.detail = Some(format!("removed domain {domain} and its {keys} DKIM keys"));
    Ok(Response::Done)
}

pub(crate) fn show(ctx: &mut Ctx<'_>, domain: &str) -> Result<Response, Failure> {
    let info = load(ctx, domain)?;
    Ok(Response::Domain(info))
}

pub(crate) fn dns(ctx: &mut Ctx<'_>, domain: &str) -> Result<Response, Failure> {
    let info = load(ctx, domain)?;
    let records = crate::publish::records(&info, &ctx.settings.sending);
    ctx.detail = Some(format!("{} records", records.len()));
    Ok(Response::DnsRecords(DomainRecords {
        domain: info.domain,
        records,
    }))
}

/// Keeps what the lookups found: `verified_at` is set when every required record
/// is right, cleared when one is missing or wrong, and left as it was when the only
/// problems are failed lookups (nothing can be said then).
pub(crate) fn verify(
    ctx: &mut Ctx<'_>,
    domain: &str,
    lookups: Lookups,
) -> Result<Response, Failure> {
    let mut info = load(ctx, domain)?;
    let before = info.clone();
    let verification = lookups.for_domain(ctx, &info);
    let required_ok = verification
        .checks
        .iter()
        .filter(|c| c.required)
        .all(|c| c.status == CheckStatus::Ok);
    let required_bad = verification
        .checks
        .iter()
        .any(|c| c.required && matches!(c.status, CheckStatus::Missing | CheckStatus::Wrong));
    let verified = verification.verified && required_ok;
    if verified {
        info.verified_at = Some(ctx.now);
    } else if required_bad {
        info.verified_at = None;
    }
    if info != before {
        save(ctx, Some(&before), &info)?;
    }
    let problems: Vec<String> = verification
        .checks
        .iter()
        .filter(|c| c.status != CheckStatus::Ok)
        .map(|c| {
            format!(
                "{} {} {}{}",
                c.purpose.as_str(),
                validate::shorten(&c.name),
                status_word(c.status),
                if c.required { "" } else { " (optional)" }
            )
        })
        .collect();
    let mut detail = if verified {
        "verified".to_string()
    } else if required_bad {
        "not verified".to_string()
    } else {
        "not verified (lookups failed; verification state unchanged)".to_string()
    };
    if !problems.is_empty() {
        detail.push_str(": ");
        detail.push_str(&problems.join(", "));
    }
    if before.may_send() != info.may_send() {
        detail.push_str(if info.may_send() {
            "; may send now"
        } else {
            "; may no longer send"
        });
    }
    ctx.detail = Some(detail);
    Ok(Response::Verification(verification))
}

/// A new pair, pending (or active at once when the domain has no active key).
pub(crate) fn rotate_dkim(ctx: &mut Ctx<'_>, domain: &str) -> Result<Response, Failure> {
    let mut info = load_live(ctx, domain)?;
    let before = info.clone();
    let state = if !has(&info, DkimKeyState::Active) {
        DkimKeyState::Active
    } else if has(&info, DkimKeyState::Pending) {
        return Err(Failure::conflict(format!(
            "a rotation is already pending for {}: publish its records and activate it \
             (rotate-dkim --activate)",
            info.domain
        )));
    } else {
        DkimKeyState::Pending
    };
    let keys = dkim::generate_pair(&info.domain, &info.dkim, ctx.now, state)?;
    store_keys(ctx, &mut info, keys)?;
    ctx.detail = Some(if state == DkimKeyState::Active {
        format!(
            "new DKIM keys {}, active at once (the domain had no active keys)",
            selectors_of(&info, |s| s == DkimKeyState::Active)
        )
    } else {
        format!(
            "new DKIM keys {}, pending until activated",
            selectors_of(&info, |s| s == DkimKeyState::Pending)
        )
    });
    save(ctx, Some(&before), &info)?;
    Ok(Response::Domain(info))
}

/// How `rotate-dkim --activate` knows the pending selectors are published.
pub(crate) enum Publication {
    /// Their records, looked up before the writer lock.
    Checked(Lookups),
    /// `--force`: not checked.
    Forced,
}

/// The pending pair becomes active and the active one retired, once the pending
/// records are published (unless forced).
pub(crate) fn activate_dkim(
    ctx: &mut Ctx<'_>,
    domain: &str,
    published: Publication,
) -> Result<Response, Failure> {
    let mut info = load_live(ctx, domain)?;
    let before = info.clone();
    if !has(&info, DkimKeyState::Pending) {
        return Err(Failure::conflict(format!(
            "{} has no pending DKIM keys to activate: run rotate-dkim without --activate first",
            info.domain
        )));
    }
    let forced = match published {
        Publication::Forced => true,
        Publication::Checked(lookups) => {
            let unpublished = unpublished_pending(ctx, &info, lookups);
            if !unpublished.is_empty() {
                return Err(Failure::conflict(format!(
                    "the pending DKIM selectors are not published yet: {}; publish the records \
                     shown by `way2mail domain dns {}` and try again once they resolve \
                     (or activate anyway with --force)",
                    unpublished.join(", "),
                    info.domain
                )));
            }
            false
        }
    };
    let activated = selectors_of(&info, |s| s == DkimKeyState::Pending);
    let retired = selectors_of(&info, |s| s == DkimKeyState::Active);
    for key in &mut info.dkim {
        key.state = match key.state {
            DkimKeyState::Pending => DkimKeyState::Active,
            DkimKeyState::Active | DkimKeyState::Retired => DkimKeyState::Retired,
        };
    }
    ctx.detail = Some(format!(
        "activated DKIM keys {activated}; retired {}{}",
        if retired.is_empty() { "none" } else { &retired },
        if forced {
            " (forced: DNS not checked)"
        } else {
            ""
        }
    ));
    save(ctx, Some(&before), &info)?;
    Ok(Response::Domain(info))
}

fn has(info: &DomainInfo, state: DkimKeyState) -> bool {
    info.dkim.iter().any(|k| k.state == state)
}

/// The pending selectors whose record `dnscheck` did not find right, each with why.
fn unpublished_pending(ctx: &Ctx<'_>, info: &DomainInfo, lookups: Lookups) -> Vec<String> {
    let verification = lookups.for_domain(ctx, info);
    info.dkim
        .iter()
        .filter(|k| k.state == DkimKeyState::Pending)
        .filter_map(|k| {
            let name = dkim::record_name(&k.selector, &info.domain);
            let check = verification.checks.iter().find(|c| {
                c.purpose == RecordPurpose::Dkim
                    && c.name.trim_end_matches('.').eq_ignore_ascii_case(&name)
            });
            match check {
                Some(c) if c.status == CheckStatus::Ok => None,
                Some(c) => Some(format!("{} ({})", k.selector, status_word(c.status))),
                None => Some(format!("{} (not checked)", k.selector)),
            }
        })
        .collect()
}

/// Deletes retired keys: the one named (which must be retired) or all of them.
pub(crate) fn retire_dkim(
    ctx: &mut Ctx<'_>,
    domain: &str,
    selector: Option<&str>,
) -> Result<Response, Failure> {
    let mut info = load_live(ctx, domain)?;
    let targets: Vec<String> = match selector {
        Some(selector) => {
            let key = info
                .dkim
                .iter()
                .find(|k| k.selector == selector)
                .ok_or_else(|| {
                    Failure::not_found(format!(
                        "{} has no DKIM selector {}",
                        info.domain,
                        validate::shorten(selector)
                    ))
                })?;
            if key.state != DkimKeyState::Retired {
                return Err(Failure::conflict(format!(
                    "DKIM selector {selector} of {} is {}: only retired keys can be deleted \
                     (activate a rotation first)",
                    info.domain,
                    state_word(key.state)
                )));
            }
            vec![key.selector.clone()]
        }
        None => info
            .dkim
            .iter()
            .filter(|k| k.state == DkimKeyState::Retired)
            .map(|k| k.selector.clone())
            .collect(),
    };
    if targets.is_empty() {
        return Err(Failure::conflict(format!(
            "{} has no retired DKIM keys to delete",
            info.domain
        )));
    }
    let before = info.clone();
    info.dkim.retain(|k| !targets.contains(&k.selector));
    for selector in &targets {
        ctx.batch.remove(
            TreeName::DkimKeys,
            ctx.store.dkim_key(&info.domain, selector),
        );
    }
    save(ctx, Some(&before), &info)?;
    ctx.detail = Some(format!("deleted retired DKIM keys {}", targets.join(", ")));
    Ok(Response::Domain(info))
}

/// Lets the domain send while unverified, or withdraws that. The reason the role
/// table demands is in the audit entry with the change.
pub(crate) fn override_(ctx: &mut Ctx<'_>, domain: &str, allow: bool) -> Result<Response, Failure> {
    let mut info = load_live(ctx, domain)?;
    let before = info.clone();
    info.send_unverified = allow;
    save(ctx, Some(&before), &info)?;
    ctx.detail = Some(format!(
        "send_unverified {} -> {allow}; verified: {}; may send: {}",
        before.send_unverified,
        if info.verified_at.is_some() {
            "yes"
        } else {
            "no"
        },
        if info.may_send() { "yes" } else { "no" }
    ));
    Ok(Response::Domain(info))
}

/// `domain.bimi` arguments.
pub(crate) struct BimiChange<'a> {
    pub selector: Option<&'a str>,
    pub logo_url: Option<&'a str>,
    pub vmc_url: Option<&'a str>,
    pub clear: bool,
}

pub(crate) fn bimi(
    ctx: &mut Ctx<'_>,
    domain: &str,
    change: BimiChange<'_>,
) -> Result<Response, Failure> {
    let mut info = load_live(ctx, domain)?;
    let before = info.clone();
    if change.clear {
        if change.selector.is_some() || change.logo_url.is_some() || change.vmc_url.is_some() {
            return Err(Failure::invalid(
                "clear takes no selector, logo_url or vmc_url",
            ));
        }
        info.bimi = None;
        ctx.detail = Some(
            if before.bimi.is_some() {
                "BIMI cleared"
            } else {
                "BIMI cleared (was not set)"
            }
            .into(),
        );
    } else {
        let logo_url = change
            .logo_url
            .ok_or_else(|| Failure::invalid("logo_url is required to set BIMI (or clear it)"))?;
        let logo_url = https_url("logo_url", logo_url)?;
        let vmc_url = match change.vmc_url.map(str::trim) {
            None | Some("") => None,
            Some(vmc) => Some(https_url("vmc_url", vmc)?),
        };
        let selector = bimi_selector(change.selector.unwrap_or("default"))?;
        let bimi = BimiInfo {
            selector,
            logo_url,
            vmc_url,
        };
        ctx.detail = Some(
            json!({
                "selector": bimi.selector,
                "logo_url": bimi.logo_url,
                "vmc_url": bimi.vmc_url,
            })
            .to_string(),
        );
        info.bimi = Some(bimi);
    }
    save(ctx, Some(&before), &info)?;
    Ok(Response::Domain(info))
}

/// An `https://` location for a BIMI record: printable ASCII without spaces and
/// without the characters that end a tag or a list (`;` `,`) or need quoting in a
/// zone file (`"` `\`), a host, at most 2048 characters.
fn https_url(field: &str, url: &str) -> Result<String, Failure> {
    let url = url.trim();
    let bad = |why: &str| {
        Failure::invalid(format!(
            "invalid {field} {:?}: {why}",
            validate::shorten(url)
        ))
    };
    if url.chars().count() > MAX_URL_CHARS {
        return Err(bad("longer than 2048 characters"));
    }
    let Some(rest) = url.strip_prefix("https://") else {
        return Err(bad("must start with https://"));
    };
    if !url.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad(
            "only printable ASCII without spaces (percent-encode the rest)",
        ));
    }
    if url.contains([';', ',', '"', '\\']) {
        return Err(bad("cannot contain ';', ',', '\"' or '\\'"));
    }
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() {
        return Err(bad("has no host"));
    }
    Ok(url.to_owned())
}

/// One DNS label, lower-cased: 1 to 63 letters, digits and inner hyphens.
fn bimi_selector(selector: &str) -> Result<String, Failure> {
    let s = selector.trim().to_ascii_lowercase();
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if ok {
        Ok(s)
    } else {
        Err(Failure::invalid(format!(
            "invalid BIMI selector {:?}: one DNS label of 1 to 63 letters, digits and inner '-'",
            validate::shorten(selector)
        )))
    }
}

/// What a domain's records looked like in DNS, looked up before the writer lock
/// ([`look_up`]); empty when the domain was not registered then.
pub(crate) struct Lookups(Option<DomainVerification>);

/// Looks a domain's records up: the slow step of `domain.verify` and of
/// `rotate-dkim --activate`, taken without the writer lock.
pub(crate) fn look_up(service: &Service, domain: &str) -> Lookups {
    let registered = validate::domain(domain).ok().and_then(|name| {
        let store = service.store();
        store
            .get::<DomainInfo>(TreeName::Domains, &store.domain_key(&name))
            .ok()
            .flatten()
    });
    let settings = service.settings();
    Lookups(registered.map(|info| crate::dnscheck::verify(&settings.dns, &info, &settings.sending)))
}

impl Lookups {
    /// The lookups when they were made for `info` as it is now; made again
    /// otherwise, under the lock: only when the domain was added or its keys
    /// rotated between the lookups and the lock.
    fn for_domain(self, ctx: &Ctx<'_>, info: &DomainInfo) -> DomainVerification {
        // Made for this domain with the same keys (a rotation may have come in between).
        let same_keys = |v: &DomainVerification| {
            let mut checked: Vec<String> = v
                .checks
                .iter()
                .filter(|c| c.purpose == RecordPurpose::Dkim)
                .map(|c| c.name.to_ascii_lowercase())
                .collect();
            let mut keys: Vec<String> = info
                .dkim
                .iter()
                .map(|k| dkim::record_name(&k.selector, &info.domain).to_ascii_lowercase())
                .collect();
            checked.sort();
            keys.sort();
            checked == keys
        };
        match self.0 {
            Some(v) if v.domain.eq_ignore_ascii_case(&info.domain) && same_keys(&v) => v,
            _ => crate::dnscheck::verify(&ctx.settings.dns, info, &ctx.settings.sending),
        }
    }
}

/// Loads a domain and names its tenant in the audit entry.
fn load(ctx: &mut Ctx<'_>, domain: &str) -> Result<DomainInfo, Failure> {
    let name = validate::domain(domain)?;
    let info = ctx
        .store
        .get::<DomainInfo>(TreeName::Domains, &ctx.store.domain_key(&name))?
        .ok_or_else(|| Failure::not_found(format!("domain {name} is not registered")))?;
    ctx.tenant = Some(info.tenant.clone());
    Ok(info)
}

/// Loads a domain that may be changed: its tenant is not terminated.
fn load_live(ctx: &mut Ctx<'_>, domain: &str) -> Result<DomainInfo, Failure> {
    let info = load(ctx, domain)?;
    tenants::load_live(ctx, &info.tenant)?;
    Ok(info)
}

/// Stores `after`, and moves the snapshot version when what the MTA sees of the
/// domain changed (`before` is `None` for a new domain).
fn save(ctx: &mut Ctx<'_>, before: Option<&DomainInfo>, after: &DomainInfo) -> Result<(), Failure> {
    let key = ctx.store.domain_key(&after.domain);
    ctx.batch
        .put_tenant(TreeName::Domains, &after.tenant, key, after)?;
    if before.is_none_or(|b| mta_view(b) != mta_view(after)) {
        ctx.snapshot_changed = true;
    }
    Ok(())
}

/// What the snapshot carries of a domain.
fn mta_view(d: &DomainInfo) -> (bool, Vec<&str>, Option<&str>) {
    (
        d.may_send(),
        d.dkim
            .iter()
            .filter(|k| k.state == DkimKeyState::Active)
            .map(|k| k.selector.as_str())
            .collect(),
        d.bimi.as_ref().map(|b| b.selector.as_str()),
    )
}

/// Puts the private keys into the batch and the public halves into `info`.
fn store_keys(ctx: &mut Ctx<'_>, info: &mut DomainInfo, keys: [NewKey; 2]) -> Result<(), Failure> {
    for key in keys {
        ctx.batch.put_tenant(
            TreeName::DkimKeys,
            &info.tenant,
            ctx.store.dkim_key(&info.domain, &key.info.selector),
            &key.record,
        )?;
        info.dkim.push(key.info);
    }
    Ok(())
}

/// Removes every private key stored for `domain`; returns how many.
fn remove_keys(ctx: &mut Ctx<'_>, domain: &str) -> Result<usize, Failure> {
    let keys = ctx
        .store
        .keys_with_prefix(TreeName::DkimKeys, &ctx.store.dkim_prefix(domain))?;
    let count = keys.len();
    for key in keys {
        ctx.batch.remove(TreeName::DkimKeys, key);
    }
    Ok(count)
}

/// `sel-a, sel-b` of the keys whose state passes `which`.
fn selectors_of(info: &DomainInfo, which: impl Fn(DkimKeyState) -> bool) -> String {
    info.dkim
        .iter()
        .filter(|k| which(k.state))
        .map(|k| k.selector.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn status_word(status: CheckStatus) -> &'static str {
    match status {
        CheckStatus::Ok => "ok",
        CheckStatus::Missing => "missing",
        CheckStatus::Wrong => "wrong",
        CheckStatus::Error => "lookup failed",
    }
}

fn state_word(state: DkimKeyState) -> &'static str {
    match state {
        DkimKeyState::Pending => "pending",
        DkimKeyState::Active => "active",
        DkimKeyState::Retired => "retired",
    }
}

#[cfg(test)]
mod tests {
    use std::net::UdpSocket;
    use std::time::Duration;

    use crate::audit::AuditLog;
    use crate::records::DkimKeyRecord;
    use crate::service::{Caller, SendingSettings, Service, ServiceSettings};
    use crate::store::{Batch, TreeName};
    use crate::totp;
    use way2mail_daemon::dns::DnsSettings;
    use way2mail_wire::protocol::{
        AuditEntry, AuditOutcome, DkimAlgorithm, DkimKeyState, DomainInfo, ErrorBody, ErrorCode,
        RecordPurpose, Request, RequestEnvelope, Response, Role, VERSION,
    };
    use way2mail_wire::snapshot::{SendingDomain, Snapshot, TenantLimits};

    const ROOT: Caller = Caller {
        uid: 0,
        gid: 0,
        pid: 100,
    };
    const MTA: Caller = Caller {
        uid: 990,
        gid: 990,
        pid: 200,
    };
    const USER: Caller = Caller {
        uid: 1000,
        gid: 1000,
        pid: 300,
    };
    const PASSWORD: &str = "correct horse battery staple";
    const DOMAIN: &str = "shop.example";

    struct Harness {
        _dir: tempfile::TempDir,
        /// A UDP socket nobody reads: `[dns]` lookups sent here time out.
        _blackhole: UdpSocket,
        service: Service,
        admin: String,
    }

    fn call(
        service: &Service,
        caller: &Caller,
        token: Option<&str>,
        reason: Option<&str>,
        request: Request,
    ) -> Result<Response, ErrorBody> {
        service.handle(
            caller,
            RequestEnvelope {
                v: VERSION,
                id: 1,
                token: token.map(str::to_owned),
                reason: reason.map(str::to_owned),
                request,
            },
        )
    }

    fn login(service: &Service, name: &str, password: &str, secret: &str) -> String {
        let now = super::super::context::now_secs();
        let code = totp::code(secret, now).expect("code");
        match call(
            service,
            &USER,
            None,
            None,
            Request::Login {
                name: name.into(),
                password: password.into(),
                totp: code,
            },
        ) {
            Ok(Response::LoggedIn { token, .. }) => token,
            other => panic!("login {name}: {other:?}"),
        }
    }

    impl Harness {
        /// A service with an admin logged in, tenant `shop` and domain `shop.example`.
        fn new() -> Harness {
            let dir = tempfile::tempdir().expect("tempdir");
            let blackhole = UdpSocket::bind("127.0.0.1:0").expect("bind");
            let settings = ServiceSettings {
                service_uids: vec![MTA.uid],
                session_ttl: Duration::from_secs(3600),
                tenant_defaults: TenantLimits::default(),
                dns: DnsSettings {
                    nameservers: vec![blackhole.local_addr().expect("addr")],
                    timeout: Duration::from_millis(100),
                    attempts: 1,
                },
                sending: SendingSettings {
                    ips: vec!["192.0.2.25".parse().expect("ip")],
                    spf_include: None,
                    dmarc_rua: None,
                },
                notify: crate::notify::NotifySettings::default(),
                ..ServiceSettings::default()
            };
            let service = Service::open(&crate::store::StoreFiles::in_dir(dir.path()), settings)
                .expect("open");
            let secret = match call(
                &service,
                &ROOT,
                None,
                None,
                Request::Bootstrap {
                    name: "admin".into(),
                    password: PASSWORD.into(),
                },
            ) {
                Ok(Response::OperatorCreated { totp_secret, .. }) => totp_secret,
                other => panic!("bootstrap: {other:?}"),
            };
            let admin = login(&service, "admin", PASSWORD, &secret);
            let h = Harness {
                _dir: dir,
                _blackhole: blackhole,
                service,
                admin,
            };
            h.op(Request::TenantAdd {
                tenant: "shop".into(),
                business_name: "Shop Ltd".into(),
                contact: "ops@shop.example".into(),
                billing_ref: None,
                messages_per_hour: None,
                messages_per_day: None,
                recipients_per_message: None,
            })
            .expect("tenant.add");
            h
        }

        fn op(&self, request: Request) -> Result<Response, ErrorBody> {
            call(&self.service, &USER, Some(&self.admin), None, request)
        }

        fn op_with_reason(&self, reason: &str, request: Request) -> Result<Response, ErrorBody> {
            call(
                &self.service,
                &USER,
                Some(&self.admin),
                Some(reason),
                request,
            )
        }

        fn operator(&self, name: &str, role: Role) -> String {
            match self.op(Request::OperatorAdd {
                name: name.into(),
                role,
            }) {
                Ok(Response::OperatorCreated {
                    password,
                    totp_secret,
                    ..
                }) => login(&self.service, name, &password, &totp_secret),
                other => panic!("operator.add: {other:?}"),
            }
        }

        fn add_domain(&self) -> DomainInfo {
            match self.op(Request::DomainAdd {
                tenant: "shop".into(),
                domain: DOMAIN.into(),
            }) {
                Ok(Response::Domains { mut domains }) => domains.remove(0),
                other => panic!("domain.add: {other:?}"),
            }
        }

        fn show(&self) -> DomainInfo {
            domain_of(self.op(Request::DomainShow {
                domain: DOMAIN.into(),
            }))
        }

        fn private_keys(&self) -> Vec<DkimKeyRecord> {
            self.service
                .store()
                .scan_prefix::<DkimKeyRecord>(
                    TreeName::DkimKeys,
                    &self.service.store().dkim_prefix(DOMAIN),
                )
                .expect("scan")
                .into_iter()
                .map(|(_, r)| r)
                .collect()
        }

        fn snapshot(&self) -> Snapshot {
            match call(
                &self.service,
                &MTA,
                None,
                None,
                Request::SnapshotGet {
                    known_version: None,
                },
            ) {
                Ok(Response::Snapshot(s)) => s,
                other => panic!("snapshot.get: {other:?}"),
            }
        }

        fn sending(&self) -> SendingDomain {
            let snapshot = self.snapshot();
            let tenant = snapshot
                .tenants
                .iter()
                .find(|t| t.tenant == "shop")
                .expect("tenant");
            assert_eq!(tenant.sending.len(), tenant.domains.len());
            tenant
                .sending
                .iter()
                .find(|s| s.domain == DOMAIN)
                .expect("domain in snapshot")
                .clone()
        }

        fn audit(&self) -> Vec<AuditEntry> {
            AuditLog::list(self.service.store(), None, 0, usize::MAX).expect("audit")
        }

        /// The newest audit entry of `action`.
        fn last_audit(&self, action: &str) -> AuditEntry {
            self.audit()
                .into_iter()
                .rev()
                .find(|e| e.action == action)
                .expect("an entry")
        }

        fn rotate(&self, activate: bool, force: bool) -> Result<Response, ErrorBody> {
            self.op(Request::DomainRotateDkim {
                domain: DOMAIN.into(),
                activate,
                force,
            })
        }

        fn bimi(
            &self,
            selector: Option<&str>,
            logo: Option<&str>,
            vmc: Option<&str>,
            clear: bool,
        ) -> Result<Response, ErrorBody> {
            self.op(Request::DomainBimi {
                domain: DOMAIN.into(),
                selector: selector.map(str::to_owned),
                logo_url: logo.map(str::to_owned),
                vmc_url: vmc.map(str::to_owned),
                clear,
            })
        }
    }

    fn domain_of(result: Result<Response, ErrorBody>) -> DomainInfo {
        match result {
            Ok(Response::Domain(info)) => info,
            other => panic!("expected a domain: {other:?}"),
        }
    }

    fn code(result: &Result<Response, ErrorBody>) -> Option<ErrorCode> {
        result.as_ref().err().map(|e| e.code)
    }

    fn selectors(info: &DomainInfo, state: DkimKeyState) -> Vec<String> {
        info.dkim
            .iter()
            .filter(|k| k.state == state)
            .map(|k| k.selector.clone())
            .collect()
    }

    #[test]
    fn add_generates_an_active_pair_and_stores_the_private_keys_apart() {
        let h = Harness::new();
        let info = h.add_domain();
        assert_eq!(info.dkim.len(), 2);
        assert!(info.dkim.iter().all(|k| k.state == DkimKeyState::Active));
        let algorithms: Vec<DkimAlgorithm> = info.dkim.iter().map(|k| k.algorithm).collect();
        assert_eq!(
            algorithms,
            [DkimAlgorithm::RsaSha256, DkimAlgorithm::Ed25519Sha256]
        );
        assert!(
            info.dkim[0].selector.starts_with("w2m-") && info.dkim[0].selector.ends_with("-rsa")
        );
        assert!(info.dkim[1].selector.ends_with("-ed"));
        assert_eq!(info.verified_at, None);
        assert!(!info.may_send());

        let stored = h.private_keys();
        assert_eq!(stored.len(), 2);
        for key in &info.dkim {
            let record = stored
                .iter()
                .find(|r| r.selector == key.selector)
                .expect("a private key per selector");
            assert_eq!(record.domain, DOMAIN);
            assert_eq!(record.algorithm, key.algorithm);
            assert!(!record.private_key.is_empty());
        }
        // The domain record holds no private key.
        let raw = serde_json::to_string(&info).expect("json");
        assert!(stored.iter().all(|r| !raw.contains(&r.private_key)));

        assert_eq!(h.show(), info);
        let audit = h.audit();
        let added = audit
            .iter()
            .find(|e| e.action == "domain.add")
            .expect("audited");
        assert_eq!(added.tenant.as_deref(), Some("shop"));
        assert!(
            added
                .detail
                .as_deref()
                .unwrap_or("")
                .contains(&info.dkim[0].selector),
            "{added:?}"
        );

        // Removing the domain removes its keys; adding it again makes new ones.
        h.op(Request::DomainRemove {
            tenant: "shop".into(),
            domain: DOMAIN.into(),
        })
        .expect("remove");
        assert!(h.private_keys().is_empty());
        assert_eq!(
            code(&h.op(Request::DomainShow {
                domain: DOMAIN.into()
            })),
            Some(ErrorCode::NotFound)
        );
        let again = h.add_domain();
        let fresh = h.private_keys();
        assert_eq!(fresh.len(), 2);
        assert_ne!(again.dkim[0].public_key, info.dkim[0].public_key);
        assert!(fresh
            .iter()
            .all(|f| stored.iter().all(|s| s.private_key != f.private_key)));
    }

    #[test]
    fn dns_lists_the_records_to_publish() {
        let h = Harness::new();
        let info = h.add_domain();
        let records = match h.op(Request::DomainDns {
            domain: "Shop.Example.".into(),
        }) {
            Ok(Response::DnsRecords(r)) => r,
            other => panic!("domain.dns: {other:?}"),
        };
        assert_eq!(records.domain, DOMAIN);
        let purposes: Vec<RecordPurpose> = records.records.iter().map(|r| r.purpose).collect();
        assert_eq!(
            purposes,
            [
                RecordPurpose::Spf,
                RecordPurpose::Dkim,
                RecordPurpose::Dkim,
                RecordPurpose::Dmarc
            ]
        );
        assert_eq!(records.records[0].value, "v=spf1 ip4:192.0.2.25 ~all");
        for (record, key) in records.records[1..3].iter().zip(&info.dkim) {
            assert_eq!(record.name, format!("{}._domainkey.{DOMAIN}", key.selector));
            assert!(record.value.ends_with(&key.public_key));
        }
        assert_eq!(records.records[3].name, "_dmarc.shop.example");
        assert_eq!(
            code(&h.op(Request::DomainDns {
                domain: "nope.example".into()
            })),
            Some(ErrorCode::NotFound)
        );
    }

    #[test]
    fn rotation_stages_activates_and_retires() {
        let h = Harness::new();
        let first = h.add_domain();
        let old_active = selectors(&first, DkimKeyState::Active);
        let version = h.snapshot().version;

        // Stage: a pending pair; the MTA's view does not change.
        let staged = domain_of(h.rotate(false, false));
        let pending = selectors(&staged, DkimKeyState::Pending);
        assert_eq!(pending.len(), 2);
        assert_eq!(selectors(&staged, DkimKeyState::Active), old_active);
        assert!(pending.iter().all(|p| !old_active.contains(p)));
        assert_eq!(h.private_keys().len(), 4);
        assert_eq!(h.snapshot().version, version);
        let dns = match h.op(Request::DomainDns {
            domain: DOMAIN.into(),
        }) {
            Ok(Response::DnsRecords(r)) => r,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            dns.records
                .iter()
                .filter(|r| r.note.contains("pending: publish before activating"))
                .count(),
            2
        );

        // One rotation at a time.
        let again = h.rotate(false, false);
        assert_eq!(code(&again), Some(ErrorCode::Conflict));
        assert!(
            again
                .as_ref()
                .err()
                .map(|e| e.message.as_str())
                .unwrap_or("")
                .contains("a rotation is already pending"),
            "{again:?}"
        );

        // Activation checks DNS first; here nothing answers, so it is refused and
        // names the pending selectors.
        let refused = h.rotate(true, false);
        assert_eq!(code(&refused), Some(ErrorCode::Conflict));
        let message = refused.err().map(|e| e.message).unwrap_or_default();
        for selector in &pending {
            assert!(message.contains(selector.as_str()), "{message}");
        }
        assert_eq!(selectors(&h.show(), DkimKeyState::Pending), pending);

        // Forced: pending -> active, active -> retired, and the MTA gets the new keys.
        let rotated = domain_of(h.rotate(true, true));
        assert_eq!(selectors(&rotated, DkimKeyState::Active), pending);
        assert_eq!(selectors(&rotated, DkimKeyState::Retired), old_active);
        let sending = h.sending();
        let signing: Vec<&str> = sending.dkim.iter().map(|k| k.selector.as_str()).collect();
        assert_eq!(
            signing,
            pending.iter().map(String::as_str).collect::<Vec<_>>()
        );
        assert!(h.snapshot().version > version);
        let entry = h.last_audit("domain.rotate_dkim");
        assert!(
            entry.detail.as_deref().unwrap_or("").contains("forced"),
            "{entry:?}"
        );

        // Activating again needs a new pending pair.
        assert_eq!(code(&h.rotate(true, true)), Some(ErrorCode::Conflict));

        // Active keys cannot be deleted, unknown ones are not found.
        let active_one = pending[0].clone();
        let refused = h.op(Request::DomainRetireDkim {
            domain: DOMAIN.into(),
            selector: Some(active_one),
        });
        assert_eq!(code(&refused), Some(ErrorCode::Conflict));
        assert_eq!(
            code(&h.op(Request::DomainRetireDkim {
                domain: DOMAIN.into(),
                selector: Some("w2m-19700101-rsa".into()),
            })),
            Some(ErrorCode::NotFound)
        );
        // One retired key by name, then the rest.
        let one = domain_of(h.op(Request::DomainRetireDkim {
            domain: DOMAIN.into(),
            selector: Some(old_active[0].clone()),
        }));
        assert_eq!(selectors(&one, DkimKeyState::Retired), old_active[1..]);
        assert_eq!(h.private_keys().len(), 3);
        let all = domain_of(h.op(Request::DomainRetireDkim {
            domain: DOMAIN.into(),
            selector: None,
        }));
        assert!(selectors(&all, DkimKeyState::Retired).is_empty());
        assert_eq!(all.dkim.len(), 2);
        let mut left: Vec<String> = h
            .private_keys()
            .into_iter()
            .map(|r| r.selector.clone())
            .collect();
        left.sort();
        let mut expected = pending.clone();
        expected.sort();
        assert_eq!(left, expected);
        assert_eq!(
            code(&h.op(Request::DomainRetireDkim {
                domain: DOMAIN.into(),
                selector: None,
            })),
            Some(ErrorCode::Conflict)
        );
    }

    #[test]
    fn a_domain_from_before_dkim_gets_active_keys_at_once() {
        let h = Harness::new();
        let legacy = DomainInfo {
            domain: DOMAIN.into(),
            tenant: "shop".into(),
            created_at: 1,
            dkim: Vec::new(),
            verified_at: None,
            send_unverified: false,
            bimi: None,
        };
        // Stored as a domain record from before DKIM: without the new fields.
        let mut batch = Batch::new();
        batch
            .put_tenant(
                TreeName::Domains,
                "shop",
                h.service.store().domain_key(DOMAIN),
                &serde_json::json!({"domain": DOMAIN, "tenant": "shop", "created_at": 1}),
            )
            .expect("put");
        h.service.store().commit(batch).expect("commit");
        assert_eq!(h.show(), legacy);
        assert!(h.sending().dkim.is_empty());

        let info = domain_of(h.rotate(false, false));
        assert_eq!(selectors(&info, DkimKeyState::Active).len(), 2);
        assert!(selectors(&info, DkimKeyState::Pending).is_empty());
        assert_eq!(h.sending().dkim.len(), 2);
    }

    #[test]
    fn override_needs_a_reason_and_lets_the_domain_send() {
        let h = Harness::new();
        h.add_domain();
        assert!(!h.sending().may_send);
        let version = h.snapshot().version;

        let refused = h.op(Request::DomainOverride {
            domain: DOMAIN.into(),
            allow: true,
        });
        assert_eq!(code(&refused), Some(ErrorCode::ReasonRequired));
        assert_eq!(
            h.last_audit("domain.override").outcome,
            AuditOutcome::Denied
        );
        assert!(!h.show().send_unverified);

        let info = domain_of(h.op_with_reason(
            "ticket 4711: DNS change pending at the customer's registrar",
            Request::DomainOverride {
                domain: DOMAIN.into(),
                allow: true,
            },
        ));
        assert!(info.send_unverified && info.may_send());
        assert!(h.sending().may_send);
        assert!(h.snapshot().version > version);
        let entry = h.last_audit("domain.override");
        assert_eq!(entry.outcome, AuditOutcome::Ok);
        assert_eq!(entry.tenant.as_deref(), Some("shop"));
        assert_eq!(
            entry.reason.as_deref(),
            Some("ticket 4711: DNS change pending at the customer's registrar")
        );
        assert!(
            entry
                .detail
                .as_deref()
                .unwrap_or("")
                .contains("false -> true"),
            "{entry:?}"
        );

        let info = domain_of(h.op_with_reason(
            "customer published the records",
            Request::DomainOverride {
                domain: DOMAIN.into(),
                allow: false,
            },
        ));
        assert!(!info.may_send());
        assert!(!h.sending().may_send);
    }

    #[test]
    fn verify_with_failed_lookups_keeps_the_state() {
        let h = Harness::new();
        let info = h.add_domain();
        // As if verified before.
        let mut verified = info.clone();
        verified.verified_at = Some(1_700_000_000);
        let mut batch = Batch::new();
        batch
            .put_tenant(
                TreeName::Domains,
                &verified.tenant,
                h.service.store().domain_key(DOMAIN),
                &verified,
            )
            .expect("put");
        h.service.store().commit(batch).expect("commit");

        let verification = match h.op(Request::DomainVerify {
            domain: DOMAIN.into(),
        }) {
            Ok(Response::Verification(v)) => v,
            other => panic!("domain.verify: {other:?}"),
        };
        assert_eq!(verification.domain, DOMAIN);
        assert!(!verification.verified);
        assert!(!verification.checks.is_empty());
        // Nothing answers: no check can be ok, and "not found" cannot be concluded.
        assert!(verification
            .checks
            .iter()
            .all(|c| c.status == way2mail_wire::protocol::CheckStatus::Error));
        assert_eq!(h.show().verified_at, Some(1_700_000_000));
        let entry = h.last_audit("domain.verify");
        assert_eq!(entry.outcome, AuditOutcome::Ok);
        assert!(
            entry
                .detail
                .as_deref()
                .unwrap_or("")
                .starts_with("not verified"),
            "{entry:?}"
        );
    }

    #[test]
    fn bimi_is_validated_set_and_cleared() {
        let h = Harness::new();
        h.add_domain();
        let version = h.snapshot().version;
        let long = format!("https://cdn.example/{}.svg", "a".repeat(2048));
        for (selector, logo, vmc, clear) in [
            (None, None, None, false),
            (None, Some("http://cdn.example/logo.svg"), None, false),
            (None, Some("https://cdn.example/my logo.svg"), None, false),
            (None, Some("https://cdn.example/logo.svg;a=x"), None, false),
            (None, Some("https://cdn.example/a,b.svg"), None, false),
            (None, Some("https:///logo.svg"), None, false),
            (None, Some("https://cdn.example/\u{e9}.svg"), None, false),
            (None, Some(long.as_str()), None, false),
            (
                None,
                Some("https://cdn.example/logo.svg"),
                Some("ftp://cdn.example/vmc.pem"),
                false,
            ),
            (
                Some("bad_selector"),
                Some("https://cdn.example/logo.svg"),
                None,
                false,
            ),
            (
                Some("-x"),
                Some("https://cdn.example/logo.svg"),
                None,
                false,
            ),
            (Some(""), Some("https://cdn.example/logo.svg"), None, false),
            (None, Some("https://cdn.example/logo.svg"), None, true),
        ] {
            let result = h.bimi(selector, logo, vmc, clear);
            assert_eq!(
                code(&result),
                Some(ErrorCode::Invalid),
                "{selector:?} {logo:?} {vmc:?} {clear}: {result:?}"
            );
        }
        assert_eq!(h.show().bimi, None);
        assert_eq!(h.snapshot().version, version);

        let info = domain_of(h.bimi(None, Some("https://cdn.example/logo.svg"), None, false));
        let bimi = info.bimi.expect("set");
        assert_eq!(bimi.selector, "default");
        assert_eq!(bimi.logo_url, "https://cdn.example/logo.svg");
        assert_eq!(bimi.vmc_url, None);
        assert_eq!(h.sending().bimi_selector.as_deref(), Some("default"));
        assert!(h.snapshot().version > version);

        let info = domain_of(h.bimi(
            Some("Brand2"),
            Some("https://cdn.example/logo.svg"),
            Some("https://cdn.example/vmc.pem"),
            false,
        ));
        let bimi = info.bimi.expect("set");
        assert_eq!(bimi.selector, "brand2");
        assert_eq!(bimi.vmc_url.as_deref(), Some("https://cdn.example/vmc.pem"));
        let dns = match h.op(Request::DomainDns {
            domain: DOMAIN.into(),
        }) {
            Ok(Response::DnsRecords(r)) => r,
            other => panic!("{other:?}"),
        };
        let record = dns
            .records
            .iter()
            .find(|r| r.purpose == RecordPurpose::Bimi)
            .expect("bimi record");
        assert_eq!(record.name, "brand2._bimi.shop.example");
        assert_eq!(
            record.value,
            "v=BIMI1; l=https://cdn.example/logo.svg; a=https://cdn.example/vmc.pem"
        );
        assert_eq!(h.sending().bimi_selector.as_deref(), Some("brand2"));

        let info = domain_of(h.bimi(None, None, None, true));
        assert_eq!(info.bimi, None);
        assert_eq!(h.sending().bimi_selector, None);
    }

    #[test]
    fn snapshot_carries_only_active_private_keys() {
        let h = Harness::new();
        let info = h.add_domain();
        h.rotate(false, false).expect("stage");
        let stored = h.private_keys();
        assert_eq!(stored.len(), 4);
        let sending = h.sending();
        assert!(!sending.may_send);
        assert_eq!(sending.bimi_selector, None);
        assert_eq!(sending.dkim.len(), 2);
        for (signing, key) in sending.dkim.iter().zip(&info.dkim) {
            assert_eq!(signing.selector, key.selector);
            assert_eq!(signing.algorithm, key.algorithm);
            let record = stored
                .iter()
                .find(|r| r.selector == key.selector)
                .expect("stored");
            assert_eq!(signing.private_key, record.private_key);
        }
        // The pending keys' private halves are not in the snapshot.
        let snapshot = serde_json::to_string(&h.snapshot()).expect("json");
        for record in &stored {
            let active = info.dkim.iter().any(|k| k.selector == record.selector);
            assert_eq!(
                snapshot.contains(&record.private_key),
                active,
                "{}",
                record.selector
            );
        }
        // A missing private key of an active selector fails the snapshot rather than
        // handing the MTA a partial key set.
        let mut batch = Batch::new();
        batch.remove(
            TreeName::DkimKeys,
            h.service.store().dkim_key(DOMAIN, &info.dkim[0].selector),
        );
        h.service.store().commit(batch).expect("commit");
        let broken = call(
            &h.service,
            &MTA,
            None,
            None,
            Request::SnapshotGet {
                known_version: None,
            },
        );
        assert_eq!(code(&broken), Some(ErrorCode::Internal));
    }

    #[test]
    fn roles_for_the_new_operations() {
        let h = Harness::new();
        h.add_domain();
        let support = h.operator("sam", Role::Support);
        let auditor = h.operator("audrey", Role::Auditor);
        let operator = h.operator("olga", Role::Operator);
        let domain = || DOMAIN.to_string();
        let as_ = |token: &str, reason: Option<&str>, request: Request| {
            call(&h.service, &USER, Some(token), reason, request)
        };

        for request in [
            Request::DomainShow { domain: domain() },
            Request::DomainDns { domain: domain() },
            Request::DomainVerify { domain: domain() },
        ] {
            let op = request.op();
            assert_eq!(
                code(&as_(&support, None, request.clone())),
                Some(ErrorCode::ReasonRequired),
                "support {op} without a reason"
            );
            assert!(
                as_(&support, Some("ticket 9"), request.clone()).is_ok(),
                "support {op}"
            );
            assert!(
                as_(&operator, None, request.clone()).is_ok(),
                "operator {op}"
            );
            assert_eq!(
                code(&as_(&auditor, Some("curious"), request)),
                Some(ErrorCode::Forbidden),
                "auditor {op}"
            );
        }
        for request in [
            Request::DomainRotateDkim {
                domain: domain(),
                activate: false,
                force: false,
            },
            Request::DomainRetireDkim {
                domain: domain(),
                selector: None,
            },
            Request::DomainOverride {
                domain: domain(),
                allow: true,
            },
            Request::DomainBimi {
                domain: domain(),
                selector: None,
                logo_url: Some("https://cdn.example/logo.svg".into()),
                vmc_url: None,
                clear: false,
            },
        ] {
            let op = request.op();
            for token in [&support, &auditor] {
                assert_eq!(
                    code(&as_(token, Some("please"), request.clone())),
                    Some(ErrorCode::Forbidden),
                    "{op}"
                );
            }
        }
        // Nothing changed through the refused requests.
        let info = h.show();
        assert_eq!(info.dkim.len(), 2);
        assert!(!info.send_unverified);
        assert_eq!(info.bimi, None);
        // The operator role may rotate.
        assert!(as_(
            &operator,
            None,
            Request::DomainRotateDkim {
                domain: domain(),
                activate: false,
                force: false,
            }
        )
        .is_ok());
        // Tokenless peers are not operators.
        assert_eq!(
            code(&call(
                &h.service,
                &MTA,
                None,
                None,
                Request::DomainShow { domain: domain() }
            )),
            Some(ErrorCode::Unauthenticated)
        );
    }

    #[test]
    fn changes_to_a_terminated_tenants_domain_are_refused() {
        let h = Harness::new();
        h.add_domain();
        h.op(Request::TenantTerminate {
            tenant: "shop".into(),
        })
        .expect("terminate");
        assert_eq!(code(&h.rotate(false, false)), Some(ErrorCode::Conflict));
        assert_eq!(
            code(&h.bimi(None, Some("https://cdn.example/logo.svg"), None, false)),
            Some(ErrorCode::Conflict)
        );
        // Reading still works.
        assert_eq!(h.show().dkim.len(), 2);
    }

    #[test]
    fn no_audit_entry_holds_key_material() {
        let h = Harness::new();
        // Every private key the store held at some point.
        let mut private = std::collections::BTreeSet::new();
        let mut note = |h: &Harness| {
            private.extend(h.private_keys().into_iter().map(|r| r.private_key.clone()));
        };
        h.add_domain();
        note(&h);
        h.rotate(false, false).expect("stage");
        note(&h);
        h.rotate(true, true).expect("activate");
        h.op(Request::DomainDns {
            domain: DOMAIN.into(),
        })
        .expect("dns");
        let _ = h.op(Request::DomainVerify {
            domain: DOMAIN.into(),
        });
        h.op(Request::DomainRetireDkim {
            domain: DOMAIN.into(),
            selector: None,
        })
        .expect("retire");
        h.rotate(false, false).expect("stage again");
        note(&h);
        let _ = h.rotate(true, false);
        h.op(Request::DomainRemove {
            tenant: "shop".into(),
            domain: DOMAIN.into(),
        })
        .expect("remove");
        assert_eq!(private.len(), 6);
        let entries = h.audit();
        assert!(entries.iter().any(|e| e.action == "domain.rotate_dkim"));
        for key in &private {
            // Any 24-character window of the base64 body would be a leak.
            let body = &key[40..];
            for entry in &entries {
                let text = serde_json::to_string(entry).expect("json");
                for start in (0..body.len().saturating_sub(24)).step_by(12) {
                    assert!(
                        !text.contains(&body[start..start + 24]),
                        "audit entry {} holds private key material",
                        entry.seq
                    );
                }
            }
        }
    }
}
