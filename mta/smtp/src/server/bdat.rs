//! `BDAT` (RFC 3030 CHUNKING): the client announces `n` octets and sends exactly
//! that many, with no dot-stuffing and no line structure. Whatever the verdict, the
//! `n` octets are consumed before the reply, so the command stream stays in step;
//! only a size we cannot read at all leaves us out of step, and then we close.
//!
//! A failed chunk ends the transaction (RFC 3030 §2: the client must not send more
//! chunks; those already pipelined get `503` and are consumed like any other).

use super::state::SessionState;
use crate::reply::{self, EnhancedCode, Reply};

/// What to do with the octets of one chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ChunkPlan {
    /// Append them to the transaction's message.
    Store,
    /// Read and drop them, then send this reply.
    Discard(Reply),
}

impl SessionState {
    /// Decides about a `BDAT size [LAST]` chunk before its octets are read.
    pub(super) fn bdat(&mut self) -> ChunkPlan {
        if let Err(r) = self.content_allowed() {
            return ChunkPlan::Discard(r);
        }
        let body = self
            .tx
            .as_ref()
            .and_then(|t| t.chunks.is_none().then(|| self.new_body()));
        if let (Some(tx), Some(body)) = (self.tx.as_mut(), body) {
            tx.chunks = Some(body);
        }
        ChunkPlan::Store
    }

    /// Octets of a stored chunk.
    pub(super) fn bdat_store(&mut self, bytes: &[u8]) {
        if let Some(body) = self.tx.as_mut().and_then(|t| t.chunks.as_mut()) {
            body.store(bytes);
        }
    }

    /// A non-final chunk is complete.
    pub(super) fn bdat_chunk_done(&mut self, size: u64) -> Reply {
        let over = self
            .tx
            .as_ref()
            .and_then(|t| t.chunks.as_ref())
            .is_some_and(|b| b.oversize());
        if over {
            self.reset();
            return reply::TOO_BIG;
        }
        Reply::owned(
            250,
            EnhancedCode::new(2, 0, 0),
            format!("{size} octets received"),
        )
    }
}
