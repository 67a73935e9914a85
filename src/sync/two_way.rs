//! Walking a two-way pass: every mapping, every create a crash left pending, and the items no
//! mapping names, paired across the sides by identity first (a meeting created on both sides,
//! by a repair assistant or a phone, becomes one mapping, never two copies). Each item is
//! decided by the one table ([`super::decide`]).

use std::collections::{HashMap, HashSet};

use super::decide::plan_item;
use super::model::{
    Action, Content, Found, Listed, Mode, Plan, PlanError, PlanOptions, Prior, Resolved, Snapshot,
    Version,
};
use crate::domain::identity::IdentityKey;
use crate::domain::mapping::{Mapping, Pending, Side};
use crate::domain::types::Href;

/// Decides every item of a two-way pass over both sides' listings, and every create a crash
/// left pending.
pub(super) fn walk(
    mode: Mode,
    a: &Snapshot,
    b: &Snapshot,
    prior: &Prior,
    pending: &[Pending],
    opts: PlanOptions,
) -> Result<Plan, PlanError> {
    refuse_empty(a, b, prior, opts)?;
    let (ia, ib) = (a.index(), b.index());
    let landed = landed(pending, [&ia, &ib], prior);
    let mut out = Plan::default();
    let mut push = |(action, r): (Option<Action>, Option<Resolved>)| {
        match action {
            Some(a) => out.actions.push(a),
            None => out.unchanged += 1,
        }
        out.resolved.extend(r);
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
        let va = ia.find(&p.a_href, &p.a_etag);
        let vb = ib.find(&p.b_href, &p.b_etag);
        let (va, vb) = (
            va.as_ref().map(Found::version),
            vb.as_ref().map(Found::version),
        );
        match plan_item(mode, va, vb, Some(p)) {
            (None, _) if from_crash => push((Some(Action::Refresh { mapping: p.clone() }), None)),
            decided => push(decided),
        }
    }
    // Copies left by interrupted creates whose original is gone are deleted, not copied back.
    let (settle, orphans) = pendings(pending, [&ia, &ib], prior, &landed);
    for (action, href) in settle.into_iter().zip(orphans.iter()) {
        if let Some((side, href)) = href {
            mapped[*side as usize].insert(href);
        }
        push((Some(action), None));
    }
    // Items no mapping names, paired across the sides by identity.
    for (va, vb) in by_identity(a, b, &mapped) {
        push(plan_item(mode, va.as_ref(), vb.as_ref(), None));
    }
    let settled = settled_updates(pending, &out.actions, &landed);
    out.actions.extend(settled);
    Ok(out)
}

/// Either side listing nothing at all while items were synced: refused, rather than delete
/// them all (unless forced).
fn refuse_empty(
    a: &Snapshot,
    b: &Snapshot,
    prior: &Prior,
    opts: PlanOptions,
) -> Result<(), PlanError> {
    for (side, calendar) in [(a, "source"), (b, "target")] {
        if side.emptied(prior, opts) {
            return Err(PlanError::SideEmpty {
                calendar,
                mapped: prior.len(),
            });
        }
    }
    Ok(())
}

/// The items no mapping names, paired across the sides by identity: each of A's with its
/// partner on B if any, then B's left over (by href).
fn by_identity(
    a: &Snapshot,
    b: &Snapshot,
    mapped: &[HashSet<&Href>; 2],
) -> Vec<(Option<Version>, Option<Version>)> {
    let unmapped = |s: &Snapshot, m: &HashSet<&Href>| -> Vec<Version> {
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
    listed: [&Listed; 2],
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
        let original_there = listed[f].present(pd.href(from));
        if !settled && original_there && mapped.is_none() {
            continue;
        }
        let copy_there = listed[t].contains(pd.href(to)) && prior.get(to, pd.href(to)).is_none();
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
fn landed(pending: &[Pending], listed: [&Listed; 2], prior: &Prior) -> HashMap<Href, Mapping> {
    let mut out = HashMap::new();
    for pd in pending {
        let (to, from) = (pd.to, pd.to.other());
        let t = listed[to as usize];
        let Some(copy) = t.get(pd.href(to)) else {
            continue;
        };
        let m = match pd.update {
            true => prior
                .get(Side::A, &pd.a_href)
                .filter(|m| m.b_href == pd.b_href),
            false => prior.get(from, pd.href(from)).filter(|m| {
                m.href(to) != pd.href(to)
                    && !t.present(m.href(to))
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
