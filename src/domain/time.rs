//! Time as operators read it.

/// Unix milliseconds as `YYYY-MM-DD HH:MM:SS UTC` (the number itself if out of range).
pub fn utc(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(
        || ms.to_string(),
        |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
    )
}
