//! The repair assistant, one finding class at a time, on vdir and real Radicale: missing, drifted,
//! duplicate, orphan and extra; `--dry-run` changes nothing; afterwards a sync has nothing to do.

use crate::common;

use common::dav::{self, DavServer};
use common::{Setup, event, text};
use tandem::domain::identity::wrap_uid;
use tandem::domain::types::CalendarPath;
use tandem::store::CalendarStore;

fn json(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(out)))
}

/// `(class, action)` of every finding, sorted.
fn findings(v: &serde_json::Value) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = v[0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["class"].as_str().unwrap().to_string(),
                f["action"]
                    .as_str()
                    .unwrap()
                    .split(' ')
                    .next()
                    .unwrap()
                    .to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

/// What a dry run, and then a repair, reports for the scenario with one finding of every class.
const DRY_RUN: [&str; 4] = ["would", "would", "would", "would"];
const REPAIRED: [&str; 4] = ["created", "updated", "deleted", "deleted"];

/// missing, drifted, duplicate, orphan with their `actions`; the extra is always kept.
fn every_class(actions: [&str; 4]) -> Vec<(String, String)> {
    let [m, dr, du, o] = actions;
    classes(&[
        ("missing", m),
        ("drifted", dr),
        ("duplicate", du),
        ("orphan", o),
        ("extra", "kept"),
    ])
}

fn classes(want: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = want
        .iter()
        .map(|(c, a)| (c.to_string(), a.to_string()))
        .collect();
    v.sort();
    v
}

#[test]
fn every_class_on_vdir() {
    let s = Setup::new(&["alice"]);
    for (name, uid) in [
        ("keep.ics", "keep"),
        ("gone.ics", "gone"),
        ("edit.ics", "edit"),
        ("dup.ics", "dup"),
        ("lost.ics", "lost"),
    ] {
        s.put("alice", name, &event(uid, "Original", None));
    }
    assert_eq!(s.run(&["sync"]).status.code(), Some(0));
    let t = s.target("alice");
    // Missing: a copy deleted behind tandem's back.
    std::fs::remove_file(t.join("lost.ics")).unwrap();
    // Drifted: a copy edited in the target.
    std::fs::write(
        t.join("edit.ics"),
        event("edit", "Edited in the target", None),
    )
    .unwrap();
    // Duplicate: a second copy of a meeting.
    std::fs::write(t.join("dup-copy.ics"), event("dup", "Original", None)).unwrap();
    // Orphan: the source item went and no pass has run since.
    std::fs::remove_file(s.source("alice").join("gone.ics")).unwrap();
    // Extra: somebody's own item.
    std::fs::write(t.join("own.ics"), event("own", "Made in the new org", None)).unwrap();
    let before = Setup::files(&t);

    let dry = s.run(&["repair", "--dry-run", "--json"]);
    assert_eq!(dry.status.code(), Some(0), "{}", text(&dry));
    assert_eq!(findings(&json(&dry)), every_class(DRY_RUN));
    assert_eq!(Setup::files(&t), before, "a dry run changes nothing");

    let out = s.run(&["repair"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let listed = text(&out);
    for class in [
        "missing /alice/lost.ics",
        "drifted /new/alice/edit.ics",
        "duplicate /new/alice/",
        "orphan /new/alice/gone.ics",
        "extra /new/alice/own.ics",
    ] {
        let class = class.replace("/new/alice/", "/alice/");
        assert!(listed.contains(&class), "{class}: {listed}");
    }
    let after = Setup::files(&t);
    let mut names: Vec<&str> = after.keys().map(String::as_str).collect();
    names.sort();
    assert_eq!(names.len(), 5, "keep, edit, one dup, lost, own: {names:?}");
    assert!(!after.contains_key("gone.ics"));
    assert!(after["edit.ics"].contains("SUMMARY:Original"));
    assert_eq!(after.values().filter(|b| b.contains("UID:dup")).count(), 1);
    // The mappings were rebuilt: a sync finds everything in step.
    quiet_sync(&s.config);
    // And a second repair finds nothing but the extra.
    let again = json(&s.run(&["repair", "--json"]));
    assert_eq!(findings(&again), classes(&[("extra", "kept")]));
}

#[test]
fn extras_are_deleted_only_when_configured() {
    let s = Setup::new(&["alice"]);
    s.put("alice", "a.ics", &event("a", "One", None));
    std::fs::write(s.target("alice").join("own.ics"), event("own", "Own", None)).unwrap();
    let mut toml = std::fs::read_to_string(&s.config).unwrap();
    toml.push_str("\n[sync]\nextras = \"delete\"\n");
    std::fs::write(&s.config, toml).unwrap();
    let out = json(&s.run(&["repair", "--json"]));
    assert_eq!(
        findings(&out),
        classes(&[("missing", "created"), ("extra", "deleted")])
    );
    assert!(!s.target("alice").join("own.ics").exists());
}

#[test]
fn a_locked_calendar_is_not_repaired() {
    let s = Setup::new(&["alice"]);
    s.put("alice", "a.ics", &event("a", "One", None));
    assert_eq!(
        s.run(&[
            "lock",
            "acquire",
            "--calendar",
            "new:/alice/",
            "--holder",
            "someone"
        ])
        .status
        .code(),
        Some(0)
    );
    let out = s.run(&["repair"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        text(&out).contains("locked by someone (external)"),
        "{}",
        text(&out)
    );
    assert!(Setup::files(&s.target("alice")).is_empty());
}

#[tokio::test]
async fn every_class_on_radicale() {
    every_class_on(dav::Kind::Radicale).await;
}

#[tokio::test]
async fn every_class_on_sogo() {
    every_class_on(dav::Kind::Sogo).await;
}

#[tokio::test]
async fn every_class_on_davical() {
    every_class_on(dav::Kind::Davical).await;
}

/// Radicale → a target of `kind`, each class of finding made on the target, then repaired.
async fn every_class_on(kind: dav::Kind) {
    let source = DavServer::radicale();
    let target = DavServer::start_new(kind);
    let scal: CalendarPath = source.make_calendar("alice", "calendar").parse().unwrap();
    let tcal: CalendarPath = target
        .make_calendar("alice", target.default_calendar())
        .parse()
        .unwrap();
    let (src, tgt) = (source.store(), target.store());
    for uid in ["keep", "gone", "edit", "dup", "lost"] {
        src.create(
            &scal,
            &format!("{uid}.ics"),
            &event(
                &format!("{uid}@old.example"),
                "Original",
                Some("jane@old.example"),
            ),
        )
        .await
        .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dav::pair_config(
        dir.path(),
        &source,
        &target,
        scal.as_str(),
        tcal.as_str(),
        "",
    );
    assert_eq!(common::tandem(&config, &["sync"]).status.code(), Some(0));
    let version = |name: &str| {
        let (tgt, tcal) = (tgt.clone(), tcal.clone());
        let href = tcal.join(name);
        async move {
            tgt.list(&tcal)
                .await
                .unwrap()
                .into_iter()
                .find(|v| v.href == href)
                .unwrap()
        }
    };
    let lost = version("lost@old.example.ics").await;
    tgt.delete(&lost.href, &lost.etag).await.unwrap();
    let edit = version("edit@old.example.ics").await;
    tgt.update(
        &edit.href,
        &edit.etag,
        &event(
            "edit@old.example",
            "Edited in the target",
            Some("jane@old.example"),
        ),
    )
    .await
    .unwrap();
    // Radicale and SOGo refuse two items with one UID: the duplicate carries Exchange's GOID
    // spelling.
    tgt.create(
        &tcal,
        "dup-goid.ics",
        &event(
            &wrap_uid("dup@old.example", None),
            "Original",
            Some("jane@old.example"),
        ),
    )
    .await
    .unwrap();
    let gone = src
        .list(&scal)
        .await
        .unwrap()
        .into_iter()
        .find(|v| v.href.file_name() == "gone.ics")
        .unwrap();
    src.delete(&gone.href, &gone.etag).await.unwrap();
    tgt.create(
        &tcal,
        "own.ics",
        &event("own@new.example", "Made in the new org", None),
    )
    .await
    .unwrap();
    let before = tgt.list(&tcal).await.unwrap();

    let dry = common::tandem(&config, &["repair", "--dry-run", "--json"]);
    assert_eq!(dry.status.code(), Some(0), "{}", text(&dry));
    assert_eq!(findings(&json(&dry)), every_class(DRY_RUN));
    let mut unchanged = tgt.list(&tcal).await.unwrap();
    let mut was = before.clone();
    unchanged.sort_by(|a, b| a.href.cmp(&b.href));
    was.sort_by(|a, b| a.href.cmp(&b.href));
    assert_eq!(unchanged, was, "a dry run changes nothing");

    let out = common::tandem(&config, &["repair", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(findings(&json(&out)), every_class(REPAIRED));
    // One copy of each source item plus the extra; a sync then has nothing to do.
    assert_eq!(tgt.list(&tcal).await.unwrap().len(), 5);
    quiet_sync(&config);
}

#[test]
fn attendees_that_are_pairs_get_the_meeting_from_their_own_source() {
    let s = Setup::new(&["alice", "bob", "carol"]);
    // Mailbox addresses let repair see that alice organises a meeting bob and carol attend.
    let mut toml = std::fs::read_to_string(&s.config).unwrap();
    for u in ["alice", "bob", "carol"] {
        toml = toml.replace(
            &format!("id = \"{u}\"\n"),
            &format!("id = \"{u}\"\naddress = \"{u}@old.example\"\n"),
        );
    }
    std::fs::write(&s.config, &toml).unwrap();
    let meeting = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VEVENT\r\nUID:board@old.example\r\n\
                   DTSTAMP:20260101T000000Z\r\nDTSTART:20260110T100000Z\r\nSUMMARY:Board\r\nORGANIZER:mailto:alice@old.example\r\n\
                   ATTENDEE:mailto:bob@old.example\r\nATTENDEE:mailto:carol@old.example\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
    s.put("alice", "board.ics", meeting);
    s.put("bob", "board.ics", meeting); // bob's old mailbox has his copy; carol's lacks it
    assert_eq!(s.run(&["sync", "--pair", "alice"]).status.code(), Some(0));

    let dry = json(&s.run(&["repair", "--pair", "alice", "--dry-run", "--json"]));
    let actions: Vec<&str> = dry[0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "would sync pair bob from its source",
            "would sync pair carol from its source"
        ],
        "{dry}"
    );
    assert!(Setup::files(&s.target("bob")).is_empty());

    let out = s.run(&["repair", "--pair", "alice"]);
    let listed = text(&out);
    assert!(listed.contains("attendee-missing /alice/board.ics (alice@new.example board@old.example): synced pair bob from its source: now present"), "{listed}");
    assert!(
        listed.contains("not in pair carol's source either: not fabricated"),
        "{listed}"
    );
    assert_eq!(
        Setup::files(&s.target("bob")).len(),
        1,
        "bob's copy came from bob's source"
    );
    assert!(
        Setup::files(&s.target("carol")).is_empty(),
        "nothing made up for carol"
    );
    assert_eq!(out.status.code(), Some(0), "{listed}");
}

/// The file in `dir` holding the item with `uid`.
fn named(dir: &std::path::Path, uid: &str) -> std::path::PathBuf {
    let name = Setup::files(dir)
        .into_iter()
        .find(|(_, body)| body.contains(&format!("UID:{uid}\r\n")))
        .unwrap_or_else(|| panic!("no item {uid} in {}", dir.display()))
        .0;
    dir.join(name)
}

fn append(config: &std::path::Path, extra: &str) {
    let mut toml = std::fs::read_to_string(config).unwrap();
    toml.push_str(extra);
    std::fs::write(config, toml).unwrap();
}

/// A meeting as the new org spells it: every address in new.example.
fn new_org(uid: &str, summary: &str) -> String {
    event(uid, summary, Some("jane@new.example")).replace("@old.example", "@new.example")
}

/// A pass after a repair has nothing to do.
fn quiet_sync(config: &std::path::Path) {
    let sync = common::tandem(config, &["sync", "--json"]);
    assert_eq!(sync.status.code(), Some(0), "{}", text(&sync));
    let p = &json(&sync)["pairs"][0];
    assert_eq!(
        (
            p["created"].as_u64(),
            p["updated"].as_u64(),
            p["deleted"].as_u64(),
            p["adopted"].as_u64()
        ),
        (Some(0), Some(0), Some(0), Some(0)),
        "{p}"
    );
}

#[test]
fn a_two_way_pair_is_repaired_both_ways() {
    let s = Setup::new(&["alice"]);
    append(&s.config, "\n[sync]\ndirection = \"two-way\"\n");
    for uid in ["keep", "gone", "edited", "both", "dup"] {
        s.put(
            "alice",
            &format!("{uid}.ics"),
            &event(uid, "Original", Some("jane@old.example")),
        );
    }
    assert_eq!(s.run(&["sync"]).status.code(), Some(0));
    let (old, new) = (s.source("alice"), s.target("alice"));
    // Deleted in the old org: the new org's unchanged copy is an orphan.
    std::fs::remove_file(old.join("gone.ics")).unwrap();
    // Deleted in the old org but edited in the new: the edit wins.
    std::fs::remove_file(old.join("edited.ics")).unwrap();
    let edited = new_org("edited", "Edited in the new org");
    std::fs::write(named(&new, "edited"), edited).unwrap();
    // Edited on both sides: the authority (the source, not cut over) wins.
    s.put("alice", "both.ics", &event("both", "Old side", None));
    std::fs::write(named(&new, "both"), event("both", "New side", None)).unwrap();
    // A second item of one meeting in the new org.
    let dup = new_org("dup", "Original");
    std::fs::write(new.join("dup-copy.ics"), dup).unwrap();
    // On one side only, never synced.
    s.put("alice", "fresh-old.ics", &event("fresh-old", "Old", None));
    let fresh = new_org("fresh-new", "New");
    std::fs::write(new.join("fresh-new.ics"), fresh).unwrap();
    let before = (Setup::files(&old), Setup::files(&new));

    let dry = s.run(&["repair", "--dry-run", "--json"]);
    assert_eq!(dry.status.code(), Some(0), "{}", text(&dry));
    let would = [
        ("drifted", "would"),
        ("duplicate", "would"),
        ("missing", "would"),
        ("missing", "would"),
        ("missing", "would"),
        ("orphan", "would"),
    ];
    assert_eq!(findings(&json(&dry)), classes(&would), "{}", text(&dry));
    assert_eq!(
        (Setup::files(&old), Setup::files(&new)),
        before,
        "a dry run changes nothing"
    );

    let out = s.run(&["repair", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v = json(&out);
    let done = [
        ("drifted", "updated"),
        ("duplicate", "deleted"),
        ("missing", "created"),
        ("missing", "created"),
        ("missing", "created"),
        ("orphan", "deleted"),
    ];
    assert_eq!(findings(&v), classes(&done), "{v}");
    let lines = v[0]["findings"].as_array().unwrap();
    let finding = |class: &str, href: &str| {
        lines
            .iter()
            .find(|f| f["class"] == class && f["href"].as_str().unwrap().ends_with(href))
            .unwrap_or_else(|| panic!("no {class} {href}: {v}"))
    };
    assert_eq!(finding("orphan", "gone.ics")["side"], "target");
    assert_eq!(finding("missing", "fresh-new.ics")["side"], "target");
    assert_eq!(finding("missing", "fresh-old.ics")["side"], "source");
    assert!(
        finding("missing", "edited.ics")["action"]
            .as_str()
            .unwrap()
            .contains("an edit wins over a delete"),
        "{v}"
    );
    let drifted = finding("drifted", "both.ics");
    assert_eq!(
        drifted["side"], "target",
        "the new org's version was set aside"
    );
    assert!(
        drifted["action"]
            .as_str()
            .unwrap()
            .contains("from the source"),
        "{v}"
    );

    let (old_now, new_now) = (Setup::files(&old), Setup::files(&new));
    for side in [&old_now, &new_now] {
        let uids: Vec<&str> = side
            .values()
            .map(|b| {
                b.split("UID:")
                    .nth(1)
                    .unwrap()
                    .split("\r\n")
                    .next()
                    .unwrap()
            })
            .collect();
        let mut sorted = uids.clone();
        sorted.sort_unstable();
        assert_eq!(
            sorted,
            ["both", "dup", "edited", "fresh-new", "fresh-old", "keep"],
            "one item per meeting on each side: {side:?}"
        );
    }
    let read = |dir: &std::path::Path, uid| std::fs::read_to_string(named(dir, uid)).unwrap();
    assert!(read(&new, "both").contains("SUMMARY:Old side"));
    let edited_back = read(&old, "edited");
    assert!(edited_back.contains("SUMMARY:Edited in the new org"));
    // Written to the old org with its own addresses.
    assert!(edited_back.contains("jane@old.example"), "{edited_back}");
    assert!(read(&old, "fresh-new").contains("jane@old.example"));
    assert!(read(&new, "fresh-old").contains("SUMMARY:Old"));

    quiet_sync(&s.config);
    let again = json(&s.run(&["repair", "--json"]));
    assert_eq!(findings(&again), classes(&[]), "{again}");
}

#[test]
fn a_cut_over_pair_is_repaired_from_the_target() {
    let s = Setup::new(&["alice"]);
    for uid in ["keep", "gone", "drift"] {
        s.put(
            "alice",
            &format!("{uid}.ics"),
            &event(uid, "Original", None),
        );
    }
    assert_eq!(s.run(&["sync"]).status.code(), Some(0));
    let cut = s.run(&["cutover", "--pair", "alice"]);
    assert_eq!(cut.status.code(), Some(0), "{}", text(&cut));
    let (old, new) = (s.source("alice"), s.target("alice"));
    // The new mailbox is the truth now: its delete and its version count.
    std::fs::remove_file(named(&new, "gone")).unwrap();
    s.put(
        "alice",
        "drift.ics",
        &event("drift", "Edited in the old org", None),
    );
    let fresh = new_org("fresh", "Booked in the new org");
    std::fs::write(new.join("fresh.ics"), fresh).unwrap();
    // A colleague's invitation in the old mailbox that never came from the new one.
    s.put("alice", "own.ics", &event("own", "Old org only", None));

    let dry = json(&s.run(&["repair", "--dry-run", "--json"]));
    let would = [
        ("drifted", "would"),
        ("extra", "kept"),
        ("missing", "would"),
        ("orphan", "would"),
    ];
    assert_eq!(findings(&dry), classes(&would), "{dry}");

    let out = s.run(&["repair", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v = json(&out);
    let done = [
        ("drifted", "updated"),
        ("extra", "kept"),
        ("missing", "created"),
        ("orphan", "deleted"),
    ];
    assert_eq!(findings(&v), classes(&done), "{v}");
    for f in v[0]["findings"].as_array().unwrap() {
        let side = if f["class"] == "missing" {
            "target"
        } else {
            "source"
        };
        assert_eq!(f["side"], side, "{f}");
    }
    assert!(!old.join("gone.ics").exists());
    assert!(old.join("own.ics").exists(), "the old org's own item stays");
    let drift = std::fs::read_to_string(old.join("drift.ics")).unwrap();
    assert!(drift.contains("SUMMARY:Original"), "{drift}");
    let copied = std::fs::read_to_string(named(&old, "fresh")).unwrap();
    assert!(copied.contains("jane@old.example"), "{copied}");
    assert_eq!(
        Setup::files(&new).len(),
        3,
        "the target is only read: keep, drift, fresh"
    );
    quiet_sync(&s.config);
}
