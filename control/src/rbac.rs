//! Who may do what: the role × operation table, as data. Every request passes
//! [`decide`] before it touches the store; the answer is allow, allow only with a
//! reason, or refuse with the error code the caller gets (and the audit log keeps).
//!
//! Subjects are operators (by role, after a session token) and token-less peers,
//! known only by their Unix credentials: root may bootstrap the first admin, the
//! MTA's user (a configured service uid) may read the policy snapshot, anyone may
//! say hello and log in.

use way2mail_wire::protocol::{ErrorCode, Request, Role};

/// An operation without its arguments, one per [`Request`] variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Hello,
    Bootstrap,
    Login,
    Logout,
    TenantAdd,
    TenantList,
    TenantShow,
    TenantUpdate,
    TenantSuspend,
    TenantResume,
    TenantResumeSending,
    TenantDeliverability,
    TenantTerminate,
    DomainAdd,
    DomainList,
    DomainRemove,
    DomainShow,
    DomainDns,
    DomainDmarc,
    DomainVerify,
    DomainRotateDkim,
    DomainRetireDkim,
    DomainOverride,
    DomainBimi,
    CredentialAdd,
    CredentialList,
    CredentialRevoke,
    OperatorAdd,
    OperatorList,
    OperatorRole,
    OperatorRemove,
    IncidentOpen,
    IncidentAddTenant,
    IncidentUpdate,
    IncidentNotify,
    IncidentClose,
    IncidentList,
    IncidentShow,
    AuditList,
    AuditVerify,
    SnapshotGet,
    RetentionReport,
    ApiCall,
    TenantRetention,
    TenantHold,
    TenantErase,
    TenantReceipt,
    TenantReport,
    TenantExport,
    RetentionRun,
    RetentionShow,
    ReputationShow,
    ReputationCheck,
    SuppressionAdd,
    SuppressionList,
    SuppressionRemove,
    WebhookAdd,
    WebhookList,
    WebhookRemove,
    WebhookEnable,
    BackupCreate,
    ReceiptKey,
    QueueSummary,
    QueueList,
    QueueShow,
    QueueHold,
    QueueRelease,
    QueueRetry,
    QueueBounce,
    QueueDelete,
}

impl Op {
    pub const ALL: [Op; 70] = [
        Op::Hello,
        Op::Bootstrap,
        Op::Login,
        Op::Logout,
        Op::TenantAdd,
        Op::TenantList,
        Op::TenantShow,
        Op::TenantUpdate,
        Op::TenantSuspend,
        Op::TenantResume,
        Op::TenantResumeSending,
        Op::TenantDeliverability,
        Op::TenantTerminate,
        Op::DomainAdd,
        Op::DomainList,
        Op::DomainRemove,
        Op::DomainShow,
        Op::DomainDns,
        Op::DomainDmarc,
        Op::DomainVerify,
        Op::DomainRotateDkim,
        Op::DomainRetireDkim,
        Op::DomainOverride,
        Op::DomainBimi,
        Op::CredentialAdd,
        Op::CredentialList,
        Op::CredentialRevoke,
        Op::OperatorAdd,
        Op::OperatorList,
        Op::OperatorRole,
        Op::OperatorRemove,
        Op::IncidentOpen,
        Op::IncidentAddTenant,
        Op::IncidentUpdate,
        Op::IncidentNotify,
        Op::IncidentClose,
        Op::IncidentList,
        Op::IncidentShow,
        Op::AuditList,
        Op::AuditVerify,
        Op::SnapshotGet,
        Op::RetentionReport,
        Op::ApiCall,
        Op::TenantRetention,
        Op::TenantHold,
        Op::TenantErase,
        Op::TenantReceipt,
        Op::TenantReport,
        Op::TenantExport,
        Op::RetentionRun,
        Op::RetentionShow,
        Op::ReputationShow,
        Op::ReputationCheck,
        Op::SuppressionAdd,
        Op::SuppressionList,
        Op::SuppressionRemove,
        Op::WebhookAdd,
        Op::WebhookList,
        Op::WebhookRemove,
        Op::WebhookEnable,
        Op::BackupCreate,
        Op::ReceiptKey,
        Op::QueueSummary,
        Op::QueueList,
        Op::QueueShow,
        Op::QueueHold,
        Op::QueueRelease,
        Op::QueueRetry,
        Op::QueueBounce,
        Op::QueueDelete,
    ];

    pub fn of(request: &Request) -> Op {
        match request {
            Request::Hello => Op::Hello,
            Request::Bootstrap { .. } => Op::Bootstrap,
            Request::Login { .. } => Op::Login,
            Request::Logout => Op::Logout,
            Request::TenantAdd { .. } => Op::TenantAdd,
            Request::TenantList => Op::TenantList,
            Request::TenantShow { .. } => Op::TenantShow,
            Request::TenantUpdate { .. } => Op::TenantUpdate,
            Request::TenantSuspend { .. } => Op::TenantSuspend,
            Request::TenantResume { .. } => Op::TenantResume,
            Request::TenantResumeSending { .. } => Op::TenantResumeSending,
            Request::TenantDeliverability { .. } => Op::TenantDeliverability,
            Request::TenantTerminate { .. } => Op::TenantTerminate,
            Request::DomainAdd { .. } => Op::DomainAdd,
            Request::DomainList { .. } => Op::DomainList,
            Request::DomainRemove { .. } => Op::DomainRemove,
            Request::DomainShow { .. } => Op::DomainShow,
            Request::DomainDns { .. } => Op::DomainDns,
            Request::DomainDmarc { .. } => Op::DomainDmarc,
            Request::DomainVerify { .. } => Op::DomainVerify,
            Request::DomainRotateDkim { .. } => Op::DomainRotateDkim,
            Request::DomainRetireDkim { .. } => Op::DomainRetireDkim,
            Request::DomainOverride { .. } => Op::DomainOverride,
            Request::DomainBimi { .. } => Op::DomainBimi,
            Request::CredentialAdd { .. } => Op::CredentialAdd,
            Request::CredentialList { .. } => Op::CredentialList,
            Request::CredentialRevoke { .. } => Op::CredentialRevoke,
            Request::OperatorAdd { .. } => Op::OperatorAdd,
            Request::OperatorList => Op::OperatorList,
            Request::OperatorRole { .. } => Op::OperatorRole,
            Request::OperatorRemove { .. } => Op::OperatorRemove,
            Request::IncidentOpen { .. } => Op::IncidentOpen,
            Request::IncidentAddTenant { .. } => Op::IncidentAddTenant,
            Request::IncidentUpdate { .. } => Op::IncidentUpdate,
            Request::IncidentNotify { .. } => Op::IncidentNotify,
            Request::IncidentClose { .. } => Op::IncidentClose,
            Request::IncidentList => Op::IncidentList,
            Request::IncidentShow { .. } => Op::IncidentShow,
            Request::AuditList { .. } => Op::AuditList,
            Request::AuditVerify => Op::AuditVerify,
            Request::SnapshotGet { .. } => Op::SnapshotGet,
            Request::RetentionReport { .. } => Op::RetentionReport,
            // The MTA's reports on a tenant's behalf: its service user only, like
            // the API calls it relays.
            Request::ApiCall { .. }
            | Request::ApiUnsubscribe { .. }
            | Request::ApiWebhookFailing { .. }
            | Request::ApiAutoSuppress { .. }
            | Request::ApiReputationPause { .. } => Op::ApiCall,
            Request::TenantRetention { .. } => Op::TenantRetention,
            Request::TenantHold { .. } => Op::TenantHold,
            Request::TenantErase { .. } => Op::TenantErase,
            Request::TenantReceipt { .. } => Op::TenantReceipt,
            Request::TenantReport { .. } => Op::TenantReport,
            Request::TenantExport { .. } => Op::TenantExport,
            Request::RetentionRun => Op::RetentionRun,
            Request::RetentionShow => Op::RetentionShow,
            Request::ReputationShow => Op::ReputationShow,
            Request::ReputationCheck => Op::ReputationCheck,
            Request::SuppressionAdd { .. } => Op::SuppressionAdd,
            Request::SuppressionList { .. } => Op::SuppressionList,
            Request::SuppressionRemove { .. } => Op::SuppressionRemove,
            Request::WebhookAdd { .. } => Op::WebhookAdd,
            Request::WebhookList { .. } => Op::WebhookList,
            Request::WebhookRemove { .. } => Op::WebhookRemove,
            Request::WebhookEnable { .. } => Op::WebhookEnable,
            Request::BackupCreate => Op::BackupCreate,
            Request::ReceiptKey => Op::ReceiptKey,
            Request::QueueSummary { .. } => Op::QueueSummary,
            Request::QueueList { .. } => Op::QueueList,
            Request::QueueShow { .. } => Op::QueueShow,
            Request::QueueHold { .. } => Op::QueueHold,
            Request::QueueRelease { .. } => Op::QueueRelease,
            Request::QueueRetry { .. } => Op::QueueRetry,
            Request::QueueBounce { .. } => Op::QueueBounce,
            Request::QueueDelete { .. } => Op::QueueDelete,
        }
    }
}

/// Who asks, as far as the table cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    /// An operator with a valid session.
    Operator(Role),
    /// No (valid) token: Unix peer credentials only.
    Peer { root: bool, service: bool },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Allowed only with a non-empty `reason`.
    AllowWithReason,
    /// Refused with this code (`unauthenticated` or `forbidden`).
    Deny(ErrorCode),
}

/// The table. One match so that adding an `Op` fails to compile until it is decided.
pub fn decide(subject: Subject, op: Op) -> Decision {
    use Decision::{Allow, AllowWithReason, Deny};
    const FORBIDDEN: Decision = Deny(ErrorCode::Forbidden);
    match subject {
        Subject::Peer { root, service } => match op {
            Op::Hello | Op::Login => Allow,
            Op::Bootstrap if root => Allow,
            Op::SnapshotGet | Op::RetentionReport | Op::ApiCall if service => Allow,
            _ => Deny(ErrorCode::Unauthenticated),
        },
        Subject::Operator(role) => match op {
            Op::Hello | Op::Login | Op::Logout => Allow,
            // Root on the socket only, and the snapshot (password hashes) for the
            // MTA's user only: no role reaches these through a session.
            Op::Bootstrap | Op::SnapshotGet | Op::RetentionReport | Op::ApiCall => FORBIDDEN,
            Op::TenantAdd
            | Op::TenantUpdate
            | Op::TenantSuspend
            | Op::TenantResume
            // Lifting the reputation guard's pause: as lifting a suspension.
            | Op::TenantResumeSending
            | Op::TenantTerminate
            | Op::DomainAdd
            | Op::DomainRemove
            | Op::DomainRotateDkim
            | Op::DomainRetireDkim
            | Op::DomainBimi
            | Op::CredentialAdd
            | Op::CredentialList
            | Op::CredentialRevoke => match role {
                Role::Admin | Role::Operator => Allow,
                Role::Support | Role::Auditor => FORBIDDEN,
            },
            // Letting an unverified domain send is always explained.
            Op::DomainOverride => match role {
                Role::Admin | Role::Operator => AllowWithReason,
                Role::Support | Role::Auditor => FORBIDDEN,
            },
            Op::TenantList
            | Op::TenantShow
            | Op::DomainList
            | Op::DomainShow
            | Op::DomainDns
            | Op::DomainVerify => match role {
                Role::Admin | Role::Operator => Allow,
                Role::Support => AllowWithReason,
                Role::Auditor => FORBIDDEN,
            },
            Op::OperatorAdd | Op::OperatorList | Op::OperatorRole | Op::OperatorRemove => {
                match role {
                    Role::Admin => Allow,
                    Role::Operator | Role::Support | Role::Auditor => FORBIDDEN,
                }
            }
            // The incident register: kept by admins, reviewed by auditors.
            Op::IncidentOpen
            | Op::IncidentAddTenant
            | Op::IncidentUpdate
            | Op::IncidentNotify
            | Op::IncidentClose => match role {
                Role::Admin => Allow,
                Role::Operator | Role::Support | Role::Auditor => FORBIDDEN,
            },
            Op::IncidentList | Op::IncidentShow => match role {
                Role::Admin | Role::Auditor => Allow,
                Role::Operator | Role::Support => FORBIDDEN,
            },
            Op::AuditList | Op::AuditVerify => match role {
                Role::Admin | Role::Auditor => Allow,
                Role::Operator | Role::Support => FORBIDDEN,
            },
            // Retention per agreement, the suppression lists and the webhook
            // endpoints are tenant administration.
            Op::TenantRetention
            | Op::RetentionRun
            // Looking the platform's addresses up now: as a retention run.
            | Op::ReputationCheck
            | Op::SuppressionAdd
            | Op::SuppressionRemove
            | Op::WebhookAdd
            | Op::WebhookRemove
            | Op::WebhookEnable => match role {
                Role::Admin | Role::Operator => Allow,
                Role::Support | Role::Auditor => FORBIDDEN,
            },
            Op::SuppressionList | Op::WebhookList => match role {
                Role::Admin | Role::Operator => Allow,
                Role::Support => AllowWithReason,
                Role::Auditor => FORBIDDEN,
            },
            // Irreversible, or a copy of every tenant's data: admins only, and a
            // legal hold is always explained.
            Op::TenantErase | Op::BackupCreate => match role {
                Role::Admin => Allow,
                Role::Operator | Role::Support | Role::Auditor => FORBIDDEN,
            },
            Op::TenantHold => match role {
                Role::Admin => AllowWithReason,
                Role::Operator | Role::Support | Role::Auditor => FORBIDDEN,
            },
            // All of a tenant's data, messages included: operators say why.
            Op::TenantExport => match role {
                Role::Admin => Allow,
                Role::Operator => AllowWithReason,
                Role::Support | Role::Auditor => FORBIDDEN,
            },
            // What is held and who touched it, and how the tenant's mail fares
            // (its domains' DMARC reports too): auditors review them too.
            Op::TenantReport | Op::TenantDeliverability | Op::DomainDmarc => match role {
                Role::Admin | Role::Operator | Role::Auditor => Allow,
                Role::Support => AllowWithReason,
            },
            Op::TenantReceipt => match role {
                Role::Admin | Role::Operator | Role::Auditor => Allow,
                Role::Support => FORBIDDEN,
            },
            // The queue: operators run it; support looks, saying why (recipient
            // addresses are client data); auditors have the audit log instead.
            Op::QueueSummary | Op::QueueList | Op::QueueShow => match role {
                Role::Admin | Role::Operator => Allow,
                Role::Support => AllowWithReason,
                Role::Auditor => FORBIDDEN,
            },
            Op::QueueHold | Op::QueueRelease | Op::QueueRetry | Op::QueueBounce => match role {
                Role::Admin | Role::Operator => Allow,
                Role::Support | Role::Auditor => FORBIDDEN,
            },
            // Mail removed without a word to its sender: operators say why.
            Op::QueueDelete => match role {
                Role::Admin => Allow,
                Role::Operator => AllowWithReason,
                Role::Support | Role::Auditor => FORBIDDEN,
            },
            // No client data (the blocklist state is about the platform's own
            // addresses).
            Op::RetentionShow | Op::ReceiptKey | Op::ReputationShow => Allow,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Decision::{Allow, AllowWithReason, Deny};

    /// The whole table spelled out again, row by row, so a change to `decide` must
    /// be made twice: once on purpose, once here.
    /// Columns: admin, operator, support, auditor, root, service, other peer.
    const A: Decision = Allow;
    const R: Decision = AllowWithReason;
    const F: Decision = Deny(ErrorCode::Forbidden);
    const U: Decision = Deny(ErrorCode::Unauthenticated);
    const TABLE: [(Op, [Decision; 7]); 70] = [
        (Op::Hello, [A, A, A, A, A, A, A]),
        (Op::Bootstrap, [F, F, F, F, A, U, U]),
        (Op::Login, [A, A, A, A, A, A, A]),
        (Op::Logout, [A, A, A, A, U, U, U]),
        (Op::TenantAdd, [A, A, F, F, U, U, U]),
        (Op::TenantList, [A, A, R, F, U, U, U]),
        (Op::TenantShow, [A, A, R, F, U, U, U]),
        (Op::TenantUpdate, [A, A, F, F, U, U, U]),
        (Op::TenantSuspend, [A, A, F, F, U, U, U]),
        (Op::TenantResume, [A, A, F, F, U, U, U]),
        (Op::TenantResumeSending, [A, A, F, F, U, U, U]),
        (Op::TenantDeliverability, [A, A, R, A, U, U, U]),
        (Op::TenantTerminate, [A, A, F, F, U, U, U]),
        (Op::DomainAdd, [A, A, F, F, U, U, U]),
        (Op::DomainList, [A, A, R, F, U, U, U]),
        (Op::DomainRemove, [A, A, F, F, U, U, U]),
        (Op::DomainShow, [A, A, R, F, U, U, U]),
        (Op::DomainDns, [A, A, R, F, U, U, U]),
        (Op::DomainDmarc, [A, A, R, A, U, U, U]),
        (Op::DomainVerify, [A, A, R, F, U, U, U]),
        (Op::DomainRotateDkim, [A, A, F, F, U, U, U]),
        (Op::DomainRetireDkim, [A, A, F, F, U, U, U]),
        (Op::DomainOverride, [R, R, F, F, U, U, U]),
        (Op::DomainBimi, [A, A, F, F, U, U, U]),
        (Op::CredentialAdd, [A, A, F, F, U, U, U]),
        (Op::CredentialList, [A, A, F, F, U, U, U]),
        (Op::CredentialRevoke, [A, A, F, F, U, U, U]),
        (Op::OperatorAdd, [A, F, F, F, U, U, U]),
        (Op::OperatorList, [A, F, F, F, U, U, U]),
        (Op::OperatorRole, [A, F, F, F, U, U, U]),
        (Op::OperatorRemove, [A, F, F, F, U, U, U]),
        (Op::IncidentOpen, [A, F, F, F, U, U, U]),
        (Op::IncidentAddTenant, [A, F, F, F, U, U, U]),
        (Op::IncidentUpdate, [A, F, F, F, U, U, U]),
        (Op::IncidentNotify, [A, F, F, F, U, U, U]),
        (Op::IncidentClose, [A, F, F, F, U, U, U]),
        (Op::IncidentList, [A, F, F, A, U, U, U]),
        (Op::IncidentShow, [A, F, F, A, U, U, U]),
        (Op::AuditList, [A, F, F, A, U, U, U]),
        (Op::AuditVerify, [A, F, F, A, U, U, U]),
        (Op::SnapshotGet, [F, F, F, F, U, A, U]),
        (Op::RetentionReport, [F, F, F, F, U, A, U]),
        (Op::ApiCall, [F, F, F, F, U, A, U]),
        (Op::TenantRetention, [A, A, F, F, U, U, U]),
        (Op::TenantHold, [R, F, F, F, U, U, U]),
        (Op::TenantErase, [A, F, F, F, U, U, U]),
        (Op::TenantReceipt, [A, A, F, A, U, U, U]),
        (Op::TenantReport, [A, A, R, A, U, U, U]),
        (Op::TenantExport, [A, R, F, F, U, U, U]),
        (Op::RetentionRun, [A, A, F, F, U, U, U]),
        (Op::RetentionShow, [A, A, A, A, U, U, U]),
        (Op::ReputationShow, [A, A, A, A, U, U, U]),
        (Op::ReputationCheck, [A, A, F, F, U, U, U]),
        (Op::SuppressionAdd, [A, A, F, F, U, U, U]),
        (Op::SuppressionList, [A, A, R, F, U, U, U]),
        (Op::SuppressionRemove, [A, A, F, F, U, U, U]),
        (Op::WebhookAdd, [A, A, F, F, U, U, U]),
        (Op::WebhookList, [A, A, R, F, U, U, U]),
        (Op::WebhookRemove, [A, A, F, F, U, U, U]),
        (Op::WebhookEnable, [A, A, F, F, U, U, U]),
        (Op::BackupCreate, [A, F, F, F, U, U, U]),
        (Op::ReceiptKey, [A, A, A, A, U, U, U]),
        (Op::QueueSummary, [A, A, R, F, U, U, U]),
        (Op::QueueList, [A, A, R, F, U, U, U]),
        (Op::QueueShow, [A, A, R, F, U, U, U]),
        (Op::QueueHold, [A, A, F, F, U, U, U]),
        (Op::QueueRelease, [A, A, F, F, U, U, U]),
        (Op::QueueRetry, [A, A, F, F, U, U, U]),
        (Op::QueueBounce, [A, A, F, F, U, U, U]),
        (Op::QueueDelete, [A, R, F, F, U, U, U]),
    ];

    #[test]
    fn table_is_exhaustive_and_matches() {
        let subjects = [
            Subject::Operator(Role::Admin),
            Subject::Operator(Role::Operator),
            Subject::Operator(Role::Support),
            Subject::Operator(Role::Auditor),
            Subject::Peer {
                root: true,
                service: false,
            },
            Subject::Peer {
                root: false,
                service: true,
            },
            Subject::Peer {
                root: false,
                service: false,
            },
        ];
        assert_eq!(TABLE.len(), Op::ALL.len());
        for (i, op) in Op::ALL.iter().enumerate() {
            let (row_op, row) = TABLE[i];
            assert_eq!(row_op, *op);
            for (subject, expected) in subjects.iter().zip(row) {
                assert_eq!(decide(*subject, *op), expected, "{subject:?} {op:?}");
            }
        }
    }

    #[test]
    fn root_that_is_also_a_service_gets_both() {
        let both = Subject::Peer {
            root: true,
            service: true,
        };
        for op in Op::ALL {
            let expected = match op {
                Op::Hello
                | Op::Login
                | Op::Bootstrap
                | Op::SnapshotGet
                | Op::RetentionReport
                | Op::ApiCall => Allow,
                _ => U,
            };
            assert_eq!(decide(both, op), expected, "{op:?}");
        }
    }

    #[test]
    fn every_op_once() {
        let mut seen = std::collections::HashSet::new();
        for op in Op::ALL {
            assert!(seen.insert(op), "{op:?} twice");
        }
    }
}
