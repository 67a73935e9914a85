//! SQL for WebDAV-Push subscriptions ([`crate::service::push`]): one row per calendar of a pair
//! subscribed to its server's pushes, found again by the token that ends its push URL.

use sqlx::Row;

use super::db::{State, StateResult};

/// A subscription as kept: where the server pushes, how to end it, and the keys it was made with.
#[derive(Clone, PartialEq, Eq)]
pub struct PushSubscription {
    /// The last segment of `push_url`: unguessable, it names the pair and side.
    pub token: String,
    pub pair: String,
    /// `source` or `target`.
    pub side: String,
    pub server: String,
    pub calendar: String,
    pub push_url: String,
    /// The subscription's URL on the server.
    pub location: String,
    pub expires_at: i64,
    /// P-256 private key (PKCS#8, base64url) and auth secret (base64url).
    pub private_key: String,
    pub auth_secret: String,
    pub renewed_at: i64,
    pub last_push_at: Option<i64>,
}

impl std::fmt::Debug for PushSubscription {
    // The token and keys are secrets: a log line naming them would let anyone push.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushSubscription")
            .field("pair", &self.pair)
            .field("side", &self.side)
            .field("calendar", &self.calendar)
            .field("location", &self.location)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

const COLUMNS: &str = "token, pair_id, side, server, calendar, push_url, location, expires_at, \
                       private_key, auth_secret, renewed_at, last_push_at";

fn from_row(r: &sqlx::any::AnyRow) -> PushSubscription {
    PushSubscription {
        token: r.get(0),
        pair: r.get(1),
        side: r.get(2),
        server: r.get(3),
        calendar: r.get(4),
        push_url: r.get(5),
        location: r.get(6),
        expires_at: r.get(7),
        private_key: r.get(8),
        auth_secret: r.get(9),
        renewed_at: r.get(10),
        last_push_at: r.get(11),
    }
}

impl State {
    /// Every subscription kept.
    pub async fn push_subscriptions(&self) -> StateResult<Vec<PushSubscription>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM push_subscriptions ORDER BY pair_id, side"
        )))
        .fetch_all(&self.pool)
        .await
        .map_err(self.err("reading push subscriptions"))?;
        Ok(rows.iter().map(from_row).collect())
    }

    /// Keeps `s`, replacing the pair side's earlier subscription (made or renewed).
    pub async fn save_push_subscription(&self, s: &PushSubscription) -> StateResult<()> {
        let what = "saving a push subscription";
        let _turn = self.turn().await;
        let mut tx = self.writes().begin().await.map_err(self.err(what))?;
        sqlx::query("DELETE FROM push_subscriptions WHERE pair_id = $1 AND side = $2")
            .bind(&s.pair)
            .bind(&s.side)
            .execute(&mut *tx)
            .await
            .map_err(self.err(what))?;
        sqlx::query(
            "INSERT INTO push_subscriptions (token, pair_id, side, server, calendar, push_url, \
             location, expires_at, private_key, auth_secret, created_at, renewed_at, last_push_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11, $12)",
        )
        .bind(&s.token)
        .bind(&s.pair)
        .bind(&s.side)
        .bind(&s.server)
        .bind(&s.calendar)
        .bind(&s.push_url)
        .bind(&s.location)
        .bind(s.expires_at)
        .bind(&s.private_key)
        .bind(&s.auth_secret)
        .bind(s.renewed_at)
        .bind(s.last_push_at)
        .execute(&mut *tx)
        .await
        .map_err(self.err(what))?;
        tx.commit().await.map_err(self.err(what))
    }

    /// Forgets the subscription named by `token`.
    pub async fn forget_push_subscription(&self, token: &str) -> StateResult<()> {
        let _turn = self.turn().await;
        sqlx::query("DELETE FROM push_subscriptions WHERE token = $1")
            .bind(token)
            .execute(self.writes())
            .await
            .map_err(self.err("forgetting a push subscription"))?;
        Ok(())
    }

    /// Records a push to `token` at `now_ms`; the pair it names, or `None` for a token no
    /// subscription has.
    pub async fn record_push(&self, token: &str, now_ms: i64) -> StateResult<Option<String>> {
        let _turn = self.turn().await;
        sqlx::query_scalar(
            "UPDATE push_subscriptions SET last_push_at = $2 WHERE token = $1 RETURNING pair_id",
        )
        .bind(token)
        .bind(now_ms)
        .fetch_optional(&self.pool)
        .await
        .map_err(self.err("recording a push"))
    }
}
