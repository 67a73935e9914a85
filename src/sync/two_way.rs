//! Planning a two-way pass: a create, update or delete on either side reaches the other. Both
//! sides edited since the last pass is a conflict, resolved by the pair's policy and reported;
//! an edit on one side beats a delete on the other. Items no mapping names are paired by
//! identity first (a meeting created on both sides, by a repair assistant or a phone, becomes
//! one mapping, never two copies).
//!
//! Hashes of both sides are in one form (the new org's spelling), so equal content compares
//! equal whichever side it was read from.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::model::{
    Action, Content, Plan, PlanError, PlanOptions, Prepared, Prior, SourceSnapshot, Version,
};
use super::plan::defer;
use super::rank::Newness;
pub use crate::domain::direction::ConflictPolicy;
use crate::domain::error::ErrorKind;
use crate::domain::identity::IdentityKey;
use crate::domain::mapping::{Mapping, Pending, Side};
use crate::domain::types::Href;

/// The rules of a two-way pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TwoWay {
    /// The side that is the truth now: the source until the pair is cut over, the target after.
    pub authority: Side,
    pub conflict: ConflictPolicy,
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

impl TwoWay {
    /// The side whose version wins a conflict between `a` and `b`.
    pub fn winner(&self, a: &Prepared, b: &Prepared) -> (Side, &'static str) {
        if self.conflict == ConflictPolicy::Newest {
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
        (self.authority, "both edited: the authority's version wins")
    }
}

/// Copies `item` (on side `from`, at `v`) over the mapped copy `to` on the other side; outside
/// the window nothing is written and the change waits until the item enters it.
fn update(from: Side, v: &Version, to: &Version, item: &Arc<Prepared>) -> Action {
    if !item.fit.is_inside() {
        return defer(from, v, item, None);
    }
    Action::Update {
        to: from.other(),
        from_href: v.href.clone(),
        from_etag: v.etag.clone(),
        href: to.href.clone(),
        etag: to.etag.clone(),
        item: item.clone(),
    }
}

/// Copies `item` (on side `from`) to the other side as a new item; outside the window nothing is
/// written and it waits until the item enters it (`forget`: its mapping, whose copy is gone).
fn create(from: Side, v: &Version, item: &Arc<Prepared>, forget: Option<&Mapping>) -> Action {
    if !item.fit.is_inside() {
        return defer(from, v, item, forget.cloned());
    }
    Action::Create {
        to: from.other(),
        from_href: v.href.clone(),
        from_etag: v.etag.clone(),
        item: item.clone(),
        adopt: None,
    }
}

fn skip(v: &Version, kind: ErrorKind, reason: &str) -> Action {
    Action::Skip {
        href: v.href.clone(),
        kind,
        reason: reason.to_string(),
    }
}

/// Both sides' versions now, as one mapping.
fn both(
    a: &Version,
    b: &Version,
    identity: IdentityKey,
    hash: crate::domain::types::ContentHash,
) -> Mapping {
    Mapping::between(
        Side::A,
        (a.href.clone(), a.etag.clone()),
        (b.href.clone(), b.etag.clone()),
        identity,
        hash,
    )
}

/// The decision for one item: its version on each side and its mapping. `None` is "in step".
/// A set-aside version is named in the second value.
pub fn plan_item(
    rules: TwoWay,
    a: Option<&Version>,
    b: Option<&Version>,
    p: Option<&Mapping>,
) -> (Option<Action>, Option<Resolved>) {
    let href = |v: Option<&Version>| v.map(|v| v.href.clone());
    let resolved = |kept, why| Resolved {
        a_href: href(a),
        b_href: href(b),
        kept,
        why,
    };
    match (a, b, p) {
        (None, None, None) => (None, None),
        (None, None, Some(p)) => (Some(Action::Forget { mapping: p.clone() }), None),
        // New on one side.
        (Some(v), None, None) | (None, Some(v), None) => {
            let from = if a.is_some() { Side::A } else { Side::B };
            let action = match &v.content {
                Content::Fetched(item) => create(from, v, item, None),
                Content::NotFetched => skip(v, ErrorKind::Transient, "new item was not read"),
                Content::Broken(kind, reason) => skip(v, *kind, reason),
            };
            (Some(action), None)
        }
        // Gone on one side: its copy goes, unless it was edited meanwhile (a change wins).
        (Some(v), None, Some(p)) | (None, Some(v), Some(p)) => {
            let side = if a.is_some() { Side::A } else { Side::B };
            match change(v, side, p) {
                Change::Same => (
                    Some(Action::Delete {
                        on: side,
                        href: v.href.clone(),
                        etag: v.etag.clone(),
                        mapping: Some(p.clone()),
                    }),
                    None,
                ),
                Change::Changed(item) if !item.fit.is_inside() => {
                    (Some(create(side, v, item, Some(p))), None)
                }
                Change::Changed(item) => (
                    Some(create(side, v, item, None)),
                    Some(resolved(
                        side,
                        "edited on one side, deleted on the other: the edit wins",
                    )),
                ),
                Change::Unread => {
                    let why = "changed item was not read";
                    (Some(skip(v, ErrorKind::Transient, why)), None)
                }
                Change::Broken(kind, reason) => (Some(skip(v, kind, reason)), None),
            }
        }
        (Some(a), Some(b), p) => pair(rules, a, b, p, resolved),
    }
}

/// Both sides hold the item (mapped, or paired by identity when `p` is `None`).
fn pair(
    rules: TwoWay,
    a: &Version,
    b: &Version,
    p: Option<&Mapping>,
    resolved: impl Fn(Side, &'static str) -> Resolved,
) -> (Option<Action>, Option<Resolved>) {
    let (ca, cb) = match p {
        Some(p) => (change(a, Side::A, p), change(b, Side::B, p)),
        // Paired by identity: nothing is known of either, both are "changed" as read.
        None => match (&a.content, &b.content) {
            (Content::Fetched(x), Content::Fetched(y)) => (Change::Changed(x), Change::Changed(y)),
            _ => {
                let v = if matches!(a.content, Content::Fetched(_)) {
                    b
                } else {
                    a
                };
                let why = "item of a new pair was not read";
                return (Some(skip(v, ErrorKind::Transient, why)), None);
            }
        },
    };
    match (ca, cb) {
        (Change::Broken(kind, reason), _) => (Some(skip(a, kind, reason)), None),
        (_, Change::Broken(kind, reason)) => (Some(skip(b, kind, reason)), None),
        (Change::Unread, _) => (
            Some(skip(a, ErrorKind::Transient, "changed item was not read")),
            None,
        ),
        (_, Change::Unread) => (
            Some(skip(b, ErrorKind::Transient, "changed item was not read")),
            None,
        ),
        (Change::Same, Change::Same) => {
            let p = p.expect("only a mapped pair is unchanged on both sides");
            if a.etag == p.a_etag && b.etag == p.b_etag {
                return (None, None);
            }
            let mapping = both(a, b, p.identity.clone(), p.hash);
            (Some(Action::Refresh { mapping }), None)
        }
        (Change::Changed(x), Change::Same) => (Some(update(Side::A, a, b, x)), None),
        (Change::Same, Change::Changed(y)) => (Some(update(Side::B, b, a, y)), None),
        (Change::Changed(x), Change::Changed(y)) if x.hash == y.hash => {
            let mapping = both(a, b, x.identity.clone(), x.hash);
            (Some(Action::Refresh { mapping }), None)
        }
        (Change::Changed(x), Change::Changed(y)) => {
            let (kept, why) = rules.winner(x, y);
            let action = match kept {
                Side::A => update(Side::A, a, b, x),
                Side::B => update(Side::B, b, a, y),
            };
            (Some(action), Some(resolved(kept, why)))
        }
    }
}

/// Decides every item of a two-way pass over both sides' listings, and every create a crash
/// left pending.
pub fn plan(
    rules: TwoWay,
    a: &SourceSnapshot,
    b: &SourceSnapshot,
    prior: &Prior,
    pending: &[Pending],
    opts: PlanOptions,
) -> Result<(Plan, Vec<Resolved>), PlanError> {
    refuse_empty(a, b, prior, opts)?;
    let (ia, ib) = (index(a), index(b));
    let landed = landed(pending, [a, b], [&ia, &ib], prior);
    let mut out = Plan::default();
    let mut resolved = Vec::new();
    let mut push = |(action, r): (Option<Action>, Option<Resolved>)| {
        match action {
            Some(a) => out.actions.push(a),
            None => out.unchanged += 1,
        }
        resolved.extend(r);
    };
    let mut mapped: [HashSet<&Href>; 2] = [HashSet::new(), HashSet::new()];
    for p in prior.values() {
        // As recorded, or as a write in flight left it (then recorded even if in step).
        let (p, from_crash) = match landed.get(&p.a_href) {
            Some(ours) => (ours, true),
            None => (p, false),
        };
        mapped[0].insert(&p.a_href);
        mapped[1].insert(&p.b_href);
        let va = mapped_version(a, &ia, Side::A, p);
        let vb = mapped_version(b, &ib, Side::B, p);
        match plan_item(rules, va.as_ref(), vb.as_ref(), Some(p)) {
            (None, _) if from_crash => push((Some(Action::Refresh { mapping: p.clone() }), None)),
            decided => push(decided),
        }
    }
    // Copies left by interrupted creates whose original is gone are deleted, not copied back.
    let (settle, orphans) = pendings(pending, [a, b], [&ia, &ib], prior, &landed);
    for (action, href) in settle.into_iter().zip(orphans.iter()) {
        if let Some((side, href)) = href {
            mapped[*side as usize].insert(href);
        }
        push((Some(action), None));
    }
    // Items no mapping names, paired across the sides by identity.
    for (va, vb) in by_identity(a, b, &mapped) {
        push(plan_item(rules, va.as_ref(), vb.as_ref(), None));
    }
    let settled = settled_updates(pending, &out.actions, &landed);
    out.actions.extend(settled);
    Ok((out, resolved))
}

/// Either side listing nothing at all while items were synced: refused, rather than delete
/// them all (unless forced).
fn refuse_empty(
    a: &SourceSnapshot,
    b: &SourceSnapshot,
    prior: &Prior,
    opts: PlanOptions,
) -> Result<(), PlanError> {
    for (side, calendar) in [(a, "source"), (b, "target")] {
        if side.complete
            && side.items.is_empty()
            && side.waiting == 0
            && !prior.is_empty()
            && !opts.force_delete
        {
            return Err(PlanError::SideEmpty {
                calendar,
                mapped: prior.len(),
            });
        }
    }
    Ok(())
}

/// A mapped item's version on `side`: listed, deleted, or (incremental listing) unchanged.
fn mapped_version(
    s: &SourceSnapshot,
    listed: &HashMap<&Href, &Version>,
    side: Side,
    p: &Mapping,
) -> Option<Version> {
    let href = p.href(side);
    match listed.get(href) {
        Some(v) => Some((*v).clone()),
        None if s.complete || s.deleted.contains(href) => None,
        None => Some(Version {
            href: href.clone(),
            etag: p.etag(side).clone(),
            content: Content::NotFetched,
        }),
    }
}

/// The items no mapping names, paired across the sides by identity: each of A's with its
/// partner on B if any, then B's left over (by href).
fn by_identity(
    a: &SourceSnapshot,
    b: &SourceSnapshot,
    mapped: &[HashSet<&Href>; 2],
) -> Vec<(Option<Version>, Option<Version>)> {
    let unmapped = |s: &SourceSnapshot, m: &HashSet<&Href>| -> Vec<Version> {
        s.items
            .iter()
            .filter(|v| !m.contains(&v.href))
            .cloned()
            .collect()
    };
    let identity = |v: &Version| match &v.content {
        Content::Fetched(item) => Some(item.identity.clone()),
        _ => None,
    };
    let mut partners: HashMap<IdentityKey, Vec<Version>> = HashMap::new();
    let mut lone_b = Vec::new();
    for v in unmapped(b, &mapped[1]) {
        match identity(&v) {
            Some(i) => partners.entry(i).or_default().push(v),
            None => lone_b.push(v),
        }
    }
    let mut out: Vec<(Option<Version>, Option<Version>)> = unmapped(a, &mapped[0])
        .into_iter()
        .map(|v| {
            let partner = identity(&v)
                .and_then(|i| partners.get_mut(&i))
                .and_then(Vec::pop);
            (Some(v), partner)
        })
        .collect();
    let mut rest: Vec<Version> = partners.into_values().flatten().chain(lone_b).collect();
    rest.sort_by(|x, y| x.href.cmp(&y.href));
    out.extend(rest.into_iter().map(|v| (None, Some(v))));
    out
}

/// The pending creates' actions, each with the orphan copy it deletes (side and href), if any.
type Settled<'p> = (Vec<Action>, Vec<Option<(Side, &'p Href)>>);

/// What becomes of each create a crash left pending, with the orphan copy to delete (its side
/// and href) where there is one. Settled when its mapping was recorded, no copy is there, or the
/// copy was edited since (an edit wins over a delete: it is copied back as new); left alone
/// while its original is there and unmapped (the two are paired by identity this pass);
/// otherwise its copy is an orphan.
fn pendings<'p>(
    pending: &'p [Pending],
    sides: [&SourceSnapshot; 2],
    listed: [&HashMap<&Href, &Version>; 2],
    prior: &Prior,
    landed: &HashMap<Href, Mapping>,
) -> Settled<'p> {
    let mut actions = Vec::new();
    let mut orphans = Vec::new();
    for pd in pending.iter().filter(|pd| !pd.update) {
        let (to, from) = (pd.to, pd.to.other());
        // Taken as recorded (see `landed`): settled when that mapping is.
        let replaced = prior
            .get(from, pd.href(from))
            .and_then(|m| landed.get(&m.a_href));
        if replaced.is_some_and(|m| m.href(to) == pd.href(to)) {
            continue;
        }
        let (f, t) = (from as usize, to as usize);
        let mapped = prior.get(from, pd.href(from));
        let settled = mapped.is_some_and(|m| m.href(to) == pd.href(to));
        let original_there = listed[f].contains_key(pd.href(from))
            || (!sides[f].complete && !sides[f].deleted.contains(pd.href(from)));
        if !settled && original_there && mapped.is_none() {
            continue;
        }
        let copy_there =
            listed[t].contains_key(pd.href(to)) && prior.get(to, pd.href(to)).is_none();
        // Edited since it was written: someone's change, which wins over the delete.
        let edited = listed[t]
            .get(pd.href(to))
            .is_some_and(|v| match (&v.content, pd.hash) {
                (Content::Fetched(item), Some(written)) => item.hash != written,
                _ => false,
            });
        if settled || !copy_there || edited {
            actions.push(Action::ClearPending {
                pending: pd.clone(),
            });
            orphans.push(None);
        } else {
            actions.push(Action::DeleteOrphan {
                on: to,
                pending: pd.clone(),
            });
            orphans.push(Some((to, pd.href(to))));
        }
    }
    (actions, orphans)
}

/// Mappings as writes in flight left them before the process died (by the recorded mapping's A
/// href): an update that landed (the copy holds the content it wrote, at a new etag), and a
/// create that replaced a mapped copy which had vanished (the new copy, unmapped, is there).
/// Each is recorded as that write would have recorded it; what changed since is then planned as
/// usual, so an edit of the new copy is no mistaken for a stranger's item.
fn landed(
    pending: &[Pending],
    sides: [&SourceSnapshot; 2],
    listed: [&HashMap<&Href, &Version>; 2],
    prior: &Prior,
) -> HashMap<Href, Mapping> {
    let mut out = HashMap::new();
    for pd in pending {
        let (to, from) = (pd.to, pd.to.other());
        let t = &sides[to as usize];
        let gone = |h: &Href| match t.complete {
            true => !listed[to as usize].contains_key(h),
            false => t.deleted.contains(h),
        };
        let Some(copy) = listed[to as usize].get(pd.href(to)) else {
            continue;
        };
        let m = match pd.update {
            true => prior
                .get(Side::A, &pd.a_href)
                .filter(|m| m.b_href == pd.b_href),
            false => prior.get(from, pd.href(from)).filter(|m| {
                m.href(to) != pd.href(to)
                    && gone(m.href(to))
                    && prior.get(to, pd.href(to)).is_none()
            }),
        };
        let Some(m) = m else {
            continue;
        };
        let hash = match (pd.update, pd.hash, &copy.content) {
            (true, Some(h), Content::Fetched(item))
                if item.hash == h && copy.etag != *m.etag(to) =>
            {
                h
            }
            (true, ..) => continue,
            (false, Some(h), _) => h,
            (false, None, _) => m.hash,
        };
        let mut ours = m.with(to, copy.href.clone(), copy.etag.clone());
        ours.hash = hash;
        out.insert(m.a_href.clone(), ours);
    }
    out
}

/// Updates in flight that did not land, or whose mapping is gone, are settled; one that landed
/// stays noted until its mapping is recorded again (a write this pass plans may fail), and one
/// whose copy this pass updates again is noted anew by that write.
fn settled_updates(
    pending: &[Pending],
    planned: &[Action],
    landed: &HashMap<Href, Mapping>,
) -> Vec<Action> {
    let again: HashSet<&Href> = planned
        .iter()
        .filter_map(|a| match a {
            Action::Update {
                to: Side::B,
                from_href,
                ..
            } => Some(from_href),
            Action::Update {
                to: Side::A, href, ..
            } => Some(href),
            _ => None,
        })
        .collect();
    pending
        .iter()
        .filter(|pd| pd.update && !again.contains(&pd.a_href) && !landed.contains_key(&pd.a_href))
        .map(|pd| Action::ClearPending {
            pending: pd.clone(),
        })
        .collect()
}

fn index(s: &SourceSnapshot) -> HashMap<&Href, &Version> {
    s.items.iter().map(|v| (&v.href, v)).collect()
}
