//! Config problems exit 2 and name the file, the key and the reason; `check` prints what it read.

use crate::common;

use std::path::Path;

use common::{tandem, text};

/// Writes `body` as tandem.toml in a fresh folder (with `old/` and `new/` vdir roots) and runs `check`.
fn check(body: &str, extra: &[(&str, &str)]) -> (std::process::Output, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("old")).unwrap();
    std::fs::create_dir_all(dir.path().join("new")).unwrap();
    for (name, content) in extra {
        std::fs::write(dir.path().join(name), content).unwrap();
    }
    let config = dir.path().join("tandem.toml");
    std::fs::write(&config, body).unwrap();
    (tandem(&config, &["check"]), dir)
}

const SERVERS: &str = "[servers.old]\nkind = \"vdir\"\npath = \"old\"\n[servers.new]\nkind = \"vdir\"\npath = \"new\"\n";

fn pair(id: &str, source: &str, target: &str) -> String {
    format!("[[pairs]]\nid = \"{id}\"\nsource = \"{source}\"\ntarget = \"{target}\"\n")
}

/// Asserts exit code 2 and a line `…/FILE: KEY: …REASON…`.
fn assert_config_error(body: &str, extra: &[(&str, &str)], file: &str, key: &str, reason: &str) {
    let (out, dir) = check(body, extra);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    let path = dir.path().join(file);
    let prefix = format!("{}: {key}: ", path.display());
    let line = t
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no line starting {prefix:?} in:\n{t}"));
    assert!(line.contains(reason), "{line:?} lacks {reason:?}");
}

#[test]
fn a_valid_config_is_printed_back() {
    let body = format!(
        "pairs_csv = \"pairs.csv\"\n[sync]\ninterval = \"5m\"\n[agents]\ncount = 1\nprocessor_indexes = [0]\n{SERVERS}\
         [servers.dav]\nkind = \"caldav\"\nurl = \"https://caldav.new.example/\"\nusername = \"svc\"\npassword_env = \"TANDEM_TEST_SECRET_PW\"\n\
         [rewrite]\ndomains = {{ \"old.example\" = \"new.example\" }}\naddresses = \"map.csv\"\n{}",
        pair("alice", "old:/alice/", "new:/alice/")
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("old")).unwrap();
    std::fs::create_dir_all(dir.path().join("new")).unwrap();
    std::fs::write(
        dir.path().join("map.csv"),
        "jane@old.example,j.doe@new.example\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("pairs.csv"),
        "id,source,target\nbob,old:/bob/,dav:/bob/calendar/\n",
    )
    .unwrap();
    let config = dir.path().join("tandem.toml");
    std::fs::write(&config, body).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(["-c", config.to_str().unwrap(), "check"])
        .env("TANDEM_TEST_SECRET_PW", "hunter2-very-secret")
        .output()
        .unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    for want in [
        "interval 5m",
        "agent 0 -> processor 0",
        "dav          caldav https://caldav.new.example/ as svc, password from $TANDEM_TEST_SECRET_PW",
        "@old.example -> @new.example",
        "1 address(es)",
        "alice                old:/alice/ -> new:/alice/",
        "bob                  old:/bob/ -> dav:/bob/calendar/",
    ] {
        assert!(t.contains(want), "missing {want:?} in:\n{t}");
    }
    assert!(!t.contains("hunter2"), "the password leaked:\n{t}");
}

#[test]
fn unknown_keys_are_named() {
    assert_config_error(
        &format!("colour = \"blue\"\n{SERVERS}"),
        &[],
        "tandem.toml",
        "colour",
        "unknown field",
    );
    assert_config_error(
        "[servers.old]\nkind = \"vdir\"\npathh = \"old\"\n",
        &[],
        "tandem.toml",
        "servers.old.pathh",
        "unknown field",
    );
    assert_config_error(
        &format!("{SERVERS}[sync]\nintervall = \"1m\"\n"),
        &[],
        "tandem.toml",
        "sync.intervall",
        "unknown field",
    );
}

#[test]
fn pairs_must_name_known_servers_and_unique_ids() {
    let body = format!("{SERVERS}{}", pair("alice", "nope:/alice/", "new:/alice/"));
    assert_config_error(
        &body,
        &[],
        "tandem.toml",
        "pairs[0].source",
        "unknown server \"nope\"",
    );
    let body = format!(
        "{SERVERS}{}{}",
        pair("alice", "old:/a/", "new:/a/"),
        pair("alice", "old:/b/", "new:/b/")
    );
    assert_config_error(
        &body,
        &[],
        "tandem.toml",
        "pairs[1].id",
        "duplicate pair id \"alice\"",
    );
    let body = format!("{SERVERS}{}", pair("alice", "old", "new:/a/"));
    assert_config_error(&body, &[], "tandem.toml", "pairs[0].source", "SERVER:PATH");
    let body = format!("{SERVERS}{}", pair("al ice", "old:/a/", "new:/a/"));
    assert_config_error(&body, &[], "tandem.toml", "pairs[0].id", "may not contain");
}

#[test]
fn pairs_csv_problems_name_the_csv_and_line() {
    let body = format!(
        "pairs_csv = \"pairs.csv\"\n{SERVERS}{}",
        pair("alice", "old:/a/", "new:/a/")
    );
    let csv =
        "id,source,target\nbob,old:/b/,new:/b/\nalice,old:/c/,new:/c/\ncarol,old:/d/,gone:/d/\n";
    assert_config_error(
        &body,
        &[("pairs.csv", csv)],
        "pairs.csv",
        "line 3.id",
        "duplicate pair id \"alice\"",
    );
    assert_config_error(
        &body,
        &[("pairs.csv", csv)],
        "pairs.csv",
        "line 4.target",
        "unknown server \"gone\"",
    );
    assert_config_error(
        &body,
        &[("pairs.csv", "bob,old:/b/\n")],
        "pairs.csv",
        "line 1",
        "expected 3 to 6",
    );
    // A fourth column is the pair's mailbox address, used once.
    assert_config_error(
        &body,
        &[("pairs.csv", "bob,old:/b/,new:/b/,not-an-address\n")],
        "pairs.csv",
        "line 1.address",
        "\"not-an-address\" is not an email address",
    );
    assert_config_error(
        &body,
        &[(
            "pairs.csv",
            "id,source,target,address\nbob,old:/b/,new:/b/,bob@old.example\ncarol,old:/c/,new:/c/,Bob@Old.example\n",
        )],
        "pairs.csv",
        "line 3.address",
        "bob@old.example is already the address of pair bob",
    );
}

#[test]
fn pairs_csv_gives_mailbox_addresses() {
    let dir = tempfile::tempdir().unwrap();
    for d in ["old", "new"] {
        std::fs::create_dir_all(dir.path().join(d)).unwrap();
    }
    std::fs::write(
        dir.path().join("pairs.csv"),
        "id,source,target,address\nbob,old:/b/,new:/b/,Bob@old.example\ncarol,old:/c/,new:/c/\n",
    )
    .unwrap();
    let config = dir.path().join("tandem.toml");
    std::fs::write(&config, format!("pairs_csv = \"pairs.csv\"\n{SERVERS}")).unwrap();
    let out = common::tandem(&config, &["check"]);
    assert!(out.status.success(), "{}", common::text(&out));
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        printed.contains("old:/b/ -> new:/b/  (mailbox bob@old.example)"),
        "{printed}"
    );
    assert!(printed.contains("old:/c/ -> new:/c/\n"), "{printed}");
}

#[test]
fn two_way_pairs_need_a_way_back_to_the_old_org() {
    let merged = "[rewrite]\ndomains = { \"a.example\" = \"new.example\", \"b.example\" = \"new.example\" }\n";
    let two_way = "[sync]\ndirection = \"two-way\"\n";
    let body = format!(
        "{two_way}{SERVERS}{merged}{}",
        pair("alice", "old:/a/", "new:/a/")
    );
    assert_config_error(
        &body,
        &[],
        "tandem.toml",
        "rewrite",
        "domains a.example, b.example all become new.example",
    );
    assert_config_error(&body, &[], "tandem.toml", "rewrite", "two-way pairs alice");
    // One way needs no way back; a stated one settles it.
    let (out, _dir) = check(
        &format!("{SERVERS}{merged}{}", pair("alice", "old:/a/", "new:/a/")),
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    let stated = format!(
        "{two_way}{SERVERS}{merged}reverse_domains = {{ \"new.example\" = \"a.example\" }}\n{}",
        pair("alice", "old:/a/", "new:/a/")
    );
    let (out, dir) = check(&stated, &[]);
    let printed = text(&out);
    assert!(out.status.success(), "{printed}");
    assert!(
        printed.contains("back: @new.example -> @a.example"),
        "{printed}"
    );
    assert!(
        printed.contains("old:/a/ <-> new:/a/  (two-way, conflicts: authority)"),
        "{printed}"
    );
    // A reverse address map that is not one-to-one is refused too.
    let addresses = format!(
        "{two_way}{SERVERS}[rewrite]\naddresses = \"map.csv\"\n{}",
        pair("alice", "old:/a/", "new:/a/")
    );
    assert_config_error(
        &addresses,
        &[(
            "map.csv",
            "jane@old.example,jd@new.example\njd@old.example,jd@new.example\n",
        )],
        "tandem.toml",
        "rewrite",
        "addresses jane@old.example, jd@old.example all become jd@new.example",
    );
    // A cutover writes back to the old org as well: refused while the way back is ambiguous.
    let one_way = format!("{SERVERS}{merged}{}", pair("alice", "old:/a/", "new:/a/"));
    let config = dir.path().join("tandem.toml");
    std::fs::write(&config, one_way).unwrap();
    let out = tandem(&config, &["cutover", "--pair", "alice"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("all become new.example"),
        "{}",
        text(&out)
    );
    let out = tandem(&config, &["cutover", "--pair", "nobody"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("no pair with id \"nobody\""),
        "{}",
        text(&out)
    );
}

#[test]
fn direction_and_conflict_per_pair() {
    let csv = "id,source,target,address,direction,conflict\nbob,old:/b/,new:/b/,,two-way,newest\ncarol,old:/c/,new:/c/\n";
    let body = format!(
        "pairs_csv = \"pairs.csv\"\n[sync]\nconflict = \"newest\"\n{SERVERS}{}direction = \"two-way\"\nconflict = \"authority\"\n",
        pair("alice", "old:/a/", "new:/a/")
    );
    let (out, _dir) = check(&body, &[("pairs.csv", csv)]);
    let printed = text(&out);
    assert!(out.status.success(), "{printed}");
    assert!(
        printed.contains("old:/a/ <-> new:/a/  (two-way, conflicts: authority)"),
        "{printed}"
    );
    assert!(
        printed.contains("old:/b/ <-> new:/b/  (two-way, conflicts: newest)"),
        "{printed}"
    );
    assert!(printed.contains("old:/c/ -> new:/c/\n"), "{printed}");
    assert_config_error(
        &body,
        &[("pairs.csv", "bob,old:/b/,new:/b/,,sideways\n")],
        "pairs.csv",
        "line 1.direction",
        "\"sideways\" is neither \"one-way\" nor \"two-way\"",
    );
    assert_config_error(
        &format!("[sync]\nconflict = \"loudest\"\n{SERVERS}"),
        &[],
        "tandem.toml",
        "sync.conflict",
        "\"loudest\" is neither \"authority\" nor \"newest\"",
    );
}

#[test]
fn missing_files_are_named() {
    let body = format!("pairs_csv = \"missing.csv\"\n{SERVERS}");
    assert_config_error(&body, &[], "tandem.toml", "pairs_csv", "does not exist");
    let body = format!("{SERVERS}[rewrite]\naddresses = \"nowhere.csv\"\n");
    assert_config_error(
        &body,
        &[],
        "tandem.toml",
        "rewrite.addresses",
        "does not exist",
    );
    assert_config_error(
        "[servers.old]\nkind = \"vdir\"\npath = \"no-such-folder\"\n",
        &[],
        "tandem.toml",
        "servers.old.path",
        "does not exist",
    );
    let body = "[servers.dav]\nkind = \"caldav\"\nurl = \"https://x.example/\"\nusername = \"u\"\npassword_file = \"secret.txt\"\n";
    assert_config_error(
        body,
        &[],
        "tandem.toml",
        "servers.dav.password_file",
        "does not exist",
    );

    let missing = Path::new("/nonexistent/tandem.toml");
    let out = tandem(missing, &["check"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).starts_with("/nonexistent/tandem.toml: (file): cannot read"),
        "{}",
        text(&out)
    );
    assert!(
        text(&out).contains("-c FILE") && text(&out).contains("TANDEM_CONFIG"),
        "a missing file says how to name another: {}",
        text(&out)
    );
    // An empty file is a valid config that syncs nothing: check says so.
    let (out, _dir) = check("", &[]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out).contains("note: no pairs"), "{}", text(&out));
}

#[test]
fn values_are_checked() {
    assert_config_error(
        "[sync]\ninterval = \"often\"\n",
        &[],
        "tandem.toml",
        "sync.interval",
        "not a duration",
    );
    assert_config_error(
        "[sync]\nextras = \"burn\"\n",
        &[],
        "tandem.toml",
        "sync.extras",
        "neither",
    );
    assert_config_error(
        "[agents]\ncount = 1\nprocessor_indexes = [4096]\n",
        &[],
        "tandem.toml",
        "agents.processor_indexes[0]",
        "does not exist",
    );
    assert_config_error(
        "[agents]\ncount = 2\nprocessor_indexes = [0]\n",
        &[],
        "tandem.toml",
        "agents.processor_indexes",
        "exactly one per agent",
    );
    assert_config_error(
        "[http]\nlisten = \"everywhere\"\n",
        &[],
        "tandem.toml",
        "http.listen",
        "not an address",
    );
    assert_config_error(
        "[servers.dav]\nkind = \"caldav\"\nurl = \"http://127.0.0.1:1/\"\nwrite_concurrency = \"lots\"\n",
        &[],
        "tandem.toml",
        "servers.dav.write_concurrency",
        "neither \"adaptive\" nor a number",
    );
    assert_config_error(
        "[http]\npublic_url = \"tandem.example\"\n",
        &[],
        "tandem.toml",
        "http.public_url",
        "not a URL",
    );
    assert_config_error(
        "[http]\ntls_cert = \"cert.pem\"\n",
        &[],
        "tandem.toml",
        "http.tls_key",
        "is needed with http.tls_cert",
    );
    assert_config_error(
        "[sync]\npush_lifetime = \"2s\"\n",
        &[],
        "tandem.toml",
        "sync.push_lifetime",
        "at least 10s",
    );
    // The certificate is read by `check` too, and named when it is not one.
    assert_config_error(
        "[http]\ntls_cert = \"cert.pem\"\ntls_key = \"key.pem\"\n",
        &[("cert.pem", "not a certificate"), ("key.pem", "nor a key")],
        "tandem.toml",
        "http.tls_cert",
        "cert.pem: holds no certificate",
    );
    assert_config_error(
        "[state]\nurl = \"mysql://x\"\n",
        &[],
        "tandem.toml",
        "state.url",
        "neither a SQLite file URL",
    );
    assert_config_error(
        "[state]\nurl = \"postgres://tandem:hunter2@db.example/tandem\"\n",
        &[],
        "tandem.toml",
        "state.url",
        "must not carry a password",
    );
    assert_config_error(
        "[state]\nurl = \"postgres://tandem@db.example/tandem?sslmode=require&password=hunter2\"\n",
        &[],
        "tandem.toml",
        "state.url",
        "must not carry a password",
    );
    assert_config_error(
        "[state]\nurl = \"postgres://tandem@db.example/tandem\"\npassword_env = \"TANDEM_TEST_NO_SUCH_VAR\"\n",
        &[],
        "tandem.toml",
        "state.password_env",
        "TANDEM_TEST_NO_SUCH_VAR is not set",
    );
    assert_config_error(
        "[state]\nurl = \"sqlite://t.db\"\npassword_file = \"pw\"\n",
        &[("pw", "x")],
        "tandem.toml",
        "state.password_env",
        "takes no password",
    );
    assert_config_error(
        "[servers.x]\nkind = \"exchange\"\n",
        &[],
        "tandem.toml",
        "servers.x.kind",
        "unknown server kind",
    );
    assert_config_error(
        "[servers.dav]\nkind = \"caldav\"\n",
        &[],
        "tandem.toml",
        "servers.dav.url",
        "needs `url`",
    );
    assert_config_error(
        "[servers.dav]\nkind = \"caldav\"\nurl = \"ftp://x\"\n",
        &[],
        "tandem.toml",
        "servers.dav.url",
        "not an http(s) URL",
    );
    assert_config_error(
        "[servers.dav]\nkind = \"caldav\"\nurl = \"https://u:pw@x.example/\"\n",
        &[],
        "tandem.toml",
        "servers.dav.url",
        "credentials",
    );
    assert_config_error(
        "[servers.dav]\nkind = \"caldav\"\nurl = \"https://x.example/\"\nusername = \"u\"\npassword_env = \"TANDEM_SURELY_UNSET_VAR\"\n",
        &[],
        "tandem.toml",
        "servers.dav.password_env",
        "TANDEM_SURELY_UNSET_VAR is not set",
    );
    assert_config_error(
        "[servers.dav]\nkind = \"caldav\"\nurl = \"https://x.example/\"\nusername = \"u\"\n",
        &[],
        "tandem.toml",
        "servers.dav.password_env",
        "needs a password",
    );
    assert_config_error(
        "[sync\ninterval = 1\n",
        &[],
        "tandem.toml",
        "(syntax)",
        "line 1",
    );
    assert_config_error(
        "[sync]\ninterval = 60\n",
        &[],
        "tandem.toml",
        "sync.interval",
        "string",
    );
}

#[test]
fn usage_errors_exit_2() {
    let out = tandem(Path::new("tandem.toml"), &["sync", "--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2));
    let out = tandem(Path::new("tandem.toml"), &["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn the_example_config_is_valid() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/tandem.example.toml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(["-c", example.to_str().unwrap(), "check"])
        .env("TANDEM_SOURCE_PASSWORD", "example-source-secret")
        .env("TANDEM_TARGET_PASSWORD", "example-target-secret")
        .output()
        .unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(
        t.contains("alice") && t.contains("source:/alice/calendar/ -> target:/alice/calendar/"),
        "{t}"
    );
    assert!(
        !t.contains("example-source-secret") && !t.contains("example-target-secret"),
        "{t}"
    );
}

/// Every key `tandem check` accepts has a row in its table's section of the configuration
/// reference (`docs/configuration.md`). The keys are check's own: it names every key it would
/// have accepted when it meets an unknown one.
#[test]
fn the_configuration_reference_has_every_key_check_accepts() {
    let reference = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/configuration.md"),
    )
    .unwrap();
    let pair = pair("a", "old:/a/", "new:/b/");
    let tables = [
        ("", "Top level"),
        ("[state]\n", "`[state]`"),
        ("[sync]\n", "`[sync]`"),
        ("[agents]\n", "`[agents]`"),
        ("[http]\n", "`[http]`"),
        ("[alerts]\n", "`[alerts]`"),
        ("[servers.x]\nkind = \"vdir\"\n", "`[servers.NAME]`"),
        ("[rewrite]\n", "`[rewrite]`"),
        (pair.as_str(), "`[[pairs]]`"),
        (
            "[[mailboxes]]\nid = \"m\"\nsource = \"old:a\"\ntarget = \"new:b\"\n",
            "`[[mailboxes]]`",
        ),
    ];
    for (table, heading) in tables {
        let (out, _dir) = check(&format!("{table}not_a_key = 1\n"), &[]);
        let said = text(&out);
        // "expected `a` or `b`", "expected one of `a`, `b`, `c`"
        let accepted: Vec<&str> = said
            .split_once("expected ")
            .unwrap_or_else(|| panic!("{heading}: check named no keys:\n{said}"))
            .1
            .split(" (line")
            .next()
            .unwrap()
            .trim_start_matches("one of ")
            .split(", ")
            .flat_map(|k| k.split(" or "))
            .map(|k| k.trim_matches('`'))
            .collect();
        assert!(accepted.len() >= 2, "{heading}: {accepted:?}");
        let start = reference
            .find(&format!("\n## {heading}\n"))
            .unwrap_or_else(|| panic!("the reference has no section {heading}"));
        let section = &reference[start + 4..];
        let section = &section[..section.find("\n## ").unwrap_or(section.len())];
        for key in accepted {
            let rows = [
                format!("| `{key}` |"),
                format!("| `[{key}]` |"),
                format!("| `[[{key}]]` |"),
            ];
            assert!(
                rows.iter().any(|r| section.contains(r.as_str())),
                "docs/configuration.md, section {heading}, has no row for `{key}`"
            );
        }
    }
}
