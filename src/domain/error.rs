//! Errors a calendar store reports, with a kind the engine branches on.
//!
//! The kinds follow what CalDAV servers answer (RFC 4791, RFC 6578): a 412 is "changed underneath,
//! re-plan", a 423 or a "mailbox being moved" answer pauses the pair, 429/503 carry Retry-After.

use std::fmt;
use std::time::Duration;

/// What went wrong, as far as the engine needs to know to decide what to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The calendar or item does not exist.
    NotFound,
    /// `If-Match` / `If-None-Match` did not hold: the item changed (or exists) underneath us.
    PreconditionFailed,
    /// The mailbox is locked or being moved; retry after the given time if known.
    Moving { retry_after: Option<Duration> },
    /// The server asks us to slow down.
    Throttled { retry_after: Option<Duration> },
    /// Network failure, timeout, 5xx: worth retrying soon.
    Transient,
    /// Credentials refused (401/403).
    Unauthorized,
    /// The data is not a calendar item we can handle (unparseable, wrong shape).
    InvalidData,
    /// Anything else that retrying will not fix (the server rejected the item, ...).
    Permanent,
    /// The server holds the item back until another write lands: a scheduling server that
    /// wants the organizer's copy before an attendee's, or that filed its own copy for the next
    /// pass to take over. Nothing was written; the item is read again next pass.
    Waiting,
}

impl ErrorKind {
    /// Retrying the same request later may succeed.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorKind::Moving { .. } | ErrorKind::Throttled { .. } | ErrorKind::Transient
        )
    }

    /// Retrying will not help until the data or the configuration changes (poison candidates).
    pub fn is_permanent(self) -> bool {
        matches!(self, ErrorKind::InvalidData | ErrorKind::Permanent)
    }

    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not-found",
            ErrorKind::PreconditionFailed => "precondition-failed",
            ErrorKind::Moving { .. } => "moving",
            ErrorKind::Throttled { .. } => "throttled",
            ErrorKind::Transient => "transient",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::InvalidData => "invalid-data",
            ErrorKind::Permanent => "permanent",
            ErrorKind::Waiting => "waiting",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A store error: a kind to branch on and a message for the operator.
///
/// Messages name the calendar or href involved and never contain credentials.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct StoreError {
    pub kind: ErrorKind,
    pub message: String,
}

impl StoreError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        StoreError {
            kind,
            message: bounded(&message.into(), MAX_REASON),
        }
    }

    pub fn io(context: impl fmt::Display, err: std::io::Error) -> Self {
        let kind = match err.kind() {
            std::io::ErrorKind::NotFound => ErrorKind::NotFound,
            std::io::ErrorKind::AlreadyExists => ErrorKind::PreconditionFailed,
            std::io::ErrorKind::PermissionDenied => ErrorKind::Unauthorized,
            std::io::ErrorKind::InvalidData => ErrorKind::InvalidData,
            _ => ErrorKind::Transient,
        };
        StoreError::new(kind, format!("{context}: {err}"))
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// The longest reason tandem keeps or shows (reports, `--json`, the quarantine, the state
/// database, pages, logs): a server or an item can put a megabyte line into an error.
pub const MAX_REASON: usize = 1_000;

/// `text` as one printable line of at most about `max` bytes: control characters escaped (a
/// forged log line or a terminal escape stays visible as `\n`, `\u{1b}`), the rest cut with a
/// note of how much was left out.
pub fn bounded(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max) + 32);
    for (i, c) in text.char_indices() {
        if out.len() >= max {
            out.push_str(&format!("… ({} more bytes)", text.len() - i));
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_say_whether_to_retry_or_quarantine() {
        let later = Some(Duration::from_secs(30));
        for k in [
            ErrorKind::Moving { retry_after: later },
            ErrorKind::Throttled { retry_after: None },
            ErrorKind::Transient,
        ] {
            assert!(k.is_retryable() && !k.is_permanent(), "{k}");
        }
        for k in [ErrorKind::InvalidData, ErrorKind::Permanent] {
            assert!(k.is_permanent() && !k.is_retryable(), "{k}");
        }
        for k in [
            ErrorKind::NotFound,
            ErrorKind::PreconditionFailed,
            ErrorKind::Unauthorized,
            ErrorKind::Waiting,
        ] {
            assert!(!k.is_permanent() && !k.is_retryable(), "{k}");
        }
        let io = StoreError::io(
            "x.ics",
            std::io::Error::from(std::io::ErrorKind::AlreadyExists),
        );
        assert_eq!(io.kind, ErrorKind::PreconditionFailed);
        assert!(io.to_string().starts_with("x.ics: "));
    }

    #[test]
    fn reasons_are_one_bounded_line() {
        assert_eq!(bounded("a\nb\u{1b}[31mc\td", 100), "a\\nb\\u{1b}[31mc\\td");
        let long = format!("line: {}", "é".repeat(5_000));
        let cut = bounded(&long, 100);
        assert!(cut.len() < 140 && cut.ends_with("more bytes)"), "{cut}");
        assert!(cut.starts_with("line: éé"));
        let err = StoreError::new(ErrorKind::InvalidData, "x".repeat(1 << 20));
        assert!(err.message.len() < MAX_REASON + 40);
    }
}
