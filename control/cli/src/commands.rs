//! Each CLI command as the request(s) it sends and what it prints, through the
//! [`Session`] (`session.rs`). The data-protection commands are `data.rs`.

use std::process::ExitCode;

use way2mail_daemon::time::now_secs;
use way2mail_wire::client::Auth;
use way2mail_wire::protocol::{CredentialKind, Request, Response};

use super::session::Session;
use super::{
    prompt, render, token, AuditCommand, Cli, Command, CredentialCommand, DomainCommand, Failure,
    IncidentCommand, LimitArgs, OperatorCommand, TenantCommand,
};

pub fn run(cli: Cli) -> Result<ExitCode, Failure> {
    let mut token = cli.token.clone().or_else(|| {
        std::env::var("WAY2MAIL_TOKEN")
            .ok()
            .filter(|t| !t.is_empty())
    });
    let mut token_file = None;
    // login and bootstrap identify themselves; a stale token must not get in the way.
    let needs_token = !matches!(
        cli.command,
        Command::Login { .. } | Command::Bootstrap { .. }
    );
    if token.is_none() && needs_token {
        if let Ok(path) = token::path() {
            token = token::load(&path).map_err(|e| Failure::Failed(format!("{e:#}")))?;
            token_file = token.as_ref().map(|_| path);
        }
    }
    let auth = Auth {
        token: token.filter(|_| needs_token),
        reason: cli.reason,
    };
    let mut session = Session::new(cli.socket, auth, token_file, cli.json);
    match cli.command {
        Command::Bootstrap {
            name,
            password_stdin,
        } => bootstrap(&mut session, name, password_stdin),
        Command::Login {
            name,
            password_stdin,
            totp,
        } => login(&mut session, name, password_stdin, totp),
        Command::Logout => logout(&mut session),
        Command::Whoami => {
            let response = session.call(Request::Hello)?;
            session.show(&response, || render::human(&response))
        }
        Command::Tenant { command } => tenant(&mut session, command),
        Command::Domain { command } => return domain(&mut session, command),
        Command::Credential { command } => credential(&mut session, command),
        Command::Operator { command } => operator(&mut session, command),
        Command::Incident { command } => return incident(&mut session, command),
        Command::Audit { command } => return audit(&mut session, command),
        Command::Retention { command } => super::data::retention(&mut session, command),
        Command::Reputation { command } => super::reputation::run(&mut session, command),
        Command::Suppression { command } => super::data::suppression(&mut session, command),
        Command::Webhook { command } => super::webhook::run(&mut session, command),
        Command::Queue { command } => super::queue::run(&mut session, command),
        Command::Backup { command } => return super::data::backup(&mut session, command),
        Command::Receipt { command } => return super::data::receipt(&mut session, command),
    }?;
    Ok(ExitCode::SUCCESS)
}

fn password(password_stdin: bool, confirm: bool) -> Result<zeroize::Zeroizing<String>, Failure> {
    let io = |e: std::io::Error| Failure::Failed(format!("reading the password: {e}"));
    if password_stdin {
        return prompt::stdin_line().map_err(io);
    }
    let mut tty = prompt::tty().ok_or_else(|| {
        Failure::Usage("no terminal to ask for the password; use --password-stdin".into())
    })?;
    let first = prompt::secret(&mut tty, "Password: ").map_err(io)?;
    if first.is_empty() {
        return Err(Failure::Usage("empty password".into()));
    }
    if confirm {
        let again = prompt::secret(&mut tty, "Password again: ").map_err(io)?;
        if *again != *first {
            return Err(Failure::Usage("the two passwords differ".into()));
        }
    }
    Ok(first)
}

fn bootstrap(session: &mut Session, name: String, password_stdin: bool) -> Result<(), Failure> {
    let password = password(password_stdin, true)?;
    let response = session.call(Request::Bootstrap {
        name,
        password: password.to_string(),
    })?;
    session.show(&response, || render::operator_created(&response, false))
}

fn login(
    session: &mut Session,
    name: String,
    password_stdin: bool,
    totp: Option<String>,
) -> Result<(), Failure> {
    let password = password(password_stdin, false)?;
    let totp = match totp {
        Some(code) => code,
        None => {
            let mut tty = prompt::tty().ok_or_else(|| {
                Failure::Usage("no terminal to ask for the TOTP code; use --totp CODE".into())
            })?;
            prompt::ask(&mut tty, "TOTP code: ")
                .map_err(|e| Failure::Failed(format!("reading the TOTP code: {e}")))?
        }
    };
    let path = token::path().map_err(|e| Failure::Failed(format!("{e:#}")))?;
    let response = session.call(Request::Login {
        name: name.clone(),
        password: password.to_string(),
        totp: totp.trim().to_string(),
    })?;
    let Response::LoggedIn {
        token: new_token,
        role,
        expires_at,
    } = &response
    else {
        return Err(unexpected(&response));
    };
    token::save(&path, new_token).map_err(|e| Failure::Failed(format!("{e:#}")))?;
    session.show(&response, || {
        format!(
            "logged in as {} ({}) until {}\ntoken saved in {}\n",
            super::table::clean(&name),
            role.as_str(),
            super::table::rfc3339(*expires_at),
            path.display()
        )
    })
}

fn logout(session: &mut Session) -> Result<(), Failure> {
    if session.auth.token.is_none() {
        return Err(Failure::Failed("not logged in (no token)".into()));
    }
    let answer = session.call(Request::Logout);
    // The local copy goes even when the daemon no longer knows the session.
    if let Some(path) = &session.token_file {
        token::remove(path).map_err(|e| Failure::Failed(format!("{e:#}")))?;
    }
    match answer {
        Ok(response) => session.show(&response, || "logged out\n".into()),
        Err(Failure::Failed(message)) if session.token_file.is_some() => {
            eprintln!("note: {message}");
            println!("token file removed");
            Ok(())
        }
        Err(other) => Err(other),
    }
}

fn tenant(session: &mut Session, command: TenantCommand) -> Result<(), Failure> {
    match command {
        TenantCommand::Add {
            tenant,
            business_name,
            contact,
            billing_ref,
            limits,
        } => tenant_add(session, tenant, business_name, contact, billing_ref, limits),
        TenantCommand::List => {
            let response = session.call(Request::TenantList)?;
            session.show(&response, || render::human(&response))
        }
        TenantCommand::Show { tenant } => {
            let response = session.call(Request::TenantShow { tenant })?;
            session.show(&response, || render::human(&response))
        }
        TenantCommand::Update {
            tenant,
            business_name,
            contact,
            billing_ref,
            limits,
            list_unsubscribe,
            auto_suppress,
        } => {
            if business_name.is_none()
                && contact.is_none()
                && billing_ref.is_none()
                && limits.messages_per_hour.is_none()
                && limits.messages_per_day.is_none()
                && limits.recipients_per_message.is_none()
                && list_unsubscribe.is_none()
                && auto_suppress.is_empty()
            {
                return Err(Failure::Usage(
                    "nothing to update: give at least one of --business-name, --contact, \
                     --billing-ref, --messages-per-hour, --messages-per-day, --recipients-per-message, \
                     --list-unsubscribe, --auto-suppress"
                        .into(),
                ));
            }
            let done = format!("tenant {} updated", super::table::clean(&tenant));
            let request = Request::TenantUpdate {
                tenant,
                business_name,
                contact,
                billing_ref,
                messages_per_hour: limits.messages_per_hour,
                messages_per_day: limits.messages_per_day,
                recipients_per_message: limits.recipients_per_message,
                list_unsubscribe,
                // The last setting of a rule given twice wins.
                auto_suppress: auto_suppress.into_iter().collect(),
            };
            session.simple(request, done)
        }
        TenantCommand::Suspend { tenant } => {
            let done = format!("tenant {} suspended", super::table::clean(&tenant));
            session.simple(Request::TenantSuspend { tenant }, done)
        }
        TenantCommand::Resume { tenant } => {
            let done = format!("tenant {} resumed", super::table::clean(&tenant));
            session.simple(Request::TenantResume { tenant }, done)
        }
        TenantCommand::ResumeSending { tenant } => {
            // Lifting a pause is a judgement on the tenant's mail: always explained.
            if session
                .auth
                .reason
                .as_deref()
                .is_none_or(|r| r.trim().is_empty())
            {
                return Err(Failure::Usage(
                    "tenant resume-sending needs --reason TEXT (it is kept in the audit log)"
                        .into(),
                ));
            }
            let response = session.call(Request::TenantResumeSending {
                tenant: tenant.clone(),
            })?;
            session.show(&response, || {
                format!(
                    "sending of tenant {} resumed: its held mail is delivered again\n",
                    super::table::clean(&tenant)
                )
            })
        }
        TenantCommand::Deliverability { tenant, since } => {
            let since = super::deliverability::since(since.as_deref(), now_secs())?;
            let response = session.call(Request::TenantDeliverability { tenant, since })?;
            session.show(&response, || render::human(&response))
        }
        TenantCommand::Terminate { tenant, yes } => {
            if !yes {
                confirm_terminate(&tenant)?;
            }
            let done = format!("tenant {} terminated", super::table::clean(&tenant));
            session.simple(Request::TenantTerminate { tenant }, done)
        }
        TenantCommand::Data(command) => super::data::tenant(session, command),
    }
}

fn tenant_add(
    session: &mut Session,
    tenant: String,
    business_name: String,
    contact: String,
    billing_ref: Option<String>,
    limits: LimitArgs,
) -> Result<(), Failure> {
    let LimitArgs {
        messages_per_hour,
        messages_per_day,
        recipients_per_message,
    } = limits;
    session.call(Request::TenantAdd {
        tenant: tenant.clone(),
        business_name,
        contact,
        billing_ref,
        messages_per_hour,
        messages_per_day,
        recipients_per_message,
    })?;
    let response = session.call(Request::TenantShow { tenant })?;
    session.show(&response, || render::human(&response))
}

fn confirm_terminate(tenant: &str) -> Result<(), Failure> {
    let mut tty = prompt::tty().ok_or_else(|| {
        Failure::Usage("terminating a tenant needs confirmation: no terminal, so give --yes".into())
    })?;
    let answer = prompt::ask(
        &mut tty,
        &format!(
            "Terminate tenant {0}? Its mail will be refused for good. Type {0} to confirm: ",
            super::table::clean(tenant)
        ),
    )
    .map_err(|e| Failure::Failed(format!("reading the confirmation: {e}")))?;
    if answer.trim() == tenant {
        Ok(())
    } else {
        Err(Failure::Failed("not confirmed; nothing changed".into()))
    }
}

fn domain(session: &mut Session, command: DomainCommand) -> Result<ExitCode, Failure> {
    let clean = super::table::clean;
    match command {
        DomainCommand::Add { tenant, domain } => {
            let response = session.call(Request::DomainAdd {
                tenant: tenant.clone(),
                domain,
            })?;
            let Response::Domains { domains } = &response else {
                return Err(unexpected(&response));
            };
            let Some(info) = domains.first() else {
                return Err(unexpected(&response));
            };
            session.show(&response, || {
                format!(
                    "domain {} added to tenant {}\n{}\n{}",
                    clean(&info.domain),
                    clean(&tenant),
                    render::dkim_selectors(info),
                    render::publish_hint(&info.domain)
                )
            })?;
        }
        DomainCommand::List { tenant } => {
            let response = session.call(Request::DomainList { tenant })?;
            session.show(&response, || render::human(&response))?;
        }
        DomainCommand::Remove { tenant, domain } => {
            let done = format!(
                "domain {} removed from tenant {} (and its DKIM keys; remove its DNS records too)",
                clean(&domain),
                clean(&tenant)
            );
            session.simple(Request::DomainRemove { tenant, domain }, done)?;
        }
        DomainCommand::Show { domain } => {
            let response = session.call(Request::DomainShow { domain })?;
            session.show(&response, || render::human(&response))?;
        }
        DomainCommand::Dns { domain } => {
            let response = session.call(Request::DomainDns { domain })?;
            session.show(&response, || render::human(&response))?;
        }
        DomainCommand::Dmarc { domain, since } => {
            let since = super::deliverability::since(since.as_deref(), now_secs())?;
            let response = session.call(Request::DomainDmarc { domain, since })?;
            session.show(&response, || render::human(&response))?;
        }
        DomainCommand::Verify { domain } => {
            let response = session.call(Request::DomainVerify { domain })?;
            let Response::Verification(verification) = &response else {
                return Err(unexpected(&response));
            };
            session.show(&response, || render::human(&response))?;
            if !verification.verified {
                return Ok(ExitCode::FAILURE);
            }
        }
        DomainCommand::RotateDkim {
            domain,
            activate,
            force,
        } => {
            let response = session.call(Request::DomainRotateDkim {
                domain,
                activate,
                force,
            })?;
            let Response::Domain(info) = &response else {
                return Err(unexpected(&response));
            };
            session.show(&response, || {
                format!(
                    "{}\n{}",
                    render::rotation_done(info, activate),
                    render::human(&response)
                )
            })?;
        }
        DomainCommand::RetireDkim { domain, selector } => {
            let done = match &selector {
                Some(s) => format!(
                    "DKIM key {} of {} deleted: remove {}._domainkey.{} from DNS",
                    clean(s),
                    clean(&domain),
                    clean(s),
                    clean(&domain.to_ascii_lowercase())
                ),
                None => format!(
                    "retired DKIM keys of {} deleted: remove their _domainkey records from DNS",
                    clean(&domain)
                ),
            };
            session.simple(Request::DomainRetireDkim { domain, selector }, done)?;
        }
        DomainCommand::Override {
            domain,
            allow,
            deny: _,
        } => {
            // The daemon requires it too; asking here spares a refused, audited request.
            if session
                .auth
                .reason
                .as_deref()
                .is_none_or(|r| r.trim().is_empty())
            {
                return Err(Failure::Usage(
                    "domain override needs --reason TEXT (it is kept in the audit log)".into(),
                ));
            }
            // clap's group makes exactly one of --allow and --deny present.
            let done = if allow {
                format!("{} may send while unverified (override)", clean(&domain))
            } else {
                format!(
                    "override withdrawn: {} sends only once verified",
                    clean(&domain)
                )
            };
            session.simple(Request::DomainOverride { domain, allow }, done)?;
        }
        DomainCommand::Bimi {
            domain,
            logo,
            vmc,
            selector,
            clear,
        } => {
            let done = if clear {
                format!(
                    "BIMI cleared for {}: remove its _bimi record from DNS",
                    clean(&domain)
                )
            } else {
                format!(
                    "BIMI set for {}: publish its record (way2mail domain dns {})",
                    clean(&domain),
                    clean(&domain)
                )
            };
            let request = Request::DomainBimi {
                domain,
                selector,
                logo_url: logo,
                vmc_url: vmc,
                clear,
            };
            session.simple(request, done)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn credential(session: &mut Session, command: CredentialCommand) -> Result<(), Failure> {
    match command {
        CredentialCommand::Add {
            tenant,
            smtp,
            api: _,
            description,
        } => {
            // clap's group makes exactly one of --smtp and --api present.
            let kind = if smtp.is_some() {
                CredentialKind::Smtp
            } else {
                CredentialKind::Api
            };
            let response = session.call(Request::CredentialAdd {
                tenant,
                kind,
                username: smtp,
                description,
            })?;
            session.show(&response, || render::human(&response))
        }
        CredentialCommand::List { tenant } => {
            let response = session.call(Request::CredentialList { tenant })?;
            session.show(&response, || render::human(&response))
        }
        CredentialCommand::Revoke { id } => {
            let done = format!("credential {} revoked", super::table::clean(&id));
            session.simple(Request::CredentialRevoke { id }, done)
        }
    }
}

fn operator(session: &mut Session, command: OperatorCommand) -> Result<(), Failure> {
    match command {
        OperatorCommand::Add { name, role } => {
            let response = session.call(Request::OperatorAdd {
                name,
                role: role.into(),
            })?;
            session.show(&response, || render::operator_created(&response, true))
        }
        OperatorCommand::List => {
            let response = session.call(Request::OperatorList)?;
            session.show(&response, || render::human(&response))
        }
        OperatorCommand::Role { name, role } => {
            let role: way2mail_wire::protocol::Role = role.into();
            let done = format!(
                "operator {} now has role {}",
                super::table::clean(&name),
                role.as_str()
            );
            session.simple(Request::OperatorRole { name, role }, done)
        }
        OperatorCommand::Remove { name } => {
            let done = format!("operator {} removed", super::table::clean(&name));
            session.simple(Request::OperatorRemove { name }, done)
        }
    }
}

fn audit(session: &mut Session, command: AuditCommand) -> Result<ExitCode, Failure> {
    match command {
        AuditCommand::List {
            tenant,
            since,
            limit,
        } => {
            let response = session.call(Request::AuditList {
                tenant,
                since_seq: since,
                limit,
            })?;
            session.show(&response, || render::human(&response))?;
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Verify => {
            let response = session.call(Request::AuditVerify)?;
            let Response::AuditVerified(report) = &response else {
                return Err(unexpected(&response));
            };
            session.show(&response, || render::human(&response))?;
            if report.problems.is_empty() {
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!(
                    "error: the audit chain is broken ({} problems)",
                    report.problems.len()
                );
                Ok(ExitCode::FAILURE)
            }
        }
    }
}

fn incident(session: &mut Session, command: IncidentCommand) -> Result<ExitCode, Failure> {
    let clean = super::table::clean;
    match command {
        IncidentCommand::Open {
            title,
            nature,
            data_affected,
            consequences,
            measures,
            detected_at,
        } => {
            let detected_at = match detected_at {
                Some(text) => Some(parse_rfc3339(&text).map_err(|e| {
                    Failure::Usage(format!("--detected-at {:?}: {e}", clean(&text)))
                })?),
                None => None,
            };
            let response = session.call(Request::IncidentOpen {
                title,
                nature,
                data_affected,
                consequences,
                measures,
                detected_at,
            })?;
            let Response::Incident(info) = &response else {
                return Err(unexpected(&response));
            };
            session.show(&response, || {
                format!(
                    "incident {0} opened

next: way2mail incident add-tenant {0} TENANT, then \
                     way2mail incident notify {0}
",
                    clean(&info.id)
                )
            })?;
        }
        IncidentCommand::AddTenant { id, tenant } => {
            let done = format!("tenant {} added to incident {}", clean(&tenant), clean(&id));
            session.simple(Request::IncidentAddTenant { id, tenant }, done)?;
        }
        IncidentCommand::Update {
            id,
            title,
            nature,
            data_affected,
            consequences,
            measures,
        } => {
            if title.is_none()
                && nature.is_none()
                && data_affected.is_none()
                && consequences.is_none()
                && measures.is_none()
            {
                return Err(Failure::Usage(
                    "nothing to update: give at least one of --title, --nature, \
                     --data-affected, --consequences, --measures"
                        .into(),
                ));
            }
            let done = format!("incident {} updated", clean(&id));
            let request = Request::IncidentUpdate {
                id,
                title,
                nature,
                data_affected,
                consequences,
                measures,
            };
            session.simple(request, done)?;
        }
        IncidentCommand::Notify { id, again } => {
            let response = session.call(Request::IncidentNotify { id, again })?;
            let Response::IncidentNotified { sent, .. } = &response else {
                return Err(unexpected(&response));
            };
            session.show(&response, || render::human(&response))?;
            let failed = sent
                .iter()
                .filter(|n| n.outcome == way2mail_wire::protocol::NotificationOutcome::Failed)
                .count();
            if failed > 0 {
                eprintln!(
                    "error: {failed} of {} notifications were not handed to the MTA; \
                     fix the cause and run `incident notify` again",
                    sent.len()
                );
                return Ok(ExitCode::FAILURE);
            }
        }
        IncidentCommand::Close { id, resolution } => {
            let done = format!("incident {} closed", clean(&id));
            session.simple(Request::IncidentClose { id, resolution }, done)?;
        }
        IncidentCommand::List => {
            let response = session.call(Request::IncidentList)?;
            session.show(&response, || render::human(&response))?;
        }
        IncidentCommand::Show { id } => {
            let response = session.call(Request::IncidentShow { id })?;
            session.show(&response, || render::human(&response))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `2026-03-01T14:30:00Z`, `2026-03-01T16:30:00+02:00` or `2026-03-01 14:30:00.5Z`
/// (fractions dropped) as Unix seconds.
pub fn parse_rfc3339(text: &str) -> Result<u64, String> {
    let bad = || "not an RFC 3339 date-time such as 2026-03-01T14:30:00Z".to_string();
    let t = text.trim().as_bytes();
    let num = |from: usize, len: usize| -> Result<i64, String> {
        let part = t.get(from..from + len).ok_or_else(bad)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return Err(bad());
        }
        std::str::from_utf8(part)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(bad)
    };
    let sep = |at: usize, allowed: &[u8]| -> Result<(), String> {
        match t.get(at) {
            Some(c) if allowed.contains(c) => Ok(()),
            _ => Err(bad()),
        }
    };
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    sep(4, b"-")?;
    sep(7, b"-")?;
    sep(10, b"Tt ")?;
    let (hour, minute, second) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    sep(13, b":")?;
    sep(16, b":")?;
    let mut at = 19;
    if t.get(at) == Some(&b'.') {
        at += 1;
        let start = at;
        while t.get(at).is_some_and(u8::is_ascii_digit) {
            at += 1;
        }
        if at == start {
            return Err(bad());
        }
    }
    let offset = match t.get(at) {
        Some(b'Z' | b'z') if t.len() == at + 1 => 0,
        Some(sign @ (b'+' | b'-')) if t.len() == at + 6 => {
            sep(at + 3, b":")?;
            let (h, m) = (num(at + 1, 2)?, num(at + 4, 2)?);
            if h > 23 || m > 59 {
                return Err(bad());
            }
            let minutes = h * 60 + m;
            if *sign == b'+' {
                minutes
            } else {
                -minutes
            }
        }
        _ => return Err(bad()),
    };
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days_in_month = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month[(month - 1) as usize]
        || hour > 23
        || minute > 59
        || second > 60
    {
        return Err(bad());
    }
    // Days from civil (H. Hinnant): 1970-01-01 is day 0.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second.min(59) - offset * 60;
    u64::try_from(secs).map_err(|_| "before 1970".to_string())
}

fn unexpected(response: &Response) -> Failure {
    let kind = serde_json::to_value(response)
        .ok()
        .and_then(|v| v.get("kind").and_then(|k| k.as_str().map(str::to_string)))
        .unwrap_or_default();
    Failure::Failed(format!("unexpected answer from the daemon: {kind}"))
}

#[cfg(test)]
mod tests {
    use super::parse_rfc3339;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_rfc3339("2026-01-01T00:00:00Z"), Ok(1_767_225_600));
        assert_eq!(
            parse_rfc3339("2026-01-01T02:00:00+02:00"),
            Ok(1_767_225_600)
        );
        assert_eq!(
            parse_rfc3339("2025-12-31t19:00:00.123-05:00"),
            Ok(1_767_225_600)
        );
        assert_eq!(parse_rfc3339("2024-02-29 12:00:00Z"), Ok(1_709_208_000));
        for bad in [
            "",
            "2026-01-01",
            "2026-01-01T00:00:00",
            "2025-02-29T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-01-01T24:00:00Z",
            "2026-01-01T00:00:00+0200",
            "1969-12-31T23:59:59Z",
            "2026-01-01T00:00:00Zjunk",
        ] {
            assert!(parse_rfc3339(bad).is_err(), "{bad}");
        }
    }
}
