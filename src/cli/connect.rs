//! `tandem check --connect`: every calendar of every pair reached, and per server what its
//! answers tell of it: its software, what it does differently from the rules tandem's promises
//! rest on and what tandem does about it, and any warning an operator must read before tandem
//! writes there.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures_util::stream::{self, StreamExt};

use super::exit::{EXIT_OK, EXIT_PARTIAL, Failure, usage};
use crate::config::Config;
use crate::store::CalendarStore;

/// Calendars checked at once.
const AT_ONCE: usize = 16;

pub(super) async fn check(config: &Config) -> Result<u8, Failure> {
    let mut stores: BTreeMap<&str, Arc<dyn CalendarStore>> = BTreeMap::new();
    for (name, server) in &config.servers {
        let opened = crate::engine::open_store(server)
            .map_err(|e| usage(format!("{}: servers.{name}: {e}", config.file.display())))?;
        stores.insert(name, opened);
    }
    let calendars: Vec<(&str, &str, &crate::domain::types::CalendarRef)> = config
        .pairs
        .iter()
        .flat_map(|p| {
            [
                (p.id.as_str(), "source", &p.source),
                (p.id.as_str(), "target", &p.target),
            ]
        })
        .collect();
    let total = calendars.len();
    let failed: Vec<String> = stream::iter(calendars)
        .map(|(pair, role, cal)| {
            let store = stores[cal.server.as_str()].clone();
            async move {
                let reached = store.check_calendar(&cal.path).await;
                reached
                    .err()
                    .map(|e| format!("pair {pair}: {role} {cal}: {e}"))
            }
        })
        .buffer_unordered(AT_ONCE)
        .filter_map(|e| async move { e })
        .collect()
        .await;
    for f in &failed {
        println!("{f}");
    }
    println!("{} of {total} calendar(s) reached", total - failed.len());
    for (name, store) in &stores {
        println!(
            "server {name} ({}): {}",
            store.describe(),
            store.software().unwrap_or("no answer yet")
        );
        for d in store.departures() {
            println!("  - {d}");
        }
        if let Some(w) = store.warning_once() {
            println!("  WARNING: {w}");
        }
    }
    Ok(if failed.is_empty() {
        EXIT_OK
    } else {
        EXIT_PARTIAL
    })
}
