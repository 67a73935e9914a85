//! Adopt, never duplicate: copies of a meeting already in the target (a repair assistant's, one
//! under Exchange's GOID spelling of the UID, one with the organizer already in the new org) are
//! taken over, on real Radicale servers.

use crate::common;

use common::dav::{DavServer, PASSWORD};
use tandem::domain::identity::wrap_uid;
use tandem::domain::item::{Item, Rewriter};
use tandem::domain::types::CalendarPath;
use tandem::store::CalendarStore;

const GOOGLE_UID: &str = "qa87q2t552detf773508pdrchc@google.com";

fn meeting(uid: &str, organizer: &str, summary: &str) -> String {
    format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VEVENT\r\nUID:{uid}\r\nDTSTAMP:20260101T000000Z\r\n\
         DTSTART:20261201T100000Z\r\nDTEND:20261201T110000Z\r\nSUMMARY:{summary}\r\n\
         ORGANIZER;CN=\"Doe, Jane\":mailto:jane@{organizer}\r\nATTENDEE;PARTSTAT=ACCEPTED:mailto:bob@{organizer}\r\n\
         END:VEVENT\r\nEND:VCALENDAR\r\n"
    )
}

fn sync(config: &std::path::Path) -> serde_json::Value {
    let out = common::tandem(config, &["sync", "--json"]);
    let text = common::text(&out);
    assert!(out.status.success(), "{text}");
    assert!(!text.contains(PASSWORD));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[tokio::test]
async fn existing_copies_of_a_meeting_are_adopted_not_duplicated() {
    let source = DavServer::radicale();
    let target = DavServer::radicale();
    let scal: CalendarPath = source.make_calendar("alice", "calendar").parse().unwrap();
    let tcal: CalendarPath = target.make_calendar("alice", "calendar").parse().unwrap();
    let (src, tgt) = (source.store(), target.store());

    // Source: a Google meeting, a plain meeting, and one with no copy anywhere yet.
    src.create(
        &scal,
        "google.ics",
        &meeting(GOOGLE_UID, "old.example", "Roadmap"),
    )
    .await
    .unwrap();
    src.create(
        &scal,
        "plain.ics",
        &meeting("plain-1@old.example", "old.example", "Budget"),
    )
    .await
    .unwrap();
    src.create(
        &scal,
        "new.ics",
        &meeting("new-1@old.example", "old.example", "Hiring"),
    )
    .await
    .unwrap();
    // Target: Exchange's repair assistant made the Google meeting under its GOID spelling (for one
    // instance date), stale; and the plain one under another name, organizer already moved.
    let goid = wrap_uid(GOOGLE_UID, Some((2026, 12, 1)));
    tgt.create(
        &tcal,
        "CRA-0001.ics",
        &meeting(&goid, "new.example", "Roadmap (old title)"),
    )
    .await
    .unwrap();
    tgt.create(
        &tcal,
        "by-hand.ics",
        &meeting("plain-1@old.example", "new.example", "Budget"),
    )
    .await
    .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let config = common::dav::pair_config(
        dir.path(),
        &source,
        &target,
        scal.as_str(),
        tcal.as_str(),
        "[rewrite]\ndomains = { \"old.example\" = \"new.example\" }",
    );

    let first = sync(&config);
    assert_eq!(
        (
            first["created"].as_u64(),
            first["adopted"].as_u64(),
            first["failed"].as_u64()
        ),
        (Some(1), Some(2), Some(0)),
        "{first}"
    );

    // Exactly one copy of each meeting, each equal to the rewritten source; spellings kept.
    let listed = tgt.list(&tcal).await.unwrap();
    assert_eq!(listed.len(), 3, "{listed:?}");
    let hrefs: Vec<_> = listed.iter().map(|v| v.href.clone()).collect();
    let rw = Rewriter::new(
        [("old.example".to_string(), "new.example".to_string())],
        Vec::new(),
    );
    let mut by_identity = std::collections::BTreeMap::new();
    for (href, got) in tgt.fetch(&tcal, &hrefs).await.unwrap() {
        let item = Item::parse(&got.unwrap().data).unwrap();
        assert!(
            by_identity
                .insert(item.identity(), (href.file_name().to_string(), item))
                .is_none(),
            "duplicate"
        );
    }
    let srcs: Vec<_> = src
        .list(&scal)
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.href)
        .collect();
    for (_, got) in src.fetch(&scal, &srcs).await.unwrap() {
        let mut want = Item::parse(&got.unwrap().data).unwrap();
        want.rewrite(&rw);
        let (name, have) = &by_identity[&want.identity()];
        assert_eq!(
            have.content_hash(),
            want.content_hash(),
            "{name} differs from its source"
        );
        match want.uid() {
            GOOGLE_UID => {
                assert_eq!(name, "CRA-0001.ics");
                assert_eq!(have.uid(), goid, "the adopted copy keeps its GOID spelling");
                assert_eq!(
                    have.summary(),
                    Some("Roadmap"),
                    "the stale copy was updated"
                );
            }
            "plain-1@old.example" => assert_eq!(name, "by-hand.ics"),
            _ => {}
        }
    }

    // The identities read are remembered: the next pass reads nothing and changes nothing. It
    // asks the target for its CTag only: the first pass's watermark moved past its own writes.
    let second = sync(&config);
    for what in ["created", "updated", "deleted", "adopted", "failed"] {
        assert_eq!(second[what].as_u64(), Some(0), "{what}: {second}");
    }
    assert_eq!(
        second["servers"]["target"]["requests"].as_u64(),
        Some(1),
        "{second}"
    );
}

#[tokio::test]
async fn tandem_killed_mid_pass_is_followed_by_a_pass_that_adopts_without_duplicates() {
    const N: usize = 200;
    let source = DavServer::radicale();
    let target = DavServer::radicale();
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
    let config = common::dav::pair_config(
        dir.path(),
        &source,
        &target,
        scal.as_str(),
        tcal.as_str(),
        "",
    );

    // Kill tandem (SIGKILL: no clean-up) while it is creating copies.
    let mut child = common::dav::spawn_sync(&config);
    let tgt = target.store();
    common::dav::wait_for_items(&*tgt, &tcal, N / 3, &mut child).await;
    child.kill().unwrap();
    child.wait().unwrap();
    let landed = tgt.list(&tcal).await.unwrap().len();
    assert!(landed < N, "killed too late to mean anything");

    let config2 = config.clone();
    let v = tokio::task::spawn_blocking(move || sync(&config2))
        .await
        .unwrap();
    assert_eq!(v["failed"].as_u64(), Some(0), "{v}");
    // Copies that landed are recognised, not created again (a write in flight at the kill may
    // still have landed after the count: at most max_concurrency of them).
    let created = v["created"].as_u64().unwrap() as usize;
    assert!(
        created <= N - landed && created + 4 >= N - landed,
        "landed {landed}: {v}"
    );
    common::dav::assert_one_copy_each(&*tgt, &tcal, N).await;
    let v = tokio::task::spawn_blocking(move || sync(&config))
        .await
        .unwrap();
    assert_eq!(
        (v["created"].as_u64(), v["adopted"].as_u64()),
        (Some(0), Some(0)),
        "{v}"
    );
}
