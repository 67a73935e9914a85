//! End to end over real CalDAV servers: 1,000 varied items Radicale → Radicale and
//! Radicale → Xandikos through the `tandem` binary, then edits and deletes, then a quiet pass,
//! with the HTTP requests of every pass counted.

use crate::common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use common::dav::{DavServer, Kind, PASSWORD};
use futures_util::stream::{self, StreamExt};
use serde_json::Value;
use tandem::domain::item::{Item, Rewriter};
use tandem::domain::types::{CalendarPath, Href};
use tandem::store::CalendarStore;

const ITEMS: usize = 1_000;

struct Migration {
    _dir: tempfile::TempDir,
    config: PathBuf,
    source: DavServer,
    target: DavServer,
    scal: CalendarPath,
    tcal: CalendarPath,
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

impl Migration {
    fn new(target: Kind) -> Migration {
        let source = DavServer::radicale();
        let target = DavServer::start_new(target);
        let scal: CalendarPath = source.make_calendar("alice", "calendar").parse().unwrap();
        let tcal: CalendarPath = target.make_calendar("alice", "calendar").parse().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let rewrite = "[rewrite]\ndomains = { \"old.example\" = \"new.example\" }";
        let config = common::dav::pair_config(
            dir.path(),
            &source,
            &target,
            scal.as_str(),
            tcal.as_str(),
            rewrite,
        );
        let check = common::tandem(&config, &["check"]);
        let text = common::text(&check);
        assert!(check.status.success(), "{text}");
        assert!(
            !text.contains(PASSWORD) && text.contains("password from"),
            "{text}"
        );
        Migration {
            _dir: dir,
            config,
            source,
            target,
            scal,
            tcal,
        }
    }

    /// `tandem sync --json`: the summary, after checking no secret leaked into any output.
    fn sync(&self) -> Value {
        let out = common::tandem(&self.config, &["-v", "sync", "--json"]);
        let all = common::text(&out);
        assert!(
            !all.contains(PASSWORD),
            "the password leaked into the output"
        );
        assert!(out.status.success(), "sync failed ({}):\n{all}", out.status);
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {all}"))
    }
}

/// Requests a pass made to a server, not counting retries (Xandikos answers concurrent writes
/// with a brief 423 that is retried); retries stay bounded.
fn requests(summary: &Value, server: &str) -> u64 {
    let c = &summary["servers"][server];
    let (all, retries) = (c["requests"].as_u64(), c["retries"].as_u64());
    let (Some(all), Some(retries)) = (all, retries) else {
        panic!("no request count for {server}: {summary}")
    };
    assert!(
        retries <= all / 2 + 4,
        "{server}: {retries} of {all} requests were retries: {summary}"
    );
    all - retries
}

fn count(summary: &Value, what: &str) -> u64 {
    summary[what].as_u64().unwrap()
}

/// Content hashes of every item in a calendar (as tandem compares them) and its text, by UID.
async fn hashes(
    store: &dyn CalendarStore,
    cal: &CalendarPath,
    rewrite: Option<&Rewriter>,
) -> BTreeMap<String, (String, String)> {
    let listed = store.list(cal).await.unwrap();
    let hrefs: Vec<Href> = listed.into_iter().map(|v| v.href).collect();
    let mut out = BTreeMap::new();
    for chunk in hrefs.chunks(200) {
        for (href, got) in store.fetch(cal, chunk).await.unwrap() {
            let r = got.unwrap_or_else(|e| panic!("{href}: {e}"));
            let mut item =
                Item::parse(&r.data).unwrap_or_else(|e| panic!("{href}: {e}\n{}", r.data));
            if let Some(rw) = rewrite {
                item.rewrite(rw);
            }
            out.insert(
                item.uid().to_string(),
                (item.content_hash().to_string(), r.data),
            );
        }
    }
    out
}

/// Same items with the same content on both sides; on a difference, shows the first ones.
fn assert_same(
    want: &BTreeMap<String, (String, String)>,
    got: &BTreeMap<String, (String, String)>,
) {
    let missing: Vec<_> = want
        .keys()
        .filter(|k| !got.contains_key(*k))
        .take(5)
        .collect();
    let extra: Vec<_> = got
        .keys()
        .filter(|k| !want.contains_key(*k))
        .take(5)
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing in target: {missing:?}; extra in target: {extra:?}"
    );
    if let Some((uid, (_, src))) = want.iter().find(|(k, v)| got[*k].0 != v.0) {
        let n = want.iter().filter(|(k, v)| got[*k].0 != v.0).count();
        panic!(
            "{n} items differ; first {uid}:\n--- source\n{src}\n--- target\n{}",
            got[uid].1
        );
    }
}

fn migrate(target: Kind) {
    let m = Migration::new(target);
    let rt = rt();
    let src = m.source.store();
    let tgt = m.target.store();
    rt.block_on(async {
        let made = stream::iter(0..ITEMS)
            .map(|i| {
                let (src, scal) = (&src, &m.scal);
                async move {
                    let (uid, body) = common::items::item(i, 0);
                    src.create(scal, &format!("{uid}.ics"), &body)
                        .await
                        .map(|v| (i, v))
                }
            })
            .buffer_unordered(4)
            .collect::<Vec<_>>()
            .await;
        assert!(
            made.iter().all(Result::is_ok),
            "seeding the source failed: {:?}",
            made.iter().find(|r| r.is_err())
        );
    });

    // First pass: everything is created, nothing else.
    let first = m.sync();
    assert_eq!(count(&first, "created"), ITEMS as u64, "{first}");
    assert_eq!(count(&first, "failed"), 0, "{first}");
    let rw = Rewriter::new(
        [("old.example".to_string(), "new.example".to_string())],
        Vec::new(),
    );
    let (want, got) = rt.block_on(async {
        (
            hashes(&*src, &m.scal, Some(&rw)).await,
            hashes(&*tgt, &m.tcal, None).await,
        )
    });
    assert_eq!(want.len(), ITEMS);
    assert_same(&want, &got);
    // A first pass reads in batches: far fewer requests than items on the source side.
    assert!(requests(&first, "source") < 50, "source requests: {first}");

    // Ten edits and five deletes.
    rt.block_on(async {
        let listed = src.list(&m.scal).await.unwrap();
        let by_name: BTreeMap<String, _> = listed
            .into_iter()
            .map(|v| (v.href.file_name().to_string(), v))
            .collect();
        for i in 0..10 {
            let (uid, body) = common::items::item(i * 7, 1);
            let v = &by_name[&format!("{uid}.ics")];
            src.update(&v.href, &v.etag, &body).await.unwrap();
        }
        for i in 0..5 {
            let (uid, _) = common::items::item(500 + i * 3, 0);
            let v = &by_name[&format!("{uid}.ics")];
            src.delete(&v.href, &v.etag).await.unwrap();
        }
    });
    let second = m.sync();
    assert_eq!(
        (
            count(&second, "updated"),
            count(&second, "deleted"),
            count(&second, "created")
        ),
        (10, 5, 0),
        "{second}"
    );
    assert_eq!(count(&second, "failed"), 0, "{second}");
    // O(changes): the CTag (read for the first time since the full listing), one
    // sync-collection and one multiget on the source; on the target the CTag, one write per
    // change, and the CTag and a sync-collection after the writes (the watermark moves past
    // them).
    assert!(
        requests(&second, "source") <= 3,
        "source requests for 15 changes: {second}"
    );
    assert!(
        requests(&second, "target") <= 1 + 15 + 2,
        "target requests for 15 changes: {second}"
    );
    let (want, got) = rt.block_on(async {
        (
            hashes(&*src, &m.scal, Some(&rw)).await,
            hashes(&*tgt, &m.tcal, None).await,
        )
    });
    assert_eq!(want.len(), ITEMS - 5);
    assert_same(&want, &got);

    // Nothing changed: one request per side (the CTag), right after a pass that wrote as
    // later: the watermark moved past tandem's own writes.
    let third = m.sync();
    for what in ["created", "updated", "deleted", "adopted", "failed"] {
        assert_eq!(count(&third, what), 0, "{what}: {third}");
    }
    assert_eq!(requests(&third, "source"), 1, "{third}");
    assert_eq!(requests(&third, "target"), 1, "{third}");
    let quiet = m.sync();
    assert_eq!(requests(&quiet, "source"), 1, "{quiet}");
    assert_eq!(requests(&quiet, "target"), 1, "{quiet}");

    // Someone deletes one copy in the target and edits another: both are restored from the source.
    rt.block_on(async {
        let listed = tgt.list(&m.tcal).await.unwrap();
        let by_name: BTreeMap<String, _> = listed
            .into_iter()
            .map(|v| (v.href.file_name().to_string(), v))
            .collect();
        let (gone, _) = common::items::item(1, 0);
        let v = &by_name[&format!("{gone}.ics")];
        tgt.delete(&v.href, &v.etag).await.unwrap();
        let (edited, _) = common::items::item(3, 0);
        let v = &by_name[&format!("{edited}.ics")];
        let (_, body) = common::items::item(3, 7);
        tgt.update(&v.href, &v.etag, &body).await.unwrap();
    });
    let fourth = m.sync();
    assert_eq!(
        (
            count(&fourth, "created"),
            count(&fourth, "updated"),
            count(&fourth, "failed")
        ),
        (1, 1, 0),
        "{fourth}"
    );
    assert!(requests(&fourth, "source") <= 2, "{fourth}");
    // The target: its listing, the reads and two writes, then the listing after the writes.
    assert!(requests(&fourth, "target") <= 5 + 2, "{fourth}");
    let (want, got) = rt.block_on(async {
        (
            hashes(&*src, &m.scal, Some(&rw)).await,
            hashes(&*tgt, &m.tcal, None).await,
        )
    });
    assert_same(&want, &got);
}

#[test]
fn radicale_to_radicale() {
    migrate(Kind::Radicale);
}

#[test]
fn radicale_to_xandikos() {
    migrate(Kind::Xandikos);
}
