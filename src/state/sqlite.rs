//! The SQLite backend: how a database file is opened (WAL, foreign keys, busy timeout), migrated
//! and written. Everything SQLite-specific of the state store is here; the statements in the
//! other files use `$N` placeholders and SQL that PostgreSQL reads alike.

use std::path::Path;

use sqlx::ConnectOptions;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};

use super::sql::{Failure, Pool, Tx};

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// The database's clock in unix ms (SQL).
pub(super) const NOW_MS: &str = "CAST(unixepoch('subsec') * 1000 AS INTEGER)";

/// Set on every connection: several processes (sync, repair, an operator's `lock`) share one
/// file, and writers queue on the busy timeout.
const PRAGMAS: &str = "PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL; \
                       PRAGMA busy_timeout = 30000;";

/// Opens (creating if needed) and migrates the database file at `path`: a pool to read and
/// one to write.
pub(super) async fn connect(path: &Path) -> Result<(Pool, Pool), Failure> {
    sqlx::any::install_default_drivers();
    let url = AnyConnectOptions::from_url(&url_of(path).map_err(|e| ("naming", e.into()))?)
        .map_err(|e| ("naming", e.into()))?;
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
    let pool = |size| {
        // A connection to a local file does not go stale while idle: no test on each acquire
        // (a round trip to its worker thread; sqlx still tests each connection as it is
        // released).
        AnyPoolOptions::new()
            .max_connections(size)
            .test_before_acquire(false)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    sqlx::raw_sql(PRAGMAS).execute(conn).await?;
                    Ok(())
                })
            })
            .connect_with(url.clone())
    };
    // SQLite writes one transaction at a time: one connection writes, so its page cache stays
    // warm, and three read beside it.
    let writes = pool(1).await.map_err(|e| ("opening", e.into()))?;
    let wal = sqlx::raw_sql("PRAGMA journal_mode = WAL")
        .execute(&writes)
        .await
        .map_err(|e| ("switching to WAL", e.into()));
    let migrated = match wal {
        Ok(_) => MIGRATOR
            .run(&writes)
            .await
            .map_err(|e| ("migrating", e.into())),
        Err(e) => Err(e),
    };
    drop(lock);
    migrated?;
    let reads = pool(3).await.map_err(|e| ("opening", e.into()))?;
    Ok((reads, writes))
}

/// `sqlite://PATH?mode=rwc` with the path percent-encoded.
fn url_of(path: &Path) -> Result<url::Url, String> {
    let absolute = std::path::absolute(path).map_err(|e| e.to_string())?;
    let mut url = url::Url::from_file_path(&absolute)
        .map_err(|()| format!("{} is not a usable file path", absolute.display()))?;
    url.set_query(Some("mode=rwc"));
    let text = url.as_str().replacen("file://", "sqlite://", 1);
    url::Url::parse(&text).map_err(|e| e.to_string())
}

/// A write transaction that takes SQLite's write lock up front (`BEGIN IMMEDIATE`), so two
/// writers queue on the busy timeout instead of failing on a read-to-write lock upgrade.
pub(super) async fn write_tx(pool: &Pool) -> Result<Tx, sqlx::Error> {
    pool.begin_with("BEGIN IMMEDIATE").await
}
