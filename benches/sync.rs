//! Benchmarks: the planner over 100,000 items, reading and writing one item, the sync window's
//! judgement of one item, and vdir → vdir passes over 10,000 items.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use tandem::domain::identity::IdentityKey;
use tandem::domain::item::{Item, Rewriter};
use tandem::domain::mapping::Mapping;
use tandem::domain::pair::Pair;
use tandem::domain::types::{ContentHash, Etag, Href};
use tandem::domain::window::Window;
use tandem::engine::{Engine, PassOptions};
use tandem::state::State;
use tandem::store::CalendarStore;
use tandem::store::vdir::VdirStore;
use tandem::sync::{self, Content, Mode, PlanOptions, Prepared, Prior, Side, Snapshot, Version};

fn ics(n: usize, version: usize) -> String {
    format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//bench//EN\r\nBEGIN:VEVENT\r\nUID:bench-{n}@old.example\r\n\
         DTSTAMP:20261101T000000Z\r\nDTSTART:20261110T{:02}0000Z\r\nDTEND:20261110T{:02}3000Z\r\nSUMMARY:Meeting {n} v{version}\r\n\
         ORGANIZER;CN=\"Doe, Jane\":mailto:jane@old.example\r\nATTENDEE;PARTSTAT=ACCEPTED:mailto:bob@old.example\r\n\
         END:VEVENT\r\nEND:VCALENDAR\r\n",
        n % 24,
        n % 24
    )
}

/// 100,000 mapped items; `changed` of them have a new source etag and new content.
fn planner_input(total: usize, changed: usize) -> (Snapshot, Snapshot, Prior) {
    let changed_item = Arc::new(Prepared::new(Item::parse(&ics(0, 2)).unwrap()));
    let mut items = Vec::with_capacity(total);
    let mut target = Vec::with_capacity(total);
    let mut prior = Prior::with_capacity(total);
    for n in 0..total {
        let a = Href::new(&format!("/alice/calendar/{n}.ics")).unwrap();
        let b = Href::new(&format!("/alice/{n}.ics")).unwrap();
        let m = Mapping {
            a_href: a.clone(),
            a_etag: Etag::new(format!("\"a-{n}\"")),
            b_href: b.clone(),
            b_etag: Etag::new(format!("\"b-{n}\"")),
            identity: IdentityKey::new(Some("jane@new.example"), &format!("bench-{n}@old.example")),
            hash: ContentHash(n as u128),
        };
        let is_changed = n % (total / changed.max(1)).max(1) == 0 && changed > 0;
        items.push(Version {
            href: a.clone(),
            etag: if is_changed {
                Etag::new(format!("\"a-{n}-2\""))
            } else {
                m.a_etag.clone()
            },
            content: if is_changed {
                Content::Fetched(changed_item.clone())
            } else {
                Content::NotFetched
            },
        });
        target.push(Version {
            href: b,
            etag: m.b_etag.clone(),
            content: Content::NotFetched,
        });
        prior.insert(m);
    }
    (
        Snapshot {
            items,
            deleted: Vec::new(),
            complete: true,
            waiting: 0,
        },
        Snapshot {
            items: target,
            complete: true,
            ..Snapshot::default()
        },
        prior,
    )
}

const ONE_WAY: Mode = Mode::OneWay { from: Side::A };

fn bench_plan(c: &mut Criterion) {
    let mut g = c.benchmark_group("plan");
    g.throughput(Throughput::Elements(100_000));
    let (s, t, p) = planner_input(100_000, 0);
    g.bench_function("100k unchanged", |b| {
        b.iter(|| {
            let plan = sync::plan(ONE_WAY, &s, &t, &p, &[], PlanOptions::default()).unwrap();
            assert_eq!(plan.unchanged, 100_000);
            plan
        })
    });
    let (s, t, p) = planner_input(100_000, 1_000);
    g.bench_function("100k, 1% changed", |b| {
        b.iter(|| {
            let plan = sync::plan(ONE_WAY, &s, &t, &p, &[], PlanOptions::default()).unwrap();
            assert_eq!(plan.actions.len(), 1_000);
            plan
        })
    });
    g.finish();
}

/// The window check runs on every item read: a single event, and a weekly series from 2019 in a
/// Windows zone (the expander walks every week from then to the window).
fn bench_window(c: &mut Criterion) {
    let mut g = c.benchmark_group("window");
    let day = Duration::from_secs(86_400);
    let w = Window {
        past: Some(day * 180),
        future: Some(day * 730),
    };
    let now = chrono::DateTime::from_timestamp(1_795_262_400, 0).unwrap();
    let single = Item::parse(&ics(1, 1)).unwrap();
    let weekly = Item::parse(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nUID:weekly@old.example\r\n\
         DTSTART;TZID=W. Europe Standard Time:20190107T100000\r\nDTEND;TZID=W. Europe Standard Time:20190107T110000\r\n\
         RRULE:FREQ=WEEKLY;BYDAY=MO,WE\r\nEXDATE;TZID=W. Europe Standard Time:20190109T100000\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
    )
    .unwrap();
    g.bench_function("single event", |b| b.iter(|| w.fit(&single, now)));
    g.bench_function("twice-weekly series since 2019", |b| {
        b.iter(|| w.fit(&weekly, now))
    });
    g.finish();
}

/// Every item read is parsed, hashed, rewritten and written again: a meeting, and one with a
/// 4 kB description folded by its client.
fn bench_item(c: &mut Criterion) {
    let mut g = c.benchmark_group("item");
    let rw = Rewriter::new([("old.example".to_string(), "new.example".to_string())], []);
    let long = ics(1, 1).replace(
        "SUMMARY:",
        &format!(
            "DESCRIPTION:{}\r\nSUMMARY:",
            "Agenda item, see notes \\n".repeat(160)
        ),
    );
    let long = Item::parse(&long).unwrap().to_ics();
    for (name, text) in [("meeting", ics(1, 1)), ("4 kB description", long)] {
        g.throughput(Throughput::Bytes(text.len() as u64));
        g.bench_function(format!("parse, hash, rewrite, emit: {name}"), |b| {
            b.iter(|| {
                let mut item = Item::parse(&text).unwrap();
                let hash = item.content_hash();
                item.rewrite(&rw);
                item.mark_client_scheduled();
                (hash, item.to_ics())
            })
        });
    }
    g.finish();
}

struct VdirBench {
    _dir: tempfile::TempDir,
    root: std::path::PathBuf,
    pair: Pair,
}

fn vdir_setup(items: usize) -> VdirBench {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    std::fs::create_dir_all(root.join("old/alice")).unwrap();
    for n in 0..items {
        std::fs::write(root.join(format!("old/alice/{n}.ics")), ics(n, 1)).unwrap();
    }
    let pair = Pair::new(
        "alice".parse().unwrap(),
        "old:/alice/".parse().unwrap(),
        "new:/alice/".parse().unwrap(),
    );
    VdirBench {
        _dir: dir,
        root,
        pair,
    }
}

async fn engine(root: &std::path::Path, run: usize) -> Engine {
    let target = root.join(format!("new-{run}"));
    std::fs::create_dir_all(target.join("alice")).unwrap();
    let state = State::open(&root.join(format!("state-{run}.db")))
        .await
        .unwrap();
    let stores: BTreeMap<String, Arc<dyn CalendarStore>> = [
        (
            "old".to_string(),
            Arc::new(VdirStore::new(root.join("old"))) as Arc<dyn CalendarStore>,
        ),
        (
            "new".to_string(),
            Arc::new(VdirStore::new(target)) as Arc<dyn CalendarStore>,
        ),
    ]
    .into();
    Engine::with_stores(
        state,
        stores,
        Rewriter::new([("old.example".into(), "new.example".into())], []),
    )
}

fn bench_vdir(c: &mut Criterion) {
    const N: usize = 10_000;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let setup = vdir_setup(N);
    let mut g = c.benchmark_group("vdir to vdir");
    g.throughput(Throughput::Elements(N as u64));
    g.sample_size(10).measurement_time(Duration::from_secs(30));
    let mut run = 0;
    g.bench_function("first sync of 10k items", |b| {
        b.iter_batched(
            || {
                run += 1;
                rt.block_on(engine(&setup.root, run))
            },
            |e| {
                let r = rt
                    .block_on(e.sync_pair(&setup.pair, PassOptions::default()))
                    .unwrap();
                assert_eq!(r.created, N as u64, "{:?}", r.error);
                e
            },
            BatchSize::PerIteration,
        )
    });
    let synced = rt.block_on(async {
        let e = engine(&setup.root, 0).await;
        e.sync_pair(&setup.pair, PassOptions::default())
            .await
            .unwrap();
        e
    });
    g.bench_function("no-change pass over 10k items", |b| {
        b.iter(|| {
            let r = rt
                .block_on(synced.sync_pair(&setup.pair, PassOptions::default()))
                .unwrap();
            assert_eq!(r.unchanged, N as u64);
        })
    });
    g.finish();
}

criterion_group!(benches, bench_plan, bench_item, bench_window, bench_vdir);
criterion_main!(benches);
