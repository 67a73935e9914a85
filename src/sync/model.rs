//! What a plan reads and makes: both sides' snapshots, the prior state, the actions and the
//! mode a pass copies in.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::rank::Newness;
use crate::domain::direction::ConflictPolicy;
use crate::domain::error::ErrorKind;
use crate::domain::identity::IdentityKey;
use crate::domain::item::Item;
use crate::domain::mapping::Side;
use crate::domain::mapping::{Mapping, Pending};
use crate::domain::types::{ContentHash, Etag, Href};
use crate::domain::window::Fit;

/// A file name for a copy, derived from its UID so a retried create after a crash lands on the
/// same name (and is then adopted) instead of making a second copy.
pub fn target_name(uid: &str) -> String {
    let safe = !uid.is_empty()
        && uid.len() <= 200
        && !uid.starts_with('.')
        && uid
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "@._-+".contains(c));
    if safe {
        format!("{uid}.ics")
    } else {
        format!("{:032x}.ics", xxhash_rust::xxh3::xxh3_128(uid.as_bytes()))
    }
}

/// Which way a pass copies. `Side` A is the configured source, B the target; which of them is
/// the truth now (the authority) flips at cutover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Changes of the authority `from` reach the other side; the other side's changes are
    /// overwritten (its writes are the only ones allowed).
    OneWay { from: Side },
    /// A change on either side reaches the other; both sides changed is a conflict `conflict`
    /// settles.
    TwoWay {
        authority: Side,
        conflict: ConflictPolicy,
    },
}

impl Mode {
    /// The side that is the truth now: the side copied from one way; the side a conflict
    /// falls to (by the authority policy, or when both versions are equally new) two ways.
    pub fn authority(self) -> Side {
        match self {
            Mode::OneWay { from } => from,
            Mode::TwoWay { authority, .. } => authority,
        }
    }

    /// The side whose items are copied (one way); the authority (two ways).
    pub fn from(self) -> Side {
        self.authority()
    }

    /// The side that receives the copies (one way); the other side (two ways).
    pub fn to(self) -> Side {
        self.from().other()
    }

    /// The sides whose changes a pass carries over.
    pub fn reads(self) -> &'static [Side] {
        match self {
            Mode::OneWay { from: Side::A } => &[Side::A],
            Mode::OneWay { from: Side::B } => &[Side::B],
            Mode::TwoWay { .. } => &[Side::A, Side::B],
        }
    }

    /// The sides a pass may write, whose calendars it leases.
    pub fn writes(self) -> &'static [Side] {
        match self {
            Mode::OneWay { from: Side::A } => &[Side::B],
            Mode::OneWay { from: Side::B } => &[Side::A],
            Mode::TwoWay { .. } => &[Side::A, Side::B],
        }
    }

    /// The side whose version wins when both sides changed an item differently, and why.
    pub fn winner(self, a: &Prepared, b: &Prepared) -> (Side, &'static str) {
        if let Mode::TwoWay {
            conflict: ConflictPolicy::Newest,
            ..
        } = self
        {
            match Newness::of(&a.item).cmp(&Newness::of(&b.item)) {
                std::cmp::Ordering::Greater => {
                    return (Side::A, "both edited: the newer version wins");
                }
                std::cmp::Ordering::Less => {
                    return (Side::B, "both edited: the newer version wins");
                }
                std::cmp::Ordering::Equal => {}
            }
        }
        (
            self.authority(),
            "both edited: the authority's version wins",
        )
    }
}

/// A decision the plan reports because a version was set aside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The item on side A and on side B (`None`: deleted there).
    pub a_href: Option<Href>,
    pub b_href: Option<Href>,
    /// The side whose version is kept.
    pub kept: Side,
    pub why: &'static str,
}

/// An item parsed, rewritten for the other side's org (when it is copied from), and hashed.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub item: Item,
    pub hash: ContentHash,
    pub identity: IdentityKey,
    /// Where the item stands against the sync window this pass.
    pub fit: Fit,
}

impl Prepared {
    pub fn new(item: Item) -> Self {
        Prepared {
            hash: item.content_hash(),
            identity: item.identity(),
            item,
            fit: Fit::Inside,
        }
    }

    pub fn with_fit(mut self, fit: Fit) -> Self {
        self.fit = fit;
        self
    }
}

/// What is known of an item's body.
#[derive(Debug, Clone)]
pub enum Content<T> {
    /// Not read this pass: its etag matched the mapping.
    NotFetched,
    Fetched(T),
    /// Read but unusable (unparseable, or gone between listing and reading): why.
    Broken(ErrorKind, String),
}

/// One item of either side: where it is, its version, and what is known of its body.
#[derive(Debug, Clone)]
pub struct Version {
    pub href: Href,
    pub etag: Etag,
    pub content: Content<Arc<Prepared>>,
}

/// One side as listed this pass, with what was read of it.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub items: Vec<Version>,
    /// Hrefs reported deleted (incremental listings only).
    pub deleted: Vec<Href>,
    /// `items` is every item of the calendar; a mapped href missing from it was deleted. When
    /// false, hrefs neither in `items` nor in `deleted` are unchanged.
    pub complete: bool,
    /// Listed items left out of `items` because they wait outside the sync window.
    pub waiting: usize,
}

/// A snapshot's listed items by href, and what its listing says of the others.
pub struct Listed<'a> {
    items: HashMap<&'a Href, &'a Version>,
    deleted: HashSet<&'a Href>,
    complete: bool,
}

impl<'a> Listed<'a> {
    /// The item listed at `href`.
    pub fn get(&self, href: &Href) -> Option<&'a Version> {
        self.items.get(href).copied()
    }

    pub fn contains(&self, href: &Href) -> bool {
        self.items.contains_key(href)
    }

    /// Whether an item at `href` is there: listed, or not mentioned by an incremental listing
    /// (unchanged since); gone if a complete listing leaves it out or an incremental one
    /// reports it deleted.
    pub fn present(&self, href: &Href) -> bool {
        self.contains(href) || !(self.complete || self.deleted.contains(href))
    }

    /// The version of `href`, mapped on this side at `mapped`: as listed; `None` if gone; else
    /// unchanged since, at `mapped`.
    pub fn find(&self, href: &Href, mapped: &Etag) -> Option<Found<'a>> {
        match self.get(href) {
            Some(v) => Some(Found::Listed(v)),
            None if !self.present(href) => None,
            None => Some(Found::Unchanged(Version {
                href: href.clone(),
                etag: mapped.clone(),
                content: Content::NotFetched,
            })),
        }
    }
}

impl Snapshot {
    /// A complete listing of nothing at all (none waiting outside the window either) while
    /// items were synced: planned, it would delete them all, which is refused unless forced.
    pub fn emptied(&self, prior: &Prior, opts: PlanOptions) -> bool {
        self.complete
            && self.items.is_empty()
            && self.waiting == 0
            && !prior.is_empty()
            && !opts.force_delete
    }

    /// The listing, indexed by href (see [`Listed`]).
    pub fn index(&self) -> Listed<'_> {
        Listed {
            items: self.items.iter().map(|v| (&v.href, v)).collect(),
            deleted: self.deleted.iter().collect(),
            complete: self.complete,
        }
    }
}

/// A mapped item's version on one side (see [`Listed::find`]).
pub enum Found<'a> {
    Listed(&'a Version),
    /// Not mentioned by an incremental listing: at its mapped etag, not read.
    Unchanged(Version),
}

impl Found<'_> {
    pub fn version(&self) -> &Version {
        match self {
            Found::Listed(v) => v,
            Found::Unchanged(v) => v,
        }
    }
}

/// The mappings of a pair, found by either side's href.
#[derive(Debug, Clone, Default)]
pub struct Prior {
    by_a: HashMap<Href, Mapping>,
    /// B href → A href.
    by_b: HashMap<Href, Href>,
}

impl Prior {
    pub fn new() -> Prior {
        Prior::default()
    }

    pub fn with_capacity(n: usize) -> Prior {
        Prior {
            by_a: HashMap::with_capacity(n),
            by_b: HashMap::with_capacity(n),
        }
    }

    /// Records `m`, replacing the mapping of its A href and any that claimed its B href (as the
    /// state store does).
    pub fn insert(&mut self, m: Mapping) {
        if let Some(old) = self.by_a.get(&m.a_href) {
            self.by_b.remove(&old.b_href);
        }
        if let Some(old_a) = self.by_b.get(&m.b_href)
            && *old_a != m.a_href
        {
            let old_a = old_a.clone();
            self.by_a.remove(&old_a);
        }
        self.by_b.insert(m.b_href.clone(), m.a_href.clone());
        self.by_a.insert(m.a_href.clone(), m);
    }

    /// Drops the mapping whose item on side A is at `a_href`.
    pub fn remove(&mut self, a_href: &Href) -> Option<Mapping> {
        let m = self.by_a.remove(a_href)?;
        self.by_b.remove(&m.b_href);
        Some(m)
    }

    /// The mapping whose item on `side` is at `href`.
    pub fn get(&self, side: Side, href: &Href) -> Option<&Mapping> {
        match side {
            Side::A => self.by_a.get(href),
            Side::B => self.by_b.get(href).and_then(|a| self.by_a.get(a)),
        }
    }

    pub fn values(&self) -> impl Iterator<Item = &Mapping> {
        self.by_a.values()
    }

    pub fn len(&self) -> usize {
        self.by_a.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_a.is_empty()
    }
}

impl FromIterator<Mapping> for Prior {
    fn from_iter<I: IntoIterator<Item = Mapping>>(iter: I) -> Prior {
        let mut prior = Prior::new();
        for m in iter {
            prior.insert(m);
        }
        prior
    }
}

/// A copy on the receiving side that a create takes over instead of writing a second one.
pub type Adopt = (Href, Etag);

#[derive(Debug, Clone)]
pub enum Action {
    /// Write the item at `from_href` as a new item on side `to`, or take over `adopt` (a copy of
    /// the same meeting that no mapping names).
    Create {
        to: Side,
        from_href: Href,
        from_etag: Etag,
        item: Arc<Prepared>,
        adopt: Option<Adopt>,
    },
    /// Overwrite the mapped copy on side `to` (which is at `etag`).
    Update {
        to: Side,
        from_href: Href,
        from_etag: Etag,
        href: Href,
        etag: Etag,
        item: Arc<Prepared>,
    },
    /// Delete the item at `href` on side `on`: a copy whose original is gone (its `mapping`
    /// goes with it), or, without a mapping, an item that did not come from the other side
    /// (`extras = "delete"`).
    Delete {
        on: Side,
        href: Href,
        etag: Etag,
        mapping: Option<Mapping>,
    },
    /// Both sides agree but an etag moved: record the new etags, write nothing remote.
    Refresh { mapping: Mapping },
    /// The item and its copy are both gone: drop the mapping.
    Forget { mapping: Mapping },
    /// The item at `href` cannot be synced this pass; its mapping and copy are kept.
    Skip {
        href: Href,
        kind: ErrorKind,
        reason: String,
    },
    /// A create whose outcome was never recorded left a copy whose original is gone (or is now
    /// mapped elsewhere): delete it if it still carries the pending identity.
    DeleteOrphan { on: Side, pending: Pending },
    /// A pending create is settled: recorded, or nothing was written.
    ClearPending { pending: Pending },
    /// The item (on side `on`) is new or changed but outside the sync window: write nothing, and
    /// remember it until `enters` (when it will overlap the window) so an incremental listing,
    /// which will not mention it again, does not lose it. `forget`: a mapping whose copy is gone.
    Defer {
        on: Side,
        href: Href,
        etag: Etag,
        identity: IdentityKey,
        enters: Option<chrono::DateTime<chrono::Utc>>,
        forget: Option<Mapping>,
    },
}

impl Action {
    /// The side a remote write changes; `None` for the actions that only record.
    pub fn writes(&self) -> Option<Side> {
        match self {
            Action::Create { to, .. } | Action::Update { to, .. } => Some(*to),
            Action::Delete { on, .. } | Action::DeleteOrphan { on, .. } => Some(*on),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub actions: Vec<Action>,
    /// Items found in step on both sides.
    pub unchanged: u64,
    /// Versions set aside (two ways: conflicts, edits that beat deletes), for the report.
    pub resolved: Vec<Resolved>,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct PlanOptions {
    /// Delete copies even when the side copied from lists nothing at all.
    pub force_delete: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error(
        "the source calendar lists no items but {mapped} were synced before; refusing to delete them all \
         (an emptied or wrongly mounted source?). Re-run with --force-delete if the source really is empty"
    )]
    SourceEmpty { mapped: usize },
    #[error(
        "the {calendar} calendar lists no items but {mapped} were synced before; refusing to delete \
         them all from the other calendar (an emptied or wrongly mounted calendar?). Re-run with \
         --force-delete if it really is empty"
    )]
    SideEmpty {
        /// `source` or `target`.
        calendar: &'static str,
        mapped: usize,
    },
}
