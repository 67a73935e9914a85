//! The decision table: every item of a pass, and every create a crash left pending.

use std::collections::{HashMap, HashSet};

use super::decide::plan_item;
use super::model::{
    Action, Content, Mode, Plan, PlanError, PlanOptions, Prior, SourceSnapshot, TargetSnapshot,
    Version,
};
use crate::domain::mapping::{Mapping, Pending, Side};
use crate::domain::types::{Etag, Href};

/// Which hrefs must be read before planning: every item copied from that is new or whose etag
/// moved, every mapped copy whose etag moved, and the original of every mapping whose copy moved
/// or vanished (to restore it). With `full`, every item copied from and every mapped copy.
pub fn fetch_lists(
    mode: Mode,
    source: &SourceSnapshot,
    target: &HashMap<Href, Etag>,
    prior: &Prior,
    full: bool,
) -> (Vec<Href>, Vec<Href>) {
    let (from, to) = (mode.from(), mode.to());
    let mut src: Vec<Href> = Vec::new();
    let mut listed: HashSet<&Href> = HashSet::with_capacity(source.items.len());
    for s in &source.items {
        listed.insert(&s.href);
        match prior.get(from, &s.href) {
            Some(p)
                if !full
                    && *p.etag(from) == s.etag
                    && target.get(p.href(to)) == Some(p.etag(to)) => {}
            _ => src.push(s.href.clone()),
        }
    }
    let deleted: HashSet<&Href> = source.deleted.iter().collect();
    let mut tgt = Vec::new();
    for p in prior.values() {
        let target_etag = target.get(p.href(to));
        if target_etag.is_some_and(|e| full || e != p.etag(to)) {
            tgt.push(p.href(to).clone());
        }
        // Unmentioned by an incremental listing, but its copy moved or vanished.
        if !source.complete
            && !listed.contains(p.href(from))
            && !deleted.contains(p.href(from))
            && (full || target_etag != Some(p.etag(to)))
        {
            src.push(p.href(from).clone());
        }
    }
    (src, tgt)
}

/// Decides what to do with every item of the pair, and with creates left pending by a crash.
pub fn plan(
    mode: Mode,
    source: &SourceSnapshot,
    target: &TargetSnapshot,
    prior: &Prior,
    pending: &[Pending],
    opts: PlanOptions,
) -> Result<Plan, PlanError> {
    let (from, to) = (mode.from(), mode.to());
    if source.complete
        && source.items.is_empty()
        && source.waiting == 0
        && !prior.is_empty()
        && !opts.force_delete
    {
        return Err(PlanError::SourceEmpty {
            mapped: prior.len(),
        });
    }
    let mut out = Plan::default();
    let mut push = |a: Option<Action>| match a {
        Some(a) => out.actions.push(a),
        None => out.unchanged += 1,
    };
    let mut listed: HashSet<&Href> = HashSet::with_capacity(source.items.len());
    let mut matched = 0;
    for s in &source.items {
        listed.insert(&s.href);
        let p = prior.get(from, &s.href);
        matched += usize::from(p.is_some());
        let t = p.and_then(|p| target.get(p.href(to)));
        push(decide(mode, Some(s), t, p));
    }
    let deleted: HashSet<&Href> = source.deleted.iter().collect();
    // Mappings the listing did not mention: deleted (complete listing) or unchanged (incremental).
    if matched < prior.len() {
        for p in prior.values() {
            if listed.contains(p.href(from)) {
                continue;
            }
            let t = target.get(p.href(to));
            if source.complete || deleted.contains(p.href(from)) {
                push(decide(mode, None, t, Some(p)));
            } else {
                let unchanged = Version {
                    href: p.href(from).clone(),
                    etag: p.etag(from).clone(),
                    content: Content::NotFetched,
                };
                push(decide(mode, Some(&unchanged), t, Some(p)));
            }
        }
    }
    for pd in pending {
        // An update in flight, or a create written the other way before a cutover: settled (an
        // update's copy is restored from the truth like any other; a create's is adopted).
        if pd.update || pd.to != to {
            out.actions.push(Action::ClearPending {
                pending: pd.clone(),
            });
            continue;
        }
        let mapped = prior.get(from, pd.href(from));
        if mapped.is_some_and(|m| m.href(to) == pd.href(to)) {
            out.actions.push(Action::ClearPending {
                pending: pd.clone(),
            });
            continue;
        }
        let source_present = listed.contains(pd.href(from))
            || (!source.complete && !deleted.contains(pd.href(from)));
        if source_present && mapped.is_none() {
            continue; // the item's own Create retries on the same name and adopts the copy
        }
        out.actions.push(match target.get(pd.href(to)) {
            Some(_) => Action::DeleteOrphan {
                on: to,
                pending: pd.clone(),
            },
            None => Action::ClearPending {
                pending: pd.clone(),
            },
        });
    }
    Ok(out)
}

/// The decision for one item of a one-way pass: `s` on the side copied from, `t` its copy.
fn decide(
    mode: Mode,
    s: Option<&Version>,
    t: Option<&Version>,
    p: Option<&Mapping>,
) -> Option<Action> {
    let (a, b) = match mode.from() {
        Side::A => (s, t),
        Side::B => (t, s),
    };
    plan_item(mode, a, b, p).0
}
