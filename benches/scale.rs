//! Scale simulation of the service: 10,000 pairs × 50 items on the memory backend, every request
//! delayed 5 ms, at most 32 requests at once per server, 2 pinned agents. After the first sync,
//! every minute 1% of the pairs get a source change (at random moments); the figures are the
//! latency from each change to its target write, the CPU time used (per first-sync item, per
//! pass in the steady state), and the peak RSS.
//!
//! `cargo bench --bench scale`. Smaller runs: `TANDEM_SCALE_PAIRS`, `TANDEM_SCALE_ITEMS`,
//! `TANDEM_SCALE_MINUTES` (default 10000, 50, 3). `TANDEM_SCALE_BASELINE=REV` runs the bench of
//! commit REV and this one side by side and prints the ratio of their CPU figures.
//! `TANDEM_SCALE_MAILBOXES=USERS` runs USERS mailboxes of 3 calendars each from a mailboxes CSV
//! (discovery makes two calendars per user on the target: requests, time and CPU per mailbox),
//! then as many calendars named as plain pairs, and prints their figures side by side.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tandem::domain::error::StoreResult;
use tandem::domain::item::Rewriter;
use tandem::domain::mailbox::{CalendarProps, Home, HomeListing, Mailbox, recorded_pairs};
use tandem::domain::pair::Pair;
use tandem::domain::types::{CalendarPath, Etag, Href, PairId, SyncToken};
use tandem::engine::Engine;
use tandem::service::pool::{self, AgentSpec, Pool};
use tandem::service::scheduler::Policy;
use tandem::state::State;
use tandem::store::memory::MemoryStore;
use tandem::store::{CalendarStore, Changes, Fetched, ItemVersion};
use tandem::sync::target_name;

const DELAY: Duration = Duration::from_millis(5);
const CAP: usize = 32;
const INTERVAL: Duration = Duration::from_secs(30);

/// Changes waiting for their target write: target href → when the source changed.
type Waiting = Mutex<HashMap<Href, Instant>>;

/// A server: the memory store behind a fixed delay per request and a concurrency cap.
struct Server {
    inner: Arc<MemoryStore>,
    slots: tokio::sync::Semaphore,
    creates: AtomicU64,
    /// Listings asked of this server: one per pass of a one-way pair reading from it.
    listings: AtomicU64,
    /// Every request.
    requests: AtomicU64,
    waiting: Option<Arc<Waiting>>,
    latencies: Mutex<Vec<Duration>>,
}

impl Server {
    fn new(inner: Arc<MemoryStore>, waiting: Option<Arc<Waiting>>) -> Server {
        Server {
            inner,
            slots: tokio::sync::Semaphore::new(CAP),
            creates: AtomicU64::new(0),
            listings: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            waiting,
            latencies: Mutex::new(Vec::new()),
        }
    }

    async fn turn(&self) -> tokio::sync::SemaphorePermit<'_> {
        let permit = self.slots.acquire().await.expect("never closed");
        self.requests.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(DELAY).await;
        permit
    }

    fn written(&self, href: &Href) {
        if let Some(w) = &self.waiting
            && let Some(at) = w.lock().unwrap().remove(href)
        {
            self.latencies.lock().unwrap().push(at.elapsed());
        }
    }
}

#[async_trait]
impl CalendarStore for Server {
    fn describe(&self) -> String {
        "simulated server".into()
    }
    async fn check_calendar(&self, cal: &CalendarPath) -> StoreResult<()> {
        let _t = self.turn().await;
        self.inner.check_calendar(cal).await
    }
    async fn list(&self, cal: &CalendarPath) -> StoreResult<Vec<ItemVersion>> {
        let _t = self.turn().await;
        self.listings.fetch_add(1, Ordering::Relaxed);
        self.inner.list(cal).await
    }
    async fn changes(&self, cal: &CalendarPath, since: Option<&SyncToken>) -> StoreResult<Changes> {
        let _t = self.turn().await;
        self.listings.fetch_add(1, Ordering::Relaxed);
        self.inner.changes(cal, since).await
    }
    async fn fetch(&self, cal: &CalendarPath, hrefs: &[Href]) -> StoreResult<Vec<Fetched>> {
        let _t = self.turn().await;
        self.inner.fetch(cal, hrefs).await
    }
    async fn create(&self, cal: &CalendarPath, name: &str, data: &str) -> StoreResult<ItemVersion> {
        let _t = self.turn().await;
        let v = self.inner.create(cal, name, data).await?;
        self.creates.fetch_add(1, Ordering::Relaxed);
        self.written(&v.href);
        Ok(v)
    }
    async fn update(&self, href: &Href, etag: &Etag, data: &str) -> StoreResult<Etag> {
        let _t = self.turn().await;
        let e = self.inner.update(href, etag, data).await?;
        self.written(href);
        Ok(e)
    }
    async fn delete(&self, href: &Href, etag: &Etag) -> StoreResult<()> {
        let _t = self.turn().await;
        self.inner.delete(href, etag).await
    }
    async fn collections(&self, home: &CalendarPath) -> StoreResult<HomeListing> {
        let _t = self.turn().await;
        self.inner.collections(home).await
    }
    async fn make_calendar(&self, cal: &CalendarPath, props: &CalendarProps) -> StoreResult<()> {
        let _t = self.turn().await;
        self.inner.make_calendar(cal, props).await
    }
    fn parallelism(&self) -> usize {
        CAP
    }
}

fn ics(pair: usize, item: usize, version: u32) -> String {
    format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//sim//EN\r\nBEGIN:VEVENT\r\nUID:u{pair}-{item}@old.example\r\n\
         DTSTAMP:20261101T000000Z\r\nDTSTART:20261201T{:02}0000Z\r\nSUMMARY:Meeting {item} v{version}\r\n\
         ORGANIZER:mailto:u{pair}@old.example\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
        item % 24
    )
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Process CPU time (user + system) from /proc.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 (utime, stime) are the 12th and 13th after the command name; ticks of 1/100 s.
    let field = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let ticks = field(11) + field(12);
    Duration::from_millis(ticks * 10)
}

fn rss_mb(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// A figure the side-by-side comparison reads back from this bench's output.
fn figure(name: &str, value: f64) {
    println!("figure: {name} = {value:.4}");
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    if let Ok(rev) = std::env::var("TANDEM_SCALE_BASELINE") {
        return side_by_side::compare(&rev);
    }
    let users = env("TANDEM_SCALE_MAILBOXES", 0);
    if users > 0 && std::env::var("TANDEM_SCALE_SETUP").is_err() {
        return side_by_side::mailboxes_and_pairs(users);
    }
    let mailboxes = std::env::var("TANDEM_SCALE_SETUP").is_ok_and(|s| s == "mailboxes");
    let items = env("TANDEM_SCALE_ITEMS", 50);
    let minutes = env("TANDEM_SCALE_MINUTES", 3);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let world = match mailboxes {
        true => World::mailboxes(env("TANDEM_SCALE_PAIRS", 3000) / CALENDARS.len(), items),
        false => World::pairs(env("TANDEM_SCALE_PAIRS", 10_000), items),
    };
    let seeded_rss = rss_mb("VmRSS:");
    println!(
        "seeded {} calendars × {items} items; RSS with the simulated source data: {seeded_rss:.0} MB",
        world.calendars.len()
    );
    let state = runtime
        .block_on(State::open(&dir.path().join("state.db")))
        .unwrap();
    let (config, engine) = world.engine(dir.path(), state);
    let mut config = config;
    if mailboxes {
        discover(&runtime, &world, &engine, &mut config);
    }
    let pool = first_sync(&world, &engine, &config.pairs, items);
    steady_state(&world, items, minutes);
    pool.stop();
    pool.join();
    let peak = rss_mb("VmHWM:");
    println!(
        "peak RSS {peak:.0} MB, of which about {:.0} MB is the simulated servers' data (source seeded: {seeded_rss:.0} MB, target the same again)",
        (2.0 * seeded_rss).min(peak)
    );
    operator_view(&runtime, &config, &engine);
}

/// The calendars of each user in the mailbox setup: its segment, and whether the target has
/// it from the start (the default calendar) or discovery makes it.
const CALENDARS: [(&str, bool); 3] = [("calendar", true), ("work", false), ("tasks", false)];

/// The simulated servers and what they hold: one calendar per pair.
struct World {
    source: Arc<MemoryStore>,
    src: Arc<Server>,
    tgt: Arc<Server>,
    waiting: Arc<Waiting>,
    /// Each pair's calendar on the source and on the target, in the same order.
    calendars: Vec<(CalendarPath, CalendarPath)>,
    /// The config's text past the servers: pairs, or the mailboxes CSV.
    toml: String,
    csv: Option<String>,
}

impl World {
    /// The simulated servers over `source` and `target`.
    fn new(
        source: Arc<MemoryStore>,
        target: Arc<MemoryStore>,
        calendars: Vec<(CalendarPath, CalendarPath)>,
        toml: String,
        csv: Option<String>,
    ) -> World {
        let waiting: Arc<Waiting> = Arc::default();
        World {
            src: Arc::new(Server::new(source.clone(), None)),
            tgt: Arc::new(Server::new(target, Some(waiting.clone()))),
            source,
            waiting,
            calendars,
            toml,
            csv,
        }
    }

    /// `pairs` pairs `old:/uN/` → `new:/uN/`.
    fn pairs(pairs: usize, items: usize) -> World {
        let (source, target) = (Arc::new(MemoryStore::new()), Arc::new(MemoryStore::new()));
        let mut calendars = Vec::with_capacity(pairs);
        let mut toml = String::new();
        for p in 0..pairs {
            let cal: CalendarPath = format!("/u{p}/").parse().unwrap();
            source.add_calendar(&cal);
            target.add_calendar(&cal);
            for i in 0..items {
                source.put(&cal, &format!("{i}.ics"), &ics(p, i, 0));
            }
            toml.push_str(&format!(
                "[[pairs]]\nid = \"u{p}\"\nsource = \"old:{cal}\"\ntarget = \"new:{cal}\"\n"
            ));
            calendars.push((cal.clone(), cal));
        }
        World::new(source, target, calendars, toml, None)
    }

    /// `users` mailboxes (a CSV), each user with three calendars on the source and only the
    /// default one on the target.
    fn mailboxes(users: usize, items: usize) -> World {
        let (source, target) = (Arc::new(MemoryStore::new()), Arc::new(MemoryStore::new()));
        let mut calendars = Vec::with_capacity(users * CALENDARS.len());
        let mut csv = String::from("id,source,target\n");
        for u in 0..users {
            for (segment, on_target) in CALENDARS {
                let cal: CalendarPath = format!("/u{u}/{segment}/").parse().unwrap();
                source.add_calendar(&cal);
                if on_target {
                    target.add_calendar(&cal);
                }
                let p = calendars.len();
                for i in 0..items {
                    source.put(&cal, &format!("{i}.ics"), &ics(p, i, 0));
                }
                calendars.push((cal.clone(), cal));
            }
            csv.push_str(&format!("u{u},old:u{u},new:u{u}\n"));
        }
        let toml = "mailboxes_csv = \"mailboxes.csv\"\n".to_string();
        World::new(source, target, calendars, toml, Some(csv))
    }

    /// The config (servers that keep users' calendars at `/{user}/`), and the engine over the
    /// simulated servers.
    fn engine(&self, dir: &std::path::Path, state: State) -> (tandem::config::Config, Arc<Engine>) {
        let mut toml = self.toml.clone();
        for server in ["old", "new"] {
            toml.push_str(&format!(
                "[servers.{server}]\nkind = \"caldav\"\nurl = \"http://127.0.0.1:1/\"\n\
                 home = \"/{{user}}/\"\ndefault_calendar = \"calendar\"\n"
            ));
        }
        if let Some(csv) = &self.csv {
            std::fs::write(dir.join("mailboxes.csv"), csv).unwrap();
        }
        let config = tandem::config::Config::from_toml(&dir.join("tandem.toml"), &toml).unwrap();
        let stores: BTreeMap<String, Arc<dyn CalendarStore>> = [
            (
                "old".to_string(),
                self.src.clone() as Arc<dyn CalendarStore>,
            ),
            ("new".to_string(), self.tgt.clone() as _),
        ]
        .into();
        let rewriter = Rewriter::new([("old.example".to_string(), "new.example".to_string())], []);
        let home = || Home::Path("/{user}/".to_string());
        let engine = Engine::with_stores(state, stores, rewriter)
            .with_home("old", home(), Some("calendar"))
            .with_home("new", home(), Some("calendar"));
        (config, Arc::new(engine))
    }
}

/// Discovery of every mailbox (as `tandem run` starts): time, CPU and requests per mailbox;
/// the calendars found become the config's pairs.
fn discover(
    runtime: &tokio::runtime::Runtime,
    world: &World,
    engine: &Engine,
    config: &mut tandem::config::Config,
) {
    let requests =
        || world.src.requests.load(Ordering::Relaxed) + world.tgt.requests.load(Ordering::Relaxed);
    let (r0, cpu0, t) = (requests(), cpu_time(), Instant::now());
    let mailboxes: Vec<&Mailbox> = config.mailboxes.iter().collect();
    let reports = runtime
        .block_on(engine.discover_all(&mailboxes, &[], false))
        .unwrap();
    let (wall, cpu, sent) = (t.elapsed(), cpu_time() - cpu0, requests() - r0);
    assert!(reports.iter().all(|r| r.ok()), "a discovery failed");
    let n = mailboxes.len() as f64;
    let recorded = runtime
        .block_on(engine.state.all_mailbox_calendars())
        .unwrap();
    let pairs = recorded_pairs(&config.mailboxes, recorded);
    assert_eq!(pairs.len(), world.calendars.len(), "calendars paired");
    println!(
        "discovery: {} mailboxes in {:.1} s, {:.1} requests and {:.2} ms of CPU per mailbox; {} calendars paired, {} made on the target",
        mailboxes.len(),
        wall.as_secs_f64(),
        sent as f64 / n,
        cpu.as_secs_f64() * 1e3 / n,
        pairs.len(),
        (reports.iter().flat_map(|r| &r.calendars))
            .filter(|c| c.action == "create")
            .count(),
    );
    figure("discovery requests per mailbox", sent as f64 / n);
    figure(
        "discovery CPU per mailbox (ms)",
        cpu.as_secs_f64() * 1e3 / n,
    );
    config.pairs.extend(pairs);
}

/// The service started over `pairs` (2 pinned agents), until every item is in the target.
fn first_sync(world: &World, engine: &Arc<Engine>, pairs: &[Pair], items: usize) -> Pool {
    let online = std::thread::available_parallelism().map_or(1, |n| n.get());
    let ids: Vec<PairId> = pairs.iter().map(|c| c.id.clone()).collect();
    let mut specs: Vec<AgentSpec> = (0..2)
        .map(|i| AgentSpec {
            index: i,
            processor: i % online,
            pairs: Vec::new(),
        })
        .collect();
    for (c, a) in pairs.iter().zip(pool::assign(&ids, 2)) {
        specs[a].pairs.push(c.clone());
    }
    let policy = Policy {
        interval: INTERVAL,
        pause: Duration::from_secs(60),
        backoff_base: Duration::from_secs(5),
        backoff_max: Duration::from_secs(300),
        jitter: 0.1,
        safety_interval: Duration::from_secs(3600),
    };
    let started = Instant::now();
    let cpu0 = cpu_time();
    let hub = tandem::service::push::PushHub::new(specs.iter().map(|s| (s.index, &s.pairs[..])));
    let pool = Pool::start(
        specs,
        engine.clone(),
        policy,
        8,
        tandem::service::nodes::Membership::everything(),
        hub,
    )
    .unwrap();
    let total = (pairs.len() * items) as u64;
    while world.tgt.creates.load(Ordering::Relaxed) < total {
        std::thread::sleep(Duration::from_millis(200));
    }
    let first = started.elapsed();
    let first_cpu = cpu_time() - cpu0;
    println!(
        "first sync: {total} items in {:.1} s ({:.0} items/s), CPU {:.1} s",
        first.as_secs_f64(),
        total as f64 / first.as_secs_f64(),
        first_cpu.as_secs_f64()
    );
    figure(
        "first-sync CPU per item (ms)",
        first_cpu.as_secs_f64() * 1e3 / total as f64,
    );
    pool
}

/// Every minute 1% of the pairs change one item each at a random moment; the latency from
/// each change to its target write, and the CPU per pass.
fn steady_state(world: &World, items: usize, minutes: usize) {
    // Each pair's next pass reads back its own copies once (the target moved since its token);
    // the steady state starts after those.
    std::thread::sleep(INTERVAL + Duration::from_secs(5));
    let pairs = world.calendars.len();
    let steady = Instant::now();
    let cpu1 = cpu_time();
    let listings = world.src.listings.load(Ordering::Relaxed);
    let per_minute = (pairs / 100).max(1);
    let mut version = 1;
    for minute in 0..minutes {
        let mut moments: Vec<(Duration, usize)> = (0..per_minute)
            .map(|_| {
                (
                    Duration::from_millis(fastrand::u64(0..60_000)),
                    fastrand::usize(0..pairs),
                )
            })
            .collect();
        moments.sort();
        let base = Instant::now();
        for (at, p) in moments {
            if let Some(wait) = at.checked_sub(base.elapsed()) {
                std::thread::sleep(wait);
            }
            let i = fastrand::usize(0..items);
            let (scal, tcal) = &world.calendars[p];
            let href = tcal.join(&target_name(&format!("u{p}-{i}@old.example")));
            (world.waiting.lock().unwrap())
                .entry(href)
                .or_insert_with(Instant::now);
            world
                .source
                .put(scal, &format!("{i}.ics"), &ics(p, i, version));
            version += 1;
        }
        if let Some(rest) = Duration::from_secs(60).checked_sub(base.elapsed()) {
            std::thread::sleep(rest);
        }
        println!("minute {}: {per_minute} changes", minute + 1);
    }
    // Let the last changes land (at most two intervals).
    let drain = Instant::now();
    while !world.waiting.lock().unwrap().is_empty() && drain.elapsed() < INTERVAL * 2 {
        std::thread::sleep(Duration::from_millis(100));
    }
    let steady_wall = steady.elapsed();
    let steady_cpu = cpu_time() - cpu1;
    let passes = world.src.listings.load(Ordering::Relaxed) - listings;
    let mut lat = world.tgt.latencies.lock().unwrap().clone();
    lat.sort();
    let missing = world.waiting.lock().unwrap().len();
    println!(
        "steady state: {} changes over {minutes} min, {} written, {missing} not written",
        lat.len() + missing,
        lat.len()
    );
    println!(
        "latency source change → target write: p50 {:.1} s, p99 {:.1} s, max {:.1} s (interval {} s ±10%)",
        percentile(&lat, 0.5).as_secs_f64(),
        percentile(&lat, 0.99).as_secs_f64(),
        lat.last().copied().unwrap_or_default().as_secs_f64(),
        INTERVAL.as_secs()
    );
    println!(
        "CPU in steady state: {:.1} s over {:.0} s = {:.2} cores",
        steady_cpu.as_secs_f64(),
        steady_wall.as_secs_f64(),
        steady_cpu.as_secs_f64() / steady_wall.as_secs_f64()
    );
    println!(
        "passes in steady state: {passes}, of which at most {} wrote",
        lat.len() + missing
    );
    figure(
        "steady-state CPU per pass (ms)",
        steady_cpu.as_secs_f64() * 1e3 / passes.max(1) as f64,
    );
}

/// The operator's view over all pairs: what each status page load, `/metrics` scrape and
/// `status --json` costs at this size.
fn operator_view(
    runtime: &tokio::runtime::Runtime,
    config: &tandem::config::Config,
    engine: &Engine,
) {
    let live = tandem::service::observe::Live::default();
    for round in 0..3 {
        let t = Instant::now();
        let snap = runtime
            .block_on(tandem::service::observe::snapshot(
                config,
                &engine.state,
                &live,
            ))
            .unwrap();
        let read = t.elapsed();
        let t = Instant::now();
        let metrics = tandem::service::web::encode_metrics(&snap, usize::MAX);
        let encode = t.elapsed();
        let limited = tandem::service::web::encode_metrics(&snap, config.http.metrics_pairs);
        let t = Instant::now();
        let page = tandem::service::web::render_page(&snap, &[], &[]);
        let render = t.elapsed();
        println!(
            "operator view #{round} over {} pairs: snapshot {:.0} ms, /metrics {:.0} ms ({} KB; {} KB with metrics_pairs = {}), page {:.1} ms ({} KB)",
            snap.pairs.len(),
            read.as_secs_f64() * 1e3,
            encode.as_secs_f64() * 1e3,
            metrics.len() / 1024,
            limited.len() / 1024,
            config.http.metrics_pairs,
            render.as_secs_f64() * 1e3,
            page.len() / 1024
        );
    }
}

/// `TANDEM_SCALE_BASELINE=REV`: this bench as committed at REV (built from `git archive` under
/// `target/scale-baseline/`) and as it is now, one after the other in one run with the same
/// sizes, and the ratio of each figure.
mod side_by_side {
    use std::path::{Path, PathBuf};
    use std::process::{Command, Stdio};

    pub fn compare(rev: &str) {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let baseline = build(root, rev);
        let now = std::env::current_exe().expect("this bench's path");
        let before = run(&baseline, &format!("{rev} "), &[]);
        let after = run(&now, "now ", &[]);
        table(rev, "now", &before, &after);
    }

    /// `TANDEM_SCALE_MAILBOXES=USERS`: USERS mailboxes of 3 calendars each (discovered from a
    /// mailboxes CSV), then as many calendars named as plain pairs, one after the other.
    pub fn mailboxes_and_pairs(users: usize) {
        let now = std::env::current_exe().expect("this bench's path");
        let pairs = (users * super::CALENDARS.len()).to_string();
        let env = |setup: &'static str| {
            [
                ("TANDEM_SCALE_SETUP", setup.to_string()),
                ("TANDEM_SCALE_PAIRS", pairs.clone()),
            ]
        };
        let mailboxes = run(&now, "mailboxes ", &env("mailboxes"));
        let plain = run(&now, "pairs ", &env("pairs"));
        table("mailboxes", "pairs", &mailboxes, &plain);
    }

    /// The figures of two runs side by side, with the ratio of each.
    fn table(a: &str, b: &str, before: &[(String, f64)], after: &[(String, f64)]) {
        println!("\n| | {a} | {b} | ratio |\n|---|---|---|---|");
        for (name, was) in before {
            match after.iter().find(|(n, _)| n == name) {
                Some((_, is)) => println!("| {name} | {was:.3} | {is:.3} | {:.2}× |", was / is),
                None => println!("| {name} | {was:.3} | | |"),
            }
        }
    }

    /// The bench binary of `rev`, built in a target folder of its own.
    fn build(root: &Path, rev: &str) -> PathBuf {
        let base = root.join("target/scale-baseline");
        let src = base.join(rev);
        if !src.join("Cargo.toml").exists() {
            std::fs::create_dir_all(&src).unwrap();
            let mut archive = Command::new("git")
                .args(["-C", root.to_str().unwrap(), "archive", "--format=tar", rev])
                .stdout(Stdio::piped())
                .spawn()
                .expect("git");
            let status = Command::new("tar")
                .arg("-x")
                .arg("-C")
                .arg(&src)
                .stdin(archive.stdout.take().unwrap())
                .status()
                .expect("tar");
            let archived = archive.wait().expect("git");
            assert!(status.success() && archived.success(), "unpacking {rev}");
        }
        println!("building the scale bench of {rev} (a first build takes minutes)");
        // The rustc beside this cargo: not whichever a `rust-toolchain` file in a dependency's
        // folder would pick through rustup.
        let cargo = Path::new(env!("CARGO"));
        let out = Command::new(cargo)
            .args([
                "bench",
                "--bench",
                "scale",
                "--no-run",
                "--message-format=json",
            ])
            .current_dir(&src)
            .env("RUSTC", cargo.with_file_name("rustc"))
            .env("CARGO_TARGET_DIR", base.join("target"))
            .stderr(Stdio::inherit())
            .output()
            .expect("cargo");
        assert!(out.status.success(), "building the bench of {rev}");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains("\"executable\":\"") && l.contains("\"name\":\"scale\""))
            .find_map(|l| {
                let at = l.find("\"executable\":\"")? + 14;
                let end = l[at..].find('"')?;
                Some(PathBuf::from(&l[at..at + end]))
            })
            .expect("the bench executable in cargo's output")
    }

    /// Runs one bench binary with this run's sizes, echoing its lines; returns its figures.
    fn run(bench: &Path, label: &str, env: &[(&str, String)]) -> Vec<(String, f64)> {
        println!("running {label}");
        let out = Command::new(bench)
            .arg("--bench")
            .env_remove("TANDEM_SCALE_BASELINE")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stderr(Stdio::inherit())
            .output()
            .expect("the bench");
        let text = String::from_utf8_lossy(&out.stdout);
        let mut figures = Vec::new();
        for line in text.lines() {
            println!("  {label}| {line}");
            if let Some((name, value)) = line
                .strip_prefix("figure: ")
                .and_then(|f| f.rsplit_once(" = "))
                && let Ok(v) = value.parse()
            {
                figures.push((name.to_string(), v));
            }
        }
        assert!(out.status.success(), "the bench of {label} failed");
        figures
    }
}
