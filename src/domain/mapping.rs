//! What the state remembers of a pair's items: which item on one side is the copy of which on the
//! other (a mapping), creates sent but not yet recorded, and source items waiting outside the
//! sync window.

use crate::domain::identity::IdentityKey;
use crate::domain::types::{ContentHash, Etag, Href};

/// Which side of a pair: `A` is the configured source, `B` the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    A,
    B,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::A => "a",
            Side::B => "b",
        }
    }
}

/// What the state knows about one synced item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    pub a_href: Href,
    pub a_etag: Etag,
    pub b_href: Href,
    pub b_etag: Etag,
    pub identity: IdentityKey,
    /// Hash of the content written to `b` (the source item after rewriting).
    pub hash: ContentHash,
}

/// A new or changed source item that nothing was written for because it lies outside the window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutsideWindow {
    pub a_href: Href,
    pub a_etag: Etag,
    pub identity: IdentityKey,
    /// When it will overlap the window (unix seconds); `None`: never.
    pub enters: Option<i64>,
}

/// A create that was sent but not yet recorded as a mapping (see `pending_creates`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub a_href: Href,
    pub b_href: Href,
    pub identity: IdentityKey,
}
