//! SQL for what the service keeps per pair ([`crate::domain::pairstate`]): pair states and quarantine.

use std::collections::HashMap;

use sqlx::Row;

use super::db::{State, StateResult};
use super::sql::{DbRow, Tx};
use crate::domain::identity::IdentityKey;
use crate::domain::mapping::Side;
use crate::domain::pair::Pair;
use crate::domain::pairstate::{
    ItemFault, PairState, QUARANTINE_AFTER, QuarantineEntry, Quarantined, StoredState,
};
use crate::domain::time::now_ms;
use crate::domain::types::{Etag, Href, PairId};

pub(super) fn read_state(
    name: &str,
    reason: Option<String>,
    until: Option<i64>,
    failures: i64,
) -> PairState {
    let (reason, until) = (reason.unwrap_or_default(), until.unwrap_or(0));
    match name {
        "paused" => PairState::Paused { reason, until },
        "backoff" => PairState::Backoff {
            reason,
            failures: failures as u32,
            until,
        },
        "disabled" => PairState::Disabled { reason },
        _ => PairState::Active,
    }
}

impl State {
    pub async fn pair_state(&self, pair: &PairId) -> StateResult<StoredState> {
        let row = sqlx::query(
            "SELECT state, reason, until, failures, next_run FROM pair_states WHERE pair_id = $1",
        )
        .bind(pair.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(self.err("reading pair state"))?;
        Ok(row.map_or(
            StoredState {
                state: PairState::Active,
                next_run: None,
            },
            |r| StoredState {
                state: read_state(r.get(0), r.get(1), r.get(2), r.get(3)),
                next_run: r.get(4),
            },
        ))
    }

    /// Every stored pair state, by pair id (pairs without a row are active).
    pub async fn pair_states(&self) -> StateResult<HashMap<String, StoredState>> {
        let rows = sqlx::query(
            "SELECT pair_id, state, reason, until, failures, next_run FROM pair_states",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(self.err("reading pair states"))?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let state = read_state(r.get(1), r.get(2), r.get(3), r.get(4));
                (
                    r.get::<String, _>(0),
                    StoredState {
                        state,
                        next_run: r.get(5),
                    },
                )
            })
            .collect())
    }

    /// Mapped items of one pair.
    pub async fn mapping_count(&self, pair: &PairId) -> StateResult<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM mappings WHERE pair_id = $1")
            .bind(pair.as_str())
            .fetch_one(&self.pool)
            .await
            .map_err(self.err("counting items"))?;
        Ok(n as u64)
    }

    /// Mapped items per pair.
    pub async fn item_counts(&self) -> StateResult<HashMap<String, i64>> {
        let rows = sqlx::query("SELECT pair_id, COUNT(*) FROM mappings GROUP BY pair_id")
            .fetch_all(&self.pool)
            .await
            .map_err(self.err("counting items"))?;
        Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// Pairs that have had a successful pass.
    pub async fn synced_pairs(&self) -> StateResult<std::collections::HashSet<String>> {
        let rows = sqlx::query("SELECT id FROM pairs WHERE last_success_at IS NOT NULL")
            .fetch_all(&self.pool)
            .await
            .map_err(self.err("reading pairs"))?;
        Ok(rows.into_iter().map(|r| r.get(0)).collect())
    }

    /// Saves a pair's state (the pair must have been recorded by `ensure_pair`).
    pub async fn set_pair_state(
        &self,
        pair: &PairId,
        state: &PairState,
        next_run: Option<i64>,
    ) -> StateResult<()> {
        let _turn = self.turn().await;
        sqlx::query(
            "INSERT INTO pair_states (pair_id, state, reason, until, failures, next_run, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (pair_id) DO UPDATE SET state = excluded.state, \
             reason = excluded.reason, until = excluded.until, failures = excluded.failures, \
             next_run = excluded.next_run, updated_at = excluded.updated_at",
        )
        .bind(pair.as_str())
        .bind(state.name())
        .bind(state.reason())
        .bind(state.until())
        .bind(state.failures() as i64)
        .bind(next_run)
        .bind(now_ms())
        .execute(self.writes())
        .await
        .map_err(self.err("saving pair state"))?;
        Ok(())
    }

    /// The pair's failed and quarantined items, of both sides.
    pub async fn quarantine_rows(&self, pair: &PairId) -> StateResult<Vec<Quarantined>> {
        let what = "reading quarantine";
        let rows = sqlx::query(
            "SELECT side, href, etag, quarantined, retry FROM quarantine WHERE pair_id = $1",
        )
        .bind(pair.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(self.err(what))?;
        rows.into_iter()
            .map(|r| {
                let side = Side::parse(r.get::<&str, _>(0))
                    .ok_or_else(|| self.bad_row(what, "a side that is neither a nor b"))?;
                let href = Href::new(r.get::<&str, _>(1)).map_err(|e| self.bad_row(what, e))?;
                Ok(Quarantined {
                    side,
                    href,
                    etag: Etag::new(r.get::<&str, _>(2)),
                    quarantined: r.get::<i64, _>(3) != 0,
                    retry: r.get::<i64, _>(4) != 0,
                })
            })
            .collect()
    }

    /// Counts this pass's permanent failures of items on `side` (quarantining an item at its
    /// third) and forgets the items in `settled` (synced now). Returns the items quarantined by
    /// this call.
    pub async fn record_item_faults(
        &self,
        pair: &PairId,
        side: Side,
        faults: &[ItemFault],
        settled: &[Href],
    ) -> StateResult<Vec<Href>> {
        let settled = self.to_forget("quarantine", pair, settled).await?;
        if faults.is_empty() && settled.is_empty() {
            return Ok(Vec::new());
        }
        let what = "recording item failures";
        let _turn = self.turn().await;
        let mut tx = self.write_tx(what).await?;
        let listed = ("quarantine", "href");
        self.delete_listed(&mut tx, listed, pair, Some(side), settled)
            .await
            .map_err(self.err(what))?;
        let now = now_ms();
        let mut newly = Vec::new();
        for f in faults {
            let (organizer, uid) = f
                .identity
                .as_ref()
                .map_or(("", ""), |i| (i.organizer_str(), i.uid.as_str()));
            let row = sqlx::query(
                "INSERT INTO quarantine (pair_id, side, href, etag, identity_organizer, identity_uid, error, count, \
                 first_seen, last_seen, quarantined, retry) VALUES ($1, $10, $2, $3, $4, $5, $6, 1, $7, $8, 0, 0) \
                 ON CONFLICT (pair_id, side, href) DO UPDATE SET etag = excluded.etag, \
                 identity_organizer = excluded.identity_organizer, identity_uid = excluded.identity_uid, \
                 error = excluded.error, count = quarantine.count + 1, last_seen = excluded.last_seen, \
                 quarantined = CASE WHEN quarantine.count + 1 >= $9 THEN 1 ELSE 0 END, retry = 0 \
                 RETURNING count, quarantined",
            )
            .bind(pair.as_str())
            .bind(f.href.as_str())
            .bind(f.etag.as_str())
            .bind(organizer)
            .bind(uid)
            .bind(&f.error)
            .bind(now)
            .bind(now)
            .bind(QUARANTINE_AFTER)
            .bind(side.as_str())
            .fetch_one(&mut *tx)
            .await
            .map_err(self.err(what))?;
            let (count, quarantined): (i64, i64) = (row.get(0), row.get(1));
            if quarantined != 0 && count == QUARANTINE_AFTER {
                newly.push(f.href.clone());
            }
        }
        tx.commit().await.map_err(self.err(what))?;
        Ok(newly)
    }

    /// Failed and quarantined items, of one pair or all, worst first.
    pub async fn quarantine_list(
        &self,
        pair: Option<&PairId>,
    ) -> StateResult<Vec<QuarantineEntry>> {
        let rows = sqlx::query(
            "SELECT pair_id, href, identity_organizer, identity_uid, error, count, first_seen, last_seen, \
             quarantined, retry, side FROM quarantine WHERE ($1 IS NULL OR pair_id = $2) \
             ORDER BY quarantined DESC, count DESC, pair_id, href",
        )
        .bind(pair.map(PairId::as_str))
        .bind(pair.map(PairId::as_str))
        .fetch_all(&self.pool)
        .await
        .map_err(self.err("reading quarantine"))?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let uid: String = r.get(3);
                let identity = if uid.is_empty() {
                    "(unparseable)".to_string()
                } else {
                    IdentityKey::new(Some(r.get::<&str, _>(2)), &uid).to_string()
                };
                QuarantineEntry {
                    pair: r.get(0),
                    href: r.get(1),
                    identity,
                    error: r.get(4),
                    count: r.get(5),
                    first_seen: r.get(6),
                    last_seen: r.get(7),
                    quarantined: r.get::<i64, _>(8) != 0,
                    retry: r.get::<i64, _>(9) != 0,
                    side: match r.get::<&str, _>(10) {
                        "b" => "target",
                        _ => "source",
                    },
                }
            })
            .collect())
    }

    /// Quarantined items per pair.
    pub async fn quarantine_counts(&self) -> StateResult<HashMap<String, i64>> {
        let rows = sqlx::query(
            "SELECT pair_id, COUNT(*) FROM quarantine WHERE quarantined = 1 GROUP BY pair_id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(self.err("reading quarantine"))?;
        Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// Asks the next pass to try the quarantined items (of one pair, or all) again. Returns how
    /// many were marked.
    pub async fn quarantine_retry(&self, pair: Option<&PairId>) -> StateResult<u64> {
        let _turn = self.turn().await;
        let done = sqlx::query(
            "UPDATE quarantine SET retry = 1 WHERE quarantined = 1 AND ($1 IS NULL OR pair_id = $2)",
        )
        .bind(pair.map(PairId::as_str))
        .bind(pair.map(PairId::as_str))
        .execute(self.writes())
        .await
        .map_err(self.err("marking quarantined items for retry"))?;
        Ok(done.rows_affected())
    }
}

impl State {
    /// Records a configured pair. If its calendars changed since the state last saw it, the old
    /// mappings and watermarks describe other calendars and are dropped; if its direction
    /// changed, its watermarks are (the next pass compares both sides in full). Returns when
    /// the pair was cut over (see [`Self::cutover_at`]), read in the same statement.
    pub async fn ensure_pair(&self, pair: &Pair) -> StateResult<Option<i64>> {
        let (a, b) = (pair.source.to_string(), pair.target.to_string());
        let direction = pair.direction.as_str();
        let select = "SELECT a_calendar, b_calendar, COALESCE(direction, 'one-way'), cutover_at FROM pairs WHERE id = $1";
        let same = |r: &DbRow| r.get::<String, _>(0) == a && r.get::<String, _>(1) == b;
        // Almost always the pair is known and unchanged: one read, no write.
        let row = sqlx::query(select)
            .bind(pair.id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(self.err("reading pair"))?;
        if let Some(r) = &row
            && same(r)
            && r.get::<String, _>(2) == direction
        {
            return Ok(r.get(3));
        }
        let _turn = self.turn().await;
        let mut tx = self.write_tx("saving pair").await?;
        let row = sqlx::query(select)
            .bind(pair.id.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(self.err("reading pair"))?;
        let cutover_at = row.as_ref().and_then(|r| r.get(3));
        match row {
            Some(r) if same(&r) && r.get::<String, _>(2) == direction => {}
            Some(r) if same(&r) => {
                // One way, only the side copied from was listed for changes: what the other side
                // holds unchanged since would never be seen. Both sides are listed in full next.
                tracing::info!(pair = %pair.id, direction, "direction changed; both sides are compared in full");
                sqlx::query("DELETE FROM watermarks WHERE pair_id = $1")
                    .bind(pair.id.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(self.err("saving pair"))?;
                sqlx::query("UPDATE pairs SET direction = $1 WHERE id = $2")
                    .bind(direction)
                    .bind(pair.id.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(self.err("saving pair"))?;
            }
            Some(_) => {
                tracing::warn!(pair = %pair.id, "calendars changed in the config; forgetting the old mappings");
                delete_pair_rows(
                    &mut tx,
                    &pair.id,
                    &[
                        "mappings",
                        "pending_creates",
                        "watermarks",
                        "target_items",
                        "outside_window",
                        "quarantine",
                    ],
                )
                .await
                .map_err(self.err("resetting pair"))?;
                sqlx::query("UPDATE pairs SET a_calendar = $1, b_calendar = $2, direction = $4 WHERE id = $3")
                    .bind(&a)
                    .bind(&b)
                    .bind(pair.id.as_str())
                    .bind(direction)
                    .execute(&mut *tx)
                    .await
                    .map_err(self.err("saving pair"))?;
            }
            None => {
                sqlx::query("INSERT INTO pairs (id, a_calendar, b_calendar, created_at, direction) VALUES ($1, $2, $3, $4, $5)")
                    .bind(pair.id.as_str())
                    .bind(&a)
                    .bind(&b)
                    .bind(now_ms())
                    .bind(direction)
                    .execute(&mut *tx)
                    .await
                    .map_err(self.err("saving pair"))?;
            }
        }
        tx.commit().await.map_err(self.err("saving pair"))?;
        Ok(cutover_at)
    }

    /// The calendars the state last recorded for `pair` (source, target), if any.
    pub async fn pair_calendars(&self, pair: &PairId) -> StateResult<Option<(String, String)>> {
        let row = sqlx::query("SELECT a_calendar, b_calendar FROM pairs WHERE id = $1")
            .bind(pair.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(self.err("reading pair"))?;
        Ok(row.map(|r| (r.get(0), r.get(1))))
    }

    /// When `pair` was cut over (unix milliseconds); `None` while its source is the authority.
    pub async fn cutover_at(&self, pair: &PairId) -> StateResult<Option<i64>> {
        let row = sqlx::query("SELECT cutover_at FROM pairs WHERE id = $1")
            .bind(pair.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(self.err("reading pair"))?;
        Ok(row.and_then(|r| r.get(0)))
    }

    /// Every cut-over pair with its cutover time.
    pub async fn cutovers(&self) -> StateResult<HashMap<String, i64>> {
        let rows = sqlx::query("SELECT id, cutover_at FROM pairs WHERE cutover_at IS NOT NULL")
            .fetch_all(&self.pool)
            .await
            .map_err(self.err("reading pairs"))?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// Cuts `pair` over at `at` (unix milliseconds), or rolls a cutover back (`None`). What was
    /// remembered for one direction (watermarks, the window's memory, quarantine, the target
    /// index) is dropped, so the next pass compares both sides in full. `false` if the pair was
    /// already so (nothing changed).
    pub async fn set_cutover(&self, pair: &Pair, at: Option<i64>) -> StateResult<bool> {
        self.ensure_pair(pair).await?;
        let _turn = self.turn().await;
        let mut tx = self.write_tx("recording cutover").await?;
        let row = sqlx::query("SELECT cutover_at FROM pairs WHERE id = $1")
            .bind(pair.id.as_str())
            .fetch_one(&mut *tx)
            .await
            .map_err(self.err("reading pair"))?;
        if row.get::<Option<i64>, _>(0).is_some() == at.is_some() {
            return Ok(false);
        }
        sqlx::query("UPDATE pairs SET cutover_at = $1 WHERE id = $2")
            .bind(at)
            .bind(pair.id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(self.err("recording cutover"))?;
        delete_pair_rows(
            &mut tx,
            &pair.id,
            &["watermarks", "target_items", "outside_window", "quarantine"],
        )
        .await
        .map_err(self.err("recording cutover"))?;
        tx.commit().await.map_err(self.err("recording cutover"))?;
        Ok(true)
    }
}

/// Deletes every row of `pair` in `tables` (names from this crate, never input).
pub(super) async fn delete_pair_rows(
    tx: &mut Tx,
    pair: &PairId,
    tables: &[&'static str],
) -> Result<(), sqlx::Error> {
    for table in tables {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM {table} WHERE pair_id = $1"
        )))
        .bind(pair.as_str())
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}
