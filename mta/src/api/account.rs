//! The endpoints answered by control, on the key's behalf: the tenant's
//! suppression list and domains, and the audit entry every read of the tenant's
//! data leaves. One `api.call` per request over control's Unix socket, on tokio's
//! blocking pool; control checks the key (by its credential id) and scopes the
//! operation to its tenant, and records it in the audit log as the key's
//! (`api:<prefix>`).

use serde::{Deserialize, Serialize};
use way2mail_wire::client::{Auth, ClientError, ControlClient};
use way2mail_wire::protocol::{
    ApiCall, DkimKeyState, DomainInfo, DomainRecords, ErrorCode, Request, Response,
    SuppressionEntry, WebhookInfo,
};

use super::problem::Problem;
use crate::config::Settings;

/// Asks control on behalf of the key `credential_id`; a refusal becomes the
/// matching problem.
pub async fn ask(
    settings: &Settings,
    credential_id: &str,
    call: ApiCall,
) -> Result<Response, Problem> {
    let request = Request::ApiCall {
        credential_id: credential_id.to_string(),
        call,
    };
    send(settings, request).await
}

/// One request to control, as the MTA's service user.
pub async fn send(settings: &Settings, request: Request) -> Result<Response, Problem> {
    let socket = settings.raw.control.socket.clone();
    let timeout = settings.raw.control.timeout;
    let answer = tokio::task::spawn_blocking(move || {
        ControlClient::connect(&socket, timeout)?.call(request, &Auth::default())
    })
    .await;
    match answer {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(ClientError::Remote(e))) => Err(match e.code {
            ErrorCode::NotFound => Problem::new(
                hyper::StatusCode::NOT_FOUND,
                "not-found",
                "No such resource",
                e.message,
            ),
            ErrorCode::AlreadyExists => Problem::new(
                hyper::StatusCode::CONFLICT,
                "exists",
                "It is there already",
                e.message,
            ),
            ErrorCode::Invalid | ErrorCode::BadRequest => Problem::invalid("body", e.message),
            ErrorCode::Unauthenticated => Problem::unauthorized("the API key was revoked"),
            ErrorCode::Forbidden | ErrorCode::Conflict => Problem::new(
                hyper::StatusCode::FORBIDDEN,
                "account-disabled",
                "The account may not do this",
                e.message,
            ),
            _ => Problem::unavailable(format!("account data: {}", e.message)),
        }),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "an API request could not reach control");
            Err(Problem::unavailable(
                "account data cannot be reached right now",
            ))
        }
        Err(_) => Err(Problem::unavailable(
            "account data cannot be reached right now",
        )),
    }
}

/// Records a read of the tenant's data the MTA answers itself.
pub async fn record_access(
    settings: &Settings,
    credential_id: &str,
    what: String,
) -> Result<(), Problem> {
    ask(settings, credential_id, ApiCall::Access { what })
        .await
        .map(|_| ())
}

/// The body of `POST /v1/suppressions`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuppressionRequest {
    pub address: String,
    #[serde(default)]
    pub note: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct SuppressionView {
    pub address: String,
    pub note: Option<String>,
    pub added_at: String,
    /// Who added it: an operator, or an API key (`api:<prefix>`).
    pub added_by: String,
}

impl From<SuppressionEntry> for SuppressionView {
    fn from(e: SuppressionEntry) -> SuppressionView {
        SuppressionView {
            address: e.address,
            note: e.note,
            added_at: way2mail_smtp::date::rfc3339(e.added_at),
            added_by: e.added_by,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Suppressions {
    pub suppressions: Vec<SuppressionView>,
}

pub fn suppressions(response: Response) -> Result<Vec<SuppressionView>, Problem> {
    match response {
        Response::Suppressions { entries } => Ok(entries.into_iter().map(Into::into).collect()),
        other => Err(unexpected(&other)),
    }
}

/// The body of `POST /v1/webhooks`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookRequest {
    pub url: String,
    pub events: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct WebhookView {
    pub id: String,
    pub url: String,
    pub events: Vec<String>,
    pub created_at: String,
    pub created_by: String,
    /// `false` once deliveries failed for the whole retry period (or an operator
    /// disabled it).
    pub enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<String>,
    /// Only in the answer to the request that made the endpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

impl From<WebhookInfo> for WebhookView {
    fn from(w: WebhookInfo) -> WebhookView {
        WebhookView {
            enabled: w.disabled_at.is_none(),
            disabled_at: w.disabled_at.map(way2mail_smtp::date::rfc3339),
            disabled_reason: w.disabled_reason,
            created_at: way2mail_smtp::date::rfc3339(w.created_at),
            created_by: w.created_by,
            secret: w.secret,
            id: w.id,
            url: w.url,
            events: w.events,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Webhooks {
    pub webhooks: Vec<WebhookView>,
}

pub fn webhooks(response: Response) -> Result<Vec<WebhookView>, Problem> {
    match response {
        Response::Webhooks { webhooks } => Ok(webhooks.into_iter().map(Into::into).collect()),
        other => Err(unexpected(&other)),
    }
}

#[derive(Debug, Serialize)]
pub struct DomainView {
    pub domain: String,
    /// May mail from it be sent now (verified, or allowed by an operator)?
    pub may_send: bool,
    pub verified_at: Option<String>,
    /// The active DKIM selectors.
    pub dkim_selectors: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Domains {
    pub domains: Vec<DomainView>,
}

pub fn domains(response: Response) -> Result<Domains, Problem> {
    match response {
        Response::Domains { domains } => Ok(Domains {
            domains: domains.into_iter().map(domain_view).collect(),
        }),
        other => Err(unexpected(&other)),
    }
}

fn domain_view(d: DomainInfo) -> DomainView {
    DomainView {
        may_send: d.may_send(),
        verified_at: d.verified_at.map(way2mail_smtp::date::rfc3339),
        dkim_selectors: d
            .dkim
            .iter()
            .filter(|k| k.state == DkimKeyState::Active)
            .map(|k| k.selector.clone())
            .collect(),
        domain: d.domain,
    }
}

pub fn records(response: Response) -> Result<DomainRecords, Problem> {
    match response {
        Response::DnsRecords(records) => Ok(records),
        other => Err(unexpected(&other)),
    }
}

fn unexpected(r: &Response) -> Problem {
    tracing::error!(answer = ?std::mem::discriminant(r), "control answered an API call unexpectedly");
    Problem::unavailable("account data answered unexpectedly")
}
