//! A pass's first look, taken without leases. Most passes of a service find that nothing
//! moved on either side: that takes one read of the state and the two listings, and writes
//! nothing but the pass's run. Only a pass that finds something to do goes on under its
//! leases, with the listings it made.

use std::sync::Arc;
use std::time::Instant;

use super::base::{Engine, PassError, PassOptions, recorded_as_configured};
use super::list::{Listing, Reader};
use super::report::PairReport;
use super::runs;
use crate::domain::mapping::Side;
use crate::domain::pair::Pair;
use crate::domain::run::{RunKind, RunRecord};
use crate::state::{PassStart, Peek, StateError};
use crate::store::http::{PASS_TALLY, Tally};
use crate::sync::Mode;

/// What a glance found.
pub(super) enum Glance {
    /// The pass ends here, recorded: nothing moved and nothing is due, or a side could not be
    /// listed.
    Done(Box<PairReport>),
    /// Something moved: the pass goes on under its leases, with these listings.
    Moved(Box<Listing>),
    /// The look took more than half a lease ttl. A node stalled that long may have lost the
    /// pair to another meanwhile, so it counts for nothing: the pass starts over under its
    /// leases.
    Late,
    /// This node's claim on the pair lapsed while it looked: nothing is recorded.
    Lapsed,
}

impl Engine {
    /// A pass may glance first unless it must read more than the listings anyway (a resync, a
    /// pair new or changed in the config, pending creates, items due back from the window or
    /// quarantine), is a dry run, or someone holds a lease on a calendar it writes (it is then
    /// skipped, as a pass under leases would be).
    pub(super) fn may_glance(
        &self,
        pair: &Pair,
        mode: Mode,
        opts: PassOptions,
        peek: &Peek,
    ) -> bool {
        let start = &peek.start;
        let leased = mode.writes().iter().any(|s| match s {
            Side::A => peek.leased[0],
            Side::B => peek.leased[1],
        });
        let inverse_missing = mode.writes().contains(&Side::A) && self.forms.inverse.is_err();
        !opts.dry_run
            && !opts.full
            && !leased
            && !inverse_missing
            && recorded_as_configured(pair, start)
            && start.pendings == 0
            && start.due == 0
            && start.to_retry == 0
    }

    /// Lists both sides from the watermarks of `start`. Nothing moved (and no sync token
    /// either), or a side could not be listed: the pass is recorded and done.
    pub(super) async fn glance(
        &self,
        pair: &Pair,
        mode: Mode,
        opts: PassOptions,
        start: PassStart,
        tally: &Arc<Tally>,
    ) -> Result<Glance, StateError> {
        let mut report = PairReport::new(pair.id.as_str());
        let run = RunRecord::start(RunKind::Sync, &self.holder);
        let began = Instant::now();
        let listed = match Reader::new(self, pair) {
            Ok(reader) => {
                let listing = reader.list_from(opts, &mut report, mode.reads(), start);
                PASS_TALLY.scope(tally.clone(), listing).await
            }
            Err(e) => Err(e),
        };
        if self.lapsed(pair) {
            return Ok(Glance::Lapsed);
        }
        if began.elapsed() > self.lease_ttl / 2 {
            return Ok(Glance::Late);
        }
        match listed {
            Err(PassError::State(e)) => return Err(e),
            Err(PassError::Pair(kind, msg)) => {
                report.error = Some(msg);
                report.error_kind = Some(kind);
            }
            Ok(listing)
                if !listing.still(opts) || listing.tokens.iter().any(|(old, new)| old != new) =>
            {
                return Ok(Glance::Moved(Box::new(listing)));
            }
            Ok(listing) => {
                report.unchanged = listing.start.mappings;
                // Quarantined items are source changes not in the target.
                report.backlog = Some(listing.start.held);
            }
        }
        tracing::Span::current().record("run", run.id.as_str());
        runs::tallied(&mut report, tally);
        let run = runs::finished(run, &report, tally);
        self.record_unleased(&pair.id, run).await?;
        Ok(Glance::Done(Box::new(report)))
    }
}
