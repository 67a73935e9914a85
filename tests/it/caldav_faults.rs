//! What the CalDAV backend does when servers misbehave: throttling, outages, locks, garbage,
//! truncated listings, no sync support, a server killed mid-pass, bad credentials and paths.

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::dav::{DavServer, PASSWORD};
use common::mock::{Answer, Mock, sync_answer};
use tandem::domain::error::ErrorKind;
use tandem::domain::types::{CalendarPath, SyncToken};
use tandem::store::CalendarStore;
use tandem::store::caldav::CaldavStore;
use tandem::store::http::{HttpSettings, RetryPolicy};

const CAL: &str = "/u/cal/";

fn quick() -> HttpSettings {
    HttpSettings {
        retry: RetryPolicy {
            attempts: 4,
            base_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(100),
            max_wait: Duration::from_secs(5),
        },
        ..HttpSettings::default()
    }
}

fn store(mock: &Mock) -> CaldavStore {
    CaldavStore::new(&mock.url(), None, quick()).unwrap()
}

fn cal() -> CalendarPath {
    CAL.parse().unwrap()
}

fn listing() -> String {
    sync_answer(CAL, &[("/u/cal/a.ics", "\"1\"")], "t1", false)
}

#[tokio::test]
async fn waits_as_told_by_429_retry_after_then_succeeds() {
    // The CTag is read first (there is none); the listing is throttled once.
    let mock = Mock::start(|req, i| match req.method.as_str() {
        "PROPFIND" => Answer::new(207, ctag_answer(None)),
        _ if i == 1 => Answer::new(429, "slow down").header("Retry-After", "1"),
        _ => Answer::new(207, listing()),
    })
    .await;
    let s = store(&mock);
    let started = Instant::now();
    let c = s.changes(&cal(), None).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "retried before Retry-After elapsed"
    );
    assert_eq!(c.changed.len(), 1);
    let n = s.counts().unwrap();
    assert_eq!(
        (n.requests, n.retries, n.throttled, n.failures),
        (3, 1, 1, 0)
    );
}

#[tokio::test]
async fn a_long_retry_after_fails_the_request_with_its_kind_at_once() {
    let mock = Mock::start(|req, _| match req.method.as_str() {
        "PROPFIND" => Answer::new(207, ctag_answer(None)),
        _ => Answer::new(429, "").header("Retry-After", "3600"),
    })
    .await;
    let e = store(&mock).changes(&cal(), None).await.unwrap_err();
    assert_eq!(
        e.kind,
        ErrorKind::Throttled {
            retry_after: Some(Duration::from_secs(3600))
        }
    );
    assert!(
        e.to_string()
            .contains(&format!("REPORT http://127.0.0.1:{}/u/cal/", mock.port)),
        "{e}"
    );
    assert!(e.to_string().contains("429"), "{e}");
    assert_eq!(
        by_method(&mock),
        (1, 1),
        "no retry inside the pass for an hour-long wait"
    );

    let mock = Mock::start(|_, _| Answer::new(503, "").header("Retry-After", "120")).await;
    let e = store(&mock).changes(&cal(), None).await.unwrap_err();
    assert_eq!(
        e.kind,
        ErrorKind::Moving {
            retry_after: Some(Duration::from_secs(120))
        },
        "{e}"
    );
}

#[tokio::test]
async fn server_errors_are_retried_with_backoff_then_reported_as_transient() {
    let mock = Mock::start(|_, _| Answer::new(503, "busy")).await;
    let s = store(&mock);
    let e = s.changes(&cal(), None).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Transient, "{e}");
    assert!(e.to_string().contains("503"), "{e}");
    assert_eq!(mock.requests().len(), 4, "bounded: four attempts");
    let n = s.counts().unwrap();
    assert_eq!((n.requests, n.retries, n.failures), (4, 3, 1));

    // A 502 that clears up is invisible to the caller.
    let mock = Mock::start(|_, i| {
        if i < 2 {
            Answer::new(502, "")
        } else {
            Answer::new(207, listing())
        }
    })
    .await;
    assert_eq!(
        store(&mock)
            .changes(&cal(), None)
            .await
            .unwrap()
            .changed
            .len(),
        1
    );
}

/// A refused login is reported as such, and counted among the failed requests.
#[tokio::test]
async fn a_refused_login_is_a_failed_request() {
    let mock = Mock::start(|_, _| Answer::new(401, "no")).await;
    let s = store(&mock);
    let e = s.changes(&cal(), None).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unauthorized, "{e}");
    let n = s.counts().unwrap();
    assert_eq!((n.requests, n.failed), (1, 1), "{n:?}");
}

#[tokio::test]
async fn locked_and_moving_mailboxes_map_to_moving() {
    let mock = Mock::start(|_, _| Answer::new(423, "")).await;
    let e = store(&mock).changes(&cal(), None).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Moving { retry_after: None }, "{e}");
    assert_eq!(
        mock.requests().len(),
        8,
        "a brief lock is retried twice as often as other faults"
    );

    let mock =
        Mock::start(|_, _| Answer::new(503, "The mailbox is being moved. Try again later.")).await;
    let e = store(&mock).changes(&cal(), None).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Moving { retry_after: None }, "{e}");
    assert_eq!(
        mock.requests().len(),
        1,
        "a move is not retried inside the pass"
    );
}

#[tokio::test]
async fn malformed_xml_is_a_clear_error_not_a_panic() {
    let mock = Mock::start(|_, _| {
        Answer::new(207, "<d:multistatus xmlns:d=\"DAV:\"><d:response><d:href>")
    })
    .await;
    let s = store(&mock);
    let e = s.changes(&cal(), None).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidData, "{e}");
    assert!(e.to_string().contains("malformed XML"), "{e}");
    let e = s.check_calendar(&cal()).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidData, "{e}");
    let e = s
        .fetch(
            &cal(),
            &[tandem::domain::types::Href::new("/u/cal/a.ics").unwrap()],
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidData, "{e}");
}

#[tokio::test]
async fn a_truncated_listing_is_continued_from_the_new_token() {
    let mock = Mock::start(|req, _| {
        if req.method == "PROPFIND" {
            Answer::new(207, ctag_answer(None))
        } else if req.body.contains("<D:sync-token>t1</D:sync-token>") || req.body.contains(">t1<")
        {
            Answer::new(
                207,
                sync_answer(CAL, &[("/u/cal/b.ics", "\"2\"")], "t2", false),
            )
        } else {
            Answer::new(
                207,
                sync_answer(CAL, &[("/u/cal/a.ics", "\"1\"")], "t1", true),
            )
        }
    })
    .await;
    let c = store(&mock).changes(&cal(), None).await.unwrap();
    let mut hrefs: Vec<_> = c.changed.iter().map(|v| v.href.to_string()).collect();
    hrefs.sort();
    assert_eq!(hrefs, ["/u/cal/a.ics", "/u/cal/b.ics"]);
    assert!(c.complete);
    assert_eq!(c.token.unwrap().as_str().lines().next(), Some("t2"));
    assert_eq!(by_method(&mock), (1, 2));
}

#[tokio::test]
async fn a_server_without_sync_support_is_listed_with_propfind() {
    let propfind = "<?xml version=\"1.0\"?><d:multistatus xmlns:d=\"DAV:\">\
        <d:response><d:href>/u/cal/</d:href><d:propstat><d:prop><d:resourcetype><d:collection/></d:resourcetype></d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response>\
        <d:response><d:href>/u/cal/a.ics</d:href><d:propstat><d:prop><d:getetag>\"9\"</d:getetag><d:resourcetype/></d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response>\
        </d:multistatus>";
    let mock = Mock::start(move |req, _| match req.method.as_str() {
        "REPORT" => Answer::new(501, "not implemented"),
        _ => Answer::new(207, propfind),
    })
    .await;
    let s = store(&mock);
    for _ in 0..2 {
        let c = s.changes(&cal(), None).await.unwrap();
        assert!(c.complete && c.token.is_none());
        assert_eq!(c.changed.len(), 1);
        assert_eq!(c.changed[0].etag.as_str(), "\"9\"");
    }
    assert_eq!(
        by_method(&mock).1,
        1,
        "sync-collection is not asked again once refused"
    );
}

/// A PROPFIND answer for the calendar's CTag: its value, or `None` for a server without one.
fn ctag_answer(ctag: Option<&str>) -> String {
    let (prop, status) = match ctag {
        Some(v) => (format!("<cs:getctag>{v}</cs:getctag>"), "200 OK"),
        None => ("<cs:getctag/>".to_string(), "404 Not Found"),
    };
    format!(
        "<?xml version=\"1.0\"?><d:multistatus xmlns:d=\"DAV:\" xmlns:cs=\"http://calendarserver.org/ns/\">\
         <d:response><d:href>{CAL}</d:href><d:propstat><d:prop>{prop}</d:prop>\
         <d:status>HTTP/1.1 {status}</d:status></d:propstat></d:response></d:multistatus>"
    )
}

/// Requests of each method the mock saw: (PROPFIND, REPORT).
fn by_method(mock: &Mock) -> (usize, usize) {
    let seen = mock.requests();
    let n = |m: &str| seen.iter().filter(|r| r.method == m).count();
    (n("PROPFIND"), n("REPORT"))
}

#[tokio::test]
async fn an_unchanged_ctag_answers_a_listing_with_one_propfind() {
    let ctag = Arc::new(std::sync::Mutex::new("\"c1\"".to_string()));
    let now = ctag.clone();
    let mock = Mock::start(move |req, _| match req.method.as_str() {
        "PROPFIND" => Answer::new(207, ctag_answer(Some(&now.lock().unwrap()))),
        _ => Answer::new(207, listing()),
    })
    .await;
    let s = store(&mock);
    // A full listing reads the CTag first, so the listing after it can end there.
    let full = s.changes(&cal(), None).await.unwrap();
    assert_eq!(by_method(&mock), (1, 1));
    // Unchanged since: one PROPFIND, no report, nothing moved, the same watermark.
    let quiet = s.changes(&cal(), full.token.as_ref()).await.unwrap();
    assert_eq!(by_method(&mock), (2, 1));
    assert!(!quiet.complete && quiet.changed.is_empty() && quiet.deleted.is_empty());
    assert_eq!(quiet.token, full.token);
    // The CTag moves: the report is asked and its answer returned.
    *ctag.lock().unwrap() = "\"c2\"".to_string();
    let moved = s.changes(&cal(), quiet.token.as_ref()).await.unwrap();
    assert_eq!(by_method(&mock), (3, 2));
    assert_eq!(moved.changed.len(), 1, "{moved:?}");
    assert_ne!(moved.token, quiet.token);
    let quiet = s.changes(&cal(), moved.token.as_ref()).await.unwrap();
    assert!(quiet.changed.is_empty());
    assert_eq!(by_method(&mock), (4, 2));
}

#[tokio::test]
async fn a_server_without_ctag_is_asked_once_per_watermark() {
    let mock = Mock::start(|req, _| match req.method.as_str() {
        "PROPFIND" => Answer::new(207, ctag_answer(None)),
        _ => Answer::new(207, listing()),
    })
    .await;
    let s = store(&mock);
    let mut token = s.changes(&cal(), None).await.unwrap().token;
    for _ in 0..3 {
        let c = s.changes(&cal(), token.as_ref()).await.unwrap();
        assert_eq!(c.changed.len(), 1, "every listing is the server's report");
        token = c.token;
    }
    assert_eq!(by_method(&mock), (1, 4));
}

#[tokio::test]
async fn a_ctag_answer_the_listing_would_not_meet_is_no_ctag_but_an_outage_fails_it() {
    // 403 on the PROPFIND alone: the report decides.
    let mock = Mock::start(|req, _| match req.method.as_str() {
        "PROPFIND" => Answer::new(403, "no"),
        _ => Answer::new(207, listing()),
    })
    .await;
    let s = store(&mock);
    let c = s
        .changes(&cal(), Some(&SyncToken::new("t0")))
        .await
        .unwrap();
    assert_eq!(c.changed.len(), 1);
    // 503 on everything: the listing fails as it would have without the CTag.
    let mock = Mock::start(|_, _| Answer::new(503, "down")).await;
    let e = store(&mock)
        .changes(&cal(), Some(&SyncToken::new("t0")))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Transient, "{e}");
    assert!(e.to_string().contains("PROPFIND"), "{e}");
}

/// A config with pairs from a real Radicale source to the given targets.
fn write_config(
    dir: &std::path::Path,
    source: &DavServer,
    servers: &str,
    pairs: &[(&str, String, String)],
) -> std::path::PathBuf {
    let pw = dir.join("pw");
    std::fs::write(&pw, PASSWORD).unwrap();
    let mut toml = format!(
        "[state]\nurl = \"sqlite://{}\"\n\n{}\n{servers}\n",
        dir.join("state.db").display(),
        source.config_section("source", &pw)
    );
    for (id, s, t) in pairs {
        toml.push_str(&format!(
            "[[pairs]]\nid = \"{id}\"\nsource = \"{s}\"\ntarget = \"{t}\"\n\n"
        ));
    }
    let path = dir.join("tandem.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

#[tokio::test]
async fn bad_calendars_fail_their_pair_with_pair_url_and_status_while_others_sync() {
    let source = DavServer::radicale();
    let target = DavServer::radicale();
    let scal = source.make_calendar("alice", "calendar");
    let src = source.store();
    let (_, body) = common::items::item(2, 0);
    src.create(&scal.parse().unwrap(), "m.ics", &body)
        .await
        .unwrap();
    let tcal = target.make_calendar("alice", "calendar");
    target.make_calendar("bob", "calendar"); // leaves /bob/ as a plain collection
    let garbage = Mock::start(|_, _| Answer::new(207, "<<<this is not xml")).await;
    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("wrong");
    std::fs::write(&wrong, "not-the-password").unwrap();
    let tp = target.url();
    let servers = format!(
        "[servers.target]\nkind = \"caldav\"\nurl = \"{tp}\"\nusername = \"tandem\"\npassword_file = \"{}\"\n\n\
         [servers.badauth]\nkind = \"caldav\"\nurl = \"{tp}\"\nusername = \"tandem\"\npassword_file = \"{}\"\n\n\
         [servers.garbage]\nkind = \"caldav\"\nurl = \"{}\"\n",
        dir.path().join("pw").display(),
        wrong.display(),
        garbage.url()
    );
    let s = format!("source:{scal}");
    let config = write_config(
        dir.path(),
        &source,
        &servers,
        &[
            ("good", s.clone(), format!("target:{tcal}")),
            ("missing", s.clone(), "target:/nobody/calendar/".into()),
            ("notcal", s.clone(), "target:/bob/".into()),
            ("denied", s.clone(), format!("badauth:{tcal}")),
            ("garbled", s.clone(), "garbage:/u/cal/".into()),
        ],
    );
    let out = tokio::task::spawn_blocking(move || common::tandem(&config, &["sync"]))
        .await
        .unwrap();
    let text = common::text(&out);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(
        !text.contains(PASSWORD) && !text.contains("not-the-password"),
        "a password leaked:\n{text}"
    );
    let line = |pair: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("pair {pair}: ")))
            .unwrap_or_else(|| panic!("no error line for {pair}:\n{text}"))
            .to_string()
    };
    let good = text.lines().find(|l| l.starts_with("good ")).unwrap();
    assert!(
        good.ends_with("ok") && good.split_whitespace().nth(1) == Some("1"),
        "{good}"
    );
    let l = line("missing");
    assert!(
        l.contains(&format!("{tp}nobody/calendar/")) && l.contains("404"),
        "{l}"
    );
    let l = line("notcal");
    assert!(
        l.contains(&format!("{tp}bob/")) && l.contains("not a calendar"),
        "{l}"
    );
    let l = line("denied");
    assert!(l.contains("401") && l.contains(&tp), "{l}");
    let l = line("garbled");
    assert!(
        l.contains("malformed XML") && l.contains(&garbage.url()),
        "{l}"
    );
}

#[tokio::test]
async fn a_target_killed_mid_pass_converges_on_the_next_pass_without_duplicates() {
    const N: usize = 300;
    let source = DavServer::radicale();
    let mut target = DavServer::radicale();
    let scal: CalendarPath = source.make_calendar("alice", "calendar").parse().unwrap();
    let tcal: CalendarPath = target.make_calendar("alice", "calendar").parse().unwrap();
    let src = source.store();
    for i in 0..N {
        let (uid, body) = common::items::item(i, 0);
        src.create(&scal, &format!("{uid}.ics"), &body)
            .await
            .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let servers = target.config_section("target", &dir.path().join("pw"));
    let config = write_config(
        dir.path(),
        &source,
        &servers,
        &[("alice", format!("source:{scal}"), format!("target:{tcal}"))],
    );

    // Kill the target once a fair part of the items has landed.
    let mut child = common::dav::spawn_sync(&config);
    common::dav::wait_for_items(&*target.store(), &tcal, N / 4, &mut child).await;
    target.kill();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let text = common::text(&out);
    assert_eq!(
        out.status.code(),
        Some(3),
        "the interrupted pass reports failure:\n{text}"
    );
    assert!(text.contains("pair alice: target calendar"), "{text}");

    target.start();
    let out = tokio::task::spawn_blocking({
        let config = config.clone();
        move || common::tandem(&config, &["sync"])
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", common::text(&out));
    common::dav::assert_one_copy_each(&*target.store(), &tcal, N).await;
    // And the pass after that has nothing to do.
    let out = tokio::task::spawn_blocking(move || common::tandem(&config, &["sync", "--json"]))
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["created"].as_u64(), v["failed"].as_u64()),
        (Some(0), Some(0)),
        "{v}"
    );
}

#[tokio::test]
async fn a_calendar_that_disappears_after_a_good_pass_is_reported_with_url_and_status() {
    let source = DavServer::radicale();
    let target = DavServer::radicale();
    let scal = source.make_calendar("alice", "calendar");
    let tcal = target.make_calendar("alice", "calendar");
    let dir = tempfile::tempdir().unwrap();
    let servers = target.config_section("target", &dir.path().join("pw"));
    let config = write_config(
        dir.path(),
        &source,
        &servers,
        &[("alice", format!("source:{scal}"), format!("target:{tcal}"))],
    );
    let run = |config: std::path::PathBuf| async move {
        tokio::task::spawn_blocking(move || common::tandem(&config, &["sync"]))
            .await
            .unwrap()
    };
    assert!(run(config.clone()).await.status.success());
    assert!(matches!(target.delete_collection(&tcal), 200 | 204));
    let out = run(config).await;
    let text = common::text(&out);
    assert_eq!(out.status.code(), Some(3), "{text}");
    let line = text
        .lines()
        .find(|l| l.starts_with("pair alice: "))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        line.contains(&format!("{}{}", target.url().trim_end_matches('/'), tcal))
            && line.contains("404"),
        "{line}"
    );
}

#[tokio::test]
async fn a_put_answered_without_an_etag_is_followed_by_reading_the_etag() {
    let mock = Mock::start(|req, _| match req.method.as_str() {
        "PUT" => Answer::new(201, ""),
        _ => Answer::new(
            207,
            "<?xml version=\"1.0\"?><d:multistatus xmlns:d=\"DAV:\"><d:response><d:href>/u/cal/x.ics</d:href>\
             <d:propstat><d:prop><d:getetag>\"rewritten\"</d:getetag></d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response></d:multistatus>",
        ),
    })
    .await;
    let v = store(&mock)
        .create(&cal(), "x.ics", &common::event("x", "x", None))
        .await
        .unwrap();
    assert_eq!(v.etag.as_str(), "\"rewritten\"");
    let seen = mock.requests();
    // Asked first what the server is (it had not answered yet).
    assert_eq!(
        seen.iter().map(|r| r.method.as_str()).collect::<Vec<_>>(),
        ["PROPFIND", "PUT", "PROPFIND"]
    );
    assert!(
        seen[1]
            .headers
            .to_ascii_lowercase()
            .contains("if-none-match: *"),
        "{}",
        seen[1].headers
    );
}

#[tokio::test]
async fn requests_per_second_and_max_concurrency_hold_per_server() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    // The responder cannot see overlap itself (it answers at once), so a slow answer is simulated
    // by holding each connection open: count how many are open at the same time.
    let open = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    {
        let (open, most) = (open.clone(), most.clone());
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let (open, most) = (open.clone(), most.clone());
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = sock.read(&mut buf).await;
                    let now = open.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    open.fetch_sub(1, Ordering::SeqCst);
                    let body = "BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n";
                    let _ = sock
                        .write_all(format!("HTTP/1.1 404 Not Found\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).as_bytes())
                        .await;
                });
            }
        });
    }
    let settings = HttpSettings {
        max_concurrency: 2,
        ..quick()
    };
    let s =
        Arc::new(CaldavStore::new(&format!("http://127.0.0.1:{port}/"), None, settings).unwrap());
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..30 {
        let s = s.clone();
        tasks.spawn(async move {
            s.delete(
                &tandem::domain::types::Href::new(&format!("/u/cal/{i}.ics")).unwrap(),
                &tandem::domain::types::Etag::new("\"1\""),
            )
            .await
        });
    }
    while let Some(r) = tasks.join_next().await {
        assert_eq!(r.unwrap().unwrap_err().kind, ErrorKind::NotFound);
    }
    assert_eq!(
        most.load(Ordering::SeqCst),
        2,
        "at most max_concurrency requests in flight, and that many used"
    );
    // The deletes, and one PROPFIND first asking what the server is.
    assert_eq!(s.counts().unwrap().requests, 31);

    // The rate: 12 requests at 4 per second (a burst of 4, then one every 250 ms) take 2 s.
    let mock = Mock::start(|_, _| Answer::new(404, "")).await;
    let settings = HttpSettings {
        max_concurrency: 8,
        requests_per_second: Some(4),
        ..quick()
    };
    let s = Arc::new(CaldavStore::new(&mock.url(), None, settings).unwrap());
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..12 {
        let s = s.clone();
        tasks.spawn(async move {
            s.delete(
                &tandem::domain::types::Href::new(&format!("/u/cal/{i}.ics")).unwrap(),
                &tandem::domain::types::Etag::new("\"1\""),
            )
            .await
        });
    }
    while tasks.join_next().await.is_some() {}
    assert!(
        started.elapsed() >= Duration::from_millis(1900),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        mock.requests().len(),
        13,
        "12 deletes and the question first"
    );
}

#[tokio::test]
async fn a_server_that_never_answers_times_out_and_is_retried() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            held.push(sock); // read nothing, answer nothing
        }
    });
    let settings = HttpSettings {
        timeout: Duration::from_millis(200),
        ..quick()
    };
    let s = CaldavStore::new(&format!("http://127.0.0.1:{port}/"), None, settings).unwrap();
    let e = s.changes(&cal(), None).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Transient, "{e}");
    assert!(e.to_string().contains("no answer within 200ms"), "{e}");
    assert_eq!(s.counts().unwrap().requests, 4);
}

/// A target that refuses one item for good (Radicale answers 413 to an event over its
/// `max_content_length`): after three passes the item is quarantined, and from then on it is
/// held, not sent again, and the pair is healthy with its other items synced.
#[tokio::test]
async fn an_item_the_target_refuses_is_quarantined_and_no_longer_sent() {
    let source = DavServer::radicale();
    let target = DavServer::radicale_with("max_content_length = 20000");
    let scal: CalendarPath = source.make_calendar("alice", "calendar").parse().unwrap();
    let tcal: CalendarPath = target.make_calendar("alice", "calendar").parse().unwrap();
    let src = source.store();
    for i in 0..5 {
        let (uid, body) = common::items::item(i, 0);
        src.create(&scal, &format!("{uid}.ics"), &body)
            .await
            .unwrap();
    }
    let big = common::event("big@old.example", &"A long agenda ".repeat(3_000), None);
    assert!(big.len() > 40_000);
    src.create(&scal, "big.ics", &big).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = common::dav::pair_config(
        dir.path(),
        &source,
        &target,
        scal.as_str(),
        tcal.as_str(),
        "",
    );
    let sync = || {
        let config = config.clone();
        async move {
            let out =
                tokio::task::spawn_blocking(move || common::tandem(&config, &["sync", "--json"]))
                    .await
                    .unwrap();
            let v: serde_json::Value = serde_json::from_slice(&out.stdout)
                .unwrap_or_else(|e| panic!("{e}: {}", common::text(&out)));
            (out.status.code(), v)
        }
    };
    for pass in 1..=3 {
        let (code, v) = sync().await;
        assert_eq!(
            (code, v["failed"].as_u64()),
            (Some(3), Some(1)),
            "pass {pass}: {v}"
        );
        let reason = v["pairs"][0]["failures"][0]["reason"].as_str().unwrap();
        assert!(reason.contains("413"), "pass {pass}: {reason}");
        assert_eq!(
            v["pairs"][0]["failures"][0]["operation"], "write-target",
            "pass {pass}: {v}"
        );
        assert_eq!(
            reason.contains("quarantined after 3 failures"),
            pass == 3,
            "pass {pass}: {reason}"
        );
    }
    // Held from then on: not sent again (the target would refuse it again: a failure), the
    // pair is ok.
    let (code, v) = sync().await;
    assert_eq!(
        (
            code,
            v["failed"].as_u64(),
            v["pairs"][0]["quarantined"].as_u64()
        ),
        (Some(0), Some(0), Some(1)),
        "{v}"
    );
    common::dav::assert_one_copy_each(&*target.store(), &tcal, 5).await;
    let status =
        tokio::task::spawn_blocking(move || common::tandem(&config, &["status", "--json"]))
            .await
            .unwrap();
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["pairs"][0]["state"], "active", "{status}");
}
