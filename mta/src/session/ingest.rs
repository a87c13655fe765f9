//! Memory for the end of data of large messages. A session keeps at most
//! `[spool] message_buffer` of a message in memory while it arrives (the protocol
//! hands the rest out, and the session writes it to the spool as parts). At the end
//! of data, a message that outgrew the buffer is either read back whole to be
//! checked (mail from the internet: SPF/DKIM/DMARC/ARC need the whole message),
//! which reserves twice its size (the message, and the copy a new header makes), or
//! signed and spooled straight from its parts, which reserves its size: what sled
//! holds while it writes a message's chunks follows the bytes being written at
//! once. Either way the reservation comes from `[spool] ingest_budget` first, and
//! waits while the budget is taken: many large messages ending at once queue here,
//! each holding only its parts on disk. A message larger than the whole budget
//! takes all of it. Nothing that holds a reservation waits for another session, so
//! the queue always moves.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Reservations are counted in KiB, so that any budget fits a semaphore's count.
const UNIT: u64 = 1024;

pub struct IngestBudget {
    permits: Arc<Semaphore>,
    units: u32,
    /// `[spool] message_buffer`: what a session holds before it writes parts.
    pub message_buffer: usize,
}

impl IngestBudget {
    pub fn new(budget: u64, message_buffer: u64) -> IngestBudget {
        let units = u32::try_from(budget / UNIT)
            .unwrap_or(u32::MAX)
            .clamp(1, Semaphore::MAX_PERMITS as u32);
        IngestBudget {
            permits: Arc::new(Semaphore::new(units as usize)),
            units,
            message_buffer: usize::try_from(message_buffer).unwrap_or(usize::MAX),
        }
    }

    /// Waits until `bytes` of the budget are free and reserves them (all of it for
    /// more than the whole budget); the reservation lasts as long as the returned
    /// value, and `way2mail_ingest_reserved_bytes` follows it. `None` only if the
    /// semaphore were closed, which nothing does.
    pub async fn reserve(&self, bytes: u64) -> Option<Reservation> {
        let units = bytes.div_ceil(UNIT).clamp(1, u64::from(self.units));
        let units = u32::try_from(units).unwrap_or(self.units);
        let permit = Arc::clone(&self.permits)
            .acquire_many_owned(units)
            .await
            .ok()?;
        crate::metrics::ingest_reserved_bytes(self.reserved_bytes());
        Some(Reservation {
            permit: Some(permit),
            permits: Arc::clone(&self.permits),
            units: self.units,
        })
    }

    /// Bytes reserved now.
    pub fn reserved_bytes(&self) -> u64 {
        reserved(&self.permits, self.units)
    }
}

fn reserved(permits: &Semaphore, units: u32) -> u64 {
    u64::from(units).saturating_sub(permits.available_permits() as u64) * UNIT
}

/// A share of the ingest budget; given back when dropped.
pub struct Reservation {
    permit: Option<OwnedSemaphorePermit>,
    permits: Arc<Semaphore>,
    units: u32,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        drop(self.permit.take());
        crate::metrics::ingest_reserved_bytes(reserved(&self.permits, self.units));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn large_messages_wait_for_their_share_and_the_largest_takes_all() {
        let b = IngestBudget::new(4 * 1024 * 1024, 256 * 1024);
        let first = b.reserve(2 * 1024 * 1024).await;
        assert_eq!(b.reserved_bytes(), 2 * 1024 * 1024);
        let second = b.reserve(2 * 1024 * 1024).await;
        assert_eq!(b.reserved_bytes(), 4 * 1024 * 1024);
        // Nothing left: a third waits until one of them is done.
        let third = tokio::time::timeout(std::time::Duration::from_millis(50), b.reserve(10));
        assert!(third.await.is_err());
        drop(first);
        let _third = b.reserve(10).await;
        drop(second);
        // Larger than the whole budget: it waits for all of it, then goes alone.
        drop(_third);
        let huge = b.reserve(100 * 1024 * 1024).await;
        assert_eq!(b.reserved_bytes(), 4 * 1024 * 1024);
        drop(huge);
        assert_eq!(b.reserved_bytes(), 0);
    }
}
