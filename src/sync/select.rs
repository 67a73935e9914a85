//! Choices made after the decision table: which unmapped copy each create takes over (adoption),
//! and, with `extras = "delete"`, which items of the receiving side go because they did not come
//! from the other side.

use std::collections::{HashMap, HashSet};

use super::model::{Action, Adopt, Mode, Plan};
use crate::domain::identity::IdentityKey;
use crate::domain::mapping::Pending;
use crate::domain::pair::Extras;

/// Items on the receiving side that no mapping names, as read for their identity.
#[derive(Debug, Clone, Default)]
pub struct Unmapped {
    pub by_identity: HashMap<IdentityKey, Vec<Adopt>>,
    /// Read but not valid iCalendar: nothing to match them by.
    pub unreadable: Vec<Adopt>,
}

/// Gives each create one copy of the same meeting to take over (never one copy to two creates),
/// then, with `extras = "delete"`, adds a delete for every unmapped item left, except copies of
/// creates still in flight (`pending`) and copies of items waiting outside the window (`outside`,
/// and the ones this plan defers): those did come from the other side.
pub fn select(
    plan: &mut Plan,
    mode: Mode,
    unmapped: Unmapped,
    pending: &[Pending],
    extras: Extras,
    outside: &HashSet<IdentityKey>,
) {
    let Unmapped {
        mut by_identity,
        unreadable,
    } = unmapped;
    for a in &mut plan.actions {
        if let Action::Create { item, adopt, .. } = a {
            *adopt = by_identity.get_mut(&item.identity).and_then(Vec::pop);
        }
    }
    if extras != Extras::Delete {
        return;
    }
    let to = mode.to();
    let in_flight: HashSet<_> = pending.iter().map(|p| p.href(to)).collect();
    let deferred: HashSet<&IdentityKey> = plan
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::Defer { identity, .. } => Some(identity),
            _ => None,
        })
        .collect();
    let mut extra: Vec<Adopt> = by_identity
        .into_iter()
        .filter(|(identity, _)| !outside.contains(identity) && !deferred.contains(identity))
        .flat_map(|(_, copies)| copies)
        .chain(unreadable)
        .filter(|(href, _)| !in_flight.contains(href))
        .collect();
    extra.sort();
    plan.actions
        .extend(extra.into_iter().map(|(href, etag)| Action::Delete {
            on: to,
            href,
            etag,
            mapping: None,
        }));
}
