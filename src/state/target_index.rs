//! SQL for the target index: what tandem last read of each target item, so a pass needs not
//! read it again.

use std::collections::HashMap;

use sqlx::Row;

use crate::domain::identity::IdentityKey;
use crate::domain::types::{Etag, Href, PairId};

use super::db::{State, StateError, StateResult};
use super::rows;

impl State {
    /// Target items read before, by href: the etag they were read at and their identity
    /// (`None` if they could not be parsed).
    pub async fn target_index(
        &self,
        pair: &PairId,
    ) -> StateResult<HashMap<Href, (Etag, Option<IdentityKey>)>> {
        let rows = sqlx::query("SELECT href, etag, identity_organizer, identity_uid FROM target_items WHERE pair_id = $1")
            .bind(pair.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(self.err("reading target index"))?;
        rows.into_iter()
            .map(|r| {
                let href = Href::new(r.get::<&str, _>(0)).map_err(|e| StateError {
                    path: self.place.clone(),
                    what: "reading target index",
                    source: e.into(),
                })?;
                let uid: &str = r.get(3);
                let identity =
                    (!uid.is_empty()).then(|| IdentityKey::new(Some(r.get::<&str, _>(2)), uid));
                Ok((href, (Etag::new(r.get::<&str, _>(1)), identity)))
            })
            .collect()
    }

    /// Records what was read of target items (`identity` `None`: unparseable) and forgets the
    /// ones that are gone, in one transaction.
    pub async fn update_target_index(
        &self,
        pair: &PairId,
        read: &[(Href, Etag, Option<IdentityKey>)],
        gone: &[Href],
    ) -> StateResult<()> {
        if read.is_empty() && gone.is_empty() {
            return Ok(());
        }
        let what = "updating target index";
        let _turn = self.turn().await;
        let mut tx = self.write_tx(what).await?;
        self.delete_listed(&mut tx, ("target_items", "href"), pair, None, gone)
            .await
            .map_err(self.err(what))?;
        let kept = rows::last_per_key(read, |(href, _, _)| href.clone());
        if !kept.is_empty() {
            let json = rows::json(
                &kept
                    .iter()
                    .map(|(href, etag, identity)| {
                        (
                            href.as_str(),
                            etag.as_str(),
                            identity.as_ref().map_or("", |i| i.organizer_str()),
                            identity.as_ref().map_or("", |i| i.uid.as_str()),
                        )
                    })
                    .collect::<Vec<_>>(),
            );
            sqlx::query(self.sql(
                "INSERT INTO target_items (pair_id, href, etag, identity_organizer, identity_uid) \
                 SELECT $1, value->>0, value->>1, value->>2, value->>3 FROM JSON_ROWS($2) WHERE true \
                 ON CONFLICT (pair_id, href) DO UPDATE SET etag = excluded.etag, \
                 identity_organizer = excluded.identity_organizer, identity_uid = excluded.identity_uid",
            ))
            .bind(pair.as_str())
            .bind(json.as_str())
            .execute(&mut *tx)
            .await
            .map_err(self.err(what))?;
        }
        tx.commit().await.map_err(self.err("updating target index"))
    }
}
