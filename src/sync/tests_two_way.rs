//! The two-way decision table, under both conflict policies, with A as the authority and
//! mirrored (the sides swapped, B the authority): the same cases must give the same decisions
//! with the sides swapped.

use std::sync::Arc;

use super::decide::plan_item;
use super::tests::kind;
use super::*;
use crate::domain::direction::ConflictPolicy;
use crate::domain::error::ErrorKind;
use crate::domain::item::Item;
use crate::domain::mapping::{Mapping, Pending};
use crate::domain::types::{Etag, Href};

fn on(side: Side, name: &str) -> Href {
    Href::new(&format!("/{}/{name}.ics", side.as_str())).unwrap()
}

fn item(summary: &str, sequence: u32) -> Arc<Prepared> {
    let ics = format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nUID:x\r\nDTSTART:20260101T100000Z\r\n\
         SEQUENCE:{sequence}\r\nSUMMARY:{summary}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    );
    Arc::new(Prepared::new(Item::parse(&ics).unwrap()))
}

/// One side's version against the mapping made when both read "A" (SEQUENCE 0).
#[derive(Clone, Copy)]
enum V {
    Unchanged,
    Edited(&'static str, u32),
    /// The etag moved, the content did not.
    EtagOnly,
    /// The etag moved and it was not read.
    Unread,
    Broken,
}

fn version(side: Side, v: V) -> Version {
    let etag = |n| Etag::new(format!("{}{n}", side.as_str()));
    let (etag, content) = match v {
        V::Unchanged => (etag(1), Content::NotFetched),
        V::Edited(s, seq) => (etag(2), Content::Fetched(item(s, seq))),
        V::EtagOnly => (etag(2), Content::Fetched(item("A", 0))),
        V::Unread => (etag(2), Content::NotFetched),
        V::Broken => (
            etag(2),
            Content::Broken(ErrorKind::InvalidData, "bad".into()),
        ),
    };
    Version {
        href: on(side, "x"),
        etag,
        content,
    }
}

fn mapping() -> Mapping {
    let it = item("A", 0);
    Mapping::between(
        Side::A,
        (on(Side::A, "x"), Etag::new("a1")),
        (on(Side::B, "x"), Etag::new("b1")),
        it.identity.clone(),
        it.hash,
    )
}

/// (name, A's version, B's version, mapped?, decision, side written, side kept)
type Case = (
    &'static str,
    Option<V>,
    Option<V>,
    bool,
    &'static str,
    Option<Side>,
    Option<Side>,
);

/// Runs `cases` as written (A the authority) and mirrored (sides swapped, B the authority).
fn check(policy: ConflictPolicy, cases: &[Case]) {
    for mirrored in [false, true] {
        let side = |s: Side| if mirrored { s.other() } else { s };
        let rules = Mode::TwoWay {
            authority: side(Side::A),
            conflict: policy,
        };
        for (name, a, b, mapped, want, writes, kept) in cases {
            let (here, there) = if mirrored { (b, a) } else { (a, b) };
            let va = here.map(|v| version(Side::A, v));
            let vb = there.map(|v| version(Side::B, v));
            let p = mapped.then(mapping);
            let (got, resolved) = plan_item(rules, va.as_ref(), vb.as_ref(), p.as_ref());
            let ctx = format!("{policy:?}, mirrored {mirrored}, {name}: {got:?} {resolved:?}");
            assert_eq!(kind(&got), *want, "{ctx}");
            assert_eq!(
                got.as_ref().and_then(Action::writes),
                writes.map(side),
                "{ctx}"
            );
            assert_eq!(resolved.map(|r| r.kept), kept.map(side), "{ctx}");
        }
    }
}

use Side::{A, B};
use V::*;

/// Decisions that do not depend on the policy.
const COMMON: &[Case] = &[
    ("nothing anywhere", None, None, false, "none", None, None),
    (
        "new on A",
        Some(Edited("A", 0)),
        None,
        false,
        "create",
        Some(B),
        None,
    ),
    (
        "new on B",
        None,
        Some(Edited("A", 0)),
        false,
        "create",
        Some(A),
        None,
    ),
    (
        "new on A, not read",
        Some(Unread),
        None,
        false,
        "skip",
        None,
        None,
    ),
    (
        "new on A, unreadable",
        Some(Broken),
        None,
        false,
        "skip",
        None,
        None,
    ),
    ("gone on both sides", None, None, true, "forget", None, None),
    (
        "deleted on B",
        Some(Unchanged),
        None,
        true,
        "delete",
        Some(A),
        None,
    ),
    (
        "deleted on A",
        None,
        Some(Unchanged),
        true,
        "delete",
        Some(B),
        None,
    ),
    (
        "deleted on B, edited on A: the edit wins",
        Some(Edited("B", 0)),
        None,
        true,
        "create",
        Some(B),
        Some(A),
    ),
    (
        "deleted on A, edited on B: the edit wins",
        None,
        Some(Edited("B", 0)),
        true,
        "create",
        Some(A),
        Some(B),
    ),
    (
        "deleted on B, A's etag moved only",
        Some(EtagOnly),
        None,
        true,
        "delete",
        Some(A),
        None,
    ),
    (
        "deleted on B, A moved but not read",
        Some(Unread),
        None,
        true,
        "skip",
        None,
        None,
    ),
    (
        "unchanged on both",
        Some(Unchanged),
        Some(Unchanged),
        true,
        "none",
        None,
        None,
    ),
    (
        "edited on A",
        Some(Edited("B", 0)),
        Some(Unchanged),
        true,
        "update",
        Some(B),
        None,
    ),
    (
        "edited on B",
        Some(Unchanged),
        Some(Edited("B", 0)),
        true,
        "update",
        Some(A),
        None,
    ),
    (
        "A's etag moved only",
        Some(EtagOnly),
        Some(Unchanged),
        true,
        "refresh",
        None,
        None,
    ),
    (
        "both etags moved only",
        Some(EtagOnly),
        Some(EtagOnly),
        true,
        "refresh",
        None,
        None,
    ),
    (
        "both edited alike",
        Some(Edited("B", 1)),
        Some(Edited("B", 1)),
        true,
        "refresh",
        None,
        None,
    ),
    (
        "A moved, not read",
        Some(Unread),
        Some(Unchanged),
        true,
        "skip",
        None,
        None,
    ),
    (
        "B unreadable",
        Some(Edited("B", 0)),
        Some(Broken),
        true,
        "skip",
        None,
        None,
    ),
    (
        "equally new edits: the authority wins",
        Some(Edited("B", 1)),
        Some(Edited("C", 1)),
        true,
        "update",
        Some(B),
        Some(A),
    ),
    (
        "new on both sides alike: paired",
        Some(Edited("A", 0)),
        Some(Edited("A", 0)),
        false,
        "refresh",
        None,
        None,
    ),
    (
        "new on both sides, not read",
        Some(Edited("A", 0)),
        Some(Unread),
        false,
        "skip",
        None,
        None,
    ),
];

#[test]
fn two_way_under_the_authority() {
    check(ConflictPolicy::Authority, COMMON);
    check(
        ConflictPolicy::Authority,
        &[
            (
                "both edited, A newer",
                Some(Edited("B", 5)),
                Some(Edited("C", 1)),
                true,
                "update",
                Some(B),
                Some(A),
            ),
            (
                "both edited, B newer: still the authority",
                Some(Edited("B", 1)),
                Some(Edited("C", 5)),
                true,
                "update",
                Some(B),
                Some(A),
            ),
            (
                "new on both sides, differing",
                Some(Edited("B", 1)),
                Some(Edited("C", 5)),
                false,
                "update",
                Some(B),
                Some(A),
            ),
        ],
    );
}

#[test]
fn two_way_newest_wins() {
    check(ConflictPolicy::Newest, COMMON);
    check(
        ConflictPolicy::Newest,
        &[
            (
                "both edited, A newer",
                Some(Edited("B", 5)),
                Some(Edited("C", 1)),
                true,
                "update",
                Some(B),
                Some(A),
            ),
            (
                "both edited, B newer",
                Some(Edited("B", 1)),
                Some(Edited("C", 5)),
                true,
                "update",
                Some(A),
                Some(B),
            ),
            (
                "new on both sides, B newer",
                Some(Edited("B", 1)),
                Some(Edited("C", 5)),
                false,
                "update",
                Some(A),
                Some(B),
            ),
        ],
    );
}

fn listing(items: Vec<Version>, complete: bool) -> Snapshot {
    Snapshot {
        items,
        deleted: Vec::new(),
        complete,
        waiting: 0,
    }
}

/// The one planner, with the versions it set aside apart.
fn plan(
    mode: Mode,
    a: &Snapshot,
    b: &Snapshot,
    prior: &Prior,
    pending: &[Pending],
    opts: PlanOptions,
) -> Result<(Plan, Vec<Resolved>), PlanError> {
    let mut plan = super::plan(mode, a, b, prior, pending, opts)?;
    let resolved = std::mem::take(&mut plan.resolved);
    Ok((plan, resolved))
}

fn rules() -> Mode {
    Mode::TwoWay {
        authority: A,
        conflict: ConflictPolicy::Authority,
    }
}

#[test]
fn either_side_listing_nothing_refuses_to_delete_everything() {
    let prior: Prior = [mapping()].into_iter().collect();
    let full = |side| listing(vec![version(side, Unchanged)], true);
    for (a, b, calendar) in [
        (listing(vec![], true), full(B), "source"),
        (full(A), listing(vec![], true), "target"),
    ] {
        let err = plan(rules(), &a, &b, &prior, &[], PlanOptions::default()).unwrap_err();
        assert_eq!(
            err,
            PlanError::SideEmpty {
                calendar,
                mapped: 1
            }
        );
        let forced = plan(
            rules(),
            &a,
            &b,
            &prior,
            &[],
            PlanOptions { force_delete: true },
        )
        .unwrap();
        assert!(matches!(
            forced.0.actions.as_slice(),
            [Action::Delete { .. }]
        ));
    }
}

#[test]
fn incremental_listings_and_pairing_by_identity() {
    let prior: Prior = [mapping()].into_iter().collect();
    // Nothing listed on either side: unchanged.
    let quiet = plan(
        rules(),
        &listing(vec![], false),
        &listing(vec![], false),
        &prior,
        &[],
        PlanOptions::default(),
    )
    .unwrap();
    assert_eq!((quiet.0.actions.len(), quiet.0.unchanged), (0, 1));
    // Deleted on A by an incremental listing: its copy on B goes.
    let mut gone = listing(vec![], false);
    gone.deleted.push(on(A, "x"));
    let (p, _) = plan(
        rules(),
        &gone,
        &listing(vec![], false),
        &prior,
        &[],
        PlanOptions::default(),
    )
    .unwrap();
    assert!(matches!(
        p.actions.as_slice(),
        [Action::Delete { on: B, .. }]
    ));
    // A meeting new on both sides (one spelling each) becomes one pair, not two copies; one
    // new on B alone is copied to A.
    let new = |side, name: &str, summary| Version {
        href: on(side, name),
        ..version(side, Edited(summary, 0))
    };
    let mut other = new(B, "y", "A");
    let y = Item::parse(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nUID:y\r\nDTSTART:20260101T100000Z\r\nSUMMARY:Y\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
    )
    .unwrap();
    other.content = Content::Fetched(Arc::new(Prepared::new(y)));
    let a = listing(vec![new(A, "n", "A")], true);
    let b = listing(vec![new(B, "m", "A"), other], true);
    let (p, resolved) = plan(rules(), &a, &b, &Prior::new(), &[], PlanOptions::default()).unwrap();
    let kinds: Vec<_> = p.actions.iter().map(|a| kind(&Some(a.clone()))).collect();
    assert_eq!(kinds, ["refresh", "create"]);
    assert!(
        matches!(&p.actions[1], Action::Create { to: A, from_href, .. } if *from_href == on(B, "y"))
    );
    assert!(resolved.is_empty());
}

#[test]
fn creates_left_pending_by_a_crash() {
    let it = item("A", 0);
    let new = |side, name: &str| Version {
        href: on(side, name),
        etag: Etag::new("e"),
        content: Content::Fetched(it.clone()),
    };
    // A create A → B was sent for /a/n, and the copy /b/n is there; nothing was recorded.
    let pd = Pending::new(A, on(A, "n"), on(B, "n"), it.identity.clone());
    let run = |a: Vec<Version>, b: Vec<Version>, prior: &Prior| {
        let (p, _) = plan(
            rules(),
            &listing(a, true),
            &listing(b, true),
            prior,
            std::slice::from_ref(&pd),
            PlanOptions::default(),
        )
        .unwrap();
        p.actions
            .iter()
            .map(|a| kind(&Some(a.clone())))
            .collect::<Vec<_>>()
    };
    // The original is still there: the two are paired by identity (one mapping, no copy).
    assert_eq!(
        run(vec![new(A, "n")], vec![new(B, "n")], &Prior::new()),
        ["refresh"]
    );
    // The original was deleted meanwhile: the copy goes, and is not copied back to A.
    assert_eq!(
        run(vec![], vec![new(B, "n")], &Prior::new()),
        ["delete-orphan"]
    );
    // No copy was written: nothing to undo.
    assert_eq!(run(vec![], vec![], &Prior::new()), ["clear-pending"]);
    // It was recorded after all: settled.
    let m = Mapping::between(
        A,
        (on(A, "n"), Etag::new("e")),
        (on(B, "n"), Etag::new("e")),
        it.identity.clone(),
        it.hash,
    );
    let prior: Prior = [m].into_iter().collect();
    assert_eq!(
        run(vec![new(A, "n")], vec![new(B, "n")], &prior),
        ["clear-pending"]
    );
    // The same for a create B → A, mirrored.
    let back = Pending::new(B, on(B, "n"), on(A, "n"), it.identity.clone());
    let (p, _) = plan(
        rules(),
        &listing(vec![new(A, "n")], true),
        &listing(vec![], true),
        &Prior::new(),
        &[back],
        PlanOptions::default(),
    )
    .unwrap();
    assert!(
        matches!(p.actions.as_slice(), [Action::DeleteOrphan { on: A, .. }]),
        "{:?}",
        p.actions
    );
}

#[test]
fn a_second_item_of_a_synced_meeting_is_not_copied() {
    let prior: Prior = [mapping()].into_iter().collect();
    // A holds the mapped meeting and, at another href, a second item of it.
    let dup = Version {
        href: on(A, "dup"),
        ..version(A, Edited("A again", 0))
    };
    // The read sets it aside (`twins`) before the plan.
    let mut a = listing(vec![version(A, Unchanged), dup], true);
    crate::sync::twins::set_aside(A, &mut a, &prior);
    let (p, _) = plan(
        rules(),
        &a,
        &listing(vec![version(B, Unchanged)], true),
        &prior,
        &[],
        PlanOptions::default(),
    )
    .unwrap();
    assert!(
        matches!(p.actions.as_slice(), [Action::Skip { href, reason, .. }] if *href == on(A, "dup") && reason.contains("dedupe")),
        "{:?}",
        p.actions
    );
    // The mapped item moved to a new href (deleted and created again): the move is copied.
    let moved = Version {
        href: on(A, "moved"),
        ..version(A, Edited("A", 0))
    };
    let (p, _) = plan(
        rules(),
        &listing(vec![moved], true),
        &listing(vec![version(B, Unchanged)], true),
        &prior,
        &[],
        PlanOptions::default(),
    )
    .unwrap();
    let kinds: Vec<_> = p.actions.iter().map(|a| kind(&Some(a.clone()))).collect();
    assert_eq!(kinds, ["delete", "create"]);
}

#[test]
fn outside_the_window_nothing_is_written_and_the_side_is_remembered() {
    let far = |side: Side, summary: &'static str, seq: u32| {
        let it = Prepared::clone(&item(summary, seq))
            .with_fit(crate::domain::window::Fit::Outside { enters: None });
        Version {
            content: Content::Fetched(Arc::new(it)),
            ..version(side, Edited(summary, seq))
        }
    };
    // New on B, outside: deferred on B.
    let (p, _) = plan(
        rules(),
        &listing(vec![], true),
        &listing(vec![far(B, "A", 0)], true),
        &Prior::new(),
        &[],
        PlanOptions::default(),
    )
    .unwrap();
    assert!(
        matches!(
            p.actions.as_slice(),
            [Action::Defer {
                on: B,
                forget: None,
                ..
            }]
        ),
        "{:?}",
        p.actions
    );
    // Mapped, edited on A, outside: deferred on A, the mapping kept.
    let prior: Prior = [mapping()].into_iter().collect();
    let (p, _) = plan(
        rules(),
        &listing(vec![far(A, "A moved", 1)], true),
        &listing(vec![version(B, Unchanged)], true),
        &prior,
        &[],
        PlanOptions::default(),
    )
    .unwrap();
    assert!(
        matches!(
            p.actions.as_slice(),
            [Action::Defer {
                on: A,
                forget: None,
                ..
            }]
        ),
        "{:?}",
        p.actions
    );
    // Edited on B outside, deleted on A: deferred on B, and the mapping (its copy gone) dropped.
    let (p, resolved) = plan(
        rules(),
        &listing(vec![], true),
        &listing(vec![far(B, "B moved", 1)], true),
        &prior,
        &[],
        PlanOptions { force_delete: true },
    )
    .unwrap();
    assert!(
        matches!(
            p.actions.as_slice(),
            [Action::Defer {
                on: B,
                forget: Some(_),
                ..
            }]
        ),
        "{:?}",
        p.actions
    );
    assert!(resolved.is_empty());
}

/// A model of both calendars and the state, to run plans on: each action is applied as the
/// engine applies it (a create is first noted pending; a write records its mapping; a write
/// whose `If-Match` etag no longer holds fails and is retried next pass). A chaotic pass lets
/// writes fail and may crash between a remote write and its record.
mod model {
    use std::collections::BTreeMap;

    use super::*;

    #[derive(Default, Clone)]
    pub(super) struct World {
        pub sides: [BTreeMap<Href, (Etag, Arc<Prepared>)>; 2],
        pub prior: Prior,
        pub pending: Vec<Pending>,
        etags: u64,
    }

    /// What befalls one remote write in a chaotic pass.
    #[derive(Clone, Copy, PartialEq)]
    enum Fate {
        Done,
        /// Refused by the store: nothing written.
        Failed,
        /// Written, then the process died before recording it: the pass ends there.
        Crashed,
    }

    pub(super) fn meeting(uid: u32, version: u32) -> Arc<Prepared> {
        let ics = format!(
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nUID:u{uid}\r\nDTSTART:20260101T100000Z\r\n\
             SEQUENCE:{version}\r\nSUMMARY:v{version}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
        );
        Arc::new(Prepared::new(Item::parse(&ics).unwrap()))
    }

    /// Whether the user's last action on meeting `uid` on `side` has been settled: a kept item
    /// (`Some(version)` it was given) whose current version is the one its mapping records, or
    /// whose content is no longer the user's (it lost a conflict and was overwritten); a deleted
    /// one (`None`) that no mapping names any more.
    pub(super) fn synced(w: &World, side: Side, uid: u32, kept: Option<u32>) -> bool {
        let id = meeting(uid, 0).identity.clone();
        let here = w.sides[side as usize]
            .iter()
            .find(|(_, (_, it))| it.identity == id);
        match (kept, here) {
            (Some(version), Some((href, (etag, it)))) => {
                it.hash != meeting(uid, version).hash
                    || w.prior
                        .get(side, href)
                        .is_some_and(|m| m.etag(side) == etag)
            }
            (Some(_), None) => true,
            (None, _) => !w
                .prior
                .values()
                .any(|m| m.identity == id && !w.sides[side as usize].contains_key(m.href(side))),
        }
    }

    impl World {
        fn etag(&mut self) -> Etag {
            self.etags += 1;
            Etag::new(format!("e{}", self.etags))
        }

        /// An edit, create or delete by a user on `side`.
        pub(super) fn put(&mut self, side: Side, name: &str, item: Arc<Prepared>) {
            let etag = self.etag();
            self.sides[side as usize].insert(on(side, name), (etag, item));
        }

        pub(super) fn remove(&mut self, side: Side, href: &Href) {
            self.sides[side as usize].remove(href);
        }

        /// A side listed in full; an item is read when no mapping records its etag.
        fn listing(&self, side: Side) -> Snapshot {
            let items = self.sides[side as usize]
                .iter()
                .map(|(href, (etag, item))| {
                    let known = self
                        .prior
                        .get(side, href)
                        .is_some_and(|m| m.etag(side) == etag);
                    Version {
                        href: href.clone(),
                        etag: etag.clone(),
                        content: match known {
                            true => Content::NotFetched,
                            false => Content::Fetched(item.clone()),
                        },
                    }
                })
                .collect();
            listing(items, true)
        }

        /// Plans a pass and applies it; returns the number of remote writes.
        pub(super) fn pass(&mut self, rules: Mode) -> usize {
            self.chaotic_pass(rules, None)
        }

        /// A pass whose writes fail or crash as `chaos` draws (none when `None`).
        pub(super) fn chaotic_pass(
            &mut self,
            rules: Mode,
            mut chaos: Option<&mut fastrand::Rng>,
        ) -> usize {
            let (a, b) = (self.listing(A), self.listing(B));
            let opts = PlanOptions { force_delete: true };
            let (mut plan, _) = plan(rules, &a, &b, &self.prior, &self.pending, opts).unwrap();
            // As the engine runs a plan: removals, then creates and updates (in any order: here
            // shuffled from a fixed one, so a failing case replays), then what is only recorded;
            // a crash ends the pass, records and all.
            plan.actions.sort_by_cached_key(|a| format!("{a:?}"));
            if let Some(rng) = &mut chaos {
                rng.shuffle(&mut plan.actions);
            }
            let phase = |a: &Action| match a {
                Action::Delete { .. } | Action::DeleteOrphan { .. } => 0,
                Action::Create { .. } | Action::Update { .. } => 1,
                _ => 2,
            };
            plan.actions.sort_by_key(phase);
            let mut writes = 0;
            for action in plan.actions {
                let fate = match (&mut chaos, action.writes()) {
                    (Some(rng), Some(_)) => match rng.u8(..20) {
                        0 => Fate::Failed,
                        1 => Fate::Crashed,
                        _ => Fate::Done,
                    },
                    _ => Fate::Done,
                };
                writes += usize::from(action.writes().is_some());
                if fate == Fate::Failed {
                    continue;
                }
                self.apply(action, fate == Fate::Crashed);
                if fate == Fate::Crashed {
                    break;
                }
            }
            writes
        }

        /// Applies `action`; `crash`: the remote write happens, its record does not.
        fn apply(&mut self, action: Action, crash: bool) {
            match action {
                Action::Create {
                    to,
                    from_href,
                    from_etag,
                    item,
                    ..
                } => {
                    let name = format!("copy-{}", self.etags + 1);
                    let etag = self.etag();
                    let href = on(to, &name);
                    let pd = Pending::new(
                        to.other(),
                        from_href.clone(),
                        href.clone(),
                        item.identity.clone(),
                    )
                    .writing(item.hash);
                    self.pending.push(pd);
                    self.sides[to as usize].insert(href.clone(), (etag.clone(), item.clone()));
                    if !crash {
                        self.record(to, (from_href, from_etag), (href, etag), &item);
                    }
                }
                Action::Update {
                    to,
                    from_href,
                    from_etag,
                    href,
                    etag,
                    item,
                } => {
                    let fresh = self.etag();
                    if let Some(m) = self.prior.get(to, &href) {
                        let pd = Pending::update(m, to, item.hash);
                        self.pending
                            .retain(|p| (&p.a_href, &p.b_href) != (&pd.a_href, &pd.b_href));
                        self.pending.push(pd);
                    }
                    let Some(there) = self.sides[to as usize].get_mut(&href) else {
                        return;
                    };
                    if there.0 != etag {
                        return; // 412: read again next pass
                    }
                    *there = (fresh.clone(), item.clone());
                    if !crash {
                        self.record(to, (from_href, from_etag), (href, fresh), &item);
                    }
                }
                Action::Delete {
                    on, href, mapping, ..
                } => {
                    self.sides[on as usize].remove(&href);
                    if let (Some(m), false) = (mapping, crash) {
                        self.prior.remove(&m.a_href);
                    }
                }
                Action::Refresh { mapping } => self.prior.insert(mapping),
                Action::Forget { mapping } => {
                    self.prior.remove(&mapping.a_href);
                }
                Action::DeleteOrphan { on, pending } => {
                    let href = pending.href(on);
                    let ours = self.sides[on as usize]
                        .get(href)
                        .is_some_and(|(_, it)| it.identity == pending.identity);
                    if ours {
                        self.sides[on as usize].remove(href);
                    }
                    if !crash {
                        self.pending.retain(|p| *p != pending);
                    }
                }
                Action::ClearPending { pending } => self.pending.retain(|p| *p != pending),
                Action::Skip { .. } => {}
                other => panic!("not planned two-way: {other:?}"),
            }
        }

        fn record(&mut self, to: Side, from: (Href, Etag), copy: (Href, Etag), item: &Prepared) {
            // A copy made for an item mapped elsewhere replaces that mapping.
            if let Some(old) = self.prior.get(to.other(), &from.0).cloned() {
                self.prior.remove(&old.a_href);
            }
            let m = Mapping::between(to.other(), from, copy, item.identity.clone(), item.hash);
            // Recording a mapping settles the pending create it came from (as `State::apply`).
            self.pending
                .retain(|p| !(p.a_href == m.a_href && p.b_href == m.b_href));
            self.prior.insert(m);
        }
    }
}

use proptest::prelude::*;

/// One user action: on a side, edit an item (by position), delete one, create one, or create
/// the same new meeting on both sides.
#[derive(Debug, Clone)]
enum Op {
    Edit(Side, usize),
    Delete(Side, usize),
    Create(Side),
    CreateBoth,
}

fn op() -> impl Strategy<Value = Op> {
    let side = prop_oneof![Just(A), Just(B)];
    prop_oneof![
        (side.clone(), 0..8usize).prop_map(|(s, i)| Op::Edit(s, i)),
        (side.clone(), 0..8usize).prop_map(|(s, i)| Op::Delete(s, i)),
        side.prop_map(Op::Create),
        Just(Op::CreateBoth),
    ]
}

/// One history of the property below; `Err` names what does not hold.
fn check_history(
    items: u32,
    rounds: Vec<Vec<Op>>,
    newest: bool,
    authority_b: bool,
    chaos_seed: u64,
    cutovers: Vec<bool>,
) -> Result<(), TestCaseError> {
    let mut rules = Mode::TwoWay {
        authority: if authority_b { B } else { A },
        conflict: if newest {
            ConflictPolicy::Newest
        } else {
            ConflictPolicy::Authority
        },
    };
    let mut chaos = fastrand::Rng::with_seed(chaos_seed);
    let mut w = model::World::default();
    for n in 0..items {
        w.put(A, &format!("i{n}"), model::meeting(n, 0));
    }
    w.pass(rules);
    let mut next_uid = 100;
    let mut version = 1;
    // Per (side, meeting) not yet synced: whether the user's last action there kept it (an
    // edit or create) or deleted it.
    let mut last: std::collections::HashMap<(Side, u32), Option<u32>> = Default::default();
    for (round, ops) in rounds.into_iter().enumerate() {
        if let (true, Mode::TwoWay { authority, .. }) = (cutovers[round], &mut rules) {
            *authority = authority.other();
        }
        // Actions the last pass synced are settled; those a failure or crash left unsynced
        // still count (an edit not yet copied still wins over a delete on the other side).
        last.retain(|(side, uid), kept| !model::synced(&w, *side, *uid, *kept));
        for op in ops {
            version += 1;
            match op {
                Op::Edit(side, i) | Op::Delete(side, i) => {
                    let found = w.sides[side as usize]
                        .iter()
                        .nth(i)
                        .map(|(h, (_, it))| (h.clone(), it.clone()));
                    let Some((href, it)) = found else { continue };
                    let uid: u32 = it.item.uid()[1..].parse().unwrap();
                    // A delete reaches the other side through the mapping: one of an item a
                    // crash left unpaired is not told from "never there" (nothing is lost).
                    let mapped = w.prior.get(side, &href).is_some();
                    match op {
                        Op::Delete(..) if !mapped => last.remove(&(side, uid)),
                        Op::Delete(..) => last.insert((side, uid), None),
                        _ => last.insert((side, uid), Some(version)),
                    };
                    if matches!(op, Op::Delete(..)) {
                        w.remove(side, &href);
                    } else {
                        let name = href
                            .as_str()
                            .rsplit('/')
                            .next()
                            .unwrap()
                            .trim_end_matches(".ics")
                            .to_string();
                        w.put(side, &name, model::meeting(uid, version));
                    }
                }
                Op::Create(side) => {
                    next_uid += 1;
                    last.insert((side, next_uid), Some(0));
                    w.put(side, &format!("n{next_uid}"), model::meeting(next_uid, 0));
                }
                Op::CreateBoth => {
                    next_uid += 1;
                    last.insert((A, next_uid), Some(0));
                    last.insert((B, next_uid), Some(0));
                    w.put(A, &format!("n{next_uid}"), model::meeting(next_uid, 0));
                    w.put(B, &format!("m{next_uid}"), model::meeting(next_uid, 0));
                }
            }
        }
        w.chaotic_pass(rules, Some(&mut chaos));
    }
    // Store failures and crashes over, one clean pass converges.
    w.pass(rules);
    prop_assert_eq!(w.pass(rules), 0, "a pass after a clean pass writes nothing");
    prop_assert!(w.pending.is_empty(), "every pending create settled");
    let ids = |side: Side| {
        let mut v: Vec<_> = w.sides[side as usize]
            .values()
            .map(|(_, it)| (it.identity.to_string(), it.hash.0))
            .collect();
        v.sort();
        v
    };
    let (a, b) = (ids(A), ids(B));
    prop_assert_eq!(&a, &b, "both sides hold the same meetings, alike");
    let mut uids: Vec<_> = a.iter().map(|(i, _)| i.clone()).collect();
    uids.dedup();
    prop_assert_eq!(uids.len(), a.len(), "no meeting twice on one side");
    prop_assert_eq!(w.prior.len(), a.len(), "every meeting mapped once");
    // Nothing a side's last action kept is lost (a change wins over a delete), and what
    // every side that acted on deleted is gone.
    let mut verdict: std::collections::HashMap<u32, bool> = Default::default();
    for ((_, uid), kept) in last.into_iter().map(|(k, v)| (k, v.is_some())) {
        *verdict.entry(uid).or_default() |= kept;
    }
    for (uid, kept) in verdict {
        let id = model::meeting(uid, 0).identity.to_string();
        prop_assert_eq!(uids.contains(&id), kept, "meeting u{}", uid);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    /// After any history of edits, creates and deletes on both sides (conflicts included),
    /// passes whose writes fail or crash between the remote write and its record, and cutovers
    /// (the authority flipping), one clean pass leaves both sides holding the same meetings,
    /// each once, every mapping joining equal versions, and the next pass writes nothing.
    #[test]
    fn two_way_passes_converge_without_duplicates_or_ping_pong(
        items in 0..6u32,
        rounds in proptest::collection::vec(proptest::collection::vec(op(), 0..6), 1..4),
        newest in any::<bool>(),
        authority_b in any::<bool>(),
        chaos_seed in any::<u64>(),
        cutovers in proptest::collection::vec(any::<bool>(), 4),
    ) {
        check_history(items, rounds, newest, authority_b, chaos_seed, cutovers)?;
    }
}

/// A found case: the update writing a conflict's winner crashes before its record, then the
/// winner is deleted: the delete reaches the other side (the copy there holds our write, not an
/// edit of its own).
#[test]
fn a_conflict_winner_written_by_a_crashed_update_then_deleted() {
    use Op::*;
    check_history(
        1,
        vec![
            vec![Create(A), Edit(B, 0), Create(B), Edit(A, 0)],
            vec![Delete(A, 1)],
        ],
        false,
        true,
        450344694647267817,
        vec![true, false, false, false],
    )
    .unwrap();
}
