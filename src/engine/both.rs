//! A two-way pass: both calendars are read as sources, planned together (a change on either
//! side reaches the other; both sides changed is a conflict the pair's policy settles) and
//! written both ways under both calendars' leases.

use std::collections::{HashMap, HashSet};

use tracing::warn;

use super::read::{Listing, Quiet, Tokens, unread};
use super::{Engine, PassError, PassOptions, fetch_all, named};
use crate::config::PairConfig;
use crate::domain::error::ErrorKind;
use crate::domain::lease::Lease;
use crate::domain::mapping::{Pending, Side};
use crate::domain::types::Href;
use crate::engine::report::PairReport;
use crate::sync::two_way::{self, Resolved, TwoWay};
use crate::sync::{Action, Content, PlanOptions, Prior, SourceSnapshot};

/// Both sides as read for planning.
struct Both {
    tokens: Tokens,
    /// A and B, each with what moved read and prepared (in the new org's form).
    sides: [SourceSnapshot; 2],
    prior: Prior,
    pending: Vec<Pending>,
}

impl Engine {
    /// One two-way pass: list both sides (the quiet shortcut as one way) → read what moved on
    /// each → plan → execute → record. A dry run stops after planning and prints it.
    pub(super) async fn pass_both(
        &self,
        pair: &PairConfig,
        rules: TwoWay,
        opts: PassOptions,
        report: &mut PairReport,
        leases: &[Lease],
    ) -> Result<(), PassError> {
        let listing = self.list(pair, opts, report, &[Side::A, Side::B]).await?;
        if let Quiet::Yes = self.quiet(pair, opts, &listing, report).await? {
            return Ok(());
        }
        let read = self.read_both(pair, opts, listing).await?;
        let options = PlanOptions {
            force_delete: opts.force_delete,
        };
        let [a, b] = &read.sides;
        let (plan, resolved) = two_way::plan(rules, a, b, &read.prior, &read.pending, options)
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
        let (left, _) = self.book(pair, local, executed.done, report).await?;
        let stopped = (executed.halt, executed.lost);
        self.finish(pair, &read.tokens, stopped, left, report).await
    }

    /// Reads what moved on each side (new items, etags that moved; everything for a resync)
    /// and prepares it in the new org's form.
    async fn read_both(
        &self,
        pair: &PairConfig,
        opts: PassOptions,
        listing: Listing,
    ) -> Result<Both, PassError> {
        let Listing {
            known,
            tokens,
            changes,
            pending,
        } = listing;
        let prior: Prior = match known {
            true => self.state.mappings(&pair.id).await?.into_iter().collect(),
            false => Prior::new(),
        };
        let mut sides: [SourceSnapshot; 2] = Default::default();
        let mut fetch: [Vec<Href>; 2] = Default::default();
        for (side, c) in [Side::A, Side::B].into_iter().zip(changes) {
            let cal = &pair.calendar(side).path;
            let items: Vec<_> = c
                .changed
                .into_iter()
                .filter(|v| cal.contains(&v.href))
                .map(|v| unread(v.href, v.etag))
                .collect();
            fetch[side as usize] = items
                .iter()
                .filter(|v| {
                    opts.full
                        || prior
                            .get(side, &v.href)
                            .is_none_or(|p| *p.etag(side) != v.etag)
                })
                .map(|v| v.href.clone())
                .collect();
            sides[side as usize] = SourceSnapshot {
                items,
                deleted: c.deleted,
                complete: c.complete,
                waiting: 0,
            };
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
        for ((side, got), snapshot) in [Side::A, Side::B].into_iter().zip(got).zip(&mut sides) {
            let mut read: HashMap<Href, _> = got.into_iter().collect();
            let mut gone = HashSet::new();
            for v in &mut snapshot.items {
                match read.remove(&v.href) {
                    None => {}
                    Some(Ok(r)) => {
                        v.content = self.prepare(side, &r.data, now);
                        v.etag = r.etag;
                    }
                    // Deleted between listing and reading: as if listed deleted.
                    Some(Err(e)) if e.kind == ErrorKind::NotFound => {
                        gone.insert(v.href.clone());
                    }
                    Some(Err(e)) => {
                        v.content = Content::Broken(e.kind, format!("cannot read: {e}"))
                    }
                }
            }
            if !gone.is_empty() {
                snapshot.items.retain(|v| !gone.contains(&v.href));
                if !snapshot.complete {
                    snapshot.deleted.extend(gone);
                }
            }
        }
        Ok(Both {
            tokens,
            sides,
            prior,
            pending,
        })
    }
}

/// A conflict's outcome for people: what was kept, and the version set aside.
fn describe(pair: &PairConfig, r: &Resolved) -> String {
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
