//! Every server's promises, not Radicale's: what SOGo, DAViCal and Xandikos do differently
//! (tokens that leave out items, a CTag counting seconds, preconditions ignored, scheduling of
//! their own) costs no change, overwrites nothing and sends no invitation.

use std::path::Path;

use serde_json::Value;
use tandem::domain::item::Item;
use tandem::domain::types::CalendarPath;
use tandem::store::CalendarStore;

use crate::common::dav::{self, DavServer, Kind};
use crate::common::{self, json};

/// `tandem sync --json`, which must succeed: its summary.
fn sync_ok(config: &Path) -> Value {
    let out = common::tandem(config, &["sync", "--json"]);
    assert!(
        out.status.success(),
        "sync failed ({}):\n{}",
        out.status,
        common::text(&out)
    );
    json(&out)
}

/// Deletes one copy on the target (a Xandikos) and passes three times.
async fn delete_one_copy_then_pass(p: &dav::SeededPair) {
    let tgt = p.target.store();
    let copies = tgt.list(&p.tcal).await.unwrap();
    assert_eq!(copies.len(), 12);
    tgt.delete(&copies[0].href, &copies[0].etag).await.unwrap();
    for _ in 0..3 {
        sync_ok(&p.config);
    }
}

#[tokio::test]
async fn a_copy_deleted_on_xandikos_is_deleted_in_the_source_two_way() {
    let p = dav::seeded_pair_on(
        Kind::Radicale,
        Kind::Xandikos,
        12,
        "[sync]\ndirection = \"two-way\"\n",
    )
    .await;
    sync_ok(&p.config);
    delete_one_copy_then_pass(&p).await;
    let left = p.source.store().list(&p.scal).await.unwrap();
    assert_eq!(left.len(), 11, "the delete reached the source");
    assert_eq!(p.target.store().list(&p.tcal).await.unwrap().len(), 11);
}

#[tokio::test]
async fn a_copy_deleted_on_xandikos_is_restored_one_way() {
    let p = dav::seeded_pair_on(Kind::Radicale, Kind::Xandikos, 12, "").await;
    sync_ok(&p.config);
    delete_one_copy_then_pass(&p).await;
    let copies = p.target.store().list(&p.tcal).await.unwrap();
    assert_eq!(copies.len(), 12, "the deleted copy was written again");
}

/// After a pass that wrote, the next one finds nothing to do and reads nothing: it makes the
/// requests a quiet pass makes.
#[tokio::test]
async fn the_pass_after_a_writing_pass_is_quiet() {
    for kind in [Kind::Radicale, Kind::Xandikos] {
        let p = dav::seeded_pair_on(Kind::Radicale, kind, 30, "").await;
        let first = sync_ok(&p.config);
        assert_eq!(common::pair_report(&first, "alice")["created"], 30);
        let quiet = |v: &Value| {
            let r = common::pair_report(v, "alice");
            (
                r["requests"].as_u64().unwrap(),
                r["unchanged"].as_u64().unwrap(),
            )
        };
        // The pass after the first sync, as the pass after any writing pass.
        let after_first = quiet(&sync_ok(&p.config));
        let quiet_one = quiet(&sync_ok(&p.config));
        assert_eq!(
            after_first, quiet_one,
            "{kind:?}: the pass after the first sync cost more than a quiet one"
        );
        let src = p.source.store();
        for i in 30..40 {
            let (name, body) = common::items::item(i, 0);
            src.create(&p.scal, &format!("{name}.ics"), &body)
                .await
                .unwrap();
        }
        let wrote = sync_ok(&p.config);
        assert_eq!(common::pair_report(&wrote, "alice")["created"], 10);
        let after = quiet(&sync_ok(&p.config));
        let later = quiet(&sync_ok(&p.config));
        assert_eq!(
            after, later,
            "{kind:?}: the pass after writing cost more than a quiet one"
        );
    }
}

/// Edits an item on `store` at once after each pass, ten times: every edit reaches the target
/// by the next pass (SOGo's CTag counts seconds: an edit in the second of a pass's own
/// listing left it unchanged).
#[tokio::test]
async fn an_edit_right_after_a_pass_on_sogo_is_not_lost() {
    let p = dav::seeded_pair_on(Kind::Sogo, Kind::Radicale, 4, "").await;
    sync_ok(&p.config);
    let src = p.source.store();
    let tgt = p.target.store();
    let href = src.list(&p.scal).await.unwrap()[0].href.clone();
    for round in 0..10 {
        let now = read(&*src, &p.scal, &href).await;
        let edited = now
            .1
            .replacen("SUMMARY:", &format!("SUMMARY:round {round} "), 1);
        src.update(&href, &now.0, &edited).await.unwrap();
        sync_ok(&p.config);
        sync_ok(&p.config);
        let copies = dav::read_all(&*tgt, &p.tcal).await;
        assert!(
            copies
                .iter()
                .any(|(_, t)| t.contains(&format!("SUMMARY:round {round} "))),
            "round {round}: the edit did not reach the target"
        );
    }
}

/// SOGo gives an item deleted and made again at its name the ETag the old one had: the new
/// item still reaches the target.
#[tokio::test]
async fn an_item_made_again_on_sogo_at_its_old_etag_reaches_the_target() {
    let p = dav::seeded_pair_on(Kind::Sogo, Kind::Radicale, 4, "").await;
    sync_ok(&p.config);
    let src = p.source.store();
    let href = src.list(&p.scal).await.unwrap()[0].href.clone();
    let (etag, text) = read(&*src, &p.scal, &href).await;
    src.delete(&href, &etag).await.unwrap();
    let again = text.replacen("SUMMARY:", "SUMMARY:made again ", 1);
    src.create(&p.scal, href.file_name(), &again).await.unwrap();
    assert_eq!(
        read(&*src, &p.scal, &href).await.0,
        etag,
        "SOGo gives the new item the old one's ETag"
    );
    sync_ok(&p.config);
    let copies = dav::read_all(&*p.target.store(), &p.tcal).await;
    assert!(
        copies
            .iter()
            .any(|(_, t)| t.contains("SUMMARY:made again ")),
        "the item made again did not reach the target"
    );
}

async fn read(
    store: &dyn CalendarStore,
    cal: &CalendarPath,
    href: &tandem::domain::types::Href,
) -> (tandem::domain::types::Etag, String) {
    let got = store.fetch(cal, std::slice::from_ref(href)).await.unwrap();
    let r = got.into_iter().next().unwrap().1.unwrap();
    (r.etag, r.data)
}

/// A meeting `n` organized by `org` with `attendees`, in the future (servers schedule only
/// those); `own` is the copy in the organizer's calendar, else an attendee's.
fn meeting(server: &DavServer, n: usize, org: &str, attendees: &[&str], summary: &str) -> String {
    let mut s = format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VEVENT\r\nUID:meeting-{n}@example.org\r\n\
         DTSTAMP:20261201T000000Z\r\nDTSTART:202705{:02}T100000Z\r\nDTEND:202705{:02}T110000Z\r\n\
         SUMMARY:{summary}\r\nORGANIZER;CN={org}:mailto:{}\r\n",
        1 + n % 28,
        1 + n % 28,
        server.address(org)
    );
    for a in attendees {
        s.push_str(&format!(
            "ATTENDEE;CN={a};PARTSTAT=ACCEPTED:mailto:{}\r\n",
            server.address(a)
        ));
    }
    s.push_str("END:VEVENT\r\nEND:VCALENDAR\r\n");
    s
}

const USERS: [&str; 4] = ["u0", "u1", "u2", "u3"];

/// Four users of one org, each organizing two meetings with the other three, whose calendars
/// (on a Radicale) hold their own meetings and their copies of the others'; pairs to `target`.
async fn org_of_four(target: &DavServer) -> (DavServer, tempfile::TempDir, std::path::PathBuf) {
    let source = DavServer::radicale();
    let src = source.store();
    let mut pairs = String::new();
    for (i, u) in USERS.iter().enumerate() {
        let scal: CalendarPath = source.make_calendar(u, "calendar").parse().unwrap();
        let tcal = target.make_calendar(u, target.default_calendar());
        for (j, org) in USERS.iter().enumerate() {
            let others: Vec<&str> = USERS.iter().copied().filter(|x| x != org).collect();
            for k in 0..2 {
                let n = j * 2 + k;
                let body = meeting(target, n, org, &others, &format!("Meeting {n}"));
                src.create(&scal, &format!("meeting-{n}.ics"), &body)
                    .await
                    .unwrap();
            }
        }
        let (name, body) = common::items::item(100 + i, 0);
        src.create(&scal, &format!("{name}.ics"), &body)
            .await
            .unwrap();
        pairs.push_str(&format!(
            "[[pairs]]\nid = \"{u}\"\nsource = \"source:{}\"\ntarget = \"target:{tcal}\"\n",
            scal.as_str()
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, format!("{}\n", dav::PASSWORD)).unwrap();
    let config = dir.path().join("tandem.toml");
    std::fs::write(
        &config,
        format!(
            "[state]\nurl = \"sqlite://{}\"\n\n{}\n{}\n{pairs}",
            dir.path().join("state.db").display(),
            source.config_section("source", &pw),
            target.config_section("target", &pw),
        ),
    )
    .unwrap();
    (source, dir, config)
}

/// No pair of `summary` wrote anything.
fn assert_nothing_written(summary: &Value) {
    for u in USERS {
        let r = common::pair_report(summary, u);
        let wrote: Vec<_> = ["created", "updated", "deleted"]
            .iter()
            .map(|k| r[k].as_u64())
            .collect();
        assert_eq!(wrote, [Some(0); 3], "{u}: {r}");
    }
}

/// Each user's target calendar: one copy of each of the nine items, by UID.
async fn assert_one_copy_each(target: &DavServer) {
    let store = target.store();
    for u in USERS {
        let cal: CalendarPath = target
            .calendar_path(u, target.default_calendar())
            .parse()
            .unwrap();
        let items = dav::read_all(&*store, &cal).await;
        let mut uids: Vec<String> = items
            .iter()
            .map(|(_, t)| Item::parse(t).unwrap().uid().to_string())
            .collect();
        uids.sort();
        let n = uids.len();
        uids.dedup();
        assert_eq!((n, uids.len()), (9, 9), "{u}: {uids:?}");
    }
}

#[tokio::test]
async fn meetings_of_one_org_land_on_sogo_without_a_failure_a_duplicate_or_a_mail() {
    let target = DavServer::sogo();
    let (_source, _dir, config) = org_of_four(&target).await;
    let first = sync_ok(&config);
    let mut writes = 0;
    for u in USERS {
        let r = common::pair_report(&first, u);
        assert_eq!(r["failed"], 0, "{u}: {r}");
        writes += ["created", "updated", "adopted"]
            .iter()
            .map(|k| r[k].as_u64().unwrap())
            .sum::<u64>();
    }
    assert_eq!(writes, 36, "every item written or taken over once: {first}");
    assert_one_copy_each(&target).await;
    let mail = target
        .groupware
        .as_ref()
        .unwrap()
        .mail
        .lock()
        .unwrap()
        .clone();
    assert!(mail.is_empty(), "SOGo sent mail: {mail:?}");
    // The next pass finds everything in step.
    let again = sync_ok(&config);
    assert_nothing_written(&again);
    assert_mail_is_captured(&target).await;
}

/// The capture does see SOGo's mail: a meeting written without `SCHEDULE-AGENT=CLIENT`
/// invites its attendees.
async fn assert_mail_is_captured(sogo: &DavServer) {
    let cal: CalendarPath = sogo.calendar_path("u0", "personal").parse().unwrap();
    let body = meeting(sogo, 99, "u0", &["u1"], "Direct");
    sogo.store()
        .create(&cal, "direct.ics", &body)
        .await
        .unwrap();
    let mail = sogo.groupware.as_ref().unwrap().mail.clone();
    common::wait_until("SOGo's invitation mail", 30, || {
        !mail.lock().unwrap().is_empty()
    });
}

/// DAViCal schedules a REPLY whenever an attendee's copy of a meeting whose organizer's copy
/// it holds is written, whatever the copy says: tandem says so before its first write, and
/// the meetings still land once each, in step by the next pass.
#[tokio::test]
async fn meetings_of_one_org_land_on_davical_and_its_replies_are_announced() {
    let target = DavServer::davical();
    let (_source, _dir, config) = org_of_four(&target).await;
    let check = common::tandem(&config, &["check", "--connect"]);
    let said = common::text(&check);
    assert!(check.status.success(), "{said}");
    assert!(
        said.contains("8 of 8 calendar(s) reached")
            && said.contains("server target (")
            && said.contains("DAViCal")
            && said.contains("WARNING: "),
        "{said}"
    );
    let out = common::tandem(&config, &["sync", "--json"]);
    let text = common::text(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("DAViCal delivers a reply"),
        "no word of DAViCal's replies:\n{text}"
    );
    let first = json(&out);
    for u in USERS {
        assert_eq!(common::pair_report(&first, u)["failed"], 0, "{first}");
    }
    assert_one_copy_each(&target).await;
    // What it warned of: replies in the organizers' scheduling inboxes.
    let mut replies = 0;
    for u in USERS {
        let inbox: CalendarPath = format!("/caldav.php/{u}/.in/").parse().unwrap();
        replies += target.store().list(&inbox).await.unwrap().len();
    }
    eprintln!("DAViCal delivered {replies} replies to the organizers' inboxes");
    assert!(replies > 0, "the warning is no longer true: no replies");
    sync_ok(&config);
    let settled = sync_ok(&config);
    assert_nothing_written(&settled);
    assert_one_copy_each(&target).await;
}

/// Two-way between the groupware servers, DAViCal the old org and SOGo the new: changes on
/// either side reach the other, before and after the cutover, and nothing is duplicated.
#[tokio::test]
async fn two_way_davical_and_sogo_with_a_cutover() {
    let p = dav::seeded_pair_on(
        Kind::Davical,
        Kind::Sogo,
        8,
        "[sync]\ndirection = \"two-way\"\n",
    )
    .await;
    let (old, new) = (p.source.store(), p.target.store());
    sync_ok(&p.config);
    assert_eq!(new.list(&p.tcal).await.unwrap().len(), 8);
    // An edit in the new org, a delete in the old.
    // (Different items: a delete loses to an edit of the same item.)
    let (first_uid, _) = common::items::item(0, 0);
    let (second_uid, _) = common::items::item(1, 0);
    let copies = dav::read_all(&*new, &p.tcal).await;
    let (href, text) = copies
        .iter()
        .find(|(_, t)| t.contains(&format!("UID:{first_uid}")))
        .unwrap();
    let etag = new
        .list(&p.tcal)
        .await
        .unwrap()
        .into_iter()
        .find(|v| &v.href == href)
        .unwrap()
        .etag;
    let edited = text.replacen("SUMMARY:", "SUMMARY:edited in SOGo ", 1);
    new.update(href, &etag, &edited).await.unwrap();
    let gone = old
        .list(&p.scal)
        .await
        .unwrap()
        .into_iter()
        .find(|v| v.href.file_name().contains(&second_uid))
        .unwrap();
    old.delete(&gone.href, &gone.etag).await.unwrap();
    sync_ok(&p.config);
    let olds = dav::read_all(&*old, &p.scal).await;
    assert_eq!(olds.len(), 7);
    assert!(
        olds.iter()
            .any(|(_, t)| t.contains("SUMMARY:edited in SOGo "))
    );
    dav::assert_one_copy_each(&*new, &p.tcal, 7).await;
    // Cut over: the new org is the authority; an edit there still reaches the old.
    let out = common::tandem(&p.config, &["cutover", "--pair", "alice"]);
    assert!(out.status.success(), "{}", common::text(&out));
    let v = new.list(&p.tcal).await.unwrap().into_iter().next().unwrap();
    let (_, t) = read(&*new, &p.tcal, &v.href).await;
    new.update(
        &v.href,
        &v.etag,
        &t.replacen("SUMMARY:", "SUMMARY:after cutover ", 1),
    )
    .await
    .unwrap();
    sync_ok(&p.config);
    let olds = dav::read_all(&*old, &p.scal).await;
    assert!(
        olds.iter()
            .any(|(_, t)| t.contains("SUMMARY:after cutover "))
    );
    dav::assert_one_copy_each(&*old, &p.scal, 7).await;
}

/// The service between the groupware servers, DAViCal to SOGo: the first passes copy every
/// calendar, and a change made while it runs arrives by a later pass.
#[tokio::test]
async fn the_service_from_davical_to_sogo() {
    let p = dav::seeded_pair_on(Kind::Davical, Kind::Sogo, 6, "[sync]\ninterval = \"1s\"\n").await;
    let (old, new) = (p.source.store(), p.target.store());
    let mut run = common::spawn_run(&p.config);
    dav::wait_for_items(&*new, &p.tcal, 6, &mut run).await;
    old.create(
        &p.scal,
        "later.ics",
        &common::event("later@old.example", "Made while running", None),
    )
    .await
    .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let copies = dav::read_all(&*new, &p.tcal).await;
        if copies.iter().any(|(_, t)| t.contains("Made while running")) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the change did not arrive within 60 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    dav::assert_one_copy_each(&*new, &p.tcal, 7).await;
    let _ = run.kill();
    let _ = run.wait();
}
