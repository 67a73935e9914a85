//! The state's connection: opening SQLite or PostgreSQL, the write transaction and its turn,
//! statements in the backend's spelling, and errors that name where the state is.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use secrecy::SecretString;

use crate::domain::mapping::Side;
use crate::domain::types::{Href, PairId};

use super::sql::{Pool, Tx};
use super::{postgres, rows, sqlite};

/// Which database holds the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, thiserror::Error)]
#[error("state store {path}: {what}: {source}")]
pub struct StateError {
    pub(super) path: String,
    pub(super) what: &'static str,
    #[source]
    pub(super) source: Box<dyn std::error::Error + Send + Sync>,
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
    pub(super) place: String,
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

    pub async fn close(&self) {
        self.pool.close().await;
        self.writes.close().await;
    }
}
