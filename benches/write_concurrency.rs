//! Writes in flight per server: a first sync of 1,000 items Radicale → Radicale with the number
//! of writes in flight fixed at 1, fixed at 4, and found by tandem (adaptive, up to the default
//! `max_concurrency` of 4), side by side in one run, each into an empty calendar. Radicale
//! serialises writes, so more in flight is no faster there; the adaptive limit should match the
//! best fixed one without being told.
//!
//! `cargo bench --bench write_concurrency` (`TANDEM_BENCH_ITEMS` for another size).

#[path = "../tests/it/common/dav.rs"]
#[allow(dead_code)]
mod dav;
#[path = "../tests/it/common/groupware.rs"]
#[allow(dead_code)]
mod groupware;
#[path = "../tests/it/common/items.rs"]
#[allow(dead_code)]
mod items;
#[path = "../tests/it/common/pg.rs"]
#[allow(dead_code)]
mod pg;

use std::process::Command;
use std::time::{Duration, Instant};

use dav::DavServer;
use futures_util::stream::{self, StreamExt};
use tandem::domain::types::CalendarPath;
use tandem::store::CalendarStore;

fn main() {
    if std::env::args()
        .skip(1)
        .any(|a| !a.starts_with("--") && !"write_concurrency".contains(a.as_str()))
    {
        return;
    }
    let n: usize = std::env::var("TANDEM_BENCH_ITEMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000);
    let source = DavServer::radicale();
    let target = DavServer::radicale();
    let scal = source.make_calendar("alice", "calendar");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let src = source.store();
    let cal: CalendarPath = scal.parse().unwrap();
    rt.block_on(async {
        let failed = stream::iter(0..n)
            .map(|i| {
                let (src, cal) = (&src, &cal);
                async move {
                    let (uid, body) = items::item(i, 0);
                    src.create(cal, &format!("{uid}.ics"), &body).await.err()
                }
            })
            .buffer_unordered(4)
            .filter_map(|e| async move { e })
            .collect::<Vec<_>>()
            .await;
        assert!(failed.is_empty(), "seeding: {:?}", failed.first());
    });

    let mut rows = Vec::new();
    for (name, setting) in [
        ("fixed 1", "write_concurrency = 1\n"),
        ("fixed 4", "write_concurrency = 4\n"),
        ("adaptive", ""),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let tcal = target.make_calendar("alice", &name.replace(' ', "-"));
        let config = dav::pair_config(dir.path(), &source, &target, &scal, &tcal, "");
        // The setting belongs to the target server's section.
        let toml = std::fs::read_to_string(&config).unwrap().replace(
            "[servers.target]\n",
            &format!("[servers.target]\n{setting}"),
        );
        std::fs::write(&config, toml).unwrap();
        let started = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_tandem"))
            .arg("-c")
            .arg(&config)
            .arg("sync")
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        let took = started.elapsed();
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got = rt
            .block_on(target.store().list(&tcal.parse().unwrap()))
            .unwrap()
            .len();
        assert_eq!(got, n, "{name}: {got} of {n} items written");
        rows.push((name, took));
    }
    let best = rows.iter().map(|(_, t)| *t).min().unwrap_or(Duration::ZERO);
    println!("first sync of {n} items, Radicale 3.9.0 → Radicale 3.9.0, writes in flight:");
    for (name, took) in rows {
        println!(
            "{name:<10} {:>8.1} s {:>8.0} items/s {:>6.2}× the best",
            took.as_secs_f64(),
            n as f64 / took.as_secs_f64(),
            took.as_secs_f64() / best.as_secs_f64()
        );
    }
}
