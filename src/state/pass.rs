//! What a pass reads when it starts and writes when it ends, one statement and one
//! transaction: a quiet pass (nothing moved on either side) needs nothing more from the state.

use sqlx::Row;

use super::{RUNS_KEPT, State, StateResult};
use crate::domain::run::{Outcome, RunKind, RunRecord};
use crate::domain::time::{HOUR_MS, now_ms};
use crate::domain::types::{PairId, SyncToken};

/// The state of a pair as a pass starts, read under its leases.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassStart {
    /// The calendars the state records for the pair (source, target), if any.
    pub calendars: Option<(String, String)>,
    /// Each side's sync token (A, B).
    pub watermarks: (Option<SyncToken>, Option<SyncToken>),
    /// Creates written whose outcome is not yet recorded.
    pub pendings: u64,
    pub mappings: u64,
    /// Items of either side in the quarantine table, and of those the ones to try again (failed
    /// but not yet quarantined, or let out for a retry).
    pub held: u64,
    pub to_retry: u64,
    /// Items remembered as outside the window that are due to be looked at again.
    pub due: u64,
}

impl State {
    /// `pair` as a pass starts: its calendars, watermarks and the counts that say whether
    /// anything besides the listings needs reading. `now` (unix seconds) and `window` (the
    /// window's key) decide which items outside the window are due (see
    /// [`Self::outside_window`]).
    pub async fn pass_start(
        &self,
        pair: &PairId,
        now: i64,
        window: &str,
    ) -> StateResult<PassStart> {
        let row = sqlx::query(
            "SELECT p.a_calendar, p.b_calendar, \
             (SELECT token FROM watermarks WHERE pair_id = p.id AND side = 'a'), \
             (SELECT token FROM watermarks WHERE pair_id = p.id AND side = 'b'), \
             (SELECT COUNT(*) FROM pending_creates WHERE pair_id = p.id), \
             (SELECT COUNT(*) FROM mappings WHERE pair_id = p.id), \
             (SELECT COUNT(*) FROM quarantine WHERE pair_id = p.id), \
             (SELECT COUNT(*) FROM quarantine WHERE pair_id = p.id AND (quarantined = 0 OR retry <> 0)), \
             (SELECT COUNT(*) FROM outside_window WHERE pair_id = p.id \
                AND (enters_at <= $2 OR \"window\" <> $3)) \
             FROM pairs p WHERE p.id = $1",
        )
        .bind(pair.as_str())
        .bind(now)
        .bind(window)
        .fetch_optional(&self.pool)
        .await
        .map_err(self.err("reading pair"))?;
        let Some(r) = row else {
            return Ok(PassStart::default());
        };
        let token = |i| r.get::<Option<String>, _>(i).map(SyncToken::new);
        let count = |i| r.get::<i64, _>(i) as u64;
        Ok(PassStart {
            calendars: Some((r.get(0), r.get(1))),
            watermarks: (token(2), token(3)),
            pendings: count(4),
            mappings: count(5),
            held: count(6),
            to_retry: count(7),
            due: count(8),
        })
    }

    /// Records a finished pass of `pair` and what it means for the pair (last success, lag,
    /// totals), in one transaction.
    pub async fn record_run(&self, pair: &PairId, run: &RunRecord) -> StateResult<()> {
        let _turn = self.turn().await;
        let now = now_ms();
        let counts = &run.counts;
        let kind = match run.kind {
            RunKind::Sync => "sync",
            RunKind::Resync => "resync",
        };
        let mut tx = self.write_tx("recording run").await?;
        sqlx::query(
            "INSERT INTO runs (id, pair_id, kind, started_at, node, finished_at, outcome, created, \
             updated, deleted, unchanged, failed, error, adopted, requests, failed_requests, throttled, \
             backlog) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)",
        )
        .bind(&run.id)
        .bind(pair.as_str())
        .bind(kind)
        .bind(run.started_at)
        .bind(&run.node)
        .bind(now)
        .bind(run.outcome.as_str())
        .bind(counts.created as i64)
        .bind(counts.updated as i64)
        .bind(counts.deleted as i64)
        .bind(counts.unchanged as i64)
        .bind(counts.failed as i64)
        .bind(run.error.as_deref())
        .bind(counts.adopted as i64)
        .bind(counts.requests as i64)
        .bind(counts.failed_requests as i64)
        .bind(counts.throttled as i64)
        .bind(counts.backlog.map(|b| b as i64))
        .execute(&mut *tx)
        .await
        .map_err(self.err("recording run"))?;
        // A service passes every pair every minute for months: keep the recent history only
        // (the last hour, for the failed-request percentage, and at least RUNS_KEPT passes),
        // pruned now and then, not on every pass.
        if fastrand::u8(..) < 16 {
            sqlx::query(
                "DELETE FROM runs WHERE pair_id = $1 AND started_at < $2 AND started_at < \
                 (SELECT started_at FROM runs WHERE pair_id = $3 ORDER BY started_at DESC LIMIT 1 OFFSET $4)",
            )
            .bind(pair.as_str())
            .bind(now - HOUR_MS)
            .bind(pair.as_str())
            .bind(RUNS_KEPT - 1)
            .execute(&mut *tx)
            .await
            .map_err(self.err("recording run"))?;
        }
        // Lag counts from the pass that first saw a change it could not apply; a pass that
        // applied everything clears it. An unknown backlog leaves both as they were.
        let backlog = counts.backlog.map(|b| b as i64);
        sqlx::query(
            "UPDATE pairs SET \
             last_success_at = CASE WHEN $1 THEN $2 ELSE last_success_at END, \
             pending_since = CASE WHEN $3 IS NULL THEN pending_since WHEN $4 = 0 THEN NULL \
                 ELSE COALESCE(pending_since, $5) END, \
             backlog = COALESCE($6, backlog), \
             total_created = total_created + $7, total_updated = total_updated + $8, \
             total_deleted = total_deleted + $9, total_adopted = total_adopted + $10 \
             WHERE id = $11",
        )
        .bind(run.outcome == Outcome::Ok)
        .bind(now)
        .bind(backlog)
        .bind(backlog)
        .bind(run.started_at)
        .bind(backlog)
        .bind(counts.created as i64)
        .bind(counts.updated as i64)
        .bind(counts.deleted as i64)
        .bind(counts.adopted as i64)
        .bind(pair.as_str())
        .execute(&mut *tx)
        .await
        .map_err(self.err("recording run"))?;
        tx.commit().await.map_err(self.err("recording run"))
    }
}
