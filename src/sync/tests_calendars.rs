//! The calendar pairing of mailboxes ([`super::calendars`]): defaults across names, names,
//! segments, creates, skips, stable pairings, renames, gone calendars.

use std::collections::HashMap;

use super::calendars::*;
use crate::domain::mailbox::{
    CalendarProps, Collection, CollectionKind, HomeListing, MailboxCalendar,
};
use crate::domain::mapping::Side;
use crate::domain::types::{CalendarPath, PairId};

fn cal(path: &str, name: Option<&str>, comps: &[&str]) -> Collection {
    Collection {
        path: path.parse().unwrap(),
        kind: CollectionKind::Calendar,
        props: CalendarProps {
            displayname: name.map(str::to_string),
            components: comps.iter().map(|c| c.to_string()).collect(),
            ..Default::default()
        },
        owner: None,
    }
}

fn path(p: &str) -> CalendarPath {
    p.parse().unwrap()
}

struct Homes {
    paths: [CalendarPath; 2],
    listings: [HomeListing; 2],
    defaults: [Option<&'static str>; 2],
    taken: HashMap<CalendarPath, PairId>,
}

impl Homes {
    fn new(a: Vec<Collection>, b: Vec<Collection>) -> Homes {
        let listing = |collections| HomeListing {
            collections,
            ..Default::default()
        };
        Homes {
            paths: [path("/alice/"), path("/SOGo/dav/alice/Calendar/")],
            listings: [listing(a), listing(b)],
            defaults: [None, None],
            taken: HashMap::new(),
        }
    }

    fn plan(&self, how: Pairing, known: &[MailboxCalendar]) -> Vec<CalendarPlan> {
        let view = |i: usize| HomeView {
            home: &self.paths[i],
            listing: &self.listings[i],
            default_segment: self.defaults[i],
            principal: None,
            taken: &self.taken,
        };
        let (a, b) = (view(0), view(1));
        pair_calendars(&"alice".parse().unwrap(), how, [&a, &b], known)
    }
}

const ONE_WAY: Pairing = Pairing {
    both_ways: false,
    authority: Side::A,
};
const TWO_WAY: Pairing = Pairing {
    both_ways: true,
    authority: Side::A,
};

/// (id, A's path, B's path, what) per calendar, sorted by id.
fn brief(plans: &[CalendarPlan]) -> Vec<(String, String, String, String)> {
    let p = |o: &Option<CalendarPath>| o.as_ref().map_or("-".into(), |p| p.to_string());
    let mut out: Vec<_> = plans
        .iter()
        .map(|c| {
            let what = match &c.action {
                CalendarAction::Pair { update: None } => "pair".to_string(),
                CalendarAction::Pair {
                    update: Some((s, _)),
                } => format!("pair, props to {s:?}"),
                CalendarAction::Create { on, .. } => format!("create on {on:?}"),
                CalendarAction::Skip(why) => format!("skip: {why}"),
                CalendarAction::Gone(why) => format!("gone: {why}"),
            };
            (c.id.to_string(), p(&c.paths[0]), p(&c.paths[1]), what)
        })
        .collect();
    out.sort();
    out
}

/// The plan of calendar `id`.
fn found<'p>(plans: &'p [CalendarPlan], id: &str) -> &'p CalendarPlan {
    (plans.iter().find(|p| p.id.as_str() == id)).unwrap_or_else(|| panic!("no plan for {id}"))
}

fn row(id: &str, a: &str, b: &str, what: &str) -> (String, String, String, String) {
    (id.into(), a.into(), b.into(), what.into())
}

#[test]
fn defaults_pair_across_names_and_the_rest_is_created() {
    let mut work = cal("/alice/work/", Some("Work"), &["VEVENT"]);
    work.props.color = Some("#FF0000FF".into());
    let mut inbox = cal("/SOGo/dav/alice/Calendar/inbox/", None, &[]);
    inbox.kind = CollectionKind::Scheduling;
    let mut homes = Homes::new(
        vec![
            cal("/alice/calendar/", Some("Calendar"), &["VEVENT"]),
            work,
            cal("/alice/tasks/", Some("Tasks"), &["VTODO"]),
        ],
        vec![
            cal(
                "/SOGo/dav/alice/Calendar/personal/",
                Some("Personal Calendar"),
                &["VEVENT", "VTODO"],
            ),
            inbox,
        ],
    );
    homes.listings[1].default = Some(path("/SOGo/dav/alice/Calendar/personal/"));
    homes.defaults[0] = Some("calendar");
    let plans = homes.plan(ONE_WAY, &[]);
    assert_eq!(
        brief(&plans),
        [
            row(
                "alice/calendar",
                "/alice/calendar/",
                "/SOGo/dav/alice/Calendar/personal/",
                "pair"
            ),
            row(
                "alice/inbox",
                "-",
                "/SOGo/dav/alice/Calendar/inbox/",
                "skip: the server's scheduling inbox or outbox"
            ),
            row(
                "alice/tasks",
                "/alice/tasks/",
                "/SOGo/dav/alice/Calendar/tasks/",
                "create on B"
            ),
            row(
                "alice/work",
                "/alice/work/",
                "/SOGo/dav/alice/Calendar/work/",
                "create on B"
            ),
        ]
    );
    let work = found(&plans, "alice/work");
    let CalendarAction::Create { props, .. } = &work.action else {
        panic!()
    };
    assert_eq!(props.color.as_deref(), Some("#FF0000FF"));
    let tasks = found(&plans, "alice/tasks");
    let CalendarAction::Create { props, .. } = &tasks.action else {
        panic!()
    };
    assert_eq!(props.components, ["VTODO"]);
}

#[test]
fn a_task_list_never_pairs_with_a_calendar_of_events() {
    let homes = Homes::new(
        vec![cal("/alice/tasks/", Some("Tasks"), &["VTODO"])],
        vec![cal(
            "/SOGo/dav/alice/Calendar/tasks/",
            Some("Tasks"),
            &["VEVENT"],
        )],
    );
    let plans = homes.plan(ONE_WAY, &[]);
    assert_eq!(
        brief(&plans),
        [
            row(
                "alice/tasks",
                "/alice/tasks/",
                "/SOGo/dav/alice/Calendar/tasks-2/",
                "create on B"
            ),
            row(
                "alice/tasks-2",
                "-",
                "/SOGo/dav/alice/Calendar/tasks/",
                "skip: only in the target mailbox: a one-way mailbox copies the source's calendars only"
            ),
        ]
    );
}

#[test]
fn by_display_name_then_segment_and_two_ways_both_sides_get_what_they_lack() {
    let homes = Homes::new(
        vec![
            cal("/alice/a1/", Some("Family"), &[]),
            cal("/alice/team/", None, &[]),
            cal("/alice/x/", Some("X"), &[]),
        ],
        vec![
            cal("/SOGo/dav/alice/Calendar/b7/", Some("family"), &[]),
            cal("/SOGo/dav/alice/Calendar/team/", Some("Team"), &[]),
            cal("/SOGo/dav/alice/Calendar/y/", Some("Y"), &[]),
        ],
    );
    assert_eq!(
        brief(&homes.plan(TWO_WAY, &[])),
        [
            row(
                "alice/a1",
                "/alice/a1/",
                "/SOGo/dav/alice/Calendar/b7/",
                "pair"
            ),
            row(
                "alice/team",
                "/alice/team/",
                "/SOGo/dav/alice/Calendar/team/",
                "pair"
            ),
            row(
                "alice/x",
                "/alice/x/",
                "/SOGo/dav/alice/Calendar/x/",
                "create on B"
            ),
            row(
                "alice/y",
                "/alice/y/",
                "/SOGo/dav/alice/Calendar/y/",
                "create on A"
            ),
        ]
    );
}

#[test]
fn a_pairing_holds_through_renames_and_a_gone_source_deletes_nothing() {
    let work = CalendarProps {
        displayname: Some("Work".into()),
        ..Default::default()
    };
    let known = |id: &str, a: &str, b: &str| MailboxCalendar {
        id: id.parse().unwrap(),
        source: format!("old:{a}").parse().unwrap(),
        target: format!("new:{b}").parse().unwrap(),
        gone: None,
        seen: [work.clone(), work.clone()],
    };
    let mut renamed = cal("/alice/work/", Some("Projects"), &[]);
    renamed.props.color = Some("#00FF00".into());
    let homes = Homes::new(
        vec![renamed, cal("/alice/new/", Some("Work"), &[])],
        vec![
            cal("/SOGo/dav/alice/Calendar/work/", Some("Work"), &[]),
            cal("/SOGo/dav/alice/Calendar/old/", Some("Old"), &[]),
        ],
    );
    let known = [
        known(
            "alice/work",
            "/alice/work/",
            "/SOGo/dav/alice/Calendar/work/",
        ),
        known("alice/old", "/alice/old/", "/SOGo/dav/alice/Calendar/old/"),
    ];
    let plans = homes.plan(ONE_WAY, &known);
    assert_eq!(
        brief(&plans),
        [
            row(
                "alice/new",
                "/alice/new/",
                "/SOGo/dav/alice/Calendar/new/",
                "create on B"
            ),
            row(
                "alice/old",
                "/alice/old/",
                "/SOGo/dav/alice/Calendar/old/",
                "gone: the source calendar is gone; the other is left as it is (delete it or pair it again by hand)"
            ),
            row(
                "alice/work",
                "/alice/work/",
                "/SOGo/dav/alice/Calendar/work/",
                "pair, props to B"
            ),
        ]
    );
    let work = found(&plans, "alice/work");
    let CalendarAction::Pair {
        update: Some((_, props)),
    } = &work.action
    else {
        panic!()
    };
    assert_eq!(props.displayname.as_deref(), Some("Projects"));
    assert_eq!(props.color.as_deref(), Some("#00FF00"));
}

#[test]
fn shared_and_configured_calendars_are_left_alone() {
    let mut shared = cal("/SOGo/dav/alice/Calendar/bob_team/", Some("Bob's"), &[]);
    shared.owner = Some("/SOGo/dav/bob/".into());
    let mut own = cal("/SOGo/dav/alice/Calendar/personal/", Some("Personal"), &[]);
    own.owner = Some("/SOGo/dav/alice/".into());
    let mut homes = Homes::new(
        vec![
            cal("/alice/calendar/", None, &[]),
            cal("/alice/hand/", None, &[]),
        ],
        vec![shared, own],
    );
    homes.listings[1].owner = Some("/SOGo/dav/alice".into());
    homes
        .taken
        .insert(path("/alice/hand/"), "hand".parse().unwrap());
    assert_eq!(
        brief(&homes.plan(ONE_WAY, &[])),
        [
            row(
                "alice/bob_team",
                "-",
                "/SOGo/dav/alice/Calendar/bob_team/",
                "skip: shared into this home by /SOGo/dav/bob/"
            ),
            row(
                "alice/calendar",
                "/alice/calendar/",
                "/SOGo/dav/alice/Calendar/personal/",
                "pair"
            ),
            row(
                "alice/hand",
                "/alice/hand/",
                "-",
                "skip: named by pair hand"
            ),
        ]
    );
}
