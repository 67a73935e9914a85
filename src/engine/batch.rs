//! A batch of pairs passed at once, as a one-shot `sync` or the demo runs them: at most a given
//! number in flight, reports in the order given, and pairs a scheduling server held items of
//! back passed again while that helps.

use std::sync::Arc;

use super::base::{Engine, PassOptions};
use super::report::PairReport;
use crate::domain::pair::Pair;
use crate::state::StateError;

/// Runs the pairs with at most `parallel` at once; reports come back in the order given. Pairs
/// with items a scheduling server held back until another pair's write (an organizer's copy)
/// pass again once all have passed, while that helps.
pub async fn run_pairs(
    engine: &Arc<Engine>,
    pairs: Vec<Pair>,
    opts: PassOptions,
    parallel: usize,
) -> Result<Vec<PairReport>, StateError> {
    let mut reports = run_once(engine, pairs.clone(), opts, parallel).await?;
    let waiting = |r: &[PairReport]| r.iter().map(|p| p.waiting).sum::<u64>();
    let mut left = waiting(&reports);
    while left > 0 && !opts.dry_run {
        let again: Vec<usize> = (0..reports.len())
            .filter(|&i| reports[i].waiting > 0)
            .collect();
        let rerun = again.iter().map(|&i| pairs[i].clone()).collect();
        let later = run_once(engine, rerun, opts, parallel).await?;
        for (i, r) in again.into_iter().zip(later) {
            reports[i] = std::mem::take(&mut reports[i]).then(r);
        }
        let now = waiting(&reports);
        if now >= left {
            break;
        }
        left = now;
    }
    Ok(reports)
}

/// One pass of each pair, at most `parallel` at once, reports in the order given.
async fn run_once(
    engine: &Arc<Engine>,
    pairs: Vec<Pair>,
    opts: PassOptions,
    parallel: usize,
) -> Result<Vec<PairReport>, StateError> {
    let limit = Arc::new(tokio::sync::Semaphore::new(parallel));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, pair) in pairs.into_iter().enumerate() {
        let engine = engine.clone();
        let limit = limit.clone();
        tasks.spawn(async move {
            let _permit = limit
                .acquire_owned()
                .await
                .expect("semaphore is never closed");
            (i, engine.sync_pair(&pair, opts).await)
        });
    }
    let mut out: Vec<Option<PairReport>> = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let (i, res) = joined.expect("a pair task panicked");
        if out.len() <= i {
            out.resize(i + 1, None);
        }
        out[i] = Some(res?);
    }
    Ok(out.into_iter().flatten().collect())
}
