//! SQL for the operator's view ([`crate::service::observe`]): per-pair rows with their last pass and
//! requests, passes of one pair, and per-server request counts.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use sqlx::Row;

use super::db::{State, StateResult};
use super::sql::DbRow;
use crate::domain::requests::HttpCounts;
use crate::domain::run::{PairStatus, RunStatus};
use crate::domain::types::PairId;

/// One pass of a pair, for its detail page.
#[derive(Debug, Clone, Serialize)]
pub struct PassView {
    pub run: String,
    #[serde(flatten)]
    pub status: RunStatus,
    pub adopted: i64,
    pub requests: i64,
    pub failed_requests: i64,
    pub backlog: Option<i64>,
}

/// A pair's row: its figures, last pass and requests of the last hour.
pub struct PairRow {
    pub id: String,
    pub last_success_at: Option<i64>,
    pub pending_since: Option<i64>,
    pub backlog: i64,
    pub totals: [i64; 4],
    pub last_run: Option<RunStatus>,
    pub requests: i64,
    pub failed: i64,
}

/// A server's request counts: totals, the last hour, the last minutes.
pub struct ServerRow {
    pub totals: [i64; 3],
    pub hour: [i64; 3],
    /// Requests of the previous and the current minute.
    pub recent: i64,
}

impl State {
    /// Every pair the state knows, with its last pass and its requests of the last hour.
    pub async fn pair_rows(&self, since: i64) -> StateResult<Vec<PairRow>> {
        let rows = sqlx::query(
            "SELECT p.id, p.last_success_at, p.pending_since, p.backlog, \
             p.total_created, p.total_updated, p.total_deleted, p.total_adopted, \
             r.kind, r.started_at, r.finished_at, r.outcome, r.created, r.updated, r.deleted, \
             r.unchanged, r.failed, r.error, h.requests, h.failed \
             FROM pairs p \
             LEFT JOIN runs r ON r.id = \
               (SELECT id FROM runs WHERE pair_id = p.id ORDER BY started_at DESC, id DESC LIMIT 1) \
             LEFT JOIN (SELECT pair_id, CAST(SUM(requests) AS BIGINT) AS requests, \
               CAST(SUM(failed_requests) AS BIGINT) AS failed \
               FROM runs WHERE started_at >= $1 GROUP BY pair_id) h ON h.pair_id = p.id",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await
        .map_err(self.err("reading status"))?;
        Ok(rows
            .into_iter()
            .map(|r| PairRow {
                id: r.get(0),
                last_success_at: r.get(1),
                pending_since: r.get(2),
                backlog: r.get(3),
                totals: [r.get(4), r.get(5), r.get(6), r.get(7)],
                last_run: run_status(&r, 8),
                requests: r.get::<Option<i64>, _>(18).unwrap_or(0),
                failed: r.get::<Option<i64>, _>(19).unwrap_or(0),
            })
            .collect())
    }

    /// Whether the database answers a read (`/healthz`).
    pub async fn ping(&self) -> StateResult<()> {
        sqlx::query("SELECT 1 FROM pairs LIMIT 1")
            .fetch_optional(&self.pool)
            .await
            .map_err(self.err("reading the state"))?;
        Ok(())
    }

    /// The recent passes of `pair`, newest first.
    pub async fn passes(&self, pair: &str, limit: i64) -> StateResult<Vec<PassView>> {
        let rows = sqlx::query(
            "SELECT id, kind, started_at, finished_at, outcome, created, updated, deleted, unchanged, \
             failed, error, adopted, requests, failed_requests, backlog FROM runs WHERE pair_id = $1 \
             ORDER BY started_at DESC, id DESC LIMIT $2",
        )
        .bind(pair)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(self.err("reading passes"))?;
        Ok(rows
            .into_iter()
            .map(|r| PassView {
                run: r.get(0),
                status: run_status(&r, 1).expect("a run has a kind"),
                adopted: r.get(11),
                requests: r.get(12),
                failed_requests: r.get(13),
                backlog: r.get(14),
            })
            .collect())
    }

    /// Adds what each server did since the last call (`now` − `before`) to its counters.
    pub async fn add_server_counts(
        &self,
        deltas: &BTreeMap<String, HttpCounts>,
        now: i64,
    ) -> StateResult<()> {
        if deltas.is_empty() {
            return Ok(());
        }
        let minute = now / 60_000;
        let _turn = self.turn().await;
        let mut tx = self.write_tx("recording requests").await?;
        for (server, d) in deltas {
            sqlx::query(
                "INSERT INTO server_minutes (server, minute, requests, failed, throttled) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (server, minute) DO UPDATE SET requests = server_minutes.requests + excluded.requests, \
                 failed = server_minutes.failed + excluded.failed, \
                 throttled = server_minutes.throttled + excluded.throttled",
            )
            .bind(server)
            .bind(minute)
            .bind(d.requests as i64)
            .bind(d.failed as i64)
            .bind(d.throttled as i64)
            .execute(&mut *tx)
            .await
            .map_err(self.err("recording requests"))?;
            sqlx::query(
                "INSERT INTO server_totals (server, requests, failed, throttled) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (server) DO UPDATE SET requests = server_totals.requests + excluded.requests, \
                 failed = server_totals.failed + excluded.failed, \
                 throttled = server_totals.throttled + excluded.throttled",
            )
            .bind(server)
            .bind(d.requests as i64)
            .bind(d.failed as i64)
            .bind(d.throttled as i64)
            .execute(&mut *tx)
            .await
            .map_err(self.err("recording requests"))?;
        }
        sqlx::query("DELETE FROM server_minutes WHERE minute < $1")
            .bind(minute - 61)
            .execute(&mut *tx)
            .await
            .map_err(self.err("recording requests"))?;
        tx.commit().await.map_err(self.err("recording requests"))
    }

    /// Per server: totals, the last hour, and the requests of about the last minute.
    pub async fn server_rows(&self, now: i64) -> StateResult<HashMap<String, ServerRow>> {
        let minute = now / 60_000;
        let rows = sqlx::query(
            "SELECT t.server, t.requests, t.failed, t.throttled, \
             CAST(COALESCE(SUM(CASE WHEN m.minute >= $1 THEN m.requests END), 0) AS BIGINT), \
             CAST(COALESCE(SUM(CASE WHEN m.minute >= $2 THEN m.failed END), 0) AS BIGINT), \
             CAST(COALESCE(SUM(CASE WHEN m.minute >= $3 THEN m.throttled END), 0) AS BIGINT), \
             CAST(COALESCE(SUM(CASE WHEN m.minute >= $4 THEN m.requests END), 0) AS BIGINT) \
             FROM server_totals t LEFT JOIN server_minutes m ON m.server = t.server GROUP BY t.server",
        )
        .bind(minute - 59)
        .bind(minute - 59)
        .bind(minute - 59)
        .bind(minute - 1)
        .fetch_all(&self.pool)
        .await
        .map_err(self.err("reading server counters"))?;
        Ok(rows
            .into_iter()
            .map(|r| {
                (
                    r.get(0),
                    ServerRow {
                        totals: [r.get(1), r.get(2), r.get(3)],
                        hour: [r.get(4), r.get(5), r.get(6)],
                        recent: r.get(7),
                    },
                )
            })
            .collect())
    }
}

impl State {
    /// Status of the given pairs, in the order given; pairs the state has never seen are omitted.
    pub async fn pair_statuses(&self, ids: &[PairId]) -> StateResult<Vec<PairStatus>> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let row = sqlx::query(
                "SELECT p.id, p.a_calendar, p.b_calendar, p.last_success_at, \
                 (SELECT COUNT(*) FROM mappings m WHERE m.pair_id = p.id), \
                 r.kind, r.started_at, r.finished_at, r.outcome, r.created, r.updated, r.deleted, \
                 r.unchanged, r.failed, r.error \
                 FROM pairs p LEFT JOIN runs r ON r.id = \
                 (SELECT id FROM runs WHERE pair_id = p.id ORDER BY started_at DESC, id DESC LIMIT 1) \
                 WHERE p.id = $1",
            )
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(self.err("reading status"))?;
            let Some(r) = row else { continue };
            let last_run = run_status(&r, 5);
            out.push(PairStatus {
                id: r.get(0),
                source: r.get(1),
                target: r.get(2),
                last_success_at: r.get(3),
                items: r.get(4),
                last_run,
            });
        }
        Ok(out)
    }
}

/// A pass read from the columns `kind, started_at, finished_at, outcome, created, updated,
/// deleted, unchanged, failed, error` starting at `at`; `None` when there is none (`kind` NULL).
pub(crate) fn run_status(r: &DbRow, at: usize) -> Option<RunStatus> {
    r.get::<Option<String>, _>(at).map(|kind| RunStatus {
        kind,
        started_at: r.get(at + 1),
        finished_at: r.get(at + 2),
        outcome: r.get(at + 3),
        created: r.get(at + 4),
        updated: r.get(at + 5),
        deleted: r.get(at + 6),
        unchanged: r.get(at + 7),
        failed: r.get(at + 8),
        error: r.get(at + 9),
    })
}
