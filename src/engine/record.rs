//! The record stage of a pass: what the plan only records (etags that moved, mappings gone,
//! pending creates settled, items deferred by the window), what the writes came to, quarantine,
//! and the watermarks, which move only when every change they cover is recorded.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::base::{Engine, PassError, save_watermarks};
use super::execute::{Done, Executed, Halt, Lost, Wrote};
use super::list::{Held, Tokens, role};
use super::read::Read;
use super::report::{ItemOp, PairReport};
use super::write::Written;
use crate::domain::error::ErrorKind;
use crate::domain::mapping::{Mapping, OutsideWindow, Pending, Side};
use crate::domain::pair::Pair;
use crate::domain::pairstate::{ItemFault, QUARANTINE_AFTER};
use crate::domain::types::Href;
use crate::domain::window::Window;
use crate::state::State;
use crate::store::CalendarStore;
use crate::sync::{Action, Content, Prior, Snapshot};

/// The state changes a pass makes besides the mappings recorded with each write.
#[derive(Default)]
struct Bookkeeping {
    refreshed: Vec<Mapping>,
    /// Mappings to drop, by A href.
    forget: Vec<Href>,
    settled: Vec<Pending>,
    /// Items deferred by the window, with their side.
    outside: Vec<(Side, OutsideWindow)>,
    extras_gone: Vec<Href>,
    /// Writes not attempted because the pass stopped.
    left: u64,
}

impl Bookkeeping {
    /// Sorts the plan's record-only actions, counting them into `report`.
    fn of_plan(local: Vec<Action>, report: &mut PairReport) -> Bookkeeping {
        let mut b = Bookkeeping::default();
        for action in local {
            match action {
                Action::ClearPending { pending } => b.settled.push(pending),
                Action::Refresh { mapping } => b.refreshed.push(mapping),
                Action::Forget { mapping } => b.forget.push(mapping.a_href),
                Action::Defer {
                    on,
                    href,
                    etag,
                    identity,
                    enters,
                    forget,
                } => {
                    report.outside_window += 1;
                    if let Some(m) = forget {
                        b.forget.push(m.a_href);
                    }
                    let row = OutsideWindow {
                        href,
                        etag,
                        identity,
                        enters: enters.map(|t| t.timestamp()),
                    };
                    b.outside.push((on, row));
                }
                Action::Skip { href, kind, reason } => {
                    report.fail_item(&href, ItemOp::Read, kind, &reason);
                }
                other => unreachable!("a remote write is executed: {other:?}"),
            }
        }
        b
    }

    /// Counts what the writes came to into `report`.
    fn add_done(&mut self, done: Vec<Done>, report: &mut PairReport) {
        for d in done {
            match d {
                Done::Written(Written::Created) => report.created += 1,
                Done::Written(Written::Updated) => report.updated += 1,
                Done::Written(Written::Adopted) => report.adopted += 1,
                Done::Written(Written::Unchanged) => report.unchanged += 1,
                Done::Deleted(_) => report.deleted += 1,
                Done::ExtraDeleted(href) => {
                    report.deleted += 1;
                    self.extras_gone.push(href);
                }
                Done::Settled { pending, removed } => {
                    report.deleted += u64::from(removed);
                    self.settled.push(pending);
                }
                Done::Failed {
                    href,
                    op,
                    kind,
                    error,
                } => report.fail_item(&href, op, kind, &error),
                Done::NotRun => self.left += 1,
            }
        }
    }
}

/// The record stage of one pass of a pair (this room and `settle.rs`): what it uses of the
/// engine, and no more.
pub(super) struct Recorder<'e> {
    pub(super) pair: &'e Pair,
    state: &'e State,
    /// Side A's store and side B's (listed again after the writes).
    stores: [Arc<dyn CalendarStore>; 2],
    window: Window,
}

impl<'e> Recorder<'e> {
    /// The stage for `pair`; `Err` if a server of it could not be opened.
    pub(super) fn new(engine: &'e Engine, pair: &'e Pair) -> Result<Recorder<'e>, PassError> {
        Ok(Recorder {
            pair,
            state: &engine.state,
            stores: engine.pair_stores(pair)?,
            window: engine.forms.window,
        })
    }

    pub(super) fn store(&self, side: Side) -> &dyn CalendarStore {
        &*self.stores[side as usize]
    }

    /// Records the pass: bookkeeping, quarantine, the window's memory, then — if nothing was
    /// left undone — the watermarks. A pass that stopped early is an `Err` naming why.
    pub(super) async fn record(
        &self,
        mut read: Read,
        local: Vec<Action>,
        executed: Executed,
        report: &mut PairReport,
    ) -> Result<(), PassError> {
        let (left, outside) = self.book(local, executed.done, report).await?;
        let cut_short = executed.halt.is_some() || left > 0;
        for &side in read.mode.reads() {
            let i = side as usize;
            let carried = (&read.sides[i], &mut read.held[i]);
            self.held_back(side, carried, &read.prior, &outside, cut_short, report)
                .await?;
        }
        let stopped = (executed.halt, executed.lost);
        self.finish((&read.tokens, &executed.wrote), stopped, left, report)
            .await
    }

    /// Records what the plan only records and what the writes came to (counted into `report`);
    /// returns how many writes were left undone, and the items the window deferred.
    pub(super) async fn book(
        &self,
        local: Vec<Action>,
        done: Vec<Done>,
        report: &mut PairReport,
    ) -> Result<(u64, Vec<(Side, OutsideWindow)>), PassError> {
        let mut b = Bookkeeping::of_plan(local, report);
        b.add_done(done, report);
        // Every change this pass saw and did not apply: failed, skipped, quarantined, or left
        // when the pass stopped early.
        report.backlog = Some(report.failed + b.left + report.quarantined);
        self.state
            .apply(&self.pair.id, &b.refreshed, &b.forget)
            .await?;
        self.state.clear_pendings(&self.pair.id, &b.settled).await?;
        self.state
            .update_target_index(&self.pair.id, &[], &b.extras_gone)
            .await?;
        Ok((b.left, b.outside))
    }

    /// The end of a pass that got to write: an `Err` naming why if it stopped early (the calendar
    /// written to refused, the lease was lost, tandem is stopping); else the watermarks move, if
    /// every change they cover is applied.
    pub(super) async fn finish(
        &self,
        (tokens, wrote): (&Tokens, &[Wrote; 2]),
        (halt, lost): (Option<Halt>, Option<Lost>),
        left: u64,
        report: &mut PairReport,
    ) -> Result<(), PassError> {
        if let Some((to, kind, reason)) = halt {
            let cal = self.pair.calendar(to);
            let store = self.store(to).describe();
            return Err(PassError::Pair(
                kind,
                format!(
                    "{} calendar {cal} ({store}): {reason}; pass stopped, {left} change(s) left for the next pass",
                    role(to)
                ),
            ));
        }
        if let Some((to, why)) = lost {
            let cal = self.pair.calendar(to);
            report.busy = true;
            return Err(PassError::Pair(
                ErrorKind::Transient,
                format!(
                    "{} calendar {cal}: {why}; stopped writing, {left} change(s) left for the next pass",
                    role(to)
                ),
            ));
        }
        if left > 0 {
            report.interrupted = true;
            return Err(PassError::Pair(
                ErrorKind::Transient,
                format!("interrupted: tandem is stopping; {left} change(s) left for the next pass"),
            ));
        }
        // Each token was taken before this pass wrote: it moves past our own writes if nothing
        // else moved meanwhile (see `settle`).
        if report.failed == 0 {
            let tokens = self.settle(tokens, wrote).await;
            save_watermarks(self.state, self.pair, &tokens).await?;
        }
        Ok(())
    }

    /// What side `side` (copied from) holds back after this pass: its items' permanent failures
    /// count towards quarantine, items read and synced (or gone) leave it, and the window's
    /// memory takes the items deferred (`outside`) and forgets what was read and is now written,
    /// in step or deleted. After a failure or a pass cut short, only what is known gone is
    /// forgotten (the rest is read again next pass).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn held_back(
        &self,
        side: Side,
        (source, held): (&Snapshot, &mut Held),
        prior: &Prior,
        outside: &[(Side, OutsideWindow)],
        cut_short: bool,
        report: &mut PairReport,
    ) -> Result<(), PassError> {
        self.quarantine(side, (source, held), prior, cut_short, report)
            .await?;
        if report.failed == 0 && !cut_short {
            held.outside_gone.append(&mut held.fetched);
            held.outside_gone.extend(held.injected.drain());
            held.outside_gone.extend(source.deleted.iter().cloned());
        }
        let deferred: Vec<OutsideWindow> = outside
            .iter()
            .filter(|(s, _)| *s == side)
            .map(|(_, o)| o.clone())
            .collect();
        self.state
            .update_outside_window(
                &self.pair.id,
                side,
                &deferred,
                &held.outside_gone,
                &self.window.key(),
            )
            .await?;
        Ok(())
    }

    /// Permanent failures of items on `side` count towards quarantine; items read and synced
    /// (or gone) leave it. Unless the pass stopped early: then what was not written is unknown.
    async fn quarantine(
        &self,
        side: Side,
        (source, held): (&Snapshot, &Held),
        prior: &Prior,
        cut_short: bool,
        report: &mut PairReport,
    ) -> Result<(), PassError> {
        let versions: HashMap<&Href, &crate::sync::Version> =
            source.items.iter().map(|s| (&s.href, s)).collect();
        let mut faults = Vec::new();
        let mut failed: HashSet<Href> = HashSet::new();
        for f in &report.failures {
            let Ok(href) = Href::new(&f.href) else {
                continue;
            };
            let Some(s) = versions.get(&href) else {
                continue;
            };
            failed.insert(href.clone());
            if f.permanent() {
                let identity = match &s.content {
                    Content::Fetched(p) => Some(p.identity.clone()),
                    _ => prior.get(side, &href).map(|m| m.identity.clone()),
                };
                faults.push(ItemFault {
                    href,
                    etag: s.etag.clone(),
                    identity,
                    error: f.reason.clone(),
                });
            }
        }
        if faults.is_empty() && held.quarantine.is_empty() {
            return Ok(());
        }
        let mut synced: Vec<Href> = held.outside_gone.clone();
        if !cut_short {
            synced.extend(
                held.fetched
                    .iter()
                    .chain(&held.injected)
                    .filter(|h| !failed.contains(*h))
                    .cloned(),
            );
            synced.extend(source.deleted.iter().cloned());
        }
        let newly = self
            .state
            .record_item_faults(&self.pair.id, side, &faults, &synced)
            .await?;
        for f in &mut report.failures {
            if newly.iter().any(|h| h.as_str() == f.href) {
                f.reason.push_str(&format!(
                    "; quarantined after {QUARANTINE_AFTER} failures: skipped until it changes or `tandem quarantine retry`"
                ));
            }
        }
        Ok(())
    }
}
