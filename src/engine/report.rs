//! What a pass reports per pair, for people (a table) and scripts (`--json`).

use serde::Serialize;

use crate::domain::error::{ErrorKind, MAX_REASON, bounded};
use crate::domain::mapping::Side;
use crate::domain::pair::Pair;
use crate::domain::types::Href;
use crate::sync::{Action, Prepared, target_name};

/// One item that could not be synced this pass.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ItemFailure {
    pub href: String,
    /// What the pass was doing to the item.
    #[serde(rename = "operation")]
    pub op: ItemOp,
    /// `invalid-data` for an item that cannot be parsed, else the store's error kind.
    #[serde(serialize_with = "kind_name")]
    pub kind: ErrorKind,
    /// The operation and the error, as the operator reads them.
    pub reason: String,
}

impl ItemFailure {
    /// Retrying will not help until the item changes (counts towards quarantine).
    pub fn permanent(&self) -> bool {
        self.kind.is_permanent()
    }
}

/// An error kind by its name (`not-found`, `invalid-data`, ...).
fn kind_name<S: serde::Serializer>(kind: &ErrorKind, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(kind.name())
}

/// What a pass was doing to an item when it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ItemOp {
    /// Reading the source item: it is skipped (broken, unreadable, too large).
    Read,
    /// Writing a copy (create, adoption or update) to the source, or to the target.
    WriteSource,
    WriteTarget,
    /// Deleting, in the source or the target, the copy of an item deleted on the other side.
    DeleteSource,
    DeleteTarget,
    /// Deleting an item not from the other side (`extras = "delete"`).
    DeleteExtra,
    /// Removing a copy an interrupted create left.
    RemoveOrphan,
}

impl ItemOp {
    /// Writing to `side`.
    pub fn write(side: Side) -> ItemOp {
        match side {
            Side::A => ItemOp::WriteSource,
            Side::B => ItemOp::WriteTarget,
        }
    }

    /// Deleting on `side` the copy of an item deleted on the other.
    pub fn delete(side: Side) -> ItemOp {
        match side {
            Side::A => ItemOp::DeleteSource,
            Side::B => ItemOp::DeleteTarget,
        }
    }

    /// The failure of this operation with `error`, as the operator reads it.
    pub fn message(self, kind: ErrorKind, error: &str) -> String {
        let doing = match self {
            ItemOp::Read => return format!("source item skipped: {error}"),
            ItemOp::WriteSource => "write to source",
            ItemOp::WriteTarget => "write to target",
            ItemOp::DeleteSource => "delete in the source",
            ItemOp::DeleteTarget => "delete in the target",
            ItemOp::DeleteExtra => "deleting an item not from the other side",
            ItemOp::RemoveOrphan => "removing a copy left by an interrupted create",
        };
        format!("{doing} failed ({kind}): {error}")
    }
}

/// One planned action, as `--dry-run` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedAction {
    pub action: &'static str,
    pub source_href: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_href: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct PairReport {
    pub pair: String,
    pub created: u64,
    pub updated: u64,
    pub deleted: u64,
    pub unchanged: u64,
    /// Target items that already held a source item (from a crashed run) and were taken over.
    pub adopted: u64,
    /// New or changed source items not written because they lie outside the sync window.
    pub outside_window: u64,
    /// Quarantined source items skipped this pass (see `tandem quarantine list`).
    pub quarantined: u64,
    /// Another process is syncing this pair: it was skipped, not failed.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub busy: bool,
    /// The pass stopped early because tandem is stopping.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub interrupted: bool,
    /// Source changes seen but not applied (failed, quarantined, or left when the pass stopped
    /// early); absent when the pass did not get far enough to know.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backlog: Option<u64>,
    /// HTTP requests the pass made, retries included, and those that got no usable answer.
    pub requests: u64,
    pub failed_requests: u64,
    /// Conflicts settled by the pair's policy (two-way): what was kept, what was set aside.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub resolved: Vec<String>,
    /// Items that failed; `failures` says which and why.
    pub failed: u64,
    /// Of those, items a scheduling server holds back until another write lands (kind
    /// `waiting`): `tandem sync` passes their pairs again once the others have passed.
    pub waiting: u64,
    pub failures: Vec<ItemFailure>,
    /// Why the whole pair failed, if it did.
    pub error: Option<String>,
    /// What kind of failure that was (`not-found`, `unauthorized`, `moving`, ...).
    #[serde(serialize_with = "maybe_kind_name")]
    pub error_kind: Option<ErrorKind>,
    pub dry_run: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub plan: Vec<PlannedAction>,
}

/// An error kind, if any, by its name.
fn maybe_kind_name<S: serde::Serializer>(k: &Option<ErrorKind>, s: S) -> Result<S::Ok, S::Error> {
    match k {
        Some(k) => kind_name(k, s),
        None => s.serialize_none(),
    }
}

impl PairReport {
    pub fn new(pair: &str) -> Self {
        PairReport {
            pair: pair.to_string(),
            ..Default::default()
        }
    }

    pub fn ok(&self) -> bool {
        self.error.is_none() && self.failed == 0
    }

    /// Counts an item that failed while the pass did `op` to it.
    pub fn fail_item(&mut self, href: impl ToString, op: ItemOp, kind: ErrorKind, error: &str) {
        self.failed += 1;
        self.waiting += u64::from(kind == ErrorKind::Waiting);
        self.failures.push(ItemFailure {
            href: href.to_string(),
            op,
            kind,
            reason: bounded(&op.message(kind, error), MAX_REASON),
        });
    }

    /// Whether this pass changed anything (or, in a dry run, would).
    pub fn changes(&self) -> u64 {
        self.created + self.updated + self.deleted + self.adopted
    }

    /// This report followed by `later`'s, a pass of the same pair run after it: what both
    /// wrote, and what is left as `later` found it. Items this one wrote are not counted again
    /// when `later` finds them unchanged.
    pub fn then(self, later: PairReport) -> PairReport {
        let wrote = self.created + self.updated + self.adopted;
        PairReport {
            created: self.created + later.created,
            updated: self.updated + later.updated,
            deleted: self.deleted + later.deleted,
            adopted: self.adopted + later.adopted,
            unchanged: later.unchanged.saturating_sub(wrote),
            requests: self.requests + later.requests,
            failed_requests: self.failed_requests + later.failed_requests,
            resolved: [self.resolved, later.resolved.clone()].concat(),
            ..later
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub pairs: Vec<PairReport>,
    pub ok: bool,
    pub created: u64,
    pub updated: u64,
    pub deleted: u64,
    pub unchanged: u64,
    pub adopted: u64,
    pub outside_window: u64,
    pub failed: u64,
    pub failed_pairs: u64,
    /// HTTP requests per server during this run (CalDAV servers only).
    pub servers: std::collections::BTreeMap<String, crate::domain::requests::HttpCounts>,
    /// What discovery found in each mailbox synced.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mailboxes: Vec<MailboxReport>,
}

impl Summary {
    pub fn new(pairs: Vec<PairReport>) -> Self {
        let mut s = Summary {
            ok: true,
            ..Default::default()
        };
        for p in &pairs {
            s.created += p.created;
            s.updated += p.updated;
            s.deleted += p.deleted;
            s.unchanged += p.unchanged;
            s.adopted += p.adopted;
            s.outside_window += p.outside_window;
            s.failed += p.failed;
            if p.error.is_some() {
                s.failed_pairs += 1;
            }
            s.ok &= p.ok();
        }
        s.pairs = pairs;
        s
    }

    /// A table, one line per pair, then every failure with its pair, href and reason.
    pub fn render_text(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let width = self
            .pairs
            .iter()
            .map(|p| p.pair.len())
            .max()
            .unwrap_or(4)
            .max(4);
        let _ = writeln!(
            out,
            "{:<width$}  {:>7} {:>7} {:>7} {:>7} {:>9} {:>6}  status",
            "pair", "created", "updated", "deleted", "adopted", "unchanged", "failed"
        );
        for p in &self.pairs {
            let status = match (&p.error, p.failed) {
                (Some(_), _) => "FAILED",
                (None, 0) if p.dry_run => "planned",
                (None, 0) => "ok",
                (None, _) => "partial",
            };
            let _ = writeln!(
                out,
                "{:<width$}  {:>7} {:>7} {:>7} {:>7} {:>9} {:>6}  {status}",
                p.pair, p.created, p.updated, p.deleted, p.adopted, p.unchanged, p.failed
            );
        }
        let _ = writeln!(
            out,
            "{:<width$}  {:>7} {:>7} {:>7} {:>7} {:>9} {:>6}",
            "total",
            self.created,
            self.updated,
            self.deleted,
            self.adopted,
            self.unchanged,
            self.failed
        );
        if self.outside_window > 0 {
            let _ = writeln!(
                out,
                "outside the sync window: {} new or changed item(s) not written ({})",
                self.outside_window,
                self.pairs
                    .iter()
                    .filter(|p| p.outside_window > 0)
                    .map(|p| format!("{} {}", p.pair, p.outside_window))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        for (name, c) in &self.servers {
            let _ = writeln!(
                out,
                "server {name}: {} requests, {} retried, {} throttled, {} failed",
                c.requests, c.retries, c.throttled, c.failures
            );
        }
        for p in &self.pairs {
            if let Some(e) = &p.error {
                let _ = writeln!(out, "pair {}: {e}", p.pair);
            }
            for r in &p.resolved {
                let _ = writeln!(out, "pair {}: {r}", p.pair);
            }
            for f in &p.failures {
                let _ = writeln!(
                    out,
                    "pair {}: {}: {} [{}]",
                    p.pair, f.href, f.reason, f.kind
                );
            }
        }
        out
    }
}

impl PairReport {
    /// Adds one planned action of a pass over `pair` to a dry run's report: counted as it would
    /// be done, and described. Actions that write name their side; the others are described as
    /// copies to side `to`.
    pub(crate) fn planned(&mut self, a: &Action, to: Side, pair: &Pair) {
        match a {
            Action::Create { .. } => self.created += 1,
            Action::Update { .. } => self.updated += 1,
            Action::Delete { .. } | Action::DeleteOrphan { .. } => self.deleted += 1,
            Action::Skip { href, kind, reason } => {
                self.fail_item(href, ItemOp::Read, *kind, reason)
            }
            Action::Defer { .. } => self.outside_window += 1,
            Action::Refresh { .. } | Action::Forget { .. } | Action::ClearPending { .. } => {}
        }
        let to = a.writes().unwrap_or(to);
        self.plan.push(describe(a, to, pair));
    }
}

fn describe(a: &Action, to: Side, pair: &Pair) -> PlannedAction {
    let tcal = &pair.calendar(to).path;
    let planned = |action, from: &Href, to: Option<&Href>, detail: Option<String>| PlannedAction {
        action,
        source_href: from.to_string(),
        target_href: to.map(Href::to_string),
        detail,
    };
    let summary = |p: &Prepared| p.item.summary().map(|s| format!("{s:?}"));
    match a {
        Action::Create {
            from_href, item, ..
        } => {
            let name = tcal.join(&target_name(item.item.uid()));
            planned("create", from_href, Some(&name), summary(item))
        }
        Action::Update {
            from_href,
            href,
            item,
            ..
        } => planned("update", from_href, Some(href), summary(item)),
        Action::Delete {
            href,
            mapping: Some(m),
            ..
        } => planned("delete", m.href(to.other()), Some(href), None),
        Action::Delete {
            href,
            mapping: None,
            ..
        } => PlannedAction {
            action: "delete",
            source_href: String::new(),
            target_href: Some(href.to_string()),
            detail: Some("not from the source (extras = \"delete\")".into()),
        },
        Action::Refresh { mapping } => planned(
            "refresh",
            mapping.href(to.other()),
            Some(mapping.href(to)),
            Some("etags moved, content equal: record only".into()),
        ),
        Action::Forget { mapping } => planned(
            "forget",
            mapping.href(to.other()),
            None,
            Some("gone on both sides: drop the mapping".into()),
        ),
        Action::DeleteOrphan { pending, .. } => planned(
            "delete",
            pending.href(to.other()),
            Some(pending.href(to)),
            Some("copy left by an interrupted create; its source item is gone".into()),
        ),
        Action::ClearPending { pending } => planned(
            "settle",
            pending.href(to.other()),
            Some(pending.href(to)),
            Some("interrupted create already resolved: record only".into()),
        ),
        Action::Skip { href, reason, .. } => planned("skip", href, None, Some(reason.clone())),
        Action::Defer { href, enters, .. } => planned(
            "outside-window",
            href,
            None,
            Some(match enters {
                Some(t) => format!(
                    "outside the sync window: written once it enters it, {}",
                    t.format("%Y-%m-%d %H:%M UTC")
                ),
                None => "before the sync window: not written".into(),
            }),
        ),
    }
}

/// What discovery found for one mailbox, and did or (in a dry run) would do.
#[derive(Debug, Clone, Serialize)]
pub struct MailboxReport {
    pub id: String,
    pub calendars: Vec<CalendarReport>,
    /// Why the mailbox could not be discovered (a home that cannot be listed, ...).
    pub error: Option<String>,
}

/// One calendar of a mailbox.
#[derive(Debug, Clone, Serialize)]
pub struct CalendarReport {
    /// The pair it is synced as (`MAILBOX/SEGMENT`).
    pub id: String,
    /// Its path on the source and on the target (`null` on the side that lacks it).
    pub source: Option<String>,
    pub target: Option<String>,
    /// `pair`, `create`, `skip` or `gone`.
    pub action: &'static str,
    /// Why it is skipped or gone, what changes on a pair, or why a write failed.
    pub reason: Option<String>,
    pub displayname: Option<String>,
}

impl MailboxReport {
    /// Whether every step went through (a skip or a gone calendar is no failure).
    pub fn ok(&self) -> bool {
        self.error.is_none()
            && self
                .calendars
                .iter()
                .all(|c| !c.reason.as_deref().is_some_and(|r| r.starts_with("failed")))
    }
}
