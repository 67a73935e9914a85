//! The repair assistant: compares a pair's two calendars in full, trusting nothing the state store
//! says, fixes what differs under the leases of the calendars the pair writes, and rebuilds the
//! pair's mappings from what it found.
//!
//! It runs the way the pair syncs: one way from the authority (the source, or the target once the
//! pair is cut over), or both ways with the pair's conflict policy. Findings by class: `missing`
//! (on one side, not on the other: created there), `drifted` (the two versions differ: the copy
//! is updated from the authority's, or from the winner's under the conflict policy), `duplicate`
//! (more items of one meeting in one calendar: one kept as `dedupe` would), `orphan` (a copy whose
//! counterpart is gone: deleted), `extra` (one way only: in the written calendar, not from the
//! other; deleted only with `extras = "delete"`, never in the old org), and, across calendars,
//! `attendee-missing` (a meeting organised by this pair's mailbox that an attendee's pair lacks in
//! its target: that pair is synced from its source, never given a made-up copy).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use serde::Serialize;

use super::base::Engine;
use super::list::role;
use super::write::{Dest, Original, Writer, fence, fetch_all};
use crate::domain::identity::IdentityKey;
use crate::domain::item::Item;
use crate::domain::lease::{Lease, LeaseKind};
use crate::domain::mapping::{Mapping, Side};
use crate::domain::pair::{Extras, Pair};
use crate::domain::types::{ContentHash, Etag, Href};
use crate::state::StateError;
use crate::store::CalendarStore;
use crate::sync::rank::Newness;
use crate::sync::{Content, CopyRank, Mode, Prepared, rank_copies};

#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// `missing`, `drifted`, `duplicate`, `orphan`, `extra` or `attendee-missing`.
    pub class: &'static str,
    /// The calendar `href` is in: `source` or `target`.
    pub side: &'static str,
    pub href: String,
    pub identity: String,
    /// What was done (or, in a dry run, would be).
    pub action: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct RepairReport {
    pub pair: String,
    pub dry_run: bool,
    pub findings: Vec<Finding>,
    /// Items found in step.
    pub in_step: u64,
    /// Items outside the sync window whose copy is missing or differs (not written).
    pub outside_window: u64,
    /// Items that could not be read or parsed (left alone).
    pub skipped: Vec<String>,
    /// Why the pair could not be repaired (locked, unreachable, ...).
    pub error: Option<String>,
}

impl RepairReport {
    pub fn ok(&self) -> bool {
        self.error.is_none()
            && self
                .findings
                .iter()
                .all(|f| !f.action.starts_with("failed"))
    }

    fn found(
        &mut self,
        class: &'static str,
        side: Side,
        href: &Href,
        identity: &str,
        action: String,
    ) {
        self.findings.push(Finding {
            class,
            side: role(side),
            href: href.to_string(),
            identity: identity.to_string(),
            action,
        });
    }
}

/// One item as read, in the new org's form.
struct Copy {
    href: Href,
    etag: Etag,
    item: Arc<Prepared>,
    newness: Newness,
}

/// Each side's items, grouped by meeting.
type Grouped = BTreeMap<IdentityKey, Vec<Copy>>;

/// What one repair works with.
struct Scope<'a> {
    pair: &'a Pair,
    mode: Mode,
    stores: [&'a dyn CalendarStore; 2],
    writer: Writer<'a>,
    /// The lease of each side the pair writes (none in a dry run).
    leases: [Option<&'a Lease>; 2],
    /// What the state maps on each side, with the content it recorded there and the version
    /// that content was at.
    mapped: [HashMap<Href, (ContentHash, Etag)>; 2],
}

impl Scope<'_> {
    fn writes(&self, side: Side) -> bool {
        self.mode.writes().contains(&side)
    }

    fn dest(&self, side: Side) -> Dest<'_> {
        Dest {
            side,
            store: self.stores[side as usize],
            cal: &self.pair.calendar(side).path,
        }
    }
}

impl Engine {
    /// `tandem repair` for one pair. Only a state-store failure is an `Err`.
    pub async fn repair(&self, pair: &Pair, dry_run: bool) -> Result<RepairReport, StateError> {
        let mut report = RepairReport {
            pair: pair.id.to_string(),
            dry_run,
            ..Default::default()
        };
        let (src, tgt) = match (
            self.store_of(&pair.source.server),
            self.store_of(&pair.target.server),
        ) {
            (Ok(s), Ok(t)) => (s, t),
            (Err(e), _) | (_, Err(e)) => {
                report.error = Some(e);
                return Ok(report);
            }
        };
        let start = self.peek(pair).await?.start;
        let mode = self.mode(pair, dry_run, &start).await?;
        // Under the leases of the calendars the pair writes, renewed while the repair runs (a
        // large calendar takes longer than one ttl).
        let written: Vec<String> = mode
            .writes()
            .iter()
            .map(|s| pair.calendar(*s).to_string())
            .collect();
        let names: Vec<&str> = written.iter().map(String::as_str).collect();
        let done = self
            .under_leases(
                &names,
                LeaseKind::Repair,
                dry_run,
                async |leases: &[Lease]| {
                    let lease = |side: Side| {
                        let name = pair.calendar(side).to_string();
                        leases.iter().find(|l| l.calendar == name)
                    };
                    // What the state believes, read under the leases: tells an orphan from an
                    // extra or a new item, and prefers the mapped copy of a duplicate.
                    let mapped = self.mapped_copies(pair).await?.unwrap_or_default();
                    let scope = Scope {
                        pair,
                        mode,
                        stores: [&*src, &*tgt],
                        writer: Writer::new(&pair.id, &self.state, &self.forms),
                        leases: [lease(Side::A), lease(Side::B)],
                        mapped,
                    };
                    self.repair_under(&scope, &mut report).await
                },
            )
            .await?;
        if let Err(locked) = done {
            report.error = Some(format!(
                "calendar {}: {locked}; not repaired",
                locked.calendar
            ));
        }
        Ok(report)
    }

    async fn repair_under(
        &self,
        scope: &Scope<'_>,
        report: &mut RepairReport,
    ) -> Result<(), StateError> {
        let pair = scope.pair;
        let (a, b) = tokio::join!(
            self.read_for_repair(scope, Side::A),
            self.read_for_repair(scope, Side::B)
        );
        let mut sides = match (a, b) {
            (Ok((a, skipped_a)), Ok((b, skipped_b))) => {
                report
                    .skipped
                    .extend(skipped_a.into_iter().chain(skipped_b));
                [a, b]
            }
            (Err(e), _) | (_, Err(e)) => {
                report.error = Some(e);
                return Ok(());
            }
        };
        let identities: Vec<IdentityKey> = sides[0]
            .keys()
            .chain(sides[1].keys())
            .cloned()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut found: Vec<Mapping> = Vec::new();
        // Meetings this pair's mailbox organises, with attendees that are configured pairs too.
        let mut invited: Vec<(Href, IdentityKey, Pair)> = Vec::new();
        for identity in identities {
            let mut copies = [
                sides[0].remove(&identity).unwrap_or_default(),
                sides[1].remove(&identity).unwrap_or_default(),
            ];
            self.repair_duplicates(scope, &mut copies, report).await?;
            if let Some(source) = copies[0].first() {
                invited.extend(self.invited(pair, source));
            }
            let [a, b] = copies;
            let mapping = match (a.into_iter().next(), b.into_iter().next()) {
                (Some(a), Some(b)) => Some(self.repair_drift(scope, a, b, report).await?),
                (Some(one), None) => self.repair_lone(scope, Side::A, one, report).await?,
                (None, Some(one)) => self.repair_lone(scope, Side::B, one, report).await?,
                (None, None) => None,
            };
            found.extend(mapping);
        }
        if !report.dry_run {
            self.state.rebuild_mappings(&pair.id, &found).await?;
        }
        self.check_attendees(invited, report.dry_run, report).await
    }

    /// Reads one side in full, grouped by meeting; items that cannot be read are listed apart.
    /// `Err` when the calendar cannot be read (names it).
    async fn read_for_repair(
        &self,
        scope: &Scope<'_>,
        side: Side,
    ) -> Result<(Grouped, Vec<String>), String> {
        let store = scope.stores[side as usize];
        let cal = &scope.pair.calendar(side).path;
        let read = async {
            store.check_calendar(cal).await?;
            let hrefs: Vec<Href> = store.list(cal).await?.into_iter().map(|v| v.href).collect();
            fetch_all(store, cal, &hrefs).await
        };
        let mut items = read.await.map_err(|e| {
            format!(
                "{} calendar {} ({}): {e}",
                role(side),
                scope.pair.calendar(side),
                store.describe()
            )
        })?;
        let now = self.forms.now();
        let mut grouped = Grouped::new();
        let mut skipped = Vec::new();
        items.sort_by(|x, y| x.0.cmp(&y.0));
        for (href, got) in items {
            let (etag, item) = match got {
                Ok(r) => match self.forms.prepare(side, &r.data, now) {
                    Content::Fetched(p) => (r.etag, p),
                    Content::Broken(_, e) => {
                        skipped.push(format!("{} {href}: {e}", role(side)));
                        continue;
                    }
                    Content::NotFetched => continue,
                },
                Err(e) => {
                    skipped.push(format!("{} {href}: {e}", role(side)));
                    continue;
                }
            };
            grouped
                .entry(item.identity.clone())
                .or_default()
                .push(Copy {
                    href,
                    etag,
                    newness: Newness::of(&item.item),
                    item,
                });
        }
        Ok((grouped, skipped))
    }

    /// More items of one meeting in one calendar: the keep-which-copy rule picks the one that
    /// stays (first in `copies`); the others are deleted where the pair writes, reported where
    /// it does not.
    async fn repair_duplicates(
        &self,
        scope: &Scope<'_>,
        copies: &mut [Vec<Copy>; 2],
        report: &mut RepairReport,
    ) -> Result<(), StateError> {
        for side in [Side::A, Side::B] {
            let i = side as usize;
            if copies[i].len() < 2 {
                continue;
            }
            let theirs: HashSet<ContentHash> = copies[1 - i].iter().map(|c| c.item.hash).collect();
            rank_copies(&mut copies[i], |c| CopyRank {
                mapped: scope.mapped[i].contains_key(&c.href),
                equal: theirs.contains(&c.item.hash),
                newness: &c.newness,
                href: &c.href,
            });
            let keep = copies[i][0].href.clone();
            for dup in copies[i].split_off(1) {
                let action = if scope.writes(side) {
                    self.remove(scope, side, &dup, format!("kept {keep}"))
                        .await?
                } else {
                    format!(
                        "kept {keep} as the original; this pair does not write the {0} (see \
                         `tandem dedupe --side {0}`)",
                        role(side)
                    )
                };
                let identity = dup.item.identity.to_string();
                report.found("duplicate", side, &dup.href, &identity, action);
            }
        }
        Ok(())
    }

    /// A meeting on both sides: in step, or the losing version overwritten by the winning one
    /// (one way: the authority's; two ways: the conflict policy's). Returns the mapping.
    async fn repair_drift(
        &self,
        scope: &Scope<'_>,
        a: Copy,
        b: Copy,
        report: &mut RepairReport,
    ) -> Result<Mapping, StateError> {
        let identity = a.item.identity.clone();
        let mut mapping = Mapping::between(
            Side::A,
            (a.href.clone(), a.etag.clone()),
            (b.href.clone(), b.etag.clone()),
            identity.clone(),
            a.item.hash,
        );
        // Equal, or both still the versions the state recorded as in step: a server that
        // rewrites what it stores (SOGo adds CLASS, reorders parameters) holds tandem's write in
        // its own words.
        let recorded = |side: Side, c: &Copy| {
            scope.mapped[side as usize].get(&c.href) == Some(&(a.item.hash, c.etag.clone()))
        };
        if a.item.hash == b.item.hash || (recorded(Side::A, &a) && recorded(Side::B, &b)) {
            report.in_step += 1;
            return Ok(mapping);
        }
        let (kept, why) = match scope.mode {
            Mode::OneWay { from } => (from, "the authority's version"),
            Mode::TwoWay { .. } => scope.mode.winner(&a.item, &b.item),
        };
        let (winner, loser) = match kept {
            Side::A => (&a, &b),
            Side::B => (&b, &a),
        };
        let to = kept.other();
        // Until it is written, the mapping holds what the overwritten side has.
        mapping.hash = loser.item.hash;
        if !winner.item.fit.is_inside() {
            report.outside_window += 1;
            return Ok(mapping);
        }
        let from = format!("from the {} ({why})", role(kept));
        let action = match self.cleared(scope, to, "update").await? {
            Err(would) if would.starts_with("would") => format!("{would} {from}"),
            Err(not) => not,
            Ok(()) => {
                let mut ours = winner.item.item.clone();
                ours.set_uid(loser.item.item.uid());
                let text = self.forms.render(to, &ours);
                match scope.stores[to as usize]
                    .update(&loser.href, &loser.etag, &text)
                    .await
                {
                    Ok(etag) => {
                        match to {
                            Side::A => mapping.a_etag = etag,
                            Side::B => mapping.b_etag = etag,
                        }
                        mapping.hash = winner.item.hash;
                        format!("updated {from}")
                    }
                    Err(e) => format!("failed: {e}"),
                }
            }
        };
        report.found("drifted", to, &loser.href, &identity.to_string(), action);
        Ok(mapping)
    }

    /// A meeting on one side only: missing on the other (created there), an orphan (its
    /// counterpart is gone: deleted), or, one way, an extra in the written calendar.
    async fn repair_lone(
        &self,
        scope: &Scope<'_>,
        side: Side,
        one: Copy,
        report: &mut RepairReport,
    ) -> Result<Option<Mapping>, StateError> {
        let identity = one.item.identity.to_string();
        // What the state recorded for it when it was paired with an item on the other side.
        let recorded = scope.mapped[side as usize].get(&one.href);
        let paired = recorded.is_some();
        let class = match scope.mode {
            Mode::OneWay { from } if side != from && paired => "orphan",
            Mode::OneWay { from } if side != from => "extra",
            Mode::OneWay { .. } => "missing",
            // Two ways, only an unchanged one: an edit wins over a delete.
            Mode::TwoWay { .. } if recorded.map(|r| &r.0) == Some(&one.item.hash) => "orphan",
            Mode::TwoWay { .. } => "missing",
        };
        let action = match class {
            "orphan" => {
                let why = format!("its {} counterpart is gone", role(side.other()));
                self.remove(scope, side, &one, why).await?
            }
            // The old org's own items (its colleagues' invitations) are never deleted.
            "extra" if side == Side::A => "kept (the old org's own item)".to_string(),
            "extra" if self.extras() == Extras::Delete => {
                self.remove(scope, side, &one, "extras = \"delete\"".into())
                    .await?
            }
            "extra" => "kept (extras = \"keep\")".to_string(),
            _ => {
                let edited = matches!(scope.mode, Mode::TwoWay { .. }) && paired;
                return self.repair_missing(scope, side, one, edited, report).await;
            }
        };
        report.found(class, side, &one.href, &identity, action);
        Ok(None)
    }

    /// Creates the copy of `one` (on `side`) on the other side, window permitting. `edited`: the
    /// state paired it with an item now gone, and it was edited since (an edit beats a delete).
    async fn repair_missing(
        &self,
        scope: &Scope<'_>,
        side: Side,
        one: Copy,
        edited: bool,
        report: &mut RepairReport,
    ) -> Result<Option<Mapping>, StateError> {
        if !one.item.fit.is_inside() {
            report.outside_window += 1;
            return Ok(None);
        }
        let to = side.other();
        let mut mapping = None;
        let action = match self.cleared(scope, to, "create").await? {
            Err(not) => not,
            Ok(()) => {
                let original = Original {
                    href: &one.href,
                    etag: &one.etag,
                    item: &one.item,
                };
                match scope.writer.create(scope.dest(to), original, false).await? {
                    Ok((m, _)) => {
                        let done = format!("created {}", m.href(to));
                        mapping = Some(m);
                        done
                    }
                    Err(e) => format!("failed: {e}"),
                }
            }
        };
        let action = if edited {
            format!(
                "{action} (edited since its counterpart was deleted: an edit wins over a delete)"
            )
        } else {
            action
        };
        let identity = one.item.identity.to_string();
        report.found("missing", side, &one.href, &identity, action);
        Ok(mapping)
    }

    /// Attendees of a meeting this pair's mailbox organises that are configured pairs too.
    fn invited(&self, pair: &Pair, source: &Copy) -> Vec<(Href, IdentityKey, Pair)> {
        let organiser = source
            .item
            .item
            .organizer()
            .map(crate::domain::identity::normalize_address);
        let ours = organiser
            .as_ref()
            .and_then(|o| self.addresses.get(o))
            .is_some_and(|p| p.id == pair.id);
        if !ours {
            return Vec::new();
        }
        source
            .item
            .item
            .attendees()
            .into_iter()
            .filter_map(|a| self.addresses.get(&a).filter(|q| q.id != pair.id))
            .map(|q| (source.href.clone(), source.item.identity.clone(), q.clone()))
            .collect()
    }

    /// Exchange-style cross-calendar check: an attendee whose mailbox is a configured pair should
    /// have the meeting in its target calendar. If not, that pair is synced from its source; a
    /// meeting its source lacks too is reported, never fabricated.
    async fn check_attendees(
        &self,
        invited: Vec<(Href, IdentityKey, Pair)>,
        dry_run: bool,
        report: &mut RepairReport,
    ) -> Result<(), StateError> {
        let mut seen: std::collections::HashMap<String, Result<HashSet<IdentityKey>, String>> =
            std::collections::HashMap::new();
        for (href, identity, q) in invited {
            let key = q.id.to_string();
            if !seen.contains_key(&key) {
                seen.insert(key.clone(), self.target_identities(&q).await);
            }
            let has = seen[&key]
                .as_ref()
                .map(|ids| ids.contains(&identity))
                .map_err(Clone::clone);
            let action = match has {
                Ok(true) => continue,
                Err(e) => format!("failed: pair {}: {e}", q.id),
                Ok(false) if dry_run => format!("would sync pair {} from its source", q.id),
                Ok(false) => {
                    let r = self
                        .sync_pair(&q, super::base::PassOptions::default())
                        .await?;
                    let now = self.target_identities(&q).await;
                    let present = now.as_ref().is_ok_and(|ids| ids.contains(&identity));
                    seen.insert(key, now);
                    match (&r.error, present) {
                        (_, true) => format!("synced pair {} from its source: now present", q.id),
                        (Some(e), false) => format!("failed: syncing pair {}: {e}", q.id),
                        (None, false) => format!(
                            "not in pair {}'s source either: not fabricated (the attendee's old mailbox lacks it)",
                            q.id
                        ),
                    }
                }
            };
            report.found(
                "attendee-missing",
                Side::A,
                &href,
                &identity.to_string(),
                action,
            );
        }
        Ok(())
    }

    /// The identities of every item in `pair`'s target calendar.
    async fn target_identities(&self, pair: &Pair) -> Result<HashSet<IdentityKey>, String> {
        let tgt = self.store_of(&pair.target.server)?;
        let cal = &pair.target.path;
        let hrefs: Vec<Href> = tgt
            .list(cal)
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|v| v.href)
            .collect();
        let items = fetch_all(&*tgt, cal, &hrefs)
            .await
            .map_err(|e| e.to_string())?;
        Ok(items
            .into_iter()
            .filter_map(|(_, r)| Item::parse(&r.ok()?.data).ok())
            .map(|i| i.identity())
            .collect())
    }

    /// Whether `side` may be written now; else what to report instead (a dry run says what it
    /// would do, a lost lease fails the write).
    async fn cleared(
        &self,
        scope: &Scope<'_>,
        side: Side,
        would: &str,
    ) -> Result<Result<(), String>, StateError> {
        let Some(lease) = scope.leases[side as usize] else {
            return Ok(Err(format!("would {would}")));
        };
        Ok(match fence(&self.state, lease).await? {
            Some(_) => Err("failed: the lease was taken over".to_string()),
            None => Ok(()),
        })
    }

    /// Deletes an item with `If-Match` (under a current lease); in a dry run only says so.
    async fn remove(
        &self,
        scope: &Scope<'_>,
        side: Side,
        item: &Copy,
        why: String,
    ) -> Result<String, StateError> {
        Ok(match self.cleared(scope, side, "delete").await? {
            Err(not) => format!("{not} ({why})"),
            Ok(()) => match scope.stores[side as usize]
                .delete(&item.href, &item.etag)
                .await
            {
                Ok(()) => format!("deleted ({why})"),
                Err(e) => format!("failed: {e}"),
            },
        })
    }
}
