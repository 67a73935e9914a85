//! What the state remembers of a pair's items: which item on one side is the copy of which on the
//! other (a mapping), creates sent but not yet recorded, and source items waiting outside the
//! sync window.

use crate::domain::identity::IdentityKey;
use crate::domain::types::{ContentHash, Etag, Href};

/// Which side of a pair: `A` is the configured source, `B` the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    A,
    B,
}

impl Side {
    pub fn parse(s: &str) -> Option<Side> {
        match s {
            "a" => Some(Side::A),
            "b" => Some(Side::B),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Side::A => "a",
            Side::B => "b",
        }
    }

    pub fn other(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }

    /// `here` (this side's) and `there` (the other's), as (A's, B's); swapped back the same way.
    pub fn ab<T>(self, here: T, there: T) -> (T, T) {
        match self {
            Side::A => (here, there),
            Side::B => (there, here),
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
    /// Hash of the content of the copy (the original item after rewriting).
    pub hash: ContentHash,
}

impl Mapping {
    /// The item `from` holds, its copy on the other side, and what they are.
    pub fn between(
        from: Side,
        (href, etag): (Href, Etag),
        (copy_href, copy_etag): (Href, Etag),
        identity: IdentityKey,
        hash: ContentHash,
    ) -> Mapping {
        let ((a_href, a_etag), (b_href, b_etag)) = from.ab((href, etag), (copy_href, copy_etag));
        Mapping {
            a_href,
            a_etag,
            b_href,
            b_etag,
            identity,
            hash,
        }
    }

    pub fn href(&self, side: Side) -> &Href {
        match side {
            Side::A => &self.a_href,
            Side::B => &self.b_href,
        }
    }

    pub fn etag(&self, side: Side) -> &Etag {
        match side {
            Side::A => &self.a_etag,
            Side::B => &self.b_etag,
        }
    }

    /// The same mapping with `side`'s item at a new href and etag.
    pub fn with(&self, side: Side, href: Href, etag: Etag) -> Mapping {
        let mut m = self.clone();
        match side {
            Side::A => (m.a_href, m.a_etag) = (href, etag),
            Side::B => (m.b_href, m.b_etag) = (href, etag),
        }
        m
    }
}

/// A new or changed item that nothing was written for because it lies outside the window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutsideWindow {
    pub href: Href,
    pub etag: Etag,
    pub identity: IdentityKey,
    /// When it will overlap the window (unix seconds); `None`: never.
    pub enters: Option<i64>,
}

/// An item remembered outside the window, as a pass reads it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remembered {
    pub side: Side,
    pub href: Href,
    pub etag: Etag,
    /// Its time to enter has come, or the window setting changed: read it again.
    pub due: bool,
}

/// A write that was sent but not yet recorded as a mapping (see `pending_creates`): a create, or
/// an update of a mapped copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub a_href: Href,
    pub b_href: Href,
    pub identity: IdentityKey,
    /// The side the copy is written to.
    pub to: Side,
    /// The content the write leaves, where known.
    pub hash: Option<ContentHash>,
    /// An update of a mapped copy, not a create.
    pub update: bool,
}

impl Pending {
    /// A create of a copy of `from`'s item `href` at `copy`.
    pub fn new(from: Side, href: Href, copy: Href, identity: IdentityKey) -> Pending {
        let (a_href, b_href) = from.ab(href, copy);
        Pending {
            a_href,
            b_href,
            identity,
            to: from.other(),
            hash: None,
            update: false,
        }
    }

    /// The same write, leaving content `hash`.
    pub fn writing(mut self, hash: ContentHash) -> Pending {
        self.hash = Some(hash);
        self
    }

    /// An update of `m`'s copy on side `to` with content `hash`.
    pub fn update(m: &Mapping, to: Side, hash: ContentHash) -> Pending {
        Pending {
            a_href: m.a_href.clone(),
            b_href: m.b_href.clone(),
            identity: m.identity.clone(),
            to,
            hash: Some(hash),
            update: true,
        }
    }

    pub fn href(&self, side: Side) -> &Href {
        match side {
            Side::A => &self.a_href,
            Side::B => &self.b_href,
        }
    }
}
