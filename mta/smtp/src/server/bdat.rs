//! `BDAT` (RFC 3030 CHUNKING): the client announces `n` octets and sends exactly
//! that many, with no dot-stuffing and no line structure. Whatever the verdict, the
//! `n` octets are consumed before the reply, so the command stream stays in step;
//! only a size we cannot read at all leaves us out of step, and then we close.
//!
//! The chunks are one message: a bare CR or LF in it is stored as CRLF like in DATA
//! (a CR ending one chunk and an LF starting the next are one CRLF), and NUL octets
//! are noted, in the same pass that stores the octets ([`Chunks`]).
//!
//! A failed chunk ends the transaction (RFC 3030 §2: the client must not send more
//! chunks; those already pipelined get `503` and are consumed like any other).

use super::body::Body;
use super::message::{ContentRefusal, Flaws};
use super::state::SessionState;
use crate::line_ends::Normalizer;
use crate::reply::{EnhancedCode, Reply};
use crate::MessageId;

/// What to do with the octets of one chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ChunkPlan {
    /// Append them to the transaction's message.
    Store,
    /// Read and drop them, then send this reply.
    Discard(Reply),
}

/// The message of a BDAT transaction so far, and the line-end state between chunks.
#[derive(Debug)]
pub(super) struct Chunks {
    body: Body,
    ends: Normalizer,
}

impl Chunks {
    fn new(body: Body) -> Chunks {
        Chunks {
            body,
            ends: Normalizer::default(),
        }
    }

    fn store(&mut self, bytes: &[u8]) {
        let body = &mut self.body;
        self.ends.push(bytes, &mut |run: &[u8]| body.store(run));
    }

    /// Content to hand out now, if the message has grown past its spill size.
    pub(super) fn take_spill(&mut self) -> Option<(MessageId, Vec<u8>)> {
        let id = self.body.id;
        self.body.take_spill().map(|bytes| (id, bytes))
    }

    /// The last chunk is in: the whole message and what was noticed in it.
    pub(super) fn finish(mut self) -> (Body, Flaws) {
        let body = &mut self.body;
        self.ends.finish(&mut |run: &[u8]| body.store(run));
        let flaws = Flaws {
            long_line: false,
            bare_line_end: self.ends.saw_bare(),
            nul: self.ends.saw_nul(),
        };
        (self.body, flaws)
    }
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
            tx.chunks = Some(Chunks::new(body));
        }
        ChunkPlan::Store
    }

    /// Octets of a stored chunk.
    pub(super) fn bdat_store(&mut self, bytes: &[u8]) {
        if let Some(chunks) = self.tx.as_mut().and_then(|t| t.chunks.as_mut()) {
            chunks.store(bytes);
        }
    }

    /// A non-final chunk is complete: its reply, or the refusal of a message that is
    /// already over the size limit (the transaction ends).
    pub(super) fn bdat_chunk_done(
        &mut self,
        size: u64,
    ) -> Result<Reply, (MessageId, ContentRefusal)> {
        let over = self
            .tx
            .as_ref()
            .and_then(|t| t.chunks.as_ref())
            .filter(|c| c.body.oversize())
            .map(|c| c.body.id);
        if let Some(id) = over {
            self.reset();
            return Err((id, ContentRefusal::TooBig));
        }
        Ok(Reply::owned(
            250,
            EnhancedCode::new(2, 0, 0),
            format!("{size} octets received"),
        ))
    }
}
