//! Walking a one-way pass: every item of the side copied from (its copy found through the
//! mapping), every mapping the listing did not mention, and every create a crash left pending.
//! Items of the other side no mapping names are not walked: they are adopted or left by
//! [`super::select`]. Each item is decided by the one table ([`super::decide`]).

use super::decide::plan_item;
use super::model::{Action, Found, Mode, Plan, PlanError, PlanOptions, Prior, Snapshot, Version};
use crate::domain::mapping::{Mapping, Pending, Side};
use crate::domain::types::Href;

/// Decides every item of a one-way pass from `from` (the side copied from) to `to`, and every
/// create a crash left pending.
pub(super) fn walk(
    mode: Mode,
    [from_side, to_side]: [&Snapshot; 2],
    prior: &Prior,
    pending: &[Pending],
    opts: PlanOptions,
) -> Result<Plan, PlanError> {
    let (from, to) = (mode.from(), mode.to());
    if from_side.emptied(prior, opts) {
        return Err(PlanError::SourceEmpty {
            mapped: prior.len(),
        });
    }
    let copies = to_side.index();
    let copy = |p: &Mapping| copies.find(p.href(to), p.etag(to));
    let mut out = Plan::default();
    let mut push = |a: Option<Action>| match a {
        Some(a) => out.actions.push(a),
        None => out.unchanged += 1,
    };
    let mut matched = 0;
    for s in &from_side.items {
        let p = prior.get(from, &s.href);
        matched += usize::from(p.is_some());
        let t = p.and_then(copy);
        push(decide(mode, Some(s), t.as_ref().map(|t| t.version()), p));
    }
    // The side copied from by href, when anything needs it: mappings the listing did not
    // mention (deleted, or unchanged since an incremental listing) and pending creates.
    let listed = (matched < prior.len() || !pending.is_empty()).then(|| from_side.index());
    if let Some(listed) = listed.as_ref().filter(|_| matched < prior.len()) {
        for p in prior.values() {
            let s = match listed.find(p.href(from), p.etag(from)) {
                Some(Found::Listed(_)) => continue,
                s => s,
            };
            let t = copy(p);
            let (s, t) = (
                s.as_ref().map(Found::version),
                t.as_ref().map(Found::version),
            );
            push(decide(mode, s, t, Some(p)));
        }
    }
    // A copy a pending create names is there: listed, or mapped and not gone.
    let copy_there = |h: &Href| match prior.get(to, h) {
        Some(m) => copy(m).is_some(),
        None => copies.contains(h),
    };
    let present = |h: &Href| listed.as_ref().is_some_and(|l| l.present(h));
    let settled = pending
        .iter()
        .filter_map(|pd| settle(pd, (from, to), prior, present(pd.href(from)), copy_there));
    out.actions.extend(settled);
    Ok(out)
}

/// What becomes of a create a crash left pending. An update in flight, or a create written the
/// other way before a cutover: settled (an update's copy is restored from the truth like any
/// other; a create's is adopted). Settled when recorded; left alone (`None`) while its original
/// is there and unmapped, since the item's own create retries on the same name and adopts the
/// copy; else its copy, if there, is an orphan.
fn settle(
    pd: &Pending,
    (from, to): (Side, Side),
    prior: &Prior,
    original_there: bool,
    copy_there: impl Fn(&Href) -> bool,
) -> Option<Action> {
    let clear = || {
        Some(Action::ClearPending {
            pending: pd.clone(),
        })
    };
    if pd.update || pd.to != to {
        return clear();
    }
    let mapped = prior.get(from, pd.href(from));
    if mapped.is_some_and(|m| m.href(to) == pd.href(to)) {
        return clear();
    }
    if original_there && mapped.is_none() {
        return None;
    }
    match copy_there(pd.href(to)) {
        true => Some(Action::DeleteOrphan {
            on: to,
            pending: pd.clone(),
        }),
        false => clear(),
    }
}

/// The decision for one item: `s` on the side copied from, `t` its copy.
fn decide(
    mode: Mode,
    s: Option<&Version>,
    t: Option<&Version>,
    p: Option<&Mapping>,
) -> Option<Action> {
    let (a, b) = mode.from().ab(s, t);
    plan_item(mode, a, b, p).0
}
