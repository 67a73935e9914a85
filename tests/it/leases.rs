//! Calendar leases: one writer per calendar across processes, fencing tokens that only grow, a
//! crashed or stalled holder that loses its lease, and an operator's outside lock.

use crate::common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::dav;
use common::{Setup, event, text};
use tandem::domain::lease::LeaseKind;
use tandem::domain::types::CalendarPath;
use tandem::engine::Engine;
use tandem::state::State;
use tandem::store::CalendarStore;

fn json(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(out)))
}

#[tokio::test]
async fn acquire_renew_release_and_tokens_that_only_grow() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let (a, b) = (
        State::open(&path).await.unwrap(),
        State::open(&path).await.unwrap(),
    );
    let cal = "new:/alice/calendar/";
    let ttl = Duration::from_secs(60);
    let first = a
        .acquire_lease(cal, "one", LeaseKind::Sync, ttl)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.token, 1);
    // Re-acquiring one's own lease renews it and keeps the token.
    assert_eq!(
        a.acquire_lease(cal, "one", LeaseKind::Sync, ttl)
            .await
            .unwrap()
            .unwrap()
            .token,
        1
    );
    assert!(a.renew_lease(&first, ttl).await.unwrap());
    // Another process is refused and told who holds it.
    let locked = b
        .acquire_lease(cal, "two", LeaseKind::Repair, ttl)
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(
        (locked.holder.as_str(), locked.kind),
        ("one", LeaseKind::Sync)
    );
    assert!(
        locked
            .to_string()
            .starts_with("locked by one (sync) until "),
        "{locked}"
    );
    // Released: the next holder gets a higher token.
    a.release_lease(&first).await.unwrap();
    let second = b
        .acquire_lease(cal, "two", LeaseKind::Repair, ttl)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second.token, 2);
    assert!(!a.lease_is_current(&first).await.unwrap());
    assert!(
        !a.renew_lease(&first, ttl).await.unwrap(),
        "a stale holder cannot renew"
    );
    // Expired: taken over, higher token again; the expired holder is no longer current.
    b.release_lease(&second).await.unwrap();
    let short = a
        .acquire_lease(cal, "three", LeaseKind::Sync, Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    let fourth = b
        .acquire_lease(cal, "four", LeaseKind::External, ttl)
        .await
        .unwrap()
        .unwrap();
    assert!(
        fourth.token > short.token && short.token > second.token,
        "{short:?} {fourth:?}"
    );
    assert!(!a.lease_is_current(&short).await.unwrap());
    assert!(b.lease_is_current(&fourth).await.unwrap());
    // Other calendars are independent.
    assert!(
        a.acquire_lease("new:/bob/calendar/", "one", LeaseKind::Sync, ttl)
            .await
            .unwrap()
            .is_ok()
    );
}

#[tokio::test]
async fn of_many_racing_processes_exactly_one_gets_the_lease() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let mut states = Vec::new();
    for _ in 0..4 {
        states.push(State::open(&path).await.unwrap());
    }
    one_winner_per_round(&states).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_many_racing_nodes_on_postgresql_exactly_one_gets_the_lease() {
    let pg = common::pg::shared();
    let config = tandem::config::StateConfig::Postgres {
        url: pg.database(),
        password: Some(tandem::config::PasswordSource::File(pg.password_file())),
    };
    let mut states = Vec::new();
    for _ in 0..4 {
        states.push(tandem::engine::connect_state(&config).await.unwrap());
    }
    one_winner_per_round(&states).await;
}

/// 20 takers over `states` race for each of 10 calendars: exactly one wins each.
async fn one_winner_per_round(states: &[State]) {
    for round in 0..10 {
        let cal = format!("new:/user{round}/");
        let tries = (0..20).map(|i| {
            let state = states[i % states.len()].clone();
            let cal = cal.clone();
            tokio::spawn(async move {
                state
                    .acquire_lease(
                        &cal,
                        &format!("holder-{i}"),
                        LeaseKind::Sync,
                        Duration::from_secs(60),
                    )
                    .await
                    .unwrap()
            })
        });
        let mut won = 0;
        for t in tries.collect::<Vec<_>>() {
            won += usize::from(t.await.unwrap().is_ok());
        }
        assert_eq!(won, 1, "round {round}");
    }
}

#[test]
fn an_outside_lock_skips_its_pair_until_released() {
    let s = Setup::new(&["alice", "bob"]);
    s.put("alice", "a.ics", &event("a", "One", None));
    s.put("bob", "b.ics", &event("b", "Two", None));
    let lock = s.run(&[
        "lock",
        "acquire",
        "--calendar",
        "new:/alice/",
        "--holder",
        "exchange-cra",
        "--ttl",
        "10m",
    ]);
    assert_eq!(lock.status.code(), Some(0), "{}", text(&lock));
    assert!(
        text(&lock).contains("new:/alice/: locked by exchange-cra until"),
        "{}",
        text(&lock)
    );
    // Someone else asking for it is told who has it.
    let again = s.run(&[
        "lock",
        "acquire",
        "--calendar",
        "new:/alice/",
        "--holder",
        "me",
    ]);
    assert_eq!(again.status.code(), Some(3), "{}", text(&again));
    assert!(
        text(&again).contains("locked by exchange-cra (external) until"),
        "{}",
        text(&again)
    );

    let out = s.run(&["sync"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        text(&out).contains(
            "pair alice: target calendar new:/alice/: locked by exchange-cra (external) until"
        ),
        "{}",
        text(&out)
    );
    assert!(
        Setup::files(&s.target("alice")).is_empty(),
        "nothing written under someone else's lock"
    );
    assert_eq!(
        Setup::files(&s.target("bob")).len(),
        1,
        "the other pair syncs"
    );
    let list = s.run(&["lock", "list"]);
    assert!(text(&list).contains("exchange-cra"), "{}", text(&list));
    let status = s.run(&["status"]);
    assert!(
        text(&status).contains("locked by exchange-cra (external) until"),
        "{}",
        text(&status)
    );
    assert_eq!(
        json(&s.run(&["status", "--json"]))["pairs"][0]["lock"]["holder"],
        "exchange-cra"
    );

    // Only the holder releases it.
    assert_eq!(
        s.run(&[
            "lock",
            "release",
            "--calendar",
            "new:/alice/",
            "--holder",
            "me"
        ])
        .status
        .code(),
        Some(3)
    );
    let release = s.run(&[
        "lock",
        "release",
        "--calendar",
        "new:/alice/",
        "--holder",
        "exchange-cra",
    ]);
    assert_eq!(release.status.code(), Some(0), "{}", text(&release));
    let out = s.run(&["sync"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(Setup::files(&s.target("alice")).len(), 1);
    // Bad arguments are usage errors.
    assert_eq!(
        s.run(&[
            "lock",
            "acquire",
            "--calendar",
            "nowhere:/x/",
            "--holder",
            "me"
        ])
        .status
        .code(),
        Some(2)
    );
    assert_eq!(
        s.run(&[
            "lock",
            "acquire",
            "--calendar",
            "new:/alice/",
            "--holder",
            "me",
            "--ttl",
            "soon"
        ])
        .status
        .code(),
        Some(2)
    );
}

fn lease_token(config: &std::path::Path, calendar: &str) -> (String, i64) {
    let v = json(&common::tandem(config, &["lock", "list", "--json"]));
    let l = v
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["calendar"] == calendar)
        .unwrap_or_else(|| panic!("{v}"));
    (
        l["holder"].as_str().unwrap().to_string(),
        l["token"].as_i64().unwrap(),
    )
}

struct Radicale {
    pair: dav::SeededPair,
    config: std::path::PathBuf,
    tgt: std::sync::Arc<tandem::store::caldav::CaldavStore>,
    tcal: CalendarPath,
    calendar: String,
}

async fn radicale_pair(items: usize, extra: &str) -> Radicale {
    let pair = dav::seeded_pair(items, extra).await;
    let (config, tgt, tcal) = (pair.config.clone(), pair.target.store(), pair.tcal.clone());
    let calendar = format!("target:{tcal}");
    Radicale {
        pair,
        config,
        tgt,
        tcal,
        calendar,
    }
}

fn signal(child: &std::process::Child, sig: &str) {
    assert!(
        Command::new("kill")
            .args([sig, &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
}

#[tokio::test]
async fn a_killed_holder_loses_its_lease_to_the_next_with_a_higher_token() {
    let r = radicale_pair(300, "").await;
    let mut sync = dav::spawn_sync(&r.config);
    dav::wait_for_items(&*r.tgt, &r.tcal, 20, &mut sync).await;
    let (holder, token) = lease_token(&r.config, &r.calendar);
    assert!(holder.contains(&format!("pid {}", sync.id())), "{holder}");
    signal(&sync, "-KILL");
    sync.wait().unwrap();
    // Its process is gone, so the next taker need not wait out the ttl.
    let take = common::tandem(
        &r.config,
        &[
            "lock",
            "acquire",
            "--calendar",
            &r.calendar,
            "--holder",
            "next",
            "--ttl",
            "1m",
        ],
    );
    assert_eq!(take.status.code(), Some(0), "{}", text(&take));
    let (holder, next) = lease_token(&r.config, &r.calendar);
    assert_eq!(holder, "next");
    assert!(next > token, "{next} > {token}");
    common::tandem(
        &r.config,
        &[
            "lock",
            "release",
            "--calendar",
            &r.calendar,
            "--holder",
            "next",
        ],
    );
    // And the next sync converges with one copy of each.
    let out = common::tandem(&r.config, &["sync"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    dav::assert_one_copy_each(&*r.tgt, &r.tcal, 300).await;
    drop(r.pair);
}

#[tokio::test]
async fn a_stalled_holder_cannot_write_after_waking() {
    // A short ttl so a stall outlives it.
    let r = radicale_pair(300, "[sync]\nlease_ttl = \"2s\"\n").await;
    let mut sync = dav::spawn_sync(&r.config);
    dav::wait_for_items(&*r.tgt, &r.tcal, 20, &mut sync).await;
    let (_, token) = lease_token(&r.config, &r.calendar);
    // A process stopped inside a state-database write holds SQLite's lock until it wakes (a
    // known limit: other writers wait, then fail): stall it again at another moment then.
    let mut take = None;
    let mut retried = false;
    for _ in 0..5 {
        signal(&sync, "-STOP");
        std::thread::sleep(Duration::from_secs(3));
        // The stalled holder's lease has expired: a repair tool takes it.
        let out = common::tandem(
            &r.config,
            &[
                "lock",
                "acquire",
                "--calendar",
                &r.calendar,
                "--holder",
                "repair-tool",
            ],
        );
        if text(&out).contains("database is locked") {
            retried = true;
            signal(&sync, "-CONT");
            std::thread::sleep(Duration::from_millis(30));
            continue;
        }
        take = Some(out);
        break;
    }
    let take = take.expect("the stalled process held the database lock every time");
    assert_eq!(take.status.code(), Some(0), "{}", text(&take));
    assert!(lease_token(&r.config, &r.calendar).1 > token);
    let before = r.tgt.list(&r.tcal).await.unwrap().len();
    signal(&sync, "-CONT");
    let deadline = Instant::now() + Duration::from_secs(60);
    while sync.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the stale holder did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = sync.wait_with_output().unwrap();
    let after = r.tgt.list(&r.tcal).await.unwrap().len();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    // Woken, it stops at its first check: its own clock says the lease may have expired, or
    // the state refuses to record a write sent before the stall.
    let said = text(&out);
    assert!(
        said.contains("no renewal within its ttl on this node's clock; stopped writing")
            || said.contains("lease lost mid-pass; stopped writing")
            || said.contains("the lease expired; stopped writing"),
        "{said}"
    );
    if !retried && said.contains("lease lost mid-pass") {
        assert!(said.contains("repair-tool (token"), "{said}");
    }
    // Every write checks the lease first; only a write whose check passed just before the stall
    // (at most one per concurrent request) can still land.
    assert!(
        after <= before + 4,
        "the stale holder kept writing: {before} -> {after}"
    );
    assert!(after < 300);
}

/// A writer of two calendars takes both leases in one order (by name) or neither: with one
/// held elsewhere, it takes none and keeps none.
#[tokio::test]
async fn two_calendars_are_leased_in_one_order_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let state = State::open(&dir.path().join("tandem.db")).await.unwrap();
    let engine = Engine::with_stores(
        state.clone(),
        Default::default(),
        tandem::domain::item::Rewriter::default(),
    );
    let ttl = std::time::Duration::from_secs(60);
    let (old, new) = ("old:/alice/", "new:/alice/");
    let seen = engine
        .under_leases(&[old, new], LeaseKind::Sync, false, async |leases| {
            let mut held = Vec::new();
            for l in leases {
                held.push((l.calendar.clone(), state.lease_is_current(l).await?));
            }
            Ok(held)
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        seen,
        [(new.to_string(), true), (old.to_string(), true)],
        "both held, taken in name order"
    );
    for cal in [old, new] {
        let l = state.lease(cal).await.unwrap().unwrap();
        assert!(
            l.expires_at <= tandem::domain::time::now_ms(),
            "{cal} released"
        );
    }
    // Another holder has the second in order: the first is given back, the work never runs.
    state
        .acquire_lease(old, "someone else", LeaseKind::External, ttl)
        .await
        .unwrap()
        .unwrap();
    let locked = engine
        .under_leases(
            &[old, new],
            LeaseKind::Sync,
            false,
            async |_| -> Result<(), _> { panic!("ran without both leases") },
        )
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(locked.holder, "someone else");
    let first = state.lease(new).await.unwrap().unwrap();
    assert!(
        first.expires_at <= tandem::domain::time::now_ms(),
        "the first lease was given back"
    );
}
