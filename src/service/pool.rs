//! The agent pool: one OS thread per agent, pinned to its configured processor, each running its
//! own single-threaded tokio runtime and scheduler over its share of the pairs.
//!
//! Pairs are sharded by a hash of their id, then balanced so no agent has more than its share
//! (rounded up): a pair belongs to exactly one agent, so one process never syncs it twice at once.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::watch;
use tracing::{Instrument, error, error_span, info, warn};

use crate::config::Config;
use crate::domain::pair::Pair;
use crate::domain::time::now_ms;
use crate::domain::types::PairId;
use crate::engine::Engine;
use crate::service::nodes::Membership;
use crate::service::push::PushHub;
use crate::service::scheduler::{Policy, Scheduler, StepOutcome};
use crate::state::Peek;

/// How long in-flight passes may finish after a stop was asked for; then they are abandoned
/// (a write whose mapping was not recorded is found again by the next pass).
pub(crate) const STOP_GRACE: Duration = Duration::from_secs(3);

/// The grid on which an agent takes the pairs that fell due: those due within one tick have
/// their state read in one statement, and start at most this much late.
pub(crate) const GATHERED_EVERY: Duration = Duration::from_millis(250);

/// How many slots' worth of pairs an agent reads ahead of its free slots. A pair read ahead
/// waits a moment for a slot; if anything moved meanwhile, its pass sees it and reads again
/// under its lease.
const READ_AHEAD: usize = 4;

/// How often an agent writes the runs of its quiet passes: status, page and API show a pass
/// this much later at most.
pub(crate) const RUNS_FLUSHED_EVERY: Duration = Duration::from_secs(2);

/// The agent (0-based) of each pair, in the order given.
pub fn assign(pairs: &[PairId], agents: usize) -> Vec<usize> {
    let agents = agents.max(1);
    let hash = |p: &PairId| xxhash_rust::xxh3::xxh3_64(p.as_str().as_bytes());
    let mut owner: Vec<usize> = pairs
        .iter()
        .map(|p| (hash(p) % agents as u64) as usize)
        .collect();
    let cap = pairs.len().div_ceil(agents);
    let mut load = vec![0usize; agents];
    for &a in &owner {
        load[a] += 1;
    }
    // Over-full agents hand their surplus (in a stable order) to the least loaded.
    let mut order: Vec<usize> = (0..pairs.len()).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(hash(&pairs[i]).rotate_left(32)), i));
    for i in order {
        let from = owner[i];
        if load[from] <= cap {
            continue;
        }
        let to = (0..agents)
            .min_by_key(|&a| (load[a], a))
            .expect("at least one agent");
        if load[to] + 1 > cap {
            continue;
        }
        load[from] -= 1;
        load[to] += 1;
        owner[i] = to;
    }
    owner
}

/// One agent: its processor and pairs.
#[derive(Debug, Clone)]
pub struct AgentSpec {
    pub index: usize,
    pub processor: usize,
    pub pairs: Vec<Pair>,
}

/// The agents `config` asks for, with their share of the pairs.
pub fn plan(config: &Config) -> Vec<AgentSpec> {
    let count = config.agents.count.max(1);
    let mut specs: Vec<AgentSpec> = (0..count)
        .map(|i| AgentSpec {
            index: i,
            processor: config.agents.processor_indexes.get(i).copied().unwrap_or(0),
            pairs: Vec::new(),
        })
        .collect();
    let ids: Vec<PairId> = config.pairs.iter().map(|p| p.id.clone()).collect();
    for (pair, agent) in config.pairs.iter().zip(assign(&ids, count)) {
        specs[agent].pairs.push(pair.clone());
    }
    specs
}

/// Running agents.
pub struct Pool {
    threads: Vec<std::thread::JoinHandle<()>>,
    stop: watch::Sender<bool>,
    engine: Arc<Engine>,
    agents: Vec<Arc<AgentStats>>,
}

/// What the status page and `/metrics` show of one running agent.
#[derive(Debug, Default)]
pub struct AgentStats {
    pub index: usize,
    pub processor: usize,
    pub pairs: usize,
    /// Passes finished.
    pub passes: std::sync::atomic::AtomicU64,
    /// The agent thread's id, to read its processor time from /proc (0 until it started).
    tid: std::sync::atomic::AtomicU64,
}

impl AgentStats {
    /// Processor time the agent's thread has used, in seconds: an agent that does the work shows
    /// it here; an idle processor shows as agents with none.
    pub(crate) fn busy_seconds(&self) -> f64 {
        let tid = self.tid.load(std::sync::atomic::Ordering::Relaxed);
        if tid == 0 {
            return 0.0;
        }
        // schedstat's first field is the time on the processor in nanoseconds.
        std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
            .map_or(0.0, |ns| ns as f64 / 1e9)
    }
}

/// The calling thread's id, as /proc names it.
fn thread_id() -> u64 {
    std::fs::read_link("/proc/thread-self")
        .ok()
        .and_then(|p| p.file_name()?.to_str()?.parse().ok())
        .unwrap_or(0)
}

impl Pool {
    /// Starts one pinned thread per agent; each starts only the pairs `membership` holds.
    pub fn start(
        specs: Vec<AgentSpec>,
        engine: Arc<Engine>,
        policy: Policy,
        passes: usize,
        membership: Arc<Membership>,
        push: Arc<PushHub>,
    ) -> std::io::Result<Pool> {
        let (stop, stopped) = watch::channel(false);
        let mut threads = Vec::with_capacity(specs.len());
        let mut agents = Vec::with_capacity(specs.len());
        for spec in specs {
            let (engine, stopped) = (engine.clone(), stopped.clone());
            let (membership, push) = (membership.clone(), push.clone());
            let stats = Arc::new(AgentStats {
                index: spec.index,
                processor: spec.processor,
                pairs: spec.pairs.len(),
                ..AgentStats::default()
            });
            agents.push(stats.clone());
            let thread = std::thread::Builder::new()
                .name(format!("tandem-agent-{}", spec.index))
                .spawn(move || {
                    let (agent, processor) = (spec.index, spec.processor);
                    stats
                        .tid
                        .store(thread_id(), std::sync::atomic::Ordering::Relaxed);
                    if !core_affinity::set_for_current(core_affinity::CoreId { id: processor }) {
                        warn!(
                            agent,
                            processor, "could not pin the agent to its processor; it runs unpinned"
                        );
                    }
                    let runtime = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(rt) => rt,
                        Err(e) => {
                            error!(agent, error = %e, "cannot start the agent's runtime");
                            return;
                        }
                    };
                    // Error level: the agent's number is on its log lines at any log level.
                    let span = error_span!("agent", agent);
                    runtime.block_on(
                        run_agent(
                            spec,
                            engine,
                            Agent {
                                policy,
                                passes,
                                membership,
                                push,
                            },
                            stopped,
                            stats,
                        )
                        .instrument(span),
                    );
                })?;
            threads.push(thread);
        }
        Ok(Pool {
            threads,
            stop,
            engine,
            agents,
        })
    }

    /// The running agents' figures.
    pub fn agents(&self) -> Vec<Arc<AgentStats>> {
        self.agents.clone()
    }

    /// Asks every agent to stop: no new passes; passes in progress finish the writes in flight
    /// (recording them) and start no more, within `STOP_GRACE` or they are abandoned.
    pub fn stop(&self) {
        self.engine.request_stop();
        let _ = self.stop.send(true);
    }

    /// Waits for every agent thread to end.
    pub fn join(self) {
        for t in self.threads {
            let _ = t.join();
        }
    }

    /// The agents' OS threads (for reading their placement back).
    pub fn threads(&self) -> impl Iterator<Item = &std::thread::Thread> {
        self.threads.iter().map(|t| t.thread())
    }
}

/// What every agent of a pool shares.
struct Agent {
    policy: Policy,
    passes: usize,
    membership: Arc<Membership>,
    push: Arc<PushHub>,
}

async fn run_agent(
    spec: AgentSpec,
    engine: Arc<Engine>,
    shared: Agent,
    mut stopped: watch::Receiver<bool>,
    stats: Arc<AgentStats>,
) {
    let Agent {
        policy,
        passes,
        membership,
        push,
    } = shared;
    let (agent, count) = (spec.index, spec.pairs.len());
    let engine = agent_engine(&engine, passes, &membership);
    let Some(mut sched) = scheduler(
        agent,
        &engine,
        &spec,
        policy,
        &membership,
        &push,
        &mut stopped,
    )
    .await
    else {
        return;
    };
    info!(processor = spec.processor, pairs = count, "agent started");
    // Everything the agent waits for, polled only here (never awaited inline: a pass holding a
    // state connection must go on while the agent reads or writes the state).
    let mut work: FuturesUnordered<Pin<Box<dyn Future<Output = Work>>>> = FuturesUnordered::new();
    // Pairs taken and not finished: being read, read and waiting for a slot (`ready`), or
    // passing. Up to READ_AHEAD slots' worth are read ahead, so that pairs due together are
    // read together even while every slot is busy.
    let (slots, mut taken, mut passing) = (passes.max(1), 0, 0);
    let mut ready: VecDeque<(usize, Option<Peek>)> = VecDeque::new();
    let mut flush = tokio::time::interval(RUNS_FLUSHED_EVERY);
    flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let gather = GATHERED_EVERY.as_millis() as i64;
    while !*stopped.borrow() {
        let now = now_ms();
        // Pairs due since the last tick of the gathering grid are read in one statement.
        let tick = now - now.rem_euclid(gather);
        let mut due = Vec::new();
        while taken < slots * READ_AHEAD {
            let Some(i) = sched.take_due(tick) else { break };
            due.push(i);
            taken += 1;
        }
        if !due.is_empty() {
            let pairs = due.iter().map(|&i| sched.pairs()[i].clone()).collect();
            work.push(Box::pin(peeked(engine.clone(), pairs, due)));
        }
        while passing < slots
            && let Some((i, peek)) = ready.pop_front()
        {
            let pass = sched.run(i, now, peek);
            work.push(Box::pin(async move { Work::Ran(i, Box::new(pass.await)) }));
            passing += 1;
        }
        // Sleep until the tick at which the next pair is due (if there is room to take it), a
        // read or pass ends, or stop.
        let wake = match sched.next_due() {
            Some(at) if taken < slots * READ_AHEAD => {
                let at = at + (gather - at.rem_euclid(gather)) % gather;
                Duration::from_millis((at - now).clamp(0, 60_000) as u64)
            }
            _ => Duration::from_secs(60),
        };
        tokio::select! {
            Some(done) = work.next(), if !work.is_empty() => match done {
                Work::Peeked(batch) => ready.extend(batch),
                Work::Ran(i, outcome) => {
                    let outcome = *outcome;
                    (taken, passing) = (taken - 1, passing - 1);
                    if outcome.as_ref().is_ok_and(|o| o.held) {
                        stats.passes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    finished(&mut sched, i, outcome, &policy)
                }
                Work::Flushed => {}
            },
            _ = tokio::time::sleep(wake) => {}
            _ = flush.tick() => {
                let engine = engine.clone();
                work.push(Box::pin(async move {
                    flush_runs(&engine).await;
                    Work::Flushed
                }));
            }
            _ = push.pushed(agent) => {}
            _ = stopped.changed() => {}
        }
    }
    drain(work, &mut sched, passing, &policy).await;
    flush_runs(&engine).await;
    engine.state.close_runtime_pool().await;
    info!("agent stopped");
}

/// The agent's engine: its own connections to the state, opened on its runtime; its quiet
/// passes' runs written together every few seconds; its passes checked against this node's
/// claims.
fn agent_engine(engine: &Engine, passes: usize, membership: &Arc<Membership>) -> Arc<Engine> {
    let membership = membership.clone();
    Arc::new(
        engine
            .on_state(engine.state.for_this_runtime(passes.max(1) as u32 + 1))
            .batching_runs()
            .claimed_by(Arc::new(move |pair: &str| membership.holds(pair))),
    )
}

/// The agent's scheduler, its pair states read (retried every 10 s while the state cannot be
/// read); `None` when the agent is stopped first.
async fn scheduler(
    agent: usize,
    engine: &Arc<Engine>,
    spec: &AgentSpec,
    policy: Policy,
    membership: &Arc<Membership>,
    push: &Arc<PushHub>,
    stopped: &mut watch::Receiver<bool>,
) -> Option<Scheduler> {
    loop {
        match Scheduler::new(agent, engine.clone(), spec.pairs.clone(), policy, now_ms()).await {
            Ok(mut s) => {
                s.member_of(membership.clone());
                s.pushed_by(push.clone());
                return Some(s);
            }
            Err(e) => {
                error!(error = %e, "cannot read pair states; retrying in 10 s");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(10)) => {}
                    _ = stopped.changed() => return None,
                }
            }
        }
    }
}

/// On stop: passes in flight finish (for up to `STOP_GRACE`); pairs being read or ready start
/// no pass.
async fn drain(
    mut work: FuturesUnordered<Pin<Box<dyn Future<Output = Work>>>>,
    sched: &mut Scheduler,
    passing: usize,
    policy: &Policy,
) {
    if passing > 0 {
        info!(
            passes = passing,
            "stopping: letting in-flight passes finish"
        );
    }
    let drain = async {
        while let Some(done) = work.next().await {
            if let Work::Ran(i, outcome) = done {
                finished(sched, i, *outcome, policy);
            }
        }
    };
    if tokio::time::timeout(STOP_GRACE, drain).await.is_err() {
        warn!(
            "stopping: abandoned passes still in flight; the next pass picks up where they stopped"
        );
    }
}

/// What an agent waited for.
enum Work {
    /// The pairs taken, each with its state (see [`peeked`]): their passes start.
    Peeked(Vec<(usize, Option<Peek>)>),
    /// A pair's turn ended.
    Ran(usize, Box<Result<StepOutcome, crate::state::StateError>>),
    /// The kept runs were written.
    Flushed,
}

/// The pairs `due` (configured as `pairs`), each with its state read in one statement for all
/// (none if that failed: each pass reads its own then, and reports the failure).
async fn peeked(engine: Arc<Engine>, pairs: Vec<Pair>, due: Vec<usize>) -> Work {
    let refs: Vec<&Pair> = pairs.iter().collect();
    Work::Peeked(match engine.peek_many(&refs).await {
        Ok(peeks) => due.into_iter().zip(peeks.into_iter().map(Some)).collect(),
        Err(e) => {
            warn!(error = %e, "reading the state of the pairs due failed");
            due.into_iter().map(|i| (i, None)).collect()
        }
    })
}

/// Writes the runs the agent's passes kept (see [`Engine::flush_runs`]).
async fn flush_runs(engine: &Engine) {
    if let Err(e) = engine.flush_runs().await {
        warn!(error = %e, "recording passes failed; kept for the next try");
    }
}

fn finished(
    sched: &mut Scheduler,
    i: usize,
    outcome: Result<StepOutcome, crate::state::StateError>,
    policy: &Policy,
) {
    match outcome {
        Ok(o) => {
            if let Some(r) = &o.report {
                if let Some(e) = &r.error {
                    warn!(pair = %o.pair, state = o.state.name(), error = %e, "pass failed");
                } else {
                    info!(pair = %o.pair, created = r.created, updated = r.updated, deleted = r.deleted, failed = r.failed, quarantined = r.quarantined, "pass finished");
                }
            }
            sched.finish(i, &o);
        }
        Err(e) => {
            error!(pair = %sched.pairs()[i].id, error = %e, "the state store failed during a pass; retrying the pair later");
            let again = StepOutcome {
                pair: sched.pairs()[i].id.clone(),
                agent: sched.agent(),
                report: None,
                state: crate::domain::pairstate::PairState::Active,
                next_run: now_ms() + policy.interval.as_millis() as i64,
                held: true,
            };
            sched.finish(i, &again);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousand_pairs_over_four_agents_are_balanced_and_stable() {
        let ids: Vec<PairId> = (0..1000)
            .map(|i| format!("user-{i:04}").parse().unwrap())
            .collect();
        let owners = assign(&ids, 4);
        let mut load = [0usize; 4];
        for &a in &owners {
            load[a] += 1;
        }
        for n in load {
            assert!((225..=275).contains(&n), "{load:?}");
        }
        assert_eq!(owners, assign(&ids, 4), "same pairs, same owners");
        // One more pair moves few others.
        let mut more = ids.clone();
        more.push("user-1000".parse().unwrap());
        let moved = assign(&more, 4)
            .iter()
            .zip(&owners)
            .filter(|(a, b)| a != b)
            .count();
        assert!(moved < 50, "{moved} pairs moved");
    }
}
