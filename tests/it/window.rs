//! The sync window over time: on the memory store and real Radicale (incremental listings, where
//! an item outside the window is never listed again) and on vdir (complete listings).

use crate::common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use common::dav::DavServer;
use tandem::domain::item::{Item, Rewriter};
use tandem::domain::pair::{Extras, Pair};
use tandem::domain::types::CalendarPath;
use tandem::domain::window::Window;
use tandem::engine::report::PairReport;
use tandem::engine::{Engine, PassOptions};
use tandem::state::State;
use tandem::store::CalendarStore;
use tandem::store::memory::MemoryStore;
use tandem::store::vdir::VdirStore;

const DAY: i64 = 86_400;
/// 2026-11-21 12:00 UTC.
const T0: i64 = 1_795_262_400;

fn stamp(t: i64) -> String {
    DateTime::<Utc>::from_timestamp(t, 0)
        .unwrap()
        .format("%Y%m%dT%H%M%SZ")
        .to_string()
}

fn event(uid: &str, summary: &str, when: &str) -> String {
    format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VEVENT\r\nUID:{uid}\r\nDTSTAMP:20260101T000000Z\r\n{when}\
         SUMMARY:{summary}\r\nORGANIZER:mailto:jane@example.com\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )
}

fn at(t: i64) -> String {
    format!("DTSTART:{}\r\nDTEND:{}\r\n", stamp(t), stamp(t + 3600))
}

fn window(past_days: u64, future_days: u64) -> Window {
    Window {
        past: Some(Duration::from_secs(past_days * 86_400)),
        future: Some(Duration::from_secs(future_days * 86_400)),
    }
}

/// Summaries of the target's items, by UID.
async fn target_items(tgt: &dyn CalendarStore, tcal: &CalendarPath) -> BTreeMap<String, String> {
    let hrefs: Vec<_> = tgt
        .list(tcal)
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.href)
        .collect();
    let mut out = BTreeMap::new();
    for (_, got) in tgt.fetch(tcal, &hrefs).await.unwrap() {
        let item = Item::parse(&got.unwrap().data).unwrap();
        assert!(
            out.insert(
                item.uid().to_string(),
                item.summary().unwrap_or("").to_string()
            )
            .is_none(),
            "two copies of {}",
            item.uid()
        );
    }
    out
}

fn counts(r: &PairReport) -> (u64, u64, u64, u64, u64) {
    assert!(r.ok(), "{r:?}");
    (r.created, r.updated, r.deleted, r.adopted, r.outside_window)
}

async fn scenario(
    src: Arc<dyn CalendarStore>,
    scal: CalendarPath,
    tgt: Arc<dyn CalendarStore>,
    tcal: CalendarPath,
) {
    let dir = tempfile::tempdir().unwrap();
    let state_path = dir.path().join("state.db");
    let now = Arc::new(AtomicI64::new(T0));
    let engine = |w: Window, state: State| {
        let stores: BTreeMap<String, Arc<dyn CalendarStore>> = [
            ("s".to_string(), src.clone()),
            ("t".to_string(), tgt.clone()),
        ]
        .into();
        let clock = now.clone();
        Engine::with_stores(state, stores, Rewriter::default())
            .with_window(w)
            .with_extras(Extras::Delete)
            .with_clock(Arc::new(move || {
                DateTime::from_timestamp(clock.load(Ordering::SeqCst), 0).unwrap()
            }))
    };
    let pair = Pair::new(
        "p".parse().unwrap(),
        format!("s:{scal}").parse().unwrap(),
        format!("t:{tcal}").parse().unwrap(),
    );
    let pass = async |e: &Engine| e.sync_pair(&pair, PassOptions::default()).await.unwrap();

    let weekly = "DTSTART;TZID=W. Europe Standard Time:20230102T100000\r\nDTEND;TZID=W. Europe Standard Time:20230102T110000\r\n\
                  RRULE:FREQ=WEEKLY;BYDAY=MO\r\n";
    let ended =
        "DTSTART:20230102T100000Z\r\nDTEND:20230102T110000Z\r\nRRULE:FREQ=WEEKLY;COUNT=10\r\n";
    src.create(
        &scal,
        "recent.ics",
        &event("recent", "Recent", &at(T0 - 5 * DAY)),
    )
    .await
    .unwrap();
    src.create(&scal, "old.ics", &event("old", "Old", &at(T0 - 400 * DAY)))
        .await
        .unwrap();
    src.create(&scal, "far.ics", &event("far", "Far", &at(T0 + 200 * DAY)))
        .await
        .unwrap();
    src.create(
        &scal,
        "weekly.ics",
        &event("weekly", "Weekly since 2023", weekly),
    )
    .await
    .unwrap();
    src.create(&scal, "ended.ics", &event("ended", "Ended in 2023", ended))
        .await
        .unwrap();
    // A repair assistant's copy of the old meeting, and an item that is not from the source.
    tgt.create(
        &tcal,
        "cra-old.ics",
        &event("old", "Old (repair copy)", &at(T0 - 400 * DAY)),
    )
    .await
    .unwrap();
    tgt.create(&tcal, "stray.ics", &event("stray", "Stray", &at(T0)))
        .await
        .unwrap();

    // Inside a window of 30 days back and 180 ahead: the recent meeting and the series that
    // started years ago but still has instances. Extras go, but not the copy of the old meeting.
    let e = engine(window(30, 180), State::open(&state_path).await.unwrap());
    assert_eq!(counts(&pass(&e).await), (2, 0, 1, 0, 3));
    let have = target_items(&*tgt, &tcal).await;
    assert_eq!(
        have.keys().collect::<Vec<_>>(),
        ["old", "recent", "weekly"],
        "{have:?}"
    );
    assert_eq!(e.state.outside_window_count(&pair.id).await.unwrap(), 3);
    // Nothing changed: nothing to do, nothing read again.
    assert_eq!(counts(&pass(&e).await), (0, 0, 0, 0, 0));

    // 40 days later the recent meeting has aged out: its source edit is not written, and its
    // copy stays. The far meeting entered the window on day 20 and is created now, although no
    // listing mentions it again.
    now.store(T0 + 40 * DAY, Ordering::SeqCst);
    let recent = src
        .list(&scal)
        .await
        .unwrap()
        .into_iter()
        .find(|v| v.href.file_name() == "recent.ics")
        .unwrap();
    src.update(
        &recent.href,
        &recent.etag,
        &event("recent", "Recent (edited)", &at(T0 - 5 * DAY)),
    )
    .await
    .unwrap();
    assert_eq!(counts(&pass(&e).await), (1, 0, 0, 0, 1));
    let have = target_items(&*tgt, &tcal).await;
    assert_eq!(
        have.get("recent").map(String::as_str),
        Some("Recent"),
        "an item that left the window stays as it was"
    );
    assert_eq!(have.get("far").map(String::as_str), Some("Far"));
    assert_eq!(counts(&pass(&e).await), (0, 0, 0, 0, 0));

    // A source deletion still deletes, inside the window or not.
    let recent = src
        .list(&scal)
        .await
        .unwrap()
        .into_iter()
        .find(|v| v.href.file_name() == "recent.ics")
        .unwrap();
    src.delete(&recent.href, &recent.etag).await.unwrap();
    assert_eq!(counts(&pass(&e).await), (0, 0, 1, 0, 0));
    assert!(!target_items(&*tgt, &tcal).await.contains_key("recent"));
    assert_eq!(
        e.state.outside_window_count(&pair.id).await.unwrap(),
        2,
        "old and ended are remembered"
    );

    // Widening the window brings the remembered items in: the old meeting adopts the repair copy.
    let e = engine(window(2000, 180), e.state.clone());
    assert_eq!(counts(&pass(&e).await), (1, 0, 0, 1, 0));
    let have = target_items(&*tgt, &tcal).await;
    assert_eq!(
        have.keys().collect::<Vec<_>>(),
        ["ended", "far", "old", "weekly"],
        "{have:?}"
    );
    assert_eq!(have["old"], "Old", "the repair copy was brought in step");
    assert_eq!(e.state.outside_window_count(&pair.id).await.unwrap(), 0);
    assert_eq!(counts(&pass(&e).await), (0, 0, 0, 0, 0));
}

#[tokio::test]
async fn window_on_the_memory_store() {
    let (src, tgt) = (Arc::new(MemoryStore::new()), Arc::new(MemoryStore::new()));
    let (scal, tcal): (CalendarPath, CalendarPath) =
        ("/src/".parse().unwrap(), "/tgt/".parse().unwrap());
    src.add_calendar(&scal);
    tgt.add_calendar(&tcal);
    scenario(src, scal, tgt, tcal).await;
}

#[tokio::test]
async fn window_on_vdir() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("src")).unwrap();
    std::fs::create_dir_all(dir.path().join("tgt")).unwrap();
    let store = Arc::new(VdirStore::new(dir.path().to_path_buf()));
    scenario(
        store.clone(),
        "/src/".parse().unwrap(),
        store,
        "/tgt/".parse().unwrap(),
    )
    .await;
}

#[tokio::test]
async fn window_on_radicale() {
    let source = DavServer::radicale();
    let target = DavServer::radicale();
    let scal: CalendarPath = source.make_calendar("alice", "calendar").parse().unwrap();
    let tcal: CalendarPath = target.make_calendar("alice", "calendar").parse().unwrap();
    scenario(source.store(), scal, target.store(), tcal).await;
}
