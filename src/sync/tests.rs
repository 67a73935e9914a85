//! The decision table, for a pass copying A → B and mirrored for one copying B → A: the same
//! cases must give the same decisions, each writing the other side.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::decide::plan_item;
use super::select::{Unmapped, select};
use super::*;
use crate::domain::error::ErrorKind;
use crate::domain::identity::IdentityKey;
use crate::domain::item::Item;
use crate::domain::mapping::{Mapping, Pending};
use crate::domain::pair::Extras;
use crate::domain::types::{Etag, Href};
use crate::domain::window::Fit;

const MODES: [Mode; 2] = [
    Mode::OneWay { from: Side::A },
    Mode::OneWay { from: Side::B },
];

fn href(s: &str) -> Href {
    Href::new(s).unwrap()
}

/// `name` on `side`: "/a/NAME.ics" or "/b/NAME.ics".
fn on(side: Side, name: &str) -> Href {
    href(&format!("/{}/{name}.ics", side.as_str()))
}

fn item(uid: &str, summary: &str) -> Arc<Prepared> {
    let ics = format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nUID:{uid}\r\nDTSTART:20260101T100000Z\r\nSUMMARY:{summary}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    );
    Arc::new(Prepared::new(Item::parse(&ics).unwrap()))
}

fn version(href: Href, etag: &str, summary: Option<&str>) -> Version {
    Version {
        href,
        etag: Etag::new(etag),
        content: summary.map_or(Content::NotFetched, |s| Content::Fetched(item("x", s))),
    }
}

/// The item "x" on the side copied from, at `etag`, read as `summary` when given.
fn src(mode: Mode, etag: &str, summary: Option<&str>) -> Version {
    version(on(mode.from(), "x"), etag, summary)
}

/// Its copy on the other side.
fn tgt(mode: Mode, etag: &str, summary: Option<&str>) -> Version {
    version(on(mode.to(), "x"), etag, summary)
}

fn broken(v: Version) -> Version {
    Version {
        content: Content::Broken(ErrorKind::InvalidData, "bad".into()),
        ..v
    }
}

/// The mapping made when the item read `summary` at etag "s1" and its copy was at "t1".
fn prior(mode: Mode, summary: &str) -> Mapping {
    let it = item("x", summary);
    Mapping::between(
        mode.from(),
        (on(mode.from(), "x"), Etag::new("s1")),
        (on(mode.to(), "x"), Etag::new("t1")),
        it.identity.clone(),
        it.hash,
    )
}

pub(super) fn kind(a: &Option<Action>) -> &'static str {
    match a {
        None => "none",
        Some(Action::Create { .. }) => "create",
        Some(Action::Update { .. }) => "update",
        Some(Action::Delete { .. }) => "delete",
        Some(Action::Refresh { .. }) => "refresh",
        Some(Action::Forget { .. }) => "forget",
        Some(Action::Skip { .. }) => "skip",
        Some(Action::DeleteOrphan { .. }) => "delete-orphan",
        Some(Action::ClearPending { .. }) => "clear-pending",
        Some(Action::Defer { forget: None, .. }) => "defer",
        Some(Action::Defer {
            forget: Some(_), ..
        }) => "defer-forget",
    }
}

/// The one table's decision for `s` on the side copied from and `t`, its copy.
fn decide(
    mode: Mode,
    s: Option<&Version>,
    t: Option<&Version>,
    p: Option<&Mapping>,
) -> Option<Action> {
    let (a, b) = mode.from().ab(s, t);
    let (action, resolved) = plan_item(mode, a, b, p);
    assert_eq!(resolved, None, "one way, nothing is set aside");
    action
}

/// The side copied to as these cases name it: its copies by href.
type TargetSnapshot = HashMap<Href, Version>;

/// That side as the planner takes it: listed in full.
fn listed_in_full(t: &TargetSnapshot) -> Snapshot {
    Snapshot {
        items: t.values().cloned().collect(),
        complete: true,
        ..Snapshot::default()
    }
}

/// The one planner, given the side copied from and the side copied to.
fn plan(
    mode: Mode,
    s: &Snapshot,
    t: &TargetSnapshot,
    prior: &Prior,
    pending: &[Pending],
    opts: PlanOptions,
) -> Result<Plan, PlanError> {
    let t = listed_in_full(t);
    let (a, b) = mode.from().ab(s, &t);
    let plan = super::plan(mode, a, b, prior, pending, opts)?;
    assert!(plan.resolved.is_empty(), "one way, nothing is set aside");
    Ok(plan)
}

/// What to read of the side copied from and of the side copied to, given the copies' etags.
fn fetch_lists(
    mode: Mode,
    s: &Snapshot,
    t: &HashMap<Href, Etag>,
    prior: &Prior,
    full: bool,
) -> (Vec<Href>, Vec<Href>) {
    let t: TargetSnapshot = t
        .iter()
        .map(|(h, e)| (h.clone(), version(h.clone(), e.as_str(), None)))
        .collect();
    let t = listed_in_full(&t);
    let (a, b) = mode.from().ab(s, &t);
    let [a, b] = super::fetch_lists(mode, [a, b], prior, full);
    mode.from().ab(a, b)
}

/// The side a remote action writes, if it writes one.
fn written_side(a: &Option<Action>) -> Option<Side> {
    a.as_ref().and_then(Action::writes)
}

type Case = (
    &'static str,
    Option<Version>,
    Option<Version>,
    Option<Mapping>,
    &'static str,
);

/// Each case decides as named, and whatever it writes is on the side copied to.
fn check(mode: Mode, cases: Vec<Case>) {
    for (name, s, t, p, want) in cases {
        let got = decide(mode, s.as_ref(), t.as_ref(), p.as_ref());
        assert_eq!(kind(&got), want, "{mode:?}, {name}: {got:?}");
        if let Some(side) = written_side(&got) {
            assert_eq!(side, mode.to(), "{mode:?}, {name}: {got:?}");
        }
    }
}

/// The truth table over (original?, copy?, previous?) × changed/unchanged.
fn truth_table(mode: Mode) {
    let p = prior(mode, "A");
    let (src, tgt) = (|e, s| src(mode, e, s), |e, s| tgt(mode, e, s));
    let cases: Vec<Case> = vec![
        ("nothing anywhere", None, None, None, "none"),
        (
            "target-only item is left alone",
            None,
            Some(tgt("t9", None)),
            None,
            "none",
        ),
        (
            "new in source",
            Some(src("s1", Some("A"))),
            None,
            None,
            "create",
        ),
        (
            "new in source but unreadable",
            Some(broken(src("s1", None))),
            None,
            None,
            "skip",
        ),
        ("both gone", None, None, Some(p.clone()), "forget"),
        (
            "deleted in source",
            None,
            Some(tgt("t1", None)),
            Some(p.clone()),
            "delete",
        ),
        (
            "deleted in source, target edited",
            None,
            Some(tgt("t2", Some("B"))),
            Some(p.clone()),
            "delete",
        ),
        (
            "target copy vanished: recreate",
            Some(src("s1", Some("A"))),
            None,
            Some(p.clone()),
            "create",
        ),
        (
            "target copy vanished, source changed",
            Some(src("s2", Some("B"))),
            None,
            Some(p.clone()),
            "create",
        ),
        (
            "unchanged both",
            Some(src("s1", None)),
            Some(tgt("t1", None)),
            Some(p.clone()),
            "none",
        ),
        (
            "source changed",
            Some(src("s2", Some("B"))),
            Some(tgt("t1", None)),
            Some(p.clone()),
            "update",
        ),
        (
            "source etag moved, same content",
            Some(src("s2", Some("A"))),
            Some(tgt("t1", None)),
            Some(p.clone()),
            "refresh",
        ),
        (
            "target edited: source wins",
            Some(src("s1", Some("A"))),
            Some(tgt("t2", Some("B"))),
            Some(p.clone()),
            "update",
        ),
        (
            "target etag moved, same content",
            Some(src("s1", Some("A"))),
            Some(tgt("t2", Some("A"))),
            Some(p.clone()),
            "refresh",
        ),
        (
            "target etag moved, not read",
            Some(src("s1", None)),
            Some(tgt("t2", None)),
            Some(p.clone()),
            "skip",
        ),
        (
            "target unreadable",
            Some(src("s1", Some("A"))),
            Some(broken(tgt("t2", None))),
            Some(p.clone()),
            "update",
        ),
        (
            "both changed to the same",
            Some(src("s2", Some("B"))),
            Some(tgt("t2", Some("B"))),
            Some(p.clone()),
            "refresh",
        ),
        (
            "both changed differently",
            Some(src("s2", Some("B"))),
            Some(tgt("t2", Some("C"))),
            Some(p.clone()),
            "update",
        ),
        (
            "source changed but unreadable",
            Some(broken(src("s2", None))),
            Some(tgt("t1", None)),
            Some(p.clone()),
            "skip",
        ),
        (
            "source changed, not read",
            Some(src("s2", None)),
            Some(tgt("t1", None)),
            Some(p.clone()),
            "skip",
        ),
        (
            "full compare, in step",
            Some(src("s1", Some("A"))),
            Some(tgt("t1", Some("A"))),
            Some(p.clone()),
            "none",
        ),
        (
            "full compare, target drifted at same etag",
            Some(src("s1", Some("A"))),
            Some(tgt("t1", Some("B"))),
            Some(p.clone()),
            "update",
        ),
    ];
    check(mode, cases);
}

#[test]
fn truth_table_one_way_from_a() {
    truth_table(Mode::OneWay { from: Side::A });
}

#[test]
fn truth_table_one_way_from_b_mirrors_it() {
    truth_table(Mode::OneWay { from: Side::B });
}

/// The original `summary` fetched at `etag`, outside the window.
fn src_outside(mode: Mode, etag: &str, summary: &str) -> Version {
    let later = chrono::DateTime::from_timestamp(2_000_000_000, 0);
    let it =
        Arc::new(Prepared::clone(&item("x", summary)).with_fit(Fit::Outside { enters: later }));
    Version {
        content: Content::Fetched(it),
        ..src(mode, etag, None)
    }
}

/// Outside the window nothing is written, and nothing is deleted for it either.
#[test]
fn window_cases() {
    for mode in MODES {
        let p = prior(mode, "A");
        let (out, tgt) = (|e, s| src_outside(mode, e, s), |e, s| tgt(mode, e, s));
        let cases: Vec<Case> = vec![
            ("new, outside", Some(out("s1", "A")), None, None, "defer"),
            (
                "aged out, unchanged",
                Some(out("s1", "A")),
                Some(tgt("t1", Some("A"))),
                Some(p.clone()),
                "none",
            ),
            (
                "aged out, source changed",
                Some(out("s2", "B")),
                Some(tgt("t1", None)),
                Some(p.clone()),
                "defer",
            ),
            (
                "aged out, target edited: kept as is",
                Some(out("s1", "A")),
                Some(tgt("t2", Some("B"))),
                Some(p.clone()),
                "refresh",
            ),
            (
                "aged out, target copy gone",
                Some(out("s1", "A")),
                None,
                Some(p.clone()),
                "defer-forget",
            ),
            (
                "aged out, same content, etag moved",
                Some(out("s2", "A")),
                Some(tgt("t1", None)),
                Some(p.clone()),
                "refresh",
            ),
            (
                "aged out, deleted in source",
                None,
                Some(tgt("t1", None)),
                Some(p.clone()),
                "delete",
            ),
        ];
        check(mode, cases);
        // The accepted edit keeps the hash of what was last written.
        match decide(
            mode,
            Some(&out("s1", "A")),
            Some(&tgt("t2", Some("B"))),
            Some(&p),
        ) {
            Some(Action::Refresh { mapping }) => {
                assert_eq!(
                    (
                        mapping.etag(mode.from()).as_str(),
                        mapping.etag(mode.to()).as_str()
                    ),
                    ("s1", "t2")
                );
                assert_eq!(mapping.hash, p.hash);
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn update_carries_if_match_etag_and_refresh_new_etags() {
    for mode in MODES {
        let p = prior(mode, "A");
        match decide(
            mode,
            Some(&src(mode, "s1", Some("A"))),
            Some(&tgt(mode, "t2", Some("B"))),
            Some(&p),
        ) {
            Some(Action::Update { etag, href, .. }) => {
                assert_eq!(etag.as_str(), "t2");
                assert_eq!(href, on(mode.to(), "x"));
            }
            other => panic!("{other:?}"),
        }
        match decide(
            mode,
            Some(&src(mode, "s2", Some("A"))),
            Some(&tgt(mode, "t1", None)),
            Some(&p),
        ) {
            Some(Action::Refresh { mapping }) => {
                assert_eq!(mapping.etag(mode.from()).as_str(), "s2");
                assert_eq!(mapping.etag(mode.to()).as_str(), "t1");
                assert_eq!(*mapping.href(Side::A), on(Side::A, "x"));
            }
            other => panic!("{other:?}"),
        }
    }
}

fn snapshot(items: Vec<Version>, complete: bool) -> Snapshot {
    Snapshot {
        items,
        deleted: Vec::new(),
        complete,
        waiting: 0,
    }
}

fn one_mapping(mode: Mode) -> (Prior, TargetSnapshot) {
    let prior: Prior = [prior(mode, "A")].into_iter().collect();
    let target: TargetSnapshot = [(on(mode.to(), "x"), tgt(mode, "t1", None))].into();
    (prior, target)
}

#[test]
fn mass_delete_guard() {
    for mode in MODES {
        let (prior, target) = one_mapping(mode);
        let run = |complete, force_delete| {
            let opts = PlanOptions { force_delete };
            plan(
                mode,
                &snapshot(vec![], complete),
                &target,
                &prior,
                &[],
                opts,
            )
        };
        assert_eq!(
            run(true, false).unwrap_err(),
            PlanError::SourceEmpty { mapped: 1 }
        );
        let forced = run(true, true).unwrap();
        assert!(
            matches!(forced.actions.as_slice(), [Action::Delete { on, .. }] if *on == mode.to())
        );
        // An empty incremental listing only means "nothing changed".
        let delta = run(false, false).unwrap();
        assert!(delta.actions.is_empty());
        assert_eq!(delta.unchanged, 1);
    }
}

#[test]
fn incremental_deletions_and_unmentioned_items() {
    for mode in MODES {
        let (prior, target) = one_mapping(mode);
        let mut snap = snapshot(vec![], false);
        snap.deleted.push(on(mode.from(), "x"));
        let plan = plan(mode, &snap, &target, &prior, &[], PlanOptions::default()).unwrap();
        assert!(matches!(plan.actions.as_slice(), [Action::Delete { .. }]));
    }
}

#[test]
fn fetch_lists_pick_only_what_moved() {
    for mode in MODES {
        let (s_x, t_x) = (on(mode.from(), "x"), on(mode.to(), "x"));
        let (prior, _) = one_mapping(mode);
        let unchanged = snapshot(vec![src(mode, "s1", None)], true);
        let target: HashMap<Href, Etag> = [(t_x.clone(), Etag::new("t1"))].into();
        let lists =
            |s: &Snapshot, t: &HashMap<Href, Etag>, full| fetch_lists(mode, s, t, &prior, full);
        assert_eq!(lists(&unchanged, &target, false), (vec![], vec![]));
        let (s, t) = lists(&unchanged, &target, true);
        assert_eq!((s.len(), t.len()), (1, 1));
        let moved: HashMap<Href, Etag> = [(t_x.clone(), Etag::new("t2"))].into();
        assert_eq!(
            lists(&unchanged, &moved, false),
            (vec![s_x.clone()], vec![t_x.clone()])
        );
        let gone = HashMap::new();
        assert_eq!(lists(&unchanged, &gone, false), (vec![s_x.clone()], vec![]));
        // Incremental listing that does not mention the item, but its copy vanished.
        let delta = snapshot(vec![], false);
        assert_eq!(lists(&delta, &gone, false), (vec![s_x.clone()], vec![]));
        assert_eq!(lists(&delta, &target, false), (vec![], vec![]));
        let new = snapshot(vec![version(on(mode.from(), "new"), "n1", None)], false);
        assert_eq!(lists(&new, &target, false).0, vec![on(mode.from(), "new")]);
    }
}

#[test]
fn pending_creates_after_a_crash() {
    for mode in MODES {
        let it = item("x", "A");
        let pending = Pending::new(
            mode.from(),
            on(mode.from(), "x"),
            on(mode.to(), "x"),
            it.identity.clone(),
        );
        let copy: TargetSnapshot = [(on(mode.to(), "x"), tgt(mode, "t1", None))].into();
        let kinds = |s: &Snapshot, t: &TargetSnapshot, prior: &Prior| {
            let p = plan(
                mode,
                s,
                t,
                prior,
                std::slice::from_ref(&pending),
                PlanOptions::default(),
            )
            .unwrap();
            p.actions
                .iter()
                .map(|a| kind(&Some(a.clone())))
                .collect::<Vec<_>>()
        };
        // Source still there: its own create retries (and will adopt); the pending row stays.
        let present = snapshot(vec![src(mode, "s1", Some("A"))], true);
        assert_eq!(kinds(&present, &copy, &Prior::new()), ["create"]);
        // Source gone: the orphan copy is deleted.
        let gone = snapshot(
            vec![version(on(mode.from(), "other"), "s9", Some("B"))],
            true,
        );
        assert_eq!(
            kinds(&gone, &copy, &Prior::new()),
            ["create", "delete-orphan"]
        );
        // Source gone and nothing was written: just settle.
        assert_eq!(
            kinds(&gone, &TargetSnapshot::new(), &Prior::new()),
            ["create", "clear-pending"]
        );
        // Recorded meanwhile: settle.
        let mapped: Prior = [prior(mode, "A")].into_iter().collect();
        let listed = snapshot(vec![src(mode, "s1", None)], true);
        assert_eq!(kinds(&listed, &copy, &mapped), ["clear-pending"]);
        // Incremental listing that reports the source deleted.
        let mut delta = snapshot(vec![], false);
        delta.deleted.push(on(mode.from(), "x"));
        assert_eq!(kinds(&delta, &copy, &Prior::new()), ["delete-orphan"]);
    }
}

#[test]
fn prior_finds_a_mapping_by_either_href() {
    let m = prior(Mode::OneWay { from: Side::A }, "A");
    let mut prior: Prior = [m.clone()].into_iter().collect();
    assert_eq!(prior.get(Side::A, &on(Side::A, "x")), Some(&m));
    assert_eq!(prior.get(Side::B, &on(Side::B, "x")), Some(&m));
    assert_eq!(prior.get(Side::B, &on(Side::A, "x")), None);
    // A copy moved to a new href: the old one no longer finds it.
    let moved = m.with(Side::B, on(Side::B, "y"), Etag::new("t2"));
    prior.insert(moved.clone());
    assert_eq!(prior.get(Side::B, &on(Side::B, "y")), Some(&moved));
    assert_eq!(prior.get(Side::B, &on(Side::B, "x")), None);
    assert_eq!(prior.len(), 1);
}

/// Each create takes over at most one unmapped copy of its meeting, no copy serves two creates,
/// and only `extras = "delete"` deletes what is left, sparing pending and deferred copies.
#[test]
fn adoption_and_extras_are_planned() {
    for mode in MODES {
        let to = mode.to();
        let create = |name: &str, uid: &str| Action::Create {
            to,
            from_href: on(mode.from(), name),
            from_etag: Etag::new("s1"),
            item: item(uid, "A"),
            adopt: None,
        };
        let base = Plan {
            actions: vec![create("x1", "x"), create("x2", "x"), create("y", "y")],
            ..Plan::default()
        };
        let copy = |name: &str| (on(to, name), Etag::new("c1"));
        let unmapped = Unmapped {
            by_identity: [
                (item("x", "A").identity.clone(), vec![copy("cx")]),
                (item("z", "A").identity.clone(), vec![copy("cz")]),
                (item("w", "A").identity.clone(), vec![copy("cw")]),
                (item("p", "A").identity.clone(), vec![copy("cp")]),
            ]
            .into(),
            unreadable: vec![copy("broken")],
        };
        let pending = [Pending::new(
            mode.from(),
            on(mode.from(), "p"),
            on(to, "cp"),
            item("p", "A").identity.clone(),
        )];
        let outside: HashSet<IdentityKey> = [item("w", "A").identity.clone()].into();
        let adopted = |p: &Plan| -> Vec<Option<Href>> {
            p.actions
                .iter()
                .filter_map(|a| match a {
                    Action::Create { adopt, .. } => Some(adopt.as_ref().map(|(h, _)| h.clone())),
                    _ => None,
                })
                .collect()
        };
        let deleted = |p: &Plan| -> Vec<Href> {
            p.actions
                .iter()
                .filter_map(|a| match a {
                    Action::Delete {
                        on,
                        href,
                        mapping: None,
                        ..
                    } if *on == to => Some(href.clone()),
                    _ => None,
                })
                .collect()
        };
        let mut keep = base.clone();
        select(
            &mut keep,
            mode,
            unmapped.clone(),
            &pending,
            Extras::Keep,
            &outside,
        );
        let claimed = adopted(&keep);
        assert_eq!(
            claimed
                .iter()
                .filter(|a| a.as_ref() == Some(&on(to, "cx")))
                .count(),
            1
        );
        assert_eq!(claimed[2], None);
        assert!(deleted(&keep).is_empty());
        let mut del = base.clone();
        select(&mut del, mode, unmapped, &pending, Extras::Delete, &outside);
        assert_eq!(deleted(&del), [on(to, "broken"), on(to, "cz")]);
    }
}
