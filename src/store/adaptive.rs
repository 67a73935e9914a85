//! How many writes one server gets at once, found while writing: start at one, add one while
//! each step up brings more writes per second, step back and hold when it does not (a server
//! that serialises writes gains nothing from a second one in flight), and halve on 429 or 503.
//! `max_concurrency` stays the ceiling. Every so often the limit probes one step up again, so a
//! server that got faster is noticed.

use std::sync::Mutex;
use std::time::Instant;

use tokio::sync::{Semaphore, SemaphorePermit};

/// A step up must bring this much more throughput to be kept.
const GAIN: f64 = 1.08;
/// Windows held at a limit before probing one step up again.
const HOLD: u32 = 8;

/// The climbing rule, apart from any clock or semaphore (so it can be tested as is).
#[derive(Debug, Clone)]
pub(super) struct Climb {
    limit: usize,
    max: usize,
    /// The limit below and the throughput measured there, while trying one step up.
    below: Option<(usize, f64)>,
    /// Windows measured at the held limit.
    held: u32,
    /// Whether it has tried a step up yet (the first window tries at once).
    probed: bool,
    window_start: Option<Instant>,
    done: u32,
}

impl Climb {
    pub(super) fn new(max: usize) -> Climb {
        Climb {
            limit: 1,
            max: max.max(1),
            below: None,
            held: 0,
            probed: false,
            window_start: None,
            done: 0,
        }
    }

    pub(super) fn limit(&self) -> usize {
        self.limit
    }

    /// A write began at `now` (the first starts the first window).
    pub(super) fn started(&mut self, now: Instant) {
        self.window_start.get_or_insert(now);
    }

    /// A write ended at `now`; `throttled`: the server answered 429 or 503. Returns the new
    /// limit when it changes.
    pub(super) fn ended(&mut self, now: Instant, throttled: bool) -> Option<usize> {
        let before = self.limit;
        if throttled {
            self.limit = (self.limit / 2).max(1);
            self.below = None;
            self.held = 0;
            self.restart(now);
            return (self.limit != before).then_some(self.limit);
        }
        self.done += 1;
        let start = *self.window_start.get_or_insert(now);
        let elapsed = now.duration_since(start).as_secs_f64();
        if self.done < 3 * self.limit as u32 + 3 || elapsed <= 0.0 {
            return None;
        }
        let rate = f64::from(self.done) / elapsed;
        self.restart(now);
        match self.below {
            // Trying one step up: keep it if it paid, else step back and hold.
            Some((lower, lower_rate)) => {
                if rate > lower_rate * GAIN && self.limit < self.max {
                    self.below = Some((self.limit, rate));
                    self.limit += 1;
                } else if rate > lower_rate * GAIN {
                    self.below = None;
                } else {
                    self.limit = lower;
                    self.below = None;
                }
                self.held = 0;
            }
            None => {
                self.held += 1;
                // The first window, or a hold done: probe one step up.
                if (self.held >= HOLD || !self.probed) && self.limit < self.max {
                    self.below = Some((self.limit, rate));
                    self.limit += 1;
                    self.probed = true;
                }
            }
        }
        (self.limit != before).then_some(self.limit)
    }

    fn restart(&mut self, now: Instant) {
        self.window_start = Some(now);
        self.done = 0;
    }
}

/// The writes-in-flight gate of one server.
pub(super) struct WriteLimit {
    slots: Semaphore,
    climb: Mutex<Climb>,
    /// Permits to retire as writes end (the limit fell below what is in flight).
    owed: Mutex<usize>,
    /// A fixed limit: no climbing.
    fixed: bool,
}

impl WriteLimit {
    /// Adaptive, up to `max`.
    pub(super) fn adaptive(max: usize) -> WriteLimit {
        WriteLimit {
            slots: Semaphore::new(1),
            climb: Mutex::new(Climb::new(max)),
            owed: Mutex::new(0),
            fixed: false,
        }
    }

    /// Always `n`.
    pub(super) fn fixed(n: usize) -> WriteLimit {
        let mut climb = Climb::new(n);
        climb.limit = n.max(1);
        WriteLimit {
            slots: Semaphore::new(n.max(1)),
            climb: Mutex::new(climb),
            owed: Mutex::new(0),
            fixed: true,
        }
    }

    pub(super) fn limit(&self) -> usize {
        self.lock().limit()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Climb> {
        self.climb.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for a write slot.
    pub(super) async fn acquire(&self) -> SemaphorePermit<'_> {
        let permit = self
            .slots
            .acquire()
            .await
            .expect("the semaphore is never closed");
        self.lock().started(Instant::now());
        permit
    }

    /// A write holding `permit` ended; `throttled`: 429 or 503.
    pub(super) fn release(&self, permit: SemaphorePermit<'_>, throttled: bool) {
        if self.fixed {
            return;
        }
        let (old, new) = {
            let mut c = self.lock();
            let old = c.limit();
            (old, c.ended(Instant::now(), throttled))
        };
        let mut owed = self.owed.lock().unwrap_or_else(|p| p.into_inner());
        match new {
            Some(n) if n > old => {
                let mut more = n - old;
                let settled = more.min(*owed);
                *owed -= settled;
                more -= settled;
                self.slots.add_permits(more);
            }
            Some(n) => *owed += old - n,
            None => {}
        }
        if *owed > 0 {
            *owed -= 1;
            permit.forget();
        } else {
            drop(permit);
        }
        // Free permits beyond the limit are retired at once, not only as writes end.
        while *owed > 0 && self.slots.forget_permits(1) == 1 {
            *owed -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Drives a climb against a server whose throughput at `c` writes in flight is `rate(c)`:
    /// the limit each write ran under.
    fn settle(max: usize, rate: impl Fn(usize) -> f64, writes: usize) -> Vec<usize> {
        let mut c = Climb::new(max);
        let mut now = Instant::now();
        c.started(now);
        (0..writes)
            .map(|_| {
                let at = c.limit();
                now += Duration::from_secs_f64(1.0 / rate(at));
                c.ended(now, false);
                at
            })
            .collect()
    }

    /// The limit most writes ran under, after the first `skip`.
    fn mostly(path: &[usize], skip: usize) -> usize {
        let mut count = std::collections::BTreeMap::new();
        for l in &path[skip..] {
            *count.entry(*l).or_insert(0) += 1;
        }
        count.into_iter().max_by_key(|(_, n)| *n).unwrap().0
    }

    #[test]
    fn climbs_while_more_in_flight_pays_and_holds_at_the_best() {
        // Throughput grows to 5 in flight, then falls.
        let path = settle(
            16,
            |c| {
                if c <= 5 {
                    10.0 * c as f64
                } else {
                    50.0 - c as f64
                }
            },
            3000,
        );
        assert_eq!(mostly(&path, 500), 5, "{path:?}");
        assert!(path.iter().all(|l| *l <= 6), "{path:?}");
    }

    #[test]
    fn a_server_serialising_writes_stays_at_one() {
        let path = settle(8, |_| 20.0, 2000);
        assert_eq!(mostly(&path, 0), 1);
        assert!(path.iter().all(|l| *l <= 2), "{path:?}");
    }

    #[test]
    fn never_above_the_ceiling_and_halves_when_throttled() {
        let path = settle(4, |c| 10.0 * c as f64, 1000);
        assert!(path.iter().all(|l| *l <= 4), "{path:?}");
        assert_eq!(mostly(&path, 200), 4);
        let mut c = Climb::new(16);
        c.limit = 8;
        assert_eq!(c.ended(Instant::now(), true), Some(4));
        assert_eq!(c.ended(Instant::now(), true), Some(2));
        assert_eq!(c.ended(Instant::now(), true), Some(1));
        assert_eq!(c.ended(Instant::now(), true), None);
    }
}
