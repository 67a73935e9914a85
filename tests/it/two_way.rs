//! Two-way pairs and cutover, end to end through the `tandem` binary: the old org on Radicale,
//! the new org on Xandikos. Changes on either side reach the other, conflicts are settled by the
//! pair's policy and named, a delete loses to an edit, a repair assistant's copy is adopted, and
//! addresses are rewritten both ways (read back by Python's icalendar, not by tandem).

use crate::common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use common::dav::{DavServer, PASSWORD};
use serde_json::Value;
use tandem::domain::error::ErrorKind;
use tandem::domain::identity::wrap_uid;
use tandem::domain::item::Item;
use tandem::domain::types::{CalendarPath, Etag, Href};
use tandem::store::CalendarStore;
use tandem::store::caldav::CaldavStore;

/// A meeting organized in `domain`, with an attendee there and one outside both orgs.
fn meeting(uid: &str, domain: &str, summary: &str, sequence: u32) -> String {
    format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VEVENT\r\nUID:{uid}\r\n\
         DTSTAMP:20260101T000000Z\r\nSEQUENCE:{sequence}\r\nDTSTART:20261210T100000Z\r\n\
         DTEND:20261210T110000Z\r\nSUMMARY:{summary}\r\nORGANIZER:mailto:alice@{domain}\r\n\
         ATTENDEE;PARTSTAT=ACCEPTED:mailto:bob@{domain}\r\n\
         ATTENDEE;PARTSTAT=NEEDS-ACTION:mailto:pat@partner.example\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )
}

/// Old org (A, Radicale) and new org (B, Xandikos) with one pair between them.
struct Orgs {
    _dir: tempfile::TempDir,
    config: PathBuf,
    _old: DavServer,
    _new: DavServer,
    stores: [std::sync::Arc<CaldavStore>; 2],
    cals: [CalendarPath; 2],
}

const A: usize = 0;
const B: usize = 1;

impl Orgs {
    fn new(sync: &str) -> Orgs {
        let old = DavServer::radicale();
        let new = DavServer::xandikos();
        let a: CalendarPath = old.make_calendar("alice", "calendar").parse().unwrap();
        let b: CalendarPath = new.make_calendar("alice", "calendar").parse().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let extra =
            format!("{sync}\n[rewrite]\ndomains = {{ \"old.example\" = \"new.example\" }}\n");
        let config =
            common::dav::pair_config(dir.path(), &old, &new, a.as_str(), b.as_str(), &extra);
        Orgs {
            _dir: dir,
            config,
            stores: [old.store(), new.store()],
            _old: old,
            _new: new,
            cals: [a, b],
        }
    }

    fn run(&self, args: &[&str]) -> (std::process::Output, String) {
        let out = common::tandem(&self.config, args);
        let text = common::text(&out);
        assert!(!text.contains(PASSWORD), "the password leaked:\n{text}");
        (out, text)
    }

    /// `tandem sync --json` for the pair, which must succeed: its report.
    fn sync(&self) -> Value {
        let (out, text) = self.run(&["sync", "--json"]);
        assert!(
            out.status.success(),
            "sync failed ({}):\n{text}",
            out.status
        );
        let summary: Value =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {text}"));
        summary["pairs"][0].clone()
    }

    /// A pass that must write nothing.
    fn quiet(&self) {
        let r = self.sync();
        for k in ["created", "updated", "deleted", "adopted", "failed"] {
            assert_eq!(r[k], 0, "{k} in a pass after convergence: {r}");
        }
    }

    async fn put(&self, side: usize, name: &str, body: &str) -> Href {
        self.stores[side]
            .create(&self.cals[side], name, body)
            .await
            .unwrap()
            .href
    }

    /// Every item of one side: href → (etag, text). An item deleted between the listing and
    /// the read (a running service is at work) is left out.
    async fn items(&self, side: usize) -> BTreeMap<Href, (Etag, String)> {
        let store = &*self.stores[side];
        let listed = store.changes(&self.cals[side], None).await.unwrap();
        let hrefs: Vec<Href> = listed.changed.into_iter().map(|v| v.href).collect();
        store
            .fetch(&self.cals[side], &hrefs)
            .await
            .unwrap()
            .into_iter()
            .filter_map(|(h, r)| match r {
                Ok(r) => Some((h, (r.etag, r.data))),
                Err(e) if e.kind == ErrorKind::NotFound => None,
                Err(e) => panic!("{h}: {e}"),
            })
            .collect()
    }

    /// Summaries by clean UID: more than one under a UID is a duplicate.
    async fn meetings(&self, side: usize) -> BTreeMap<String, Vec<String>> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (_, text) in self.items(side).await.into_values() {
            let item = Item::parse(&text).unwrap();
            out.entry(item.identity().uid)
                .or_default()
                .push(item.summary().unwrap_or_default().to_string());
        }
        out
    }

    /// The item of `uid` on `side`: href, etag, text.
    async fn find(&self, side: usize, uid: &str) -> (Href, Etag, String) {
        self.items(side)
            .await
            .into_iter()
            .find(|(_, (_, text))| Item::parse(text).unwrap().identity().uid == uid)
            .map(|(h, (e, t))| (h, e, t))
            .unwrap_or_else(|| panic!("no item {uid} on side {side}"))
    }

    async fn edit(&self, side: usize, uid: &str, body: &str) {
        let (href, etag, _) = self.find(side, uid).await;
        self.stores[side].update(&href, &etag, body).await.unwrap();
    }

    async fn remove(&self, side: usize, uid: &str) {
        let (href, etag, _) = self.find(side, uid).await;
        self.stores[side].delete(&href, &etag).await.unwrap();
    }
}

/// The calendar addresses of each text as Python's icalendar reads them (lower-cased, sorted).
fn addresses_by_reference(texts: &[String]) -> Vec<Vec<String>> {
    let script = r#"
import json, sys, icalendar
out = []
for text in json.load(sys.stdin):
    found = []
    for ev in icalendar.Calendar.from_ical(text).walk("VEVENT"):
        for key in ("ORGANIZER", "ATTENDEE"):
            value = ev.get(key)
            if value is None:
                continue
            for v in value if isinstance(value, list) else [value]:
                found.append(str(v).lower())
    out.append(sorted(found))
json.dump(out, sys.stdout)
"#;
    common::reference::python("icalendar reading the copies", script, &texts)
}

fn addresses(domain: &str) -> Vec<String> {
    vec![
        format!("mailto:alice@{domain}"),
        format!("mailto:bob@{domain}"),
        "mailto:pat@partner.example".to_string(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_orgs_live_changes_flow_both_ways_and_cutover_flips_the_authority() {
    let orgs = Orgs::new("[sync]\ndirection = \"two-way\"\n");
    let check = orgs.run(&["check"]).1;
    assert!(
        check.contains("<->") && check.contains("two-way, conflicts: authority"),
        "{check}"
    );
    for n in 1..=3 {
        orgs.put(
            A,
            &format!("old-{n}.ics"),
            &meeting(&format!("old-{n}"), "old.example", &format!("Old {n}"), 0),
        )
        .await;
    }
    for n in 1..=2 {
        orgs.put(
            B,
            &format!("new-{n}.ics"),
            &meeting(&format!("new-{n}"), "new.example", &format!("New {n}"), 0),
        )
        .await;
    }

    // First pass: each side's meetings reach the other, addresses in the receiving org's form.
    let r = orgs.sync();
    assert_eq!(
        (r["created"].as_u64(), r["failed"].as_u64()),
        (Some(5), Some(0)),
        "{r}"
    );
    for side in [A, B] {
        let m = orgs.meetings(side).await;
        assert_eq!(m.len(), 5, "side {side}: {m:?}");
        assert!(
            m.values().all(|s| s.len() == 1),
            "a duplicate on side {side}: {m:?}"
        );
    }
    let copy_on_a = orgs.find(A, "new-1").await.2;
    let copy_on_b = orgs.find(B, "old-1").await.2;
    let read = addresses_by_reference(&[copy_on_a.clone(), copy_on_b.clone()]);
    assert_eq!(
        read[0],
        addresses("old.example"),
        "copy written to the old org:\n{copy_on_a}"
    );
    assert_eq!(
        read[1],
        addresses("new.example"),
        "copy written to the new org:\n{copy_on_b}"
    );
    assert!(copy_on_a.contains("SCHEDULE-AGENT=CLIENT"), "{copy_on_a}");
    // No ping-pong: the copies are in step on both sides.
    orgs.quiet();
    orgs.quiet();

    // Edits, creates and deletes on both sides.
    orgs.edit(
        A,
        "old-1",
        &meeting("old-1", "old.example", "Old 1 moved", 1),
    )
    .await;
    orgs.edit(
        B,
        "new-1",
        &meeting("new-1", "new.example", "New 1 moved", 1),
    )
    .await;
    orgs.remove(A, "old-2").await;
    orgs.remove(B, "new-2").await;
    orgs.put(B, "new-3.ics", &meeting("new-3", "new.example", "New 3", 0))
        .await;
    orgs.put(A, "old-4.ics", &meeting("old-4", "old.example", "Old 4", 0))
        .await;
    let r = orgs.sync();
    assert_eq!(
        (
            r["created"].as_u64(),
            r["updated"].as_u64(),
            r["deleted"].as_u64(),
            r["failed"].as_u64()
        ),
        (Some(2), Some(2), Some(2), Some(0)),
        "{r}"
    );
    for side in [A, B] {
        let m = orgs.meetings(side).await;
        let want: BTreeMap<String, Vec<String>> = [
            ("old-1", "Old 1 moved"),
            ("old-3", "Old 3"),
            ("old-4", "Old 4"),
            ("new-1", "New 1 moved"),
            ("new-3", "New 3"),
        ]
        .into_iter()
        .map(|(u, s)| (u.to_string(), vec![s.to_string()]))
        .collect();
        assert_eq!(m, want, "side {side}");
    }
    orgs.quiet();

    // Both sides edited one meeting: the authority (the source, not cut over) wins, and the
    // version set aside is named.
    orgs.edit(
        A,
        "old-3",
        &meeting("old-3", "old.example", "Old 3 as the old org has it", 1),
    )
    .await;
    orgs.edit(
        B,
        "old-3",
        &meeting("old-3", "new.example", "Old 3 as the new org has it", 1),
    )
    .await;
    let r = orgs.sync();
    let resolved = r["resolved"].to_string();
    let b_href = orgs.find(B, "old-3").await.0;
    assert!(
        resolved.contains("the authority's version wins") && resolved.contains(b_href.as_str()),
        "{r}"
    );
    for side in [A, B] {
        assert_eq!(
            orgs.meetings(side).await["old-3"],
            ["Old 3 as the old org has it"],
            "side {side}"
        );
    }
    orgs.quiet();

    // A delete on one side and an edit on the other: the edit wins, both ways round.
    orgs.remove(B, "old-4").await;
    orgs.edit(
        A,
        "old-4",
        &meeting("old-4", "old.example", "Old 4 kept", 1),
    )
    .await;
    orgs.remove(A, "new-3").await;
    orgs.edit(
        B,
        "new-3",
        &meeting("new-3", "new.example", "New 3 kept", 1),
    )
    .await;
    let r = orgs.sync();
    assert!(r["resolved"].to_string().contains("the edit wins"), "{r}");
    for side in [A, B] {
        let m = orgs.meetings(side).await;
        assert_eq!(m["old-4"], ["Old 4 kept"], "side {side}");
        assert_eq!(m["new-3"], ["New 3 kept"], "side {side}");
    }
    orgs.quiet();

    // A meeting booked in the new org, and before the next pass Exchange's repair assistant
    // puts it in the old mailbox under its GOID spelling: one meeting, adopted, not two.
    let google = "7kukuqrfedlm2f9t6jp2s9h6u0@google.com";
    orgs.put(
        B,
        "booked.ics",
        &meeting(google, "new.example", "Booked in the new org", 0),
    )
    .await;
    let goid = wrap_uid(google, None);
    orgs.put(
        A,
        "repaired.ics",
        &meeting(&goid, "old.example", "Booked in the new org", 0),
    )
    .await;
    let r = orgs.sync();
    assert_eq!(
        (r["created"].as_u64(), r["failed"].as_u64()),
        (Some(0), Some(0)),
        "{r}"
    );
    for side in [A, B] {
        let m = orgs.meetings(side).await;
        assert_eq!(m[google].len(), 1, "side {side}: {m:?}");
        assert_eq!(m.len(), 6, "side {side}: {m:?}");
    }
    orgs.quiet();

    // Cutover: the new org becomes the authority and wins the next conflict.
    let (out, text) = orgs.run(&["cutover", "--pair", "alice"]);
    assert!(out.status.success() && text.contains("cut over"), "{text}");
    let status = orgs.run(&["status", "--json"]).1;
    assert!(status.contains("\"alice\""), "{status}");
    orgs.quiet();
    orgs.edit(
        A,
        "old-1",
        &meeting("old-1", "old.example", "Old 1 per the old org", 2),
    )
    .await;
    orgs.edit(
        B,
        "old-1",
        &meeting("old-1", "new.example", "Old 1 per the new org", 2),
    )
    .await;
    let r = orgs.sync();
    assert!(
        r["resolved"]
            .to_string()
            .contains("the authority's version wins"),
        "{r}"
    );
    for side in [A, B] {
        assert_eq!(
            orgs.meetings(side).await["old-1"],
            ["Old 1 per the new org"],
            "side {side}"
        );
    }
    // The winner, written back to the old org, carries old-org addresses.
    let back = orgs.find(A, "old-1").await.2;
    assert_eq!(
        addresses_by_reference(std::slice::from_ref(&back))[0],
        addresses("old.example"),
        "{back}"
    );
    orgs.quiet();

    // The switch rolled back: the old org wins again.
    let (out, text) = orgs.run(&["cutover", "--undo", "--pair", "alice"]);
    assert!(
        out.status.success() && text.contains("cutover undone"),
        "{text}"
    );
    orgs.edit(
        A,
        "old-1",
        &meeting("old-1", "old.example", "Old 1 after the rollback", 3),
    )
    .await;
    orgs.edit(
        B,
        "old-1",
        &meeting("old-1", "new.example", "Old 1 not kept", 3),
    )
    .await;
    orgs.sync();
    for side in [A, B] {
        assert_eq!(
            orgs.meetings(side).await["old-1"],
            ["Old 1 after the rollback"],
            "side {side}"
        );
    }
    orgs.quiet();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_newest_the_newer_version_wins_whichever_side_holds_it() {
    let orgs = Orgs::new("[sync]\ndirection = \"two-way\"\nconflict = \"newest\"\n");
    orgs.put(A, "m.ics", &meeting("m", "old.example", "First", 0))
        .await;
    orgs.sync();
    orgs.quiet();
    // The new org's version has the higher SEQUENCE: it wins though the old org is the authority.
    orgs.edit(
        A,
        "m",
        &meeting("m", "old.example", "Old org sequence 1", 1),
    )
    .await;
    orgs.edit(
        B,
        "m",
        &meeting("m", "new.example", "New org sequence 4", 4),
    )
    .await;
    let r = orgs.sync();
    assert!(
        r["resolved"].to_string().contains("the newer version wins"),
        "{r}"
    );
    for side in [A, B] {
        assert_eq!(
            orgs.meetings(side).await["m"],
            ["New org sequence 4"],
            "side {side}"
        );
    }
    orgs.quiet();
    // And the other way round.
    orgs.edit(
        A,
        "m",
        &meeting("m", "old.example", "Old org sequence 9", 9),
    )
    .await;
    orgs.edit(
        B,
        "m",
        &meeting("m", "new.example", "New org sequence 5", 5),
    )
    .await;
    orgs.sync();
    for side in [A, B] {
        assert_eq!(
            orgs.meetings(side).await["m"],
            ["Old org sequence 9"],
            "side {side}"
        );
    }
    orgs.quiet();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_way_pair_cut_over_mirrors_the_new_mailbox_into_the_old() {
    let orgs = Orgs::new("");
    for n in 1..=3 {
        orgs.put(
            A,
            &format!("m{n}.ics"),
            &meeting(&format!("m{n}"), "old.example", &format!("M{n}"), 0),
        )
        .await;
    }
    let r = orgs.sync();
    assert_eq!(r["created"], 3, "{r}");
    // One way, before the switch: the new mailbox's own meetings stay there.
    orgs.put(
        B,
        "own.ics",
        &meeting("own", "new.example", "Booked after the switch", 0),
    )
    .await;
    orgs.quiet();
    assert!(!orgs.meetings(A).await.contains_key("own"));
    // An invitation the old mailbox got from a colleague not yet migrated.
    orgs.put(
        A,
        "invite.ics",
        &meeting("invite", "old.example", "From a colleague", 0),
    )
    .await;

    let (out, text) = orgs.run(&["cutover", "--pair", "alice"]);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("syncs target:"), "{text}");
    // Now the new mailbox is the truth: its meeting reaches the old one, an edit there wins,
    // and what the old side legitimately holds stays.
    orgs.edit(
        B,
        "m1",
        &meeting("m1", "new.example", "M1 moved in the new org", 1),
    )
    .await;
    orgs.edit(
        A,
        "m2",
        &meeting("m2", "old.example", "M2 edited in the old org", 1),
    )
    .await;
    orgs.remove(B, "m3").await;
    let r = orgs.sync();
    assert_eq!(r["failed"], 0, "{r}");
    let a = orgs.meetings(A).await;
    assert_eq!(a["own"], ["Booked after the switch"]);
    assert_eq!(a["m1"], ["M1 moved in the new org"]);
    assert_eq!(
        a["m2"],
        ["M2"],
        "the old side's edit is overwritten by the truth"
    );
    assert!(!a.contains_key("m3"), "deleted in the new mailbox: {a:?}");
    assert_eq!(
        a["invite"],
        ["From a colleague"],
        "the old side's own item is kept"
    );
    assert!(a.values().all(|s| s.len() == 1), "{a:?}");
    let b = orgs.meetings(B).await;
    assert!(
        !b.contains_key("invite"),
        "one way: nothing goes back to the new org"
    );
    let own = orgs.find(A, "own").await.2;
    assert_eq!(
        addresses_by_reference(std::slice::from_ref(&own))[0],
        addresses("old.example"),
        "{own}"
    );
    orgs.quiet();

    // Rolled back: the source is the truth again.
    let (out, text) = orgs.run(&["cutover", "--undo", "--pair", "alice"]);
    assert!(out.status.success(), "{text}");
    orgs.put(A, "m5.ics", &meeting("m5", "old.example", "M5", 0))
        .await;
    let r = orgs.sync();
    assert_eq!(r["failed"], 0, "{r}");
    let b = orgs.meetings(B).await;
    assert_eq!(b["m5"], ["M5"]);
    assert!(b.values().all(|s| s.len() == 1), "{b:?}");
    orgs.quiet();
}

/// Waits (bounded) until `side`'s meetings satisfy `ok`; returns them.
async fn settle(
    orgs: &Orgs,
    side: usize,
    run: &mut std::process::Child,
    what: &str,
    ok: impl Fn(&BTreeMap<String, Vec<String>>) -> bool,
) -> BTreeMap<String, Vec<String>> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    loop {
        let m = orgs.meetings(side).await;
        if ok(&m) {
            return m;
        }
        assert!(run.try_wait().unwrap().is_none(), "tandem run exited");
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: side {side} holds {m:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cutover_while_the_service_runs_flips_the_direction_and_loses_nothing() {
    let orgs = Orgs::new("[sync]\ninterval = \"1s\"\n");
    for n in 1..=3 {
        let uid = format!("m{n}");
        let body = meeting(&uid, "old.example", &format!("M{n}"), 0);
        orgs.put(A, &format!("{uid}.ics"), &body).await;
    }
    let mut run = common::spawn_run(&orgs.config);
    settle(&orgs, B, &mut run, "the first sync", |b| b.len() == 3).await;

    // The switch, while passes run: `cutover` takes both leases between two passes ("try
    // again", exit 3, while one holds them).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (out, text) = orgs.run(&["cutover", "--pair", "alice"]);
        if out.status.success() {
            break;
        }
        assert_eq!(out.status.code(), Some(3), "{text}");
        assert!(std::time::Instant::now() < deadline, "{text}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let status: Value = serde_json::from_slice(&orgs.run(&["status", "--json"]).0.stdout).unwrap();
    assert_eq!(status["pairs"][0]["authority"], "target", "{status}");

    // The new mailbox is the truth from now on.
    let booked = meeting("n1", "new.example", "Booked in the new org", 0);
    orgs.put(B, "n1.ics", &booked).await;
    let moved = meeting("m1", "new.example", "M1 moved in the new org", 1);
    orgs.edit(B, "m1", &moved).await;
    orgs.remove(B, "m3").await;
    let drift = meeting("m2", "old.example", "M2 edited in the old org", 1);
    orgs.edit(A, "m2", &drift).await;
    orgs.put(
        A,
        "invite.ics",
        &meeting("invite", "old.example", "From a colleague", 0),
    )
    .await;
    let a = settle(&orgs, A, &mut run, "the mirror of the new mailbox", |a| {
        a.get("n1").is_some_and(|s| s == &["Booked in the new org"])
            && a.get("m1")
                .is_some_and(|s| s == &["M1 moved in the new org"])
            && a.get("m2").is_some_and(|s| s == &["M2"])
            && !a.contains_key("m3")
    })
    .await;
    assert_eq!(
        a["invite"],
        ["From a colleague"],
        "the old side's own item stays"
    );
    let (status, log) = common::stop(&mut run);
    assert!(status.success(), "{status}: {log}");
    assert!(!log.contains(PASSWORD));

    let a = orgs.meetings(A).await;
    let b = orgs.meetings(B).await;
    for side in [&a, &b] {
        assert!(side.values().all(|s| s.len() == 1), "a duplicate: {side:?}");
    }
    let mut mirrored: Vec<&String> = a.keys().filter(|k| *k != "invite").collect();
    mirrored.sort();
    assert_eq!(
        mirrored,
        b.keys().collect::<Vec<_>>(),
        "nothing lost either way"
    );
    assert!(
        !b.contains_key("invite"),
        "one way: nothing goes back to the new org"
    );
    let n1 = orgs.find(A, "n1").await.2;
    assert_eq!(
        addresses_by_reference(std::slice::from_ref(&n1))[0],
        addresses("old.example"),
        "{n1}"
    );
    orgs.quiet();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_random_moments_a_two_way_pass_converges_without_duplicates() {
    const N: usize = 120;
    let orgs = Orgs::new("[sync]\ndirection = \"two-way\"\n");
    for n in 0..N {
        let (a, b) = (format!("a{n:03}"), format!("b{n:03}"));
        orgs.put(A, &format!("{a}.ics"), &meeting(&a, "old.example", &a, 0))
            .await;
        orgs.put(B, &format!("{b}.ics"), &meeting(&b, "new.example", &b, 0))
            .await;
    }
    let seed = fastrand::u64(..);
    let mut rng = fastrand::Rng::with_seed(seed);
    let count = async |side: usize| {
        orgs.stores[side]
            .list(&orgs.cals[side])
            .await
            .unwrap()
            .len()
    };
    // Kill the first pass (SIGKILL: no clean-up) three times while it writes both ways.
    for round in 0..3 {
        let mut child = common::dav::spawn_sync(&orgs.config);
        let start = count(A).await + count(B).await;
        let more = rng.usize(5..30);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while count(A).await + count(B).await < start + more {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "seed {seed} round {round}: no progress"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let _ = child.kill();
        child.wait().unwrap();
    }
    // Meanwhile some originals are deleted: copies a killed create left of them must go too.
    for n in [1usize, 2, 3] {
        orgs.remove(A, &format!("a{n:03}")).await;
        orgs.remove(B, &format!("b{n:03}")).await;
    }
    let r = orgs.sync();
    assert_eq!(r["failed"], 0, "seed {seed}: {r}");
    let want: Vec<String> = (0..N)
        .filter(|n| !(1..=3).contains(n))
        .flat_map(|n| [format!("a{n:03}"), format!("b{n:03}")])
        .collect();
    for side in [A, B] {
        let m = orgs.meetings(side).await;
        let dups: Vec<_> = m.iter().filter(|(_, s)| s.len() > 1).collect();
        assert!(
            dups.is_empty(),
            "seed {seed}: duplicates on side {side}: {dups:?}"
        );
        let mut have: Vec<String> = m.into_keys().collect();
        have.sort();
        let mut want = want.clone();
        want.sort();
        assert_eq!(have, want, "seed {seed}: side {side}");
    }
    orgs.quiet();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_on_either_side_is_reported_and_dedupe_settles_it() {
    let orgs = Orgs::new("[sync]\ndirection = \"two-way\"\n");
    orgs.put(A, "m.ics", &meeting("m", "old.example", "M", 0))
        .await;
    orgs.sync();
    // A second item of the synced meeting appears in the old calendar (under Exchange's GOID
    // spelling of its UID: a server holds one item per UID): not copied, reported.
    let goid = wrap_uid("m", None);
    orgs.put(A, "m-again.ics", &meeting(&goid, "old.example", "M", 1))
        .await;
    let (out, text) = orgs.run(&["sync"]);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(
        text.contains("m-again.ics") && text.contains("tandem dedupe"),
        "{text}"
    );
    assert_eq!(orgs.meetings(B).await["m"].len(), 1);
    let (out, text) = orgs.run(&["dedupe", "--pair", "alice", "--side", "source"]);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("1 duplicate group(s), 1 copy(ies) deleted"),
        "{text}"
    );
    assert_eq!(orgs.meetings(A).await["m"].len(), 1);
    orgs.quiet();
    // Repair works both ways on a two-way pair: a duplicate in the old calendar goes too.
    orgs.put(A, "m-again.ics", &meeting(&goid, "old.example", "M", 1))
        .await;
    let (out, text) = orgs.run(&["repair", "--pair", "alice"]);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("duplicate ")
            && text.contains("m-again.ics")
            && text.contains(": deleted (kept "),
        "{text}"
    );
    assert_eq!(orgs.meetings(A).await["m"].len(), 1);
    orgs.quiet();
    let (out, text) = orgs.run(&["resync", "--pair", "alice"]);
    assert!(out.status.success(), "{text}");
}

mod window_and_quarantine {
    //! The sync window and quarantine hold items on either side of a two-way pair (memory
    //! stores with incremental listings, a test clock).
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicI64, Ordering};
    use std::time::Duration;

    use chrono::DateTime;
    use tandem::domain::direction::Direction;
    use tandem::domain::item::{Item, Rewriter};
    use tandem::domain::pair::Pair;
    use tandem::domain::types::CalendarPath;
    use tandem::domain::window::Window;
    use tandem::engine::{Engine, PassOptions};
    use tandem::state::State;
    use tandem::store::CalendarStore;
    use tandem::store::memory::MemoryStore;

    const DAY: i64 = 86_400;
    /// 2026-11-21 12:00 UTC.
    const T0: i64 = 1_795_262_400;

    fn event(uid: &str, t: i64) -> String {
        let stamp = |t: i64| {
            DateTime::from_timestamp(t, 0)
                .unwrap()
                .format("%Y%m%dT%H%M%SZ")
                .to_string()
        };
        format!(
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VEVENT\r\nUID:{uid}\r\n\
             DTSTAMP:20260101T000000Z\r\nDTSTART:{}\r\nDTEND:{}\r\nSUMMARY:{uid}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
            stamp(t),
            stamp(t + 3600)
        )
    }

    fn uids(store: &MemoryStore, cal: &CalendarPath) -> Vec<String> {
        let mut v: Vec<String> = store
            .items(cal)
            .into_iter()
            .filter_map(|(_, text)| Item::parse(&text).ok().map(|i| i.uid().to_string()))
            .collect();
        v.sort();
        v
    }

    #[tokio::test]
    async fn items_wait_outside_the_window_and_in_quarantine_on_either_side() {
        let (a, b) = (Arc::new(MemoryStore::new()), Arc::new(MemoryStore::new()));
        let (acal, bcal): (CalendarPath, CalendarPath) = (
            "/old/alice/".parse().unwrap(),
            "/new/alice/".parse().unwrap(),
        );
        a.add_calendar(&acal);
        b.add_calendar(&bcal);
        a.put(&acal, "near-a.ics", &event("near-a", T0 + 5 * DAY));
        a.put(&acal, "far-a.ics", &event("far-a", T0 + 100 * DAY));
        b.put(&bcal, "near-b.ics", &event("near-b", T0 + DAY));
        b.put(&bcal, "far-b.ics", &event("far-b", T0 + 90 * DAY));
        let broken = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nSUMMARY:no uid\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
        let bad = b.put(&bcal, "bad-b.ics", broken);

        let dir = tempfile::tempdir().unwrap();
        let state = State::open(&dir.path().join("state.db")).await.unwrap();
        let now = Arc::new(AtomicI64::new(T0));
        let clock = now.clone();
        let stores: BTreeMap<String, Arc<dyn CalendarStore>> = [
            ("a".to_string(), a.clone() as _),
            ("b".to_string(), b.clone() as _),
        ]
        .into();
        let engine = Engine::with_stores(state, stores, Rewriter::default())
            .with_window(Window {
                past: Some(Duration::from_secs(30 * 86_400)),
                future: Some(Duration::from_secs(60 * 86_400)),
            })
            .with_clock(Arc::new(move || {
                DateTime::from_timestamp(clock.load(Ordering::SeqCst), 0).unwrap()
            }));
        let pair = Pair {
            direction: Direction::TwoWay,
            ..Pair::new(
                "p".parse().unwrap(),
                format!("a:{acal}").parse().unwrap(),
                format!("b:{bcal}").parse().unwrap(),
            )
        };
        let pass = async || {
            engine
                .sync_pair(&pair, PassOptions::default())
                .await
                .unwrap()
        };

        // Inside the window each way; the far items wait, the broken one fails.
        let r = pass().await;
        assert_eq!((r.created, r.outside_window, r.failed), (2, 2, 1), "{r:?}");
        assert_eq!(uids(&a, &acal), ["far-a", "near-a", "near-b"]);
        assert_eq!(uids(&b, &bcal), ["far-b", "near-a", "near-b"]);
        // The broken item fails twice more, then is quarantined: the pair is ok again.
        for n in 2..=3 {
            let r = pass().await;
            assert_eq!((r.created, r.failed), (0, 1), "pass {n}: {r:?}");
        }
        let r = pass().await;
        assert!(r.ok(), "{r:?}");
        assert_eq!((r.created, r.quarantined), (0, 1), "{r:?}");
        assert_eq!(
            engine.state.quarantine_rows(&pair.id).await.unwrap().len(),
            1
        );

        // 45 days on, both far items are inside: each reaches the other side, though no
        // listing mentions them again.
        now.store(T0 + 45 * DAY, Ordering::SeqCst);
        let r = pass().await;
        assert_eq!((r.created, r.failed), (2, 0), "{r:?}");
        assert_eq!(uids(&a, &acal), ["far-a", "far-b", "near-a", "near-b"]);
        assert_eq!(uids(&b, &bcal), ["far-a", "far-b", "near-a", "near-b"]);
        let r = pass().await;
        assert_eq!((r.created, r.updated, r.outside_window), (0, 0, 0), "{r:?}");

        // The broken item fixed where it is: it leaves quarantine and reaches the old side.
        assert!(b.remove(&bad));
        b.put(&bcal, "bad-b.ics", &event("fixed-b", T0 + 50 * DAY));
        let r = pass().await;
        assert_eq!((r.created, r.failed), (1, 0), "{r:?}");
        assert!(uids(&a, &acal).contains(&"fixed-b".to_string()));
        assert!(
            engine
                .state
                .quarantine_rows(&pair.id)
                .await
                .unwrap()
                .is_empty()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pair_turned_two_way_copies_what_the_new_mailbox_already_held() {
    let orgs = Orgs::new("");
    orgs.put(A, "m.ics", &meeting("m", "old.example", "M", 0))
        .await;
    orgs.sync();
    // Booked in the new mailbox while the pair was one-way: not copied, and not listed again.
    orgs.put(B, "own.ics", &meeting("own", "new.example", "Own", 0))
        .await;
    orgs.quiet();
    orgs.quiet();
    assert!(!orgs.meetings(A).await.contains_key("own"));
    // The pair becomes two-way (the last [[pairs]] block is this pair's).
    let mut config = std::fs::read_to_string(&orgs.config).unwrap();
    config.push_str("direction = \"two-way\"\n");
    std::fs::write(&orgs.config, config).unwrap();
    let r = orgs.sync();
    assert_eq!(
        (r["created"].as_u64(), r["failed"].as_u64()),
        (Some(1), Some(0)),
        "{r}"
    );
    assert_eq!(orgs.meetings(A).await["own"], ["Own"]);
    assert_eq!(orgs.meetings(B).await["m"], ["M"]);
    orgs.quiet();
}
