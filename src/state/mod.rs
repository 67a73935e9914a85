//! The state store: every SQL statement of tandem, behind one struct ([`State`]).
//!
//! The schema lives only in `migrations/`; opening a database applies what it lacks. All SQL of the
//! project is in this module, with `$N` placeholders and what SQLite and PostgreSQL share; what
//! is SQLite's own (opening, locking, the write transaction) is in its backend file, so a
//! PostgreSQL backend beside it shares the statements. Errors here are fatal for a run: without its state,
//! tandem could duplicate or lose items.

mod fence;
mod leases;
mod nodes;
mod observe;
mod pairs;
mod pass;
mod postgres;
mod push;
mod rows;
mod sqlite;

pub use fence::{LeaseLost, fenced};
pub use nodes::{NodeInfo, NodeRow};
pub use observe::{PairRow, PassView, ServerRow};
pub use pass::{PassStart, Peek};
pub use push::PushSubscription;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use sqlx::Row;

/// The statements run through sqlx's runtime-chosen driver: one code path for both backends,
/// whose values are the integers, text and booleans both read alike.
pub(crate) type Pool = sqlx::AnyPool;
pub(crate) type DbRow = sqlx::any::AnyRow;
pub(crate) type Tx = sqlx::Transaction<'static, sqlx::Any>;
type Failure = (&'static str, Box<dyn std::error::Error + Send + Sync>);

use crate::domain::identity::IdentityKey;
use crate::domain::mapping::{Mapping, OutsideWindow, Pending, Remembered, Side};
use crate::domain::pair::Pair;
use crate::domain::run::{PairStatus, RunStatus};
use crate::domain::time::now_ms;
use crate::domain::types::{ContentHash, Etag, Href, PairId, SyncToken};
use secrecy::SecretString;

pub use postgres::MIGRATOR as POSTGRES_MIGRATOR;
pub use sqlite::MIGRATOR as SQLITE_MIGRATOR;

/// Which database holds the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, thiserror::Error)]
#[error("state store {path}: {what}: {source}")]
pub struct StateError {
    path: String,
    what: &'static str,
    #[source]
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl StateError {
    /// A failure at `place` (a file or URL) while doing `what`.
    pub fn new(
        place: &str,
        what: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> StateError {
        StateError {
            path: place.to_string(),
            what,
            source: source.into(),
        }
    }
}

pub type StateResult<T> = Result<T, StateError>;

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

#[derive(Clone)]
pub struct State {
    /// Reads. On PostgreSQL writes too; SQLite's writes have [`State::writes`].
    pub(crate) pool: Pool,
    /// The pool every write goes through: on SQLite one connection, whose page cache no other
    /// connection of this process invalidates by writing (a write elsewhere drops a
    /// connection's whole cache at its next transaction); on PostgreSQL `pool` itself.
    writes: Pool,
    backend: Backend,
    /// Where the state is, as errors name it (a file, or a URL without password).
    place: String,
    path: Option<PathBuf>,
    /// SQLite: writers of this process take turns here, so concurrent writes of one pass never
    /// meet on SQLite's lock (whose busy handler sleeps); other processes still queue on the
    /// busy timeout. PostgreSQL's row locks need no turns.
    pub(crate) writer: Option<Arc<tokio::sync::Mutex<()>>>,
    /// PostgreSQL: how to open another pool, for another tokio runtime.
    reopen: Option<Arc<sqlx::any::AnyConnectOptions>>,
    /// A pool opened by [`State::for_this_runtime`], closed with its runtime's work.
    runtime_pool: bool,
}

/// Passes kept in the run history per pair.
pub const RUNS_KEPT: i64 = 50;
impl State {
    /// Opens (creating if needed) and migrates the SQLite database at `path`.
    pub async fn open(path: &Path) -> StateResult<State> {
        let place = path.display().to_string();
        let err = |what, e: Box<dyn std::error::Error + Send + Sync>| StateError {
            path: place.clone(),
            what,
            source: e,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| err("creating its folder", e.into()))?;
        }
        let (pool, writes) = sqlite::connect(path)
            .await
            .map_err(|(what, e)| err(what, e))?;
        Ok(State {
            pool,
            writes,
            backend: Backend::Sqlite,
            place: place.clone(),
            path: Some(path.to_path_buf()),
            writer: Some(Arc::default()),
            reopen: None,
            runtime_pool: false,
        })
    }

    /// Connects to (and migrates) a PostgreSQL state: `url` without the password, `password`
    /// apart so it is never shown.
    pub async fn connect(url: &str, password: Option<&SecretString>) -> StateResult<State> {
        let err = |what, e: Box<dyn std::error::Error + Send + Sync>| StateError {
            path: url.to_string(),
            what,
            source: e,
        };
        let (pool, options) = postgres::connect(url, password)
            .await
            .map_err(|(what, e)| err(what, e))?;
        Ok(State {
            writes: pool.clone(),
            pool,
            backend: Backend::Postgres,
            place: url.to_string(),
            path: None,
            writer: None,
            reopen: Some(Arc::new(options)),
            runtime_pool: false,
        })
    }

    /// The state for work on another tokio runtime (an agent's), with up to `connections` of
    /// its own: PostgreSQL connections belong to the runtime that opened them, whose reactor
    /// drives their sockets, so each runtime gets a pool; SQLite's connections run on threads of
    /// their own and are shared as they are.
    pub fn for_this_runtime(&self, connections: u32) -> State {
        match &self.reopen {
            None => self.clone(),
            Some(options) => {
                let pool = postgres::pool(options, connections);
                State {
                    writes: pool.clone(),
                    pool,
                    runtime_pool: true,
                    ..self.clone()
                }
            }
        }
    }

    /// Closes a pool opened by [`State::for_this_runtime`] before its runtime ends (a shared
    /// pool stays open).
    pub async fn close_runtime_pool(&self) {
        if self.runtime_pool {
            self.pool.close().await;
        }
    }

    /// Waits for this process's turn to write (SQLite takes one writer at a time; a turn per
    /// process keeps a pass's concurrent writes off its busy handler, which sleeps).
    pub(crate) async fn turn(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match &self.writer {
            Some(w) => Some(w.lock().await),
            None => None,
        }
    }

    /// Where a write outside [`State::write_tx`] goes (see [`State::writes`]).
    pub(crate) fn writes(&self) -> &Pool {
        &self.writes
    }

    /// A write transaction, begun as the backend needs; inside fenced work ([`fenced`]), only
    /// while the writer's leases are still its own.
    pub(crate) async fn write_tx(&self, what: &'static str) -> StateResult<Tx> {
        let mut tx = match self.backend {
            Backend::Sqlite => sqlite::write_tx(&self.writes).await,
            Backend::Postgres => postgres::write_tx(&self.writes).await,
        }
        .map_err(self.err(what))?;
        self.check_fence(&mut tx, what).await?;
        Ok(tx)
    }

    /// `text` in the backend's own spelling ([`rows::statement`]).
    pub(crate) fn sql(&self, text: &str) -> sqlx::AssertSqlSafe<Arc<str>> {
        rows::statement(text, self.backend == Backend::Sqlite)
    }

    /// `hrefs`, or none when `pair` has no rows in `table` at all (the usual case): then there
    /// is nothing to forget, found with a read instead of a write transaction. Only the pair's
    /// lease holder adds its rows, so none appear meanwhile. `table` is a name from this crate.
    pub(crate) async fn to_forget<'h>(
        &self,
        table: &'static str,
        pair: &PairId,
        hrefs: &'h [Href],
    ) -> StateResult<&'h [Href]> {
        if hrefs.is_empty() {
            return Ok(hrefs);
        }
        let any = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT 1 FROM {table} WHERE pair_id = $1 LIMIT 1"
        )))
        .bind(pair.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(self.err("reading what to forget"))?;
        Ok(if any.is_some() { hrefs } else { &[] })
    }

    /// The database's clock (unix ms).
    pub async fn db_now(&self) -> StateResult<i64> {
        sqlx::query_scalar(self.sql("SELECT NOW_MS"))
            .fetch_one(&self.pool)
            .await
            .map_err(self.err("reading the database's clock"))
    }

    /// The database file, for SQLite.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// A stored row that does not read back (a malformed href, ...).
    pub(crate) fn bad_row(
        &self,
        what: &'static str,
        e: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> StateError {
        StateError {
            path: self.place.clone(),
            what,
            source: e.into(),
        }
    }

    pub(crate) fn err(&self, what: &'static str) -> impl FnOnce(sqlx::Error) -> StateError + '_ {
        move |e| StateError {
            path: self.place.clone(),
            what,
            source: e.into(),
        }
    }

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
        self.apply_and_note(pair, put, delete, &[]).await
    }

    /// Records finished writes ([`Self::apply`]) and notes the next ones as pending
    /// ([`Self::add_pendings`]) in one transaction. With nothing to record or note it still
    /// checks the fence: the writes about to go out are still this writer's to make.
    pub async fn apply_and_note(
        &self,
        pair: &PairId,
        put: &[Mapping],
        delete: &[Href],
        pendings: &[Pending],
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
        self.apply_and_note(pair, &[], &[], pendings).await
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

    pub async fn close(&self) {
        self.pool.close().await;
        self.writes.close().await;
    }
}

/// Deletes every row of `pair` in `tables` (names from this crate, never input).
async fn delete_pair_rows(
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

impl State {
    /// Inside `tx`: deletes the rows of `pair` (on `side`, if given) whose `column` of `table` is
    /// one of `hrefs`, in one statement (`table` and `column` are names from this crate, never
    /// input).
    pub(crate) async fn delete_listed(
        &self,
        tx: &mut Tx,
        (table, column): (&'static str, &'static str),
        pair: &PairId,
        side: Option<Side>,
        hrefs: &[Href],
    ) -> Result<(), sqlx::Error> {
        if hrefs.is_empty() {
            return Ok(());
        }
        let json = rows::json(&hrefs.iter().map(|h| [h.as_str()]).collect::<Vec<_>>());
        let text = match side {
            Some(_) => format!(
                "DELETE FROM {table} WHERE pair_id = $1 AND side = $2 \
                 AND {column} IN (SELECT value->>0 FROM JSON_ROWS($3))"
            ),
            None => format!(
                "DELETE FROM {table} WHERE pair_id = $1 \
                 AND {column} IN (SELECT value->>0 FROM JSON_ROWS($2))"
            ),
        };
        let mut q = sqlx::query(self.sql(&text)).bind(pair.as_str());
        if let Some(side) = side {
            q = q.bind(side.as_str());
        }
        q.bind(json.as_str()).execute(&mut **tx).await?;
        Ok(())
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
