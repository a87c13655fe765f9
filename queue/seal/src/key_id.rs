//! The name of a data key: written into every sealed record's header and into
//! store keys, so that records can be sorted by owner without opening them. Below
//! everything else in the crate, since errors carry it too.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Identifies a data key inside sealed records and spool keys. Random, never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct KeyId(pub u64);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}
