//! The decision for one item, in either mode, as one table in two steps: first which side's
//! state the item takes (its version, or its deletion) — the only question the [`Mode`]
//! answers — then the writes that make the other side match it. One way, the side copied from
//! is always kept, so only the other side is ever written: a one-way pass is the two-way table
//! with writes allowed on one side.
//!
//! Hashes of both sides are in one form (the new org's spelling), so equal content compares
//! equal whichever side it was read from.

use std::sync::Arc;

use super::model::{Action, Content, Mode, Prepared, Resolved, Version};
use crate::domain::error::ErrorKind;
use crate::domain::identity::IdentityKey;
use crate::domain::mapping::{Mapping, Side};
use crate::domain::types::ContentHash;
use crate::domain::window::Fit;

/// The decision for one item: its version on side A and on side B (`None`: not there) and its
/// mapping. `None` is "in step, nothing to do"; a version set aside is named in the second value.
pub(crate) fn plan_item(
    mode: Mode,
    a: Option<&Version>,
    b: Option<&Version>,
    p: Option<&Mapping>,
) -> (Option<Action>, Option<Resolved>) {
    let kept = match mode {
        Mode::OneWay { from } => Kept {
            side: from,
            why: None,
        },
        Mode::TwoWay { .. } => match keep(mode, a, b, p) {
            Ok(kept) => kept,
            Err(Unjudged(v, kind, reason)) => return (Some(skip(v, kind, reason)), None),
        },
    };
    let (k, o) = kept.side.ab(a, b);
    let resolved = kept.why.map(|why| Resolved {
        a_href: a.map(|v| v.href.clone()),
        b_href: b.map(|v| v.href.clone()),
        kept: kept.side,
        why,
    });
    (converge(kept.side, k, o, p), resolved)
}

/// The side whose state an item takes, and why when a version of the other was set aside.
struct Kept {
    side: Side,
    why: Option<&'static str>,
}

impl Kept {
    fn plain<'a>(side: Side) -> Result<Kept, Unjudged<'a>> {
        Ok(Kept { side, why: None })
    }
}

/// A version that cannot be judged (unread, broken): the item is skipped, and why.
struct Unjudged<'a>(&'a Version, ErrorKind, &'a str);

/// What one side's version is against the mapping.
enum Change<'a> {
    Same,
    Changed(&'a Arc<Prepared>),
    /// Its etag moved but it was not read.
    Unread,
    Broken(ErrorKind, &'a str),
}

fn change<'a>(v: &'a Version, side: Side, p: &Mapping) -> Change<'a> {
    match &v.content {
        Content::Fetched(item) if item.hash == p.hash => Change::Same,
        Content::Fetched(item) => Change::Changed(item),
        Content::NotFetched if v.etag == *p.etag(side) => Change::Same,
        Content::NotFetched => Change::Unread,
        Content::Broken(kind, reason) => Change::Broken(*kind, reason),
    }
}

/// Two ways: the side that changed is kept; an edit beats a delete; both edited is a conflict
/// the mode settles. A side that cannot be judged (unread, broken) skips the item.
fn keep<'a>(
    mode: Mode,
    a: Option<&'a Version>,
    b: Option<&'a Version>,
    p: Option<&Mapping>,
) -> Result<Kept, Unjudged<'a>> {
    match (a, b, p) {
        (None, None, _) => Kept::plain(mode.authority()),
        (Some(_), None, None) => Kept::plain(Side::A),
        (None, Some(_), None) => Kept::plain(Side::B),
        // Gone on one side: its deletion is kept, unless the other side was edited meanwhile.
        (Some(v), None, Some(p)) | (None, Some(v), Some(p)) => {
            let side = if a.is_some() { Side::A } else { Side::B };
            match change(v, side, p) {
                Change::Same => Kept::plain(side.other()),
                Change::Changed(item) => Ok(Kept {
                    side,
                    // Outside the window nothing is written, so nothing is set aside yet.
                    why: item
                        .fit
                        .is_inside()
                        .then_some("edited on one side, deleted on the other: the edit wins"),
                }),
                Change::Unread => Err(Unjudged(
                    v,
                    ErrorKind::Transient,
                    "changed item was not read",
                )),
                Change::Broken(kind, reason) => Err(Unjudged(v, kind, reason)),
            }
        }
        (Some(a), Some(b), p) => keep_either(mode, a, b, p),
    }
}

/// Both sides hold the item (mapped, or paired by identity when `p` is `None`).
fn keep_either<'a>(
    mode: Mode,
    a: &'a Version,
    b: &'a Version,
    p: Option<&Mapping>,
) -> Result<Kept, Unjudged<'a>> {
    let (ca, cb) = match p {
        Some(p) => (change(a, Side::A, p), change(b, Side::B, p)),
        // Paired by identity: nothing is known of either, both are "changed" as read.
        None => match (&a.content, &b.content) {
            (Content::Fetched(x), Content::Fetched(y)) => (Change::Changed(x), Change::Changed(y)),
            _ => {
                let v = match a.content {
                    Content::Fetched(_) => b,
                    _ => a,
                };
                return Err(Unjudged(
                    v,
                    ErrorKind::Transient,
                    "item of a new pair was not read",
                ));
            }
        },
    };
    let unread = "changed item was not read";
    match (ca, cb) {
        (Change::Broken(kind, reason), _) => Err(Unjudged(a, kind, reason)),
        (_, Change::Broken(kind, reason)) => Err(Unjudged(b, kind, reason)),
        (Change::Unread, _) => Err(Unjudged(a, ErrorKind::Transient, unread)),
        (_, Change::Unread) => Err(Unjudged(b, ErrorKind::Transient, unread)),
        (Change::Same, Change::Same) => Kept::plain(mode.authority()),
        (Change::Changed(_), Change::Same) => Kept::plain(Side::A),
        (Change::Same, Change::Changed(_)) => Kept::plain(Side::B),
        (Change::Changed(x), Change::Changed(y)) if x.hash == y.hash => Kept::plain(Side::A),
        (Change::Changed(x), Change::Changed(y)) => {
            let (side, why) = mode.winner(x, y);
            Ok(Kept {
                side,
                why: Some(why),
            })
        }
    }
}

/// What makes the other side match `k`, the version kept on side `kept` (`None`: its deletion);
/// `o` is the other side's version.
fn converge(
    kept: Side,
    k: Option<&Version>,
    o: Option<&Version>,
    p: Option<&Mapping>,
) -> Option<Action> {
    match (k, o) {
        (None, None) => p.map(|p| Action::Forget { mapping: p.clone() }),
        // An item no mapping names did not come from the kept side: left alone here.
        (None, Some(o)) => p.map(|p| Action::Delete {
            on: kept.other(),
            href: o.href.clone(),
            etag: o.etag.clone(),
            mapping: Some(p.clone()),
        }),
        (Some(k), None) => Some(copy(kept, k, p)),
        (Some(k), Some(o)) => overwrite(kept, k, o, p),
    }
}

/// Writes `k` (on side `kept`) to the other side as a new item; outside the window nothing is
/// written and it waits until the item enters it (forgetting `p`, whose copy is gone).
fn copy(kept: Side, k: &Version, p: Option<&Mapping>) -> Action {
    match &k.content {
        Content::Fetched(item) if !item.fit.is_inside() => defer(kept, k, item, p.cloned()),
        Content::Fetched(item) => Action::Create {
            to: kept.other(),
            from_href: k.href.clone(),
            from_etag: k.etag.clone(),
            item: item.clone(),
            adopt: None,
        },
        Content::Broken(kind, reason) => skip(k, *kind, reason),
        Content::NotFetched => skip(k, ErrorKind::Transient, "the item to copy was not read"),
    }
}

/// Both sides hold the item: in step (perhaps at new etags), or the other side is overwritten
/// with `k`.
fn overwrite(kept: Side, k: &Version, o: &Version, p: Option<&Mapping>) -> Option<Action> {
    let other = kept.other();
    // Borrowed: most items are in step, and only a refresh needs its own copy.
    let (want, identity): (ContentHash, &IdentityKey) = match (&k.content, p) {
        (Content::Fetched(item), _) => (item.hash, &item.identity),
        (Content::NotFetched, Some(p)) if k.etag == *p.etag(kept) => (p.hash, &p.identity),
        (Content::NotFetched, _) => {
            return Some(skip(k, ErrorKind::Transient, "changed item was not read"));
        }
        (Content::Broken(kind, reason), _) => return Some(skip(k, *kind, reason)),
    };
    let have = match (&o.content, p) {
        (Content::Fetched(copy), _) => Some(copy.hash),
        (Content::NotFetched, Some(p)) if o.etag == *p.etag(other) => Some(p.hash),
        _ => None,
    };
    if have == Some(want) {
        if p.is_some_and(|p| k.etag == *p.etag(kept) && o.etag == *p.etag(other) && want == p.hash)
        {
            return None;
        }
        let (k, o) = (
            (k.href.clone(), k.etag.clone()),
            (o.href.clone(), o.etag.clone()),
        );
        let mapping = Mapping::between(kept, k, o, identity.clone(), want);
        return Some(Action::Refresh { mapping });
    }
    match &k.content {
        Content::Fetched(item) if !item.fit.is_inside() => outside(kept, k, o, item, p),
        Content::Fetched(item) => Some(Action::Update {
            to: other,
            from_href: k.href.clone(),
            from_etag: k.etag.clone(),
            href: o.href.clone(),
            etag: o.etag.clone(),
            item: item.clone(),
        }),
        _ => {
            let why = "the copy differs but the item was not read";
            Some(skip(k, ErrorKind::Transient, why))
        }
    }
}

/// Outside the window nothing is written: an edit of the other side is accepted as it is, a
/// change of the kept side waits until the item enters the window.
fn outside(
    kept: Side,
    k: &Version,
    o: &Version,
    item: &Prepared,
    p: Option<&Mapping>,
) -> Option<Action> {
    let other = kept.other();
    match p {
        Some(p) if k.etag == *p.etag(kept) && o.etag == *p.etag(other) => None,
        Some(p) if k.etag == *p.etag(kept) => Some(Action::Refresh {
            mapping: p.with(other, o.href.clone(), o.etag.clone()),
        }),
        _ => Some(defer(kept, k, item, None)),
    }
}

fn skip(v: &Version, kind: ErrorKind, reason: &str) -> Action {
    Action::Skip {
        href: v.href.clone(),
        kind,
        reason: reason.to_string(),
    }
}

/// Nothing written for `v` (on side `on`), outside the window: remember it.
fn defer(on: Side, v: &Version, item: &Prepared, forget: Option<Mapping>) -> Action {
    let enters = match item.fit {
        Fit::Outside { enters } => enters,
        Fit::Inside => None,
    };
    Action::Defer {
        on,
        href: v.href.clone(),
        etag: v.etag.clone(),
        identity: item.identity.clone(),
        enters,
        forget,
    }
}
