//! What `tandem run` serves on `[http] listen`: the status page, the JSON API, Prometheus
//! `/metrics` and `/healthz`. Everything is read from the state store through `observe`, so the
//! page, the API, the metrics and `tandem status` agree. The page is self-contained (styles
//! inline, no scripts from elsewhere) and reloads itself.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::collections::HashSet;
use std::fmt::Write as _;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, State as Extract};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use tracing::{info, warn};

use crate::config::Config;
use crate::engine::{Engine, PassOptions};
use crate::service::observe::{Live, PairView, Snapshot, human_seconds, snapshot};
use crate::state::State;

/// How often the page reloads itself.
const REFRESH_SECONDS: u32 = 10;
/// Pairs and quarantined items listed on the page (the API has them all).
const PAGE_ROWS: usize = 50;

pub struct Web {
    pub config: Arc<Config>,
    pub state: State,
    pub engine: Arc<Engine>,
    pub live: Live,
    /// The bearer token `POST /api/pairs/{id}/resync` asks for.
    pub token: Option<SecretString>,
    /// Pairs with a resync asked for over HTTP and still running.
    resyncing: Mutex<HashSet<String>>,
}

impl Web {
    /// `token`: from `HttpConfig::token`, read once at start.
    pub fn new(
        config: Arc<Config>,
        state: State,
        engine: Arc<Engine>,
        live: Live,
        token: Option<SecretString>,
    ) -> Web {
        Web {
            config,
            state,
            engine,
            live,
            token,
            resyncing: Mutex::default(),
        }
    }
}

type Shared = Arc<Web>;

pub fn router(web: Shared) -> Router {
    let pages = Router::new()
        .route("/", get(page))
        .route("/pairs/{id}", get(pair_page))
        .route("/api/pairs", get(api_pairs))
        .route("/api/pairs/{id}", get(api_pair))
        .route("/api/pairs/{id}/resync", post(api_resync))
        .route("/api/pairs/{id}/cutover", post(api_cutover))
        .route("/api/pairs/{id}/cutover/undo", post(api_cutover_undo))
        .route("/api/agents", get(api_agents))
        .route("/api/servers", get(api_servers))
        .route("/api/leases", get(api_leases))
        .route("/api/nodes", get(api_nodes))
        .route("/api/quarantine", get(api_quarantine))
        .route("/metrics", get(metrics));
    let pages = match web.config.http.protect_pages {
        true => pages.route_layer(axum::middleware::from_fn_with_state(web.clone(), guard)),
        false => pages,
    };
    // Servers pushing calendar changes carry no token: the unguessable URL is the credential.
    pages
        .route("/healthz", get(healthz))
        .route("/push/{token}", post(push))
        .with_state(web)
}

/// A WebDAV-Push delivery: its calendar's pair is due at once. The body (encrypted) is not
/// read: the token says which calendar changed, and nothing else of a push is trusted.
async fn push(Extract(web): Extract<Shared>, Path(token): Path<String>) -> Response {
    let Some(hub) = &web.live.push else {
        return StatusCode::NOT_FOUND.into_response();
    };
    match hub.received(&web.state, &token).await {
        Ok(true) => StatusCode::CREATED.into_response(),
        // 404 ends the subscription on the server (a forged or stale URL).
        Ok(false) => StatusCode::NOT_FOUND.into_response(),
        Err(e) => {
            warn!(error = %e, "recording a push failed; the pair is woken anyway by its next poll");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}

/// `[http] protect_pages`: no page or call without the bearer token.
async fn guard(
    Extract(web): Extract<Shared>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = request.uri().path().to_string();
    match refused(&web, request.headers(), "reading the status", &path) {
        Some(refusal) => refusal,
        None => next.run(request).await,
    }
}

/// A state-store failure, answered as 503 with the reason.
struct Unavailable(String);

impl IntoResponse for Unavailable {
    fn into_response(self) -> Response {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({ "error": self.0 })),
        )
            .into_response()
    }
}

impl From<crate::state::StateError> for Unavailable {
    fn from(e: crate::state::StateError) -> Self {
        Unavailable(e.to_string())
    }
}

async fn snap(web: &Web) -> Result<Snapshot, Unavailable> {
    Ok(snapshot(&web.config, &web.state, &web.live).await?)
}

fn not_found(what: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(json!({ "error": format!("no pair with id {what:?}") })),
    )
        .into_response()
}

async fn api_pairs(Extract(web): Extract<Shared>) -> Result<Response, Unavailable> {
    let s = snap(&web).await?;
    Ok(axum::Json(json!({ "generated_at": s.generated_at, "pairs": s.pairs })).into_response())
}

async fn api_pair(
    Extract(web): Extract<Shared>,
    Path(id): Path<String>,
) -> Result<Response, Unavailable> {
    let s = snap(&web).await?;
    let Some(pair) = s.pairs.into_iter().find(|p| p.id == id) else {
        return Ok(not_found(&id));
    };
    let passes = web.state.passes(&id, 20).await?;
    let items = web
        .state
        .quarantine_list(web.config.pair(&id).map(|p| &p.id))
        .await?;
    Ok(axum::Json(json!({ "pair": pair, "passes": passes, "quarantine": items })).into_response())
}

async fn api_agents(Extract(web): Extract<Shared>) -> Result<Response, Unavailable> {
    let s = snap(&web).await?;
    Ok(axum::Json(json!({
        "online_processors": s.online_processors,
        "agents": s.agents,
        "warning": s.agents_warning,
    }))
    .into_response())
}

async fn api_servers(Extract(web): Extract<Shared>) -> Result<Response, Unavailable> {
    let s = snap(&web).await?;
    Ok(axum::Json(json!({ "servers": s.servers })).into_response())
}

async fn api_nodes(Extract(web): Extract<Shared>) -> Result<Response, Unavailable> {
    let s = snap(&web).await?;
    Ok(axum::Json(json!({ "nodes": s.nodes })).into_response())
}

async fn api_leases(Extract(web): Extract<Shared>) -> Result<Response, Unavailable> {
    let s = snap(&web).await?;
    Ok(axum::Json(json!({ "leases": s.leases })).into_response())
}

async fn api_quarantine(Extract(web): Extract<Shared>) -> Result<Response, Unavailable> {
    let items = web.state.quarantine_list(None).await?;
    Ok(axum::Json(json!({ "items": items })).into_response())
}

/// Compares in time independent of where the first difference is.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn unauthorized(reason: &str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        axum::Json(json!({ "error": reason })),
    )
        .into_response()
}

/// `None` when the request carries the bearer token; else the refusal to answer with.
fn refused(web: &Web, headers: &HeaderMap, what: &str, id: &str) -> Option<Response> {
    let Some(token) = &web.token else {
        return Some(unauthorized(&format!(
            "{what} over HTTP needs a bearer token: set [http] token_env"
        )));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        None => Some(unauthorized("missing bearer token")),
        Some(t) if !same(t.as_bytes(), token.expose_secret().as_bytes()) => {
            warn!(about = %id, "{what} refused: wrong bearer token");
            Some(unauthorized("wrong bearer token"))
        }
        Some(_) => None,
    }
}

/// Cuts a pair over, as `tandem cutover` does.
async fn api_cutover(
    Extract(web): Extract<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    cutover(web, id, headers, false).await
}

/// Rolls a cutover back, as `tandem cutover --undo` does.
async fn api_cutover_undo(
    Extract(web): Extract<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    cutover(web, id, headers, true).await
}

async fn cutover(web: Shared, id: String, headers: HeaderMap, undo: bool) -> Response {
    if let Some(refusal) = refused(&web, &headers, "cutover", &id) {
        return refusal;
    }
    let Some(pair) = web.config.pair(&id).cloned() else {
        return not_found(&id);
    };
    if !undo && let Err(e) = web.config.rewrite.inverse() {
        let body = json!({ "pair": id, "error": format!("rewrite: {e}") });
        return (StatusCode::UNPROCESSABLE_ENTITY, axum::Json(body)).into_response();
    }
    match web.engine.cutover(&pair, undo).await {
        Ok(Ok(changed)) => {
            info!(pair = %id, undo = undo, changed, "cutover asked for over HTTP");
            let authority = if undo { "source" } else { "target" };
            let body = json!({ "pair": id, "authority": authority, "changed": changed });
            (StatusCode::OK, axum::Json(body)).into_response()
        }
        Ok(Err(locked)) => {
            let body = json!({ "pair": id, "error": format!("calendar {}: {locked}; try again", locked.calendar) });
            (StatusCode::CONFLICT, axum::Json(body)).into_response()
        }
        Err(e) => Unavailable::from(e).into_response(),
    }
}

/// Starts a one-shot resync of a pair (the lease keeps it from racing the pair's own agent).
async fn api_resync(
    Extract(web): Extract<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(refusal) = refused(&web, &headers, "resync", &id) {
        return refusal;
    }
    let Some(pair) = web.config.pair(&id).cloned() else {
        return not_found(&id);
    };
    if !web
        .resyncing
        .lock()
        .expect("not poisoned")
        .insert(id.clone())
    {
        return (
            StatusCode::CONFLICT,
            axum::Json(json!({ "pair": id, "error": "a resync of this pair is already running" })),
        )
            .into_response();
    }
    info!(pair = %id, "resync asked for over HTTP");
    let task = web.clone();
    tokio::spawn(async move {
        let opts = PassOptions {
            dry_run: false,
            full: true,
            force_delete: false,
        };
        match task.engine.sync_pair(&pair, opts).await {
            Ok(r) => match &r.error {
                Some(e) => warn!(pair = %pair.id, error = %e, "resync failed"),
                None => {
                    info!(pair = %pair.id, created = r.created, updated = r.updated, deleted = r.deleted, failed = r.failed, "resync finished")
                }
            },
            Err(e) => warn!(pair = %pair.id, error = %e, "resync failed: state store"),
        }
        task.resyncing
            .lock()
            .expect("not poisoned")
            .remove(pair.id.as_str());
    });
    (
        StatusCode::ACCEPTED,
        axum::Json(json!({ "pair": id, "resync": "started" })),
    )
        .into_response()
}

async fn healthz(Extract(web): Extract<Shared>) -> Response {
    if let Some(Err(reason)) = web.live.membership.as_ref().map(|m| m.health()) {
        return (StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")).into_response();
    }
    match web.state.ping().await {
        Ok(_) => (StatusCode::OK, "ok\n").into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the state database does not answer: {e}\n"),
        )
            .into_response(),
    }
}

async fn metrics(Extract(web): Extract<Shared>) -> Result<Response, Unavailable> {
    let s = snap(&web).await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        encode_metrics(&s),
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

/// The snapshot in the Prometheus (OpenMetrics) text format.
pub fn encode_metrics(s: &Snapshot) -> String {
    let mut reg = Registry::with_prefix("tandem");
    pair_metrics(&mut reg, s);
    server_metrics(&mut reg, s);
    agent_metrics(&mut reg, s);
    node_metrics(&mut reg, s);
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &reg).expect("writing to a String");
    out
}

/// Per pair, and pairs per state.
fn pair_metrics(reg: &mut Registry, s: &Snapshot) {
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
    let by_state = gauge(reg, "pairs", "Pairs per state");
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
    for p in &s.pairs {
        let l = || vec![("pair", p.id.clone())];
        push_driven
            .get_or_create(&l())
            .set(i64::from(p.push_driven));
        if let Some(t) = p.last_push_at {
            last_push.get_or_create(&l()).set(t / 1000);
        }
        lag.get_or_create(&l()).set(p.lag_seconds);
        backlog.get_or_create(&l()).set(p.backlog);
        items.get_or_create(&l()).set(p.items);
        quarantined.get_or_create(&l()).set(p.quarantined);
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
        for (kind, n) in [
            ("created", p.created),
            ("updated", p.updated),
            ("deleted", p.deleted),
            ("adopted", p.adopted),
        ] {
            writes
                .get_or_create(&vec![("pair", p.id.clone()), ("kind", kind.to_string())])
                .inc_by(n.max(0) as u64);
        }
        requests.get_or_create(&l()).set(p.requests_last_hour);
        failed.get_or_create(&l()).set(p.failed_requests_last_hour);
        if let Some(f) = p.failed_requests_percent {
            failed_pct.get_or_create(&l()).set(f);
        }
        for a in &p.alerts {
            alert
                .get_or_create(&vec![("pair", p.id.clone()), ("alert", a.to_string())])
                .set(1);
        }
    }
    for (st, n) in &s.states {
        by_state
            .get_or_create(&vec![("state", st.to_string())])
            .set(*n as i64);
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

/// Escapes text for HTML.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Escapes a path segment for a link.
fn seg(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b => format!("%{b:02X}"),
        })
        .collect()
}

const STYLE: &str = "
body{font:14px/1.4 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;background:#f4f5f7;color:#1d2330}
header{background:#1d2330;color:#fff;padding:10px 20px;display:flex;gap:16px;align-items:baseline}
header h1{font-size:18px;margin:0}header a{color:#fff}header small{color:#aab}
main{padding:16px 20px;display:grid;grid-template-columns:repeat(auto-fit,minmax(420px,1fr));gap:16px}
section{background:#fff;border-radius:6px;padding:12px 14px;box-shadow:0 1px 2px #0002;overflow-x:auto;min-width:0}
section.wide{grid-column:1/-1}h2{font-size:15px;margin:0 0 8px}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:3px 6px;border-bottom:1px solid #eceef2;vertical-align:top}
th{font-weight:600;color:#556}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.cards{display:flex;flex-wrap:wrap;gap:8px}.card{border-radius:6px;padding:8px 12px;min-width:80px;background:#eef1f6}
.card b{display:block;font-size:22px}.st-active{color:#17803d}.st-paused{color:#b26b00}.st-backoff,.alert{color:#c62828}
.st-disabled,.st-new{color:#667}.bar{background:#4a78c2;height:14px;border-radius:2px;display:inline-block;vertical-align:middle}
.procs{display:flex;flex-wrap:wrap;gap:8px}.proc{border:2px solid #4a78c2;border-radius:6px;padding:6px 10px;min-width:120px}
.proc.idle{border-color:#c62828;background:#fdecea}.warn{background:#fdecea;color:#8e1b1b;padding:8px 10px;border-radius:6px;margin-bottom:8px}
.muted{color:#778}code{font-size:12px}
";

fn head(title: &str, generated_at: i64) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\">\
         <title>{}</title><style>{STYLE}</style></head><body>\
         <header><h1><a href=\"/\">tandem</a></h1><span>{}</span>\
         <small id=\"generated\">as of {} · refreshes every {REFRESH_SECONDS} s</small></header><main>",
        esc(title),
        esc(title),
        esc(&crate::domain::time::utc(generated_at)),
    )
}

fn ago(now: i64, t: Option<i64>) -> String {
    match t {
        None => "-".into(),
        Some(t) if t <= now => format!("{} ago", human_seconds((now - t) as f64 / 1000.0)),
        Some(t) => format!("in {}", human_seconds((t - now) as f64 / 1000.0)),
    }
}

fn percent(p: Option<f64>) -> String {
    p.map_or("-".into(), |p| format!("{p:.1}%"))
}

/// One row of the pairs table.
fn pair_row(out: &mut String, p: &PairView, now: i64) {
    let why = p
        .reason
        .clone()
        .or_else(|| p.last_run.as_ref().and_then(|r| r.error.clone()));
    let lock = p.lock.as_ref().map_or(String::new(), |l| {
        format!("{} ({})", esc(&l.holder), l.kind)
    });
    let _ = write!(
        out,
        "<tr data-pair=\"{id}\" data-state=\"{st}\"><td><a href=\"/pairs/{link}\">{id}</a></td>\
         <td class=\"st-{st}\">{st}</td><td class=\"way\">{way}</td><td class=\"n{lagc}\">{lag}</td><td class=\"n\">{backlog}</td>\
         <td class=\"n\">{items}</td><td class=\"n\">{quar}</td><td class=\"n{failc}\">{fail}</td>\
         <td>{success}</td><td>{node}</td><td>{lock}</td><td>{why}</td></tr>",
        id = esc(&p.id),
        link = seg(&p.id),
        st = p.state,
        way = way(p),
        lagc = if p.alerts.contains(&"lag") {
            " alert"
        } else {
            ""
        },
        lag = human_seconds(p.lag_seconds),
        backlog = p.backlog,
        items = p.items,
        quar = p.quarantined,
        failc = if p.alerts.contains(&"failed_requests") {
            " alert"
        } else {
            ""
        },
        fail = percent(p.failed_requests_percent),
        success = ago(now, p.last_success_at),
        node = esc(p.node.as_deref().unwrap_or("-")),
        why = esc(why.as_deref().unwrap_or("")),
    );
}

/// Direction and authority for people: `one-way`, `two-way`, with `cut over` once the target is
/// the truth.
fn way(p: &PairView) -> String {
    let push = if p.push_driven { ", push" } else { "" };
    match p.cutover_at {
        Some(_) => format!("{}, cut over{push}", p.direction),
        None => format!("{}{push}", p.direction),
    }
}

const PAIR_HEADER: &str = "<tr><th>pair</th><th>state</th><th>direction</th><th class=\"n\">lag</th>\
    <th class=\"n\">backlog</th><th class=\"n\">items</th><th class=\"n\">quarantined</th>\
    <th class=\"n\">failed req.</th><th>last success</th><th>node</th><th>lease</th><th>reason / last error</th></tr>";

/// Lag buckets of the histogram: upper bound in seconds and label.
const LAG_BUCKETS: [(f64, &str); 6] = [
    (0.0, "current"),
    (60.0, "< 1 min"),
    (300.0, "1–5 min"),
    (1200.0, "5–20 min"),
    (3600.0, "20–60 min"),
    (f64::INFINITY, "> 1 h"),
];

pub fn render_page(
    s: &Snapshot,
    quarantine: &[crate::domain::pairstate::QuarantineEntry],
) -> String {
    let mut out = head("status", s.generated_at);
    totals(&mut out, s);
    lag_histogram(&mut out, s);
    processors(&mut out, s);
    servers(&mut out, s);
    worst_pairs(&mut out, s);
    nodes(&mut out, s);
    leases(&mut out, s);
    quarantine_table(&mut out, quarantine);
    out.push_str("</main></body></html>");
    out
}

/// Totals by state, quarantined items and pairs over an alert.
fn totals(out: &mut String, s: &Snapshot) {
    let alerts = s.pairs.iter().filter(|p| !p.alerts.is_empty()).count();
    out.push_str(
        "<section class=\"wide\"><h2>Pairs by state</h2><div class=\"cards\" id=\"totals\">",
    );
    for st in ["active", "paused", "backoff", "disabled", "new"] {
        let n = s.states.get(st).copied().unwrap_or(0);
        let _ = write!(
            out,
            "<div class=\"card\" data-state=\"{st}\"><b class=\"st-{st}\">{n}</b>{st}</div>"
        );
    }
    let _ = write!(
        out,
        "<div class=\"card\" data-total=\"quarantined\"><b>{}</b>quarantined items</div>\
         <div class=\"card\" data-total=\"alerts\"><b class=\"{}\">{alerts}</b>pairs over an alert</div></div></section>",
        s.quarantined,
        if alerts > 0 { "alert" } else { "" }
    );
}

/// How many pairs lag by how much.
fn lag_histogram(out: &mut String, s: &Snapshot) {
    let mut counts = [0usize; LAG_BUCKETS.len()];
    for p in &s.pairs {
        let i = LAG_BUCKETS
            .iter()
            .position(|(upper, _)| p.lag_seconds <= *upper)
            .unwrap_or(LAG_BUCKETS.len() - 1);
        counts[i] += 1;
    }
    let most = counts.iter().copied().max().unwrap_or(0).max(1);
    let _ = write!(
        out,
        "<section><h2>Lag</h2><p class=\"muted\">alert above {}</p><table id=\"lag-histogram\">",
        human_seconds(s.alerts.lag_seconds)
    );
    for ((_, label), n) in LAG_BUCKETS.iter().zip(counts) {
        let _ = write!(
            out,
            "<tr data-bucket=\"{label}\"><td>{label}</td><td class=\"n\">{n}</td>\
             <td style=\"width:60%\"><span class=\"bar\" style=\"width:{}%\"></span></td></tr>",
            n * 100 / most
        );
    }
    out.push_str("</table></section>");
}

/// Agents per processor; an idle processor is drawn red.
fn processors(out: &mut String, s: &Snapshot) {
    out.push_str("<section><h2>Agents per processor</h2>");
    if let Some(w) = &s.agents_warning {
        let _ = write!(
            out,
            "<div class=\"warn\" id=\"agents-warning\">{}</div>",
            esc(w)
        );
    }
    out.push_str("<div class=\"procs\" id=\"processors\">");
    let top = s
        .agents
        .iter()
        .map(|a| a.processor + 1)
        .max()
        .unwrap_or(0)
        .max(s.online_processors);
    for proc in 0..top {
        let here: Vec<_> = s.agents.iter().filter(|a| a.processor == proc).collect();
        let class = if here.is_empty() { "proc idle" } else { "proc" };
        let _ = write!(
            out,
            "<div class=\"{class}\" data-processor=\"{proc}\" data-agents=\"{}\"><b>processor {proc}</b>",
            here.len()
        );
        if here.is_empty() {
            out.push_str("<div>idle: no agent</div>");
        }
        for a in here {
            let _ = write!(
                out,
                "<div data-agent=\"{}\">agent {}: {} pairs, {} items{}</div>",
                a.agent,
                a.agent,
                a.pairs,
                a.items,
                a.busy_seconds
                    .map_or(String::new(), |b| format!(", busy {b:.2} s"))
            );
        }
        out.push_str("</div>");
    }
    out.push_str("</div></section>");
}

/// Each server's requests of the last hour.
fn servers(out: &mut String, s: &Snapshot) {
    out.push_str(
        "<section class=\"wide\"><h2>Servers</h2><table id=\"servers\"><tr><th>server</th><th>kind</th>\
         <th class=\"n\">requests (1 h)</th><th class=\"n\">failed</th><th class=\"n\">throttled</th>\
         <th class=\"n\">rate</th><th>state</th></tr>",
    );
    for v in &s.servers {
        let state = match &v.health {
            None => "—".to_string(),
            Some(h) if h.state == "up" => "up".to_string(),
            Some(h) => format!(
                "down since {}, {} probe(s), next in {} s: {}",
                crate::domain::time::utc(h.down_since.unwrap_or(0)),
                h.probes,
                h.next_probe_in_ms.unwrap_or(0) / 1000,
                esc(h.last_error.as_deref().unwrap_or(""))
            ),
        };
        let _ = write!(
            out,
            "<tr data-server=\"{name}\"><td>{name}</td><td>{kind}</td><td class=\"n\">{req}</td>\
             <td class=\"n{alert}\">{fail}</td><td class=\"n\">{thr}</td><td class=\"n\">{rate:.2}/s</td>\
             <td class=\"state{down}\">{state}</td></tr>",
            down = if v.alerts.contains(&"down") {
                " alert"
            } else {
                ""
            },
            name = esc(&v.name),
            kind = v.kind,
            req = v.requests_last_hour,
            alert = if v.alerts.is_empty() { "" } else { " alert" },
            fail = percent(v.failed_requests_percent),
            thr = v.throttled_last_hour,
            rate = v.rate_per_second,
        );
    }
    out.push_str("</table></section>");
}

/// The worst pairs first.
fn worst_pairs(out: &mut String, s: &Snapshot) {
    let now = s.generated_at;
    let _ = write!(
        out,
        "<section class=\"wide\"><h2>Pairs, worst first</h2><table id=\"pairs\">{PAIR_HEADER}"
    );
    for p in s.pairs.iter().take(PAGE_ROWS) {
        pair_row(out, p, now);
    }
    out.push_str("</table>");
    if s.pairs.len() > PAGE_ROWS {
        let _ = write!(
            out,
            "<p class=\"muted\">{} more in <a href=\"/api/pairs\">/api/pairs</a></p>",
            s.pairs.len() - PAGE_ROWS
        );
    }
    out.push_str("</section>");
}

/// Every node sharing the state.
fn nodes(out: &mut String, s: &Snapshot) {
    out.push_str(
        "<section class=\"wide\"><h2>Nodes</h2><table id=\"nodes\"><tr><th>node</th><th>status</th>\
         <th class=\"n\">pairs</th><th class=\"n\">heartbeat</th><th>listens on</th><th>version</th></tr>",
    );
    for n in &s.nodes {
        let _ = write!(
            out,
            "<tr data-node=\"{id}\"><td>{id}</td><td class=\"node-{st}\">{st}</td><td class=\"n\">{pairs}</td>\
             <td class=\"n\">{age:.1}s ago</td><td>{listen}</td><td>{version}</td></tr>",
            id = esc(&n.id),
            st = n.status,
            pairs = n.pairs,
            age = n.heartbeat_age_ms as f64 / 1000.0,
            listen = esc(&n.listen),
            version = esc(&n.version),
        );
    }
    out.push_str("</table></section>");
}

/// Leases held now.
fn leases(out: &mut String, s: &Snapshot) {
    out.push_str(
        "<section><h2>Leases held</h2><table id=\"leases\"><tr><th>calendar</th><th>holder</th>\
         <th>kind</th><th class=\"n\">token</th><th>until</th></tr>",
    );
    for l in &s.leases {
        let _ = write!(
            out,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
            esc(&l.calendar),
            esc(&l.holder),
            l.kind.as_str(),
            l.token,
            esc(&crate::domain::time::utc(l.expires_at))
        );
    }
    out.push_str("</table></section>");
}

/// Items held in quarantine.
fn quarantine_table(out: &mut String, quarantine: &[crate::domain::pairstate::QuarantineEntry]) {
    out.push_str(
        "<section><h2>Quarantine</h2><table id=\"quarantine\"><tr><th>pair</th><th>item</th>\
         <th class=\"n\">failures</th><th>error</th></tr>",
    );
    for q in quarantine.iter().filter(|q| q.quarantined).take(PAGE_ROWS) {
        let _ = write!(
            out,
            "<tr data-pair=\"{pair}\"><td><a href=\"/pairs/{link}\">{pair}</a></td><td><code>{}</code></td>\
             <td class=\"n\">{}</td><td>{}</td></tr>",
            esc(&q.href),
            q.count,
            esc(&q.error),
            pair = esc(&q.pair),
            link = seg(&q.pair),
        );
    }
    out.push_str("</table></section>");
}

async fn page(Extract(web): Extract<Shared>) -> Result<Html<String>, Unavailable> {
    let s = snap(&web).await?;
    let quarantine = web.state.quarantine_list(None).await?;
    Ok(Html(render_page(&s, &quarantine)))
}

pub fn render_pair(
    p: &PairView,
    passes: &[crate::service::observe::PassView],
    items: &[crate::domain::pairstate::QuarantineEntry],
    now: i64,
) -> String {
    let mut out = head(&format!("pair {}", p.id), now);
    let _ = write!(
        out,
        "<section class=\"wide\" id=\"pair\" data-pair=\"{id}\"><h2>Pair {id}</h2><table>{PAIR_HEADER}",
        id = esc(&p.id)
    );
    pair_row(&mut out, p, now);
    let _ = write!(
        out,
        "</table><p>source <code>{}</code> {} target <code>{}</code> ({}; the {} is the authority{}); {}; next pass {}; \
         written since the first sync: {} created, {} updated, {} deleted, {} adopted</p></section>",
        esc(&p.source),
        match (p.direction, p.cutover_at) {
            ("two-way", _) => "↔",
            (_, Some(_)) => "←",
            _ => "→",
        },
        esc(&p.target),
        match p.direction {
            "two-way" => format!("two-way, conflicts: {}", p.conflict),
            d => d.to_string(),
        },
        p.authority,
        p.cutover_at.map_or(String::new(), |t| format!(
            ", cut over {}",
            crate::domain::time::utc(t)
        )),
        match (p.push_driven, p.last_push_at) {
            (true, Some(t)) => format!("push-driven, last push {}", ago(now, Some(t))),
            (true, None) => "push-driven, no push yet".to_string(),
            (false, Some(t)) => format!("polled; last push {}", ago(now, Some(t))),
            (false, None) => "polled".to_string(),
        },
        ago(now, p.next_run),
        p.created,
        p.updated,
        p.deleted,
        p.adopted
    );
    out.push_str(
        "<section class=\"wide\"><h2>Recent passes</h2><table id=\"passes\"><tr><th>started</th>\
         <th>kind</th><th>outcome</th><th class=\"n\">created</th><th class=\"n\">updated</th>\
         <th class=\"n\">deleted</th><th class=\"n\">failed</th><th class=\"n\">backlog</th>\
         <th class=\"n\">requests</th><th>error</th></tr>",
    );
    for r in passes {
        let st = &r.status;
        let _ = write!(
            out,
            "<tr data-run=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td>{}</td></tr>",
            esc(&r.run),
            esc(&crate::domain::time::utc(st.started_at)),
            esc(&st.kind),
            esc(st.outcome.as_deref().unwrap_or("running")),
            st.created + r.adopted,
            st.updated,
            st.deleted,
            st.failed,
            r.backlog.map_or("-".into(), |b| b.to_string()),
            r.requests,
            esc(st.error.as_deref().unwrap_or(""))
        );
    }
    out.push_str(
        "</table></section><section class=\"wide\"><h2>Failing and quarantined items</h2>\
         <table id=\"items\"><tr><th>item</th><th>status</th><th class=\"n\">failures</th>\
         <th>last seen</th><th>error</th></tr>",
    );
    for q in items {
        let _ = write!(
            out,
            "<tr><td><code>{}</code></td><td>{}</td><td class=\"n\">{}</td><td>{}</td><td>{}</td></tr>",
            esc(&q.href),
            if q.quarantined {
                "quarantined"
            } else {
                "failing"
            },
            q.count,
            esc(&crate::domain::time::utc(q.last_seen)),
            esc(&q.error)
        );
    }
    out.push_str("</table></section></main></body></html>");
    out
}

async fn pair_page(
    Extract(web): Extract<Shared>,
    Path(id): Path<String>,
) -> Result<Response, Unavailable> {
    let s = snap(&web).await?;
    let Some(p) = s.pairs.iter().find(|p| p.id == id) else {
        let mut out = head("unknown pair", s.generated_at);
        let _ = write!(
            out,
            "<section><h2>No pair with id {}</h2></section></main></body></html>",
            esc(&id)
        );
        return Ok((StatusCode::NOT_FOUND, Html(out)).into_response());
    };
    let passes = web.state.passes(&id, 20).await?;
    let items = web
        .state
        .quarantine_list(web.config.pair(&id).map(|p| &p.id))
        .await?;
    Ok(Html(render_pair(p, &passes, &items, s.generated_at)).into_response())
}

/// Serves on `listener`, over TLS with `tls`, until `stop` resolves (connections bounded as
/// [`crate::service::listen`] says).
pub async fn serve(
    web: Shared,
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    crate::service::listen::serve(listener, tls, router(web), stop).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_and_links_are_escaped() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(seg("a b/c"), "a%20b%2Fc");
    }

    fn snapshot_with_agents(online: usize, processors: &[usize]) -> Snapshot {
        Snapshot {
            generated_at: 0,
            pairs: Vec::new(),
            states: Default::default(),
            servers: Vec::new(),
            online_processors: online,
            agents: processors
                .iter()
                .enumerate()
                .map(|(i, &p)| crate::service::observe::AgentView {
                    agent: i,
                    processor: p,
                    pairs: 5,
                    items: 50,
                    passes: Some(3),
                    busy_seconds: Some(1.5),
                })
                .collect(),
            agents_warning: Some("processor(s) 1 have no agent".into()),
            leases: Vec::new(),
            nodes: Vec::new(),
            quarantined: 0,
            alerts: crate::service::observe::AlertThresholds {
                lag_seconds: 1200.0,
                failed_requests_percent: 80.0,
            },
        }
    }

    #[test]
    fn an_idle_processor_shows_on_the_page_and_in_metrics() {
        let s = snapshot_with_agents(2, &[0, 0]);
        let page = render_page(&s, &[]);
        assert!(page.contains("class=\"proc\" data-processor=\"0\" data-agents=\"2\""));
        assert!(page.contains("class=\"proc idle\" data-processor=\"1\" data-agents=\"0\""));
        assert!(page.contains("id=\"agents-warning\">processor(s) 1 have no agent"));
        let m = encode_metrics(&s);
        assert!(m.contains("tandem_idle_processors 1\n"), "{m}");
        assert!(
            m.contains("tandem_agent_pairs{agent=\"1\",processor=\"0\"} 5\n"),
            "{m}"
        );

        let spread = snapshot_with_agents(2, &[0, 1]);
        assert!(!render_page(&spread, &[]).contains("proc idle"));
        assert!(encode_metrics(&spread).contains("tandem_idle_processors 0\n"));
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same(b"secret-token", b"secret-token"));
        assert!(!same(b"secret-token", b"secret-tokem"));
        assert!(!same(b"secret", b"secret-token"));
    }
}
