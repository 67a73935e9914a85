//! The operator's view: per pair its state, lag, backlog, counts and failed requests; per server
//! its requests; per agent its processor. One `Snapshot`, read from the state store, feeds
//! `tandem status`, the status page, the JSON API and `/metrics`, so they always agree.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::config::Config;
use crate::domain::lease::Lease;
use crate::domain::pair::Pair;
use crate::domain::pairstate::{PairState, StoredState};
use crate::domain::run::RunStatus;
use crate::domain::time::{HOUR_MS, now_ms};
pub use crate::state::PassView;
use crate::state::{NodeRow, PairRow, State, StateResult};
use crate::store::health::HealthView;

/// A pair that is new to the state (never passed) shows as `new`.
pub const NEW: &str = "new";

#[derive(Debug, Clone, Serialize)]
pub struct LockView {
    pub holder: String,
    pub kind: &'static str,
    pub token: i64,
    pub until: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct PairView {
    pub id: String,
    /// The mailbox it is a calendar of, for a pair discovery found.
    pub mailbox: Option<String>,
    pub source: String,
    pub target: String,
    /// `one-way` or `two-way`.
    pub direction: &'static str,
    /// How a two-way pair settles conflicts: `authority` or `newest`.
    pub conflict: &'static str,
    /// The calendar that is the truth now: `source`, or `target` once cut over.
    pub authority: &'static str,
    /// When the pair was cut over (unix ms).
    pub cutover_at: Option<i64>,
    /// The node running the pair (its claim), if a live node holds it.
    pub node: Option<String>,
    /// `active`, `paused`, `backoff`, `disabled` or `new`.
    pub state: &'static str,
    pub reason: Option<String>,
    pub until: Option<i64>,
    pub failures: u32,
    pub next_run: Option<i64>,
    /// Items in step (mapped source → target).
    pub items: i64,
    pub quarantined: i64,
    /// Who holds the lease of a calendar the pair writes (the target's first), if anyone.
    pub lock: Option<LockView>,
    pub last_success_at: Option<i64>,
    pub last_run: Option<RunStatus>,
    /// Seconds the oldest source change not yet in the target has been waiting; 0 when current.
    pub lag_seconds: f64,
    /// When that change was first seen (unix ms).
    pub pending_since: Option<i64>,
    /// Source changes seen but not applied.
    pub backlog: i64,
    /// Writes since the pair was first synced.
    pub created: i64,
    pub updated: i64,
    pub deleted: i64,
    pub adopted: i64,
    /// HTTP requests of this pair's passes over the last hour, and those that failed.
    pub requests_last_hour: i64,
    pub failed_requests_last_hour: i64,
    /// `failed / requests` in percent; `None` with no requests (vdir pairs, idle hours).
    pub failed_requests_percent: Option<f64>,
    /// Thresholds of `[alerts]` this pair is over: `lag`, `failed_requests`.
    pub alerts: Vec<&'static str>,
    /// Both calendars push their changes (WebDAV-Push): passes follow pushes, and polls come
    /// only every `[sync] safety_interval`.
    pub push_driven: bool,
    /// When a push for one of its calendars last arrived (unix ms).
    pub last_push_at: Option<i64>,
}

impl PairView {
    /// Worst first: backoff, paused, disabled, then by lag, highest first.
    fn rank(&self) -> u8 {
        match self.state {
            "backoff" => 0,
            "paused" => 1,
            "disabled" => 2,
            _ => 3,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ServerView {
    pub name: String,
    pub kind: &'static str,
    /// Since the state was created.
    pub requests: i64,
    pub failed_requests: i64,
    pub throttled: i64,
    pub requests_last_hour: i64,
    pub failed_requests_last_hour: i64,
    pub throttled_last_hour: i64,
    pub failed_requests_percent: Option<f64>,
    /// Requests per second over about the last minute.
    pub rate_per_second: f64,
    /// Whether it answers, as this node sees it (while `run` serves; HTTP servers only).
    pub health: Option<HealthView>,
    pub alerts: Vec<&'static str>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AgentView {
    pub agent: usize,
    pub processor: usize,
    pub pairs: usize,
    pub items: i64,
    /// Only while the service runs: passes finished and processor time used.
    pub passes: Option<u64>,
    pub busy_seconds: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AlertThresholds {
    pub lag_seconds: f64,
    pub failed_requests_percent: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub generated_at: i64,
    /// Worst first.
    pub pairs: Vec<PairView>,
    /// Pairs per state.
    pub states: BTreeMap<&'static str, usize>,
    pub servers: Vec<ServerView>,
    pub online_processors: usize,
    pub agents: Vec<AgentView>,
    /// Processors left idle while others carry several agents.
    pub agents_warning: Option<String>,
    /// Leases held now.
    pub leases: Vec<Lease>,
    /// Every `tandem run` sharing this state, alive ones first.
    pub nodes: Vec<NodeRow>,
    pub quarantined: i64,
    pub alerts: AlertThresholds,
}

fn percent(failed: i64, requests: i64) -> Option<f64> {
    (requests > 0).then(|| (failed as f64 * 1000.0 / requests as f64).round() / 10.0)
}

/// Live figures of a running service, added to the stored ones.
#[derive(Default)]
pub struct Live {
    pub agents: Vec<std::sync::Arc<crate::service::pool::AgentStats>>,
    /// This node's view of its claims and of the database's health.
    pub membership: Option<std::sync::Arc<crate::service::nodes::Membership>>,
    /// This node's view of its servers' health.
    pub engine: Option<std::sync::Arc<crate::engine::Engine>>,
    /// Where this node's pushes land (`[http] public_url` set).
    pub push: Option<std::sync::Arc<crate::service::push::PushHub>>,
}

/// Pairs per state, every state named.
fn count_states(pairs: &[PairView]) -> BTreeMap<&'static str, usize> {
    let mut by_state: BTreeMap<&'static str, usize> =
        ["active", "paused", "backoff", "disabled", NEW]
            .into_iter()
            .map(|s| (s, 0))
            .collect();
    for p in pairs {
        *by_state.entry(p.state).or_default() += 1;
    }
    by_state
}

/// Whether pair `id` is push-driven (this node's doubt, pushes seemingly lost, makes it a polled
/// pair again), and so how often it is polled.
fn push_view(
    policy: &crate::service::scheduler::Policy,
    live: &Live,
    id: &str,
    pushes: &[&crate::state::PushSubscription],
    now: i64,
) -> (bool, std::time::Duration) {
    let driven = crate::service::push::driven(pushes.iter().copied(), now)
        && live.push.as_ref().is_none_or(|h| !h.doubted(id));
    (driven, policy.poll_every(driven))
}

/// Reads everything the operator's view shows, sorted worst first.
pub async fn snapshot(config: &Config, state: &State, live: &Live) -> StateResult<Snapshot> {
    let now = now_ms();
    let (rows, states, quarantined, leases, items, servers, cutovers, nodes, claims, subs) = tokio::join!(
        state.pair_rows(now - HOUR_MS),
        state.pair_states(),
        state.quarantine_counts(),
        state.leases(),
        state.item_counts(),
        state.server_rows(now),
        state.cutovers(),
        state.nodes(),
        state.claims(),
        state.push_subscriptions(),
    );
    let (rows, states, quarantined, leases, items, servers, cutovers, nodes, claims, subs) = (
        rows?,
        states?,
        quarantined?,
        leases?,
        items?,
        servers?,
        cutovers?,
        nodes?,
        claims?,
        subs?,
    );
    let mut subs_of: HashMap<&str, Vec<&crate::state::PushSubscription>> = HashMap::new();
    subs.iter()
        .for_each(|s| subs_of.entry(s.pair.as_str()).or_default().push(s));
    let leases: Vec<Lease> = leases.into_iter().filter(|l| l.expires_at > now).collect();
    let policy = crate::service::scheduler::Policy::from_config(config);
    let known = Known {
        rows: rows.iter().map(|r| (r.id.as_str(), r)).collect(),
        states: &states,
        quarantined: &quarantined,
        items: &items,
        cutovers: &cutovers,
        claims: &claims,
        subs_of,
        lock_of: leases.iter().map(|l| (l.calendar.as_str(), l)).collect(),
        policy: &policy,
        live,
        alerts: &config.alerts,
    };
    let mut pairs: Vec<PairView> = config
        .pairs
        .iter()
        .map(|p| pair_view(p, &known, now))
        .collect();
    pairs.sort_by(|a, b| {
        a.rank()
            .cmp(&b.rank())
            .then(b.lag_seconds.total_cmp(&a.lag_seconds))
            .then_with(|| a.id.cmp(&b.id))
    });
    let by_state = count_states(&pairs);
    let health = live
        .engine
        .as_ref()
        .map(|e| e.server_health())
        .unwrap_or_default();
    let servers = server_views(config, &servers, &health, now);
    let online = crate::config::online_processors();
    let agents = agent_views(config, live, &items);
    Ok(Snapshot {
        generated_at: now,
        quarantined: pairs.iter().map(|p| p.quarantined).sum(),
        pairs,
        states: by_state,
        servers,
        online_processors: online,
        agents,
        agents_warning: config.agents.placement_warning(online),
        leases,
        nodes,
        alerts: AlertThresholds {
            lag_seconds: config.alerts.lag.as_secs_f64(),
            failed_requests_percent: config.alerts.failed_requests_percent,
        },
    })
}

/// What the state says of every pair, indexed for one pair's view.
struct Known<'a> {
    rows: HashMap<&'a str, &'a PairRow>,
    states: &'a HashMap<String, StoredState>,
    quarantined: &'a HashMap<String, i64>,
    items: &'a HashMap<String, i64>,
    cutovers: &'a HashMap<String, i64>,
    claims: &'a HashMap<String, String>,
    subs_of: HashMap<&'a str, Vec<&'a crate::state::PushSubscription>>,
    lock_of: HashMap<&'a str, &'a Lease>,
    policy: &'a crate::service::scheduler::Policy,
    live: &'a Live,
    alerts: &'a crate::config::AlertsConfig,
}

/// One pair as the operator sees it.
fn pair_view(p: &Pair, k: &Known, now: i64) -> PairView {
    let id = p.id.as_str();
    let row = k.rows.get(id);
    let stored = k.states.get(id);
    let pair_state = stored.map_or(PairState::Active, |s| s.state.clone());
    let name = if row.is_none() && stored.is_none() {
        NEW
    } else {
        pair_state.name()
    };
    let last_run = row.and_then(|r| r.last_run.clone());
    let pushes = k.subs_of.get(id).map_or(&[][..], Vec::as_slice);
    let (push_driven, every) = push_view(k.policy, k.live, id, pushes, now);
    let next_run = match (&pair_state, &last_run) {
        // An active pair runs an interval after its last pass started (the service does not
        // record that time for every quiet pass); a push brings it sooner.
        (PairState::Active, Some(run)) => Some(run.started_at + every.as_millis() as i64),
        (PairState::Active, None) => None,
        _ => stored.and_then(|s| s.next_run),
    };
    let pending_since = row.and_then(|r| r.pending_since);
    let lag_seconds = pending_since.map_or(0.0, |t| (now - t).max(0) as f64 / 1000.0);
    let (requests, failed) = row.map_or((0, 0), |r| (r.requests, r.failed));
    let failed_percent = percent(failed, requests);
    let mut flags = Vec::new();
    if lag_seconds > k.alerts.lag.as_secs_f64() {
        flags.push("lag");
    }
    if failed_percent.is_some_and(|f| f > k.alerts.failed_requests_percent) {
        flags.push("failed_requests");
    }
    let totals = row.map_or([0; 4], |r| r.totals);
    let cutover_at = k.cutovers.get(id).copied();
    let lock = [&p.target, &p.source]
        .into_iter()
        .find_map(|c| k.lock_of.get(c.to_string().as_str()));
    PairView {
        id: id.to_string(),
        mailbox: p.id.mailbox().map(str::to_string),
        source: p.source.to_string(),
        target: p.target.to_string(),
        direction: p.direction.as_str(),
        conflict: p.conflict.as_str(),
        authority: if cutover_at.is_some() {
            "target"
        } else {
            "source"
        },
        cutover_at,
        node: k.claims.get(id).cloned(),
        state: name,
        reason: pair_state.reason().map(str::to_string),
        until: pair_state.until(),
        failures: pair_state.failures(),
        next_run,
        items: k.items.get(id).copied().unwrap_or(0),
        quarantined: k.quarantined.get(id).copied().unwrap_or(0),
        lock: lock.map(|l| LockView {
            holder: l.holder.clone(),
            kind: l.kind.as_str(),
            token: l.token,
            until: l.expires_at,
        }),
        last_success_at: row.and_then(|r| r.last_success_at),
        last_run,
        lag_seconds,
        pending_since,
        backlog: row.map_or(0, |r| r.backlog),
        created: totals[0],
        updated: totals[1],
        deleted: totals[2],
        adopted: totals[3],
        requests_last_hour: requests,
        failed_requests_last_hour: failed,
        failed_requests_percent: failed_percent,
        alerts: flags,
        push_driven,
        last_push_at: pushes.iter().filter_map(|s| s.last_push_at).max(),
    }
}

/// Each configured server with its request figures (the last hour's, and a rate over the
/// last minute or so).
fn server_views(
    config: &Config,
    servers: &HashMap<String, crate::state::ServerRow>,
    health: &BTreeMap<String, HealthView>,
    now: i64,
) -> Vec<ServerView> {
    let seconds_this_minute = (now % 60_000) as f64 / 1000.0;
    config
        .servers
        .iter()
        .map(|(name, s)| {
            let r = servers.get(name);
            let totals = r.map_or([0; 3], |r| r.totals);
            let hour = r.map_or([0; 3], |r| r.hour);
            let failed_percent = percent(hour[1], hour[0]);
            let mut flags = Vec::new();
            if failed_percent.is_some_and(|f| f > config.alerts.failed_requests_percent) {
                flags.push("failed_requests");
            }
            let health = health.get(name).cloned();
            if health.as_ref().is_some_and(|h| h.state == "down") {
                flags.push("down");
            }
            ServerView {
                name: name.clone(),
                kind: s.kind.name(),
                requests: totals[0],
                failed_requests: totals[1],
                throttled: totals[2],
                requests_last_hour: hour[0],
                failed_requests_last_hour: hour[1],
                throttled_last_hour: hour[2],
                failed_requests_percent: failed_percent,
                rate_per_second: r.map_or(0.0, |r| {
                    (r.recent as f64 / (60.0 + seconds_this_minute) * 100.0).round() / 100.0
                }),
                health,
                alerts: flags,
            }
        })
        .collect()
}

/// Each agent: live figures while `run` serves, else the plan; items per agent from the plan.
fn agent_views(config: &Config, live: &Live, items: &HashMap<String, i64>) -> Vec<AgentView> {
    let agents = match live.agents.is_empty() {
        false => live
            .agents
            .iter()
            .map(|a| AgentView {
                agent: a.index,
                processor: a.processor,
                pairs: a.pairs,
                items: 0,
                passes: Some(a.passes.load(std::sync::atomic::Ordering::Relaxed)),
                busy_seconds: Some((a.busy_seconds() * 1000.0).round() / 1000.0),
            })
            .collect::<Vec<_>>(),
        true => Vec::new(),
    };
    // Items per agent come from the plan, which the live figures do not carry.
    let planned = crate::service::pool::plan(config);
    let agents = if agents.is_empty() {
        planned
            .iter()
            .map(|s| AgentView {
                agent: s.index,
                processor: s.processor,
                pairs: s.pairs.len(),
                items: 0,
                passes: None,
                busy_seconds: None,
            })
            .collect()
    } else {
        agents
    };
    agents
        .into_iter()
        .map(|mut a| {
            if let Some(s) = planned.iter().find(|s| s.index == a.agent) {
                a.items = s
                    .pairs
                    .iter()
                    .map(|p| items.get(p.id.as_str()).copied().unwrap_or(0))
                    .sum();
            }
            a
        })
        .collect()
}

/// Seconds for people: "0s", "4m 12s", "2h 5m".
pub fn human_seconds(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        3600..86400 => format!("{}h {}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d {}h", s / 86400, (s % 86400) / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_and_durations_for_people() {
        assert_eq!(percent(0, 0), None);
        assert_eq!(percent(1, 3), Some(33.3));
        assert_eq!(percent(4, 4), Some(100.0));
        assert_eq!(human_seconds(0.4), "0s");
        assert_eq!(human_seconds(252.0), "4m 12s");
        assert_eq!(human_seconds(7500.0), "2h 5m");
        assert_eq!(human_seconds(90000.0), "1d 1h");
    }
}
