//! A two-way pair beside a one-way pair on the same Radicale servers, as the `tandem` binary:
//! a first sync (two-way: 500 items on each side; one-way: 1,000 on the source), then passes
//! with nothing to do over 1,000 items per side: requests per pass and time per pass.
//!
//! `cargo bench --bench two_way` (set `TANDEM_BENCH_ITEMS` for another size per side).

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

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use dav::DavServer;
use futures_util::stream::{self, StreamExt};
use tandem::domain::types::CalendarPath;
use tandem::store::CalendarStore;

const QUIET_RUNS: usize = 7;

/// One `tandem sync --json`: wall time and the pair's report.
fn sync(config: &Path) -> (Duration, serde_json::Value) {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .arg("-c")
        .arg(config)
        .args(["sync", "--json"])
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let took = started.elapsed();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    (took, v["pairs"][0].clone())
}

fn seed(
    rt: &tokio::runtime::Runtime,
    server: &DavServer,
    cal: &str,
    items: std::ops::Range<usize>,
) {
    let store = server.store();
    let cal: CalendarPath = cal.parse().unwrap();
    rt.block_on(async {
        let failed = stream::iter(items)
            .map(|i| {
                let (store, cal) = (&store, &cal);
                async move {
                    let (uid, body) = items::item(i, 0);
                    store.create(cal, &format!("{uid}.ics"), &body).await.err()
                }
            })
            .buffer_unordered(4)
            .filter_map(|e| async move { e })
            .collect::<Vec<_>>()
            .await;
        assert!(failed.is_empty(), "seeding: {:?}", failed.first());
    });
}

struct Figures {
    first: Duration,
    created: u64,
    quiet: Duration,
    requests: u64,
}

/// A pair between two fresh Radicale servers, seeded by `seed_pair`, synced once and then
/// passed `QUIET_RUNS` times with nothing to do.
fn measure(
    rt: &tokio::runtime::Runtime,
    extra: &str,
    seed_pair: impl FnOnce(&DavServer, &str, &DavServer, &str),
    per_side: usize,
) -> Figures {
    let (old, new) = (&DavServer::radicale(), &DavServer::radicale());
    let a = old.make_calendar("alice", "calendar");
    let b = new.make_calendar("alice", "calendar");
    seed_pair(old, &a, new, &b);
    let dir = tempfile::tempdir().unwrap();
    let config = dav::pair_config(dir.path(), old, new, &a, &b, extra);
    let (first, report) = sync(&config);
    let mut quiet = Vec::new();
    let mut requests = Vec::new();
    for _ in 0..QUIET_RUNS {
        let (t, r) = sync(&config);
        assert_eq!(r["created"], 0, "{r}");
        quiet.push(t);
        requests.push(r["requests"].as_u64().unwrap());
    }
    quiet.sort();
    requests.sort();
    for (server, cal) in [(old, &a), (new, &b)] {
        let n = rt
            .block_on(server.store().list(&cal.parse().unwrap()))
            .unwrap()
            .len();
        assert_eq!(n, per_side, "{cal}");
    }
    Figures {
        first,
        created: report["created"].as_u64().unwrap(),
        quiet: quiet[quiet.len() / 2],
        requests: requests[requests.len() / 2],
    }
}

fn main() {
    if std::env::args()
        .skip(1)
        .any(|a| !a.starts_with("--") && !"two_way".contains(a.as_str()))
    {
        return;
    }
    let n: usize = std::env::var("TANDEM_BENCH_ITEMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let one = measure(&rt, "", |old, a, _, _| seed(&rt, old, a, 0..n), n);
    let two = measure(
        &rt,
        "[sync]\ndirection = \"two-way\"\n",
        |old, a, new, b| {
            seed(&rt, old, a, 0..n / 2);
            seed(&rt, new, b, n / 2..n);
        },
        n,
    );
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "two-way beside one-way, Radicale 3.9.0 ↔ Radicale 3.9.0, {n} items per side after the first sync"
    );
    println!(
        "{:<34} {:>10} {:>10} {:>8}",
        "", "one-way", "two-way", "ratio"
    );
    println!(
        "{:<34} {:>10.0} {:>10.0} {:>7.2}×",
        "first sync (ms)",
        ms(one.first),
        ms(two.first),
        two.first.as_secs_f64() / one.first.as_secs_f64()
    );
    println!(
        "{:<34} {:>10} {:>10}",
        "  items created", one.created, two.created
    );
    println!(
        "{:<34} {:>10.0} {:>10.0} {:>7.2}×",
        "no-change pass (ms, median)",
        ms(one.quiet),
        ms(two.quiet),
        two.quiet.as_secs_f64() / one.quiet.as_secs_f64()
    );
    println!(
        "{:<34} {:>10} {:>10}",
        "  requests per no-change pass", one.requests, two.requests
    );
}
