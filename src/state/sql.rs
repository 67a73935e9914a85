//! The types of sqlx's runtime-chosen driver every statement of the state runs through.

/// The statements run through sqlx's runtime-chosen driver: one code path for both backends,
/// whose values are the integers, text and booleans both read alike.
pub(crate) type Pool = sqlx::AnyPool;
pub(crate) type DbRow = sqlx::any::AnyRow;
pub(crate) type Tx = sqlx::Transaction<'static, sqlx::Any>;
pub(crate) type Failure = (&'static str, Box<dyn std::error::Error + Send + Sync>);
