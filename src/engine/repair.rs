//! The repair assistant: compares a pair's source and target in full, trusting nothing the state
//! store says, fixes what differs under the target calendar's lease, and rebuilds the pair's
//! mappings from what it found.
//!
//! Findings by class: `missing` (in the source, not in the target: created), `drifted` (the target
//! copy differs from the rewritten source: updated), `duplicate` (more copies of one meeting: one
//! kept as `dedupe` would), `orphan` (a copy tandem made whose source item is gone: deleted),
//! `extra` (not from the source: reported; deleted only with `extras = "delete"`), and, across
//! calendars, `attendee-missing` (a meeting organised by this pair's mailbox that an attendee's
//! pair lacks in its target: that pair is synced from its source, never given a made-up copy).

use std::collections::{BTreeMap, HashSet};

use serde::Serialize;

use crate::config::{Extras, PairConfig};
use crate::domain::identity::IdentityKey;
use crate::domain::item::Item;
use crate::domain::lease::LeaseKind;
use crate::domain::mapping::Mapping;
use crate::domain::mapping::Side;
use crate::domain::types::{ContentHash, Etag, Href};
use crate::engine::{Dest, Engine, Original, fetch_all};
use crate::state::StateError;
use crate::sync::{Content, CopyRank, rank_copies};

#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// `missing`, `drifted`, `duplicate`, `orphan` or `extra`.
    pub class: &'static str,
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
    /// Source items outside the sync window without a target copy (not created).
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
}

/// One target item as read.
struct Copy {
    href: Href,
    etag: Etag,
    uid: String,
    hash: ContentHash,
    newness: crate::sync::rank::Newness,
}

impl Engine {
    /// `tandem repair` for one pair. Only a state-store failure is an `Err`.
    pub async fn repair(
        &self,
        pair: &PairConfig,
        dry_run: bool,
    ) -> Result<RepairReport, StateError> {
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
        if !matches!(self.way(pair).await?, super::Way::One(m) if m.from() == Side::A) {
            report.error = Some(format!(
                "repair compares the source against the target, one way; pair {} is two-way or \
                 cut over: `tandem resync --pair {}` compares both sides in full instead",
                pair.id, pair.id
            ));
            return Ok(report);
        }
        let (scal, tcal) = (&pair.source.path, &pair.target.path);
        if !dry_run {
            self.state.ensure_pair(pair).await?;
        }
        // Under the target calendar's lease, renewed while the repair runs (a large calendar
        // takes longer than one ttl).
        let target = pair.target.to_string();
        let done = self
            .under_lease(&target, LeaseKind::Repair, dry_run, async |lease| {
                self.repair_under(pair, &*src, &*tgt, scal, tcal, lease, &mut report)
                    .await
            })
            .await?;
        if let Err(locked) = done {
            report.error = Some(format!(
                "target calendar {}: {locked}; not repaired",
                pair.target
            ));
        }
        Ok(report)
    }

    #[allow(clippy::too_many_arguments)]
    async fn repair_under<'a>(
        &self,
        pair: &PairConfig,
        src: &'a dyn crate::store::CalendarStore,
        tgt: &'a dyn crate::store::CalendarStore,
        scal: &'a crate::domain::types::CalendarPath,
        tcal: &'a crate::domain::types::CalendarPath,
        lease: Option<&crate::domain::lease::Lease>,
        report: &mut RepairReport,
    ) -> Result<(), StateError> {
        let Some((source_items, mut copies)) = self
            .read_for_repair(pair, (src, scal), (tgt, tcal), report)
            .await
        else {
            return Ok(());
        };
        let now = self.now();
        // What the state believes (used only to tell an orphan from an extra, and to prefer the
        // mapped copy of a duplicate).
        let mapped = self.mapped_copies(pair, Side::B).await?.unwrap_or_default();

        let mut found: Vec<Mapping> = Vec::new();
        // Meetings this pair's mailbox organises, with attendees that are configured pairs too.
        let mut invited: Vec<(Href, IdentityKey, PairConfig)> = Vec::new();
        let mut source_items: Vec<_> = source_items.into_iter().collect();
        source_items.sort_by(|a, b| a.0.cmp(&b.0));
        for (href, got) in source_items {
            let (etag, prepared) = match got {
                Ok(r) => match self.prepare(Side::A, &r.data, now) {
                    Content::Fetched(p) => (r.etag, p),
                    Content::Broken(_, e) => {
                        report.skipped.push(format!("source {href}: {e}"));
                        continue;
                    }
                    Content::NotFetched => continue,
                },
                Err(e) => {
                    report.skipped.push(format!("source {href}: {e}"));
                    continue;
                }
            };
            let identity = prepared.identity.to_string();
            let organiser = prepared
                .item
                .organizer()
                .map(crate::domain::identity::normalize_address);
            if organiser
                .as_ref()
                .and_then(|o| self.mailboxes.get(o))
                .is_some_and(|p| p.id == pair.id)
            {
                for a in prepared.item.attendees() {
                    if let Some(q) = self.mailboxes.get(&a).filter(|q| q.id != pair.id) {
                        invited.push((href.clone(), prepared.identity.clone(), q.clone()));
                    }
                }
            }
            let these = copies.remove(&prepared.identity).unwrap_or_default();
            if these.is_empty() {
                if !prepared.fit.is_inside() {
                    report.outside_window += 1;
                    continue;
                }
                let action = match lease {
                    None => "would create".to_string(),
                    Some(l) if self.fence(l).await?.is_some() => {
                        "failed: the lease was taken over".to_string()
                    }
                    Some(_) => match self
                        .create(
                            pair,
                            Dest {
                                side: Side::B,
                                store: tgt,
                                cal: tcal,
                            },
                            Original {
                                href: &href,
                                etag: &etag,
                                item: &prepared,
                            },
                        )
                        .await?
                    {
                        Ok((m, _)) => {
                            let done = format!("created {}", m.b_href);
                            found.push(m);
                            done
                        }
                        Err(e) => format!("failed: {e}"),
                    },
                };
                report.findings.push(Finding {
                    class: "missing",
                    href: href.to_string(),
                    identity,
                    action,
                });
                continue;
            }
            let mapping = self
                .repair_copies(
                    tgt,
                    lease,
                    (&href, &etag),
                    &prepared,
                    these,
                    &mapped,
                    report,
                )
                .await?;
            found.push(mapping);
        }
        self.repair_leftovers(tgt, lease, copies, &mapped, report)
            .await?;
        if lease.is_some() {
            self.state.rebuild_mappings(&pair.id, &found).await?;
        }
        self.check_attendees(invited, lease.is_none(), report).await
    }

    /// Reads both calendars in full: the source's items, and the target's grouped by meeting.
    /// `None` when a calendar cannot be read (the report says why).
    async fn read_for_repair<'a>(
        &self,
        pair: &PairConfig,
        (src, scal): (
            &'a dyn crate::store::CalendarStore,
            &'a crate::domain::types::CalendarPath,
        ),
        (tgt, tcal): (
            &'a dyn crate::store::CalendarStore,
            &'a crate::domain::types::CalendarPath,
        ),
        report: &mut RepairReport,
    ) -> Option<(Vec<crate::store::Fetched>, BTreeMap<IdentityKey, Vec<Copy>>)> {
        let read = |s: &'a dyn crate::store::CalendarStore,
                    cal: &'a crate::domain::types::CalendarPath| async move {
            s.check_calendar(cal).await?;
            let hrefs: Vec<Href> = s.list(cal).await?.into_iter().map(|v| v.href).collect();
            fetch_all(s, cal, &hrefs).await
        };
        let (source_items, target_items) = tokio::join!(read(src, scal), read(tgt, tcal));
        let (source_items, target_items) = match (source_items, target_items) {
            (Ok(s), Ok(t)) => (s, t),
            (Err(e), _) => {
                report.error = Some(format!(
                    "source calendar {} ({}): {e}",
                    pair.source,
                    src.describe()
                ));
                return None;
            }
            (_, Err(e)) => {
                report.error = Some(format!(
                    "target calendar {} ({}): {e}",
                    pair.target,
                    tgt.describe()
                ));
                return None;
            }
        };
        // The target, grouped by meeting.
        let mut copies: BTreeMap<IdentityKey, Vec<Copy>> = BTreeMap::new();
        for (href, got) in target_items {
            match got.map_err(|e| e.to_string()).and_then(|r| {
                Item::parse(&r.data)
                    .map(|i| (r.etag, i))
                    .map_err(|e| e.to_string())
            }) {
                Ok((etag, item)) => copies.entry(item.identity()).or_default().push(Copy {
                    href,
                    etag,
                    uid: item.uid().to_string(),
                    hash: item.content_hash(),
                    newness: crate::sync::rank::Newness::of(&item),
                }),
                Err(e) => report.skipped.push(format!("target {href}: {e}")),
            }
        }
        Some((source_items, copies))
    }

    /// One source item with copies in the target: keeps one (the keep-which-copy rule), deletes
    /// the others, updates the kept one if it drifted. Returns the mapping to record.
    #[allow(clippy::too_many_arguments)]
    async fn repair_copies(
        &self,
        tgt: &dyn crate::store::CalendarStore,
        lease: Option<&crate::domain::lease::Lease>,
        (href, etag): (&Href, &crate::domain::types::Etag),
        prepared: &crate::sync::Prepared,
        mut these: Vec<Copy>,
        mapped: &std::collections::HashSet<Href>,
        report: &mut RepairReport,
    ) -> Result<Mapping, StateError> {
        let identity = prepared.identity.to_string();
        rank_copies(&mut these, |c| CopyRank {
            mapped: mapped.contains(&c.href),
            equal: c.hash == prepared.hash,
            newness: &c.newness,
            href: &c.href,
        });
        let mut rest = these.into_iter();
        let keep = rest.next().expect("at least one copy");
        for dup in rest {
            let action = self
                .remove(
                    tgt,
                    lease,
                    &dup.href,
                    &dup.etag,
                    format!("kept {}", keep.href),
                )
                .await?;
            report.findings.push(Finding {
                class: "duplicate",
                href: dup.href.to_string(),
                identity: identity.clone(),
                action,
            });
        }
        let mut mapping = Mapping {
            a_href: href.clone(),
            a_etag: etag.clone(),
            b_href: keep.href.clone(),
            b_etag: keep.etag.clone(),
            identity: prepared.identity.clone(),
            hash: prepared.hash,
        };
        if keep.hash == prepared.hash {
            report.in_step += 1;
        } else if !prepared.fit.is_inside() {
            // Outside the window nothing is updated; remember what the copy holds.
            mapping.hash = keep.hash;
            report.outside_window += 1;
        } else {
            let action = match lease {
                None => "would update".to_string(),
                Some(l) if self.fence(l).await?.is_some() => {
                    "failed: the lease was taken over".to_string()
                }
                Some(_) => {
                    let mut ours = prepared.item.clone();
                    ours.set_uid(&keep.uid);
                    match tgt.update(&keep.href, &keep.etag, &ours.to_ics()).await {
                        Ok(new) => {
                            mapping.b_etag = new;
                            "updated".to_string()
                        }
                        Err(e) => {
                            mapping.hash = keep.hash;
                            format!("failed: {e}")
                        }
                    }
                }
            };
            report.findings.push(Finding {
                class: "drifted",
                href: keep.href.to_string(),
                identity: identity.clone(),
                action,
            });
        }
        Ok(mapping)
    }

    /// Target items that did not come from any source item: orphans of deleted sources go, extras
    /// go only with `extras = "delete"`.
    async fn repair_leftovers(
        &self,
        tgt: &dyn crate::store::CalendarStore,
        lease: Option<&crate::domain::lease::Lease>,
        copies: BTreeMap<IdentityKey, Vec<Copy>>,
        mapped: &std::collections::HashSet<Href>,
        report: &mut RepairReport,
    ) -> Result<(), StateError> {
        // What is left did not come from any source item.
        for (identity, rest) in copies {
            for c in rest {
                let (class, action) = if mapped.contains(&c.href) {
                    (
                        "orphan",
                        self.remove(
                            tgt,
                            lease,
                            &c.href,
                            &c.etag,
                            "its source item is gone".into(),
                        )
                        .await?,
                    )
                } else if self.extras() == Extras::Delete {
                    (
                        "extra",
                        self.remove(tgt, lease, &c.href, &c.etag, "extras = \"delete\"".into())
                            .await?,
                    )
                } else {
                    ("extra", "kept (extras = \"keep\")".to_string())
                };
                report.findings.push(Finding {
                    class,
                    href: c.href.to_string(),
                    identity: identity.to_string(),
                    action,
                });
            }
        }
        Ok(())
    }

    /// Exchange-style cross-calendar check: an attendee whose mailbox is a configured pair should
    /// have the meeting in its target calendar. If not, that pair is synced from its source; a
    /// meeting its source lacks too is reported, never fabricated.
    async fn check_attendees(
        &self,
        invited: Vec<(Href, IdentityKey, PairConfig)>,
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
            let has = match &seen[&key] {
                Ok(ids) => ids.contains(&identity),
                Err(e) => {
                    report.findings.push(Finding {
                        class: "attendee-missing",
                        href: href.to_string(),
                        identity: identity.to_string(),
                        action: format!("failed: pair {}: {e}", q.id),
                    });
                    continue;
                }
            };
            if has {
                continue;
            }
            let action = if dry_run {
                format!("would sync pair {} from its source", q.id)
            } else {
                let r = self
                    .sync_pair(&q, crate::engine::PassOptions::default())
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
            };
            report.findings.push(Finding {
                class: "attendee-missing",
                href: href.to_string(),
                identity: identity.to_string(),
                action,
            });
        }
        Ok(())
    }

    /// The identities of every item in `pair`'s target calendar.
    async fn target_identities(&self, pair: &PairConfig) -> Result<HashSet<IdentityKey>, String> {
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

    /// Deletes a target copy with `If-Match` (under a current lease); in a dry run only says so.
    async fn remove(
        &self,
        tgt: &dyn crate::store::CalendarStore,
        lease: Option<&crate::domain::lease::Lease>,
        href: &Href,
        etag: &Etag,
        why: String,
    ) -> Result<String, StateError> {
        let Some(l) = lease else {
            return Ok(format!("would delete ({why})"));
        };
        if self.fence(l).await?.is_some() {
            return Ok("failed: the lease was taken over".to_string());
        }
        Ok(match tgt.delete(href, etag).await {
            Ok(()) => format!("deleted ({why})"),
            Err(e) => format!("failed: {e}"),
        })
    }
}
