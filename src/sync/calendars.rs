//! Pairing a mailbox's calendars, a pure function from both homes as listed and the pairings
//! made before to what each calendar becomes: paired (its name and colour brought in step),
//! created on the side that lacks it, skipped with the reason, or gone.
//!
//! Pairings are stable: once made, a pair keeps its two calendars whatever they are renamed
//! to. New calendars pair default with default (the one the server names, else the one the
//! config names, else a home's only calendar), then by display name, then by last path
//! segment; a calendar still alone is created on the other side (one way: only the source's).

use std::collections::{HashMap, HashSet};

use crate::domain::mailbox::{
    CalendarProps, Collection, CollectionKind, HomeListing, MailboxCalendar,
};
use crate::domain::mapping::Side;
use crate::domain::types::{CalendarPath, PairId};

/// One side's home as discovery sees it.
pub struct HomeView<'a> {
    pub home: &'a CalendarPath,
    pub listing: &'a HomeListing,
    /// The default calendar's last segment, for a server that does not name its default.
    pub default_segment: Option<&'a str>,
    /// The principal the mailbox's user is, when the home does not name its owner.
    pub principal: Option<&'a str>,
    /// Calendars a configured pair names, by path: left to that pair.
    pub taken: &'a HashMap<CalendarPath, PairId>,
}

/// What becomes of one calendar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CalendarAction {
    /// Synced as a pair; `props` are written to `side` first (a rename or a new colour on the
    /// authority's side).
    Pair {
        update: Option<(Side, CalendarProps)>,
    },
    /// Made on `on` at its path there, then synced as a pair.
    Create { on: Side, props: CalendarProps },
    /// Not synced, and why.
    Skip(String),
    /// A pair that stopped because a calendar of it is gone, and why: nothing is deleted.
    Gone(String),
}

/// One calendar of a mailbox and what discovery does with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CalendarPlan {
    /// The pair it is (or would be) synced as; for a skipped calendar, the id it would have.
    pub id: PairId,
    /// Its path on side A and on side B (the one a create makes, for a create).
    pub paths: [Option<CalendarPath>; 2],
    pub displayname: Option<String>,
    pub action: CalendarAction,
    /// Each side's name and colour once the action is done, to be remembered.
    pub seen: [CalendarProps; 2],
}

/// A calendar's name and colour: what is remembered and kept in step.
fn looks(p: &CalendarProps) -> CalendarProps {
    CalendarProps {
        displayname: p.displayname.clone(),
        color: p.color.clone(),
        ..CalendarProps::default()
    }
}

/// How a mailbox's calendars are paired: which sides are written, and whose name wins.
#[derive(Debug, Clone, Copy)]
pub struct Pairing {
    /// Both sides get the calendars the other has (two-way mailboxes).
    pub both_ways: bool,
    /// Whose name and colour the other side takes.
    pub authority: Side,
}

/// Every calendar of both homes, and what discovery does with it.
pub fn pair_calendars(
    mailbox: &PairId,
    how: Pairing,
    homes: [&HomeView; 2],
    known: &[MailboxCalendar],
) -> Vec<CalendarPlan> {
    let mut plans = Vec::new();
    let mut free: [Vec<&Collection>; 2] = [Side::A, Side::B].map(|side| {
        let (keep, skipped) = eligible(homes[side as usize]);
        plans.extend(
            skipped
                .into_iter()
                .map(|(c, why)| skip(mailbox, side, c, why)),
        );
        keep
    });
    let eligible = [free[0].len(), free[1].len()];
    let mut ids: HashSet<PairId> = known.iter().map(|k| k.id.clone()).collect();
    for k in known {
        plans.push(settle_known(k, how, &mut free));
    }
    for (a, b) in matches(homes, eligible, &mut free) {
        plans.push(CalendarPlan {
            id: fresh_id(mailbox, a.segment(), &mut ids),
            paths: [Some(a.path.clone()), Some(b.path.clone())],
            displayname: a.props.displayname.clone(),
            action: CalendarAction::Pair { update: None },
            seen: [looks(&a.props), looks(&b.props)],
        });
    }
    for side in [Side::A, Side::B] {
        for c in std::mem::take(&mut free[side as usize]) {
            let id = fresh_id(mailbox, c.segment(), &mut ids);
            plans.push(lone(id, side, c, how, homes[side.other() as usize]));
        }
    }
    plans
}

/// A home's calendars discovery may pair, and the collections it leaves alone with why.
fn eligible<'a>(home: &'a HomeView) -> (Vec<&'a Collection>, Vec<(&'a Collection, String)>) {
    let owner = home.listing.owner.as_deref().or(home.principal);
    let mut keep = Vec::new();
    let mut skipped = Vec::new();
    for c in &home.listing.collections {
        let why = match c.kind {
            CollectionKind::Scheduling => Some("the server's scheduling inbox or outbox".into()),
            CollectionKind::Subscription => {
                Some("a subscription (webcal): the server fetches it itself".into())
            }
            CollectionKind::Calendar => match (&c.owner, owner) {
                (Some(theirs), Some(ours)) if !same_principal(theirs, ours) => {
                    Some(format!("shared into this home by {theirs}"))
                }
                _ => home
                    .taken
                    .get(&c.path)
                    .map(|p| format!("named by pair {p}")),
            },
        };
        match why {
            Some(why) => skipped.push((c, why)),
            None => keep.push(c),
        }
    }
    (keep, skipped)
}

fn same_principal(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

fn skip(mailbox: &PairId, side: Side, c: &Collection, why: String) -> CalendarPlan {
    let mut paths = [None, None];
    paths[side as usize] = Some(c.path.clone());
    CalendarPlan {
        id: PairId::in_mailbox(mailbox, c.segment()),
        paths,
        displayname: c.props.displayname.clone(),
        action: CalendarAction::Skip(why),
        seen: Default::default(),
    }
}

/// A recorded pairing: kept while both calendars are there; a calendar made again if the side
/// written lost it (one way); gone, and said so, if the calendar it is copied from went.
fn settle_known(
    k: &MailboxCalendar,
    how: Pairing,
    free: &mut [Vec<&Collection>; 2],
) -> CalendarPlan {
    let found = [&k.source.path, &k.target.path];
    let mut take = |side: Side| {
        let list = &mut free[side as usize];
        let at = list.iter().position(|c| &c.path == found[side as usize])?;
        Some(list.remove(at))
    };
    let (a, b) = (take(Side::A), take(Side::B));
    let paths = [Some(k.source.path.clone()), Some(k.target.path.clone())];
    let plan = |displayname: Option<String>, action, seen| CalendarPlan {
        id: k.id.clone(),
        paths: paths.clone(),
        displayname,
        action,
        seen,
    };
    if let Some(why) = &k.gone {
        let name = a.or(b).and_then(|c| c.props.displayname.clone());
        return plan(name, CalendarAction::Gone(why.clone()), k.seen.clone());
    }
    match (a, b) {
        (Some(a), Some(b)) => {
            let mut seen = [looks(&a.props), looks(&b.props)];
            let update = props_update(how.authority, &mut seen, &k.seen);
            plan(
                a.props.displayname.clone(),
                CalendarAction::Pair { update },
                seen,
            )
        }
        (Some(a), None) if !how.both_ways => {
            let action = CalendarAction::Create {
                on: Side::B,
                props: a.props.clone(),
            };
            let seen = [looks(&a.props), looks(&a.props)];
            plan(a.props.displayname.clone(), action, seen)
        }
        (a, b) => {
            let lost = match a {
                None => "source",
                Some(_) => "target",
            };
            let why = format!(
                "the {lost} calendar is gone; the other is left as it is (delete it or pair it again by hand)"
            );
            let name = a.or(b).and_then(|c| c.props.displayname.clone());
            plan(name, CalendarAction::Gone(why), k.seen.clone())
        }
    }
}

/// New pairs among the calendars no pairing holds: default with default, then by display name,
/// then by last segment, never a task list with a calendar of events only.
fn matches<'a>(
    homes: [&HomeView; 2],
    eligible: [usize; 2],
    free: &mut [Vec<&'a Collection>; 2],
) -> Vec<(&'a Collection, &'a Collection)> {
    let mut out = Vec::new();
    let default = |i: usize| default_of(homes[i], eligible[i], &free[i]);
    if let (Some(a), Some(b)) = (default(0), default(1))
        && compatible(free[0][a], free[1][b])
    {
        out.push((free[0].remove(a), free[1].remove(b)));
    }
    let name = |c: &Collection| {
        c.props
            .displayname
            .as_ref()
            .map(|n| n.trim().to_lowercase())
    };
    let segment = |c: &Collection| Some(c.segment().to_string());
    for key in [&name as &dyn Fn(&Collection) -> Option<String>, &segment] {
        let mut i = 0;
        while i < free[0].len() {
            let a = free[0][i];
            let found = key(a).and_then(|k| {
                free[1]
                    .iter()
                    .position(|b| key(b).as_ref() == Some(&k) && compatible(a, b))
            });
            match found {
                Some(j) => out.push((free[0].remove(i), free[1].remove(j))),
                None => i += 1,
            }
        }
    }
    out
}

/// Which of a home's unpaired calendars is its default: the one its server names, else the
/// one named by `default_segment`, else its only calendar (of the `eligible` ones).
fn default_of(home: &HomeView, eligible: usize, free: &[&Collection]) -> Option<usize> {
    let named = |path: &CalendarPath| free.iter().position(|c| &c.path == path);
    let by_segment = |s: &str| free.iter().position(|c| c.segment() == s);
    home.listing
        .default
        .as_ref()
        .and_then(named)
        .or_else(|| home.default_segment.and_then(by_segment))
        .or_else(|| (eligible == 1 && free.len() == 1).then_some(0))
}

/// Whether two calendars may hold the same items: no components said, or one in common.
fn compatible(a: &Collection, b: &Collection) -> bool {
    let (x, y) = (&a.props.components, &b.props.components);
    x.is_empty() || y.is_empty() || x.iter().any(|c| y.contains(c))
}

/// A name or colour changed on the authority's side since the last discovery (`was`), to
/// write to the other side; `now` then holds what the other side will have.
fn props_update(
    authority: Side,
    now: &mut [CalendarProps; 2],
    was: &[CalendarProps; 2],
) -> Option<(Side, CalendarProps)> {
    let (a, o) = (authority as usize, authority.other() as usize);
    let mut update = CalendarProps::default();
    let [ours, theirs] = [&now[a], &now[o]];
    let moved = |n: &Option<String>, w: &Option<String>, t: &Option<String>| {
        (n.is_some() && n != w && n != t)
            .then(|| n.clone())
            .flatten()
    };
    update.displayname = moved(&ours.displayname, &was[a].displayname, &theirs.displayname);
    update.color = moved(&ours.color, &was[a].color, &theirs.color);
    if update.displayname.is_none() && update.color.is_none() {
        return None;
    }
    let theirs = &mut now[o];
    for (mine, new) in [
        (&mut theirs.displayname, &update.displayname),
        (&mut theirs.color, &update.color),
    ] {
        if new.is_some() {
            mine.clone_from(new);
        }
    }
    Some((authority.other(), update))
}

/// A calendar nothing on the other side pairs with: created there, if the mailbox writes
/// that side; else skipped.
fn lone(id: PairId, side: Side, c: &Collection, how: Pairing, there: &HomeView) -> CalendarPlan {
    let mut paths = [None, None];
    paths[side as usize] = Some(c.path.clone());
    let writes_there = how.both_ways || side == Side::A;
    let (action, seen) = match writes_there {
        true => {
            paths[side.other() as usize] = Some(free_path(there, c.segment()));
            let action = CalendarAction::Create {
                on: side.other(),
                props: c.props.clone(),
            };
            (action, [looks(&c.props), looks(&c.props)])
        }
        false => {
            let why =
                "only in the target mailbox: a one-way mailbox copies the source's calendars only";
            (CalendarAction::Skip(why.into()), Default::default())
        }
    };
    CalendarPlan {
        id,
        paths,
        displayname: c.props.displayname.clone(),
        action,
        seen,
    }
}

/// A path for a new calendar in `home`: its segment there, or the first `SEGMENT-N` free.
fn free_path(home: &HomeView, segment: &str) -> CalendarPath {
    let taken = |s: &str| home.listing.collections.iter().any(|c| c.segment() == s);
    let segment = if segment.is_empty() {
        "calendar"
    } else {
        segment
    };
    let name = (1..)
        .map(|n| match n {
            1 => segment.to_string(),
            n => format!("{segment}-{n}"),
        })
        .find(|s| !taken(s))
        .expect("some name is free");
    format!("{}{name}/", home.home)
        .parse()
        .expect("a segment of a listed path makes a path")
}

/// The pair id for a calendar whose segment is `segment`, made unique among `ids`.
fn fresh_id(mailbox: &PairId, segment: &str, ids: &mut HashSet<PairId>) -> PairId {
    let id = (1..)
        .map(|n| match n {
            1 => PairId::in_mailbox(mailbox, segment),
            n => PairId::in_mailbox(mailbox, &format!("{segment}-{n}")),
        })
        .find(|id| !ids.contains(id))
        .expect("some id is free");
    ids.insert(id.clone());
    id
}
