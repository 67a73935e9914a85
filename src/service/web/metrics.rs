//! Prometheus `/metrics`: aggregate series, always, and per-pair series for as many pairs as
//! `[http] metrics_pairs` allows (past it the failing ones), encoded from one snapshot.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

use axum::extract::State as Extract;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::service::observe::{PairView, Snapshot};
use crate::service::rollup::{Outcome, lag_buckets, mailboxes, outcomes, series_pairs};

use super::shared::{Shared, Unavailable, snap};

pub(super) async fn metrics(Extract(web): Extract<Shared>) -> Result<Response, Unavailable> {
    let s = snap(&web).await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        encode_metrics(&s, web.config.http.metrics_pairs),
    )
        .into_response())
}

type Labels = Vec<(&'static str, String)>;
type FloatGauge = Gauge<f64, AtomicU64>;

/// Registers a labelled metric family.
fn family<M>(reg: &mut Registry, name: &str, help: &str) -> Family<Labels, M>
where
    M: prometheus_client::metrics::TypedMetric
        + prometheus_client::encoding::EncodeMetric
        + Default
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let f = Family::<Labels, M>::default();
    reg.register(name, help, f.clone());
    f
}

fn gauge(reg: &mut Registry, name: &str, help: &str) -> Family<Labels, Gauge> {
    family(reg, name, help)
}

fn float(reg: &mut Registry, name: &str, help: &str) -> Family<Labels, FloatGauge> {
    family(reg, name, help)
}

fn counter(reg: &mut Registry, name: &str, help: &str) -> Family<Labels, Counter> {
    family(reg, name, help)
}

/// The snapshot in the Prometheus (OpenMetrics) text format, with series of their own for at
/// most `pair_limit` pairs.
pub fn encode_metrics(s: &Snapshot, pair_limit: usize) -> String {
    let mut reg = Registry::with_prefix("tandem");
    let pairs = series_pairs(&s.pairs, pair_limit);
    aggregate_metrics(&mut reg, s, pairs.len());
    pair_flow_metrics(&mut reg, &pairs);
    pair_state_metrics(&mut reg, &pairs);
    server_metrics(&mut reg, s);
    agent_metrics(&mut reg, s);
    node_metrics(&mut reg, s);
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &reg).expect("writing to a String");
    out
}

/// Over every pair: pairs by state, by lag and by alert, mailboxes by outcome, items, backlog,
/// quarantine and writes in total, failing pairs per server; and how many pairs have no series
/// of their own.
fn aggregate_metrics(reg: &mut Registry, s: &Snapshot, with_series: usize) {
    let by_state = gauge(reg, "pairs", "Pairs per state");
    for (st, n) in &s.states {
        by_state
            .get_or_create(&vec![("state", st.to_string())])
            .set(*n as i64);
    }
    let by_lag = gauge(reg, "pairs_lag", "Pairs whose lag is at most `le` seconds");
    for (le, n) in lag_buckets(&s.pairs) {
        let le = if le.is_finite() {
            le.to_string()
        } else {
            "+Inf".to_string()
        };
        by_lag.get_or_create(&vec![("le", le)]).set(n as i64);
    }
    let alerting = gauge(
        reg,
        "pairs_alerting",
        "Pairs over an [alerts] threshold, by alert",
    );
    for a in ["lag", "failed_requests"] {
        let n = s.pairs.iter().filter(|p| p.alerts.contains(&a)).count();
        alerting
            .get_or_create(&vec![("alert", a.to_string())])
            .set(n as i64);
    }
    let outcome = gauge(
        reg,
        "mailboxes",
        "Mailboxes by outcome: done, syncing, failing",
    );
    let real: Vec<_> = (mailboxes(&s.pairs).into_iter())
        .filter(|m| m.mailbox)
        .collect();
    for (o, n) in outcomes(&real) {
        outcome
            .get_or_create(&vec![("outcome", o.to_string())])
            .set(n as i64);
    }
    let total = |name: &str, help: &str, f: Figure| {
        let g: Gauge = Gauge::default();
        g.set(s.pairs.iter().map(f).sum());
        (name.to_string(), help.to_string(), g)
    };
    for (name, help, g) in [
        total("items", "Items in step over every pair", |p| p.items),
        total(
            "backlog",
            "Source changes seen but not yet applied, over every pair",
            |p| p.backlog,
        ),
        total(
            "quarantined_items",
            "Quarantined items over every pair",
            |p| p.quarantined,
        ),
    ] {
        reg.register(name, help, g);
    }
    let writes = counter(
        reg,
        "writes",
        "Writes over every pair since each was first synced, by kind",
    );
    for (kind, f) in WRITES {
        let n: i64 = s.pairs.iter().map(f).sum();
        writes
            .get_or_create(&vec![("kind", kind.to_string())])
            .inc_by(n.max(0) as u64);
    }
    let failing = gauge(
        reg,
        "server_failing_pairs",
        "Failing pairs with a calendar on the server",
    );
    for v in &s.servers {
        let on = |c: &str| c.split_once(':').is_some_and(|(srv, _)| srv == v.name);
        let n = (s.pairs.iter())
            .filter(|p| (on(&p.source) || on(&p.target)) && Outcome::of(p) == Outcome::Failing)
            .count();
        failing
            .get_or_create(&vec![("server", v.name.clone())])
            .set(n as i64);
    }
    let omitted: Gauge = Gauge::default();
    omitted.set((s.pairs.len() - with_series) as i64);
    reg.register(
        "pairs_without_series",
        "Pairs past [http] metrics_pairs that have no series of their own (the API has them)",
        omitted,
    );
}

/// One figure of a pair.
type Figure = fn(&PairView) -> i64;

/// A pair's writes by kind.
const WRITES: [(&str, Figure); 4] = [
    ("created", |p| p.created),
    ("updated", |p| p.updated),
    ("deleted", |p| p.deleted),
    ("adopted", |p| p.adopted),
];

/// Per pair: lag, backlog, items, quarantine, writes and requests.
fn pair_flow_metrics(reg: &mut Registry, pairs: &[&PairView]) {
    let lag = float(
        reg,
        "pair_lag_seconds",
        "How long the oldest source change not yet in the target has been waiting (0 when current)",
    );
    let backlog = gauge(
        reg,
        "pair_backlog",
        "Source changes seen but not yet applied to the target",
    );
    let items = gauge(
        reg,
        "pair_items",
        "Items in step (source item -> target copy)",
    );
    let quarantined = gauge(
        reg,
        "pair_quarantined_items",
        "Source items quarantined after repeated permanent failures",
    );
    let writes = counter(
        reg,
        "pair_writes",
        "Writes to the target since the pair was first synced, by kind",
    );
    let requests = gauge(
        reg,
        "pair_requests_last_hour",
        "HTTP requests of the pair's passes over the last hour",
    );
    let failed = gauge(
        reg,
        "pair_failed_requests_last_hour",
        "Requests of the pair's passes over the last hour that got no usable answer",
    );
    let failed_pct = float(
        reg,
        "pair_failed_requests_percent",
        "Failed requests over the last hour, in percent of the pair's requests",
    );
    for p in pairs {
        let l = || vec![("pair", p.id.clone())];
        lag.get_or_create(&l()).set(p.lag_seconds);
        backlog.get_or_create(&l()).set(p.backlog);
        items.get_or_create(&l()).set(p.items);
        quarantined.get_or_create(&l()).set(p.quarantined);
        for (kind, f) in WRITES {
            writes
                .get_or_create(&vec![("pair", p.id.clone()), ("kind", kind.to_string())])
                .inc_by(f(p).max(0) as u64);
        }
        requests.get_or_create(&l()).set(p.requests_last_hour);
        failed.get_or_create(&l()).set(p.failed_requests_last_hour);
        if let Some(f) = p.failed_requests_percent {
            failed_pct.get_or_create(&l()).set(f);
        }
    }
}

/// Per pair: state, direction, cutover, last success, alerts and push.
fn pair_state_metrics(reg: &mut Registry, pairs: &[&PairView]) {
    let state = gauge(
        reg,
        "pair_state",
        "1 for the pair's current state (active, paused, backoff, disabled, new)",
    );
    let success = gauge(
        reg,
        "pair_last_success_timestamp_seconds",
        "Unix time of the pair's last pass that applied everything",
    );
    let alert = gauge(
        reg,
        "pair_alert",
        "1 when the pair is over an [alerts] threshold (alert = lag or failed_requests)",
    );
    let way = gauge(
        reg,
        "pair_direction",
        "1 for the pair's direction (one-way, two-way) and authority (source, target)",
    );
    let cutover = gauge(
        reg,
        "pair_cutover_timestamp_seconds",
        "Unix time the pair was cut over (its target became the authority)",
    );
    let push_driven = gauge(
        reg,
        "pair_push_driven",
        "1 when both calendars of the pair push their changes (WebDAV-Push), else 0",
    );
    let last_push = gauge(
        reg,
        "pair_last_push_timestamp_seconds",
        "Unix time a push for one of the pair's calendars last arrived",
    );
    for p in pairs {
        let l = || vec![("pair", p.id.clone())];
        push_driven
            .get_or_create(&l())
            .set(i64::from(p.push_driven));
        if let Some(t) = p.last_push_at {
            last_push.get_or_create(&l()).set(t / 1000);
        }
        state
            .get_or_create(&vec![
                ("pair", p.id.clone()),
                ("state", p.state.to_string()),
            ])
            .set(1);
        if let Some(t) = p.last_success_at {
            success.get_or_create(&l()).set(t / 1000);
        }
        way.get_or_create(&vec![
            ("pair", p.id.clone()),
            ("direction", p.direction.to_string()),
            ("authority", p.authority.to_string()),
        ])
        .set(1);
        if let Some(t) = p.cutover_at {
            cutover.get_or_create(&l()).set(t / 1000);
        }
        for a in &p.alerts {
            alert
                .get_or_create(&vec![("pair", p.id.clone()), ("alert", a.to_string())])
                .set(1);
        }
    }
}

/// Per server: requests, failures, throttling, rate and alerts.
fn server_metrics(reg: &mut Registry, s: &Snapshot) {
    let srv_requests = counter(
        reg,
        "server_requests",
        "HTTP requests sent to the server, retries included",
    );
    let srv_failed = counter(
        reg,
        "server_failed_requests",
        "Requests to the server that got no usable answer",
    );
    let srv_throttled = counter(
        reg,
        "server_throttled",
        "Throttled answers (429, 503 with Retry-After)",
    );
    let srv_rate = float(
        reg,
        "server_requests_per_second",
        "Request rate over about the last minute",
    );
    let srv_pct = float(
        reg,
        "server_failed_requests_percent",
        "Failed requests over the last hour, in percent",
    );
    let srv_alert = gauge(
        reg,
        "server_alert",
        "1 when the server is over the failed_requests_percent threshold or down",
    );
    let srv_up = gauge(
        reg,
        "server_up",
        "1 while the server answers, 0 while it is down and its pairs wait on it",
    );
    for v in &s.servers {
        if let Some(h) = &v.health {
            srv_up
                .get_or_create(&vec![("server", v.name.clone())])
                .set(i64::from(h.state == "up"));
        }
        let l = || vec![("server", v.name.clone())];
        srv_requests.get_or_create(&l()).inc_by(v.requests as u64);
        srv_failed
            .get_or_create(&l())
            .inc_by(v.failed_requests as u64);
        srv_throttled.get_or_create(&l()).inc_by(v.throttled as u64);
        srv_rate.get_or_create(&l()).set(v.rate_per_second);
        if let Some(f) = v.failed_requests_percent {
            srv_pct.get_or_create(&l()).set(f);
        }
        srv_alert
            .get_or_create(&l())
            .set(i64::from(!v.alerts.is_empty()));
    }
}

/// Per agent, and the machine's processors.
fn agent_metrics(reg: &mut Registry, s: &Snapshot) {
    let ag_pairs = gauge(reg, "agent_pairs", "Pairs assigned to the agent");
    let ag_busy = float(
        reg,
        "agent_busy_seconds",
        "Processor time the agent's thread has used",
    );
    let ag_passes = counter(reg, "agent_passes", "Passes the agent finished");
    for a in &s.agents {
        let l = || {
            vec![
                ("agent", a.agent.to_string()),
                ("processor", a.processor.to_string()),
            ]
        };
        ag_pairs.get_or_create(&l()).set(a.pairs as i64);
        if let Some(b) = a.busy_seconds {
            ag_busy.get_or_create(&l()).set(b);
        }
        if let Some(n) = a.passes {
            ag_passes.get_or_create(&l()).inc_by(n);
        }
    }
    let online: Gauge = Gauge::default();
    online.set(s.online_processors as i64);
    reg.register(
        "online_processors",
        "Processors online on this machine",
        online,
    );
    let idle: Gauge = Gauge::default();
    idle.set(idle_processors(s).len() as i64);
    reg.register("idle_processors", "Online processors with no agent", idle);
}

/// Per node sharing the state.
fn node_metrics(reg: &mut Registry, s: &Snapshot) {
    let up = gauge(
        reg,
        "node_up",
        "1 while the node heartbeats, 0 once stopped or dead",
    );
    let pairs = gauge(reg, "node_pairs", "Pairs the node holds claims on");
    let age = float(
        reg,
        "node_heartbeat_age_seconds",
        "Seconds since the node's last heartbeat (the database's clock)",
    );
    for n in &s.nodes {
        let l = vec![("node", n.id.clone())];
        up.get_or_create(&l).set(i64::from(n.status == "alive"));
        pairs.get_or_create(&l).set(n.pairs);
        age.get_or_create(&l)
            .set(n.heartbeat_age_ms as f64 / 1000.0);
    }
}

/// Online processors no agent runs on.
fn idle_processors(s: &Snapshot) -> Vec<usize> {
    (0..s.online_processors)
        .filter(|p| !s.agents.iter().any(|a| a.processor == *p))
        .collect()
}
