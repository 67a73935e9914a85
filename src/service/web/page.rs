//! The status page and a pair's page: self-contained HTML (styles inline, no scripts) that
//! reloads itself.

use std::fmt::Write as _;

use axum::extract::{Path, State as Extract};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

use crate::domain::time::HOUR_MS;
use crate::service::observe::{PairView, Snapshot, human_seconds};
use crate::service::rollup::mailboxes;
use crate::state::Minute;

use super::picture;
use super::shared::{PAGE_ROWS, REFRESH_SECONDS, Shared, Unavailable, esc, seg, snap};

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
.stack{display:flex;height:18px;border-radius:4px;overflow:hidden;background:#eceef2;margin-bottom:8px}
.o-done{background:#17803d}.o-syncing{background:#4a78c2}.o-failing{background:#c62828}
.o-done-text{color:#17803d}.o-syncing-text{color:#4a78c2}.o-failing-text{color:#c62828}
.stack.thin{height:10px;margin:0}svg.chart{width:100%;height:auto;display:block}
.chart .c-ok{fill:#4a78c2}.chart .c-over{fill:#c62828}.chart .axis{stroke:#99a}
.chart .threshold{stroke:#c62828;stroke-dasharray:4 3}.chart .label{font-size:11px;fill:#667}.chart .end{text-anchor:end}
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
    minutes: &[Minute],
) -> String {
    let mut out = head("status", s.generated_at);
    let all = mailboxes(&s.pairs);
    picture::outcome_bar(&mut out, &all);
    picture::copying(&mut out, &all);
    picture::history(&mut out, minutes, s.generated_at, s.alerts.lag_seconds);
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

pub(super) async fn page(Extract(web): Extract<Shared>) -> Result<Html<String>, Unavailable> {
    let s = snap(&web).await?;
    let quarantine = web.state.quarantine_list(None).await?;
    let minutes = web.state.minutes(s.generated_at - HOUR_MS).await?;
    Ok(Html(render_page(&s, &quarantine, &minutes)))
}

pub(crate) fn render_pair(
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

pub(super) async fn pair_page(
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
        .quarantine_list(id.parse::<crate::domain::types::PairId>().ok().as_ref())
        .await?;
    Ok(Html(render_pair(p, &passes, &items, s.generated_at)).into_response())
}
