//! Time as tandem keeps it (unix milliseconds) and as operators read it.

use std::time::{SystemTime, UNIX_EPOCH};

/// An hour in milliseconds: the span of the failed-request percentage.
pub const HOUR_MS: i64 = 3_600_000;

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Unix milliseconds as `YYYY-MM-DD HH:MM:SS UTC` (the number itself if out of range).
pub fn utc(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(
        || ms.to_string(),
        |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
    )
}
