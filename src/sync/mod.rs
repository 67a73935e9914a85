//! Planning one pass of a pair: a pure function from both sides and the prior state to actions.
//!
//! Like pimsync and vdirsyncer, each item is decided by a `match` over
//! `(source?, target?, previous mapping?)`; etags say what may have changed, content hashes say
//! whether it really did. Nothing here does I/O, so the whole decision table is unit-tested and
//! `--dry-run` is just "print the plan".

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::domain::error::ErrorKind;
use crate::domain::identity::IdentityKey;
use crate::domain::item::Item;
use crate::domain::mapping::{Mapping, Pending};
use crate::domain::types::{ContentHash, Etag, Href};
use crate::domain::window::Fit;

/// A source item parsed, rewritten for the target org, and hashed.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub item: Item,
    pub hash: ContentHash,
    pub identity: IdentityKey,
    /// Where the item stands against the sync window this pass.
    pub fit: Fit,
}

impl Prepared {
    pub fn new(item: Item) -> Self {
        Prepared {
            hash: item.content_hash(),
            identity: item.identity(),
            item,
            fit: Fit::Inside,
        }
    }

    pub fn with_fit(mut self, fit: Fit) -> Self {
        self.fit = fit;
        self
    }
}

/// What is known of an item's body.
#[derive(Debug, Clone)]
pub enum Content<T> {
    /// Not read this pass: its etag matched the mapping.
    NotFetched,
    Fetched(T),
    /// Read but unusable (unparseable, or gone between listing and reading): why.
    Broken(ErrorKind, String),
}

#[derive(Debug, Clone)]
pub struct SourceItem {
    pub href: Href,
    pub etag: Etag,
    pub content: Content<Arc<Prepared>>,
}

#[derive(Debug, Clone)]
pub struct TargetItem {
    pub href: Href,
    pub etag: Etag,
    /// The hash of the target's body, when it was read.
    pub content: Content<ContentHash>,
}

/// The source side of one pass.
#[derive(Debug, Clone, Default)]
pub struct SourceSnapshot {
    pub items: Vec<SourceItem>,
    /// Hrefs reported deleted (incremental listings only).
    pub deleted: Vec<Href>,
    /// `items` is every item of the calendar; a mapped href missing from it was deleted. When
    /// false, hrefs neither in `items` nor in `deleted` are unchanged.
    pub complete: bool,
    /// Listed items left out of `items` because they wait outside the sync window.
    pub waiting: usize,
}

pub type TargetSnapshot = HashMap<Href, TargetItem>;
/// Mappings by source href.
pub type Prior = HashMap<Href, Mapping>;

#[derive(Debug, Clone)]
pub enum Action {
    /// Write the source item as a new target item.
    Create {
        source_href: Href,
        source_etag: Etag,
        item: Arc<Prepared>,
    },
    /// Overwrite the mapped target item (which is at `target_etag`).
    Update {
        source_href: Href,
        source_etag: Etag,
        target_href: Href,
        target_etag: Etag,
        item: Arc<Prepared>,
    },
    /// The source item is gone: delete its target copy.
    Delete {
        source_href: Href,
        target_href: Href,
        target_etag: Etag,
    },
    /// Both sides agree but an etag moved: record the new etags, write nothing remote.
    Refresh { mapping: Mapping },
    /// The source item and its target copy are both gone: drop the mapping.
    Forget { source_href: Href },
    /// The source item cannot be synced this pass; its mapping and target copy are kept.
    Skip {
        source_href: Href,
        kind: ErrorKind,
        reason: String,
    },
    /// A create whose outcome was never recorded left a copy whose source item is gone (or is
    /// now mapped elsewhere): delete it if it still carries the pending identity.
    DeleteOrphan { pending: Pending },
    /// A pending create is settled: recorded, or nothing was written.
    ClearPending { pending: Pending },
    /// The source item is new or changed but outside the sync window: write nothing, and remember
    /// it until `enters` (when it will overlap the window) so an incremental listing, which will
    /// not mention it again, does not lose it. `forget`: its mapping points at a copy that is gone.
    Defer {
        source_href: Href,
        source_etag: Etag,
        identity: IdentityKey,
        enters: Option<chrono::DateTime<chrono::Utc>>,
        forget: bool,
    },
}

#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub actions: Vec<Action>,
    /// Items found in step on both sides.
    pub unchanged: u64,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct PlanOptions {
    /// Delete target copies even when the source calendar lists nothing at all.
    pub force_delete: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error(
        "the source calendar lists no items but {mapped} were synced before; refusing to delete them all \
         (an emptied or wrongly mounted source?). Re-run with --force-delete if the source really is empty"
    )]
    SourceEmpty { mapped: usize },
}

/// What the keep-which-copy rule looks at in one copy of a meeting.
#[derive(Debug, Clone, Copy)]
pub struct CopyRank<'a> {
    /// The state maps this copy: deleting it would only bring it back.
    pub mapped: bool,
    /// It already equals the source's version.
    pub equal: bool,
    pub sequence: i64,
    /// As written (UTC `YYYYMMDDTHHMMSSZ` sorts by time).
    pub last_modified: Option<&'a str>,
    pub href: &'a Href,
}

/// The keep-which-copy rule, one for `dedupe` and `repair`: sorts `copies` so the one to keep
/// comes first — the mapped copy, then one equal to the source, then the highest SEQUENCE, then
/// the latest LAST-MODIFIED; the href breaks ties so the choice is the same every time.
pub fn rank_copies<T>(copies: &mut [T], rank: impl for<'a> Fn(&'a T) -> CopyRank<'a>) {
    copies.sort_by(|a, b| {
        let (a, b) = (rank(a), rank(b));
        (b.mapped, b.equal, b.sequence, b.last_modified)
            .cmp(&(a.mapped, a.equal, a.sequence, a.last_modified))
            .then_with(|| a.href.cmp(b.href))
    });
}

/// Which hrefs must be read before planning: every source item that is new or whose etag moved,
/// every mapped target item whose etag moved, and the source of every mapping whose target copy
/// moved or vanished (to restore it). With `full`, every source item and every mapped target.
pub fn fetch_lists(
    source: &SourceSnapshot,
    target: &HashMap<Href, Etag>,
    prior: &Prior,
    full: bool,
) -> (Vec<Href>, Vec<Href>) {
    let mut src: Vec<Href> = Vec::new();
    let mut listed: HashSet<&Href> = HashSet::with_capacity(source.items.len());
    for s in &source.items {
        listed.insert(&s.href);
        match prior.get(&s.href) {
            Some(p) if !full && p.a_etag == s.etag && target.get(&p.b_href) == Some(&p.b_etag) => {}
            _ => src.push(s.href.clone()),
        }
    }
    let deleted: HashSet<&Href> = source.deleted.iter().collect();
    let mut tgt = Vec::new();
    for p in prior.values() {
        let target_etag = target.get(&p.b_href);
        if target_etag.is_some_and(|e| full || *e != p.b_etag) {
            tgt.push(p.b_href.clone());
        }
        // Unmentioned by an incremental listing, but its target copy moved or vanished.
        if !source.complete
            && !listed.contains(&p.a_href)
            && !deleted.contains(&p.a_href)
            && (full || target_etag != Some(&p.b_etag))
        {
            src.push(p.a_href.clone());
        }
    }
    (src, tgt)
}

/// Decides what to do with every item of the pair, and with creates left pending by a crash.
pub fn plan(
    source: &SourceSnapshot,
    target: &TargetSnapshot,
    prior: &Prior,
    pending: &[Pending],
    opts: PlanOptions,
) -> Result<Plan, PlanError> {
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
    let mut out = Plan {
        actions: Vec::new(),
        unchanged: 0,
    };
    let mut push = |a: Option<Action>| match a {
        Some(a) => out.actions.push(a),
        None => out.unchanged += 1,
    };
    let mut listed: HashSet<&Href> = HashSet::with_capacity(source.items.len());
    let mut matched = 0;
    for s in &source.items {
        listed.insert(&s.href);
        let p = prior.get(&s.href);
        matched += usize::from(p.is_some());
        let t = p.and_then(|p| target.get(&p.b_href));
        push(plan_item(Some(s), t, p));
    }
    let deleted: HashSet<&Href> = source.deleted.iter().collect();
    // Mappings the listing did not mention: deleted (complete listing) or unchanged (incremental).
    if matched < prior.len() {
        for p in prior.values() {
            if listed.contains(&p.a_href) {
                continue;
            }
            let t = target.get(&p.b_href);
            if source.complete || deleted.contains(&p.a_href) {
                push(plan_item(None, t, Some(p)));
            } else {
                let unchanged = SourceItem {
                    href: p.a_href.clone(),
                    etag: p.a_etag.clone(),
                    content: Content::NotFetched,
                };
                push(plan_item(Some(&unchanged), t, Some(p)));
            }
        }
    }
    for pd in pending {
        let mapped = prior.get(&pd.a_href);
        if mapped.is_some_and(|m| m.b_href == pd.b_href) {
            out.actions.push(Action::ClearPending {
                pending: pd.clone(),
            });
            continue;
        }
        let source_present =
            listed.contains(&pd.a_href) || (!source.complete && !deleted.contains(&pd.a_href));
        if source_present && mapped.is_none() {
            continue; // the item's own Create retries on the same name and adopts the copy
        }
        out.actions.push(match target.get(&pd.b_href) {
            Some(_) => Action::DeleteOrphan {
                pending: pd.clone(),
            },
            None => Action::ClearPending {
                pending: pd.clone(),
            },
        });
    }
    Ok(out)
}

/// The decision for one item; `None` means "in step, nothing to do".
pub fn plan_item(
    s: Option<&SourceItem>,
    t: Option<&TargetItem>,
    p: Option<&Mapping>,
) -> Option<Action> {
    match (s, t, p) {
        (None, _, None) => None,
        (None, None, Some(p)) => Some(Action::Forget {
            source_href: p.a_href.clone(),
        }),
        (None, Some(t), Some(p)) => Some(Action::Delete {
            source_href: p.a_href.clone(),
            target_href: t.href.clone(),
            target_etag: t.etag.clone(),
        }),
        // New in the source, or its target copy vanished: (re)create, if inside the window.
        (Some(s), _, None) | (Some(s), None, Some(_)) => Some(match &s.content {
            Content::Fetched(item) if !item.fit.is_inside() => defer(s, item, p.is_some()),
            Content::Fetched(item) => Action::Create {
                source_href: s.href.clone(),
                source_etag: s.etag.clone(),
                item: item.clone(),
            },
            Content::Broken(kind, reason) => Action::Skip {
                source_href: s.href.clone(),
                kind: *kind,
                reason: reason.clone(),
            },
            Content::NotFetched => Action::Skip {
                source_href: s.href.clone(),
                kind: ErrorKind::Transient,
                reason: "source item was not read".into(),
            },
        }),
        (Some(s), Some(t), Some(p)) => {
            let want = match &s.content {
                Content::Fetched(item) => item.hash,
                Content::NotFetched if s.etag == p.a_etag => p.hash,
                Content::NotFetched => {
                    return Some(Action::Skip {
                        source_href: s.href.clone(),
                        kind: ErrorKind::Transient,
                        reason: "changed source item was not read".into(),
                    });
                }
                Content::Broken(kind, reason) => {
                    return Some(Action::Skip {
                        source_href: s.href.clone(),
                        kind: *kind,
                        reason: reason.clone(),
                    });
                }
            };
            let have = match &t.content {
                Content::Fetched(hash) => Some(*hash),
                Content::NotFetched if t.etag == p.b_etag => Some(p.hash),
                Content::NotFetched | Content::Broken(..) => None,
            };
            if have == Some(want) {
                if s.etag == p.a_etag && t.etag == p.b_etag && want == p.hash {
                    return None;
                }
                let identity = match &s.content {
                    Content::Fetched(item) => item.identity.clone(),
                    _ => p.identity.clone(),
                };
                return Some(Action::Refresh {
                    mapping: Mapping {
                        a_href: s.href.clone(),
                        a_etag: s.etag.clone(),
                        b_href: t.href.clone(),
                        b_etag: t.etag.clone(),
                        identity,
                        hash: want,
                    },
                });
            }
            match &s.content {
                // Outside the window nothing is written: an edit of the target copy is accepted
                // as it is, a source change waits until the item enters the window.
                Content::Fetched(item) if !item.fit.is_inside() => {
                    if s.etag != p.a_etag {
                        return Some(defer(s, item, false));
                    }
                    if t.etag == p.b_etag {
                        return None;
                    }
                    Some(Action::Refresh {
                        mapping: Mapping {
                            b_href: t.href.clone(),
                            b_etag: t.etag.clone(),
                            ..p.clone()
                        },
                    })
                }
                Content::Fetched(item) => Some(Action::Update {
                    source_href: s.href.clone(),
                    source_etag: s.etag.clone(),
                    target_href: t.href.clone(),
                    target_etag: t.etag.clone(),
                    item: item.clone(),
                }),
                _ => Some(Action::Skip {
                    source_href: s.href.clone(),
                    kind: ErrorKind::Transient,
                    reason: "target copy differs but the source item was not read".into(),
                }),
            }
        }
    }
}

fn defer(s: &SourceItem, item: &Prepared, forget: bool) -> Action {
    let enters = match item.fit {
        Fit::Outside { enters } => enters,
        Fit::Inside => None,
    };
    Action::Defer {
        source_href: s.href.clone(),
        source_etag: s.etag.clone(),
        identity: item.identity.clone(),
        enters,
        forget,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_copy_kept_is_mapped_then_equal_then_newest() {
        // (href, mapped, equal, SEQUENCE, LAST-MODIFIED)
        let copy = |name: &str, mapped, equal, seq, lm: Option<&'static str>| {
            (
                Href::new(&format!("/cal/{name}.ics")).unwrap(),
                mapped,
                equal,
                seq,
                lm,
            )
        };
        let mut copies = vec![
            copy("a", false, false, 1, Some("20260101T000000Z")),
            copy("b", false, false, 2, None),
            copy("f", false, false, 2, Some("20250101T000000Z")),
            copy("c", false, false, 2, Some("20250101T000000Z")),
            copy("d", false, true, 0, None),
            copy("e", true, false, 0, None),
        ];
        rank_copies(&mut copies, |c| CopyRank {
            mapped: c.1,
            equal: c.2,
            sequence: c.3,
            last_modified: c.4,
            href: &c.0,
        });
        let names: Vec<&str> = copies.iter().map(|c| c.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "/cal/e.ics",
                "/cal/d.ics",
                "/cal/c.ics",
                "/cal/f.ics",
                "/cal/b.ics",
                "/cal/a.ics"
            ]
        );
    }

    fn href(s: &str) -> Href {
        Href::new(s).unwrap()
    }

    fn item(uid: &str, summary: &str) -> Arc<Prepared> {
        let ics = format!(
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nUID:{uid}\r\nDTSTART:20260101T100000Z\r\nSUMMARY:{summary}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
        );
        Arc::new(Prepared::new(Item::parse(&ics).unwrap()))
    }

    /// Source "/s/x.ics" at `etag`, fetched as `summary` when given.
    fn src(etag: &str, summary: Option<&str>) -> SourceItem {
        SourceItem {
            href: href("/s/x.ics"),
            etag: Etag::new(etag),
            content: summary.map_or(Content::NotFetched, |s| Content::Fetched(item("x", s))),
        }
    }

    fn tgt(etag: &str, summary: Option<&str>) -> TargetItem {
        TargetItem {
            href: href("/t/x.ics"),
            etag: Etag::new(etag),
            content: summary.map_or(Content::NotFetched, |s| Content::Fetched(item("x", s).hash)),
        }
    }

    /// Mapping made when the item read `summary` at source etag "s1" and target etag "t1".
    fn prior(summary: &str) -> Mapping {
        let it = item("x", summary);
        Mapping {
            a_href: href("/s/x.ics"),
            a_etag: Etag::new("s1"),
            b_href: href("/t/x.ics"),
            b_etag: Etag::new("t1"),
            identity: it.identity.clone(),
            hash: it.hash,
        }
    }

    fn kind(a: &Option<Action>) -> &'static str {
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
            Some(Action::Defer { forget: false, .. }) => "defer",
            Some(Action::Defer { forget: true, .. }) => "defer-forget",
        }
    }

    /// The truth table over (source?, target?, previous?) × changed/unchanged.
    #[test]
    fn truth_table() {
        let p = prior("A");
        type Case = (
            &'static str,
            Option<SourceItem>,
            Option<TargetItem>,
            Option<Mapping>,
            &'static str,
        );
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
                Some(SourceItem {
                    content: Content::Broken(ErrorKind::InvalidData, "bad".into()),
                    ..src("s1", None)
                }),
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
                Some(TargetItem {
                    content: Content::Broken(ErrorKind::InvalidData, "bad".into()),
                    ..tgt("t2", None)
                }),
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
                Some(SourceItem {
                    content: Content::Broken(ErrorKind::InvalidData, "bad".into()),
                    ..src("s2", None)
                }),
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
        for (name, s, t, p, want) in cases {
            let got = plan_item(s.as_ref(), t.as_ref(), p.as_ref());
            assert_eq!(kind(&got), want, "{name}: {got:?}");
        }
    }

    /// Source `summary` fetched at `etag`, outside the window.
    fn src_outside(etag: &str, summary: &str) -> SourceItem {
        let later = chrono::DateTime::from_timestamp(2_000_000_000, 0);
        let it =
            Arc::new(Prepared::clone(&item("x", summary)).with_fit(Fit::Outside { enters: later }));
        SourceItem {
            href: href("/s/x.ics"),
            etag: Etag::new(etag),
            content: Content::Fetched(it),
        }
    }

    /// Outside the window nothing is written, and nothing is deleted for it either.
    #[test]
    fn window_cases() {
        let p = prior("A");
        type Case = (
            &'static str,
            Option<SourceItem>,
            Option<TargetItem>,
            Option<Mapping>,
            &'static str,
        );
        let cases: Vec<Case> = vec![
            (
                "new, outside",
                Some(src_outside("s1", "A")),
                None,
                None,
                "defer",
            ),
            (
                "aged out, unchanged",
                Some(src_outside("s1", "A")),
                Some(tgt("t1", Some("A"))),
                Some(p.clone()),
                "none",
            ),
            (
                "aged out, source changed",
                Some(src_outside("s2", "B")),
                Some(tgt("t1", None)),
                Some(p.clone()),
                "defer",
            ),
            (
                "aged out, target edited: kept as is",
                Some(src_outside("s1", "A")),
                Some(tgt("t2", Some("B"))),
                Some(p.clone()),
                "refresh",
            ),
            (
                "aged out, target copy gone",
                Some(src_outside("s1", "A")),
                None,
                Some(p.clone()),
                "defer-forget",
            ),
            (
                "aged out, same content, etag moved",
                Some(src_outside("s2", "A")),
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
        for (name, s, t, p, want) in cases {
            let got = plan_item(s.as_ref(), t.as_ref(), p.as_ref());
            assert_eq!(kind(&got), want, "{name}: {got:?}");
        }
        // The accepted edit keeps the hash of what was last written.
        match plan_item(
            Some(&src_outside("s1", "A")),
            Some(&tgt("t2", Some("B"))),
            Some(&p),
        ) {
            Some(Action::Refresh { mapping }) => {
                assert_eq!(
                    (mapping.a_etag.as_str(), mapping.b_etag.as_str()),
                    ("s1", "t2")
                );
                assert_eq!(mapping.hash, p.hash);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn update_carries_if_match_etag_and_refresh_new_etags() {
        let p = prior("A");
        match plan_item(
            Some(&src("s1", Some("A"))),
            Some(&tgt("t2", Some("B"))),
            Some(&p),
        ) {
            Some(Action::Update { target_etag, .. }) => assert_eq!(target_etag.as_str(), "t2"),
            other => panic!("{other:?}"),
        }
        match plan_item(
            Some(&src("s2", Some("A"))),
            Some(&tgt("t1", None)),
            Some(&p),
        ) {
            Some(Action::Refresh { mapping }) => {
                assert_eq!(mapping.a_etag.as_str(), "s2");
                assert_eq!(mapping.b_etag.as_str(), "t1");
            }
            other => panic!("{other:?}"),
        }
    }

    fn snapshot(items: Vec<SourceItem>, complete: bool) -> SourceSnapshot {
        SourceSnapshot {
            items,
            deleted: Vec::new(),
            complete,
            waiting: 0,
        }
    }

    #[test]
    fn mass_delete_guard() {
        let p = prior("A");
        let prior: Prior = [(p.a_href.clone(), p.clone())].into();
        let target: TargetSnapshot = [(href("/t/x.ics"), tgt("t1", None))].into();
        let err = plan(
            &snapshot(vec![], true),
            &target,
            &prior,
            &[],
            PlanOptions::default(),
        )
        .unwrap_err();
        assert_eq!(err, PlanError::SourceEmpty { mapped: 1 });
        let forced = plan(
            &snapshot(vec![], true),
            &target,
            &prior,
            &[],
            PlanOptions { force_delete: true },
        )
        .unwrap();
        assert!(matches!(forced.actions.as_slice(), [Action::Delete { .. }]));
        // An empty incremental listing only means "nothing changed".
        let delta = plan(
            &snapshot(vec![], false),
            &target,
            &prior,
            &[],
            PlanOptions::default(),
        )
        .unwrap();
        assert!(delta.actions.is_empty());
        assert_eq!(delta.unchanged, 1);
    }

    #[test]
    fn incremental_deletions_and_unmentioned_items() {
        let p = prior("A");
        let prior: Prior = [(p.a_href.clone(), p.clone())].into();
        let target: TargetSnapshot = [(href("/t/x.ics"), tgt("t1", None))].into();
        let mut snap = snapshot(vec![], false);
        snap.deleted.push(href("/s/x.ics"));
        let plan = plan(&snap, &target, &prior, &[], PlanOptions::default()).unwrap();
        assert!(matches!(plan.actions.as_slice(), [Action::Delete { .. }]));
    }

    #[test]
    fn fetch_lists_pick_only_what_moved() {
        let p = prior("A");
        let prior: Prior = [(p.a_href.clone(), p.clone())].into();
        let unchanged = snapshot(vec![src("s1", None)], true);
        let target: HashMap<Href, Etag> = [(href("/t/x.ics"), Etag::new("t1"))].into();
        assert_eq!(
            fetch_lists(&unchanged, &target, &prior, false),
            (vec![], vec![])
        );
        let (s, t) = fetch_lists(&unchanged, &target, &prior, true);
        assert_eq!((s.len(), t.len()), (1, 1));
        let moved: HashMap<Href, Etag> = [(href("/t/x.ics"), Etag::new("t2"))].into();
        assert_eq!(
            fetch_lists(&unchanged, &moved, &prior, false),
            (vec![href("/s/x.ics")], vec![href("/t/x.ics")])
        );
        let gone = HashMap::new();
        assert_eq!(
            fetch_lists(&unchanged, &gone, &prior, false),
            (vec![href("/s/x.ics")], vec![])
        );
        // Incremental listing that does not mention the item, but its target copy vanished.
        let delta = snapshot(vec![], false);
        assert_eq!(
            fetch_lists(&delta, &gone, &prior, false),
            (vec![href("/s/x.ics")], vec![])
        );
        assert_eq!(
            fetch_lists(&delta, &target, &prior, false),
            (vec![], vec![])
        );
        let new = SourceSnapshot {
            items: vec![SourceItem {
                href: href("/s/new.ics"),
                ..src("n1", None)
            }],
            deleted: vec![],
            complete: false,
            waiting: 0,
        };
        assert_eq!(
            fetch_lists(&new, &target, &prior, false).0,
            vec![href("/s/new.ics")]
        );
    }

    #[test]
    fn pending_creates_after_a_crash() {
        let it = item("x", "A");
        let pending = Pending {
            a_href: href("/s/x.ics"),
            b_href: href("/t/x.ics"),
            identity: it.identity.clone(),
        };
        let copy: TargetSnapshot = [(href("/t/x.ics"), tgt("t1", None))].into();
        let kinds = |p: &Plan| {
            p.actions
                .iter()
                .map(|a| kind(&Some(a.clone())))
                .collect::<Vec<_>>()
        };
        // Source still there: its own create retries (and will adopt); the pending row stays.
        let present = snapshot(vec![src("s1", Some("A"))], true);
        let p = plan(
            &present,
            &copy,
            &Prior::new(),
            std::slice::from_ref(&pending),
            PlanOptions::default(),
        )
        .unwrap();
        assert_eq!(kinds(&p), ["create"]);
        // Source gone: the orphan copy is deleted.
        let gone = snapshot(
            vec![src("s9", Some("B"))]
                .into_iter()
                .map(|mut s| {
                    s.href = href("/s/other.ics");
                    s
                })
                .collect(),
            true,
        );
        let p = plan(
            &gone,
            &copy,
            &Prior::new(),
            std::slice::from_ref(&pending),
            PlanOptions::default(),
        )
        .unwrap();
        assert_eq!(kinds(&p), ["create", "delete-orphan"]);
        // Source gone and nothing was written: just settle.
        let p = plan(
            &gone,
            &TargetSnapshot::new(),
            &Prior::new(),
            std::slice::from_ref(&pending),
            PlanOptions::default(),
        )
        .unwrap();
        assert_eq!(kinds(&p), ["create", "clear-pending"]);
        // Recorded meanwhile: settle.
        let m = prior("A");
        let mapped: Prior = [(m.a_href.clone(), m)].into();
        let p = plan(
            &snapshot(vec![src("s1", None)], true),
            &copy,
            &mapped,
            std::slice::from_ref(&pending),
            PlanOptions::default(),
        )
        .unwrap();
        assert_eq!(kinds(&p), ["clear-pending"]);
        // Incremental listing that reports the source deleted.
        let mut delta = snapshot(vec![], false);
        delta.deleted.push(href("/s/x.ics"));
        let p = plan(
            &delta,
            &copy,
            &Prior::new(),
            std::slice::from_ref(&pending),
            PlanOptions::default(),
        )
        .unwrap();
        assert_eq!(kinds(&p), ["delete-orphan"]);
    }
}
