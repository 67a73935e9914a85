//! The sync service: agents pinned to their processors, pairs that pause and resume by themselves,
//! poison items quarantined, leases between processes, and a graceful stop.

use crate::common;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::dav::{self, DavServer};
use common::{Setup, event, spawn_run, stop, text};
use tandem::domain::error::ErrorKind;
use tandem::domain::item::Rewriter;
use tandem::domain::pair::Pair;
use tandem::domain::pairstate::PairState;
use tandem::domain::types::CalendarPath;
use tandem::engine::{Engine, PassOptions};
use tandem::service::scheduler::{Policy, Scheduler};
use tandem::state::State;
use tandem::store::CalendarStore;
use tandem::store::memory::MemoryStore;

fn json(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(out)))
}

fn online() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// `(thread name, allowed CPUs)` of every thread of process `pid`.
fn threads(pid: u32) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
        let cpus = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .unwrap_or("")
            .trim()
            .to_string();
        out.push((comm.trim().to_string(), cpus));
    }
    out
}

#[test]
fn agents_run_on_their_configured_processors() {
    let s = Setup::new(&["alice", "bob", "carol", "dave"]);
    for u in ["alice", "bob", "carol", "dave"] {
        s.put(u, "a.ics", &event(&format!("{u}-a"), "One", None));
    }
    // Two agents per processor on a 2-processor machine: [0, 1, 0, 1].
    let indexes: Vec<usize> = (0..4).map(|i| i % online()).collect();
    let mut toml = std::fs::read_to_string(&s.config).unwrap();
    toml.push_str(&format!(
        "\n[sync]\ninterval = \"1s\"\n\n[agents]\ncount = 4\nprocessor_indexes = {indexes:?}\n"
    ));
    std::fs::write(&s.config, toml).unwrap();

    let agents = s.run(&["agents", "--json"]);
    assert_eq!(agents.status.code(), Some(0), "{}", text(&agents));
    let v = json(&agents);
    let rows = v["agents"].as_array().unwrap();
    assert_eq!(
        rows.iter()
            .map(|r| r["processor"].as_u64().unwrap() as usize)
            .collect::<Vec<_>>(),
        indexes
    );
    assert_eq!(
        rows.iter()
            .map(|r| r["pairs"].as_u64().unwrap())
            .sum::<u64>(),
        4
    );

    let mut run = spawn_run(&s.config);
    // Read the four agent threads' placement back from the kernel. A thread is named before it
    // pins itself: wait (bounded) until each shows the processor it was given.
    let want: Vec<(String, String)> = indexes
        .iter()
        .enumerate()
        .map(|(i, p)| (format!("tandem-agent-{i}"), p.to_string()))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut found: Vec<(String, String)> = threads(run.id())
            .into_iter()
            .filter(|(n, _)| n.starts_with("tandem-agent-"))
            .collect();
        found.sort();
        if found == want {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "agents not on their processors: {found:?}, want {want:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // It syncs meanwhile.
    let deadline = Instant::now() + Duration::from_secs(30);
    while ["alice", "bob", "carol", "dave"]
        .iter()
        .any(|u| Setup::files(&s.target(u)).is_empty())
    {
        assert!(
            Instant::now() < deadline,
            "the service did not sync every pair"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, log) = stop(&mut run);
    assert!(status.success(), "{status}: {log}");
    assert!(
        log.contains("agent=3") && log.contains("pair="),
        "log lines carry agent and pair: {log}"
    );
}

#[test]
fn impossible_processor_indexes_are_config_errors() {
    let s = Setup::new(&["alice"]);
    let good = std::fs::read_to_string(&s.config).unwrap();
    let bad = online();
    for (agents, why) in [
        (
            format!("count = 2\nprocessor_indexes = [0, {bad}]\n"),
            format!("processor {bad} does not exist"),
        ),
        (
            "count = 3\nprocessor_indexes = [0, 0]\n".to_string(),
            "lists 2 indexes for 3 agents".to_string(),
        ),
    ] {
        std::fs::write(&s.config, format!("{good}\n[agents]\n{agents}")).unwrap();
        for cmd in ["run", "check", "agents"] {
            let out = s.run(&[cmd]);
            assert_eq!(out.status.code(), Some(2), "{cmd}: {}", text(&out));
            assert!(text(&out).contains(&why), "{cmd}: {}", text(&out));
        }
    }
}

#[test]
fn crowding_some_processors_while_others_idle_is_warned_about() {
    if online() < 2 {
        return; // needs an idle processor to exist
    }
    let s = Setup::new(&["alice"]);
    let mut toml = std::fs::read_to_string(&s.config).unwrap();
    toml.push_str("\n[agents]\ncount = 2\nprocessor_indexes = [0, 0]\n");
    std::fs::write(&s.config, toml).unwrap();
    for args in [&["check"][..], &["agents"], &["status"]] {
        let out = s.run(args);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        assert!(
            text(&out).contains("have no agent while processor(s) 0 (2 agents)"),
            "{args:?}: {}",
            text(&out)
        );
    }
}

#[test]
fn a_thousand_pairs_are_shared_evenly() {
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::new();
    for i in 0..1000 {
        csv.push_str(&format!("user-{i:04},old:/u{i}/,new:/u{i}/\n"));
    }
    std::fs::write(dir.path().join("pairs.csv"), csv).unwrap();
    std::fs::create_dir_all(dir.path().join("o")).unwrap();
    std::fs::create_dir_all(dir.path().join("n")).unwrap();
    let config = dir.path().join("tandem.toml");
    std::fs::write(
        &config,
        "pairs_csv = \"pairs.csv\"\n[state]\nurl = \"sqlite://t.db\"\n[servers.old]\nkind = \"vdir\"\npath = \"o\"\n\
         [servers.new]\nkind = \"vdir\"\npath = \"n\"\n[agents]\ncount = 4\n",
    )
    .unwrap();
    let out = common::tandem(&config, &["agents", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let shares: Vec<u64> = json(&out)["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["pairs"].as_u64().unwrap())
        .collect();
    assert_eq!(shares.iter().sum::<u64>(), 1000);
    for s in &shares {
        assert!((225..=275).contains(s), "{shares:?}");
    }
}

struct Mem {
    _dir: tempfile::TempDir,
    src: Arc<MemoryStore>,
    tgt: Arc<MemoryStore>,
    engine: Arc<Engine>,
    pair: Pair,
    tcal: CalendarPath,
}

async fn memory_pair(items: usize) -> Mem {
    let dir = tempfile::tempdir().unwrap();
    let state = State::open(&dir.path().join("state.db")).await.unwrap();
    let (src, tgt) = (Arc::new(MemoryStore::new()), Arc::new(MemoryStore::new()));
    let (scal, tcal): (CalendarPath, CalendarPath) =
        ("/src/".parse().unwrap(), "/tgt/".parse().unwrap());
    src.add_calendar(&scal);
    tgt.add_calendar(&tcal);
    for i in 0..items {
        src.put(
            &scal,
            &format!("{i}.ics"),
            &event(&format!("item-{i}"), "Meeting", None),
        );
    }
    let stores: BTreeMap<String, Arc<dyn CalendarStore>> = [
        ("s".to_string(), src.clone() as Arc<dyn CalendarStore>),
        ("t".to_string(), tgt.clone() as _),
    ]
    .into();
    let engine = Arc::new(Engine::with_stores(state, stores, Rewriter::default()));
    let pair = Pair::new(
        "p".parse().unwrap(),
        "s:/src/".parse().unwrap(),
        "t:/tgt/".parse().unwrap(),
    );
    Mem {
        _dir: dir,
        src,
        tgt,
        engine,
        pair,
        tcal,
    }
}

fn policy() -> Policy {
    Policy {
        interval: Duration::from_secs(60),
        pause: Duration::from_secs(300),
        backoff_base: Duration::from_secs(60),
        backoff_max: Duration::from_secs(1800),
        jitter: 0.1,
        safety_interval: Duration::from_secs(3600),
    }
}

const T: i64 = 1_795_262_400_000;

#[tokio::test]
async fn a_moving_mailbox_pauses_the_pair_and_it_resumes_by_itself() {
    let m = memory_pair(5).await;
    let mut sched = Scheduler::new(0, m.engine.clone(), vec![m.pair.clone()], policy(), T)
        .await
        .unwrap();
    // The target mailbox is being moved: every request says so, asking to come back in 2 minutes.
    m.tgt.fail_next(
        usize::MAX,
        ErrorKind::Moving {
            retry_after: Some(Duration::from_secs(120)),
        },
    );
    let first = sched
        .step(T)
        .await
        .unwrap()
        .expect("a never-synced pair is due at once");
    assert_eq!(first.state.name(), "paused", "{first:?}");
    assert_eq!(first.state.until(), Some(T + 120_000));
    assert_eq!(first.next_run, T + 120_000);
    assert!(first.report.unwrap().error.unwrap().contains("moving"));
    // Nothing runs before then, and `status` would show it paused.
    assert!(sched.step(T + 119_000).await.unwrap().is_none());
    assert_eq!(
        m.engine
            .state
            .pair_state(&m.pair.id)
            .await
            .unwrap()
            .state
            .name(),
        "paused"
    );
    // Still moving at the first retry: paused again; then the move ends and it converges, with
    // no operator involved.
    let again = sched.step(T + 120_000).await.unwrap().unwrap();
    assert_eq!(again.state.until(), Some(T + 240_000));
    m.tgt.clear_faults();
    let resumed = sched.step(T + 240_000).await.unwrap().unwrap();
    assert_eq!(resumed.state, PairState::Active, "{resumed:?}");
    assert_eq!(resumed.report.unwrap().created, 5);
    assert_eq!(m.tgt.items(&m.tcal).len(), 5);
    assert!(resumed.next_run >= T + 240_000 + 54_000 && resumed.next_run <= T + 240_000 + 60_000);
}

#[tokio::test]
async fn failing_pairs_back_off_and_keep_retrying() {
    let m = memory_pair(3).await;
    let mut sched = Scheduler::new(0, m.engine.clone(), vec![m.pair.clone()], policy(), T)
        .await
        .unwrap();
    m.src.fail_next(usize::MAX, ErrorKind::Transient);
    let mut now = T;
    let mut waits = Vec::new();
    for _ in 0..7 {
        let o = sched.step(now).await.unwrap().expect("due");
        assert_eq!(o.state.name(), "backoff");
        waits.push((o.next_run - now) / 60_000);
        now = o.next_run;
    }
    assert_eq!(
        waits,
        [1, 2, 4, 8, 16, 30, 30],
        "doubling up to the 30-minute cap"
    );
    m.src.clear_faults();
    let o = sched.step(now).await.unwrap().unwrap();
    assert_eq!(o.state, PairState::Active);
    assert_eq!(m.tgt.items(&m.tcal).len(), 3);
}

#[tokio::test]
async fn only_an_operator_disables_a_pair() {
    let m = memory_pair(2).await;
    m.engine.state.ensure_pair(&m.pair).await.unwrap();
    m.engine
        .state
        .set_pair_state(
            &m.pair.id,
            &PairState::Disabled {
                reason: "repair running".into(),
            },
            None,
        )
        .await
        .unwrap();
    let mut sched = Scheduler::new(0, m.engine.clone(), vec![m.pair.clone()], policy(), T)
        .await
        .unwrap();
    let o = sched.step(T).await.unwrap().unwrap();
    assert!(o.report.is_none(), "a disabled pair is not run");
    assert_eq!(o.state.name(), "disabled");
    assert!(m.tgt.items(&m.tcal).is_empty());
    m.engine
        .state
        .set_pair_state(&m.pair.id, &PairState::Active, None)
        .await
        .unwrap();
    let o = sched.step(o.next_run).await.unwrap().unwrap();
    assert_eq!(o.report.unwrap().created, 2);
}

#[tokio::test]
async fn two_processes_never_sync_one_pair_at_once() {
    use tandem::domain::lease::LeaseKind;
    let m = memory_pair(2).await;
    let cal = m.pair.target.to_string();
    let ttl = Duration::from_secs(60);
    // A second "process": its own connection pool on the same database file, its own name.
    let other_state = State::open(m.engine.state.path().unwrap()).await.unwrap();
    let stores: BTreeMap<String, Arc<dyn CalendarStore>> = [
        ("s".to_string(), m.src.clone() as Arc<dyn CalendarStore>),
        ("t".to_string(), m.tgt.clone() as _),
    ]
    .into();
    let other = Engine::with_stores(other_state.clone(), stores, Rewriter::default())
        .with_holder("other process");
    // The other process is in the middle of a pass: it holds the target calendar's lease.
    let held = other_state
        .acquire_lease(&cal, "other process", LeaseKind::Sync, ttl)
        .await
        .unwrap()
        .unwrap();
    let r = m
        .engine
        .sync_pair(&m.pair, PassOptions::default())
        .await
        .unwrap();
    assert!(r.busy, "{r:?}");
    assert!(
        r.error
            .as_deref()
            .unwrap()
            .contains("locked by other process (sync) until"),
        "{r:?}"
    );
    assert!(
        m.tgt.items(&m.tcal).is_empty(),
        "nothing written while the other holds the lease"
    );
    other_state.release_lease(&held).await.unwrap();
    // Its pass ends (the lease is released): ours runs.
    let done = other
        .sync_pair(&m.pair, PassOptions::default())
        .await
        .unwrap();
    assert!(done.ok(), "{done:?}");
    let r = m
        .engine
        .sync_pair(&m.pair, PassOptions::default())
        .await
        .unwrap();
    assert!(r.ok() && !r.busy, "{r:?}");
    // A holder on this machine that was killed (its pid is gone) is not waited out.
    let mut child = Command::new("true").spawn().unwrap();
    child.wait().unwrap();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let dead = format!("{} pid {} 0badc0de", host.trim(), child.id());
    assert!(
        other_state
            .acquire_lease(&cal, &dead, LeaseKind::Sync, Duration::from_secs(600))
            .await
            .unwrap()
            .is_ok()
    );
    let r = m
        .engine
        .sync_pair(&m.pair, PassOptions::default())
        .await
        .unwrap();
    assert!(r.ok() && !r.busy, "{r:?}");
    // A live one is waited for, however its name reads.
    let alive = format!("{} pid {} 0badc0de", host.trim(), std::process::id());
    let live = other_state
        .acquire_lease(&cal, &alive, LeaseKind::Sync, Duration::from_secs(600))
        .await
        .unwrap()
        .unwrap();
    assert!(
        m.engine
            .sync_pair(&m.pair, PassOptions::default())
            .await
            .unwrap()
            .busy
    );
    other_state.release_lease(&live).await.unwrap();
    // A crashed holder's lease lapses by itself.
    assert!(
        other_state
            .acquire_lease(&cal, "crashed elsewhere", LeaseKind::Sync, Duration::ZERO)
            .await
            .unwrap()
            .is_ok()
    );
    let r = m
        .engine
        .sync_pair(&m.pair, PassOptions::default())
        .await
        .unwrap();
    assert!(r.ok() && !r.busy, "{r:?}");
}

#[test]
fn a_poison_item_is_quarantined_and_the_rest_syncs() {
    let s = Setup::new(&["alice"]);
    for i in 0..99 {
        s.put(
            "alice",
            &format!("{i}.ics"),
            &event(&format!("item-{i}"), "Meeting", None),
        );
    }
    s.put(
        "alice",
        "poison.ics",
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nSUMMARY:no end\r\n",
    );
    let sync = || {
        let out = s.run(&["sync", "--json"]);
        (out.status.code(), json(&out)["pairs"][0].clone())
    };
    // Three passes report it failed (exit 3); the third quarantines it.
    let (code, p) = sync();
    assert_eq!(
        (code, p["created"].as_u64(), p["failed"].as_u64()),
        (Some(3), Some(99), Some(1)),
        "{p}"
    );
    for pass in 2..=3 {
        let (code, p) = sync();
        assert_eq!(
            (code, p["failed"].as_u64()),
            (Some(3), Some(1)),
            "pass {pass}: {p}"
        );
        let quarantined = p["failures"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("quarantined after 3 failures");
        assert_eq!(quarantined, pass == 3, "pass {pass}: {p}");
    }
    // From then on it is skipped and the pair is healthy.
    let (code, p) = sync();
    assert_eq!(
        (code, p["failed"].as_u64(), p["quarantined"].as_u64()),
        (Some(0), Some(0), Some(1)),
        "{p}"
    );
    assert_eq!(Setup::files(&s.target("alice")).len(), 99);
    let list = s.run(&["quarantine", "list"]);
    let listed = text(&list);
    assert!(
        listed.contains("pair alice: /alice/poison.ics (source) [quarantined, 3 failure(s)"),
        "{listed}"
    );
    assert!(listed.contains("not valid iCalendar"), "{listed}");
    let status = json(&s.run(&["status", "--json"]));
    assert_eq!(status["pairs"][0]["quarantined"], 1, "{status}");
    // Fixed in the source: its etag changes, it is tried again and synced.
    s.put("alice", "poison.ics", &event("poison", "Fixed", None));
    let (code, p) = sync();
    assert_eq!(
        (code, p["created"].as_u64(), p["quarantined"].as_u64()),
        (Some(0), Some(1), Some(0)),
        "{p}"
    );
    assert!(text(&s.run(&["quarantine", "list"])).contains("no failed or quarantined items"));
}

#[test]
fn quarantine_retry_reads_the_item_again() {
    let s = Setup::new(&["alice"]);
    s.put("alice", "ok.ics", &event("ok", "Fine", None));
    s.put(
        "alice",
        "poison.ics",
        "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nEND:VCALENDAR\r\n",
    );
    for _ in 0..4 {
        s.run(&["sync"]);
    }
    assert_eq!(
        json(&s.run(&["sync", "--json"]))["pairs"][0]["quarantined"],
        1
    );
    let retry = s.run(&["quarantine", "retry", "--pair", "alice"]);
    assert!(
        text(&retry).contains("1 quarantined item(s) will be tried again"),
        "{}",
        text(&retry)
    );
    // Still broken: read and failed again (and quarantined again), not silently skipped.
    let out = s.run(&["sync", "--json"]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(json(&out)["pairs"][0]["failed"], 1);
}

#[test]
fn disable_and_enable_from_the_command_line() {
    let s = Setup::new(&["alice"]);
    let out = s.run(&[
        "disable",
        "--pair",
        "alice",
        "--reason",
        "repair assistant running",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let st = json(&s.run(&["status", "--json"]));
    assert_eq!(st["pairs"][0]["state"], "disabled");
    assert_eq!(st["pairs"][0]["reason"], "repair assistant running");
    assert!(text(&s.run(&["status"])).contains("repair assistant running"));
    assert_eq!(s.run(&["enable", "--pair", "alice"]).status.code(), Some(0));
    assert_eq!(
        json(&s.run(&["status", "--json"]))["pairs"][0]["state"],
        "active"
    );
    assert_eq!(
        s.run(&["disable", "--pair", "nobody"]).status.code(),
        Some(2)
    );
}

/// Radicale config for the service: short interval and pause so the test sees it resume.
fn service_config(
    dir: &std::path::Path,
    source: &DavServer,
    target: &DavServer,
    pairs: &[(&str, &str, &str)],
) -> std::path::PathBuf {
    let (scal, tcal) = (pairs[0].1, pairs[0].2);
    let config = dav::pair_config(
        dir,
        source,
        target,
        scal,
        tcal,
        "[sync]\ninterval = \"1s\"\npause = \"1s\"\nbackoff_max = \"2s\"\n",
    );
    let mut toml = std::fs::read_to_string(&config).unwrap();
    for (id, s, t) in &pairs[1..] {
        toml.push_str(&format!(
            "\n[[pairs]]\nid = \"{id}\"\nsource = \"source:{s}\"\ntarget = \"target:{t}\"\n"
        ));
    }
    std::fs::write(&config, toml).unwrap();
    config
}

#[tokio::test]
async fn a_target_server_killed_and_restarted_under_the_service_converges() {
    let source = DavServer::radicale();
    let mut target = DavServer::radicale();
    let users = ["alice", "bob", "carol"];
    let mut cals = Vec::new();
    for u in users {
        cals.push((
            source.make_calendar(u, "calendar"),
            target.make_calendar(u, "calendar"),
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let pairs: Vec<(&str, &str, &str)> = users
        .iter()
        .zip(&cals)
        .map(|(u, (s, t))| (*u, s.as_str(), t.as_str()))
        .collect();
    let config = service_config(dir.path(), &source, &target, &pairs);
    let src = source.store();
    for (i, (s, _)) in cals.iter().enumerate() {
        src.create(
            &s.parse().unwrap(),
            "a.ics",
            &event(&format!("a-{i}"), "Before the outage", None),
        )
        .await
        .unwrap();
    }
    let mut run = spawn_run(&config);
    let tgt = target.store();
    for (_, t) in &cals {
        dav::wait_for_items(&*tgt, &t.parse().unwrap(), 1, &mut run).await;
    }
    // Every first pass finished (its last request is the listing after its writes).
    common::wait_until("every pair's first pass", 60, || {
        let st = json(&common::tandem(&config, &["status", "--json"]));
        st["pairs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["last_success_at"].is_i64())
    });
    // The target goes away; changes keep arriving in the source.
    target.kill();
    for (i, (s, _)) in cals.iter().enumerate() {
        src.create(
            &s.parse().unwrap(),
            "b.ics",
            &event(&format!("b-{i}"), "During the outage", None),
        )
        .await
        .unwrap();
    }
    // The pairs pause (a refused connection reads as a mailbox moving) instead of stopping.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let st = json(&common::tandem(&config, &["status", "--json"]));
        let states: Vec<String> = st["pairs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["state"].as_str().unwrap().to_string())
            .collect();
        if states.iter().all(|s| s == "paused" || s == "backoff") {
            break;
        }
        assert!(Instant::now() < deadline, "pairs did not pause: {st}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    target.start();
    let tgt = target.store();
    for (_, t) in &cals {
        dav::wait_for_items(&*tgt, &t.parse().unwrap(), 2, &mut run).await;
    }
    let (status, log) = stop(&mut run);
    assert!(status.success(), "{status}: {log}");
    for (_, t) in &cals {
        dav::assert_one_copy_each(&*tgt, &t.parse().unwrap(), 2).await;
    }
    let st = json(&common::tandem(&config, &["status", "--json"]));
    for p in st["pairs"].as_array().unwrap() {
        assert_eq!(p["state"], "active", "{st}");
    }
    assert!(!log.contains(dav::PASSWORD));
}

#[tokio::test]
async fn sigterm_mid_pass_stops_cleanly_and_the_next_sync_converges() {
    let p = dav::seeded_pair(300, "[sync]\ninterval = \"1s\"\n").await;
    let (config, tcal) = (&p.config, &p.tcal);
    let mut run = spawn_run(config);
    let tgt = p.target.store();
    dav::wait_for_items(&*tgt, tcal, 20, &mut run).await;
    let asked = Instant::now();
    let (status, log) = stop(&mut run);
    let took = asked.elapsed();
    assert!(status.success(), "{status}: {log}");
    assert!(
        log.contains("SIGTERM: stopping") && log.contains("stopped"),
        "{log}"
    );
    let landed = tgt.list(tcal).await.unwrap().len();
    assert!(
        landed < 150,
        "a stopping pass starts no new writes ({landed} of 300 landed)"
    );
    println!("stopped {took:?} after SIGTERM with {landed} of 300 items written");
    // The lease was released and nothing half-done confuses the next pass: one copy of each.
    let out = common::tandem(config, &["sync", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    dav::assert_one_copy_each(&*tgt, tcal, 300).await;
    let _ = std::io::stdout().flush();
}

/// A node whose claim on a pair lapses as its pass begins (it stalled, or the pair is being
/// handed to another node) writes nothing and records no pass: another node may run the pair
/// by then.
#[tokio::test]
async fn a_pass_whose_claim_lapses_as_it_begins_writes_and_records_nothing() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let m = memory_pair(5).await;
    // An engine whose node holds the pair for the first `held_for` questions only.
    let node = |held_for: usize| {
        let asked = AtomicUsize::new(0);
        m.engine
            .on_state(m.engine.state.clone())
            .claimed_by(Arc::new(move |_: &str| {
                asked.fetch_add(1, Ordering::SeqCst) < held_for
            }))
    };
    let passes = async || m.engine.state.passes("p", 100).await.unwrap().len();
    let opts = PassOptions::default();

    let lapsed = node(0).sync_pair(&m.pair, opts).await.unwrap();
    assert!(lapsed.busy, "{lapsed:?}");
    // Lapsed as it takes its leases, after it read the state.
    let lapsed = node(1).sync_pair(&m.pair, opts).await.unwrap();
    assert!(lapsed.busy, "{lapsed:?}");
    assert!(lapsed.error.unwrap().contains("no longer holds the pair"));
    assert!(m.tgt.items(&m.tcal).is_empty(), "nothing written");
    assert_eq!(passes().await, 0, "no pass recorded");

    let held = node(usize::MAX).sync_pair(&m.pair, opts).await.unwrap();
    assert_eq!((held.created, held.busy), (5, false), "{held:?}");
    assert_eq!(passes().await, 1);
    // A quiet pass (a look without leases) whose claim lapses while it lists: not recorded.
    let lapsed = node(1).sync_pair(&m.pair, opts).await.unwrap();
    assert!(lapsed.busy, "{lapsed:?}");
    assert_eq!(passes().await, 1, "the look was not recorded");
    let quiet = node(usize::MAX).sync_pair(&m.pair, opts).await.unwrap();
    assert_eq!((quiet.unchanged, quiet.busy), (5, false), "{quiet:?}");
    assert_eq!(passes().await, 2);
}

/// At the default log level, `tandem run` says once where it serves, and nothing else.
#[test]
fn run_says_where_it_listens_at_the_default_level() {
    use std::io::{BufRead, BufReader};
    let s = Setup::new(&["alice"]);
    let toml = std::fs::read_to_string(&s.config).unwrap();
    std::fs::write(
        &s.config,
        format!("{toml}\n[http]\nlisten = \"127.0.0.1:0\"\n"),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .arg("-c")
        .arg(&s.config)
        .arg("run")
        .env_remove("RUST_LOG")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let first = BufReader::new(child.stderr.take().unwrap())
        .lines()
        .next()
        .unwrap()
        .unwrap();
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let _ = child.wait();
    assert!(
        first.contains("status page, API and /metrics on http://127.0.0.1:")
            && !first.contains("127.0.0.1:0/"),
        "{first}"
    );
}
