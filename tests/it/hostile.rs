//! Inputs meant to hurt: items nested beyond any stack, recurrences that never end expanding,
//! two items with one UID, servers that list other users' items or odd hrefs or answer without
//! end, clients that never finish a request. Each costs the item or request it is, never the
//! pair, the other pairs, or the service.

use crate::common;

use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use common::mock::{Answer, Mock, Seen, sync_answer};
use common::{Setup, event, json, pair_report as pair, spawn_run, stop, text, wait_until};
use tandem::domain::types::{CalendarPath, Href};

/// The reason given for `href` in a pair's report.
fn reason(p: &serde_json::Value, href: &str) -> String {
    p["failures"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["href"] == href)
        .unwrap_or_else(|| panic!("no failure for {href} in {p}"))["reason"]
        .as_str()
        .unwrap()
        .to_string()
}

fn nested(uid: &str, depth: usize) -> String {
    event(uid, "Nested", None).replace(
        "END:VEVENT",
        &format!(
            "{}{}END:VEVENT",
            "BEGIN:X-N\r\n".repeat(depth),
            "END:X-N\r\n".repeat(depth)
        ),
    )
}

fn endless(uid: &str) -> String {
    event(uid, "Every second since 1900", None).replace(
        "DTSTART:20260110T100000Z\r\nDTEND:20260110T110000Z\r\n",
        "DTSTART:19000101T000000Z\r\nDTEND:19000101T000001Z\r\nRRULE:FREQ=SECONDLY\r\n",
    )
}

fn add_to_config(config: &Path, toml: &str) {
    let mut t = std::fs::read_to_string(config).unwrap();
    t.push_str(toml);
    std::fs::write(config, t).unwrap();
}

/// Two users: alice's calendar holds a good item, one nested 10,000 deep and one that repeats
/// every second since 1900 (with a ten-year window); bob's holds a good item.
fn poisoned() -> Setup {
    let s = Setup::new(&["alice", "bob"]);
    s.put("alice", "good.ics", &event("good", "Fine", None));
    s.put("alice", "nested.ics", &nested("nested", 10_000));
    s.put("alice", "endless.ics", &endless("endless"));
    s.put("bob", "good.ics", &event("bob-good", "Fine", None));
    add_to_config(&s.config, "\n[sync]\nwindow_past = \"3650d\"\n");
    s
}

#[test]
fn a_nested_item_and_an_endless_recurrence_are_set_aside_while_the_rest_syncs() {
    let s = poisoned();
    for pass in 1..=3 {
        let out = s.run(&["sync", "--json"]);
        assert_eq!(out.status.code(), Some(3), "pass {pass}: {}", text(&out));
        let v = json(&out);
        let alice = pair(&v, "alice");
        assert_eq!(alice["failed"], 2, "{alice}");
        assert!(
            reason(alice, "/alice/nested.ics").contains("nest more than 16 deep"),
            "{alice}"
        );
        let r = reason(alice, "/alice/endless.ics");
        assert!(
            r.contains("RRULE:FREQ=SECONDLY") && r.contains("repeats more than"),
            "{r}"
        );
        assert_eq!(pair(&v, "bob")["failed"], 0);
    }
    assert_eq!(Setup::files(&s.target("alice")).len(), 1);
    assert_eq!(Setup::files(&s.target("bob")).len(), 1);
    // Quarantined now: the next pass skips them and succeeds.
    let out = s.run(&["sync", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let list = text(&s.run(&["quarantine", "list"]));
    assert!(
        list.contains("/alice/nested.ics") && list.contains("/alice/endless.ics"),
        "{list}"
    );
}

#[test]
fn the_service_survives_poison_items_and_stops_on_sigterm_within_seconds() {
    let s = poisoned();
    add_to_config(&s.config, "interval = \"1s\"\n");
    let mut child = spawn_run(&s.config);
    wait_until("bob's first item in the target", 60, || {
        Setup::files(&s.target("bob")).len() == 1
    });
    s.put("bob", "later.ics", &event("bob-later", "Later", None));
    s.put("alice", "later.ics", &event("alice-later", "Later", None));
    wait_until("both later items in the targets", 30, || {
        Setup::files(&s.target("bob")).len() == 2 && Setup::files(&s.target("alice")).len() == 2
    });
    assert!(child.try_wait().unwrap().is_none(), "the service died");
    let asked = Instant::now();
    let (status, err) = stop(&mut child);
    assert!(status.success(), "{status}: {err}");
    assert!(
        asked.elapsed() < Duration::from_secs(15),
        "took {:?} to stop",
        asked.elapsed()
    );
}

#[test]
fn two_items_with_one_uid_are_reported_by_both_hrefs_and_the_copy_stays_put() {
    let s = Setup::new(&["alice"]);
    s.put("alice", "one.ics", &event("dup-uid", "one", None));
    s.put("alice", "two.ics", &event("dup-uid", "two", None));
    let mut seen = Vec::new();
    for _ in 0..3 {
        let out = s.run(&["sync", "--json"]);
        let v = json(&out);
        let alice = pair(&v, "alice");
        let r = reason(alice, "/alice/two.ics");
        assert!(r.contains("/alice/one.ics") && r.contains("dup-uid"), "{r}");
        let files = Setup::files(&s.target("alice"));
        assert_eq!(files.len(), 1, "{files:?}");
        seen.push(files.into_values().next().unwrap());
    }
    assert!(seen.iter().all(|b| b.contains("SUMMARY:one")), "{seen:?}");
    // Set aside three times: quarantined, and the copy still holds the first.
    let out = s.run(&["sync", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let list = text(&s.run(&["quarantine", "list"]));
    assert!(list.contains("/alice/two.ics"), "{list}");
    // The twin that is synced changes: its copy follows; the other stays aside.
    s.put("alice", "one.ics", &event("dup-uid", "one, moved", None));
    let out = s.run(&["sync", "--json"]);
    let v = json(&out);
    assert_eq!(pair(&v, "alice")["updated"], 1, "{v}");
    let files = Setup::files(&s.target("alice"));
    assert!(
        files.values().all(|b| b.contains("SUMMARY:one, moved")),
        "{files:?}"
    );
}

/// A CalDAV calendar at `cal` that lists `items` and serves them by multiget, takes every PUT
/// and DELETE, and refuses with 400 a multiget naming an href with `%00`.
async fn calendar_mock(cal: &'static str, items: Vec<(String, String)>) -> Mock {
    Mock::start(move |req: &Seen, i| match req.method.as_str() {
        "PROPFIND" => Answer::new(207, calendar_props(cal)),
        "REPORT" if req.body.contains("sync-collection") => {
            let listed: Vec<(&str, &str)> =
                items.iter().map(|(h, _)| (h.as_str(), "\"1\"")).collect();
            Answer::new(207, sync_answer(cal, &listed, "t1", false))
        }
        "REPORT" if req.body.contains("%00") => Answer::new(400, "bad href"),
        "REPORT" => Answer::new(207, multiget(&items, &req.body)),
        "PUT" => Answer::new(201, "").header("ETag", &format!("\"put-{i}\"")),
        "DELETE" => Answer::new(204, ""),
        _ => Answer::new(405, ""),
    })
    .await
}

fn calendar_props(cal: &str) -> String {
    format!(
        "<?xml version=\"1.0\"?><d:multistatus xmlns:d=\"DAV:\" xmlns:c=\"urn:ietf:params:xml:ns:caldav\">\
         <d:response><d:href>{cal}</d:href><d:propstat><d:prop><d:resourcetype><d:collection/><c:calendar/>\
         </d:resourcetype></d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response></d:multistatus>"
    )
}

/// The multiget answer for the hrefs a request body names.
fn multiget(items: &[(String, String)], body: &str) -> String {
    let mut s = String::from(
        "<?xml version=\"1.0\"?><d:multistatus xmlns:d=\"DAV:\" xmlns:c=\"urn:ietf:params:xml:ns:caldav\">",
    );
    for asked in body.split("href>").skip(1).step_by(2) {
        let href = asked.split('<').next().unwrap();
        if let Some((_, data)) = items.iter().find(|(h, _)| h == href) {
            let data = data.replace('&', "&amp;").replace('<', "&lt;");
            s.push_str(&format!(
                "<d:response><d:href>{href}</d:href><d:propstat><d:prop><d:getetag>\"1\"</d:getetag>\
                 <c:calendar-data>{data}</c:calendar-data></d:prop><d:status>HTTP/1.1 200 OK</d:status>\
                 </d:propstat></d:response>"
            ));
        }
    }
    s.push_str("</d:multistatus>");
    s
}

/// A vdir `old/alice/` and a CalDAV server at `url`, one pair between them either way.
fn mixed(dir: &Path, url: &str, source: &str, target: &str, extra: &str) -> std::path::PathBuf {
    std::fs::create_dir_all(dir.join("vdir/alice")).unwrap();
    let config = dir.join("tandem.toml");
    std::fs::write(
        &config,
        format!(
            "[state]\nurl = \"sqlite://state.db\"\n\n[servers.vdir]\nkind = \"vdir\"\npath = \"vdir\"\n\n\
             [servers.dav]\nkind = \"caldav\"\nurl = \"{url}\"\n{extra}\n\n\
             [[pairs]]\nid = \"alice\"\nsource = \"{source}\"\ntarget = \"{target}\"\n"
        ),
    )
    .unwrap();
    config
}

#[tokio::test]
async fn no_request_leaves_the_calendar_whatever_a_target_lists() {
    const CAL: &str = "/t/cal/";
    let victim = event("victim-uid", "Another user's meeting", None);
    let listed = [
        "/victim/calendar/item.ics",
        "/t/cal/sub/nested.ics",
        "/t/cal/../../../../x.ics",
        "/t/cal/..%2F..%2Fvictim%2Fcalendar%2Fitem.ics",
        "http://127.0.0.1:1/victim/calendar/other.ics",
    ]
    .map(|h| (h.to_string(), victim.clone()));
    let mock = calendar_mock(CAL, listed.to_vec()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = mixed(dir.path(), &mock.url(), "vdir:/alice/", "dav:/t/cal/", "");
    add_to_config(&config, "\n[sync]\nextras = \"delete\"\n");
    std::fs::write(dir.path().join("vdir/alice/v.ics"), &victim).unwrap();
    for _ in 0..2 {
        let config = config.clone();
        let out = tokio::task::spawn_blocking(move || common::tandem(&config, &["sync"]))
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    }
    let cal: CalendarPath = CAL.parse().unwrap();
    let requests = mock.requests();
    assert!(requests.iter().any(|r| r.method == "PUT"), "{requests:?}");
    for r in &requests {
        let inside = r.path == CAL || Href::new(&r.path).is_ok_and(|h| cal.contains(&h));
        assert!(inside, "{} {} left the calendar", r.method, r.path);
        for other in ["/victim/", "nested.ics", "../", "%2F"] {
            assert!(
                !r.body.contains(other),
                "{} {} named {other}: {}",
                r.method,
                r.path,
                r.body
            );
        }
    }
}

#[tokio::test]
async fn an_href_the_server_cannot_serve_costs_that_item_alone() {
    const CAL: &str = "/s/cal/";
    let mut items: Vec<(String, String)> = (0..8)
        .map(|n| {
            (
                format!("/s/cal/{n}.ics"),
                event(&format!("item-{n}"), "Fine", None),
            )
        })
        .collect();
    items.push(("/s/cal/bad%00.ics".into(), event("nul", "Odd href", None)));
    let mock = calendar_mock(CAL, items).await;
    let dir = tempfile::tempdir().unwrap();
    let config = mixed(dir.path(), &mock.url(), "dav:/s/cal/", "vdir:/alice/", "");
    let out =
        tokio::task::spawn_blocking(move || common::tandem(&config, &["-vv", "sync", "--json"]))
            .await
            .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let v = json(&out);
    let alice = pair(&v, "alice");
    assert_eq!(
        (alice["created"].as_u64(), alice["failed"].as_u64()),
        (Some(8), Some(1)),
        "{}",
        text(&out)
    );
    assert!(
        reason(alice, "/s/cal/bad%00.ics").contains("400"),
        "{alice}"
    );
    assert_eq!(Setup::files(&dir.path().join("vdir/alice")).len(), 8);
}

#[tokio::test]
async fn an_answer_over_max_answer_size_fails_that_request_and_names_the_limit() {
    const CAL: &str = "/s/cal/";
    let big = event("big", &"x".repeat(100_000), None);
    let mut items: Vec<(String, String)> = (0..4)
        .map(|n| {
            (
                format!("/s/cal/{n}.ics"),
                event(&format!("item-{n}"), "Fine", None),
            )
        })
        .collect();
    items.push(("/s/cal/big.ics".into(), big));
    let mock = calendar_mock(CAL, items).await;
    let dir = tempfile::tempdir().unwrap();
    let config = mixed(
        dir.path(),
        &mock.url(),
        "dav:/s/cal/",
        "vdir:/alice/",
        "max_answer_size = \"64 KiB\"",
    );
    let out = tokio::task::spawn_blocking(move || common::tandem(&config, &["sync", "--json"]))
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let v = json(&out);
    let alice = pair(&v, "alice");
    assert_eq!(alice["created"], 4, "{alice}");
    let r = reason(alice, "/s/cal/big.ics");
    assert!(
        r.contains("over 65536 bytes") && r.contains("max_answer_size"),
        "{r}"
    );
}

/// Slow clients: 1,500 connections that send half a request line and wait. The service keeps
/// its descriptors bounded, answers `/healthz` and keeps syncing.
#[test]
fn clients_that_never_finish_a_request_cannot_starve_the_service() {
    let s = Setup::new(&["alice"]);
    s.put("alice", "a.ics", &event("slow-a", "First", None));
    let port = common::dav::free_port();
    add_to_config(
        &s.config,
        &format!("\n[sync]\ninterval = \"1s\"\n\n[http]\nlisten = \"127.0.0.1:{port}\"\n"),
    );
    let mut child = spawn_run(&s.config);
    wait_until("the service to answer /healthz", 60, || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
            && common::http(port, "GET", "/healthz", &[]).0 == 200
    });
    let pid = child.id();
    let open_fds = || {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .count()
    };
    let before = open_fds();
    let mut slow = Vec::new();
    for _ in 0..1_500 {
        if let Ok(mut c) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n");
            slow.push(c);
        }
    }
    assert!(slow.len() > 600, "only {} connections", slow.len());
    let (code, _) = common::http(port, "GET", "/healthz", &[]);
    assert_eq!(code, 200);
    let fds = open_fds();
    assert!(
        fds < before + 256 + 200,
        "{fds} descriptors open with slow clients (before: {before})"
    );
    s.put("alice", "b.ics", &event("slow-b", "Second", None));
    wait_until("a change synced while slow clients wait", 30, || {
        Setup::files(&s.target("alice")).len() == 2
    });
    drop(slow);
    let (status, err) = stop(&mut child);
    assert!(status.success(), "{status}: {err}");
}

/// The other side of asking in halves: when no item of a multiget can be read, the server is at
/// fault, and the pair fails with its answer instead of every item being set aside.
#[tokio::test]
async fn a_server_that_refuses_every_read_fails_the_pair_not_each_item() {
    const CAL: &str = "/s/cal/";
    let items: Vec<(String, String)> = (0..3)
        .map(|n| {
            (
                format!("/s/cal/{n}%00.ics"),
                event(&format!("item-{n}"), "Fine", None),
            )
        })
        .collect();
    let mock = calendar_mock(CAL, items).await;
    let dir = tempfile::tempdir().unwrap();
    let config = mixed(dir.path(), &mock.url(), "dav:/s/cal/", "vdir:/alice/", "");
    let out = tokio::task::spawn_blocking(move || common::tandem(&config, &["sync", "--json"]))
        .await
        .unwrap();
    let v = json(&out);
    let alice = pair(&v, "alice");
    assert_eq!(alice["failed"], 0, "{alice}");
    assert!(
        alice["error"].as_str().is_some_and(|e| e.contains("400")),
        "{alice}"
    );
    assert!(Setup::files(&dir.path().join("vdir/alice")).is_empty());
}
