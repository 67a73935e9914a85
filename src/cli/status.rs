//! `tandem status`: every pair's state, last pass and lag, the servers and the nodes.

use crate::config::Config;

use super::exit::{EXIT_OK, Failure, open_state};
use crate::service::observe::{PairView, Snapshot};

/// `->` source to target, `<-` cut over (target to source), `<->` two-way; `*`: cut over.
fn way_glyph(p: &crate::service::observe::PairView) -> &'static str {
    match (p.direction, p.cutover_at) {
        ("two-way", None) => "<->",
        ("two-way", Some(_)) => "<->*",
        (_, None) => "->",
        (_, Some(_)) => "<-*",
    }
}

/// A line per node sharing the state, under `status`.
fn print_nodes(nodes: &[crate::state::NodeRow]) {
    for n in nodes {
        println!(
            "node {}: {}, {} pair(s), heartbeat {:.1}s ago, listens on {}",
            n.id,
            n.status,
            n.pairs,
            n.heartbeat_age_ms as f64 / 1000.0,
            n.listen
        );
    }
}

pub(super) async fn status(file: &std::path::Path, json: bool) -> Result<u8, Failure> {
    let mut config = Config::load(file)?;
    let state = open_state(&config).await?;
    // The mailboxes' calendars as discovery last recorded them.
    let found = super::mailboxes::recorded(&state, &config.mailboxes).await?;
    config.pairs.extend(found);
    let snap = crate::service::observe::snapshot(
        &config,
        &state,
        &crate::service::observe::Live::default(),
    )
    .await?;
    state.close().await;
    if json {
        let mut out = serde_json::to_value(&snap).expect("status serialises");
        out["mailboxes"] = serde_json::to_value(crate::service::rollup::mailboxes(&snap.pairs))
            .expect("mailboxes serialise");
        println!("{}", serde_json::to_string_pretty(&out).expect("json"));
        return Ok(EXIT_OK);
    }
    print_summary(&snap);
    print_pairs(&snap);
    print_nodes(&snap.nodes);
    for s in snap.servers.iter().filter(|s| s.requests > 0) {
        println!(
            "server {}: {} requests in the last hour, {} failed ({}), {} throttled, {:.2}/s now{}",
            s.name,
            s.requests_last_hour,
            s.failed_requests_last_hour,
            s.failed_requests_percent
                .map_or("-".to_string(), |f| format!("{f:.1}%")),
            s.throttled_last_hour,
            s.rate_per_second,
            if s.alerts.is_empty() {
                ""
            } else {
                "  ALERT failed requests"
            }
        );
    }
    if snap.pairs.iter().any(|p| p.cutover_at.is_some()) {
        println!("*: cut over, the target is the authority (tandem cutover --undo rolls back)");
    }
    if let Some(w) = &snap.agents_warning {
        println!("warning: {w}");
    }
    Ok(EXIT_OK)
}

/// A moment as "3m ago" or "in 20s" from `now`, or "-".
fn when(now: i64, t: Option<i64>) -> String {
    t.map_or("-".to_string(), |t| {
        let d = crate::service::observe::human_seconds((now - t).abs() as f64 / 1000.0);
        if t <= now {
            format!("{d} ago")
        } else {
            format!("in {d}")
        }
    })
}

/// The first line: pairs by state, alerts, quarantined items.
fn print_summary(snap: &Snapshot) {
    let alerts = snap.pairs.iter().filter(|p| !p.alerts.is_empty()).count();
    let states: Vec<String> = ["active", "paused", "backoff", "disabled", "new"]
        .iter()
        .filter_map(|s| {
            snap.states
                .get(s)
                .filter(|n| **n > 0)
                .map(|n| format!("{n} {s}"))
        })
        .collect();
    println!(
        "{} pair(s): {}; {} over an alert; {} quarantined item(s)",
        snap.pairs.len(),
        if states.is_empty() {
            "none".to_string()
        } else {
            states.join(", ")
        },
        alerts,
        snap.quarantined
    );
}

/// One line per pair, under a header; a mailbox's calendars under a line for the mailbox.
fn print_pairs(snap: &Snapshot) {
    println!(
        "{:<20} {:<8} {:<8} {:>8} {:>7} {:>6} {:>4} {:>6} {:<14} {:<14} detail",
        "pair",
        "state",
        "way",
        "lag",
        "backlog",
        "items",
        "quar",
        "fail%",
        "last success",
        "next run"
    );
    let by_id: std::collections::HashMap<&str, &PairView> =
        snap.pairs.iter().map(|p| (p.id.as_str(), p)).collect();
    for m in &crate::service::rollup::mailboxes(&snap.pairs) {
        let indent = match m.mailbox {
            true => {
                println!(
                    "mailbox {}: {}, {} calendar(s), {} item(s) in step{}",
                    m.id,
                    m.outcome.as_str(),
                    m.pairs.len(),
                    m.items,
                    match m.backlog {
                        0 => String::new(),
                        n => format!(", {n} to copy"),
                    }
                );
                "  "
            }
            false => "",
        };
        for id in &m.pairs {
            println!(
                "{indent}{}",
                pair_line(by_id[id.as_str()], snap.generated_at)
            );
        }
    }
}

/// A pair's line of the table: its numbers, then what an operator should read first.
fn pair_line(p: &PairView, now: i64) -> String {
    let lock = p.lock.as_ref().map(|l| {
        format!(
            "locked by {} ({}) until {}; ",
            l.holder,
            l.kind,
            crate::domain::time::utc(l.until)
        )
    });
    let detail = match (&p.reason, &p.last_run) {
        (Some(reason), _) => match p.until {
            Some(u) => format!("{reason} (until {})", crate::domain::time::utc(u)),
            None => reason.clone(),
        },
        (None, Some(run)) => format!(
            "{} {} {}: +{} ~{} -{} ={} !{}{}",
            run.kind,
            run.outcome.as_deref().unwrap_or("running"),
            when(now, Some(run.started_at)),
            run.created,
            run.updated,
            run.deleted,
            run.unchanged,
            run.failed,
            run.error
                .as_ref()
                .map_or(String::new(), |e| format!(" ({e})"))
        ),
        (None, None) => "never synced".to_string(),
    };
    let alerts = if p.alerts.is_empty() {
        String::new()
    } else {
        format!("ALERT {}; ", p.alerts.join(", "))
    };
    let way = way_glyph(p);
    let node = p
        .node
        .as_ref()
        .map_or(String::new(), |n| format!("on {n}; "));
    let node = match (p.push_driven, p.last_push_at) {
        (true, Some(t)) => format!("{node}push, last {}; ", when(now, Some(t))),
        (true, None) => format!("{node}push; "),
        _ => node,
    };
    format!(
        "{:<20} {:<8} {:<8} {:>8} {:>7} {:>6} {:>4} {:>6} {:<14} {:<14} {alerts}{node}{}{detail}",
        p.id,
        p.state,
        way,
        crate::service::observe::human_seconds(p.lag_seconds),
        p.backlog,
        p.items,
        p.quarantined,
        p.failed_requests_percent
            .map_or("-".to_string(), |f| format!("{f:.1}")),
        when(now, p.last_success_at),
        when(now, p.next_run),
        lock.unwrap_or_default(),
    )
}
