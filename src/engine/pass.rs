//! One pass of a pair from start to end: the way it runs, its glance, its leases, reading,
//! planning, executing and recording, and what it reports.

use std::sync::Arc;

use tracing::{info, warn};

use crate::domain::error::ErrorKind;
use crate::domain::lease::{Lease, LeaseKind, Locked};
use crate::domain::mapping::Side;
use crate::domain::pair::{Extras, Pair};
use crate::domain::run::{RunKind, RunRecord};
use crate::state::{Peek, StateError};
use crate::sync::select::select;
use crate::sync::{self, Action, Mode, PlanOptions, Resolved};

use super::base::{Engine, PassError, PassOptions};
use super::execute::Executor;
use super::glance::Glance;
use super::list::{Listing, Quiet, Reader};
use super::read::Read;
use super::record::Recorder;
use super::report::PairReport;
use super::runs;

/// How a pass under leases goes on from its start.
struct Leased {
    mode: Mode,
    opts: PassOptions,
    /// The listings its glance made, if it glanced and something moved.
    glanced: Option<Box<Listing>>,
    tally: Arc<crate::store::http::Tally>,
}

/// A pass that stopped, recording nothing, because this node may no longer hold the pair.
fn not_held(pair: &Pair) -> PairReport {
    let mut report = PairReport::new(pair.id.as_str());
    report.busy = true;
    report.error = Some(
        "this node no longer holds the pair (it stalled past its claim, or the pair is moving to \
         another node); skipped, nothing recorded"
            .to_string(),
    );
    warn!("this node no longer holds the pair; pass skipped");
    report
}

/// `report`, its outcome logged.
fn logged(report: PairReport) -> PairReport {
    for f in &report.failures {
        warn!(item = %f.href, kind = f.kind.name(), error = %f.reason, "item failed");
    }
    match &report.error {
        Some(e) => warn!(error = %e, "pair failed"),
        None => info!(
            created = report.created,
            updated = report.updated,
            deleted = report.deleted,
            adopted = report.adopted,
            unchanged = report.unchanged,
            failed = report.failed,
            "pass finished"
        ),
    }
    report
}

impl Engine {
    /// One pass over `pair`: [`Self::peek`], then [`Self::sync_pair_from`].
    pub async fn sync_pair(
        &self,
        pair: &Pair,
        opts: PassOptions,
    ) -> Result<PairReport, StateError> {
        let peek = self.peek(pair).await?;
        self.sync_pair_from(pair, opts, peek).await
    }

    /// What the state holds of `pair` as a pass starts, in one read (see [`crate::state::State::peek`]).
    pub async fn peek(&self, pair: &Pair) -> Result<Peek, StateError> {
        let mut peeks = self.peek_many(&[pair]).await?;
        Ok(peeks.pop().expect("one per pair"))
    }

    /// [`Self::peek`] for several pairs in one read, in their order.
    pub async fn peek_many(&self, pairs: &[&Pair]) -> Result<Vec<Peek>, StateError> {
        let names: Vec<[String; 2]> = pairs
            .iter()
            .map(|p| [p.source.to_string(), p.target.to_string()])
            .collect();
        let keys: Vec<(&crate::domain::types::PairId, [&str; 2])> = pairs
            .iter()
            .zip(&names)
            .map(|(p, [a, b])| (&p.id, [a.as_str(), b.as_str()]))
            .collect();
        let now = self.forms.now().timestamp();
        self.state
            .peek_many(&keys, now, &self.forms.window.key())
            .await
    }

    /// One pass over `pair` from what `peek` read. It glances first, without leases (see
    /// `glance.rs`); if something moved, or it may not glance, it goes on under the leases of
    /// the calendars it writes. Only a state-store failure is an `Err`; everything else is
    /// reported.
    // At error level so the span (and its fields on every log line) exists at any log level.
    #[tracing::instrument(level = "error", skip_all, fields(pair = %pair.id, run = tracing::field::Empty))]
    pub async fn sync_pair_from(
        &self,
        pair: &Pair,
        opts: PassOptions,
        peek: Peek,
    ) -> Result<PairReport, StateError> {
        if self.lapsed(pair) {
            return Ok(not_held(pair));
        }
        let mode = self.mode(pair, opts.dry_run, &peek.start).await?;
        let tally = Arc::new(crate::store::http::Tally::default());
        let mut glanced = None;
        if self.may_glance(pair, mode, opts, &peek) {
            match self.glance(pair, mode, opts, peek.start, &tally).await? {
                Glance::Done(report) => return Ok(logged(*report)),
                Glance::Moved(listing) => glanced = Some(listing),
                Glance::Late => {}
                Glance::Lapsed => return Ok(not_held(pair)),
            }
        }
        let mut report = PairReport::new(pair.id.as_str());
        report.dry_run = opts.dry_run;
        // Whoever writes a calendar holds its lease: another holder means skip this round,
        // never wait.
        let calendars: Vec<String> = mode
            .writes()
            .iter()
            .map(|s| pair.calendar(*s).to_string())
            .collect();
        let names: Vec<&str> = calendars.iter().map(String::as_str).collect();
        let leased = Leased {
            mode,
            opts,
            glanced,
            tally,
        };
        let done = self
            .under_leases(&names, LeaseKind::Sync, opts.dry_run, async |leases| {
                if self.lapsed(pair) {
                    report = not_held(pair);
                    return Ok(());
                }
                self.recorded_pass(pair, leased, &mut report, leases).await
            })
            .await;
        let done = match done {
            // Fenced: a state write found the lease gone (this node stalled past it, say).
            Err(e) if e.lease_lost() => {
                warn!(error = %e, "lease lost; this pass stopped and recorded nothing more");
                report.busy = true;
                report.error = Some(e.to_string());
                return Ok(report);
            }
            done => done?,
        };
        if let Err(locked) = done {
            report.busy = true;
            let role = match locked.calendar == pair.source.to_string() {
                true => "source",
                false => "target",
            };
            report.error = Some(format!(
                "{role} calendar {}: {locked}; skipped this time",
                locked.calendar
            ));
            warn!(holder = %locked.holder, calendar = %locked.calendar, "calendar is locked; pair skipped");
            return Ok(report);
        }
        Ok(logged(report))
    }

    /// A pass under its leases, recorded in the run history (none for a dry run), with its HTTP
    /// requests counted (with those of its glance).
    async fn recorded_pass(
        &self,
        pair: &Pair,
        leased: Leased,
        report: &mut PairReport,
        leases: &[Lease],
    ) -> Result<(), StateError> {
        let Leased {
            mode,
            opts,
            glanced,
            tally,
        } = leased;
        // Recorded when it ends, unless a dry run; its id names it in the log meanwhile.
        let kind = match opts.full {
            true => RunKind::Resync,
            false => RunKind::Sync,
        };
        let run = (!opts.dry_run).then(|| RunRecord::start(kind, &self.holder));
        if let Some(run) = &run {
            tracing::Span::current().record("run", run.id.as_str());
        }
        let pass = async {
            if mode.writes().contains(&Side::A)
                && let Err(e) = &self.forms.inverse
            {
                return Err(PassError::Pair(ErrorKind::Permanent, e.to_string()));
            }
            self.pass(pair, mode, opts, report, leases, glanced).await
        };
        let outcome = crate::store::http::PASS_TALLY
            .scope(tally.clone(), pass)
            .await;
        runs::tallied(report, &tally);
        match outcome {
            Ok(()) => {}
            Err(PassError::State(e)) if e.lease_lost() => {
                // Taken over while this pass ran: it records nothing more, not even itself.
                warn!(error = %e, "lease lost mid-pass; stopped writing, nothing more recorded");
                report.error = Some(e.to_string());
                report.interrupted = true;
                return Ok(());
            }
            Err(PassError::State(e)) => return Err(e),
            Err(PassError::Pair(kind, msg)) => {
                report.error = Some(crate::domain::error::bounded(
                    &msg,
                    crate::domain::error::MAX_REASON,
                ));
                report.error_kind = Some(kind);
            }
        }
        if let Some(run) = run {
            let run = runs::finished(run, report, &tally);
            match self.state.record_run(&pair.id, &run).await {
                // The lease went (the pass stopped writing for that): not ours to record.
                Err(e) if e.lease_lost() => report.busy = true,
                other => other?,
            }
        }
        Ok(())
    }

    /// Cuts `pair` over (its target becomes the authority) or, with `undo`, back. Both
    /// calendars' leases are held meanwhile, so no pass of the pair runs across the flip: the
    /// next one starts from it and compares both sides in full. `Ok(false)`: it already was so.
    pub async fn cutover(
        &self,
        pair: &Pair,
        undo: bool,
    ) -> Result<Result<bool, Locked>, StateError> {
        let (a, b) = (pair.source.to_string(), pair.target.to_string());
        let at = (!undo).then(crate::domain::time::now_ms);
        self.under_leases(&[&a, &b], LeaseKind::Sync, false, async |_| {
            let changed = self.state.set_cutover(pair, at).await?;
            if changed {
                info!(pair = %pair.id, undo, "cutover recorded");
            }
            Ok(changed)
        })
        .await
    }

    /// One pass as its stages, in either mode: list (quiet shortcut) → read (held items, what
    /// moved, prepared) → plan → execute (writes, fencing inside) → record. A dry run stops
    /// after planning and prints it.
    async fn pass(
        &self,
        pair: &Pair,
        mode: Mode,
        opts: PassOptions,
        report: &mut PairReport,
        leases: &[Lease],
        glanced: Option<Box<Listing>>,
    ) -> Result<(), PassError> {
        let reader = Reader::new(self, pair)?;
        let start = self.peek(pair).await?.start;
        let listing = reader
            .list(opts, report, mode.reads(), glanced, start)
            .await?;
        let Quiet::No(remembered) = reader.quiet(opts, &listing, report).await? else {
            return Ok(());
        };
        let mut read = reader.read(mode, opts, listing, remembered, report).await?;
        let plan = plan(pair, self.extras, &mut read, opts, report)?;
        if opts.dry_run {
            // Two ways, a plan names items as configured (source A, target B).
            let to = match mode {
                Mode::OneWay { .. } => mode.to(),
                Mode::TwoWay { .. } => Side::B,
            };
            for a in &plan.actions {
                report.planned(a, to, pair);
            }
            return Ok(());
        }
        let index = &read.index;
        self.state
            .update_target_index(&pair.id, &index.read, &index.gone)
            .await?;
        let (writes, local): (Vec<Action>, Vec<Action>) =
            plan.actions.into_iter().partition(|a| a.writes().is_some());
        // A first sync or a resync shows its progress.
        let long = opts.full || read.prior.is_empty();
        let executed = Executor::new(self, pair, leases, long)?
            .execute(writes)
            .await?;
        let recorder = Recorder::new(self, pair)?;
        recorder.record(read, local, executed, report).await
    }
}

/// A conflict's outcome for people: what was kept, and the version set aside.
fn describe(pair: &Pair, r: &Resolved) -> String {
    let at = |side: Side| {
        let href = match side {
            Side::A => &r.a_href,
            Side::B => &r.b_href,
        };
        match href {
            Some(h) => format!("{} {h}", pair.calendar(side)),
            None => format!("{} (deleted there)", pair.calendar(side)),
        }
    };
    let lost = r.kept.other();
    format!("{}: kept {}; set aside {}", r.why, at(r.kept), at(lost))
}

/// The plan stage, pure: the decision table, then adoption and `extras`; versions set aside
/// are reported.
fn plan(
    pair: &Pair,
    extras: Extras,
    read: &mut Read,
    opts: PassOptions,
    report: &mut PairReport,
) -> Result<sync::Plan, PassError> {
    let mode = read.mode;
    // Items of the old org that did not come from the new one are its colleagues'
    // invitations and the like: a pass writing to the old org never deletes them.
    let extras = match mode.to() {
        Side::A => Extras::Keep,
        Side::B => extras,
    };
    let options = PlanOptions {
        force_delete: opts.force_delete,
    };
    let [a, b] = &read.sides;
    let mut plan = sync::plan(mode, a, b, &read.prior, &read.pending, options)
        .map_err(|e| PassError::Pair(ErrorKind::Permanent, e.to_string()))?;
    let index = &mut read.index;
    let unmapped = std::mem::take(&mut index.unmapped);
    select(
        &mut plan,
        mode,
        unmapped,
        &read.pending,
        extras,
        &index.outside,
    );
    report.unchanged = plan.unchanged;
    for r in &plan.resolved {
        let text = describe(pair, r);
        warn!(resolution = %text, "conflict resolved");
        report.resolved.push(text);
    }
    Ok(plan)
}
