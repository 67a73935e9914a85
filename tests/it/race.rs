//! Sync and repair started at the same moment, as separate processes, on the same pairs: the
//! leases let exactly one write each calendar, so 20 rounds on fresh target calendars end with no
//! duplicate and nothing missing, and every round says who was skipped.

use crate::common;

use std::process::{Command, Stdio};

use common::dav::{self, DavServer, PASSWORD};
use tandem::domain::types::CalendarPath;
use tandem::store::CalendarStore;

const USERS: [&str; 2] = ["alice", "bob"];
const ITEMS: usize = 40;

fn start(config: &std::path::Path, args: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_tandem"))
        .arg("-c")
        .arg(config)
        .args(args)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tandem")
}

#[tokio::test]
async fn sync_and_repair_racing_never_duplicate_or_lose_an_item() {
    let source = DavServer::radicale();
    let target = DavServer::radicale();
    let src = source.store();
    let mut scals = Vec::new();
    for (u, user) in USERS.iter().enumerate() {
        let scal: CalendarPath = source.make_calendar(user, "calendar").parse().unwrap();
        for i in 0..ITEMS {
            let (name, body) = common::items::item(u * 1000 + i, 0);
            src.create(&scal, &name, &body).await.unwrap();
        }
        scals.push(scal);
    }
    let tgt = target.store();
    let mut skipped_by = [0usize; 2];
    for round in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("pw");
        std::fs::write(&pw, format!("{PASSWORD}\n")).unwrap();
        let mut toml = format!(
            "[state]\nurl = \"sqlite://{}\"\n\n{}\n{}\n",
            dir.path().join("state.db").display(),
            source.config_section("source", &pw),
            target.config_section("target", &pw)
        );
        let mut tcals = Vec::new();
        for (user, scal) in USERS.iter().zip(&scals) {
            // Fresh, empty target calendars: every item is missing.
            let tcal: CalendarPath = target
                .make_calendar(user, &format!("round{round}"))
                .parse()
                .unwrap();
            toml.push_str(&format!("\n[[pairs]]\nid = \"{user}\"\nsource = \"source:{scal}\"\ntarget = \"target:{tcal}\"\n"));
            tcals.push(tcal);
        }
        let config = dir.path().join("tandem.toml");
        std::fs::write(&config, toml).unwrap();

        let sync = start(&config, &["sync"]);
        let repair = start(&config, &["repair"]);
        let (sync, repair) = (
            sync.wait_with_output().unwrap(),
            repair.wait_with_output().unwrap(),
        );
        let (sync_text, repair_text) = (common::text(&sync), common::text(&repair));
        for tcal in &tcals {
            dav::assert_one_copy_each(&*tgt, tcal, ITEMS).await;
        }
        // Whoever lost a calendar's lease says so and leaves it to the other.
        let sync_skipped = sync_text.contains("locked by") && sync_text.contains("(repair)");
        let repair_skipped = repair_text.contains("not repaired") && repair_text.contains("(sync)");
        assert!(
            sync_skipped || repair_skipped,
            "round {round}: neither was skipped\n--- sync:\n{sync_text}\n--- repair:\n{repair_text}"
        );
        skipped_by[0] += usize::from(sync_skipped);
        skipped_by[1] += usize::from(repair_skipped);
        // A skip is exit 3; otherwise both finish cleanly.
        assert_eq!(
            sync.status.code(),
            Some(if sync_skipped { 3 } else { 0 }),
            "round {round}: {sync_text}"
        );
        assert_eq!(
            repair.status.code(),
            Some(if repair_skipped { 3 } else { 0 }),
            "round {round}: {repair_text}"
        );
        assert!(!sync_text.contains(PASSWORD) && !repair_text.contains(PASSWORD));
    }
    println!(
        "20 rounds: sync skipped a pair in {} rounds, repair in {}",
        skipped_by[0], skipped_by[1]
    );
}
