//! Two items of one calendar that are one meeting (one UID in two files). The other side can
//! hold the meeting once, so only one of them is copied: the one already mapped, else the newer
//! ([`Newness`]), else the first by href. The other is set aside as an item that cannot be
//! synced, its reason naming both hrefs, so passes stop writing the two over each other.

use std::collections::{HashMap, HashSet};

use super::model::{Content, Prior, Snapshot};
use super::rank::{CopyRank, Newness, rank_copies};
use crate::domain::error::ErrorKind;
use crate::domain::identity::IdentityKey;
use crate::domain::mapping::Side;
use crate::domain::types::Href;

/// Sets aside every item of `snapshot` (side `side`) whose meeting another of its items holds.
pub fn set_aside(side: Side, snapshot: &mut Snapshot, prior: &Prior) {
    let mut read: HashMap<&IdentityKey, Vec<usize>> = HashMap::new();
    for (i, v) in snapshot.items.iter().enumerate() {
        if let Content::Fetched(p) = &v.content {
            read.entry(&p.identity).or_default().push(i);
        }
    }
    let fetched: HashSet<&Href> = read
        .values()
        .flatten()
        .map(|&i| &snapshot.items[i].href)
        .collect();
    // A mapped item not read this pass (unchanged) still holds its meeting, unless it is gone.
    let gone = |h: &Href| {
        snapshot.deleted.contains(h)
            || (snapshot.complete && !snapshot.items.iter().any(|v| &v.href == h))
    };
    let unread: HashMap<&IdentityKey, &Href> = prior
        .values()
        .filter(|m| read.contains_key(&m.identity))
        .map(|m| (&m.identity, m.href(side)))
        .filter(|(_, h)| !fetched.contains(h) && !gone(h))
        .collect();
    let mut aside: Vec<(usize, Href)> = Vec::new();
    for (identity, held) in read {
        if held.len() < 2 && !unread.contains_key(identity) {
            continue;
        }
        let mut ranked: Vec<(usize, bool, Newness, Href)> = held
            .into_iter()
            .map(|i| {
                let v = &snapshot.items[i];
                let newness = match &v.content {
                    Content::Fetched(p) => Newness::of(&p.item),
                    _ => Newness::default(),
                };
                let mapped = prior.get(side, &v.href).is_some();
                (i, mapped, newness, v.href.clone())
            })
            .collect();
        rank_copies(&mut ranked, |(_, mapped, newness, href)| CopyRank {
            mapped: *mapped,
            equal: false,
            newness,
            href,
        });
        let kept = unread
            .get(identity)
            .map_or_else(|| ranked[0].3.clone(), |&h| h.clone());
        aside.extend(
            ranked
                .into_iter()
                .filter(|(.., href)| *href != kept)
                .map(|(i, ..)| (i, kept.clone())),
        );
    }
    for (i, kept) in aside {
        let v = &mut snapshot.items[i];
        let Content::Fetched(p) = &v.content else {
            continue;
        };
        let reason = format!(
            "UID {:?} is also at {kept} in the same calendar: the meeting is there twice, and \
             only {kept} is synced (the one synced before, else the newer, else the first by \
             name); `tandem dedupe` removes the extra one",
            p.item.uid()
        );
        v.content = Content::Broken(ErrorKind::Permanent, reason);
    }
}
