//! The operator's view: the status page in real headless Chromium, the JSON API, `/metrics`
//! against `status --json`, lag that grows while a target is down and returns to 0, JSON log
//! lines, progress lines, and no secret in any of it.

use crate::common;

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::dav::DavServer;
use common::{event, http, tandem, text, wait_until};
use serde_json::Value;

/// The bearer token of the scenario's service, and the password of its unreachable server.
const TOKEN: &str = "tok-3f9a1c77e2b84d0c9d11";
const DOWN_PASSWORD: &str = "pw-down-6b1e0f4a9c2d";

fn get_json(port: u16, path: &str) -> Value {
    let (code, body) = http(port, "GET", path, &[]);
    assert_eq!(code, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
}

fn pair<'a>(v: &'a Value, id: &str) -> &'a Value {
    v["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == id)
        .unwrap_or_else(|| panic!("no pair {id} in {v}"))
}

/// `tandem run` with its log lines (JSON) in a file, stopped with SIGTERM on drop.
struct Service {
    child: Child,
}

impl Service {
    fn start(config: &Path, port: u16, log: PathBuf) -> Service {
        let child = Command::new(env!("CARGO_BIN_EXE_tandem"))
            .arg("-c")
            .arg(config)
            .args(["--log-format", "json", "-v", "run"])
            .env_remove("RUST_LOG")
            .env("TANDEM_TEST_TOKEN", TOKEN)
            .env("TANDEM_TEST_DOWN_PASSWORD", DOWN_PASSWORD)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start tandem run");
        let s = Service { child };
        wait_until("the service to answer /healthz", 60, || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
                && http(port, "GET", "/healthz", &[]).0 == 200
        });
        s
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
    }
}

/// Four pairs on two agents pinned to processors 0 and 1:
/// - alice: vdir → vdir, three items, in step;
/// - bob: vdir → vdir, one item that cannot be parsed (quarantined after three passes);
/// - carol: vdir → Radicale, two items (the server with request counts);
/// - dave: vdir → a CalDAV server that refuses connections (paused, lagging).
struct Scenario {
    dir: tempfile::TempDir,
    config: PathBuf,
    port: u16,
    _radicale: DavServer,
}

fn scenario() -> Scenario {
    let dir = tempfile::tempdir().unwrap();
    let radicale = DavServer::radicale();
    let carol_cal = radicale.make_calendar("carol", "calendar");
    let pw = dir.path().join("radicale.pw");
    std::fs::write(&pw, common::dav::PASSWORD).unwrap();
    for u in ["alice", "bob", "carol", "dave"] {
        std::fs::create_dir_all(dir.path().join("old").join(u)).unwrap();
        std::fs::create_dir_all(dir.path().join("new").join(u)).unwrap();
    }
    let put = |user: &str, name: &str, body: &str| {
        std::fs::write(dir.path().join("old").join(user).join(name), body).unwrap()
    };
    for i in 0..3 {
        put(
            "alice",
            &format!("a{i}.ics"),
            &event(&format!("alice-{i}"), "Standup", Some("alice@old.example")),
        );
    }
    put("bob", "good.ics", &event("bob-1", "Review", None));
    put(
        "bob",
        "broken.ics",
        "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nSUMMARY:no end\r\n",
    );
    for i in 0..2 {
        put(
            "carol",
            &format!("c{i}.ics"),
            &event(&format!("carol-{i}"), "Planning", None),
        );
    }
    for i in 0..2 {
        put(
            "dave",
            &format!("d{i}.ics"),
            &event(&format!("dave-{i}"), "1:1", None),
        );
    }
    let port = common::dav::free_port();
    let down = common::dav::free_port();
    let config = dir.path().join("tandem.toml");
    std::fs::write(
        &config,
        format!(
            "[state]\nurl = \"sqlite://state/tandem.db\"\n\n\
             [sync]\ninterval = \"1h\"\npause = \"1h\"\n\n\
             [agents]\ncount = 2\nprocessor_indexes = [0, 1]\n\n\
             [http]\nlisten = \"127.0.0.1:{port}\"\ntoken_env = \"TANDEM_TEST_TOKEN\"\n\n\
             [alerts]\nlag = \"2s\"\nfailed_requests_percent = 50\n\n\
             [servers.old]\nkind = \"vdir\"\npath = \"old\"\n\n\
             [servers.new]\nkind = \"vdir\"\npath = \"new\"\n\n\
             {}\n\
             [servers.down]\nkind = \"caldav\"\nurl = \"http://127.0.0.1:{down}/\"\nusername = \"svc\"\npassword_env = \"TANDEM_TEST_DOWN_PASSWORD\"\n\n\
             [[pairs]]\nid = \"alice\"\nsource = \"old:/alice/\"\ntarget = \"new:/alice/\"\n\n\
             [[pairs]]\nid = \"bob\"\nsource = \"old:/bob/\"\ntarget = \"new:/bob/\"\n\n\
             [[pairs]]\nid = \"carol\"\nsource = \"old:/carol/\"\ntarget = \"dav:{carol_cal}\"\n\n\
             [[pairs]]\nid = \"dave\"\nsource = \"old:/dave/\"\ntarget = \"down:/dave/calendar/\"\n",
            radicale.config_section("dav", &pw),
        ),
    )
    .unwrap();
    // Three passes quarantine bob's broken item.
    for _ in 0..3 {
        let out = Command::new(env!("CARGO_BIN_EXE_tandem"))
            .arg("-c")
            .arg(&config)
            .args([
                "sync", "--pair", "alice", "--pair", "bob", "--pair", "carol",
            ])
            .env("TANDEM_TEST_TOKEN", TOKEN)
            .env("TANDEM_TEST_DOWN_PASSWORD", DOWN_PASSWORD)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    }
    Scenario {
        dir,
        config,
        port,
        _radicale: radicale,
    }
}

impl Scenario {
    fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_tandem"))
            .arg("-c")
            .arg(&self.config)
            .args(args)
            .env_remove("RUST_LOG")
            .env("TANDEM_TEST_TOKEN", TOKEN)
            .env("TANDEM_TEST_DOWN_PASSWORD", DOWN_PASSWORD)
            .output()
            .unwrap()
    }

    fn status(&self) -> Value {
        let out = self.cli(&["status", "--json"]);
        assert!(out.status.success(), "{}", text(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Starts the service and waits until every pair has had its pass and dave is paused.
    fn serve(&self) -> Service {
        let svc = Service::start(&self.config, self.port, self.dir.path().join("run.log"));
        wait_until("dave to pause and carol to sync", 60, || {
            let v = get_json(self.port, "/api/pairs");
            pair(&v, "dave")["state"] == "paused" && pair(&v, "carol")["items"] == 2
        });
        // The request counters reach the state every 5 s (only the service asks `down`).
        wait_until("the server counters", 30, || {
            let v = get_json(self.port, "/api/servers");
            v["servers"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["name"] == "down" && s["requests"].as_i64().unwrap_or(0) > 0)
        });
        svc
    }
}

fn chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("TANDEM_CHROMIUM") {
        return PathBuf::from(p);
    }
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        if let Ok(out) = Command::new("which").arg(name).output()
            && out.status.success()
        {
            return PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        }
    }
    panic!(
        "the status page is tested in headless Chromium: install Debian's `chromium` \
         (apt-get install chromium) or set TANDEM_CHROMIUM"
    );
}

/// Loads `url` in headless Chromium: its DOM after load, and a screenshot saved to `shot`.
fn browse(url: &str, shot: &Path) -> String {
    let profile = tempfile::tempdir().unwrap();
    let chrome = |arg: String| {
        let out = Command::new(chromium())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--hide-scrollbars",
                "--window-size=1366,1200",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(&arg)
            .arg(url)
            .output()
            .expect("run chromium");
        assert!(out.status.success(), "chromium {arg} {url}: {}", text(&out));
        out
    };
    let dom = chrome("--dump-dom".into());
    chrome(format!("--screenshot={}", shot.display()));
    let bytes = std::fs::read(shot).expect("the screenshot was written");
    assert!(
        bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000,
        "a real screenshot"
    );
    String::from_utf8(dom.stdout).unwrap()
}

fn target_dir() -> PathBuf {
    // tests/../target, whatever profile built this test.
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The part of `html` from the element with `id` to its section's end.
fn part<'a>(html: &'a str, id: &str) -> &'a str {
    let start = html
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in the page:\n{html}"));
    let end = html[start..]
        .find("</section>")
        .map_or(html.len(), |e| start + e);
    &html[start..end]
}

#[test]
fn the_status_page_in_headless_chromium() {
    let s = scenario();
    let _svc = s.serve();
    // dave's two items wait: its lag passes the 2 s alert, and a sample of it reaches the
    // minutes.
    wait_until("dave's lag to pass the alert threshold", 30, || {
        get_json(s.port, "/api/pairs/dave")["pair"]["alerts"]
            .as_array()
            .unwrap()
            .contains(&Value::from("lag"))
    });
    wait_until("a lag sample over the alert", 30, || {
        let v = get_json(s.port, "/api/history");
        (v["minutes"].as_array().unwrap().iter()).any(|m| m["lag_ms"].as_i64() > Some(2_000))
    });
    let dom = browse(
        &format!("http://127.0.0.1:{}/", s.port),
        &target_dir().join("status-page.png"),
    );

    // The migration as pictures: items copied against items to copy, the last hour's writes
    // (every item the syncs wrote) and lag (over the alert, drawn red), compared with status.
    let st = s.status();
    let sum = |keys: &[&str]| -> i64 {
        (st["pairs"].as_array().unwrap().iter())
            .map(|p| keys.iter().map(|k| p[*k].as_i64().unwrap()).sum::<i64>())
            .sum()
    };
    let copying = part(&dom, "copying");
    let (items, backlog) = (sum(&["items"]), sum(&["backlog"]));
    assert!(
        copying.contains(&format!("data-copied=\"{items}\" data-left=\"{backlog}\"")),
        "{copying}"
    );
    assert!(
        copying.contains("data-mailbox=\"dave\" data-copied=\"0\" data-left=\"2\""),
        "{copying}"
    );
    let writes = part(&dom, "writes-chart");
    let drawn: f64 = (writes.split("data-value=\"").skip(1))
        .map(|v| v[..v.find('"').unwrap()].parse::<f64>().unwrap())
        .sum();
    assert_eq!(
        drawn as i64,
        sum(&["created", "updated", "deleted"]),
        "{writes}"
    );
    assert_eq!(drawn, 6.0, "alice 3, bob 1, carol 2: {writes}");
    assert!(writes.contains("<title>"), "{writes}");
    let lag = part(&dom, "lag-chart");
    assert!(lag.contains("class=\"c-over\""), "{lag}");
    assert!(lag.contains("class=\"threshold\""), "{lag}");

    // Totals by state.
    let totals = part(&dom, "totals");
    assert!(
        totals.contains("data-state=\"active\"><b class=\"st-active\">3</b>"),
        "{totals}"
    );
    assert!(
        totals.contains("data-state=\"paused\"><b class=\"st-paused\">1</b>"),
        "{totals}"
    );
    assert!(
        totals.contains("data-total=\"quarantined\"><b>1</b>"),
        "{totals}"
    );

    // Worst first: the paused pair leads, with its reason.
    let pairs = part(&dom, "pairs");
    let rows: Vec<&str> = pairs.split("<tr data-pair=\"").skip(1).collect();
    assert_eq!(rows.len(), 4, "{pairs}");
    assert!(
        rows[0].starts_with("dave\" data-state=\"paused\""),
        "{pairs}"
    );
    assert!(
        rows[0].contains("Connection refused") || rows[0].contains("connection refused"),
        "{}",
        rows[0]
    );
    let bob = rows.iter().find(|r| r.starts_with("bob\"")).unwrap();
    assert!(
        bob.contains("<td class=\"n\">1</td><td class=\"n\">-</td>"),
        "bob has one quarantined item: {bob}"
    );

    let hist = part(&dom, "lag-histogram");
    // alice and carol are current; bob waits on its quarantined item, dave on its target.
    assert!(
        hist.contains("data-bucket=\"current\"><td>current</td><td class=\"n\">2</td>"),
        "{hist}"
    );

    // Agents per processor: one on each, no idle processor.
    let procs = part(&dom, "processors");
    assert!(
        procs.contains("data-processor=\"0\" data-agents=\"1\""),
        "{procs}"
    );
    assert!(
        procs.contains("data-processor=\"1\" data-agents=\"1\""),
        "{procs}"
    );
    assert!(!procs.contains("proc idle"), "{procs}");
    assert!(!dom.contains("agents-warning"));

    // Servers, leases, quarantine.
    let servers = part(&dom, "servers");
    assert!(servers.contains("data-server=\"dav\""), "{servers}");
    assert!(servers.contains("data-server=\"down\""), "{servers}");
    assert!(dom.contains("id=\"leases\""));
    let quarantine = part(&dom, "quarantine");
    assert!(quarantine.contains("data-pair=\"bob\""), "{quarantine}");
    assert!(quarantine.contains("broken.ics"), "{quarantine}");

    // The pair detail page: recent passes and the quarantined item with its error.
    let detail = browse(
        &format!("http://127.0.0.1:{}/pairs/bob", s.port),
        &target_dir().join("status-pair.png"),
    );
    assert!(detail.contains("<h2>Pair bob</h2>"), "{detail}");
    let passes = part(&detail, "passes");
    assert!(passes.matches("<tr data-run=").count() >= 3, "{passes}");
    let items = part(&detail, "items");
    assert!(
        items.contains("broken.ics") && items.contains("quarantined"),
        "{items}"
    );

    // An unknown pair is a 404 page, not an error.
    assert_eq!(http(s.port, "GET", "/pairs/nobody", &[]).0, 404);
}

/// `name{labels} value` lines of a Prometheus text answer.
fn parse_metrics(body: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (key, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad line {line:?}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        assert!(out.insert(key.to_string(), value).is_none(), "{key} twice");
    }
    out
}

#[test]
fn metrics_and_api_agree_with_status_and_resync_needs_the_token() {
    let s = scenario();
    let svc = s.serve();
    let mut seen = String::new();

    let (code, body) = http(s.port, "GET", "/metrics", &[]);
    assert_eq!(code, 200);
    seen.push_str(&body);
    let m = parse_metrics(&body);
    let st = s.status();
    seen.push_str(&st.to_string());
    for id in ["alice", "bob", "carol", "dave"] {
        let p = pair(&st, id);
        let l = format!("{{pair=\"{id}\"}}");
        assert_eq!(
            m[&format!("tandem_pair_backlog{l}")],
            p["backlog"].as_f64().unwrap(),
            "{id}"
        );
        assert_eq!(
            m[&format!("tandem_pair_items{l}")],
            p["items"].as_f64().unwrap(),
            "{id}"
        );
        assert_eq!(
            m[&format!("tandem_pair_quarantined_items{l}")],
            p["quarantined"].as_f64().unwrap(),
            "{id}"
        );
        let state = p["state"].as_str().unwrap();
        assert_eq!(
            m[&format!("tandem_pair_state{{pair=\"{id}\",state=\"{state}\"}}")],
            1.0
        );
        // Lag grows between the two reads; they agree within the time between them.
        let lag = m[&format!("tandem_pair_lag_seconds{l}")];
        let lag_status = p["lag_seconds"].as_f64().unwrap();
        assert!(
            lag <= lag_status && lag_status - lag < 10.0,
            "{id}: {lag} vs {lag_status}"
        );
        assert_eq!(
            m[&format!("tandem_pair_writes_total{{pair=\"{id}\",kind=\"created\"}}")],
            p["created"].as_f64().unwrap()
        );
    }
    assert_eq!(pair(&st, "alice")["lag_seconds"], 0.0);
    assert_eq!(pair(&st, "alice")["created"], 3);
    assert_eq!(pair(&st, "dave")["backlog"], 2);
    assert!(pair(&st, "dave")["lag_seconds"].as_f64().unwrap() > 0.0);
    assert_eq!(pair(&st, "bob")["backlog"], 1, "the quarantined item waits");
    assert_eq!(st["pairs"][0]["id"], "dave", "worst first");
    assert_eq!(m["tandem_pairs{state=\"active\"}"], 3.0);
    assert_eq!(m["tandem_pairs{state=\"paused\"}"], 1.0);
    // Requests per server: totals agree; dave's refused connections all failed.
    for srv in st["servers"].as_array().unwrap() {
        let name = srv["name"].as_str().unwrap();
        assert_eq!(
            m.get(&format!(
                "tandem_server_requests_total{{server=\"{name}\"}}"
            ))
            .copied(),
            Some(srv["requests"].as_f64().unwrap()),
            "{name}"
        );
    }
    let down = st["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "down")
        .unwrap();
    assert!(down["failed_requests"].as_i64().unwrap() > 0);
    assert_eq!(down["failed_requests"], down["requests"]);
    assert_eq!(down["alerts"], serde_json::json!(["failed_requests"]));
    assert_eq!(pair(&st, "dave")["failed_requests_percent"], 100.0);
    let carol = pair(&st, "carol");
    assert!(carol["requests_last_hour"].as_i64().unwrap() > 0);
    assert_eq!(carol["failed_requests_percent"], 0.0);
    // Agents: two, one per processor, every pair on one of them.
    let a0 = m
        .iter()
        .find(|(k, _)| k.starts_with("tandem_agent_pairs{agent=\"0\""))
        .unwrap();
    let a1 = m
        .iter()
        .find(|(k, _)| k.starts_with("tandem_agent_pairs{agent=\"1\""))
        .unwrap();
    assert!(a0.0.contains("processor=\"0\"") && a1.0.contains("processor=\"1\""));
    assert_eq!(a0.1 + a1.1, 4.0);
    assert_eq!(m["tandem_idle_processors"], 0.0);

    // The API.
    for path in [
        "/api/pairs",
        "/api/pairs/bob",
        "/api/agents",
        "/api/servers",
        "/api/leases",
        "/api/quarantine",
        "/",
    ] {
        let (code, body) = http(s.port, "GET", path, &[]);
        assert_eq!(code, 200, "{path}");
        seen.push_str(&body);
    }
    let pairs = get_json(s.port, "/api/pairs");
    assert_eq!(pairs["pairs"].as_array().unwrap().len(), 4);
    let bob = get_json(s.port, "/api/pairs/bob");
    assert!(
        bob["quarantine"][0]["href"]
            .as_str()
            .unwrap()
            .ends_with("broken.ics"),
        "{bob}"
    );
    assert!(bob["passes"].as_array().unwrap().len() >= 3);
    let agents = get_json(s.port, "/api/agents");
    assert_eq!(agents["agents"].as_array().unwrap().len(), 2);
    assert!(agents["agents"][0]["passes"].as_u64().is_some());
    assert_eq!(
        get_json(s.port, "/api/quarantine")["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(http(s.port, "GET", "/api/pairs/nobody", &[]).0, 404);
    assert_eq!(
        http(s.port, "GET", "/healthz", &[]),
        (200, "ok\n".to_string())
    );

    // Resync: refused without the token or with a wrong one, started with it.
    let path = "/api/pairs/alice/resync";
    let (code, body) = http(s.port, "POST", path, &[]);
    assert_eq!(code, 401, "{body}");
    seen.push_str(&body);
    let (code, body) = http(
        s.port,
        "POST",
        path,
        &[("Authorization", "Bearer not-the-token-at-all")],
    );
    assert_eq!(code, 401, "{body}");
    seen.push_str(&body);
    let resyncs = |v: &Value| {
        v["passes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["kind"] == "resync" && r["outcome"] == "ok")
            .count()
    };
    assert_eq!(
        resyncs(&get_json(s.port, "/api/pairs/alice")),
        0,
        "a refused resync ran nothing"
    );
    let bearer = format!("Bearer {TOKEN}");
    let (code, body) = http(s.port, "POST", path, &[("Authorization", &bearer)]);
    assert_eq!(code, 202, "{body}");
    wait_until("alice's resync", 30, || {
        resyncs(&get_json(s.port, "/api/pairs/alice")) == 1
    });
    assert_eq!(
        http(
            s.port,
            "POST",
            "/api/pairs/nobody/resync",
            &[("Authorization", &bearer)]
        )
        .0,
        404
    );

    // Cutover over HTTP: the token again; the API, metrics and page then show the new authority.
    let cut = "/api/pairs/alice/cutover";
    assert_eq!(http(s.port, "POST", cut, &[]).0, 401);
    // 409 while a pass of the pair holds a lease: asked again.
    let mut body = String::new();
    wait_until("the cutover", 30, || {
        let (code, b) = http(s.port, "POST", cut, &[("Authorization", &bearer)]);
        assert!(code == 200 || code == 409, "{code} {b}");
        body = b;
        code == 200
    });
    assert!(body.contains("\"authority\":\"target\""), "{body}");
    let alice = get_json(s.port, "/api/pairs/alice");
    assert_eq!(alice["pair"]["authority"], "target", "{alice}");
    assert_eq!(alice["pair"]["direction"], "one-way", "{alice}");
    assert!(alice["pair"]["cutover_at"].as_i64().is_some(), "{alice}");
    let (_, metrics) = http(s.port, "GET", "/metrics", &[]);
    assert!(
        metrics.contains(
            "pair_direction{pair=\"alice\",direction=\"one-way\",authority=\"target\"} 1"
        ) && metrics.contains("pair_cutover_timestamp_seconds{pair=\"alice\"}"),
        "{metrics}"
    );
    let (_, page) = http(s.port, "GET", "/pairs/alice", &[]);
    assert!(
        page.contains("the target is the authority, cut over"),
        "{page}"
    );
    let undo = "/api/pairs/alice/cutover/undo";
    wait_until("the undo", 30, || {
        let (code, b) = http(s.port, "POST", undo, &[("Authorization", &bearer)]);
        assert!(code == 200 || code == 409, "{code} {b}");
        code == 200
    });
    let alice = get_json(s.port, "/api/pairs/alice");
    assert_eq!(alice["pair"]["authority"], "source", "{alice}");
    assert!(alice["pair"]["cutover_at"].is_null(), "{alice}");

    // No secret anywhere: pages, API answers, metrics, status, the service's log lines.
    drop(svc);
    seen.push_str(&std::fs::read_to_string(s.dir.path().join("run.log")).unwrap());
    // The most verbose logs of a pass over every server, the refusing one included.
    let out = s.cli(&["-vvv", "sync"]);
    assert!(
        text(&out).contains("TRACE") || text(&out).contains("DEBUG"),
        "{}",
        text(&out)
    );
    seen.push_str(&text(&out));
    let out = s.cli(&["status"]);
    seen.push_str(&text(&out));
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!(
        "{}:{}",
        common::dav::USER,
        common::dav::PASSWORD
    ));
    for secret in [TOKEN, DOWN_PASSWORD, common::dav::PASSWORD, basic.as_str()] {
        assert!(!seen.contains(secret), "a secret leaked: {secret}");
    }
    assert!(seen.len() > 10_000, "the outputs were collected");
}

#[test]
fn service_log_lines_are_json_with_pair_agent_and_run() {
    let s = scenario();
    let svc = s.serve();
    drop(svc);
    let log = std::fs::read_to_string(s.dir.path().join("run.log")).unwrap();
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(lines.len() > 5, "{log}");
    for l in &lines {
        assert!(
            l["timestamp"].is_string() && l["level"].is_string() && l["message"].is_string(),
            "{l}"
        );
    }
    // dave's failed pass: its agent, pair, run and error in one line.
    let failed = lines
        .iter()
        .find(|l| l["message"] == "pair failed" && l["pair"] == "dave")
        .unwrap_or_else(|| panic!("no failure line for dave:\n{log}"));
    assert!(failed["agent"].is_u64(), "{failed}");
    assert!(
        failed["run"].as_str().is_some_and(|r| r.len() == 36),
        "{failed}"
    );
    assert!(
        failed["error"].as_str().unwrap().contains("dave"),
        "{failed}"
    );
}

#[test]
fn lag_grows_while_the_target_is_down_and_returns_to_zero() {
    let dir = tempfile::tempdir().unwrap();
    let mut radicale = DavServer::radicale();
    let cal = radicale.make_calendar("alice", "calendar");
    let pw = dir.path().join("radicale.pw");
    std::fs::write(&pw, common::dav::PASSWORD).unwrap();
    let src = dir.path().join("old").join("alice");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("1.ics"), event("lag-1", "Kickoff", None)).unwrap();
    let port = common::dav::free_port();
    let config = dir.path().join("tandem.toml");
    std::fs::write(
        &config,
        format!(
            "[state]\nurl = \"sqlite://tandem.db\"\n\n[sync]\ninterval = \"1s\"\npause = \"1s\"\n\n\
             [http]\nlisten = \"127.0.0.1:{port}\"\n\n\
             [servers.old]\nkind = \"vdir\"\npath = \"old\"\n\n{}\n\
             [[pairs]]\nid = \"alice\"\nsource = \"old:/alice/\"\ntarget = \"new:{cal}\"\n",
            radicale.config_section("new", &pw)
        ),
    )
    .unwrap();
    let svc = Service::start(&config, port, dir.path().join("run.log"));
    let alice = || get_json(port, "/api/pairs/alice")["pair"].clone();
    wait_until("the first sync", 60, || alice()["items"] == 1);
    assert_eq!(alice()["lag_seconds"], 0.0);
    assert_eq!(alice()["backlog"], 0);

    // The target goes away; a new meeting in the source is held back.
    radicale.kill();
    std::fs::write(src.join("2.ics"), event("lag-2", "Budget", None)).unwrap();
    wait_until("the change to be seen and held", 60, || {
        let a = alice();
        a["backlog"] == 1 && a["lag_seconds"].as_f64().unwrap() > 0.0
    });
    let a = alice();
    assert_eq!(a["state"], "paused", "{a}");
    let first = a["lag_seconds"].as_f64().unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    let later = alice()["lag_seconds"].as_f64().unwrap();
    assert!(
        later >= first + 2.0,
        "lag grows while held: {first} then {later}"
    );
    let (_, metrics) = http(port, "GET", "/metrics", &[]);
    let m = parse_metrics(&metrics);
    assert!(m["tandem_pair_lag_seconds{pair=\"alice\"}"] >= later);
    assert_eq!(m["tandem_pair_backlog{pair=\"alice\"}"], 1.0);

    // The target is back: the pair resumes by itself and is current again.
    radicale.start();
    wait_until("the held change to sync", 60, || {
        let a = alice();
        a["items"] == 2 && a["lag_seconds"] == 0.0 && a["backlog"] == 0
    });
    let (_, metrics) = http(port, "GET", "/metrics", &[]);
    assert_eq!(
        parse_metrics(&metrics)["tandem_pair_lag_seconds{pair=\"alice\"}"],
        0.0
    );
    assert!(alice()["pending_since"].is_null());
    drop(svc);
}

#[test]
fn cli_progress_and_json_logs_when_not_on_a_terminal() {
    let s = common::Setup::new(&["alice"]);
    for i in 0..40 {
        s.put(
            "alice",
            &format!("{i}.ics"),
            &event(&format!("p-{i}"), "Item", None),
        );
    }
    s.put(
        "alice",
        "broken.ics",
        "BEGIN:VCALENDAR\r\nnot a calendar\r\n",
    );
    // A first sync, stdout a pipe: progress comes as log lines, here JSON ones.
    let out = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .arg("-c")
        .arg(&s.config)
        .args(["--log-format", "json", "sync"])
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let progress: Vec<&Value> = lines
        .iter()
        .filter(|l| l["target"] == "tandem::engine::progress")
        .collect();
    assert!(progress.len() >= 2, "{lines:?}");
    assert_eq!(progress[0]["done"], 0);
    assert_eq!(progress[0]["total"], 40);
    assert_eq!(progress.last().unwrap()["done"], 40);
    assert!(
        progress
            .iter()
            .all(|l| l["pair"] == "alice" && l["run"].is_string())
    );
    let failed = lines
        .iter()
        .find(|l| l["message"] == "item failed")
        .unwrap_or_else(|| panic!("no item failure line: {lines:?}"));
    assert_eq!(failed["pair"], "alice");
    assert!(failed["item"].as_str().unwrap().ends_with("broken.ics"));
    assert!(failed["error"].is_string() && failed["run"].is_string());

    // A resync shows progress too (text lines); a quiet sync does not.
    let out = tandem(&s.config, &["resync", "--pair", "alice"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("progress 0/"),
        "nothing to write, nothing to show: {err}"
    );
    std::fs::remove_dir_all(s.target("alice")).unwrap();
    std::fs::create_dir_all(s.target("alice")).unwrap();
    let out = tandem(&s.config, &["resync", "--pair", "alice"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("progress 0/40 items") && err.contains("progress 40/40 items"),
        "{err}"
    );
    let out = tandem(&s.config, &["sync"]);
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("progress"),
        "{}",
        text(&out)
    );

    // On a terminal (`script` gives it one), a bar instead.
    std::fs::remove_dir_all(s.target("alice")).unwrap();
    std::fs::create_dir_all(s.target("alice")).unwrap();
    let cmd = format!(
        "{} -c {} resync --pair alice",
        env!("CARGO_BIN_EXE_tandem"),
        s.config.display()
    );
    let out = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env_remove("RUST_LOG")
        .output()
        .expect("run script (util-linux)");
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(
        screen.contains("alice [") && screen.contains("40/40 items") && screen.contains("/s  ETA"),
        "{screen}"
    );
    assert!(
        !screen.contains("progress 0/40"),
        "a bar, not log lines: {screen}"
    );
}

#[test]
fn a_taken_port_stops_the_service_before_it_syncs() {
    let s = common::Setup::new(&["alice"]);
    s.put("alice", "1.ics", &event("port-1", "Item", None));
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let toml = std::fs::read_to_string(&s.config).unwrap();
    std::fs::write(
        &s.config,
        format!("{toml}\n[http]\nlisten = \"127.0.0.1:{port}\"\n"),
    )
    .unwrap();
    let out = tandem(&s.config, &["run"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("http.listen: cannot listen on 127.0.0.1:") && err.contains("tandem.toml"),
        "{err}"
    );
    assert!(
        std::fs::read_dir(s.target("alice"))
            .unwrap()
            .next()
            .is_none(),
        "nothing was synced"
    );
}

#[test]
fn the_api_token_is_needed_by_run_and_check_only() {
    let s = common::Setup::new(&["alice"]);
    let toml = std::fs::read_to_string(&s.config).unwrap();
    std::fs::write(
        &s.config,
        format!(
            "{toml}\n[http]\nlisten = \"127.0.0.1:0\"\ntoken_env = \"TANDEM_TEST_NO_SUCH_TOKEN\"\n"
        ),
    )
    .unwrap();
    // A cron `sync` and `status` need no token in their environment.
    assert_eq!(tandem(&s.config, &["sync"]).status.code(), Some(0));
    assert_eq!(tandem(&s.config, &["status"]).status.code(), Some(0));
    for cmd in ["check", "run"] {
        let out = tandem(&s.config, &[cmd]);
        assert_eq!(out.status.code(), Some(2), "{cmd}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("tandem.toml: http.token_env: environment variable TANDEM_TEST_NO_SUCH_TOKEN is not set"),
            "{cmd}: {err}"
        );
    }
    // A short token is refused too, without being printed.
    let out = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .arg("-c")
        .arg(&s.config)
        .arg("check")
        .env("TANDEM_TEST_NO_SUCH_TOKEN", "short-secret")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let all = text(&out);
    assert!(
        all.contains("shorter than 16 characters") && !all.contains("short-secret"),
        "{all}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttling_server_shows_in_status_with_its_throttled_answers() {
    use common::mock::{Answer, Mock};
    let mock = Mock::start(|_, _| Answer::new(429, "").header("Retry-After", "1")).await;
    let s = common::Setup::new(&["alice"]);
    s.put("alice", "1.ics", &event("slow-1", "Item", None));
    let toml = std::fs::read_to_string(&s.config).unwrap().replace(
        "target = \"new:/alice/\"",
        "target = \"slow:/alice/calendar/\"",
    );
    std::fs::write(
        &s.config,
        format!(
            "{toml}\n[servers.slow]\nkind = \"caldav\"\nurl = \"{}\"\n\n[alerts]\nfailed_requests_percent = 90\n",
            mock.url()
        ),
    )
    .unwrap();
    let config = s.config.clone();
    let (sync, st) = tokio::task::spawn_blocking(move || {
        (
            tandem(&config, &["sync"]),
            tandem(&config, &["status", "--json"]),
        )
    })
    .await
    .unwrap();
    assert_eq!(sync.status.code(), Some(3), "{}", text(&sync));
    assert!(text(&sync).contains("throttled"), "{}", text(&sync));
    let st: Value = serde_json::from_slice(&st.stdout).unwrap();
    let slow = st["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "slow")
        .unwrap();
    let asked = mock.requests().len() as i64;
    assert!(asked >= 1);
    assert_eq!(slow["requests"], asked, "{slow}");
    assert_eq!(slow["throttled"], asked, "{slow}");
    assert_eq!(slow["failed_requests"], asked, "{slow}");
    assert_eq!(slow["failed_requests_percent"], 100.0);
    assert_eq!(slow["alerts"], serde_json::json!(["failed_requests"]));
    let alice = pair(&st, "alice");
    assert_eq!(alice["requests_last_hour"], asked);
    assert_eq!(alice["failed_requests_percent"], 100.0);
    assert_eq!(alice["alerts"], serde_json::json!(["failed_requests"]));
}

#[test]
fn protected_pages_ask_for_the_token_and_healthz_does_not() {
    let s = common::Setup::new(&["alice"]);
    let toml = std::fs::read_to_string(&s.config).unwrap();
    // Without a token to ask for, protecting the pages is a config error.
    std::fs::write(
        &s.config,
        format!("{toml}\n[http]\nlisten = \"127.0.0.1:0\"\nprotect_pages = true\n"),
    )
    .unwrap();
    let out = tandem(&s.config, &["check"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("http.protect_pages: needs http.token_env"),
        "{}",
        text(&out)
    );
    let port = common::dav::free_port();
    std::fs::write(
        &s.config,
        format!(
            "{toml}\n[http]\nlisten = \"127.0.0.1:{port}\"\ntoken_env = \"TANDEM_TEST_TOKEN\"\nprotect_pages = true\n"
        ),
    )
    .unwrap();
    let _svc = Service::start(&s.config, port, s.dir.path().join("run.log"));
    let bearer = format!("Bearer {TOKEN}");
    for path in ["/", "/pairs/alice", "/api/pairs", "/api/nodes", "/metrics"] {
        let (code, body) = http(port, "GET", path, &[]);
        assert_eq!(code, 401, "{path} without the token: {body}");
        let (code, _) = http(
            port,
            "GET",
            path,
            &[("Authorization", "Bearer wrong-token-0000000")],
        );
        assert_eq!(code, 401, "{path} with a wrong token");
        let (code, body) = http(port, "GET", path, &[("Authorization", &bearer)]);
        assert_eq!(code, 200, "{path} with the token: {body}");
    }
    let (code, body) = http(port, "GET", "/api/nodes", &[("Authorization", &bearer)]);
    assert_eq!(code, 200);
    let nodes: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(nodes["nodes"][0]["status"], "alive", "{nodes}");
    assert_eq!(nodes["nodes"][0]["pairs"], 1, "{nodes}");
    assert_eq!(http(port, "GET", "/healthz", &[]).0, 200);
}

/// A target whose creates wait for the test to let them through.
struct Gated {
    inner: std::sync::Arc<tandem::store::memory::MemoryStore>,
    gate: tokio::sync::Semaphore,
}

#[async_trait::async_trait]
impl tandem::store::CalendarStore for Gated {
    fn describe(&self) -> String {
        "gated".into()
    }
    async fn check_calendar(
        &self,
        cal: &tandem::domain::types::CalendarPath,
    ) -> tandem::domain::error::StoreResult<()> {
        self.inner.check_calendar(cal).await
    }
    async fn list(
        &self,
        cal: &tandem::domain::types::CalendarPath,
    ) -> tandem::domain::error::StoreResult<Vec<tandem::store::ItemVersion>> {
        self.inner.list(cal).await
    }
    async fn fetch(
        &self,
        cal: &tandem::domain::types::CalendarPath,
        hrefs: &[tandem::domain::types::Href],
    ) -> tandem::domain::error::StoreResult<Vec<tandem::store::Fetched>> {
        self.inner.fetch(cal, hrefs).await
    }
    async fn create(
        &self,
        cal: &tandem::domain::types::CalendarPath,
        name: &str,
        data: &str,
    ) -> tandem::domain::error::StoreResult<tandem::store::ItemVersion> {
        self.gate.acquire().await.unwrap().forget();
        self.inner.create(cal, name, data).await
    }
    async fn update(
        &self,
        href: &tandem::domain::types::Href,
        etag: &tandem::domain::types::Etag,
        data: &str,
    ) -> tandem::domain::error::StoreResult<tandem::domain::types::Etag> {
        self.inner.update(href, etag, data).await
    }
    async fn delete(
        &self,
        href: &tandem::domain::types::Href,
        etag: &tandem::domain::types::Etag,
    ) -> tandem::domain::error::StoreResult<()> {
        self.inner.delete(href, etag).await
    }
    fn parallelism(&self) -> usize {
        2
    }
}

/// During a first sync the state shows the items copied (mappings) and those still to copy
/// (the backlog) as they go, read by another connection while writes are held; at the end
/// nothing is left, and the minutes count every item written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_sync_shows_items_copied_and_to_copy_as_it_goes() {
    use std::sync::Arc;
    use tandem::store::memory::MemoryStore;
    const ITEMS: i64 = 40;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db");
    let state = tandem::state::State::open(&db).await.unwrap();
    let (src, tgt) = (Arc::new(MemoryStore::new()), Arc::new(MemoryStore::new()));
    let (scal, tcal) = ("/src/".parse().unwrap(), "/tgt/".parse().unwrap());
    src.add_calendar(&scal);
    tgt.add_calendar(&tcal);
    for i in 0..ITEMS {
        src.put(
            &scal,
            &format!("{i}.ics"),
            &event(&format!("uid-{i}"), "meeting", None),
        );
    }
    let gated = Arc::new(Gated {
        inner: tgt.clone(),
        gate: tokio::sync::Semaphore::new(0),
    });
    let stores: BTreeMap<String, Arc<dyn tandem::store::CalendarStore>> = [
        (
            "s".to_string(),
            src as Arc<dyn tandem::store::CalendarStore>,
        ),
        ("t".to_string(), gated.clone() as _),
    ]
    .into();
    let engine = Arc::new(tandem::engine::Engine::with_stores(
        state,
        stores,
        tandem::domain::item::Rewriter::default(),
    ));
    let pair = tandem::domain::pair::Pair::new(
        "p".parse().unwrap(),
        "s:/src/".parse().unwrap(),
        "t:/tgt/".parse().unwrap(),
    );
    let pass = tokio::spawn({
        let (engine, pair) = (engine.clone(), pair.clone());
        async move { engine.sync_pair(&pair, Default::default()).await }
    });
    // What another reader of the state sees: (copied, to copy).
    let reader = tandem::state::State::open(&db).await.unwrap();
    let seen = async || {
        let items = reader.item_counts().await.unwrap();
        let rows = reader.pair_rows(0).await.unwrap();
        let backlog = rows.iter().find(|r| r.id == "p").map_or(0, |r| r.backlog);
        (items.get("p").copied().unwrap_or(0), backlog)
    };
    let until = async |what: &str, ok: &dyn Fn((i64, i64)) -> bool| {
        let start = Instant::now();
        loop {
            let now = seen().await;
            if ok(now) {
                return now;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "{what}: {now:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    until("every item to copy, none copied", &|s| s == (0, ITEMS)).await;
    gated.gate.add_permits(20);
    // Chunks of 16 (8 per write in flight): noting the second records the writes finished
    // of the first, before a second has passed: the items left wait for the next record.
    let first = until("part copied", &|(c, _)| c > 0).await;
    assert!(first.0 <= 20 && first.1 == ITEMS, "{first:?}");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // Past a second, the next record carries the items left with the items copied.
    let mut let_through = 20;
    let mid = loop {
        gated.gate.add_permits(1);
        let_through += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = seen().await;
        if now.1 < ITEMS || let_through == ITEMS {
            break now;
        }
    };
    assert_eq!(
        mid.0 + mid.1,
        ITEMS,
        "{mid:?} after {let_through} let through"
    );
    assert!(mid.0 < ITEMS, "{mid:?}");
    gated.gate.add_permits(ITEMS as usize);
    let report = pass.await.unwrap().unwrap();
    assert_eq!((report.created, report.error), (ITEMS as u64, None));
    assert_eq!(seen().await, (ITEMS, 0));
    assert_eq!(tgt.items(&tcal).len(), ITEMS as usize);
    engine.flush_counts().await.unwrap();
    let minutes = reader.minutes(0).await.unwrap();
    assert_eq!(minutes.iter().map(|m| m.writes).sum::<i64>(), ITEMS);
}

/// A migration run by `tandem sync` alone (from cron) has its minutes too: the items each run
/// wrote, and every pair's lag as the run ended (bob waits on its quarantined item).
#[test]
fn a_sync_from_cron_leaves_its_minutes() {
    let s = scenario();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let state = rt
        .block_on(tandem::state::State::open(
            &s.dir.path().join("state/tandem.db"),
        ))
        .unwrap();
    let minutes = rt.block_on(state.minutes(0)).unwrap();
    let written: i64 = minutes.iter().map(|m| m.writes).sum();
    assert_eq!(written, 6, "alice 3, bob 1, carol 2: {minutes:?}");
    let last = minutes.iter().rev().find(|m| m.lag_ms.is_some()).unwrap();
    assert!(
        last.lag_ms > Some(0) && last.lagging >= Some(1),
        "{minutes:?}"
    );
}
