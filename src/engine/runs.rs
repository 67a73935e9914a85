//! The run history of passes: a finished pass as the run it records, written at once (a pass
//! under leases records inside its fence) or, when the engine batches runs, kept and written
//! with the others of the last seconds in one transaction (the many quiet passes of a service).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::base::Engine;
use super::report::PairReport;
use crate::domain::run::{Outcome, RunCounts, RunRecord};
use crate::domain::types::PairId;
use crate::state::StateError;
use crate::store::http::Tally;

/// Runs kept while the state cannot be written, at most: past this the oldest are dropped
/// (only the record of passes that changed nothing is lost).
const KEPT_AT_MOST: usize = 100_000;

/// Runs waiting to be written, oldest first.
pub(crate) type Batch = Arc<Mutex<Vec<(PairId, RunRecord)>>>;

/// The pass's request counts, from its tally, into `report`.
pub(super) fn tallied(report: &mut PairReport, tally: &Tally) {
    let counted = |c: &AtomicU64| c.load(Ordering::Relaxed);
    report.requests = counted(&tally.requests);
    report.failed_requests = counted(&tally.failed);
}

/// `run` as it ended, with what `report` says of it.
pub(super) fn finished(mut run: RunRecord, report: &PairReport, tally: &Tally) -> RunRecord {
    run.finished_at = crate::domain::time::now_ms();
    run.outcome = match (&report.error, report.failed) {
        (Some(_), _) => Outcome::Failed,
        (None, 0) => Outcome::Ok,
        (None, _) => Outcome::Partial,
    };
    run.counts = RunCounts {
        created: report.created,
        updated: report.updated,
        deleted: report.deleted,
        unchanged: report.unchanged,
        failed: report.failed,
        adopted: report.adopted,
        requests: report.requests,
        failed_requests: report.failed_requests,
        throttled: tally.throttled.load(Ordering::Relaxed),
        backlog: report.backlog,
    };
    run.error = report.error.clone();
    run
}

impl Engine {
    /// This engine keeps the runs of passes taken without leases and writes them in
    /// [`Self::flush_runs`] (which its owner calls every few seconds and when it ends).
    pub fn batching_runs(mut self) -> Engine {
        self.batch = Some(Batch::default());
        self
    }

    /// Records the run of a pass that holds no lease: kept for the next flush when batching,
    /// else written now.
    pub(super) async fn record_unleased(
        &self,
        pair: &PairId,
        run: RunRecord,
    ) -> Result<(), StateError> {
        match &self.batch {
            Some(batch) => {
                batch
                    .lock()
                    .expect("not poisoned")
                    .push((pair.clone(), run));
                Ok(())
            }
            None => self.state.record_run(pair, &run).await,
        }
    }

    /// Writes the runs kept since the last flush, in one transaction. If that fails they are
    /// kept for the next one.
    pub async fn flush_runs(&self) -> Result<(), StateError> {
        let Some(batch) = &self.batch else {
            return Ok(());
        };
        let runs = std::mem::take(&mut *batch.lock().expect("not poisoned"));
        let Err(e) = self.state.record_runs(&runs).await else {
            return Ok(());
        };
        let mut kept = batch.lock().expect("not poisoned");
        let newer = std::mem::replace(&mut *kept, runs);
        kept.extend(newer);
        let over = kept.len().saturating_sub(KEPT_AT_MOST);
        kept.drain(..over);
        Err(e)
    }
}
