//! What the service keeps per pair in the state store: its state (active, paused, backoff,
//! disabled) and items quarantined after repeated permanent failures.

use serde::Serialize;

use crate::domain::identity::IdentityKey;
use crate::domain::types::{Etag, Href};

/// Permanent failures of one item version before it is quarantined.
pub const QUARANTINE_AFTER: i64 = 3;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum PairState {
    Active,
    /// The mailbox is being moved or locked, or the server asked to wait: resumes by itself.
    Paused {
        reason: String,
        until: i64,
    },
    /// Repeated failures: retried at `until`, the wait doubling up to a cap.
    Backoff {
        reason: String,
        failures: u32,
        until: i64,
    },
    /// Stopped by an operator; only an operator starts it again.
    Disabled {
        reason: String,
    },
}

impl PairState {
    pub fn name(&self) -> &'static str {
        match self {
            PairState::Active => "active",
            PairState::Paused { .. } => "paused",
            PairState::Backoff { .. } => "backoff",
            PairState::Disabled { .. } => "disabled",
        }
    }

    /// When a paused or backing-off pair may run again (unix ms).
    pub fn until(&self) -> Option<i64> {
        match self {
            PairState::Paused { until, .. } | PairState::Backoff { until, .. } => Some(*until),
            _ => None,
        }
    }

    pub fn reason(&self) -> Option<&str> {
        match self {
            PairState::Active => None,
            PairState::Paused { reason, .. }
            | PairState::Backoff { reason, .. }
            | PairState::Disabled { reason } => Some(reason),
        }
    }

    pub fn failures(&self) -> u32 {
        match self {
            PairState::Backoff { failures, .. } => *failures,
            _ => 0,
        }
    }
}

/// A pair's stored state and when a service last scheduled its next pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredState {
    pub state: PairState,
    pub next_run: Option<i64>,
}

/// One item that failed permanently, as `quarantine list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct QuarantineEntry {
    pub pair: String,
    /// The calendar the item is in: `source` or `target`.
    pub side: &'static str,
    pub href: String,
    pub identity: String,
    pub error: String,
    pub count: i64,
    pub first_seen: i64,
    pub last_seen: i64,
    pub quarantined: bool,
    pub retry: bool,
}

/// A quarantine row as a pass needs it.
#[derive(Debug, Clone)]
pub struct Quarantined {
    /// The side the item is on.
    pub side: crate::domain::mapping::Side,
    pub href: Href,
    pub etag: Etag,
    pub quarantined: bool,
    pub retry: bool,
}

/// A permanent failure of one source item in a pass.
#[derive(Debug, Clone)]
pub struct ItemFault {
    pub href: Href,
    pub etag: Etag,
    pub identity: Option<IdentityKey>,
    pub error: String,
}
