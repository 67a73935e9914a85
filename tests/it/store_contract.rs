//! One contract for every `CalendarStore` backend (vdirsyncer's `StorageTests` habit).

use crate::common;

use std::sync::Arc;

use tandem::domain::error::ErrorKind;
use tandem::domain::types::{CalendarPath, Etag, Href};
use tandem::store::CalendarStore;
use tandem::store::memory::MemoryStore;
use tandem::store::vdir::VdirStore;

fn ics(uid: &str, summary: &str) -> String {
    format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nUID:{uid}\r\nDTSTART:20260101T100000Z\r\nSUMMARY:{summary}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )
}

/// A listing with nothing new: empty, or (SOGo, whose tokens count seconds and reach back one)
/// the latest changes again, as they are now.
fn nothing_new(c: &tandem::store::Changes, now: &[(&Href, &Etag)], gone: &Href) -> bool {
    c.changed.iter().all(|v| now.contains(&(&v.href, &v.etag)))
        && c.deleted.iter().all(|h| h == gone)
}

async fn contract(store: Arc<dyn CalendarStore>, cal: CalendarPath, missing: CalendarPath) {
    store.check_calendar(&cal).await.expect("calendar exists");
    let err = store.check_calendar(&missing).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound, "{err}");
    assert_eq!(
        store.list(&missing).await.unwrap_err().kind,
        ErrorKind::NotFound
    );
    assert!(store.list(&cal).await.unwrap().is_empty());

    // create, then a conflicting create is a precondition failure
    let a = store.create(&cal, "a.ics", &ics("a", "one")).await.unwrap();
    assert_eq!(a.href, cal.join("a.ics"));
    let dup = store
        .create(&cal, "a.ics", &ics("a", "again"))
        .await
        .unwrap_err();
    assert_eq!(dup.kind, ErrorKind::PreconditionFailed, "{dup}");
    let b = store.create(&cal, "b.ics", &ics("b", "two")).await.unwrap();

    let mut listed = store.list(&cal).await.unwrap();
    listed.sort_by(|x, y| x.href.cmp(&y.href));
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].href, a.href);
    assert_eq!(listed[0].etag, a.etag);

    // fetch many, with a missing one reported per item
    let gone = cal.join("nope.ics");
    let got = store
        .fetch(&cal, &[a.href.clone(), gone.clone(), b.href.clone()])
        .await
        .unwrap();
    assert_eq!(got.len(), 3);
    let body_a = got
        .iter()
        .find(|(h, _)| *h == a.href)
        .unwrap()
        .1
        .as_ref()
        .unwrap();
    assert!(body_a.data.contains("SUMMARY:one"));
    assert_eq!(body_a.etag, a.etag);
    let missing_item = got
        .iter()
        .find(|(h, _)| *h == gone)
        .unwrap()
        .1
        .as_ref()
        .unwrap_err();
    assert_eq!(missing_item.kind, ErrorKind::NotFound);

    // update with If-Match: the right etag wins, a stale one is refused; etags change on every write
    let a2 = store
        .update(&a.href, &a.etag, &ics("a", "one edited"))
        .await
        .unwrap();
    assert_ne!(a2, a.etag);
    let stale = store
        .update(&a.href, &a.etag, &ics("a", "lost"))
        .await
        .unwrap_err();
    assert_eq!(stale.kind, ErrorKind::PreconditionFailed);
    let now = store
        .fetch(&cal, std::slice::from_ref(&a.href))
        .await
        .unwrap();
    let now = now[0].1.as_ref().unwrap();
    assert!(now.data.contains("one edited"));
    assert_eq!(now.etag, a2, "a read reports the etag the write returned");

    // delete with If-Match
    let stale = store
        .delete(&b.href, &Etag::new("stale"))
        .await
        .unwrap_err();
    assert_eq!(stale.kind, ErrorKind::PreconditionFailed);
    store.delete(&b.href, &b.etag).await.unwrap();
    // On a gone item, HTTP servers may answer 404 or 412 (If-Match on nothing); both are handled.
    let gone_kinds = [ErrorKind::NotFound, ErrorKind::PreconditionFailed];
    assert!(gone_kinds.contains(&store.delete(&b.href, &b.etag).await.unwrap_err().kind));
    assert!(
        gone_kinds.contains(
            &store
                .update(&b.href, &b.etag, &ics("b", "x"))
                .await
                .unwrap_err()
                .kind
        )
    );

    // changes without a watermark list everything
    let all = store.changes(&cal, None).await.unwrap();
    assert!(all.complete);
    assert_eq!(all.changed.len(), 1);
    assert_eq!(all.changed[0].href, a.href);
    assert_eq!(all.changed[0].etag, a2);

    // changes since that watermark: nothing, then exactly what moved
    let since = all.token.clone();
    let quiet = store.changes(&cal, since.as_ref()).await.unwrap();
    if quiet.complete {
        assert_eq!(
            quiet.changed.len(),
            1,
            "a store without watermarks lists everything"
        );
    } else {
        assert!(nothing_new(&quiet, &[(&a.href, &a2)], &b.href), "{quiet:?}");
    }
    // The watermark of a quiet listing (a CalDAV store's holds the calendar's CTag by then):
    // still quiet, and then it shows what moved as the first one does.
    let settled = quiet.token.clone();
    let still = store.changes(&cal, settled.as_ref()).await.unwrap();
    assert!(
        still.complete || nothing_new(&still, &[(&a.href, &a2)], &b.href),
        "{still:?}"
    );
    let c = store
        .create(&cal, "c.ics", &ics("c", "three"))
        .await
        .unwrap();
    let a4 = store
        .update(&a.href, &a2, &ics("a", "one edited twice"))
        .await
        .unwrap();
    let mut want = vec![
        (a.href.clone(), a4.clone()),
        (c.href.clone(), c.etag.clone()),
    ];
    want.sort();
    for from in [&since, &settled, &still.token] {
        let delta = store.changes(&cal, from.as_ref()).await.unwrap();
        let mut moved: Vec<_> = delta
            .changed
            .iter()
            .map(|v| (v.href.clone(), v.etag.clone()))
            .collect();
        moved.sort();
        assert_eq!(moved, want, "from {from:?}: {delta:?}");
    }
    store.delete(&c.href, &c.etag).await.unwrap();
    let delta = store.changes(&cal, since.as_ref()).await.unwrap();
    if delta.complete {
        assert_eq!(delta.changed.len(), 1, "{delta:?}");
    } else {
        assert!(
            delta.deleted.contains(&c.href) || !delta.changed.iter().any(|v| v.href == c.href),
            "{delta:?}"
        );
        assert!(!delta.changed.iter().any(|v| v.href == c.href), "{delta:?}");
    }
    // a watermark the store does not know yields every item, not an error: as a complete
    // listing, or (SOGo, DAViCal: a token they did not issue reads as their first) as changes
    let bogus = store
        .changes(
            &cal,
            Some(&tandem::domain::types::SyncToken::new(
                "http://tandem.invalid/sync/0",
            )),
        )
        .await
        .unwrap();
    assert!(
        bogus.complete || !bogus.deleted.contains(&a.href),
        "{bogus:?}"
    );
    assert_eq!(
        bogus.changed.iter().map(|v| &v.href).collect::<Vec<_>>(),
        vec![&a.href]
    );
}

#[tokio::test]
async fn vdir_store_meets_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("alice")).unwrap();
    std::fs::write(dir.path().join("alice/.hidden.ics"), "ignored").unwrap();
    std::fs::write(dir.path().join("alice/notes.txt"), "ignored").unwrap();
    let store = Arc::new(VdirStore::new(dir.path().to_path_buf()));
    contract(
        store.clone(),
        "/alice/".parse().unwrap(),
        "/nobody/".parse().unwrap(),
    )
    .await;
    // names that would escape the calendar are refused
    let cal: CalendarPath = "/alice/".parse().unwrap();
    assert_eq!(
        store.create(&cal, "../x.ics", "x").await.unwrap_err().kind,
        ErrorKind::InvalidData
    );
    let evil = Href::new("/alice/../../etc/passwd.ics").unwrap();
    assert_eq!(
        store.delete(&evil, &Etag::new("x")).await.unwrap_err().kind,
        ErrorKind::InvalidData
    );
    // no temporary files are left behind
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("alice"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// Once a watermark holds the calendar's CTag, a listing with nothing new is one request.
async fn quiet_listing_is_one_request(server: &common::dav::DavServer, cal: &str) {
    let store = server.store();
    let cal: CalendarPath = cal.parse().unwrap();
    let full = store.changes(&cal, None).await.unwrap();
    let settled = store.changes(&cal, full.token.as_ref()).await.unwrap();
    // The watermark holds a CTag after the token: else the one request would be a report.
    let token = settled.token.clone().unwrap();
    assert!(
        token
            .as_str()
            .split_once('\n')
            .is_some_and(|(_, ctag)| !ctag.is_empty()),
        "no CTag in {token:?}"
    );
    let before = store.counts().unwrap().requests;
    let quiet = store.changes(&cal, settled.token.as_ref()).await.unwrap();
    assert!(!quiet.complete && quiet.changed.is_empty() && quiet.deleted.is_empty());
    assert_eq!(store.counts().unwrap().requests - before, 1);
}

#[tokio::test]
async fn radicale_meets_the_contract() {
    let server = common::dav::DavServer::radicale();
    let cal = server.make_calendar("alice", "calendar");
    let missing = server.calendar_path("nobody", "calendar");
    contract(
        server.store(),
        cal.parse().unwrap(),
        missing.parse().unwrap(),
    )
    .await;
    quiet_listing_is_one_request(&server, &cal).await;
}

#[tokio::test]
async fn xandikos_meets_the_contract() {
    let server = common::dav::DavServer::xandikos();
    let cal = server.make_calendar("alice", "calendar");
    let missing = server.calendar_path("nobody", "calendar");
    contract(
        server.store(),
        cal.parse().unwrap(),
        missing.parse().unwrap(),
    )
    .await;
    quiet_listing_is_one_request(&server, &cal).await;
}

#[tokio::test]
async fn sogo_meets_the_contract() {
    let server = common::dav::DavServer::sogo();
    let cal = server.make_calendar("alice", "personal");
    let missing = server.calendar_path("alice", "nothing");
    contract(
        server.store(),
        cal.parse().unwrap(),
        missing.parse().unwrap(),
    )
    .await;
}

#[tokio::test]
async fn davical_meets_the_contract() {
    let server = common::dav::DavServer::davical();
    let cal = server.make_calendar("alice", "calendar");
    let missing = server.calendar_path("nobody", "calendar");
    contract(
        server.store(),
        cal.parse().unwrap(),
        missing.parse().unwrap(),
    )
    .await;
    quiet_listing_is_one_request(&server, &cal).await;
}

#[tokio::test]
async fn memory_store_meets_the_contract() {
    let store = Arc::new(MemoryStore::new());
    let cal: CalendarPath = "/alice/".parse().unwrap();
    store.add_calendar(&cal);
    contract(store, cal, "/nobody/".parse().unwrap()).await;
}

#[tokio::test]
async fn memory_store_reports_changes_since_a_token() {
    let store = MemoryStore::new();
    let cal: CalendarPath = "/c/".parse().unwrap();
    store.add_calendar(&cal);
    let a = store.put(&cal, "a.ics", &ics("a", "1"));
    let b = store.put(&cal, "b.ics", &ics("b", "1"));
    let first = store.changes(&cal, None).await.unwrap();
    assert!(first.complete);
    assert_eq!(first.changed.len(), 2);
    let token = first.token.unwrap();
    let none = store.changes(&cal, Some(&token)).await.unwrap();
    assert!(!none.complete && none.changed.is_empty() && none.deleted.is_empty());
    store.put(&cal, "a.ics", &ics("a", "2"));
    store.remove(&b);
    let delta = store.changes(&cal, Some(&token)).await.unwrap();
    assert_eq!(
        delta.changed.iter().map(|v| &v.href).collect::<Vec<_>>(),
        vec![&a]
    );
    assert_eq!(delta.deleted, vec![b]);
    // an unknown token falls back to a complete listing
    let bogus = store
        .changes(
            &cal,
            Some(&tandem::domain::types::SyncToken::new("garbage")),
        )
        .await
        .unwrap();
    assert!(bogus.complete);
}

#[tokio::test]
async fn memory_store_injects_faults() {
    let store = MemoryStore::new();
    let cal: CalendarPath = "/c/".parse().unwrap();
    store.add_calendar(&cal);
    store.fail_next(2, ErrorKind::Throttled { retry_after: None });
    for _ in 0..2 {
        let e = store
            .create(&cal, "a.ics", &ics("a", "1"))
            .await
            .unwrap_err();
        assert!(matches!(e.kind, ErrorKind::Throttled { .. }));
    }
    assert!(
        store.items(&cal).is_empty(),
        "a refused call writes nothing"
    );
    store.crash_after_next_write();
    let e = store
        .create(&cal, "a.ics", &ics("a", "1"))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Transient);
    assert_eq!(
        store.items(&cal).len(),
        1,
        "a crash after the write leaves the write in place"
    );
    store.create(&cal, "b.ics", &ics("b", "1")).await.unwrap();
}

#[tokio::test]
async fn limited_store_meets_the_contract() {
    let inner = Arc::new(MemoryStore::new());
    let cal: CalendarPath = "/alice/".parse().unwrap();
    inner.add_calendar(&cal);
    let limited = Arc::new(tandem::store::limit::Limited::new(
        inner,
        Some(10_000),
        Some(2),
    ));
    contract(limited, cal, "/nobody/".parse().unwrap()).await;
}

/// A store whose listing takes a while and that records how many listings ran at once.
#[derive(Default)]
struct Slow {
    now: std::sync::atomic::AtomicUsize,
    peak: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl CalendarStore for Slow {
    fn describe(&self) -> String {
        "slow".into()
    }
    async fn check_calendar(&self, _: &CalendarPath) -> tandem::domain::error::StoreResult<()> {
        Ok(())
    }
    async fn list(
        &self,
        _: &CalendarPath,
    ) -> tandem::domain::error::StoreResult<Vec<tandem::store::ItemVersion>> {
        use std::sync::atomic::Ordering::SeqCst;
        let n = self.now.fetch_add(1, SeqCst) + 1;
        self.peak.fetch_max(n, SeqCst);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        self.now.fetch_sub(1, SeqCst);
        Ok(Vec::new())
    }
    async fn fetch(
        &self,
        _: &CalendarPath,
        _: &[Href],
    ) -> tandem::domain::error::StoreResult<Vec<tandem::store::Fetched>> {
        Ok(Vec::new())
    }
    async fn create(
        &self,
        _: &CalendarPath,
        _: &str,
        _: &str,
    ) -> tandem::domain::error::StoreResult<tandem::store::ItemVersion> {
        unreachable!("not used by this test")
    }
    async fn update(
        &self,
        _: &Href,
        _: &Etag,
        _: &str,
    ) -> tandem::domain::error::StoreResult<Etag> {
        unreachable!("not used by this test")
    }
    async fn delete(&self, _: &Href, _: &Etag) -> tandem::domain::error::StoreResult<()> {
        unreachable!("not used by this test")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_concurrency_caps_requests_in_flight() {
    let slow = Arc::new(Slow::default());
    let limited = Arc::new(tandem::store::limit::Limited::new(
        slow.clone(),
        None,
        Some(2),
    ));
    let cal: CalendarPath = "/c/".parse().unwrap();
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let (l, c) = (limited.clone(), cal.clone());
            tokio::spawn(async move { l.list(&c).await })
        })
        .collect();
    for c in calls {
        c.await.unwrap().unwrap();
    }
    let peak = slow.peak.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        peak, 2,
        "at most two listings may run at once, and the cap should be reached"
    );
}
