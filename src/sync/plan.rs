//! The decision table: every item of a pass, and every create a crash left pending.

use std::collections::{HashMap, HashSet};

use super::model::{
    Action, Content, Mode, Plan, PlanError, PlanOptions, Prepared, Prior, SourceSnapshot,
    TargetSnapshot, Version,
};
use crate::domain::error::ErrorKind;
use crate::domain::mapping::{Mapping, Pending, Side};
use crate::domain::types::{Etag, Href};
use crate::domain::window::Fit;

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
        push(plan_item(mode, Some(s), t, p));
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
                push(plan_item(mode, None, t, Some(p)));
            } else {
                let unchanged = Version {
                    href: p.href(from).clone(),
                    etag: p.etag(from).clone(),
                    content: Content::NotFetched,
                };
                push(plan_item(mode, Some(&unchanged), t, Some(p)));
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

/// The decision for one item (`s` on the side copied from, `t` its copy); `None` means "in
/// step, nothing to do".
pub fn plan_item(
    mode: Mode,
    s: Option<&Version>,
    t: Option<&Version>,
    p: Option<&Mapping>,
) -> Option<Action> {
    let (from, to) = (mode.from(), mode.to());
    match (s, t, p) {
        (None, _, None) => None,
        (None, None, Some(p)) => Some(Action::Forget { mapping: p.clone() }),
        (None, Some(t), Some(p)) => Some(Action::Delete {
            on: to,
            href: t.href.clone(),
            etag: t.etag.clone(),
            mapping: Some(p.clone()),
        }),
        // New, or its copy vanished: (re)create, if inside the window.
        (Some(s), _, None) | (Some(s), None, Some(_)) => Some(match &s.content {
            Content::Fetched(item) if !item.fit.is_inside() => defer(from, s, item, p.cloned()),
            Content::Fetched(item) => Action::Create {
                to,
                from_href: s.href.clone(),
                from_etag: s.etag.clone(),
                item: item.clone(),
                adopt: None,
            },
            Content::Broken(kind, reason) => skip(s, *kind, reason.clone()),
            Content::NotFetched => skip(s, ErrorKind::Transient, "source item was not read".into()),
        }),
        (Some(s), Some(t), Some(p)) => {
            let want = match &s.content {
                Content::Fetched(item) => item.hash,
                Content::NotFetched if s.etag == *p.etag(from) => p.hash,
                Content::NotFetched => {
                    let why = "changed source item was not read";
                    return Some(skip(s, ErrorKind::Transient, why.into()));
                }
                Content::Broken(kind, reason) => return Some(skip(s, *kind, reason.clone())),
            };
            let have = match &t.content {
                Content::Fetched(copy) => Some(copy.hash),
                Content::NotFetched if t.etag == *p.etag(to) => Some(p.hash),
                Content::NotFetched | Content::Broken(..) => None,
            };
            if have == Some(want) {
                if s.etag == *p.etag(from) && t.etag == *p.etag(to) && want == p.hash {
                    return None;
                }
                let identity = match &s.content {
                    Content::Fetched(item) => item.identity.clone(),
                    _ => p.identity.clone(),
                };
                return Some(Action::Refresh {
                    mapping: Mapping::between(
                        from,
                        (s.href.clone(), s.etag.clone()),
                        (t.href.clone(), t.etag.clone()),
                        identity,
                        want,
                    ),
                });
            }
            match &s.content {
                // Outside the window nothing is written: an edit of the copy is accepted as it
                // is, a change of the original waits until the item enters the window.
                Content::Fetched(item) if !item.fit.is_inside() => {
                    if s.etag != *p.etag(from) {
                        return Some(defer(from, s, item, None));
                    }
                    if t.etag == *p.etag(to) {
                        return None;
                    }
                    Some(Action::Refresh {
                        mapping: p.with(to, t.href.clone(), t.etag.clone()),
                    })
                }
                Content::Fetched(item) => Some(Action::Update {
                    to,
                    from_href: s.href.clone(),
                    from_etag: s.etag.clone(),
                    href: t.href.clone(),
                    etag: t.etag.clone(),
                    item: item.clone(),
                }),
                _ => {
                    let why = "target copy differs but the source item was not read";
                    Some(skip(s, ErrorKind::Transient, why.into()))
                }
            }
        }
    }
}

fn skip(s: &Version, kind: ErrorKind, reason: String) -> Action {
    Action::Skip {
        href: s.href.clone(),
        kind,
        reason,
    }
}

/// Nothing written for `s` (on side `on`), outside the window: remember it.
pub(super) fn defer(on: Side, s: &Version, item: &Prepared, forget: Option<Mapping>) -> Action {
    let enters = match item.fit {
        Fit::Outside { enters } => enters,
        Fit::Inside => None,
    };
    Action::Defer {
        on,
        href: s.href.clone(),
        etag: s.etag.clone(),
        identity: item.identity.clone(),
        enters,
        forget,
    }
}
