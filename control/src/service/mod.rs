//! The control service: one request from one identified caller in, one response out.
//! Identification (peer credentials, session token), the role check, the operation
//! against the store and the audit entry all happen here; the daemon's socket code
//! only frames lines and never decides anything.

use crate::protocol::{ErrorBody, ErrorCode, RequestEnvelope, Response};

/// Who is on the other end of the socket, from `SO_PEERCRED`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    pub pid: i32,
}

/// Thread-safe: the daemon calls `handle` from several connection threads at once.
#[derive(Debug)]
pub struct Service {}

impl Service {
    /// Answers one parsed request. Never panics on any input.
    pub fn handle(
        &self,
        _caller: &Caller,
        request: RequestEnvelope,
    ) -> Result<Response, ErrorBody> {
        // Interim skeleton (issue 4 in progress): the real service replaces this.
        Err(ErrorBody {
            code: ErrorCode::Internal,
            message: format!("{} is not available yet", request.request.op()),
        })
    }
}
