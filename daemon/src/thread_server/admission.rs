//! Who gets one of a socket's connections: [`Admission`], decided from the peer's
//! uid and what is open, so that one local user holding connections cannot lock
//! out the others, nor ever the service (the MTA on control's socket, control on
//! the MTA's admin socket).
//!
//! `max_connections` is a hard cap on connections (and threads). The last
//! `reserved` of them are the service uids' alone; every other uid shares the rest
//! and holds at most `max_per_uid` at once. Service uids are exempt from
//! `max_per_uid` and may use any connection up to the hard cap: they are the
//! daemons' own users, not people, and they must never get `busy` because someone
//! else was greedy.

use std::fmt;

/// Limits on who may hold a socket's connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    /// Connections at once, all peers together: the hard cap.
    pub max_connections: usize,
    /// Connections at once from one uid that is not a service uid.
    pub max_per_uid: usize,
    /// Of `max_connections`, how many only service uids may use.
    pub reserved: usize,
    /// The uids always served within the hard cap.
    pub service_uids: Vec<u32>,
}

/// Why a peer was refused; its `Display` is the reason told to the peer and logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Busy {
    /// Every connection open to this peer is taken.
    Total { limit: usize },
    /// The peer's uid holds all it may.
    PerUid { limit: usize },
}

impl fmt::Display for Busy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Busy::Total { limit } => write!(f, "too many connections (the limit is {limit})"),
            Busy::PerUid { limit } => write!(
                f,
                "too many connections from your user (the limit is {limit})"
            ),
        }
    }
}

impl Admission {
    /// Every peer alike, up to `max_connections`: no per-uid limit, no reserve.
    pub fn shared(max_connections: usize) -> Admission {
        Admission {
            max_connections,
            max_per_uid: max_connections,
            reserved: 0,
            service_uids: Vec::new(),
        }
    }

    /// Whether a peer with `uid` may open one more, with `open` connections open
    /// in all and `from_uid` of them its own.
    pub fn check(&self, uid: u32, open: usize, from_uid: usize) -> Result<(), Busy> {
        if open >= self.max_connections {
            return Err(Busy::Total {
                limit: self.max_connections,
            });
        }
        if self.service_uids.contains(&uid) {
            return Ok(());
        }
        let shared = self.max_connections.saturating_sub(self.reserved);
        if open >= shared {
            return Err(Busy::Total { limit: shared });
        }
        if from_uid >= self.max_per_uid {
            return Err(Busy::PerUid {
                limit: self.max_per_uid,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MTA: u32 = 998;
    const ALICE: u32 = 1000;
    const BOB: u32 = 1001;

    fn control_like() -> Admission {
        Admission {
            max_connections: 8,
            max_per_uid: 3,
            reserved: 2,
            service_uids: vec![MTA],
        }
    }

    /// Opens connections one by one as `uids` says, returning who was refused.
    fn flood(admission: &Admission, uids: &[u32]) -> Vec<(u32, Busy)> {
        let mut open: Vec<u32> = Vec::new();
        let mut refused = Vec::new();
        for &uid in uids {
            let mine = open.iter().filter(|&&u| u == uid).count();
            match admission.check(uid, open.len(), mine) {
                Ok(()) => open.push(uid),
                Err(busy) => refused.push((uid, busy)),
            }
        }
        refused
    }

    #[test]
    fn one_user_holds_at_most_its_share() {
        let refused = flood(&control_like(), &[ALICE; 10]);
        assert_eq!(refused.len(), 7);
        assert!(refused
            .iter()
            .all(|r| *r == (ALICE, Busy::PerUid { limit: 3 })));
    }

    #[test]
    fn many_users_never_take_the_service_reserve() {
        let mut uids: Vec<u32> = (0..20).map(|i| ALICE + i).collect();
        uids.extend([MTA, MTA]);
        let refused = flood(&control_like(), &uids);
        // Six of the eight went to users, and the two reserved to the MTA.
        assert_eq!(refused.len(), 14);
        assert!(refused
            .iter()
            .all(|(uid, busy)| *uid != MTA && *busy == Busy::Total { limit: 6 }));
    }

    #[test]
    fn the_service_is_exempt_from_the_per_uid_limit_within_the_hard_cap() {
        let refused = flood(&control_like(), &[MTA; 9]);
        assert_eq!(refused, vec![(MTA, Busy::Total { limit: 8 })]);
        let refused = flood(
            &control_like(),
            &[ALICE, ALICE, BOB, MTA, MTA, MTA, MTA, MTA],
        );
        assert!(refused.is_empty(), "{refused:?}");
        let refused = flood(
            &control_like(),
            &[ALICE, ALICE, BOB, MTA, MTA, MTA, MTA, MTA, BOB],
        );
        assert_eq!(refused, vec![(BOB, Busy::Total { limit: 8 })]);
    }

    #[test]
    fn shared_admission_is_the_plain_cap() {
        let refused = flood(&Admission::shared(2), &[ALICE, ALICE, BOB]);
        assert_eq!(refused, vec![(BOB, Busy::Total { limit: 2 })]);
    }

    #[test]
    fn reasons_read_well() {
        assert_eq!(
            Busy::Total { limit: 64 }.to_string(),
            "too many connections (the limit is 64)"
        );
        assert_eq!(
            Busy::PerUid { limit: 16 }.to_string(),
            "too many connections from your user (the limit is 16)"
        );
    }
}
