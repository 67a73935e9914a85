//! What the configuration is when it does not say.

use std::time::Duration;

pub(crate) const DEFAULT_STATE_URL: &str = "sqlite://tandem.db";
pub(crate) const DEFAULT_LISTEN: &str = "127.0.0.1:8686";
/// Pairs `/metrics` gives series of their own: about 15 series each.
pub(crate) const DEFAULT_METRICS_PAIRS: usize = 1000;
/// Per HTTP request to a caldav server, unless its `timeout` says otherwise.
pub(crate) const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// `max_answer_size` when a server sets none: far above a listing of 100,000 items or a multiget
/// of 100 items with attachments, far below what would strain the machine.
pub(crate) const DEFAULT_MAX_ANSWER: usize = 64 << 20;

/// A size as written in the config: bytes, or a number with a unit (`64 MiB`, `500kB`).
pub(super) fn byte_size(text: &str) -> Option<usize> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let unit: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        _ => return None,
    };
    number.parse::<usize>().ok()?.checked_mul(unit)
}

pub(crate) const DEFAULT_PAUSE: Duration = Duration::from_secs(300);
pub(crate) const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(1800);
/// Polling of push-driven pairs, in case a push is lost.
pub(crate) const DEFAULT_SAFETY_INTERVAL: Duration = Duration::from_secs(3600);
/// What a push subscription is asked for (renewed at half).
pub(crate) const DEFAULT_PUSH_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);
pub(crate) const DEFAULT_PASSES_PER_AGENT: usize = 8;
/// How often the service looks for calendars added to or removed from a mailbox.
pub(crate) const DEFAULT_DISCOVER_INTERVAL: Duration = Duration::from_secs(3600);
/// A vdir server's home of a user: the folder named after the user.
pub(crate) const VDIR_HOME: &str = "/{user}/";

/// Number of processors this process may run on.
pub fn online_processors() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}
