//! SQL for mappings (which item of A is which of B) and the creates a crash may have left
//! pending.

use std::str::FromStr;

use sqlx::Row;

use crate::domain::identity::IdentityKey;
use crate::domain::mapping::{Mapping, Pending, Side};
use crate::domain::time::now_ms;
use crate::domain::types::{ContentHash, Etag, Href, PairId};

use super::db::{State, StateError, StateResult};
use super::pairs::delete_pair_rows;
use super::rows;
use super::sql::{DbRow, Tx};

impl State {
    pub async fn mappings(&self, pair: &PairId) -> StateResult<Vec<Mapping>> {
        let rows = sqlx::query(
            "SELECT a_href, a_etag, b_href, b_etag, identity_organizer, identity_uid, content_hash \
             FROM mappings WHERE pair_id = $1",
        )
        .bind(pair.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(self.err("reading mappings"))?;
        rows.into_iter().map(|r| self.row_to_mapping(&r)).collect()
    }

    fn row_to_mapping(&self, r: &DbRow) -> StateResult<Mapping> {
        let bad = |what: String| StateError {
            path: self.place.clone(),
            what: "reading mappings",
            source: what.into(),
        };
        let href = |i| Href::new(r.get::<&str, _>(i)).map_err(bad);
        let organizer: &str = r.get(4);
        Ok(Mapping {
            a_href: href(0)?,
            a_etag: Etag::new(r.get::<&str, _>(1)),
            b_href: href(2)?,
            b_etag: Etag::new(r.get::<&str, _>(3)),
            identity: IdentityKey::new(Some(organizer), r.get::<&str, _>(5)),
            hash: ContentHash::from_str(r.get::<&str, _>(6)).map_err(bad)?,
        })
    }

    /// Records `m` (replacing the mapping of its source href and any other mapping that claimed
    /// the same target href) in one transaction.
    pub async fn put_mapping(&self, pair: &PairId, m: &Mapping) -> StateResult<()> {
        self.apply(pair, std::slice::from_ref(m), &[]).await
    }

    pub async fn delete_mapping(&self, pair: &PairId, a_href: &Href) -> StateResult<()> {
        self.apply(pair, &[], std::slice::from_ref(a_href)).await
    }

    /// Replaces everything recorded of the pair's items with `mappings` (the repair assistant's
    /// findings): pending creates, watermarks and the target index go too, so the next pass
    /// lists both sides in full. Should the process die in between, the next pass finds every
    /// copy again by identity (adoption), so nothing is duplicated.
    pub async fn rebuild_mappings(&self, pair: &PairId, mappings: &[Mapping]) -> StateResult<()> {
        {
            let _turn = self.turn().await;
            let mut tx = self.write_tx("rebuilding mappings").await?;
            delete_pair_rows(
                &mut tx,
                pair,
                &["mappings", "pending_creates", "watermarks", "target_items"],
            )
            .await
            .map_err(self.err("rebuilding mappings"))?;
            tx.commit().await.map_err(self.err("rebuilding mappings"))?;
        }
        self.apply(pair, mappings, &[]).await
    }

    /// Upserts and deletes many mappings in one transaction (see [`Self::apply_in`]).
    pub async fn apply(&self, pair: &PairId, put: &[Mapping], delete: &[Href]) -> StateResult<()> {
        if put.is_empty() && delete.is_empty() {
            return Ok(());
        }
        self.apply_and_note(pair, put, delete, &[], None).await
    }

    /// Records finished writes ([`Self::apply`]) and notes the next ones as pending
    /// ([`Self::add_pendings`]) in one transaction. With nothing to record or note it still
    /// checks the fence: the writes about to go out are still this writer's to make. `left`,
    /// the writes of a first sync or a resync still to make, is the pair's backlog meanwhile.
    pub async fn apply_and_note(
        &self,
        pair: &PairId,
        put: &[Mapping],
        delete: &[Href],
        pendings: &[Pending],
        left: Option<u64>,
    ) -> StateResult<()> {
        let what = match pendings.is_empty() {
            true => "writing mappings",
            false => "recording pending creates",
        };
        let _turn = self.turn().await;
        let mut tx = self.write_tx(what).await?;
        self.apply_in(&mut tx, pair, put, delete)
            .await
            .map_err(self.err(what))?;
        self.note_in(&mut tx, pair, pendings)
            .await
            .map_err(self.err(what))?;
        if let Some(left) = left {
            sqlx::query("UPDATE pairs SET backlog = $1 WHERE id = $2")
                .bind(left as i64)
                .bind(pair.as_str())
                .execute(&mut *tx)
                .await
                .map_err(self.err(what))?;
        }
        tx.commit().await.map_err(self.err(what))
    }

    /// Inside `tx`: drops the mappings of `delete` (by A href), then records each of `put`,
    /// replacing the mapping of its A href and any other claiming its B href, and settling the
    /// pending create it came from; a later mapping of the batch replaces an earlier one as it
    /// would row by row. A few statements whatever the batch's size.
    async fn apply_in(
        &self,
        tx: &mut Tx,
        pair: &PairId,
        put: &[Mapping],
        delete: &[Href],
    ) -> Result<(), sqlx::Error> {
        self.delete_listed(tx, ("mappings", "a_href"), pair, None, delete)
            .await?;
        let settled: Vec<(&Href, &Href)> = put.iter().map(|m| (&m.a_href, &m.b_href)).collect();
        self.clear_pending_rows(tx, pair, &settled).await?;
        let by_a = rows::last_per_key(put, |m| m.a_href.clone());
        let kept: Vec<&Mapping> = rows::last_per_key(&by_a, |m| m.b_href.clone())
            .into_iter()
            .copied()
            .collect();
        if kept.is_empty() {
            return Ok(());
        }
        let json = rows::json(
            &kept
                .iter()
                .map(|m| {
                    (
                        m.a_href.as_str(),
                        m.a_etag.as_str(),
                        m.b_href.as_str(),
                        m.b_etag.as_str(),
                        m.identity.organizer_str(),
                        m.identity.uid.as_str(),
                        rows::Shown(&m.hash),
                    )
                })
                .collect::<Vec<_>>(),
        );
        // Another mapping claiming one of these B hrefs goes (its item was replaced there).
        sqlx::query(self.sql(
            "DELETE FROM mappings WHERE pair_id = $1 \
             AND b_href IN (SELECT value->>2 FROM JSON_ROWS($2)) \
             AND (a_href, b_href) NOT IN (SELECT value->>0, value->>2 FROM JSON_ROWS($2))",
        ))
        .bind(pair.as_str())
        .bind(json.as_str())
        .execute(&mut **tx)
        .await?;
        sqlx::query(self.sql(
            "INSERT INTO mappings (pair_id, a_href, a_etag, b_href, b_etag, identity_organizer, \
             identity_uid, content_hash, updated_at) \
             SELECT $1, value->>0, value->>1, value->>2, value->>3, value->>4, value->>5, value->>6, $3 \
             FROM JSON_ROWS($2) WHERE true \
             ON CONFLICT (pair_id, a_href) DO UPDATE SET a_etag = excluded.a_etag, \
             b_href = excluded.b_href, b_etag = excluded.b_etag, \
             identity_organizer = excluded.identity_organizer, identity_uid = excluded.identity_uid, \
             content_hash = excluded.content_hash, updated_at = excluded.updated_at",
        ))
        .bind(pair.as_str())
        .bind(json.as_str())
        .bind(now_ms())
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Notes that a create (or an update) of a copy is about to be sent.
    pub async fn add_pending(&self, pair: &PairId, p: &Pending) -> StateResult<()> {
        self.add_pendings(pair, std::slice::from_ref(p)).await
    }

    /// Notes, in one transaction, that the creates (or updates) of these copies are about to be
    /// sent. With none it still checks the fence (see [`Self::apply_and_note`]).
    pub async fn add_pendings(&self, pair: &PairId, pendings: &[Pending]) -> StateResult<()> {
        self.apply_and_note(pair, &[], &[], pendings, None).await
    }

    /// Inside `tx`: notes these creates (or updates) as about to be sent; a later note of the
    /// same copy replaces an earlier one.
    async fn note_in(
        &self,
        tx: &mut Tx,
        pair: &PairId,
        pendings: &[Pending],
    ) -> Result<(), sqlx::Error> {
        let kept = rows::last_per_key(pendings, |p| (p.a_href.clone(), p.b_href.clone()));
        if kept.is_empty() {
            return Ok(());
        }
        let json = rows::json(
            &kept
                .iter()
                .map(|p| {
                    (
                        p.a_href.as_str(),
                        p.b_href.as_str(),
                        p.identity.organizer_str(),
                        p.identity.uid.as_str(),
                        p.to.as_str(),
                        p.hash.as_ref().map(rows::Shown),
                        i64::from(p.update),
                    )
                })
                .collect::<Vec<_>>(),
        );
        sqlx::query(self.sql(
            "INSERT INTO pending_creates (pair_id, a_href, b_href, identity_organizer, \
             identity_uid, created_at, to_side, hash, is_update) \
             SELECT $1, value->>0, value->>1, value->>2, value->>3, $3, value->>4, value->>5, \
             CAST(value->>6 AS BIGINT) FROM JSON_ROWS($2) WHERE true \
             ON CONFLICT (pair_id, a_href, b_href) DO UPDATE SET \
             to_side = excluded.to_side, hash = excluded.hash, is_update = excluded.is_update",
        ))
        .bind(pair.as_str())
        .bind(json.as_str())
        .bind(now_ms())
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    pub async fn pendings(&self, pair: &PairId) -> StateResult<Vec<Pending>> {
        let rows = sqlx::query("SELECT a_href, b_href, identity_organizer, identity_uid, to_side, hash, is_update FROM pending_creates WHERE pair_id = $1")
            .bind(pair.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(self.err("reading pending creates"))?;
        rows.iter()
            .map(|r| {
                let bad = |e: String| StateError {
                    path: self.place.clone(),
                    what: "reading pending creates",
                    source: e.into(),
                };
                Ok(Pending {
                    a_href: Href::new(r.get::<&str, _>(0)).map_err(bad)?,
                    b_href: Href::new(r.get::<&str, _>(1)).map_err(bad)?,
                    identity: IdentityKey::new(Some(r.get::<&str, _>(2)), r.get::<&str, _>(3)),
                    to: Side::parse(r.get::<&str, _>(4))
                        .ok_or_else(|| bad("a side that is neither a nor b".into()))?,
                    hash: r
                        .get::<Option<&str>, _>(5)
                        .map(ContentHash::from_str)
                        .transpose()
                        .map_err(bad)?,
                    update: r.get::<i64, _>(6) != 0,
                })
            })
            .collect()
    }

    /// Drops pending creates that are settled (recorded, found gone, or cleaned up).
    pub async fn clear_pendings(&self, pair: &PairId, settled: &[Pending]) -> StateResult<()> {
        if settled.is_empty() {
            return Ok(());
        }
        let what = "clearing pending creates";
        let _turn = self.turn().await;
        let mut tx = self.write_tx(what).await?;
        let keys: Vec<(&Href, &Href)> = settled.iter().map(|p| (&p.a_href, &p.b_href)).collect();
        self.clear_pending_rows(&mut tx, pair, &keys)
            .await
            .map_err(self.err(what))?;
        tx.commit().await.map_err(self.err(what))
    }

    /// Inside `tx`: drops the pending creates of these (A href, B href) pairs.
    async fn clear_pending_rows(
        &self,
        tx: &mut Tx,
        pair: &PairId,
        keys: &[(&Href, &Href)],
    ) -> Result<(), sqlx::Error> {
        if keys.is_empty() {
            return Ok(());
        }
        let json = rows::json(
            &keys
                .iter()
                .map(|(a, b)| (a.as_str(), b.as_str()))
                .collect::<Vec<_>>(),
        );
        sqlx::query(self.sql(
            "DELETE FROM pending_creates WHERE pair_id = $1 \
             AND (a_href, b_href) IN (SELECT value->>0, value->>1 FROM JSON_ROWS($2))",
        ))
        .bind(pair.as_str())
        .bind(json.as_str())
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}
