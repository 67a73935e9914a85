//! SQL for the window's memory: items of the source left outside the sync window, by href.

use sqlx::Row;

use crate::domain::identity::IdentityKey;
use crate::domain::mapping::{OutsideWindow, Remembered, Side};
use crate::domain::types::{Etag, Href, PairId};

use super::db::{State, StateError, StateResult};
use super::rows;

impl State {
    /// Items remembered as outside the window (of either side), with whether each is due to be
    /// looked at again: its time to enter has come (`now`, unix seconds), or it was judged by
    /// another window setting. Without `all`, only the due ones.
    pub async fn outside_window(
        &self,
        pair: &PairId,
        now: i64,
        window: &str,
        all: bool,
    ) -> StateResult<Vec<Remembered>> {
        let what = "reading items outside the window";
        let rows = sqlx::query(
            "SELECT side, href, etag, CASE WHEN enters_at <= $1 OR \"window\" <> $2 THEN 1 ELSE 0 END \
             FROM outside_window WHERE pair_id = $3 AND ($4 OR enters_at <= $1 OR \"window\" <> $2)",
        )
        .bind(now)
        .bind(window)
        .bind(pair.as_str())
        .bind(all)
        .fetch_all(&self.pool)
        .await
        .map_err(self.err(what))?;
        rows.into_iter()
            .map(|r| {
                let bad = |e: String| StateError {
                    path: self.place.clone(),
                    what,
                    source: e.into(),
                };
                Ok(Remembered {
                    side: Side::parse(r.get::<&str, _>(0)).ok_or_else(|| bad("no side".into()))?,
                    href: Href::new(r.get::<&str, _>(1)).map_err(bad)?,
                    etag: Etag::new(r.get::<&str, _>(2)),
                    due: r.get::<i64, _>(3) == 1,
                })
            })
            .collect()
    }

    /// The identities of every item on `side` remembered as outside the window.
    pub async fn outside_window_identities(
        &self,
        pair: &PairId,
        side: Side,
    ) -> StateResult<Vec<IdentityKey>> {
        let rows = sqlx::query(
            "SELECT identity_organizer, identity_uid FROM outside_window WHERE pair_id = $1 AND side = $2",
        )
        .bind(pair.as_str())
        .bind(side.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(self.err("reading items outside the window"))?;
        Ok(rows
            .into_iter()
            .map(|r| IdentityKey::new(Some(r.get::<&str, _>(0)), r.get::<&str, _>(1)))
            .collect())
    }

    /// How many items of `pair` (either side) are remembered as outside the window.
    pub async fn outside_window_count(&self, pair: &PairId) -> StateResult<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outside_window WHERE pair_id = $1")
            .bind(pair.as_str())
            .fetch_one(&self.pool)
            .await
            .map_err(self.err("reading items outside the window"))?;
        Ok(n as u64)
    }

    /// Remembers items of `side` left outside the window and forgets the ones `settled`
    /// (written, deleted, or found in step), in one transaction.
    pub async fn update_outside_window(
        &self,
        pair: &PairId,
        side: Side,
        put: &[OutsideWindow],
        settled: &[Href],
        window: &str,
    ) -> StateResult<()> {
        let settled = self.to_forget("outside_window", pair, settled).await?;
        if put.is_empty() && settled.is_empty() {
            return Ok(());
        }
        let _turn = self.turn().await;
        let what = "recording items outside the window";
        let mut tx = self.write_tx(what).await?;
        self.delete_listed(
            &mut tx,
            ("outside_window", "href"),
            pair,
            Some(side),
            settled,
        )
        .await
        .map_err(self.err(what))?;
        let kept = rows::last_per_key(put, |o| o.href.clone());
        if !kept.is_empty() {
            let json = rows::json(
                &kept
                    .iter()
                    .map(|o| {
                        (
                            o.href.as_str(),
                            o.etag.as_str(),
                            o.identity.organizer_str(),
                            o.identity.uid.as_str(),
                            o.enters,
                        )
                    })
                    .collect::<Vec<_>>(),
            );
            sqlx::query(self.sql(
                "INSERT INTO outside_window (pair_id, side, href, etag, identity_organizer, \
                 identity_uid, enters_at, \"window\") \
                 SELECT $1, $2, value->>0, value->>1, value->>2, value->>3, \
                 CAST(value->>4 AS BIGINT), $3 FROM JSON_ROWS($4) WHERE true \
                 ON CONFLICT (pair_id, side, href) DO UPDATE SET etag = excluded.etag, \
                 identity_organizer = excluded.identity_organizer, identity_uid = excluded.identity_uid, \
                 enters_at = excluded.enters_at, \"window\" = excluded.\"window\"",
            ))
            .bind(pair.as_str())
            .bind(side.as_str())
            .bind(window)
            .bind(json.as_str())
            .execute(&mut *tx)
            .await
            .map_err(self.err(what))?;
        }
        tx.commit().await.map_err(self.err(what))
    }
}
