//! The state on PostgreSQL beside SQLite, and several nodes on one PostgreSQL.
//!
//! 1. Per pass, in one process on the memory store (no request delay), the same pairs on each
//!    backend in one run: time and database statements per first-sync item and per quiet pass.
//!    Statements are counted by PostgreSQL (`pg_stat_statements`); SQLite runs the same ones.
//! 2. `TANDEM_NODES_PAIRS` pairs (default 20,000) × 2 items on vdir, synced by 2 `tandem run`
//!    node processes (one agent each) sharing one PostgreSQL: the first sync, then for
//!    `TANDEM_NODES_MINUTES` minutes (default 3) 1% of the pairs change an item per minute at a
//!    random moment. Latency is from the change to the end of the pass that wrote it (read from
//!    the passes the nodes recorded); CPU of the nodes and of PostgreSQL, statements per second;
//!    from these, how many pairs one PostgreSQL core serves at the interval.
//!
//! `cargo bench --bench nodes` (`TANDEM_NODES_INTERVAL`: seconds between passes, default 60).

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

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};
use tandem::config::{PasswordSource, StateConfig};
use tandem::domain::item::Rewriter;
use tandem::domain::pair::Pair;
use tandem::domain::types::{CalendarPath, PairId};
use tandem::engine::{Engine, PassOptions};
use tandem::state::State;
use tandem::store::CalendarStore;
use tandem::store::memory::MemoryStore;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn ics(pair: usize, item: usize, version: u32) -> String {
    format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//bench//EN\r\nBEGIN:VEVENT\r\nUID:u{pair}-{item}@old.example\r\n\
         DTSTAMP:20261101T000000Z\r\nDTSTART:20261201T{:02}0000Z\r\nSUMMARY:Meeting {item} v{version}\r\n\
         ORGANIZER:mailto:u{pair}@old.example\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
        item % 24
    )
}

/// CPU time (user + system) of process `pid`, from /proc.
fn cpu_of(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let field = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    Duration::from_millis((field(11) + field(12)) * 10)
}

/// CPU time of the PostgreSQL server: its postmaster and every process it started.
fn pg_cpu(pg: &pg::Pg) -> Duration {
    let pid_file = std::fs::read_to_string(pg.data_dir().join("postmaster.pid")).unwrap();
    let master: u32 = pid_file.lines().next().unwrap().trim().parse().unwrap();
    let mut total = cpu_of(master);
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, r)| r.split_whitespace().nth(1)?.parse::<u32>().ok());
        if ppid == Some(master) {
            total += cpu_of(pid);
        }
    }
    total
}

/// Statements PostgreSQL has run in `database` so far.
fn statements(pg: &pg::Pg, database: &str) -> i64 {
    pg.sql(
        database,
        "SELECT COALESCE(SUM(calls), 0) FROM pg_stat_statements \
         WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .parse()
    .unwrap()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// What part 1 measures of one backend: time and statements of the first sync, and of one
/// round of quiet passes.
struct Phases {
    first: (Duration, i64),
    quiet: (Duration, i64),
}

/// Part 1: one backend's first sync and quiet passes over `pairs` × `items` in memory;
/// `statements` reads the backend's statement count (0 where it has none).
async fn per_pass(
    state: State,
    pairs: usize,
    items: usize,
    statements: impl Fn() -> i64,
) -> Phases {
    let (src, tgt) = (Arc::new(MemoryStore::new()), Arc::new(MemoryStore::new()));
    let mut configs = Vec::new();
    for p in 0..pairs {
        let cal: CalendarPath = format!("/u{p}/").parse().unwrap();
        src.add_calendar(&cal);
        tgt.add_calendar(&cal);
        for i in 0..items {
            src.put(&cal, &format!("{i}.ics"), &ics(p, i, 0));
        }
        configs.push(Pair::new(
            format!("u{p}").parse::<PairId>().unwrap(),
            format!("old:/u{p}/").parse().unwrap(),
            format!("new:/u{p}/").parse().unwrap(),
        ));
    }
    let stores: BTreeMap<String, Arc<dyn CalendarStore>> = [
        ("old".to_string(), src as Arc<dyn CalendarStore>),
        ("new".to_string(), tgt as _),
    ]
    .into();
    let rewriter = Rewriter::new([("old.example".to_string(), "new.example".to_string())], []);
    let engine = Engine::with_stores(state, stores, rewriter);
    let round = async || {
        let (t, n) = (Instant::now(), statements());
        stream::iter(&configs)
            .map(|c| engine.sync_pair(c, PassOptions::default()))
            .buffer_unordered(8)
            .for_each(|r| {
                let r = r.expect("state");
                assert!(r.error.is_none(), "{:?}", r.error);
                async {}
            })
            .await;
        (t.elapsed(), statements() - n)
    };
    let first = round().await;
    let mut quiet = (Duration::ZERO, 0);
    for _ in 0..3 {
        let (t, n) = round().await;
        quiet = (quiet.0 + t / 3, quiet.1 + n / 3);
    }
    Phases { first, quiet }
}

/// Part 1 on both backends, side by side.
fn part_one(runtime: &tokio::runtime::Runtime, pg: &pg::Pg) {
    let (pairs, items) = (500, 20);
    let dir = tempfile::tempdir().unwrap();
    let sqlite = runtime
        .block_on(State::open(&dir.path().join("state.db")))
        .unwrap();
    let s = runtime.block_on(per_pass(sqlite, pairs, items, || 0));
    let url = pg.database();
    let database = url.rsplit('/').next().unwrap().to_string();
    pg.sql(
        &database,
        "CREATE EXTENSION IF NOT EXISTS pg_stat_statements",
    );
    let config = StateConfig::Postgres {
        url,
        password: Some(PasswordSource::File(pg.password_file())),
    };
    let postgres = runtime
        .block_on(tandem::engine::connect_state(&config))
        .unwrap();
    let p = runtime.block_on(per_pass(postgres, pairs, items, || {
        statements(pg, &database)
    }));
    let n = (pairs * items) as f64;
    println!("per pass, {pairs} pairs × {items} items on the memory store, 8 passes at once:");
    println!(
        "  first sync per item: SQLite {:.0} µs, PostgreSQL {:.0} µs ({:.2}×)",
        s.first.0.as_secs_f64() * 1e6 / n,
        p.first.0.as_secs_f64() * 1e6 / n,
        p.first.0.as_secs_f64() / s.first.0.as_secs_f64()
    );
    println!(
        "  quiet pass: SQLite {:.2} ms, PostgreSQL {:.2} ms ({:.2}×)",
        s.quiet.0.as_secs_f64() * 1e3 / pairs as f64,
        p.quiet.0.as_secs_f64() * 1e3 / pairs as f64,
        p.quiet.0.as_secs_f64() / s.quiet.0.as_secs_f64()
    );
    println!(
        "  PostgreSQL statements (round trips): {:.1} per first-sync item, {:.1} per quiet pass",
        p.first.1 as f64 / n,
        p.quiet.1 as f64 / pairs as f64
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let pg = pg::Pg::start_new_with(&[
        "shared_preload_libraries=pg_stat_statements",
        "pg_stat_statements.track_utility=on",
    ]);
    part_one(&runtime, &pg);
    part_two(&pg);
}

/// Part 2: two node processes over many pairs on vdir.
fn part_two(pg: &pg::Pg) {
    let pairs = env("TANDEM_NODES_PAIRS", 20_000);
    let minutes = env("TANDEM_NODES_MINUTES", 3);
    let interval = env("TANDEM_NODES_INTERVAL", 60);
    let items = 2;
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (dir.path().join("old"), dir.path().join("new"));
    let mut csv = String::new();
    for p in 0..pairs {
        std::fs::create_dir_all(old.join(format!("u{p}"))).unwrap();
        std::fs::create_dir_all(new.join(format!("u{p}"))).unwrap();
        for i in 0..items {
            std::fs::write(old.join(format!("u{p}/{i}.ics")), ics(p, i, 0)).unwrap();
        }
        csv.push_str(&format!("u{p},old:/u{p}/,new:/u{p}/\n"));
    }
    std::fs::write(dir.path().join("pairs.csv"), csv).unwrap();
    let url = pg.database();
    let database = url.rsplit('/').next().unwrap().to_string();
    pg.sql(
        &database,
        "CREATE EXTENSION IF NOT EXISTS pg_stat_statements",
    );
    let config = format!(
        "pairs_csv = \"pairs.csv\"\n[state]\nurl = \"{url}\"\npassword_file = \"{}\"\n\
         [sync]\ninterval = \"{interval}s\"\n[agents]\ncount = 1\n\
         [rewrite]\ndomains = {{ \"old.example\" = \"new.example\" }}\n\
         [servers.old]\nkind = \"vdir\"\npath = \"old\"\n[servers.new]\nkind = \"vdir\"\npath = \"new\"\n",
        pg.password_file().display()
    );
    let count = |sql: &str| -> i64 { pg.sql(&database, sql).parse().unwrap() };
    let started = Instant::now();
    let mut nodes: Vec<Child> = (0..2).map(|n| start_node(dir.path(), &config, n)).collect();
    let total = (pairs * items) as i64;
    // The first node to connect creates the tables.
    while pg.sql(&database, "SELECT to_regclass('mappings') IS NOT NULL") != "t" {
        std::thread::sleep(Duration::from_millis(200));
    }
    while count("SELECT COUNT(*) FROM mappings") < total {
        std::thread::sleep(Duration::from_secs(2));
        for n in &mut nodes {
            assert!(n.try_wait().unwrap().is_none(), "a node stopped");
        }
    }
    let first = started.elapsed();
    let node_cpu = |nodes: &[Child]| nodes.iter().map(|n| cpu_of(n.id())).sum::<Duration>();
    println!(
        "{pairs} pairs × {items} items on vdir over 2 node processes: first sync {:.0} s \
         ({:.0} items/s), nodes' CPU {:.0} s, PostgreSQL's {:.0} s",
        first.as_secs_f64(),
        total as f64 / first.as_secs_f64(),
        node_cpu(&nodes).as_secs_f64(),
        pg_cpu(pg).as_secs_f64()
    );

    // Steady state: 1% of the pairs change one item per minute.
    let (cpu0, pg0, st0) = (node_cpu(&nodes), pg_cpu(pg), statements(pg, &database));
    let runs0 = count("SELECT COUNT(*) FROM runs");
    let steady = Instant::now();
    let mut changes: Vec<(usize, i64)> = Vec::new();
    let per_minute = (pairs / 100).max(1);
    for minute in 0..minutes {
        let mut moments: Vec<(u64, usize)> = (0..per_minute)
            .map(|_| (fastrand::u64(0..60_000), fastrand::usize(0..pairs)))
            .collect();
        moments.sort();
        let base = Instant::now();
        for (at, p) in moments {
            if let Some(wait) = Duration::from_millis(at).checked_sub(base.elapsed()) {
                std::thread::sleep(wait);
            }
            let version = changes.len() as u32 + 1;
            let i = fastrand::usize(0..items);
            let file = old.join(format!("u{p}/{i}.ics"));
            let tmp = old.join(format!("u{p}/.{i}.tmp"));
            std::fs::write(&tmp, ics(p, i, version)).unwrap();
            std::fs::rename(&tmp, &file).unwrap();
            changes.push((p, tandem::domain::time::now_ms()));
        }
        if let Some(rest) = Duration::from_secs(60).checked_sub(base.elapsed()) {
            std::thread::sleep(rest);
        }
        println!("minute {}: {per_minute} changes", minute + 1);
    }
    let wall = steady.elapsed();
    let (cpu1, pg1, st1) = (node_cpu(&nodes), pg_cpu(pg), statements(pg, &database));
    let runs = count("SELECT COUNT(*) FROM runs") - runs0;
    // Let the last changes land (two intervals at most), then read each one's latency.
    let values: Vec<String> = changes
        .iter()
        .map(|(p, t)| format!("('u{p}', CAST({t} AS BIGINT))"))
        .collect();
    let query = format!(
        "SELECT COALESCE((SELECT MIN(r.finished_at) FROM runs r WHERE r.pair_id = c.p \
         AND r.started_at >= c.t AND r.updated > 0) - c.t, -1) FROM (VALUES {}) AS c(p, t)",
        values.join(", ")
    );
    let drain = Instant::now();
    let (mut lat, mut missing) = (Vec::new(), changes.len());
    while missing > 0 && drain.elapsed() < Duration::from_secs(2 * interval as u64) {
        std::thread::sleep(Duration::from_secs(5));
        (lat, missing) = (Vec::new(), 0);
        for l in pg.sql(&database, &query).lines() {
            match l.trim().parse::<i64>() {
                Ok(ms) if ms >= 0 => lat.push(ms as f64 / 1000.0),
                _ => missing += 1,
            }
        }
    }
    lat.sort_by(f64::total_cmp);
    for n in &mut nodes {
        let _ = Command::new("kill")
            .args(["-TERM", &n.id().to_string()])
            .status();
        let _ = n.wait();
    }
    let (node_cores, pg_cores) = (
        (cpu1 - cpu0).as_secs_f64() / wall.as_secs_f64(),
        (pg1 - pg0).as_secs_f64() / wall.as_secs_f64(),
    );
    let passes_per_second = runs as f64 / wall.as_secs_f64();
    println!(
        "steady state over {:.0} s: {} changes, {missing} not written; latency change → \
         target p50 {:.1} s, p99 {:.1} s, max {:.1} s (interval {interval} s)",
        wall.as_secs_f64(),
        changes.len(),
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat.last().copied().unwrap_or(0.0)
    );
    println!(
        "  {passes_per_second:.0} passes/s, {:.0} statements/s ({:.1} per pass); nodes {node_cores:.2} cores, PostgreSQL {pg_cores:.2} cores",
        (st1 - st0) as f64 / wall.as_secs_f64(),
        (st1 - st0) as f64 / runs.max(1) as f64
    );
    if pg_cores > 0.0 {
        let per_core = passes_per_second / pg_cores * interval as f64;
        println!(
            "  one PostgreSQL core serves about {per_core:.0} pairs at a {interval} s interval \
             (passes/s per PostgreSQL core × interval)"
        );
    }
}

fn start_node(dir: &Path, config: &str, n: usize) -> Child {
    let port = dav::free_port();
    let file = dir.join(format!("node{n}.toml"));
    std::fs::write(
        &file,
        format!("{config}[http]\nlisten = \"127.0.0.1:{port}\"\n"),
    )
    .unwrap();
    Command::new(env!("CARGO_BIN_EXE_tandem"))
        .arg("-c")
        .arg(&file)
        .arg("run")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join(format!("node{n}.log"))).unwrap())
        .spawn()
        .expect("start tandem run")
}
