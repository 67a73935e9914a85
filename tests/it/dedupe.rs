//! `tandem dedupe`: duplicate copies of one meeting in a target calendar are reduced to one.

use crate::common;

use common::dav::DavServer;
use common::{Setup, event, text};
use tandem::domain::identity::wrap_uid;
use tandem::domain::types::CalendarPath;
use tandem::store::CalendarStore;

fn with(body: &str, extra: &str) -> String {
    body.replace("SUMMARY:", &format!("{extra}SUMMARY:"))
}

#[test]
fn dedupe_keeps_the_mapped_copy_else_the_newest_and_deletes_the_rest_on_vdir() {
    let s = Setup::new(&["alice"]);
    s.put(
        "alice",
        "m1.ics",
        &event("m1", "Planning", Some("jane@old.example")),
    );
    assert!(s.run(&["sync"]).status.success());
    let target = s.target("alice");
    let copy = std::fs::read_to_string(target.join("m1.ics")).unwrap();
    // Two stray copies of the synced meeting (vdir allows equal UIDs), one with a higher SEQUENCE,
    // and two copies of a meeting the source does not have.
    std::fs::write(target.join("dup-a.ics"), with(&copy, "SEQUENCE:3\r\n")).unwrap();
    std::fs::write(target.join("dup-b.ics"), with(&copy, "SEQUENCE:1\r\n")).unwrap();
    let other = event("m9", "Offsite", Some("jane@new.example"));
    std::fs::write(
        target.join("x1.ics"),
        with(&other, "LAST-MODIFIED:20260101T000000Z\r\n"),
    )
    .unwrap();
    std::fs::write(
        target.join("x2.ics"),
        with(&other, "LAST-MODIFIED:20260201T000000Z\r\n"),
    )
    .unwrap();
    std::fs::write(
        target.join("broken.ics"),
        "BEGIN:VCALENDAR\r\nnot really\r\n",
    )
    .unwrap();

    let dry = s.run(&["dedupe", "--pair", "alice", "--dry-run"]);
    let out = text(&dry);
    assert_eq!(dry.status.code(), Some(0), "{out}");
    assert!(out.contains("jane@new.example m1: kept /alice/m1.ics; would delete /alice/dup-a.ics, /alice/dup-b.ics"), "{out}");
    assert!(
        out.contains("jane@new.example m9: kept /alice/x2.ics; would delete /alice/x1.ics"),
        "{out}"
    );
    assert!(out.contains("skipped /alice/broken.ics"), "{out}");
    assert!(
        out.contains("2 duplicate group(s), 3 copy(ies) would delete (dry run)"),
        "{out}"
    );
    assert_eq!(Setup::files(&target).len(), 6, "a dry run deletes nothing");

    let real = s.run(&["dedupe", "--pair", "alice", "--json"]);
    assert_eq!(real.status.code(), Some(0), "{}", text(&real));
    let v: serde_json::Value = serde_json::from_slice(&real.stdout).unwrap();
    assert_eq!(v["groups"].as_array().unwrap().len(), 2, "{v}");
    let mut left: Vec<String> = Setup::files(&target).into_keys().collect();
    left.sort();
    assert_eq!(left, ["broken.ics", "m1.ics", "x2.ics"]);

    // The pair is as it was: nothing to redo.
    let again = s.run(&["sync", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(
        (
            v["created"].as_u64(),
            v["deleted"].as_u64(),
            v["failed"].as_u64()
        ),
        (Some(0), Some(0), Some(0)),
        "{v}"
    );
}

#[tokio::test]
async fn dedupe_joins_uid_spellings_of_one_meeting_on_radicale() {
    let source = DavServer::radicale();
    let target = DavServer::radicale();
    let scal = source.make_calendar("alice", "calendar");
    let tcal: CalendarPath = target.make_calendar("alice", "calendar").parse().unwrap();
    let tgt = target.store();
    let uid = "qa87q2t552detf773508pdrchc@google.com";
    let body = event(uid, "Roadmap", Some("jane@new.example"));
    tgt.create(&tcal, "plain.ics", &with(&body, "SEQUENCE:2\r\n"))
        .await
        .unwrap();
    // Radicale refuses two items with one UID, but not two spellings of it.
    let goid = wrap_uid(uid, Some((2026, 1, 10)));
    tgt.create(
        &tcal,
        "goid.ics",
        &with(&body.replace(uid, &goid), "SEQUENCE:1\r\n"),
    )
    .await
    .unwrap();
    tgt.create(&tcal, "other.ics", &event("other", "Lunch", None))
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let config = common::dav::pair_config(dir.path(), &source, &target, &scal, tcal.as_str(), "");
    let out = tokio::task::spawn_blocking(move || {
        common::tandem(&config, &["dedupe", "--pair", "alice"])
    })
    .await
    .unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(
        t.contains(&format!(
            "jane@new.example {uid}: kept {tcal}plain.ics; deleted {tcal}goid.ics"
        )),
        "{t}"
    );
    let mut left: Vec<String> = tgt
        .list(&tcal)
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.href.file_name().to_string())
        .collect();
    left.sort();
    assert_eq!(left, ["other.ics", "plain.ics"]);
}

#[test]
fn extras_delete_removes_target_items_not_from_the_source_but_adopts_copies() {
    let s = Setup::new(&["alice"]);
    s.put(
        "alice",
        "m1.ics",
        &event("m1", "Planning", Some("jane@old.example")),
    );
    s.put("alice", "e1.ics", &event("e1", "Gym", None));
    let target = s.target("alice");
    std::fs::write(target.join("own.ics"), event("own", "Dentist", None)).unwrap();
    std::fs::write(target.join("junk.ics"), "not a calendar").unwrap();
    // A copy of m1 someone already made: adopted, not deleted.
    std::fs::write(
        target.join("copy-of-m1.ics"),
        event("m1", "Planning", Some("jane@new.example")),
    )
    .unwrap();
    let mut config = std::fs::read_to_string(&s.config).unwrap();
    config.push_str("\n[sync]\nextras = \"delete\"\n");
    std::fs::write(&s.config, config).unwrap();

    let dry = s.run(&["sync", "--dry-run"]);
    let out = text(&dry);
    assert!(
        out.contains(
            "alice: delete  -> /alice/own.ics (not from the source (extras = \"delete\"))"
        ),
        "{out}"
    );
    assert!(out.contains("alice: delete  -> /alice/junk.ics"), "{out}");
    assert_eq!(Setup::files(&target).len(), 3, "a dry run deletes nothing");

    let run = s.run(&["sync", "--json"]);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run));
    let v: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(
        (
            v["created"].as_u64(),
            v["adopted"].as_u64(),
            v["deleted"].as_u64()
        ),
        (Some(1), Some(1), Some(2)),
        "{v}"
    );
    let mut left: Vec<String> = Setup::files(&target).into_keys().collect();
    left.sort();
    assert_eq!(left, ["copy-of-m1.ics", "e1.ics"]);
}
