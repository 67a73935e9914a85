//! A two-way pass: both calendars are read as sources, planned together (a change on either
//! side reaches the other; both sides changed is a conflict the pair's policy settles) and
//! written both ways under both calendars' leases.

use std::collections::{HashMap, HashSet};

use tracing::warn;

use super::base::{Engine, PassError, PassOptions, named};
use super::read::{Held, Listing, Quiet, Rows, Tokens, bring_back, listed};
use super::report::PairReport;
use super::write::fetch_all;
use crate::domain::error::ErrorKind;
use crate::domain::lease::Lease;
use crate::domain::mapping::{Pending, Side};
use crate::domain::pair::Pair;
use crate::domain::types::Href;
use crate::store::Fetched;
use crate::sync::two_way;
use crate::sync::{Action, Content, Mode, PlanOptions, Prior, Resolved, SourceSnapshot};

/// Both sides as read for planning.
struct Both {
    tokens: Tokens,
    /// A and B, each with what moved read and prepared (in the new org's form).
    sides: [SourceSnapshot; 2],
    /// What each side holds back (window, quarantine) or brings back.
    held: [Held; 2],
    prior: Prior,
    pending: Vec<Pending>,
}

impl Engine {
    /// One two-way pass: list both sides (the quiet shortcut as one way) → read what moved on
    /// each → plan → execute → record. A dry run stops after planning and prints it.
    pub(super) async fn pass_both(
        &self,
        pair: &Pair,
        mode: Mode,
        opts: PassOptions,
        report: &mut PairReport,
        leases: &[Lease],
        glanced: Option<Box<Listing>>,
    ) -> Result<(), PassError> {
        let listing = self
            .list(pair, opts, report, &[Side::A, Side::B], glanced)
            .await?;
        let Quiet::No(remembered) = self.quiet(pair, opts, &listing, report).await? else {
            return Ok(());
        };
        let mut read = self
            .read_both(pair, opts, listing, remembered, report)
            .await?;
        let options = PlanOptions {
            force_delete: opts.force_delete,
        };
        let [a, b] = &read.sides;
        let (plan, resolved) = two_way::plan(mode, a, b, &read.prior, &read.pending, options)
            .map_err(|e| PassError::Pair(ErrorKind::Permanent, e.to_string()))?;
        report.unchanged = plan.unchanged;
        for r in &resolved {
            let text = describe(pair, r);
            warn!(resolution = %text, "conflict resolved");
            report.resolved.push(text);
        }
        if opts.dry_run {
            for a in &plan.actions {
                report.planned(a, Side::B, pair);
            }
            return Ok(());
        }
        let (writes, local): (Vec<Action>, Vec<Action>) =
            plan.actions.into_iter().partition(|a| a.writes().is_some());
        let long = opts.full || read.prior.is_empty();
        let executed = self.execute(pair, writes, leases, long).await?;
        let (left, outside) = self.book(pair, local, executed.done, report).await?;
        let cut_short = executed.halt.is_some() || left > 0;
        for (side, (source, held)) in [Side::A, Side::B]
            .into_iter()
            .zip(read.sides.iter().zip(&mut read.held))
        {
            let prior = &read.prior;
            self.held_back(
                pair,
                side,
                (source, held),
                prior,
                &outside,
                cut_short,
                report,
            )
            .await?;
        }
        let stopped = (executed.halt, executed.lost);
        self.finish(pair, (&read.tokens, &executed.wrote), stopped, left, report)
            .await
    }

    /// Reads what moved on each side (new items, etags that moved; everything for a resync),
    /// with the items each side holds back or brings back (window, quarantine), and prepares it
    /// in the new org's form.
    async fn read_both(
        &self,
        pair: &Pair,
        opts: PassOptions,
        listing: Listing,
        remembered: Option<Rows>,
        report: &mut PairReport,
    ) -> Result<Both, PassError> {
        let Listing {
            known,
            tokens,
            changes,
            pending,
            ..
        } = listing;
        let prior: Prior = match known {
            true => self.state.mappings(&pair.id).await?.into_iter().collect(),
            false => Prior::new(),
        };
        let [a, b] = changes;
        let mut sides: [SourceSnapshot; 2] =
            [listed(&pair.source.path, a), listed(&pair.target.path, b)];
        let mut held: [Held; 2] = Default::default();
        if known {
            let all = sides.iter().any(|s| s.complete);
            let rows = self.held_rows(pair, all, remembered).await?;
            for (side, (snapshot, held)) in [Side::A, Side::B]
                .into_iter()
                .zip(sides.iter_mut().zip(&mut held))
            {
                bring_back(side, snapshot, held, (&prior, &pending), &rows, report);
            }
        }
        // New items, etags that moved (everything for a resync), and items brought back.
        let mut fetch: [Vec<Href>; 2] = Default::default();
        for (side, snapshot) in [Side::A, Side::B].into_iter().zip(&sides) {
            fetch[side as usize] = snapshot
                .items
                .iter()
                .filter(|v| {
                    opts.full
                        || prior
                            .get(side, &v.href)
                            .is_none_or(|p| *p.etag(side) != v.etag)
                })
                .map(|v| v.href.clone())
                .collect();
            held[side as usize].fetched = fetch[side as usize].clone();
        }
        let (sa, sb) = (
            self.store(&pair.source.server)?,
            self.store(&pair.target.server)?,
        );
        let (ra, rb) = tokio::join!(
            fetch_all(&*sa, &pair.source.path, &fetch[0]),
            fetch_all(&*sb, &pair.target.path, &fetch[1])
        );
        let got = [
            ra.map_err(named(&*sa, "source", &pair.source))?,
            rb.map_err(named(&*sb, "target", &pair.target))?,
        ];
        let now = self.now();
        for ((side, got), (snapshot, held)) in [Side::A, Side::B]
            .into_iter()
            .zip(got)
            .zip(sides.iter_mut().zip(&mut held))
        {
            self.take_in(side, got, snapshot, held, now);
            crate::sync::twins::set_aside(side, snapshot, &prior);
        }
        Ok(Both {
            tokens,
            sides,
            held,
            prior,
            pending,
        })
    }

    /// Puts what was read of `side` into its snapshot, prepared; an item deleted between
    /// listing and reading is as if listed deleted.
    fn take_in(
        &self,
        side: Side,
        got: Vec<Fetched>,
        snapshot: &mut SourceSnapshot,
        held: &mut Held,
        now: chrono::DateTime<chrono::Utc>,
    ) {
        let mut read: HashMap<Href, _> = got.into_iter().collect();
        let mut gone = HashSet::new();
        for v in &mut snapshot.items {
            match read.remove(&v.href) {
                None => {}
                Some(Ok(r)) => {
                    v.content = self.prepare(side, &r.data, now);
                    v.etag = r.etag;
                }
                // Deleted between listing and reading: as if listed deleted (and, if it was
                // remembered outside the window or quarantined, no longer remembered).
                Some(Err(e)) if e.kind == ErrorKind::NotFound => {
                    if held.injected.contains(&v.href) {
                        held.outside_gone.push(v.href.clone());
                    }
                    gone.insert(v.href.clone());
                }
                Some(Err(e)) => v.content = Content::Broken(e.kind, format!("cannot read: {e}")),
            }
        }
        if !gone.is_empty() {
            snapshot.items.retain(|v| !gone.contains(&v.href));
            if !snapshot.complete {
                snapshot.deleted.extend(gone);
            }
        }
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
