//! One agent's scheduler: which of its pairs is due, running it, and what its state becomes.
//!
//! Every pair has a next-due time. A pass that succeeds schedules the next one an interval later
//! (with jitter below it, so pairs do not fire together); a moving or locked mailbox pauses the pair until
//! the server's Retry-After (or `[sync] pause`); other failures back off exponentially up to
//! `[sync] backoff_max` and keep retrying. Nothing here ever stops a pair: only an operator
//! disables one. `step` runs the next due pair and says what happened; the service loop and the
//! tests share it.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use crate::config::Config;
use crate::domain::error::ErrorKind;
use crate::domain::pair::Pair;
use crate::domain::pairstate::PairState;
use crate::domain::types::PairId;
use crate::engine::report::PairReport;
use crate::engine::{Engine, PassOptions};
use crate::service::nodes::Membership;
use crate::service::push::PushHub;
use crate::service::servers::{Gate, ServerWaits};
use crate::state::{Peek, StateError};

/// How pair states move.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub interval: Duration,
    /// A moving or locked mailbox waits this long when the server gives no Retry-After.
    pub pause: Duration,
    /// The first backoff wait; it doubles with each failure.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Spread of the interval, as a fraction taken off it (0.1: passes 90% to 100% of the
    /// interval apart), so pairs do not fire together and none waits longer than the interval.
    pub jitter: f64,
    /// The interval of a pair whose calendars both push their changes.
    pub safety_interval: Duration,
}

impl Policy {
    pub fn from_config(config: &Config) -> Policy {
        Policy {
            interval: config.sync.interval,
            pause: config.sync.pause,
            backoff_base: config
                .sync
                .interval
                .clamp(Duration::from_secs(1), Duration::from_secs(60)),
            backoff_max: config.sync.backoff_max,
            jitter: 0.1,
            safety_interval: config.sync.safety_interval,
        }
    }

    /// How often a pair is polled; `pushed`: its calendars push their changes.
    pub(crate) fn poll_every(&self, pushed: bool) -> Duration {
        match pushed {
            true => self.safety_interval.max(self.interval),
            false => self.interval,
        }
    }

    /// The interval with jitter, in ms; `pushed`: the pair's calendars push their changes.
    fn next_interval(&self, pushed: bool) -> i64 {
        let ms = self.poll_every(pushed).as_millis() as f64;
        (ms * (1.0 - self.jitter * fastrand::f64())).max(0.0) as i64
    }
}

/// The state a pass leaves its pair in.
pub(crate) fn next_state(
    prev: &PairState,
    report: &PairReport,
    now_ms: i64,
    policy: &Policy,
) -> PairState {
    let Some(error) = &report.error else {
        return PairState::Active;
    };
    let ms = |d: Duration| d.as_millis() as i64;
    match report.error_kind {
        Some(ErrorKind::Moving { retry_after } | ErrorKind::Throttled { retry_after }) => {
            PairState::Paused {
                reason: error.clone(),
                until: now_ms + ms(retry_after.unwrap_or(policy.pause)),
            }
        }
        _ => {
            let failures = prev.failures().saturating_add(1);
            let wait = policy
                .backoff_base
                .saturating_mul(1u32 << (failures - 1).min(20))
                .min(policy.backoff_max);
            PairState::Backoff {
                reason: error.clone(),
                failures,
                until: now_ms + ms(wait),
            }
        }
    }
}

/// What one step did.
#[derive(Debug, Clone)]
pub struct StepOutcome {
    pub pair: PairId,
    pub agent: usize,
    /// The pass's report; `None` if the pair was not run (disabled, or paused by someone else).
    pub report: Option<PairReport>,
    pub state: PairState,
    /// When the pair is due next (unix ms).
    pub next_run: i64,
    /// `false`: not a pass (another node's pair, or none's yet; or a probe of the pair's
    /// server, which is down); `state` was not read.
    pub held: bool,
}

/// A push makes its pair due this much later, so a burst of pushes makes one pass.
const PUSH_SETTLE: Duration = Duration::from_millis(250);

/// How soon a pair another node holds, or one waiting on its server, is looked at again
/// (claims move every few seconds; a server's return wakes its pairs at once anyway).
const RECHECK: Duration = Duration::from_secs(1);

/// One agent's pairs and when each is due.
pub struct Scheduler {
    agent: usize,
    engine: Arc<Engine>,
    policy: Policy,
    pairs: Vec<Pair>,
    next: Vec<i64>,
    queue: BTreeSet<(i64, usize)>,
    running: HashSet<usize>,
    /// Which of its pairs this node may start now.
    membership: Arc<Membership>,
    /// Pairs waiting on a server that is down.
    waits: ServerWaits,
    /// Pairs due because their server answers again: a pause or backoff it caused is over.
    woken: HashSet<usize>,
    /// Where pushes for this agent's pairs land, and which pairs are push-driven.
    push: Option<Arc<PushHub>>,
    /// Pairs pushed while their pass ran: due again when it ends.
    pushed_again: HashSet<usize>,
    /// Pairs made due by a push: their next pass's changes were announced.
    by_push: HashSet<usize>,
    /// Pairs that passed since this start, and those whose last pass left items failed.
    passed: HashSet<usize>,
    left_failures: HashSet<usize>,
}

impl Scheduler {
    /// Schedules `pairs`: a pair never synced is due at once, a paused or backing-off one at its
    /// `until`, the rest spread over one interval.
    pub async fn new(
        agent: usize,
        engine: Arc<Engine>,
        pairs: Vec<Pair>,
        policy: Policy,
        now_ms: i64,
    ) -> Result<Scheduler, StateError> {
        let states = engine.state.pair_states().await?;
        let synced = engine.state.synced_pairs().await?;
        let interval = policy.interval.as_millis().max(1) as i64;
        let waits = ServerWaits::new(&engine, &pairs);
        let mut s = Scheduler {
            agent,
            engine,
            policy,
            waits,
            woken: HashSet::new(),
            next: vec![0; pairs.len()],
            pairs,
            queue: BTreeSet::new(),
            running: HashSet::new(),
            membership: Membership::everything(),
            push: None,
            pushed_again: HashSet::new(),
            by_push: HashSet::new(),
            passed: HashSet::new(),
            left_failures: HashSet::new(),
        };
        for i in 0..s.pairs.len() {
            let id = s.pairs[i].id.as_str();
            let at = match states.get(id).and_then(|st| st.state.until()) {
                Some(until) => until.max(now_ms),
                None if !synced.contains(id) => now_ms,
                None => now_ms + (fastrand::f64() * interval as f64) as i64,
            };
            s.schedule(i, at);
        }
        Ok(s)
    }

    /// Starts only the pairs `membership` holds (a node among others); without it, every pair.
    pub(crate) fn member_of(&mut self, membership: Arc<Membership>) {
        self.membership = membership;
    }

    /// Pairs are made due by pushes landing in `hub`, and polled at the safety interval while
    /// push-driven.
    pub(crate) fn pushed_by(&mut self, hub: Arc<PushHub>) {
        self.push = Some(hub);
    }

    pub fn agent(&self) -> usize {
        self.agent
    }

    pub fn pairs(&self) -> &[Pair] {
        &self.pairs
    }

    fn schedule(&mut self, i: usize, at: i64) {
        self.queue.remove(&(self.next[i], i));
        self.next[i] = at;
        self.queue.insert((at, i));
    }

    /// The earliest due time of a pair not running now.
    pub(crate) fn next_due(&self) -> Option<i64> {
        self.queue.first().map(|(at, _)| *at)
    }

    /// Takes the next pair due at `now_ms`, if any; it is not handed out again until `finish`.
    /// Pairs this node does not hold now, and pairs on a server that is down, are put off a
    /// little, unread (one of the latter may be taken to probe the server instead).
    pub(crate) fn take_due(&mut self, now_ms: i64) -> Option<usize> {
        for (i, at) in self.waits.woken(now_ms) {
            if !self.running.contains(&i) {
                self.woken.insert(i);
                self.schedule(i, at.min(self.next[i]));
            }
        }
        let settled = now_ms + PUSH_SETTLE.as_millis() as i64;
        for i in self
            .push
            .as_ref()
            .map_or_else(Vec::new, |h| h.take(self.agent))
        {
            if i >= self.pairs.len() {
                continue;
            }
            if self.running.contains(&i) {
                self.pushed_again.insert(i);
            } else {
                self.by_push.insert(i);
                self.schedule(i, settled.min(self.next[i]));
            }
        }
        loop {
            let &(at, i) = self.queue.first()?;
            if at > now_ms {
                return None;
            }
            self.queue.remove(&(at, i));
            let held = self.membership.holds(self.pairs[i].id.as_str());
            if !held || self.waits.gate(i) == Gate::Wait {
                let later = now_ms + RECHECK.as_millis() as i64;
                self.next[i] = later;
                self.queue.insert((later, i));
                continue;
            }
            self.running.insert(i);
            return Some(i);
        }
    }

    /// Reschedules a pair after its step.
    pub fn finish(&mut self, i: usize, outcome: &StepOutcome) {
        let ran = outcome.report.as_ref().map(|r| match &r.error {
            Some(_) => r.error_kind.or(Some(ErrorKind::Permanent)),
            None => None,
        });
        self.waits.finished(i, ran);
        if outcome.held {
            self.woken.remove(&i);
        }
        let now = crate::domain::time::now_ms();
        let mut next = match self.waits.held_up(i) {
            true => outcome.next_run.min(now + RECHECK.as_millis() as i64),
            false => outcome.next_run,
        };
        self.check_pushes(i, outcome);
        if self.pushed_again.remove(&i) {
            self.by_push.insert(i);
            next = next.min(now + PUSH_SETTLE.as_millis() as i64);
        }
        self.running.remove(&i);
        self.queue.insert((next, i));
        self.next[i] = next;
    }

    /// A poll of a push-driven pair that wrote something no push announced (not its first pass
    /// since start, nor a retry of failed items) means pushes are being lost: the pair is polled
    /// every interval until a push for it arrives, and the log says so.
    fn check_pushes(&mut self, i: usize, outcome: &StepOutcome) {
        // Not a pass (a probe, another node's pair): the push still awaits its pass.
        let Some(r) = &outcome.report else {
            return;
        };
        let announced = self.by_push.remove(&i);
        let Some(hub) = &self.push else {
            return;
        };
        let first = self.passed.insert(i);
        if first {
            hub.first_pass_done();
        }
        let retried = self.left_failures.contains(&i) || r.failed > 0;
        match r.failed > 0 || r.error.is_some() {
            true => self.left_failures.insert(i),
            false => self.left_failures.remove(&i),
        };
        let pair = self.pairs[i].id.as_str();
        let wrote = r.created + r.updated + r.deleted > 0;
        if wrote && !first && !announced && !retried && hub.is_driven(pair) && hub.doubt(pair) {
            warn!(pair = %pair, agent = self.agent, "a poll found changes no push announced: pushes for this pair are being lost (is public_url reachable from the server, with a certificate it trusts?); polling it every interval until a push arrives");
        }
    }

    /// A future running pair `i` (for the service loop, which runs several at once). A pair
    /// this node does not hold now is looked at again a little later, without reading anything.
    /// `peek` is what the state held of the pair when it was taken, if read already.
    pub fn run(
        &self,
        i: usize,
        now_ms: i64,
        peek: Option<Peek>,
    ) -> impl Future<Output = Result<StepOutcome, StateError>> + use<> {
        let (engine, pair, policy, agent) = (
            self.engine.clone(),
            self.pairs[i].clone(),
            self.policy,
            self.agent,
        );
        let membership = self.membership.clone();
        let probe = self.waits.probe(i);
        let woken = self.woken.contains(&i);
        let pushed = self
            .push
            .as_ref()
            .is_some_and(|h| h.is_driven(self.pairs[i].id.as_str()));
        async move {
            // Not a pass: a probe of its server (which is down), or another node's pair.
            let probed = match probe {
                Some(probe) => {
                    probe.await;
                    true
                }
                None => false,
            };
            if probed || !membership.start(pair.id.as_str()) {
                return Ok(StepOutcome {
                    pair: pair.id,
                    agent,
                    report: None,
                    state: PairState::Active,
                    next_run: now_ms + RECHECK.as_millis() as i64,
                    held: false,
                });
            }
            let turn = Turn {
                agent,
                now_ms,
                woken,
                pushed,
                peek,
            };
            let outcome = run_pair(engine, pair.clone(), policy, turn).await;
            membership.done(pair.id.as_str());
            outcome
        }
    }

    /// Runs the next pair due at `now_ms` and says what happened; `None` if none is due.
    pub async fn step(&mut self, now_ms: i64) -> Result<Option<StepOutcome>, StateError> {
        let Some(i) = self.take_due(now_ms) else {
            return Ok(None);
        };
        let outcome = self.run(i, now_ms, None).await;
        match outcome {
            Ok(o) => {
                self.finish(i, &o);
                Ok(Some(o))
            }
            Err(e) => {
                // The state store failed: try this pair again after an interval.
                let again = now_ms + self.policy.interval.as_millis() as i64;
                self.running.remove(&i);
                self.schedule(i, again);
                Err(e)
            }
        }
    }
}

/// What a pair's turn is run with.
#[derive(Debug, Clone)]
struct Turn {
    agent: usize,
    now_ms: i64,
    /// Its server answers again, so a pause or backoff that server caused is over.
    woken: bool,
    /// Its calendars push their changes: the next poll is a safety interval away.
    pushed: bool,
    /// The state of the pair as read with others due at the same time, if it was.
    peek: Option<Peek>,
}

/// One pair's turn: skip it if disabled (or paused by another process), else pass and move its
/// state.
async fn run_pair(
    engine: Arc<Engine>,
    pair: Pair,
    policy: Policy,
    turn: Turn,
) -> Result<StepOutcome, StateError> {
    let Turn {
        agent,
        now_ms,
        woken,
        pushed,
        peek,
    } = turn;
    // One read of the state: the pair's service state and how its pass starts.
    let peek = match peek {
        Some(peek) => peek,
        None => engine.peek(&pair).await?,
    };
    let prev = peek.state.state.clone();
    let not_run = |state: PairState, next_run: i64| StepOutcome {
        pair: pair.id.clone(),
        agent,
        report: None,
        state,
        next_run,
        held: true,
    };
    match &prev {
        PairState::Disabled { .. } => {
            return Ok(not_run(prev.clone(), now_ms + policy.next_interval(pushed)));
        }
        PairState::Paused { until, .. } | PairState::Backoff { until, .. }
            if *until > now_ms && !woken =>
        {
            return Ok(not_run(prev.clone(), *until));
        }
        _ => {}
    }
    let report = engine
        .sync_pair_from(&pair, PassOptions::default(), peek)
        .await?;
    // Skipped (another process holds the pair) or cut short by a stop: the pair's state stands.
    let (state, next_run) = if report.busy || report.interrupted {
        (prev.clone(), now_ms + policy.next_interval(pushed))
    } else {
        let state = next_state(&prev, &report, now_ms, &policy);
        // Items that failed are retried at the next poll, not a safety interval away.
        let pushed = pushed && report.failed == 0;
        let next = state
            .until()
            .unwrap_or_else(|| now_ms + policy.next_interval(pushed));
        (state, next)
    };
    // An active pair that stays active needs no write (the common, quiet case).
    let quiet = state == PairState::Active && prev == PairState::Active;
    if !(report.busy || report.interrupted || quiet) {
        engine
            .state
            .set_pair_state(&pair.id, &state, Some(next_run))
            .await?;
    }
    match (&state, &prev) {
        (PairState::Active, PairState::Active) => {}
        (PairState::Active, _) => info!(pair = %pair.id, agent, was = prev.name(), "pair resumed"),
        (PairState::Paused { reason, until }, _) => {
            warn!(pair = %pair.id, agent, until = %crate::domain::time::utc(*until), reason = %reason, "pair paused; it resumes by itself")
        }
        (
            PairState::Backoff {
                reason,
                failures,
                until,
            },
            _,
        ) => {
            warn!(pair = %pair.id, agent, failures, until = %crate::domain::time::utc(*until), reason = %reason, "pair failed; retrying later")
        }
        (PairState::Disabled { .. }, _) => {}
    }
    Ok(StepOutcome {
        pair: pair.id,
        agent,
        report: Some(report),
        state,
        next_run,
        held: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            interval: Duration::from_secs(60),
            pause: Duration::from_secs(300),
            backoff_base: Duration::from_secs(60),
            backoff_max: Duration::from_secs(1800),
            jitter: 0.1,
            safety_interval: Duration::from_secs(3600),
        }
    }

    fn failed(kind: ErrorKind) -> PairReport {
        PairReport {
            error: Some("boom".into()),
            error_kind: Some(kind),
            ..PairReport::new("p")
        }
    }

    #[test]
    fn states_move_as_documented() {
        let p = policy();
        assert_eq!(
            next_state(&PairState::Active, &PairReport::new("p"), 0, &p),
            PairState::Active
        );
        // Moving: paused for Retry-After, else `pause`.
        let moving = failed(ErrorKind::Moving {
            retry_after: Some(Duration::from_secs(42)),
        });
        assert_eq!(
            next_state(&PairState::Active, &moving, 1000, &p),
            PairState::Paused {
                reason: "boom".into(),
                until: 43_000
            }
        );
        let locked = failed(ErrorKind::Moving { retry_after: None });
        assert_eq!(
            next_state(&PairState::Active, &locked, 0, &p).until(),
            Some(300_000)
        );
        // Transient failures back off 1, 2, 4, ... minutes up to the cap, and keep retrying.
        let mut st = PairState::Active;
        let mut waits = Vec::new();
        for _ in 0..8 {
            st = next_state(&st, &failed(ErrorKind::Transient), 0, &p);
            waits.push(st.until().unwrap() / 60_000);
        }
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(st.failures(), 8);
        // A success resets everything.
        assert_eq!(
            next_state(&st, &PairReport::new("p"), 0, &p),
            PairState::Active
        );
        // Item failures alone do not change the pair's state.
        let mut partial = PairReport::new("p");
        partial.fail_item(
            "/x.ics",
            crate::engine::report::ItemOp::Read,
            ErrorKind::InvalidData,
            "bad",
        );
        assert_eq!(
            next_state(&PairState::Active, &partial, 0, &p),
            PairState::Active
        );
    }

    #[test]
    fn jitter_stays_within_ten_percent_below_the_interval() {
        let p = policy();
        let n: Vec<i64> = (0..1000).map(|_| p.next_interval(false)).collect();
        assert!(n.iter().all(|n| (54_000..=60_000).contains(n)), "{n:?}");
        // Spread, not one value.
        assert!(n.iter().any(|n| *n < 57_000) && n.iter().any(|n| *n > 57_000));
    }
}
