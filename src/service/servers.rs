//! An agent's pairs waiting on their servers: a pair due on a server that is down (see
//! [`crate::store::health`]) is not run but waits, one waiting pair at a time probes the server,
//! and when the server answers again every pair that failed or waited on it is due at once,
//! spread by a little jitter.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use crate::domain::error::ErrorKind;
use crate::domain::pair::Pair;
use crate::engine::Engine;
use crate::store::CalendarStore;
use crate::store::health::ServerHealth;

/// What to do with a due pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Gate {
    /// Its servers are up: run it.
    Go,
    /// A server of it is down and this pair probes it now.
    Probe,
    /// A server of it is down and another probe is in flight or not yet due: look again soon.
    Wait,
}

struct Watched {
    store: Arc<dyn CalendarStore>,
    health: Arc<ServerHealth>,
    /// The server's return count when last looked at.
    seen: u64,
}

pub(super) struct ServerWaits {
    servers: Vec<Watched>,
    /// Per pair, its watched servers (indexes into `servers`).
    of_pair: Vec<Vec<usize>>,
    /// Pairs to wake when one of their servers answers again: they waited on it, or their last
    /// pass failed at the server's level.
    waiting: HashSet<usize>,
    /// Pairs taken to probe a server, with the server.
    probing: HashMap<usize, usize>,
}

impl ServerWaits {
    pub(super) fn new(engine: &Engine, pairs: &[Pair]) -> ServerWaits {
        let mut servers: Vec<Watched> = Vec::new();
        let mut by_name: HashMap<String, usize> = HashMap::new();
        let mut of_pair = Vec::with_capacity(pairs.len());
        for pair in pairs {
            let mut mine = Vec::new();
            for name in [&pair.source.server, &pair.target.server] {
                let known = by_name.get(name.as_str()).copied();
                let at = known.or_else(|| {
                    let store = engine.store_of(name).ok()?;
                    let health = store.health()?;
                    let seen = health.returns();
                    servers.push(Watched {
                        store,
                        health,
                        seen,
                    });
                    by_name.insert(name.clone(), servers.len() - 1);
                    Some(servers.len() - 1)
                });
                if let Some(at) = at
                    && !mine.contains(&at)
                {
                    mine.push(at);
                }
            }
            of_pair.push(mine);
        }
        ServerWaits {
            servers,
            of_pair,
            waiting: HashSet::new(),
            probing: HashMap::new(),
        }
    }

    /// The waiting pairs of servers that answered again since the last look, each with when it
    /// is due: now, spread over a few seconds so they do not all start in one instant.
    pub(super) fn woken(&mut self, now_ms: i64) -> Vec<(usize, i64)> {
        let mut back = HashSet::new();
        for (at, s) in self.servers.iter_mut().enumerate() {
            let returns = s.health.returns();
            if returns != s.seen {
                s.seen = returns;
                back.insert(at);
            }
        }
        if back.is_empty() {
            return Vec::new();
        }
        let woken: Vec<usize> = self
            .waiting
            .iter()
            .copied()
            .filter(|i| self.of_pair[*i].iter().any(|s| back.contains(s)))
            .collect();
        let spread = (woken.len() as i64 * 5).clamp(500, 10_000);
        woken
            .into_iter()
            .map(|i| {
                self.waiting.remove(&i);
                (i, now_ms + (fastrand::f64() * spread as f64) as i64)
            })
            .collect()
    }

    /// Whether due pair `i` may run, probes its server, or waits.
    pub(super) fn gate(&mut self, i: usize) -> Gate {
        let Some(&down) = self.of_pair[i]
            .iter()
            .find(|s| self.servers[**s].health.is_down())
        else {
            return Gate::Go;
        };
        self.waiting.insert(i);
        if self.servers[down].health.claim_probe(Instant::now()) {
            self.probing.insert(i, down);
            return Gate::Probe;
        }
        Gate::Wait
    }

    /// The probe pair `i` was taken for ([`Gate::Probe`]), as a future that records its outcome.
    pub(super) fn probe(&self, i: usize) -> Option<impl Future<Output = ()> + use<>> {
        let s = &self.servers[*self.probing.get(&i)?];
        let (store, health) = (s.store.clone(), s.health.clone());
        Some(async move {
            let outcome = store.probe().await;
            health.probed(outcome.is_ok(), outcome.as_ref().err().map(String::as_str));
        })
    }

    /// Whether pair `i` waits on a server that is down now: it is looked at again soon (so
    /// its turn may probe the server), whatever pause or backoff its last pass left.
    pub(super) fn held_up(&self, i: usize) -> bool {
        self.waiting.contains(&i)
            && self.of_pair[i]
                .iter()
                .any(|s| self.servers[*s].health.is_down())
    }

    /// Pair `i`'s step ended: a pass that failed at the server's level (no answer, a refused
    /// connection, a 5xx) waits to be woken by the server's return; any other pass does not.
    pub(super) fn finished(&mut self, i: usize, kind: Option<Option<ErrorKind>>) {
        self.probing.remove(&i);
        match kind {
            // Not run (a probe, a pair held elsewhere): as it was.
            None => {}
            Some(Some(ErrorKind::Transient | ErrorKind::Moving { retry_after: None })) => {
                self.waiting.insert(i);
            }
            Some(_) => {
                self.waiting.remove(&i);
            }
        }
    }
}
