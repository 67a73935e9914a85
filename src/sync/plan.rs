//! Planning a pass in either mode: what must be read before planning, and one entry that walks
//! the pass its mode needs ([`super::one_way`], [`super::two_way`]).

use super::model::{Listed, Mode, Plan, PlanError, PlanOptions, Prior, Snapshot};
use super::{one_way, two_way};
use crate::domain::mapping::{Mapping, Pending, Side};
use crate::domain::types::Href;

/// Decides what to do with every item of the pair, and with creates left pending by a crash:
/// `a` and `b` are both sides as listed, with what was read of them.
pub fn plan(
    mode: Mode,
    a: &Snapshot,
    b: &Snapshot,
    prior: &Prior,
    pending: &[Pending],
    opts: PlanOptions,
) -> Result<Plan, PlanError> {
    match mode {
        Mode::OneWay { from } => {
            let (from_side, to_side) = from.ab(a, b);
            one_way::walk(mode, [from_side, to_side], prior, pending, opts)
        }
        Mode::TwoWay { .. } => two_way::walk(mode, a, b, prior, pending, opts),
    }
}

/// Which hrefs of each side (A, B) must be read before planning. A side whose changes are
/// carried over: every item that is new or whose etag moved. One way, also the original of every
/// mapping whose copy moved or vanished (to restore it), and on the other side every mapped copy
/// whose etag moved. With `full`, every item carried over and every mapped copy.
pub fn fetch_lists(mode: Mode, sides: [&Snapshot; 2], prior: &Prior, full: bool) -> [Vec<Href>; 2] {
    let moved = |side: Side| -> Vec<Href> {
        sides[side as usize]
            .items
            .iter()
            .filter(|v| {
                full || prior
                    .get(side, &v.href)
                    .is_none_or(|p| *p.etag(side) != v.etag)
            })
            .map(|v| v.href.clone())
            .collect()
    };
    match mode {
        Mode::TwoWay { .. } => [moved(Side::A), moved(Side::B)],
        Mode::OneWay { from } => {
            let [f, t] = one_way_lists(from, sides, prior, full);
            let (a, b) = from.ab(f, t);
            [a, b]
        }
    }
}

/// One way from `from`: (the side copied from, the other side).
fn one_way_lists(from: Side, sides: [&Snapshot; 2], prior: &Prior, full: bool) -> [Vec<Href>; 2] {
    let to = from.other();
    let (source, target) = (sides[from as usize], sides[to as usize]);
    let copies = target.index();
    // Only an incremental listing leaves items unmentioned.
    let listed = (!source.complete).then(|| source.index());
    let copy_etag = |p: &Mapping| {
        copies
            .find(p.href(to), p.etag(to))
            .map(|c| c.version().etag.clone())
    };
    let mut src: Vec<Href> = Vec::new();
    for s in &source.items {
        match prior.get(from, &s.href) {
            Some(p)
                if !full
                    && *p.etag(from) == s.etag
                    && copy_etag(p).as_ref() == Some(p.etag(to)) => {}
            _ => src.push(s.href.clone()),
        }
    }
    let mut tgt = Vec::new();
    for p in prior.values() {
        let target_etag = copy_etag(p);
        if target_etag
            .as_ref()
            .is_some_and(|e| full || e != p.etag(to))
        {
            tgt.push(p.href(to).clone());
        }
        // Unmentioned by an incremental listing, but its copy moved or vanished.
        let unmentioned = |l: &Listed| !l.contains(p.href(from)) && l.present(p.href(from));
        if listed.as_ref().is_some_and(unmentioned)
            && (full || target_etag.as_ref() != Some(p.etag(to)))
        {
            src.push(p.href(from).clone());
        }
    }
    [src, tgt]
}
