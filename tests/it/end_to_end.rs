//! vdir → vdir through the `tandem` binary, with the state in SQLite on disk.

use crate::common;

use common::{Setup, event, json, pair_report as pair, text};
use serde_json::Value;

fn counts(p: &Value) -> [u64; 5] {
    ["created", "updated", "deleted", "unchanged", "failed"].map(|k| p[k].as_u64().unwrap())
}

#[test]
fn first_sync_copies_and_rewrites_then_nothing_is_left() {
    let s = Setup::new(&["alice", "bob"]);
    s.put(
        "alice",
        "m1.ics",
        &event("m1", "Planning", Some("jane@old.example")),
    );
    s.put("alice", "e2.ics", &event("e2", "Dentist", None));
    s.put("alice", "e3.ics", &event("e3", "Gym", None));
    s.put(
        "bob",
        "m1.ics",
        &event("m1", "Planning", Some("jane@old.example")),
    );

    let out = s.run(&["sync", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v = json(&out);
    assert_eq!(counts(pair(&v, "alice")), [3, 0, 0, 0, 0]);
    assert_eq!(counts(pair(&v, "bob")), [1, 0, 0, 0, 0]);

    let alice = Setup::files(&s.target("alice"));
    assert_eq!(alice.len(), 3, "{alice:?}");
    let meeting = &alice["m1.ics"];
    assert!(
        meeting.contains(
            "ORGANIZER;CN=\"Doe, Jane\";SCHEDULE-AGENT=CLIENT:mailto:jane@new.example\r\n"
        ),
        "{meeting}"
    );
    assert!(
        meeting.contains("ATTENDEE;PARTSTAT=ACCEPTED;SCHEDULE-AGENT=CLIENT:mailto:bob@new.example"),
        "{meeting}"
    );
    assert!(meeting.contains("mailto:bob@new.example"), "{meeting}");
    assert!(!meeting.contains("old.example"), "{meeting}");

    let again = s.run(&["sync", "--json"]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    let v = json(&again);
    assert_eq!(counts(pair(&v, "alice")), [0, 0, 0, 3, 0]);
    assert_eq!(counts(pair(&v, "bob")), [0, 0, 0, 1, 0]);

    let status = s.run(&["status", "--json"]);
    assert_eq!(status.status.code(), Some(0), "{}", text(&status));
    let st = json(&status);
    let alice = st["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "alice")
        .unwrap();
    assert_eq!(alice["items"], 3);
    assert_eq!(alice["last_run"]["outcome"], "ok");
}

#[test]
fn source_creates_updates_and_deletes_reach_the_target_and_extras_stay() {
    let s = Setup::new(&["alice"]);
    s.put("alice", "a.ics", &event("a", "One", None));
    s.put("alice", "b.ics", &event("b", "Two", None));
    assert_eq!(s.run(&["sync"]).status.code(), Some(0));
    // An item somebody made directly in the new org: not ours, left alone.
    std::fs::write(
        s.target("alice").join("own.ics"),
        event("own", "Made in the new org", None),
    )
    .unwrap();

    s.put("alice", "a.ics", &event("a", "One, moved to Friday", None));
    std::fs::remove_file(s.source("alice").join("b.ics")).unwrap();
    s.put("alice", "c.ics", &event("c", "Three", None));
    let out = s.run(&["sync", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(counts(pair(&json(&out), "alice")), [1, 1, 1, 0, 0]);

    let files = Setup::files(&s.target("alice"));
    assert_eq!(
        files.keys().cloned().collect::<Vec<_>>(),
        ["a.ics", "c.ics", "own.ics"]
    );
    assert!(
        files["a.ics"].contains("SUMMARY:One\\, moved to Friday")
            || files["a.ics"].contains("SUMMARY:One, moved to Friday")
    );
    assert_eq!(
        counts(pair(&json(&s.run(&["sync", "--json"])), "alice")),
        [0, 0, 0, 2, 0]
    );
}

#[test]
fn a_hand_edited_target_copy_is_restored_from_the_source() {
    let s = Setup::new(&["alice"]);
    s.put("alice", "a.ics", &event("a", "Original", None));
    assert_eq!(s.run(&["sync"]).status.code(), Some(0));
    let copy = s.target("alice").join("a.ics");
    let edited = std::fs::read_to_string(&copy)
        .unwrap()
        .replace("Original", "Edited by hand");
    std::fs::write(&copy, edited).unwrap();
    let out = s.run(&["sync", "--json"]);
    assert_eq!(
        counts(pair(&json(&out), "alice")),
        [0, 1, 0, 0, 0],
        "{}",
        text(&out)
    );
    assert!(
        std::fs::read_to_string(&copy)
            .unwrap()
            .contains("SUMMARY:Original")
    );
}

#[test]
fn dry_run_prints_the_plan_and_writes_nothing() {
    let s = Setup::new(&["alice"]);
    s.put("alice", "a.ics", &event("a", "One", None));
    s.put("alice", "b.ics", &event("b", "Two", None));
    let out = s.run(&["sync", "--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains("alice: create /alice/a.ics -> /alice/a.ics"),
        "{t}"
    );
    assert!(t.contains("nothing was written"), "{t}");
    assert!(Setup::files(&s.target("alice")).is_empty());

    assert_eq!(s.run(&["sync"]).status.code(), Some(0));
    s.put("alice", "a.ics", &event("a", "One, changed", None));
    let before = Setup::files(&s.target("alice"));
    let dry = s.run(&["sync", "--dry-run", "--json"]);
    let v = json(&dry);
    assert_eq!(counts(pair(&v, "alice")), [0, 1, 0, 1, 0]);
    assert_eq!(pair(&v, "alice")["plan"][0]["action"], "update");
    assert_eq!(
        Setup::files(&s.target("alice")),
        before,
        "dry run changed the target"
    );
    // Nothing was recorded either: the real pass still has the update to do.
    assert_eq!(
        counts(pair(&json(&s.run(&["sync", "--json"])), "alice")),
        [0, 1, 0, 1, 0]
    );
}

#[test]
fn an_emptied_source_is_not_mirrored_without_force_delete() {
    let s = Setup::new(&["alice", "bob"]);
    s.put("alice", "a.ics", &event("a", "One", None));
    s.put("alice", "b.ics", &event("b", "Two", None));
    s.put("bob", "x.ics", &event("x", "Bob's", None));
    assert_eq!(s.run(&["sync"]).status.code(), Some(0));
    for f in ["a.ics", "b.ics"] {
        std::fs::remove_file(s.source("alice").join(f)).unwrap();
    }
    s.put("bob", "y.ics", &event("y", "Bob's second", None));

    let out = s.run(&["sync"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(3), "{t}");
    assert!(
        t.contains("pair alice:")
            && t.contains("refusing to delete")
            && t.contains("--force-delete"),
        "{t}"
    );
    assert_eq!(
        Setup::files(&s.target("alice")).len(),
        2,
        "guard must keep the target copies"
    );
    assert_eq!(
        Setup::files(&s.target("bob")).len(),
        2,
        "other pairs keep syncing"
    );

    let forced = s.run(&["sync", "--pair", "alice", "--force-delete", "--json"]);
    assert_eq!(forced.status.code(), Some(0), "{}", text(&forced));
    assert_eq!(counts(pair(&json(&forced), "alice")), [0, 0, 2, 0, 0]);
    assert!(Setup::files(&s.target("alice")).is_empty());
}

#[test]
fn a_broken_item_is_reported_by_pair_and_href_and_the_rest_syncs() {
    let s = Setup::new(&["alice"]);
    s.put("alice", "good.ics", &event("good", "Fine", None));
    s.put(
        "alice",
        "bad.ics",
        "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nSUMMARY:no uid, no end\r\n",
    );
    let out = s.run(&["sync", "--json"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let v = json(&out);
    let p = pair(&v, "alice");
    assert_eq!(counts(p), [1, 0, 0, 0, 1]);
    assert_eq!(p["failures"][0]["href"], "/alice/bad.ics");
    assert_eq!(p["failures"][0]["kind"], "invalid-data");
    assert_eq!(p["failures"][0]["operation"], "read");
    assert!(
        p["failures"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("invalid iCalendar"),
        "{p}"
    );
    let human = text(&s.run(&["sync"]));
    assert!(
        human.contains("pair alice: /alice/bad.ics: source item skipped: invalid iCalendar data"),
        "{human}"
    );
    assert_eq!(
        Setup::files(&s.target("alice")).keys().collect::<Vec<_>>(),
        ["good.ics"]
    );
}

#[test]
fn losing_the_state_database_does_not_duplicate() {
    let s = Setup::new(&["alice"]);
    for i in 0..5 {
        s.put(
            "alice",
            &format!("e{i}.ics"),
            &event(&format!("e{i}"), "Item", Some("jane@old.example")),
        );
    }
    assert_eq!(s.run(&["sync"]).status.code(), Some(0));
    std::fs::remove_dir_all(s.dir.path().join("state")).unwrap();
    let out = s.run(&["sync", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let p = pair(&json(&out), "alice").clone();
    assert_eq!(p["adopted"], 5, "{p}");
    assert_eq!(p["created"], 0, "{p}");
    assert_eq!(Setup::files(&s.target("alice")).len(), 5);
}

#[test]
fn resync_reads_everything_and_finds_an_in_step_pair_unchanged() {
    let s = Setup::new(&["alice"]);
    s.put("alice", "a.ics", &event("a", "Right", None));
    assert_eq!(s.run(&["sync"]).status.code(), Some(0));
    let out = s.run(&["resync", "--pair", "alice", "--json"]);
    assert_eq!(
        counts(pair(&json(&out), "alice")),
        [0, 0, 0, 1, 0],
        "{}",
        text(&out)
    );
    assert_eq!(
        s.run(&["resync", "--pair", "nobody"]).status.code(),
        Some(2)
    );
}

#[test]
fn unknown_pair_and_missing_calendar_are_clear() {
    let s = Setup::new(&["alice"]);
    let out = s.run(&["sync", "--pair", "nobody"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("no pair with id \"nobody\""),
        "{}",
        text(&out)
    );

    std::fs::remove_dir(s.target("alice")).unwrap();
    let out = s.run(&["sync"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(3), "{t}");
    assert!(t.contains("pair alice: target calendar new:/alice/"), "{t}");
}
