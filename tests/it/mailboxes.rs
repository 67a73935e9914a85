//! Mailbox pairs: a user's calendars found on both sides and paired, what the target lacks
//! made there, renames and colours carried over, a calendar added later found, a calendar gone
//! from the source said and left alone, a refused create failing only its calendar; and
//! `discover` printing what `sync` then does.

use crate::common;

use std::fs;
use std::path::{Path, PathBuf};

use common::dav::{DavServer, Kind, dav_request};
use serde_json::Value;
use tandem::store::CalendarStore;

/// `old/alice/` and `new/alice/` as vdir homes, and a config with mailbox `alice`.
struct Homes {
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Homes {
    fn new(extra: &str) -> Homes {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("old/alice")).unwrap();
        fs::create_dir_all(dir.path().join("new/alice")).unwrap();
        let config = dir.path().join("tandem.toml");
        fs::write(
            &config,
            format!(
                "[state]\nurl = \"sqlite://state.db\"\n\n[servers.old]\nkind = \"vdir\"\npath = \"old\"\n\
                 default_calendar = \"calendar\"\n\n[servers.new]\nkind = \"vdir\"\npath = \"new\"\n\
                 default_calendar = \"personal\"\n{extra}\n\
                 [[mailboxes]]\nid = \"alice\"\nsource = \"old:alice\"\ntarget = \"new:alice\"\n"
            ),
        )
        .unwrap();
        Homes { dir, config }
    }

    fn side(&self, side: &str, calendar: &str) -> PathBuf {
        self.dir.path().join(side).join("alice").join(calendar)
    }

    /// A calendar folder on `side` with a display name and colour (vdirsyncer's metadata).
    fn calendar(&self, side: &str, calendar: &str, name: &str, color: Option<&str>) -> PathBuf {
        let dir = self.side(side, calendar);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("displayname"), name).unwrap();
        if let Some(c) = color {
            fs::write(dir.join("color"), c).unwrap();
        }
        dir
    }

    fn run(&self, args: &[&str]) -> (bool, Value, String) {
        let out = common::tandem(&self.config, args);
        let text = common::text(&out);
        let json = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        (out.status.success(), json, text)
    }
}

fn read(dir: &Path, name: &str) -> Option<String> {
    fs::read_to_string(dir.join(name)).ok()
}

/// Item files only (metadata files left out).
fn items(dir: &Path) -> std::collections::BTreeMap<String, String> {
    let mut all = common::Setup::files(dir);
    all.retain(|name, _| name.ends_with(".ics"));
    all
}

fn todo(uid: &str) -> String {
    format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//EN\r\nBEGIN:VTODO\r\nUID:{uid}\r\n\
         DTSTAMP:20260101T000000Z\r\nSUMMARY:Todo {uid}\r\nEND:VTODO\r\nEND:VCALENDAR\r\n"
    )
}

/// The `discover --json` row of calendar `id`.
fn row<'a>(v: &'a Value, id: &str) -> &'a Value {
    v["mailboxes"][0]["calendars"]
        .as_array()
        .unwrap_or_else(|| panic!("no calendars: {v}"))
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no calendar {id}: {v}"))
}

#[test]
fn a_mailbox_arrives_whole_and_stays_in_step() {
    let h = Homes::new("");
    let cal = h.calendar("old", "calendar", "Calendar", None);
    let work = h.calendar("old", "work", "Work", Some("#FF0000FF"));
    let tasks = h.calendar("old", "tasks", "Tasks", None);
    h.calendar("new", "personal", "Personal", None);
    fs::write(cal.join("a.ics"), common::event("a", "Standup", None)).unwrap();
    fs::write(work.join("b.ics"), common::event("b", "Review", None)).unwrap();
    fs::write(tasks.join("t.ics"), todo("t")).unwrap();

    // discover plans, writes nothing.
    let (ok, plan, text) = h.run(&["discover", "--json"]);
    assert!(ok, "{text}");
    let c = row(&plan, "alice/calendar");
    assert_eq!(
        (c["action"].as_str(), c["target"].as_str()),
        (Some("pair"), Some("/alice/personal/"))
    );
    let w = row(&plan, "alice/work");
    assert_eq!(
        (w["action"].as_str(), w["target"].as_str()),
        (Some("create"), Some("/alice/work/"))
    );
    assert_eq!(row(&plan, "alice/tasks")["action"], "create");
    assert!(!h.side("new", "work").exists(), "discover wrote");

    // sync does what discover said.
    let (ok, summary, text) = h.run(&["sync", "--json"]);
    assert!(ok, "{text}");
    assert_eq!(summary["created"], 3, "{summary}");
    assert_eq!(
        read(&h.side("new", "work"), "color").as_deref(),
        Some("#FF0000FF")
    );
    assert_eq!(
        read(&h.side("new", "work"), "displayname").as_deref(),
        Some("Work")
    );
    assert_eq!(items(&h.side("new", "personal")), items(&cal));
    assert_eq!(items(&h.side("new", "work")), items(&work));
    assert_eq!(items(&h.side("new", "tasks")), items(&tasks));
    // The target's default calendar keeps its own name (only changes are carried over).
    assert_eq!(
        read(&h.side("new", "personal"), "displayname").as_deref(),
        Some("Personal")
    );

    // A calendar added later, a rename and a new colour arrive at the next sync.
    let travel = h.calendar("old", "travel", "Travel", Some("#00FF00FF"));
    fs::write(travel.join("c.ics"), common::event("c", "Flight", None)).unwrap();
    fs::write(work.join("displayname"), "Projects").unwrap();
    fs::write(work.join("color"), "#0000FFFF").unwrap();
    let (ok, _, text) = h.run(&["sync"]);
    assert!(ok, "{text}");
    assert_eq!(items(&h.side("new", "travel")), items(&travel));
    assert_eq!(
        read(&h.side("new", "work"), "displayname").as_deref(),
        Some("Projects")
    );
    assert_eq!(
        read(&h.side("new", "work"), "color").as_deref(),
        Some("#0000FFFF")
    );
    assert!(text.contains("alice/work"), "{text}");

    // A source calendar deleted: the target calendar stays, and the pair says it is gone.
    fs::remove_dir_all(&tasks).unwrap();
    let (ok, summary, text) = h.run(&["sync", "--json"]);
    assert!(ok, "{text}");
    assert_eq!(
        items(&h.side("new", "tasks")).len(),
        1,
        "the target calendar was touched"
    );
    let gone = row(&summary, "alice/tasks");
    assert_eq!(gone["action"], "gone", "{summary}");
    assert!(
        gone["reason"]
            .as_str()
            .unwrap()
            .contains("source calendar is gone"),
        "{gone}"
    );
    let pairs: Vec<&str> = summary["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["pair"].as_str())
        .collect();
    assert!(!pairs.contains(&"alice/tasks"), "{pairs:?}");
    assert!(pairs.contains(&"alice/travel"), "{pairs:?}");

    // `--pair alice` is the whole mailbox; `--pair alice/work` one calendar of it.
    let (ok, summary, text) = h.run(&["sync", "--pair", "alice/work", "--json"]);
    assert!(ok, "{text}");
    assert_eq!(summary["pairs"].as_array().unwrap().len(), 1, "{summary}");
    let (ok, summary, text) = h.run(&["sync", "--pair", "alice", "--json"]);
    assert!(ok, "{text}");
    assert_eq!(summary["pairs"].as_array().unwrap().len(), 3, "{summary}");

    // `status` shows each calendar with its mailbox.
    let (ok, status, text) = h.run(&["status", "--json"]);
    assert!(ok, "{text}");
    let pairs = status["pairs"].as_array().unwrap();
    let work = pairs
        .iter()
        .find(|p| p["id"] == "alice/work")
        .expect("alice/work in status");
    assert_eq!(work["mailbox"], "alice", "{work}");
    let alice = &status["mailboxes"][0];
    assert_eq!(
        (alice["id"].as_str(), alice["outcome"].as_str()),
        (Some("alice"), Some("done")),
        "{status}"
    );
    // In text, the mailbox's calendars are listed under it.
    let (ok, _, text) = h.run(&["status"]);
    assert!(ok, "{text}");
    let at = text
        .find("mailbox alice: done, 3 calendar(s)")
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        text[at..]
            .lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("  alice/")),
        "{text}"
    );
}

/// Every command that takes `--pair` takes a mailbox's id for all its calendars: disable and
/// enable, cutover (the whole mailbox flips), repair, dedupe, quarantine.
#[test]
fn every_command_takes_a_mailbox_for_its_calendars() {
    let h = Homes::new("");
    let cal = h.calendar("old", "calendar", "Calendar", None);
    let work = h.calendar("old", "work", "Work", None);
    fs::write(cal.join("a.ics"), common::event("a", "Standup", None)).unwrap();
    fs::write(work.join("b.ics"), common::event("b", "Review", None)).unwrap();
    // Before any discovery a mailbox has no calendars to work on: said, exit 2.
    let out = common::tandem(&h.config, &["repair", "--pair", "alice"]);
    assert_eq!(out.status.code(), Some(2), "{}", common::text(&out));
    assert!(
        common::text(&out).contains("no calendars paired yet"),
        "{}",
        common::text(&out)
    );
    let (ok, _, text) = h.run(&["sync"]);
    assert!(ok, "{text}");

    let states = || {
        let (_, status, _) = h.run(&["status", "--json"]);
        let mut v: Vec<(String, String, String)> = (status["pairs"].as_array().unwrap().iter())
            .map(|p| {
                let s = |k: &str| p[k].as_str().unwrap_or_default().to_string();
                (s("id"), s("state"), s("authority"))
            })
            .collect();
        v.sort();
        v
    };
    let (ok, _, text) = h.run(&["disable", "--pair", "alice", "--reason", "moving"]);
    assert!(ok, "{text}");
    assert!(
        states().iter().all(|(_, s, _)| s == "disabled"),
        "{:?}",
        states()
    );
    let (ok, _, text) = h.run(&["enable", "--pair", "alice"]);
    assert!(ok, "{text}");
    assert!(
        states().iter().all(|(_, s, _)| s != "disabled"),
        "{:?}",
        states()
    );

    let (ok, _, text) = h.run(&["cutover", "--pair", "alice"]);
    assert!(ok, "{text}");
    assert!(
        text.contains("pair alice/calendar: cut over")
            && text.contains("pair alice/work: cut over"),
        "{text}"
    );
    assert!(
        states().iter().all(|(_, _, a)| a == "target"),
        "{:?}",
        states()
    );
    let (ok, _, text) = h.run(&["cutover", "--pair", "alice", "--undo"]);
    assert!(ok, "{text}");
    assert!(
        states().iter().all(|(_, _, a)| a == "source"),
        "{:?}",
        states()
    );

    let (ok, reports, text) = h.run(&["repair", "--pair", "alice", "--json"]);
    assert!(ok, "{text}");
    let mut repaired: Vec<&str> = (reports.as_array().unwrap().iter())
        .filter_map(|r| r["pair"].as_str())
        .collect();
    repaired.sort();
    assert_eq!(repaired, ["alice/calendar", "alice/work"], "{reports}");
    let (ok, reports, text) = h.run(&["dedupe", "--pair", "alice", "--dry-run", "--json"]);
    assert!(ok, "{text}");
    assert_eq!(reports.as_array().map(Vec::len), Some(2), "{reports}");
    let (ok, _, text) = h.run(&["dedupe", "--pair", "alice/work", "--dry-run", "--json"]);
    assert!(ok && text.contains("\"pair\": \"alice/work\""), "{text}");
    let (ok, _, text) = h.run(&["quarantine", "list", "--pair", "alice"]);
    assert!(
        ok && text.contains("no failed or quarantined items"),
        "{text}"
    );

    let out = common::tandem(&h.config, &["cutover", "--pair", "alice/nothing"]);
    assert_eq!(out.status.code(), Some(2), "{}", common::text(&out));
}

#[test]
fn a_refused_calendar_fails_alone() {
    let h = Homes::new("");
    let cal = h.calendar("old", "calendar", "Calendar", None);
    let work = h.calendar("old", "work", "Work", None);
    h.calendar("new", "personal", "Personal", None);
    fs::write(cal.join("a.ics"), common::event("a", "Standup", None)).unwrap();
    fs::write(work.join("b.ics"), common::event("b", "Review", None)).unwrap();
    // Something not a calendar holds the name the new calendar would take.
    fs::write(h.dir.path().join("new/alice/work"), "not a folder").unwrap();

    let out = common::tandem(&h.config, &["sync", "--json"]);
    let text = common::text(&out);
    assert_eq!(out.status.code(), Some(3), "{text}");
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    let w = row(&summary, "alice/work");
    assert!(
        w["reason"]
            .as_str()
            .unwrap()
            .starts_with("failed: making the calendar on the target"),
        "{w}"
    );
    // The other calendar synced.
    assert_eq!(items(&h.side("new", "personal")), items(&cal));
}

/// One discovery of a mailbox at a time (two would make the same calendar twice): while
/// another process holds the mailbox's lease, `sync` says so and makes nothing (exit 3);
/// `discover` (no writes) still answers; once it is free, `sync` discovers.
#[test]
fn a_mailbox_is_discovered_by_one_process_at_a_time() {
    use tandem::domain::lease::{LeaseKind, mailbox_lease};
    let h = Homes::new("");
    let cal = h.calendar("old", "calendar", "Calendar", None);
    h.calendar("old", "work", "Work", None);
    h.calendar("new", "personal", "Personal", None);
    fs::write(cal.join("a.ics"), common::event("a", "Standup", None)).unwrap();
    let rt = rt();
    let state = rt
        .block_on(tandem::state::State::open(&h.dir.path().join("state.db")))
        .unwrap();
    let ttl = std::time::Duration::from_secs(60);
    let lease = rt
        .block_on(state.acquire_lease(&mailbox_lease("alice"), "node-b", LeaseKind::Discover, ttl))
        .unwrap()
        .unwrap();

    let out = common::tandem(&h.config, &["sync"]);
    let text = common::text(&out);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(
        text.contains("another discovery of this mailbox is running (locked by node-b (discover)"),
        "{text}"
    );
    assert!(
        !h.side("new", "work").exists(),
        "made under another's lease"
    );
    let (ok, plan, text) = h.run(&["discover", "--json"]);
    assert!(ok, "{text}");
    assert_eq!(
        plan["mailboxes"][0]["calendars"].as_array().map(Vec::len),
        Some(2),
        "{plan}"
    );

    rt.block_on(state.release_leases(&[lease])).unwrap();
    let (ok, _, text) = h.run(&["sync"]);
    assert!(ok, "{text}");
    assert!(h.side("new", "work").is_dir());
    assert_eq!(items(&h.side("new", "personal")), items(&cal));
}

#[test]
fn check_refuses_a_calendar_named_by_a_pair_and_a_mailbox() {
    let h = Homes::new(
        "\n[[pairs]]\nid = \"hand\"\nsource = \"old:/alice/calendar/\"\ntarget = \"new:/bob/\"\n",
    );
    let out = common::tandem(&h.config, &["check"]);
    let text = common::text(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains("pair hand names old:/alice/calendar/, a calendar in mailbox alice's home"),
        "{text}"
    );
}

/// One side of a mailbox on a real server: the server, the user, their home, and the
/// segment of the calendar a user has from the start.
struct Org {
    server: DavServer,
    user: &'static str,
    home: String,
    default: &'static str,
}

impl Org {
    /// `kind` with a user whose home holds a default calendar (made where the server does not
    /// make one itself).
    fn start(kind: Kind) -> Org {
        Org::on(DavServer::start_new(kind))
    }

    /// A user on `server`, as [`Org::start`] makes one.
    fn on(server: DavServer) -> Org {
        let kind = server.kind;
        let (user, home, default) = match kind {
            Kind::Radicale => ("alice", "/{user}/", "calendar"),
            // Xandikos serves one principal, `user`.
            Kind::Xandikos => ("user", "/{user}/calendars/", "calendar"),
            Kind::Sogo => ("alice", "/SOGo/dav/{user}/Calendar/", "personal"),
            Kind::Davical => ("alice", "/caldav.php/{user}/", "calendar"),
        };
        let org = Org {
            home: home.replace("{user}", user),
            server,
            user,
            default,
        };
        match kind {
            Kind::Sogo => {
                org.server.make_calendar(user, "personal");
            }
            _ => {
                if kind == Kind::Davical {
                    // The user, made the way the harness makes one.
                    let _ = org.server.make_calendar(user, "scratch");
                    org.server
                        .delete_collection(&format!("{}scratch/", org.home));
                }
                if kind == Kind::Radicale {
                    assert_eq!(
                        dav_request(org.server.port, "MKCOL", &org.home, "0", "").0,
                        201
                    );
                }
                org.calendar(default, "Calendar", None, &[]);
            }
        }
        org
    }

    /// A calendar made as a client makes one: MKCALENDAR with its name, colour and components.
    fn calendar(&self, segment: &str, name: &str, color: Option<&str>, comps: &[&str]) -> String {
        let path = format!("{}{segment}/", self.home);
        let color = color.map_or(String::new(), |c| {
            format!("<a:calendar-color>{c}</a:calendar-color>")
        });
        let comps = match comps {
            [] => String::new(),
            cs => format!(
                "<c:supported-calendar-component-set>{}</c:supported-calendar-component-set>",
                cs.iter()
                    .map(|c| format!("<c:comp name=\"{c}\"/>"))
                    .collect::<String>()
            ),
        };
        let body = format!(
            "<?xml version=\"1.0\"?><c:mkcalendar xmlns:d=\"DAV:\" xmlns:c=\"{CALDAV}\" xmlns:a=\"{APPLE}\">\
             <d:set><d:prop><d:displayname>{name}</d:displayname>{color}{comps}</d:prop></d:set></c:mkcalendar>"
        );
        let (code, answer) = dav_request(self.server.port, "MKCALENDAR", &path, "0", &body);
        assert_eq!(
            code,
            201,
            "MKCALENDAR {path}: {answer}\n{}",
            self.server.log()
        );
        path
    }

    /// Renames a calendar and gives it a colour, as a client does.
    fn rename(&self, path: &str, name: &str, color: &str) {
        let body = format!(
            "<?xml version=\"1.0\"?><d:propertyupdate xmlns:d=\"DAV:\" xmlns:a=\"{APPLE}\"><d:set><d:prop>\
             <d:displayname>{name}</d:displayname><a:calendar-color>{color}</a:calendar-color>\
             </d:prop></d:set></d:propertyupdate>"
        );
        let (code, answer) = dav_request(self.server.port, "PROPPATCH", path, "0", &body);
        assert_eq!(code, 207, "PROPPATCH {path}: {answer}");
    }

    /// A calendar's display name, colour and components as the server answers a PROPFIND,
    /// read here with a parser of the test's own.
    fn props(&self, path: &str) -> (Option<String>, Option<String>, Vec<String>) {
        let body = format!(
            "<?xml version=\"1.0\"?><d:propfind xmlns:d=\"DAV:\" xmlns:c=\"{CALDAV}\" xmlns:a=\"{APPLE}\">\
             <d:prop><d:displayname/><a:calendar-color/><c:supported-calendar-component-set/></d:prop></d:propfind>"
        );
        let (code, answer) = dav_request(self.server.port, "PROPFIND", path, "0", &body);
        assert_eq!(code, 207, "PROPFIND {path}: {answer}");
        let xml = &answer[answer.find("<?xml").or_else(|| answer.find('<')).unwrap()..];
        let xml = xml.trim_end_matches(|c: char| c != '>');
        let doc = roxmltree::Document::parse(xml).unwrap_or_else(|e| panic!("{e}: {xml}"));
        let ok = |n: &roxmltree::Node| {
            n.ancestors()
                .find(|a| a.tag_name().name() == "propstat")
                .and_then(|ps| ps.descendants().find(|s| s.tag_name().name() == "status"))
                .and_then(|s| s.text())
                .is_some_and(|t| t.contains(" 200"))
        };
        let text = |name: &str| {
            doc.descendants()
                .find(|n| n.tag_name().name() == name && ok(n))
                .and_then(|n| n.text())
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
        };
        let comps = doc
            .descendants()
            .filter(|n| n.tag_name().name() == "comp" && ok(n))
            .filter_map(|n| n.attribute("name").map(str::to_string))
            .collect();
        // SOGo shows a calendar to anyone but its owner as "NAME (OWNER <ADDRESS>)".
        let name = text("displayname").map(|n| match n.rsplit_once(" (") {
            Some((plain, owner)) if self.server.kind == Kind::Sogo && owner.ends_with(">)") => {
                plain.to_string()
            }
            _ => n,
        });
        (name, text("calendar-color"), comps)
    }

    fn store(&self) -> std::sync::Arc<tandem::store::caldav::CaldavStore> {
        self.server.store()
    }

    /// What this server stores for a direct PUT of each item of `source` (UID → content lines,
    /// as [`Org::items`] gives them): the reference a copy is compared with, since servers
    /// rewrite what they store (SOGo adds CLASS). Made in a scratch calendar, removed after.
    fn stored(&self, source: &Org, path: &str) -> std::collections::BTreeMap<String, Vec<String>> {
        let scratch = self.calendar("reference", "Reference", None, &[]);
        for text in source.texts(path).values() {
            let uid = text
                .lines()
                .find_map(|l| l.strip_prefix("UID:"))
                .unwrap()
                .trim();
            self.put(&scratch, uid, text);
        }
        let stored = self.items(&scratch);
        self.server.delete_collection(&scratch);
        stored
    }

    /// Every item of a calendar, UID → its content lines unfolded and sorted (servers keep
    /// the lines of an item, not always their order), read with tandem's store.
    fn items(&self, path: &str) -> std::collections::BTreeMap<String, Vec<String>> {
        (self.texts(path).into_iter())
            .map(|(uid, text)| {
                let unfolded = text.replace("\r\n ", "").replace("\r\n\t", "");
                let mut lines: Vec<String> =
                    unfolded.lines().map(|l| l.trim_end().to_string()).collect();
                lines.sort();
                (uid, lines)
            })
            .collect()
    }

    /// Every item of a calendar, UID → its text.
    fn texts(&self, path: &str) -> std::collections::BTreeMap<String, String> {
        let cal: tandem::domain::types::CalendarPath = path.parse().unwrap();
        rt().block_on(async {
            let store = self.store();
            let hrefs: Vec<_> = store
                .list(&cal)
                .await
                .unwrap()
                .into_iter()
                .map(|v| v.href)
                .collect();
            let mut out = std::collections::BTreeMap::new();
            for (href, got) in store.fetch(&cal, &hrefs).await.unwrap() {
                let r = got.unwrap_or_else(|e| panic!("{href}: {e}"));
                let uid = (r.data.lines().find_map(|l| l.strip_prefix("UID:")))
                    .unwrap()
                    .trim()
                    .to_string();
                out.insert(uid, r.data);
            }
            out
        })
    }

    fn put(&self, path: &str, uid: &str, body: &str) {
        let cal: tandem::domain::types::CalendarPath = path.parse().unwrap();
        rt().block_on(self.store().create(&cal, &format!("{uid}.ics"), body))
            .unwrap();
    }

    fn config_section(&self, name: &str, pw: &Path) -> String {
        format!(
            "{}home = \"{}\"\ndefault_calendar = \"{}\"\n",
            self.server.config_section(name, pw),
            self.home.replace(self.user, "{user}"),
            self.default
        )
    }
}

/// A config with mailbox `alice` from `source` to `target` (`extra`: more of its lines).
struct Tandem {
    _dir: tempfile::TempDir,
    config: PathBuf,
}

impl Tandem {
    fn new(source: &Org, target: &Org, extra: &str) -> Tandem {
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("pw");
        fs::write(&pw, format!("{}\n", common::dav::PASSWORD)).unwrap();
        let config = dir.path().join("tandem.toml");
        fs::write(
            &config,
            format!(
                "[state]\nurl = \"sqlite://{}\"\n\n{}\n{}\n[[mailboxes]]\nid = \"alice\"\n\
                 source = \"source:{}\"\ntarget = \"target:{}\"\n{extra}",
                dir.path().join("state.db").display(),
                source.config_section("source", &pw),
                target.config_section("target", &pw),
                source.user,
                target.user,
            ),
        )
        .unwrap();
        Tandem { _dir: dir, config }
    }

    /// `tandem ARGS`: its exit code, its JSON (or null) and its text.
    fn run(&self, args: &[&str]) -> (Option<i32>, Value, String) {
        let out = common::tandem(&self.config, args);
        let text = common::text(&out);
        let json = serde_json::from_slice::<Value>(&out.stdout).unwrap_or(Value::Null);
        (out.status.code(), json, text)
    }

    /// `tandem ARGS`, which must succeed: its JSON and its text.
    fn ok(&self, args: &[&str]) -> (Value, String) {
        let (code, json, text) = self.run(args);
        assert_eq!(code, Some(0), "{args:?}: {text}");
        (json, text)
    }
}

const CALDAV: &str = "urn:ietf:params:xml:ns:caldav";
const APPLE: &str = "http://apple.com/ns/ical/";

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A mailbox from `from` to `to` on real servers: the default calendar, a second calendar
/// with a colour and a task list arrive whole; a calendar added later, a rename and a colour
/// change arrive; a deleted source calendar leaves the target calendar and says so.
fn mailbox_between(from: Kind, to: Kind) {
    let (source, target) = (Org::start(from), Org::start(to));
    let scal = format!("{}{}/", source.home, source.default);
    let work = source.calendar("work", "Work", Some("#FF0000FF"), &["VEVENT"]);
    let tasks = source.calendar("tasks", "Tasks", None, &["VTODO"]);
    source.put(&scal, "m1", &common::event("m1", "Standup", None));
    source.put(&work, "m2", &common::event("m2", "Review", None));
    source.put(&tasks, "t1", &todo("t1"));
    let tandem = Tandem::new(&source, &target, "");
    let run = |args: &[&str]| tandem.ok(args);
    let (plan, _) = run(&["discover", "--json"]);
    let tdefault = format!("{}{}/", target.home, target.default);
    let twork = format!("{}work/", target.home);
    let ttasks = format!("{}tasks/", target.home);
    let default = row(&plan, &format!("alice/{}", source.default));
    assert_eq!(
        (default["action"].as_str(), default["target"].as_str()),
        (Some("pair"), Some(tdefault.as_str())),
        "{plan}"
    );
    assert_eq!(row(&plan, "alice/work")["action"], "create", "{plan}");
    assert_eq!(
        row(&plan, "alice/tasks")["target"],
        ttasks.as_str(),
        "{plan}"
    );

    let (summary, text) = run(&["sync", "--json"]);
    assert_eq!(summary["created"], 3, "{summary}\n{text}");
    // Each copy is what the target stores for the source's item put there directly.
    assert_eq!(target.items(&tdefault), target.stored(&source, &scal));
    assert_eq!(target.items(&twork), target.stored(&source, &work));
    assert_eq!(target.items(&ttasks), target.stored(&source, &tasks));
    let (name, color, _) = target.props(&twork);
    assert_eq!(name.as_deref(), Some("Work"));
    assert!(
        color.is_some_and(|c| c.to_uppercase().starts_with("#FF0000")),
        "{:?}",
        target.props(&twork)
    );
    // The task list holds what a task list made directly on the target holds (SOGo makes
    // every calendar hold events and tasks, whatever MKCALENDAR asks).
    let direct = target.calendar("direct", "Direct", None, &["VTODO"]);
    let expected = target.props(&direct).2;
    target.server.delete_collection(&direct);
    assert!(expected.contains(&"VTODO".to_string()), "{expected:?}");
    assert_eq!(
        target.props(&ttasks).2,
        expected,
        "the task list's components"
    );

    // Later: a new calendar, a rename with a new colour, a deleted calendar.
    let travel = source.calendar("travel", "Travel", None, &[]);
    source.put(&travel, "m3", &common::event("m3", "Flight", None));
    source.rename(&work, "Projects", "#0000FFFF");
    assert!(
        matches!(source.server.delete_collection(&tasks), 200 | 204),
        "DELETE {tasks}"
    );
    let (summary, text) = run(&["sync", "--json"]);
    let ttravel = format!("{}travel/", target.home);
    assert_eq!(
        target.items(&ttravel),
        target.stored(&source, &travel),
        "{text}"
    );
    let (name, color, _) = target.props(&twork);
    assert_eq!(name.as_deref(), Some("Projects"), "{text}");
    assert!(
        color.is_some_and(|c| c.to_uppercase().starts_with("#0000FF")),
        "{text}"
    );
    assert_eq!(row(&summary, "alice/tasks")["action"], "gone", "{summary}");
    assert_eq!(
        target.items(&ttasks).len(),
        1,
        "the target's task list was touched"
    );
}

#[test]
fn radicale_to_xandikos_mailbox() {
    mailbox_between(Kind::Radicale, Kind::Xandikos);
}

#[test]
fn radicale_to_sogo_mailbox() {
    mailbox_between(Kind::Radicale, Kind::Sogo);
}

#[test]
fn xandikos_to_davical_mailbox() {
    mailbox_between(Kind::Xandikos, Kind::Davical);
}

/// Under `tandem run`, a calendar added to a mailbox's source syncs within the discover
/// interval (the service starts again with it, in the same process).
#[test]
fn the_service_finds_a_calendar_added_later() {
    let port = common::dav::free_port();
    let h = Homes::new(&format!(
        "[sync]\ninterval = \"1s\"\ndiscover_interval = \"2s\"\n\
         [http]\nlisten = \"127.0.0.1:{port}\"\nmetrics_pairs = 1\n"
    ));
    let cal = h.calendar("old", "calendar", "Calendar", None);
    fs::write(cal.join("a.ics"), common::event("a", "Standup", None)).unwrap();
    let mut child = common::spawn_run(&h.config);
    let pid = child.id();
    let synced = |cal: &str| h.side("new", cal).is_dir() && items(&h.side("new", cal)).len() == 1;
    common::wait_until("the default calendar synced", 60, || synced("calendar"));
    let later = h.calendar("old", "later", "Later", Some("#123456FF"));
    fs::write(later.join("b.ics"), common::event("b", "Added later", None)).unwrap();
    common::wait_until("the calendar added later synced", 60, || synced("later"));
    assert_eq!(child.id(), pid);
    // The API groups the calendars under their mailbox; a calendar's page is at its id.
    let (code, body) = common::http(port, "GET", "/api/pairs", &[]);
    assert_eq!(code, 200, "{body}");
    let api: Value = serde_json::from_str(&body).unwrap();
    let alice = &api["mailboxes"][0];
    assert_eq!(
        (alice["id"].as_str(), alice["mailbox"].as_bool()),
        (Some("alice"), Some(true)),
        "{api}"
    );
    let mut calendars: Vec<&str> = (alice["pairs"].as_array().unwrap().iter())
        .filter_map(Value::as_str)
        .collect();
    calendars.sort();
    assert_eq!(calendars, ["alice/calendar", "alice/later"], "{api}");
    let (code, page) = common::http(port, "GET", "/pairs/alice%2Flater", &[]);
    assert_eq!(code, 200, "{page}");
    assert!(page.contains("old:/alice/later/"), "{page}");
    // Past `metrics_pairs`, pairs in step have no series of their own; the aggregates stay.
    let metrics = || common::http(port, "GET", "/metrics", &[]).1;
    common::wait_until("the mailbox in step", 30, || {
        metrics().contains("tandem_mailboxes{outcome=\"done\"} 1")
    });
    let metrics = metrics();
    assert!(!metrics.contains("pair=\"alice/"), "{metrics}");
    assert!(
        metrics.contains("tandem_pairs_without_series 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tandem_mailboxes{outcome=\"done\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("tandem_items 2"), "{metrics}");
    let (status, log) = common::stop(&mut child);
    assert!(status.success(), "{log}");
    assert!(log.contains("the mailboxes' calendars changed"), "{log}");
    assert_eq!(
        read(&h.side("new", "later"), "color").as_deref(),
        Some("#123456FF")
    );
}

/// A target server that refuses MKCALENDAR (here Radicale, whose rights let the user write
/// their default calendar only) fails that calendar with the server's answer; the mailbox's
/// default calendar syncs.
#[test]
fn a_server_refusing_mkcalendar_fails_that_calendar_only() {
    let source = Org::start(Kind::Radicale);
    // The login may write alice's home, her default calendar and the test's reference one, and
    // only read the rest.
    let rules = "[home]\nuser: .+\ncollection: alice\npermissions: RW\n\n\
                 [default]\nuser: .+\ncollection: alice/(calendar|reference)(/.*)?\npermissions: rw\n\n\
                 [others]\nuser: .+\ncollection: alice/.+\npermissions: r\n\n\
                 [root]\nuser: .+\ncollection:\npermissions: R\n";
    let target = Org::on(DavServer::radicale_with_rights(rules));
    let scal = format!("{}{}/", source.home, source.default);
    let work = source.calendar("work", "Work", None, &[]);
    source.put(&scal, "m1", &common::event("m1", "Standup", None));
    source.put(&work, "m2", &common::event("m2", "Review", None));
    let tandem = Tandem::new(&source, &target, "");
    let (code, summary, text) = tandem.run(&["sync", "--json"]);
    assert_eq!(code, Some(3), "{text}");
    let reason = row(&summary, "alice/work")["reason"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        reason.starts_with("failed: making the calendar on the target") && reason.contains("403"),
        "{summary}"
    );
    let tdefault = format!("{}{}/", target.home, target.default);
    assert_eq!(
        target.items(&tdefault),
        target.stored(&source, &scal),
        "{text}"
    );
    assert_eq!(
        dav_request(
            target.server.port,
            "PROPFIND",
            &format!("{}work/", target.home),
            "0",
            ""
        )
        .0,
        404,
        "the refused calendar exists"
    );
}

/// A two-way mailbox on real servers: items made on either side arrive on the other, and a
/// calendar made on the target side is made on the source.
#[test]
fn a_two_way_mailbox_between_radicale_and_xandikos() {
    let (source, target) = (Org::start(Kind::Radicale), Org::start(Kind::Xandikos));
    let scal = format!("{}{}/", source.home, source.default);
    let tcal = format!("{}{}/", target.home, target.default);
    source.put(&scal, "m1", &common::event("m1", "Standup", None));
    let tandem = Tandem::new(&source, &target, "direction = \"two-way\"\n");
    tandem.ok(&["sync"]);
    assert_eq!(target.items(&tcal), target.stored(&source, &scal));

    // Later: an event made in the new org, and a calendar made there with a colour.
    target.put(
        &tcal,
        "n1",
        &common::event("n1", "Made in the new org", None),
    );
    let team = target.calendar("team", "Team", Some("#00FF00FF"), &["VEVENT"]);
    target.put(&team, "n2", &common::event("n2", "Team lunch", None));
    let (plan, _) = tandem.ok(&["discover", "--json"]);
    assert_eq!(row(&plan, "alice/team")["action"], "create", "{plan}");
    let (summary, text) = tandem.ok(&["sync", "--json"]);
    assert_eq!(row(&summary, "alice/team")["action"], "create", "{summary}");
    let steam = format!("{}team/", source.home);
    assert_eq!(
        source.items(&steam),
        source.stored(&target, &team),
        "{text}"
    );
    assert_eq!(source.items(&scal), source.stored(&target, &tcal), "{text}");
    let (name, color, _) = source.props(&steam);
    assert_eq!(name.as_deref(), Some("Team"));
    assert!(
        color.is_some_and(|c| c.to_uppercase().starts_with("#00FF00")),
        "{text}"
    );
    // A quiet pass after: nothing to write either way.
    let (summary, text) = tandem.ok(&["sync", "--json"]);
    assert_eq!(
        (summary["created"].as_u64(), summary["updated"].as_u64()),
        (Some(0), Some(0)),
        "{text}"
    );
}
