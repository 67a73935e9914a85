//! SQL for watermarks: where each side's listing of changes starts next time.

use sqlx::Row;

use crate::domain::mapping::Side;
use crate::domain::time::now_ms;
use crate::domain::types::{PairId, SyncToken};

use super::db::{State, StateResult};

impl State {
    /// Both sides' watermarks in one read.
    pub async fn watermarks(
        &self,
        pair: &PairId,
    ) -> StateResult<(Option<SyncToken>, Option<SyncToken>)> {
        let rows = sqlx::query("SELECT side, token FROM watermarks WHERE pair_id = $1")
            .bind(pair.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(self.err("reading watermark"))?;
        let mut out = (None, None);
        for r in rows {
            let token = Some(SyncToken::new(r.get::<&str, _>(1)));
            match r.get::<&str, _>(0) {
                "a" => out.0 = token,
                _ => out.1 = token,
            }
        }
        Ok(out)
    }

    pub async fn watermark(&self, pair: &PairId, side: Side) -> StateResult<Option<SyncToken>> {
        let row = sqlx::query("SELECT token FROM watermarks WHERE pair_id = $1 AND side = $2")
            .bind(pair.as_str())
            .bind(side.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(self.err("reading watermark"))?;
        Ok(row.map(|r| SyncToken::new(r.get::<&str, _>(0))))
    }

    pub async fn set_watermark(
        &self,
        pair: &PairId,
        side: Side,
        token: Option<&SyncToken>,
    ) -> StateResult<()> {
        self.set_watermarks(pair, &[(side, token)]).await
    }

    /// Moves the watermarks of these sides (`None` forgets one), in one transaction.
    pub async fn set_watermarks(
        &self,
        pair: &PairId,
        moved: &[(Side, Option<&SyncToken>)],
    ) -> StateResult<()> {
        if moved.is_empty() {
            return Ok(());
        }
        let what = "writing watermark";
        let _turn = self.turn().await;
        let mut tx = self.write_tx(what).await?;
        for (side, token) in moved {
            let q = match token {
                Some(t) => sqlx::query(
                    "INSERT INTO watermarks (pair_id, side, token, updated_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (pair_id, side) DO UPDATE SET token = excluded.token, updated_at = excluded.updated_at",
                )
                .bind(pair.as_str())
                .bind(side.as_str())
                .bind(t.as_str())
                .bind(now_ms()),
                None => sqlx::query("DELETE FROM watermarks WHERE pair_id = $1 AND side = $2")
                    .bind(pair.as_str())
                    .bind(side.as_str()),
            };
            q.execute(&mut *tx).await.map_err(self.err(what))?;
        }
        tx.commit().await.map_err(self.err(what))
    }
}
