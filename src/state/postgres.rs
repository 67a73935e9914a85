//! The PostgreSQL backend, for several nodes sharing one state: how the database is reached
//! (the password read from where the config says, never from the URL), bounded (every statement
//! and lock wait has a timeout, so a lost database never hangs a node) and migrated (its own
//! migrations; the migrator's advisory lock lets nodes start together).

use std::time::Duration;

use secrecy::ExposeSecret;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{ConnectOptions, Connection};

use super::sql::{Failure, Pool, Tx};

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// The database's clock in unix ms (SQL): the time of the statement, not of its transaction,
/// truncated like the process's own clock (a cast alone rounds, half a millisecond ahead).
pub(super) const NOW_MS: &str =
    "CAST(FLOOR(EXTRACT(EPOCH FROM clock_timestamp()) * 1000) AS BIGINT)";

/// The longest a statement or a lock wait may take before it fails (and the call with it).
pub(super) const STATEMENT_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest a connection may take to open or be handed out.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects to `url` (with `password` if given) and migrates the database; returns the pool and
/// the options to open more pools with (one per tokio runtime, see [`pool`]).
pub(super) async fn connect(
    url: &str,
    password: Option<&secrecy::SecretString>,
) -> Result<(Pool, AnyConnectOptions), Failure> {
    sqlx::any::install_default_drivers();
    let mut parsed = url::Url::parse(url).map_err(|e| ("reading its URL", e.into()))?;
    if let Some(p) = password {
        parsed
            .set_password(Some(p.expose_secret()))
            .map_err(|()| ("reading its URL", "the URL cannot take a password".into()))?;
    }
    let options =
        AnyConnectOptions::from_url(&parsed).map_err(|e| ("reading its URL", e.into()))?;
    // One connection first, so a refused connection or a wrong password is named as such
    // rather than as a pool that timed out.
    let first = tokio::time::timeout(CONNECT_TIMEOUT, sqlx::AnyConnection::connect_with(&options))
        .await
        .map_err(|_| ("connecting", "no answer within 10 s".into()))?
        .map_err(|e| ("connecting", e.into()))?;
    first.close().await.map_err(|e| ("connecting", e.into()))?;
    let pool = pool(&options, 8);
    MIGRATOR
        .run(&pool)
        .await
        .map_err(|e| ("migrating", e.into()))?;
    Ok((pool, options))
}

/// A pool of up to `size` connections, each with the statement and lock timeouts. Its
/// connections belong to the tokio runtime that opens them (its reactor drives their sockets):
/// a runtime of its own (an agent's) opens a pool of its own.
pub(super) fn pool(options: &AnyConnectOptions, size: u32) -> Pool {
    let settings = format!(
        "SET statement_timeout = {ms}; SET lock_timeout = {ms}; \
         SET idle_in_transaction_session_timeout = {ms}",
        ms = STATEMENT_TIMEOUT.as_millis()
    );
    AnyPoolOptions::new()
        .max_connections(size)
        .acquire_timeout(CONNECT_TIMEOUT)
        .after_connect(move |conn, _| {
            let settings = settings.clone();
            Box::pin(async move {
                sqlx::raw_sql(sqlx::AssertSqlSafe(settings))
                    .execute(conn)
                    .await?;
                Ok(())
            })
        })
        .connect_lazy_with(options.clone())
}

/// A write transaction: PostgreSQL's row locks order concurrent writers by themselves.
pub(super) async fn write_tx(pool: &Pool) -> Result<Tx, sqlx::Error> {
    pool.begin().await
}
