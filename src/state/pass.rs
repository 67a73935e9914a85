//! What a pass reads when it starts and writes when it ends, one statement and one
//! transaction: a quiet pass (nothing moved on either side) needs nothing more from the state.

use sqlx::Row;

use super::db::{State, StateResult};
use super::pairs::read_state;
use super::rows;
use super::sql::Tx;

/// Passes kept in the run history per pair.
pub(crate) const RUNS_KEPT: i64 = 50;
use crate::domain::pairstate::StoredState;
use crate::domain::run::{Outcome, RunKind, RunRecord};
use crate::domain::time::HOUR_MS;
use crate::domain::types::{PairId, SyncToken};

/// The state of a pair as a pass starts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassStart {
    /// The calendars the state records for the pair (source, target), if any.
    pub calendars: Option<(String, String)>,
    /// Its recorded direction ("one-way", "two-way") and when it was cut over, if it was.
    pub direction: Option<String>,
    pub cutover_at: Option<i64>,
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

/// All a scheduled pass reads before it lists the calendars: the pair's service state, how its
/// pass starts and whether someone writes its calendars now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peek {
    pub state: StoredState,
    pub start: PassStart,
    /// Whether each calendar (A, B) has a live lease, whoever holds it.
    pub leased: [bool; 2],
}

impl State {
    /// `pair` as a pass starts, in one read: its calendars, watermarks and the counts that say
    /// whether anything besides the listings needs reading; its service state (as
    /// [`Self::pair_state`]); whether `calendars` (A, B) are leased now. `now` (unix seconds) and
    /// `window` (the window's key) decide which items outside the window are due (see
    /// [`Self::outside_window`]).
    pub async fn peek(
        &self,
        pair: &PairId,
        calendars: [&str; 2],
        now: i64,
        window: &str,
    ) -> StateResult<Peek> {
        let mut peeks = self.peek_many(&[(pair, calendars)], now, window).await?;
        Ok(peeks.pop().expect("one row per pair"))
    }

    /// [`Self::peek`] for several pairs in one read, in their order.
    pub async fn peek_many(
        &self,
        pairs: &[(&PairId, [&str; 2])],
        now: i64,
        window: &str,
    ) -> StateResult<Vec<Peek>> {
        if pairs.is_empty() {
            return Ok(Vec::new());
        }
        let json = rows::json(
            &pairs
                .iter()
                .map(|(pair, [a, b])| [pair.as_str(), a, b])
                .collect::<Vec<_>>(),
        );
        let text = "SELECT k.id, p.a_calendar, p.b_calendar, COALESCE(p.direction, 'one-way'), p.cutover_at, \
             (SELECT token FROM watermarks WHERE pair_id = k.id AND side = 'a'), \
             (SELECT token FROM watermarks WHERE pair_id = k.id AND side = 'b'), \
             (SELECT COUNT(*) FROM pending_creates WHERE pair_id = k.id), \
             (SELECT COUNT(*) FROM mappings WHERE pair_id = k.id), \
             (SELECT COUNT(*) FROM quarantine WHERE pair_id = k.id), \
             (SELECT COUNT(*) FROM quarantine WHERE pair_id = k.id AND (quarantined = 0 OR retry <> 0)), \
             (SELECT COUNT(*) FROM outside_window WHERE pair_id = k.id \
                AND (enters_at <= $1 OR \"window\" <> $2)), \
             s.state, s.reason, s.until, s.failures, s.next_run, \
             (SELECT COUNT(*) FROM leases WHERE calendar = k.a AND expires_at > NOW_MS), \
             (SELECT COUNT(*) FROM leases WHERE calendar = k.b AND expires_at > NOW_MS) \
             FROM (SELECT value->>0 AS id, value->>1 AS a, value->>2 AS b FROM JSON_ROWS($3)) k \
             LEFT JOIN pairs p ON p.id = k.id \
             LEFT JOIN pair_states s ON s.pair_id = k.id";
        let found = sqlx::query(self.sql(text))
            .bind(now)
            .bind(window)
            .bind(json.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(self.err("reading pairs"))?;
        let by_id: std::collections::HashMap<String, Peek> = found
            .iter()
            .map(|r| (r.get::<String, _>(0), peek_of(r)))
            .collect();
        let mut out = Vec::with_capacity(pairs.len());
        for (pair, _) in pairs {
            let peek = by_id.get(pair.as_str()).cloned();
            out.push(peek.ok_or_else(|| self.bad_row("reading pairs", "a pair read no row"))?);
        }
        Ok(out)
    }
    /// Records one finished pass: [`Self::record_runs`] for one.
    pub async fn record_run(&self, pair: &PairId, run: &RunRecord) -> StateResult<()> {
        self.record_runs(&[(pair.clone(), run.clone())]).await
    }

    /// Records finished passes and what they mean for their pairs (last success, lag, totals),
    /// in one transaction; the pairs end as if each pass were recorded alone, in order. A pass of
    /// a pair the state no longer has is dropped.
    pub async fn record_runs(&self, runs: &[(PairId, RunRecord)]) -> StateResult<()> {
        if runs.is_empty() {
            return Ok(());
        }
        let what = "recording passes";
        let _turn = self.turn().await;
        let mut tx = self.write_tx(what).await?;
        self.prune_runs(&mut tx, runs)
            .await
            .map_err(self.err(what))?;
        self.update_pairs_after(&mut tx, runs)
            .await
            .map_err(self.err(what))?;
        self.insert_runs(&mut tx, runs)
            .await
            .map_err(self.err(what))?;
        tx.commit().await.map_err(self.err(what))
    }

    /// Drops passes older than the last hour beyond the newest `RUNS_KEPT` of some of `runs`' pairs.
    async fn prune_runs(
        &self,
        tx: &mut Tx,
        runs: &[(PairId, RunRecord)],
    ) -> Result<(), sqlx::Error> {
        // A service passes every pair every minute for months: keep the recent history only
        // (the last hour, for the failed-request percentage, and at least RUNS_KEPT passes),
        // pruned now and then, not on every pass.
        let mut pruned: Vec<&str> = runs
            .iter()
            .filter(|_| fastrand::u8(..) < 16)
            .map(|(p, _)| p.as_str())
            .collect();
        pruned.sort_unstable();
        pruned.dedup();
        let now = crate::domain::time::now_ms();
        if !pruned.is_empty() {
            let json = rows::json(&pruned.iter().map(|p| [p]).collect::<Vec<_>>());
            sqlx::query(self.sql(
                "DELETE FROM runs WHERE pair_id IN (SELECT value->>0 FROM JSON_ROWS($1)) \
                 AND started_at < $2 AND started_at < \
                 (SELECT r.started_at FROM runs r WHERE r.pair_id = runs.pair_id \
                  ORDER BY r.started_at DESC LIMIT 1 OFFSET $3)",
            ))
            .bind(json.as_str())
            .bind(now - HOUR_MS)
            .bind(RUNS_KEPT - 1)
            .execute(&mut **tx)
            .await?;
        }
        Ok(())
    }

    /// What `runs` mean for their pairs: last success, lag, backlog and totals.
    async fn update_pairs_after(
        &self,
        tx: &mut Tx,
        runs: &[(PairId, RunRecord)],
    ) -> Result<(), sqlx::Error> {
        // Lag counts from the pass that first saw a change it could not apply; a pass that
        // applied everything clears it. An unknown backlog leaves both as they were, and so does
        // a pass older than one already recorded (kept for a batch while a later pass was
        // recorded at once). A pair's second pass of the batch goes in a second round, after its
        // first; the passes themselves are inserted after.
        for round in rows::rounds(runs, |(p, _)| p.clone()) {
            let json = rows::json(
                &round
                    .iter()
                    .map(|(pair, run)| {
                        let c = &run.counts;
                        (
                            pair.as_str(),
                            i64::from(run.outcome == Outcome::Ok),
                            run.finished_at,
                            run.started_at,
                            c.backlog,
                            c.created,
                            c.updated,
                            c.deleted,
                            c.adopted,
                        )
                    })
                    .collect::<Vec<_>>(),
            );
            sqlx::query(self.sql(
                "UPDATE pairs SET \
                 last_success_at = CASE WHEN v.ok AND (pairs.last_success_at IS NULL \
                     OR pairs.last_success_at < v.at) THEN v.at ELSE pairs.last_success_at END, \
                 pending_since = CASE WHEN v.backlog IS NULL OR v.stale THEN pairs.pending_since \
                     WHEN v.backlog = 0 THEN NULL ELSE COALESCE(pairs.pending_since, v.started) END, \
                 backlog = CASE WHEN v.stale THEN pairs.backlog \
                     ELSE COALESCE(v.backlog, pairs.backlog) END, \
                 total_created = pairs.total_created + v.created, \
                 total_updated = pairs.total_updated + v.updated, \
                 total_deleted = pairs.total_deleted + v.deleted, \
                 total_adopted = pairs.total_adopted + v.adopted \
                 FROM (SELECT t.*, EXISTS (SELECT 1 FROM runs r \
                     WHERE r.pair_id = t.id AND r.started_at > t.started) AS stale \
                   FROM (SELECT value->>0 AS id, CAST(value->>1 AS BIGINT) = 1 AS ok, \
                     CAST(value->>2 AS BIGINT) AS at, CAST(value->>3 AS BIGINT) AS started, \
                     CAST(value->>4 AS BIGINT) AS backlog, CAST(value->>5 AS BIGINT) AS created, \
                     CAST(value->>6 AS BIGINT) AS updated, CAST(value->>7 AS BIGINT) AS deleted, \
                     CAST(value->>8 AS BIGINT) AS adopted FROM JSON_ROWS($1)) AS t) AS v \
                 WHERE pairs.id = v.id",
            ))
            .bind(json.as_str())
            .execute(&mut **tx)
            .await
            ?;
        }
        Ok(())
    }

    /// The passes themselves, of pairs the state still has.
    async fn insert_runs(
        &self,
        tx: &mut Tx,
        runs: &[(PairId, RunRecord)],
    ) -> Result<(), sqlx::Error> {
        let json = rows::json(
            &runs
                .iter()
                .map(|(pair, run)| {
                    let c = &run.counts;
                    let kind = match run.kind {
                        RunKind::Sync => "sync",
                        RunKind::Resync => "resync",
                    };
                    // Wider than the widest tuple serde writes as an array.
                    serde_json::json!([
                        run.id,
                        pair.as_str(),
                        kind,
                        run.started_at,
                        run.node,
                        run.finished_at,
                        run.outcome.as_str(),
                        c.created,
                        c.updated,
                        c.deleted,
                        c.unchanged,
                        c.failed,
                        run.error,
                        c.adopted,
                        c.requests,
                        c.failed_requests,
                        c.throttled,
                        c.backlog,
                    ])
                })
                .collect::<Vec<_>>(),
        );
        sqlx::query(self.sql(
            "INSERT INTO runs (id, pair_id, kind, started_at, node, finished_at, outcome, created, \
             updated, deleted, unchanged, failed, error, adopted, requests, failed_requests, \
             throttled, backlog) \
             SELECT value->>0, value->>1, value->>2, CAST(value->>3 AS BIGINT), value->>4, \
             CAST(value->>5 AS BIGINT), value->>6, CAST(value->>7 AS BIGINT), \
             CAST(value->>8 AS BIGINT), CAST(value->>9 AS BIGINT), CAST(value->>10 AS BIGINT), \
             CAST(value->>11 AS BIGINT), value->>12, CAST(value->>13 AS BIGINT), \
             CAST(value->>14 AS BIGINT), CAST(value->>15 AS BIGINT), CAST(value->>16 AS BIGINT), \
             CAST(value->>17 AS BIGINT) \
             FROM JSON_ROWS($1) WHERE value->>1 IN (SELECT id FROM pairs)",
        ))
        .bind(json.as_str())
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}

/// A row of [`State::peek_many`] (its columns after the pair's id).
fn peek_of(r: &super::sql::DbRow) -> Peek {
    let state = StoredState {
        state: read_state(
            r.get::<Option<String>, _>(12)
                .as_deref()
                .unwrap_or("active"),
            r.get(13),
            r.get(14),
            r.get::<Option<i64>, _>(15).unwrap_or(0),
        ),
        next_run: r.get(16),
    };
    let leased = [r.get::<i64, _>(17) > 0, r.get::<i64, _>(18) > 0];
    let Some(a) = r.get::<Option<String>, _>(1) else {
        return Peek {
            state,
            start: PassStart::default(),
            leased,
        };
    };
    let token = |i| r.get::<Option<String>, _>(i).map(SyncToken::new);
    let count = |i| r.get::<i64, _>(i) as u64;
    let start = PassStart {
        calendars: Some((a, r.get(2))),
        direction: Some(r.get(3)),
        cutover_at: r.get(4),
        watermarks: (token(5), token(6)),
        pendings: count(7),
        mappings: count(8),
        held: count(9),
        to_retry: count(10),
        due: count(11),
    };
    Peek {
        state,
        start,
        leased,
    }
}
