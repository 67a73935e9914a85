//! Each tested server as a target: Radicale, Xandikos, SOGo and DAViCal. For each, a first
//! `tandem sync` of the bench's items (4 pairs of 110, from a Radicale) beside a plain PUT loop
//! of the same items onto the same server (one `If-None-Match` PUT at a time, from a running
//! process: no start-up, no state, no reads), then the requests a quiet pass makes per pair on
//! each side.
//!
//! `cargo bench --bench servers` (`TANDEM_BENCH_PAIRS`, `TANDEM_BENCH_ITEMS` per pair for
//! another size).

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

use dav::{DavServer, Kind};
use tandem::domain::types::CalendarPath;
use tandem::store::CalendarStore;

fn sync_json(config: &Path) -> (Duration, serde_json::Value) {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .arg("-c")
        .arg(config)
        .args(["sync", "--json"])
        .output()
        .expect("run tandem");
    let took = started.elapsed();
    assert!(
        out.status.success(),
        "tandem sync failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (took, serde_json::from_slice(&out.stdout).unwrap())
}

struct Figures {
    first: Duration,
    /// Requests of the first sync, per item, on each side.
    first_requests: (f64, f64),
    plain: Duration,
    quiet_source: f64,
    quiet_target: f64,
}

fn measure(kind: Kind, pairs: usize, n: usize, rt: &tokio::runtime::Runtime) -> Figures {
    let source = DavServer::radicale();
    let target = DavServer::start_new(kind);
    let home = target.default_calendar();
    let src = source.store();
    let tgt = target.store();
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, format!("{}\n", dav::PASSWORD)).unwrap();
    let mut toml = format!(
        "[state]\nurl = \"sqlite://{}\"\n\n{}\n{}\n",
        dir.path().join("state.db").display(),
        source.config_section("source", &pw),
        target.config_section("target", &pw),
    );
    let mut bodies = Vec::new();
    for p in 0..pairs {
        let user = format!("u{p:02}");
        let scal: CalendarPath = source.make_calendar(&user, "calendar").parse().unwrap();
        let tcal = target.make_calendar(&user, home);
        rt.block_on(async {
            for i in 0..n {
                let (uid, body) = items::item(p * n + i, 0);
                src.create(&scal, &format!("{uid}.ics"), &body)
                    .await
                    .unwrap();
                bodies.push((uid, body));
            }
        });
        toml.push_str(&format!(
            "\n[[pairs]]\nid = \"{user}\"\nsource = \"source:{scal}\"\ntarget = \"target:{tcal}\"\n"
        ));
    }
    let config = dir.path().join("tandem.toml");
    std::fs::write(&config, toml).unwrap();
    let plain_cal: CalendarPath = target.make_calendar("plain", home).parse().unwrap();
    let started = Instant::now();
    rt.block_on(async {
        for (uid, body) in &bodies {
            tgt.create(&plain_cal, &format!("{uid}.ics"), body)
                .await
                .unwrap();
        }
    });
    let plain = started.elapsed();
    let (first, report) = sync_json(&config);
    assert_eq!(report["failed"], 0, "{report}");
    let per_item = |side: &str| {
        report["servers"][side]["requests"].as_u64().unwrap() as f64 / (pairs * n) as f64
    };
    let first_requests = (per_item("source"), per_item("target"));
    sync_json(&config);
    let (_, quiet) = sync_json(&config);
    let per_pair =
        |side: &str| quiet["servers"][side]["requests"].as_u64().unwrap() as f64 / pairs as f64;
    Figures {
        first,
        first_requests,
        plain,
        quiet_source: per_pair("source"),
        quiet_target: per_pair("target"),
    }
}

fn main() {
    // `cargo bench` passes harness flags such as `--bench`; a name filter that does not match skips.
    if std::env::args()
        .skip(1)
        .any(|a| !a.starts_with("--") && !"servers".contains(a.as_str()))
    {
        return;
    }
    let env = |k: &str, d: usize| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let (pairs, n) = (env("TANDEM_BENCH_PAIRS", 4), env("TANDEM_BENCH_ITEMS", 110));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!("Radicale 3.9.0 → each server, {pairs} pairs × {n} items");
    println!(
        "{:<10} {:>16} {:>16} {:>8} {:>22} {:>26}",
        "target",
        "first sync (ms)",
        "PUT loop (ms)",
        "ratio",
        "quiet pass req/pair",
        "first sync req/item"
    );
    // `TANDEM_BENCH_SERVERS=xandikos,sogo`: only these.
    let only = std::env::var("TANDEM_BENCH_SERVERS")
        .unwrap_or_default()
        .to_lowercase();
    for kind in dav::ALL {
        if !only.is_empty() && !only.contains(&format!("{kind:?}").to_lowercase()) {
            continue;
        }
        let f = measure(kind, pairs, n, &rt);
        println!(
            "{:<10} {:>16.0} {:>16.0} {:>7.2}× {:>12.1} source, {:.1} target {:>10.2} source, {:.2} target",
            format!("{kind:?}"),
            f.first.as_secs_f64() * 1000.0,
            f.plain.as_secs_f64() * 1000.0,
            f.first.as_secs_f64() / f.plain.as_secs_f64(),
            f.quiet_source,
            f.quiet_target,
            f.first_requests.0,
            f.first_requests.1,
        );
    }
}
