//! This node among the others sharing one state: it registers and heartbeats, works out which
//! pairs are its share of the live nodes, claims them and hands off the rest.
//!
//! Every node sees the same live nodes and pairs, so every node computes the same spread
//! ([`spread`]); the database's conditional writes settle any moment where two disagree. A pair
//! is started only by the node holding its claim, and only while that node's last heartbeat is
//! recent on its own monotonic clock: a node paused past its ttl, or cut off from the database,
//! starts nothing until a heartbeat confirms its claims again. A pair moves only between passes:
//! its node stops starting it, lets a pass in flight end, then releases the claim for the new
//! node to take. Passes still running when a claim lapses are fenced by their leases.

use std::borrow::Borrow;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::domain::types::PairId;
use crate::state::{NodeInfo, State, StateResult};

/// The share of the ttl a node trusts its last heartbeat for (as for leases).
const TRUSTED: f64 = 0.9;

/// The node (index into `nodes`, sorted ids) of each pair (or mailbox), in the order given:
/// each goes to the node ranking highest for it (rendezvous hashing) among those under their
/// share, so the load is even and a node joining or leaving moves few.
pub fn spread<K: Borrow<str>>(pairs: &[K], nodes: &[String]) -> Vec<usize> {
    if nodes.is_empty() {
        return vec![0; pairs.len()];
    }
    let cap = pairs.len().div_ceil(nodes.len());
    let rank = |p: &K, n: &String| {
        let p: &str = p.borrow();
        let mut key = Vec::with_capacity(p.len() + n.len() + 1);
        key.extend_from_slice(p.as_bytes());
        key.push(0);
        key.extend_from_slice(n.as_bytes());
        xxhash_rust::xxh3::xxh3_64(&key)
    };
    let mut order: Vec<usize> = (0..pairs.len()).collect();
    order.sort_by_key(|&i| (xxhash_rust::xxh3::xxh3_64(pairs[i].borrow().as_bytes()), i));
    let mut load = vec![0usize; nodes.len()];
    let mut owner = vec![0usize; pairs.len()];
    for i in order {
        let mut choice: Vec<usize> = (0..nodes.len()).collect();
        choice.sort_by_key(|&n| std::cmp::Reverse(rank(&pairs[i], &nodes[n])));
        let n = choice
            .into_iter()
            .find(|&n| load[n] < cap)
            .expect("the shares add up to every pair");
        load[n] += 1;
        owner[i] = n;
    }
    owner
}

/// Whether each of `keys` is node `me`'s share among the `live` nodes (sorted ids; `me` among
/// them) by [`spread`].
pub fn mine<K: Borrow<str>>(keys: &[K], live: &[String], me: &str) -> Vec<bool> {
    let me = live.iter().position(|n| n == me);
    spread(keys, live)
        .into_iter()
        .map(|o| Some(o) == me)
        .collect()
}

/// Which pairs this node may start now, shared by its agents and its coordinator.
pub struct Membership {
    /// A scheduler on its own (tests, benches): every pair it has is its own.
    everything: bool,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    held: HashSet<String>,
    running: HashSet<String>,
    /// Until when the last heartbeat vouches for the claims (monotonic).
    valid_until: Option<Instant>,
    /// Since when (unix ms) the database has not answered, and why.
    trouble: Option<(i64, String)>,
    live_nodes: usize,
}

impl Membership {
    /// Membership that holds every pair, for a scheduler run without nodes.
    pub fn everything() -> Arc<Membership> {
        Arc::new(Membership {
            everything: true,
            inner: Mutex::default(),
        })
    }

    /// Membership that holds nothing until its coordinator claimed pairs.
    pub fn new() -> Arc<Membership> {
        Arc::new(Membership {
            everything: false,
            inner: Mutex::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("not poisoned")
    }

    /// Whether this node holds `pair` now (a pass could start).
    pub fn holds(&self, pair: &str) -> bool {
        if self.everything {
            return true;
        }
        let inner = self.lock();
        inner.valid_until.is_some_and(|t| Instant::now() < t) && inner.held.contains(pair)
    }

    /// Whether this node may start a pass of `pair` now; if so, the pair counts as running
    /// (not handed off) until [`Self::done`].
    pub fn start(&self, pair: &str) -> bool {
        if self.everything {
            return true;
        }
        let mut inner = self.lock();
        let vouched = inner.valid_until.is_some_and(|t| Instant::now() < t);
        if !vouched || !inner.held.contains(pair) {
            return false;
        }
        inner.running.insert(pair.to_string());
        true
    }

    /// A pass started with [`Self::start`] ended.
    pub fn done(&self, pair: &str) {
        self.lock().running.remove(pair);
    }

    /// `Err(reason)` while the database is out of reach (no pass starts meanwhile).
    pub fn health(&self) -> Result<(), String> {
        let inner = self.lock();
        match &inner.trouble {
            None => Ok(()),
            Some((since, reason)) => Err(format!(
                "the state database has not answered since {}: {reason}; no pass starts until it does",
                crate::domain::time::utc(*since)
            )),
        }
    }
}

/// What a node's coordinator works with.
pub struct Coordinator {
    pub membership: Arc<Membership>,
    pub state: State,
    pub node: NodeInfo,
    pub pairs: Vec<PairId>,
    pub ttl: Duration,
}

impl Coordinator {
    /// Heartbeats and rebalances every third of the ttl until `stop`, then leaves: its claims
    /// are freed at once for the other nodes.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let every = (self.ttl / 3).max(Duration::from_millis(200));
        while !*stop.borrow() {
            let asked = Instant::now();
            match self.tick(asked).await {
                Ok(()) => {
                    let back = self.membership.lock().trouble.take();
                    if back.is_some() {
                        info!("the state database answers again; passes resume");
                    }
                }
                Err(e) => {
                    let mut inner = self.membership.lock();
                    if inner.trouble.is_none() {
                        error!(error = %e, "the state database does not answer; no pass starts until it does");
                    }
                    let since = inner
                        .trouble
                        .as_ref()
                        .map_or_else(crate::domain::time::now_ms, |t| t.0);
                    inner.trouble = Some((since, e.to_string()));
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.changed() => {}
            }
        }
        if let Err(e) = self.state.leave(&self.node.id).await {
            warn!(error = %e, "could not free this node's claims; the others take them after the ttl");
        }
    }

    /// One heartbeat: register, see the live nodes, release what is no longer this node's
    /// share (once not running) and claim what is.
    async fn tick(&self, asked: Instant) -> StateResult<()> {
        let live = self.state.heartbeat(&self.node, self.ttl).await?;
        let share: HashSet<&str> = (self.pairs.iter())
            .zip(mine(&self.pairs, &live, &self.node.id))
            .filter(|(_, mine)| *mine)
            .map(|(p, _)| p.as_str())
            .collect();
        let mine: HashSet<String> = self
            .state
            .claims_of(&self.node.id)
            .await?
            .into_iter()
            .collect();
        let release: Vec<&str> = {
            let mut inner = self.membership.lock();
            // Claims taken over while this node was away are gone from `mine`.
            inner
                .held
                .retain(|p| mine.contains(p) && share.contains(p.as_str()));
            mine.iter()
                .map(String::as_str)
                .filter(|p| !share.contains(p) && !inner.running.contains(*p))
                .collect()
        };
        self.state.release_claims(&self.node.id, &release).await?;
        let want: Vec<&str> = share
            .iter()
            .copied()
            .filter(|p| !mine.contains(*p))
            .collect();
        let got = self.state.claim(&self.node.id, &want).await?;
        let mut inner = self.membership.lock();
        let before = inner.held.len();
        inner
            .held
            .extend(mine.into_iter().filter(|p| share.contains(p.as_str())));
        inner.held.extend(got);
        inner.valid_until = Some(asked + self.ttl.mul_f64(TRUSTED));
        if inner.held.len() != before || inner.live_nodes != live.len() {
            info!(
                nodes = live.len(),
                pairs = inner.held.len(),
                share = share.len(),
                "this node's pairs"
            );
        }
        inner.live_nodes = live.len();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<PairId> {
        (0..n)
            .map(|i| format!("user-{i:05}").parse().unwrap())
            .collect()
    }

    fn nodes(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn pairs_spread_evenly_and_few_move() {
        let pairs = ids(60);
        let three = nodes(&["a", "b", "c"]);
        let owners = spread(&pairs, &three);
        let mut load = [0; 3];
        for &o in &owners {
            load[o] += 1;
        }
        assert_eq!(load, [20, 20, 20]);
        assert_eq!(
            owners,
            spread(&pairs, &three),
            "every node computes the same"
        );
        // A fourth node takes about a quarter; the rest mostly stay.
        let four = nodes(&["a", "b", "c", "d"]);
        let after = spread(&pairs, &four);
        let moved = owners
            .iter()
            .zip(&after)
            .filter(|(x, y)| three[**x] != four[**y])
            .count();
        assert!((15..=30).contains(&moved), "{moved} moved");
        // A node gone: only its pairs (and a few for balance) move.
        let two = nodes(&["a", "c"]);
        let left = spread(&pairs, &two);
        let moved = owners
            .iter()
            .zip(&left)
            .filter(|(x, y)| three[**x] != two[**y])
            .count();
        assert!((20..=30).contains(&moved), "{moved} moved");
        let big = spread(&ids(20_000), &nodes(&["x", "y"]));
        assert_eq!(big.iter().filter(|&&o| o == 0).count(), 10_000);
    }

    #[test]
    fn each_mailbox_is_one_nodes_share() {
        let mailboxes = ["alice", "bob", "carol", "dave"];
        let live = nodes(&["node-a", "node-b"]);
        let a = mine(&mailboxes, &live, "node-a");
        let b = mine(&mailboxes, &live, "node-b");
        assert_eq!(a.iter().filter(|m| **m).count(), 2);
        assert!(a.iter().zip(&b).all(|(a, b)| a != b), "{a:?} {b:?}");
        assert_eq!(mine(&mailboxes, &nodes(&["node-a"]), "node-a"), [true; 4]);
    }

    #[test]
    fn nothing_starts_without_a_recent_heartbeat() {
        let m = Membership::new();
        assert!(!m.start("p"));
        {
            let mut inner = m.lock();
            inner.held.insert("p".into());
            inner.valid_until = Some(Instant::now() + Duration::from_secs(60));
        }
        assert!(m.start("p"));
        assert!(!m.start("q"), "not held");
        m.lock().valid_until = Some(Instant::now());
        assert!(!m.start("p"), "the heartbeat no longer vouches");
        assert!(Membership::everything().start("anything"));
    }
}
