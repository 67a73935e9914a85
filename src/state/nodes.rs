//! SQL for nodes and pair claims ([`crate::service::nodes`]): heartbeats and claims counted on the
//! database's clock, a claim good only while its node is alive, taken by one conditional write.

use std::collections::HashMap;
use std::time::Duration;

use serde::Serialize;
use sqlx::Row;

use super::db::{State, StateResult};

/// Who a node is, as it registers.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    /// Its lease holder name ("HOST pid N TAG").
    pub id: String,
    pub host: String,
    pub pid: u32,
    pub version: String,
    /// Where its status page and API listen.
    pub listen: String,
}

/// A node as `tandem nodes` and the status page show it.
#[derive(Debug, Clone, Serialize)]
pub struct NodeRow {
    pub id: String,
    pub host: String,
    pub pid: i64,
    pub version: String,
    pub listen: String,
    pub started_at: i64,
    pub heartbeat_at: i64,
    /// Milliseconds since its last heartbeat, on the database's clock.
    pub heartbeat_age_ms: i64,
    /// `alive`, `stopped` (left cleanly) or `dead` (its heartbeat lapsed).
    pub status: &'static str,
    /// Pairs it holds claims on (a dead node's are free to take).
    pub pairs: i64,
}

/// Dead and stopped nodes are listed for a day, then forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(24 * 3600);

/// A live node, in SQL over `nodes n`.
const ALIVE: &str = "n.expires_at > NOW_MS AND n.stopped_at IS NULL";

impl State {
    /// Registers `node` or renews its heartbeat, alive for `ttl`; returns every live node's id,
    /// sorted.
    pub async fn heartbeat(&self, node: &NodeInfo, ttl: Duration) -> StateResult<Vec<String>> {
        let what = "heartbeat";
        let _turn = self.turn().await;
        sqlx::query(self.sql(
            "INSERT INTO nodes (id, host, pid, version, listen, started_at, heartbeat_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, NOW_MS, NOW_MS, NOW_MS + $6) \
             ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at, \
             expires_at = excluded.expires_at, stopped_at = NULL",
        ))
        .bind(&node.id)
        .bind(&node.host)
        .bind(i64::from(node.pid))
        .bind(&node.version)
        .bind(&node.listen)
        .bind(ttl.as_millis() as i64)
        .execute(self.writes())
        .await
        .map_err(self.err(what))?;
        drop(_turn);
        self.live_nodes().await
    }

    /// Every live node's id, sorted.
    pub async fn live_nodes(&self) -> StateResult<Vec<String>> {
        sqlx::query_scalar(self.sql(&format!(
            "SELECT n.id FROM nodes n WHERE {ALIVE} ORDER BY n.id"
        )))
        .fetch_all(&self.pool)
        .await
        .map_err(self.err("reading nodes"))
    }

    /// The pairs `node` holds claims on.
    pub async fn claims_of(&self, node: &str) -> StateResult<Vec<String>> {
        sqlx::query_scalar("SELECT pair_id FROM claims WHERE node = $1")
            .bind(node)
            .fetch_all(&self.pool)
            .await
            .map_err(self.err("reading claims"))
    }

    /// Claims `pairs` for `node` where free: unclaimed, or claimed by a node that is not alive.
    /// Returns the pairs claimed now; of two nodes claiming one pair, one gets it.
    pub async fn claim(&self, node: &str, pairs: &[&str]) -> StateResult<Vec<String>> {
        if pairs.is_empty() {
            return Ok(Vec::new());
        }
        let json = super::rows::json(&pairs.iter().map(|p| [p]).collect::<Vec<_>>());
        let text = format!(
            "INSERT INTO claims (pair_id, node, claimed_at) \
             SELECT value->>0, $1, NOW_MS FROM JSON_ROWS($2) WHERE true \
             ON CONFLICT (pair_id) DO UPDATE SET node = excluded.node, claimed_at = excluded.claimed_at \
             WHERE claims.node <> excluded.node AND NOT EXISTS \
             (SELECT 1 FROM nodes n WHERE n.id = claims.node AND {ALIVE}) \
             RETURNING pair_id"
        );
        let _turn = self.turn().await;
        let got = sqlx::query_scalar(self.sql(&text))
            .bind(node)
            .bind(json.as_str())
            .fetch_all(self.writes())
            .await
            .map_err(self.err("claiming pairs"))?;
        Ok(got)
    }

    /// Gives up `node`'s claims on `pairs` (handed to another node).
    pub async fn release_claims(&self, node: &str, pairs: &[&str]) -> StateResult<()> {
        if pairs.is_empty() {
            return Ok(());
        }
        let json = super::rows::json(&pairs.iter().map(|p| [p]).collect::<Vec<_>>());
        let _turn = self.turn().await;
        sqlx::query(self.sql(
            "DELETE FROM claims WHERE node = $1 \
             AND pair_id IN (SELECT value->>0 FROM JSON_ROWS($2))",
        ))
        .bind(node)
        .bind(json.as_str())
        .execute(self.writes())
        .await
        .map_err(self.err("releasing claims"))?;
        Ok(())
    }

    /// A node leaving cleanly: its claims are freed at once (no one waits out its ttl), and it
    /// shows as stopped. Long-gone nodes are forgotten.
    pub async fn leave(&self, node: &str) -> StateResult<()> {
        let what = "leaving";
        let _turn = self.turn().await;
        let mut tx = self.write_tx(what).await?;
        sqlx::query("DELETE FROM claims WHERE node = $1")
            .bind(node)
            .execute(&mut *tx)
            .await
            .map_err(self.err(what))?;
        sqlx::query(
            self.sql("UPDATE nodes SET stopped_at = NOW_MS, expires_at = NOW_MS WHERE id = $1"),
        )
        .bind(node)
        .execute(&mut *tx)
        .await
        .map_err(self.err(what))?;
        sqlx::query(self.sql("DELETE FROM nodes WHERE expires_at < NOW_MS - $1"))
            .bind(FORGET_AFTER.as_millis() as i64)
            .execute(&mut *tx)
            .await
            .map_err(self.err(what))?;
        tx.commit().await.map_err(self.err(what))
    }

    /// Every node known, alive ones first, with its claims.
    pub async fn nodes(&self) -> StateResult<Vec<NodeRow>> {
        let rows = sqlx::query(self.sql(&format!(
            "SELECT n.id, n.host, n.pid, n.version, n.listen, n.started_at, n.heartbeat_at, \
             NOW_MS - n.heartbeat_at, CASE WHEN {ALIVE} THEN 'alive' \
             WHEN n.stopped_at IS NOT NULL THEN 'stopped' ELSE 'dead' END, \
             (SELECT COUNT(*) FROM claims c WHERE c.node = n.id) \
             FROM nodes n ORDER BY CASE WHEN {ALIVE} THEN 0 ELSE 1 END, n.id"
        )))
        .fetch_all(&self.pool)
        .await
        .map_err(self.err("reading nodes"))?;
        Ok(rows
            .iter()
            .map(|r| NodeRow {
                id: r.get(0),
                host: r.get(1),
                pid: r.get(2),
                version: r.get(3),
                listen: r.get(4),
                started_at: r.get(5),
                heartbeat_at: r.get(6),
                heartbeat_age_ms: r.get(7),
                status: match r.get::<&str, _>(8) {
                    "alive" => "alive",
                    "stopped" => "stopped",
                    _ => "dead",
                },
                pairs: r.get(9),
            })
            .collect())
    }

    /// The node running each claimed pair, for pairs whose node is alive.
    pub async fn claims(&self) -> StateResult<HashMap<String, String>> {
        let rows = sqlx::query(self.sql(&format!(
            "SELECT c.pair_id, c.node FROM claims c JOIN nodes n ON n.id = c.node WHERE {ALIVE}"
        )))
        .fetch_all(&self.pool)
        .await
        .map_err(self.err("reading claims"))?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }
}
