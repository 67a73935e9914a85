//! SQL for the migration minute by minute (the page's charts of the last hour): items written,
//! and the longest lag a service saw.

use serde::Serialize;
use sqlx::Row;

use super::db::{State, StateResult};
use super::rows;
use super::sql::Tx;

/// Minutes kept: a day.
const KEPT_MINUTES: i64 = 24 * 60;

/// One minute of the migration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Minute {
    /// Unix ms / 60,000.
    pub minute: i64,
    /// Items created, updated or deleted on a server.
    pub writes: i64,
    /// The longest lag of any pair a service saw in it, if one looked.
    pub lag_ms: Option<i64>,
    /// The most pairs with changes waiting it saw.
    pub lagging: Option<i64>,
}

impl State {
    /// Adds `writes` items written to the minute of `now`; drops minutes past a day.
    pub async fn add_writes(&self, writes: u64, now: i64) -> StateResult<()> {
        if writes == 0 {
            return Ok(());
        }
        let what = "recording writes";
        let _turn = self.turn().await;
        let mut tx = self.write_tx(what).await?;
        sqlx::query(
            "INSERT INTO minutes (minute, writes) VALUES ($1, $2) \
             ON CONFLICT (minute) DO UPDATE SET writes = minutes.writes + excluded.writes",
        )
        .bind(now / 60_000)
        .bind(writes as i64)
        .execute(&mut *tx)
        .await
        .map_err(self.err(what))?;
        forget_old(&mut tx, now).await.map_err(self.err(what))?;
        tx.commit().await.map_err(self.err(what))
    }

    /// Notes the longest lag of any of `pairs` now (a pair lags from its oldest change not yet
    /// applied) and how many lag, keeping the most of the minute; drops minutes past a day.
    pub async fn sample_lag(&self, now: i64, pairs: &[&str]) -> StateResult<()> {
        let what = "sampling the lag";
        let minute = now / 60_000;
        let ids = rows::json(&pairs.iter().map(|p| [p]).collect::<Vec<_>>());
        let _turn = self.turn().await;
        let mut tx = self.write_tx(what).await?;
        sqlx::query(self.sql(
            "INSERT INTO minutes (minute, lag_ms, lagging) \
             SELECT $1, COALESCE(MAX($2 - pending_since), 0), COUNT(pending_since) FROM pairs \
             WHERE id IN (SELECT value->>0 FROM JSON_ROWS($3)) \
             ON CONFLICT (minute) DO UPDATE SET \
             lag_ms = CASE WHEN minutes.lag_ms IS NULL OR excluded.lag_ms > minutes.lag_ms \
                 THEN excluded.lag_ms ELSE minutes.lag_ms END, \
             lagging = CASE WHEN minutes.lagging IS NULL OR excluded.lagging > minutes.lagging \
                 THEN excluded.lagging ELSE minutes.lagging END",
        ))
        .bind(minute)
        .bind(now)
        .bind(ids.as_str())
        .execute(&mut *tx)
        .await
        .map_err(self.err(what))?;
        forget_old(&mut tx, now).await.map_err(self.err(what))?;
        tx.commit().await.map_err(self.err(what))
    }

    /// The minutes from `since` (unix ms) on, oldest first; a minute nothing happened in has no
    /// row.
    pub async fn minutes(&self, since: i64) -> StateResult<Vec<Minute>> {
        let rows = sqlx::query(
            "SELECT minute, writes, lag_ms, lagging FROM minutes WHERE minute >= $1 ORDER BY minute",
        )
        .bind(since / 60_000)
        .fetch_all(&self.pool)
        .await
        .map_err(self.err("reading minutes"))?;
        Ok(rows
            .into_iter()
            .map(|r| Minute {
                minute: r.get(0),
                writes: r.get(1),
                lag_ms: r.get(2),
                lagging: r.get(3),
            })
            .collect())
    }
}

/// Inside `tx`: drops the minutes older than a day before `now`.
async fn forget_old(tx: &mut Tx, now: i64) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM minutes WHERE minute < $1")
        .bind(now / 60_000 - KEPT_MINUTES)
        .execute(&mut **tx)
        .await
        .map(|_| ())
}
