//! The operator's commands around the service: `agents`, `nodes`, `quarantine`, `enable` and
//! `disable`, `lock`, `repair`.

use std::collections::HashMap;
use std::path::Path;

use super::exit::{EXIT_OK, EXIT_PARTIAL, Failure, open_state, usage};
use super::mailboxes::existing;
use crate::config::{Config, online_processors};
use crate::domain::pairstate::PairState;
use crate::domain::types::PairId;
use crate::engine::Engine;
use crate::service::pool;
use crate::state::State;

#[derive(serde::Serialize)]
struct AgentRow {
    agent: usize,
    processor: usize,
    pairs: usize,
    items: i64,
}

/// `tandem agents`: agent → processor → pairs (items), and the idle-processor warning.
pub(super) async fn agents(file: &Path, json: bool) -> Result<u8, Failure> {
    let config = Config::load(file)?;
    let items: HashMap<String, i64> = if config.state.file().is_none_or(Path::exists) {
        let state = open_state(&config).await?;
        let counts = state.item_counts().await?;
        state.close().await;
        counts
    } else {
        HashMap::new()
    };
    let online = online_processors();
    let rows: Vec<AgentRow> = pool::plan(&config)
        .into_iter()
        .map(|s| AgentRow {
            agent: s.index,
            processor: s.processor,
            pairs: s.pairs.len(),
            items: s
                .pairs
                .iter()
                .map(|p| items.get(p.id.as_str()).copied().unwrap_or(0))
                .sum(),
        })
        .collect();
    let warning = config.agents.placement_warning(online);
    if json {
        let v =
            serde_json::json!({ "online_processors": online, "agents": rows, "warning": warning });
        println!(
            "{}",
            serde_json::to_string_pretty(&v).expect("agents serialise")
        );
        return Ok(EXIT_OK);
    }
    println!(
        "{:<6} {:>9} {:>6} {:>8}",
        "agent", "processor", "pairs", "items"
    );
    for r in &rows {
        println!(
            "{:<6} {:>9} {:>6} {:>8}",
            r.agent, r.processor, r.pairs, r.items
        );
    }
    let mut per = vec![0; online];
    for r in &rows {
        if let Some(n) = per.get_mut(r.processor) {
            *n += 1;
        }
    }
    let spread: Vec<String> = per
        .iter()
        .enumerate()
        .map(|(p, n)| format!("{p}: {n}"))
        .collect();
    println!(
        "agents per processor ({online} online): {}",
        spread.join(", ")
    );
    if let Some(w) = warning {
        println!("warning: {w}");
    }
    Ok(EXIT_OK)
}

/// `tandem nodes`: every node sharing the state, with its pairs and heartbeat age.
pub(super) async fn nodes(file: &Path, json: bool) -> Result<u8, Failure> {
    let config = Config::load(file)?;
    let state = open_state(&config).await?;
    let nodes = state.nodes().await?;
    state.close().await;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&nodes).expect("nodes serialise")
        );
        return Ok(EXIT_OK);
    }
    if nodes.is_empty() {
        println!("no node has run (tandem run registers one)");
        return Ok(EXIT_OK);
    }
    println!(
        "{:<40} {:<8} {:>6} {:>10}  {:<21} {:<9} started",
        "node", "status", "pairs", "heartbeat", "listen", "version"
    );
    for n in &nodes {
        println!(
            "{:<40} {:<8} {:>6} {:>9}s  {:<21} {:<9} {}",
            n.id,
            n.status,
            n.pairs,
            format!("{:.1}", n.heartbeat_age_ms as f64 / 1000.0),
            n.listen,
            n.version,
            crate::domain::time::utc(n.started_at)
        );
    }
    Ok(EXIT_OK)
}

/// The pairs `id` names (a mailbox: all its calendars), or all (`None`).
async fn pair_ids(
    config: &Config,
    state: &State,
    id: Option<&str>,
) -> Result<Vec<Option<PairId>>, Failure> {
    match id {
        None => Ok(vec![None]),
        Some(id) => Ok((existing(config, state, &[id.to_string()]).await?)
            .into_iter()
            .map(|p| Some(p.id))
            .collect()),
    }
}

pub(super) async fn quarantine_list(
    file: &Path,
    pair: Option<&str>,
    json: bool,
) -> Result<u8, Failure> {
    let config = Config::load(file)?;
    let state = open_state(&config).await?;
    let mut entries = Vec::new();
    for pair in pair_ids(&config, &state, pair).await? {
        entries.extend(state.quarantine_list(pair.as_ref()).await?);
    }
    state.close().await;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&entries).expect("quarantine serialises")
        );
        return Ok(EXIT_OK);
    }
    if entries.is_empty() {
        println!("no failed or quarantined items");
    }
    for e in &entries {
        let what = if e.quarantined {
            if e.retry {
                "quarantined, retry asked"
            } else {
                "quarantined"
            }
        } else {
            "failing"
        };
        println!(
            "pair {}: {} ({}) [{what}, {} failure(s), first {}, last {}]\n  identity {}\n  {}",
            e.pair,
            e.href,
            e.side,
            e.count,
            crate::domain::time::utc(e.first_seen),
            crate::domain::time::utc(e.last_seen),
            e.identity,
            e.error
        );
    }
    Ok(EXIT_OK)
}

pub(super) async fn quarantine_retry(file: &Path, pair: Option<&str>) -> Result<u8, Failure> {
    let config = Config::load(file)?;
    let state = open_state(&config).await?;
    let mut n = 0;
    for pair in pair_ids(&config, &state, pair).await? {
        n += state.quarantine_retry(pair.as_ref()).await?;
    }
    state.close().await;
    println!("{n} quarantined item(s) will be tried again on their pair's next pass");
    Ok(EXIT_OK)
}

/// `disable` (with a reason) or `enable` (`None`).
pub(super) async fn set_enabled(
    file: &Path,
    id: &str,
    disable: Option<String>,
) -> Result<u8, Failure> {
    let config = Config::load(file)?;
    let state = open_state(&config).await?;
    let new = match disable {
        Some(reason) => PairState::Disabled { reason },
        None => PairState::Active,
    };
    for pair in existing(&config, &state, &[id.to_string()]).await? {
        state.ensure_pair(&pair).await?;
        state.set_pair_state(&pair.id, &new, None).await?;
        println!("pair {}: {}", pair.id, new.name());
    }
    state.close().await;
    Ok(EXIT_OK)
}

/// A `--calendar` argument as the lease key: `SERVER:PATH` with a configured server.
fn lease_calendar(config: &Config, calendar: &str) -> Result<String, Failure> {
    let c: crate::domain::types::CalendarRef = calendar
        .parse()
        .map_err(|e: String| usage(format!("--calendar: {e}")))?;
    if !config.servers.contains_key(&c.server) {
        let known: Vec<&str> = config.servers.keys().map(String::as_str).collect();
        return Err(usage(format!(
            "--calendar: unknown server {:?} (configured: {})",
            c.server,
            known.join(", ")
        )));
    }
    Ok(c.to_string())
}

pub(super) async fn lock_list(file: &Path, json: bool) -> Result<u8, Failure> {
    let config = Config::load(file)?;
    let state = open_state(&config).await?;
    let leases = state.leases().await?;
    state.close().await;
    let now = crate::domain::time::now_ms();
    if json {
        let rows: Vec<_> = leases
            .iter()
            .map(|l| serde_json::json!({ "calendar": l.calendar, "holder": l.holder, "kind": l.kind, "token": l.token, "expires_at": l.expires_at, "held": l.expires_at > now }))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).expect("leases serialise")
        );
        return Ok(EXIT_OK);
    }
    if leases.iter().all(|l| l.expires_at <= now) {
        println!("no calendar is locked");
    }
    for l in &leases {
        let until = if l.expires_at > now {
            format!("until {}", crate::domain::time::utc(l.expires_at))
        } else {
            "free".to_string()
        };
        println!(
            "{:<40} {:<9} token {:<5} {} {}",
            l.calendar,
            l.kind.as_str(),
            l.token,
            l.holder,
            until
        );
    }
    Ok(EXIT_OK)
}

pub(super) async fn lock_acquire(
    file: &Path,
    calendar: &str,
    holder: &str,
    ttl: &str,
) -> Result<u8, Failure> {
    let config = Config::load(file)?;
    let calendar = lease_calendar(&config, calendar)?;
    let ttl = humantime::parse_duration(ttl).map_err(|e| usage(format!("--ttl {ttl:?}: {e}")))?;
    if holder.trim().is_empty() {
        return Err(usage(
            "--holder: give a name (who holds the lock, for `lock list` and `status`)",
        ));
    }
    let state = open_state(&config).await?;
    let kind = crate::domain::lease::LeaseKind::External;
    let got = state.take_lease(&calendar, holder, kind, ttl).await?;
    state.close().await;
    match got {
        Ok(l) => {
            println!(
                "{calendar}: locked by {holder} until {} (token {})",
                crate::domain::time::utc(l.expires_at),
                l.token
            );
            Ok(EXIT_OK)
        }
        Err(locked) => {
            println!("{calendar}: {locked}");
            Ok(EXIT_PARTIAL)
        }
    }
}

pub(super) async fn lock_release(file: &Path, calendar: &str, holder: &str) -> Result<u8, Failure> {
    let config = Config::load(file)?;
    let calendar = lease_calendar(&config, calendar)?;
    let state = open_state(&config).await?;
    let released = state.release_lease_of(&calendar, holder).await?;
    state.close().await;
    if released {
        println!("{calendar}: released by {holder}");
        Ok(EXIT_OK)
    } else {
        println!("{calendar}: {holder} holds no lease on it");
        Ok(EXIT_PARTIAL)
    }
}

/// `tandem repair`: the pairs one after another; exit 3 if any could not be repaired fully.
pub(super) async fn repair(
    file: &Path,
    ids: &[String],
    dry_run: bool,
    json: bool,
) -> Result<u8, Failure> {
    let config = Config::load(file)?;
    let state = open_state(&config).await?;
    let pairs = existing(&config, &state, ids).await?;
    let engine = Engine::new(&config, state.clone());
    let mut reports = Vec::with_capacity(pairs.len());
    for pair in &pairs {
        reports.push(engine.repair(pair, dry_run).await?);
    }
    state.close().await;
    let ok = reports.iter().all(|r| r.ok());
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&reports).expect("reports serialise")
        );
    } else {
        for r in &reports {
            for f in &r.findings {
                println!(
                    "pair {}: {} {} ({}): {}",
                    r.pair, f.class, f.href, f.identity, f.action
                );
            }
            for s in &r.skipped {
                println!("pair {}: skipped {s}", r.pair);
            }
            match &r.error {
                Some(e) => println!("pair {}: not repaired: {e}", r.pair),
                None => println!(
                    "pair {}: {} finding(s), {} in step, {} outside the window{}",
                    r.pair,
                    r.findings.len(),
                    r.in_step,
                    r.outside_window,
                    if dry_run {
                        " (dry run: nothing changed)"
                    } else {
                        "; mappings rebuilt"
                    }
                ),
            }
        }
    }
    Ok(if ok { EXIT_OK } else { EXIT_PARTIAL })
}
