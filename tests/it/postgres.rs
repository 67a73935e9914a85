//! The state in PostgreSQL, through the binary: `[state] url = "postgres://…"` with the password
//! from `password_file`, a sync and its status read back from the database, a second process
//! seeing the same state, and a wrong password or an unreachable database refused with a clear
//! error that never shows the password.

use crate::common;

use common::pg::{self, PASSWORD};
use common::{Setup, event, text};

/// A vdir set-up whose state is a fresh PostgreSQL database.
fn on_postgres(users: &[&str], password_file: &std::path::Path) -> (Setup, String) {
    let s = Setup::new(users);
    let url = pg::shared().database();
    let toml = std::fs::read_to_string(&s.config).unwrap().replace(
        "url = \"sqlite://state/tandem.db\"",
        &format!(
            "url = \"{url}\"\npassword_file = \"{}\"",
            password_file.display()
        ),
    );
    std::fs::write(&s.config, toml).unwrap();
    (s, url)
}

#[test]
fn a_sync_keeps_its_state_in_postgresql() {
    let pg = pg::shared();
    let (s, url) = on_postgres(&["alice", "bob"], &pg.password_file());
    s.put(
        "alice",
        "a.ics",
        &event("a", "One", Some("jane@old.example")),
    );
    s.put("bob", "b.ics", &event("b", "Two", None));

    let check = s.run(&["check"]);
    assert!(check.status.success(), "{}", text(&check));
    assert!(text(&check).contains(&url), "{}", text(&check));

    let sync = s.run(&["sync"]);
    assert_eq!(sync.status.code(), Some(0), "{}", text(&sync));
    assert!(
        !s.dir.path().join("state").exists(),
        "no SQLite file was made"
    );
    let database = url.rsplit('/').next().unwrap();
    assert_eq!(pg.sql(database, "SELECT COUNT(*) FROM mappings"), "2");

    // Another process (as on another node) reads the same state: nothing left to do.
    let again = s.run(&["sync", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(v["created"], 0, "{v}");
    let status = s.run(&["status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(v["pairs"].as_array().unwrap().len(), 2, "{v}");
    for out in [&check, &sync, &again, &status] {
        assert!(!text(out).contains(PASSWORD), "the password leaked");
    }
}

#[test]
fn a_wrong_password_or_a_missing_database_is_a_clear_fatal_error() {
    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("wrong");
    std::fs::write(&wrong, "not-the-password\n").unwrap();
    let (s, url) = on_postgres(&["alice"], &wrong);
    let out = s.run(&["sync"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains(&url) && t.contains("password"), "{t}");
    assert!(!t.contains("not-the-password"), "the password leaked: {t}");

    let pg = pg::shared();
    let (s, _) = on_postgres(&["alice"], &pg.password_file());
    let gone = pg.url("no_such_database");
    let toml = std::fs::read_to_string(&s.config).unwrap();
    let toml = toml.replace(
        &toml[toml.find("postgres://").unwrap()..]
            .split('"')
            .next()
            .unwrap()
            .to_string(),
        &gone,
    );
    std::fs::write(&s.config, toml).unwrap();
    let out = s.run(&["sync"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("no_such_database"), "{t}");
    assert!(!t.contains(PASSWORD), "the password leaked: {t}");
}
