//! The SQLite backend: how a database file is opened (WAL, foreign keys, busy timeout), migrated
//! and written. Everything SQLite-specific of the state store is here; the statements in the
//! other files use `$N` placeholders and SQL that PostgreSQL reads alike.

use std::path::Path;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

pub type Pool = sqlx::SqlitePool;
pub type DbRow = sqlx::sqlite::SqliteRow;
pub type Tx = sqlx::Transaction<'static, sqlx::Sqlite>;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

type Failure = (&'static str, Box<dyn std::error::Error + Send + Sync>);

/// Opens (creating if needed) and migrates the database file at `path`.
pub async fn connect(path: &Path) -> Result<Pool, Failure> {
    let opts = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        // Several processes (sync, repair, an operator's `lock`) share one file.
        .busy_timeout(Duration::from_secs(30));
    // Processes opening the database at once take turns on a lock file beside it: two must not
    // both apply its migrations (SQLite gives sqlx no migration lock), and switching a new
    // file to WAL answers "database is locked" at once instead of waiting.
    let lock_path = path.with_extension("migrate.lock");
    let lock = tokio::task::spawn_blocking(move || {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)?;
        f.lock()?;
        Ok::<_, std::io::Error>(f)
    })
    .await
    .map_err(|e| ("taking turns with another process opening it", e.into()))?
    .map_err(|e| ("taking turns with another process opening it", e.into()))?;
    let pool = SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(opts)
        .await
        .map_err(|e| ("opening", e.into()))?;
    let migrated = MIGRATOR.run(&pool).await;
    drop(lock);
    migrated.map_err(|e| ("migrating", e.into()))?;
    Ok(pool)
}

/// A write transaction that takes SQLite's write lock up front (`BEGIN IMMEDIATE`), so two
/// writers queue on the busy timeout instead of failing on a read-to-write lock upgrade.
pub async fn write_tx(pool: &Pool) -> Result<Tx, sqlx::Error> {
    pool.begin_with("BEGIN IMMEDIATE").await
}
