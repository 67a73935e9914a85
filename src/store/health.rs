//! Whether a server answers, watched as a whole: fed by the outcome of every request to it, and
//! probed one request at a time while it is down.
//!
//! A server is down once tries at several different calendars have failed at the server's level
//! (no connection, no answer in time, a 5xx but a 503 with Retry-After) with no answer between: one
//! broken calendar answering 500 keeps failing alone while the others succeed. A
//! mailbox-level answer (423, "being moved", a 503 with Retry-After) says the server is up. While
//! down, its pairs wait on it instead of each pausing; probes back off from a second to two
//! minutes, and the first answer (a probe's or a request's) brings it up and wakes them.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Distinct calendars failing in a row that take a server down.
pub(crate) const DOWN_AFTER: usize = 3;
/// The wait before the first probe; each later one waits half as long again, up to the cap.
const FIRST_PROBE: Duration = Duration::from_secs(1);
const PROBE_CAP: Duration = Duration::from_secs(120);

#[derive(Debug, Default)]
pub struct ServerHealth {
    /// The server's name in the config, for the log.
    name: std::sync::OnceLock<String>,
    state: Mutex<Watch>,
    /// Counts the server's returns: a scheduler that saw another value wakes its waiting pairs.
    returns: AtomicU64,
}

#[derive(Debug, Default)]
struct Watch {
    /// Resources whose tries failed at the server's level since its last answer.
    failing: BTreeSet<String>,
    last_error: Option<String>,
    down: Option<Down>,
}

#[derive(Debug, Clone)]
struct Down {
    /// Unix ms.
    since: i64,
    probes: u32,
    next_probe: Instant,
    probing: bool,
}

/// A server's health as status, the page and `/metrics` show it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HealthView {
    /// `up` or `down`.
    pub state: &'static str,
    /// Since when it is down (unix ms).
    pub down_since: Option<i64>,
    pub probes: u32,
    /// Milliseconds until the next probe, while down.
    pub next_probe_in_ms: Option<u64>,
    /// The last server-level failure since its last answer.
    pub last_error: Option<String>,
}

impl ServerHealth {
    /// Names the server in the log (once; later names are ignored).
    pub fn name(&self, name: &str) {
        let _ = self.name.set(name.to_string());
    }

    fn server(&self) -> &str {
        self.name.get().map_or("", String::as_str)
    }

    /// A try got an answer from the server (any status but a server-level failure).
    pub fn answered(&self) {
        let mut w = self.lock();
        w.failing.clear();
        w.last_error = None;
        if w.down.take().is_some() {
            self.returns.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                server = self.server(),
                "server answers again; its waiting pairs are due"
            );
        }
    }

    /// A try at `resource` failed at the server's level.
    pub fn failed(&self, resource: &str, error: &str) {
        let mut w = self.lock();
        w.failing.insert(resource.to_string());
        w.last_error = Some(error.to_string());
        if w.down.is_none() && w.failing.len() >= DOWN_AFTER {
            tracing::warn!(
                server = self.server(),
                error,
                "server down: its pairs wait for it to answer a probe"
            );
            w.down = Some(Down {
                since: crate::domain::time::now_ms(),
                probes: 0,
                next_probe: Instant::now() + FIRST_PROBE,
                probing: false,
            });
        }
    }

    pub fn is_down(&self) -> bool {
        self.lock().down.is_some()
    }

    /// How many times the server came back; a change says waiting pairs are due.
    pub fn returns(&self) -> u64 {
        self.returns.load(Ordering::Relaxed)
    }

    /// Whether the caller may probe now: the server is down, its probe time has come and no
    /// other probe is in flight. A `true` must be followed by [`Self::probed`].
    pub fn claim_probe(&self, now: Instant) -> bool {
        let mut w = self.lock();
        match &mut w.down {
            Some(d) if !d.probing && now >= d.next_probe => {
                d.probing = true;
                true
            }
            _ => false,
        }
    }

    /// A claimed probe's outcome: an answer brings the server up; no answer puts the next probe
    /// further off.
    pub fn probed(&self, answered: bool, error: Option<&str>) {
        if answered {
            return self.answered();
        }
        let mut w = self.lock();
        if let Some(e) = error {
            w.last_error = Some(e.to_string());
        }
        if let Some(d) = &mut w.down {
            d.probing = false;
            d.probes += 1;
            d.next_probe = Instant::now() + probe_wait(d.probes);
        }
    }

    pub fn view(&self) -> HealthView {
        let w = self.lock();
        let now = Instant::now();
        HealthView {
            state: if w.down.is_some() { "down" } else { "up" },
            down_since: w.down.as_ref().map(|d| d.since),
            probes: w.down.as_ref().map_or(0, |d| d.probes),
            next_probe_in_ms: w
                .down
                .as_ref()
                .map(|d| d.next_probe.saturating_duration_since(now).as_millis() as u64),
            last_error: w.last_error.clone(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Watch> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The resource a request counts against: its collection (a calendar, not each item in it).
pub(crate) fn resource_of(path: &str) -> &str {
    match path.strip_suffix('/') {
        Some(_) => path,
        None => path.rfind('/').map_or(path, |i| &path[..=i]),
    }
}

/// The wait after the `n`th failed probe: 1.5^n seconds, capped, with ±10% jitter.
fn probe_wait(n: u32) -> Duration {
    let base = FIRST_PROBE
        .mul_f64(1.5f64.powi(n.min(20) as i32))
        .min(PROBE_CAP);
    base.mul_f64(0.9 + 0.2 * fastrand::f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_resources_failing_take_it_down_and_an_answer_brings_it_back() {
        let h = ServerHealth::default();
        // One resource failing again and again is that resource's trouble.
        for _ in 0..10 {
            h.failed("/cal/a/", "500");
        }
        assert!(!h.is_down());
        h.failed("/cal/b/", "refused");
        h.answered();
        h.failed("/cal/c/", "refused");
        assert!(!h.is_down(), "an answer in between starts the count again");
        h.failed("/cal/d/", "refused");
        h.failed("/cal/e/", "no answer");
        assert!(h.is_down());
        assert_eq!(h.view().state, "down");
        assert_eq!(h.view().last_error.as_deref(), Some("no answer"));
        let before = h.returns();
        h.answered();
        assert!(!h.is_down());
        assert_eq!(h.returns(), before + 1);
        // Answers while up are not returns.
        h.answered();
        assert_eq!(h.returns(), before + 1);
    }

    #[test]
    fn items_count_as_their_calendar() {
        assert_eq!(resource_of("/u/cal/1.ics"), "/u/cal/");
        assert_eq!(resource_of("/u/cal/"), "/u/cal/");
        assert_eq!(resource_of("/"), "/");
        let h = ServerHealth::default();
        for n in 0..5 {
            h.failed(resource_of(&format!("/u/cal/{n}.ics")), "500");
        }
        assert!(
            !h.is_down(),
            "one calendar's items failing is that calendar's trouble"
        );
    }

    #[test]
    fn one_probe_at_a_time_backing_off() {
        let h = ServerHealth::default();
        for r in ["/a", "/b", "/c"] {
            h.failed(r, "refused");
        }
        let t0 = Instant::now();
        assert!(!h.claim_probe(t0), "the first probe waits a second");
        let later = t0 + Duration::from_secs(2);
        assert!(h.claim_probe(later));
        assert!(!h.claim_probe(later), "one probe in flight");
        h.probed(false, Some("refused"));
        assert_eq!(h.view().probes, 1);
        assert!(!h.claim_probe(Instant::now()), "the next probe is put off");
        assert!(h.claim_probe(Instant::now() + Duration::from_secs(2)));
        h.probed(true, None);
        assert!(!h.is_down());
        assert!(!h.claim_probe(Instant::now() + Duration::from_secs(600)));
    }

    #[test]
    fn probes_back_off_from_seconds_to_minutes() {
        let waits: Vec<u64> = (0..16).map(|n| probe_wait(n).as_millis() as u64).collect();
        assert!((900..=1100).contains(&waits[0]), "{waits:?}");
        assert!(waits[4] > 4_000 && waits[4] < 6_000, "{waits:?}");
        assert!(waits[15] <= 132_000 && waits[15] >= 108_000, "{waits:?}");
    }
}
